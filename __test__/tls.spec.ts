// TLS through the tunnel: SNI is the DSQL hostname, certificates are verified against it, both
// negotiation modes work, and every refusal has its own code.
import assert from 'node:assert/strict'
import net from 'node:net'
import { describe, test } from 'node:test'
import { connect, DatabaseError } from '../index.js'
import { rejectsWith, through, useStack } from './helpers.ts'

const stack = useStack()

function lastStartup() {
  const rec = stack().gate.lastRecord((r) => r.kind === 'startup')
  assert.ok(rec, 'the gate saw a startup')
  return rec
}

describe('SNI and negotiation', () => {
  for (const mode of ['postgres', 'direct'] as const) {
    test(`sslnegotiation=${mode}: SNI and ALPN carry the DSQL hostname through the tunnel`, async () => {
      const client = await connect(through(stack(), { sslnegotiation: mode }))
      try {
        const r = await client.query('select 1 as one')
        assert.deepEqual(r.rows, [{ one: 1 }])
        const rec = lastStartup()
        assert.equal(rec.sni, stack().host)
        assert.equal(rec.mode, mode === 'direct' ? 'direct' : 'ssl-request')
        assert.equal(rec.alpn, 'postgresql')
        assert.equal(rec.outcome, 'forwarded')
        assert.equal(client.connection?.verification, 'full')
        assert.equal(client.connection?.sslnegotiation, mode)
      } finally {
        await client.end()
      }
    })
  }

  test('direct TLS is the default for DSQL hostnames', async () => {
    const client = await connect(through(stack()))
    await client.end()
    assert.equal(lastStartup().mode, 'direct')
  })

  test('an IP literal as host sends no SNI and the gate refuses with SNI_REFUSED', async () => {
    const err = await rejectsWith(
      connect(through(stack(), { host: '127.0.0.1', sslmode: 'require', sslnegotiation: 'postgres' })),
      'SNI_REFUSED',
    )
    assert.equal(err.sqlstate, '08P01')
    assert.ok(err.cause instanceof DatabaseError)
    assert.equal((err.cause as DatabaseError).code, '08P01')
    const rec = stack().gate.lastRecord()
    assert.equal(rec?.outcome, 'refused-no-sni')
  })

  test('an SNI for another cluster is refused', async () => {
    // verify-ca: the chain is trusted, so the handshake completes and the gate judges the SNI.
    await rejectsWith(
      connect(through(stack(), { host: stack().wrongHost, sslmode: 'verify-ca' })),
      'SNI_REFUSED',
    )
    assert.equal(stack().gate.lastRecord()?.outcome, 'refused-unknown-sni')
  })
})

describe('certificate verification', () => {
  test('a certificate for another name is refused with TLS_NAME_MISMATCH', async () => {
    const g = await stack().startGate({ cert: 'wrong-name' })
    try {
      const err = await rejectsWith(connect(through(stack(), { port: g.port })), 'TLS_NAME_MISMATCH')
      assert.ok(err.message.includes(stack().host))
      // verify-ca checks the chain only, so the same server is accepted.
      const client = await connect(through(stack(), { port: g.port, sslmode: 'verify-ca', host: g.gate.host }))
      await client.end()
    } finally {
      await g.stop()
    }
  })

  test('a certificate from an unknown CA is refused with TLS_UNKNOWN_CA', async () => {
    const g = await stack().startGate({ cert: 'untrusted' })
    try {
      await rejectsWith(connect(through(stack(), { port: g.port })), 'TLS_UNKNOWN_CA')
      await rejectsWith(connect(through(stack(), { port: g.port, sslmode: 'verify-ca' })), 'TLS_UNKNOWN_CA')
    } finally {
      await g.stop()
    }
  })

  test('the bundled roots do not trust the test CA', async () => {
    const options = through(stack())
    delete options.sslrootcert
    await rejectsWith(connect(options), 'TLS_UNKNOWN_CA')
  })

  test('sslmode=require connects without verifying and warns once per process', async () => {
    const g = await stack().startGate({ cert: 'untrusted' })
    const warnings: Error[] = []
    const onWarning = (w: Error) => warnings.push(w)
    process.on('warning', onWarning)
    try {
      for (let i = 0; i < 2; i++) {
        const options = through(stack(), { port: g.port, sslmode: 'require' })
        delete options.sslrootcert
        const client = await connect(options)
        assert.equal(client.connection?.verification, 'none')
        assert.deepEqual((await client.query('select 2 as two')).rows, [{ two: 2 }])
        await client.end()
      }
      await new Promise((r) => setImmediate(r))
      const ours = warnings.filter((w) => (w as Error & { code?: string }).code === 'DSQL_TUNNEL_SSLMODE_REQUIRE')
      assert.equal(ours.length, 1)
    } finally {
      process.off('warning', onWarning)
      await g.stop()
    }
  })

  test('sslmode=require with a root certificate verifies the chain, as libpq does', async () => {
    const g = await stack().startGate({ cert: 'untrusted' })
    try {
      await rejectsWith(connect(through(stack(), { port: g.port, sslmode: 'require' })), 'TLS_UNKNOWN_CA')
    } finally {
      await g.stop()
    }
  })

  test('sslmode values that allow plaintext are refused before any connection', async () => {
    const before = stack().gate.log.length
    for (const sslmode of ['disable', 'allow', 'prefer']) {
      const err = await rejectsWith(connect(through(stack(), { sslmode: sslmode as 'require' })), 'INVALID_CONFIG')
      assert.equal(err.setting, 'option sslmode')
    }
    assert.equal(stack().gate.log.length, before)
  })

  test('a server that declines TLS is refused with TLS_REFUSED', async () => {
    // A PostgreSQL-speaking peer configured without TLS answers N to SSLRequest.
    const server = net.createServer((s) => {
      s.once('data', () => s.end('N'))
      s.on('error', () => {})
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    try {
      const port = (server.address() as net.AddressInfo).port
      await rejectsWith(connect(through(stack(), { port, sslnegotiation: 'postgres' })), 'TLS_REFUSED')
    } finally {
      server.close()
    }
  })

  test('a missing sslrootcert file is a configuration error', async () => {
    const err = await rejectsWith(connect(through(stack(), { sslrootcert: '/nonexistent/ca.pem' })), 'INVALID_CONFIG')
    assert.equal(err.setting, 'sslrootcert')
  })
})
