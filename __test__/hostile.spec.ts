// Hostile and wrong input through the public API: parameter counts and types, values JavaScript
// allows and PostgreSQL does not, huge SQL text and values, a server's crafted rows, random input
// (seeded, bounded), and the panic boundary. Every call settles (never a synchronous throw, never
// a hang) with a stable code, and the client stays usable.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import path from 'node:path'
import { inspect } from 'node:util'
import { after, before, describe, test } from 'node:test'
import { connect, DsqlTunnelError, type Client } from '../index.js'
import { HostileServer, int4ArrayBinary, type CraftedColumn } from './fixture/faults.ts'
import { through, useStack } from './helpers.ts'

const stack = useStack()
const ROOT = path.resolve(__dirname, '..')
const MB = 2 ** 20

let client: Client
/** One client shared by the suites that call this (connected before their first test). */
function useSharedClient(): void {
  before(async () => {
    // PostgreSQL's own limits are tested here: DSQL's 10 MiB message limit (MESSAGE_TOO_LARGE) is off.
    client ??= await connect(through(stack(), { maxMessageBytes: 0 }))
  })
}
after(async () => {
  await client?.end()
})

async function stillUsable(c: Client = client): Promise<void> {
  assert.deepEqual((await c.query('select $1::text as v', ['still ok'])).rows, [{ v: 'still ok' }])
}

/** Calls `query` and checks it returned a promise (no synchronous throw); settles it. */
async function settle(c: Client, text: string, values?: unknown[]): Promise<{ code: string; err?: Error }> {
  let p: Promise<unknown> | undefined
  assert.doesNotThrow(() => {
    p = c.query(text, values)
  })
  assert.ok(p instanceof Promise)
  try {
    await p
    return { code: 'OK' }
  } catch (e) {
    const err = e as DsqlTunnelError
    return { code: typeof err?.code === 'string' ? err.code : `${(e as Error)?.name}: ${(e as Error)?.message}`, err }
  }
}

describe('parameters', () => {
  useSharedClient()
  // query.spec proves too few / too many values, first time and cached; types.spec proves
  // symbols, functions, circular objects, lone surrogates and invalid Dates (INVALID_PARAMETER).
  test('counts: $0, an absurd $n and a mismatch settle with 42P02 or PARAMETER_COUNT_MISMATCH', async () => {
    assert.equal((await settle(client, 'select $0::int')).code, '42P02')
    assert.equal((await settle(client, 'select $99999999999999999999::int', [1])).code, 'PARAMETER_COUNT_MISMATCH')
    assert.equal((await settle(client, 'select $2::int', [1])).code, 'PARAMETER_COUNT_MISMATCH')
    assert.equal((await settle(client, 'select $1::text as a, $2::text as b', [, 'x'])).code, 'OK', 'a hole is NULL')
    const arrayLike = { length: 1, 0: 'x' } as unknown as unknown[]
    assert.equal((await settle(client, 'select $1::text', arrayLike)).code, 'INVALID_ARGUMENT')
    await stillUsable()
  })

  test('values JavaScript allows and PostgreSQL refuses: the server says which (22P02, 22003, 22008)', async () => {
    const cases: Array<[string, unknown, string]> = [
      ['int', NaN, '22P02'],
      ['int', Infinity, '22P02'],
      ['int', 0.1, '22P02'],
      ['int', true, '22P02'],
      ['int4', 2 ** 31, '22003'],
      ['int2', -(2 ** 15) - 1, '22003'],
      ['int8', 2n ** 63n, '22003'],
      ['int8', 1e21, '22P02'],
      ['numeric', Infinity, 'OK'],
      ['float8', -Infinity, 'OK'],
      ['float8', NaN, 'OK'],
      ['numeric', NaN, 'OK'],
      ['timestamptz', new Date(-8.64e15), '22008'],
      ['text', 'a\u0000b', '22021'],
    ]
    const seen = []
    for (const [cast, value] of cases) {
      seen.push(`${cast} ${String(value)} → ${(await settle(client, `select $1::${cast} as v`, [value])).code}`)
    }
    assert.deepEqual(seen, cases.map(([cast, value, expected]) => `${cast} ${String(value)} → ${expected}`))
    await stillUsable()
  })

  test('values with no PostgreSQL form: INVALID_PARAMETER with the index, as a rejection', async () => {
    const trap = new Proxy({}, { ownKeys() { throw new Error('trap') } })
    const cases: unknown[] = [
      { n: 1n },
      { toJSON() { throw new Error('nope') } },
      { get x() { throw new Error('getter') } },
      trap,
      ['a', () => 1],
      JSON.parse('{"a":'.repeat(5000) + '1' + '}'.repeat(5000)),
    ]
    for (const value of cases) {
      const r = await settle(client, 'select $1::text as a, $2::jsonb as b', ['fine', value])
      assert.equal(r.code, 'INVALID_PARAMETER', String(r.err))
      assert.equal((r.err as DsqlTunnelError).parameterIndex, 1)
    }
    await stillUsable()
  })

  test('encoding that recurses without end (deeply nested arrays, toPostgres cycles): INVALID_PARAMETER, not a bare RangeError', async () => {
    // pg reports circular toPostgres values; a stack overflow is no error code at all.
    const self: { toPostgres(): unknown } = { toPostgres: () => self }
    const a: { toPostgres(): unknown } = { toPostgres: () => b }
    const b: { toPostgres(): unknown } = { toPostgres: () => a }
    const deep = JSON.parse('['.repeat(10_000) + ']'.repeat(10_000))
    const seen = []
    for (const [what, value] of [['toPostgres returning itself', self], ['toPostgres cycle', a], ['10,000 nested arrays', deep]] as const) {
      const r = await settle(client, 'select $1::text, $2::text', ['fine', value])
      seen.push(`${what}: ${r.code}`)
      // It names the parameter, as every INVALID_PARAMETER does.
      if (r.code === 'INVALID_PARAMETER') assert.ok((r.err as DsqlTunnelError).parameterIndex === 1 && /\$2/.test(r.err!.message), r.err?.message)
    }
    assert.deepEqual(seen, ['toPostgres returning itself: INVALID_PARAMETER', 'toPostgres cycle: INVALID_PARAMETER', '10,000 nested arrays: INVALID_PARAMETER'])
    await stillUsable()
  })

  test("a toPostgres that throws: the query rejects with the caller's own error; the client stays usable", async () => {
    const boom = new Error('nope')
    const r = await settle(client, 'select $1::text', [{ toPostgres() { throw boom } }])
    assert.equal(r.err, boom)
    await stillUsable()
  })
})

describe('query text', () => {
  useSharedClient()
  test('a lone surrogate in the SQL text is refused (INVALID_ARGUMENT), not silently replaced by U+FFFD', async () => {
    // Parameters with one are refused (INVALID_PARAMETER); the text itself must not be rewritten.
    const r = await settle(client, "select '\uD83D' as v")
    assert.equal(r.code, 'INVALID_ARGUMENT', r.code === 'OK' ? 'the query ran with U+FFFD in place of the surrogate' : r.code)
    await stillUsable()
  })

  test('what the client cannot encode is INVALID_ARGUMENT, not PROTOCOL_ERROR ("unexpected data from the server"): a NUL in the text, over 65,535 parameters', async () => {
    const nul = await settle(client, "select 'a\u0000' as v")
    const many = Array.from({ length: 65_536 }, (_, i) => `$${i + 1}::int`).join(',')
    const over = await settle(client, `select array_length(array[${many}], 1) as n`, Array.from({ length: 65_536 }, () => 1))
    assert.deepEqual([nul.code, over.code], ['INVALID_ARGUMENT', 'INVALID_ARGUMENT'], `${nul.err?.message} / ${over.err?.message}`)
    await stillUsable()
  })

  test('65,535 parameters (the protocol maximum) work', async () => {
    const n = 65_535
    const text = `select array_length(array[${Array.from({ length: n }, (_, i) => `$${i + 1}::int`).join(',')}], 1) as n`
    const { rows } = await client.query(text, Array.from({ length: n }, (_, i) => i))
    assert.deepEqual(rows, [{ n }])
  })

  test('empty text, only a comment, only semicolons: an empty result, no error', async () => {
    for (const text of ['', '-- nothing', ';;;', '  /* c */  ']) {
      const r = await settle(client, text)
      assert.equal(r.code, 'OK', `${JSON.stringify(text)}: ${r.code}`)
    }
  })
})

describe('very large SQL and values', () => {
  useSharedClient()
  /** Runs `fn` and reports how much RSS rose above where it started, at its highest. */
  async function peakRss(fn: () => Promise<void>): Promise<number> {
    const start = process.memoryUsage().rss
    let peak = start
    const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 2)
    try {
      await fn()
    } finally {
      clearInterval(timer)
    }
    return (Math.max(peak, process.memoryUsage().rss) - start) / MB
  }

  test('huge SQL texts run, and are not kept: four distinct 16 MB texts leave RSS within 2 texts of one (child process, after GC)', async (t) => {
    // The statement cache keys on the text: a huge text must not stay resident (twice) for
    // the life of the connection, up to 256 of them.
    const code = `const dt = require(${JSON.stringify(ROOT)}); (async () => {
      const c = await dt.connect(JSON.parse(process.env.OPTS)); const rss = []
      for (const ch of 'abcd') {
        const r = await c.query("select length('" + ch.repeat(16 * 1024 * 1024) + "') as n")
        if (r.rows[0].n !== 16 * 1024 * 1024) throw new Error('wrong length')
        globalThis.gc(); rss.push(process.memoryUsage().rss)
      }
      console.log(JSON.stringify(rss)); await c.end() })()`
    // PostgreSQL takes these; DSQL's 10 MiB message limit (MESSAGE_TOO_LARGE) is turned off here.
    const opts = through(stack(), { maxMessageBytes: 0 })
    const child = spawn(process.execPath, ['--expose-gc', '-e', code], { env: { ...process.env, OPTS: JSON.stringify(opts) }, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.on('data', (d) => (out += d))
    child.stderr.on('data', (d) => (out += d))
    const exit = await new Promise<number | null>((r) => child.on('exit', r))
    assert.equal(exit, 0, out)
    const rss = JSON.parse(out.trim().split('\n').at(-1) ?? '[]') as number[]
    t.diagnostic(`RSS after each 16 MB text (after GC): ${rss.map((r) => (r / MB).toFixed(0)).join(', ')} MB`)
    const kept = (rss[3] - rss[0]) / MB
    assert.ok(kept < 32, `RSS rose ${kept.toFixed(0)} MB from the first 16 MB text to the fourth (${rss.map((r) => (r / MB).toFixed(0)).join(', ')} MB)`)
  })

  test('a single 100 MB value, as a result and as a parameter: it works, RSS rises less than 4× the value', async (t) => {
    let got = 0
    const asResult = await peakRss(async () => {
      const { rows } = await client.query<{ v: string }>("select repeat('x', 100 * 1024 * 1024) as v")
      got = rows[0].v.length
    })
    assert.equal(got, 100 * MB)
    const value = 'y'.repeat(100 * MB)
    const asParameter = await peakRss(async () => {
      const { rows } = await client.query('select length($1::text) as n', [value])
      assert.deepEqual(rows, [{ n: 100 * MB }])
    })
    t.diagnostic(`100 MB result: RSS +${asResult.toFixed(0)} MB; 100 MB parameter: RSS +${asParameter.toFixed(0)} MB`)
    assert.ok(asResult < 400, `result: RSS rose ${asResult.toFixed(0)} MB`)
    assert.ok(asParameter < 400, `parameter: RSS rose ${asParameter.toFixed(0)} MB`)
    await stillUsable()
  })
})

describe("a hostile server's rows", () => {
  async function against(columnsFor: (sql: string) => CraftedColumn[], fn: (c: Client) => Promise<void>): Promise<void> {
    const h = await new HostileServer({ stage: 'query', reply: 'rows', cert: stack().certs.good, columns: columnsFor }).start()
    const c = await connect(through(stack(), { port: h.port }))
    try {
      await fn(c)
    } finally {
      await c.end()
      await h.stop()
    }
  }
  const int4 = (n: number) => { const b = Buffer.alloc(4); b.writeInt32BE(n); return b }
  const sane: CraftedColumn[] = [{ name: 'ok', typeOid: 23, values: [int4(1)] }]

  test('a value of the wrong size: PROTOCOL_ERROR; the connection still works', async () => {
    await against((sql) => (sql.includes('bad') ? [{ name: 'b', typeOid: 23, values: [Buffer.from([0, 0, 7])] }] : sane), async (c) => {
      assert.equal((await settle(c, 'select bad')).code, 'PROTOCOL_ERROR')
      assert.deepEqual((await c.query('select ok')).rows, [{ ok: 1 }])
    })
  })

  test('an array claiming 2,000,000 × 0 elements (28 bytes) reads as an empty array, as PostgreSQL reads it, in bounded time', async (t) => {
    await against(() => [{ name: 'a', typeOid: 1007, values: [int4ArrayBinary([2_000_000, 0], [])] }], async (c) => {
      const started = performance.now()
      const r = await settle(c, 'select a')
      const took = performance.now() - started
      t.diagnostic(`${r.code} after ${took.toFixed(0)} ms`)
      if (r.code === 'OK') {
        const { rows } = await c.query('select a')
        const a = rows[0].a as unknown
        assert.ok(Array.isArray(a) && a.length === 0, `decoded to ${Array.isArray(a) ? `an array of ${a.length} elements` : typeof a}`)
      } else {
        assert.equal(r.code, 'PROTOCOL_ERROR')
      }
      assert.ok(took < 500, `took ${took.toFixed(0)} ms`)
    })
  })

  test('an array claiming 100,000 dimensions: PROTOCOL_ERROR, and the process survives (PostgreSQL allows 6)', async () => {
    // Run in a child: a stack overflow aborts the whole process, which no handler can catch.
    const h = await new HostileServer({
      stage: 'query', reply: 'rows', cert: stack().certs.good,
      columns: [{ name: 'a', typeOid: 1007, values: [int4ArrayBinary(Array.from({ length: 100_000 }, () => 1), [7])] }],
    }).start()
    try {
      const code = `const dt = require(${JSON.stringify(ROOT)}); (async () => { const c = await dt.connect(JSON.parse(process.env.OPTS)); const r = await c.query('select a').then(() => 'OK', (e) => e.code); console.log('code', r); await c.end() })()`
      const child = spawn(process.execPath, ['-e', code], { env: { ...process.env, OPTS: JSON.stringify(through(stack(), { port: h.port })) }, stdio: ['ignore', 'pipe', 'pipe'] })
      let out = ''
      child.stdout.on('data', (d) => (out += d))
      child.stderr.on('data', (d) => (out += d))
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000)
      const [exit, signal] = await new Promise<[number | null, string | null]>((r) => child.on('exit', (c, s) => r([c, s])))
      clearTimeout(timer)
      assert.equal(signal, null, `the process died by ${signal}: ${out.split('\n').slice(0, 3).join(' | ')}`)
      assert.equal(exit, 0, out)
      assert.match(out, /code PROTOCOL_ERROR/)
    } finally {
      await h.stop()
    }
  })
})

describe('random input (seeded, bounded)', () => {
  useSharedClient()
  /** xorshift32: reproducible from the seed printed on failure. */
  function rng(seed: number): () => number {
    let x = seed >>> 0 || 1
    return () => {
      x ^= x << 13
      x >>>= 0
      x ^= x >>> 17
      x ^= x << 5
      x >>>= 0
      return x / 2 ** 32
    }
  }
  const SEED = Number(process.env.DSQL_TUNNEL_FUZZ_SEED ?? 0x5eed1)
  const pick = <T>(r: () => number, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]

  test('300 random SQL texts: each settles within 2 s with a result or a coded error; the client stays usable', async (t) => {
    const r = rng(SEED)
    const pieces = ['select', ' ', '1', "'", "''", '"', '$1', '$2', ';', '--', '\n', '/*', '*/', '(', ')', 'E\'\\\'', '$$', '$t$',
      'from', 'where', 'union all', 'generate_series(1,3)', 'x', 'é', '😀', ',', '::int', '::text', 'null', 'values', 'with']
    const log: string[] = []
    for (let i = 0; i < 300; i++) {
      const text = Array.from({ length: 1 + Math.floor(r() * 14) }, () => pick(r, pieces)).join('')
      const values = r() < 0.5 ? [] : Array.from({ length: Math.floor(r() * 3) }, () => pick(r, [1, 'a', null, true]))
      const started = performance.now()
      const o = await settle(client, text, values)
      const took = performance.now() - started
      assert.ok(o.code === 'OK' || /^([0-9A-Z]{5}|[A-Z_]+)$/.test(o.code), `seed ${SEED} #${i} ${JSON.stringify(text)}: ${o.code}`)
      assert.ok(took < 2000, `seed ${SEED} #${i} took ${took} ms`)
      log.push(o.code)
    }
    t.diagnostic(`seed ${SEED}: ${log.filter((c) => c === 'OK').length} succeeded, ${log.length - log.filter((c) => c === 'OK').length} errors (${[...new Set(log)].join(' ')})`)
    assert.ok(log.includes('OK') && log.includes('42601'), 'the generator reaches both success and syntax errors')
    await stillUsable()
  })

  test('500 random JavaScript values as parameters: each settles with a result, INVALID_PARAMETER or a SQLSTATE', async (t) => {
    const r = rng(SEED + 1)
    const str = (): string => Array.from({ length: Math.floor(r() * 8) }, () => String.fromCodePoint(pick(r, [0x41, 0x7a, 0x22, 0x5c, 0x7b, 0x2c, 0xe9, 0x1f600, 0x20, 0x0a]))).join('')
    const value = (depth: number): unknown => {
      switch (Math.floor(r() * (depth > 2 ? 8 : 11))) {
        case 0: return pick(r, [0, -0, 1, -1, 0.5, 2 ** 31, 2 ** 53, -(2 ** 63), NaN, Infinity, -Infinity, 1e308, 5e-324])
        case 1: return pick(r, [0n, -1n, 2n ** 64n, -(2n ** 63n)])
        case 2: return str()
        case 3: return pick(r, [true, false, null, undefined])
        case 4: return new Date(pick(r, [0, Date.UTC(2024, 1, 29), -62135596800000, 8.64e15, NaN]))
        case 5: return Buffer.from(str())
        case 6: return pick(r, [Symbol('s'), () => 1, '\uD800', 'ok\uDFFFok'])
        case 7: return { toPostgres: () => str() }
        case 8: return Array.from({ length: Math.floor(r() * 4) }, () => value(depth + 1))
        case 9: return Object.fromEntries(Array.from({ length: Math.floor(r() * 3) }, () => [str(), value(depth + 1)]))
        default: return new Uint8Array([Math.floor(r() * 256)])
      }
    }
    const casts = ['', '::text', '::int', '::int8', '::float8', '::numeric', '::bool', '::jsonb', '::bytea', '::timestamptz', '::text[]', '::int[]']
    const counts: Record<string, number> = {}
    for (let i = 0; i < 500; i++) {
      const v = value(0)
      const cast = pick(r, casts)
      const o = await settle(client, `select $1${cast} as v`, [v])
      const ok = o.code === 'OK' || o.code === 'INVALID_PARAMETER' || /^[0-9A-Z]{5}$/.test(o.code)
      assert.ok(ok, `seed ${SEED + 1} #${i}: select $1${cast} with ${inspect(v)}: ${o.code}`)
      counts[o.code] = (counts[o.code] ?? 0) + 1
    }
    t.diagnostic(`seed ${SEED + 1}: ${JSON.stringify(counts)}`)
    assert.ok(counts.OK > 50 && counts.INVALID_PARAMETER > 10, JSON.stringify(counts))
    await stillUsable()
  })
})

describe('the panic boundary', () => {
  useSharedClient()
  // The addon's internal self-test export panics on purpose, on each side of the boundary.
  const binding = require('../binding.js') as { __selfTestPanic(kind: string): Promise<{ code: string; message: string } | undefined> }

  test('a panic in a synchronous export is a JavaScript exception; in an async one, INTERNAL_ERROR; the process carries on', async () => {
    for (let i = 0; i < 20; i++) {
      assert.throws(() => binding.__selfTestPanic('sync'), (e: Error) => e instanceof Error && /self-test panic/.test(e.message))
      const settled = await binding.__selfTestPanic('async')
      assert.equal(settled?.code, 'INTERNAL_ERROR')
      assert.match(settled?.message ?? '', /self-test panic \(async\)/)
    }
    assert.equal(await binding.__selfTestPanic('none'), undefined)
    await stillUsable()
    const other = await connect(through(stack()))
    await stillUsable(other)
    await other.end()
  })
})
