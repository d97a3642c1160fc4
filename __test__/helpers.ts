// Shared by the specs: one DSQL-like stack per spec file (PostgreSQL with TLS, the SNI gate,
// a tunnel process), options that reach it through the tunnel, and error assertions.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import path from 'node:path'
import { after, before } from 'node:test'
import type { ClientConfig, DsqlTunnelError } from '../index.js'
import { startStack, type Stack, type StackOptions } from './fixture/stack.ts'

export type { Stack }

// Specs exercise AWS's credential chain: it must never reach for instance metadata off this machine.
process.env.AWS_EC2_METADATA_DISABLED ??= 'true'

/** Starts a stack before the file's tests and stops it after them. */
export function useStack(opts?: StackOptions): () => Stack {
  let stack: Stack | undefined
  before(async () => {
    stack = await startStack(opts)
  })
  after(async () => {
    await stack?.stop()
  })
  return () => {
    if (!stack) throw new Error('stack not started')
    return stack
  }
}

/** Options that reach the stack's gate through its tunnel, verifying the certificate. */
export function through(stack: Stack, extra: ClientConfig = {}): ClientConfig {
  return {
    host: stack.host,
    hostaddr: stack.tunnelAddr,
    port: stack.tunnelPort,
    user: stack.users.admin.user,
    password: stack.users.admin.password,
    sslrootcert: stack.caFile,
    ...extra,
  }
}

/** Asserts that `p` rejects with an Error whose `code` is `code`; returns the error. */
export async function rejectsWith(p: Promise<unknown>, code: string): Promise<DsqlTunnelError> {
  let caught: unknown
  try {
    await p
  } catch (e) {
    caught = e
  }
  assert.ok(caught instanceof Error, `expected a rejection with code ${code}, got ${String(caught)}`)
  assert.equal((caught as DsqlTunnelError).code, code, `message: ${(caught as Error).message}`)
  return caught as DsqlTunnelError
}

/** Runs `fn` with process.env changed, restoring it afterwards. */
export async function withEnv<T>(vars: Record<string, string | undefined>, fn: () => Promise<T>): Promise<T> {
  const saved: Record<string, string | undefined> = {}
  for (const k of Object.keys(vars)) {
    saved[k] = process.env[k]
    if (vars[k] === undefined) delete process.env[k]
    else process.env[k] = vars[k]
  }
  try {
    return await fn()
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k]
      else process.env[k] = v
    }
  }
}

/** The package's root: what a fresh process `require`s. */
export const ROOT = path.resolve(__dirname, '..')

export interface Exit { code: number | null; signal: NodeJS.Signals | null; ms: number; out: string }

/** Runs `node args` with exactly `env`, collecting stdout and stderr; killed after `timeoutMs`. */
export function runNode(args: string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<Exit> {
  const started = performance.now()
  const child = spawn(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout.on('data', (d) => (out += d))
  child.stderr.on('data', (d) => (out += d))
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.on('exit', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, ms: performance.now() - started, out })
    })
  })
}

/** Runs a CommonJS snippet in a fresh Node process with `opts` (client options reaching `stack`)
 * and `dt` (the package) in scope. */
export function runSnippet(stack: Stack, code: string, timeoutMs = 10_000, env: Record<string, string> = {}): Promise<Exit> {
  const args = ['-e', `const opts = JSON.parse(process.env.OPTS); const dt = require(${JSON.stringify(ROOT)});\n${code}`]
  return runNode(args, { ...process.env, OPTS: JSON.stringify(through(stack)), ...env }, timeoutMs)
}
