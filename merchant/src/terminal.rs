//! The point of sale's decisions, with no I/O: [`Terminal`] decides on a wallet's answer
//! from the answer, the open request it names, the cached key directory, what the
//! terminal has already seen, and the time; it signs the reply and says which claims to
//! record. It never reads a store, a clock or the network, so an integrator who keeps its
//! own storage can drive it directly; [`crate::Merchant`] drives it over a `scrip-stores`
//! [`RecordStore`](scrip_stores::RecordStore).
//!
//! Driving it by hand, for one answer:
//! 1. if a reply to this (request, answer) was stored before, send that again;
//! 2. [`Terminal::lookups`]: the claims to look up; read which are held, and the open
//!    request ([`OpenRequest`]) the answer names;
//! 3. [`Terminal::decide`]: a signed refusal to send, or an [`Acceptance`];
//! 4. for an acceptance, atomically: record its claims (each once, ever), take its amount
//!    from the exposure headroom (never below zero), queue [`Acceptance::queued`], store
//!    the reply, close the open request; then send the reply. If a claim was already
//!    held, send [`Terminal::refuse_held`]'s reply instead; if the headroom was short,
//!    [`Terminal::refuse_over_limit`]'s.

use rand_core::CryptoRng;
use scrip_stores::ClaimId;
use scrip_tokens::keys::Merchant as MerchantRole;
use scrip_tokens::{
    codec, Amount, ContentDigest, CountersignedRecord, CountersignedRecordPayload,
    EndorsedCoinPayment, EndorsedCoinPaymentPayload, KeyDirectory, MerchantCertificate,
    MerchantOffer, MerchantReply, PaymentAnswer, PaymentReceipt, PaymentRejection,
    PaymentRejectionPayload, PaymentRequest, PaymentRequestPayload, ReasonCode, RedemptionBatch,
    RedemptionBatchPayload, RedemptionItem, RedemptionReport, RedemptionReportPayload,
    RejectReason, RequestId, RevocationCache, RevokedItem, SigningKey, Timestamp,
};
use scrip_tokens::{
    Currency, MerchantStatement, MerchantStatementPayload, MerchantStatementRequest,
    MerchantStatementRequestPayload, PayoutId, PayoutReceipt, PayoutReceiptPayload, PayoutRequest,
    PayoutRequestPayload,
};

use crate::schema::{OpenRequest, QueuedPayment, REQUEST_PAID};
use crate::{MerchantConfig, MerchantError, Result};

/// A point of sale's key, certificate and limits: everything it decides with.
pub struct Terminal {
    pub(crate) key: SigningKey<MerchantRole>,
    certificate: MerchantCertificate,
    config: MerchantConfig,
}

/// What to look up before deciding on an answer ([`Terminal::lookups`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lookups {
    /// The request the answer names (look up its [`OpenRequest`]).
    pub request_id: RequestId,
    /// Claims whose holding decides the answer: the request already paid, and coins
    /// this terminal took under their bare ids before spend ids existed.
    pub claims: Vec<ClaimId>,
}

/// What the terminal already holds about an answer, as looked up for [`Terminal::lookups`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Seen {
    /// The open request the answer names, if it is still open.
    pub open: Option<OpenRequest>,
    /// Those of [`Lookups::claims`] that are held.
    pub held: Vec<ClaimId>,
}

/// An answer the terminal accepts, once its claims are recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acceptance {
    /// The request paid.
    pub request_id: RequestId,
    /// Digest of the answer (what every claim is recorded with).
    pub answer_digest: ContentDigest,
    /// Claims to record atomically, each at most once ever: the request paid, then the
    /// record and its (device, sequence) or every coin's spend id.
    pub claims: Vec<ClaimId>,
    /// The signed receipt to send once recorded.
    pub reply: MerchantReply,
    /// What to queue for the issuer.
    pub queued: QueuedPayment,
}

impl Acceptance {
    /// The amount accepted (it leaves the exposure headroom).
    pub fn amount(&self) -> Amount {
        self.queued.amount
    }
}

/// What [`Terminal::decide`] concluded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Accept, once the claims are recorded.
    Accept(Box<Acceptance>),
    /// Refuse: send this signed rejection.
    Refuse(Box<MerchantReply>),
}

/// The first item of a (verified) answer that the revocation list names: its device, its
/// account (the record's and the account certificate's), or an identified coin.
fn listed(
    answer: &PaymentAnswer,
    revocations: &RevocationCache,
) -> Option<(RevokedItem, Timestamp)> {
    let items: Vec<RevokedItem> = match answer {
        PaymentAnswer::ByRecord {
            record,
            account_certificate,
            ..
        } => vec![
            RevokedItem::Device(record.payload.device_id),
            RevokedItem::Account(record.payload.account_id),
            RevokedItem::Account(account_certificate.payload.account_id),
        ],
        PaymentAnswer::ByCoins(payment) => payment
            .coins
            .iter()
            .filter(|c| c.holder().is_some())
            .map(|c| RevokedItem::Coin(c.id()))
            .collect(),
    };
    items
        .into_iter()
        .find_map(|item| revocations.lookup(&item).map(|since| (item, since)))
}

/// The payment request an answer pays.
pub fn request_of(answer: &PaymentAnswer) -> &PaymentRequest {
    match answer {
        PaymentAnswer::ByRecord { record, .. } => &record.payload.payment_request,
        PaymentAnswer::ByCoins(payment) => &payment.request,
    }
}

/// The request id and acceptance time of a queued item (its place in the queue).
pub fn item_origin(item: &RedemptionItem) -> (RequestId, Timestamp) {
    match item {
        RedemptionItem::Record(r) => (
            r.payload.record.payload.payment_request.payload.request_id,
            r.payload.accepted_at,
        ),
        RedemptionItem::Coins(c) => (
            c.payload.payment.request.payload.request_id,
            c.payload.endorsed_at,
        ),
    }
}

fn reason(code: ReasonCode, message: impl Into<String>) -> RejectReason {
    RejectReason {
        code,
        message: message.into(),
    }
}

impl Terminal {
    /// A terminal signing with `key`, whose certificate is `certificate`.
    pub fn new(
        key: SigningKey<MerchantRole>,
        certificate: MerchantCertificate,
        config: MerchantConfig,
    ) -> Result<Self> {
        if certificate.payload.merchant_key != *key.verifying_key() {
            return Err(scrip_tokens::Error::UnknownKey(key.key_id()).into());
        }
        Ok(Terminal {
            key,
            certificate,
            config,
        })
    }

    /// The merchant's certificate.
    pub fn certificate(&self) -> &MerchantCertificate {
        &self.certificate
    }

    /// The terminal's limits.
    pub fn config(&self) -> &MerchantConfig {
        &self.config
    }

    /// A signed payment request for `amount`, with the certificate (show its bytes to the
    /// wallet), and the [`OpenRequest`] to keep until it is paid or expires.
    pub fn offer<G: CryptoRng + ?Sized>(
        &self,
        amount: Amount,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<(MerchantOffer, OpenRequest)> {
        if amount.currency != self.config.max_unsettled.currency {
            return Err(MerchantError::OtherCurrency(amount.currency));
        }
        if amount.is_zero() {
            return Err(MerchantError::ZeroAmount);
        }
        let cert = &self.certificate.payload;
        let request = PaymentRequest::sign(
            PaymentRequestPayload {
                request_id: RequestId::random(rng),
                merchant_id: cert.merchant_id,
                amount,
                created_at: now,
                category: cert.category,
                region: cert.region.clone(),
            },
            &self.key,
            rng,
        )?;
        let open = OpenRequest {
            request: request.clone(),
            expires_at: now.saturating_add(self.config.request_lifetime),
        };
        let offer = MerchantOffer {
            request,
            merchant_certificate: self.certificate.clone(),
        };
        Ok((offer, open))
    }

    /// What to look up before [`Terminal::decide`] on `answer`.
    pub fn lookups(&self, answer: &PaymentAnswer) -> Lookups {
        let request_id = request_of(answer).payload.request_id;
        let mut claims = vec![REQUEST_PAID.claim(request_id.as_bytes().to_vec())];
        if let PaymentAnswer::ByCoins(payment) = answer {
            // Claims of 0.1 terminals, under bare coin ids: read, never written again, so
            // reading before committing cannot race.
            claims.extend(payment.coins.iter().map(|c| ClaimId::LegacyCoinId(c.id())));
        }
        Lookups { request_id, claims }
    }

    /// Decides on a wallet's answer, fully offline: verifies it against `directory` and
    /// the open request, refuses what `seen` says was paid or spent here before and what
    /// the issuer's revocation list (`revocations`) names (`revocation_listed`; with a
    /// configured maximum age, any payment while the list is missing or older is refused
    /// `revocation_list_stale`), and either signs a receipt (countersigned record, endorsed coins) to send once the
    /// acceptance's claims are recorded, or a rejection with a machine-readable reason.
    pub fn decide<G: CryptoRng + ?Sized>(
        &self,
        answer: &PaymentAnswer,
        directory: Option<&KeyDirectory>,
        revocations: &RevocationCache,
        seen: &Seen,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<Decision> {
        let answer_digest = codec::digest(answer)?;
        let request_id = request_of(answer).payload.request_id;
        match self.check(answer, directory, revocations, seen, now) {
            Err(why) => Ok(Decision::Refuse(Box::new(self.refuse(
                request_id,
                answer_digest,
                why,
                now,
                rng,
            )?))),
            Ok(claims) => {
                let acceptance = self.acceptance(answer, answer_digest, claims, now, rng)?;
                Ok(Decision::Accept(Box::new(acceptance)))
            }
        }
    }

    /// The offline checks: the claims an acceptance records, or why not.
    fn check(
        &self,
        answer: &PaymentAnswer,
        directory: Option<&KeyDirectory>,
        revocations: &RevocationCache,
        seen: &Seen,
        now: Timestamp,
    ) -> std::result::Result<Vec<ClaimId>, RejectReason> {
        let Some(directory) = directory else {
            return Err(reason(
                ReasonCode::NoKeyDirectory,
                "the terminal has no key directory yet",
            ));
        };
        if let Some(max) = self.config.max_revocation_list_age {
            match revocations.age(now) {
                Some(age) if age <= max => {}
                Some(age) => {
                    return Err(reason(
                        ReasonCode::RevocationListStale,
                        format!(
                        "the terminal's revocation list is {} s old, it accepts {} s: sync first",
                        age.as_secs(),
                        max.as_secs()
                    ),
                    ))
                }
                None => {
                    return Err(reason(
                        ReasonCode::RevocationListStale,
                        "the terminal has no revocation list yet: sync first",
                    ))
                }
            }
        }
        let request = request_of(answer);
        let me = &self.certificate.payload;
        request.verify(me).map_err(|e| RejectReason::from(&e))?;
        let request_id = request.payload.request_id;
        let Some(open) = &seen.open else {
            // Paid requests leave the open list: tell a second answer so.
            let paid = REQUEST_PAID.claim(request_id.as_bytes().to_vec());
            if seen.held.contains(&paid) {
                return Err(reason(
                    ReasonCode::RequestAlreadyPaid,
                    "this request was paid with another answer",
                ));
            }
            return Err(reason(
                ReasonCode::UnknownRequest,
                "not an open request of this terminal",
            ));
        };
        if open.request != *request {
            return Err(reason(
                ReasonCode::UnknownRequest,
                "the request was altered",
            ));
        }
        if now > open.expires_at {
            return Err(reason(
                ReasonCode::RequestExpired,
                "the payment request expired",
            ));
        }
        let verified = match answer {
            PaymentAnswer::ByRecord {
                record,
                account_certificate,
                balance_certificate,
            } => (|| {
                let account = account_certificate.verify(directory, now)?;
                let payload = record.verify(account)?;
                let cert = balance_certificate.verify(directory, account, now)?;
                cert.authorize(payload)?;
                Ok::<_, scrip_tokens::Error>(vec![
                    ClaimId::Record(payload.record_id),
                    ClaimId::DeviceSequence {
                        device: payload.device_id,
                        sequence: payload.sequence,
                    },
                ])
            })(),
            PaymentAnswer::ByCoins(payment) => payment.verify(me, directory, now).and_then(|p| {
                p.coins
                    .iter()
                    .map(|c| Ok(ClaimId::Coin(c.spend_id()?)))
                    .collect::<scrip_tokens::Result<Vec<_>>>()
            }),
        };
        let token_claims = verified.map_err(|e| RejectReason::from(&e))?;
        if let Some((item, since)) = listed(answer, revocations) {
            return Err(reason(
                ReasonCode::RevocationListed,
                format!("the issuer's revocation list names {item:?} (since {since})"),
            ));
        }
        if let PaymentAnswer::ByCoins(payment) = answer {
            if let Some(coin) = payment
                .coins
                .iter()
                .find(|c| seen.held.contains(&ClaimId::LegacyCoinId(c.id())))
            {
                return Err(reason(
                    ReasonCode::CoinAlreadySeen,
                    format!("coin {} was spent at this terminal before", coin.id()),
                ));
            }
        }
        let mut claims = Vec::with_capacity(token_claims.len() + 1);
        claims.push(REQUEST_PAID.claim(request_id.as_bytes().to_vec()));
        claims.extend(token_claims);
        Ok(claims)
    }

    fn acceptance<G: CryptoRng + ?Sized>(
        &self,
        answer: &PaymentAnswer,
        answer_digest: ContentDigest,
        claims: Vec<ClaimId>,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<Acceptance> {
        let request = request_of(answer);
        let (item, receipt) = match answer {
            PaymentAnswer::ByRecord { record, .. } => {
                let receipt = CountersignedRecord::sign(
                    CountersignedRecordPayload {
                        record: record.clone(),
                        accepted_at: now,
                    },
                    &self.key,
                    rng,
                )?;
                (
                    RedemptionItem::Record(receipt.clone()),
                    PaymentReceipt::Record(receipt),
                )
            }
            PaymentAnswer::ByCoins(payment) => {
                let receipt = EndorsedCoinPayment::sign(
                    EndorsedCoinPaymentPayload {
                        payment: payment.clone(),
                        merchant_id: self.certificate.payload.merchant_id,
                        endorsed_at: now,
                    },
                    &self.key,
                    rng,
                )?;
                (
                    RedemptionItem::Coins(receipt.clone()),
                    PaymentReceipt::Coins(receipt),
                )
            }
        };
        Ok(Acceptance {
            request_id: request.payload.request_id,
            answer_digest,
            claims,
            reply: MerchantReply::Receipt(receipt),
            queued: QueuedPayment {
                item,
                amount: request.payload.amount,
                accepted_at: now,
            },
        })
    }

    /// A signed rejection of the answer with digest `answer_digest` to `request_id`.
    pub fn refuse<G: CryptoRng + ?Sized>(
        &self,
        request_id: RequestId,
        answer_digest: ContentDigest,
        why: RejectReason,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<MerchantReply> {
        Ok(MerchantReply::Rejection(PaymentRejection::sign(
            PaymentRejectionPayload {
                request_id,
                answer_digest,
                reason: why,
                rejected_at: now,
            },
            &self.key,
            rng,
        )?))
    }

    /// The refusal of an acceptance whose claims were held when recorded (another answer
    /// got there first): `held` lists them in the acceptance's order.
    pub fn refuse_held<G: CryptoRng + ?Sized>(
        &self,
        acceptance: &Acceptance,
        held: &[ClaimId],
        now: Timestamp,
        rng: &mut G,
    ) -> Result<MerchantReply> {
        let why = match held.first() {
            Some(id) if REQUEST_PAID.holds(id) => reason(
                ReasonCode::RequestAlreadyPaid,
                "this request was paid with another answer",
            ),
            Some(ClaimId::Coin(spend_id)) => reason(
                ReasonCode::CoinAlreadySeen,
                format!("a coin (spend id {spend_id}) was spent at this terminal before"),
            ),
            Some(ClaimId::DeviceSequence { .. }) => reason(
                ReasonCode::SequenceAlreadySeen,
                "this device already paid here with that sequence number",
            ),
            Some(ClaimId::Record(_)) => reason(
                ReasonCode::RecordAlreadySeen,
                "this record was presented here before",
            ),
            _ => reason(ReasonCode::Conflict, "already seen"),
        };
        self.refuse(
            acceptance.request_id,
            acceptance.answer_digest,
            why,
            now,
            rng,
        )
    }

    /// The refusal of an acceptance that would exceed the exposure limit.
    pub fn refuse_over_limit<G: CryptoRng + ?Sized>(
        &self,
        acceptance: &Acceptance,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<MerchantReply> {
        let why = reason(
            ReasonCode::ExposureLimit,
            "the terminal's limit of unsettled payments is reached: sync first",
        );
        self.refuse(
            acceptance.request_id,
            acceptance.answer_digest,
            why,
            now,
            rng,
        )
    }

    /// A signed upload of `queued` (oldest first; at most the configured batch size is
    /// taken), or `None` if nothing is queued.
    pub fn batch<G: CryptoRng + ?Sized>(
        &self,
        queued: Vec<QueuedPayment>,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<Option<RedemptionBatch>> {
        if queued.is_empty() {
            return Ok(None);
        }
        let mut nonce = [0u8; 16];
        rng.fill_bytes(&mut nonce);
        Ok(Some(RedemptionBatch::sign(
            RedemptionBatchPayload {
                merchant_id: self.certificate.payload.merchant_id,
                items: queued
                    .into_iter()
                    .take(self.config.batch_size)
                    .map(|q| q.item)
                    .collect(),
                created_at: now,
                nonce,
            },
            &self.key,
            rng,
        )?))
    }

    /// `payload` signed with the merchant's key: a take of coin payments as coins
    /// ([`crate::Merchant::take_coins_request`]).
    pub fn sign_swap<G: CryptoRng + ?Sized>(
        &self,
        payload: scrip_tokens::MerchantSwapRequestPayload,
        rng: &mut G,
    ) -> Result<scrip_tokens::MerchantSwapRequest> {
        Ok(scrip_tokens::MerchantSwapRequest::sign(
            payload, &self.key, rng,
        )?)
    }

    /// The issuer's answer to `batch`, if it is one: signed by the answer key that
    /// `directory` lists, and naming this very batch. Anyone on the path can send an
    /// answer; only this one may change the queue.
    pub fn verify_report<'r>(
        &self,
        batch: &RedemptionBatch,
        report: &'r RedemptionReport,
        directory: &KeyDirectory,
        now: Timestamp,
    ) -> Result<&'r RedemptionReportPayload> {
        report
            .verify_for(batch, directory, now)
            .map_err(MerchantError::UnverifiedAnswer)
    }
}

/// A merchant's own money at the issuer: the requests for its statement and for payouts
/// to its bank, and the checks of the issuer's answers.
impl Terminal {
    /// A signed request for the merchant's statement in `currency`: entries after
    /// `after_seq` (or from the start), at most `limit` (the issuer caps it).
    pub fn statement_request<G: CryptoRng + ?Sized>(
        &self,
        currency: Currency,
        after_seq: Option<u64>,
        limit: u32,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<MerchantStatementRequest> {
        let mut nonce = [0u8; 16];
        rng.fill_bytes(&mut nonce);
        Ok(MerchantStatementRequest::sign(
            MerchantStatementRequestPayload {
                merchant_id: self.certificate.payload.merchant_id,
                currency,
                after_seq,
                limit,
                created_at: now,
                nonce,
            },
            &self.key,
            rng,
        )?)
    }

    /// A signed request to pay `amount` out to the merchant's bank under `payout_id`.
    /// Keep the id until a receipt comes back: after a lost answer or a
    /// `payout_unavailable` refusal, ask again with the same id and amount (a new request,
    /// signed again): the issuer pays once.
    pub fn payout_request<G: CryptoRng + ?Sized>(
        &self,
        payout_id: PayoutId,
        amount: Amount,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<PayoutRequest> {
        if amount.is_zero() {
            return Err(MerchantError::ZeroAmount);
        }
        let mut nonce = [0u8; 16];
        rng.fill_bytes(&mut nonce);
        Ok(PayoutRequest::sign(
            PayoutRequestPayload {
                merchant_id: self.certificate.payload.merchant_id,
                payout_id,
                amount,
                created_at: now,
                nonce,
            },
            &self.key,
            rng,
        )?)
    }

    /// The issuer's statement, if it answers `request`: signed by the answer key
    /// `directory` lists, naming this request. Show nothing of an answer that fails.
    pub fn verify_statement<'a>(
        &self,
        request: &MerchantStatementRequest,
        statement: &'a MerchantStatement,
        directory: &KeyDirectory,
        now: Timestamp,
    ) -> Result<&'a MerchantStatementPayload> {
        statement
            .verify_for(request, directory, now)
            .map_err(MerchantError::UnverifiedAnswer)
    }

    /// The issuer's payout receipt, if it answers `request`: signed by the answer key
    /// `directory` lists, naming this request, payout and amount.
    pub fn verify_payout<'a>(
        &self,
        request: &PayoutRequest,
        receipt: &'a PayoutReceipt,
        directory: &KeyDirectory,
        now: Timestamp,
    ) -> Result<&'a PayoutReceiptPayload> {
        receipt
            .verify_for(request, directory, now)
            .map_err(MerchantError::UnverifiedAnswer)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use scrip_tokens::fixtures::{Specimens, NOW};
    use scrip_tokens::{Currency, PaymentRejection};

    use super::*;

    fn setup() -> (Specimens, Terminal, PaymentAnswer, StdRng) {
        let mut rng = StdRng::seed_from_u64(7);
        let s = Specimens::new(&mut rng);
        let terminal = Terminal::new(
            scrip_tokens::fixtures::merchant(1),
            s.merchant_cert.clone(),
            MerchantConfig::new(Amount::new(1_000_000, Currency::EUR)),
        )
        .unwrap();
        let answer = PaymentAnswer::ByRecord {
            record: s.record.clone(),
            account_certificate: s.account_cert.clone(),
            balance_certificate: s.balance_cert.clone(),
        };
        (s, terminal, answer, rng)
    }

    fn open(s: &Specimens) -> Option<OpenRequest> {
        Some(OpenRequest {
            request: s.request.clone(),
            expires_at: NOW.saturating_add(Duration::from_secs(600)),
        })
    }

    fn refusal_code(decision: Decision) -> ReasonCode {
        match decision {
            Decision::Refuse(reply) => match *reply {
                MerchantReply::Rejection(PaymentRejection { payload, .. }) => payload.reason.code,
                MerchantReply::Receipt(_) => panic!("a refusal is never a receipt"),
            },
            Decision::Accept(_) => panic!("expected a refusal"),
        }
    }

    #[test]
    fn a_valid_record_is_accepted_with_its_request_record_and_sequence_claimed() {
        let (s, terminal, answer, mut rng) = setup();
        let seen = Seen {
            open: open(&s),
            held: Vec::new(),
        };
        let Decision::Accept(acceptance) = terminal
            .decide(
                &answer,
                Some(s.directory()),
                &RevocationCache::new(),
                &seen,
                NOW,
                &mut rng,
            )
            .unwrap()
        else {
            panic!("expected an acceptance");
        };
        let record = &s.record.payload;
        assert_eq!(
            acceptance.claims,
            vec![
                REQUEST_PAID.claim(s.request.payload.request_id.as_bytes().to_vec()),
                ClaimId::Record(record.record_id),
                ClaimId::DeviceSequence {
                    device: record.device_id,
                    sequence: record.sequence,
                },
            ]
        );
        assert_eq!(acceptance.amount(), s.request.payload.amount);
        let MerchantReply::Receipt(PaymentReceipt::Record(receipt)) = &acceptance.reply else {
            panic!("expected a countersigned record");
        };
        receipt.verify(s.merchant_payload()).unwrap();
    }

    #[test]
    fn without_a_directory_nothing_is_accepted() {
        let (s, terminal, answer, mut rng) = setup();
        let seen = Seen {
            open: open(&s),
            held: Vec::new(),
        };
        let decision = terminal
            .decide(&answer, None, &RevocationCache::new(), &seen, NOW, &mut rng)
            .unwrap();
        assert_eq!(refusal_code(decision), ReasonCode::NoKeyDirectory);
    }

    #[test]
    fn a_closed_request_is_paid_already_or_unknown() {
        let (s, terminal, answer, mut rng) = setup();
        let lookups = terminal.lookups(&answer);
        let unknown = terminal
            .decide(
                &answer,
                Some(s.directory()),
                &RevocationCache::new(),
                &Seen::default(),
                NOW,
                &mut rng,
            )
            .unwrap();
        assert_eq!(refusal_code(unknown), ReasonCode::UnknownRequest);
        let paid = Seen {
            open: None,
            held: lookups.claims.clone(),
        };
        let paid = terminal
            .decide(
                &answer,
                Some(s.directory()),
                &RevocationCache::new(),
                &paid,
                NOW,
                &mut rng,
            )
            .unwrap();
        assert_eq!(refusal_code(paid), ReasonCode::RequestAlreadyPaid);
    }

    #[test]
    fn an_expired_request_is_refused() {
        let (s, terminal, answer, mut rng) = setup();
        let seen = Seen {
            open: Some(OpenRequest {
                request: s.request.clone(),
                expires_at: NOW,
            }),
            held: Vec::new(),
        };
        let later = NOW.saturating_add(Duration::from_millis(1));
        let decision = terminal
            .decide(
                &answer,
                Some(s.directory()),
                &RevocationCache::new(),
                &seen,
                later,
                &mut rng,
            )
            .unwrap();
        assert_eq!(refusal_code(decision), ReasonCode::RequestExpired);
    }

    #[test]
    fn coins_taken_under_their_bare_ids_before_are_refused() {
        let (s, terminal, _, mut rng) = setup();
        let answer = PaymentAnswer::ByCoins(s.coin_payment.clone());
        let lookups = terminal.lookups(&answer);
        // The request-paid claim, then one bare-id claim per coin.
        assert_eq!(lookups.claims.len(), 1 + s.coin_payment.coins.len());
        let seen = Seen {
            open: Some(OpenRequest {
                request: s.coin_payment.request.clone(),
                expires_at: NOW.saturating_add(Duration::from_secs(600)),
            }),
            held: vec![lookups.claims[1].clone()],
        };
        let decision = terminal
            .decide(
                &answer,
                Some(s.directory()),
                &RevocationCache::new(),
                &seen,
                NOW,
                &mut rng,
            )
            .unwrap();
        assert_eq!(refusal_code(decision), ReasonCode::CoinAlreadySeen);
    }

    #[test]
    fn a_lost_race_names_the_first_claim_held() {
        let (s, terminal, answer, mut rng) = setup();
        let seen = Seen {
            open: open(&s),
            held: Vec::new(),
        };
        let Decision::Accept(acceptance) = terminal
            .decide(
                &answer,
                Some(s.directory()),
                &RevocationCache::new(),
                &seen,
                NOW,
                &mut rng,
            )
            .unwrap()
        else {
            panic!("expected an acceptance");
        };
        let code = |held: &[ClaimId], rng: &mut StdRng| match terminal
            .refuse_held(&acceptance, held, NOW, rng)
            .unwrap()
        {
            MerchantReply::Rejection(r) => r.payload.reason.code,
            MerchantReply::Receipt(_) => panic!("a refusal is never a receipt"),
        };
        assert_eq!(
            code(&acceptance.claims[..1], &mut rng),
            ReasonCode::RequestAlreadyPaid
        );
        assert_eq!(
            code(&acceptance.claims[1..2], &mut rng),
            ReasonCode::RecordAlreadySeen
        );
        assert_eq!(
            code(&acceptance.claims[2..], &mut rng),
            ReasonCode::SequenceAlreadySeen
        );
    }

    #[test]
    fn offers_only_in_the_terminals_currency_and_for_something() {
        let (_, terminal, _, mut rng) = setup();
        assert!(matches!(
            terminal.offer(Amount::new(5, Currency::USD), NOW, &mut rng),
            Err(MerchantError::OtherCurrency(Currency::USD))
        ));
        assert!(matches!(
            terminal.offer(Amount::new(0, Currency::EUR), NOW, &mut rng),
            Err(MerchantError::ZeroAmount)
        ));
        let (offer, open) = terminal
            .offer(Amount::new(5, Currency::EUR), NOW, &mut rng)
            .unwrap();
        assert_eq!(offer.request, open.request);
        assert_eq!(
            open.expires_at,
            NOW.saturating_add(Duration::from_secs(600))
        );
    }
}
