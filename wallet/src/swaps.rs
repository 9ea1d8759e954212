//! Swaps, while online: coins handed back to the issuer for new blind coins of the same
//! total (`POST /v1/swaps`). Three uses, one flow:
//!
//! - **Change** ([`Wallet::change_request`]): no change can be given offline, so before
//!   going offline the wallet splits its coins into what the amounts it expects to pay
//!   need, plus the default mix ([`DEFAULT_MIX`]) for the rest.
//! - **Refresh** ([`Wallet::refresh_request`]): coins of a keyset that stopped issuing, or
//!   whose acceptance window ends within [`REFRESH_MARGIN`], into the current keyset, so
//!   they never lose their value.
//! - **Any split** ([`Wallet::swap_request`]): chosen coins for chosen denominations.
//!
//! The request names no account and is not signed by the device: like a payment, it is
//! authorised by holding the coins, so the issuer learns nothing that links the old coins
//! to the new ones or to this wallet. Identified coins are the exception: they name their
//! holder, and the issuer swaps them only for a device of that holder, so a swap that
//! hands them in is always sent signed, first send and resends alike
//! ([`Wallet::identified_swap_request`], [`Wallet::sign_swap`]); signing also tells the
//! issuer which account held any blind coins handed in beside them. Save before releasing
//! it: the blinding secrets of the new coins and the coins handed in live only in the
//! saved state until the answer. If the answer is lost, send the same request again
//! ([`Wallet::pending_swaps`]): the issuer answers it with the same signatures and never
//! signs twice.

use std::time::Duration;

use rand_core::CryptoRng;
use scrip_tokens::{
    Amount, BlindWithdrawalResponse, Coin, CoinId, Currency, DeviceSwapRequest,
    DeviceSwapRequestPayload, Keyset, PendingCoin, SwapOutcome, SwapReceipt, SwapRequest,
    Timestamp, MAX_COINS_PER_SWAP,
};

use crate::change::{exact_change, ladder, split, Change};
use crate::state::PendingSwap;
use crate::{coin_values, nonce, Result, Unreleased, Wallet, WalletError};

/// How long before a keyset's acceptance window ends the wallet refreshes its coins
/// ([`Wallet::refresh_request`]): a week, so a wallet that comes online weekly still
/// refreshes in time. Coins of a keyset that stopped issuing are refreshed whatever its
/// window: the current keyset's coins are what merchants expect.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(7 * 86_400);

/// The default denomination mix of [`Wallet::change_request`], for what the expected
/// payments leave: the ladder (of each denomination, smallest first, as many as make every
/// amount below the next denomination payable: 1, 2, 2, 5, 10, 20, 20, 50, ... for the
/// 1-2-5 series), then the rest in the largest denominations.
pub const DEFAULT_MIX: &str = "ladder: 1, 2, 2, 5 per decade, then largest first";

/// What a swap did, from the wallet's side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SwapResult {
    /// The coins handed in are spent; these new coins are held instead.
    Swapped {
        /// The new coins.
        coins: Vec<CoinId>,
    },
    /// Some coins handed in had been spent before (nothing was swapped): they are dropped;
    /// the others are back in the wallet.
    DoubleSpent {
        /// The coins the issuer found spent, dropped.
        spent: Vec<CoinId>,
        /// The other coins, held again.
        returned: Vec<CoinId>,
        /// When the first of them was spent.
        first_redeemed_at: Timestamp,
    },
}

impl Wallet {
    /// A swap of the held coins `coins` for new blind coins worth `outputs` (one
    /// currency, denominations of its current keyset). The outputs add up to the coins'
    /// total, less the issuer's fee if it charges one (none by default). The coins leave
    /// the purse until the answer ([`Wallet::on_swap_receipt`]); save before releasing.
    /// A swap that hands in identified coins is sent signed by this device
    /// ([`Wallet::sign_swap`], `POST /v1/device-swaps`): the issuer swaps them only for
    /// a device of the holder they name.
    pub fn swap_request<G: CryptoRng + ?Sized>(
        &mut self,
        coins: &[CoinId],
        outputs: &[Amount],
        now: Timestamp,
        rng: &mut G,
    ) -> Result<Unreleased<SwapRequest>> {
        let (currency, values) = coin_values(outputs)?;
        let mut indices = Vec::with_capacity(coins.len());
        for id in coins {
            let index = self
                .state
                .coins
                .iter()
                .position(|c| c.id() == *id)
                .ok_or(WalletError::CoinNotHeld(*id))?;
            if indices.contains(&index) {
                return Err(scrip_tokens::Error::DuplicateCoin(*id).into());
            }
            indices.push(index);
        }
        let input = self.total_of(&indices, currency)?;
        let output = values
            .iter()
            .try_fold(0u64, |acc, v| acc.checked_add(*v))
            .ok_or(scrip_tokens::Error::AmountOverflow)?;
        if output > input {
            return Err(scrip_tokens::Error::AmountMismatch {
                expected: Amount::new(input, currency),
                found: Amount::new(output, currency),
            }
            .into());
        }
        let keyset = self.current_keyset(currency, now)?;
        self.start_swap(indices, &keyset, &values, rng)
    }

    /// Splits the coins of `expected`'s currency so that each amount of `expected` can be
    /// paid in turn with exact change, offline: the amounts the vendor expects its user to
    /// pay (a bus fare twice, a coffee). What they leave is split into the default mix
    /// ([`DEFAULT_MIX`]). `None` when the coins held already pay them all in turn: no
    /// swap needed. The blind coins of the currency whose keyset still accepts them are
    /// handed in (at most [`MAX_COINS_PER_SWAP`], the largest; identified coins are kept
    /// and still pay), and the new coins add up to the same total: with an issuer that
    /// charges a swap fee, use [`Wallet::swap_request`].
    ///
    /// Tells the vendor when an amount cannot be made: `NoCoinsMake` (the current
    /// keyset's denominations cannot make it), `NotEnoughCoins` (the coins together are
    /// worth less than the amounts), `TooManyCoins` (more new coins than one swap holds).
    pub fn change_request<G: CryptoRng + ?Sized>(
        &mut self,
        expected: &[Amount],
        now: Timestamp,
        rng: &mut G,
    ) -> Result<Option<Unreleased<SwapRequest>>> {
        let (currency, amounts) = coin_values(expected)?;
        if let Some(zero) = amounts.iter().find(|a| **a == 0) {
            return Err(WalletError::NoCoinsMake(Amount::new(*zero, currency)));
        }
        let held: Vec<u64> = self
            .state
            .coins
            .iter()
            .map(Coin::amount)
            .filter(|a| a.currency == currency)
            .map(|a| a.minor_units)
            .collect();
        if pays_in_turn(held, &amounts) {
            return Ok(None);
        }
        let keyset = self.current_keyset(currency, now)?;
        let denominations = descending(&keyset);
        let directory = self.directory()?;
        // Blind coins of the currency whose keyset still accepts them: identified coins
        // would make the swap name the account ([`Wallet::identified_swap_request`] swaps
        // them on their own), and an expired coin would make the issuer refuse the swap.
        let mut indices: Vec<usize> = (0..self.state.coins.len())
            .filter(|i| match &self.state.coins[*i] {
                Coin::Blind(c) => {
                    c.amount.currency == currency
                        && directory
                            .keyset(c.keyset_id)
                            .is_ok_and(|k| k.validity().contains(now))
                }
                Coin::Identified(_) => false,
            })
            .collect();
        indices.sort_by_key(|i| std::cmp::Reverse(self.state.coins[*i].amount().minor_units));
        indices.truncate(MAX_COINS_PER_SWAP);
        let total = self.total_of(&indices, currency)?;
        let needed = amounts
            .iter()
            .try_fold(0u64, |acc, a| acc.checked_add(*a))
            .ok_or(scrip_tokens::Error::AmountOverflow)?;
        let rest = total
            .checked_sub(needed)
            .ok_or(WalletError::NotEnoughCoins {
                needed: Amount::new(needed, currency),
                held: Amount::new(total, currency),
            })?;
        let mut outputs = Vec::new();
        for amount in &amounts {
            let parts = split(*amount, &denominations, MAX_COINS_PER_SWAP)
                .ok_or(WalletError::NoCoinsMake(Amount::new(*amount, currency)))?;
            outputs.extend(parts);
        }
        let mix = ladder(rest, &denominations, usize::MAX)
            .ok_or(WalletError::NoCoinsMake(Amount::new(rest, currency)))?;
        outputs.extend(mix);
        if outputs.len() > MAX_COINS_PER_SWAP {
            return Err(WalletError::TooManyCoins {
                needed: outputs.len(),
                max: MAX_COINS_PER_SWAP,
            });
        }
        // What the wallet will hold: the new coins and those not handed in. Each expected
        // amount has its own exact split among the new coins, so this holds; checked
        // rather than assumed, since the payment's coin choice is a search of its own.
        let after: Vec<u64> = outputs
            .iter()
            .copied()
            .chain(
                (0..self.state.coins.len())
                    .filter(|i| !indices.contains(i))
                    .map(|i| self.state.coins[i].amount())
                    .filter(|a| a.currency == currency)
                    .map(|a| a.minor_units),
            )
            .collect();
        if !pays_in_turn(after, &amounts) {
            return Err(WalletError::NoCoinsMake(Amount::new(needed, currency)));
        }
        self.start_swap(indices, &keyset, &outputs, rng).map(Some)
    }

    /// A swap of coins that need refreshing into the current keyset of their currency, or
    /// `None` when none does. A blind coin needs it when its keyset no longer issues coins,
    /// or its acceptance window ends within [`REFRESH_MARGIN`], and another keyset of its
    /// currency issues now. Each coin becomes a coin of the same value (or that value in
    /// the current denominations). One currency and at most [`MAX_COINS_PER_SWAP`] coins
    /// per request: call again after the answer until it says `None`. Call it whenever
    /// the wallet is online with a fresh key directory. (Identified coins name their
    /// holder and have no keyset; they are not refreshed.)
    pub fn refresh_request<G: CryptoRng + ?Sized>(
        &mut self,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<Option<Unreleased<SwapRequest>>> {
        let directory = self.directory()?;
        let soon = now.saturating_add(REFRESH_MARGIN);
        let mut target: Option<Keyset> = None;
        let mut indices = Vec::new();
        let mut outputs = Vec::new();
        for (i, coin) in self.state.coins.iter().enumerate() {
            let Coin::Blind(blind) = coin else { continue };
            let Ok(keyset) = directory.keyset(blind.keyset_id) else {
                continue;
            };
            let window = keyset.validity();
            let stale = now > keyset.issue_until() || window.not_after <= soon;
            if !stale || !window.contains(now) {
                continue;
            }
            let currency = blind.amount.currency;
            if target.as_ref().is_some_and(|t| t.currency() != currency) {
                continue;
            }
            let Some(current) = directory.current_keyset(currency, now) else {
                continue;
            };
            if current.id() == keyset.id() {
                continue;
            }
            let Some(parts) = split(
                blind.amount.minor_units,
                &descending(current),
                MAX_COINS_PER_SWAP,
            ) else {
                continue;
            };
            if indices.len() == MAX_COINS_PER_SWAP
                || outputs.len() + parts.len() > MAX_COINS_PER_SWAP
            {
                break;
            }
            target = Some(current.clone());
            indices.push(i);
            outputs.extend(parts);
        }
        match target {
            Some(keyset) => self.start_swap(indices, &keyset, &outputs, rng).map(Some),
            None => Ok(None),
        }
    }

    /// A swap of the identified coins of `currency` that the key directory still accepts
    /// (at most [`MAX_COINS_PER_SWAP`], the largest first) for blind coins of the same total in the default mix
    /// ([`DEFAULT_MIX`]): unlinkable coins that pay like any other. `None` when none is
    /// held. Send it signed by this device ([`Wallet::sign_swap`]). The issuer learns
    /// that this account swapped them, as for a blind withdrawal; not where the new
    /// coins go. The new coins add up to the same total: with an issuer that charges a
    /// swap fee, use [`Wallet::swap_request`] with outputs worth the coins less the fee.
    pub fn identified_swap_request<G: CryptoRng + ?Sized>(
        &mut self,
        currency: Currency,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<Option<Unreleased<SwapRequest>>> {
        let directory = self.directory()?;
        // Those the issuer still accepts: one it refuses would refuse the whole swap.
        let mut indices: Vec<usize> = (0..self.state.coins.len())
            .filter(|i| match &self.state.coins[*i] {
                Coin::Identified(c) => {
                    c.payload.amount.currency == currency && c.verify_in(directory, now).is_ok()
                }
                Coin::Blind(_) => false,
            })
            .collect();
        if indices.is_empty() {
            return Ok(None);
        }
        indices.sort_by_key(|i| std::cmp::Reverse(self.state.coins[*i].amount().minor_units));
        indices.truncate(MAX_COINS_PER_SWAP);
        let total = self.total_of(&indices, currency)?;
        let keyset = self.current_keyset(currency, now)?;
        let outputs = ladder(total, &descending(&keyset), MAX_COINS_PER_SWAP)
            .filter(|v| !v.is_empty())
            .ok_or(WalletError::NoCoinsMake(Amount::new(total, currency)))?;
        self.start_swap(indices, &keyset, &outputs, rng).map(Some)
    }

    /// A pending swap (`request`, as the swap functions returned it or
    /// [`Wallet::pending_swaps`] lists it), signed by this device: how a swap that hands
    /// in identified coins is sent (`POST /v1/device-swaps`). Any pending swap may be
    /// sent this way; the answer is the same [`SwapReceipt`] for `request`. After a lost
    /// answer, sign it again (a new time and nonce, the same swap) and send that.
    pub fn sign_swap<G: CryptoRng + ?Sized>(
        &self,
        request: &SwapRequest,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<DeviceSwapRequest> {
        self.pending_swap(request)?;
        let account = &self.registered()?.payload;
        Ok(DeviceSwapRequest::sign(
            DeviceSwapRequestPayload {
                account_id: account.account_id,
                device_id: account.device_id,
                swap: request.clone(),
                created_at: now,
                nonce: nonce(rng),
            },
            &self.key,
            rng,
        )?)
    }

    /// Takes the issuer's signed answer to a pending swap. Swapped: the new coins are
    /// unblinded, verified and kept. Double spent: the coins the issuer names are dropped
    /// (someone spent them first) and the others come back. Either way the swap is no
    /// longer pending. A receipt that does not verify changes nothing.
    pub fn on_swap_receipt(
        &mut self,
        request: &SwapRequest,
        receipt: &SwapReceipt,
        now: Timestamp,
    ) -> Result<SwapResult> {
        let index = self.pending_swap(request)?;
        let payload = receipt
            .verify_for(request, self.directory()?, now)
            .map_err(WalletError::UnverifiedAnswer)?;
        let result = match &payload.outcome {
            SwapOutcome::Swapped {
                keyset_id,
                signatures,
            } => self.keep_swapped(index, *keyset_id, signatures, now)?,
            SwapOutcome::DoubleSpent {
                first_redeemed_at,
                coins,
            } => {
                let (spent, kept): (Vec<&Coin>, Vec<&Coin>) =
                    request.coins.iter().partition(|c| coins.contains(&c.id()));
                let returned: Vec<CoinId> = kept.iter().map(|c| c.id()).collect();
                self.state.coins.extend(kept.into_iter().cloned());
                SwapResult::DoubleSpent {
                    spent: spent.iter().map(|c| c.id()).collect(),
                    returned,
                    first_redeemed_at: *first_redeemed_at,
                }
            }
        };
        self.state.swaps.remove(index);
        self.touch();
        Ok(result)
    }

    /// The swaps sent and not answered yet: after a lost answer or a restart, send each
    /// again, unchanged (one that hands in identified coins signed again with
    /// [`Wallet::sign_swap`], as every time). (Outputs made for a merchant's take are not
    /// among them:
    /// [`Wallet::pending_swap_outputs`].)
    pub fn pending_swaps(&self) -> Vec<SwapRequest> {
        self.state
            .swaps
            .iter()
            .filter(|p| !p.request.coins.is_empty())
            .map(|p| p.request.clone())
            .collect()
    }

    /// New coins for a swap whose coins someone else hands in: a merchant taking the coin
    /// payments it accepted into this wallet (`scrip_merchant::Merchant::take_coins`).
    /// Blinds coins worth `total` of the current keyset in the default mix
    /// ([`DEFAULT_MIX`]: the merchant pays other merchants with them, offline) and keeps
    /// the secrets: save before releasing. The result is a [`SwapRequest`] with no coins,
    /// whose `request_key`, `keyset_id` and `outputs` the merchant's request carries.
    pub fn swap_outputs<G: CryptoRng + ?Sized>(
        &mut self,
        total: Amount,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<Unreleased<SwapRequest>> {
        let keyset = self.current_keyset(total.currency, now)?;
        let values = ladder(total.minor_units, &descending(&keyset), MAX_COINS_PER_SWAP)
            .filter(|v| !v.is_empty())
            .ok_or(WalletError::NoCoinsMake(total))?;
        let pending = blind(&keyset, &values, rng)?;
        Ok(self.pend_swap(Vec::new(), &keyset, pending, rng))
    }

    /// Outputs made with [`Wallet::swap_outputs`] whose outcome has not been applied yet.
    pub fn pending_swap_outputs(&self) -> Vec<SwapRequest> {
        self.state
            .swaps
            .iter()
            .filter(|p| p.request.coins.is_empty())
            .map(|p| p.request.clone())
            .collect()
    }

    /// Takes the outcome of a merchant's take for `outputs` (from
    /// `scrip_merchant::Merchant::apply_take_receipt`, which checked the issuer's signed
    /// receipt). Swapped: the new coins are unblinded, each verified against the key
    /// directory (a signature that does not make a valid coin is refused, nothing
    /// changes), and kept. Double spent: nothing was signed; the outputs are dropped.
    pub fn on_merchant_swap(
        &mut self,
        outputs: &SwapRequest,
        outcome: &SwapOutcome,
        now: Timestamp,
    ) -> Result<SwapResult> {
        let index = self
            .state
            .swaps
            .iter()
            .position(|p| p.request == *outputs && p.request.coins.is_empty())
            .ok_or(WalletError::UnrequestedWithdrawal)?;
        let result = match outcome {
            SwapOutcome::Swapped {
                keyset_id,
                signatures,
            } => self.keep_swapped(index, *keyset_id, signatures, now)?,
            SwapOutcome::DoubleSpent {
                first_redeemed_at,
                coins,
            } => SwapResult::DoubleSpent {
                spent: coins.clone(),
                returned: Vec::new(),
                first_redeemed_at: *first_redeemed_at,
            },
        };
        self.state.swaps.remove(index);
        self.touch();
        Ok(result)
    }

    /// Gives up a pending swap the issuer *refused* (or outputs whose merchant take was
    /// refused) (an error answer: a stale key
    /// directory, a fee the outputs did not leave room for): its coins come back to the
    /// purse. Never after a lost answer: the issuer may have swapped the coins, and the
    /// only way to the new ones is sending the request again.
    pub fn cancel_swap(&mut self, request: &SwapRequest) -> Result<Vec<CoinId>> {
        let index = self.pending_swap(request)?;
        let pending = self.state.swaps.remove(index);
        let ids = pending.request.coins.iter().map(Coin::id).collect();
        self.state
            .coins
            .extend(pending.request.coins.iter().cloned());
        self.touch();
        Ok(ids)
    }

    /// Unblinds the new coins of the pending swap at `index` with the issuer's
    /// `signatures` (each coin verified against the directory) and keeps them.
    fn keep_swapped(
        &mut self,
        index: usize,
        keyset_id: scrip_tokens::KeysetId,
        signatures: &[scrip_tokens::BlindSignature],
        now: Timestamp,
    ) -> Result<SwapResult> {
        let pending = &self.state.swaps[index];
        let response = BlindWithdrawalResponse {
            keyset_id,
            signatures: signatures.to_vec(),
        };
        let coins = self.unblind(pending.request.keyset_id, &pending.coins, &response, now)?;
        let ids = coins.iter().map(Coin::id).collect();
        self.state.coins.extend(coins);
        Ok(SwapResult::Swapped { coins: ids })
    }

    /// Where `request` is among the pending swaps.
    fn pending_swap(&self, request: &SwapRequest) -> Result<usize> {
        self.state
            .swaps
            .iter()
            .position(|p| p.request == *request)
            .ok_or(WalletError::UnrequestedWithdrawal)
    }

    /// The current keyset of `currency`, from the cached directory.
    fn current_keyset(&self, currency: Currency, now: Timestamp) -> Result<Keyset> {
        self.directory()?
            .current_keyset(currency, now)
            .cloned()
            .ok_or(WalletError::NoOpenKeyset(currency))
    }

    /// The total of the held coins at `indices`, all of which must be in `currency`.
    fn total_of(&self, indices: &[usize], currency: Currency) -> Result<u64> {
        let mut total = 0u64;
        for i in indices {
            let amount = self.state.coins[*i].amount();
            if amount.currency != currency {
                return Err(scrip_tokens::Error::CurrencyMismatch {
                    expected: currency,
                    found: amount.currency,
                }
                .into());
            }
            total = total
                .checked_add(amount.minor_units)
                .ok_or(scrip_tokens::Error::AmountOverflow)?;
        }
        Ok(total)
    }

    /// Blinds new coins worth `values` of `keyset`, moves the coins at `indices` out of
    /// the purse into the pending swap, and returns the request.
    fn start_swap<G: CryptoRng + ?Sized>(
        &mut self,
        mut indices: Vec<usize>,
        keyset: &Keyset,
        values: &[u64],
        rng: &mut G,
    ) -> Result<Unreleased<SwapRequest>> {
        if indices.is_empty() || values.is_empty() {
            return Err(WalletError::EmptyWithdrawal);
        }
        if indices.len() > MAX_COINS_PER_SWAP || values.len() > MAX_COINS_PER_SWAP {
            return Err(WalletError::TooManyCoins {
                needed: indices.len().max(values.len()),
                max: MAX_COINS_PER_SWAP,
            });
        }
        // Blinded first: if that fails, no coin has left the purse.
        let pending = blind(keyset, values, rng)?;
        // Remove from the back so the earlier indices stay valid.
        indices.sort_unstable_by(|a, b| b.cmp(a));
        let mut coins: Vec<Coin> = indices
            .iter()
            .map(|i| self.state.coins.remove(*i))
            .collect();
        coins.reverse();
        Ok(self.pend_swap(coins, keyset, pending, rng))
    }

    /// Keeps `coins` (handed in, already out of the purse) and the new coins `pending` as a
    /// pending swap; returns the request.
    fn pend_swap<G: CryptoRng + ?Sized>(
        &mut self,
        coins: Vec<Coin>,
        keyset: &Keyset,
        pending: Vec<PendingCoin>,
        rng: &mut G,
    ) -> Unreleased<SwapRequest> {
        let mut request_key = [0u8; 32];
        rng.fill_bytes(&mut request_key);
        let request = SwapRequest {
            request_key,
            coins,
            keyset_id: keyset.id(),
            outputs: pending
                .iter()
                .map(|c| (c.amount().minor_units, c.blinded().clone()))
                .collect(),
        };
        self.state.swaps.push(PendingSwap {
            request: request.clone(),
            coins: pending,
        });
        self.unreleased(request)
    }
}

/// New coins worth `values` of `keyset`, blinded.
fn blind<G: CryptoRng + ?Sized>(
    keyset: &Keyset,
    values: &[u64],
    rng: &mut G,
) -> Result<Vec<PendingCoin>> {
    let currency = keyset.currency();
    Ok(values
        .iter()
        .map(|v| PendingCoin::new(rng, keyset, Amount::new(*v, currency)))
        .collect::<Result<Vec<_>, _>>()?)
}

/// The keyset's denominations, largest first.
fn descending(keyset: &Keyset) -> Vec<u64> {
    let mut values: Vec<u64> = keyset
        .denominations()
        .iter()
        .map(|d| d.minor_units)
        .collect();
    values.sort_unstable_by(|a, b| b.cmp(a));
    values
}

/// Whether coins worth `held` pay each of `amounts` in turn with exact change.
fn pays_in_turn(mut held: Vec<u64>, amounts: &[u64]) -> bool {
    for amount in amounts {
        match exact_change(&held, *amount) {
            Change::Exact(mut picked) => {
                picked.sort_unstable_by(|a, b| b.cmp(a));
                for i in picked {
                    held.swap_remove(i);
                }
            }
            Change::Impossible { .. } => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coins_that_pay_every_expected_amount_in_turn_need_no_change() {
        assert!(pays_in_turn(vec![5, 2, 2, 1], &[5, 4, 1]));
        assert!(pays_in_turn(vec![5, 2, 2, 1], &[5, 5]));
        assert!(!pays_in_turn(vec![5, 2, 2, 1], &[5, 5, 1]));
        assert!(!pays_in_turn(vec![10], &[3]));
        assert!(pays_in_turn(vec![], &[]));
    }
}
