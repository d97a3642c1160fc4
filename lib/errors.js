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

function fromNative(n) {
  if (n.sqlstate !== undefined && n.sqlstate !== null) {
    const server = new DatabaseError(n.sqlstate, n.message)
    copy(server, n, SERVER_FIELDS)
    if (n.code === n.sqlstate) return server
    // A client code with a server error behind it (SNI_REFUSED): the server's words are the cause.
    const wrapped = new DsqlTunnelError(n.code, n.message, { cause: server })
    wrapped.sqlstate = n.sqlstate
    return wrapped
  }
  const err = new DsqlTunnelError(n.code, n.message)
  copy(err, n, SOCKET_FIELDS)
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

module.exports = { DsqlTunnelError, DatabaseError, fromNative, invalidArgument, invalidParameter, invalidConfig }
