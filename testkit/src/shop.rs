//! The merchant side at token level (the kit does not depend on `scrip-merchant`).

use rand::rngs::StdRng;
use scrip_stores::RecordStore;
use scrip_tokens::fixtures::{self, NOW};
use scrip_tokens::keys::Merchant;
use scrip_tokens::*;

use crate::keyring::TestIssuer;
use crate::{eur, nonce, rng};

/// A registered merchant: its key and certificate, signing what a point of sale would send
/// (payment requests, countersignatures, endorsements, rejections, redemption batches).
///
/// Two styles, for two kinds of test. The `rng`-taking methods sign at [`NOW`] with the
/// caller's generator (the issuer's tests and the benchmarks thread one through a scene);
/// [`Shop::offer`], [`Shop::receipt`] and [`Shop::reject`] take a `now` and use the shop's
/// own generator, as a terminal talking to a phone does (the wallet's tests).
pub struct Shop {
    /// The merchant key (a fixture key, or another merchant's for an impostor).
    pub key: SigningKey<Merchant>,
    /// The issuer's certificate of the merchant.
    pub certificate: MerchantCertificate,
    /// The shop's own randomness, for the methods that take no `rng`.
    pub rng: StdRng,
}

/// The seed of fixture merchant `n`'s own generator.
fn seed(n: u8) -> u64 {
    1_000 + u64::from(n)
}

impl Shop {
    /// A shop signing with `key` under `certificate`, registered or not: the two need not
    /// belong together (a merchant presenting another's certificate).
    pub fn new(key: SigningKey<Merchant>, certificate: MerchantCertificate) -> Shop {
        Shop {
            key,
            certificate,
            rng: rng(seed(0)),
        }
    }

    /// Registers fixture merchant key `n` as `category` in `region`, with registration
    /// `nonce`, signing with `rng`. The shop's own generator is seeded by `n`.
    pub async fn register_with<S: RecordStore>(
        issuer: &TestIssuer<S>,
        n: u8,
        category: MerchantCategory,
        region: &str,
        nonce: Nonce,
        rng: &mut StdRng,
    ) -> Shop {
        let key = fixtures::merchant(n);
        let registration = MerchantRegistration::sign(
            MerchantRegistrationPayload {
                merchant_key: key.verifying_key().clone(),
                category,
                region: Region::new(region).unwrap(),
                created_at: NOW,
                nonce,
            },
            &key,
            rng,
        )
        .unwrap();
        let certificate = issuer
            .register_merchant(&registration, NOW, rng)
            .await
            .unwrap();
        Shop {
            key,
            certificate,
            rng: crate::rng(seed(n)),
        }
    }

    /// Registers fixture merchant key `n` as a grocery in DE-BY (a fresh nonce from `rng`).
    pub async fn register<S: RecordStore>(issuer: &TestIssuer<S>, n: u8, rng: &mut StdRng) -> Shop {
        Self::register_as(issuer, n, MerchantCategory::GROCERY, "DE-BY", rng).await
    }

    /// Registers fixture merchant key `n` as `category` in `region` (a fresh nonce from
    /// `rng`).
    pub async fn register_as<S: RecordStore>(
        issuer: &TestIssuer<S>,
        n: u8,
        category: MerchantCategory,
        region: &str,
        rng: &mut StdRng,
    ) -> Shop {
        let nonce = nonce(rng);
        Self::register_with(issuer, n, category, region, nonce, rng).await
    }

    /// Registers fixture merchant key `n` as `category` in `region` with nothing from the
    /// caller: the nonce is `[n; 16]` and the generator is seeded by `n`, so the same
    /// registration is sent every time (register each merchant once per issuer).
    pub async fn seeded<S: RecordStore>(
        issuer: &TestIssuer<S>,
        n: u8,
        category: MerchantCategory,
        region: &str,
    ) -> Shop {
        let mut rng = rng(seed(n));
        let shop = Self::register_with(issuer, n, category, region, [n; 16], &mut rng).await;
        Shop { rng, ..shop }
    }

    /// [`Shop::seeded`] as a grocery in Bavaria (DE-BY).
    pub async fn grocery<S: RecordStore>(issuer: &TestIssuer<S>, n: u8) -> Shop {
        Self::seeded(issuer, n, MerchantCategory::GROCERY, "DE-BY").await
    }

    /// The merchant's id.
    pub fn id(&self) -> MerchantId {
        self.certificate.payload.merchant_id
    }

    /// A signed payment request for `amount` (minor units) at [`NOW`].
    pub fn request(&self, amount: u64, rng: &mut StdRng) -> PaymentRequest {
        payment_request(&self.key, &self.certificate, amount, NOW, rng)
    }

    /// A signed request for `amount` (minor units) at `now`, with the certificate: what the
    /// terminal shows the phone.
    pub fn offer(&mut self, amount: u64, now: Timestamp) -> MerchantOffer {
        let request = payment_request(&self.key, &self.certificate, amount, now, &mut self.rng);
        MerchantOffer {
            request,
            merchant_certificate: self.certificate.clone(),
        }
    }

    /// `record` countersigned at [`NOW`].
    pub fn countersign(&self, record: &WithdrawalRecord, rng: &mut StdRng) -> CountersignedRecord {
        countersignature(&self.key, record, NOW, rng)
    }

    /// A payment of exactly `coins` to a fresh request, endorsed at [`NOW`].
    pub fn endorse(&self, coins: Vec<Coin>, rng: &mut StdRng) -> EndorsedCoinPayment {
        let total: u64 = coins.iter().map(|c| c.amount().minor_units).sum();
        let payment = CoinPayment {
            request: self.request(total, rng),
            coins,
        };
        endorsement(&self.key, self.id(), payment, NOW, rng)
    }

    /// Accepts an answer at `now`: countersigns a record, endorses coins.
    pub fn receipt(&mut self, answer: &PaymentAnswer, now: Timestamp) -> MerchantReply {
        let receipt = match answer {
            PaymentAnswer::ByRecord { record, .. } => {
                PaymentReceipt::Record(countersignature(&self.key, record, now, &mut self.rng))
            }
            PaymentAnswer::ByCoins(payment) => PaymentReceipt::Coins(endorsement(
                &self.key,
                self.certificate.payload.merchant_id,
                payment.clone(),
                now,
                &mut self.rng,
            )),
        };
        MerchantReply::Receipt(receipt)
    }

    /// Refuses an answer at `now` with a signed rejection (`code`).
    pub fn reject(&mut self, answer: &PaymentAnswer, code: &str, now: Timestamp) -> MerchantReply {
        MerchantReply::Rejection(rejection(&self.key, answer, code, now, &mut self.rng))
    }

    /// A signed batch of `items` for redemption, at [`NOW`].
    pub fn batch(&self, items: Vec<RedemptionItem>, rng: &mut StdRng) -> RedemptionBatch {
        RedemptionBatch::sign(
            RedemptionBatchPayload {
                merchant_id: self.id(),
                items,
                created_at: NOW,
                nonce: nonce(rng),
            },
            &self.key,
            rng,
        )
        .unwrap()
    }

    /// Redeems `items` in one batch at `now`; the issuer's outcome for each.
    pub async fn redeem<S: RecordStore>(
        &self,
        issuer: &TestIssuer<S>,
        items: Vec<RedemptionItem>,
        now: Timestamp,
        rng: &mut StdRng,
    ) -> Vec<RedemptionOutcome> {
        let batch = self.batch(items, rng);
        let report = issuer.redeem(&batch, now).await.unwrap();
        // The report names the batch it answers: what the merchant checks before it
        // trusts the outcomes.
        assert_eq!(report.batch_digest, codec::digest(&batch).unwrap());
        report.outcomes
    }
}

fn payment_request(
    key: &SigningKey<Merchant>,
    certificate: &MerchantCertificate,
    amount: u64,
    now: Timestamp,
    rng: &mut StdRng,
) -> PaymentRequest {
    let cert = &certificate.payload;
    PaymentRequest::sign(
        PaymentRequestPayload {
            request_id: RequestId::random(rng),
            merchant_id: cert.merchant_id,
            amount: eur(amount),
            created_at: now,
            category: cert.category,
            region: cert.region.clone(),
        },
        key,
        rng,
    )
    .unwrap()
}

fn countersignature(
    key: &SigningKey<Merchant>,
    record: &WithdrawalRecord,
    now: Timestamp,
    rng: &mut StdRng,
) -> CountersignedRecord {
    CountersignedRecord::sign(
        CountersignedRecordPayload {
            record: record.clone(),
            accepted_at: now,
        },
        key,
        rng,
    )
    .unwrap()
}

fn endorsement(
    key: &SigningKey<Merchant>,
    merchant_id: MerchantId,
    payment: CoinPayment,
    now: Timestamp,
    rng: &mut StdRng,
) -> EndorsedCoinPayment {
    EndorsedCoinPayment::sign(
        EndorsedCoinPaymentPayload {
            payment,
            merchant_id,
            endorsed_at: now,
        },
        key,
        rng,
    )
    .unwrap()
}

/// A rejection of `answer` signed by `key` (which may be the wrong merchant's).
pub fn rejection(
    key: &SigningKey<Merchant>,
    answer: &PaymentAnswer,
    code: &str,
    now: Timestamp,
    rng: &mut StdRng,
) -> PaymentRejection {
    let request_id = match answer {
        PaymentAnswer::ByRecord { record, .. } => record.payload.payment_request.payload.request_id,
        PaymentAnswer::ByCoins(payment) => payment.request.payload.request_id,
    };
    PaymentRejection::sign(
        PaymentRejectionPayload {
            request_id,
            answer_digest: codec::digest(answer).unwrap(),
            reason: RejectReason {
                code: code.into(),
                message: format!("refused: {code}"),
            },
            rejected_at: now,
        },
        key,
        rng,
    )
    .unwrap()
}
