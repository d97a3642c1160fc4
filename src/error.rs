//! One error type for everything the core can fail with. `code()` is what JavaScript sees as
//! `err.code`: the SQLSTATE for server errors, Node's errno name for socket errors, otherwise a
//! documented UPPER_SNAKE code. No variant ever holds a password or token.

use std::fmt;
use std::io;
use std::time::Duration;

/// The fields PostgreSQL sends with an error, named as node-postgres names them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerError {
    pub code: String,
    pub severity: String,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
    pub position: Option<u32>,
    pub internal_position: Option<u32>,
    pub internal_query: Option<String>,
    pub r#where: Option<String>,
    pub schema: Option<String>,
    pub table: Option<String>,
    pub column: Option<String>,
    pub data_type: Option<String>,
    pub constraint: Option<String>,
    pub file: Option<String>,
    pub line: Option<u32>,
    pub routine: Option<String>,
}

/// Why a TLS handshake failed, as far as the client can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFailure {
    NameMismatch,
    UnknownCa,
    Expired,
    NotYetValid,
    Refused,
    Handshake,
}

/// What went wrong with the tunnel the driver opens itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunnelFailure {
    /// The bastion's host key is in no known_hosts entry for it.
    HostKeyUnknown,
    /// The bastion presented a key other than the one known_hosts records: possibly an impostor.
    HostKeyChanged,
    /// No identity (agent key or key file) was accepted.
    AuthFailed,
    /// The bastion could not be reached, or the SSH handshake failed.
    ConnectFailed,
    /// The bastion refused to open the channel: it could not reach the cluster, or may not.
    ChannelRefused,
    /// The tunnel's session ended while a connection rode it.
    Lost,
    /// `aws` or the Session Manager plugin is not installed.
    SsmCliMissing,
    /// The SSM session could not be started, or its local port refused.
    SsmSessionFailed,
}

/// Which part of a static token does not fit the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenField {
    Host,
    Action { user: String },
    Region,
}

#[derive(Debug)]
pub enum Error {
    /// A setting has a value that cannot be used.
    Config { setting: String, message: String },
    /// The host name could not be resolved.
    Resolve { host: String, source: io::Error },
    /// The TCP connection to the tunnel (or host) failed.
    Connect { addr: String, source: io::Error },
    /// The TLS handshake failed or the server's certificate was rejected.
    Tls { failure: TlsFailure, host: String, detail: String },
    /// TCP, TLS and authentication did not finish within the connect timeout.
    ConnectTimeout { addr: String, after: Duration },
    /// DSQL's front door refused the connection because no (or a foreign) SNI arrived.
    SniRefused { host: String, server: Box<ServerError> },
    /// The server asked for a password and none was configured.
    PasswordMissing,
    /// An error the server sent.
    Server(Box<ServerError>),
    /// The connection dropped while it was in use. `sent` is false when the query never left
    /// (the connection was already gone): then it is safe to run it elsewhere.
    ConnectionLost { detail: String, sent: bool },
    /// A query failed because its session ended (a FATAL from the server, or the connection
    /// closing). `may_have_run` is false only when the statement certainly did not run: it was
    /// written with nothing else outstanding and its very first reply was the end.
    SessionEnded { cause: Box<Error>, may_have_run: bool },
    /// The client was ended with `end()`.
    Closed,
    /// A query was issued before `connect()` finished.
    NotConnected,
    /// `connect()` was called on a client that is connecting, connected or ended.
    AlreadyConnected,
    /// A static DSQL token has expired (checked before connecting).
    TokenExpired { from: String, host: String, expired_at: String, ago_secs: u64 },
    /// A static DSQL token was made for another host, action or region.
    TokenMismatch { field: TokenField, from: String, expected: String, found: String },
    /// No AWS credentials could be found to sign a token with.
    Credentials { detail: String },
    /// Signing a token failed.
    TokenSigning { detail: String },
    /// A bug: something panicked. The promise settles with this instead of never settling.
    Internal { detail: String },
    /// An API call the client cannot carry out as asked.
    InvalidArgument { detail: String },
    /// The query has a different number of parameters than values were given.
    ParameterCount { expected: usize, got: usize },
    /// The server sent something this client does not understand.
    Protocol { detail: String },
    /// The tunnel the driver opens itself (`tunnel` option) failed; `detail` says how to fix it.
    Tunnel { failure: TunnelFailure, detail: String },
}

impl Error {
    pub fn config(setting: &str, message: impl Into<String>) -> Error {
        Error::Config { setting: setting.to_string(), message: message.into() }
    }

    /// The stable code JavaScript sees.
    pub fn code(&self) -> String {
        match self {
            Error::Config { .. } => "INVALID_CONFIG".into(),
            Error::Resolve { .. } => "ENOTFOUND".into(),
            Error::Connect { source, .. } => errno_name(source).into(),
            Error::Tls { failure, .. } => match failure {
                TlsFailure::NameMismatch => "TLS_NAME_MISMATCH",
                TlsFailure::UnknownCa => "TLS_UNKNOWN_CA",
                TlsFailure::Expired => "TLS_CERT_EXPIRED",
                TlsFailure::NotYetValid => "TLS_CERT_NOT_YET_VALID",
                TlsFailure::Refused => "TLS_REFUSED",
                TlsFailure::Handshake => "TLS_HANDSHAKE_FAILED",
            }
            .into(),
            Error::ConnectTimeout { .. } => "CONNECT_TIMEOUT".into(),
            Error::SniRefused { .. } => "SNI_REFUSED".into(),
            Error::PasswordMissing => "PASSWORD_MISSING".into(),
            Error::Server(e) => e.code.clone(),
            Error::ConnectionLost { .. } => "CONNECTION_LOST".into(),
            Error::SessionEnded { cause, .. } => cause.code(),
            Error::Closed => "CLIENT_CLOSED".into(),
            Error::NotConnected => "NOT_CONNECTED".into(),
            Error::AlreadyConnected => "ALREADY_CONNECTED".into(),
            Error::TokenExpired { .. } => "TOKEN_EXPIRED".into(),
            Error::TokenMismatch { field, .. } => match field {
                TokenField::Host => "TOKEN_HOST_MISMATCH",
                TokenField::Action { .. } => "TOKEN_ACTION_MISMATCH",
                TokenField::Region => "TOKEN_REGION_MISMATCH",
            }
            .into(),
            Error::Credentials { .. } => "CREDENTIALS_UNAVAILABLE".into(),
            Error::TokenSigning { .. } => "TOKEN_SIGNING_FAILED".into(),
            Error::Internal { .. } => "INTERNAL_ERROR".into(),
            Error::InvalidArgument { .. } => "INVALID_ARGUMENT".into(),
            Error::ParameterCount { .. } => "PARAMETER_COUNT_MISMATCH".into(),
            Error::Protocol { .. } => "PROTOCOL_ERROR".into(),
            Error::Tunnel { failure, .. } => match failure {
                TunnelFailure::HostKeyUnknown => "SSH_HOST_KEY_UNKNOWN",
                TunnelFailure::HostKeyChanged => "SSH_HOST_KEY_CHANGED",
                TunnelFailure::AuthFailed => "SSH_AUTH_FAILED",
                TunnelFailure::ConnectFailed => "SSH_CONNECT_FAILED",
                TunnelFailure::ChannelRefused => "SSH_CHANNEL_REFUSED",
                TunnelFailure::Lost => "TUNNEL_LOST",
                TunnelFailure::SsmCliMissing => "SSM_CLI_MISSING",
                TunnelFailure::SsmSessionFailed => "SSM_SESSION_FAILED",
            }
            .into(),
        }
    }

    /// The server's error fields, for server errors and SNI refusals.
    pub fn server(&self) -> Option<&ServerError> {
        match self {
            Error::Server(e) | Error::SniRefused { server: e, .. } => Some(e),
            Error::SessionEnded { cause, .. } => cause.server(),
            _ => None,
        }
    }

    /// The error itself, without the [`Error::SessionEnded`] wrapper.
    pub fn inner(&self) -> &Error {
        match self {
            Error::SessionEnded { cause, .. } => cause.inner(),
            e => e,
        }
    }

    /// For a query that failed as its session ended: whether the statement may have run.
    pub fn may_have_run(&self) -> Option<bool> {
        match self {
            Error::SessionEnded { may_have_run, .. } => Some(*may_have_run),
            Error::ConnectionLost { sent: false, .. } => Some(false),
            _ => None,
        }
    }

    /// The underlying socket error, for Node-style `errno`/`syscall` fields.
    pub fn io(&self) -> Option<&io::Error> {
        match self {
            Error::Connect { source, .. } | Error::Resolve { source, .. } => Some(source),
            Error::SessionEnded { cause, .. } => cause.io(),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config { message, .. } => f.write_str(message),
            Error::Resolve { host, source } => write!(
                f,
                "could not resolve host {host} ({source}). Through a tunnel, set hostaddr (PGHOSTADDR) to \
                 the tunnel's local address, e.g. 127.0.0.1, and keep host as the DSQL hostname"
            ),
            Error::Connect { addr, source } => match source.kind() {
                io::ErrorKind::ConnectionRefused => write!(
                    f,
                    "connection to {addr} was refused: nothing is listening there. Is the SSH/SSM tunnel \
                     up and forwarding that port? Check with `nc -zv {}`",
                    addr.replacen(':', " ", 1).trim_start_matches('[').replacen(']', "", 1)
                ),
                _ => write!(
                    f,
                    "could not connect to {addr}: {source}. Check that the tunnel is running and that \
                     hostaddr/port (PGHOSTADDR/PGPORT) point at its local end"
                ),
            },
            Error::Tls { failure, host, detail } => match failure {
                TlsFailure::NameMismatch => write!(
                    f,
                    "the server's certificate is not valid for {host} ({detail}). Set host (HOSTNAME or \
                     PGHOST) to the cluster's DSQL hostname, not the tunnel address"
                ),
                TlsFailure::UnknownCa => write!(
                    f,
                    "the server's certificate for {host} is not signed by a trusted certificate authority \
                     ({detail}). DSQL certificates chain to Amazon Root CA 1, which is trusted by default; \
                     for another server set sslrootcert (PGSSLROOTCERT) to its CA file"
                ),
                TlsFailure::Expired => write!(f, "the server's certificate for {host} has expired ({detail})"),
                TlsFailure::NotYetValid => {
                    write!(f, "the server's certificate for {host} is not valid yet ({detail}): check the clock")
                }
                TlsFailure::Refused => write!(
                    f,
                    "the server at the other end of the tunnel does not offer TLS ({detail}). DSQL always \
                     does: check that the tunnel forwards to the DSQL endpoint on port 5432"
                ),
                TlsFailure::Handshake => write!(
                    f,
                    "TLS handshake with {host} failed: {detail}. Check that the tunnel forwards to the DSQL \
                     endpoint; try sslnegotiation=postgres if the server predates direct TLS"
                ),
            },
            Error::ConnectTimeout { addr, after } => write!(
                f,
                "connecting through {addr} did not finish within {} ms (TCP, TLS and authentication). \
                 Is the tunnel forwarding to the DSQL endpoint? A tunnel whose far end is down accepts \
                 connections and never answers",
                after.as_millis()
            ),
            Error::SniRefused { host, server } => write!(
                f,
                "the server refused the connection: {}. It needs the DSQL hostname as TLS SNI: set host \
                 (HOSTNAME or PGHOST) to the cluster's hostname (now {host:?}) and hostaddr (PGHOSTADDR) \
                 to the tunnel address",
                server.message
            ),
            Error::PasswordMissing => f.write_str(
                "the server asked for a password and none is set: set PGPASSWORD or the password option to \
                 a DSQL auth token (aws dsql generate-db-connect-auth-token)",
            ),
            Error::Server(e) => f.write_str(&e.message),
            Error::SessionEnded { cause, .. } => cause.fmt(f),
            Error::ConnectionLost { detail, .. } => write!(
                f,
                "the connection was lost ({detail}). The tunnel may have closed, or DSQL ended the \
                 connection (connections last at most 60 minutes): connect again"
            ),
            Error::Closed => f.write_str("the client was ended with end(): create a new client to run more queries"),
            Error::NotConnected => f.write_str("the client is not connected: await client.connect() first"),
            Error::AlreadyConnected => {
                f.write_str("connect() was already called on this client; a client connects once: create a new one")
            }
            Error::TokenExpired { from, host, expired_at, ago_secs } => write!(
                f,
                "the DSQL auth token in {from} expired at {expired_at} ({} ago). Tokens are checked only when a \
                 connection opens: generate a new one (aws dsql generate-db-connect-admin-auth-token --hostname \
                 {host}, or generate-db-connect-auth-token for other roles), or leave the password unset and \
                 dsql-tunnel mints a fresh token for every connection from your AWS credentials",
                human_duration(*ago_secs)
            ),
            Error::TokenMismatch { field, from, expected, found } => match field {
                TokenField::Host => write!(
                    f,
                    "the DSQL auth token in {from} was signed for {found}, but host is {expected}: tokens must be \
                     signed for the cluster's DSQL hostname, never the tunnel address"
                ),
                TokenField::Action { user } => write!(
                    f,
                    "the DSQL auth token in {from} is for {found}, but user {user} needs {expected}: use \
                     generate-db-connect-admin-auth-token for admin and generate-db-connect-auth-token for other roles"
                ),
                TokenField::Region => write!(
                    f,
                    "the DSQL auth token in {from} was signed for region {found}, but the cluster is in {expected}: \
                     generate it with --region {expected}"
                ),
            },
            Error::Credentials { detail } => write!(
                f,
                "no AWS credentials to sign a DSQL auth token with ({detail}). Set AWS_ACCESS_KEY_ID and \
                 AWS_SECRET_ACCESS_KEY, or AWS_PROFILE (or the profile option), or pass the credentials option; \
                 or set PGPASSWORD to a token"
            ),
            Error::TokenSigning { detail } => write!(f, "could not sign a DSQL auth token: {detail}"),
            Error::Internal { detail } => {
                write!(f, "internal error in dsql-tunnel ({detail}); the operation was abandoned: please report it")
            }
            Error::InvalidArgument { detail } => f.write_str(detail),
            Error::ParameterCount { expected, got } => {
                write!(f, "the query expects {expected} parameter(s) ($1…${expected}) but {got} value(s) were given")
            }
            Error::Protocol { detail } => write!(f, "unexpected data from the server: {detail}"),
            Error::Tunnel { detail, .. } => f.write_str(detail),
        }
    }
}

impl std::error::Error for Error {}

fn human_duration(secs: u64) -> String {
    let (n, unit) = match secs {
        0..=119 => (secs, "second"),
        120..=7199 => (secs / 60, "minute"),
        7200..=172_799 => (secs / 3600, "hour"),
        _ => (secs / 86_400, "day"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

/// Node's name for a socket error (`ECONNREFUSED`, …), so JavaScript code can match it as it does
/// for `net` errors.
pub fn errno_name(e: &io::Error) -> &'static str {
    if let Some(n) = e.raw_os_error() {
        let name = match n {
            1 => "EPERM",
            4 => "EINTR",
            13 => "EACCES",
            22 => "EINVAL",
            24 => "EMFILE",
            32 => "EPIPE",
            97 => "EAFNOSUPPORT",
            98 => "EADDRINUSE",
            99 => "EADDRNOTAVAIL",
            100 => "ENETDOWN",
            101 => "ENETUNREACH",
            103 => "ECONNABORTED",
            104 => "ECONNRESET",
            110 => "ETIMEDOUT",
            111 => "ECONNREFUSED",
            113 => "EHOSTUNREACH",
            _ => "",
        };
        if !name.is_empty() {
            return name;
        }
    }
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "ECONNREFUSED",
        io::ErrorKind::ConnectionReset => "ECONNRESET",
        io::ErrorKind::ConnectionAborted => "ECONNABORTED",
        io::ErrorKind::TimedOut => "ETIMEDOUT",
        io::ErrorKind::AddrNotAvailable => "EADDRNOTAVAIL",
        io::ErrorKind::BrokenPipe => "EPIPE",
        io::ErrorKind::PermissionDenied => "EACCES",
        _ => "ECONNECT",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_errors_use_node_errno_names() {
        let refused = io::Error::from_raw_os_error(111);
        let e = Error::Connect { addr: "127.0.0.1:5432".into(), source: refused };
        assert_eq!(e.code(), "ECONNREFUSED");
        let msg = e.to_string();
        assert!(msg.contains("127.0.0.1:5432") && msg.contains("tunnel"), "{msg}");
        assert!(msg.contains("nc -zv 127.0.0.1 5432"), "{msg}");
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert_eq!(errno_name(&reset), "ECONNRESET");
    }

    #[test]
    fn server_errors_keep_their_sqlstate() {
        let e = Error::Server(Box::new(ServerError { code: "42601".into(), ..Default::default() }));
        assert_eq!(e.code(), "42601");
        assert!(e.server().is_some());
        assert_eq!(Error::Closed.code(), "CLIENT_CLOSED");
    }

    #[test]
    fn a_session_end_keeps_the_code_and_fields_of_its_cause() {
        let fatal =
            ServerError { code: "57P01".into(), severity: "FATAL".into(), message: "bye".into(), ..Default::default() };
        let e = Error::SessionEnded { cause: Box::new(Error::Server(Box::new(fatal))), may_have_run: false };
        assert_eq!(e.code(), "57P01");
        assert_eq!(e.to_string(), "bye");
        assert_eq!(e.server().map(|s| s.severity.as_str()), Some("FATAL"));
        assert_eq!(e.may_have_run(), Some(false));
        let lost = Error::ConnectionLost { detail: "eof".into(), sent: true };
        assert_eq!(lost.may_have_run(), None);
    }
}
