'use strict'
// `dsql-tunnel query "<sql>" [params…]`: one statement through the tunnel, printed as a table or JSON.

const { adviceFor } = require('./advice')
const { formatTable, jsonReplacer } = require('./output')
const { adviceContext, closeQuietly } = require('./secrets')

async function runQuery({ lib, options, sql, params, spin = (_l, p) => p }) {
  let cfg
  let client
  try {
    cfg = lib.resolveConfig(options)
    client = await spin(`Connecting to ${cfg.hostaddr ?? cfg.host}:${cfg.port} (TLS for ${cfg.host})`, lib.connect(options))
    const r = await spin('Running the statement', client.query(sql, params.length ? params : undefined))
    return { ok: true, results: Array.isArray(r) ? r : [r] }
  } catch (e) {
    const ctx = adviceContext(lib, cfg, options)
    const error = { code: e.code ?? 'ERROR', message: e.message, fix: adviceFor(e, ctx) }
    for (const k of ['detail', 'hint', 'position']) if (e[k]) error[k] = e[k]
    return { ok: false, error }
  } finally {
    await closeQuietly(client)
  }
}

function renderQuery(r, { json }) {
  if (json) {
    const rows = r.results.length === 1 ? r.results[0].rows : r.results.map((x) => x.rows)
    return JSON.stringify(rows, jsonReplacer, 2)
  }
  return r.results.map(formatTable).join('\n\n')
}

function renderQueryError(error, { paintErr }) {
  const lines = [paintErr.red(`ERROR: ${error.code}: ${error.message}`)]
  if (error.detail) lines.push(`DETAIL: ${error.detail}`)
  if (error.hint) lines.push(`HINT: ${error.hint}`)
  // SQL errors explain themselves; connection errors get the fix.
  if (!/^[0-9A-Z]{5}$/.test(error.code) || /^(08|28|53|3D)/.test(error.code)) lines.push(`${paintErr.bold('Fix:')} ${error.fix}`)
  return lines.join('\n')
}

module.exports = { runQuery, renderQuery, renderQueryError }
