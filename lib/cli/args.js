'use strict'
// Flags shared by every subcommand mirror the library's options; parsing is node:util's parseArgs
// (strict: an unknown flag is a usage error).

const { parseArgs } = require('node:util')
const proxyCli = require('./proxy')

/** A usage error: exit status 2, with the subcommand's help. */
class UsageError extends Error {
  constructor(message, command) {
    super(message)
    this.name = 'UsageError'
    this.command = command
  }
}

// flag → [option name, value name, description, environment]
const SETTINGS = [
  ['host', 'host', '<hostname>', "the cluster's DSQL hostname: TLS SNI, certificate, token", 'HOSTNAME, PGHOST'],
  ['hostaddr', 'hostaddr', '<address>', 'the tunnel address (IP or localhost); TCP goes here', 'PGHOSTADDR'],
  ['port', 'port', '<port>', 'the tunnel port (default 5432)', 'PGPORT'],
  ['tunnel', 'tunnel', '<ssh://user@bastion>', 'open the tunnel in-process; its far end dials hostaddr or host', 'DSQL_TUNNEL'],
  ['user', 'user', '<role>', 'database role (default admin)', 'PGUSER'],
  ['database', 'database', '<name>', 'database (default postgres)', 'PGDATABASE'],
  ['sslmode', 'sslmode', '<mode>', 'verify-full (default), verify-ca or require', 'PGSSLMODE'],
  ['sslrootcert', 'sslrootcert', '<file|system>', 'trusted CAs (default: bundled roots, incl. Amazon Root CA 1)', 'PGSSLROOTCERT'],
  ['sslnegotiation', 'sslnegotiation', '<mode>', 'direct (default for DSQL hosts) or postgres', 'PGSSLNEGOTIATION'],
  ['region', 'region', '<region>', "token signing region (default: the hostname's)", 'AWS_REGION'],
  ['profile', 'profile', '<name>', 'AWS profile for the credential chain', 'AWS_PROFILE'],
  ['expires-in', 'tokenDurationSecs', '<seconds>', 'lifetime of minted tokens (default 900)', ''],
  ['connect-timeout', 'connectionTimeoutMillis', '<seconds>', 'bound on TCP + TLS + authentication (default 10)', 'PGCONNECT_TIMEOUT'],
  ['application-name', 'applicationName', '<name>', 'application_name reported to the server', 'PGAPPNAME'],
  ['connection-string', 'connectionString', '<string>', 'postgres:// URL or libpq key=value string', ''],
]

const FLAG_FOR_OPTION = Object.fromEntries(SETTINGS.map(([flag, option]) => [option, `--${flag}`]))
FLAG_FOR_OPTION.password = '--password-stdin'

function settingsHelp() {
  const rows = SETTINGS.map(([flag, , value, desc, env]) => [`  --${flag} ${value}`, desc, env])
  rows.push(['  --password-stdin', 'read the password (a token) from standard input', 'PGPASSWORD'])
  return table(rows)
}

function table(rows) {
  const w0 = Math.max(...rows.map((r) => r[0].length))
  const w1 = Math.max(...rows.map((r) => r[1].length))
  return rows.map(([a, b, c]) => (c ? `${a.padEnd(w0)}  ${b.padEnd(w1)}  ${c}` : `${a.padEnd(w0)}  ${b}`).trimEnd()).join('\n')
}

const COMMON_OUTPUT = `Output:
  --json              machine-readable output on stdout
  --no-color          no colour (also: NO_COLOR=1; colour is only used on a terminal)
  -h, --help          this help`

const PASSWORD_NOTE = `The password comes from PGPASSWORD (preferred), the connection string or --password-stdin; there
is no --password flag, so it never lands in your shell history. With no password and a DSQL
hostname, a token is minted for every connection from your AWS credentials (environment,
AWS_PROFILE, SSO, instance role…). Precedence per setting: flag > connection string > environment
> default.`

const EXIT_NOTE = 'Exit status: 0 success, 1 the check failed, 2 usage error.'

const HELP = {
  main: `Usage: dsql-tunnel <command> [settings] [options]

Reach Amazon Aurora DSQL through an SSH or SSM tunnel: TCP goes to the tunnel (hostaddr, e.g.
127.0.0.1), while TLS SNI, certificate verification and IAM tokens use the cluster's hostname (host).

Commands:
  check [connection-string]          the connectivity test: connect through the tunnel and print
                                     the connection information
  doctor [connection-string]         check each step (configuration, tunnel, TLS, SNI, token,
                                     authentication, query) and say how to fix what fails
  token                              print a fresh DSQL auth token
  query <sql> [params...]            run one statement through the tunnel and print the rows
  proxy [--listen 127.0.0.1:5433]    a local PostgreSQL endpoint: any client, no token, no SNI

Settings (every command):
${settingsHelp()}

${COMMON_OUTPUT}
  --version           print the version

${PASSWORD_NOTE}

${EXIT_NOTE}
Run \`dsql-tunnel <command> --help\` for a command's details.`,

  check: `Usage: dsql-tunnel check [connection-string] [settings] [--json]

The connectivity experiment's test: connects through the tunnel (TCP to hostaddr:port; TLS SNI,
certificate verification and the token for host), reads the connection information from the
server and prints it in the experiment's format. On failure, prints the error code and what to do.

With the experiment's variables:
  HOSTNAME=<cluster>.dsql-<suffix>.<region>.on.aws PGHOSTADDR=127.0.0.1 PGPASSWORD=<token> dsql-tunnel check

Settings:
${settingsHelp()}

${COMMON_OUTPUT}

${PASSWORD_NOTE}

${EXIT_NOTE}`,

  doctor: `Usage: dsql-tunnel doctor [connection-string] [settings] [--json]

The experiment's troubleshooting steps, automated; one line per step with its verdict and, when it
fails, the fix:
  configuration    which settings are set and where each value came from (secrets redacted)
  tunnel           the tunnel port accepts TCP
  TLS              negotiation, TLS version, certificate subject, issuer, expiry, chain, and the
                   name verified against the DSQL hostname
  SNI              the server accepts the SNI (sends no credentials)
  token            the token: action, region, hostname, time left (or: will one be minted?)
  authentication   a real connection, as your application makes it
  query            select current_user, version()
  limits           DSQL limits worth knowing (60-minute connections, transaction limits)
It stops at the first failure that makes later steps meaningless and says so.

Settings:
${settingsHelp()}

${COMMON_OUTPUT}

${PASSWORD_NOTE}

Exit status: 0 every step passed (warnings allowed), 1 a step failed, 2 usage error.`,

  token: `Usage: dsql-tunnel token [--host <hostname>] [--region <region>] [--expires-in <seconds>] [--user <role>] [--profile <name>]

Prints a fresh DSQL auth token for host, like \`aws dsql generate-db-connect-admin-auth-token\`
(user admin, action DbConnectAdmin) or \`generate-db-connect-auth-token\` (any other role,
DbConnect), signed with your AWS credentials (environment, AWS_PROFILE / --profile, SSO, …).
host defaults to HOSTNAME / PGHOST, user to PGUSER or admin, region to the hostname's,
--expires-in to 900 seconds (1 to 604800).

  export PGPASSWORD=$(dsql-tunnel token --host abc.dsql-fnh4.us-east-1.on.aws)

Options:
  --host, --hostname <hostname>   the cluster's DSQL hostname (never the tunnel address)
  --region <region>               signing region (default: the hostname's)
  --expires-in <seconds>          token lifetime (default 900)
  --user <role>                   admin → DbConnectAdmin, other roles → DbConnect
  --profile <name>                AWS profile
  -h, --help                      this help

The other settings flags are accepted and ignored. ${EXIT_NOTE}`,

  query: `Usage: dsql-tunnel query <sql> [params...] [settings] [--json]

Runs one statement through the tunnel and prints the rows as an aligned table, or with --json as a
JSON array. Parameters ($1, $2, …) are sent as text and typed by the server. Put \`--\` before
parameters that start with a dash.

  dsql-tunnel query 'select $1::int + 1 as answer' 41
  dsql-tunnel query --json 'select * from pg_tables where schemaname = $1' public

Settings:
${settingsHelp()}

${COMMON_OUTPUT}

${PASSWORD_NOTE}

Exit status: 0 the statement ran, 1 it failed (connection or SQL error), 2 usage error.`,

  proxy: proxyCli.help(settingsHelp()),
}

const PARSE_OPTIONS = {
  help: { type: 'boolean', short: 'h' },
  json: { type: 'boolean' },
  'no-color': { type: 'boolean' },
  version: { type: 'boolean' },
  'password-stdin': { type: 'boolean' },
  'token-duration': { type: 'string' },
  hostname: { type: 'string' },
  ...Object.fromEntries(SETTINGS.map(([flag]) => [flag, { type: 'string' }])),
  ...proxyCli.PARSE_OPTIONS,
}

/**
 * Parses a subcommand's arguments. Returns { values, positionals, options } where options are the
 * library options the flags set (password excepted: see readPassword).
 */
function parse(command, argv) {
  let parsed
  try {
    parsed = parseArgs({ args: argv, options: PARSE_OPTIONS, strict: true, allowPositionals: true })
  } catch (e) {
    throw new UsageError(e.message.replace(/\. To specify a positional argument.*$/s, ''), command)
  }
  const { values, positionals } = parsed
  if (command !== 'proxy') {
    const misplaced = Object.keys(proxyCli.PARSE_OPTIONS).find((f) => values[f] !== undefined)
    if (misplaced) throw new UsageError(`--${misplaced} is a flag of dsql-tunnel proxy`, command)
  }
  if (values.hostname !== undefined) {
    if (command !== 'token') throw new UsageError("Unknown option '--hostname' (did you mean --host?)", command)
    values.host ??= values.hostname
  }
  if (values['token-duration'] !== undefined) values['expires-in'] ??= values['token-duration']
  const options = {}
  for (const [flag, option] of SETTINGS) {
    const v = values[flag]
    if (v === undefined) continue
    if (v === '') throw new UsageError(`--${flag} needs a value`, command)
    options[option] = v
  }
  if (options.connectionTimeoutMillis !== undefined) {
    const s = Number(options.connectionTimeoutMillis)
    if (!Number.isFinite(s) || s < 0) throw new UsageError('--connect-timeout takes a number of seconds (0: wait forever)', command)
    options.connectionTimeoutMillis = Math.round(s * 1000)
  }
  if (options.tokenDurationSecs !== undefined) {
    const s = Number(options.tokenDurationSecs)
    if (!Number.isInteger(s) || s < 1 || s > 604800) throw new UsageError('--expires-in takes a whole number of seconds from 1 to 604800', command)
    options.tokenDurationSecs = s
  }
  return { values, positionals, options }
}

/** Reads the password from stdin for --password-stdin (one line; a trailing newline is dropped). */
async function readPassword(stdin = process.stdin) {
  if (stdin.isTTY) throw new UsageError('--password-stdin reads the password from a pipe, e.g. `aws dsql generate-db-connect-admin-auth-token … | dsql-tunnel check --password-stdin`; on a terminal use PGPASSWORD')
  const chunks = []
  for await (const chunk of stdin) chunks.push(chunk)
  const text = Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '')
  if (!text) throw new UsageError('--password-stdin: standard input was empty')
  return text
}

module.exports = { HELP, SETTINGS, FLAG_FOR_OPTION, UsageError, parse, readPassword }
