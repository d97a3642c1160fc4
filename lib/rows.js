'use strict'
// Columnar chunks from the native side → rows. A row builder is generated once per column set
// (names, kinds, NULL presence, which columns have a custom parser), so V8 sees one object shape
// and no per-value calls into Node-API. Values equal what pg gives with pg-types' default parsers;
// a column with a custom parser gets the server's text of each value through that parser.

const { PostgresInterval, parsePoint, parseCircle, parseInterval, isDefault, DECODED_OIDS } = require('./types')

// Must match `Kind` in src/value.rs.
const NUMBER = 0, TEXT = 1, BOOL = 2, TIMESTAMP = 3, JSON_ = 4, BYTES = 5, BIGINT = 6, ARRAY = 7, LOCAL_TIMESTAMP = 8
const DATE = 9, INTERVAL = 10, POINT = 11, CIRCLE = 12

const DAY_MS = 86_400_000
const isInfinite = (v) => v === Infinity || v === -Infinity

const timestamp = (ms) => (isInfinite(ms) ? ms : new Date(ms))

// `timestamp without time zone` holds a wall-clock time; pg reads it in local time.
function localTimestamp(ms) {
  if (isInfinite(ms)) return ms
  const u = new Date(ms)
  const y = u.getUTCFullYear()
  const d = new Date(y, u.getUTCMonth(), u.getUTCDate(), u.getUTCHours(), u.getUTCMinutes(), u.getUTCSeconds(), u.getUTCMilliseconds())
  if (y >= 0 && y < 100) d.setFullYear(y)
  return d
}

// `date`: local midnight of that day, as pg reads it.
function localDate(days) {
  if (isInfinite(days)) return days
  const u = new Date(days * DAY_MS)
  const y = u.getUTCFullYear()
  const d = new Date(y, u.getUTCMonth(), u.getUTCDate())
  if (y >= 0 && y < 100) d.setFullYear(y)
  return d
}

function fixElements(v, f) {
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) v[i] = v[i] === null ? null : fixElements(v[i], f)
    return v
  }
  return f(v)
}

const toNumber = (v) => (typeof v === 'string' ? Number(v) : v)
const elementFixers = {
  [NUMBER]: toNumber,
  [TIMESTAMP]: (v) => timestamp(toNumber(v)),
  [LOCAL_TIMESTAMP]: (v) => localTimestamp(toNumber(v)),
  [DATE]: (v) => localDate(toNumber(v)),
  [BYTES]: (v) => Buffer.from(v, 'hex'),
  [BIGINT]: (v) => BigInt(v),
  [INTERVAL]: parseInterval,
  [POINT]: parsePoint,
  [CIRCLE]: parseCircle,
}

function array(text, element) {
  const v = JSON.parse(text)
  const fix = elementFixers[element]
  // Number arrays carry quotes only for NaN/Infinity; skip the walk when there are none.
  if (fix === undefined || (element === NUMBER && text.indexOf('"') === -1)) return v
  return fixElements(v, fix)
}

const interval = (text) => new PostgresInterval(text)

// The server's text of a value the addon decoded (for a custom parser that met a column the addon
// was not yet told to send as text). Exact for these kinds; others arrive as text.
const boolText = (b) => (b ? 't' : 'f')
const bytesText = (b) => '\\x' + Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex')

const helpers = { timestamp, localTimestamp, localDate, array, interval, point: parsePoint, circle: parseCircle, boolText, bytesText }

function valueExpr(kind, k) {
  const slice = `t${k}.substring(o${k}[i], o${k}[i + 1])`
  switch (kind) {
    case NUMBER: return `n${k}[i]`
    case BOOL: return `n${k}[i] !== 0`
    case TIMESTAMP: return `h.timestamp(n${k}[i])`
    case LOCAL_TIMESTAMP: return `h.localTimestamp(n${k}[i])`
    case DATE: return `h.localDate(n${k}[i])`
    case BIGINT: return `g${k}[i]`
    case JSON_: return `JSON.parse(${slice})`
    case ARRAY: return `h.array(${slice}, c[${k}].element)`
    case BYTES: return `b${k}.subarray(o${k}[i], o${k}[i + 1])`
    case INTERVAL: return `h.interval(${slice})`
    case POINT: return `h.point(${slice})`
    case CIRCLE: return `h.circle(${slice})`
    default: return slice
  }
}

// What a custom parser is given: the server's text of the value.
function textExpr(kind, k) {
  switch (kind) {
    case NUMBER: case BIGINT: return `String(${valueExpr(kind, k)})`
    case BOOL: return `h.boolText(n${k}[i] !== 0)`
    case BYTES: return `h.bytesText(${valueExpr(kind, k)})`
    case TIMESTAMP: case LOCAL_TIMESTAMP: case DATE: return `String(${valueExpr(kind, k)})`
    default: return `t${k}.substring(o${k}[i], o${k}[i + 1])`
  }
}

function generate(fields, columns, arrayMode, parsers) {
  const lines = ['"use strict"']
  const exprs = columns.map((col, k) => {
    lines.push(`const n${k} = c[${k}].numbers, g${k} = c[${k}].bigints, t${k} = c[${k}].text, o${k} = c[${k}].offsets, b${k} = c[${k}].bytes, z${k} = c[${k}].nulls`)
    let expr
    if (parsers !== null && parsers[k] !== null) {
      lines.push(`const p${k} = P[${k}]`)
      expr = `p${k}(${textExpr(col.kind, k)})`
    } else {
      expr = valueExpr(col.kind, k)
    }
    return col.nulls ? `(z${k}[i] === 1 ? null : ${expr})` : expr
  })
  const body = arrayMode
    ? `[${exprs.join(', ')}]`
    : `{ ${fields.map((f, k) => `${f.name === '__proto__' ? `["__proto__"]` : JSON.stringify(f.name)}: ${exprs[k]}`).join(', ')} }`
  lines.push(`for (let i = 0; i < n; i++) out.push(${body})`)
  return new Function('c', 'n', 'out', 'h', 'P', lines.join('\n'))
}

const builders = new Map()
const MAX_BUILDERS = 512

function builderFor(fields, columns, arrayMode, parsers = null) {
  let key = arrayMode ? 'a' : 'o'
  for (let k = 0; k < columns.length; k++) {
    key += columns[k].kind + (columns[k].nulls ? 'n' : '') + (parsers !== null && parsers[k] !== null ? 'p' : '') + ','
  }
  if (!arrayMode) key += JSON.stringify(fields.map((f) => f.name))
  let fn = builders.get(key)
  if (fn === undefined) {
    if (builders.size >= MAX_BUILDERS) builders.clear()
    fn = generate(fields, columns, arrayMode, parsers)
    builders.set(key, fn)
  }
  return fn
}

const DECODED = new Set(DECODED_OIDS)

/**
 * Per column, the parser to call with the server's text, or `null` where the addon's value is
 * already what the default parser gives. `null` (no array) when no column needs one.
 */
function parsersFor(fields, kinds, typesObject) {
  let out = null
  for (let k = 0; k < fields.length; k++) {
    const oid = fields[k].dataTypeID
    const parser = typesObject.getTypeParser(oid, 'text')
    // A decoded type sent as text (some query had a custom parser for it) needs its parser,
    // even the default one.
    const needed = !isDefault(oid, parser) || (kinds[k] === TEXT && DECODED.has(oid))
    if (needed) {
      out ??= new Array(fields.length).fill(null)
      out[k] = parser
    }
  }
  return out
}

function toFields(raw) {
  return raw.map((f) => ({
    name: f.name,
    tableID: f.tableID,
    columnID: f.columnID,
    dataTypeID: f.dataTypeID,
    dataTypeSize: f.dataTypeSize,
    dataTypeModifier: f.dataTypeModifier,
    format: 'text',
  }))
}

/** Appends a chunk's rows to `rows`. */
function appendRows(fields, chunk, arrayMode, rows, parsers = null) {
  if (chunk.rows > 0) builderFor(fields, chunk.columns, arrayMode, parsers)(chunk.columns, chunk.rows, rows, helpers, parsers)
}

const kinds = { NUMBER, TEXT, BOOL, TIMESTAMP, JSON: JSON_, BYTES, BIGINT, ARRAY, LOCAL_TIMESTAMP, DATE, INTERVAL, POINT, CIRCLE }

module.exports = { toFields, appendRows, builderFor, parsersFor, helpers, kinds }
