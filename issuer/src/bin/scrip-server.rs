//! `scrip-server`: the issuer and redeem server.
//!
//! `cargo run --release --bin scrip-server` listens on 127.0.0.1:8080 with an embedded
//! redb store in `./scrip-data`, generating issuer keys there on first start.
//!
//! With `--store postgres --database-url URL` it is one server of a cluster sharing that
//! database; the cluster's keys are made by the operator commands `scrip-server keys init`,
//! `keys publish` and `keys rotate` (the logic is `scrip_issuer::server::cluster`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use scrip_issuer::server::{
    self, cluster, KeySource, OperatorToken, ServerConfig, ServerFunding, ServerPayouts, StoreKind,
};
use scrip_issuer::{one_two_five, IssuerConfig, IssuerError, KeyringConfig};
use scrip_tokens::Currency;

/// The scrip issuer and redeem server: registration, deposits, balance certificates,
/// blind and identified coins, redemption of offline payments. Without a subcommand it
/// serves.
#[derive(Parser, Debug)]
#[command(name = "scrip-server", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Operator commands for the issuer's keys (a cluster's keys are made here, never by a
    /// server).
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Subcommand, Debug)]
enum KeysCommand {
    /// Generates a keyring into an empty keys directory (files 0600); with a database URL,
    /// publishes it as the cluster's first keyring. Refuses a directory that holds keys and
    /// a cluster that already has a keyring.
    Init(KeysInitArgs),
    /// Publishes the keyring of a keys directory as the cluster's (idempotent): after
    /// copying keys, or after `keys rotate` without a database URL.
    Publish(KeysPublishArgs),
    /// Adds a new key for one role (the old one keeps verifying until it expires); with a
    /// database URL, publishes the rotated keyring (servers reload their keys directory
    /// once they see it).
    Rotate(KeysRotateArgs),
}

#[derive(Args, Debug)]
struct DatabaseTlsArg {
    /// PEM file of the CA(s) the database server's certificate must chain to: TLS is
    /// then required and verified (host name included). Without it the connection is
    /// plain: use it whenever the database is on another host.
    #[arg(long, env = "SCRIP_DATABASE_CA_FILE")]
    database_ca_file: Option<PathBuf>,
}

impl DatabaseTlsArg {
    fn tls(&self) -> scrip_stores::PostgresTls {
        match &self.database_ca_file {
            Some(file) => scrip_stores::PostgresTls::VerifyWithCaFile(file.clone()),
            None => scrip_stores::PostgresTls::Off,
        }
    }
}

#[derive(Args, Debug)]
struct KeysDirArg {
    /// The keys directory.
    #[arg(long, env = "SCRIP_KEYS_DIR")]
    keys_dir: PathBuf,
}

#[derive(Args, Debug)]
struct KeysInitArgs {
    #[command(flatten)]
    dir: KeysDirArg,

    #[command(flatten)]
    tls: DatabaseTlsArg,

    /// PostgreSQL connection string of the cluster to publish the keyring to.
    #[arg(long, env = "SCRIP_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,

    /// Currencies of the coin keysets (ISO 4217), comma separated: one keyset each, with
    /// the same denominations.
    #[arg(
        long,
        env = "SCRIP_CURRENCY",
        default_value = "EUR",
        value_delimiter = ','
    )]
    currency: Vec<String>,

    /// Coin denominations in minor units, comma separated (default: 1-2-5 series from 1
    /// to 20000).
    #[arg(long, env = "SCRIP_DENOMINATIONS", value_delimiter = ',')]
    denominations: Vec<u64>,

    /// RSA modulus size of the keys.
    #[arg(long, env = "SCRIP_RSA_BITS", default_value_t = scrip_tokens::keys::DEFAULT_RSA_BITS)]
    rsa_bits: usize,
}

#[derive(Args, Debug)]
struct KeysPublishArgs {
    #[command(flatten)]
    dir: KeysDirArg,

    #[command(flatten)]
    tls: DatabaseTlsArg,

    /// PostgreSQL connection string of the cluster.
    #[arg(long, env = "SCRIP_DATABASE_URL", hide_env_values = true)]
    database_url: String,

    /// Replace the keyring the cluster serves by this different one (a keyring rotated
    /// without a database URL). Without it only a cluster with no keyring, or with this
    /// very keyring, accepts it.
    #[arg(long)]
    replace: bool,
}

#[derive(Args, Debug)]
struct KeysRotateArgs {
    #[command(flatten)]
    dir: KeysDirArg,

    #[command(flatten)]
    tls: DatabaseTlsArg,

    /// PostgreSQL connection string of the cluster to publish the rotated keyring to
    /// (without it only the files change: distribute them, then `keys publish --replace`).
    #[arg(long, env = "SCRIP_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,

    /// The role whose key is rotated.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(cluster::KEY_ROLE_NAMES))]
    role: String,

    /// Lifetime of the new key, in days.
    #[arg(long, default_value_t = 730)]
    lifetime_days: u64,

    /// RSA modulus size of the new key.
    #[arg(long, env = "SCRIP_RSA_BITS", default_value_t = scrip_tokens::keys::DEFAULT_RSA_BITS)]
    rsa_bits: usize,
}

#[derive(Args, Debug)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "SCRIP_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,

    /// Data directory: store files, issuer keys (`keys/`), operator token.
    #[arg(long, env = "SCRIP_DATA_DIR", default_value = "./scrip-data")]
    data_dir: PathBuf,

    /// Record store backend: redb (embedded database), file (checksummed log), memory
    /// (nothing survives a restart) or postgres (a database shared by a cluster of
    /// servers: needs --database-url and --operator-token, and keys made by `keys init`).
    #[arg(long, env = "SCRIP_STORE", default_value = "redb")]
    store: StoreKind,

    /// PostgreSQL connection string for --store postgres (it may hold a password: prefer
    /// the environment variable).
    #[arg(long, env = "SCRIP_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,

    /// Most connections this server opens to the database (--store postgres).
    #[arg(long, env = "SCRIP_DATABASE_CONNECTIONS", default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..))]
    database_connections: u64,

    #[command(flatten)]
    tls: DatabaseTlsArg,

    /// How far this server's clock may be from the database server's, in milliseconds
    /// (--store postgres): beyond it the server refuses to start, and warns later.
    #[arg(long, env = "SCRIP_MAX_NODE_CLOCK_SKEW_MS", default_value_t = 2_000)]
    max_node_clock_skew_ms: u64,

    /// How often the cluster's published keyring is checked, in seconds (--store
    /// postgres): a rotation reaches this server within it once its keys directory holds
    /// the new keys.
    #[arg(long, env = "SCRIP_KEYRING_POLL_SECS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    keyring_poll_secs: u64,

    /// Directory of the issuer's private keys (default: <data-dir>/keys). Generated on
    /// first start, mode 0600; with --store postgres only read (made by `keys init`).
    #[arg(long, env = "SCRIP_KEYS_DIR")]
    keys_dir: Option<PathBuf>,

    /// Operator token for operator routes (merchant registration, fraud log, device
    /// revocation). Default: read <data-dir>/operator-token, or create it (0600). Required
    /// with --store postgres (the same on every server).
    #[arg(long, env = "SCRIP_OPERATOR_TOKEN", hide_env_values = true)]
    operator_token: Option<String>,

    /// Currencies of the coin keysets generated on first start (ISO 4217), comma
    /// separated: the server issues and redeems coins, certificates and deposits in each.
    #[arg(
        long,
        env = "SCRIP_CURRENCY",
        default_value = "EUR",
        value_delimiter = ','
    )]
    currency: Vec<String>,

    /// Coin denominations in minor units, comma separated, used when keys are first
    /// generated (default: 1-2-5 series from 1 to 20000).
    #[arg(long, env = "SCRIP_DENOMINATIONS", value_delimiter = ',')]
    denominations: Vec<u64>,

    /// Lifetime of account (device) certificates, in seconds.
    #[arg(long, env = "SCRIP_ACCOUNT_CERTIFICATE_SECS", default_value_t = 365 * 86_400)]
    account_certificate_secs: u64,

    /// Lifetime of merchant certificates, in seconds.
    #[arg(long, env = "SCRIP_MERCHANT_CERTIFICATE_SECS", default_value_t = 365 * 86_400)]
    merchant_certificate_secs: u64,

    /// Lifetime of balance certificates, in seconds (their reservation is released
    /// --upload-grace-secs after expiry).
    #[arg(long, env = "SCRIP_BALANCE_CERTIFICATE_SECS", default_value_t = 86_400)]
    balance_certificate_secs: u64,

    /// Settlement window, in seconds: how long a balance certificate's reservation is held
    /// after its expiry, so that records merchants accepted before expiry and upload
    /// within it are paid from it. Published to merchants; a record uploaded later is paid
    /// only if the account's balance covers it. Every server of a cluster must run the
    /// same value.
    #[arg(long, env = "SCRIP_UPLOAD_GRACE_SECS", default_value_t = 7 * 86_400)]
    upload_grace_secs: u64,

    /// Revocation grace, in seconds, published in every revocation list: a record from a
    /// revoked device is honoured if paid within it of the first list naming the device
    /// (a merchant with a list that fresh could not know), refused after. Every server of
    /// a cluster must run the same value.
    #[arg(long, env = "SCRIP_REVOCATION_GRACE_SECS", default_value_t = 6 * 3_600)]
    revocation_grace_secs: u64,

    /// How often the revocation list is published (a new version if anything was revoked,
    /// frozen or unfrozen; always a freshly signed list), in seconds.
    #[arg(long, env = "SCRIP_REVOCATION_PUBLISH_SECS", default_value_t = 10)]
    revocation_publish_secs: u64,

    /// Largest amount one balance certificate makes available, in minor units.
    #[arg(long, env = "SCRIP_MAX_CERTIFICATE_AMOUNT", default_value_t = 100_000)]
    max_certificate_amount: u64,

    /// Most items in one redemption batch.
    #[arg(long, env = "SCRIP_MAX_BATCH_ITEMS", default_value_t = 1_000)]
    max_batch_items: usize,

    /// Swap fee: minor units kept per coin handed in to a swap (`POST /v1/swaps`,
    /// `POST /v1/merchant-swaps`). Not published in the key directory: tell wallet vendors.
    /// The same on every server of a cluster.
    #[arg(long, env = "SCRIP_SWAP_FEE_PER_COIN", default_value_t = 0)]
    swap_fee_per_coin: u64,

    /// Where the RSA work runs: `fast` (OpenSSL private-key operations, aws-lc-rs
    /// verification; the default where compiled in) or `rustcrypto` (pure Rust). Both
    /// give the same signatures and accept the same ones; keys and files are the same.
    #[arg(long, env = "SCRIP_CRYPTO_BACKEND", default_value_t = scrip_tokens::Backend::fastest())]
    crypto_backend: scrip_tokens::Backend,

    /// Largest accepted request body, in bytes.
    #[arg(long, env = "SCRIP_MAX_BODY_BYTES", default_value_t = 8 << 20)]
    max_body_bytes: usize,

    /// How far a signed request's creation time may be from the server's clock, in
    /// seconds (older requests are refused as stale; nonces are remembered this long).
    #[arg(long, env = "SCRIP_MAX_CLOCK_SKEW_SECS", default_value_t = 300)]
    max_clock_skew_secs: u64,

    /// Seconds a client may take to send a request's headers, and again its body; slower
    /// clients are cut off (headers: connection closed; body: 408 request_timeout).
    #[arg(long, env = "SCRIP_READ_TIMEOUT_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    read_timeout_secs: u64,

    /// Most connections served at once; more are answered 503 busy and closed.
    #[arg(long, env = "SCRIP_MAX_CONNECTIONS", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
    max_connections: u64,

    /// Largest request head (request line and headers) in bytes; larger heads get 431.
    #[arg(long, env = "SCRIP_MAX_HEADER_BYTES", default_value_t = 16 << 10)]
    max_header_bytes: usize,

    /// Bytes of request bodies over 16 KiB held at once, reserved chunk by chunk as they
    /// arrive (at least --max-body-bytes); a body that does not fit gets 503 busy.
    #[arg(long, env = "SCRIP_BODY_BUDGET_BYTES", default_value_t = 64 << 20)]
    body_budget_bytes: usize,

    /// RSA modulus size of generated keys.
    #[arg(long, env = "SCRIP_RSA_BITS", default_value_t = scrip_tokens::keys::DEFAULT_RSA_BITS)]
    rsa_bits: usize,

    /// Log format: text or json. Levels come from RUST_LOG (default info).
    #[arg(long, env = "SCRIP_LOG_FORMAT", default_value = "text")]
    log_format: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.serve.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("scrip-server: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = match cli.command {
        None => runtime.block_on(run(cli.serve)),
        Some(Command::Keys(command)) => runtime.block_on(keys(command)),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "scrip-server failed");
            eprintln!("scrip-server: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// One keyset per currency of `--currency`, each with `--denominations` (default: the
/// 1-2-5 series from 1 to 20000 minor units).
fn keysets(
    currencies: &[String],
    denominations: &[u64],
) -> Result<Vec<(Currency, Vec<u64>)>, String> {
    let denominations = if denominations.is_empty() {
        one_two_five(1, 20_000)
    } else {
        denominations.to_vec()
    };
    let mut keysets: Vec<(Currency, Vec<u64>)> = Vec::new();
    for code in currencies {
        let currency =
            Currency::new(code.trim()).map_err(|e| format!("--currency {code:?}: {e}"))?;
        if keysets.iter().any(|(c, _)| *c == currency) {
            return Err(format!("--currency: {currency} is named twice"));
        }
        keysets.push((currency, denominations.clone()));
    }
    if keysets.is_empty() {
        return Err("--currency: name at least one currency".into());
    }
    Ok(keysets)
}

async fn run(args: ServeArgs) -> Result<(), String> {
    let keysets = keysets(&args.currency, &args.denominations)?;
    let operator_token = match args.operator_token.clone() {
        Some(t) if !t.is_empty() => OperatorToken::Given(t),
        // A cluster refuses a per-node token (server::start says so).
        _ if args.store.is_shared() => OperatorToken::DataDir,
        _ => {
            tracing::info!(
                path = %args.data_dir.join(server::OPERATOR_TOKEN_FILE).display(),
                "operator token file (pass it as Authorization: Bearer <token>)"
            );
            OperatorToken::DataDir
        }
    };
    let keys_dir = args
        .keys_dir
        .clone()
        .unwrap_or_else(|| args.data_dir.join("keys"));
    let mut config = ServerConfig::new(args.listen, &args.data_dir, operator_token);
    config.store = args.store;
    config.keys = KeySource::Directory {
        dir: keys_dir,
        generate: KeyringConfig {
            denominations: keysets,
            rsa_bits: args.rsa_bits,
            ..KeyringConfig::default()
        },
    };
    config.issuer = IssuerConfig {
        account_certificate_lifetime: Duration::from_secs(args.account_certificate_secs),
        merchant_certificate_lifetime: Duration::from_secs(args.merchant_certificate_secs),
        balance_certificate_lifetime: Duration::from_secs(args.balance_certificate_secs),
        upload_grace: Duration::from_secs(args.upload_grace_secs),
        revocation_grace: Duration::from_secs(args.revocation_grace_secs),
        max_certificate_amount: args.max_certificate_amount,
        max_batch_items: args.max_batch_items,
        swap_fee_per_coin: args.swap_fee_per_coin,
        backend: args.crypto_backend,
        ..IssuerConfig::default()
    };
    config.revocation_publish_interval = Duration::from_secs(args.revocation_publish_secs.max(1));
    config.max_body_bytes = args.max_body_bytes;
    config.max_clock_skew = Duration::from_secs(args.max_clock_skew_secs);
    config.read_timeout = Duration::from_secs(args.read_timeout_secs);
    config.max_connections = usize::try_from(args.max_connections).unwrap_or(usize::MAX);
    config.max_header_bytes = args.max_header_bytes;
    config.body_budget_bytes = args.body_budget_bytes;
    config.database_url = args.database_url.clone();
    config.database_tls = args.tls.tls();
    config.database_connections = usize::try_from(args.database_connections).unwrap_or(usize::MAX);
    config.max_node_clock_skew = Duration::from_millis(args.max_node_clock_skew_ms);
    config.keyring_poll_interval = Duration::from_secs(args.keyring_poll_secs);
    // Recorded in the store, so every server of a cluster (and every restart) answers a
    // deposit id alike.
    config.funding = ServerFunding::RecordedDemo;
    tracing::warn!(
        "deposits are credited from the built-in demo funding source (every deposit is \
         accepted and recorded in the store); embed scrip_issuer::server with your own \
         FundingSource for real money"
    );
    config.payouts = ServerPayouts::Demo;
    tracing::warn!(
        file = %args.data_dir.join(server::DEMO_PAYOUTS_FILE).display(),
        "merchant payouts go to the built-in demo payout sink (nothing is paid; each payout \
         is appended once to this file); embed scrip_issuer::server with your own PayoutSink \
         for real money"
    );
    let running = server::start(config).await.map_err(|e| e.to_string())?;
    running
        .run_until(shutdown_signal())
        .await
        .map_err(|e| e.to_string())
}

/// The `keys` operator commands. They print what they did on stdout (fingerprints are
/// public; no key material is printed).
async fn keys(command: KeysCommand) -> Result<(), String> {
    match command {
        KeysCommand::Init(args) => {
            let config = KeyringConfig {
                denominations: keysets(&args.currency, &args.denominations)?,
                rsa_bits: args.rsa_bits,
                ..KeyringConfig::default()
            };
            let database = connect(args.database_url.as_deref(), &args.tls).await?;
            let outcome = cluster::init_keys(
                &args.dir.keys_dir,
                &config,
                database.as_ref().map(|(_, c)| c.as_ref()),
                server::now(),
            )
            .await;
            close(database).await;
            let status = outcome.map_err(|e| e.to_string())?;
            println!(
                "generated the keyring in {} (fingerprint {})",
                args.dir.keys_dir.display(),
                hex::encode(status.fingerprint)
            );
            match status.epoch {
                Some(epoch) => {
                    println!("published as the cluster's keyring, epoch {}", epoch.epoch)
                }
                None => println!(
                    "not published (no --database-url): run `scrip-server keys publish` before \
                     starting cluster servers"
                ),
            }
            Ok(())
        }
        KeysCommand::Publish(args) => {
            let database = connect(Some(&args.database_url), &args.tls).await?;
            let outcome = match &database {
                Some((_, cluster)) => {
                    cluster::publish_keys(&args.dir.keys_dir, cluster.as_ref(), args.replace).await
                }
                None => Err(IssuerError::DatabaseUrlMissing),
            };
            close(database).await;
            let epoch = outcome.map_err(|e| match e {
                e @ IssuerError::KeyringMismatch { .. } => format!(
                    "{e}\n(to make this directory's keyring the cluster's, run again with --replace)"
                ),
                e => e.to_string(),
            })?;
            println!(
                "the cluster serves the keyring of {} as epoch {} (fingerprint {})",
                args.dir.keys_dir.display(),
                epoch.epoch,
                hex::encode(epoch.fingerprint)
            );
            Ok(())
        }
        KeysCommand::Rotate(args) => {
            let role = cluster::parse_key_role(&args.role)
                .ok_or_else(|| format!("--role: unknown role {:?}", args.role))?;
            let database = connect(args.database_url.as_deref(), &args.tls).await?;
            let outcome = cluster::rotate_key(
                &args.dir.keys_dir,
                role,
                server::now(),
                Duration::from_secs(args.lifetime_days.saturating_mul(86_400)),
                args.rsa_bits,
                database.as_ref().map(|(_, c)| c.as_ref()),
            )
            .await;
            close(database).await;
            let status = outcome.map_err(|e| e.to_string())?;
            println!(
                "rotated the {} key in {} (fingerprint {})",
                args.role,
                args.dir.keys_dir.display(),
                hex::encode(status.fingerprint)
            );
            match status.epoch {
                Some(epoch) => println!(
                    "published as epoch {}; servers reload their keys directory within their \
                     keyring poll interval once it holds these files",
                    epoch.epoch
                ),
                None => println!(
                    "not published (no --database-url): distribute the directory, then run \
                     `scrip-server keys publish --replace`"
                ),
            }
            Ok(())
        }
    }
}

type Database = Option<(
    std::sync::Arc<dyn scrip_stores::RecordStore>,
    std::sync::Arc<dyn scrip_stores::ClusterState>,
)>;

/// The cluster's database, if a URL was given (an empty one counts as none).
async fn connect(url: Option<&str>, tls: &DatabaseTlsArg) -> Result<Database, String> {
    match url.filter(|u| !u.trim().is_empty()) {
        None => Ok(None),
        Some(url) => cluster::connect_database_with(url, 2, tls.tls())
            .await
            .map(Some)
            .map_err(|e| e.to_string()),
    }
}

async fn close(database: Database) {
    if let Some((store, _)) = database {
        let _ = store.close().await;
    }
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received"),
        _ = term => tracing::info!("SIGTERM received"),
    }
}
