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
//! **The stored answer first.** A request already answered is answered from the store
//! before anything that depends on the time or the configuration is checked: a retry
//! after a lost answer gets its signatures even once the coins' keyset has expired, the
//! output keyset stopped issuing, the fee changed or the merchant was revoked. Only the
//! request's shape (and a merchant's signature) is checked before that read.
//!
//! **All or nothing.** One coin spent before (redeemed, revoked, swapped by another
//! request, or claimed by scrip 0.1 under its bare id) and nothing is claimed: the answer
//! is `DoubleSpent`, naming those coins and when the first was spent, as a redemption
//! would. The other coins stay good, and the holder swaps them again under a new key.
//!
//! **Identified coins: only their holder's device.** Identified coins name their holder so
//! that a lost device's coins can be revoked and reissued; a bearer swap would let
//! whoever holds them turn them into untraceable blind coins first, so a bearer swap
//! refuses them (`unsupported`, after the stored-answer lookup: a swap done before is
//! answered on either route). A [`DeviceSwapRequest`] ([`Issuer::device_swap`]) swaps
//! them: signed by an active device of the account every identified coin names
//! (`wrong_account` otherwise). So what a stolen, unlocked device exposes until it is
//! revoked is the account's balance (withdrawable as blind coins, as before) and now
//! also the identified coins on it, which the thief can make untraceable instead of
//! only spending them at merchants; revocation stops both, and a swapped coin is not
//! reissued (it is spent). Each device swap is logged with its account and device. It is
//! otherwise the same swap, answered for the same inner [`SwapRequest`]. Merchants take
//! identified coins they were paid in their swaps, as in redemption.
//!
//! **Unlinkable.** The request names no account, device or merchant, and carries no
//! nonce or time: only the coins (whose spend ids only a holder can compute) authorise
//! it, and the outputs are blinded, so the issuer cannot link old and new coins beyond
//! "the same request". The request key is chosen at random by the holder. (A device swap
//! names the account, as a blind withdrawal does: the new coins stay unlinkable to
//! where they are spent.)
//!
//! **A merchant's swap** ([`Issuer::merchant_swap`]): a merchant takes the coin payments it
//! accepted into its own purse. Its signed request carries the endorsed payments as a
//! redemption batch would; each is checked as for a redemption (endorsement, the
//! merchant's certification when it took the payment, the payment itself) and its coins
//! are claimed as a redemption claims them (the merchant as claimant, the payment's
//! digest), with the payment index a refund reads. So the customer's payment shows
//! settled, a later upload of the same payment is `already_accepted` (the merchant was
//! paid, in coins) and the coins are spent for everyone else. The merchant's account is
//! not credited: the new coins are its money. A revoked merchant's swap is refused. A
//! payment this merchant already redeemed for credit is refused `already_redeemed`
//! (nothing claimed, nothing logged): upload it for its outcome. Double spends found are
//! logged as a redemption logs them (the merchant named). No fee: settling is free, as
//! redemption is.
//!
//! **Costs an unauthenticated sender can cause.** The shape is checked before any read,
//! the coins' signatures before any further read; a request whose coins were spent is
//! answered from one read, before any signing; blind signing (a millisecond per output)
//! happens only for coins that are valid and unspent, that is, for real money, and one
//! swap at a time per coin in this process (a concurrent swap of a coin being swapped is
//! `contended`, 503): the same coins cannot buy parallel signing. A holder's swap writes
//! nothing but its own unit (no fraud log: blind coins name nobody).

use std::collections::HashSet;
use std::sync::Mutex;

use rand_core::CryptoRng;
use scrip_stores::{
    ClaimId, Claimant, CommitOutcome, ExistingClaim, Posting, RecordStore, Unit, Write,
};
use scrip_tokens::{
    codec, AccountId, Amount, BlindWithdrawalResponse, BlindedMessage, Coin, CoinId, CoinSpendId,
    ContentDigest, DeviceId, DeviceSwapRequest, KeysetId, MerchantId, MerchantSwapRequest,
    ReceivedPayment, RequestId, SwapOutcome, SwapReceiptPayload, SwapRequest, Timestamp,
};

use crate::authentication::Authenticated;
use crate::coins::{issuing_keyset, sign_blinded};
use crate::idempotency::{impossible_outcome, Answered, Idempotent};
use crate::redemption::{check_coin_payment, payment_index};
use crate::schema::{
    coins_outstanding_account, swap_fees_account, DeviceDoc, IdentifiedCoinDoc, MerchantDoc,
    PaidBy, IDENTIFIED_COINS, MERCHANT_SWAP_RESPONSE, RESPONSES, SWAP_REQUEST, SWAP_RESPONSE,
};
use crate::{FundingSource, Issuer, IssuerError, Result};

/// The coins being swapped in this process right now: a second swap of one of them waits
/// for the first to finish (it is refused `contended`) rather than signing in parallel.
#[derive(Default)]
pub(crate) struct SwapsInFlight(Mutex<HashSet<CoinSpendId>>);

/// The coins of one swap, marked in flight until dropped.
struct InFlight<'a> {
    set: &'a SwapsInFlight,
    ids: Vec<CoinSpendId>,
}

impl SwapsInFlight {
    /// Marks `ids` in flight, or `None` if one of them already is.
    fn enter(&self, ids: Vec<CoinSpendId>) -> Option<InFlight<'_>> {
        let mut set = match self.0.lock() {
            Ok(set) => set,
            Err(poisoned) => poisoned.into_inner(),
        };
        if ids.iter().any(|id| set.contains(id)) {
            return None;
        }
        set.extend(ids.iter().copied());
        Some(InFlight { set: self, ids })
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut set = match self.set.0.lock() {
            Ok(set) => set,
            Err(poisoned) => poisoned.into_inner(),
        };
        for id in &self.ids {
            set.remove(id);
        }
    }
}

/// Who sent a holder's swap, and so what it may hand in.
enum Sender<'a> {
    /// Whoever holds the coins (`POST /v1/swaps`): blind coins only.
    Bearer,
    /// A device of `account_id`, authenticated (`POST /v1/device-swaps`): identified coins
    /// naming the account's holder too, while the device is active.
    Device {
        device: &'a DeviceDoc,
        account_id: AccountId,
    },
}

/// One coin handed in: the coin, its spend id, the digest it is claimed with, and for a
/// merchant's swap the payment it came in.
struct HandedIn<'r> {
    coin: &'r Coin,
    spend_id: CoinSpendId,
    digest: ContentDigest,
    payment: Option<RequestId>,
}

/// A swap checked and ready to meet the store.
struct Plan<'r> {
    /// Who claims the coins (a bearer swap's holder, or the merchant).
    claimant: Claimant,
    /// The merchant of a merchant's swap: its double spends are logged.
    merchant: Option<MerchantId>,
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

/// What the read before signing found.
enum Found {
    /// Nothing spent: sign and commit.
    Fresh,
    /// These coins were spent by something else.
    Spent(Vec<Spent>),
    /// A coin is held by this very claimant under its own digest: this request's twin
    /// committed meanwhile, or (a merchant's swap) the merchant redeemed this payment.
    Ours(Option<RequestId>),
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
        self.swap_checked(request, Sender::Bearer, now, rng).await
    }

    /// A holder's swap signed by one of its devices: how identified coins are swapped
    /// (see the module documentation). Verifies the device's signature first.
    pub async fn device_swap<G: CryptoRng + Send + ?Sized>(
        &self,
        request: &DeviceSwapRequest,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<SwapReceiptPayload> {
        let request = self.authenticate(request).await?;
        self.device_swap_authenticated(request, now, rng).await
    }

    /// [`Self::device_swap`] for a request whose signature was checked. The device must be
    /// of the account the request names and every identified coin must name that
    /// account's holder (`wrong_account` otherwise); a swap not done before also needs
    /// the device active (not revoked, the account not frozen). A swap done before is
    /// answered from the store, as every swap is: its coins were spent when it was done.
    pub async fn device_swap_authenticated<G: CryptoRng + Send + ?Sized>(
        &self,
        request: Authenticated<'_, DeviceSwapRequest>,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<SwapReceiptPayload> {
        let device = request.signer();
        let payload = &request.request().payload;
        if device.certificate.payload.account_id != payload.account_id {
            return Err(scrip_tokens::Error::WrongAccount.into());
        }
        if payload.swap.hands_in_identified() {
            let holder = self.account(payload.account_id).await?.virtual_id;
            if payload
                .swap
                .coins
                .iter()
                .any(|c| c.holder().is_some_and(|h| h != holder))
            {
                return Err(scrip_tokens::Error::WrongAccount.into());
            }
        }
        let sender = Sender::Device {
            device,
            account_id: payload.account_id,
        };
        self.swap_checked(&payload.swap, sender, now, rng).await
    }

    /// Refuses identified coins held by a revoked device (`device_revoked`, naming that
    /// device) while they are unspent: revoking a lost device hands its coins to the
    /// operator's reissue, and another device of the account (one a thief enrolled with the
    /// lost device, say) must not take them first. Coins of the account held by an active
    /// device may be swapped by any active device of it. A coin already spent, by the
    /// reissue (which claims it) or by a payment before the device was lost, is let
    /// through: the swap answers `double_spent`, so the wallet drops it instead of keeping
    /// a coin every later swap would be refused for. A spent coin cannot become unspent, so
    /// the swap's own claim settles any race. Each holding device is looked up once.
    async fn check_holding_devices(&self, request: &SwapRequest) -> Result<()> {
        let mut active: HashSet<DeviceId> = HashSet::new();
        for coin in request.coins.iter().filter(|c| c.holder().is_some()) {
            let held: Option<IdentifiedCoinDoc> =
                self.doc(IDENTIFIED_COINS, coin.id().as_bytes()).await?;
            let Some(holding) = held.and_then(|doc| doc.device_id) else {
                continue;
            };
            if active.contains(&holding) {
                continue;
            }
            if self.revoked(holding).await?.is_none() {
                active.insert(holding);
                continue;
            }
            let spent_claims = [
                ClaimId::Coin(coin.spend_id()?),
                ClaimId::LegacyCoinId(coin.id()),
            ];
            let spent = self.held_claims(&spent_claims).await?;
            if spent.iter().all(Option::is_none) {
                return Err(IssuerError::DeviceRevoked(holding));
            }
        }
        Ok(())
    }

    /// A holder's swap: the stored answer if it was done before, else what `sender` may
    /// do, then the swap.
    async fn swap_checked<G: CryptoRng + Send + ?Sized>(
        &self,
        request: &SwapRequest,
        sender: Sender<'_>,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<SwapReceiptPayload> {
        let digest = codec::digest(request)?;
        let input = request.input_total()?;
        request.output_total()?;
        let claim = SWAP_REQUEST.claim(request.request_key.to_vec());
        let idempotent = Idempotent {
            answer_key: SWAP_RESPONSE.key(&claim.key_bytes()),
            claim,
            digest,
            answers: RESPONSES,
        };
        let answered = |outcome| SwapReceiptPayload {
            request_digest: digest,
            outcome,
            answered_at: now,
        };
        if let Some(answer) = self.previous_answer(&idempotent).await? {
            return Ok(answered(swapped(answer)));
        }
        let by_device = matches!(sender, Sender::Device { .. });
        match sender {
            Sender::Bearer if request.hands_in_identified() => {
                return Err(IssuerError::Unsupported(
                    "identified coins are swapped only by a device of their holder: sign \
                     the swap with it (POST /v1/device-swaps)",
                ))
            }
            Sender::Bearer => {}
            Sender::Device { device, account_id } => {
                self.check_active(device, account_id, now).await?
            }
        }
        let fee = self.check_outputs(
            input,
            request.coins.len(),
            self.config.swap_fee_per_coin,
            request.keyset_id,
            &request.outputs,
            now,
        )?;
        let directory = self.keys().directory(now)?;
        for coin in &request.coins {
            coin.verify(&directory, now)
                .map_err(|e| self.explain_unknown_keyset(e.into(), now))?;
        }
        if by_device {
            self.check_holding_devices(request).await?;
        }
        let plan = Plan {
            claimant: Claimant::Holder,
            merchant: None,
            coins: request
                .coins
                .iter()
                .map(|coin| {
                    Ok(HandedIn {
                        coin,
                        spend_id: coin.spend_id()?,
                        digest,
                        payment: None,
                    })
                })
                .collect::<Result<_>>()?,
            keyset_id: request.keyset_id,
            outputs: &request.outputs,
            idempotent,
            fee,
            writes: Vec::new(),
        };
        Ok(answered(self.execute(plan, now, rng).await?))
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
        let request_digest = request.request_digest()?;
        let request = request.request();
        // The signature was checked under the key of the merchant the payload names.
        request.check_shape()?;
        let payload = &request.payload;
        let merchant_id = payload.merchant_id;
        let claim = ClaimId::Idempotency {
            scope: *merchant_id.as_uuid(),
            key: payload.request_key,
        };
        let idempotent = Idempotent {
            answer_key: MERCHANT_SWAP_RESPONSE.key(&claim.key_bytes()),
            claim,
            // The payload, not the signed request: a retry signed again is the same swap.
            digest: codec::digest(payload)?,
            answers: RESPONSES,
        };
        let answered = |outcome| SwapReceiptPayload {
            request_digest,
            outcome,
            answered_at: now,
        };
        if let Some(answer) = self.previous_answer(&idempotent).await? {
            return Ok(answered(swapped(answer)));
        }
        if self.merchant_revoked(merchant_id).await?.is_some() {
            return Err(IssuerError::MerchantRevoked(merchant_id));
        }
        let directory = self.keys().directory(now)?;
        let mut coins = Vec::new();
        let mut writes = Vec::with_capacity(payload.payments.len());
        let mut input: Option<Amount> = None;
        for endorsed in &payload.payments {
            let received = ReceivedPayment::new(endorsed)?;
            let (payment, digest) = check_coin_payment(merchant, &received, &directory, now)
                .map_err(|e| self.explain_unknown_keyset(e, now))?;
            let total = payment.total()?;
            input = Some(match input {
                None => total,
                Some(sum) => sum.checked_add(total)?,
            });
            let request_id = payment.request.payload.request_id;
            writes.push(payment_index(
                merchant_id,
                request_id,
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
                    payment: Some(request_id),
                });
            }
        }
        let input = input.ok_or(IssuerError::Unsupported("a swap of no payments"))?;
        // No fee: a merchant settling its payments as coins pays what redemption costs.
        let fee = self.check_outputs(
            input,
            coins.len(),
            0,
            payload.keyset_id,
            &payload.outputs,
            now,
        )?;
        let plan = Plan {
            claimant: Claimant::Merchant(merchant_id),
            merchant: Some(merchant_id),
            coins,
            keyset_id: payload.keyset_id,
            outputs: &payload.outputs,
            idempotent,
            fee,
            writes,
        };
        Ok(answered(self.execute(plan, now, rng).await?))
    }

    /// The checks of a swap's outputs that need no store: sizes, the output keyset
    /// (issuing now, of the coins' currency, knowing every denomination asked for), and
    /// the totals. Returns the fee for `coins` coins handed in worth `input`, at
    /// `per_coin` each.
    fn check_outputs(
        &self,
        input: Amount,
        coins: usize,
        per_coin: u64,
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
        Ok(Amount::new(fee, input.currency))
    }

    /// A `DoubleSpent` answer from one read, or the signatures committed with the claims in
    /// one unit (the caller found no stored answer).
    async fn execute<G: CryptoRng + Send + ?Sized>(
        &self,
        plan: Plan<'_>,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<SwapOutcome> {
        let _in_flight = self
            .swaps_in_flight
            .enter(plan.coins.iter().map(|c| c.spend_id).collect())
            .ok_or(IssuerError::Contended { operation: "swap" })?;
        match self.spent_before(&plan).await? {
            Found::Fresh => {}
            Found::Spent(spent) => return self.refuse_double_spend(&plan, spent, now).await,
            Found::Ours(payment) => return self.ours(&plan, payment).await,
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
                let mut spent = Vec::new();
                let mut ours = None;
                for (id, held) in &report {
                    let (ClaimId::Coin(spend_id), Some(held)) = (id, held) else {
                        continue;
                    };
                    let Some(coin) = plan.coins.iter().find(|c| c.spend_id == *spend_id) else {
                        continue;
                    };
                    if held.claimant == plan.claimant && held.digest == coin.digest {
                        ours = Some(coin.payment);
                    } else {
                        spent.push(Spent {
                            coin_id: coin.coin.id(),
                            at: held.claimed_at,
                        });
                    }
                }
                if !spent.is_empty() {
                    return self.refuse_double_spend(&plan, spent, now).await;
                }
                match ours {
                    Some(payment) => self.ours(&plan, payment).await,
                    None => Err(impossible_outcome("swap", &CommitOutcome::Conflict(report))),
                }
            }
            Answered::NotApplied(other) => Err(impossible_outcome("swap", &other)),
        }
    }

    /// A coin held by this swap's claimant under its own digest: the answer of this
    /// request's twin if one committed, else (a merchant's swap) the payment was redeemed
    /// for credit before.
    async fn ours(&self, plan: &Plan<'_>, payment: Option<RequestId>) -> Result<SwapOutcome> {
        if let Some(answer) = self
            .previous_answer::<BlindWithdrawalResponse>(&plan.idempotent)
            .await?
        {
            return Ok(swapped(answer));
        }
        match payment {
            Some(request) => Err(IssuerError::AlreadyRedeemed(request)),
            None => Err(IssuerError::Corrupted(
                "a swap's coins are claimed without its answer".into(),
            )),
        }
    }

    /// What one read of the coins' spend-id claims, and of the bare-id claims scrip 0.1
    /// made (never written now, so reading them first cannot race), says about them.
    async fn spent_before(&self, plan: &Plan<'_>) -> Result<Found> {
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
        let held = self.held_claims(&ids).await?;
        let n = plan.coins.len();
        let mut spent = Vec::new();
        let mut ours = None;
        for (i, coin) in plan.coins.iter().enumerate() {
            let is_ours =
                |h: &ExistingClaim| h.claimant == plan.claimant && h.digest == coin.digest;
            match (held[i].as_ref(), held[n + i].as_ref()) {
                (Some(h), _) if is_ours(h) => ours = Some(coin.payment),
                (Some(h), _) | (None, Some(h)) => spent.push(Spent {
                    coin_id: coin.coin.id(),
                    at: h.claimed_at,
                }),
                (None, None) => {}
            }
        }
        Ok(if !spent.is_empty() {
            Found::Spent(spent)
        } else if let Some(payment) = ours {
            Found::Ours(payment)
        } else {
            Found::Fresh
        })
    }

    /// The `DoubleSpent` answer; a merchant's swap logs it as a redemption would.
    async fn refuse_double_spend(
        &self,
        plan: &Plan<'_>,
        spent: Vec<Spent>,
        now: Timestamp,
    ) -> Result<SwapOutcome> {
        let outcome = double_spent(spent, now);
        if let (
            Some(merchant),
            SwapOutcome::DoubleSpent {
                first_redeemed_at,
                coins,
            },
        ) = (plan.merchant, &outcome)
        {
            let presented: Vec<Coin> = plan.coins.iter().map(|c| c.coin.clone()).collect();
            self.log_double_spend(merchant, &presented, coins.clone(), *first_redeemed_at, now)
                .await?;
        }
        Ok(outcome)
    }
}
