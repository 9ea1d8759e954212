//! What a store holds and what one atomic unit of work says.

use std::fmt;

use scrip_tokens::{
    AccountId, Amount, CertificateSerial, CoinId, CoinSpendId, ContentDigest, Currency, DepositId,
    DeviceId, MerchantId, RecordId, Timestamp,
};
use serde::{Deserialize, Serialize};

use crate::StoreError;

/// Most claims one [`Unit`] may carry; a larger set is split by the caller (a merchant batch
/// is many units, not one).
pub const MAX_CLAIMS_PER_UNIT: usize = 10_000;
/// Most postings, floors or document writes one [`Unit`] may carry.
pub const MAX_ITEMS_PER_UNIT: usize = 10_000;
/// Largest document value.
pub const MAX_VALUE_LEN: usize = 1 << 20;
/// Longest document key, custom claim key or system account name.
pub const MAX_KEY_LEN: usize = 256;

/// Something that can be claimed once: the double-spend guard's unit of exclusion.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ClaimId {
    /// A coin, by its spend id (a digest of what the issuer signed, which only a holder
    /// of the coin can produce): redeemed once.
    Coin(CoinSpendId),
    /// A coin claimed by scrip 0.1 under its bare, wallet-chosen UUID. This version never
    /// writes such claims (anyone who learned the id could take it first); the issuer and
    /// merchants read them so that coins redeemed before an upgrade stay redeemed.
    LegacyCoinId(CoinId),
    /// A withdrawal record, by its id: recorded once.
    Record(RecordId),
    /// A device's sequence number: one record per (device, sequence); a second, different
    /// record is equivocation.
    DeviceSequence {
        /// The device.
        device: DeviceId,
        /// Its payment counter.
        sequence: u64,
    },
    /// A deposit: credited once.
    Deposit(DepositId),
    /// A balance certificate (for example, its reservation is released once).
    Certificate(CertificateSerial),
    /// A client idempotency key within a scope (an account, a merchant).
    Idempotency {
        /// Whose key it is (a UUID: account or merchant id).
        scope: uuid::Uuid,
        /// The key (a client-chosen 32-byte value, or a hash of a longer one).
        key: [u8; 32],
    },
    /// Anything else, namespaced. Build it with [`ClaimNamespace::claim`] from a namespace
    /// constant declared once next to the caller's storage schema.
    Custom {
        /// Short namespace, e.g. `"merchant-key"` (1..=64 bytes).
        namespace: String,
        /// The key within it.
        key: Vec<u8>,
    },
}

impl ClaimId {
    /// The first byte of [`ClaimId::key_bytes`]: which kind of id this is.
    pub(crate) fn kind(&self) -> u8 {
        match self {
            ClaimId::LegacyCoinId(_) => 1,
            ClaimId::Record(_) => 2,
            ClaimId::DeviceSequence { .. } => 3,
            ClaimId::Deposit(_) => 4,
            ClaimId::Certificate(_) => 5,
            ClaimId::Idempotency { .. } => 6,
            ClaimId::Custom { .. } => 7,
            ClaimId::Coin(_) => 8,
        }
    }

    /// The key bytes stores index by: a kind byte, then the fields (length-prefixed where
    /// variable), so distinct ids never share bytes.
    pub fn key_bytes(&self) -> Vec<u8> {
        let mut k = Vec::with_capacity(41);
        k.push(self.kind());
        match self {
            ClaimId::LegacyCoinId(id) => {
                k.extend_from_slice(id.as_bytes());
            }
            ClaimId::Coin(spend_id) => {
                k.extend_from_slice(spend_id.as_bytes());
            }
            ClaimId::Record(id) => {
                k.extend_from_slice(id.as_bytes());
            }
            ClaimId::DeviceSequence { device, sequence } => {
                k.extend_from_slice(device.as_bytes());
                k.extend_from_slice(&sequence.to_be_bytes());
            }
            ClaimId::Deposit(id) => {
                k.extend_from_slice(id.as_bytes());
            }
            ClaimId::Certificate(serial) => {
                k.extend_from_slice(serial.as_bytes());
            }
            ClaimId::Idempotency { scope, key } => {
                k.extend_from_slice(scope.as_bytes());
                k.extend_from_slice(key);
            }
            ClaimId::Custom { namespace, key } => {
                push_len_prefixed(&mut k, namespace.as_bytes());
                push_len_prefixed(&mut k, key);
            }
        }
        k
    }

    fn check(&self) -> Result<(), StoreError> {
        if let ClaimId::Custom { namespace, key } = self {
            if namespace.is_empty() || namespace.len() > 64 || key.len() > MAX_KEY_LEN {
                return Err(StoreError::InvalidUnit(
                    "custom claim namespace must be 1..=64 bytes and key at most 256",
                ));
            }
        }
        Ok(())
    }
}

/// The namespace of [`ClaimId::Custom`] claims. Each crate declares its namespaces once, as
/// constants next to its storage schema, and builds claims only through them: a typo in a
/// string literal would silently move a double-spend guard into another namespace, where
/// it guards nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClaimNamespace(&'static str);

impl ClaimNamespace {
    /// A namespace (1..=64 bytes; longer or empty ones are refused when a unit is checked).
    pub const fn new(name: &'static str) -> Self {
        ClaimNamespace(name)
    }

    /// Its name.
    pub const fn name(&self) -> &'static str {
        self.0
    }

    /// The claim of `key` in this namespace.
    pub fn claim(self, key: impl Into<Vec<u8>>) -> ClaimId {
        ClaimId::Custom {
            namespace: self.0.to_owned(),
            key: key.into(),
        }
    }

    /// Whether `id` is a claim in this namespace.
    pub fn holds(self, id: &ClaimId) -> bool {
        matches!(id, ClaimId::Custom { namespace, .. } if namespace == self.0)
    }
}

fn push_len_prefixed(out: &mut Vec<u8>, bytes: &[u8]) {
    // Callers bound lengths to MAX_KEY_LEN (< 65536).
    out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// Who made a claim. Two claims of one id by the same claimant with the same digest are
/// one claim repeated (a retry), not a conflict.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Claimant {
    /// A merchant (redeeming coins or uploading records).
    Merchant(MerchantId),
    /// A customer account (withdrawing coins, syncing its own records).
    Account(AccountId),
    /// A device of an account.
    Device(DeviceId),
    /// The issuer itself (registrations, expiry, reissue).
    Issuer,
    /// Whoever held the coins a swap handed in: a swap names nobody (coins are bearer
    /// tokens), so its claims carry only the swap's digest. Appended last: claims stored
    /// before it existed decode unchanged.
    Holder,
}

/// An existing claim: who holds the id, since when, and the digest of what they claimed
/// with it (so a caller can tell a retry of the same item from a different item).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExistingClaim {
    /// Who claimed it.
    pub claimant: Claimant,
    /// When (the committing unit's `at`).
    pub claimed_at: Timestamp,
    /// Digest of the claimed item.
    pub digest: ContentDigest,
}
impl scrip_tokens::Message for ExistingClaim {
    const TAG: &'static str = "scrip/store/claim/v1";
    const VERSION: u16 = 1;
}

/// A ledger account. Money only moves between ledger accounts, in units whose postings
/// sum to zero per currency, so the total of all balances is always zero.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum LedgerAccount {
    /// A customer's spendable balance.
    Customer(AccountId),
    /// Funds reserved for one offline balance certificate.
    Reservation(CertificateSerial),
    /// What the issuer owes a merchant.
    Merchant(MerchantId),
    /// An issuer-side account, e.g. `"funding"` or `"coins-outstanding"` (1..=64 bytes).
    System(String),
}

impl LedgerAccount {
    /// Index key bytes: a kind byte, then the id (length-prefixed for system names).
    pub fn key_bytes(&self) -> Vec<u8> {
        let mut k = Vec::with_capacity(17);
        match self {
            LedgerAccount::Customer(id) => {
                k.push(1);
                k.extend_from_slice(id.as_bytes());
            }
            LedgerAccount::Reservation(serial) => {
                k.push(2);
                k.extend_from_slice(serial.as_bytes());
            }
            LedgerAccount::Merchant(id) => {
                k.push(3);
                k.extend_from_slice(id.as_bytes());
            }
            LedgerAccount::System(name) => {
                k.push(4);
                push_len_prefixed(&mut k, name.as_bytes());
            }
        }
        k
    }

    /// Parses [`LedgerAccount::key_bytes`] at the start of `bytes`; returns the account
    /// and the rest.
    pub fn parse_key(bytes: &[u8]) -> Option<(LedgerAccount, &[u8])> {
        let (kind, rest) = bytes.split_first()?;
        let uuid_then = |rest: &[u8]| -> Option<(uuid::Uuid, usize)> {
            let raw: [u8; 16] = rest.get(..16)?.try_into().ok()?;
            Some((uuid::Uuid::from_bytes(raw), 16))
        };
        let (account, used) = match kind {
            1 => uuid_then(rest).map(|(u, n)| (LedgerAccount::Customer(AccountId(u)), n))?,
            2 => uuid_then(rest)
                .map(|(u, n)| (LedgerAccount::Reservation(CertificateSerial(u)), n))?,
            3 => uuid_then(rest).map(|(u, n)| (LedgerAccount::Merchant(MerchantId(u)), n))?,
            4 => {
                let len = u16::from_be_bytes(rest.get(..2)?.try_into().ok()?) as usize;
                let name = std::str::from_utf8(rest.get(2..2 + len)?).ok()?;
                (LedgerAccount::System(name.to_owned()), 2 + len)
            }
            _ => return None,
        };
        Some((account, rest.get(used..)?))
    }

    fn check(&self) -> Result<(), StoreError> {
        if let LedgerAccount::System(name) = self {
            if name.is_empty() || name.len() > 64 {
                return Err(StoreError::InvalidUnit(
                    "system account names are 1..=64 bytes",
                ));
            }
        }
        Ok(())
    }
}

impl fmt::Display for LedgerAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LedgerAccount::Customer(id) => write!(f, "customer:{id}"),
            LedgerAccount::Reservation(s) => write!(f, "reservation:{s}"),
            LedgerAccount::Merchant(id) => write!(f, "merchant:{id}"),
            LedgerAccount::System(name) => write!(f, "system:{name}"),
        }
    }
}

/// One movement of money into (positive `delta`) or out of (negative) a ledger account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Posting {
    /// The account.
    pub account: LedgerAccount,
    /// The currency.
    pub currency: Currency,
    /// Change in minor units.
    pub delta: i128,
    /// Why (kept in the ledger entry), at most 256 bytes.
    pub memo: String,
}

impl Posting {
    /// `amount` into `account`.
    pub fn credit(account: LedgerAccount, amount: Amount, memo: impl Into<String>) -> Self {
        Posting {
            account,
            currency: amount.currency,
            delta: i128::from(amount.minor_units),
            memo: memo.into(),
        }
    }

    /// `amount` out of `account`.
    pub fn debit(account: LedgerAccount, amount: Amount, memo: impl Into<String>) -> Self {
        Posting {
            account,
            currency: amount.currency,
            delta: -i128::from(amount.minor_units),
            memo: memo.into(),
        }
    }

    /// The pair of postings moving `amount` from `from` to `to`.
    pub fn transfer(
        from: LedgerAccount,
        to: LedgerAccount,
        amount: Amount,
        memo: &str,
    ) -> [Posting; 2] {
        [
            Posting::debit(from, amount, memo),
            Posting::credit(to, amount, memo),
        ]
    }
}

/// A lower bound on a balance after the unit's postings: the unit commits only if every
/// floor holds. This is how "never spend more than the balance" and "reservations never
/// exceed the balance" are enforced atomically, with no read-then-write race.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Floor {
    /// The account.
    pub account: LedgerAccount,
    /// The currency.
    pub currency: Currency,
    /// Smallest acceptable balance after the unit, in minor units.
    pub min: i128,
}

impl Floor {
    /// The balance of `account` in `currency` must not go below zero.
    pub fn non_negative(account: LedgerAccount, currency: Currency) -> Self {
        Floor {
            account,
            currency,
            min: 0,
        }
    }
}

/// A named group of documents (issuer state other than claims and money: accounts,
/// devices, certificates, the fraud log, stored responses). 1..=32 ASCII bytes, no NUL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Collection(&'static str);

impl Collection {
    /// A collection named `name` (1..=32 ASCII graphic bytes).
    pub const fn new(name: &'static str) -> Self {
        Collection(name)
    }

    /// The name.
    pub const fn name(&self) -> &'static str {
        self.0
    }

    pub(crate) fn check(&self) -> Result<(), StoreError> {
        let ok = !self.0.is_empty()
            && self.0.len() <= 32
            && self.0.bytes().all(|b| b.is_ascii_graphic());
        if ok {
            Ok(())
        } else {
            Err(StoreError::InvalidUnit(
                "collection names are 1..=32 ASCII graphic bytes",
            ))
        }
    }
}

/// Put (`value: Some`) or delete (`None`) one document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Write {
    /// The collection.
    pub collection: Collection,
    /// The key within it (at most 256 bytes).
    pub key: Vec<u8>,
    /// The new value, or `None` to delete.
    pub value: Option<Vec<u8>>,
}

impl Write {
    /// Stores `value` under `key`.
    pub fn put(collection: Collection, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        Write {
            collection,
            key: key.into(),
            value: Some(value.into()),
        }
    }

    /// Deletes `key`.
    pub fn delete(collection: Collection, key: impl Into<Vec<u8>>) -> Self {
        Write {
            collection,
            key: key.into(),
            value: None,
        }
    }
}

/// One claim of a unit: the id and the digest of the item claimed with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimRequest {
    /// What is claimed.
    pub id: ClaimId,
    /// Digest of the item (for example the coin's encoding).
    pub digest: ContentDigest,
}

/// An atomic unit of work: claims, postings, balance floors and document writes that
/// commit together or not at all. Marking a payment's coins spent and crediting the
/// merchant is one unit, so a crash never leaves one without the other.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unit {
    /// When (the issuer's clock); recorded as `claimed_at` and in ledger entries.
    pub at: Timestamp,
    /// Who claims.
    pub claimant: Claimant,
    /// Ids to claim.
    pub claims: Vec<ClaimRequest>,
    /// Money movements; they must sum to zero per currency.
    pub postings: Vec<Posting>,
    /// Balance bounds that must hold after the postings.
    pub floors: Vec<Floor>,
    /// Document writes.
    pub writes: Vec<Write>,
}

impl Unit {
    /// An empty unit by `claimant` at `at`; add to it with the builder methods.
    pub fn new(claimant: Claimant, at: Timestamp) -> Self {
        Unit {
            at,
            claimant,
            claims: Vec::new(),
            postings: Vec::new(),
            floors: Vec::new(),
            writes: Vec::new(),
        }
    }

    /// Adds a claim of `id` for the item with `digest`.
    pub fn claim(mut self, id: ClaimId, digest: ContentDigest) -> Self {
        self.claims.push(ClaimRequest { id, digest });
        self
    }

    /// Adds postings.
    pub fn post(mut self, postings: impl IntoIterator<Item = Posting>) -> Self {
        self.postings.extend(postings);
        self
    }

    /// Adds a floor.
    pub fn floor(mut self, floor: Floor) -> Self {
        self.floors.push(floor);
        self
    }

    /// Adds a document write.
    pub fn write(mut self, write: Write) -> Self {
        self.writes.push(write);
        self
    }

    /// Checks the unit's shape (sizes, names, postings balanced per currency, no id claimed
    /// twice). Every store calls this before doing anything else.
    pub fn validate(&self) -> Result<(), StoreError> {
        if self.claims.len() > MAX_CLAIMS_PER_UNIT {
            return Err(StoreError::InvalidUnit("too many claims in one unit"));
        }
        if self.postings.len() > MAX_ITEMS_PER_UNIT
            || self.floors.len() > MAX_ITEMS_PER_UNIT
            || self.writes.len() > MAX_ITEMS_PER_UNIT
        {
            return Err(StoreError::InvalidUnit(
                "too many postings, floors or writes",
            ));
        }
        let mut ids: Vec<Vec<u8>> = Vec::with_capacity(self.claims.len());
        for claim in &self.claims {
            claim.id.check()?;
            ids.push(claim.id.key_bytes());
        }
        ids.sort_unstable();
        if ids.windows(2).any(|w| w[0] == w[1]) {
            return Err(StoreError::InvalidUnit(
                "an id is claimed twice in one unit",
            ));
        }
        let mut sums: Vec<(Currency, i128)> = Vec::new();
        for p in &self.postings {
            p.account.check()?;
            if p.memo.len() > MAX_KEY_LEN {
                return Err(StoreError::InvalidUnit(
                    "posting memo longer than 256 bytes",
                ));
            }
            match sums.iter_mut().find(|(c, _)| *c == p.currency) {
                Some((_, sum)) => {
                    *sum = sum
                        .checked_add(p.delta)
                        .ok_or(StoreError::InvalidUnit("posting sum overflows"))?
                }
                None => sums.push((p.currency, p.delta)),
            }
        }
        if let Some((currency, _)) = sums.iter().find(|(_, sum)| *sum != 0) {
            return Err(StoreError::UnbalancedPostings {
                currency: *currency,
            });
        }
        for f in &self.floors {
            f.account.check()?;
        }
        for w in &self.writes {
            w.collection.check()?;
            if w.key.len() > MAX_KEY_LEN {
                return Err(StoreError::InvalidUnit(
                    "document key longer than 256 bytes",
                ));
            }
            if w.value.as_ref().is_some_and(|v| v.len() > MAX_VALUE_LEN) {
                return Err(StoreError::InvalidUnit("document value larger than 1 MiB"));
            }
        }
        Ok(())
    }
}

/// What became of a unit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommitOutcome {
    /// Every claim was fresh and every floor held: everything was written, durably.
    Committed,
    /// Every claim was already held by this claimant with the same digest: the unit is a
    /// retry of one that committed earlier. Nothing was written again (postings are not
    /// applied twice).
    Repeated {
        /// When the original unit committed.
        first_claimed_at: Timestamp,
    },
    /// Some claim is held by someone else (or by this claimant for a different item).
    /// Nothing was written. One entry per claim of the unit, in order: `None` if the id
    /// is free, else the existing claim.
    Conflict(Vec<(ClaimId, Option<ExistingClaim>)>),
    /// All claims were fresh but a floor would be broken. Nothing was written.
    InsufficientFunds {
        /// The account whose floor failed.
        account: LedgerAccount,
        /// Its currency.
        currency: Currency,
        /// Its balance had the unit been applied.
        balance_after: i128,
        /// The floor.
        min: i128,
    },
}

impl CommitOutcome {
    /// True for [`CommitOutcome::Committed`] and [`CommitOutcome::Repeated`]: the unit's
    /// effects are in the store.
    pub fn is_durable_success(&self) -> bool {
        matches!(
            self,
            CommitOutcome::Committed | CommitOutcome::Repeated { .. }
        )
    }
}

/// One line of an account's ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// Increasing within the account's ledger (store-wide in the embedded backends, per
    /// account and currency in PostgreSQL): page with it, do not compare across accounts.
    pub seq: u64,
    /// When the unit committed.
    pub at: Timestamp,
    /// Who committed the unit.
    pub claimant: Claimant,
    /// Change in minor units.
    pub delta: i128,
    /// Balance after this entry.
    pub balance_after: i128,
    /// The posting's memo.
    pub memo: String,
}
impl scrip_tokens::Message for LedgerEntry {
    const TAG: &'static str = "scrip/store/ledger-entry/v1";
    const VERSION: u16 = 1;
}
