//! DSQL IAM auth tokens: minted with AWS's SigV4 signer from the standard credential chain (or
//! credentials the caller hands over), and static tokens decoded so that mistakes are caught
//! before any network round trip.

use crate::config::{Config, Secret, Source};
use crate::endpoint::dsql_region;
use crate::error::{Error, TokenField};
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{self, SignableBody, SignableRequest, SignatureLocation, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const SERVICE: &str = "dsql";
pub const DEFAULT_EXPIRY: Duration = Duration::from_secs(900);
pub const MAX_EXPIRY: Duration = Duration::from_secs(604_800);

/// `DbConnectAdmin` for the `admin` user, `DbConnect` for every other role.
pub fn action_for(user: &str) -> &'static str {
    if user == "admin" {
        "DbConnectAdmin"
    } else {
        "DbConnect"
    }
}

/// Region to sign for: explicit, else from the hostname, else `AWS_REGION`/`AWS_DEFAULT_REGION`.
pub fn region_for(host: &str, explicit: Option<&str>, env_region: Option<&str>) -> Option<String> {
    explicit.or_else(|| dsql_region(host)).or(env_region).map(str::to_string)
}

/// Everything a token is signed over.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub host: String,
    pub region: String,
    pub action: &'static str,
    pub expires_in: Duration,
    pub signed_at: SystemTime,
}

/// AWS URI encoding: unreserved characters stay, everything else is %XX.
fn uri_encode(s: &str, out: &mut String) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// Signs a token. The query parameters are written sorted by name, as the AWS CLI and
/// `@aws-sdk/dsql-signer` write them, so the string is the same byte for byte.
pub fn sign(req: &TokenRequest, credentials: &Credentials) -> Result<Secret, Error> {
    let failed = |e: &dyn std::fmt::Display| Error::TokenSigning { detail: e.to_string() };
    let identity: Identity = credentials.clone().into();
    let mut settings = SigningSettings::default();
    settings.expires_in = Some(req.expires_in);
    settings.signature_location = SignatureLocation::QueryParams;
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&req.region)
        .name(SERVICE)
        .time(req.signed_at)
        .settings(settings)
        .build()
        .map_err(|e| failed(&e))?;
    let url = format!("https://{}/?Action={}", req.host, req.action);
    let signable =
        SignableRequest::new("GET", &url, std::iter::empty(), SignableBody::Bytes(&[])).map_err(|e| failed(&e))?;
    let (instructions, _) = http_request::sign(signable, &params.into()).map_err(|e| failed(&e))?.into_parts();
    let mut pairs: Vec<(&str, &str)> = vec![("Action", req.action)];
    pairs.extend(instructions.params().iter().map(|(k, v)| (*k, v.as_ref())));
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    let mut token = format!("{}/?", req.host);
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            token.push('&');
        }
        uri_encode(k, &mut token);
        token.push('=');
        uri_encode(v, &mut token);
    }
    Ok(Secret::new(token))
}

/// Where AWS credentials come from.
#[derive(Clone)]
pub enum CredentialSource {
    /// Handed over by the caller (the `credentials` option).
    Given(Credentials),
    /// The standard chain: environment, profiles, web identity, containers, IMDS, SSO, process.
    Chain { profile: Option<String>, region: String },
}

impl std::fmt::Debug for CredentialSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CredentialSource::Given(_) => f.write_str("Given(<redacted>)"),
            CredentialSource::Chain { profile, region } => {
                write!(f, "Chain({profile:?}, {region})")
            }
        }
    }
}

async fn chain(profile: Option<&str>, region: &str) -> Option<SharedCredentialsProvider> {
    use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
    // The SDK's HTTPS client (for SSO, STS, IMDS, containers) on ring, like the rest of the build.
    crate::tls::provider();
    let http = aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).build_https();
    // An explicit region keeps the loader from asking instance metadata for one.
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http)
        .region(aws_config::Region::new(region.to_string()));
    if let Some(p) = profile {
        loader = loader.profile_name(p);
    }
    loader.load().await.credentials_provider()
}

pub async fn credentials(source: &CredentialSource) -> Result<Credentials, Error> {
    match source {
        CredentialSource::Given(c) => Ok(c.clone()),
        CredentialSource::Chain { profile, region } => {
            let provider = chain(profile.as_deref(), region)
                .await
                .ok_or_else(|| Error::Credentials { detail: "no credential provider is configured".into() })?;
            provider.provide_credentials().await.map_err(|e| {
                let mut detail = e.to_string();
                let mut cur = std::error::Error::source(&e);
                while let Some(s) = cur {
                    detail.push_str(": ");
                    detail.push_str(&s.to_string());
                    cur = s.source();
                }
                Error::Credentials { detail }
            })
        }
    }
}

pub fn static_credentials(access_key_id: &str, secret: &str, session_token: Option<&str>) -> Credentials {
    Credentials::new(access_key_id, secret, session_token.map(str::to_string), None, "dsql-tunnel")
}

/// What a token says about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Claims {
    pub host: String,
    pub action: String,
    pub region: String,
    pub access_key_id: String,
    pub signed_at: u64,
    pub expires_in: u64,
}

impl Claims {
    pub fn expires_at(&self) -> u64 {
        self.signed_at.saturating_add(self.expires_in)
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Seconds since the epoch for `yyyymmddThhmmssZ`.
fn parse_amz_date(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 16
        || b[8] != b'T'
        || b[15] != b'Z'
        || !s[..8].bytes().chain(s[9..15].bytes()).all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s[r].parse::<i64>().ok();
    let (y, m, d) = (n(0..4)?, n(4..6)?, n(6..8)?);
    let (hh, mm, ss) = (n(9..11)?, n(11..13)?, n(13..15)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Days from civil (proleptic Gregorian), 1970-01-01 = 0.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).ok()
}

/// Formats seconds since the epoch as `yyyy-mm-ddThh:mm:ssZ`.
pub fn iso8601(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, (rem % 3600) / 60, rem % 60)
}

/// Decodes a DSQL token; `None` when `s` does not look like one (then it is an ordinary password).
pub fn decode(s: &str) -> Option<Claims> {
    let s = s.trim();
    let s = s.strip_prefix("https://").unwrap_or(s);
    let (host, query) = s.split_once("/?")?;
    let mut claims = Claims {
        host: host.to_ascii_lowercase(),
        action: String::new(),
        region: String::new(),
        access_key_id: String::new(),
        signed_at: 0,
        expires_in: 0,
    };
    let (mut has_signature, mut has_date) = (false, false);
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=')?;
        let v = percent_decode(v)?;
        match k {
            "Action" => claims.action = v,
            "X-Amz-Credential" => {
                let mut parts = v.split('/');
                claims.access_key_id = parts.next()?.to_string();
                let _date = parts.next()?;
                claims.region = parts.next()?.to_string();
            }
            "X-Amz-Date" => {
                claims.signed_at = parse_amz_date(&v)?;
                has_date = true;
            }
            "X-Amz-Expires" => claims.expires_in = v.parse().ok()?,
            "X-Amz-Signature" => has_signature = true,
            _ => {}
        }
    }
    (has_signature && has_date && claims.action.starts_with("DbConnect")).then_some(claims)
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn where_from(source: Source) -> String {
    match source {
        Source::Option => "the password option".into(),
        Source::ConnectionString => "the connection string's password".into(),
        Source::Environment(name) => name.to_string(),
        Source::Default => "the password".into(),
    }
}

/// Checks a static password that is a DSQL token against the connection it is about to be
/// used for: expiry, hostname, action for the user, region.
pub fn check_static(password: &Secret, config: &Config, region: Option<&str>, now: Option<u64>) -> Result<(), Error> {
    let Some(claims) = decode(password.expose()) else {
        return Ok(());
    };
    let source = config.sources.iter().find(|(k, _)| *k == "password").map_or(Source::Option, |(_, s)| *s);
    let from = where_from(source);
    let now = now.unwrap_or_else(now_secs);
    if claims.expires_at() <= now {
        return Err(Error::TokenExpired {
            from,
            host: config.host.clone(),
            expired_at: iso8601(claims.expires_at()),
            ago_secs: now - claims.expires_at(),
        });
    }
    let mismatch =
        |field, expected: String, found: String| Error::TokenMismatch { field, from: from.clone(), expected, found };
    if !claims.host.eq_ignore_ascii_case(config.host.trim_end_matches('.')) {
        return Err(mismatch(TokenField::Host, config.host.clone(), claims.host));
    }
    let wanted = action_for(&config.user);
    if claims.action != wanted {
        return Err(mismatch(TokenField::Action { user: config.user.clone() }, wanted.into(), claims.action));
    }
    if let Some(r) = region.filter(|r| !claims.region.eq_ignore_ascii_case(r)) {
        return Err(mismatch(TokenField::Region, r.to_string(), claims.region));
    }
    Ok(())
}

/// The password for a new connection: the configured one (a static token is checked first), or a
/// token minted now, or none (a server that needs no password).
pub async fn password_for(config: &Config, given: Option<&Credentials>) -> Result<Option<Secret>, Error> {
    if let Some(p) = &config.password {
        check_static(p, config, config.region.as_deref(), None)?;
        return Ok(Some(p.clone()));
    }
    if !config.mints_tokens() {
        return Ok(None);
    }
    let region = config.region.clone().ok_or_else(|| {
        Error::config("region", "set the region option or AWS_REGION to sign DSQL auth tokens for this host")
    })?;
    let source = match given {
        Some(c) => CredentialSource::Given(c.clone()),
        None => CredentialSource::Chain { profile: config.profile.clone(), region: region.clone() },
    };
    let credentials = credentials(&source).await?;
    let request = TokenRequest {
        host: config.host.trim_end_matches('.').to_string(),
        region,
        action: action_for(&config.user),
        expires_in: config.token_duration,
        signed_at: SystemTime::now(),
    };
    sign(&request, &credentials).map(Some)
}

/// What `generateToken` takes.
#[derive(Debug, Clone, Default)]
pub struct GenerateOptions {
    /// The DSQL hostname, or a bare cluster id (with a region).
    pub host: String,
    pub region: Option<String>,
    pub env_region: Option<String>,
    pub user: Option<String>,
    pub expires_in: Option<u64>,
    pub profile: Option<String>,
    pub signed_at: Option<SystemTime>,
}

/// A token as `aws dsql generate-db-connect[-admin]-auth-token` makes it.
pub async fn generate(o: &GenerateOptions, given: Option<&Credentials>) -> Result<Secret, Error> {
    let host = o.host.trim().trim_end_matches('.');
    if host.is_empty() {
        return Err(Error::config("host", "generateToken needs host: the cluster's DSQL hostname"));
    }
    let region = region_for(host, o.region.as_deref(), o.env_region.as_deref())
        .ok_or_else(|| Error::config("region", format!("no region for {host}: pass region or set AWS_REGION")))?;
    // A bare cluster id expands to its public endpoint, as AWS's connectors do.
    let host = if host.contains('.') { host.to_string() } else { format!("{host}.dsql.{region}.on.aws") };
    let expires_in = o.expires_in.unwrap_or(DEFAULT_EXPIRY.as_secs());
    if expires_in == 0 || expires_in > MAX_EXPIRY.as_secs() {
        return Err(Error::config("expiresIn", "expiresIn must be from 1 to 604800 seconds (7 days)"));
    }
    let source = match given {
        Some(c) => CredentialSource::Given(c.clone()),
        None => CredentialSource::Chain { profile: o.profile.clone(), region: region.clone() },
    };
    let credentials = credentials(&source).await?;
    let request = TokenRequest {
        host,
        region,
        action: action_for(o.user.as_deref().unwrap_or("admin")),
        expires_in: Duration::from_secs(expires_in),
        signed_at: o.signed_at.unwrap_or_else(SystemTime::now),
    };
    sign(&request, &credentials)
}

/// Adds the likely causes to an authentication failure of a token.
pub fn with_auth_hint(e: Error) -> Error {
    match e {
        Error::Server(mut s) if s.code == "28P01" && s.hint.is_none() => {
            s.hint = Some(
                "DSQL refused the auth token. Likely causes, most likely first: the token has expired \
                 (tokens are checked when a connection opens); it is for the wrong action (user admin needs \
                 DbConnectAdmin, other roles DbConnect); the IAM identity lacks dsql:DbConnectAdmin or \
                 dsql:DbConnect on this cluster; it was signed for another region than the cluster's"
                    .into(),
            );
            Error::Server(s)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{resolve, Inputs};

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn request(action: &'static str) -> TokenRequest {
        TokenRequest {
            host: "peccy.dsql.us-east-1.on.aws".into(),
            region: "us-east-1".into(),
            action,
            expires_in: Duration::from_secs(450),
            signed_at: at(1_724_716_800),
        }
    }

    // Known answers from AWS's own DSQL token tests (akid/secret, 2024-08-27T00:00:00Z, 450 s).
    #[test]
    fn signatures_match_aws_known_answers() {
        let creds = static_credentials("akid", "secret", None);
        let t = sign(&request("DbConnect"), &creds).unwrap();
        assert_eq!(
            t.expose(),
            "peccy.dsql.us-east-1.on.aws/?Action=DbConnect&X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Credential=akid%2F20240827%2Fus-east-1%2Fdsql%2Faws4_request&X-Amz-Date=20240827T000000Z\
             &X-Amz-Expires=450&X-Amz-Signature=f5f2ad764ca5df44045d4ab6ccecba0eef941b0007e5765885a0b6ed3702a3f8\
             &X-Amz-SignedHeaders=host"
        );
        let admin = sign(&request("DbConnectAdmin"), &creds).unwrap();
        assert!(admin
            .expose()
            .contains("X-Amz-Signature=267cf8d04d84444f7a62d5bdb40c44bfc6cb13dd6c64fa7f772df6bbaa90fff1"));
    }

    #[test]
    fn session_tokens_are_encoded_and_sorted() {
        let creds = static_credentials("AKIDEXAMPLE", "s3cr3t", Some("IQo/b+Z=="));
        let t = sign(&request("DbConnect"), &creds).unwrap();
        let q = t.expose().split_once('?').unwrap().1;
        let keys: Vec<&str> = q.split('&').map(|p| p.split('=').next().unwrap()).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert!(q.contains("X-Amz-Security-Token=IQo%2Fb%2BZ%3D%3D"));
    }

    #[test]
    fn decodes_its_own_tokens() {
        let t = sign(&request("DbConnectAdmin"), &static_credentials("akid", "secret", None)).unwrap();
        let c = decode(t.expose()).unwrap();
        assert_eq!(c.host, "peccy.dsql.us-east-1.on.aws");
        assert_eq!(c.action, "DbConnectAdmin");
        assert_eq!(c.region, "us-east-1");
        assert_eq!(c.access_key_id, "akid");
        assert_eq!(c.signed_at, 1_724_716_800);
        assert_eq!(c.expires_at(), 1_724_717_250);
        assert_eq!(iso8601(c.expires_at()), "2024-08-27T00:07:30Z");
        assert!(decode("hunter2").is_none());
        assert!(decode("h/?Action=DbConnect").is_none());
        assert!(decode("h/?Action=DbConnect&X-Amz-Date=bad&X-Amz-Signature=x").is_none());
    }

    fn config(user: &str, password: &str) -> Config {
        let options = [("host", "peccy.dsql.us-east-1.on.aws"), ("user", user), ("password", password)]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        resolve(&Inputs { options, ..Default::default() }).unwrap()
    }

    #[test]
    fn static_tokens_are_checked_before_connecting() {
        let creds = static_credentials("akid", "secret", None);
        let admin = sign(&request("DbConnectAdmin"), &creds).unwrap();
        let c = config("admin", admin.expose());
        let p = c.password.clone().unwrap();
        assert!(check_static(&p, &c, Some("us-east-1"), Some(1_724_716_900)).is_ok());
        let e = check_static(&p, &c, None, Some(1_724_717_250 + 120)).unwrap_err();
        assert_eq!(e.code(), "TOKEN_EXPIRED");
        assert!(e.to_string().contains("2024-08-27T00:07:30Z") && e.to_string().contains("2 minutes"), "{e}");
        assert!(!e.to_string().contains("X-Amz-Signature"), "{e}");
        let e = check_static(&p, &c, Some("eu-west-1"), Some(1_724_716_900)).unwrap_err();
        assert_eq!(e.code(), "TOKEN_REGION_MISMATCH");
        let other = config("app", admin.expose());
        let e = check_static(other.password.as_ref().unwrap(), &other, None, Some(1_724_716_900)).unwrap_err();
        assert_eq!(e.code(), "TOKEN_ACTION_MISMATCH");
        let mut moved = config("admin", admin.expose());
        moved.host = "other.dsql.us-east-1.on.aws".into();
        let e = check_static(&p, &moved, None, Some(1_724_716_900)).unwrap_err();
        assert_eq!(e.code(), "TOKEN_HOST_MISMATCH");
        let plain = config("admin", "not-a-token");
        assert!(check_static(plain.password.as_ref().unwrap(), &plain, None, None).is_ok());
    }

    #[test]
    fn regions() {
        assert_eq!(region_for("a.dsql-x.eu-west-2.on.aws", None, Some("us-east-1")).as_deref(), Some("eu-west-2"));
        assert_eq!(region_for("a.dsql-x.eu-west-2.on.aws", Some("ap-south-1"), None).as_deref(), Some("ap-south-1"));
        assert_eq!(region_for("localhost", None, Some("us-east-1")).as_deref(), Some("us-east-1"));
        assert_eq!(region_for("localhost", None, None), None);
        assert_eq!(action_for("admin"), "DbConnectAdmin");
        assert_eq!(action_for("reader"), "DbConnect");
    }
}

#[cfg(test)]
mod fuzz {
    // Property tests for DSQL token decoding: arbitrary strings and near-valid tokens never panic,
    // and every token the signer writes decodes back to what it was signed with.

    use super::{decode, TokenRequest};
    use crate::config::{resolve, Inputs, Secret};
    use crate::testing::cases;
    use crate::token;
    use proptest::prelude::*;
    use std::time::{Duration, UNIX_EPOCH};

    const PARAMS: &[&str] = &[
        "Action",
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Date",
        "X-Amz-Expires",
        "X-Amz-Security-Token",
        "X-Amz-Signature",
        "X-Amz-SignedHeaders",
    ];

    fn param_value() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("DbConnectAdmin".to_string()),
            Just("DbConnect".to_string()),
            Just("AKIDEXAMPLE%2F20240101%2Fus-east-1%2Fdsql%2Faws4_request".to_string()),
            Just("AKID%2F%2F".to_string()),
            Just("20240101T000000Z".to_string()),
            Just("99991399T256199Z".to_string()),
            Just("20240101T00000".to_string()),
            Just("2024010１T000000Z".to_string()),
            Just("18446744073709551615".to_string()),
            Just("18446744073709551616".to_string()),
            Just("-1".to_string()),
            Just("%".to_string()),
            Just("%e9".to_string()),
            Just("%c3".to_string()),
            "[0-9a-f]{0,64}",
            "\\PC{0,12}",
        ]
    }

    fn near_valid_token() -> impl Strategy<Value = String> {
        (
            prop_oneof![Just(String::new()), Just("https://".to_string()), Just(" ".to_string())],
            prop_oneof![Just("abc.dsql-fnh4.us-east-1.on.aws".to_string()), "\\PC{0,20}"],
            proptest::collection::vec(
                (
                    prop_oneof![proptest::sample::select(PARAMS).prop_map(str::to_string), "\\PC{0,8}"],
                    param_value(),
                    any::<bool>(),
                ),
                0..12,
            ),
        )
            .prop_map(|(scheme, host, pairs)| {
                let query: Vec<String> = pairs
                    .into_iter()
                    .map(|(k, v, eq)| if eq { format!("{k}={v}") } else { format!("{k}{v}") })
                    .collect();
                format!("{scheme}{host}/?{}", query.join("&"))
            })
    }

    proptest! {
        #![proptest_config(cases(2000))]

        #[test]
        fn arbitrary_strings_never_panic(s in any::<String>()) {
            let _ = decode(&s);
        }

        #[test]
        fn near_valid_tokens_never_panic(s in near_valid_token()) {
            if let Some(c) = decode(&s) {
                // Decoding never invents an expiry before the signing time.
                prop_assert!(c.expires_at() >= c.signed_at);
                prop_assert!(c.action.starts_with("DbConnect"));
            }
        }
    }

    proptest! {
        #![proptest_config(cases(200))]

        /// Whatever the signer writes, the decoder reads back: host, action, region, key and times.
        #[test]
        fn signed_tokens_decode_to_their_claims(
            id in "[a-z0-9]{1,26}",
            region in "[a-z]{2}-[a-z]{4,9}-[1-9]",
            admin in any::<bool>(),
            expires in 1u64..=604_800,
            signed_at in 946_684_800u64..4_102_444_800,
            key in "AKIA[A-Z2-7]{16}",
            secret in "[A-Za-z0-9/+]{40}",
            session in proptest::option::of("[A-Za-z0-9/+=]{20,200}"),
        ) {
            let host = format!("{id}.dsql-fnh4.{region}.on.aws");
            let action = if admin { "DbConnectAdmin" } else { "DbConnect" };
            let req = TokenRequest {
                host: host.clone(),
                region: region.clone(),
                action,
                expires_in: Duration::from_secs(expires),
                signed_at: UNIX_EPOCH + Duration::from_secs(signed_at),
            };
            let creds = token::static_credentials(&key, &secret, session.as_deref());
            let t = token::sign(&req, &creds).expect("sign");
            let c = decode(t.expose()).expect("a token the signer wrote decodes");
            prop_assert_eq!(c.host, host);
            prop_assert_eq!(c.action, action);
            prop_assert_eq!(c.region, region);
            prop_assert_eq!(c.access_key_id, key);
            prop_assert_eq!(c.signed_at, signed_at);
            prop_assert_eq!(c.expires_in, expires);
            // The secret key never travels; only its signature does.
            prop_assert!(!t.expose().contains(&secret));
            let shown = format!("{:?}", t);
            prop_assert!(!shown.contains(t.expose()));
        }

        /// Checking a static token against a configuration never panics, whatever the token says.
        #[test]
        fn static_token_checks_never_panic(s in near_valid_token(), user in prop_oneof![Just("admin"), Just("reader")], now in any::<u64>()) {
            let inputs = Inputs {
                options: [("host", "abc.dsql-fnh4.us-east-1.on.aws"), ("user", user)].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
                ..Default::default()
            };
            let config = resolve(&inputs).expect("valid config");
            if let Err(e) = token::check_static(&Secret::new(s.clone()), &config, Some("us-east-1"), Some(now)) {
                prop_assert!(!e.to_string().contains("X-Amz-Signature="), "token in message: {e}");
            }
        }
    }
}
