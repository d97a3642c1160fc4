//! The few PostgreSQL messages the proxy reads or writes itself: the client's first packets
//! (SSLRequest, GSSENCRequest, CancelRequest, StartupMessage), the upstream's authentication
//! and start-up replies, and ErrorResponse. After start-up no message is looked at.

use std::io;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub const SSL_REQUEST: u32 = 80_877_103;
pub const GSSENC_REQUEST: u32 = 80_877_104;
pub const CANCEL_REQUEST: u32 = 80_877_102;
pub const PROTOCOL_3_0: u32 = 196_608;
/// PostgreSQL's own bound on a start-up packet (`MAX_STARTUP_PACKET_LENGTH`).
pub const STARTUP_MAX: u32 = 10_000;
/// Authentication and start-up messages are short; anything longer is not a server speaking.
pub const BACKEND_STARTUP_MAX: u32 = 65_536;

/// What a client opened with.
#[derive(Debug, PartialEq, Eq)]
pub enum FirstPacket {
    SslRequest,
    GssEncRequest,
    Cancel {
        pid: u32,
        secret: u32,
    },
    /// Protocol 3.x: `minor` and the parameters in the order sent (`_pq_.` ones included).
    Startup {
        minor: u16,
        params: Vec<(String, String)>,
    },
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// Reads one packet a client may open with (length, code, body).
pub async fn read_first<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<FirstPacket> {
    let len = r.read_u32().await?;
    if !(8..=STARTUP_MAX).contains(&len) {
        return Err(invalid("the start-up packet has an invalid length"));
    }
    let code = r.read_u32().await?;
    let mut body = vec![0; len as usize - 8];
    r.read_exact(&mut body).await?;
    parse_first(code, &body)
}

pub fn parse_first(code: u32, body: &[u8]) -> io::Result<FirstPacket> {
    match code {
        SSL_REQUEST if body.is_empty() => Ok(FirstPacket::SslRequest),
        GSSENC_REQUEST if body.is_empty() => Ok(FirstPacket::GssEncRequest),
        CANCEL_REQUEST if body.len() == 8 => Ok(FirstPacket::Cancel {
            pid: u32::from_be_bytes(body[0..4].try_into().expect("4 bytes")),
            secret: u32::from_be_bytes(body[4..8].try_into().expect("4 bytes")),
        }),
        c if c >> 16 == 3 => {
            let mut params = Vec::new();
            let mut rest = body;
            loop {
                let (name, after) = cstr(rest)?;
                if name.is_empty() {
                    break;
                }
                let (value, after) = cstr(after)?;
                params.push((name, value));
                rest = after;
            }
            Ok(FirstPacket::Startup { minor: (c & 0xffff) as u16, params })
        }
        _ => Err(invalid("unsupported frontend protocol (only 3.x is spoken)")),
    }
}

fn cstr(b: &[u8]) -> io::Result<(String, &[u8])> {
    let end = b.iter().position(|&c| c == 0).ok_or_else(|| invalid("a start-up string is not terminated"))?;
    let s = std::str::from_utf8(&b[..end]).map_err(|_| invalid("a start-up string is not UTF-8"))?;
    Ok((s.to_string(), &b[end + 1..]))
}

/// A message with a type byte: `t`, then the body.
pub fn message(t: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + body.len());
    out.push(t);
    out.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    out.extend_from_slice(body);
    out
}

pub fn startup_message(params: &[(String, String)]) -> Vec<u8> {
    let mut body = PROTOCOL_3_0.to_be_bytes().to_vec();
    for (k, v) in params {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut out = (body.len() as u32 + 4).to_be_bytes().to_vec();
    out.extend_from_slice(&body);
    out
}

pub fn request(code: u32) -> [u8; 8] {
    let mut out = [0; 8];
    out[..4].copy_from_slice(&8u32.to_be_bytes());
    out[4..].copy_from_slice(&code.to_be_bytes());
    out
}

pub fn cancel_request(pid: u32, secret: u32) -> [u8; 16] {
    let mut out = [0; 16];
    out[..4].copy_from_slice(&16u32.to_be_bytes());
    out[4..8].copy_from_slice(&CANCEL_REQUEST.to_be_bytes());
    out[8..12].copy_from_slice(&pid.to_be_bytes());
    out[12..].copy_from_slice(&secret.to_be_bytes());
    out
}

pub fn password_message(password: &[u8]) -> Vec<u8> {
    let mut body = password.to_vec();
    body.push(0);
    message(b'p', &body)
}

pub fn auth_request(kind: u32) -> Vec<u8> {
    message(b'R', &kind.to_be_bytes())
}

pub fn backend_key(pid: u32, secret: u32) -> Vec<u8> {
    let mut body = pid.to_be_bytes().to_vec();
    body.extend_from_slice(&secret.to_be_bytes());
    message(b'K', &body)
}

/// NegotiateProtocolVersion: the newest minor version spoken (0) and the options not understood.
pub fn negotiate_protocol(options: &[&str]) -> Vec<u8> {
    let mut body = 0u32.to_be_bytes().to_vec();
    body.extend_from_slice(&(options.len() as u32).to_be_bytes());
    for o in options {
        body.extend_from_slice(o.as_bytes());
        body.push(0);
    }
    message(b'v', &body)
}

/// The fields of an ErrorResponse the proxy writes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ErrorFields {
    pub severity: &'static str,
    pub code: String,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

pub fn error_response(e: &ErrorFields) -> Vec<u8> {
    let mut body = Vec::new();
    let mut field = |t: u8, v: &str| {
        body.push(t);
        // A NUL would end the field early; nothing the proxy writes has one, but be safe.
        body.extend(v.bytes().filter(|&b| b != 0));
        body.push(0);
    };
    field(b'S', e.severity);
    field(b'V', e.severity);
    field(b'C', &e.code);
    field(b'M', &e.message);
    if let Some(d) = &e.detail {
        field(b'D', d);
    }
    if let Some(h) = &e.hint {
        field(b'H', h);
    }
    body.push(0);
    message(b'E', &body)
}

/// Reads an ErrorResponse or NoticeResponse body into (field type, value) pairs.
pub fn parse_fields(body: &[u8]) -> Vec<(u8, String)> {
    let mut out = Vec::new();
    let mut rest = body;
    while let Some((&t, after)) = rest.split_first() {
        if t == 0 {
            break;
        }
        let end = after.iter().position(|&c| c == 0).unwrap_or(after.len());
        out.push((t, String::from_utf8_lossy(&after[..end]).into_owned()));
        rest = after.get(end + 1..).unwrap_or(&[]);
    }
    out
}

/// One backend message during start-up: type byte and body, bounded in size.
pub async fn read_backend<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<(u8, Vec<u8>)> {
    let t = r.read_u8().await?;
    let len = r.read_u32().await?;
    if !(4..=BACKEND_STARTUP_MAX).contains(&len) {
        return Err(invalid("the server sent a start-up message with an invalid length"));
    }
    let mut body = vec![0; len as usize - 4];
    r.read_exact(&mut body).await?;
    Ok((t, body))
}

/// One frontend message during local authentication (a PasswordMessage), bounded in size.
pub async fn read_frontend<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<(u8, Vec<u8>)> {
    read_backend(r).await
}

pub async fn write_all<W: AsyncWrite + Unpin>(w: &mut W, bytes: &[u8]) -> io::Result<()> {
    w.write_all(bytes).await?;
    w.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_round_trip() {
        let params = vec![("user".to_string(), "admin".to_string()), ("database".into(), "postgres".into())];
        let bytes = startup_message(&params);
        let len = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
        assert_eq!(len, bytes.len());
        let code = u32::from_be_bytes(bytes[4..8].try_into().unwrap());
        assert_eq!(parse_first(code, &bytes[8..]).unwrap(), FirstPacket::Startup { minor: 0, params });
    }

    #[test]
    fn requests_and_cancels() {
        let r = request(SSL_REQUEST);
        assert_eq!(parse_first(SSL_REQUEST, &r[8..]).unwrap(), FirstPacket::SslRequest);
        let c = cancel_request(7, 0xdead_beef);
        assert_eq!(parse_first(CANCEL_REQUEST, &c[8..]).unwrap(), FirstPacket::Cancel { pid: 7, secret: 0xdead_beef });
        assert!(parse_first(131_072, &[]).is_err(), "protocol 2 is refused");
        assert!(parse_first(PROTOCOL_3_0, b"user\0adm").is_err(), "unterminated");
    }

    #[test]
    fn error_fields_round_trip() {
        let e = ErrorFields {
            severity: "FATAL",
            code: "28P01".into(),
            message: "no".into(),
            detail: None,
            hint: Some("h".into()),
        };
        let bytes = error_response(&e);
        assert_eq!(bytes[0], b'E');
        let fields = parse_fields(&bytes[5..]);
        assert!(fields.contains(&(b'C', "28P01".into())) && fields.contains(&(b'H', "h".into())));
    }
}
