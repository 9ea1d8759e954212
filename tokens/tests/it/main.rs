//! The token crate's integration tests, one module per concern, in one test binary. Run one
//! with a filter: `cargo test --release -p scrip-tokens --test it codec::`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod backends;
mod blind_coins;
mod codec;
mod common;
mod keys;
mod signatures;
