//! The revocation list the issuer publishes for offline merchants and wallets (SPEC
//! section 8, "Revocation reaches offline merchants").
//!
//! **What is listed**: revoked devices, frozen accounts, revoked identified coins and
//! revoked merchants, read from the collections the operator and fraud paths already keep;
//! nothing on the hot paths writes to the list.
//!
//! **Versions**: [`Issuer::publish_revocations`] (the server runs it periodically, and
//! right after an operator revokes, freezes or unfreezes) builds the listed set and
//! compares it with the latest stored version. Only if it differs is version `n + 1`
//! stored, claimed under `revocation-version/n+1`, so of servers sharing one store exactly
//! one writes each version and the others read it back. An item's `listed_since` is the
//! creation time of the first version that listed it, carried over while it stays listed
//! (an item lifted and listed again starts anew). The last
//! [`REVOCATION_SNAPSHOTS_KEPT`] versions are kept, so a client that holds one of them
//! gets a delta (what was added, what was lifted); a client holding an older or unknown
//! version gets the full list. More than [`MAX_REVOCATION_ENTRIES`] items: devices first,
//! then merchants, identified coins and frozen accounts, each kind most recently revoked
//! first by the time its revocation was recorded, and a warning is logged. The order
//! depends only on stored revocations, so the published set is stable from one
//! publication to the next (ordering by `listed_since` would let a cut item come back as
//! "new", push another out, and rotate revocations in and out forever). Devices go first
//! because only the operator revokes them, while accounts are also frozen automatically
//! (fraud), which a sender controlling accounts could use to push revocations out; a
//! device revoked long ago has no certificate left to pay with (certificates issued
//! before its revocation have expired), so the oldest are the ones to drop.
//!
//! **Grace** ([`crate::IssuerConfig::revocation_grace`], published in every list as
//! `grace_secs`): see the revocation paragraph of `src/redemption.rs`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use scrip_stores::{Claimant, CommitOutcome, RecordStore, Unit, Write};
use scrip_tokens::{
    codec, AccountId, CoinId, ContentDigest, DeviceId, MerchantId, RevocationEntry,
    RevocationListPayload, RevokedItem, Timestamp, MAX_REVOCATION_ENTRIES,
};
use uuid::Uuid;

use crate::schema::{
    revocation_version_key, Mark, RawValue, RevocationSnapshot, RevokedCoinDoc, FROZEN,
    REVOCATION_LATEST, REVOCATION_LATEST_KEY, REVOCATION_SNAPSHOTS, REVOCATION_VERSION,
    REVOKED_COINS, REVOKED_DEVICES, REVOKED_MERCHANTS,
};
use crate::{encode, FundingSource, Issuer, IssuerError, Result, RETRIES};

/// How many versions of the list are kept for deltas. A terminal that missed more than
/// this many changes gets the full list, which it would need soon anyway.
pub const REVOCATION_SNAPSHOTS_KEPT: u64 = 32;

/// The latest stored version and an index of it, cached by the issuer so that a record of
/// a revoked device costs one small read (the latest version number), not a decode.
#[derive(Debug, Default)]
pub(crate) struct LatestRevocations {
    snapshot: Arc<RevocationSnapshot>,
    index: HashMap<RevokedItem, Timestamp>,
}

impl LatestRevocations {
    fn new(snapshot: RevocationSnapshot) -> Self {
        let index = snapshot
            .entries
            .iter()
            .map(|e| (e.item, e.listed_since))
            .collect();
        LatestRevocations {
            snapshot: Arc::new(snapshot),
            index,
        }
    }
}

/// The id kind of each source collection, as a listed item.
fn item_of(collection: scrip_stores::Collection, key: &[u8]) -> Option<RevokedItem> {
    let uuid = Uuid::from_bytes(key.try_into().ok()?);
    Some(if collection == REVOKED_DEVICES {
        RevokedItem::Device(DeviceId(uuid))
    } else if collection == FROZEN {
        RevokedItem::Account(AccountId(uuid))
    } else if collection == REVOKED_COINS {
        RevokedItem::Coin(CoinId(uuid))
    } else {
        RevokedItem::Merchant(MerchantId(uuid))
    })
}

/// The entries of the next publication: at most `max` of `items` (item, time its
/// revocation was recorded), chosen by [`truncation_rank`] then most recent revocation,
/// in item order, each listed since the time the latest version (`listed`) gives it, or
/// `now` if it is new.
fn entries_to_publish(
    mut items: Vec<(RevokedItem, Timestamp)>,
    listed: &HashMap<RevokedItem, Timestamp>,
    now: Timestamp,
    max: usize,
) -> Vec<RevocationEntry> {
    if items.len() > max {
        items.sort_by_key(|(item, at)| (truncation_rank(item), std::cmp::Reverse(*at), *item));
        items.truncate(max);
        items.sort_unstable();
    }
    items
        .into_iter()
        .map(|(item, _)| RevocationEntry {
            item,
            listed_since: listed.get(&item).copied().unwrap_or(now),
        })
        .collect()
}

/// Which kinds of item a list too long for one publication keeps first (see the module
/// doc): devices, merchants, identified coins, then frozen accounts.
fn truncation_rank(item: &RevokedItem) -> u8 {
    match item {
        RevokedItem::Device(_) => 0,
        RevokedItem::Merchant(_) => 1,
        RevokedItem::Coin(_) => 2,
        RevokedItem::Account(_) => 3,
    }
}

/// The delta from `base` to `latest`: entries new or listed anew, and items lifted.
fn delta(
    base: &RevocationSnapshot,
    latest: &RevocationSnapshot,
) -> (Vec<RevocationEntry>, Vec<RevokedItem>) {
    let before: BTreeMap<RevokedItem, Timestamp> = base
        .entries
        .iter()
        .map(|e| (e.item, e.listed_since))
        .collect();
    let now: BTreeMap<RevokedItem, Timestamp> = latest
        .entries
        .iter()
        .map(|e| (e.item, e.listed_since))
        .collect();
    let added = latest
        .entries
        .iter()
        .filter(|e| before.get(&e.item) != Some(&e.listed_since))
        .copied()
        .collect();
    let lifted = base
        .entries
        .iter()
        .filter(|e| !now.contains_key(&e.item))
        .map(|e| e.item)
        .collect();
    (added, lifted)
}

impl<S: RecordStore, F: FundingSource> Issuer<S, F> {
    /// The latest stored version of the revocation list (version 0, empty, before the
    /// first publication).
    pub async fn revocation_snapshot(&self) -> Result<Arc<RevocationSnapshot>> {
        Ok(Arc::clone(&self.latest_revocations().await?.snapshot))
    }

    async fn latest_revocations(&self) -> Result<Arc<LatestRevocations>> {
        let version = self
            .raw_value::<u64>(REVOCATION_LATEST, REVOCATION_LATEST_KEY)
            .await?
            .unwrap_or(0);
        let cached = match self.revocations.read() {
            Ok(c) => Arc::clone(&c),
            Err(p) => Arc::clone(&p.into_inner()),
        };
        if cached.snapshot.version == version {
            return Ok(cached);
        }
        let snapshot = self.stored_snapshot(version).await?.ok_or_else(|| {
            IssuerError::Corrupted(format!("revocation list version {version} is missing"))
        })?;
        let latest = Arc::new(LatestRevocations::new(snapshot));
        match self.revocations.write() {
            // Another task may have cached a later version meanwhile: keep the later.
            Ok(mut c) if c.snapshot.version < version => *c = Arc::clone(&latest),
            Err(p) => {
                let mut c = p.into_inner();
                if c.snapshot.version < version {
                    *c = Arc::clone(&latest);
                }
            }
            Ok(_) => {}
        }
        Ok(latest)
    }

    async fn stored_snapshot(&self, version: u64) -> Result<Option<RevocationSnapshot>> {
        if version == 0 {
            return Ok(Some(RevocationSnapshot::default()));
        }
        self.doc(REVOCATION_SNAPSHOTS, &revocation_version_key(version))
            .await
    }

    /// Since when the published list names `item`, if it does (the latest version).
    pub async fn listed_since(&self, item: &RevokedItem) -> Result<Option<Timestamp>> {
        Ok(self.latest_revocations().await?.index.get(item).copied())
    }

    /// Every item the issuer's state says to list, in item order, with the time its
    /// revocation (or freeze) was recorded.
    async fn items_to_list(&self) -> Result<Vec<(RevokedItem, Timestamp)>> {
        let mut items = Vec::new();
        for collection in [REVOKED_DEVICES, FROZEN, REVOKED_COINS, REVOKED_MERCHANTS] {
            let mut after: Option<Vec<u8>> = None;
            loop {
                let page = self
                    .store
                    .scan(collection, after.as_deref(), crate::MAX_PAGE)
                    .await?;
                for (key, value) in &page {
                    let item = item_of(collection, key).ok_or_else(|| {
                        IssuerError::Corrupted(format!("{} key", collection.name()))
                    })?;
                    let at = if collection == REVOKED_COINS {
                        codec::decode::<RevokedCoinDoc>(value).map(|d| d.at)
                    } else {
                        codec::decode::<Mark>(value).map(|d| d.at)
                    }
                    .map_err(|e| IssuerError::Corrupted(format!("{}: {e}", collection.name())))?;
                    items.push((item, at));
                }
                match page.last() {
                    Some((key, _)) if page.len() == crate::MAX_PAGE => after = Some(key.clone()),
                    _ => break,
                }
            }
        }
        items.sort_unstable();
        items.dedup_by_key(|(item, _)| *item);
        Ok(items)
    }

    /// Compares what the issuer's state lists with the latest stored version and, if they
    /// differ, stores the next version (see the module doc). Returns the latest version,
    /// new or not. Safe to run on every server of a cluster at once.
    pub async fn publish_revocations(&self, now: Timestamp) -> Result<Arc<RevocationSnapshot>> {
        for _ in 0..RETRIES {
            let latest = self.latest_revocations().await?;
            let items = self.items_to_list().await?;
            if items.len() > MAX_REVOCATION_ENTRIES {
                tracing::warn!(
                    listed = items.len(),
                    published = MAX_REVOCATION_ENTRIES,
                    "more revoked items than a list holds: publishing devices first, the most recent first"
                );
            }
            let entries = entries_to_publish(items, &latest.index, now, MAX_REVOCATION_ENTRIES);
            let unchanged = entries.len() == latest.snapshot.entries.len()
                && entries
                    .iter()
                    .zip(&latest.snapshot.entries)
                    .all(|(a, b)| a.item == b.item);
            if unchanged {
                return Ok(Arc::clone(&latest.snapshot));
            }
            let version = latest
                .snapshot
                .version
                .checked_add(1)
                .ok_or_else(|| IssuerError::Corrupted("revocation version overflow".into()))?;
            let snapshot = RevocationSnapshot {
                version,
                created_at: now,
                entries,
            };
            let bytes = encode(&snapshot)?;
            let mut unit = Unit::new(Claimant::Issuer, now)
                .claim(
                    REVOCATION_VERSION.claim(revocation_version_key(version)),
                    ContentDigest::of(&bytes),
                )
                .write(Write::put(
                    REVOCATION_SNAPSHOTS,
                    revocation_version_key(version),
                    bytes,
                ))
                .write(Write::put(
                    REVOCATION_LATEST,
                    REVOCATION_LATEST_KEY.to_vec(),
                    version.to_raw(),
                ));
            if let Some(pruned) = version.checked_sub(REVOCATION_SNAPSHOTS_KEPT) {
                if pruned > 0 {
                    unit = unit.write(Write::delete(
                        REVOCATION_SNAPSHOTS,
                        revocation_version_key(pruned),
                    ));
                }
            }
            if self.store.commit(unit).await? == CommitOutcome::Committed {
                tracing::info!(
                    version,
                    listed = snapshot.entries.len(),
                    "revocation list version published"
                );
                let latest = LatestRevocations::new(snapshot);
                let published = Arc::clone(&latest.snapshot);
                match self.revocations.write() {
                    Ok(mut c) => *c = Arc::new(latest),
                    Err(p) => *p.into_inner() = Arc::new(latest),
                }
                return Ok(published);
            }
            // Another server wrote this version first: read it and compare again.
        }
        Err(IssuerError::Contended {
            operation: "publishing the revocation list",
        })
    }

    /// The list to sign from `latest` for a client holding version `since`: the delta
    /// against it if `since` is a kept version not after `latest`, else the full list.
    /// `issued_at` is the signing time (a list's age runs from it).
    pub async fn revocation_list(
        &self,
        latest: &RevocationSnapshot,
        since: Option<u64>,
        issued_at: Timestamp,
    ) -> Result<RevocationListPayload> {
        let grace_secs = self.config.revocation_grace.as_secs();
        let full = || RevocationListPayload {
            version: latest.version,
            base_version: 0,
            issued_at,
            grace_secs,
            entries: latest.entries.clone(),
            lifted: Vec::new(),
        };
        let Some(since) = since.filter(|s| *s > 0 && *s <= latest.version) else {
            return Ok(full());
        };
        let base = if since == latest.version {
            None
        } else {
            match self.stored_snapshot(since).await? {
                Some(base) => Some(base),
                None => return Ok(full()), // pruned
            }
        };
        let (entries, lifted) = match &base {
            Some(base) => delta(base, latest),
            None => (Vec::new(), Vec::new()),
        };
        if entries.len() + lifted.len() > MAX_REVOCATION_ENTRIES {
            return Ok(full());
        }
        Ok(RevocationListPayload {
            version: latest.version,
            base_version: since,
            issued_at,
            grace_secs,
            entries,
            lifted,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(n: u128) -> RevokedItem {
        RevokedItem::Device(DeviceId(Uuid::from_u128(n)))
    }

    fn snapshot(version: u64, entries: &[(RevokedItem, u64)]) -> RevocationSnapshot {
        RevocationSnapshot {
            version,
            created_at: Timestamp::from_unix_millis(version),
            entries: entries
                .iter()
                .map(|(item, at)| RevocationEntry {
                    item: *item,
                    listed_since: Timestamp::from_unix_millis(*at),
                })
                .collect(),
        }
    }

    /// Review finding: ordering a cut by `listed_since` made a cut item come back as new
    /// at the next publication, push another out, and rotate revocations in and out (a
    /// new version every interval, devices missing from lists and honoured). The cut now
    /// depends on stored revocations only: publishing again changes nothing, and devices
    /// are kept before frozen accounts (which senders can cause by fraud).
    #[test]
    fn a_list_too_long_is_cut_the_same_way_every_time_devices_first() {
        let at = Timestamp::from_unix_millis;
        let account = |n: u128| RevokedItem::Account(AccountId(Uuid::from_u128(n)));
        let items = vec![
            (device(1), at(10)),
            (device(2), at(30)),
            (device(3), at(20)),
            (account(4), at(40)),
            (account(5), at(50)),
        ];
        let mut listed = HashMap::new();
        let first = entries_to_publish(items.clone(), &listed, at(100), 3);
        assert_eq!(
            first.iter().map(|e| e.item).collect::<Vec<_>>(),
            [device(1), device(2), device(3)],
            "devices before accounts, however recent the freezes"
        );
        for e in &first {
            listed.insert(e.item, e.listed_since);
        }
        let again = entries_to_publish(items.clone(), &listed, at(200), 3);
        assert_eq!(again, first, "the same set, listed since the same time");
        // With room for two devices only, the two most recently revoked stay, every time.
        let two = entries_to_publish(items.clone(), &listed, at(300), 2);
        assert_eq!(
            two.iter().map(|e| e.item).collect::<Vec<_>>(),
            [device(2), device(3)]
        );
        let mut listed_two = HashMap::new();
        for e in &two {
            listed_two.insert(e.item, e.listed_since);
        }
        assert_eq!(entries_to_publish(items, &listed_two, at(400), 2), two);
    }

    #[test]
    fn a_delta_lists_what_is_new_or_listed_anew_and_lifts_what_is_gone() {
        let base = snapshot(1, &[(device(1), 1), (device(2), 1), (device(3), 1)]);
        // 2 lifted, 3 lifted and listed again (a new listed_since), 4 new.
        let latest = snapshot(3, &[(device(1), 1), (device(3), 3), (device(4), 3)]);
        let (added, lifted) = delta(&base, &latest);
        assert_eq!(
            added.iter().map(|e| e.item).collect::<Vec<_>>(),
            [device(3), device(4)]
        );
        assert_eq!(lifted, [device(2)]);
    }
}
