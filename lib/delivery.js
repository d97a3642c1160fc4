'use strict'
// Outcomes of queries, as the native side delivers them: many queries in one value (see
// `Delivery` in binding.d.ts), fields sent once per prepared statement and kept here.

const { toFields, builderFor, helpers, kinds } = require('./rows')

const EMPTY = Buffer.alloc(0)

// The native wake-up never holds the event loop; this timer does while any query is out, so
// Node waits for pending queries but not for idle clients.
let outstanding = 0
const keepAlive = setInterval(() => {}, 2 ** 31 - 1)
keepAlive.unref()

/** One client's queries in flight and the statements it has been told about. */
function makeInbox() {
  return { waiting: new Map(), shapes: new Map(), forgetting: [], lastId: 0, onEvent: null }
}

/** Registers query `id`; its outcome settles the returned promise. */
function expect(inbox, id) {
  if (outstanding++ === 0) keepAlive.ref()
  return new Promise((resolve) => inbox.waiting.set(id, resolve))
}

function shapeOf(s) {
  return {
    fields: toFields(s.fields), kinds: s.kinds, elements: s.elements, command: s.command ?? null, builders: new Map(),
    // Set by the client: which columns need a parser call, for which types and parser version.
    parsers: null, parsersVersion: -1, parsersOf: null,
  }
}

function columnView(d, kind, element, n, nullsAt, at) {
  const c = { kind, element, nulls: undefined, numbers: undefined, bigints: undefined, text: undefined, offsets: undefined, bytes: undefined }
  if (nullsAt >= 0) c.nulls = d.nulls.subarray(nullsAt, nullsAt + n)
  switch (kind) {
    case kinds.TEXT: case kinds.JSON: case kinds.ARRAY: case kinds.INTERVAL: case kinds.POINT: case kinds.CIRCLE:
      c.text = d.text ?? ''
      c.offsets = d.offsets.subarray(at, at + n + 1)
      break
    case kinds.BYTES:
      c.bytes = d.bytes ?? EMPTY
      c.offsets = d.offsets.subarray(at, at + n + 1)
      break
    case kinds.BIGINT:
      c.bigints = d.bigints.subarray(at, at + n)
      break
    default:
      c.numbers = d.numbers.subarray(at, at + n)
  }
  return c
}

/** Settles every query a delivery carries. A fault here (a bug) fails this client's queries
 * rather than the process. */
function deliver(inbox, d) {
  try {
    settle(inbox, d)
  } catch (err) {
    const value = { code: 'INTERNAL_ERROR', message: `the results could not be read (${err?.message}): please report this` }
    for (const [id, resolve] of inbox.waiting) {
      inbox.waiting.delete(id)
      if (--outstanding === 0) keepAlive.unref()
      resolve(value)
    }
  }
}

function settle(inbox, d) {
  // Notices before the outcomes they came with; the end of the connection after them.
  if (d.notices && inbox.onEvent) for (const n of d.notices) inbox.onEvent('notice', n)
  settleQueries(inbox, d)
  if (d.closed && inbox.onEvent) inbox.onEvent('closed', d.closed)
}

function settleQueries(inbox, d) {
  // Numbers, offsets and NULL flags travel in `head`, after its entries.
  const all = d.head
  d.numbers = all.subarray(d.numbersAt, d.offsetsAt)
  d.offsets = all.subarray(d.offsetsAt, d.nullsAt)
  d.nulls = all.subarray(d.nullsAt)
  if (d.shapes) for (const s of d.shapes) inbox.shapes.set(s.id, shapeOf(s))
  if (d.forget) inbox.forgetting.push({ ids: d.forget, horizon: inbox.lastId })
  const head = d.head, entries = d.numbersAt
  for (let p = 0; p < entries;) {
    const id = head[p], outcome = head[p + 1]
    let value
    if (outcome >= 2) {
      value = outcome === 2 ? d.errors[head[p + 2]] : { results: d.many[head[p + 2]] }
      p += 3
    } else {
      const shape = inbox.shapes.get(head[p + 2]), n = head[p + 3], count = head[p + 4]
      const more = outcome === 1 ? head[p + 5] : 0, k = head[p + 6]
      p += 7
      if (shape === undefined) {
        value = { code: 'INTERNAL_ERROR', message: 'a result named a statement this client was not told about: please report this' }
      } else {
        let columns = null
        if (n > 0) {
          columns = new Array(k)
          for (let c = 0; c < k; c++) columns[c] = columnView(d, shape.kinds[c], shape.elements[c], n, head[p + 2 * c], head[p + 2 * c + 1])
        }
        value = { shape, n, columns, rowCount: count < 0 ? null : count, more }
      }
      if (n > 0) p += 2 * k
    }
    const resolve = inbox.waiting.get(id)
    if (resolve === undefined) continue
    inbox.waiting.delete(id)
    if (--outstanding === 0) keepAlive.unref()
    resolve(value)
  }
  // A statement dropped from the native cache may still be named by results of queries sent
  // before the drop: forget it once those have all settled.
  while (inbox.forgetting.length > 0) {
    const f = inbox.forgetting[0]
    if (inbox.waiting.size > 0 && inbox.waiting.keys().next().value <= f.horizon) break
    for (const id of f.ids) inbox.shapes.delete(id)
    inbox.forgetting.shift()
  }
}

/**
 * Appends the rows of a delivered result to `rows`, with a row builder cached per statement.
 * `parsers`: per column a parser for the server's text, or `null` (see `parsersFor`).
 */
function appendShapeRows(shape, columns, n, arrayMode, rows, parsers) {
  if (n === 0) return
  let fn
  if (columns.length <= 30 && parsers === null) {
    let key = arrayMode ? 1 : 0
    for (let k = 0; k < columns.length; k++) if (columns[k].nulls !== undefined) key += 2 ** (k + 1)
    fn = shape.builders.get(key)
    if (fn === undefined) {
      fn = builderFor(shape.fields, columns, arrayMode)
      shape.builders.set(key, fn)
    }
  } else {
    fn = builderFor(shape.fields, columns, arrayMode, parsers)
  }
  fn(columns, n, rows, helpers, parsers)
}

module.exports = { makeInbox, expect, deliver, appendShapeRows }
