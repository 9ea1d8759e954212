//! Where deposited money comes from: a card charge, a bank transfer, a cash desk. The
//! issuer calls [`FundingSource::collect`] before crediting an account.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use scrip_tokens::{AccountId, Amount, DepositId};

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
