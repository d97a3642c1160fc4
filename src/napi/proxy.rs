//! `NativeProxy`: the local auth proxy (`src/proxy/`), started and closed from JavaScript.

use super::convert::{AwsCredentials, NativeError};
use super::settle;
use crate::config::{self, Inputs, Secret};
use crate::error::Error;
use crate::proxy::{self, Log, Proxy, Settings};
use napi::bindgen_prelude::{Either, PromiseRaw};
use napi::Env;
use napi_derive::napi;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How the proxy listens and whom it lets in.
#[napi(object)]
pub struct ProxyListen {
    /// Address to listen on (default `127.0.0.1`). Only loopback unless `allowNonLoopback`.
    pub host: Option<String>,
    /// Port (default 5433; 0 picks a free one).
    pub port: Option<u32>,
    /// Directory for a unix socket `.s.PGSQL.<port>` (mode 0600), as libpq looks for it.
    pub unix_socket_dir: Option<String>,
    /// Allows a non-loopback `host`; requires `localPassword`.
    pub allow_non_loopback: Option<bool>,
    /// A password every client must send (cleartext, on the local connection). Never logged.
    pub local_password: Option<String>,
    /// Client connections at once (default 100); more are answered with SQLSTATE 53300.
    pub max_clients: Option<u32>,
    /// Dial the tunnel and complete TLS before listening, so a broken tunnel fails the start
    /// (default true).
    pub check: Option<bool>,
    /// Log each session on stderr (`DEBUG=dsql-tunnel`).
    pub debug: Option<bool>,
}

/// The proxy's counters.
#[napi(object)]
pub struct ProxyStats {
    pub accepted: f64,
    pub refused: f64,
    pub failed: f64,
    pub cancels: f64,
    pub active: u32,
}

/// A running proxy. Used through `startProxy` in `lib/proxy.js`.
#[napi]
pub struct NativeProxy {
    proxy: Arc<Proxy>,
}

// Only the #[napi] export below calls it, and `cargo test` builds no exports.
#[cfg_attr(test, allow(dead_code))]
fn stderr_log() -> Log {
    Arc::new(|event, fields| {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let stamp = crate::token::iso8601(now.as_secs());
        let mut line = format!("dsql-tunnel {}.{:03}Z {event}", stamp.trim_end_matches('Z'), now.subsec_millis());
        for (k, v) in fields {
            line.push(' ');
            line.push_str(k);
            line.push('=');
            line.push_str(v);
            if k.ends_with("Ms") {
                line.push_str("ms");
            }
        }
        eprintln!("{line}");
    })
}

fn listen_addr(l: &ProxyListen) -> Result<SocketAddr, Error> {
    let host = l.host.as_deref().unwrap_or("127.0.0.1");
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let ip: IpAddr = if bare.eq_ignore_ascii_case("localhost") {
        IpAddr::from([127, 0, 0, 1])
    } else {
        bare.parse().map_err(|_| {
            Error::config("listen", format!("listen address {host:?} is not an IP address (e.g. 127.0.0.1 or ::1)"))
        })?
    };
    let port = l.port.unwrap_or(5433);
    let port = u16::try_from(port).map_err(|_| Error::config("listen", "the listen port must be from 0 to 65535"))?;
    Ok(SocketAddr::new(ip, port))
}

/// The proxies' own thread: a current-thread runtime that runs every listener, session and relay,
/// started with the first proxy. A relay is woken per message each way; on its own thread that
/// costs no work-stealing scheduler and never waits behind the driver's tasks (measured: about
/// 1 µs less CPU per pgbench transaction than on the shared runtime's worker). None when the
/// thread cannot be started: the proxy then runs on the shared runtime.
fn proxy_runtime() -> Option<&'static tokio::runtime::Handle> {
    static RUNTIME: OnceLock<Option<tokio::runtime::Handle>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            let handle = rt.handle().clone();
            std::thread::Builder::new()
                .name("dsql-tunnel-proxy".into())
                .spawn(move || rt.block_on(std::future::pending::<()>()))
                .ok()?;
            Some(handle)
        })
        .as_ref()
}

/// Resolves the upstream settings as a client would, checks the tunnel (unless `check` is
/// false) and starts listening. Settles with a `NativeProxy` or a `NativeError`.
#[napi(catch_unwind, ts_return_type = "Promise<NativeProxy | NativeError>")]
#[cfg_attr(test, allow(dead_code))]
pub fn start_native_proxy<'env>(
    env: &'env Env,
    options: HashMap<String, String>,
    connection_string: Option<String>,
    environment: HashMap<String, String>,
    credentials: Option<AwsCredentials>,
    listen: ProxyListen,
) -> napi::Result<PromiseRaw<'env, Either<NativeProxy, NativeError>>> {
    let inputs = Inputs { options, connection_string, env: environment };
    let credentials = credentials.map(aws_credential_types::Credentials::from);
    let work = async move {
        let config = config::resolve(&inputs)?;
        let settings = Settings {
            config,
            credentials,
            listen: listen_addr(&listen)?,
            unix_dir: listen.unix_socket_dir.as_ref().map(Into::into),
            allow_non_loopback: listen.allow_non_loopback.unwrap_or(false),
            local_password: listen.local_password.filter(|p| !p.is_empty()).map(Secret::new),
            max_clients: listen.max_clients.map_or(proxy::DEFAULT_MAX_CLIENTS, |n| n as usize),
            check: listen.check.unwrap_or(true),
            log: listen.debug.unwrap_or(false).then(stderr_log),
        };
        let proxy = match proxy_runtime() {
            Some(rt) => rt
                .spawn(super::unpanicked(Proxy::start(settings)))
                .await
                .map_err(|e| Error::Internal { detail: format!("the proxy's start ended: {e}") })??,
            None => Proxy::start(settings).await?,
        };
        Ok(NativeProxy { proxy: Arc::new(proxy) })
    };
    settle(env, work)
}

#[napi]
impl NativeProxy {
    /// The address it listens on.
    #[napi(getter)]
    pub fn host(&self) -> String {
        self.proxy.local_addr().ip().to_string()
    }

    #[napi(getter)]
    pub fn port(&self) -> u32 {
        self.proxy.local_addr().port().into()
    }

    /// The unix socket's path, when one was asked for.
    #[napi(getter)]
    pub fn socket_path(&self) -> Option<String> {
        self.proxy.socket_path().map(|p| p.display().to_string())
    }

    #[napi]
    pub fn stats(&self) -> ProxyStats {
        let s = self.proxy.stats();
        ProxyStats {
            accepted: s.accepted as f64,
            refused: s.refused as f64,
            failed: s.failed as f64,
            cancels: s.cancels as f64,
            active: s.active as u32,
        }
    }

    /// Stops accepting, lets open sessions finish for up to `graceMillis`, then closes the rest.
    /// Settles with the number of sessions closed by force. Idempotent.
    #[napi(ts_return_type = "Promise<number>")]
    pub fn close<'env>(&self, env: &'env Env, grace_millis: f64) -> napi::Result<PromiseRaw<'env, u32>> {
        let proxy = self.proxy.clone();
        let grace = Duration::from_millis(grace_millis.max(0.0) as u64);
        env.spawn_future(async move { Ok(proxy.close(grace).await as u32) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses() {
        let l = |host: Option<&str>, port| ProxyListen {
            host: host.map(str::to_string),
            port,
            unix_socket_dir: None,
            allow_non_loopback: None,
            local_password: None,
            max_clients: None,
            check: None,
            debug: None,
        };
        assert_eq!(listen_addr(&l(None, None)).unwrap(), "127.0.0.1:5433".parse().unwrap());
        assert_eq!(listen_addr(&l(Some("[::1]"), Some(0))).unwrap(), "[::1]:0".parse().unwrap());
        assert_eq!(listen_addr(&l(Some("box.example"), None)).unwrap_err().code(), "INVALID_CONFIG");
    }
}
