// IAM authentication: tokens minted in-process for every connection, checked for real by the gate
// (it recomputes the SigV4 signature with the stack's test credentials).
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { inspect } from 'node:util'
import { describe, test } from 'node:test'
import { DsqlSigner } from '@aws-sdk/dsql-signer'
import { connect, DatabaseError, generateToken } from '../index.js'
import { rejectsWith, through, useStack, withEnv, type Stack } from './helpers.ts'

const stack = useStack({ tokenAuth: true })

// Nothing but the stack's AWS identity: no files, no other providers.
function awsEnv(s: Stack): Record<string, string | undefined> {
  return {
    AWS_ACCESS_KEY_ID: s.aws.accessKeyId,
    AWS_SECRET_ACCESS_KEY: s.aws.secretAccessKey,
    AWS_SESSION_TOKEN: s.aws.sessionToken,
    AWS_PROFILE: undefined,
    AWS_REGION: undefined,
    AWS_DEFAULT_REGION: undefined,
    AWS_CONFIG_FILE: '/nonexistent/aws-config',
    AWS_SHARED_CREDENTIALS_FILE: '/nonexistent/aws-credentials',
    AWS_EC2_METADATA_DISABLED: 'true',
  }
}

const noAws = {
  AWS_ACCESS_KEY_ID: undefined, AWS_SECRET_ACCESS_KEY: undefined, AWS_SESSION_TOKEN: undefined, AWS_PROFILE: undefined,
  AWS_CONFIG_FILE: undefined, AWS_SHARED_CREDENTIALS_FILE: undefined, AWS_EC2_METADATA_DISABLED: 'true',
}

/** Options through the tunnel with no password: dsql-tunnel mints the token. */
function minting(s: Stack, extra = {}) {
  const options = through(s, extra)
  delete options.password
  return options
}

function startups(s: Stack) {
  return s.gate.log.filter((r) => r.kind === 'startup')
}

describe('minted tokens', () => {
  test("the experiment's variables minus PGPASSWORD, plus AWS credentials: the gate accepts the minted token", async () => {
    const s = stack()
    const e = s.envVerified()
    const env = { ...awsEnv(s), PGHOST: undefined, HOSTNAME: e.HOSTNAME, PGHOSTADDR: e.PGHOSTADDR, PGPORT: e.PGPORT,
      PGSSLMODE: e.PGSSLMODE, PGSSLROOTCERT: e.PGSSLROOTCERT, PGPASSWORD: undefined, PGUSER: undefined }
    await withEnv(env, async () => {
      const client = await connect()
      try {
        assert.deepEqual((await client.query('select current_user as u')).rows, [{ u: 'admin' }])
      } finally {
        await client.end()
      }
    })
    const rec = startups(s).at(-1)
    assert.equal(rec?.tokenCheck?.ok, true, JSON.stringify(rec?.tokenCheck))
    assert.equal(rec?.tokenCheck?.action, 'DbConnectAdmin')
    assert.equal(rec?.sni, s.host)
  })

  test('every connection gets a freshly minted token', async () => {
    const s = stack()
    await withEnv(awsEnv(s), async () => {
      const hashes: string[] = []
      const expiries: number[] = []
      for (let i = 0; i < 2; i++) {
        if (i > 0) await new Promise((r) => setTimeout(r, 1100)) // SigV4 timestamps have 1 s resolution
        const started = Date.now()
        const client = await connect(minting(s, { tokenDurationSecs: 600 }))
        await client.end()
        const rec = startups(s).at(-1)
        assert.equal(rec?.tokenCheck?.ok, true)
        hashes.push(String(rec?.tokenHash))
        const expiresAt = new Date(rec?.tokenCheck?.expiresAt as unknown as number).getTime()
        expiries.push(expiresAt)
        // Signed just now, for the requested lifetime.
        assert.ok(Math.abs(expiresAt - (started + 600_000)) < 5000, `expires ${new Date(expiresAt).toISOString()}`)
      }
      assert.notEqual(hashes[0], hashes[1])
      assert.ok(expiries[1] > expiries[0])
    })
  })

  test('a role other than admin signs DbConnect', async () => {
    const s = stack()
    await withEnv(awsEnv(s), async () => {
      const client = await connect(minting(s, { user: s.users.iam.user }))
      assert.deepEqual((await client.query('select current_user as u')).rows, [{ u: s.users.iam.user }])
      await client.end()
    })
    assert.equal(startups(s).at(-1)?.tokenCheck?.action, 'DbConnect')
  })

  test('the credentials option (a function) is called for every connection', async () => {
    const s = stack()
    let calls = 0
    await withEnv(noAws, async () => {
      for (let i = 0; i < 2; i++) {
        const client = await connect(minting(s, {
          credentials: async () => {
            calls++
            return { accessKeyId: s.aws.accessKeyId, secretAccessKey: s.aws.secretAccessKey, sessionToken: s.aws.sessionToken }
          },
        }))
        await client.end()
      }
    })
    assert.equal(calls, 2)
  })

  test('a token the server refuses: 28P01 with a hint naming the likely causes, in order', async () => {
    const s = stack()
    await withEnv(noAws, async () => {
      const err = (await rejectsWith(
        connect(minting(s, { credentials: { accessKeyId: s.aws.accessKeyId, secretAccessKey: 'not-the-secret', sessionToken: s.aws.sessionToken } })),
        '28P01',
      )) as DatabaseError
      assert.ok(err instanceof DatabaseError)
      const hint = err.hint ?? ''
      const order = ['expired', 'DbConnectAdmin', 'dsql:DbConnect', 'region'].map((w) => hint.indexOf(w))
      assert.ok(order.every((p) => p >= 0), hint)
      assert.deepEqual([...order].sort((a, b) => a - b), order, hint)
    })
    assert.equal(startups(s).at(-1)?.tokenCheck?.reason, 'bad-signature')
  })
})

describe('the AWS credential chain', () => {
  function tempAwsFiles(s: Stack): { dir: string; config: string; credentials: string } {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dsql-tunnel-aws-'))
    const config = path.join(dir, 'config')
    const credentials = path.join(dir, 'credentials')
    const script = path.join(dir, 'creds.js')
    fs.writeFileSync(script, `console.log(JSON.stringify({ Version: 1, AccessKeyId: ${JSON.stringify(s.aws.accessKeyId)}, SecretAccessKey: ${JSON.stringify(s.aws.secretAccessKey)}, SessionToken: ${JSON.stringify(s.aws.sessionToken)} }))`)
    fs.writeFileSync(config, [
      '[profile from-process]',
      `credential_process = ${process.execPath} ${script}`,
      '[profile broken-process]',
      `credential_process = ${process.execPath} -e "process.exit(3)"`,
      '',
    ].join('\n'))
    fs.writeFileSync(credentials, [
      '[default]', 'aws_access_key_id = AKIDDEFAULTWRONG', 'aws_secret_access_key = wrong', '',
      '[team]', `aws_access_key_id = ${s.aws.accessKeyId}`, `aws_secret_access_key = ${s.aws.secretAccessKey}`,
      `aws_session_token = ${s.aws.sessionToken}`, '',
    ].join('\n'))
    return { dir, config, credentials }
  }

  test('profiles from AWS_CONFIG_FILE / AWS_SHARED_CREDENTIALS_FILE: option, AWS_PROFILE, credential_process', async () => {
    const s = stack()
    const files = tempAwsFiles(s)
    const env = { ...noAws, AWS_CONFIG_FILE: files.config, AWS_SHARED_CREDENTIALS_FILE: files.credentials }
    try {
      await withEnv(env, async () => {
        for (const options of [minting(s, { profile: 'team' }), minting(s, { profile: 'from-process' })]) {
          const client = await connect(options)
          await client.end()
          assert.equal(startups(s).at(-1)?.tokenCheck?.ok, true)
        }
        await withEnv({ AWS_PROFILE: 'team' }, async () => {
          const client = await connect(minting(s))
          await client.end()
        })
        // The default profile holds the wrong secret: the gate refuses its token.
        await rejectsWith(connect(minting(s)), '28P01')
        await rejectsWith(connect(minting(s, { profile: 'broken-process' })), 'CREDENTIALS_UNAVAILABLE')
      })
    } finally {
      fs.rmSync(files.dir, { recursive: true, force: true })
    }
  })
})

describe('generateToken', () => {
  const fixed = { accessKeyId: 'AKIAIOSFODNN7EXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY', sessionToken: 'IQoJb3JpZ2luX2VjE+/Az8==' }
  const host = 'abcdefghijklmnopqrst.dsql-fnh4.us-east-1.on.aws'
  const when = Date.UTC(2026, 10, 25, 12, 34, 56)

  async function sdkToken(admin: boolean, sessionToken?: string): Promise<string> {
    const RealDate = Date
    class FixedDate extends RealDate {
      constructor(...args: unknown[]) {
        if (args.length === 0) super(when)
        else super(...(args as [number]))
      }
      static override now() {
        return when
      }
    }
    globalThis.Date = FixedDate as DateConstructor
    try {
      const signer = new DsqlSigner({ hostname: host, region: 'us-east-1', expiresIn: 3600, credentials: { ...fixed, sessionToken } })
      return admin ? await signer.getDbConnectAdminAuthToken() : await signer.getDbConnectAuthToken()
    } finally {
      globalThis.Date = RealDate
    }
  }

  for (const [label, user, sessionToken] of [['admin', 'admin', fixed.sessionToken], ['a role', 'reader', fixed.sessionToken], ['no session token', 'admin', undefined]] as const) {
    test(`equals @aws-sdk/dsql-signer byte for byte: ${label}`, async () => {
      const ours = await generateToken({ host, user, expiresIn: 3600, credentials: { ...fixed, sessionToken }, signingDate: new Date(when) })
      assert.equal(ours, await sdkToken(user === 'admin', sessionToken))
    })
  }

  test('a bare cluster id expands with the region; user defaults to admin', async () => {
    const t = await generateToken({ host: 'abc123', region: 'eu-west-2', credentials: fixed })
    assert.ok(t.startsWith('abc123.dsql.eu-west-2.on.aws/?Action=DbConnectAdmin&'), t)
    assert.match(t, /X-Amz-Expires=900&/)
  })

  test('bad options reject with INVALID_CONFIG', async () => {
    await rejectsWith(generateToken({ host: host, expiresIn: 604801, credentials: fixed }), 'INVALID_CONFIG')
    await rejectsWith(withEnv({ AWS_REGION: undefined, AWS_DEFAULT_REGION: undefined }, () => generateToken({ host: 'localhost', credentials: fixed })), 'INVALID_CONFIG')
    await rejectsWith(generateToken({ host, credentials: { accessKeyId: 'x' } as never }), 'INVALID_CONFIG')
  })
})

describe('static tokens', () => {
  test('a valid static token (PGPASSWORD) connects', async () => {
    const s = stack()
    const client = await connect(through(s, { password: s.presignToken() }))
    await client.end()
    assert.equal(startups(s).at(-1)?.tokenCheck?.ok, true)
  })

  test('an expired token fails at once, with no network round trip, saying when it expired', async () => {
    const s = stack()
    const token = s.presignToken({ now: new Date(Date.now() - 3600_000), expiresIn: 900 })
    const before = s.gate.log.length
    const err = await rejectsWith(connect(through(s, { password: token })), 'TOKEN_EXPIRED')
    assert.equal(s.gate.log.length, before)
    assert.match(err.message, /expired at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(45 minutes ago\)/)
    assert.match(err.message, /generate-db-connect-admin-auth-token/)
    assert.ok(!err.message.includes(token) && !inspect(err, { showHidden: true }).includes('X-Amz-Signature'))
  })

  test('tokens for another host, the wrong action or another region fail at once', async () => {
    const s = stack()
    const before = s.gate.log.length
    await rejectsWith(connect(through(s, { password: s.presignToken({ host: s.wrongHost }) })), 'TOKEN_HOST_MISMATCH')
    // A token signed for the tunnel address is the classic mistake.
    await rejectsWith(connect(through(s, { password: s.presignToken({ host: '127.0.0.1' }) })), 'TOKEN_HOST_MISMATCH')
    await rejectsWith(connect(through(s, { password: s.presignToken({ user: 'reader' }) })), 'TOKEN_ACTION_MISMATCH')
    await rejectsWith(
      connect(through(s, { user: s.users.iam.user, password: s.presignToken({ user: 'admin' }) })),
      'TOKEN_ACTION_MISMATCH',
    )
    await rejectsWith(connect(through(s, { password: s.presignToken({ region: 'eu-west-1' }) })), 'TOKEN_REGION_MISMATCH')
    assert.equal(s.gate.log.length, before)
  })

  test('tokens appear in no message, inspect output or gate record', async () => {
    const s = stack()
    const token = s.presignToken({ credentials: { secretAccessKey: 'wrong' } })
    const err = await rejectsWith(connect(through(s, { password: token })), '28P01')
    const shown = inspect(err, { showHidden: true, depth: 5 }) + JSON.stringify(err) + JSON.stringify(s.gate.log)
    assert.ok(!shown.includes(token))
    assert.ok(!shown.includes(token.split('X-Amz-Signature=')[1].slice(0, 64)))
  })
})
