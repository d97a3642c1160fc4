'use strict'
// require + token (minted from the AWS credential chain, here AWS_* variables) + connect + first row.
const { performance, target, report, fail } = require('./common.cjs')

const start = performance.now()
const { connect } = require(process.env.BENCH_DSQL_TUNNEL || '../../index.js')
const required = performance.now()

connect({ host: target.host, hostaddr: target.hostaddr, port: target.port, user: target.user, database: target.database, sslrootcert: target.caFile })
  .then(async (client) => {
    const connected = performance.now()
    const { rows } = await client.query('select 1 as one')
    const firstRow = performance.now()
    report({ start, require: required - start, token: null, connect: connected - required, firstRow: firstRow - connected, total: firstRow - start }, rows[0].one === 1)
    await client.end()
  })
  .catch(fail)
