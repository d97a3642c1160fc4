//! Core values → the plain objects JavaScript receives.

use crate::config::{Config, RootCerts, Verification};
use crate::error::Error;
use crate::query::{Batch, Chunk, Field, Prepared, ResultSet};
use crate::value::{ColumnChunk, Kind};
use napi::bindgen_prelude::{BigInt64Array, Buffer, Float64Array, Uint32Array, Uint8Array};
use napi_derive::napi;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// An error as data; `index.js` turns it into a `DsqlTunnelError` or `DatabaseError`.
#[napi(object)]
pub struct NativeError {
    pub code: String,
    pub message: String,
    /// The setting at fault, for `INVALID_CONFIG`.
    pub setting: Option<String>,
    pub severity: Option<String>,
    pub detail: Option<String>,
    pub hint: Option<String>,
    pub position: Option<String>,
    pub internal_position: Option<String>,
    pub internal_query: Option<String>,
    #[napi(js_name = "where")]
    pub where_: Option<String>,
    pub schema: Option<String>,
    pub table: Option<String>,
    pub column: Option<String>,
    pub data_type: Option<String>,
    pub constraint: Option<String>,
    pub file: Option<String>,
    pub line: Option<String>,
    pub routine: Option<String>,
    /// The SQLSTATE behind a client code (e.g. `08P01` behind `SNI_REFUSED`).
    pub sqlstate: Option<String>,
    /// For `CONNECTION_LOST`: whether the query had been sent (false: safe to run elsewhere).
    pub sent: Option<bool>,
    /// For a query that failed because its session ended: whether the statement may have run
    /// (false only when it certainly did not).
    pub may_have_run: Option<bool>,
    pub errno: Option<i32>,
    pub syscall: Option<String>,
    pub address: Option<String>,
    pub port: Option<u32>,
}

impl From<&Error> for NativeError {
    fn from(outer: &Error) -> NativeError {
        let e = outer.inner();
        let server = e.server();
        let s = |f: fn(&crate::error::ServerError) -> Option<String>| server.and_then(f);
        let (errno, syscall, address, port) = match (e, e.io()) {
            (Error::Connect { addr, .. }, Some(io)) => {
                let (a, p) =
                    addr.rsplit_once(':').map_or((addr.clone(), None), |(a, p)| (a.to_string(), p.parse().ok()));
                (
                    io.raw_os_error().map(|n| -n),
                    Some("connect".to_string()),
                    Some(a.trim_matches(['[', ']']).to_string()),
                    p,
                )
            }
            (Error::Resolve { host, .. }, _) => (None, Some("getaddrinfo".to_string()), Some(host.clone()), None),
            _ => (None, None, None, None),
        };
        NativeError {
            code: e.code(),
            message: e.to_string(),
            setting: match e {
                Error::Config { setting, .. } => Some(setting.clone()),
                _ => None,
            },
            severity: server.map(|s| s.severity.clone()),
            detail: s(|s| s.detail.clone()),
            hint: s(|s| s.hint.clone()),
            position: s(|s| s.position.map(|p| p.to_string())),
            internal_position: s(|s| s.internal_position.map(|p| p.to_string())),
            internal_query: s(|s| s.internal_query.clone()),
            where_: s(|s| s.r#where.clone()),
            schema: s(|s| s.schema.clone()),
            table: s(|s| s.table.clone()),
            column: s(|s| s.column.clone()),
            data_type: s(|s| s.data_type.clone()),
            constraint: s(|s| s.constraint.clone()),
            file: s(|s| s.file.clone()),
            line: s(|s| s.line.map(|l| l.to_string())),
            routine: s(|s| s.routine.clone()),
            sqlstate: server.map(|s| s.code.clone()),
            sent: match e {
                Error::ConnectionLost { sent, .. } => Some(*sent),
                _ => None,
            },
            may_have_run: outer.may_have_run(),
            errno,
            syscall,
            address,
            port,
        }
    }
}

/// AWS credentials handed over by the caller (the `credentials` option). Never logged.
#[napi(object)]
pub struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl From<AwsCredentials> for aws_credential_types::Credentials {
    fn from(c: AwsCredentials) -> Self {
        crate::token::static_credentials(&c.access_key_id, &c.secret_access_key, c.session_token.as_deref())
    }
}

/// What a successful connect settled on.
#[napi(object)]
pub struct ConnectInfo {
    pub host: String,
    pub hostaddr: Option<String>,
    pub port: u32,
    pub user: String,
    pub database: String,
    pub sslmode: String,
    /// `full` (chain and name), `chain`, or `none`.
    pub verification: String,
    pub sslnegotiation: String,
    /// Milliseconds spent minting a token (0 when none was minted).
    pub token_millis: f64,
    pub token_minted: bool,
    /// Milliseconds for TCP to the tunnel.
    pub dial_millis: f64,
    /// Milliseconds for TLS, startup and authentication.
    pub handshake_millis: f64,
    /// The server's run-time parameters from start-up (ParameterStatus): name, value, name, …
    pub parameters: Vec<String>,
    /// The backend's process id (BackendKeyData).
    pub process_id: Option<i32>,
}

impl ConnectInfo {
    pub fn new(c: &Config, t: &crate::connect::Timings) -> ConnectInfo {
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
        ConnectInfo {
            token_millis: ms(t.token),
            token_minted: t.minted,
            dial_millis: ms(t.dial),
            handshake_millis: ms(t.handshake),
            parameters: Vec::new(),
            process_id: None,
            host: c.host.clone(),
            hostaddr: c.hostaddr.as_ref().map(|a| a.to_string()),
            port: c.port.into(),
            user: c.user.clone(),
            database: c.database.clone(),
            sslmode: c.sslmode.as_str().into(),
            verification: verification_name(c.verification()).into(),
            sslnegotiation: c.sslnegotiation.as_str().into(),
        }
    }
}

fn verification_name(v: Verification) -> &'static str {
    match v {
        Verification::Full => "full",
        Verification::Chain => "chain",
        Verification::None => "none",
    }
}

/// The settings a connection would use, and where each came from. No secrets.
#[napi(object)]
pub struct ResolvedConfig {
    pub host: String,
    pub hostaddr: Option<String>,
    pub port: u32,
    pub user: String,
    pub database: String,
    pub has_password: bool,
    pub sslmode: String,
    pub verification: String,
    /// `bundled`, `system`, or a file path.
    pub sslrootcert: String,
    pub sslnegotiation: String,
    pub application_name: Option<String>,
    /// `null` when connecting waits forever.
    pub connect_timeout_millis: Option<f64>,
    pub is_dsql: bool,
    /// The tunnel the driver opens itself, as `ssh://user@bastion:port` (never a passphrase).
    pub tunnel: Option<String>,
    /// Setting name → `option`, `connection string`, `environment (NAME)` or `default`.
    pub sources: HashMap<String, String>,
}

impl From<&Config> for ResolvedConfig {
    fn from(c: &Config) -> ResolvedConfig {
        ResolvedConfig {
            host: c.host.clone(),
            hostaddr: c.hostaddr.as_ref().map(|a| a.to_string()),
            port: c.port.into(),
            user: c.user.clone(),
            database: c.database.clone(),
            has_password: c.password.is_some(),
            sslmode: c.sslmode.as_str().into(),
            verification: verification_name(c.verification()).into(),
            sslrootcert: match &c.sslrootcert {
                RootCerts::Bundled => "bundled".into(),
                RootCerts::System => "system".into(),
                RootCerts::File(p) => p.display().to_string(),
                RootCerts::Pem(_) => "inline (ssl.ca)".to_string(),
            },
            sslnegotiation: c.sslnegotiation.as_str().into(),
            application_name: c.application_name.clone(),
            connect_timeout_millis: c.connect_timeout.map(|d| d.as_millis() as f64),
            is_dsql: c.is_dsql(),
            tunnel: c.tunnel.as_ref().map(|t| t.describe()),
            sources: c.sources.iter().map(|(k, s)| (k.to_string(), s.to_string())).collect(),
        }
    }
}

#[napi(object)]
pub struct RawField {
    pub name: String,
    #[napi(js_name = "tableID")]
    pub table_id: u32,
    #[napi(js_name = "columnID")]
    pub column_id: i32,
    #[napi(js_name = "dataTypeID")]
    pub data_type_id: u32,
    pub data_type_modifier: i32,
    /// pg_type.typlen (node-postgres's `dataTypeSize`).
    pub data_type_size: i32,
}

/// One column of a chunk; which buffers are present depends on `kind` (see `index.js`).
#[napi(object)]
pub struct RawColumn {
    pub kind: u32,
    pub element: Option<u32>,
    pub nulls: Option<Uint8Array>,
    pub numbers: Option<Float64Array>,
    pub bigints: Option<BigInt64Array>,
    pub text: Option<String>,
    pub offsets: Option<Uint32Array>,
    pub bytes: Option<Buffer>,
}

#[napi(object)]
pub struct RawChunk {
    pub rows: u32,
    pub columns: Vec<RawColumn>,
}

#[napi(object)]
pub struct RawResult {
    pub command: Option<String>,
    pub row_count: Option<f64>,
    pub fields: Vec<RawField>,
    pub chunks: Vec<RawChunk>,
}

fn column(c: ColumnChunk) -> RawColumn {
    let kind = c.kind.unwrap_or(Kind::Text);
    let text_like = kind.is_text();
    RawColumn {
        kind: kind as u32,
        element: c.element.map(|k| k as u32),
        nulls: c.nulls.map(Uint8Array::new),
        numbers: (!c.numbers.is_empty()).then(|| Float64Array::new(c.numbers)),
        bigints: (!c.bigints.is_empty()).then(|| BigInt64Array::new(c.bigints)),
        text: text_like.then_some(c.text),
        bytes: (kind == Kind::Bytes).then(|| Buffer::from(c.bytes)),
        offsets: (!c.offsets.is_empty()).then(|| Uint32Array::new(c.offsets)),
    }
}

pub fn raw_fields(fields: Vec<Field>) -> Vec<RawField> {
    fields
        .into_iter()
        .map(|f| RawField {
            name: f.name,
            table_id: f.table_oid,
            column_id: f.column_id.into(),
            data_type_id: f.type_oid,
            data_type_modifier: f.type_modifier,
            data_type_size: f.type_size.into(),
        })
        .collect()
}

pub fn raw_chunk(ch: Chunk) -> RawChunk {
    RawChunk { rows: ch.rows as u32, columns: ch.columns.into_iter().map(column).collect() }
}

impl From<ResultSet> for RawResult {
    fn from(r: ResultSet) -> RawResult {
        RawResult {
            command: r.command,
            row_count: r.row_count.map(|n| n as f64),
            fields: raw_fields(r.fields),
            chunks: r.chunks.into_iter().map(raw_chunk).collect(),
        }
    }
}

/// One batch of a stream: the fields come with the first, `done` (with the command and row
/// count) with the last; a small result is a single batch.
#[napi(object)]
#[derive(Default)]
pub struct StreamPiece {
    pub fields: Option<Vec<RawField>>,
    pub chunk: Option<RawChunk>,
    pub done: bool,
    pub command: Option<String>,
    pub row_count: Option<f64>,
}

impl From<Batch> for StreamPiece {
    fn from(b: Batch) -> StreamPiece {
        let (done, command, row_count) = match b.done {
            Some((command, count)) => (true, command, count.map(|n| n as f64)),
            None => (false, None, None),
        };
        StreamPiece { fields: b.fields.map(raw_fields), chunk: b.chunk.map(raw_chunk), done, command, row_count }
    }
}

/// What every result of one prepared statement shares; sent once, with its first result.
#[napi(object)]
pub struct Shape {
    pub id: u32,
    pub fields: Vec<RawField>,
    /// Per column, how values travel (`Kind` in `src/value.rs`).
    pub kinds: Vec<u32>,
    /// Per column, the element kind of an array column (0 otherwise).
    pub elements: Vec<u32>,
    pub command: Option<String>,
}

impl From<&Prepared> for Shape {
    fn from(p: &Prepared) -> Shape {
        Shape {
            id: p.id,
            fields: raw_fields(p.fields.clone()),
            kinds: p.kinds.iter().map(|(k, _)| *k as u32).collect(),
            elements: p.kinds.iter().map(|(_, e)| e.map_or(0, |e| e as u32)).collect(),
            command: p.command.clone(),
        }
    }
}

/// How a query ended, waiting to be handed to JavaScript.
pub enum Outcome {
    /// One statement's rows: all of them, or the first batch and `more` to call for the rest.
    Rows {
        prepared: Arc<Prepared>,
        chunk: Option<Chunk>,
        row_count: Option<u64>,
        more: Option<u32>,
    },
    /// Text with several statements: one result each.
    Many(Vec<ResultSet>),
    Failed(Error),
}

/// The outcomes of any number of queries in one value, so a reply costs a handful of Node-API
/// calls however many queries it settles. `head` holds, per query: its id and what follows:
/// - rows: `[id, 0 | 1 (more), shape id, rows, row count or -1, more id, columns]`, then per
///   column when there are rows `[offset into nulls or -1, offset into numbers | bigints | offsets]`;
/// - an error: `[id, 2, index into errors]`; several results: `[id, 3, index into many]`.
///
/// After those entries, `head` also holds the numbers, the offsets and the NULL flags of every
/// column, from `numbersAt`, `offsetsAt` and `nullsAt` on (one array: each typed array handed to
/// JavaScript costs more than the copy of a small result). Text and bytes columns index the
/// offsets, whose positions point into the one `text` string (UTF-16 units) or the one `bytes`
/// buffer.
#[napi(object)]
pub struct Delivery {
    pub head: Float64Array,
    pub numbers_at: u32,
    pub offsets_at: u32,
    pub nulls_at: u32,
    pub bigints: Option<BigInt64Array>,
    pub text: Option<String>,
    pub bytes: Option<Buffer>,
    /// Statements seen for the first time.
    pub shapes: Option<Vec<Shape>>,
    /// Statements no later result refers to.
    pub forget: Option<Vec<u32>>,
    pub errors: Option<Vec<NativeError>>,
    pub many: Option<Vec<Vec<RawResult>>>,
    /// Notices the server sent (NoticeResponse), as errors with their fields.
    pub notices: Option<Vec<NativeError>>,
    /// Set once, after the outcome of every query: how the connection ended (`CLIENT_CLOSED`
    /// when it ended without an error).
    pub closed: Option<NativeError>,
}

/// Text and bytes per delivery before the rest waits for the next one (a JavaScript string holds
/// at most about 512 M characters).
const DELIVERY_BYTES: usize = 64 << 20;

/// Takes outcomes from the front of `items` into one delivery.
pub fn pack(items: &mut VecDeque<(f64, Outcome)>, forgotten: Vec<u32>) -> Delivery {
    let mut head: Vec<f64> = Vec::with_capacity(8 * items.len());
    let (mut numbers, mut bigints) = (Vec::<f64>::new(), Vec::new());
    let (mut nulls, mut offsets) = (Vec::<f64>::new(), Vec::<f64>::new());
    let (mut text, mut text_units, mut bytes) = (String::new(), 0u32, Vec::new());
    let (mut shapes, mut errors, mut many) = (Vec::new(), Vec::new(), Vec::new());
    while let Some((id, outcome)) = items.pop_front() {
        match outcome {
            Outcome::Failed(e) => {
                head.extend([id, 2.0, errors.len() as f64]);
                errors.push(NativeError::from(&e));
            }
            Outcome::Many(results) => {
                head.extend([id, 3.0, many.len() as f64]);
                many.push(results.into_iter().map(RawResult::from).collect());
            }
            Outcome::Rows { prepared, chunk, row_count, more } => {
                if !prepared.announced.swap(true, Ordering::Relaxed) {
                    shapes.push(Shape::from(&*prepared));
                }
                let rows = chunk.as_ref().map_or(0, |c| c.rows);
                let count = row_count.map_or(-1.0, |n| n as f64);
                let (more_id, columns) = (more.unwrap_or(0) as f64, prepared.kinds.len() as f64);
                let outcome = if more.is_some() { 1.0 } else { 0.0 };
                head.extend([id, outcome, prepared.id as f64, rows as f64, count, more_id, columns]);
                for col in chunk.into_iter().filter(|c| c.rows > 0).flat_map(|c| c.columns) {
                    match col.nulls {
                        Some(n) => {
                            head.push(nulls.len() as f64);
                            nulls.extend(n.iter().map(|&b| f64::from(b)));
                        }
                        None => head.push(-1.0),
                    }
                    match col.kind.unwrap_or(Kind::Text) {
                        k if k.is_number() => {
                            head.push(numbers.len() as f64);
                            numbers.extend_from_slice(&col.numbers);
                        }
                        Kind::BigInt => {
                            head.push(bigints.len() as f64);
                            bigints.extend_from_slice(&col.bigints);
                        }
                        Kind::Bytes => {
                            head.push(offsets.len() as f64);
                            let base = bytes.len() as u32;
                            offsets.extend(col.offsets.iter().map(|o| f64::from(o + base)));
                            bytes.extend_from_slice(&col.bytes);
                        }
                        _ => {
                            head.push(offsets.len() as f64);
                            let base = text_units;
                            offsets.extend(col.offsets.iter().map(|o| f64::from(o + base)));
                            text_units += col.offsets.last().copied().unwrap_or(0);
                            text.push_str(&col.text);
                        }
                    }
                }
            }
        }
        if text.len() + bytes.len() > DELIVERY_BYTES {
            break;
        }
    }
    head.reserve_exact(numbers.len() + offsets.len() + nulls.len());
    let numbers_at = head.len() as u32;
    head.extend_from_slice(&numbers);
    let offsets_at = head.len() as u32;
    head.extend_from_slice(&offsets);
    let nulls_at = head.len() as u32;
    head.extend_from_slice(&nulls);
    Delivery {
        head: Float64Array::new(head),
        numbers_at,
        offsets_at,
        nulls_at,
        bigints: (!bigints.is_empty()).then(|| BigInt64Array::new(bigints)),
        text: (!text.is_empty()).then_some(text),
        bytes: (!bytes.is_empty()).then(|| Buffer::from(bytes)),
        shapes: (!shapes.is_empty()).then_some(shapes),
        forget: (!forgotten.is_empty()).then_some(forgotten),
        errors: (!errors.is_empty()).then_some(errors),
        many: (!many.is_empty()).then_some(many),
        notices: None,
        closed: None,
    }
}
