//! The conformance suite, expanded for every backend this build has.

mod memory {
    scrip_stores::store_conformance!(scrip_stores::conformance::MemoryHarness);
}

#[cfg(feature = "file")]
mod file {
    scrip_stores::store_conformance!(scrip_stores::conformance::FileHarness::new());
}

/// The file backend with a tiny compaction threshold, so snapshots and log switches happen
/// in the middle of every test.
#[cfg(feature = "file")]
mod file_compacting {
    scrip_stores::store_conformance!(scrip_stores::conformance::FileHarness::compacting_after(
        4096
    ));
}

#[cfg(feature = "redb")]
mod redb {
    scrip_stores::store_conformance!(scrip_stores::conformance::RedbHarness::new());
}

#[cfg(feature = "postgres")]
mod postgres {
    scrip_stores::store_conformance!(scrip_stores::conformance::PostgresHarness::new());
}

/// The suite again, with every account it posts to repeatedly striped: balances, floors and
/// ledgers (seq, balance_after, read right after commit) must not tell the difference.
#[cfg(feature = "postgres")]
mod postgres_striped {
    scrip_stores::store_conformance!(scrip_stores::conformance::PostgresHarness::striped_suite());
}
