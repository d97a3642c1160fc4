#!/usr/bin/env node
'use strict'
// dsql-tunnel command line. `check` is the connectivity experiment's test, in its format.

const { connect, resolveConfig } = require('../index.js')

const USAGE = `Usage: dsql-tunnel check

Connects through the tunnel with the settings from the environment (HOSTNAME or PGHOST, PGHOSTADDR,
PGPORT, PGUSER, PGPASSWORD, PGSSLMODE, PGSSLROOTCERT, …) and prints the connection information.`

async function check() {
  const out = (s = '') => process.stdout.write(s + '\n')
  out('DSQL Connectivity Test - Node.js (dsql-tunnel)')
  out('==============================================')
  let client
  try {
    const cfg = resolveConfig()
    out(`Connecting to DSQL cluster: ${cfg.host}`)
    out(`Through tunnel address: ${cfg.hostaddr ?? cfg.host}:${cfg.port}`)
    client = await connect()
    out('Connection established successfully!')
    const { rows } = await client.query(
      "select current_database() as database, current_user as user, current_setting('server_version') as version",
    )
    const info = client.connection
    const verified = { full: `certificate verified for ${info.host}`, chain: 'certificate chain verified', none: 'certificate NOT verified' }
    out()
    out('Connection Information:')
    out('======================')
    out(`Database: ${rows[0].database}`)
    out(`User: ${rows[0].user}`)
    out(`Host: ${info.hostaddr ?? info.host} (via tunnel to ${info.host})`)
    out(`Port: ${info.port}`)
    out(`SSL Status: SSL connection (required by DSQL); ${verified[info.verification]}, ${info.sslnegotiation} negotiation`)
    out(`Server Version: PostgreSQL ${String(rows[0].version).split(' ')[0]}`)
    out()
    out('Connection test completed successfully!')
    return 0
  } catch (e) {
    out()
    out(`Connection failed: ${e.code ?? 'ERROR'}: ${e.message}`)
    return 1
  } finally {
    await client?.end()
  }
}

async function main(argv) {
  const [command] = argv
  if (command === 'check') return check()
  process.stderr.write(USAGE + '\n')
  return command === '--help' || command === '-h' ? 0 : 2
}

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code
})
