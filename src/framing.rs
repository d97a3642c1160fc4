//! Backend message framing, checked as bytes arrive: a type byte and a big-endian length per
//! message, as libpq checks them.
//!
//! tokio-postgres trusts the length it reads and waits for that many bytes, so garbage (an HTTP
//! page: `H` + `TTP/` reads as 1.4 GB) or an absurd length from whatever answers at the other end
//! of the tunnel would hold a connect until its timeout and a query forever. [`Checked`] sits
//! between TLS and tokio-postgres, walks the frames without copying (only the 5-byte headers are
//! looked at; bodies are skipped by count) and fails the read as soon as a header cannot be
//! PostgreSQL's. [`Desync`] keeps the reason, because the queries of a connection only see
//! "connection closed" when its reader fails.

use crate::error::Error;
use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, TlsConnect, TlsStream};

/// libpq's bound for messages that are never long (`VALID_LONG_MESSAGE_TYPE` in fe-protocol3.c).
pub const SHORT_MESSAGE_MAX: u32 = 30_000;
/// No message may announce more: PostgreSQL's own limit for a single allocation.
pub const MESSAGE_MAX: u32 = 1 << 30;

/// The largest length (type byte excluded, length field included) a backend message of type
/// `t` may announce; `None` when `t` is not a backend message type at all.
pub fn max_length(t: u8) -> Option<u32> {
    match t {
        // DataRow, RowDescription, CopyData, ErrorResponse, NoticeResponse, NotificationResponse,
        // FunctionCallResponse (as libpq), and ParameterDescription: 65,535 parameters take 262 KB.
        b'D' | b'T' | b'd' | b'E' | b'N' | b'A' | b'V' | b't' => Some(MESSAGE_MAX),
        // Authentication, BackendKeyData, BindComplete, CloseComplete, CommandComplete, CopyDone,
        // CopyIn/Out/BothResponse, EmptyQueryResponse, NegotiateProtocolVersion, NoData,
        // ParameterStatus, ParseComplete, PortalSuspended, ReadyForQuery.
        b'R' | b'K' | b'2' | b'3' | b'C' | b'c' | b'G' | b'H' | b'W' | b'I' | b'v' | b'n' | b'S' | b'1' | b's'
        | b'Z' => Some(SHORT_MESSAGE_MAX),
        _ => None,
    }
}

/// What was wrong with the bytes: a type byte that names no message, or a length out of bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Violation {
    pub type_byte: u8,
    /// `None` when the type byte alone was wrong.
    pub length: Option<u32>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.type_byte;
        let shown = if t.is_ascii_graphic() { format!("0x{t:02x} '{}'", t as char) } else { format!("0x{t:02x}") };
        match (self.length, max_length(t)) {
            (Some(n), Some(max)) if n >= 4 => write!(
                f,
                "the server, or something between it and the tunnel, sent bytes that are not PostgreSQL \
                 protocol (message type {shown} announcing {n} bytes, at most {max} allowed); the connection \
                 lost synchronization and was closed. Check that the tunnel forwards to the cluster's endpoint"
            ),
            (Some(n), _) => write!(
                f,
                "the server, or something between it and the tunnel, sent bytes that are not PostgreSQL \
                 protocol (message type {shown} with length {n}, below the minimum of 4); the connection lost \
                 synchronization and was closed. Check that the tunnel forwards to the cluster's endpoint"
            ),
            (None, _) => write!(
                f,
                "the server, or something between it and the tunnel, sent bytes that are not PostgreSQL \
                 protocol ({shown} is not a message type); the connection lost synchronization and was closed. \
                 Check that the tunnel forwards to the cluster's endpoint"
            ),
        }
    }
}

impl std::error::Error for Violation {}

/// Where a connection's framing check records why it gave up, shared with its queries; and how
/// many requests it wrote and how many ReadyForQuery messages it read, so a query can tell
/// whether the server had answered everything before it.
#[derive(Debug, Clone, Default)]
pub struct Desync(Arc<Shared>, crate::tunnel::Lost);

#[derive(Debug, Default)]
struct Shared {
    violation: OnceLock<Violation>,
    /// ReadyForQuery messages read (the first ends start-up).
    ready: AtomicU64,
    /// Requests written: Sync and Query messages, each answered by one ReadyForQuery.
    requests: AtomicU64,
    /// The transaction status of the last ReadyForQuery read (`I`, `T`, `E`), 0 before any.
    status: AtomicU8,
    /// Close messages written, and those the client library is due to write: it closes a named
    /// statement on its own (Close, then Sync) when the statement is dropped, behind any request
    /// that is already queued.
    closes: AtomicU64,
    closes_due: AtomicU64,
    /// Woken whenever a ReadyForQuery has been read.
    readied: tokio::sync::Notify,
}

impl Desync {
    /// Also reports connection losses as `TUNNEL_LOST` once `lost` records that the tunnel died.
    pub fn riding(lost: crate::tunnel::Lost) -> Desync {
        Desync(Arc::default(), lost)
    }

    pub fn violation(&self) -> Option<&Violation> {
        self.0.violation.get()
    }

    /// The transaction status the server reported last (ReadyForQuery): `I` idle, `T` in a
    /// transaction, `E` in a failed one; `None` before the first.
    pub fn transaction_status(&self) -> Option<char> {
        match self.0.status.load(Ordering::Acquire) {
            0 => None,
            b => Some(b as char),
        }
    }

    /// Whether the server has answered every request written so far: it sent one ReadyForQuery
    /// per Sync or Query, plus the one that ended start-up. False while anything is in flight,
    /// including requests the client library makes on its own (closing statements).
    pub fn settled(&self) -> bool {
        // A Close that is due but not yet written would go out ahead of the next request.
        if self.0.closes.load(Ordering::Acquire) < self.0.closes_due.load(Ordering::Acquire) {
            return false;
        }
        let ready = self.0.ready.load(Ordering::Acquire);
        ready > 0 && ready == self.0.requests.load(Ordering::Acquire) + 1
    }

    /// Waits, at most `limit`, until the connection is [`Desync::settled`]: every request written
    /// has its ReadyForQuery.
    pub async fn until_settled(&self, limit: std::time::Duration) {
        let wait = async {
            loop {
                // Created before the check: a ReadyForQuery read in between still wakes it.
                let readied = self.0.readied.notified();
                if self.settled() {
                    return;
                }
                readied.await;
            }
        };
        let _ = tokio::time::timeout(limit, wait).await;
    }

    /// Called before a named statement is dropped: the client library then writes a Close (and
    /// a Sync) of its own, and the connection is not settled until that is answered too.
    pub fn close_due(&self) {
        self.0.closes_due.fetch_add(1, Ordering::AcqRel);
    }

    /// `PROTOCOL_ERROR` in place of the "connection lost" a query sees when the reader gave up on
    /// the server's bytes; any other error as it is.
    pub fn explain(&self, e: Error) -> Error {
        match (self.violation(), e) {
            (Some(v), Error::ConnectionLost { .. }) => Error::Protocol { detail: v.to_string() },
            (None, Error::ConnectionLost { .. }) if self.1.get().is_some() => {
                crate::tunnel::lost_error(self.1.get().unwrap_or_default())
            }
            (_, e) => e,
        }
    }
}

/// Where the reader is in the stream of messages.
#[derive(Debug, Clone, Copy)]
enum Position {
    /// Inside a header: `got` of its 5 bytes seen, kept in `bytes`.
    Header {
        got: usize,
        bytes: [u8; 5],
    },
    /// Inside a body, `left` bytes to go.
    Body {
        left: u32,
    },
    /// At ReadyForQuery's one byte of body: the transaction status.
    Status,
    /// Inside BackendKeyData's body (process id, secret key): `got` of its 8 bytes kept.
    Key {
        got: usize,
        bytes: [u8; 8],
    },
    Failed(Violation),
}

/// Frame-by-frame state, separate from the stream so it can be tested on plain byte slices; the
/// count of ReadyForQuery messages seen, BackendKeyData, and the last transaction status.
#[derive(Debug, Clone, Copy)]
pub struct Framing(Position, u64, Option<(i32, i32)>, u8);

impl Default for Framing {
    fn default() -> Self {
        Framing(Position::Header { got: 0, bytes: [0; 5] }, 0, None, 0)
    }
}

impl Framing {
    /// Follows `bytes` (the next ones read) through the frames.
    pub fn follow(&mut self, bytes: &[u8]) -> Result<(), Violation> {
        let mut i = 0;
        while i < bytes.len() {
            match &mut self.0 {
                Position::Body { left } => {
                    let n = (*left as usize).min(bytes.len() - i);
                    i += n;
                    *left -= n as u32;
                    if *left == 0 {
                        self.0 = Position::Header { got: 0, bytes: [0; 5] };
                    }
                }
                Position::Status => {
                    self.3 = bytes[i];
                    i += 1;
                    self.0 = Position::Header { got: 0, bytes: [0; 5] };
                }
                Position::Key { got, bytes: key } => {
                    let take = (8 - *got).min(bytes.len() - i);
                    key[*got..*got + take].copy_from_slice(&bytes[i..i + take]);
                    *got += take;
                    i += take;
                    if *got == 8 {
                        let pid = i32::from_be_bytes([key[0], key[1], key[2], key[3]]);
                        let secret = i32::from_be_bytes([key[4], key[5], key[6], key[7]]);
                        self.2 = Some((pid, secret));
                        self.0 = Position::Header { got: 0, bytes: [0; 5] };
                    }
                }
                Position::Header { got, bytes: header } => {
                    let take = (5 - *got).min(bytes.len() - i);
                    header[*got..*got + take].copy_from_slice(&bytes[i..i + take]);
                    *got += take;
                    i += take;
                    let type_byte = header[0];
                    let Some(max) = max_length(type_byte) else {
                        return self.fail(Violation { type_byte, length: None });
                    };
                    if *got < 5 {
                        continue;
                    }
                    let length = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
                    if !(4..=max).contains(&length) {
                        return self.fail(Violation { type_byte, length: Some(length) });
                    }
                    if type_byte == b'Z' {
                        self.1 += 1;
                    }
                    self.0 = if length == 4 {
                        Position::Header { got: 0, bytes: [0; 5] }
                    } else if type_byte == b'K' && length == 12 {
                        Position::Key { got: 0, bytes: [0; 8] }
                    } else if type_byte == b'Z' && length == 5 {
                        Position::Status
                    } else {
                        Position::Body { left: length - 4 }
                    };
                }
                Position::Failed(v) => return Err(*v),
            }
        }
        Ok(())
    }

    /// BackendKeyData's process id and secret key, once they have gone by.
    pub fn backend_key(&self) -> Option<(i32, i32)> {
        self.2
    }

    /// The status byte of the last complete ReadyForQuery, 0 before any.
    pub fn transaction_status(&self) -> u8 {
        self.3
    }

    fn fail(&mut self, v: Violation) -> Result<(), Violation> {
        self.0 = Position::Failed(v);
        Err(v)
    }
}

/// The client's side of a stream, walked frame by frame to count requests: the first message is
/// the untyped StartupMessage, every later one has a type byte.
#[derive(Debug, Clone, Copy, Default)]
pub struct Outgoing {
    started: bool,
    got: usize,
    header: [u8; 5],
    left: u32,
    requests: u64,
    closes: u64,
}

impl Outgoing {
    pub fn follow(&mut self, bytes: &[u8]) {
        let mut i = 0;
        while i < bytes.len() {
            if self.left > 0 {
                let n = (self.left as usize).min(bytes.len() - i);
                i += n;
                self.left -= n as u32;
                continue;
            }
            let need = if self.started { 5 } else { 4 };
            let take = (need - self.got).min(bytes.len() - i);
            self.header[self.got..self.got + take].copy_from_slice(&bytes[i..i + take]);
            self.got += take;
            i += take;
            if self.got < need {
                continue;
            }
            let h = self.header;
            let length = if self.started {
                if matches!(h[0], b'S' | b'Q') {
                    self.requests += 1;
                }
                if h[0] == b'C' {
                    self.closes += 1;
                }
                u32::from_be_bytes([h[1], h[2], h[3], h[4]])
            } else {
                u32::from_be_bytes([h[0], h[1], h[2], h[3]])
            };
            self.left = length.saturating_sub(4);
            self.got = 0;
            self.started = true;
        }
    }

    pub fn requests(&self) -> u64 {
        self.requests
    }

    /// Close messages (of a statement or portal) written.
    pub fn closes(&self) -> u64 {
        self.closes
    }
}

/// The server's side of a stream, its framing checked; writes pass through, counted.
pub struct Checked<S> {
    inner: S,
    framing: Framing,
    outgoing: Outgoing,
    desync: Desync,
    key: BackendKey,
}

/// The backend's process id and cancel key, as BackendKeyData gave them at start-up
/// (tokio-postgres keeps them private).
#[derive(Debug, Clone, Default)]
pub struct BackendKey(Arc<OnceLock<(i32, i32)>>);

impl BackendKey {
    pub fn process_id(&self) -> Option<i32> {
        self.0.get().map(|k| k.0)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Checked<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(v) = this.desync.violation() {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, *v)));
        }
        let start = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        match this.framing.follow(&buf.filled()[start..]) {
            Ok(()) => {
                if let Some(k) = this.framing.backend_key() {
                    let _ = this.key.0.set(k);
                }
                this.desync.0.status.store(this.framing.transaction_status(), Ordering::Release);
                if this.desync.0.ready.swap(this.framing.1, Ordering::AcqRel) != this.framing.1 {
                    this.desync.0.readied.notify_waiters();
                }
                Poll::Ready(Ok(()))
            }
            Err(v) => {
                // None of this read reaches the decoder, which would otherwise wait for the length.
                buf.set_filled(start);
                let _ = this.desync.0.violation.set(v);
                Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, v)))
            }
        }
    }
}

impl<S> Checked<S> {
    fn wrote<'a>(&mut self, bufs: impl IntoIterator<Item = &'a [u8]>, mut n: usize) {
        for b in bufs {
            let take = n.min(b.len());
            self.outgoing.follow(&b[..take]);
            n -= take;
            if n == 0 {
                break;
            }
        }
        self.desync.0.closes.store(self.outgoing.closes(), Ordering::Release);
        self.desync.0.requests.store(self.outgoing.requests(), Ordering::Release);
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Checked<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let n = ready!(Pin::new(&mut this.inner).poll_write(cx, buf))?;
        this.wrote([buf], n);
        Poll::Ready(Ok(n))
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let n = ready!(Pin::new(&mut this.inner).poll_write_vectored(cx, bufs))?;
        this.wrote(bufs.iter().map(|b| &**b), n);
        Poll::Ready(Ok(n))
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl<S: TlsStream + Unpin> TlsStream for Checked<S> {
    fn channel_binding(&self) -> ChannelBinding {
        self.inner.channel_binding()
    }
}

/// A TLS connector whose streams come out [`Checked`], reporting to `desync`.
pub struct CheckedConnect<T> {
    pub tls: T,
    pub desync: Desync,
    pub key: BackendKey,
}

impl<S, T: TlsConnect<S>> TlsConnect<S> for CheckedConnect<T>
where
    T::Future: Send + 'static,
    T::Stream: Send + 'static,
{
    type Stream = Checked<T::Stream>;
    type Error = T::Error;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<Self::Stream, T::Error>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        let (handshake, desync, key) = (self.tls.connect(stream), self.desync, self.key);
        Box::pin(async move {
            let inner = handshake.await?;
            Ok(Checked { inner, framing: Framing::default(), outgoing: Outgoing::default(), desync, key })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(t: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![t];
        m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    #[test]
    fn the_last_ready_for_query_status_is_kept_in_any_split() {
        let bytes = [message(b'Z', b"I"), message(b'C', b"BEGIN\0"), message(b'Z', b"T"), message(b'Z', b"E")].concat();
        for split in 0..bytes.len() {
            let mut f = Framing::default();
            f.follow(&bytes[..split]).unwrap();
            f.follow(&bytes[split..]).unwrap();
            assert_eq!(f.transaction_status(), b'E', "split at {split}");
        }
        let mut f = Framing::default();
        f.follow(&message(b'Z', b"T")[..5]).unwrap();
        assert_eq!(f.transaction_status(), 0, "not before the status byte itself");
    }

    #[test]
    fn backend_key_data_is_read_in_any_split() {
        let mut body = 4242i32.to_be_bytes().to_vec();
        body.extend_from_slice(&(-7i32).to_be_bytes());
        let bytes = [message(b'R', &[0, 0, 0, 0]), message(b'K', &body), message(b'Z', b"I")].concat();
        for cut in 0..bytes.len() {
            let mut f = Framing::default();
            f.follow(&bytes[..cut]).unwrap();
            f.follow(&bytes[cut..]).unwrap();
            assert_eq!(f.backend_key(), Some((4242, -7)), "cut at {cut}");
        }
    }

    #[test]
    fn real_conversations_pass_in_any_split() {
        let mut stream = Vec::new();
        stream.extend(message(b'R', &0u32.to_be_bytes()));
        stream.extend(message(b'S', b"server_version\x0016.1\x00"));
        stream.extend(message(b'Z', b"I"));
        stream.extend(message(b'T', &[0; 40]));
        stream.extend(message(b'D', &vec![7; 100_000]));
        stream.extend(message(b'n', b""));
        stream.extend(message(b't', &vec![0; 262_142]));
        stream.extend(message(b'C', b"SELECT 1\x00"));
        for chunk in [1, 2, 3, 5, 7, 4096, stream.len()] {
            let mut f = Framing::default();
            for piece in stream.chunks(chunk) {
                f.follow(piece).unwrap_or_else(|v| panic!("split {chunk}: {v}"));
            }
            assert!(matches!(f.0, Position::Header { got: 0, .. }), "split {chunk}: ends between messages");
        }
    }

    #[test]
    fn garbage_and_absurd_lengths_fail_at_their_header() {
        let cases: [(&[u8], Violation); 6] = [
            (b"HTTP/1.1 400 Bad Request\r\n", Violation { type_byte: b'H', length: Some(0x5454_502f) }),
            (b"\x16\x03\x01", Violation { type_byte: 0x16, length: None }),
            (b"E\x7f\xff\xff\xff", Violation { type_byte: b'E', length: Some(0x7fff_ffff) }),
            (b"D\x40\x00\x00\x01", Violation { type_byte: b'D', length: Some(MESSAGE_MAX + 1) }),
            (b"Z\x00\x00\x00\x03", Violation { type_byte: b'Z', length: Some(3) }),
            (b"R\x00\x00\x75\x31", Violation { type_byte: b'R', length: Some(SHORT_MESSAGE_MAX + 1) }),
        ];
        for (bytes, expected) in cases {
            let mut f = Framing::default();
            assert_eq!(f.follow(bytes), Err(expected));
            let text = expected.to_string();
            assert!(text.contains("not PostgreSQL protocol") && text.contains("tunnel"), "{text}");
            // After a valid message too, and split at every point.
            let mut stream = message(b'Z', b"I");
            stream.extend_from_slice(bytes);
            for at in 0..stream.len() {
                let mut f = Framing::default();
                let r = f.follow(&stream[..at]).and_then(|()| f.follow(&stream[at..]));
                assert_eq!(r, Err(expected), "split at {at}");
            }
        }
        let mut f = Framing::default();
        assert_eq!(f.follow(&message(b'D', &[0; 10])), Ok(()));
        assert_eq!(f.follow(&message(b'D', &[0; 10])[..3]), Ok(()), "a partial header is not an error yet");
    }

    #[test]
    fn requests_written_and_ready_for_query_read_are_counted_in_any_split() {
        let mut out = Vec::new();
        out.extend_from_slice(&12u32.to_be_bytes());
        out.extend_from_slice(&[0, 3, 0, 0, b'u', 0, b'x', 0]);
        out.extend(message(b'p', b"secret\x00"));
        out.extend(message(b'P', b"\x00select 1\x00\x00\x00"));
        out.extend(message(b'S', b""));
        out.extend(message(b'Q', b"select 2\x00"));
        out.extend(message(b'B', &[0; 300]));
        out.extend(message(b'C', b"Ss1\x00"));
        out.extend(message(b'S', b""));
        for chunk in [1, 2, 3, 5, 7, out.len()] {
            let mut o = Outgoing::default();
            for piece in out.chunks(chunk) {
                o.follow(piece);
            }
            assert_eq!((o.requests(), o.closes()), (3, 1), "split {chunk}");
        }
        let mut f = Framing::default();
        f.follow(&[message(b'Z', b"I"), message(b'C', b"SELECT 1\x00"), message(b'Z', b"I")].concat()).unwrap();
        assert_eq!(f.1, 2);
        let d = Desync::default();
        assert!(!d.settled(), "start-up has not ended");
        d.0.ready.store(1, Ordering::Release);
        assert!(d.settled());
        d.0.requests.store(1, Ordering::Release);
        assert!(!d.settled(), "a request is in flight");
        d.0.ready.store(2, Ordering::Release);
        assert!(d.settled());
        // A dropped statement's Close, due but not yet written, would go out ahead of the next request.
        d.close_due();
        assert!(!d.settled(), "a Close is due");
        d.0.closes.store(1, Ordering::Release);
        d.0.requests.store(2, Ordering::Release);
        assert!(!d.settled(), "its Sync is unanswered");
        d.0.ready.store(3, Ordering::Release);
        assert!(d.settled());
    }

    #[test]
    fn explain_turns_connection_lost_into_protocol_error_only_after_a_violation() {
        let d = Desync::default();
        let lost = || Error::ConnectionLost { detail: "connection closed".into(), sent: true };
        assert_eq!(d.explain(lost()).code(), "CONNECTION_LOST");
        d.0.violation.set(Violation { type_byte: b'H', length: Some(1) }).unwrap();
        assert_eq!(d.explain(lost()).code(), "PROTOCOL_ERROR");
        assert_eq!(d.explain(Error::Closed).code(), "CLIENT_CLOSED");
    }
}
