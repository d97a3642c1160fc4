// Every failure is a rejection with a stable code and a message that says what to do.
import assert from 'node:assert/strict'
import net from 'node:net'
import { describe, test } from 'node:test'
import { Client, connect, DatabaseError, DsqlTunnelError } from '../index.js'
import { rejectsWith, through, useStack, withEnv } from './helpers.ts'

const stack = useStack()

async function freePort(): Promise<number> {
  const server = net.createServer()
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const port = (server.address() as net.AddressInfo).port
  await new Promise((r) => server.close(r))
  return port
}

describe('connecting', () => {
  test('nothing listening: ECONNREFUSED naming the tunnel address and asking about the tunnel', async () => {
    const port = await freePort()
    const err = await rejectsWith(connect(through(stack(), { port })), 'ECONNREFUSED')
    assert.ok(err instanceof DsqlTunnelError)
    assert.equal(err.address, '127.0.0.1')
    assert.equal(err.port, port)
    assert.equal(err.syscall, 'connect')
    assert.ok(err.message.includes(`127.0.0.1:${port}`))
    assert.match(err.message, /tunnel/)
  })

  test('a listener that never answers: CONNECT_TIMEOUT within the bound', async () => {
    const started = Date.now()
    const err = await rejectsWith(
      connect(through(stack(), { port: stack().silentPort, connectionTimeoutMillis: 500 })),
      'CONNECT_TIMEOUT',
    )
    const took = Date.now() - started
    assert.ok(took >= 450 && took < 3000, `took ${took} ms`)
    assert.ok(err.message.includes(`127.0.0.1:${stack().silentPort}`))
  })

  test('the timeout covers TLS and authentication, not only TCP (direct TLS to a silent peer)', async () => {
    await rejectsWith(
      connect(through(stack(), { port: stack().silentPort, connectionTimeoutMillis: 300, sslnegotiation: 'direct' })),
      'CONNECT_TIMEOUT',
    )
  })

  test('a wrong password: 28P01 from the server, and the password is in no message', async () => {
    const err = await rejectsWith(connect(through(stack(), { password: 'wrong-password-value' })), '28P01')
    assert.ok(err instanceof DatabaseError)
    assert.equal((err as DatabaseError).severity, 'FATAL')
    assert.ok(!err.message.includes('wrong-password-value'))
  })

  test('no password for a non-DSQL server that asks for one: PASSWORD_MISSING', async () => {
    // Straight to PostgreSQL through a tunnel: `localhost` is not a DSQL host, so no token is minted.
    const t = await stack().startTunnel(stack().pgPort)
    try {
      const err = await rejectsWith(
        connect({ host: 'localhost', hostaddr: '127.0.0.1', port: t.port, sslrootcert: stack().caFile, user: 'admin' }),
        'PASSWORD_MISSING',
      )
      assert.match(err.message, /PGPASSWORD/)
    } finally {
      await t.stop()
    }
  })

  test('no password and no AWS credentials for a DSQL host: CREDENTIALS_UNAVAILABLE, before any dialling', async () => {
    const options = through(stack())
    delete options.password
    const before = stack().gate.log.length
    await withEnv(
      { AWS_ACCESS_KEY_ID: undefined, AWS_SECRET_ACCESS_KEY: undefined, AWS_SESSION_TOKEN: undefined, AWS_PROFILE: undefined,
        AWS_CONFIG_FILE: '/nonexistent/config', AWS_SHARED_CREDENTIALS_FILE: '/nonexistent/credentials',
        AWS_WEB_IDENTITY_TOKEN_FILE: undefined, AWS_CONTAINER_CREDENTIALS_RELATIVE_URI: undefined,
        AWS_CONTAINER_CREDENTIALS_FULL_URI: undefined, AWS_EC2_METADATA_DISABLED: 'true' },
      async () => {
        const err = await rejectsWith(connect(options), 'CREDENTIALS_UNAVAILABLE')
        assert.match(err.message, /AWS_ACCESS_KEY_ID|AWS_PROFILE/)
      },
    )
    assert.equal(stack().gate.log.length, before)
  })

  test('an unresolvable host without a tunnel address: ENOTFOUND', async () => {
    await rejectsWith(
      connect({ host: 'no-such-host.invalid', sslrootcert: stack().caFile, connectionTimeoutMillis: 5000 }),
      'ENOTFOUND',
    )
  })

  test('the server closing during set-up: CONNECTION_LOST or a TLS code, never a hang', async () => {
    const server = net.createServer((s) => {
      s.on('error', () => {})
      s.once('data', () => s.destroy())
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    try {
      const port = (server.address() as net.AddressInfo).port
      for (const sslnegotiation of ['postgres', 'direct'] as const) {
        const err = await connect(through(stack(), { port, sslnegotiation, connectionTimeoutMillis: 3000 })).then(
          () => assert.fail('connected to a peer that hung up'),
          (e: DsqlTunnelError) => e,
        )
        assert.ok(['CONNECTION_LOST', 'TLS_HANDSHAKE_FAILED'].includes(err.code), err.code)
      }
    } finally {
      server.close()
    }
  })
})

describe('using a client', () => {
  test('query before connect: queued until connected (as pg), NOT_CONNECTED if nobody connects; connect twice: ALREADY_CONNECTED', async () => {
    const lonely = new Client(through(stack(), { connectionTimeoutMillis: 150 }))
    await rejectsWith(lonely.query('select 1'), 'NOT_CONNECTED')
    const client = new Client(through(stack()))
    const early = client.query('select 1 as n')
    await client.connect()
    assert.deepEqual((await early).rows, [{ n: 1 }])
    await rejectsWith(client.connect(), 'ALREADY_CONNECTED')
    await client.end()
    await rejectsWith(client.connect(), 'CLIENT_CLOSED')
  })

  test('a failed connect can be retried on the same client', async () => {
    const client = new Client(through(stack(), { port: stack().silentPort, connectionTimeoutMillis: 200 }))
    await rejectsWith(client.connect(), 'CONNECT_TIMEOUT')
    await rejectsWith(client.connect(), 'CONNECT_TIMEOUT')
  })

  test('bad arguments reject with INVALID_ARGUMENT, never throw', async () => {
    const client = await connect(through(stack()))
    try {
      const q = client.query as unknown as (...a: unknown[]) => Promise<unknown>
      for (const args of [[42], [null], ['select 1', 'not-an-array'], ['select 1', [], { rowMode: 'object' }]]) {
        const p = q.apply(client, args)
        assert.ok(p instanceof Promise)
        await rejectsWith(p, 'INVALID_ARGUMENT')
      }
      // With a callback (pg's form) the error goes to the callback, and nothing is returned.
      const viaCallback = await new Promise<Error>((resolve) => {
        assert.equal(q.apply(client, [null, (err: Error) => resolve(err)]), undefined)
      })
      assert.equal((viaCallback as DsqlTunnelError).code, 'INVALID_ARGUMENT')
      assert.deepEqual((await client.query('select 1 as ok')).rows, [{ ok: 1 }])
    } finally {
      await client.end()
    }
  })

  test('server errors carry the SQLSTATE and the node-postgres fields', async () => {
    const client = await connect(through(stack()))
    try {
      const syntax = await rejectsWith(client.query('selec 1'), '42601')
      assert.ok(syntax instanceof DatabaseError)
      assert.equal((syntax as DatabaseError).position, '1')
      assert.equal((syntax as DatabaseError).severity, 'ERROR')
      await client.query('create table if not exists err_uniq (id int primary key)')
      await client.query('insert into err_uniq values (1) on conflict do nothing')
      const dup = (await rejectsWith(client.query('insert into err_uniq values ($1)', [1]), '23505')) as DatabaseError
      assert.equal(dup.constraint, 'err_uniq_pkey')
      assert.equal(dup.table, 'err_uniq')
      assert.equal(dup.schema, 'public')
      assert.match(dup.detail ?? '', /already exists/)
      const div = (await rejectsWith(client.query('select 1 / $1::int', [0]), '22012')) as DatabaseError
      assert.ok(div.routine)
      // The connection is still good after each error.
      assert.deepEqual((await client.query('select 3 as three')).rows, [{ three: 3 }])
    } finally {
      await client.end()
    }
  })

  test('the tunnel dying under an open client: CONNECTION_LOST, then CONNECTION_LOST again, never a hang', async () => {
    const t = await stack().startTunnel(stack().gatePort)
    const client = await connect(through(stack(), { port: t.port }))
    try {
      assert.deepEqual((await client.query('select 1 as a')).rows, [{ a: 1 }])
      const pending = rejectsWith(client.query('select pg_sleep(5)'), 'CONNECTION_LOST')
      await new Promise((r) => setTimeout(r, 200))
      const killedAt = Date.now()
      await t.kill()
      await pending
      assert.ok(Date.now() - killedAt < 3000)
      await rejectsWith(client.query('select 1'), 'CONNECTION_LOST')
    } finally {
      await client.end()
      await t.stop()
    }
  })
})
