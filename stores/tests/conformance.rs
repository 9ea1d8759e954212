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

/// The redb backend with a tiny claims index: the log is written out as a run every three
/// claims, and two runs of a level merge two claims per step, so lookups in the middle of
/// every test cross the log, several runs and a compaction under way.
#[cfg(feature = "redb")]
mod redb_small_runs {
    scrip_stores::store_conformance!(scrip_stores::conformance::RedbHarness::with_limits(
        scrip_stores::ClaimsIndexLimits {
            log_max: 3,
            fan_in: 2,
            chunk: 2,
        }
    ));
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
