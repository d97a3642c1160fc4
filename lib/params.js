'use strict'
// JavaScript values → PostgreSQL text parameters, with node-postgres's conventions; the server
// infers each parameter's type from the query.

const { invalidParameter } = require('./errors')

const pad = (n, width = 2) => String(n).padStart(width, '0')
// PostgreSQL's MAXDIM: a deeper JavaScript array has no PostgreSQL form.
const MAX_ARRAY_DIMENSIONS = 6
// How many arrays and toPostgres() results one value may nest through, so that a chain of
// toPostgres() calls that never ends is an error with a code, not a stack overflow.
const MAX_NESTING = 64

// Read when a Date is sent (pg's `defaults.parseInputDatesAsUTC`); set by lib/defaults.js.
let defaultsRef = null
const setDefaults = (d) => (defaultsRef = d)

// UTC with +00:00, as node-postgres sends Dates when `defaults.parseInputDatesAsUTC` is set.
function dateToStringUTC(d) {
  let year = d.getUTCFullYear()
  const bc = year < 1
  if (bc) year = Math.abs(year) + 1
  return `${pad(year, 4)}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}T${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}.${pad(d.getUTCMilliseconds(), 3)}+00:00${bc ? ' BC' : ''}`
}

// Local time with its offset, as node-postgres sends Dates, so `timestamp` columns (read back
// in local time) round-trip.
function dateToString(d) {
  if (Number.isNaN(d.getTime())) return undefined
  if (defaultsRef !== null && defaultsRef.parseInputDatesAsUTC) return dateToStringUTC(d)
  let offset = -d.getTimezoneOffset()
  const sign = offset >= 0 ? '+' : '-'
  offset = Math.abs(offset)
  let year = d.getFullYear()
  const bc = year < 1
  if (bc) year = Math.abs(year) + 1
  return `${pad(year, 4)}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}${sign}${pad(Math.floor(offset / 60))}:${pad(offset % 60)}${bc ? ' BC' : ''}`
}

function bytesToHex(v) {
  return '\\x' + Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('hex')
}

// Buffers, typed arrays, DataViews and bare (Shared)ArrayBuffers are bytes: bytea.
const isBytes = (v) => ArrayBuffer.isView(v) || v instanceof ArrayBuffer || (typeof SharedArrayBuffer === 'function' && v instanceof SharedArrayBuffer)
const bytesOf = (v) => (ArrayBuffer.isView(v) ? v : new Uint8Array(v))

function arrayLiteral(arr, index, seen, dims) {
  if (seen.has(arr)) throw invalidParameter(index, 'the array contains itself')
  if (dims > MAX_ARRAY_DIMENSIONS) {
    throw invalidParameter(index, `arrays nest more than ${MAX_ARRAY_DIMENSIONS} deep, and PostgreSQL arrays have at most ${MAX_ARRAY_DIMENSIONS} dimensions: send deeper data as JSON (JSON.stringify it)`)
  }
  enter(arr, index, seen)
  const parts = arr.map((v) => {
    if (v === null || v === undefined) return 'NULL'
    if (Array.isArray(v)) return arrayLiteral(v, index, seen, dims + 1)
    if (isBytes(v)) return '"\\' + bytesToHex(bytesOf(v)) + '"'
    const s = encode(v, index, seen)
    return '"' + s.replace(/\\/g, '\\\\').replace(/"/g, '\\"') + '"'
  })
  seen.delete(arr)
  return '{' + parts.join(',') + '}'
}

/** Marks `v` as being encoded: it is on the path from the parameter down to where we are. */
function enter(v, index, seen) {
  if (seen.size >= MAX_NESTING) throw invalidParameter(index, `the value nests more than ${MAX_NESTING} levels of arrays and toPostgres() results`)
  seen.add(v)
}

function encode(v, index, seen) {
  switch (typeof v) {
    case 'string':
      // Rust strings are UTF-8: a lone surrogate would silently become U+FFFD.
      if (!v.isWellFormed()) throw invalidParameter(index, 'the string has a lone UTF-16 surrogate, which PostgreSQL cannot store')
      return v
    case 'number':
      return String(v)
    case 'bigint':
      return v.toString()
    case 'boolean':
      return v ? 'true' : 'false'
    case 'object': {
      if (v instanceof Date) {
        const s = dateToString(v)
        if (s === undefined) throw invalidParameter(index, 'the Date is invalid')
        return s
      }
      if (isBytes(v)) return bytesToHex(bytesOf(v))
      if (Array.isArray(v)) return arrayLiteral(v, index, seen, 1)
      if (typeof v.toPostgres === 'function') {
        if (seen.has(v)) throw invalidParameter(index, 'toPostgres() leads back to the same object (a cycle): return a string, number, Date, Buffer, array or plain object')
        enter(v, index, seen)
        const s = encode(v.toPostgres(prepareValue), index, seen)
        seen.delete(v)
        return s
      }
      let json
      try {
        json = JSON.stringify(v)
      } catch (e) {
        throw invalidParameter(index, `the object cannot be sent as JSON (${e.message})`)
      }
      return encode(json, index, seen)
    }
    default:
      throw invalidParameter(index, `a ${typeof v} cannot be sent to PostgreSQL`)
  }
}

/** Values → text parameters (`null` for NULL). Throws `INVALID_PARAMETER`. */
function encodeParams(values) {
  const out = new Array(values.length)
  for (let i = 0; i < values.length; i++) {
    const v = values[i]
    out[i] = v === null || v === undefined ? null : typeof v === 'string' && v.isWellFormed() ? v : encode(v, i, new Set())
  }
  return out
}

/**
 * One value as pg's `prepareValue` gives it: `null`, a Buffer for bytes, else PostgreSQL text.
 * Throws `INVALID_PARAMETER` where pg would send something the server cannot read.
 */
function prepareValue(v) {
  if (v === null || v === undefined) return null
  if (Buffer.isBuffer(v)) return v
  if (ArrayBuffer.isView(v)) return Buffer.from(v.buffer, v.byteOffset, v.byteLength)
  return encode(v, 0, new Set())
}

module.exports = { encodeParams, dateToString, prepareValue, setDefaults }
