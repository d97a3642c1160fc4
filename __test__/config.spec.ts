// Configuration: the connectivity experiment's environment alone is enough; options beat
// connection strings beat the environment; bad values name the setting.
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { Client, connect, resolveConfig } from '../index.js'
import { rejectsWith, through, useStack, withEnv } from './helpers.ts'

const stack = useStack()

const CLEAR = Object.fromEntries(
  ['PGHOST', 'PGHOSTADDR', 'PGPORT', 'PGUSER', 'PGDATABASE', 'PGPASSWORD', 'PGSSLMODE', 'PGSSLROOTCERT', 'PGSSLNEGOTIATION', 'PGAPPNAME', 'PGCONNECT_TIMEOUT', 'HOSTNAME'].map((k) => [k, undefined]),
)

describe('from the environment', () => {
  test("the experiment's variables alone (HOSTNAME, PGHOSTADDR, PGPASSWORD, PGSSLMODE=require)", async () => {
    const e = stack().env()
    await withEnv({ ...CLEAR, HOSTNAME: e.HOSTNAME, PGHOSTADDR: e.PGHOSTADDR, PGPASSWORD: e.PGPASSWORD, PGSSLMODE: e.PGSSLMODE, PGPORT: e.PGPORT }, async () => {
      const client = await connect()
      try {
        const r = await client.query('select current_user as u, current_database() as d')
        assert.deepEqual(r.rows, [{ u: 'admin', d: 'postgres' }])
        assert.equal(stack().gate.lastRecord((x) => x.kind === 'startup')?.sni, stack().host)
        assert.equal(client.connection?.hostaddr, '127.0.0.1')
      } finally {
        await client.end()
      }
    })
  })

  test('with verify-full and PGSSLROOTCERT the certificate is verified against the DSQL hostname', async () => {
    await withEnv({ ...CLEAR, ...stack().envVerified() }, async () => {
      const client = await connect()
      assert.equal(client.connection?.verification, 'full')
      assert.equal(client.connection?.host, stack().host)
      await client.end()
    })
  })

  test("HOSTNAME holding the machine's name is ignored, with a message that says so", async () => {
    await withEnv({ ...CLEAR, HOSTNAME: 'build-box-7', PGHOSTADDR: '127.0.0.1' }, async () => {
      const err = await rejectsWith(connect(), 'INVALID_CONFIG')
      assert.equal(err.setting, 'host')
      assert.match(err.message, /build-box-7/)
    })
  })

  test('PGHOST wins over HOSTNAME; PGCONNECT_TIMEOUT is in seconds', async () => {
    await withEnv({ ...CLEAR, HOSTNAME: stack().host, PGHOST: 'other.dsql.eu-west-1.on.aws', PGCONNECT_TIMEOUT: '7' }, async () => {
      const r = resolveConfig()
      assert.equal(r.host, 'other.dsql.eu-west-1.on.aws')
      assert.equal(r.sources.host, 'environment (PGHOST)')
      assert.equal(r.connectTimeoutMillis, 7000)
    })
  })
})

describe('precedence and forms', () => {
  test('option > connection string > environment > default', async () => {
    await withEnv({ ...CLEAR, PGHOST: 'env.dsql.us-east-1.on.aws', PGPORT: '1111', PGUSER: 'envuser', PGDATABASE: 'envdb' }, async () => {
      const r = resolveConfig({ connectionString: 'postgres://csuser@cs.dsql.us-east-1.on.aws:2222', port: 3333 })
      assert.equal(r.host, 'cs.dsql.us-east-1.on.aws')
      assert.equal(r.port, 3333)
      assert.equal(r.user, 'csuser')
      assert.equal(r.database, 'envdb')
      assert.equal(r.sslmode, 'verify-full')
      assert.equal(r.sources.port, 'option')
      assert.equal(r.sources.user, 'connection string')
      assert.equal(r.sources.database, 'environment (PGDATABASE)')
      assert.equal(r.sources.sslmode, 'default')
    })
  })

  test('a libpq key=value string connects through the tunnel', async () => {
    const s = stack()
    const cs = `host=${s.host} hostaddr=127.0.0.1 port=${s.tunnelPort} user=admin password='${s.users.admin.password}' dbname=postgres sslmode=verify-full sslrootcert=${s.caFile} application_name=kv-test`
    await withEnv(CLEAR, async () => {
      const client = await connect(cs)
      const r = await client.query('select current_setting($1) as app', ['application_name'])
      assert.deepEqual(r.rows, [{ app: 'kv-test' }])
      await client.end()
    })
  })

  test('a postgres:// URL with query parameters connects through the tunnel', async () => {
    const s = stack()
    const pw = encodeURIComponent(s.users.admin.password)
    const url = `postgresql://admin:${pw}@${s.host}:${s.tunnelPort}/postgres?hostaddr=127.0.0.1&sslrootcert=${encodeURIComponent(s.caFile)}&sslnegotiation=postgres`
    await withEnv(CLEAR, async () => {
      const client = new Client({ connectionString: url })
      await client.connect()
      assert.equal(client.connection?.sslnegotiation, 'postgres')
      await client.end()
    })
  })

  test('a password function is called for the connection', async () => {
    let calls = 0
    const options = through(stack(), {
      password: async () => {
        calls++
        return stack().users.admin.password
      },
    })
    const client = await connect(options)
    await client.end()
    assert.equal(calls, 1)
    await rejectsWith(connect(through(stack(), { password: (() => 42) as unknown as () => string })), 'INVALID_CONFIG')
  })
})

describe('bad values', () => {
  const cases: Array<[string, Record<string, unknown>, string]> = [
    ['port out of range', { port: 70000 }, 'option port'],
    ['port not a number', { port: 'five' }, 'option port'],
    ['hostaddr is a name', { hostaddr: 'bastion.example.com' }, 'option hostaddr'],
    ['unknown sslnegotiation', { sslnegotiation: 'fast' }, 'option sslnegotiation'],
    ['timeout not a number', { connectionTimeoutMillis: 'soon' }, 'option connectionTimeoutMillis'],
    ['object where a string belongs', { user: { name: 'x' } }, 'user'],
    ['unknown connection string key', { connectionString: 'host=h ssl=true' }, 'connectionString'],
    ['int8 mode', { int8: 'number' }, 'int8'],
  ]
  for (const [name, extra, setting] of cases) {
    test(`${name} → INVALID_CONFIG naming ${setting}`, async () => {
      const err = await rejectsWith(connect({ host: stack().host, ...extra } as never), 'INVALID_CONFIG')
      assert.equal(err.setting, setting)
    })
  }

  test('a malformed connection string never echoes its password', async () => {
    const err = await rejectsWith(connect('postgres://u:hunter2secret@h:1/%zz'), 'INVALID_CONFIG')
    assert.ok(!err.message.includes('hunter2secret'))
    assert.ok(!JSON.stringify(err).includes('hunter2secret'))
  })

  test('configuration errors reject; nothing throws synchronously', async () => {
    const p = connect({ port: {} } as never)
    assert.ok(p instanceof Promise)
    await rejectsWith(p, 'INVALID_CONFIG')
  })
})
