//! Shared set-up of the `signing` and `redemption` benchmarks: an issuer core over fixture
//! keys and any record store, a paying device and a merchant around it, building the signed
//! messages a real wallet or point of sale would send. Everything happens at the fixture
//! time `NOW` (the keys are valid for half a year either side of it).

#![allow(dead_code)]

use std::time::Duration;

use criterion::{BenchmarkGroup, SamplingMode};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use scrip_issuer::{
    InMemoryFunding, Issuer, IssuerConfig, IssuerKey, Keyring, KeysetKeys, RoleKeys,
};
use scrip_stores::RecordStore;
use scrip_tokens::fixtures;
use scrip_tokens::keys::{Device as DeviceRole, IssuerRole, Merchant as MerchantRole};
use scrip_tokens::*;

pub use scrip_tokens::fixtures::NOW;

pub const EUR: Currency = Currency::EUR;
const DAY: Duration = Duration::from_secs(86_400);

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

/// `BENCH_QUICK=1` shortens every group (smoke runs).
pub fn quick() -> bool {
    std::env::var_os("BENCH_QUICK").is_some()
}

/// Timing for a group of fast, repeatable operations.
pub fn fast<M: criterion::measurement::Measurement>(group: &mut BenchmarkGroup<'_, M>) {
    if quick() {
        group
            .sample_size(10)
            .warm_up_time(Duration::from_millis(100))
            .measurement_time(Duration::from_millis(300));
    } else {
        group
            .sample_size(20)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2));
    }
}

/// Timing for a group whose every iteration needs fresh, prepared input (prepared outside
/// the measured time, but it costs wall time): flat sampling keeps the iteration count, and
/// so the preparation, close to what `measure` needs.
pub fn prepared<M: criterion::measurement::Measurement>(
    group: &mut BenchmarkGroup<'_, M>,
    measure: Duration,
) {
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(if quick() { 10 } else { 200 }))
        .measurement_time(if quick() { measure / 4 } else { measure });
}

/// Keys valid for a year around `NOW`; one EUR keyset of 1, 2, 5 and 10.
pub fn key_validity() -> Validity {
    Validity::new(NOW.saturating_sub(DAY * 180), NOW.saturating_add(DAY * 180)).unwrap()
}

fn role<R: IssuerRole>(key: SigningKey<R>) -> RoleKeys<R> {
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

pub type BenchIssuer<S> = Issuer<S, InMemoryFunding>;

/// An issuer core over `store`, fixture keys, default limits.
pub fn issuer<S: RecordStore>(store: S) -> BenchIssuer<S> {
    Issuer::new(
        store,
        InMemoryFunding::new(),
        fixture_keyring(),
        IssuerConfig::default(),
    )
}

/// The issuer's (unsigned) key directory at `NOW`.
pub fn directory<S: RecordStore>(issuer: &BenchIssuer<S>) -> KeyDirectory {
    issuer.keys().directory(NOW).unwrap()
}

/// The current EUR keyset of the directory.
pub fn keyset(directory: &KeyDirectory) -> Keyset {
    directory.current_keyset(EUR, NOW).unwrap().clone()
}

/// The wallet side: one registered device of a funded account.
pub struct Device {
    pub key: SigningKey<DeviceRole>,
    pub account_id: AccountId,
    pub device_id: DeviceId,
    pub certificate: AccountCertificate,
}

impl Device {
    /// Opens an account with fixture device key `n` and deposits `deposit`.
    pub async fn open<S: RecordStore>(
        issuer: &BenchIssuer<S>,
        n: u8,
        deposit: u64,
        rng: &mut StdRng,
    ) -> Device {
        let key = fixtures::device(n);
        let registration = DeviceRegistration::sign(
            DeviceRegistrationPayload {
                device_key: key.verifying_key().clone(),
                account_id: None,
                created_at: NOW,
                nonce: nonce(rng),
            },
            &key,
            rng,
        )
        .unwrap();
        let opened = issuer.open_account(&registration, NOW, rng).await.unwrap();
        let device = Device {
            key,
            account_id: opened.account_id,
            device_id: opened.device_id,
            certificate: opened.certificate,
        };
        let request = DepositRequest::sign(
            DepositRequestPayload {
                deposit_id: DepositId::random(rng),
                account_id: device.account_id,
                device_id: device.device_id,
                amount: eur(deposit),
                created_at: NOW,
            },
            &device.key,
            rng,
        )
        .unwrap();
        issuer.deposit(&request, NOW, rng).await.unwrap();
        device
    }

    /// A signed request for a certificate of up to `requested`, no locks.
    pub fn certificate_request(
        &self,
        requested: u64,
        rng: &mut StdRng,
    ) -> BalanceCertificateRequest {
        BalanceCertificateRequest::sign(
            BalanceCertificateRequestPayload {
                account_id: self.account_id,
                device_id: self.device_id,
                currency: EUR,
                requested_amount: Some(requested),
                max_payments: None,
                per_payment_cap: None,
                lock: LockRules::default(),
                unsent_records: Vec::new(),
                deposit_confirmations: Vec::new(),
                created_at: NOW,
                nonce: nonce(rng),
            },
            &self.key,
            rng,
        )
        .unwrap()
    }

    /// A balance certificate of up to `requested` (default limits: 100 payments).
    pub async fn certificate<S: RecordStore>(
        &self,
        issuer: &BenchIssuer<S>,
        requested: u64,
        rng: &mut StdRng,
    ) -> BalanceCertificate {
        let request = self.certificate_request(requested, rng);
        issuer
            .issue_balance_certificate(&request, NOW, rng)
            .await
            .unwrap()
    }

    /// A record paying `request` under `cert` with the given sequence and cumulative.
    pub fn record(
        &self,
        cert: &BalanceCertificate,
        request: &PaymentRequest,
        sequence: u64,
        cumulative: u64,
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
                signed_at: NOW,
                payment_request: request.clone(),
            },
            &self.key,
            rng,
        )
        .unwrap()
    }

    /// Withdraws blind coins of `amounts` from the issuer (one request, at most 200
    /// coins) and finalizes them, as a wallet does.
    pub async fn withdraw_blind<S: RecordStore>(
        &self,
        issuer: &BenchIssuer<S>,
        amounts: &[u64],
        rng: &mut StdRng,
    ) -> Vec<Coin> {
        let keyset = keyset(&directory(issuer));
        let pending: Vec<PendingCoin> = amounts
            .iter()
            .map(|v| PendingCoin::new(rng, &keyset, eur(*v)).unwrap())
            .collect();
        let mut idempotency_key = [0u8; 32];
        rng.fill_bytes(&mut idempotency_key);
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
        let response = issuer.withdraw_blind(&request, NOW, rng).await.unwrap();
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
}

/// The merchant side: a registered merchant key and its certificate.
pub struct Shop {
    pub key: SigningKey<MerchantRole>,
    pub certificate: MerchantCertificate,
}

impl Shop {
    /// Registers fixture merchant key `n` as a grocery in DE-BY.
    pub async fn register<S: RecordStore>(
        issuer: &BenchIssuer<S>,
        n: u8,
        rng: &mut StdRng,
    ) -> Shop {
        let key = fixtures::merchant(n);
        let registration = MerchantRegistration::sign(
            MerchantRegistrationPayload {
                merchant_key: key.verifying_key().clone(),
                category: MerchantCategory::GROCERY,
                region: Region::new("DE-BY").unwrap(),
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

    /// A payment of exactly `coins` to a fresh request, endorsed.
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
}
