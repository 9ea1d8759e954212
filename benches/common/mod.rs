//! Shared set-up of the `signing` and `redemption` benchmarks: the test kit's issuer core
//! (`scrip-testkit`) over fixture keys and any record store, with its paying device
//! (`RawWallet`) and merchant (`Shop`) building the signed messages a real wallet or point of
//! sale would send, plus criterion timing. Everything happens at the fixture time `NOW`
//! (the keys are valid for half a year either side of it).

#![allow(dead_code)]

use std::time::Duration;

use std::sync::Arc;

use criterion::{BenchmarkGroup, SamplingMode};
use scrip_stores::{FileStore, MemoryStore, RecordStore, RedbStore};
// `issuer` below shadows the kit's, which takes the validity as an argument.
pub use scrip_testkit::*;

/// An issuer core over `store`, fixture keys valid for a year around `NOW`, default limits.
pub fn issuer<S: RecordStore>(store: S) -> TestIssuer<S> {
    scrip_testkit::issuer(store, validity_around(NOW, DAY * 180, DAY * 180))
}

/// `BENCH_QUICK=1` shortens every group (smoke runs).
pub fn quick() -> bool {
    std::env::var_os("BENCH_QUICK").is_some()
}

/// Timing for a group of fast, repeatable operations.
pub fn fast<M: criterion::measurement::Measurement>(group: &mut BenchmarkGroup<'_, M>) {
    if quick() {
        group
            .sample_size(10)
            .warm_up_time(Duration::from_millis(100))
            .measurement_time(Duration::from_millis(300));
    } else {
        group
            .sample_size(20)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2));
    }
}

/// Timing for a group whose every iteration needs fresh, prepared input (prepared outside
/// the measured time, but it costs wall time): flat sampling keeps the iteration count, and
/// so the preparation, close to what `measure` needs.
pub fn prepared<M: criterion::measurement::Measurement>(
    group: &mut BenchmarkGroup<'_, M>,
    measure: Duration,
) {
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(if quick() { 10 } else { 200 }))
        .measurement_time(if quick() { measure / 4 } else { measure });
}

/// Every backend, the durable ones in a fresh temporary directory (deleted on drop).
pub struct Backends {
    _dir: tempfile::TempDir,
    /// Each store, by name.
    pub stores: Vec<(&'static str, Arc<dyn RecordStore>)>,
}

/// Memory, file, redb and PostgreSQL stores, empty. PostgreSQL is a throwaway server this
/// process starts (fsync off: it measures the store's SQL and round trips, not the disk;
/// `SCRIP_PG_FSYNC=on` for durable figures), connected on `runtime`, whose tasks the
/// store's writer runs on, as a cluster server connects (system accounts striped).
pub fn backends(runtime: &tokio::runtime::Runtime) -> Backends {
    let dir = tempfile::tempdir().unwrap();
    let postgres = scrip_stores::conformance::PostgresHarness::new();
    let (postgres, _) = runtime
        .block_on(scrip::issuer::server::cluster::connect_database(
            postgres.url(),
            16,
        ))
        .unwrap();
    let stores: Vec<(&'static str, Arc<dyn RecordStore>)> = vec![
        ("memory", Arc::new(MemoryStore::new())),
        (
            "file",
            Arc::new(FileStore::open(dir.path().join("file")).unwrap()),
        ),
        (
            "redb",
            Arc::new(RedbStore::open(dir.path().join("scrip.redb")).unwrap()),
        ),
        ("postgres", postgres),
    ];
    Backends { _dir: dir, stores }
}
