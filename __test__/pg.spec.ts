// The package as node-postgres: the module's surface (CommonJS, ESM, deep paths, one identity
// under two names), pg's config through a tunnel (`ssl.servername` is the cluster, `host` the
// tunnel), callbacks, events, queued queries, type parsers at three levels, and pg-pool's events.
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { describe, test } from 'node:test'
import pg, { Client, DatabaseError, Pool, types, TypeOverrides, type PoolClient } from '../index.js'
import { rejectsWith, useStack, withEnv, type Stack } from './helpers.ts'

const stack = useStack({ tokenAuth: true })
const ROOT = path.resolve(__dirname, '..')

/** pg's config for a tunnel: the tunnel's IP as host, the cluster's name as ssl.servername. */
function pgConfig(s: Stack, extra: Record<string, unknown> = {}) {
  return { host: s.tunnelAddr, port: s.tunnelPort, user: 'admin', database: 'postgres', ssl: { servername: s.host, ca: fs.readFileSync(s.caFile) }, ...extra }
}

/** The stack's AWS identity in the environment, as an app on AWS has it. */
function awsEnv(s: Stack) {
  return { AWS_ACCESS_KEY_ID: s.aws.accessKeyId, AWS_SECRET_ACCESS_KEY: s.aws.secretAccessKey, AWS_SESSION_TOKEN: s.aws.sessionToken, AWS_REGION: s.aws.region, PGHOST: undefined, PGPASSWORD: undefined }
}

const run = (code: string, cwd = ROOT) => execFileSync(process.execPath, ['--input-type=module', '-e', code], { cwd, encoding: 'utf8', timeout: 20_000 })

describe('the module, as require("pg") gives it', () => {
  test('CommonJS and ESM expose pg\'s names; native is a non-enumerable null; deep paths resolve', () => {
    for (const name of ['Client', 'Pool', 'types', 'defaults', 'DatabaseError', 'TypeOverrides', 'escapeIdentifier', 'escapeLiteral', 'Query', 'Result', 'utils']) {
      assert.ok(name in pg, name)
    }
    assert.equal(Object.keys(pg).includes('native'), false)
    assert.equal(pg.native, null)
    assert.equal(typeof pg.types.getTypeParser, 'function')
    assert.equal(pg.types.builtins.TIMESTAMPTZ, 1184)
    const out = run(`
      import pg, { Client, Pool, types } from 'dsql-tunnel'
      import { createRequire } from 'node:module'
      const require = createRequire(import.meta.url)
      const cjs = require('dsql-tunnel')
      const utils = require('dsql-tunnel/lib/utils')
      const Result = require('dsql-tunnel/lib/result.js')
      console.log(JSON.stringify({ same: pg === cjs && Client === cjs.Client && Pool === cjs.Pool && types === cjs.types,
        utils: typeof utils.prepareValue, result: new Result().rows.length, esc: utils.escapeLiteral("it's") }))`)
    assert.deepEqual(JSON.parse(out), { same: true, utils: 'function', result: 0, esc: "'it''s'" })
  })

  test('installed twice (as pg and as dsql-tunnel, an npm alias): one Client and one Pool identity', () => {
    const app = fs.mkdtempSync(path.join(os.tmpdir(), 'dsql-alias-'))
    try {
      const copy = path.join(app, 'node_modules', 'pg')
      fs.mkdirSync(copy, { recursive: true })
      for (const f of ['package.json', 'index.js', 'index.mjs', 'binding.js', 'lib']) fs.cpSync(path.join(ROOT, f), path.join(copy, f), { recursive: true })
      for (const f of fs.readdirSync(ROOT).filter((f) => f.endsWith('.node'))) fs.copyFileSync(path.join(ROOT, f), path.join(copy, f))
      fs.symlinkSync(ROOT, path.join(app, 'node_modules', 'dsql-tunnel'))
      const out = run(`
        import pg from 'pg'
        import { Pool, Client } from 'dsql-tunnel'
        const p = new pg.Pool()
        console.log(JSON.stringify({ pool: p instanceof Pool, client: new Client() instanceof pg.Client, from: import.meta.resolve('pg').includes('node_modules/pg') }))`, app)
      assert.deepEqual(JSON.parse(out), { pool: true, client: true, from: true })
    } finally {
      fs.rmSync(app, { recursive: true, force: true })
    }
  })

  test('escapeIdentifier and escapeLiteral as pg (and libpq) escape', () => {
    assert.equal(pg.escapeIdentifier('a"b'), '"a""b"')
    assert.equal(pg.escapeLiteral("o'k"), "'o''k'")
    assert.equal(pg.escapeLiteral('back\\slash'), " E'back\\\\slash'")
  })
})

describe('pg config through the tunnel', () => {
  test('ssl.servername names the cluster (SNI, verification, a token minted for it) while host is the tunnel', async () => {
    const s = stack()
    await withEnv(awsEnv(s), async () => {
      const client = new Client(pgConfig(s))
      await client.connect()
      try {
        const r = await client.query('select current_user as u')
        assert.deepEqual(r.rows, [{ u: 'admin' }])
        const rec = s.gate.lastRecord()
        assert.equal(rec?.sni, s.host)
        assert.equal(rec?.tokenCheck?.ok, true, JSON.stringify(rec?.tokenCheck))
        assert.equal(client.connection.verification, 'full')
        assert.equal(client.connection.hostaddr, s.tunnelAddr)
      } finally {
        await client.end()
      }
    })
  })

  test('options: -c search_path=… (a non-admin role\'s schema) and statement_timeout as startup settings', async () => {
    const s = stack()
    await withEnv(awsEnv(s), async () => {
      const admin = new Client(pgConfig(s))
      await admin.connect()
      await admin.query('create schema if not exists pgspec authorization iam_user')
      await admin.end()
      const client = new Client(pgConfig(s, { user: 'iam_user', options: '-c search_path=pgspec', statement_timeout: 100 }))
      await client.connect()
      try {
        assert.deepEqual((await client.query('show search_path')).rows, [{ search_path: 'pgspec' }])
        await client.query('create table if not exists in_schema (id int)')
        assert.deepEqual((await client.query("select table_schema from information_schema.tables where table_name = 'in_schema'")).rows, [{ table_schema: 'pgspec' }])
        assert.equal(s.gate.lastRecord()?.tokenCheck?.action, 'DbConnect')
        await rejectsWith(client.query('select pg_sleep(1)'), '57014')
      } finally {
        await client.end()
      }
    })
  })

  test('ssl.rejectUnauthorized: false means sslmode=require (encrypted, not verified, warned); ssl: false still uses TLS', async () => {
    const s = stack()
    const wrong = await s.startGate({ cert: 'wrong-name', tokenAuth: true })
    await withEnv(awsEnv(s), async () => {
      const verified = new Client(pgConfig(s, { port: wrong.port }))
      await rejectsWith(verified.connect(), 'TLS_NAME_MISMATCH')
      // Turning verification off is the point here: pg's way of asking for it must map to require.
      const warnings: Array<Error & { code?: string }> = []
      const onWarning = (w: Error) => warnings.push(w)
      process.on('warning', onWarning)
      const lax = new Client(pgConfig(s, { port: wrong.port, ssl: { servername: s.host, rejectUnauthorized: false } }))
      await lax.connect()
      assert.equal(lax.connection.verification, 'none')
      await lax.end()
      await new Promise((r) => setImmediate(r))
      process.off('warning', onWarning)
      assert.deepEqual(warnings.map((w) => w.code), ['DSQL_TUNNEL_SSLMODE_REQUIRE'])
      const off = new Client(pgConfig(s, { ssl: false, host: s.host, hostaddr: s.tunnelAddr, sslrootcert: s.caFile }))
      await off.connect()
      assert.equal(off.connection.verification, 'full')
      assert.equal(s.gate.lastRecord()?.sni, s.host)
      await off.end()
    })
  })
})

describe('callbacks and events', () => {
  test('connect, query and end callbacks; queries issued before connect() run once it connects, in order', async () => {
    const s = stack()
    await withEnv(awsEnv(s), async () => {
      const client = new Client(pgConfig(s))
      const order: string[] = []
      const early = client.query('select 1 as n').then((r) => order.push(`early ${r.rows[0].n}`))
      const viaCallback = new Promise<void>((resolve, reject) =>
        client.query('select $1::int as n', [2], (err, r) => (err ? reject(err) : (order.push(`callback ${r.rows[0].n}`), resolve()))),
      )
      await new Promise<void>((resolve, reject) => client.connect((err) => (err ? reject(err) : resolve())))
      await Promise.all([early, viaCallback])
      assert.deepEqual(order, ['early 1', 'callback 2'])
      const err = await new Promise<Error | null>((resolve) => client.query('selec 1', (e) => resolve(e)))
      assert.ok(err instanceof DatabaseError)
      assert.equal((err as DatabaseError).code, '42601')
      let ended = false
      client.on('end', () => (ended = true))
      await new Promise<void>((resolve) => client.end(() => resolve()))
      assert.equal(ended, true)
    })
  })

  test('a Query object is returned and emits row and end; drain when every query has settled', async () => {
    const s = stack()
    await withEnv(awsEnv(s), async () => {
      const client = new Client(pgConfig(s))
      await client.connect()
      try {
        const rows: number[] = []
        const q = new pg.Query('select n from generate_series(1, 3) n')
        assert.equal(client.query(q), q)
        q.on('row', (row: { n: number }) => rows.push(row.n))
        const result = await new Promise<{ rowCount: number | null }>((resolve) => q.on('end', resolve))
        assert.deepEqual(rows, [1, 2, 3])
        assert.equal(result.rowCount, 3)
        let drained = 0
        client.on('drain', () => drained++)
        await Promise.all([client.query('select 1'), client.query('select 2')])
        await new Promise((r) => setImmediate(r))
        assert.equal(drained, 1)
      } finally {
        await client.end()
      }
    })
  })

  test('connection.parameterStatus during connect; notice for a server NOTICE', async () => {
    const s = stack()
    await withEnv(awsEnv(s), async () => {
      const client = new Client(pgConfig(s))
      const params = new Map<string, string>()
      client.connection.on('parameterStatus', (m: { parameterName: string; parameterValue: string }) => params.set(m.parameterName, m.parameterValue))
      const notices: Array<{ message: string; severity?: string }> = []
      client.on('notice', (n) => notices.push(n))
      await client.connect()
      try {
        assert.match(params.get('server_version') ?? '', /^\d+/)
        assert.equal(params.get('standard_conforming_strings'), 'on')
        assert.equal(params.get('client_encoding'), 'UTF8')
        await client.query(`do $$ begin raise notice 'hello %', 42; end $$`)
        await new Promise((r) => setImmediate(r))
        assert.deepEqual(notices.map((n) => [n.message, n.severity]), [['hello 42', 'NOTICE']])
      } finally {
        await client.end()
      }
    })
  })

  test('a Promise class given as `Promise` (Client and Pool, as pg and pg-pool take it) is what comes back', async () => {
    const s = stack()
    await withEnv(awsEnv(s), async () => {
      class Tagged<T> extends Promise<T> {}
      const client = new Client({ ...pgConfig(s), Promise: Tagged })
      const connecting = client.connect()
      assert.ok(connecting instanceof Tagged, 'connect()')
      await connecting
      const q = client.query('select 1 as one')
      assert.ok(q instanceof Tagged, 'query()')
      assert.deepEqual((await q).rows, [{ one: 1 }])
      const failing = client.query('select 1/0')
      assert.ok(failing instanceof Tagged, 'a failing query()')
      await assert.rejects(failing, { code: '22012' })
      const ending = client.end()
      assert.ok(ending instanceof Tagged, 'end()')
      await ending
      const pool = new Pool({ ...pgConfig(s), max: 1, Promise: Tagged })
      const pq = pool.query('select 2 as two')
      assert.ok(pq instanceof Tagged, 'pool.query()')
      assert.deepEqual((await pq).rows, [{ two: 2 }])
      const pc = pool.connect()
      assert.ok(pc instanceof Tagged, 'pool.connect()')
      ;(await pc).release()
      const pe = pool.end()
      assert.ok(pe instanceof Tagged, 'pool.end()')
      await pe
      assert.ok(!(new Client(pgConfig(s)).end() instanceof Tagged), 'the default is the global Promise')
    })
  })

  test("queryMode: 'extended' sends text with several statements as one prepared statement, which the server refuses, as with pg", async () => {
    const s = stack()
    await withEnv(awsEnv(s), async () => {
      const client = new Client(pgConfig(s))
      await client.connect()
      try {
        const simple = await client.query('select 1 as a; select 2 as b')
        assert.ok(Array.isArray(simple) && simple.length === 2, 'without it: the simple protocol, one result each')
        await assert.rejects(client.query({ text: 'select 1 as a; select 2 as b', queryMode: 'extended' }), { code: '42601' })
        const one = await client.query({ text: 'select 3 as c', queryMode: 'extended' })
        assert.deepEqual(one.rows, [{ c: 3 }])
      } finally {
        await client.end()
      }
    })
  })

  test('types only the server can print come as its text, and asking for it never disturbs a transaction', async () => {
    const s = stack()
    await withEnv(awsEnv(s), async () => {
      const client = new Client(pgConfig(s))
      await client.connect()
      try {
        await client.query('begin')
        // regclass and tsvector: cast back by the server. An anonymous record holding a regclass (the
        // server cannot take one back): not asked about, so no failed cast aborts the transaction.
        const r = await client.query(`select 'pg_class'::regclass as c, to_tsvector('simple', 'b a') as t,
          row(1, 'pg_type'::regclass) as r`)
        assert.equal(r.rows[0].c, 'pg_class')
        assert.equal(r.rows[0].t, "'a':2 'b':1")
        assert.match(r.rows[0].r, /^\(1,/)
        assert.equal(client.getTransactionStatus(), 'T', 'the transaction is still good')
        assert.deepEqual((await client.query('select 1 as ok')).rows, [{ ok: 1 }])
        await client.query('commit')
        assert.equal(client.getTransactionStatus(), 'I')
      } finally {
        await client.end()
      }
    })
  })

  test('getTransactionStatus follows BEGIN, a failed statement, ROLLBACK and the end', async () => {
    const s = stack()
    await withEnv(awsEnv(s), async () => {
      const client = new Client(pgConfig(s))
      assert.equal(client.getTransactionStatus(), null, 'before connecting')
      await client.connect()
      const seen = [client.getTransactionStatus()]
      await client.query('begin')
      seen.push(client.getTransactionStatus())
      await assert.rejects(client.query('select 1/0'), { code: '22012' })
      seen.push(client.getTransactionStatus())
      await client.query('rollback')
      seen.push(client.getTransactionStatus())
      await client.end()
      seen.push(client.getTransactionStatus())
      assert.deepEqual(seen, ['I', 'T', 'E', 'I', null])
    })
  })

  test('a connection cut while idle is an `error` event (not a throw), then `end`; a pool drops it and says so', async () => {
    const s = stack()
    await withEnv(awsEnv(s), async () => {
      const admin = new Client(pgConfig(s))
      await admin.connect()
      const victim = new Client(pgConfig(s))
      await victim.connect()
      const pid = (await victim.query('select pg_backend_pid() as pid')).rows[0].pid
      const events: string[] = []
      const errored = new Promise<Error>((resolve) => victim.on('error', (e) => (events.push('error'), resolve(e))))
      const ended = new Promise<void>((resolve) => victim.on('end', () => (events.push('end'), resolve())))
      await admin.query('select pg_terminate_backend($1)', [pid])
      const err = (await errored) as Error & { code?: string }
      await ended
      assert.equal(err.code, '57P01')
      assert.deepEqual(events, ['error', 'end'])
      await rejectsWith(victim.query('select 1'), 'CONNECTION_LOST')

      const pool = new Pool({ ...pgConfig(s), max: 2 })
      const poolErrors: Error[] = []
      pool.on('error', (e) => poolErrors.push(e))
      await pool.query('select 1')
      assert.equal(pool.totalCount, 1)
      const pids = (await admin.query("select pid from pg_stat_activity where usename = 'admin' and pid <> pg_backend_pid() and state = 'idle'")).rows.map((r) => r.pid)
      for (const p of pids) await admin.query('select pg_terminate_backend($1)', [p])
      for (let i = 0; i < 100 && poolErrors.length === 0; i++) await new Promise((r) => setTimeout(r, 20))
      assert.equal(poolErrors.length, 1)
      assert.equal(pool.totalCount, 0)
      assert.deepEqual((await pool.query('select 2 as n')).rows, [{ n: 2 }])
      await pool.end()
      await admin.end()
    })
  })
})

describe('type parsers at three levels, called with the server\'s text', () => {
  test('global types, client types (TypeOverrides), per-query types; parseInt8', async () => {
    const s = stack()
    await withEnv(awsEnv(s), async () => {
      const seen: string[] = []
      const client = new Client(pgConfig(s))
      await client.connect()
      try {
        const q = "select '2024-01-02 03:04:05.123456+00'::timestamptz as t, 7::int8 as n, 1.5::float8 as f"
        const defaultsRow = (await client.query(q)).rows[0]
        assert.ok(defaultsRow.t instanceof Date)
        assert.equal(defaultsRow.n, '7')
        types.setTypeParser(1184, (v: string) => (seen.push(v), `global:${v}`))
        try {
          assert.equal((await client.query(q)).rows[0].t, 'global:2024-01-02 03:04:05.123456+00')
        } finally {
          types.setTypeParser(1184, types.getTypeParser(1114))
        }
        assert.ok((await client.query(q)).rows[0].t instanceof Date)
        const overrides = new TypeOverrides()
        overrides.setTypeParser(701, (v: string) => `client:${v}`)
        const other = new Client(pgConfig(s, { types: overrides }))
        await other.connect()
        assert.equal((await other.query(q)).rows[0].f, 'client:1.5')
        await other.end()
        const perQuery = await client.query({ text: q, rowMode: 'array', types: { getTypeParser: (oid: number, format?: string) => (oid === 20 ? (v: string) => BigInt(v) : types.getTypeParser(oid, format)) } })
        assert.deepEqual(perQuery.rows[0].slice(1), [7n, 1.5])
        pg.defaults.parseInt8 = true
        try {
          assert.equal((await client.query(q)).rows[0].n, 7)
        } finally {
          pg.defaults.parseInt8 = false
        }
        assert.equal((await client.query(q)).rows[0].n, '7')
        assert.deepEqual(seen, ['2024-01-02 03:04:05.123456+00'])
      } finally {
        await client.end()
      }
    })
  })
})

describe('pg-pool surface', () => {
  test('events in order, callbacks, counts, hidden password, a subclass making its own clients', async () => {
    const s = stack()
    await withEnv(awsEnv(s), async () => {
      const made: string[] = []
      class CountingClient extends Client {
        constructor(config: Record<string, unknown>) {
          super(config)
          made.push('client')
        }
      }
      // As AWS's connector does: a Pool subclass whose password is a token it made.
      const token = await pg.generateToken({ host: s.host })
      class AppPool extends Pool {
        constructor(config: Record<string, unknown>) {
          super({ ...config, Client: CountingClient, password: token })
        }
      }
      const pool = new AppPool({ ...pgConfig(s), max: 2 })
      assert.equal(Object.keys(pool.options).includes('password'), false)
      assert.equal(JSON.stringify(pool.options).includes(token), false)
      assert.equal(pool.options.password, token)
      const events: string[] = []
      for (const e of ['connect', 'acquire', 'release', 'remove'] as const) pool.on(e, () => events.push(e))
      const client = await new Promise<PoolClient>((resolve, reject) => pool.connect((err, c) => (err || !c ? reject(err) : resolve(c))))
      assert.deepEqual(events, ['connect', 'acquire'])
      assert.ok(client instanceof CountingClient)
      assert.deepEqual([pool.totalCount, pool.idleCount], [1, 0])
      client.release()
      assert.deepEqual([pool.totalCount, pool.idleCount], [1, 1])
      const r = await new Promise<unknown[]>((resolve, reject) => pool.query('select 1 as one', (err, res) => (err ? reject(err) : resolve(res.rows))))
      assert.deepEqual(r, [{ one: 1 }])
      const c2 = await pool.connect()
      c2.release(true)
      await new Promise((r) => setTimeout(r, 50))
      assert.deepEqual(events, ['connect', 'acquire', 'release', 'acquire', 'release', 'acquire', 'release', 'remove'])
      assert.deepEqual(made, ['client'])
      assert.equal(pool.ending, false)
      await new Promise<void>((resolve) => pool.end(() => resolve()))
      assert.equal(pool.ended, true)
    })
  })
})
