//! Prometheus text-format metrics: requests by route and status, redemptions by outcome,
//! store commit latency (a histogram measured around every commit).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use scrip_stores::{
    ClaimId, Collection, CommitOutcome, ExistingClaim, LedgerAccount, LedgerEntry, RecordStore,
    StoreStats, Unit,
};
use scrip_tokens::{Currency, RedemptionOutcome};

/// Upper bounds (seconds) of the commit latency histogram's buckets.
const LATENCY_BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// The server's counters.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, &'static str, u16), u64>>,
    redemptions: [AtomicU64; 4],
    /// Swaps answered `swapped` and `double_spent`; coins handed in and signed by swaps.
    swaps: [AtomicU64; 2],
    swap_coins_in: AtomicU64,
    swap_coins_out: AtomicU64,
    commit_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    commit_count: AtomicU64,
    commit_micros: AtomicU64,
    commit_units: AtomicU64,
    connections_refused: AtomicU64,
    bodies_refused: AtomicU64,
    cluster: ClusterMetrics,
}

/// What a server of a cluster reports about its place in it (rendered in cluster mode
/// only, so an embedded server's exposition is unchanged).
#[derive(Default)]
struct ClusterMetrics {
    enabled: AtomicBool,
    clock_skew_ms: AtomicI64,
    clock_skew_exceeded: AtomicU64,
    keyring_epoch: AtomicU64,
    keyring_reload_failures: AtomicU64,
    leader: AtomicBool,
}

const OUTCOMES: [&str; 4] = ["accepted", "already_accepted", "double_spent", "invalid"];

impl Metrics {
    /// Counts one answered request. `path` is normalized so ids do not explode the label
    /// set (`/v1/coins/<uuid>` becomes `/v1/coins/{id}`).
    pub fn request(&self, method: &str, path: &str, status: u16) {
        let route = normalize(path);
        let method: &'static str = match method {
            "GET" => "GET",
            "POST" => "POST",
            "PUT" => "PUT",
            "DELETE" => "DELETE",
            _ => "OTHER",
        };
        let mut map = match self.requests.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        // Unknown routes share one label, so probing cannot grow the map.
        let route = if status == 404 || map.len() > 512 {
            "unmatched".into()
        } else {
            route
        };
        *map.entry((route, method, status)).or_default() += 1;
    }

    /// Counts a connection refused at the connection cap.
    pub fn connection_refused(&self) {
        self.connections_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a request body refused because the body budget was full.
    pub fn body_refused(&self) {
        self.bodies_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Marks this server as one of a cluster serving keyring `epoch`.
    pub(crate) fn cluster_started(&self, epoch: u64) {
        self.cluster.enabled.store(true, Ordering::Relaxed);
        self.cluster.keyring_epoch.store(epoch, Ordering::Relaxed);
    }

    /// Records a measurement of this node's clock against the cluster's.
    pub(crate) fn cluster_clock(&self, skew_ms: i64, exceeded: bool) {
        self.cluster.clock_skew_ms.store(skew_ms, Ordering::Relaxed);
        if exceeded {
            self.cluster
                .clock_skew_exceeded
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records the keyring epoch now served.
    pub(crate) fn cluster_keyring(&self, epoch: u64) {
        self.cluster.keyring_epoch.store(epoch, Ordering::Relaxed);
    }

    /// Counts a published keyring this server could not load yet.
    pub(crate) fn cluster_keyring_reload_failed(&self) {
        self.cluster
            .keyring_reload_failures
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Records whether this server leads the periodic jobs (release, nonce pruning).
    pub(crate) fn cluster_leader(&self, leader: bool) {
        self.cluster.leader.store(leader, Ordering::Relaxed);
    }

    /// Counts the outcomes of a redemption report (or sync report).
    pub fn redemptions(&self, outcomes: &[RedemptionOutcome]) {
        for o in outcomes {
            let i = match o {
                RedemptionOutcome::Accepted { .. } => 0,
                RedemptionOutcome::AlreadyAccepted { .. } => 1,
                RedemptionOutcome::DoubleSpent { .. } => 2,
                RedemptionOutcome::Invalid { .. } => 3,
            };
            self.redemptions[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts one answered swap: swapped (`coins_in` claimed, `coins_out` signed) or
    /// double spent (nothing claimed or signed).
    pub fn swap(&self, swapped: bool, coins_in: usize, coins_out: usize) {
        if swapped {
            self.swaps[0].fetch_add(1, Ordering::Relaxed);
            self.swap_coins_in
                .fetch_add(coins_in as u64, Ordering::Relaxed);
            self.swap_coins_out
                .fetch_add(coins_out as u64, Ordering::Relaxed);
        } else {
            self.swaps[1].fetch_add(1, Ordering::Relaxed);
        }
    }

    fn commit(&self, started: Instant, units: usize) {
        let elapsed = started.elapsed();
        let secs = elapsed.as_secs_f64();
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            if secs <= *bound {
                self.commit_buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.commit_count.fetch_add(1, Ordering::Relaxed);
        self.commit_units.fetch_add(units as u64, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.commit_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self, store: &StoreStats) -> String {
        let mut out = String::new();
        out.push_str("# HELP scrip_http_requests_total HTTP requests answered.\n");
        out.push_str("# TYPE scrip_http_requests_total counter\n");
        let map = match self.requests.lock() {
            Ok(m) => m.clone(),
            Err(p) => p.into_inner().clone(),
        };
        for ((route, method, status), n) in &map {
            let _ = writeln!(
                out,
                "scrip_http_requests_total{{route=\"{}\",method=\"{method}\",status=\"{status}\"}} {n}",
                escape(route)
            );
        }
        let _ = writeln!(
            out,
            "# HELP scrip_http_connections_refused_total Connections refused at the connection cap.\n\
             # TYPE scrip_http_connections_refused_total counter\n\
             scrip_http_connections_refused_total {}",
            self.connections_refused.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP scrip_http_bodies_refused_total Request bodies refused because the body budget was full.\n\
             # TYPE scrip_http_bodies_refused_total counter\n\
             scrip_http_bodies_refused_total {}",
            self.bodies_refused.load(Ordering::Relaxed)
        );
        out.push_str("# HELP scrip_redemptions_total Redemption items answered, by outcome.\n");
        out.push_str("# TYPE scrip_redemptions_total counter\n");
        for (i, name) in OUTCOMES.iter().enumerate() {
            let n = self.redemptions[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "scrip_redemptions_total{{outcome=\"{name}\"}} {n}");
        }
        out.push_str("# HELP scrip_swaps_total Swaps answered, by outcome.\n");
        out.push_str("# TYPE scrip_swaps_total counter\n");
        for (i, name) in ["swapped", "double_spent"].iter().enumerate() {
            let n = self.swaps[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "scrip_swaps_total{{outcome=\"{name}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP scrip_swap_coins_total Coins handed in to (in) and signed by (out) swaps that were done.\n\
             # TYPE scrip_swap_coins_total counter\n\
             scrip_swap_coins_total{{direction=\"in\"}} {}\n\
             scrip_swap_coins_total{{direction=\"out\"}} {}",
            self.swap_coins_in.load(Ordering::Relaxed),
            self.swap_coins_out.load(Ordering::Relaxed)
        );
        out.push_str(
            "# HELP scrip_store_commit_seconds Latency of store commits (durable when they return).\n",
        );
        out.push_str("# TYPE scrip_store_commit_seconds histogram\n");
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            let n = self.commit_buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "scrip_store_commit_seconds_bucket{{le=\"{bound}\"}} {n}"
            );
        }
        let count = self.commit_count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "scrip_store_commit_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let sum = self.commit_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "scrip_store_commit_seconds_sum {sum}");
        let _ = writeln!(out, "scrip_store_commit_seconds_count {count}");
        out.push_str("# HELP scrip_store_units_total Units committed through the store.\n");
        out.push_str("# TYPE scrip_store_units_total counter\n");
        let units = self.commit_units.load(Ordering::Relaxed);
        let _ = writeln!(out, "scrip_store_units_total {units}");
        out.push_str(
            "# HELP scrip_store_batches_total Durable writes (fsyncs) the store made; units per batch shows group commit.\n",
        );
        out.push_str("# TYPE scrip_store_batches_total counter\n");
        let _ = writeln!(out, "scrip_store_batches_total {}", store.batches);
        if self.cluster.enabled.load(Ordering::Relaxed) {
            self.render_cluster(&mut out);
        }
        out
    }

    fn render_cluster(&self, out: &mut String) {
        let c = &self.cluster;
        let _ = writeln!(
            out,
            "# HELP scrip_cluster_clock_skew_seconds This node's clock minus the database server's, last measured.\n\
             # TYPE scrip_cluster_clock_skew_seconds gauge\n\
             scrip_cluster_clock_skew_seconds {}",
            c.clock_skew_ms.load(Ordering::Relaxed) as f64 / 1e3
        );
        let _ = writeln!(
            out,
            "# HELP scrip_cluster_clock_skew_exceeded_total Measurements of this node's clock beyond the allowed skew.\n\
             # TYPE scrip_cluster_clock_skew_exceeded_total counter\n\
             scrip_cluster_clock_skew_exceeded_total {}",
            c.clock_skew_exceeded.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP scrip_cluster_keyring_epoch The published keyring epoch this node serves.\n\
             # TYPE scrip_cluster_keyring_epoch gauge\n\
             scrip_cluster_keyring_epoch {}",
            c.keyring_epoch.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP scrip_cluster_keyring_reload_failures_total Polls that found a new published keyring this node could not load (keys not distributed yet).\n\
             # TYPE scrip_cluster_keyring_reload_failures_total counter\n\
             scrip_cluster_keyring_reload_failures_total {}",
            c.keyring_reload_failures.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP scrip_cluster_leader 1 while this node leads the release of expired certificates and nonce pruning.\n\
             # TYPE scrip_cluster_leader gauge\n\
             scrip_cluster_leader {}",
            u8::from(c.leader.load(Ordering::Relaxed))
        );
    }
}

fn normalize(path: &str) -> String {
    path.split('/')
        .map(|seg| {
            // UUIDs, and digests such as coin spend ids (64 hex digits).
            let digest = seg.len() == 64 && seg.bytes().all(|b| b.is_ascii_hexdigit());
            if digest || uuid::Uuid::parse_str(seg).is_ok() {
                "{id}"
            } else {
                seg
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "")
}

/// A store wrapper that times every commit into [`Metrics`].
pub struct MeteredStore<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S> MeteredStore<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, metrics: Arc<Metrics>) -> Self {
        MeteredStore { inner, metrics }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

#[async_trait]
impl<S: RecordStore> RecordStore for MeteredStore<S> {
    async fn commit(&self, unit: Unit) -> scrip_stores::Result<CommitOutcome> {
        let started = Instant::now();
        let out = self.inner.commit(unit).await;
        self.metrics.commit(started, 1);
        out
    }

    async fn commit_many(&self, units: Vec<Unit>) -> scrip_stores::Result<Vec<CommitOutcome>> {
        let started = Instant::now();
        let n = units.len();
        let out = self.inner.commit_many(units).await;
        self.metrics.commit(started, n);
        out
    }

    async fn claims(&self, ids: &[ClaimId]) -> scrip_stores::Result<Vec<Option<ExistingClaim>>> {
        self.inner.claims(ids).await
    }

    async fn balance(
        &self,
        account: &LedgerAccount,
        currency: Currency,
    ) -> scrip_stores::Result<i128> {
        self.inner.balance(account, currency).await
    }

    async fn balances(
        &self,
        after: Option<(LedgerAccount, Currency)>,
        limit: usize,
    ) -> scrip_stores::Result<Vec<(LedgerAccount, Currency, i128)>> {
        self.inner.balances(after, limit).await
    }

    async fn ledger_entries(
        &self,
        account: &LedgerAccount,
        currency: Currency,
        after_seq: Option<u64>,
        limit: usize,
    ) -> scrip_stores::Result<Vec<LedgerEntry>> {
        self.inner
            .ledger_entries(account, currency, after_seq, limit)
            .await
    }

    async fn get(
        &self,
        collection: Collection,
        key: &[u8],
    ) -> scrip_stores::Result<Option<Vec<u8>>> {
        self.inner.get(collection, key).await
    }

    async fn scan(
        &self,
        collection: Collection,
        after: Option<&[u8]>,
        limit: usize,
    ) -> scrip_stores::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.inner.scan(collection, after, limit).await
    }

    fn stats(&self) -> StoreStats {
        self.inner.stats()
    }

    async fn check_writable(&self) -> scrip_stores::Result<()> {
        self.inner.check_writable().await
    }

    async fn close(&self) -> scrip_stores::Result<()> {
        self.inner.close().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_in_paths_share_one_label() {
        assert_eq!(
            normalize("/v1/coins/6f1c2b1e-8f43-4c1a-9f7e-2d3b4a5c6d7e"),
            "/v1/coins/{id}"
        );
        assert_eq!(normalize("/v1/redemptions"), "/v1/redemptions");
    }

    #[test]
    fn rendering_shows_counted_requests_and_outcomes() {
        let m = Metrics::default();
        m.request("POST", "/v1/redemptions", 200);
        m.request("POST", "/v1/redemptions", 200);
        m.redemptions(&[RedemptionOutcome::AlreadyAccepted {
            first_accepted_at: scrip_tokens::Timestamp::from_unix_secs(1),
        }]);
        let text = m.render(&StoreStats::default());
        assert!(text.contains(
            "scrip_http_requests_total{route=\"/v1/redemptions\",method=\"POST\",status=\"200\"} 2"
        ));
        assert!(text.contains("scrip_redemptions_total{outcome=\"already_accepted\"} 1"));
        assert!(text.contains("scrip_store_commit_seconds_count 0"));
    }
}
