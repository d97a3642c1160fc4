// Where a query's time goes inside the driver's process: CPU per query on each thread (Node's
// own and Rust's tokio worker, from /proc/self/task), for the shapes of workloads 2, 5 and 6, and
// the event loop's longest block while workload 3's result arrives (run with --trace-gc to see
// the collections behind it).
//
//   node --import tsx benchmark/profile.ts <seq|pipe|pool|large|stream> [path to a .node build]
//   node --import tsx benchmark/profile.ts orm-<prisma|sequelize>-<page|point> [path to a .node build]
//   node --import tsx benchmark/profile.ts orm-plans [path to a .node build]
//
// The orm-* modes run workload 10 or 11's calls with this package as `pg` and then with real pg
// (benchmark/node_modules), in this process, and give each one's CPU per query by thread.
//
// `large` holds the 100,000 rows as query() returns them; `stream` iterates the same rows with
// client.stream() and keeps none.
//
// Straight to PostgreSQL through a tunnel process (no gate): the client's share stands out.
import fs from 'node:fs'
import path from 'node:path'
import { createRequire } from 'node:module'
import { startStack } from '../__test__/fixture/stack.ts'
import { pgConfig } from './drivers/pg-config.ts'
import type { PgModule } from './drivers/types.ts'
import { idOf, ORM_POOL_MAX, ORM_SETUP, ormQueries, PRISMA_POINT, SEQUELIZE_POINT, type OrmQuery, type OrmShape } from './workloads/orm.ts'

const mode = process.argv[2] ?? 'seq'
if (process.argv[3]) process.env.NAPI_RS_NATIVE_LIBRARY_PATH = path.resolve(process.argv[3])
const require = createRequire(import.meta.url)
const { connect, Pool } = require('../index.js') as typeof import('../index.js')

const LARGE = `select i as id, 'name ' || i as name, i * 0.5::float8 as score, i % 2 = 0 as flag,
  timestamptz '2024-01-01 00:00:00+00' + i * interval '1 second' as at from generate_series(1, 100000) as g(i)`

/** CPU milliseconds per thread (utime + stime at 100 Hz). */
function threads(): Record<string, number> {
  const out: Record<string, number> = {}
  for (const t of fs.readdirSync('/proc/self/task')) {
    const stat = fs.readFileSync(`/proc/self/task/${t}/stat`, 'utf8')
    const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'))
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    out[`${name} (${t})`] = (Number(f[11]) + Number(f[12])) * 10
  }
  return out
}

async function main() {
  process.env.AWS_EC2_METADATA_DISABLED = 'true'
  const stack = await startStack()
  try {
    const tunnel = await stack.startTunnel(stack.pgPort)
    const config = { host: 'localhost', hostaddr: '127.0.0.1', port: tunnel.port, password: stack.users.admin.password, sslrootcert: stack.caFile, sslnegotiation: 'postgres' as const }
    if (mode === 'orm-plans') {
      await profilePlans(stack.users.admin.password, stack.caFile, tunnel.port)
      return
    }
    if (mode.startsWith('orm-')) {
      await profileOrm(mode, stack.users.admin.password, stack.caFile, tunnel.port)
      return
    }
    const client = await connect(config)
    const pool = new Pool({ ...config, max: 10 })
    if (mode === 'large' || mode === 'stream') {
      for (let run = 0; run < 5; run++) {
        let last = performance.now(), worst = 0
        const monitor = setInterval(() => { const now = performance.now(); worst = Math.max(worst, now - last - 1); last = now }, 1)
        const started = performance.now()
        let rows = 0
        if (mode === 'large') rows = (await client.query(LARGE)).rows.length
        else for await (const _ of client.stream(LARGE, [], { batchSize: 4096 })) rows++
        clearInterval(monitor)
        console.log(`run ${run}: ${rows} rows in ${(performance.now() - started).toFixed(1)} ms, longest event-loop block ${worst.toFixed(1)} ms`)
      }
    } else {
      const n = mode === 'seq' ? 10_000 : 100_000
      const run = async (count: number) => {
        if (mode === 'seq') {
          for (let i = 0; i < count; i++) await client.query('select $1::int as n', [i])
        } else if (mode === 'pipe') {
          for (let i = 0; i < count; i += 100) await Promise.all(Array.from({ length: 100 }, (_, j) => client.query('select $1::int as n', [i + j])))
        } else {
          let next = 0
          await Promise.all(Array.from({ length: 200 }, async () => { while (next++ < count) await pool.query('select $1::int as n', [next]) }))
        }
      }
      await run(2_000)
      const before = threads(), cpu = process.cpuUsage(), started = performance.now()
      await run(n)
      const wall = performance.now() - started, used = process.cpuUsage(cpu), after = threads()
      console.log(`${mode}: ${n} queries, wall ${(wall * 1000 / n).toFixed(1)} µs and process CPU ${((used.user + used.system) / n).toFixed(1)} µs per query`)
      for (const k of Object.keys(after)) {
        const ms = after[k] - (before[k] ?? 0)
        if (ms > 20) console.log(`  ${k}: ${(ms * 1000 / n).toFixed(1)} µs per query`)
      }
    }
    await client.end()
    await pool.end()
  } finally {
    await stack.stop()
  }
}
async function profileOrm(mode: string, password: string, caFile: string, port: number) {
  const [, shape, kind] = mode.split('-') as [string, OrmShape, OrmQuery]
  const target = { host: 'localhost', hostaddr: '127.0.0.1', port, caFile, user: 'admin', password, database: 'postgres' }
  const benchRequire = createRequire(new URL('./package.json', import.meta.url))
  const n = kind === 'page' ? 300 : 5_000
  let setUp = false
  for (const [label, pg] of [['dsql-tunnel as pg', require('../index.js')], ['pg', benchRequire('pg')]] as [string, PgModule][]) {
    const pool = new pg.Pool({ ...pgConfig(target), max: ORM_POOL_MAX })
    if (!setUp) for (const text of ORM_SETUP) await pool.query(text)
    setUp = true
    const ctx = { pool, pg }
    await ormQueries(ctx, shape, kind, n / 5)
    const before = threads(), cpu = process.cpuUsage(), started = performance.now()
    await ormQueries(ctx, shape, kind, n, n)
    const wall = performance.now() - started, used = process.cpuUsage(cpu), after = threads()
    console.log(`${label}, ${shape} ${kind}: ${n} queries, wall ${(wall * 1000 / n).toFixed(1)} µs and process CPU ${((used.user + used.system) / n).toFixed(1)} µs per query`)
    for (const k of Object.keys(after)) {
      const ms = after[k] - (before[k] ?? 0)
      if (ms > 20) console.log(`  ${k}: ${(ms * 1000 / n).toFixed(1)} µs per query`)
    }
    await pool.end()
  }
}

/**
 * Workloads 10b and 11b's point selects, interleaved in one process: this package as `pg`, pg as
 * the ORMs call it (an unnamed statement, parsed every time), and pg with a `name` (prepared once,
 * as this package prepares every text). The last two differ only in what the server does; the
 * first two in what the drivers do as well. Then what PostgreSQL did with this package's cached
 * statements (`pg_prepared_statements`: generic plans are planned once, custom plans each run).
 */
async function profilePlans(password: string, caFile: string, port: number) {
  const target = { host: 'localhost', hostaddr: '127.0.0.1', port, caFile, user: 'admin', password, database: 'postgres' }
  const benchRequire = createRequire(new URL('./package.json', import.meta.url))
  const ours = require('../index.js') as PgModule
  const pg = benchRequire('pg') as PgModule
  const pools = { ours: new ours.Pool({ ...pgConfig(target), max: 1 }), pg: new pg.Pool({ ...pgConfig(target), max: 1 }) }
  for (const text of ORM_SETUP) await pools.ours.query(text)
  const ids = Array.from({ length: 1000 }, (_, i) => idOf(i + 1))
  type Run = (i: number) => Promise<unknown>
  const variants: Array<[string, Run]> = []
  for (const [sql, name, values] of [
    [PRISMA_POINT, 'prisma', (i: number) => [ids[i % 1000], 1, 0]],
    [SEQUELIZE_POINT, 'sequelize', (i: number) => [ids[i % 1000]]],
  ] as const) {
    variants.push([`${name}: dsql-tunnel as pg`, (i) => pools.ours.query({ text: sql, values: values(i) })])
    variants.push([`${name}: pg, unnamed (as the ORM calls it)`, (i) => pools.pg.query({ text: sql, values: values(i) })])
    variants.push([`${name}: pg, named`, (i) => pools.pg.query({ name: `p_${name}`, text: sql, values: values(i) })])
  }
  const times = new Map<string, number[]>()
  const perRound = 300
  for (let round = 0; round < 10; round++) {
    for (const [label, run] of round % 2 ? variants : [...variants].reverse()) {
      for (let i = 0; i < 20; i++) await run(i)
      const started = performance.now()
      for (let i = 0; i < perRound; i++) await run(round * perRound + i)
      times.set(label, [...(times.get(label) ?? []), ((performance.now() - started) * 1000) / perRound])
    }
  }
  const median = (a: number[]) => [...a].sort((x, y) => x - y)[a.length >> 1]
  for (const [label, t] of times) console.log(`${label.padEnd(44)} ${median(t).toFixed(0)} µs per query (median of ${t.length} rounds)`)
  const plans = await pools.ours.query(`select left(statement, 40) as statement, generic_plans, custom_plans from pg_prepared_statements where statement like 'SELECT%' order by statement`)
  for (const r of plans.rows as Array<{ statement: string; generic_plans: string; custom_plans: string }>) {
    console.log(`dsql-tunnel's cached statement ${JSON.stringify(r.statement + '…')}: ${r.generic_plans} generic plans, ${r.custom_plans} custom plans`)
  }
  await pools.ours.end()
  await pools.pg.end()
}

main()
