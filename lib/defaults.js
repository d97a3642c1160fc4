'use strict'
// node-postgres's `defaults`: the same keys and initial values. A value changed here is the
// fallback for clients and pools made afterwards (their own options, connection strings and
// PG* environment variables come first); values left as pg has them change nothing.

const { types, defaultParser } = require('./types')

let user
try {
  user = process.platform === 'win32' ? process.env.USERNAME : process.env.USER
} catch {
  user = undefined
}

const INITIAL = {
  host: 'localhost',
  user,
  database: undefined,
  password: null,
  connectionString: undefined,
  port: 5432,
  rows: 0,
  binary: false,
  max: 10,
  idleTimeoutMillis: 30000,
  client_encoding: '',
  ssl: false,
  sslnegotiation: undefined,
  application_name: undefined,
  fallback_application_name: undefined,
  options: undefined,
  parseInputDatesAsUTC: false,
  statement_timeout: false,
  lock_timeout: false,
  idle_in_transaction_session_timeout: false,
  query_timeout: false,
  connect_timeout: 0,
  keepalives: 1,
  keepalives_idle: 0,
}

const defaults = { ...INITIAL }

let parseInt8 = false
// pg's switch for int8 (and int8[]) as JavaScript numbers: it installs int4's parsers for them.
Object.defineProperty(defaults, 'parseInt8', {
  enumerable: false,
  configurable: true,
  get: () => parseInt8,
  set(value) {
    parseInt8 = Boolean(value)
    types.setTypeParser(20, 'text', parseInt8 ? defaultParser(23) : defaultParser(20))
    types.setTypeParser(1016, 'text', parseInt8 ? defaultParser(1007) : defaultParser(1016))
  },
})

// Connection settings a client takes from `defaults` when the application changed them.
const CONNECTION_KEYS = ['host', 'user', 'database', 'password', 'port', 'application_name', 'fallback_application_name', 'options',
  'statement_timeout', 'lock_timeout', 'idle_in_transaction_session_timeout', 'query_timeout', 'connect_timeout', 'ssl']
// The environment variable that outranks each default, as in pg.
const ENV_FOR = { host: 'PGHOST', user: 'PGUSER', database: 'PGDATABASE', password: 'PGPASSWORD', port: 'PGPORT', application_name: 'PGAPPNAME', options: 'PGOPTIONS' }

/** The defaults the application changed (and no environment variable overrides). */
function changedDefaults() {
  let out = null
  for (const k of CONNECTION_KEYS) {
    if (defaults[k] === INITIAL[k] || defaults[k] === undefined) continue
    if (ENV_FOR[k] && process.env[ENV_FOR[k]] !== undefined) continue
    out ??= {}
    out[k] = defaults[k]
  }
  return out
}

require('./params').setDefaults(defaults)

module.exports = { defaults, changedDefaults }
