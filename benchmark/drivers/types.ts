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
  /** A tunnel the driver opens itself (dsql-tunnel's `tunnel` option, workload 12); TCP then goes
   * to `hostaddr:port` from the tunnel's far end. No other driver takes one. */
  tunnel?: unknown;
}

export type Row = Record<string, unknown>;

export interface Queryable {
  query(text: string, values?: unknown[]): Promise<Row[]>;
  end(): Promise<void>;
}

export const DRIVER_NAMES = ['dsql-tunnel', 'pg', 'postgres.js', 'pg-native'] as const;
export type DriverName = (typeof DRIVER_NAMES)[number];
/** The drivers that are node-postgres or a drop-in for it (`Driver.asPg`): workloads 10 and 11. */
export const AS_PG_DRIVERS = ['dsql-tunnel', 'pg'] as const satisfies readonly DriverName[];

/** The slice of node-postgres's module an ORM touches: `new Pool(config)`, `pool.query` in both
 * forms, `types` (pg-types 2.x). Real pg and this package, loaded as `pg`, both provide it. */
export interface PgResult {
  rows: unknown[];
  fields: { name: string; dataTypeID: number }[];
  rowCount: number | null;
}
export type TextParser = (text: string) => unknown;
export interface PgTypes {
  getTypeParser(oid: number, format?: 'text' | 'binary'): TextParser;
  arrayParser: { create(source: string, transform: TextParser): { parse(): unknown[] } };
}
export interface PgQueryConfig {
  text: string;
  /** A statement prepared once per connection under this name. */
  name?: string;
  values?: unknown[];
  rowMode?: 'array';
  types?: { getTypeParser(oid: number, format?: 'text' | 'binary'): TextParser };
}
export interface PgPool {
  query(config: PgQueryConfig): Promise<PgResult>;
  query(text: string, values?: unknown[]): Promise<PgResult>;
  end(): Promise<void>;
}
export interface PgModule {
  Pool: new (config: Record<string, unknown>) => PgPool;
  types: PgTypes;
}

export interface Driver {
  readonly name: DriverName;
  /** The driver as `require('pg')` gives it, with the pg-style config for a target (workloads
   * 10 and 11, the ORM shapes); only for drivers that are node-postgres or a drop-in for it. */
  readonly asPg?: { module: PgModule; config(target: Target): Record<string, unknown> };
  /** Opens one connection and resolves once it is ready for queries (TCP, TLS, auth). */
  connect(target: Target): Promise<Queryable>;
  /** A pool of at most `max` connections, opened lazily. */
  pool(target: Target, max: number): Promise<Queryable>;
}

export function isDriverName(s: string): s is DriverName {
  return (DRIVER_NAMES as readonly string[]).includes(s);
}
