'use strict'
// `dsql-tunnel doctor`: the connectivity experiment's troubleshooting steps, automated. Each step
// gets a verdict (pass, warn, fail, skip, info) and, when it fails, the fix. A failure skips the
// steps that need it; the token step is offline, so it still runs after a network failure.

const fs = require('node:fs')
const { FLAG_FOR_OPTION } = require('./args')
const { adviceFor, regionOfHost, isAddress, actionFor, tokenCommand, DSQL_HOST } = require('./advice')
const { probeTcp, probeTls, probeStartup } = require('./probe')
const { adviceContext, closeQuietly, effectivePassword, maskKeyId } = require('./secrets')

// A clock difference AWS tolerates when checking a token's signing time.
const CLOCK_SKEW_MILLIS = 5 * 60_000
// Probes with connect_timeout=0 ("wait forever") still stop somewhere.
const PROBE_CEILING_MILLIS = 30_000

const STEP_NAMES = {
  config: 'configuration',
  tcp: 'tunnel',
  tls: 'TLS',
  sni: 'SNI',
  token: 'token',
  auth: 'authentication',
  query: 'query',
  limits: 'limits',
}

const LIMITS_NOTE = 'DSQL closes every connection after 60 minutes: reconnect, or use a Pool (it replaces connections after about 55). '
  + 'A transaction may last 5 minutes and change 3,000 rows or 10 MiB; a token is checked only when a connection opens, so open sessions outlive it.'

function humanSource(source, option) {
  if (!source || source === 'default') return 'default'
  if (source === 'option') return `flag ${FLAG_FOR_OPTION[option] ?? option}`
  return source
}

function duration(ms) {
  const abs = Math.abs(ms)
  if (abs < 90_000) return `${Math.round(abs / 1000)} s`
  if (abs < 90 * 60_000) return `${Math.round(abs / 60_000)} min`
  if (abs < 48 * 3_600_000) return `${Math.round(abs / 3_600_000)} h`
  return `${Math.round(abs / 86_400_000)} days`
}

const days = (n) => `${n} ${n === 1 ? 'day' : 'days'}`
const isoSeconds = (d) => d.toISOString().replace(/\.\d{3}Z$/, 'Z')

/** The region tokens are checked against: flag, else the hostname's, else AWS_REGION. */
function expectedRegion(options, host, env) {
  if (options.region) return { region: options.region, source: 'flag --region' }
  const fromHost = regionOfHost(host)
  if (fromHost) return { region: fromHost, source: 'the hostname' }
  if (env.AWS_REGION) return { region: env.AWS_REGION, source: 'environment (AWS_REGION)' }
  if (env.AWS_DEFAULT_REGION) return { region: env.AWS_DEFAULT_REGION, source: 'environment (AWS_DEFAULT_REGION)' }
  return { region: null, source: 'none' }
}

function credentialSource(options, env) {
  if (options.profile) return `profile ${options.profile} (flag --profile)`
  if (env.AWS_ACCESS_KEY_ID) return 'environment (AWS_ACCESS_KEY_ID)'
  if (env.AWS_PROFILE) return `profile ${env.AWS_PROFILE} (AWS_PROFILE)`
  return "AWS's credential chain"
}

/**
 * Runs every step. `lib` is the package's exports; `options` the library options (flags and
 * --password-stdin); `spin(label, promise)` shows progress on a terminal.
 */
async function runDoctor({ lib, options, env = process.env, spin = (_l, p) => p }) {
  const steps = []
  const byId = {}
  const add = (id, step) => {
    const s = { id, name: STEP_NAMES[id], ...step }
    s.ok = s.status === 'pass' || s.status === 'warn' || s.status === 'info'
    if (s.status === 'skip') s.skipped = true
    steps.push(s)
    byId[id] = s
    return s
  }
  const blocker = (ids) => ids.map((i) => byId[i]).find((s) => s && !s.ok)
  const skip = (id, ids) => {
    const b = blocker(ids)
    if (!b) return false
    const root = b.blockedBy ?? b.id
    add(id, { status: 'skip', blockedBy: root, detail: `not checked: ${byId[root].name} failed` })
    return true
  }

  // 1. configuration
  let cfg
  try {
    cfg = lib.resolveConfig(options)
  } catch (e) {
    add('config', {
      status: 'fail',
      detail: `${e.code ?? 'ERROR'}: ${e.message}`,
      fix: adviceFor(e, {}),
      facts: { code: e.code, setting: e.setting },
    })
    for (const id of ['tcp', 'tls', 'sni', 'token', 'auth', 'query']) skip(id, ['config'])
    add('limits', { status: 'info', detail: LIMITS_NOTE })
    return finish(steps, null, options)
  }
  const addr = cfg.hostaddr ?? cfg.host
  const timeoutMillis = cfg.connectTimeoutMillis > 0 ? cfg.connectTimeoutMillis : PROBE_CEILING_MILLIS
  const password = cfg.hasPassword ? effectivePassword(cfg.sources.password, options, env) : undefined
  const claims = password !== undefined ? lib.decodeToken(password) : null
  const region = expectedRegion(options, cfg.host, env)
  const ctx = adviceContext(lib, cfg, options, env)
  add('config', configStep(cfg, { options, env, claims, region }))

  if (cfg.tunnel) {
    // 2. the tunnel the driver opens itself; TLS and SNI then ride it in the authentication step.
    await tunnelSteps({ add, cfg, options, env, addr, spin })
  } else {
    // 2. the tunnel port accepts TCP
    try {
      const r = await spin(`Connecting to ${addr}:${cfg.port}`, probeTcp({ addr, port: cfg.port, timeoutMillis }))
      add('tcp', { status: 'pass', detail: `${addr}:${cfg.port} accepts TCP (${r.millis.toFixed(1)} ms)`, facts: { address: addr, port: cfg.port, millis: r.millis } })
    } catch (e) {
      add('tcp', tcpFailure(e, addr, cfg, ctx, timeoutMillis))
    }

    // 3. TLS, and 4. SNI on the same connection
    let probe = null
    if (!skip('tls', ['config', 'tcp'])) {
      try {
        probe = await spin(`TLS handshake with ${cfg.host}`, probeTls({
          host: cfg.host, addr, port: cfg.port, sslnegotiation: cfg.sslnegotiation, sslrootcert: cfg.sslrootcert, timeoutMillis,
        }))
        add('tls', tlsVerdict(probe.facts, cfg, ctx))
        if (!byId.tls.ok) probe.socket.destroy()
      } catch (e) {
        add('tls', tlsFailure(e, cfg, ctx, timeoutMillis))
      }
    }
    if (!skip('sni', ['tls'])) {
      try {
        const r = await spin('Sending the startup message', probeStartup(probe, { user: cfg.user, database: cfg.database }))
        add('sni', sniVerdict(r, probe.facts, cfg, ctx))
      } catch (e) {
        add('sni', {
          status: 'fail',
          detail: `no answer to the startup message (${e.message})`,
          fix: `Check that the tunnel leads to DSQL (${cfg.host}:5432).`,
        })
      }
    }

  }

  // 5. the token (offline: decoded, or minted to check the credentials)
  add('token', await tokenStep({ lib, cfg, options, env, claims, password, region, ctx }))

  // 6. authentication, 7. a query
  let client = null
  if (!skip('auth', ['tcp', 'tls', 'sni', 'token'])) {
    try {
      client = await spin(`Authenticating as ${cfg.user}`, lib.connect(options))
      const info = client.connection
      const verified = { full: `certificate verified for ${info.host}`, chain: 'certificate chain verified (name not checked)', none: 'certificate NOT verified (sslmode=require)' }
      add('auth', {
        status: info.verification === 'none' ? 'warn' : 'pass',
        detail: `logged in as ${info.user} to ${info.database}; ${verified[info.verification]}`,
        notes: info.verification === 'none' ? ['leave PGSSLMODE unset (verify-full): DSQL certificates verify out of the box'] : undefined,
        facts: { user: info.user, database: info.database, verification: info.verification, sslnegotiation: info.sslnegotiation },
      })
    } catch (e) {
      add('auth', {
        status: 'fail',
        detail: `${e.code ?? 'ERROR'}: ${e.message}`,
        fix: adviceFor(e, ctx),
        facts: { code: e.code },
      })
    }
  }
  if (!skip('query', ['auth'])) {
    const started = Date.now()
    try {
      const { rows } = await spin('Running a query', client.query('select current_user as "user", current_database() as database, version() as version'))
      const row = rows[0]
      add('query', {
        status: 'pass',
        detail: `select current_user, version(): ${row.user} @ ${row.database}, ${String(row.version).split(' on ')[0]} (${Date.now() - started} ms)`,
        facts: { user: row.user, database: row.database, version: row.version, millis: Date.now() - started },
      })
    } catch (e) {
      add('query', { status: 'fail', detail: `${e.code ?? 'ERROR'}: ${e.message}`, fix: adviceFor(e, ctx), facts: { code: e.code } })
    }
  }
  await closeQuietly(client)

  // 8. what to know about DSQL
  add('limits', { status: 'info', detail: LIMITS_NOTE, facts: { connectionLifetimeMinutes: 60, transactionSeconds: 300, transactionRows: 3000, transactionBytes: 10 * 1024 * 1024 } })
  return finish(steps, cfg, options)
}

/** The `tunnel` step through the native probe: up, host key, how we got in, a round trip. */
async function tunnelSteps({ add, cfg, options, env, addr, spin }) {
  const binding = require('../../binding')
  const { readEnvironment } = require('../client')
  const strings = Object.fromEntries(Object.entries(options).filter(([k, v]) => typeof v === 'string' && k !== 'connectionString'))
  let ok = false
  try {
    const p = await spin(`Opening the tunnel ${cfg.tunnel}`, binding.probeTunnel(strings, options.connectionString ?? null, env === process.env ? readEnvironment() : env))
    if (!p || typeof p.code === 'string') throw Object.assign(new Error(p?.message ?? 'no tunnel'), { code: p?.code })
    const key = p.hostKey ? `, host key ${p.hostKey} (in known_hosts), auth ${p.auth}` : ''
    add('tcp', {
      status: 'pass',
      detail: `${p.tunnel} is up${key}; ${addr}:${cfg.port} reached through it (first connection ${p.firstMillis.toFixed(1)} ms, round trip ${p.roundTripMillis.toFixed(1)} ms)`,
      facts: { tunnel: p.tunnel, hostKey: p.hostKey ?? null, auth: p.auth ?? null, firstMillis: p.firstMillis, roundTripMillis: p.roundTripMillis },
    })
    ok = true
  } catch (e) {
    add('tcp', { status: 'fail', detail: `${e.code ?? 'ERROR'}: ${e.message}`, fix: 'See the README section "Tunnels the driver opens itself" for what each code means.', facts: { code: e.code } })
  }
  if (ok) {
    for (const id of ['tls', 'sni']) add(id, { status: 'info', detail: 'checked end to end through the tunnel by the authentication step' })
  } else {
    for (const id of ['tls', 'sni']) add(id, { status: 'skip', blockedBy: 'tcp', detail: 'not checked: tunnel failed' })
  }
}

function finish(steps, cfg, options) {
  const failed = steps.filter((s) => s.status === 'fail')
  const skipped = steps.filter((s) => s.status === 'skip')
  const ok = failed.length === 0 && skipped.length === 0
  let summary
  if (ok) {
    const warned = steps.filter((s) => s.status === 'warn').map((s) => s.name)
    summary = `All checks passed: ${cfg.host} answers through ${cfg.hostaddr ?? cfg.host}:${cfg.port}.`
      + (warned.length ? ` Warnings: ${warned.join(', ')}.` : '')
  } else {
    const first = failed[0]
    const others = failed.slice(1).map((s) => s.name)
    summary = `Stopped at ${first.name}: fix it first.`
      + (skipped.length ? ` ${skipped.map((s) => s.name).join(', ')} ${skipped.length === 1 ? 'was' : 'were'} not checked: ${skipped.length === 1 ? 'it needs' : 'they need'} it.` : '')
      + (others.length ? ` Also failed: ${others.join(', ')}.` : '')
  }
  return {
    ok,
    host: cfg?.host ?? options.host ?? null,
    through: cfg ? `${cfg.hostaddr ?? cfg.host}:${cfg.port}` : null,
    stoppedAt: failed[0]?.id ?? null,
    summary,
    steps,
  }
}

function configStep(cfg, { options, env, claims, region }) {
  const src = (k) => humanSource(cfg.sources[k], k)
  let password
  if (!cfg.hasPassword) password = cfg.isDsql ? 'not set: a token is minted for every connection' : 'not set'
  else password = `set, redacted (${claims ? 'a DSQL auth token' : 'a password, not a DSQL token'})`
  const settings = [
    ['host', cfg.host, src('host')],
    ['hostaddr', cfg.hostaddr ?? '(none: TCP goes to host)', src('hostaddr')],
    ['port', String(cfg.port), src('port')],
    ['user', cfg.user, src('user')],
    ['database', cfg.database, src('database')],
    ['password', password, src('password')],
    ['sslmode', `${cfg.sslmode} (${{ full: 'chain and name verified', chain: 'chain verified', none: 'NOT verified' }[cfg.verification]})`, src('sslmode')],
    ['sslrootcert', cfg.sslrootcert, src('sslrootcert')],
    ['sslnegotiation', cfg.sslnegotiation, src('sslnegotiation')],
    ['connect timeout', cfg.connectTimeoutMillis ? `${cfg.connectTimeoutMillis / 1000} s` : 'none', src('connectionTimeoutMillis')],
  ]
  if (cfg.applicationName) settings.push(['application name', cfg.applicationName, src('applicationName')])
  settings.push(['region', region.region ?? '(unknown)', region.source])
  if (!cfg.hasPassword && cfg.isDsql) {
    settings.push(['AWS credentials', credentialSource(options, env), ''])
    settings.push(['token lifetime', `${options.tokenDurationSecs ?? 900} s`, options.tokenDurationSecs ? 'flag --expires-in' : 'default'])
  }
  if (options.connectionString !== undefined) settings.push(['connection string', 'given, redacted', 'flag or argument'])

  const w = Math.max(...settings.map((x) => x[0].length))
  const v = Math.max(...settings.map((x) => x[1].length))
  const lines = settings.map(([k, val, s]) => `${k.padEnd(w)}  ${val.padEnd(v)}  ${s}`.trimEnd())
  const facts = { settings: Object.fromEntries(settings.map(([k, val, s]) => [k, { value: val, source: s }])) }
  if (!['bundled', 'system'].includes(cfg.sslrootcert)) {
    try {
      fs.accessSync(cfg.sslrootcert, fs.constants.R_OK)
    } catch (e) {
      return {
        status: 'fail',
        detail: `sslrootcert ${cfg.sslrootcert} (${src('sslrootcert')}) cannot be read: ${e.code ?? e.message}`,
        lines,
        fix: adviceFor({ code: 'INVALID_CONFIG', setting: 'sslrootcert' }, {}),
        facts: { ...facts, code: 'INVALID_CONFIG', setting: 'sslrootcert' },
      }
    }
  }
  const notes = []
  if (isAddress(cfg.host)) {
    notes.push(`host is ${cfg.host}, an address: no SNI is sent and the certificate cannot match; host must be the cluster's DSQL hostname (the tunnel address goes in hostaddr / PGHOSTADDR)`)
  } else if (!cfg.isDsql) {
    notes.push(`host ${cfg.host} is not a DSQL endpoint (<id>.dsql-<suffix>.<region>.on.aws): fine for PostgreSQL, not for DSQL`)
  }
  if (!cfg.hostaddr && cfg.isDsql) notes.push(`no hostaddr: TCP goes straight to ${cfg.host}, not through a tunnel (set PGHOSTADDR=127.0.0.1 for one)`)
  if (cfg.verification === 'none') {
    notes.push('sslmode=require encrypts but does not verify the certificate: whoever can intercept the tunnel can pose as the cluster and receive your token. Leave PGSSLMODE unset (verify-full): DSQL certificates verify out of the box')
  }
  return {
    status: notes.length ? 'warn' : 'pass',
    detail: `${cfg.host} through ${cfg.hostaddr ?? cfg.host}:${cfg.port} as ${cfg.user}, sslmode ${cfg.sslmode}`,
    lines,
    notes: notes.length ? notes : undefined,
    facts,
  }
}

function tcpFailure(e, addr, cfg, ctx, timeoutMillis) {
  const where = `${addr}:${cfg.port}`
  switch (e.code) {
    case 'ECONNREFUSED':
      return { status: 'fail', detail: `nothing listens on ${where} (connection refused)`, fix: adviceFor({ code: 'ECONNREFUSED' }, ctx), facts: { code: e.code } }
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return { status: 'fail', detail: `${addr} does not resolve (${e.code})`, fix: adviceFor({ code: 'ENOTFOUND' }, ctx), facts: { code: e.code } }
    case 'TIMEOUT':
      return {
        status: 'fail',
        detail: `no TCP connection to ${where} within ${timeoutMillis / 1000} s`,
        fix: `Nothing answered at ${where}: check that the tunnel runs and that PGHOSTADDR/PGPORT name its local end (a firewall drops rather than refuses).`,
        facts: { code: 'CONNECT_TIMEOUT' },
      }
    default:
      return { status: 'fail', detail: `${e.code}: ${e.message}`, fix: adviceFor(e, ctx), facts: { code: e.code } }
  }
}

function tlsFailure(e, cfg, ctx, timeoutMillis) {
  const noSni = isAddress(cfg.host) ? ` No SNI was sent, because host (${cfg.host}) is an address: set HOSTNAME (or PGHOST) to the cluster's DSQL hostname.` : ''
  switch (e.code) {
    case 'TLS_REFUSED':
      return { status: 'fail', detail: e.message, fix: adviceFor(e, ctx), facts: { code: 'TLS_REFUSED' } }
    case 'NOT_POSTGRES':
      return { status: 'fail', detail: e.message, fix: `The tunnel does not lead to a PostgreSQL server: check its target (${cfg.host}:5432) and PGPORT.`, facts: { code: 'PROTOCOL_ERROR' } }
    case 'TIMEOUT':
      return { status: 'fail', detail: `the tunnel accepted TCP but ${e.message} within ${timeoutMillis / 1000} s`, fix: adviceFor({ code: 'CONNECT_TIMEOUT' }, ctx), facts: { code: 'CONNECT_TIMEOUT' } }
    case 'CLOSED':
    case 'ECONNRESET':
    case 'EPIPE': {
      const direct = cfg.sslnegotiation === 'direct' && !cfg.isDsql ? ' A PostgreSQL server before 17 also hangs up on direct TLS: try --sslnegotiation postgres.' : ''
      return { status: 'fail', detail: `the tunnel accepted TCP but ${e.message.replace(/^the server /, 'its far end ')}`, fix: adviceFor({ code: 'ECONNRESET' }, ctx) + direct + noSni, facts: { code: 'CONNECTION_LOST' } }
    }
    default:
      return { status: 'fail', detail: `TLS handshake failed: ${e.message}`, fix: adviceFor({ code: 'TLS_HANDSHAKE_FAILED' }, ctx) + noSni, facts: { code: 'TLS_HANDSHAKE_FAILED' } }
  }
}

function tlsVerdict(f, cfg, ctx) {
  const names = f.subjectAltNames.length ? f.subjectAltNames.join(', ') : f.subject
  const lines = [
    `negotiation  ${f.negotiation === 'direct' ? 'direct (TLS first)' : 'postgres (SSLRequest, then TLS)'}, ${f.tlsVersion}, ALPN ${f.alpn ?? 'none'}, SNI ${f.sniSent ?? 'none (host is an address)'}`,
    `certificate  ${f.subject}${f.subjectAltNames.length ? `; names: ${names}` : ''}`,
    `issuer       ${f.issuer}`,
    `expires      ${f.validTo ? `${f.validTo.slice(0, 10)} (${days(f.daysLeft)} left)` : 'unknown'}`,
    `chain        ${f.chainTrusted === null ? `not checked here: ${f.trust}` : f.chainTrusted ? `trusted (${f.trust})` : `NOT trusted by ${f.trust}: ${f.chainError}`}`,
    `name         ${f.nameMatches ? `valid for ${cfg.host}` : `NOT valid for ${cfg.host} (the certificate is for ${names})`}`,
  ]
  const facts = { ...f }
  const notes = []
  let failure = null
  const chainCode = f.chainTrusted === false
    ? (/CERT_HAS_EXPIRED/.test(f.chainError) ? 'TLS_CERT_EXPIRED' : /CERT_NOT_YET_VALID/.test(f.chainError) ? 'TLS_CERT_NOT_YET_VALID' : 'TLS_UNKNOWN_CA')
    : null
  if (chainCode) {
    const what = chainCode === 'TLS_UNKNOWN_CA' ? `the certificate (issued by ${f.issuer}) is not trusted by ${f.trust}` : `the certificate ${chainCode === 'TLS_CERT_EXPIRED' ? `expired on ${f.validTo?.slice(0, 10)}` : 'is not valid yet'}`
    if (cfg.verification !== 'none') failure = { code: chainCode, detail: what }
    else notes.push(`${what}; sslmode=require does not check it`)
  }
  if (!f.nameMatches) {
    const what = `the certificate is for ${names}, not ${cfg.host}`
    if (cfg.verification === 'full') failure ??= { code: 'TLS_NAME_MISMATCH', detail: what }
    else notes.push(`${what}; sslmode=${cfg.sslmode} does not check the name`)
  }
  if (f.negotiation === 'direct' && f.alpn !== 'postgresql') notes.push('the server did not confirm ALPN postgresql, which DSQL requires for direct TLS')
  // Short-lived certificates (tests, internal CAs) are meant to be; a long-lived one about to lapse is news.
  const lifetimeDays = f.validFrom && f.validTo ? (Date.parse(f.validTo) - Date.parse(f.validFrom)) / 86_400_000 : 0
  if (f.daysLeft !== null && f.daysLeft >= 0 && f.daysLeft < 14 && lifetimeDays > 60) notes.push(`the certificate expires in ${days(f.daysLeft)}`)
  if (failure) {
    facts.code = failure.code
    let fix = adviceFor({ code: failure.code }, ctx)
    const dsqlName = f.subjectAltNames.find((n) => DSQL_HOST.test(n))
    if (failure.code === 'TLS_NAME_MISMATCH' && dsqlName) {
      fix = `The tunnel leads to ${dsqlName}: if that is the cluster you want, set HOSTNAME=${dsqlName} (or PGHOST, --host); otherwise point the tunnel at ${isAddress(cfg.host) ? "your cluster's hostname" : cfg.host}:5432.`
        + (isAddress(cfg.host) ? ` host must be the DSQL hostname, never the tunnel address (${cfg.host}).` : '')
    }
    return { status: 'fail', detail: failure.detail, lines, notes: notes.length ? notes : undefined, fix, facts }
  }
  const checked = f.chainTrusted === null
    ? { full: 'name verified', chain: 'chain to be verified when authenticating', none: 'not verified (sslmode=require)' }[cfg.verification]
    : { full: 'chain and name verified', chain: 'chain verified', none: 'not verified (sslmode=require)' }[cfg.verification]
  return {
    status: notes.length ? 'warn' : 'pass',
    detail: `${f.tlsVersion}, ${f.negotiation} negotiation; certificate for ${names}, ${checked}`,
    lines,
    notes: notes.length ? notes : undefined,
    facts,
  }
}

function sniVerdict(r, tlsFacts, cfg, ctx) {
  const sent = tlsFacts.sniSent ? `SNI ${tlsFacts.sniSent}` : 'no SNI'
  if (r.accepted) {
    const notes = !tlsFacts.sniSent && cfg.isDsql ? ['accepted without SNI: this server does not enforce it as DSQL does'] : undefined
    return {
      status: notes ? 'warn' : 'pass',
      detail: `${sent} accepted: the server asked ${cfg.user} for ${r.auth}; the probe sent nothing and hung up`,
      notes,
      facts: { sni: tlsFacts.sniSent, accepted: true, authentication: r.auth },
    }
  }
  if (r.sniRefused) {
    const dsqlName = tlsFacts.subjectAltNames.find((n) => DSQL_HOST.test(n))
    const hint = dsqlName && dsqlName.toLowerCase() !== String(cfg.host).toLowerCase() ? ` The certificate names ${dsqlName}.` : ''
    return {
      status: 'fail',
      detail: `refused: ${r.error.message} (${r.error.code}); ${tlsFacts.sniSent ? `the SNI sent was ${tlsFacts.sniSent}` : 'no SNI was sent'}`,
      fix: adviceFor({ code: 'SNI_REFUSED' }, ctx) + hint,
      facts: { sni: tlsFacts.sniSent, accepted: false, code: 'SNI_REFUSED', server: r.error },
    }
  }
  if (r.error) {
    return {
      status: 'warn',
      detail: `${sent} accepted, then the server refused the startup: ${r.error.message} (${r.error.code})`,
      notes: ['authentication will show the consequence'],
      facts: { sni: tlsFacts.sniSent, accepted: true, server: r.error },
    }
  }
  return {
    status: 'fail',
    detail: `the server answered the startup message with ${r.unexpected}`,
    fix: `Check that the tunnel leads to DSQL (${cfg.host}:5432).`,
    facts: { sni: tlsFacts.sniSent, accepted: false, code: 'PROTOCOL_ERROR' },
  }
}

async function tokenStep({ lib, cfg, options, env, claims, password, region, ctx }) {
  const wantAction = actionFor(cfg.user)
  if (password !== undefined && claims) {
    const now = Date.now()
    const left = claims.expiresAt.getTime() - now
    const lines = [
      `action     ${claims.action}`,
      `region     ${claims.region}`,
      `hostname   ${claims.host}`,
      `signed     ${isoSeconds(claims.signedAt)} with key ${maskKeyId(claims.accessKeyId)}`,
      `expires    ${isoSeconds(claims.expiresAt)} (${left >= 0 ? `in ${duration(left)}` : `${duration(left)} ago`})`,
    ]
    const facts = {
      kind: 'token', action: claims.action, region: claims.region, host: claims.host, accessKeyId: maskKeyId(claims.accessKeyId),
      signedAt: claims.signedAt.toISOString(), expiresAt: claims.expiresAt.toISOString(), secondsLeft: Math.round(left / 1000),
    }
    const fail = (code, detail) => ({ status: 'fail', detail, lines, fix: adviceFor({ code }, ctx), facts: { ...facts, code } })
    if (left <= 0) return fail('TOKEN_EXPIRED', `the token expired at ${isoSeconds(claims.expiresAt)}, ${duration(left)} ago`)
    if (claims.signedAt.getTime() > now + CLOCK_SKEW_MILLIS) {
      return { status: 'fail', detail: `the token was signed ${duration(claims.signedAt.getTime() - now)} in the future`, lines, fix: "Check this machine's clock (date -u), or the clock of the machine that made the token.", facts: { ...facts, code: 'TOKEN_NOT_YET_VALID' } }
    }
    if (claims.host.toLowerCase() !== String(cfg.host).toLowerCase()) {
      const r = fail('TOKEN_HOST_MISMATCH', `the token was signed for ${claims.host}, but host is ${cfg.host}`)
      // A token for a DSQL hostname with host set to the tunnel address: it is host that is wrong.
      if (isAddress(cfg.host) && DSQL_HOST.test(claims.host)) {
        r.fix = `The token is for ${claims.host}; host is the setting that is wrong: set HOSTNAME=${claims.host} (or PGHOST, --host) and keep PGHOSTADDR=${cfg.hostaddr ?? cfg.host} for the tunnel.`
      }
      return r
    }
    if (claims.action !== wantAction) {
      return fail('TOKEN_ACTION_MISMATCH', `the token is for ${claims.action}, but user ${cfg.user} needs ${wantAction}`)
    }
    if (region.region && claims.region !== region.region) {
      return fail('TOKEN_REGION_MISMATCH', `the token was signed in ${claims.region}, but the cluster is in ${region.region} (${region.source})`)
    }
    const soon = left < 60_000
    return {
      status: soon ? 'warn' : 'pass',
      detail: `${claims.action} token for ${claims.host} in ${claims.region}, expires in ${duration(left)}`,
      lines,
      notes: soon ? ['it expires in under a minute: new connections after that will fail'] : undefined,
      facts,
    }
  }
  if (password !== undefined || cfg.hasPassword) {
    return {
      status: cfg.isDsql ? 'warn' : 'pass',
      detail: 'a password is set, not a DSQL auth token',
      notes: cfg.isDsql ? [`DSQL accepts only IAM auth tokens (export PGPASSWORD=$(${tokenCommand(ctx)}), or leave it unset); this server may be plain PostgreSQL`] : undefined,
      facts: { kind: 'password' },
    }
  }
  if (!cfg.isDsql) {
    return { status: 'pass', detail: `no password, and ${cfg.host} is not a DSQL hostname, so no token is minted`, facts: { kind: 'none' } }
  }
  const source = credentialSource(options, env)
  try {
    const token = await lib.generateToken({
      host: cfg.host, user: cfg.user, region: options.region, profile: options.profile, expiresIn: options.tokenDurationSecs,
    })
    const c = lib.decodeToken(token)
    return {
      status: 'pass',
      detail: `no password: a ${c?.action ?? wantAction} token is minted for every connection, from ${source}`,
      lines: c ? [`action     ${c.action}`, `region     ${c.region}`, `hostname   ${c.host}`, `key        ${maskKeyId(c.accessKeyId)}`, `lifetime   ${duration(c.expiresAt.getTime() - c.signedAt.getTime())}`] : undefined,
      facts: { kind: 'minted', credentials: source, action: c?.action, region: c?.region, host: c?.host, accessKeyId: c ? maskKeyId(c.accessKeyId) : undefined },
    }
  } catch (e) {
    return {
      status: 'fail',
      detail: `no password, and no token can be minted: ${e.code ?? 'ERROR'}: ${String(e.message).split('\n')[0]}`,
      fix: adviceFor(e, ctx),
      facts: { kind: 'minted', credentials: source, code: e.code },
    }
  }
}

/** Doctor's report for people: one line per step, details indented under it. */
function renderDoctor(report, { paint }) {
  const label = {
    pass: paint.green('PASS'), warn: paint.yellow('WARN'), fail: paint.red(paint.bold('FAIL')), skip: paint.dim('SKIP'), info: paint.cyan('INFO'),
  }
  const width = Math.max(...report.steps.map((s) => s.name.length))
  const out = ['DSQL Doctor - dsql-tunnel', '=========================']
  if (report.host) out.push(`Cluster: ${report.host}${report.through ? `, through ${report.through}` : ''}`)
  out.push('')
  for (const s of report.steps) {
    out.push(`${label[s.status]}  ${s.name.padEnd(width)}  ${s.status === 'skip' ? paint.dim(s.detail) : s.detail}`)
    const indent = ' '.repeat(6 + width + 2)
    for (const l of s.lines ?? []) out.push(indent + paint.dim(l))
    for (const n of s.notes ?? []) out.push(`${indent}${paint.yellow('note:')} ${n}`)
    if (s.fix) out.push(`${indent}${paint.bold('fix:')} ${s.fix}`)
  }
  out.push('')
  out.push(report.ok ? paint.green(report.summary) : paint.red(report.summary))
  return out.join('\n')
}

/** Doctor's report for machines: the same verdicts, without the human-only detail lines. */
function doctorJson(report) {
  return {
    ok: report.ok,
    host: report.host,
    through: report.through,
    stoppedAt: report.stoppedAt,
    summary: report.summary,
    steps: report.steps.map(({ id, name, ok, status, skipped, blockedBy, detail, notes, fix, facts }) => ({
      id, name, ok, status, ...(skipped ? { skipped, blockedBy } : {}), detail, ...(notes ? { notes } : {}), ...(fix ? { fix } : {}), ...(facts ? { facts } : {}),
    })),
  }
}

module.exports = { runDoctor, renderDoctor, doctorJson }
