//! scrip: offline payments with balance certificates, withdrawal records and blind-signed
//! coins. This facade re-exports the workspace crates under one name:
//!
//! - [`tokens`]: ids, amounts, every token type, canonical encoding, sign/verify;
//! - [`stores`]: the record stores that guarantee nothing is redeemed twice;
//! - [`issuer`]: the account management system and its HTTP server;
//! - [`wallet`]: the library wallet vendors embed;
//! - [`merchant`]: the library point-of-sale integrators embed;
//! - [`interop`]: wire-format documentation and golden vectors;
//! - [`api`] and [`client`] (feature `client`): the HTTP API's message types and a typed
//!   client of the server, without the server (crate `scrip-api`);
//! - [`demo`] (feature `cli`, on by default): the whole story over HTTP, as `scrip demo`
//!   runs it;
//! - [`load`] (feature `cli`): the redemption load run of `scrip load`;
//! - [`setup`] (feature `cli`): the clock, root-key trust and merchant registration they share;
//! - [`swapping`] (feature `cli`): swaps over HTTP in bulk (the swap phase of `scrip load`).
//!
//! A wallet or point-of-sale vendor who wants only the client builds with
//! `default-features = false, features = ["client"]`: no warp, no hyper server, no clap.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub use scrip_interop as interop;
pub use scrip_issuer as issuer;
pub use scrip_merchant as merchant;
pub use scrip_stores as stores;
pub use scrip_tokens as tokens;
pub use scrip_wallet as wallet;

#[cfg(feature = "client")]
pub use scrip_api as api;
#[cfg(feature = "client")]
pub use scrip_api::client;

#[cfg(feature = "cli")]
pub mod demo;
#[cfg(feature = "cli")]
mod error;
#[cfg(feature = "cli")]
pub mod load;
#[cfg(feature = "cli")]
pub mod setup;
#[cfg(feature = "cli")]
pub mod swapping;
#[cfg(feature = "cli")]
pub use error::Error;
