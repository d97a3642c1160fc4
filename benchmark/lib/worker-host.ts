// The orchestrator's side of a driver worker: fork it, call it, bound every call in time.
import { fork, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import type { DriverName } from '../drivers/types.ts';
import type { CallName, CallRequest, CallResponse, Calls } from './protocol.ts';
import { BENCH_DIR, ROOT_DIR } from './paths.ts';

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

export class WorkerHost {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private exited = false;

  private constructor(readonly driver: DriverName, private readonly child: ChildProcess) {
    child.on('message', (msg: CallResponse) => {
      const p = this.pending.get(msg.id);
      if (!p) return;
      this.pending.delete(msg.id);
      clearTimeout(p.timer);
      if (msg.ok) p.resolve(msg.result);
      else p.reject(new Error(`${driver}: ${msg.error}`));
    });
    child.on('exit', (code, signal) => {
      this.exited = true;
      for (const p of this.pending.values()) {
        clearTimeout(p.timer);
        p.reject(new Error(`${driver} worker exited (${signal ?? code})`));
      }
      this.pending.clear();
    });
  }

  static async start(driver: DriverName, env: NodeJS.ProcessEnv): Promise<WorkerHost> {
    const child = fork(path.join(BENCH_DIR, 'worker.ts'), [driver], {
      cwd: ROOT_DIR,
      execArgv: ['--import', 'tsx'],
      env,
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const host = new WorkerHost(driver, child);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${driver} worker did not start in 30 s`)), 30_000);
      host.pending.set(0, { resolve: () => resolve(), reject, timer });
    });
    return host;
  }

  call<K extends CallName>(call: K, params: Calls[K][0], timeoutMs = 180_000): Promise<Calls[K][1]> {
    if (this.exited) return Promise.reject(new Error(`${this.driver} worker is gone`));
    const id = this.nextId++;
    return new Promise<Calls[K][1]>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        this.child.kill('SIGKILL');
        reject(new Error(`${this.driver}: ${call} took longer than ${timeoutMs / 1000} s`));
      }, timeoutMs);
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, timer });
      const req: CallRequest<K> = { id, call, params };
      this.child.send(req);
    });
  }

  async stop(): Promise<void> {
    if (this.exited) return;
    await this.call('close', {}, 15_000).catch(() => {});
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.disconnect();
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  }
}
