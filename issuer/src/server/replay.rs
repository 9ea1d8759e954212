//! Freshness of signed requests: a request must be created within the allowed clock skew
//! of the server's clock, not before the server started (the replay cache lives in
//! memory, so a restart must not reopen the window for requests captured earlier), and its
//! nonce must not have been seen in the window.
//!
//! Only requests whose signature verified are remembered ([`AppState::admit`] checks the
//! time, then the signature, then the nonce), so a sender without a key cannot fill the
//! cache. Nonces are kept in buckets by the time they may be forgotten: a request's
//! replay identity fixes its `created_at`, hence its bucket, so a lookup touches one
//! bucket, and forgetting is dropping whole expired buckets (amortised O(1) per nonce,
//! and their memory goes back to the allocator as soon as a flood's window has passed).
//!
//! [`AppState::admit`]: super::AppState::admit

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use scrip_tokens::{
    BalanceCertificateRequest, BlindWithdrawalRequest, DepositConfirmation, DepositRequest,
    DeviceRegistration, IdentifiedWithdrawalRequest, MerchantRegistration, Message,
    RedemptionBatch, StatementRequest, SyncRequest, Timestamp,
};
use sha2::{Digest, Sha256};

use super::errors::ApiError;
use crate::api::DeviceEnrollment;

/// Most nonces remembered at once (about 40 bytes each, so at most ~160 MiB): beyond it,
/// new requests are refused (503 `busy`) until old ones leave the window. Only signed
/// requests are remembered, so reaching it takes ~6 600 signed requests per second
/// sustained over the default 10-minute window.
pub const MAX_REMEMBERED: usize = 4_000_000;

/// How many buckets the window (`2 x skew`: `created_at` may be up to `skew` in the
/// future, and is remembered until `skew` after it) is cut into. More buckets give memory
/// back sooner; a lookup touches one whatever the count.
const BUCKETS_PER_WINDOW: u64 = 16;

/// A remembered nonce: the first 128 bits of the SHA-256 of its replay identity.
type NonceKey = [u8; 16];

/// The replay window and nonce cache.
pub struct ReplayGuard {
    skew: Duration,
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
}

impl ReplayGuard {
    /// A guard allowing `skew` either side of the clock, for a server started at `started`.
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
            started,
            bucket_ms: (window_ms / BUCKETS_PER_WINDOW).max(1),
            max_remembered,
            seen: Mutex::new(Buckets::default()),
        }
    }

    /// Refuses a request created outside the window: before the server started, longer
    /// than the skew ago, or further than the skew in the future. Remembers nothing.
    pub fn check_time(&self, created_at: Timestamp, now: Timestamp) -> Result<(), ApiError> {
        if created_at < self.started {
            return Err(ApiError::stale(
                "the request was created before the server started; sign it again",
            ));
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
    /// remembers something of a request.
    pub fn admit(&self, created_at: Timestamp, id: &[u8], now: Timestamp) -> Result<(), ApiError> {
        self.check_time(created_at, now)?;
        let digest = Sha256::digest(id);
        let mut key = NonceKey::default();
        key.copy_from_slice(&digest[..16]);
        // A request is refused as stale once `created_at + skew` has passed, so its nonce
        // can be forgotten then; the same identity always has the same `created_at`.
        let forget_at = created_at.saturating_add(self.skew).as_unix_millis();
        let bucket = forget_at / self.bucket_ms;
        let mut expired = Vec::new();
        let outcome = {
            let mut seen = self.lock();
            self.take_expired(&mut seen, now, &mut expired);
            if seen
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

    /// Forgets every nonce that may be forgotten at `now` (the server calls this now and
    /// then, so that an idle server gives a flood's memory back too).
    pub fn prune(&self, now: Timestamp) {
        let mut expired = Vec::new();
        self.take_expired(&mut self.lock(), now, &mut expired);
        drop(expired);
    }

    /// How many nonces are remembered now.
    pub fn remembered(&self) -> usize {
        self.lock().len
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
);

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
    use scrip_tokens::ReasonCode;

    const T0: Timestamp = Timestamp::from_unix_secs(1_000_000);

    #[test]
    fn a_nonce_is_admitted_once_within_the_window() {
        let guard = ReplayGuard::new(Duration::from_secs(60), T0);
        let now = T0.saturating_add(Duration::from_secs(10));
        assert!(guard.admit(now, b"a", now).is_ok());
        assert_eq!(
            guard.admit(now, b"a", now).unwrap_err().code,
            ReasonCode::Replayed
        );
        let later = now.saturating_add(Duration::from_secs(59));
        assert_eq!(
            guard.admit(now, b"a", later).unwrap_err().code,
            ReasonCode::Replayed
        );
        assert!(guard.admit(now, b"b", now).is_ok());
        assert_eq!(guard.remembered(), 2);
    }

    #[test]
    fn stale_future_and_pre_start_requests_are_refused_and_not_remembered() {
        let guard = ReplayGuard::new(Duration::from_secs(60), T0);
        let now = T0.saturating_add(Duration::from_secs(600));
        let old = now.saturating_sub(Duration::from_secs(61));
        let future = now.saturating_add(Duration::from_secs(61));
        assert_eq!(
            guard.admit(old, b"x", now).unwrap_err().code,
            ReasonCode::StaleRequest
        );
        assert_eq!(
            guard.admit(future, b"y", now).unwrap_err().code,
            ReasonCode::StaleRequest
        );
        let before_start = T0.saturating_sub(Duration::from_secs(1));
        assert_eq!(
            guard.admit(before_start, b"z", T0).unwrap_err().code,
            ReasonCode::StaleRequest
        );
        assert_eq!(guard.remembered(), 0);
    }

    #[test]
    fn nonces_are_forgotten_in_whole_buckets_once_their_window_has_passed() {
        let skew = Duration::from_secs(60);
        let guard = ReplayGuard::new(skew, T0);
        let now = T0.saturating_add(Duration::from_secs(120));
        // A flood spread over the whole window: past, present and future-dated requests.
        for i in 0..30_000u32 {
            let offset = Duration::from_millis(u64::from(i) * 4);
            let created_at = now.saturating_sub(skew).saturating_add(offset);
            guard.admit(created_at, &i.to_le_bytes(), now).unwrap();
        }
        assert_eq!(guard.remembered(), 30_000);
        // Halfway through, the nonces of requests that are stale by now are gone.
        let halfway = now.saturating_add(skew);
        guard.admit(halfway, b"probe", halfway).unwrap();
        let left = guard.remembered();
        assert!(left < 30_000 && left > 1, "{left} remembered");
        // After the whole window nothing of the flood is held.
        let after = now
            .saturating_add(skew * 2)
            .saturating_add(Duration::from_secs(10));
        guard.admit(after, b"late", after).unwrap();
        assert_eq!(guard.remembered(), 1);
        assert_eq!(guard.seen.lock().unwrap().by_expiry.len(), 1);
    }

    #[test]
    fn a_full_cache_refuses_new_nonces_until_old_ones_expire() {
        let skew = Duration::from_secs(60);
        let guard = ReplayGuard::with_capacity(skew, T0, 3);
        let now = T0.saturating_add(Duration::from_secs(100));
        for id in [b"1", b"2", b"3"] {
            guard.admit(now, id, now).unwrap();
        }
        assert_eq!(
            guard.admit(now, b"4", now).unwrap_err().code,
            ReasonCode::Busy
        );
        assert_eq!(
            guard.admit(now, b"1", now).unwrap_err().code,
            ReasonCode::Replayed
        );
        let later = now.saturating_add(skew * 2);
        assert!(guard.admit(later, b"4", later).is_ok());
        assert_eq!(guard.remembered(), 1);
    }
}
