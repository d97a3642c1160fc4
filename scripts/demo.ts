// `npm run demo`: brings up the local DSQL-like stack (PostgreSQL with TLS, the SNI-enforcing
// gate, a tunnel process) on free loopback ports, runs `dsql-tunnel check` through the tunnel
// with the experiment's environment variables, and tears everything down.
import { spawn } from 'node:child_process'
import path from 'node:path'
import { startStack } from '../__test__/fixture/stack.ts'

const ROOT = path.resolve(__dirname, '..')

function run(env: NodeJS.ProcessEnv): Promise<number> {
  const child = spawn(process.execPath, [path.join(ROOT, 'bin/dsql-tunnel.js'), 'check'], { env, stdio: 'inherit' })
  return new Promise((resolve) => child.on('exit', (code) => resolve(code ?? 1)))
}

async function main(): Promise<number> {
  console.log('Starting a local DSQL-like stack: PostgreSQL 15 (TLS) <- SNI gate <- tunnel process ...')
  const stack = await startStack()
  try {
    const env: NodeJS.ProcessEnv = {}
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PG')) env[k] = v
    Object.assign(env, stack.envVerified())
    console.log(`Cluster hostname ${stack.host}; tunnel 127.0.0.1:${stack.tunnelPort} -> gate :${stack.gatePort} -> PostgreSQL :${stack.pgPort}`)
    console.log(`Environment: HOSTNAME, PGHOSTADDR=127.0.0.1, PGPORT=${stack.tunnelPort}, PGPASSWORD=<redacted>, PGSSLMODE=verify-full, PGSSLROOTCERT=<test CA>\n`)
    const code = await run(env)
    const seen = stack.gate.lastRecord((r) => r.kind === 'startup')
    if (seen) console.log(`\nThe gate saw: SNI ${seen.sni}, ${seen.mode} TLS (${seen.tlsVersion}, ALPN ${seen.alpn}), user ${seen.user}: ${seen.outcome}`)
    return code
  } finally {
    await stack.stop()
    console.log('Stack stopped.')
  }
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.error(e)
    process.exit(1)
  },
)
