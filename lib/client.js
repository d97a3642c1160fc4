'use strict'
// One connection: node-postgres's Client (an EventEmitter; promises or callbacks; pg's config
// names, events and result shapes) over the native connector, plus ours (`stream`, `cancel`,
// `transaction`, tokens, `hostaddr`). Logic that needs no JavaScript lives in Rust.

const EventEmitter = require('node:events')
const { inspect } = require('node:util')
const binding = require('../binding.js')
const { DsqlTunnelError, fromNative, invalidArgument, invalidConfig } = require('./errors')
const { encodeParams } = require('./params')
const { toFields, appendRows, parsersFor } = require('./rows')
const { makeInbox, expect, deliver, appendShapeRows } = require('./delivery')
const { runTransaction, checkTransactionOptions } = require('./transaction')
const { types, TypeOverrides, textOidsFor, currentVersion } = require('./types')
const { defaults, changedDefaults } = require('./defaults')
const { escapeIdentifier, escapeLiteral } = require('./utils')
const Result = require('./result')
const { runSubmittable } = require('./submittable')
const Query = require('./query')
const { debug } = require('./debug')

// DSQL's front door closes the connection on a protocol message larger than this, leaving the
// statement's outcome unknown: such requests are refused before anything is sent.
const DSQL_MAX_MESSAGE_BYTES = 10 * 1024 * 1024
// Bytes of a Parse or Bind message besides the text and the values: header, names, counts.
const MESSAGE_OVERHEAD = 256
// An inactive cluster answers connects with this while it wakes up: retried with backoff.
const WAKING = /waking up cluster/i
const WAKING_FIRST_DELAY_MILLIS = 100
const WAKING_MAX_DELAY_MILLIS = 2000
// Time a last attempt needs at least (a connect through a tunnel to DSQL takes tens of ms).
const WAKING_LAST_TRY_MILLIS = 100
const DEFAULT_CONNECT_TIMEOUT_MILLIS = 10_000
// How long a cancelled query may take to come back before its connection is given up.
const CANCEL_GRACE_MILLIS = 5000
// Rows per batch from the server: each batch is built in one go, and between batches the event
// loop runs, so a large result never blocks it for long.
const CHUNK_ROWS = 4096

// Option name → accepted aliases (node-postgres spellings).
const OPTIONS = {
  host: [], hostaddr: [], port: [], user: [], database: [], password: [], sslmode: [], sslrootcert: [],
  sslnegotiation: [], applicationName: ['application_name', 'fallback_application_name'], connectionTimeoutMillis: [],
  region: [], profile: [], tokenDurationSecs: [], options: [], tunnel: [],
}
// pg's session settings, sent as startup options (`-c name=value`).
const SESSION_SETTINGS = ['statement_timeout', 'lock_timeout', 'idle_in_transaction_session_timeout']
const ENV_NAMES = binding.envNames()

function readEnvironment() {
  const env = {}
  for (const name of ENV_NAMES) {
    const v = process.env[name]
    if (v !== undefined) env[name] = v
  }
  return env
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

const pemText = (ca) => (Array.isArray(ca) ? ca.map(pemText).join('\n') : Buffer.isBuffer(ca) || ca instanceof Uint8Array ? Buffer.from(ca).toString('utf8') : String(ca))

/**
 * pg's config → the connector's string options. `ssl.servername` names the cluster (SNI,
 * verification, token) while `host` is the tunnel, as pg users write it for a tunnel.
 */
function optionStrings(config) {
  const out = {}
  for (const [name, aliases] of Object.entries(OPTIONS)) {
    let v = config[name]
    for (const a of aliases) if (v === undefined || v === null) v = config[a]
    if (v === undefined || v === null || (name === 'password' && typeof v === 'function')) continue
    if (name === 'tunnel' && typeof v === 'object') v = JSON.stringify(v)
    if (typeof v !== 'string' && typeof v !== 'number') {
      throw invalidConfig(name, `option ${name} must be a string${name === 'password' ? ' or a function returning one' : ' or a number'}, not ${typeof v}`)
    }
    out[name] = String(v)
  }
  if (config.connect_timeout !== undefined && config.connect_timeout !== null && out.connectionTimeoutMillis === undefined) {
    out.connectionTimeoutMillis = String(Number(config.connect_timeout) * 1000)
  }
  // Whole milliseconds, as pg sends them (it parses with parseInt).
  const settings = SESSION_SETTINGS.filter((s) => Number(config[s]) > 0).map((s) => `-c ${s}=${parseInt(config[s], 10)}`)
  if (settings.length) out.options = [out.options, ...settings].filter(Boolean).join(' ')
  const ssl = config.ssl
  if (ssl !== null && typeof ssl === 'object') {
    const tunnel = out.host ?? process.env.PGHOST ?? defaults.host
    if (typeof ssl.servername === 'string' && ssl.servername !== '' && ssl.servername !== tunnel) {
      // The tunnel is what `host` names (as in pg: the option, else PGHOST, else localhost); the
      // cluster is the TLS name.
      if (out.hostaddr === undefined && process.env.PGHOSTADDR === undefined) out.hostaddr = tunnel
      out.host = ssl.servername
    }
    if (ssl.ca !== undefined && ssl.ca !== null && out.sslrootcert === undefined) out.ca = pemText(ssl.ca)
    if (ssl.rejectUnauthorized === false && out.sslmode === undefined) out.sslmode = 'require'
  }
  return out
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

const isNativeError = (r) => r !== null && typeof r === 'object' && !Array.isArray(r) && typeof r.code === 'string'

/** A server NOTICE, as pg emits it with `notice`: the message and the server's fields. */
class NoticeMessage {
  constructor(n) {
    this.name = 'notice'
    this.message = n.message
    this.code = n.code
    for (const k of ['severity', 'detail', 'hint', 'position', 'where', 'schema', 'table', 'column', 'dataType', 'constraint', 'file', 'line', 'routine']) {
      if (n[k] !== undefined && n[k] !== null) this[k] = n[k]
    }
  }
}

/**
 * `client.connection`: emits pg's connection-level events (`parameterStatus` during connect) and,
 * once connected, says what the connection settled on (no secrets).
 */
class Connection extends EventEmitter {
  constructor(end) {
    super()
    Object.defineProperty(this, 'stream', { enumerable: false, value: { destroy: end, get readyState() { return 'open' } } })
  }
}

// Each call turns into a `Query`-like config: text, values, rowMode, types, name, callback.
function normalize(config, values, callback) {
  if (config === null || config === undefined) throw invalidArgument('Client was passed a null or undefined query')
  const q = typeof config === 'string' ? { text: config } : { ...config }
  if (typeof values === 'function') q.callback = values
  else if (values !== undefined && values !== null) q.values = values
  else if (q.values === undefined && values !== undefined) q.values = values
  if (typeof callback === 'function') q.callback = callback
  return q
}

// pg's prepared-statement contract: a name stands for one text on a connection.
const preparedMismatch = (name) => invalidArgument(`Prepared statements must be unique - '${name}' was used for a different statement`)

class Client extends EventEmitter {
  #inbox = makeInbox()
  #native = new binding.NativeClient(((inbox) => (d) => deliver(inbox, d))(this.#inbox))
  #flushQueued = false
  #flush = () => {
    this.#flushQueued = false
    this.#native.flush()
  }
  #config
  #info = null
  // Settles after every query issued before it: results come back in call order. The last
  // query's settle mark; the next waits on it only while it is not done yet.
  #last = null
  #queryTimeout = 0
  #connecting = null
  #ended = false
  #ready = null
  #endPromise = null
  #inflight = 0
  #textOids = new Set()
  #textVersion = -1
  #names = null

  /** @param {string | object} [config] options (pg's names and ours), or a connection string */
  constructor(config) {
    super()
    const given = typeof config === 'string' ? { connectionString: config } : config ?? {}
    this.#config = { ...changedDefaults(), ...given }
    this._types = new TypeOverrides(given.types)
    // pg's `Promise` option: the class of the promises returned when no callback is given.
    this._Promise = typeof given.Promise === 'function' ? given.Promise : Promise
    this.connection = new Connection(() => this.#native.end())
    this._queryable = true
    this._ending = false
    this._connected = false
    this._connecting = false
    this.processID = null
    this.secretKey = null
    this.readyForQuery = false
    this.host = this.#config.host ?? defaults.host
    this.port = Number(this.#config.port ?? defaults.port)
    this.user = this.#config.user ?? defaults.user
    this.database = this.#config.database ?? this.user
    this.ssl = this.#config.ssl ?? false
    this.binary = false
    let password = this.#config.password ?? null
    // An accessor: inspect() never reads it, JSON.stringify never lists it.
    Object.defineProperty(this, 'password', { configurable: true, enumerable: false, get: () => password, set: (v) => (password = v) })
    this.#inbox.onEvent = (kind, value) => process.nextTick(() => this.#onEvent(kind, value))
    // pg's resolved settings object, as code written for pg reads it (no secret in it).
    const c = this.#config
    this.connectionParameters = {
      user: this.user, database: this.database, port: this.port, host: this.host, binary: false, options: c.options,
      ssl: this.ssl, client_encoding: '', replication: undefined, isDomainSocket: false,
      application_name: c.application_name ?? c.applicationName, fallback_application_name: c.fallback_application_name,
      statement_timeout: c.statement_timeout ?? false, lock_timeout: c.lock_timeout ?? false,
      idle_in_transaction_session_timeout: c.idle_in_transaction_session_timeout ?? false,
      query_timeout: c.query_timeout ?? false, connect_timeout: c.connect_timeout ?? 0,
    }
  }

  /** pg's `client.setTypeParser` / `getTypeParser`, on this client's overrides. */
  setTypeParser(oid, format, parseFn) {
    return this._types.setTypeParser(oid, format, parseFn)
  }
  getTypeParser(oid, format) {
    return this._types.getTypeParser(oid, format)
  }

  /**
   * Opens the connection. With a callback, calls it with `(err, client)`; otherwise returns a
   * promise of this client.
   */
  connect(callback) {
    const p = this.#connect()
    if (typeof callback === 'function') {
      p.then(() => callback(null, this), (err) => callback(err))
      return undefined
    }
    return this.#promise(p.then(() => this))
  }

  // `p` as an instance of the configured Promise class.
  #promise(p) {
    const P = this._Promise
    return P === Promise ? p : new P((resolve, reject) => p.then(resolve, reject))
  }

  #connect() {
    if (this._ending) return Promise.reject(new DsqlTunnelError('CLIENT_CLOSED', 'Client was closed with end(): create a new client to connect again'))
    if (this.#connecting) {
      return Promise.reject(new DsqlTunnelError('ALREADY_CONNECTED', 'Client has already been connected. You cannot reuse a client.'))
    }
    this._connecting = true
    const attempt = this.#open().then(
      () => {
        this._connecting = false
        this._connected = true
        this._queryable = true
        this.emit('connect')
      },
      (err) => {
        // A failed connect may be tried again on the same client.
        this._connecting = false
        this.#connecting = null
        throw err
      },
    )
    this.#connecting = attempt
    const ready = this.#ready
    this.#ready = null
    ready?.resolve({ attempt })
    return attempt
  }

  async #open() {
    let config = this.#config
    if (typeof config !== 'object') throw invalidConfig('config', 'the client options must be an object or a connection string')
    const ssh = config.tunnel !== null && typeof config.tunnel === 'object' ? config.tunnel.ssh : undefined
    if (ssh && typeof ssh.passphrase === 'function') {
      // Asked for every new connection, like a password function; the session is shared.
      const passphrase = await ssh.passphrase()
      if (typeof passphrase !== 'string') throw invalidConfig('tunnel', 'the tunnel passphrase function must return (or resolve to) a string')
      config = { ...config, tunnel: { ...config.tunnel, ssh: { ...ssh, passphrase } } }
    }
    const options = optionStrings(config)
    if (config.connectionString !== undefined && typeof config.connectionString !== 'string') {
      throw invalidConfig('connectionString', 'option connectionString must be a string')
    }
    const qt = config.queryTimeoutMillis ?? (typeof config.query_timeout === 'number' ? config.query_timeout : 0)
    if (typeof qt !== 'number' || !(qt >= 0)) throw invalidConfig('queryTimeoutMillis', 'option queryTimeoutMillis must be a number of milliseconds (0: none)')
    this.#queryTimeout = qt
    const int8 = config.int8 ?? 'string'
    if (int8 !== 'string' && int8 !== 'bigint') throw invalidConfig('int8', "option int8 must be 'string' (the default) or 'bigint'")
    // `this.password`, as pg reads it: a subclass may set it just before connecting.
    const given = this.password
    if (typeof given === 'function') {
      // Called for every new connection, so it can hand out a fresh token each time.
      const password = await given()
      if (typeof password !== 'string') throw invalidConfig('password', 'the password function must return (or resolve to) a string')
      options.password = password
    } else if (typeof given === 'string') {
      options.password = given
    } else if (given !== null && given !== undefined) {
      throw invalidConfig('password', `option password must be a string or a function returning one, not ${typeof given}`)
    }
    const credentials = await resolveCredentials(config.credentials)
    const started = performance.now()
    const r = await this.#connectWaking(options, config, int8, credentials, started)
    debug('connected', {
      host: r.host, via: `${r.hostaddr ?? r.host}:${r.port}`, user: r.user, tls: r.sslnegotiation, verify: r.verification,
      token: r.tokenMinted ? 'minted' : undefined, tokenMs: r.tokenMinted ? r.tokenMillis : undefined,
      dialMs: r.dialMillis, tlsAuthMs: r.handshakeMillis, totalMs: performance.now() - started,
    })
    const { parameters, processId, ...info } = r
    this.#info = info
    Object.assign(this.connection, info)
    this.processID = processId ?? null
    this.user = info.user
    this.database = info.database
    this.port = info.port
    Object.assign(this.connectionParameters, { user: info.user, database: info.database, port: info.port })
    this.readyForQuery = true
    if (r.verification === 'none') warnUnverified()
    for (let i = 0; i + 1 < parameters.length; i += 2) {
      this.connection.emit('parameterStatus', { name: 'parameterStatus', parameterName: parameters[i], parameterValue: parameters[i + 1] })
    }
  }

  // A waking cluster refuses connects for a while: try again with backoff until the connect
  // timeout, then fail with CLUSTER_WAKING.
  async #connectWaking(options, config, int8, credentials, started) {
    const given = Number(options.connectionTimeoutMillis)
    const budget = given > 0 ? given : DEFAULT_CONNECT_TIMEOUT_MILLIS
    const deadline = started + budget
    let delay = WAKING_FIRST_DELAY_MILLIS
    let waking = null
    const stillWaking = (attempts, cause) => new DsqlTunnelError('CLUSTER_WAKING', `the cluster was still waking up after ${attempts} connection attempts in ${Math.round(performance.now() - started)} ms (the connect timeout is ${budget} ms): try again shortly, or raise connectionTimeoutMillis`, { cause })
    for (let attempt = 1; ; attempt++) {
      const left = deadline - performance.now()
      const opts = attempt === 1 ? options : { ...options, connectionTimeoutMillis: String(Math.max(1, Math.ceil(left))) }
      const r = await this.#native.connect(opts, config.connectionString ?? null, readEnvironment(), int8, credentials)
      if (!isNativeError(r)) return r
      if (!WAKING.test(r.message)) {
        debug('connect-failed', { code: r.code, totalMs: performance.now() - started })
        // The last try, squeezed into what was left of the timeout, ran out of it.
        if (waking && r.code === 'CONNECT_TIMEOUT') throw stillWaking(attempt, waking)
        throw fromNative(r)
      }
      waking = fromNative(r)
      // The last try gets what is left of the timeout, if that is enough for a connect.
      const room = deadline - performance.now() - WAKING_LAST_TRY_MILLIS
      if (room <= 0) {
        debug('connect-failed', { code: 'CLUSTER_WAKING', attempts: attempt, totalMs: performance.now() - started })
        throw stillWaking(attempt, waking)
      }
      const wait = Math.min(Math.min(delay, WAKING_MAX_DELAY_MILLIS) * (0.75 + Math.random() * 0.5), room)
      debug('connect-retry', { reason: 'cluster-waking', attempt, inMs: wait })
      await new Promise((resolve) => setTimeout(resolve, wait))
      delay *= 2
    }
  }

  #onEvent(kind, value) {
    if (kind === 'notice') {
      this.emit('notice', new NoticeMessage(value))
      return
    }
    // The connection ended: by end(), or on its own (then it is an error, as in pg).
    const wasQueryable = this._queryable
    this._queryable = false
    if (this._ending || this.#ended) return
    this.#ended = true
    if (wasQueryable && value.code !== 'CLIENT_CLOSED' && this.listenerCount('error') > 0) {
      const err = fromNative(value.code === 'CONNECTION_LOST' ? { ...value, message: `Connection terminated unexpectedly: ${value.message}` } : value)
      this.emit('error', err)
    } else if (wasQueryable && value.code === 'CLIENT_CLOSED' && this.listenerCount('error') > 0) {
      this.emit('error', new DsqlTunnelError('CONNECTION_LOST', 'Connection terminated unexpectedly: the server closed the connection'))
    }
    this.emit('end')
  }

  /**
   * Runs a query: `query(text, [values], [callback])` or `query({ text, values, rowMode, types,
   * name }, [callback])`. Without a callback, returns a promise of the result (pg's shape; an
   * array of results for text with several statements).
   */
  query(config, values, callback) {
    if (config instanceof Query) {
      if (typeof values === 'function' && typeof config.callback !== 'function') config.callback = values
      return config._settle(this.#run(normalize(config, typeof values === 'function' ? undefined : values)))
    }
    if (config !== null && typeof config === 'object' && typeof config.submit === 'function') {
      return this.#submit(config, values)
    }
    let q
    try {
      q = normalize(config, values, callback)
    } catch (err) {
      if (typeof values === 'function' || typeof callback === 'function') {
        process.nextTick(() => (typeof callback === 'function' ? callback : values)(err))
        return undefined
      }
      return this.#promise(Promise.reject(err))
    }
    const options = arguments.length >= 3 && callback !== null && typeof callback === 'object' ? callback : undefined
    const p = this.#run(q, options)
    if (typeof q.callback === 'function') {
      const cb = q.callback
      p.then((r) => cb(null, r), (err) => cb(err))
      return undefined
    }
    return this.#promise(p)
  }

  // pg-cursor, pg-query-stream and other objects that drive pg's connection: one native stream.
  #submit(submittable, callback) {
    if (typeof callback === 'function' && !submittable.callback) submittable.callback = callback
    return runSubmittable(this, submittable, (text, values, batch, typesObject) => this.#openStream(text, values, batch, typesObject))
  }

  // One statement's rows as arrays, batch by batch: `{ next(), close() }` (see lib/submittable.js).
  #openStream(text, values, batch, typesObject) {
    let stream = null
    let fields = null
    let parsers = null
    const start = async () => {
      if (!this._connected) await this.#whenConnected()
      if (typeof text !== 'string') throw invalidArgument('the query text must be a string')
      if (!text.isWellFormed()) throw loneSurrogate()
      this.#wantText(typesObject)
      stream = this.#native.stream(text, values ? encodeParams(values) : [], batch)
      if (stream === null) throw invalidArgument('a cursor runs one statement; this text has several')
    }
    let started = null
    return {
      next: async () => {
        started ??= start()
        await started
        const piece = await stream.next()
        if (isNativeError(piece)) throw fromNative(piece)
        const out = { done: piece.done, command: piece.command, rowCount: piece.rowCount }
        if (piece.fields) out.fields = fields = toFields(piece.fields)
        if (piece.chunk) {
          if (parsers === null) parsers = parsersFor(fields, piece.chunk.columns.map((c) => c.kind), typesObject) ?? false
          out.rows = []
          appendRows(fields, piece.chunk, true, out.rows, parsers || null)
        }
        return out
      },
      close: async () => {
        if (stream !== null) await stream.close()
      },
    }
  }

  async #whenConnected() {
    if (this._connected) return
    if (this._ending || this.#ended) throw new DsqlTunnelError('CLIENT_CLOSED', 'Client was closed and is not queryable')
    if (!this.#connecting) {
      // pg queues queries issued before connect(); they run once it has connected. Bounded
      // here, so a client nobody connects fails its queries instead of holding them forever.
      if (this.#ready === null) {
        let resolve
        const promise = new Promise((r) => (resolve = r))
        this.#ready = { promise, resolve }
      }
      const wait = Number(this.#config.connectionTimeoutMillis) > 0 ? Number(this.#config.connectionTimeoutMillis) : 10_000
      let timer
      const late = new Promise((resolve) => (timer = setTimeout(resolve, wait)))
      const woken = await Promise.race([this.#ready.promise, late])
      clearTimeout(timer)
      if (woken === undefined) {
        throw new DsqlTunnelError('NOT_CONNECTED', `the query waited ${wait} ms for connect(), which was not called: call client.connect() (or use a Pool)`)
      }
      if (woken.closed) throw new DsqlTunnelError('CLIENT_CLOSED', 'Client was closed and is not queryable')
      await woken.attempt
      return
    }
    await this.#connecting
  }

  async #run(q, options) {
    if (!this._connected) await this.#whenConnected()
    let text = q.text
    let rowMode = options?.rowMode ?? q.rowMode
    if (typeof q.name === 'string' && q.name !== '') {
      this.#names ??= new Map()
      const known = this.#names.get(q.name)
      if (text === undefined) text = known
      else if (known !== undefined && known !== text) throw preparedMismatch(q.name)
      else this.#names.set(q.name, text)
    }
    if (typeof text !== 'string') throw invalidArgument('the query text must be a string')
    if (!text.isWellFormed()) throw loneSurrogate()
    const values = q.values
    if (values !== undefined && values !== null && !Array.isArray(values)) throw invalidArgument('values must be an array')
    if (rowMode !== undefined && rowMode !== null && rowMode !== 'array') throw invalidArgument("rowMode must be 'array' or left out")
    const timeout = options?.timeoutMillis ?? (typeof q.query_timeout === 'number' ? q.query_timeout : this.#queryTimeout)
    if (typeof timeout !== 'number' || !(timeout >= 0)) throw invalidArgument('timeoutMillis must be a number of milliseconds')
    const signal = options?.signal ?? q.signal
    if (signal !== undefined && !(signal instanceof AbortSignal)) throw invalidArgument('signal must be an AbortSignal')
    if (signal?.aborted) throw abortError(signal)
    const typesObject = q.types ?? this._types
    this.#wantText(typesObject)
    const params = values ? encodeParams(values) : []
    this.#checkSize(text, params)
    const arrayMode = rowMode === 'array'
    // The request is written here, synchronously, so pipelined queries keep their order.
    const inbox = this.#inbox
    const id = ++inbox.lastId
    const failed = this.#native.query(text, params, CHUNK_ROWS, id, q.queryMode === 'extended')
    if (!this.#flushQueued) {
      // Requests queued in this tick go out together, written from this thread.
      this.#flushQueued = true
      queueMicrotask(this.#flush)
    }
    const pending = failed ? Promise.resolve(failed) : expect(inbox, id).then((r) => (isNativeError(r) ? r : this.#finish(r, arrayMode, typesObject)))
    const previous = this.#last
    const mark = { done: false, wake: null }
    this.#last = mark
    this.#inflight++
    try {
      const r = timeout > 0 || signal ? await this.#cancellable(pending, timeout, signal) : await pending
      // Results may complete in any order; settle in the order the queries were sent.
      if (previous !== null && !previous.done) await new Promise((resolve) => (previous.wake = resolve))
      if (isNativeError(r)) throw fromNative(r)
      return r
    } finally {
      mark.done = true
      if (mark.wake !== null) mark.wake()
      // pg's `drain`: every query sent so far has settled.
      if (--this.#inflight === 0 && this.listenerCount('drain') > 0) queueMicrotask(() => this.#inflight === 0 && this.emit('drain'))
    }
  }

  // Refuses a request whose largest protocol message (Parse holds the text, Bind the values) would
  // exceed `maxMessageBytes`: DSQL's front door would close the connection with the outcome unknown.
  #checkSize(text, params) {
    const limit = this.#config.maxMessageBytes ?? DSQL_MAX_MESSAGE_BYTES
    if (!(limit > 0) || limit === Infinity) return
    let units = text.length
    for (const p of params) if (p !== null) units += p.length + 4
    // UTF-8 takes at most 3 bytes per UTF-16 unit: most requests need no exact count.
    if (units * 3 + MESSAGE_OVERHEAD <= limit) return
    const parse = Buffer.byteLength(text) + MESSAGE_OVERHEAD
    let bind = MESSAGE_OVERHEAD
    for (const p of params) bind += 4 + (p === null ? 0 : typeof p === 'string' ? Buffer.byteLength(p) : p.length)
    const size = Math.max(parse, bind)
    if (size <= limit) return
    const err = new DsqlTunnelError('MESSAGE_TOO_LARGE', `the request would need a ${size}-byte protocol message, over the limit of ${limit} bytes (DSQL closes the connection on messages over 10 MiB, leaving the outcome unknown); nothing was sent: split the data over several statements`)
    err.size = size
    err.limit = limit
    throw err
  }

  // Types with a custom parser must reach JavaScript as the server's text: tell the addon before
  // the query is sent. The set only grows, so statements are not re-prepared back and forth.
  #wantText(typesObject) {
    let oids
    if (typesObject === this._types && this._types._types === types) {
      if (this.#textVersion === currentVersion()) return
      this.#textVersion = currentVersion()
    }
    oids = textOidsFor(typesObject)
    let grew = false
    for (const oid of oids) {
      if (!this.#textOids.has(oid)) {
        this.#textOids.add(oid)
        grew = true
      }
    }
    if (grew) this.#native.setTextTypes(Uint32Array.from(this.#textOids))
  }

  // Rows of the first batch, and of the rest when there is more (awaiting each batch lets the
  // event loop run between them); or one result per statement for text with several.
  #finish(reply, arrayMode, typesObject) {
    if (reply.results) return this.#many(reply.results, arrayMode, typesObject)
    const { shape } = reply
    const fields = shape.fields
    const parsers = this.#parsersOf(shape, typesObject)
    const result = newResult(shape.command, fields, arrayMode, typesObject)
    appendShapeRows(shape, reply.columns, reply.n, arrayMode, result.rows, parsers)
    if (!reply.more) return finishResult(result, reply.rowCount)
    const more = async () => {
      for (;;) {
        const piece = await this.#native.more(reply.more)
        if (isNativeError(piece)) return piece
        if (piece.chunk) appendRows(fields, piece.chunk, arrayMode, result.rows, parsers)
        if (piece.done) return finishResult(result, piece.rowCount ?? null)
      }
    }
    return more()
  }

  // Which columns need a parser call: asked of the types once per statement and parser change
  // for the client's own types, every time for a query's own `types` object.
  #parsersOf(shape, typesObject) {
    if (typesObject !== this._types) return parsersFor(shape.fields, shape.kinds, typesObject)
    const version = currentVersion()
    if (shape.parsersVersion !== version || shape.parsersOf !== typesObject) {
      shape.parsers = parsersFor(shape.fields, shape.kinds, typesObject)
      shape.parsersVersion = version
      shape.parsersOf = typesObject
    }
    return shape.parsers
  }

  // Text with several statements: one result per statement, built a chunk at a time.
  async #many(raws, arrayMode, typesObject) {
    let yieldNext = false
    const out = []
    for (const raw of raws) {
      const fields = toFields(raw.fields)
      const kinds = raw.chunks[0]?.columns.map((c) => c.kind) ?? []
      const parsers = parsersFor(fields, kinds, typesObject)
      const result = newResult(raw.command ?? null, fields, arrayMode, typesObject)
      for (const chunk of raw.chunks) {
        if (yieldNext) await new Promise((resolve) => setImmediate(resolve))
        appendRows(fields, chunk, arrayMode, result.rows, parsers)
        yieldNext = true
      }
      out.push(finishResult(result, raw.rowCount ?? null))
    }
    return out.length === 1 ? out[0] : out
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
    const client = this
    return (async function* rows() {
      if (typeof text !== 'string') throw invalidArgument('the query text must be a string')
      if (!text.isWellFormed()) throw loneSurrogate()
      if (values !== undefined && values !== null && !Array.isArray(values)) throw invalidArgument('values must be an array')
      if (!Number.isInteger(batchSize) || batchSize < 1) throw invalidArgument('batchSize must be a whole number of at least 1')
      if (rowMode !== undefined && rowMode !== 'array') throw invalidArgument("rowMode must be 'array' or left out")
      if (!client._connected) await client.#whenConnected()
      const typesObject = options?.types ?? client._types
      client.#wantText(typesObject)
      const params = values ? encodeParams(values) : []
      client.#checkSize(text, params)
      const stream = native.stream(text, params, batchSize)
      if (stream === null) throw invalidArgument('stream() runs one statement; this text has several')
      let fields = []
      let parsers = null
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
            if (piece.fields) parsers = parsersFor(fields, piece.chunk.columns.map((c) => c.kind), typesObject)
            const batch = []
            appendRows(fields, piece.chunk, rowMode === 'array', batch, parsers)
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
   * Runs `fn` in a transaction; on an optimistic-concurrency conflict (40001, OC000, OC001, also
   * on an error's `cause` chain) or DSQL's `XX000` "server unavailable" the whole callback runs
   * again, so it must be idempotent.
   */
  async transaction(fn, options) {
    if (typeof fn !== 'function') throw invalidArgument('transaction needs a function')
    checkTransactionOptions(options)
    return runTransaction(this, fn, options)
  }

  /**
   * pg's `getTransactionStatus()`: the status of the last ReadyForQuery the server sent, `'I'`
   * (idle), `'T'` (in a transaction) or `'E'` (in a failed transaction); `null` before connecting
   * and after the end.
   */
  getTransactionStatus() {
    return this.#native.transactionStatus ?? null
  }

  /** Whether the connection is open (its socket alive). */
  get isOpen() {
    return this.#native.isOpen
  }

  /** Closes the connection; queries still pending reject with `CLIENT_CLOSED`. Idempotent. With
   * a callback, calls it when closed; otherwise returns a promise. */
  end(callback) {
    this._ending = true
    this.#endPromise ??= (async () => {
      if (this.#info && this.#native.isOpen) debug('end', { host: this.#info.host })
      this.#ready?.resolve({ closed: true })
      await this.#native.end()
      this._queryable = false
      if (this._connected && !this.#ended) {
        this.#ended = true
        this.emit('end')
      }
    })()
    if (typeof callback === 'function') {
      this.#endPromise.then(() => callback(), callback)
      return undefined
    }
    return this.#promise(this.#endPromise)
  }

  /** Keeps (pg) or lets the process exit while idle: connections never hold the event loop. */
  ref() {}
  unref() {}

  escapeIdentifier(str) {
    return escapeIdentifier(str)
  }

  escapeLiteral(str) {
    return escapeLiteral(str)
  }

  [inspect.custom]() {
    const i = this.#info
    return i
      ? `Client { host: ${i.host}, hostaddr: ${i.hostaddr ?? '-'}, port: ${i.port}, user: ${i.user}, database: ${i.database}, open: ${this.#native.isOpen} }`
      : 'Client { not connected }'
  }

  toJSON() {
    return this.#info ? { host: this.#info.host, port: this.#info.port, user: this.#info.user, database: this.#info.database } : {}
  }
}

function newResult(command, fields, arrayMode, typesObject) {
  const r = new Result(arrayMode ? 'array' : undefined, typesObject)
  r.command = command
  r.fields = fields
  return r
}

function finishResult(r, rowCount) {
  r.rowCount = rowCount
  // pg reads the OID from `INSERT oid rows`; PostgreSQL 12+ always sends 0.
  if (r.command === 'INSERT') r.oid = 0
  return r
}

// Node-API would turn it into U+FFFD on the way to UTF-8: the server would run other text.
const loneSurrogate = () => invalidArgument('the query text has a lone UTF-16 surrogate (half of a surrogate pair), which has no UTF-8 form: it would reach the server as U+FFFD, so the query was not sent')

function abortError(signal, serverError) {
  const err = new DsqlTunnelError('ABORT_ERR', 'the query was aborted', { cause: signal.reason })
  err.name = 'AbortError'
  if (serverError) err.sqlstate = serverError.code
  return err
}

/** The settings a connection would use and where each came from (no secrets). */
function resolveConfig(config) {
  const c = typeof config === 'string' ? { connectionString: config } : config ?? {}
  const r = binding.resolveConfig(optionStrings(c), c.connectionString ?? null, readEnvironment())
  if (isNativeError(r)) throw fromNative(r)
  return r
}

Client.Query = Query

module.exports = { Client, Connection, NoticeMessage, resolveConfig, readEnvironment, resolveCredentials }
