//! Binding, accepting, limits and shutdown.

use super::{session, CredentialCache, Settings, Shared, MAX_HANDSHAKES};
use crate::error::Error;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{watch, Notify, Semaphore};

/// After the grace period, how long closed sessions get to finish their close.
const FORCE_WAIT: Duration = Duration::from_secs(2);

#[derive(Default)]
pub(super) struct Counters {
    pub accepted: AtomicU64,
    pub refused: AtomicU64,
    pub failed: AtomicU64,
    pub cancels: AtomicU64,
    /// Tasks alive: connections in start-up and sessions.
    pub live: AtomicUsize,
    pub idle: Notify,
}

impl Counters {
    /// Resolves once no connection or session task is alive.
    async fn all_ended(&self) {
        loop {
            let notified = self.idle.notified();
            if self.live.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// A snapshot of the proxy's counters.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stats {
    /// Client connections accepted (cancel requests included).
    pub accepted: u64,
    /// Refused locally: over the limits, or a wrong local password.
    pub refused: u64,
    /// Upstream connections that could not be opened.
    pub failed: u64,
    pub cancels: u64,
    /// Sessions relaying now.
    pub active: usize,
}

/// A running proxy. `close` stops it; dropping it without `close` stops accepting at once.
pub struct Proxy {
    shared: Arc<Shared>,
    addr: SocketAddr,
    socket_path: Option<PathBuf>,
    stop: watch::Sender<bool>,
    force: watch::Sender<bool>,
    accepting: tokio::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// A task's share of `live`; the last one out wakes `close`.
pub(super) struct Alive(Arc<Shared>);

impl Alive {
    fn new(shared: &Arc<Shared>) -> Alive {
        shared.stats.live.fetch_add(1, Ordering::SeqCst);
        Alive(shared.clone())
    }
}

impl Drop for Alive {
    fn drop(&mut self) {
        if self.0.stats.live.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.stats.idle.notify_waiters();
        }
    }
}

fn bind_error(addr: String, e: io::Error) -> Error {
    Error::config("listen", format!("cannot listen on {addr}: {e}"))
}

impl Proxy {
    /// Checks the settings, optionally the tunnel and TLS, binds and starts accepting.
    pub async fn start(settings: Settings) -> Result<Proxy, Error> {
        let Settings {
            config,
            credentials,
            listen,
            unix_dir,
            allow_non_loopback,
            local_password,
            max_clients,
            check,
            log,
        } = settings;
        if !listen.ip().is_loopback() {
            if !allow_non_loopback {
                return Err(Error::config(
                    "listen",
                    format!(
                        "{listen} is not a loopback address: anyone who can reach the proxy acts with its AWS \
                         identity. Listen on 127.0.0.1 or ::1, or allow other addresses explicitly together with \
                         a local password"
                    ),
                ));
            }
            if local_password.is_none() {
                return Err(Error::config(
                    "listen",
                    format!("listening on {listen} (not loopback) needs a local password that clients must send"),
                ));
            }
        }
        if max_clients == 0 {
            return Err(Error::config("maxClients", "maxClients must be at least 1"));
        }
        let tls = crate::tls::client_config(&config)?;
        let shared = Arc::new(Shared {
            credentials: CredentialCache { given: credentials, cached: Default::default() },
            config,
            tls,
            cancels: Default::default(),
            local_password,
            log,
            sessions: Arc::new(Semaphore::new(max_clients)),
            max_clients,
            stats: Default::default(),
            socket_owner: Default::default(),
        });
        if check {
            session::check(&shared).await?;
        }
        let tcp = TcpListener::bind(listen).await.map_err(|e| bind_error(listen.to_string(), e))?;
        let addr = tcp.local_addr().map_err(|e| bind_error(listen.to_string(), e))?;
        let (stop, _) = watch::channel(false);
        let (force, _) = watch::channel(false);
        let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
        let mut tasks = Vec::new();
        let mut socket_path = None;
        if let Some(dir) = unix_dir {
            let path = dir.join(format!(".s.PGSQL.{}", addr.port()));
            let shown = path.display().to_string();
            // A socket left by a proxy that was killed: only a socket file is replaced, never another file.
            if std::fs::symlink_metadata(&path).is_ok_and(|m| {
                use std::os::unix::fs::FileTypeExt;
                m.file_type().is_socket()
            }) {
                let _ = std::fs::remove_file(&path);
            }
            let unix = UnixListener::bind(&path).map_err(|e| bind_error(shown.clone(), e))?;
            {
                use std::os::unix::fs::{MetadataExt, PermissionsExt};
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                    .map_err(|e| bind_error(shown.clone(), e))?;
                let owner = std::fs::metadata(&path).map_err(|e| bind_error(shown.clone(), e))?.uid();
                let _ = shared.socket_owner.set(owner);
            }
            let (sh, hs, st, fo) = (shared.clone(), handshakes.clone(), stop.subscribe(), force.subscribe());
            tasks.push(tokio::spawn(accept_unix(unix, sh, hs, st, fo)));
            socket_path = Some(path);
        }
        let (sh, hs, st, fo) = (shared.clone(), handshakes, stop.subscribe(), force.subscribe());
        tasks.push(tokio::spawn(accept_tcp(tcp, sh, hs, st, fo)));
        shared.log("proxy-listening", &[("addr", addr.to_string()), ("maxClients", max_clients.to_string())]);
        Ok(Proxy { shared, addr, socket_path, stop, force, accepting: tokio::sync::Mutex::new(tasks) })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn socket_path(&self) -> Option<&PathBuf> {
        self.socket_path.as_ref()
    }

    pub fn stats(&self) -> Stats {
        let s = &self.shared.stats;
        Stats {
            accepted: s.accepted.load(Ordering::Relaxed),
            refused: s.refused.load(Ordering::Relaxed),
            failed: s.failed.load(Ordering::Relaxed),
            cancels: s.cancels.load(Ordering::Relaxed),
            active: self.shared.max_clients - self.shared.sessions.available_permits(),
        }
    }

    /// Stops accepting, lets open sessions finish for up to `grace`, then closes the rest.
    /// Returns how many sessions were closed by force. Idempotent.
    pub async fn close(&self, grace: Duration) -> usize {
        self.stop.send_replace(true);
        for task in self.accepting.lock().await.drain(..) {
            let _ = task.await;
        }
        if let Some(p) = &self.socket_path {
            let _ = std::fs::remove_file(p);
        }
        let stats = &self.shared.stats;
        let idle = stats.all_ended();
        let forced = if tokio::time::timeout(grace, idle).await.is_err() {
            let n = self.shared.max_clients - self.shared.sessions.available_permits();
            self.force.send_replace(true);
            let idle = stats.all_ended();
            let _ = tokio::time::timeout(FORCE_WAIT, idle).await;
            n
        } else {
            0
        };
        self.shared.log("proxy-closed", &[("forced", forced.to_string())]);
        forced
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.send_replace(true);
        self.force.send_replace(true);
    }
}

macro_rules! accept_loop {
    ($name:ident, $listener:ty, $peer:expr) => {
        async fn $name(
            listener: $listener,
            shared: Arc<Shared>,
            handshakes: Arc<Semaphore>,
            mut stop: watch::Receiver<bool>,
            force: watch::Receiver<bool>,
        ) {
            loop {
                // A start-up slot first: while all are taken, new clients wait in the kernel's backlog.
                let permit = tokio::select! {
                    biased;
                    _ = stop.wait_for(|s| *s) => return,
                    p = handshakes.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => return,
                    },
                };
                let accepted = tokio::select! {
                    biased;
                    _ = stop.wait_for(|s| *s) => return,
                    a = listener.accept() => a,
                };
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    // EMFILE and friends: back off instead of spinning.
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let id = shared.stats.accepted.fetch_add(1, Ordering::Relaxed) + 1;
                let Some(peer) = $peer(&stream, peer, &shared) else {
                    shared.stats.refused.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let alive = Alive::new(&shared);
                let shared = shared.clone();
                let force = force.clone();
                tokio::spawn(async move {
                    session::serve(shared, stream, id, peer, permit, force).await;
                    drop(alive);
                });
            }
        }
    };
}

fn tcp_peer(stream: &tokio::net::TcpStream, peer: SocketAddr, _: &Shared) -> Option<String> {
    stream.set_nodelay(true).ok();
    Some(peer.to_string())
}

/// Only the socket's owner may use it. Mode 0600 says so too, but it is set just after bind, and
/// a connection made in between would wait in the backlog: the peer's uid is checked as well.
fn unix_peer(stream: &tokio::net::UnixStream, _: tokio::net::unix::SocketAddr, shared: &Shared) -> Option<String> {
    let uid = stream.peer_cred().ok()?.uid();
    if Some(uid) != shared.socket_owner.get().copied() {
        shared.log("proxy-refused", &[("peer", format!("unix uid {uid}")), ("reason", "not-the-owner".into())]);
        return None;
    }
    Some(format!("unix uid {uid}"))
}

accept_loop!(accept_tcp, TcpListener, tcp_peer);
accept_loop!(accept_unix, UnixListener, unix_peer);
