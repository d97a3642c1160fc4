// The local auth proxy: real clients (psql/libpq, pg) connect to it with no password and no TLS
// settings; it reaches the stack's gate through the tunnel with TLS, SNI and a fresh IAM token
// per upstream connection, which the gate verifies for real.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { createRequire } from 'node:module'
import postgres from 'postgres'
import { ROOT, rejectsWith, useStack, type Stack } from './helpers.ts'

// The parts of pg and of lib/proxy.js these tests use (pg ships no typings here).
interface PgClient {
  connect(): Promise<void>
  query(text: string, values?: unknown[]): Promise<{ rows: Record<string, unknown>[] }>
  end(): Promise<void>
  on(event: 'error', listener: (e: Error) => void): void
  once(event: 'end', listener: (value?: unknown) => void): void
  processID: number | null
  secretKey: number | null
}
interface ProxyHandle {
  host: string
  port: number
  socketPath?: string
  stats(): { accepted: number; refused: number; failed: number; cancels: number; active: number }
  close(graceMillis?: number): Promise<number>
}
const require = createRequire(import.meta.url)
const pg = require('pg') as { Client: new (config: Record<string, unknown>) => PgClient }
const { startProxy } = require('../lib/proxy.js') as { startProxy(options: Record<string, unknown>): Promise<ProxyHandle> }

const stack = useStack({ tokenAuth: true })
const PSQL = '/usr/bin/psql'
const INFO_QUERY = "select current_database() as database, current_user as user, current_setting('server_version') as version"

type Proxy = ProxyHandle

function credentials(s: Stack) {
  return { accessKeyId: s.aws.accessKeyId, secretAccessKey: s.aws.secretAccessKey, sessionToken: s.aws.sessionToken }
}

/** Upstream settings through the stack's tunnel, verifying the certificate, minting tokens. */
function upstream(s: Stack, extra: Record<string, unknown> = {}) {
  return { host: s.host, hostaddr: s.tunnelAddr, port: s.tunnelPort, sslrootcert: s.caFile, credentials: credentials(s), listen: '127.0.0.1:0', ...extra }
}

// Clients get nothing from this process's environment: no password, no TLS settings.
const CLEAN_ENV: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: os.tmpdir(), LANG: 'C.UTF-8', PGCONNECT_TIMEOUT: '10' }

interface Run { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }

function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number; input?: string; onSpawn?: (pid: number) => void } = {}): Promise<Run> {
  const child = spawn(cmd, args, { env: opts.env ?? CLEAN_ENV, stdio: ['pipe', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d) => (stdout += d))
  child.stderr.on('data', (d) => (stderr += d))
  child.stdin.end(opts.input ?? '')
  if (child.pid !== undefined) opts.onSpawn?.(child.pid)
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 20_000)
    child.on('exit', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, stdout, stderr })
    })
  })
}

const psql = (conninfo: string, sql: string, extra: string[] = []) =>
  run(PSQL, [conninfo, '-X', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-v', 'VERBOSITY=verbose', ...extra, '-c', sql])

function startups(s: Stack, since = 0) {
  return s.gate.log.slice(since).filter((r) => r.kind === 'startup')
}

/** Whether anything accepts TCP on 127.0.0.1:port. */
function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect({ host: '127.0.0.1', port })
    sock.once('connect', () => {
      sock.destroy()
      resolve(true)
    })
    sock.once('error', () => resolve(false))
  })
}

async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs
  for (let i = 0; i < 1000 && Date.now() < deadline; i++) {
    if (await check()) return
    await new Promise((r) => setTimeout(r, 20))
  }
  assert.fail(`timed out waiting for ${what}`)
}

function assertNoSecrets(s: Stack, text: string) {
  for (const secret of [s.aws.secretAccessKey, s.aws.sessionToken, 'X-Amz-Signature', 'X-Amz-Security-Token', s.users.admin.password]) {
    assert.ok(!text.includes(secret), `a secret appeared in the output: ${text.slice(0, 400)}`)
  }
}

describe('proxy: clients with no password and no TLS settings', () => {
  let proxy: Proxy
  before(async () => {
    proxy = await startProxy(upstream(stack()))
  })
  after(async () => {
    await proxy?.close(1000)
  })

  test("psql runs the experiment's connection-info query and a prepared one; the gate saw SNI and DbConnectAdmin", async () => {
    const s = stack()
    const since = s.gate.log.length
    const conninfo = `host=127.0.0.1 port=${proxy.port} user=admin dbname=postgres`
    const r = await psql(conninfo, INFO_QUERY)
    assert.equal(r.code, 0, r.stderr)
    const [database, user, version] = r.stdout.trim().split('|')
    assert.equal(database, 'postgres')
    assert.equal(user, 'admin')
    assert.match(version, /^\d+/)
    const p = await run(PSQL, [conninfo, '-XAt', '-v', 'ON_ERROR_STOP=1', '-c', 'prepare q(int) as select $1 + 1', '-c', 'execute q(41)'])
    assert.equal(p.code, 0, p.stderr)
    assert.equal(p.stdout.trim().split('\n').at(-1), '42')
    const recs = startups(s, since)
    assert.equal(recs.length, 2)
    for (const rec of recs) {
      assert.equal(rec.sni, s.host)
      assert.equal(rec.outcome, 'forwarded')
      assert.equal(rec.tokenCheck?.ok, true)
      assert.equal(rec.tokenCheck?.action, 'DbConnectAdmin')
    }
    // SigV4 signs with a resolution of one second: a token minted in a later second differs.
    await new Promise((r) => setTimeout(r, 1100))
    const again = await psql(conninfo, 'select 1')
    assert.equal(again.code, 0, again.stderr)
    const third = startups(s, since).at(-1)!
    assert.equal(third.tokenCheck?.ok, true)
    assert.notEqual(third.tokenHash, recs[0].tokenHash, 'a token minted for each upstream connection')
  })

  test('pg with a plain config (host 127.0.0.1, no ssl) runs the connection-info query and a parameterised one', async () => {
    const s = stack()
    const since = s.gate.log.length
    const client = new pg.Client({ host: '127.0.0.1', port: proxy.port, user: 'admin', database: 'postgres', ssl: false })
    await client.connect()
    try {
      const info = await client.query(INFO_QUERY)
      assert.deepEqual([info.rows[0].database, info.rows[0].user], ['postgres', 'admin'])
      const r = await client.query('select $1::int + $2::int as n, $3::text as t', [40, 2, 'héllo'])
      assert.deepEqual(r.rows, [{ n: 42, t: 'héllo' }])
      assert.equal(typeof client.processID, 'number', 'the proxy sent its own BackendKeyData')
    } finally {
      await client.end()
    }
    const recs = startups(s, since)
    assert.equal(recs.length, 1)
    assert.equal(recs[0].sni, s.host)
    assert.equal(recs[0].tokenCheck?.action, 'DbConnectAdmin')
  })

  test('postgres.js with a plain config (no ssl, no password) runs the connection-info query and a parameterised one', async () => {
    const s = stack()
    const since = s.gate.log.length
    const sql = postgres({ host: '127.0.0.1', port: proxy.port, user: s.users.iam.user, database: 'postgres', ssl: false, max: 1, onnotice: () => {} })
    try {
      const info = await sql.unsafe(INFO_QUERY)
      assert.deepEqual([info[0].database, info[0].user], ['postgres', s.users.iam.user])
      const r = await sql`select ${40}::int + ${2}::int as n, ${'héllo'}::text as t`
      assert.deepEqual([...r], [{ n: 42, t: 'héllo' }])
    } finally {
      await sql.end({ timeout: 5 })
    }
    const recs = startups(s, since)
    assert.equal(recs.length, 1)
    assert.equal(recs[0].sni, s.host)
    assert.equal(recs[0].tokenCheck?.action, 'DbConnect')
  })

  test('a non-admin role gets a DbConnect token; startup parameters (options, application_name) reach the server', async () => {
    const s = stack()
    const since = s.gate.log.length
    const client = new pg.Client({
      host: '127.0.0.1', port: proxy.port, user: s.users.iam.user, database: 'postgres', application_name: 'proxy-spec',
      options: '-c search_path=public',
    })
    await client.connect()
    try {
      const r = await client.query("select current_user as u, current_setting('application_name') as app, current_setting('search_path') as sp")
      assert.deepEqual(r.rows, [{ u: s.users.iam.user, app: 'proxy-spec', sp: 'public' }])
    } finally {
      await client.end()
    }
    const rec = startups(s, since)[0]
    assert.equal(rec.tokenCheck?.action, 'DbConnect')
    assert.equal(rec.user, s.users.iam.user)
  })

  test('psql over SSLRequest-less plain text: sslmode=prefer gets N and carries on; sslmode=require is refused locally', async () => {
    const prefer = await psql(`host=127.0.0.1 port=${proxy.port} user=admin dbname=postgres sslmode=prefer gssencmode=prefer`, 'select 1')
    assert.equal(prefer.code, 0, prefer.stderr)
    assert.equal(prefer.stdout.trim(), '1')
    const require = await psql(`host=127.0.0.1 port=${proxy.port} user=admin dbname=postgres sslmode=require`, 'select 1')
    assert.notEqual(require.code, 0)
    assert.match(require.stderr, /does not support SSL/)
  })

  test('a CancelRequest from psql (SIGINT during pg_sleep) reaches the gate over TLS with SNI; the query ends with 57014', async () => {
    const s = stack()
    const since = s.gate.log.length
    let pid = 0
    const running = run(PSQL, [`host=127.0.0.1 port=${proxy.port} user=admin dbname=postgres`, '-X', '-v', 'VERBOSITY=verbose', '-c', 'select pg_sleep(30)'], {
      onSpawn: (p) => (pid = p),
    })
    // The statement is running once PostgreSQL shows it.
    const watcher = new pg.Client({ host: '127.0.0.1', port: proxy.port, user: 'admin', database: 'postgres' })
    await watcher.connect()
    try {
      await waitFor('pg_sleep to run', async () => {
        const r = await watcher.query("select count(*)::int as n from pg_stat_activity where query = 'select pg_sleep(30)' and state = 'active'")
        return r.rows[0].n === 1
      })
    } finally {
      await watcher.end()
    }
    const started = Date.now()
    process.kill(pid, 'SIGINT')
    const r = await running
    assert.ok(Date.now() - started < 10_000, 'the cancel ended the query early')
    assert.match(r.stderr, /57014/)
    const cancels = s.gate.log.slice(since).filter((rec) => rec.kind === 'cancel')
    assert.equal(cancels.length, 1)
    assert.equal(cancels[0].sni, s.host)
    assert.equal(cancels[0].mode, 'direct')
    assert.ok(proxy.stats().cancels >= 1)
  })

  test("a CancelRequest with a wrong secret cancels nothing; pg's own key for the session does", async () => {
    const s = stack()
    const client = new pg.Client({ host: '127.0.0.1', port: proxy.port, user: 'admin', database: 'postgres' })
    await client.connect()
    try {
      const sendCancel = (pidKey: number, secret: number) =>
        new Promise<void>((resolve, reject) => {
          const sock = net.connect({ host: '127.0.0.1', port: proxy.port }, () => {
            const b = Buffer.alloc(16)
            b.writeUInt32BE(16, 0)
            b.writeUInt32BE(80877102, 4)
            b.writeUInt32BE(pidKey, 8)
            b.writeUInt32BE(secret >>> 0, 12)
            sock.end(b)
          })
          sock.on('close', () => resolve())
          sock.on('error', reject)
        })
      const c = { processID: client.processID!, secretKey: client.secretKey! }
      const since = s.gate.log.length
      const q = client.query('select pg_sleep(30)').then(() => null, (e: Error) => e)
      await new Promise((r) => setTimeout(r, 300))
      await sendCancel(c.processID, (c.secretKey + 1) >>> 0)
      await new Promise((r) => setTimeout(r, 300))
      assert.equal(s.gate.log.slice(since).filter((rec) => rec.kind === 'cancel').length, 0, 'a wrong secret goes nowhere')
      await sendCancel(c.processID, c.secretKey)
      assert.equal(((await q) as (Error & { code?: string }) | null)?.code, '57014')
      assert.equal((await client.query('select 1 as one')).rows[0].one, 1, 'the session goes on after the cancel')
    } finally {
      await client.end()
    }
  })

  test('100 concurrent client connections, each with its own upstream connection and token', async () => {
    const s = stack()
    const since = s.gate.log.length
    const clients = Array.from({ length: 100 }, () => new pg.Client({ host: '127.0.0.1', port: proxy.port, user: 'admin', database: 'postgres' }))
    try {
      await Promise.all(clients.map((c) => c.connect()))
      const rows = await Promise.all(clients.map((c, i) => c.query('select $1::int as i, pg_backend_pid() as pid', [i])))
      assert.deepEqual(rows.map((r) => r.rows[0].i), clients.map((_, i) => i))
      assert.equal(new Set(rows.map((r) => r.rows[0].pid)).size, 100, 'one upstream connection per client')
      assert.equal(proxy.stats().active, 100)
    } finally {
      await Promise.all(clients.map((c) => c.end().catch(() => {})))
    }
    const recs = startups(s, since)
    assert.equal(recs.length, 100)
    assert.ok(recs.every((r) => r.tokenCheck?.ok === true && r.sni === s.host))
    await waitFor('sessions to close', () => proxy.stats().active === 0)
  })

  test('an upstream refusal reaches psql and pg with its SQLSTATE (53300, 53400) and a hint', async () => {
    const s = stack()
    try {
      for (const code of ['53300', '53400']) {
        s.gate.settings.onStartup = () => ({ error: { code, message: 'unable to accept connection' } })
        const r = await psql(`host=127.0.0.1 port=${proxy.port} user=admin dbname=postgres`, 'select 1')
        assert.notEqual(r.code, 0)
        assert.match(r.stderr, /FATAL:  unable to accept connection/)
        assert.match(r.stderr, new RegExp(`DETAIL:  SQLSTATE ${code}`))
        assert.match(r.stderr, /HINT: /)
        const client = new pg.Client({ host: '127.0.0.1', port: proxy.port, user: 'admin', database: 'postgres' })
        const e = await rejectsWith(client.connect(), code)
        assert.ok((e as unknown as { hint?: string }).hint)
      }
    } finally {
      s.gate.settings.onStartup = undefined
    }
  })

  test('a token the gate refuses reaches the client as 28P01 with our hint', async () => {
    const s = stack()
    const saved = s.gate.settings.tokenAuth
    // The gate now trusts another identity: our tokens fail the signature check.
    s.gate.settings.tokenAuth = { ...s.tokenAuthSettings(), credentials: { ...credentials(s), secretAccessKey: 'not-the-key' } }
    try {
      const r = await psql(`host=127.0.0.1 port=${proxy.port} user=admin dbname=postgres`, 'select 1')
      assert.match(r.stderr, /FATAL:  password authentication failed/)
      assert.match(r.stderr, /DETAIL:  SQLSTATE 28P01/)
      assert.match(r.stderr, /HINT:  .*DbConnectAdmin/)
      assertNoSecrets(s, r.stderr)
    } finally {
      s.gate.settings.tokenAuth = saved
    }
  })

  test('an upstream drop (the tunnel cut mid-session) closes the client connection; no reconnect behind its back', async () => {
    const s = stack()
    const client = new pg.Client({ host: '127.0.0.1', port: proxy.port, user: 'admin', database: 'postgres' })
    await client.connect()
    const errors: Error[] = []
    client.on('error', (e) => errors.push(e))
    const ended = new Promise((resolve) => client.once('end', resolve))
    const since = s.gate.log.length
    try {
      assert.equal((await client.query('select 1 as one')).rows[0].one, 1)
      await s.tunnel.kill()
      await ended
      await assert.rejects(client.query('select 1'))
      assert.equal(startups(s, since).length, 0, 'the proxy did not reconnect')
    } finally {
      await s.tunnel.restart()
      await client.end().catch(() => {})
    }
  })

  test('bytes that are not PostgreSQL close that connection only; a 3.2 start-up with _pq_ options is told 3.0 and carries on', async () => {
    const exchange = (bytes: Buffer, until: (got: Buffer) => boolean) =>
      new Promise<Buffer>((resolve) => {
        const sock = net.connect({ host: '127.0.0.1', port: proxy.port }, () => sock.write(bytes))
        let got = Buffer.alloc(0)
        const timer = setTimeout(() => sock.destroy(), 5000)
        sock.on('data', (d) => {
          got = Buffer.concat([got, d])
          if (until(got)) sock.destroy()
        })
        sock.on('close', () => {
          clearTimeout(timer)
          resolve(got)
        })
        sock.on('error', () => {})
      })
    const http = await exchange(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), () => false)
    assert.equal(http.length, 0, 'an HTTP request gets nothing back')
    const startup = startupPacket({ user: 'admin', database: 'postgres', '_pq_.future_option': 'on' })
    startup.writeUInt32BE(196610, 4)
    // NegotiateProtocolVersion, then AuthenticationOk … ReadyForQuery.
    const reply = await exchange(startup, (got) => got.includes(Buffer.from([0x5a, 0, 0, 0, 5, 0x49])))
    assert.equal(String.fromCharCode(reply[0]), 'v')
    assert.equal(reply.readUInt32BE(5), 0, 'newest minor version: 0')
    assert.equal(reply.readUInt32BE(9), 1, 'one option not understood')
    assert.ok(reply.includes(Buffer.from('_pq_.future_option\0')))
    const afterV = 1 + reply.readUInt32BE(1)
    assert.equal(String.fromCharCode(reply[afterV]), 'R')
    assert.equal(reply.readUInt32BE(afterV + 5), 0, 'AuthenticationOk')
    const r = await psql(`host=127.0.0.1 port=${proxy.port} user=admin dbname=postgres`, 'select 3')
    assert.equal(r.stdout.trim(), '3')
  })

  test('a client killed mid-query: its session ends and the proxy carries on', async () => {
    let pid = 0
    const running = run(PSQL, [`host=127.0.0.1 port=${proxy.port} user=admin dbname=postgres`, '-X', '-c', 'select pg_sleep(30)'], { onSpawn: (p) => (pid = p) })
    await waitFor('the session to open', () => proxy.stats().active >= 1)
    process.kill(pid, 'SIGKILL')
    await running
    await waitFor('the session to close', () => proxy.stats().active === 0)
    const r = await psql(`host=127.0.0.1 port=${proxy.port} user=admin dbname=postgres`, 'select 7')
    assert.equal(r.stdout.trim(), '7')
  })
})

describe('proxy: clients in other languages, and pgbench', () => {
  let proxy: Proxy
  let dir: string
  before(async () => {
    proxy = await startProxy(upstream(stack()))
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dsql-proxy-clients-'))
  })
  after(async () => {
    await proxy?.close(1000)
    fs.rmSync(dir, { recursive: true, force: true })
  })

  test("Python's psycopg (libpq) with no password and no TLS settings", async () => {
    const s = stack()
    const since = s.gate.log.length
    const program = path.join(dir, 'check.py')
    fs.writeFileSync(program, `
import sys, psycopg
with psycopg.connect(host="127.0.0.1", port=int(sys.argv[1]), user="admin", dbname="postgres") as conn:
    row = conn.execute("${INFO_QUERY}").fetchone()
    n = conn.execute("select %s::int + %s::int", (40, 2)).fetchone()[0]
    print(row[0], row[1], n)
`)
    const r = await run('python3', [program, String(proxy.port)], { env: { ...CLEAN_ENV, PYTHONPATH: process.env.PYTHONPATH ?? '' } })
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stdout.trim(), 'postgres admin 42')
    const rec = startups(s, since)[0]
    assert.equal(rec.sni, s.host)
    assert.equal(rec.tokenCheck?.action, 'DbConnectAdmin')
  })

  test('a Java program on the PostgreSQL JDBC driver with no password and no TLS settings', async () => {
    const s = stack()
    const since = s.gate.log.length
    const program = path.join(dir, 'Check.java')
    fs.writeFileSync(program, `
import java.sql.*;
public class Check {
  public static void main(String[] args) throws Exception {
    try (Connection c = DriverManager.getConnection("jdbc:postgresql://127.0.0.1:" + args[0] + "/postgres?user=iam_user")) {
      try (ResultSet rs = c.createStatement().executeQuery("${INFO_QUERY}")) { rs.next(); System.out.print(rs.getString(1) + " " + rs.getString(2)); }
      try (PreparedStatement ps = c.prepareStatement("select ?::int + ?::int")) {
        ps.setInt(1, 40); ps.setInt(2, 2);
        try (ResultSet rs = ps.executeQuery()) { rs.next(); System.out.println(" " + rs.getInt(1)); }
      }
    }
  }
}
`)
    const r = await run('java', ['-cp', '/usr/share/java/postgresql.jar', program, String(proxy.port)], { timeoutMs: 60_000 })
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stdout.trim(), `postgres ${s.users.iam.user} 42`)
    const rec = startups(s, since)[0]
    assert.equal(rec.sni, s.host)
    assert.equal(rec.tokenCheck?.action, 'DbConnect')
  })

  test('pgbench in extended mode through the proxy: every transaction succeeds', async () => {
    const pgbench = '/usr/lib/postgresql/15/bin/pgbench'
    const conn = ['-h', '127.0.0.1', '-p', String(proxy.port), '-U', 'admin']
    const init = await run(pgbench, ['-i', '-s', '1', '-q', ...conn, 'postgres'], { timeoutMs: 60_000 })
    assert.equal(init.code, 0, init.stderr)
    const r = await run(pgbench, ['-n', '-S', '-M', 'extended', '-c', '4', '-t', '200', ...conn, 'postgres'], { timeoutMs: 60_000 })
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stdout, /number of transactions actually processed: 800\/800/)
    assert.match(r.stdout, /number of failed transactions: 0/)
  })
})

describe('proxy: local access control and limits', () => {
  test('a non-loopback listen address is refused, and needs a local password even when allowed', async () => {
    const s = stack()
    const e = await rejectsWith(startProxy(upstream(s, { listen: '0.0.0.0:0', check: false })), 'INVALID_CONFIG')
    assert.match(e.message, /loopback/)
    await rejectsWith(startProxy(upstream(s, { listen: '0.0.0.0:0', allowNonLoopback: true, check: false })), 'INVALID_CONFIG')
  })

  test('with a local password, clients must send it; the wrong one gets 28P01 and no upstream connection', async () => {
    const s = stack()
    const proxy = await startProxy(upstream(s, { localPassword: 'local-secret-1' }))
    try {
      const since = s.gate.log.length
      const bad = new pg.Client({ host: '127.0.0.1', port: proxy.port, user: 'admin', database: 'postgres', password: 'wrong' })
      await rejectsWith(bad.connect(), '28P01')
      assert.equal(startups(s, since).length, 0)
      const good = new pg.Client({ host: '127.0.0.1', port: proxy.port, user: 'admin', database: 'postgres', password: 'local-secret-1' })
      await good.connect()
      assert.equal((await good.query('select 1 as one')).rows[0].one, 1)
      await good.end()
    } finally {
      await proxy.close(1000)
    }
  })

  test('maxClients: one more client than allowed is answered with 53300', async () => {
    const s = stack()
    const proxy = await startProxy(upstream(s, { maxClients: 2 }))
    const clients = [0, 1].map(() => new pg.Client({ host: '127.0.0.1', port: proxy.port, user: 'admin', database: 'postgres' }))
    try {
      await Promise.all(clients.map((c) => c.connect()))
      const third = new pg.Client({ host: '127.0.0.1', port: proxy.port, user: 'admin', database: 'postgres' })
      await rejectsWith(third.connect(), '53300')
      await clients[0].end()
      await waitFor('a slot to free', () => proxy.stats().active === 1)
      const fourth = new pg.Client({ host: '127.0.0.1', port: proxy.port, user: 'admin', database: 'postgres' })
      await fourth.connect()
      await fourth.end()
    } finally {
      await Promise.all(clients.map((c) => c.end().catch(() => {})))
      await proxy.close(1000)
    }
  })

  test('a unix socket with mode 0600 that psql reaches by directory', async () => {
    const s = stack()
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dsql-proxy-sock-'))
    const proxy = await startProxy(upstream(s, { unixSocketDir: dir }))
    try {
      assert.equal(proxy.socketPath, path.join(dir, `.s.PGSQL.${proxy.port}`))
      assert.equal(fs.statSync(proxy.socketPath!).mode & 0o777, 0o600)
      const r = await psql(`host=${dir} port=${proxy.port} user=admin dbname=postgres`, 'select current_user')
      assert.equal(r.code, 0, r.stderr)
      assert.equal(r.stdout.trim(), 'admin')
    } finally {
      await proxy.close(1000)
      assert.equal(fs.existsSync(path.join(dir, `.s.PGSQL.${proxy.port}`)), false, 'the socket is removed')
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  test('an unreachable tunnel fails the start (ECONNREFUSED); without the check, clients see 08001 and our message', async () => {
    const s = stack()
    const closed = await new Promise<number>((resolve) => {
      const srv = net.createServer().listen(0, '127.0.0.1', () => {
        const port = (srv.address() as net.AddressInfo).port
        srv.close(() => resolve(port))
      })
    })
    await rejectsWith(startProxy(upstream(s, { port: closed })), 'ECONNREFUSED')
    const proxy = await startProxy(upstream(s, { port: closed, check: false }))
    try {
      const r = await psql(`host=127.0.0.1 port=${proxy.port} user=admin dbname=postgres`, 'select 1')
      assert.match(r.stderr, /FATAL:  dsql-tunnel proxy: connection to 127\.0\.0\.1:\d+ was refused/)
      assert.match(r.stderr, /DETAIL:  SQLSTATE 08001; dsql-tunnel code ECONNREFUSED/)
      const client = new pg.Client({ host: '127.0.0.1', port: proxy.port, user: 'admin', database: 'postgres' })
      await rejectsWith(client.connect(), '08001')
      assert.equal(proxy.stats().failed, 2)
    } finally {
      await proxy.close(1000)
    }
  })

  test('a refused SNI reaches the client as 08P01 with our message; a certificate for another name fails the start', async () => {
    const s = stack()
    // A front door for another cluster: TLS completes, the start-up is refused for the unknown SNI.
    const other = await s.startGate({ host: s.wrongHost, tokenAuth: true })
    const proxy = await startProxy(upstream(s, { port: other.port }))
    try {
      const client = new pg.Client({ host: '127.0.0.1', port: proxy.port, user: 'admin', database: 'postgres' })
      const e = await rejectsWith(client.connect(), '08P01')
      assert.match(e.message, /SNI/)
      assert.equal(other.gate.log.at(-1)?.outcome, 'refused-unknown-sni')
    } finally {
      await proxy.close(1000)
      await other.stop()
    }
    const wrongCert = await s.startGate({ cert: 'wrong-name', tokenAuth: true })
    try {
      await rejectsWith(startProxy(upstream(s, { port: wrongCert.port })), 'TLS_NAME_MISMATCH')
    } finally {
      await wrongCert.stop()
    }
  })

  test('a static token for admin used by another role is refused before dialling, as 28000 TOKEN_ACTION_MISMATCH', async () => {
    const s = stack()
    const proxy = await startProxy(upstream(s, { password: s.presignToken({ user: 'admin' }), credentials: undefined }))
    try {
      const r = await psql(`host=127.0.0.1 port=${proxy.port} user=${s.users.iam.user} dbname=postgres`, 'select 1')
      assert.match(r.stderr, /DETAIL:  SQLSTATE 28000; dsql-tunnel code TOKEN_ACTION_MISMATCH/)
      assertNoSecrets(s, r.stderr)
      const ok = await psql(`host=127.0.0.1 port=${proxy.port} user=admin dbname=postgres`, 'select 5')
      assert.equal(ok.stdout.trim(), '5', ok.stderr)
    } finally {
      await proxy.close(1000)
    }
  })

  test('close(): stops accepting, lets sessions finish within the grace period, closes the rest; nothing is left listening', async () => {
    const s = stack()
    const proxy = await startProxy(upstream(s))
    const idle = new pg.Client({ host: '127.0.0.1', port: proxy.port, user: 'admin', database: 'postgres' })
    await idle.connect()
    idle.on('error', () => {})
    const ended = new Promise((resolve) => idle.once('end', resolve))
    const busy = new pg.Client({ host: '127.0.0.1', port: proxy.port, user: 'admin', database: 'postgres' })
    await busy.connect()
    // A query that finishes inside the grace period, on a session that then ends by itself.
    const finishing = busy.query('select pg_sleep(0.3) as slept').then(async (r) => {
      await busy.end()
      return r
    })
    await new Promise((r) => setTimeout(r, 50))
    const started = Date.now()
    const forced = await proxy.close(1500)
    assert.equal(forced, 1, 'the idle session was closed by force')
    assert.ok(Date.now() - started >= 1400 && Date.now() - started < 6000)
    assert.equal((await finishing).rows.length, 1)
    await ended
    assert.equal(await listening(proxy.port), false)
  })
})


/** VmRSS of a process, in KiB. */
function rssKib(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m ? Number(m[1]) : NaN
}

function startupPacket(params: Record<string, string>): Buffer {
  const body = Buffer.concat([...Object.entries(params).flatMap(([k, v]) => [Buffer.from(`${k}\0${v}\0`)]), Buffer.from([0])])
  const head = Buffer.alloc(8)
  head.writeUInt32BE(8 + body.length, 0)
  head.writeUInt32BE(196608, 4)
  return Buffer.concat([head, body])
}

function queryMessage(sql: string): Buffer {
  const body = Buffer.from(`${sql}\0`)
  const head = Buffer.alloc(5)
  head.write('Q', 0)
  head.writeUInt32BE(4 + body.length, 1)
  return Buffer.concat([head, body])
}

describe('dsql-tunnel proxy (the command)', () => {
  function cliEnv(s: Stack, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
    const e = s.envVerified()
    return {
      ...CLEAN_ENV, HOSTNAME: e.HOSTNAME, PGHOSTADDR: e.PGHOSTADDR, PGPORT: e.PGPORT, PGSSLROOTCERT: e.PGSSLROOTCERT,
      AWS_ACCESS_KEY_ID: s.aws.accessKeyId, AWS_SECRET_ACCESS_KEY: s.aws.secretAccessKey, AWS_SESSION_TOKEN: s.aws.sessionToken,
      AWS_CONFIG_FILE: '/nonexistent/aws-config', AWS_SHARED_CREDENTIALS_FILE: '/nonexistent/aws-credentials', AWS_EC2_METADATA_DISABLED: 'true',
      ...extra,
    }
  }

  function startCli(env: NodeJS.ProcessEnv, args: string[] = []) {
    const child = spawn(process.execPath, [path.join(ROOT, 'bin/dsql-tunnel.js'), 'proxy', '--listen', '127.0.0.1:0', ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] })
    const out = { stdout: '', stderr: '' }
    child.stdout.on('data', (d) => (out.stdout += d))
    child.stderr.on('data', (d) => (out.stderr += d))
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)))
    const ready = async () => {
      await waitFor('the ready line', () => /psql "host=127\.0\.0\.1 port=\d+/.test(out.stdout), 15_000)
      return Number(/port=(\d+)/.exec(out.stdout)![1])
    }
    return { child, out, exited, ready }
  }

  test('a slow reader of a large result: the proxy stops reading upstream and its RSS stays bounded', async (t) => {
    const s = stack()
    const { child, exited, ready } = startCli(cliEnv(s))
    try {
      const port = await ready()
      const before = rssKib(child.pid!)
      const sock = net.connect({ host: '127.0.0.1', port })
      let received = 0
      sock.on('data', (d) => (received += d.length))
      sock.on('error', () => {})
      await new Promise((r) => sock.once('connect', r))
      // About 200 MB of rows, read only while the socket flows.
      sock.write(Buffer.concat([startupPacket({ user: 'admin', database: 'postgres' }), queryMessage("select repeat('x', 1000) from generate_series(1, 200000)")]))
      await waitFor('the first rows', () => received > 1_000_000)
      sock.pause()
      await new Promise((r) => setTimeout(r, 1500))
      const stalled = received
      const peak = rssKib(child.pid!)
      await new Promise((r) => setTimeout(r, 1000))
      assert.equal(received, stalled, 'nothing arrives while the client does not read')
      const after = rssKib(child.pid!)
      t.diagnostic(`proxy RSS ${before} KiB before, ${peak} / ${after} KiB with ${stalled} bytes delivered of ~200 MB`)
      assert.ok(after - before < 32 * 1024, `RSS grew from ${before} to ${after} KiB (peak ${peak})`)
      sock.resume()
      await waitFor('more rows after resuming', () => received > stalled + 1_000_000)
      sock.destroy()
      child.kill('SIGTERM')
      assert.equal(await exited, 0)
    } finally {
      child.kill('SIGKILL')
    }
  })

  test('prints one ready line, serves psql, logs sessions without secrets under DEBUG, exits 0 on SIGTERM', async () => {
    const s = stack()
    const { child, out, exited, ready } = startCli(cliEnv(s, { DEBUG: 'dsql-tunnel' }))
    try {
      const port = await ready()
      const stdout = out.stdout
      assert.match(stdout, /AWS identity/)
      const r = await psql(`host=127.0.0.1 port=${port} user=admin dbname=postgres`, INFO_QUERY)
      assert.equal(r.code, 0, r.stderr)
      assert.match(r.stdout, /^postgres\|admin\|/)
      await waitFor('the session log', () => /proxy-session-closed .*reason=client-closed/.test(out.stderr))
      assert.match(out.stderr, /proxy-upstream-ready .*token=DbConnectAdmin .*tlsMs=/)
      assert.match(out.stderr, /bytesToClient=\d+/)
      child.kill('SIGTERM')
      assert.equal(await exited, 0, out.stderr)
      assert.equal(await listening(port), false)
      assertNoSecrets(s, out.stdout + out.stderr)
    } finally {
      child.kill('SIGKILL')
    }
  })

  test('SIGINT with a session open: no new connections, the grace period, then the session is closed; exit 0', async () => {
    const s = stack()
    const { child, out, exited, ready } = startCli(cliEnv(s), ['--grace', '0.5'])
    try {
      const port = await ready()
      const client = new pg.Client({ host: '127.0.0.1', port, user: 'admin', database: 'postgres' })
      client.on('error', () => {})
      await client.connect()
      const ended = new Promise((resolve) => client.once('end', resolve))
      child.kill('SIGINT')
      await waitFor('the listener to close', async () => !(await listening(port)))
      assert.equal(await exited, 0, out.stderr)
      await ended
      assert.match(out.stderr, /1 session closed/)
    } finally {
      child.kill('SIGKILL')
    }
  })

  test('a broken tunnel: the proxy refuses to start with the code and the fix; exit 1', async () => {
    const s = stack()
    const closed = await new Promise<number>((resolve) => {
      const srv = net.createServer().listen(0, '127.0.0.1', () => {
        const port = (srv.address() as net.AddressInfo).port
        srv.close(() => resolve(port))
      })
    })
    const { out, exited } = startCli(cliEnv(s, { PGPORT: String(closed) }))
    assert.equal(await exited, 1)
    assert.match(out.stderr, /ECONNREFUSED/)
    assert.match(out.stderr, /Fix:/)
    assert.equal(out.stdout, '')
  })

  test('--generate-local-password: the ready line carries it, and clients without it are refused', async () => {
    const s = stack()
    const { child, out, exited, ready } = startCli(cliEnv(s), ['--generate-local-password'])
    try {
      const port = await ready()
      const conninfo = /psql "([^"]+)"/.exec(out.stdout)![1]
      assert.match(conninfo, /password=\S{16,}/)
      const ok = await psql(conninfo, 'select 1')
      assert.equal(ok.code, 0, ok.stderr)
      const refused = await psql(`host=127.0.0.1 port=${port} user=admin dbname=postgres`, 'select 1', ['-w'])
      assert.notEqual(refused.code, 0)
      assert.match(refused.stderr, /password/)
      child.kill('SIGTERM')
      assert.equal(await exited, 0)
    } finally {
      child.kill('SIGKILL')
    }
  })

  test('a non-loopback --listen is refused (exit 1) unless allowed with a local password', async () => {
    const s = stack()
    const { out, exited } = startCli(cliEnv(s), ['--listen', '0.0.0.0:0', '--skip-check'])
    assert.equal(await exited, 1)
    assert.match(out.stderr, /INVALID_CONFIG: .*loopback/)
  })
})
