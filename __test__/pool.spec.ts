// The pool, OCC-retrying transactions, timeouts and cancellation, against the gate and tunnel.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import path from 'node:path'
import { describe, test } from 'node:test'
import { Client, connect, isOccError, Pool, type ClientConfig, type DatabaseError } from '../index.js'
import { rejectsWith, through, useStack, type Stack } from './helpers.ts'

const stack = useStack({ tokenAuth: true })
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Pool options through the tunnel; tokens minted from the stack's AWS identity. */
function poolOptions(s: Stack, extra: ClientConfig & Record<string, unknown> = {}): ClientConfig & Record<string, unknown> {
  const o: ClientConfig & Record<string, unknown> = { ...through(s), credentials: { ...s.aws }, ...extra }
  if (!('password' in extra)) delete o.password
  return o
}

const startups = (s: Stack) => s.gate.log.filter((r) => r.kind === 'startup')

describe('pool', () => {
  test('pg shapes: query, connect/release, counts, defaults', async () => {
    const pool = new Pool(poolOptions(stack(), { max: 3 }))
    try {
      assert.deepEqual([pool.totalCount, pool.idleCount, pool.waitingCount], [0, 0, 0])
      const r = await pool.query('select $1::int + 1 as n', [41])
      assert.deepEqual(r.rows, [{ n: 42 }])
      assert.deepEqual([pool.totalCount, pool.idleCount], [1, 1])
      const c = await pool.connect()
      assert.equal(pool.idleCount, 0)
      assert.deepEqual((await c.query('select 1 as one')).rows, [{ one: 1 }])
      c.release()
      assert.throws(() => c.release(), { code: 'CLIENT_RELEASED' })
      // As in pg-pool, the checked-out object is the Client itself.
      assert.ok(c instanceof Client)
      assert.equal(pool.idleCount, 1)
      await Promise.all(Array.from({ length: 20 }, (_, i) => pool.query('select $1::int as i', [i])))
      assert.ok(pool.totalCount <= 3)
    } finally {
      await pool.end()
    }
  })

  test('release(err) closes the connection; the next checkout opens a new one with a fresh token', async () => {
    const s = stack()
    const pool = new Pool(poolOptions(s, { max: 1 }))
    try {
      const c1 = await pool.connect()
      const first = startups(s).at(-1)
      c1.release(new Error('broken'))
      assert.equal(pool.totalCount, 0)
      await sleep(1100) // a new SigV4 timestamp
      const c2 = await pool.connect()
      const second = startups(s).at(-1)
      c2.release()
      assert.notEqual(first?.id, second?.id)
      assert.equal(second?.tokenCheck?.ok, true)
      assert.notEqual(first?.tokenHash, second?.tokenHash)
    } finally {
      await pool.end()
    }
  })

  test('waiting for a connection is bounded by connectionTimeoutMillis: POOL_TIMEOUT', async () => {
    const pool = new Pool(poolOptions(stack(), { max: 1, connectionTimeoutMillis: 300 }))
    try {
      const held = await pool.connect()
      const started = Date.now()
      const p = pool.query('select 1')
      await sleep(20)
      assert.equal(pool.waitingCount, 1)
      await rejectsWith(p, 'POOL_TIMEOUT')
      assert.ok(Date.now() - started < 2000)
      assert.equal(pool.waitingCount, 0)
      held.release()
      assert.deepEqual((await pool.query('select 2 as two')).rows, [{ two: 2 }])
    } finally {
      await pool.end()
    }
  })

  test('steady load across many forced connection expiries: no query fails, tokens are fresh', async () => {
    const s = stack()
    const g = await s.startGate({ tokenAuth: true, maxConnectionLifetimeMs: 2500 })
    const pool = new Pool(poolOptions(s, { port: g.port, max: 4, maxLifetimeSeconds: 1 }))
    const failures: string[] = []
    let done = 0
    try {
      const until = Date.now() + 6000
      await Promise.all(Array.from({ length: 8 }, async () => {
        for (let i = 0; i < 2000 && Date.now() < until; i++) {
          try {
            await pool.query('select $1::int as i', [i])
            done++
          } catch (e) {
            failures.push(`${(e as Error & { code?: string }).code}: ${(e as Error).message}`)
          }
          await sleep(5)
        }
      }))
      assert.deepEqual(failures, [])
      const opened = g.gate.log.filter((r) => r.kind === 'startup' && r.tokenCheck?.ok)
      assert.ok(opened.length >= 8, `only ${opened.length} connections over 6 s with 1 s lifetimes`)
      assert.ok(new Set(opened.map((r) => r.tokenHash)).size >= opened.length / 4 - 1, 'tokens are minted per connection')
      assert.equal(g.gate.log.filter((r) => r.closeReason === 'lifetime').length, 0, 'the pool retires connections before the gate cuts them')
      assert.ok(done > 200, `${done} queries`)
    } finally {
      await pool.end()
      await g.stop()
    }
  })

  test('tunnel cuts: only queries in flight fail (CONNECTION_LOST, quickly); the pool heals', async () => {
    const s = stack()
    const t = await s.startTunnel(s.gatePort)
    const pool = new Pool(poolOptions(s, { port: t.port, max: 3, connectionTimeoutMillis: 5000 }))
    try {
      await Promise.all([pool.query('select 1'), pool.query('select 2'), pool.query('select 3')])
      for (let cut = 0; cut < 3; cut++) {
        const inFlight = Array.from({ length: 3 }, () =>
          pool.query('select pg_sleep(3)').then(() => 'ok', (e: DatabaseError) => e.code))
        await sleep(150)
        const cutAt = Date.now()
        await t.kill()
        const outcomes = await Promise.all(inFlight)
        assert.deepEqual(outcomes, ['CONNECTION_LOST', 'CONNECTION_LOST', 'CONNECTION_LOST'])
        assert.ok(Date.now() - cutAt < 2000, 'in-flight queries settle promptly')
        // Issued while the tunnel is down: they wait (retrying the connect) and succeed once it is back.
        const after = Array.from({ length: 5 }, (_, i) => pool.query('select $1::int as i', [i]))
        await sleep(200)
        await t.restart()
        const rows = (await Promise.all(after)).map((r) => r.rows[0].i)
        assert.deepEqual(rows, [0, 1, 2, 3, 4])
      }
    } finally {
      await pool.end()
      await t.stop()
    }
  })

  test('admission errors (53400) make the pool back off, then it connects', async () => {
    const s = stack()
    const g = await s.startGate({ tokenAuth: true })
    let refusals = 0
    const seen: number[] = []
    g.gate.settings.onStartup = () => {
      seen.push(Date.now())
      if (refusals < 3) {
        refusals++
        return { error: { code: '53400', message: 'Unable to accept connection, rate exceeded.' } }
      }
      return undefined
    }
    const pool = new Pool(poolOptions(s, { port: g.port, connectionTimeoutMillis: 5000 }))
    try {
      assert.deepEqual((await pool.query('select 1 as ok')).rows, [{ ok: 1 }])
      assert.equal(seen.length, 4)
      const gaps = seen.slice(1).map((t, i) => t - seen[i])
      assert.ok(gaps[0] >= 50 && gaps[2] > gaps[0], `gaps ${gaps}`)
    } finally {
      await pool.end()
      await g.stop()
    }
  })

  test('persistent admission errors surface with their code, with bounded attempts', async () => {
    const s = stack()
    const g = await s.startGate({ tokenAuth: true })
    let attempts = 0
    g.gate.settings.onStartup = () => {
      attempts++
      return { error: { code: '53300', message: 'Unable to accept connection, too many open connections.' } }
    }
    const pool = new Pool(poolOptions(s, { port: g.port, connectionTimeoutMillis: 1500 }))
    try {
      await rejectsWith(pool.query('select 1'), '53300')
      assert.ok(attempts >= 2 && attempts <= 12, `${attempts} attempts`)
    } finally {
      await pool.end()
      await g.stop()
    }
  })

  test('end() lets queries in flight finish, refuses new work, and the process exits promptly', async () => {
    const pool = new Pool(poolOptions(stack()))
    const inFlight = pool.query('select pg_sleep(0.3), 7 as seven')
    await sleep(50)
    const ended = pool.end()
    await rejectsWith(pool.query('select 1'), 'POOL_ENDED')
    assert.deepEqual((await inFlight).rows[0].seven, 7)
    await ended
    assert.equal(pool.totalCount, 0)

    const root = path.resolve(__dirname, '..')
    const code = `const { Pool } = require(${JSON.stringify(root)}); (async () => { const p = new Pool(JSON.parse(process.env.OPTS)); await Promise.all([p.query('select 1'), p.query('select 2')]); p.query('select pg_sleep(0.2)'); await p.end(); console.log('ended') })()`
    const started = Date.now()
    const child = spawn(process.execPath, ['-e', code], { env: { ...process.env, OPTS: JSON.stringify(poolOptions(stack())) }, stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    child.stdout.on('data', (d) => (out += d))
    const exit = await new Promise<number | null>((r) => child.on('exit', r))
    assert.equal(exit, 0)
    assert.match(out, /ended/)
    assert.ok(Date.now() - started < 5000)
  })
})

describe('transactions with OCC retry', () => {
  test('conflicting transactions are retried and all commit; the counter is exact', async () => {
    const pool = new Pool(poolOptions(stack(), { max: 5 }))
    try {
      await pool.query('create table if not exists occ_counter (id int primary key, n int not null)')
      await pool.query('insert into occ_counter values (1, 0) on conflict (id) do update set n = 0')
      let retries = 0
      const results = await Promise.all(Array.from({ length: 10 }, (_, i) =>
        pool.transaction(async (tx) => {
          const { rows } = await tx.query('select n from occ_counter where id = 1')
          await sleep(10) // widen the window so transactions overlap
          await tx.query('update occ_counter set n = $1 where id = 1', [rows[0].n + 1])
          return i
        }, { isolation: 'repeatable read', retries: 20, onRetry: () => retries++ })))
      assert.deepEqual(results.sort((a, b) => a - b), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
      assert.ok(retries > 0, 'serialization failures happened and were retried')
      assert.deepEqual((await pool.query('select n from occ_counter where id = 1')).rows, [{ n: 10 }])
    } finally {
      await pool.end()
    }
  })

  test('other errors roll back and pass through unchanged; OCC exhaustion reports attempts', async () => {
    const client = await connect(poolOptions(stack()))
    try {
      await client.query('create table if not exists tx_t (x int)')
      await client.query('delete from tx_t')
      const boom = new Error('boom')
      const err = await client.transaction(async (tx) => {
        await tx.query('insert into tx_t values (1)')
        throw boom
      }).catch((e: unknown) => e)
      assert.equal(err, boom)
      assert.equal((boom as Error & { attempts?: number }).attempts, undefined)
      assert.deepEqual((await client.query('select count(*)::int as n from tx_t')).rows, [{ n: 0 }])
      let calls = 0
      const occ = Object.assign(new Error('change conflicts with another transaction, please retry: (OC000)'), { code: '40001' })
      const final = (await client.transaction(async () => {
        calls++
        throw occ
      }, { retries: 2, minDelayMillis: 1 }).catch((e: unknown) => e)) as Error & { attempts?: number }
      assert.equal(final.attempts, 3)
      assert.equal(calls, 3)
      assert.equal(final, occ)
      assert.equal(await client.transaction(async (tx) => (await tx.query('select 5 as v')).rows[0].v), 5)
    } finally {
      await client.end()
    }
  })

  test('isOccError', () => {
    assert.ok(isOccError({ code: '40001', message: 'x' }))
    assert.ok(isOccError({ code: 'OC000' }))
    assert.ok(isOccError({ code: 'OC001' }))
    assert.ok(isOccError({ code: 'XX000', message: 'schema has been updated by another transaction, please retry: (OC001)' }))
    assert.ok(!isOccError({ code: '54000', message: 'transaction row limit exceeded' }))
    assert.ok(!isOccError(null))
  })
})

describe('timeouts and cancellation', () => {
  test('timeoutMillis sends a CancelRequest through the tunnel over TLS with SNI; 57014; the connection stays usable', async () => {
    const s = stack()
    for (const sslnegotiation of ['direct', 'postgres'] as const) {
      const client = await connect(poolOptions(s, { sslnegotiation }))
      try {
        const started = Date.now()
        const err = await rejectsWith(client.query('select pg_sleep(5)', [], { timeoutMillis: 200 }), '57014')
        assert.ok(Date.now() - started < 2000, 'cancelled promptly')
        assert.equal((err as DatabaseError).severity, 'ERROR')
        const cancel = s.gate.log.filter((r) => r.kind === 'cancel').at(-1)
        assert.equal(cancel?.sni, s.host)
        assert.equal(cancel?.mode, sslnegotiation === 'direct' ? 'direct' : 'ssl-request')
        assert.deepEqual((await client.query('select 1 as still')).rows, [{ still: 1 }])
      } finally {
        await client.end()
      }
    }
  })

  test('an AbortSignal cancels with an AbortError carrying the reason', async () => {
    const client = await connect(poolOptions(stack()))
    try {
      const ac = new AbortController()
      const p = rejectsWith(client.query('select pg_sleep(5)', [], { signal: ac.signal }), 'ABORT_ERR')
      setTimeout(() => ac.abort(new Error('user went away')), 100)
      const err = await p
      assert.equal(err.name, 'AbortError')
      assert.equal((err.cause as Error).message, 'user went away')
      assert.equal(err.sqlstate, '57014')
      await rejectsWith(client.query('select 1', [], { signal: ac.signal }), 'ABORT_ERR')
      assert.deepEqual((await client.query('select 2 as ok')).rows, [{ ok: 2 }])
    } finally {
      await client.end()
    }
  })

  test('queryTimeoutMillis on a pool applies to every query; client.cancel() cancels the running one', async () => {
    const pool = new Pool(poolOptions(stack(), { queryTimeoutMillis: 150 }))
    try {
      await rejectsWith(pool.query('select pg_sleep(3)'), '57014')
      assert.deepEqual((await pool.query('select 3 as ok')).rows, [{ ok: 3 }])
      const c = await pool.connect()
      const p = rejectsWith(c.query('select pg_sleep(3)', [], { timeoutMillis: 0 }), '57014')
      await sleep(100)
      await c.cancel()
      await p
      c.release()
    } finally {
      await pool.end()
    }
  })
})
