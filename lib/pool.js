'use strict'
// A pool with node-postgres's (pg-pool's) surface: `connect([cb])` hands out a Client with
// `release()`, `query([cb])`, `end([cb])`, its events and counts, `options` with the password
// hidden, subclassable with `this.Client`. `pool.query` spreads queries over connections and,
// once `max` are open, pipelines onto the least busy one; `pool.connect()` hands a connection out
// exclusively. Every new connection gets its own password/token (the Client asks for one).

const EventEmitter = require('node:events')
const { debug } = require('./debug')
const { DsqlTunnelError, invalidArgument, invalidConfig } = require('./errors')

const END_GRACE_MILLIS = 5000
// Checkouts cost no extra round trip: a FIN or FATAL read while idle marks a connection dead
// before it is picked, and a query that met the session's end as its first reply reruns. Only
// when the event loop itself stood still this long (a frozen Lambda: nothing was read meanwhile)
// is an idle connection checked with a round trip first.
const FROZEN_MILLIS = 5000
const HEARTBEAT_MILLIS = 1000
// pool.query runs a statement that certainly did not run (mayHaveRun false) at most this often.
const MAX_RUNS = 5
// DSQL's XX000 "server unavailable" is retryable on the same connection: this many reruns.
const UNAVAILABLE_RERUNS = 3
// Connection failures worth another try (with backoff) while an acquirer still has time.
const TRANSIENT = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ECONNABORTED', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EPIPE',
  'CONNECTION_LOST', 'CONNECT_TIMEOUT', 'TLS_HANDSHAKE_FAILED', 'TUNNEL_LOST', 'SSH_CONNECT_FAILED', '53300', '53400', '57P01', '57P02', '57P03',
  '08000', '08001', '08004', '08006',
])
// DSQL's admission control: too many connections, connection rate exceeded.
const ADMISSION = new Set(['53300', '53400'])

// Errors after which the connection is gone: the socket, or the server ending the session.
const endsSession = (err) => err?.code === 'CONNECTION_LOST' || err?.severity === 'FATAL' || err?.severity === 'PANIC' || /^(57P0[123]|08...)$/.test(err?.code ?? '')

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const jittered = (ms) => ms * (0.75 + Math.random() * 0.5)
const poolError = (code, message, cause) => new DsqlTunnelError(code, message, cause ? { cause } : undefined)
const ended = () => poolError('POOL_ENDED', 'Cannot use a pool after calling end on the pool: create a new pool to run more queries')

/** Defines `name` on `target` as a non-enumerable accessor: readable and writable, never shown. */
function hideSecret(target, name, value) {
  let held = value
  Object.defineProperty(target, name, { configurable: true, enumerable: false, get: () => held, set: (v) => (held = v) })
}

/** `{ callback, result }`: the callback given, or one settling the returned promise. */
function promised(callback, P = Promise) {
  if (typeof callback === 'function') return { callback, result: undefined }
  let resolve, reject
  const result = new P((res, rej) => ((resolve = res), (reject = rej)))
  return { callback: (err, value) => (err ? reject(err) : resolve(value)), result }
}

function makePool(DefaultClient) {
  class Pool extends EventEmitter {
    #entries = new Map()
    #creating = 0
    #waiters = []
    #ending = null
    #backoffUntil = 0
    #backoff = 0
    // Counts escalations of the backoff: a failure escalates it only if its attempt began after the
    // last escalation, so N connections refused together are one round, not N doublings.
    #backoffRound = 0
    // When the event loop last ran the heartbeat; a gap means it stood still (see FROZEN_MILLIS).
    #heartbeat = null
    #beatAt = 0

    /**
     * @param {object | string} [options] Client options plus `max` (10), `min` (0),
     *   `idleTimeoutMillis` (600000), `maxLifetimeSeconds` (3300), `connectionTimeoutMillis`
     *   (10000: bounds waiting for a connection), `maxUses`, `onConnect`, `Client`.
     * @param {Function} [Client] the class of the connections (pg-pool's second argument)
     */
    constructor(options, Client) {
      super()
      const given = typeof options === 'string' ? { connectionString: options } : options ?? {}
      this.options = Object.assign({}, given)
      // pg-pool's `Promise` option: the class of the promises returned when no callback is given.
      this.Promise = typeof given.Promise === 'function' ? given.Promise : Promise
      // Hidden so they never show up in logs, stack traces or console.log(pool.options), not
      // even with showHidden: accessors, whose values inspect() does not read.
      if ('password' in given) hideSecret(this.options, 'password', given.password)
      if ('credentials' in given) hideSecret(this.options, 'credentials', given.credentials)
      if (given.ssl && typeof given.ssl === 'object' && given.ssl.key) {
        this.options.ssl = { ...given.ssl }
        hideSecret(this.options.ssl, 'key', given.ssl.key)
      }
      const o = this.options
      o.max = o.max || o.poolSize || 10
      o.min = o.min || 0
      o.maxUses = o.maxUses || Infinity
      o.allowExitOnIdle = o.allowExitOnIdle || false
      o.idleTimeoutMillis ??= 600_000
      o.maxLifetimeSeconds ??= 3300
      o.connectionTimeoutMillis ??= 10_000
      this.log = o.log || function () {}
      this.Client = o.Client || Client || DefaultClient
      this.Promise = o.Promise || Promise
      this.ending = false
      this.ended = false
    }

    get totalCount() {
      return this.#entries.size + this.#creating
    }
    get idleCount() {
      let n = 0
      for (const e of this.#entries.values()) if (e.inflight === 0 && !e.exclusive) n++
      return n
    }
    get waitingCount() {
      return this.#waiters.length
    }
    get expiredCount() {
      let n = 0
      for (const e of this.#entries.values()) if (e.retired) n++
      return n
    }

    #check() {
      const o = this.options
      const bad = (name, what) => invalidConfig(name, `option ${name} must be ${what}`)
      if (!Number.isInteger(o.max) || o.max < 1) throw bad('max', 'a whole number of at least 1')
      if (!(o.idleTimeoutMillis >= 0)) throw bad('idleTimeoutMillis', 'a number of milliseconds (0: never)')
      if (!(o.maxLifetimeSeconds >= 0)) throw bad('maxLifetimeSeconds', 'a number of seconds (0: no limit)')
      if (!(o.connectionTimeoutMillis >= 0)) throw bad('connectionTimeoutMillis', 'a number of milliseconds (0: wait forever)')
    }

    /**
     * Acquire, run, release: `query(text, [values], [callback])`, or a query config. Without a
     * callback, returns a promise of the result.
     */
    query(text, values, callback) {
      if (typeof text === 'function') {
        const r = promised(text, this.Promise)
        setImmediate(() => r.callback(invalidArgument('Passing a function as the first parameter to pool.query is not supported')))
        return r.result
      }
      let options
      if (typeof values === 'function') {
        callback = values
        values = undefined
      } else if (callback !== null && typeof callback === 'object') {
        options = callback
        callback = undefined
      }
      if (text !== null && typeof text === 'object' && typeof text.callback === 'function' && !callback) callback = text.callback
      const r = promised(callback, this.Promise)
      this.#query(text, values, options).then((res) => r.callback(undefined, res), (err) => r.callback(err))
      return r.result
    }

    async #query(text, values, options) {
      // A subclass that overrides connect() decides how connections are handed out.
      if (this.connect !== Pool.prototype.connect) {
        const client = await this.connect()
        try {
          const res = await client.query(text, values, options)
          client.release()
          return res
        } catch (err) {
          client.release(!client.isOpen)
          throw err
        }
      }
      for (let run = 1; ; run++) {
        const entry = await this.#acquire(false)
        try {
          return await this.#run(entry, text, values, options)
        } catch (err) {
          // The session ended before the statement ran (it was written alone and the end was its
          // first reply, or it never left): run it on another connection. Anything that may
          // have run is the caller's to decide.
          const notRun = err.mayHaveRun === false || (err.code === 'CONNECTION_LOST' && err.sent === false)
          if (!notRun || run >= MAX_RUNS || this.#ending) throw err
          entry.dead = true
          debug('pool-rerun', { code: err.code, run })
        } finally {
          this.#releaseShared(entry)
        }
        if (run > 1) await sleep(jittered(Math.min(1000, 10 * 2 ** (run - 2))))
      }
    }

    // One autocommit statement on a shared connection; XX000 reruns it there (bounded).
    async #run(entry, text, values, options) {
      for (let rerun = 0; ; rerun++) {
        try {
          return await entry.client.query(text, values, options)
        } catch (err) {
          // A query that saw its connection end has told the caller; the pool just drops it.
          if (endsSession(err)) entry.dead = true
          if (err.code !== 'XX000' || rerun >= UNAVAILABLE_RERUNS || !entry.client._queryable) throw err
          const wait = jittered(Math.min(100, 2 ** rerun * 5))
          debug('pool-rerun', { code: err.code, rerun: rerun + 1, inMs: wait })
          await sleep(wait)
        }
      }
    }

    /** `client.stream` on a checked-out connection, released when the iteration ends. */
    stream(text, values, options) {
      const pool = this
      return (async function* rows() {
        const client = await pool.connect()
        try {
          yield* client.stream(text, values, options)
        } finally {
          client.release(!client.isOpen)
        }
      })()
    }

    /**
     * Checks a connection out exclusively (transactions, session state): a Client with
     * `release([err | true])`. With a callback, calls it with `(err, client, release)`.
     */
    connect(callback) {
      const r = promised(callback, this.Promise)
      this.#connect().then(
        (client) => (callback ? r.callback(undefined, client, client.release) : r.callback(undefined, client)),
        (err) => (callback ? r.callback(err, undefined, () => {}) : r.callback(err)),
      )
      return r.result
    }

    async #connect() {
      const entry = await this.#acquire(true)
      const client = entry.client
      let released = false
      client.release = (err) => {
        if (released) throw poolError('CLIENT_RELEASED', 'Release called on client which has already been released to the pool.')
        released = true
        this.#releaseExclusive(entry, err)
      }
      return client
    }

    /** `client.transaction` on a checked-out connection, released afterwards. */
    async transaction(fn, options) {
      if (typeof fn !== 'function') throw invalidArgument('transaction needs a function')
      const client = await this.connect()
      try {
        return await client.transaction(fn, options)
      } finally {
        client.release(!client.isOpen)
      }
    }

    /** Stops new work, lets work in flight finish (up to 5 s), closes every connection. */
    end(callback) {
      this.ending = true
      this.#ending ??= (async () => {
        clearInterval(this.#heartbeat)
        for (const w of this.#waiters.splice(0)) {
          clearTimeout(w.timer)
          w.reject(ended())
        }
        const deadline = Date.now() + END_GRACE_MILLIS
        while (Date.now() < deadline && (this.#creating > 0 || [...this.#entries.values()].some((e) => e.inflight > 0 || e.exclusive))) {
          await sleep(10)
        }
        await Promise.all([...this.#entries.values()].map((e) => this.#close(e)))
        this.ended = true
      })()
      if (typeof callback === 'function') {
        this.#ending.then(() => callback(), callback)
        return undefined
      }
      const P = this.Promise
      return P === Promise ? this.#ending : new P((resolve, reject) => this.#ending.then(resolve, reject))
    }

    async #acquire(exclusive) {
      if (this.#ending) throw ended()
      this.#check()
      const timeout = this.options.connectionTimeoutMillis
      const deadline = timeout > 0 ? Date.now() + timeout : 0
      // I/O can run before timers as the process thaws: notice the freeze here too.
      this.#beat()
      const entry = this.#pick(exclusive)
      if (entry) {
        const check = entry.suspect && entry.inflight === 0
        entry.suspect = false
        this.#take(entry, exclusive)
        return check ? this.#validate(entry, exclusive) : entry
      }
      if (this.totalCount < this.options.max) return this.#create(deadline, exclusive)
      return new Promise((resolve, reject) => {
        const waiter = { exclusive, resolve, reject, deadline, timer: null }
        if (deadline) {
          waiter.timer = setTimeout(() => {
            this.#waiters.splice(this.#waiters.indexOf(waiter), 1)
            reject(poolError('POOL_TIMEOUT', `timeout exceeded when trying to connect: no connection became free within ${timeout} ms (max ${this.options.max}, all busy): raise max or connectionTimeoutMillis`))
          }, deadline - Date.now())
        }
        this.#waiters.push(waiter)
      })
    }

    async #validate(entry, exclusive) {
      try {
        await entry.client.query('select 1')
        return entry
      } catch {
        debug('pool-close', { reason: 'closed-while-frozen' })
        entry.dead = true
        if (exclusive) entry.exclusive = false
        else entry.inflight--
        this.#close(entry)
        return this.#acquire(exclusive)
      }
    }

    // An open connection to use: idle first; busy ones (pipelining) only for shared use at max.
    // Only the one chosen is asked whether its socket is alive (a call into the addon).
    #pick(exclusive) {
      const now = Date.now()
      for (;;) {
        let best = null
        for (const e of this.#entries.values()) {
          // Timers can fire late (a thawed Lambda runs I/O callbacks first): check the deadline too.
          if (!e.retired && now >= e.expiresAt) this.#retire(e)
          if (e.retired || e.exclusive || e.dead) continue
          if (e.inflight === 0) {
            best = e
            break
          }
          if (!exclusive && (best === null || e.inflight < best.inflight)) best = e
        }
        if (best === null || (best.inflight > 0 && this.totalCount < this.options.max)) return null
        if (best.client.isOpen) return best
        if (best.inflight === 0) this.#close(best)
        else best.dead = true
      }
    }

    // After the event loop stood still, every idle connection is checked once before use: while
    // the process was frozen nothing was read, so one the server closed still looks open.
    #beat() {
      const now = Date.now()
      if (this.#beatAt > 0 && now - this.#beatAt > FROZEN_MILLIS) {
        for (const e of this.#entries.values()) if (e.inflight === 0 && !e.exclusive) e.suspect = true
      }
      this.#beatAt = now
    }

    #take(entry, exclusive) {
      if (exclusive) entry.exclusive = true
      else entry.inflight++
      entry.uses++
      this.emit('acquire', entry.client)
      return entry
    }

    #newClient(remaining) {
      const options = { ...this.options }
      if ('password' in this.options) options.password = this.options.password
      if ('credentials' in this.options) options.credentials = this.options.credentials
      if (remaining) options.connectionTimeoutMillis = remaining
      return new this.Client(options)
    }

    // Opens a connection and takes it for the caller in the same step: anything in between (the
    // dispatch queued below) could otherwise hand the new connection to someone else as well.
    async #create(deadline, exclusive) {
      this.#creating++
      try {
        for (let attempt = 1; ; attempt++) {
          const wait = this.#backoffUntil - Date.now()
          if (wait > 0) await sleep(wait)
          // A query accepted before end() gets its connection; retries stop once the pool ends.
          if (this.#ending && attempt > 1) throw ended()
          const remaining = deadline ? deadline - Date.now() : 0
          if (deadline && remaining <= 0) throw poolError('POOL_TIMEOUT', `timeout exceeded when trying to connect: could not open a connection within ${this.options.connectionTimeoutMillis} ms`)
          const client = this.#newClient(remaining)
          // The server's clock for its connection limit starts before ours would after connecting.
          const startedAt = Date.now()
          const round = this.#backoffRound
          try {
            await client.connect()
            if (typeof this.options.onConnect === 'function') {
              try {
                await this.options.onConnect(client)
              } catch (hookErr) {
                await client.end().catch(() => {})
                throw Object.assign(hookErr, { fromHook: true })
              }
            }
          } catch (err) {
            if (err.fromHook || !TRANSIENT.has(err.code)) throw err
            // Back off before any connection attempt of this pool, not only this one.
            if (round === this.#backoffRound) {
              this.#backoffRound++
              this.#backoff = Math.min(5000, this.#backoff ? this.#backoff * 2 : ADMISSION.has(err.code) ? 100 : 25)
              this.#backoffUntil = Date.now() + jittered(this.#backoff)
            }
            if (deadline && this.#backoffUntil >= deadline) throw err
            debug('pool-retry', { code: err.code, inMs: Math.max(0, this.#backoffUntil - Date.now()) })
            continue
          }
          this.#backoff = 0
          const entry = this.#track(client, startedAt)
          this.emit('connect', client)
          return this.#take(entry, exclusive)
        }
      } finally {
        this.#creating--
        queueMicrotask(() => this.#dispatch())
      }
    }

    #track(client, startedAt) {
      debug('pool-open', { total: this.#entries.size + 1, max: this.options.max })
      const entry = {
        client, inflight: 0, exclusive: false, retired: false, dead: false, suspect: false, uses: 0,
        idleTimer: null, lifeTimer: null, idleSince: Date.now(), expiresAt: Infinity, onError: null,
      }
      // A connection that fails while nobody holds it: dropped, and told as the pool's `error`.
      entry.onError = (err) => {
        entry.dead = true
        if (entry.inflight === 0 && !entry.exclusive) {
          err.client = client
          this.#close(entry)
          if (this.listenerCount('error') > 0) this.emit('error', err, client)
        }
      }
      client.on('error', entry.onError)
      if (this.#heartbeat === null) {
        this.#beatAt = Date.now()
        this.#heartbeat = setInterval(() => this.#beat(), HEARTBEAT_MILLIS)
        this.#heartbeat.unref()
      }
      const lifetime = this.options.maxLifetimeSeconds * 1000
      if (lifetime > 0) {
        // Up to 10 % early, so connections opened together are not all replaced together.
        entry.expiresAt = startedAt + lifetime * (1 - Math.random() * 0.1)
        entry.lifeTimer = setTimeout(() => this.#retire(entry), Math.max(0, entry.expiresAt - Date.now()))
        entry.lifeTimer.unref()
      }
      this.#entries.set(client, entry)
      return entry
    }

    #retire(entry) {
      debug('pool-recycle', { reason: 'lifetime', inUse: entry.inflight > 0 || entry.exclusive })
      entry.retired = true
      if (entry.inflight === 0 && !entry.exclusive) this.#close(entry)
    }

    #idle(entry) {
      // A connection that died while idle is found (and closed) by #pick before anyone gets it.
      if (entry.retired || entry.dead || this.#ending || entry.uses >= this.options.maxUses) return this.#close(entry)
      entry.idleSince = Date.now()
      // One timer per idle spell at most, not one per query: it re-arms itself while the
      // connection keeps being used.
      if (this.options.idleTimeoutMillis > 0 && entry.idleTimer === null) this.#armIdle(entry, this.options.idleTimeoutMillis)
      this.#dispatch()
    }

    #armIdle(entry, after) {
      entry.idleTimer = setTimeout(() => {
        entry.idleTimer = null
        if (entry.inflight !== 0 || entry.exclusive || !this.#entries.has(entry.client)) return
        const left = entry.idleSince + this.options.idleTimeoutMillis - Date.now()
        if (left > 0) return this.#armIdle(entry, left)
        if (this.#entries.size <= this.options.min) return
        debug('pool-close', { reason: 'idle' })
        this.#close(entry)
      }, after)
      entry.idleTimer.unref()
    }

    #releaseShared(entry) {
      entry.inflight--
      this.emit('release', undefined, entry.client)
      if (entry.inflight === 0) this.#idle(entry)
      else this.#dispatch()
    }

    #releaseExclusive(entry, err) {
      entry.exclusive = false
      this.emit('release', err, entry.client)
      if (err || !entry.client._queryable) this.#close(entry)
      else this.#idle(entry)
    }

    #close(entry) {
      if (!this.#entries.delete(entry.client)) return Promise.resolve()
      clearTimeout(entry.idleTimer)
      clearTimeout(entry.lifeTimer)
      queueMicrotask(() => this.#dispatch())
      const client = entry.client
      return client.end().then(() => {
        client.removeListener('error', entry.onError)
        this.emit('remove', client)
      })
    }

    #dispatch() {
      while (this.#waiters.length > 0 && !this.#ending) {
        const w = this.#waiters[0]
        const entry = this.#pick(w.exclusive)
        if (entry) {
          this.#waiters.shift()
          clearTimeout(w.timer)
          w.resolve(this.#take(entry, w.exclusive))
        } else if (this.totalCount < this.options.max) {
          this.#waiters.shift()
          clearTimeout(w.timer)
          this.#create(w.deadline, w.exclusive).then(w.resolve, w.reject)
        } else {
          return
        }
      }
    }
  }

  return Pool
}

module.exports = { makePool, hideSecret }
