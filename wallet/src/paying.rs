//! Paying a merchant offline, by withdrawal record or by coins, and taking its reply.

use rand_core::CryptoRng;
use scrip_tokens::{
    codec, Amount, Coin, CoinPayment, EndorsedCoinPayment, MerchantOffer, MerchantReply,
    PaymentAnswer, PaymentReceipt, PaymentRequestPayload, RequestId, Timestamp, WithdrawalRecord,
    WithdrawalRecordPayload,
};

use crate::change::{exact_change, Change};
use crate::state::{certificate_mut, CertificateState, CoinsInFlight, RecordInFlight};
use crate::{PayWith, PaymentStatus, Result, Unreleased, Wallet, WalletError, PAID_REQUESTS_KEPT};

impl Wallet {
    /// Checks a merchant's offer offline: its certificate (against the key directory), that
    /// the revocation list held does not name the merchant, its signed request, and that
    /// this wallet has not paid the request before.
    pub fn check_offer<'a>(
        &self,
        offer: &'a MerchantOffer,
        now: Timestamp,
    ) -> Result<&'a PaymentRequestPayload> {
        let merchant = offer.merchant_certificate.verify(self.directory()?, now)?;
        if self
            .revocations
            .lookup(&scrip_tokens::RevokedItem::Merchant(merchant.merchant_id))
            .is_some()
        {
            return Err(WalletError::MerchantRevoked(merchant.merchant_id));
        }
        let request = offer.request.verify(merchant)?;
        if self.state.paid_requests.contains(&request.request_id) {
            return Err(WalletError::AlreadyPaid(request.request_id));
        }
        if request.amount.is_zero() {
            return Err(WalletError::ZeroRequest);
        }
        Ok(request)
    }

    pub(crate) fn remember_paid(&mut self, request_id: RequestId) {
        self.state.paid_requests.push(request_id);
        let excess = self
            .state
            .paid_requests
            .len()
            .saturating_sub(PAID_REQUESTS_KEPT);
        self.state.paid_requests.drain(..excess);
    }

    /// Pays `offer` with a withdrawal record under the newest balance certificate whose
    /// rules allow it (expiry, per-payment cap, remaining amount, payment count, category,
    /// region). Uses the next sequence number: save before releasing the answer.
    pub fn pay_by_record<G: CryptoRng + ?Sized>(
        &mut self,
        offer: &MerchantOffer,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<Unreleased<PaymentAnswer>> {
        let request = self.check_offer(offer, now)?.clone();
        let account_certificate = self.registered()?.clone();
        let account = &account_certificate.payload;
        let mut reasons = Vec::new();
        let mut chosen = None;
        let mut by_newest: Vec<&CertificateState> = self.state.certificates.iter().collect();
        by_newest.sort_by_key(|c| std::cmp::Reverse(c.certificate.payload.issued_at));
        for candidate in by_newest {
            let cert = &candidate.certificate.payload;
            let payload = WithdrawalRecordPayload {
                record_id: scrip_tokens::RecordId::random(rng),
                account_id: account.account_id,
                device_id: account.device_id,
                certificate_serial: cert.serial,
                sequence: self.state.next_sequence,
                cumulative: Amount::new(
                    candidate.spent.saturating_add(request.amount.minor_units),
                    cert.available.currency,
                ),
                signed_at: now,
                payment_request: offer.request.clone(),
            };
            let check = candidate
                .certificate
                .verify(self.directory()?, account, now)
                .map(|_| ())
                .and_then(|()| cert.authorize(&payload));
            match check {
                Ok(()) => {
                    chosen = Some((candidate.certificate.clone(), payload));
                    break;
                }
                Err(e) => reasons.push(e.code()),
            }
        }
        let Some((balance_certificate, payload)) = chosen else {
            return Err(WalletError::NoUsableCertificate { reasons });
        };
        let record = WithdrawalRecord::sign(payload, &self.key, rng)?;
        let answer = PaymentAnswer::ByRecord {
            record: record.clone(),
            account_certificate,
            balance_certificate: balance_certificate.clone(),
        };
        // Bookkeeping before the answer can leave: the sequence number is used for good,
        // and the amount counts against the certificate whatever the merchant says.
        self.state.next_sequence += 1;
        if let Some(state) = certificate_mut(
            &mut self.state.certificates,
            balance_certificate.payload.serial,
        ) {
            state.spent = state.spent.saturating_add(request.amount.minor_units);
        }
        self.state.awaiting_receipt.push(RecordInFlight {
            request_id: request.request_id,
            answer_digest: codec::digest(&answer)?,
            merchant: offer.merchant_certificate.clone(),
            record,
        });
        self.remember_paid(request.request_id);
        Ok(self.unreleased(answer))
    }

    /// Pays `offer` with coins adding up to exactly the requested amount (fewest coins).
    /// The coins leave the wallet until the merchant replies: save before releasing.
    pub fn pay_by_coins(
        &mut self,
        offer: &MerchantOffer,
        now: Timestamp,
    ) -> Result<Unreleased<PaymentAnswer>> {
        let request = self.check_offer(offer, now)?.clone();
        let directory = self.directory()?;
        let currency = request.amount.currency;
        let usable: Vec<usize> = (0..self.state.coins.len())
            .filter(|i| {
                let coin = &self.state.coins[*i];
                coin.amount().currency == currency && coin.verify(directory, now).is_ok()
            })
            .collect();
        let values: Vec<u64> = usable
            .iter()
            .map(|i| self.state.coins[*i].amount().minor_units)
            .collect();
        let picked = match exact_change(&values, request.amount.minor_units) {
            Change::Exact(picked) => picked,
            Change::Impossible { below, above } => {
                return Err(WalletError::ExactChangeImpossible {
                    requested: request.amount,
                    closest_below: Amount::new(below, currency),
                    closest_above: above.map(|a| Amount::new(a, currency)),
                })
            }
        };
        let mut chosen: Vec<usize> = picked.into_iter().map(|p| usable[p]).collect();
        chosen.sort_unstable_by(|a, b| b.cmp(a));
        let coins: Vec<Coin> = chosen.iter().map(|i| self.state.coins.remove(*i)).collect();
        let answer = PaymentAnswer::ByCoins(CoinPayment {
            request: offer.request.clone(),
            coins: coins.clone(),
        });
        self.state.coins_in_flight.push(CoinsInFlight {
            request_id: request.request_id,
            answer_digest: codec::digest(&answer)?,
            merchant: offer.merchant_certificate.clone(),
            coins,
        });
        self.remember_paid(request.request_id);
        Ok(self.unreleased(answer))
    }

    /// Pays an offer received as bytes; returns the answer's bytes (after saving).
    pub fn pay_bytes<G: CryptoRng + ?Sized>(
        &mut self,
        offer: &[u8],
        with: PayWith,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<Unreleased<Vec<u8>>> {
        let offer: MerchantOffer = codec::decode(offer)?;
        let answer = match with {
            PayWith::Record => self.pay_by_record(&offer, now, rng)?,
            PayWith::Coins => self.pay_by_coins(&offer, now)?,
        };
        Ok(Unreleased {
            message: codec::encode(&answer.message)?,
            generation: answer.generation,
            instance: answer.instance,
        })
    }

    /// Takes the merchant's reply to a payment: keeps the receipt (a record's receipt also
    /// goes to the outbox for the issuer), or on a signed rejection takes coins back.
    pub fn on_merchant_reply(
        &mut self,
        reply: &MerchantReply,
        now: Timestamp,
    ) -> Result<PaymentStatus> {
        let _ = now;
        let status = match reply {
            MerchantReply::Receipt(PaymentReceipt::Record(receipt)) => {
                let index = self
                    .state
                    .awaiting_receipt
                    .iter()
                    .position(|a| a.record == receipt.payload.record)
                    .ok_or(WalletError::ReceiptForUnknownPayment(
                        receipt
                            .payload
                            .record
                            .payload
                            .payment_request
                            .payload
                            .request_id,
                    ))?;
                receipt.verify(&self.state.awaiting_receipt[index].merchant.payload)?;
                let done = self.state.awaiting_receipt.remove(index);
                self.state.outbox.push(done.record);
                self.state
                    .receipts
                    .push(PaymentReceipt::Record(receipt.clone()));
                PaymentStatus::Completed(Box::new(PaymentReceipt::Record(receipt.clone())))
            }
            MerchantReply::Receipt(PaymentReceipt::Coins(endorsed)) => {
                let index = self
                    .state
                    .coins_in_flight
                    .iter()
                    .position(|f| {
                        f.request_id == endorsed.payload.payment.request.payload.request_id
                            && f.coins == endorsed.payload.payment.coins
                    })
                    .ok_or(WalletError::ReceiptForUnknownPayment(
                        endorsed.payload.payment.request.payload.request_id,
                    ))?;
                endorsed.verify(&self.state.coins_in_flight[index].merchant.payload)?;
                self.state.coins_in_flight.remove(index);
                self.state
                    .receipts
                    .push(PaymentReceipt::Coins(endorsed.clone()));
                PaymentStatus::Completed(Box::new(PaymentReceipt::Coins(endorsed.clone())))
            }
            MerchantReply::Rejection(rejection) => {
                let p = &rejection.payload;
                if let Some(i) = self.state.coins_in_flight.iter().position(|f| {
                    f.request_id == p.request_id && f.answer_digest == p.answer_digest
                }) {
                    rejection.verify_signature(
                        &self.state.coins_in_flight[i].merchant.payload.merchant_key,
                    )?;
                    let back = self.state.coins_in_flight.remove(i);
                    self.state.coins.extend(back.coins);
                } else if let Some(i) = self.state.awaiting_receipt.iter().position(|a| {
                    a.request_id == p.request_id && a.answer_digest == p.answer_digest
                }) {
                    rejection.verify_signature(
                        &self.state.awaiting_receipt[i].merchant.payload.merchant_key,
                    )?;
                    // The sequence number and the amount stay counted (see pay_by_record).
                    self.state.awaiting_receipt.remove(i);
                } else {
                    return Err(WalletError::RejectionOfUnknownPayment(p.request_id));
                }
                self.state.paid_requests.retain(|r| *r != p.request_id);
                PaymentStatus::Rejected(p.reason.clone())
            }
        };
        self.touch();
        Ok(status)
    }

    /// Takes coins handed to a merchant back after getting no reply (the user's decision:
    /// if the merchant did keep them, spending them again will be refused as a double
    /// spend at redemption).
    pub fn take_back_unanswered_coins(&mut self, request_id: RequestId) -> Result<usize> {
        let index = self
            .state
            .coins_in_flight
            .iter()
            .position(|f| f.request_id == request_id)
            .ok_or(WalletError::NoCoinsInFlight(request_id))?;
        let back = self.state.coins_in_flight.remove(index);
        let n = back.coins.len();
        self.state.coins.extend(back.coins);
        self.touch();
        Ok(n)
    }

    /// Receipts of completed payments.
    pub fn receipts(&self) -> &[PaymentReceipt] {
        &self.state.receipts
    }

    /// The receipt of a coin payment, by the paid request: what a wallet shows the issuer
    /// to learn whether the merchant settled it (`POST /v1/coin-payments/state`).
    pub fn coin_receipt(&self, request_id: RequestId) -> Option<&EndorsedCoinPayment> {
        self.state.receipts.iter().find_map(|r| match r {
            PaymentReceipt::Coins(c)
                if c.payload.payment.request.payload.request_id == request_id =>
            {
                Some(c)
            }
            _ => None,
        })
    }

    /// Receipted records not yet handed in to the issuer.
    pub fn outbox(&self) -> &[WithdrawalRecord] {
        &self.state.outbox
    }
}
