//! The revocation list as this server serves it (`GET /v1/revocations[?since=V]`).
//!
//! An unauthenticated GET must not cost an RSA signature each time, so lists are signed
//! only here: the full list once per publication (the periodic step, or right after an
//! operator action on this node), and each delta at most once per publication, on first
//! demand, for a `since` among the kept versions (at most
//! [`crate::REVOCATION_SNAPSHOTS_KEPT`] + 1 of them). Every answer of one publication
//! carries its `issued_at`, so a list a client gets is as young as the last publication.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use scrip_tokens::{RevocationList, Timestamp};

use super::models::Format;
use super::{request_rng, AppState};
use crate::{Result, RevocationSnapshot, REVOCATION_SNAPSHOTS_KEPT};

/// A signed list and its encodings, each made on first demand and then served as is: a
/// full list is up to about 600 KB, and encoding it again for every unauthenticated GET
/// would make each small request cost the server an encoding of that size.
pub(crate) struct ServedList {
    list: RevocationList,
    json: OnceLock<bytes::Bytes>,
    bincode: OnceLock<bytes::Bytes>,
}

impl ServedList {
    fn new(list: RevocationList) -> Self {
        ServedList {
            list,
            json: OnceLock::new(),
            bincode: OnceLock::new(),
        }
    }

    /// The list encoded as `format` asks.
    pub(crate) fn encoded(&self, format: Format) -> std::result::Result<bytes::Bytes, String> {
        let cell = match format {
            Format::Json => &self.json,
            Format::Bincode => &self.bincode,
        };
        if let Some(bytes) = cell.get() {
            return Ok(bytes.clone());
        }
        let encoded = match format {
            Format::Json => serde_json::to_vec(&self.list).map_err(|e| e.to_string()),
            Format::Bincode => scrip_tokens::codec::encode(&self.list).map_err(|e| e.to_string()),
        }?;
        Ok(cell.get_or_init(|| bytes::Bytes::from(encoded)).clone())
    }
}

/// One publication: the version it signed, when, and what was signed from it.
struct Publication {
    snapshot: Arc<RevocationSnapshot>,
    issued_at: Timestamp,
    full: Arc<ServedList>,
    /// Deltas signed on demand, by the version they apply to.
    deltas: BTreeMap<u64, Arc<ServedList>>,
}

/// The signed lists of the latest publication.
#[derive(Default)]
pub(crate) struct PublishedRevocations {
    latest: tokio::sync::Mutex<Option<Publication>>,
}

impl PublishedRevocations {
    /// Stores a new version if the issuer's state changed, and signs the full list afresh
    /// (a list with no change gets a new `issued_at`, same version).
    pub(crate) async fn publish(&self, state: &AppState) -> Result<()> {
        // Built before taking the lock: the scan of every revoked item must not hold up
        // the GETs served meanwhile from the previous publication.
        let publication = Self::publication(state).await?;
        let mut latest = self.latest.lock().await;
        // Two publications racing (the periodic one and one after an operator action):
        // never replace a later version by an earlier one.
        if latest
            .as_ref()
            .is_none_or(|held| held.snapshot.version <= publication.snapshot.version)
        {
            *latest = Some(publication);
        }
        Ok(())
    }

    async fn publication(state: &AppState) -> Result<Publication> {
        let now = state.now();
        let snapshot = state.issuer.publish_revocations(now).await?;
        let payload = state.issuer.revocation_list(&snapshot, None, now).await?;
        let full = state.issuer.sign_answer(payload, now, &mut request_rng())?;
        Ok(Publication {
            snapshot,
            issued_at: now,
            full: Arc::new(ServedList::new(full)),
            deltas: BTreeMap::new(),
        })
    }

    /// The list for a client holding version `since` (none: the full list).
    pub(crate) async fn list(
        &self,
        state: &AppState,
        since: Option<u64>,
    ) -> Result<Arc<ServedList>> {
        let mut latest = self.latest.lock().await;
        let publication = match &mut *latest {
            Some(p) => p,
            // Asked before the first periodic publication.
            none => none.insert(Self::publication(state).await?),
        };
        let version = publication.snapshot.version;
        let Some(since) =
            since.filter(|s| *s > 0 && *s <= version && version - *s < REVOCATION_SNAPSHOTS_KEPT)
        else {
            return Ok(Arc::clone(&publication.full));
        };
        if let Some(delta) = publication.deltas.get(&since) {
            return Ok(Arc::clone(delta));
        }
        let payload = state
            .issuer
            .revocation_list(&publication.snapshot, Some(since), publication.issued_at)
            .await?;
        let list = if payload.is_full() {
            Arc::clone(&publication.full)
        } else {
            Arc::new(ServedList::new(state.issuer.sign_answer(
                payload,
                state.now(),
                &mut request_rng(),
            )?))
        };
        publication.deltas.insert(since, Arc::clone(&list));
        Ok(list)
    }
}

/// Publishes the revocation list every `every`, forever (on every server of a cluster:
/// each signs its own lists; the version claim keeps their versions one sequence).
pub(crate) async fn publish_loop(state: Arc<AppState>, every: Duration) {
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        publish_now(&state).await;
    }
}

/// One publication, its failure logged (the next tick retries).
pub(crate) async fn publish_now(state: &AppState) {
    if let Err(e) = state.revocations.publish(state).await {
        tracing::warn!(error = %e, "publishing the revocation list failed");
    }
}
