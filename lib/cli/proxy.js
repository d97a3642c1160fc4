'use strict'
// `dsql-tunnel proxy`: the local auth proxy from the command line. One line when ready (where it
// listens and how to connect); SIGINT/SIGTERM: stop accepting, let sessions finish for the grace
// period, close the rest, exit 0.

const fs = require('node:fs')
const { randomBytes } = require('node:crypto')
const { adviceFor } = require('./advice')
const { adviceContext } = require('./secrets')

const DEFAULT_GRACE_SECONDS = 10

// flag → [option, value name, description]
const FLAGS = [
  ['listen', '<host:port>', 'where to listen (default 127.0.0.1:5433; port 0 picks a free one)'],
  ['unix-socket', '<dir>', 'also listen on <dir>/.s.PGSQL.<port> (mode 0600), as libpq looks for it'],
  ['max-clients', '<n>', 'client connections at once (default 100; more get SQLSTATE 53300)'],
  ['grace', '<seconds>', `on SIGINT/SIGTERM, how long open sessions may finish (default ${DEFAULT_GRACE_SECONDS})`],
  ['local-password-file', '<file>', 'clients must send the password in this file'],
  ['generate-local-password', '', 'clients must send a random password, printed in the ready line'],
  ['allow-non-loopback', '', 'allow a non-loopback --listen (needs a local password)'],
  ['skip-check', '', 'start without first checking the tunnel, TLS and credentials'],
]

const PARSE_OPTIONS = Object.fromEntries(FLAGS.map(([flag, value]) => [flag, { type: value ? 'string' : 'boolean' }]))

function help(settingsHelp) {
  const w = Math.max(...FLAGS.map(([f, v]) => `  --${f} ${v}`.length))
  const flags = FLAGS.map(([f, v, d]) => `${`  --${f} ${v}`.padEnd(w)}  ${d}`).join('\n')
  return `Usage: dsql-tunnel proxy [--listen 127.0.0.1:5433] [--unix-socket <dir>] [settings]

A local PostgreSQL endpoint for tools that cannot set SNI or mint tokens (psql, migration CLIs,
GUI clients, drivers in any language). Each client connection gets its own connection through the
tunnel: TLS with SNI and verify-full for the cluster's hostname, and a fresh IAM token for the
user the client names (admin: DbConnectAdmin, other roles: DbConnect). Clients connect with no
password and no TLS settings:

  dsql-tunnel proxy &
  psql "host=127.0.0.1 port=5433 user=admin dbname=postgres"

Anyone who can reach the listener acts with this proxy's AWS identity: it listens on loopback
only, and a unix socket is created with mode 0600. On a machine with other users, add a local
password (--local-password-file or --generate-local-password).

Before listening it checks the tunnel, TLS and that a token can be minted, and refuses to start
with the reason when one is broken (skip with --skip-check). DEBUG=dsql-tunnel logs each session
(accepted, upstream phases with timings, bytes each way, close reason) on stderr.

Proxy:
${flags}

Settings (the upstream side, as for every command):
${settingsHelp}

Exit status: 0 stopped by SIGINT/SIGTERM, 1 could not start, 2 usage error.`
}

/** The proxy's own flags, checked; `usage(message)` makes a usage error. */
function proxyOptions(values, usage) {
  const out = {}
  if (values.listen !== undefined) out.listen = values.listen
  if (values['unix-socket'] !== undefined) out.unixSocketDir = values['unix-socket']
  if (values['max-clients'] !== undefined) {
    const n = Number(values['max-clients'])
    if (!Number.isInteger(n) || n < 1) throw usage('--max-clients takes a whole number of at least 1')
    out.maxClients = n
  }
  let grace = DEFAULT_GRACE_SECONDS
  if (values.grace !== undefined) {
    grace = Number(values.grace)
    if (!Number.isFinite(grace) || grace < 0) throw usage('--grace takes a number of seconds')
  }
  if (values['local-password-file'] !== undefined && values['generate-local-password']) {
    throw usage('give --local-password-file or --generate-local-password, not both')
  }
  let generated
  if (values['local-password-file'] !== undefined) {
    let text
    try {
      text = fs.readFileSync(values['local-password-file'], 'utf8')
    } catch (e) {
      throw usage(`--local-password-file: cannot read ${values['local-password-file']} (${e.code ?? e.message})`)
    }
    out.localPassword = text.replace(/\r?\n$/, '')
    if (!out.localPassword) throw usage('--local-password-file: the file is empty')
  } else if (values['generate-local-password']) {
    generated = randomBytes(18).toString('base64url')
    out.localPassword = generated
  }
  if (values['allow-non-loopback']) out.allowNonLoopback = true
  if (values['skip-check']) out.check = false
  return { proxy: out, graceMillis: Math.round(grace * 1000), generated }
}

/** The one line printed when ready. */
function readyLine(proxy, { user, generated }) {
  const host = proxy.host
  const conninfo = [`host=${host}`, `port=${proxy.port}`, `user=${user}`, 'dbname=postgres']
  if (generated) conninfo.push(`password=${generated}`)
  const socket = proxy.socketPath ? ` and ${proxy.socketPath}` : ''
  return `dsql-tunnel proxy listening on ${host.includes(':') ? `[${host}]` : host}:${proxy.port}${socket}; connect with: psql "${conninfo.join(' ')}" (anyone who can reach it acts with this proxy's AWS identity)`
}

/**
 * Starts the proxy and waits for SIGINT/SIGTERM. Resolves with the exit status.
 * `lib` is the package (for resolveConfig/decodeToken in advice), `startProxy` lib/proxy.js's.
 */
async function runProxy({ lib, startProxy, options, values, usage, stdout, stderr, paintErr, signals = process }) {
  const { proxy: extra, graceMillis, generated } = proxyOptions(values, usage)
  let cfg
  let proxy
  try {
    cfg = lib.resolveConfig(options)
    proxy = await startProxy({ ...options, ...extra })
  } catch (e) {
    const ctx = adviceContext(lib, cfg, options)
    stderr.write(`${paintErr.red(`Error: ${e.code ?? 'ERROR'}: ${e.message}`)}\n${paintErr.bold('Fix:')} ${adviceFor(e, ctx)}\n`)
    return 1
  }
  stdout.write(`${readyLine(proxy, { user: cfg.user, generated })}\n`)
  // The listener lives on native threads, which hold no event loop: this keeps the command running.
  const keepAlive = setInterval(() => {}, 1 << 30)
  return new Promise((resolve) => {
    let stopping = false
    const stop = (signal) => {
      clearInterval(keepAlive)
      if (stopping) {
        // A second signal: do not wait for the sessions.
        resolve(0)
        return
      }
      stopping = true
      stderr.write(`dsql-tunnel proxy: ${signal}: no new connections; open sessions have ${graceMillis / 1000} s to finish\n`)
      proxy.close(graceMillis).then((forced) => {
        stderr.write(`dsql-tunnel proxy: stopped${forced ? ` (${forced} session${forced === 1 ? '' : 's'} closed)` : ''}\n`)
        resolve(0)
      }, () => resolve(1))
    }
    signals.on('SIGINT', () => stop('SIGINT'))
    signals.on('SIGTERM', () => stop('SIGTERM'))
  })
}

module.exports = { PARSE_OPTIONS, FLAGS, help, proxyOptions, readyLine, runProxy }
