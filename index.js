'use strict'
// The public surface. Logic lives in Rust (binding.js loads it); this file adds what Node-API
// cannot express: Error classes, promise-only failures, password functions, rows built in JS.

const { inspect } = require('node:util')
const binding = require('./binding.js')
const { DsqlTunnelError, DatabaseError, fromNative, invalidArgument, invalidConfig } = require('./lib/errors')
const { encodeParams } = require('./lib/params')
const { toResults, toFields, appendRows } = require('./lib/rows')
const { makeInbox, expect, deliver, appendShapeRows } = require('./lib/delivery')
const { isOccError, runTransaction } = require('./lib/transaction')
const { debug } = require('./lib/debug')

// How long a cancelled query may take to come back before its connection is given up.
const CANCEL_GRACE_MILLIS = 5000
// Rows per batch from the server: each batch is built in one go, and between batches the event
// loop runs, so a large result never blocks it for long.
const CHUNK_ROWS = 4096

// Option name → accepted aliases (node-postgres spellings).
const OPTIONS = {
  host: [], hostaddr: [], port: [], user: [], database: [], password: [], sslmode: [], sslrootcert: [],
  sslnegotiation: [], applicationName: ['application_name'], connectionTimeoutMillis: [],
  region: [], profile: [], tokenDurationSecs: [],
}
const ENV_NAMES = binding.envNames()

function readEnvironment() {
  const env = {}
  for (const name of ENV_NAMES) {
    const v = process.env[name]
    if (v !== undefined) env[name] = v
  }
  return env
}

function optionStrings(config) {
  const out = {}
  for (const [name, aliases] of Object.entries(OPTIONS)) {
    let v = config[name]
    for (const a of aliases) if (v === undefined || v === null) v = config[a]
    if (v === undefined || v === null || (name === 'password' && typeof v === 'function')) continue
    if (typeof v !== 'string' && typeof v !== 'number') {
      throw invalidConfig(name, `option ${name} must be a string${name === 'password' ? ' or a function returning one' : ' or a number'}, not ${typeof v}`)
    }
    out[name] = String(v)
  }
  return out
}

let warnedRequire = false
function warnUnverified() {
  if (warnedRequire) return
  warnedRequire = true
  process.emitWarning(
    'sslmode=require encrypts the connection but does not verify the server certificate, so whoever ' +
      'can intercept the tunnel can pose as the cluster and receive your token. Use sslmode=verify-full ' +
      '(the default): DSQL certificates are trusted without any extra set-up.',
    { code: 'DSQL_TUNNEL_SSLMODE_REQUIRE' },
  )
}

/** The `credentials` option: an object or a (sync/async) function, called for every connection. */
async function resolveCredentials(given) {
  if (given === undefined || given === null) return null
  const c = typeof given === 'function' ? await given() : given
  if (c === null || typeof c !== 'object' || typeof c.accessKeyId !== 'string' || typeof c.secretAccessKey !== 'string' ||
      (c.sessionToken !== undefined && c.sessionToken !== null && typeof c.sessionToken !== 'string')) {
    throw invalidConfig('credentials', 'credentials must be (or return) { accessKeyId, secretAccessKey, sessionToken? } with string values')
  }
  return { accessKeyId: c.accessKeyId, secretAccessKey: c.secretAccessKey, sessionToken: c.sessionToken ?? undefined }
}

// The deliver function holds the inbox, never the client: the native side keeps it alive.
const newNative = (inbox) => new binding.NativeClient((d) => deliver(inbox, d))

const isNativeError = (r) => r !== null && typeof r === 'object' && !Array.isArray(r) && typeof r.code === 'string'

class Client {
  #inbox = makeInbox()
  #native = newNative(this.#inbox)
  #flushQueued = false
  #flush = () => {
    this.#flushQueued = false
    this.#native.flush()
  }
  #config
  #info = null
  // Settles after every query issued before it: results come back in call order.
  // The last query's settle mark; the next waits on it only while it is not done yet (results
  // usually arrive in order, so the wait is rarely needed).
  #last = null

  #queryTimeout = 0

  /** @param {string | object} [config] options, or a connection string */
  constructor(config) {
    this.#config = typeof config === 'string' ? { connectionString: config } : config ?? {}
  }

  async connect() {
    const config = this.#config
    if (typeof config !== 'object') throw invalidConfig('config', 'the client options must be an object or a connection string')
    const options = optionStrings(config)
    if (config.connectionString !== undefined && typeof config.connectionString !== 'string') {
      throw invalidConfig('connectionString', 'option connectionString must be a string')
    }
    const qt = config.queryTimeoutMillis ?? 0
    if (typeof qt !== 'number' || !(qt >= 0)) throw invalidConfig('queryTimeoutMillis', 'option queryTimeoutMillis must be a number of milliseconds (0: none)')
    this.#queryTimeout = qt
    const int8 = config.int8 ?? 'string'
    if (int8 !== 'string' && int8 !== 'bigint') throw invalidConfig('int8', "option int8 must be 'string' (the default) or 'bigint'")
    if (typeof config.password === 'function') {
      // Called for every new connection, so it can hand out a fresh token each time.
      const password = await config.password()
      if (typeof password !== 'string') throw invalidConfig('password', 'the password function must return (or resolve to) a string')
      options.password = password
    }
    const credentials = await resolveCredentials(config.credentials)
    const started = performance.now()
    const r = await this.#native.connect(options, config.connectionString ?? null, readEnvironment(), int8 === 'bigint', credentials)
    if (isNativeError(r)) {
      debug('connect-failed', { code: r.code, totalMs: performance.now() - started })
      throw fromNative(r)
    }
    debug('connected', {
      host: r.host, via: `${r.hostaddr ?? r.host}:${r.port}`, user: r.user, tls: r.sslnegotiation, verify: r.verification,
      token: r.tokenMinted ? 'minted' : undefined, tokenMs: r.tokenMinted ? r.tokenMillis : undefined,
      dialMs: r.dialMillis, tlsAuthMs: r.handshakeMillis, totalMs: performance.now() - started,
    })
    this.#info = r
    if (r.verification === 'none') warnUnverified()
  }

  /**
   * Runs one query (or several statements without parameters).
   * @param {string | {text: string, values?: unknown[], rowMode?: 'array'}} text
   */
  async query(text, values, options) {
    let rowMode = options?.rowMode
    if (text !== null && typeof text === 'object') {
      rowMode = text.rowMode ?? rowMode
      values = text.values ?? values
      text = text.text
    }
    if (typeof text !== 'string') throw invalidArgument('the query text must be a string')
    if (!text.isWellFormed()) throw loneSurrogate()
    if (typeof values === 'function' || typeof options === 'function') {
      throw invalidArgument('callbacks are not supported: use the promise query() returns')
    }
    if (values !== undefined && values !== null && !Array.isArray(values)) throw invalidArgument('values must be an array')
    if (rowMode !== undefined && rowMode !== 'array') throw invalidArgument("rowMode must be 'array' or left out")
    const timeout = options?.timeoutMillis ?? this.#queryTimeout
    if (typeof timeout !== 'number' || !(timeout >= 0)) throw invalidArgument('timeoutMillis must be a number of milliseconds')
    const signal = options?.signal
    if (signal !== undefined && !(signal instanceof AbortSignal)) throw invalidArgument('signal must be an AbortSignal')
    if (signal?.aborted) throw abortError(signal)
    const params = values ? encodeParams(values) : []
    const arrayMode = rowMode === 'array'
    // The request is written here, synchronously, so pipelined queries keep their order.
    const inbox = this.#inbox
    const id = ++inbox.lastId
    const failed = this.#native.query(text, params, CHUNK_ROWS, id)
    if (!this.#flushQueued) {
      // Requests queued in this tick go out together, written from this thread.
      this.#flushQueued = true
      queueMicrotask(this.#flush)
    }
    const pending = failed ? Promise.resolve(failed) : expect(inbox, id).then((r) => (isNativeError(r) ? r : this.#finish(r, arrayMode)))
    const previous = this.#last
    const mark = { done: false, wake: null }
    this.#last = mark
    try {
      const r = timeout > 0 || signal ? await this.#cancellable(pending, timeout, signal) : await pending
      // Results may complete in any order; settle in the order the queries were sent.
      if (previous !== null && !previous.done) await new Promise((resolve) => (previous.wake = resolve))
      if (isNativeError(r)) throw fromNative(r)
      return r
    } finally {
      mark.done = true
      if (mark.wake !== null) mark.wake()
    }
  }

  // Rows of the first batch, and of the rest when there is more (awaiting each batch lets the
  // event loop run between them); or one result per statement for text with several.
  #finish(reply, arrayMode) {
    if (reply.results) return toResults(reply.results, arrayMode).then((r) => (r.length === 1 ? r[0] : r))
    const { shape } = reply
    const fields = shape.fields
    const rows = []
    const done = (rowCount) => ({ command: shape.command, rowCount, rows, fields, rowAsArray: arrayMode })
    appendShapeRows(shape, reply.columns, reply.n, arrayMode, rows)
    if (!reply.more) return done(reply.rowCount)
    const more = async () => {
      for (;;) {
        const piece = await this.#native.more(reply.more)
        if (isNativeError(piece)) return piece
        if (piece.chunk) appendRows(fields, piece.chunk, arrayMode, rows)
        if (piece.done) return done(piece.rowCount ?? null)
      }
    }
    return more()
  }

  /**
   * Runs one statement and yields its rows as they arrive, `batchSize` rows at a time from the
   * server (default 1000), with backpressure: a result larger than memory streams in bounded
   * memory. Breaking out of the loop cancels the statement; the connection stays usable. Run
   * other queries on another connection while iterating: this one is busy until the end.
   */
  stream(text, values, options) {
    const native = this.#native
    const rowMode = options?.rowMode
    const batchSize = options?.batchSize ?? 1000
    return (async function* rows() {
      if (typeof text !== 'string') throw invalidArgument('the query text must be a string')
      if (!text.isWellFormed()) throw loneSurrogate()
      if (values !== undefined && values !== null && !Array.isArray(values)) throw invalidArgument('values must be an array')
      if (!Number.isInteger(batchSize) || batchSize < 1) throw invalidArgument('batchSize must be a whole number of at least 1')
      if (rowMode !== undefined && rowMode !== 'array') throw invalidArgument("rowMode must be 'array' or left out")
      const stream = native.stream(text, values ? encodeParams(values) : [], batchSize)
      if (stream === null) throw invalidArgument('stream() runs one statement; this text has several')
      let fields = []
      let finished = false
      try {
        for (;;) {
          const piece = await stream.next()
          if (isNativeError(piece)) {
            finished = true
            throw fromNative(piece)
          }
          if (piece.fields) fields = toFields(piece.fields)
          if (piece.chunk) {
            const batch = []
            appendRows(fields, piece.chunk, rowMode === 'array', batch)
            yield* batch
          }
          if (piece.done) {
            finished = true
            return
          }
        }
      } finally {
        if (!finished) await stream.close()
      }
    })()
  }

  // Sends a CancelRequest when the timeout passes or the signal aborts, then waits (a bounded
  // time) for the server to end the query with 57014, keeping the connection usable.
  async #cancellable(pending, timeout, signal) {
    let reason = null
    let timer, grace, onAbort
    const cancelled = new Promise((resolve) => {
      const cancel = (why) => {
        if (reason) return
        reason = why
        debug('cancel', { reason: why, host: this.#info?.host })
        this.#native.cancel()
        grace = setTimeout(resolve, CANCEL_GRACE_MILLIS)
      }
      if (timeout > 0) timer = setTimeout(() => cancel('timeout'), timeout)
      if (signal) signal.addEventListener('abort', (onAbort = () => cancel('abort')), { once: true })
    })
    try {
      const r = await Promise.race([pending, cancelled.then(() => null)])
      if (r === null) {
        // The server never answered the cancel: the connection's state is unknown, so close it.
        this.#native.end()
        const err = new DsqlTunnelError('57014', `the query was cancelled (${reason}) but the server did not confirm within ${CANCEL_GRACE_MILLIS} ms; the connection was closed`)
        throw reason === 'abort' ? abortError(signal, err) : err
      }
      if (reason === 'abort' && isNativeError(r) && r.code === '57014') throw abortError(signal, fromNative(r))
      return r
    } finally {
      clearTimeout(timer)
      clearTimeout(grace)
      if (onAbort) signal.removeEventListener('abort', onAbort)
    }
  }

  /** Asks the server to cancel the query this client is running (a CancelRequest through the
   * tunnel, over TLS with the DSQL hostname as SNI). */
  async cancel() {
    const r = await this.#native.cancel()
    if (isNativeError(r)) throw fromNative(r)
  }

  /**
   * Runs `fn` in a transaction; on an optimistic-concurrency conflict (40001, OC000, OC001) the
   * whole callback runs again, so it must be idempotent.
   * @param {(client: Client) => Promise<T>} fn
   * @param {{retries?: number, minDelayMillis?: number, maxDelayMillis?: number, jitter?: number,
   *   isolation?: 'repeatable read', onRetry?: (err: Error, attempt: number, delayMillis: number) => void}} [options]
   * @template T
   */
  async transaction(fn, options) {
    if (typeof fn !== 'function') throw invalidArgument('transaction needs a function')
    checkTransactionOptions(options)
    return runTransaction(this, fn, options)
  }

  /** Whether the connection is open (its socket alive). */
  get isOpen() {
    return this.#native.isOpen
  }

  /** Closes the connection; queries still pending reject with `CLIENT_CLOSED`. Idempotent. */
  async end() {
    if (this.#info && this.#native.isOpen) debug('end', { host: this.#info.host })
    await this.#native.end()
  }

  /** Settings the connection uses (no secrets), once connected. */
  get connection() {
    return this.#info
  }

  [inspect.custom]() {
    const i = this.#info
    return i
      ? `Client { host: ${i.host}, hostaddr: ${i.hostaddr ?? '-'}, port: ${i.port}, user: ${i.user}, database: ${i.database}, open: ${this.#native.isOpen} }`
      : 'Client { not connected }'
  }
}

// Node-API would turn it into U+FFFD on the way to UTF-8: the server would run other text.
const loneSurrogate = () => invalidArgument('the query text has a lone UTF-16 surrogate (half of a surrogate pair), which has no UTF-8 form: it would reach the server as U+FFFD, so the query was not sent')

function abortError(signal, serverError) {
  const err = new DsqlTunnelError('ABORT_ERR', 'the query was aborted', { cause: signal.reason })
  err.name = 'AbortError'
  if (serverError) err.sqlstate = serverError.code
  return err
}

function checkTransactionOptions(o) {
  if (o === undefined || o === null) return
  if (typeof o !== 'object') throw invalidArgument('transaction options must be an object')
  for (const k of ['retries', 'minDelayMillis', 'maxDelayMillis', 'jitter']) {
    if (o[k] !== undefined && !(typeof o[k] === 'number' && o[k] >= 0)) throw invalidArgument(`transaction option ${k} must be a number >= 0`)
  }
  if (o.isolation !== undefined && o.isolation !== 'repeatable read') throw invalidArgument("isolation must be 'repeatable read' (DSQL's only level) or left out")
  if (o.onRetry !== undefined && typeof o.onRetry !== 'function') throw invalidArgument('onRetry must be a function')
}

/** Creates a client and connects it. */
async function connect(config) {
  const client = new Client(config)
  await client.connect()
  return client
}

/** The settings a connection would use and where each came from (no secrets). */
function resolveConfig(config) {
  const c = typeof config === 'string' ? { connectionString: config } : config ?? {}
  const r = binding.resolveConfig(optionStrings(c), c.connectionString ?? null, readEnvironment())
  if (isNativeError(r)) throw fromNative(r)
  return r
}

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

const { Pool, PoolClient } = require('./lib/pool').makePool({ Client, DsqlTunnelError, invalidArgument, invalidConfig })

/** Decodes a DSQL auth token (host, action, region, times); `null` for an ordinary password. */
function decodeToken(token) {
  if (typeof token !== 'string') return null
  const c = binding.decodeToken(token)
  return c && { host: c.host, action: c.action, region: c.region, accessKeyId: c.accessKeyId, signedAt: new Date(c.signedAt), expiresAt: new Date(c.expiresAt) }
}

exports.Client = Client
exports.decodeToken = decodeToken
exports.Pool = Pool
exports.PoolClient = PoolClient
exports.isOccError = isOccError
exports.generateToken = generateToken
exports.connect = connect
exports.resolveConfig = resolveConfig
exports.DsqlTunnelError = DsqlTunnelError
exports.DatabaseError = DatabaseError
