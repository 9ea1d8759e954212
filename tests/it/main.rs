//! The command line's and server's end-to-end tests, one module per concern, in one test
//! binary (each binary linked the whole server and client again). Tests that need a server
//! in a child process re-run this binary on one ignored test
//! (`data_dir::data_dir_server_child`, say). Run one concern with a filter:
//! `cargo test --release --test it storms::`. The flood tests, which time the server under
//! load, are a binary of their own (`tests/floods.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cli;
mod common;
mod crash_under_load;
mod data_dir;
mod e2e;
mod full_disk;
mod http_refusals;
mod storms;
mod two_servers;
