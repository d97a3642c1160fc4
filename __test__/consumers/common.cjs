// Shared by the consumer programs: connection settings from the environment, written as a pg user
// behind a tunnel writes them, and the pet-clinic schema every program replays.
'use strict'
const fs = require('node:fs')

const env = process.env

/** The module the programs inject where a library takes one: this package, or real pg when validating. */
const driverName = env.CONSUMER_DRIVER || 'dsql-tunnel'
const driver = () => require(driverName)

/** pg-style settings: TCP to the tunnel, TLS name and IAM token for the cluster. No password
 * unless one is given: then the package mints a token per connection from the AWS environment. */
function pgConfig(role = 'admin', extra = {}) {
  const user = role === 'admin' ? env.ADMIN_USER : env.IAM_USER
  const password = role === 'admin' ? env.ADMIN_PASSWORD : env.IAM_PASSWORD
  const cfg = {
    host: env.TUNNEL_HOST,
    port: Number(env.TUNNEL_PORT),
    user,
    database: 'postgres',
    ssl: { servername: env.CLUSTER_HOST, ca: fs.readFileSync(env.CA_FILE, 'utf8') },
    ...extra,
  }
  if (password) cfg.password = password
  return cfg
}

/** A schema name unique to this run of the program (RUN_ID lets one stack serve several runs). */
const schemaName = (base) => (env.RUN_ID ? `${base}_${env.RUN_ID}` : base)

/** `-c search_path=<schema>` as the startup option DSQL's samples use for non-admin roles. */
const searchPath = (schema) => `-c search_path=${schema}`

/** One DDL statement per entry (DSQL runs one DDL per transaction); UUID keys, no serial. */
const DDL = [
  `CREATE TABLE owner (
     id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
     name varchar(30) NOT NULL,
     city varchar(80) NOT NULL,
     telephone varchar(20),
     CONSTRAINT owner_telephone_uq UNIQUE (telephone))`,
  `CREATE TABLE pet (
     id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
     name varchar(30) NOT NULL,
     birth_date date NOT NULL,
     adopted_at timestamptz,
     owner_id uuid)`,
  `CREATE TABLE specialty (
     id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
     name varchar(80) NOT NULL)`,
  `CREATE TABLE vet (
     id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
     name varchar(30) NOT NULL)`,
  `CREATE TABLE vet_specialty (
     id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
     vet_id uuid NOT NULL,
     specialty_id uuid NOT NULL)`,
]

/** The values whose round trip must be exact. */
const BIRTH_DATE = '2019-02-28'
const ADOPTED_AT = '2024-03-05T06:07:08.123Z'

const pad = (n) => String(n).padStart(2, '0')
/** A `date` as the library returned it (a string, or a Date at local midnight as pg parses it). */
function dateText(v) {
  if (v instanceof Date) return `${v.getFullYear()}-${pad(v.getMonth() + 1)}-${pad(v.getDate())}`
  return String(v)
}
/** A `timestamptz` as an ISO instant, whatever shape the library returned. */
function instantText(v) {
  return (v instanceof Date ? v : new Date(v)).toISOString()
}

/** One row of the types the libraries parse differently: each program reads it through its own
 * raw-SQL API and the spec compares the descriptions with what real pg gives the same library. */
const TYPES_SQL = `SELECT 12.50::numeric(5,2) AS num, true AS bool, '\\x0102ff'::bytea AS bin,
  '{"a": [1, 2], "b": null}'::jsonb AS json, 9007199254740993::int8 AS big, 7::int2 AS small,
  1.5::float8 AS dbl, ARRAY[1, 2]::int4[] AS ints, ARRAY['x', 'y z', NULL]::text[] AS texts,
  '2019-02-28'::date AS day, '2024-03-05 06:07:08.123+00'::timestamptz AS at,
  '2024-03-05 06:07:08.123'::timestamp AS local, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid AS id,
  NULL::text AS nothing`

/** A value as `<kind>:<text>`, so that a Date, a Buffer, a bigint or a Decimal shows which it is. */
function describeValue(v) {
  if (v === null || v === undefined) return String(v)
  if (v instanceof Date) return `Date:${Number.isNaN(v.getTime()) ? 'invalid' : v.toISOString()}`
  if (Buffer.isBuffer(v)) return `Buffer:${v.toString('hex')}`
  if (v instanceof Uint8Array) return `Uint8Array:${Buffer.from(v).toString('hex')}`
  if (Array.isArray(v)) return `Array:[${v.map(describeValue).join(',')}]`
  if (typeof v === 'object') {
    const kind = v.constructor && v.constructor !== Object ? v.constructor.name : 'Object'
    return `${kind}:${kind === 'Object' ? JSON.stringify(v) : String(v)}`
  }
  return `${typeof v}:${String(v)}`
}

/** Every column of a row, described. */
const describeRow = (row) => Object.fromEntries(Object.entries(row).map(([k, v]) => [k, describeValue(v)]))

/** The fields of a database error the spec compares, found on the error or along its causes. */
function dbError(e) {
  for (let cur = e, i = 0; cur && i < 6; cur = cur.cause ?? cur.original ?? cur.parent ?? cur.driverError, i++) {
    if (typeof cur.code === 'string' && /^[0-9A-Z]{5}$/.test(cur.code)) return { code: cur.code, constraint: cur.constraint, detail: cur.detail }
  }
  return { code: e && e.code, constraint: e && e.constraint, message: e && String(e.message) }
}

/** The installed version of a package beside these programs (some packages export no package.json). */
const versionOf = (name) => JSON.parse(fs.readFileSync(require('node:path').join(__dirname, 'node_modules', name, 'package.json'), 'utf8')).version

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** DSQL drops every connection after an hour, so a library must carry on when its pooled
 * connections die: here the server terminates the pool's other connections while they sit idle,
 * then the one running the statement. `query(sql)` runs SQL through the library and returns the
 * rows; `codeOf(error)` finds the SQLSTATE on the library's error. */
async function survivesTermination(query, codeOf = (e) => dbError(e).code) {
  const killed = (await query("SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE usename = current_user AND pid <> pg_backend_pid() AND backend_type = 'client backend'"))[0].n
  await sleep(300)
  const after = await Promise.all([1, 2, 3, 4].map((i) => query(`SELECT ${i} AS i`)))
  let self
  try {
    await query('SELECT pg_terminate_backend(pg_backend_pid())')
    self = 'no error'
  } catch (e) {
    self = codeOf(e)
  }
  await sleep(300)
  const again = (await query('SELECT 5 AS i'))[0].i
  return { killed: killed > 0, after: after.map((rows) => rows[0].i), self, again }
}

/** A loopback port nothing listens on (bound, then released). */
function closedPort() {
  const net = require('node:net')
  return new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.on('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address()
      srv.close(() => resolve(port))
    })
  })
}

/** What the spec needs to know about an error: where, its code, and the top of its stack. */
function describeError(where, e, depth = 0) {
  const d = { step: where, name: e && e.name, code: e && e.code, message: String(e && e.message !== undefined ? e.message : e).slice(0, 500) }
  if (e && typeof e.stack === 'string') d.stack = e.stack.split('\n').slice(1, 9).map((l) => l.trim())
  if (e && e.cause && depth < 2) d.cause = describeError(where, e.cause, depth + 1)
  return d
}

/** Runs a program as named steps: a step that throws is recorded and the next ones still run, so
 * one run shows every call that fails. Prints the one JSON line the spec reads; exits 1 on errors. */
function main(name, fn) {
  const started = Date.now()
  const errors = []
  const timings = {}
  const step = async (where, f) => {
    const t0 = Date.now()
    try {
      return await f()
    } catch (e) {
      errors.push(describeError(where, e))
      process.stderr.write(`${name} [${where}]: ${e && e.stack ? e.stack : e}\n`)
      return undefined
    } finally {
      timings[where] = Date.now() - t0
    }
  }
  const finish = (result) => {
    const ok = errors.length === 0
    process.stdout.write(JSON.stringify({ lib: name, ok, ms: Date.now() - started, pg: require.resolve('pg'), ...result, timings, errors }) + '\n')
    if (!ok) process.exitCode = 1
  }
  fn(step).then(finish, (e) => {
    errors.push(describeError('main', e))
    finish({})
  })
}

module.exports = { driver, driverName, pgConfig, schemaName, searchPath, DDL, BIRTH_DATE, ADOPTED_AT, dateText, instantText, dbError, versionOf, main, TYPES_SQL, describeRow, survivesTermination, closedPort }
