// How much of each workload a run does: the full run (what BENCHMARKS.md reports) or --quick.
import { DRIVER_NAMES, isDriverName, type DriverName } from '../drivers/types.ts';

export interface Plan {
  quick: boolean;
  connect: { rounds: number; perRound: number };
  sequential: { rounds: number; n: number };
  bigResult: { rounds: number; rows: number };
  manyResults: { rounds: number; queries: number };
  pipeline: { rounds: number; batches: number; width: number };
  pool: { rounds: number; callers: number; perCaller: number; max: number };
  latency: { delayMs: number; connects: number; queries: number; pipelineRounds: number; pipelineBatches: number };
  rssRows: { rounds: number };
  /** `direct`: straight to PostgreSQL over TLS, skipping the tunnel and gate (2-3× faster, and only
   * the client's memory is measured); `tunnel`: the same path as everything else. */
  soak: { queries: number; drivers: DriverName[]; capSeconds: number; path: 'direct' | 'tunnel' };
  cold: { rounds: number };
  /** Workloads 10 and 11: queries per sample, for the 1,000-row pages and the point selects. */
  orm: { rounds: number; pageQueries: number; pointQueries: number };
  /** Workload 12: workloads 5 and 6 (their width, callers and pool size) through dsql-tunnel's own
   * SSH tunnel and through `ssh -L`, with these batches and queries per caller. */
  ssh: { rounds: number; pipelineBatches: number; poolPerCaller: number };
}

export const FULL: Plan = {
  quick: false,
  connect: { rounds: 7, perRound: 5 },
  sequential: { rounds: 5, n: 10_000 },
  bigResult: { rounds: 7, rows: 100_000 },
  manyResults: { rounds: 3, queries: 1_000 },
  pipeline: { rounds: 5, batches: 50, width: 100 },
  pool: { rounds: 5, callers: 200, perCaller: 100, max: 10 },
  latency: { delayMs: 5, connects: 5, queries: 5, pipelineRounds: 3, pipelineBatches: 3 },
  rssRows: { rounds: 3 },
  soak: { queries: 1_000_000, drivers: ['dsql-tunnel', 'pg'], capSeconds: 330, path: 'direct' },
  cold: { rounds: 7 },
  orm: { rounds: 15, pageQueries: 60, pointQueries: 1_000 },
  ssh: { rounds: 7, pipelineBatches: 50, poolPerCaller: 50 },
};

export const QUICK: Plan = {
  quick: true,
  connect: { rounds: 3, perRound: 3 },
  sequential: { rounds: 3, n: 2_000 },
  bigResult: { rounds: 3, rows: 100_000 },
  manyResults: { rounds: 1, queries: 100 },
  pipeline: { rounds: 3, batches: 10, width: 100 },
  pool: { rounds: 3, callers: 200, perCaller: 10, max: 10 },
  latency: { delayMs: 5, connects: 2, queries: 2, pipelineRounds: 1, pipelineBatches: 2 },
  rssRows: { rounds: 1 },
  soak: { queries: 50_000, drivers: ['dsql-tunnel', 'pg'], capSeconds: 60, path: 'direct' },
  cold: { rounds: 3 },
  orm: { rounds: 5, pageQueries: 20, pointQueries: 300 },
  ssh: { rounds: 3, pipelineBatches: 10, poolPerCaller: 10 },
};

export interface Options {
  plan: Plan;
  /** Where the Markdown report goes. */
  out: string;
  /** Workload numbers to run (default all). */
  only: Set<number> | null;
  /** Rewrite the report from a saved run's JSON instead of running. */
  from: string | null;
}

export const USAGE = `usage: npm run bench [-- --quick] [--soak=N] [--soak-drivers=a,b] [--soak-path=direct|tunnel] [--only=1,2,…] [--out=FILE]
  --quick           a short run (≈1.5 min): fewer rounds, smaller counts; writes benchmark/.results/BENCHMARKS-quick.md
  --soak=N          queries in the RSS soak (workload 8; default 1000000, quick 50000)
  --soak-drivers=…  drivers to soak (default dsql-tunnel,pg; all: ${DRIVER_NAMES.join(',')})
  --soak-path=…     direct (default: straight to PostgreSQL over TLS) or tunnel (through the tunnel and gate, 2-3× slower)
  --only=…          run only these workloads (1-12)
  --out=FILE        where the report goes (default BENCHMARKS.md at the repository root)
  --from=FILE.json  write the report again from a saved run (benchmark/.results/*.json), running nothing`;

export function parseArgs(argv: string[], defaultOut: string, quickOut: string): Options {
  const quick = argv.includes('--quick');
  const plan: Plan = structuredClone(quick ? QUICK : FULL);
  let out = quick ? quickOut : defaultOut;
  let only: Set<number> | null = null;
  let from: string | null = null;
  for (const arg of argv) {
    const [key, value = ''] = arg.split('=', 2) as [string, string?];
    if (key === '--quick') continue;
    else if (key === '--soak') plan.soak.queries = positiveInt(value, key);
    else if (key === '--soak-drivers') {
      const names = value.split(',').filter(Boolean);
      if (!names.every(isDriverName)) throw new Error(`--soak-drivers: one of ${DRIVER_NAMES.join(', ')}`);
      plan.soak.drivers = names;
    } else if (key === '--soak-path') {
      if (value !== 'direct' && value !== 'tunnel') throw new Error('--soak-path: direct or tunnel');
      plan.soak.path = value;
    } else if (key === '--only') only = new Set(value.split(',').map((v) => positiveInt(v, key)));
    else if (key === '--out') out = value;
    else if (key === '--from') from = value;
    else if (key === '--help' || key === '-h') {
      console.log(USAGE);
      process.exit(0);
    } else throw new Error(`unknown argument ${arg}\n${USAGE}`);
  }
  return { plan, out, only, from };
}

function positiveInt(v: string, name: string): number {
  const n = Number(v.replace(/_/g, ''));
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${name} needs a positive integer`);
  return n;
}
