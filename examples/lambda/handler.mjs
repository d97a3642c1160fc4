// An AWS Lambda handler (Node.js 20+ runtime, ES module) that queries Aurora DSQL.
//
// The pool lives at module scope: an execution environment opens its connection once and reuses it
// for every invocation it serves. There is no password anywhere: each new connection gets a fresh
// IAM token signed with the function's role (the runtime's AWS_* credentials), so a connection
// opened an hour after the cold start authenticates just as well as the first one.
//
// Settings come from the function's environment: PGHOST (the cluster endpoint; SNI, certificate,
// token), PGHOSTADDR (only when TCP must go somewhere else, e.g. a tunnel), PGUSER (default admin).
import { Pool } from 'dsql-tunnel'

const pool = new Pool({
  // One invocation at a time per environment; concurrent queries of one invocation pipeline on it.
  max: 1,
  // DSQL ends every connection after 60 minutes. 45 minutes plus Lambda's longest invocation
  // (15 minutes) stays under that, so a connection handed out is never cut mid-invocation.
  maxLifetimeSeconds: Number(process.env.POOL_MAX_LIFETIME_SECONDS ?? 2700),
  // An environment left frozen longer than this reconnects rather than trust an old socket.
  idleTimeoutMillis: 5 * 60_000,
  // Bounds connecting (TCP, TLS, token, auth) including retries of DSQL's admission errors.
  connectionTimeoutMillis: 5_000,
})

// A dropped connection is never handed out again, and a query that never left is rerun on a new
// one by the pool. A query already sent when the connection died (a network blip, a cut landing
// on a thawed environment) may or may not have run, so only idempotent work is retried here.
async function readOnly(text, values) {
  try {
    return await pool.query(text, values)
  } catch (err) {
    if (err.code !== 'CONNECTION_LOST') throw err
    return pool.query(text, values)
  }
}

export async function handler(event) {
  const { rows } = await readOnly(
    'select $1::text as greeting, current_user as "user", now() as "at"',
    [`hello, ${event?.name ?? 'world'}`],
  )
  return { statusCode: 200, body: JSON.stringify(rows[0]) }
}
