// Secrets and defaults: verify-full unless `require` is asked for by name (which warns once per
// process), no setting that silently weakens TLS, and no password, token, AWS secret key or
// session token in any message, stack, inspected object, JSON, log line or CLI output produced
// while the suite's scenarios run again here.
import assert from 'node:assert/strict'
import path from 'node:path'
import { inspect } from 'node:util'
import { after, describe, test } from 'node:test'
import { Client, connect, generateToken, Pool, resolveConfig, type ClientConfig, type PoolConfig } from '../index.js'
import { HostileServer } from './fixture/faults.ts'
import { ROOT, runNode, through, useStack, withEnv, type Exit } from './helpers.ts'

const stack = useStack()
const BIN = path.join(ROOT, 'bin', 'dsql-tunnel.js')

function runIsolated(args: string[], env: Record<string, string | undefined>, timeoutMs = 20_000): Promise<Exit> {
  const merged: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) if (!/^(PG|AWS_)/.test(k) && k !== 'HOSTNAME' && k !== 'NODE_OPTIONS' && k !== 'NODE_TEST_CONTEXT') merged[k] = v
  Object.assign(merged, { AWS_EC2_METADATA_DISABLED: 'true', AWS_CONFIG_FILE: '/nonexistent/c', AWS_SHARED_CREDENTIALS_FILE: '/nonexistent/k' })
  for (const [k, v] of Object.entries(env)) if (v === undefined) delete merged[k]; else merged[k] = v
  return runNode(args, merged, timeoutMs)
}

describe('TLS defaults', () => {
  test('verify-full is the default, from every source that leaves sslmode unset or empty', async () => {
    const s = stack()
    for (const config of [{ host: s.host }, { host: s.host, sslmode: '' as never }, `host=${s.host} sslmode=''`, `postgres://${s.host}/db`]) {
      const r = await withEnv({ PGSSLMODE: undefined }, async () => resolveConfig(config))
      assert.equal(r.sslmode, 'verify-full', JSON.stringify(config))
      assert.equal(r.verification, 'full')
    }
    await withEnv({ PGSSLMODE: '' }, async () => assert.equal(resolveConfig({ host: s.host }).verification, 'full'))
  })

  // The options below try to switch verification off on purpose: the test asserts they do not.
  test('no setting silently weakens TLS: pg-style ssl options, NODE_TLS_REJECT_UNAUTHORIZED=0, other sources and negotiation modes still verify', async () => {
    const s = stack()
    const untrusted = await s.startGate({ cert: 'untrusted', tunnel: false })
    const wrongName = await s.startGate({ cert: 'wrong-name', tunnel: false })
    try {
      // Each variant asks for weaker TLS on purpose: the point is that none of them gets it.
      const variants: Array<[string, ClientConfig & Record<string, unknown>, Record<string, string | undefined>]> = [
        ['defaults', {}, {}],
        ['ssl: false (pg)', { ssl: false }, {}],
        ['rejectUnauthorized: false', { rejectUnauthorized: false }, {}],
        ['NODE_TLS_REJECT_UNAUTHORIZED=0', {}, { NODE_TLS_REJECT_UNAUTHORIZED: '0' }],
        ['sslnegotiation=postgres', { sslnegotiation: 'postgres' }, {}],
        ['sslmode=VERIFY-FULL', { sslmode: 'VERIFY-FULL' as never }, {}],
        ['option verify-full over PGSSLMODE=require', { sslmode: 'verify-full' }, { PGSSLMODE: 'require' }],
        ['option verify-full over a connection string with require', { sslmode: 'verify-full', connectionString: 'sslmode=require' }, {}],
        ['sslrootcert=system', { sslrootcert: 'system' }, {}],
      ]
      for (const [label, extra, env] of variants) {
        await withEnv({ PGSSLMODE: undefined, ...env }, async () => {
          for (const [g, codes] of [[untrusted, ['TLS_UNKNOWN_CA']], [wrongName, ['TLS_NAME_MISMATCH', 'TLS_UNKNOWN_CA']]] as const) {
            // The test CA is trusted (sslrootcert), so only the certificate itself can fail.
            const options: ClientConfig = { ...through(s, { port: g.port }), ...extra }
            const err = await connect(options).then(() => null, (e: Error & { code?: string }) => e)
            assert.ok(err, `${label}: connected to a gate with a ${g.gate.cert} certificate`)
            assert.ok((codes as readonly string[]).includes(err.code ?? ''), `${label} → ${err.code}: ${err.message}`)
          }
        })
      }
      // Ways to ask for plaintext, from any source, are configuration errors before any dialling.
      const before = untrusted.gate.log.length + wrongName.gate.log.length
      for (const [cs, env] of [
        ['sslmode=disable', {}], ['sslmode=prefer', {}], [`postgres://h/db?sslmode=allow`, {}], ['sslmode=no-verify', {}],
        [undefined, { PGSSLMODE: 'disable' }], [undefined, { PGSSLMODE: 'prefer' }], ['ssl=false', {}],
      ] as const) {
        await withEnv({ PGSSLMODE: undefined, ...env }, async () => {
          const err = await connect({ ...through(s, { port: untrusted.port }), connectionString: cs }).then(() => null, (e: Error & { code?: string }) => e)
          assert.equal(err?.code, 'INVALID_CONFIG', `${cs ?? JSON.stringify(env)}: ${err?.code}`)
        })
      }
      assert.equal(untrusted.gate.log.length + wrongName.gate.log.length, before)
    } finally {
      await untrusted.stop()
      await wrongName.stop()
    }
  })

  test('sslmode=require warns exactly once per process, however many clients, pools and sources use it; verifying modes never warn', async () => {
    const s = stack()
    const g = await s.startGate({ cert: 'untrusted', tunnel: false })
    try {
      const code = `const dt = require(${JSON.stringify(ROOT)}); (async () => {
        const o = JSON.parse(process.env.OPTS)
        for (let i = 0; i < 3; i++) await (await dt.connect({ ...o, sslmode: 'require' })).end()
        const p = new dt.Pool({ ...o, sslmode: 'require', max: 3 }); await Promise.all([p.query('select 1'), p.query('select 2'), p.query('select 3')]); await p.end()
        await (await dt.connect({ ...o, connectionString: 'sslmode=require' })).end()
        process.env.PGSSLMODE = 'require'; await (await dt.connect(o)).end()
        console.log('ok')
      })().catch((e) => { console.log('failed', e.code, e.message); process.exit(1) })`
      const opts = through(s, { port: g.port })
      delete opts.sslrootcert
      const r = await runIsolated(['-e', code], { OPTS: JSON.stringify(opts) })
      assert.equal(r.code, 0, r.out)
      assert.equal(r.out.match(/DSQL_TUNNEL_SSLMODE_REQUIRE/g)?.length, 1, r.out)
      const verifying = await runIsolated(['-e', `const dt = require(${JSON.stringify(ROOT)}); (async () => {
        const o = JSON.parse(process.env.OPTS); await (await dt.connect(o)).end(); await (await dt.connect({ ...o, sslmode: 'verify-ca' })).end()
        await (await dt.connect({ ...o, sslmode: 'require' })).end(); console.log('ok') })()`], { OPTS: JSON.stringify(through(s)) })
      assert.equal(verifying.code, 0, verifying.out)
      assert.doesNotMatch(verifying.out, /DSQL_TUNNEL_SSLMODE_REQUIRE|Warning/, 'require with sslrootcert verifies the chain: no warning')
    } finally {
      await g.stop()
    }
  })
})

describe('no secret anywhere', () => {
  // Every string a user or log could see, gathered while the scenarios run; checked at the end.
  const seen: Array<{ where: string; text: string }> = []
  const secrets = new Map<string, string>()
  const show = (where: string, text: string): void => {
    seen.push({ where, text })
  }
  const secret = (label: string, value: string): string => {
    secrets.set(value, label)
    return value
  }

  function record(where: string, err: unknown): void {
    const e = err as Error & { cause?: unknown }
    show(`${where}: message`, String(e?.message))
    show(`${where}: stack`, String(e?.stack))
    show(`${where}: String`, String(e))
    show(`${where}: inspect`, inspect(e, { showHidden: true, depth: 10 }))
    show(`${where}: JSON`, JSON.stringify(e) ?? '')
    show(`${where}: JSON of own properties`, JSON.stringify(Object.getOwnPropertyNames(e ?? {}).map((k) => (e as never)[k])) ?? '')
    if (e?.cause) record(`${where} › cause`, e.cause)
  }

  async function attempt(where: string, fn: () => Promise<unknown>): Promise<void> {
    try {
      const r = await fn()
      show(`${where}: result`, inspect(r, { showHidden: true, depth: 10 }))
    } catch (e) {
      record(where, e)
    }
  }

  function showObject(where: string, o: unknown): void {
    show(`${where}: inspect`, inspect(o, { showHidden: true, depth: 10 }))
    show(`${where}: JSON`, JSON.stringify(o) ?? '')
    show(`${where}: String`, String(o))
  }

  const warnings: Error[] = []
  const onWarning = (w: Error) => warnings.push(w)
  process.on('warning', onWarning)
  after(() => {
    process.off('warning', onWarning)
  })

  test('in-process scenarios: connections, failures, pools, tokens, TLS, configuration', async () => {
    const s = stack()
    const adminPw = secret('admin password', s.users.admin.password)
    secret('app_user password', s.users.app.password)
    secret('iam_user password', s.users.iam.password)
    secret('AWS secret access key', s.aws.secretAccessKey)
    secret('AWS session token', s.aws.sessionToken)
    secret('AWS session token (URL-encoded)', encodeURIComponent(s.aws.sessionToken))
    const wrongPw = secret('a wrong password', 'Wr0ng-passw0rd-value-7731')
    const token = s.presignToken()
    secret('a static token', token)
    secret('its signature', /X-Amz-Signature=([0-9a-f]+)/.exec(token)![1])
    const g = await s.startGate({ tokenAuth: true })
    const untrusted = await s.startGate({ cert: 'untrusted', tunnel: false })
    const wrongName = await s.startGate({ cert: 'wrong-name', tunnel: false })
    const creds = { accessKeyId: s.aws.accessKeyId, secretAccessKey: s.aws.secretAccessKey, sessionToken: s.aws.sessionToken }
    const minting: ClientConfig = { ...through(s, { port: g.port }), credentials: creds }
    delete minting.password
    try {
      // Successes: static password (both negotiations), minted tokens, a static token, password functions.
      for (const sslnegotiation of ['direct', 'postgres'] as const) {
        const c = await connect(through(s, { sslnegotiation }))
        showObject('connected client', c)
        showObject('client.connection', c.connection)
        await attempt('a query', () => c.query('select 1 as one'))
        await attempt('a failing query', () => c.query('select 1 / $1::int', [0]))
        await attempt('a timed-out query', () => c.query('select pg_sleep(2)', [], { timeoutMillis: 50 }))
        await c.end()
        showObject('ended client', c)
      }
      const minted = await connect(minting)
      showObject('client with minted token', minted)
      await minted.end()
      await attempt('static token', async () => (await connect(through(s, { port: g.port, password: token }))).end())
      await attempt('password function', async () => (await connect(through(s, { password: async () => adminPw }))).end())
      showObject('unconnected client', new Client(through(s)))
      // Failures: authentication, tokens, TLS, dialling, configuration.
      await attempt('wrong password', () => connect(through(s, { password: wrongPw })))
      await attempt('wrong password through token gate', () => connect(through(s, { port: g.port, password: wrongPw })))
      await attempt('foreign token', () => connect(through(s, { port: g.port, password: secret('foreign token', s.presignToken({ credentials: { accessKeyId: 'AKIAFOREIGN000000000', secretAccessKey: 'x' } })) })))
      await attempt('expired token', () => connect(through(s, { port: g.port, password: secret('expired token', s.presignToken({ now: new Date(Date.now() - 7200_000) })) })))
      await attempt('token for the tunnel address', () => connect(through(s, { port: g.port, password: secret('token for 127.0.0.1', s.presignToken({ host: '127.0.0.1' })) })))
      await attempt('malformed token', () => connect(through(s, { port: g.port, password: secret('malformed token', token.slice(0, -20)) })))
      await attempt('untrusted CA', () => connect(through(s, { port: untrusted.port })))
      await attempt('certificate for another name', () => connect(through(s, { port: wrongName.port })))
      await attempt('nothing listening', () => connect(through(s, { port: 1 })))
      await attempt('silent listener', () => connect(through(s, { port: s.silentPort, connectionTimeoutMillis: 100 })))
      const garbage = await new HostileServer({ stage: 'startup', reply: 'close', cert: s.certs.good }).start()
      await attempt('server closing in set-up', () => connect(through(s, { port: garbage.port })))
      await garbage.stop()
      await attempt('bad credentials option', () => connect({ ...minting, credentials: { accessKeyId: 1, secretAccessKey: s.aws.secretAccessKey } as never }))
      await attempt('password function returning a number', () => connect(through(s, { password: (() => 42) as never })))
      await attempt('bad port, with a password', () => connect(through(s, { port: 'x' as never })))
      await attempt('bad sslmode, with a password', () => connect(through(s, { sslmode: 'disable' as never })))
      // Connection strings holding passwords: valid, malformed, URL-encoded.
      const csPw = secret('connection string password', 'Cs-p@ss word/42')
      await attempt('URL with a password', () => connect({ connectionString: `postgres://admin:${encodeURIComponent(csPw)}@${s.host}:${s.tunnelPort}/postgres?hostaddr=127.0.0.1&sslrootcert=${encodeURIComponent(s.caFile)}` }))
      await attempt('key=value with a quoted password', () => connect(`host=${s.host} hostaddr=127.0.0.1 port=${s.tunnelPort} password='${csPw}' sslrootcert=${s.caFile}`))
      await attempt('malformed URL with a password', () => connect(`postgres://admin:${secret('malformed URL password', 'Malf0rmed-url-pw-1')}@h:1/%zz`))
      await attempt('unknown key after a password', () => connect(`host=h password=${secret('kv password', 'Kv-password-value-9')} sslpassword=x`))
      for (const config of [through(s), `postgres://admin:${encodeURIComponent(csPw)}@${s.host}/db`, { host: s.host, credentials: creds }]) {
        await attempt('resolveConfig', async () => resolveConfig(config))
      }
      await withEnv({ PGPASSWORD: adminPw, AWS_SECRET_ACCESS_KEY: s.aws.secretAccessKey }, async () => {
        await attempt('resolveConfig from the environment', async () => resolveConfig({ host: s.host }))
      })
      await attempt('generateToken with bad options', () => generateToken({ host: 'localhost', credentials: creds }))
      // Pools: success, exhaustion, authentication failure, inspection.
      const pool = new Pool({ ...minting, max: 1, connectionTimeoutMillis: 300 } as PoolConfig)
      await attempt('pool query', () => pool.query('select 1'))
      const held = await pool.connect()
      showObject('pool client', held)
      await attempt('pool exhausted', () => pool.query('select 1'))
      held.release()
      showObject('pool', pool)
      await pool.end()
      const badPool = new Pool(through(s, { password: wrongPw }))
      await attempt('pool with a wrong password', () => badPool.query('select 1'))
      showObject('pool with a wrong password', badPool)
      await badPool.end()
    } finally {
      await g.stop()
      await untrusted.stop()
      await wrongName.stop()
    }
    for (const w of warnings) record('process warning', w)
    assert.ok(seen.length > 150, `only ${seen.length} texts gathered`)
    // The check itself finds a secret where there is one.
    assert.throws(() => assertNoSecret([{ where: 'a planted line', text: `x${adminPw}x` }], secrets), /admin password appeared in a planted line/)
    assertNoSecret(seen, secrets)
  })

  test('DEBUG=dsql-tunnel logs and console output of a child running the same kinds of scenario', async () => {
    const s = stack()
    const g = await s.startGate({ tokenAuth: true })
    try {
      const code = `const dt = require(${JSON.stringify(ROOT)}); const { inspect } = require('node:util'); (async () => {
        const o = JSON.parse(process.env.OPTS); const creds = JSON.parse(process.env.CREDS)
        const show = (x) => { console.log(x); console.error(inspect(x, { showHidden: true, depth: 10 })) }
        const c = await dt.connect(o); show(c); await c.query('select pg_sleep(1)', [], { timeoutMillis: 50 }).catch(show); await c.end()
        const m = { ...o, port: Number(process.env.GATE_PORT), credentials: creds }; delete m.password
        const p = new dt.Pool({ ...m, max: 1, idleTimeoutMillis: 50 }); await p.query('select 1'); show(p)
        await new Promise((r) => setTimeout(r, 120)); await p.end()
        await dt.connect({ ...o, password: process.env.WRONG }).catch(show)
        await dt.connect({ ...o, port: Number(process.env.GATE_PORT), password: process.env.TOKEN }).then((x) => x.end(), show)
        await dt.connect({ ...o, port: Number(process.env.GATE_PORT), password: process.env.WRONG }).catch(show)
        console.log('done')
      })()`
      const token = s.presignToken()
      const wrong = 'Wr0ng-in-child-4411'
      const r = await runIsolated(['-e', code], {
        DEBUG: 'dsql-tunnel', OPTS: JSON.stringify(through(s)), GATE_PORT: String(g.port), TOKEN: token, WRONG: wrong,
        CREDS: JSON.stringify({ accessKeyId: s.aws.accessKeyId, secretAccessKey: s.aws.secretAccessKey, sessionToken: s.aws.sessionToken }),
      })
      assert.equal(r.code, 0, r.out)
      assert.match(r.out, /dsql-tunnel \S+ connected host=/)
      assert.match(r.out, /done/)
      assert.ok(g.gate.log.some((rec) => rec.tokenCheck?.ok), 'the child minted a token the gate accepted')
      // The child's environment held them all; only its output is checked.
      assertNoSecret([{ where: 'child output', text: r.out }], new Map([
        [s.users.admin.password, 'admin password'], [token, 'token'], [/X-Amz-Signature=([0-9a-f]+)/.exec(token)![1], 'signature'],
        [wrong, 'wrong password'], [s.aws.secretAccessKey, 'AWS secret key'], [s.aws.sessionToken, 'session token'],
        [encodeURIComponent(s.aws.sessionToken), 'session token (URL-encoded)'],
      ]))
    } finally {
      await g.stop()
    }
  })

  test('the dsql-tunnel command: check and doctor --json, with a password and with minted tokens', async () => {
    const s = stack()
    const g = await s.startGate({ tokenAuth: true })
    try {
      const env = { ...s.envVerified() } as Record<string, string | undefined>
      const token = s.presignToken()
      const runs = await Promise.all([
        runIsolated([BIN, 'check'], env),
        runIsolated([BIN, 'doctor', '--json'], env),
        runIsolated([BIN, 'doctor', '--json'], { ...env, PGPASSWORD: 'Wr0ng-cli-pw-5512' }),
        runIsolated([BIN, 'doctor', '--json'], { ...env, PGPORT: String(g.port), PGPASSWORD: token }),
        runIsolated([BIN, 'check'], { ...env, PGPORT: String(g.port), PGPASSWORD: undefined, AWS_ACCESS_KEY_ID: s.aws.accessKeyId, AWS_SECRET_ACCESS_KEY: s.aws.secretAccessKey, AWS_SESSION_TOKEN: s.aws.sessionToken }),
        runIsolated([BIN, 'doctor', '--json'], { ...env, PGPORT: String(g.port), PGPASSWORD: undefined, AWS_ACCESS_KEY_ID: s.aws.accessKeyId, AWS_SECRET_ACCESS_KEY: s.aws.secretAccessKey, AWS_SESSION_TOKEN: s.aws.sessionToken }),
      ])
      assert.equal(runs[0].code, 0, runs[0].out)
      assert.equal(runs[4].code, 0, runs[4].out)
      assertNoSecret(runs.map((r, i) => ({ where: `CLI run #${i}`, text: r.out })), new Map([
        [s.users.admin.password, 'admin password'], ['Wr0ng-cli-pw-5512', 'wrong password'], [token, 'token'],
        [/X-Amz-Signature=([0-9a-f]+)/.exec(token)![1], 'signature'], [s.aws.secretAccessKey, 'AWS secret key'],
        [s.aws.sessionToken, 'session token'], [encodeURIComponent(s.aws.sessionToken), 'session token (URL-encoded)'],
      ]))
    } finally {
      await g.stop()
    }
  })

  test('a minted token is reported as minted (connection.tokenMinted, tokenMillis; DEBUG token=minted), never shown', async () => {
    const s = stack()
    const g = await s.startGate({ tokenAuth: true })
    try {
      const options: ClientConfig = { ...through(s, { port: g.port }), credentials: { ...s.aws } }
      delete options.password
      const c = await connect(options)
      await c.end()
      assert.equal(g.gate.lastRecord((r) => r.kind === 'startup')?.tokenCheck?.ok, true)
      assert.equal(c.connection?.tokenMinted, true, `connection info: ${inspect(c.connection)}`)
      assert.ok((c.connection?.tokenMillis ?? 0) > 0)
    } finally {
      await g.stop()
    }
  })

  test('a libpq password with a space written unquoted: no part of it in the error', async () => {
    // `password=correct horse` reads "horse" as the next key; the message names that key.
    const err = await connect(`host=${stack().host} password=correct horse battery`).then(() => null, (e: Error) => e)
    assert.equal((err as Error & { code?: string })?.code, 'INVALID_CONFIG')
    const shown = inspect(err, { showHidden: true, depth: 5 }) + JSON.stringify(err)
    for (const part of ['horse', 'battery']) assert.ok(!shown.includes(part), `"${part}" (part of the password) is in: ${err?.message}`)
  })
})

/** Fails naming the first secret found and where, without printing the secret itself. */
function assertNoSecret(seen: Array<{ where: string; text: string }>, secrets: Map<string, string>): void {
  for (const { where, text } of seen) {
    for (const [value, label] of secrets) {
      if (value.length >= 8 && text.includes(value)) assert.fail(`the ${label} appeared in ${where}`)
    }
  }
}

