'use strict'
// Loaded with `node -r` before every node-postgres test file, identically for both runs (this
// package aliased as `pg`, and real pg). It does three things and changes no test:
// - connections to the fixture go over verified TLS the only way pg can through a tunnel: an
//   IP-literal host plus `ssl: { servername, ca }` (merged into what the test asked for);
// - no traffic leaves loopback: host names other than localhost are sent to 127.0.0.1 (same port),
//   and Node's own lookups and dials refuse anything else;
// - the first failure of the file (test name, message, code), with the error the test's
//   callback got or logged in that test, is written to SUITE_REPORT as JSON.

const Module = require('node:module')
const dns = require('node:dns')
const fs = require('node:fs')
const net = require('node:net')
const path = require('node:path')

// Read once, now: configuration-tests.js deletes every PG* variable before its tests run.
const SERVERNAME = process.env.SUITE_SERVERNAME
const CA = fs.readFileSync(process.env.SUITE_CA_FILE, 'utf8')
const TUNNEL_PORT = Number(process.env.SUITE_TUNNEL_PORT)
const REPORT = process.env.SUITE_REPORT
const TREE = process.env.SUITE_TREE

const report = { tests: 0, passed: 0, skipped: [], failure: null, logged: {}, libraryError: {}, uncaught: null, guard: [], inject: { ssl: 0, servername: 0 } }

const errorInfo = (e) =>
  e instanceof Error || (e && typeof e === 'object' && 'message' in e)
    ? { name: e.name, message: String(e.message).split('\n')[0], code: e.code ?? null, at: firstFrame(e) }
    : { name: typeof e, message: String(e), code: null, at: null }

// The first stack frame outside node: internals and node_modules: where the test tripped.
function firstFrame(e) {
  const lines = String(e.stack ?? '').split('\n').slice(1)
  const own = lines.find((l) => l.includes(TREE) && !l.includes('node_modules'))
  return own ? own.trim().replace(TREE + '/', '') : null
}

// ---- loopback only ----------------------------------------------------------------------------

function isLoopbackIp(host) {
  const v = net.isIP(host)
  if (v === 4) return host.startsWith('127.')
  if (v === 6) return host === '::1' || /^::ffff:127\./i.test(host)
  return false
}
const isLocalName = (host) => host === 'localhost' || isLoopbackIp(host)

function refused(host) {
  report.guard.push(`refused a lookup or dial of ${host}`)
  return Object.assign(new Error(`getaddrinfo ENOTFOUND ${host} (the suite only reaches loopback)`), {
    code: 'ENOTFOUND', errno: -3008, syscall: 'getaddrinfo', hostname: host,
  })
}

const lookup = dns.lookup
dns.lookup = function (host, options, callback) {
  const cb = typeof options === 'function' ? options : callback
  if (typeof host === 'string' && host !== '' && !isLocalName(host) && typeof cb === 'function') {
    process.nextTick(cb, refused(host))
    return {}
  }
  return lookup.apply(this, arguments)
}
const lookupPromise = dns.promises.lookup
dns.promises.lookup = function (host) {
  if (typeof host === 'string' && host !== '' && !isLocalName(host)) return Promise.reject(refused(host))
  return lookupPromise.apply(this, arguments)
}
const connect = net.Socket.prototype.connect
net.Socket.prototype.connect = function (...args) {
  const o = args[0]
  const host = o !== null && typeof o === 'object' ? o.host : typeof args[1] === 'string' ? args[1] : undefined
  if (typeof host === 'string' && net.isIP(host) && !isLoopbackIp(host)) throw refused(host)
  return connect.apply(this, args)
}

// ---- connection settings ----------------------------------------------------------------------

function parseConnectionString(s) {
  try {
    const u = new URL(s)
    const sslParam = u.searchParams.has('ssl') || u.searchParams.has('sslmode')
    return { host: decodeURIComponent(u.hostname) || undefined, port: u.port || undefined, ssl: sslParam }
  } catch {
    return { host: undefined, port: undefined, ssl: false }
  }
}

// Copies with property descriptors kept: gh-issues/2303 checks that a non-enumerable `ssl.key`
// stays non-enumerable.
const copyOf = (o) => Object.defineProperties({}, Object.getOwnPropertyDescriptors(o))

function adjust(config, mod) {
  if (config !== undefined && config !== null && typeof config !== 'string' && (typeof config !== 'object' || Object.getPrototypeOf(config) !== Object.prototype)) {
    return config // e.g. a ConnectionParameters instance: left as the test made it
  }
  let c = typeof config === 'string' ? { connectionString: config } : config ? copyOf(config) : {}
  const cs = typeof c.connectionString === 'string' ? parseConnectionString(c.connectionString) : { host: undefined, port: undefined, ssl: false }
  const defaults = mod.defaults ?? {}
  let host = c.host ?? cs.host ?? process.env.PGHOST ?? defaults.host
  const port = Number(c.port ?? cs.port ?? process.env.PGPORT ?? defaults.port ?? 5432)
  // Only a host the test gave the client is redirected (configuration-tests.js checks that a
  // host from pg.defaults reaches the client unchanged, and never connects with it).
  const given = c.host ?? cs.host
  if (typeof given === 'string' && given !== '' && !given.startsWith('/') && !isLocalName(given)) {
    report.guard.push(`sent a client for ${host}:${port} to 127.0.0.1:${port}`)
    if (c.host !== undefined || cs.host === undefined) c.host = '127.0.0.1'
    else c = { ...c, connectionString: c.connectionString.replace(cs.host, '127.0.0.1') }
    host = '127.0.0.1'
  }
  const toStack = port === TUNNEL_PORT && (host === undefined || host === '' || isLoopbackIp(host))
  if (!toStack) return typeof config === 'string' && c.host === undefined ? config : c
  if (c.ssl === undefined && !cs.ssl) {
    c.ssl = { servername: SERVERNAME, ca: CA }
    report.inject.ssl++
  } else if (c.ssl !== null && typeof c.ssl === 'object' && c.ssl.servername === undefined) {
    c.ssl = copyOf(c.ssl)
    c.ssl.servername = SERVERNAME
    report.inject.servername++
  }
  return c
}

// Callback errors are noted on the way through, the first of each test (tests often
// `assert(!err)` without showing err).
function tap(args) {
  const i = args.length - 1
  if (i >= 0 && typeof args[i] === 'function') {
    const cb = args[i]
    args[i] = function (err, ...rest) {
      const key = current ?? ''
      if (err && !report.libraryError[key]) report.libraryError[key] = errorInfo(err)
      return cb.call(this, err, ...rest)
    }
  }
  return args
}

function patch(mod) {
  const set = (name, value) => {
    const ok = Reflect.defineProperty(mod, name, { value, writable: true, configurable: true, enumerable: true })
    if (!ok) throw new Error(`pg-suite preload: cannot replace pg.${name} (frozen export?)`)
  }
  const BaseClient = mod.Client
  // On the prototypes, so clients a pool makes from its own Client class are covered too.
  for (const Base of [BaseClient, mod.Pool]) {
    if (typeof Base !== 'function') continue
    for (const name of ['connect', 'query']) {
      const original = Base.prototype[name]
      if (typeof original === 'function') {
        Base.prototype[name] = function (...args) {
          return original.apply(this, tap(args))
        }
      }
    }
  }
  if (typeof BaseClient === 'function') {
    set('Client', class Client extends BaseClient {
      constructor(config, ...rest) {
        super(adjust(config, mod), ...rest)
      }
    })
  }
  const BasePool = mod.Pool
  if (typeof BasePool === 'function') {
    set('Pool', class Pool extends BasePool {
      constructor(options, ...rest) {
        super(adjust(options, mod), ...rest)
      }
    })
  }
}

// `pg` as the test tree resolves it: node_modules/pg is this package or real pg.
const pgMain = require.resolve('pg', { paths: [TREE] })
patch(require(pgMain))

// ---- reporting --------------------------------------------------------------------------------

let current = null
const load = Module._load
Module._load = function (request, parent) {
  const exported = load.apply(this, arguments)
  if (typeof request === 'string' && request.endsWith('suite') && parent && path.basename(path.dirname(parent.filename)) === 'test') {
    hookSuite(exported)
  }
  return exported
}

let hooked = false
function hookSuite(Suite) {
  if (hooked || typeof Suite !== 'function') return
  hooked = true
  const { run, test } = Suite.prototype
  // pg's placeholders ("skipping SCRAM tests (missing env)") are not counted as cases.
  const placeholder = (name) => /^skipping /.test(name)
  Suite.prototype.test = function (name, cb) {
    if (placeholder(name)) report.skipped.push(name)
    else if (cb) report.tests++
    return test.apply(this, arguments)
  }
  Suite.prototype.run = function (t, cb) {
    const inner = t.run
    t.run = function (done) {
      current = t.name
      return inner.call(t, (err) => {
        if (err) fail(err, 'test failed')
        else if (t.action && !placeholder(t.name)) report.passed++
        done(err)
      })
    }
    return run.call(this, t, cb)
  }
}

function fail(err, how) {
  if (report.failure === null) report.failure = { test: current, how, ...errorInfo(err) }
}

// pg's `assert.success` logs the callback's error before asserting there is none (first per test).
for (const name of ['log', 'error']) {
  const original = console[name]
  console[name] = function (...args) {
    const skip = args.find((a) => typeof a === 'string' && a.startsWith('(skipped'))
    if (skip) report.skipped.push(`${current}: ${skip.trim()}`)
    const late = args.find((a) => typeof a === 'string' && /did not complete withi?n?t? \d+ ?ms/.test(a))
    if (late) fail(new Error(late.trim().split('\n')[0]), 'test time limit')
    const key = current ?? ''
    const e = args.find((a) => a instanceof Error)
    if (e && !report.logged[key]) report.logged[key] = errorInfo(e)
    return original.apply(this, args)
  }
}

// Only noted: a test may handle its own exceptions (gh-issues/2556 replaces the handlers).
process.on('uncaughtExceptionMonitor', (err) => {
  if (report.uncaught === null) report.uncaught = { test: current, ...errorInfo(err) }
})

process.once('SIGTERM', () => {
  fail(new Error('killed by the runner (per-file time limit)'), 'timeout')
  process.exit(143)
})

process.on('exit', (code) => {
  report.exitCode = code
  if (code !== 0 && report.failure === null) {
    if (report.uncaught) report.failure = { how: 'uncaught exception', ...report.uncaught }
    else report.failure = { test: current, how: 'exit', name: 'Exit', message: `the process exited with code ${code}`, code: null, at: null }
  }
  if (REPORT) fs.writeFileSync(REPORT, JSON.stringify(report))
})
