//! Certificates the issuer signs: account (device key registration), merchant, balance.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use crate::keys::VerifyingKey;
use crate::keys::{AccountCertifier, BalanceCertifier, Device, Merchant, MerchantCertifier};
use crate::payment::WithdrawalRecordPayload;
use crate::signed::signed_token;
use crate::{
    AccountId, Amount, CertificateSerial, DeviceId, Error, KeyDirectory, MerchantId, Result,
    Timestamp, Validity,
};

/// A merchant category code (ISO 18245 MCC, `0000`..=`9999`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct MerchantCategory(u16);

impl MerchantCategory {
    /// Grocery stores and supermarkets (MCC 5411).
    pub const GROCERY: MerchantCategory = MerchantCategory(5411);
    /// Eating places and restaurants (MCC 5812).
    pub const RESTAURANT: MerchantCategory = MerchantCategory(5812);
    /// Local and suburban commuter transport (MCC 4111).
    pub const TRANSIT: MerchantCategory = MerchantCategory(4111);

    /// A category code; fails unless it has at most four decimal digits.
    pub fn new(code: u16) -> Result<Self> {
        if code <= 9999 {
            Ok(MerchantCategory(code))
        } else {
            Err(Error::InvalidField {
                field: "category",
                reason: "MCC must be 0..=9999",
            })
        }
    }

    /// The numeric code.
    pub const fn code(&self) -> u16 {
        self.0
    }
}

impl fmt::Display for MerchantCategory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}", self.0)
    }
}

impl fmt::Debug for MerchantCategory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MerchantCategory({:04})", self.0)
    }
}

impl<'de> Deserialize<'de> for MerchantCategory {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        MerchantCategory::new(u16::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// A region: an ISO 3166-1 alpha-2 country (`DE`) or an ISO 3166-2 subdivision (`DE-BY`).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Region(String);

impl Region {
    /// Parses `DE` or `DE-BY` (upper-case letters and digits, 2-letter country, optional
    /// `-` and 1 to 3 characters of subdivision).
    pub fn new(code: &str) -> Result<Self> {
        let invalid = Error::InvalidField {
            field: "region",
            reason: "expected ISO 3166 code like DE or DE-BY",
        };
        let (country, subdivision) = match code.split_once('-') {
            Some((c, s)) => (c, Some(s)),
            None => (code, None),
        };
        let alnum = |s: &str| {
            s.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        };
        let country_ok = country.len() == 2 && country.bytes().all(|b| b.is_ascii_uppercase());
        let subdivision_ok = subdivision.is_none_or(|s| (1..=3).contains(&s.len()) && alnum(s));
        if country_ok && subdivision_ok {
            Ok(Region(code.to_owned()))
        } else {
            Err(invalid)
        }
    }

    /// The code.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True if `self` lies within `area`: equal, or `area` is the country of the
    /// subdivision `self` (`DE-BY` lies within `DE`).
    pub fn is_within(&self, area: &Region) -> bool {
        self.0 == area.0
            || (self.0.len() > area.0.len()
                && self.0.starts_with(&area.0)
                && self.0.as_bytes().get(area.0.len()) == Some(&b'-'))
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Region({})", self.0)
    }
}

impl<'de> Deserialize<'de> for Region {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Region::new(&s).map_err(serde::de::Error::custom)
    }
}

/// A restriction list: either anything, or only the listed values. Spelled out as an
/// enum because an empty list meaning "everything" is a classic payment-system bug.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Allowed<T> {
    /// No restriction.
    Any,
    /// Only these values (an empty list allows nothing).
    Only(Vec<T>),
}

impl Allowed<MerchantCategory> {
    /// True if `category` is allowed.
    pub fn permits(&self, category: MerchantCategory) -> bool {
        match self {
            Allowed::Any => true,
            Allowed::Only(list) => list.contains(&category),
        }
    }
}

impl Allowed<Region> {
    /// True if `region` lies within one of the allowed regions.
    pub fn permits(&self, region: &Region) -> bool {
        match self {
            Allowed::Any => true,
            Allowed::Only(list) => list.iter().any(|area| region.is_within(area)),
        }
    }
}

/// Binds a device's public key to an account: what merchants check a withdrawal record's
/// signature against.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountCertificatePayload {
    /// The account.
    pub account_id: AccountId,
    /// The device of the account that holds the key.
    pub device_id: DeviceId,
    /// The device's public key.
    pub device_key: VerifyingKey<Device>,
    /// When the certificate is valid.
    pub validity: Validity,
}

signed_token!(
    /// An [`AccountCertificatePayload`] signed by the issuer's account-certificate key.
    AccountCertificate = AccountCertificatePayload,
    signer: AccountCertifier,
    tag: "account-certificate"
);

impl AccountCertificate {
    /// Checks the issuer's signature (key from `directory`, valid at `now`) and the
    /// certificate's validity window.
    pub fn verify(
        &self,
        directory: &KeyDirectory,
        now: Timestamp,
    ) -> Result<&AccountCertificatePayload> {
        let payload = self.verify_in(directory, now)?;
        payload.validity.check(now)?;
        Ok(payload)
    }
}

/// Binds a merchant's public key to its id, category and region.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MerchantCertificatePayload {
    /// The merchant.
    pub merchant_id: MerchantId,
    /// The merchant's public key.
    pub merchant_key: VerifyingKey<Merchant>,
    /// Its merchant category code.
    pub category: MerchantCategory,
    /// Where it trades.
    pub region: Region,
    /// When the certificate is valid.
    pub validity: Validity,
}

signed_token!(
    /// A [`MerchantCertificatePayload`] signed by the issuer's merchant-certificate key.
    MerchantCertificate = MerchantCertificatePayload,
    signer: MerchantCertifier,
    tag: "merchant-certificate"
);

impl MerchantCertificate {
    /// Checks the issuer's signature (key from `directory`, valid at `now`) and the
    /// certificate's validity window.
    pub fn verify(
        &self,
        directory: &KeyDirectory,
        now: Timestamp,
    ) -> Result<&MerchantCertificatePayload> {
        let payload = self.verify_in(directory, now)?;
        payload.validity.check(now)?;
        Ok(payload)
    }
}

/// What one device may spend offline under one certificate: the issuer reserved
/// `available` of the account's balance for it until `expires_at`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalanceCertificatePayload {
    /// Serial number; withdrawal records name it.
    pub serial: CertificateSerial,
    /// The account.
    pub account_id: AccountId,
    /// The device the certificate was issued to.
    pub device_id: DeviceId,
    /// Total that records under this certificate may add up to.
    pub available: Amount,
    /// Part of the balance held back by lock rules (a notation for the holder; not
    /// spendable under this certificate).
    pub locked: Amount,
    /// When the issuer signed it (start of validity).
    pub issued_at: Timestamp,
    /// End of validity; the issuer releases the reservation after this.
    pub expires_at: Timestamp,
    /// How many payments the certificate allows: records under it carry sequence numbers
    /// `first_sequence .. first_sequence + max_payments`.
    pub max_payments: u32,
    /// The first sequence number a record under this certificate may carry (one past the
    /// highest the issuer had seen from the device when it signed). A device's counter
    /// never restarts, so the range, not the count alone, is what a merchant checks.
    pub first_sequence: u64,
    /// Largest single payment.
    pub per_payment_cap: Amount,
    /// Merchant categories the certificate may pay.
    pub allowed_categories: Allowed<MerchantCategory>,
    /// Regions the certificate may pay in.
    pub allowed_regions: Allowed<Region>,
}

signed_token!(
    /// A [`BalanceCertificatePayload`] signed by the issuer's balance-certificate key.
    BalanceCertificate = BalanceCertificatePayload,
    signer: BalanceCertifier,
    tag: "balance-certificate"
);

impl BalanceCertificatePayload {
    /// The validity window `[issued_at, expires_at]`.
    pub fn validity(&self) -> Validity {
        Validity {
            not_before: self.issued_at,
            not_after: self.expires_at,
        }
    }

    /// True if `sequence` is one of the sequence numbers this certificate covers.
    pub fn covers_sequence(&self, sequence: u64) -> bool {
        sequence >= self.first_sequence
            && sequence - self.first_sequence < u64::from(self.max_payments)
    }

    /// Checks a withdrawal record (whose signature the caller has verified) against this
    /// certificate's rules: made under this certificate by its account and device, signed
    /// within its validity, sequence in range, payment within the per-payment cap,
    /// cumulative within the available amount, merchant category and region allowed.
    /// Merchants (offline) and the issuer (at redemption) run the same check.
    pub fn authorize(&self, record: &WithdrawalRecordPayload) -> Result<()> {
        if record.certificate_serial != self.serial {
            return Err(Error::WrongCertificate);
        }
        if record.account_id != self.account_id {
            return Err(Error::WrongAccount);
        }
        if record.device_id != self.device_id {
            return Err(Error::WrongDevice);
        }
        self.validity().check(record.signed_at)?;
        if !self.covers_sequence(record.sequence) {
            return Err(Error::SequenceOutOfRange {
                sequence: record.sequence,
                first: self.first_sequence,
                max_payments: self.max_payments,
            });
        }
        let amount = record.amount();
        if amount.checked_cmp(&self.per_payment_cap)? == std::cmp::Ordering::Greater {
            return Err(Error::PaymentCapExceeded {
                amount,
                cap: self.per_payment_cap,
            });
        }
        if record.cumulative.checked_cmp(&self.available)? == std::cmp::Ordering::Greater {
            return Err(Error::AvailableExceeded {
                cumulative: record.cumulative,
                available: self.available,
            });
        }
        let request = &record.payment_request.payload;
        if !self.allowed_categories.permits(request.category) {
            return Err(Error::CategoryNotAllowed(request.category));
        }
        if !self.allowed_regions.permits(&request.region) {
            return Err(Error::RegionNotAllowed(request.region.clone()));
        }
        Ok(())
    }
}

impl BalanceCertificate {
    /// Checks the issuer's signature (key from `directory`, valid at `now`), the
    /// certificate's validity window, that it belongs to the account and device of
    /// `account`, and that its amounts share one currency.
    pub fn verify(
        &self,
        directory: &KeyDirectory,
        account: &AccountCertificatePayload,
        now: Timestamp,
    ) -> Result<&BalanceCertificatePayload> {
        let payload = self.verify_in(directory, now)?;
        if payload.account_id != account.account_id {
            return Err(Error::WrongAccount);
        }
        if payload.device_id != account.device_id {
            return Err(Error::WrongDevice);
        }
        payload.available.ensure_same_currency(&payload.locked)?;
        payload
            .available
            .ensure_same_currency(&payload.per_payment_cap)?;
        payload.validity().check(now)?;
        Ok(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_nest_by_country() {
        let de = Region::new("DE").unwrap();
        let by = Region::new("DE-BY").unwrap();
        let dk = Region::new("DK").unwrap();
        assert!(by.is_within(&de));
        assert!(de.is_within(&de));
        assert!(!de.is_within(&by));
        assert!(!by.is_within(&dk));
        for bad in ["", "D", "de", "DEU", "DE-", "DE-BAYE", "DE BY", "D3"] {
            assert!(Region::new(bad).is_err(), "{bad:?} accepted");
        }
        assert!(Allowed::Only(vec![de.clone()]).permits(&by));
        assert!(!Allowed::Only(vec![dk]).permits(&by));
        assert!(!Allowed::<Region>::Only(vec![]).permits(&by));
        assert!(Allowed::<Region>::Any.permits(&by));
    }

    #[test]
    fn categories_are_four_digit_codes() {
        assert_eq!(MerchantCategory::new(5411), Ok(MerchantCategory::GROCERY));
        assert!(MerchantCategory::new(10000).is_err());
        assert!(serde_json::from_str::<MerchantCategory>("12345").is_err());
        let only = Allowed::Only(vec![MerchantCategory::GROCERY]);
        assert!(only.permits(MerchantCategory::GROCERY));
        assert!(!only.permits(MerchantCategory::RESTAURANT));
    }
}
