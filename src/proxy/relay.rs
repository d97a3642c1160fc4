//! The session relay: bytes copied both ways through one fixed buffer per direction, no message
//! parsing. A direction reads only after its last write finished, so a slow reader on either
//! side stops the reads from the other (backpressure, with bounded memory per session).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

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

enum Side {
    ReadEof,
    ReadFailed,
    WriteFailed,
}

async fn pump<R, W>(r: &mut R, w: &mut W, count: &AtomicU64) -> Side
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; BUFFER];
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) => {
                let _ = w.shutdown().await;
                return Side::ReadEof;
            }
            Ok(n) => n,
            Err(_) => return Side::ReadFailed,
        };
        if w.write_all(&buf[..n]).await.is_err() || w.flush().await.is_err() {
            return Side::WriteFailed;
        }
        count.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// Relays until either side is done. An upstream that ends takes the client connection with it;
/// a client that ends gets its Terminate (already relayed) and the TLS close to the server.
pub async fn relay<C, U>(client: C, upstream: U, counts: &Counts) -> End
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let (mut cr, mut cw) = tokio::io::split(client);
    let (mut ur, mut uw) = tokio::io::split(upstream);
    let up = pump(&mut cr, &mut uw, &counts.up);
    let down = pump(&mut ur, &mut cw, &counts.down);
    tokio::pin!(up, down);
    tokio::select! {
        side = &mut down => match side {
            Side::ReadEof => End::UpstreamClosed,
            Side::ReadFailed => End::UpstreamError,
            Side::WriteFailed => End::ClientError,
        },
        side = &mut up => match side {
            Side::ReadEof => {
                let _ = tokio::time::timeout(DRAIN, &mut down).await;
                End::ClientClosed
            }
            Side::ReadFailed => End::ClientError,
            Side::WriteFailed => End::UpstreamError,
        },
    }
}
