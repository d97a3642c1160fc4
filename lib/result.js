'use strict'
// A statement's result, with node-postgres's shape (`command`, `rowCount`, `oid`, `rows`,
// `fields`, `rowAsArray`) and its row-parsing methods for code that drives results itself.

const { types } = require('./types')

const COMMAND_TAG = /^([A-Za-z]+)(?: (\d+))?(?: (\d+))?/

class Result {
  constructor(rowMode, typesObject) {
    this.command = null
    this.rowCount = null
    this.oid = null
    this.rows = []
    this.fields = []
    this._parsers = undefined
    this._types = typesObject
    this.RowCtor = null
    this.rowAsArray = rowMode === 'array'
    if (this.rowAsArray) this.parseRow = this._parseRowAsArray
    this._prebuiltEmptyResultObject = null
  }

  /** Reads a CommandComplete tag (`INSERT 0 3`, `SELECT 2`). */
  addCommandComplete(msg) {
    const m = COMMAND_TAG.exec(msg.text || msg.command || '')
    if (!m) return
    this.command = m[1]
    if (m[3]) {
      this.oid = parseInt(m[2], 10)
      this.rowCount = parseInt(m[3], 10)
    } else if (m[2]) {
      this.rowCount = parseInt(m[2], 10)
    }
  }

  _parseRowAsArray(rowData) {
    const row = new Array(rowData.length)
    for (let i = 0; i < rowData.length; i++) row[i] = rowData[i] === null ? null : this._parsers[i](rowData[i])
    return row
  }

  parseRow(rowData) {
    const row = { ...this._prebuiltEmptyResultObject }
    for (let i = 0; i < rowData.length; i++) {
      const raw = rowData[i]
      row[this.fields[i].name] = raw === null ? null : this._parsers[i](raw)
    }
    return row
  }

  addRow(row) {
    this.rows.push(row)
  }

  addFields(fieldDescriptions) {
    this.fields = fieldDescriptions
    if (this.fields.length) this._parsers = new Array(fieldDescriptions.length)
    const row = Object.create(null)
    const from = this._types || types
    for (let i = 0; i < fieldDescriptions.length; i++) {
      const f = fieldDescriptions[i]
      row[f.name] = null
      this._parsers[i] = from.getTypeParser(f.dataTypeID, f.format || 'text')
    }
    this._prebuiltEmptyResultObject = { ...row }
  }
}

module.exports = Result
