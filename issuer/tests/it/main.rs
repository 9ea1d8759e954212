//! The issuer's integration tests, one module per flow, in one test binary: each binary
//! links the whole issuer and instantiates its generic code for every store again, so twenty
//! binaries took most of CI's build. Run one flow with a filter:
//! `cargo test --release -p scrip-issuer --test it refunds::`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod backends;
mod binary;
mod certificates;
mod cluster_postgres;
mod coin_identity;
mod common;
mod conservation;
mod copies;
mod demo_funding;
mod flows;
mod keyring;
mod lost_device;
mod operator;
mod payouts;
mod records;
mod refunds;
mod registration;
mod revocation;
mod settlement;
mod swaps;
