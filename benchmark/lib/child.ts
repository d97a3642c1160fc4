// Runs a one-shot child process that prints one JSON line, bounded in time.
import { spawn } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { ROOT_DIR } from './paths.ts';

export interface ChildResult<T> {
  value: T;
  /** From spawn to exit, as the parent saw it. */
  wallMs: number;
}

export function runJsonChild<T>(args: string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<ChildResult<T>> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, args, { cwd: ROOT_DIR, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${args.join(' ')}: no result within ${timeoutMs / 1000} s\n${stderr}`));
    }, timeoutMs);
    child.on('exit', (code, signal) => {
      const wallMs = performance.now() - t0;
      clearTimeout(timer);
      const line = stdout.trim().split('\n').pop() ?? '';
      if (code !== 0 || !line) {
        reject(new Error(`${args.join(' ')} exited with ${signal ?? code}\n${stderr}${stdout}`));
        return;
      }
      try {
        resolve({ value: JSON.parse(line) as T, wallMs });
      } catch {
        reject(new Error(`${args.join(' ')} printed no JSON: ${line}`));
      }
    });
  });
}
