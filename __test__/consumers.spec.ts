// Real ORM programs with this package standing in for `pg`: __test__/consumers/ holds one program
// per library (Prisma 7 with @prisma/adapter-pg, Drizzle's node-postgres driver, Sequelize 6,
// TypeORM 0.3, Knex 3, pg-promise), installed at pinned versions by scripts/consumers.sh into
// .cache/consumers with `pg` linked to the repo. Each program replays the pet-clinic walk of AWS's
// DSQL samples through the tunnel and the gate, with IAM tokens minted per connection from the AWS
// environment (no password) and the certificate verified against the fixture's CA, then prints
// one JSON line that the tests below compare.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'
import { inspect, isDeepStrictEqual } from 'node:util'
import { pathToFileURL } from 'node:url'
import { before, describe, test } from 'node:test'
import { ROOT, runNode, useStack, type Stack } from './helpers.ts'

const stack = useStack({ tokenAuth: true })
const DIR = path.join(ROOT, '.cache', 'consumers')
const INDEX = path.join(ROOT, 'index.js')
const TSX = pathToFileURL(path.join(ROOT, 'node_modules', 'tsx', 'dist', 'loader.mjs')).href

/** The program, the package it exercises, and the schema its iam_user part runs in. */
const CONSUMERS = [
  { lib: 'pg-promise', file: 'pg-promise.cjs', pkg: 'pg-promise', appSchema: 'pgp_app' },
  { lib: 'knex', file: 'knex.cjs', pkg: 'knex', appSchema: 'knex_app' },
  { lib: 'sequelize', file: 'sequelize.cjs', pkg: 'sequelize', appSchema: 'sqlz_app' },
  { lib: 'typeorm', file: 'typeorm.cjs', pkg: 'typeorm', appSchema: 'typeorm_app' },
  { lib: 'drizzle', file: 'drizzle.mjs', pkg: 'drizzle-orm', appSchema: 'drizzle_app' },
  { lib: 'prisma', file: 'prisma.mts', pkg: '@prisma/adapter-pg', appSchema: 'prisma_app' },
] as const

/** What every program must print (each adds its own fields beside these). */
const EXPECTED = {
  ok: true,
  pg: INDEX,
  join: ['John Doe/Pet1', 'John Doe/Pet2'],
  birthDate: '2019-02-28',
  adoptedAt: '2024-03-05T06:07:08.123Z',
  idIsUuid: true,
  vetSpecialties: ['Dogs', 'Exotic'],
  updated: 1,
  city: 'Othertown',
  deleted: 1,
  afterTx: ['Committed', 'John Doe'],
  raw: { n: 42, s: 'x' },
}

/** How each library hands back common/TYPES_SQL's row with real pg 8.23.1 under it (recorded with
 * the same programs, TZ Asia/Kolkata, session time zone UTC): this package must give the same. */
const PG_TYPES = {
  num: 'string:12.50',
  bool: 'boolean:true',
  bin: 'Buffer:0102ff',
  json: 'Object:{"a":[1,2],"b":null}',
  big: 'string:9007199254740993',
  small: 'number:7',
  dbl: 'number:1.5',
  ints: 'Array:[number:1,number:2]',
  texts: 'Array:[string:x,string:y z,null]',
  day: 'Date:2019-02-27T18:30:00.000Z',
  at: 'Date:2024-03-05T06:07:08.123Z',
  local: 'Date:2024-03-05T00:37:08.123Z',
  id: 'string:a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
  nothing: 'null',
}
const TYPES_EXPECTED: Record<string, Record<string, string>> = {
  'pg-promise': PG_TYPES,
  knex: PG_TYPES,
  // DATEONLY's parser keeps the text.
  sequelize: { ...PG_TYPES, day: 'string:2019-02-28' },
  // parseInt8: true (a number, so 2^53 + 1 rounds).
  typeorm: { ...PG_TYPES, big: 'number:9007199254740992' },
  // Its per-query getTypeParser keeps date, timestamp and timestamptz as the server's text.
  drizzle: { ...PG_TYPES, day: 'string:2019-02-28', at: 'string:2024-03-05 06:07:08.123+00', local: 'string:2024-03-05 06:07:08.123' },
  // Its own text parsers, then its value types (Decimal, bigint, Uint8Array, UTC dates).
  prisma: {
    ...PG_TYPES,
    num: 'Decimal2:12.5',
    bin: 'Uint8Array:0102ff',
    big: 'bigint:9007199254740993',
    day: 'Date:2019-02-28T00:00:00.000Z',
    local: 'Date:2024-03-05T06:07:08.123Z',
  },
}

/** Exactly what a program gets: the tunnel, the cluster's name, the CA, AWS credentials. No password. */
function programEnv(s: Stack): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    // Not UTC: a `date` that comes back a day off, or a timestamptz read as local time, shows.
    TZ: 'Asia/Kolkata',
    TUNNEL_HOST: s.tunnelAddr,
    TUNNEL_PORT: String(s.tunnelPort),
    CLUSTER_HOST: s.host,
    CA_FILE: s.caFile,
    ADMIN_USER: s.users.admin.user,
    IAM_USER: s.users.iam.user,
    AWS_ACCESS_KEY_ID: s.aws.accessKeyId,
    AWS_SECRET_ACCESS_KEY: s.aws.secretAccessKey,
    AWS_SESSION_TOKEN: s.aws.sessionToken,
    AWS_REGION: s.aws.region,
    AWS_EC2_METADATA_DISABLED: 'true',
    CHECKPOINT_DISABLE: '1',
  }
}

/** The program's JSON line (fails with everything it printed when there is none). */
function resultOf(out: string, code: number | null): Record<string, any> {
  const line = out.split('\n').find((l) => l.startsWith('{"lib"'))
  assert.ok(line, `no result line (exit ${code}):\n${out}`)
  return JSON.parse(line)
}

/** A step that threw, with the top of its stack and its causes. */
function showError(e: any): string {
  return `${e.name} ${e.code ?? ''}: ${e.message}\n      ${(e.stack ?? []).join('\n      ')}${e.cause ? `\n    cause: ${showError(e.cause)}` : ''}`
}

/** Collects every mismatch of a run, so that one failure lists them all. */
class Checks {
  readonly problems: string[] = []
  same(actual: unknown, expected: unknown, what: string): void {
    if (!isDeepStrictEqual(actual, expected)) this.problems.push(`${what}: got ${inspect(actual, { depth: 4 })}, want ${inspect(expected, { depth: 4 })}`)
  }
  ok(cond: unknown, what: string): void {
    if (!cond) this.problems.push(what)
  }
}

describe('ORMs with this package as pg, through the tunnel with IAM tokens', () => {
  before(
    async () => {
      // Asynchronously: the gate this file's stack runs lives in this process.
      const child = spawn('bash', [path.join(ROOT, 'scripts', 'consumers.sh')], { stdio: ['ignore', 'inherit', 'inherit'] })
      const timer = setTimeout(() => child.kill('SIGKILL'), 180_000)
      const code = await new Promise<number | null>((resolve) => child.on('exit', resolve))
      clearTimeout(timer)
      assert.equal(code, 0, 'scripts/consumers.sh failed')
    },
    { timeout: 200_000 },
  )

  test('pg resolves to this package from every consumer, and no real pg is installed', () => {
    for (const c of CONSUMERS) {
      const req = createRequire(path.join(DIR, 'node_modules', c.pkg, 'package.json'))
      assert.equal(req.resolve('pg'), INDEX, `${c.pkg} resolves pg elsewhere`)
    }
    assert.equal(createRequire(path.join(DIR, 'knex.cjs')).resolve('dsql-tunnel'), INDEX)
    // Every package installed as pg, at any depth, must be the link to this repo.
    const found: string[] = []
    const walkModules = (nm: string, depth: number) => {
      for (const e of fs.readdirSync(nm, { withFileTypes: true })) {
        if (e.name.startsWith('.')) continue
        const p = path.join(nm, e.name)
        if (e.name.startsWith('@')) for (const sub of fs.readdirSync(p)) visit(path.join(p, sub), `${e.name}/${sub}`, depth)
        else visit(p, e.name, depth)
      }
    }
    const visit = (dir: string, name: string, depth: number) => {
      if (name === 'pg') found.push(fs.realpathSync(dir))
      if (fs.lstatSync(dir).isSymbolicLink() || depth > 10) return
      const nested = path.join(dir, 'node_modules')
      if (fs.existsSync(nested)) walkModules(nested, depth + 1)
    }
    walkModules(path.join(DIR, 'node_modules'), 0)
    assert.deepEqual(found, [ROOT])
  })

  test('the certificate is verified: another CA, or another cluster name, fails before any login', { timeout: 60_000 }, async () => {
    const s = stack()
    for (const [what, env] of [
      ['a CA that did not sign the gate', { CA_FILE: path.join(path.dirname(s.caFile), 'untrusted-ca.crt') }],
      ['a cluster name the certificate lacks', { CLUSTER_HOST: s.wrongHost }],
    ] as const) {
      const from = s.gate.log.length
      const exit = await runNode([path.join(DIR, 'pg-promise.cjs')], { ...programEnv(s), ...env }, 50_000)
      const r = resultOf(exit.out, exit.code)
      assert.equal(exit.code, 1, what)
      // The first statement already fails, with the client's code for it (not a server's SQLSTATE).
      const first = r.errors[0]
      assert.equal(first?.step, 'create schemas', `${what}: ${JSON.stringify(r.errors)}`)
      assert.ok(typeof first.code === 'string' && !/^[0-9A-Z]{5}$/.test(first.code), `${what}: ${JSON.stringify(first)}`)
      assert.equal(s.gate.log.slice(from).filter((rec) => rec.kind === 'startup').length, 0, `${what}: a startup reached the gate`)
    }
  })

  for (const c of CONSUMERS) {
    test(c.lib, { timeout: 60_000 }, async () => {
      const s = stack()
      const from = s.gate.log.length
      const args = c.file.endsWith('.mts') ? ['--import', TSX, path.join(DIR, c.file)] : [path.join(DIR, c.file)]
      const exit = await runNode(args, programEnv(s), 50_000)
      const r = resultOf(exit.out, exit.code)
      const t = new Checks()
      for (const e of r.errors ?? []) t.problems.push(`step ${e.step} threw ${showError(e)}`)
      t.same(exit.code, 0, 'exit code')
      for (const [k, v] of Object.entries(EXPECTED)) t.same(r[k], v, k)
      t.same(r.types, TYPES_EXPECTED[c.lib], 'values of TYPES_SQL (as real pg gives them to this library)')
      t.same(r.unique?.code, '23505', 'unique violation code')
      t.same(r.unique?.constraint, 'owner_telephone_uq', 'unique violation constraint')
      // The error's detail reaches the libraries that read it (Sequelize builds `fields` from it).
      if (c.lib !== 'prisma') t.ok(/\(telephone\)=\(555-0100\)/.test(r.unique?.detail), `unique violation detail: ${r.unique?.detail}`)
      if (c.lib === 'sequelize') t.same(r.unique?.fields, { telephone: '555-0100' }, 'UniqueConstraintError.fields')
      t.same(r.concurrent?.n, 8, 'concurrent queries')
      t.ok(r.concurrent?.pids >= 2, `8 queries on a pool of 4 ran on ${r.concurrent?.pids} connection(s)`)
      t.same(r.iam, { who: 'iam_user', schema: c.appSchema, owners: 1 }, 'iam_user with its search_path')
      t.same(r.terminated, { killed: true, after: [1, 2, 3, 4], self: '57P01', again: 5 }, 'queries after the server terminated the pooled connections')
      if (c.lib === 'drizzle') t.ok(r.idleErrors >= 1, `pool 'error' events for terminated idle clients: ${r.idleErrors}`)
      if (c.lib === 'pg-promise') {
        t.ok(/^\d+\.\d+/.test(r.serverVersion), `client.serverVersion from parameterStatus: ${r.serverVersion}`)
        t.same(r.multi, [{ a: 1 }, { b: 'two' }], 'db.multi')
        t.same(r.numeric, 1.25, 'a parser set on pg.types')
      }
      if (c.lib === 'knex') {
        t.same(r.cancel?.error, 'KnexTimeoutError', 'timeout with cancel')
        t.same(r.sleepingAfterCancel, 0, 'statements left running after pg_cancel_backend(connection.processID)')
        t.ok(r.checkedAfterMs < 4000, `the cancelled statement was looked for ${r.checkedAfterMs} ms after it began (it sleeps 5 s)`)
        t.same(r.streamed, [1, 2, 3, 4, 5], '.stream()')
      }
      // Connection failures keep Node's socket error shape (code, syscall, errno), which both sort by.
      if (c.lib === 'sequelize') t.same(r.refused, { error: 'SequelizeConnectionRefusedError', code: 'ECONNREFUSED' }, 'a refused connection')
      if (c.lib === 'prisma') t.same(r.esmSameModule, true, "import pg from 'pg' and require('pg') give the same Pool and types")
      if (c.lib === 'prisma') t.same(r.refused, { error: 'PrismaClientKnownRequestError', code: 'P2010', kind: 'DatabaseNotReachable' }, 'a refused connection')
      if (c.lib === 'typeorm') t.same(r.int8, 9007199254740991, 'int8 with parseInt8 (pg.defaults.parseInt8)')
      // Secrets stay out of what the program printed.
      for (const secret of [s.aws.secretAccessKey, s.aws.sessionToken, s.users.admin.password, s.users.iam.password]) {
        t.ok(!exit.out.includes(secret), 'a secret was printed')
      }

      const records = s.gate.log.slice(from).filter((rec) => rec.kind === 'startup')
      t.ok(records.length >= 4, `only ${records.length} connection(s) reached the gate`)
      for (const rec of records) {
        t.same(rec.sni, s.host, 'SNI')
        t.same(rec.tokenCheck?.ok, true, `${rec.user}'s token check (${rec.tokenCheck?.reason ?? ''})`)
        t.same(rec.tokenCheck?.action, rec.user === 'admin' ? 'DbConnectAdmin' : 'DbConnect', `${rec.user}'s token action`)
        t.ok(/^[0-9a-f]{16}$/.test(rec.tokenHash ?? ''), 'a connection without a token')
      }
      // A SigV4 token is a function of the second it was signed in, so connections opened in the
      // same second carry the same bytes; tokens differ across roles (actions) and seconds.
      const hashesOf = (user: string) => new Set(records.filter((rec) => rec.user === user).map((rec) => rec.tokenHash))
      const adminHashes = hashesOf('admin')
      for (const h of hashesOf('iam_user')) t.ok(!adminHashes.has(h), "iam_user connected with admin's token")
      t.same([...new Set(records.map((rec) => rec.user))].sort(), ['admin', 'iam_user'], 'roles that connected')
      t.ok(records.some((rec) => rec.params?.options?.includes(`search_path=${c.appSchema}`)), 'no startup carried the search_path option')

      assert.equal(t.problems.length, 0, `${c.lib}: ${t.problems.length} problem(s):\n  ${t.problems.join('\n  ')}`)
    })
  }
})
