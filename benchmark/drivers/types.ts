// What every driver adapter offers the workloads: a connection and a pool, each with a
// promise-returning query. Each adapter calls its library's natural API underneath.

/** Where and how to connect: TCP to the tunnel, TLS (SNI + verification) for the DSQL hostname. */
export interface Target {
  /** The DSQL hostname: SNI and certificate verification. */
  host: string;
  /** The tunnel's address: TCP goes here. */
  hostaddr: string;
  /** The tunnel's port. */
  port: number;
  /** PEM file of the CA that signed the gate's certificate. */
  caFile: string;
  user: string;
  /** Omitted only where a token is minted (cold start). */
  password: string;
  database: string;
}

export type Row = Record<string, unknown>;

export interface Queryable {
  query(text: string, values?: unknown[]): Promise<Row[]>;
  end(): Promise<void>;
}

export const DRIVER_NAMES = ['dsql-tunnel', 'pg', 'postgres.js', 'pg-native'] as const;
export type DriverName = (typeof DRIVER_NAMES)[number];

export interface Driver {
  readonly name: DriverName;
  /** Opens one connection and resolves once it is ready for queries (TCP, TLS, auth). */
  connect(target: Target): Promise<Queryable>;
  /** A pool of at most `max` connections, opened lazily. */
  pool(target: Target, max: number): Promise<Queryable>;
}

export function isDriverName(s: string): s is DriverName {
  return (DRIVER_NAMES as readonly string[]).includes(s);
}
