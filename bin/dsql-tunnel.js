#!/usr/bin/env node
'use strict'
// dsql-tunnel command line: check (the connectivity experiment's test), doctor (its
// troubleshooting steps, automated), token (a fresh IAM token), query (one statement) and proxy
// (a local endpoint for any PostgreSQL client).
// The pieces live in lib/cli/; this file parses the command line and sets exit codes.

const { HELP, UsageError, parse, readPassword } = require('../lib/cli/args')
const { colorEnabled, painter, withSpinner } = require('../lib/cli/output')

const EXIT_OK = 0
const EXIT_FAILED = 1
const EXIT_USAGE = 2

const COMMANDS = new Set(['check', 'doctor', 'token', 'query', 'proxy'])

// The addon loads only when a command needs it, so --help works anywhere.
const library = () => require('../index.js')

/** The library's own warnings (sslmode=require) are shown by the commands, in their format. */
function captureWarnings() {
  const captured = []
  const original = process.emitWarning
  process.emitWarning = function (warning, options, ...rest) {
    const code = typeof options === 'object' && options !== null ? options.code : rest[0]
    if (typeof code === 'string' && code.startsWith('DSQL_TUNNEL_')) {
      captured.push({ code, message: String(warning?.message ?? warning) })
      return
    }
    return original.call(process, warning, options, ...rest)
  }
  return captured
}

function write(stream, text) {
  if (text) stream.write(text.endsWith('\n') ? text : `${text}\n`)
}

async function main(argv) {
  const [command, ...rest] = argv
  if (command === undefined) {
    write(process.stderr, HELP.main)
    return EXIT_USAGE
  }
  if (command === '-h' || command === '--help') {
    write(process.stdout, HELP.main)
    return EXIT_OK
  }
  if (command === 'help') {
    const topic = COMMANDS.has(rest[0]) ? rest[0] : 'main'
    write(process.stdout, HELP[topic])
    return rest[0] === undefined || COMMANDS.has(rest[0]) ? EXIT_OK : EXIT_USAGE
  }
  if (command === '--version' || command === '-v') {
    write(process.stdout, require('../package.json').version)
    return EXIT_OK
  }
  if (!COMMANDS.has(command)) throw new UsageError(`unknown command ${JSON.stringify(command)}`, 'main')

  const { values, positionals, options } = parse(command, rest)
  if (values.help) {
    write(process.stdout, HELP[command])
    return EXIT_OK
  }
  const json = Boolean(values.json)
  const noColor = Boolean(values['no-color'])
  const paint = painter(!json && colorEnabled(process.stdout, { noColor }))
  const paintErr = painter(colorEnabled(process.stderr, { noColor }))
  const spin = (label, promise) => withSpinner(process.stderr, `${label}…`, promise)

  if (command === 'check' || command === 'doctor') {
    if (positionals.length > 1) throw new UsageError(`${command} takes at most one argument, a connection string`, command)
    if (positionals.length === 1) {
      if (options.connectionString !== undefined) throw new UsageError('give the connection string once: as the argument or with --connection-string', command)
      options.connectionString = positionals[0]
    }
  } else if (command === 'token' && positionals.length > 0) {
    throw new UsageError(`token takes no arguments (got ${JSON.stringify(positionals[0])}); use --host`, command)
  } else if (command === 'proxy' && positionals.length > 0) {
    throw new UsageError(`proxy takes no arguments (got ${JSON.stringify(positionals[0])}); use --connection-string`, command)
  } else if (command === 'query' && positionals.length === 0) {
    throw new UsageError('query needs the SQL: dsql-tunnel query "<sql>" [params...]', command)
  }
  if (values['password-stdin']) options.password = await readPassword()

  const lib = library()
  const warnings = captureWarnings()

  if (command === 'check') {
    const { runCheck, renderCheck } = require('../lib/cli/check')
    const r = await runCheck({ lib, options, spin })
    if (json) {
      write(process.stdout, JSON.stringify({ ...r, ...(warnings.length ? { warnings } : {}) }, null, 2))
    } else {
      const text = renderCheck(r, { paint, paintErr, warnings })
      write(process.stdout, text.stdout)
      write(process.stderr, text.stderr)
    }
    return r.ok ? EXIT_OK : EXIT_FAILED
  }

  if (command === 'doctor') {
    const { runDoctor, renderDoctor, doctorJson } = require('../lib/cli/doctor')
    const report = await runDoctor({ lib, options, spin })
    write(process.stdout, json ? JSON.stringify(doctorJson(report), null, 2) : renderDoctor(report, { paint }))
    return report.ok ? EXIT_OK : EXIT_FAILED
  }

  if (command === 'token') {
    const { runToken } = require('../lib/cli/token')
    const r = await runToken({ lib, options })
    if (r.ok) {
      write(process.stdout, r.token)
      return EXIT_OK
    }
    write(process.stderr, `${paintErr.red(`Error: ${r.error.code}: ${r.error.message}`)}\n${paintErr.bold('Fix:')} ${r.error.fix}`)
    return EXIT_FAILED
  }

  if (command === 'proxy') {
    const { runProxy } = require('../lib/cli/proxy')
    const { startProxy } = require('../lib/proxy')
    const usage = (message) => new UsageError(message, command)
    return runProxy({ lib, startProxy, options, values, usage, stdout: process.stdout, stderr: process.stderr, paintErr })
  }

  // query
  const { runQuery, renderQuery, renderQueryError } = require('../lib/cli/query')
  const [sql, ...params] = positionals
  const r = await runQuery({ lib, options, sql, params, spin })
  if (!r.ok) {
    if (json) write(process.stdout, JSON.stringify({ error: r.error }, null, 2))
    write(process.stderr, renderQueryError(r.error, { paintErr }))
    return EXIT_FAILED
  }
  write(process.stdout, renderQuery(r, { json }))
  for (const w of warnings) write(process.stderr, `${paintErr.yellow('Warning:')} ${w.message}`)
  return EXIT_OK
}

// `dsql-tunnel query … | head`: a reader that hangs up early is not an error.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (e) => {
    if (e.code === 'EPIPE') process.exit(process.exitCode ?? EXIT_OK)
    throw e
  })
}

/** Exits once stdout and stderr have flushed: a connection still closing must not hold the shell. */
function exitWhenFlushed(code) {
  process.exitCode = code
  let pending = 2
  const done = () => --pending === 0 && process.exit(code)
  process.stdout.write('', done)
  process.stderr.write('', done)
}

main(process.argv.slice(2)).then(
  exitWhenFlushed,
  (e) => {
    if (e instanceof UsageError) {
      const help = HELP[e.command] ?? HELP.main
      write(process.stderr, `dsql-tunnel${e.command && e.command !== 'main' ? ` ${e.command}` : ''}: ${e.message}\n\n${help}`)
      exitWhenFlushed(EXIT_USAGE)
      return
    }
    write(process.stderr, `dsql-tunnel: unexpected error: ${e?.stack ?? e}`)
    exitWhenFlushed(EXIT_FAILED)
  },
)
