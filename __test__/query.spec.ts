// Query behaviour: result metadata, row modes, several statements in one text, pipelining, large
// results, the statement cache, parameter counts, server errors, round trips, and SCRAM against
// plain PostgreSQL.
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { connect, type Client, type ClientConfig, type QueryResult, DatabaseError, DsqlTunnelError } from '../index.js'
import { rejectsWith, through, useStack } from './helpers.ts'

const stack = useStack()

// A schema of our own, so table names cannot collide with anything else in the database.
const SCHEMA = `qspec_${process.pid}_${Date.now()}`

/** Opens one client for the enclosing describe block and ends it afterwards. */
function useClient(config: () => ClientConfig = () => through(stack())): () => Client {
  let client: Client | undefined
  before(async () => {
    client = await connect(config())
  })
  after(async () => {
    await client?.end()
  })
  return () => {
    if (!client) throw new Error('client not connected')
    return client
  }
}

/** A text of several statements resolves with one result per statement. */
async function multi(client: Client, sql: string): Promise<QueryResult[]> {
  const r: unknown = await client.query(sql)
  assert.ok(Array.isArray(r), 'several statements give an array of results')
  return r as QueryResult[]
}

const md5 = (s: string): string => createHash('md5').update(s).digest('hex')

async function countRows(client: Client, table: string, where = 'true'): Promise<number> {
  const r = await client.query(`select count(*)::int as n from ${table} where ${where}`)
  return r.rows[0].n
}

describe('command and rowCount', () => {
  const client = useClient()
  const T = `${SCHEMA}.counts`

  before(async () => {
    await client().query(`create schema if not exists ${SCHEMA}`)
  })

  test('SELECT reports the rows returned', async () => {
    const r = await client().query('select g from generate_series(1, 3) g')
    assert.equal(r.command, 'SELECT')
    assert.equal(r.rowCount, 3)
    assert.equal(r.rows.length, 3)
    const none = await client().query('select 1 as a where false')
    assert.equal(none.command, 'SELECT')
    assert.equal(none.rowCount, 0)
  })

  test('CREATE TABLE reports CREATE and no row count', async () => {
    const r = await client().query(`create table ${T} (id int primary key, v text)`)
    assert.equal(r.command, 'CREATE')
    assert.equal(r.rowCount, null)
    assert.deepEqual(r.rows, [])
  })

  test('INSERT, UPDATE and DELETE report the rows affected', async () => {
    const ins = await client().query(`insert into ${T} values (1, 'a'), (2, 'b'), (3, 'c')`)
    assert.equal(ins.command, 'INSERT')
    assert.equal(ins.rowCount, 3)
    const ret = await client().query(`insert into ${T} values ($1, $2) returning id, v`, [4, 'd'])
    assert.equal(ret.command, 'INSERT')
    assert.equal(ret.rowCount, 1)
    assert.deepEqual(ret.rows, [{ id: 4, v: 'd' }])
    const upd = await client().query(`update ${T} set v = v || '!' where id > $1`, [2])
    assert.equal(upd.command, 'UPDATE')
    assert.equal(upd.rowCount, 2)
    const none = await client().query(`update ${T} set v = 'x' where id > 100`)
    assert.equal(none.command, 'UPDATE')
    assert.equal(none.rowCount, 0)
    const del = await client().query(`delete from ${T} where id in (1, 2)`)
    assert.equal(del.command, 'DELETE')
    assert.equal(del.rowCount, 2)
    assert.equal(await countRows(client(), T), 2)
  })
})

describe("rowMode: 'array'", () => {
  const client = useClient()

  test('query(text, values, { rowMode }) gives each row as an array in column order', async () => {
    const r = await client().query('select $1::int as a, $2::text as b, null::bool as c', [7, 'ü'], { rowMode: 'array' })
    assert.deepEqual(r.rows, [[7, 'ü', null]])
    assert.equal(r.rowAsArray, true)
    assert.deepEqual(
      r.fields.map((f) => f.name),
      ['a', 'b', 'c'],
    )
  })

  test('query({ text, values, rowMode }) does the same', async () => {
    const r = await client().query({ text: 'select g as a, g * 2 as b from generate_series(1, $1::int) g', values: [3], rowMode: 'array' })
    assert.deepEqual(r.rows, [[1, 2], [2, 4], [3, 6]])
    assert.equal(r.rowAsArray, true)
  })

  test('array rows keep columns that share a name; object rows are the default', async () => {
    const arr = await client().query('select 1 as a, 2 as a', [], { rowMode: 'array' })
    assert.deepEqual(arr.rows, [[1, 2]])
    const obj = await client().query('select 1 as a, 2 as b')
    assert.deepEqual(obj.rows, [{ a: 1, b: 2 }])
    assert.equal(obj.rowAsArray, false)
  })
})

describe('several statements in one text', () => {
  const client = useClient()
  const T = `${SCHEMA}.multi`

  before(async () => {
    await client().query(`create schema if not exists ${SCHEMA}`)
    await client().query(`create table ${T} (id int primary key, v text)`)
  })

  test('one result per statement, each with its command', async () => {
    const rs = await multi(client(), 'select 1 as a; select 2 as b')
    assert.equal(rs.length, 2)
    assert.deepEqual(
      rs.map((r) => [r.command, r.rowCount, r.rows.length, r.fields.map((f) => f.name)]),
      [['SELECT', 1, 1, ['a']], ['SELECT', 1, 1, ['b']]],
    )
    const mixed = await multi(
      client(),
      `insert into ${T} values (1, 'a'), (2, 'b'); update ${T} set v = 'y' where id = 1; delete from ${T} where id = 2; select * from ${T}`,
    )
    assert.deepEqual(
      mixed.map((r) => [r.command, r.rowCount]),
      [['INSERT', 2], ['UPDATE', 1], ['DELETE', 1], ['SELECT', 1]],
    )
    assert.equal(mixed[3].rows.length, 1)
  })

  test('values of each statement are decoded by their type, as for a single statement', async () => {
    const rs = await multi(client(), `select 1 as a, 'x'::text as b; select true as c, null::int as d, 1.5::float8 as e`)
    assert.deepEqual(
      rs.map((r) => r.rows),
      [[{ a: 1, b: 'x' }], [{ c: true, d: null, e: 1.5 }]],
    )
    assert.deepEqual(
      rs.map((r) => r.fields.map((f) => f.dataTypeID)),
      [[23, 25], [16, 23, 701]],
    )
  })

  test('an error in the second statement rejects with its SQLSTATE and undoes the first', async () => {
    const before = await countRows(client(), T)
    const err = await rejectsWith(client().query(`insert into ${T} values (100, 'gone'); select 1 / 0`), '22012')
    assert.ok(err instanceof DatabaseError)
    assert.equal(await countRows(client(), T, 'id = 100'), 0)
    assert.equal(await countRows(client(), T), before)
    // Not left in an aborted transaction.
    assert.deepEqual((await client().query('select 1 as ok')).rows, [{ ok: 1 }])
  })
})

describe('pipelining', () => {
  let client: Client | undefined
  let logStart = 0
  before(async () => {
    logStart = stack().gate.log.length
    client = await connect(through(stack()))
  })
  after(async () => {
    await client?.end()
  })

  test('200 queries issued at once settle with their own values, in issue order, over one connection', async () => {
    const c = client!
    // Several bursts (the first prepares the text, the others use the cache): an ordering race
    // would otherwise show only now and then.
    const outOfOrder: Array<{ round: number; position: number; settledThere: number[] }> = []
    for (let round = 0; round < 5; round++) {
      const settled: number[] = []
      const pending = Array.from({ length: 200 }, (_, i) =>
        c.query('select $1::int as i, $2::text as s, $1::int * 3 as t', [i, `s${i}ü${round}`]).then((r) => {
          settled.push(i)
          return r
        }),
      )
      const results = await Promise.all(pending)
      assert.equal(results.length, 200)
      results.forEach((r, i) => assert.deepEqual(r.rows, [{ i, s: `s${i}ü${round}`, t: i * 3 }]))
      const k = settled.findIndex((v, n) => v !== n)
      if (k !== -1) outOfOrder.push({ round, position: k, settledThere: settled.slice(k, k + 5) })
    }
    const startups = stack().gate.log.slice(logStart).filter((r) => r.kind === 'startup')
    assert.equal(startups.length, 1)
    assert.deepEqual(outOfOrder, [], 'every burst settles in issue order')
  })
})

describe('a large result', () => {
  const client = useClient()

  test('50000 rows across several chunks arrive complete and in order', async () => {
    const r = await client().query(
      'select g as i, md5(g::text) as s, g * 1.5 as f, (g % 2 = 0) as b, now() as t from generate_series(1, 50000) g',
    )
    assert.equal(r.command, 'SELECT')
    assert.equal(r.rowCount, 50000)
    assert.equal(r.rows.length, 50000)
    const first = r.rows[0]
    const t = first.t
    assert.ok(t instanceof Date)
    assert.deepEqual(first, { i: 1, s: 'c4ca4238a0b923820dcc509a6f75849b', f: '1.5', b: false, t })
    assert.deepEqual(r.rows[24999], { i: 25000, s: md5('25000'), f: '37500.0', b: true, t })
    assert.deepEqual(r.rows[49999], { i: 50000, s: '1017bfd4673955ffee4641ad3d481b1c', f: '75000.0', b: true, t })
    let out = 0
    for (let k = 0; k < r.rows.length; k++) {
      const row = r.rows[k]
      const g = k + 1
      if (row.i !== g || row.s !== md5(String(g)) || row.b !== (g % 2 === 0) || row.f !== (g * 1.5).toFixed(1) || row.t.getTime() !== t.getTime()) out++
    }
    assert.equal(out, 0)
  })
})

describe('statement cache', () => {
  const client = useClient()
  const T = `${SCHEMA}.shape`

  before(async () => {
    await client().query(`create schema if not exists ${SCHEMA}`)
    await client().query(`create table ${T} (id int primary key, v text)`)
    await client().query(`insert into ${T} values (1, 'one'), (2, 'two')`)
  })

  test('the same text run again gives the same results', async () => {
    const sql = 'select $1::int * 2 as d, $2::text as s, g from generate_series(1, 3) g'
    const firstRun = await client().query(sql, [21, 'ä'])
    for (let k = 0; k < 5; k++) {
      const again = await client().query(sql, [21, 'ä'])
      assert.deepEqual(again.rows, firstRun.rows)
      assert.deepEqual(again.fields, firstRun.fields)
    }
    assert.deepEqual(firstRun.rows, [1, 2, 3].map((g) => ({ d: 42, s: 'ä', g })))
    assert.deepEqual((await client().query(sql, [5, 'b'])).rows[2], { d: 10, s: 'b', g: 3 })
  })

  test('more distinct texts in flight than the cache holds: each result keeps its own columns', async () => {
    // 600 texts (the cache keeps 256) issued at once, twice: statements are evicted while results
    // that name them are still on the way, and texts seen before are prepared again.
    for (let round = 0; round < 2; round++) {
      const results = await Promise.all(
        Array.from({ length: 600 }, (_, i) => client().query(`select $1::int as c${i}, 'r${round}' as round`, [i])),
      )
      results.forEach((r, i) => {
        assert.deepEqual(r.rows, [{ [`c${i}`]: i, round: `r${round}` }])
        assert.deepEqual(r.fields.map((f) => f.name), [`c${i}`, 'round'])
      })
    }
  })

  test('a text too large to cache runs correctly, again and again', async () => {
    const pad = `/* ${'x'.repeat(70_000)} */`
    for (let i = 0; i < 3; i++) {
      const r = await client().query(`select $1::int as n, $2::text as t ${pad}`, [i, 'big'])
      assert.deepEqual(r.rows, [{ n: i, t: 'big' }])
      assert.equal(r.command, 'SELECT')
    }
  })

  test('after ALTER TABLE changes the columns, the same text returns the new shape', async () => {
    const all = `select * from ${T} order by id`
    const one = `select * from ${T} where id = $1`
    assert.deepEqual((await client().query(all)).rows, [{ id: 1, v: 'one' }, { id: 2, v: 'two' }])
    assert.deepEqual((await client().query(one, [1])).rows, [{ id: 1, v: 'one' }])

    await client().query(`alter table ${T} add column w text default 'x'`)
    assert.deepEqual((await client().query(all)).rows, [{ id: 1, v: 'one', w: 'x' }, { id: 2, v: 'two', w: 'x' }])
    assert.deepEqual((await client().query(one, [2])).rows, [{ id: 2, v: 'two', w: 'x' }])

    await client().query(`alter table ${T} drop column v`)
    const dropped = await client().query(all)
    assert.deepEqual(dropped.rows, [{ id: 1, w: 'x' }, { id: 2, w: 'x' }])
    assert.deepEqual(
      dropped.fields.map((f) => f.name),
      ['id', 'w'],
    )

    await client().query(`alter table ${T} alter column id type int8`)
    assert.deepEqual((await client().query(all)).rows, [{ id: '1', w: 'x' }, { id: '2', w: 'x' }])
    assert.deepEqual((await client().query(one, [1])).rows, [{ id: '1', w: 'x' }])
  })
})

describe('parameter count', () => {
  const client = useClient()

  const stillUsable = async (): Promise<void> => {
    assert.deepEqual((await client().query('select $1::text as ok', ['yes'])).rows, [{ ok: 'yes' }])
  }

  test('too few values, the first time a text is used', async () => {
    await rejectsWith(client().query('select $1::int as a, $2::int as b', [1]), 'PARAMETER_COUNT_MISMATCH')
    await rejectsWith(client().query('select $1::int as g', []), 'PARAMETER_COUNT_MISMATCH')
    await stillUsable()
  })

  test('too many values, the first time a text is used', async () => {
    await rejectsWith(client().query('select $1::int as c', [1, 2]), 'PARAMETER_COUNT_MISMATCH')
    await stillUsable()
    await rejectsWith(client().query('select 3 as d', [1]), 'PARAMETER_COUNT_MISMATCH')
    await stillUsable()
  })

  test('too few and too many values once the text is cached', async () => {
    const sql = 'select $1::int as e, $2::int as f'
    assert.deepEqual((await client().query(sql, [1, 2])).rows, [{ e: 1, f: 2 }])
    await rejectsWith(client().query(sql, [1]), 'PARAMETER_COUNT_MISMATCH')
    await rejectsWith(client().query(sql, [1, 2, 3]), 'PARAMETER_COUNT_MISMATCH')
    await rejectsWith(client().query(sql), 'PARAMETER_COUNT_MISMATCH')
    assert.deepEqual((await client().query(sql, [5, 6])).rows, [{ e: 5, f: 6 }])
    await stillUsable()
  })
})

describe('server errors', () => {
  const client = useClient()
  const T = `${SCHEMA}.uniq`

  before(async () => {
    await client().query(`create schema if not exists ${SCHEMA}`)
    await client().query(`create table ${T} (id int constraint uniq_id_key unique, v text)`)
    await client().query(`insert into ${T} values (1, 'a')`)
  })

  test('a syntax error rejects with a DatabaseError 42601 and its position', async () => {
    const err = await rejectsWith(client().query('selec 1'), '42601')
    assert.ok(err instanceof DatabaseError)
    assert.ok(err instanceof DsqlTunnelError)
    assert.equal(err.severity, 'ERROR')
    assert.equal(err.position, '1')
    const withParams = await rejectsWith(client().query('select $1::int as a from from', [1]), '42601')
    assert.ok(withParams instanceof DatabaseError)
    assert.equal(withParams.position, '26')
    assert.deepEqual((await client().query('select 1 as ok')).rows, [{ ok: 1 }])
  })

  test('a unique violation rejects with 23505 and its constraint, table, schema and detail', async () => {
    const err = await rejectsWith(client().query(`insert into ${T} values ($1, $2)`, [1, 'dup']), '23505')
    assert.ok(err instanceof DatabaseError)
    assert.equal(err.constraint, 'uniq_id_key')
    assert.equal(err.table, 'uniq')
    assert.equal(err.schema, SCHEMA)
    assert.equal(typeof err.detail, 'string')
    assert.match(err.detail!, /\(id\)=\(1\)/)
    assert.equal(await countRows(client(), T), 1)
    // The same text, now cached, fails the same way.
    await rejectsWith(client().query(`insert into ${T} values ($1, $2)`, [1, 'dup']), '23505')
    await client().query(`insert into ${T} values ($1, $2)`, [2, 'ok'])
    assert.equal(await countRows(client(), T), 2)
  })
})

describe('one round trip per query', () => {
  let tunnelStop: (() => Promise<void>) | undefined
  let client: Client | undefined
  before(async () => {
    // 100 ms each way: a round trip costs at least 200 ms, two cost at least 400 ms.
    const t = await stack().startTunnel(stack().gatePort, { delayMs: 100 })
    tunnelStop = () => t.stop()
    client = await connect(through(stack(), { port: t.port }))
  })
  after(async () => {
    await client?.end()
    await tunnelStop?.()
  })

  const timed = async (fn: () => Promise<unknown>): Promise<number> => {
    const start = performance.now()
    await fn()
    return performance.now() - start
  }

  test('a first-time text with parameters, and the same text again, each take one round trip', async () => {
    const c = client!
    const sql = `select $1::int + 1 as v, $2::text as s /* ${Date.now()} */`
    let first: QueryResult | undefined
    const firstMs = await timed(async () => {
      first = await c.query(sql, [41, 'é'])
    })
    assert.deepEqual(first?.rows, [{ v: 42, s: 'é' }])
    assert.ok(firstMs < 350, `first-time query took ${firstMs.toFixed(0)} ms`)
    let again: QueryResult | undefined
    const cachedMs = await timed(async () => {
      again = await c.query(sql, [1, 'x'])
    })
    assert.deepEqual(again?.rows, [{ v: 2, s: 'x' }])
    assert.ok(cachedMs < 350, `cached query took ${cachedMs.toFixed(0)} ms`)
  })

  test('10 queries issued at once are pipelined', async () => {
    const c = client!
    let results: QueryResult[] = []
    const ms = await timed(async () => {
      results = await Promise.all(Array.from({ length: 10 }, (_, i) => c.query('select $1::int * 10 as v', [i])))
    })
    assert.deepEqual(
      results.map((r) => r.rows[0].v),
      [0, 10, 20, 30, 40, 50, 60, 70, 80, 90],
    )
    assert.ok(ms < 600, `10 pipelined queries took ${ms.toFixed(0)} ms`)
  })
})

describe('SCRAM against plain PostgreSQL', () => {
  let tunnelStop: (() => Promise<void>) | undefined
  let port = 0
  before(async () => {
    const t = await stack().startTunnel(stack().pgPort)
    tunnelStop = () => t.stop()
    port = t.port
  })
  after(async () => {
    await tunnelStop?.()
  })

  const config = (password: string): ClientConfig => ({
    // PostgreSQL's own certificate is for localhost, signed by the test CA.
    host: 'localhost',
    hostaddr: '127.0.0.1',
    port,
    sslrootcert: stack().caFile,
    sslnegotiation: 'postgres',
    user: stack().users.app.user,
    password,
  })

  test('connects with SCRAM-SHA-256 (channel binding allowed) as app_user', async () => {
    const c = await connect(config(stack().users.app.password))
    try {
      assert.deepEqual((await c.query('select current_user')).rows, [{ current_user: 'app_user' }])
      assert.equal(c.connection?.sslnegotiation, 'postgres')
    } finally {
      await c.end()
    }
  })

  test('a wrong password rejects with 28P01', async () => {
    const err = await rejectsWith(connect(config(`${stack().users.app.password}-wrong`)), '28P01')
    assert.ok(err instanceof DatabaseError)
  })
})
