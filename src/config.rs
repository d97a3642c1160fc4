//! Options, connection string and environment resolved into one [`Config`].
//!
//! Precedence, per setting: explicit option > connection string > environment > default.
//! Everything here is pure: the environment arrives as a map, so tests need no process state.

use crate::endpoint::{is_dsql_host, TunnelAddr};
use crate::error::Error;
use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

pub const DEFAULT_PORT: u16 = 5432;
pub const DEFAULT_USER: &str = "admin";
pub const DEFAULT_DATABASE: &str = "postgres";
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A password or token. Its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    VerifyFull,
    VerifyCa,
    Require,
}

impl SslMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::VerifyFull => "verify-full",
            SslMode::VerifyCa => "verify-ca",
            SslMode::Require => "require",
        }
    }
}

/// What the client checks of the server's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// Chain to a trusted root and the name `host`.
    Full,
    /// Chain to a trusted root only.
    Chain,
    /// Nothing: encrypted but open to an impostor.
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Negotiation {
    /// SSLRequest first, then TLS (every PostgreSQL server).
    Postgres,
    /// TLS from the first byte, ALPN `postgresql` (PostgreSQL 17+, DSQL): one round trip less.
    Direct,
}

impl Negotiation {
    pub fn as_str(self) -> &'static str {
        match self {
            Negotiation::Postgres => "postgres",
            Negotiation::Direct => "direct",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCerts {
    /// The Mozilla roots compiled in (they include Amazon Root CA 1).
    Bundled,
    /// The operating system's store.
    System,
    /// A PEM file of one or more CA certificates.
    File(PathBuf),
    /// CA certificates given as PEM text (pg's `ssl.ca`).
    Pem(String),
}

/// Where a resolved value came from (for diagnostics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Option,
    ConnectionString,
    Environment(&'static str),
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Option => f.write_str("option"),
            Source::ConnectionString => f.write_str("connection string"),
            Source::Environment(name) => write!(f, "environment ({name})"),
            Source::Default => f.write_str("default"),
        }
    }
}

/// Everything needed to open one connection.
#[derive(Debug, Clone)]
pub struct Config {
    /// The DSQL hostname: TLS SNI, certificate verification, token signing.
    pub host: String,
    /// The tunnel's local address; `None` dials `host` itself.
    pub hostaddr: Option<TunnelAddr>,
    pub port: u16,
    pub user: String,
    pub database: String,
    pub password: Option<Secret>,
    pub sslmode: SslMode,
    pub sslrootcert: RootCerts,
    /// Whether sslrootcert was set explicitly (libpq: `require` then verifies the chain).
    pub sslrootcert_explicit: bool,
    pub sslnegotiation: Negotiation,
    pub application_name: Option<String>,
    /// Startup options, as libpq's `options` (e.g. `-c search_path=myschema`).
    pub options: Option<String>,
    /// `None` waits forever (a value of 0, as in libpq and pg).
    pub connect_timeout: Option<Duration>,
    /// Region to sign tokens for: the `region` option, else the hostname's, else `AWS_REGION` /
    /// `AWS_DEFAULT_REGION`.
    pub region: Option<String>,
    /// Whether the region was given explicitly (then tokens are minted for any host).
    pub region_explicit: bool,
    /// AWS profile for the credential chain (else `AWS_PROFILE`, read by the chain itself).
    pub profile: Option<String>,
    /// Lifetime of minted tokens.
    pub token_duration: Duration,
    /// A tunnel the driver opens itself (`tunnel` option, `DSQL_TUNNEL`); then the far end of
    /// the tunnel dials `hostaddr` if set, else `host`, on `port`.
    pub tunnel: Option<crate::tunnel::Spec>,
    /// Where each setting came from, in a fixed order.
    pub sources: Vec<(&'static str, Source)>,
}

impl Config {
    pub fn verification(&self) -> Verification {
        match self.sslmode {
            SslMode::VerifyFull => Verification::Full,
            SslMode::VerifyCa => Verification::Chain,
            // libpq: with a root certificate given, `require` verifies the chain as verify-ca does.
            SslMode::Require if self.sslrootcert_explicit => Verification::Chain,
            SslMode::Require => Verification::None,
        }
    }

    /// `host:port` or `hostaddr:port`: where TCP goes, for messages.
    pub fn dial_target(&self) -> String {
        match &self.hostaddr {
            Some(TunnelAddr::Ip(ip)) if ip.is_ipv6() => format!("[{ip}]:{}", self.port),
            Some(a) => format!("{a}:{}", self.port),
            None => format!("{}:{}", self.host, self.port),
        }
    }

    pub fn is_dsql(&self) -> bool {
        is_dsql_host(&self.host)
    }

    /// Whether a missing password means "mint a DSQL token": for DSQL hostnames, or when a
    /// region was given for a host under another name.
    pub fn mints_tokens(&self) -> bool {
        self.password.is_none() && (self.is_dsql() || self.region_explicit)
    }
}

/// One setting: its option name, connection-string key and environment variable.
struct Setting {
    option: &'static str,
    key: &'static str,
    env: &'static str,
}

const SETTINGS: &[Setting] = &[
    Setting { option: "host", key: "host", env: "PGHOST" },
    Setting { option: "hostaddr", key: "hostaddr", env: "PGHOSTADDR" },
    Setting { option: "port", key: "port", env: "PGPORT" },
    Setting { option: "user", key: "user", env: "PGUSER" },
    Setting { option: "database", key: "dbname", env: "PGDATABASE" },
    Setting { option: "password", key: "password", env: "PGPASSWORD" },
    Setting { option: "sslmode", key: "sslmode", env: "PGSSLMODE" },
    Setting { option: "sslrootcert", key: "sslrootcert", env: "PGSSLROOTCERT" },
    Setting { option: "sslnegotiation", key: "sslnegotiation", env: "PGSSLNEGOTIATION" },
    Setting { option: "applicationName", key: "application_name", env: "PGAPPNAME" },
    Setting { option: "options", key: "options", env: "PGOPTIONS" },
    Setting { option: "connectionTimeoutMillis", key: "connect_timeout", env: "PGCONNECT_TIMEOUT" },
];

/// The environment variables the resolver reads (the JavaScript side passes only these).
pub fn env_names() -> Vec<&'static str> {
    let mut names: Vec<_> = SETTINGS.iter().map(|s| s.env).collect();
    names.extend(["HOSTNAME", "AWS_REGION", "AWS_DEFAULT_REGION", "DSQL_TUNNEL"]);
    names
}

/// What the caller gave: options by their JavaScript names (values already strings), an
/// optional connection string, and the relevant environment variables.
#[derive(Debug, Default, Clone)]
pub struct Inputs {
    pub options: HashMap<String, String>,
    pub connection_string: Option<String>,
    pub env: HashMap<String, String>,
}

struct Picked {
    value: String,
    source: Source,
    /// How the user names this setting, for error messages.
    name: String,
}

impl Picked {
    fn invalid(&self, what: &str) -> Error {
        Error::config(&self.name, format!("{} = {:?} is not valid: {what}", self.name, self.value))
    }
}

pub fn resolve(inputs: &Inputs) -> Result<Config, Error> {
    let conn = match inputs.connection_string.as_deref() {
        Some(s) if !s.trim().is_empty() => parse_connection_string(s)?,
        _ => HashMap::new(),
    };
    let non_empty = |v: Option<&String>| v.filter(|s| !s.is_empty()).cloned();
    let pick = |option: &'static str| -> Option<Picked> {
        let s = SETTINGS.iter().find(|s| s.option == option).expect("known setting");
        if let Some(v) = non_empty(inputs.options.get(s.option)) {
            return Some(Picked { value: v, source: Source::Option, name: format!("option {}", s.option) });
        }
        if let Some(v) = non_empty(conn.get(s.key)) {
            return Some(Picked {
                value: v,
                source: Source::ConnectionString,
                name: format!("connection string {}", s.key),
            });
        }
        if let Some(v) = non_empty(inputs.env.get(s.env)) {
            return Some(Picked { value: v, source: Source::Environment(s.env), name: s.env.to_string() });
        }
        None
    };
    let mut sources = Vec::new();
    let mut note = |setting: &'static str, p: &Option<Picked>| {
        sources.push((setting, p.as_ref().map_or(Source::Default, |p| p.source)));
    };

    let mut host = pick("host");
    if host.is_none() {
        // HOSTNAME is the experiment's variable, but most shells set it to the machine's name.
        if let Some(h) = non_empty(inputs.env.get("HOSTNAME")).filter(|h| is_dsql_host(h)) {
            host = Some(Picked { value: h, source: Source::Environment("HOSTNAME"), name: "HOSTNAME".into() });
        }
    }
    note("host", &host);
    let hostaddr = pick("hostaddr");
    note("hostaddr", &hostaddr);
    let hostaddr = match &hostaddr {
        Some(p) => Some(TunnelAddr::parse(&p.value).ok_or_else(|| {
            p.invalid("hostaddr is the tunnel's local address and must be an IP address (e.g. 127.0.0.1) or localhost")
        })?),
        None => None,
    };
    let host = match host {
        Some(h) => {
            if h.value.contains(',') {
                return Err(h.invalid("several hosts are not supported; give the one DSQL hostname"));
            }
            h.value.trim().trim_start_matches('[').trim_end_matches(']').to_string()
        }
        None => {
            let hint = match non_empty(inputs.env.get("HOSTNAME")) {
                Some(h) => format!(" (HOSTNAME is {h:?}, which is not a DSQL endpoint, so it was not used)"),
                None => String::new(),
            };
            return Err(Error::config(
                "host",
                format!(
                    "no host: set HOSTNAME or PGHOST (or the host option) to the cluster's DSQL hostname, \
                     e.g. abc123.dsql-fnh4.us-east-1.on.aws, and PGHOSTADDR to the tunnel address{hint}"
                ),
            ));
        }
    };

    let port = pick("port");
    note("port", &port);
    let port = match &port {
        Some(p) => match p.value.trim().parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => return Err(p.invalid("use a port number from 1 to 65535")),
        },
        None => DEFAULT_PORT,
    };

    let user = pick("user");
    note("user", &user);
    let database = pick("database");
    note("database", &database);
    let password = pick("password");
    note("password", &password);

    let sslmode = pick("sslmode");
    note("sslmode", &sslmode);
    let sslmode = match &sslmode {
        None => SslMode::VerifyFull,
        Some(p) => match p.value.trim().to_ascii_lowercase().as_str() {
            "verify-full" => SslMode::VerifyFull,
            "verify-ca" => SslMode::VerifyCa,
            "require" => SslMode::Require,
            "disable" | "allow" | "prefer" => {
                return Err(p.invalid(
                    "DSQL requires TLS and the token is sent as a cleartext password, so only verify-full \
                     (the default), verify-ca and require are accepted",
                ))
            }
            _ => return Err(p.invalid("use verify-full (the default), verify-ca or require")),
        },
    };

    let rootcert = pick("sslrootcert");
    note("sslrootcert", &rootcert);
    let (sslrootcert, sslrootcert_explicit) = match &rootcert {
        None if non_empty(inputs.options.get("ca")).is_some() => {
            (RootCerts::Pem(non_empty(inputs.options.get("ca")).unwrap_or_default()), true)
        }
        None => (RootCerts::Bundled, false),
        Some(p) if p.value.trim() == "system" => {
            if sslmode != SslMode::VerifyFull {
                return Err(p.invalid("sslrootcert=system is only allowed with sslmode=verify-full (as in libpq)"));
            }
            (RootCerts::System, true)
        }
        Some(p) => (RootCerts::File(PathBuf::from(&p.value)), true),
    };

    let negotiation = pick("sslnegotiation");
    note("sslnegotiation", &negotiation);
    let sslnegotiation = match &negotiation {
        None if is_dsql_host(&host) => Negotiation::Direct,
        None => Negotiation::Postgres,
        Some(p) => match p.value.trim().to_ascii_lowercase().as_str() {
            "direct" => Negotiation::Direct,
            "postgres" => Negotiation::Postgres,
            _ => return Err(p.invalid("use direct (TLS from the first byte, the default for DSQL) or postgres")),
        },
    };

    let app = pick("applicationName");
    note("applicationName", &app);
    let startup_options = pick("options");
    note("options", &startup_options);

    let timeout = pick("connectionTimeoutMillis");
    note("connectionTimeoutMillis", &timeout);
    let connect_timeout = match &timeout {
        None => Some(DEFAULT_CONNECT_TIMEOUT),
        Some(p) => {
            // The option is in milliseconds (pg); libpq's key and PGCONNECT_TIMEOUT are in seconds.
            let millis_per_unit = if p.source == Source::Option { 1 } else { 1000 };
            let n: i64 = p.value.trim().parse().map_err(|_| {
                p.invalid(if millis_per_unit == 1 {
                    "use a whole number of milliseconds (0 waits forever)"
                } else {
                    "use a whole number of seconds (0 waits forever)"
                })
            })?;
            if n <= 0 {
                None
            } else {
                Some(Duration::from_millis((n as u64).saturating_mul(millis_per_unit)))
            }
        }
    };

    let option = |name: &str| non_empty(inputs.options.get(name));
    let region_option = option("region");
    let env_region =
        non_empty(inputs.env.get("AWS_REGION")).or_else(|| non_empty(inputs.env.get("AWS_DEFAULT_REGION")));
    let region = crate::token::region_for(&host, region_option.as_deref(), env_region.as_deref());
    let token_duration = match option("tokenDurationSecs") {
        None => crate::token::DEFAULT_EXPIRY,
        Some(v) => match v.trim().parse::<u64>() {
            Ok(n) if n >= 1 && n <= crate::token::MAX_EXPIRY.as_secs() => Duration::from_secs(n),
            _ => {
                return Err(Error::config(
                    "option tokenDurationSecs",
                    format!(
                        "option tokenDurationSecs = {v:?} is not valid: use whole seconds from 1 to 604800 (7 days)"
                    ),
                ))
            }
        },
    };

    // No connection-string key: libpq has none, and the string is often shared with other tools.
    let tunnel = match (option("tunnel"), non_empty(inputs.env.get("DSQL_TUNNEL"))) {
        (Some(t), _) => Some((t, Source::Option, "option tunnel")),
        (None, Some(t)) => Some((t, Source::Environment("DSQL_TUNNEL"), "DSQL_TUNNEL")),
        (None, None) => None,
    };
    sources.push(("tunnel", tunnel.as_ref().map_or(Source::Default, |t| t.1)));
    let tunnel = match tunnel {
        None => None,
        Some((text, _, name)) => Some(crate::tunnel::Spec::parse(&text).map_err(|why| {
            // The text may be JSON with a passphrase in it: never echoed.
            Error::config(name, format!("{name} is not valid: {why}"))
        })?),
    };

    // The startup packet and the password message carry NUL-terminated strings: a NUL inside
    // cannot be sent. Caught here, it is the caller's error, not a connection lost during set-up.
    for p in [&user, &database, &password, &app, &startup_options].into_iter().flatten() {
        if p.value.contains('\0') {
            let hint = if p.name.ends_with("password") || p.name == "PGPASSWORD" {
                " (a corrupted token or password?)"
            } else {
                ""
            };
            return Err(Error::config(
                &p.name,
                format!("{} contains a NUL character (\\u0000), which PostgreSQL cannot receive{hint}", p.name),
            ));
        }
    }

    Ok(Config {
        region,
        region_explicit: region_option.is_some(),
        profile: option("profile"),
        token_duration,
        host,
        hostaddr,
        port,
        user: user.map_or_else(|| DEFAULT_USER.to_string(), |p| p.value),
        database: database.map_or_else(|| DEFAULT_DATABASE.to_string(), |p| p.value),
        password: password.map(|p| Secret(p.value)),
        sslmode,
        sslrootcert,
        sslrootcert_explicit,
        sslnegotiation,
        application_name: app.map(|p| p.value),
        options: startup_options.map(|p| p.value),
        connect_timeout,
        tunnel,
        sources,
    })
}

const ACCEPTED_KEYS: &str = "host hostaddr port user password dbname sslmode sslrootcert sslnegotiation \
                             application_name options connect_timeout";

/// Names an unknown key only when it looks like one (an unquoted password with a space can make
/// part of it read as a key).
fn shown(key: &str) -> String {
    let looks_like_key = key.len() <= 32 && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
    let known_elsewhere = ["ssl", "sslcert", "sslkey", "target_session_attrs", "channel_binding"];
    if looks_like_key && (known_elsewhere.contains(&key) || key.contains('_')) {
        format!(" ({key:?})")
    } else {
        String::new()
    }
}

fn accept_key(key: &str) -> Result<(), Error> {
    if SETTINGS.iter().any(|s| s.key == key) {
        Ok(())
    } else {
        Err(Error::config(
            "connectionString",
            format!(
                "the connection string has a key that is not supported{}; accepted keys: {ACCEPTED_KEYS}",
                shown(key)
            ),
        ))
    }
}

/// Parses a `postgres://` / `postgresql://` URL or a libpq `key=value` string into libpq keys.
pub fn parse_connection_string(s: &str) -> Result<HashMap<String, String>, Error> {
    let t = s.trim();
    let lower = t.get(..13).unwrap_or(t).to_ascii_lowercase();
    if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
        parse_url(t)
    } else {
        parse_key_values(t)
    }
}

fn bad_string(what: &str) -> Error {
    // Never echo the string itself: it may hold a password.
    Error::config("connectionString", format!("the connection string is malformed: {what}"))
}

fn parse_url(s: &str) -> Result<HashMap<String, String>, Error> {
    let mut out = HashMap::new();
    let rest = &s[s.find("://").expect("checked scheme") + 3..];
    let rest = rest.split('#').next().unwrap_or("");
    let (main, query) = match rest.split_once('?') {
        Some((m, q)) => (m, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match main.find('/') {
        Some(i) => (&main[..i], &main[i + 1..]),
        None => (main, ""),
    };
    let (userinfo, hostport) = match authority.rfind('@') {
        Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
        None => (None, authority),
    };
    if let Some(ui) = userinfo {
        let (u, p) = match ui.split_once(':') {
            Some((u, p)) => (u, Some(p)),
            None => (ui, None),
        };
        if !u.is_empty() {
            out.insert("user".into(), percent_decode(u)?);
        }
        if let Some(p) = p {
            out.insert("password".into(), percent_decode(p)?);
        }
    }
    if hostport.contains(',') {
        return Err(bad_string("several hosts are not supported; give the one DSQL hostname"));
    }
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let end = v6.find(']').ok_or_else(|| bad_string("unclosed [ in the host"))?;
        let after = &v6[end + 1..];
        (&v6[..end], after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if !host.is_empty() {
        out.insert("host".into(), percent_decode(host)?);
    }
    if let Some(p) = port.filter(|p| !p.is_empty()) {
        out.insert("port".into(), percent_decode(p)?);
    }
    if !path.is_empty() {
        out.insert("dbname".into(), percent_decode(path)?);
    }
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').ok_or_else(|| bad_string("a query parameter has no '='"))?;
        let k = percent_decode(k)?;
        accept_key(&k)?;
        out.insert(k, percent_decode(v)?);
    }
    Ok(out)
}

fn percent_decode(s: &str) -> Result<String, Error> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3).ok_or_else(|| bad_string("a % escape is cut short"))?;
            let hex = std::str::from_utf8(hex).map_err(|_| bad_string("a % escape is not hexadecimal"))?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| bad_string("a % escape is not hexadecimal"))?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad_string("a % escape does not decode to UTF-8"))
}

fn parse_key_values(s: &str) -> Result<HashMap<String, String>, Error> {
    let mut out = HashMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') {
            // The word may be part of a password: say where, never what.
            return Err(bad_string("expected key=value pairs or a postgres:// URL, found a word without '='"));
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'\'') {
            chars.next();
            loop {
                match chars.next() {
                    Some('\\') => value.push(chars.next().ok_or_else(|| bad_string("a quoted value is not closed"))?),
                    Some('\'') => break,
                    Some(c) => value.push(c),
                    None => return Err(bad_string("a quoted value is not closed")),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                chars.next();
                if c == '\\' {
                    if let Some(n) = chars.next() {
                        value.push(n);
                    }
                } else {
                    value.push(c);
                }
            }
        }
        accept_key(&key)?;
        out.insert(key, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(options: &[(&str, &str)], cs: Option<&str>, env: &[(&str, &str)]) -> Inputs {
        let map = |kv: &[(&str, &str)]| kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Inputs { options: map(options), connection_string: cs.map(str::to_string), env: map(env) }
    }

    const DSQL: &str = "a-dsql-cluster-id.dsql-fnh4.us-east-1.on.aws";

    #[test]
    fn experiment_environment_alone() {
        let c = resolve(&inputs(
            &[],
            None,
            &[("HOSTNAME", DSQL), ("PGHOSTADDR", "127.0.0.1"), ("PGPASSWORD", "tok"), ("PGSSLMODE", "require")],
        ))
        .unwrap();
        assert_eq!(c.host, DSQL);
        assert_eq!(c.hostaddr, Some(TunnelAddr::Ip("127.0.0.1".parse().unwrap())));
        assert_eq!(c.port, 5432);
        assert_eq!(c.user, "admin");
        assert_eq!(c.database, "postgres");
        assert_eq!(c.password.as_ref().unwrap().expose(), "tok");
        assert_eq!(c.sslmode, SslMode::Require);
        assert_eq!(c.verification(), Verification::None);
        assert_eq!(c.sslnegotiation, Negotiation::Direct);
        assert_eq!(c.dial_target(), "127.0.0.1:5432");
        assert!(c.sources.contains(&("host", Source::Environment("HOSTNAME"))));
        assert!(c.sources.contains(&("port", Source::Default)));
    }

    #[test]
    fn hostname_of_the_machine_is_ignored() {
        let e = resolve(&inputs(&[], None, &[("HOSTNAME", "build-box-7"), ("PGHOSTADDR", "127.0.0.1")])).unwrap_err();
        assert_eq!(e.code(), "INVALID_CONFIG");
        assert!(e.to_string().contains("build-box-7"));
        // PGHOST wins over HOSTNAME even when HOSTNAME is a DSQL endpoint.
        let c = resolve(&inputs(&[], None, &[("HOSTNAME", DSQL), ("PGHOST", "other.dsql.eu-west-1.on.aws")])).unwrap();
        assert_eq!(c.host, "other.dsql.eu-west-1.on.aws");
    }

    #[test]
    fn precedence_option_over_string_over_env() {
        let env = [("PGHOST", "env.dsql.us-east-1.on.aws"), ("PGPORT", "1111"), ("PGUSER", "envuser")];
        let cs = "postgres://csuser@cs.dsql.us-east-1.on.aws:2222/csdb";
        let c = resolve(&inputs(&[("port", "3333")], Some(cs), &env)).unwrap();
        assert_eq!(c.host, "cs.dsql.us-east-1.on.aws");
        assert_eq!(c.port, 3333);
        assert_eq!(c.user, "csuser");
        assert_eq!(c.database, "csdb");
        let c = resolve(&inputs(&[], None, &env)).unwrap();
        assert_eq!((c.port, c.user.as_str()), (1111, "envuser"));
    }

    #[test]
    fn defaults() {
        let c = resolve(&inputs(&[("host", "db.example.com")], None, &[])).unwrap();
        assert_eq!(c.sslmode, SslMode::VerifyFull);
        assert_eq!(c.sslrootcert, RootCerts::Bundled);
        assert_eq!(c.sslnegotiation, Negotiation::Postgres);
        assert_eq!(c.connect_timeout, Some(DEFAULT_CONNECT_TIMEOUT));
        assert!(c.hostaddr.is_none());
        assert!(c.password.is_none());
    }

    #[test]
    fn key_value_strings() {
        let m = parse_connection_string(
            "host=h.dsql.us-east-1.on.aws hostaddr=127.0.0.1 port = 6543 password='a b\\'c' dbname=d sslmode=verify-ca \
             sslrootcert=/tmp/ca.pem sslnegotiation=postgres application_name=app connect_timeout=3 user=u",
        )
        .unwrap();
        assert_eq!(m["password"], "a b'c");
        assert_eq!(m["port"], "6543");
        let c = resolve(&inputs(
            &[],
            Some("host=h.dsql.us-east-1.on.aws connect_timeout=3 sslrootcert=/x.pem sslmode=require"),
            &[],
        ))
        .unwrap();
        assert_eq!(c.connect_timeout, Some(Duration::from_secs(3)));
        assert_eq!(c.verification(), Verification::Chain);
        assert_eq!(c.sslrootcert, RootCerts::File("/x.pem".into()));
    }

    #[test]
    fn urls() {
        let m = parse_connection_string(
            "postgresql://us%40er:p%3Ass@[::1]:5433/my%20db?sslmode=verify-full&application_name=x",
        )
        .unwrap();
        assert_eq!(m["user"], "us@er");
        assert_eq!(m["password"], "p:ss");
        assert_eq!(m["host"], "::1");
        assert_eq!(m["port"], "5433");
        assert_eq!(m["dbname"], "my db");
        assert_eq!(m["application_name"], "x");
        let e = parse_connection_string("postgres://h/db?ssl=true").unwrap_err();
        assert_eq!(e.code(), "INVALID_CONFIG");
        assert!(e.to_string().contains("\"ssl\""));
    }

    #[test]
    fn bad_values_name_the_setting_and_the_choices() {
        let e = resolve(&inputs(&[("host", "h"), ("port", "99999")], None, &[])).unwrap_err();
        assert!(e.to_string().contains("option port") && e.to_string().contains("1 to 65535"), "{e}");
        let e = resolve(&inputs(&[], None, &[("PGHOST", "h"), ("PGSSLMODE", "disable")])).unwrap_err();
        assert!(e.to_string().contains("PGSSLMODE") && e.to_string().contains("verify-full"), "{e}");
        let e = resolve(&inputs(&[("host", "h"), ("hostaddr", "bastion.example.com")], None, &[])).unwrap_err();
        assert!(e.to_string().contains("IP address"), "{e}");
        let e = resolve(&inputs(&[("host", "h"), ("sslnegotiation", "fast")], None, &[])).unwrap_err();
        assert!(e.to_string().contains("direct"), "{e}");
        let e = resolve(&inputs(&[("host", "h"), ("connectionTimeoutMillis", "soon")], None, &[])).unwrap_err();
        assert!(e.to_string().contains("milliseconds"), "{e}");
        let e = resolve(&inputs(&[("host", "h"), ("sslmode", "require"), ("sslrootcert", "system")], None, &[]))
            .unwrap_err();
        assert!(e.to_string().contains("system"), "{e}");
    }

    #[test]
    fn malformed_strings_never_echo_secrets() {
        for s in [
            "password=secret123 oops",
            "password=correct horse",
            "postgres://u:secret123@h:1/%zz",
            "password='secret123",
        ] {
            let e = parse_connection_string(s).unwrap_err();
            assert!(!e.to_string().contains("secret123") && !e.to_string().contains("horse"), "{e}");
        }
        let c = resolve(&inputs(&[("host", "h"), ("password", "secret123")], None, &[])).unwrap();
        assert!(!format!("{c:?}").contains("secret123"));
    }

    #[test]
    fn a_nul_in_the_password_user_or_database_is_a_config_error_that_never_shows_the_value() {
        for (key, env) in [("password", "PGPASSWORD"), ("user", "PGUSER"), ("database", "PGDATABASE")] {
            let value = "secret123\0tail";
            for i in
                [inputs(&[("host", "h"), (key, value)], None, &[]), inputs(&[("host", "h")], None, &[(env, value)])]
            {
                let e = resolve(&i).unwrap_err();
                assert_eq!(e.code(), "INVALID_CONFIG");
                assert!(e.to_string().contains("NUL"), "{e}");
                assert!(!e.to_string().contains("secret123") && !format!("{e:?}").contains("secret123"), "{e:?}");
            }
        }
    }

    #[test]
    fn zero_timeout_waits_forever() {
        let c = resolve(&inputs(&[("host", "h"), ("connectionTimeoutMillis", "0")], None, &[])).unwrap();
        assert_eq!(c.connect_timeout, None);
        let c = resolve(&inputs(&[], None, &[("PGHOST", "h"), ("PGCONNECT_TIMEOUT", "7")])).unwrap();
        assert_eq!(c.connect_timeout, Some(Duration::from_secs(7)));
    }
}

#[cfg(test)]
mod fuzz {
    // Property tests for the configuration layer: connection strings (URLs and libpq key=value),
    // and the resolver over random option, connection-string and environment maps. None may panic
    // or hang, and no error message may carry the password.

    use super::{parse_connection_string, resolve, Inputs, Verification};
    use crate::testing::cases;
    use proptest::prelude::*;
    use std::collections::HashMap;

    const OPTION_NAMES: &[&str] = &[
        "host",
        "hostaddr",
        "port",
        "user",
        "database",
        "password",
        "sslmode",
        "sslrootcert",
        "sslnegotiation",
        "applicationName",
        "connectionTimeoutMillis",
        "region",
        "profile",
        "tokenDurationSecs",
    ];
    const KEYS: &[&str] = &[
        "host",
        "hostaddr",
        "port",
        "user",
        "password",
        "dbname",
        "sslmode",
        "sslrootcert",
        "sslnegotiation",
        "application_name",
        "connect_timeout",
        "ssl",
        "options",
    ];

    /// Values that sit near the edges of what each setting accepts.
    fn tricky_value() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            Just(" ".to_string()),
            Just("0".to_string()),
            Just("-1".to_string()),
            Just("65536".to_string()),
            Just("18446744073709551616".to_string()),
            Just("9223372036854775807".to_string()),
            Just("verify-full".to_string()),
            Just("require".to_string()),
            Just("disable".to_string()),
            Just("system".to_string()),
            Just("direct".to_string()),
            Just("127.0.0.1".to_string()),
            Just("[::1]".to_string()),
            Just("localhost".to_string()),
            Just("a.dsql-fnh4.us-east-1.on.aws".to_string()),
            Just("a.dsql.us-east-1.on.aws.".to_string()),
            Just("x,y".to_string()),
            Just("[".to_string()),
            Just("%".to_string()),
            Just("é\u{0}\u{FEFF}".to_string()),
            "\\PC{0,24}",
            any::<String>(),
        ]
    }

    fn map_of(names: &'static [&'static str]) -> impl Strategy<Value = HashMap<String, String>> {
        proptest::collection::hash_map(proptest::sample::select(names).prop_map(str::to_string), tricky_value(), 0..8)
    }

    /// Connection strings built from the grammar's pieces, so most get deep into the parsers.
    fn near_valid_connection_string() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("postgres://".to_string()),
            Just("postgresql://".to_string()),
            Just("POSTGRES://".to_string()),
            Just("@".to_string()),
            Just(":".to_string()),
            Just("/".to_string()),
            Just("?".to_string()),
            Just("&".to_string()),
            Just("=".to_string()),
            Just("#".to_string()),
            Just("[".to_string()),
            Just("]".to_string()),
            Just("%".to_string()),
            Just("%4".to_string()),
            Just("%zz".to_string()),
            Just("%c3%a9".to_string()),
            Just("%ff".to_string()),
            Just("'".to_string()),
            Just("\\".to_string()),
            Just(" ".to_string()),
            Just(",".to_string()),
            proptest::sample::select(KEYS).prop_map(str::to_string),
            "[a-z0-9.-]{0,12}",
            "\\PC{0,6}",
        ];
        proptest::collection::vec(piece, 0..24).prop_map(|v| v.concat())
    }

    proptest! {
        #![proptest_config(cases(1200))]

        #[test]
        fn connection_strings_never_panic(s in any::<String>()) {
            let _ = parse_connection_string(&s);
        }

        #[test]
        fn near_valid_connection_strings_never_panic(s in near_valid_connection_string()) {
            let _ = parse_connection_string(&s);
        }
    }

    proptest! {
        #![proptest_config(cases(700))]

        #[test]
        fn resolve_never_panics(
            options in map_of(OPTION_NAMES),
            env in map_of(&["PGHOST", "PGHOSTADDR", "PGPORT", "PGUSER", "PGDATABASE", "PGPASSWORD", "PGSSLMODE",
                "PGSSLROOTCERT", "PGSSLNEGOTIATION", "PGAPPNAME", "PGCONNECT_TIMEOUT", "HOSTNAME", "AWS_REGION",
                "AWS_DEFAULT_REGION"]),
            cs in proptest::option::of(prop_oneof![near_valid_connection_string(), any::<String>()]),
        ) {
            let inputs = Inputs { options, connection_string: cs, env };
            if let Ok(c) = resolve(&inputs) {
                // What a resolved config promises: a port, and a TLS mode that never allows plaintext,
                // which verifies unless `require` was asked for by name.
                prop_assert!(c.port > 0);
                let asked_require = [inputs.options.get("sslmode"), inputs.env.get("PGSSLMODE")]
                    .into_iter()
                    .flatten()
                    .any(|v| v.trim().eq_ignore_ascii_case("require"))
                    || inputs.connection_string.as_deref().is_some_and(|s| s.to_ascii_lowercase().contains("require"));
                if c.verification() == Verification::None {
                    prop_assert!(asked_require, "verification off without sslmode=require: {c:?}");
                }
            }
        }

        /// Whatever else is wrong, the password never appears in an error message or in Debug output.
        #[test]
        fn errors_never_echo_the_password(
            secret in "[A-Za-z0-9]{12,24}",
            options in map_of(OPTION_NAMES),
            env in map_of(&["PGHOST", "PGPORT", "PGSSLMODE", "PGCONNECT_TIMEOUT", "HOSTNAME"]),
            wrap in 0..4u8,
        ) {
            let mut options = options;
            options.remove("password");
            let (cs, options) = match wrap {
                0 => (None, { let mut o = options; o.insert("password".into(), secret.clone()); o }),
                1 => (Some(format!("postgres://u:{secret}@h:x/%zz")), options),
                2 => (Some(format!("host=h password={secret} port=nope")), options),
                _ => (Some(format!("postgresql://u:{secret}@[::1/db")), options),
            };
            let mut env = env;
            env.insert("PGPASSWORD".into(), secret.clone());
            let inputs = Inputs { options, connection_string: cs, env };
            match resolve(&inputs) {
                Err(e) => {
                    prop_assert!(!e.to_string().contains(&secret), "password in message: {e}");
                    prop_assert!(!format!("{e:?}").contains(&secret), "password in Debug");
                }
                Ok(c) => prop_assert!(!format!("{c:?}").contains(&secret), "password in Debug of Config"),
            }
        }
    }

    #[test]
    fn very_long_connection_strings_parse_in_linear_time() {
        let started = std::time::Instant::now();
        let long = format!("host={} {}", "h".repeat(1 << 20), "user=u ".repeat(50_000));
        let _ = parse_connection_string(&long);
        let url = format!("postgres://{}@h/db?{}", "%41".repeat(300_000), "sslmode=require&".repeat(50_000));
        let _ = parse_connection_string(&url);
        assert!(started.elapsed().as_secs() < 5, "took {:?}", started.elapsed());
    }

    /// A libpq password with a space must be quoted; written unquoted, the rest of it reads as the
    /// next key. That mistake must not put part of the password into the error message.
    #[test]
    fn an_unquoted_password_with_spaces_is_not_echoed() {
        for s in ["host=h password=correct horse battery", "host=h password=correct horse=battery"] {
            let err = parse_connection_string(s).expect_err("malformed");
            let msg = err.to_string();
            for part in ["horse", "battery"] {
                assert!(!msg.contains(part), "part of the password in the error: {msg}");
            }
        }
    }
}
