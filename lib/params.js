'use strict'
// JavaScript values → PostgreSQL text parameters, with node-postgres's conventions; the server
// infers each parameter's type from the query.

const { invalidParameter } = require('./errors')

const pad = (n, width = 2) => String(n).padStart(width, '0')

// Local time with its offset, as node-postgres sends Dates, so `timestamp` columns (read back
// in local time) round-trip.
function dateToString(d) {
  if (Number.isNaN(d.getTime())) return undefined
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

function arrayLiteral(arr, index, seen) {
  if (seen.has(arr)) throw invalidParameter(index, 'the array contains itself')
  seen.add(arr)
  const parts = arr.map((v) => {
    if (v === null || v === undefined) return 'NULL'
    if (Array.isArray(v)) return arrayLiteral(v, index, seen)
    if (ArrayBuffer.isView(v)) return '"\\' + bytesToHex(v) + '"'
    const s = encode(v, index, seen)
    return '"' + s.replace(/\\/g, '\\\\').replace(/"/g, '\\"') + '"'
  })
  seen.delete(arr)
  return '{' + parts.join(',') + '}'
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
      if (ArrayBuffer.isView(v)) return bytesToHex(v)
      if (Array.isArray(v)) return arrayLiteral(v, index, seen)
      if (typeof v.toPostgres === 'function') return encode(v.toPostgres(), index, seen)
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

module.exports = { encodeParams, dateToString }
