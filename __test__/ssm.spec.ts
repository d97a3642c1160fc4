// The SSM tunnel (`tunnel: 'ssm://<instance-id>'`). The AWS CLI and the Session Manager plugin
// cannot be installed on this machine, so an executable named `aws` on PATH stands in for them:
// it checks the command line, prints the CLI's lines, forwards the local port to the far end, and
// exits on SIGTERM as the CLI does. What the driver does with the process is real.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { Client, Pool, resolveConfig, type ClientConfig } from '../index.js'
import { rejectsWith, runNode, useStack, withEnv, type Stack } from './helpers.ts'

const stack = useStack({ tokenAuth: true })
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

const STAND_IN = `#!${process.execPath}
// Stand-in for "aws ssm start-session" with AWS-StartPortForwardingSessionToRemoteHost.
const fs = require('fs'), net = require('net')
const args = process.argv.slice(2)
const log = process.env.FAKE_AWS_LOG
fs.appendFileSync(log, JSON.stringify({ pid: process.pid, args }) + '\\n')
const flag = (name) => { const i = args.indexOf(name); return i < 0 ? undefined : args[i + 1] }
if (args[0] !== 'ssm' || args[1] !== 'start-session' || flag('--document-name') !== 'AWS-StartPortForwardingSessionToRemoteHost') {
  console.error('usage: aws ssm start-session ...'); process.exit(252)
}
if (process.env.FAKE_AWS_NO_PLUGIN) {
  console.log('\\nSessionManagerPlugin is not found. Please refer to SessionManager Documentation here: ...'); process.exit(255)
}
const params = Object.fromEntries(flag('--parameters').split(',').map((kv) => kv.split('=')))
const server = net.createServer((c) => {
  const up = net.connect(Number(params.portNumber), params.host)
  c.pipe(up); up.pipe(c)
  c.on('error', () => up.destroy()); up.on('error', () => c.destroy())
})
server.listen(Number(params.localPortNumber), '127.0.0.1', () => {
  const id = 'stand-in-' + process.pid
  console.log('\\nStarting session with SessionId: ' + id)
  console.log('Port ' + params.localPortNumber + ' opened for sessionId ' + id + '.')
  console.log('Waiting for connections...\\n')
})
process.on('SIGTERM', () => { console.log('\\n\\nExiting session with sessionId: stand-in.'); process.exit(0) })
`

let dir = ''
let logFile = ''
interface Run { pid: number; args: string[] }
const runs = (): Run[] => (fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l)) : [])
const alive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

function viaSsm(s: Stack, tunnel: unknown, extra: Record<string, unknown> = {}): ClientConfig {
  return {
    host: s.host, hostaddr: '127.0.0.1', port: s.gatePort, user: s.users.admin.user, sslrootcert: s.caFile,
    credentials: { ...s.aws }, tunnel, ...extra,
  } as ClientConfig
}

describe('ssm tunnel (with a stand-in for the AWS CLI)', () => {
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dsql-ssm-'))
    fs.mkdirSync(path.join(dir, 'bin'))
    fs.writeFileSync(path.join(dir, 'bin', 'aws'), STAND_IN, { mode: 0o755 })
    logFile = path.join(dir, 'aws.log')
  })
  after(() => {
    for (const r of runs()) if (alive(r.pid)) process.kill(r.pid, 'SIGKILL')
    if (dir) fs.rmSync(dir, { recursive: true, force: true })
  })
  const env = () => ({ PATH: `${path.join(dir, 'bin')}:${process.env.PATH}`, FAKE_AWS_LOG: logFile })

  test('a pool through ssm://<instance-id>: the command line, SNI and tokens; the CLI restarted after it exits', async () => {
    const s = stack()
    await withEnv(env(), async () => {
      assert.equal(resolveConfig(viaSsm(s, 'ssm://i-0fixture')).tunnel, 'ssm://i-0fixture')
      const pool = new Pool({ ...viaSsm(s, { ssm: { target: 'i-0fixture', region: 'us-east-1', profile: 'ops' } }), max: 3 } as ClientConfig)
      pool.on('error', () => {})
      try {
        const seen = s.gate.log.length
        const r = await Promise.all(Array.from({ length: 6 }, (_, i) => pool.query('select $1::int as i', [i])))
        assert.deepEqual(r.map((x) => x.rows[0].i), [0, 1, 2, 3, 4, 5])
        const started = runs()
        assert.equal(started.length, 1, 'one CLI process for the pool')
        const args = started[0].args
        const i = args.indexOf('--parameters')
        assert.match(args[i + 1], new RegExp(`^host=127\\.0\\.0\\.1,portNumber=${s.gatePort},localPortNumber=\\d+$`))
        assert.deepEqual(args.slice(0, 6), ['ssm', 'start-session', '--target', 'i-0fixture', '--document-name', 'AWS-StartPortForwardingSessionToRemoteHost'])
        assert.deepEqual(args.slice(i + 2), ['--region', 'us-east-1', '--profile', 'ops'])
        for (const rec of s.gate.log.slice(seen).filter((x) => x.kind === 'startup')) {
          assert.equal(rec.sni, s.host)
          assert.equal(rec.tokenCheck?.ok, true)
        }
        // The session ends (as an expired SSM session does): later queries start a new one.
        process.kill(started[0].pid, 'SIGTERM')
        const deadline = Date.now() + 5000
        while (alive(started[0].pid) && Date.now() < deadline) await sleep(50)
        let ok = false
        for (let attempt = 0; attempt < 10 && !ok; attempt++) {
          try {
            ok = (await pool.query('select 7 as seven')).rows[0].seven === 7
          } catch {
            await sleep(200)
          }
        }
        assert.ok(ok, 'a query succeeds after the CLI exited')
        assert.equal(runs().length, 2, 'the CLI was started again')
      } finally {
        await pool.end()
      }
    })
  })

  test('connections that die with the CLI fail TUNNEL_LOST, a client too; later queries start it again', async () => {
    const s = stack()
    await withEnv(env(), async () => {
      const pool = new Pool({ ...viaSsm(s, 'ssm://i-0lost'), max: 2 } as ClientConfig)
      pool.on('error', () => {})
      const client = new Client(viaSsm(s, 'ssm://i-0lost'))
      client.on('error', () => {})
      try {
        await client.connect()
        assert.equal((await pool.query('select 1 as one')).rows[0].one, 1)
        const mine = () => runs().filter((r) => r.args.includes('i-0lost'))
        assert.equal(mine().length, 1, 'the pool and the client share one CLI process')
        const inFlight = [pool.query('select pg_sleep(20)'), client.query('select pg_sleep(20)')]
        await sleep(300)
        process.kill(mine()[0].pid, 'SIGKILL')
        for (const q of await Promise.allSettled(inFlight)) {
          const e = await rejectsWith(q.status === 'rejected' ? Promise.reject(q.reason) : Promise.resolve(q.value), 'TUNNEL_LOST')
          assert.match(e.message, /aws ssm start-session --target i-0lost exited/, e.message)
        }
        let ok = false
        for (let attempt = 0; attempt < 10 && !ok; attempt++) {
          try {
            ok = (await pool.query('select 8 as eight')).rows[0].eight === 8
          } catch {
            await sleep(200)
          }
        }
        assert.ok(ok, 'a query succeeds after the CLI died')
        assert.equal(mine().length, 2, 'the CLI was started again')
      } finally {
        await client.end().catch(() => {})
        await pool.end()
      }
    })
  })

  test('the CLI does not outlive the process that started it', async () => {
    const s = stack()
    const before = runs().length
    const code = `const { Client } = require(${JSON.stringify(path.resolve(__dirname, '..'))});
      const c = new Client(${JSON.stringify(viaSsm(s, 'ssm://i-0orphan'))});
      c.connect().then(() => c.query('select 1')).then(() => { console.log('ran'); process.kill(process.pid, 'SIGKILL') })`
    // Run asynchronously: the gate lives in this process and must keep answering.
    const r = await runNode(['-e', code], { ...process.env, ...env() }, 20_000)
    assert.match(r.out, /ran/, r.out)
    const mine = runs().slice(before)
    assert.equal(mine.length, 1)
    const deadline = Date.now() + 5000
    while (alive(mine[0].pid) && Date.now() < deadline) await sleep(50)
    assert.equal(alive(mine[0].pid), false, 'the CLI was stopped when its parent was killed')
  })

  test('no aws on PATH, or no Session Manager plugin: SSM_CLI_MISSING', async () => {
    const s = stack()
    await withEnv({ PATH: '/nonexistent' }, async () => {
      const e = await rejectsWith(new Client(viaSsm(s, 'ssm://i-0none')).connect(), 'SSM_CLI_MISSING')
      assert.match(e.message, /session-manager-plugin/)
    })
    await withEnv({ ...env(), FAKE_AWS_NO_PLUGIN: '1' }, async () => {
      await rejectsWith(new Client(viaSsm(s, 'ssm://i-0noplugin')).connect(), 'SSM_CLI_MISSING')
    })
  })
})
