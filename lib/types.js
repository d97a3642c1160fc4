'use strict'
// Type parsing, as node-postgres exposes it: pg-types 2.x's registry (`getTypeParser`,
// `setTypeParser`, `builtins`, `arrayParser`) with its default text parsers, and `TypeOverrides`.
//
// Results do not go through these functions on the fast path: the addon decodes each column into
// the value the default parser would give. A parser that is not the default (set here, on a
// client's `types`, or per query) is called with the server's text of the value instead.

const NO_PARSER = Symbol('no parser')

/** The value as text: what pg gives for a type it has no parser for. */
function noParse(value) {
  return String(value)
}

function parseBool(value) {
  if (value === null) return value
  return value === 'TRUE' || value === 't' || value === 'true' || value === 'y' || value === 'yes' || value === 'on' || value === '1'
}

const parseInteger = (value) => parseInt(value, 10)

// int8 stays a string, as pg leaves it (a JavaScript number cannot hold every int8).
function parseBigInteger(value) {
  const s = String(value)
  return /^\d+$/.test(s) ? s : value
}

// PostgreSQL's array literal: `{a,"b c",NULL,{1,2}}`, optionally with `[1:2]=` dimensions first.
function parseArrayLiteral(source, transform = (v) => v) {
  let i = 0
  if (source[0] === '[') {
    i = source.indexOf('=') + 1
    if (i === 0) return source
  }
  const delimiter = ','
  const read = () => {
    const out = []
    i++ // '{'
    let last = ''
    while (i < source.length) {
      const c = source[i]
      if (c === '{') {
        out.push(read())
        continue
      }
      if (c === '}') {
        i++
        return out
      }
      if (c === delimiter) {
        i++
        continue
      }
      if (c === '"') {
        let s = ''
        i++
        while (i < source.length && source[i] !== '"') {
          if (source[i] === '\\') i++
          s += source[i++]
        }
        i++
        out.push(transform(s))
        last = s
        continue
      }
      let j = i
      while (j < source.length && source[j] !== delimiter && source[j] !== '}') j++
      last = source.slice(i, j)
      out.push(last === 'NULL' ? null : transform(last))
      i = j
    }
    return out
  }
  return read()
}

const arrayOf = (parse) => (value) => (value ? parseArrayLiteral(value, (v) => (v === null ? null : parse(v))) : null)

// Date and time text (DateStyle ISO) → Date, as pg-types 2.x reads it: with an offset it is that
// instant; without one (date, timestamp) it is local time. Years 0–99 are kept as given.
const DATE_TIME = /(\d{1,})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})(\.\d{1,})?.*?( BC)?$/
const DATE_ONLY = /^(\d{1,})-(\d{2})-(\d{2})( BC)?$/
const ZONE = /([Z+-])(\d{2})?:?(\d{2})?:?(\d{2})?/

function zoneOffsetMillis(text) {
  if (text.endsWith('+00')) return 0
  const zone = ZONE.exec(text.split(' ')[1])
  if (!zone) return undefined
  if (zone[1] === 'Z') return 0
  const sign = zone[1] === '-' ? -1 : 1
  return sign * (parseInt(zone[2], 10) * 3600 + parseInt(zone[3] || 0, 10) * 60 + parseInt(zone[4] || 0, 10)) * 1000
}

const yearOf = (digits, bc) => (bc ? 1 - parseInt(digits, 10) : parseInt(digits, 10))

function parseDate(text) {
  if (text === 'infinity') return Infinity
  if (text === '-infinity') return -Infinity
  const m = DATE_TIME.exec(text)
  if (!m) {
    const d = DATE_ONLY.exec(text)
    if (!d) return null
    const year = yearOf(d[1], !!d[4])
    const date = new Date(year, parseInt(d[2], 10) - 1, d[3])
    if (year >= 0 && year < 100) date.setFullYear(year)
    return date
  }
  const year = yearOf(m[1], !!m[8])
  const month = parseInt(m[2], 10) - 1
  const ms = m[7] ? 1000 * parseFloat(m[7]) : 0
  const offset = zoneOffsetMillis(text)
  let date
  if (offset !== undefined) {
    date = new Date(Date.UTC(year, month, m[3], parseInt(m[4], 10), parseInt(m[5], 10), parseInt(m[6], 10), ms))
    if (year >= 0 && year < 100) date.setUTCFullYear(year)
    if (offset !== 0) date.setTime(date.getTime() - offset)
  } else {
    date = new Date(year, month, m[3], parseInt(m[4], 10), parseInt(m[5], 10), parseInt(m[6], 10), ms)
    if (year >= 0 && year < 100) date.setFullYear(year)
  }
  return date
}

/** An `interval`, as pg gives it: the non-zero parts as own properties. */
class PostgresInterval {
  constructor(text) {
    if (text) parseIntervalInto(this, text)
  }
  /** The interval as PostgreSQL input (`1 years 2 days 3 seconds`). */
  toPostgres() {
    const parts = INTERVAL_PARTS.filter((p) => Object.prototype.hasOwnProperty.call(this, p))
    if (this.milliseconds && !parts.includes('seconds')) parts.push('seconds')
    if (parts.length === 0) return '0'
    return parts
      .map((p) => {
        let v = this[p] || 0
        if (p === 'seconds' && this.milliseconds) v = (v + this.milliseconds / 1000).toFixed(6).replace(/\.?0+$/, '')
        return `${v} ${p}`
      })
      .join(' ')
  }
  /** ISO 8601 (`P1Y2M3DT4H5M6S`). */
  toISO() {
    const part = (p, unit) => {
      let v = this[p] || 0
      if (p === 'seconds' && this.milliseconds) v = (v + this.milliseconds / 1000).toFixed(6).replace(/0+$/, '')
      return v + unit
    }
    return 'P' + part('years', 'Y') + part('months', 'M') + part('days', 'D') + 'T' + part('hours', 'H') + part('minutes', 'M') + part('seconds', 'S')
  }
  toISOString() {
    return this.toISO()
  }
}
const INTERVAL_PARTS = ['seconds', 'minutes', 'hours', 'days', 'months', 'years']
const INTERVAL = /(([+-]?\d+)\s+years?)?\s*(([+-]?\d+)\s+mons?)?\s*(([+-]?\d+)\s+days?)?\s*(([+-])?([\d]*):(\d\d):(\d\d)\.?(\d{1,6})?)?/
const INTERVAL_AT = { years: 2, months: 4, days: 6, hours: 9, minutes: 10, seconds: 11, milliseconds: 12 }

function parseIntervalInto(target, text) {
  const m = INTERVAL.exec(text)
  const negative = m[8] === '-'
  for (const [name, at] of Object.entries(INTERVAL_AT)) {
    const raw = m[at]
    if (!raw) continue
    let v = name === 'milliseconds' ? parseInt(raw + '000000'.slice(raw.length), 10) / 1000 : parseInt(raw, 10)
    if (!v) continue
    if (negative && at >= 9) v = -v
    target[name] = v
  }
}

const parseInterval = (text) => new PostgresInterval(text)

// bytea text: hex (`\x0102`, the default since PostgreSQL 9.0) or escape format.
function parseByteA(text) {
  if (text.startsWith('\\x')) return Buffer.from(text.slice(2), 'hex')
  let out = ''
  for (let i = 0; i < text.length; i++) {
    if (text[i] !== '\\') {
      out += text[i]
    } else if (/[0-7]{3}/.test(text.substr(i + 1, 3))) {
      out += String.fromCharCode(parseInt(text.substr(i + 1, 3), 8))
      i += 3
    } else {
      let backslashes = 1
      while (i + backslashes < text.length && text[i + backslashes] === '\\') backslashes++
      for (let k = 0; k < Math.floor(backslashes / 2); k++) out += '\\'
      i += Math.max(1, Math.floor(backslashes / 2) * 2) - 1
    }
  }
  return Buffer.from(out, 'binary')
}

function parsePoint(text) {
  if (text[0] !== '(') return null
  const [x, y] = text.substring(1, text.length - 1).split(',')
  return { x: parseFloat(x), y: parseFloat(y) }
}

function parseCircle(text) {
  if (text[0] !== '<' && text[1] !== '(') return null
  const close = text.indexOf(')')
  const point = parsePoint(text.substring(1, close + 1))
  point.radius = parseFloat(text.substring(close + 2, text.length - 1))
  return point
}

const parseJson = (text) => JSON.parse(text)

/** pg-types 2.x's default text parsers, by type OID. */
const DEFAULT_TEXT = {
  16: parseBool,
  17: parseByteA,
  20: parseBigInteger,
  21: parseInteger,
  23: parseInteger,
  26: parseInteger,
  114: parseJson,
  199: arrayOf(parseJson),
  600: parsePoint,
  651: arrayOf((v) => v),
  700: parseFloat,
  701: parseFloat,
  718: parseCircle,
  791: arrayOf((v) => v),
  1000: arrayOf(parseBool),
  1001: arrayOf(parseByteA),
  1005: arrayOf(parseInteger),
  1007: arrayOf(parseInteger),
  1008: arrayOf((v) => v),
  1009: arrayOf((v) => v),
  1014: arrayOf((v) => v),
  1015: arrayOf((v) => v),
  1016: arrayOf((v) => parseBigInteger(v).trim()),
  1017: arrayOf(parsePoint),
  1021: arrayOf(parseFloat),
  1022: arrayOf(parseFloat),
  1028: arrayOf(parseInteger),
  1040: arrayOf((v) => v),
  1041: arrayOf((v) => v),
  1082: parseDate,
  1114: parseDate,
  1115: arrayOf(parseDate),
  1182: arrayOf(parseDate),
  1183: arrayOf((v) => v),
  1184: parseDate,
  1185: arrayOf(parseDate),
  1186: parseInterval,
  1187: arrayOf(parseInterval),
  1231: arrayOf(parseFloat),
  1270: arrayOf((v) => v),
  2951: arrayOf((v) => v),
  3802: parseJson,
  3807: arrayOf(parseJson),
  3907: arrayOf((v) => v),
}

/** The type OIDs pg-types names (its `builtins`). */
const builtins = Object.freeze({
  BOOL: 16, BYTEA: 17, CHAR: 18, INT8: 20, INT2: 21, INT4: 23, REGPROC: 24, TEXT: 25, OID: 26, TID: 27, XID: 28,
  CID: 29, JSON: 114, XML: 142, PG_NODE_TREE: 194, SMGR: 210, PATH: 602, POLYGON: 604, CIDR: 650, FLOAT4: 700,
  FLOAT8: 701, ABSTIME: 702, RELTIME: 703, TINTERVAL: 704, CIRCLE: 718, MACADDR8: 774, MONEY: 790, MACADDR: 829,
  INET: 869, ACLITEM: 1033, BPCHAR: 1042, VARCHAR: 1043, DATE: 1082, TIME: 1083, TIMESTAMP: 1114,
  TIMESTAMPTZ: 1184, INTERVAL: 1186, TIMETZ: 1266, BIT: 1560, VARBIT: 1562, NUMERIC: 1700, REFCURSOR: 1790,
  REGPROCEDURE: 2202, REGOPER: 2203, REGOPERATOR: 2204, REGCLASS: 2205, REGTYPE: 2206, UUID: 2950,
  TXID_SNAPSHOT: 2970, PG_LSN: 3220, PG_NDISTINCT: 3361, PG_DEPENDENCIES: 3402, TSVECTOR: 3614, TSQUERY: 3615,
  GTSVECTOR: 3642, REGCONFIG: 3734, REGDICTIONARY: 3769, JSONB: 3802, REGNAMESPACE: 4089, REGROLE: 4096,
})

// Types the addon hands over as something other than their text (numbers, Dates, parsed JSON or
// arrays, Buffers): a custom parser for one of them needs the addon to send the text instead.
// (int8 is not among them: it travels as its decimal text, the server's own.)
const DECODED_OIDS = [16, 17, 21, 23, 26, 114, 700, 701, 1082, 1114, 1184, 3802].concat(
  [651, 1000, 1001, 1005, 1007, 1028, 1016, 1017, 1021, 1022, 1231, 1014, 1015, 1008, 1009, 1040, 1041, 1115, 1182,
    1185, 1187, 199, 3807, 3907, 2951, 791, 1183, 1270],
)

const registry = { text: { ...DEFAULT_TEXT }, binary: {} }
// Bumped whenever a parser changes, so clients re-check which types they need as text.
let version = 0

function getTypeParser(oid, format) {
  const parsers = registry[format || 'text']
  return (parsers && parsers[oid]) || noParse
}

function setTypeParser(oid, format, parseFn) {
  if (typeof format === 'function') {
    parseFn = format
    format = 'text'
  }
  if (!registry[format]) registry[format] = {}
  registry[format][oid] = parseFn
  version++
}

/** The default text parser for `oid` (`noParse` when pg has none). */
const defaultParser = (oid) => DEFAULT_TEXT[oid] || noParse

/** Whether `parser` is what pg would use for `oid` with no custom parsers. */
const isDefault = (oid, parser) => parser === (DEFAULT_TEXT[oid] || noParse)

/** pg's per-client parser overrides, falling back to a types object (the global one by default). */
class TypeOverrides {
  constructor(userTypes) {
    this._types = userTypes || types
    this.text = {}
    this.binary = {}
  }
  getOverrides(format) {
    switch (format) {
      case 'text':
        return this.text
      case 'binary':
        return this.binary
      default:
        return {}
    }
  }
  setTypeParser(oid, format, parseFn) {
    if (typeof format === 'function') {
      parseFn = format
      format = 'text'
    }
    this.getOverrides(format)[oid] = parseFn
    version++
  }
  getTypeParser(oid, format) {
    format = format || 'text'
    return this.getOverrides(format)[oid] || this._types.getTypeParser(oid, format)
  }
}

const arrayParser = {
  create(source, transform) {
    return { parse: () => parseArrayLiteral(source, transform) }
  },
}

/** The module pg exposes as `pg.types`. */
const types = { getTypeParser, setTypeParser, arrayParser, builtins }

// Which decoded types `typesObject` parses with a custom parser: those need the server's text.
// Cached per object and registry version; objects made per query are asked every time.
const textOidsCache = new WeakMap()
function textOidsFor(typesObject) {
  const cached = textOidsCache.get(typesObject)
  if (cached !== undefined && cached.version === version) return cached.oids
  const oids = []
  for (const oid of DECODED_OIDS) if (!isDefault(oid, typesObject.getTypeParser(oid, 'text'))) oids.push(oid)
  textOidsCache.set(typesObject, { version, oids })
  return oids
}

const currentVersion = () => version

module.exports = {
  types,
  TypeOverrides,
  PostgresInterval,
  noParse,
  defaultParser,
  isDefault,
  textOidsFor,
  currentVersion,
  DECODED_OIDS,
  NO_PARSER,
  parseDate,
  parseInterval,
  parsePoint,
  parseCircle,
}
