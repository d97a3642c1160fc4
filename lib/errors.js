'use strict'
// Error classes. The native side settles with plain error data; these turn it into Errors.

const SERVER_FIELDS = [
  'severity', 'detail', 'hint', 'position', 'internalPosition', 'internalQuery', 'where', 'schema',
  'table', 'column', 'dataType', 'constraint', 'file', 'line', 'routine',
]
const SOCKET_FIELDS = ['errno', 'syscall', 'address', 'port', 'sent']

/** Every error dsql-tunnel produces; `code` is stable (see the README's table). */
class DsqlTunnelError extends Error {
  constructor(code, message, options) {
    super(message, options)
    this.name = 'DsqlTunnelError'
    this.code = code
  }
}

/** An error the server sent: `code` is the SQLSTATE, with node-postgres's fields. */
class DatabaseError extends DsqlTunnelError {
  constructor(code, message, options) {
    super(code, message, options)
    this.name = 'DatabaseError'
  }
}

function copy(target, source, fields) {
  for (const f of fields) if (source[f] !== undefined && source[f] !== null) target[f] = source[f]
}

// DSQL's per-transaction and per-row limits, which a 54000 from DSQL is about.
const DSQL_LIMITS_HINT =
  'DSQL limits a transaction to 3,000 modified rows, 10 MiB of changed data and 300 s, a row to 2 MiB and a ' +
  'value to 1 MiB: split the work into smaller transactions'

function fromNative(n) {
  if (n.sqlstate !== undefined && n.sqlstate !== null) {
    const server = new DatabaseError(n.sqlstate, n.message)
    copy(server, n, SERVER_FIELDS)
    if (n.sqlstate === '54000' && server.hint === undefined && /limit|size/i.test(n.message)) server.hint = DSQL_LIMITS_HINT
    // Whether a statement whose session ended under it may have run (false: it certainly did not).
    if (typeof n.mayHaveRun === 'boolean') server.mayHaveRun = n.mayHaveRun
    if (n.code === n.sqlstate) return server
    // A client code with a server error behind it (SNI_REFUSED): the server's words are the cause.
    const wrapped = new DsqlTunnelError(n.code, n.message, { cause: server })
    wrapped.sqlstate = n.sqlstate
    return wrapped
  }
  const err = new DsqlTunnelError(n.code, n.message)
  copy(err, n, SOCKET_FIELDS)
  if (typeof n.mayHaveRun === 'boolean') err.mayHaveRun = n.mayHaveRun
  if (n.setting) err.setting = n.setting
  return err
}

const invalidArgument = (message) => new DsqlTunnelError('INVALID_ARGUMENT', message)
const invalidParameter = (index, message) => {
  const err = new DsqlTunnelError('INVALID_PARAMETER', `parameter $${index + 1}: ${message}`)
  err.parameterIndex = index
  return err
}
const invalidConfig = (setting, message) => {
  const err = new DsqlTunnelError('INVALID_CONFIG', message)
  err.setting = setting
  return err
}

module.exports = { DSQL_LIMITS_HINT, DsqlTunnelError, DatabaseError, fromNative, invalidArgument, invalidParameter, invalidConfig }
