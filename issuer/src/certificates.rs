//! Balance certificates: issuance against the account's balance under lock rules, and
//! release of the reservation once the certificate's settlement window has closed.
//!
//! Money: issuing moves `available` from the account (`Customer`) to the certificate's
//! `Reservation` ledger account, with a floor that keeps the account at or above the
//! locked amount. Because the reservation leaves the spendable balance inside one atomic
//! unit, the reservations of live certificates can never add up to more than the balance,
//! however many devices ask at once. Records under the certificate are paid from its
//! reservation. The reservation is held past expiry for the published upload grace
//! ([`IssuerConfig::upload_grace`]): merchants that took records offline before expiry
//! upload them when they reconnect, and those records must find the money that was set
//! aside for them, not whatever the account holds by then. Only once `expires_at +
//! upload_grace` has passed does what is left go back to the account.

use rand_core::CryptoRng;
use scrip_stores::{
    ClaimId, Claimant, CommitOutcome, Floor, LedgerAccount, Posting, RecordStore, Unit, Write,
};
use scrip_tokens::{
    codec, Amount, BalanceCertificate, BalanceCertificatePayload, BalanceCertificateRequest,
    BalanceCertificateRequestPayload, CertificateSerial, ContentDigest, SyncReportPayload,
    SyncRequest, Timestamp,
};

use crate::authentication::Authenticated;
use crate::idempotency::{Answered, Idempotent};
use crate::redemption::RecordSubmission;
use crate::schema::{
    expiry_key, parse_expiry_key, sequence_key, CertificateDoc, RawValue, ReleaseDoc, CERTIFICATES,
    CERTIFICATE_EXPIRY, CERTIFICATE_RESPONSE, NEXT_SEQUENCE, RELEASE, RELEASED, RESPONSES,
    SEQUENCE_RANGE,
};
use crate::{encode, FundingSource, Issuer, IssuerConfig, IssuerError, Result, RETRIES};

/// The result of releasing one expired certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Released {
    /// The certificate.
    pub serial: CertificateSerial,
    /// What went back to the account.
    pub amount: Amount,
}

/// What a device hands in, from a certificate request or a sync request.
struct HandIns<'r> {
    account_id: scrip_tokens::AccountId,
    device_id: scrip_tokens::DeviceId,
    /// Digest of the request they came in: the answer names it.
    request_digest: ContentDigest,
    records: &'r [scrip_tokens::WithdrawalRecord],
    confirmations: &'r [scrip_tokens::DepositConfirmation],
}

fn check_hand_ins(records: usize, confirmations: usize) -> Result<()> {
    if records > crate::MAX_HAND_INS || confirmations > crate::MAX_HAND_INS {
        return Err(IssuerError::Unsupported("too many hand-ins in one request"));
    }
    Ok(())
}

/// What one balance certificate grants, in minor units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct CertificateTerms {
    available: u64,
    locked: u64,
    per_payment_cap: u64,
    max_payments: u32,
}

/// The terms `request` earns when the account's spendable balance is `balance` at `now`
/// (SPEC section 4): what the lock rules leave of the balance (a debt leaves nothing),
/// capped by the amount asked for and the issuer's limit; a per-payment cap and a number
/// of payments no larger than asked or than the issuer's limits, the cap no larger than
/// what is available, and at least one payment.
fn certificate_terms(
    request: &BalanceCertificateRequestPayload,
    balance: i128,
    config: &IssuerConfig,
    now: Timestamp,
) -> Result<CertificateTerms> {
    let balance = u64::try_from(balance).unwrap_or(0);
    let locked = request.lock.locked(balance, now)?;
    let available = balance
        .saturating_sub(locked)
        .min(config.max_certificate_amount)
        .min(request.requested_amount.unwrap_or(u64::MAX));
    if available == 0 {
        return Err(IssuerError::NothingAvailable);
    }
    Ok(CertificateTerms {
        available,
        locked,
        per_payment_cap: request
            .per_payment_cap
            .unwrap_or(u64::MAX)
            .min(config.max_per_payment_cap)
            .min(available),
        max_payments: request
            .max_payments
            .unwrap_or(u32::MAX)
            .min(config.max_payments_per_certificate)
            .max(1),
    })
}

/// A certificate request's nonce is its idempotency key within the device's scope, and
/// the claim stands for its content without its signing time: a retry is signed again
/// (the transport refuses replayed bytes) with the same nonce and a new time, and gets the
/// certificate of the first attempt; the same nonce with other content is refused.
fn certificate_idempotency(request: &BalanceCertificateRequestPayload) -> Result<Idempotent> {
    let mut identity = request.clone();
    identity.created_at = Timestamp::from_unix_millis(0);
    let claim = ClaimId::Idempotency {
        scope: *request.device_id.as_uuid(),
        key: ContentDigest::of(&request.nonce).0,
    };
    Ok(Idempotent {
        answer_key: CERTIFICATE_RESPONSE.key(&claim.key_bytes()),
        claim,
        digest: codec::digest(&identity)?,
        answers: RESPONSES,
    })
}

/// The unit that issues `certificate`: its available amount moves from the spendable
/// balance to its reservation, with a floor at the locked amount, so the reservations of
/// concurrent certificates never add up to more than the balance.
fn reservation_unit(certificate: &BalanceCertificate, now: Timestamp) -> Result<Unit> {
    let c = &certificate.payload;
    let next_sequence = c
        .first_sequence
        .checked_add(u64::from(c.max_payments))
        .ok_or(IssuerError::Unsupported(
            "device sequence numbers exhausted",
        ))?;
    let digest = codec::digest(certificate)?;
    let customer = LedgerAccount::Customer(c.account_id);
    Ok(Unit::new(Claimant::Device(c.device_id), now)
        .claim(ClaimId::Certificate(c.serial), digest)
        // Two certificates of one device never share sequence numbers: the second of two
        // concurrent requests loses this claim and starts over.
        .claim(
            SEQUENCE_RANGE.claim(sequence_key(c.device_id, c.first_sequence)),
            digest,
        )
        .post(Posting::transfer(
            customer.clone(),
            LedgerAccount::Reservation(c.serial),
            c.available,
            "balance certificate",
        ))
        .floor(Floor {
            account: customer,
            currency: c.available.currency,
            min: i128::from(c.locked.minor_units),
        })
        .write(Write::put(
            CERTIFICATES,
            c.serial.as_bytes().to_vec(),
            encode(&CertificateDoc {
                certificate: certificate.clone(),
            })?,
        ))
        .write(Write::put(
            CERTIFICATE_EXPIRY,
            expiry_key(c.expires_at, c.serial),
            Vec::new(),
        ))
        .write(Write::put(
            NEXT_SEQUENCE,
            c.device_id.as_bytes().to_vec(),
            next_sequence.to_raw(),
        )))
}

/// When the settlement window of a certificate expiring at `expires_at` closes. A grace
/// too long for the clock saturates: that reservation is never released, rather than
/// released at once.
fn settlement_deadline(expires_at: Timestamp, upload_grace: std::time::Duration) -> Timestamp {
    expires_at.saturating_add(upload_grace)
}

/// The unit that ends a certificate's reservation after its settlement window, giving
/// back the `left` it still holds, and what it gives back.
fn release_unit(
    certificate: &BalanceCertificatePayload,
    left: u64,
    expiry_key: &[u8],
    now: Timestamp,
) -> Result<(Unit, Amount)> {
    let serial = certificate.serial;
    let amount = Amount::new(left, certificate.available.currency);
    let reservation = LedgerAccount::Reservation(serial);
    let mut unit = Unit::new(Claimant::Issuer, now)
        .claim(
            RELEASE.claim(serial.as_bytes().to_vec()),
            ContentDigest::of(serial.as_bytes()),
        )
        // Fails if a late record took from the reservation after it was read.
        .floor(Floor::non_negative(reservation.clone(), amount.currency))
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
            reservation,
            LedgerAccount::Customer(certificate.account_id),
            amount,
            "reservation released after the upload grace",
        ));
    }
    Ok((unit, amount))
}

impl<S: RecordStore, F: FundingSource> Issuer<S, F> {
    /// Issues a balance certificate (SPEC section 4). First records the withdrawal
    /// records and deposit confirmations the device hands in; then computes
    /// `available = balance - locked` (capped by the request and the issuer's limits) and
    /// reserves it. A retry (same nonce and content, signed again at a later time)
    /// returns the same certificate and reserves once.
    ///
    /// [`Self::issue_balance_certificate_answered`] also answers each hand-in.
    pub async fn issue_balance_certificate<G: CryptoRng + Send + ?Sized>(
        &self,
        request: &BalanceCertificateRequest,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<BalanceCertificate> {
        let request = self.authenticate(request).await?;
        Ok(self
            .issue_balance_certificate_authenticated(request, now, rng)
            .await?
            .0)
    }

    /// [`Self::issue_balance_certificate`], with the issuer's answer to every hand-in of
    /// the request: one outcome per handed-in record, in order, and how many deposit
    /// confirmations were recorded, exactly as [`Self::sync`] answers them. The report's
    /// `request_digest` is the digest of the certificate request (unsigned here:
    /// [`Issuer::sign_answer`] signs it for the device).
    pub async fn issue_balance_certificate_answered<G: CryptoRng + Send + ?Sized>(
        &self,
        request: &BalanceCertificateRequest,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<(BalanceCertificate, SyncReportPayload)> {
        let request = self.authenticate(request).await?;
        self.issue_balance_certificate_authenticated(request, now, rng)
            .await
    }

    /// [`Self::issue_balance_certificate_answered`] for a request whose signature was
    /// checked.
    pub async fn issue_balance_certificate_authenticated<G: CryptoRng + Send + ?Sized>(
        &self,
        request: Authenticated<'_, BalanceCertificateRequest>,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<(BalanceCertificate, SyncReportPayload)> {
        let device = request.signer();
        let request_digest = request.request_digest()?;
        let payload = &request.request().payload;
        // A frozen account gets no certificate, but its device's hand-ins are still
        // recorded first: they settle merchants and are evidence.
        self.check_unrevoked(device, payload.account_id, now)
            .await?;
        if !self.keys().currencies().contains(&payload.currency) {
            return Err(IssuerError::Unsupported("currency not served"));
        }
        // Hand-ins first, on a retry too (recording them again is idempotent, and the
        // device learns each outcome again): they may consume balance (late records) or
        // freeze the account.
        let report = self
            .take_hand_ins(
                HandIns {
                    account_id: payload.account_id,
                    device_id: payload.device_id,
                    request_digest,
                    records: &payload.unsent_records,
                    confirmations: &payload.deposit_confirmations,
                },
                now,
            )
            .await?;
        let idempotent = certificate_idempotency(payload)?;
        if let Some(certificate) = self.previous_answer(&idempotent).await? {
            return Ok((certificate, report));
        }
        if self.frozen(payload.account_id).await?.is_some() {
            return Err(IssuerError::AccountFrozen(payload.account_id));
        }
        for _ in 0..RETRIES {
            let balance = self.balance(payload.account_id, payload.currency).await?;
            let terms = match certificate_terms(payload, balance, &self.config, now) {
                Ok(terms) => terms,
                // A copy of this request that reserved since the look above is what the
                // balance read here lacks: its certificate is the answer.
                Err(refusal) => {
                    let certificate = self.answered_or(&idempotent, refusal).await?;
                    return Ok((certificate, report));
                }
            };
            let first_sequence = self.next_sequence(payload.device_id).await?;
            let certificate = self.sign_certificate(payload, terms, first_sequence, now, rng)?;
            let unit = reservation_unit(&certificate, now)?;
            match self.commit_answered(unit, &idempotent, certificate).await? {
                Answered::Answer(certificate) => return Ok((certificate, report)),
                // A concurrent request of the device took the sequence range, or one of
                // the account moved the balance: read again.
                Answered::NotApplied(_) => {}
            }
        }
        Err(IssuerError::Contended {
            operation: "issuing a balance certificate",
        })
    }

    /// Records the records and deposit confirmations a device hands in (with a
    /// certificate request or a sync) and answers each: a refused record is answered
    /// `Invalid` with its reason, a refused confirmation is not counted. Only a store
    /// failure fails the whole call.
    async fn take_hand_ins(
        &self,
        hand_ins: HandIns<'_>,
        now: Timestamp,
    ) -> Result<SyncReportPayload> {
        check_hand_ins(hand_ins.records.len(), hand_ins.confirmations.len())?;
        let records = self
            .hand_in_records(hand_ins.device_id, hand_ins.records, now)
            .await?;
        for (record, outcome) in hand_ins.records.iter().zip(&records) {
            if let scrip_tokens::RedemptionOutcome::Invalid { reason } = outcome {
                tracing::info!(code = %reason.code, error = %reason.message, record = %record.payload.record_id, "customer copy of a record refused");
            }
        }
        let mut confirmations_recorded = 0;
        for confirmation in hand_ins.confirmations {
            match self.confirm_deposit(confirmation, now).await {
                Ok(()) => confirmations_recorded += 1,
                Err(IssuerError::Store(e)) => return Err(IssuerError::Store(e)),
                Err(e) => tracing::info!(error = %e, "handed-in deposit confirmation refused"),
            }
        }
        Ok(SyncReportPayload {
            account_id: hand_ins.account_id,
            device_id: hand_ins.device_id,
            request_digest: hand_ins.request_digest,
            records,
            confirmations_recorded,
            answered_at: now,
        })
    }

    fn sign_certificate<G: CryptoRng + ?Sized>(
        &self,
        request: &BalanceCertificateRequestPayload,
        terms: CertificateTerms,
        first_sequence: u64,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<BalanceCertificate> {
        let keys = self.keys();
        let signer = keys.balance_certifier.current(now)?;
        let currency = request.currency;
        let payload = BalanceCertificatePayload {
            serial: CertificateSerial::random(rng),
            account_id: request.account_id,
            device_id: request.device_id,
            available: Amount::new(terms.available, currency),
            locked: Amount::new(terms.locked, currency),
            issued_at: now,
            expires_at: signer.cap(now.saturating_add(self.config.balance_certificate_lifetime)),
            max_payments: terms.max_payments,
            first_sequence,
            per_payment_cap: Amount::new(terms.per_payment_cap, currency),
            allowed_categories: request.lock.allowed_categories.clone(),
            allowed_regions: request.lock.allowed_regions.clone(),
        };
        Ok(BalanceCertificate::sign(payload, &signer.key, rng)?)
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
        let request_digest = request.request_digest()?;
        let payload = &request.request().payload;
        self.check_unrevoked(device, payload.account_id, now)
            .await?;
        self.take_hand_ins(
            HandIns {
                account_id: payload.account_id,
                device_id: payload.device_id,
                request_digest,
                records: &payload.unsent_records,
                confirmations: &payload.deposit_confirmations,
            },
            now,
        )
        .await
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

    async fn next_sequence(&self, device_id: scrip_tokens::DeviceId) -> Result<u64> {
        Ok(self
            .raw_value(NEXT_SEQUENCE, device_id.as_bytes())
            .await?
            .unwrap_or(1))
    }

    /// A balance certificate the issuer signed.
    pub async fn certificate(&self, serial: CertificateSerial) -> Result<BalanceCertificate> {
        self.doc::<CertificateDoc>(CERTIFICATES, serial.as_bytes())
            .await?
            .map(|d| d.certificate)
            .ok_or(IssuerError::UnknownCertificate(serial))
    }

    /// What was released from a certificate's reservation after its settlement window,
    /// if it was.
    pub async fn release_of(&self, serial: CertificateSerial) -> Result<Option<ReleaseDoc>> {
        self.doc(RELEASED, serial.as_bytes()).await
    }

    /// When the settlement window of `certificate` closes: its expiry plus the published
    /// upload grace ([`IssuerConfig::upload_grace`]). Until then its reservation is held,
    /// and a record signed under it before expiry is paid from it; from then on
    /// [`Self::release_expired`] gives what is left back to the account.
    pub fn settlement_deadline(&self, certificate: &BalanceCertificatePayload) -> Timestamp {
        settlement_deadline(certificate.expires_at, self.config.upload_grace)
    }

    /// Releases the reservations of certificates whose settlement window closed at or
    /// before `now` (expired at least [`IssuerConfig::upload_grace`] ago): what their
    /// records did not consume goes back to the account. Returns what was released. Safe
    /// to run concurrently and repeatedly (each release is claimed once).
    pub async fn release_expired(&self, now: Timestamp, limit: usize) -> Result<Vec<Released>> {
        let due = self
            .store
            .scan(CERTIFICATE_EXPIRY, None, limit.min(crate::MAX_PAGE))
            .await?;
        let mut released = Vec::new();
        for (key, _) in due {
            let (expires_at, serial) = parse_expiry_key(&key)
                .ok_or_else(|| IssuerError::Corrupted("certificate expiry key".into()))?;
            // The index is ordered by expiry, so by deadline too: the first one still
            // open ends the round.
            if settlement_deadline(expires_at, self.config.upload_grace) > now {
                break;
            }
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
        let reservation = LedgerAccount::Reservation(serial);
        for _ in 0..RETRIES {
            let left = self
                .store
                .balance(&reservation, cert.available.currency)
                .await?;
            let (unit, amount) =
                release_unit(cert, u64::try_from(left).unwrap_or(0), expiry_key, now)?;
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
        Err(IssuerError::Contended {
            operation: "releasing a reservation",
        })
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use scrip_tokens::{AccountId, Allowed, Currency, DeviceId, LockRules};

    use super::*;

    const NOW: Timestamp = Timestamp::from_unix_millis(1_700_000_000_000);

    fn request() -> BalanceCertificateRequestPayload {
        BalanceCertificateRequestPayload {
            account_id: AccountId(uuid::Uuid::from_u128(1)),
            device_id: DeviceId(uuid::Uuid::from_u128(2)),
            currency: Currency::EUR,
            requested_amount: None,
            max_payments: None,
            per_payment_cap: None,
            lock: LockRules::default(),
            unsent_records: Vec::new(),
            deposit_confirmations: Vec::new(),
            created_at: NOW,
            nonce: [3; 16],
        }
    }

    fn terms(
        request: &BalanceCertificateRequestPayload,
        balance: i128,
    ) -> Result<CertificateTerms> {
        certificate_terms(request, balance, &IssuerConfig::default(), NOW)
    }

    #[test]
    fn available_is_the_balance_less_what_the_lock_rules_keep() {
        let mut r = request();
        r.lock.min_balance = 2_500;
        let t = terms(&r, 10_000).unwrap();
        assert_eq!((t.available, t.locked), (7_500, 2_500));
    }

    #[test]
    fn no_certificate_makes_more_available_than_asked_or_than_the_issuer_allows() {
        let limit = IssuerConfig::default().max_certificate_amount;
        assert_eq!(
            terms(&request(), 10 * i128::from(limit)).unwrap().available,
            limit
        );
        let mut r = request();
        r.requested_amount = Some(300);
        assert_eq!(terms(&r, 10_000).unwrap().available, 300);
    }

    #[test]
    fn a_debt_or_a_fully_locked_balance_leaves_nothing_available() {
        assert!(matches!(
            terms(&request(), -50),
            Err(IssuerError::NothingAvailable)
        ));
        let mut r = request();
        r.lock.min_balance = 100;
        assert!(matches!(terms(&r, 100), Err(IssuerError::NothingAvailable)));
        r.requested_amount = Some(0);
        assert!(matches!(
            terms(&r, 1_000),
            Err(IssuerError::NothingAvailable)
        ));
    }

    #[test]
    fn a_lock_of_more_than_the_whole_balance_is_refused_not_ignored() {
        let mut r = request();
        r.lock.locked_basis_points = 10_001;
        assert!(matches!(terms(&r, 1_000), Err(IssuerError::Invalid(_))));
    }

    #[test]
    fn the_per_payment_cap_is_the_smallest_of_asked_limit_and_available() {
        let limit = IssuerConfig::default().max_per_payment_cap;
        assert_eq!(terms(&request(), 1_000).unwrap().per_payment_cap, 1_000);
        assert_eq!(terms(&request(), 1_000_000).unwrap().per_payment_cap, limit);
        let mut r = request();
        r.per_payment_cap = Some(200);
        assert_eq!(terms(&r, 1_000).unwrap().per_payment_cap, 200);
    }

    #[test]
    fn a_certificate_allows_at_least_one_payment_and_at_most_the_issuers_limit() {
        let limit = IssuerConfig::default().max_payments_per_certificate;
        let payments = |asked| {
            let mut r = request();
            r.max_payments = asked;
            terms(&r, 1_000).unwrap().max_payments
        };
        assert_eq!(payments(None), limit);
        assert_eq!(payments(Some(limit + 1)), limit);
        assert_eq!(payments(Some(5)), 5);
        assert_eq!(payments(Some(0)), 1);
    }

    #[test]
    fn a_retry_signed_later_is_the_same_request_and_other_content_is_not() {
        let first = certificate_idempotency(&request()).unwrap();
        let mut retry = request();
        retry.created_at = Timestamp::from_unix_millis(NOW.as_unix_millis() + 60_000);
        let retry = certificate_idempotency(&retry).unwrap();
        assert_eq!((&retry.claim, retry.digest), (&first.claim, first.digest));
        assert_eq!(retry.answer_key, first.answer_key);

        let mut other = request();
        other.requested_amount = Some(1);
        let other = certificate_idempotency(&other).unwrap();
        assert_eq!(other.claim, first.claim);
        assert_ne!(other.digest, first.digest);

        let mut other_device = request();
        other_device.device_id = DeviceId(uuid::Uuid::from_u128(9));
        assert_ne!(
            certificate_idempotency(&other_device).unwrap().claim,
            first.claim
        );
    }

    fn certificate(
        available: u64,
        locked: u64,
        first_sequence: u64,
        max_payments: u32,
    ) -> BalanceCertificate {
        let r = request();
        let payload = BalanceCertificatePayload {
            serial: CertificateSerial(uuid::Uuid::from_u128(4)),
            account_id: r.account_id,
            device_id: r.device_id,
            available: Amount::new(available, Currency::EUR),
            locked: Amount::new(locked, Currency::EUR),
            issued_at: NOW,
            expires_at: Timestamp::from_unix_millis(NOW.as_unix_millis() + 86_400_000),
            max_payments,
            first_sequence,
            per_payment_cap: Amount::new(available, Currency::EUR),
            allowed_categories: Allowed::Any,
            allowed_regions: Allowed::Any,
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        BalanceCertificate::sign(
            payload,
            &scrip_tokens::fixtures::balance_certifier(),
            &mut rng,
        )
        .unwrap()
    }

    #[test]
    fn issuing_reserves_the_available_amount_and_keeps_the_locked_part_in_the_account() {
        let c = certificate(700, 300, 1, 10);
        let unit = reservation_unit(&c, NOW).unwrap();
        let customer = LedgerAccount::Customer(c.payload.account_id);
        let reservation = LedgerAccount::Reservation(c.payload.serial);
        let moved: Vec<_> = unit
            .postings
            .iter()
            .map(|p| (&p.account, p.delta))
            .collect();
        assert_eq!(moved, [(&customer, -700), (&reservation, 700)]);
        assert_eq!(
            unit.floors,
            [Floor {
                account: customer,
                currency: Currency::EUR,
                min: 300
            }]
        );
    }

    #[test]
    fn a_certificate_takes_its_sequence_range_so_no_other_can_share_it() {
        let c = certificate(700, 0, 11, 10);
        let unit = reservation_unit(&c, NOW).unwrap();
        let range = SEQUENCE_RANGE.claim(sequence_key(c.payload.device_id, 11));
        assert!(unit.claims.iter().any(|claim| claim.id == range));
        let next = unit
            .writes
            .iter()
            .find(|w| w.collection == NEXT_SEQUENCE)
            .and_then(|w| w.value.as_deref())
            .and_then(u64::from_raw);
        assert_eq!(
            next,
            Some(21),
            "the next certificate starts after this range"
        );
        let exhausted = certificate(700, 0, u64::MAX - 5, 10);
        assert!(matches!(
            reservation_unit(&exhausted, NOW),
            Err(IssuerError::Unsupported(_))
        ));
    }
}
