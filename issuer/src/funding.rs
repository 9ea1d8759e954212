//! Where deposited money comes from: a card charge, a bank transfer, a cash desk. The
//! issuer calls [`FundingSource::collect`] before crediting an account.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use scrip_stores::{Claimant, CommitOutcome, RecordStore, Unit};
use scrip_tokens::{AccountId, Amount, ContentDigest, DepositId, Timestamp};
use sha2::{Digest, Sha256};

/// Why collecting funds failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FundingError {
    /// The funding source refused (declined card, limit reached).
    #[error("declined: {0}")]
    Declined(String),
    /// The funding source could not be reached; retry later.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The same deposit id was presented with another account or amount.
    #[error("deposit id reused with different details")]
    Mismatch,
}

/// An external source of deposited money.
///
/// Contract: `collect` is idempotent per deposit id. The issuer may call it again for the
/// same deposit (a retry after a crash between collecting and crediting); the source must
/// not charge twice and must answer the same.
#[async_trait]
pub trait FundingSource: Send + Sync {
    /// Collects `amount` for `account` under `deposit`.
    async fn collect(
        &self,
        deposit: DepositId,
        account: AccountId,
        amount: Amount,
    ) -> Result<(), FundingError>;
}

/// A funding source for tests and demos: accepts every deposit up to an optional limit
/// per deposit, remembers each deposit once, and can report what it collected.
#[derive(Default)]
pub struct InMemoryFunding {
    limit_per_deposit: Option<u64>,
    collected: Mutex<HashMap<DepositId, (AccountId, Amount)>>,
}

impl InMemoryFunding {
    /// Accepts everything.
    pub fn new() -> Self {
        Self::default()
    }

    /// Declines deposits above `minor_units`.
    pub fn with_limit(minor_units: u64) -> Self {
        InMemoryFunding {
            limit_per_deposit: Some(minor_units),
            collected: Mutex::default(),
        }
    }

    /// Total collected in minor units (all currencies added; tests use one).
    pub fn total_collected(&self) -> u64 {
        self.collected
            .lock()
            .map(|c| c.values().map(|(_, a)| a.minor_units).sum())
            .unwrap_or(0)
    }
}

#[async_trait]
impl FundingSource for InMemoryFunding {
    async fn collect(
        &self,
        deposit: DepositId,
        account: AccountId,
        amount: Amount,
    ) -> Result<(), FundingError> {
        if self
            .limit_per_deposit
            .is_some_and(|l| amount.minor_units > l)
        {
            return Err(FundingError::Declined("above the demo limit".into()));
        }
        let mut collected = self
            .collected
            .lock()
            .map_err(|_| FundingError::Unavailable("poisoned".into()))?;
        match collected.get(&deposit) {
            Some(existing) if *existing == (account, amount) => Ok(()),
            Some(_) => Err(FundingError::Mismatch),
            None => {
                collected.insert(deposit, (account, amount));
                Ok(())
            }
        }
    }
}

/// The demo funding source of `scrip-server`: accepts every deposit, and records each one
/// it collected in the issuer's record store (a claim of the deposit id in the
/// `demo-funding` namespace), not in process memory. So the funding source answers the same
/// whichever process is asked and across restarts: the servers of a cluster collect a
/// deposit once, and a deposit id presented again with another account or amount is
/// refused ([`FundingError::Mismatch`]) by every one of them.
///
/// Still a demo: nothing is charged anywhere. A real deployment embeds the server with a
/// [`FundingSource`] over its payment provider.
pub struct RecordedDemoFunding<S> {
    store: S,
}

/// Domain separation of the digest a collected deposit is claimed with.
const DEMO_FUNDING_DIGEST_DOMAIN: &[u8] = b"scrip/issuer/demo-funding/v1";

impl<S: RecordStore> RecordedDemoFunding<S> {
    /// A demo funding source recording its deposits in `store` (the issuer's own store, or
    /// any store every process shares).
    pub fn new(store: S) -> Self {
        RecordedDemoFunding { store }
    }

    /// What one collection is claimed with: the deposit, its account and amount, so that
    /// the same deposit id with other details conflicts instead of repeating.
    fn digest(deposit: DepositId, account: AccountId, amount: Amount) -> ContentDigest {
        let mut h = Sha256::new();
        h.update(DEMO_FUNDING_DIGEST_DOMAIN);
        h.update(deposit.as_bytes());
        h.update(account.as_bytes());
        h.update(amount.currency.as_str().as_bytes());
        h.update(amount.minor_units.to_be_bytes());
        ContentDigest(h.finalize().into())
    }
}

#[async_trait]
impl<S: RecordStore> FundingSource for RecordedDemoFunding<S> {
    async fn collect(
        &self,
        deposit: DepositId,
        account: AccountId,
        amount: Amount,
    ) -> Result<(), FundingError> {
        // The claim's time is informational only (a repeat is recognised by claimant and
        // digest). `collect` takes no clock, so the demo source reads the wall clock.
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| Timestamp::from_unix_millis(u64::try_from(d.as_millis()).unwrap_or(0)))
            .unwrap_or(Timestamp::from_unix_millis(0));
        let unit = Unit::new(Claimant::Issuer, at).claim(
            crate::schema::DEMO_FUNDING.claim(deposit.as_bytes().to_vec()),
            Self::digest(deposit, account, amount),
        );
        match self.store.commit(unit).await {
            Ok(CommitOutcome::Committed | CommitOutcome::Repeated { .. }) => Ok(()),
            Ok(CommitOutcome::Conflict(_)) => Err(FundingError::Mismatch),
            Ok(other) => Err(FundingError::Unavailable(format!(
                "unexpected store outcome {other:?}"
            ))),
            Err(e) => Err(FundingError::Unavailable(format!(
                "the demo funding record could not be written: {e}"
            ))),
        }
    }
}

/// A shared funding source is a funding source (the server holds `Arc<dyn FundingSource>`).
#[async_trait]
impl<T: FundingSource + ?Sized> FundingSource for std::sync::Arc<T> {
    async fn collect(
        &self,
        deposit: DepositId,
        account: AccountId,
        amount: Amount,
    ) -> Result<(), FundingError> {
        (**self).collect(deposit, account, amount).await
    }
}
