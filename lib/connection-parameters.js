'use strict'
// node-postgres's `pg/lib/connection-parameters`: a config's settings with pg's fallbacks
// (option, then PG* environment variable, then `defaults`), for code that reads them that way.

const { defaults } = require('./defaults')

const ENV = { user: 'PGUSER', database: 'PGDATABASE', port: 'PGPORT', host: 'PGHOST', password: 'PGPASSWORD', options: 'PGOPTIONS', application_name: 'PGAPPNAME' }

function val(key, config) {
  const v = config[key]
  if (v !== undefined && v !== null) return v
  const env = ENV[key] && process.env[ENV[key]]
  return env !== undefined && env !== '' && env !== null ? env : defaults[key]
}

class ConnectionParameters {
  constructor(config) {
    config = typeof config === 'string' ? { connectionString: config } : config || {}
    this.user = val('user', config)
    this.database = val('database', config)
    if (this.database === undefined) this.database = this.user
    this.port = parseInt(val('port', config), 10)
    this.host = val('host', config)
    let password = val('password', config)
    Object.defineProperty(this, 'password', { configurable: true, enumerable: false, get: () => password, set: (v) => (password = v) })
    this.binary = val('binary', config)
    this.options = val('options', config)
    this.ssl = config.ssl === undefined ? defaults.ssl : config.ssl
    this.client_encoding = val('client_encoding', config)
    this.replication = val('replication', config)
    this.isDomainSocket = !(this.host || '').indexOf('/')
    this.application_name = val('application_name', config)
    this.fallback_application_name = val('fallback_application_name', config)
    this.statement_timeout = val('statement_timeout', config)
    this.lock_timeout = val('lock_timeout', config)
    this.idle_in_transaction_session_timeout = val('idle_in_transaction_session_timeout', config)
    this.query_timeout = val('query_timeout', config)
    this.connect_timeout = val('connect_timeout', config)
  }
}

module.exports = ConnectionParameters
