//! Taking coin payments as coins: instead of uploading its accepted coin payments for
//! account credit, the merchant swaps them at the issuer for new blind coins that it keeps
//! in a wallet (`scrip_wallet::Wallet`) and pays other merchants with, offline.
//!
//! The flow, each step durable before the next:
//! 1. [`Merchant::coins_to_take`]: what the oldest queued coin payments (at most
//!    [`MAX_COINS_PER_SWAP`] coins) add up to;
//! 2. the wallet blinds new coins worth that (`Wallet::swap_outputs`), saved before release;
//! 3. [`Merchant::take_coins_request`]: signs a [`MerchantSwapRequest`] of those payments
//!    for those outputs and moves the payments from the queue to the pending take;
//! 4. the request goes to the issuer (`POST /v1/merchant-swaps`; after a lost answer the
//!    same request again, [`Merchant::pending_takes`]);
//! 5. [`Merchant::apply_take_receipt`] checks the signed receipt: swapped, the payments
//!    are settled as taken ([`Merchant::taken`]); double spent, the payments holding the
//!    coins named are settled `double_spent` (exactly as a redemption would have settled
//!    them) and the others go back to the queue. It returns the verified outcome;
//! 6. the wallet takes the outcome (`Wallet::on_merchant_swap`): the new coins.
//!
//! [`Merchant::take_coins`] does 3 to 5 with an [`IssuerClient`].
//!
//! The issuer checks the payments as for a redemption and claims their coins as a
//! redemption claims them (this merchant, each payment's digest): the customer sees the
//! payment settled, and uploading the same payment later is answered `already_accepted`
//! (the merchant was paid, in coins). While a take is pending its payments are out of the
//! queue, so a sync does not upload them.

use rand_core::CryptoRng;
use scrip_stores::{Posting, RecordStore, Unit, Write};
use scrip_tokens::{
    codec, Amount, ContentDigest, MerchantSwapRequest, MerchantSwapRequestPayload, RedemptionItem,
    RedemptionOutcome, SwapOutcome, SwapReceipt, SwapRequest, Timestamp, MAX_COINS_PER_SWAP,
};

use crate::schema::{
    headroom, queue_key, unsettled, CoinsTaken, QueuedPayment, Settlement, QUEUE, SETTLED,
    SETTLED_ONCE, TAKEN, TAKING,
};
use crate::terminal::item_origin;
use crate::{IssuerClient, Merchant, MerchantError, Result};

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

impl<S: RecordStore> Merchant<S> {
    /// The oldest queued coin payments, at most [`MAX_COINS_PER_SWAP`] coins together:
    /// what the next take takes.
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

    /// Signs the swap of the payments [`Self::coins_to_take`] named for `outputs` (the
    /// wallet's new coins, a [`SwapRequest`] with no coins, worth exactly their total), and
    /// moves the payments from the queue to the pending take: durable when this returns.
    /// Send the request; after a lost answer, send it again ([`Self::pending_takes`]).
    pub async fn take_coins_request<G: CryptoRng + ?Sized>(
        &self,
        outputs: &SwapRequest,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<MerchantSwapRequest> {
        let payments = self.payments_to_take().await?;
        let total = self
            .coins_to_take()
            .await?
            .ok_or(MerchantError::NothingToTake)?;
        let asked = outputs.output_total().map_err(MerchantError::Invalid)?;
        if !outputs.coins.is_empty() || asked != total.minor_units {
            return Err(scrip_tokens::Error::AmountMismatch {
                expected: total,
                found: Amount::new(asked, total.currency),
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
        let pending = crate::schema::TakingCoins {
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
        self.store().commit(unit).await?;
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
                codec::decode::<crate::schema::TakingCoins>(&v)
                    .map(|t| t.request)
                    .map_err(MerchantError::from)
            })
            .collect()
    }

    /// Applies the issuer's signed receipt for a take (see the module documentation) and
    /// returns its outcome, verified, for the wallet. A receipt that does not verify, or
    /// answers another request, changes nothing ([`MerchantError::UnverifiedAnswer`]).
    /// Safe to repeat: a take applied before answers `NothingToTake`.
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
        let pending: crate::schema::TakingCoins = codec::decode(&bytes)?;
        let mut unit = Unit::new(self.claimant(), now).write(Write::delete(TAKING, key.to_vec()));
        for payment in pending.payments {
            let qkey = key_of(&payment);
            unit = match &answer.outcome {
                SwapOutcome::Swapped { .. } => {
                    let amount = payment.amount;
                    let taken = CoinsTaken {
                        payment,
                        request_key: key,
                        taken_at: now,
                    };
                    settled_once(unit, &qkey, amount).write(Write::put(
                        TAKEN,
                        qkey.clone(),
                        codec::encode(&taken)?,
                    ))
                }
                SwapOutcome::DoubleSpent {
                    first_redeemed_at,
                    coins,
                } => {
                    let RedemptionItem::Coins(endorsed) = &payment.item else {
                        continue;
                    };
                    let spent: Vec<_> = endorsed
                        .payload
                        .payment
                        .coins
                        .iter()
                        .map(|c| c.id())
                        .filter(|id| coins.contains(id))
                        .collect();
                    if spent.is_empty() {
                        // Not claimed (all or nothing): back in the queue.
                        unit.write(Write::put(QUEUE, qkey, codec::encode(&payment)?))
                    } else {
                        let amount = payment.amount;
                        let settlement = Settlement {
                            payment,
                            outcome: RedemptionOutcome::DoubleSpent {
                                first_redeemed_at: *first_redeemed_at,
                                coins: spent,
                            },
                            settled_at: now,
                        };
                        settled_once(unit, &qkey, amount).write(Write::put(
                            SETTLED,
                            qkey.clone(),
                            codec::encode(&settlement)?,
                        ))
                    }
                }
            };
        }
        self.store().commit(unit).await?;
        Ok(answer.outcome.clone())
    }

    /// Gives up a take the issuer *refused* (an error answer, not a lost one: a lost one
    /// may have been done): its payments go back to the queue, to be uploaded or taken
    /// again.
    pub async fn cancel_take(&self, request: &MerchantSwapRequest, now: Timestamp) -> Result<()> {
        let key = request.payload.request_key;
        let Some(bytes) = self.store().get(TAKING, &key).await? else {
            return Err(MerchantError::NothingToTake);
        };
        let pending: crate::schema::TakingCoins = codec::decode(&bytes)?;
        let mut unit = Unit::new(self.claimant(), now).write(Write::delete(TAKING, key.to_vec()));
        for payment in pending.payments {
            let qkey = key_of(&payment);
            unit = unit.write(Write::put(QUEUE, qkey, codec::encode(&payment)?));
        }
        self.store().commit(unit).await?;
        Ok(())
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
    /// `outputs`, sends it (and every take still pending first), applies the receipt, and
    /// returns the verified outcome for the wallet. A transport failure leaves the take
    /// pending: call [`Self::resume_takes`] when online again.
    pub async fn take_coins<G: CryptoRng + ?Sized>(
        &self,
        issuer: &dyn IssuerClient,
        outputs: &SwapRequest,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<SwapOutcome> {
        let request = self.take_coins_request(outputs, now, rng).await?;
        let receipt = issuer.merchant_swap(&request).await?;
        self.apply_take_receipt(&request, &receipt, now).await
    }

    /// Sends every pending take again and applies the answers: the outcome of each, by
    /// request key, for the wallet.
    pub async fn resume_takes(
        &self,
        issuer: &dyn IssuerClient,
        now: Timestamp,
    ) -> Result<Vec<([u8; 32], SwapOutcome)>> {
        let mut outcomes = Vec::new();
        for request in self.pending_takes().await? {
            let receipt = issuer.merchant_swap(&request).await?;
            let outcome = self.apply_take_receipt(&request, &receipt, now).await?;
            outcomes.push((request.payload.request_key, outcome));
        }
        Ok(outcomes)
    }
}

/// `unit` settling the queued payment at `key` once (the unsettled total drops by
/// `amount`), as a redemption report's settlement does.
fn settled_once(unit: Unit, key: &[u8], amount: Amount) -> Unit {
    unit.claim(SETTLED_ONCE.claim(key.to_vec()), ContentDigest::of(key))
        .post(Posting::transfer(
            unsettled(),
            headroom(),
            amount,
            "settled",
        ))
}
