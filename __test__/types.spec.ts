// Value mapping in both directions, following node-postgres's conventions: what each PostgreSQL
// type becomes in JavaScript, what each JavaScript value becomes as a parameter, NULLs, arrays,
// non-ASCII text, and the parameters that cannot be sent at all.
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { connect, type Client, type ClientConfig, DsqlTunnelError, types } from '../index.js'
import { rejectsWith, through, useStack } from './helpers.ts'

const stack = useStack()

/** Opens one client for the enclosing describe block and ends it afterwards. */
function useClient(extra: ClientConfig = {}): () => Client {
  let client: Client | undefined
  before(async () => {
    client = await connect(through(stack(), extra))
  })
  after(async () => {
    await client?.end()
  })
  return () => {
    if (!client) throw new Error('client not connected')
    return client
  }
}

/** The single row of `sql`. */
async function one(client: Client, sql: string, values?: unknown[]): Promise<Record<string, any>> {
  const r = await client.query(sql, values)
  assert.equal(r.rows.length, 1, `expected one row from ${sql}`)
  return r.rows[0]
}

/** For each literal: the value as this client decodes it, and PostgreSQL's own output text for it. */
async function decodedAndPrinted(client: Client, type: string, literals: string[], parsers?: { getTypeParser: (oid: number, format?: string) => (v: string) => unknown }): Promise<Array<{ v: unknown; t: string }>> {
  // format('%s', v) runs the type's output function: exactly what psql would show.
  const r = await client.query({ text: `select v::${type} as v, format('%s', v::${type}) as t from unnest($1::text[]) with ordinality as x(v, n) order by n`, values: [literals], types: parsers })
  assert.equal(r.rows.length, literals.length)
  return r.rows
}

describe('results: scalar types', () => {
  const client = useClient()

  test('int2, int4, oid, float4 and float8 arrive as numbers', async () => {
    const r = await client().query(
      `select 1::int2 as a, '-32768'::int2 as b, 2147483647::int4 as c, '-2147483648'::int4 as d, 4294967295::oid as e,
              0.5::float4 as f, 2.25::float8 as g, 'NaN'::float8 as h, 'Infinity'::float8 as i, '-Infinity'::float8 as j,
              (0.1::float8 + 0.2::float8) as k, 1e308::float8 as l`,
    )
    assert.deepEqual(r.rows, [{ a: 1, b: -32768, c: 2147483647, d: -2147483648, e: 4294967295, f: 0.5, g: 2.25, h: NaN, i: Infinity, j: -Infinity, k: 0.1 + 0.2, l: 1e308 }])
    assert.deepEqual(
      r.fields.map((f) => f.dataTypeID),
      [21, 21, 23, 23, 26, 700, 701, 701, 701, 701, 701, 701],
    )
  })

  test('float4 values arrive as the number PostgreSQL prints (shortest form), not the widened binary float', async () => {
    // psql and node-postgres show 1.1 for 1.1::float4; widening the 32-bit float gives 1.100000023841858.
    const row = await one(client(), `select 1.1::float4 as a, 3.14159::float4 as b, array[1.1, 0.1]::float4[] as c`)
    assert.deepEqual(row, { a: 1.1, b: 3.14159, c: [1.1, 0.1] })
  })

  test('int8 arrives as an exact decimal string by default', async () => {
    const r = await client().query(
      `select 9007199254740993::int8 as a, '-9223372036854775808'::int8 as b, 9223372036854775807::int8 as c, 0::int8 as d, null::int8 as e`,
    )
    assert.deepEqual(r.rows, [{ a: '9007199254740993', b: '-9223372036854775808', c: '9223372036854775807', d: '0', e: null }])
    assert.equal(r.fields[0].dataTypeID, 20)
  })

  test('numeric arrives as an exact string, as PostgreSQL prints it', async () => {
    const row = await one(
      client(),
      `select '123456789012345678901234567890.000001'::numeric as a, 'NaN'::numeric as b, 1.50::numeric(10,2) as c,
              0.0001::numeric as d, -98765.4321::numeric as e, 10000::numeric as f, 'Infinity'::numeric as g, '-Infinity'::numeric as h`,
    )
    assert.deepEqual(row, {
      a: '123456789012345678901234567890.000001', b: 'NaN', c: '1.50', d: '0.0001', e: '-98765.4321', f: '10000', g: 'Infinity', h: '-Infinity',
    })
    const literals = ['0', '-0.000', '1e-20', '99990000', '0.1', '100000000000000000000', '1.000000000000000000001', '-0.5', '12345.678900']
    for (const { v, t } of await decodedAndPrinted(client(), 'numeric', literals)) assert.equal(v, t)
  })

  test('bool arrives as a boolean', async () => {
    const row = await one(client(), `select true as a, false as b, null::bool as c`)
    assert.deepEqual(row, { a: true, b: false, c: null })
  })

  test('text, varchar, char(n), name and uuid arrive as strings, non-ASCII intact', async () => {
    const r = await client().query(
      `select 'héllo wörld ✓ 😀'::text as a, 'x'::varchar(5) as b, 'ab'::char(4) as c, 'nm'::name as d,
              'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'::uuid as e, ''::text as f, '日本語'::varchar as g`,
    )
    assert.deepEqual(r.rows, [{ a: 'héllo wörld ✓ 😀', b: 'x', c: 'ab  ', d: 'nm', e: 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', f: '', g: '日本語' }])
    assert.deepEqual(
      r.fields.map((f) => f.dataTypeID),
      [25, 1043, 1042, 19, 2950, 25, 1043],
    )
  })

  test('json and jsonb arrive parsed', async () => {
    const row = await one(
      client(),
      `select '{"a":[1,"é",null],"b":{"c":true}}'::json as a, '{"ключ":"😀","n":1.5}'::jsonb as b, '"str"'::json as c,
              '123'::jsonb as d, 'null'::jsonb as e, null::jsonb as f, '[]'::json as g`,
    )
    assert.deepEqual(row, { a: { a: [1, 'é', null], b: { c: true } }, b: { ключ: '😀', n: 1.5 }, c: 'str', d: 123, e: null, f: null, g: [] })
  })

  test('bytea arrives as a Buffer', async () => {
    const row = await one(client(), `select '\\x00ff7f'::bytea as a, '\\x'::bytea as b, null::bytea as c, decode(repeat('ab', 1000), 'hex') as d`)
    assert.ok(Buffer.isBuffer(row.a))
    assert.deepEqual(row.a, Buffer.from([0x00, 0xff, 0x7f]))
    assert.ok(Buffer.isBuffer(row.b))
    assert.equal(row.b.length, 0)
    assert.equal(row.c, null)
    assert.deepEqual(row.d, Buffer.alloc(1000, 0xab))
  })

  test('timestamptz arrives as a Date with millisecond precision, infinities as ±Infinity', async () => {
    const row = await one(
      client(),
      `select '2024-02-29 13:04:05.123456+00'::timestamptz as a, '2024-06-01 12:00:00+02'::timestamptz as b,
              '1969-12-31 23:59:59.9995+00'::timestamptz as c, 'infinity'::timestamptz as d, '-infinity'::timestamptz as e,
              '1900-01-01 00:00:00+00'::timestamptz as f`,
    )
    assert.ok(row.a instanceof Date)
    assert.equal(row.a.toISOString(), '2024-02-29T13:04:05.123Z')
    assert.equal(row.b.toISOString(), '2024-06-01T10:00:00.000Z')
    assert.equal(row.c.toISOString(), '1969-12-31T23:59:59.999Z')
    assert.equal(row.d, Infinity)
    assert.equal(row.e, -Infinity)
    assert.equal(row.f.toISOString(), '1900-01-01T00:00:00.000Z')
  })

  test('timestamp without time zone arrives as a Date read in local time', async () => {
    const row = await one(client(), `select '2024-06-01 12:34:56.789'::timestamp as a, 'infinity'::timestamp as b`)
    assert.ok(row.a instanceof Date)
    // The wall-clock fields are those of the process's local time zone, as node-postgres reads them.
    assert.deepEqual(
      [row.a.getFullYear(), row.a.getMonth(), row.a.getDate(), row.a.getHours(), row.a.getMinutes(), row.a.getSeconds(), row.a.getMilliseconds()],
      [2024, 5, 1, 12, 34, 56, 789],
    )
    // Hence the instant: UTC wall clock shifted by the local offset. The tests run with TZ unset
    // (UTC), where this is exactly 2024-06-01T12:34:56.789Z.
    assert.equal(row.a.getTime(), Date.UTC(2024, 5, 1, 12, 34, 56, 789) + row.a.getTimezoneOffset() * 60_000)
    if (new Date(2024, 5, 1).getTimezoneOffset() === 0) assert.equal(row.a.toISOString(), '2024-06-01T12:34:56.789Z')
    assert.equal(row.b, Infinity)
  })

  test('date and interval arrive as pg parses them (local midnight, an interval object); time and timetz as PostgreSQL prints them', async () => {
    const row = await one(
      client(),
      `select '2024-02-29'::date as a, '13:04:05.5'::time as b, '13:04:05.5+05:30'::timetz as c,
              '1 year 2 mons 3 days 04:05:06'::interval as d, 'infinity'::date as e, '0044-03-15 BC'::date as f`,
    )
    assert.deepEqual(row, {
      a: new Date(2024, 1, 29), b: '13:04:05.5', c: '13:04:05.5+05:30', d: types.getTypeParser(1186)('1 year 2 mons 3 days 04:05:06'),
      e: Infinity, f: types.getTypeParser(1082)('0044-03-15 BC'),
    })
    assert.equal(row.d.constructor.name, 'PostgresInterval')
    assert.deepEqual({ ...row.d }, { years: 1, months: 2, days: 3, hours: 4, minutes: 5, seconds: 6 })
    assert.equal(row.f.getFullYear(), -43)
    const cases: Record<string, string[]> = {
      date: ['1970-01-01', '0001-01-01', '9999-12-31', '1900-02-28', '-infinity'],
      time: ['00:00:00', '23:59:59.999999', '24:00:00', '00:00:00.000001'],
      timetz: ['00:00:00-08', '12:00:00+00', '01:02:03.25-03:30', '10:00:00+05:45'],
      interval: ['0', '-1 day', '-1 day +02:00:00', '1 day -02:00:00', '-13 months', '1 mon -1 day', '00:00:00.5', '-00:00:00.5', '100 hours', '-1 year -2 mons +3 days -04:05:06'],
    }
    for (const [type, literals] of Object.entries(cases)) {
      // The values equal the default parser's reading of the server's text; a custom parser (here
      // the identity) is handed exactly that text.
      const parse = types.getTypeParser(({ date: 1082, time: 1083, timetz: 1266, interval: 1186 } as Record<string, number>)[type])
      for (const { v, t } of await decodedAndPrinted(client(), type, literals)) assert.deepEqual(v, parse(t), `${type} ${t}`)
      for (const { v, t } of await decodedAndPrinted(client(), type, literals, { getTypeParser: () => (x: string) => x })) assert.equal(v, t, `${type}`)
    }
  })

  test('inet, cidr and macaddr arrive as strings, as PostgreSQL prints them', async () => {
    const row = await one(client(), `select '10.0.0.1'::inet as a, '10.0.0.0/8'::cidr as b, '08:00:2b:01:02:03'::macaddr as c, '::1'::inet as d`)
    assert.deepEqual(row, { a: '10.0.0.1', b: '10.0.0.0/8', c: '08:00:2b:01:02:03', d: '::1' })
    const cases: Record<string, string[]> = {
      inet: ['10.0.0.1/8', '2001:db8::1/64', '::ffff:1.2.3.4', '0.0.0.0'],
      cidr: ['2001:db8::/32', '192.168.1.0/24', '1.2.3.4/32'],
      macaddr8: ['08:00:2b:01:02:03:04:05'],
    }
    for (const [type, literals] of Object.entries(cases)) {
      for (const { v, t } of await decodedAndPrinted(client(), type, literals)) assert.equal(v, t, type)
    }
  })

  test('point and circle arrive as pg parses them; types without a JavaScript mapping as strings', async () => {
    const row = await one(client(), `select '(1,2)'::point as a, 'a fat cat'::tsvector as b, '<(1,2),3>'::circle as c`)
    assert.deepEqual(row.a, { x: 1, y: 2 })
    assert.deepEqual(row.c, { x: 1, y: 2, radius: 3 })
    assert.equal(typeof row.b, 'string')
  })

  test('NULL of every kind arrives as null, also between non-NULL values of the same column', async () => {
    const row = await one(
      client(),
      `select null::int4 as a, null::int8 as b, null::numeric as c, null::bool as d, null::text as e, null::jsonb as f,
              null::bytea as g, null::timestamptz as h, null::timestamp as i, null::date as j, null::int4[] as k, null::float8 as l,
              null::interval as m, null::uuid as n, null as o`,
    )
    for (const [k, v] of Object.entries(row)) assert.equal(v, null, k)
    const r = await client().query(
      `select g as i, case when g % 2 = 0 then g end as n, case when g % 2 = 0 then 'ü' || g end as t,
              case when g % 2 = 0 then g % 4 = 0 end as b, case when g % 2 = 0 then '{"g":1}'::jsonb end as j,
              case when g % 2 = 0 then '\\x01'::bytea end as y, case when g % 2 = 0 then '2024-01-01'::timestamptz end as d,
              case when g % 2 = 0 then array[g] end as a, case when g % 2 = 0 then g::int8 end as l
       from generate_series(1, 6) g order by g`,
    )
    assert.equal(r.rows.length, 6)
    for (const row of r.rows) {
      if (row.i % 2 === 0) {
        assert.deepEqual(
          { ...row, y: [...row.y], d: row.d.toISOString() },
          { i: row.i, n: row.i, t: 'ü' + row.i, b: row.i % 4 === 0, j: { g: 1 }, y: [1], d: '2024-01-01T00:00:00.000Z', a: [row.i], l: String(row.i) },
        )
      } else {
        assert.deepEqual(row, { i: row.i, n: null, t: null, b: null, j: null, y: null, d: null, a: null, l: null })
      }
    }
  })

  test('fields report names and type OIDs, also for a result without rows', async () => {
    const r = await client().query(`select 1::int as a, 'x'::text as b, true as c`)
    assert.deepEqual(
      r.fields.map((f) => [f.name, f.dataTypeID]),
      [['a', 23], ['b', 25], ['c', 16]],
    )
    const empty = await client().query(`select 1::int as a, 'x'::text as b where false`)
    assert.deepEqual(empty.rows, [])
    assert.equal(empty.rowCount, 0)
    assert.deepEqual(
      empty.fields.map((f) => [f.name, f.dataTypeID]),
      [['a', 23], ['b', 25]],
    )
  })

  test('non-ASCII column names arrive intact', async () => {
    const r = await client().query(`select 1 as "ünïcødé", 'x' as "ключ😀", 2 as "日本"`)
    assert.deepEqual(r.rows, [{ ünïcødé: 1, 'ключ😀': 'x', 日本: 2 }])
    assert.deepEqual(
      r.fields.map((f) => f.name),
      ['ünïcødé', 'ключ😀', '日本'],
    )
  })

  test('non-ASCII text stays aligned across many rows and chunks', async () => {
    // 20000 rows cross internal chunk boundaries; mixed 1-, 2- and 4-byte characters and NULLs
    // would show any offset drift.
    const r = await client().query(
      `select g, repeat('é😀', g % 5) || g as s, case when g % 3 = 0 then null else 'ü' || g end as n from generate_series(1, 20000) g order by g`,
    )
    assert.equal(r.rows.length, 20000)
    let bad = 0
    for (const row of r.rows) {
      if (row.s !== 'é😀'.repeat(row.g % 5) + row.g) bad++
      if (row.n !== (row.g % 3 === 0 ? null : 'ü' + row.g)) bad++
    }
    assert.equal(bad, 0)
  })
})

describe('results: arrays', () => {
  const client = useClient()

  test('int4 arrays: 1-D, 2-D, empty, NULL elements, NULL array', async () => {
    const r = await client().query(
      `select array[1,2,3] as a, array[[1,2],[3,4]] as b, '{}'::int4[] as c, array[1,null,3] as d, null::int4[] as e,
              '{{1,null},{null,4}}'::int4[] as f, '[0:1]={7,8}'::int4[] as g`,
    )
    assert.deepEqual(r.rows, [{ a: [1, 2, 3], b: [[1, 2], [3, 4]], c: [], d: [1, null, 3], e: null, f: [[1, null], [null, 4]], g: [7, 8] }])
    assert.equal(r.fields[0].dataTypeID, 1007)
  })

  test('text arrays with quotes, commas, backslashes, braces, NULL-like words and non-ASCII', async () => {
    const row = await one(
      client(),
      `select array['a"b', 'c,d', 'e\\f', 'ü😀', null, 'NULL', '', '{x}', ' sp '] as a, array[['x','y'],['z','ä']]::varchar[] as b`,
    )
    assert.deepEqual(row, { a: ['a"b', 'c,d', 'e\\f', 'ü😀', null, 'NULL', '', '{x}', ' sp '], b: [['x', 'y'], ['z', 'ä']] })
  })

  test('timestamptz[] and timestamp[] have Date elements', async () => {
    const row = await one(
      client(),
      `select array['2024-01-01T00:00:00.123Z'::timestamptz, null, 'infinity'] as a, array['2024-06-01 12:00:00'::timestamp] as b`,
    )
    assert.equal(row.a.length, 3)
    assert.ok(row.a[0] instanceof Date)
    assert.equal(row.a[0].toISOString(), '2024-01-01T00:00:00.123Z')
    assert.equal(row.a[1], null)
    assert.equal(row.a[2], Infinity)
    assert.ok(row.b[0] instanceof Date)
    assert.deepEqual([row.b[0].getFullYear(), row.b[0].getMonth(), row.b[0].getDate(), row.b[0].getHours()], [2024, 5, 1, 12])
  })

  test('bytea[] has Buffer elements', async () => {
    const row = await one(client(), `select array['\\x0102'::bytea, '\\x'::bytea, null, '\\xff'::bytea] as a`)
    assert.equal(row.a.length, 4)
    assert.ok(Buffer.isBuffer(row.a[0]))
    assert.deepEqual(row.a[0], Buffer.from([1, 2]))
    assert.ok(Buffer.isBuffer(row.a[1]))
    assert.equal(row.a[1].length, 0)
    assert.equal(row.a[2], null)
    assert.deepEqual(row.a[3], Buffer.from([0xff]))
  })

  test('int8[] has string elements by default; float8[] keeps NaN and infinities as numbers', async () => {
    const row = await one(
      client(),
      `select array[1, null, 9007199254740993, -9223372036854775808]::int8[] as a, array['NaN', 'Infinity', '-Infinity', 1.5, null]::float8[] as b,
              array[[1.5, 'NaN']]::float8[] as c`,
    )
    assert.deepEqual(row, { a: ['1', null, '9007199254740993', '-9223372036854775808'], b: [NaN, Infinity, -Infinity, 1.5, null], c: [[1.5, NaN]] })
  })

  test('arrays of bool, numeric, json, date, interval, uuid, inet', async () => {
    const row = await one(
      client(),
      `select array[true, false, null] as a, array[1.50, 'NaN', null]::numeric[] as b, array['{"x":[1]}'::jsonb, null, '"s"'] as c,
              array['2024-02-29'::date, null] as d, array['1 day 02:00:00'::interval] as e,
              array['a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid] as f, array['10.0.0.1'::inet, '10.0.0.0/8'] as g`,
    )
    assert.deepEqual(row, {
      a: [true, false, null],
      b: [1.5, NaN, null],
      c: [{ x: [1] }, null, 's'],
      d: [new Date(2024, 1, 29), null],
      e: [types.getTypeParser(1186)('1 day 02:00:00')],
      f: ['a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'],
      g: ['10.0.0.1', '10.0.0.0/8'],
    })
  })
})

describe('int8 as bigint, per client', () => {
  let big: Client | undefined
  let plain: Client | undefined
  before(async () => {
    big = await connect(through(stack(), { int8: 'bigint' }))
    plain = await connect(through(stack()))
  })
  after(async () => {
    await Promise.all([big?.end(), plain?.end()])
  })

  const sql = `select 9007199254740993::int8 as a, '-9223372036854775808'::int8 as b, null::int8 as c, array[1, null, 9223372036854775807]::int8[] as d, 42::int4 as e`

  test("int8: 'bigint' gives bigints, scalars and array elements alike", async () => {
    const row = await one(big!, sql)
    assert.deepEqual(row, { a: 9007199254740993n, b: -9223372036854775808n, c: null, d: [1n, null, 9223372036854775807n], e: 42 })
    assert.equal(typeof row.a, 'bigint')
  })

  test('a client without the option still gets strings, even when both run at once', async () => {
    const [b, p] = await Promise.all([one(big!, sql), one(plain!, sql)])
    assert.equal(typeof b.a, 'bigint')
    assert.deepEqual(p, { a: '9007199254740993', b: '-9223372036854775808', c: null, d: ['1', null, '9223372036854775807'], e: 42 })
  })

  test('a bigint parameter round-trips exactly through int8 with either client', async () => {
    const v = 2n ** 62n
    assert.deepEqual(await one(big!, 'select $1::int8 as v, $2::int8 as w', [v, -(2n ** 63n)]), { v, w: -(2n ** 63n) })
    assert.deepEqual(await one(plain!, 'select $1::int8 as v, $2::int8 as w', [v, -(2n ** 63n)]), { v: '4611686018427387904', w: '-9223372036854775808' })
  })
})

describe('parameters: round-trips', () => {
  const client = useClient()

  test('null and undefined are sent as NULL', async () => {
    const row = await one(client(), 'select $1::int as a, $2::text as b, $1 is null as c, $2 is null as d', [null, undefined])
    assert.deepEqual(row, { a: null, b: null, c: true, d: true })
  })

  test('numbers, numeric strings and the server inferring the type', async () => {
    assert.deepEqual(await one(client(), 'select $1::int4 as a, $2::int4 as b', ['42', 42]), { a: 42, b: 42 })
    const floats = [1.5, -0.25, 0.1 + 0.2, 1e-300, Number.MAX_VALUE, NaN, Infinity, -Infinity]
    const row = await one(client(), `select ${floats.map((_, i) => `$${i + 1}::float8 as f${i}`).join(', ')}`, floats)
    assert.deepEqual(Object.values(row), floats)
    // No cast: the server infers int4 from the comparison.
    assert.deepEqual(await one(client(), 'select 1 where 7 = $1', [7]), { '?column?': 1 })
    // No cast and nothing to infer from: text.
    const untyped = await client().query('select $1 as v', ['untyped'])
    assert.deepEqual(untyped.rows, [{ v: 'untyped' }])
    assert.equal(untyped.fields[0].dataTypeID, 25)
  })

  test('bigint parameters', async () => {
    assert.deepEqual(await one(client(), 'select $1::int8 as a, $2::numeric as b', [2n ** 62n, 10n ** 30n]), { a: '4611686018427387904', b: '1000000000000000000000000000000' })
  })

  test('booleans', async () => {
    assert.deepEqual(await one(client(), 'select $1::bool as a, $2::bool as b, not $1::bool as c', [true, false]), { a: true, b: false, c: false })
  })

  test('non-ASCII and emoji strings, both ways', async () => {
    const s = 'héllo wörld ✓ 😀 日本語 ünïcødé'
    const row = await one(client(), `select $1::text as "väl😀", length($1::text) as n, $1::text = 'héllo wörld ✓ 😀 日本語 ünïcødé' as same, $2::varchar as e`, [s, ''])
    assert.deepEqual(row, { 'väl😀': s, n: [...s].length, same: true, e: '' })
  })

  test('a Date round-trips through timestamptz and timestamp; a local midnight through date', async () => {
    const d = new Date('2024-02-29T13:04:05.123Z')
    const row = await one(client(), 'select $1::timestamptz as a, $1::timestamp as b, $2::timestamptz as c, $3::date as d', [d, new Date(0), new Date(2024, 1, 29)])
    assert.ok(row.a instanceof Date)
    assert.equal(row.a.getTime(), d.getTime())
    assert.ok(row.b instanceof Date)
    assert.equal(row.b.getTime(), d.getTime())
    assert.equal(row.c.getTime(), 0)
    assert.ok(row.d instanceof Date)
    assert.equal(row.d.getTime(), new Date(2024, 1, 29).getTime())
  })

  test('Buffers, Uint8Arrays and bare ArrayBuffers round-trip through bytea', async () => {
    const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i))
    const view = Buffer.from([9, 1, 2, 3, 9]).subarray(1, 4)
    const row = await one(client(), 'select $1::bytea as a, $2::bytea as b, $3::bytea as c, $4::bytea as d', [all, view, new Uint8Array([0xde, 0xad]), Buffer.alloc(0)])
    assert.deepEqual(row.a, all)
    assert.deepEqual(row.b, Buffer.from([1, 2, 3]))
    assert.deepEqual(row.c, Buffer.from([0xde, 0xad]))
    assert.deepEqual(row.d, Buffer.alloc(0))
    const bare = await one(client(), 'select $1::bytea as a, $2::bytea[] as b', [new Uint8Array([7, 8]).buffer, [new Uint16Array([0x0102]).buffer]])
    assert.deepEqual(bare.a, Buffer.from([7, 8]))
    assert.deepEqual(bare.b, [Buffer.from(new Uint16Array([0x0102]).buffer)])
  })

  test('plain objects are sent as JSON', async () => {
    const o = { a: [1, 'é', null, { b: true }], 'ключ😀': 'значение', n: 1.5, quote: 'a"b\\c' }
    const row = await one(client(), 'select $1::jsonb as a, $1::json as b, $1::jsonb -> $2::text as c', [o, 'ключ😀'])
    assert.deepEqual(row, { a: o, b: o, c: 'значение' })
  })

  test('arrays are sent as PostgreSQL array literals', async () => {
    const tricky = ['a"b', 'c,d', 'e\\f', 'ü😀', null, 'NULL', '', '{x}', ' sp ', 'tab\there']
    const d = new Date('2024-02-29T13:04:05.123Z')
    const row = await one(
      client(),
      `select $1::text[] as a, $2::int4[] as b, $3::int8[] as c, $4::bool[] as d, $5::bytea[] as e, $6::timestamptz[] as f,
              $7::jsonb[] as g, $8::text[] as h, $9::float8[] as i, cardinality($1::text[]) as n`,
      [tricky, [[1, 2], [3, null]], [1n, 2n ** 62n], [true, false, undefined], [Buffer.from([1, 2]), new Uint8Array([255])], [d, null], [{ a: 1 }, { 'é': 'a"b\\' }], [], [1.5, NaN, -Infinity]],
    )
    assert.deepEqual(row.a, tricky)
    assert.deepEqual(row.b, [[1, 2], [3, null]])
    assert.deepEqual(row.c, ['1', '4611686018427387904'])
    assert.deepEqual(row.d, [true, false, null])
    assert.deepEqual(row.e, [Buffer.from([1, 2]), Buffer.from([255])])
    assert.equal(row.f.length, 2)
    assert.equal(row.f[0].getTime(), d.getTime())
    assert.equal(row.f[1], null)
    assert.deepEqual(row.g, [{ a: 1 }, { 'é': 'a"b\\' }])
    assert.deepEqual(row.h, [])
    assert.deepEqual(row.i, [1.5, NaN, -Infinity])
    assert.equal(row.n, tricky.length)
  })
})

describe('parameters: values that cannot be sent', () => {
  const client = useClient()

  const circular: Record<string, unknown> = { a: 1 }
  circular.self = circular
  const selfArray: unknown[] = ['x']
  selfArray.push(selfArray)
  const bad: Array<[string, unknown]> = [
    ['a symbol', Symbol('s')],
    ['a function', () => 1],
    ['a circular object', circular],
    ['a string with a lone surrogate', '\uD800'],
    ['a string with a lone low surrogate inside text', 'ok \uDC00 ok'],
    ['an invalid Date', new Date(NaN)],
    ['an array holding a symbol', ['ok', Symbol('s')]],
    ['an array holding a lone surrogate', ['ok', '\uD800']],
    ['an array holding itself', selfArray],
  ]

  for (const [what, value] of bad) {
    test(`${what} rejects with INVALID_PARAMETER (a rejected promise, not a throw); the client stays usable`, async () => {
      let p: Promise<unknown> | undefined
      assert.doesNotThrow(() => {
        p = client().query('select $1::text as a, $2::text as b', ['fine', value])
      })
      assert.ok(p instanceof Promise)
      const err = await rejectsWith(p, 'INVALID_PARAMETER')
      assert.ok(err instanceof DsqlTunnelError)
      assert.equal(err.parameterIndex, 1)
      assert.deepEqual(await one(client(), 'select $1::text as v', ['still ok ü']), { v: 'still ok ü' })
    })
  }
})
