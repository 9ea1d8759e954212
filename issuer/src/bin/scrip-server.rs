//! `scrip-server`: the issuer and redeem server.
//!
//! `cargo run --release --bin scrip-server` listens on 127.0.0.1:8080 with an embedded
//! redb store in `./scrip-data`, generating issuer keys there on first start.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use scrip_issuer::server::{self, KeySource, OperatorToken, ServerConfig, StoreKind};
use scrip_issuer::{one_two_five, IssuerConfig, KeyringConfig};
use scrip_tokens::Currency;

/// The scrip issuer and redeem server: registration, deposits, balance certificates,
/// blind and identified coins, redemption of offline payments.
#[derive(Parser, Debug)]
#[command(name = "scrip-server", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "SCRIP_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,

    /// Data directory: store files, issuer keys (`keys/`), operator token.
    #[arg(long, env = "SCRIP_DATA_DIR", default_value = "./scrip-data")]
    data_dir: PathBuf,

    /// Record store backend: redb (embedded database), file (checksummed log) or memory
    /// (nothing survives a restart).
    #[arg(long, env = "SCRIP_STORE", default_value = "redb")]
    store: StoreKind,

    /// Directory of the issuer's private keys (default: <data-dir>/keys). Generated on
    /// first start, mode 0600.
    #[arg(long, env = "SCRIP_KEYS_DIR")]
    keys_dir: Option<PathBuf>,

    /// Operator token for operator routes (merchant registration, fraud log, device
    /// revocation). Default: read <data-dir>/operator-token, or create it (0600).
    #[arg(long, env = "SCRIP_OPERATOR_TOKEN", hide_env_values = true)]
    operator_token: Option<String>,

    /// Currency of the coin keyset generated on first start (ISO 4217).
    #[arg(long, env = "SCRIP_CURRENCY", default_value = "EUR")]
    currency: String,

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

    /// Lifetime of balance certificates, in seconds (their reservation is released at
    /// expiry).
    #[arg(long, env = "SCRIP_BALANCE_CERTIFICATE_SECS", default_value_t = 86_400)]
    balance_certificate_secs: u64,

    /// Largest amount one balance certificate makes available, in minor units.
    #[arg(long, env = "SCRIP_MAX_CERTIFICATE_AMOUNT", default_value_t = 100_000)]
    max_certificate_amount: u64,

    /// Most items in one redemption batch.
    #[arg(long, env = "SCRIP_MAX_BATCH_ITEMS", default_value_t = 1_000)]
    max_batch_items: usize,

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
    let args = Args::parse();
    init_logging(&args.log_format);
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
    match runtime.block_on(run(args)) {
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

async fn run(args: Args) -> Result<(), String> {
    let currency = Currency::new(&args.currency).map_err(|e| format!("--currency: {e}"))?;
    let denominations = if args.denominations.is_empty() {
        one_two_five(1, 20_000)
    } else {
        args.denominations.clone()
    };
    let operator_token = match args.operator_token.clone() {
        Some(t) if !t.is_empty() => OperatorToken::Given(t),
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
            denominations: vec![(currency, denominations)],
            rsa_bits: args.rsa_bits,
            ..KeyringConfig::default()
        },
    };
    config.issuer = IssuerConfig {
        account_certificate_lifetime: Duration::from_secs(args.account_certificate_secs),
        merchant_certificate_lifetime: Duration::from_secs(args.merchant_certificate_secs),
        balance_certificate_lifetime: Duration::from_secs(args.balance_certificate_secs),
        max_certificate_amount: args.max_certificate_amount,
        max_batch_items: args.max_batch_items,
        ..IssuerConfig::default()
    };
    config.max_body_bytes = args.max_body_bytes;
    config.max_clock_skew = Duration::from_secs(args.max_clock_skew_secs);
    config.read_timeout = Duration::from_secs(args.read_timeout_secs);
    config.max_connections = usize::try_from(args.max_connections).unwrap_or(usize::MAX);
    config.max_header_bytes = args.max_header_bytes;
    config.body_budget_bytes = args.body_budget_bytes;
    tracing::warn!(
        "deposits are credited from the built-in demo funding source (every deposit is \
         accepted); embed scrip_issuer::server with your own FundingSource for real money"
    );
    let running = server::start(config).await.map_err(|e| e.to_string())?;
    running
        .run_until(shutdown_signal())
        .await
        .map_err(|e| e.to_string())
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
