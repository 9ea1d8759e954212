//! The semantics every backend shares, written once over a minimal key-value interface:
//! how a unit is checked and applied, how keys are laid out, how queries read.
//!
//! A backend supplies ordered byte tables ([`KvGet`], [`KvPut`], [`KvRead`]) with the
//! isolation the engine needs: while [`apply_unit`] runs, nothing else reads or writes
//! them (a refused unit's claims exist until it undoes them), and the unit sees its own
//! earlier writes and those of earlier units of the same batch. If `apply_unit` fails,
//! the durable backends discard the whole batch (the memory store, which writes in
//! place, fails only on data it could not have stored).

use scrip_tokens::{codec, ContentDigest, Currency};

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

    /// Writes `value` under `key` and returns the value it replaced. A backend whose
    /// insert already finds the old value (redb's B-tree, a hash map) overrides this, so a
    /// fresh claim costs one walk instead of a lookup and then an insert.
    fn replace(
        &mut self,
        table: Table,
        key: &[u8],
        value: &[u8],
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let old = self.get(table, key)?;
        self.put(table, key.to_vec(), Some(value.to_vec()))?;
        Ok(old)
    }

    /// Undoes a [`KvPut::replace`] that returned `old`, leaving `key` as it was found. A
    /// backend that records changes (the file store's overlay) overrides this, so that an
    /// undone write leaves no change behind to make durable.
    fn restore(
        &mut self,
        table: Table,
        key: Vec<u8>,
        old: Option<Vec<u8>>,
    ) -> Result<(), StoreError> {
        self.put(table, key, old)
    }
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

/// What [`claim_and_check`] found: the unit holds (its balance slots: key, before,
/// after), or is refused with this outcome.
enum Checked {
    Holds(Vec<(Vec<u8>, i128, i128)>),
    Refused(CommitOutcome),
}

/// Step 1 and 2 of [`apply_unit`]: writes the unit's claims (recording in `replaced` what
/// each write replaced, for the caller to put back if the unit is refused), then checks
/// that no id was held and that every floor holds after the postings.
fn claim_and_check(
    kv: &mut impl KvPut,
    unit: &Unit,
    replaced: &mut Vec<(Vec<u8>, Option<Vec<u8>>)>,
) -> Result<Checked, StoreError> {
    // 1. Claims. Once one id turns out held, the unit will not commit: the rest are only
    // read, so a retried batch (every unit a repeat) writes one claim per unit, not all.
    let mut existing = Vec::with_capacity(unit.claims.len());
    let mut refused = false;
    // A claim's value differs from the unit's other claims only by its digest, and a
    // payment's coins all share one: encoded once per run of equal digests.
    let mut encoded: Option<(ContentDigest, Vec<u8>)> = None;
    for claim in &unit.claims {
        let key = claim.id.key_bytes();
        let old = if refused {
            kv.get(Table::Claims, &key)?
        } else {
            let bytes = match &encoded {
                Some((digest, bytes)) if *digest == claim.digest => bytes,
                _ => {
                    let value = ExistingClaim {
                        claimant: unit.claimant.clone(),
                        claimed_at: unit.at,
                        digest: claim.digest,
                    };
                    let bytes =
                        codec::encode(&value).map_err(|e| corrupted("encoding a claim", e))?;
                    &encoded.insert((claim.digest, bytes)).1
                }
            };
            let old = kv.replace(Table::Claims, &key, bytes)?;
            refused = old.is_some();
            replaced.push((key, old.clone()));
            old
        };
        existing.push(
            old.map(|v| codec::decode::<ExistingClaim>(&v).map_err(|e| corrupted("claim", e)))
                .transpose()?,
        );
    }
    if refused {
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
            return Ok(Checked::Refused(CommitOutcome::Repeated {
                first_claimed_at,
            }));
        }
        let report = unit
            .claims
            .iter()
            .map(|c| c.id.clone())
            .zip(existing)
            .collect();
        return Ok(Checked::Refused(CommitOutcome::Conflict(report)));
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
            return Ok(Checked::Refused(CommitOutcome::InsufficientFunds {
                account: f.account.clone(),
                currency: f.currency,
                balance_after: after,
                min: f.min,
            }));
        }
    }

    Ok(Checked::Holds(balances))
}

/// Undoes [`claim_and_check`]'s writes: newest first, so each key ends as it was found.
fn put_back(
    kv: &mut impl KvPut,
    replaced: Vec<(Vec<u8>, Option<Vec<u8>>)>,
) -> Result<(), StoreError> {
    for (key, old) in replaced.into_iter().rev() {
        kv.restore(Table::Claims, key, old)?;
    }
    Ok(())
}

/// Checks and applies one unit; a unit that does not commit leaves nothing behind. The
/// caller has run [`Unit::validate`] (so no id is claimed twice in the unit).
///
/// Claims are written first, each write returning what it replaced: an id that was held
/// comes back with its holder. A unit refused after that (an id held, a floor broken, or
/// an error) puts every replaced value back before it returns, while the batch's writer
/// still holds the tables (redb's write transaction, the file store's overlay, the memory
/// store's write lock), so no read and no later unit ever sees its claims. Everything
/// else is written only once the outcome is `Committed`.
pub(crate) fn apply_unit(kv: &mut impl KvPut, unit: &Unit) -> Result<CommitOutcome, StoreError> {
    let mut replaced: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::with_capacity(unit.claims.len());
    let balances = match claim_and_check(kv, unit, &mut replaced) {
        Ok(Checked::Holds(balances)) => balances,
        Ok(Checked::Refused(outcome)) => {
            put_back(kv, replaced)?;
            return Ok(outcome);
        }
        Err(e) => {
            // The error is what the caller needs. Where the undo matters (the memory
            // store, which writes in place) it cannot fail; the others discard the batch.
            let _undone = put_back(kv, replaced);
            return Err(e);
        }
    };

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
        Some(v) => Err(unsupported_format(&v, FORMAT_VERSION)),
    }
}

/// The error for a stored format version `found` (u16 little-endian; `u16::MAX` if it is
/// not two bytes) that this release, which reads `supported`, does not read.
pub(crate) fn unsupported_format(found: &[u8], supported: u16) -> StoreError {
    StoreError::UnsupportedFormat {
        found: found.try_into().map(u16::from_le_bytes).unwrap_or(u16::MAX),
        supported,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Claimant;
    use crate::tables::{MemTables, Overlay};
    use scrip_tokens::{CoinSpendId, ContentDigest, MerchantId, Timestamp};

    fn claiming(merchant: u128, coins: &[u8]) -> Unit {
        coins.iter().fold(
            Unit::new(
                Claimant::Merchant(MerchantId(uuid::Uuid::from_u128(merchant))),
                Timestamp::from_unix_millis(1_767_225_600_000),
            ),
            |unit, n| {
                unit.claim(
                    ClaimId::Coin(CoinSpendId([*n; 32])),
                    ContentDigest::of(&[*n]),
                )
            },
        )
    }

    #[test]
    fn a_refused_unit_leaves_no_change_for_the_file_store_to_write() {
        let mut base = MemTables::default();
        assert_eq!(
            apply_unit(&mut base, &claiming(1, &[1])).unwrap(),
            CommitOutcome::Committed
        );
        let mut overlay = Overlay::new(&base);
        assert!(matches!(
            apply_unit(&mut overlay, &claiming(2, &[2, 1])).unwrap(),
            CommitOutcome::Conflict(_)
        ));
        assert!(matches!(
            apply_unit(&mut overlay, &claiming(1, &[1])).unwrap(),
            CommitOutcome::Repeated { .. }
        ));
        assert!(overlay.into_changes().is_empty());

        // A conflict on a claim made earlier in the same batch keeps that claim.
        let mut overlay = Overlay::new(&base);
        assert_eq!(
            apply_unit(&mut overlay, &claiming(3, &[3])).unwrap(),
            CommitOutcome::Committed
        );
        let committed = overlay.into_changes();
        let mut overlay = Overlay::new(&base);
        apply_unit(&mut overlay, &claiming(3, &[3])).unwrap();
        assert!(matches!(
            apply_unit(&mut overlay, &claiming(4, &[4, 3])).unwrap(),
            CommitOutcome::Conflict(_)
        ));
        assert_eq!(overlay.into_changes(), committed);
    }

    #[test]
    fn each_claim_is_stored_with_its_own_digest_when_digests_change_within_a_unit() {
        let digests = [1u8, 1, 2, 1, 3, 3];
        let unit = digests.iter().enumerate().fold(
            Unit::new(
                Claimant::Merchant(MerchantId(uuid::Uuid::from_u128(5))),
                Timestamp::from_unix_millis(1_767_225_600_000),
            ),
            |unit, (i, d)| {
                unit.claim(
                    ClaimId::Coin(CoinSpendId([i as u8 + 10; 32])),
                    ContentDigest::of(&[*d]),
                )
            },
        );
        let mut tables = MemTables::default();
        assert_eq!(
            apply_unit(&mut tables, &unit).unwrap(),
            CommitOutcome::Committed
        );
        let ids: Vec<ClaimId> = unit.claims.iter().map(|c| c.id.clone()).collect();
        let held = claims(&tables, &ids).unwrap();
        for ((held, claim), d) in held.iter().zip(&unit.claims).zip(digests) {
            let held = held.as_ref().unwrap();
            assert_eq!(held.digest, ContentDigest::of(&[d]));
            assert_eq!(held.digest, claim.digest);
            assert_eq!(held.claimant, unit.claimant);
        }
    }

    #[test]
    fn prefix_end_is_the_first_key_past_the_prefix() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[1, 0xFF]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xFF, 0xFF]), None);
        assert_eq!(successor(b"ab"), b"ab\0".to_vec());
    }
}
