#![doc = include_str!("../README.md")]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod error;
mod merchant;
mod refunds;
mod schema;
mod terminal;

use std::time::Duration;

use async_trait::async_trait;
use scrip_tokens::{
    Amount, RedemptionBatch, RedemptionOutcome, RedemptionReport, SignedKeyDirectory,
};

pub use error::{ClientError, MerchantError, Result};
pub use merchant::Merchant;
pub use schema::{OpenRequest, QueuedPayment, Settlement};
pub use terminal::{item_origin, request_of, Acceptance, Decision, Lookups, Seen, Terminal};

/// How a merchant reaches the issuer when it is online. The HTTP client implements it for
/// real use; tests implement it over the issuer core in process.
#[async_trait]
pub trait IssuerClient: Send + Sync {
    /// The issuer's signed key directory.
    async fn key_directory(&self) -> Result<SignedKeyDirectory, ClientError>;
    /// Redeems a batch.
    async fn redeem(&self, batch: &RedemptionBatch) -> Result<RedemptionReport, ClientError>;
}

/// Limits of a point of sale.
#[derive(Clone, Debug)]
pub struct MerchantConfig {
    /// The most that accepted, not yet settled payments may add up to (its currency is the
    /// only one the merchant takes). Accepting more is refused with `exposure_limit`.
    pub max_unsettled: Amount,
    /// How long a payment request stays payable.
    pub request_lifetime: Duration,
    /// Most items per upload batch.
    pub batch_size: usize,
}

impl MerchantConfig {
    /// Up to `max_unsettled` unsettled, requests valid for 10 minutes, batches of 200.
    pub fn new(max_unsettled: Amount) -> Self {
        MerchantConfig {
            max_unsettled,
            request_lifetime: Duration::from_secs(600),
            batch_size: 200,
        }
    }
}

/// Counts of what a sync settled.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncSummary {
    /// Credited now.
    pub accepted: usize,
    /// Credited before (an earlier, unacknowledged upload, or the customer's copy).
    pub already_accepted: usize,
    /// Refused: coins spent elsewhere first.
    pub double_spent: usize,
    /// Refused as invalid.
    pub invalid: usize,
}

impl SyncSummary {
    /// Counts one outcome.
    pub fn count(&mut self, outcome: &RedemptionOutcome) {
        match outcome {
            RedemptionOutcome::Accepted { .. } => self.accepted += 1,
            RedemptionOutcome::AlreadyAccepted { .. } => self.already_accepted += 1,
            RedemptionOutcome::DoubleSpent { .. } => self.double_spent += 1,
            RedemptionOutcome::Invalid { .. } => self.invalid += 1,
        }
    }

    /// Adds another summary's counts.
    pub fn add(&mut self, other: &SyncSummary) {
        self.accepted += other.accepted;
        self.already_accepted += other.already_accepted;
        self.double_spent += other.double_spent;
        self.invalid += other.invalid;
    }
}
