//! The conformance suite, expanded for every backend.

mod memory {
    scrip_stores::store_conformance!(scrip_stores::conformance::MemoryHarness);
}

mod file {
    scrip_stores::store_conformance!(scrip_stores::conformance::FileHarness::new());
}

/// The file backend with a tiny compaction threshold, so snapshots and log switches happen
/// in the middle of every test.
mod file_compacting {
    scrip_stores::store_conformance!(scrip_stores::conformance::FileHarness::compacting_after(
        4096
    ));
}

mod redb {
    scrip_stores::store_conformance!(scrip_stores::conformance::RedbHarness::new());
}
