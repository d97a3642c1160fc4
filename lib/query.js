'use strict'
// node-postgres's `Query` as far as code outside pg touches it: a query config object
// (`text`, `values`, `callback`, `rowMode`, `types`, `name`) that `client.query()` accepts.

class Query {
  constructor(config, values, callback) {
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
  }
}

module.exports = Query
