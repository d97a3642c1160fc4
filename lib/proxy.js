'use strict'
// startProxy(options): a local PostgreSQL listener that takes any client (psql, ORMs' CLIs, GUI
// tools, drivers in other languages) through the tunnel with TLS, SNI and a fresh IAM token per
// connection. The work is in Rust (src/proxy/); this file maps options and errors.

const binding = require('../binding.js')
const { fromNative, invalidConfig } = require('./errors')
const { debugEnabled } = require('./debug')

const DEFAULT_LISTEN_PORT = 5433
// How long close() lets open sessions finish before closing them.
const DEFAULT_GRACE_MILLIS = 10_000
// Running proxies, so one whose handle is dropped keeps serving until close() (the native side
// stops when its handle is collected). It holds no event-loop handle: like an idle client, an
// open proxy does not keep Node running.
const running = new Set()

// The upstream settings, as the client takes them (see ClientConfig).
const UPSTREAM_OPTIONS = {
  host: [], hostaddr: [], port: [], user: [], database: [], password: [], sslmode: [], sslrootcert: [],
  sslnegotiation: [], applicationName: ['application_name'], connectionTimeoutMillis: [],
  region: [], profile: [], tokenDurationSecs: [], tunnel: [],
}

function upstreamStrings(options) {
  const out = {}
  for (const [name, aliases] of Object.entries(UPSTREAM_OPTIONS)) {
    let v = options[name]
    for (const a of aliases) if (v === undefined || v === null) v = options[a]
    if (v === undefined || v === null) continue
    if (name === 'tunnel' && typeof v === 'object') v = JSON.stringify(v)
    if (typeof v !== 'string' && typeof v !== 'number') {
      throw invalidConfig(name, `option ${name} must be a string or a number, not ${typeof v}`)
    }
    out[name] = String(v)
  }
  return out
}

function readEnvironment() {
  const env = {}
  for (const name of binding.envNames()) if (process.env[name] !== undefined) env[name] = process.env[name]
  return env
}

async function credentialsOnce(given) {
  if (given === undefined || given === null) return null
  const c = typeof given === 'function' ? await given() : given
  if (c === null || typeof c !== 'object' || typeof c.accessKeyId !== 'string' || typeof c.secretAccessKey !== 'string') {
    throw invalidConfig('credentials', 'credentials must be (or return) { accessKeyId, secretAccessKey, sessionToken? } with string values')
  }
  return { accessKeyId: c.accessKeyId, secretAccessKey: c.secretAccessKey, sessionToken: c.sessionToken ?? undefined }
}

/** `127.0.0.1:5433`, `[::1]:5433`, `5433` or `{ host, port }` → { host, port }. */
function parseListen(listen) {
  if (listen === undefined || listen === null) return { host: '127.0.0.1', port: DEFAULT_LISTEN_PORT }
  if (typeof listen === 'number') return { host: '127.0.0.1', port: listen }
  if (typeof listen === 'object') return { host: listen.host ?? '127.0.0.1', port: listen.port ?? DEFAULT_LISTEN_PORT }
  if (typeof listen !== 'string') throw invalidConfig('listen', 'listen must be "host:port", a port number or { host, port }')
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(listen) ?? /^()()(\d+)$/.exec(listen)
  if (!m) throw invalidConfig('listen', `listen ${JSON.stringify(listen)} is not host:port (e.g. 127.0.0.1:5433)`)
  return { host: m[1] || m[2] || '127.0.0.1', port: Number(m[3]) }
}

/**
 * Starts the proxy. `options` are the client's settings for the upstream side (host, hostaddr,
 * port, user, sslmode, …, connectionString, credentials; environment as for a client) plus
 * `listen`, `unixSocketDir`, `allowNonLoopback`, `localPassword`, `maxClients`, `check`, `debug`.
 * Resolves with `{ host, port, socketPath, stats(), close(graceMillis?) }`.
 */
async function startProxy(options = {}) {
  if (options === null || typeof options !== 'object') throw invalidConfig('options', 'startProxy needs an options object')
  if (options.connectionString !== undefined && typeof options.connectionString !== 'string') {
    throw invalidConfig('connectionString', 'option connectionString must be a string')
  }
  if (typeof options.password === 'function') {
    throw invalidConfig('password', 'the proxy takes a static password (a token) or none (tokens are minted per connection)')
  }
  const { host, port } = parseListen(options.listen)
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw invalidConfig('listen', 'the listen port must be from 0 to 65535')
  const maxClients = options.maxClients ?? 100
  if (!Number.isInteger(maxClients) || maxClients < 1) throw invalidConfig('maxClients', 'maxClients must be a whole number of at least 1')
  if (options.localPassword !== undefined && (typeof options.localPassword !== 'string' || options.localPassword === '')) {
    throw invalidConfig('localPassword', 'localPassword must be a non-empty string')
  }
  const listen = {
    host: String(host),
    port,
    unixSocketDir: options.unixSocketDir ?? undefined,
    allowNonLoopback: Boolean(options.allowNonLoopback),
    localPassword: options.localPassword,
    maxClients,
    check: options.check ?? true,
    debug: options.debug ?? debugEnabled,
  }
  const credentials = await credentialsOnce(options.credentials)
  const r = await binding.startNativeProxy(upstreamStrings(options), options.connectionString ?? null, readEnvironment(), credentials, listen)
  if (!(r instanceof binding.NativeProxy)) throw fromNative(r)
  running.add(r)
  let closing = null
  return {
    host: r.host,
    port: r.port,
    socketPath: r.socketPath ?? undefined,
    stats: () => r.stats(),
    /** Stops accepting; open sessions get `graceMillis` (default 10 s) to finish, then are closed. */
    close(graceMillis = DEFAULT_GRACE_MILLIS) {
      if (typeof graceMillis !== 'number' || !(graceMillis >= 0)) throw invalidConfig('graceMillis', 'close(graceMillis) takes a number of milliseconds')
      closing ??= r.close(graceMillis).finally(() => running.delete(r))
      return closing
    },
  }
}

module.exports = { startProxy, parseListen, DEFAULT_LISTEN_PORT, DEFAULT_GRACE_MILLIS }
