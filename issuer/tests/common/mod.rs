//! Test helpers: an issuer over fixture keys, and minimal wallet and merchant sides that
//! build the signed requests a real wallet or point of sale would send.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use scrip_issuer::{
    InMemoryFunding, Issuer, IssuerConfig, IssuerKey, Keyring, KeysetKeys, RoleKeys,
};
use scrip_stores::RecordStore;
use scrip_tokens::fixtures::{self, NOW};
use scrip_tokens::keys::{Device, Merchant};
use scrip_tokens::*;

pub const EUR: Currency = Currency::EUR;
pub const DAY: Duration = Duration::from_secs(86_400);
pub const HOUR: Duration = Duration::from_secs(3_600);

pub fn eur(minor_units: u64) -> Amount {
    Amount::new(minor_units, EUR)
}

pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

pub fn nonce(rng: &mut StdRng) -> Nonce {
    let mut n = [0u8; 16];
    rng.fill_bytes(&mut n);
    n
}

/// Keys valid for a year around `NOW`; one EUR keyset of 1, 2, 5 and 10.
pub fn key_validity() -> Validity {
    Validity::new(NOW.saturating_sub(DAY * 180), NOW.saturating_add(DAY * 180)).unwrap()
}

fn role<R: scrip_tokens::keys::IssuerRole>(key: SigningKey<R>) -> RoleKeys<R> {
    RoleKeys::new(vec![IssuerKey {
        key,
        validity: key_validity(),
    }])
    .unwrap()
}

pub fn fixture_keyring() -> Keyring {
    let validity = key_validity();
    let denominations = fixtures::DENOMINATIONS
        .iter()
        .map(|v| (*v, fixtures::denomination(*v).unwrap()))
        .collect();
    Keyring {
        root: fixtures::directory_root(),
        account_certifier: role(fixtures::account_certifier()),
        merchant_certifier: role(fixtures::merchant_certifier()),
        balance_certifier: role(fixtures::balance_certifier()),
        deposit_issuer: role(fixtures::deposit_issuer()),
        identified_coin_issuer: role(fixtures::identified_coin_issuer()),
        answer_signer: role(fixtures::answer_signer()),
        keysets: vec![KeysetKeys::new(EUR, validity, validity.not_after, denominations).unwrap()],
    }
}

pub type TestIssuer<S> = Issuer<S, InMemoryFunding>;

pub fn issuer<S: RecordStore>(store: S) -> TestIssuer<S> {
    Issuer::new(
        store,
        InMemoryFunding::new(),
        fixture_keyring(),
        IssuerConfig::default(),
    )
}

pub fn issuer_with<S: RecordStore>(store: S, config: IssuerConfig) -> TestIssuer<S> {
    Issuer::new(store, InMemoryFunding::new(), fixture_keyring(), config)
}

pub fn registration(
    key: &SigningKey<Device>,
    account: Option<AccountId>,
    rng: &mut StdRng,
) -> DeviceRegistration {
    DeviceRegistration::sign(
        DeviceRegistrationPayload {
            device_key: key.verifying_key().clone(),
            account_id: account,
            created_at: NOW,
            nonce: nonce(rng),
        },
        key,
        rng,
    )
    .unwrap()
}

/// The wallet side: one device of an account.
pub struct Wallet {
    pub key: SigningKey<Device>,
    pub account_id: AccountId,
    pub device_id: DeviceId,
    pub certificate: AccountCertificate,
    /// Next sequence number to use.
    pub sequence: u64,
    /// Cumulative amount paid under each balance certificate.
    pub cumulative: HashMap<CertificateSerial, u64>,
}

impl Wallet {
    /// Opens an account with fixture device key `n`.
    pub async fn open<S: RecordStore>(issuer: &TestIssuer<S>, n: u8, rng: &mut StdRng) -> Wallet {
        let key = fixtures::device(n);
        let opened = issuer
            .open_account(&registration(&key, None, rng), NOW, rng)
            .await
            .unwrap();
        Wallet {
            key,
            account_id: opened.account_id,
            device_id: opened.device_id,
            certificate: opened.certificate,
            sequence: 1,
            cumulative: HashMap::new(),
        }
    }

    /// Adds fixture device key `n` to this wallet's account, approved by this device.
    pub async fn add_device<S: RecordStore>(
        &self,
        issuer: &TestIssuer<S>,
        n: u8,
        rng: &mut StdRng,
    ) -> Wallet {
        let key = fixtures::device(n);
        let approval = DeviceApproval::sign(
            DeviceApprovalPayload {
                account_id: self.account_id,
                approving_device: self.device_id,
                new_device_key: key.key_id(),
                created_at: NOW,
                nonce: nonce(rng),
            },
            &self.key,
            rng,
        )
        .unwrap();
        let certificate = issuer
            .add_device(
                &registration(&key, Some(self.account_id), rng),
                &approval,
                NOW,
                rng,
            )
            .await
            .unwrap();
        Wallet {
            key,
            account_id: self.account_id,
            device_id: certificate.payload.device_id,
            certificate,
            sequence: 1,
            cumulative: HashMap::new(),
        }
    }

    pub fn deposit_request(&self, amount: u64, rng: &mut StdRng) -> DepositRequest {
        DepositRequest::sign(
            DepositRequestPayload {
                deposit_id: DepositId::random(rng),
                account_id: self.account_id,
                device_id: self.device_id,
                amount: eur(amount),
                created_at: NOW,
            },
            &self.key,
            rng,
        )
        .unwrap()
    }

    pub async fn deposit<S: RecordStore>(
        &self,
        issuer: &TestIssuer<S>,
        amount: u64,
        rng: &mut StdRng,
    ) -> DepositRecord {
        issuer
            .deposit(&self.deposit_request(amount, rng), NOW, rng)
            .await
            .unwrap()
    }

    pub fn certificate_request(
        &self,
        requested: Option<u64>,
        lock: LockRules,
        unsent: Vec<WithdrawalRecord>,
        rng: &mut StdRng,
    ) -> BalanceCertificateRequest {
        BalanceCertificateRequest::sign(
            BalanceCertificateRequestPayload {
                account_id: self.account_id,
                device_id: self.device_id,
                currency: EUR,
                requested_amount: requested,
                max_payments: None,
                per_payment_cap: None,
                lock,
                unsent_records: unsent,
                deposit_confirmations: Vec::new(),
                created_at: NOW,
                nonce: nonce(rng),
            },
            &self.key,
            rng,
        )
        .unwrap()
    }

    /// Asks for a certificate of up to `requested`, no locks.
    pub async fn certificate<S: RecordStore>(
        &mut self,
        issuer: &TestIssuer<S>,
        requested: u64,
        now: Timestamp,
        rng: &mut StdRng,
    ) -> BalanceCertificate {
        let request =
            self.certificate_request(Some(requested), LockRules::default(), Vec::new(), rng);
        let cert = issuer
            .issue_balance_certificate(&request, now, rng)
            .await
            .unwrap();
        self.adopt(&cert);
        cert
    }

    /// Moves the sequence counter into a new certificate's range.
    pub fn adopt(&mut self, cert: &BalanceCertificate) {
        self.sequence = self.sequence.max(cert.payload.first_sequence);
    }

    /// Signs a record paying `request` under `cert` (the wallet's bookkeeping: next
    /// sequence number, running cumulative).
    pub fn pay(
        &mut self,
        cert: &BalanceCertificate,
        request: &PaymentRequest,
        now: Timestamp,
        rng: &mut StdRng,
    ) -> WithdrawalRecord {
        let cumulative = self.cumulative.entry(cert.payload.serial).or_insert(0);
        *cumulative += request.payload.amount.minor_units;
        let cumulative = *cumulative;
        let record = self.sign_record(cert, request, self.sequence, cumulative, now, rng);
        self.sequence += 1;
        record
    }

    /// Signs a record with explicit sequence and cumulative (for cheating devices).
    pub fn sign_record(
        &self,
        cert: &BalanceCertificate,
        request: &PaymentRequest,
        sequence: u64,
        cumulative: u64,
        now: Timestamp,
        rng: &mut StdRng,
    ) -> WithdrawalRecord {
        WithdrawalRecord::sign(
            WithdrawalRecordPayload {
                record_id: RecordId::random(rng),
                account_id: self.account_id,
                device_id: self.device_id,
                certificate_serial: cert.payload.serial,
                sequence,
                cumulative: eur(cumulative),
                signed_at: now,
                payment_request: request.clone(),
            },
            &self.key,
            rng,
        )
        .unwrap()
    }

    pub fn blind_request(
        &self,
        keyset: &Keyset,
        amounts: &[u64],
        idempotency_key: [u8; 32],
        rng: &mut StdRng,
    ) -> (BlindWithdrawalRequest, Vec<PendingCoin>) {
        let pending: Vec<PendingCoin> = amounts
            .iter()
            .map(|v| PendingCoin::new(rng, keyset, eur(*v)).unwrap())
            .collect();
        let request = BlindWithdrawalRequest::sign(
            BlindWithdrawalRequestPayload {
                account_id: self.account_id,
                device_id: self.device_id,
                keyset_id: keyset.id(),
                coins: pending
                    .iter()
                    .map(|p| (p.amount().minor_units, p.blinded().clone()))
                    .collect(),
                idempotency_key,
                created_at: NOW,
                nonce: nonce(rng),
            },
            &self.key,
            rng,
        )
        .unwrap();
        (request, pending)
    }

    /// Withdraws blind coins of `amounts` and finalizes them.
    pub async fn withdraw_blind<S: RecordStore>(
        &self,
        issuer: &TestIssuer<S>,
        amounts: &[u64],
        rng: &mut StdRng,
    ) -> Vec<Coin> {
        let directory = issuer.keys().directory(NOW).unwrap();
        let keyset = directory.current_keyset(EUR, NOW).unwrap().clone();
        let mut key = [0u8; 32];
        rng.fill_bytes(&mut key);
        let (request, pending) = self.blind_request(&keyset, amounts, key, rng);
        let response = issuer.withdraw_blind(&request, NOW, rng).await.unwrap();
        finalize(&keyset, &pending, &response)
    }

    pub fn identified_request(
        &self,
        amounts: &[u64],
        idempotency_key: [u8; 32],
        rng: &mut StdRng,
    ) -> IdentifiedWithdrawalRequest {
        IdentifiedWithdrawalRequest::sign(
            IdentifiedWithdrawalRequestPayload {
                account_id: self.account_id,
                device_id: self.device_id,
                currency: EUR,
                amounts: amounts.to_vec(),
                idempotency_key,
                created_at: NOW,
                nonce: nonce(rng),
            },
            &self.key,
            rng,
        )
        .unwrap()
    }

    pub async fn withdraw_identified<S: RecordStore>(
        &self,
        issuer: &TestIssuer<S>,
        amounts: &[u64],
        rng: &mut StdRng,
    ) -> Vec<Coin> {
        let mut key = [0u8; 32];
        rng.fill_bytes(&mut key);
        let response = issuer
            .withdraw_identified(&self.identified_request(amounts, key, rng), NOW, rng)
            .await
            .unwrap();
        response.coins.into_iter().map(Coin::Identified).collect()
    }
}

pub fn finalize(
    keyset: &Keyset,
    pending: &[PendingCoin],
    response: &BlindWithdrawalResponse,
) -> Vec<Coin> {
    pending
        .iter()
        .zip(&response.signatures)
        .map(|(p, s)| {
            Coin::Blind(
                p.finalize(keyset.key_for(p.amount().minor_units).unwrap(), s)
                    .unwrap(),
            )
        })
        .collect()
}

/// The merchant side.
pub struct Shop {
    pub key: SigningKey<Merchant>,
    pub certificate: MerchantCertificate,
}

impl Shop {
    pub async fn register<S: RecordStore>(issuer: &TestIssuer<S>, n: u8, rng: &mut StdRng) -> Shop {
        Self::register_as(issuer, n, MerchantCategory::GROCERY, "DE-BY", rng).await
    }

    pub async fn register_as<S: RecordStore>(
        issuer: &TestIssuer<S>,
        n: u8,
        category: MerchantCategory,
        region: &str,
        rng: &mut StdRng,
    ) -> Shop {
        let key = fixtures::merchant(n);
        let registration = MerchantRegistration::sign(
            MerchantRegistrationPayload {
                merchant_key: key.verifying_key().clone(),
                category,
                region: Region::new(region).unwrap(),
                created_at: NOW,
                nonce: nonce(rng),
            },
            &key,
            rng,
        )
        .unwrap();
        let certificate = issuer
            .register_merchant(&registration, NOW, rng)
            .await
            .unwrap();
        Shop { key, certificate }
    }

    pub fn id(&self) -> MerchantId {
        self.certificate.payload.merchant_id
    }

    pub fn request(&self, amount: u64, rng: &mut StdRng) -> PaymentRequest {
        PaymentRequest::sign(
            PaymentRequestPayload {
                request_id: RequestId::random(rng),
                merchant_id: self.id(),
                amount: eur(amount),
                created_at: NOW,
                category: self.certificate.payload.category,
                region: self.certificate.payload.region.clone(),
            },
            &self.key,
            rng,
        )
        .unwrap()
    }

    pub fn countersign(&self, record: &WithdrawalRecord, rng: &mut StdRng) -> CountersignedRecord {
        CountersignedRecord::sign(
            CountersignedRecordPayload {
                record: record.clone(),
                accepted_at: NOW,
            },
            &self.key,
            rng,
        )
        .unwrap()
    }

    pub fn endorse(&self, coins: Vec<Coin>, rng: &mut StdRng) -> EndorsedCoinPayment {
        let total: u64 = coins.iter().map(|c| c.amount().minor_units).sum();
        let payment = CoinPayment {
            request: self.request(total, rng),
            coins,
        };
        EndorsedCoinPayment::sign(
            EndorsedCoinPaymentPayload {
                payment,
                merchant_id: self.id(),
                endorsed_at: NOW,
            },
            &self.key,
            rng,
        )
        .unwrap()
    }

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

    pub async fn redeem<S: RecordStore>(
        &self,
        issuer: &TestIssuer<S>,
        items: Vec<RedemptionItem>,
        now: Timestamp,
        rng: &mut StdRng,
    ) -> Vec<RedemptionOutcome> {
        issuer
            .redeem(&self.batch(items, rng), now)
            .await
            .unwrap()
            .outcomes
    }
}
