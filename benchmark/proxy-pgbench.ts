// pgbench (select-only, extended protocol, several clients) through `dsql-tunnel proxy` vs pgbench
// straight through the tunnel with libpq's host + hostaddr and a token, on the same stack, rounds
// alternating. Prints TPS per round and per-query latency (p50, p99) from pgbench's
// per-transaction logs, and the proxy's added latency.
//
//   node --import tsx benchmark/proxy-pgbench.ts [--seconds 5] [--rounds 3] [--clients 4]
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { startStack } from '../__test__/fixture/stack.ts';

const PGBENCH = '/usr/lib/postgresql/15/bin/pgbench';
const ROOT = path.resolve(__dirname, '..');

const { values } = parseArgs({ options: { seconds: { type: 'string' }, rounds: { type: 'string' }, clients: { type: 'string' } } });
const SECONDS = Number(values.seconds ?? 5);
const ROUNDS = Number(values.rounds ?? 3);
const CLIENTS = Number(values.clients ?? 4);

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** CPU time a process has used, in ms: user and system. */
function cpuMs(pid: number): { user: number; sys: number } {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return { user: (Number(fields[11]) * 1000) / 100, sys: (Number(fields[12]) * 1000) / 100 };
}

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];

async function bench(label: string, env: NodeJS.ProcessEnv, dir: string) {
  const prefix = path.join(dir, `${label}-${Date.now()}`);
  const args = ['-n', '-S', '-M', 'extended', '-c', String(CLIENTS), '-j', String(Math.min(CLIENTS, 2)), '-T', String(SECONDS), '-l', '--log-prefix', prefix, 'postgres'];
  const r = await run(PGBENCH, args, env, (SECONDS + 30) * 1000);
  if (r.code !== 0) throw new Error(`${label}: pgbench failed: ${r.stderr}`);
  const tps = Number(/tps = ([\d.]+)/.exec(r.stdout)?.[1]);
  const latencies: number[] = [];
  for (const f of fs.readdirSync(dir).filter((f) => path.join(dir, f).startsWith(prefix))) {
    for (const line of fs.readFileSync(path.join(dir, f), 'utf8').split('\n')) {
      const us = Number(line.split(' ')[2]);
      if (Number.isFinite(us) && line) latencies.push(us);
    }
  }
  latencies.sort((a, b) => a - b);
  return { tps, p50: percentile(latencies, 50), p99: percentile(latencies, 99), n: latencies.length };
}

async function main() {
  const stack = await startStack({ tokenAuth: true });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dsql-proxy-bench-'));
  const aws = {
    AWS_ACCESS_KEY_ID: stack.aws.accessKeyId, AWS_SECRET_ACCESS_KEY: stack.aws.secretAccessKey, AWS_SESSION_TOKEN: stack.aws.sessionToken,
    AWS_CONFIG_FILE: '/nonexistent', AWS_SHARED_CREDENTIALS_FILE: '/nonexistent', AWS_EC2_METADATA_DISABLED: 'true',
  };
  const proxy = spawn(process.execPath, [path.join(ROOT, 'bin/dsql-tunnel.js'), 'proxy', '--listen', '127.0.0.1:0'], {
    env: { PATH: process.env.PATH, ...(process.env.TOKIO_WORKER_THREADS ? { TOKIO_WORKER_THREADS: process.env.TOKIO_WORKER_THREADS } : {}), ...(process.env.NAPI_RS_NATIVE_LIBRARY_PATH ? { NAPI_RS_NATIVE_LIBRARY_PATH: process.env.NAPI_RS_NATIVE_LIBRARY_PATH } : {}), HOSTNAME: stack.host, PGHOSTADDR: stack.tunnelAddr, PGPORT: String(stack.tunnelPort), PGSSLROOTCERT: stack.caFile, ...aws },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  try {
    let ready = '';
    await new Promise<void>((resolve, reject) => {
      proxy.stdout.on('data', (d) => {
        ready += d;
        if (ready.includes('\n')) resolve();
      });
      proxy.once('exit', () => reject(new Error('the proxy exited')));
    });
    const proxyPort = Number(/port=(\d+)/.exec(ready)![1]);
    const base = { PATH: process.env.PATH, PGUSER: 'admin', PGDATABASE: 'postgres' };
    // Direct: libpq's host (SNI, verification) + hostaddr (the tunnel) and a token, as the experiment does.
    const direct = () => ({
      ...base, PGHOST: stack.host, PGHOSTADDR: stack.tunnelAddr, PGPORT: String(stack.tunnelPort), PGSSLMODE: 'verify-full',
      PGSSLROOTCERT: stack.caFile, PGPASSWORD: stack.presignToken(),
    });
    const viaProxy = () => ({ ...base, PGHOST: '127.0.0.1', PGPORT: String(proxyPort) });
    const init = await run(PGBENCH, ['-i', '-s', '1', '-q', 'postgres'], direct(), 120_000);
    if (init.code !== 0) throw new Error(`pgbench -i failed: ${init.stderr}`);
    const rows: string[] = [];
    const proxyCpuUs: { user: number; sys: number }[] = [];
    const results: Record<string, { tps: number; p50: number; p99: number }[]> = { direct: [], proxy: [] };
    const loadBefore = os.loadavg()[0];
    for (let round = 1; round <= ROUNDS; round++) {
      // Each arm goes first in every other round, so a drift in machine load favours neither.
      const arms = [['direct', direct()], ['proxy', viaProxy()]] as const;
      for (const [label, env] of round % 2 ? arms : [...arms].reverse()) {
        const cpuBefore = cpuMs(proxy.pid!);
        const r = await bench(label, env, dir);
        if (label === 'proxy') {
          const cpuAfter = cpuMs(proxy.pid!);
          proxyCpuUs.push({ user: ((cpuAfter.user - cpuBefore.user) * 1000) / r.n, sys: ((cpuAfter.sys - cpuBefore.sys) * 1000) / r.n });
        }
        results[label].push(r);
        rows.push(`| ${round} | ${label} | ${r.tps.toFixed(0)} | ${(r.p50 / 1000).toFixed(3)} | ${(r.p99 / 1000).toFixed(3)} | ${r.n} |`);
      }
    }
    const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    const d = { tps: med(results.direct.map((r) => r.tps)), p50: med(results.direct.map((r) => r.p50)), p99: med(results.direct.map((r) => r.p99)) };
    const p = { tps: med(results.proxy.map((r) => r.tps)), p50: med(results.proxy.map((r) => r.p50)), p99: med(results.proxy.map((r) => r.p99)) };
    console.log(`pgbench -S -M extended -c ${CLIENTS} -T ${SECONDS}, ${ROUNDS} rounds alternating, ${os.cpus().length} CPUs, load ${loadBefore.toFixed(2)} before, ${os.loadavg()[0].toFixed(2)} after`);
    console.log('| round | path | TPS | p50 ms | p99 ms | transactions |');
    console.log('|---|---|---|---|---|---|');
    for (const row of rows) console.log(row);
    console.log(`\nmedian TPS: direct ${d.tps.toFixed(0)}, proxy ${p.tps.toFixed(0)} → ${(p.tps / d.tps).toFixed(2)}× direct (target ≥ 0.90×)`);
    const ratios = results.proxy.map((r, i) => r.tps / results.direct[i].tps);
    console.log(`proxy ÷ direct TPS per round: ${ratios.map((x) => x.toFixed(2)).join(', ')} (median ${med(ratios).toFixed(2)})`);
    console.log(`proxy CPU per transaction (user + system): ${proxyCpuUs.map((u) => `${u.user.toFixed(1)} + ${u.sys.toFixed(1)} µs`).join(', ')}`);
    console.log(`added latency per query: p50 ${((p.p50 - d.p50) / 1000).toFixed(3)} ms, p99 ${((p.p99 - d.p99) / 1000).toFixed(3)} ms`);
  } finally {
    proxy.kill('SIGTERM');
    fs.rmSync(dir, { recursive: true, force: true });
    await stack.stop();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
