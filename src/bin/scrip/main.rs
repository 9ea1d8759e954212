//! `scrip`: the demo story, and single wallet and merchant steps from the command line.
//!
//! Payment messages between wallet and merchant are files (or stdin/stdout with `-`),
//! standing in for NFC, BLE or QR codes. State lives in a directory per wallet or merchant.

//!
//! The command's parts, one file each: this one (arguments, `demo`, `load`), `trust.rs`
//! (which server and root key), `files.rs` (state directories and message files),
//! `wallet_app.rs` and `merchant_app.rs` (the single steps).

mod files;
mod merchant_app;
mod trust;
mod wallet_app;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use scrip::client::HttpClient;
use scrip::issuer::server::{self, KeySource, ServerConfig, StoreKind};
use scrip::setup;
use scrip::tokens::Currency;
use scrip::Error;

use merchant_app::MerchantStep;
use trust::Trust;
use wallet_app::WalletStep;

/// scrip: offline payments with balance certificates, withdrawal records and blind coins.
#[derive(Parser)]
#[command(name = "scrip", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the whole story (accounts, deposit, coins, certificate, offline payments,
    /// redemption, retries, a double spend) and prints a JSON line of outcome counts.
    Demo {
        /// Server to run against; without it, one is started in process (memory store).
        #[arg(long, env = "SCRIP_SERVER")]
        server: Option<String>,
        #[command(flatten)]
        trust: Trust,
    },
    /// Load test: concurrent merchants upload redemption batches of fresh coins for a
    /// fixed time; prints redemptions/s, batch latency p50/p99 and this machine's
    /// single-core coin-verification rate, then one JSON line with the figures.
    Load {
        /// Server to load (it must issue coins of `--denomination` in EUR). Several,
        /// comma separated, for servers sharing one store (`--store postgres`): coins are
        /// minted on the first, merchants are spread over all of them.
        #[arg(
            long,
            env = "SCRIP_SERVER",
            default_value = "http://127.0.0.1:8080",
            value_delimiter = ','
        )]
        server: Vec<String>,
        /// Concurrent merchants.
        #[arg(long, default_value_t = 8)]
        merchants: usize,
        /// Seconds of the timed phase.
        #[arg(long, default_value_t = 20)]
        duration: u64,
        /// Coins minted beforehand (the run stops early when all are redeemed).
        #[arg(long, default_value_t = 20_000)]
        coins: usize,
        /// Coins per payment (one redemption item).
        #[arg(long, default_value_t = 5)]
        coins_per_payment: usize,
        /// Payments per uploaded batch.
        #[arg(long, default_value_t = 20)]
        payments_per_batch: usize,
        /// Coin denomination, minor units.
        #[arg(long, default_value_t = 1)]
        denomination: u64,
        /// Use the bincode codec instead of JSON.
        #[arg(long)]
        bincode: bool,
        /// Cores the server runs on (when it is pinned apart from this load, e.g. with
        /// `taskset`), for the fraction of the verification limit; default: the cores this
        /// process may run on.
        #[arg(long)]
        server_cores: Option<usize>,
        /// Skip the swap phase (every minted coin swapped once, timed next to the
        /// withdrawals, before the payments are signed).
        #[arg(long)]
        no_swap: bool,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
        #[command(flatten)]
        trust: Trust,
    },
    /// One wallet step; state in `--dir`.
    Wallet {
        /// Wallet state directory.
        #[arg(long, default_value = "./scrip-wallet")]
        dir: PathBuf,
        #[command(subcommand)]
        step: WalletStep,
    },
    /// One point-of-sale step; state in `--dir`.
    Merchant {
        /// Merchant state directory.
        #[arg(long, default_value = "./scrip-merchant")]
        dir: PathBuf,
        #[command(subcommand)]
        step: MerchantStep,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("scrip: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scrip: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Command::Demo { server, trust } => run_demo(server, trust).await,
        Command::Load {
            server,
            merchants,
            duration,
            coins,
            coins_per_payment,
            payments_per_batch,
            denomination,
            bincode,
            server_cores,
            no_swap,
            quiet,
            trust,
        } => {
            let config = scrip::load::LoadConfig {
                merchants,
                duration: std::time::Duration::from_secs(duration),
                coins,
                coins_per_payment,
                payments_per_batch,
                denomination,
                progress: !quiet,
                server_cores,
                swap: !no_swap,
                ..scrip::load::LoadConfig::default()
            };
            run_load(&server, bincode, trust, config).await
        }
        Command::Wallet { dir, step } => {
            let _lock = files::lock_state_dir(&dir)?;
            wallet_app::step(&dir, step).await
        }
        Command::Merchant { dir, step } => {
            let _lock = files::lock_state_dir(&dir)?;
            merchant_app::step(&dir, step).await
        }
    }
}

async fn run_demo(server_url: Option<String>, trust: Trust) -> Result<(), Error> {
    let mut out = std::io::stdout();
    let (client, root, local) = match server_url {
        Some(url) => {
            let mut client = HttpClient::new(&url)?;
            if let Some(token) = trust.operator_token() {
                client = client.with_operator_token(token);
            }
            let root = setup::root_key(&client, trust.root_key_path().as_deref(), &mut out).await?;
            (client, root, None)
        }
        None => {
            let dir = tempfile::tempdir().map_err(Error::io("creating a temporary directory"))?;
            let token = server::generate_operator_token();
            let listen = ([127, 0, 0, 1], 0).into();
            let mut config = ServerConfig::new(listen, dir.path(), token.clone());
            config.store = StoreKind::Memory;
            config.keys = KeySource::Directory {
                dir: dir.path().join("keys"),
                generate: scrip::issuer::KeyringConfig {
                    denominations: vec![(Currency::EUR, scrip::issuer::one_two_five(1, 100))],
                    ..scrip::issuer::KeyringConfig::default()
                },
            };
            println!("starting an in-process server (generating issuer keys)...");
            let running = server::start(config).await?;
            let client = HttpClient::new(&running.url())?.with_operator_token(token);
            let root = running.state().issuer.keys().root.verifying_key().clone();
            (client, root, Some((running, dir)))
        }
    };
    let outcome = scrip::demo::run(&client, &root, &mut out).await;
    if let Some((running, _dir)) = local {
        running.shutdown().await?;
    }
    let outcomes = outcome?;
    println!(
        "{}",
        serde_json::to_string(&outcomes).map_err(|e| Error::Decode(e.to_string()))?
    );
    Ok(())
}

async fn run_load(
    server_urls: &[String],
    bincode: bool,
    trust: Trust,
    config: scrip::load::LoadConfig,
) -> Result<(), Error> {
    let token = trust.operator_token().ok_or_else(|| {
        Error::Usage(
            "merchant registration needs the operator token: --operator-token, \
             SCRIP_OPERATOR_TOKEN or <data-dir>/operator-token"
                .into(),
        )
    })?;
    let mut servers = Vec::with_capacity(server_urls.len());
    for url in server_urls {
        let mut client = HttpClient::new(url)?.with_operator_token(token.clone());
        if bincode {
            client = client.with_format(scrip::client::WireFormat::Bincode);
        }
        servers.push(client);
    }
    let first = servers
        .first()
        .ok_or_else(|| Error::Usage("--server: give at least one server".into()))?;
    let root = setup::root_key(
        first,
        trust.root_key_path().as_deref(),
        &mut std::io::stderr(),
    )
    .await?;
    let (report, _) = scrip::load::run_across(&servers, &root, &config).await?;
    eprintln!(
        "redeemed {} coins in {:.1} s: {:.0} redemptions/s, {:.0} payments/s, batch latency \
         p50 {:.1} ms p99 {:.1} ms; one core verifies {:.0} coins/s (mean of {:.0} before and \
         {:.0} after; {}; {} server cores: \
         {:.0}% of cores x verify); issued {:.0} coins/s in {:.1} blind withdrawals/s; {}; {} \
         retried uploads, {} unexpected outcomes",
        report.coins_redeemed,
        report.elapsed_s,
        report.redemptions_per_s,
        report.payments_per_s,
        report.batch_latency.p50_ms,
        report.batch_latency.p99_ms,
        report.single_core_verify_per_s,
        report.verify_per_s_before,
        report.verify_per_s_after,
        report.verify_backend,
        report.cores,
        report.fraction_of_verify_limit * 100.0,
        report.issuance.coins_per_s,
        report.issuance.withdrawals_per_s,
        report.swapping.as_ref().map_or_else(
            || "no swaps".to_owned(),
            |s| format!(
                "swapped {:.0} coins/s in {:.1} swaps/s",
                s.coins_per_s, s.swaps_per_s
            )
        ),
        report.retried_uploads,
        report.unexpected_outcomes,
    );
    println!(
        "{}",
        serde_json::to_string(&report).map_err(|e| Error::Decode(e.to_string()))?
    );
    if report.unexpected_outcomes > 0 {
        return Err(Error::Demo(format!(
            "{} payments were not accepted",
            report.unexpected_outcomes
        )));
    }
    Ok(())
}
