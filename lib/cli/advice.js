'use strict'
// What to do about each error code, in the words of the connectivity experiment's troubleshooting
// section, made concrete with the settings in use. The library's messages say what went wrong;
// these add the commands to run.

const { isIP } = require('node:net')

const DSQL_HOST = /^[^.]+\.dsql[^.]*\.([a-z0-9-]+)\.on\.aws$/i

/** The region in a DSQL hostname, or null. */
function regionOfHost(host) {
  return host ? DSQL_HOST.exec(host)?.[1]?.toLowerCase() ?? null : null
}

const isAddress = (host) => Boolean(host) && (isIP(host) !== 0 || host.toLowerCase() === 'localhost')

const actionFor = (user) => (user === 'admin' ? 'DbConnectAdmin' : 'DbConnect')
const cliCommandFor = (user) => (user === 'admin' ? 'generate-db-connect-admin-auth-token' : 'generate-db-connect-auth-token')

/** `dsql-tunnel token …` for these settings. */
function tokenCommand(ctx) {
  const parts = ['dsql-tunnel token']
  parts.push(`--host ${ctx.host && !isAddress(ctx.host) ? ctx.host : '<cluster>.dsql-<suffix>.<region>.on.aws'}`)
  if (ctx.user && ctx.user !== 'admin') parts.push(`--user ${ctx.user}`)
  if (ctx.regionFlag) parts.push(`--region ${ctx.regionFlag}`)
  return parts.join(' ')
}

function tunnelExamples(ctx) {
  const target = ctx.host && !isAddress(ctx.host) ? ctx.host : '<cluster>.dsql-<suffix>.<region>.on.aws'
  const port = ctx.port ?? 5432
  return `ssh -L ${port}:${target}:5432 <bastion>, or aws ssm start-session --document-name AWS-StartPortForwardingSessionToRemoteHost --parameters '{"host":["${target}"],"portNumber":["5432"],"localPortNumber":["${port}"]}' --target <instance>`
}

function configAdvice(setting) {
  const s = setting.toLowerCase()
  if (s.includes('sslrootcert')) {
    return "Set PGSSLROOTCERT (--sslrootcert) to a readable PEM file holding the server's CA, or unset it: DSQL certificates chain to Amazon Root CA 1, which is trusted by default."
  }
  if (s === 'host' || s.includes('pghost') || s.includes('hostname')) {
    return "Set HOSTNAME (or PGHOST, --host) to the cluster's DSQL hostname, e.g. abc123.dsql-fnh4.us-east-1.on.aws, and PGHOSTADDR (--hostaddr) to the tunnel address, e.g. 127.0.0.1."
  }
  if (s.includes('sslmode')) return 'Set PGSSLMODE (--sslmode) to verify-full (or unset it), verify-ca or require: DSQL requires TLS.'
  return `Correct ${setting || 'the setting'}: the message says which values are accepted (\`dsql-tunnel --help\` lists every setting).`
}

/**
 * One or two sentences saying what to do about `err` (a DsqlTunnelError), given the settings.
 * @param {{code?: string, setting?: string, hint?: string, message?: string}} err
 * @param {{host?: string, hostaddr?: string, port?: number, user?: string, sslrootcert?: string,
 *   sslmode?: string, hasPassword?: boolean, passwordIsToken?: boolean, regionFlag?: string}} ctx
 */
function adviceFor(err, ctx = {}) {
  const addr = `${ctx.hostaddr ?? ctx.host ?? '127.0.0.1'}:${ctx.port ?? 5432}`
  const code = err?.code
  switch (code) {
    case 'INVALID_CONFIG':
      return configAdvice(String(err.setting ?? ''))
    case 'ECONNREFUSED':
      return `Start the tunnel and make it forward ${addr} to the cluster's port 5432 (${tunnelExamples(ctx)}); check with \`nc -zv ${addr.replace(/:(\d+)$/, ' $1')}\`.`
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `Set PGHOSTADDR (--hostaddr) to the tunnel address, e.g. 127.0.0.1: the cluster's hostname only resolves inside its VPC.`
    case 'CONNECT_TIMEOUT':
    case 'ETIMEDOUT':
      return `The tunnel at ${addr} accepted but nothing answered: a tunnel whose far end is down does that. Restart the tunnel, check that it forwards to ${ctx.host ?? 'the cluster'}:5432 and that the bastion can reach the cluster's VPC endpoint; on a slow link raise --connect-timeout.`
    case 'ECONNRESET':
    case 'EPIPE':
    case 'CONNECTION_LOST':
      return `The tunnel at ${addr} accepted the connection but its far end closed it: check the tunnel's target (${ctx.host ?? 'the cluster'}:5432), the bastion's route to the cluster's VPC endpoint and its security group.`
    case 'SNI_REFUSED':
      if (isAddress(ctx.host)) {
        return `host is ${ctx.host}, an address, so no SNI is sent: set HOSTNAME (or PGHOST, --host) to the cluster's DSQL hostname and keep PGHOSTADDR=${ctx.hostaddr ?? ctx.host} for the tunnel.`
      }
      return `Set HOSTNAME (or PGHOST, --host) to the hostname of the cluster the tunnel leads to (the front door refused ${ctx.host ?? 'this name'}), and PGHOSTADDR to the tunnel address.`
    case 'TLS_NAME_MISMATCH':
      if (isAddress(ctx.host)) return `Set HOSTNAME (or PGHOST, --host) to the cluster's DSQL hostname, not ${ctx.host}; keep PGHOSTADDR for the tunnel address.`
      return `host must be the DSQL hostname the certificate names; if ${ctx.host} is right, the tunnel leads to another server or cluster: check the tunnel's target.`
    case 'TLS_UNKNOWN_CA':
      if (ctx.sslrootcert && !['bundled', 'system'].includes(ctx.sslrootcert)) {
        return `The certificate does not chain to PGSSLROOTCERT (${ctx.sslrootcert}): set it to the CA that signed the server's certificate, or unset it for DSQL (Amazon Root CA 1 is trusted by default).`
      }
      return `DSQL certificates chain to Amazon Root CA 1, trusted by default: something else answers through the tunnel (or intercepts TLS). For a non-DSQL server set PGSSLROOTCERT to its CA file.`
    case 'TLS_CERT_EXPIRED':
    case 'TLS_CERT_NOT_YET_VALID':
      return `Check this machine's clock (date -u); if it is right, the server's certificate is out of date and the tunnel does not lead to DSQL.`
    case 'TLS_REFUSED':
      return `The server does not offer TLS, so the tunnel does not lead to DSQL: check the tunnel's target.`
    case 'TLS_HANDSHAKE_FAILED':
      return `For a PostgreSQL server before 17 set PGSSLNEGOTIATION=postgres (--sslnegotiation postgres); otherwise check that the tunnel leads to DSQL.`
    case 'PASSWORD_MISSING':
      return `Set PGPASSWORD (for DSQL: export PGPASSWORD=$(${tokenCommand(ctx)})).`
    case 'CREDENTIALS_UNAVAILABLE':
      return `Make AWS credentials available (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE or --profile, \`aws sso login\`), or set PGPASSWORD to a token made elsewhere.`
    case 'TOKEN_EXPIRED':
      return `Generate a new token (export PGPASSWORD=$(${tokenCommand(ctx)})), or unset PGPASSWORD and dsql-tunnel mints a fresh one for every connection from your AWS credentials.`
    case 'TOKEN_HOST_MISMATCH':
      return `Sign the token for the cluster's DSQL hostname, never the tunnel address: export PGPASSWORD=$(${tokenCommand(ctx)}).`
    case 'TOKEN_ACTION_MISMATCH':
      return `User ${ctx.user ?? 'admin'} needs a ${actionFor(ctx.user ?? 'admin')} token (aws dsql ${cliCommandFor(ctx.user ?? 'admin')}): export PGPASSWORD=$(${tokenCommand(ctx)}).`
    case 'TOKEN_REGION_MISMATCH':
      return `Sign the token in the cluster's region: export PGPASSWORD=$(${tokenCommand({ ...ctx, regionFlag: ctx.regionFlag ?? regionOfHost(ctx.host) ?? undefined })}).`
    case 'TOKEN_SIGNING_FAILED':
      return `Check the AWS credentials (aws sts get-caller-identity) and the region.`
    case '28P01': {
      const hint = err.hint ? ` ${err.hint}` : ''
      if (ctx.hasPassword && !ctx.passwordIsToken) {
        return `The password is wrong for user ${ctx.user ?? 'admin'}; DSQL accepts only IAM auth tokens: export PGPASSWORD=$(${tokenCommand(ctx)}).${hint}`
      }
      return `Generate a new DSQL auth token and update PGPASSWORD (${tokenCommand(ctx)}), or leave PGPASSWORD unset to mint one per connection; check that the IAM identity may dsql:${actionFor(ctx.user ?? 'admin')} on this cluster and that the region is the cluster's.${hint}`
    }
    case '28000':
      return `The role does not exist or may not log in: DSQL's admin role is admin; other roles must be created and granted an IAM identity (AWS IAM GRANT).`
    case '3D000':
      return `DSQL has one database, postgres: unset PGDATABASE (--database).`
    case '53300':
    case '53400':
      return `DSQL is refusing new connections for now (connection limit or rate): retry shortly, and pool connections.`
    case 'PROTOCOL_ERROR':
      return `The server sent something unexpected: check that the tunnel leads to DSQL, and report it if it does.`
    default:
      return `Run \`dsql-tunnel doctor\` to check each step.`
  }
}

module.exports = { adviceFor, regionOfHost, isAddress, actionFor, cliCommandFor, tokenCommand, DSQL_HOST }
