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
//!
//! **Striped accounts.** The accounts every unit posts to (the issuer's system accounts)
//! are split into stripes ([`PostgresOptions::striped_accounts`]): each writer transaction
//! posts to one stripe chosen at random, so the writers of several processes rarely wait
//! for one another's row. Their entries are queued and numbered later by
//! `scrip_sequence_striped`, which a background task of every store runs every
//! [`SEQUENCER_PERIOD`], and which [`RecordStore::ledger_entries`] runs itself first, so
//! a ledger read shows every posting committed before it.
//!
//! [`crate::ClusterState`] is implemented in `cluster.rs` (migration 2).

mod cluster;
#[cfg(feature = "conformance")]
pub(crate) mod throwaway;

use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use scrip_tokens::{ContentDigest, Currency, Timestamp};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_postgres::types::ToSql;
use tokio_postgres::NoTls;

use crate::model::{
    ClaimId, Claimant, CommitOutcome, ExistingClaim, LedgerAccount, LedgerEntry, Unit,
};
use crate::{Collection, RecordStore, Result, StoreError, StoreStats};

/// The schema migrations, in order; the version table records which are applied.
const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("0001_init.sql")),
    (2, include_str!("0002_cluster.sql")),
];
/// Advisory lock key taken while migrating (one migrator at a time, cluster-wide).
const MIGRATION_LOCK: i64 = 0x5c21_9000_0001;
/// Most units one writer transaction carries.
const MAX_BATCH_UNITS: usize = 4_096;
/// Most commit calls waiting for the writer; more callers wait for room (backpressure)
/// instead of growing the queue.
const MAX_WAITING_JOBS: usize = 1_024;
/// Longest wait for a pooled connection, for a new one, or for recycling one.
const POOL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// How often a batch that deadlocked or failed to serialize is tried again.
const BATCH_ATTEMPTS: usize = 5;
/// How often the background task numbers the queued entries of striped accounts. Ledger
/// reads catch up themselves; this bounds the queue (and the work a read may find).
const SEQUENCER_PERIOD: Duration = Duration::from_millis(200);
/// Most queued entries one sequencer transaction numbers.
const SEQUENCE_CHUNK: i32 = 10_000;

/// Numbers queued entries if there are any (an empty queue costs no lock).
const SEQUENCE_ALL: &str =
    "SELECT scrip_sequence_striped($1) WHERE EXISTS (SELECT 1 FROM striped_entries)";
/// Numbers queued entries if `account` is striped and has some queued in `currency`.
const SEQUENCE_ACCOUNT: &str = "SELECT scrip_sequence_striped($3) FROM striped_accounts \
    WHERE account = $1 AND EXISTS \
    (SELECT 1 FROM striped_entries WHERE account = $1 AND currency = $2)";
const LEDGER_PAGE: &str = "SELECT seq, at, claimant, delta::text, balance_after::text, memo \
    FROM ledger_entries WHERE account = $1 AND currency = $2 AND seq > $3 \
    ORDER BY seq LIMIT $4";

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
        Claimant::Holder => (5, None),
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
        Some(5) if bytes.len() == 1 => Ok(Claimant::Holder),
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
    /// split into this many balance rows (1 to 1024; the schema refuses others) so that
    /// concurrent units touch different rows; their balance is the sum of the stripes.
    ///
    /// Registered at connect, for the whole database: an account striped once stays
    /// striped, and stripe counts only grow (a smaller count than the database has is
    /// ignored), because a floor on a striped account locks stripes `0..n` of the count
    /// it reads and a balance sums every stripe row: fewer stripes would leave rows out of
    /// both. An account's ledger keeps its sequence numbers and balances when it becomes
    /// striped. Changing the set waits for every writer transaction in flight and holds
    /// new ones back until it commits (a moment, once per change); a connect that changes
    /// nothing takes no lock.
    ///
    /// The entries of a striped account get their `seq` from a sequencer shortly after
    /// commit (every store runs it in the background; [`RecordStore::ledger_entries`]
    /// runs it first when entries are waiting), so a ledger read never misses a committed
    /// posting.
    pub striped_accounts: Vec<(LedgerAccount, u16)>,
    /// TLS to the database.
    pub tls: PostgresTls,
}

impl Default for PostgresOptions {
    /// 16 connections, no striped account, no TLS.
    fn default() -> Self {
        PostgresOptions {
            max_connections: 16,
            striped_accounts: Vec::new(),
            tls: PostgresTls::Off,
        }
    }
}

/// How the store's connections to the database are protected.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum PostgresTls {
    /// No TLS: a Unix socket, a database on the same host, or a network the operator
    /// trusts. A URL that asks for TLS (`sslmode=require`) fails to connect.
    #[default]
    Off,
    /// TLS required (whatever the URL's `sslmode` says): the server's certificate must
    /// chain to one of the PEM certificates in this file and name the URL's host. The
    /// database's password, the nonces, leases and ledger then cross the network
    /// encrypted and authenticated.
    VerifyWithCaFile(std::path::PathBuf),
}

/// The TLS connector of [`PostgresTls::VerifyWithCaFile`], ring as the crypto provider.
fn tls_connector(ca_file: &std::path::Path) -> Result<tokio_postgres_rustls::MakeRustlsConnect> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let unreadable = |e: &dyn std::fmt::Display| {
        StoreError::DatabaseTls(format!("reading {}: {e}", ca_file.display()))
    };
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_file_iter(ca_file).map_err(|e| unreadable(&e))? {
        let certificate = certificate.map_err(|e| unreadable(&e))?;
        roots.add(certificate).map_err(|e| unreadable(&e))?;
    }
    if roots.is_empty() {
        return Err(StoreError::DatabaseTls(format!(
            "{} holds no certificate",
            ca_file.display()
        )));
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| StoreError::DatabaseTls(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// A record store on a PostgreSQL server, shareable by several processes.
pub struct PostgresStore {
    pool: Pool,
    jobs: mpsc::Sender<Job>,
    closed: AtomicBool,
    counters: std::sync::Arc<Counters>,
    /// Stops the background sequencer: `true` on close; dropped with the store.
    stop: watch::Sender<bool>,
}

impl PostgresStore {
    /// Connects to `url` (a libpq connection string or `postgres://` URL), applies any
    /// migration the database lacks (one process at a time, under an advisory lock) and
    /// starts the writer and the sequencer of striped accounts (tasks that end with the
    /// store). Must run inside a tokio runtime.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, PostgresOptions::default()).await
    }

    /// [`Self::connect`] with `options`.
    pub async fn connect_with(url: &str, options: PostgresOptions) -> Result<Self> {
        let mut config = tokio_postgres::Config::from_str(url).map_err(db_code)?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(POOL_TIMEOUT);
        }
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match &options.tls {
            PostgresTls::Off => Manager::from_config(config, NoTls, manager_config),
            PostgresTls::VerifyWithCaFile(ca_file) => {
                config.ssl_mode(tokio_postgres::config::SslMode::Require);
                Manager::from_config(config, tls_connector(ca_file)?, manager_config)
            }
        };
        // A database that stops answering (a partition, a failover) must turn requests
        // into retryable errors, not hang them: waits for a connection, connecting and
        // recycling are bounded.
        let pool = Pool::builder(manager)
            .max_size(options.max_connections.max(1))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(POOL_TIMEOUT))
            .create_timeout(Some(POOL_TIMEOUT))
            .recycle_timeout(Some(POOL_TIMEOUT))
            .build()
            .map_err(db)?;
        migrate(&pool).await?;
        register_striped(&pool, &options.striped_accounts).await?;
        let (jobs, queue) = mpsc::channel(MAX_WAITING_JOBS);
        let counters = std::sync::Arc::new(Counters::default());
        tokio::spawn(write_batches(
            pool.clone(),
            queue,
            std::sync::Arc::clone(&counters),
        ));
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(sequence_in_background(pool.clone(), stopped));
        Ok(PostgresStore {
            pool,
            jobs,
            closed: AtomicBool::new(false),
            counters,
            stop,
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

/// Registers `wanted` in `striped_accounts`: new accounts inserted, counts raised, never
/// lowered (see [`PostgresOptions::striped_accounts`]).
async fn register_striped(pool: &Pool, wanted: &[(LedgerAccount, u16)]) -> Result<()> {
    let mut most: BTreeMap<Vec<u8>, i16> = BTreeMap::new();
    for (account, stripes) in wanted {
        // Beyond i16 the schema's CHECK (at most 1024) refuses it anyway.
        let n = i16::try_from(*stripes).unwrap_or(i16::MAX);
        let entry = most.entry(account.key_bytes()).or_insert(n);
        *entry = (*entry).max(n);
    }
    if most.is_empty() {
        return Ok(());
    }
    let (accounts, stripes): (Vec<Vec<u8>>, Vec<i16>) = most.into_iter().unzip();
    let mut client = pool.get().await.map_err(db)?;
    let changes: i64 = client
        .query_one(
            "SELECT count(*) FROM unnest($1::bytea[], $2::smallint[]) AS w(account, stripes) \
             LEFT JOIN striped_accounts s USING (account) \
             WHERE s.stripes IS NULL OR s.stripes < w.stripes",
            &[&accounts, &stripes],
        )
        .await
        .and_then(|row| row.try_get(0))
        .map_err(db_code)?;
    if changes == 0 {
        return Ok(());
    }
    let mut result = Ok(());
    for _ in 0..BATCH_ATTEMPTS {
        result = change_striping(&mut client, &accounts, &stripes).await;
        match &result {
            Err(StoreError::Database {
                sqlstate: Some(code),
                ..
            }) if retryable(code) => continue,
            _ => break,
        }
    }
    result
}

async fn change_striping(
    client: &mut deadpool_postgres::Object,
    accounts: &[Vec<u8>],
    stripes: &[i16],
) -> Result<()> {
    let tx = client.transaction().await.map_err(db_code)?;
    // Every unit that posts or floors reads `striped_accounts` in the statement that locks
    // its balance rows, and keeps that table lock until it commits. Taking it exclusively
    // waits for every such transaction and holds new ones back until this one commits, so
    // no unit sees one stripe count when locking and another when posting, and no
    // unstriped posting is in flight while the heads below are read.
    tx.batch_execute("LOCK TABLE striped_accounts IN ACCESS EXCLUSIVE MODE")
        .await
        .map_err(db_code)?;
    // An account striped now keeps its ledger: the sequencer continues from its last seq
    // and balance (unstriped, its one balance row counts its entries).
    tx.execute(
        "INSERT INTO striped_heads (account, currency, next_seq, balance) \
         SELECT b.account, b.currency, sum(b.postings) + 1, sum(b.balance) FROM balances b \
         WHERE b.account = ANY ($1) \
           AND NOT EXISTS (SELECT 1 FROM striped_accounts s WHERE s.account = b.account) \
         GROUP BY b.account, b.currency \
         ON CONFLICT (account, currency) DO NOTHING",
        &[&accounts],
    )
    .await
    .map_err(db_code)?;
    tx.execute(
        "INSERT INTO striped_accounts AS s (account, stripes) \
         SELECT * FROM unnest($1::bytea[], $2::smallint[]) \
         ON CONFLICT (account) DO UPDATE SET stripes = greatest(s.stripes, excluded.stripes)",
        &[&accounts, &stripes],
    )
    .await
    .map_err(db_code)?;
    tx.commit().await.map_err(db_code)
}

/// Numbers the queued entries of striped accounts every [`SEQUENCER_PERIOD`] until the
/// store is closed or dropped.
async fn sequence_in_background(pool: Pool, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(SEQUENCER_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            // A close sends `true`; dropping the store drops the sender (an error here).
            _ = stop.changed() => return,
        }
        if *stop.borrow() || pool.is_closed() {
            return;
        }
        if let Err(e) = sequence_all(&pool).await {
            // A database that is away now is tried again next round; reads catch up
            // themselves meanwhile.
            tracing::warn!(error = %e, "sequencing striped ledger entries failed");
        }
    }
}

async fn sequence_all(pool: &Pool) -> Result<()> {
    let client = pool.get().await.map_err(db)?;
    let statement = client.prepare_cached(SEQUENCE_ALL).await.map_err(db_code)?;
    loop {
        let row = client
            .query_opt(&statement, &[&SEQUENCE_CHUNK])
            .await
            .map_err(db_code)?;
        if !more_to_sequence(row.as_ref()) {
            return Ok(());
        }
    }
}

/// Whether a sequencer call (a row of `SEQUENCE_ALL`/`SEQUENCE_ACCOUNT`, none if it did
/// not run) filled its chunk, so that more entries may be waiting.
fn more_to_sequence(row: Option<&tokio_postgres::Row>) -> bool {
    row.is_some_and(
        |r| matches!(r.try_get::<_, Option<i64>>(0), Ok(Some(n)) if n >= i64::from(SEQUENCE_CHUNK)),
    )
}

/// Chooses the stripe of each writer transaction: uniformly at random and independently
/// in each process (SipHash under this process's random keys, over a counter), so that two
/// processes' writers meet on one stripe row one time in `stripes`, and a retried batch
/// likely moves off the row it deadlocked on.
struct StripePicker {
    keys: std::collections::hash_map::RandomState,
    drawn: u64,
}

impl StripePicker {
    fn new() -> Self {
        StripePicker {
            keys: std::collections::hash_map::RandomState::new(),
            drawn: 0,
        }
    }

    /// A non-negative `p_stripe` (the SQL takes it modulo each account's stripe count).
    fn next(&mut self) -> i32 {
        self.drawn = self.drawn.wrapping_add(1);
        i32::try_from(self.keys.hash_one(self.drawn) >> 33).unwrap_or(0)
    }
}

/// The writer: takes every job waiting (up to a batch), runs their units in one
/// transaction, answers each job.
async fn write_batches(
    pool: Pool,
    mut queue: mpsc::Receiver<Job>,
    counters: std::sync::Arc<Counters>,
) {
    let mut stripes = StripePicker::new();
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
        let mut result = apply_batch(&pool, &all, stripes.next()).await;
        for _ in 1..BATCH_ATTEMPTS {
            match &result {
                Err(StoreError::Database {
                    sqlstate: Some(code),
                    ..
                }) if retryable(code) => result = apply_batch(&pool, &all, stripes.next()).await,
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
        // The error's own text is only "db error" when the server sent one: its message
        // (severity, message, detail) is what an operator needs.
        message: match e.as_db_error() {
            Some(server) => server.to_string(),
            None => e.to_string(),
        },
    }
}

/// Applies `units` in one transaction; every posting to a striped account goes to stripe
/// `stripe` modulo its count (one stripe per transaction: its units lock one row of each
/// striped account, not several).
async fn apply_batch(pool: &Pool, units: &[&Unit], stripe: i32) -> Result<Vec<CommitOutcome>> {
    let mut client = pool.get().await.map_err(db)?;
    let tx = client.transaction().await.map_err(db_code)?;
    let statement = tx.prepare_cached(APPLY).await.map_err(db_code)?;
    // Polled together, the calls are pipelined in order on the one connection: a batch
    // costs about one round trip, not one per unit.
    let outcomes = futures_util::future::try_join_all(
        units.iter().map(|u| apply_unit(&tx, &statement, u, stripe)),
    )
    .await?;
    tx.commit().await.map_err(db_code)?;
    Ok(outcomes)
}

async fn apply_unit(
    tx: &deadpool_postgres::Transaction<'_>,
    statement: &tokio_postgres::Statement,
    unit: &Unit,
    stripe: i32,
) -> Result<CommitOutcome> {
    let claimant = claimant_bytes(&unit.claimant);
    let at = millis(unit.at)?;
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
        let client = self.client().await?;
        let sequence = client
            .prepare_cached(SEQUENCE_ACCOUNT)
            .await
            .map_err(db_code)?;
        let page = client.prepare_cached(LEDGER_PAGE).await.map_err(db_code)?;
        let key = account.key_bytes();
        let code = currency.as_bytes().to_vec();
        let rows = loop {
            // Pipelined: the server runs the sequencer to completion before the page's
            // snapshot is taken, so the page holds every entry committed before this call
            // (a striped account's entries are in the queue or in the ledger, never in
            // neither), at the cost of one round trip.
            let (sequenced, rows) = futures_util::future::try_join(
                client.query_opt(&sequence, &[&key, &code, &SEQUENCE_CHUNK]),
                client.query(&page, &[&key, &code, &after, &limit(limit_)]),
            )
            .await
            .map_err(db_code)?;
            if !more_to_sequence(sequenced.as_ref()) {
                break rows;
            }
        };
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
        // No receiver left (the sequencer already ended) is fine.
        let _ = self.stop.send(true);
        self.pool.close();
        Ok(())
    }
}
