//! `scrip demo`: the whole story over HTTP, step by step.
//!
//! A customer opens an account, deposits, withdraws blind and identified coins and takes a
//! balance certificate; goes offline and pays merchant A once by withdrawal record and
//! once by coins; merchant A reconnects and uploads (its first answer is "lost", so it
//! uploads the same items again); the customer syncs its copy of the record; a copy of the
//! customer's wallet made before the coin payment spends the same coin at merchant B, who
//! finds out when it redeems. Then refunds, a payout, a stolen phone refused by the
//! revocation list, and coins back in circulation: the customer makes change online for
//! the amounts it expects to pay, pays merchant B with coins, merchant B takes that
//! payment as coins into its own wallet (a swap) and pays merchant A with them, offline;
//! merchant A is paid when it syncs. Expected outcome counts: 3 accepted, 3 already
//! accepted, 1 double spent, 0 invalid.

use std::io::Write;

use rand::rngs::StdRng;
use rand::SeedableRng;
use scrip_merchant::{Merchant, MerchantConfig};
use scrip_stores::MemoryStore;
use scrip_tokens::keys::{DirectoryRoot, Merchant as MerchantRole};
use scrip_tokens::{
    Amount, Currency, MerchantCategory, PaymentAnswer, PayoutId, PayoutState, ReasonCode,
    RedemptionOutcome, RequestId, SigningKey, VerifyingKey,
};
use scrip_wallet::{CertificateOptions, PaymentStatus, StorageKey, Unreleased, Wallet};
use serde::Serialize;

use crate::client::HttpClient;
use crate::setup::register_merchant;
use crate::Error;
use scrip_api::CoinPaymentStatus;

/// The wall clock (re-exported from [`crate::setup`] for the tests and the command line).
pub use crate::setup::now;

/// Outcome counts of every redemption answer the story saw (merchant uploads and the
/// customer's sync).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Outcomes {
    /// Credited now.
    pub accepted: u32,
    /// Credited before (retries, the second copy of a record).
    pub already_accepted: u32,
    /// Redeemed by someone else first.
    pub double_spent: u32,
    /// Refused.
    pub invalid: u32,
}

impl Outcomes {
    fn add(&mut self, outcomes: &[RedemptionOutcome]) {
        for o in outcomes {
            match o {
                RedemptionOutcome::Accepted { .. } => self.accepted += 1,
                RedemptionOutcome::AlreadyAccepted { .. } => self.already_accepted += 1,
                RedemptionOutcome::DoubleSpent { .. } => self.double_spent += 1,
                RedemptionOutcome::Invalid { .. } => self.invalid += 1,
            }
        }
    }

    fn merge(&mut self, other: Outcomes) {
        self.accepted += other.accepted;
        self.already_accepted += other.already_accepted;
        self.double_spent += other.double_spent;
        self.invalid += other.invalid;
    }

    /// What the story produces against a correct issuer.
    pub const EXPECTED: Outcomes = Outcomes {
        accepted: 3,
        already_accepted: 3,
        double_spent: 1,
        invalid: 0,
    };
}

impl std::fmt::Display for Outcomes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "accepted {}, already_accepted {}, double_spent {}, invalid {}",
            self.accepted, self.already_accepted, self.double_spent, self.invalid
        )
    }
}

/// A wallet that saves its state before every message leaves (as a real vendor must).
pub struct Phone {
    /// The wallet.
    pub wallet: Wallet,
    /// Key its state is sealed with.
    pub storage_key: StorageKey,
    /// The last saved (sealed) state: what survives a crash.
    pub saved: Vec<u8>,
    rng: StdRng,
}

impl Phone {
    /// Wraps `wallet`, sealing its state with `storage_key`.
    pub fn new(wallet: Wallet, storage_key: StorageKey) -> Self {
        Phone {
            wallet,
            storage_key,
            saved: Vec::new(),
            rng: StdRng::from_rng(&mut rand::rng()),
        }
    }

    /// Saves, then releases the message.
    pub fn send<T>(&mut self, message: Unreleased<T>) -> Result<T, Error> {
        let saved = self.wallet.save(&self.storage_key, &mut self.rng)?;
        let message = message.release(&saved)?;
        self.saved = saved.bytes().to_vec();
        Ok(message)
    }

    /// Saves the wallet now.
    pub fn save(&mut self) -> Result<(), Error> {
        self.saved = self
            .wallet
            .save(&self.storage_key, &mut self.rng)?
            .bytes()
            .to_vec();
        Ok(())
    }
}

fn say(out: &mut dyn Write, line: &str) {
    let _ = writeln!(out, "{line}");
}

/// Certificate options: EUR, at most `minor_units`, no other rule.
pub fn up_to(minor_units: u64) -> CertificateOptions {
    CertificateOptions::up_to(eur(minor_units))
}

fn eur(minor_units: u64) -> Amount {
    Amount::new(minor_units, Currency::EUR)
}

async fn open_shop(
    client: &HttpClient,
    root: &VerifyingKey<DirectoryRoot>,
    rng: &mut StdRng,
) -> Result<Merchant<MemoryStore>, Error> {
    let key = SigningKey::<MerchantRole>::generate(rng, scrip_tokens::keys::DEFAULT_RSA_BITS)?;
    let certificate =
        register_merchant(client, &key, MerchantCategory::GROCERY, "DE-BY", rng).await?;
    let merchant = Merchant::open(
        MemoryStore::new(),
        key,
        certificate,
        root.clone(),
        MerchantConfig::new(eur(1_000_000)),
        now(),
    )
    .await?;
    merchant
        .refresh_directory(client.key_directory().await?, now())
        .await?;
    Ok(merchant)
}

/// Runs the story against `client`'s server, printing each step to `out`; returns the
/// outcome counts.
pub async fn run(
    client: &HttpClient,
    root: &VerifyingKey<DirectoryRoot>,
    out: &mut dyn Write,
) -> Result<Outcomes, Error> {
    let mut rng = StdRng::from_rng(&mut rand::rng());
    let mut outcomes = Outcomes::default();

    say(out, &format!("1. connecting to {}", client.base_url()));
    client.health().await?;
    let directory = client.key_directory().await?;
    directory.verify(root)?;
    say(out, "   key directory verified against the root key");

    say(out, "2. the customer's wallet opens an account");
    let wallet = Wallet::generate(root.clone(), &mut rng)?;
    let mut phone = Phone::new(wallet, StorageKey::random(&mut rng));
    phone.wallet.update_directory(directory.clone(), now())?;
    let registration = phone.wallet.registration_request(None, now(), &mut rng)?;
    let registration = phone.send(registration)?;
    let opened = client.open_account(&registration).await?;
    phone
        .wallet
        .on_account_certificate(opened.certificate, now())?;
    phone.save()?;
    say(
        out,
        &format!(
            "   account {} device {}",
            opened.account_id, opened.device_id
        ),
    );

    say(out, "3. two merchants register (operator-authorized)");
    let shop_a = open_shop(client, root, &mut rng).await?;
    let shop_b = open_shop(client, root, &mut rng).await?;
    say(
        out,
        &format!(
            "   merchant A {}, merchant B {}",
            shop_a.certificate().payload.merchant_id,
            shop_b.certificate().payload.merchant_id
        ),
    );

    say(out, "4. the customer deposits EUR 100.00");
    let request = phone.wallet.deposit_request(eur(10_000), now(), &mut rng)?;
    let request = phone.send(request)?;
    let record = client.deposit(&request).await?;
    let confirmation = phone.wallet.on_deposit_record(record, now(), &mut rng)?;
    phone.save()?;
    client.confirm_deposit(&confirmation).await?;
    say(out, "   deposit credited and confirmed");

    say(
        out,
        "5. withdraws blind coins (10, 2, 2, 1) and identified coins (5, 1)",
    );
    let request = phone.wallet.blind_withdrawal_request(
        &[10, 2, 2, 1].map(|v| Amount::new(v, Currency::EUR)),
        now(),
        &mut rng,
    )?;
    let request = phone.send(request)?;
    let response = client.withdraw_blind(&request).await?;
    let blind = phone
        .wallet
        .on_blind_withdrawal(&request, &response, now())?;
    let request = phone.wallet.identified_withdrawal_request(
        &[5, 1].map(|v| Amount::new(v, Currency::EUR)),
        now(),
        &mut rng,
    )?;
    let request = phone.send(request)?;
    let response = client.withdraw_identified(&request).await?;
    let identified = phone
        .wallet
        .on_identified_withdrawal(&request, &response, now())?;
    phone.save()?;
    say(
        out,
        &format!(
            "   {} blind coins (the issuer never saw their ids), {} identified coins",
            blind.len(),
            identified.len()
        ),
    );

    say(out, "6. takes a balance certificate for up to EUR 30.00");
    let options = CertificateOptions::up_to(eur(3_000));
    let request = phone.wallet.certificate_request(options, now(), &mut rng)?;
    let request = phone.send(request)?;
    let answer = client.balance_certificate_answered(&request).await?;
    let certificate = answer.certificate.clone();
    phone
        .wallet
        .on_balance_certificate_answer(answer.certificate, &answer.hand_ins, now())?;
    phone.save()?;
    say(
        out,
        &format!(
            "   certificate {} makes EUR {} spendable offline",
            certificate.payload.serial,
            fmt_minor(certificate.payload.available.minor_units)
        ),
    );

    say(
        out,
        "7. offline: pays merchant A EUR 7.50 with a signed withdrawal record",
    );
    let offer = shop_a.offer(eur(750), now(), &mut rng).await?;
    let record_request = offer.request.payload.request_id;
    let answer = phone.wallet.pay_by_record(&offer, now(), &mut rng)?;
    let answer = phone.send(answer)?;
    let reply = shop_a.accept(&answer, now(), &mut rng).await?;
    expect_completed(phone.wallet.on_merchant_reply(&reply, now())?, "record")?;
    phone.save()?;
    say(
        out,
        "   merchant A verified it offline and countersigned the receipt",
    );

    say(
        out,
        "8. offline: pays merchant A EUR 0.10 with one blind coin",
    );
    // A copy of the wallet before the coin leaves: what a cheater restores later.
    let copied_state = phone.saved.clone();
    let offer = shop_a.offer(eur(10), now(), &mut rng).await?;
    let coin_request = offer.request.payload.request_id;
    let answer = phone.wallet.pay_by_coins(&offer, now())?;
    let answer = phone.send(answer)?;
    let spent_coin = match &answer {
        PaymentAnswer::ByCoins(p) => p.coins.first().cloned(),
        PaymentAnswer::ByRecord { .. } => None,
    }
    .ok_or_else(|| Error::Demo("the coin payment carries no coin".into()))?;
    let spent_coin_id = spent_coin.id();
    let reply = shop_a.accept(&answer, now(), &mut rng).await?;
    expect_completed(phone.wallet.on_merchant_reply(&reply, now())?, "coins")?;
    phone.save()?;
    say(
        out,
        &format!("   coin {spent_coin_id} endorsed by merchant A"),
    );

    say(
        out,
        "9. merchant A reconnects and uploads; the answer is lost on the way",
    );
    let batch = shop_a
        .build_batch(now(), &mut rng)
        .await?
        .ok_or_else(|| Error::Demo("merchant A has nothing queued".into()))?;
    let report = client.redeem(&batch).await?;
    // Merchant A never applies this answer (it is "lost"); the demo only counts it.
    outcomes.add(&report.payload.outcomes);
    say(
        out,
        &format!("   issuer answered: {}", describe(&report.payload.outcomes)),
    );

    say(out, "10. merchant A uploads the same payments again (sync)");
    let seen = sync_and_count(&shop_a, client, &mut rng).await?;
    outcomes.merge(seen);
    say(
        out,
        &format!("   issuer answered: {} (nothing credited twice)", seen),
    );
    if seen.accepted != 0 {
        return Err(Error::Demo("a retried upload was credited again".into()));
    }

    say(out, "11. the customer syncs its own copy of the record");
    let request = phone.wallet.sync_request(now(), &mut rng)?;
    let report = client.sync(&request).await?;
    phone.wallet.on_sync_report(&request, &report, now())?;
    phone.save()?;
    outcomes.add(&report.payload.records);
    say(
        out,
        &format!("   issuer answered: {}", describe(&report.payload.records)),
    );

    say(
        out,
        "12. a copy of the wallet from before step 8 pays merchant B EUR 0.10",
    );
    let mut clone = Phone::new(
        Wallet::load(&copied_state, &phone.storage_key)?,
        StorageKey::random(&mut rng),
    );
    let offer = shop_b.offer(eur(10), now(), &mut rng).await?;
    let copy_request = offer.request.payload.request_id;
    let answer = clone.wallet.pay_by_coins(&offer, now())?;
    let answer = clone.send(answer)?;
    let reply = shop_b.accept(&answer, now(), &mut rng).await?;
    expect_completed(clone.wallet.on_merchant_reply(&reply, now())?, "coins")?;
    say(
        out,
        "   merchant B cannot know offline that the coin was spent: it accepts",
    );

    say(out, "13. merchant B reconnects and redeems");
    let seen = sync_and_count(&shop_b, client, &mut rng).await?;
    outcomes.merge(seen);
    say(out, &format!("   issuer answered: {seen}"));
    let state = client.coin_state(spent_coin.spend_id()?).await?;
    say(out, &format!("   coin {spent_coin_id}: {:?}", state.state));
    // Each wallet asks what became of its coin payment, by the merchant's receipt: the
    // customer's settled, the copy's can never settle.
    for (who, wallet, request_id, settles) in [
        ("the customer's", &phone.wallet, coin_request, true),
        ("the copy's", &clone.wallet, copy_request, false),
    ] {
        let receipt = wallet
            .coin_receipt(request_id)
            .ok_or_else(|| Error::Demo(format!("{who} coin receipt is missing")))?;
        let state = client.coin_payment_state(receipt).await?.state;
        say(out, &format!("   {who} coin payment: {state:?}"));
        if matches!(state, CoinPaymentStatus::Settled { .. }) != settles {
            return Err(Error::Demo(format!(
                "{who} coin payment is in an unexpected state"
            )));
        }
    }

    say(out, "14. the customer's statement");
    let statement = statement(client, &mut phone, &mut rng).await?;
    for entry in &statement.payload.entries {
        say(
            out,
            &format!(
                "   {:>+10}  balance {:>10}  {}",
                entry.delta, entry.balance_after, entry.memo
            ),
        );
    }

    refunds(
        client,
        root,
        &shop_a,
        &mut phone,
        record_request,
        coin_request,
        out,
    )
    .await?;
    payout(client, &shop_a, out).await?;
    stolen_phone(client, root, &shop_a, &phone, out).await?;
    let seen = circulation(client, root, &shop_a, &shop_b, &mut phone, out).await?;
    outcomes.merge(seen);
    Ok(outcomes)
}

/// Coins back in circulation: change made online, a merchant taking a coin payment as
/// coins into its own wallet, and paying another merchant with them offline.
async fn circulation(
    client: &HttpClient,
    root: &VerifyingKey<DirectoryRoot>,
    shop_a: &Merchant<MemoryStore>,
    shop_b: &Merchant<MemoryStore>,
    phone: &mut Phone,
    out: &mut dyn Write,
) -> Result<Outcomes, Error> {
    let mut rng = StdRng::from_rng(&mut rand::rng());
    say(
        out,
        "20. online, the customer swaps its coins so that it can pay EUR 0.03 and EUR 0.04 \
         offline with exact change",
    );
    phone
        .wallet
        .update_directory(client.key_directory().await?, now())?;
    let held = |phone: &Phone| {
        let mut values: Vec<u64> = phone
            .wallet
            .coins()
            .iter()
            .map(|c| c.amount().minor_units)
            .collect();
        values.sort_unstable_by(|a, b| b.cmp(a));
        values
    };
    say(out, &format!("   coins before: {:?}", held(phone)));
    let request = phone
        .wallet
        .change_request(&[eur(3), eur(4)], now(), &mut rng)?
        .ok_or_else(|| Error::Demo("the coins already paid both amounts".into()))?;
    let request = phone.send(request)?;
    let receipt = client.swap(&request).await?;
    match phone.wallet.on_swap_receipt(&request, &receipt, now())? {
        scrip_wallet::SwapResult::Swapped { .. } => {}
        other => return Err(Error::Demo(format!("the change was not made: {other:?}"))),
    }
    phone.save()?;
    say(
        out,
        &format!(
            "   coins after: {:?} (the issuer cannot link them to the old ones)",
            held(phone)
        ),
    );

    say(
        out,
        "21. offline: the customer pays merchant B EUR 0.04 with coins; merchant B takes \
         the payment as new coins into its own wallet instead of account credit",
    );
    let offer = shop_b.offer(eur(4), now(), &mut rng).await?;
    let answer = phone.wallet.pay_by_coins(&offer, now())?;
    let answer = phone.send(answer)?;
    let reply = shop_b.accept(&answer, now(), &mut rng).await?;
    expect_completed(phone.wallet.on_merchant_reply(&reply, now())?, "coins")?;
    phone.save()?;
    let mut purse = Phone::new(
        Wallet::generate(root.clone(), &mut rng)?,
        StorageKey::random(&mut rng),
    );
    purse
        .wallet
        .update_directory(client.key_directory().await?, now())?;
    let total = shop_b
        .coins_to_take()
        .await?
        .ok_or_else(|| Error::Demo("merchant B holds no coin payment".into()))?;
    let outputs = purse.wallet.swap_outputs(total, now(), &mut rng)?;
    let outputs = purse.send(outputs)?;
    let outcome = shop_b.take_coins(client, &outputs, now(), &mut rng).await?;
    purse.wallet.on_merchant_swap(&outputs, &outcome, now())?;
    purse.save()?;
    say(
        out,
        &format!(
            "   merchant B's wallet holds EUR {} in coins: {:?}",
            fmt_minor(purse.wallet.coin_total(Currency::EUR).minor_units),
            held(&purse)
        ),
    );

    say(
        out,
        "22. offline: merchant B pays merchant A EUR 0.03 with those coins; merchant A \
         syncs",
    );
    let offer = shop_a.offer(eur(3), now(), &mut rng).await?;
    let answer = purse.wallet.pay_by_coins(&offer, now())?;
    let answer = purse.send(answer)?;
    let reply = shop_a.accept(&answer, now(), &mut rng).await?;
    expect_completed(purse.wallet.on_merchant_reply(&reply, now())?, "coins")?;
    purse.save()?;
    let seen = sync_and_count(shop_a, client, &mut rng).await?;
    say(out, &format!("   issuer answered: {seen}"));
    if seen.accepted != 1 {
        return Err(Error::Demo(
            "merchant A was not paid for merchant B's coins".into(),
        ));
    }
    Ok(seen)
}

/// Merchant A refunds part of the record payment to the customer's account, and the coin
/// payment as a voucher the customer withdraws fresh coins against.
async fn refunds(
    client: &HttpClient,
    root: &VerifyingKey<DirectoryRoot>,
    shop: &Merchant<MemoryStore>,
    phone: &mut Phone,
    record_request: RequestId,
    coin_request: RequestId,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let mut rng = StdRng::from_rng(&mut rand::rng());
    say(
        out,
        "15. merchant A refunds EUR 2.50 of the record payment to the customer's account",
    );
    let directory = client.key_directory().await?.verify(root)?.clone();
    let request = shop
        .terminal()
        .refund_request(record_request, eur(250), now(), &mut rng)?;
    let receipt = client.refund(&request).await?;
    let refunded = shop
        .terminal()
        .verify_refund_receipt(&request, &receipt, &directory, now())?;
    say(
        out,
        &format!(
            "   refund {} credited to account {} (EUR {} of the EUR 7.50 payment refunded)",
            refunded.refund_id,
            refunded.account_id,
            fmt_minor(refunded.refunded_total.minor_units)
        ),
    );

    say(
        out,
        "16. merchant A refunds the EUR 0.10 coin payment with a voucher; the customer \
         withdraws fresh blind coins against it, anonymously",
    );
    let voucher = shop
        .terminal()
        .refund_voucher(coin_request, eur(10), now(), &mut rng)?;
    // What the terminal hands the customer over NFC or as a QR code.
    let voucher = voucher.to_bytes()?;
    let request = phone
        .wallet
        .voucher_withdrawal_request(&voucher, now(), &mut rng)?;
    let request = phone.send(request)?;
    let response = client.withdraw_voucher(&request).await?;
    let coins = phone
        .wallet
        .on_voucher_withdrawal(&request, &response, now())?;
    phone.save()?;
    say(
        out,
        &format!(
            "   {} fresh coin(s); the wallet holds EUR {} in coins",
            coins.len(),
            fmt_minor(phone.wallet.coin_total(Currency::EUR).minor_units)
        ),
    );
    Ok(())
}

/// Merchant A reads its statement (credits, refunds) and has what it is owed paid out.
async fn payout(
    client: &HttpClient,
    shop: &Merchant<MemoryStore>,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let mut rng = StdRng::from_rng(&mut rand::rng());
    say(
        out,
        "17. merchant A reads its signed statement and is paid out to its bank",
    );
    let statement = shop
        .statement(client, Currency::EUR, None, 100, now(), &mut rng)
        .await?;
    for entry in &statement.entries {
        say(
            out,
            &format!(
                "   {:>+10}  balance {:>10}  {}",
                entry.delta, entry.balance_after, entry.memo
            ),
        );
    }
    let owed = u64::try_from(statement.balance)
        .ok()
        .filter(|owed| *owed > 0)
        .ok_or_else(|| Error::Demo("merchant A is owed nothing".into()))?;
    let receipt = shop
        .payout(
            client,
            PayoutId::random(&mut rng),
            eur(owed),
            now(),
            &mut rng,
        )
        .await?;
    match receipt.state {
        PayoutState::Paid { reference, .. } => say(
            out,
            &format!(
                "   payout {}: EUR {} paid, bank reference {reference}",
                receipt.payout_id,
                fmt_minor(receipt.amount.minor_units)
            ),
        ),
        PayoutState::Declined { reason, .. } => {
            return Err(Error::Demo(format!("the payout was declined: {reason}")))
        }
    }
    Ok(())
}

/// A second phone of the customer's account is stolen and revoked; merchant A's terminal
/// learns it from the signed revocation list and refuses the thief offline.
async fn stolen_phone(
    client: &HttpClient,
    root: &VerifyingKey<DirectoryRoot>,
    shop: &Merchant<MemoryStore>,
    phone: &Phone,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let mut rng = StdRng::from_rng(&mut rand::rng());
    say(
        out,
        "18. the customer adds a second phone, which is stolen: the operator revokes it",
    );
    let account_id = phone
        .wallet
        .account()
        .map(|a| a.account_id)
        .ok_or_else(|| Error::Demo("the customer has no account".into()))?;
    let mut stolen = Phone::new(
        Wallet::generate(root.clone(), &mut rng)?,
        StorageKey::random(&mut rng),
    );
    stolen
        .wallet
        .update_directory(client.key_directory().await?, now())?;
    let registration = stolen
        .wallet
        .registration_request(Some(account_id), now(), &mut rng)?;
    let registration = stolen.send(registration)?;
    let approval = phone
        .wallet
        .approve_device(stolen.wallet.device_key_id(), now(), &mut rng)?;
    let certificate = client
        .enroll_device(&scrip_api::DeviceEnrollment {
            registration,
            approval,
        })
        .await?;
    let stolen_device = certificate.payload.device_id;
    stolen.wallet.on_account_certificate(certificate, now())?;
    let request = stolen.wallet.certificate_request(
        CertificateOptions::up_to(eur(1_000)),
        now(),
        &mut rng,
    )?;
    let request = stolen.send(request)?;
    let answer = client.balance_certificate_answered(&request).await?;
    stolen
        .wallet
        .on_balance_certificate_answer(answer.certificate, &answer.hand_ins, now())?;
    let revoked = client.revoke_device(stolen_device).await?;
    say(
        out,
        &format!(
            "   device {} revoked at {} (it still holds a certificate for EUR 10.00)",
            revoked.device_id, revoked.revoked_at
        ),
    );

    say(
        out,
        "19. merchant A's terminal syncs (key directory and revocation list); then, offline, \
         the thief pays it EUR 5.00 by record",
    );
    shop.sync(client, now(), &mut rng).await?;
    let age = shop
        .revocation_list_age(now())
        .ok_or_else(|| Error::Demo("merchant A holds no revocation list".into()))?;
    say(
        out,
        &format!("   revocation list {} ms old", age.as_millis()),
    );
    let offer = shop.offer(eur(500), now(), &mut rng).await?;
    let answer = stolen.wallet.pay_by_record(&offer, now(), &mut rng)?;
    let answer = stolen.send(answer)?;
    let reply = shop.accept(&answer, now(), &mut rng).await?;
    match stolen.wallet.on_merchant_reply(&reply, now())? {
        PaymentStatus::Rejected(reason) if reason.code == ReasonCode::RevocationListed => {
            say(
                out,
                &format!("   refused offline: {} ({})", reason.code, reason.message),
            );
            Ok(())
        }
        other => Err(Error::Demo(format!(
            "the revoked phone's payment was not refused by the list: {other:?}"
        ))),
    }
}

/// The customer's statement, checked by the wallet (signed by the issuer, for this
/// request) before anything of it is shown.
async fn statement(
    client: &HttpClient,
    phone: &mut Phone,
    rng: &mut StdRng,
) -> Result<scrip_tokens::Statement, Error> {
    let request = phone
        .wallet
        .statement_request(Currency::EUR, None, 100, now(), rng)?;
    let statement = client.statement(&request).await?;
    phone.wallet.verify_statement(&request, &statement, now())?;
    Ok(statement)
}

/// Syncs a merchant: what the issuer answered for its queued payments.
async fn sync_and_count(
    merchant: &Merchant<MemoryStore>,
    client: &HttpClient,
    rng: &mut StdRng,
) -> Result<Outcomes, Error> {
    let summary = merchant.sync(client, now(), rng).await?;
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    Ok(Outcomes {
        accepted: count(summary.accepted),
        already_accepted: count(summary.already_accepted),
        double_spent: count(summary.double_spent),
        invalid: count(summary.invalid),
    })
}

fn expect_completed(status: PaymentStatus, what: &str) -> Result<(), Error> {
    match status {
        PaymentStatus::Completed(_) => Ok(()),
        PaymentStatus::Rejected(reason) => Err(Error::Demo(format!(
            "the merchant rejected the payment by {what}: {} ({})",
            reason.message, reason.code
        ))),
    }
}

fn describe(outcomes: &[RedemptionOutcome]) -> String {
    let parts: Vec<String> = outcomes
        .iter()
        .map(|o| match o {
            RedemptionOutcome::Accepted { credited } => {
                format!("accepted (EUR {})", fmt_minor(credited.minor_units))
            }
            RedemptionOutcome::AlreadyAccepted { .. } => "already_accepted".into(),
            RedemptionOutcome::DoubleSpent { coins, .. } => {
                format!("double_spent ({} coin)", coins.len())
            }
            RedemptionOutcome::Invalid { reason } => format!("invalid ({})", reason.code),
        })
        .collect();
    if parts.is_empty() {
        "nothing".into()
    } else {
        parts.join(", ")
    }
}

fn fmt_minor(minor: u64) -> String {
    format!("{}.{:02}", minor / 100, minor % 100)
}
