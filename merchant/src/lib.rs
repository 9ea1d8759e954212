#![doc = include_str!("../README.md")]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod error;
mod merchant;
mod refunds;
mod schema;
mod taking;
mod terminal;

use std::time::Duration;

use async_trait::async_trait;
use scrip_tokens::{
    Amount, MerchantStatement, MerchantStatementRequest, PayoutReceipt, PayoutRequest,
    RedemptionBatch, RedemptionOutcome, RedemptionReport, RevocationList, SignedKeyDirectory,
};

pub use error::{ClientError, MerchantError, Result};
pub use merchant::Merchant;
pub use schema::{CoinsTaken, OpenRequest, QueuedPayment, Settlement, TakingCoins};
pub use taking::TakeStatus;
pub use terminal::{item_origin, request_of, Acceptance, Decision, Lookups, Seen, Terminal};

/// How a merchant reaches the issuer when it is online. The HTTP client implements it for
/// real use; tests implement it over the issuer core in process.
#[async_trait]
pub trait IssuerClient: Send + Sync {
    /// The issuer's signed key directory.
    async fn key_directory(&self) -> Result<SignedKeyDirectory, ClientError>;
    /// Redeems a batch.
    async fn redeem(&self, batch: &RedemptionBatch) -> Result<RedemptionReport, ClientError>;
    /// The issuer's signed revocation list: the delta since version `since` (the version
    /// the terminal holds), or the full list for `None`.
    async fn revocations(&self, since: Option<u64>) -> Result<RevocationList, ClientError>;
    /// The merchant's statement. The default refuses (`unsupported`), for clients that
    /// only settle.
    async fn merchant_statement(
        &self,
        _request: &MerchantStatementRequest,
    ) -> Result<MerchantStatement, ClientError> {
        Err(unsupported("merchant statements"))
    }
    /// A payout to the merchant's bank. The default refuses (`unsupported`).
    async fn payout(&self, _request: &PayoutRequest) -> Result<PayoutReceipt, ClientError> {
        Err(unsupported("payouts"))
    }
    /// A swap of coin payments the merchant accepted for new coins
    /// ([`Merchant::take_coins`]). The default refuses (`unsupported`).
    async fn merchant_swap(
        &self,
        _request: &scrip_tokens::MerchantSwapRequest,
    ) -> Result<scrip_tokens::SwapReceipt, ClientError> {
        Err(unsupported("merchant swaps"))
    }
}

fn unsupported(what: &str) -> ClientError {
    ClientError::Refused {
        code: scrip_tokens::ReasonCode::Unsupported,
        message: format!("this issuer client does not offer {what}"),
    }
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
    /// The oldest revocation list this terminal accepts payments against (all its
    /// payments are offline): with a list missing or older, every payment is refused
    /// `revocation_list_stale`. Set it to at most the issuer's published grace
    /// ([`scrip_tokens::RevocationCache::grace`]): the issuer honours a payment from a
    /// device revoked after the list the merchant held only within that grace. `None`:
    /// no bound (the terminal still refuses what the list it holds names).
    pub max_revocation_list_age: Option<Duration>,
}

impl MerchantConfig {
    /// Up to `max_unsettled` unsettled, requests valid for 10 minutes, batches of 200.
    pub fn new(max_unsettled: Amount) -> Self {
        MerchantConfig {
            max_unsettled,
            request_lifetime: Duration::from_secs(600),
            batch_size: 200,
            max_revocation_list_age: None,
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
