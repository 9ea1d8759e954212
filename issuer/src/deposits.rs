//! The pending-deposit flow: signed request, funds collected, account credited, signed
//! deposit record returned; the device's confirmation recorded later.

use rand_core::CryptoRng;
use scrip_stores::{
    ClaimId, Claimant, CommitOutcome, LedgerAccount, Posting, RecordStore, Unit, Write,
};
use scrip_tokens::{
    codec, DepositConfirmation, DepositRecord, DepositRecordPayload, DepositRequest, Timestamp,
};

use crate::authentication::Authenticated;
use crate::docs::{funding_account, DEPOSITS, DEPOSIT_CONFIRMATIONS};
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
        let claim = ClaimId::Deposit(payload.deposit_id);
        // What the deposit is, not when it was signed: PSS signatures are randomized and
        // the transport refuses replayed requests, so a retry is signed again (new time)
        // and must still be recognised as the same deposit.
        let digest = codec::digest(&DepositIdentity {
            deposit_id: payload.deposit_id,
            account_id: payload.account_id,
            device_id: payload.device_id,
            amount: payload.amount,
        })?;
        if let Some(Some(existing)) = self.store.claims(std::slice::from_ref(&claim)).await?.pop() {
            return if existing.digest == digest {
                self.stored_deposit(request).await
            } else {
                Err(IssuerError::IdempotencyKeyReused)
            };
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
        let unit = Unit::new(Claimant::Account(payload.account_id), now)
            .claim(claim, digest)
            .post(Posting::transfer(
                funding_account(),
                LedgerAccount::Customer(payload.account_id),
                payload.amount,
                "deposit",
            ))
            .write(Write::put(
                DEPOSITS,
                payload.deposit_id.as_bytes().to_vec(),
                encode(&record)?,
            ));
        match self.store.commit(unit).await? {
            CommitOutcome::Committed => Ok(record),
            CommitOutcome::Repeated { .. } => self.stored_deposit(request).await,
            _ => Err(IssuerError::IdempotencyKeyReused),
        }
    }

    async fn stored_deposit(&self, request: &DepositRequest) -> Result<DepositRecord> {
        self.doc(DEPOSITS, request.payload.deposit_id.as_bytes())
            .await?
            .ok_or(IssuerError::Corrupted(
                "claimed deposit without record".into(),
            ))
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
                ClaimId::Custom {
                    namespace: "deposit-confirmation".into(),
                    key: payload.deposit_id.as_bytes().to_vec(),
                },
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
