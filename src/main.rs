//! `scrip`: the demo story, and single wallet and merchant steps from the command line.
//!
//! Payment messages between wallet and merchant are files (or stdin/stdout with `-`),
//! standing in for NFC, BLE or QR codes. State lives in a directory per wallet or merchant.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use scrip::client::HttpClient;
use scrip::demo::{self, Phone};
use scrip::Error;
use scrip_issuer::server::{self, KeySource, ServerConfig, StoreKind};
use scrip_merchant::{Merchant, MerchantConfig};
use scrip_stores::RedbStore;
use scrip_tokens::keys::{DirectoryRoot, Merchant as MerchantRole};
use scrip_tokens::{
    codec, Amount, Currency, MerchantCategory, MerchantCertificate, MerchantOffer, MerchantReply,
    PaymentAnswer, SigningKey, VerifyingKey,
};
use scrip_wallet::{CertificateOptions, PayWith, StorageKey, Wallet};

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
        /// Server to load (it must issue coins of `--denomination` in EUR).
        #[arg(long, env = "SCRIP_SERVER", default_value = "http://127.0.0.1:8080")]
        server: String,
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

/// How to reach and trust the server.
#[derive(clap::Args, Clone)]
struct Trust {
    /// The server's data directory, where its `operator-token` and `root-key.pem` are
    /// read from when not given otherwise.
    #[arg(long, env = "SCRIP_DATA_DIR", default_value = "./scrip-data")]
    data_dir: PathBuf,
    /// Operator token (merchant registration).
    #[arg(long, env = "SCRIP_OPERATOR_TOKEN", hide_env_values = true)]
    operator_token: Option<String>,
    /// The issuer's root key (PEM) to pin. Default: <data-dir>/root-key.pem if present,
    /// else the server's, trusted on first use.
    #[arg(long, env = "SCRIP_ROOT_KEY")]
    root_key: Option<PathBuf>,
}

impl Trust {
    fn operator_token(&self) -> Option<String> {
        self.operator_token.clone().or_else(|| {
            std::fs::read_to_string(self.data_dir.join("operator-token"))
                .ok()
                .map(|s| s.trim().to_owned())
        })
    }

    fn root_key_path(&self) -> Option<PathBuf> {
        self.root_key.clone().or_else(|| {
            let p = self.data_dir.join("root-key.pem");
            p.exists().then_some(p)
        })
    }
}

#[derive(Subcommand)]
enum WalletStep {
    /// Creates the wallet and opens an account at the server.
    Init {
        /// Server URL.
        #[arg(long, env = "SCRIP_SERVER", default_value = "http://127.0.0.1:8080")]
        server: String,
        #[command(flatten)]
        trust: Trust,
    },
    /// Deposits an amount (minor units, EUR) from the demo funding source.
    Deposit {
        /// Minor units.
        amount: u64,
    },
    /// Takes a balance certificate (handing in unsent records).
    Certificate {
        /// At most this much (minor units).
        #[arg(long)]
        amount: Option<u64>,
    },
    /// Withdraws coins.
    Withdraw {
        /// Blind coin values, comma separated (minor units).
        #[arg(long, value_delimiter = ',')]
        blind: Vec<u64>,
        /// Identified coin values, comma separated.
        #[arg(long, value_delimiter = ',')]
        identified: Vec<u64>,
    },
    /// Pays a merchant's offer offline: reads the offer, writes the answer.
    Pay {
        /// Offer file (`-`: stdin).
        #[arg(long, default_value = "-")]
        offer: String,
        /// Pay by withdrawal record or by coins.
        #[arg(long, value_enum, default_value = "record")]
        with: PayMethod,
        /// Answer file (`-`: stdout).
        #[arg(long, default_value = "-")]
        out: String,
    },
    /// Reads the merchant's reply (receipt or rejection).
    Reply {
        /// Reply file (`-`: stdin).
        #[arg(long, default_value = "-")]
        reply: String,
    },
    /// Hands unsent records to the server.
    Sync,
    /// Prints the wallet's state as JSON.
    Show,
}

#[derive(Clone, Copy, ValueEnum)]
enum PayMethod {
    Record,
    Coins,
}

#[derive(Subcommand)]
enum MerchantStep {
    /// Creates the merchant key and registers it (needs the operator token).
    Init {
        /// Server URL.
        #[arg(long, env = "SCRIP_SERVER", default_value = "http://127.0.0.1:8080")]
        server: String,
        #[command(flatten)]
        trust: Trust,
        /// Merchant category code.
        #[arg(long, default_value_t = 5411)]
        category: u16,
        /// Region (ISO 3166-2).
        #[arg(long, default_value = "DE-BY")]
        region: String,
    },
    /// Writes a payment request for an amount (minor units, EUR).
    Offer {
        /// Minor units.
        amount: u64,
        /// Offer file (`-`: stdout).
        #[arg(long, default_value = "-")]
        out: String,
    },
    /// Verifies a wallet's answer offline and writes the signed reply.
    Accept {
        /// Answer file (`-`: stdin).
        #[arg(long, default_value = "-")]
        answer: String,
        /// Reply file (`-`: stdout).
        #[arg(long, default_value = "-")]
        out: String,
    },
    /// Uploads queued payments and prints the outcome counts.
    Sync,
    /// Prints the queue and settlements as JSON.
    Show,
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
                ..scrip::load::LoadConfig::default()
            };
            run_load(&server, bincode, trust, config).await
        }
        Command::Wallet { dir, step } => {
            let _lock = lock_state_dir(&dir)?;
            wallet_step(&dir, step).await
        }
        Command::Merchant { dir, step } => {
            let _lock = lock_state_dir(&dir)?;
            merchant_step(&dir, step).await
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
            let root = demo::root_key(&client, trust.root_key_path().as_deref(), &mut out).await?;
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
                generate: scrip_issuer::KeyringConfig {
                    denominations: vec![(Currency::EUR, scrip_issuer::one_two_five(1, 100))],
                    ..scrip_issuer::KeyringConfig::default()
                },
            };
            println!("starting an in-process server (generating issuer keys)...");
            let running = server::start(config).await?;
            let client = HttpClient::new(&running.url())?.with_operator_token(token);
            let root = running.state().issuer.keys().root.verifying_key().clone();
            (client, root, Some((running, dir)))
        }
    };
    let outcome = demo::run(&client, &root, &mut out).await;
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
    server_url: &str,
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
    let mut client = HttpClient::new(server_url)?.with_operator_token(token);
    if bincode {
        client = client.with_format(scrip::client::WireFormat::Bincode);
    }
    let root = demo::root_key(
        &client,
        trust.root_key_path().as_deref(),
        &mut std::io::stderr(),
    )
    .await?;
    let (report, _) = scrip::load::run(&client, &root, &config).await?;
    eprintln!(
        "redeemed {} coins in {:.1} s: {:.0} redemptions/s, {:.0} payments/s, batch latency \
         p50 {:.1} ms p99 {:.1} ms; one core verifies {:.0} coins/s ({} cores: {:.0}% of \
         cores x verify); {} retried uploads, {} unexpected outcomes",
        report.coins_redeemed,
        report.elapsed_s,
        report.redemptions_per_s,
        report.payments_per_s,
        report.batch_latency.p50_ms,
        report.batch_latency.p99_ms,
        report.single_core_verify_per_s,
        report.cores,
        report.fraction_of_verify_limit * 100.0,
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

fn rng() -> StdRng {
    StdRng::from_rng(&mut rand::rng())
}

fn read_input(path: &str) -> Result<Vec<u8>, Error> {
    let mut bytes = Vec::new();
    if path == "-" {
        std::io::stdin()
            .read_to_end(&mut bytes)
            .map_err(Error::io("reading stdin"))?;
    } else {
        bytes = std::fs::read(path).map_err(Error::io(format!("reading {path}")))?;
    }
    Ok(bytes)
}

fn write_output(path: &str, bytes: &[u8]) -> Result<(), Error> {
    if path == "-" {
        let mut stdout = std::io::stdout();
        stdout
            .write_all(bytes)
            .and_then(|_| stdout.flush())
            .map_err(Error::io("writing stdout"))
    } else {
        std::fs::write(path, bytes).map_err(Error::io(format!("writing {path}")))
    }
}

/// Creates the state directory (0700) if needed and locks it for this command: two
/// commands on one wallet at once would both load the same state, both spend the same
/// coins and sequence numbers, and the last to save would erase the other's payments.
fn lock_state_dir(dir: &Path) -> Result<scrip::issuer::server::DirectoryLock, Error> {
    Ok(scrip::issuer::server::DirectoryLock::create_and_acquire(
        dir,
    )?)
}

/// Writes a file readable only by its owner, atomically (a fresh temporary file, fsync,
/// rename, directory fsync): the state of a wallet or terminal is never half-written.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::Usage(format!("{} is not a file name", path.display())))?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    Ok(scrip::issuer::keyring_files::write_private(
        dir.unwrap_or(Path::new(".")),
        name,
        bytes,
    )?)
}

fn read_text(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .map_err(Error::io(format!("reading {}", path.display())))
}

/// Pins the root key in the state directory (from a file or, on first use, the server).
async fn pin_root(dir: &Path, client: &HttpClient, trust: &Trust) -> Result<(), Error> {
    let mut err = std::io::stderr();
    let root = demo::root_key(client, trust.root_key_path().as_deref(), &mut err).await?;
    write_private(
        &dir.join("root-key.pem"),
        root.public_key().to_pem()?.as_bytes(),
    )?;
    write_private(&dir.join("server"), client.base_url().as_bytes())
}

fn load_root(dir: &Path) -> Result<VerifyingKey<DirectoryRoot>, Error> {
    Ok(VerifyingKey::from_pem(&read_text(
        &dir.join("root-key.pem"),
    )?)?)
}

fn load_client(dir: &Path) -> Result<HttpClient, Error> {
    HttpClient::new(&read_text(&dir.join("server"))?)
}

fn load_phone(dir: &Path) -> Result<Phone, Error> {
    let key_hex = read_text(&dir.join("storage.key"))?;
    let key: [u8; 32] = hex::decode(key_hex)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| Error::Decode("storage.key is not 32 hex bytes".into()))?;
    let key = StorageKey::new(key);
    let bytes = std::fs::read(dir.join("wallet.bin")).map_err(Error::io("reading wallet.bin"))?;
    let wallet = Wallet::load(&bytes, &key)?;
    let mut phone = Phone::new(wallet, key);
    phone.saved = bytes;
    Ok(phone)
}

/// Writes the last saved state (every message was released only after this save).
fn store_phone(dir: &Path, phone: &Phone) -> Result<(), Error> {
    write_private(&dir.join("wallet.bin"), &phone.saved)
}

async fn wallet_step(dir: &Path, step: WalletStep) -> Result<(), Error> {
    let now = demo::now;
    let mut rng = rng();
    if let WalletStep::Init { server, trust } = step {
        std::fs::create_dir_all(dir).map_err(Error::io(format!("creating {}", dir.display())))?;
        if dir.join("wallet.bin").exists() {
            return Err(Error::Usage(format!(
                "{} already holds a wallet",
                dir.display()
            )));
        }
        let client = HttpClient::new(&server)?;
        pin_root(dir, &client, &trust).await?;
        let root = load_root(dir)?;
        let mut key = [0u8; 32];
        rng.fill_bytes(&mut key);
        write_private(&dir.join("storage.key"), hex::encode(key).as_bytes())?;
        let mut phone = Phone::new(Wallet::generate(root, &mut rng)?, StorageKey::new(key));
        phone
            .wallet
            .update_directory(client.key_directory().await?, now())?;
        let registration = phone.wallet.registration_request(None, now(), &mut rng)?;
        let registration = phone.send(registration)?;
        store_phone(dir, &phone)?;
        let opened = client.open_account(&registration).await?;
        phone
            .wallet
            .on_account_certificate(opened.certificate, now())?;
        phone.save()?;
        store_phone(dir, &phone)?;
        println!("account {} device {}", opened.account_id, opened.device_id);
        return Ok(());
    }
    let client = load_client(dir)?;
    let mut phone = load_phone(dir)?;
    match step {
        WalletStep::Init { .. } => {}
        WalletStep::Deposit { amount } => {
            let request = phone.wallet.deposit_request(
                Amount::new(amount, Currency::EUR),
                now(),
                &mut rng,
            )?;
            let request = phone.send(request)?;
            store_phone(dir, &phone)?;
            let record = client.deposit(&request).await?;
            let confirmation = phone.wallet.on_deposit_record(record, now(), &mut rng)?;
            phone.save()?;
            store_phone(dir, &phone)?;
            client.confirm_deposit(&confirmation).await?;
            println!("deposited {amount}");
        }
        WalletStep::Certificate { amount } => {
            phone
                .wallet
                .update_directory(client.key_directory().await?, now())?;
            let options = CertificateOptions {
                requested_amount: amount,
                ..CertificateOptions::any(Currency::EUR)
            };
            let request = phone.wallet.certificate_request(options, now(), &mut rng)?;
            let request = phone.send(request)?;
            store_phone(dir, &phone)?;
            let certificate = client.balance_certificate(&request).await?;
            phone
                .wallet
                .on_balance_certificate(certificate.clone(), now())?;
            phone.save()?;
            store_phone(dir, &phone)?;
            println!(
                "certificate {}: {} spendable offline until {}",
                certificate.payload.serial,
                certificate.payload.available.minor_units,
                certificate.payload.expires_at
            );
        }
        WalletStep::Withdraw { blind, identified } => {
            if !blind.is_empty() {
                let request = phone.wallet.blind_withdrawal_request(
                    &blind,
                    Currency::EUR,
                    now(),
                    &mut rng,
                )?;
                let request = phone.send(request)?;
                store_phone(dir, &phone)?;
                let response = client.withdraw_blind(&request).await?;
                let ids = phone
                    .wallet
                    .on_blind_withdrawal(&request, &response, now())?;
                phone.save()?;
                store_phone(dir, &phone)?;
                println!("{} blind coins", ids.len());
            }
            if !identified.is_empty() {
                let request = phone.wallet.identified_withdrawal_request(
                    &identified,
                    Currency::EUR,
                    now(),
                    &mut rng,
                )?;
                let request = phone.send(request)?;
                store_phone(dir, &phone)?;
                let response = client.withdraw_identified(&request).await?;
                let ids = phone
                    .wallet
                    .on_identified_withdrawal(&request, &response, now())?;
                phone.save()?;
                store_phone(dir, &phone)?;
                println!("{} identified coins", ids.len());
            }
        }
        WalletStep::Pay { offer, with, out } => {
            let offer = read_input(&offer)?;
            let with = match with {
                PayMethod::Record => PayWith::Record,
                PayMethod::Coins => PayWith::Coins,
            };
            let answer = phone.wallet.pay_bytes(&offer, with, now(), &mut rng)?;
            let answer = phone.send(answer)?;
            store_phone(dir, &phone)?;
            write_output(&out, &answer)?;
        }
        WalletStep::Reply { reply } => {
            let reply: MerchantReply = codec::decode(&read_input(&reply)?)?;
            let status = phone.wallet.on_merchant_reply(&reply, now())?;
            phone.save()?;
            store_phone(dir, &phone)?;
            match status {
                scrip_wallet::PaymentStatus::Completed(_) => println!("paid: receipt kept"),
                scrip_wallet::PaymentStatus::Rejected(r) => {
                    println!("rejected ({}): {}", r.code, r.message)
                }
            }
        }
        WalletStep::Sync => {
            // The answer is checked against the directory's answer key: take a fresh one.
            phone
                .wallet
                .update_directory(client.key_directory().await?, now())?;
            let request = phone.wallet.sync_request(now(), &mut rng)?;
            let report = client.sync(&request).await?;
            phone.wallet.on_sync_report(&request, &report, now())?;
            phone.save()?;
            store_phone(dir, &phone)?;
            println!(
                "{} records handed in, {} confirmations recorded",
                report.payload.records.len(),
                report.payload.confirmations_recorded
            );
        }
        WalletStep::Show => {
            let account = phone.wallet.account().cloned();
            let show = serde_json::json!({
                "account_id": account.as_ref().map(|a| a.account_id.to_string()),
                "device_id": account.as_ref().map(|a| a.device_id.to_string()),
                "offline_spendable": phone.wallet.offline_spendable(Currency::EUR, now()).minor_units,
                "coins": phone.wallet.coins().iter().map(|c| c.amount().minor_units).collect::<Vec<_>>(),
                "unsent_records": phone.wallet.outbox().len(),
                "receipts": phone.wallet.receipts().len(),
            });
            println!("{show}");
        }
    }
    Ok(())
}

async fn open_merchant(dir: &Path) -> Result<Merchant<RedbStore>, Error> {
    let key = SigningKey::<MerchantRole>::from_pem(&read_text(&dir.join("merchant.pem"))?)?;
    let certificate: MerchantCertificate = codec::decode(
        &std::fs::read(dir.join("certificate.bin"))
            .map_err(Error::io("reading certificate.bin"))?,
    )?;
    let store = RedbStore::open(dir.join("merchant.redb"))?;
    Ok(Merchant::open(
        store,
        key,
        certificate,
        load_root(dir)?,
        MerchantConfig::new(Amount::new(1_000_000, Currency::EUR)),
        demo::now(),
    )
    .await?)
}

async fn merchant_step(dir: &Path, step: MerchantStep) -> Result<(), Error> {
    let now = demo::now;
    let mut rng = rng();
    match step {
        MerchantStep::Init {
            server,
            trust,
            category,
            region,
        } => {
            std::fs::create_dir_all(dir)
                .map_err(Error::io(format!("creating {}", dir.display())))?;
            if dir.join("merchant.pem").exists() {
                return Err(Error::Usage(format!(
                    "{} already holds a merchant",
                    dir.display()
                )));
            }
            let mut client = HttpClient::new(&server)?;
            if let Some(token) = trust.operator_token() {
                client = client.with_operator_token(token);
            }
            pin_root(dir, &client, &trust).await?;
            let key = SigningKey::<MerchantRole>::generate(
                &mut rng,
                scrip_tokens::keys::DEFAULT_RSA_BITS,
            )?;
            write_private(&dir.join("merchant.pem"), key.to_pem()?.as_bytes())?;
            let certificate = demo::register_merchant(
                &client,
                &key,
                MerchantCategory::new(category)?,
                &region,
                &mut rng,
            )
            .await?;
            write_private(&dir.join("certificate.bin"), &codec::encode(&certificate)?)?;
            let merchant = open_merchant(dir).await?;
            merchant
                .refresh_directory(client.key_directory().await?, now())
                .await?;
            println!("merchant {}", certificate.payload.merchant_id);
        }
        MerchantStep::Offer { amount, out } => {
            let merchant = open_merchant(dir).await?;
            let offer: MerchantOffer = merchant
                .offer(Amount::new(amount, Currency::EUR), now(), &mut rng)
                .await?;
            write_output(&out, &codec::encode(&offer)?)?;
        }
        MerchantStep::Accept { answer, out } => {
            let merchant = open_merchant(dir).await?;
            let answer = read_input(&answer)?;
            // Decoded here only to say what it is; the merchant checks everything.
            let kind = match codec::decode::<PaymentAnswer>(&answer) {
                Ok(PaymentAnswer::ByRecord { .. }) => "record",
                Ok(PaymentAnswer::ByCoins(_)) => "coins",
                Err(_) => "undecodable answer",
            };
            let reply = merchant.accept_bytes(&answer, now(), &mut rng).await?;
            let decoded: MerchantReply = codec::decode(&reply)?;
            match &decoded {
                MerchantReply::Receipt(_) => eprintln!("accepted payment by {kind}"),
                MerchantReply::Rejection(r) => eprintln!(
                    "rejected payment by {kind}: {} ({})",
                    r.payload.reason.message, r.payload.reason.code
                ),
            }
            write_output(&out, &reply)?;
        }
        MerchantStep::Sync => {
            let merchant = open_merchant(dir).await?;
            let client = load_client(dir)?;
            let summary = merchant.sync(&client, now(), &mut rng).await?;
            println!(
                "{}",
                serde_json::json!({
                    "accepted": summary.accepted,
                    "already_accepted": summary.already_accepted,
                    "double_spent": summary.double_spent,
                    "invalid": summary.invalid,
                })
            );
        }
        MerchantStep::Show => {
            let merchant = open_merchant(dir).await?;
            let show = serde_json::json!({
                "merchant_id": merchant.certificate().payload.merchant_id.to_string(),
                "queued": merchant.pending(10_000).await?.len(),
                "unsettled": merchant.unsettled().await?.minor_units,
                "settled": merchant.settlements(10_000).await?.len(),
            });
            println!("{show}");
        }
    }
    Ok(())
}
