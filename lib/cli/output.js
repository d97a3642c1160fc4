'use strict'
// Terminal output: colour only on a terminal (NO_COLOR off, FORCE_COLOR on), a spinner on stderr
// only on a terminal and only once a wait lasts longer than a moment.

const SPINNER_DELAY_MILLIS = 300
const FRAMES = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏']

function colorEnabled(stream, { noColor = false, env = process.env } = {}) {
  if (noColor) return false
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') return false
  if (env.FORCE_COLOR !== undefined) return !['0', 'false'].includes(env.FORCE_COLOR)
  return Boolean(stream.isTTY) && env.TERM !== 'dumb'
}

const CODES = { bold: [1, 22], dim: [2, 22], red: [31, 39], green: [32, 39], yellow: [33, 39], cyan: [36, 39] }

/** Style functions for one stream: paint.red('x') is plain 'x' when colour is off. */
function painter(enabled) {
  const paint = {}
  for (const [name, [on, off]] of Object.entries(CODES)) {
    paint[name] = enabled ? (s) => `\x1b[${on}m${s}\x1b[${off}m` : (s) => String(s)
  }
  return paint
}

/**
 * Runs `promise` with a progress line on `stream` (a TTY) once it takes longer than a moment.
 * Piped output never sees it.
 */
async function withSpinner(stream, label, promise, { enabled = Boolean(stream.isTTY) } = {}) {
  if (!enabled) return promise
  let frame = 0
  let interval = null
  const draw = () => stream.write(`\r${FRAMES[frame++ % FRAMES.length]} ${label}\x1b[K`)
  const delay = setTimeout(() => {
    draw()
    interval = setInterval(draw, 80)
    interval.unref()
  }, SPINNER_DELAY_MILLIS)
  delay.unref()
  try {
    return await promise
  } finally {
    clearTimeout(delay)
    if (interval) {
      clearInterval(interval)
      stream.write('\r\x1b[K')
    }
  }
}

const NUMERIC_TYPES = new Set([20, 21, 23, 26, 700, 701, 790, 1700])

function cellText(v) {
  if (v === null || v === undefined) return ''
  if (v instanceof Date) return Number.isNaN(v.getTime()) ? String(v) : v.toISOString()
  if (Buffer.isBuffer(v) || v instanceof Uint8Array) return `\\x${Buffer.from(v).toString('hex')}`
  if (typeof v === 'object') return JSON.stringify(v, jsonReplacer)
  return String(v)
}

/** JSON for query results: bigint as a string, bytea as \x hex (as PostgreSQL prints it). */
function jsonReplacer(key, value) {
  const original = this[key]
  if (Buffer.isBuffer(original) || original instanceof Uint8Array) return `\\x${Buffer.from(original).toString('hex')}`
  if (typeof value === 'bigint') return value.toString()
  return value
}

/** psql's aligned format: header, rule, rows (numbers right-aligned), "(n rows)". */
function formatTable(result) {
  const { fields, rows } = result
  if (!fields || fields.length === 0) {
    const tag = result.command ?? 'OK'
    return result.rowCount === null || result.rowCount === undefined ? tag : `${tag} ${result.rowCount}`
  }
  const names = fields.map((f) => f.name)
  const cells = rows.map((r) => names.map((n, i) => cellText(Array.isArray(r) ? r[i] : r[n])))
  const widths = names.map((n, i) => Math.max(n.length, ...cells.map((c) => longestLine(c[i]))))
  const right = fields.map((f) => NUMERIC_TYPES.has(f.dataTypeID))
  const line = (values, header) =>
    values.map((v, i) => {
      const w = widths[i]
      if (header) {
        const pad = w - v.length
        return ' '.repeat(Math.floor(pad / 2)) + v + ' '.repeat(Math.ceil(pad / 2))
      }
      return right[i] ? v.padStart(w) : v.padEnd(w)
    }).map((v) => ` ${v} `).join('|').trimEnd()
  const out = [line(names, true), widths.map((w) => '-'.repeat(w + 2)).join('+')]
  for (const c of cells) out.push(line(c.map((v) => v.replace(/\n/g, '\\n')), false))
  out.push(`(${rows.length} ${rows.length === 1 ? 'row' : 'rows'})`)
  return out.join('\n')
}

function longestLine(s) {
  return s.replace(/\n/g, '\\n').length
}

module.exports = { colorEnabled, painter, withSpinner, formatTable, jsonReplacer }
