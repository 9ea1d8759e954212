//! The merchant library's integration tests, one module per concern, in one test binary
//! (each binary linked the merchant, the issuer core and the test kit again). Run one with a
//! filter: `cargo test --release -p scrip-merchant --test it queue::`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod offline_payments;
mod payouts;
mod queue;
mod rejections;
mod revocation;
mod taking;
