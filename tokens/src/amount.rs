//! Money: integer minor units tagged with an ISO 4217 currency. No floating point, no
//! silent overflow, no arithmetic across currencies.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{Error, Result};

/// An ISO 4217 alphabetic currency code (three ASCII upper-case letters).
///
/// The code is not checked against the ISO list: the issuer decides which currencies it
/// serves, the type only guarantees the shape.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Currency([u8; 3]);

impl Currency {
    /// Euro.
    pub const EUR: Currency = Currency(*b"EUR");
    /// US dollar.
    pub const USD: Currency = Currency(*b"USD");

    /// Parses a code such as `"EUR"`.
    pub fn new(code: &str) -> Result<Self> {
        let bytes: [u8; 3] = code
            .as_bytes()
            .try_into()
            .map_err(|_| Error::InvalidCurrency)?;
        Self::from_bytes(bytes)
    }

    /// Builds a code from its three ASCII bytes.
    pub fn from_bytes(bytes: [u8; 3]) -> Result<Self> {
        if bytes.iter().all(u8::is_ascii_uppercase) {
            Ok(Currency(bytes))
        } else {
            Err(Error::InvalidCurrency)
        }
    }

    /// The code, e.g. `"EUR"`.
    pub fn as_str(&self) -> &str {
        // Only ASCII upper-case bytes are ever stored, so this cannot fail.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }

    /// The three ASCII bytes of the code.
    pub fn as_bytes(&self) -> [u8; 3] {
        self.0
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Currency({})", self.as_str())
    }
}

impl std::str::FromStr for Currency {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Currency::new(s)
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(self.as_str())
        } else {
            self.0.serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let s = String::deserialize(deserializer)?;
            Currency::new(&s).map_err(serde::de::Error::custom)
        } else {
            let bytes = <[u8; 3]>::deserialize(deserializer)?;
            Currency::from_bytes(bytes).map_err(serde::de::Error::custom)
        }
    }
}

/// An amount of money: `minor_units` of `currency` (cents for EUR).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Amount {
    /// The amount in the currency's minor unit.
    pub minor_units: u64,
    /// The currency.
    pub currency: Currency,
}

impl Amount {
    /// `minor_units` of `currency`.
    pub const fn new(minor_units: u64, currency: Currency) -> Self {
        Amount {
            minor_units,
            currency,
        }
    }

    /// Zero of `currency`.
    pub const fn zero(currency: Currency) -> Self {
        Amount::new(0, currency)
    }

    /// True if the amount is zero.
    pub const fn is_zero(&self) -> bool {
        self.minor_units == 0
    }

    /// Fails with [`Error::CurrencyMismatch`] unless `other` has this amount's currency.
    pub fn ensure_same_currency(&self, other: &Amount) -> Result<()> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(Error::CurrencyMismatch {
                expected: self.currency,
                found: other.currency,
            })
        }
    }

    /// `self + other`; fails on currency mismatch or overflow.
    pub fn checked_add(self, other: Amount) -> Result<Amount> {
        self.ensure_same_currency(&other)?;
        let minor_units = self
            .minor_units
            .checked_add(other.minor_units)
            .ok_or(Error::AmountOverflow)?;
        Ok(Amount::new(minor_units, self.currency))
    }

    /// `self - other`; fails on currency mismatch or if the result would be negative.
    pub fn checked_sub(self, other: Amount) -> Result<Amount> {
        self.ensure_same_currency(&other)?;
        let minor_units =
            self.minor_units
                .checked_sub(other.minor_units)
                .ok_or(Error::AmountUnderflow {
                    minuend: self.minor_units,
                    subtrahend: other.minor_units,
                })?;
        Ok(Amount::new(minor_units, self.currency))
    }

    /// `self - other`, or zero if `other` is larger; still fails on currency mismatch.
    pub fn saturating_sub(self, other: Amount) -> Result<Amount> {
        self.ensure_same_currency(&other)?;
        Ok(Amount::new(
            self.minor_units.saturating_sub(other.minor_units),
            self.currency,
        ))
    }

    /// Compares two amounts of the same currency.
    pub fn checked_cmp(&self, other: &Amount) -> Result<std::cmp::Ordering> {
        self.ensure_same_currency(other)?;
        Ok(self.minor_units.cmp(&other.minor_units))
    }

    /// Sum of `amounts`, all of which must be in `currency`.
    pub fn checked_sum<A: std::borrow::Borrow<Amount>>(
        currency: Currency,
        amounts: impl IntoIterator<Item = A>,
    ) -> Result<Amount> {
        amounts
            .into_iter()
            .try_fold(Amount::zero(currency), |acc, a| {
                acc.checked_add(*a.borrow())
            })
    }
}

impl fmt::Display for Amount {
    /// Shows minor units and currency, e.g. `1250 EUR` (minor units, not decimals: the
    /// number of decimals differs per currency and is not this type's business).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.minor_units, self.currency)
    }
}

impl fmt::Debug for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Amount({} {})", self.minor_units, self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EUR: Currency = Currency::EUR;

    #[test]
    fn currency_codes_are_three_uppercase_letters() {
        assert_eq!(Currency::new("EUR"), Ok(Currency::EUR));
        for bad in ["eur", "EU", "EURO", "E1R", "", "ÄUR"] {
            assert_eq!(Currency::new(bad), Err(Error::InvalidCurrency), "{bad:?}");
        }
    }

    #[test]
    fn arithmetic_is_checked() {
        let a = Amount::new(700, EUR);
        let b = Amount::new(300, EUR);
        assert_eq!(a.checked_add(b), Ok(Amount::new(1000, EUR)));
        assert_eq!(a.checked_sub(b), Ok(Amount::new(400, EUR)));
        assert_eq!(
            b.checked_sub(a),
            Err(Error::AmountUnderflow {
                minuend: 300,
                subtrahend: 700
            })
        );
        assert_eq!(
            Amount::new(u64::MAX, EUR).checked_add(Amount::new(1, EUR)),
            Err(Error::AmountOverflow)
        );
        assert_eq!(b.saturating_sub(a), Ok(Amount::zero(EUR)));
    }

    #[test]
    fn currencies_never_mix() {
        let eur = Amount::new(1, EUR);
        let usd = Amount::new(1, Currency::USD);
        let mismatch = Error::CurrencyMismatch {
            expected: EUR,
            found: Currency::USD,
        };
        assert_eq!(eur.checked_add(usd), Err(mismatch.clone()));
        assert_eq!(eur.checked_sub(usd), Err(mismatch.clone()));
        assert_eq!(eur.saturating_sub(usd), Err(mismatch.clone()));
        assert_eq!(eur.checked_cmp(&usd), Err(mismatch.clone()));
        assert_eq!(Amount::checked_sum(EUR, [eur, usd]), Err(mismatch));
        assert_eq!(
            Amount::checked_sum(EUR, [eur, eur]),
            Ok(Amount::new(2, EUR))
        );
    }

    #[test]
    fn json_shows_the_currency_code() {
        let json = serde_json::to_string(&Amount::new(1250, EUR)).unwrap();
        assert_eq!(json, r#"{"minor_units":1250,"currency":"EUR"}"#);
        assert!(serde_json::from_str::<Amount>(r#"{"minor_units":1,"currency":"eur"}"#).is_err());
    }
}
