// dsql-tunnel: `host` is the DSQL hostname, `hostaddr` the tunnel; verification against the CA file.
// Loaded from the run's copy of the package (lib/paths.ts), typed by the tree's typings. As `pg`
// (workloads 10 and 11) it is `require('pg')` from a directory whose `node_modules/pg` is that
// copy, as an app with the npm alias has it, and takes pg's config.
import { createRequire } from 'node:module';
import type * as DsqlTunnel from '../../index.js';
import type { ClientConfig } from '../../index.js';
import { AS_PG_DIR, PRODUCT_ENTRY } from '../lib/paths.ts';
import { pgConfig } from './pg-config.ts';
import type { Driver, PgModule, Target } from './types.ts';

const { connect, Pool } = require(PRODUCT_ENTRY) as typeof DsqlTunnel;

const config = (t: Target): ClientConfig => ({
  host: t.host,
  hostaddr: t.hostaddr,
  port: t.port,
  user: t.user,
  password: t.password,
  database: t.database,
  sslrootcert: t.caFile,
  ...(t.tunnel ? { tunnel: t.tunnel as ClientConfig['tunnel'] } : {}),
});

let asPg: PgModule | undefined;

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
  get asPg() {
    asPg ??= createRequire(`${AS_PG_DIR}/app.js`)('pg') as PgModule;
    return { module: asPg, config: pgConfig };
  },
};
