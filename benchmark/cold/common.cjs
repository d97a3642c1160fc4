'use strict'
// Shared by the cold-start children: the target (from the orchestrator) and the report line.
// These are plain CommonJS, run by bare `node`, so that no TypeScript loader sits in the
// require() being measured.
const { performance } = require('node:perf_hooks')

const target = JSON.parse(process.env.BENCH_COLD || '{}')

/** Prints one JSON line of phase times (ms since this process started) and exits. */
function report(marks, check) {
  if (!check) throw new Error('wrong first row')
  process.stdout.write(JSON.stringify(marks) + '\n')
}

function fail(err) {
  process.stderr.write(String((err && err.stack) || err) + '\n')
  process.exit(1)
}

module.exports = { performance, target, report, fail }
