//! The only module that knows about Node. Thin: it converts, calls the core, and hands back
//! plain objects that `index.js` turns into rows and `Error`s.

mod client;
mod convert;
mod proxy;

use convert::{AwsCredentials, NativeError, ResolvedConfig};

use crate::config::{self, Inputs};
use crate::error::Error;
use crate::token::{self, GenerateOptions};
use napi::bindgen_prelude::{Either, PromiseRaw, ToNapiValue};
use napi::Env;
use napi_derive::napi;
use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, UNIX_EPOCH};

/// One tokio worker unless `TOKIO_WORKER_THREADS` says otherwise: a query's task and its
/// connection's task then share a thread, with no cross-core hand-off per message (measured
/// faster on 2-core machines; Node's own thread does the rest of the work).
#[napi_derive::module_init]
fn init() {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        builder.worker_threads(1);
    }
    if let Ok(rt) = builder.enable_all().build() {
        napi::bindgen_prelude::create_custom_tokio_runtime(rt);
    }
}

/// Runs `work` on the runtime and settles with its value or a `NativeError`: the promise never
/// rejects, so `index.js` can raise its own Error classes with their codes.
pub(crate) fn settle<'env, T, F>(env: &'env Env, work: F) -> napi::Result<PromiseRaw<'env, Either<T, NativeError>>>
where
    T: ToNapiValue + Send + 'static,
    F: Future<Output = Result<T, Error>> + Send + 'static,
{
    env.spawn_future_with_callback(async move { Ok(unpanicked(work).await) }, |_, r| {
        Ok(match r {
            Ok(v) => Either::A(v),
            Err(e) => Either::B(NativeError::from(&e)),
        })
    })
}

/// What a DSQL auth token says about itself (never the signature).
#[napi(object)]
pub struct TokenClaims {
    pub host: String,
    /// `DbConnectAdmin` or `DbConnect`.
    pub action: String,
    pub region: String,
    pub access_key_id: String,
    /// Milliseconds since the epoch.
    pub signed_at: f64,
    pub expires_at: f64,
}

/// What opening the `tunnel` showed (`doctor`'s tunnel step).
#[napi(object)]
pub struct TunnelProbe {
    /// `ssh://user@bastion:port` or `ssm://<instance-id>`.
    pub tunnel: String,
    /// The bastion's host key as known_hosts has it (`SHA256:…`).
    pub host_key: Option<String>,
    /// `agent` or `publickey <file>`.
    pub auth: Option<String>,
    /// The first connection to the far end, including opening the tunnel when it was not open.
    pub first_millis: f64,
    /// A second connection over the open tunnel: one round trip.
    pub round_trip_millis: f64,
}

/// Opens the configured tunnel and two connections to its far end; `null` without a tunnel.
#[napi(catch_unwind, ts_return_type = "Promise<TunnelProbe | null | NativeError>")]
pub fn probe_tunnel<'env>(
    env: &'env Env,
    options: HashMap<String, String>,
    connection_string: Option<String>,
    env_vars: HashMap<String, String>,
) -> napi::Result<PromiseRaw<'env, Either<Option<TunnelProbe>, NativeError>>> {
    settle(env, async move {
        let config = config::resolve(&Inputs { options, connection_string, env: env_vars })?;
        let probe = crate::connect::probe_tunnel(&config).await?;
        Ok(probe.map(|p| TunnelProbe {
            tunnel: p.tunnel,
            host_key: p.host_key,
            auth: p.auth,
            first_millis: p.first.as_secs_f64() * 1000.0,
            round_trip_millis: p.round_trip.as_secs_f64() * 1000.0,
        }))
    })
}

/// Decodes a DSQL auth token; `null` when the string is not one (an ordinary password).
#[napi(catch_unwind)]
pub fn decode_token(token: String) -> Option<TokenClaims> {
    token::decode(&token).map(|c| TokenClaims {
        expires_at: c.expires_at() as f64 * 1000.0,
        signed_at: c.signed_at as f64 * 1000.0,
        host: c.host,
        action: c.action,
        region: c.region,
        access_key_id: c.access_key_id,
    })
}

/// A panic in `work` (a bug) becomes `Error::Internal`, so its promise still settles and the
/// process carries on.
pub(crate) async fn unpanicked<T>(work: impl Future<Output = Result<T, Error>>) -> Result<T, Error> {
    use futures_util::FutureExt;
    match std::panic::AssertUnwindSafe(work).catch_unwind().await {
        Ok(r) => r,
        Err(panic) => {
            let detail = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".into());
            Err(Error::Internal { detail })
        }
    }
}

/// Internal, for the test suite: proves that a panic on either side of the boundary settles as
/// an error (`INTERNAL_ERROR`) and leaves the process running. `kind`: `sync` or `async`.
#[napi(js_name = "__selfTestPanic", catch_unwind, ts_return_type = "Promise<NativeError>")]
pub fn self_test_panic<'env>(env: &'env Env, kind: String) -> napi::Result<PromiseRaw<'env, Either<(), NativeError>>> {
    if kind == "sync" {
        panic!("self-test panic (sync)");
    }
    settle(env, async move {
        tokio::task::yield_now().await;
        if kind == "async" {
            panic!("self-test panic (async)");
        }
        Ok(())
    })
}

/// Mints a DSQL auth token. `options`: host, region, user, expiresIn, profile (strings).
#[napi(catch_unwind, ts_return_type = "Promise<string | NativeError>")]
pub fn generate_token<'env>(
    env: &'env Env,
    options: HashMap<String, String>,
    environment: HashMap<String, String>,
    credentials: Option<AwsCredentials>,
    signing_time_millis: Option<f64>,
) -> napi::Result<PromiseRaw<'env, Either<String, NativeError>>> {
    let get = |k: &str| options.get(k).filter(|v| !v.is_empty()).cloned();
    let expires_in = get("expiresIn").map(|v| v.trim().parse::<u64>().unwrap_or(0));
    let opts = GenerateOptions {
        host: get("host").unwrap_or_default(),
        region: get("region"),
        env_region: environment.get("AWS_REGION").or(environment.get("AWS_DEFAULT_REGION")).cloned(),
        user: get("user"),
        expires_in,
        profile: get("profile"),
        signed_at: signing_time_millis.map(|ms| UNIX_EPOCH + Duration::from_millis(ms.max(0.0) as u64)),
    };
    let credentials = credentials.map(aws_credential_types::Credentials::from);
    settle(env, async move { token::generate(&opts, credentials.as_ref()).await.map(|t| t.expose().to_string()) })
}

/// The environment variables the configuration resolver reads.
#[napi(catch_unwind)]
pub fn env_names() -> Vec<String> {
    config::env_names().into_iter().map(String::from).collect()
}

/// Resolves options, a connection string and environment variables into the settings a
/// connection would use, with where each came from. Secrets are never returned.
#[napi(catch_unwind)]
pub fn resolve_config(
    options: HashMap<String, String>,
    connection_string: Option<String>,
    env: HashMap<String, String>,
) -> Either<ResolvedConfig, NativeError> {
    match config::resolve(&Inputs { options, connection_string, env }) {
        Ok(c) => Either::A(ResolvedConfig::from(&c)),
        Err(e) => Either::B(NativeError::from(&e)),
    }
}
