'use strict'
// The package root, shaped as node-postgres's (`require('pg')` may resolve here): Client, Pool,
// types, defaults, DatabaseError, TypeOverrides, escapeIdentifier/escapeLiteral, Query, Result,
// utils, `native` (null), plus dsql-tunnel's own exports. Logic lives in Rust (binding.js loads
// it) and in lib/.

const { version } = require('./package.json')

// One identity per process: an app that has this package under its own name and as `pg` (an npm
// alias installs it twice) sees one Client and one Pool, so `instanceof` holds across both.
const SHARED = Symbol.for('dsql-tunnel.exports')
const shared = globalThis[SHARED]

if (shared !== undefined && shared.version === version) {
  module.exports = shared.exports
} else {
  const binding = require('./binding.js')
  const { DsqlTunnelError, DatabaseError, fromNative, invalidArgument, invalidConfig } = require('./lib/errors')
  const { Client, Connection, resolveConfig, readEnvironment, resolveCredentials } = require('./lib/client')
  const { makePool } = require('./lib/pool')
  const { types, TypeOverrides } = require('./lib/types')
  const { defaults } = require('./lib/defaults')
  const utils = require('./lib/utils')
  const Result = require('./lib/result')
  const Query = require('./lib/query')
  const { isOccError } = require('./lib/transaction')

  const Pool = makePool(Client)

  /** Creates a client and connects it. */
  async function connect(config) {
    const client = new Client(config)
    await client.connect()
    return client
  }

  const isNativeError = (r) => r !== null && typeof r === 'object' && typeof r.code === 'string'

  /**
   * Mints a DSQL auth token, as `aws dsql generate-db-connect[-admin]-auth-token` does.
   * @param {{host: string, region?: string, user?: string, expiresIn?: number, profile?: string,
   *   credentials?: object | Function, signingDate?: Date}} options
   */
  async function generateToken(options) {
    if (options === null || typeof options !== 'object') throw invalidArgument('generateToken needs an options object with host')
    const strings = {}
    for (const k of ['host', 'region', 'user', 'expiresIn', 'profile']) {
      const v = options[k]
      if (v === undefined || v === null) continue
      if (typeof v !== 'string' && typeof v !== 'number') throw invalidConfig(k, `option ${k} must be a string${k === 'expiresIn' ? ' or a number' : ''}`)
      strings[k] = String(v)
    }
    if (options.signingDate !== undefined && !(options.signingDate instanceof Date && !Number.isNaN(options.signingDate.getTime()))) {
      throw invalidConfig('signingDate', 'signingDate must be a valid Date')
    }
    const credentials = await resolveCredentials(options.credentials)
    const r = await binding.generateToken(strings, readEnvironment(), credentials, options.signingDate?.getTime() ?? null)
    if (isNativeError(r)) throw fromNative(r)
    return r
  }

  /** Decodes a DSQL auth token (host, action, region, times); `null` for an ordinary password. */
  function decodeToken(token) {
    if (typeof token !== 'string') return null
    const c = binding.decodeToken(token)
    return c && { host: c.host, action: c.action, region: c.region, accessKeyId: c.accessKeyId, signedAt: new Date(c.signedAt), expiresAt: new Date(c.expiresAt) }
  }

  module.exports = {
    // node-postgres's module surface.
    defaults,
    Client,
    Query,
    Pool,
    _pools: [],
    Connection,
    types,
    DatabaseError,
    TypeOverrides,
    escapeIdentifier: utils.escapeIdentifier,
    escapeLiteral: utils.escapeLiteral,
    Result,
    utils,
    // dsql-tunnel's own.
    PoolClient: Client,
    connect,
    generateToken,
    decodeToken,
    isOccError,
    resolveConfig,
    DsqlTunnelError,
    startProxy: (options) => require('./lib/proxy').startProxy(options),
  }
  // pg's `native` (pg-native bindings): there are none here, and reading it never throws.
  Object.defineProperty(module.exports, 'native', { configurable: true, enumerable: false, get: () => null })
  globalThis[SHARED] = { version, exports: module.exports }
}
