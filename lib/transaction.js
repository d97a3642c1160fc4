'use strict'
// Transactions that retry on optimistic-concurrency conflicts, as AWS's DSQL connectors do.

// DSQL reports conflicts at COMMIT as 40001 with the OCC code in the message; older servers sent
// OC000/OC001 as the code itself.
const OCC_IN_MESSAGE = /\bOC00[01]\b/

// ORMs wrap driver errors (Drizzle's DrizzleQueryError keeps ours as `cause`): look down the chain.
const MAX_CAUSES = 8

/** The first error on `err`'s `cause` chain (itself included) that `test` accepts, or null. */
function findCause(err, test) {
  for (let e = err, n = 0; e !== null && typeof e === 'object' && n <= MAX_CAUSES; e = e.cause, n++) {
    if (test(e)) return e
  }
  return null
}

const isOcc = (e) =>
  e.code === '40001' || e.code === 'OC000' || e.code === 'OC001' || (typeof e.message === 'string' && OCC_IN_MESSAGE.test(e.message))

/**
 * Whether `err` (or an error on its `cause` chain) is an optimistic-concurrency conflict worth
 * retrying the whole transaction for.
 */
function isOccError(err) {
  return findCause(err, isOcc) !== null
}

/** DSQL's `XX000` "server unavailable": documented as retryable without reconnecting. */
function isUnavailableError(err) {
  return findCause(err, (e) => e.code === 'XX000') !== null
}

const { debug } = require('./debug')

const DEFAULTS = { retries: 3, minDelayMillis: 1, maxDelayMillis: 100, jitter: 0.25 }

function delayFor(attempt, o) {
  const base = Math.min(o.maxDelayMillis, o.minDelayMillis * 2 ** (attempt - 1))
  return Math.max(0, base * (1 + (Math.random() * 2 - 1) * o.jitter))
}

/**
 * BEGIN, fn(client), COMMIT; ROLLBACK when fn throws. An OCC conflict rolls back and runs the
 * whole callback again (so it must be idempotent), with exponential backoff and jitter.
 */
async function runTransaction(client, fn, options = {}) {
  const o = { ...DEFAULTS, ...options }
  // DSQL has only REPEATABLE READ (plain BEGIN); PostgreSQL needs it spelled out to match.
  const begin = o.isolation === 'repeatable read' ? 'BEGIN ISOLATION LEVEL REPEATABLE READ' : 'BEGIN'
  for (let attempt = 1; ; attempt++) {
    let result
    try {
      await client.query(begin)
      result = await fn(client)
      await client.query('COMMIT')
      return result
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {})
      if (!isOccError(err) && !isUnavailableError(err)) throw err
      if (attempt > o.retries) {
        err.attempts = attempt
        throw err
      }
      const delay = delayFor(attempt, o)
      debug('tx-retry', { code: (findCause(err, isOcc) ?? findCause(err, (e) => e.code === 'XX000'))?.code, attempt, inMs: delay })
      if (typeof o.onRetry === 'function') o.onRetry(err, attempt, delay)
      await new Promise((resolve) => setTimeout(resolve, delay))
    }
  }
}

function checkTransactionOptions(o) {
  const { invalidArgument } = require('./errors')
  if (o === undefined || o === null) return
  if (typeof o !== 'object') throw invalidArgument('transaction options must be an object')
  for (const k of ['retries', 'minDelayMillis', 'maxDelayMillis', 'jitter']) {
    if (o[k] !== undefined && !(typeof o[k] === 'number' && o[k] >= 0)) throw invalidArgument(`transaction option ${k} must be a number >= 0`)
  }
  if (o.isolation !== undefined && o.isolation !== 'repeatable read') throw invalidArgument("isolation must be 'repeatable read' (DSQL's only level) or left out")
  if (o.onRetry !== undefined && typeof o.onRetry !== 'function') throw invalidArgument('onRetry must be a function')
}

module.exports = { isOccError, isUnavailableError, findCause, runTransaction, checkTransactionOptions }
