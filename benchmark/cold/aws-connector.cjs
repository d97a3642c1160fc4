'use strict'
// @aws/aurora-dsql-node-postgres-connector: it signs the token for `host` and pg dials that same
// `host`, so it has no way to send TCP to a tunnel. What its users do is map the cluster's name to
// the tunnel in /etc/hosts; this process does the same for that one name (not timed), and the
// connector then dials the tunnel's port with SNI and verification for the cluster's name.
const dns = require('node:dns')
const fs = require('node:fs')
const { performance, target, report, fail } = require('./common.cjs')

const systemLookup = dns.lookup
dns.lookup = function lookup(hostname, options, callback) {
  if (hostname !== target.host) return systemLookup.apply(dns, arguments)
  const cb = typeof options === 'function' ? options : callback
  const all = typeof options === 'object' && options !== null && options.all
  process.nextTick(() => (all ? cb(null, [{ address: target.hostaddr, family: 4 }]) : cb(null, target.hostaddr, 4)))
}

const start = performance.now()
const { AuroraDSQLClient } = require('@aws/aurora-dsql-node-postgres-connector')
const required = performance.now()

async function main() {
  const client = new AuroraDSQLClient({
    host: target.host, port: target.port, user: target.user, database: target.database,
    ssl: { ca: fs.readFileSync(target.caFile, 'utf8'), rejectUnauthorized: true },
  })
  await client.connect() // token + TCP + TLS + auth
  const connected = performance.now()
  const { rows } = await client.query('select 1 as one')
  const firstRow = performance.now()
  report({ start, require: required - start, token: null, connect: connected - required, firstRow: firstRow - connected, total: firstRow - start }, rows[0].one === 1)
  await client.end()
}
main().catch(fail)
