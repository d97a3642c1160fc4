// The pool under DSQL's lifecycle, against the gate and a tunnel: sessions cut right after a
// ReadyForQuery (safe reruns, and what may have run), round trips per checkout, waking clusters,
// XX000 "server unavailable", OCC conflicts wrapped by an ORM, and DSQL's message size limit.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { describe, test } from 'node:test'
import { DrizzleQueryError } from 'drizzle-orm/errors'
import { Client, isOccError, Pool, type ClientConfig, type DsqlTunnelError } from '../index.js'
import type { ReadyInfo, RequestInfo } from './fixture/gate.ts'
import { rejectsWith, runNode, through, useStack, type Stack } from './helpers.ts'

const stack = useStack({ tokenAuth: true })
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
type Failure = DsqlTunnelError & { mayHaveRun?: boolean }

/** Options through `port` (a gate's tunnel); tokens minted from the stack's AWS identity. */
function viaPort(s: Stack, port: number, extra: ClientConfig & Record<string, unknown> = {}): ClientConfig & Record<string, unknown> {
  const o: ClientConfig & Record<string, unknown> = { ...through(s), port, credentials: { ...s.aws }, ...extra }
  delete o.password
  return o
}

/** A table of its own for one test (dropped first, so a rerun of the file starts clean). */
async function freshTable(s: Stack, name: string, columns: string): Promise<void> {
  const c = new Client(through(s, { password: s.presignToken() }))
  await c.connect()
  try {
    await c.query(`drop table if exists ${name}`)
    await c.query(`create table ${name} (${columns})`)
  } finally {
    await c.end()
  }
}

async function ids(s: Stack, table: string): Promise<number[]> {
  const c = new Client(through(s, { password: s.presignToken() }))
  await c.connect()
  try {
    return (await c.query(`select id from ${table} order by id`)).rows.map((r) => Number(r.id))
  } finally {
    await c.end()
  }
}

describe('sessions cut right after a ReadyForQuery (FATAL 57P01)', () => {
  test('one caller per connection: dozens of cuts, zero failed queries, every insert exactly once', { timeout: 60_000 }, async () => {
    const s = stack()
    await freshTable(s, 'lc_once', 'id int not null')
    let loaded = false
    // Cut sessions that are idle at the server (nothing relayed and unanswered): the next query,
    // written just then, meets the end as its first reply. (A prepare and an execution written
    // together are a pipeline: the next test.)
    // Half of the FATALs come a few milliseconds late, so queries get written into the cut.
    const g = await s.startGate({
      tokenAuth: true,
      cutAfterReady: (r: ReadyInfo) => loaded && r.pending === 0 && Math.random() < 1 / 30 && { afterMs: Math.random() < 0.5 ? 0 : 5 },
    })
    // More slots than callers: a caller never has to share (pipeline onto) a busy connection.
    const pool = new Pool(viaPort(s, g.port, { max: 8 }))
    pool.on('error', () => {})
    const failures: string[] = []
    const resolved: number[] = []
    try {
      await Promise.all(Array.from({ length: 4 }, () => pool.query('select 1')))
      loaded = true
      const until = Date.now() + 5000
      await Promise.all(Array.from({ length: 4 }, async (_, caller) => {
        for (let i = 0; i < 5000 && Date.now() < until; i++) {
          const id = caller * 100_000 + i
          try {
            await pool.query('insert into lc_once (id) values ($1)', [id])
            resolved.push(id)
          } catch (e) {
            failures.push(`${(e as Failure).code} mayHaveRun=${(e as Failure).mayHaveRun}: ${(e as Error).message}`)
          }
        }
      }))
      loaded = false
      const cuts = g.gate.log.filter((r) => r.closeReason === 'cut').length
      assert.deepEqual(failures, [])
      assert.ok(cuts >= 24, `only ${cuts} cuts`)
      // Queries written as the cut came: dropped by the gate, so they resolved only by a rerun.
      const hit = g.gate.log.filter((r) => (r.droppedAfterCut ?? 0) > 0).length
      assert.ok(hit > 0, 'some queries met a cut')
      const rows = await ids(s, 'lc_once')
      assert.equal(rows.length, resolved.length, 'no statement ran twice, none is missing')
      assert.deepEqual(rows, [...resolved].sort((a, b) => a - b))
      console.log(`# one caller per connection: ${resolved.length} inserts, ${cuts} cuts, ${hit} with a query written into the cut, 0 failures`)
    } finally {
      loaded = false
      await pool.end()
      await g.stop()
    }
  })

  test('many callers pipelining on two connections: nothing runs twice, every failure says whether it may have run', { timeout: 60_000 }, async () => {
    const s = stack()
    await freshTable(s, 'lc_piped', 'id int primary key')
    let loaded = false
    const g = await s.startGate({ tokenAuth: true, cutAfterReady: () => loaded && Math.random() < 1 / 40 })
    const pool = new Pool(viaPort(s, g.port, { max: 2 }))
    pool.on('error', () => {})
    const failures: Array<{ id: number; err: Failure }> = []
    const resolved: number[] = []
    try {
      await Promise.all([pool.query('select 1'), pool.query('select 1')])
      loaded = true
      const until = Date.now() + 5000
      await Promise.all(Array.from({ length: 16 }, async (_, caller) => {
        for (let i = 0; i < 5000 && Date.now() < until; i++) {
          const id = caller * 100_000 + i
          try {
            await pool.query('insert into lc_piped (id) values ($1)', [id])
            resolved.push(id)
          } catch (e) {
            failures.push({ id, err: e as Failure })
          }
        }
      }))
      loaded = false
      const cuts = g.gate.log.filter((r) => r.closeReason === 'cut').length
      assert.ok(cuts >= 10, `only ${cuts} cuts`)
      // A rerun of a statement that had run would meet its own row: 23505.
      assert.deepEqual(failures.filter((f) => f.err.code === '23505').map((f) => f.id), [])
      for (const f of failures) assert.equal(typeof f.err.mayHaveRun, 'boolean', `${f.err.code}: ${f.err.message}`)
      const rows = new Set(await ids(s, 'lc_piped'))
      for (const id of resolved) assert.ok(rows.has(id), `resolved insert ${id} is missing`)
      // What the pool rejected as "did not run" really did not.
      for (const f of failures) if (f.err.mayHaveRun === false) assert.ok(!rows.has(f.id), `${f.id} ran though mayHaveRun is false`)
      const ranAnyway = failures.filter((f) => rows.has(f.id)).length
      console.log(`# pipelined: ${resolved.length} inserts, ${cuts} cuts, ${failures.length} failures (mayHaveRun true: ${failures.filter((f) => f.err.mayHaveRun).length}, of which ran: ${ranAnyway})`)
    } finally {
      loaded = false
      await pool.end()
      await g.stop()
    }
  })

  test('a Client: a statement written alone did not run (mayHaveRun false); pipelined ones may have', async () => {
    const s = stack()
    let cutAt = 0
    const g = await s.startGate({ tokenAuth: true, cutAfterReady: (r: ReadyInfo) => r.readyCount === cutAt })
    try {
      const a = new Client(viaPort(s, g.port))
      a.on('error', () => {})
      await a.connect()
      const text = 'select $1::int as n'
      await a.query(text, [0]) // prepared: each run below is one request
      // The cut comes after the first of three queries written together: the other two were relayed.
      cutAt = g.gate.lastRecord((r) => r.kind === 'startup')!.readyCount! + 1
      const [first, second, third] = await Promise.allSettled([a.query(text, [1]), a.query(text, [2]), a.query(text, [3])])
      assert.equal(first.status, 'fulfilled')
      for (const r of [second, third]) {
        assert.equal(r.status, 'rejected')
        assert.equal((r.reason as Failure).mayHaveRun, true, (r.reason as Error).message)
      }
      assert.equal((second as PromiseRejectedResult).reason.code, '57P01')

      const b = new Client(viaPort(s, g.port))
      b.on('error', () => {})
      await b.connect()
      await b.query(text, [0])
      cutAt = g.gate.lastRecord((r) => r.kind === 'startup')!.readyCount! + 1
      await b.query(text, [1])
      // The session ended right after that answer: the next statement never reached the server.
      const err = (await b.query(text, [2]).catch((e: unknown) => e)) as Failure
      assert.ok(err.code === '57P01' || err.code === 'CONNECTION_LOST', `${err.code}: ${err.message}`)
      assert.equal(err.mayHaveRun, false)
      await a.end()
      await b.end()
    } finally {
      await g.stop()
    }
  })

  test('a cut inside a transaction rejects it and commits nothing; nothing is rerun piecemeal', async () => {
    const s = stack()
    await freshTable(s, 'lc_tx', 'id int primary key')
    let armed = false
    let inTx = 0
    const g = await s.startGate({
      tokenAuth: true,
      // Cut after the first insert inside the transaction (BEGIN's ReadyForQuery is the first 'T').
      cutAfterReady: (r: ReadyInfo) => armed && r.status === 'T' && ++inTx === 2,
    })
    const pool = new Pool(viaPort(s, g.port, { max: 1 }))
    pool.on('error', () => {})
    try {
      await pool.query('select 1')
      armed = true
      let calls = 0
      const err = (await pool.transaction(async (c) => {
        calls++
        await c.query('insert into lc_tx (id) values (1)')
        await c.query('insert into lc_tx (id) values (2)')
      }).catch((e: unknown) => e)) as Failure
      armed = false
      assert.ok(err.code === '57P01' || err.code === 'CONNECTION_LOST', `${err.code}: ${err.message}`)
      assert.equal(calls, 1, 'the transaction is not rerun')
      assert.deepEqual(await ids(s, 'lc_tx'), [])
      // The pool is fine afterwards.
      assert.deepEqual((await pool.query('select 7 as n')).rows, [{ n: 7 }])
    } finally {
      await pool.end()
      await g.stop()
    }
  })
})

describe('one round trip per checkout', () => {
  test('through a 10 ms-each-way tunnel: hot, after 1.5 s and after 30 s idle, pool.query costs 1 round trip', { timeout: 90_000 }, async () => {
    const s = stack()
    const g = await s.startGate({ tokenAuth: true, tunnelDelayMs: 10 })
    const pool = new Pool(viaPort(s, g.port, { max: 1 }))
    try {
      await pool.query('select $1::int as n', [0])
      const record = g.gate.lastRecord((r) => r.kind === 'startup')!
      const measure = async (label: string): Promise<number> => {
        const before = record.flights!
        const started = performance.now()
        const r = await pool.query('select $1::int as n', [1])
        const ms = performance.now() - started
        assert.deepEqual(r.rows, [{ n: 1 }])
        const trips = record.flights! - before
        console.log(`# ${label}: ${trips} round trip(s), ${ms.toFixed(1)} ms`)
        assert.equal(trips, 1, label)
        return ms
      }
      await measure('hot')
      await sleep(1500)
      await measure('after 1.5 s idle')
      await sleep(30_000)
      await measure('after 30 s idle')
      assert.equal(g.gate.log.filter((r) => r.kind === 'startup').length, 1, 'one connection throughout')
    } finally {
      await pool.end()
      await g.stop()
    }
  })
})

describe('a frozen process (SIGSTOP, as a Lambda between invocations)', () => {
  // The child runs a pool with one connection and answers each line on stdin with a query. While
  // it is stopped the gate closes every connection without a FATAL; the next line is written
  // before it resumes, so the query is issued as the process thaws, before anything was read.
  const CHILD = `const { Pool } = require(process.env.ROOT)
    const pool = new Pool({ ...JSON.parse(process.env.OPTS), max: 1 })
    pool.on('error', () => {})
    const run = () => pool.query('select 1 as one').then(() => console.log('ok'), (e) => console.log('failed ' + e.code + ' mayHaveRun=' + e.mayHaveRun))
    run()
    let buf = ''
    process.stdin.on('data', (d) => { buf += d; while (buf.includes('\\n')) { buf = buf.slice(buf.indexOf('\\n') + 1); run() } })
    process.stdin.on('end', () => pool.end())`

  test('after the event loop stood still, an idle connection closed meanwhile is checked, not used blind', { timeout: 60_000 }, async () => {
    const s = stack()
    const g = await s.startGate({ tokenAuth: true })
    const child = spawn(process.execPath, ['-e', CHILD], {
      env: { ...process.env, ROOT: process.cwd(), OPTS: JSON.stringify(viaPort(s, g.port)) },
      stdio: ['pipe', 'pipe', 'inherit'],
    })
    const lines: string[] = []
    let wake: (() => void) | null = null
    child.stdout.on('data', (d: Buffer) => {
      lines.push(...d.toString().split('\n').filter(Boolean))
      wake?.()
    })
    const answers = async (n: number): Promise<void> => {
      const until = Date.now() + 15_000
      while (lines.length < n && Date.now() < until) await new Promise<void>((r) => ((wake = r), setTimeout(r, 200)))
      assert.ok(lines.length >= n, `no answer ${n}: ${lines.join(' | ')}`)
    }
    try {
      await answers(1)
      const freezes = 4
      for (let i = 0; i < freezes; i++) {
        child.kill('SIGSTOP')
        g.gate.closeAll()
        await sleep(5600)
        child.stdin.write('go\n')
        child.kill('SIGCONT')
        await answers(i + 2)
      }
      assert.deepEqual(lines, Array(freezes + 1).fill('ok'))
    } finally {
      child.stdin.end()
      child.kill('SIGCONT')
      child.kill('SIGKILL')
      await g.stop()
    }
  })
})

describe('waking clusters', () => {
  const waking = { error: { code: '08006', message: 'waking up cluster, please retry later' } }

  test('the first connects meet "waking up cluster": retried with backoff, then connected (Client and Pool)', async () => {
    const s = stack()
    let refuse = 0
    const g = await s.startGate({ tokenAuth: true, onStartup: () => (refuse-- > 0 ? waking : undefined) })
    try {
      refuse = 3
      const c = new Client(viaPort(s, g.port, { connectionTimeoutMillis: 8000 }))
      const started = Date.now()
      await c.connect()
      assert.deepEqual((await c.query('select 1 as one')).rows, [{ one: 1 }])
      const took = Date.now() - started
      await c.end()
      assert.equal(g.gate.log.filter((r) => r.outcome === 'refused-by-hook').length, 3)
      assert.ok(took >= 300, 'it backed off between attempts')
      console.log(`# waking: connected after 3 refusals in ${took} ms`)

      refuse = 2
      const pool = new Pool(viaPort(s, g.port, { connectionTimeoutMillis: 8000 }))
      try {
        assert.deepEqual((await pool.query('select 2 as two')).rows, [{ two: 2 }])
      } finally {
        await pool.end()
      }
      assert.equal(g.gate.log.filter((r) => r.outcome === 'refused-by-hook').length, 5)
    } finally {
      await g.stop()
    }
  })

  test('still waking at connectionTimeoutMillis: CLUSTER_WAKING with the server error as cause; retries logged under DEBUG', async () => {
    const s = stack()
    const g = await s.startGate({ tokenAuth: true, onStartup: () => waking })
    try {
      const c = new Client(viaPort(s, g.port, { connectionTimeoutMillis: 700 }))
      const started = Date.now()
      const err = await rejectsWith(c.connect(), 'CLUSTER_WAKING')
      const took = Date.now() - started
      // It kept trying until about the deadline (a last try needs 100 ms), not much past it.
      assert.ok(took >= 500 && took < 2500, `${took} ms`)
      console.log(`# still waking: CLUSTER_WAKING after ${took} ms (connectionTimeoutMillis 700)`)
      assert.equal((err.cause as DsqlTunnelError).code, '08006')
      const pool = new Pool(viaPort(s, g.port, { connectionTimeoutMillis: 700 }))
      await rejectsWith(pool.query('select 1'), 'CLUSTER_WAKING')
      await pool.end()

      const code = `const { Client } = require(process.env.ROOT)
        new Client(JSON.parse(process.env.OPTS)).connect().then(() => process.exit(1), (e) => { console.log('code=' + e.code); process.exit(0) })`
      const out = await runNode(['-e', code], {
        ...process.env, ROOT: process.cwd(), DEBUG: 'dsql-tunnel',
        OPTS: JSON.stringify(viaPort(s, g.port, { connectionTimeoutMillis: 700 })),
      }, 15_000)
      assert.equal(out.code, 0, out.out)
      assert.match(out.out, /connect-retry reason=cluster-waking attempt=1/)
      assert.match(out.out, /code=CLUSTER_WAKING/)
      assert.doesNotMatch(out.out, new RegExp(s.aws.secretAccessKey.replace(/[+/=]/g, '.')))
    } finally {
      await g.stop()
    }
  })
})

describe('XX000 "server unavailable"', () => {
  test('injected once per statement, pool.query runs each through (on the same connection); inside a caller\'s transaction it rejects', async () => {
    const s = stack()
    await freshTable(s, 'lc_xx', 'id int primary key')
    const seen = new Set<string>()
    const g = await s.startGate({
      tokenAuth: true,
      injectError: (r: RequestInfo) => {
        if (!r.text?.includes('lc_xx') || seen.has(r.text)) return undefined
        seen.add(r.text)
        return { code: 'XX000', message: 'server unavailable' }
      },
    })
    const pool = new Pool(viaPort(s, g.port, { max: 2 }))
    try {
      for (let i = 0; i < 10; i++) await pool.query(`insert into lc_xx (id) values (${i})`)
      const results = await Promise.all(Array.from({ length: 10 }, (_, i) => pool.query(`select ${i}::int as n /* lc_xx */`)))
      assert.deepEqual(results.map((r) => r.rows[0].n), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
      assert.deepEqual(await ids(s, 'lc_xx'), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
      const injected = g.gate.log.reduce((n, r) => n + (r.injected ?? 0), 0)
      assert.equal(injected, 20)
      assert.equal(g.gate.log.filter((r) => r.kind === 'startup').length <= 2, true, 'reruns stay on their connection')

      const c = await pool.connect()
      try {
        await c.query('begin')
        await rejectsWith(c.query('insert into lc_xx (id) values (100)'), 'XX000')
        await c.query('rollback')
      } finally {
        c.release()
      }

      // transaction() reruns the whole callback, as for an OCC conflict.
      let calls = 0
      await pool.transaction(async (tx) => {
        calls++
        await tx.query('insert into lc_xx (id) values (200)')
      })
      assert.equal(calls, 2)
      assert.deepEqual((await ids(s, 'lc_xx')).filter((id) => id >= 100), [200])
    } finally {
      await pool.end()
      await g.stop()
    }
  })
})

describe('OCC conflicts through an ORM wrapper', () => {
  test('a DrizzleQueryError whose cause is a real 40001 is recognised and retried by transaction()', async () => {
    const s = stack()
    await freshTable(s, 'lc_occ', 'id int primary key, n int not null')
    const pool = new Pool(viaPort(s, s.tunnelPort, { max: 3 }))
    try {
      await pool.query('insert into lc_occ values (1, 0)')
      let calls = 0
      let wrapped: unknown = null
      await pool.transaction(async (tx) => {
        calls++
        await tx.query('select n from lc_occ where id = 1')
        // Another session changes the row after this snapshot: this update must conflict.
        if (calls === 1) await pool.query('update lc_occ set n = n + 100 where id = 1')
        try {
          await tx.query('update lc_occ set n = n + 1 where id = 1')
        } catch (e) {
          wrapped = new DrizzleQueryError('update lc_occ set n = n + 1 where id = 1', [], e as Error)
          throw wrapped
        }
      }, { isolation: 'repeatable read' })
      assert.equal(calls, 2)
      assert.ok(wrapped instanceof DrizzleQueryError)
      assert.equal(((wrapped as Error).cause as DsqlTunnelError).code, '40001')
      assert.ok(isOccError(wrapped))
      assert.ok(!isOccError(new DrizzleQueryError('x', [], Object.assign(new Error('dup'), { code: '23505' }))))
      assert.deepEqual((await pool.query('select n from lc_occ where id = 1')).rows, [{ n: 101 }])
    } finally {
      await pool.end()
    }
  })
})

describe("DSQL's size limits", () => {
  test('an 11 MiB parameter is refused before sending (MESSAGE_TOO_LARGE); nothing is sent, the connection stays usable', async () => {
    const s = stack()
    const g = await s.startGate({ tokenAuth: true })
    const c = new Client(viaPort(s, g.port))
    try {
      await c.connect()
      await c.query('select 1')
      const record = g.gate.lastRecord((r) => r.kind === 'startup')!
      const before = record.flights
      const big = 'x'.repeat(11 * 1024 * 1024)
      const err = await rejectsWith(c.query('select length($1::text) as n', [big]), 'MESSAGE_TOO_LARGE')
      assert.equal((err as DsqlTunnelError & { limit?: number }).limit, 10 * 1024 * 1024)
      await sleep(50)
      assert.equal(record.flights, before, 'nothing was sent')
      assert.deepEqual((await c.query('select length($1::text) as n', ['x'.repeat(1024 * 1024)])).rows, [{ n: 1024 * 1024 }])
      assert.ok(record.flights! > before!, "the next request went out")
      // In a stream too, and the limit is an option.
      await rejectsWith((async () => { for await (const _ of c.stream('select $1::text', [big])) void _ })(), 'MESSAGE_TOO_LARGE')
    } finally {
      await c.end()
    }
    const small = new Client(viaPort(s, g.port, { maxMessageBytes: 4096 }))
    try {
      await small.connect()
      await rejectsWith(small.query('select $1::text', ['y'.repeat(5000)]), 'MESSAGE_TOO_LARGE')
      assert.equal((await small.query('select $1::text as t', ['y'.repeat(1000)])).rows[0].t.length, 1000)
    } finally {
      await small.end()
      await g.stop()
    }
  })

  test('a 54000 over DSQL\'s limits carries a hint naming them', async () => {
    const s = stack()
    const g = await s.startGate({
      tokenAuth: true,
      injectError: (r: RequestInfo) => (r.text?.includes('lc_limit') ? { code: '54000', message: 'transaction row limit exceeded' } : undefined),
    })
    const c = new Client(viaPort(s, g.port))
    try {
      await c.connect()
      const err = (await rejectsWith(c.query('select 1 /* lc_limit */'), '54000')) as DsqlTunnelError & { hint?: string }
      assert.match(err.hint ?? '', /3,000 modified rows/)
      assert.match(err.hint ?? '', /10 MiB/)
    } finally {
      await c.end()
      await g.stop()
    }
  })
})
