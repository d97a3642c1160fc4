// end(), process exit, and secrets: what a client leaves behind.
import assert from 'node:assert/strict'
import { inspect } from 'node:util'
import { describe, test } from 'node:test'
import { connect } from '../index.js'
import { rejectsWith, runSnippet, through, useStack } from './helpers.ts'

const stack = useStack()

describe('end()', () => {
  test('is idempotent and pending queries reject with CLIENT_CLOSED', async () => {
    const client = await connect(through(stack()))
    const pending = rejectsWith(client.query('select pg_sleep(5)'), 'CLIENT_CLOSED')
    const started = Date.now()
    await Promise.all([client.end(), client.end()])
    await pending
    assert.ok(Date.now() - started < 3000)
    await client.end()
    await rejectsWith(client.query('select 1'), 'CLIENT_CLOSED')
  })

  test('the gate sees the connection close', async () => {
    const client = await connect(through(stack()))
    await client.query('select 1')
    const rec = stack().gate.lastRecord((r) => r.kind === 'startup')
    await client.end()
    for (let i = 0; i < 50 && rec?.closedAt === undefined; i++) await new Promise((r) => setTimeout(r, 20))
    assert.ok(rec?.closedAt, 'connection closed at the gate')
  })
})

describe('process exit', () => {
  test('after end() the process exits at once', async () => {
    const r = await runSnippet(stack(), `(async () => { const c = await dt.connect(opts); await c.query('select 1'); await c.end(); console.log('done') })()`)
    assert.equal(r.code, 0, r.out)
    assert.match(r.out, /done/)
    assert.ok(r.ms < 5000, `took ${r.ms} ms`)
  })

  test('an idle connected client does not keep the process alive', async () => {
    const r = await runSnippet(stack(), `(async () => { const c = await dt.connect(opts); await c.query('select 1'); console.log('idle') })()`)
    assert.equal(r.code, 0, r.out)
    assert.match(r.out, /idle/)
    assert.ok(r.ms < 5000, `took ${r.ms} ms`)
  })

  test('a pending query keeps the process alive until it settles', async () => {
    const r = await runSnippet(stack(), `(async () => { const c = await dt.connect(opts); const t = Date.now(); await c.query('select pg_sleep(0.5)'); console.log('slept', Date.now() - t) })()`)
    assert.equal(r.code, 0, r.out)
    const slept = Number(/slept (\d+)/.exec(r.out)?.[1])
    assert.ok(slept >= 450, r.out)
  })

  test('process.exit with queries in flight neither crashes nor hangs', async () => {
    const r = await runSnippet(stack(), `(async () => { const c = await dt.connect(opts); for (let i = 0; i < 20; i++) c.query('select pg_sleep(1)').catch(() => {}); setTimeout(() => process.exit(0), 100) })()`)
    assert.equal(r.code, 0, r.out)
  })
})

describe('secrets', () => {
  test('the password appears in no inspect output, error or JSON', async () => {
    const secret = stack().users.admin.password
    const client = await connect(through(stack()))
    try {
      for (const shown of [inspect(client, { showHidden: true, depth: 5 }), JSON.stringify(client), String(client), JSON.stringify(client.connection)]) {
        assert.ok(!shown.includes(secret), shown)
      }
      assert.match(inspect(client), /host: tst0fixture0cluster/)
      const err = await client.query('select $1::int', ['x']).catch((e: Error) => e)
      assert.ok(!inspect(err, { showHidden: true }).includes(secret))
    } finally {
      await client.end()
    }
    const bad = await connect(through(stack(), { password: 'not-the-' + secret })).catch((e: Error) => e)
    assert.ok(bad instanceof Error)
    assert.ok(!inspect(bad, { showHidden: true, depth: 5 }).includes(secret))
  })
})

describe('diagnostics', () => {
  test('DEBUG=dsql-tunnel logs connection lifecycle events with timings, and no secret', async () => {
    const secret = stack().users.admin.password
    const r = await runSnippet(stack(), `(async () => {
      const p = new dt.Pool({ ...opts, max: 1, idleTimeoutMillis: 50 })
      await p.query('select 1')
      await p.query('select pg_sleep(0.3)', [], { timeoutMillis: 50 }).catch(() => {})
      await new Promise((r) => setTimeout(r, 150))
      await p.end()
    })()`, 10_000, { DEBUG: 'dsql-tunnel' })
    assert.equal(r.code, 0, r.out)
    assert.match(r.out, /dsql-tunnel \S+ connected host=tst0fixture0cluster\S* via=127\.0\.0\.1:\d+ user=admin tls=direct verify=full dialMs=[\d.]+ms tlsAuthMs=[\d.]+ms totalMs=/)
    assert.match(r.out, /pool-open total=1 max=1/)
    assert.match(r.out, /cancel reason=timeout/)
    assert.match(r.out, /pool-close reason=idle/)
    assert.ok(!r.out.includes(secret))
    const quiet = await runSnippet(stack(), `(async () => { const c = await dt.connect(opts); await c.end() })()`)
    assert.equal(quiet.out, '')
  })
})
