// Streaming large results with backpressure, and large query() results delivered in batches.
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { connect, Pool, type Client } from '../index.js'
import { rejectsWith, through, useStack } from './helpers.ts'

const stack = useStack()

describe('stream()', () => {
  let client: Client

  test('yields every row in order, in batches, with fields typed as query() types them', async () => {
    client = await connect(through(stack()))
    let n = 0
    for await (const row of client.stream('select g as i, md5(g::text) as s, g % 2 = 0 as even from generate_series(1, 20000) g', [], { batchSize: 777 })) {
      n++
      assert.equal(row.i, n)
      if (n === 2) assert.deepEqual(row, { i: 2, s: 'c81e728d9d4c2f636f067f89cc14862c', even: true })
    }
    assert.equal(n, 20000)
    const arrays = []
    for await (const row of client.stream('select $1::int as a, $2::text as b', [7, 'x'], { rowMode: 'array' })) arrays.push(row)
    assert.deepEqual(arrays, [[7, 'x']])
    for await (const row of client.stream('select 1 where false')) assert.fail(`no rows expected, got ${JSON.stringify(row)}`)
  })

  test('a result far larger than the batch streams in bounded memory', async (t) => {
    // ~250 MB of rows; holding them (a million objects and strings) would move RSS by well over
    // 300 MB. What remains is garbage between collections: up to ~120 MB on Node 24.
    const before = process.memoryUsage().rss
    let peak = before
    let n = 0
    for await (const row of client.stream("select g, repeat('x', 240) as pad from generate_series(1, 1000000) g", [], { batchSize: 2000 })) {
      if ((++n & 0x3fff) === 0) peak = Math.max(peak, process.memoryUsage().rss)
      if (row.pad.length !== 240) assert.fail('bad row')
    }
    assert.equal(n, 1_000_000)
    const grew = (peak - before) / 2 ** 20
    t.diagnostic(`RSS grew by ${grew.toFixed(1)} MB while streaming ~250 MB`)
    assert.ok(grew < 160, `RSS grew by ${grew.toFixed(0)} MB while streaming ~250 MB`)
  })

  test('breaking out cancels the statement; the connection is usable at once', async () => {
    const cancelsBefore = stack().gate.log.filter((r) => r.kind === 'cancel').length
    let seen = 0
    for await (const _ of client.stream('select g from generate_series(1, 50000000) g')) {
      if (++seen === 10) break
    }
    const started = Date.now()
    assert.deepEqual((await client.query('select 42 as answer')).rows, [{ answer: 42 }])
    assert.ok(Date.now() - started < 3000, 'the rest of the result was not read to the end')
    const cancels = stack().gate.log.filter((r) => r.kind === 'cancel')
    assert.equal(cancels.length, cancelsBefore + 1)
    assert.equal(cancels.at(-1)?.sni, stack().host)
  })

  test('an error mid-stream rejects with its SQLSTATE after the rows before it', async () => {
    let n = 0
    const consume = async () => {
      for await (const _ of client.stream('select 1 / (5000 - g) from generate_series(1, 10000) g', [], { batchSize: 100 })) n++
    }
    await rejectsWith(consume(), '22012')
    assert.ok(n > 0 && n < 5000, `${n} rows before the error`)
    assert.deepEqual((await client.query('select 1 as ok')).rows, [{ ok: 1 }])
  })

  test('bad arguments and several statements reject with INVALID_ARGUMENT', async () => {
    const drain = async (it: AsyncIterable<unknown>) => {
      for await (const _ of it);
    }
    await rejectsWith(drain(client.stream('select 1; select 2')), 'INVALID_ARGUMENT')
    await rejectsWith(drain(client.stream('select 1', [], { batchSize: 0 })), 'INVALID_ARGUMENT')
    await client.end()
    await rejectsWith(drain(client.stream('select 1')), 'CLIENT_CLOSED')
  })

  test('pool.stream checks a connection out for the iteration and gives it back', async () => {
    const pool = new Pool({ ...through(stack()), max: 1 })
    try {
      let n = 0
      for await (const _ of pool.stream('select generate_series(1, 5000)')) n++
      assert.equal(n, 5000)
      assert.equal(pool.idleCount, 1)
      for await (const _ of pool.stream('select generate_series(1, 5000)')) break
      assert.equal(pool.idleCount, 1)
      assert.deepEqual((await pool.query('select 3 as x')).rows, [{ x: 3 }])
    } finally {
      await pool.end()
    }
  })
})

describe('large query() results', () => {
  test('arrive in batches, yielding to the event loop between them', async () => {
    const client = await connect(through(stack()))
    try {
      let ticks = 0
      let running = true
      const tick = () => {
        ticks++
        if (running) setImmediate(tick)
      }
      // Many batches: the event loop must get turns while they are built, not only while waiting.
      const r = await client.query('select g as i from generate_series(1, 100000) g')
      assert.equal(r.rows.length, 100000)
      assert.equal(r.rows[99999].i, 100000)
      assert.equal(r.rowCount, 100000)
      setImmediate(tick)
      const again = await client.query('select g as i, now() as t from generate_series(1, 100000) g')
      running = false
      assert.equal(again.rows.length, 100000)
      assert.ok(ticks >= 100000 / 4096 - 1, `only ${ticks} event-loop turns while 25 batches arrived`)
    } finally {
      await client.end()
    }
  })
})
