//! Identifiers, time and digests.

use std::fmt;

use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

use crate::{Error, Result};

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh random (version 4) id drawn from `rng`.
            pub fn random<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
                $name(random_uuid(rng))
            }

            /// The underlying UUID.
            pub const fn as_uuid(&self) -> &Uuid {
                &self.0
            }

            /// The 16 bytes of the UUID.
            pub const fn as_bytes(&self) -> &[u8; 16] {
                self.0.as_bytes()
            }
        }

        impl From<Uuid> for $name {
            fn from(u: Uuid) -> Self {
                $name(u)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                Uuid::parse_str(s)
                    .map($name)
                    .map_err(|_| Error::InvalidField { field: stringify!($name), reason: "not a UUID" })
            }
        }
    };
}

/// A random version-4 UUID from the caller's RNG (protocol code never reaches for a
/// global RNG, so tests can be deterministic).
pub fn random_uuid<R: CryptoRng + ?Sized>(rng: &mut R) -> Uuid {
    let mut bytes = [0u8; 16];
    rng.fill_bytes(&mut bytes);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

uuid_id!(
    /// A customer account at the issuer.
    AccountId
);
uuid_id!(
    /// One device (phone, card, ...) of an account; it holds its own signing key.
    DeviceId
);
uuid_id!(
    /// A registered merchant.
    MerchantId
);
uuid_id!(
    /// A withdrawal record, chosen by the paying device.
    RecordId
);
uuid_id!(
    /// A refund, chosen by the merchant: the issuer pays each refund id once (a retry of
    /// the same refund gets the first answer; the id for another refund is refused).
    RefundId
);
uuid_id!(
    /// A coin: chosen by the wallet (blind coins) or by the issuer (identified coins).
    /// The issuer accepts each coin id once.
    CoinId
);
uuid_id!(
    /// The serial number of a balance certificate.
    CertificateSerial
);
uuid_id!(
    /// A merchant's payment request.
    RequestId
);
uuid_id!(
    /// A deposit (pending-deposit flow).
    DepositId
);
uuid_id!(
    /// A merchant's payout to its bank, chosen by the merchant: paid once.
    PayoutId
);
uuid_id!(
    /// The holder's virtual id written into identified coins: it names the holder at the
    /// issuer without revealing the account id to merchants.
    VirtualId
);

macro_rules! digest_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub struct $name(#[serde(with = "crate::bytes::array")] pub [u8; 32]);

        impl $name {
            /// The 32 bytes.
            pub const fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }

            /// Lower-case hex of the 32 bytes.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = Error;
            /// From 64 hex digits.
            fn from_str(s: &str) -> Result<Self> {
                let mut bytes = [0u8; 32];
                hex::decode_to_slice(s, &mut bytes).map_err(|_| Error::InvalidField {
                    field: stringify!($name),
                    reason: "not 64 hex digits",
                })?;
                Ok($name(bytes))
            }
        }

        impl fmt::Display for $name {
            /// The first 8 bytes in hex: enough to tell ids apart in logs and errors.
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(&self.0[..8]))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), hex::encode(self.0))
            }
        }
    };
}

digest_id!(
    /// Identifies a public key: SHA-256 of its SubjectPublicKeyInfo DER (the standard
    /// `rsaEncryption` SPKI that `openssl pkey -pubout -outform DER` prints).
    KeyId
);
digest_id!(
    /// Identifies a blind-coin keyset: SHA-256 over its currency, validity window and every
    /// (denomination, key id) pair. See [`crate::Keyset`].
    KeysetId
);
digest_id!(
    /// SHA-256 of a message's canonical encoding; stores use it to tell an idempotent
    /// retry of the same item from a different item under the same id.
    ContentDigest
);

digest_id!(
    /// What a coin is spent as: SHA-256 over a domain tag, the coin's variant, the key that
    /// signed it and the exact bytes that key signed (see [`crate::Coin::spend_id`]). The
    /// issuer and merchants accept each spend id once. Unlike the coin id, which the wallet
    /// chooses and the issuer publishes after a reissue, it can only be computed from the
    /// coin itself, so knowing a coin's id gives no way to make it `double_spent`.
    CoinSpendId
);

impl KeyId {
    /// The key id of a SubjectPublicKeyInfo DER encoding.
    pub fn of_spki_der(der: &[u8]) -> Self {
        KeyId(Sha256::digest(der).into())
    }
}

impl ContentDigest {
    /// SHA-256 of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        ContentDigest(Sha256::digest(bytes).into())
    }
}

/// A point in time: milliseconds since the Unix epoch, UTC.
///
/// Protocol code never reads the clock; callers pass `now` in.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// From milliseconds since the epoch.
    pub const fn from_unix_millis(ms: u64) -> Self {
        Timestamp(ms)
    }

    /// From seconds since the epoch (saturating).
    pub const fn from_unix_secs(s: u64) -> Self {
        Timestamp(s.saturating_mul(1000))
    }

    /// Milliseconds since the epoch.
    pub const fn as_unix_millis(&self) -> u64 {
        self.0
    }

    /// `self + d`, saturating at the end of time.
    pub fn saturating_add(self, d: std::time::Duration) -> Self {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Timestamp(self.0.saturating_add(ms))
    }

    /// `self - d`, saturating at the epoch.
    pub fn saturating_sub(self, d: std::time::Duration) -> Self {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Timestamp(self.0.saturating_sub(ms))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({})", self.0)
    }
}

/// A closed validity window `[not_before, not_after]`, never empty (decoding refuses
/// `not_before > not_after`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "ValidityFields", into = "ValidityFields")]
pub struct Validity {
    /// First instant at which the object is valid.
    pub not_before: Timestamp,
    /// Last instant at which the object is valid.
    pub not_after: Timestamp,
}

#[derive(Clone, Copy, Serialize, Deserialize)]
struct ValidityFields {
    not_before: Timestamp,
    not_after: Timestamp,
}

impl TryFrom<ValidityFields> for Validity {
    type Error = Error;
    fn try_from(f: ValidityFields) -> Result<Self> {
        Validity::new(f.not_before, f.not_after)
    }
}

impl From<Validity> for ValidityFields {
    fn from(v: Validity) -> Self {
        ValidityFields {
            not_before: v.not_before,
            not_after: v.not_after,
        }
    }
}

impl Validity {
    /// `[not_before, not_after]`; fails if the window is empty.
    pub fn new(not_before: Timestamp, not_after: Timestamp) -> Result<Self> {
        if not_before > not_after {
            return Err(Error::InvalidField {
                field: "validity",
                reason: "not_before is after not_after",
            });
        }
        Ok(Validity {
            not_before,
            not_after,
        })
    }

    /// A window of `lifetime` starting at `start`.
    pub fn starting_at(start: Timestamp, lifetime: std::time::Duration) -> Self {
        Validity {
            not_before: start,
            not_after: start.saturating_add(lifetime),
        }
    }

    /// True if `now` lies in the window.
    pub fn contains(&self, now: Timestamp) -> bool {
        self.not_before <= now && now <= self.not_after
    }

    /// Fails with [`Error::NotYetValid`] or [`Error::Expired`] unless `now` lies in the
    /// window.
    pub fn check(&self, now: Timestamp) -> Result<()> {
        if now < self.not_before {
            Err(Error::NotYetValid {
                not_before: self.not_before,
                now,
            })
        } else if now > self.not_after {
            Err(Error::Expired {
                not_after: self.not_after,
                now,
            })
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn random_ids_are_v4_and_come_from_the_given_rng() {
        let mut a = rand::rngs::StdRng::seed_from_u64(7);
        let mut b = rand::rngs::StdRng::seed_from_u64(7);
        let x = CoinId::random(&mut a);
        assert_eq!(x, CoinId::random(&mut b));
        assert_eq!(x.0.get_version_num(), 4);
        assert_ne!(x, CoinId::random(&mut a));
    }

    #[test]
    fn key_id_is_sha256_of_the_der() {
        // SHA-256("abc"), FIPS 180-2 example.
        assert_eq!(
            KeyId::of_spki_der(b"abc").to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn validity_window_is_closed_on_both_ends() {
        let v = Validity::new(Timestamp(10), Timestamp(20)).unwrap();
        assert_eq!(
            v.check(Timestamp(9)),
            Err(Error::NotYetValid {
                not_before: Timestamp(10),
                now: Timestamp(9)
            })
        );
        assert_eq!(v.check(Timestamp(10)), Ok(()));
        assert_eq!(v.check(Timestamp(20)), Ok(()));
        assert_eq!(
            v.check(Timestamp(21)),
            Err(Error::Expired {
                not_after: Timestamp(20),
                now: Timestamp(21)
            })
        );
        assert!(Validity::new(Timestamp(2), Timestamp(1)).is_err());
    }
}
