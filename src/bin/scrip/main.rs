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
        /// Servers for the timed phase, when it is not `--server`: coins are minted and
        /// merchants registered on `--server` (one URL); then the tool prints "setup done, handing
        /// over" and waits up to `--handover-wait` seconds for these to answer. A driver
        /// stops the minting server there and starts the one to measure on its data
        /// directory (e.g. minting on every core, redeeming on one pinned core).
        #[arg(long, value_delimiter = ',')]
        redeem_server: Vec<String>,
        /// Seconds to wait for `--redeem-server` to answer after the setup.
        #[arg(long, default_value_t = 120)]
        handover_wait: u64,
        /// Concurrent merchants.
        #[arg(long, default_value_t = 8)]
        merchants: usize,
        /// Seconds of the timed phase.
        #[arg(long, default_value_t = 20)]
        duration: u64,
        /// Coins minted beforehand (the run stops early when all are redeemed).
        #[arg(long, default_value_t = 20_000)]
        coins: usize,
        /// Blind withdrawals in flight at once while minting (each of up to 100 coins;
        /// more keep more of a many-core server's cores signing).
        #[arg(long, default_value_t = 4)]
        mint_concurrency: usize,
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
            redeem_server,
            handover_wait,
            merchants,
            duration,
            coins,
            mint_concurrency,
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
                mint_concurrency: mint_concurrency.max(1),
                coins_per_payment,
                payments_per_batch,
                denomination,
                progress: !quiet,
                server_cores,
                swap: !no_swap,
                ..scrip::load::LoadConfig::default()
            };
            let handover = (!redeem_server.is_empty())
                .then(|| (redeem_server, std::time::Duration::from_secs(handover_wait)));
            run_load(&server, handover, bincode, trust, config).await
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
    handover: Option<(Vec<String>, std::time::Duration)>,
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
    if handover.is_some() && server_urls.len() > 1 {
        return Err(Error::Usage(
            "--redeem-server: give one --server to mint on (the timed phase goes to the \
             --redeem-server URLs)"
                .into(),
        ));
    }
    let client = |url: &String| -> Result<HttpClient, Error> {
        let client = HttpClient::new(url)?.with_operator_token(token.clone());
        Ok(if bincode {
            client.with_format(scrip::client::WireFormat::Bincode)
        } else {
            client
        })
    };
    let servers = server_urls
        .iter()
        .map(client)
        .collect::<Result<Vec<_>, _>>()?;
    let first = servers
        .first()
        .ok_or_else(|| Error::Usage("--server: give at least one server".into()))?;
    let root = setup::root_key(
        first,
        trust.root_key_path().as_deref(),
        &mut std::io::stderr(),
    )
    .await?;
    let (report, _) = match handover {
        None => scrip::load::run_across(&servers, &root, &config).await?,
        Some((urls, wait)) => {
            let redeem = urls.iter().map(client).collect::<Result<Vec<_>, _>>()?;
            scrip::load::run_handing_over(first, &redeem, &root, &config, wait).await?
        }
    };
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
