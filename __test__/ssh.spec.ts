// The in-process SSH tunnel (`tunnel` option): a real OpenSSH sshd started here on loopback, in
// front of the DSQL-like gate (SNI and IAM tokens checked), host keys and client keys made per run.
import assert from 'node:assert/strict'
import { execFileSync, spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import fs from 'node:fs'
import { createRequire } from 'node:module'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { after, before, describe, test } from 'node:test'
import { Client, Pool, resolveConfig, type ClientConfig } from '../index.js'
import { rejectsWith, useStack, withEnv, type Stack } from './helpers.ts'
import { Sshd, keygen } from './fixture/sshd.ts'
import { freePort } from './fixture/util.ts'

const stack = useStack({ tokenAuth: true })
// node-postgres, as a plain client of the proxy (no typings installed for it).
interface PgClient { connect(): Promise<void>; query(sql: string): Promise<{ rows: unknown[] }>; end(): Promise<void> }
const pg = createRequire(import.meta.url)('pg') as { Client: new (o: object) => PgClient }
const BIN = fileURLToPath(new URL('../bin/dsql-tunnel.js', import.meta.url))
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

let dir = ''
let sshd: Sshd
let knownHosts = ''
let plainKey = ''
let passKey = ''
let agentKey = ''
const PASSPHRASE = 'correct horse 7'
const started: Sshd[] = []

/** Client options whose TCP rides the SSH tunnel; tokens from the stack's AWS identity. */
function viaSsh(s: Stack, ssh: Record<string, unknown> = {}, extra: ClientConfig & Record<string, unknown> = {}) {
  return {
    host: s.host,
    hostaddr: '127.0.0.1',
    port: s.gatePort,
    user: s.users.admin.user,
    sslrootcert: s.caFile,
    credentials: { ...s.aws },
    tunnel: { ssh: { host: '127.0.0.1', port: sshd.port, user: 'root', identityFile: plainKey, knownHostsFile: knownHosts, agent: false, ...ssh } },
    ...extra,
  } as ClientConfig & Record<string, unknown>
}

/** Ports this process listens on now (its sockets' inodes in /proc/net/tcp*): the tunnel opens none. */
function listeningPorts(): Set<number> {
  const mine = new Set<string>()
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/self/fd/${fd}`))
      if (m) mine.add(m[1])
    } catch {
      // Closed while we looked.
    }
  }
  const out = new Set<number>()
  for (const f of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of fs.readFileSync(f, 'utf8').split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/)
      if (cols[3] === '0A' && mine.has(cols[9])) out.add(parseInt(cols[1].split(':')[1], 16))
    }
  }
  return out
}

/** TCP connections from this machine to 127.0.0.1:`port` that are established now. */
function established(port: number): number {
  const hex = port.toString(16).toUpperCase().padStart(4, '0')
  let n = 0
  for (const line of fs.readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const cols = line.trim().split(/\s+/)
    if (cols.length > 3 && cols[2] === `0100007F:${hex}` && cols[3] === '01') n++
  }
  return n
}

describe('ssh tunnel', () => {
  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dsql-ssh-'))
    plainKey = path.join(dir, 'id_plain')
    passKey = path.join(dir, 'id_pass')
    agentKey = path.join(dir, 'id_agent')
    const authorized = [keygen(plainKey), keygen(passKey, PASSPHRASE), keygen(agentKey)]
    const s = stack()
    sshd = new Sshd(dir, await freePort(), `127.0.0.1:${s.gatePort}`, authorized)
    started.push(sshd)
    await sshd.start()
    knownHosts = path.join(dir, 'known_hosts')
    fs.writeFileSync(knownHosts, sshd.knownHostsLine() + '\n')
    // A home with the usual files, for the ssh:// form (defaults: ~/.ssh/id_ed25519, known_hosts).
    const home = path.join(dir, 'home')
    fs.mkdirSync(path.join(home, '.ssh'), { recursive: true })
    fs.copyFileSync(plainKey, path.join(home, '.ssh', 'id_ed25519'))
    fs.writeFileSync(path.join(home, '.ssh', 'known_hosts'), `# made by ssh.spec\n${sshd.knownHostsLine()}\n`)
  })

  after(async () => {
    for (const d of started) await d.kill()
    if (dir) fs.rmSync(dir, { recursive: true, force: true })
  })

  test('a pool through ssh://root@127.0.0.1:<port>: SNI and a token reach the gate, nothing new listens', async () => {
    const s = stack()
    const home = path.join(dir, 'home')
    await withEnv({ HOME: home, SSH_AUTH_SOCK: undefined }, async () => {
      const before = listeningPorts()
      const opts = viaSsh(s, {}, { tunnel: `ssh://root@127.0.0.1:${sshd.port}`, max: 4 })
      assert.equal(resolveConfig(opts).tunnel, `ssh://root@127.0.0.1:${sshd.port}`)
      const pool = new Pool(opts)
      try {
        const seen = s.gate.log.length
        const rows = await Promise.all(Array.from({ length: 8 }, (_, i) => pool.query('select $1::int as i', [i])))
        assert.deepEqual(rows.map((r) => r.rows[0].i), [0, 1, 2, 3, 4, 5, 6, 7])
        const records = s.gate.log.slice(seen).filter((r) => r.kind === 'startup')
        assert.ok(records.length >= 1)
        for (const r of records) {
          assert.equal(r.sni, s.host)
          assert.equal(r.tokenCheck?.ok, true)
        }
        const now = listeningPorts()
        assert.deepEqual([...now].filter((p) => !before.has(p)), [], 'the tunnel opened no listening port')
      } finally {
        await pool.end()
      }
    })
  })

  test('DSQL_TUNNEL is read, and resolveConfig shows it without secrets', async () => {
    const s = stack()
    await withEnv({ DSQL_TUNNEL: `ssh://ops@127.0.0.1:${sshd.port}` }, async () => {
      const r = resolveConfig({ host: s.host, hostaddr: '127.0.0.1' })
      assert.equal(r.tunnel, `ssh://ops@127.0.0.1:${sshd.port}`)
      assert.equal(r.sources.tunnel, 'environment (DSQL_TUNNEL)')
    })
    const r = resolveConfig({ host: s.host, tunnel: { ssh: { host: 'b', passphrase: 'hunter2-secret' } } } as ClientConfig)
    assert.equal(r.tunnel, 'ssh://b')
    assert.ok(!JSON.stringify(r).includes('hunter2-secret'))
    assert.throws(() => resolveConfig({ host: s.host, tunnel: 'bastion:22' } as ClientConfig), { code: 'INVALID_CONFIG' })
  })

  test('an unknown host key is refused with its fingerprint and the line to add', async () => {
    const s = stack()
    const empty = path.join(dir, 'known_hosts_empty')
    fs.writeFileSync(empty, '')
    const e = await rejectsWith(new Client(viaSsh(s, { knownHostsFile: empty })).connect(), 'SSH_HOST_KEY_UNKNOWN')
    const fingerprint = execFileSync('ssh-keygen', ['-lf', `${sshd.hostKey}.pub`], { encoding: 'utf8' }).split(' ')[1]
    assert.match(fingerprint, /^SHA256:/)
    assert.ok(e.message.includes(fingerprint), e.message)
    assert.ok(e.message.includes(sshd.knownHostsLine()), e.message)
  })

  test('hashed known_hosts entries are read', async () => {
    const s = stack()
    const hashed = path.join(dir, 'known_hosts_hashed')
    fs.writeFileSync(hashed, sshd.knownHostsLine() + '\n')
    execFileSync('ssh-keygen', ['-H', '-f', hashed], { stdio: 'ignore' })
    assert.ok(fs.readFileSync(hashed, 'utf8').startsWith('|1|'))
    const c = new Client(viaSsh(s, { knownHostsFile: hashed }))
    await c.connect()
    try {
      assert.deepEqual((await c.query('select 1 as one')).rows, [{ one: 1 }])
    } finally {
      await c.end()
    }
  })

  test('a changed host key is refused and nothing is sent', async () => {
    const s = stack()
    const other = fs.mkdtempSync(path.join(dir, 'impostor-'))
    const impostor = new Sshd(other, await freePort(), `127.0.0.1:${s.gatePort}`, [fs.readFileSync(`${plainKey}.pub`, 'utf8')])
    started.push(impostor)
    await impostor.start()
    // known_hosts records the real bastion's key for the impostor's address.
    const lying = path.join(dir, 'known_hosts_changed')
    fs.writeFileSync(lying, `[127.0.0.1]:${impostor.port} ${sshd.hostKeyPub}\n`)
    const seen = s.gate.log.length
    const e = await rejectsWith(
      new Client(viaSsh(s, { port: impostor.port, knownHostsFile: lying })).connect(),
      'SSH_HOST_KEY_CHANGED',
    )
    assert.ok(e.message.includes(`${lying}:1`), e.message)
    assert.equal(s.gate.log.length, seen, 'nothing reached the gate')
    assert.doesNotMatch(impostor.log, /Accepted publickey/)
    await impostor.kill()
  })

  test('a passphrase-protected key: refused without the passphrase, accepted with it', async () => {
    const s = stack()
    const e = await rejectsWith(new Client(viaSsh(s, { identityFile: passKey })).connect(), 'SSH_AUTH_FAILED')
    assert.match(e.message, /passphrase/)
    await rejectsWith(new Client(viaSsh(s, { identityFile: passKey, passphrase: 'wrong' })).connect(), 'SSH_AUTH_FAILED')
    // The passphrase may be a function (asked for each new connection), as a password may.
    let asked = 0
    const viaFunction = new Client(viaSsh(s, { identityFile: passKey, passphrase: async () => (asked++, PASSPHRASE) }))
    await viaFunction.connect()
    assert.deepEqual((await viaFunction.query('select 1 as one')).rows, [{ one: 1 }])
    await viaFunction.end()
    assert.equal(asked, 1)
    const c = new Client(viaSsh(s, { identityFile: passKey, passphrase: PASSPHRASE }))
    await c.connect()
    try {
      assert.deepEqual((await c.query('select 2 as two')).rows, [{ two: 2 }])
    } finally {
      await c.end()
    }
    const unauthorized = path.join(dir, 'id_stranger')
    keygen(unauthorized)
    await rejectsWith(new Client(viaSsh(s, { identityFile: unauthorized })).connect(), 'SSH_AUTH_FAILED')
  })

  test('ssh-agent authentication', async () => {
    const s = stack()
    const sock = path.join(dir, 'agent.sock')
    const agent = spawn('ssh-agent', ['-D', '-a', sock], { stdio: 'ignore' })
    try {
      const deadline = Date.now() + 5000
      while (!fs.existsSync(sock) && Date.now() < deadline) await sleep(20)
      execFileSync('ssh-add', [agentKey], { env: { ...process.env, SSH_AUTH_SOCK: sock }, stdio: 'ignore' })
      // No identity file at all: only the agent's key can get in.
      const c = new Client(viaSsh(s, { identityFile: undefined, agent: sock }))
      await withEnv({ HOME: path.join(dir, 'nohome') }, () => c.connect())
      try {
        assert.deepEqual((await c.query('select 3 as three')).rows, [{ three: 3 }])
      } finally {
        await c.end()
      }
      const agentFingerprint = execFileSync('ssh-keygen', ['-lf', `${agentKey}.pub`], { encoding: 'utf8' }).split(' ')[1]
      assert.ok(sshd.log.includes(agentFingerprint), 'sshd accepted the agent key')
    } finally {
      agent.kill('SIGTERM')
    }
  })

  test('the bastion cannot reach the target: SSH_CHANNEL_REFUSED', async () => {
    const s = stack()
    // PermitOpen names only the gate.
    await rejectsWith(new Client(viaSsh(s, {}, { port: s.pgPort })).connect(), 'SSH_CHANNEL_REFUSED')
  })

  test('100 concurrent connections over one session', async () => {
    const s = stack()
    const before = (sshd.log.match(/Accepted publickey/g) ?? []).length
    const opts = viaSsh(s, { identityFile: plainKey })
    const clients = Array.from({ length: 100 }, () => new Client(opts))
    try {
      await Promise.all(clients.map((c) => c.connect()))
      const r = await Promise.all(clients.map((c, i) => c.query('select $1::int as i', [i])))
      assert.deepEqual(r.map((x) => x.rows[0].i), Array.from({ length: 100 }, (_, i) => i))
    } finally {
      await Promise.all(clients.map((c) => c.end()))
    }
    const logins = (sshd.log.match(/Accepted publickey/g) ?? []).length - before
    assert.ok(logins <= 1, `${logins} SSH logins for 100 connections`)
  })

  test('megabytes each way and 200 pipelined queries: every byte arrives, in order', async () => {
    const s = stack()
    const c = new Client(viaSsh(s))
    await c.connect()
    try {
      // Writes larger than an SSH packet (32 KiB), and a result of many packets.
      const big = Array.from({ length: 3 * 1024 * 1024 }, (_, i) => String.fromCharCode(97 + ((i * 7) % 26))).join('')
      const echoed = await c.query('select $1::text as t, md5($1::text) as h', [big])
      assert.equal(echoed.rows[0].h, createHash('md5').update(big).digest('hex'), 'the server got every byte')
      assert.ok(echoed.rows[0].t === big, 'the text came back unchanged')
      const rows = await c.query("select g as i, repeat('x', 100) as pad from generate_series(1, 50000) g")
      assert.equal(rows.rows.length, 50000)
      assert.deepEqual([rows.rows[0].i, rows.rows[49999].i, rows.rows[49999].pad.length], [1, 50000, 100])
      const r = await Promise.all(Array.from({ length: 200 }, (_, i) => c.query('select $1::int as i', [i])))
      assert.deepEqual(r.map((x) => x.rows[0].i), Array.from({ length: 200 }, (_, i) => i))
    } finally {
      await c.end()
    }
  })

  test('a cancel goes through the tunnel (the server reports 57014)', async () => {
    const s = stack()
    const c = new Client(viaSsh(s))
    await c.connect()
    try {
      const ac = new AbortController()
      const t = Date.now()
      const p = rejectsWith(c.query('select pg_sleep(20)', [], { signal: ac.signal }), 'ABORT_ERR')
      setTimeout(() => ac.abort(), 200)
      const err = await p
      assert.equal(err.sqlstate, '57014')
      assert.ok(Date.now() - t < 10_000)
      assert.deepEqual((await c.query('select 4 as four')).rows, [{ four: 4 }])
    } finally {
      await c.end()
    }
  })

  test('sshd killed and restarted under load: in-flight queries reject with a tunnel code, later ones succeed', async () => {
    const s = stack()
    const pool = new Pool(viaSsh(s, {}, { max: 6, connectionTimeoutMillis: 8000 }))
    const codes = new Map<string, number>()
    let ok = 0
    let stop = false
    const worker = async () => {
      for (let i = 0; i < 2000 && !stop; i++) {
        try {
          await pool.query('select pg_sleep(0.02)')
          ok++
        } catch (e) {
          const code = (e as { code?: string }).code ?? 'none'
          codes.set(code, (codes.get(code) ?? 0) + 1)
          await sleep(20)
        }
      }
    }
    pool.on('error', () => {})
    try {
      const workers = Array.from({ length: 6 }, worker)
      await sleep(800)
      const okBefore = ok
      assert.ok(okBefore > 0, 'queries ran before the kill')
      await sshd.kill()
      await sleep(500)
      await sshd.start()
      const restarted = Date.now()
      const okAtRestart = ok
      while (ok < okAtRestart + 20 && Date.now() - restarted < 15_000) await sleep(50)
      stop = true
      await Promise.all(workers)
      assert.ok(ok >= okAtRestart + 20, `queries succeed after the restart (${ok - okAtRestart} did); codes ${JSON.stringify([...codes])}`)
      assert.ok((codes.get('TUNNEL_LOST') ?? 0) >= 1, `in-flight queries failed with TUNNEL_LOST: ${JSON.stringify([...codes])}`)
      for (const code of codes.keys()) {
        assert.ok(['TUNNEL_LOST', 'SSH_CONNECT_FAILED', 'CONNECT_TIMEOUT'].includes(code), `unexpected code ${code}`)
      }
    } finally {
      stop = true
      await pool.end()
    }
  })

  test('~/.ssh/config: a Host alias with HostName, Port, User, IdentityFile, and a ProxyCommand', async () => {
    const s = stack()
    const home = path.join(dir, 'home-config')
    fs.mkdirSync(path.join(home, '.ssh'), { recursive: true })
    fs.copyFileSync(plainKey, path.join(home, '.ssh', 'bastion_key'))
    fs.writeFileSync(path.join(home, '.ssh', 'known_hosts'), sshd.knownHostsLine() + '\n')
    const marker = path.join(dir, 'proxy-command-ran')
    // The ProxyCommand: a small relay on stdin/stdout, as `ssh -W` or an SSM session would be.
    const relay = `require('net').connect(Number(process.argv[2]), process.argv[3]).on('connect', function () { process.stdin.pipe(this); this.pipe(process.stdout) })`
    fs.writeFileSync(path.join(dir, 'relay.js'), relay)
    fs.writeFileSync(
      path.join(home, '.ssh', 'config'),
      [
        'Host db-bastion',
        '  HostName 127.0.0.1',
        `  Port ${sshd.port}`,
        '  User root',
        '  IdentityFile ~/.ssh/bastion_key',
        'Host via-proxy',
        '  HostName 127.0.0.1',
        `  Port ${sshd.port}`,
        '  User root',
        '  IdentityFile ~/.ssh/bastion_key',
        `  ProxyCommand touch ${marker}; exec ${process.execPath} ${path.join(dir, 'relay.js')} %p %h`,
        '',
      ].join('\n'),
    )
    await withEnv({ HOME: home, SSH_AUTH_SOCK: undefined }, async () => {
      for (const alias of ['db-bastion', 'via-proxy']) {
        const c = new Client(viaSsh(s, {}, { tunnel: `ssh://${alias}` }))
        await c.connect()
        try {
          assert.deepEqual((await c.query('select $1::text as via', [alias])).rows, [{ via: alias }])
        } finally {
          await c.end()
        }
      }
    })
    assert.ok(fs.existsSync(marker), 'the ProxyCommand carried the session')
  })

  test('~/.ssh/config ProxyJump (and Include): a pool through one and two jump hosts, host keys checked at every hop', async () => {
    const s = stack()
    const jumpPort = await freePort()
    // The jump host may forward to itself (for a chain of two) and to the bastion, nowhere else.
    const jump = new Sshd(fs.mkdtempSync(path.join(dir, 'jump-')), jumpPort, `127.0.0.1:${jumpPort} 127.0.0.1:${sshd.port}`, [fs.readFileSync(`${plainKey}.pub`, 'utf8')])
    started.push(jump)
    await jump.start()
    const home = path.join(dir, 'home-jump')
    const ssh = path.join(home, '.ssh')
    fs.mkdirSync(path.join(ssh, 'conf.d'), { recursive: true })
    fs.copyFileSync(plainKey, path.join(ssh, 'id_ed25519'))
    const knownHosts = path.join(ssh, 'known_hosts')
    fs.writeFileSync(
      path.join(ssh, 'config'),
      [
        'Include conf.d/*.conf',
        'Host bastion-1',
        '  HostName 127.0.0.1',
        `  Port ${sshd.port}`,
        '  User root',
        `  ProxyJump root@127.0.0.1:${jumpPort}`,
        'Host bastion-2',
        '  HostName 127.0.0.1',
        `  Port ${sshd.port}`,
        '  User root',
        '  ProxyJump jump, jump',
        '',
      ].join('\n'),
    )
    fs.writeFileSync(path.join(ssh, 'conf.d', 'jump.conf'), ['Host jump', '  HostName 127.0.0.1', `  Port ${jumpPort}`, '  User root', ''].join('\n'))
    const logins = (d: Sshd) => (d.log.match(/Accepted publickey/g) ?? []).length
    await withEnv({ HOME: home, SSH_AUTH_SOCK: undefined }, async () => {
      fs.writeFileSync(knownHosts, `${jump.knownHostsLine()}\n${sshd.knownHostsLine()}\n`)
      for (const [alias, hops] of [['bastion-1', 1], ['bastion-2', 2]] as const) {
        const [atJump, atBastion, seen] = [logins(jump), logins(sshd), s.gate.log.length]
        const pool = new Pool(viaSsh(s, {}, { tunnel: `ssh://${alias}`, max: 3 }))
        try {
          const rows = await Promise.all(Array.from({ length: 6 }, (_, i) => pool.query('select $1::int as i', [i])))
          assert.deepEqual(rows.map((r) => r.rows[0].i), [0, 1, 2, 3, 4, 5])
        } finally {
          await pool.end()
        }
        assert.equal(logins(jump) - atJump, hops, `${alias}: one login per hop at the jump host`)
        assert.equal(logins(sshd) - atBastion, 1, `${alias}: one session at the bastion for the pool`)
        const startups = s.gate.log.slice(seen).filter((r) => r.kind === 'startup')
        assert.ok(startups.length >= 1 && startups.every((r) => r.sni === s.host && r.tokenCheck?.ok === true))
      }
      // Each hop's key is checked: without the jump host's line, or the bastion's, nothing connects.
      const cases = [
        [`${sshd.knownHostsLine()}\n`, jump, `ssh://root@bastion-1`],
        [`${jump.knownHostsLine()}\n`, sshd, `ssh://bastion-1:${sshd.port}`],
      ] as const
      for (const [lines, unknown, tunnel] of cases) {
        fs.writeFileSync(knownHosts, lines)
        const e = await rejectsWith(new Client(viaSsh(s, {}, { tunnel })).connect(), 'SSH_HOST_KEY_UNKNOWN')
        assert.ok(e.message.includes(unknown.knownHostsLine()), e.message)
      }
    })
  })

  test('a session with no connections left is closed after a few seconds (pool.end() closes it)', async () => {
    const s = stack()
    // Its own sshd, so that its connections can be counted.
    const own = new Sshd(fs.mkdtempSync(path.join(dir, 'idle-')), await freePort(), `127.0.0.1:${s.gatePort}`, [fs.readFileSync(`${plainKey}.pub`, 'utf8')])
    started.push(own)
    await own.start()
    const kh = path.join(own.dir, 'known_hosts')
    fs.writeFileSync(kh, own.knownHostsLine() + '\n')
    const opts = viaSsh(s, { port: own.port, knownHostsFile: kh })
    const sessions = () => established(own.port)
    const logins = () => (own.log.match(/Accepted publickey/g) ?? []).length
    try {
      const pool = new Pool({ ...opts, max: 3 })
      await Promise.all(Array.from({ length: 6 }, () => pool.query('select 1')))
      assert.equal(sessions(), 1, 'one session for the pool')
      await pool.end()
      const deadline = Date.now() + 12_000
      while (sessions() > 0 && Date.now() < deadline) await sleep(100)
      assert.equal(sessions(), 0, 'the idle session was closed')
      const again = new Pool({ ...opts, max: 1 })
      try {
        await again.query('select 1')
      } finally {
        await again.end()
      }
      assert.equal(logins(), 2, 'a new session was opened for the new pool')
    } finally {
      await own.kill()
    }
  })

  function cliEnv(s: Stack): NodeJS.ProcessEnv {
    return {
      PATH: process.env.PATH,
      HOME: path.join(dir, 'home'),
      AWS_ACCESS_KEY_ID: s.aws.accessKeyId,
      AWS_SECRET_ACCESS_KEY: s.aws.secretAccessKey,
      AWS_SESSION_TOKEN: s.aws.sessionToken,
      AWS_CONFIG_FILE: '/nonexistent/aws-config',
      AWS_SHARED_CREDENTIALS_FILE: '/nonexistent/aws-credentials',
      AWS_EC2_METADATA_DISABLED: 'true',
    }
  }
  const cliSettings = (s: Stack) => ['--host', s.host, '--hostaddr', '127.0.0.1', '--port', String(s.gatePort), '--sslrootcert', s.caFile,
    '--tunnel', `ssh://root@127.0.0.1:${sshd.port}`]

  test('dsql-tunnel check --tunnel ssh://…', async () => {
    const s = stack()
    const child = spawn(process.execPath, [BIN, 'check', ...cliSettings(s), '--json'], { env: cliEnv(s), stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    child.stdout.on('data', (d) => (out += d))
    child.stderr.on('data', (d) => (err += d))
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000)
    const code = await new Promise<number | null>((r) => child.on('exit', r))
    clearTimeout(timer)
    assert.equal(code, 0, `${out}\n${err}`)
    assert.equal(JSON.parse(out).ok, true, out)
  })

  test('dsql-tunnel doctor --tunnel ssh://…: the tunnel step shows the host key, the auth method and a round trip', async () => {
    const s = stack()
    const child = spawn(process.execPath, [BIN, 'doctor', ...cliSettings(s), '--json'], { env: cliEnv(s), stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.on('data', (d) => (out += d))
    child.stderr.on('data', (d) => (out += d))
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000)
    const code = await new Promise<number | null>((r) => child.on('exit', r))
    clearTimeout(timer)
    const report = JSON.parse(out)
    assert.equal(code, 0, out)
    assert.equal(report.ok, true, out)
    const tunnel = report.steps.find((x: { id: string }) => x.id === 'tcp')
    const fingerprint = execFileSync('ssh-keygen', ['-lf', `${sshd.hostKey}.pub`], { encoding: 'utf8' }).split(' ')[1]
    assert.equal(tunnel.facts.hostKey, fingerprint)
    assert.match(tunnel.facts.auth, /^publickey .*id_ed25519$/)
    assert.ok(tunnel.facts.roundTripMillis > 0)
    assert.equal(report.steps.find((x: { id: string }) => x.id === 'auth').status, 'pass')
  })

  test('dsql-tunnel proxy --tunnel ssh://…: a plain PostgreSQL client through the proxy and the tunnel', async () => {
    const s = stack()
    const child = spawn(process.execPath, [BIN, 'proxy', '--listen', '127.0.0.1:0', ...cliSettings(s)], { env: cliEnv(s), stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.on('data', (d) => (out += d))
    child.stderr.on('data', (d) => (out += d))
    const exited = new Promise<number | null>((r) => child.on('exit', r))
    try {
      const deadline = Date.now() + 15_000
      while (!/port=\d+/.test(out) && Date.now() < deadline && child.exitCode === null) await sleep(50)
      const port = Number(/port=(\d+)/.exec(out)?.[1])
      assert.ok(port > 0, out)
      const seen = s.gate.log.length
      const c = new pg.Client({ host: '127.0.0.1', port, user: 'admin', database: 'postgres' })
      await c.connect()
      try {
        assert.deepEqual((await c.query('select 5 as five')).rows, [{ five: 5 }])
      } finally {
        await c.end()
      }
      const records = s.gate.log.slice(seen).filter((r) => r.kind === 'startup')
      assert.ok(records.length >= 1 && records.every((r) => r.sni === s.host && r.tokenCheck?.ok === true))
      child.kill('SIGTERM')
      assert.equal(await exited, 0)
    } finally {
      child.kill('SIGKILL')
    }
  })
})
