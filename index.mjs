// ESM entry: the same module object as `require('dsql-tunnel')` / `require('pg')` (default
// export), and its members as named exports.
import pg from './index.js'

export default pg
export const {
  defaults, Client, Query, Pool, Connection, types, DatabaseError, TypeOverrides, escapeIdentifier, escapeLiteral,
  Result, utils, PoolClient, connect, generateToken, decodeToken, isOccError, resolveConfig, DsqlTunnelError, startProxy,
} = pg
export const native = null
