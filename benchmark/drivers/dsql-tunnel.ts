// dsql-tunnel: `host` is the DSQL hostname, `hostaddr` the tunnel; verification against the CA file.
// Loaded from the run's copy of the package (lib/paths.ts), typed by the tree's typings.
import type * as DsqlTunnel from '../../index.js';
import type { ClientConfig } from '../../index.js';
import { PRODUCT_ENTRY } from '../lib/paths.ts';
import type { Driver, Target } from './types.ts';

const { connect, Pool } = require(PRODUCT_ENTRY) as typeof DsqlTunnel;

const config = (t: Target): ClientConfig => ({
  host: t.host,
  hostaddr: t.hostaddr,
  port: t.port,
  user: t.user,
  password: t.password,
  database: t.database,
  sslrootcert: t.caFile,
});

export const dsqlTunnel: Driver = {
  name: 'dsql-tunnel',
  async connect(t) {
    const client = await connect(config(t));
    return {
      query: async (text, values) => (await client.query(text, values)).rows,
      end: () => client.end(),
    };
  },
  async pool(t, max) {
    const pool = new Pool({ ...config(t), max });
    return {
      query: async (text, values) => (await pool.query(text, values)).rows,
      end: () => pool.end(),
    };
  },
};
