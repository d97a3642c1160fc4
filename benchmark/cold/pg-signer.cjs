'use strict'
// pg with @aws-sdk/dsql-signer: the token from the AWS credential chain, TCP to the tunnel,
// ssl.servername for SNI and verification.
const fs = require('node:fs')
const { performance, target, report, fail } = require('./common.cjs')

const start = performance.now()
const pg = require('pg')
const { DsqlSigner } = require('@aws-sdk/dsql-signer')
const required = performance.now()

async function main() {
  const token = await new DsqlSigner({ hostname: target.host, region: target.region }).getDbConnectAdminAuthToken()
  const signed = performance.now()
  const client = new pg.Client({
    host: target.hostaddr, port: target.port, user: target.user, database: target.database, password: token,
    ssl: { servername: target.host, ca: fs.readFileSync(target.caFile, 'utf8'), rejectUnauthorized: true },
  })
  await client.connect()
  const connected = performance.now()
  const { rows } = await client.query('select 1 as one')
  const firstRow = performance.now()
  report({ start, require: required - start, token: signed - required, connect: connected - signed, firstRow: firstRow - connected, total: firstRow - start }, rows[0].one === 1)
  await client.end()
}
main().catch(fail)
