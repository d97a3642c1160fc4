// node-postgres's way of going through a tunnel: TCP to the tunnel's IP literal (pg keeps a user
// `servername` only then), `ssl.servername` for SNI and verification. The same object is given to
// real pg and to this package loaded as `pg` (workloads 10 and 11).
import fs from 'node:fs';
import type { Target } from './types.ts';

export const pgConfig = (t: Target) => ({
  host: t.hostaddr,
  port: t.port,
  user: t.user,
  password: t.password,
  database: t.database,
  ssl: { servername: t.host, ca: fs.readFileSync(t.caFile, 'utf8'), rejectUnauthorized: true },
});
