//! Refunds (issue 17, requirement 4): a merchant refunds all or part of a settled payment,
//! to the account for a payment by record, as coins withdrawn against its voucher for a
//! coin payment; each refund id pays once, and all refunds of a payment together never
//! give back more than it paid, even when they race.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use rand::rngs::StdRng;
use scrip_issuer::{coins_outstanding_account, IssuerConfig, IssuerError};
use scrip_stores::conformance::{Harness, RedbHarness};
use scrip_stores::{Claimant, LedgerAccount, MemoryStore, Posting, RecordStore, Unit};
use scrip_tokens::fixtures::NOW;
use scrip_tokens::*;

const DEPOSITED: u64 = 10_000;

/// A funded account with a certificate, a shop that takes its payments, and a second shop
/// where refunded coins are spent.
pub(crate) struct Scene<S: RecordStore> {
    pub(crate) issuer: Arc<TestIssuer<S>>,
    wallet: RawWallet,
    shop: Shop,
    other_shop: Shop,
    cert: BalanceCertificate,
    pub(crate) rng: StdRng,
}

pub(crate) async fn scene_over<S: RecordStore>(store: S, seed: u64) -> Scene<S> {
    let issuer = issuer(store);
    let mut rng = rng(seed);
    let mut wallet = RawWallet::open(&issuer, 1, &mut rng).await;
    wallet.deposit(&issuer, DEPOSITED, &mut rng).await;
    let shop = Shop::register(&issuer, 1, &mut rng).await;
    let other_shop = Shop::register(&issuer, 2, &mut rng).await;
    let cert = wallet.certificate(&issuer, 3_000, NOW, &mut rng).await;
    Scene {
        issuer: Arc::new(issuer),
        wallet,
        shop,
        other_shop,
        cert,
        rng,
    }
}

async fn scene(seed: u64) -> Scene<MemoryStore> {
    scene_over(MemoryStore::new(), seed).await
}

impl<S: RecordStore> Scene<S> {
    /// The wallet pays `amount` by record; the shop uploads it. The request paid.
    async fn paid_by_record(&mut self, amount: u64) -> RequestId {
        let request = self.shop.request(amount, &mut self.rng);
        let record = self.wallet.pay(&self.cert, &request, NOW, &mut self.rng);
        let receipt = self.shop.countersign(&record, &mut self.rng);
        let outcomes = self
            .shop
            .redeem(
                &*self.issuer,
                vec![RedemptionItem::Record(receipt)],
                NOW,
                &mut self.rng,
            )
            .await;
        assert_eq!(
            outcomes,
            [RedemptionOutcome::Accepted {
                credited: eur(amount)
            }]
        );
        request.payload.request_id
    }

    /// The wallet withdraws coins of `values` and pays them to the shop, which uploads the
    /// payment. The request paid.
    pub(crate) async fn paid_by_coins(&mut self, values: &[u64]) -> RequestId {
        let coins = self
            .wallet
            .withdraw_blind(&*self.issuer, values, &mut self.rng)
            .await;
        let payment = self.shop.endorse(coins, &mut self.rng);
        let request = payment.payload.payment.request.payload.request_id;
        let total = values.iter().sum();
        let outcomes = self
            .shop
            .redeem(
                &*self.issuer,
                vec![RedemptionItem::Coins(payment)],
                NOW,
                &mut self.rng,
            )
            .await;
        assert_eq!(
            outcomes,
            [RedemptionOutcome::Accepted {
                credited: eur(total)
            }]
        );
        request
    }

    fn refund_request(
        &mut self,
        refund_id: RefundId,
        request: RequestId,
        amount: u64,
    ) -> RefundRequest {
        signed_refund(&self.shop, refund_id, request, amount, &mut self.rng)
    }

    fn fresh_refund(&mut self, request: RequestId, amount: u64) -> RefundRequest {
        let refund_id = RefundId::random(&mut self.rng);
        self.refund_request(refund_id, request, amount)
    }

    pub(crate) fn voucher(&mut self, request: RequestId, amount: u64) -> RefundVoucher {
        signed_voucher(
            &self.shop.key,
            self.shop.id(),
            request,
            amount,
            &mut self.rng,
        )
    }

    /// A withdrawal against `voucher` of coins of `values`, and the coins to finalize.
    pub(crate) fn voucher_withdrawal(
        &mut self,
        voucher: &RefundVoucher,
        values: &[u64],
    ) -> (VoucherWithdrawalRequest, Vec<PendingCoin>, Keyset) {
        let keyset = keyset(&directory(&*self.issuer));
        let pending: Vec<PendingCoin> = values
            .iter()
            .map(|v| PendingCoin::new(&mut self.rng, &keyset, eur(*v)).unwrap())
            .collect();
        let request = VoucherWithdrawalRequest {
            voucher: voucher.clone(),
            keyset_id: keyset.id(),
            coins: pending
                .iter()
                .map(|p| (p.amount().minor_units, p.blinded().clone()))
                .collect(),
        };
        (request, pending, keyset)
    }

    async fn refund(&self, request: &RefundRequest) -> Result<RefundReceiptPayload, IssuerError> {
        self.issuer.refund(request, NOW).await
    }

    async fn customer(&self) -> i128 {
        self.issuer
            .balance(self.wallet.account_id, EUR)
            .await
            .unwrap()
    }

    async fn merchant(&self) -> i128 {
        balance(&*self.issuer, LedgerAccount::Merchant(self.shop.id())).await
    }

    async fn outstanding(&self) -> i128 {
        balance(&*self.issuer, coins_outstanding_account()).await
    }

    /// (customer, merchant, coins outstanding).
    pub(crate) async fn money(&self) -> (i128, i128, i128) {
        (
            self.customer().await,
            self.merchant().await,
            self.outstanding().await,
        )
    }
}

async fn balance<S: RecordStore>(issuer: &TestIssuer<S>, account: LedgerAccount) -> i128 {
    issuer.store().balance(&account, EUR).await.unwrap()
}

pub(crate) fn signed_refund(
    shop: &Shop,
    refund_id: RefundId,
    request_id: RequestId,
    amount: u64,
    rng: &mut StdRng,
) -> RefundRequest {
    RefundRequest::sign(
        RefundRequestPayload {
            merchant_id: shop.id(),
            refund_id,
            request_id,
            amount: eur(amount),
            created_at: NOW,
            nonce: nonce(rng),
        },
        &shop.key,
        rng,
    )
    .unwrap()
}

fn signed_voucher(
    key: &SigningKey<scrip_tokens::keys::Merchant>,
    merchant_id: MerchantId,
    request_id: RequestId,
    amount: u64,
    rng: &mut StdRng,
) -> RefundVoucher {
    RefundVoucher::sign(
        RefundVoucherPayload {
            merchant_id,
            refund_id: RefundId::random(rng),
            request_id,
            amount: eur(amount),
            created_at: NOW,
        },
        key,
        rng,
    )
    .unwrap()
}

#[tokio::test]
async fn a_record_payment_is_refunded_in_part_then_in_full_and_never_beyond() {
    let mut s = scene(1).await;
    let request = s.paid_by_record(300).await;
    let (customer, merchant, _) = s.money().await;
    assert_eq!(merchant, 300);

    let first = s.fresh_refund(request, 100);
    let receipt = s.refund(&first).await.unwrap();
    assert_eq!(receipt.account_id, s.wallet.account_id);
    assert_eq!(
        (receipt.amount, receipt.refunded_total),
        (eur(100), eur(100))
    );
    assert_eq!(s.customer().await, customer + 100);
    assert_eq!(s.merchant().await, 200);
    // The merchant checks the issuer's signature and that it answers its request.
    let signed = s.issuer.sign_answer(receipt, NOW, &mut s.rng).unwrap();
    let directory = directory(&*s.issuer);
    signed.verify_for(&first, &directory, NOW).unwrap();
    let other = s.fresh_refund(request, 100);
    assert!(signed.verify_for(&other, &directory, NOW).is_err());

    let rest = s.fresh_refund(request, 200);
    let receipt = s.refund(&rest).await.unwrap();
    assert_eq!(receipt.refunded_total, eur(300));
    assert_eq!(s.customer().await, customer + 300);
    assert_eq!(s.merchant().await, 0);

    // A third refund would give back more than was paid: refused, nothing moves.
    let beyond = s.fresh_refund(request, 1);
    assert!(matches!(
        s.refund(&beyond).await,
        Err(IssuerError::RefundExceedsPayment { paid, refunded, .. })
            if paid == eur(300) && refunded == eur(300)
    ));
    assert_eq!(s.customer().await, customer + 300);
    assert_eq!(s.merchant().await, 0);
    let total = s
        .issuer
        .refunded(s.shop.id(), request)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((total.refunds, total.refunded), (2, eur(300)));
}

#[tokio::test]
async fn the_same_refund_sent_twice_pays_once_and_its_id_cannot_be_reused() {
    let mut s = scene(2).await;
    let request = s.paid_by_record(300).await;
    let customer = s.customer().await;
    let refund_id = RefundId::random(&mut s.rng);
    let original = s.refund_request(refund_id, request, 120);
    let first = s.refund(&original).await.unwrap();
    // The retry is signed again (a new nonce): the same refund, the first receipt.
    let retry = s.refund_request(refund_id, request, 120);
    let again = s.refund(&retry).await.unwrap();
    assert_eq!(again.refunded_at, first.refunded_at);
    assert_eq!(again.refunded_total, eur(120));
    assert_ne!(
        again.request_digest, first.request_digest,
        "names the retry it answers"
    );
    assert_eq!(s.customer().await, customer + 120);
    assert_eq!(s.merchant().await, 180);
    // The id for another amount is another refund under a used id.
    let reused = s.refund_request(refund_id, request, 50);
    assert!(matches!(
        s.refund(&reused).await,
        Err(IssuerError::RefundIdReused(id)) if id == refund_id
    ));
    assert_eq!(s.customer().await, customer + 120);
}

/// `racers` refunds of `amount` each of one payment of `paid`, at once: the payment's
/// counter lets through exactly as many as it covers.
async fn race<S: RecordStore + 'static>(mut s: Scene<S>, paid: u64, amount: u64, racers: usize) {
    let request = s.paid_by_record(paid).await;
    let customer = s.customer().await;
    let requests: Vec<RefundRequest> = (0..racers)
        .map(|_| s.fresh_refund(request, amount))
        .collect();
    let tasks: Vec<_> = requests
        .into_iter()
        .map(|r| {
            let issuer = Arc::clone(&s.issuer);
            tokio::spawn(async move { issuer.refund(&r, NOW).await })
        })
        .collect();
    let mut paid_refunds = 0u64;
    for task in tasks {
        match task.await.unwrap() {
            Ok(receipt) => {
                assert_eq!(receipt.amount, eur(amount));
                paid_refunds += 1;
            }
            Err(IssuerError::RefundExceedsPayment { .. }) => {}
            Err(e) => panic!("unexpected refusal {e:?}"),
        }
    }
    assert_eq!(
        paid_refunds,
        paid / amount,
        "exactly what the payment covers"
    );
    let refunded = i128::from(paid_refunds * amount);
    assert_eq!(s.customer().await, customer + refunded);
    assert_eq!(s.merchant().await, i128::from(paid) - refunded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refunds_racing_for_the_whole_payment_pay_exactly_one() {
    race(scene(3).await, 300, 300, 8).await;
    let harness = RedbHarness::new();
    race(scene_over(harness.open(), 4).await, 300, 300, 8).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refunds_racing_for_parts_of_a_payment_never_add_up_to_more() {
    race(scene(5).await, 300, 100, 8).await;
    let harness = RedbHarness::new();
    race(scene_over(harness.open(), 6).await, 300, 70, 8).await;
}

/// Copies of one refund sent at once (a terminal retrying over two links) pay it once, and
/// every copy gets its receipt: a copy that reads the payment's counter after another copy
/// committed must find that refund, not call itself one refund too many.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_refund_sent_twice_at_once_pays_once() {
    let mut s = scene(7).await;
    // The window is a few microseconds wide: several rounds make losing it likely.
    for _ in 0..12 {
        let request = s.paid_by_record(100).await;
        let customer = s.customer().await;
        let refund_id = RefundId::random(&mut s.rng);
        let copies: Vec<_> = (0..4)
            .map(|_| s.refund_request(refund_id, request, 80))
            .collect();
        let tasks: Vec<_> = copies
            .into_iter()
            .map(|r| {
                let issuer = Arc::clone(&s.issuer);
                tokio::spawn(async move { issuer.refund(&r, NOW).await })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap().unwrap().refunded_total, eur(80));
        }
        assert_eq!(s.customer().await, customer + 80);
    }
}

#[tokio::test]
async fn a_coin_payment_is_refunded_as_coins_the_customer_spends_elsewhere() {
    let mut s = scene(8).await;
    let request = s.paid_by_coins(&[10, 5, 2]).await;
    let (customer, merchant, outstanding) = s.money().await;
    assert_eq!(merchant, 17);

    // The shop hands the customer a voucher for 12 of the 17, as bytes.
    let voucher = s.voucher(request, 12);
    let carried = RefundVoucher::from_bytes(&voucher.to_bytes().unwrap()).unwrap();
    let (withdrawal, pending, keyset) = s.voucher_withdrawal(&carried, &[10, 2]);
    let answer = s
        .issuer
        .withdraw_voucher(&withdrawal, NOW, &mut s.rng)
        .await
        .unwrap();
    let coins = finalize(&keyset, &pending, &answer);
    assert_eq!(s.money().await, (customer, merchant - 12, outstanding + 12));

    // The new coins are as good as any: another merchant redeems them.
    let payment = s.other_shop.endorse(coins, &mut s.rng);
    let outcomes = s
        .other_shop
        .redeem(
            &*s.issuer,
            vec![RedemptionItem::Coins(payment)],
            NOW,
            &mut s.rng,
        )
        .await;
    assert_eq!(
        outcomes,
        [RedemptionOutcome::Accepted { credited: eur(12) }]
    );
    assert_eq!(s.outstanding().await, outstanding);
    assert_eq!(
        balance(&*s.issuer, LedgerAccount::Merchant(s.other_shop.id())).await,
        12
    );
    // The rest of the payment can still be refunded; beyond it cannot.
    let beyond = s.voucher(request, 6);
    let (withdrawal, _, _) = s.voucher_withdrawal(&beyond, &[5, 1]);
    assert!(matches!(
        s.issuer
            .withdraw_voucher(&withdrawal, NOW, &mut s.rng)
            .await,
        Err(IssuerError::RefundExceedsPayment { .. })
    ));
    let rest = s.voucher(request, 5);
    let (withdrawal, _, _) = s.voucher_withdrawal(&rest, &[5]);
    s.issuer
        .withdraw_voucher(&withdrawal, NOW, &mut s.rng)
        .await
        .unwrap();
    assert_eq!(s.merchant().await, 0);
}

#[tokio::test]
async fn a_voucher_withdrawn_twice_pays_once() {
    let mut s = scene(9).await;
    let request = s.paid_by_coins(&[10, 10]).await;
    let voucher = s.voucher(request, 15);
    let (withdrawal, _, _) = s.voucher_withdrawal(&voucher, &[10, 5]);
    let first = s
        .issuer
        .withdraw_voucher(&withdrawal, NOW, &mut s.rng)
        .await
        .unwrap();
    let money = s.money().await;
    // The same request again (an answer lost on the way): the same signatures.
    let again = s
        .issuer
        .withdraw_voucher(&withdrawal, NOW, &mut s.rng)
        .await
        .unwrap();
    assert_eq!(again, first);
    // Someone else who copied the voucher, with coins of their own: refused.
    let (copy, _, _) = s.voucher_withdrawal(&voucher, &[5, 10]);
    assert!(matches!(
        s.issuer.withdraw_voucher(&copy, NOW, &mut s.rng).await,
        Err(IssuerError::VoucherAlreadyUsed(id)) if id == voucher.payload.refund_id
    ));
    assert_eq!(s.money().await, money);
    assert_eq!(s.merchant().await, 5);
}

#[tokio::test]
async fn a_refund_of_the_wrong_kind_or_of_what_was_not_paid_is_refused() {
    let mut s = scene(10).await;
    let by_record = s.paid_by_record(300).await;
    let by_coins = s.paid_by_coins(&[10]).await;
    let money = s.money().await;

    let to_account = s.fresh_refund(by_coins, 10);
    assert!(matches!(
        s.refund(&to_account).await,
        Err(IssuerError::WrongPaymentKind {
            paid_by: "coins",
            ..
        })
    ));
    let voucher = s.voucher(by_record, 10);
    let (withdrawal, _, _) = s.voucher_withdrawal(&voucher, &[10]);
    let refused = s
        .issuer
        .withdraw_voucher(&withdrawal, NOW, &mut s.rng)
        .await;
    assert!(matches!(
        refused,
        Err(IssuerError::WrongPaymentKind {
            paid_by: "withdrawal record",
            ..
        })
    ));
    assert_eq!(refused.unwrap_err().code(), ReasonCode::WrongPaymentKind);

    // A request nobody paid, and another merchant's payment.
    let unpaid = s.shop.request(50, &mut s.rng).payload.request_id;
    let refund = s.fresh_refund(unpaid, 50);
    assert!(matches!(
        s.refund(&refund).await,
        Err(IssuerError::UnknownPayment { .. })
    ));
    let refund_id = RefundId::random(&mut s.rng);
    let theirs = signed_refund(&s.other_shop, refund_id, by_record, 50, &mut s.rng);
    assert!(matches!(
        s.issuer.refund(&theirs, NOW).await,
        Err(IssuerError::UnknownPayment { .. })
    ));
    // Coins that do not add up to the voucher.
    let voucher = s.voucher(by_coins, 10);
    let (short, _, _) = s.voucher_withdrawal(&voucher, &[5]);
    assert!(matches!(
        s.issuer.withdraw_voucher(&short, NOW, &mut s.rng).await,
        Err(IssuerError::Invalid(Error::AmountMismatch { .. }))
    ));
    assert_eq!(s.money().await, money);
}

#[tokio::test]
async fn a_forged_voucher_is_refused_before_anything_is_stored_or_signed() {
    let mut s = scene(11).await;
    let request = s.paid_by_coins(&[10]).await;
    let money = s.money().await;
    // Signed by another merchant's key in the shop's name.
    let forged = signed_voucher(&s.other_shop.key, s.shop.id(), request, 10, &mut s.rng);
    let (withdrawal, _, _) = s.voucher_withdrawal(&forged, &[10]);
    let units = s.issuer.store().stats().units;
    assert!(matches!(
        s.issuer
            .withdraw_voucher(&withdrawal, NOW, &mut s.rng)
            .await,
        Err(IssuerError::Invalid(
            Error::BadSignature | Error::UnknownKey(_)
        ))
    ));
    assert_eq!(s.money().await, money);
    assert!(s
        .issuer
        .refund_of(s.shop.id(), forged.payload.refund_id)
        .await
        .unwrap()
        .is_none());
    assert_eq!(s.issuer.store().stats().units, units, "nothing written");
    // A voucher of a merchant nobody registered.
    let stranger = signed_voucher(
        &s.other_shop.key,
        MerchantId::random(&mut s.rng),
        request,
        10,
        &mut s.rng,
    );
    let (withdrawal, _, _) = s.voucher_withdrawal(&stranger, &[10]);
    assert!(matches!(
        s.issuer
            .withdraw_voucher(&withdrawal, NOW, &mut s.rng)
            .await,
        Err(IssuerError::UnknownMerchant(_))
    ));
}

#[tokio::test]
async fn a_voucher_the_merchants_balance_no_longer_covers_waits_until_it_does() {
    let mut s = scene(12).await;
    let request = s.paid_by_coins(&[10, 5]).await;
    let voucher = s.voucher(request, 15);
    // The merchant's credit leaves (a payout) before the customer comes online.
    let payout = |amount: u64| {
        Unit::new(Claimant::Issuer, NOW).post(Posting::transfer(
            LedgerAccount::Merchant(s.shop.id()),
            LedgerAccount::System("test-payouts".into()),
            eur(amount),
            "payout",
        ))
    };
    let store = s.issuer.store();
    assert!(store.commit(payout(15)).await.unwrap().is_durable_success());
    let (withdrawal, _, _) = s.voucher_withdrawal(&voucher, &[10, 5]);
    let refused = s
        .issuer
        .withdraw_voucher(&withdrawal, NOW, &mut s.rng)
        .await;
    assert!(matches!(
        refused,
        Err(IssuerError::MerchantBalanceShort { .. })
    ));
    assert_eq!(refused.unwrap_err().code(), ReasonCode::InsufficientFunds);
    assert_eq!(s.merchant().await, 0);
    // Once the merchant is credited again (another sale), the same withdrawal goes through.
    s.paid_by_record(40).await;
    s.issuer
        .withdraw_voucher(&withdrawal, NOW, &mut s.rng)
        .await
        .unwrap();
    assert_eq!(s.merchant().await, 25);
}

#[tokio::test]
async fn a_revoked_merchant_refunds_nothing() {
    let mut s = scene(13).await;
    let request = s.paid_by_record(300).await;
    s.issuer
        .revoke_merchant(s.shop.id(), "closed", NOW)
        .await
        .unwrap();
    let refund = s.fresh_refund(request, 10);
    assert!(matches!(
        s.refund(&refund).await,
        Err(IssuerError::MerchantRevoked(_))
    ));
}

// ---- over HTTP --------------------------------------------------------------------------

/// A server over `store`, with the fixture keys valid from a day before `NOW` to a month
/// after the wall clock, so that the scene set up at `NOW` and requests signed now both
/// verify.
async fn server_over(
    store: Arc<MemoryStore>,
    dir: &std::path::Path,
) -> scrip_issuer::server::RunningServer {
    use scrip_issuer::server::{self, KeySource, OperatorToken, ServerConfig, StoreKind};
    scrip_issuer::keyring_files::save(
        &scrip_testkit::fixture_keyring(http_validity()),
        &dir.join("keys"),
    )
    .unwrap();
    let mut config = ServerConfig::new(
        ([127, 0, 0, 1], 0).into(),
        dir.join("data"),
        OperatorToken::Given("operator".into()),
    );
    config.issuer.backend = scrip_testkit::backend();
    config.store = StoreKind::Memory;
    let store: Arc<dyn RecordStore> = store;
    config.custom_store = Some(store);
    config.keys = KeySource::Directory {
        dir: dir.join("keys"),
        generate: Default::default(),
    };
    config.issuer = IssuerConfig {
        backend: scrip_testkit::backend(),
        ..http_config()
    };
    server::start(config).await.unwrap()
}

fn http_validity() -> Validity {
    let until_now =
        Duration::from_millis(scrip_issuer::server::now().as_unix_millis() - NOW.as_unix_millis());
    validity_around(NOW, DAY, until_now + DAY * 30)
}

/// Merchant certificates that still hold when requests are signed at the wall clock.
fn http_config() -> IssuerConfig {
    IssuerConfig {
        merchant_certificate_lifetime: DAY * 365 * 20,
        ..IssuerConfig::default()
    }
}

async fn post(
    server: &scrip_issuer::server::RunningServer,
    path: &str,
    body: Vec<u8>,
) -> (u16, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: scrip\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP answer");
    let head = String::from_utf8_lossy(&answer[..split]).into_owned();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, answer[split + 4..].to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refunds_over_http() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryStore::new());
    // The scene is set up at `NOW` through an issuer over the server's store.
    let setup = scrip_testkit::issuer_with(Arc::clone(&store), http_validity(), http_config());
    let mut rng = rng(14);
    let mut wallet = RawWallet::open(&setup, 1, &mut rng).await;
    wallet.deposit(&setup, DEPOSITED, &mut rng).await;
    let shop = Shop::register(&setup, 1, &mut rng).await;
    let cert = wallet.certificate(&setup, 3_000, NOW, &mut rng).await;
    let request = shop.request(300, &mut rng);
    let record = wallet.pay(&cert, &request, NOW, &mut rng);
    let items = vec![RedemptionItem::Record(shop.countersign(&record, &mut rng))];
    assert!(matches!(
        shop.redeem(&setup, items, NOW, &mut rng).await[..],
        [RedemptionOutcome::Accepted { .. }]
    ));
    let coins = wallet.withdraw_blind(&setup, &[10], &mut rng).await;
    let payment = shop.endorse(coins, &mut rng);
    let coin_request = payment.payload.payment.request.payload.request_id;
    shop.redeem(&setup, vec![RedemptionItem::Coins(payment)], NOW, &mut rng)
        .await;

    let server = server_over(Arc::clone(&store), tmp.path()).await;
    let now = scrip_issuer::server::now();
    let refund = RefundRequest::sign(
        RefundRequestPayload {
            merchant_id: shop.id(),
            refund_id: RefundId::random(&mut rng),
            request_id: request.payload.request_id,
            amount: eur(120),
            created_at: now,
            nonce: nonce(&mut rng),
        },
        &shop.key,
        &mut rng,
    )
    .unwrap();
    let body = serde_json::to_vec(&refund).unwrap();
    let (status, answer) = post(&server, "/v1/refunds", body.clone()).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    let receipt: RefundReceipt = serde_json::from_slice(&answer).unwrap();
    let directory = server.state().issuer.keys().directory(now).unwrap();
    let paid = receipt.verify_for(&refund, &directory, now).unwrap();
    assert_eq!(
        (paid.account_id, paid.amount),
        (wallet.account_id, eur(120))
    );
    // The server releases the certificate's reservation (long expired by the wall clock)
    // in its first background round after the start, which may come after the refund:
    // then the account holds what it did not pay, and the refund.
    let expected = i128::from(DEPOSITED) - 300 - 10 + 120;
    let mut balance = setup.balance(wallet.account_id, EUR).await.unwrap();
    for _ in 0..200 {
        if balance == expected {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        balance = setup.balance(wallet.account_id, EUR).await.unwrap();
    }
    assert_eq!(balance, expected);
    // The same bytes again are a replay; a refund beyond the payment is a 422.
    let (status, _) = post(&server, "/v1/refunds", body).await;
    assert_eq!(status, 409);
    let mut beyond = refund.payload.clone();
    beyond.refund_id = RefundId::random(&mut rng);
    beyond.amount = eur(181);
    beyond.nonce = nonce(&mut rng);
    let beyond = RefundRequest::sign(beyond, &shop.key, &mut rng).unwrap();
    let (status, answer) = post(&server, "/v1/refunds", serde_json::to_vec(&beyond).unwrap()).await;
    assert_eq!(status, 422);
    assert!(String::from_utf8_lossy(&answer).contains("refund_exceeds_payment"));

    // The coin payment, refunded by voucher: no account, no device signature.
    let voucher = signed_voucher(&shop.key, shop.id(), coin_request, 10, &mut rng);
    let keyset = keyset(&directory);
    let pending = PendingCoin::new(&mut rng, &keyset, eur(10)).unwrap();
    let withdrawal = VoucherWithdrawalRequest {
        voucher,
        keyset_id: keyset.id(),
        coins: vec![(10, pending.blinded().clone())],
    };
    let (status, answer) = post(
        &server,
        "/v1/refund-withdrawals",
        serde_json::to_vec(&withdrawal).unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    let answer: BlindWithdrawalResponse = serde_json::from_slice(&answer).unwrap();
    let coins = finalize(&keyset, std::slice::from_ref(&pending), &answer);
    coins[0].verify(&directory, now).unwrap();
    // A forged voucher: 401, nothing signed.
    let mut forged = withdrawal.clone();
    forged.voucher = signed_voucher(
        &fixtures::merchant(2),
        shop.id(),
        coin_request,
        10,
        &mut rng,
    );
    let (status, answer) = post(
        &server,
        "/v1/refund-withdrawals",
        serde_json::to_vec(&forged).unwrap(),
    )
    .await;
    assert_eq!(status, 401, "{}", String::from_utf8_lossy(&answer));
    server.shutdown().await.unwrap();
}
