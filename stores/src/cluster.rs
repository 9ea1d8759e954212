//! What several issuer processes sharing one store must also share, beyond the records:
//! the nonces of signed requests already seen, which process runs a periodic job, which
//! keyring is current, and one clock to compare theirs with.
//!
//! [`crate::PostgresStore`] implements it (feature `postgres`); the embedded backends are
//! one process's alone and have no use for it.

use std::time::Duration;

use async_trait::async_trait;
use scrip_tokens::Timestamp;

use crate::Result;

/// The keyring every process of a cluster must serve: a counter the operator's `keys`
/// commands advance, and the fingerprint of the keyring's public half.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyringEpoch {
    /// 1 for the first keyring, +1 for each rotation.
    pub epoch: u64,
    /// SHA-256 over the keyring's public keys (see `scrip_issuer::Keyring::fingerprint`).
    pub fingerprint: [u8; 32],
}

/// Why publishing a keyring was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PublishOutcome {
    /// Published as this epoch (or it already was the current keyring: same epoch back).
    Current(KeyringEpoch),
    /// The cluster's current keyring is not `expected_previous`: another operator command
    /// ran in between, or the keys directory is not the one the cluster serves.
    Stale {
        /// What the cluster serves now.
        current: Option<KeyringEpoch>,
    },
}

/// State shared by every process of one issuer cluster.
#[async_trait]
pub trait ClusterState: Send + Sync {
    /// Remembers the replay identity `key` until `forget_at`; `true` if it was new,
    /// `false` if some process already remembered it (a replay).
    async fn remember_nonce(&self, key: [u8; 16], forget_at: Timestamp) -> Result<bool>;

    /// Forgets nonces whose `forget_at` is before `before`, at most `max_rows` of them
    /// (the oldest first, where the backend can tell); returns how many. Fewer than
    /// `max_rows` means that none is left due, apart from rows another process is
    /// forgetting at the same time. A backlog is forgotten by calling again: the caller
    /// bounds each call, so that a leader can stop pruning before its lease runs out.
    async fn forget_nonces(&self, before: Timestamp, max_rows: u64) -> Result<u64>;

    /// Takes or renews the lease on `job` for `holder` for `lease`, measured on the
    /// cluster's clock: `true` if `holder` holds it now. At most one holder at a time, as
    /// long as a holder finishes each round of the job within its lease.
    async fn try_lead(&self, job: &str, holder: uuid::Uuid, lease: Duration) -> Result<bool>;

    /// Gives up `holder`'s lease on `job`, if `holder` holds it (expired or not): the next
    /// [`try_lead`](Self::try_lead) of any holder takes it at once, instead of once the
    /// lease runs out. A lease another holder holds, or none, is left as it is (a holder
    /// whose lease expired and was taken over cannot take the job from its successor).
    /// A holder that stops calls it once it no longer runs the job; it must not run the
    /// job again without a new `try_lead`.
    async fn release_lead(&self, job: &str, holder: uuid::Uuid) -> Result<()>;

    /// The cluster's clock (the database server's).
    async fn cluster_now(&self) -> Result<Timestamp>;

    /// The keyring the cluster serves, if an operator published one.
    async fn keyring_epoch(&self) -> Result<Option<KeyringEpoch>>;

    /// Publishes `fingerprint` as the next epoch, if the current one is still
    /// `expected_previous` (`None`: no keyring published yet). Publishing the current
    /// fingerprint again is a no-op that answers the current epoch.
    async fn publish_keyring(
        &self,
        fingerprint: [u8; 32],
        expected_previous: Option<u64>,
    ) -> Result<PublishOutcome>;
}
