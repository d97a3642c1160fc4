//! Dial the tunnel, TLS with the DSQL hostname, startup and authentication, all under one timeout.

use crate::config::{Config, Negotiation, Secret};
use crate::endpoint::TunnelAddr;
use crate::error::{Error, ServerError, TlsFailure};
use crate::framing::{CheckedConnect, Desync};
use crate::token;
use crate::tunnel::Stream;
use aws_credential_types::Credentials;
use rustls::{CertificateError, ClientConfig};
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_postgres::config::{SslMode as PgSslMode, SslNegotiation};
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres_rustls::MakeRustlsConnect;

/// What the server says outside of any query's answer.
#[derive(Debug)]
pub enum Event {
    /// A NoticeResponse (a warning or information, not an error).
    Notice(Box<ServerError>),
    /// The connection ended: the reason, when it did not end cleanly.
    Closed(Option<Error>),
}

/// Receives a connection's [`Event`]s, on whatever thread drives the socket.
pub type Events = Box<dyn Fn(Event) + Send + Sync>;

/// Run-time parameters the server reports at start-up (ParameterStatus), in the order clients
/// usually look at them. tokio-postgres keeps them by name only.
const REPORTED_PARAMETERS: &[&str] = &[
    "application_name",
    "client_encoding",
    "DateStyle",
    "default_transaction_read_only",
    "in_hot_standby",
    "integer_datetimes",
    "IntervalStyle",
    "is_superuser",
    "server_encoding",
    "server_version",
    "session_authorization",
    "standard_conforming_strings",
    "TimeZone",
];

/// An open connection: the client half, and what drives the socket.
pub struct Session {
    pub client: tokio_postgres::Client,
    pub driver: std::sync::Arc<crate::driver::Driver>,
    pub task: tokio::task::JoinHandle<()>,
    pub timings: Timings,
    /// Set when the server's bytes stopped being PostgreSQL protocol (then the task ended).
    pub desync: Desync,
    /// The ParameterStatus values the server sent during start-up.
    pub parameters: Vec<(String, String)>,
    /// The backend's process id (BackendKeyData), when the server sent one.
    pub process_id: Option<i32>,
}

/// How long each phase of opening a connection took (for diagnostics).
#[derive(Debug, Clone, Copy, Default)]
pub struct Timings {
    /// Minting a token (credentials and signing); zero when none was minted.
    pub token: Duration,
    pub minted: bool,
    /// TCP to the tunnel.
    pub dial: Duration,
    /// TLS, startup and authentication.
    pub handshake: Duration,
}

/// Opens a connection. Without a password, a DSQL token is minted for it (from `credentials`
/// when given, else the AWS credential chain); a static token is checked before any dialling.
pub async fn connect(
    config: &Config,
    tls: &ClientConfig,
    credentials: Option<&Credentials>,
    events: Option<Events>,
) -> Result<Session, Error> {
    let work = async {
        // Asked before the password is filled in: a configured password means no minting.
        let mints = config.mints_tokens();
        let started = Instant::now();
        let password = token::password_for(config, credentials).await?;
        let minted = mints && password.is_some();
        let token_time = if minted { started.elapsed() } else { Duration::ZERO };
        let is_token = password.as_ref().is_some_and(|p| token::decode(p.expose()).is_some());
        let hint = |e| if is_token { token::with_auth_hint(e) } else { e };
        let mut session = handshake(config, tls, password.as_ref(), events).await.map_err(hint)?;
        (session.timings.minted, session.timings.token) = (minted, token_time);
        Ok(session)
    };
    match config.connect_timeout {
        // tokio-postgres's own timeout covers only TCP; a silent peer must not hang us forever.
        Some(after) => tokio::time::timeout(after, work)
            .await
            .map_err(|_| Error::ConnectTimeout { addr: config.dial_target(), after })?,
        None => work.await,
    }
}

async fn handshake(
    config: &Config,
    tls: &ClientConfig,
    password: Option<&Secret>,
    events: Option<Events>,
) -> Result<Session, Error> {
    {
        let started = Instant::now();
        let stream = dial(config).await?;
        let dialled = Instant::now();
        let mut pg = tokio_postgres::Config::new();
        pg.user(&config.user)
            .dbname(&config.database)
            // Require is the only mode that never falls back to plaintext.
            .ssl_mode(PgSslMode::Require)
            .ssl_negotiation(match config.sslnegotiation {
                Negotiation::Direct => SslNegotiation::Direct,
                Negotiation::Postgres => SslNegotiation::Postgres,
            });
        if let Some(p) = password {
            pg.password(p.expose());
        }
        if let Some(app) = &config.application_name {
            pg.application_name(app);
        }
        if let Some(o) = &config.options {
            pg.options(o);
        }
        // The value of host is the TLS name (SNI and verification); TCP already went to hostaddr.
        let mut make = MakeRustlsConnect::new(tls.clone());
        let connector = <MakeRustlsConnect as MakeTlsConnect<Stream>>::make_tls_connect(&mut make, &config.host)
            .unwrap_or_else(|never| match never {});
        // Inside TLS every message header is checked, so bytes that are not PostgreSQL fail at once.
        let desync = Desync::riding(stream.lost());
        let key = crate::framing::BackendKey::default();
        let checked = CheckedConnect { tls: connector, desync: desync.clone(), key: key.clone() };
        let (client, mut connection) = pg.connect_raw(stream, checked).await.map_err(|e| match desync.violation() {
            Some(v) => Error::Protocol { detail: v.to_string() },
            None => desync.explain(classify(e, config, true)),
        })?;
        let timings = Timings { dial: dialled - started, handshake: dialled.elapsed(), ..Default::default() };
        let parameters = REPORTED_PARAMETERS
            .iter()
            .filter_map(|&name| connection.parameter(name).map(|v| (name.to_string(), v.to_string())))
            .collect();
        let watch = desync.clone();
        let (driver, task) = crate::driver::Driver::start(std::future::poll_fn(move |cx| loop {
            match connection.poll_message(cx) {
                std::task::Poll::Pending => return std::task::Poll::Pending,
                std::task::Poll::Ready(Some(Ok(message))) => {
                    if let (tokio_postgres::AsyncMessage::Notice(n), Some(events)) = (message, &events) {
                        events(Event::Notice(Box::new(server_error(&n))));
                    }
                }
                std::task::Poll::Ready(end) => {
                    if let Some(events) = &events {
                        let why = match end {
                            Some(Err(e)) => Some(match watch.violation() {
                                Some(v) => Error::Protocol { detail: v.to_string() },
                                None => match e.as_db_error() {
                                    Some(db) => Error::Server(Box::new(server_error(db))),
                                    None => crate::tunnel::lost_in(&e).unwrap_or_else(|| {
                                        watch.explain(Error::ConnectionLost { detail: e.to_string(), sent: true })
                                    }),
                                },
                            }),
                            _ => None,
                        };
                        events(Event::Closed(why));
                    }
                    return std::task::Poll::Ready(());
                }
            }
        }));
        Ok(Session { client, driver, task, timings, desync, parameters, process_id: key.process_id() })
    }
}

/// Sends a CancelRequest over a new connection to the same tunnel, in TLS with the same SNI
/// (DSQL's front door accepts nothing else; libpq before 17 and pg send cancels in plaintext).
pub async fn cancel(config: &Config, tls: &ClientConfig, token: &tokio_postgres::CancelToken) -> Result<(), Error> {
    let work = async {
        let stream = dial(config).await?;
        let mut make = MakeRustlsConnect::new(tls.clone());
        let connector = <MakeRustlsConnect as MakeTlsConnect<Stream>>::make_tls_connect(&mut make, &config.host)
            .unwrap_or_else(|never| match never {});
        token.cancel_query_raw(stream, connector).await.map_err(|e| classify(e, config, true))
    };
    let after = config.connect_timeout.unwrap_or(crate::config::DEFAULT_CONNECT_TIMEOUT);
    tokio::time::timeout(after, work).await.map_err(|_| Error::ConnectTimeout { addr: config.dial_target(), after })?
}

/// What opening the configured tunnel showed (for `doctor`).
#[derive(Debug, Clone)]
pub struct TunnelProbe {
    pub tunnel: String,
    /// SSH: the bastion's host key (`SHA256:…`) and how we got in (`agent`, `publickey <file>`).
    pub host_key: Option<String>,
    pub auth: Option<String>,
    /// The first channel, including opening the session when none was open.
    pub first: Duration,
    /// A second channel over the open session: one round trip to the far end and back.
    pub round_trip: Duration,
}

/// Opens two connections to the far end through the configured tunnel, under the connect timeout.
pub async fn probe_tunnel(config: &Config) -> Result<Option<TunnelProbe>, Error> {
    let Some(spec) = &config.tunnel else { return Ok(None) };
    let work = async {
        let started = Instant::now();
        let a = dial(config).await?;
        let first = started.elapsed();
        let again = Instant::now();
        let b = dial(config).await?;
        let round_trip = again.elapsed();
        let (host_key, auth) = match spec {
            crate::tunnel::Spec::Ssh(s) => match crate::tunnel::ssh::info(s).await {
                Some(i) => (Some(i.host_key), Some(i.auth)),
                None => (None, None),
            },
            crate::tunnel::Spec::Ssm(_) => (None, None),
        };
        drop((a, b));
        Ok(Some(TunnelProbe { tunnel: spec.describe(), host_key, auth, first, round_trip }))
    };
    let after = config.connect_timeout.unwrap_or(crate::config::DEFAULT_CONNECT_TIMEOUT);
    tokio::time::timeout(after, work).await.map_err(|_| Error::ConnectTimeout { addr: config.dial_target(), after })?
}

/// A channel of the configured tunnel, else TCP to the tunnel address (or host) with no-delay
/// and keepalive; shared with the proxy's upstream.
pub(crate) async fn dial(config: &Config) -> Result<Stream, Error> {
    match &config.tunnel {
        // The far end resolves the name: the cluster's hostname resolves inside its VPC.
        Some(crate::tunnel::Spec::Ssh(ssh)) => {
            let far = config.hostaddr.as_ref().map_or_else(|| config.host.clone(), |a| a.to_string());
            Ok(Stream::Ssh(Box::new(crate::tunnel::ssh::open(ssh, &far, config.port).await?)))
        }
        Some(crate::tunnel::Spec::Ssm(ssm)) => {
            let far = config.hostaddr.as_ref().map_or_else(|| config.host.clone(), |a| a.to_string());
            Ok(Stream::Ssm(crate::tunnel::ssm::open(ssm, &far, config.port).await?))
        }
        None => dial_tcp(config).await.map(Stream::Tcp),
    }
}

async fn dial_tcp(config: &Config) -> Result<TcpStream, Error> {
    let target = config.dial_target();
    let addrs: Vec<SocketAddr> = match &config.hostaddr {
        Some(TunnelAddr::Ip(ip)) => vec![SocketAddr::new(*ip, config.port)],
        Some(TunnelAddr::Localhost) => lookup("localhost", config.port).await?,
        None => lookup(&config.host, config.port).await?,
    };
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                stream.set_nodelay(true).ok();
                let keepalive = socket2::TcpKeepalive::new().with_time(Duration::from_secs(60));
                socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive).ok();
                return Ok(stream);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(Error::Connect {
        addr: target,
        source: last.unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address")),
    })
}

async fn lookup(host: &str, port: u16) -> Result<Vec<SocketAddr>, Error> {
    // RFC 6761: names under .invalid never resolve, so no resolver is asked about them.
    let name = host.trim_end_matches('.').to_ascii_lowercase();
    if name == "invalid" || name.ends_with(".invalid") {
        return Err(Error::Resolve {
            host: host.to_string(),
            source: io::Error::new(io::ErrorKind::NotFound, "names under .invalid never resolve (RFC 6761)"),
        });
    }
    let found = tokio::net::lookup_host((host, port))
        .await
        .map_err(|source| Error::Resolve { host: host.to_string(), source })?;
    Ok(found.collect())
}

pub fn server_error(db: &tokio_postgres::error::DbError) -> ServerError {
    use tokio_postgres::error::ErrorPosition;
    let (position, internal_position, internal_query) = match db.position() {
        Some(ErrorPosition::Original(p)) => (Some(*p), None, None),
        Some(ErrorPosition::Internal { position, query }) => (None, Some(*position), Some(query.clone())),
        None => (None, None, None),
    };
    let own = |s: Option<&str>| s.map(str::to_string);
    ServerError {
        code: db.code().code().to_string(),
        severity: db.severity().to_string(),
        message: db.message().to_string(),
        detail: own(db.detail()),
        hint: own(db.hint()),
        position,
        internal_position,
        internal_query,
        r#where: own(db.where_()),
        schema: own(db.schema()),
        table: own(db.table()),
        column: own(db.column()),
        data_type: own(db.datatype()),
        constraint: own(db.constraint()),
        file: own(db.file()),
        line: db.line(),
        routine: own(db.routine()),
    }
}

pub(crate) fn tls_failure(e: &rustls::Error) -> TlsFailure {
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                TlsFailure::NameMismatch
            }
            CertificateError::UnknownIssuer => TlsFailure::UnknownCa,
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => TlsFailure::Expired,
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => TlsFailure::NotYetValid,
            _ => TlsFailure::Handshake,
        },
        _ => TlsFailure::Handshake,
    }
}

/// Maps a tokio-postgres error to ours. `connecting` says whether set-up was under way.
pub fn classify(e: tokio_postgres::Error, config: &Config, connecting: bool) -> Error {
    if let Some(lost) = crate::tunnel::lost_in(&e) {
        return lost;
    }
    if let Some(db) = e.as_db_error() {
        let server = Box::new(server_error(db));
        // DSQL's front door names the SNI (missing) or the cluster (unknown) when it refuses.
        let message = server.message.to_ascii_lowercase();
        let refused_sni = server.code == "08P01" && (message.contains("sni") || message.contains("cluster"));
        return if connecting && refused_sni {
            Error::SniRefused { host: config.host.clone(), server }
        } else {
            Error::Server(server)
        };
    }
    let mut chain = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(err) = cur {
        chain.push(err.to_string());
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Error::Tls { failure: tls_failure(tls), host: config.host.clone(), detail: tls.to_string() };
        }
        if let Some(io) = err.downcast_ref::<io::Error>() {
            // io::Error::source() skips the error it wraps; rustls's error sits right there.
            if let Some(tls) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                return Error::Tls { failure: tls_failure(tls), host: config.host.clone(), detail: tls.to_string() };
            }
        }
        cur = err.source();
    }
    let text = chain.join(": ");
    if text.contains("server does not support TLS") {
        return Error::Tls { failure: TlsFailure::Refused, host: config.host.clone(), detail: text };
    }
    if text.contains("password missing") {
        return Error::PasswordMissing;
    }
    if connecting && text.contains("tls") {
        return Error::Tls { failure: TlsFailure::Handshake, host: config.host.clone(), detail: text };
    }
    if e.is_closed() || connecting || text.contains("connection closed") {
        let detail = if connecting { format!("the server closed the connection during set-up: {text}") } else { text };
        return Error::ConnectionLost { detail, sent: true };
    }
    Error::Protocol { detail: text }
}
