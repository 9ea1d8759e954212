//! The issuer's key directory: every public key wallets and merchants need to verify
//! tokens offline, with validity windows, and the blind-coin keysets. The issuer signs it
//! with its root key ([`SignedKeyDirectory`]); wallets and merchants pin the root key.

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::keys::{
    DenominationVerifyingKey, DirectoryRoot, IssuerKeyRole, IssuerRole, PublicKey, VerifyingKey,
};
use crate::signed::{message, signed_token};
use crate::{Backend, Currency, Error, KeyId, KeysetId, Result, Timestamp, Validity};

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
///
/// Two windows: wallets withdraw from a keyset until `issue_until`; its coins are
/// accepted during `validity`, which runs past `issue_until` so coins withdrawn on the
/// last day still have time to be spent and redeemed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "KeysetFields", into = "KeysetFields")]
pub struct Keyset {
    id: KeysetId,
    currency: Currency,
    validity: Validity,
    issue_until: Timestamp,
    denominations: Vec<DenominationKeyEntry>,
}

#[derive(Clone, Serialize, Deserialize)]
struct KeysetFields {
    id: KeysetId,
    currency: Currency,
    validity: Validity,
    issue_until: Timestamp,
    denominations: Vec<DenominationKeyEntry>,
}

/// What a keyset id is the SHA-256 of (through the codec, so it is domain-separated).
#[derive(Serialize, Deserialize)]
pub(crate) struct KeysetIdInput {
    currency: Currency,
    validity: Validity,
    issue_until: Timestamp,
    denominations: Vec<(u64, KeyId)>,
}
message!(KeysetIdInput, tag: "keyset-id");

impl Keyset {
    /// Builds a keyset; denominations are sorted by value and must be distinct, non-zero,
    /// at most [`MAX_DENOMINATIONS`], each with its own key; `issue_until` must lie in
    /// `validity`.
    pub fn new(
        currency: Currency,
        validity: Validity,
        issue_until: Timestamp,
        mut denominations: Vec<DenominationKeyEntry>,
    ) -> Result<Self> {
        denominations.sort_by_key(|d| d.minor_units);
        let id = Self::derive_id(currency, validity, issue_until, &denominations)?;
        Ok(Keyset {
            id,
            currency,
            validity,
            issue_until,
            denominations,
        })
    }

    fn derive_id(
        currency: Currency,
        validity: Validity,
        issue_until: Timestamp,
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
        if !validity.contains(issue_until) {
            return Err(invalid("issue_until outside the validity window"));
        }
        // One key per denomination: a key shared by 1 and 1000 would let a wallet pay for
        // a 1 and finalize a 1000.
        let mut key_ids: Vec<KeyId> = denominations.iter().map(|d| d.key.key_id()).collect();
        key_ids.sort_unstable();
        if let Some(w) = key_ids.windows(2).find(|w| w[0] == w[1]) {
            return Err(Error::DuplicateKey(w[0]));
        }
        let input = KeysetIdInput {
            currency,
            validity,
            issue_until,
            denominations: denominations
                .iter()
                .map(|d| (d.minor_units, d.key.key_id()))
                .collect(),
        };
        Ok(KeysetId(codec::digest(&input)?.0))
    }

    /// The same keyset, its coins verified on `backend` (same keys, same id).
    pub fn on_backend(&self, backend: Backend) -> Keyset {
        Keyset {
            denominations: self
                .denominations
                .iter()
                .map(|d| DenominationKeyEntry {
                    minor_units: d.minor_units,
                    key: d.key.on_backend(backend),
                })
                .collect(),
            ..self.clone()
        }
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

    /// Last instant wallets may withdraw coins of this keyset.
    pub fn issue_until(&self) -> Timestamp {
        self.issue_until
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
        let id = Self::derive_id(f.currency, f.validity, f.issue_until, &f.denominations)?;
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
            issue_until: f.issue_until,
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
            issue_until: k.issue_until,
            denominations: k.denominations,
        }
    }
}

/// Every issuer public key with its validity window, and every blind-coin keyset.
/// Wallets and merchants cache it to verify offline; they obtain it as a
/// [`SignedKeyDirectory`] and check it against the pinned root key.
///
/// Every key appears exactly once: a key serves one role (or one denomination), so no
/// signature made for one purpose is accepted for another.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "KeyDirectoryFields", into = "KeyDirectoryFields")]
pub struct KeyDirectory {
    issued_at: Timestamp,
    issuer_keys: Vec<IssuerKeyEntry>,
    keysets: Vec<Keyset>,
}

#[derive(Clone, Serialize, Deserialize)]
struct KeyDirectoryFields {
    issued_at: Timestamp,
    issuer_keys: Vec<IssuerKeyEntry>,
    keysets: Vec<Keyset>,
}

signed_token!(
    /// A [`KeyDirectory`] signed by the issuer's root key.
    SignedKeyDirectory = KeyDirectory,
    signer: DirectoryRoot,
    tag: "key-directory"
);

impl KeyDirectory {
    /// A directory; fails with [`Error::DuplicateKey`] if any key is listed twice (as two
    /// roles, two denominations, or both) and if two keysets share an id.
    pub fn new(
        issued_at: Timestamp,
        issuer_keys: Vec<IssuerKeyEntry>,
        keysets: Vec<Keyset>,
    ) -> Result<Self> {
        let mut key_ids: Vec<KeyId> = issuer_keys
            .iter()
            .map(|e| e.key.key_id())
            .chain(
                keysets
                    .iter()
                    .flat_map(|k| k.denominations.iter().map(|d| d.key.key_id())),
            )
            .collect();
        key_ids.sort_unstable();
        if let Some(w) = key_ids.windows(2).find(|w| w[0] == w[1]) {
            return Err(Error::DuplicateKey(w[0]));
        }
        let mut keyset_ids: Vec<KeysetId> = keysets.iter().map(Keyset::id).collect();
        keyset_ids.sort_unstable();
        if keyset_ids.windows(2).any(|w| w[0] == w[1]) {
            return Err(Error::InvalidField {
                field: "keysets",
                reason: "a keyset is listed twice",
            });
        }
        Ok(KeyDirectory {
            issued_at,
            issuer_keys,
            keysets,
        })
    }

    /// The same directory, every key verifying on `backend` (each parsed for it once,
    /// here): what a server does with a directory it verifies many tokens against.
    pub fn on_backend(&self, backend: Backend) -> KeyDirectory {
        KeyDirectory {
            issued_at: self.issued_at,
            issuer_keys: self
                .issuer_keys
                .iter()
                .map(|e| IssuerKeyEntry {
                    key: e.key.on_backend(backend),
                    ..e.clone()
                })
                .collect(),
            keysets: self.keysets.iter().map(|k| k.on_backend(backend)).collect(),
        }
    }

    /// When the issuer produced this directory (lets a cache show its age).
    pub fn issued_at(&self) -> Timestamp {
        self.issued_at
    }

    /// The issuer's RSA-PSS keys.
    pub fn issuer_keys(&self) -> &[IssuerKeyEntry] {
        &self.issuer_keys
    }

    /// The blind-coin keysets.
    pub fn keysets(&self) -> &[Keyset] {
        &self.keysets
    }

    /// The key `key_id` as a verifying key of role `R`, provided the directory lists it for
    /// that role and it is valid at `now`.
    pub fn issuer_key<R: IssuerRole>(
        &self,
        key_id: KeyId,
        now: Timestamp,
    ) -> Result<VerifyingKey<R>> {
        let Some(entry) = self.issuer_keys.iter().find(|e| e.key.key_id() == key_id) else {
            return Err(Error::UnknownKey(key_id));
        };
        if entry.role != R::KIND {
            return Err(Error::WrongKeyRole {
                key_id,
                expected: R::NAME,
                found: entry.role.name(),
            });
        }
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

    /// The keyset a wallet should withdraw `currency` coins from at `now`: of those open
    /// for issuance at `now`, the one that became valid last.
    pub fn current_keyset(&self, currency: Currency, now: Timestamp) -> Option<&Keyset> {
        self.keysets
            .iter()
            .filter(|k| {
                k.currency == currency && k.validity.not_before <= now && now <= k.issue_until
            })
            .max_by_key(|k| k.validity.not_before)
    }
}

impl TryFrom<KeyDirectoryFields> for KeyDirectory {
    type Error = Error;
    fn try_from(f: KeyDirectoryFields) -> Result<Self> {
        KeyDirectory::new(f.issued_at, f.issuer_keys, f.keysets)
    }
}

impl From<KeyDirectory> for KeyDirectoryFields {
    fn from(d: KeyDirectory) -> Self {
        KeyDirectoryFields {
            issued_at: d.issued_at,
            issuer_keys: d.issuer_keys,
            keysets: d.keysets,
        }
    }
}

impl SignedKeyDirectory {
    /// Checks the root signature and returns the directory. `root` is the issuer's root
    /// key as pinned by the wallet or merchant (configuration, not the network).
    pub fn verify(&self, root: &VerifyingKey<DirectoryRoot>) -> Result<&KeyDirectory> {
        self.verify_signature(root)
    }
}
