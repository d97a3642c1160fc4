'use strict'
// `dsql-tunnel check`: the connectivity experiment's test, in its output format.

const { adviceFor } = require('./advice')
const { adviceContext, closeQuietly } = require('./secrets')

const QUERY = "select current_database() as database, current_user as user, current_setting('server_version') as version"
const VERIFIED = {
  full: (host) => `certificate verified for ${host}`,
  chain: () => 'certificate chain verified, name not checked',
  none: () => 'certificate NOT verified (sslmode=require)',
}

/** Connects, reads the connection information; returns { ok, …, error? } without printing. */
async function runCheck({ lib, options, spin = (_l, p) => p }) {
  const result = { ok: false, host: options.host ?? null, through: null }
  let cfg
  let client
  try {
    cfg = lib.resolveConfig(options)
    result.host = cfg.host
    result.through = `${cfg.hostaddr ?? cfg.host}:${cfg.port}`
    client = await spin(`Connecting to ${result.through} (TLS for ${cfg.host})`, lib.connect(options))
    result.established = true
    const { rows } = await spin('Reading the connection information', client.query(QUERY))
    const info = client.connection
    result.connection = {
      database: rows[0].database,
      user: rows[0].user,
      host: info.hostaddr ?? info.host,
      via: info.host,
      port: info.port,
      sslStatus: `SSL connection (required by DSQL); ${VERIFIED[info.verification](info.host)}, ${info.sslnegotiation} negotiation`,
      verification: info.verification,
      sslnegotiation: info.sslnegotiation,
      serverVersion: `PostgreSQL ${String(rows[0].version).split(' ')[0]}`,
    }
    result.ok = true
  } catch (e) {
    const ctx = adviceContext(lib, cfg, options)
    result.error = { code: e.code ?? 'ERROR', message: e.message, fix: adviceFor(e, ctx) }
    if (e.hint) result.error.hint = e.hint
  } finally {
    await closeQuietly(client)
  }
  return result
}

/** The experiment's format: header, connection lines, the Connection Information block. */
function renderCheck(r, { paint, paintErr, warnings = [] }) {
  const out = ['DSQL Connectivity Test - Node.js (dsql-tunnel)', '==============================================']
  const err = []
  if (r.through) {
    out.push(`Connecting to DSQL cluster: ${r.host}`)
    out.push(`Through tunnel address: ${r.through}`)
  }
  if (r.established) out.push(paint.green('Connection established successfully!'))
  if (r.ok) {
    const c = r.connection
    out.push('', 'Connection Information:', '======================')
    out.push(`Database: ${c.database}`)
    out.push(`User: ${c.user}`)
    out.push(`Host: ${c.host} (via tunnel to ${c.via})`)
    out.push(`Port: ${c.port}`)
    out.push(`SSL Status: ${c.verification === 'none' ? paint.yellow(c.sslStatus) : c.sslStatus}`)
    out.push(`Server Version: ${c.serverVersion}`)
    out.push('', paint.green('Connection test completed successfully!'))
  } else {
    err.push('', paintErr.red(`Connection failed: ${r.error.code}: ${r.error.message}`))
    if (r.error.hint && !r.error.fix.includes(r.error.hint)) err.push(`Hint: ${r.error.hint}`)
    err.push(`${paintErr.bold('Fix:')} ${r.error.fix}`)
    err.push('Run `dsql-tunnel doctor` to check each step.')
  }
  if (warnings.length && !err.length) err.push('')
  for (const w of warnings) err.push(`${paintErr.yellow('Warning:')} ${w.message}`)
  return { stdout: out.join('\n'), stderr: err.length ? err.join('\n') : '' }
}

module.exports = { runCheck, renderCheck }
