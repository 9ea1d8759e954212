//! Claims held in memory by the claims index: the log's committed claims
//! ([`super::claims::Layout`]) and one batch's staged claims (`ClaimsWrite`).
//!
//! Why not a `HashMap<Vec<u8>, Vec<u8>>`: that cost two allocations per claim, four to
//! six SipHash passes over its key (a probe of the stage, of the log, the stage's insert,
//! the log's insert when the batch is published, and every rehash as the maps grew), and
//! freeing a full log meant freeing 2 × 32 Ki buffers on the store's writer thread: about
//! 4 % of a pinned redeem server's CPU (BENCHMARKS.md, "One hash and no allocation per
//! claim"). Here every key and value sits in one byte arena, found through an
//! open-addressing table of entry numbers; a key is hashed once ([`ClaimMap::hash`]) and
//! that hash travels with the claim from the stage into the log.
//!
//! The hash is SipHash-1-3 under a key drawn from the operating system once per process,
//! as `HashMap`'s is, so nobody can choose claim keys that collide. It is never stored:
//! the Bloom filters that are stored hash with the file's own salt (`KeyHash`).

use std::hash::BuildHasher;
use std::sync::OnceLock;

use crate::{Result, StoreError};

/// One claim: where its key and value sit in the arena, and its key's hash.
#[derive(Clone, Copy)]
struct Entry {
    hash: u64,
    start: usize,
    key_len: u16,
    value_len: u32,
    removed: bool,
}

/// Claims by key, each written once: an insert of a key already held changes nothing
/// (claims are never overwritten), a removal only undoes a batch's own claim.
pub(crate) struct ClaimMap {
    arena: Vec<u8>,
    entries: Vec<Entry>,
    /// Open addressing, linear probing: `0` is empty, `n` is `entries[n - 1]`. Removed
    /// entries keep their slot (their key may be claimed again further along).
    slots: Vec<u32>,
    live: usize,
}

/// Slots start at this many and double when entries (removed ones included) would fill
/// more than 5/8 of them.
const FIRST_SLOTS: usize = 16;

/// The slots that hold `claims` entries without growing.
fn slots_for(claims: usize) -> usize {
    let mut slots = FIRST_SLOTS;
    while claims.saturating_add(1).saturating_mul(8) > slots.saturating_mul(5) {
        slots = slots.saturating_mul(2);
    }
    slots
}

impl Default for ClaimMap {
    fn default() -> Self {
        Self::new()
    }
}

impl ClaimMap {
    pub(crate) fn new() -> Self {
        ClaimMap {
            arena: Vec::new(),
            entries: Vec::new(),
            slots: Vec::new(),
            live: 0,
        }
    }

    /// An empty map with room for `claims` claims of `bytes` key and value bytes in all,
    /// so that filling it to that grows nothing: no copy of the arena, no rehash, and
    /// each page of it touched once.
    pub(crate) fn with_capacity(claims: usize, bytes: usize) -> Self {
        ClaimMap {
            arena: Vec::with_capacity(bytes),
            entries: Vec::with_capacity(claims),
            slots: vec![0; slots_for(claims)],
            live: 0,
        }
    }

    /// A map sized for as many claims, and bytes of them, as this one holds.
    pub(crate) fn with_capacity_of(&self) -> Self {
        Self::with_capacity(self.entries.len(), self.arena.len())
    }

    /// Empties the map and keeps its memory, for a batch's stage to be used again by the
    /// next batch: a fresh one grows from nothing again (its arena copied at each
    /// doubling, its table rehashed), into memory the allocator may have handed back to
    /// the kernel in between, to be faulted in and zeroed again.
    pub(crate) fn clear(&mut self) {
        self.arena.clear();
        self.entries.clear();
        self.slots.fill(0);
        self.live = 0;
    }

    /// Slots in its table: what [`ClaimMap::clear`] keeps and refills.
    pub(crate) fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// The hash every map of this process files `key` under.
    pub(crate) fn hash(key: &[u8]) -> u64 {
        static STATE: OnceLock<std::collections::hash_map::RandomState> = OnceLock::new();
        STATE.get_or_init(Default::default).hash_one(key)
    }

    /// Claims held (removed ones not counted).
    pub(crate) fn len(&self) -> usize {
        self.live
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.live == 0
    }

    fn key(&self, entry: &Entry) -> &[u8] {
        &self.arena[entry.start..entry.start + usize::from(entry.key_len)]
    }

    fn value(&self, entry: &Entry) -> &[u8] {
        let from = entry.start + usize::from(entry.key_len);
        &self.arena[from..from + entry.value_len as usize]
    }

    /// The slot of the live entry holding `key`, or of the empty slot that ends its probe.
    fn probe(&self, hash: u64, key: &[u8]) -> (usize, Option<usize>) {
        let mask = self.slots.len() - 1;
        let mut at = hash as usize & mask;
        loop {
            match self.slots[at] {
                0 => return (at, None),
                n => {
                    let index = n as usize - 1;
                    let entry = &self.entries[index];
                    if entry.hash == hash && !entry.removed && self.key(entry) == key {
                        return (at, Some(index));
                    }
                }
            }
            at = (at + 1) & mask;
        }
    }

    /// The value held under `key` (`hash` is [`ClaimMap::hash`] of it).
    pub(crate) fn get(&self, hash: u64, key: &[u8]) -> Option<&[u8]> {
        if self.slots.is_empty() {
            return None;
        }
        let (_, found) = self.probe(hash, key);
        found.map(|index| self.value(&self.entries[index]))
    }

    /// Holds `value` under `key` unless something is held there already. Returns whether
    /// it was new.
    pub(crate) fn insert(&mut self, hash: u64, key: &[u8], value: &[u8]) -> Result<bool> {
        let (Ok(key_len), Ok(value_len)) = (u16::try_from(key.len()), u32::try_from(value.len()))
        else {
            return Err(StoreError::InvalidUnit("claim key or value too long"));
        };
        if (self.entries.len() + 1) * 8 > self.slots.len() * 5 {
            self.grow()?;
        }
        let (at, found) = self.probe(hash, key);
        if found.is_some() {
            return Ok(false);
        }
        let number = u32::try_from(self.entries.len() + 1)
            .map_err(|_| StoreError::InvalidUnit("too many claims held in memory"))?;
        self.entries.push(Entry {
            hash,
            start: self.arena.len(),
            key_len,
            value_len,
            removed: false,
        });
        self.arena.extend_from_slice(key);
        self.arena.extend_from_slice(value);
        self.slots[at] = number;
        self.live += 1;
        Ok(true)
    }

    /// Takes `key` out (its bytes stay in the arena until the map is dropped: only a
    /// batch's stage removes, when a unit that claimed it is refused).
    pub(crate) fn remove(&mut self, hash: u64, key: &[u8]) {
        if self.slots.is_empty() {
            return;
        }
        if let (_, Some(index)) = self.probe(hash, key) {
            self.entries[index].removed = true;
            self.live -= 1;
        }
    }

    fn grow(&mut self) -> Result<()> {
        let slots = (self.slots.len() * 2).max(FIRST_SLOTS);
        let mut table = vec![0u32; slots];
        let mask = slots - 1;
        for (index, entry) in self.entries.iter().enumerate() {
            if entry.removed {
                continue;
            }
            let mut at = entry.hash as usize & mask;
            while table[at] != 0 {
                at = (at + 1) & mask;
            }
            table[at] = u32::try_from(index + 1)
                .map_err(|_| StoreError::InvalidUnit("too many claims held in memory"))?;
        }
        self.slots = table;
        Ok(())
    }

    /// Every claim held, with its key's hash, in the order they were inserted.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, &[u8], &[u8])> {
        self.entries
            .iter()
            .filter(|e| !e.removed)
            .map(|e| (e.hash, self.key(e), self.value(e)))
    }

    /// Every claim held, by key.
    pub(crate) fn sorted(&self) -> Vec<(&[u8], &[u8])> {
        // Sorting on the first eight bytes first keeps most comparisons off the arena
        // (keys differ early: a kind byte, then a digest or an id); equal prefixes fall
        // back to the whole key, which orders the same as comparing the keys alone.
        let mut claims: Vec<(u64, &[u8], &[u8])> = self
            .iter()
            .map(|(_, key, value)| {
                let mut prefix = [0u8; 8];
                let n = key.len().min(8);
                prefix[..n].copy_from_slice(&key[..n]);
                (u64::from_be_bytes(prefix), key, value)
            })
            .collect();
        claims.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(b.1)));
        claims.into_iter().map(|(_, k, v)| (k, v)).collect()
    }

    /// Inserts every claim `other` holds (see [`ClaimMap::insert`]); returns how many
    /// were new.
    pub(crate) fn extend_from(&mut self, other: &ClaimMap) -> Result<usize> {
        self.arena.reserve(other.arena.len());
        let mut new = 0;
        for (hash, key, value) in other.iter() {
            new += usize::from(self.insert(hash, key, value)?);
        }
        Ok(new)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::ClaimMap;

    fn key(n: u32) -> Vec<u8> {
        // Keys of several lengths, and some sharing their first eight bytes.
        let mut key = vec![3u8; (n % 5) as usize];
        key.extend_from_slice(&(n / 7).to_be_bytes());
        key.extend_from_slice(&n.to_le_bytes());
        key
    }

    #[test]
    fn a_claim_map_holds_what_a_btree_map_holds_through_inserts_repeats_and_removals() {
        let mut map = ClaimMap::new();
        let mut reference: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        for n in 0..5_000u32 {
            let k = key(n);
            let value = n.to_be_bytes().repeat((n % 3) as usize);
            assert!(map.insert(ClaimMap::hash(&k), &k, &value).unwrap());
            reference.insert(k, value);
            if n % 10 == 9 {
                // A repeat changes nothing; a removal takes the key out.
                let again = key(n - 4);
                assert!(!map
                    .insert(ClaimMap::hash(&again), &again, b"other")
                    .unwrap());
                let gone = key(n - 1);
                map.remove(ClaimMap::hash(&gone), &gone);
                reference.remove(&gone);
            }
            if n % 100 == 99 {
                // ... and a removed key can be claimed again.
                let back = key(n - 91);
                map.insert(ClaimMap::hash(&back), &back, b"back").unwrap();
                reference.entry(back).or_insert_with(|| b"back".to_vec());
            }
        }
        assert_eq!(map.len(), reference.len());
        for n in 0..6_000u32 {
            let k = key(n);
            assert_eq!(
                map.get(ClaimMap::hash(&k), &k),
                reference.get(&k).map(Vec::as_slice),
                "key {n}"
            );
        }
        let sorted: Vec<(Vec<u8>, Vec<u8>)> = map
            .sorted()
            .into_iter()
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect();
        assert_eq!(sorted, reference.clone().into_iter().collect::<Vec<_>>());

        // Moved into another map, hashes and all.
        let mut log = ClaimMap::new();
        let first = key(1);
        log.insert(ClaimMap::hash(&first), &first, b"already")
            .unwrap();
        assert_eq!(log.extend_from(&map).unwrap(), reference.len() - 1);
        assert_eq!(log.len(), reference.len());
        assert_eq!(
            log.get(ClaimMap::hash(&first), &first),
            Some(&b"already"[..])
        );
        let last = key(4_998);
        assert_eq!(
            log.get(ClaimMap::hash(&last), &last),
            reference.get(&last).map(Vec::as_slice)
        );
    }

    #[test]
    fn a_cleared_stage_holds_only_the_next_batch_and_a_presized_map_never_grows() {
        let mut stage = ClaimMap::new();
        for n in 0..1_000u32 {
            let k = key(n);
            stage
                .insert(ClaimMap::hash(&k), &k, b"first batch")
                .unwrap();
        }
        let presized = stage.with_capacity_of();
        let slots = stage.slot_count();
        stage.clear();
        assert_eq!(stage.slot_count(), slots, "a cleared stage keeps its table");
        assert!(stage.is_empty());
        for n in 500..1_500u32 {
            let k = key(n);
            // Claimed by the first batch, which is not this stage's any more.
            assert!(stage.insert(ClaimMap::hash(&k), &k, b"second").unwrap());
        }
        assert_eq!(stage.len(), 1_000);
        assert_eq!(stage.get(ClaimMap::hash(&key(1)), &key(1)), None);
        assert_eq!(
            stage.get(ClaimMap::hash(&key(700)), &key(700)),
            Some(&b"second"[..])
        );
        assert_eq!(stage.iter().count(), 1_000);

        let mut log = presized;
        let slots = log.slot_count();
        assert_eq!(log.extend_from(&stage).unwrap(), 1_000);
        assert_eq!(log.slot_count(), slots, "sized for as many claims");
        assert_eq!(log.len(), 1_000);
    }

    #[test]
    fn a_claim_map_refuses_a_key_or_value_it_could_not_log() {
        let mut map = ClaimMap::new();
        let long = vec![0u8; usize::from(u16::MAX) + 1];
        assert!(map.insert(ClaimMap::hash(&long), &long, b"v").is_err());
        assert!(map.is_empty());
        assert_eq!(map.get(ClaimMap::hash(&long), &long), None);
    }
}
