// Workload 8, in a fresh process per measurement:
//   rows: peak RSS while one 100,000-row result (workload 3) arrives;
//   soak: RSS after 10,000 sequential tiny queries and after many more (default 1,000,000).
// Run with --expose-gc so the soak can also report RSS after a full collection.
import fs from 'node:fs';
import { performance } from 'node:perf_hooks';
import { isDriverName, loadDriver, type Target } from './drivers/index.ts';
import { TINY, WIDE_5 } from './workloads/sql.ts';

export interface RowsMemory {
  /** RSS after connecting and one warm-up query. */
  baselineRss: number;
  /** The kernel's peak RSS (VmHWM), reset just before the query. */
  peakRss: number;
  /** Peak RSS seen by sampling every millisecond (the event loop permitting). */
  sampledPeakRss: number;
  ms: number;
}

export interface SoakPoint {
  queries: number;
  seconds: number;
  rss: number;
  /** After two forced full GCs. */
  rssAfterGc: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
}

export interface SoakMemory {
  points: SoakPoint[];
  /** False when the time cap stopped the soak before the count asked for. */
  complete: boolean;
}

function vmHwm(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

/** Resets the kernel's peak-RSS counter (Linux ≥ 4.0); false where that is not allowed. */
function resetPeak(): boolean {
  try {
    fs.writeFileSync('/proc/self/clear_refs', '5');
    return true;
  } catch {
    return false;
  }
}

const gc = (globalThis as { gc?: () => void }).gc;

async function main(): Promise<void> {
  const [name = '', mode = '', countArg = '1000000', capArg = '600'] = process.argv.slice(2);
  if (!isDriverName(name)) throw new Error(`unknown driver ${name}`);
  const target = JSON.parse(process.env.BENCH_TARGET ?? 'null') as Target | null;
  if (!target) throw new Error('BENCH_TARGET is not set');
  const driver = await loadDriver(name);
  const conn = await driver.connect(target);
  let result: RowsMemory | SoakMemory;

  if (mode === 'rows') {
    await conn.query(WIDE_5, [10]);
    const baselineRss = process.memoryUsage.rss();
    let sampledPeakRss = baselineRss;
    const timer = setInterval(() => (sampledPeakRss = Math.max(sampledPeakRss, process.memoryUsage.rss())), 1);
    if (!resetPeak()) throw new Error('cannot reset VmHWM through /proc/self/clear_refs');
    const t0 = performance.now();
    const rows = await conn.query(WIDE_5, [100_000]);
    const ms = performance.now() - t0;
    const peakRss = vmHwm();
    clearInterval(timer);
    if (rows.length !== 100_000) throw new Error('wrong row count');
    result = { baselineRss, peakRss, sampledPeakRss: Math.max(sampledPeakRss, process.memoryUsage.rss()), ms };
  } else if (mode === 'soak') {
    const total = Number(countArg);
    const deadline = performance.now() + Number(capArg) * 1000;
    const checkpoints = new Set([10_000, ...[0.1, 0.25, 0.5, 0.75].map((f) => Math.round(total * f)), total]);
    const points: SoakPoint[] = [];
    const t0 = performance.now();
    let i = 0;
    let complete = true;
    while (i < total) {
      const rows = await conn.query(TINY, [i]);
      if (rows[0]?.n !== i) throw new Error('wrong result');
      i++;
      if (checkpoints.has(i) || performance.now() > deadline) {
        const rss = process.memoryUsage.rss();
        gc?.();
        gc?.();
        const mem = process.memoryUsage();
        points.push({ queries: i, seconds: (performance.now() - t0) / 1000, rss, rssAfterGc: mem.rss, heapUsed: mem.heapUsed, heapTotal: mem.heapTotal, external: mem.external });
        if (performance.now() > deadline) {
          complete = i >= total;
          break;
        }
      }
    }
    result = { points, complete };
  } else {
    throw new Error(`unknown mode ${mode}`);
  }
  await conn.end();
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
