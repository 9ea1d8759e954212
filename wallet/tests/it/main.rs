//! The wallet library's integration tests, one module per concern, in one test binary (each
//! binary linked the wallet, the issuer core and the test kit again). Run one with a filter:
//! `cargo test --release -p scrip-wallet --test it paying::`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod issuer_requests;
mod paying;
mod persistence;
mod recovery;
mod refunds;
mod swaps;
