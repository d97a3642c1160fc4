//! `dsql-tunnel proxy`: a local PostgreSQL listener that opens, for every client connection,
//! one upstream connection through the tunnel (TLS with the DSQL hostname, a fresh token for the
//! client's user) and then relays bytes both ways.
//!
//! - `listener` binds (loopback unless allowed otherwise), accepts, bounds, shuts down
//! - `session`  one client: its start-up, local authentication, upstream, relay, log
//! - `upstream` dial → TLS → start-up/authentication; cancels upstream
//! - `cancel`   the proxy's own BackendKeyData → the upstream connection's
//! - `relay`    bytes both ways, fixed buffers, counted
//! - `wire`     the handful of messages the proxy reads or writes itself

mod cancel;
mod listener;
mod relay;
mod session;
mod upstream;
mod wire;

pub use listener::{Proxy, Stats};
pub use relay::End;

use crate::config::{Config, Secret};
use crate::error::Error;
use crate::token::{self, CredentialSource};
use aws_credential_types::Credentials;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Receives session events (name, fields). Fields never hold a token or password.
pub type Log = Arc<dyn Fn(&'static str, &[(&'static str, String)]) + Send + Sync>;

/// Everything the proxy needs to start.
pub struct Settings {
    /// The upstream settings (host, tunnel, TLS, default user and database, password or minting).
    pub config: Config,
    /// Credentials handed over by the caller; else the AWS credential chain.
    pub credentials: Option<Credentials>,
    pub listen: SocketAddr,
    /// A directory for a unix socket `.s.PGSQL.<port>` (mode 0600), as libpq looks for it.
    pub unix_dir: Option<PathBuf>,
    /// Permits a non-loopback `listen`; only together with `local_password`.
    pub allow_non_loopback: bool,
    /// Clients must send this password (cleartext, on the local connection) before any upstream work.
    pub local_password: Option<Secret>,
    pub max_clients: usize,
    /// Dial the tunnel and complete TLS once before listening, so a broken tunnel fails the start.
    pub check: bool,
    pub log: Option<Log>,
}

pub const DEFAULT_MAX_CLIENTS: usize = 100;
/// Clients still in their start-up (before a session slot is taken), at most.
const MAX_HANDSHAKES: usize = 64;
/// A client must finish its start-up packet(s) and local password within this time.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Credentials for minting, loaded once and refreshed before they expire.
struct CredentialCache {
    given: Option<Credentials>,
    cached: tokio::sync::Mutex<Option<(Credentials, Instant)>>,
}

/// Chain credentials without an expiry (static keys) are re-read after this long.
const CREDENTIALS_REFRESH: Duration = Duration::from_secs(300);

impl CredentialCache {
    async fn get(&self, config: &Config) -> Result<Option<Credentials>, Error> {
        if !config.mints_tokens() {
            return Ok(None);
        }
        if let Some(c) = &self.given {
            return Ok(Some(c.clone()));
        }
        let Some(region) = config.region.clone() else {
            return Ok(None);
        };
        let mut cached = self.cached.lock().await;
        if let Some((c, at)) = cached.as_ref() {
            let fresh = match c.expiry() {
                Some(exp) => exp > SystemTime::now() + CREDENTIALS_REFRESH,
                None => at.elapsed() < CREDENTIALS_REFRESH,
            };
            if fresh {
                return Ok(Some(c.clone()));
            }
        }
        let source = CredentialSource::Chain { profile: config.profile.clone(), region };
        let c = token::credentials(&source).await?;
        *cached = Some((c.clone(), Instant::now()));
        Ok(Some(c))
    }
}

/// What every session shares.
struct Shared {
    config: Config,
    tls: Arc<rustls::ClientConfig>,
    credentials: CredentialCache,
    cancels: cancel::CancelMap,
    local_password: Option<Secret>,
    log: Option<Log>,
    sessions: Arc<tokio::sync::Semaphore>,
    max_clients: usize,
    stats: listener::Counters,
    /// The uid owning the unix socket: the only peer it accepts.
    socket_owner: std::sync::OnceLock<u32>,
}

impl Shared {
    fn log(&self, event: &'static str, fields: &[(&'static str, String)]) {
        if let Some(log) = &self.log {
            log(event, fields);
        }
    }
}
