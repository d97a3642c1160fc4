//! `NativeClient`: one connection, its queries, its end.

use super::convert::{pack, AwsCredentials, ConnectInfo, Delivery, NativeError, Outcome, StreamPiece};
use super::settle;
use crate::config::{self, Inputs};
use crate::driver::{Driver, Job};
use crate::error::Error;
use crate::query::{self, Batch, Conn};
use crate::value::DecodeOptions;
use crate::{connect, tls};
use aws_credential_types::Credentials;
use napi::bindgen_prelude::{Either, Function, PromiseRaw, Uint32Array};
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::{Env, Result, Status};
use napi_derive::napi;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::task::Context;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::sync::watch;

/// How long `end()` waits for the connection to say goodbye before dropping it.
const END_GRACE: Duration = Duration::from_secs(2);

struct Open {
    conn: Arc<Conn>,
    driver: Arc<Driver>,
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
    /// Outcomes of queries, waiting for JavaScript.
    inbox: Arc<Inbox>,
    /// The rest of results larger than one batch, read by `more(id)`.
    rests: Rests,
    next_rest: AtomicU32,
}

type Receiver = Arc<tokio::sync::Mutex<mpsc::Receiver<std::result::Result<Batch, Error>>>>;
type Rests = Arc<Mutex<HashMap<u32, Receiver>>>;
/// Weak: it never keeps Node running (`index.js` holds the event loop while queries are out).
/// How long a failed query waits for the ReadyForQuery behind its error (it is normally in the
/// same read).
const READY_AFTER_ERROR: std::time::Duration = std::time::Duration::from_millis(200);

type Notify = ThreadsafeFunction<(), (), Delivery, Status, false, true, 0>;

/// Outcomes waiting for JavaScript. A query's task posts its outcome here; the first post after
/// a delivery asks for the next one, and that delivery takes everything posted by then: one
/// hop to the JavaScript thread settles every query ready at that moment.
struct Inbox {
    state: Mutex<InboxState>,
    notify: OnceLock<Notify>,
}

#[derive(Default)]
struct InboxState {
    items: VecDeque<(f64, Outcome)>,
    forgotten: Vec<u32>,
    /// Server notices, and how the connection ended, not yet seen by JavaScript.
    notices: Vec<NativeError>,
    closed: Option<Option<NativeError>>,
    scheduled: bool,
}

/// Posts a query's outcome once: a query whose work is dropped unfinished settles as closed.
struct Settle {
    inbox: Option<Arc<Inbox>>,
    id: f64,
}

impl Settle {
    fn post(&mut self, outcome: Outcome, forgotten: Vec<u32>) {
        if let Some(inbox) = self.inbox.take() {
            inbox.post(self.id, outcome, forgotten);
        }
    }
}

impl Drop for Settle {
    fn drop(&mut self) {
        self.post(Outcome::Failed(Error::Closed), Vec::new());
    }
}

impl Inbox {
    fn post(self: &Arc<Self>, id: f64, outcome: Outcome, forgotten: Vec<u32>) {
        let mut st = self.state.lock().expect("inbox");
        st.items.push_back((id, outcome));
        st.forgotten.extend(forgotten);
        self.schedule(st);
    }

    /// A notice, or the end of the connection, for JavaScript's `notice` / `error` / `end`.
    fn event(self: &Arc<Self>, event: connect::Event) {
        let mut st = self.state.lock().expect("inbox");
        match event {
            connect::Event::Notice(n) => st.notices.push(NativeError::from(&Error::Server(n))),
            connect::Event::Closed(why) => st.closed = Some(why.as_ref().map(NativeError::from)),
        }
        self.schedule(st);
    }

    fn schedule(self: &Arc<Self>, mut st: std::sync::MutexGuard<'_, InboxState>) {
        if !std::mem::replace(&mut st.scheduled, true) {
            drop(st);
            // Inside the driver, after it has run every query the server's bytes completed: one
            // delivery (and one wake-up of Node's thread) for all of them.
            let me = self.clone();
            if !crate::driver::after_run(move || me.ask()) {
                self.ask();
            }
        }
    }

    fn ask(&self) {
        if let Some(notify) = self.notify.get() {
            notify.call((), ThreadsafeFunctionCallMode::NonBlocking);
        }
    }

    /// On the JavaScript thread: what has arrived (up to a size; the rest asks again).
    fn take(&self) -> Delivery {
        let mut st = self.state.lock().expect("inbox");
        let forgotten = std::mem::take(&mut st.forgotten);
        let mut delivery = pack(&mut st.items, forgotten);
        if !st.notices.is_empty() {
            delivery.notices = Some(std::mem::take(&mut st.notices));
        }
        // Told once every query has been delivered, so JavaScript sees their outcomes first.
        if st.items.is_empty() {
            if let Some(why) = st.closed.take() {
                delivery.closed = Some(why.unwrap_or_else(|| NativeError::from(&Error::Closed)));
            }
        }
        st.scheduled = !st.items.is_empty();
        let again = st.scheduled;
        drop(st);
        if again {
            self.ask();
        }
        delivery
    }
}

#[napi]
impl NativeClient {
    /// `onDelivery` receives the outcomes of queries (see `Delivery`).
    #[napi(constructor)]
    pub fn new(on_delivery: Function<'_, Delivery, ()>) -> Result<NativeClient> {
        let inbox = Arc::new(Inbox { state: Default::default(), notify: OnceLock::new() });
        let weak = Arc::downgrade(&inbox);
        let notify = on_delivery.build_threadsafe_function::<()>().weak::<true>().build_callback(move |_| {
            Ok(match weak.upgrade() {
                Some(inbox) => inbox.take(),
                None => pack(&mut VecDeque::new(), Vec::new()),
            })
        })?;
        let _ = inbox.notify.set(notify);
        Ok(NativeClient {
            inbox,
            state: Arc::new(Mutex::new(State::New)),
            rests: Default::default(),
            next_rest: AtomicU32::new(1),
        })
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
        int8: String,
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
        let inbox = Arc::downgrade(&self.inbox);
        let ended_by_fatal = Arc::new(AtomicBool::new(false));
        let fatal_flag = ended_by_fatal.clone();
        let events: connect::Events = Box::new(move |e| {
            if let connect::Event::Closed(Some(Error::Server(s))) = &e {
                if query::is_shutdown(s) {
                    fatal_flag.store(true, Ordering::Release);
                }
            }
            if let Some(inbox) = inbox.upgrade() {
                inbox.event(e);
            }
        });
        let work = async move {
            let decode = DecodeOptions { int8_as_bigint: int8 == "bigint", int8_as_number: int8 == "number" };
            let result = open(&inputs, credentials.map(Credentials::from), decode, events, ended_by_fatal).await;
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

    /// Sends `sql` with parameters in PostgreSQL text form (`null` for NULL). The outcome reaches
    /// the `onDelivery` function given to the constructor, under `id`; a client that is not
    /// connected answers at once with a `NativeError`.
    #[napi(catch_unwind)]
    /// `extended`: pg's `queryMode: 'extended'`: text with several statements is not run through
    /// the simple protocol (the server refuses it, as it refuses pg).
    pub fn query(
        &self,
        sql: String,
        params: Vec<Option<String>>,
        rows_per_batch: u32,
        id: f64,
        extended: Option<bool>,
    ) -> Option<NativeError> {
        let (conn, driver, mut closed, mut rest_closed) = match &*self.state.lock().expect("client state") {
            State::Open(o) => (o.conn.clone(), o.driver.clone(), o.closed.subscribe(), o.closed.subscribe()),
            State::Closed => return Some(NativeError::from(&Error::Closed)),
            _ => return Some(NativeError::from(&Error::NotConnected)),
        };
        let multi = !extended.unwrap_or(false) && query::is_multi_statement(&conn, &sql, &params);
        let (rests, rest_id) = (self.rests.clone(), self.next_rest.fetch_add(1, Ordering::Relaxed));
        let (inbox, task_conn) = (self.inbox.clone(), conn.clone());
        // Counted from here, on the JavaScript thread, so the next call sees this one outstanding.
        let (in_flight, alone) = conn.begin();
        let run = async move {
            if multi || conn.client.is_closed() {
                let _in_flight = in_flight;
                return query::run(conn, sql, params, alone).await.map(Outcome::Many);
            }
            let first =
                query::first_rows(&conn, sql, params, query::Batching::growing(rows_per_batch as usize), alone).await;
            let first = match first {
                Ok(first) => first,
                Err(e) => {
                    // The server's error comes before its ReadyForQuery: a query alone on the
                    // connection settles once that has been read too, as pg's does, so the
                    // transaction status (`E` inside a transaction) is current when it rejects.
                    if matches!(e, Error::Server(_)) && conn.outstanding() == 1 {
                        conn.desync.until_settled(READY_AFTER_ERROR).await;
                    }
                    drop(in_flight);
                    return Err(e);
                }
            };
            let more = first.rest.map(|rest| {
                let (tx, rx) = mpsc::channel(1);
                rests.lock().expect("rests").insert(rest_id, Arc::new(tokio::sync::Mutex::new(rx)));
                let task = super::unpanicked(async move {
                    // The rest of the result still occupies the connection.
                    let _in_flight = in_flight;
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
                rest_id
            });
            Ok(Outcome::Rows { prepared: first.prepared, chunk: first.chunk, row_count: first.row_count, more })
        };
        let mut settle = Settle { inbox: Some(inbox), id };
        let work = async move {
            let outcome = tokio::select! {
                biased;
                r = super::unpanicked(run) => r,
                _ = closed.wait_for(|c| *c) => Err(Error::Closed),
            };
            let forgotten = task_conn.statements.lock().expect("statement cache").take_forgotten();
            settle.post(outcome.unwrap_or_else(Outcome::Failed), forgotten);
        };
        // The first poll, here on the JavaScript thread, queues the request: queries reach the
        // wire in the order they were called. `flush()` writes them.
        let mut work: Job = Box::pin(work);
        let waker = futures_util::task::noop_waker();
        napi::bindgen_prelude::within_runtime_if_available(|| {
            if driver.queue(|| work.as_mut().poll(&mut Context::from_waker(&waker))).is_pending() {
                driver.add(work);
            }
        });
        None
    }

    /// Writes the requests `query` queued, on this thread (`index.js` calls it once per tick).
    #[napi(catch_unwind)]
    pub fn flush(&self) {
        let driver = match &*self.state.lock().expect("client state") {
            State::Open(o) => o.driver.clone(),
            _ => return,
        };
        napi::bindgen_prelude::within_runtime_if_available(|| driver.flush());
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
        let (in_flight, _) = conn.begin();
        let work = async move {
            let _in_flight = in_flight;
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
                // Queries queued in this tick wait for a flush that will not come now.
                open.driver.hand_over();
                open.closed.send_replace(true);
                // Dropping the last handle makes tokio-postgres send Terminate and close.
                drop(open.conn);
                let mut task = open.task;
                if tokio::time::timeout(END_GRACE, &mut task).await.is_err() {
                    task.abort();
                    open.driver.close();
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

    /// Sets the types (OIDs) whose columns arrive as PostgreSQL's text, for custom type parsers.
    /// Prepared statements of another set are dropped (their shapes are told again).
    #[napi(catch_unwind)]
    pub fn set_text_types(&self, oids: Uint32Array) {
        if let State::Open(o) = &*self.state.lock().expect("client state") {
            o.conn.set_text_oids(oids.iter().copied().collect());
        }
    }

    /// The transaction status the server reported last: `I` (idle), `T` (in a transaction), `E`
    /// (in a failed transaction); null when not connected.
    #[napi(getter)]
    pub fn transaction_status(&self) -> Option<String> {
        match &*self.state.lock().expect("client state") {
            State::Open(o) => o.conn.desync.transaction_status().map(String::from),
            _ => None,
        }
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
    events: connect::Events,
    ended_by_fatal: Arc<AtomicBool>,
) -> std::result::Result<(Open, ConnectInfo), Error> {
    let config = config::resolve(inputs)?;
    let tls = tls::client_config(&config)?;
    let session = connect::connect(&config, &tls, credentials.as_ref(), Some(events)).await?;
    let mut info = ConnectInfo::new(&config, &session.timings);
    info.parameters = session.parameters.iter().flat_map(|(k, v)| [k.clone(), v.clone()]).collect();
    info.process_id = session.process_id;
    let conn = Arc::new(
        Conn::new(session.client, Arc::new(config), tls, decode).watching(session.desync).ending(ended_by_fatal),
    );
    let (closed, _) = watch::channel(false);
    Ok((Open { conn, driver: session.driver, task: session.task, closed }, info))
}
