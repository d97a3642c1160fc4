//! The common keys of `~/.ssh/config`, as ssh reads them: for each key the first value from the
//! `Host` blocks whose patterns match the name given (`*`, `?`, `!negation`), explicit settings
//! winning over all of them. `Match` blocks and `Include` are not read.

use std::path::{Path, PathBuf};

/// What the config file says about one host.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct HostConfig {
    pub host_name: Option<String>,
    pub user: Option<String>,
    pub port: Option<u16>,
    pub identity_files: Vec<PathBuf>,
    pub proxy_command: Option<String>,
}

/// Reads `path` (missing: nothing) for `host`.
pub fn for_host(path: &Path, host: &str, home: Option<&Path>) -> HostConfig {
    std::fs::read_to_string(path).map(|text| parse(&text, host, home)).unwrap_or_default()
}

pub fn parse(text: &str, host: &str, home: Option<&Path>) -> HostConfig {
    let mut out = HostConfig::default();
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
            "proxycommand" if out.proxy_command.is_none() && !value.eq_ignore_ascii_case("none") => {
                out.proxy_command = Some(value.to_string())
            }
            _ => {}
        }
    }
    out
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
        assert!(c.proxy_command.unwrap().contains("--target %h"));
        let db = parse(CONFIG, "prod-db", home);
        assert_eq!(db.proxy_command, None);
        let other = parse(CONFIG, "elsewhere", home);
        assert_eq!((other.host_name, other.port), (None, None));
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
