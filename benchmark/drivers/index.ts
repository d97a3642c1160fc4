import type { Driver, DriverName } from './types.ts';

export * from './types.ts';

/** Loads only the driver asked for, so a child process carries no other library. */
export async function loadDriver(name: DriverName): Promise<Driver> {
  switch (name) {
    case 'dsql-tunnel':
      return (await import('./dsql-tunnel.ts')).dsqlTunnel;
    case 'pg':
      return (await import('./pg.ts')).pgDriver;
    case 'postgres.js':
      return (await import('./postgres-js.ts')).postgresJs;
    case 'pg-native':
      return (await import('./pg-native.ts')).pgNative;
  }
}
