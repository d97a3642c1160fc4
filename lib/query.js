'use strict'
// node-postgres's `Query`: a query config object (`text`, `values`, `callback`, `rowMode`, `types`,
// `name`) that is also an EventEmitter. Passed to `client.query()`, it is returned and emits
// `row` (row, result) for each row, then `end` (result), or `error`; its callback is called too.

const EventEmitter = require('node:events')

class Query extends EventEmitter {
  constructor(config, values, callback) {
    super()
    const c = typeof config === 'string' ? { text: config } : { ...config }
    if (typeof values === 'function') c.callback = values
    else if (values) c.values = values
    if (callback) c.callback = callback
    this.text = c.text
    this.values = c.values
    this.rows = c.rows
    this.types = c.types
    this.name = c.name
    this.queryMode = c.queryMode
    this.binary = c.binary
    this.portal = c.portal || ''
    this.callback = c.callback
    this._rowMode = c.rowMode
    if (c.rowMode !== undefined) this.rowMode = c.rowMode
    if (c.query_timeout !== undefined) this.query_timeout = c.query_timeout
  }

  /** Settles this query from the promise of its result: events, then the callback. */
  _settle(promise) {
    promise.then(
      (result) => {
        for (const r of Array.isArray(result) ? result : [result]) for (const row of r.rows) this.emit('row', row, r)
        this.emit('end', result)
        if (typeof this.callback === 'function') this.callback(null, result)
      },
      (err) => {
        if (typeof this.callback === 'function') this.callback(err)
        else if (this.listenerCount('error') > 0) this.emit('error', err)
      },
    )
    return this
  }
}

module.exports = Query
