//! The only module that knows about Node. Thin: it converts, calls the core, and hands back
//! plain objects that `index.js` turns into rows and `Error`s.

mod client;
mod convert;

use convert::{NativeError, ResolvedConfig};

use crate::config::{self, Inputs};
use napi::bindgen_prelude::Either;
use napi_derive::napi;
use std::collections::HashMap;

/// The environment variables the configuration resolver reads.
#[napi]
pub fn env_names() -> Vec<String> {
    config::env_names().into_iter().map(String::from).collect()
}

/// Resolves options, a connection string and environment variables into the settings a
/// connection would use, with where each came from. Secrets are never returned.
#[napi]
pub fn resolve_config(
    options: HashMap<String, String>,
    connection_string: Option<String>,
    env: HashMap<String, String>,
) -> Either<ResolvedConfig, NativeError> {
    match config::resolve(&Inputs {
        options,
        connection_string,
        env,
    }) {
        Ok(c) => Either::A(ResolvedConfig::from(&c)),
        Err(e) => Either::B(NativeError::from(&e)),
    }
}
