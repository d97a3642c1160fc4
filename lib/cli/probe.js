'use strict'
// Doctor's network probes: TCP to the tunnel, a TLS handshake that reports what it saw (chain and
// name checked separately, never enforced), and a StartupMessage to see whether the front door
// accepts the SNI. No credentials are ever sent here: the probe closes before authenticating.

const fs = require('node:fs')
const net = require('node:net')
const tls = require('node:tls')

const SSL_REQUEST = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])
const PROTOCOL_3_0 = 196608
const TERMINATE = Buffer.from([0x58, 0, 0, 0, 4])
const AUTH_NAMES = { 0: 'none (trust)', 3: 'a cleartext password (the token)', 5: 'an MD5 password', 7: 'GSSAPI', 9: 'SSPI', 10: 'SCRAM' }

class ProbeError extends Error {
  constructor(code, message, extra = {}) {
    super(message)
    this.code = code
    Object.assign(this, extra)
  }
}

/** Buffers a stream's data so exact byte counts can be awaited, bounded by a deadline. */
class Reader {
  #buf = Buffer.alloc(0)
  #waiter = null
  #ended = null

  #stream
  #handlers

  constructor(stream) {
    const end = (why) => {
      this.#ended ??= why
      this.#wake()
    }
    this.#stream = stream
    this.#handlers = {
      data: (d) => {
        this.#buf = Buffer.concat([this.#buf, d])
        this.#wake()
      },
      end: () => end('closed'),
      close: () => end('closed'),
      error: (e) => end(e),
    }
    for (const [event, fn] of Object.entries(this.#handlers)) stream.on(event, fn)
  }

  /** Stops reading (before the socket is handed to TLS). */
  detach() {
    this.#stream.pause()
    for (const [event, fn] of Object.entries(this.#handlers)) this.#stream.off(event, fn)
  }

  #wake() {
    const w = this.#waiter
    if (w && (this.#buf.length >= w.n || this.#ended)) {
      this.#waiter = null
      w.resolve()
    }
  }

  async need(n, deadline) {
    if (this.#buf.length < n && !this.#ended) {
      await new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          this.#waiter = null
          reject(new ProbeError('TIMEOUT', 'no answer'))
        }, Math.max(0, deadline - Date.now()))
        this.#waiter = { n, resolve: () => (clearTimeout(timer), resolve()) }
      })
    }
    if (this.#buf.length < n) {
      const why = this.#ended
      throw new ProbeError(why instanceof Error ? why.code ?? 'ERROR' : 'CLOSED', why instanceof Error ? why.message : 'the server closed the connection')
    }
    const out = this.#buf.subarray(0, n)
    this.#buf = this.#buf.subarray(n)
    return out
  }
}

/** Opens TCP to addr:port; rejects with the socket error's code, or TIMEOUT. */
function dial(addr, port, timeoutMillis) {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint()
    const socket = net.connect({ host: addr, port })
    const timer = timeoutMillis > 0
      ? setTimeout(() => {
        socket.destroy()
        reject(new ProbeError('TIMEOUT', `no TCP connection within ${timeoutMillis} ms`))
      }, timeoutMillis)
      : null
    socket.once('connect', () => {
      clearTimeout(timer)
      socket.removeAllListeners('error')
      socket.on('error', () => {})
      resolve({ socket, millis: Number(process.hrtime.bigint() - started) / 1e6 })
    })
    socket.once('error', (e) => {
      clearTimeout(timer)
      reject(new ProbeError(e.code ?? 'ERROR', e.message, { syscall: e.syscall }))
    })
  })
}

/** The tunnel port accepts TCP: { millis, remote }. */
async function probeTcp({ addr, port, timeoutMillis }) {
  const { socket, millis } = await dial(addr, port, timeoutMillis)
  const remote = `${socket.remoteAddress}:${socket.remotePort}`
  socket.destroy()
  return { millis, remote }
}

function loadCa(sslrootcert) {
  if (!sslrootcert || sslrootcert === 'bundled') return { ca: undefined, trust: 'the bundled roots (Mozilla, incl. Amazon Root CA 1)' }
  if (sslrootcert === 'system') {
    if (typeof tls.getCACertificates === 'function') return { ca: tls.getCACertificates('system'), trust: 'the system store' }
    // Node before 22.15 cannot read the OS store: the chain is left to the authentication step.
    return { ca: undefined, trust: 'the system store (not readable from this Node: checked when authenticating)', unchecked: true }
  }
  return { ca: fs.readFileSync(sslrootcert), trust: sslrootcert }
}

const formatName = (n) => (n ? Object.entries(n).map(([k, v]) => `${k}=${Array.isArray(v) ? v.join('+') : v}`).join(', ') : '')

/**
 * Negotiates TLS as the client would (SSLRequest first, or direct TLS with ALPN `postgresql`) with
 * SNI = host, and reports the certificate. Returns { socket, reader, facts }; the caller closes.
 */
async function probeTls({ host, addr, port, sslnegotiation, sslrootcert, timeoutMillis }) {
  const deadline = Date.now() + (timeoutMillis > 0 ? timeoutMillis : 30_000)
  const { socket } = await dial(addr, port, timeoutMillis)
  try {
    if (sslnegotiation === 'postgres') {
      socket.write(SSL_REQUEST)
      const reader = new Reader(socket)
      let answer
      try {
        answer = String.fromCharCode((await reader.need(1, deadline))[0])
      } catch (e) {
        throw new ProbeError(e.code, e.code === 'TIMEOUT' ? 'the server did not answer the SSLRequest' : `${e.message} after the SSLRequest`)
      }
      if (answer === 'N') throw new ProbeError('TLS_REFUSED', 'the server answered the SSLRequest with N: it does not offer TLS')
      if (answer !== 'S') throw new ProbeError('NOT_POSTGRES', `the server answered the SSLRequest with ${JSON.stringify(answer)}, not S`)
      reader.detach()
    }
    const { ca, trust, unchecked } = loadCa(sslrootcert)
    const sniSent = net.isIP(host) === 0
    const secure = tls.connect({
      socket,
      servername: sniSent ? host : undefined,
      ALPNProtocols: ['postgresql'],
      ca,
      minVersion: 'TLSv1.2',
      // Reported, not enforced: the chain and the name are checked separately below.
      rejectUnauthorized: false,
      checkServerIdentity: () => undefined,
    })
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new ProbeError('TIMEOUT', 'the TLS handshake did not finish')), Math.max(0, deadline - Date.now()))
      secure.once('secureConnect', () => (clearTimeout(timer), resolve()))
      secure.once('error', (e) => (clearTimeout(timer), reject(new ProbeError('TLS_HANDSHAKE_FAILED', e.message, { cause: e.code }))))
      secure.once('close', () => (clearTimeout(timer), reject(new ProbeError('CLOSED', 'the server closed the connection during the TLS handshake'))))
    })
    secure.removeAllListeners('close')
    secure.on('error', () => {})
    const cert = secure.getPeerCertificate(false)
    const validTo = cert.valid_to ? new Date(cert.valid_to) : null
    const nameError = cert && Object.keys(cert).length ? tls.checkServerIdentity(host, cert) : new Error('no certificate')
    const sans = (cert.subjectaltname ?? '').split(', ').filter(Boolean).map((s) => s.replace(/^DNS:/, '').replace(/^IP Address:/, ''))
    const facts = {
      negotiation: sslnegotiation,
      tlsVersion: secure.getProtocol(),
      alpn: secure.alpnProtocol || null,
      sniSent: sniSent ? host : null,
      subject: formatName(cert.subject),
      subjectAltNames: sans,
      issuer: formatName(cert.issuer),
      validFrom: cert.valid_from ? new Date(cert.valid_from).toISOString() : null,
      validTo: validTo ? validTo.toISOString() : null,
      daysLeft: validTo ? Math.floor((validTo.getTime() - Date.now()) / 86_400_000) : null,
      trust,
      chainTrusted: unchecked ? null : secure.authorized,
      chainError: unchecked || secure.authorized ? null : String(secure.authorizationError ?? 'not trusted'),
      nameMatches: !nameError,
      nameError: nameError ? nameError.message : null,
    }
    return { socket: secure, facts, deadline }
  } catch (e) {
    socket.destroy()
    throw e
  }
}

function startupMessage(params) {
  const body = Buffer.concat(Object.entries(params).flatMap(([k, v]) => [Buffer.from(`${k}\0${v}\0`)]).concat([Buffer.from([0])]))
  const head = Buffer.alloc(8)
  head.writeInt32BE(8 + body.length, 0)
  head.writeInt32BE(PROTOCOL_3_0, 4)
  return Buffer.concat([head, body])
}

function parseErrorFields(body) {
  const fields = {}
  let i = 0
  while (i < body.length && body[i] !== 0) {
    const key = String.fromCharCode(body[i])
    const end = body.indexOf(0, i + 1)
    if (end < 0) break
    fields[key] = body.subarray(i + 1, end).toString('utf8')
    i = end + 1
  }
  return fields
}

/**
 * Sends a StartupMessage (user, database; no credentials) on an established probe and reads the
 * first answer: an authentication request means the front door accepted the SNI.
 * Returns { accepted, auth?, error?: { code, message }, sniRefused }.
 */
async function probeStartup({ socket, deadline }, { user, database }) {
  const reader = new Reader(socket)
  socket.write(startupMessage({ user, database, application_name: 'dsql-tunnel doctor' }))
  try {
    const head = await reader.need(5, deadline)
    const type = String.fromCharCode(head[0])
    const len = head.readInt32BE(1)
    if (len < 4 || len > 65_536) return { accepted: false, unexpected: `a message of length ${len}` }
    const body = await reader.need(len - 4, deadline)
    if (type === 'R') {
      const code = body.readInt32BE(0)
      const mechanisms = code === 10 ? body.subarray(4).toString('utf8').split('\0').filter(Boolean) : []
      return { accepted: true, auth: `${AUTH_NAMES[code] ?? `authentication type ${code}`}${mechanisms.length ? ` (${mechanisms.join(', ')})` : ''}` }
    }
    if (type === 'v') return { accepted: true, auth: 'a protocol negotiation' }
    if (type === 'E') {
      const f = parseErrorFields(body)
      const error = { code: f.C ?? '', message: f.M ?? '' }
      return { accepted: false, error, sniRefused: /\bsni\b|unknown cluster|server name/i.test(error.message) }
    }
    return { accepted: false, unexpected: `message type ${JSON.stringify(type)}` }
  } finally {
    if (!socket.destroyed) socket.end(TERMINATE)
    setTimeout(() => socket.destroy(), 200).unref()
  }
}

module.exports = { probeTcp, probeTls, probeStartup, ProbeError }
