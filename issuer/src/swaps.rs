//! Swaps: valid coins in, new blind coins of the same total out (less the fee hook,
//! [`crate::IssuerConfig::swap_fee_per_coin`], zero by default), in one atomic unit.
//!
//! **One unit.** The unit that claims every coin handed in (under its spend id, claimant
//! [`Claimant::Holder`], digest of the whole request) also claims the request key and
//! stores the blind signatures under it. So the coins are spent exactly when the answer
//! exists: a crash before the commit leaves the coins unspent and nothing signed that
//! anyone received; after it, a retry of the same request reads the same signatures back
//! (`Repeated`), and nothing is ever signed twice for the same coins. Money: the old coins
//! leave `coins-outstanding` as the new ones enter it, so only the fee moves.
//!
//! **All or nothing.** One coin spent before (redeemed, revoked, swapped by another
//! request, or claimed by scrip 0.1 under its bare id) and nothing is claimed: the answer
//! is `DoubleSpent`, naming those coins and when the first was spent, as a redemption
//! would. The other coins stay good, and the holder swaps them again under a new key.
//!
//! **Unlinkable.** The request names no account, device or merchant, and carries no
//! nonce or time: only the coins (whose spend ids only a holder can compute) authorise
//! it, and the outputs are blinded, so the issuer cannot link old and new coins beyond
//! "the same request". The request key is chosen at random by the holder.
//!
//! **A merchant's swap** ([`Issuer::merchant_swap`]): a merchant takes the coin payments it
//! accepted into its own purse. Its signed request carries the endorsed payments as a
//! redemption batch would; each is checked as for a redemption (endorsement, the
//! merchant's certification when it took the payment, the payment itself) and its coins
//! are claimed as a redemption claims them (the merchant as claimant, the payment's
//! digest), with the payment index a refund reads. So the customer's payment shows
//! settled, a later upload of the same payment is `already_accepted` (the merchant was
//! paid, in coins) and the coins are spent for everyone else. The merchant's account is
//! not credited: the new coins are its money. A revoked merchant's swap is refused.
//!
//! **Costs an unauthenticated sender can cause.** Shape and coin signatures are checked
//! before any read; a request whose coins were spent is answered from one read, before
//! any signing; blind signing (a millisecond per output) happens only for coins that are
//! valid and unspent, that is, for real money. Only identified coins' double spends are
//! written to the fraud log (they name a holder), once per set of coins.

use rand_core::CryptoRng;
use scrip_stores::{
    ClaimId, Claimant, CommitOutcome, ExistingClaim, Posting, RecordStore, Unit, Write,
};
use scrip_tokens::{
    codec, Amount, BlindWithdrawalResponse, BlindedMessage, Coin, CoinId, CoinSpendId,
    ContentDigest, KeysetId, MerchantSwapRequest, SwapOutcome, SwapReceiptPayload, SwapRequest,
    Timestamp,
};

use crate::authentication::Authenticated;
use crate::coins::{issuing_keyset, sign_blinded};
use crate::idempotency::{impossible_outcome, Answered, Idempotent};
use crate::redemption::{check_coin_payment, payment_index};
use crate::schema::{
    coins_outstanding_account, swap_fees_account, FraudEntry, FraudKind, MerchantDoc, PaidBy,
    MERCHANT_SWAP_RESPONSE, RESPONSES, SWAP_REQUEST, SWAP_RESPONSE,
};
use crate::{FundingSource, Issuer, IssuerError, Result};

/// One coin handed in: the coin, its spend id, and the digest it is claimed with.
struct HandedIn<'r> {
    coin: &'r Coin,
    spend_id: CoinSpendId,
    digest: ContentDigest,
}

/// A swap checked and ready to meet the store.
struct Plan<'r> {
    /// Who claims the coins (a bearer swap's holder, or the merchant).
    claimant: Claimant,
    coins: Vec<HandedIn<'r>>,
    keyset_id: KeysetId,
    outputs: &'r [(u64, BlindedMessage)],
    /// The request's own claim and where its answer is kept.
    idempotent: Idempotent,
    fee: Amount,
    /// Written with the claims (a merchant's payment index).
    writes: Vec<Write>,
}

/// A coin found spent, and when.
struct Spent {
    coin_id: CoinId,
    at: Timestamp,
}

fn double_spent(mut spent: Vec<Spent>, now: Timestamp) -> SwapOutcome {
    spent.sort_by_key(|s| s.at);
    SwapOutcome::DoubleSpent {
        first_redeemed_at: spent.first().map_or(now, |s| s.at),
        coins: spent.into_iter().map(|s| s.coin_id).collect(),
    }
}

fn swapped(answer: BlindWithdrawalResponse) -> SwapOutcome {
    SwapOutcome::Swapped {
        keyset_id: answer.keyset_id,
        signatures: answer.signatures,
    }
}

impl<S: RecordStore, F: FundingSource> Issuer<S, F> {
    /// Swaps the request's coins for blind signatures on its outputs (see the module
    /// documentation). Errors refuse the request as a whole with nothing claimed; a
    /// `DoubleSpent` outcome is an answer, also with nothing claimed. The answer is
    /// unsigned: [`Issuer::sign_answer`] signs it for the holder.
    pub async fn swap<G: CryptoRng + Send + ?Sized>(
        &self,
        request: &SwapRequest,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<SwapReceiptPayload> {
        let digest = codec::digest(request)?;
        let input = request.input_total()?;
        request.output_total()?;
        let fee = self.check_outputs(
            input,
            request.coins.len(),
            request.keyset_id,
            &request.outputs,
            now,
        )?;
        let directory = self.keys().directory(now)?;
        for coin in &request.coins {
            coin.verify(&directory, now)
                .map_err(|e| self.explain_unknown_keyset(e.into(), now))?;
        }
        let claim = SWAP_REQUEST.claim(request.request_key.to_vec());
        let plan = Plan {
            claimant: Claimant::Holder,
            coins: request
                .coins
                .iter()
                .map(|coin| {
                    Ok(HandedIn {
                        coin,
                        spend_id: coin.spend_id()?,
                        digest,
                    })
                })
                .collect::<Result<_>>()?,
            keyset_id: request.keyset_id,
            outputs: &request.outputs,
            idempotent: Idempotent {
                answer_key: SWAP_RESPONSE.key(&claim.key_bytes()),
                claim,
                digest,
                answers: RESPONSES,
            },
            fee,
            writes: Vec::new(),
        };
        let outcome = self.execute(plan, now, rng).await?;
        Ok(SwapReceiptPayload {
            request_digest: digest,
            outcome,
            answered_at: now,
        })
    }

    /// A merchant's swap of the coin payments it accepted (see the module documentation):
    /// verifies the merchant's signature first.
    pub async fn merchant_swap<G: CryptoRng + Send + ?Sized>(
        &self,
        request: &MerchantSwapRequest,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<SwapReceiptPayload> {
        let request = self.authenticate(request).await?;
        self.merchant_swap_authenticated(request, now, rng).await
    }

    /// [`Self::merchant_swap`] for a request whose signature was checked.
    pub async fn merchant_swap_authenticated<G: CryptoRng + Send + ?Sized>(
        &self,
        request: Authenticated<'_, MerchantSwapRequest>,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<SwapReceiptPayload> {
        let merchant: &MerchantDoc = request.signer();
        let request = request.request();
        // The signature was checked under the key of the merchant the payload names.
        request.check_shape()?;
        let payload = &request.payload;
        let merchant_id = payload.merchant_id;
        if self.merchant_revoked(merchant_id).await?.is_some() {
            return Err(IssuerError::MerchantRevoked(merchant_id));
        }
        let directory = self.keys().directory(now)?;
        let mut coins = Vec::new();
        let mut writes = Vec::with_capacity(payload.payments.len());
        let mut input: Option<Amount> = None;
        for endorsed in &payload.payments {
            let payment = check_coin_payment(merchant, endorsed, &directory, now)
                .map_err(|e| self.explain_unknown_keyset(e, now))?;
            let total = payment.total()?;
            input = Some(match input {
                None => total,
                Some(sum) => sum.checked_add(total)?,
            });
            let digest = codec::digest(payment)?;
            writes.push(payment_index(
                merchant_id,
                payment.request.payload.request_id,
                digest,
                PaidBy::Coins,
                total,
                now,
            )?);
            for coin in &payment.coins {
                coins.push(HandedIn {
                    coin,
                    spend_id: coin.spend_id()?,
                    digest,
                });
            }
        }
        let input = input.ok_or(IssuerError::Unsupported("a swap of no payments"))?;
        let fee =
            self.check_outputs(input, coins.len(), payload.keyset_id, &payload.outputs, now)?;
        let claim = scrip_stores::ClaimId::Idempotency {
            scope: *merchant_id.as_uuid(),
            key: payload.request_key,
        };
        let plan = Plan {
            claimant: Claimant::Merchant(merchant_id),
            coins,
            keyset_id: payload.keyset_id,
            outputs: &payload.outputs,
            idempotent: Idempotent {
                answer_key: MERCHANT_SWAP_RESPONSE.key(&claim.key_bytes()),
                claim,
                // The payload, not the signed request: a retry signed again is the same
                // swap.
                digest: codec::digest(payload)?,
                answers: RESPONSES,
            },
            fee,
            writes,
        };
        let outcome = self.execute(plan, now, rng).await?;
        Ok(SwapReceiptPayload {
            request_digest: codec::digest(request)?,
            outcome,
            answered_at: now,
        })
    }

    /// The checks of a swap's outputs that need no store: sizes, the output keyset
    /// (issuing now, of the coins' currency, knowing every denomination asked for), and
    /// the totals. Returns the fee for `coins` coins handed in worth `input`.
    fn check_outputs(
        &self,
        input: Amount,
        coins: usize,
        keyset_id: KeysetId,
        outputs: &[(u64, BlindedMessage)],
        now: Timestamp,
    ) -> Result<Amount> {
        if coins > self.config.max_coins_per_withdrawal {
            return Err(IssuerError::Unsupported("too many coins in one swap"));
        }
        self.check_coin_count(outputs.len())?;
        let keys = self.keys();
        let set = issuing_keyset(&keys, keyset_id, now)?;
        input.ensure_same_currency(&Amount::zero(set.keyset.currency()))?;
        let mut output = 0u64;
        for (value, _) in outputs {
            set.keyset.key_for(*value)?;
            output = output
                .checked_add(*value)
                .ok_or(scrip_tokens::Error::AmountOverflow)?;
        }
        let fee = u64::try_from(coins)
            .ok()
            .and_then(|n| n.checked_mul(self.config.swap_fee_per_coin))
            .ok_or(scrip_tokens::Error::AmountOverflow)?;
        let expected = input
            .minor_units
            .checked_sub(fee)
            .ok_or(IssuerError::Unsupported(
                "the coins do not cover the swap fee",
            ))?;
        if output != expected {
            return Err(scrip_tokens::Error::AmountMismatch {
                expected: Amount::new(expected, input.currency),
                found: Amount::new(output, input.currency),
            }
            .into());
        }
        Ok(Amount::new(fee, input.currency))
    }

    /// The stored answer, or a `DoubleSpent` answer from one read, or the signatures
    /// committed with the claims in one unit.
    async fn execute<G: CryptoRng + Send + ?Sized>(
        &self,
        plan: Plan<'_>,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<SwapOutcome> {
        if let Some(answer) = self
            .previous_answer::<BlindWithdrawalResponse>(&plan.idempotent)
            .await?
        {
            return Ok(swapped(answer));
        }
        let spent = self.spent_before(&plan).await?;
        if !spent.is_empty() {
            return self.refuse_double_spend(&plan, spent, now).await;
        }
        let keys = self.keys();
        let set = issuing_keyset(&keys, plan.keyset_id, now)?;
        let answer = BlindWithdrawalResponse {
            keyset_id: set.keyset.id(),
            signatures: sign_blinded(set, plan.outputs, rng)?,
        };
        let mut unit = Unit::new(plan.claimant.clone(), now);
        for coin in &plan.coins {
            unit = unit.claim(ClaimId::Coin(coin.spend_id), coin.digest);
        }
        for write in &plan.writes {
            unit = unit.write(write.clone());
        }
        if plan.fee.minor_units > 0 {
            unit = unit.post(Posting::transfer(
                coins_outstanding_account(),
                swap_fees_account(),
                plan.fee,
                "swap fee",
            ));
        }
        match self.commit_answered(unit, &plan.idempotent, answer).await? {
            Answered::Answer(answer) => Ok(swapped(answer)),
            // A coin went elsewhere between the read and the commit.
            Answered::NotApplied(CommitOutcome::Conflict(report)) => {
                let spent = report
                    .iter()
                    .filter_map(|(id, held)| match (id, held) {
                        (ClaimId::Coin(spend_id), Some(held)) => {
                            let coin = plan.coins.iter().find(|c| c.spend_id == *spend_id)?;
                            Some(Spent {
                                coin_id: coin.coin.id(),
                                at: held.claimed_at,
                            })
                        }
                        _ => None,
                    })
                    .collect::<Vec<_>>();
                if spent.is_empty() {
                    return Err(impossible_outcome("swap", &CommitOutcome::Conflict(report)));
                }
                self.refuse_double_spend(&plan, spent, now).await
            }
            Answered::NotApplied(other) => Err(impossible_outcome("swap", &other)),
        }
    }

    /// The coins of `plan` spent before, by anything but this very swap: one read of their
    /// spend-id claims and of the bare-id claims scrip 0.1 made (never written now, so
    /// reading them first cannot race). A coin held by the swap's claimant with its own
    /// digest is left to the commit, which tells a concurrent twin of this swap (a
    /// repeat) from a redemption of the same payment (a conflict).
    async fn spent_before(&self, plan: &Plan<'_>) -> Result<Vec<Spent>> {
        let ids: Vec<ClaimId> = plan
            .coins
            .iter()
            .map(|c| ClaimId::Coin(c.spend_id))
            .chain(
                plan.coins
                    .iter()
                    .map(|c| ClaimId::LegacyCoinId(c.coin.id())),
            )
            .collect();
        let held = self.store.claims(&ids).await?;
        if held.len() != ids.len() {
            return Err(IssuerError::Corrupted(
                "store answered another number of claims".into(),
            ));
        }
        let n = plan.coins.len();
        Ok(plan
            .coins
            .iter()
            .enumerate()
            .filter_map(|(i, coin)| {
                let ours =
                    |h: &ExistingClaim| h.claimant == plan.claimant && h.digest == coin.digest;
                let by_spend_id = held[i].as_ref().filter(|h| !ours(h));
                let by_bare_id = held[n + i].as_ref();
                by_spend_id.or(by_bare_id).map(|h| Spent {
                    coin_id: coin.coin.id(),
                    at: h.claimed_at,
                })
            })
            .collect())
    }

    /// The `DoubleSpent` answer, after logging the holders of identified coins among the
    /// spent ones.
    async fn refuse_double_spend(
        &self,
        plan: &Plan<'_>,
        spent: Vec<Spent>,
        now: Timestamp,
    ) -> Result<SwapOutcome> {
        let outcome = double_spent(spent, now);
        if let SwapOutcome::DoubleSpent {
            first_redeemed_at,
            coins,
        } = &outcome
        {
            let presented: Vec<Coin> = plan.coins.iter().map(|c| c.coin.clone()).collect();
            let holders = self.holders_of(&presented, coins).await?;
            if !holders.is_empty() {
                let entry = FraudEntry {
                    at: now,
                    kind: FraudKind::SwapDoubleSpend {
                        coins: holders.iter().map(|h| h.coin_id).collect(),
                        first_redeemed_at: *first_redeemed_at,
                        holders,
                    },
                };
                self.log_fraud(&entry, now).await?;
            }
        }
        Ok(outcome)
    }
}
