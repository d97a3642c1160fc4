'use strict'
// The password the library will use, read the way it reads it (option > connection string >
// PGPASSWORD), so doctor can decode a token. It is never printed.

/** Extracts `password` from a postgres:// URL or a libpq key=value string; undefined if absent. */
function passwordInConnectionString(s) {
  if (typeof s !== 'string') return undefined
  if (/^postgres(ql)?:\/\//i.test(s)) {
    try {
      const url = new URL(s)
      const q = url.searchParams.get('password')
      if (q !== null) return q
      return url.password ? decodeURIComponent(url.password) : undefined
    } catch {
      return undefined
    }
  }
  // key = value pairs; values may be 'single quoted' with \' and \\ escapes.
  const re = /\s*([A-Za-z_]+)\s*=\s*(?:'((?:[^'\\]|\\.)*)'|(\S*))/gy
  let m
  let found
  while ((m = re.exec(s)) !== null && m[0] !== '') {
    if (m[1] === 'password') found = m[2] !== undefined ? m[2].replace(/\\(.)/g, '$1') : m[3]
  }
  return found
}

/** The password in effect, given resolveConfig's `sources.password`. */
function effectivePassword(source, options, env = process.env) {
  if (source === 'option') return typeof options.password === 'string' ? options.password : undefined
  if (source === 'connection string') return passwordInConnectionString(options.connectionString)
  if (source && source.startsWith('environment')) return env.PGPASSWORD
  return undefined
}

/** An access key id shortened for display (it identifies, it does not authenticate). */
const maskKeyId = (id) => (typeof id === 'string' && id.length > 8 ? `${id.slice(0, 4)}…${id.slice(-4)}` : '…')

/** What adviceFor needs to know about the settings (never the password itself). */
function adviceContext(lib, cfg, options, env = process.env) {
  if (!cfg) return { regionFlag: options.region }
  const password = cfg.hasPassword ? effectivePassword(cfg.sources.password, options, env) : undefined
  return {
    host: cfg.host, hostaddr: cfg.hostaddr, port: cfg.port, user: cfg.user, sslrootcert: cfg.sslrootcert, sslmode: cfg.sslmode,
    hasPassword: cfg.hasPassword, passwordIsToken: password !== undefined && lib.decodeToken(password) !== null, regionFlag: options.region,
  }
}

// Terminate is on its way once end() starts; waiting for the server to hang up adds nothing here.
const CLOSE_WAIT_MILLIS = 250

/** Ends a client, waiting a bounded time for the close to finish. */
async function closeQuietly(client) {
  if (!client) return
  let timer
  await Promise.race([
    client.end().catch(() => {}),
    new Promise((resolve) => {
      timer = setTimeout(resolve, CLOSE_WAIT_MILLIS)
      timer.unref()
    }),
  ])
  clearTimeout(timer)
}

module.exports = { passwordInConnectionString, effectivePassword, maskKeyId, adviceContext, closeQuietly }
