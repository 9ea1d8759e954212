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
//! **Costs an unauthenticated sender can cause.** Shape and coin signatures are checked
//! before any read; a request whose coins were spent is answered from one read, before
//! any signing; blind signing (a millisecond per output) happens only for coins that are
//! valid and unspent, that is, for real money. Only identified coins' double spends are
//! written to the fraud log (they name a holder), once per set of coins.

use rand_core::CryptoRng;
use scrip_stores::{ClaimId, Claimant, CommitOutcome, ExistingClaim, Posting, RecordStore, Unit};
use scrip_tokens::{
    codec, Amount, BlindWithdrawalResponse, Coin, CoinId, CoinSpendId, ContentDigest, SwapOutcome,
    SwapReceiptPayload, SwapRequest, Timestamp,
};

use crate::coins::{issuing_keyset, sign_blinded};
use crate::idempotency::{impossible_outcome, Answered, Idempotent};
use crate::schema::{
    coins_outstanding_account, swap_fees_account, FraudEntry, FraudKind, RESPONSES, SWAP_REQUEST,
    SWAP_RESPONSE,
};
use crate::{FundingSource, Issuer, IssuerError, Result};

/// The request's claim: its key, standing for the whole request.
fn idempotency(request: &SwapRequest, digest: ContentDigest) -> Idempotent {
    let claim = SWAP_REQUEST.claim(request.request_key.to_vec());
    Idempotent {
        answer_key: SWAP_RESPONSE.key(&claim.key_bytes()),
        claim,
        digest,
        answers: RESPONSES,
    }
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
        let outcome = self.swap_outcome(request, digest, now, rng).await?;
        Ok(SwapReceiptPayload {
            request_digest: digest,
            outcome,
            answered_at: now,
        })
    }

    async fn swap_outcome<G: CryptoRng + Send + ?Sized>(
        &self,
        request: &SwapRequest,
        digest: ContentDigest,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<SwapOutcome> {
        let fee = self.check_swap(request, now)?;
        let idempotent = idempotency(request, digest);
        if let Some(answer) = self
            .previous_answer::<BlindWithdrawalResponse>(&idempotent)
            .await?
        {
            return Ok(swapped(answer));
        }
        let spend_ids = request
            .coins
            .iter()
            .map(Coin::spend_id)
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let spent = self.spent_before(request, &spend_ids, digest).await?;
        if !spent.is_empty() {
            return self.refuse_double_spend(request, spent, now).await;
        }
        let keys = self.keys();
        let set = issuing_keyset(&keys, request.keyset_id, now)?;
        let answer = BlindWithdrawalResponse {
            keyset_id: set.keyset.id(),
            signatures: sign_blinded(set, &request.outputs, rng)?,
        };
        let mut unit = Unit::new(Claimant::Holder, now);
        for id in &spend_ids {
            unit = unit.claim(ClaimId::Coin(*id), digest);
        }
        if fee.minor_units > 0 {
            unit = unit.post(Posting::transfer(
                coins_outstanding_account(),
                swap_fees_account(),
                fee,
                "swap fee",
            ));
        }
        match self.commit_answered(unit, &idempotent, answer).await? {
            Answered::Answer(answer) => Ok(swapped(answer)),
            // A coin went elsewhere between the read and the commit.
            Answered::NotApplied(CommitOutcome::Conflict(report)) => {
                let spent = report
                    .iter()
                    .filter_map(|(id, held)| match (id, held) {
                        (ClaimId::Coin(spend_id), Some(held)) => Some(Spent {
                            coin_id: coin_spent_as(request, &spend_ids, *spend_id)?,
                            at: held.claimed_at,
                        }),
                        _ => None,
                    })
                    .collect::<Vec<_>>();
                if spent.is_empty() {
                    return Err(impossible_outcome("swap", &CommitOutcome::Conflict(report)));
                }
                self.refuse_double_spend(request, spent, now).await
            }
            Answered::NotApplied(other) => Err(impossible_outcome("swap", &other)),
        }
    }

    /// Everything about a swap that needs no store: sizes, the output keyset (issuing now,
    /// of the coins' currency, knowing every denomination asked for), every coin's
    /// signature and keyset window, and the totals. Returns the fee.
    fn check_swap(&self, request: &SwapRequest, now: Timestamp) -> Result<Amount> {
        let input = request.input_total()?;
        let output = request.output_total()?;
        if request.coins.len() > self.config.max_coins_per_withdrawal {
            return Err(IssuerError::Unsupported("too many coins in one swap"));
        }
        self.check_coin_count(request.outputs.len())?;
        let keys = self.keys();
        let set = issuing_keyset(&keys, request.keyset_id, now)?;
        input.ensure_same_currency(&Amount::zero(set.keyset.currency()))?;
        for (value, _) in &request.outputs {
            set.keyset.key_for(*value)?;
        }
        let per_coin = self.config.swap_fee_per_coin;
        let fee = u64::try_from(request.coins.len())
            .ok()
            .and_then(|n| n.checked_mul(per_coin))
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
        let directory = keys.directory(now)?;
        for coin in &request.coins {
            coin.verify(&directory, now)
                .map_err(|e| self.explain_unknown_keyset(e.into(), now))?;
        }
        Ok(Amount::new(fee, input.currency))
    }

    /// The coins of `request` spent before, by anything but this very request: one read of
    /// their spend-id claims and of the bare-id claims scrip 0.1 made (never written now,
    /// so reading them first cannot race).
    async fn spent_before(
        &self,
        request: &SwapRequest,
        spend_ids: &[CoinSpendId],
        digest: ContentDigest,
    ) -> Result<Vec<Spent>> {
        let ids: Vec<ClaimId> = spend_ids
            .iter()
            .map(|id| ClaimId::Coin(*id))
            .chain(request.coins.iter().map(|c| ClaimId::LegacyCoinId(c.id())))
            .collect();
        let held = self.store.claims(&ids).await?;
        if held.len() != ids.len() {
            return Err(IssuerError::Corrupted(
                "store answered another number of claims".into(),
            ));
        }
        let n = request.coins.len();
        let ours = |h: &ExistingClaim| h.claimant == Claimant::Holder && h.digest == digest;
        Ok(request
            .coins
            .iter()
            .enumerate()
            .filter_map(|(i, coin)| {
                let by_spend_id = held[i].as_ref().filter(|h| !ours(h));
                let by_bare_id = held[n + i].as_ref();
                by_spend_id.or(by_bare_id).map(|h| Spent {
                    coin_id: coin.id(),
                    at: h.claimed_at,
                })
            })
            .collect())
    }

    /// The `DoubleSpent` answer, after logging the holders of identified coins among the
    /// spent ones.
    async fn refuse_double_spend(
        &self,
        request: &SwapRequest,
        spent: Vec<Spent>,
        now: Timestamp,
    ) -> Result<SwapOutcome> {
        let outcome = double_spent(spent, now);
        if let SwapOutcome::DoubleSpent {
            first_redeemed_at,
            coins,
        } = &outcome
        {
            let holders = self.holders_of(&request.coins, coins).await?;
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

fn swapped(answer: BlindWithdrawalResponse) -> SwapOutcome {
    SwapOutcome::Swapped {
        keyset_id: answer.keyset_id,
        signatures: answer.signatures,
    }
}

fn coin_spent_as(
    request: &SwapRequest,
    spend_ids: &[CoinSpendId],
    id: CoinSpendId,
) -> Option<CoinId> {
    spend_ids
        .iter()
        .position(|s| *s == id)
        .and_then(|i| request.coins.get(i))
        .map(Coin::id)
}
