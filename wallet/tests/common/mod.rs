//! An issuer core in process, phones (wallets that save before they release) and a bare
//! merchant side built from tokens, for the wallet's integration tests.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use rand::rngs::StdRng;
use rand::SeedableRng;
use scrip_issuer::{
    InMemoryFunding, Issuer, IssuerConfig, IssuerKey, Keyring, KeysetKeys, RoleKeys,
};
use scrip_stores::MemoryStore;
use scrip_tokens::fixtures::{self, NOW};
use scrip_tokens::keys::{DirectoryRoot, Merchant};
use scrip_tokens::*;
use scrip_wallet::{CertificateOptions, SavedWallet, StorageKey, Unreleased, Wallet, WalletError};

pub const EUR: Currency = Currency::EUR;
pub const DAY: Duration = Duration::from_secs(86_400);
pub const MINUTE: Duration = Duration::from_secs(60);

pub fn eur(v: u64) -> Amount {
    Amount::new(v, EUR)
}

pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// `NOW` plus `minutes`.
pub fn at(minutes: u32) -> Timestamp {
    NOW.saturating_add(MINUTE * minutes)
}

pub fn validity() -> Validity {
    Validity::new(NOW.saturating_sub(DAY * 30), NOW.saturating_add(DAY * 300)).unwrap()
}

fn role<R: scrip_tokens::keys::IssuerRole>(key: SigningKey<R>) -> RoleKeys<R> {
    RoleKeys::new(vec![IssuerKey {
        key,
        validity: validity(),
    }])
    .unwrap()
}

pub type TheIssuer = Issuer<MemoryStore, InMemoryFunding>;

/// An issuer over a memory store, signing with the fixture keys (EUR coins of 1, 2, 5, 10).
pub fn issuer() -> TheIssuer {
    let denominations = fixtures::DENOMINATIONS
        .iter()
        .map(|v| (*v, fixtures::denomination(*v).unwrap()))
        .collect();
    let keyring = Keyring {
        root: fixtures::directory_root(),
        account_certifier: role(fixtures::account_certifier()),
        merchant_certifier: role(fixtures::merchant_certifier()),
        balance_certifier: role(fixtures::balance_certifier()),
        deposit_issuer: role(fixtures::deposit_issuer()),
        identified_coin_issuer: role(fixtures::identified_coin_issuer()),
        answer_signer: role(fixtures::answer_signer()),
        keysets: vec![
            KeysetKeys::new(EUR, validity(), validity().not_after, denominations).unwrap(),
        ],
    };
    Issuer::new(
        MemoryStore::new(),
        InMemoryFunding::new(),
        keyring,
        IssuerConfig::default(),
    )
}

pub fn root() -> VerifyingKey<DirectoryRoot> {
    fixtures::directory_root().verifying_key().clone()
}

/// The issuer's key directory (what the wallet verifies coins against).
pub fn directory(issuer: &TheIssuer) -> KeyDirectory {
    issuer.keys().directory(NOW).unwrap()
}

/// Certificate options: at most `amount`, no other rule.
pub fn up_to(amount: u64) -> CertificateOptions {
    CertificateOptions {
        requested_amount: Some(amount),
        ..CertificateOptions::any(EUR)
    }
}

/// A wallet with its storage key and the last saved state: every message goes through
/// save-then-release like a real vendor's would.
pub struct Phone {
    pub wallet: Wallet,
    pub storage_key: StorageKey,
    pub saved: Option<SavedWallet>,
    pub rng: StdRng,
}

impl Phone {
    /// Saves the wallet, keeps the bytes as "storage", releases the message.
    pub fn send<T>(&mut self, message: Unreleased<T>) -> T {
        let saved = self.wallet.save(&self.storage_key, &mut self.rng).unwrap();
        let message = message.release(&saved).unwrap();
        self.saved = Some(saved);
        message
    }

    /// Saves the wallet now (storage holds these bytes from here on).
    pub fn save(&mut self) {
        self.saved = Some(self.wallet.save(&self.storage_key, &mut self.rng).unwrap());
    }

    /// The process dies and restarts: the wallet in memory is gone, the one in storage is
    /// opened again.
    pub fn crash_and_restart(&mut self) {
        let bytes = self.saved.as_ref().expect("nothing saved").bytes().to_vec();
        self.wallet = Wallet::load(&bytes, &self.storage_key).unwrap();
    }

    /// A wallet with fixture device key `n` and the issuer's directory, not registered.
    pub fn new(issuer: &TheIssuer, n: u8, seed: u64) -> Phone {
        let mut rng = rng(seed);
        let mut wallet = Wallet::new(fixtures::device(n), root()).unwrap();
        wallet
            .update_directory(issuer.key_directory(NOW, &mut rng).unwrap(), NOW)
            .unwrap();
        let storage_key = StorageKey::random(&mut rng);
        Phone {
            wallet,
            storage_key,
            saved: None,
            rng,
        }
    }

    /// A registered wallet with fixture device key `n` and `deposit` on its account.
    pub async fn open(issuer: &TheIssuer, n: u8, deposit: u64, seed: u64) -> Phone {
        let mut phone = Phone::new(issuer, n, seed);
        let registration = phone
            .wallet
            .registration_request(None, NOW, &mut phone.rng)
            .unwrap();
        let registration = phone.send(registration);
        let opened = issuer
            .open_account(&registration, NOW, &mut phone.rng)
            .await
            .unwrap();
        phone
            .wallet
            .on_account_certificate(opened.certificate, NOW)
            .unwrap();
        if deposit > 0 {
            phone.deposit(issuer, deposit).await;
        }
        phone
    }

    /// A second device (fixture key `n`) of `existing`'s account, approved by it.
    pub async fn join(issuer: &TheIssuer, existing: &mut Phone, n: u8, seed: u64) -> Phone {
        let mut phone = Phone::new(issuer, n, seed);
        let account = existing.wallet.account().unwrap().account_id;
        let registration = phone
            .wallet
            .registration_request(Some(account), NOW, &mut phone.rng)
            .unwrap();
        let registration = phone.send(registration);
        let approval = existing
            .wallet
            .approve_device(phone.wallet.device_key_id(), NOW, &mut existing.rng)
            .unwrap();
        let certificate = issuer
            .add_device(&registration, &approval, NOW, &mut phone.rng)
            .await
            .unwrap();
        phone
            .wallet
            .on_account_certificate(certificate, NOW)
            .unwrap();
        phone
    }

    pub async fn deposit(&mut self, issuer: &TheIssuer, amount: u64) -> DepositConfirmation {
        let request = self
            .wallet
            .deposit_request(eur(amount), NOW, &mut self.rng)
            .unwrap();
        let request = self.send(request);
        let record = issuer.deposit(&request, NOW, &mut self.rng).await.unwrap();
        self.wallet
            .on_deposit_record(record, NOW, &mut self.rng)
            .unwrap()
    }

    /// Asks for a certificate (handing in the outbox) at `now`.
    pub async fn certificate(
        &mut self,
        issuer: &TheIssuer,
        options: CertificateOptions,
        now: Timestamp,
    ) -> BalanceCertificate {
        let request = self
            .wallet
            .certificate_request(options, now, &mut self.rng)
            .unwrap();
        let request = self.send(request);
        let cert = issuer
            .issue_balance_certificate(&request, now, &mut self.rng)
            .await
            .unwrap();
        self.wallet
            .on_balance_certificate(cert.clone(), now)
            .unwrap();
        cert
    }

    pub async fn withdraw_blind(&mut self, issuer: &TheIssuer, amounts: &[u64]) -> Vec<CoinId> {
        let request = self
            .wallet
            .blind_withdrawal_request(amounts, EUR, NOW, &mut self.rng)
            .unwrap();
        let request = self.send(request);
        let response = issuer
            .withdraw_blind(&request, NOW, &mut self.rng)
            .await
            .unwrap();
        self.wallet
            .on_blind_withdrawal(&request, &response, NOW)
            .unwrap()
    }

    pub async fn withdraw_identified(
        &mut self,
        issuer: &TheIssuer,
        amounts: &[u64],
    ) -> Vec<CoinId> {
        let request = self
            .wallet
            .identified_withdrawal_request(amounts, EUR, NOW, &mut self.rng)
            .unwrap();
        let request = self.send(request);
        let response = issuer
            .withdraw_identified(&request, NOW, &mut self.rng)
            .await
            .unwrap();
        self.wallet
            .on_identified_withdrawal(&request, &response, NOW)
            .unwrap()
    }

    /// Pays `offer` by record at `now`, saving before release; returns the answer sent.
    pub fn pay_record(&mut self, offer: &MerchantOffer, now: Timestamp) -> PaymentAnswer {
        let answer = self
            .wallet
            .pay_by_record(offer, now, &mut self.rng)
            .unwrap();
        self.send(answer)
    }

    /// Pays `offer` by coins at `now`, saving before release; returns the answer sent.
    pub fn pay_coins(&mut self, offer: &MerchantOffer, now: Timestamp) -> PaymentAnswer {
        let answer = self.wallet.pay_by_coins(offer, now).unwrap();
        self.send(answer)
    }

    /// The account's id and this device's id.
    pub fn ids(&self) -> (AccountId, DeviceId) {
        let account = self.wallet.account().unwrap();
        (account.account_id, account.device_id)
    }

    /// The values of the coins held, sorted.
    pub fn coin_values(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self
            .wallet
            .coins()
            .iter()
            .map(|c| c.amount().minor_units)
            .collect();
        v.sort_unstable();
        v
    }
}

/// A registered merchant: its key and certificate. Plays the point of sale from tokens
/// alone (the merchant crate is not a dependency of the wallet).
pub struct Shop {
    pub key: SigningKey<Merchant>,
    pub certificate: MerchantCertificate,
    pub rng: StdRng,
}

impl Shop {
    /// Registers fixture merchant `n` (once per issuer) in `category` and `region`.
    pub async fn register(
        issuer: &TheIssuer,
        n: u8,
        category: MerchantCategory,
        region: &str,
    ) -> Shop {
        let mut rng = rng(1_000 + u64::from(n));
        let key = fixtures::merchant(n);
        let registration = MerchantRegistration::sign(
            MerchantRegistrationPayload {
                merchant_key: key.verifying_key().clone(),
                category,
                region: Region::new(region).unwrap(),
                created_at: NOW,
                nonce: [n; 16],
            },
            &key,
            &mut rng,
        )
        .unwrap();
        let certificate = issuer
            .register_merchant(&registration, NOW, &mut rng)
            .await
            .unwrap();
        Shop {
            key,
            certificate,
            rng,
        }
    }

    /// A grocery in Bavaria.
    pub async fn grocery(issuer: &TheIssuer, n: u8) -> Shop {
        Shop::register(issuer, n, MerchantCategory::GROCERY, "DE-BY").await
    }

    /// A signed request for `amount` (minor units) at `now`, with the certificate.
    pub fn offer(&mut self, amount: u64, now: Timestamp) -> MerchantOffer {
        let cert = &self.certificate.payload;
        let request = PaymentRequest::sign(
            PaymentRequestPayload {
                request_id: RequestId::random(&mut self.rng),
                merchant_id: cert.merchant_id,
                amount: eur(amount),
                created_at: now,
                category: cert.category,
                region: cert.region.clone(),
            },
            &self.key,
            &mut self.rng,
        )
        .unwrap();
        MerchantOffer {
            request,
            merchant_certificate: self.certificate.clone(),
        }
    }

    /// Accepts an answer: countersigns a record, endorses coins.
    pub fn receipt(&mut self, answer: &PaymentAnswer, now: Timestamp) -> MerchantReply {
        let receipt = match answer {
            PaymentAnswer::ByRecord { record, .. } => PaymentReceipt::Record(
                CountersignedRecord::sign(
                    CountersignedRecordPayload {
                        record: record.clone(),
                        accepted_at: now,
                    },
                    &self.key,
                    &mut self.rng,
                )
                .unwrap(),
            ),
            PaymentAnswer::ByCoins(payment) => PaymentReceipt::Coins(
                EndorsedCoinPayment::sign(
                    EndorsedCoinPaymentPayload {
                        payment: payment.clone(),
                        merchant_id: self.certificate.payload.merchant_id,
                        endorsed_at: now,
                    },
                    &self.key,
                    &mut self.rng,
                )
                .unwrap(),
            ),
        };
        MerchantReply::Receipt(receipt)
    }

    /// Refuses an answer with a signed rejection (`code`).
    pub fn reject(&mut self, answer: &PaymentAnswer, code: &str, now: Timestamp) -> MerchantReply {
        MerchantReply::Rejection(rejection(&self.key, answer, code, now, &mut self.rng))
    }
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

/// The record inside a payment by record.
pub fn record_of(answer: &PaymentAnswer) -> &WithdrawalRecord {
    match answer {
        PaymentAnswer::ByRecord { record, .. } => record,
        PaymentAnswer::ByCoins(_) => panic!("expected a payment by record"),
    }
}

/// The coins inside a payment by coins.
pub fn coins_of(answer: &PaymentAnswer) -> &[Coin] {
    match answer {
        PaymentAnswer::ByCoins(payment) => &payment.coins,
        PaymentAnswer::ByRecord { .. } => panic!("expected a payment by coins"),
    }
}

/// The error of a result whose success type has no `Debug` (a `Wallet`).
pub fn error_of<T>(result: Result<T, WalletError>) -> WalletError {
    match result {
        Ok(_) => panic!("expected an error"),
        Err(e) => e,
    }
}
