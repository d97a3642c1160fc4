//! The session relay: bytes copied both ways through one fixed buffer per direction, no message
//! parsing. One future owns both connections and moves bytes in whichever direction is ready, so a
//! session costs one task and no lock. A direction reads only into its own buffer's free space,
//! so a slow reader on either side stops the reads from the other (backpressure, with bounded
//! memory per session). What one wake-up finds ready is read before it is written, and a
//! direction flushes only once its reader has nothing more: a pipelined burst leaves as one write
//! (one TLS record upstream) instead of one per read.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Per direction: bytes in flight at most (plus what TLS itself buffers).
pub const BUFFER: usize = 16 * 1024;
/// After the client hung up, how long the server gets to close its side.
const DRAIN: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
pub struct Counts {
    /// Client → upstream.
    pub up: AtomicU64,
    /// Upstream → client.
    pub down: AtomicU64,
}

/// Why a relay ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    ClientClosed,
    ClientError,
    UpstreamClosed,
    UpstreamError,
}

impl End {
    pub fn as_str(self) -> &'static str {
        match self {
            End::ClientClosed => "client-closed",
            End::ClientError => "client-error",
            End::UpstreamClosed => "upstream-closed",
            End::UpstreamError => "upstream-error",
        }
    }
}

/// How a direction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    /// Its reader reached the end; what was read went out and the writer was shut down.
    ReadEof,
    ReadFailed,
    WriteFailed,
}

/// One direction: `buf[start..end]` is read and not yet written.
struct Half {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    eof: bool,
    unflushed: bool,
    done: Option<Side>,
}

impl Half {
    fn new() -> Self {
        Half { buf: vec![0u8; BUFFER].into_boxed_slice(), start: 0, end: 0, eof: false, unflushed: false, done: None }
    }

    /// Moves what is ready from `r` to `w`. Ready once the direction has ended.
    fn poll<R, W>(&mut self, cx: &mut Context<'_>, r: &mut R, w: &mut W, count: &AtomicU64) -> Poll<Side>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        if let Some(side) = self.done {
            return Poll::Ready(side);
        }
        let side = ready!(self.step(cx, r, w, count));
        self.done = Some(side);
        Poll::Ready(side)
    }

    fn step<R, W>(&mut self, cx: &mut Context<'_>, r: &mut R, w: &mut W, count: &AtomicU64) -> Poll<Side>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        loop {
            // Read while there is room and the reader has more, so that a burst is written at once.
            if !self.eof && self.end < self.buf.len() {
                let mut space = ReadBuf::new(&mut self.buf[self.end..]);
                match Pin::new(&mut *r).poll_read(cx, &mut space) {
                    Poll::Ready(Ok(())) => {
                        let n = space.filled().len();
                        if n == 0 {
                            self.eof = true;
                        } else {
                            self.end += n;
                            continue;
                        }
                    }
                    Poll::Ready(Err(_)) => return Poll::Ready(Side::ReadFailed),
                    Poll::Pending => {}
                }
            }
            if self.start < self.end {
                match Pin::new(&mut *w).poll_write(cx, &self.buf[self.start..self.end]) {
                    Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(Side::WriteFailed),
                    Poll::Ready(Ok(n)) => {
                        self.start += n;
                        self.unflushed = true;
                        count.fetch_add(n as u64, Ordering::Relaxed);
                        if self.start == self.end {
                            self.start = 0;
                            self.end = 0;
                        }
                        continue;
                    }
                    // The other side is not reading: neither is this direction until it does.
                    Poll::Pending => return Poll::Pending,
                }
            }
            // Nothing buffered, and the reader has nothing more for now (or has ended).
            if self.unflushed {
                if ready!(Pin::new(&mut *w).poll_flush(cx)).is_err() {
                    return Poll::Ready(Side::WriteFailed);
                }
                self.unflushed = false;
            }
            if self.eof {
                // A failed shutdown changes nothing: the reader has ended either way.
                let _ = ready!(Pin::new(&mut *w).poll_shutdown(cx));
                return Poll::Ready(Side::ReadEof);
            }
            return Poll::Pending;
        }
    }
}

/// Relays until either side is done. An upstream that ends takes the client connection with it;
/// a client that ends gets its Terminate (already relayed) and the TLS close to the server.
pub async fn relay<C, U>(mut client: C, mut upstream: U, counts: &Counts) -> End
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let mut up = Half::new();
    let mut down = Half::new();
    let first = poll_fn(|cx| {
        let d = down.poll(cx, &mut upstream, &mut client, &counts.down);
        if let Poll::Ready(side) = d {
            return Poll::Ready(Err(side));
        }
        let u = up.poll(cx, &mut client, &mut upstream, &counts.up);
        u.map(Ok)
    })
    .await;
    match first {
        Err(Side::ReadEof) => End::UpstreamClosed,
        Err(Side::ReadFailed) => End::UpstreamError,
        Err(Side::WriteFailed) => End::ClientError,
        Ok(Side::ReadEof) => {
            let rest = poll_fn(|cx| down.poll(cx, &mut upstream, &mut client, &counts.down));
            let _ = tokio::time::timeout(DRAIN, rest).await;
            End::ClientClosed
        }
        Ok(Side::ReadFailed) => End::ClientError,
        Ok(Side::WriteFailed) => End::UpstreamError,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt};

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
    }

    #[test]
    fn bytes_go_both_ways_counted_and_the_client_close_reaches_the_server() {
        runtime().block_on(async {
            let (client, mut client_peer) = duplex(64);
            let (upstream, mut server) = duplex(64);
            let counts = Counts::default();
            let relay = relay(client, upstream, &counts);
            let talk = async {
                client_peer.write_all(b"hello").await.unwrap();
                let mut got = [0u8; 5];
                server.read_exact(&mut got).await.unwrap();
                assert_eq!(&got, b"hello");
                // More than the pipes hold at once: it must flow through in pieces.
                let big = vec![7u8; 10_000];
                let (w, r) = tokio::join!(server.write_all(&big), async {
                    let mut back = vec![0u8; big.len()];
                    client_peer.read_exact(&mut back).await.map(|_| back)
                });
                w.unwrap();
                assert_eq!(r.unwrap(), big);
                drop(client_peer);
                let mut rest = Vec::new();
                server.read_to_end(&mut rest).await.unwrap();
                assert!(rest.is_empty());
                drop(server);
            };
            let (end, ()) = tokio::join!(relay, talk);
            assert_eq!(end, End::ClientClosed);
            assert_eq!(counts.up.load(Ordering::Relaxed), 5);
            assert_eq!(counts.down.load(Ordering::Relaxed), 10_000);
        });
    }

    #[test]
    fn an_upstream_that_ends_closes_the_client() {
        runtime().block_on(async {
            let (client, mut client_peer) = duplex(64);
            let (upstream, mut server) = duplex(64);
            let counts = Counts::default();
            let relay = relay(client, upstream, &counts);
            let talk = async {
                server.write_all(b"bye").await.unwrap();
                drop(server);
                let mut got = Vec::new();
                client_peer.read_to_end(&mut got).await.unwrap();
                assert_eq!(got, b"bye");
            };
            let (end, ()) = tokio::join!(relay, talk);
            assert_eq!(end, End::UpstreamClosed);
        });
    }

    #[test]
    fn a_client_that_does_not_read_stops_the_reads_from_upstream() {
        runtime().block_on(async {
            let (client, _client_peer) = duplex(1024);
            let (upstream, mut server) = duplex(1024);
            let counts = Counts::default();
            let relay = relay(client, upstream, &counts);
            tokio::pin!(relay);
            let chunk = vec![1u8; 1024];
            let mut sent = 0usize;
            // The server writes until the relay stops taking bytes; bounded in count and time.
            for _ in 0..200 {
                tokio::select! {
                    _ = &mut relay => panic!("the relay ended"),
                    r = tokio::time::timeout(Duration::from_millis(50), server.write_all(&chunk)) => match r {
                        Ok(w) => { w.unwrap(); sent += chunk.len(); }
                        Err(_) => break,
                    },
                }
            }
            // Both pipes (1 KiB each) and one relay buffer, nothing more.
            assert!(sent <= BUFFER + 3 * 1024, "the relay took {sent} bytes from a client that reads none");
            assert!(sent >= BUFFER, "the relay stopped early: {sent} bytes");
        });
    }
}
