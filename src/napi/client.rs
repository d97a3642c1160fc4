//! `NativeClient`: one connection, its queries, its end.

use super::convert::{AwsCredentials, ConnectInfo, NativeError, RawResult, StreamPiece};
use super::settle;
use crate::config::{self, Inputs};
use crate::error::Error;
use crate::query::{self, Batch, Conn, ResultSet};
use crate::value::DecodeOptions;
use crate::{connect, tls};
use aws_credential_types::Credentials;
use napi::bindgen_prelude::{Either, PromiseRaw};
use napi::{Env, Result};
use napi_derive::napi;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::sync::watch;

/// How long `end()` waits for the connection to say goodbye before dropping it.
const END_GRACE: Duration = Duration::from_secs(2);

struct Open {
    conn: Arc<Conn>,
    task: tokio::task::JoinHandle<()>,
    closed: watch::Sender<bool>,
}

enum State {
    New,
    Connecting,
    Open(Open),
    Closed,
}

/// One connection to the server. Used through `Client` in `index.js`.
#[napi]
pub struct NativeClient {
    state: Arc<Mutex<State>>,
    /// The rest of results larger than one batch, read by `more(id)`.
    rests: Rests,
    next_rest: AtomicU32,
}

type Receiver = Arc<tokio::sync::Mutex<mpsc::Receiver<std::result::Result<Batch, Error>>>>;
type Rests = Arc<Mutex<HashMap<u32, Receiver>>>;
type QueryOutcome = Either<QueryReply, NativeError>;

/// What a query settles with: one result per statement for text with several statements, or
/// the first batch of one statement, and `more` to call when it is not the last.
#[napi(object)]
pub struct QueryReply {
    pub results: Option<Vec<RawResult>>,
    pub batch: Option<StreamPiece>,
    pub more: Option<u32>,
}

enum Reply {
    Many(Vec<ResultSet>),
    One(Batch, Option<u32>),
}

#[napi]
impl NativeClient {
    #[napi(constructor)]
    #[allow(clippy::new_without_default)]
    pub fn new() -> NativeClient {
        NativeClient {
            state: Arc::new(Mutex::new(State::New)),
            rests: Default::default(),
            next_rest: AtomicU32::new(1),
        }
    }

    /// Resolves the settings and opens the connection. Settles with `ConnectInfo`, or with a
    /// `NativeError` (never rejects).
    #[napi(catch_unwind, ts_return_type = "Promise<ConnectInfo | NativeError>")]
    pub fn connect<'env>(
        &self,
        env: &'env Env,
        options: HashMap<String, String>,
        connection_string: Option<String>,
        environment: HashMap<String, String>,
        int8_as_bigint: bool,
        credentials: Option<AwsCredentials>,
    ) -> Result<PromiseRaw<'env, Either<ConnectInfo, NativeError>>> {
        {
            let mut state = self.state.lock().expect("client state");
            match *state {
                State::New => *state = State::Connecting,
                State::Closed => return settle(env, async { Err(Error::Closed) }),
                _ => return settle(env, async { Err(Error::AlreadyConnected) }),
            }
        }
        let state = self.state.clone();
        let inputs = Inputs { options, connection_string, env: environment };
        let work = async move {
            let result = open(&inputs, credentials.map(Credentials::from), DecodeOptions { int8_as_bigint }).await;
            let mut st = state.lock().expect("client state");
            match result {
                Ok((open, info)) => {
                    if matches!(*st, State::Closed) {
                        // end() came first: dropping `open` closes the connection.
                        return Err(Error::Closed);
                    }
                    *st = State::Open(open);
                    Ok(info)
                }
                Err(e) => {
                    if matches!(*st, State::Connecting) {
                        *st = State::New;
                    }
                    Err(e)
                }
            }
        };
        settle(env, work)
    }

    /// Runs `sql` with parameters in PostgreSQL text form (`null` for NULL). Settles with one
    /// result per statement, or a `NativeError` (never rejects).
    #[napi(catch_unwind, ts_return_type = "Promise<QueryReply | NativeError>")]
    pub fn query<'env>(
        &self,
        env: &'env Env,
        sql: String,
        params: Vec<Option<String>>,
        rows_per_batch: u32,
    ) -> Result<PromiseRaw<'env, QueryOutcome>> {
        let (conn, mut closed, mut rest_closed) = match &*self.state.lock().expect("client state") {
            State::Open(o) => (o.conn.clone(), o.closed.subscribe(), o.closed.subscribe()),
            State::Closed => return settle_query(env, Box::pin(async { Err(Error::Closed) })),
            _ => return settle_query(env, Box::pin(async { Err(Error::NotConnected) })),
        };
        let multi = query::is_multi_statement(&conn, &sql, &params);
        let (rests, id) = (self.rests.clone(), self.next_rest.fetch_add(1, Ordering::Relaxed));
        let run = async move {
            if multi || conn.client.is_closed() {
                return query::run(conn, sql, params).await.map(Reply::Many);
            }
            let (batch, rest) = query::first_batch(&conn, sql, params, rows_per_batch as usize).await?;
            let more = rest.map(|rest| {
                let (tx, rx) = mpsc::channel(1);
                rests.lock().expect("rests").insert(id, Arc::new(tokio::sync::Mutex::new(rx)));
                let task = super::unpanicked(async move {
                    tokio::select! {
                        biased;
                        _ = rest.send_all(tx) => {},
                        _ = rest_closed.wait_for(|c| *c) => {},
                    }
                    Ok(())
                });
                napi::bindgen_prelude::spawn(async move {
                    let _ = task.await;
                });
                id
            });
            Ok(Reply::One(batch, more))
        };
        let work = async move {
            tokio::select! {
                biased;
                r = run => r,
                _ = closed.wait_for(|c| *c) => Err(Error::Closed),
            }
        };
        settle_query(env, Box::pin(work))
    }

    /// The next batch of a result larger than one batch (`more` from `query`).
    #[napi(catch_unwind, ts_return_type = "Promise<StreamPiece | NativeError>")]
    pub fn more<'env>(&self, env: &'env Env, id: u32) -> Result<PromiseRaw<'env, Either<StreamPiece, NativeError>>> {
        let rests = self.rests.clone();
        let rx = rests.lock().expect("rests").get(&id).cloned();
        settle(env, async move {
            let piece = match rx {
                Some(rx) => rx.lock().await.recv().await,
                None => None,
            };
            let finished = !matches!(piece, Some(Ok(Batch { done: None, .. })));
            if finished {
                rests.lock().expect("rests").remove(&id);
            }
            match piece {
                Some(Ok(b)) => Ok(StreamPiece::from(b)),
                Some(Err(e)) => Err(e),
                None => Err(Error::Closed),
            }
        })
    }

    /// Starts one statement whose rows arrive in batches of `batch` rows through `next()`.
    /// Returns `null` for text with several statements (run those with `query`).
    #[napi(catch_unwind)]
    pub fn stream(&self, sql: String, params: Vec<Option<String>>, batch: u32) -> Option<NativeStream> {
        let (tx, rx) = mpsc::channel(1);
        let (conn, mut closed) = match &*self.state.lock().expect("client state") {
            State::Open(o) => (o.conn.clone(), o.closed.subscribe()),
            other => {
                let e = if matches!(other, State::Closed) { Error::Closed } else { Error::NotConnected };
                let _ = tx.try_send(Err(e));
                return Some(NativeStream::new(rx, None));
            }
        };
        if conn.client.is_closed() {
            let detail = "the connection had already closed; the query was not sent".into();
            let _ = tx.try_send(Err(Error::ConnectionLost { detail, sent: false }));
            return Some(NativeStream::new(rx, None));
        }
        if query::is_multi_statement(&conn, &sql, &params) {
            return None;
        }
        let task_conn = conn.clone();
        let on_panic = tx.clone();
        let work = async move {
            let run = async move {
                tokio::select! {
                    biased;
                    _ = query::stream(task_conn, sql, params, batch as usize, tx) => {},
                    _ = closed.wait_for(|c| *c) => {},
                }
                Ok(())
            };
            if let Err(e) = super::unpanicked(run).await {
                let _ = on_panic.send(Err(e)).await;
            }
        };
        // As with queries: the first poll, here, writes the request, so it keeps its place in line.
        let mut work = Box::pin(work);
        let waker = futures_util::task::noop_waker();
        let first =
            napi::bindgen_prelude::within_runtime_if_available(|| work.as_mut().poll(&mut Context::from_waker(&waker)));
        if first.is_pending() {
            napi::bindgen_prelude::spawn(work);
        }
        Some(NativeStream::new(rx, Some(&conn)))
    }

    /// Closes the connection. Pending queries settle with `CLIENT_CLOSED`. Idempotent.
    #[napi]
    pub fn end<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, ()>> {
        let previous = std::mem::replace(&mut *self.state.lock().expect("client state"), State::Closed);
        env.spawn_future(async move {
            if let State::Open(open) = previous {
                open.closed.send_replace(true);
                // Dropping the last handle makes tokio-postgres send Terminate and close.
                drop(open.conn);
                let mut task = open.task;
                if tokio::time::timeout(END_GRACE, &mut task).await.is_err() {
                    task.abort();
                }
            }
            Ok(())
        })
    }

    /// Sends a CancelRequest for what the connection is running (through the tunnel, TLS with
    /// the DSQL hostname as SNI). Settles with `undefined` or a `NativeError`.
    #[napi(ts_return_type = "Promise<undefined | NativeError>")]
    pub fn cancel<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, Either<(), NativeError>>> {
        let conn = match &*self.state.lock().expect("client state") {
            State::Open(o) => Some(o.conn.clone()),
            _ => None,
        };
        settle(env, async move {
            match conn {
                Some(c) => c.cancel().await,
                None => Err(Error::NotConnected),
            }
        })
    }

    /// Whether the connection is open and its socket alive.
    #[napi(getter)]
    pub fn is_open(&self) -> bool {
        match &*self.state.lock().expect("client state") {
            State::Open(o) => !o.conn.client.is_closed(),
            _ => false,
        }
    }
}

/// The rows of one statement, chunk by chunk, with backpressure: nothing more is read from the
/// server while a chunk waits here.
#[napi]
pub struct NativeStream {
    rx: Arc<tokio::sync::Mutex<mpsc::Receiver<std::result::Result<Batch, Error>>>>,
    // Weak: a finished stream may wait for garbage collection, and must not keep the connection
    // open (end() closes it by dropping the last strong handle).
    conn: Option<Weak<Conn>>,
    done: Arc<AtomicBool>,
}

impl NativeStream {
    fn new(rx: mpsc::Receiver<std::result::Result<Batch, Error>>, conn: Option<&Arc<Conn>>) -> NativeStream {
        let conn = conn.map(Arc::downgrade);
        NativeStream { rx: Arc::new(tokio::sync::Mutex::new(rx)), conn, done: Arc::new(AtomicBool::new(false)) }
    }
}

#[napi]
impl NativeStream {
    /// The next piece; settles with a `NativeError` on failure (never rejects).
    #[napi(ts_return_type = "Promise<StreamPiece | NativeError>")]
    pub fn next<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, Either<StreamPiece, NativeError>>> {
        let (rx, done) = (self.rx.clone(), self.done.clone());
        settle(env, async move {
            let piece = rx.lock().await.recv().await;
            match piece {
                Some(Ok(b)) => {
                    if b.done.is_some() {
                        done.store(true, Ordering::Relaxed);
                    }
                    Ok(StreamPiece::from(b))
                }
                Some(Err(e)) => {
                    done.store(true, Ordering::Relaxed);
                    Err(e)
                }
                None if done.load(Ordering::Relaxed) => Ok(StreamPiece { done: true, ..Default::default() }),
                None => Err(Error::Closed),
            }
        })
    }

    /// Stops early: cancels the statement on the server and discards what is left, so the
    /// connection can run the next query. Idempotent.
    #[napi]
    pub fn close<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, ()>> {
        let (rx, conn) = (self.rx.clone(), self.conn.clone());
        let finished = self.done.swap(true, Ordering::Relaxed);
        env.spawn_future(async move {
            if !finished {
                if let Some(c) = conn.and_then(|w| w.upgrade()) {
                    let _ = c.cancel().await;
                }
            }
            // Dropping the channel ends the task; tokio-postgres drains the rest of the answer.
            rx.lock().await.close();
            Ok(())
        })
    }
}

async fn open(
    inputs: &Inputs,
    credentials: Option<Credentials>,
    decode: DecodeOptions,
) -> std::result::Result<(Open, ConnectInfo), Error> {
    let config = config::resolve(inputs)?;
    let tls = tls::client_config(&config)?;
    let session = connect::connect(&config, &tls, credentials.as_ref()).await?;
    let info = ConnectInfo::new(&config, &session.timings);
    let conn = Arc::new(Conn::new(session.client, Arc::new(config), tls, decode).watching(session.desync));
    let (closed, _) = watch::channel(false);
    Ok((Open { conn, task: session.task, closed }, info))
}

type BoxedQuery = Pin<Box<dyn Future<Output = std::result::Result<Reply, Error>> + Send>>;

/// Polls the query once on the calling (JavaScript) thread before handing it to tokio: that
/// first poll writes the request, so queries reach the wire in the order they were called.
fn settle_query<'env>(env: &'env Env, mut work: BoxedQuery) -> Result<PromiseRaw<'env, QueryOutcome>> {
    let waker = futures_util::task::noop_waker();
    let first =
        napi::bindgen_prelude::within_runtime_if_available(|| work.as_mut().poll(&mut Context::from_waker(&waker)));
    let work: BoxedQuery = match first {
        Poll::Ready(r) => Box::pin(std::future::ready(r)),
        Poll::Pending => work,
    };
    env.spawn_future_with_callback(async move { Ok(super::unpanicked(work).await) }, |_, r| {
        Ok(match r {
            Ok(Reply::Many(results)) => Either::A(QueryReply {
                results: Some(results.into_iter().map(RawResult::from).collect()),
                batch: None,
                more: None,
            }),
            Ok(Reply::One(batch, more)) => Either::A(QueryReply { results: None, batch: Some(batch.into()), more }),
            Err(e) => Either::B(NativeError::from(&e)),
        })
    })
}
