//! Freshness of signed requests: a request must be created within the allowed clock skew
//! of the server's clock, and its nonce must not have been seen in the window.
//!
//! Two places remember nonces, behind the one [`ReplayGuard`] the handlers use:
//!
//! - **In memory** (the embedded stores: one process is the whole issuer). The cache dies
//!   with the process, so a request created before the server started is refused too (a
//!   restart must not reopen the window for requests captured earlier). Nonces are kept in
//!   buckets by the time they may be forgotten: a request's replay identity fixes its
//!   `created_at`, hence its bucket, so a lookup touches one bucket, and forgetting is
//!   dropping whole expired buckets (amortised O(1) per nonce, and their memory goes back
//!   to the allocator as soon as a flood's window has passed).
//! - **Shared** (cluster mode): the cluster's nonce table ([`ClusterState::remember_nonce`]),
//!   so a request replayed to another server of the cluster is refused as well. The table
//!   survives restarts, so the "before the server started" rule is not needed; one leader
//!   forgets expired rows (see the server's release loop).
//!
//! Only requests whose signature verified are remembered ([`AppState::admit`] checks the
//! time, then the signature, then the nonce), so a sender without a key cannot fill either.
//!
//! [`AppState::admit`]: super::AppState::admit

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use scrip_stores::ClusterState;
use scrip_tokens::{
    BalanceCertificateRequest, BlindWithdrawalRequest, DepositConfirmation, DepositRequest,
    DeviceRegistration, DeviceSwapRequest, IdentifiedWithdrawalRequest, MerchantRegistration,
    MerchantStatementRequest, Message, PayoutRequest, RedemptionBatch, RefundRequest,
    StatementRequest, SyncRequest, Timestamp,
};
use sha2::{Digest, Sha256};

use super::errors::ApiError;
use crate::api::DeviceEnrollment;

/// Most nonces remembered at once in memory (about 40 bytes each, so at most ~160 MiB):
/// beyond it, new requests are refused (503 `busy`) until old ones leave the window. Only
/// signed requests are remembered, so reaching it takes ~6 600 signed requests per second
/// sustained over the default 10-minute window.
pub const MAX_REMEMBERED: usize = 4_000_000;

/// How many buckets the window (`2 x skew`: `created_at` may be up to `skew` in the
/// future, and is remembered until `skew` after it) is cut into. More buckets give memory
/// back sooner; a lookup touches one whatever the count.
const BUCKETS_PER_WINDOW: u64 = 16;

/// A remembered nonce: the first 128 bits of the SHA-256 of its replay identity.
type NonceKey = [u8; 16];

/// The replay window, and the nonces seen in it (in memory, or in the cluster's table).
pub struct ReplayGuard {
    skew: Duration,
    nonces: Nonces,
}

enum Nonces {
    Memory(MemoryNonces),
    Shared(Arc<dyn ClusterState>),
}

/// The in-memory nonce cache of one process.
struct MemoryNonces {
    started: Timestamp,
    bucket_ms: u64,
    max_remembered: usize,
    seen: Mutex<Buckets>,
}

/// Remembered nonces by the bucket of the time they may be forgotten.
#[derive(Default)]
struct Buckets {
    by_expiry: BTreeMap<u64, HashSet<NonceKey>>,
    len: usize,
    /// Every bucket ending at or before this (unix ms) was forgotten: a nonce that would
    /// go into one is refused as stale, even if the wall clock has since stepped back
    /// (the window check alone would admit it again then).
    forgotten_before_ms: u64,
}

impl ReplayGuard {
    /// An in-memory guard allowing `skew` either side of the clock, for a server started
    /// at `started`.
    pub fn new(skew: Duration, started: Timestamp) -> Self {
        Self::with_capacity(skew, started, MAX_REMEMBERED)
    }

    /// [`Self::new`] remembering at most `max_remembered` nonces.
    pub fn with_capacity(skew: Duration, started: Timestamp, max_remembered: usize) -> Self {
        let window_ms = u64::try_from(skew.as_millis())
            .unwrap_or(u64::MAX)
            .saturating_mul(2);
        ReplayGuard {
            skew,
            nonces: Nonces::Memory(MemoryNonces {
                started,
                bucket_ms: (window_ms / BUCKETS_PER_WINDOW).max(1),
                max_remembered,
                seen: Mutex::new(Buckets::default()),
            }),
        }
    }

    /// A guard allowing `skew` either side of the clock whose nonces are the cluster's:
    /// a nonce any server of the cluster admitted is a replay on every other.
    pub fn shared(skew: Duration, cluster: Arc<dyn ClusterState>) -> Self {
        ReplayGuard {
            skew,
            nonces: Nonces::Shared(cluster),
        }
    }

    /// Whether the nonces are the cluster's (not this process's).
    pub fn is_shared(&self) -> bool {
        matches!(self.nonces, Nonces::Shared(_))
    }

    /// The allowed clock skew (a nonce is remembered until `created_at` plus it).
    pub fn skew(&self) -> Duration {
        self.skew
    }

    /// Refuses a request created outside the window: longer than the skew ago, further
    /// than the skew in the future, or (in-memory cache only) before the server started.
    /// Remembers nothing.
    pub fn check_time(&self, created_at: Timestamp, now: Timestamp) -> Result<(), ApiError> {
        if let Nonces::Memory(memory) = &self.nonces {
            if created_at < memory.started {
                return Err(ApiError::stale(
                    "the request was created before the server started; sign it again",
                ));
            }
        }
        if created_at < now.saturating_sub(self.skew) {
            return Err(ApiError::stale(
                "the request is older than the allowed clock skew; sign it again",
            ));
        }
        if created_at > now.saturating_add(self.skew) {
            return Err(ApiError::stale(
                "the request is dated in the future beyond the allowed clock skew",
            ));
        }
        Ok(())
    }

    /// Admits a request created at `created_at` with replay identity `id`, once. Call it
    /// only for a request whose signature verified: this is the one place that
    /// remembers something of a request. In shared mode a database that cannot be reached
    /// is a 503 (`store_error`): the request was not admitted and may be sent again.
    pub async fn admit(
        &self,
        created_at: Timestamp,
        id: &[u8],
        now: Timestamp,
    ) -> Result<(), ApiError> {
        self.check_time(created_at, now)?;
        let digest = Sha256::digest(id);
        let mut key = NonceKey::default();
        key.copy_from_slice(&digest[..16]);
        // A request is refused as stale once `created_at + skew` has passed, so its nonce
        // can be forgotten then; the same identity always has the same `created_at`.
        let forget_at = created_at.saturating_add(self.skew);
        match &self.nonces {
            Nonces::Memory(memory) => memory.admit(key, forget_at, now),
            Nonces::Shared(cluster) => match cluster.remember_nonce(key, forget_at).await {
                Ok(true) => Ok(()),
                Ok(false) => Err(ApiError::replayed()),
                Err(e) => Err(ApiError::nonce_store_unavailable(&e)),
            },
        }
    }

    /// Forgets every in-memory nonce that may be forgotten at `now` (the server calls this
    /// now and then, so that an idle server gives a flood's memory back too). The shared
    /// table is pruned by the cluster's release leader instead.
    pub fn prune(&self, now: Timestamp) {
        if let Nonces::Memory(memory) = &self.nonces {
            let mut expired = Vec::new();
            memory.take_expired(&mut memory.lock(), now, &mut expired);
            drop(expired);
        }
    }

    /// How many nonces this process remembers in memory now (0 for a shared guard: its
    /// nonces are in the cluster's table).
    pub fn remembered(&self) -> usize {
        match &self.nonces {
            Nonces::Memory(memory) => memory.lock().len,
            Nonces::Shared(_) => 0,
        }
    }
}

impl MemoryNonces {
    fn admit(&self, key: NonceKey, forget_at: Timestamp, now: Timestamp) -> Result<(), ApiError> {
        let bucket = forget_at.as_unix_millis() / self.bucket_ms;
        let mut expired = Vec::new();
        let outcome = {
            let mut seen = self.lock();
            self.take_expired(&mut seen, now, &mut expired);
            if bucket.saturating_add(1).saturating_mul(self.bucket_ms) <= seen.forgotten_before_ms {
                Err(ApiError::stale(
                    "the request is older than the allowed clock skew; sign it again",
                ))
            } else if seen
                .by_expiry
                .get(&bucket)
                .is_some_and(|set| set.contains(&key))
            {
                Err(ApiError::replayed())
            } else if seen.len >= self.max_remembered {
                Err(ApiError::busy())
            } else {
                seen.by_expiry.entry(bucket).or_default().insert(key);
                seen.len += 1;
                Ok(())
            }
        };
        // Freed outside the lock (one deallocation per bucket: the keys need no drop).
        drop(expired);
        outcome
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Buckets> {
        match self.seen.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Moves the buckets whose every nonce may be forgotten at `now` (all of them end
    /// before it) into `expired`, to be freed once the lock is released.
    fn take_expired(
        &self,
        seen: &mut Buckets,
        now: Timestamp,
        expired: &mut Vec<HashSet<NonceKey>>,
    ) {
        let now_ms = now.as_unix_millis();
        while let Some(first) = seen.by_expiry.first_entry() {
            if first.key().saturating_add(1).saturating_mul(self.bucket_ms) > now_ms {
                break;
            }
            let end = first.key().saturating_add(1).saturating_mul(self.bucket_ms);
            seen.forgotten_before_ms = seen.forgotten_before_ms.max(end);
            let set = first.remove();
            seen.len -= set.len();
            expired.push(set);
        }
    }
}

/// A signed request's creation time and replay identity.
pub trait Fresh {
    /// Whether the replay cache remembers it. Self-signed registrations are not
    /// remembered: anyone can make a key and sign one, and a replayed registration
    /// changes nothing (the key is registered once; the replay gets the same account or
    /// certificate back), so remembering them would only let strangers fill the cache.
    const REMEMBERED: bool = true;
    /// When the client created it.
    fn created_at(&self) -> Timestamp;
    /// What makes it unique: its type's tag, its signer, nonce and creation time, or for
    /// requests without a nonce its signature (PSS signatures are randomized). The same
    /// bytes twice are a replay; a retry signed again at a later time is not (the
    /// issuer's idempotency keys, which include the nonce, make it return the first
    /// answer). The signer is part of it so that someone who saw a request cannot use up
    /// its nonce with a copy signed by a key of their own.
    fn replay_id(&self) -> Vec<u8>;
}

macro_rules! fresh_by_nonce {
    ($($ty:ty => |$p:ident| $signer:expr $(, remembered: $remembered:literal)?);* $(;)?) => {$(
        impl Fresh for $ty {
            $(const REMEMBERED: bool = $remembered;)?
            fn created_at(&self) -> Timestamp {
                self.payload.created_at
            }
            fn replay_id(&self) -> Vec<u8> {
                let $p = &self.payload;
                [
                    <$ty as Message>::TAG.as_bytes(),
                    $signer,
                    &$p.nonce,
                    &$p.created_at.as_unix_millis().to_le_bytes(),
                ]
                .concat()
            }
        }
    )*};
}

fresh_by_nonce!(
    DeviceRegistration => |p| p.device_key.key_id().as_bytes(), remembered: false;
    MerchantRegistration => |p| p.merchant_key.key_id().as_bytes(), remembered: false;
    BalanceCertificateRequest => |p| p.device_id.as_bytes();
    SyncRequest => |p| p.device_id.as_bytes();
    BlindWithdrawalRequest => |p| p.device_id.as_bytes();
    IdentifiedWithdrawalRequest => |p| p.device_id.as_bytes();
    RedemptionBatch => |p| p.merchant_id.as_bytes();
    StatementRequest => |p| p.device_id.as_bytes();
    MerchantStatementRequest => |p| p.merchant_id.as_bytes();
    PayoutRequest => |p| p.merchant_id.as_bytes();
    RefundRequest => |p| p.merchant_id.as_bytes();
    DeviceSwapRequest => |p| p.device_id.as_bytes();
);

/// A received batch is the batch it holds.
impl Fresh for scrip_tokens::ReceivedBatch<'_> {
    fn created_at(&self) -> Timestamp {
        self.batch().created_at()
    }
    fn replay_id(&self) -> Vec<u8> {
        self.batch().replay_id()
    }
}

impl Fresh for DepositRequest {
    fn created_at(&self) -> Timestamp {
        self.payload.created_at
    }
    fn replay_id(&self) -> Vec<u8> {
        [DepositRequest::TAG.as_bytes(), self.signature.as_bytes()].concat()
    }
}

impl Fresh for DepositConfirmation {
    fn created_at(&self) -> Timestamp {
        self.payload.confirmed_at
    }
    fn replay_id(&self) -> Vec<u8> {
        [
            DepositConfirmation::TAG.as_bytes(),
            self.signature.as_bytes(),
        ]
        .concat()
    }
}

impl Fresh for DeviceEnrollment {
    fn created_at(&self) -> Timestamp {
        self.approval.payload.created_at
    }
    fn replay_id(&self) -> Vec<u8> {
        let approval = &self.approval.payload;
        [
            DeviceEnrollment::TAG.as_bytes(),
            approval.approving_device.as_bytes(),
            &approval.nonce,
            &approval.created_at.as_unix_millis().to_le_bytes(),
        ]
        .concat()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use scrip_stores::{KeyringEpoch, PublishOutcome, StoreError};
    use scrip_tokens::ReasonCode;
    use std::collections::HashMap;

    const T0: Timestamp = Timestamp::from_unix_secs(1_000_000);

    /// Once a nonce's bucket is forgotten, a wall clock stepped back (an NTP correction)
    /// puts its request inside the window again: it must still be a replay, not admitted.
    #[tokio::test]
    async fn a_forgotten_nonce_is_not_admitted_again_when_the_clock_steps_back() {
        let skew = Duration::from_secs(60);
        let guard = ReplayGuard::new(skew, T0);
        let created_at = T0.saturating_add(Duration::from_secs(10));
        guard.admit(created_at, b"n", created_at).await.unwrap();
        let later = created_at.saturating_add(skew * 3);
        guard.prune(later);
        assert_eq!(guard.remembered(), 0);
        let stepped_back = created_at.saturating_add(Duration::from_secs(5));
        assert_eq!(
            guard
                .admit(created_at, b"n", stepped_back)
                .await
                .unwrap_err()
                .code,
            ReasonCode::StaleRequest
        );
        // A request made after the step is admitted as usual.
        guard.admit(stepped_back, b"m", stepped_back).await.unwrap();
    }

    #[tokio::test]
    async fn a_nonce_is_admitted_once_within_the_window() {
        let guard = ReplayGuard::new(Duration::from_secs(60), T0);
        let now = T0.saturating_add(Duration::from_secs(10));
        assert!(guard.admit(now, b"a", now).await.is_ok());
        assert_eq!(
            guard.admit(now, b"a", now).await.unwrap_err().code,
            ReasonCode::Replayed
        );
        let later = now.saturating_add(Duration::from_secs(59));
        assert_eq!(
            guard.admit(now, b"a", later).await.unwrap_err().code,
            ReasonCode::Replayed
        );
        assert!(guard.admit(now, b"b", now).await.is_ok());
        assert_eq!(guard.remembered(), 2);
    }

    #[tokio::test]
    async fn stale_future_and_pre_start_requests_are_refused_and_not_remembered() {
        let guard = ReplayGuard::new(Duration::from_secs(60), T0);
        let now = T0.saturating_add(Duration::from_secs(600));
        let old = now.saturating_sub(Duration::from_secs(61));
        let future = now.saturating_add(Duration::from_secs(61));
        assert_eq!(
            guard.admit(old, b"x", now).await.unwrap_err().code,
            ReasonCode::StaleRequest
        );
        assert_eq!(
            guard.admit(future, b"y", now).await.unwrap_err().code,
            ReasonCode::StaleRequest
        );
        let before_start = T0.saturating_sub(Duration::from_secs(1));
        assert_eq!(
            guard.admit(before_start, b"z", T0).await.unwrap_err().code,
            ReasonCode::StaleRequest
        );
        assert_eq!(guard.remembered(), 0);
    }

    #[tokio::test]
    async fn nonces_are_forgotten_in_whole_buckets_once_their_window_has_passed() {
        let skew = Duration::from_secs(60);
        let guard = ReplayGuard::new(skew, T0);
        let now = T0.saturating_add(Duration::from_secs(120));
        // A flood spread over the whole window: past, present and future-dated requests.
        for i in 0..30_000u32 {
            let offset = Duration::from_millis(u64::from(i) * 4);
            let created_at = now.saturating_sub(skew).saturating_add(offset);
            guard
                .admit(created_at, &i.to_le_bytes(), now)
                .await
                .unwrap();
        }
        assert_eq!(guard.remembered(), 30_000);
        // Halfway through, the nonces of requests that are stale by now are gone.
        let halfway = now.saturating_add(skew);
        guard.admit(halfway, b"probe", halfway).await.unwrap();
        let left = guard.remembered();
        assert!(left < 30_000 && left > 1, "{left} remembered");
        // After the whole window nothing of the flood is held.
        let after = now
            .saturating_add(skew * 2)
            .saturating_add(Duration::from_secs(10));
        guard.admit(after, b"late", after).await.unwrap();
        assert_eq!(guard.remembered(), 1);
        let Nonces::Memory(memory) = &guard.nonces else {
            panic!("an in-memory guard");
        };
        assert_eq!(memory.lock().by_expiry.len(), 1);
    }

    #[tokio::test]
    async fn a_full_cache_refuses_new_nonces_until_old_ones_expire() {
        let skew = Duration::from_secs(60);
        let guard = ReplayGuard::with_capacity(skew, T0, 3);
        let now = T0.saturating_add(Duration::from_secs(100));
        for id in [b"1", b"2", b"3"] {
            guard.admit(now, id, now).await.unwrap();
        }
        assert_eq!(
            guard.admit(now, b"4", now).await.unwrap_err().code,
            ReasonCode::Busy
        );
        assert_eq!(
            guard.admit(now, b"1", now).await.unwrap_err().code,
            ReasonCode::Replayed
        );
        let later = now.saturating_add(skew * 2);
        assert!(guard.admit(later, b"4", later).await.is_ok());
        assert_eq!(guard.remembered(), 1);
    }

    /// The nonce part of a cluster's shared state, in memory (the guard's logic only; the
    /// PostgreSQL table has its own tests in scrip-stores). `fail` makes every call fail,
    /// as an unreachable database does.
    #[derive(Default)]
    struct FakeNonceTable {
        rows: std::sync::Mutex<HashMap<[u8; 16], Timestamp>>,
        fail: std::sync::atomic::AtomicBool,
    }

    #[async_trait]
    impl ClusterState for FakeNonceTable {
        async fn remember_nonce(
            &self,
            key: [u8; 16],
            forget_at: Timestamp,
        ) -> scrip_stores::Result<bool> {
            if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(StoreError::Database {
                    sqlstate: None,
                    message: "connection refused".into(),
                });
            }
            let mut rows = self.rows.lock().unwrap();
            if rows.contains_key(&key) {
                return Ok(false);
            }
            rows.insert(key, forget_at);
            Ok(true)
        }
        async fn forget_nonces(
            &self,
            before: Timestamp,
            max_rows: u64,
        ) -> scrip_stores::Result<u64> {
            let mut rows = self.rows.lock().unwrap();
            let due: Vec<[u8; 16]> = rows
                .iter()
                .filter(|(_, at)| **at < before)
                .map(|(key, _)| *key)
                .take(usize::try_from(max_rows).unwrap_or(usize::MAX))
                .collect();
            for key in &due {
                rows.remove(key);
            }
            Ok(due.len() as u64)
        }
        async fn try_lead(
            &self,
            _job: &str,
            _holder: uuid::Uuid,
            _lease: Duration,
        ) -> scrip_stores::Result<bool> {
            Ok(true)
        }
        async fn release_lead(&self, _job: &str, _holder: uuid::Uuid) -> scrip_stores::Result<()> {
            Ok(())
        }
        async fn cluster_now(&self) -> scrip_stores::Result<Timestamp> {
            Ok(T0)
        }
        async fn keyring_epoch(&self) -> scrip_stores::Result<Option<KeyringEpoch>> {
            Ok(None)
        }
        async fn publish_keyring(
            &self,
            _fingerprint: [u8; 32],
            _expected_previous: Option<u64>,
        ) -> scrip_stores::Result<PublishOutcome> {
            Ok(PublishOutcome::Stale { current: None })
        }
    }

    #[tokio::test]
    async fn a_nonce_admitted_by_one_server_is_a_replay_on_every_other() {
        let table = Arc::new(FakeNonceTable::default());
        let skew = Duration::from_secs(60);
        let a = ReplayGuard::shared(skew, table.clone());
        let b = ReplayGuard::shared(skew, table.clone());
        let now = T0.saturating_add(Duration::from_secs(10));
        a.admit(now, b"n", now).await.unwrap();
        assert_eq!(
            b.admit(now, b"n", now).await.unwrap_err().code,
            ReasonCode::Replayed
        );
        assert_eq!(
            a.admit(now, b"n", now).await.unwrap_err().code,
            ReasonCode::Replayed
        );
        b.admit(now, b"other", now).await.unwrap();
        // Remembered until the request is stale everywhere, with the key derivation of the
        // in-memory cache: the first 16 bytes of SHA-256 of the replay identity.
        let rows = table.rows.lock().unwrap().clone();
        let mut key = [0u8; 16];
        key.copy_from_slice(&Sha256::digest(b"n")[..16]);
        assert_eq!(rows.get(&key), Some(&now.saturating_add(skew)));
        assert_eq!(rows.len(), 2);
        assert_eq!(a.remembered(), 0, "nothing is held in process memory");
    }

    #[tokio::test]
    async fn a_shared_guard_checks_time_before_remembering_but_not_the_start_time() {
        let table = Arc::new(FakeNonceTable::default());
        let skew = Duration::from_secs(60);
        let guard = ReplayGuard::shared(skew, table.clone());
        let now = T0.saturating_add(Duration::from_secs(600));
        for stale in [
            now.saturating_sub(Duration::from_secs(61)),
            now.saturating_add(Duration::from_secs(61)),
        ] {
            assert_eq!(
                guard.admit(stale, b"x", now).await.unwrap_err().code,
                ReasonCode::StaleRequest
            );
        }
        assert!(
            table.rows.lock().unwrap().is_empty(),
            "stale requests are not remembered"
        );
        // The table outlives any one server: a request signed before this server
        // started is admitted (once), unlike with the in-memory cache.
        let just_started = ReplayGuard::shared(skew, table.clone());
        let signed_earlier = now.saturating_sub(Duration::from_secs(30));
        just_started.admit(signed_earlier, b"y", now).await.unwrap();
    }

    #[tokio::test]
    async fn an_unreachable_nonce_table_is_a_retryable_503_and_admits_nothing() {
        let table = Arc::new(FakeNonceTable::default());
        let guard = ReplayGuard::shared(Duration::from_secs(60), table.clone());
        let now = T0;
        table.fail.store(true, std::sync::atomic::Ordering::SeqCst);
        let refused = guard.admit(now, b"z", now).await.unwrap_err();
        assert_eq!(refused.status.as_u16(), 503);
        assert_eq!(refused.code, ReasonCode::StoreError);
        assert!(
            !refused.message.contains("connection refused"),
            "database details stay in the log: {}",
            refused.message
        );
        // Once the database answers again the same request is admitted: it was not
        // remembered by the failed attempt.
        table.fail.store(false, std::sync::atomic::Ordering::SeqCst);
        guard.admit(now, b"z", now).await.unwrap();
    }
}
