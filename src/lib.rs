//! dsql-tunnel: reach Amazon Aurora DSQL through an SSH or SSM tunnel.
//!
//! TCP goes to the tunnel (`hostaddr`), while TLS SNI, certificate verification and (later) the
//! IAM token use the cluster's hostname (`host`). The core (everything but `napi/`) knows nothing
//! of Node and is tested with `cargo test`:
//!
//! - `config`   options + connection string + environment → one resolved `Config`
//! - `endpoint` DSQL hostnames, tunnel addresses
//! - `tls`      rustls client configuration per sslmode, ALPN `postgresql`
//! - `token`    DSQL IAM tokens: minted with AWS's signer, static ones checked before use
//! - `connect`  dial → TLS → startup/auth, under one timeout
//! - `framing`  the server's message headers checked inside TLS: garbage fails at once
//! - `query`    one round trip per query, statement cache, columnar chunks
//! - `driver`   a connection's socket and queries, polled by tokio or by Node's thread after it queues
//! - `proxy`    a local PostgreSQL listener relaying each client through its own upstream connection
//! - `value`    PostgreSQL binary values → columnar buffers for JavaScript
//! - `pgtext`   PostgreSQL's text output of any value, from its binary form (custom type parsers)
//! - `napi`     the JavaScript surface (generated typings: `binding.d.ts`)
#![deny(clippy::all)]
// napi-rs macros generate their own `unsafe` (and allow it locally); we write none.
#![deny(unsafe_code)]

pub mod config;
pub mod connect;
pub mod driver;
pub mod endpoint;
pub mod error;
pub mod framing;
pub mod pgtext;
pub mod proxy;
pub mod query;
pub mod tls;
pub mod token;
pub mod tunnel;
pub mod value;

pub mod napi;

#[cfg(test)]
mod testing;
