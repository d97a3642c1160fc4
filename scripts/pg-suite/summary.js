'use strict'
// Puts the two runs side by side: node summary.js REAL.json OURS.json HEADER.txt > summary
const fs = require('node:fs')

const [realRun, oursRun] = process.argv.slice(2, 4).map((f) => JSON.parse(fs.readFileSync(f, 'utf8')))
const header = process.argv[4] ? fs.readFileSync(process.argv[4], 'utf8').trimEnd() : ''
const byFile = (run) => new Map(run.results.map((r) => [r.file, r]))
const real = byFile(realRun)
const ours = byFile(oursRun)
// The files of the ours run (a --skip-real run may reuse a real run over more files).
const files = [...ours.keys()].sort()

// A file that fails early registers fewer cases: count against the larger of the two runs.
const cases = (f) => Math.max(real.get(f)?.report?.tests ?? 0, ours.get(f)?.report?.tests ?? 0)
const cell = (r) => {
  if (!r) return '-'
  if (r.status === 'not-run') return 'not run'
  const n = cases(r.file) > 0 ? ` ${r.report?.passed ?? 0}/${cases(r.file)}` : ''
  return `${r.status === 'pass' ? 'pass' : r.status === 'timeout' ? 'TIMEOUT' : 'FAIL'}${n}${r.tries > 1 ? ' (2nd try)' : ''}`
}

const err = (e) => (e ? `${e.name && e.name !== 'Error' ? e.name + ': ' : ''}${e.message}${e.code ? ` [code ${e.code}]` : ''}${e.at ? ` (${e.at})` : ''}` : '')

function firstError(r) {
  if (!r || r.status === 'pass' || r.status === 'not-run') return null
  const rep = r.report
  if (!rep) return [`no report (exit ${r.exit}); output ends:`, ...r.tail.split('\n').map((l) => '    ' + l)]
  const f = rep.failure
  const lines = []
  const test = f?.test
  const key = test ?? ''
  lines.push(`${test ? `test "${test}": ` : ''}${f ? err(f) : `exit ${r.exit} without a failure report`}`)
  const logged = rep.logged?.[key]
  const lib = rep.libraryError?.[key]
  if (logged && (!f || logged.message !== f.message)) lines.push(`  error logged first: ${err(logged)}`)
  if (lib && (!f || lib.message !== f.message) && (!logged || lib.message !== logged.message)) {
    lines.push(`  first error a callback got in that test: ${err(lib)}`)
  }
  if (!f && r.tail) lines.push(...r.tail.split('\n').slice(-4).map((l) => '    ' + l))
  return lines
}

// Why real pg fails these files here: pg's own behaviour over TLS, which its CI does not exercise.
const REAL_PG_NOTES = {
  'client/quick-disconnect-tests.js':
    'connect() then end() at once: pg writes Terminate while the socket is still connecting, so it goes out before ' +
    'the SSLRequest; the gate (TLS only, as DSQL) answers that plaintext message with an error, and pg\'s check of the ' +
    'SSL reply throws "There was an error establishing an SSL connection" from its Connection, uncaught even with a ' +
    'client error listener. Without TLS there is no SSL reply to check.',
  'connection-pool/error-tests.js':
    'the case itself passes (its 5/5 tick), then: the stream the test grabs is still the raw socket (TLS not set up yet); ' +
    "its emitted error reaches pg's socket listener and again, re-emitted by Node's TLS wrapper, the TLSSocket listener; " +
    'the second arrives after the pool let the client go, so the Pool emits "error" with no listener (uncaught). TLS only.',
}

const counted = (r) => r && !r.excluded && r.status !== 'not-run'
const totals = (m) => {
  let nFiles = 0, passed = 0, tests = 0, testsPassed = 0, seconds = 0
  for (const f of files) {
    const r = m.get(f)
    if (!counted(r)) continue
    nFiles++
    if (r.status === 'pass') passed++
    tests += cases(r.file)
    testsPassed += r.report?.passed ?? 0
    seconds += (r.ms ?? 0) / 1000
  }
  return { files: nFiles, passed, tests, testsPassed, seconds }
}

const out = []
if (header) out.push(header, '')
const w = Math.max(...files.map((f) => f.length)) + 2
out.push(`${'file'.padEnd(w)}${'real pg'.padEnd(24)}ours`)
for (const f of files) {
  const r = real.get(f) ?? ours.get(f)
  out.push(`${f.padEnd(w)}${cell(real.get(f)).padEnd(24)}${cell(ours.get(f))}${r.excluded ? `   (not counted: ${r.excluded})` : ''}`)
}
const tr = totals(real)
const to = totals(ours)
out.push('')
out.push(`files passed:  real pg ${tr.passed}/${tr.files}, ours ${to.passed}/${to.files}`)
out.push(`tests passed:  real pg ${tr.testsPassed}/${tr.tests}, ours ${to.testsPassed}/${to.tests}   (suite.test() cases; a file stops at its first failure: its later cases count as not passed)`)
out.push(`time in files: real pg ${tr.seconds.toFixed(0)} s, ours ${to.seconds.toFixed(0)} s`)

const guards = (m, label) => {
  const hits = []
  for (const f of files) for (const g of m.get(f)?.report?.guard ?? []) hits.push(`  ${label} ${f}: ${g}`)
  return hits
}
const g = [...guards(real, 'real pg'), ...guards(ours, 'ours')]
if (g.length) out.push('', 'loopback guard (no traffic left 127.0.0.1):', ...[...new Set(g)])

const section = (title, pick, which) => {
  const list = files.filter(pick)
  if (!list.length) return
  out.push('', `${title} (${list.length}):`)
  for (const f of list) {
    out.push(`- ${f}`)
    for (const [label, m] of which) {
      const lines = firstError(m.get(f))
      if (lines) out.push(`    ${label}: ${lines[0]}`, ...lines.slice(1).map((l) => '      ' + l))
      if (lines && m === real && REAL_PG_NOTES[f]) out.push(`      why: ${REAL_PG_NOTES[f]}`)
      if (!lines && m.get(f)?.excluded) out.push(`    ${label}: ${m.get(f).status}, ${m.get(f).excluded}`)
    }
  }
}
const ok = (m, f) => m.get(f)?.status === 'pass'
const bad = (m, f) => counted(m.get(f)) && !ok(m, f)
section('failing on ours but not on real pg', (f) => bad(ours, f) && ok(real, f), [['ours', ours]])
section('failing on both', (f) => bad(ours, f) && bad(real, f), [['real pg', real], ['ours', ours]])
section('failing on real pg only', (f) => bad(real, f) && !bad(ours, f) && counted(ours.get(f)), [['real pg', real]])
section('not counted, for the record', (f) => (real.get(f)?.excluded || ours.get(f)?.excluded) && (bad(real, f) || bad(ours, f) || real.get(f)?.status !== 'pass'), [['real pg', real], ['ours', ours]])
const skips = []
for (const f of files) {
  const r = real.get(f)
  if (!counted(r)) continue
  const madeClients = (r.report?.inject?.ssl ?? 0) + (r.report?.inject?.servername ?? 0) > 0
  if (cases(f) === 0 && madeClients) continue // a script-style test (no suite.test cases): counted as a file
  if (cases(f) === 0) skips.push(`  ${f}: no cases run${r.report?.skipped?.length ? ` (${r.report.skipped.join('; ')})` : ' (the file returns early: native-only, or needs an env variable)'}`)
  else if (r.report?.skipped?.length) skips.push(`  ${f}: ${r.report.skipped.join('; ')}`)
}
if (skips.length) out.push('', 'skipped by the tests themselves (as in a default node-postgres run; real pg run):', ...skips)

const notRun = files.filter((f) => [real.get(f), ours.get(f)].some((r) => r && r.status === 'not-run' && !r.excluded))
if (notRun.length) out.push('', `not run (run budget spent): ${notRun.join(', ')}`)

process.stdout.write(out.join('\n') + '\n')
