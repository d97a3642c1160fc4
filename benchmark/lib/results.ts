// Everything one run measured; written as JSON next to the report and read by the report writer.
import type { DriverName } from '../drivers/types.ts';
import type { RowsMemory, SoakMemory } from '../rss-child.ts';
import type { QueryLatency, Sample } from '../workloads/index.ts';
import type { OrmQuery, OrmShape } from '../workloads/orm.ts';
import type { Meta } from './machine.ts';
import type { Plan } from './plan.ts';

export type PerDriver<T> = Partial<Record<DriverName, T>>;

export const COLD_KINDS = ['dsql-tunnel', 'pg + dsql-signer', 'aws-connector'] as const;
export type ColdKind = (typeof COLD_KINDS)[number];

/** Phase times of one cold start (ms; `start` is since the process began). */
export interface ColdMarks {
  start: number;
  require: number;
  token: number | null;
  connect: number;
  firstRow: number;
  total: number;
  /** Spawn to exit, seen from the parent. */
  wallMs: number;
}

/** One probe: client flights (round trips) and times through the counting relay + slow tunnel. */
export interface CountedProbe {
  connect: number;
  firstQuery: number;
  repeatQuery: number;
  connectMs: number;
  firstQueryMs: number;
  repeatQueryMs: number;
}

/** Workload 12's two ways through one sshd: dsql-tunnel's own SSH session, and `ssh -L`. */
export const SSH_ARMS = ['in-process', 'ssh -L'] as const;
export type SshArm = (typeof SSH_ARMS)[number];

export interface SshResults {
  /** The cipher and MAC each arm's session negotiated with sshd. */
  negotiated: Record<SshArm, string>;
  /** OpenSSH's version (`ssh -V`), client and server. */
  openssh: string;
  pipeline: Record<SshArm, Sample[]>;
  pool: Record<SshArm, Sample[]>;
  /** CPU time of the ssh process during each `ssh -L` sample (ms), beside the driver's own. */
  forwardCpuMs?: { pipeline: number[]; pool: number[] };
  /** The 1-minute load average after each round. */
  load: number[];
}

export interface Results {
  meta: Meta;
  plan: Plan;
  command: string;
  durationSeconds: number;
  /** Workloads 1-6 (samples in run order, rounds interleaved). */
  connect: PerDriver<Sample[]>;
  sequential: PerDriver<Sample[]>;
  bigResult: PerDriver<Sample[]>;
  manyResults: PerDriver<Sample[]>;
  pipeline: PerDriver<Sample[]>;
  pool: PerDriver<Sample[]>;
  /** Workload 9. */
  latency?: {
    delayMs: number;
    /** 1-byte echo round trip through the plain and the slow tunnel. */
    rttMs: { tunnel: number; slow: number };
    connect: { tunnel: PerDriver<number[]>; slow: PerDriver<number[]> };
    query: { tunnel: PerDriver<QueryLatency>; slow: PerDriver<QueryLatency> };
    pipeline: PerDriver<Sample[]>;
    /** Round trips counted at a relay in front of the slow tunnel, one entry per probe. */
    counted: PerDriver<CountedProbe[]>;
  };
  /** Workload 8. */
  rssRows: PerDriver<RowsMemory[]>;
  soak: PerDriver<SoakMemory>;
  /** Workload 7. */
  cold: Partial<Record<ColdKind, ColdMarks[]>>;
  /** Workloads 10 and 11 (`prisma-page`, `prisma-point`, `sequelize-page`, `sequelize-point`),
   * for the drivers that can be loaded as pg. Absent in runs from before they existed. */
  orm?: Partial<Record<`${OrmShape}-${OrmQuery}`, PerDriver<Sample[]>>>;
  /** Workload 12, absent in runs from before it existed. */
  ssh?: SshResults;
  /** Phases that failed; the run goes on without them. */
  errors: { phase: string; message: string }[];
}
