// The AWS Lambda example (examples/lambda/handler.mjs), loaded once and invoked many times in one
// process, as a Lambda execution environment does: one connection reused across invocations, a
// fresh IAM token for every new connection, recycling before the server's lifetime cut, and
// invocations that keep succeeding after the gate has closed every connection.
import assert from 'node:assert/strict'
import path from 'node:path'
import { pathToFileURL } from 'node:url'
import { after, before, describe, test } from 'node:test'
import { useStack, type Stack } from './helpers.ts'

const stack = useStack({ tokenAuth: true })
const HANDLER = path.resolve(__dirname, '../examples/lambda/handler.mjs')
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

interface LambdaResponse {
  statusCode: number
  body: string
}
type Handler = (event: { name?: string }) => Promise<LambdaResponse>

const startups = (s: Stack) => s.gate.log.filter((r) => r.kind === 'startup')

/** What a Lambda function's environment holds: the endpoint, the tunnel, the role's credentials. */
function lambdaEnvironment(s: Stack): Record<string, string | undefined> {
  return {
    PGHOST: s.host,
    PGHOSTADDR: s.tunnelAddr,
    PGPORT: String(s.tunnelPort),
    PGUSER: 'admin',
    PGSSLROOTCERT: s.caFile,
    PGPASSWORD: undefined,
    PGDATABASE: undefined,
    PGSSLMODE: undefined,
    AWS_PROFILE: undefined,
    AWS_ACCESS_KEY_ID: s.aws.accessKeyId,
    AWS_SECRET_ACCESS_KEY: s.aws.secretAccessKey,
    AWS_SESSION_TOKEN: s.aws.sessionToken,
    AWS_REGION: s.aws.region,
    // The example's knob, shortened so recycling happens within the test (default 2700 s).
    POOL_MAX_LIFETIME_SECONDS: '3',
  }
}

describe('AWS Lambda example', () => {
  let handler: Handler
  const saved: Record<string, string | undefined> = {}

  before(async () => {
    for (const [k, v] of Object.entries(lambdaEnvironment(stack()))) {
      saved[k] = process.env[k]
      if (v === undefined) delete process.env[k]
      else process.env[k] = v
    }
    // A computed specifier: the module is plain JavaScript, loaded as Lambda's runtime loads it.
    const mod = (await import(pathToFileURL(HANDLER).href)) as { handler: Handler }
    handler = mod.handler
  })

  after(() => {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k]
      else process.env[k] = v
    }
  })

  async function invoke(name: string): Promise<{ greeting: string; user: string; at: string }> {
    const res = await handler({ name })
    assert.equal(res.statusCode, 200)
    const body = JSON.parse(res.body) as { greeting: string; user: string; at: string }
    assert.equal(body.greeting, `hello, ${name}`)
    assert.equal(body.user, 'admin')
    return body
  }

  test('many invocations share one connection, opened with a minted token', async () => {
    const s = stack()
    const before = startups(s).length
    for (let i = 0; i < 25; i++) await invoke(`seq ${i}`)
    await Promise.all(Array.from({ length: 10 }, (_, i) => invoke(`burst ${i}`)))
    const opened = startups(s).slice(before)
    assert.equal(opened.length, 1, 'one connection for every invocation')
    assert.equal(opened[0].tokenCheck?.ok, true)
    assert.equal(opened[0].tokenCheck?.action, 'DbConnectAdmin')
  })

  test('every invocation succeeds after the gate closes all connections', async () => {
    const s = stack()
    const before = startups(s).length
    for (let round = 0; round < 5; round++) {
      await invoke(`before cut ${round}`)
      s.gate.closeAll()
      // Immediately, and after the close has had time to arrive (a thawed environment).
      await invoke(`right after cut ${round}`)
      s.gate.closeAll()
      await sleep(50)
      await invoke(`after cut ${round}`)
    }
    const opened = startups(s).slice(before)
    assert.ok(opened.length >= 10, `a new connection after each cut (${opened.length})`)
    assert.ok(opened.every((r) => r.tokenCheck?.ok), 'each with a valid token')
  })

  test('connections are recycled before the server cuts them, and a cut that comes first is survived', async () => {
    const s = stack()
    // The server's limit (DSQL: 60 min) longer than the pool's (here 3 s, up to 10 % less).
    s.gate.settings.maxConnectionLifetimeMs = 6_000
    try {
      s.gate.closeAll() // start from a connection opened under these settings
      const from = startups(s).length
      const opened = () => startups(s).slice(from)
      let n = 0
      for (const deadline = Date.now() + 10_000; Date.now() < deadline; ) {
        await invoke(`recycle ${n++}`)
        if (opened().length >= 2 && opened()[0].closeReason !== undefined) break
        await sleep(100)
      }
      assert.ok(opened().length >= 2, 'the pool replaced its connection')
      assert.equal(opened()[0].closeReason, 'client', 'closed by the pool, not cut by the server')

      // Now the server cuts first (a connection frozen past its limit, a shorter server setting).
      s.gate.settings.maxConnectionLifetimeMs = 700
      s.gate.closeAll()
      const cutsFrom = startups(s).length
      const cut = () => startups(s).slice(cutsFrom).filter((r) => r.closeReason === 'lifetime')
      for (const deadline = Date.now() + 10_000; Date.now() < deadline && cut().length < 3; ) {
        await invoke(`server cut ${n++}`)
        await sleep(90)
      }
      assert.ok(cut().length >= 3, `the server cut connections (${cut().length}) and invocations kept succeeding`)
    } finally {
      s.gate.settings.maxConnectionLifetimeMs = undefined
    }
  })
})
