//! Refunds of coin payments: the merchant hands the customer a signed refund voucher (its
//! bytes, over NFC or a QR code); the wallet withdraws fresh blind coins against it. The
//! withdrawal names no account and is not signed by the device, so the issuer cannot link
//! the new coins to the customer, as for any blind withdrawal. The voucher is a bearer
//! instrument: keep its bytes like cash until the coins are in the wallet.
//!
//! The wallet holds no merchant keys, so it cannot check the merchant's signature on the
//! voucher: the issuer does, and refuses a forged one before signing anything.

use rand_core::CryptoRng;
use scrip_tokens::{
    Amount, BlindWithdrawalResponse, CoinId, PendingCoin, RefundVoucher, Timestamp,
    VoucherWithdrawalRequest,
};

use crate::state::PendingVoucherWithdrawal;
use crate::{Result, Unreleased, Wallet, WalletError};

impl Wallet {
    /// Takes a refund voucher's bytes and builds the withdrawal of fresh blind coins worth
    /// its amount (largest denominations of the current keyset first). The blinding
    /// secrets are kept (save before releasing!) until the answer, which goes to
    /// [`Wallet::on_voucher_withdrawal`]. Sending the same request again after a lost
    /// answer is safe: the issuer answers it with the same signatures.
    pub fn voucher_withdrawal_request<G: CryptoRng + ?Sized>(
        &mut self,
        voucher: &[u8],
        now: Timestamp,
        rng: &mut G,
    ) -> Result<Unreleased<VoucherWithdrawalRequest>> {
        let voucher = RefundVoucher::from_bytes(voucher)?;
        let amount = voucher.payload.amount;
        let keyset = self
            .directory()?
            .current_keyset(amount.currency, now)
            .ok_or(WalletError::NoOpenKeyset(amount.currency))?
            .clone();
        let mut denominations: Vec<u64> = keyset
            .denominations()
            .iter()
            .map(|d| d.minor_units)
            .collect();
        denominations.sort_unstable_by(|a, b| b.cmp(a));
        let values =
            split(amount.minor_units, &denominations).ok_or(WalletError::NoCoinsMake(amount))?;
        let coins = values
            .iter()
            .map(|v| PendingCoin::new(rng, &keyset, Amount::new(*v, amount.currency)))
            .collect::<Result<Vec<_>, _>>()?;
        let request = VoucherWithdrawalRequest {
            voucher,
            keyset_id: keyset.id(),
            coins: coins
                .iter()
                .map(|c| (c.amount().minor_units, c.blinded().clone()))
                .collect(),
        };
        self.state
            .voucher_withdrawals
            .push(PendingVoucherWithdrawal {
                request: request.clone(),
                coins,
            });
        Ok(self.unreleased(request))
    }

    /// The voucher withdrawals sent and not answered yet: after a lost answer or a
    /// restart, send each again, unchanged.
    pub fn pending_voucher_withdrawals(&self) -> Vec<VoucherWithdrawalRequest> {
        self.state
            .voucher_withdrawals
            .iter()
            .map(|p| p.request.clone())
            .collect()
    }

    /// Unblinds the issuer's answer to a voucher withdrawal into coins, verifies each
    /// against the key directory, and keeps them. Returns the new coins' ids.
    pub fn on_voucher_withdrawal(
        &mut self,
        request: &VoucherWithdrawalRequest,
        response: &BlindWithdrawalResponse,
        now: Timestamp,
    ) -> Result<Vec<CoinId>> {
        let index = self
            .state
            .voucher_withdrawals
            .iter()
            .position(|p| p.request == *request)
            .ok_or(WalletError::UnrequestedWithdrawal)?;
        let pending = &self.state.voucher_withdrawals[index];
        let coins = self.unblind(request.keyset_id, &pending.coins, response, now)?;
        let ids = coins.iter().map(|c| c.id()).collect();
        self.state.coins.extend(coins);
        self.state.voucher_withdrawals.remove(index);
        self.touch();
        Ok(ids)
    }
}

/// Most coins one voucher is withdrawn as: the issuer's default limit for one withdrawal.
/// The voucher's amount is not checked by anyone before the issuer sees it (the wallet
/// cannot verify the merchant's signature), so a forged voucher for an absurd amount must
/// not make the wallet blind millions of coins: it is refused here.
pub const MAX_VOUCHER_COINS: usize = 200;

fn split(amount: u64, denominations: &[u64]) -> Option<Vec<u64>> {
    crate::change::split(amount, denominations, MAX_VOUCHER_COINS)
        .filter(|values| !values.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_amount_splits_into_the_largest_denominations() {
        assert_eq!(split(18, &[10, 5, 2, 1]), Some(vec![10, 5, 2, 1]));
        assert_eq!(split(3, &[10, 5, 2]), None);
        assert_eq!(split(0, &[10, 5, 2, 1]), None);
    }

    /// Review finding: a voucher (unverifiable by the wallet) for an absurd amount made the
    /// wallet try to blind billions of coins. It is refused before any coin is made.
    #[test]
    fn an_amount_needing_more_coins_than_a_withdrawal_holds_is_refused() {
        assert_eq!(
            split(200 * 10, &[10]).map(|v| v.len()),
            Some(MAX_VOUCHER_COINS)
        );
        assert_eq!(split(200 * 10 + 1, &[10, 1]), None);
        assert_eq!(split(u64::MAX, &[20_000, 1]), None);
    }
}
