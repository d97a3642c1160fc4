//! One upstream connection per client: the connector's dial to the tunnel, TLS with the DSQL
//! hostname (SNI and verification), then start-up and authentication with a token for the
//! client's user. What comes back is the raw TLS stream, positioned after ReadyForQuery.

use super::wire::{self, ErrorFields};
use crate::config::{Config, Negotiation, Secret};
use crate::connect::{dial, tls_failure};
use crate::error::{Error, ServerError, TlsFailure};
use crate::tunnel::Stream;
use postgres_protocol::authentication::sasl::{self, ScramSha256};
use rustls::ClientConfig;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres_rustls::MakeRustlsConnect;

/// The TLS stream to the cluster, through the tunnel.
pub type Upstream = <MakeRustlsConnect as MakeTlsConnect<Stream>>::Stream;

/// How long each phase took (for the session log).
#[derive(Debug, Clone, Copy, Default)]
pub struct Phases {
    pub token: Duration,
    pub dial: Duration,
    pub tls: Duration,
    pub auth: Duration,
}

/// An authenticated upstream connection and what the server said during start-up.
pub struct Opened {
    pub stream: Upstream,
    /// ParameterStatus and NoticeResponse messages, as sent, for the client.
    pub greeting: Vec<u8>,
    /// The server's BackendKeyData: what a cancel must carry upstream.
    pub key: Option<(u32, u32)>,
    pub phases: Phases,
}

/// Dials the tunnel and completes TLS (direct, or after SSLRequest) with `config.host` as the name.
pub async fn tls_stream(config: &Config, tls: &Arc<ClientConfig>) -> Result<(Upstream, Duration, Duration), Error> {
    let started = Instant::now();
    let mut stream = dial(config).await?;
    let dialled = Instant::now();
    if config.sslnegotiation == Negotiation::Postgres {
        let refused = |detail: String| Error::Tls { failure: TlsFailure::Refused, host: config.host.clone(), detail };
        let lost = |e: io::Error| Error::ConnectionLost {
            detail: format!("the server closed the connection during set-up: {e}"),
            sent: true,
        };
        stream.write_all(&wire::request(wire::SSL_REQUEST)).await.map_err(lost)?;
        match stream.read_u8().await.map_err(lost)? {
            b'S' => {}
            other => return Err(refused(format!("the server answered the SSLRequest with {:?}", other as char))),
        }
    }
    let mut make = MakeRustlsConnect::new((**tls).clone());
    let connector = <MakeRustlsConnect as MakeTlsConnect<Stream>>::make_tls_connect(&mut make, &config.host)
        .unwrap_or_else(|never| match never {});
    let stream = connector.connect(stream).await.map_err(|e| tls_error(e, config))?;
    Ok((stream, dialled - started, dialled.elapsed()))
}

fn tls_error(e: io::Error, config: &Config) -> Error {
    let host = config.host.clone();
    if let Some(t) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        return Error::Tls { failure: tls_failure(t), host, detail: t.to_string() };
    }
    match e.kind() {
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset => Error::ConnectionLost {
            detail: format!("the server closed the connection during the TLS handshake: {e}"),
            sent: true,
        },
        _ => Error::Tls { failure: TlsFailure::Handshake, host, detail: e.to_string() },
    }
}

fn lost(e: io::Error) -> Error {
    Error::ConnectionLost { detail: format!("the server closed the connection during set-up: {e}"), sent: true }
}

fn protocol(detail: &str) -> Error {
    Error::Protocol { detail: detail.to_string() }
}

/// The server's ErrorResponse as our error; a refusal naming SNI or the cluster is `SniRefused`.
fn server_refusal(body: &[u8], config: &Config) -> Error {
    let mut s = ServerError::default();
    for (t, v) in wire::parse_fields(body) {
        match t {
            b'S' => s.severity = v,
            b'C' => s.code = v,
            b'M' => s.message = v,
            b'D' => s.detail = Some(v),
            b'H' => s.hint = Some(v),
            b'R' => s.routine = Some(v),
            _ => {}
        }
    }
    let lower = s.message.to_ascii_lowercase();
    if s.code == "08P01" && (lower.contains("sni") || lower.contains("cluster")) {
        return Error::SniRefused { host: config.host.clone(), server: Box::new(s) };
    }
    Error::Server(Box::new(s))
}

/// Opens and authenticates. `params` are the client's start-up parameters (user and database
/// included), `password` the token or static password for this user.
pub async fn open(
    config: &Config,
    tls: &Arc<ClientConfig>,
    params: &[(String, String)],
    password: Option<&Secret>,
) -> Result<Opened, Error> {
    let (mut stream, dial, tls_time) = tls_stream(config, tls).await?;
    let started = Instant::now();
    wire::write_all(&mut stream, &wire::startup_message(params)).await.map_err(lost)?;
    let mut scram: Option<ScramSha256> = None;
    loop {
        let (t, body) = wire::read_backend(&mut stream).await.map_err(lost)?;
        match t {
            b'E' => return Err(server_refusal(&body, config)),
            b'R' if body.len() >= 4 => {
                let kind = u32::from_be_bytes(body[..4].try_into().expect("4 bytes"));
                let secret = || password.ok_or(Error::PasswordMissing);
                let reply = match kind {
                    0 => break,
                    3 => wire::password_message(secret()?.expose().as_bytes()),
                    5 if body.len() == 8 => {
                        let salt: [u8; 4] = body[4..8].try_into().expect("4 bytes");
                        let user = params.iter().find(|(k, _)| k == "user").map_or("", |(_, v)| v.as_str());
                        let hash = postgres_protocol::authentication::md5_hash(
                            user.as_bytes(),
                            secret()?.expose().as_bytes(),
                            salt,
                        );
                        wire::password_message(hash.as_bytes())
                    }
                    10 => {
                        let offered = &body[4..];
                        let names: Vec<&[u8]> = offered.split(|&b| b == 0).filter(|s| !s.is_empty()).collect();
                        if !names.contains(&sasl::SCRAM_SHA_256.as_bytes()) {
                            return Err(protocol("the server offers no SASL mechanism the proxy speaks"));
                        }
                        // Channel binding would bind to the proxy's TLS session, which the server
                        // sees; without it SCRAM still proves the password.
                        let s = ScramSha256::new(secret()?.expose().as_bytes(), sasl::ChannelBinding::unsupported());
                        let mut m = sasl::SCRAM_SHA_256.as_bytes().to_vec();
                        m.push(0);
                        m.extend_from_slice(&(s.message().len() as i32).to_be_bytes());
                        m.extend_from_slice(s.message());
                        scram = Some(s);
                        wire::message(b'p', &m)
                    }
                    11 => {
                        let s = scram.as_mut().ok_or_else(|| protocol("SASLContinue without SASL"))?;
                        s.update(&body[4..]).map_err(|e| protocol(&e.to_string()))?;
                        wire::message(b'p', s.message())
                    }
                    12 => {
                        let s = scram.as_mut().ok_or_else(|| protocol("SASLFinal without SASL"))?;
                        s.finish(&body[4..]).map_err(|e| protocol(&e.to_string()))?;
                        continue;
                    }
                    other => return Err(protocol(&format!("the server asked for authentication method {other}"))),
                };
                wire::write_all(&mut stream, &reply).await.map_err(lost)?;
            }
            // NegotiateProtocolVersion (for `_pq_.` options) and notices during authentication.
            b'v' | b'N' => {}
            _ => return Err(protocol("the server sent an unexpected message during authentication")),
        }
    }
    let mut greeting = Vec::new();
    let mut key = None;
    loop {
        let (t, body) = wire::read_backend(&mut stream).await.map_err(lost)?;
        match t {
            b'S' | b'N' => greeting.extend_from_slice(&wire::message(t, &body)),
            b'K' if body.len() == 8 => {
                key = Some((
                    u32::from_be_bytes(body[..4].try_into().expect("4 bytes")),
                    u32::from_be_bytes(body[4..].try_into().expect("4 bytes")),
                ))
            }
            b'Z' => break,
            b'E' => return Err(server_refusal(&body, config)),
            _ => return Err(protocol("the server sent an unexpected message during start-up")),
        }
    }
    let phases = Phases { token: Duration::ZERO, dial, tls: tls_time, auth: started.elapsed() };
    Ok(Opened { stream, greeting, key, phases })
}

/// Sends a CancelRequest for `key` through the tunnel, in TLS with the same SNI, and waits
/// (bounded) for the server to close: DSQL's front door accepts nothing in plaintext.
pub async fn cancel(config: &Config, tls: &Arc<ClientConfig>, key: (u32, u32)) -> Result<(), Error> {
    let work = async {
        let (mut stream, _, _) = tls_stream(config, tls).await?;
        wire::write_all(&mut stream, &wire::cancel_request(key.0, key.1)).await.map_err(lost)?;
        let mut sink = [0u8; 64];
        // The server answers a cancel by closing; reading to the end keeps the request from being
        // cut off by our own close.
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut sink)).await;
        Ok(())
    };
    let after = config.connect_timeout.unwrap_or(crate::config::DEFAULT_CONNECT_TIMEOUT);
    tokio::time::timeout(after, work).await.map_err(|_| Error::ConnectTimeout { addr: config.dial_target(), after })?
}

/// What a client sees when its upstream connection could not be opened: the server's SQLSTATE
/// when there is one, our message, and a hint.
pub fn client_error(e: &Error) -> ErrorFields {
    let code = match e {
        Error::Server(s) | Error::SniRefused { server: s, .. } => s.code.clone(),
        Error::Connect { .. } | Error::Resolve { .. } | Error::ConnectTimeout { .. } | Error::Tls { .. } => {
            "08001".into()
        }
        Error::Credentials { .. }
        | Error::TokenSigning { .. }
        | Error::TokenExpired { .. }
        | Error::TokenMismatch { .. }
        | Error::PasswordMissing => "28000".into(),
        Error::ConnectionLost { .. } => "08006".into(),
        Error::Protocol { .. } => "08P01".into(),
        Error::Config { .. } | Error::Tunnel { .. } => "08001".into(),
        _ => "XX000".into(),
    };
    // libpq prints no SQLSTATE for a failed connection, only message, DETAIL and HINT: the code
    // goes into DETAIL so that psql users see it too.
    let (message, detail, hint) = match e {
        Error::Server(s) => (
            s.message.clone(),
            Some(match &s.detail {
                Some(d) => format!("SQLSTATE {} from the cluster: {d}", s.code),
                None => format!("SQLSTATE {} from the cluster", s.code),
            }),
            Some(s.hint.clone().unwrap_or_else(|| server_hint(&s.code).to_string())),
        ),
        other => (
            format!("dsql-tunnel proxy: {other}"),
            Some(match other.server() {
                Some(s) => format!("SQLSTATE {code}; the cluster said: {} ({})", s.message, s.code),
                None => format!("SQLSTATE {code}; dsql-tunnel code {}", other.code()),
            }),
            Some("`dsql-tunnel doctor` with the proxy's settings checks each step".to_string()),
        ),
    };
    ErrorFields { severity: "FATAL", code, message, detail, hint }
}

fn server_hint(code: &str) -> &'static str {
    match code {
        "53300" => "the cluster has reached its connection limit (10,000): close idle connections or pool them",
        "53400" => "DSQL accepts at most 100 new connections per second (bursts to 1,000): retry with backoff",
        "28P01" | "28000" => {
            "the cluster refused the proxy's credentials for this user: `dsql-tunnel doctor` checks the token"
        }
        _ => "the cluster refused the connection the proxy opened for this client",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_see_the_sqlstate_in_the_code_and_in_detail() {
        let server = Error::Server(Box::new(ServerError {
            code: "53300".into(),
            message: "too many connections".into(),
            ..Default::default()
        }));
        let e = client_error(&server);
        assert_eq!((e.code.as_str(), e.severity), ("53300", "FATAL"));
        assert_eq!(e.message, "too many connections");
        assert!(e.detail.unwrap().starts_with("SQLSTATE 53300"));
        assert!(e.hint.unwrap().contains("10,000"));

        let refused = Error::Connect { addr: "127.0.0.1:5432".into(), source: io::Error::from_raw_os_error(111) };
        let e = client_error(&refused);
        assert_eq!(e.code, "08001");
        assert!(e.message.contains("127.0.0.1:5432"));
        assert!(e.detail.unwrap().contains("ECONNREFUSED"));

        let e = client_error(&Error::Credentials { detail: "none".into() });
        assert_eq!(e.code, "28000");
        let sni = Error::SniRefused {
            host: "h".into(),
            server: Box::new(ServerError {
                code: "08P01".into(),
                message: "sni was not received".into(),
                ..Default::default()
            }),
        };
        let e = client_error(&sni);
        assert_eq!(e.code, "08P01");
        assert!(e.detail.unwrap().contains("sni was not received"));
    }
}
