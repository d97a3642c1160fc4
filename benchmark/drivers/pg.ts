// node-postgres: TCP to the tunnel's IP literal (pg keeps a user `servername` only then),
// `ssl.servername` for SNI and verification.
import fs from 'node:fs';
import pg from 'pg';
import type { Driver, Target } from './types.ts';

const config = (t: Target): pg.ClientConfig => ({
  host: t.hostaddr,
  port: t.port,
  user: t.user,
  password: t.password,
  database: t.database,
  ssl: { servername: t.host, ca: fs.readFileSync(t.caFile, 'utf8'), rejectUnauthorized: true },
});

export const pgDriver: Driver = {
  name: 'pg',
  async connect(t) {
    const client = new pg.Client(config(t));
    await client.connect();
    return {
      query: async (text, values) => (await client.query({ text, values })).rows,
      end: () => client.end(),
    };
  },
  async pool(t, max) {
    const pool = new pg.Pool({ ...config(t), max });
    return {
      query: async (text, values) => (await pool.query({ text, values })).rows,
      end: () => pool.end(),
    };
  },
};
