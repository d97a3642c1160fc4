'use strict'
// Columnar chunks from the native side → rows. A row builder is generated once per column set
// (names, kinds, NULL presence), so V8 sees one object shape and no per-value calls into Node-API.

// Must match `Kind` in src/value.rs.
const NUMBER = 0, TEXT = 1, BOOL = 2, TIMESTAMP = 3, JSON_ = 4, BYTES = 5, BIGINT = 6, ARRAY = 7, LOCAL_TIMESTAMP = 8

const timestamp = (ms) => (ms === Infinity || ms === -Infinity ? ms : new Date(ms))

// `timestamp without time zone` holds a wall-clock time; node-postgres reads it in local time.
function localTimestamp(ms) {
  if (ms === Infinity || ms === -Infinity) return ms
  const u = new Date(ms)
  const d = new Date(2000, 0, 1, u.getUTCHours(), u.getUTCMinutes(), u.getUTCSeconds(), u.getUTCMilliseconds())
  d.setFullYear(u.getUTCFullYear(), u.getUTCMonth(), u.getUTCDate())
  return d
}

function fixElements(v, f) {
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) v[i] = v[i] === null ? null : fixElements(v[i], f)
    return v
  }
  return f(v)
}

const elementFixers = {
  [NUMBER]: (v) => (typeof v === 'string' ? Number(v) : v),
  [TIMESTAMP]: (v) => timestamp(typeof v === 'string' ? Number(v) : v),
  [LOCAL_TIMESTAMP]: (v) => localTimestamp(typeof v === 'string' ? Number(v) : v),
  [BYTES]: (v) => Buffer.from(v, 'hex'),
  [BIGINT]: (v) => BigInt(v),
}

function array(text, element) {
  const v = JSON.parse(text)
  const fix = elementFixers[element]
  // Number arrays carry quotes only for NaN/Infinity; skip the walk when there are none.
  if (fix === undefined || (element === NUMBER && text.indexOf('"') === -1)) return v
  return fixElements(v, fix)
}

const helpers = { timestamp, localTimestamp, array }

function valueExpr(kind, k) {
  const slice = `t${k}.substring(o${k}[i], o${k}[i + 1])`
  switch (kind) {
    case NUMBER: return `n${k}[i]`
    case BOOL: return `n${k}[i] !== 0`
    case TIMESTAMP: return `h.timestamp(n${k}[i])`
    case LOCAL_TIMESTAMP: return `h.localTimestamp(n${k}[i])`
    case BIGINT: return `g${k}[i]`
    case JSON_: return `JSON.parse(${slice})`
    case ARRAY: return `h.array(${slice}, c[${k}].element)`
    case BYTES: return `b${k}.subarray(o${k}[i], o${k}[i + 1])`
    default: return slice
  }
}

function generate(fields, columns, arrayMode) {
  const lines = ['"use strict"']
  const exprs = columns.map((col, k) => {
    lines.push(`const n${k} = c[${k}].numbers, g${k} = c[${k}].bigints, t${k} = c[${k}].text, o${k} = c[${k}].offsets, b${k} = c[${k}].bytes, z${k} = c[${k}].nulls`)
    const expr = valueExpr(col.kind, k)
    return col.nulls ? `(z${k}[i] === 1 ? null : ${expr})` : expr
  })
  const body = arrayMode
    ? `[${exprs.join(', ')}]`
    : `{ ${fields.map((f, k) => `${f.name === '__proto__' ? `["__proto__"]` : JSON.stringify(f.name)}: ${exprs[k]}`).join(', ')} }`
  lines.push(`for (let i = 0; i < n; i++) out.push(${body})`)
  return new Function('c', 'n', 'out', 'h', lines.join('\n'))
}

const builders = new Map()
const MAX_BUILDERS = 512

function builderFor(fields, columns, arrayMode) {
  let key = arrayMode ? 'a' : 'o'
  for (let k = 0; k < columns.length; k++) key += columns[k].kind + (columns[k].nulls ? 'n' : '') + ','
  if (!arrayMode) key += JSON.stringify(fields.map((f) => f.name))
  let fn = builders.get(key)
  if (fn === undefined) {
    if (builders.size >= MAX_BUILDERS) builders.clear()
    fn = generate(fields, columns, arrayMode)
    builders.set(key, fn)
  }
  return fn
}

function toFields(raw) {
  return raw.map((f) => ({
    name: f.name,
    tableID: f.tableID,
    columnID: f.columnID,
    dataTypeID: f.dataTypeID,
    dataTypeModifier: f.dataTypeModifier,
    format: 'binary',
  }))
}

/** Appends a chunk's rows to `rows`. */
function appendRows(fields, chunk, arrayMode, rows) {
  if (chunk.rows > 0) builderFor(fields, chunk.columns, arrayMode)(chunk.columns, chunk.rows, rows, helpers)
}

const yieldToEventLoop = () => new Promise((resolve) => setImmediate(resolve))

/** Native results → node-postgres's result shape. A result of several chunks is built one chunk
 * at a time, yielding to the event loop in between, so a large result never blocks it for long. */
async function toResults(raws, arrayMode) {
  let yieldNext = false
  const out = []
  for (const raw of raws) {
    const fields = toFields(raw.fields)
    const rows = []
    for (const chunk of raw.chunks) {
      if (yieldNext) await yieldToEventLoop()
      appendRows(fields, chunk, arrayMode, rows)
      yieldNext = true
    }
    out.push({ command: raw.command ?? null, rowCount: raw.rowCount ?? null, rows, fields, rowAsArray: arrayMode })
  }
  return out
}

const kinds = { NUMBER, TEXT, BOOL, TIMESTAMP, JSON: JSON_, BYTES, BIGINT, ARRAY, LOCAL_TIMESTAMP }

module.exports = { toResults, toFields, appendRows, builderFor, helpers, kinds }
