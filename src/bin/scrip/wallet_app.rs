//! `scrip wallet ...`: one wallet step per command, the wallet's state in `--dir`
//! (`wallet.bin` sealed with `storage.key`, the pinned `root-key.pem`, the `server`).

use std::path::{Path, PathBuf};

use clap::{Subcommand, ValueEnum};
use rand::Rng;
use scrip::client::HttpClient;
use scrip::setup::now;
use scrip::tokens::{codec, Amount, Currency, MerchantReply};
use scrip::wallet::{
    CertificateOptions, PayWith, PaymentStatus, SavingWallet, StorageKey, SwapResult, Wallet,
    WalletStorage,
};
use scrip::Error;

use crate::files::{read_input, read_text, rng, write_output, write_private};
use crate::trust::{load_client, load_root, pin_root, Trust};

#[derive(Subcommand)]
pub enum WalletStep {
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
    /// Swaps coins at the server for new blind coins (change, refresh, or a chosen split).
    /// First sends again every swap whose answer was lost. With no option, does only that.
    Swap {
        /// Split the coins so that these amounts (minor units, comma separated) can each be
        /// paid offline with exact change; the rest goes into the default mix.
        #[arg(long, value_delimiter = ',', conflicts_with_all = ["into", "refresh"])]
        change: Vec<u64>,
        /// Swap every coin for coins of these values (minor units, comma separated; they
        /// must add up to the coins' total).
        #[arg(long, value_delimiter = ',', conflicts_with = "refresh")]
        into: Vec<u64>,
        /// Refresh coins whose keyset stopped issuing or ends within a week.
        #[arg(long)]
        refresh: bool,
        /// Swap the identified coins for blind coins of the same total (signed by this
        /// device: the issuer swaps identified coins only for their holder).
        #[arg(long)]
        identified: bool,
    },
    /// Hands unsent records to the server.
    Sync,
    /// Prints the wallet's state as JSON.
    Show,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum PayMethod {
    Record,
    Coins,
}

/// EUR coin values from the command line's minor units.
fn eurs(minor_units: &[u64]) -> Vec<Amount> {
    minor_units
        .iter()
        .map(|v| Amount::new(*v, Currency::EUR))
        .collect()
}

/// The wallet's sealed state in `<dir>/wallet.bin`, replaced atomically (0600).
struct WalletFile {
    dir: PathBuf,
}

impl WalletStorage for WalletFile {
    type Error = Error;
    fn store(&mut self, sealed: &[u8]) -> Result<(), Error> {
        write_private(&self.dir.join("wallet.bin"), sealed)
    }
}

type Phone = SavingWallet<WalletFile>;

fn load_phone(dir: &Path) -> Result<Phone, Error> {
    let key_hex = read_text(&dir.join("storage.key"))?;
    let key: [u8; 32] = hex::decode(key_hex)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| Error::Decode("storage.key is not 32 hex bytes".into()))?;
    let key = StorageKey::new(key);
    let bytes = std::fs::read(dir.join("wallet.bin")).map_err(Error::io("reading wallet.bin"))?;
    let wallet = Wallet::load(&bytes, &key)?;
    let file = WalletFile {
        dir: dir.to_owned(),
    };
    Ok(SavingWallet::loaded(wallet, key, file))
}

pub async fn step(dir: &Path, step: WalletStep) -> Result<(), Error> {
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
        let file = WalletFile {
            dir: dir.to_owned(),
        };
        // Nothing is written before the server answered with a directory that verifies:
        // a failed init can simply be run again.
        let mut wallet = Wallet::generate(root, &mut rng)?;
        wallet.update_directory(client.key_directory().await?, now())?;
        let mut phone = SavingWallet::new(wallet, StorageKey::new(key), file, &mut rng)?;
        let registration = phone
            .wallet_mut()
            .registration_request(None, now(), &mut rng)?;
        let registration = phone.send(registration, &mut rng)?;
        let opened = client.open_account(&registration).await?;
        phone.apply(&mut rng, |w, _| {
            w.on_account_certificate(opened.certificate, now())
        })?;
        println!("account {} device {}", opened.account_id, opened.device_id);
        return Ok(());
    }
    let client = load_client(dir)?;
    let mut phone = load_phone(dir)?;
    match step {
        WalletStep::Init { .. } => {}
        WalletStep::Deposit { amount } => {
            let request = phone.wallet_mut().deposit_request(
                Amount::new(amount, Currency::EUR),
                now(),
                &mut rng,
            )?;
            let request = phone.send(request, &mut rng)?;
            let record = client.deposit(&request).await?;
            let confirmation =
                phone.apply(&mut rng, |w, rng| w.on_deposit_record(record, now(), rng))?;
            client.confirm_deposit(&confirmation).await?;
            println!("deposited {amount}");
        }
        WalletStep::Certificate { amount } => {
            let directory = client.key_directory().await?;
            phone.apply(&mut rng, |w, _| w.update_directory(directory, now()))?;
            let options = CertificateOptions {
                requested_amount: amount.map(|a| Amount::new(a, Currency::EUR)),
                ..CertificateOptions::any(Currency::EUR)
            };
            let request = phone
                .wallet_mut()
                .certificate_request(options, now(), &mut rng)?;
            let request = phone.send(request, &mut rng)?;
            let answer = client.balance_certificate_answered(&request).await?;
            let certificate = answer.certificate.clone();
            let outcomes = phone.apply(&mut rng, |w, _| {
                w.on_balance_certificate_answer(answer.certificate, &answer.hand_ins, now())
            })?;
            print_refused_hand_ins(&outcomes);
            println!(
                "certificate {}: {} spendable offline until {}",
                certificate.payload.serial,
                certificate.payload.available.minor_units,
                certificate.payload.expires_at
            );
        }
        WalletStep::Withdraw { blind, identified } => {
            if !blind.is_empty() {
                let request =
                    phone
                        .wallet_mut()
                        .blind_withdrawal_request(&eurs(&blind), now(), &mut rng)?;
                let request = phone.send(request, &mut rng)?;
                let response = client.withdraw_blind(&request).await?;
                let ids = phone.apply(&mut rng, |w, _| {
                    w.on_blind_withdrawal(&request, &response, now())
                })?;
                println!("{} blind coins", ids.len());
            }
            if !identified.is_empty() {
                let request = phone.wallet_mut().identified_withdrawal_request(
                    &eurs(&identified),
                    now(),
                    &mut rng,
                )?;
                let request = phone.send(request, &mut rng)?;
                let response = client.withdraw_identified(&request).await?;
                let ids = phone.apply(&mut rng, |w, _| {
                    w.on_identified_withdrawal(&request, &response, now())
                })?;
                println!("{} identified coins", ids.len());
            }
        }
        WalletStep::Pay { offer, with, out } => {
            let offer = read_input(&offer)?;
            let with = match with {
                PayMethod::Record => PayWith::Record,
                PayMethod::Coins => PayWith::Coins,
            };
            let answer = phone
                .wallet_mut()
                .pay_bytes(&offer, with, now(), &mut rng)?;
            let answer = phone.send(answer, &mut rng)?;
            write_output(&out, &answer)?;
        }
        WalletStep::Reply { reply } => {
            let reply: MerchantReply = codec::decode(&read_input(&reply)?)?;
            let status = phone.apply(&mut rng, |w, _| w.on_merchant_reply(&reply, now()))?;
            match status {
                PaymentStatus::Completed(_) => println!("paid: receipt kept"),
                PaymentStatus::Rejected(r) => {
                    println!("rejected ({}): {}", r.code, r.message)
                }
            }
        }
        WalletStep::Swap {
            change,
            into,
            refresh,
            identified,
        } => {
            // Receipts are checked against the directory's answer key, and new coins
            // against its keysets: take a fresh one.
            let directory = client.key_directory().await?;
            phone.apply(&mut rng, |w, _| w.update_directory(directory, now()))?;
            for request in phone.wallet().pending_swaps() {
                println!("sending again a swap whose answer was lost");
                // The issuer answers a request it did before from its store, whatever
                // changed since; a refusal of a resend is reported, never cancelled.
                if let Err(e) = resend(&client, &mut phone, &request, &mut rng).await {
                    eprintln!("the swap stays pending: {e}");
                }
            }
            if !change.is_empty() {
                let request = phone
                    .wallet_mut()
                    .change_request(&eurs(&change), now(), &mut rng)?;
                match request {
                    Some(request) => {
                        let request = phone.send(request, &mut rng)?;
                        swap(&client, &mut phone, request, &mut rng).await?;
                    }
                    None => println!("the coins held already pay {change:?} with exact change"),
                }
            }
            if !into.is_empty() {
                // Blind coins only: `--identified` swaps the identified ones.
                let ids: Vec<_> = phone
                    .wallet()
                    .coins()
                    .iter()
                    .filter(|c| matches!(c, scrip::tokens::Coin::Blind(_)))
                    .map(|c| c.id())
                    .collect();
                let request =
                    phone
                        .wallet_mut()
                        .swap_request(&ids, &eurs(&into), now(), &mut rng)?;
                let request = phone.send(request, &mut rng)?;
                swap(&client, &mut phone, request, &mut rng).await?;
            }
            if identified {
                match phone
                    .wallet_mut()
                    .identified_swap_request(Currency::EUR, now(), &mut rng)?
                {
                    Some(request) => {
                        let request = phone.send(request, &mut rng)?;
                        swap(&client, &mut phone, request, &mut rng).await?;
                    }
                    None => println!("no identified coin to swap"),
                }
            }
            if refresh {
                let mut refreshed = false;
                while let Some(request) = phone.wallet_mut().refresh_request(now(), &mut rng)? {
                    let request = phone.send(request, &mut rng)?;
                    swap(&client, &mut phone, request, &mut rng).await?;
                    refreshed = true;
                }
                if !refreshed {
                    println!("no coin needs refreshing");
                }
            }
            let values: Vec<u64> = phone
                .wallet()
                .coins()
                .iter()
                .map(|c| c.amount().minor_units)
                .collect();
            println!("coins: {values:?}");
        }
        WalletStep::Sync => {
            // The answer is checked against the directory's answer key: take a fresh one.
            let directory = client.key_directory().await?;
            phone.apply(&mut rng, |w, _| w.update_directory(directory, now()))?;
            let request = phone.wallet_mut().sync_request(now(), &mut rng)?;
            let report = client.sync(&request).await?;
            let outcomes =
                phone.apply(&mut rng, |w, _| w.on_sync_report(&request, &report, now()))?;
            println!(
                "{} records handed in, {} confirmations recorded",
                report.payload.records.len(),
                report.payload.confirmations_recorded
            );
            print_refused_hand_ins(&outcomes);
        }
        WalletStep::Show => {
            let wallet = phone.wallet();
            let account = wallet.account().cloned();
            let show = serde_json::json!({
                "account_id": account.as_ref().map(|a| a.account_id.to_string()),
                "device_id": account.as_ref().map(|a| a.device_id.to_string()),
                "offline_spendable": wallet.offline_spendable(Currency::EUR, now()).minor_units,
                "coins": wallet.coins().iter().map(|c| c.amount().minor_units).collect::<Vec<_>>(),
                "unsent_records": wallet.outbox().len(),
                "receipts": wallet.receipts().len(),
            });
            println!("{show}");
        }
    }
    Ok(())
}

/// Sends a pending swap again and applies the signed answer; any error leaves it pending.
async fn resend(
    client: &HttpClient,
    phone: &mut Phone,
    request: &scrip::tokens::SwapRequest,
    rng: &mut impl rand::CryptoRng,
) -> Result<(), Error> {
    let receipt = send_swap(client, phone, request, rng).await??;
    let result = phone.apply(rng, |w, _| w.on_swap_receipt(request, &receipt, now()))?;
    report_swap(&result);
    Ok(())
}

/// Sends a pending swap: as it is, or signed by this device when it hands in identified
/// coins (the issuer swaps those only for their holder's device). The outer error is
/// local (signing); the inner one is the server's answer.
async fn send_swap(
    client: &HttpClient,
    phone: &Phone,
    request: &scrip::tokens::SwapRequest,
    rng: &mut impl rand::CryptoRng,
) -> Result<Result<scrip::tokens::SwapReceipt, scrip_api::ClientError>, Error> {
    if request.hands_in_identified() {
        let signed = phone.wallet().sign_swap(request, now(), rng)?;
        Ok(client.device_swap(&signed).await)
    } else {
        Ok(client.swap(request).await)
    }
}

fn report_swap(result: &SwapResult) {
    match result {
        SwapResult::Swapped { coins } => println!("swapped: {} new coins", coins.len()),
        SwapResult::DoubleSpent {
            spent, returned, ..
        } => println!(
            "double spent: {} coins were spent before and are dropped, {} kept",
            spent.len(),
            returned.len()
        ),
    }
}

/// Sends a new swap (its first send) and applies the signed answer. A refusal (the issuer
/// answered 4xx to a request it never did: nothing was claimed) gives the coins back; a
/// lost answer (transport error, 5xx, busy) leaves the swap pending, to be sent again by
/// the next `scrip wallet swap`.
async fn swap(
    client: &HttpClient,
    phone: &mut Phone,
    request: scrip::tokens::SwapRequest,
    rng: &mut impl rand::CryptoRng,
) -> Result<(), Error> {
    match send_swap(client, phone, &request, rng).await? {
        Ok(receipt) => {
            let result = phone.apply(rng, |w, _| w.on_swap_receipt(&request, &receipt, now()))?;
            report_swap(&result);
            Ok(())
        }
        Err(e) if never_done(&e) => {
            phone.apply(rng, |w, _| w.cancel_swap(&request))?;
            eprintln!("the issuer refused the swap: its coins are back in the wallet");
            Err(e.into())
        }
        Err(e) => Err(e.into()),
    }
}

/// Whether the issuer's refusal of a swap's first send means it never carried it out: a
/// 4xx other than a timeout, a rate limit or `replayed` (these very signed bytes were
/// admitted before and may have been carried out; only a resend, signed again, tells).
fn never_done(e: &scrip_api::ClientError) -> bool {
    matches!(
        e,
        scrip_api::ClientError::Refused { status, code, .. }
            if (400..500).contains(status)
                && *status != 408
                && *status != 429
                && *code != scrip_tokens::ReasonCode::Replayed
    )
}

/// Tells the user of every handed-in record the issuer refused: the merchant was not paid
/// for it.
fn print_refused_hand_ins(outcomes: &[scrip_wallet::HandInOutcome]) {
    for o in outcomes {
        if let scrip_tokens::RedemptionOutcome::Invalid { reason } = &o.outcome {
            println!(
                "record {} ({} to merchant {}) refused: {} ({})",
                o.record_id, o.amount.minor_units, o.merchant_id, reason.code, reason.message
            );
        }
    }
}
