// The package as npm ships it: `npm pack`, installed into a fresh app with no Rust toolchain on
// PATH, then used from an ES module, a CommonJS script, a strict TypeScript file (tsc, then run)
// and the installed command, each against the stack, on the Node running this file
// (scripts/node-versions.sh runs it on 20, 22 and 24). Last, the release layout: the binary in its
// napi platform package (dsql-tunnel-linux-x64-gnu) instead of the main package.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { useStack, type Stack } from './helpers.ts'

const ROOT = path.resolve(__dirname, '..')
const BINARY = 'dsql-tunnel.linux-x64-gnu.node'
const PLATFORM_PACKAGE = 'dsql-tunnel-linux-x64-gnu'
const thisPlatform = process.platform === 'linux' && process.arch === 'x64'

const stack = useStack({ tokenAuth: true })

interface Run {
  code: number | null
  stdout: string
  stderr: string
}

/** Runs a command to completion (killed after `timeoutMs`). */
function run(cmd: string, args: string[], opts: { cwd: string; env: NodeJS.ProcessEnv; timeoutMs?: number }): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000)
    child.on('error', reject)
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
  })
}

function ok(r: Run, what: string): string {
  assert.equal(r.code, 0, `${what} exited with ${r.code}\n${r.stderr}\n${r.stdout}`)
  return r.stdout
}

/** The last line of stdout, as JSON: what the app scripts report. */
function report<T>(r: Run, what: string): T {
  const lines = ok(r, what).trim().split('\n')
  return JSON.parse(lines[lines.length - 1]) as T
}

/** PATH without any directory that holds cargo or rustc, with this Node first. */
async function pathWithoutRust(): Promise<string> {
  const dirs = [path.dirname(process.execPath)]
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir || dirs.includes(dir)) continue
    const has = async (f: string) => fs.access(path.join(dir, f)).then(() => true, () => false)
    if (!(await has('cargo')) && !(await has('rustc'))) dirs.push(dir)
  }
  return dirs.join(path.delimiter)
}

interface PackResult {
  filename: string
  size: number
  unpackedSize: number
  files: { path: string; size: number }[]
}

const ESM = `import { connect, Pool, DsqlTunnelError, isOccError } from 'dsql-tunnel'
import dsql from 'dsql-tunnel'
import { createRequire } from 'node:module'

const client = await connect() // everything from the environment; a token minted from AWS_*
const { rows } = await client.query('select $1::int + 1 as n, current_user as "user"', [41])
await client.end()
const pool = new Pool({ max: 2 })
const two = await pool.transaction(async (tx) => (await tx.query('select 2 as two')).rows[0].two)
await pool.end()
const require = createRequire(import.meta.url)
console.log(JSON.stringify({
  n: rows[0].n, user: rows[0].user, two,
  sameExports: dsql.Pool === Pool, errorClass: typeof DsqlTunnelError, occ: isOccError({ code: '40001' }),
  resolved: import.meta.resolve('dsql-tunnel'),
  binary: Object.keys(require.cache).find((k) => k.endsWith('.node')) ?? null,
}))
`

const CJS = `'use strict'
const { connect, generateToken } = require('dsql-tunnel')

;(async () => {
  const password = await generateToken({ host: process.env.PGHOST }) // a static token this time
  const client = await connect({ password })
  const { rows } = await client.query('select $1::text as s', ['from require'])
  await client.end()
  console.log(JSON.stringify({
    s: rows[0].s,
    resolved: require.resolve('dsql-tunnel'),
    binary: Object.keys(require.cache).find((k) => k.endsWith('.node')) ?? null,
  }))
})().catch((err) => {
  console.error(err)
  process.exit(1)
})
`

const TS = `import { connect, DsqlTunnelError, Pool, type QueryResult } from 'dsql-tunnel'

interface Row {
  n: number
  greeting: string
}

const client = await connect()
const res: QueryResult<Row> = await client.query<Row>('select $1::int + 1 as n, $2::text as greeting', [41, 'typed'])
const n: number = res.rows[0].n
let code: string | undefined
try {
  await client.query('select * from no_such_table')
} catch (err) {
  if (err instanceof DsqlTunnelError) code = err.code
}
await client.end()

const pool = new Pool({ max: 1, maxLifetimeSeconds: 3300, idleTimeoutMillis: 60_000 })
const tables = await pool.transaction(async (tx) => {
  const r = await tx.query<{ c: string }>('select count(*) as c from pg_class')
  return r.rows[0].c
})
await pool.end()

export function typeTests(): void {
  // @ts-expect-error: max is a number
  void new Pool({ max: 'ten' })
  // @ts-expect-error: sslmode disable is refused (DSQL requires TLS)
  void connect({ sslmode: 'disable' })
}

console.log(JSON.stringify({ n, greeting: res.rows[0].greeting, code, tables: typeof tables }))
`

describe('the packed package in a fresh app', { skip: !thisPlatform && 'the local binary is linux-x64-gnu' }, () => {
  let tmp: string
  let app: string
  let packed: PackResult
  let env: NodeJS.ProcessEnv

  before(async () => {
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'dsql-tunnel-pack-'))
    app = path.join(tmp, 'app')
    const home = path.join(tmp, 'home')
    await Promise.all([fs.mkdir(app), fs.mkdir(home)])
    const s: Stack = stack()
    env = {
      PATH: await pathWithoutRust(),
      HOME: home, // no ~/.aws, no ~/.npmrc, npm's cache in here
      PGHOST: s.host,
      PGHOSTADDR: s.tunnelAddr,
      PGPORT: String(s.tunnelPort),
      PGUSER: 'admin',
      PGSSLROOTCERT: s.caFile,
      AWS_ACCESS_KEY_ID: s.aws.accessKeyId,
      AWS_SECRET_ACCESS_KEY: s.aws.secretAccessKey,
      AWS_SESSION_TOKEN: s.aws.sessionToken,
      AWS_REGION: s.aws.region,
      AWS_EC2_METADATA_DISABLED: 'true',
    }

    const pack = await run('npm', ['pack', '--json', '--pack-destination', tmp], { cwd: ROOT, env: { ...process.env, npm_config_loglevel: 'error' }, timeoutMs: 180_000 })
    const results = JSON.parse(ok(pack, 'npm pack')) as PackResult[]
    packed = results[0]

    await fs.writeFile(path.join(app, 'package.json'), JSON.stringify({ name: 'fresh-app', version: '1.0.0', private: true, type: 'module' }, null, 2))
    const install = await run('npm', ['install', '--offline', '--no-audit', '--no-fund', '--loglevel=error', path.join(tmp, packed.filename)], { cwd: app, env, timeoutMs: 180_000 })
    ok(install, 'npm install of the tarball')
  })

  after(async () => {
    if (tmp) await fs.rm(tmp, { recursive: true, force: true })
  })

  test('the tarball holds the facade, the loader, the typings and the binary, and nothing else', (t) => {
    const names = packed.files.map((f) => f.path).sort()
    for (const f of ['package.json', 'README.md', 'index.js', 'index.d.ts', 'binding.js', 'binding.d.ts', BINARY]) {
      assert.ok(names.includes(f), `${f} is packed`)
    }
    const allowed = /^(package\.json|README\.md|index\.(js|mjs|d\.ts)|binding\.(js|d\.ts)|dsql-tunnel\.[a-z0-9-]+\.node|lib\/.+\.js|bin\/.+\.js)$/
    assert.deepEqual(names.filter((n) => !allowed.test(n)), [], 'no sources, tests, build output or platform dirs')
    const binary = packed.files.find((f) => f.path === BINARY)
    t.diagnostic(`package ${(packed.size / 1e6).toFixed(1)} MB, unpacked ${(packed.unpackedSize / 1e6).toFixed(1)} MB, ${names.length} files; ${BINARY} ${((binary?.size ?? 0) / 1e6).toFixed(1)} MB`)
  })

  test('no Rust toolchain on the PATH the app is installed and run with', async () => {
    const r = await run('sh', ['-c', 'command -v cargo || command -v rustc || echo none'], { cwd: app, env })
    assert.equal(ok(r, 'sh').trim(), 'none')
  })

  test('ESM: import { connect, Pool } from "dsql-tunnel"', async () => {
    await fs.writeFile(path.join(app, 'esm.mjs'), ESM)
    const out = report<{ n: number; user: string; two: number; sameExports: boolean; errorClass: string; occ: boolean; resolved: string; binary: string | null }>(
      await run(process.execPath, ['esm.mjs'], { cwd: app, env }),
      'esm.mjs',
    )
    assert.deepEqual({ n: out.n, user: out.user, two: out.two, sameExports: out.sameExports, errorClass: out.errorClass, occ: out.occ }, { n: 42, user: 'admin', two: 2, sameExports: true, errorClass: 'function', occ: true })
    assert.ok(out.resolved.startsWith(`file://${path.join(app, 'node_modules', 'dsql-tunnel')}`), out.resolved)
    assert.equal(out.binary, path.join(app, 'node_modules', 'dsql-tunnel', BINARY))
  })

  test('CommonJS: require("dsql-tunnel")', async () => {
    await fs.writeFile(path.join(app, 'cjs.cjs'), CJS)
    const out = report<{ s: string; resolved: string; binary: string | null }>(await run(process.execPath, ['cjs.cjs'], { cwd: app, env }), 'cjs.cjs')
    assert.equal(out.s, 'from require')
    assert.equal(out.resolved, path.join(app, 'node_modules', 'dsql-tunnel', 'index.js'))
    assert.equal(out.binary, path.join(app, 'node_modules', 'dsql-tunnel', BINARY))
  })

  test('strict TypeScript: tsc (strict, NodeNext, every declaration file checked), then run', async () => {
    await fs.writeFile(path.join(app, 'app.ts'), TS)
    // A real app would `npm install -D typescript @types/node`; this one borrows the repository's.
    const tsconfig = {
      compilerOptions: {
        strict: true,
        target: 'ES2022',
        module: 'NodeNext',
        moduleResolution: 'NodeNext',
        outDir: 'dist',
        skipLibCheck: false,
        types: ['node'],
        typeRoots: [path.join(ROOT, 'node_modules', '@types')],
      },
      files: ['app.ts'],
    }
    await fs.writeFile(path.join(app, 'tsconfig.json'), JSON.stringify(tsconfig, null, 2))
    ok(await run(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', '.'], { cwd: app, env, timeoutMs: 120_000 }), 'tsc')
    const out = report<{ n: number; greeting: string; code: string; tables: string }>(await run(process.execPath, ['dist/app.js'], { cwd: app, env }), 'dist/app.js')
    assert.deepEqual(out, { n: 42, greeting: 'typed', code: '42P01', tables: 'string' })
  })

  test('the installed command runs', async () => {
    ok(await run(path.join(app, 'node_modules', '.bin', 'dsql-tunnel'), ['check'], { cwd: app, env }), 'dsql-tunnel check')
  })

  test('release layout: the loader finds the binary in its platform package', async () => {
    // What npm lays out for a published release: the binary only in dsql-tunnel-linux-x64-gnu
    // (an optionalDependency that napi pre-publish adds), none in the main package.
    const platformDir = path.join(app, 'node_modules', PLATFORM_PACKAGE)
    await fs.mkdir(platformDir)
    await fs.copyFile(path.join(ROOT, 'npm', 'linux-x64-gnu', 'package.json'), path.join(platformDir, 'package.json'))
    await fs.rename(path.join(app, 'node_modules', 'dsql-tunnel', BINARY), path.join(platformDir, BINARY))
    const out = report<{ s: string; binary: string | null }>(await run(process.execPath, ['cjs.cjs'], { cwd: app, env }), 'cjs.cjs with the platform package')
    assert.equal(out.s, 'from require')
    assert.equal(out.binary, path.join(platformDir, BINARY))
  })
})

describe('the addon binary', { skip: !thisPlatform && 'the local binary is linux-x64-gnu' }, () => {
  test('uses no Node-API function newer than version 8 (Node 20 has 9)', async () => {
    // scripts/test.sh installs binutils where nm is missing.
    const r = await run('nm', ['-D', '--undefined-only', path.join(ROOT, BINARY)], { cwd: ROOT, env: process.env }).catch(() => null)
    assert.ok(r !== null && r.code === 0, 'nm -D lists the addon\'s imports (install binutils)')
    const imported = r.stdout.split('\n').map((l) => l.trim().split(/\s+/).pop() ?? '').filter((s) => /^(napi|node_api)_/.test(s))
    assert.ok(imported.length > 20, 'Node-API functions are imported')
    // Every function added after N-API 8 is named node_api_* (symbol_for, syntax errors, module
    // file name, property keys, external strings).
    assert.deepEqual(imported.filter((s) => s.startsWith('node_api_')), [])
    assert.ok(Number(process.versions.napi) >= 8)
  })
})
