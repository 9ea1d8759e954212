//! An issuer core in process, wallets and merchants around it, and the in-process
//! `IssuerClient` the merchant syncs through.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rand::rngs::StdRng;
use rand::SeedableRng;
use scrip_issuer::{
    InMemoryFunding, Issuer, IssuerConfig, IssuerKey, Keyring, KeysetKeys, RoleKeys,
};
use scrip_merchant::{ClientError, IssuerClient, Merchant, MerchantConfig};
use scrip_stores::MemoryStore;
use scrip_tokens::fixtures::{self, NOW};
use scrip_tokens::*;
use scrip_wallet::{CertificateOptions, SavedWallet, StorageKey, Unreleased, Wallet};

pub const EUR: Currency = Currency::EUR;
pub const DAY: Duration = Duration::from_secs(86_400);
pub const MINUTE: Duration = Duration::from_secs(60);

pub fn eur(v: u64) -> Amount {
    Amount::new(v, EUR)
}

pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

pub fn at(minutes: u64) -> Timestamp {
    NOW.saturating_add(MINUTE * minutes as u32)
}

fn role<R: scrip_tokens::keys::IssuerRole>(key: SigningKey<R>) -> RoleKeys<R> {
    RoleKeys::new(vec![IssuerKey {
        key,
        validity: validity(),
    }])
    .unwrap()
}

pub fn validity() -> Validity {
    Validity::new(NOW.saturating_sub(DAY * 30), NOW.saturating_add(DAY * 300)).unwrap()
}

pub type TheIssuer = Issuer<MemoryStore, InMemoryFunding>;

pub fn issuer() -> Arc<TheIssuer> {
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
    Arc::new(Issuer::new(
        MemoryStore::new(),
        InMemoryFunding::new(),
        keyring,
        IssuerConfig::default(),
    ))
}

pub fn root() -> VerifyingKey<scrip_tokens::keys::DirectoryRoot> {
    fixtures::directory_root().verifying_key().clone()
}

/// The issuer core behind the merchant's client trait (tests stand in for HTTP).
pub struct InProcess {
    pub issuer: Arc<TheIssuer>,
    pub now: Timestamp,
    /// When set, every call fails as if the network were down.
    pub offline: bool,
}

#[async_trait]
impl IssuerClient for InProcess {
    async fn key_directory(&self) -> Result<SignedKeyDirectory, ClientError> {
        if self.offline {
            return Err(ClientError::Transport("offline".into()));
        }
        let mut rng = rng(99);
        self.issuer
            .key_directory(self.now, &mut rng)
            .map_err(|e| ClientError::Refused {
                code: e.code().into(),
                message: e.to_string(),
            })
    }

    async fn redeem(&self, batch: &RedemptionBatch) -> Result<RedemptionReport, ClientError> {
        if self.offline {
            return Err(ClientError::Transport("offline".into()));
        }
        let refused = |e: scrip_issuer::IssuerError| ClientError::Refused {
            code: e.code().into(),
            message: e.to_string(),
        };
        let report = self.issuer.redeem(batch, self.now).await.map_err(refused)?;
        self.issuer
            .sign_answer(report, self.now, &mut rng(98))
            .map_err(refused)
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
    pub fn send<T>(&mut self, message: Unreleased<T>) -> T {
        let saved = self.wallet.save(&self.storage_key, &mut self.rng).unwrap();
        let message = message.release(&saved).unwrap();
        self.saved = Some(saved);
        message
    }

    /// A registered, funded wallet with fixture device key `n`.
    pub async fn open(issuer: &TheIssuer, n: u8, deposit: u64, seed: u64) -> Phone {
        let mut rng = rng(seed);
        let mut wallet = Wallet::new(fixtures::device(n), root()).unwrap();
        wallet
            .update_directory(issuer.key_directory(NOW, &mut rng).unwrap(), NOW)
            .unwrap();
        let storage_key = StorageKey::random(&mut rng);
        let mut phone = Phone {
            wallet,
            storage_key,
            saved: None,
            rng,
        };
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
            let request = phone
                .wallet
                .deposit_request(eur(deposit), NOW, &mut phone.rng)
                .unwrap();
            let request = phone.send(request);
            let record = issuer.deposit(&request, NOW, &mut phone.rng).await.unwrap();
            phone
                .wallet
                .on_deposit_record(record, NOW, &mut phone.rng)
                .unwrap();
        }
        phone
    }

    /// Asks for a certificate of up to `amount` (handing in the outbox).
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
}

pub async fn register_merchant(
    issuer: &TheIssuer,
    n: u8,
    category: MerchantCategory,
    region: &str,
    rng: &mut StdRng,
) -> (
    SigningKey<scrip_tokens::keys::Merchant>,
    MerchantCertificate,
) {
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
        rng,
    )
    .unwrap();
    let cert = issuer
        .register_merchant(&registration, NOW, rng)
        .await
        .unwrap();
    (key, cert)
}

/// A registered point of sale over a memory store, with the directory cached.
pub async fn shop(issuer: &Arc<TheIssuer>, n: u8, limit: u64) -> Merchant<MemoryStore> {
    shop_over(issuer, n, limit, MemoryStore::new()).await
}

pub async fn shop_over<S: scrip_stores::RecordStore>(
    issuer: &Arc<TheIssuer>,
    n: u8,
    limit: u64,
    store: S,
) -> Merchant<S> {
    let mut rng = rng(1000 + u64::from(n));
    let (key, cert) =
        register_merchant(issuer, n, MerchantCategory::GROCERY, "DE-BY", &mut rng).await;
    let merchant = Merchant::open(
        store,
        key,
        cert,
        root(),
        MerchantConfig::new(eur(limit)),
        NOW,
    )
    .await
    .unwrap();
    merchant
        .refresh_directory(issuer.key_directory(NOW, &mut rng).unwrap(), NOW)
        .await
        .unwrap();
    merchant
}

pub fn client(issuer: &Arc<TheIssuer>, now: Timestamp) -> InProcess {
    InProcess {
        issuer: Arc::clone(issuer),
        now,
        offline: false,
    }
}

/// Runs one offline payment: the merchant offers, the phone answers, the merchant replies,
/// the phone takes the reply. Returns the reply.
pub async fn pay<S: scrip_stores::RecordStore>(
    phone: &mut Phone,
    merchant: &Merchant<S>,
    amount: u64,
    with: scrip_wallet::PayWith,
    now: Timestamp,
) -> MerchantReply {
    let mut rng = rng(now.as_unix_millis() ^ amount);
    // Everything crosses as bytes, as over NFC.
    let offer = codec::encode(&merchant.offer(eur(amount), now, &mut rng).await.unwrap()).unwrap();
    let answer = phone
        .wallet
        .pay_bytes(&offer, with, now, &mut phone.rng)
        .unwrap();
    let answer = phone.send(answer);
    let reply = merchant.accept_bytes(&answer, now, &mut rng).await.unwrap();
    let reply: MerchantReply = codec::decode(&reply).unwrap();
    phone.wallet.on_merchant_reply(&reply, now).unwrap();
    reply
}

pub fn rejection_code(reply: &MerchantReply) -> String {
    match reply {
        MerchantReply::Rejection(r) => r.payload.reason.code.clone(),
        MerchantReply::Receipt(_) => panic!("expected a rejection, got a receipt"),
    }
}

pub fn is_receipt(reply: &MerchantReply) -> bool {
    matches!(reply, MerchantReply::Receipt(_))
}
