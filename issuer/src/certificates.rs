//! Balance certificates: issuance against the account's balance under lock rules, and
//! release of the reservation at expiry.
//!
//! Money: issuing moves `available` from the account (`Customer`) to the certificate's
//! `Reservation` ledger account, with a floor that keeps the account at or above the
//! locked amount. Because the reservation leaves the spendable balance inside one atomic
//! unit, the reservations of live certificates can never add up to more than the balance,
//! however many devices ask at once. Records under the certificate are paid from its
//! reservation; at expiry what is left goes back to the account.

use rand_core::CryptoRng;
use scrip_stores::{
    ClaimId, Claimant, CommitOutcome, Floor, LedgerAccount, Posting, RecordStore, Unit, Write,
};
use scrip_tokens::{
    codec, Amount, BalanceCertificate, BalanceCertificatePayload, BalanceCertificateRequest,
    CertificateSerial, SyncReportPayload, SyncRequest, Timestamp,
};

use crate::authentication::Authenticated;
use crate::docs::{
    key2, CertificateDoc, ReleaseDoc, CERTIFICATES, CERTIFICATE_EXPIRY, NEXT_SEQUENCE, RELEASED,
    RESPONSES,
};
use crate::redemption::RecordSubmission;
use crate::{encode, FundingSource, Issuer, IssuerError, Result, RETRIES};

/// The result of releasing one expired certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Released {
    /// The certificate.
    pub serial: CertificateSerial,
    /// What went back to the account.
    pub amount: Amount,
}

fn check_hand_ins(records: usize, confirmations: usize) -> Result<()> {
    if records > crate::MAX_HAND_INS || confirmations > crate::MAX_HAND_INS {
        return Err(IssuerError::Unsupported("too many hand-ins in one request"));
    }
    Ok(())
}

fn expiry_key(expires_at: Timestamp, serial: CertificateSerial) -> Vec<u8> {
    key2(
        &expires_at.as_unix_millis().to_be_bytes(),
        serial.as_bytes(),
    )
}

impl<S: RecordStore, F: FundingSource> Issuer<S, F> {
    /// Issues a balance certificate (SPEC section 4). First records the withdrawal
    /// records and deposit confirmations the device hands in; then computes
    /// `available = balance - locked` (capped by the request and the issuer's limits) and
    /// reserves it. A retry (same nonce and content, signed again at a later time)
    /// returns the same certificate and reserves once.
    pub async fn issue_balance_certificate<G: CryptoRng + Send + ?Sized>(
        &self,
        request: &BalanceCertificateRequest,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<BalanceCertificate> {
        let request = self.authenticate(request).await?;
        self.issue_balance_certificate_authenticated(request, now, rng)
            .await
    }

    /// [`Self::issue_balance_certificate`] for a request whose signature was checked.
    pub async fn issue_balance_certificate_authenticated<G: CryptoRng + Send + ?Sized>(
        &self,
        request: Authenticated<'_, BalanceCertificateRequest>,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<BalanceCertificate> {
        let device = request.signer();
        let request = request.request();
        let payload = &request.payload;
        // A frozen account gets no certificate, but its device's hand-ins are still
        // recorded first: they settle merchants and are evidence.
        self.check_unrevoked(device, payload.account_id, now)
            .await?;
        let account_id = payload.account_id;
        let device_id = payload.device_id;
        if !self.keys().currencies().contains(&payload.currency) {
            return Err(IssuerError::Unsupported("currency not served"));
        }
        // The nonce is the request's idempotency key: a retry is signed again (the
        // transport refuses replayed bytes) with the same nonce and a new time, and gets
        // the certificate of the first attempt. The same nonce with other content is
        // refused.
        let request_digest = {
            let mut identity = payload.clone();
            identity.created_at = Timestamp::from_unix_millis(0);
            codec::digest(&identity)?
        };
        let idempotency = ClaimId::Idempotency {
            scope: *device_id.as_uuid(),
            key: scrip_tokens::ContentDigest::of(&payload.nonce).0,
        };
        let response_key = key2(b"certificate/", &idempotency.key_bytes());
        if let Some(Some(held)) = self
            .store
            .claims(std::slice::from_ref(&idempotency))
            .await?
            .pop()
        {
            if held.digest != request_digest {
                return Err(IssuerError::IdempotencyKeyReused);
            }
            return self.stored_certificate(&response_key).await;
        }

        check_hand_ins(
            payload.unsent_records.len(),
            payload.deposit_confirmations.len(),
        )?;
        // Hand-ins first: they may consume balance (late records) or freeze the account.
        let outcomes = self
            .hand_in_records(device_id, &payload.unsent_records, now)
            .await?;
        for (record, outcome) in payload.unsent_records.iter().zip(&outcomes) {
            if let scrip_tokens::RedemptionOutcome::Invalid { reason } = outcome {
                tracing::warn!(code = %reason.code, error = %reason.message, record = %record.payload.record_id, "customer copy of a record refused");
            }
        }
        for confirmation in &payload.deposit_confirmations {
            if let Err(e) = self.confirm_deposit(confirmation, now).await {
                tracing::warn!(error = %e, "deposit confirmation in a certificate request refused");
            }
        }
        if self.frozen(account_id).await?.is_some() {
            return Err(IssuerError::AccountFrozen(account_id));
        }

        let currency = payload.currency;
        let keys = self.keys();
        let config = &self.config;
        for _ in 0..RETRIES {
            let balance = self.balance(account_id, currency).await?;
            let balance = u64::try_from(balance).unwrap_or(0);
            let locked = payload.lock.locked(balance, now)?;
            let mut available = balance
                .saturating_sub(locked)
                .min(config.max_certificate_amount);
            if let Some(requested) = payload.requested_amount {
                available = available.min(requested);
            }
            if available == 0 {
                return Err(IssuerError::NothingAvailable);
            }
            let cap = payload
                .per_payment_cap
                .unwrap_or(u64::MAX)
                .min(config.max_per_payment_cap)
                .min(available);
            let max_payments = payload
                .max_payments
                .unwrap_or(u32::MAX)
                .min(config.max_payments_per_certificate)
                .max(1);
            let first_sequence = self.next_sequence(device_id).await?;
            let serial = CertificateSerial::random(rng);
            let signer = keys.balance_certifier.current(now)?;
            let expires_at = signer.cap(now.saturating_add(config.balance_certificate_lifetime));
            let certificate = BalanceCertificate::sign(
                BalanceCertificatePayload {
                    serial,
                    account_id,
                    device_id,
                    available: Amount::new(available, currency),
                    locked: Amount::new(locked, currency),
                    issued_at: now,
                    expires_at,
                    max_payments,
                    first_sequence,
                    per_payment_cap: Amount::new(cap, currency),
                    allowed_categories: payload.lock.allowed_categories.clone(),
                    allowed_regions: payload.lock.allowed_regions.clone(),
                },
                &signer.key,
                rng,
            )?;
            let doc = CertificateDoc {
                certificate: certificate.clone(),
            };
            let next = first_sequence.checked_add(u64::from(max_payments)).ok_or(
                IssuerError::Unsupported("device sequence numbers exhausted"),
            )?;
            let customer = LedgerAccount::Customer(account_id);
            let unit = Unit::new(Claimant::Device(device_id), now)
                .claim(idempotency.clone(), request_digest)
                .claim(ClaimId::Certificate(serial), codec::digest(&certificate)?)
                // Two certificates of one device never share sequence numbers: the second
                // of two concurrent requests loses this claim and starts over.
                .claim(
                    ClaimId::Custom {
                        namespace: "sequence-range".into(),
                        key: key2(device_id.as_bytes(), &first_sequence.to_be_bytes()),
                    },
                    codec::digest(&certificate)?,
                )
                .post(Posting::transfer(
                    customer.clone(),
                    LedgerAccount::Reservation(serial),
                    Amount::new(available, currency),
                    "balance certificate",
                ))
                .floor(Floor {
                    account: customer,
                    currency,
                    min: i128::from(locked),
                })
                .write(Write::put(
                    CERTIFICATES,
                    serial.as_bytes().to_vec(),
                    encode(&doc)?,
                ))
                .write(Write::put(
                    CERTIFICATE_EXPIRY,
                    expiry_key(expires_at, serial),
                    Vec::new(),
                ))
                .write(Write::put(
                    NEXT_SEQUENCE,
                    device_id.as_bytes().to_vec(),
                    next.to_le_bytes().to_vec(),
                ))
                .write(Write::put(
                    RESPONSES,
                    response_key.clone(),
                    encode(&certificate)?,
                ));
            match self.store.commit(unit).await? {
                CommitOutcome::Committed => return Ok(certificate),
                CommitOutcome::Repeated { .. } => {
                    return self.stored_certificate(&response_key).await
                }
                CommitOutcome::Conflict(report) => {
                    let idempotency_held = report.first().is_some_and(|(_, held)| held.is_some());
                    if idempotency_held {
                        return self.stored_certificate(&response_key).await;
                    }
                    // Lost the sequence range to a concurrent request: read again.
                }
                CommitOutcome::InsufficientFunds { .. } => {
                    // The balance moved (a concurrent withdrawal or certificate): read again.
                }
            }
        }
        Err(IssuerError::NothingAvailable)
    }

    /// Records what a device hands in without asking for a certificate: its copies of the
    /// records it paid with (recorded once, whoever's copy arrives first) and its deposit
    /// confirmations. Allowed for frozen accounts (the hand-ins settle merchants).
    /// The answer is unsigned: [`Issuer::sign_answer`] signs it for the device.
    pub async fn sync(&self, request: &SyncRequest, now: Timestamp) -> Result<SyncReportPayload> {
        let request = self.authenticate(request).await?;
        self.sync_authenticated(request, now).await
    }

    /// [`Self::sync`] for a request whose signature was checked.
    pub async fn sync_authenticated(
        &self,
        request: Authenticated<'_, SyncRequest>,
        now: Timestamp,
    ) -> Result<SyncReportPayload> {
        let device = request.signer();
        let request_digest = codec::digest(request.request())?;
        let payload = &request.request().payload;
        self.check_unrevoked(device, payload.account_id, now)
            .await?;
        check_hand_ins(
            payload.unsent_records.len(),
            payload.deposit_confirmations.len(),
        )?;
        let records = self
            .hand_in_records(payload.device_id, &payload.unsent_records, now)
            .await?;
        let mut confirmations_recorded = 0;
        for confirmation in &payload.deposit_confirmations {
            match self.confirm_deposit(confirmation, now).await {
                Ok(()) => confirmations_recorded += 1,
                Err(IssuerError::Store(e)) => return Err(IssuerError::Store(e)),
                Err(e) => tracing::warn!(error = %e, "deposit confirmation in a sync refused"),
            }
        }
        Ok(SyncReportPayload {
            account_id: payload.account_id,
            device_id: payload.device_id,
            request_digest,
            records,
            confirmations_recorded,
            answered_at: now,
        })
    }

    /// Records a device's own copies of its records (all of them its own, or none is
    /// recorded), one outcome each.
    async fn hand_in_records(
        &self,
        device_id: scrip_tokens::DeviceId,
        records: &[scrip_tokens::WithdrawalRecord],
        now: Timestamp,
    ) -> Result<Vec<scrip_tokens::RedemptionOutcome>> {
        if records.iter().any(|r| r.payload.device_id != device_id) {
            return Err(scrip_tokens::Error::WrongDevice.into());
        }
        let submissions = records.iter().map(RecordSubmission::Customer).collect();
        self.record_withdrawals(submissions, now).await
    }

    async fn stored_certificate(&self, response_key: &[u8]) -> Result<BalanceCertificate> {
        self.doc(RESPONSES, response_key)
            .await?
            .ok_or(IssuerError::Corrupted(
                "certificate request without response".into(),
            ))
    }

    async fn next_sequence(&self, device_id: scrip_tokens::DeviceId) -> Result<u64> {
        match self.store.get(NEXT_SEQUENCE, device_id.as_bytes()).await? {
            None => Ok(1),
            Some(raw) => raw
                .as_slice()
                .try_into()
                .map(u64::from_le_bytes)
                .map_err(|_| IssuerError::Corrupted("next sequence".into())),
        }
    }

    /// A balance certificate the issuer signed.
    pub async fn certificate(&self, serial: CertificateSerial) -> Result<BalanceCertificate> {
        self.doc::<CertificateDoc>(CERTIFICATES, serial.as_bytes())
            .await?
            .map(|d| d.certificate)
            .ok_or(IssuerError::UnknownCertificate(serial))
    }

    /// What was released from a certificate's reservation at expiry, if it was.
    pub async fn release_of(&self, serial: CertificateSerial) -> Result<Option<ReleaseDoc>> {
        self.doc(RELEASED, serial.as_bytes()).await
    }

    /// Releases the reservations of certificates that expired at or before `now`: what
    /// their records did not consume goes back to the account. Returns what was released.
    /// Safe to run concurrently and repeatedly (each release is claimed once).
    pub async fn release_expired(&self, now: Timestamp, limit: usize) -> Result<Vec<Released>> {
        let due = self
            .store
            .scan(CERTIFICATE_EXPIRY, None, limit.min(crate::MAX_PAGE))
            .await?;
        let mut released = Vec::new();
        for (key, _) in due {
            let (Some(at), Some(serial)) = (key.get(..8), key.get(8..24)) else {
                return Err(IssuerError::Corrupted("certificate expiry key".into()));
            };
            let at = u64::from_be_bytes(
                at.try_into()
                    .map_err(|_| IssuerError::Corrupted("expiry".into()))?,
            );
            if at > now.as_unix_millis() {
                break;
            }
            let serial = CertificateSerial(uuid::Uuid::from_bytes(
                serial
                    .try_into()
                    .map_err(|_| IssuerError::Corrupted("serial".into()))?,
            ));
            if let Some(r) = self.release(serial, &key, now).await? {
                released.push(r);
            }
        }
        Ok(released)
    }

    async fn release(
        &self,
        serial: CertificateSerial,
        expiry_key: &[u8],
        now: Timestamp,
    ) -> Result<Option<Released>> {
        let certificate = self.certificate(serial).await?;
        let cert = &certificate.payload;
        let currency = cert.available.currency;
        let reservation = LedgerAccount::Reservation(serial);
        for _ in 0..RETRIES {
            let left = self.store.balance(&reservation, currency).await?;
            let left = u64::try_from(left).unwrap_or(0);
            let amount = Amount::new(left, currency);
            let mut unit = Unit::new(Claimant::Issuer, now)
                .claim(
                    ClaimId::Custom {
                        namespace: "release".into(),
                        key: serial.as_bytes().to_vec(),
                    },
                    scrip_tokens::ContentDigest::of(serial.as_bytes()),
                )
                .floor(Floor::non_negative(reservation.clone(), currency))
                .write(Write::put(
                    RELEASED,
                    serial.as_bytes().to_vec(),
                    encode(&ReleaseDoc {
                        released: amount,
                        at: now,
                    })?,
                ))
                .write(Write::delete(CERTIFICATE_EXPIRY, expiry_key.to_vec()));
            if left > 0 {
                unit = unit.post(Posting::transfer(
                    reservation.clone(),
                    LedgerAccount::Customer(cert.account_id),
                    amount,
                    "reservation released at expiry",
                ));
            }
            match self.store.commit(unit).await? {
                CommitOutcome::Committed => return Ok(Some(Released { serial, amount })),
                CommitOutcome::InsufficientFunds { .. } => continue,
                _ => {
                    // Released before (by a concurrent or earlier run): drop the index entry.
                    let cleanup = Unit::new(Claimant::Issuer, now)
                        .write(Write::delete(CERTIFICATE_EXPIRY, expiry_key.to_vec()));
                    self.store.commit(cleanup).await?;
                    return Ok(None);
                }
            }
        }
        Err(IssuerError::Store(scrip_stores::StoreError::Corrupted(
            "reservation kept changing during release".into(),
        )))
    }
}
