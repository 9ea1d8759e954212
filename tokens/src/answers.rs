//! The issuer's answers that clients act on, signed by its answer key
//! ([`AnswerSigner`](crate::keys::AnswerSigner)): a merchant marks payments settled on a
//! [`RedemptionReport`], a wallet forgets the records it handed in on a [`SyncReport`],
//! and both read balances from a [`Statement`]. Anyone on the path could forge an
//! unsigned answer; a signed one also names the request it answers (by digest), so an
//! old answer cannot be replayed for a new request.

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::keys::AnswerSigner;
use crate::messages::{
    BalanceCertificateRequest, RedemptionBatch, RedemptionOutcome, StatementRequest, SyncRequest,
};
use crate::signed::signed_token;
use crate::{
    AccountId, ContentDigest, Currency, DeviceId, Error, KeyDirectory, MerchantId, Result,
    Timestamp,
};

/// The issuer's answer to a merchant's batch: one outcome per item, in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedemptionReportPayload {
    /// The merchant whose batch this answers.
    pub merchant_id: MerchantId,
    /// `codec::digest` of the signed batch it answers.
    pub batch_digest: ContentDigest,
    /// One per item of the batch.
    pub outcomes: Vec<RedemptionOutcome>,
    /// When the issuer answered.
    pub answered_at: Timestamp,
}

signed_token!(
    /// A [`RedemptionReportPayload`] signed by the issuer's answer key.
    RedemptionReport = RedemptionReportPayload,
    signer: AnswerSigner,
    tag: "redemption-report"
);

/// What the issuer did with a device's hand-ins: one outcome per record, in order, and
/// how many deposit confirmations it recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncReportPayload {
    /// The account.
    pub account_id: AccountId,
    /// The device whose request this answers.
    pub device_id: DeviceId,
    /// `codec::digest` of the signed sync request it answers.
    pub request_digest: ContentDigest,
    /// One per handed-in record.
    pub records: Vec<RedemptionOutcome>,
    /// Deposit confirmations recorded.
    pub confirmations_recorded: u32,
    /// When the issuer answered.
    pub answered_at: Timestamp,
}

signed_token!(
    /// A [`SyncReportPayload`] signed by the issuer's answer key.
    SyncReport = SyncReportPayload,
    signer: AnswerSigner,
    tag: "sync-report"
);

/// One ledger entry of a statement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatementEntry {
    /// Position in the account's ledger (pass as `after_seq` to page).
    pub seq: u64,
    /// When it was booked.
    pub at: Timestamp,
    /// Change in minor units (negative: money left the account).
    pub delta: i128,
    /// Balance after the entry.
    pub balance_after: i128,
    /// What it was (`deposit`, `withdrawal record`, `coins`, ...).
    pub memo: String,
}

/// An account's statement in one currency.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatementPayload {
    /// The account.
    pub account_id: AccountId,
    /// `codec::digest` of the signed statement request it answers.
    pub request_digest: ContentDigest,
    /// The currency.
    pub currency: Currency,
    /// Current balance in minor units (negative if the account owes money).
    pub balance: i128,
    /// Entries after the requested sequence number, oldest first.
    pub entries: Vec<StatementEntry>,
    /// When the issuer answered.
    pub answered_at: Timestamp,
}

signed_token!(
    /// A [`StatementPayload`] signed by the issuer's answer key.
    Statement = StatementPayload,
    signer: AnswerSigner,
    tag: "statement"
);

/// The answer names another request than the one it is checked against.
fn answers_another() -> Error {
    Error::InvalidField {
        field: "request_digest",
        reason: "the answer is for another request",
    }
}

impl RedemptionReport {
    /// Checks the issuer's signature under the answer key `directory` lists at `now`, and
    /// that the report answers `batch` (its digest, its merchant, one outcome per item).
    /// Act on the outcomes only after this.
    pub fn verify_for(
        &self,
        batch: &RedemptionBatch,
        directory: &KeyDirectory,
        now: Timestamp,
    ) -> Result<&RedemptionReportPayload> {
        let payload = self.verify_in(directory, now)?;
        if payload.merchant_id != batch.payload.merchant_id {
            return Err(Error::WrongMerchant);
        }
        if payload.batch_digest != codec::digest(batch)?
            || payload.outcomes.len() != batch.payload.items.len()
        {
            return Err(answers_another());
        }
        Ok(payload)
    }
}

impl SyncReport {
    /// Checks the issuer's signature under the answer key `directory` lists at `now`, and
    /// that the report answers `request` (its digest, its device, one outcome per record).
    pub fn verify_for(
        &self,
        request: &SyncRequest,
        directory: &KeyDirectory,
        now: Timestamp,
    ) -> Result<&SyncReportPayload> {
        let p = &request.payload;
        self.verify_hand_ins(
            (p.account_id, p.device_id),
            codec::digest(request)?,
            p.unsent_records.len(),
            directory,
            now,
        )
    }

    /// [`Self::verify_for`] for the report that answers the hand-ins of a balance
    /// certificate request (the same outcomes a sync would give; its `request_digest` is
    /// the certificate request's digest).
    pub fn verify_for_certificate_request(
        &self,
        request: &BalanceCertificateRequest,
        directory: &KeyDirectory,
        now: Timestamp,
    ) -> Result<&SyncReportPayload> {
        let p = &request.payload;
        self.verify_hand_ins(
            (p.account_id, p.device_id),
            codec::digest(request)?,
            p.unsent_records.len(),
            directory,
            now,
        )
    }

    fn verify_hand_ins(
        &self,
        (account_id, device_id): (AccountId, DeviceId),
        request_digest: ContentDigest,
        records: usize,
        directory: &KeyDirectory,
        now: Timestamp,
    ) -> Result<&SyncReportPayload> {
        let payload = self.verify_in(directory, now)?;
        if payload.account_id != account_id {
            return Err(Error::WrongAccount);
        }
        if payload.device_id != device_id {
            return Err(Error::WrongDevice);
        }
        if payload.request_digest != request_digest || payload.records.len() != records {
            return Err(answers_another());
        }
        Ok(payload)
    }
}

impl Statement {
    /// Checks the issuer's signature under the answer key `directory` lists at `now`, and
    /// that the statement answers `request` (its digest, its account and currency).
    pub fn verify_for(
        &self,
        request: &StatementRequest,
        directory: &KeyDirectory,
        now: Timestamp,
    ) -> Result<&StatementPayload> {
        let payload = self.verify_in(directory, now)?;
        if payload.account_id != request.payload.account_id {
            return Err(Error::WrongAccount);
        }
        if payload.request_digest != codec::digest(request)?
            || payload.currency != request.payload.currency
        {
            return Err(answers_another());
        }
        Ok(payload)
    }
}
