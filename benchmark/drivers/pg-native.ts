// pg-native (libpq): `host` is the DSQL hostname (SNI, verification), `hostaddr` the tunnel.
// libpq runs one query at a time per connection, so queries queue per client (as pg.native's
// Client does), and the pool hands each query a free client (as pg.Pool does).
import NativeClient from 'pg-native';
import type { Driver, Queryable, Row, Target } from './types.ts';

const quote = (v: string | number): string => `'${String(v).replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;

export function conninfo(t: Target): string {
  const params: Record<string, string | number> = {
    host: t.host,
    hostaddr: t.hostaddr,
    port: t.port,
    user: t.user,
    password: t.password,
    dbname: t.database,
    sslmode: 'verify-full',
    sslrootcert: t.caFile,
  };
  return Object.entries(params).map(([k, v]) => `${k}=${quote(v)}`).join(' ');
}

interface Job {
  text: string;
  values: string[] | undefined;
  resolve: (rows: Row[]) => void;
  reject: (err: Error) => void;
}

class QueuedClient implements Queryable {
  private readonly queue: Job[] = [];
  private busy = false;
  constructor(private readonly client: NativeClient) {}

  static async open(t: Target): Promise<QueuedClient> {
    const client = new NativeClient();
    await new Promise<void>((resolve, reject) => client.connect(conninfo(t), (err) => (err ? reject(err) : resolve())));
    return new QueuedClient(client);
  }

  get pending(): number {
    return this.queue.length + (this.busy ? 1 : 0);
  }

  query(text: string, values?: unknown[]): Promise<Row[]> {
    return new Promise<Row[]>((resolve, reject) => {
      // libpq takes parameters as text; pg.native converts the same way.
      this.queue.push({ text, values: values?.map((v) => (v === null || v === undefined ? v : String(v))) as string[], resolve, reject });
      if (!this.busy) this.next();
    });
  }

  private next(): void {
    const job = this.queue.shift();
    if (!job) {
      this.busy = false;
      return;
    }
    this.busy = true;
    this.client.query(job.text, job.values ?? [], (err, rows) => {
      if (err) job.reject(err);
      else job.resolve(rows);
      this.next();
    });
  }

  async end(): Promise<void> {
    await new Promise<void>((resolve) => this.client.end(() => resolve()));
  }
}

/** Exclusive checkout per query, connections opened on demand up to `max`, FIFO waiters. */
class NativePool implements Queryable {
  private readonly idle: QueuedClient[] = [];
  private readonly all: QueuedClient[] = [];
  private readonly waiters: ((c: QueuedClient) => void)[] = [];
  private opening = 0;
  constructor(private readonly target: Target, private readonly max: number) {}

  private async acquire(): Promise<QueuedClient> {
    const free = this.idle.pop();
    if (free) return free;
    if (this.all.length + this.opening < this.max) {
      this.opening++;
      try {
        const c = await QueuedClient.open(this.target);
        this.all.push(c);
        return c;
      } finally {
        this.opening--;
      }
    }
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  private release(c: QueuedClient): void {
    const waiter = this.waiters.shift();
    if (waiter) waiter(c);
    else this.idle.push(c);
  }

  async query(text: string, values?: unknown[]): Promise<Row[]> {
    const c = await this.acquire();
    try {
      return await c.query(text, values);
    } finally {
      this.release(c);
    }
  }

  async end(): Promise<void> {
    await Promise.all(this.all.map((c) => c.end()));
  }
}

export const pgNative: Driver = {
  name: 'pg-native',
  connect: (t) => QueuedClient.open(t),
  async pool(t, max) {
    return new NativePool(t, max);
  },
};
