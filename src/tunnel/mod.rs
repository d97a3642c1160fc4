//! Tunnels the driver opens itself (the `tunnel` option): what they are, how they are written,
//! and the one stream type the connector reads and writes whichever way TCP is carried.
//!
//! The connector dials through [`Stream`] and does not learn which tunnel it rides: SNI,
//! certificate verification and tokens stay on the cluster's hostname either way.

pub mod ssh;
pub mod ssh_config;
pub mod ssm;

use crate::config::Secret;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A tunnel to open: an SSH session to a bastion, or an SSM port-forwarding session.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Spec {
    Ssh(SshSpec),
    Ssm(SsmSpec),
}

/// An SSM managed instance to forward through, as `ssm://<instance-id>` or `{ ssm: { … } }`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SsmSpec {
    pub target: String,
    /// Passed to the CLI as `--region`; `None`: the CLI's own default.
    pub region: Option<String>,
    /// Passed to the CLI as `--profile`.
    pub profile: Option<String>,
}

/// Which ssh-agent to ask for keys.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Agent {
    /// `SSH_AUTH_SOCK`, when it is set.
    Auto,
    /// No agent: identity files only.
    Off,
    /// This socket.
    Socket(PathBuf),
}

/// An SSH bastion, as `ssh://[user@]host[:port]` or `{ ssh: { … } }` writes it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SshSpec {
    /// A name, an address, or a `Host` of `~/.ssh/config`.
    pub host: String,
    /// `None`: `~/.ssh/config`'s `Port`, else 22.
    pub port: Option<u16>,
    /// `None`: `~/.ssh/config`'s `User`, else `$USER`, as ssh does.
    pub user: Option<String>,
    /// `None`: `~/.ssh/config`'s `IdentityFile`s, else `~/.ssh/id_ed25519`, `id_ecdsa`, `id_rsa`.
    pub identity_file: Option<PathBuf>,
    pub passphrase: Option<Secret>,
    /// `None`: `~/.ssh/known_hosts`.
    pub known_hosts_file: Option<PathBuf>,
    pub agent: Agent,
}

impl Spec {
    /// Parses the option's text: `ssh://[user@]host[:port]`, or the JSON of `{ ssh: { … } }`.
    pub fn parse(s: &str) -> Result<Spec, String> {
        let s = s.trim();
        if s.starts_with('{') {
            return parse_object(s);
        }
        if let Some(target) = s.strip_prefix("ssm://") {
            let target = target.trim_end_matches('/');
            if target.is_empty() || !target.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b)) {
                return Err("ssm:// needs the managed instance's id, e.g. ssm://i-0123456789abcdef0".into());
            }
            return Ok(Spec::Ssm(SsmSpec { target: target.to_string(), region: None, profile: None }));
        }
        let Some(rest) = s.strip_prefix("ssh://") else {
            return Err("use ssh://[user@]bastion[:port], ssm://<instance-id>, { ssh: { host, port, user, \
                        identityFile, passphrase, knownHostsFile, agent } } or { ssm: { target, region, profile } }"
                .into());
        };
        let rest = rest.trim_end_matches('/');
        let (user, hostport) = match rest.rsplit_once('@') {
            Some((u, h)) if !u.is_empty() => (Some(u.to_string()), h),
            Some(_) => return Err("the user before @ is empty".into()),
            None => (None, rest),
        };
        let (host, port) = split_host_port(hostport)?;
        Ok(Spec::Ssh(SshSpec {
            host,
            port,
            user,
            identity_file: None,
            passphrase: None,
            known_hosts_file: None,
            agent: Agent::Auto,
        }))
    }

    /// The tunnel as shown to the user (never with a passphrase).
    pub fn describe(&self) -> String {
        match self {
            Spec::Ssh(s) => {
                let user = s.user.as_deref().map(|u| format!("{u}@")).unwrap_or_default();
                let host = if s.host.contains(':') { format!("[{}]", s.host) } else { s.host.clone() };
                let port = s.port.map(|p| format!(":{p}")).unwrap_or_default();
                format!("ssh://{user}{host}{port}")
            }
            Spec::Ssm(s) => format!("ssm://{}", s.target),
        }
    }
}

pub(crate) fn split_host_port(s: &str) -> Result<(String, Option<u16>), String> {
    let (host, port) = if let Some(v6) = s.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or("an IPv6 address opened with [ needs its ]")?;
        (h, after.strip_prefix(':'))
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.is_empty() {
        return Err("no bastion host".into());
    }
    let port = match port {
        Some(p) => Some(p.parse::<u16>().ok().filter(|&n| n > 0).ok_or_else(|| format!("port {p:?} is not 1-65535"))?),
        None => None,
    };
    Ok((host.to_string(), port))
}

fn parse_object(s: &str) -> Result<Spec, String> {
    let v: serde_json::Value = serde_json::from_str(s).map_err(|_| "the tunnel object is not valid".to_string())?;
    if let Some(ssm) = v.get("ssm") {
        let ssm = ssm.as_object().ok_or("ssm must be an object: { target, region, profile }")?;
        let text = |k: &str| -> Result<Option<String>, String> {
            match ssm.get(k) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
                Some(_) => Err(format!("ssm.{k} must be a non-empty string")),
            }
        };
        for key in ssm.keys() {
            if !["target", "region", "profile"].contains(&key.as_str()) {
                return Err(format!("ssm.{key} is not a tunnel setting"));
            }
        }
        let target = text("target")?.ok_or("ssm.target (the managed instance's id) is required")?;
        return Ok(Spec::Ssm(SsmSpec { target, region: text("region")?, profile: text("profile")? }));
    }
    let ssh = v.get("ssh").and_then(|s| s.as_object()).ok_or("the tunnel object needs an ssh: { host } member")?;
    for key in ssh.keys() {
        if !["host", "port", "user", "identityFile", "passphrase", "knownHostsFile", "agent"].contains(&key.as_str()) {
            return Err(format!("ssh.{key} is not a tunnel setting"));
        }
    }
    let text = |k: &str| -> Result<Option<String>, String> {
        match ssh.get(k) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
            Some(_) => Err(format!("ssh.{k} must be a non-empty string")),
        }
    };
    let host = text("host")?.ok_or("ssh.host is required")?;
    let port = match ssh.get("port") {
        None | Some(serde_json::Value::Null) => None,
        Some(p) => Some(
            p.as_u64()
                .or_else(|| p.as_str().and_then(|s| s.parse().ok()))
                .and_then(|n| u16::try_from(n).ok())
                .filter(|&n| n > 0)
                .ok_or("ssh.port must be 1-65535")?,
        ),
    };
    let agent = match ssh.get("agent") {
        None | Some(serde_json::Value::Null) | Some(serde_json::Value::Bool(true)) => Agent::Auto,
        Some(serde_json::Value::Bool(false)) => Agent::Off,
        Some(serde_json::Value::String(p)) if !p.is_empty() => Agent::Socket(PathBuf::from(p)),
        Some(_) => return Err("ssh.agent must be true, false or the agent's socket path".into()),
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']').to_string();
    Ok(Spec::Ssh(SshSpec {
        host: bare,
        port,
        user: text("user")?,
        identity_file: text("identityFile")?.map(|p| expand_home(&p)),
        passphrase: text("passphrase")?.map(Secret::new),
        known_hosts_file: text("knownHostsFile")?.map(|p| expand_home(&p)),
        agent,
    }))
}

pub(crate) fn home() -> Option<PathBuf> {
    std::env::var_os("HOME").filter(|h| !h.is_empty()).map(PathBuf::from)
}

fn expand_home(p: &str) -> PathBuf {
    match (p.strip_prefix("~/"), home()) {
        (Some(rest), Some(h)) => h.join(rest),
        _ => PathBuf::from(p),
    }
}

/// Where a connection records that its tunnel died under it, shared with its queries (which
/// otherwise see only "connection closed").
#[derive(Debug, Clone, Default)]
pub struct Lost(Arc<OnceLock<String>>);

impl Lost {
    pub fn get(&self) -> Option<&str> {
        self.0.get().map(String::as_str)
    }
    pub(crate) fn set(&self, why: String) {
        let _ = self.0.set(why);
    }
}

/// The error a tunnel stream fails with once its session has ended.
#[derive(Debug)]
pub struct LostError(pub String);

impl std::fmt::Display for LostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LostError {}

/// `TUNNEL_LOST`, with what ended the session.
pub fn lost_error(why: &str) -> crate::error::Error {
    crate::error::Error::Tunnel {
        failure: crate::error::TunnelFailure::Lost,
        detail: format!(
            "the tunnel's session ended ({why}); connections that rode it are closed. The next connection \
             opens a new session"
        ),
    }
}

/// Finds a [`LostError`] in an error's chain of causes.
pub fn lost_in(e: &(dyn std::error::Error + 'static)) -> Option<crate::error::Error> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(l) = err.downcast_ref::<LostError>() {
            return Some(lost_error(&l.0));
        }
        if let Some(l) =
            err.downcast_ref::<io::Error>().and_then(|io| io.get_ref()).and_then(|i| i.downcast_ref::<LostError>())
        {
            return Some(lost_error(&l.0));
        }
        cur = err.source();
    }
    None
}

/// What the connector reads and writes: TCP to the tunnel address, or a channel of a tunnel
/// the driver opened.
pub enum Stream {
    Tcp(TcpStream),
    Ssh(Box<ssh::Channel>),
    Ssm(ssm::Connection),
}

impl Stream {
    /// Set when the stream failed because its tunnel's session ended.
    pub fn lost(&self) -> Lost {
        match self {
            Stream::Tcp(_) => Lost::default(),
            Stream::Ssh(c) => c.lost.clone(),
            Stream::Ssm(c) => c.lost.clone(),
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Ssh(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Ssm(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Ssh(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Ssm(s) => Pin::new(s).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Ssh(s) => Pin::new(s).poll_flush(cx),
            Stream::Ssm(s) => Pin::new(s).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Ssh(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Ssm(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Ssh(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Ssm(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }
    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Tcp(s) => s.is_write_vectored(),
            Stream::Ssh(s) => s.is_write_vectored(),
            Stream::Ssm(s) => s.is_write_vectored(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Agent, Spec};

    #[test]
    fn ssh_urls() {
        let Ok(Spec::Ssh(s)) = Spec::parse("ssh://ec2-user@bastion.example:2222") else { panic!() };
        assert_eq!((s.host.as_str(), s.port, s.user.as_deref()), ("bastion.example", Some(2222), Some("ec2-user")));
        let Ok(Spec::Ssh(s)) = Spec::parse("ssh://[::1]") else { panic!() };
        assert_eq!((s.host.as_str(), s.port, s.user), ("::1", None, None));
        for bad in ["bastion", "ssh://", "ssh://@h", "ssh://h:0", "ssh://h:x", "ssm://", "ssm://i 1;x"] {
            assert!(Spec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ssh_objects() {
        let Ok(Spec::Ssh(s)) = Spec::parse(
            r#"{"ssh":{"host":"b","port":"2200","user":"u","identityFile":"/k","passphrase":"pw","agent":false}}"#,
        ) else {
            panic!()
        };
        assert_eq!(
            (s.port, &s.agent, s.passphrase.as_ref().map(|p| p.expose())),
            (Some(2200), &Agent::Off, Some("pw"))
        );
        assert!(!format!("{s:?}").contains("pw\""), "passphrase in Debug");
        assert!(Spec::parse(r#"{"ssh":{"host":"b","bogus":1}}"#).is_err());
        assert!(Spec::parse(r#"{"ssh":{"port":22}}"#).is_err());
    }

    #[test]
    fn ssm_forms() {
        let want = super::SsmSpec { target: "i-0abc".into(), region: Some("eu-west-1".into()), profile: None };
        assert_eq!(Spec::parse(r#"{"ssm":{"target":"i-0abc","region":"eu-west-1"}}"#), Ok(Spec::Ssm(want)));
        assert_eq!(Spec::parse("ssm://i-0abc").map(|s| s.describe()), Ok("ssm://i-0abc".to_string()));
        assert!(Spec::parse(r#"{"ssm":{"region":"x"}}"#).is_err());
    }
}
