//! The issuer's signed revocation list, and the client-side cache that merchants and
//! wallets check offline.
//!
//! The issuer publishes a [`RevocationList`]: a versioned, compact list of what must no
//! longer be accepted (revoked devices, frozen accounts, revoked identified coins, revoked
//! merchants), each with the time the first list named it, signed by the issuer's answer
//! key with its own domain tag. A list is either full (`base_version == 0`) or a delta
//! against an earlier version (what was added and what was lifted since), so a terminal
//! on a poor link stays current with a few bytes. A [`RevocationCache`] verifies lists,
//! applies them in order, answers lookups in O(log n) and says how old it is.
//!
//! Version 0 is the empty list every client starts from: a delta against version 0 is a
//! full list, which is why `base_version == 0` means "full".

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::keys::AnswerSigner;
use crate::signed::{message, signed_token};
use crate::{AccountId, CoinId, DeviceId, Error, KeyDirectory, MerchantId, Result, Timestamp};

/// Most items one list (or one cache) holds; a delta's additions and lifts together stay
/// under it too. At about 36 bytes an entry a full list stays near 600 KB, within the
/// codec's 1 MiB message limit and one store value. An issuer with more listed items
/// publishes devices first, then merchants, identified coins and frozen accounts, each the
/// most recently revoked first: the oldest revocations matter least, since a revoked
/// device or frozen account gets no new certificates and its old ones expire.
pub const MAX_REVOCATION_ENTRIES: usize = 16_384;

/// Something the issuer no longer honours from now on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum RevokedItem {
    /// A device reported lost or stolen: refuse its withdrawal records.
    Device(DeviceId),
    /// A frozen account: refuse records of any of its devices.
    Account(AccountId),
    /// A revoked identified coin (reissued to its holder): refuse it.
    Coin(CoinId),
    /// A revoked merchant: wallets do not pay it.
    Merchant(MerchantId),
}

/// One listed item and when the first list named it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationEntry {
    /// What is listed.
    pub item: RevokedItem,
    /// The `issued_at` of the first list that named it (the issuer's grace runs from it).
    pub listed_since: Timestamp,
}

/// A revocation list, full or a delta.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationListPayload {
    /// This list's version; it grows by one whenever the listed set changes.
    pub version: u64,
    /// 0: a full list. Otherwise a delta: apply it only to the list of exactly this
    /// version (`base_version == version` says "nothing changed", with a fresh time).
    pub base_version: u64,
    /// When the issuer signed it: a client's list is as old as this.
    pub issued_at: Timestamp,
    /// The issuer's published revocation grace, in seconds: a payment accepted before
    /// `listed_since + grace` is honoured even though the list names its device.
    pub grace_secs: u64,
    /// Listed items (a delta: items listed since the base), in item order, no repeats.
    pub entries: Vec<RevocationEntry>,
    /// Only in deltas: items the base listed and this version no longer does (an
    /// unfrozen account), in item order, no repeats.
    pub lifted: Vec<RevokedItem>,
}

signed_token!(
    /// A [`RevocationListPayload`] signed by the issuer's answer key.
    RevocationList = RevocationListPayload,
    signer: AnswerSigner,
    tag: "revocation-list"
);

fn invalid(reason: &'static str) -> Error {
    Error::InvalidField {
        field: "revocation_list",
        reason,
    }
}

fn strictly_increasing<T: Ord>(items: impl Iterator<Item = T>) -> bool {
    let mut previous: Option<T> = None;
    for item in items {
        if previous.as_ref().is_some_and(|p| *p >= item) {
            return false;
        }
        previous = Some(item);
    }
    true
}

impl RevocationListPayload {
    /// Whether this is a full list (not a delta).
    pub fn is_full(&self) -> bool {
        self.base_version == 0
    }

    /// The grace as a duration.
    pub fn grace(&self) -> Duration {
        Duration::from_secs(self.grace_secs)
    }

    /// Checks the list's own shape: bounded, canonical order without repeats, lifts only
    /// in deltas and never of an item it also lists, a base not after its version.
    pub fn check(&self) -> Result<()> {
        if self.entries.len().saturating_add(self.lifted.len()) > MAX_REVOCATION_ENTRIES {
            return Err(invalid("more items than a list may hold"));
        }
        if self.base_version > self.version {
            return Err(invalid("a delta against a later version"));
        }
        if self.is_full() && !self.lifted.is_empty() {
            return Err(invalid("a full list lifts nothing"));
        }
        if !strictly_increasing(self.entries.iter().map(|e| e.item))
            || !strictly_increasing(self.lifted.iter())
        {
            return Err(invalid("items out of order or repeated"));
        }
        if self
            .lifted
            .iter()
            .any(|l| self.entries.binary_search_by(|e| e.item.cmp(l)).is_ok())
        {
            return Err(invalid("an item both listed and lifted"));
        }
        Ok(())
    }
}

impl RevocationList {
    /// Checks the issuer's signature under the answer key `directory` lists at `now` and
    /// the list's shape ([`RevocationListPayload::check`]).
    pub fn verify(
        &self,
        directory: &KeyDirectory,
        now: Timestamp,
    ) -> Result<&RevocationListPayload> {
        let payload = self.verify_in(directory, now)?;
        payload.check()?;
        Ok(payload)
    }
}

/// A client's verified copy of the issuer's list: what a merchant or wallet checks
/// offline. Starts empty (version 0, never issued); [`RevocationCache::apply`] takes full
/// lists and deltas. It has its own encoding (`scrip/revocation-cache/v1`) so a client
/// keeps it across restarts; decoding re-checks its bounds but cannot re-check the
/// issuer's signature (a cache built from deltas was never signed whole), so keep it
/// where the client keeps its other trusted state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "CacheFields", into = "CacheFields")]
pub struct RevocationCache {
    version: u64,
    issued_at: Option<Timestamp>,
    grace_secs: u64,
    listed: BTreeMap<RevokedItem, Timestamp>,
}

#[derive(Serialize, Deserialize)]
struct CacheFields {
    version: u64,
    issued_at: Option<Timestamp>,
    grace_secs: u64,
    entries: Vec<RevocationEntry>,
}

impl TryFrom<CacheFields> for RevocationCache {
    type Error = Error;
    fn try_from(f: CacheFields) -> Result<Self> {
        if f.entries.len() > MAX_REVOCATION_ENTRIES {
            return Err(invalid("more items than a list may hold"));
        }
        if !strictly_increasing(f.entries.iter().map(|e| e.item)) {
            return Err(invalid("items out of order or repeated"));
        }
        Ok(RevocationCache {
            version: f.version,
            issued_at: f.issued_at,
            grace_secs: f.grace_secs,
            listed: f
                .entries
                .into_iter()
                .map(|e| (e.item, e.listed_since))
                .collect(),
        })
    }
}

impl From<RevocationCache> for CacheFields {
    fn from(c: RevocationCache) -> Self {
        CacheFields {
            version: c.version,
            issued_at: c.issued_at,
            grace_secs: c.grace_secs,
            entries: c
                .listed
                .into_iter()
                .map(|(item, listed_since)| RevocationEntry { item, listed_since })
                .collect(),
        }
    }
}

message!(RevocationCache, tag: "revocation-cache");

impl RevocationCache {
    /// An empty cache: no list yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The version held (0: none yet). Ask the issuer for the delta since it.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// When the list held was signed; `None` before the first list.
    pub fn issued_at(&self) -> Option<Timestamp> {
        self.issued_at
    }

    /// The issuer's published revocation grace, as of the list held.
    pub fn grace(&self) -> Duration {
        Duration::from_secs(self.grace_secs)
    }

    /// How old the list held is at `now` (`None`: no list yet). A list signed "in the
    /// future" by a clock ahead of this one is age zero.
    pub fn age(&self, now: Timestamp) -> Option<Duration> {
        self.issued_at.map(|at| {
            Duration::from_millis(now.as_unix_millis().saturating_sub(at.as_unix_millis()))
        })
    }

    /// How many items are listed.
    pub fn len(&self) -> usize {
        self.listed.len()
    }

    /// Whether nothing is listed.
    pub fn is_empty(&self) -> bool {
        self.listed.is_empty()
    }

    /// Since when `item` is listed, if it is.
    pub fn lookup(&self, item: &RevokedItem) -> Option<Timestamp> {
        self.listed.get(item).copied()
    }

    /// The listed items, in item order.
    pub fn entries(&self) -> impl Iterator<Item = RevocationEntry> + '_ {
        self.listed
            .iter()
            .map(|(item, listed_since)| RevocationEntry {
                item: *item,
                listed_since: *listed_since,
            })
    }

    /// Verifies `list` (signature under the answer key `directory` lists at `now`, and its
    /// shape) and applies it. A full list replaces the cache; a delta applies only to the
    /// version it names ([`Error::RevocationDeltaBase`]: fetch the full list). A list of
    /// an older version than the one held is refused ([`Error::OutdatedRevocationList`]),
    /// so a replayed old list cannot lift a revocation. Of two lists of the same version
    /// the later signing time is kept (the age never goes back). Nothing changes on error.
    pub fn apply(
        &mut self,
        list: &RevocationList,
        directory: &KeyDirectory,
        now: Timestamp,
    ) -> Result<()> {
        let payload = list.verify(directory, now)?;
        if payload.version < self.version {
            return Err(Error::OutdatedRevocationList {
                held: self.version,
                received: payload.version,
            });
        }
        let mut listed = if payload.is_full() {
            BTreeMap::new()
        } else if payload.base_version == self.version {
            self.listed.clone()
        } else {
            return Err(Error::RevocationDeltaBase {
                held: self.version,
                base: payload.base_version,
            });
        };
        for item in &payload.lifted {
            listed.remove(item);
        }
        for entry in &payload.entries {
            listed.insert(entry.item, entry.listed_since);
        }
        if listed.len() > MAX_REVOCATION_ENTRIES {
            return Err(invalid("more items than a list may hold"));
        }
        self.listed = listed;
        self.issued_at = self.issued_at.max(Some(payload.issued_at));
        if payload.version > self.version {
            self.issued_at = Some(payload.issued_at);
        }
        self.version = payload.version;
        self.grace_secs = payload.grace_secs;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;
    use crate::fixtures;
    use rand::SeedableRng;
    use rand_core::Rng;
    use uuid::Uuid;

    fn directory() -> KeyDirectory {
        let day = Duration::from_secs(86_400);
        let validity = crate::Validity::new(
            fixtures::NOW.saturating_sub(day * 180),
            fixtures::NOW.saturating_add(day * 180),
        )
        .unwrap();
        fixtures::TestIssuer::new(crate::Currency::EUR, validity).directory
    }

    fn device(n: u128) -> RevokedItem {
        RevokedItem::Device(DeviceId(Uuid::from_u128(n)))
    }

    fn account(n: u128) -> RevokedItem {
        RevokedItem::Account(AccountId(Uuid::from_u128(n)))
    }

    fn at(ms: u64) -> Timestamp {
        Timestamp::from_unix_millis(fixtures::NOW.as_unix_millis() + ms)
    }

    fn entry(item: RevokedItem, since: u64) -> RevocationEntry {
        RevocationEntry {
            item,
            listed_since: at(since),
        }
    }

    fn signed(payload: RevocationListPayload) -> RevocationList {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        RevocationList::sign(payload, &fixtures::answer_signer(), &mut rng).unwrap()
    }

    fn list(
        version: u64,
        base_version: u64,
        entries: Vec<RevocationEntry>,
        lifted: Vec<RevokedItem>,
    ) -> RevocationList {
        signed(RevocationListPayload {
            version,
            base_version,
            issued_at: at(version * 1000),
            grace_secs: 86_400,
            entries,
            lifted,
        })
    }

    #[test]
    fn a_full_list_then_a_delta_list_what_the_issuer_lists() {
        let dir = directory();
        let mut cache = RevocationCache::new();
        assert_eq!((cache.version(), cache.age(at(0))), (0, None));
        let full = list(
            3,
            0,
            vec![entry(device(1), 10), entry(account(2), 20)],
            vec![],
        );
        cache.apply(&full, &dir, at(5000)).unwrap();
        assert_eq!(cache.lookup(&device(1)), Some(at(10)));
        assert_eq!(cache.lookup(&account(2)), Some(at(20)));
        assert_eq!(cache.lookup(&device(2)), None);
        assert_eq!(cache.age(at(5000)), Some(Duration::from_secs(2)));

        let delta = list(4, 3, vec![entry(device(2), 4000)], vec![account(2)]);
        cache.apply(&delta, &dir, at(5000)).unwrap();
        assert_eq!(cache.version(), 4);
        assert_eq!(cache.lookup(&device(2)), Some(at(4000)));
        assert_eq!(
            cache.lookup(&account(2)),
            None,
            "the unfrozen account is lifted"
        );
        assert_eq!(cache.lookup(&device(1)), Some(at(10)), "kept from the base");
        assert_eq!(cache.grace(), Duration::from_secs(86_400));
    }

    #[test]
    fn a_delta_against_another_version_is_refused_and_changes_nothing() {
        let dir = directory();
        let mut cache = RevocationCache::new();
        cache
            .apply(&list(3, 0, vec![entry(device(1), 10)], vec![]), &dir, at(0))
            .unwrap();
        let before = cache.clone();
        let delta = list(5, 4, vec![], vec![device(1)]);
        assert_eq!(
            cache.apply(&delta, &dir, at(0)),
            Err(Error::RevocationDeltaBase { held: 3, base: 4 })
        );
        assert_eq!(cache, before);
        // A fresh client cannot apply a delta either: it needs the full list.
        assert!(RevocationCache::new().apply(&delta, &dir, at(0)).is_err());
    }

    #[test]
    fn an_older_list_is_refused_so_a_replay_cannot_lift_a_revocation() {
        let dir = directory();
        let mut cache = RevocationCache::new();
        let old = list(1, 0, vec![], vec![]);
        cache
            .apply(&list(2, 0, vec![entry(device(1), 10)], vec![]), &dir, at(0))
            .unwrap();
        assert_eq!(
            cache.apply(&old, &dir, at(0)),
            Err(Error::OutdatedRevocationList {
                held: 2,
                received: 1
            })
        );
        assert_eq!(cache.lookup(&device(1)), Some(at(10)));
    }

    #[test]
    fn a_re_signed_list_of_the_same_version_refreshes_the_age_only_forward() {
        let dir = directory();
        let mut cache = RevocationCache::new();
        let mut payload = RevocationListPayload {
            version: 2,
            base_version: 0,
            issued_at: at(1000),
            grace_secs: 60,
            entries: vec![entry(device(1), 10)],
            lifted: vec![],
        };
        cache.apply(&signed(payload.clone()), &dir, at(0)).unwrap();
        // "Nothing changed since 2", signed later.
        let fresh = RevocationListPayload {
            base_version: 2,
            issued_at: at(9000),
            entries: vec![],
            ..payload.clone()
        };
        cache.apply(&signed(fresh), &dir, at(0)).unwrap();
        assert_eq!(cache.issued_at(), Some(at(9000)));
        assert_eq!(cache.lookup(&device(1)), Some(at(10)));
        payload.issued_at = at(2000);
        cache.apply(&signed(payload), &dir, at(0)).unwrap();
        assert_eq!(cache.issued_at(), Some(at(9000)), "the age never goes back");
    }

    #[test]
    fn a_forged_or_altered_list_is_refused() {
        let dir = directory();
        let mut cache = RevocationCache::new();
        let mut altered = list(1, 0, vec![entry(device(1), 10)], vec![]);
        altered.payload.entries.clear();
        assert_eq!(cache.apply(&altered, &dir, at(0)), Err(Error::BadSignature));
        // Signed by a key that is not the answer key: not listed for that role.
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let forged = crate::Signed {
            payload: altered.payload.clone(),
            key_id: fixtures::device(1).key_id(),
            signature: fixtures::device(1)
                .sign_raw(&mut rng, &codec::encode(&altered.payload).unwrap())
                .unwrap(),
        };
        assert!(cache.apply(&forged, &dir, at(0)).is_err());
        assert_eq!(cache, RevocationCache::new());
    }

    #[test]
    fn lists_out_of_shape_are_refused() {
        let dir = directory();
        let unsorted = list(1, 0, vec![entry(device(2), 1), entry(device(1), 1)], vec![]);
        let repeated = list(1, 0, vec![entry(device(1), 1), entry(device(1), 2)], vec![]);
        let full_lifting = list(1, 0, vec![], vec![device(1)]);
        let both = list(2, 1, vec![entry(device(1), 1)], vec![device(1)]);
        let future_base = list(1, 2, vec![], vec![]);
        for bad in [unsorted, repeated, full_lifting, both, future_base] {
            assert!(
                RevocationCache::new().apply(&bad, &dir, at(0)).is_err(),
                "{bad:?}"
            );
        }
        let too_many = RevocationListPayload {
            version: 1,
            base_version: 0,
            issued_at: at(0),
            grace_secs: 0,
            entries: (0..=MAX_REVOCATION_ENTRIES as u128)
                .map(|n| entry(device(n), 0))
                .collect(),
            lifted: vec![],
        };
        assert!(too_many.check().is_err());
    }

    #[test]
    fn the_cache_round_trips_and_decoding_garbage_never_panics() {
        let dir = directory();
        let mut cache = RevocationCache::new();
        let full = list(
            3,
            0,
            vec![entry(device(1), 10), entry(account(2), 20)],
            vec![],
        );
        cache.apply(&full, &dir, at(0)).unwrap();
        let bytes = codec::encode(&cache).unwrap();
        assert_eq!(codec::decode::<RevocationCache>(&bytes).unwrap(), cache);
        let json = serde_json::to_string(&cache).unwrap();
        assert_eq!(
            serde_json::from_str::<RevocationCache>(&json).unwrap(),
            cache
        );
        let json = serde_json::to_string(&full).unwrap();
        assert_eq!(serde_json::from_str::<RevocationList>(&json).unwrap(), full);
        assert_eq!(
            codec::decode::<RevocationList>(&full.to_bytes().unwrap()).unwrap(),
            full
        );

        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let list_bytes = full.to_bytes().unwrap();
        for round in 0..2_000 {
            // Random bytes behind a valid header, and single-byte flips of real encodings.
            let mut garbage = vec![0u8; (rng.next_u32() % 256) as usize];
            rng.fill_bytes(&mut garbage);
            let mut flipped = if round % 2 == 0 {
                list_bytes.clone()
            } else {
                bytes.clone()
            };
            let i = rng.next_u32() as usize % flipped.len();
            flipped[i] ^= 1 << (rng.next_u32() % 8);
            for candidate in [garbage.clone(), flipped] {
                let _ = codec::decode::<RevocationList>(&candidate);
                let _ = codec::decode::<RevocationCache>(&candidate);
            }
            let mut headed = <RevocationList as crate::Message>::TAG.as_bytes().to_vec();
            headed.extend_from_slice(&[0, 1, 0]);
            headed.extend_from_slice(&garbage);
            let _ = codec::decode::<RevocationList>(&headed);
        }
        // A cache that claims more entries than allowed does not decode.
        let mut oversized = cache.clone();
        oversized.listed = (0..=MAX_REVOCATION_ENTRIES as u128)
            .map(|n| (device(n), at(0)))
            .collect();
        let encoded = codec::encode(&oversized).unwrap();
        assert!(codec::decode::<RevocationCache>(&encoded).is_err());
    }
}
