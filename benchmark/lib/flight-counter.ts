// Counts round trips by watching the bytes: a relay that counts the client's flights, i.e. each
// time the client sends after the server has sent. Placed in front of the slow tunnel, so that a
// server reply can only arrive ≥ 10 ms after what caused it and a client's back-to-back writes are
// never split by an unrelated server message (a TLS session ticket, say).
import net from 'node:net';

export interface CountedConnection {
  /** Client flights on this connection so far. */
  flights: number;
}

export class FlightCounter {
  /** The connections relayed so far, oldest first. */
  readonly connections: CountedConnection[] = [];
  private readonly sockets = new Set<net.Socket>();

  private constructor(private readonly server: net.Server, readonly port: number) {}

  static async start(targetPort: number): Promise<FlightCounter> {
    let self: FlightCounter | null = null;
    const server = net.createServer({ allowHalfOpen: true }, (client) => self?.relay(client, targetPort));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    self = new FlightCounter(server, (server.address() as net.AddressInfo).port);
    return self;
  }

  private relay(client: net.Socket, targetPort: number): void {
    const upstream = net.connect({ host: '127.0.0.1', port: targetPort, allowHalfOpen: true });
    const counted: CountedConnection = { flights: 0 };
    this.connections.push(counted);
    let serverSpoke = true; // the first client bytes open a flight
    for (const s of [client, upstream]) {
      this.sockets.add(s);
      s.setNoDelay(true);
      s.on('close', () => this.sockets.delete(s));
      s.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.on('data', (chunk: Buffer) => {
      if (serverSpoke) counted.flights++;
      serverSpoke = false;
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      serverSpoke = true;
      client.write(chunk);
    });
    client.on('end', () => upstream.end());
    upstream.on('end', () => client.end());
  }

  /** The connection opened most recently. */
  latest(): CountedConnection | undefined {
    return this.connections.at(-1);
  }

  stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}
