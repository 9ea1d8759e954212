//! scrip: offline payments with balance certificates, withdrawal records and blind-signed
//! coins. This facade re-exports the workspace crates under one name:
//!
//! - [`tokens`]: ids, amounts, every token type, canonical encoding, sign/verify;
//! - [`stores`]: the record stores that guarantee nothing is redeemed twice;
//! - [`issuer`]: the account management system and its HTTP server;
//! - [`wallet`]: the library wallet vendors embed;
//! - [`merchant`]: the library point-of-sale integrators embed;
//! - [`interop`]: wire-format documentation and golden vectors;
//! - [`client`] (feature `client`, on by default): a typed HTTP client of the server;
//! - [`demo`] (feature `client`): the whole story over HTTP, as `scrip demo` runs it;
//! - [`load`] (feature `client`): the redemption load run of `scrip load`.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub use scrip_interop as interop;
pub use scrip_issuer as issuer;
pub use scrip_merchant as merchant;
pub use scrip_stores as stores;
pub use scrip_tokens as tokens;
pub use scrip_wallet as wallet;

#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "client")]
pub mod demo;
#[cfg(feature = "client")]
mod error;
#[cfg(feature = "client")]
pub mod load;
#[cfg(feature = "client")]
pub use error::Error;
