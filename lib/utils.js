'use strict'
// What node-postgres exports as `pg/lib/utils` (pg-promise and pg-cursor require it).

const { prepareValue } = require('./params')

/** A query's arguments as one config object (`{ text, values, callback }`), not mutating the input. */
function normalizeQueryConfig(config, values, callback) {
  config = typeof config === 'string' ? { text: config } : config == null ? config : Object.defineProperties(Object.create(Object.getPrototypeOf(config)), Object.getOwnPropertyDescriptors(config))
  if (values) {
    if (typeof values === 'function') config.callback = values
    else config.values = values
  }
  if (callback) config.callback = callback
  return config
}

/** `"name"`, with embedded quotes doubled, as libpq's PQescapeIdentifier. */
function escapeIdentifier(str) {
  return '"' + str.replace(/"/g, '""') + '"'
}

/** `'text'` with quotes doubled; ` E'…'` with backslashes doubled when there are any (libpq's PQescapeLiteral). */
function escapeLiteral(str) {
  if (typeof str !== 'string') return "''"
  let backslash = false
  let out = "'"
  for (const c of str) {
    if (c === "'") out += "''"
    else if (c === '\\') {
      out += '\\\\'
      backslash = true
    } else out += c
  }
  out += "'"
  return backslash ? ' E' + out : out
}

module.exports = {
  prepareValue: (value) => prepareValue(value),
  normalizeQueryConfig,
  escapeIdentifier,
  escapeLiteral,
}
