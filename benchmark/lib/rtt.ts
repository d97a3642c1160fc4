// The round-trip time a tunnel adds, measured with a 1-byte echo through it, so that times
// measured through the slow tunnel can be turned into round-trip counts.
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { median } from './stats.ts';

export class EchoServer {
  private constructor(private readonly server: net.Server, private readonly sockets: Set<net.Socket>, readonly port: number) {}

  static async start(): Promise<EchoServer> {
    const sockets = new Set<net.Socket>();
    const server = net.createServer((s) => {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.setNoDelay(true);
      s.on('error', () => {});
      s.pipe(s);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return new EchoServer(server, sockets, (server.address() as net.AddressInfo).port);
  }

  stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/** Median time of `count` 1-byte echoes through `port`. */
export async function echoRtt(port: number, count: number): Promise<number> {
  const socket = net.connect({ host: '127.0.0.1', port });
  socket.setNoDelay(true);
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  const times: number[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const t0 = performance.now();
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('echo timed out')), 5_000);
        socket.once('data', () => {
          clearTimeout(timer);
          resolve();
        });
        socket.write('x');
      });
      times.push(performance.now() - t0);
    }
  } finally {
    socket.destroy();
  }
  return median(times);
}
