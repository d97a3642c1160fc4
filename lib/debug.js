'use strict'
// `DEBUG=dsql-tunnel` (or `dsql-tunnel*`, `*`): connection lifecycle events with timings on
// stderr. Never a password, token or credential: callers pass only names, codes and numbers.

const enabled = (process.env.DEBUG ?? '')
  .split(/[\s,]+/)
  .some((p) => p === '*' || p === 'dsql-tunnel' || p === 'dsql-tunnel*' || p === 'dsql-tunnel:*')

const ms = (n) => `${Math.round(n * 10) / 10}ms`

function debug(event, fields) {
  if (!enabled) return
  let line = `dsql-tunnel ${new Date().toISOString()} ${event}`
  for (const [k, v] of Object.entries(fields ?? {})) {
    if (v !== undefined && v !== null) line += ` ${k}=${typeof v === 'number' && k.endsWith('Ms') ? ms(v) : v}`
  }
  process.stderr.write(line + '\n')
}

module.exports = { debug, debugEnabled: enabled }
