// What the report says about the machine and the software measured.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BENCH_DIR, PRODUCT_ADDON, ROOT_DIR } from './paths.ts';

export interface Meta {
  date: string;
  machine: { cpus: number; cpuModel: string; memory: string; kernel: string };
  /** 1-minute load average when the run started and ended: other work on the machine shows here. */
  load: { start: number; end: number };
  node: string;
  versions: Record<string, string>;
  dsqlTunnel: { version: string; commit: string; dirty: string[]; addon: string };
}

function run(cmd: string, args: string[], cwd = ROOT_DIR): string {
  try {
    return execFileSync(cmd, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return '';
  }
}

const pkgVersion = (name: string): string =>
  (JSON.parse(fs.readFileSync(path.join(BENCH_DIR, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version;

export function collectMeta(pgBin: string): Meta {
  const cpuinfo = fs.readFileSync('/proc/cpuinfo', 'utf8');
  const meminfo = fs.readFileSync('/proc/meminfo', 'utf8');
  const memKb = Number(/MemTotal:\s+(\d+)/.exec(meminfo)?.[1] ?? NaN);
  const rootPkg = JSON.parse(fs.readFileSync(path.join(ROOT_DIR, 'package.json'), 'utf8')) as { version: string };
  const addon = fs.readFileSync(PRODUCT_ADDON);
  // Uncommitted changes that go into what is measured (the facade and the Rust sources).
  const dirty = run('git', ['status', '--porcelain', '--', 'src', 'lib', 'index.js', 'binding.js', 'Cargo.toml', 'Cargo.lock'])
    .split('\n')
    .filter(Boolean)
    .map((l) => l.slice(3));
  return {
    date: new Date().toISOString(),
    machine: {
      cpus: os.availableParallelism(),
      cpuModel: /model name\s*:\s*(.*)/.exec(cpuinfo)?.[1]?.trim() ?? os.cpus()[0]?.model ?? 'unknown',
      memory: `${(memKb / 1048576).toFixed(1)} GiB`,
      kernel: `${os.type()} ${os.release()}`,
    },
    load: { start: os.loadavg()[0]!, end: NaN },
    node: process.version,
    versions: {
      pg: pkgVersion('pg'),
      'postgres (postgres.js)': pkgVersion('postgres'),
      'pg-native': pkgVersion('pg-native'),
      'libpq (node binding)': pkgVersion('libpq'),
      'libpq (C library)': run('pg_config', ['--version']).replace(/^PostgreSQL /, '') || 'unknown',
      '@aws-sdk/dsql-signer': pkgVersion('@aws-sdk/dsql-signer'),
      '@aws/aurora-dsql-node-postgres-connector': pkgVersion('@aws/aurora-dsql-node-postgres-connector'),
      'PostgreSQL server': run(path.join(pgBin, 'postgres'), ['--version']).replace(/^postgres \(PostgreSQL\) /, ''),
      rustc: run('rustc', ['--version']).replace(/^rustc /, ''),
    },
    dsqlTunnel: {
      version: rootPkg.version,
      commit: run('git', ['rev-parse', '--short=12', 'HEAD']),
      dirty,
      addon: `release build, ${(addon.length / 1048576).toFixed(1)} MB, sha256 ${createHash('sha256').update(addon).digest('hex').slice(0, 12)}`,
    },
  };
}
