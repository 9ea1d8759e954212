//! Concurrency storms over HTTP: the real server (warp on a loopback port) over durable
//! stores, hundreds of signed requests fired at once, then the books checked against
//! what every answer said: nothing redeemed twice, nothing issued beyond the deposits.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use rand::rngs::StdRng;
use rand::SeedableRng;
use scrip::client::HttpClient;
use scrip::demo::{self, Phone};
use scrip::issuer::api::FraudKind;
use scrip::issuer::api::{CoinStatus, DeviceEnrollment};
use scrip::issuer::server::{RunningServer, StoreKind};
use scrip::issuer::{coins_outstanding_account, funding_account};
use scrip::merchant::{Merchant, SyncSummary};
use scrip::stores::{ClaimId, Claimant, ExistingClaim, LedgerAccount, MemoryStore, RecordStore};
use scrip::tokens::keys::{Device, Merchant as MerchantRole, DEFAULT_RSA_BITS};
use scrip::tokens::{
    codec, Amount, BalanceCertificate, BalanceCertificateRequest, BlindWithdrawalRequest,
    BlindWithdrawalResponse, Coin, CoinId, CoinPayment, ContentDigest, Currency,
    IdentifiedWithdrawalRequest, IdentifiedWithdrawalResponse, MerchantId, MerchantReply,
    PaymentAnswer, RedemptionBatch, RedemptionItem, RedemptionOutcome, RedemptionReport,
    SigningKey, Timestamp,
};

fn eur(v: u64) -> Amount {
    Amount::new(v, Currency::EUR)
}

fn rng() -> StdRng {
    StdRng::from_rng(&mut rand::rng())
}

// ---- keys, generated once per test binary on both cores ----------------------------------

/// Merchants in the redemption storm.
const MERCHANTS: usize = 200;
/// Devices of the one account in the reservation storm.
const DEVICES: usize = 20;

static MERCHANT_KEYS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
static DEVICE_KEYS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();

/// `count` fresh keys as PKCS#8 DER, generated on two threads.
fn generate_keys<R: scrip::tokens::keys::Role>(count: usize) -> Vec<Vec<u8>> {
    std::thread::scope(|s| {
        let handles: Vec<_> = [count / 2, count - count / 2]
            .into_iter()
            .map(|n| {
                s.spawn(move || {
                    let mut rng = rng();
                    (0..n)
                        .map(|_| {
                            SigningKey::<R>::generate(&mut rng, DEFAULT_RSA_BITS)
                                .unwrap()
                                .to_der()
                                .unwrap()
                                .to_vec()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}

/// The keys are shared by the tests of this binary (each registers them with its own
/// server); the first test to ask generates them.
async fn keys<R: scrip::tokens::keys::Role>(
    cell: &'static OnceLock<Vec<Vec<u8>>>,
    count: usize,
) -> Vec<SigningKey<R>> {
    tokio::task::spawn_blocking(move || {
        cell.get_or_init(|| generate_keys::<R>(count))
            .iter()
            .map(|der| SigningKey::from_der(der).unwrap())
            .collect()
    })
    .await
    .unwrap()
}

// ---- customers and merchants -------------------------------------------------------------

/// A registered wallet around `key` (not funded).
async fn register(client: &HttpClient, key: SigningKey<Device>) -> Phone {
    common::register_phone(client, key).await
}

async fn deposit(phone: &mut Phone, client: &HttpClient, amount: u64) {
    let mut rng = rng();
    let request = phone
        .wallet
        .deposit_request(eur(amount), demo::now(), &mut rng)
        .unwrap();
    let request = phone.send(request).unwrap();
    let record = client.deposit(&request).await.unwrap();
    phone
        .wallet
        .on_deposit_record(record, demo::now(), &mut rng)
        .unwrap();
    phone.save().unwrap();
}

/// `key` joins `first`'s account, approved by `first`.
async fn enroll(first: &Phone, client: &HttpClient, key: SigningKey<Device>) -> Phone {
    let mut rng = rng();
    let account_id = first.wallet.account().unwrap().account_id;
    let mut phone = common::new_phone(client, key).await;
    let registration = phone
        .wallet
        .registration_request(Some(account_id), demo::now(), &mut rng)
        .unwrap();
    let registration = phone.send(registration).unwrap();
    let approval = first
        .wallet
        .approve_device(phone.wallet.device_key_id(), demo::now(), &mut rng)
        .unwrap();
    let certificate = client
        .enroll_device(&DeviceEnrollment {
            registration,
            approval,
        })
        .await
        .unwrap();
    assert_eq!(certificate.payload.account_id, account_id);
    phone
        .wallet
        .on_account_certificate(certificate, demo::now())
        .unwrap();
    phone.save().unwrap();
    phone
}

// ---- reading the server's books ----------------------------------------------------------

/// The value of counter `name` in the Prometheus text.
fn counter(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in\n{metrics}"))
        .trim()
        .parse()
        .unwrap()
}

fn redemptions(metrics: &str, outcome: &str) -> u64 {
    counter(
        metrics,
        &format!("scrip_redemptions_total{{outcome=\"{outcome}\"}}"),
    )
}

/// Every non-zero EUR balance of the server's ledger; checks that they sum to zero.
async fn ledger(server: &RunningServer) -> BTreeMap<LedgerAccount, i128> {
    let listed = server
        .state()
        .issuer
        .store()
        .balances(None, usize::MAX)
        .await
        .unwrap();
    let mut sum = 0;
    let mut out = BTreeMap::new();
    for (account, currency, balance) in listed {
        assert_eq!(currency, Currency::EUR, "{account:?}");
        sum += balance;
        if balance != 0 {
            assert!(out.insert(account, balance).is_none(), "listed twice");
        }
    }
    assert_eq!(sum, 0, "the ledger does not balance: {out:?}");
    out
}

async fn coin_claims(server: &RunningServer, coins: &[Coin]) -> Vec<Option<ExistingClaim>> {
    let ids: Vec<ClaimId> = coins
        .iter()
        .map(|c| ClaimId::Coin(c.spend_id().unwrap()))
        .collect();
    server.state().issuer.store().claims(&ids).await.unwrap()
}

// ---- 1. two hundred merchants, overlapping coin sets ---------------------------------------

/// Blind and identified coins in the pool, cycling through the fixture denominations.
const BLIND_COINS: usize = 60;
const IDENTIFIED_COINS: usize = 12;
const DENOMINATIONS: [u64; 4] = [10, 5, 2, 1];

/// The pool indices of merchant `m`'s payments: three single-coin payments (consecutive
/// indices, so the 200 merchants cover every coin about eight times) and one payment of
/// three coins from the other half of the pool (another eight times). No coin twice in
/// one merchant's batch: a point of sale refuses a coin it has seen.
fn payments_of(m: usize, pool: usize) -> Vec<Vec<usize>> {
    let base = m * 3;
    let mut payments: Vec<Vec<usize>> = (0..3).map(|j| vec![(base + j) % pool]).collect();
    payments.push((0..3).map(|k| (base + pool / 2 + 5 * k) % pool).collect());
    payments
}

/// Every merchant builds its signed batch, waits for the others, and uploads it: all
/// uploads in flight at once. Nothing is applied to the merchants' queues.
async fn upload_all(
    client: &HttpClient,
    merchants: &[Arc<Merchant<MemoryStore>>],
) -> Vec<(RedemptionBatch, RedemptionReport)> {
    let barrier = Arc::new(tokio::sync::Barrier::new(merchants.len()));
    let mut tasks = Vec::new();
    for merchant in merchants {
        let merchant = Arc::clone(merchant);
        let client = client.clone();
        let barrier = Arc::clone(&barrier);
        tasks.push(tokio::spawn(async move {
            let batch = merchant
                .build_batch(demo::now(), &mut rng())
                .await
                .unwrap()
                .expect("the merchant has payments queued");
            barrier.wait().await;
            let report = client.redeem(&batch).await.unwrap();
            assert_eq!(report.payload.outcomes.len(), batch.payload.items.len());
            (batch, report)
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

fn payment(item: &RedemptionItem) -> &CoinPayment {
    match item {
        RedemptionItem::Coins(endorsed) => &endorsed.payload.payment,
        RedemptionItem::Record(_) => panic!("only coin payments were queued"),
    }
}

fn ids(payment: &CoinPayment) -> Vec<CoinId> {
    payment.coins.iter().map(Coin::id).collect()
}

async fn two_hundred_merchants(kind: StoreKind) {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let server = common::start(kind, dir.path()).await;
    let client = common::client(&server);
    let mut pool_rng = rng();

    // The pool: one customer withdraws 60 blind and 12 identified coins.
    let mut phone = register(
        &client,
        keys::<Device>(&DEVICE_KEYS, DEVICES).await.remove(0),
    )
    .await;
    deposit(&mut phone, &client, 1_000).await;
    let account_id = phone.wallet.account().unwrap().account_id;
    let blind: Vec<u64> = (0..BLIND_COINS).map(|i| DENOMINATIONS[i % 4]).collect();
    let request = phone
        .wallet
        .blind_withdrawal_request(&scrip_testkit::eurs(&blind), demo::now(), &mut pool_rng)
        .unwrap();
    let request = phone.send(request).unwrap();
    let response = client.withdraw_blind(&request).await.unwrap();
    phone
        .wallet
        .on_blind_withdrawal(&request, &response, demo::now())
        .unwrap();
    let identified: Vec<u64> = (0..IDENTIFIED_COINS)
        .map(|i| DENOMINATIONS[i % 4])
        .collect();
    let request = phone
        .wallet
        .identified_withdrawal_request(
            &scrip_testkit::eurs(&identified),
            demo::now(),
            &mut pool_rng,
        )
        .unwrap();
    let request = phone.send(request).unwrap();
    let response = client.withdraw_identified(&request).await.unwrap();
    phone
        .wallet
        .on_identified_withdrawal(&request, &response, demo::now())
        .unwrap();
    let pool: Arc<Vec<Coin>> = Arc::new(phone.wallet.coins().to_vec());
    assert_eq!(pool.len(), BLIND_COINS + IDENTIFIED_COINS);
    let pool_value: u64 = pool.iter().map(|c| c.amount().minor_units).sum();
    let coin_ids: Vec<CoinId> = pool.iter().map(Coin::id).collect();
    let identified_ids: Vec<CoinId> = pool
        .iter()
        .filter(|c| c.holder().is_some())
        .map(Coin::id)
        .collect();
    assert_eq!(identified_ids.len(), IDENTIFIED_COINS);
    let merchant_keys = keys::<MerchantRole>(&MERCHANT_KEYS, MERCHANTS).await;
    let keyed = started.elapsed();

    // 200 points of sale, each paid offline with its overlapping share of the pool (the
    // customer's wallet was copied around: every copy pays with the same coins).
    let mut setups = Vec::new();
    for (m, key) in merchant_keys.into_iter().enumerate() {
        let client = client.clone();
        let pool = Arc::clone(&pool);
        setups.push(tokio::spawn(async move {
            let merchant = common::shop(&client, key).await;
            let mut rng = rng();
            for picked in payments_of(m, pool.len()) {
                let coins: Vec<Coin> = picked.iter().map(|i| pool[*i].clone()).collect();
                let amount = coins.iter().map(|c| c.amount().minor_units).sum();
                let offer = merchant
                    .offer(eur(amount), demo::now(), &mut rng)
                    .await
                    .unwrap();
                let answer = PaymentAnswer::ByCoins(CoinPayment {
                    request: offer.request,
                    coins,
                });
                let reply = merchant
                    .accept(&answer, demo::now(), &mut rng)
                    .await
                    .unwrap();
                assert!(matches!(reply, MerchantReply::Receipt(_)), "{reply:?}");
            }
            Arc::new(merchant)
        }));
    }
    let mut merchants = Vec::new();
    for s in setups {
        merchants.push(s.await.unwrap());
    }
    let merchant_ids: Vec<MerchantId> = merchants
        .iter()
        .map(|m| m.certificate().payload.merchant_id)
        .collect();
    let set_up = started.elapsed();

    // ---- all 200 upload at once -------------------------------------------------------
    let first = upload_all(&client, &merchants).await;
    let stormed = started.elapsed();

    // Each coin was accepted in exactly one payment; every other payment holding it was
    // answered DoubleSpent, naming only coins of that payment, redeemed by another
    // merchant.
    let mut winner: HashMap<CoinId, (usize, ContentDigest)> = HashMap::new();
    let mut credited = vec![0u64; MERCHANTS];
    let (mut accepted, mut double_spent) = (0u64, 0u64);
    let mut losers = Vec::new();
    for (m, (batch, report)) in first.iter().enumerate() {
        for (item, outcome) in batch.payload.items.iter().zip(&report.payload.outcomes) {
            let payment = payment(item);
            let coins = ids(payment);
            match outcome {
                RedemptionOutcome::Accepted { credited: c } => {
                    assert_eq!(*c, payment.total().unwrap());
                    credited[m] += c.minor_units;
                    accepted += 1;
                    let digest = codec::digest(payment).unwrap();
                    for id in coins {
                        assert!(
                            winner.insert(id, (m, digest)).is_none(),
                            "coin {id} accepted twice"
                        );
                    }
                }
                RedemptionOutcome::DoubleSpent {
                    first_redeemed_at,
                    coins: spent,
                } => {
                    assert!(
                        !spent.is_empty(),
                        "merchant {m}: a double spend naming no coin"
                    );
                    assert!(
                        spent.iter().all(|c| coins.contains(c)),
                        "merchant {m}: {spent:?} not all in {coins:?}"
                    );
                    double_spent += 1;
                    losers.push((m, coins, spent.clone(), *first_redeemed_at));
                }
                other => panic!("merchant {m}: unexpected {other:?}"),
            }
        }
    }
    // Every coin is in some single-coin payment, which can only lose to a payment that
    // redeemed that coin: so every coin is redeemed, exactly once.
    assert_eq!(winner.len(), pool.len(), "coins never accepted");
    assert_eq!(accepted + double_spent, (MERCHANTS * 4) as u64);
    for (m, _, spent, _) in &losers {
        for c in spent {
            assert_ne!(winner[c].0, *m, "a merchant double spent against itself");
        }
    }

    // The store holds each coin for its winner, under the winning payment's digest (so a
    // losing payment left none of its coins claimed: all or nothing).
    let claims = coin_claims(&server, &pool).await;
    let mut redeemed_at: HashMap<CoinId, Timestamp> = HashMap::new();
    for (id, claim) in coin_ids.iter().zip(&claims) {
        let claim = claim
            .as_ref()
            .unwrap_or_else(|| panic!("coin {id} unclaimed"));
        let (m, digest) = winner[id];
        assert_eq!(claim.claimant, Claimant::Merchant(merchant_ids[m]));
        assert_eq!(claim.digest, digest, "coin {id} claimed by another payment");
        redeemed_at.insert(*id, claim.claimed_at);
    }
    // The double-spend evidence dates the first redemption of the coins it names.
    for (m, _, spent, first_redeemed_at) in &losers {
        let earliest = spent.iter().map(|c| redeemed_at[c]).min().unwrap();
        assert_eq!(*first_redeemed_at, earliest, "merchant {m}");
    }
    // GET /v1/coins/{spend id} says redeemed, when the winner's claim was made.
    for (coin, id) in pool.iter().zip(&coin_ids) {
        let spend_id = coin.spend_id().unwrap();
        let state = client.coin_state(spend_id).await.unwrap();
        assert_eq!(state.spend_id, spend_id);
        assert_eq!(
            state.state,
            CoinStatus::Redeemed {
                redeemed_at: redeemed_at[id]
            }
        );
    }

    // Metrics count every answer.
    let metrics = client.metrics().await.unwrap();
    assert_eq!(redemptions(&metrics, "accepted"), accepted);
    assert_eq!(redemptions(&metrics, "double_spent"), double_spent);
    assert_eq!(redemptions(&metrics, "already_accepted"), 0);
    assert_eq!(redemptions(&metrics, "invalid"), 0);

    // Money: each merchant was credited exactly its accepted payments, every coin left
    // coins-outstanding once, the customer paid for the pool once.
    let books = ledger(&server).await;
    let mut expected = BTreeMap::new();
    expected.insert(funding_account(), -1_000);
    expected.insert(
        LedgerAccount::Customer(account_id),
        1_000 - i128::from(pool_value),
    );
    for (m, c) in credited.iter().enumerate() {
        if *c > 0 {
            expected.insert(LedgerAccount::Merchant(merchant_ids[m]), i128::from(*c));
        }
    }
    assert_eq!(books, expected);
    assert!(!books.contains_key(&coins_outstanding_account()));
    assert_eq!(credited.iter().sum::<u64>(), pool_value);

    // The fraud log has one entry per double-spent payment, naming the customer behind
    // the identified coins (blind coins name nobody).
    let mut entries = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = client.fraud_log(after.as_deref(), 1_000).await.unwrap();
        let Some(last) = page.entries.last() else {
            break;
        };
        after = Some(last.key.clone());
        entries.extend(page.entries.into_iter().map(|i| i.entry));
    }
    let mut logged: Vec<(MerchantId, Vec<CoinId>)> = Vec::new();
    for entry in &entries {
        let FraudKind::DoubleSpend {
            merchant,
            coins,
            holders,
            ..
        } = &entry.kind
        else {
            panic!("unexpected fraud entry {entry:?}");
        };
        let named: Vec<CoinId> = holders.iter().map(|h| h.coin_id).collect();
        let identified: Vec<CoinId> = coins
            .iter()
            .filter(|c| identified_ids.contains(c))
            .copied()
            .collect();
        assert_eq!(named, identified, "{entry:?}");
        assert!(holders
            .iter()
            .all(|h| h.account_id == Some(account_id) && !h.revoked));
        let mut coins = coins.clone();
        coins.sort_unstable();
        logged.push((*merchant, coins));
    }
    let mut expected_log: Vec<(MerchantId, Vec<CoinId>)> = losers
        .iter()
        .map(|(m, _, spent, _)| {
            let mut spent = spent.clone();
            spent.sort_unstable();
            (merchant_ids[*m], spent)
        })
        .collect();
    logged.sort();
    expected_log.sort();
    assert_eq!(logged, expected_log);

    // ---- every merchant uploads its batch again (a lost answer), all at once -------------
    let second = upload_all(&client, &merchants).await;
    let mut summaries = Vec::new();
    for (m, ((batch, report), (first_batch, first_report))) in second.iter().zip(&first).enumerate()
    {
        assert_eq!(batch.payload.items, first_batch.payload.items);
        let mut expected = SyncSummary::default();
        for ((item, outcome), before) in batch
            .payload
            .items
            .iter()
            .zip(&report.payload.outcomes)
            .zip(&first_report.payload.outcomes)
        {
            let coins = ids(payment(item));
            match (before, outcome) {
                (
                    RedemptionOutcome::Accepted { .. },
                    RedemptionOutcome::AlreadyAccepted { first_accepted_at },
                ) => {
                    assert!(coins.iter().all(|c| redeemed_at[c] == *first_accepted_at));
                    expected.already_accepted += 1;
                }
                (
                    RedemptionOutcome::DoubleSpent { .. },
                    RedemptionOutcome::DoubleSpent { coins: spent, .. },
                ) => {
                    assert!(!spent.is_empty());
                    assert!(spent.iter().all(|c| coins.contains(c) && winner[c].0 != m));
                    expected.double_spent += 1;
                }
                (before, now) => panic!("merchant {m}: {before:?} then {now:?}"),
            }
        }
        // The merchant takes the answer: every payment settles, none credited twice.
        let summary = merchants[m]
            .apply_report(batch, report, demo::now())
            .await
            .unwrap();
        assert_eq!(summary, expected, "merchant {m}");
        assert!(merchants[m].pending(10).await.unwrap().is_empty());
        assert!(merchants[m].unsettled().await.unwrap().is_zero());
        summaries.push(summary);
    }
    // Nothing changed: same claims, same books, no new acceptance.
    assert_eq!(coin_claims(&server, &pool).await, claims);
    assert_eq!(ledger(&server).await, books);
    let metrics = client.metrics().await.unwrap();
    assert_eq!(redemptions(&metrics, "accepted"), accepted);
    assert_eq!(redemptions(&metrics, "already_accepted"), accepted);
    assert_eq!(redemptions(&metrics, "double_spent"), 2 * double_spent);
    assert_eq!(redemptions(&metrics, "invalid"), 0);
    server.shutdown().await.unwrap();
    eprintln!(
        "{kind}: {accepted} payments accepted, {double_spent} double spent; keys {keyed:?}, \
         merchants ready {:?}, first storm {:?}, total {:?}",
        set_up - keyed,
        stormed - set_up,
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_merchants_redeem_overlapping_coin_sets_redb() {
    two_hundred_merchants(StoreKind::Redb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_merchants_redeem_overlapping_coin_sets_file() {
    two_hundred_merchants(StoreKind::File).await;
}

// ---- 2. twenty devices of one account, all asking at once -----------------------------------

const DEPOSIT: u64 = 1_000;
/// What each device asks a certificate for.
const CERTIFICATE_ASK: u64 = 60;
/// Coins each even device withdraws blind, each odd device identified (30 either way).
const BLIND_ASK: [u64; 3] = [10, 10, 10];
const IDENTIFIED_ASK: [u64; 4] = [10, 10, 5, 5];

enum Ask {
    Certificate(BalanceCertificateRequest),
    Blind(BlindWithdrawalRequest),
    Identified(IdentifiedWithdrawalRequest),
}

enum Answer {
    Certificate(BalanceCertificate),
    Blind(BlindWithdrawalResponse),
    Identified(IdentifiedWithdrawalResponse),
}

async fn send(client: &HttpClient, ask: &Ask) -> Result<Answer, scrip::api::ClientError> {
    Ok(match ask {
        Ask::Certificate(r) => Answer::Certificate(client.balance_certificate(r).await?),
        Ask::Blind(r) => Answer::Blind(client.withdraw_blind(r).await?),
        Ask::Identified(r) => Answer::Identified(client.withdraw_identified(r).await?),
    })
}

async fn twenty_devices(kind: StoreKind) {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let server = common::start(kind, dir.path()).await;
    let client = common::client(&server);
    let mut rng = rng();

    let mut keys = keys::<Device>(&DEVICE_KEYS, DEVICES).await.into_iter();
    let mut first = register(&client, keys.next().unwrap()).await;
    deposit(&mut first, &client, DEPOSIT).await;
    let account_id = first.wallet.account().unwrap().account_id;
    let mut phones = Vec::new();
    for key in keys {
        phones.push(enroll(&first, &client, key).await);
    }
    phones.insert(0, first);
    assert_eq!(phones.len(), DEVICES);

    // Each device signs a certificate request and a withdrawal: 1 800 asked of 1 000.
    let mut asks = Vec::new();
    for (d, phone) in phones.iter_mut().enumerate() {
        let request = phone
            .wallet
            .certificate_request(demo::up_to(CERTIFICATE_ASK), demo::now(), &mut rng)
            .unwrap();
        asks.push((d, Ask::Certificate(phone.send(request).unwrap())));
        let withdrawal = if d % 2 == 0 {
            let request = phone
                .wallet
                .blind_withdrawal_request(&scrip_testkit::eurs(&BLIND_ASK), demo::now(), &mut rng)
                .unwrap();
            Ask::Blind(phone.send(request).unwrap())
        } else {
            let request = phone
                .wallet
                .identified_withdrawal_request(
                    &scrip_testkit::eurs(&IDENTIFIED_ASK),
                    demo::now(),
                    &mut rng,
                )
                .unwrap();
            Ask::Identified(phone.send(request).unwrap())
        };
        asks.push((d, withdrawal));
    }
    let asked: u64 = DEVICES as u64 * CERTIFICATE_ASK
        + (DEVICES as u64 / 2)
            * (BLIND_ASK.iter().sum::<u64>() + IDENTIFIED_ASK.iter().sum::<u64>());
    assert!(asked > DEPOSIT);

    // All 40 at once.
    let barrier = Arc::new(tokio::sync::Barrier::new(asks.len()));
    let mut tasks = Vec::new();
    for (d, ask) in asks {
        let client = client.clone();
        let barrier = Arc::clone(&barrier);
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let answer = send(&client, &ask).await;
            (d, ask, answer)
        }));
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }

    // Every answer is a certificate or coins the wallet verifies, or a 422 saying there
    // is not enough money; never a server error.
    let (mut reserved, mut withdrawn) = (0u64, 0u64);
    let (mut short_certificates, mut refused_withdrawals) = (0, 0);
    let mut serials = Vec::new();
    for (d, ask, answer) in answers {
        let phone = &mut phones[d];
        match (ask, answer) {
            (Ask::Certificate(_), Ok(Answer::Certificate(certificate))) => {
                let c = &certificate.payload;
                assert_eq!((c.account_id, c.device_id), {
                    let a = phone.wallet.account().unwrap();
                    (a.account_id, a.device_id)
                });
                assert!(c.available.minor_units > 0 && c.available.minor_units <= CERTIFICATE_ASK);
                assert_eq!(c.available.currency, Currency::EUR);
                assert!(c.locked.is_zero());
                if c.available.minor_units < CERTIFICATE_ASK {
                    short_certificates += 1;
                }
                reserved += c.available.minor_units;
                serials.push(c.serial);
                phone
                    .wallet
                    .on_balance_certificate(certificate, demo::now())
                    .unwrap();
            }
            (Ask::Blind(request), Ok(Answer::Blind(response))) => {
                let coins = phone
                    .wallet
                    .on_blind_withdrawal(&request, &response, demo::now())
                    .unwrap();
                assert_eq!(coins.len(), BLIND_ASK.len());
                withdrawn += BLIND_ASK.iter().sum::<u64>();
            }
            (Ask::Identified(request), Ok(Answer::Identified(response))) => {
                let coins = phone
                    .wallet
                    .on_identified_withdrawal(&request, &response, demo::now())
                    .unwrap();
                assert_eq!(coins.len(), IDENTIFIED_ASK.len());
                withdrawn += IDENTIFIED_ASK.iter().sum::<u64>();
            }
            (Ask::Certificate(_), Err(scrip::api::ClientError::Refused { status, code, .. })) => {
                assert_eq!((status, code.as_str()), (422, "nothing_available"));
                short_certificates += 1;
            }
            (
                Ask::Blind(_) | Ask::Identified(_),
                Err(scrip::api::ClientError::Refused { status, code, .. }),
            ) => {
                assert_eq!((status, code.as_str()), (422, "insufficient_funds"));
                refused_withdrawals += 1;
            }
            (_, Err(e)) => panic!("device {d}: {e}"),
            (_, Ok(_)) => panic!("device {d}: an answer of the wrong kind"),
        }
        phone.save().unwrap();
    }
    serials.sort_unstable();
    serials.dedup();

    // The reservation invariant, from the statement: what the certificates reserve, the
    // coins issued and what is left add up to the deposit, exactly.
    let statement = client
        .statement(
            &phones[0]
                .wallet
                .statement_request(Currency::EUR, None, 1_000, demo::now(), &mut rng)
                .unwrap(),
        )
        .await
        .unwrap();
    let balance = statement.payload.balance;
    assert!(balance >= 0, "overdrawn: {balance}");
    assert_eq!(
        i128::from(reserved) + i128::from(withdrawn) + balance,
        i128::from(DEPOSIT),
        "reserved {reserved} + withdrawn {withdrawn} + left {balance}"
    );
    assert_eq!(
        statement.payload.entries.last().unwrap().balance_after,
        balance
    );
    // Someone was told no (1 800 asked of 1 000), and only when the money was gone: a
    // withdrawal was refused only if less than its 30 was left, a certificate cut short
    // or refused only once nothing was left (the balance only goes down here).
    assert!(short_certificates + refused_withdrawals > 0);
    if refused_withdrawals > 0 {
        assert!(balance < 30, "a withdrawal was refused with {balance} left");
    }
    if short_certificates > 0 {
        assert_eq!(
            balance, 0,
            "a certificate was cut short with {balance} left"
        );
    }

    // The same in the ledger itself: one reservation per certificate, holding exactly
    // what the certificate makes available; coins outstanding = coins issued.
    let check = |books: &BTreeMap<LedgerAccount, i128>| {
        let reservations: i128 = books
            .iter()
            .filter(|(a, _)| matches!(a, LedgerAccount::Reservation(_)))
            .map(|(_, b)| *b)
            .sum();
        let held = books
            .keys()
            .filter(|a| matches!(a, LedgerAccount::Reservation(_)))
            .count();
        assert_eq!(held, serials.len());
        assert_eq!(reservations, i128::from(reserved));
        assert_eq!(
            books
                .get(&coins_outstanding_account())
                .copied()
                .unwrap_or(0),
            i128::from(withdrawn)
        );
        assert_eq!(books[&funding_account()], -i128::from(DEPOSIT));
        assert_eq!(
            books
                .get(&LedgerAccount::Customer(account_id))
                .copied()
                .unwrap_or(0),
            balance
        );
    };
    let books = ledger(&server).await;
    check(&books);

    // Durable: after a restart the books are the same.
    server.shutdown().await.unwrap();
    let server = common::start(kind, dir.path()).await;
    let client = common::client(&server);
    assert_eq!(ledger(&server).await, books);
    let again = client
        .statement(
            &phones[0]
                .wallet
                .statement_request(Currency::EUR, None, 1_000, demo::now(), &mut rng)
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        (again.payload.balance, &again.payload.entries),
        (statement.payload.balance, &statement.payload.entries)
    );
    server.shutdown().await.unwrap();
    eprintln!(
        "{kind}: reserved {reserved} on {} certificates, withdrew {withdrawn}, {balance} left, \
         {short_certificates} certificates short, {refused_withdrawals} withdrawals refused; {:?}",
        serials.len(),
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_merchants_redeem_overlapping_coin_sets_postgres() {
    two_hundred_merchants(StoreKind::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_devices_of_one_account_request_certificates_and_withdraw_at_once_redb() {
    twenty_devices(StoreKind::Redb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_devices_of_one_account_request_certificates_and_withdraw_at_once_file() {
    twenty_devices(StoreKind::File).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_devices_of_one_account_request_certificates_and_withdraw_at_once_postgres() {
    twenty_devices(StoreKind::Postgres).await;
}
