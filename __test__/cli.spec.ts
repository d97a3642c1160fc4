// The dsql-tunnel command: output and exit codes of check, doctor, token and query, run as a
// separate process (as users run it) against the DSQL-like stack, through its tunnel.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import net from 'node:net'
import { fileURLToPath } from 'node:url'
import { after, before, describe, test } from 'node:test'
import { decodeToken } from '../index.js'
import { startStack, type Stack } from './fixture/stack.ts'

const BIN = fileURLToPath(new URL('../bin/dsql-tunnel.js', import.meta.url))
const RUN_TIMEOUT_MILLIS = 20_000
const ANSI = /\x1b\[/

interface Run {
  args: string[]
  code: number | null
  stdout: string
  stderr: string
  /** This run prints a token on purpose (`token`): its stdout is left out of the no-secrets check. */
  printsSecret: boolean
  /** Colour was forced on. */
  colour: boolean
}

// Every run, for the no-secrets and no-colour checks at the end.
const runs: Run[] = []
const secrets = new Set<string>()

type Env = Record<string, string | undefined>

/** The environment of a fresh shell: nothing PG*, HOSTNAME, AWS_* or colour-related leaks in. */
function cleanEnv(extra: Env): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) {
    if (/^(PG|AWS_)/.test(k) || ['HOSTNAME', 'NO_COLOR', 'FORCE_COLOR', 'NODE_TEST_CONTEXT', 'NODE_OPTIONS'].includes(k)) continue
    env[k] = v
  }
  Object.assign(env, {
    AWS_EC2_METADATA_DISABLED: 'true',
    AWS_CONFIG_FILE: '/nonexistent/aws/config',
    AWS_SHARED_CREDENTIALS_FILE: '/nonexistent/aws/credentials',
  })
  for (const [k, v] of Object.entries(extra)) {
    if (v === undefined) delete env[k]
    else env[k] = v
  }
  return env
}

/** Runs the CLI (async spawn: the gate lives in this process and must keep answering). */
function cli(args: string[], env: Env, opts: { stdin?: string; printsSecret?: boolean } = {}): Promise<Run> {
  const colour = env.FORCE_COLOR !== undefined && env.NO_COLOR === undefined && !args.includes('--no-color')
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: cleanEnv(env), stdio: ['pipe', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d))
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d))
    child.stdin.on('error', () => {})
    child.stdin.end(opts.stdin ?? '')
    const timer = setTimeout(() => child.kill('SIGKILL'), RUN_TIMEOUT_MILLIS)
    child.on('error', (e) => {
      clearTimeout(timer)
      reject(e)
    })
    child.on('close', (code) => {
      clearTimeout(timer)
      const run = { args, code, stdout, stderr, printsSecret: opts.printsSecret ?? false, colour }
      runs.push(run)
      resolve(run)
    })
  })
}

interface Step {
  id: string
  name: string
  ok: boolean
  status: 'pass' | 'warn' | 'fail' | 'skip' | 'info'
  skipped?: boolean
  blockedBy?: string
  detail: string
  notes?: string[]
  fix?: string
  facts?: Record<string, unknown>
}
interface DoctorJson {
  ok: boolean
  host: string | null
  through: string | null
  stoppedAt: string | null
  summary: string
  steps: Step[]
}
interface CheckJson {
  ok: boolean
  host: string | null
  through: string | null
  connection?: { database: string; user: string; host: string; via: string; port: number; verification: string; serverVersion: string }
  error?: { code: string; message: string; fix: string }
  warnings?: { code: string; message: string }[]
}

function parseJson<T>(run: Run): T {
  try {
    return JSON.parse(run.stdout) as T
  } catch {
    assert.fail(`not JSON (exit ${run.code}):\n${run.stdout}\n${run.stderr}`)
  }
}

/** check and doctor, each as text and as JSON, run side by side for one set-up. */
async function diagnose(env: Env) {
  const [check, checkJsonRun, doctor, doctorJsonRun] = await Promise.all([
    cli(['check'], env),
    cli(['check', '--json'], env),
    cli(['doctor'], env),
    cli(['doctor', '--json'], env),
  ])
  return { check, checkJson: parseJson<CheckJson>(checkJsonRun), checkJsonRun, doctor, doctorJson: parseJson<DoctorJson>(doctorJsonRun), doctorJsonRun }
}

const step = (report: DoctorJson, id: string): Step => {
  const s = report.steps.find((x) => x.id === id)
  assert.ok(s, `no step ${id}`)
  return s
}

/** The text report's line for a step: `FAIL  TLS  …`. */
function stepLine(run: Run, verdict: string, name: string): string {
  const line = run.stdout.split('\n').find((l) => new RegExp(`^${verdict}\\s+${name}\\s`).test(l))
  assert.ok(line, `no "${verdict} ${name}" line in:\n${run.stdout}`)
  return line
}

/** The doctor verdicts, the same in the text and the JSON report. */
function assertSameVerdicts(text: Run, json: DoctorJson): void {
  for (const s of json.steps) stepLine(text, s.status.toUpperCase(), s.name)
}

async function freePort(): Promise<number> {
  const server = net.createServer()
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const port = (server.address() as net.AddressInfo).port
  await new Promise((r) => server.close(r))
  return port
}

function stackEnv(stack: Stack, verified = true): Env {
  const env: Env = { ...(verified ? stack.envVerified() : stack.env()) }
  secrets.add(env.PGPASSWORD!)
  return env
}

describe('against the stack (passwords)', () => {
  let stack: Stack
  before(async () => {
    stack = await startStack()
    secrets.add(stack.users.admin.password)
  })
  after(async () => {
    await stack?.stop()
  })

  test('success, with the experiment variables and verify-full: its output, through the tunnel with SNI', async () => {
    const env = stackEnv(stack)
    const r = await diagnose(env)
    assert.equal(r.check.code, 0, r.check.stderr)
    const expected = [
      'DSQL Connectivity Test',
      `Connecting to DSQL cluster: ${stack.host}`,
      `Through tunnel address: 127.0.0.1:${stack.tunnelPort}`,
      'Connection established successfully!',
      'Connection Information:',
      'Database: postgres',
      'User: admin',
      `Host: 127.0.0.1 (via tunnel to ${stack.host})`,
      `Port: ${stack.tunnelPort}`,
      `SSL Status: SSL connection (required by DSQL); certificate verified for ${stack.host}`,
      'Server Version: PostgreSQL 15',
      'Connection test completed successfully!',
    ]
    let at = 0
    for (const e of expected) {
      const i = r.check.stdout.indexOf(e, at)
      assert.ok(i >= at, `missing or out of order: ${e}\n${r.check.stdout}`)
      at = i + e.length
    }
    assert.equal(r.check.stderr, '')
    const seen = stack.gate.lastRecord((x) => x.kind === 'startup' && x.outcome === 'forwarded')
    assert.equal(seen?.sni, stack.host)

    assert.equal(r.checkJson.ok, true)
    assert.equal(r.checkJsonRun.code, 0)
    assert.equal(r.checkJson.connection?.via, stack.host)
    assert.equal(r.checkJson.connection?.verification, 'full')

    assert.equal(r.doctor.code, 0, r.doctor.stdout)
    for (const name of ['tunnel', 'TLS', 'SNI', 'authentication', 'query']) stepLine(r.doctor, 'PASS', name)
    assert.match(stepLine(r.doctor, 'PASS', 'TLS'), /TLSv1\.3, direct negotiation; certificate for .*chain and name verified/)
    assert.match(r.doctor.stdout, /issuer\s+CN=dsql-tunnel fixture CA/)
    assert.match(r.doctor.stdout, /password\s+set, redacted .*environment \(PGPASSWORD\)/)
    assert.match(r.doctor.stdout, /host\s+\S+\s+environment \(HOSTNAME\)/)
    assert.match(stepLine(r.doctor, 'INFO', 'limits'), /60 minutes/)
    assert.match(r.doctor.stdout, /All checks passed/)

    assert.equal(r.doctorJsonRun.code, 0)
    assert.equal(r.doctorJson.ok, true)
    assert.equal(r.doctorJson.stoppedAt, null)
    assert.deepEqual(r.doctorJson.steps.map((s) => s.id), ['config', 'tcp', 'tls', 'sni', 'token', 'auth', 'query', 'limits'])
    assert.ok(r.doctorJson.steps.every((s) => s.ok))
    assert.equal(step(r.doctorJson, 'tls').facts?.nameMatches, true)
    assert.equal(step(r.doctorJson, 'tls').facts?.chainTrusted, true)
    assert.equal(step(r.doctorJson, 'tls').facts?.sniSent, stack.host)
    assertSameVerdicts(r.doctor, r.doctorJson)
  })

  test("success with the experiment's PGSSLMODE=require: works, and says the certificate was not verified", async () => {
    const r = await diagnose(stackEnv(stack, false))
    assert.equal(r.check.code, 0, r.check.stderr)
    assert.match(r.check.stdout, /SSL Status: SSL connection \(required by DSQL\); certificate NOT verified/)
    assert.match(r.check.stdout, /Connection test completed successfully!/)
    assert.match(r.check.stderr, /Warning: sslmode=require .*verify-full/)
    assert.equal(r.checkJson.ok, true)
    assert.equal(r.checkJson.connection?.verification, 'none')
    assert.equal(r.checkJson.warnings?.[0]?.code, 'DSQL_TUNNEL_SSLMODE_REQUIRE')

    assert.equal(r.doctor.code, 0, r.doctor.stdout)
    assert.match(r.doctor.stdout, /note: sslmode=require encrypts but does not verify/)
    stepLine(r.doctor, 'WARN', 'TLS')
    stepLine(r.doctor, 'PASS', 'SNI')
    assert.equal(r.doctorJson.ok, true)
    assert.equal(step(r.doctorJson, 'config').status, 'warn')
    assert.equal(step(r.doctorJson, 'auth').facts?.verification, 'none')
    assertSameVerdicts(r.doctor, r.doctorJson)
  })

  test('tunnel down (nothing listening): ECONNREFUSED, start the tunnel; doctor stops at the tunnel', async () => {
    const port = await freePort()
    const r = await diagnose({ ...stackEnv(stack), PGPORT: String(port) })
    assert.equal(r.check.code, 1)
    assert.match(r.check.stderr, /Connection failed: ECONNREFUSED/)
    assert.match(r.check.stderr, /Fix: Start the tunnel/)
    assert.ok(r.check.stderr.includes(`nc -zv 127.0.0.1 ${port}`))
    assert.doesNotMatch(r.check.stdout, /established/)
    assert.equal(r.checkJson.ok, false)
    assert.equal(r.checkJson.error?.code, 'ECONNREFUSED')

    assert.equal(r.doctor.code, 1)
    assert.match(stepLine(r.doctor, 'FAIL', 'tunnel'), new RegExp(`nothing listens on 127\\.0\\.0\\.1:${port}`))
    assert.match(r.doctor.stdout, /fix: Start the tunnel .*ssh -L/)
    for (const name of ['TLS', 'SNI', 'authentication', 'query']) stepLine(r.doctor, 'SKIP', name)
    assert.match(r.doctor.stdout, /Stopped at tunnel: fix it first\. TLS, SNI, authentication, query were not checked/)
    assert.equal(r.doctorJson.ok, false)
    assert.equal(r.doctorJson.stoppedAt, 'tcp')
    assert.equal(step(r.doctorJson, 'tcp').ok, false)
    assert.equal(step(r.doctorJson, 'tls').skipped, true)
    assert.equal(step(r.doctorJson, 'auth').blockedBy, 'tcp')
    assertSameVerdicts(r.doctor, r.doctorJson)
  })

  test('SNI refused (host is the tunnel address): SNI_REFUSED, set HOSTNAME; doctor pinpoints SNI', async () => {
    const env = { ...stackEnv(stack, false), PGHOST: '127.0.0.1' }
    const before = stack.gate.log.length
    const r = await diagnose(env)
    assert.equal(r.check.code, 1)
    assert.match(r.check.stderr, /Connection failed: SNI_REFUSED: .*sni was not received/)
    assert.match(r.check.stderr, /Fix: host is 127\.0\.0\.1, an address, so no SNI is sent: set HOSTNAME/)
    assert.equal(r.checkJson.error?.code, 'SNI_REFUSED')

    assert.equal(r.doctor.code, 1)
    stepLine(r.doctor, 'PASS', 'tunnel')
    stepLine(r.doctor, 'WARN', 'TLS')
    assert.match(stepLine(r.doctor, 'FAIL', 'SNI'), /refused: unable to accept connection, sni was not received .*no SNI was sent/)
    assert.ok(r.doctor.stdout.includes(`The certificate names ${stack.host}.`))
    stepLine(r.doctor, 'SKIP', 'authentication')
    assert.equal(r.doctorJson.stoppedAt, 'sni')
    assert.equal(step(r.doctorJson, 'sni').facts?.code, 'SNI_REFUSED')
    assert.match(step(r.doctorJson, 'sni').fix ?? '', /HOSTNAME/)
    assertSameVerdicts(r.doctor, r.doctorJson)
    // The gate saw TLS without SNI and refused it, for check and for doctor's probe alike.
    assert.ok(stack.gate.log.slice(before).some((x) => x.outcome === 'refused-no-sni'))
  })

  test('certificate name mismatch (the tunnel leads to another cluster): TLS_NAME_MISMATCH', async () => {
    const wrong = await stack.startGate({ cert: 'wrong-name' })
    try {
      const r = await diagnose({ ...stackEnv(stack), PGPORT: String(wrong.port) })
      assert.equal(r.check.code, 1)
      assert.match(r.check.stderr, /Connection failed: TLS_NAME_MISMATCH/)
      assert.match(r.check.stderr, /Fix: host must be the DSQL hostname the certificate names; .*tunnel leads to another/)
      assert.equal(r.checkJson.error?.code, 'TLS_NAME_MISMATCH')

      assert.equal(r.doctor.code, 1)
      assert.match(stepLine(r.doctor, 'FAIL', 'TLS'), new RegExp(`certificate is for ${stack.wrongHost.replace(/\./g, '\\.')}, not `))
      assert.ok(r.doctor.stdout.includes(`fix: The tunnel leads to ${stack.wrongHost}: if that is the cluster you want, set HOSTNAME=${stack.wrongHost}`))
      stepLine(r.doctor, 'SKIP', 'SNI')
      const tls = step(r.doctorJson, 'tls')
      assert.equal(r.doctorJson.stoppedAt, 'tls')
      assert.equal(tls.facts?.code, 'TLS_NAME_MISMATCH')
      assert.equal(tls.facts?.nameMatches, false)
      assert.equal(tls.facts?.chainTrusted, true)
      assertSameVerdicts(r.doctor, r.doctorJson)
    } finally {
      await wrong.stop()
    }
  })

  test('untrusted CA: TLS_UNKNOWN_CA, set PGSSLROOTCERT to the right CA (or unset it for DSQL)', async () => {
    const untrusted = await stack.startGate({ cert: 'untrusted' })
    try {
      const r = await diagnose({ ...stackEnv(stack), PGPORT: String(untrusted.port) })
      assert.equal(r.check.code, 1)
      assert.match(r.check.stderr, /Connection failed: TLS_UNKNOWN_CA/)
      assert.match(r.check.stderr, /Fix: The certificate does not chain to PGSSLROOTCERT/)
      assert.equal(r.checkJson.error?.code, 'TLS_UNKNOWN_CA')

      assert.equal(r.doctor.code, 1)
      assert.match(stepLine(r.doctor, 'FAIL', 'TLS'), /is not trusted by /)
      assert.match(r.doctor.stdout, /chain\s+NOT trusted/)
      assert.match(r.doctor.stdout, /fix: The certificate does not chain to PGSSLROOTCERT .*Amazon Root CA 1/)
      const tls = step(r.doctorJson, 'tls')
      assert.equal(tls.facts?.code, 'TLS_UNKNOWN_CA')
      assert.equal(tls.facts?.chainTrusted, false)
      assert.equal(tls.facts?.nameMatches, true)
      assertSameVerdicts(r.doctor, r.doctorJson)
    } finally {
      await untrusted.stop()
    }
  })

  test('wrong password: 28P01; doctor gets through the tunnel, TLS and SNI and fails at authentication', async () => {
    const password = 'wrong-password-a7f3c9'
    secrets.add(password)
    const r = await diagnose({ ...stackEnv(stack), PGPASSWORD: password })
    assert.equal(r.check.code, 1)
    assert.match(r.check.stderr, /Connection failed: 28P01: password authentication failed/)
    assert.match(r.check.stderr, /Fix: The password is wrong for user admin/)
    assert.match(r.check.stdout, /Through tunnel address/)
    assert.equal(r.checkJson.error?.code, '28P01')

    assert.equal(r.doctor.code, 1)
    for (const name of ['tunnel', 'TLS', 'SNI']) stepLine(r.doctor, 'PASS', name)
    assert.match(stepLine(r.doctor, 'FAIL', 'authentication'), /28P01/)
    stepLine(r.doctor, 'SKIP', 'query')
    assert.equal(r.doctorJson.stoppedAt, 'auth')
    assert.equal(step(r.doctorJson, 'auth').facts?.code, '28P01')
    assertSameVerdicts(r.doctor, r.doctorJson)
  })

  test('a password from --password-stdin or inside a connection string is used and never echoed', async () => {
    const env = stackEnv(stack)
    const password = env.PGPASSWORD!
    const r = await cli(['check', '--password-stdin'], { ...env, PGPASSWORD: 'not-this-one-1b2c' }, { stdin: `${password}\n` })
    secrets.add('not-this-one-1b2c')
    assert.equal(r.code, 0, r.stderr)
    const d = await cli(['doctor', '--json', '--password-stdin'], { ...env, PGPASSWORD: undefined }, { stdin: password })
    const report = parseJson<DoctorJson>(d)
    assert.equal(report.ok, true)
    assert.match(JSON.stringify(step(report, 'config').facts), /"password":\{"value":"set, redacted[^"]*","source":"flag --password-stdin"\}/)

    const url = `postgres://admin:${encodeURIComponent(password)}@${stack.host}:${stack.tunnelPort}/postgres?hostaddr=127.0.0.1&sslrootcert=${encodeURIComponent(stack.caFile)}`
    const [viaUrl, doctorUrl] = await Promise.all([cli(['check', url], {}), cli(['doctor', '--json', url], {})])
    assert.equal(viaUrl.code, 0, viaUrl.stderr)
    const urlReport = parseJson<DoctorJson>(doctorUrl)
    assert.equal(urlReport.ok, true)
    assert.equal((step(urlReport, 'config').facts?.settings as Record<string, { source: string }>).password.source, 'connection string')
  })

  test('query: a parameter, an aligned table, --json rows; SQL errors exit 1 with the SQLSTATE', async () => {
    const env = stackEnv(stack)
    const sql = "select $1::int + 1 as answer, 'tunnel' as via, null::text as nothing"
    const table = await cli(['query', sql, '41'], env)
    assert.equal(table.code, 0, table.stderr)
    assert.equal(table.stdout, [
      ' answer |  via   | nothing ',
      '--------+--------+---------',
      '     42 | tunnel |',
      '(1 row)',
      '',
    ].map((l) => l.trimEnd()).join('\n'))
    const json = await cli(['query', '--json', 'select $1::text as word, $2::int * 2 as n', 'hello', '--', '-21'], env)
    assert.equal(json.code, 0, json.stderr)
    assert.deepEqual(JSON.parse(json.stdout), [{ word: 'hello', n: -42 }])
    const bad = await cli(['query', 'select no_such_column'], env)
    assert.equal(bad.code, 1)
    assert.match(bad.stderr, /ERROR: 42703: column "no_such_column" does not exist/)
  })

  test('colour only when asked on a pipe (FORCE_COLOR), and NO_COLOR wins', async () => {
    const env = stackEnv(stack)
    const forced = await cli(['doctor'], { ...env, FORCE_COLOR: '1' })
    assert.match(forced.stdout, ANSI)
    const noColor = await cli(['doctor'], { ...env, FORCE_COLOR: '1', NO_COLOR: '1' })
    assert.doesNotMatch(noColor.stdout + noColor.stderr, ANSI)
    const flag = await cli(['check', '--no-color'], { ...env, FORCE_COLOR: '1' })
    assert.doesNotMatch(flag.stdout + flag.stderr, ANSI)
  })
})

describe('against a stack that checks IAM tokens', () => {
  let stack: Stack
  let aws: Env
  before(async () => {
    stack = await startStack({ tokenAuth: true })
    secrets.add(stack.aws.secretAccessKey)
    secrets.add(stack.aws.sessionToken)
    aws = { AWS_ACCESS_KEY_ID: stack.aws.accessKeyId, AWS_SECRET_ACCESS_KEY: stack.aws.secretAccessKey, AWS_SESSION_TOKEN: stack.aws.sessionToken }
  })
  after(async () => {
    await stack?.stop()
  })

  test('expired token: TOKEN_EXPIRED before any connection; doctor decodes it and stops at the token', async () => {
    const token = stack.presignToken({ now: new Date(Date.now() - 3_600_000), expiresIn: 900 })
    secrets.add(token)
    const r = await diagnose({ ...stackEnv(stack), PGPASSWORD: token })
    assert.equal(r.check.code, 1)
    assert.match(r.check.stderr, /Connection failed: TOKEN_EXPIRED: .*expired at/)
    assert.match(r.check.stderr, /Fix: Generate a new token \(export PGPASSWORD=\$\(dsql-tunnel token --host /)
    assert.equal(r.checkJson.error?.code, 'TOKEN_EXPIRED')

    assert.equal(r.doctor.code, 1)
    for (const name of ['tunnel', 'TLS', 'SNI']) stepLine(r.doctor, 'PASS', name)
    assert.match(stepLine(r.doctor, 'FAIL', 'token'), /the token expired at .*, 45 min ago/)
    assert.match(r.doctor.stdout, /action\s+DbConnectAdmin/)
    assert.match(r.doctor.stdout, /region\s+us-east-1/)
    assert.match(r.doctor.stdout, /fix: Generate a new token .*or unset PGPASSWORD/)
    stepLine(r.doctor, 'SKIP', 'authentication')
    const t = step(r.doctorJson, 'token')
    assert.equal(r.doctorJson.stoppedAt, 'token')
    assert.equal(t.facts?.code, 'TOKEN_EXPIRED')
    assert.equal(t.facts?.host, stack.host)
    assert.ok((t.facts?.secondsLeft as number) < -2000)
    assertSameVerdicts(r.doctor, r.doctorJson)
  })

  test('a token signed for the tunnel address: TOKEN_HOST_MISMATCH, explained', async () => {
    const token = stack.presignToken({ host: '127.0.0.1' })
    secrets.add(token)
    const d = await cli(['doctor', '--json'], { ...stackEnv(stack), PGPASSWORD: token })
    const t = step(parseJson<DoctorJson>(d), 'token')
    assert.equal(d.code, 1)
    assert.equal(t.facts?.code, 'TOKEN_HOST_MISMATCH')
    assert.match(t.detail, /signed for 127\.0\.0\.1, but host is /)
  })

  test('token prints a fresh token (host, action by user, region, lifetime) that the gate accepts', async () => {
    const admin = await cli(['token', '--host', stack.host, '--region', 'us-east-1'], aws, { printsSecret: true })
    assert.equal(admin.code, 0, admin.stderr)
    const claims = decodeToken(admin.stdout.trim())
    assert.equal(claims?.host, stack.host)
    assert.equal(claims?.action, 'DbConnectAdmin')
    assert.equal(claims?.region, 'us-east-1')
    assert.equal(claims?.accessKeyId, stack.aws.accessKeyId)

    const iam = await cli(['token', '--user', 'iam_user', '--expires-in', '60'], { ...aws, HOSTNAME: stack.host }, { printsSecret: true })
    const c = decodeToken(iam.stdout.trim())
    assert.equal(c?.action, 'DbConnect')
    assert.equal(c?.host, stack.host)
    assert.equal((c!.expiresAt.getTime() - c!.signedAt.getTime()) / 1000, 60)

    secrets.add(admin.stdout.trim())
    const check = await cli(['check'], { ...stackEnv(stack), PGPASSWORD: admin.stdout.trim() })
    assert.equal(check.code, 0, check.stderr)
    assert.equal(stack.gate.lastRecord((x) => x.kind === 'startup')?.tokenCheck?.ok, true)

    const none = await cli(['token'], aws)
    assert.equal(none.code, 2)
    assert.match(none.stderr, /token needs the cluster's hostname/)
  })

  test("a valid token is decoded by doctor; without one, it is minted from AWS credentials", async () => {
    const d = await cli(['doctor'], stackEnv(stack))
    assert.equal(d.code, 0, d.stdout)
    assert.match(stepLine(d, 'PASS', 'token'), /DbConnectAdmin token for .* in us-east-1, expires in 15 min/)

    const env = { ...stackEnv(stack), PGPASSWORD: undefined, ...aws }
    const minted = await diagnose(env)
    assert.equal(minted.check.code, 0, minted.check.stderr)
    assert.equal(minted.doctor.code, 0, minted.doctor.stdout)
    assert.match(stepLine(minted.doctor, 'PASS', 'token'), /no password: a DbConnectAdmin token is minted for every connection, from environment \(AWS_ACCESS_KEY_ID\)/)
    assert.equal(step(minted.doctorJson, 'token').facts?.kind, 'minted')
    assert.equal(stack.gate.lastRecord((x) => x.kind === 'startup' && x.outcome === 'forwarded')?.tokenCheck?.ok, true)

    const noCredentials = await cli(['doctor', '--json'], { ...stackEnv(stack), PGPASSWORD: undefined })
    const t = step(parseJson<DoctorJson>(noCredentials), 'token')
    assert.equal(noCredentials.code, 1)
    assert.equal(t.facts?.code, 'CREDENTIALS_UNAVAILABLE')
    assert.match(t.fix ?? '', /AWS_ACCESS_KEY_ID/)
  })
})

describe('usage', () => {
  test('--help for each command; unknown flags and commands are usage errors (exit 2) with the help', async () => {
    const [main, check, doctor, token, query] = await Promise.all(
      [[], ['check'], ['doctor'], ['token'], ['query']].map((args) => cli([...args, '--help'], {})),
    )
    assert.equal(main.code, 0)
    assert.match(main.stdout, /^Usage: dsql-tunnel <command>/)
    for (const c of ['check', 'doctor', 'token', 'query']) assert.ok(main.stdout.includes(`  ${c} `), c)
    for (const [run, name] of [[check, 'check'], [doctor, 'doctor'], [token, 'token'], [query, 'query']] as const) {
      assert.equal(run.code, 0, name)
      assert.ok(run.stdout.startsWith(`Usage: dsql-tunnel ${name}`), name)
      assert.equal(run.stderr, '')
    }
    assert.match(check.stdout, /--hostaddr <address>\s+the tunnel address.*PGHOSTADDR/)
    assert.match(doctor.stdout, /--json/)
    assert.match(token.stdout, /--expires-in <seconds>/)
    assert.match(query.stdout, /\[params\.\.\.\]/)

    const unknown = await cli(['check', '--passwrd', 'x'], {})
    assert.equal(unknown.code, 2)
    assert.match(unknown.stderr, /Unknown option '--passwrd'/)
    assert.match(unknown.stderr, /Usage: dsql-tunnel check/)
    const noCommand = await cli([], {})
    assert.equal(noCommand.code, 2)
    assert.match(noCommand.stderr, /Usage: dsql-tunnel <command>/)
    const badCommand = await cli(['chek'], {})
    assert.equal(badCommand.code, 2)
    assert.match(badCommand.stderr, /unknown command "chek"/)
    const noSql = await cli(['query'], {})
    assert.equal(noSql.code, 2)
    const badTimeout = await cli(['check', '--connect-timeout', 'soon'], {})
    assert.equal(badTimeout.code, 2)
  })

  test('a configuration error: doctor fails at configuration and says which setting', async () => {
    const r = await cli(['doctor', '--json'], { HOSTNAME: 'my-laptop' })
    assert.equal(r.code, 1)
    const report = parseJson<DoctorJson>(r)
    assert.equal(report.stoppedAt, 'config')
    assert.match(step(report, 'config').detail, /INVALID_CONFIG: no host: .*HOSTNAME is "my-laptop"/)
    assert.equal(step(report, 'tcp').skipped, true)
  })
})

test('no secret (password, token, AWS secret key or session token) in any output; no colour on a pipe', () => {
  assert.ok(runs.length > 30, `only ${runs.length} runs`)
  assert.ok(secrets.size >= 6)
  for (const run of runs) {
    const text = run.printsSecret ? run.stderr : run.stdout + run.stderr
    for (const s of secrets) assert.ok(!text.includes(s), `a secret appeared in the output of dsql-tunnel ${run.args.join(' ')}`)
    if (!run.colour) assert.doesNotMatch(text, ANSI, `colour in dsql-tunnel ${run.args.join(' ')}`)
  }
})
