//! A tour of the issuer's HTTP API: starts an in-process server, makes every call once
//! (and the usual refusals), and prints each request and answer as pretty JSON. The
//! examples in `API.md` come from its output.
//!
//! ```sh
//! cargo run --release --example api_tour            # long hex strings shortened
//! SCRIP_TOUR_FULL=1 cargo run --release --example api_tour   # everything in full
//! ```

use std::error::Error;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::header::CONTENT_TYPE;
use reqwest::Method;
use scrip::demo::{now, Phone};
use scrip::issuer::api::{
    AccountOpenedBody, BalanceCertificateAnswer, CoinPaymentState, CoinState, DeviceEnrollment,
    DeviceRevoked, Done, FraudLogPage, ReissueRequest, ReissuedCoins, RootKey, BINCODE, JSON,
};
use scrip::issuer::server::{self, KeySource, ServerConfig, StoreKind};
use scrip::merchant::{Merchant, MerchantConfig};
use scrip::stores::MemoryStore;
use scrip::tokens::keys::{Device, Merchant as MerchantRole};
use scrip::tokens::{
    codec, AccountCertificate, Amount, BalanceCertificate, BlindWithdrawalRequest,
    BlindWithdrawalRequestPayload, BlindWithdrawalResponse, BlindedMessage, Currency,
    DepositRecord, DeviceId, IdentifiedWithdrawalRequest, IdentifiedWithdrawalRequestPayload,
    IdentifiedWithdrawalResponse, MerchantCategory, MerchantCertificate, MerchantRegistration,
    MerchantRegistrationPayload, MerchantStatement, PaymentAnswer, PayoutId, PayoutReceipt,
    PendingCoin, RedemptionReport, RefundReceipt, Region, RevocationList, SignedKeyDirectory,
    SigningKey, Statement, SwapReceipt, SwapRequest, SyncReport, Timestamp,
};
use scrip::wallet::{CertificateOptions, StorageKey, Wallet};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Res<T> = Result<T, Box<dyn Error>>;

/// An HTTP exchange's answer.
struct Answer {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

struct Tour {
    http: reqwest::Client,
    base: String,
    token: String,
    full: bool,
}

/// A JSON string's content, shortened to its first 16 characters and "…" when it is long
/// hex (keys, signatures, digests) and `shorten` is set.
fn string_token(content: &str, shorten: bool) -> String {
    if shorten && content.len() > 40 && content.bytes().all(|b| b.is_ascii_hexdigit()) {
        let head: String = content.chars().take(16).collect();
        format!("\"{head}…\"")
    } else {
        format!("\"{content}\"")
    }
}

/// Pretty-prints compact JSON keeping the field order of the bytes (serde_json's `Value`
/// would sort the keys).
fn pretty_json(compact: &str, shorten: bool) -> String {
    let chars: Vec<char> = compact.chars().collect();
    let mut out = String::new();
    let mut depth = 0usize;
    let mut i = 0;
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        out.push_str(&"  ".repeat(depth));
    };
    while let Some(&c) = chars.get(i) {
        match c {
            '"' => {
                let mut content = String::new();
                i += 1;
                while let Some(&d) = chars.get(i) {
                    if d == '\\' {
                        content.push(d);
                        if let Some(&e) = chars.get(i + 1) {
                            content.push(e);
                        }
                        i += 2;
                        continue;
                    }
                    if d == '"' {
                        break;
                    }
                    content.push(d);
                    i += 1;
                }
                out.push_str(&string_token(&content, shorten));
            }
            '{' | '[' => {
                let close = if c == '{' { '}' } else { ']' };
                if chars.get(i + 1) == Some(&close) {
                    out.push(c);
                    out.push(close);
                    i += 1;
                } else {
                    out.push(c);
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(',');
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
        i += 1;
    }
    out
}

fn eur(minor_units: u64) -> Amount {
    Amount::new(minor_units, Currency::EUR)
}

fn random<const N: usize>(rng: &mut StdRng) -> [u8; N] {
    let mut bytes = [0u8; N];
    rng.fill_bytes(&mut bytes);
    bytes
}

impl Tour {
    fn pretty(&self, bytes: &[u8]) -> String {
        match serde_json::from_slice::<Value>(bytes) {
            Ok(_) => pretty_json(&String::from_utf8_lossy(bytes), !self.full),
            Err(_) => match std::str::from_utf8(bytes) {
                Ok(text)
                    if bytes.len() < 16 * 1024
                        && !text.chars().any(|c| c.is_control() && c != '\n') =>
                {
                    text.to_owned()
                }
                _ => format!(
                    "({} bytes) {}…",
                    bytes.len(),
                    hex::encode(bytes.get(..64).unwrap_or(bytes))
                ),
            },
        }
    }

    /// Sends one request and prints it with its answer.
    async fn exchange(
        &self,
        title: &str,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> Res<Answer> {
        println!("\n===== {title}");
        println!("> {method} {path}");
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        for (name, value) in headers {
            let shown = if name.eq_ignore_ascii_case("authorization") {
                "Bearer <operator token>".to_owned()
            } else if name.eq_ignore_ascii_case("x-scrip-operator") {
                "<operator token>".to_owned()
            } else {
                value.clone()
            };
            println!("> {name}: {shown}");
            request = request.header(*name, value.as_str());
        }
        if let Some(body) = body {
            if body.len() > 64 * 1024 {
                println!("> ({} bytes of body)", body.len());
            } else {
                println!("{}", self.pretty(&body));
            }
            request = request.body(body);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let body = response.bytes().await?.to_vec();
        println!("< {status} {content_type}");
        println!("{}", self.pretty(&body));
        Ok(Answer {
            status,
            content_type,
            body,
        })
    }

    fn operator(&self) -> (&'static str, String) {
        ("authorization", format!("Bearer {}", self.token))
    }

    async fn post<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        title: &str,
        path: &str,
        body: &Req,
        operator: bool,
    ) -> Res<Resp> {
        let mut headers = vec![("content-type", JSON.to_owned())];
        if operator {
            headers.push(self.operator());
        }
        let answer = self
            .exchange(
                title,
                Method::POST,
                path,
                &headers,
                Some(serde_json::to_vec(body)?),
            )
            .await?;
        if answer.status != 200 {
            return Err(format!("{path}: unexpected status {}", answer.status).into());
        }
        Ok(serde_json::from_slice(&answer.body)?)
    }

    async fn get<Resp: DeserializeOwned>(
        &self,
        title: &str,
        path: &str,
        operator: bool,
    ) -> Res<Resp> {
        let mut headers = Vec::new();
        if operator {
            headers.push(self.operator());
        }
        let answer = self
            .exchange(title, Method::GET, path, &headers, None)
            .await?;
        if answer.status != 200 {
            return Err(format!("{path}: unexpected status {}", answer.status).into());
        }
        Ok(serde_json::from_slice(&answer.body)?)
    }

    /// Posts `body` as JSON and expects a refusal with `status`.
    async fn refused<Req: Serialize>(
        &self,
        title: &str,
        path: &str,
        body: &Req,
        operator: bool,
        status: u16,
    ) -> Res<()> {
        let mut headers = vec![("content-type", JSON.to_owned())];
        if operator {
            headers.push(self.operator());
        }
        let answer = self
            .exchange(
                title,
                Method::POST,
                path,
                &headers,
                Some(serde_json::to_vec(body)?),
            )
            .await?;
        expect_status(&answer, status)
    }
}

fn expect_status(answer: &Answer, status: u16) -> Res<()> {
    if answer.status == status {
        Ok(())
    } else {
        println!("!!!!! expected status {status}, got {}", answer.status);
        Ok(())
    }
}

async fn open_shop(
    tour: &Tour,
    root: &scrip::tokens::VerifyingKey<scrip::tokens::keys::DirectoryRoot>,
    directory: &SignedKeyDirectory,
    rng: &mut StdRng,
    show: bool,
) -> Res<Merchant<MemoryStore>> {
    let key = SigningKey::<MerchantRole>::generate(rng, scrip::tokens::keys::DEFAULT_RSA_BITS)?;
    let registration = MerchantRegistration::sign(
        MerchantRegistrationPayload {
            merchant_key: key.verifying_key().clone(),
            category: MerchantCategory::GROCERY,
            region: Region::new("DE-BY")?,
            created_at: now(),
            nonce: random(rng),
        },
        &key,
        rng,
    )?;
    let certificate: MerchantCertificate = if show {
        tour.post(
            "POST /v1/merchants (operator)",
            "/v1/merchants",
            &registration,
            true,
        )
        .await?
    } else {
        tour.post(
            "POST /v1/merchants (operator, second merchant)",
            "/v1/merchants",
            &registration,
            true,
        )
        .await?
    };
    let merchant = Merchant::open(
        MemoryStore::new(),
        key,
        certificate,
        root.clone(),
        MerchantConfig::new(eur(1_000_000)),
        now(),
    )
    .await?;
    merchant.refresh_directory(directory.clone(), now()).await?;
    Ok(merchant)
}

#[tokio::main]
async fn main() -> Res<()> {
    let full = std::env::var_os("SCRIP_TOUR_FULL").is_some();
    let mut rng = StdRng::from_rng(&mut rand::rng());

    // ---- the server -------------------------------------------------------------------
    let dir = tempfile::tempdir()?;
    let token = server::generate_operator_token();
    let mut config = ServerConfig::new(([127, 0, 0, 1], 0).into(), dir.path(), token.clone());
    config.store = StoreKind::Memory;
    // A small limit keeps the 413 example small; API.md says so (the default is 8 MiB).
    config.max_body_bytes = 1 << 20;
    config.keys = KeySource::Directory {
        dir: dir.path().join("keys"),
        generate: scrip::issuer::KeyringConfig {
            denominations: vec![(Currency::EUR, scrip::issuer::one_two_five(1, 100))],
            ..scrip::issuer::KeyringConfig::default()
        },
    };
    eprintln!("starting an in-process server (generating issuer keys)...");
    let running = server::start(config).await?;
    let tour = Tour {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?,
        base: running.url(),
        token,
        full,
    };
    println!("server at {} (max body 1 MiB for this tour)", tour.base);

    // ---- public reads -----------------------------------------------------------------
    let _: Done = tour.get("GET /healthz", "/healthz", false).await?;
    let _: Done = tour.get("GET /readyz", "/readyz", false).await?;
    let answer = tour
        .exchange("HEAD /v1/root-key", Method::HEAD, "/v1/root-key", &[], None)
        .await?;
    expect_status(&answer, 200)?;
    let root: RootKey = tour.get("GET /v1/root-key", "/v1/root-key", false).await?;
    let directory: SignedKeyDirectory = tour.get("GET /v1/keys", "/v1/keys", false).await?;
    let _ = tour
        .exchange(
            "GET /v1/keys (bincode)",
            Method::GET,
            "/v1/keys",
            &[("accept", BINCODE.to_owned())],
            None,
        )
        .await?;
    let root = root.key;
    directory.verify(&root)?;

    // ---- accounts and devices ---------------------------------------------------------
    let device_key =
        SigningKey::<Device>::generate(&mut rng, scrip::tokens::keys::DEFAULT_RSA_BITS)?;
    let spare_key = SigningKey::<Device>::from_der(&device_key.to_der()?)?;
    let mut phone = Phone::new(
        Wallet::new(device_key, root.clone())?,
        StorageKey::random(&mut rng),
    );
    phone.wallet.update_directory(directory.clone(), now())?;
    let registration = phone.wallet.registration_request(None, now(), &mut rng)?;
    let registration = phone.send(registration)?;
    let opened: AccountOpenedBody = tour
        .post("POST /v1/accounts", "/v1/accounts", &registration, false)
        .await?;
    phone
        .wallet
        .on_account_certificate(opened.certificate.clone(), now())?;
    phone.save()?;
    let account_id = opened.account_id;
    let device_id = opened.device_id;

    // Registrations are not kept in the replay cache (anyone can sign one): the same
    // bytes again open nothing new and answer the same account.
    let replayed: AccountOpenedBody = tour
        .post(
            "POST /v1/accounts again with the same bytes (a replay: the same account)",
            "/v1/accounts",
            &registration,
            false,
        )
        .await?;
    if replayed.account_id != opened.account_id {
        return Err("a replayed registration opened another account".into());
    }

    // The answer to the registration was "lost": the client signs it again (new time and
    // nonce), as the replay rules ask.
    let retry = phone.wallet.registration_request(None, now(), &mut rng)?;
    let retry = phone.send(retry)?;
    tour.refused(
        "POST /v1/accounts re-signed retry for the same device key",
        "/v1/accounts",
        &retry,
        false,
        409,
    )
    .await?;

    // A second device joins, approved by the first.
    let mut tablet = Phone::new(
        Wallet::generate(root.clone(), &mut rng)?,
        StorageKey::random(&mut rng),
    );
    tablet.wallet.update_directory(directory.clone(), now())?;
    let registration = tablet
        .wallet
        .registration_request(Some(account_id), now(), &mut rng)?;
    let registration = tablet.send(registration)?;
    let approval = phone
        .wallet
        .approve_device(tablet.wallet.device_key_id(), now(), &mut rng)?;
    let enrollment = DeviceEnrollment {
        registration,
        approval,
    };
    let tablet_certificate: AccountCertificate = tour
        .post("POST /v1/devices", "/v1/devices", &enrollment, false)
        .await?;
    let tablet_device = tablet_certificate.payload.device_id;
    tablet
        .wallet
        .on_account_certificate(tablet_certificate, now())?;
    tablet.save()?;

    // ---- merchants --------------------------------------------------------------------
    let shop_a = open_shop(&tour, &root, &directory, &mut rng, true).await?;
    let shop_b = open_shop(&tour, &root, &directory, &mut rng, false).await?;
    {
        let key =
            SigningKey::<MerchantRole>::generate(&mut rng, scrip::tokens::keys::DEFAULT_RSA_BITS)?;
        let registration = MerchantRegistration::sign(
            MerchantRegistrationPayload {
                merchant_key: key.verifying_key().clone(),
                category: MerchantCategory::GROCERY,
                region: Region::new("DE")?,
                created_at: now(),
                nonce: random(&mut rng),
            },
            &key,
            &mut rng,
        )?;
        tour.refused(
            "POST /v1/merchants without the operator token",
            "/v1/merchants",
            &registration,
            false,
            401,
        )
        .await?;
    }

    let too_much = IdentifiedWithdrawalRequest::sign(
        IdentifiedWithdrawalRequestPayload {
            account_id,
            device_id,
            currency: Currency::EUR,
            amounts: vec![5],
            idempotency_key: random(&mut rng),
            created_at: now(),
            nonce: random(&mut rng),
        },
        &spare_key,
        &mut rng,
    )?;
    tour.refused(
        "POST /v1/withdrawals/identified before any deposit",
        "/v1/withdrawals/identified",
        &too_much,
        false,
        422,
    )
    .await?;

    // ---- deposits ---------------------------------------------------------------------
    let request = phone.wallet.deposit_request(eur(10_000), now(), &mut rng)?;
    let request = phone.send(request)?;
    let record: DepositRecord = tour
        .post("POST /v1/deposits", "/v1/deposits", &request, false)
        .await?;
    // A retry after a lost answer: signed again, same deposit id, same record.
    let retry = phone
        .wallet
        .resign_deposit_request(request.payload.deposit_id, now(), &mut rng)?;
    let retry = phone.send(retry)?;
    let again: DepositRecord = tour
        .post(
            "POST /v1/deposits (the same deposit re-signed: idempotent retry)",
            "/v1/deposits",
            &retry,
            false,
        )
        .await?;
    println!(
        "(retry answered the first record again: {})",
        again == record
    );
    let confirmation = phone.wallet.on_deposit_record(record, now(), &mut rng)?;
    phone.save()?;
    let _: Done = tour
        .post(
            "POST /v1/deposit-confirmations",
            "/v1/deposit-confirmations",
            &confirmation,
            false,
        )
        .await?;

    // ---- coins ------------------------------------------------------------------------
    let request = phone.wallet.blind_withdrawal_request(
        &[10, 2].map(|v| Amount::new(v, Currency::EUR)),
        now(),
        &mut rng,
    )?;
    let request = phone.send(request)?;
    let response: BlindWithdrawalResponse = tour
        .post(
            "POST /v1/withdrawals/blind",
            "/v1/withdrawals/blind",
            &request,
            false,
        )
        .await?;
    phone
        .wallet
        .on_blind_withdrawal(&request, &response, now())?;
    phone.save()?;

    let request = phone.wallet.identified_withdrawal_request(
        &[5, 1].map(|v| Amount::new(v, Currency::EUR)),
        now(),
        &mut rng,
    )?;
    let request = phone.send(request)?;
    let response: IdentifiedWithdrawalResponse = tour
        .post(
            "POST /v1/withdrawals/identified",
            "/v1/withdrawals/identified",
            &request,
            false,
        )
        .await?;
    phone
        .wallet
        .on_identified_withdrawal(&request, &response, now())?;
    phone.save()?;

    // Refusals with a device key we hold: too much, and a blinded message of the wrong size.
    let garbage = BlindWithdrawalRequest::sign(
        BlindWithdrawalRequestPayload {
            account_id,
            device_id,
            keyset_id: response_keyset(&directory)?,
            coins: vec![(1, BlindedMessage(vec![7; 16]))],
            idempotency_key: random(&mut rng),
            created_at: now(),
            nonce: random(&mut rng),
        },
        &spare_key,
        &mut rng,
    )?;
    tour.refused(
        "POST /v1/withdrawals/blind with a 16-byte blinded message",
        "/v1/withdrawals/blind",
        &garbage,
        false,
        400,
    )
    .await?;

    // ---- balance certificate ----------------------------------------------------------
    let options = CertificateOptions::up_to(eur(3_000));
    let request = phone.wallet.certificate_request(options, now(), &mut rng)?;
    let request = phone.send(request)?;
    let certificate: BalanceCertificate = tour
        .post(
            "POST /v1/balance-certificates",
            "/v1/balance-certificates",
            &request,
            false,
        )
        .await?;
    phone.wallet.on_balance_certificate(certificate, now())?;
    phone.save()?;

    // ---- offline payments, then redemption --------------------------------------------
    let offer = shop_a.offer(eur(750), now(), &mut rng).await?;
    let record_payment = offer.request.payload.request_id;
    let answer = phone.wallet.pay_by_record(&offer, now(), &mut rng)?;
    let answer = phone.send(answer)?;
    let reply = shop_a.accept(&answer, now(), &mut rng).await?;
    phone.wallet.on_merchant_reply(&reply, now())?;
    phone.save()?;

    let copied_state = phone.saved.clone();
    let offer = shop_a.offer(eur(10), now(), &mut rng).await?;
    let coin_payment = offer.request.payload.request_id;
    let answer = phone.wallet.pay_by_coins(&offer, now())?;
    let answer = phone.send(answer)?;
    let spent_coin = match &answer {
        PaymentAnswer::ByCoins(p) => p.coins.first().map(|c| c.spend_id()),
        PaymentAnswer::ByRecord { .. } => None,
    }
    .ok_or("the coin payment carries no coin")??
    .to_hex();
    let reply = shop_a.accept(&answer, now(), &mut rng).await?;
    phone.wallet.on_merchant_reply(&reply, now())?;
    phone.save()?;

    let batch = shop_a
        .build_batch(now(), &mut rng)
        .await?
        .ok_or("merchant A has nothing queued")?;
    let report: RedemptionReport = tour
        .post("POST /v1/redemptions", "/v1/redemptions", &batch, false)
        .await?;
    shop_a.apply_report(&batch, &report, now()).await?;

    // The customer's copy of the record.
    let request = phone.wallet.sync_request(now(), &mut rng)?;
    let report: SyncReport = tour
        .post("POST /v1/sync", "/v1/sync", &request, false)
        .await?;
    phone.wallet.on_sync_report(&request, &report, now())?;
    phone.save()?;

    // A copy of the wallet spends the coin again at merchant B.
    let mut clone = Phone::new(
        Wallet::load(&copied_state, &phone.storage_key)?,
        StorageKey::random(&mut rng),
    );
    let offer = shop_b.offer(eur(10), now(), &mut rng).await?;
    let answer = clone.wallet.pay_by_coins(&offer, now())?;
    let answer = clone.send(answer)?;
    let _ = shop_b.accept(&answer, now(), &mut rng).await?;
    let batch = shop_b
        .build_batch(now(), &mut rng)
        .await?
        .ok_or("merchant B has nothing queued")?;
    let report: RedemptionReport = tour
        .post(
            "POST /v1/redemptions (a double spend)",
            "/v1/redemptions",
            &batch,
            false,
        )
        .await?;
    shop_b.apply_report(&batch, &report, now()).await?;

    let _: CoinState = tour
        .get(
            "GET /v1/coins/{spend_id}",
            &format!("/v1/coins/{spent_coin}"),
            false,
        )
        .await?;
    let _: CoinState = tour
        .get(
            "GET /v1/coins/{spend_id} (never redeemed)",
            "/v1/coins/5f0e2b7d9c110b8a56f23c1e4d529a5c6f0e2b7d9c110b8a56f23c1e4d529a5c",
            false,
        )
        .await?;

    // ---- statement --------------------------------------------------------------------
    let request = phone
        .wallet
        .statement_request(Currency::EUR, None, 100, now(), &mut rng)?;
    let _: Statement = tour
        .post(
            "POST /v1/accounts/{id}/statement",
            &format!("/v1/accounts/{account_id}/statement"),
            &request,
            false,
        )
        .await?;
    let request = phone
        .wallet
        .statement_request(Currency::EUR, None, 2, now(), &mut rng)?;
    tour.refused(
        "POST /v1/accounts/{id}/statement with a path id that is not a UUID",
        "/v1/accounts/not-a-uuid/statement",
        &request,
        false,
        404,
    )
    .await?;
    let other = scrip::tokens::AccountId::random(&mut rng);
    tour.refused(
        "POST /v1/accounts/{id}/statement with another account id in the path",
        &format!("/v1/accounts/{other}/statement"),
        &request,
        false,
        400,
    )
    .await?;

    // Bincode both ways: a statement request.
    let request = phone
        .wallet
        .statement_request(Currency::EUR, Some(1), 2, now(), &mut rng)?;
    let bytes = codec::encode(&request)?;
    let tag_len = bytes.iter().position(|b| *b == 0).unwrap_or(0);
    println!(
        "\n(bincode statement request: {} bytes; tag {:?}, NUL, version bytes {}, then bincode {}…)",
        bytes.len(),
        String::from_utf8_lossy(bytes.get(..tag_len).unwrap_or(&[])),
        hex::encode(bytes.get(tag_len + 1..tag_len + 3).unwrap_or(&[])),
        hex::encode(bytes.get(tag_len + 3..tag_len + 35).unwrap_or(&[])),
    );
    let answer = tour
        .exchange(
            "POST /v1/accounts/{id}/statement (bincode both ways)",
            Method::POST,
            &format!("/v1/accounts/{account_id}/statement"),
            &[
                ("content-type", BINCODE.to_owned()),
                ("accept", BINCODE.to_owned()),
            ],
            Some(bytes),
        )
        .await?;
    let statement: Statement = codec::decode(&answer.body)?;
    println!(
        "(decoded {}: balance {}, {} entries)",
        answer.content_type,
        statement.payload.balance,
        statement.payload.entries.len()
    );

    // The customer asks whether its coin payment was settled, with the merchant's receipt.
    let receipt = phone
        .wallet
        .coin_receipt(coin_payment)
        .ok_or("no receipt of the coin payment")?
        .clone();
    let _: CoinPaymentState = tour
        .post(
            "POST /v1/coin-payments/state",
            "/v1/coin-payments/state",
            &receipt,
            false,
        )
        .await?;

    // ---- a merchant's money: statement, payout, refunds --------------------------------
    let terminal = shop_a.terminal();
    let request = terminal.statement_request(Currency::EUR, None, 100, now(), &mut rng)?;
    let _: MerchantStatement = tour
        .post(
            "POST /v1/merchant-statements",
            "/v1/merchant-statements",
            &request,
            false,
        )
        .await?;
    let payout_id = PayoutId::random(&mut rng);
    let request = terminal.payout_request(payout_id, eur(200), now(), &mut rng)?;
    let _: PayoutReceipt = tour
        .post(
            "POST /v1/payouts (the demo payout sink)",
            "/v1/payouts",
            &request,
            false,
        )
        .await?;
    let request = terminal.payout_request(payout_id, eur(300), now(), &mut rng)?;
    tour.refused(
        "POST /v1/payouts with a used payout id and another amount",
        "/v1/payouts",
        &request,
        false,
        409,
    )
    .await?;
    let request = terminal.refund_request(record_payment, eur(250), now(), &mut rng)?;
    let _: RefundReceipt = tour
        .post(
            "POST /v1/refunds (part of a payment by record)",
            "/v1/refunds",
            &request,
            false,
        )
        .await?;
    let request = terminal.refund_request(record_payment, eur(600), now(), &mut rng)?;
    tour.refused(
        "POST /v1/refunds for more than is left of the payment",
        "/v1/refunds",
        &request,
        false,
        422,
    )
    .await?;
    let request = terminal.refund_request(coin_payment, eur(10), now(), &mut rng)?;
    tour.refused(
        "POST /v1/refunds to an account for a coin payment",
        "/v1/refunds",
        &request,
        false,
        422,
    )
    .await?;
    // A coin payment is refunded by a voucher the customer's wallet withdraws.
    let voucher = terminal.refund_voucher(coin_payment, eur(10), now(), &mut rng)?;
    let request = phone
        .wallet
        .voucher_withdrawal_request(&voucher.to_bytes()?, now(), &mut rng)?;
    let request = phone.send(request)?;
    let response: BlindWithdrawalResponse = tour
        .post(
            "POST /v1/refund-withdrawals",
            "/v1/refund-withdrawals",
            &request,
            false,
        )
        .await?;
    phone
        .wallet
        .on_voucher_withdrawal(&request, &response, now())?;
    phone.save()?;

    // ---- swaps ------------------------------------------------------------------------
    // Change made online: the wallet's blind coins for coins of EUR 0.01.
    phone
        .wallet
        .update_directory(codec::decode(&tour_directory(&tour).await?)?, now())?;
    let blind: Vec<_> = phone
        .wallet
        .coins()
        .iter()
        .filter(|c| matches!(c, scrip::tokens::Coin::Blind(_)))
        .map(|c| (c.id(), c.amount().minor_units))
        .collect();
    let ids: Vec<_> = blind.iter().map(|(id, _)| *id).collect();
    let total: u64 = blind.iter().map(|(_, v)| v).sum();
    let ones: Vec<Amount> = (0..total).map(|_| eur(1)).collect();
    let request = phone.wallet.swap_request(&ids, &ones, now(), &mut rng)?;
    let request = phone.send(request)?;
    let old_coins = request.coins.clone();
    let _: SwapReceipt = tour
        .post(
            "POST /v1/swaps (change: the wallet's blind coins into coins of EUR 0.01)",
            "/v1/swaps",
            &request,
            false,
        )
        .await?;
    let receipt: SwapReceipt = tour
        .post(
            "POST /v1/swaps again with the same bytes (an answer lost: the same signatures)",
            "/v1/swaps",
            &request,
            false,
        )
        .await?;
    phone.wallet.on_swap_receipt(&request, &receipt, now())?;
    phone.save()?;
    // The old coins in another request: double spent, nothing claimed, a signed answer.
    let keyset_id = request.keyset_id;
    let total: u64 = old_coins.iter().map(|c| c.amount().minor_units).sum();
    let signed: SignedKeyDirectory = codec::decode(&tour_directory(&tour).await?)?;
    let keyset = signed.verify(&root)?.keyset(keyset_id)?.clone();
    let pending = (0..total)
        .map(|_| PendingCoin::new(&mut rng, &keyset, eur(1)))
        .collect::<Result<Vec<_>, _>>()?;
    let replay = SwapRequest {
        request_key: random(&mut rng),
        coins: old_coins,
        keyset_id,
        outputs: pending
            .iter()
            .map(|p| (p.amount().minor_units, p.blinded().clone()))
            .collect(),
    };
    let _: SwapReceipt = tour
        .post(
            "POST /v1/swaps with coins swapped before (double spent)",
            "/v1/swaps",
            &replay,
            false,
        )
        .await?;
    // A merchant takes a coin payment as coins into its own wallet.
    let offer = shop_b.offer(eur(3), now(), &mut rng).await?;
    let answer = phone.wallet.pay_by_coins(&offer, now())?;
    let answer = phone.send(answer)?;
    let reply = shop_b.accept(&answer, now(), &mut rng).await?;
    phone.wallet.on_merchant_reply(&reply, now())?;
    phone.save()?;
    let mut purse = Phone::new(
        Wallet::generate(root.clone(), &mut rng)?,
        StorageKey::random(&mut rng),
    );
    purse
        .wallet
        .update_directory(codec::decode(&tour_directory(&tour).await?)?, now())?;
    let total = shop_b.coins_to_take().await?.ok_or("nothing to take")?;
    let outputs = purse.wallet.swap_outputs(total, now(), &mut rng)?;
    let outputs = purse.send(outputs)?;
    let request = shop_b.take_coins_request(&outputs, now(), &mut rng).await?;
    let receipt: SwapReceipt = tour
        .post(
            "POST /v1/merchant-swaps",
            "/v1/merchant-swaps",
            &request,
            false,
        )
        .await?;
    let outcome = shop_b.apply_take_receipt(&request, &receipt, now()).await?;
    purse.wallet.on_merchant_swap(&outputs, &outcome, now())?;
    // Identified coins are swapped only by their holder's device, signed.
    let request = phone
        .wallet
        .identified_swap_request(Currency::EUR, now(), &mut rng)?
        .ok_or("the tour's phone holds no identified coin")?;
    let request = phone.send(request)?;
    let signed = phone.wallet.sign_swap(&request, now(), &mut rng)?;
    let receipt: SwapReceipt = tour
        .post(
            "POST /v1/device-swaps (the phone's identified coins, for blind coins)",
            "/v1/device-swaps",
            &signed,
            false,
        )
        .await?;
    phone.wallet.on_swap_receipt(&request, &receipt, now())?;
    phone.save()?;

    // A new certificate on the current route: the answer also says what became of each
    // record handed in with the request.
    let options = CertificateOptions::up_to(eur(2_000));
    let request = phone.wallet.certificate_request(options, now(), &mut rng)?;
    let request = phone.send(request)?;
    let answer: BalanceCertificateAnswer = tour
        .post(
            "POST /v2/balance-certificates",
            "/v2/balance-certificates",
            &request,
            false,
        )
        .await?;
    phone
        .wallet
        .on_balance_certificate_answer(answer.certificate, &answer.hand_ins, now())?;
    phone.save()?;

    // ---- freshness refusals -----------------------------------------------------------
    let request = phone.wallet.sync_request(now(), &mut rng)?;
    let _: SyncReport = tour
        .post("POST /v1/sync (empty)", "/v1/sync", &request, false)
        .await?;
    tour.refused(
        "POST /v1/sync again with the same bytes (replay)",
        "/v1/sync",
        &request,
        false,
        409,
    )
    .await?;
    let future = now().saturating_add(Duration::from_secs(600));
    let request = phone.wallet.sync_request(future, &mut rng)?;
    tour.refused(
        "POST /v1/sync dated 10 minutes ahead",
        "/v1/sync",
        &request,
        false,
        401,
    )
    .await?;
    let past = Timestamp::from_unix_millis(now().as_unix_millis().saturating_sub(3_600_000));
    let request = phone.wallet.sync_request(past, &mut rng)?;
    tour.refused(
        "POST /v1/sync dated an hour ago (before the server started)",
        "/v1/sync",
        &request,
        false,
        401,
    )
    .await?;
    let mut forged = phone.wallet.sync_request(now(), &mut rng)?;
    forged.payload.nonce = random(&mut rng);
    tour.refused(
        "POST /v1/sync with a payload altered after signing",
        "/v1/sync",
        &forged,
        false,
        401,
    )
    .await?;

    // ---- operator routes --------------------------------------------------------------
    let _: FraudLogPage = tour
        .get(
            "GET /v1/fraud-log (operator)",
            "/v1/fraud-log?limit=10",
            true,
        )
        .await?;
    let answer = tour
        .exchange(
            "GET /v1/fraud-log with a bad cursor",
            Method::GET,
            "/v1/fraud-log?after=zz",
            &[tour.operator()],
            None,
        )
        .await?;
    expect_status(&answer, 400)?;
    let answer = tour
        .exchange(
            "GET /v1/fraud-log without the token",
            Method::GET,
            "/v1/fraud-log",
            &[],
            None,
        )
        .await?;
    expect_status(&answer, 401)?;

    let answer = tour
        .exchange(
            "POST /v1/devices/{id}/revoke (operator)",
            Method::POST,
            &format!("/v1/devices/{device_id}/revoke"),
            &[
                ("x-scrip-operator", tour.token.clone()),
                ("content-length", "0".to_owned()),
            ],
            None,
        )
        .await?;
    expect_status(&answer, 200)?;
    let _: DeviceRevoked = serde_json::from_slice(&answer.body)?;
    let unknown = DeviceId::random(&mut rng);
    let answer = tour
        .exchange(
            "POST /v1/devices/{id}/revoke for an unknown device",
            Method::POST,
            &format!("/v1/devices/{unknown}/revoke"),
            &[tour.operator()],
            None,
        )
        .await?;
    expect_status(&answer, 404)?;

    let reissued: ReissuedCoins = tour
        .post(
            "POST /v1/devices/{id}/reissue (operator)",
            &format!("/v1/devices/{device_id}/reissue"),
            &ReissueRequest { to: tablet_device },
            true,
        )
        .await?;
    tablet
        .wallet
        .accept_reissued_coins(&reissued.coins, now())?;

    // The revocation is published at once: the full list, and the delta from version 1.
    let _: RevocationList = tour
        .get("GET /v1/revocations", "/v1/revocations", false)
        .await?;
    let _: RevocationList = tour
        .get(
            "GET /v1/revocations?since=1 (a delta)",
            "/v1/revocations?since=1",
            false,
        )
        .await?;

    let request = phone.wallet.sync_request(now(), &mut rng)?;
    tour.refused(
        "POST /v1/sync from the revoked device",
        "/v1/sync",
        &request,
        false,
        403,
    )
    .await?;

    // All devices lost: the operator registers a new one for the account.
    let mut new_phone = Phone::new(
        Wallet::generate(root.clone(), &mut rng)?,
        StorageKey::random(&mut rng),
    );
    new_phone
        .wallet
        .update_directory(directory.clone(), now())?;
    let registration = new_phone
        .wallet
        .registration_request(Some(account_id), now(), &mut rng)?;
    let registration = new_phone.send(registration)?;
    let _: AccountCertificate = tour
        .post(
            "POST /v1/recoveries (operator)",
            "/v1/recoveries",
            &registration,
            true,
        )
        .await?;

    let answer = tour
        .exchange(
            "POST /v1/devices/{id}/reissue for a device that is not revoked",
            Method::POST,
            &format!("/v1/devices/{tablet_device}/reissue"),
            &[("content-type", JSON.to_owned()), tour.operator()],
            Some(serde_json::to_vec(&ReissueRequest { to: tablet_device })?),
        )
        .await?;
    expect_status(&answer, 400)?;
    let request = phone.wallet.deposit_request(eur(100), now(), &mut rng)?;
    let request = phone.send(request)?;
    tour.refused(
        "POST /v1/deposits from the revoked device",
        "/v1/deposits",
        &request,
        false,
        403,
    )
    .await?;
    let registration = tablet
        .wallet
        .registration_request(Some(account_id), now(), &mut rng)?;
    let registration = tablet.send(registration)?;
    tour.refused(
        "POST /v1/accounts with a registration that names an account",
        "/v1/accounts",
        &registration,
        false,
        400,
    )
    .await?;
    let page: FraudLogPage = tour
        .get(
            "GET /v1/fraud-log (first page)",
            "/v1/fraud-log?limit=1",
            true,
        )
        .await?;
    if let Some(last) = page.entries.last() {
        let answer = tour
            .exchange(
                "GET /v1/fraud-log (next page)",
                Method::GET,
                &format!("/v1/fraud-log?limit=1&after={}", last.key),
                &[tour.operator()],
                None,
            )
            .await?;
        expect_status(&answer, 200)?;
    }
    let answer = tour
        .exchange(
            "GET /v1/fraud-log with a limit that is not a number",
            Method::GET,
            "/v1/fraud-log?limit=abc",
            &[tour.operator()],
            None,
        )
        .await?;
    expect_status(&answer, 400)?;
    let answer = tour
        .exchange(
            "GET /healthz asking for bincode",
            Method::GET,
            "/healthz",
            &[("accept", BINCODE.to_owned())],
            None,
        )
        .await?;
    expect_status(&answer, 200)?;
    let answer = tour
        .exchange("POST a GET-only route", Method::POST, "/v1/keys", &[], None)
        .await?;
    expect_status(&answer, 405)?;
    let answer = tour
        .exchange(
            "GET /v1/coins/{spend_id} with a coin id instead of a spend id",
            Method::GET,
            "/v1/coins/0b8a56f2-3c1e-4d52-9a5c-6f0e2b7d9c11",
            &[],
            None,
        )
        .await?;
    expect_status(&answer, 404)?;

    // ---- transport refusals -----------------------------------------------------------
    let answer = tour
        .exchange("GET an unknown route", Method::GET, "/v1/nope", &[], None)
        .await?;
    expect_status(&answer, 404)?;
    let answer = tour
        .exchange(
            "GET a POST-only route",
            Method::GET,
            "/v1/accounts",
            &[],
            None,
        )
        .await?;
    expect_status(&answer, 405)?;
    let answer = tour
        .exchange(
            "POST with an unsupported Content-Type",
            Method::POST,
            "/v1/sync",
            &[("content-type", "text/plain".to_owned())],
            Some(b"hello".to_vec()),
        )
        .await?;
    expect_status(&answer, 415)?;
    let answer = tour
        .exchange(
            "POST a malformed JSON body",
            Method::POST,
            "/v1/deposits",
            &[("content-type", JSON.to_owned())],
            Some(br#"{"payload": 1}"#.to_vec()),
        )
        .await?;
    expect_status(&answer, 400)?;
    let answer = tour
        .exchange(
            "POST a bincode body of another type",
            Method::POST,
            "/v1/deposits",
            &[("content-type", BINCODE.to_owned())],
            Some(codec::encode(&Done { ok: true })?),
        )
        .await?;
    expect_status(&answer, 400)?;
    let answer = tour
        .exchange(
            "POST a body over the limit (1 MiB in this tour; the default is 8 MiB)",
            Method::POST,
            "/v1/redemptions",
            &[("content-type", JSON.to_owned())],
            Some(vec![b' '; (1 << 20) + 1]),
        )
        .await?;
    expect_status(&answer, 413)?;

    // A chunked body (no Content-Length), written by hand.
    println!("\n===== POST a chunked body (no Content-Length)");
    let mut stream = tokio::net::TcpStream::connect(running.local_addr()).await?;
    stream
        .write_all(
            b"POST /v1/sync HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
              transfer-encoding: chunked\r\nconnection: close\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        )
        .await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    println!("{}", String::from_utf8_lossy(&raw));

    // Refusals hyper itself produces, below the routes: JSON like every other.
    for (title, raw) in [
        ("a malformed request line", b"GARBAGE\r\n\r\n".to_vec()),
        (
            "a Content-Length that is not a number",
            b"POST /v1/sync HTTP/1.1\r\nhost: localhost\r\ncontent-length: ten\r\n\r\n".to_vec(),
        ),
        (
            "request headers over 16 KiB",
            format!(
                "GET /healthz HTTP/1.1\r\nhost: localhost\r\nx-padding: {}\r\n\r\n",
                "a".repeat(20_000)
            )
            .into_bytes(),
        ),
    ] {
        println!("\n===== {title}");
        let mut stream = tokio::net::TcpStream::connect(running.local_addr()).await?;
        stream.write_all(&raw).await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        println!("{}", String::from_utf8_lossy(&answer));
    }

    // ---- metrics ----------------------------------------------------------------------
    let answer = tour
        .exchange("GET /metrics", Method::GET, "/metrics", &[], None)
        .await?;
    expect_status(&answer, 200)?;

    running.shutdown().await?;
    drop(dir);
    Ok(())
}

/// The id of the directory's first keyset.
/// The server's signed key directory, as bytes of the binary codec (fetched quietly: not
/// part of the tour's output).
async fn tour_directory(tour: &Tour) -> Res<Vec<u8>> {
    let bytes = tour
        .http
        .get(format!("{}/v1/keys", tour.base))
        .header("accept", BINCODE)
        .send()
        .await?
        .bytes()
        .await?;
    Ok(bytes.to_vec())
}

fn response_keyset(directory: &SignedKeyDirectory) -> Res<scrip::tokens::KeysetId> {
    Ok(directory.payload.keysets().first().ok_or("no keyset")?.id())
}
