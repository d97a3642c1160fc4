//! One client connection: its first packets, the local password, the upstream connection for
//! its user, the greeting, then the relay until either side ends. Every step is logged.

use super::relay::{self, Counts};
use super::upstream;
use super::wire::{self, ErrorFields, FirstPacket};
use super::{Shared, STARTUP_TIMEOUT};
use crate::error::Error;
use crate::token;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{watch, OwnedSemaphorePermit};

/// SSLRequest / GSSENCRequest answered with 'N' before the real start-up, at most this often.
const MAX_NEGOTIATIONS: usize = 3;

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

/// Dials and completes TLS once, and makes sure a token can be minted: the start refuses with
/// the reason when the tunnel, TLS or the credentials are broken.
pub(super) async fn check(shared: &Shared) -> Result<(), Error> {
    let config = &shared.config;
    let after = config.connect_timeout.unwrap_or(crate::config::DEFAULT_CONNECT_TIMEOUT);
    let work = async {
        let creds = shared.credentials.get(config).await?;
        token::password_for(config, creds.as_ref()).await?;
        upstream::tls_stream(config, &shared.tls).await.map(|_| ())
    };
    tokio::time::timeout(after, work).await.map_err(|_| Error::ConnectTimeout { addr: config.dial_target(), after })?
}

/// Writes a FATAL ErrorResponse and gives the client a moment to read it before the close.
async fn refuse<S: AsyncWrite + Unpin>(client: &mut S, fields: &ErrorFields) {
    let _ = tokio::time::timeout(Duration::from_secs(2), wire::write_all(client, &wire::error_response(fields))).await;
}

fn local_error(code: &str, message: String, hint: Option<String>) -> ErrorFields {
    ErrorFields { severity: "FATAL", code: code.into(), message, detail: None, hint }
}

/// Constant-time comparison: the local password must not leak through timing.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub(super) async fn serve<S>(
    shared: Arc<Shared>,
    client: S,
    id: u64,
    peer: String,
    handshake: OwnedSemaphorePermit,
    mut force: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let started = Instant::now();
    let counts = Counts::default();
    let work = run(&shared, client, id, &peer, handshake, &counts);
    let reason = tokio::select! {
        biased;
        r = work => r,
        _ = force.wait_for(|f| *f) => "proxy-shutdown",
    };
    shared.log(
        "proxy-session-closed",
        &[
            ("session", id.to_string()),
            ("reason", reason.to_string()),
            ("bytesFromClient", counts.up.load(Ordering::Relaxed).to_string()),
            ("bytesToClient", counts.down.load(Ordering::Relaxed).to_string()),
            ("durationMs", ms(started.elapsed())),
        ],
    );
}

async fn run<S>(
    shared: &Shared,
    mut client: S,
    id: u64,
    peer: &str,
    handshake: OwnedSemaphorePermit,
    counts: &Counts,
) -> &'static str
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    shared.log("proxy-session-accepted", &[("session", id.to_string()), ("peer", peer.to_string())]);
    let startup = tokio::time::timeout(STARTUP_TIMEOUT, async {
        for _ in 0..MAX_NEGOTIATIONS {
            match wire::read_first(&mut client).await? {
                // Plain text on loopback or a unix socket; TLS starts at the proxy.
                FirstPacket::SslRequest | FirstPacket::GssEncRequest => wire::write_all(&mut client, b"N").await?,
                other => return Ok(other),
            }
        }
        Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "too many encryption requests"))
    })
    .await;
    let (minor, params) = match startup {
        Err(_) => return "startup-timeout",
        Ok(Err(_)) => return "startup-invalid",
        Ok(Ok(FirstPacket::Cancel { pid, secret })) => {
            drop(handshake);
            return cancel(shared, id, pid, secret).await;
        }
        Ok(Ok(FirstPacket::Startup { minor, params })) => (minor, params),
        Ok(Ok(_)) => return "startup-invalid",
    };
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let Some(user) = get("user").filter(|u| !u.is_empty()) else {
        let e = local_error("28000", "no PostgreSQL user name specified in the start-up packet".into(), None);
        refuse(&mut client, &e).await;
        return "no-user";
    };
    if params.iter().any(|(k, _)| k == "replication") {
        let e = local_error("0A000", "dsql-tunnel proxy: replication connections are not supported".into(), None);
        refuse(&mut client, &e).await;
        return "replication";
    }
    let unknown: Vec<&str> = params.iter().filter(|(k, _)| k.starts_with("_pq_.")).map(|(k, _)| k.as_str()).collect();
    let negotiate = minor > 0 || !unknown.is_empty();
    if negotiate && wire::write_all(&mut client, &wire::negotiate_protocol(&unknown)).await.is_err() {
        return "client-error";
    }
    if let Some(expected) = &shared.local_password {
        let asked = async {
            wire::write_all(&mut client, &wire::auth_request(3)).await?;
            wire::read_frontend(&mut client).await
        };
        let ok = match tokio::time::timeout(STARTUP_TIMEOUT, asked).await {
            Ok(Ok((b'p', body))) => {
                let given = body.strip_suffix(&[0]).unwrap_or(&body);
                same(given, expected.expose().as_bytes())
            }
            _ => false,
        };
        if !ok {
            shared.stats.refused.fetch_add(1, Ordering::Relaxed);
            let e = local_error(
                "28P01",
                format!("password authentication failed for user \"{user}\""),
                Some("the dsql-tunnel proxy was started with a local password; use that one (not a token)".into()),
            );
            refuse(&mut client, &e).await;
            return "local-password";
        }
    }
    let Ok(_slot) = shared.sessions.clone().try_acquire_owned() else {
        shared.stats.refused.fetch_add(1, Ordering::Relaxed);
        let e = local_error(
            "53300",
            format!("sorry, too many clients already: the dsql-tunnel proxy allows {}", shared.max_clients),
            Some("raise the proxy's --max-clients, or pool connections in the client".into()),
        );
        refuse(&mut client, &e).await;
        return "too-many-clients";
    };
    drop(handshake);

    let mut config = shared.config.clone();
    config.user = user.clone();
    config.database = get("database").filter(|d| !d.is_empty()).unwrap_or_else(|| shared.config.database.clone());
    let mut upstream_params =
        vec![("user".to_string(), config.user.clone()), ("database".into(), config.database.clone())];
    upstream_params
        .extend(params.iter().filter(|(k, _)| k != "user" && k != "database" && !k.starts_with("_pq_.")).cloned());
    if let Some(app) = config.application_name.as_ref().filter(|_| get("application_name").is_none()) {
        upstream_params.push(("application_name".into(), app.clone()));
    }

    let after = config.connect_timeout.unwrap_or(crate::config::DEFAULT_CONNECT_TIMEOUT);
    let opening = async {
        let began = Instant::now();
        let creds = shared.credentials.get(&config).await?;
        let minted = config.mints_tokens();
        let password = token::password_for(&config, creds.as_ref()).await?;
        let token_time = began.elapsed();
        let is_token = password.as_ref().is_some_and(|p| token::decode(p.expose()).is_some());
        let mut opened = upstream::open(&config, &shared.tls, &upstream_params, password.as_ref())
            .await
            .map_err(|e| if is_token { token::with_auth_hint(e) } else { e })?;
        opened.phases.token = token_time;
        Ok::<_, Error>((opened, minted))
    };
    let opened = tokio::time::timeout(after, opening)
        .await
        .unwrap_or_else(|_| Err(Error::ConnectTimeout { addr: config.dial_target(), after }));
    let (opened, minted) = match opened {
        Ok(o) => o,
        Err(e) => {
            shared.stats.failed.fetch_add(1, Ordering::Relaxed);
            let fields = upstream::client_error(&e);
            shared.log(
                "proxy-upstream-failed",
                &[
                    ("session", id.to_string()),
                    ("user", user.clone()),
                    ("code", e.code()),
                    ("sqlstate", fields.code.clone()),
                ],
            );
            refuse(&mut client, &fields).await;
            return "upstream-refused";
        }
    };
    let p = opened.phases;
    shared.log(
        "proxy-upstream-ready",
        &[
            ("session", id.to_string()),
            ("user", config.user.clone()),
            ("database", config.database.clone()),
            ("token", if minted { token::action_for(&config.user).to_string() } else { "static".into() }),
            ("tokenMs", ms(p.token)),
            ("dialMs", ms(p.dial)),
            ("tlsMs", ms(p.tls)),
            ("authMs", ms(p.auth)),
        ],
    );
    // Without a key from the server, cancels are refused: the local key maps to nothing usable.
    let registration = shared.cancels.register(opened.key.unwrap_or((0, 0)));
    let mut hello = wire::auth_request(0);
    hello.extend_from_slice(&opened.greeting);
    hello.extend_from_slice(&wire::backend_key(registration.pid, registration.secret));
    hello.extend_from_slice(&wire::message(b'Z', b"I"));
    if wire::write_all(&mut client, &hello).await.is_err() {
        return "client-error";
    }
    let end = relay::relay(client, opened.stream, counts).await;
    drop(registration);
    end.as_str()
}

async fn cancel(shared: &Shared, id: u64, pid: u32, secret: u32) -> &'static str {
    shared.stats.cancels.fetch_add(1, Ordering::Relaxed);
    let Some(key) = shared.cancels.lookup(pid, secret).filter(|k| *k != (0, 0)) else {
        // As PostgreSQL: an unknown key gets no answer, so keys cannot be probed.
        shared.log("proxy-cancel-unknown", &[("session", id.to_string())]);
        return "cancel-unknown";
    };
    let started = Instant::now();
    match upstream::cancel(&shared.config, &shared.tls, key).await {
        Ok(()) => {
            shared.log("proxy-cancel-sent", &[("session", id.to_string()), ("ms", ms(started.elapsed()))]);
            "cancel-sent"
        }
        Err(e) => {
            shared.log("proxy-cancel-failed", &[("session", id.to_string()), ("code", e.code())]);
            "cancel-failed"
        }
    }
}
