//! Running queries: one round trip each, pipelined, results gathered into columnar chunks.
//!
//! The first time a text runs on a connection, its prepare (named statement, for the cache)
//! and its execution (unnamed, typed parameters) go out together, so even that costs one round
//! trip; later runs bind the cached statement.

use crate::error::Error;
use crate::framing::Desync;
use crate::value::{self, ColumnBuilder, ColumnChunk, DecodeOptions, Decoder, Kind};
use bytes::BytesMut;
use futures_util::{pin_mut, StreamExt};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio_postgres::types::{to_sql_checked, Format, IsNull, Kind as PgKind, ToSql, Type};
use tokio_postgres::{Client, Column, RowStream, SimpleQueryMessage, Statement};

/// Rows per chunk, and bytes after which a chunk is closed early.
pub const CHUNK_ROWS: usize = 8192;
pub const CHUNK_BYTES: usize = 8 << 20;
/// Prepared statements kept per connection.
pub const STATEMENT_CACHE_SIZE: usize = 256;
/// Longer texts are prepared every time rather than kept (as the cache's key) until evicted.
pub const STATEMENT_CACHE_MAX_SQL: usize = 64 << 10;
/// SQL text the cache of one connection keeps at most, all entries together.
pub const STATEMENT_CACHE_BYTES: usize = 4 << 20;
/// The extended protocol counts parameters in 16 bits.
pub const MAX_PARAMS: usize = u16::MAX as usize;

#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub name: String,
    pub type_oid: u32,
    pub table_oid: u32,
    pub column_id: i16,
    pub type_modifier: i32,
    /// pg_type.typlen: bytes of a fixed-size type, -1 for variable size, -2 for C strings.
    pub type_size: i16,
}

#[derive(Debug, Default)]
pub struct Chunk {
    pub rows: usize,
    pub columns: Vec<ColumnChunk>,
}

/// One statement's result.
#[derive(Debug, Default)]
pub struct ResultSet {
    pub command: Option<String>,
    pub row_count: Option<u64>,
    pub fields: Vec<Field>,
    pub chunks: Vec<Chunk>,
}

/// A parameter in PostgreSQL's text format; the server infers its type, as with node-postgres.
#[derive(Debug)]
struct TextParam<'a>(Option<&'a str>);

impl ToSql for TextParam<'_> {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self.0 {
            Some(s) => {
                out.extend_from_slice(s.as_bytes());
                Ok(IsNull::No)
            }
            None => Ok(IsNull::Yes),
        }
    }
    fn accepts(_: &Type) -> bool {
        true
    }
    fn encode_format(&self, _: &Type) -> Format {
        Format::Text
    }
    to_sql_checked!();
}

/// OID 0 in Parse: "let the server decide".
fn unspecified() -> Type {
    Type::new("unspecified".into(), 0, PgKind::Simple, "pg_catalog".into())
}

/// A statement prepared on a connection, with what every result of it shares.
pub struct Prepared {
    pub statement: Statement,
    /// Unique in the process: JavaScript keeps the fields (and its row builder) under this id,
    /// so a result carries only rows.
    pub id: u32,
    pub fields: Vec<Field>,
    /// Per column: how values travel (`Kind`), and the element kind of arrays.
    pub kinds: Vec<(Kind, Option<Kind>)>,
    /// Per column: how values are decoded (fixed for the statement, so its kinds hold).
    pub decoders: Vec<Decoder>,
    pub command: Option<String>,
    /// Whether JavaScript has been told the fields yet.
    pub announced: AtomicBool,
    /// Whether a column's text is asked of the server ([`Decoder::ByServer`]) once a result is complete.
    by_server: bool,
    /// Told when the statement is dropped (the client library then closes it on its own).
    closing: Desync,
}

impl Drop for Prepared {
    fn drop(&mut self) {
        // Before the statement itself drops and its Close is queued.
        self.closing.close_due();
    }
}

static NEXT_PREPARED: AtomicU32 = AtomicU32::new(1);

impl Prepared {
    fn new(statement: Statement, sql: &str, conn: &Conn) -> Prepared {
        let (decode, text_oids) = (conn.decode, &*conn.text_oids());
        let decoders: Vec<Decoder> = statement
            .columns()
            .iter()
            .map(|c| match Decoder::for_column(c.type_(), decode, text_oids) {
                d if d.needs_server() && server_castable(c.type_()) => Decoder::ByServer,
                d => d,
            })
            .collect();
        let kinds = decoders.iter().map(|d| (d.kind(), d.element_kind())).collect();
        Prepared {
            by_server: decoders.contains(&Decoder::ByServer),
            decoders,
            id: NEXT_PREPARED.fetch_add(1, Ordering::Relaxed),
            fields: fields(statement.columns()),
            kinds,
            command: command_of(sql),
            announced: AtomicBool::new(false),
            closing: conn.desync.clone(),
            statement,
        }
    }
}

/// Prepared statements of one connection, oldest evicted first, bounded in count and in the
/// bytes of SQL text they keep (one shared copy per text).
#[derive(Default)]
pub struct StatementCache {
    map: HashMap<Arc<str>, Arc<Prepared>>,
    order: VecDeque<Arc<str>>,
    bytes: usize,
    /// Ids of statements dropped since [`StatementCache::take_forgotten`] was last called.
    forgotten: Vec<u32>,
}

impl StatementCache {
    fn get(&self, sql: &str) -> Option<Arc<Prepared>> {
        self.map.get(sql).cloned()
    }
    fn insert(&mut self, sql: &str, stmt: Arc<Prepared>) {
        if sql.len() > STATEMENT_CACHE_MAX_SQL {
            // Not kept: no later result will name it.
            self.forgotten.push(stmt.id);
            return;
        }
        if let Some(kept) = self.map.get_mut(sql) {
            self.forgotten.push(kept.id);
            *kept = stmt;
            return;
        }
        let key: Arc<str> = Arc::from(sql);
        self.bytes += key.len();
        self.map.insert(key.clone(), stmt);
        self.order.push_back(key);
        while self.order.len() > STATEMENT_CACHE_SIZE || self.bytes > STATEMENT_CACHE_BYTES {
            let Some(old) = self.order.pop_front() else { break };
            self.bytes -= old.len();
            if let Some(p) = self.map.remove(&old) {
                self.forgotten.push(p.id);
            }
        }
    }
    /// Drops every statement (their decoders no longer fit the column types wanted as text).
    fn clear(&mut self) {
        self.forgotten.extend(self.map.drain().map(|(_, p)| p.id));
        self.order.clear();
        self.bytes = 0;
    }
    fn remove(&mut self, sql: &str) {
        if let Some(p) = self.map.remove(sql) {
            self.forgotten.push(p.id);
            self.order.retain(|s| &**s != sql);
            self.bytes -= sql.len();
        }
    }
    /// Statements dropped from the cache since the last call: no result started after this
    /// refers to them.
    pub fn take_forgotten(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.forgotten)
    }
}

/// What a connection shares with its queries.
pub struct Conn {
    pub client: Client,
    pub statements: Mutex<StatementCache>,
    pub decode: DecodeOptions,
    /// Types whose columns are read as PostgreSQL's text (JavaScript has custom parsers for them).
    pub text_oids: Mutex<Arc<HashSet<u32>>>,
    /// Where and how to send a CancelRequest: through the same tunnel, with the same TLS name.
    pub config: Arc<crate::config::Config>,
    pub tls: Arc<rustls::ClientConfig>,
    /// Why the connection's reader gave up on the server's bytes, if it did.
    pub desync: Desync,
    /// Queries and streams written and not yet finished.
    outstanding: AtomicUsize,
    /// Set when the server ended the session with a FATAL that reached no query (it was idle).
    pub ended_by_fatal: Arc<AtomicBool>,
}

/// A query or stream in flight on a connection; finished when dropped.
pub struct InFlight(Arc<Conn>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The SQLSTATEs a server (or DSQL's front door) ends a session with, unasked: shutdowns,
/// `cannot_connect_now`, idle-session timeout and connection exceptions.
pub fn is_shutdown(e: &crate::error::ServerError) -> bool {
    matches!(e.severity.as_str(), "FATAL" | "PANIC")
        && (matches!(e.code.as_str(), "57P01" | "57P02" | "57P03" | "57P05") || e.code.starts_with("08"))
}

/// A query's error, marked when it is the end of the session. `unanswered`: the query got no
/// reply at all before it; `alone`: nothing else was outstanding when it was written. Only then
/// did the statement certainly not run: the server (or the front door, which may relay bytes
/// pipelined behind others before it cuts) was already ending the session when it arrived.
fn ended(e: Error, conn: &Conn, unanswered: bool, alone: bool) -> Error {
    let e = conn.desync.explain(e);
    let not_run = match &e {
        Error::Server(s) if s.severity == "FATAL" || s.severity == "PANIC" => unanswered && alone && is_shutdown(s),
        Error::ConnectionLost { sent: false, .. } => true,
        // The connection closed before any reply, right after an unasked FATAL.
        Error::ConnectionLost { .. } => unanswered && alone && conn.ended_by_fatal.load(Ordering::Acquire),
        _ => return e,
    };
    Error::SessionEnded { cause: Box::new(e), may_have_run: !not_run }
}

impl Conn {
    pub fn new(
        client: Client,
        config: Arc<crate::config::Config>,
        tls: Arc<rustls::ClientConfig>,
        decode: DecodeOptions,
    ) -> Conn {
        Conn {
            client,
            statements: Default::default(),
            decode,
            text_oids: Default::default(),
            config,
            tls,
            desync: Desync::default(),
            outstanding: AtomicUsize::new(0),
            ended_by_fatal: Default::default(),
        }
    }

    /// Counts a query in flight until the guard drops; true when nothing else was outstanding:
    /// no query of ours, and the server had answered every request written (a ReadyForQuery can
    /// trail a result that is complete, and the client library closes statements on its own).
    pub fn begin(self: &Arc<Self>) -> (InFlight, bool) {
        let before = self.outstanding.fetch_add(1, Ordering::AcqRel);
        (InFlight(self.clone()), before == 0 && self.desync.settled())
    }

    /// Queries and streams in flight (including the caller's, when it has begun one).
    pub fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::Acquire)
    }

    /// Shares the flag the connection's events set when an unasked FATAL ended the session.
    pub fn ending(self, ended_by_fatal: Arc<AtomicBool>) -> Conn {
        Conn { ended_by_fatal, ..self }
    }

    /// Sets the types whose columns are read as text; statements prepared for another set are
    /// dropped from the cache. True when the set changed.
    pub fn set_text_oids(&self, oids: HashSet<u32>) -> bool {
        let mut current = self.text_oids.lock().expect("text oids");
        if **current == oids {
            return false;
        }
        *current = Arc::new(oids);
        self.statements.lock().expect("statement cache").clear();
        true
    }

    fn text_oids(&self) -> Arc<HashSet<u32>> {
        self.text_oids.lock().expect("text oids").clone()
    }

    /// Reports queries that fail because the server's bytes broke framing as `PROTOCOL_ERROR`.
    pub fn watching(self, desync: Desync) -> Conn {
        Conn { desync, ..self }
    }

    /// Asks the server to cancel what this connection is running.
    pub async fn cancel(&self) -> Result<(), Error> {
        crate::connect::cancel(&self.config, &self.tls, &self.client.cancel_token()).await
    }
}

fn query_error(e: tokio_postgres::Error) -> Error {
    if let Some(db) = e.as_db_error() {
        return Error::Server(Box::new(crate::connect::server_error(db)));
    }
    let text = e.to_string();
    if e.is_closed() || text.contains("closed") {
        return Error::ConnectionLost { detail: text, sent: true };
    }
    Error::Protocol { detail: text }
}

/// A session end after the query got a reply: it may have run.
fn answered(e: Error) -> Error {
    match e {
        Error::Server(s) if s.severity == "FATAL" || s.severity == "PANIC" => {
            Error::SessionEnded { cause: Box::new(Error::Server(s)), may_have_run: true }
        }
        e @ Error::ConnectionLost { sent: true, .. } => Error::SessionEnded { cause: Box::new(e), may_have_run: true },
        e => e,
    }
}

fn fields(columns: &[Column]) -> Vec<Field> {
    columns
        .iter()
        .map(|c| Field {
            name: c.name().to_string(),
            type_oid: c.type_().oid(),
            table_oid: c.table_oid().unwrap_or(0),
            column_id: c.column_id().unwrap_or(0),
            type_modifier: c.type_modifier(),
            type_size: value::type_size(c.type_()),
        })
        .collect()
}

/// What the client cannot put on the wire, refused before anything is sent (tokio-postgres would
/// fail while encoding, which reads as the server's fault): the connection stays usable.
pub fn check_sendable(sql: &str, params: &[Option<String>]) -> Result<(), Error> {
    if sql.contains('\0') {
        return Err(Error::InvalidArgument {
            detail: "the query text has a NUL character (\\u0000), which PostgreSQL text cannot hold: pass such \
                     data as a parameter (bytea)"
                .into(),
        });
    }
    if params.len() > MAX_PARAMS {
        return Err(Error::InvalidArgument {
            detail: format!(
                "{} parameters were given; the PostgreSQL protocol allows at most {MAX_PARAMS} per query: \
                 split the statement or pass an array as one parameter",
                params.len()
            ),
        });
    }
    Ok(())
}

/// Runs `sql` with text parameters. Text with several statements and no parameters runs
/// through the simple protocol, as node-postgres runs it, and yields one result per statement.
/// `alone`: nothing else was outstanding on the connection when it was written.
pub async fn run(
    conn: Arc<Conn>,
    sql: String,
    params: Vec<Option<String>>,
    alone: bool,
) -> Result<Vec<ResultSet>, Error> {
    check_sendable(&sql, &params)?;
    let desync = conn.desync.clone();
    run_sendable(conn, sql, params, alone).await.map_err(|e| desync.explain(e))
}

async fn run_sendable(
    conn: Arc<Conn>,
    sql: String,
    params: Vec<Option<String>>,
    alone: bool,
) -> Result<Vec<ResultSet>, Error> {
    if conn.client.is_closed() {
        return Err(Error::ConnectionLost {
            detail: "the connection had already closed; the query was not sent".into(),
            sent: false,
        });
    }
    let cached = conn.statements.lock().expect("statement cache").get(&sql);
    if cached.is_none() {
        let scanned = scan(&sql);
        if params.is_empty() && scanned.statements.len() > 1 {
            return run_simple(&conn, &sql, &scanned.statements, alone).await;
        }
    }
    let (rows, prepared) = start(&conn, &sql, &params, cached, alone).await?;
    let mut builder = ChunkBuilder::new(&prepared.decoders);
    let mut result = ResultSet { fields: prepared.fields.clone(), ..Default::default() };
    pin_mut!(rows);
    while let Some(row) = rows.next().await {
        if let Some(chunk) = builder.push(&row.map_err(|e| ended(query_error(e), &conn, false, alone))?)? {
            result.chunks.push(chunk);
        }
    }
    if builder.rows > 0 || result.chunks.is_empty() {
        result.chunks.push(builder.take());
    }
    for chunk in &mut result.chunks {
        render_by_server(&conn, &prepared, chunk).await?;
    }
    result.command = prepared.command.clone();
    result.row_count = row_count(result.command.as_deref(), rows.rows_affected());
    Ok(vec![result])
}

/// What a stream hands over: the fields come with the first batch, the end (command and row
/// count) with the last; a small result is a single batch.
#[derive(Debug, Default)]
pub struct Batch {
    pub fields: Option<Vec<Field>>,
    pub chunk: Option<Chunk>,
    pub done: Option<(Option<String>, Option<u64>)>,
}

/// The rows of a statement after its first batch.
pub struct Rest {
    rows: std::pin::Pin<Box<RowStream>>,
    builder: ChunkBuilder,
    /// What the batches grow to.
    max_rows: usize,
    prepared: Arc<Prepared>,
    desync: Desync,
}

/// The start of one statement's result: all of it (`rest` is `None`, `row_count` set), or its
/// first `rows_per_batch` rows and the rest to read.
pub struct FirstRows {
    pub prepared: Arc<Prepared>,
    pub chunk: Option<Chunk>,
    pub row_count: Option<u64>,
    pub rest: Option<Rest>,
}

/// Runs one statement up to its first batch of `rows_per_batch` rows. A small result is complete
/// in that batch: one task and one message, the common case.
/// `alone`: nothing else was outstanding on the connection when it was written.
pub async fn first_rows(
    conn: &Conn,
    sql: String,
    params: Vec<Option<String>>,
    batching: Batching,
    alone: bool,
) -> Result<FirstRows, Error> {
    check_sendable(&sql, &params)?;
    first_rows_sendable(conn, sql, params, batching, alone).await.map_err(|e| conn.desync.explain(e))
}

/// How many rows each batch of a result holds.
#[derive(Debug, Clone, Copy)]
pub struct Batching {
    first: usize,
    max: usize,
}

/// Rows in the first batch of a result that [`Batching::growing`] hands over.
pub const FIRST_BATCH_ROWS: usize = 256;

impl Batching {
    /// Every batch `rows` rows (a stream's batch size).
    pub fn fixed(rows: usize) -> Batching {
        Batching { first: rows.max(1), max: rows.max(1) }
    }

    /// A small first batch, each next one twice the last, up to `max`: JavaScript builds the
    /// rows of one batch while the next is read and decoded, and a large result still travels
    /// in few batches.
    pub fn growing(max: usize) -> Batching {
        Batching { first: FIRST_BATCH_ROWS.min(max.max(1)), max: max.max(1) }
    }
}

async fn first_rows_sendable(
    conn: &Conn,
    sql: String,
    params: Vec<Option<String>>,
    batching: Batching,
    alone: bool,
) -> Result<FirstRows, Error> {
    let cached = conn.statements.lock().expect("statement cache").get(&sql);
    let (rows, prepared) = start(conn, &sql, &params, cached, alone).await?;
    // Text only the server can write is asked for once the result is complete: in one batch.
    let first = if prepared.by_server { batching.max } else { batching.first };
    let builder = ChunkBuilder::new(&prepared.decoders).with_limit(first);
    let mut rest = Rest {
        rows: Box::pin(rows),
        builder,
        max_rows: batching.max,
        prepared: prepared.clone(),
        desync: conn.desync.clone(),
    };
    Ok(match rest.next_batch().await? {
        (mut chunk, None) => {
            if prepared.by_server {
                render_here(chunk.as_mut())?;
            }
            FirstRows { prepared, chunk, row_count: None, rest: Some(rest) }
        }
        (mut chunk, Some((_, row_count))) => {
            if let Some(chunk) = chunk.as_mut() {
                render_by_server(conn, &prepared, chunk).await?;
            }
            FirstRows { prepared, chunk, row_count, rest: None }
        }
    })
}

/// Types whose values the server can always take back in binary and cast to text: the reg*
/// family, tsvector and tsquery, and arrays of them. Anything else (an anonymous record, aclitem,
/// extensions' types) might have no binary input, and a failed cast would abort the caller's
/// transaction: those stay as [`Decoder::Fallback`] shows them.
fn server_castable(ty: &Type) -> bool {
    match ty.kind() {
        PgKind::Array(e) => server_castable(e),
        PgKind::Domain(base) => server_castable(base),
        _ => matches!(
            *ty,
            Type::REGPROC
                | Type::REGPROCEDURE
                | Type::REGOPER
                | Type::REGOPERATOR
                | Type::REGCLASS
                | Type::REGTYPE
                | Type::REGCONFIG
                | Type::REGDICTIONARY
                | Type::REGNAMESPACE
                | Type::REGROLE
                | Type::REGCOLLATION
                | Type::TS_VECTOR
                | Type::TSQUERY
        ),
    }
}

/// Values per query when the server writes the text of a column's values.
const SERVER_TEXT_BATCH: usize = 1000;

/// A value sent back to the server exactly as it arrived (binary, of the column's type).
#[derive(Debug)]
struct RawParam<'a>(&'a [u8]);

impl ToSql for RawParam<'_> {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.extend_from_slice(self.0);
        Ok(IsNull::No)
    }
    fn accepts(_: &Type) -> bool {
        true
    }
    to_sql_checked!();
}

/// Makes the unrendered columns of a complete result text, as pg would have received it: the
/// server casts each value (sent back in binary) to text on the same connection, so catalog
/// names come out as this session sees them. Rare types only ([`server_castable`]), one round trip
/// per thousand values. When the server does not answer the cast (the transaction was aborted by
/// a statement pipelined behind, the connection ended), the column is shown as bytes are
/// otherwise ([`render_here`]).
async fn render_by_server(conn: &Conn, prepared: &Prepared, chunk: &mut Chunk) -> Result<(), Error> {
    if !prepared.by_server {
        return Ok(());
    }
    for (i, col) in chunk.columns.iter_mut().enumerate().filter(|(_, c)| c.unrendered) {
        let ty = prepared.statement.columns()[i].type_().clone();
        let values: Vec<&[u8]> = col.raw_values().flatten().collect();
        let asked = values.chunks(SERVER_TEXT_BATCH).map(|batch| {
            let sql = (1..=batch.len()).map(|n| format!("${n}::text")).collect::<Vec<_>>().join(", ");
            let (ty, conn) = (ty.clone(), conn);
            async move {
                let params: Vec<RawParam<'_>> = batch.iter().map(|v| RawParam(v)).collect();
                let typed = params.iter().map(|p| (p as &dyn ToSql, ty.clone()));
                let rows = Box::pin(conn.client.query_typed_raw(&format!("SELECT {sql}"), typed)).await.ok()?;
                let rows: Vec<tokio_postgres::Row> =
                    rows.collect::<Vec<_>>().await.into_iter().collect::<Result<_, _>>().ok()?;
                let row = rows.first()?;
                (0..batch.len()).map(|k| row.try_get::<_, Option<String>>(k).ok().flatten()).collect::<Option<Vec<_>>>()
            }
        });
        let texts: Option<Vec<Vec<String>>> = futures_util::future::join_all(asked).await.into_iter().collect();
        let values_len = values.len();
        let texts = texts.map(|t| t.concat()).filter(|t| t.len() == values_len);
        col.render(texts)?;
    }
    Ok(())
}

/// Makes the unrendered columns of a chunk text without asking the server (a result still being
/// read holds the connection), as [`value::Decoder::Fallback`] shows such bytes.
fn render_here(chunk: Option<&mut Chunk>) -> Result<(), Error> {
    for col in chunk.into_iter().flat_map(|c| c.columns.iter_mut()) {
        col.render(None)?;
    }
    Ok(())
}

/// [`first_rows`] as the first piece of a stream, fields included.
pub async fn first_batch(
    conn: &Conn,
    sql: String,
    params: Vec<Option<String>>,
    rows_per_batch: usize,
) -> Result<(Batch, Option<Rest>), Error> {
    let first = first_rows(conn, sql, params, Batching::fixed(rows_per_batch), false).await?;
    let fields = Some(first.prepared.fields.clone());
    let done = first.rest.is_none().then(|| (first.prepared.command.clone(), first.row_count));
    Ok((Batch { fields, chunk: first.chunk, done }, first.rest))
}

type Done = Option<(Option<String>, Option<u64>)>;

impl Rest {
    /// The next full chunk (and `None`), or the last one (possibly empty) with how it ended.
    async fn next_batch(&mut self) -> Result<(Option<Chunk>, Done), Error> {
        while let Some(row) = self.rows.next().await {
            let row = row.map_err(|e| answered(self.desync.explain(query_error(e))))?;
            if let Some(chunk) = self.builder.push(&row)? {
                self.builder.limit = self.builder.limit.saturating_mul(2).min(self.max_rows);
                return Ok((Some(chunk), None));
            }
        }
        let chunk = (self.builder.rows > 0).then(|| self.builder.take());
        let command = self.prepared.command.clone();
        let count = row_count(command.as_deref(), self.rows.rows_affected());
        Ok((chunk, Some((command, count))))
    }

    /// Sends the remaining batches. The channel is bounded and tokio-postgres stops reading the
    /// socket while its own buffer is full, so a result larger than memory streams in bounded
    /// memory. Returns when done, failed, or the receiver is gone.
    pub async fn send_all(mut self, out: tokio::sync::mpsc::Sender<Result<Batch, Error>>) {
        loop {
            let batch = match self.next_batch().await {
                Ok((chunk, done)) => Ok(Batch { fields: None, chunk, done }),
                Err(e) => Err(e),
            };
            let batch = match batch {
                Ok(mut b) if self.prepared.by_server => render_here(b.chunk.as_mut()).map(|()| b),
                other => other,
            };
            let last = !matches!(batch, Ok(Batch { done: None, .. }));
            if out.send(batch).await.is_err() || last {
                return;
            }
        }
    }
}

/// Runs one statement and sends its rows in batches (see [`Rest::send_all`]).
pub async fn stream(
    conn: Arc<Conn>,
    sql: String,
    params: Vec<Option<String>>,
    rows_per_batch: usize,
    out: tokio::sync::mpsc::Sender<Result<Batch, Error>>,
) {
    match first_batch(&conn, sql, params, rows_per_batch).await {
        Ok((batch, rest)) => {
            if out.send(Ok(batch)).await.is_ok() {
                if let Some(rest) = rest {
                    rest.send_all(out).await;
                }
            }
        }
        Err(e) => {
            let _ = out.send(Err(e)).await;
        }
    }
}

/// Whether `sql` (sent without parameters) holds several statements: those run through the
/// simple protocol with [`run`], not as a stream.
pub fn is_multi_statement(conn: &Conn, sql: &str, params: &[Option<String>]) -> bool {
    params.is_empty()
        && conn.statements.lock().expect("statement cache").get(sql).is_none()
        && scan(sql).statements.len() > 1
}

fn text_params(params: &[Option<String>]) -> Vec<TextParam<'_>> {
    params.iter().map(|p| TextParam(p.as_deref())).collect()
}

/// Sends one statement and waits for the server to start answering: the rows to read, and the
/// prepared statement (for its columns). A cached statement is bound by name; a new text is
/// prepared and executed in one round trip.
async fn start(
    conn: &Conn,
    sql: &str,
    params: &[Option<String>],
    cached: Option<Arc<Prepared>>,
    alone: bool,
) -> Result<(RowStream, Arc<Prepared>), Error> {
    if let Some(stmt) = cached {
        let expected = stmt.statement.params().len();
        if expected != params.len() {
            return Err(Error::ParameterCount { expected, got: params.len() });
        }
        let values = text_params(params);
        // Boxed, here and below: tokio-postgres's futures are large, and a query's future is
        // moved as a whole (its largest state) when it is handed to the driver.
        let sent = Box::pin(conn.client.query_raw(&stmt.statement, values.iter().map(|v| v as &dyn ToSql))).await;
        // An error here is the first reply (BindComplete would have come before any other).
        match sent.map_err(query_error) {
            // The table under a cached statement changed shape: prepare again, once.
            Err(Error::Server(e)) if e.code == "0A000" && e.message.contains("cached plan") => {
                conn.statements.lock().expect("statement cache").remove(sql);
            }
            other => return other.map(|rows| (rows, stmt)).map_err(|e| ended(e, conn, true, alone)),
        }
    }
    // Checked here because a prepare with too many parameter types fails with a vaguer 42P18.
    let expected = scan(sql).max_param;
    if expected != params.len() {
        return Err(Error::ParameterCount { expected, got: params.len() });
    }
    let types = vec![unspecified(); params.len()];
    let values = text_params(params);
    let typed = values.iter().map(|v| (v as &dyn ToSql, unspecified()));
    // Both requests are written before either answer is read: one round trip.
    let (prepared, executed) = Box::pin(async {
        futures_util::join!(conn.client.prepare_typed(sql, &types), conn.client.query_typed_raw(sql, typed))
    })
    .await;
    // The prepare's error is the query's first reply only if the execution, written right behind
    // it, got none either (a FATAL during the prepare's type lookups comes after the execution).
    let unanswered = executed.is_err();
    let prepared = prepared.map_err(|e| ended(query_error(e), conn, unanswered, alone))?;
    let stmt = Arc::new(Prepared::new(prepared, sql, conn));
    let rows = executed.map_err(|e| ended(query_error(e), conn, false, alone))?;
    conn.statements.lock().expect("statement cache").insert(sql, stmt.clone());
    Ok((rows, stmt))
}

/// Gathers rows into columnar chunks.
pub struct ChunkBuilder {
    columns: Vec<ColumnBuilder>,
    rows: usize,
    limit: usize,
}

impl ChunkBuilder {
    fn new(decoders: &[Decoder]) -> ChunkBuilder {
        let columns = decoders.iter().map(|d| ColumnBuilder::new(d.clone())).collect();
        ChunkBuilder { columns, rows: 0, limit: CHUNK_ROWS }
    }

    fn with_limit(mut self, limit: usize) -> ChunkBuilder {
        self.limit = limit;
        self
    }

    /// Adds a row; hands back a chunk when one is full (by rows, or by bytes).
    fn push(&mut self, row: &tokio_postgres::Row) -> Result<Option<Chunk>, Error> {
        for (i, b) in self.columns.iter_mut().enumerate() {
            let raw: RawValue = row.try_get(i).map_err(|e| Error::Protocol { detail: e.to_string() })?;
            b.push(raw.0)?;
        }
        self.rows += 1;
        let full = self.rows >= self.limit
            || (self.rows.is_multiple_of(256) && self.columns.iter().map(|b| b.size()).sum::<usize>() > CHUNK_BYTES);
        Ok(full.then(|| self.take()))
    }

    fn take(&mut self) -> Chunk {
        let rows = std::mem::take(&mut self.rows);
        Chunk { rows, columns: self.columns.iter_mut().map(|b| b.take()).collect() }
    }
}

/// The raw bytes of any column.
struct RawValue<'a>(Option<&'a [u8]>);

impl<'a> tokio_postgres::types::FromSql<'a> for RawValue<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(RawValue(Some(raw)))
    }
    fn from_sql_null(_: &Type) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(RawValue(None))
    }
    fn accepts(_: &Type) -> bool {
        true
    }
}

/// Values of a simple-protocol result, column by column.
type TextColumns = Vec<Vec<Option<String>>>;

async fn run_simple(conn: &Conn, sql: &str, statements: &[&str], alone: bool) -> Result<Vec<ResultSet>, Error> {
    let stream = conn.client.simple_query_raw(sql).await.map_err(|e| ended(query_error(e), conn, true, alone))?;
    pin_mut!(stream);
    let mut unanswered = true;
    // The simple protocol reports no column types: keep the text, type it once all has run.
    let mut results: Vec<(ResultSet, TextColumns)> = Vec::new();
    let mut current: Option<(Vec<String>, TextColumns)> = None;
    while let Some(msg) = stream.next().await {
        let msg = msg.map_err(|e| ended(query_error(e), conn, unanswered, alone))?;
        unanswered = false;
        match msg {
            SimpleQueryMessage::RowDescription(cols) => {
                current = Some((cols.iter().map(|c| c.name().to_string()).collect(), vec![Vec::new(); cols.len()]));
            }
            SimpleQueryMessage::Row(row) => {
                if let Some((_, columns)) = current.as_mut() {
                    for (i, col) in columns.iter_mut().enumerate() {
                        let v = row.try_get(i).map_err(|e| Error::Protocol { detail: e.to_string() })?;
                        col.push(v.map(str::to_string));
                    }
                }
            }
            SimpleQueryMessage::CommandComplete(n) => {
                let (names, columns) = current.take().unwrap_or_default();
                let command = statements.get(results.len()).and_then(|s| command_of(s));
                let result = ResultSet {
                    row_count: row_count(command.as_deref(), Some(n)),
                    command,
                    fields: names
                        .into_iter()
                        .map(|name| Field {
                            name,
                            type_oid: 0,
                            table_oid: 0,
                            column_id: 0,
                            type_modifier: -1,
                            type_size: -1,
                        })
                        .collect(),
                    chunks: Vec::new(),
                };
                results.push((result, columns));
            }
            _ => {}
        }
    }
    let mut out = Vec::with_capacity(results.len());
    for (i, (mut result, columns)) in results.into_iter().enumerate() {
        if !result.fields.is_empty() {
            // Preparing (not running) the statement again tells its column types.
            let prepared = match statements.get(i) {
                Some(text) => conn.client.prepare(text).await.ok(),
                None => None,
            };
            let types = prepared.as_ref().map(|p| p.columns()).filter(|c| c.len() == result.fields.len());
            let typed = typed_chunk(&mut result, columns, types, conn.decode, &conn.text_oids());
            if let Some(statement) = prepared {
                conn.desync.close_due();
                drop(statement);
            }
            typed?;
        }
        out.push(result);
    }
    Ok(out)
}

fn typed_chunk(
    result: &mut ResultSet,
    columns: TextColumns,
    types: Option<&[Column]>,
    decode: DecodeOptions,
    text_oids: &HashSet<u32>,
) -> Result<(), Error> {
    let rows = columns.first().map_or(0, Vec::len);
    let mut built = Vec::with_capacity(columns.len());
    for (i, values) in columns.into_iter().enumerate() {
        let decoder = match types {
            Some(cols) => {
                let c = &cols[i];
                result.fields[i] = fields(std::slice::from_ref(c)).remove(0);
                value::text_decoder(&Decoder::for_column(c.type_(), decode, text_oids))
            }
            None => Decoder::Utf8,
        };
        let mut b = ColumnBuilder::new(decoder.clone());
        for v in &values {
            match v {
                Some(text) => b.push(Some(&value::text_to_wire(&decoder, text)?))?,
                None => b.push(None)?,
            }
        }
        built.push(b.take());
    }
    result.chunks.push(Chunk { rows, columns: built });
    Ok(())
}

fn row_count(command: Option<&str>, affected: Option<u64>) -> Option<u64> {
    match command {
        Some("SELECT" | "INSERT" | "UPDATE" | "DELETE" | "MERGE" | "FETCH" | "MOVE" | "COPY") => affected,
        _ => None,
    }
}

/// What a lexical pass over SQL text finds.
#[derive(Debug, Default, PartialEq)]
pub struct Scan<'a> {
    /// Statements split at top-level semicolons; pieces with only whitespace or comments dropped.
    pub statements: Vec<&'a str>,
    /// The highest `$n`: the number of parameters the server will expect.
    pub max_param: usize,
}

/// Splits SQL text into statements and finds its parameters, aware of quotes, dollar quotes,
/// comments and `BEGIN ATOMIC … END` bodies.
pub fn scan(sql: &str) -> Scan<'_> {
    let b = sql.as_bytes();
    let ident_start = |c: u8| c.is_ascii_alphabetic() || c == b'_' || c >= 0x80;
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80;
    let mut out = Scan::default();
    let (mut start, mut code, mut i) = (0usize, false, 0usize);
    let (mut prev_word, mut word_end, mut atomic) = ("", usize::MAX, 0i32);
    while i < b.len() {
        let c = b[i];
        match c {
            b'\'' => {
                let escapes = word_end == i && prev_word.eq_ignore_ascii_case("e");
                i += 1;
                while i < b.len() {
                    if escapes && b[i] == b'\\' {
                        i += 2;
                        continue;
                    }
                    if b[i] == b'\'' {
                        if b.get(i + 1) == Some(&b'\'') {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                code = true;
            }
            b'"' => {
                i += 1;
                while i < b.len() && !(b[i] == b'"' && b.get(i + 1) != Some(&b'"')) {
                    i += if b[i] == b'"' { 2 } else { 1 };
                }
                code = true;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 0;
                while i < b.len() {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
                continue;
            }
            b'$' => {
                code = true;
                let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
                if digits > 0 {
                    let n = sql[i + 1..i + 1 + digits].parse::<usize>().unwrap_or(usize::MAX);
                    out.max_param = out.max_param.max(n);
                    i += 1 + digits;
                    continue;
                }
                let tag_len = b[i + 1..].iter().take_while(|&&c| ident(c) && c != b'$').count();
                if b.get(i + 1 + tag_len) == Some(&b'$') {
                    let tag = &sql[i..i + tag_len + 2];
                    match sql[i + tag.len()..].find(tag) {
                        Some(p) => i += tag.len() + p + tag.len(),
                        None => i = b.len(),
                    }
                    continue;
                }
            }
            c if ident_start(c) => {
                let s = i;
                while i < b.len() && ident(b[i]) {
                    i += 1;
                }
                let word = &sql[s..i];
                if atomic > 0 {
                    if word.eq_ignore_ascii_case("case") {
                        atomic += 1;
                    } else if word.eq_ignore_ascii_case("end") {
                        atomic -= 1;
                    }
                } else if word.eq_ignore_ascii_case("atomic") && prev_word.eq_ignore_ascii_case("begin") {
                    atomic = 1;
                }
                (prev_word, word_end, code) = (word, i, true);
                continue;
            }
            b';' if atomic == 0 => {
                if code {
                    out.statements.push(sql[start..i].trim_matches(is_sql_space));
                }
                start = i + 1;
                code = false;
            }
            c if !is_sql_space(c as char) => code = true,
            _ => {}
        }
        i += 1;
    }
    if code && start < sql.len() {
        out.statements.push(sql[start..].trim_matches(is_sql_space));
    }
    out
}

/// Whitespace as PostgreSQL's scanner knows it. Anything else, U+00A0 included, is part of a
/// token (an identifier character), so trimming it (as `str::trim` does) could leave a statement empty.
fn is_sql_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c')
}

/// The first word of a statement's command tag, as node-postgres reports it (`SELECT`,
/// `INSERT`, `CREATE`, …). tokio-postgres keeps only the row count of the tag, so this reads
/// the statement itself.
pub fn command_of(sql: &str) -> Option<String> {
    let words = top_level_words(sql.trim_start_matches(|c: char| c == '(' || c.is_whitespace()));
    let first = words.first()?.to_ascii_uppercase();
    let main = match first.as_str() {
        "WITH" => words
            .iter()
            .skip(1)
            .map(|w| w.to_ascii_uppercase())
            .find(|w| matches!(w.as_str(), "SELECT" | "INSERT" | "UPDATE" | "DELETE" | "MERGE" | "VALUES" | "TABLE"))
            .unwrap_or_else(|| "SELECT".into()),
        _ => first,
    };
    Some(match main.as_str() {
        "VALUES" | "TABLE" => "SELECT".to_string(),
        // CREATE TABLE … AS SELECT and CREATE MATERIALIZED VIEW … AS report `SELECT n`.
        "CREATE" if creates_from_query(&words) => "SELECT".to_string(),
        _ => main,
    })
}

fn creates_from_query(words: &[&str]) -> bool {
    let Some(as_at) = words.iter().position(|w| w.eq_ignore_ascii_case("as")) else {
        return false;
    };
    let target =
        words[..as_at].iter().any(|w| w.eq_ignore_ascii_case("table") || w.eq_ignore_ascii_case("materialized"));
    let query = words
        .get(as_at + 1)
        .is_some_and(|w| ["select", "with", "values", "table", "execute"].iter().any(|k| w.eq_ignore_ascii_case(k)));
    target && query
}

/// Words outside parentheses, quotes and comments (enough to find a statement's verb).
fn top_level_words(sql: &str) -> Vec<&str> {
    let b = sql.as_bytes();
    let (mut words, mut depth, mut i) = (Vec::new(), 0i32, 0usize);
    while i < b.len() && words.len() < 64 {
        match b[i] {
            b'(' => depth += 1,
            b')' => depth -= 1,
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i = sql[i..].find("*/").map_or(b.len(), |p| i + p + 1);
            }
            b'\'' | b'"' => {
                let q = b[i];
                i += 1;
                while i < b.len() && b[i] != q {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() => {
                let s = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                if depth <= 0 {
                    words.push(&sql[s..i]);
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_statements(sql: &str) -> Vec<&str> {
        scan(sql).statements
    }

    #[test]
    fn finds_parameters() {
        assert_eq!(scan("select $1, $3").max_param, 3);
        assert_eq!(scan("select '$4', \"$5\", $$ $6 $$ -- $7\n /* $8 */").max_param, 0);
        assert_eq!(scan("select a$1 from t where x = $2").max_param, 2);
        assert_eq!(scan("select $tag$ $9 $tag$, $1").max_param, 1);
    }

    #[test]
    fn begin_atomic_bodies_are_one_statement() {
        let sql = "create function f() returns int language sql begin atomic select case when true then 1 end; end; select f()";
        let parts = split_statements(sql);
        assert_eq!(parts.len(), 2, "{parts:?}");
        assert!(parts[0].ends_with("end"));
        assert_eq!(parts[1], "select f()");
    }

    #[test]
    fn splits_only_top_level_semicolons() {
        assert_eq!(split_statements("select 1"), vec!["select 1"]);
        assert_eq!(split_statements("select 1; select 2;"), vec!["select 1", "select 2"]);
        assert_eq!(split_statements("select ';'; select \"a;b\""), vec!["select ';'", "select \"a;b\""]);
        assert_eq!(split_statements("select $$a;b$$; select $x$;$x$"), vec!["select $$a;b$$", "select $x$;$x$"]);
        assert_eq!(split_statements("select E'\\';'; -- c;\n select 2"), vec!["select E'\\';'", "-- c;\n select 2"]);
        assert_eq!(split_statements("select 1 /* ; /* ; */ ; */"), vec!["select 1 /* ; /* ; */ ; */"]);
        assert_eq!(split_statements("select $1; ; -- only a comment"), vec!["select $1"]);
        assert_eq!(split_statements("select 'it''s;'"), vec!["select 'it''s;'"]);
        assert!(split_statements("  ; -- nothing").is_empty());
    }

    #[test]
    fn commands_as_pg_reports_them() {
        assert_eq!(command_of("select 1").as_deref(), Some("SELECT"));
        assert_eq!(command_of("  -- c\n/* x */ insert into t values (1)").as_deref(), Some("INSERT"));
        assert_eq!(command_of("with a as (select 1) update t set x = 1").as_deref(), Some("UPDATE"));
        assert_eq!(command_of("WITH RECURSIVE r(n) AS (SELECT 1) SELECT * FROM r").as_deref(), Some("SELECT"));
        assert_eq!(command_of("values (1)").as_deref(), Some("SELECT"));
        assert_eq!(command_of("create table t (x int)").as_deref(), Some("CREATE"));
        assert_eq!(command_of("(select 1)").as_deref(), Some("SELECT"));
        assert_eq!(command_of(""), None);
        assert_eq!(row_count(Some("CREATE"), Some(0)), None);
        assert_eq!(row_count(Some("INSERT"), Some(3)), Some(3));
    }

    #[test]
    fn what_cannot_be_encoded_is_refused_before_sending() {
        assert_eq!(check_sendable("select 'a\0'", &[]).unwrap_err().code(), "INVALID_ARGUMENT");
        assert!(check_sendable("select $1", &vec![None; MAX_PARAMS]).is_ok());
        assert_eq!(check_sendable("select 1", &vec![None; MAX_PARAMS + 1]).unwrap_err().code(), "INVALID_ARGUMENT");
    }

    #[test]
    fn only_sql_whitespace_is_trimmed() {
        assert_eq!(split_statements("select 1;\x0b\x0c\r\n\t "), vec!["select 1"]);
        assert_eq!(split_statements("select 1;\u{a0}"), vec!["select 1", "\u{a0}"]);
    }

    #[test]
    fn cache_evicts_oldest() {
        let mut c = StatementCache::default();
        assert!(c.get("x").is_none());
        c.remove("x");
        assert_eq!(c.order.len(), 0);
    }
}

#[cfg(test)]
mod fuzz {
    // Property tests for the SQL scanner (statement splitting, `$n` counting) and `command_of`:
    // arbitrary text never panics, and the pieces always come from the input.

    use super::{command_of, scan};
    use crate::testing::cases;
    use proptest::prelude::*;

    /// SQL-ish soup: the lexer's special characters and words in every order.
    fn sqlish() -> impl Strategy<Value = String> {
        const PIECES: &[&str] = &[
            "'",
            "''",
            "\"",
            "E'",
            "e'\\'",
            "\\",
            "$",
            "$$",
            "$tag$",
            "$1",
            "$99999999999999999999999",
            "$0",
            "--",
            "\n",
            "/*",
            "*/",
            ";",
            " ",
            "(",
            ")",
            "begin",
            "atomic",
            "case",
            "end",
            "select",
            "with",
            "insert",
            "create",
            "table",
            "as",
            "values",
            "é",
            "😀",
            "\u{0}",
            "x",
        ];
        proptest::collection::vec(proptest::sample::select(PIECES), 0..40).prop_map(|v| v.concat())
    }

    fn check(sql: &str) -> Result<(), TestCaseError> {
        let s = scan(sql);
        let range = sql.as_ptr() as usize..sql.as_ptr() as usize + sql.len() + 1;
        for st in &s.statements {
            prop_assert!(!st.is_empty(), "empty statement from {sql:?}");
            prop_assert!(range.contains(&(st.as_ptr() as usize)), "statement not a slice of the input");
            prop_assert_eq!(st.trim_matches(super::is_sql_space), *st);
        }
        prop_assert!(s.statements.len() <= sql.matches(';').count() + 1);
        if let Some(c) = command_of(sql) {
            prop_assert!(
                !c.is_empty() && c.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_'),
                "command {c:?}"
            );
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(cases(4000))]

        #[test]
        fn arbitrary_text_never_panics(s in any::<String>()) {
            check(&s)?;
        }

        #[test]
        fn sql_like_text_never_panics(s in sqlish()) {
            check(&s)?;
        }
    }

    #[test]
    fn pathological_inputs_finish_quickly() {
        let started = std::time::Instant::now();
        for sql in [
            "/*".repeat(200_000),
            "$".repeat(400_000),
            "$a".repeat(200_000),
            "'".repeat(400_000),
            "E'\\".repeat(100_000),
            format!("select {}", "(".repeat(300_000)),
            "begin atomic case ".repeat(50_000),
            format!("{}1", "$".repeat(100_000)),
        ] {
            check(&sql).unwrap();
        }
        assert!(started.elapsed().as_secs() < 5, "took {:?}", started.elapsed());
    }

    /// PostgreSQL reads U+00A0 (and other non-ASCII spaces) as identifier characters, and the scanner
    /// counts them as code: trimming them away with Unicode rules must not leave an empty statement
    /// (which also turns `select 1;\u{a0}` into "several statements").
    #[test]
    fn non_ascii_spaces_never_make_an_empty_statement() {
        for sql in ["\u{a0}", "select 1;\u{a0}", "select 1;\u{2003}"] {
            check(sql).unwrap();
        }
    }
}
