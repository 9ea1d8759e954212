//! One of every token, built from fixture keys with a seeded RNG, plus a full verifier for
//! each signed kind (decode + every check a receiver would make).

#![allow(
    dead_code,
    unused_imports,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::time::Duration;

use rand::rngs::StdRng;
use rand::SeedableRng;
use scrip_tokens::fixtures::NOW;
use scrip_tokens::*;

pub const DAY: Duration = Duration::from_secs(86_400);
pub const EUR: Currency = Currency::EUR;

pub fn eur(minor_units: u64) -> Amount {
    Amount::new(minor_units, EUR)
}

pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

pub use scrip_tokens::fixtures::{withdraw_blind, Specimens as World};

/// The one world every test starts from (seed 42).
pub fn world() -> World {
    World::new(&mut rng(42))
}

/// Every signed object of a [`World`] with the full check its receiver makes.
pub trait SignedObjects {
    /// Name, encoding and verifier of each.
    fn signed_objects(&self) -> Vec<(&'static str, Vec<u8>, Verifier)>;
}

impl SignedObjects for World {
    /// Every signed (or signature-carrying) object: its name, its encoding, and the full
    /// check a receiver makes on such bytes.
    fn signed_objects(&self) -> Vec<(&'static str, Vec<u8>, Verifier)> {
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

/// The issuer's fused check (the signature and the whole object's digest from one
/// encoding pass) must answer as `verify_signature` does, for the object as signed and
/// for every alteration of it, and its digest must be `codec::digest` of the object.
fn check_fused<P: SignedPayload + PartialEq + std::fmt::Debug>(
    signed: &Signed<P>,
    key: &VerifyingKey<P::Signer>,
) {
    match (
        signed.verify_signature(key),
        signed.verify_signature_with_digest(key),
    ) {
        (Ok(plain), Ok((fused, digest))) => {
            assert_eq!(plain, fused);
            assert_eq!(digest, codec::digest(signed).unwrap());
        }
        (Err(plain), Err(fused)) => assert_eq!(plain, fused),
        (plain, fused) => panic!("verify_signature gave {plain:?}, the fused check {fused:?}"),
    }
}

fn verify_request(w: &World, b: &[u8]) -> Result<()> {
    let request = codec::decode::<PaymentRequest>(b)?;
    check_fused(&request, &w.merchant_payload().merchant_key);
    request.verify(w.merchant_payload()).map(|_| ())
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
    check_fused(&receipt, &w.merchant_payload().merchant_key);
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
    check_fused(&endorsed, &w.merchant_payload().merchant_key);
    // The issuer's check (both digests from one encoding pass) must answer as `verify`
    // does, for the object as signed and for every alteration of it.
    let payload = endorsed.verify(w.merchant_payload());
    match (
        &payload,
        ReceivedPayment::new(&endorsed)?.verify(w.merchant_payload()),
    ) {
        (Ok(plain), Ok((fused, digest))) => {
            assert_eq!(*plain, fused);
            assert_eq!(digest, codec::digest(&plain.payment)?);
        }
        (Err(plain), Err(fused)) => assert_eq!(*plain, fused),
        (plain, fused) => panic!("verify gave {plain:?}, the fused check {fused:?}"),
    }
    check_coin_payment(w, &payload?.payment)
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
