//! The pending-deposit flow: signed request, funds collected, account credited, signed
//! deposit record returned; the device's confirmation recorded later.

use rand_core::CryptoRng;
use scrip_stores::{ClaimId, Claimant, LedgerAccount, Posting, RecordStore, Unit, Write};
use scrip_tokens::{
    codec, DepositConfirmation, DepositRecord, DepositRecordPayload, DepositRequest,
    DepositRequestPayload, Timestamp,
};

use crate::authentication::Authenticated;
use crate::idempotency::{impossible_outcome, Answered, Idempotent};
use crate::schema::{funding_account, DEPOSITS, DEPOSIT_CONFIRMATION, DEPOSIT_CONFIRMATIONS};
use crate::{encode, FundingSource, Issuer, IssuerError, Result};

/// What a deposit id stands for (its idempotency digest).
#[derive(serde::Serialize, serde::Deserialize)]
struct DepositIdentity {
    deposit_id: scrip_tokens::DepositId,
    account_id: scrip_tokens::AccountId,
    device_id: scrip_tokens::DeviceId,
    amount: scrip_tokens::Amount,
}
impl scrip_tokens::Message for DepositIdentity {
    const TAG: &'static str = "scrip/issuer/deposit-identity/v1";
    const VERSION: u16 = 1;
}

/// A deposit is credited once per deposit id, and the signed deposit record is its answer.
/// The claim stands for what the deposit is, not when it was signed: PSS signatures are
/// randomized and the transport refuses replayed requests, so a retry is signed again (new
/// time) and must still be recognised as the same deposit.
fn deposit_idempotency(payload: &DepositRequestPayload) -> Result<Idempotent> {
    Ok(Idempotent {
        claim: ClaimId::Deposit(payload.deposit_id),
        digest: codec::digest(&DepositIdentity {
            deposit_id: payload.deposit_id,
            account_id: payload.account_id,
            device_id: payload.device_id,
            amount: payload.amount,
        })?,
        answers: DEPOSITS,
        answer_key: payload.deposit_id.as_bytes().to_vec(),
    })
}

impl<S: RecordStore, F: FundingSource> Issuer<S, F> {
    /// Credits a deposit: verifies the device's signed request, collects the funds from
    /// the [`FundingSource`], credits the account and returns the signed deposit record.
    /// Idempotent per deposit id: a retry returns the same record and credits once.
    /// Deposits are accepted for frozen accounts (they repay debt); not from revoked
    /// devices.
    pub async fn deposit<G: CryptoRng + Send + ?Sized>(
        &self,
        request: &DepositRequest,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<DepositRecord> {
        let request = self.authenticate(request).await?;
        self.deposit_authenticated(request, now, rng).await
    }

    /// [`Self::deposit`] for a request whose signature was checked.
    pub async fn deposit_authenticated<G: CryptoRng + Send + ?Sized>(
        &self,
        request: Authenticated<'_, DepositRequest>,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<DepositRecord> {
        let device = request.signer();
        let request = request.request();
        let payload = &request.payload;
        self.check_unrevoked(device, payload.account_id, now)
            .await?;
        if payload.amount.is_zero() {
            return Err(IssuerError::Unsupported("a deposit of zero"));
        }
        if !self.keys().currencies().contains(&payload.amount.currency) {
            return Err(IssuerError::Unsupported("currency not served"));
        }
        let idempotent = deposit_idempotency(payload)?;
        if let Some(record) = self.previous_answer(&idempotent).await? {
            return Ok(record);
        }
        self.funding
            .collect(payload.deposit_id, payload.account_id, payload.amount)
            .await?;
        let record = DepositRecord::sign(
            DepositRecordPayload {
                request: request.clone(),
                credited_at: now,
            },
            &self.keys().deposit_issuer.current(now)?.key,
            rng,
        )?;
        let unit = Unit::new(Claimant::Account(payload.account_id), now).post(Posting::transfer(
            funding_account(),
            LedgerAccount::Customer(payload.account_id),
            payload.amount,
            "deposit",
        ));
        match self.commit_answered(unit, &idempotent, record).await? {
            Answered::Answer(record) => Ok(record),
            // The deposit's claim is the unit's only one, and it has no floor.
            Answered::NotApplied(other) => Err(impossible_outcome("deposit", &other)),
        }
    }

    /// Records the device's confirmation that it stored a deposit record (sent directly, or
    /// found in its synced history). Idempotent.
    pub async fn confirm_deposit(
        &self,
        confirmation: &DepositConfirmation,
        now: Timestamp,
    ) -> Result<()> {
        let confirmation = self.authenticate(confirmation).await?;
        self.confirm_deposit_authenticated(confirmation, now).await
    }

    /// [`Self::confirm_deposit`] for a confirmation whose signature was checked.
    pub async fn confirm_deposit_authenticated(
        &self,
        confirmation: Authenticated<'_, DepositConfirmation>,
        now: Timestamp,
    ) -> Result<()> {
        let device = confirmation.signer();
        let confirmation = confirmation.request();
        let payload = &confirmation.payload;
        if device.certificate.payload.account_id != payload.account_id {
            return Err(scrip_tokens::Error::WrongAccount.into());
        }
        let record: DepositRecord = self
            .doc(DEPOSITS, payload.deposit_id.as_bytes())
            .await?
            .ok_or(IssuerError::Unsupported(
                "confirmation of an unknown deposit",
            ))?;
        if record.payload.request.payload.account_id != payload.account_id {
            return Err(scrip_tokens::Error::WrongAccount.into());
        }
        if codec::digest(&record)? != payload.deposit_record_digest {
            return Err(scrip_tokens::Error::InvalidField {
                field: "deposit_record_digest",
                reason: "does not match the issued deposit record",
            }
            .into());
        }
        let unit = Unit::new(Claimant::Device(payload.device_id), now)
            .claim(
                DEPOSIT_CONFIRMATION.claim(payload.deposit_id.as_bytes().to_vec()),
                codec::digest(confirmation)?,
            )
            .write(Write::put(
                DEPOSIT_CONFIRMATIONS,
                payload.deposit_id.as_bytes().to_vec(),
                encode(confirmation)?,
            ));
        // A second, different confirmation of the same deposit changes nothing: the first
        // one stands.
        self.store.commit(unit).await?;
        Ok(())
    }

    /// The device's confirmation of a deposit, if recorded.
    pub async fn deposit_confirmation(
        &self,
        deposit: scrip_tokens::DepositId,
    ) -> Result<Option<DepositConfirmation>> {
        self.doc(DEPOSIT_CONFIRMATIONS, deposit.as_bytes()).await
    }
}

#[cfg(test)]
mod tests {
    use scrip_tokens::{AccountId, Amount, Currency, DepositId, DeviceId};

    use super::*;

    fn payload() -> DepositRequestPayload {
        DepositRequestPayload {
            deposit_id: DepositId(uuid::Uuid::from_u128(1)),
            account_id: AccountId(uuid::Uuid::from_u128(2)),
            device_id: DeviceId(uuid::Uuid::from_u128(3)),
            amount: Amount::new(500, Currency::EUR),
            created_at: Timestamp::from_unix_millis(1_000),
        }
    }

    #[test]
    fn a_deposit_signed_again_later_is_credited_once() {
        let mut retry = payload();
        retry.created_at = Timestamp::from_unix_millis(61_000);
        let (first, retry) = (
            deposit_idempotency(&payload()).unwrap(),
            deposit_idempotency(&retry).unwrap(),
        );
        assert_eq!((&first.claim, first.digest), (&retry.claim, retry.digest));
    }

    #[test]
    fn another_amount_under_a_used_deposit_id_is_another_request() {
        let mut other = payload();
        other.amount = Amount::new(501, Currency::EUR);
        let (first, other) = (
            deposit_idempotency(&payload()).unwrap(),
            deposit_idempotency(&other).unwrap(),
        );
        assert_eq!(first.claim, other.claim);
        assert_ne!(first.digest, other.digest);
    }
}
