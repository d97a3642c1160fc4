// A driver's own process: the orchestrator (which also hosts the gate) sends it one call at a
// time over IPC, so no driver shares an event loop with the fixture or with another driver.
import { performance } from 'node:perf_hooks';
import { isDriverName, loadDriver, type Queryable, type Target } from './drivers/index.ts';
import { ORM_POOL_MAX, ORM_SETUP, ormQueries, type OrmContext } from './workloads/orm.ts';
import type { CallName, CallRequest, CallResponse, Calls, TargetName } from './lib/protocol.ts';
import { bigResult, connectOnce, manyResults, pipelined, pooled, queryLatency, sequential } from './workloads/index.ts';

type Handlers = { [K in CallName]: (params: Calls[K][0]) => Promise<Calls[K][1]> };

async function main(): Promise<void> {
  const name = process.argv[2] ?? '';
  if (!isDriverName(name)) throw new Error(`unknown driver ${name}`);
  const driver = await loadDriver(name);
  const targets = JSON.parse(process.env.BENCH_TARGETS ?? '{}') as Record<TargetName, Target>;

  // One long-lived connection per target, and one pool per target and size, reused across rounds.
  const conns = new Map<TargetName, Queryable>();
  const pools = new Map<string, Queryable>();
  const conn = async (t: TargetName): Promise<Queryable> => {
    let c = conns.get(t);
    if (!c) conns.set(t, (c = await driver.connect(targets[t])));
    return c;
  };

  // Workloads 10 and 11: a pg-shaped pool per ORM shape, as an app holds one for its ORM (a
  // connection that has run a query with Prisma's parsers keeps those types as text); a query
  // counter per workload, so each round reads other rows.
  const orm = new Map<string, OrmContext>();
  const ormContext = (shape: string): OrmContext => {
    let ctx = orm.get(shape);
    if (ctx) return ctx;
    const asPg = driver.asPg;
    if (!asPg) throw new Error(`${name} cannot be loaded as pg`);
    ctx = { pg: asPg.module, pool: new asPg.module.Pool({ ...asPg.config(targets.tunnel), max: ORM_POOL_MAX }) };
    orm.set(shape, ctx);
    return ctx;
  };
  const ormNext = new Map<string, number>();

  let probe: Queryable | null = null;
  let probeText = '';
  const timed = async (fn: () => Promise<unknown>): Promise<number> => {
    const t0 = performance.now();
    await fn();
    return performance.now() - t0;
  };

  const handlers: Handlers = {
    async connect({ target, count }) {
      const out = [];
      for (let i = 0; i < count; i++) out.push(await connectOnce(driver, targets[target]));
      return out;
    },
    sequential: async ({ n }) => sequential(await conn('tunnel'), n),
    bigResult: async ({ rows }) => bigResult(await conn('tunnel'), rows),
    manyResults: async ({ queries }) => manyResults(await conn('tunnel'), queries),
    pipeline: async ({ target, batches, width }) => pipelined(await conn(target), batches, width),
    async pool({ callers, perCaller, max, target = 'tunnel' }) {
      const key = `${target} ${max}`;
      let p = pools.get(key);
      if (!p) pools.set(key, (p = await driver.pool(targets[target], max)));
      return pooled(p, callers, perCaller);
    },
    queryLatency: async ({ target, samples }) => queryLatency(await conn(target), samples),
    probeOpen: ({ target }) => timed(async () => (probe = await driver.connect(targets[target]))),
    async probeQuery({ fresh }) {
      if (!probe) throw new Error('probeOpen first');
      if (fresh) probeText = `select $1::int as probe${process.pid}_${Date.now()}`;
      const p = probe;
      return timed(() => p.query(probeText, [1]));
    },
    async probeClose() {
      await probe?.end();
      probe = null;
      return null;
    },
    async ormSetup() {
      const { pool } = ormContext('setup');
      for (const text of ORM_SETUP) await pool.query(text);
      await pool.end();
      orm.delete('setup');
      return null;
    },
    async orm({ shape, kind, queries }) {
      const key = `${shape}-${kind}`;
      const from = ormNext.get(key) ?? 0;
      ormNext.set(key, from + queries);
      return ormQueries(ormContext(shape), shape, kind, queries, from);
    },
    async close() {
      await Promise.all([...conns.values(), ...pools.values(), ...[...orm.values()].map((o) => o.pool)].map((c) => c.end().catch(() => {})));
      orm.clear();
      conns.clear();
      pools.clear();
      return null;
    },
  };

  process.on('message', (req: CallRequest) => {
    const handler = handlers[req.call] as (p: unknown) => Promise<unknown>;
    handler(req.params).then(
      (result) => reply({ id: req.id, ok: true, result }),
      (err: unknown) => reply({ id: req.id, ok: false, error: err instanceof Error ? err.stack ?? err.message : String(err) }),
    );
  });
  process.on('disconnect', () => process.exit(0));
  reply({ id: 0, ok: true, result: 'ready' });
}

function reply(msg: CallResponse): void {
  process.send?.(msg);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
