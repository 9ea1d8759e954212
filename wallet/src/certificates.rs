//! Balance certificates (what the device may spend offline), handing in records (sync) and
//! the account statement.

use rand_core::CryptoRng;
use scrip_tokens::{
    Amount, BalanceCertificate, BalanceCertificateRequest, BalanceCertificateRequestPayload,
    Currency, DepositConfirmation, Statement, StatementPayload, StatementRequest,
    StatementRequestPayload, SyncReport, SyncReportPayload, SyncRequest, SyncRequestPayload,
    Timestamp, WithdrawalRecord,
};

use crate::state::CertificateState;
use crate::{nonce, CertificateOptions, HandInOutcome, Result, Unreleased, Wallet, WalletError};

impl Wallet {
    /// A certificate request, handing in the outbox (receipted records the issuer may not
    /// have seen) and unacknowledged deposit confirmations. Kept until answered: to retry,
    /// sign it again with [`Wallet::resign_certificate_request`] (same nonce, so the
    /// issuer answers with the same certificate).
    pub fn certificate_request<G: CryptoRng + ?Sized>(
        &mut self,
        options: CertificateOptions,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<Unreleased<BalanceCertificateRequest>> {
        let account = self.registered()?.payload.clone();
        let minor_units = |amount: Option<Amount>| {
            amount
                .map(|a| crate::in_currency(a, options.currency))
                .transpose()
        };
        let request = BalanceCertificateRequest::sign(
            BalanceCertificateRequestPayload {
                account_id: account.account_id,
                device_id: account.device_id,
                currency: options.currency,
                requested_amount: minor_units(options.requested_amount)?,
                max_payments: options.max_payments,
                per_payment_cap: minor_units(options.per_payment_cap)?,
                lock: options.lock,
                unsent_records: self.state.outbox.clone(),
                deposit_confirmations: self.unacknowledged_confirmations(),
                created_at: now,
                nonce: nonce(rng),
            },
            &self.key,
            rng,
        )?;
        self.state.pending_certificate_request = Some(request.clone());
        Ok(self.unreleased(request))
    }

    /// The pending certificate request signed again at `now` for a retry: same nonce
    /// and content (the issuer's idempotency key), new time (the transport refuses
    /// replayed bytes).
    pub fn resign_certificate_request<G: CryptoRng + ?Sized>(
        &mut self,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<Unreleased<BalanceCertificateRequest>> {
        let pending = self
            .state
            .pending_certificate_request
            .as_ref()
            .ok_or(WalletError::NoPendingCertificateRequest)?;
        let mut payload = pending.payload.clone();
        payload.created_at = now;
        let request = BalanceCertificateRequest::sign(payload, &self.key, rng)?;
        self.state.pending_certificate_request = Some(request.clone());
        self.touch();
        Ok(self.unreleased(request))
    }

    /// The certificate request waiting for an answer (to retry after a timeout).
    pub fn pending_certificate_request(&self) -> Option<&BalanceCertificateRequest> {
        self.state.pending_certificate_request.as_ref()
    }

    /// Takes a balance certificate the issuer signed for this device. The hand-ins of the
    /// request it answers have reached the issuer and leave the outbox.
    pub fn on_balance_certificate(
        &mut self,
        certificate: BalanceCertificate,
        now: Timestamp,
    ) -> Result<()> {
        self.add_certificate(certificate, now)?;
        if let Some(request) = self.state.pending_certificate_request.take() {
            self.forget_handed_in(
                &request.payload.unsent_records,
                &request.payload.deposit_confirmations,
            );
        }
        self.touch();
        Ok(())
    }

    /// Verifies `certificate` for this device and keeps it (once).
    fn add_certificate(&mut self, certificate: BalanceCertificate, now: Timestamp) -> Result<()> {
        let account = self.registered()?.payload.clone();
        let payload = certificate
            .verify(self.directory()?, &account, now)?
            .clone();
        if !self
            .state
            .certificates
            .iter()
            .any(|c| c.certificate.payload.serial == payload.serial)
        {
            self.state.certificates.push(CertificateState {
                certificate,
                spent: 0,
            });
        }
        // Records under the new certificate start at its first sequence number; the
        // counter never goes back.
        self.state.next_sequence = self.state.next_sequence.max(payload.first_sequence);
        Ok(())
    }

    pub(crate) fn forget_handed_in(
        &mut self,
        records: &[WithdrawalRecord],
        confirmations: &[DepositConfirmation],
    ) {
        self.state.outbox.retain(|r| !records.contains(r));
        for d in &mut self.state.deposits {
            if confirmations.contains(&d.confirmation) {
                d.acknowledged = true;
            }
        }
    }

    /// A sync request handing in the outbox and unacknowledged deposit confirmations,
    /// without asking for a certificate.
    pub fn sync_request<G: CryptoRng + ?Sized>(
        &mut self,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<SyncRequest> {
        let account = self.registered()?.payload.clone();
        Ok(SyncRequest::sign(
            SyncRequestPayload {
                account_id: account.account_id,
                device_id: account.device_id,
                unsent_records: self.state.outbox.clone(),
                deposit_confirmations: self.unacknowledged_confirmations(),
                created_at: now,
                nonce: nonce(rng),
            },
            &self.key,
            rng,
        )?)
    }

    /// A signed request for the account's statement in `currency` (entries after
    /// `after_seq`, at most `limit`). Reading changes nothing, so it needs no save first.
    pub fn statement_request<G: CryptoRng + ?Sized>(
        &self,
        currency: Currency,
        after_seq: Option<u64>,
        limit: u32,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<StatementRequest> {
        let account = self.registered()?.payload.clone();
        Ok(StatementRequest::sign(
            StatementRequestPayload {
                account_id: account.account_id,
                device_id: account.device_id,
                currency,
                after_seq,
                limit,
                created_at: now,
                nonce: nonce(rng),
            },
            &self.key,
            rng,
        )?)
    }

    /// Takes the issuer's answer to a sync: the handed-in records leave the outbox (the
    /// issuer recorded them, or refused them for good); confirmations count as
    /// acknowledged if all were recorded.
    ///
    /// The report must be the issuer's, signed by its answer key (as listed in the cached
    /// directory) for this request; otherwise the wallet keeps everything as it was
    /// ([`WalletError::UnverifiedAnswer`]) and hands it in again at the next sync.
    pub fn on_sync_report(
        &mut self,
        request: &SyncRequest,
        report: &SyncReport,
        now: Timestamp,
    ) -> Result<Vec<HandInOutcome>> {
        let report = report
            .verify_for(request, self.directory()?, now)
            .map_err(WalletError::UnverifiedAnswer)?
            .clone();
        Ok(self.settle_hand_ins(
            &request.payload.unsent_records,
            &request.payload.deposit_confirmations,
            &report,
        ))
    }

    /// Takes the issuer's answer to a certificate request sent on
    /// `POST /v2/balance-certificates`: the certificate (as
    /// [`Self::on_balance_certificate`]) and the signed answer to each hand-in (as
    /// [`Self::on_sync_report`]). Returns what became of each handed-in record, so the
    /// user learns of a refused one.
    ///
    /// Both must verify (the report under the issuer's answer key, for this request),
    /// else nothing changes and the request stays pending.
    pub fn on_balance_certificate_answer(
        &mut self,
        certificate: BalanceCertificate,
        hand_ins: &SyncReport,
        now: Timestamp,
    ) -> Result<Vec<HandInOutcome>> {
        let request = self
            .state
            .pending_certificate_request
            .clone()
            .ok_or(WalletError::NoPendingCertificateRequest)?;
        let report = hand_ins
            .verify_for_certificate_request(&request, self.directory()?, now)
            .map_err(WalletError::UnverifiedAnswer)?
            .clone();
        self.add_certificate(certificate, now)?;
        self.state.pending_certificate_request = None;
        Ok(self.settle_hand_ins(
            &request.payload.unsent_records,
            &request.payload.deposit_confirmations,
            &report,
        ))
    }

    /// The handed-in records leave the outbox (recorded, or refused for good: either way
    /// handing them in again changes nothing); confirmations count as acknowledged if all
    /// were recorded. Answers one outcome per record.
    fn settle_hand_ins(
        &mut self,
        records: &[WithdrawalRecord],
        confirmations: &[DepositConfirmation],
        report: &SyncReportPayload,
    ) -> Vec<HandInOutcome> {
        let acknowledged = if report.confirmations_recorded as usize == confirmations.len() {
            confirmations
        } else {
            &[]
        };
        self.forget_handed_in(records, acknowledged);
        self.touch();
        records
            .iter()
            .zip(&report.records)
            .map(|(record, outcome)| HandInOutcome {
                record_id: record.payload.record_id,
                merchant_id: record.payload.payment_request.payload.merchant_id,
                amount: record.payload.amount(),
                outcome: outcome.clone(),
            })
            .collect()
    }

    /// Checks a statement the issuer sent for `request`: signed by its answer key (as
    /// listed in the cached directory), for this request's account and currency. Show
    /// balances only from a statement that passed.
    pub fn verify_statement<'s>(
        &self,
        request: &StatementRequest,
        statement: &'s Statement,
        now: Timestamp,
    ) -> Result<&'s StatementPayload> {
        statement
            .verify_for(request, self.directory()?, now)
            .map_err(WalletError::UnverifiedAnswer)
    }

    /// The balance certificates held and what was spent under each.
    pub fn certificates(&self) -> impl Iterator<Item = (&BalanceCertificate, Amount)> {
        self.state.certificates.iter().map(|c| {
            let currency = c.certificate.payload.available.currency;
            (&c.certificate, Amount::new(c.spent, currency))
        })
    }

    /// What the unexpired certificates still allow offline in `currency`.
    pub fn offline_spendable(&self, currency: Currency, now: Timestamp) -> Amount {
        let total = self
            .state
            .certificates
            .iter()
            .filter(|c| {
                let p = &c.certificate.payload;
                // Only certificates whose sequence range the counter is still in can pay.
                p.available.currency == currency
                    && p.validity().contains(now)
                    && p.covers_sequence(self.state.next_sequence)
            })
            .map(|c| {
                c.certificate
                    .payload
                    .available
                    .minor_units
                    .saturating_sub(c.spent)
            })
            .fold(0u64, u64::saturating_add);
        Amount::new(total, currency)
    }

    /// The next sequence number a record will carry.
    pub fn next_sequence(&self) -> u64 {
        self.state.next_sequence
    }
}
