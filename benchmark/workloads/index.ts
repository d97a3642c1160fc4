// The workloads, run inside a driver's own process. Each returns its wall time, the process's CPU
// time (main thread plus any native threads) and, for the large results, event-loop blocking.
import { performance } from 'node:perf_hooks';
import type { Driver, Queryable, Target } from '../drivers/types.ts';
import { LoopMonitor, type LoopStats } from '../lib/loop-monitor.ts';
import type { ThreadCpu } from '../lib/threads.ts';
import { MIXED_10, MIXED_10_ROWS, TINY, WIDE_5 } from './sql.ts';

export interface Sample extends Partial<LoopStats> {
  ms: number;
  cpuMs: number;
  /** Workloads 10 and 11: the same CPU time by thread (JS thread, the others). */
  threads?: ThreadCpu;
}

export async function measure(fn: () => Promise<void>, watchLoop = false): Promise<Sample> {
  const monitor = watchLoop ? new LoopMonitor() : null;
  monitor?.start();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await fn();
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  const loop = monitor?.stop();
  return { ms, cpuMs: (cpu.user + cpu.system) / 1000, ...loop };
}

export function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(`wrong result: ${what}`);
}

/** 1. Connect to ready (TCP, TLS, auth); the connection is closed outside the timing. */
export async function connectOnce(driver: Driver, target: Target): Promise<Sample> {
  let conn: Queryable | undefined;
  const sample = await measure(async () => {
    conn = await driver.connect(target);
  });
  await conn?.end();
  return sample;
}

/** 2. `n` sequential one-parameter queries. */
export function sequential(conn: Queryable, n: number): Promise<Sample> {
  return measure(async () => {
    for (let i = 0; i < n; i++) {
      const rows = await conn.query(TINY, [i]);
      if (i === n - 1) check(rows[0]?.n === i, 'select $1::int');
    }
  });
}

/** 3. One query returning `rows` rows × 5 columns. */
export function bigResult(conn: Queryable, rows: number): Promise<Sample> {
  return measure(async () => {
    const r = await conn.query(WIDE_5, [rows]);
    check(r.length === rows && r[rows - 1]?.id === rows && r[0]?.at instanceof Date, `${rows} rows`);
  }, true);
}

/** 4. `queries` queries each returning 1,000 rows × 10 mixed columns. */
export function manyResults(conn: Queryable, queries: number): Promise<Sample> {
  return measure(async () => {
    for (let q = 0; q < queries; q++) {
      const r = await conn.query(MIXED_10, [q * 7]);
      if (q === 0) check(r.length === MIXED_10_ROWS && r[0]?.id === 0, '1,000 mixed rows');
    }
  }, true);
}

/** 5. `batches` times: `width` queries in flight at once on one connection. */
export function pipelined(conn: Queryable, batches: number, width: number): Promise<Sample> {
  return measure(async () => {
    for (let b = 0; b < batches; b++) {
      const all = await Promise.all(Array.from({ length: width }, (_, i) => conn.query(TINY, [i])));
      check(all[width - 1]?.[0]?.n === width - 1, 'pipelined results in order');
    }
  });
}

/** 6. `callers` concurrent callers, each running `perCaller` queries in turn, over one pool. */
export function pooled(pool: Queryable, callers: number, perCaller: number): Promise<Sample> {
  return measure(async () => {
    await Promise.all(
      Array.from({ length: callers }, async (_, c) => {
        for (let i = 0; i < perCaller; i++) await pool.query(TINY, [c * perCaller + i]);
      }),
    );
  });
}

export interface QueryLatency {
  /** A statement text this connection has not run before. */
  firstMs: number[];
  /** The same text again. */
  repeatMs: number[];
}

let uniqueText = 0;

/** 9. Time of single queries: each a new text once, then that text again. */
export async function queryLatency(conn: Queryable, samples: number): Promise<QueryLatency> {
  const out: QueryLatency = { firstMs: [], repeatMs: [] };
  for (let s = 0; s < samples; s++) {
    const text = `select $1::int as n${process.pid}_${uniqueText++}`;
    let t0 = performance.now();
    await conn.query(text, [s]);
    out.firstMs.push(performance.now() - t0);
    t0 = performance.now();
    await conn.query(text, [s]);
    out.repeatMs.push(performance.now() - t0);
  }
  return out;
}
