// postgres.js: TCP to the tunnel, `ssl.servername` for SNI and verification; prepared statements
// (its default), queries issued together are pipelined on a connection.
import fs from 'node:fs';
import postgres from 'postgres';
import type { Driver, Row, Target } from './types.ts';

type Sql = postgres.Sql<Record<string, never>>;

function open(t: Target, max: number): Sql {
  return postgres({
    host: t.hostaddr,
    port: t.port,
    user: t.user,
    pass: t.password,
    database: t.database,
    ssl: { servername: t.host, ca: fs.readFileSync(t.caFile, 'utf8'), rejectUnauthorized: true },
    max,
    prepare: true,
    onnotice: () => {},
  });
}

const adapter = (sql: Sql) => ({
  query: async (text: string, values: unknown[] = []): Promise<Row[]> =>
    sql.unsafe(text, values as postgres.ParameterOrJSON<never>[], { prepare: true }),
  end: () => sql.end({ timeout: 5 }),
});

export const postgresJs: Driver = {
  name: 'postgres.js',
  async connect(t) {
    const sql = open(t, 1);
    // postgres.js connects lazily; reserving a connection waits until it is ready (this includes
    // its default fetch of array types).
    const reserved = await sql.reserve();
    reserved.release();
    return adapter(sql);
  },
  async pool(t, max) {
    return adapter(open(t, max));
  },
};
