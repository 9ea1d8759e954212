//! `scrip merchant ...`: one point-of-sale step per command, the terminal's state in
//! `--dir` (`merchant.pem`, `certificate.bin`, the `merchant.redb` store, the pinned
//! `root-key.pem`, the `server`).

use std::path::Path;

use clap::Subcommand;
use scrip::client::HttpClient;
use scrip::merchant::{Merchant, MerchantConfig};
use scrip::setup::{self, now};
use scrip::stores::RedbStore;
use scrip::tokens::keys::Merchant as MerchantRole;
use scrip::tokens::{
    codec, Amount, Currency, MerchantCategory, MerchantCertificate, MerchantOffer, MerchantReply,
    PaymentAnswer, SigningKey,
};
use scrip::Error;

use crate::files::{read_input, read_text, rng, write_output, write_private};
use crate::trust::{load_client, load_root, pin_root, Trust};

#[derive(Subcommand)]
pub enum MerchantStep {
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
        now(),
    )
    .await?)
}

pub async fn step(dir: &Path, step: MerchantStep) -> Result<(), Error> {
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
                scrip::tokens::keys::DEFAULT_RSA_BITS,
            )?;
            write_private(&dir.join("merchant.pem"), key.to_pem()?.as_bytes())?;
            let certificate = setup::register_merchant(
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
