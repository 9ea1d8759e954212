//! `RedbStore`'s claims index (store format 3): log-structured, so that a claim costs an
//! append instead of its own random B-tree leaf. The plan and the measurements that led
//! to it are in `stores/design/claims-index.md`.
//!
//! Everything lives in the one redb file, so a batch's claims commit atomically with the
//! rest of its unit, and redb's crash safety covers every step below:
//!
//! - **The log** (`claims-log-batches`): batch sequence number → the batch's claims as
//!   one block of entries, so a batch adds one B-tree entry however many claims it
//!   makes. Its claims are also held in memory ([`Layout::recent`], rebuilt by a scan at
//!   open), so that looking one up costs a hash probe. Format 2's log (`claims-log`, one
//!   entry per claim) is read at open and emptied by the next flush.
//! - **Runs** (`claims-blocks-<n>`): immutable sorted runs of claims, stored as blocks of
//!   just under 8 KiB ([`BLOCK_LEAF_BYTES`]; a block's first key → the block), so that
//!   writing a run costs a B-tree insert per block, not per claim. When the log holds
//!   [`IndexLimits::log_max`] claims it is written out as a new run in one transaction
//!   and emptied. Format 2's runs (`claims-run-<n>`) and format 1's `claims` table (run
//!   0) hold one table entry per claim; they are read as they are and merged away.
//! - **Filters** (`claims-filters`): each run's Bloom filter (10 bits per claim, 7 probes,
//!   about 1 % false positives), loaded at open, so that a fresh coin's lookup touches no
//!   run's tree in 99 cases out of 100.
//! - **Compaction**: when [`IndexLimits::fan_in`] runs share a level, they are merged
//!   into one run of the next level, [`IndexLimits::chunk`] claims per transaction,
//!   between batches (a batch waits for at most the upkeep its predecessor made due). The
//!   new run is invisible until a last, small transaction (its filter was written with
//!   its last chunk) names it in the manifest and deletes its inputs.
//! - **The manifest** (`meta/claims-manifest`): the live runs, newest first, and a
//!   generation number bumped by every change of the set of runs. A run table the
//!   manifest does not name is what an interrupted compaction left, deleted at open.
//!
//! Claims are never overwritten or deleted once committed, so runs need no tombstones
//! and merging them is a union. Readers pair their MVCC snapshot with the in-memory
//! layout of the same generation ([`ClaimsIndex::snapshot`], [`ClaimsIndex::commit_runs`]).

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::ops::{Bound, Range};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use redb::{
    ReadTransaction, ReadableTable, ReadableTableMetadata, TableDefinition, TableHandle,
    WriteTransaction,
};
use serde::{Deserialize, Serialize};
use siphasher::sip128::{Hasher128, SipHasher13};

use super::claim_map::ClaimMap;
use super::{backend, Bytes};
use crate::engine::{Pairs, FORMAT_VERSION, META_FORMAT};
use crate::{Result, StoreError};

/// The redb store's format: format 1's key layout and value encodings
/// ([`FORMAT_VERSION`]), with the claims in the log-structured index of this module, its
/// runs stored as blocks. Older files are migrated at open without rewriting a claim:
/// format 1's `claims` table (and scrip 0.1's, whose file carries no version) becomes run
/// 0, format 2's runs stay as they are; both hold one table entry per claim, are read as
/// such, and are merged into block runs by compaction. A release that reads only an
/// older format refuses a format 3 file instead of missing the claims it cannot read.
pub(crate) const REDB_FORMAT_VERSION: u16 = 3;
/// Format 2: the same index, every run one table entry per claim.
const ENTRY_RUNS_FORMAT_VERSION: u16 = 2;

/// Format 2's log, one entry per claim: read at open, emptied by the next flush.
const ENTRY_LOG: TableDefinition<'static, u64, Bytes> = TableDefinition::new("claims-log");
/// The log: one entry per committed batch, its claims as one block ([`put_block_entry`]).
const LOG: TableDefinition<'static, u64, Bytes> = TableDefinition::new("claims-log-batches");
const FILTERS: TableDefinition<'static, Bytes, Bytes> = TableDefinition::new("claims-filters");
/// Format 1's claims table, which format 2 keeps as run 0.
const LEGACY_RUN: &str = "claims";
/// Format 2's runs, one table entry per claim.
const ENTRY_RUN_PREFIX: &str = "claims-run-";
const BLOCK_RUN_PREFIX: &str = "claims-blocks-";
/// A block run's blocks close before their redb leaf (the block, its first key and
/// [`REDB_LEAF_HEADER`]) outgrows this: a lookup that a filter lets through reads one
/// block, and writing a run inserts one B-tree entry per block. redb gives a leaf a power
/// of two of its 4 KiB pages, so a leaf a byte over 8 KiB takes 16 KiB on disk, and is
/// zeroed and written whole by every flush and merge: blocks of 8 KiB of claims did that.
const BLOCK_LEAF_BYTES: usize = 8 * 1024;
/// What redb adds to a leaf that holds one pair: a 4-byte header and the key's and the
/// value's lengths (4 bytes each).
const REDB_LEAF_HEADER: usize = 12;
const META_MANIFEST: &[u8] = b"claims-manifest";
/// The manifest's generation alone, so that a reader checks it without decoding.
const META_GENERATION: &[u8] = b"claims-generation";

/// Bloom filter bits per claim and probes per lookup: about 1 % false positives.
const FILTER_BITS_PER_CLAIM: u64 = 10;
const FILTER_PROBES: u64 = 7;
/// How a filter's bits are found, recorded in the manifest: a filter read with another
/// scheme than it was written with would answer "absent" for claims it holds. Scheme 1:
/// SipHash-1-3 (128 bits, keyed by the file's salt) of the claim key, probe `i` at
/// `(h1 + i * (h2 | 1)) mod bits`, [`FILTER_PROBES`] probes (pinned by a known-answer
/// test). A release that changes any of it writes a new scheme number and rebuilds the
/// filters of older files.
const FILTER_SCHEME: u16 = 1;
/// Bytes of filter per stored value: whole words, so that the chunk, its 12-byte key and
/// [`REDB_LEAF_HEADER`] fit a 64 KiB leaf (see [`BLOCK_LEAF_BYTES`]). Readers join the
/// chunks in key order, whatever size they were written in.
const FILTER_CHUNK_BYTES: usize = 64 * 1024 - 32;

/// Sizes of the index's parts. The defaults suit an issuer; tests use tiny ones so that
/// every part of the index (flushes, compactions over several levels) runs.
#[derive(Clone, Copy, Debug)]
pub struct IndexLimits {
    /// Claims the log holds before it is written out as a run (its in-memory map takes
    /// about 150 bytes a claim).
    pub log_max: usize,
    /// Runs of one level merged into one of the next.
    pub fan_in: usize,
    /// Claims one compaction transaction copies.
    pub chunk: usize,
}

impl IndexLimits {
    /// The limits with each raised to the least that works.
    fn normalized(self) -> Self {
        IndexLimits {
            log_max: self.log_max.max(1),
            fan_in: self.fan_in.max(2),
            chunk: self.chunk.max(1),
        }
    }
}

impl Default for IndexLimits {
    fn default() -> Self {
        IndexLimits {
            log_max: 32 * 1024,
            fan_in: 4,
            chunk: 16 * 1024,
        }
    }
}

fn corrupted(what: &str) -> StoreError {
    StoreError::Corrupted(format!("claims index: {what}"))
}

fn encode<T: scrip_tokens::Message>(value: &T) -> Result<Vec<u8>> {
    scrip_tokens::codec::encode(value).map_err(|e| StoreError::Corrupted(e.to_string()))
}

/// The table of the run `meta` describes.
fn run_table_name(meta: &RunMeta) -> String {
    match meta.format {
        RunFormat::Entries if meta.id == 0 => LEGACY_RUN.to_string(),
        RunFormat::Entries => format!("{ENTRY_RUN_PREFIX}{}", meta.id),
        RunFormat::Blocks { .. } => block_run_name(meta.id),
    }
}

fn block_run_name(id: u64) -> String {
    format!("{BLOCK_RUN_PREFIX}{id}")
}

fn filter_key(run: u64, chunk: u32) -> [u8; 12] {
    let mut key = [0u8; 12];
    key[..8].copy_from_slice(&run.to_be_bytes());
    key[8..].copy_from_slice(&chunk.to_be_bytes());
    key
}

/// A format 2 log entry: key length (u16 LE), key, value.
#[cfg(test)]
fn log_entry(key: &[u8], value: &[u8]) -> Result<Vec<u8>> {
    let len =
        u16::try_from(key.len()).map_err(|_| StoreError::InvalidUnit("claim key too long"))?;
    let mut entry = Vec::with_capacity(2 + key.len() + value.len());
    entry.extend_from_slice(&len.to_le_bytes());
    entry.extend_from_slice(key);
    entry.extend_from_slice(value);
    Ok(entry)
}

fn split_log_entry(entry: &[u8]) -> Result<(&[u8], &[u8])> {
    let (len, rest) = entry
        .split_first_chunk::<2>()
        .ok_or_else(|| corrupted("log entry too short"))?;
    let len = usize::from(u16::from_le_bytes(*len));
    if rest.len() < len {
        return Err(corrupted("log entry shorter than its key"));
    }
    Ok(rest.split_at(len))
}

/// Appends a block entry: key length (u16 LE), value length (u32 LE), key, value.
fn put_block_entry(block: &mut Vec<u8>, key: &[u8], value: &[u8]) -> Result<()> {
    let key_len =
        u16::try_from(key.len()).map_err(|_| StoreError::InvalidUnit("claim key too long"))?;
    let value_len =
        u32::try_from(value.len()).map_err(|_| StoreError::InvalidUnit("claim value too long"))?;
    block.extend_from_slice(&key_len.to_le_bytes());
    block.extend_from_slice(&value_len.to_le_bytes());
    block.extend_from_slice(key);
    block.extend_from_slice(value);
    Ok(())
}

/// The block entry at `at`: its key's and value's ranges in `block`, and where the next
/// entry starts.
fn block_entry_at(block: &[u8], at: usize) -> Result<(Range<usize>, Range<usize>, usize)> {
    let header = block
        .get(at..)
        .and_then(|rest| rest.first_chunk::<6>())
        .ok_or_else(|| corrupted("a block entry's header"))?;
    let key_len = usize::from(u16::from_le_bytes([header[0], header[1]]));
    let value_len = u32::from_le_bytes([header[2], header[3], header[4], header[5]]);
    let key_start = at + 6;
    let value_start = key_start + key_len;
    let end = usize::try_from(value_len)
        .ok()
        .and_then(|len| value_start.checked_add(len))
        .filter(|end| *end <= block.len())
        .ok_or_else(|| corrupted("a block entry longer than its block"))?;
    Ok((key_start..value_start, value_start..end, end))
}

/// Calls `f` with each entry of `block`, in order; returns how many there were.
fn for_each_in_block(block: &[u8], mut f: impl FnMut(&[u8], &[u8]) -> Result<()>) -> Result<u64> {
    let (mut at, mut entries) = (0, 0u64);
    while at < block.len() {
        let (key, value, next) = block_entry_at(block, at)?;
        f(&block[key], &block[value])?;
        at = next;
        entries += 1;
    }
    Ok(entries)
}

/// Writes a sorted stream of claims as a block run: blocks of just under 8 KiB,
/// each stored under its first key. Keys must come strictly ascending.
struct BlockWriter {
    block: Vec<u8>,
    first: Vec<u8>,
    last: Vec<u8>,
    pushed: bool,
    blocks: u64,
}

impl BlockWriter {
    fn new() -> Self {
        BlockWriter {
            block: Vec::with_capacity(BLOCK_LEAF_BYTES),
            first: Vec::new(),
            last: Vec::new(),
            pushed: false,
            blocks: 0,
        }
    }

    fn push(
        &mut self,
        table: &mut redb::Table<'_, Bytes, Bytes>,
        key: &[u8],
        value: &[u8],
    ) -> Result<()> {
        if self.pushed && key <= self.last.as_slice() {
            return Err(corrupted("a run's claims out of order"));
        }
        let room = BLOCK_LEAF_BYTES.saturating_sub(REDB_LEAF_HEADER + self.first.len());
        if !self.block.is_empty() && self.block.len() + 6 + key.len() + value.len() > room {
            self.finish_block(table)?;
        }
        if self.block.is_empty() {
            self.first.clear();
            self.first.extend_from_slice(key);
        }
        put_block_entry(&mut self.block, key, value)?;
        self.last.clear();
        self.last.extend_from_slice(key);
        self.pushed = true;
        Ok(())
    }

    /// Stores the block being filled, if any (the next claim starts a new one).
    fn finish_block(&mut self, table: &mut redb::Table<'_, Bytes, Bytes>) -> Result<()> {
        if self.block.is_empty() {
            return Ok(());
        }
        let replaced = table
            .insert(self.first.as_slice(), self.block.as_slice())
            .map_err(backend)?
            .is_some();
        if replaced {
            return Err(corrupted("two blocks of a run under one key"));
        }
        self.blocks += 1;
        self.block.clear();
        Ok(())
    }
}

/// A run's table, read as its format says: one entry per claim, or blocks.
struct RunReader<T> {
    table: T,
    blocks: bool,
}

impl<T: ReadableTable<Bytes, Bytes>> RunReader<T> {
    fn new(table: T, format: &RunFormat) -> Self {
        RunReader {
            table,
            blocks: matches!(format, RunFormat::Blocks { .. }),
        }
    }

    /// The value under `key`, if the run holds it.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if !self.blocks {
            return Ok(self
                .table
                .get(key)
                .map_err(backend)?
                .map(|v| v.value().to_vec()));
        }
        let Some(item) = self
            .table
            .range::<&[u8]>(..=key)
            .map_err(backend)?
            .next_back()
        else {
            return Ok(None);
        };
        let (_, block) = item.map_err(backend)?;
        let block = block.value();
        let mut at = 0;
        while at < block.len() {
            let (k, v, next) = block_entry_at(block, at)?;
            match block[k].cmp(key) {
                std::cmp::Ordering::Less => at = next,
                std::cmp::Ordering::Equal => return Ok(Some(block[v].to_vec())),
                std::cmp::Ordering::Greater => return Ok(None),
            }
        }
        Ok(None)
    }

    /// The run's claims in key order, from `from` on.
    fn scan(&self, from: Bound<&[u8]>) -> Result<RunScan<'_>> {
        let source = if self.blocks {
            // The block that holds `from` starts at or before it.
            let start = match from {
                Bound::Included(key) | Bound::Excluded(key) => self
                    .table
                    .range::<&[u8]>(..=key)
                    .map_err(backend)?
                    .next_back()
                    .transpose()
                    .map_err(backend)?
                    .map(|(first, _)| first.value().to_vec()),
                Bound::Unbounded => None,
            };
            match start {
                Some(first) => self.table.range::<&[u8]>(first.as_slice()..),
                None => self.table.range::<&[u8]>(..),
            }
        } else {
            self.table.range::<&[u8]>((from, Bound::Unbounded))
        }
        .map_err(backend)?;
        Ok(RunScan {
            source,
            blocks: self.blocks,
            from: match from {
                Bound::Included(k) => Bound::Included(k.to_vec()),
                Bound::Excluded(k) => Bound::Excluded(k.to_vec()),
                Bound::Unbounded => Bound::Unbounded,
            },
            block: Vec::new(),
            at: 0,
            current: None,
        })
    }
}

/// A run's claims in key order ([`RunReader::scan`]). An entry run's claims are read
/// into the same buffer as a block's, one at a time.
struct RunScan<'a> {
    source: redb::Range<'a, Bytes, Bytes>,
    blocks: bool,
    /// Claims before this bound are skipped (in the first block read).
    from: Bound<Vec<u8>>,
    block: Vec<u8>,
    at: usize,
    /// The current claim's key and value in `block`, and where the next one starts.
    current: Option<(Range<usize>, Range<usize>, usize)>,
}

impl RunScan<'_> {
    /// The current claim, reading on as far as needed; `None` at the end of the run.
    fn peek(&mut self) -> Result<Option<(&[u8], &[u8])>> {
        while self.current.is_none() {
            if self.at >= self.block.len() {
                let Some(item) = self.source.next() else {
                    return Ok(None);
                };
                let (key, value) = item.map_err(backend)?;
                self.block.clear();
                self.at = 0;
                if self.blocks {
                    self.block.extend_from_slice(value.value());
                } else {
                    put_block_entry(&mut self.block, key.value(), value.value())?;
                }
            }
            let (k, v, next) = block_entry_at(&self.block, self.at)?;
            let before = match &self.from {
                Bound::Included(from) => self.block[k.clone()] < *from.as_slice(),
                Bound::Excluded(from) => self.block[k.clone()] <= *from.as_slice(),
                Bound::Unbounded => false,
            };
            if before {
                self.at = next;
            } else {
                self.from = Bound::Unbounded;
                self.current = Some((k, v, next));
            }
        }
        Ok(self.current())
    }

    /// The claim [`RunScan::peek`] last found, if it has not moved past it.
    fn current(&self) -> Option<(&[u8], &[u8])> {
        self.current
            .as_ref()
            .map(|(k, v, _)| (&self.block[k.clone()], &self.block[v.clone()]))
    }

    /// Moves past the current claim.
    fn advance(&mut self) {
        if let Some((_, _, next)) = self.current.take() {
            self.at = next;
        }
    }
}

/// The claim kinds (a claim key's first byte, [`ClaimId::key_bytes`]) the file holds at
/// least one claim of. A lookup of a claim whose kind the file has never held is answered
/// without touching the index. In a store that scrip 0.1 never wrote, that is every
/// coin's bare-id claim ([`ClaimId::LegacyCoinId`]), which the issuer reads beside each
/// spend id.
///
/// Sound because this process is the file's only writer while it holds the file (redb's
/// exclusive open): the kinds are read from the file at open, and again when the store
/// reopens it after a failed write (it was unlocked in between), and a batch marks its
/// claims' kinds before its transaction commits, so no read can see a claim whose kind is
/// unmarked. Kinds are never unmarked: a refused unit or a failed batch leaves its kinds
/// marked, which costs a lookup, never a missed claim.
///
/// [`ClaimId::key_bytes`]: crate::ClaimId::key_bytes
/// [`ClaimId::LegacyCoinId`]: crate::ClaimId::LegacyCoinId
#[derive(Debug, Default)]
pub(crate) struct ClaimKinds([AtomicU64; 4]);

impl ClaimKinds {
    fn slot(&self, kind: u8) -> (Option<&AtomicU64>, u64) {
        (self.0.get(usize::from(kind / 64)), 1u64 << (kind % 64))
    }

    pub(crate) fn mark(&self, kind: u8) {
        if let (Some(word), bit) = self.slot(kind) {
            word.fetch_or(bit, Ordering::Release);
        }
    }

    fn mark_key(&self, key: &[u8]) {
        if let Some(&kind) = key.first() {
            self.mark(kind);
        }
    }

    /// Marks every kind `other` holds.
    fn add(&self, other: &ClaimKinds) {
        for (word, theirs) in self.0.iter().zip(&other.0) {
            word.fetch_or(theirs.load(Ordering::Acquire), Ordering::Release);
        }
    }

    /// Whether the file may hold a claim under `key`.
    pub(crate) fn may_hold(&self, key: &[u8]) -> bool {
        let Some(&kind) = key.first() else {
            return true;
        };
        match self.slot(kind) {
            (Some(word), bit) => word.load(Ordering::Acquire) & bit != 0,
            (None, _) => true,
        }
    }

    /// Marks the kinds `run` holds: one seek per kind present, whatever the run's size.
    fn read<T: ReadableTable<Bytes, Bytes>>(&self, run: &RunReader<T>) -> Result<()> {
        let mut from: Vec<u8> = Vec::new();
        loop {
            let mut scan = run.scan(Bound::Included(from.as_slice()))?;
            let Some((key, _)) = scan.peek()? else {
                return Ok(());
            };
            let Some(&kind) = key.first() else {
                // An empty key is of no kind; go on with the kinds after it.
                from = vec![0];
                continue;
            };
            self.mark(kind);
            match kind.checked_add(1) {
                Some(next) => from = vec![next],
                None => return Ok(()),
            }
        }
    }
}

/// A claim key's two filter hashes, keyed by the file's salt (so that no one can choose
/// coins that defeat the filters of a file they have not seen).
#[derive(Clone, Copy)]
struct KeyHash {
    h1: u64,
    h2: u64,
}

impl KeyHash {
    fn of(salt: [u64; 2], key: &[u8]) -> Self {
        let mut hasher = SipHasher13::new_with_keys(salt[0], salt[1]);
        hasher.write(key);
        let hash = hasher.finish128();
        // Odd, so that no probe step is zero (every probe on one bit).
        KeyHash {
            h1: hash.h1,
            h2: hash.h2 | 1,
        }
    }
}

/// A run's Bloom filter.
struct Bloom {
    words: Vec<u64>,
}

impl Bloom {
    fn for_claims(claims: u64) -> Self {
        let bits = claims.saturating_mul(FILTER_BITS_PER_CLAIM).max(64);
        let words = usize::try_from(bits.div_ceil(64)).unwrap_or(usize::MAX / 64);
        Bloom {
            words: vec![0; words],
        }
    }

    fn bits(&self) -> u64 {
        (self.words.len() as u64) * 64
    }

    fn probes(&self, hash: KeyHash) -> impl Iterator<Item = (usize, u64)> {
        let bits = self.bits();
        (0..FILTER_PROBES).map(move |i| {
            let bit = hash.h1.wrapping_add(i.wrapping_mul(hash.h2)) % bits;
            ((bit / 64) as usize, 1u64 << (bit % 64))
        })
    }

    fn insert(&mut self, hash: KeyHash) {
        for (word, mask) in self.probes(hash) {
            if let Some(w) = self.words.get_mut(word) {
                *w |= mask;
            }
        }
    }

    fn may_contain(&self, hash: KeyHash) -> bool {
        self.probes(hash)
            .all(|(word, mask)| self.words.get(word).is_some_and(|w| w & mask != 0))
    }

    fn write(&self, run: u64, filters: &mut redb::Table<'_, Bytes, Bytes>) -> Result<()> {
        let bytes: Vec<u8> = self.words.iter().flat_map(|w| w.to_le_bytes()).collect();
        for (n, chunk) in bytes.chunks(FILTER_CHUNK_BYTES).enumerate() {
            let n = u32::try_from(n).map_err(|_| corrupted("filter too large"))?;
            filters
                .insert(filter_key(run, n).as_slice(), chunk)
                .map_err(backend)?;
        }
        Ok(())
    }

    /// The stored chunks of run `run`'s filter, in order.
    fn chunks<'t>(
        run: u64,
        filters: &'t impl ReadableTable<Bytes, Bytes>,
    ) -> Result<redb::Range<'t, Bytes, Bytes>> {
        let (first, last) = (filter_key(run, 0), filter_key(run, u32::MAX));
        filters
            .range::<&[u8]>(first.as_slice()..=last.as_slice())
            .map_err(backend)
    }

    fn read(run: &RunMeta, filters: &impl ReadableTable<Bytes, Bytes>) -> Result<Self> {
        let mut bytes = Vec::new();
        for item in Bloom::chunks(run.id, filters)? {
            let (_, chunk) = item.map_err(backend)?;
            bytes.extend_from_slice(chunk.value());
        }
        if run.filter_bits < 64
            || !run.filter_bits.is_multiple_of(64)
            || bytes.len() as u64 != run.filter_bits / 8
        {
            return Err(corrupted("a run's filter does not have its recorded size"));
        }
        let words = bytes
            .chunks_exact(8)
            .map(|w| {
                w.try_into()
                    .map(u64::from_le_bytes)
                    .map_err(|_| corrupted("filter word"))
            })
            .collect::<Result<Vec<u64>>>()?;
        Ok(Bloom { words })
    }

    fn delete(run: u64, filters: &mut redb::Table<'_, Bytes, Bytes>) -> Result<()> {
        let keys: Vec<Vec<u8>> = Bloom::chunks(run, filters)?
            .map(|item| item.map(|(k, _)| k.value().to_vec()).map_err(backend))
            .collect::<Result<_>>()?;
        for key in keys {
            filters.remove(key.as_slice()).map_err(backend)?;
        }
        Ok(())
    }
}

/// How a run's table holds its claims.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
enum RunFormat {
    /// One table entry per claim: format 2's runs and format 1's `claims` table. Read,
    /// never written.
    Entries,
    /// Blocks of claims, each under its first key ([`BlockWriter`]).
    Blocks { blocks: u64 },
}

/// One run, as the manifest records it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
struct RunMeta {
    id: u64,
    level: u8,
    claims: u64,
    filter_bits: u64,
    format: RunFormat,
}

impl RunMeta {
    /// The entries the run's table holds.
    fn table_entries(&self) -> u64 {
        match self.format {
            RunFormat::Entries => self.claims,
            RunFormat::Blocks { blocks } => blocks,
        }
    }
}

/// Format 2's manifest, migrated at open ([`Manifest::from_format_2`]).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct ManifestV1 {
    filter_scheme: u16,
    salt: [u64; 2],
    generation: u64,
    next_run: u64,
    runs: Vec<RunMetaV1>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct RunMetaV1 {
    id: u64,
    level: u8,
    claims: u64,
    filter_bits: u64,
}

impl scrip_tokens::Message for ManifestV1 {
    const TAG: &'static str = "scrip/store/claims-manifest/v1";
    const VERSION: u16 = 1;
}

/// The live runs and the file's filter salt.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Manifest {
    /// [`FILTER_SCHEME`] when the filters were written.
    filter_scheme: u16,
    salt: [u64; 2],
    generation: u64,
    /// The id the next run will get.
    next_run: u64,
    /// Newest first.
    runs: Vec<RunMeta>,
}

impl Manifest {
    /// Format 2's manifest: the same runs, each one table entry per claim.
    fn from_format_2(old: ManifestV1) -> Self {
        Manifest {
            filter_scheme: old.filter_scheme,
            salt: old.salt,
            generation: old.generation,
            next_run: old.next_run,
            runs: old
                .runs
                .into_iter()
                .map(|r| RunMeta {
                    id: r.id,
                    level: r.level,
                    claims: r.claims,
                    filter_bits: r.filter_bits,
                    format: RunFormat::Entries,
                })
                .collect(),
        }
    }

    /// Refuses a manifest this release cannot use safely: another filter scheme, or
    /// numbers no writer of this format produces (duplicate runs, an id at or past the
    /// next one, an empty run, a filter of no bits).
    fn validate(&self) -> Result<()> {
        if self.filter_scheme != FILTER_SCHEME {
            return Err(StoreError::UnsupportedFormat {
                found: self.filter_scheme,
                supported: FILTER_SCHEME,
            });
        }
        if self.generation == 0 {
            return Err(corrupted("manifest generation 0"));
        }
        for (i, run) in self.runs.iter().enumerate() {
            if run.id >= self.next_run || self.runs[..i].iter().any(|r| r.id == run.id) {
                return Err(corrupted("manifest run ids"));
            }
            // A filter has at least 10 bits a claim, and its size is checked against the
            // file when it is read, so no count here can exceed what the file holds.
            let least_bits = run.claims.checked_mul(FILTER_BITS_PER_CLAIM);
            let blocks_fit = match run.format {
                RunFormat::Entries => true,
                RunFormat::Blocks { blocks } => blocks >= 1 && blocks <= run.claims,
            };
            if run.claims == 0
                || !blocks_fit
                || run.filter_bits < 64
                || !run.filter_bits.is_multiple_of(64)
                || least_bits.is_none_or(|least| least > run.filter_bits)
            {
                return Err(corrupted("manifest run sizes"));
            }
        }
        Ok(())
    }
}

impl scrip_tokens::Message for Manifest {
    const TAG: &'static str = "scrip/store/claims-manifest/v1";
    // The codec refuses other versions: a later layout migrates instead of misreading.
    // Version 2 (store format 3) records each run's format.
    const VERSION: u16 = 2;
}

/// A run in memory: what the manifest says of it, and its filter.
struct Run {
    meta: RunMeta,
    name: String,
    filter: Bloom,
}

/// Committed claims still in the log, by key.
type Recent = RwLock<ClaimMap>;

/// What a lookup consults, of one generation of the manifest.
pub(crate) struct Layout {
    generation: u64,
    salt: [u64; 2],
    /// The log's committed claims. Shared by the layouts of one log: a compaction does
    /// not change it, a flush starts a new one.
    recent: Arc<Recent>,
    /// Newest first.
    runs: Vec<Arc<Run>>,
}

impl Layout {
    /// Claims in the log.
    fn log_len(&self) -> Result<usize> {
        Ok(self.recent.read().map_err(|_| StoreError::Poisoned)?.len())
    }

    /// The claim under `key`: the log first, then each run whose filter may hold it
    /// (`run_get(i, key)` reads run `i`'s table).
    fn find(
        &self,
        key: &[u8],
        key_hash: u64,
        run_get: impl Fn(usize, &[u8]) -> Result<Option<Vec<u8>>>,
    ) -> Result<Option<Vec<u8>>> {
        if let Some(value) = self
            .recent
            .read()
            .map_err(|_| StoreError::Poisoned)?
            .get(key_hash, key)
        {
            return Ok(Some(value.to_vec()));
        }
        if self.runs.is_empty() {
            return Ok(None);
        }
        let hash = KeyHash::of(self.salt, key);
        for (i, run) in self.runs.iter().enumerate() {
            if run.filter.may_contain(hash) {
                if let Some(value) = run_get(i, key)? {
                    return Ok(Some(value));
                }
            }
        }
        Ok(None)
    }

    /// Claims with `start <= key < end`, ascending, at most `limit`: the engine never
    /// scans claims, but the answer is right if something does. `extra` (a write
    /// transaction's own claims) comes first.
    fn range<T: ReadableTable<Bytes, Bytes>>(
        &self,
        runs: &[RunReader<T>],
        extra: impl Iterator<Item = (Vec<u8>, Vec<u8>)>,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Pairs> {
        let within = |k: &[u8]| k >= start && end.is_none_or(|end| k < end);
        let mut found: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        for (k, v) in extra.filter(|(k, _)| within(k)) {
            found.entry(k).or_insert(v);
        }
        for (_, k, v) in self
            .recent
            .read()
            .map_err(|_| StoreError::Poisoned)?
            .iter()
            .filter(|(_, k, _)| within(k))
        {
            found.entry(k.to_vec()).or_insert_with(|| v.to_vec());
        }
        for run in runs {
            let mut scan = run.scan(Bound::Included(start))?;
            let mut taken = 0;
            while taken < limit {
                let Some((k, v)) = scan.peek()? else {
                    break;
                };
                if !within(k) {
                    break;
                }
                found.entry(k.to_vec()).or_insert_with(|| v.to_vec());
                taken += 1;
                scan.advance();
            }
        }
        Ok(found.into_iter().take(limit).collect())
    }
}

/// The index as readers and the writer share it: the claim kinds and the current layout.
pub(crate) struct ClaimsIndex {
    pub(crate) kinds: ClaimKinds,
    layout: RwLock<Arc<Layout>>,
}

impl ClaimsIndex {
    fn layout(&self) -> Result<Arc<Layout>> {
        Ok(Arc::clone(
            &*self.layout.read().unwrap_or_else(PoisonError::into_inner),
        ))
    }

    /// Commits `txn`, a change of runs, and publishes `layout`, its result, as one step
    /// for readers: the layout's lock is held across both, so a reader that begins its
    /// snapshot under the lock ([`ClaimsIndex::snapshot`]) gets the layout of the same
    /// generation. Nothing that can fail comes after the commit.
    fn commit_runs(&self, txn: WriteTransaction, layout: Layout) -> Result<()> {
        // The lock guards a pointer swap, never left half done: a panic elsewhere while
        // it was held (in redb's commit) does not make the layout unusable.
        let mut current = self.layout.write().unwrap_or_else(PoisonError::into_inner);
        txn.commit().map_err(backend)?;
        *current = Arc::new(layout);
        Ok(())
    }

    /// Begins a read snapshot (`begin`) and takes the layout of its generation. Waits
    /// only while a change of runs commits (see [`ClaimsIndex::commit_runs`]).
    pub(crate) fn snapshot<T>(
        &self,
        begin: impl FnOnce() -> Result<T>,
    ) -> Result<(T, Arc<Layout>)> {
        let current = self.layout.read().unwrap_or_else(PoisonError::into_inner);
        let snapshot = begin()?;
        Ok((snapshot, Arc::clone(&current)))
    }

    /// The live runs, newest first: (level, claims).
    #[cfg(test)]
    pub(crate) fn layout_for_tests(&self) -> Vec<(u8, u64)> {
        self.layout()
            .map(|l| {
                l.runs
                    .iter()
                    .map(|r| (r.meta.level, r.meta.claims))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Takes in what `loaded` (the index loaded again from the file) holds.
    pub(crate) fn replace_with(&self, loaded: ClaimsIndex) -> Result<()> {
        self.kinds.add(&loaded.kinds);
        let layout = loaded
            .layout
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        *self.layout.write().unwrap_or_else(PoisonError::into_inner) = layout;
        Ok(())
    }

    /// Makes a committed batch's claims visible (after its transaction committed).
    pub(crate) fn publish_claims(&self, staged: &StagedClaims) -> Result<()> {
        if staged.claims.is_empty() {
            return Ok(());
        }
        let layout = self.layout()?;
        let mut recent = layout.recent.write().map_err(|_| StoreError::Poisoned)?;
        recent.extend_from(&staged.claims)?;
        Ok(())
    }
}

/// A compaction under way: `inputs` (ids, newest first, all of `level - 1`) are being
/// merged into run `output`, every key up to `after` written already. Kept in memory
/// only: after a restart the partial output is deleted and the merge starts again.
struct Compaction {
    /// Every input copied and the output's filter written (by an earlier transaction, so
    /// that the last one, which readers wait for, writes little).
    copied: bool,
    inputs: Vec<u64>,
    level: u8,
    output: u64,
    after: Option<Vec<u8>>,
    written: u64,
    /// Blocks of the output written so far.
    blocks: u64,
    filter: Bloom,
}

/// What only the writer thread keeps: the manifest as committed, the log's next sequence
/// number, and the compactions under way (at most one per level, lowest level first, so
/// that a long merge of large runs does not hold up the merging of small ones).
pub(crate) struct IndexWriter {
    manifest: Manifest,
    next_seq: u64,
    compactions: Vec<Compaction>,
    limits: IndexLimits,
    /// Claims the upkeep owes copies of: every committed claim is copied about once per
    /// level over its life, so each batch adds its claims times the levels, and
    /// [`IndexWriter::upkeep`] works until it is paid. That keeps the runs few however
    /// the batches and the limits compare.
    debt: u64,
    /// The last committed batch's stage, for the next batch to stage its claims in.
    stage: ClaimMap,
}

/// A stage with more slots than this (a batch of over 40 Ki claims) is not kept for the
/// next batch: the memory of one rare huge batch is not held for good.
const STAGE_SLOTS_KEPT: usize = 64 * 1024;

/// A fresh random salt for a new file's filters.
fn fresh_salt() -> [u64; 2] {
    // `RandomState` is seeded from the operating system's randomness.
    let state = std::collections::hash_map::RandomState::new();
    [state.hash_one(0x5c21_u64), state.hash_one(0xc1a1_u64)]
}

/// The smallest level whose runs hold at least `claims` (a log holds `log_max`, level
/// `n + 1` runs `fan_in` times those of level `n`).
fn level_for(claims: u64, limits: IndexLimits) -> u8 {
    let mut capacity = limits.log_max.max(1) as u64;
    let fan_in = limits.fan_in.max(2) as u64;
    let mut level = 0u8;
    while claims > capacity && level < u8::MAX {
        capacity = capacity.saturating_mul(fan_in);
        level += 1;
    }
    level
}

fn read_meta(meta: &impl ReadableTable<Bytes, Bytes>, key: &[u8]) -> Result<Option<Vec<u8>>> {
    Ok(meta.get(key).map_err(backend)?.map(|v| v.value().to_vec()))
}

fn write_manifest(meta: &mut redb::Table<'_, Bytes, Bytes>, manifest: &Manifest) -> Result<()> {
    meta.insert(META_MANIFEST, encode(manifest)?.as_slice())
        .map_err(backend)?;
    meta.insert(
        META_GENERATION,
        manifest.generation.to_le_bytes().as_slice(),
    )
    .map_err(backend)?;
    Ok(())
}

/// The generation a read snapshot's manifest has.
pub(crate) fn snapshot_generation(meta: &impl ReadableTable<Bytes, Bytes>) -> Result<u64> {
    let raw = read_meta(meta, META_GENERATION)?.ok_or_else(|| corrupted("no generation"))?;
    let raw: [u8; 8] = raw
        .as_slice()
        .try_into()
        .map_err(|_| corrupted("generation is not 8 bytes"))?;
    Ok(u64::from_le_bytes(raw))
}

/// Opens the index of the file `txn` writes to: checks (or migrates) the store format,
/// deletes what an interrupted compaction left, loads the filters and the log. Run in the
/// store's first write transaction, and again after a reopen.
pub(crate) fn load(
    txn: &WriteTransaction,
    meta_table: TableDefinition<'static, Bytes, Bytes>,
    limits: IndexLimits,
) -> Result<(ClaimsIndex, IndexWriter)> {
    let limits = limits.normalized();
    let mut meta = txn.open_table(meta_table).map_err(backend)?;
    let format = read_meta(&meta, META_FORMAT)?;
    let manifest = match format {
        None => migrate(txn, &mut meta, limits)?,
        Some(v) if v.as_slice() == FORMAT_VERSION.to_le_bytes() => migrate(txn, &mut meta, limits)?,
        Some(v) if v.as_slice() == ENTRY_RUNS_FORMAT_VERSION.to_le_bytes() => {
            // Format 2: its runs stay as they are, read entry by entry until compaction
            // merges them into block runs. Only the manifest and the format change.
            let raw = read_meta(&meta, META_MANIFEST)?.ok_or_else(|| corrupted("no manifest"))?;
            let old = scrip_tokens::codec::decode::<ManifestV1>(&raw)
                .map_err(|e| corrupted(&format!("manifest: {e}")))?;
            let manifest = Manifest::from_format_2(old);
            manifest.validate()?;
            write_manifest(&mut meta, &manifest)?;
            meta.insert(META_FORMAT, REDB_FORMAT_VERSION.to_le_bytes().as_slice())
                .map_err(backend)?;
            manifest
        }
        Some(v) if v.as_slice() == REDB_FORMAT_VERSION.to_le_bytes() => {
            let raw = read_meta(&meta, META_MANIFEST)?.ok_or_else(|| corrupted("no manifest"))?;
            let manifest = scrip_tokens::codec::decode::<Manifest>(&raw)
                .map_err(|e| corrupted(&format!("manifest: {e}")))?;
            manifest.validate()?;
            manifest
        }
        Some(v) => return Err(crate::engine::unsupported_format(&v, REDB_FORMAT_VERSION)),
    };
    drop(meta);
    remove_leftovers(txn, &manifest)?;

    let kinds = ClaimKinds::default();
    let filters = txn.open_table(FILTERS).map_err(backend)?;
    let mut runs = Vec::with_capacity(manifest.runs.len());
    for meta in &manifest.runs {
        let name = run_table_name(meta);
        let table = open_run(txn, &name)?;
        if table.len().map_err(backend)? != meta.table_entries() {
            return Err(corrupted(
                "a run does not hold the claims the manifest says",
            ));
        }
        kinds.read(&RunReader::new(table, &meta.format))?;
        runs.push(Arc::new(Run {
            meta: meta.clone(),
            filter: Bloom::read(meta, &filters)?,
            name,
        }));
    }
    drop(filters);

    let mut recent = ClaimMap::new();
    let (_, next_seq) = read_log(txn, |key, value| {
        kinds.mark_key(key);
        recent.insert(ClaimMap::hash(key), key, value)?;
        Ok(())
    })?;
    let layout = Layout {
        generation: manifest.generation,
        salt: manifest.salt,
        recent: Arc::new(RwLock::new(recent)),
        runs,
    };
    Ok((
        ClaimsIndex {
            kinds,
            layout: RwLock::new(Arc::new(layout)),
        },
        IndexWriter {
            manifest,
            next_seq,
            compactions: Vec::new(),
            limits,
            debt: 0,
            stage: ClaimMap::new(),
        },
    ))
}

/// Format 1 (or scrip 0.1's unversioned file) to format 3: the `claims` table, if it
/// holds anything, becomes run 0 (its filter built by one scan); nothing is rewritten.
fn migrate(
    txn: &WriteTransaction,
    meta: &mut redb::Table<'_, Bytes, Bytes>,
    limits: IndexLimits,
) -> Result<Manifest> {
    // A file with any part of the index is of format 2 or 3 whatever its format key
    // says: migrating it would drop its runs.
    let index_tables = txn.list_tables().map_err(backend)?.any(|t| {
        let name = t.name();
        name == LOG.name()
            || name == ENTRY_LOG.name()
            || name == FILTERS.name()
            || name.starts_with(ENTRY_RUN_PREFIX)
            || name.starts_with(BLOCK_RUN_PREFIX)
    });
    if index_tables || read_meta(meta, META_MANIFEST)?.is_some() {
        return Err(corrupted("a claims index in a file that says it has none"));
    }
    let salt = fresh_salt();
    let mut runs = Vec::new();
    let legacy = TableDefinition::<Bytes, Bytes>::new(LEGACY_RUN);
    let has_legacy = txn
        .list_tables()
        .map_err(backend)?
        .any(|t| t.name() == LEGACY_RUN);
    if has_legacy {
        let table = txn.open_table(legacy).map_err(backend)?;
        let claims = table.len().map_err(backend)?;
        if claims > 0 {
            let mut filter = Bloom::for_claims(claims);
            for item in table.iter().map_err(backend)? {
                let (key, _) = item.map_err(backend)?;
                filter.insert(KeyHash::of(salt, key.value()));
            }
            let mut filters = txn.open_table(FILTERS).map_err(backend)?;
            filter.write(0, &mut filters)?;
            runs.push(RunMeta {
                id: 0,
                level: level_for(claims, limits),
                claims,
                filter_bits: filter.bits(),
                format: RunFormat::Entries,
            });
        }
    }
    let manifest = Manifest {
        filter_scheme: FILTER_SCHEME,
        salt,
        generation: 1,
        next_run: 1,
        runs,
    };
    write_manifest(meta, &manifest)?;
    meta.insert(META_FORMAT, REDB_FORMAT_VERSION.to_le_bytes().as_slice())
        .map_err(backend)?;
    Ok(manifest)
}

/// Calls `f` with every claim the log holds (format 2's log of one entry per claim, then
/// the batches). Returns how many there were and the sequence number after the last batch.
fn read_log(
    txn: &WriteTransaction,
    mut f: impl FnMut(&[u8], &[u8]) -> Result<()>,
) -> Result<(u64, u64)> {
    let mut claims = 0u64;
    for item in txn
        .open_table(ENTRY_LOG)
        .map_err(backend)?
        .iter()
        .map_err(backend)?
    {
        let (_, entry) = item.map_err(backend)?;
        let (key, value) = split_log_entry(entry.value())?;
        f(key, value)?;
        claims += 1;
    }
    let mut next_seq = 0;
    for item in txn
        .open_table(LOG)
        .map_err(backend)?
        .iter()
        .map_err(backend)?
    {
        let (seq, batch) = item.map_err(backend)?;
        claims += for_each_in_block(batch.value(), &mut f)?;
        next_seq = seq
            .value()
            .checked_add(1)
            .ok_or_else(|| corrupted("log sequence exhausted"))?;
    }
    Ok((claims, next_seq))
}

/// Opens a run the manifest names, in a write transaction, where opening a missing table
/// would create it empty: a run is never empty, so an empty one is a run that is missing.
fn open_run<'txn>(
    txn: &'txn WriteTransaction,
    name: &str,
) -> Result<redb::Table<'txn, Bytes, Bytes>> {
    let table = txn
        .open_table(TableDefinition::<Bytes, Bytes>::new(name))
        .map_err(backend)?;
    if table.is_empty().map_err(backend)? {
        return Err(corrupted("a run the manifest names is missing"));
    }
    Ok(table)
}

/// Deletes the run tables and filters the manifest does not name: an interrupted
/// compaction's output. Refuses a `claims` table that holds claims the manifest does not
/// know of (only a format 1 release could have written them, and it refuses this file).
fn remove_leftovers(txn: &WriteTransaction, manifest: &Manifest) -> Result<()> {
    let live = |id: u64| manifest.runs.iter().any(|r| r.id == id);
    let live_name = |name: &str| manifest.runs.iter().any(|r| run_table_name(r) == name);
    let names: Vec<String> = txn
        .list_tables()
        .map_err(backend)?
        .map(|t| t.name().to_string())
        .collect();
    for name in names {
        let is_run = name == LEGACY_RUN
            || [ENTRY_RUN_PREFIX, BLOCK_RUN_PREFIX].iter().any(|prefix| {
                name.strip_prefix(prefix)
                    .is_some_and(|id| id.parse::<u64>().is_ok())
            });
        if !is_run || live_name(&name) {
            continue;
        }
        let definition = TableDefinition::<Bytes, Bytes>::new(&name);
        if name == LEGACY_RUN
            && !txn
                .open_table(definition)
                .map_err(backend)?
                .is_empty()
                .map_err(backend)?
        {
            return Err(corrupted("the claims table holds claims outside the index"));
        }
        txn.delete_table(definition).map_err(backend)?;
    }
    let mut filters = txn.open_table(FILTERS).map_err(backend)?;
    let mut dead = Vec::new();
    for item in filters.iter().map_err(backend)? {
        let (key, _) = item.map_err(backend)?;
        let id = key
            .value()
            .first_chunk::<8>()
            .map(|b| u64::from_be_bytes(*b))
            .ok_or_else(|| corrupted("a filter key"))?;
        if !live(id) && dead.last() != Some(&id) {
            dead.push(id);
        }
    }
    for id in dead {
        Bloom::delete(id, &mut filters)?;
    }
    Ok(())
}

/// A batch's claims, staged in its write transaction.
pub(crate) struct StagedClaims {
    claims: ClaimMap,
    next_seq: u64,
}

/// Point and range reads of the claims, in a batch's write transaction or a read.
pub(crate) trait ClaimsView {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;
    fn range(&self, start: &[u8], end: Option<&[u8]>, limit: usize) -> Result<Pairs>;
}

impl ClaimsView for ClaimsWrite<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.get_hashed(key, ClaimMap::hash(key))
    }

    fn range(&self, start: &[u8], end: Option<&[u8]>, limit: usize) -> Result<Pairs> {
        let staged = self.staged.iter().map(|(_, k, v)| (k.to_vec(), v.to_vec()));
        self.layout.range(&self.runs, staged, start, end, limit)
    }
}

impl ClaimsWrite<'_> {
    /// [`ClaimsView::get`] with the key's [`ClaimMap::hash`] already known.
    fn get_hashed(&self, key: &[u8], key_hash: u64) -> Result<Option<Vec<u8>>> {
        if !self.index.kinds.may_hold(key) {
            return Ok(None);
        }
        if let Some(value) = self.staged.get(key_hash, key) {
            return Ok(Some(value.to_vec()));
        }
        self.layout.find(key, key_hash, |i, key| {
            self.runs
                .get(i)
                .ok_or_else(|| corrupted("run not open"))?
                .get(key)
        })
    }
}

impl ClaimsView for ClaimsRead {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if !self.index.kinds.may_hold(key) {
            return Ok(None);
        }
        self.layout.find(key, ClaimMap::hash(key), |i, key| {
            self.runs
                .get(i)
                .ok_or_else(|| corrupted("run not open"))?
                .get(key)
        })
    }

    fn range(&self, start: &[u8], end: Option<&[u8]>, limit: usize) -> Result<Pairs> {
        self.layout
            .range(&self.runs, std::iter::empty(), start, end, limit)
    }
}

/// The index inside a batch's write transaction.
pub(crate) struct ClaimsWrite<'txn> {
    index: Arc<ClaimsIndex>,
    layout: Arc<Layout>,
    log: redb::Table<'txn, u64, Bytes>,
    runs: Vec<RunReader<redb::Table<'txn, Bytes, Bytes>>>,
    /// This transaction's claims, logged by [`ClaimsWrite::finish`].
    staged: ClaimMap,
    next_seq: u64,
}

impl<'txn> ClaimsWrite<'txn> {
    /// The index in `txn`, staging the batch's claims in `stage`, emptied first (one an
    /// earlier batch used keeps its memory, see [`IndexWriter::take_stage`]).
    pub(crate) fn open(
        txn: &'txn WriteTransaction,
        index: Arc<ClaimsIndex>,
        next_seq: u64,
        mut stage: ClaimMap,
    ) -> Result<Self> {
        stage.clear();
        let layout = index.layout()?;
        let runs = layout
            .runs
            .iter()
            .map(|run| Ok(RunReader::new(open_run(txn, &run.name)?, &run.meta.format)))
            .collect::<Result<Vec<_>>>()?;
        let log = txn.open_table(LOG).map_err(backend)?;
        // Past every entry the log holds, whatever the caller believes: an entry
        // overwritten would be a claim lost at the next load.
        let after_last = match log.last().map_err(backend)? {
            Some((seq, _)) => seq
                .value()
                .checked_add(1)
                .ok_or_else(|| corrupted("log sequence exhausted"))?,
            None => 0,
        };
        Ok(ClaimsWrite {
            index,
            layout,
            log,
            runs,
            staged: stage,
            next_seq: next_seq.max(after_last),
        })
    }

    /// Claims `key` unless it is held, and returns its holder if it is (then nothing is
    /// written: claims are never overwritten, and the caller undoes a claim it refuses).
    pub(crate) fn claim(&mut self, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>> {
        let key_hash = ClaimMap::hash(key);
        if let Some(held) = self.get_hashed(key, key_hash)? {
            return Ok(Some(held));
        }
        // Refuses a key or value too long for a log entry now, before the unit goes on.
        self.staged.insert(key_hash, key, value)?;
        Ok(None)
    }

    /// Undoes this transaction's claim of `key`, if it made one.
    pub(crate) fn unclaim(&mut self, key: &[u8]) -> Result<()> {
        self.staged.remove(ClaimMap::hash(key), key);
        Ok(())
    }

    /// Logs this transaction's claims, as one entry, and returns them, to publish once the
    /// transaction commits. Must come before the commit: claims not logged here are not
    /// written at all.
    pub(crate) fn finish(mut self) -> Result<StagedClaims> {
        if self.staged.is_empty() {
            return Ok(StagedClaims {
                claims: self.staged,
                next_seq: self.next_seq,
            });
        }
        // In key order: the entry is then the same for the same claims, whatever order
        // the units claimed them in.
        let batch = {
            let claims = self.staged.sorted();
            let size = claims.iter().map(|(k, v)| 6 + k.len() + v.len()).sum();
            let mut batch = Vec::with_capacity(size);
            for (key, value) in &claims {
                put_block_entry(&mut batch, key, value)?;
            }
            batch
        };
        let seq = self.next_seq;
        let replaced = self
            .log
            .insert(seq, batch.as_slice())
            .map_err(backend)?
            .is_some();
        if replaced {
            return Err(corrupted("a log entry would be overwritten"));
        }
        Ok(StagedClaims {
            claims: self.staged,
            next_seq: seq
                .checked_add(1)
                .ok_or_else(|| corrupted("log sequence exhausted"))?,
        })
    }
}

/// The index inside a read transaction.
pub(crate) struct ClaimsRead {
    index: Arc<ClaimsIndex>,
    layout: Arc<Layout>,
    runs: Vec<RunReader<redb::ReadOnlyTable<Bytes, Bytes>>>,
}

impl ClaimsRead {
    /// The index as the snapshot `txn` sees it: `layout` was taken with the snapshot
    /// ([`ClaimsIndex::snapshot`]), so its generation is the snapshot manifest's; a
    /// mismatch means the file changed behind the store's back.
    pub(crate) fn open(
        txn: &ReadTransaction,
        index: &Arc<ClaimsIndex>,
        layout: Arc<Layout>,
        snapshot_generation: u64,
    ) -> Result<Self> {
        if layout.generation != snapshot_generation {
            return Err(corrupted("the snapshot and the index in memory differ"));
        }
        let runs = layout
            .runs
            .iter()
            .map(|run| {
                txn.open_table(TableDefinition::<Bytes, Bytes>::new(&run.name))
                    .map(|table| RunReader::new(table, &run.meta.format))
                    .map_err(backend)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(ClaimsRead {
            index: Arc::clone(index),
            layout,
            runs,
        })
    }
}

impl IndexWriter {
    /// The log sequence number the next batch starts at.
    pub(crate) fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// A map for the next batch to stage its claims in ([`ClaimsWrite::open`] empties
    /// it): the last committed batch's, which keeps its memory.
    pub(crate) fn take_stage(&mut self) -> ClaimMap {
        std::mem::take(&mut self.stage)
    }

    /// Refuses a batch while the log holds four times [`IndexLimits::log_max`] claims:
    /// its flush keeps failing (a full disk), and the log's memory must stay bounded.
    pub(crate) fn check_room(&self, index: &ClaimsIndex) -> Result<()> {
        if index.layout()?.log_len()? >= self.limits.log_max.saturating_mul(4) {
            return Err(StoreError::io(
                "writing the claims log out (it is full and its flush keeps failing)",
                std::io::ErrorKind::StorageFull.into(),
            ));
        }
        Ok(())
    }

    /// Takes in a committed batch's claims.
    pub(crate) fn committed(&mut self, index: &ClaimsIndex, staged: StagedClaims) -> Result<()> {
        self.next_seq = self.next_seq.max(staged.next_seq);
        let levels = self
            .manifest
            .runs
            .iter()
            .map(|r| u64::from(r.level))
            .max()
            .unwrap_or(0);
        self.debt = self
            .debt
            .saturating_add((staged.claims.len() as u64).saturating_mul(levels + 2));
        index.publish_claims(&staged)?;
        if staged.claims.slot_count() <= STAGE_SLOTS_KEPT {
            self.stage = staged.claims;
        }
        Ok(())
    }

    /// The upkeep a batch owes (see [`IndexWriter::debt`]), in steps of one transaction
    /// each: at least one step if any is due, more after a large batch.
    pub(crate) fn upkeep(&mut self, db: &redb::Database, index: &ClaimsIndex) -> Result<()> {
        loop {
            match self.step(db, index)? {
                None => {
                    self.debt = 0;
                    return Ok(());
                }
                Some(copied) => {
                    self.debt = self.debt.saturating_sub(copied.max(1));
                    if self.debt == 0 {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// One bounded piece of upkeep, in its own transaction: writes a full log out as a
    /// run, or copies one chunk of the lowest level's compaction (starting compactions
    /// where a level is full). Returns the claims copied, or `None` if nothing was due.
    fn step(&mut self, db: &redb::Database, index: &ClaimsIndex) -> Result<Option<u64>> {
        let layout = index.layout()?;
        if layout.log_len()? >= self.limits.log_max {
            return self.flush(db, index, &layout).map(Some);
        }
        while let Some(compaction) = self.plan()? {
            self.compactions.push(compaction);
            self.compactions.sort_by_key(|c| c.level);
        }
        if self.compactions.is_empty() {
            return Ok(None);
        }
        let compaction = self.compactions.remove(0);
        self.compact(db, index, &layout, compaction).map(Some)
    }

    /// The oldest `fan_in` runs of the lowest level that has that many runs no compaction
    /// is merging, to be merged into a run with a fresh id.
    fn plan(&mut self) -> Result<Option<Compaction>> {
        let fan_in = self.limits.fan_in;
        let merging = |id: u64| self.compactions.iter().any(|c| c.inputs.contains(&id));
        let idle: Vec<&RunMeta> = self
            .manifest
            .runs
            .iter()
            .filter(|r| !merging(r.id))
            .collect();
        let mut levels: Vec<u8> = idle.iter().map(|r| r.level).collect();
        levels.sort_unstable();
        levels.dedup();
        let busy = |level: u8| {
            self.compactions
                .iter()
                .any(|c| c.level == level.saturating_add(1))
        };
        let Some(level) = levels.into_iter().find(|level| {
            !busy(*level) && idle.iter().filter(|r| r.level == *level).count() >= fan_in
        }) else {
            return Ok(None);
        };
        let mut inputs: Vec<&RunMeta> = idle
            .iter()
            .rev()
            .filter(|r| r.level == level)
            .take(fan_in)
            .copied()
            .collect();
        inputs.reverse();
        let claims = inputs
            .iter()
            .try_fold(0u64, |sum, r| sum.checked_add(r.claims))
            .ok_or_else(|| corrupted("run sizes overflow"))?;
        let inputs = inputs.iter().map(|r| r.id).collect();
        Ok(Some(Compaction {
            copied: false,
            inputs,
            level: level.saturating_add(1),
            output: self.take_run_id()?,
            after: None,
            written: 0,
            blocks: 0,
            filter: Bloom::for_claims(claims),
        }))
    }

    /// Writes the log out as a block run and empties it, in one transaction. The run is
    /// made from the log's claims in memory (reading the table back would cost a third
    /// of the flush), after checking that the table holds as many: the map only ever
    /// receives claims whose batch committed, so a map as large as the table is the
    /// table, and one that missed a batch (its publishing failed) is caught here, not
    /// dropped.
    fn flush(&mut self, db: &redb::Database, index: &ClaimsIndex, layout: &Layout) -> Result<u64> {
        let started = std::time::Instant::now();
        let id = self.take_run_id()?;
        let mut manifest = self.manifest.clone();
        let name = block_run_name(id);
        let txn = db.begin_write().map_err(backend)?;
        let next_log;
        let (claims, blocks, filter) = {
            // Only this thread writes the map; readers share the lock meanwhile.
            let recent = layout.recent.read().map_err(|_| StoreError::Poisoned)?;
            let (logged, _) = read_log(&txn, |_, _| Ok(()))?;
            if recent.is_empty() || recent.len() as u64 != logged {
                return Err(corrupted("the log and its claims in memory differ"));
            }
            // The next log will most likely fill up like this one.
            next_log = recent.with_capacity_of();
            let claims = recent.sorted();
            let mut filter = Bloom::for_claims(claims.len() as u64);
            let mut run = txn
                .open_table(TableDefinition::<Bytes, Bytes>::new(&name))
                .map_err(backend)?;
            let mut writer = BlockWriter::new();
            for (key, value) in &claims {
                writer.push(&mut run, key, value)?;
                filter.insert(KeyHash::of(manifest.salt, key));
            }
            writer.finish_block(&mut run)?;
            filter.write(id, &mut txn.open_table(FILTERS).map_err(backend)?)?;
            (claims.len() as u64, writer.blocks, filter)
        };
        // redb frees the log's pages wholesale; the next batch creates it again.
        txn.delete_table(LOG).map_err(backend)?;
        txn.delete_table(ENTRY_LOG).map_err(backend)?;
        let meta = RunMeta {
            id,
            level: 0,
            claims,
            filter_bits: filter.bits(),
            format: RunFormat::Blocks { blocks },
        };
        manifest.runs.insert(0, meta.clone());
        manifest.generation = next_generation(manifest.generation)?;
        write_manifest(
            &mut txn.open_table(super::meta_definition()).map_err(backend)?,
            &manifest,
        )?;
        let mut runs = vec![Arc::new(Run { meta, name, filter })];
        runs.extend(layout.runs.iter().cloned());
        let published = Layout {
            generation: manifest.generation,
            salt: manifest.salt,
            recent: Arc::new(RwLock::new(next_log)),
            runs,
        };
        index.commit_runs(txn, published)?;
        self.manifest = manifest;
        tracing::debug!(run = id, claims, blocks, elapsed = ?started.elapsed(), "claims log written out as a run");
        Ok(claims)
    }

    /// A run id no table has. Taken in memory at once, so that a flush during a
    /// compaction cannot reuse its output's id; the manifest that names the run records
    /// it, and a table of an id taken before a restart and never named is deleted at open.
    fn take_run_id(&mut self) -> Result<u64> {
        let id = self.manifest.next_run;
        self.manifest.next_run = id
            .checked_add(1)
            .ok_or_else(|| corrupted("run ids exhausted"))?;
        Ok(id)
    }

    /// Copies one chunk of `compaction` into its output; the last chunk's transaction
    /// also puts the output in its inputs' place.
    fn compact(
        &mut self,
        db: &redb::Database,
        index: &ClaimsIndex,
        layout: &Layout,
        mut compaction: Compaction,
    ) -> Result<u64> {
        let txn = db.begin_write().map_err(backend)?;
        let output_name = block_run_name(compaction.output);
        if !compaction.copied {
            let (copied, done) = self.copy_chunk(&txn, &output_name, &mut compaction)?;
            if done {
                if compaction.written == 0 {
                    return Err(corrupted("a compaction of empty runs"));
                }
                // An unnamed run's filter, like the run, is deleted at open if the last
                // transaction never comes.
                let mut filters = txn.open_table(FILTERS).map_err(backend)?;
                compaction.filter.write(compaction.output, &mut filters)?;
            }
            txn.commit().map_err(backend)?;
            compaction.copied = done;
            self.compactions.push(compaction);
            self.compactions.sort_by_key(|c| c.level);
            return Ok(copied);
        }
        let copied = 0;

        let mut manifest = self.manifest.clone();
        let meta = RunMeta {
            id: compaction.output,
            level: compaction.level,
            claims: compaction.written,
            filter_bits: compaction.filter.bits(),
            format: RunFormat::Blocks {
                blocks: compaction.blocks,
            },
        };
        let at = manifest
            .runs
            .iter()
            .position(|r| compaction.inputs.contains(&r.id))
            .ok_or_else(|| corrupted("compaction inputs not in the manifest"))?;
        manifest.runs.retain(|r| !compaction.inputs.contains(&r.id));
        manifest
            .runs
            .insert(at.min(manifest.runs.len()), meta.clone());
        manifest.generation = next_generation(manifest.generation)?;
        {
            let mut filters = txn.open_table(FILTERS).map_err(backend)?;
            for id in &compaction.inputs {
                Bloom::delete(*id, &mut filters)?;
            }
        }
        for input in self
            .manifest
            .runs
            .iter()
            .filter(|r| compaction.inputs.contains(&r.id))
        {
            txn.delete_table(TableDefinition::<Bytes, Bytes>::new(&run_table_name(input)))
                .map_err(backend)?;
        }
        write_manifest(
            &mut txn.open_table(super::meta_definition()).map_err(backend)?,
            &manifest,
        )?;
        let output = Arc::new(Run {
            meta,
            name: output_name,
            filter: compaction.filter,
        });
        let mut runs: Vec<Arc<Run>> = Vec::with_capacity(manifest.runs.len());
        for live in &manifest.runs {
            if live.id == output.meta.id {
                runs.push(Arc::clone(&output));
            } else {
                runs.push(
                    layout
                        .runs
                        .iter()
                        .find(|r| r.meta.id == live.id)
                        .cloned()
                        .ok_or_else(|| corrupted("a live run not in memory"))?,
                );
            }
        }
        let published = Layout {
            generation: manifest.generation,
            salt: manifest.salt,
            recent: Arc::clone(&layout.recent),
            runs,
        };
        index.commit_runs(txn, published)?;
        self.manifest = manifest;
        Ok(copied)
    }

    /// Copies up to [`IndexLimits::chunk`] claims of `compaction`'s inputs, in key order
    /// after its cursor, into its output. Returns the claims copied and whether the
    /// inputs are exhausted.
    fn copy_chunk(
        &self,
        txn: &WriteTransaction,
        output_name: &str,
        compaction: &mut Compaction,
    ) -> Result<(u64, bool)> {
        let inputs = compaction
            .inputs
            .iter()
            .map(|id| {
                let meta = self
                    .manifest
                    .runs
                    .iter()
                    .find(|r| r.id == *id)
                    .ok_or_else(|| corrupted("compaction input not in the manifest"))?;
                Ok(RunReader::new(
                    open_run(txn, &run_table_name(meta))?,
                    &meta.format,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut output = txn
            .open_table(TableDefinition::<Bytes, Bytes>::new(output_name))
            .map_err(backend)?;
        let lower = match &compaction.after {
            Some(after) => Bound::Excluded(after.as_slice()),
            None => Bound::Unbounded,
        };
        // Inputs newest first: on a tie the newest input's value is kept.
        let mut scans = inputs
            .iter()
            .map(|run| run.scan(lower))
            .collect::<Result<Vec<_>>>()?;
        let mut writer = BlockWriter::new();
        let mut key = Vec::new();
        let mut copied = 0u64;
        let mut done = false;
        while copied < self.limits.chunk as u64 {
            // The input with the smallest key next.
            for scan in scans.iter_mut() {
                scan.peek()?;
            }
            let mut smallest: Option<(&[u8], &[u8])> = None;
            for (k, v) in scans.iter().filter_map(RunScan::current) {
                if smallest.is_none_or(|(s, _)| k < s) {
                    smallest = Some((k, v));
                }
            }
            let Some((k, v)) = smallest else {
                done = true;
                break;
            };
            key.clear();
            key.extend_from_slice(k);
            writer.push(&mut output, k, v)?;
            for scan in scans.iter_mut() {
                if scan.peek()?.is_some_and(|(k, _)| k == key.as_slice()) {
                    scan.advance();
                }
            }
            compaction
                .filter
                .insert(KeyHash::of(self.manifest.salt, &key));
            compaction.written = compaction
                .written
                .checked_add(1)
                .ok_or_else(|| corrupted("run size overflows"))?;
            copied += 1;
        }
        writer.finish_block(&mut output)?;
        compaction.blocks = compaction
            .blocks
            .checked_add(writer.blocks)
            .ok_or_else(|| corrupted("run size overflows"))?;
        if copied > 0 {
            compaction.after = Some(key);
        }
        if !done {
            // The chunk may have ended exactly at the end of every input.
            let mut exhausted = true;
            for scan in scans.iter_mut() {
                exhausted &= scan.peek()?.is_none();
            }
            done = exhausted;
        }
        Ok((copied, done))
    }
}

/// Writes claims into `txn`'s file as format 2 left them: `claims` in one run of one
/// table entry per claim with its filter, `logged` in its log of one entry per claim, a
/// version 1 manifest, format 2 in the meta table.
#[cfg(test)]
pub(crate) fn write_format_2_for_tests(
    txn: &WriteTransaction,
    meta_table: TableDefinition<'static, Bytes, Bytes>,
    claims: &[(Vec<u8>, Vec<u8>)],
    logged: &[(Vec<u8>, Vec<u8>)],
) -> Result<()> {
    let mut log = txn.open_table(ENTRY_LOG).map_err(backend)?;
    for (seq, (key, value)) in logged.iter().enumerate() {
        log.insert(seq as u64, log_entry(key, value)?.as_slice())
            .map_err(backend)?;
    }
    let salt = fresh_salt();
    let mut filter = Bloom::for_claims(claims.len() as u64);
    let mut run = txn
        .open_table(TableDefinition::<Bytes, Bytes>::new("claims-run-1"))
        .map_err(backend)?;
    for (key, value) in claims {
        run.insert(key.as_slice(), value.as_slice())
            .map_err(backend)?;
        filter.insert(KeyHash::of(salt, key));
    }
    filter.write(1, &mut txn.open_table(FILTERS).map_err(backend)?)?;
    let manifest = ManifestV1 {
        filter_scheme: FILTER_SCHEME,
        salt,
        generation: 2,
        next_run: 2,
        runs: vec![RunMetaV1 {
            id: 1,
            level: 0,
            claims: claims.len() as u64,
            filter_bits: filter.bits(),
        }],
    };
    let mut meta = txn.open_table(meta_table).map_err(backend)?;
    meta.insert(META_MANIFEST, encode(&manifest)?.as_slice())
        .map_err(backend)?;
    meta.insert(META_GENERATION, 2u64.to_le_bytes().as_slice())
        .map_err(backend)?;
    meta.insert(
        META_FORMAT,
        ENTRY_RUNS_FORMAT_VERSION.to_le_bytes().as_slice(),
    )
    .map_err(backend)?;
    Ok(())
}

fn next_generation(generation: u64) -> Result<u64> {
    generation
        .checked_add(1)
        .ok_or_else(|| corrupted("generations exhausted"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Filters written by one release are read by the next: the hash and the probe
    /// positions of [`FILTER_SCHEME`] 1 must never change (change the scheme instead).
    #[test]
    fn filter_scheme_1_hashes_and_probes_as_it_always_has() {
        let hash = KeyHash::of([1, 2], b"scrip claim key");
        let filter = Bloom::for_claims(100);
        assert_eq!(filter.bits(), 1024);
        assert_eq!(
            (hash.h1, hash.h2),
            (0xb558_fda3_eea6_1780, 0xb927_6423_6f61_5b65)
        );
        let bits: Vec<u64> = filter
            .probes(hash)
            .map(|(word, mask)| word as u64 * 64 + u64::from(mask.trailing_zeros()))
            .collect();
        assert_eq!(bits, [896, 741, 586, 431, 276, 121, 990]);
        assert_eq!((FILTER_SCHEME, FILTER_PROBES), (1, 7));
    }

    #[test]
    fn a_filter_holds_every_key_put_in_and_few_others() {
        let salt = fresh_salt();
        let mut filter = Bloom::for_claims(10_000);
        for n in 0..10_000u32 {
            filter.insert(KeyHash::of(salt, &n.to_le_bytes()));
        }
        for n in 0..10_000u32 {
            assert!(filter.may_contain(KeyHash::of(salt, &n.to_le_bytes())));
        }
        let false_positives = (10_000..110_000u32)
            .filter(|n| filter.may_contain(KeyHash::of(salt, &n.to_le_bytes())))
            .count();
        // 10 bits a key, 7 probes: about 0.8 %.
        assert!(false_positives < 2_000, "{false_positives} of 100 000");
    }

    #[test]
    fn levels_grow_by_the_fan_in() {
        let limits = IndexLimits {
            log_max: 100,
            fan_in: 4,
            chunk: 10,
        };
        assert_eq!(level_for(0, limits), 0);
        assert_eq!(level_for(100, limits), 0);
        assert_eq!(level_for(101, limits), 1);
        assert_eq!(level_for(400, limits), 1);
        assert_eq!(level_for(1_600, limits), 2);
        assert_eq!(level_for(1_601, limits), 3);
    }

    /// Sorted keys of many lengths (1 to 40 bytes, so some of the `n` coincide), each
    /// with a value of its own.
    fn sorted_claims(n: u32) -> BTreeMap<Vec<u8>, Vec<u8>> {
        (0..n)
            .map(|i| {
                let mut key = vec![(i % 3) as u8 * 7];
                key.extend_from_slice(&i.wrapping_mul(2_654_435_761).to_be_bytes());
                key.resize(1 + (i as usize % 40), 0xa5);
                (key, format!("value of {i}").into_bytes())
            })
            .collect()
    }

    /// The same claims as a run of each format, in tables of one write transaction.
    fn with_runs_of_both_formats(
        claims: &BTreeMap<Vec<u8>, Vec<u8>>,
        check: impl Fn(&RunReader<redb::Table<'_, Bytes, Bytes>>, &str),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let db = redb::Database::create(dir.path().join("runs.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        let mut entries = txn
            .open_table(TableDefinition::<Bytes, Bytes>::new("entries"))
            .unwrap();
        let mut blocks = txn
            .open_table(TableDefinition::<Bytes, Bytes>::new("blocks"))
            .unwrap();
        let mut writer = BlockWriter::new();
        for (key, value) in claims {
            entries.insert(key.as_slice(), value.as_slice()).unwrap();
            writer.push(&mut blocks, key, value).unwrap();
        }
        writer.finish_block(&mut blocks).unwrap();
        let written = writer.blocks;
        assert_eq!(blocks.len().unwrap(), written);
        check(&RunReader::new(entries, &RunFormat::Entries), "entries");
        check(
            &RunReader::new(blocks, &RunFormat::Blocks { blocks: written }),
            "blocks",
        );
    }

    #[test]
    fn a_run_of_either_format_finds_every_claim_it_holds_and_no_other() {
        let claims = sorted_claims(5_000);
        with_runs_of_both_formats(&claims, |run, format| {
            for (key, value) in &claims {
                assert_eq!(run.get(key).unwrap().as_ref(), Some(value), "{format}");
                // Keys around it that the run does not hold.
                let mut longer = key.clone();
                longer.push(0);
                if !claims.contains_key(&longer) {
                    assert_eq!(run.get(&longer).unwrap(), None, "{format}");
                }
            }
            assert_eq!(run.get(b"").unwrap(), None, "{format}");
            assert_eq!(run.get(&[0xff; 41]).unwrap(), None, "{format}");
        });
    }

    #[test]
    fn a_scan_of_either_format_starts_at_its_bound_and_yields_the_claims_in_order() {
        let claims = sorted_claims(3_000);
        let keys: Vec<&Vec<u8>> = claims.keys().collect();
        with_runs_of_both_formats(&claims, |run, format| {
            let mut starts: Vec<Bound<&[u8]>> = vec![Bound::Unbounded];
            let last = keys.len() - 1;
            for i in [0, 1, 17, last / 2, last - 1, last] {
                starts.push(Bound::Included(keys[i].as_slice()));
                starts.push(Bound::Excluded(keys[i].as_slice()));
            }
            starts.push(Bound::Included(&[0x01][..]));
            starts.push(Bound::Excluded(&[0xff; 50][..]));
            for from in starts {
                let expected: Vec<(&Vec<u8>, &Vec<u8>)> =
                    claims.range::<[u8], _>((from, Bound::Unbounded)).collect();
                let mut scan = run.scan(from).unwrap();
                let mut found = Vec::new();
                while let Some((k, v)) = scan.peek().unwrap() {
                    found.push((k.to_vec(), v.to_vec()));
                    scan.advance();
                }
                assert_eq!(found.len(), expected.len(), "{format} from {from:?}");
                for ((k, v), (ek, ev)) in found.iter().zip(expected) {
                    assert_eq!((k, v), (ek, ev), "{format} from {from:?}");
                }
            }
        });
    }

    #[test]
    fn claim_kinds_read_from_a_run_of_either_format_are_exactly_the_kinds_it_holds() {
        let claims: BTreeMap<Vec<u8>, Vec<u8>> = [&b""[..], &[2, 1, 2], &[2, 9], &[8; 33], &[255]]
            .into_iter()
            .map(|k| (k.to_vec(), b"v".to_vec()))
            .collect();
        with_runs_of_both_formats(&claims, |run, format| {
            let kinds = ClaimKinds::default();
            kinds.read(run).unwrap();
            for kind in 0..=255u8 {
                assert_eq!(
                    kinds.may_hold(&[kind, 0]),
                    [2, 8, 255].contains(&kind),
                    "{format}: kind {kind}"
                );
            }
            // Nothing is ever skipped for a key that has no kind.
            assert!(kinds.may_hold(b""));
        });
    }

    /// redb gives a leaf a power of two of 4 KiB pages: a run's blocks and a filter's
    /// chunks must leave room for their key and the leaf header, or each takes twice its
    /// size on disk (and in every flush's and merge's writes).
    #[test]
    fn a_run_and_its_filter_fill_the_pages_redb_gives_them() {
        let dir = tempfile::tempdir().unwrap();
        let db = redb::Database::create(dir.path().join("runs.redb")).unwrap();
        // Claims shaped like a coin's: a 33-byte key, an 83-byte value.
        let claims: BTreeMap<Vec<u8>, Vec<u8>> = (0..40_000u32)
            .map(|i| {
                let mut key = vec![8u8; 33];
                key[1..5].copy_from_slice(&i.wrapping_mul(2_654_435_761).to_be_bytes());
                (key, vec![i as u8; 83])
            })
            .collect();
        let salt = fresh_salt();
        let txn = db.begin_write().unwrap();
        let mut blocks = txn
            .open_table(TableDefinition::<Bytes, Bytes>::new("blocks"))
            .unwrap();
        let mut filters = txn.open_table(FILTERS).unwrap();
        let mut writer = BlockWriter::new();
        let mut filter = Bloom::for_claims(claims.len() as u64 * 4);
        for (key, value) in &claims {
            writer.push(&mut blocks, key, value).unwrap();
            filter.insert(KeyHash::of(salt, key));
        }
        writer.finish_block(&mut blocks).unwrap();
        filter.write(1, &mut filters).unwrap();
        for item in blocks.iter().unwrap() {
            let (key, block) = item.unwrap();
            let leaf = REDB_LEAF_HEADER + key.value().len() + block.value().len();
            assert!(leaf <= BLOCK_LEAF_BYTES, "a block's leaf of {leaf} bytes");
        }
        let chunks = Bloom::chunks(1, &filters).unwrap().count();
        assert!(chunks > 1, "the filter fills more than one chunk");
        // Pages allocated but not filled: under 2 % of the blocks here; when blocks
        // filled 8 KiB and chunks 64 KiB, as much as was stored.
        for (table, stats) in [("blocks", blocks.stats()), ("filters", filters.stats())] {
            let stats = stats.unwrap();
            assert!(
                stats.fragmented_bytes() * 10 < stats.stored_bytes(),
                "{table}: {} bytes stored, {} unused in their pages",
                stats.stored_bytes(),
                stats.fragmented_bytes()
            );
        }
    }

    #[test]
    fn a_block_writer_refuses_claims_out_of_order_and_a_damaged_block_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = redb::Database::create(dir.path().join("runs.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        let mut table = txn
            .open_table(TableDefinition::<Bytes, Bytes>::new("blocks"))
            .unwrap();
        let mut writer = BlockWriter::new();
        writer.push(&mut table, b"b", b"1").unwrap();
        assert!(writer.push(&mut table, b"b", b"2").is_err());
        assert!(writer.push(&mut table, b"a", b"2").is_err());
        let mut block = Vec::new();
        put_block_entry(&mut block, b"key", b"value").unwrap();
        let (k, v, next) = block_entry_at(&block, 0).unwrap();
        assert_eq!(
            (&block[k], &block[v], next),
            (&b"key"[..], &b"value"[..], 14)
        );
        for cut in 0..block.len() {
            assert!(block_entry_at(&block[..cut], 0).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn a_log_entry_splits_into_its_key_and_value_and_a_short_one_is_refused() {
        let entry = log_entry(b"key", b"value").unwrap();
        assert_eq!(
            split_log_entry(&entry).unwrap(),
            (&b"key"[..], &b"value"[..])
        );
        assert!(split_log_entry(&entry[..4]).is_err());
        assert!(split_log_entry(&[1]).is_err());
    }
}
