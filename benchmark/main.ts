// `npm run bench`: dsql-tunnel against pg, postgres.js and pg-native, all through the same tunnel
// to the same gate and PostgreSQL, with full certificate verification. Each driver runs in its own
// process (the gate lives in this one); rounds are interleaved (A B C D, B C D A, …) and the
// report gives medians. See BENCHMARKS.md for what each workload does.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { startStack, type Stack } from '../__test__/fixture/stack.ts';
import { SSH, SshForward, Sshd, keygen } from '../__test__/fixture/sshd.ts';
import { freePort } from '../__test__/fixture/util.ts';
import { DEFAULT_PG_BIN } from '../__test__/fixture/postgres.ts';
import { AS_PG_DRIVERS, DRIVER_NAMES, type DriverName, type Target } from './drivers/types.ts';
import { runJsonChild } from './lib/child.ts';
import { collectMeta } from './lib/machine.ts';
import { BENCH_DIR, PRODUCT_ADDON, PRODUCT_ENTRY, RELEASE_ADDON, ROOT_DIR, snapshotProduct } from './lib/paths.ts';
import { parseArgs, type Plan } from './lib/plan.ts';
import type { TargetName } from './lib/protocol.ts';
import { COLD_KINDS, SSH_ARMS, type ColdKind, type ColdMarks, type CountedProbe, type PerDriver, type Results, type SshArm } from './lib/results.ts';
import { FlightCounter } from './lib/flight-counter.ts';
import { EchoServer, echoRtt } from './lib/rtt.ts';
import { WorkerHost } from './lib/worker-host.ts';
import { isSectionOnly, keepHandWritten, spliceOnly, writeReport } from './report.ts';
import { emptySsh } from './report-ssh.ts';
import type { RowsMemory, SoakMemory } from './rss-child.ts';

const log = (msg: string): void => void process.stderr.write(`[bench ${(performance.now() / 1000).toFixed(0).padStart(4)} s] ${msg}\n`);

/** The environment of every child: ours without PG* and AWS_* (no stray settings), plus `extra`. */
function childEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^(PG|AWS_)/.test(k)) env[k] = v;
  return { ...env, NAPI_RS_NATIVE_LIBRARY_PATH: PRODUCT_ADDON, BENCH_DSQL_TUNNEL: PRODUCT_ENTRY, AWS_EC2_METADATA_DISABLED: 'true', ...extra };
}

/** Calls `fn` for every driver, `rounds` times, rotating who goes first each round. */
async function interleave<T>(
  label: string,
  workers: WorkerHost[],
  rounds: number,
  fn: (w: WorkerHost) => Promise<T>,
): Promise<Record<DriverName, T[]>> {
  const out = Object.fromEntries(workers.map((w) => [w.driver, [] as T[]])) as Record<DriverName, T[]>;
  for (let r = 0; r < rounds; r++) {
    const order = workers.map((_, i) => workers[(i + r) % workers.length]!);
    for (const w of order) out[w.driver].push(await fn(w));
    log(`${label}: round ${r + 1}/${rounds}`);
  }
  return out;
}

/** Runs one phase; a failure is recorded and reported, and the run goes on. */
async function phase(results: Results, name: string, fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    log(`${name} FAILED: ${message.split('\n')[0]}`);
    results.errors.push({ phase: name, message });
  }
}

async function warmUp(workers: WorkerHost[], fn: (w: WorkerHost) => Promise<unknown>): Promise<void> {
  for (const w of workers) await fn(w);
}

function targetsFor(stack: Stack, slowPort: number, countedPort: number): Record<Exclude<TargetName, 'ssh' | 'ssh-forward'>, Target> {
  const tunnel: Target = {
    host: stack.host,
    hostaddr: '127.0.0.1',
    port: stack.tunnelPort,
    caFile: stack.caFile,
    user: stack.users.admin.user,
    password: stack.users.admin.password,
    database: 'postgres',
  };
  return { tunnel, 'slow-tunnel': { ...tunnel, port: slowPort }, counted: { ...tunnel, port: countedPort } };
}

async function driverWorkloads(plan: Plan, only: (n: number) => boolean, stack: Stack, results: Results): Promise<void> {
  const slow = await stack.startTunnel(stack.gatePort, { delayMs: plan.latency.delayMs });
  const counter = await FlightCounter.start(slow.port);
  const targets = targetsFor(stack, slow.port, counter.port);
  const env = childEnv({ BENCH_TARGETS: JSON.stringify(targets), NODE_OPTIONS: '--no-deprecation' });
  const workers: WorkerHost[] = [];
  try {
    // A run of only workloads 10/11 starts only the drivers they compare.
    const drivers: readonly DriverName[] = [1, 2, 3, 4, 5, 6, 9].some(only) ? DRIVER_NAMES : AS_PG_DRIVERS;
    for (const d of drivers) workers.push(await WorkerHost.start(d, env));

    if (only(1)) await phase(results, '1 connect', async () => {
      const { rounds, perRound } = plan.connect;
      await warmUp(workers, (w) => w.call('connect', { target: 'tunnel', count: 1 }));
      const r = await interleave('1 connect', workers, rounds, (w) => w.call('connect', { target: 'tunnel', count: perRound }));
      results.connect = Object.fromEntries(Object.entries(r).map(([d, v]) => [d, v.flat()]));
    });
    if (only(2)) await phase(results, '2 sequential', async () => {
      const { rounds, n } = plan.sequential;
      await warmUp(workers, (w) => w.call('sequential', { n: Math.min(n, 2_000) }));
      results.sequential = await interleave('2 sequential', workers, rounds, (w) => w.call('sequential', { n }));
    });
    if (only(3)) await phase(results, '3 one large result', async () => {
      const { rounds, rows } = plan.bigResult;
      await warmUp(workers, (w) => w.call('bigResult', { rows }));
      results.bigResult = await interleave('3 one large result', workers, rounds, (w) => w.call('bigResult', { rows }));
    });
    if (only(4)) await phase(results, '4 many results', async () => {
      const { rounds, queries } = plan.manyResults;
      await warmUp(workers, (w) => w.call('manyResults', { queries: Math.min(queries, 50) }));
      results.manyResults = await interleave('4 many results', workers, rounds, (w) => w.call('manyResults', { queries }));
    });
    if (only(5)) await phase(results, '5 pipelining', async () => {
      const { rounds, batches, width } = plan.pipeline;
      await warmUp(workers, (w) => w.call('pipeline', { target: 'tunnel', batches: Math.min(batches, 10), width }));
      results.pipeline = await interleave('5 pipelining', workers, rounds, (w) => w.call('pipeline', { target: 'tunnel', batches, width }));
    });
    if (only(6)) await phase(results, '6 pool', async () => {
      const { rounds, callers, perCaller, max } = plan.pool;
      await warmUp(workers, (w) => w.call('pool', { callers, perCaller: Math.min(perCaller, 10), max }));
      results.pool = await interleave('6 pool', workers, rounds, (w) => w.call('pool', { callers, perCaller, max }));
    });
    const asPg = workers.filter((w) => (AS_PG_DRIVERS as readonly DriverName[]).includes(w.driver));
    if (only(10) || only(11)) await phase(results, '10/11 set-up', () => asPg[0]!.call('ormSetup', {}).then(() => {}));
    for (const [n, shape] of [[10, 'prisma'], [11, 'sequelize']] as const) {
      if (!only(n) || results.errors.some((e) => e.phase === '10/11 set-up')) continue;
      for (const kind of ['page', 'point'] as const) {
        const label = `${n}${kind === 'page' ? 'a' : 'b'} ${shape}-shaped ${kind === 'page' ? '1,000 rows' : 'point select'}`;
        await phase(results, label, async () => {
          const queries = kind === 'page' ? plan.orm.pageQueries : plan.orm.pointQueries;
          await warmUp(asPg, (w) => w.call('orm', { shape, kind, queries: Math.max(1, Math.floor(queries / 5)) }));
          (results.orm ??= {})[`${shape}-${kind}`] = await interleave(label, asPg, plan.orm.rounds, (w) => w.call('orm', { shape, kind, queries }));
        });
      }
    }
    if (only(9)) await phase(results, '9 round trips', async () => {
      results.latency = await latencyWorkloads(plan, stack, slow.port, counter, workers);
    });
  } finally {
    await Promise.all(workers.map((w) => w.stop()));
    await counter.stop();
    await slow.stop();
  }
}

/** Round trips counted at the relay: the client flights each step of a probe added to its connection
 * (counted per connection: a previous connection's Terminate may reach the relay late). */
async function countRoundTrips(w: WorkerHost, counter: FlightCounter): Promise<CountedProbe> {
  const opened = counter.connections.length;
  try {
    const connectMs = await w.call('probeOpen', { target: 'counted' });
    const conn = counter.latest();
    if (!conn || counter.connections.length !== opened + 1) throw new Error(`${w.driver}: expected one new connection through the counting relay`);
    const connect = conn.flights;
    const firstQueryMs = await w.call('probeQuery', { fresh: true });
    const firstQuery = conn.flights - connect;
    const repeatQueryMs = await w.call('probeQuery', { fresh: false });
    const repeatQuery = conn.flights - connect - firstQuery;
    return { connect, firstQuery, repeatQuery, connectMs, firstQueryMs, repeatQueryMs };
  } finally {
    await w.call('probeClose', {});
  }
}

async function latencyWorkloads(
  plan: Plan,
  stack: Stack,
  slowPort: number,
  counter: FlightCounter,
  workers: WorkerHost[],
): Promise<NonNullable<Results['latency']>> {
  const { delayMs, connects, queries, pipelineRounds, pipelineBatches } = plan.latency;
  const echo = await EchoServer.start();
  const echoFast = await stack.startTunnel(echo.port);
  const echoSlow = await stack.startTunnel(echo.port, { delayMs });
  let rttMs: { tunnel: number; slow: number };
  try {
    rttMs = { tunnel: await echoRtt(echoFast.port, 50), slow: await echoRtt(echoSlow.port, 20) };
  } finally {
    await Promise.all([echoFast.stop(), echoSlow.stop()]);
    await echo.stop();
  }
  log(`9 round trips: echo RTT ${rttMs.tunnel.toFixed(2)} ms plain, ${rttMs.slow.toFixed(2)} ms with ${delayMs} ms each way (port ${slowPort})`);
  const connectTimes = async (target: TargetName): Promise<PerDriver<number[]>> => {
    // A first connection through this tunnel, not counted (TLS session caches, key-share hints).
    await warmUp(workers, (w) => w.call('connect', { target, count: 1 }));
    const r = await interleave(`9 connect (${target})`, workers, connects, (w) => w.call('connect', { target, count: 1 }));
    return Object.fromEntries(Object.entries(r).map(([d, v]) => [d, v.flat().map((s) => s.ms)]));
  };
  const queryTimes = async (target: TargetName): Promise<PerDriver<{ firstMs: number[]; repeatMs: number[] }>> => {
    const r = await interleave(`9 query (${target})`, workers, 1, (w) => w.call('queryLatency', { target, samples: queries }));
    return Object.fromEntries(Object.entries(r).map(([d, v]) => [d, v[0]!]));
  };
  const counted = await interleave('9 round trips counted', workers, 2, (w) => countRoundTrips(w, counter));
  const connect = { tunnel: await connectTimes('tunnel'), slow: await connectTimes('slow-tunnel') };
  const query = { tunnel: await queryTimes('tunnel'), slow: await queryTimes('slow-tunnel') };
  const width = plan.pipeline.width;
  const pipeline = await interleave('9 pipelining (slow tunnel)', workers, pipelineRounds, (w) =>
    w.call('pipeline', { target: 'slow-tunnel', batches: pipelineBatches, width }),
  );
  return { delayMs, rttMs, connect, query, pipeline, counted };
}

/** Workload 12: workloads 5 and 6 through dsql-tunnel's own SSH tunnel and through `ssh -L`, to
 * one sshd in front of the gate, in one dsql-tunnel worker; rounds alternate which arm goes first. */
async function sshWorkloads(plan: Plan, stack: Stack, results: Results): Promise<void> {
  const dir = fs.mkdtempSync(path.join(stack.tmpDir, 'sshd-'));
  const key = path.join(dir, 'id_bench');
  const gate = `127.0.0.1:${stack.gatePort}`;
  const sshd = new Sshd(dir, await freePort(), gate, [keygen(key)], undefined, { logLevel: 'DEBUG1' });
  const knownHosts = path.join(dir, 'known_hosts');
  let forward: SshForward | undefined;
  let worker: WorkerHost | undefined;
  try {
    await sshd.start();
    fs.writeFileSync(knownHosts, `${sshd.knownHostsLine()}\n`);
    // ssh -L first, so that sshd logs its cipher before the in-process session's.
    forward = await SshForward.start(sshd, { identityFile: key, knownHostsFile: knownHosts, to: gate });
    const direct: Target = { ...targetsFor(stack, 0, 0).tunnel, port: stack.gatePort };
    const ssh = { host: '127.0.0.1', port: sshd.port, user: 'root', identityFile: key, knownHostsFile: knownHosts, agent: false };
    const targets = { ssh: { ...direct, tunnel: { ssh } }, 'ssh-forward': { ...direct, port: forward.port } };
    worker = await WorkerHost.start('dsql-tunnel', childEnv({ BENCH_TARGETS: JSON.stringify(targets), NODE_OPTIONS: '--no-deprecation' }));
    const w = worker;
    const arms: Record<SshArm, 'ssh' | 'ssh-forward'> = { 'in-process': 'ssh', 'ssh -L': 'ssh-forward' };
    const { width } = plan.pipeline;
    const { callers, max } = plan.pool;
    const { rounds, pipelineBatches, poolPerCaller } = plan.ssh;
    const pipeline = (arm: SshArm, batches: number) => w.call('pipeline', { target: arms[arm], batches, width });
    const pool = (arm: SshArm, perCaller: number) => w.call('pool', { target: arms[arm], callers, perCaller, max });
    for (const arm of SSH_ARMS) {
      await pipeline(arm, Math.min(pipelineBatches, 5));
      await pool(arm, Math.min(poolPerCaller, 5));
    }
    const out = emptySsh();
    const version = spawnSync(SSH, ['-V'], { encoding: 'utf8' });
    out.openssh = (version.stderr || version.stdout).trim().split(',')[0] ?? 'OpenSSH';
    out.negotiated = { 'ssh -L': forward.negotiated(), 'in-process': sshd.negotiated()[1] ?? 'unknown' };
    log(`12 ssh tunnel: in-process ${out.negotiated['in-process']}, ssh -L ${out.negotiated['ssh -L']}`);
    const qps = (s: { ms: number }, n: number): string => Math.round((n / s.ms) * 1000).toLocaleString('en');
    const fwd = forward;
    const forwardCpu = (out.forwardCpuMs = { pipeline: [] as number[], pool: [] as number[] });
    /** A sample; for ssh -L, with the ssh process's CPU time during it. */
    const sample = async (k: 'pipeline' | 'pool', arm: SshArm): Promise<void> => {
      const cpu0 = fwd.cpuMs();
      out[k][arm].push(await (k === 'pipeline' ? pipeline(arm, pipelineBatches) : pool(arm, poolPerCaller)));
      if (arm === 'ssh -L') forwardCpu[k].push(fwd.cpuMs() - cpu0);
    };
    for (let r = 0; r < rounds; r++) {
      const order = r % 2 === 0 ? SSH_ARMS : [...SSH_ARMS].reverse();
      for (const arm of order) await sample('pipeline', arm);
      for (const arm of order) await sample('pool', arm);
      out.load.push(os.loadavg()[0]!);
      const last = (k: 'pipeline' | 'pool', arm: SshArm, n: number): string => qps(out[k][arm].at(-1)!, n);
      log(
        `12 ssh tunnel: round ${r + 1}/${rounds}: pipelined ${last('pipeline', 'in-process', pipelineBatches * width)} vs ` +
          `${last('pipeline', 'ssh -L', pipelineBatches * width)} q/s, pool ${last('pool', 'in-process', callers * poolPerCaller)} vs ` +
          `${last('pool', 'ssh -L', callers * poolPerCaller)} q/s (in-process vs ssh -L), load ${out.load.at(-1)!.toFixed(2)}`,
      );
    }
    results.ssh = out;
  } finally {
    await worker?.stop();
    await forward?.stop();
    await sshd.kill();
  }
}

async function memoryWorkloads(plan: Plan, stack: Stack, results: Results): Promise<void> {
  const { tunnel } = targetsFor(stack, 0, 0);
  const env = (target: Target): NodeJS.ProcessEnv => childEnv({ BENCH_TARGET: JSON.stringify(target), NODE_OPTIONS: '--no-deprecation' });
  const child = (args: string[]) => ['--import', 'tsx', '--expose-gc', path.join(BENCH_DIR, 'rss-child.ts'), ...args];
  for (let r = 0; r < plan.rssRows.rounds; r++) {
    for (let i = 0; i < DRIVER_NAMES.length; i++) {
      const d = DRIVER_NAMES[(i + r) % DRIVER_NAMES.length]!;
      const { value } = await runJsonChild<RowsMemory>(child([d, 'rows']), env(tunnel), 120_000);
      (results.rssRows[d] ??= []).push(value);
    }
    log(`8 peak RSS (workload 3): round ${r + 1}/${plan.rssRows.rounds}`);
  }
  const { queries, drivers, capSeconds, path: soakPath } = plan.soak;
  // Straight to PostgreSQL (its certificate is for localhost, from the same CA), or through the tunnel.
  const soakTarget: Target = soakPath === 'direct' ? { ...tunnel, host: 'localhost', port: stack.pgPort } : tunnel;
  log(`8 RSS soak: ${queries.toLocaleString('en')} sequential queries each for ${drivers.join(', ')} (${soakPath}, side by side, at most ${capSeconds} s)`);
  // Memory, not speed, is measured here, so the soaks run side by side.
  const soaks = await Promise.all(
    drivers.map((d) => runJsonChild<SoakMemory>(child([d, 'soak', String(queries), String(capSeconds)]), env(soakTarget), (capSeconds + 120) * 1000)),
  );
  drivers.forEach((d, i) => (results.soak[d] = soaks[i]!.value));
}

async function coldStarts(plan: Plan, stack: Stack, results: Results): Promise<void> {
  // A gate of its own that checks real SigV4 tokens signed with stack.aws, behind its own tunnel.
  const gate = await stack.startGate({ tokenAuth: true });
  try {
    const target = {
      host: stack.host,
      hostaddr: '127.0.0.1',
      port: gate.port,
      caFile: stack.caFile,
      user: stack.users.admin.user,
      database: 'postgres',
      region: stack.aws.region,
    };
    const env = childEnv({
      BENCH_COLD: JSON.stringify(target),
      AWS_ACCESS_KEY_ID: stack.aws.accessKeyId,
      AWS_SECRET_ACCESS_KEY: stack.aws.secretAccessKey,
      AWS_SESSION_TOKEN: stack.aws.sessionToken,
      AWS_REGION: stack.aws.region,
      // Only the variables above: no profile files from this machine.
      AWS_CONFIG_FILE: path.join(stack.tmpDir, 'no-aws-config'),
      AWS_SHARED_CREDENTIALS_FILE: path.join(stack.tmpDir, 'no-aws-credentials'),
    });
    const script: Record<ColdKind, string> = {
      'dsql-tunnel': 'dsql-tunnel.cjs',
      'pg + dsql-signer': 'pg-signer.cjs',
      'aws-connector': 'aws-connector.cjs',
    };
    // One unrecorded start of each, so every one reads its files from the page cache.
    for (const k of COLD_KINDS) await runJsonChild(['--no-deprecation', path.join(BENCH_DIR, 'cold', script[k])], env, 60_000);
    for (let r = 0; r < plan.cold.rounds; r++) {
      for (let i = 0; i < COLD_KINDS.length; i++) {
        const k = COLD_KINDS[(i + r) % COLD_KINDS.length]!;
        const { value, wallMs } = await runJsonChild<Omit<ColdMarks, 'wallMs'>>(['--no-deprecation', path.join(BENCH_DIR, 'cold', script[k])], env, 60_000);
        (results.cold[k] ??= []).push({ ...value, wallMs });
      }
      log(`7 cold start: round ${r + 1}/${plan.cold.rounds}`);
    }
  } finally {
    await gate.stop();
  }
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const { plan, out, only, from } = parseArgs(argv, path.join(ROOT_DIR, 'BENCHMARKS.md'), path.join(BENCH_DIR, '.results', 'BENCHMARKS-quick.md'));
  if (from) {
    const saved = JSON.parse(fs.readFileSync(from, 'utf8')) as Results;
    const existing = fs.existsSync(out) ? fs.readFileSync(out, 'utf8') : null;
    fs.writeFileSync(out, isSectionOnly(saved) && existing !== null ? spliceOnly(existing, saved) : keepHandWritten(writeReport(saved), existing));
    log(`${path.relative(process.cwd(), out)} rewritten from ${from}`);
    return;
  }
  const want = (n: number): boolean => !only || only.has(n);
  if (!fs.existsSync(RELEASE_ADDON)) throw new Error(`${RELEASE_ADDON} is missing: run benchmark/run.sh, which builds it`);
  snapshotProduct();
  const started = performance.now();
  const results: Results = {
    meta: collectMeta(DEFAULT_PG_BIN),
    plan,
    command: `npm run bench${argv.length ? ` -- ${argv.join(' ')}` : ''}`,
    durationSeconds: 0,
    connect: {}, sequential: {}, bigResult: {}, manyResults: {}, pipeline: {}, pool: {},
    rssRows: {}, soak: {}, cold: {}, errors: [],
  };
  log(`${plan.quick ? 'quick' : 'full'} run; dsql-tunnel ${results.meta.dsqlTunnel.commit}${results.meta.dsqlTunnel.dirty.length ? ' + uncommitted changes' : ''}, ${results.meta.dsqlTunnel.addon}`);
  const load = os.loadavg()[0]!;
  if (load > 1) log(`the 1-minute load average is ${load.toFixed(2)} on ${os.availableParallelism()} CPUs: other work on this machine will add noise`);
  const stack = await startStack();
  try {
    if ([1, 2, 3, 4, 5, 6, 9, 10, 11].some(want)) await phase(results, 'driver workers', () => driverWorkloads(plan, want, stack, results));
    if (want(8)) await phase(results, '8 memory', () => memoryWorkloads(plan, stack, results));
    if (want(7)) await phase(results, '7 cold start', () => coldStarts(plan, stack, results));
    if (want(12)) await phase(results, '12 ssh tunnel', () => sshWorkloads(plan, stack, results));
  } finally {
    await stack.stop();
  }
  results.durationSeconds = (performance.now() - started) / 1000;
  results.meta.load.end = os.loadavg()[0]!;
  const resultsDir = path.join(BENCH_DIR, '.results');
  fs.mkdirSync(resultsDir, { recursive: true });
  const json = path.join(resultsDir, `${results.meta.date.replace(/[:.]/g, '-')}.json`);
  fs.writeFileSync(json, `${JSON.stringify(results, null, 1)}\n`);
  fs.mkdirSync(path.dirname(out), { recursive: true });
  // A run of only workloads 10/11, or only 12, replaces its section of an existing report and keeps the rest.
  if (isSectionOnly(results) && fs.existsSync(out)) fs.writeFileSync(out, spliceOnly(fs.readFileSync(out, 'utf8'), results));
  else fs.writeFileSync(out, keepHandWritten(writeReport(results), fs.existsSync(out) ? fs.readFileSync(out, 'utf8') : null));
  log(`done in ${results.durationSeconds.toFixed(0)} s: ${path.relative(process.cwd(), out)} (raw: ${path.relative(process.cwd(), json)})`);
  if (results.errors.length) {
    log(`${results.errors.length} phase(s) failed: ${results.errors.map((e) => e.phase).join(', ')}`);
    process.exitCode = 1;
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
