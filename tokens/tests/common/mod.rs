//! One of every token, built from fixture keys with a seeded RNG, plus a full verifier for
//! each signed kind (decode + every check a receiver would make).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use rand::rngs::StdRng;
use rand::SeedableRng;
use scrip_tokens::fixtures::{self, TestIssuer, NOW};
use scrip_tokens::keys::{Device, Merchant};
use scrip_tokens::*;

pub const DAY: Duration = Duration::from_secs(86_400);
pub const EUR: Currency = Currency::EUR;

pub fn eur(minor_units: u64) -> Amount {
    Amount::new(minor_units, EUR)
}

pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

pub struct World {
    pub issuer: TestIssuer,
    pub device: SigningKey<Device>,
    pub merchant: SigningKey<Merchant>,
    pub account_cert: AccountCertificate,
    pub merchant_cert: MerchantCertificate,
    pub balance_cert: BalanceCertificate,
    pub request: PaymentRequest,
    pub record: WithdrawalRecord,
    pub countersigned: CountersignedRecord,
    pub deposit_request: DepositRequest,
    pub deposit_record: DepositRecord,
    pub deposit_confirmation: DepositConfirmation,
    pub blind_coin: BlindCoin,
    pub identified_coin: IdentifiedCoin,
    pub coin_payment: CoinPayment,
    pub endorsed: EndorsedCoinPayment,
}

impl World {
    pub fn new() -> Self {
        let mut rng = rng(42);
        let rng = &mut rng;
        // Keys valid for a year around NOW; certificates for a day.
        let key_validity =
            Validity::new(NOW.saturating_sub(DAY * 180), NOW.saturating_add(DAY * 180)).unwrap();
        let issuer = TestIssuer::new(EUR, key_validity);
        let device = fixtures::device(1);
        let merchant = fixtures::merchant(1);
        let cert_validity =
            Validity::new(NOW.saturating_sub(DAY), NOW.saturating_add(DAY)).unwrap();
        let account_id = AccountId::random(rng);
        let device_id = DeviceId::random(rng);
        let merchant_id = MerchantId::random(rng);

        let account_cert = AccountCertificate::sign(
            AccountCertificatePayload {
                account_id,
                device_id,
                device_key: device.verifying_key().clone(),
                validity: cert_validity,
            },
            &issuer.account_certifier,
            rng,
        )
        .unwrap();
        let region = Region::new("DE-BY").unwrap();
        let merchant_cert = MerchantCertificate::sign(
            MerchantCertificatePayload {
                merchant_id,
                merchant_key: merchant.verifying_key().clone(),
                category: MerchantCategory::GROCERY,
                region: Region::new("DE").unwrap(),
                validity: cert_validity,
            },
            &issuer.merchant_certifier,
            rng,
        )
        .unwrap();
        let balance_cert = BalanceCertificate::sign(
            BalanceCertificatePayload {
                serial: CertificateSerial::random(rng),
                account_id,
                device_id,
                available: eur(5_000),
                locked: eur(1_000),
                issued_at: NOW.saturating_sub(Duration::from_secs(3600)),
                expires_at: NOW.saturating_add(DAY),
                max_payments: 10,
                first_sequence: 1,
                per_payment_cap: eur(2_000),
                allowed_categories: Allowed::Only(vec![MerchantCategory::GROCERY]),
                allowed_regions: Allowed::Only(vec![Region::new("DE").unwrap()]),
            },
            &issuer.balance_certifier,
            rng,
        )
        .unwrap();
        let request = PaymentRequest::sign(
            PaymentRequestPayload {
                request_id: RequestId::random(rng),
                merchant_id,
                amount: eur(1_250),
                created_at: NOW,
                category: MerchantCategory::GROCERY,
                region: region.clone(),
            },
            &merchant,
            rng,
        )
        .unwrap();
        let record = WithdrawalRecord::sign(
            WithdrawalRecordPayload {
                record_id: RecordId::random(rng),
                account_id,
                device_id,
                certificate_serial: balance_cert.payload.serial,
                sequence: 1,
                cumulative: eur(1_250),
                signed_at: NOW,
                payment_request: request.clone(),
            },
            &device,
            rng,
        )
        .unwrap();
        let countersigned = CountersignedRecord::sign(
            CountersignedRecordPayload {
                record: record.clone(),
                accepted_at: NOW,
            },
            &merchant,
            rng,
        )
        .unwrap();
        let deposit_request = DepositRequest::sign(
            DepositRequestPayload {
                deposit_id: DepositId::random(rng),
                account_id,
                device_id,
                amount: eur(10_000),
                created_at: NOW,
            },
            &device,
            rng,
        )
        .unwrap();
        let deposit_record = DepositRecord::sign(
            DepositRecordPayload {
                request: deposit_request.clone(),
                credited_at: NOW,
            },
            &issuer.deposit_issuer,
            rng,
        )
        .unwrap();
        let deposit_confirmation = DepositConfirmation::sign(
            DepositConfirmationPayload {
                deposit_id: deposit_record.payload.deposit_id(),
                account_id,
                device_id,
                deposit_record_digest: codec::digest(&deposit_record).unwrap(),
                confirmed_at: NOW,
            },
            &device,
            rng,
        )
        .unwrap();
        let blind_coin = withdraw_blind(&issuer, rng, 10);
        let identified_coin = IdentifiedCoin::sign(
            IdentifiedCoinPayload {
                coin_id: CoinId::random(rng),
                amount: eur(5),
                holder: VirtualId::random(rng),
                issued_at: NOW,
            },
            &issuer.identified_coin_issuer,
            rng,
        )
        .unwrap();
        let coin_request = PaymentRequest::sign(
            PaymentRequestPayload {
                request_id: RequestId::random(rng),
                merchant_id,
                amount: eur(15),
                created_at: NOW,
                category: MerchantCategory::GROCERY,
                region,
            },
            &merchant,
            rng,
        )
        .unwrap();
        let coin_payment = CoinPayment {
            request: coin_request,
            coins: vec![
                Coin::Blind(blind_coin.clone()),
                Coin::Identified(identified_coin.clone()),
            ],
        };
        let endorsed = EndorsedCoinPayment::sign(
            EndorsedCoinPaymentPayload {
                payment: coin_payment.clone(),
                merchant_id,
                endorsed_at: NOW,
            },
            &merchant,
            rng,
        )
        .unwrap();
        World {
            issuer,
            device,
            merchant,
            account_cert,
            merchant_cert,
            balance_cert,
            request,
            record,
            countersigned,
            deposit_request,
            deposit_record,
            deposit_confirmation,
            blind_coin,
            identified_coin,
            coin_payment,
            endorsed,
        }
    }

    pub fn directory(&self) -> &KeyDirectory {
        &self.issuer.directory
    }

    pub fn account(&self) -> &AccountCertificatePayload {
        &self.account_cert.payload
    }

    pub fn merchant_payload(&self) -> &MerchantCertificatePayload {
        &self.merchant_cert.payload
    }

    /// Every signed (or signature-carrying) object: its name, its encoding, and the full
    /// check a receiver makes on such bytes.
    pub fn signed_objects(&self) -> Vec<(&'static str, Vec<u8>, Verifier)> {
        vec![
            (
                "account certificate",
                codec::encode(&self.account_cert).unwrap(),
                verify_account_cert,
            ),
            (
                "merchant certificate",
                codec::encode(&self.merchant_cert).unwrap(),
                verify_merchant_cert,
            ),
            (
                "balance certificate",
                codec::encode(&self.balance_cert).unwrap(),
                verify_balance_cert,
            ),
            (
                "payment request",
                codec::encode(&self.request).unwrap(),
                verify_request,
            ),
            (
                "withdrawal record",
                codec::encode(&self.record).unwrap(),
                verify_record,
            ),
            (
                "countersigned record",
                codec::encode(&self.countersigned).unwrap(),
                verify_countersigned,
            ),
            (
                "deposit request",
                codec::encode(&self.deposit_request).unwrap(),
                verify_deposit_request,
            ),
            (
                "deposit record",
                codec::encode(&self.deposit_record).unwrap(),
                verify_deposit_record,
            ),
            (
                "deposit confirmation",
                codec::encode(&self.deposit_confirmation).unwrap(),
                verify_deposit_confirmation,
            ),
            (
                "blind coin",
                codec::encode(&Coin::Blind(self.blind_coin.clone())).unwrap(),
                verify_coin,
            ),
            (
                "identified coin",
                codec::encode(&Coin::Identified(self.identified_coin.clone())).unwrap(),
                verify_coin,
            ),
            (
                "coin payment",
                codec::encode(&self.coin_payment).unwrap(),
                verify_coin_payment,
            ),
            (
                "endorsed coin payment",
                codec::encode(&self.endorsed).unwrap(),
                verify_endorsed,
            ),
            (
                "signed key directory",
                codec::encode(&self.issuer.signed_directory(&mut rng(8))).unwrap(),
                verify_directory,
            ),
        ]
    }
}

pub type Verifier = fn(&World, &[u8]) -> Result<()>;

fn verify_account_cert(w: &World, b: &[u8]) -> Result<()> {
    codec::decode::<AccountCertificate>(b)?
        .verify(w.directory(), NOW)
        .map(|_| ())
}

fn verify_merchant_cert(w: &World, b: &[u8]) -> Result<()> {
    codec::decode::<MerchantCertificate>(b)?
        .verify(w.directory(), NOW)
        .map(|_| ())
}

fn verify_balance_cert(w: &World, b: &[u8]) -> Result<()> {
    codec::decode::<BalanceCertificate>(b)?
        .verify(w.directory(), w.account(), NOW)
        .map(|_| ())
}

fn verify_request(w: &World, b: &[u8]) -> Result<()> {
    codec::decode::<PaymentRequest>(b)?
        .verify(w.merchant_payload())
        .map(|_| ())
}

fn check_record(w: &World, record: &WithdrawalRecord) -> Result<()> {
    let payload = record.verify(w.account())?;
    payload.payment_request.verify(w.merchant_payload())?;
    Ok(())
}

fn verify_record(w: &World, b: &[u8]) -> Result<()> {
    check_record(w, &codec::decode::<WithdrawalRecord>(b)?)
}

fn verify_countersigned(w: &World, b: &[u8]) -> Result<()> {
    let receipt = codec::decode::<CountersignedRecord>(b)?;
    let payload = receipt.verify(w.merchant_payload())?;
    check_record(w, &payload.record)
}

fn verify_deposit_request(w: &World, b: &[u8]) -> Result<()> {
    codec::decode::<DepositRequest>(b)?
        .verify(w.account())
        .map(|_| ())
}

fn verify_deposit_record(w: &World, b: &[u8]) -> Result<()> {
    codec::decode::<DepositRecord>(b)?
        .verify(w.directory(), w.account(), NOW)
        .map(|_| ())
}

fn verify_deposit_confirmation(w: &World, b: &[u8]) -> Result<()> {
    codec::decode::<DepositConfirmation>(b)?
        .verify(w.account())
        .map(|_| ())
}

fn verify_coin(w: &World, b: &[u8]) -> Result<()> {
    codec::decode::<Coin>(b)?.verify(w.directory(), NOW)
}

fn check_coin_payment(w: &World, payment: &CoinPayment) -> Result<()> {
    payment
        .verify(w.merchant_payload(), w.directory(), NOW)
        .map(|_| ())
}

fn verify_coin_payment(w: &World, b: &[u8]) -> Result<()> {
    check_coin_payment(w, &codec::decode::<CoinPayment>(b)?)
}

fn verify_endorsed(w: &World, b: &[u8]) -> Result<()> {
    let endorsed = codec::decode::<EndorsedCoinPayment>(b)?;
    let payload = endorsed.verify(w.merchant_payload())?;
    check_coin_payment(w, &payload.payment)
}

fn verify_directory(w: &World, b: &[u8]) -> Result<()> {
    let root = w.issuer.directory_root.verifying_key();
    let directory = codec::decode::<SignedKeyDirectory>(b)?;
    if directory.verify(root)? == w.directory() {
        Ok(())
    } else {
        Err(Error::BadSignature)
    }
}

/// Runs the blind withdrawal of one coin worth `minor_units` against the fixture issuer.
pub fn withdraw_blind(issuer: &TestIssuer, rng: &mut StdRng, minor_units: u64) -> BlindCoin {
    let keyset = &issuer.keyset;
    let pending = PendingCoin::new(rng, keyset, eur(minor_units)).unwrap();
    let blind_signature = issuer
        .denomination_key(minor_units)
        .unwrap()
        .sign_blinded(rng, pending.blinded())
        .unwrap();
    pending
        .finalize(keyset.key_for(minor_units).unwrap(), &blind_signature)
        .unwrap()
}
