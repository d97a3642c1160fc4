'use strict'
// `dsql-tunnel token`: a fresh DSQL auth token on stdout, like `aws dsql generate-db-connect-auth-token`.

const { adviceFor } = require('./advice')
const { UsageError } = require('./args')

/** host and user come from the flags, else from the settings the library would use. */
function tokenTarget(lib, options, env = process.env) {
  let host = options.host
  let user = options.user
  if (host === undefined || user === undefined) {
    try {
      const cfg = lib.resolveConfig(options)
      host ??= cfg.host
      user ??= cfg.user
    } catch {
      // A setting the token does not need may be wrong: fall back to the environment.
      host ??= env.PGHOST ?? (/\.on\.aws$/i.test(env.HOSTNAME ?? '') ? env.HOSTNAME : undefined)
      user ??= env.PGUSER ?? 'admin'
    }
  }
  if (!host) throw new UsageError("token needs the cluster's hostname: --host <cluster>.dsql-<suffix>.<region>.on.aws (or HOSTNAME / PGHOST)", 'token')
  return { host, user }
}

async function runToken({ lib, options }) {
  const { host, user } = tokenTarget(lib, options)
  try {
    const token = await lib.generateToken({
      host, user, region: options.region, profile: options.profile, expiresIn: options.tokenDurationSecs,
    })
    return { ok: true, token }
  } catch (e) {
    return { ok: false, error: { code: e.code ?? 'ERROR', message: e.message, fix: adviceFor(e, { host, user, regionFlag: options.region }) } }
  }
}

module.exports = { runToken }
