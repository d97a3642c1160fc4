'use strict'
// A pool with node-postgres's names and shapes. `pool.query` spreads queries over connections and,
// once `max` are open, pipelines onto the least busy one; `pool.connect()` hands out a connection
// exclusively. Every new connection gets its own password/token (the Client asks for one).

const { debug } = require('./debug')

const END_GRACE_MILLIS = 5000
// A connection idle longer than this is checked with a round trip before it is handed out: the
// server (or DSQL's front door, or a frozen Lambda's network) may have closed it meanwhile.
const VALIDATE_AFTER_IDLE_MILLIS = 1000
// Connection failures worth another try (with backoff) while an acquirer still has time.
const TRANSIENT = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ECONNABORTED', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EPIPE',
  'CONNECTION_LOST', 'CONNECT_TIMEOUT', 'TLS_HANDSHAKE_FAILED', '53300', '53400', '57P01', '57P02', '57P03',
  '08000', '08001', '08004', '08006',
])
// DSQL's admission control: too many connections, connection rate exceeded.
const ADMISSION = new Set(['53300', '53400'])

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const jittered = (ms) => ms * (0.75 + Math.random() * 0.5)

function makePool({ Client, DsqlTunnelError, invalidArgument, invalidConfig }) {
  const poolError = (code, message, cause) => new DsqlTunnelError(code, message, cause ? { cause } : undefined)
  const ended = () => poolError('POOL_ENDED', 'the pool was ended with end(): create a new pool to run more queries')

  /** A connection checked out with `pool.connect()`; give it back with `release()`. */
  class PoolClient {
    #entry
    #release
    constructor(entry, release) {
      this.#entry = entry
      this.#release = release
    }
    #client() {
      if (!this.#entry) throw poolError('CLIENT_RELEASED', 'this client was released to the pool: check out another with pool.connect()')
      return this.#entry.client
    }
    async query(text, values, options) {
      return this.#client().query(text, values, options)
    }
    async transaction(fn, options) {
      return this.#client().transaction(fn, options)
    }
    stream(text, values, options) {
      return this.#client().stream(text, values, options)
    }
    async cancel() {
      return this.#client().cancel()
    }
    get isOpen() {
      return this.#entry ? this.#entry.client.isOpen : false
    }
    /** Returns the connection to the pool; with an error (or `true`), closes it instead. */
    release(err) {
      if (!this.#entry) throw poolError('CLIENT_RELEASED', 'release() was called twice for the same client')
      const entry = this.#entry
      this.#entry = null
      this.#release(entry, Boolean(err))
    }
  }

  class Pool {
    #config
    #max
    #idleTimeout
    #lifetime
    #acquireTimeout
    #entries = new Set()
    #creating = 0
    #waiters = []
    #ending = null
    #backoffUntil = 0
    #backoff = 0
    // Counts escalations of the backoff: a failure escalates it only if its attempt began after the
    // last escalation, so N connections refused together are one round, not N doublings.
    #backoffRound = 0

    /**
     * @param {object | string} [config] Client options plus `max` (10), `idleTimeoutMillis` (600000),
     *   `maxLifetimeSeconds` (3300), `connectionTimeoutMillis` (10000: bounds waiting for a connection).
     */
    constructor(config) {
      config = typeof config === 'string' ? { connectionString: config } : config ?? {}
      this.#config = config
      this.#max = config.max ?? 10
      this.#idleTimeout = config.idleTimeoutMillis ?? 600_000
      this.#lifetime = (config.maxLifetimeSeconds ?? 3300) * 1000
      this.#acquireTimeout = config.connectionTimeoutMillis ?? 10_000
    }

    get totalCount() {
      return this.#entries.size + this.#creating
    }
    get idleCount() {
      let n = 0
      for (const e of this.#entries) if (e.inflight === 0 && !e.exclusive) n++
      return n
    }
    get waitingCount() {
      return this.#waiters.length
    }

    #check() {
      const bad = (name, what) => invalidConfig(name, `option ${name} must be ${what}`)
      if (!Number.isInteger(this.#max) || this.#max < 1) throw bad('max', 'a whole number of at least 1')
      if (!(this.#idleTimeout >= 0)) throw bad('idleTimeoutMillis', 'a number of milliseconds (0: never)')
      if (!(this.#lifetime >= 0)) throw bad('maxLifetimeSeconds', 'a number of seconds (0: no limit)')
      if (!(this.#acquireTimeout >= 0)) throw bad('connectionTimeoutMillis', 'a number of milliseconds (0: wait forever)')
    }

    /** Acquire, run, release. */
    async query(text, values, options) {
      for (let attempt = 1; ; attempt++) {
        const entry = await this.#acquire(false)
        try {
          return await entry.client.query(text, values, options)
        } catch (err) {
          // The connection was already gone and the query never left: run it on another.
          if (err.code !== 'CONNECTION_LOST' || err.sent !== false || attempt >= 3) throw err
        } finally {
          this.#releaseShared(entry)
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

    /** Checks a connection out exclusively (transactions, session state). */
    async connect() {
      const entry = await this.#acquire(true)
      return new PoolClient(entry, (e, discard) => this.#releaseExclusive(e, discard))
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
    end() {
      this.#ending ??= (async () => {
        for (const w of this.#waiters.splice(0)) {
          clearTimeout(w.timer)
          w.reject(ended())
        }
        const deadline = Date.now() + END_GRACE_MILLIS
        while (Date.now() < deadline && (this.#creating > 0 || [...this.#entries].some((e) => e.inflight > 0 || e.exclusive))) {
          await sleep(10)
        }
        await Promise.all([...this.#entries].map((e) => this.#close(e)))
      })()
      return this.#ending
    }

    async #acquire(exclusive) {
      if (this.#ending) throw ended()
      this.#check()
      const deadline = this.#acquireTimeout > 0 ? Date.now() + this.#acquireTimeout : 0
      const entry = this.#pick(exclusive)
      if (entry) {
        const stale = entry.inflight === 0 && Date.now() - entry.idleSince > VALIDATE_AFTER_IDLE_MILLIS
        this.#take(entry, exclusive)
        return stale ? this.#validate(entry, exclusive) : entry
      }
      if (this.totalCount < this.#max) return this.#create(deadline, exclusive)
      return new Promise((resolve, reject) => {
        const waiter = { exclusive, resolve, reject, deadline, timer: null }
        if (deadline) {
          waiter.timer = setTimeout(() => {
            this.#waiters.splice(this.#waiters.indexOf(waiter), 1)
            reject(poolError('POOL_TIMEOUT', `no connection became free within ${this.#acquireTimeout} ms (max ${this.#max}, all busy): raise max or connectionTimeoutMillis`))
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
        debug('pool-close', { reason: 'stale' })
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
        for (const e of this.#entries) {
          // Timers can fire late (a thawed Lambda runs I/O callbacks first): check the deadline too.
          if (!e.retired && now >= e.expiresAt) this.#retire(e)
          if (e.retired || e.exclusive || e.dead) continue
          if (e.inflight === 0) {
            best = e
            break
          }
          if (!exclusive && (best === null || e.inflight < best.inflight)) best = e
        }
        if (best === null || (best.inflight > 0 && this.totalCount < this.#max)) return null
        if (best.client.isOpen) return best
        if (best.inflight === 0) this.#close(best)
        else best.dead = true
      }
    }

    #take(entry, exclusive) {
      if (exclusive) entry.exclusive = true
      else entry.inflight++
      return entry
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
          if (deadline && remaining <= 0) throw poolError('POOL_TIMEOUT', `could not open a connection within ${this.#acquireTimeout} ms`)
          const client = new Client({ ...this.#config, ...(deadline ? { connectionTimeoutMillis: remaining } : {}) })
          // The server's clock for its connection limit starts before ours would after connecting.
          const startedAt = Date.now()
          const round = this.#backoffRound
          try {
            await client.connect()
          } catch (err) {
            if (!TRANSIENT.has(err.code)) throw err
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
          return this.#take(this.#track(client, startedAt), exclusive)
        }
      } finally {
        this.#creating--
        queueMicrotask(() => this.#dispatch())
      }
    }

    #track(client, startedAt) {
      debug('pool-open', { total: this.#entries.size + 1, max: this.#max })
      const entry = { client, inflight: 0, exclusive: false, retired: false, dead: false, idleTimer: null, lifeTimer: null, idleSince: Date.now(), expiresAt: Infinity }
      if (this.#lifetime > 0) {
        // Up to 10 % early, so connections opened together are not all replaced together.
        entry.expiresAt = startedAt + this.#lifetime * (1 - Math.random() * 0.1)
        entry.lifeTimer = setTimeout(() => this.#retire(entry), Math.max(0, entry.expiresAt - Date.now()))
        entry.lifeTimer.unref()
      }
      this.#entries.add(entry)
      return entry
    }

    #retire(entry) {
      debug('pool-recycle', { reason: 'lifetime', inUse: entry.inflight > 0 || entry.exclusive })
      entry.retired = true
      if (entry.inflight === 0 && !entry.exclusive) this.#close(entry)
    }

    #idle(entry) {
      // A connection that died while idle is found (and closed) by #pick before anyone gets it.
      if (entry.retired || entry.dead || this.#ending) return this.#close(entry)
      entry.idleSince = Date.now()
      // One timer per idle spell at most, not one per query: it re-arms itself while the
      // connection keeps being used.
      if (this.#idleTimeout > 0 && entry.idleTimer === null) this.#armIdle(entry, this.#idleTimeout)
      this.#dispatch()
    }

    #armIdle(entry, after) {
      entry.idleTimer = setTimeout(() => {
        entry.idleTimer = null
        if (entry.inflight !== 0 || entry.exclusive || !this.#entries.has(entry)) return
        const left = entry.idleSince + this.#idleTimeout - Date.now()
        if (left > 0) return this.#armIdle(entry, left)
        debug('pool-close', { reason: 'idle' })
        this.#close(entry)
      }, after)
      entry.idleTimer.unref()
    }

    #releaseShared(entry) {
      entry.inflight--
      if (entry.inflight === 0) this.#idle(entry)
      else this.#dispatch()
    }

    #releaseExclusive(entry, discard) {
      entry.exclusive = false
      if (discard) this.#close(entry)
      else this.#idle(entry)
    }

    #close(entry) {
      if (!this.#entries.delete(entry)) return Promise.resolve()
      clearTimeout(entry.idleTimer)
      clearTimeout(entry.lifeTimer)
      queueMicrotask(() => this.#dispatch())
      return entry.client.end()
    }

    #dispatch() {
      while (this.#waiters.length > 0 && !this.#ending) {
        const w = this.#waiters[0]
        const entry = this.#pick(w.exclusive)
        if (entry) {
          this.#waiters.shift()
          clearTimeout(w.timer)
          w.resolve(this.#take(entry, w.exclusive))
        } else if (this.totalCount < this.#max) {
          this.#waiters.shift()
          clearTimeout(w.timer)
          this.#create(w.deadline, w.exclusive).then(w.resolve, w.reject)
        } else {
          return
        }
      }
    }
  }

  return { Pool, PoolClient }
}

module.exports = { makePool }
