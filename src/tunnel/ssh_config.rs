//! The common keys of `~/.ssh/config`, as ssh reads them: for each key the first value from the
//! `Host` blocks whose patterns match the name given (`*`, `?`, `!negation`), explicit settings
//! winning over all of them. `Include` is read where it stands; `Match` blocks are not.

use std::path::{Path, PathBuf};

/// How deep `Include`s may nest, as in ssh.
const INCLUDE_DEPTH: usize = 16;

/// What the config file says about one host.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct HostConfig {
    pub host_name: Option<String>,
    pub user: Option<String>,
    pub port: Option<u16>,
    pub identity_files: Vec<PathBuf>,
    /// `ProxyCommand` or `ProxyJump`, whichever comes first (as ssh: each blocks the other).
    pub proxy: Option<Proxy>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proxy {
    /// A command whose stdin and stdout carry the session.
    Command(String),
    /// Jump hosts, `[user@]host[:port]` each, in the order they are passed through.
    Jump(Vec<String>),
    /// `none`: neither.
    None,
}

impl HostConfig {
    pub fn proxy_command(&self) -> Option<&str> {
        match &self.proxy {
            Some(Proxy::Command(c)) => Some(c),
            _ => None,
        }
    }

    pub fn proxy_jump(&self) -> &[String] {
        match &self.proxy {
            Some(Proxy::Jump(j)) => j,
            _ => &[],
        }
    }
}

/// Reads `path` (missing: nothing) for `host`.
pub fn for_host(path: &Path, host: &str, home: Option<&Path>) -> HostConfig {
    std::fs::read_to_string(path).map(|text| parse(&text, host, home)).unwrap_or_default()
}

pub fn parse(text: &str, host: &str, home: Option<&Path>) -> HostConfig {
    let mut out = HostConfig::default();
    read(text, host, home, &mut out, 0);
    out
}

/// One file's lines into `out`; `Include`d files are read where they stand, with the `Host`
/// block that includes them deciding whether their lines before a `Host` of their own apply.
fn read(text: &str, host: &str, home: Option<&Path>, out: &mut HostConfig, depth: usize) {
    // Lines before the first Host apply to every host.
    let mut applies = true;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = match line.split_once(|c: char| c.is_whitespace() || c == '=') {
            Some((k, v)) => {
                (k.to_ascii_lowercase(), v.trim_start_matches(|c: char| c.is_whitespace() || c == '=').trim())
            }
            None => continue,
        };
        let value = unquote(value);
        match key.as_str() {
            "host" => applies = matches(value, host),
            "match" => applies = false,
            _ if !applies => {}
            "hostname" if out.host_name.is_none() => out.host_name = Some(value.replace("%h", host)),
            "user" if out.user.is_none() => out.user = Some(value.to_string()),
            "port" if out.port.is_none() => out.port = value.parse().ok().filter(|&p: &u16| p > 0),
            "identityfile" => out.identity_files.push(expand(value, home)),
            "proxycommand" | "proxyjump" if out.proxy.is_none() => {
                out.proxy = Some(if value.eq_ignore_ascii_case("none") {
                    Proxy::None
                } else if key == "proxycommand" {
                    Proxy::Command(value.to_string())
                } else {
                    Proxy::Jump(value.split(',').map(|j| j.trim().to_string()).filter(|j| !j.is_empty()).collect())
                })
            }
            "include" if depth < INCLUDE_DEPTH => {
                for file in value.split_whitespace().flat_map(|p| included(p, home)) {
                    if let Ok(text) = std::fs::read_to_string(&file) {
                        read(&text, host, home, out, depth + 1);
                    }
                }
            }
            _ => {}
        }
    }
}

/// The files an `Include` names: relative paths are in `~/.ssh`; `*` and `?` in the file name
/// match, in name order.
fn included(pattern: &str, home: Option<&Path>) -> Vec<PathBuf> {
    let path = expand(unquote(pattern), home);
    let path = match (path.is_relative(), home) {
        (true, Some(h)) => h.join(".ssh").join(path),
        _ => path,
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if !name.contains(['*', '?']) {
        return vec![path];
    }
    let Some(dir) = path.parent() else { return Vec::new() };
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter(|e| glob(&name, &e.file_name().to_string_lossy()))
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

fn unquote(v: &str) -> &str {
    v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v)
}

fn expand(p: &str, home: Option<&Path>) -> PathBuf {
    match (p.strip_prefix("~/"), home) {
        (Some(rest), Some(h)) => h.join(rest),
        _ => PathBuf::from(p),
    }
}

/// `Host` patterns: any positive pattern matches and no negated one does.
fn matches(patterns: &str, host: &str) -> bool {
    let mut hit = false;
    for p in patterns.split_whitespace() {
        if let Some(neg) = p.strip_prefix('!') {
            if glob(neg, host) {
                return false;
            }
        } else if glob(p, host) {
            hit = true;
        }
    }
    hit
}

fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) =
        (pattern.to_ascii_lowercase().chars().collect(), text.to_ascii_lowercase().chars().collect());
    // Iterative matching with one backtrack point: linear in practice, no recursion.
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// `%h`, `%p`, `%r` and `%%` in a ProxyCommand, as ssh expands them.
pub fn expand_tokens(command: &str, host: &str, port: u16, user: &str) -> String {
    let mut out = String::with_capacity(command.len());
    let mut chars = command.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('h') => out.push_str(host),
            Some('p') => out.push_str(&port.to_string()),
            Some('r') => out.push_str(user),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{expand_tokens, glob, parse};
    use std::path::{Path, PathBuf};

    const CONFIG: &str = "
User everyone
Host bastion prod-*
  HostName 10.0.0.5
  Port 2222
  IdentityFile ~/.ssh/bastion
Host prod-* !prod-db
  User ec2-user
  ProxyCommand aws ssm start-session --target %h --document-name AWS-StartSSHSession --parameters portNumber=%p
Host *
  User fallback
  IdentityFile ~/.ssh/id_ed25519
";

    #[test]
    fn first_value_wins_and_patterns_match() {
        let home = Some(Path::new("/home/u"));
        let c = parse(CONFIG, "prod-web", home);
        assert_eq!(c.host_name.as_deref(), Some("10.0.0.5"));
        assert_eq!(c.port, Some(2222));
        assert_eq!(c.user.as_deref(), Some("everyone"));
        assert_eq!(
            c.identity_files,
            vec![PathBuf::from("/home/u/.ssh/bastion"), PathBuf::from("/home/u/.ssh/id_ed25519")]
        );
        assert!(c.proxy_command().unwrap().contains("--target %h"));
        let db = parse(CONFIG, "prod-db", home);
        assert_eq!(db.proxy, None);
        let other = parse(CONFIG, "elsewhere", home);
        assert_eq!((other.host_name, other.port), (None, None));
    }

    #[test]
    fn proxy_jump_and_command_block_each_other() {
        let c = parse("Host a\n ProxyJump j1, u@j2:2200\n ProxyCommand nc %h %p\n", "a", None);
        assert_eq!(c.proxy_jump(), ["j1".to_string(), "u@j2:2200".to_string()]);
        assert_eq!(c.proxy_command(), None);
        let c = parse("Host a\n ProxyCommand none\nHost *\n ProxyJump j1\n", "a", None);
        assert_eq!((c.proxy, parse("ProxyJump j\n", "x", None).proxy_jump().len()), (Some(super::Proxy::None), 1));
    }

    #[test]
    fn include_is_read_where_it_stands() {
        let dir = std::env::temp_dir().join(format!("dsql-ssh-config-{}", std::process::id()));
        let ssh = dir.join(".ssh");
        std::fs::create_dir_all(ssh.join("conf.d")).unwrap();
        std::fs::write(ssh.join("conf.d").join("10-bastion.conf"), "Host bastion\n  HostName 10.1.1.1\n  User ops\n")
            .unwrap();
        std::fs::write(ssh.join("conf.d").join("20-other"), "Host bastion\n  HostName 10.9.9.9\n  Port 2200\n")
            .unwrap();
        std::fs::write(ssh.join("loop"), "Include loop\n").unwrap();
        let c = parse("Include conf.d/*\nInclude loop\nHost *\n  User fallback\n", "bastion", Some(&dir));
        assert_eq!((c.host_name.as_deref(), c.user.as_deref(), c.port), (Some("10.1.1.1"), Some("ops"), Some(2200)));
        // Inside a Host block that does not match, an Include adds nothing.
        let c = parse("Host elsewhere\n  Include conf.d/*\n", "bastion", Some(&dir));
        assert_eq!(c.host_name, None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn globs_and_tokens() {
        assert!(glob("*.example.com", "a.b.example.com"));
        assert!(glob("h?st", "HOST"));
        assert!(!glob("a*b", "ac"));
        assert!(glob(&"*".repeat(50), &"a".repeat(5000)));
        assert_eq!(expand_tokens("nc %h %p # %r %% %x", "b", 22, "u"), "nc b 22 # u % %x");
    }
}
