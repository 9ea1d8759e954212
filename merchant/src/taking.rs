//! Taking coin payments as coins: instead of uploading its accepted coin payments for
//! account credit, the merchant swaps them at the issuer for new blind coins that it keeps
//! in a wallet (`scrip_wallet::Wallet`) and pays other merchants with, offline.
//!
//! The flow, each step durable before the next:
//! 1. [`Merchant::coins_to_take`]: what the oldest queued coin payments (at most
//!    [`MAX_COINS_PER_SWAP`] coins) add up to;
//! 2. the wallet blinds new coins worth that (`Wallet::swap_outputs`), saved before release;
//! 3. [`Merchant::take_coins_request`]: signs a [`MerchantSwapRequest`] of the oldest queued
//!    coin payments adding up to exactly the outputs, and moves them from the queue to the
//!    pending take;
//! 4. the request goes to the issuer (`POST /v1/merchant-swaps`; after a lost answer the
//!    same request again, [`Merchant::pending_takes`]);
//! 5. [`Merchant::apply_take_receipt`] checks the signed receipt. Swapped: the payments
//!    are settled as taken ([`Merchant::taken`]). Double spent: every payment of the take
//!    goes back to the queue, and the next sync gives each its real outcome (the ones
//!    holding a spent coin `double_spent`, the others `accepted`). Either way the verified
//!    outcome is kept ([`Merchant::take_status`]) and returned for the wallet;
//! 6. the wallet takes the outcome (`Wallet::on_merchant_swap`): the new coins. After a
//!    crash before the wallet saved, [`Merchant::take_status`] gives the outcome again.
//!
//! [`Merchant::take_coins`] does 3 to 5 with an [`IssuerClient`]; a refusal (the issuer
//! never did the take) cancels it there and then ([`Merchant::cancel_take`]: the payments
//! go back to the queue; the wallet drops its outputs with `Wallet::cancel_swap`).
//!
//! The issuer checks the payments as for a redemption and claims their coins as a
//! redemption claims them (this merchant, each payment's digest): the customer sees the
//! payment settled, and uploading the same payment later is answered `already_accepted`
//! (the merchant was paid, in coins). While a take is pending its payments are out of the
//! queue, so a sync does not upload them; a payment a sync settled before the take reached
//! the issuer makes the issuer refuse the take (`already_redeemed`), and cancelling it
//! drops that payment rather than queueing it again.

use rand_core::CryptoRng;
use scrip_stores::{ClaimId, CommitOutcome, Posting, RecordStore, Unit, Write};
use scrip_tokens::{
    codec, Amount, ContentDigest, MerchantSwapRequest, MerchantSwapRequestPayload, ReasonCode,
    RedemptionItem, SwapOutcome, SwapReceipt, SwapRequest, Timestamp, MAX_COINS_PER_SWAP,
};

use crate::schema::{
    headroom, queue_key, unsettled, CoinsTaken, QueuedPayment, TakeEnd, TakingCoins, QUEUE,
    SETTLED_ONCE, TAKEN, TAKE_ENDS, TAKING,
};
use crate::terminal::item_origin;
use crate::{ClientError, IssuerClient, Merchant, MerchantError, Result};

/// Where a queued payment sits in the queue (and in the settlements).
fn key_of(payment: &QueuedPayment) -> Vec<u8> {
    let (request_id, accepted_at) = item_origin(&payment.item);
    queue_key(accepted_at, request_id)
}

/// The coins of a queued payment (none for a record).
fn coin_count(payment: &QueuedPayment) -> usize {
    match &payment.item {
        RedemptionItem::Coins(endorsed) => endorsed.payload.payment.coins.len(),
        RedemptionItem::Record(_) => 0,
    }
}

/// The claim that settles the queued payment at `key` once (shared with redemption).
fn settled_claim(key: &[u8]) -> ClaimId {
    SETTLED_ONCE.claim(key.to_vec())
}

/// Where a take stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TakeStatus {
    /// Sent (or about to be) and not answered yet: send it again.
    Pending(MerchantSwapRequest),
    /// Answered, the answer verified and applied: give the outcome to the wallet.
    Answered(SwapOutcome),
    /// Refused by the issuer and cancelled: the payments went back to the queue; the
    /// wallet drops its outputs (`Wallet::cancel_swap`).
    Cancelled,
}

/// Whether a refusal leaves a take undone for sure: everything but the codes of a
/// server that could not answer (busy, its store, a proxy's error, a code this version
/// does not know). The issuer answers a take it did from its store before checking
/// anything that could refuse it, so a refusal is never about a take it did.
fn refused_for_good(error: &MerchantError) -> bool {
    let MerchantError::Client(ClientError::Refused { code, .. }) = error else {
        return false;
    };
    !matches!(
        code,
        ReasonCode::Busy
            | ReasonCode::StoreError
            | ReasonCode::StoreUnwritable
            | ReasonCode::Contended
            | ReasonCode::KeyringError
            | ReasonCode::IoError
            | ReasonCode::CorruptedState
            | ReasonCode::HttpError
            | ReasonCode::RequestTimeout
            | ReasonCode::Unknown(_)
    )
}

impl<S: RecordStore> Merchant<S> {
    /// The oldest queued coin payments, at most [`MAX_COINS_PER_SWAP`] coins together, in
    /// queue order.
    async fn payments_to_take(&self) -> Result<Vec<QueuedPayment>> {
        let mut taken = Vec::new();
        let mut coins = 0;
        let mut after: Option<Vec<u8>> = None;
        'pages: loop {
            let page = self.store().scan(QUEUE, after.as_deref(), 256).await?;
            let Some((last, _)) = page.last() else {
                break;
            };
            after = Some(last.clone());
            for (_, bytes) in &page {
                let payment: QueuedPayment = codec::decode(bytes)?;
                let n = coin_count(&payment);
                if n == 0 {
                    continue;
                }
                if coins + n > MAX_COINS_PER_SWAP {
                    break 'pages;
                }
                coins += n;
                taken.push(payment);
            }
        }
        Ok(taken)
    }

    /// What the next [`Self::take_coins_request`] takes: the total of the oldest queued
    /// coin payments (at most [`MAX_COINS_PER_SWAP`] coins), or `None` if no coin payment
    /// is queued. The wallet blinds new coins worth exactly this.
    pub async fn coins_to_take(&self) -> Result<Option<Amount>> {
        let payments = self.payments_to_take().await?;
        let Some(first) = payments.first() else {
            return Ok(None);
        };
        let mut total = Amount::zero(first.amount.currency);
        for p in &payments {
            total = total.checked_add(p.amount)?;
        }
        Ok(Some(total))
    }

    /// Signs the swap of the oldest queued coin payments that add up to exactly `outputs`
    /// (the wallet's new coins: a [`SwapRequest`] with no coins, made for
    /// [`Self::coins_to_take`]'s total), and moves those payments from the queue to the
    /// pending take: durable when this returns. If the queue changed since (a sync settled
    /// some), the oldest payments may no longer add up to the outputs: `AmountMismatch`,
    /// nothing changed. Send the request; after a lost answer, send it again
    /// ([`Self::pending_takes`]).
    pub async fn take_coins_request<G: CryptoRng + ?Sized>(
        &self,
        outputs: &SwapRequest,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<MerchantSwapRequest> {
        let asked = outputs.output_total().map_err(MerchantError::Invalid)?;
        if !outputs.coins.is_empty() {
            return Err(MerchantError::Invalid(scrip_tokens::Error::InvalidField {
                field: "coins",
                reason: "the wallet's outputs for a take hand in no coins",
            }));
        }
        let candidates = self.payments_to_take().await?;
        let Some(first) = candidates.first() else {
            return Err(MerchantError::NothingToTake);
        };
        let currency = first.amount.currency;
        let mut payments = Vec::new();
        let mut total = 0u64;
        for payment in candidates {
            if total >= asked {
                break;
            }
            total = total
                .checked_add(payment.amount.minor_units)
                .ok_or(scrip_tokens::Error::AmountOverflow)?;
            payments.push(payment);
        }
        if total != asked {
            return Err(scrip_tokens::Error::AmountMismatch {
                expected: Amount::new(total, currency),
                found: Amount::new(asked, currency),
            }
            .into());
        }
        let payload = MerchantSwapRequestPayload {
            merchant_id: self.terminal().certificate().payload.merchant_id,
            request_key: outputs.request_key,
            payments: payments
                .iter()
                .filter_map(|p| match &p.item {
                    RedemptionItem::Coins(endorsed) => Some(endorsed.clone()),
                    RedemptionItem::Record(_) => None,
                })
                .collect(),
            keyset_id: outputs.keyset_id,
            outputs: outputs.outputs.clone(),
        };
        let request = self.terminal().sign_swap(payload, rng)?;
        let pending = TakingCoins {
            request: request.clone(),
            payments: payments.clone(),
        };
        let mut unit = Unit::new(self.claimant(), now).write(Write::put(
            TAKING,
            outputs.request_key.to_vec(),
            codec::encode(&pending)?,
        ));
        for p in &payments {
            unit = unit.write(Write::delete(QUEUE, key_of(p)));
        }
        self.commit_exactly(unit).await?;
        Ok(request)
    }

    /// The takes sent and not answered yet: after a lost answer or a restart, send each
    /// again, unchanged.
    pub async fn pending_takes(&self) -> Result<Vec<MerchantSwapRequest>> {
        self.store()
            .scan(TAKING, None, usize::MAX)
            .await?
            .into_iter()
            .map(|(_, v)| {
                codec::decode::<TakingCoins>(&v)
                    .map(|t| t.request)
                    .map_err(MerchantError::from)
            })
            .collect()
    }

    /// Where the take with `request_key` (the wallet's outputs' key) stands, or `None` if
    /// this terminal never made it.
    pub async fn take_status(&self, request_key: [u8; 32]) -> Result<Option<TakeStatus>> {
        if let Some(bytes) = self.store().get(TAKING, &request_key).await? {
            let pending: TakingCoins = codec::decode(&bytes)?;
            return Ok(Some(TakeStatus::Pending(pending.request)));
        }
        Ok(match self.store().get(TAKE_ENDS, &request_key).await? {
            Some(bytes) => Some(match codec::decode::<TakeEnd>(&bytes)?.outcome {
                Some(outcome) => TakeStatus::Answered(outcome),
                None => TakeStatus::Cancelled,
            }),
            None => None,
        })
    }

    /// Applies the issuer's signed receipt for a take (see the module documentation) and
    /// returns its outcome, verified, for the wallet. A receipt that does not verify, or
    /// answers another request, changes nothing ([`MerchantError::UnverifiedAnswer`]). A
    /// take applied or cancelled before answers `NothingToTake` ([`Self::take_status`]
    /// has its outcome).
    pub async fn apply_take_receipt(
        &self,
        request: &MerchantSwapRequest,
        receipt: &SwapReceipt,
        now: Timestamp,
    ) -> Result<SwapOutcome> {
        let (directory, _) = self.cached_directory().ok_or(MerchantError::NoDirectory)?;
        let answer = receipt
            .verify_for_merchant(request, &directory, now)
            .map_err(MerchantError::UnverifiedAnswer)?;
        let key = request.payload.request_key;
        let Some(bytes) = self.store().get(TAKING, &key).await? else {
            return Err(MerchantError::NothingToTake);
        };
        let pending: TakingCoins = codec::decode(&bytes)?;
        let end = TakeEnd {
            outcome: Some(answer.outcome.clone()),
            ended_at: now,
        };
        let mut unit = Unit::new(self.claimant(), now)
            .write(Write::delete(TAKING, key.to_vec()))
            .write(Write::put(TAKE_ENDS, key.to_vec(), codec::encode(&end)?));
        match &answer.outcome {
            SwapOutcome::Swapped { .. } => {
                let settled = self.settled_already(&pending.payments).await?;
                for (payment, settled) in pending.payments.into_iter().zip(settled) {
                    let qkey = key_of(&payment);
                    if settled {
                        continue;
                    }
                    let amount = payment.amount;
                    let taken = CoinsTaken {
                        payment,
                        request_key: key,
                        taken_at: now,
                    };
                    unit = unit
                        .claim(settled_claim(&qkey), ContentDigest::of(&qkey))
                        .post(Posting::transfer(unsettled(), headroom(), amount, "taken"))
                        .write(Write::put(TAKEN, qkey, codec::encode(&taken)?));
                }
            }
            // Nothing was claimed: every payment goes back to the queue, and the next sync
            // gives each its own outcome.
            SwapOutcome::DoubleSpent { .. } => {
                unit = self.requeue(unit, pending.payments).await?;
            }
        }
        self.commit_exactly(unit).await?;
        Ok(answer.outcome.clone())
    }

    /// Gives up a take the issuer *refused* (an error answer, not a lost one: a lost one
    /// may have been done): its payments go back to the queue, to be uploaded or taken
    /// again (those a sync settled meanwhile are dropped). [`Self::take_coins`] and
    /// [`Self::resume_takes`] do this themselves on a refusal.
    pub async fn cancel_take(&self, request: &MerchantSwapRequest, now: Timestamp) -> Result<()> {
        let key = request.payload.request_key;
        let Some(bytes) = self.store().get(TAKING, &key).await? else {
            return Err(MerchantError::NothingToTake);
        };
        let pending: TakingCoins = codec::decode(&bytes)?;
        let end = TakeEnd {
            outcome: None,
            ended_at: now,
        };
        let unit = Unit::new(self.claimant(), now)
            .write(Write::delete(TAKING, key.to_vec()))
            .write(Write::put(TAKE_ENDS, key.to_vec(), codec::encode(&end)?));
        let unit = self.requeue(unit, pending.payments).await?;
        self.commit_exactly(unit).await
    }

    /// Payments taken as coins so far, oldest first.
    pub async fn taken(&self, limit: usize) -> Result<Vec<CoinsTaken>> {
        self.store()
            .scan(TAKEN, None, limit)
            .await?
            .into_iter()
            .map(|(_, v)| codec::decode(&v).map_err(MerchantError::from))
            .collect()
    }

    /// Steps 3 to 5 of the module documentation with `issuer`: signs the take for
    /// `outputs`, sends it, applies the receipt, and returns the verified outcome for the
    /// wallet. A refusal cancels the take (payments back in the queue) and is returned;
    /// a transport failure leaves it pending: call [`Self::resume_takes`] when online
    /// again.
    pub async fn take_coins<G: CryptoRng + ?Sized>(
        &self,
        issuer: &dyn IssuerClient,
        outputs: &SwapRequest,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<SwapOutcome> {
        let request = self.take_coins_request(outputs, now, rng).await?;
        self.send_take(issuer, &request, now).await
    }

    /// Sends every pending take again and applies the answers: for each, by request key,
    /// its outcome for the wallet, or the error that left it pending (or cancelled it, on
    /// a refusal). One take failing does not stop the others.
    pub async fn resume_takes(
        &self,
        issuer: &dyn IssuerClient,
        now: Timestamp,
    ) -> Result<Vec<([u8; 32], Result<SwapOutcome>)>> {
        let mut outcomes = Vec::new();
        for request in self.pending_takes().await? {
            let outcome = self.send_take(issuer, &request, now).await;
            outcomes.push((request.payload.request_key, outcome));
        }
        Ok(outcomes)
    }

    async fn send_take(
        &self,
        issuer: &dyn IssuerClient,
        request: &MerchantSwapRequest,
        now: Timestamp,
    ) -> Result<SwapOutcome> {
        match issuer.merchant_swap(request).await {
            Ok(receipt) => self.apply_take_receipt(request, &receipt, now).await,
            Err(error) => {
                let error = MerchantError::from(error);
                if refused_for_good(&error) {
                    self.cancel_take(request, now).await?;
                }
                Err(error)
            }
        }
    }

    /// Whether each payment was settled already (its settlement claim is held).
    async fn settled_already(&self, payments: &[QueuedPayment]) -> Result<Vec<bool>> {
        let ids: Vec<ClaimId> = payments.iter().map(|p| settled_claim(&key_of(p))).collect();
        let held = self.store().claims(&ids).await?;
        if held.len() != ids.len() {
            return Err(MerchantError::Corrupted(
                "the store answered another number of claims".into(),
            ));
        }
        Ok(held.iter().map(Option::is_some).collect())
    }

    /// `unit` putting `payments` back in the queue, except those settled meanwhile.
    async fn requeue(&self, mut unit: Unit, payments: Vec<QueuedPayment>) -> Result<Unit> {
        let settled = self.settled_already(&payments).await?;
        for (payment, settled) in payments.into_iter().zip(settled) {
            if !settled {
                unit = unit.write(Write::put(
                    QUEUE,
                    key_of(&payment),
                    codec::encode(&payment)?,
                ));
            }
        }
        Ok(unit)
    }

    /// Commits `unit`, which must apply as a whole (anything else is a bug or a second
    /// process on this store).
    async fn commit_exactly(&self, unit: Unit) -> Result<()> {
        match self.store().commit(unit).await? {
            CommitOutcome::Committed => Ok(()),
            other => Err(MerchantError::Corrupted(format!(
                "a take's change did not apply: {other:?}"
            ))),
        }
    }
}
