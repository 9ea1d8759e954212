//! Freshness of signed requests: a request must be created within the allowed clock skew
//! of the server's clock, not before the server started (the replay cache lives in
//! memory, so a restart must not reopen the window for requests captured earlier), and its
//! nonce must not have been seen in the window.

use std::collections::HashMap;
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

/// Most nonces remembered at once; beyond it new requests are refused (503) until old
/// ones leave the window, so a flood cannot exhaust memory.
const MAX_REMEMBERED: usize = 4_000_000;

/// The replay window and nonce cache.
pub struct ReplayGuard {
    skew: Duration,
    started: Timestamp,
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    expiry: HashMap<[u8; 32], Timestamp>,
    inserts_since_prune: usize,
}

impl ReplayGuard {
    /// A guard allowing `skew` either side of the clock, for a server started at `started`.
    pub fn new(skew: Duration, started: Timestamp) -> Self {
        ReplayGuard {
            skew,
            started,
            seen: Mutex::new(Seen::default()),
        }
    }

    /// Admits a request created at `created_at` with replay identity `id`, once.
    pub fn admit(&self, created_at: Timestamp, id: &[u8], now: Timestamp) -> Result<(), ApiError> {
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
        let key: [u8; 32] = Sha256::digest(id).into();
        let mut seen = match self.seen.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(expiry) = seen.expiry.get(&key) {
            if *expiry >= now {
                return Err(ApiError::replayed());
            }
        }
        seen.inserts_since_prune += 1;
        if seen.inserts_since_prune >= 10_000 || seen.expiry.len() >= MAX_REMEMBERED {
            seen.expiry.retain(|_, e| *e >= now);
            seen.inserts_since_prune = 0;
            if seen.expiry.len() >= MAX_REMEMBERED {
                return Err(ApiError::busy());
            }
        }
        // A request is refused as stale once `created_at + skew` has passed, so its nonce
        // can be forgotten then.
        seen.expiry
            .insert(key, created_at.saturating_add(self.skew));
        Ok(())
    }

    /// Forgets an admitted request that turned out not to be signed by whom it claims:
    /// a forgery must not use up the genuine request's nonce.
    pub fn forget(&self, id: &[u8]) {
        let key: [u8; 32] = Sha256::digest(id).into();
        let mut seen = match self.seen.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        seen.expiry.remove(&key);
    }
}

/// A signed request's creation time and replay identity.
pub trait Fresh {
    /// When the client created it.
    fn created_at(&self) -> Timestamp;
    /// What makes it unique: its type's tag, nonce and creation time, or for requests
    /// without a nonce its signature (PSS signatures are randomized). The same bytes
    /// twice are a replay; a retry signed again at a later time is not (the issuer's
    /// idempotency keys, which include the nonce, make it return the first answer).
    fn replay_id(&self) -> Vec<u8>;
}

macro_rules! fresh_by_nonce {
    ($($ty:ty),* $(,)?) => {$(
        impl Fresh for $ty {
            fn created_at(&self) -> Timestamp {
                self.payload.created_at
            }
            fn replay_id(&self) -> Vec<u8> {
                [
                    <$ty as Message>::TAG.as_bytes(),
                    &self.payload.nonce,
                    &self.payload.created_at.as_unix_millis().to_le_bytes(),
                ]
                .concat()
            }
        }
    )*};
}

fresh_by_nonce!(
    DeviceRegistration,
    MerchantRegistration,
    BalanceCertificateRequest,
    SyncRequest,
    BlindWithdrawalRequest,
    IdentifiedWithdrawalRequest,
    RedemptionBatch,
    StatementRequest,
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
        [
            DeviceEnrollment::TAG.as_bytes(),
            &self.approval.payload.nonce,
            &self
                .approval
                .payload
                .created_at
                .as_unix_millis()
                .to_le_bytes(),
        ]
        .concat()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Timestamp = Timestamp::from_unix_secs(1_000_000);

    #[test]
    fn a_nonce_is_admitted_once_within_the_window() {
        let guard = ReplayGuard::new(Duration::from_secs(60), T0);
        let now = T0.saturating_add(Duration::from_secs(10));
        assert!(guard.admit(now, b"a", now).is_ok());
        assert_eq!(guard.admit(now, b"a", now).unwrap_err().code, "replayed");
        assert!(guard.admit(now, b"b", now).is_ok());
        guard.forget(b"a");
        assert!(guard.admit(now, b"a", now).is_ok());
    }

    #[test]
    fn stale_future_and_pre_start_requests_are_refused() {
        let guard = ReplayGuard::new(Duration::from_secs(60), T0);
        let now = T0.saturating_add(Duration::from_secs(600));
        let old = now.saturating_sub(Duration::from_secs(61));
        let future = now.saturating_add(Duration::from_secs(61));
        assert_eq!(
            guard.admit(old, b"x", now).unwrap_err().code,
            "stale_request"
        );
        assert_eq!(
            guard.admit(future, b"y", now).unwrap_err().code,
            "stale_request"
        );
        let before_start = T0.saturating_sub(Duration::from_secs(1));
        assert_eq!(
            guard.admit(before_start, b"z", T0).unwrap_err().code,
            "stale_request"
        );
    }
}
