//! scrip-interop: the wire-format description, golden test vectors, RFC 9474 vectors and
//! checks against independent implementations (OpenSSL, Python `cryptography`).
//!
//! Not built yet: see the interop and benchmarks issue.
