//! Coins: blind and identified withdrawals, reissued coins, what the wallet holds.

use rand_core::CryptoRng;
use scrip_tokens::{
    Amount, BlindWithdrawalRequest, BlindWithdrawalRequestPayload, BlindWithdrawalResponse, Coin,
    CoinId, Currency, IdentifiedWithdrawalRequest, IdentifiedWithdrawalRequestPayload,
    IdentifiedWithdrawalResponse, KeysetId, PendingCoin, Timestamp,
};

use crate::state::PendingBlindWithdrawal;
use crate::{coin_values, nonce, Result, Unreleased, Wallet, WalletError};

impl Wallet {
    /// A blind withdrawal of coins worth `values` (one currency; denominations of its
    /// current keyset). The blinding secrets are kept (save before releasing!) until the
    /// answer.
    pub fn blind_withdrawal_request<G: CryptoRng + ?Sized>(
        &mut self,
        values: &[Amount],
        now: Timestamp,
        rng: &mut G,
    ) -> Result<Unreleased<BlindWithdrawalRequest>> {
        let (currency, amounts) = coin_values(values)?;
        let account = self.registered()?.payload.clone();
        let keyset = self
            .directory()?
            .current_keyset(currency, now)
            .ok_or(WalletError::NoOpenKeyset(currency))?
            .clone();
        let coins = amounts
            .iter()
            .map(|v| PendingCoin::new(rng, &keyset, Amount::new(*v, currency)))
            .collect::<Result<Vec<_>, _>>()?;
        let mut idempotency_key = [0u8; 32];
        rng.fill_bytes(&mut idempotency_key);
        let request = BlindWithdrawalRequest::sign(
            BlindWithdrawalRequestPayload {
                account_id: account.account_id,
                device_id: account.device_id,
                keyset_id: keyset.id(),
                coins: coins
                    .iter()
                    .map(|c| (c.amount().minor_units, c.blinded().clone()))
                    .collect(),
                idempotency_key,
                created_at: now,
                nonce: nonce(rng),
            },
            &self.key,
            rng,
        )?;
        self.state.blind_withdrawals.push(PendingBlindWithdrawal {
            request: request.clone(),
            coins,
        });
        Ok(self.unreleased(request))
    }

    /// Unblinds the issuer's answer into coins, verifies each against the key directory,
    /// and keeps them. Returns the new coins' ids.
    pub fn on_blind_withdrawal(
        &mut self,
        request: &BlindWithdrawalRequest,
        response: &BlindWithdrawalResponse,
        now: Timestamp,
    ) -> Result<Vec<CoinId>> {
        let index = self
            .state
            .blind_withdrawals
            .iter()
            .position(|p| p.request == *request)
            .ok_or(WalletError::UnrequestedWithdrawal)?;
        let pending = &self.state.blind_withdrawals[index];
        let coins = self.unblind(request.payload.keyset_id, &pending.coins, response, now)?;
        let ids = coins.iter().map(Coin::id).collect();
        self.state.coins.extend(coins);
        self.state.blind_withdrawals.remove(index);
        self.touch();
        Ok(ids)
    }

    /// The coins `pending` asked `keyset_id` for, unblinded with the issuer's
    /// `response` and each verified against the key directory.
    pub(crate) fn unblind(
        &self,
        keyset_id: KeysetId,
        pending: &[PendingCoin],
        response: &BlindWithdrawalResponse,
        now: Timestamp,
    ) -> Result<Vec<Coin>> {
        if response.signatures.len() != pending.len() || response.keyset_id != keyset_id {
            return Err(WalletError::MismatchedWithdrawal);
        }
        let directory = self.directory()?;
        let keyset = directory.keyset(response.keyset_id)?;
        let mut coins = Vec::with_capacity(pending.len());
        for (p, signature) in pending.iter().zip(&response.signatures) {
            let key = keyset.key_for(p.amount().minor_units)?;
            let coin = Coin::Blind(
                p.finalize(key, signature)
                    .map_err(|_| WalletError::BadCoin(p.coin_id()))?,
            );
            coin.verify(directory, now)
                .map_err(|_| WalletError::BadCoin(coin.id()))?;
            coins.push(coin);
        }
        Ok(coins)
    }

    /// An identified withdrawal of coins worth `values` (one currency; the issuer picks
    /// ids and writes the account's virtual id into them).
    pub fn identified_withdrawal_request<G: CryptoRng + ?Sized>(
        &mut self,
        values: &[Amount],
        now: Timestamp,
        rng: &mut G,
    ) -> Result<Unreleased<IdentifiedWithdrawalRequest>> {
        let (currency, amounts) = coin_values(values)?;
        let account = self.registered()?.payload.clone();
        let mut idempotency_key = [0u8; 32];
        rng.fill_bytes(&mut idempotency_key);
        let request = IdentifiedWithdrawalRequest::sign(
            IdentifiedWithdrawalRequestPayload {
                account_id: account.account_id,
                device_id: account.device_id,
                currency,
                amounts,
                idempotency_key,
                created_at: now,
                nonce: nonce(rng),
            },
            &self.key,
            rng,
        )?;
        self.state.identified_withdrawals.push(request.clone());
        Ok(self.unreleased(request))
    }

    /// Verifies and keeps the identified coins the issuer returned.
    pub fn on_identified_withdrawal(
        &mut self,
        request: &IdentifiedWithdrawalRequest,
        response: &IdentifiedWithdrawalResponse,
        now: Timestamp,
    ) -> Result<Vec<CoinId>> {
        let index = self
            .state
            .identified_withdrawals
            .iter()
            .position(|p| p == request)
            .ok_or(WalletError::UnrequestedWithdrawal)?;
        let amounts: Vec<u64> = response
            .coins
            .iter()
            .map(|c| c.payload.amount.minor_units)
            .collect();
        if amounts != request.payload.amounts {
            return Err(WalletError::MismatchedWithdrawal);
        }
        let directory = self.directory()?;
        let mut coins = Vec::new();
        for coin in &response.coins {
            let coin = Coin::Identified(coin.clone());
            coin.verify(directory, now)
                .map_err(|_| WalletError::BadCoin(coin.id()))?;
            if coin.amount().currency != request.payload.currency {
                return Err(WalletError::BadCoin(coin.id()));
            }
            coins.push(coin);
        }
        let ids = coins.iter().map(Coin::id).collect();
        self.state.coins.extend(coins);
        self.state.identified_withdrawals.remove(index);
        self.touch();
        Ok(ids)
    }

    /// Takes identified coins the issuer reissued to this device (after another device of
    /// the account was lost): keeps those that verify and are not held yet.
    pub fn accept_reissued_coins(
        &mut self,
        coins: &[scrip_tokens::IdentifiedCoin],
        now: Timestamp,
    ) -> Result<Vec<CoinId>> {
        let directory = self.directory()?;
        let mut added = Vec::new();
        for coin in coins {
            let coin = Coin::Identified(coin.clone());
            coin.verify(directory, now)
                .map_err(|_| WalletError::BadCoin(coin.id()))?;
            if !self.holds(coin.id()) {
                added.push(coin);
            }
        }
        let ids = added.iter().map(Coin::id).collect();
        self.state.coins.extend(added);
        self.touch();
        Ok(ids)
    }

    /// True if the coin is held, in flight to a merchant, or handed in to a pending swap.
    pub(crate) fn holds(&self, id: CoinId) -> bool {
        self.state.coins.iter().any(|c| c.id() == id)
            || self
                .state
                .coins_in_flight
                .iter()
                .any(|f| f.coins.iter().any(|c| c.id() == id))
            || self
                .state
                .swaps
                .iter()
                .any(|s| s.request.coins.iter().any(|c| c.id() == id))
    }

    /// The coins held (not counting coins handed to a merchant awaiting its reply).
    pub fn coins(&self) -> &[Coin] {
        &self.state.coins
    }

    /// Total value of the coins held in `currency`.
    pub fn coin_total(&self, currency: Currency) -> Amount {
        let total = self
            .state
            .coins
            .iter()
            .map(Coin::amount)
            .filter(|a| a.currency == currency)
            .fold(0u64, |acc, a| acc.saturating_add(a.minor_units));
        Amount::new(total, currency)
    }
}
