// Long soak: queries through a pool, via the tunnel and the SNI gate of the local DSQL-like
// stack, with RSS sampled as it goes. Fails (exit 1) if a query fails unexpectedly or RSS after
// warm-up drifts more than the bound. `npm test` runs a short version (faults.spec.ts › load).
//
// RSS is sampled after a full garbage collection (raw RSS is reported too). It climbs for the
// first ~70,000 queries while the allocator and V8 settle, hence the 100,000-query warm-up.
//
//   node --import tsx scripts/soak.ts [--queries 1000000] [--concurrency 64] [--max 10]
//        [--warmup 100000] [--sample-every 10000] [--bound-mb 10] [--faults]
//
// --faults resets every pooled connection every 5 s (only CONNECTION_LOST may then fail).
import { createRequire } from 'node:module'
import { parseArgs } from 'node:util'
import v8 from 'node:v8'
import vm from 'node:vm'
import { FaultProxy } from '../__test__/fixture/faults.ts'
import { startStack } from '../__test__/fixture/stack.ts'

const require = createRequire(import.meta.url)
const { Pool } = require('../index.js') as typeof import('../index.js')

const { values: args } = parseArgs({
  options: {
    queries: { type: 'string', default: '1000000' },
    concurrency: { type: 'string', default: '64' },
    max: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '100000' },
    'sample-every': { type: 'string', default: '10000' },
    'bound-mb': { type: 'string', default: '10' },
    faults: { type: 'boolean', default: false },
  },
})
const total = Number(args.queries)
const concurrency = Number(args.concurrency)
const warmup = Math.min(Number(args.warmup), total)
const every = Number(args['sample-every'])
const boundMb = Number(args['bound-mb'])
const MB = 2 ** 20

// Samples are taken after a full garbage collection: raw RSS follows V8's heap growing and
// shrinking (a sawtooth of about 20 MB here), which says nothing about what is retained.
v8.setFlagsFromString('--expose-gc')
const gc = vm.runInNewContext('gc') as () => void

async function main(): Promise<number> {
  const stack = await startStack()
  const proxy = args.faults ? await new FaultProxy(stack.tunnelPort).start() : null
  const pool = new Pool({
    host: stack.host, hostaddr: stack.tunnelAddr, port: proxy?.port ?? stack.tunnelPort, sslrootcert: stack.caFile,
    user: stack.users.admin.user, password: stack.users.admin.password, max: Number(args.max), connectionTimeoutMillis: 10_000,
  })
  const texts = ['select $1::int as i', 'select $1::text as t, now() as at', 'select g from generate_series(1, 10) g where g > $1::int']
  const failures: Record<string, number> = {}
  const samples: Array<{ at: number; rssMb: number; rawMb: number; ms: number }> = []
  const started = performance.now()
  let issued = 0
  let done = 0
  let faultTimer: NodeJS.Timeout | undefined
  if (proxy) faultTimer = setInterval(() => proxy.resetAll(), 5000)
  try {
    await Promise.all(Array.from({ length: concurrency }, async () => {
      while (issued < total) {
        const i = issued++
        try {
          const r = await pool.query(texts[i % 3], [i % 3 === 2 ? i % 10 : i])
          if (i % 3 === 0 && r.rows[0].i !== i) throw Object.assign(new Error(`query ${i} got ${r.rows[0].i}`), { code: 'WRONG_RESULT' })
        } catch (e) {
          const code = (e as { code?: string }).code ?? String(e)
          failures[code] = (failures[code] ?? 0) + 1
        }
        done++
        if (done === warmup || done % every === 0 || done === total) {
          const rawMb = process.memoryUsage().rss / MB
          gc()
          const s = { at: done, rssMb: process.memoryUsage().rss / MB, rawMb, ms: performance.now() - started }
          samples.push(s)
          process.stdout.write(`${String(s.at).padStart(9)} queries  ${s.rssMb.toFixed(1)} MB RSS after GC (${rawMb.toFixed(1)} before)  ${(s.at / (s.ms / 1000)).toFixed(0)} q/s\n`)
        }
      }
    }))
  } finally {
    clearInterval(faultTimer)
    await pool.end()
    await proxy?.stop()
    await stack.stop()
  }
  const afterWarmup = samples.filter((s) => s.at >= warmup)
  const base = afterWarmup[0]?.rssMb ?? 0
  const drift = Math.max(...afterWarmup.map((s) => s.rssMb)) - base
  const rawRange = Math.max(...afterWarmup.map((s) => s.rawMb)) - Math.min(...afterWarmup.map((s) => s.rawMb))
  const seconds = (performance.now() - started) / 1000
  const allowed = new Set(args.faults ? ['CONNECTION_LOST'] : [])
  const unexpected = Object.entries(failures).filter(([code]) => !allowed.has(code))
  console.log(JSON.stringify({
    queries: total, seconds: Number(seconds.toFixed(1)), perSecond: Math.round(total / seconds), failures,
    rssAfterWarmupMb: Number(base.toFixed(1)), maxDriftMb: Number(drift.toFixed(1)), boundMb,
    rawRssRangeMb: Number(rawRange.toFixed(1)), heapUsedMb: Number((process.memoryUsage().heapUsed / MB).toFixed(1)),
  }))
  if (unexpected.length) console.error(`unexpected failures: ${JSON.stringify(Object.fromEntries(unexpected))}`)
  if (drift > boundMb) console.error(`RSS drifted ${drift.toFixed(1)} MB after warm-up (bound ${boundMb} MB)`)
  return unexpected.length || drift > boundMb ? 1 : 0
}

main().then((code) => process.exit(code), (err: unknown) => {
  console.error(err)
  process.exit(1)
})
