//! scrip-interop: the wire-format description (`interop/WIRE.md`), the golden test vectors
//! (`interop/vectors/`), the RFC 9474 test vectors run through scrip's own wrappers, and
//! checks of the vectors against independent implementations (OpenSSL and Python's
//! `cryptography`). Everything here is tests and data; the library is empty.
//!
//! - `cargo test -p scrip-interop --release --test vectors` regenerates every vector from
//!   the fixture keys and fails on any difference (`SCRIP_REGENERATE_VECTORS=1` rewrites
//!   the files after an intended format change: bump the type's version first).
//! - `cargo test -p scrip-interop --release --test independent` verifies every signature
//!   in the vectors with `openssl` and with `python3 interop/verify_vectors.py`.
//! - `cargo test -p scrip-interop --release --test docs` checks that the README's server
//!   section names every flag and environment variable of `scrip-server`.
