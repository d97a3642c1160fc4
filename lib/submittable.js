'use strict'
// Query objects that drive pg's connection themselves (pg-cursor, and pg-query-stream on top of
// it: Knex, TypeORM, pg-promise and Kysely stream with them). They are handed a connection-like
// object whose parse/bind/describe/execute/sync/close calls become one native stream of the
// statement, and they get pg's callbacks (handleRowDescription, handleDataRow, …) in pg's order.
// Rows arrive parsed (the query's types applied natively or by the parsers they name), so the
// object's Result is given identity parsers.

const EventEmitter = require('node:events')

const identity = (v) => v
const DEFAULT_BATCH = 100

/**
 * Runs `q` (an object with `submit(connection)`) on `client`. `open(text, values, batch, types)`
 * starts the statement and returns `{ next(): Promise<{ fields?, rows?, done, command?, rowCount? }>, close() }`
 * with rows as arrays in column order.
 */
function runSubmittable(client, q, open) {
  const wire = new Wire(client, q, open)
  process.nextTick(() => {
    try {
      q.submit(wire)
    } catch (err) {
      wire.fail(err)
    }
  })
  return q
}

class Wire extends EventEmitter {
  #client
  #q
  #open
  #text = null
  #values = null
  #stream = null
  #started = null
  #fields = null
  #buffer = []
  #done = null
  #failed = null
  #closed = false
  // Calls run one after another, as messages on a connection would.
  #chain = Promise.resolve()

  constructor(client, q, open) {
    super()
    this.#client = client
    this.#q = q
    this.#open = open
  }

  #then(step) {
    this.#chain = this.#chain.then(step).catch((err) => this.fail(err))
  }

  fail(err) {
    if (this.#failed) return
    this.#failed = err
    if (typeof this.#q.handleError === 'function') this.#q.handleError(err, this)
  }

  parse(msg) {
    this.#text = msg.text
  }

  bind(msg) {
    this.#values = msg.values ?? null
  }

  describe() {}

  flush() {
    if (this.#started === null && this.#text !== null) this.#then(() => this.#start())
  }

  async #start() {
    const conf = this.#q._conf ?? {}
    const batch = Math.max(DEFAULT_BATCH, conf.batchSize || conf.highWaterMark || DEFAULT_BATCH)
    const types = conf.types ?? this.#q._result?._types ?? this.#client._types
    this.#stream = this.#open(this.#text, this.#values, batch, types)
    this.#started = true
    await this.#pull()
    if (this.#fields.length === 0) {
      this.emit('noData')
    } else {
      this.#q.handleRowDescription({ name: 'rowDescription', fieldCount: this.#fields.length, fields: this.#fields })
      // The rows are parsed already: the object's own Result passes them through.
      const result = this.#q._result
      if (result && Array.isArray(result._parsers)) result._parsers = this.#fields.map(() => identity)
      this.emit('rowDescription')
    }
  }

  async #pull() {
    const piece = await this.#stream.next()
    if (piece.fields) this.#fields = piece.fields
    if (piece.rows) for (const r of piece.rows) this.#buffer.push(r)
    if (piece.done) this.#done = { command: piece.command ?? 'SELECT', rowCount: piece.rowCount ?? this.#delivered + this.#buffer.length }
  }

  #delivered = 0

  execute(msg) {
    this.#then(async () => {
      if (this.#failed || this.#closed) return
      if (this.#started === null) await this.#start()
      const want = msg.rows > 0 ? msg.rows : Infinity
      let sent = 0
      while (sent < want) {
        if (this.#buffer.length === 0) {
          if (this.#done) break
          await this.#pull()
          continue
        }
        const row = this.#buffer.shift()
        sent++
        this.#delivered++
        this.#q.handleDataRow({ name: 'dataRow', fieldCount: row.length, fields: row })
      }
      if (this.#buffer.length === 0 && this.#done) {
        this.#q.handleCommandComplete({ name: 'commandComplete', text: `${this.#done.command} ${this.#done.rowCount ?? this.#delivered}` })
      } else {
        this.#q.handlePortalSuspended({ name: 'portalSuspended' })
      }
    })
  }

  close() {
    this.#then(async () => {
      if (this.#closed) return
      this.#closed = true
      if (this.#stream && !this.#done) await this.#stream.close()
    })
  }

  sync() {
    this.#then(async () => {
      if (this.#stream && !this.#done && !this.#closed) {
        this.#closed = true
        await this.#stream.close()
      }
      await new Promise((resolve) => setImmediate(resolve))
      if (typeof this.#q.handleReadyForQuery === 'function') this.#q.handleReadyForQuery(this)
      this.emit('readyForQuery')
    })
  }

  end() {
    this.#client.end().then(() => this.emit('end'))
  }
}

module.exports = { runSubmittable }
