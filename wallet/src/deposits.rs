//! Deposits: asking the issuer to credit the account, and confirming its record.

use rand_core::CryptoRng;
use scrip_tokens::{
    codec, Amount, DepositConfirmation, DepositConfirmationPayload, DepositId, DepositRecord,
    DepositRequest, DepositRequestPayload, Timestamp,
};

use crate::state::DepositState;
use crate::{Result, Unreleased, Wallet, WalletError};

impl Wallet {
    /// A deposit request (kept until the issuer's record arrives; to retry, sign it again
    /// with [`Wallet::resign_deposit_request`]: the issuer credits a deposit id once).
    pub fn deposit_request<G: CryptoRng + ?Sized>(
        &mut self,
        amount: Amount,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<Unreleased<DepositRequest>> {
        if amount.is_zero() {
            return Err(WalletError::ZeroDeposit);
        }
        let account = self.registered()?.payload.clone();
        let request = DepositRequest::sign(
            DepositRequestPayload {
                deposit_id: DepositId::random(rng),
                account_id: account.account_id,
                device_id: account.device_id,
                amount,
                created_at: now,
            },
            &self.key,
            rng,
        )?;
        self.state.pending_deposits.push(request.clone());
        Ok(self.unreleased(request))
    }

    /// Signs a pending deposit request again at `now` for a retry after a timeout: the
    /// issuer refuses replayed bytes, and credits a deposit id once whatever the time it
    /// was signed at.
    pub fn resign_deposit_request<G: CryptoRng + ?Sized>(
        &mut self,
        deposit_id: DepositId,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<Unreleased<DepositRequest>> {
        let index = self
            .state
            .pending_deposits
            .iter()
            .position(|r| r.payload.deposit_id == deposit_id)
            .ok_or(WalletError::UnknownDeposit(deposit_id))?;
        let mut payload = self.state.pending_deposits[index].payload.clone();
        payload.created_at = now;
        let request = DepositRequest::sign(payload, &self.key, rng)?;
        self.state.pending_deposits[index] = request.clone();
        self.touch();
        Ok(self.unreleased(request))
    }

    /// Deposit requests still waiting for the issuer's record (sign them again with
    /// [`Wallet::resign_deposit_request`] to retry).
    pub fn pending_deposits(&self) -> &[DepositRequest] {
        &self.state.pending_deposits
    }

    /// Takes the issuer's deposit record for a pending request, checks both signatures, and
    /// returns the confirmation (also handed in with the next sync or certificate request).
    pub fn on_deposit_record<G: CryptoRng + ?Sized>(
        &mut self,
        record: DepositRecord,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<DepositConfirmation> {
        let account = self.registered()?.payload.clone();
        let payload = record.verify(self.directory()?, &account, now)?;
        let index = self
            .state
            .pending_deposits
            .iter()
            .position(|r| {
                r.payload.deposit_id == payload.request.payload.deposit_id
                    && r.payload.amount == payload.request.payload.amount
            })
            .ok_or(WalletError::UnrequestedDepositRecord(
                payload.request.payload.deposit_id,
            ))?;
        let confirmation = DepositConfirmation::sign(
            DepositConfirmationPayload {
                deposit_id: payload.deposit_id(),
                account_id: account.account_id,
                device_id: account.device_id,
                deposit_record_digest: codec::digest(&record)?,
                confirmed_at: now,
            },
            &self.key,
            rng,
        )?;
        self.state.pending_deposits.remove(index);
        self.state.deposits.push(DepositState {
            record,
            confirmation: confirmation.clone(),
            acknowledged: false,
        });
        self.touch();
        Ok(confirmation)
    }

    pub(crate) fn unacknowledged_confirmations(&self) -> Vec<DepositConfirmation> {
        self.state
            .deposits
            .iter()
            .filter(|d| !d.acknowledged)
            .map(|d| d.confirmation.clone())
            .collect()
    }
}
