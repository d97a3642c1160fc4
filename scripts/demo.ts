// `npm run demo`: brings up the local DSQL-like stack (PostgreSQL with TLS, a gate that behaves
// like DSQL's front door: SNI required, IAM tokens checked; a tunnel process in front) on free
// loopback ports, runs `dsql-tunnel check` and `dsql-tunnel doctor` through the tunnel with the
// experiment's environment variables, and tears everything down.
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { startStack, type Stack } from '../__test__/fixture/stack.ts'

const ROOT = path.resolve(__dirname, '..')
const CLI = path.join(ROOT, 'bin/dsql-tunnel.js')
const RUN_TIMEOUT_MILLIS = 60_000

function run(args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  console.log(`\n$ dsql-tunnel ${args.join(' ')}\n`)
  const child = spawn(process.execPath, [CLI, ...args], { env, stdio: 'inherit' })
  const timer = setTimeout(() => child.kill('SIGKILL'), RUN_TIMEOUT_MILLIS)
  return new Promise((resolve) =>
    child.on('exit', (code) => {
      clearTimeout(timer)
      resolve(code ?? 1)
    }),
  )
}

/** The user's own PG*, HOSTNAME and AWS settings must not leak into the demo. */
function demoEnv(stack: Stack): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) if (!/^(PG|AWS_)/.test(k) && k !== 'HOSTNAME') env[k] = v
  env.AWS_EC2_METADATA_DISABLED = 'true'
  return { ...env, ...stack.envVerified() }
}

function refuses(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port })
    const done = (v: boolean) => {
      s.destroy()
      resolve(v)
    }
    s.setTimeout(2000, () => done(false))
    s.once('connect', () => done(false))
    s.once('error', () => done(true))
  })
}

async function main(): Promise<number> {
  console.log('Starting a local DSQL-like stack: PostgreSQL 15 (TLS) <- gate (SNI + IAM tokens, like DSQL) <- tunnel process ...')
  const stack = await startStack({ tokenAuth: true })
  const stop = () => {
    stack.stop().finally(() => process.exit(130))
  }
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
  let code = 1
  try {
    const env = demoEnv(stack)
    console.log(`Cluster hostname ${stack.host}`)
    console.log(`Tunnel 127.0.0.1:${stack.tunnelPort} -> gate :${stack.gatePort} -> PostgreSQL :${stack.pgPort}`)
    console.log('Environment, as in the connectivity experiment:')
    console.log(`  HOSTNAME=${env.HOSTNAME}`)
    console.log(`  PGHOSTADDR=${env.PGHOSTADDR} PGPORT=${env.PGPORT}`)
    console.log('  PGPASSWORD=<a DSQL auth token for admin, signed with the stack\'s made-up AWS key>')
    console.log('  PGSSLMODE=verify-full PGSSLROOTCERT=<the stack\'s test CA>')

    const check = await run(['check'], env)
    const seen = stack.gate.lastRecord((r) => r.kind === 'startup' && r.outcome === 'forwarded')
    if (seen) {
      console.log(`\nThe gate saw: SNI ${seen.sni}, ${seen.mode} TLS (${seen.tlsVersion}, ALPN ${seen.alpn}), user ${seen.user}, `
        + `token ${seen.tokenCheck?.ok ? `accepted (${seen.tokenCheck.action})` : 'refused'}: ${seen.outcome}`)
    }
    const doctor = await run(['doctor'], env)
    code = check === 0 && doctor === 0 ? 0 : 1
  } finally {
    await stack.stop()
    const down = (await Promise.all([stack.tunnelPort, stack.gatePort, stack.pgPort].map(refuses))).every(Boolean)
    const cleaned = !fs.existsSync(stack.tmpDir)
    console.log(down && cleaned
      ? '\nStack stopped: tunnel, gate and PostgreSQL are down, temporary files removed.'
      : `\nStack stopped, but ${down ? '' : 'a port still answers'}${!down && !cleaned ? ' and ' : ''}${cleaned ? '' : `${stack.tmpDir} remains`}.`)
    if (!down || !cleaned) code = 1
  }
  return code
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.error(e)
    process.exit(1)
  },
)
