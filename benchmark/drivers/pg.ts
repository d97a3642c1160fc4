// node-postgres: TCP to the tunnel's IP literal, `ssl.servername` for SNI and verification.
import pg from 'pg';
import { pgConfig } from './pg-config.ts';
import type { Driver, PgModule } from './types.ts';

export const pgDriver: Driver = {
  name: 'pg',
  async connect(t) {
    const client = new pg.Client(pgConfig(t));
    await client.connect();
    return {
      query: async (text, values) => (await client.query({ text, values })).rows,
      end: () => client.end(),
    };
  },
  async pool(t, max) {
    const pool = new pg.Pool({ ...pgConfig(t), max });
    return {
      query: async (text, values) => (await pool.query({ text, values })).rows,
      end: () => pool.end(),
    };
  },
  asPg: { module: pg as unknown as PgModule, config: pgConfig },
};
