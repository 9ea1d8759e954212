//! `PostgresStore`: the record store on a PostgreSQL server (feature `postgres`), so that
//! several issuer processes share one store. Design and measurements:
//! `stores/design/postgres.md`.
//!
//! Each [`Unit`] is one call of the SQL function `scrip_apply_unit` (migration 1), which
//! takes the unit's claims, floors, postings and document writes as arrays and returns its
//! [`CommitOutcome`]. The calls of one batch run pipelined in one READ COMMITTED
//! transaction; claims are inserted in key order under a unique index and balance rows are
//! locked in key order, so concurrent units behave as if serialized without SERIALIZABLE's
//! aborts. One writer task per store batches the units of concurrent callers (group
//! commit); reads go through a connection pool.

#[cfg(feature = "conformance")]
pub(crate) mod throwaway;

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use scrip_tokens::{ContentDigest, Currency, Timestamp};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::types::ToSql;
use tokio_postgres::NoTls;

use crate::model::{
    ClaimId, Claimant, CommitOutcome, ExistingClaim, LedgerAccount, LedgerEntry, Unit,
};
use crate::{Collection, RecordStore, Result, StoreError, StoreStats};

/// The schema migrations, in order; the version table records which are applied.
const MIGRATIONS: &[(i32, &str)] = &[(1, include_str!("0001_init.sql"))];
/// Advisory lock key taken while migrating (one migrator at a time, cluster-wide).
const MIGRATION_LOCK: i64 = 0x5c21_9000_0001;
/// Most units one writer transaction carries.
const MAX_BATCH_UNITS: usize = 4_096;
/// Most commit calls waiting for the writer; more callers wait for room (backpressure)
/// instead of growing the queue.
const MAX_WAITING_JOBS: usize = 1_024;
/// How often a batch that deadlocked or failed to serialize is tried again.
const BATCH_ATTEMPTS: usize = 5;

const APPLY: &str = "SELECT outcome, first_claimed_at, held_claimants, held_ats, held_digests, \
    floor_index, floor_balance FROM scrip_apply_unit($1, $2, $3, $4, $5, $6, $7, \
    $8::text[]::numeric[], $9, $10, $11, $12::text[]::numeric[], $13, $14, $15)";

fn db(e: impl std::fmt::Display) -> StoreError {
    StoreError::Database {
        sqlstate: None,
        message: e.to_string(),
    }
}

fn corrupted(what: &str) -> StoreError {
    StoreError::Corrupted(format!("postgres: {what}"))
}

/// Claimant in the `claims` table: a kind byte, then the id.
fn claimant_bytes(claimant: &Claimant) -> Vec<u8> {
    let (kind, id) = match claimant {
        Claimant::Merchant(id) => (1u8, Some(id.0)),
        Claimant::Account(id) => (2, Some(id.0)),
        Claimant::Device(id) => (3, Some(id.0)),
        Claimant::Issuer => (4, None),
    };
    let mut out = vec![kind];
    if let Some(id) = id {
        out.extend_from_slice(id.as_bytes());
    }
    out
}

fn parse_claimant(bytes: &[u8]) -> Result<Claimant> {
    let id = || -> Result<uuid::Uuid> {
        let raw: [u8; 16] = bytes
            .get(1..)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| corrupted("claimant"))?;
        Ok(uuid::Uuid::from_bytes(raw))
    };
    match bytes.first() {
        Some(1) => Ok(Claimant::Merchant(scrip_tokens::MerchantId(id()?))),
        Some(2) => Ok(Claimant::Account(scrip_tokens::AccountId(id()?))),
        Some(3) => Ok(Claimant::Device(scrip_tokens::DeviceId(id()?))),
        Some(4) if bytes.len() == 1 => Ok(Claimant::Issuer),
        _ => Err(corrupted("claimant")),
    }
}

fn timestamp(ms: i64) -> Result<Timestamp> {
    u64::try_from(ms)
        .map(Timestamp::from_unix_millis)
        .map_err(|_| corrupted("timestamp"))
}

fn millis(at: Timestamp) -> Result<i64> {
    i64::try_from(at.as_unix_millis()).map_err(|_| StoreError::InvalidUnit("time out of range"))
}

fn amount(text: &str) -> Result<i128> {
    i128::from_str(text).map_err(|_| corrupted("amount"))
}

fn digest(bytes: &[u8]) -> Result<ContentDigest> {
    let raw: [u8; 32] = bytes.try_into().map_err(|_| corrupted("digest"))?;
    Ok(ContentDigest(raw))
}

fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn existing(
    claimant: Option<Vec<u8>>,
    at: Option<i64>,
    dig: Option<Vec<u8>>,
) -> Result<Option<ExistingClaim>> {
    match (claimant, at, dig) {
        (Some(c), Some(at), Some(d)) => Ok(Some(ExistingClaim {
            claimant: parse_claimant(&c)?,
            claimed_at: timestamp(at)?,
            digest: digest(&d)?,
        })),
        _ => Ok(None),
    }
}

struct Job {
    units: Vec<Unit>,
    reply: oneshot::Sender<Result<Vec<CommitOutcome>>>,
}

#[derive(Default)]
struct Counters {
    units: AtomicU64,
    batches: AtomicU64,
    batch_micros: AtomicU64,
}

/// How [`PostgresStore::connect_with`] sets up the store.
#[derive(Clone, Debug)]
pub struct PostgresOptions {
    /// Most connections the store opens (reads use the pool; the writer takes one per
    /// batch).
    pub max_connections: usize,
    /// Ledger accounts every unit of the cluster posts to (the issuer's system accounts),
    /// split into this many balance rows so that concurrent units touch different rows;
    /// their balance is the sum of the stripes. Stripe counts only grow: a smaller count
    /// than the database has is ignored.
    pub striped_accounts: Vec<(LedgerAccount, u16)>,
}

impl Default for PostgresOptions {
    /// 16 connections, no striped account.
    fn default() -> Self {
        PostgresOptions {
            max_connections: 16,
            striped_accounts: Vec::new(),
        }
    }
}

/// A record store on a PostgreSQL server, shareable by several processes.
pub struct PostgresStore {
    pool: Pool,
    jobs: mpsc::Sender<Job>,
    closed: AtomicBool,
    counters: std::sync::Arc<Counters>,
}

impl PostgresStore {
    /// Connects to `url` (a libpq connection string or `postgres://` URL), applies any
    /// migration the database lacks (one process at a time, under an advisory lock) and
    /// starts the writer. Must run inside a tokio runtime.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, PostgresOptions::default()).await
    }

    /// [`Self::connect`] with `options`.
    pub async fn connect_with(url: &str, options: PostgresOptions) -> Result<Self> {
        let config = tokio_postgres::Config::from_str(url).map_err(db_code)?;
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.max_connections.max(1))
            .build()
            .map_err(db)?;
        migrate(&pool).await?;
        let (jobs, queue) = mpsc::channel(MAX_WAITING_JOBS);
        let counters = std::sync::Arc::new(Counters::default());
        tokio::spawn(write_batches(
            pool.clone(),
            queue,
            std::sync::Arc::clone(&counters),
        ));
        Ok(PostgresStore {
            pool,
            jobs,
            closed: AtomicBool::new(false),
            counters,
        })
    }

    async fn client(&self) -> Result<deadpool_postgres::Object> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        self.pool.get().await.map_err(db)
    }
}

async fn migrate(pool: &Pool) -> Result<()> {
    let mut client = pool.get().await.map_err(db)?;
    let tx = client.transaction().await.map_err(db_code)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(db_code)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS scrip_schema_version \
         (version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .await
    .map_err(db_code)?;
    let current: i32 = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM scrip_schema_version",
            &[],
        )
        .await
        .map_err(db_code)?
        .get(0);
    let newest = MIGRATIONS.last().map_or(0, |(v, _)| *v);
    if current > newest {
        return Err(StoreError::UnsupportedFormat {
            found: u16::try_from(current).unwrap_or(u16::MAX),
            supported: u16::try_from(newest).unwrap_or(u16::MAX),
        });
    }
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        tx.batch_execute(sql).await.map_err(db_code)?;
        tx.execute(
            "INSERT INTO scrip_schema_version (version) VALUES ($1)",
            &[version],
        )
        .await
        .map_err(db_code)?;
    }
    tx.commit().await.map_err(db_code)
}

/// The writer: takes every job waiting (up to a batch), runs their units in one
/// transaction, answers each job.
async fn write_batches(
    pool: Pool,
    mut queue: mpsc::Receiver<Job>,
    counters: std::sync::Arc<Counters>,
) {
    while let Some(first) = queue.recv().await {
        let mut jobs = vec![first];
        let mut units: usize = jobs[0].units.len();
        while units < MAX_BATCH_UNITS {
            match queue.try_recv() {
                Ok(job) => {
                    units += job.units.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let started = Instant::now();
        let all: Vec<&Unit> = jobs.iter().flat_map(|j| j.units.iter()).collect();
        let mut result = apply_batch(&pool, &all).await;
        for _ in 1..BATCH_ATTEMPTS {
            match &result {
                Err(StoreError::Database {
                    sqlstate: Some(code),
                    ..
                }) if retryable(code) => result = apply_batch(&pool, &all).await,
                _ => break,
            }
        }
        counters.units.fetch_add(units as u64, Ordering::Relaxed);
        counters.batches.fetch_add(1, Ordering::Relaxed);
        counters.batch_micros.fetch_add(
            u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        match result {
            Ok(mut outcomes) => {
                for job in jobs {
                    let rest = outcomes.split_off(job.units.len().min(outcomes.len()));
                    let mine = std::mem::replace(&mut outcomes, rest);
                    let _ = job.reply.send(Ok(mine));
                }
            }
            Err(e) => {
                for job in jobs {
                    let _ = job.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// Deadlock, serialization failure, lock timeout: the batch rolled back whole.
fn retryable(sqlstate: &str) -> bool {
    ["40P01", "40001", "55P03"].contains(&sqlstate)
}

fn db_code(e: tokio_postgres::Error) -> StoreError {
    StoreError::Database {
        sqlstate: e.code().map(|c| c.code().to_owned()),
        message: e.to_string(),
    }
}

async fn apply_batch(pool: &Pool, units: &[&Unit]) -> Result<Vec<CommitOutcome>> {
    let mut client = pool.get().await.map_err(db)?;
    let tx = client.transaction().await.map_err(db_code)?;
    let statement = tx.prepare_cached(APPLY).await.map_err(db_code)?;
    // Polled together, the calls are pipelined in order on the one connection: a batch
    // costs about one round trip, not one per unit.
    let outcomes =
        futures_util::future::try_join_all(units.iter().map(|u| apply_unit(&tx, &statement, u)))
            .await?;
    tx.commit().await.map_err(db_code)?;
    Ok(outcomes)
}

async fn apply_unit(
    tx: &deadpool_postgres::Transaction<'_>,
    statement: &tokio_postgres::Statement,
    unit: &Unit,
) -> Result<CommitOutcome> {
    let claimant = claimant_bytes(&unit.claimant);
    let at = millis(unit.at)?;
    let stripe: i32 = 0;
    let c_ids: Vec<Vec<u8>> = unit.claims.iter().map(|c| c.id.key_bytes()).collect();
    let c_digests: Vec<Vec<u8>> = unit
        .claims
        .iter()
        .map(|c| c.digest.as_bytes().to_vec())
        .collect();
    let p_accounts: Vec<Vec<u8>> = unit
        .postings
        .iter()
        .map(|p| p.account.key_bytes())
        .collect();
    let p_currencies: Vec<Vec<u8>> = unit
        .postings
        .iter()
        .map(|p| p.currency.as_bytes().to_vec())
        .collect();
    let p_deltas: Vec<String> = unit.postings.iter().map(|p| p.delta.to_string()).collect();
    let p_memos: Vec<String> = unit.postings.iter().map(|p| p.memo.clone()).collect();
    let f_accounts: Vec<Vec<u8>> = unit.floors.iter().map(|f| f.account.key_bytes()).collect();
    let f_currencies: Vec<Vec<u8>> = unit
        .floors
        .iter()
        .map(|f| f.currency.as_bytes().to_vec())
        .collect();
    let f_mins: Vec<String> = unit.floors.iter().map(|f| f.min.to_string()).collect();
    let w_collections: Vec<Vec<u8>> = unit
        .writes
        .iter()
        .map(|w| w.collection.name().as_bytes().to_vec())
        .collect();
    let w_keys: Vec<Vec<u8>> = unit.writes.iter().map(|w| w.key.clone()).collect();
    let w_values: Vec<Option<Vec<u8>>> = unit.writes.iter().map(|w| w.value.clone()).collect();
    let params: [&(dyn ToSql + Sync); 15] = [
        &claimant,
        &at,
        &stripe,
        &c_ids,
        &c_digests,
        &p_accounts,
        &p_currencies,
        &p_deltas,
        &p_memos,
        &f_accounts,
        &f_currencies,
        &f_mins,
        &w_collections,
        &w_keys,
        &w_values,
    ];
    let row = tx.query_one(statement, &params).await.map_err(db_code)?;
    let outcome: i16 = row.get(0);
    match outcome {
        0 => Ok(CommitOutcome::Committed),
        1 => {
            let first: Option<i64> = row.get(1);
            Ok(CommitOutcome::Repeated {
                first_claimed_at: timestamp(first.ok_or_else(|| corrupted("repeat time"))?)?,
            })
        }
        2 => {
            let claimants: Vec<Option<Vec<u8>>> = row.get::<_, Option<_>>(2).unwrap_or_default();
            let ats: Vec<Option<i64>> = row.get::<_, Option<_>>(3).unwrap_or_default();
            let digests: Vec<Option<Vec<u8>>> = row.get::<_, Option<_>>(4).unwrap_or_default();
            if claimants.len() != unit.claims.len()
                || ats.len() != unit.claims.len()
                || digests.len() != unit.claims.len()
            {
                return Err(corrupted("conflict report"));
            }
            let report = unit
                .claims
                .iter()
                .zip(claimants.into_iter().zip(ats).zip(digests))
                .map(|(c, ((who, at), d))| Ok((c.id.clone(), existing(who, at, d)?)))
                .collect::<Result<Vec<(ClaimId, Option<ExistingClaim>)>>>()?;
            Ok(CommitOutcome::Conflict(report))
        }
        3 => {
            let index: Option<i32> = row.get(5);
            let after: Option<String> = row.get(6);
            let floor = index
                .and_then(|i| usize::try_from(i).ok())
                .and_then(|i| i.checked_sub(1))
                .and_then(|i| unit.floors.get(i))
                .ok_or_else(|| corrupted("floor index"))?;
            Ok(CommitOutcome::InsufficientFunds {
                account: floor.account.clone(),
                currency: floor.currency,
                balance_after: amount(&after.ok_or_else(|| corrupted("floor balance"))?)?,
                min: floor.min,
            })
        }
        _ => Err(corrupted("outcome")),
    }
}

#[async_trait]
impl RecordStore for PostgresStore {
    async fn commit_many(&self, units: Vec<Unit>) -> Result<Vec<CommitOutcome>> {
        for unit in &units {
            unit.validate()?;
        }
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        if units.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { units, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn claims(&self, ids: &[ClaimId]) -> Result<Vec<Option<ExistingClaim>>> {
        let keys: Vec<Vec<u8>> = ids.iter().map(ClaimId::key_bytes).collect();
        let rows = self
            .client()
            .await?
            .query(
                "SELECT c.claimant, c.claimed_at, c.digest \
                 FROM unnest($1::bytea[]) WITH ORDINALITY AS u(id, ord) \
                 LEFT JOIN claims c ON c.id = u.id ORDER BY u.ord",
                &[&keys],
            )
            .await
            .map_err(db_code)?;
        rows.iter()
            .map(|r| existing(r.get(0), r.get(1), r.get(2)))
            .collect()
    }

    async fn balance(&self, account: &LedgerAccount, currency: Currency) -> Result<i128> {
        let row = self
            .client()
            .await?
            .query_one(
                "SELECT coalesce(sum(balance), 0)::text FROM balances \
                 WHERE account = $1 AND currency = $2",
                &[&account.key_bytes(), &currency.as_bytes().to_vec()],
            )
            .await
            .map_err(db_code)?;
        amount(row.get(0))
    }

    async fn balances(
        &self,
        after: Option<(LedgerAccount, Currency)>,
        limit_: usize,
    ) -> Result<Vec<(LedgerAccount, Currency, i128)>> {
        let (account, currency) = match &after {
            Some((a, c)) => (Some(a.key_bytes()), Some(c.as_bytes().to_vec())),
            None => (None, None),
        };
        let rows = self
            .client()
            .await?
            .query(
                "SELECT account, currency, sum(balance)::text FROM balances \
                 WHERE $1::bytea IS NULL OR (account, currency) > ($1, $2::bytea) \
                 GROUP BY account, currency HAVING sum(postings) > 0 \
                 ORDER BY account, currency LIMIT $3",
                &[&account, &currency, &limit(limit_)],
            )
            .await
            .map_err(db_code)?;
        rows.iter()
            .map(|r| {
                let key: Vec<u8> = r.get(0);
                let (account, rest) =
                    LedgerAccount::parse_key(&key).ok_or_else(|| corrupted("account"))?;
                if !rest.is_empty() {
                    return Err(corrupted("account"));
                }
                let code: Vec<u8> = r.get(1);
                let code: [u8; 3] = code.try_into().map_err(|_| corrupted("currency"))?;
                let currency = Currency::from_bytes(code).map_err(|_| corrupted("currency"))?;
                Ok((account, currency, amount(r.get(2))?))
            })
            .collect()
    }

    async fn ledger_entries(
        &self,
        account: &LedgerAccount,
        currency: Currency,
        after_seq: Option<u64>,
        limit_: usize,
    ) -> Result<Vec<LedgerEntry>> {
        let Ok(after) = i64::try_from(after_seq.unwrap_or(0)) else {
            return Ok(Vec::new());
        };
        let rows = self
            .client()
            .await?
            .query(
                "SELECT seq, at, claimant, delta::text, balance_after::text, memo \
                 FROM ledger_entries WHERE account = $1 AND currency = $2 AND seq > $3 \
                 ORDER BY seq LIMIT $4",
                &[
                    &account.key_bytes(),
                    &currency.as_bytes().to_vec(),
                    &after,
                    &limit(limit_),
                ],
            )
            .await
            .map_err(db_code)?;
        rows.iter()
            .map(|r| {
                let seq: i64 = r.get(0);
                let claimant: Vec<u8> = r.get(2);
                Ok(LedgerEntry {
                    seq: u64::try_from(seq).map_err(|_| corrupted("seq"))?,
                    at: timestamp(r.get(1))?,
                    claimant: parse_claimant(&claimant)?,
                    delta: amount(r.get(3))?,
                    balance_after: amount(r.get(4))?,
                    memo: r.get(5),
                })
            })
            .collect()
    }

    async fn get(&self, collection: Collection, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT value FROM documents WHERE collection = $1 AND key = $2",
                &[&collection.name().as_bytes(), &key],
            )
            .await
            .map_err(db_code)?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn scan(
        &self,
        collection: Collection,
        after: Option<&[u8]>,
        limit_: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT key, value FROM documents WHERE collection = $1 \
                 AND ($2::bytea IS NULL OR key > $2) ORDER BY key LIMIT $3",
                &[&collection.name().as_bytes(), &after, &limit(limit_)],
            )
            .await
            .map_err(db_code)?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    fn stats(&self) -> StoreStats {
        StoreStats {
            units: self.counters.units.load(Ordering::Relaxed),
            batches: self.counters.batches.load(Ordering::Relaxed),
            batch_micros: self.counters.batch_micros.load(Ordering::Relaxed),
        }
    }

    async fn check_writable(&self) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_code)?;
        tx.execute("SELECT pg_current_xact_id()", &[])
            .await
            .map_err(db_code)?;
        tx.commit().await.map_err(db_code)
    }

    async fn close(&self) -> Result<()> {
        self.closed.store(true, Ordering::Release);
        self.pool.close();
        Ok(())
    }
}

// Placeholder until the cluster tables land (migration 2): every call fails.
#[async_trait]
impl crate::ClusterState for PostgresStore {
    async fn remember_nonce(&self, _key: [u8; 16], _forget_at: Timestamp) -> Result<bool> {
        Err(StoreError::Closed)
    }
    async fn forget_nonces(&self, _before: Timestamp) -> Result<u64> {
        Err(StoreError::Closed)
    }
    async fn try_lead(
        &self,
        _job: &str,
        _holder: uuid::Uuid,
        _lease: std::time::Duration,
    ) -> Result<bool> {
        Err(StoreError::Closed)
    }
    async fn cluster_now(&self) -> Result<Timestamp> {
        Err(StoreError::Closed)
    }
    async fn keyring_epoch(&self) -> Result<Option<crate::KeyringEpoch>> {
        Err(StoreError::Closed)
    }
    async fn publish_keyring(
        &self,
        _fingerprint: [u8; 32],
        _expected_previous: Option<u64>,
    ) -> Result<crate::PublishOutcome> {
        Err(StoreError::Closed)
    }
}
