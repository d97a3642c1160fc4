// Messages between the orchestrator and a driver's worker process.
import type { QueryLatency, Sample } from '../workloads/index.ts';
import type { OrmQuery, OrmShape } from '../workloads/orm.ts';

/** `tunnel`: the plain tunnel; `slow-tunnel`: the one that adds latency each way; `counted`: a
 * relay that counts round trips, in front of the slow tunnel. Workload 12: `ssh`, the gate through
 * dsql-tunnel's own SSH tunnel to an sshd; `ssh-forward`, the same through `ssh -L` to that sshd. */
export type TargetName = 'tunnel' | 'slow-tunnel' | 'counted' | 'ssh' | 'ssh-forward';

/** Each call: [parameters, result]. */
export interface Calls {
  connect: [{ target: TargetName; count: number }, Sample[]];
  sequential: [{ n: number }, Sample];
  bigResult: [{ rows: number }, Sample];
  manyResults: [{ queries: number }, Sample];
  pipeline: [{ target: TargetName; batches: number; width: number }, Sample];
  pool: [{ callers: number; perCaller: number; max: number; target?: TargetName }, Sample];
  queryLatency: [{ target: TargetName; samples: number }, QueryLatency];
  /** Round-trip probes: open a connection, run a query (a new text, or the last one again), close. */
  probeOpen: [{ target: TargetName }, number];
  probeQuery: [{ fresh: boolean }, number];
  probeClose: [Record<string, never>, null];
  /** Workloads 10 and 11: (re)creates their table, through this worker's pg-shaped pool. */
  ormSetup: [Record<string, never>, null];
  orm: [{ shape: OrmShape; kind: OrmQuery; queries: number }, Sample];
  close: [Record<string, never>, null];
}

export type CallName = keyof Calls;

export interface CallRequest<K extends CallName = CallName> {
  id: number;
  call: K;
  params: Calls[K][0];
}

export type CallResponse =
  | { id: number; ok: true; result: unknown }
  | { id: number; ok: false; error: string };
