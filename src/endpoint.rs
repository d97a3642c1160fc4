//! DSQL hostnames and tunnel addresses.

use std::net::IpAddr;

/// The region of a DSQL endpoint (`<id>.dsql[-suffix].<region>.on.aws`), or `None` when `host`
/// is not one.
pub fn dsql_region(host: &str) -> Option<&str> {
    let host = host.strip_suffix('.').unwrap_or(host);
    let rest = strip_suffix_ignore_case(host, ".on.aws")?;
    let mut labels = rest.split('.');
    let (id, service, region) = (labels.next()?, labels.next()?, labels.next()?);
    if labels.next().is_some() || id.is_empty() || region.is_empty() {
        return None;
    }
    if !service.to_ascii_lowercase().starts_with("dsql") {
        return None;
    }
    let region_ok = region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    region_ok.then_some(region)
}

/// Whether `host` is a DSQL endpoint, public or PrivateLink.
pub fn is_dsql_host(host: &str) -> bool {
    dsql_region(host).is_some()
}

fn strip_suffix_ignore_case<'a>(s: &'a str, suffix: &str) -> Option<&'a str> {
    let cut = s.len().checked_sub(suffix.len())?;
    (s.is_char_boundary(cut) && s[cut..].eq_ignore_ascii_case(suffix)).then(|| &s[..cut])
}

/// Where TCP goes: the tunnel's local end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TunnelAddr {
    Ip(IpAddr),
    /// `localhost`, resolved at connect time (it may be 127.0.0.1 or ::1).
    Localhost,
}

impl TunnelAddr {
    pub fn parse(s: &str) -> Option<TunnelAddr> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("localhost") {
            return Some(TunnelAddr::Localhost);
        }
        let bare = s.strip_prefix('[').and_then(|x| x.strip_suffix(']')).unwrap_or(s);
        bare.parse().ok().map(TunnelAddr::Ip)
    }
}

impl std::fmt::Display for TunnelAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TunnelAddr::Ip(ip) => write!(f, "{ip}"),
            TunnelAddr::Localhost => f.write_str("localhost"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_dsql_endpoints() {
        assert_eq!(dsql_region("a-dsql-cluster-id.dsql-fnh4.us-east-1.on.aws"), Some("us-east-1"));
        assert_eq!(dsql_region("abc.dsql.eu-west-2.on.aws"), Some("eu-west-2"));
        assert_eq!(dsql_region("abc.dsql.eu-west-2.on.aws."), Some("eu-west-2"));
        assert_eq!(dsql_region("ABC.DSQL.us-east-1.ON.AWS"), Some("us-east-1"));
        assert!(!is_dsql_host("my-laptop"));
        assert!(!is_dsql_host("localhost"));
        assert!(!is_dsql_host("127.0.0.1"));
        assert!(!is_dsql_host("db.example.com"));
        assert!(!is_dsql_host("x.rds.us-east-1.on.aws"));
        assert!(!is_dsql_host("a.b.dsql.us-east-1.on.aws"));
        assert!(!is_dsql_host(".dsql.us-east-1.on.aws"));
        assert!(!is_dsql_host("é.dsql.us-east-1.on.aws.é"));
    }

    #[test]
    fn parses_tunnel_addresses() {
        assert_eq!(TunnelAddr::parse("127.0.0.1"), Some(TunnelAddr::Ip("127.0.0.1".parse().unwrap())));
        assert_eq!(TunnelAddr::parse("[::1]"), Some(TunnelAddr::Ip("::1".parse().unwrap())));
        assert_eq!(TunnelAddr::parse("::1"), Some(TunnelAddr::Ip("::1".parse().unwrap())));
        assert_eq!(TunnelAddr::parse("LocalHost"), Some(TunnelAddr::Localhost));
        assert_eq!(TunnelAddr::parse("bastion.example.com"), None);
        assert_eq!(TunnelAddr::parse(""), None);
    }
}
