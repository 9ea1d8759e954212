#![doc = include_str!("../README.md")]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod error;
#[cfg(feature = "http")]
mod http;
mod merchant;
mod wallet;

use scrip_tokens::{Amount, Currency, Timestamp};

pub use error::{Result, ScripError};
#[cfg(feature = "http")]
pub use http::IssuerHttp;
#[cfg(feature = "http")]
pub use http::PayoutResult;
pub use merchant::{Acceptance, Merchant, MerchantSetup, RefundRequest, RefundResult, SyncSummary};
pub use wallet::{
    Balance, HandIn, OfferSummary, PayMethod, PaymentResult, Statement, StatementLine, Wallet,
    WalletStore, WithdrawalReceived,
};

uniffi::setup_scaffolding!("scrip");

/// The version of scrip's wire format (`interop/WIRE.md`) every message this SDK takes or
/// returns is encoded in: each carries its type's tag and this version, and a message of
/// another version is refused (`unsupported_version`).
pub const WIRE_FORMAT_VERSION: u16 = 1;

/// What this SDK speaks: the wire format of its messages and the formats of the sealed
/// wallet state it writes.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct Versions {
    /// This SDK's release (the crate version).
    pub sdk: String,
    /// The wire format of every message (`interop/WIRE.md`).
    pub wire_format: u16,
    /// The format of the sealed envelope around the wallet state. Bytes sealed in
    /// another envelope version are refused with `UnsupportedStateVersion`.
    pub sealed_format: u16,
    /// The version of the wallet state inside the envelope this SDK writes. It reads this
    /// and every older version (migrating them); a newer one is refused with
    /// `UnsupportedStateVersion`.
    pub wallet_state: u16,
}

/// The versions this SDK speaks.
#[uniffi::export]
pub fn versions() -> Versions {
    Versions {
        sdk: env!("CARGO_PKG_VERSION").to_owned(),
        wire_format: WIRE_FORMAT_VERSION,
        sealed_format: scrip_wallet::STORAGE_FORMAT_VERSION,
        wallet_state: scrip_wallet::STATE_VERSION,
    }
}

/// Every reason code this SDK knows, as the stable strings errors and rejections carry.
/// A newer issuer may send others; treat an unknown code as a refusal.
#[uniffi::export]
pub fn reason_codes() -> Vec<String> {
    scrip_tokens::ReasonCode::ALL
        .iter()
        .map(|c| c.as_str().to_owned())
        .collect()
}

/// A fresh random 32-byte key to seal a wallet's state with. Keep it in the platform's
/// keystore (Android Keystore, iOS Keychain), not beside the sealed bytes.
#[uniffi::export]
pub fn new_storage_key() -> Vec<u8> {
    use rand::Rng as _;
    let mut key = vec![0u8; 32];
    rng().fill_bytes(&mut key);
    key
}

/// A fresh random id (UUID v4), for a payout: choose it before the first attempt and keep
/// it until a receipt comes.
#[uniffi::export]
pub fn new_id() -> String {
    scrip_tokens::random_uuid(&mut rng()).to_string()
}

/// Decodes `bytes` as a `T` (its tag and version checked, bounded, never panicking).
pub(crate) fn decode<T: scrip_tokens::Message>(bytes: &[u8]) -> Result<T> {
    Ok(scrip_tokens::codec::decode(bytes)?)
}

/// Encodes `value` in the wire format.
pub(crate) fn encode<T: scrip_tokens::Message>(value: &T) -> Result<Vec<u8>> {
    Ok(scrip_tokens::codec::encode(value)?)
}

/// A UUID argument (request, refund, account id).
pub(crate) fn parse_id<T: std::str::FromStr>(what: &str, text: &str) -> Result<T> {
    text.parse()
        .map_err(|_| ScripError::bad_argument(format!("{what} {text:?} is not a UUID")))
}

pub(crate) fn currency(code: &str) -> Result<Currency> {
    Currency::new(code).map_err(|e| ScripError::bad_argument(format!("currency {code:?}: {e}")))
}

pub(crate) fn amount(minor_units: u64, code: &str) -> Result<Amount> {
    Ok(Amount::new(minor_units, currency(code)?))
}

pub(crate) fn amounts(minor_units: &[u64], code: &str) -> Result<Vec<Amount>> {
    let currency = currency(code)?;
    Ok(minor_units
        .iter()
        .map(|m| Amount::new(*m, currency))
        .collect())
}

/// The SDK never reads the clock: every call that needs the time takes it, in
/// milliseconds since the Unix epoch.
pub(crate) fn at(now_unix_ms: u64) -> Timestamp {
    Timestamp::from_unix_millis(now_unix_ms)
}

/// The process's cryptographic RNG (the OS's entropy, reseeded): keys, nonces, blinding.
pub(crate) fn rng() -> rand::rngs::ThreadRng {
    rand::rng()
}

#[cfg(test)]
mod tests {
    use super::*;
    use scrip_tokens::Message;

    #[test]
    fn every_message_the_sdk_carries_is_of_the_reported_wire_version() {
        // A type whose version moves without the SDK's reported version moving would make
        // `versions()` lie to apps.
        let carried = [
            scrip_tokens::MerchantOffer::VERSION,
            scrip_tokens::PaymentAnswer::VERSION,
            scrip_tokens::MerchantReply::VERSION,
            scrip_tokens::DeviceRegistration::VERSION,
            scrip_tokens::DepositRequest::VERSION,
            scrip_tokens::DepositRecord::VERSION,
            scrip_tokens::BlindWithdrawalRequest::VERSION,
            scrip_tokens::BlindWithdrawalResponse::VERSION,
            scrip_tokens::BalanceCertificateRequest::VERSION,
            scrip_tokens::RedemptionBatch::VERSION,
            scrip_tokens::RedemptionReport::VERSION,
            scrip_tokens::SignedKeyDirectory::VERSION,
        ];
        assert!(carried.iter().all(|v| *v == WIRE_FORMAT_VERSION));
        assert_eq!(versions().wire_format, WIRE_FORMAT_VERSION);
        assert_eq!(
            versions().sealed_format,
            scrip_wallet::STORAGE_FORMAT_VERSION
        );
        assert_eq!(versions().wallet_state, scrip_wallet::STATE_VERSION);
    }

    #[test]
    fn reason_codes_are_the_wire_strings() {
        let codes = reason_codes();
        assert!(codes.contains(&"bad_signature".to_owned()));
        assert_eq!(codes.len(), scrip_tokens::ReasonCode::ALL.len());
    }
}
