//! scrip-stores: the persistence under the issuer, so that the same coin or withdrawal
//! record can never be redeemed twice.
//!
//! One async `RecordStore` trait with memory, file and redb backends and a shared
//! conformance suite. Not built yet: see the stores issue.
