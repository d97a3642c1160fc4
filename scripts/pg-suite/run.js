'use strict'
// Runs node-postgres's integration test files one process each (as its Makefile does), with
// preload.js, against one tree (ours/ or real/), and writes per-file results as JSON.
//   node run.js --tree DIR --label NAME --env-file FILE --out FILE [--only REGEX]
//               [--budget SECONDS] [--file-timeout SECONDS]
// FILE is what `stack.ts --print-env` printed (export K='V' lines).

const { spawn } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')

const args = {}
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1]
const tree = path.resolve(args.tree)
const budgetMs = Number(args.budget ?? 280) * 1000
const fileTimeoutMs = Number(args['file-timeout'] ?? 40) * 1000
const only = args.only ? new RegExp(args.only) : null

// Left out of the totals: DSQL has neither COPY nor LISTEN/NOTIFY. notice-tests.js still runs
// (its second test is about notices) but its first is LISTEN/NOTIFY, and a file stops at its
// first failure.
const EXCLUDED = {
  'gh-issues/699-tests.js': { run: false, reason: 'COPY FROM STDIN (pg-copy-streams): DSQL has no COPY' },
  'client/notice-tests.js': { run: true, reason: 'first test is LISTEN/NOTIFY: DSQL has neither' },
}

const stackEnv = {}
for (const line of fs.readFileSync(args['env-file'], 'utf8').split('\n')) {
  const m = /^export ([A-Z_]+)='(.*)'$/.exec(line)
  if (m) stackEnv[m[1]] = m[2]
}
for (const k of ['HOSTNAME', 'PGPORT', 'PGUSER', 'PGPASSWORD', 'PGDATABASE', 'PGSSLROOTCERT']) {
  if (!stackEnv[k]) throw new Error(`pg-suite: ${k} missing from ${args['env-file']}`)
}
const appPassword = /^# app_user password: (.+)$/m.exec(fs.readFileSync(args['env-file'], 'utf8'))?.[1]
const secrets = [stackEnv.PGPASSWORD, appPassword].filter(Boolean)
const redact = (s) => secrets.reduce((t, x) => t.split(x).join('***'), String(s))

// What the tests read (helper.config: PGHOST/PGPORT/PGUSER/PGPASSWORD/PGDATABASE) plus the
// preload's settings; nothing else of the fixture's, so neither library can pick up
// PGHOSTADDR/PGSSLMODE/HOSTNAME and connect in a way pg could not.
const childEnv = {}
for (const [k, v] of Object.entries(process.env)) {
  if (!/^(PG|AWS_|HOSTNAME$|DSQL_TUNNEL_|SUITE_|NODE_OPTIONS$)/.test(k)) childEnv[k] = v
}
Object.assign(childEnv, {
  PGHOST: stackEnv.PGHOSTADDR ?? '127.0.0.1',
  PGPORT: stackEnv.PGPORT,
  PGUSER: stackEnv.PGUSER,
  PGPASSWORD: stackEnv.PGPASSWORD,
  PGDATABASE: stackEnv.PGDATABASE,
  SUITE_SERVERNAME: stackEnv.HOSTNAME,
  SUITE_CA_FILE: stackEnv.PGSSLROOTCERT,
  SUITE_TUNNEL_PORT: stackEnv.PGPORT,
  SUITE_TREE: tree,
})

// gh-issues/130 shells out to psql: libpq reaches the gate the way DSQL users do it (TCP to the
// tunnel, the cluster's name for TLS), through a wrapper first on PATH.
function psqlWrapper() {
  const real = (process.env.PATH ?? '').split(':').map((d) => path.join(d, 'psql')).find((p) => fs.existsSync(p))
  if (!real) return null
  const dir = path.join(tree, 'bin')
  fs.mkdirSync(dir, { recursive: true })
  fs.writeFileSync(path.join(dir, 'psql'), [
    '#!/bin/sh',
    'PGHOSTADDR=$PGHOST PGHOST=$SUITE_SERVERNAME PGSSLMODE=verify-full PGSSLROOTCERT=$SUITE_CA_FILE exec ' + real + ' "$@"',
    '',
  ].join('\n'), { mode: 0o755 })
  return dir
}
const wrapperDir = psqlWrapper()
if (wrapperDir) childEnv.PATH = `${wrapperDir}:${childEnv.PATH}`

function listFiles(dir, base = dir) {
  const out = []
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name)
    if (e.isDirectory()) out.push(...listFiles(p, base))
    else if (e.name.endsWith('-tests.js')) out.push(path.relative(base, p))
  }
  return out.sort()
}

function runFile(rel, reportFile) {
  return new Promise((resolve) => {
    const started = Date.now()
    const child = spawn(process.execPath, ['-r', path.join(__dirname, 'preload.js'), path.join('test/integration', rel)], {
      cwd: tree,
      env: { ...childEnv, SUITE_REPORT: reportFile },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let output = ''
    const keep = (b) => {
      if (output.length < 200_000) output += b
    }
    child.stdout.on('data', keep)
    child.stderr.on('data', keep)
    let timedOut = false
    const term = setTimeout(() => {
      timedOut = true
      child.kill('SIGTERM')
    }, fileTimeoutMs)
    const kill = setTimeout(() => child.kill('SIGKILL'), fileTimeoutMs + 3000)
    child.on('close', (code, signal) => {
      clearTimeout(term)
      clearTimeout(kill)
      resolve({ code, signal, timedOut, ms: Date.now() - started, output: redact(output) })
    })
  })
}

async function main() {
  const files = listFiles(path.join(tree, 'test/integration')).filter((f) => !only || only.test(f))
  const reportDir = fs.mkdtempSync(path.join(tree, '.reports-'))
  const deadline = Date.now() + budgetMs
  const results = []
  for (const file of files) {
    const excluded = EXCLUDED[file]
    if (excluded && !excluded.run) {
      results.push({ file, status: 'not-run', excluded: excluded.reason })
      continue
    }
    if (Date.now() > deadline) {
      results.push({ file, status: 'not-run', reason: 'run budget spent' })
      continue
    }
    const reportFile = path.join(reportDir, file.replace(/\//g, '_') + '.json')
    // A file that ran out of time (pg's 5 s per case, or ours per file) gets a second try: on a
    // loaded machine gh-issues/1105 (5,000 INSERTs, ~2 s when idle) can miss the 5 s.
    let attempt
    for (let n = 1; n <= 2; n++) {
      const r = await runFile(file, reportFile)
      let rep = null
      try {
        rep = JSON.parse(redact(fs.readFileSync(reportFile, 'utf8')))
      } catch {}
      fs.rmSync(reportFile, { force: true })
      const pass = r.code === 0 && !r.timedOut && !/FAILED!/.test(r.output)
      const status = pass ? 'pass' : r.timedOut ? 'timeout' : 'fail'
      const tail = r.output.split('\n').filter((l) => l.trim() !== '').slice(-12).join('\n')
      attempt = { file, status, excluded: excluded?.reason, exit: r.code ?? r.signal, ms: r.ms, report: rep, tail: pass ? undefined : tail, tries: n }
      const outOfTime = status === 'timeout' || rep?.failure?.how === 'test time limit'
      process.stderr.write(`${args.label} ${status.padEnd(7)} ${(r.ms / 1000).toFixed(1).padStart(5)}s ${file}${n > 1 ? ' (2nd try)' : ''}\n`)
      if (pass || !outOfTime || Date.now() > deadline) break
    }
    results.push(attempt)
  }
  fs.rmSync(reportDir, { recursive: true, force: true })
  fs.writeFileSync(args.out, JSON.stringify({ label: args.label, tree, when: new Date().toISOString(), results }, null, 1))
}

main().catch((e) => {
  console.error(redact(e.stack))
  process.exit(1)
})
