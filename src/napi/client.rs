//! `NativeClient`: one connection, its queries, its end.

use super::convert::{AwsCredentials, ConnectInfo, NativeError, RawResult};
use super::settle;
use crate::config::{self, Inputs};
use crate::error::Error;
use crate::query::{self, Conn, ResultSet};
use crate::value::DecodeOptions;
use crate::{connect, tls};
use aws_credential_types::Credentials;
use napi::bindgen_prelude::{Either, PromiseRaw};
use napi::{Env, Result};
use napi_derive::napi;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
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
}

type QueryOutcome = Either<Vec<RawResult>, NativeError>;

#[napi]
impl NativeClient {
    #[napi(constructor)]
    #[allow(clippy::new_without_default)]
    pub fn new() -> NativeClient {
        NativeClient {
            state: Arc::new(Mutex::new(State::New)),
        }
    }

    /// Resolves the settings and opens the connection. Settles with `ConnectInfo`, or with a
    /// `NativeError` (never rejects).
    #[napi(ts_return_type = "Promise<ConnectInfo | NativeError>")]
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
        let inputs = Inputs {
            options,
            connection_string,
            env: environment,
        };
        let work = async move {
            let result = open(
                &inputs,
                credentials.map(Credentials::from),
                DecodeOptions { int8_as_bigint },
            )
            .await;
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
    #[napi(ts_return_type = "Promise<Array<RawResult> | NativeError>")]
    pub fn query<'env>(
        &self,
        env: &'env Env,
        sql: String,
        params: Vec<Option<String>>,
    ) -> Result<PromiseRaw<'env, QueryOutcome>> {
        let (conn, mut closed) = match &*self.state.lock().expect("client state") {
            State::Open(o) => (o.conn.clone(), o.closed.subscribe()),
            State::Closed => return settle_query(env, Box::pin(async { Err(Error::Closed) })),
            _ => return settle_query(env, Box::pin(async { Err(Error::NotConnected) })),
        };
        let work = async move {
            tokio::select! {
                biased;
                r = query::run(conn, sql, params) => r,
                _ = closed.wait_for(|c| *c) => Err(Error::Closed),
            }
        };
        settle_query(env, Box::pin(work))
    }

    /// Closes the connection. Pending queries settle with `CLIENT_CLOSED`. Idempotent.
    #[napi]
    pub fn end<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, ()>> {
        let previous = std::mem::replace(
            &mut *self.state.lock().expect("client state"),
            State::Closed,
        );
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
    pub fn cancel<'env>(
        &self,
        env: &'env Env,
    ) -> Result<PromiseRaw<'env, Either<(), NativeError>>> {
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

async fn open(
    inputs: &Inputs,
    credentials: Option<Credentials>,
    decode: DecodeOptions,
) -> std::result::Result<(Open, ConnectInfo), Error> {
    let config = config::resolve(inputs)?;
    let tls = tls::client_config(&config)?;
    let session = connect::connect(&config, &tls, credentials.as_ref()).await?;
    let info = ConnectInfo::new(&config, &session.timings);
    let conn = Arc::new(Conn::new(session.client, Arc::new(config), tls, decode));
    let (closed, _) = watch::channel(false);
    Ok((
        Open {
            conn,
            task: session.task,
            closed,
        },
        info,
    ))
}

type BoxedQuery = Pin<Box<dyn Future<Output = std::result::Result<Vec<ResultSet>, Error>> + Send>>;

/// Polls the query once on the calling (JavaScript) thread before handing it to tokio: that
/// first poll writes the request, so queries reach the wire in the order they were called.
fn settle_query<'env>(
    env: &'env Env,
    mut work: BoxedQuery,
) -> Result<PromiseRaw<'env, QueryOutcome>> {
    let waker = futures_util::task::noop_waker();
    let first = napi::bindgen_prelude::within_runtime_if_available(|| {
        work.as_mut().poll(&mut Context::from_waker(&waker))
    });
    let work: BoxedQuery = match first {
        Poll::Ready(r) => Box::pin(std::future::ready(r)),
        Poll::Pending => work,
    };
    env.spawn_future_with_callback(async move { Ok(work.await) }, |_, r| {
        Ok(match r {
            Ok(results) => Either::A(results.into_iter().map(RawResult::from).collect()),
            Err(e) => Either::B(NativeError::from(&e)),
        })
    })
}
