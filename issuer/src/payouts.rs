//! Paying merchants: their statement, and payouts of what the issuer owes them to their
//! banks through a [`PayoutSink`] (the counterpart of [`FundingSource`]).
//!
//! A payout is two units of double entry around one call of the sink:
//!
//! 1. **Take.** The merchant's signed request claims its payout id (`payout` claim, digest
//!    over id, merchant and amount), moves the amount `Merchant(m) → payouts-pending` under
//!    a floor at zero on the merchant (never more than the issuer owes it:
//!    `insufficient_funds`, nothing moves) and writes the [`PayoutDoc`], pending.
//! 2. **Pay.** The sink is asked to pay (idempotent by payout id: it may be asked again).
//! 3. **Settle.** Paid: `payouts-pending → paid-out` (money that left the system for a
//!    bank); declined: `payouts-pending → Merchant(m)` (given back). Either one once: the
//!    unit claims the payout's `payout-outcome`, and writes the doc's final state.
//!
//! If the sink cannot be reached, or the issuer stops between the units, the payout stays
//! pending: sending the same payout again (signed again; the claim stands for what the
//! payout is, not for when it was signed) finds the claim held by this very payout, skips
//! the take, and calls the sink and settles. The same id with another amount (or from
//! another merchant) is refused `payout_id_reused`.
//!
//! Revoked merchants can neither read their statement nor take payouts: a revoked key may
//! be a stolen one (what the issuer owes the merchant stays on its balance, and a payout
//! left pending at the revocation stays in `payouts-pending`, for the operator to settle
//! out of band).

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use scrip_api::MAX_STATEMENT_ENTRIES;
use scrip_stores::{
    Claimant, CommitOutcome, Floor, LedgerAccount, Posting, RecordStore, Unit, Write,
};
use scrip_tokens::{
    codec, Amount, MerchantId, MerchantStatementPayload, MerchantStatementRequest, PayoutId,
    PayoutReceiptPayload, PayoutRequest, PayoutState, StatementEntry, Timestamp,
    MAX_PAYOUT_REASON_LEN, MAX_PAYOUT_REFERENCE_LEN,
};

use crate::authentication::Authenticated;
use crate::schema::{
    paid_out_account, payouts_pending_account, PayoutDoc, PayoutProgress, PAYOUT, PAYOUTS,
    PAYOUT_OUTCOME,
};
use crate::{encode, FundingSource, Issuer, IssuerError, Result};

/// A payout the issuer asks its [`PayoutSink`] to make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payout {
    /// The payout, chosen by the merchant: the sink's idempotency key.
    pub payout_id: PayoutId,
    /// To whose bank account (the operator keeps it on file for the merchant).
    pub merchant_id: MerchantId,
    /// How much.
    pub amount: Amount,
}

/// The sink's word that a payout was made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PayoutConfirmation {
    /// The bank's reference of the transfer (at most
    /// [`MAX_PAYOUT_REFERENCE_LEN`](scrip_tokens::MAX_PAYOUT_REFERENCE_LEN) bytes), shown to
    /// the merchant in its receipt.
    pub reference: String,
}

/// Why a payout was not made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PayoutError {
    /// The bank refused it for good (closed account, compliance hold): the issuer gives
    /// the amount back to the merchant's balance.
    #[error("declined: {0}")]
    Declined(String),
    /// The bank could not be reached or did not answer: the payout stays pending and is
    /// asked for again when the merchant retries.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The sink knows this payout id with another merchant or amount (the issuer's and the
    /// sink's records disagree): the payout stays pending, for an operator to look at.
    #[error("payout id known to the sink with different details")]
    Mismatch,
}

/// Where payouts go: a bank transfer, a payment provider.
///
/// Contract: `pay` is idempotent per payout id. The issuer may call it again for the same
/// payout (a retry after the sink was unreachable, after a crash between paying and
/// recording, or two servers finishing the same payout at once); the sink must not pay
/// twice and must answer the same (the same reference, or the same decline).
#[async_trait]
pub trait PayoutSink: Send + Sync {
    /// Pays `payout` to the merchant's bank.
    async fn pay(&self, payout: &Payout) -> Result<PayoutConfirmation, PayoutError>;
}

/// A shared sink is a sink (the server holds `Arc<dyn PayoutSink>`).
#[async_trait]
impl<T: PayoutSink + ?Sized> PayoutSink for std::sync::Arc<T> {
    async fn pay(&self, payout: &Payout) -> Result<PayoutConfirmation, PayoutError> {
        (**self).pay(payout).await
    }
}

/// A payout sink for tests and demos: pays everything (up to an optional limit per
/// payout, above which it declines), once per payout id, and can be told to fail the
/// next calls as unreachable.
#[derive(Default)]
pub struct InMemoryPayouts {
    decline_above: Option<u64>,
    state: Mutex<SinkState>,
}

#[derive(Default)]
struct SinkState {
    paid: HashMap<PayoutId, (Payout, String)>,
    unavailable_next: usize,
    calls: usize,
}

impl InMemoryPayouts {
    /// Pays everything.
    pub fn new() -> Self {
        Self::default()
    }

    /// Declines payouts above `minor_units`.
    pub fn declining_above(minor_units: u64) -> Self {
        InMemoryPayouts {
            decline_above: Some(minor_units),
            state: Mutex::default(),
        }
    }

    /// The next `n` calls answer [`PayoutError::Unavailable`] (the bank is down).
    pub fn fail_next(&self, n: usize) {
        if let Ok(mut s) = self.state.lock() {
            s.unavailable_next = n;
        }
    }

    /// The payouts made, each once, with their references.
    pub fn paid(&self) -> Vec<(Payout, String)> {
        self.state
            .lock()
            .map(|s| s.paid.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Total paid in minor units (all currencies added; tests use one).
    pub fn total_paid(&self) -> u64 {
        self.paid().iter().map(|(p, _)| p.amount.minor_units).sum()
    }

    /// How many times `pay` was called (repeats included).
    pub fn calls(&self) -> usize {
        self.state.lock().map(|s| s.calls).unwrap_or(0)
    }
}

#[async_trait]
impl PayoutSink for InMemoryPayouts {
    async fn pay(&self, payout: &Payout) -> Result<PayoutConfirmation, PayoutError> {
        let mut state = self
            .state
            .lock()
            .map_err(|_| PayoutError::Unavailable("poisoned".into()))?;
        state.calls += 1;
        if state.unavailable_next > 0 {
            state.unavailable_next -= 1;
            return Err(PayoutError::Unavailable("the demo bank is down".into()));
        }
        if self
            .decline_above
            .is_some_and(|l| payout.amount.minor_units > l)
        {
            return Err(PayoutError::Declined("above the demo limit".into()));
        }
        match state.paid.get(&payout.payout_id) {
            Some((known, reference)) if known == payout => Ok(PayoutConfirmation {
                reference: reference.clone(),
            }),
            Some(_) => Err(PayoutError::Mismatch),
            None => {
                let reference = format!("demo-{}", payout.payout_id);
                state
                    .paid
                    .insert(payout.payout_id, (payout.clone(), reference.clone()));
                Ok(PayoutConfirmation { reference })
            }
        }
    }
}

/// What a payout id stands for (the digest its claim is made with).
#[derive(serde::Serialize, serde::Deserialize)]
struct PayoutIdentity {
    payout_id: PayoutId,
    merchant_id: MerchantId,
    amount: Amount,
}
impl scrip_tokens::Message for PayoutIdentity {
    const TAG: &'static str = "scrip/issuer/payout-identity/v1";
    const VERSION: u16 = 1;
}

/// How a payout ended, as its outcome claim's digest sees it (without times, so that two
/// servers finishing one payout with the sink's same answer make the same claim).
#[derive(serde::Serialize, serde::Deserialize)]
enum PayoutOutcome {
    Paid { reference: String },
    Declined { reason: String },
}
impl scrip_tokens::Message for PayoutOutcome {
    const TAG: &'static str = "scrip/issuer/payout-outcome/v1";
    const VERSION: u16 = 1;
}

/// `text` cut to at most `max` bytes at a character boundary.
fn bounded(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

impl<S: RecordStore, F: FundingSource> Issuer<S, F> {
    /// A merchant's statement request: verified against the merchant's key; a revoked
    /// merchant is refused. The answer is unsigned: [`Issuer::sign_answer`] signs it.
    pub async fn merchant_statement(
        &self,
        request: &MerchantStatementRequest,
        now: Timestamp,
    ) -> Result<MerchantStatementPayload> {
        let request = self.authenticate(request).await?;
        self.merchant_statement_authenticated(request, now).await
    }

    /// [`Self::merchant_statement`] for a request whose signature was checked.
    pub async fn merchant_statement_authenticated(
        &self,
        request: Authenticated<'_, MerchantStatementRequest>,
        now: Timestamp,
    ) -> Result<MerchantStatementPayload> {
        let request_digest = request.request_digest()?;
        let payload = &request.request().payload;
        self.check_merchant_unrevoked(payload.merchant_id).await?;
        let account = LedgerAccount::Merchant(payload.merchant_id);
        let limit = payload.limit.clamp(1, MAX_STATEMENT_ENTRIES) as usize;
        let entries = self
            .store()
            .ledger_entries(&account, payload.currency, payload.after_seq, limit)
            .await?;
        let balance = self.store().balance(&account, payload.currency).await?;
        Ok(MerchantStatementPayload {
            merchant_id: payload.merchant_id,
            request_digest,
            currency: payload.currency,
            balance,
            entries: entries
                .into_iter()
                .map(|e| StatementEntry {
                    seq: e.seq,
                    at: e.at,
                    delta: e.delta,
                    balance_after: e.balance_after,
                    memo: e.memo,
                })
                .collect(),
            answered_at: now,
        })
    }

    /// A merchant's payout: verified against the merchant's key, taken from its balance,
    /// paid through `sink`, settled (see the module docs). Idempotent by payout id. The
    /// answer is unsigned: [`Issuer::sign_answer`] signs it.
    ///
    /// Errors: `insufficient_funds` (more than the issuer owes the merchant; nothing
    /// moved), [`IssuerError::PayoutIdReused`], [`IssuerError::Payout`] with
    /// [`PayoutError::Unavailable`] (pending: send the same payout again).
    pub async fn payout<P: PayoutSink + ?Sized>(
        &self,
        request: &PayoutRequest,
        sink: &P,
        now: Timestamp,
    ) -> Result<PayoutReceiptPayload> {
        let request = self.authenticate(request).await?;
        self.payout_authenticated(request, sink, now).await
    }

    /// [`Self::payout`] for a request whose signature was checked.
    pub async fn payout_authenticated<P: PayoutSink + ?Sized>(
        &self,
        request: Authenticated<'_, PayoutRequest>,
        sink: &P,
        now: Timestamp,
    ) -> Result<PayoutReceiptPayload> {
        let request_digest = request.request_digest()?;
        let payload = &request.request().payload;
        let doc = self.take_payout(request, now).await?;
        let doc = self.finish_payout(doc, sink, now).await?;
        match doc.progress {
            PayoutProgress::Done(state) => Ok(PayoutReceiptPayload {
                merchant_id: payload.merchant_id,
                payout_id: payload.payout_id,
                request_digest,
                amount: payload.amount,
                state,
                answered_at: now,
            }),
            PayoutProgress::Pending => Err(IssuerError::Corrupted(
                "a payout finished without an outcome".into(),
            )),
        }
    }

    /// Step 1 of a payout: the merchant's balance to `payouts-pending`, once per payout
    /// id. Returns the payout as it stands (a retry finds it pending or done).
    pub async fn take_payout(
        &self,
        request: Authenticated<'_, PayoutRequest>,
        now: Timestamp,
    ) -> Result<PayoutDoc> {
        let payload = &request.request().payload;
        self.check_merchant_unrevoked(payload.merchant_id).await?;
        if payload.amount.is_zero() {
            return Err(IssuerError::Unsupported("a payout of zero"));
        }
        if !self.keys().currencies().contains(&payload.amount.currency) {
            return Err(IssuerError::Unsupported("currency not served"));
        }
        let claim = PAYOUT.claim(payload.payout_id.as_bytes().to_vec());
        let digest = codec::digest(&PayoutIdentity {
            payout_id: payload.payout_id,
            merchant_id: payload.merchant_id,
            amount: payload.amount,
        })?;
        let merchant = LedgerAccount::Merchant(payload.merchant_id);
        let doc = PayoutDoc {
            payout_id: payload.payout_id,
            merchant_id: payload.merchant_id,
            amount: payload.amount,
            requested_at: now,
            progress: PayoutProgress::Pending,
        };
        let memo = format!("payout {}", payload.payout_id);
        let unit = Unit::new(Claimant::Merchant(payload.merchant_id), now)
            .claim(claim.clone(), digest)
            .post(Posting::transfer(
                merchant.clone(),
                payouts_pending_account(),
                payload.amount,
                &memo,
            ))
            .floor(Floor::non_negative(merchant, payload.amount.currency))
            .write(Write::put(
                PAYOUTS,
                payload.payout_id.as_bytes().to_vec(),
                encode(&doc)?,
            ));
        match self.store().commit(unit).await? {
            CommitOutcome::Committed => Ok(doc),
            CommitOutcome::Repeated { .. } => self.payout_doc(payload.payout_id).await,
            CommitOutcome::Conflict(report) => {
                let held = report
                    .into_iter()
                    .find(|(id, _)| *id == claim)
                    .and_then(|(_, held)| held);
                match held {
                    // Taken by this very payout (another merchant's claim differs in
                    // claimant, so the store reports a conflict even for equal digests).
                    Some(held)
                        if held.digest == digest
                            && held.claimant == Claimant::Merchant(payload.merchant_id) =>
                    {
                        self.payout_doc(payload.payout_id).await
                    }
                    Some(_) => Err(IssuerError::PayoutIdReused(payload.payout_id)),
                    None => Err(IssuerError::Corrupted(
                        "a payout unit conflicted on no claim".into(),
                    )),
                }
            }
            CommitOutcome::InsufficientFunds { .. } => Err(IssuerError::InsufficientFunds {
                requested: payload.amount,
            }),
        }
    }

    /// Steps 2 and 3 of a payout: asks `sink` to pay a pending payout and settles it
    /// (paid or declined), once. A payout already done is returned as it is.
    pub async fn finish_payout<P: PayoutSink + ?Sized>(
        &self,
        doc: PayoutDoc,
        sink: &P,
        now: Timestamp,
    ) -> Result<PayoutDoc> {
        if doc.progress != PayoutProgress::Pending {
            return Ok(doc);
        }
        let payout = Payout {
            payout_id: doc.payout_id,
            merchant_id: doc.merchant_id,
            amount: doc.amount,
        };
        let (outcome, state, to, memo) = match sink.pay(&payout).await {
            Ok(confirmation) => {
                if confirmation.reference.len() > MAX_PAYOUT_REFERENCE_LEN {
                    return Err(IssuerError::Payout(PayoutError::Mismatch));
                }
                (
                    PayoutOutcome::Paid {
                        reference: confirmation.reference.clone(),
                    },
                    PayoutState::Paid {
                        reference: confirmation.reference,
                        paid_at: now,
                    },
                    paid_out_account(),
                    format!("payout {} paid", doc.payout_id),
                )
            }
            Err(PayoutError::Declined(reason)) => {
                let reason = bounded(&reason, MAX_PAYOUT_REASON_LEN);
                (
                    PayoutOutcome::Declined {
                        reason: reason.clone(),
                    },
                    PayoutState::Declined {
                        reason,
                        declined_at: now,
                    },
                    LedgerAccount::Merchant(doc.merchant_id),
                    format!("payout {} declined", doc.payout_id),
                )
            }
            // A concurrent copy may have settled it while this one's call failed to reach
            // the bank. Other errors (a sink that knows the payout otherwise) stand.
            Err(e @ PayoutError::Unavailable(_)) => {
                let now_stored = self.payout_doc(doc.payout_id).await?;
                return match now_stored.progress {
                    PayoutProgress::Done(_) => Ok(now_stored),
                    PayoutProgress::Pending => Err(IssuerError::Payout(e)),
                };
            }
            Err(e) => return Err(IssuerError::Payout(e)),
        };
        let done = PayoutDoc {
            progress: PayoutProgress::Done(state),
            ..doc
        };
        let unit = Unit::new(Claimant::Issuer, now)
            .claim(
                PAYOUT_OUTCOME.claim(done.payout_id.as_bytes().to_vec()),
                codec::digest(&outcome)?,
            )
            .post(Posting::transfer(
                payouts_pending_account(),
                to,
                done.amount,
                &memo,
            ))
            .write(Write::put(
                PAYOUTS,
                done.payout_id.as_bytes().to_vec(),
                encode(&done)?,
            ));
        match self.store().commit(unit).await? {
            CommitOutcome::Committed => Ok(done),
            // Finished by a concurrent retry (with the same or, from a sink that broke its
            // contract, another answer): the first settlement stands.
            CommitOutcome::Repeated { .. } | CommitOutcome::Conflict(_) => {
                self.payout_doc(done.payout_id).await
            }
            other @ CommitOutcome::InsufficientFunds { .. } => Err(
                crate::idempotency::impossible_outcome("payout settlement", &other),
            ),
        }
    }

    /// A payout as the issuer recorded it.
    pub async fn payout_doc(&self, payout_id: PayoutId) -> Result<PayoutDoc> {
        self.doc(PAYOUTS, payout_id.as_bytes())
            .await?
            .ok_or_else(|| {
                IssuerError::Corrupted(format!("payout {payout_id} claimed without its record"))
            })
    }

    /// Refuses a revoked merchant.
    async fn check_merchant_unrevoked(&self, merchant: MerchantId) -> Result<()> {
        match self.merchant_revoked(merchant).await? {
            Some(_) => Err(IssuerError::MerchantRevoked(merchant)),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_cut_at_a_character_boundary() {
        assert_eq!(bounded("abc", 5), "abc");
        assert_eq!(bounded("aé", 2), "a");
        assert_eq!(bounded("", 0), "");
    }

    #[test]
    fn a_claim_digest_is_the_payout_not_its_signature() {
        let identity = |minor| PayoutIdentity {
            payout_id: PayoutId(uuid::Uuid::from_u128(1)),
            merchant_id: MerchantId(uuid::Uuid::from_u128(2)),
            amount: Amount::new(minor, scrip_tokens::Currency::EUR),
        };
        assert_eq!(
            codec::digest(&identity(5)).unwrap(),
            codec::digest(&identity(5)).unwrap()
        );
        assert_ne!(
            codec::digest(&identity(5)).unwrap(),
            codec::digest(&identity(6)).unwrap()
        );
    }
}
