//! The issuer's key directory: every public key wallets and merchants need to verify
//! tokens offline, with validity windows, and the blind-coin keysets.

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::keys::{DenominationVerifyingKey, IssuerKeyRole, IssuerRole, PublicKey, VerifyingKey};
use crate::signed::message;
use crate::{Currency, Error, KeyId, KeysetId, Result, Timestamp, Validity};

/// Most denominations one keyset may have.
pub const MAX_DENOMINATIONS: usize = 64;

/// One issuer RSA-PSS key and what it may sign when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuerKeyEntry {
    /// What the key signs.
    pub role: IssuerKeyRole,
    /// The public key.
    pub key: PublicKey,
    /// When signatures by this key are accepted. After a rotation the old key stays listed
    /// until it expires, so tokens it signed keep verifying.
    pub validity: Validity,
}

/// One denomination of a keyset and its blind-signature key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DenominationKeyEntry {
    /// Face value in minor units of the keyset's currency.
    pub minor_units: u64,
    /// The RFC 9474 public key coins of this value are signed with.
    pub key: DenominationVerifyingKey,
}

/// A set of blind-signature keys, one per denomination of one currency, issued and
/// retired together. Its id is derived from its contents, so a keyset cannot be altered
/// without changing its id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "KeysetFields", into = "KeysetFields")]
pub struct Keyset {
    id: KeysetId,
    currency: Currency,
    validity: Validity,
    denominations: Vec<DenominationKeyEntry>,
}

#[derive(Clone, Serialize, Deserialize)]
struct KeysetFields {
    id: KeysetId,
    currency: Currency,
    validity: Validity,
    denominations: Vec<DenominationKeyEntry>,
}

/// What a keyset id is the SHA-256 of (through the codec, so it is domain-separated).
#[derive(Serialize, Deserialize)]
pub(crate) struct KeysetIdInput {
    currency: Currency,
    validity: Validity,
    denominations: Vec<(u64, KeyId)>,
}
message!(KeysetIdInput, tag: "keyset-id");

impl Keyset {
    /// Builds a keyset; denominations are sorted by value and must be distinct, non-zero
    /// and at most [`MAX_DENOMINATIONS`].
    pub fn new(
        currency: Currency,
        validity: Validity,
        mut denominations: Vec<DenominationKeyEntry>,
    ) -> Result<Self> {
        denominations.sort_by_key(|d| d.minor_units);
        let id = Self::derive_id(currency, validity, &denominations)?;
        Ok(Keyset {
            id,
            currency,
            validity,
            denominations,
        })
    }

    fn derive_id(
        currency: Currency,
        validity: Validity,
        denominations: &[DenominationKeyEntry],
    ) -> Result<KeysetId> {
        let invalid = |reason| Error::InvalidField {
            field: "keyset",
            reason,
        };
        if denominations.is_empty() || denominations.len() > MAX_DENOMINATIONS {
            return Err(invalid("needs 1 to 64 denominations"));
        }
        if denominations.first().is_some_and(|d| d.minor_units == 0) {
            return Err(invalid("zero denomination"));
        }
        if denominations
            .windows(2)
            .any(|w| w[0].minor_units >= w[1].minor_units)
        {
            return Err(invalid("denominations must be distinct and sorted"));
        }
        let input = KeysetIdInput {
            currency,
            validity,
            denominations: denominations
                .iter()
                .map(|d| (d.minor_units, d.key.key_id()))
                .collect(),
        };
        Ok(KeysetId(codec::digest(&input)?.0))
    }

    /// The keyset id.
    pub fn id(&self) -> KeysetId {
        self.id
    }

    /// The currency of every coin of this keyset.
    pub fn currency(&self) -> Currency {
        self.currency
    }

    /// When coins of this keyset are accepted.
    pub fn validity(&self) -> Validity {
        self.validity
    }

    /// The denominations, by increasing value.
    pub fn denominations(&self) -> &[DenominationKeyEntry] {
        &self.denominations
    }

    /// The key of the denomination worth `minor_units`.
    pub fn key_for(&self, minor_units: u64) -> Result<&DenominationVerifyingKey> {
        self.denominations
            .binary_search_by_key(&minor_units, |d| d.minor_units)
            .ok()
            .and_then(|i| self.denominations.get(i))
            .map(|d| &d.key)
            .ok_or(Error::UnknownDenomination {
                keyset_id: self.id,
                minor_units,
            })
    }
}

impl TryFrom<KeysetFields> for Keyset {
    type Error = Error;
    fn try_from(f: KeysetFields) -> Result<Self> {
        let id = Self::derive_id(f.currency, f.validity, &f.denominations)?;
        if id != f.id {
            return Err(Error::InvalidField {
                field: "keyset.id",
                reason: "does not match the keyset's contents",
            });
        }
        Ok(Keyset {
            id,
            currency: f.currency,
            validity: f.validity,
            denominations: f.denominations,
        })
    }
}

impl From<Keyset> for KeysetFields {
    fn from(k: Keyset) -> Self {
        KeysetFields {
            id: k.id,
            currency: k.currency,
            validity: k.validity,
            denominations: k.denominations,
        }
    }
}

/// Every issuer public key with its validity window, and every blind-coin keyset.
/// Wallets and merchants cache it to verify offline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyDirectory {
    /// When the issuer produced this directory (lets a cache show its age).
    pub issued_at: Timestamp,
    /// The issuer's RSA-PSS keys.
    pub issuer_keys: Vec<IssuerKeyEntry>,
    /// The blind-coin keysets.
    pub keysets: Vec<Keyset>,
}
message!(KeyDirectory, tag: "key-directory");

impl KeyDirectory {
    /// The key `key_id` as a verifying key of role `R`, provided the directory lists it for
    /// that role and it is valid at `now`.
    pub fn issuer_key<R: IssuerRole>(
        &self,
        key_id: KeyId,
        now: Timestamp,
    ) -> Result<VerifyingKey<R>> {
        let mut with_id = self.issuer_keys.iter().filter(|e| e.key.key_id() == key_id);
        let Some(first) = with_id.clone().next() else {
            return Err(Error::UnknownKey(key_id));
        };
        let entry = with_id
            .find(|e| e.role == R::KIND)
            .ok_or(Error::WrongKeyRole {
                key_id,
                expected: R::NAME,
                found: first.role.name(),
            })?;
        if now < entry.validity.not_before {
            return Err(Error::KeyNotYetValid {
                key_id,
                not_before: entry.validity.not_before,
            });
        }
        if now > entry.validity.not_after {
            return Err(Error::KeyExpired {
                key_id,
                not_after: entry.validity.not_after,
            });
        }
        Ok(VerifyingKey::with_role(entry.key.clone()))
    }

    /// The keyset with id `id`.
    pub fn keyset(&self, id: KeysetId) -> Result<&Keyset> {
        self.keysets
            .iter()
            .find(|k| k.id == id)
            .ok_or(Error::UnknownKeyset(id))
    }

    /// The keyset a wallet should withdraw `currency` coins from at `now`: of those valid
    /// at `now`, the one that became valid last.
    pub fn current_keyset(&self, currency: Currency, now: Timestamp) -> Option<&Keyset> {
        self.keysets
            .iter()
            .filter(|k| k.currency == currency && k.validity.contains(now))
            .max_by_key(|k| k.validity.not_before)
    }

    /// Canonical encoding (see [`codec::encode`]).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        codec::encode(self)
    }

    /// Decodes a directory from untrusted bytes; every key in it is parsed and checked.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        codec::decode(bytes)
    }
}
