//! [`ClusterState`] on the store's own database (tables of migrations 1 and 2): the
//! processes connected to one database share its nonce table, its job leases, its keyring
//! epochs and its clock. Every call is one statement through the pool (the writer's
//! batches never wait for them), except [`ClusterState::forget_nonces`], one statement per
//! chunk of at most `FORGET_CHUNK` rows.

use std::time::Duration;

use async_trait::async_trait;
use scrip_tokens::Timestamp;

use super::{corrupted, db_code, millis, timestamp, PostgresStore};
use crate::{ClusterState, KeyringEpoch, PublishOutcome, Result};

/// Most nonces one statement of `forget_nonces` deletes: a backlog of millions is deleted
/// in many short transactions, not one that holds its row locks and its WAL for minutes.
const FORGET_CHUNK: i64 = 10_000;
/// Longer leases are cut to this (a year): the lease's end must stay a valid timestamp.
const LONGEST_LEASE: Duration = Duration::from_secs(365 * 24 * 60 * 60);

const REMEMBER: &str =
    "INSERT INTO nonces (key, forget_at) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING";
// SKIP LOCKED: two processes pruning at once share the work instead of queueing on the
// same rows.
const FORGET: &str = "DELETE FROM nonces WHERE key IN (SELECT key FROM nonces \
    WHERE forget_at < $1 ORDER BY forget_at LIMIT $2 FOR UPDATE SKIP LOCKED)";
// Taken when free or expired, renewed when ours; a row comes back exactly when `holder`
// holds the lease afterwards. `now()` is the statement's start on the database clock: no
// later than the caller's call, so the lease never ends before the caller thinks it does.
const LEAD: &str = "INSERT INTO job_leases AS l (job, holder, until) \
    VALUES ($1, $2::text::uuid, now() + $3::bigint * interval '1 microsecond') \
    ON CONFLICT (job) DO UPDATE SET holder = excluded.holder, until = excluded.until \
    WHERE l.holder = excluded.holder OR l.until <= now() \
    RETURNING 1";
// Only the holder's own row: a holder whose lease was taken over must not free its
// successor's.
const RELEASE: &str = "DELETE FROM job_leases WHERE job = $1 AND holder = $2::text::uuid";
const NOW: &str = "SELECT floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint";
const CURRENT_KEYRING: &str =
    "SELECT epoch, fingerprint FROM keyring_epochs ORDER BY epoch DESC LIMIT 1";
const PUBLISH: &str = "SELECT published, current_epoch, current_fingerprint \
    FROM scrip_publish_keyring($1, $2)";

fn epoch(number: Option<i64>, fingerprint: Option<Vec<u8>>) -> Result<Option<KeyringEpoch>> {
    match (number, fingerprint) {
        (Some(number), Some(fingerprint)) => Ok(Some(KeyringEpoch {
            epoch: u64::try_from(number).map_err(|_| corrupted("keyring epoch"))?,
            fingerprint: fingerprint
                .try_into()
                .map_err(|_| corrupted("keyring fingerprint"))?,
        })),
        (None, None) => Ok(None),
        _ => Err(corrupted("keyring epoch")),
    }
}

/// Shared through the database: see the trait for the contract. Specific to PostgreSQL:
/// - a nonce stays remembered (a replay) until `forget_nonces` removes it, even once its
///   `forget_at` has passed;
/// - leases are measured on the database clock from the start of the `try_lead`
///   statement, and cut to a year; `release_lead` deletes the holder's row;
/// - `forget_nonces` deletes the oldest due nonces first, in chunks of at most 10 000
///   rows (one transaction each), skipping rows another process is deleting;
/// - `publish_keyring` appends to the `keyring_epochs` table (the history of every
///   keyring published); `expected_previous` must name the newest epoch exactly
///   (`Some(0)` never does).
#[async_trait]
impl ClusterState for PostgresStore {
    async fn remember_nonce(&self, key: [u8; 16], forget_at: Timestamp) -> Result<bool> {
        let forget_at = millis(forget_at)?;
        let client = self.client().await?;
        let statement = client.prepare_cached(REMEMBER).await.map_err(db_code)?;
        let inserted = client
            .execute(&statement, &[&key.as_slice(), &forget_at])
            .await
            .map_err(db_code)?;
        Ok(inserted == 1)
    }

    async fn forget_nonces(&self, before: Timestamp, max_rows: u64) -> Result<u64> {
        let before = millis(before)?;
        if max_rows == 0 {
            return Ok(0);
        }
        let client = self.client().await?;
        let statement = client.prepare_cached(FORGET).await.map_err(db_code)?;
        let mut forgotten = 0u64;
        while forgotten < max_rows {
            let chunk = i64::try_from(max_rows - forgotten)
                .unwrap_or(i64::MAX)
                .min(FORGET_CHUNK);
            let deleted = client
                .execute(&statement, &[&before, &chunk])
                .await
                .map_err(db_code)?;
            forgotten = forgotten.saturating_add(deleted);
            // A short chunk: nothing left that is not being deleted by someone else.
            if deleted < chunk.unsigned_abs() {
                break;
            }
        }
        Ok(forgotten)
    }

    async fn try_lead(&self, job: &str, holder: uuid::Uuid, lease: Duration) -> Result<bool> {
        let micros = i64::try_from(lease.min(LONGEST_LEASE).as_micros()).unwrap_or(i64::MAX);
        let client = self.client().await?;
        let statement = client.prepare_cached(LEAD).await.map_err(db_code)?;
        let held = client
            .query_opt(&statement, &[&job, &holder.to_string(), &micros])
            .await
            .map_err(db_code)?;
        Ok(held.is_some())
    }

    async fn release_lead(&self, job: &str, holder: uuid::Uuid) -> Result<()> {
        let client = self.client().await?;
        let statement = client.prepare_cached(RELEASE).await.map_err(db_code)?;
        client
            .execute(&statement, &[&job, &holder.to_string()])
            .await
            .map_err(db_code)?;
        Ok(())
    }

    async fn cluster_now(&self) -> Result<Timestamp> {
        let row = self
            .client()
            .await?
            .query_one(NOW, &[])
            .await
            .map_err(db_code)?;
        timestamp(row.try_get(0).map_err(db_code)?)
    }

    async fn keyring_epoch(&self) -> Result<Option<KeyringEpoch>> {
        let row = self
            .client()
            .await?
            .query_opt(CURRENT_KEYRING, &[])
            .await
            .map_err(db_code)?;
        match row {
            None => Ok(None),
            Some(row) => epoch(
                row.try_get(0).map_err(db_code)?,
                row.try_get(1).map_err(db_code)?,
            ),
        }
    }

    async fn publish_keyring(
        &self,
        fingerprint: [u8; 32],
        expected_previous: Option<u64>,
    ) -> Result<PublishOutcome> {
        // An epoch beyond i64 exists nowhere: -1 matches no row, and is not NULL (none).
        let expected = expected_previous.map(|e| i64::try_from(e).unwrap_or(-1));
        let row = self
            .client()
            .await?
            .query_one(PUBLISH, &[&fingerprint.as_slice(), &expected])
            .await
            .map_err(db_code)?;
        let published: bool = row.try_get(0).map_err(db_code)?;
        let current = epoch(
            row.try_get(1).map_err(db_code)?,
            row.try_get(2).map_err(db_code)?,
        )?;
        match (published, current) {
            (true, Some(current)) => Ok(PublishOutcome::Current(current)),
            (true, None) => Err(corrupted("published keyring missing")),
            (false, current) => Ok(PublishOutcome::Stale { current }),
        }
    }
}
