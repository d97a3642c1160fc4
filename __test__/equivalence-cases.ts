// The table behind equivalence.spec.ts: SQL whose results node-postgres 8.x and this package must
// give identically, and `show()`, which writes a value with its JavaScript type so that two values
// compare equal only when they are the same value of the same type, class and key order.

/** One row of the table: a statement run on both clients, its first row's `v` compared. */
export interface Case {
  group: string
  name: string
  sql: string
  values?: unknown[]
  /** The type OID pg must see for column `v` (checks that the case tests what it says). */
  oid?: number
  /** The SQL type, for the `NULL of each type` cases. */
  type?: string
  /** Run on the same client before and after `sql`; not compared. */
  setup?: string[]
  teardown?: string[]
}

const quote = (s: string) => `'${s.replace(/'/g, "''")}'`

// What the spec creates before the cases run (and drops after).
export const SCHEMA = [
  `create type eq_mood as enum ('sad', 'ok', 'happy', 'with space', 'quo"te')`,
  `create domain eq_posint as int4 check (value > 0)`,
  `create table eq_t (id int4 primary key, label text, at timestamptz default '2024-01-02 03:04:05+00')`,
]

// Literals per type: [SQL type, OID (undefined when it depends on the database), literals...].
// pg-types 2.2.0 registers a text parser for these OIDs (node_modules/pg-types/lib/textParsers.js).
const REGISTERED: Array<[string, number, ...string[]]> = [
  ['int2', 21, '1', '-32768', '32767'],
  ['int4', 23, '0', '-1', '2147483647', '-2147483648'],
  ['int8', 20, '0', '42', '-1', '9007199254740993', '-9223372036854775808', '9223372036854775807'],
  ['oid', 26, '0', '4294967295'],
  ['float4', 700, '1.1', '3.14159', '-0', 'NaN', 'Infinity', '-Infinity', '3.4028235e38', '1e-45'],
  ['float8', 701, '0.30000000000000004', '-0', 'NaN', 'Infinity', '-Infinity', '1e308', '5e-324', '1.7976931348623157e308', '123456789.123456789'],
  ['bool', 16, 'true', 'false'],
  ['date', 1082, '2024-02-29', '1970-01-01', '1900-01-01', '0099-12-31', '0001-01-01', '0001-01-01 BC', '0044-03-15 BC', '10000-01-01', 'infinity', '-infinity'],
  ['timestamp', 1114,
    '2024-01-02 03:04:05', '2024-01-02 03:04:05.123456', '2024-01-02 03:04:05.5', '2024-01-02 03:04:05.999999',
    '1969-12-31 23:59:59.999999', '1970-01-01 00:00:00', '1900-01-01 12:00:00', '0099-06-15 12:00:00', '0009-01-01 00:00:00',
    '0001-01-01 00:00:00 BC', '0044-03-15 12:00:00 BC', '2024-03-10 02:30:00', '2024-11-03 01:30:00', '2024-07-01 12:00:00',
    '20000-01-01 00:00:00', 'infinity', '-infinity'],
  ['timestamptz', 1184,
    '2024-01-02 03:04:05+00', '2024-01-02 03:04:05.123456+00', '2024-01-02 03:04:05.5+00', '2024-01-02 03:04:05.999999+00',
    '1969-12-31 23:59:59.999999+00', '1969-12-31 23:59:59.9995+00', '1970-01-01 00:00:00+00', '1900-01-01 12:00:00+00',
    '0099-06-15 12:00:00+00', '0009-01-01 00:00:00+00', '0001-01-01 00:00:00+00 BC', '0044-03-15 12:00:00+00 BC',
    '2024-06-01 12:00:00+05:30', '20000-01-01 00:00:00+00', 'infinity', '-infinity'],
  ['interval', 1186,
    '1 year 2 mons 3 days 04:05:06.789', '-1 day', '-00:00:01.5', '1 day -01:00:00', '0', '100 years', '1 mon',
    '-1 year -2 mons +3 days -04:05:06', '00:00:00.000001', '-00:00:00.000001', '36:00:00', '178000000 years',
    '1 year -1 mons', '-2 days +00:00:00.25', '1000 hours 30 minutes'],
  ['point', 600, '(1.5,-2)', '(0,0)', '(NaN,Infinity)', '(1e300,-1e-300)'],
  ['circle', 718, '<(1,2),3>', '<(-1.5,0),0.5>', '<(1e10,-1e10),1e-5>'],
  ['bytea', 17, '\\x', '\\x00ff10', '\\x68c3a96c6c6f', '\\x5c22270a'],
  ['json', 114, '{"b":1,"a":[1,2,{"c":null}]}', '"str"', 'null', '12345678901234567890', '1.0', '{"a":1,"a":2}', '[]', '"\\u00e9\\ud83c\\udf89"', '  { "sp" : true }  '],
  ['jsonb', 3802, '{"b":1,"a":[1,2,{"c":null}]}', '"str"', 'null', '12345678901234567890', '1.0', '{"aa":1,"b":2}', '{}', '"\\u00e9"', '1e400'],
  // Registered arrays: NULLs, empty, multi-dimensional, quoted elements, explicit bounds.
  ['cidr[]', 651, '{192.168.0.0/24,::1/128,NULL}', '{}'],
  ['bool[]', 1000, '{t,f,NULL}', '{}', '{{t,f},{f,t}}'],
  ['bytea[]', 1001, '{"\\\\x00ff",NULL,"\\\\x"}', '{}'],
  ['int2[]', 1005, '{1,-2,NULL}', '{}', '{{1,2},{3,4}}'],
  ['int4[]', 1007, '{1,NULL,3}', '{}', '{{1,2},{3,4}}', '[0:1]={7,8}', '{{{1}},{{2}}}', '{NULL}'],
  ['oid[]', 1028, '{0,4294967295}', '{}'],
  ['int8[]', 1016, '{9007199254740993,-1,NULL}', '{}', '{{1,2},{3,4}}'],
  ['point[]', 1017, '{"(1,2)",NULL,"(-1.5,0)"}', '{}'],
  ['float4[]', 1021, '{1.1,NaN,-Infinity,NULL}', '{}'],
  ['float8[]', 1022, '{0.1,NaN,Infinity,-0,NULL}', '{}', '{{1.5,2.5},{3.5,4.5}}'],
  ['numeric[]', 1231, '{1.5,NaN,12345678901234567890.12,NULL}', '{}', '{{1,2},{3,4}}', '{Infinity,-Infinity}'],
  ['char(3)[]', 1014, '{a,bcd,NULL,"a,b"}', '{}'],
  ['varchar[]', 1015, '{a,"b c",NULL,"NULL",""}', '{}'],
  ['regproc[]', 1008, '{now,NULL}'],
  ['text[]', 1009,
    '{a,"b c","\\"q\\"","back\\\\slash",NULL,"NULL","","é 🎉","{x}"," lead","a,b"}', '{}', '{{a,b},{c,NULL}}', '{"{","}"}',
    '[2:3]={x,y}'],
  ['macaddr[]', 1040, '{08:00:2b:01:02:03,NULL}', '{}'],
  ['inet[]', 1041, '{192.168.0.1,::1,10.0.0.1/8,NULL}', '{}'],
  ['timestamp[]', 1115, '{"2024-01-02 03:04:05.123456",infinity,NULL,"0044-03-15 12:00:00 BC"}', '{}', '{{"2024-01-02 00:00:00"},{"2024-01-03 00:00:00"}}'],
  ['date[]', 1182, '{2024-02-29,NULL,-infinity,"0001-01-01 BC"}', '{}', '{{2024-01-01},{2024-01-02}}'],
  ['timestamptz[]', 1185, '{"2024-01-02 03:04:05.5+00",-infinity,NULL,"1969-12-31 23:59:59.999999+00"}', '{}'],
  ['interval[]', 1187, '{"1 year 2 mons","-00:00:01.5",NULL,0}', '{}', '{{"1 day"},{"2 days"}}'],
  ['json[]', 199, '{"{\\"a\\":1}",NULL,"[1,2]","\\"s\\""}', '{}'],
  ['jsonb[]', 3807, '{"{\\"a\\": 1}",NULL,"null"}', '{}'],
  ['numrange[]', 3907, '{"[1.5,2.5)",empty,NULL}', '{}'],
  ['uuid[]', 2951, '{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11,NULL}', '{}'],
  ['money[]', 791, '{1.5,-2,NULL}', '{}'],
  // Type modifiers: the server rounds, and fields carry dataTypeModifier.
  ['timestamp(3)', 1114, '2024-01-02 03:04:05.123456', '1969-12-31 23:59:59.9996'],
  ['timestamptz(0)', 1184, '2024-01-02 03:04:05.5+00'],
  ['interval(2)', 1186, '00:00:01.239', '1 day 00:00:00.005'],
  ['varchar(3)[]', 1015, '{ab,NULL}'],
  ['time[]', 1183, '{04:05:06.789,NULL,24:00:00}', '{}'],
  ['timetz[]', 1270, '{04:05:06+05:30,NULL}', '{}'],
]

// Types pg-types leaves alone: pg gives the server's text, as it prints it.
const UNREGISTERED: Array<[string, number | undefined, ...string[]]> = [
  ['numeric', 1700, '123456789012345678901234567890.000001', 'NaN', '1.50', '-0.0001', '0', 'Infinity', '-Infinity', '1e-20'],
  ['numeric(10,2)', 1700, '1.5'],
  ['numeric(5,3)', 1700, '1.23456'],
  ['time(1)', 1083, '04:05:06.789'],
  ['bit varying(4)', 1562, '101'],
  ['money', 790, '12.34', '-1', '92233720368547758.07'],
  ['time', 1083, '04:05:06.789', '24:00:00', '00:00:00'],
  ['timetz', 1266, '04:05:06+05:30', '23:59:59.999999-12'],
  ['uuid', 2950, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'],
  ['inet', 869, '192.168.0.1/24', '::1', '10.0.0.1'],
  ['cidr', 650, '10.0.0.0/8', '2001:db8::/32'],
  ['macaddr', 829, '08:00:2b:01:02:03'],
  ['macaddr8', 774, '08:00:2b:01:02:03:04:05'],
  ['bit(3)', 1560, '101'],
  ['varbit', 1562, '1010110', ''],
  ['xid', 28, '12345'],
  ['"char"', 18, 'a', ''],
  ['name', 19, 'a name'],
  ['text', 25, 'héllo 🎉 日本', '', 'line\nbreak\ttab', 'NULL', ' \\ '],
  ['varchar(5)', 1043, 'abc'],
  ['char(4)', 1042, 'ab'],
  ['eq_mood', undefined, 'happy', 'with space', 'quo"te'],
  ['eq_mood[]', undefined, '{happy,"with space","quo\\"te",NULL}', '{}'],
  ['eq_posint', 23, '5'],
  ['int4range', 3904, '[1,10)', 'empty', '(,5]'],
  ['int8range', 3926, '[9007199254740993,9007199254740999)'],
  ['numrange', 3906, '[1.5,2.5]'],
  ['tsrange', 3908, '["2024-01-02 03:04:05","2024-01-03 00:00:00")'],
  ['tstzrange', 3910, '[2024-01-02 03:04:05+00,infinity)'],
  ['daterange', 3912, '[2024-01-01,2024-02-01)'],
  ['tsvector', 3614, 'a fat cat:1 sat:2A'],
  ['tsquery', 3615, 'fat & (rat | cat)'],
  ['xml', 142, '<a b="c">d &amp; e</a>'],
  ['lseg', 601, '[(1,2),(3,4)]'],
  ['box', 603, '(3,4),(1,2)'],
  ['path', 602, '[(1,2),(3,4)]', '((0,0),(1,1),(2,0))'],
  ['polygon', 604, '((0,0),(1,1),(2,0))'],
  ['line', 628, '{1,-1,0}'],
  ['pg_lsn', 3220, '16/B374D848'],
  ['regclass', 2205, 'pg_class'],
  ['regtype', 2206, 'integer'],
  ['regprocedure', 2202, 'now()'],
  ['regnamespace', 4089, 'pg_catalog'],
  ['regconfig', 3734, 'english'],
  ['regclass[]', 2210, '{pg_class,pg_type}', '{}'],
  ['tsquery[]', 3645, '{"a & b",NULL}'],
  ['int2vector', 22, '1 2 3'],
  ['oidvector', 30, '23 25'],
  ['name[]', 1003, '{a,"b c",NULL}', '{}'],
  ['int4range[]', 3905, '{"[1,2)",empty,NULL}', '{}'],
  ['"char"[]', 1002, '{a,b}'],
  ['uuid', 2950, 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'],
  ['bpchar[]', 1014, '{ab,NULL}'],
  ['xml[]', 143, '{<a/>,NULL}'],
  ['tsvector[]', 3643, '{"a b",NULL}'],
  ['pg_lsn[]', 3221, '{0/0}'],
  ['money[]', 791, '{"$1,000.00"}'],
]

function literalCases(group: string, table: Array<[string, number | undefined, ...string[]]>): Case[] {
  const out: Case[] = []
  for (const [type, oid, ...literals] of table) {
    for (const text of literals) {
      out.push({ group, name: `${type} ${JSON.stringify(text)}`, sql: `select ${quote(text)}::${type} as v`, oid, type })
    }
  }
  return out
}

/** Expressions that are easier to write than to quote. */
const EXPRESSIONS: Case[] = [
  { group: 'expressions', name: 'int4 1 + 1', sql: 'select 1 + 1 as v', oid: 23 },
  { group: 'expressions', name: 'sum(int4) is int8', sql: 'select sum(x) as v from generate_series(1, 3) x', oid: 20 },
  { group: 'expressions', name: 'count(*) is int8', sql: 'select count(*) as v from generate_series(1, 3)', oid: 20 },
  { group: 'expressions', name: 'avg(int4) is numeric', sql: 'select avg(x) as v from generate_series(1, 4) x', oid: 1700 },
  { group: 'expressions', name: 'unknown literal', sql: `select 'abc' as v`, oid: 25 },
  { group: 'expressions', name: 'record', sql: `select row(1, 'a,b', null, 'x"y') as v`, oid: 2249 },
  { group: 'expressions', name: 'void', sql: 'select pg_sleep(0) as v', oid: 2278 },
  { group: 'expressions', name: 'regclass outside search_path', sql: `select 'information_schema.tables'::regclass as v`, oid: 2205 },
  { group: 'expressions', name: 'array_agg of timestamptz', sql: `select array_agg(t order by t) as v from (values ('2024-01-02 03:04:05+00'::timestamptz), ('infinity')) x(t)`, oid: 1185 },
  { group: 'expressions', name: 'jsonb_build_object', sql: `select jsonb_build_object('z', 1, 'a', array[1,2], 'n', null) as v`, oid: 3802 },
  { group: 'expressions', name: 'json_agg', sql: `select json_agg(x) as v from generate_series(1, 3) x`, oid: 114 },
  { group: 'expressions', name: 'now() - now() interval', sql: 'select now() - now() as v', oid: 1186 },
  { group: 'expressions', name: 'array of arrays of text', sql: `select array[array['a', null], array['b', 'c d']] as v`, oid: 1009 },
  { group: 'expressions', name: 'bytea of all bytes', sql: 'select decode(string_agg(lpad(to_hex(x), 2, \'0\'), \'\'), \'hex\') as v from generate_series(0, 255) x', oid: 17 },
  { group: 'expressions', name: 'large text (100 kB)', sql: `select repeat('é', 50000) as v`, oid: 25 },
  { group: 'expressions', name: 'int4[] of 1000 elements', sql: 'select array_agg(x) as v from generate_series(1, 1000) x', oid: 1007 },
  { group: 'expressions', name: 'float8 from division', sql: 'select 1::float8 / 3 as v', oid: 701 },
  { group: 'expressions', name: 'numeric with scale', sql: 'select 1::numeric / 3 as v', oid: 1700 },
]

/** The same value text, read under another session TimeZone: offsets other than +00. */
const SESSION_TZ: Case[] = [
  ['Asia/Kolkata', '2024-01-02 03:04:05.123456+00'],
  ['America/St_Johns', '1800-01-01 00:00:00+00'],
  ['America/St_Johns', '2024-07-01 12:00:00+00'],
  ['Pacific/Kiritimati', '0044-03-15 12:00:00+00 BC'],
  ['America/New_York', '{"2024-01-02 03:04:05+00",NULL}'],
].map(([tz, text]) => {
  const type = text.startsWith('{') ? 'timestamptz[]' : 'timestamptz'
  return {
    group: 'session TimeZone',
    name: `${type} ${JSON.stringify(text)} under ${tz}`,
    sql: `select ${quote(text)}::${type} as v`,
    oid: type === 'timestamptz' ? 1184 : 1185,
    setup: [`set time zone ${quote(tz)}`],
    teardown: ['reset time zone'],
  }
})

function yearFifty(): Date {
  const d = new Date(Date.UTC(2000, 5, 1, 12))
  d.setUTCFullYear(50)
  return d
}

const PARAMS: Array<[string, string, unknown[]]> = [
  ['text', 'select $1::text as v', ['héllo 🎉']],
  ['int4 from a number', 'select $1::int4 as v', [42]],
  ['untyped $1 with a number', 'select $1 as v', [42]],
  ['untyped $1 with a boolean', 'select $1 as v', [true]],
  ['int8 from a string', 'select $1::int8 as v', ['9007199254740993']],
  ['int8 from a bigint', 'select $1::int8 as v', [9007199254740993n]],
  ['bigint as text', 'select $1::text as v', [-9007199254740993n]],
  ['bool', 'select $1::bool as v', [false]],
  ['numeric from a number', 'select $1::numeric as v', [1.5]],
  ['number as text', 'select $1::text as v', [0.1 + 0.2]],
  ['timestamptz from a Date', 'select $1::timestamptz as v', [new Date(Date.UTC(2024, 0, 2, 3, 4, 5, 678))]],
  ['timestamp from a Date', 'select $1::timestamp as v', [new Date(Date.UTC(2024, 0, 2, 3, 4, 5, 678))]],
  ['date from a Date', 'select $1::date as v', [new Date(Date.UTC(2024, 0, 2, 1, 0, 0))]],
  ['Date as text', 'select $1::text as v', [new Date(Date.UTC(2024, 0, 2, 3, 4, 5, 678))]],
  ['Date of year 50 as text', 'select $1::text as v', [yearFifty()]],
  ['bytea from a Buffer', 'select $1::bytea as v', [Buffer.from([0, 255, 16])]],
  ['object as jsonb', 'select $1::jsonb as v', [{ b: 1, a: [1, 'x', null] }]],
  ['object as json', 'select $1::json as v', [{ b: 1, a: [1, 'x', null] }]],
  ['object as text', 'select $1::text as v', [{ b: 1, a: [1, 'x', null] }]],
  ['JSON text as json', 'select $1::json as v', ['{"a":1}']],
  ['array as int4[]', 'select $1::int4[] as v', [[1, null, 3]]],
  ['nested array as int4[]', 'select $1::int4[] as v', [[[1, 2], [3, 4]]]],
  ['array as text[]', 'select $1::text[] as v', [['a', 'b"c', null, 'd,e', '', 'NULL']]],
  ['array as text', 'select $1::text as v', [['a', 'b"c', null, 1]]],
  ['Dates as timestamptz[]', 'select $1::timestamptz[] as v', [[new Date(Date.UTC(2024, 0, 2)), null]]],
  ['Buffers as bytea[]', 'select $1::bytea[] as v', [[Buffer.from([1, 2]), null]]],
  ['null', 'select $1::text as v', [null]],
  ['undefined', 'select $1::text as v', [undefined]],
  ['interval from text', 'select $1::interval as v', ['1 day 02:00:00']],
  ['toPostgres()', 'select $1::int4 as v', [{ toPostgres: () => '42' }]],
  ['two parameters', 'select $1::int4 + $2::int4 as v', [1, 2]],
]

export function valueCases(): Case[] {
  const cases = [
    ...literalCases('registered (pg-types text parsers)', REGISTERED),
    ...literalCases('unregistered (server text)', UNREGISTERED),
    ...EXPRESSIONS,
    ...SESSION_TZ,
    ...PARAMS.map(([name, sql, values]): Case => ({ group: 'parameters', name, sql, values })),
  ]
  const types = new Set<string>()
  for (const c of cases) if (c.type) types.add(c.type)
  for (const type of types) cases.push({ group: 'NULL of each type', name: `null::${type}`, sql: `select null::${type} as v`, type })
  return cases
}

/** Statements whose whole result is compared: command, rowCount, oid, rowAsArray, fields, rows. */
export interface ResultCase {
  name: string
  sql: string
  values?: unknown[]
  rowMode?: 'array'
  setup?: string[]
  /** `client.query(text, values)` instead of `client.query({ text, values })`. */
  positional?: boolean
  /** A named (prepared) statement, as pg's query config `name`. */
  statement?: string
}

const RESET_T = [`delete from eq_t`, `insert into eq_t (id, label) values (1, 'a'), (2, 'b'), (3, null)`]

export const RESULT_CASES: ResultCase[] = [
  { name: 'select of several types', sql: `select 1 as a, 'x' as b, null as c, '2024-01-02'::date as d, array[1, 2] as e, 9007199254740993::int8 as f, 1.5::numeric as g, '1 day'::interval as h` },
  { name: 'select of several types, rowMode array', rowMode: 'array', sql: `select 1 as a, 'x' as b, null as c, '2024-01-02'::date as d, array[1, 2] as e, 9007199254740993::int8 as f, 1.5::numeric as g, '1 day'::interval as h` },
  { name: 'select with no rows', sql: 'select 1 as a, now() as b where false' },
  // More values than one round trip for the server's text of a column carries (1,000), NULLs between.
  { name: '2,500 rows of regclass and tsvector', sql: `select case when g % 7 = 0 then null else (1259 + g % 3)::oid::regclass end as v, to_tsvector('simple', 'w' || g) as t from generate_series(1, 2500) g` },
  { name: 'select with no columns', sql: 'select' },
  { name: 'duplicate column names', sql: 'select 1 as a, 2 as a, 3 as b' },
  { name: 'duplicate column names, rowMode array', rowMode: 'array', sql: 'select 1 as a, 2 as a, 3 as b' },
  { name: 'columns of a table (tableID, columnID)', setup: RESET_T, sql: 'select id, label, at from eq_t order by id' },
  { name: 'several rows, rowMode array', rowMode: 'array', setup: RESET_T, sql: 'select id, label from eq_t order by id' },
  { name: 'select with parameters', sql: 'select $1::int4 as a, $2::text as b', values: [7, 'x'] },
  { name: 'insert', setup: RESET_T, sql: `insert into eq_t (id, label) values (10, 'x'), (11, 'y')` },
  { name: 'insert returning', setup: RESET_T, sql: `insert into eq_t (id, label) values (12, 'z') returning id, label, at` },
  { name: 'insert with parameters', setup: RESET_T, sql: 'insert into eq_t (id, label) values ($1, $2)', values: [13, 'w'] },
  { name: 'update', setup: RESET_T, sql: `update eq_t set label = 'u' where id <= 2` },
  { name: 'update of no rows', setup: RESET_T, sql: `update eq_t set label = 'u' where false` },
  { name: 'update returning, rowMode array', rowMode: 'array', setup: RESET_T, sql: `update eq_t set label = label || '!' where id = 1 returning *` },
  { name: 'delete', setup: RESET_T, sql: 'delete from eq_t where id = 3' },
  { name: 'delete returning', setup: RESET_T, sql: 'delete from eq_t where id > 1 returning id' },
  { name: 'ddl', sql: 'create table if not exists eq_ddl (x int4)' },
  { name: 'show', sql: 'show timezone' },
  { name: 'set', sql: `set application_name = 'equivalence'` },
  { name: 'begin', sql: 'begin' },
  { name: 'commit', sql: 'commit' },
  { name: 'empty query', sql: '' },
  { name: 'only a comment', sql: '-- nothing' },
  { name: 'multi-statement: two selects', sql: `select 1 as a; select 'x' as b, 2 as c` },
  { name: 'multi-statement: insert, select, delete', setup: RESET_T, sql: `insert into eq_t (id) values (20); select id, label from eq_t order by id; delete from eq_t where id = 20` },
  { name: 'multi-statement: rowMode array', rowMode: 'array', sql: `select 1 as a; select 2 as b, 'y' as c` },
  { name: 'multi-statement: set and select', sql: `set timezone = 'UTC'; select now() - now() as d` },
  { name: 'multi-statement: one statement and a trailing semicolon', sql: 'select 1 as a;' },
  { name: 'values', sql: `values (1, 'a'), (2, null)` },
  { name: '5000 rows (several batches)', sql: `select x, x::text as t, '2024-01-01'::date + x as d, x::numeric / 7 as n, array[x, null] as a from generate_series(1, 5000) x` },
  { name: 'query(text, values)', positional: true, sql: `select $1::int4 as a, $2::date as b, $3::text[] as c`, values: [7, '2024-01-02', ['x', null]] },
  { name: 'query(text)', positional: true, sql: `select '1 day'::interval as a, 1.5::numeric as b` },
  { name: 'named statement, first run', statement: 'eq_named', sql: 'select $1::int4 + 1 as a, $2::timestamptz as b', values: [1, '2024-01-02 03:04:05+00'] },
  { name: 'named statement, second run', statement: 'eq_named', sql: 'select $1::int4 + 1 as a, $2::timestamptz as b', values: [2, 'infinity'] },
]

/** One query covering what custom parsers get: two rows, NULLs, arrays, registered or not. */
export const PROBE_SQL = `select '2024-01-02'::date as d, '2024-01-02 03:04:05.123456'::timestamp as ts,
  ('2024-01-02 03:04:05.5+00'::timestamptz + (x || ' hours')::interval) as tstz, '1 day 02:00:00'::interval as iv,
  array['2024-01-02'::date, null] as da, array['2024-01-02 03:04:05'::timestamp] as tsa,
  array['2024-01-02 03:04:05+00'::timestamptz, 'infinity'] as tstza, array['1 year'::interval, '-00:00:01'] as iva,
  (1.50 * x)::numeric as n, array[1.5::numeric, 'NaN'] as na, (9007199254740993 + x)::int8 as i8, array[1::int8, null] as i8a,
  '\\x00ff'::bytea as b, '{"b": 1, "a": [2]}'::jsonb as j, 'abc'::text as t, x::int4 as i4, (x = 1) as bo,
  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid as u, null::date as nd, 1.5::float8 as f8, 'happy'::eq_mood as e,
  '12.34'::money as m
  from generate_series(1, 2) x order by x`

/** Types with no pg-types parser whose text this package has to produce itself. */
export const EXOTIC_SQL = `select 'pg_class'::regclass as rc, 'a fat cat'::tsvector as tv, row(x, 'a b') as r,
  array['now'::regproc] as rp, '[(1,2),(3,4)]'::path as p, 'int4'::regtype as rt, '[1,2)'::int4range as ir
  from generate_series(1, 2) x order by x`
export const EXOTIC_OIDS = [2205, 3614, 2249, 1008, 602, 2206, 3904]

/** The OIDs whose parsers the custom-parser cases replace. */
export const PROBE_OIDS = [1082, 1114, 1184, 1186, 1182, 1115, 1185, 1187, 1700, 1231, 20, 1016, 17, 3802, 25, 23, 16, 2950, 701, 790]

/** The value with its JavaScript type: equal strings mean the same value, type, class and keys. */
export function show(v: unknown, seen = new Set<object>()): string {
  if (v === null) return 'null'
  switch (typeof v) {
    case 'undefined': return 'undefined'
    case 'string': return JSON.stringify(v)
    case 'number': return Object.is(v, -0) ? '-0' : String(v)
    case 'bigint': return `${v}n`
    case 'boolean': return String(v)
    case 'function': return `function ${v.name || '(anonymous)'}`
    case 'symbol': return v.toString()
  }
  const o = v as object
  if (seen.has(o)) return '[circular]'
  seen.add(o)
  try {
    if (o instanceof Date) return Number.isNaN(o.getTime()) ? 'Date(Invalid)' : `Date(${o.toISOString()})`
    if (ArrayBuffer.isView(o)) {
      const bytes = Buffer.from(o.buffer, o.byteOffset, o.byteLength)
      return `${o.constructor.name}<${bytes.toString('hex')}>`
    }
    if (Array.isArray(o)) {
      const tag = Object.getPrototypeOf(o) === Array.prototype ? '' : o.constructor?.name ?? 'null-proto'
      return `${tag}[${o.map((e) => show(e, seen)).join(', ')}]`
    }
    const proto = Object.getPrototypeOf(o)
    const body = Object.keys(o).map((k) => `${JSON.stringify(k)}: ${show((o as Record<string, unknown>)[k], seen)}`)
    if (proto === Object.prototype) return `{${body.join(', ')}}`
    if (proto === null) return `null-proto{${body.join(', ')}}`
    // A class instance: its name, the methods its prototype gives, and what they return for a
    // value pg users convert with them (postgres-interval's toPostgres and toISOString).
    const methods = Object.getOwnPropertyNames(proto).filter((k) => k !== 'constructor').sort()
    const extra: string[] = []
    for (const m of ['toPostgres', 'toISOString']) {
      const f = (o as Record<string, unknown>)[m]
      if (typeof f === 'function') {
        try {
          extra.push(`.${m}()=${JSON.stringify(f.call(o))}`)
        } catch (e) {
          extra.push(`.${m}() throws ${(e as Error).name}`)
        }
      }
    }
    return `${proto.constructor?.name ?? '?'}#[${methods.join(',')}]{${body.join(', ')}}${extra.join('')}`
  } finally {
    seen.delete(o)
  }
}
