//! The semantics every backend shares, written once over a minimal key-value interface:
//! how a unit is checked and applied, how keys are laid out, how queries read.
//!
//! A backend supplies ordered byte tables ([`KvGet`], [`KvPut`], [`KvRead`]) with the
//! isolation the engine needs: while [`apply_unit`] runs, nothing else writes, and reads
//! see the unit's own earlier writes and those of earlier units of the same batch.

use scrip_tokens::{codec, Currency};

use crate::model::{ClaimId, CommitOutcome, ExistingClaim, LedgerAccount, LedgerEntry, Unit};
use crate::{Collection, StoreError};

/// On-disk format version of the key layout and value encodings below. Stored in every
/// durable backend; a later release migrates instead of misreading.
pub(crate) const FORMAT_VERSION: u16 = 1;

/// The tables every backend keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Table {
    /// `ClaimId::key_bytes` -> encoded [`ExistingClaim`].
    Claims = 0,
    /// ledger account key || currency -> balance (i128 little-endian).
    Balances = 1,
    /// ledger account key || currency || seq (u64 big-endian) -> encoded [`LedgerEntry`].
    Entries = 2,
    /// collection name || 0x00 || key -> value.
    Documents = 3,
    /// small named values (format version, next ledger sequence number).
    Meta = 4,
}

impl Table {
    pub(crate) const ALL: [Table; 5] = [
        Table::Claims,
        Table::Balances,
        Table::Entries,
        Table::Documents,
        Table::Meta,
    ];

    pub(crate) fn from_u8(b: u8) -> Option<Table> {
        Table::ALL.get(usize::from(b)).copied()
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Table::Claims => "claims",
            Table::Balances => "balances",
            Table::Entries => "entries",
            Table::Documents => "documents",
            Table::Meta => "meta",
        }
    }
}

pub(crate) const META_FORMAT: &[u8] = b"format";
const META_NEXT_SEQ: &[u8] = b"next-entry-seq";

/// Key-value pairs, in key order.
pub(crate) type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// Point reads.
pub(crate) trait KvGet {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
}

/// Writes (`None` deletes).
pub(crate) trait KvPut: KvGet {
    fn put(&mut self, table: Table, key: Vec<u8>, value: Option<Vec<u8>>)
        -> Result<(), StoreError>;
}

/// Ordered range reads.
pub(crate) trait KvRead: KvGet {
    /// Pairs with `start <= key < end` (no upper bound if `end` is `None`), ascending, at
    /// most `limit`.
    fn range(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Pairs, StoreError>;
}

fn corrupted(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupted(format!("{what}: {e}"))
}

fn balance_key(account: &LedgerAccount, currency: Currency) -> Vec<u8> {
    let mut k = account.key_bytes();
    k.extend_from_slice(&currency.as_bytes());
    k
}

fn entry_key(balance_key: &[u8], seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(balance_key.len() + 8);
    k.extend_from_slice(balance_key);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

pub(crate) fn document_key(collection: Collection, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(collection.name().len() + 1 + key.len());
    k.extend_from_slice(collection.name().as_bytes());
    k.push(0);
    k.extend_from_slice(key);
    k
}

/// The smallest byte string greater than every string starting with `prefix`, if any.
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// The smallest byte string greater than `key`.
fn successor(key: &[u8]) -> Vec<u8> {
    let mut k = key.to_vec();
    k.push(0);
    k
}

fn decode_balance(bytes: &[u8]) -> Result<i128, StoreError> {
    let raw: [u8; 16] = bytes
        .try_into()
        .map_err(|_| corrupted("balance", "not 16 bytes"))?;
    Ok(i128::from_le_bytes(raw))
}

fn read_balance(kv: &impl KvGet, key: &[u8]) -> Result<i128, StoreError> {
    kv.get(Table::Balances, key)?
        .map_or(Ok(0), |v| decode_balance(&v))
}

fn read_claim(kv: &impl KvGet, key: &[u8]) -> Result<Option<ExistingClaim>, StoreError> {
    kv.get(Table::Claims, key)?
        .map(|v| codec::decode::<ExistingClaim>(&v).map_err(|e| corrupted("claim", e)))
        .transpose()
}

fn read_next_seq(kv: &impl KvGet) -> Result<u64, StoreError> {
    match kv.get(Table::Meta, META_NEXT_SEQ)? {
        None => Ok(1),
        Some(v) => {
            let raw: [u8; 8] = v
                .as_slice()
                .try_into()
                .map_err(|_| corrupted("next entry sequence", "not 8 bytes"))?;
            Ok(u64::from_le_bytes(raw))
        }
    }
}

/// Checks and applies one unit. Reads everything it needs first and writes only once the
/// outcome is `Committed`, so a unit is never half-applied. The caller has run
/// [`Unit::validate`].
pub(crate) fn apply_unit(kv: &mut impl KvPut, unit: &Unit) -> Result<CommitOutcome, StoreError> {
    // 1. Claims.
    let mut keys = Vec::with_capacity(unit.claims.len());
    let mut existing = Vec::with_capacity(unit.claims.len());
    for claim in &unit.claims {
        let key = claim.id.key_bytes();
        existing.push(read_claim(kv, &key)?);
        keys.push(key);
    }
    if existing.iter().any(Option::is_some) {
        let repeat = existing.iter().zip(&unit.claims).all(|(held, claim)| {
            held.as_ref()
                .is_some_and(|h| h.claimant == unit.claimant && h.digest == claim.digest)
        });
        if repeat {
            let first_claimed_at = existing
                .iter()
                .flatten()
                .map(|h| h.claimed_at)
                .min()
                .unwrap_or(unit.at);
            return Ok(CommitOutcome::Repeated { first_claimed_at });
        }
        let report = unit
            .claims
            .iter()
            .map(|c| c.id.clone())
            .zip(existing)
            .collect();
        return Ok(CommitOutcome::Conflict(report));
    }

    // 2. Balances after the postings, and the floors on them.
    // (key, balance before, balance after)
    let mut balances: Vec<(Vec<u8>, i128, i128)> = Vec::new();
    for p in &unit.postings {
        let key = balance_key(&p.account, p.currency);
        let slot = match balances.iter().position(|(k, _, _)| *k == key) {
            Some(i) => i,
            None => {
                let current = read_balance(kv, &key)?;
                balances.push((key, current, current));
                balances.len() - 1
            }
        };
        if let Some((_, _, after)) = balances.get_mut(slot) {
            *after = after
                .checked_add(p.delta)
                .ok_or(StoreError::InvalidUnit("balance overflows i128"))?;
        }
    }
    for f in &unit.floors {
        let key = balance_key(&f.account, f.currency);
        let after = match balances.iter().find(|(k, _, _)| *k == key) {
            Some((_, _, after)) => *after,
            None => read_balance(kv, &key)?,
        };
        if after < f.min {
            return Ok(CommitOutcome::InsufficientFunds {
                account: f.account.clone(),
                currency: f.currency,
                balance_after: after,
                min: f.min,
            });
        }
    }

    // 3. Everything holds: write.
    for (claim, key) in unit.claims.iter().zip(keys) {
        let value = ExistingClaim {
            claimant: unit.claimant.clone(),
            claimed_at: unit.at,
            digest: claim.digest,
        };
        let bytes = codec::encode(&value).map_err(|e| corrupted("encoding a claim", e))?;
        kv.put(Table::Claims, key, Some(bytes))?;
    }
    if !unit.postings.is_empty() {
        let mut seq = read_next_seq(kv)?;
        let mut running: Vec<(Vec<u8>, i128)> = balances
            .iter()
            .map(|(k, before, _)| (k.clone(), *before))
            .collect();
        for p in &unit.postings {
            let key = balance_key(&p.account, p.currency);
            let Some((_, balance)) = running.iter_mut().find(|(k, _)| *k == key) else {
                return Err(StoreError::Corrupted(
                    "posting without a balance slot".into(),
                ));
            };
            *balance += p.delta; // cannot overflow: the final sums were checked above
            let entry = LedgerEntry {
                seq,
                at: unit.at,
                claimant: unit.claimant.clone(),
                delta: p.delta,
                balance_after: *balance,
                memo: p.memo.clone(),
            };
            let bytes = codec::encode(&entry).map_err(|e| corrupted("encoding an entry", e))?;
            kv.put(Table::Entries, entry_key(&key, seq), Some(bytes))?;
            seq += 1;
        }
        for (key, _, after) in balances {
            kv.put(Table::Balances, key, Some(after.to_le_bytes().to_vec()))?;
        }
        kv.put(
            Table::Meta,
            META_NEXT_SEQ.to_vec(),
            Some(seq.to_le_bytes().to_vec()),
        )?;
    }
    for w in &unit.writes {
        kv.put(
            Table::Documents,
            document_key(w.collection, &w.key),
            w.value.clone(),
        )?;
    }
    Ok(CommitOutcome::Committed)
}

// ---- queries ---------------------------------------------------------------------------

pub(crate) fn claims(
    kv: &impl KvGet,
    ids: &[ClaimId],
) -> Result<Vec<Option<ExistingClaim>>, StoreError> {
    ids.iter()
        .map(|id| read_claim(kv, &id.key_bytes()))
        .collect()
}

pub(crate) fn balance(
    kv: &impl KvGet,
    account: &LedgerAccount,
    currency: Currency,
) -> Result<i128, StoreError> {
    read_balance(kv, &balance_key(account, currency))
}

pub(crate) fn balances(
    kv: &impl KvRead,
    after: Option<&(LedgerAccount, Currency)>,
    limit: usize,
) -> Result<Vec<(LedgerAccount, Currency, i128)>, StoreError> {
    let start = after.map_or_else(Vec::new, |(a, c)| successor(&balance_key(a, *c)));
    kv.range(Table::Balances, &start, None, limit)?
        .into_iter()
        .map(|(k, v)| {
            let (account, rest) = LedgerAccount::parse_key(&k)
                .ok_or_else(|| corrupted("balance key", "unparsable"))?;
            let code: [u8; 3] = rest
                .try_into()
                .map_err(|_| corrupted("balance key", "bad currency"))?;
            let currency = Currency::from_bytes(code).map_err(|e| corrupted("balance key", e))?;
            Ok((account, currency, decode_balance(&v)?))
        })
        .collect()
}

pub(crate) fn ledger_entries(
    kv: &impl KvRead,
    account: &LedgerAccount,
    currency: Currency,
    after_seq: Option<u64>,
    limit: usize,
) -> Result<Vec<LedgerEntry>, StoreError> {
    let prefix = balance_key(account, currency);
    let start = match after_seq {
        Some(seq) => match seq.checked_add(1) {
            Some(next) => entry_key(&prefix, next),
            None => return Ok(Vec::new()),
        },
        None => prefix.clone(),
    };
    let end = prefix_end(&prefix);
    kv.range(Table::Entries, &start, end.as_deref(), limit)?
        .into_iter()
        .map(|(_, v)| codec::decode::<LedgerEntry>(&v).map_err(|e| corrupted("ledger entry", e)))
        .collect()
}

pub(crate) fn document(
    kv: &impl KvGet,
    collection: Collection,
    key: &[u8],
) -> Result<Option<Vec<u8>>, StoreError> {
    kv.get(Table::Documents, &document_key(collection, key))
}

pub(crate) fn documents(
    kv: &impl KvRead,
    collection: Collection,
    after: Option<&[u8]>,
    limit: usize,
) -> Result<Pairs, StoreError> {
    let prefix = document_key(collection, b"");
    let start = after.map_or_else(
        || prefix.clone(),
        |a| successor(&document_key(collection, a)),
    );
    let end = prefix_end(&prefix);
    Ok(kv
        .range(Table::Documents, &start, end.as_deref(), limit)?
        .into_iter()
        .filter_map(|(k, v)| k.get(prefix.len()..).map(|key| (key.to_vec(), v)))
        .collect())
}

/// Checks (or, on a fresh store, writes) the format version.
pub(crate) fn check_format(kv: &mut impl KvPut) -> Result<(), StoreError> {
    match kv.get(Table::Meta, META_FORMAT)? {
        None => kv.put(
            Table::Meta,
            META_FORMAT.to_vec(),
            Some(FORMAT_VERSION.to_le_bytes().to_vec()),
        ),
        Some(v) if v.as_slice() == FORMAT_VERSION.to_le_bytes() => Ok(()),
        Some(v) => Err(StoreError::UnsupportedFormat {
            found: v
                .as_slice()
                .try_into()
                .map(u16::from_le_bytes)
                .unwrap_or(u16::MAX),
            supported: FORMAT_VERSION,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_first_key_past_the_prefix() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[1, 0xFF]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xFF, 0xFF]), None);
        assert_eq!(successor(b"ab"), b"ab\0".to_vec());
    }
}
