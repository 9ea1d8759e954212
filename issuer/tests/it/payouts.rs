//! Issue 17, requirement 3: a merchant reads its signed statement and is paid out through
//! the issuer's `PayoutSink`, once per payout id, in double entry, whatever fails between
//! the bank and the ledger. The core tests run on the memory and redb stores; the last
//! ones go through the HTTP server with the merchant's signatures checked.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use rand::rngs::StdRng;
use scrip_issuer::server::{self, KeySource, OperatorToken, RunningServer, ServerConfig};
use scrip_issuer::{
    coins_outstanding_account, funding_account, paid_out_account, payouts_pending_account,
    InMemoryPayouts, IssuerError, Payout, PayoutConfirmation, PayoutError, PayoutProgress,
    PayoutSink,
};
use scrip_stores::{LedgerAccount, MemoryStore, RecordStore, RedbStore};
use scrip_tokens::fixtures::NOW;
use scrip_tokens::*;

/// A payout request of `shop` for `amount` under `id`, signed at `now`.
fn payout_request(
    shop: &Shop,
    id: PayoutId,
    amount: u64,
    now: Timestamp,
    rng: &mut StdRng,
) -> PayoutRequest {
    PayoutRequest::sign(
        PayoutRequestPayload {
            merchant_id: shop.id(),
            payout_id: id,
            amount: eur(amount),
            created_at: now,
            nonce: nonce(rng),
        },
        &shop.key,
        rng,
    )
    .unwrap()
}

fn statement_request(
    shop: &Shop,
    after_seq: Option<u64>,
    limit: u32,
    now: Timestamp,
    rng: &mut StdRng,
) -> MerchantStatementRequest {
    MerchantStatementRequest::sign(
        MerchantStatementRequestPayload {
            merchant_id: shop.id(),
            currency: Currency::EUR,
            after_seq,
            limit,
            created_at: now,
            nonce: nonce(rng),
        },
        &shop.key,
        rng,
    )
    .unwrap()
}

/// A registered shop credited `credit` by one customer's withdrawal record (the customer
/// deposited `credit + 1_000`).
async fn credited_shop<S: RecordStore>(
    issuer: &TestIssuer<S>,
    credit: u64,
    rng: &mut StdRng,
) -> Shop {
    let shop = Shop::register(issuer, 1, rng).await;
    let mut wallet = RawWallet::open(issuer, 1, rng).await;
    wallet.deposit(issuer, credit + 1_000, rng).await;
    let cert = wallet.certificate(issuer, credit, NOW, rng).await;
    let record = wallet.pay(&cert, &shop.request(credit, rng), NOW, rng);
    let outcomes = shop
        .redeem(
            issuer,
            vec![RedemptionItem::Record(shop.countersign(&record, rng))],
            NOW,
            rng,
        )
        .await;
    assert!(
        matches!(outcomes[..], [RedemptionOutcome::Accepted { .. }]),
        "{outcomes:?}"
    );
    shop
}

/// Every non-zero balance, by account.
async fn ledger<S: RecordStore>(issuer: &TestIssuer<S>) -> BTreeMap<LedgerAccount, i128> {
    issuer
        .store()
        .balances(None, usize::MAX)
        .await
        .unwrap()
        .into_iter()
        .filter(|(_, _, b)| *b != 0)
        .map(|(a, _, b)| (a, b))
        .collect()
}

/// Money is conserved: the balances sum to zero, and what was deposited is held by
/// customers, reservations, coins, merchants, pending payouts, or was paid out.
async fn assert_conserved<S: RecordStore>(issuer: &TestIssuer<S>) {
    let balances = ledger(issuer).await;
    assert_eq!(balances.values().sum::<i128>(), 0, "{balances:?}");
    let deposited = -balances.get(&funding_account()).copied().unwrap_or(0);
    let held: i128 = balances
        .iter()
        .filter(|(a, _)| **a != funding_account())
        .map(|(a, b)| {
            assert!(
                matches!(
                    a,
                    LedgerAccount::Customer(_)
                        | LedgerAccount::Reservation(_)
                        | LedgerAccount::Merchant(_)
                ) || *a == coins_outstanding_account()
                    || *a == payouts_pending_account()
                    || *a == paid_out_account(),
                "unexpected account {a}"
            );
            *b
        })
        .sum();
    assert_eq!(held, deposited, "{balances:?}");
}

async fn balance<S: RecordStore>(issuer: &TestIssuer<S>, account: &LedgerAccount) -> i128 {
    issuer
        .store()
        .balance(account, Currency::EUR)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_statement_lists_the_redemption_credit_then_the_payout() {
    let issuer = issuer(MemoryStore::new());
    let sink = InMemoryPayouts::new();
    let mut rng = rng(1);
    let shop = credited_shop(&issuer, 2_000, &mut rng).await;
    let directory = directory(&issuer);

    let id = PayoutId::random(&mut rng);
    let request = payout_request(&shop, id, 1_500, at(1), &mut rng);
    let receipt = issuer.payout(&request, &sink, at(1)).await.unwrap();
    let receipt = issuer.sign_answer(receipt, at(1), &mut rng).unwrap();
    let receipt = receipt.verify_for(&request, &directory, at(1)).unwrap();
    let PayoutState::Paid { reference, .. } = &receipt.state else {
        panic!("not paid: {receipt:?}");
    };
    let paid = sink.paid();
    assert_eq!(paid.len(), 1);
    assert_eq!((paid[0].0.payout_id, paid[0].0.amount), (id, eur(1_500)));
    assert_eq!(
        &paid[0].1, reference,
        "the receipt carries the bank's reference"
    );

    let request = statement_request(&shop, None, 10, at(2), &mut rng);
    let statement = issuer.merchant_statement(&request, at(2)).await.unwrap();
    let statement = issuer.sign_answer(statement, at(2), &mut rng).unwrap();
    let statement = statement.verify_for(&request, &directory, at(2)).unwrap();
    assert_eq!(statement.balance, 500);
    let lines: Vec<(i128, i128, &str)> = statement
        .entries
        .iter()
        .map(|e| (e.delta, e.balance_after, e.memo.as_str()))
        .collect();
    let payout_memo = format!("payout {id}");
    assert_eq!(
        lines,
        [
            (2_000, 2_000, "withdrawal record"),
            (-1_500, 500, payout_memo.as_str())
        ]
    );
    // Paging: after the first entry, only the payout.
    let request = statement_request(&shop, Some(statement.entries[0].seq), 10, at(3), &mut rng);
    let page = issuer.merchant_statement(&request, at(3)).await.unwrap();
    assert_eq!(page.entries.len(), 1);
    assert_eq!(page.entries[0].memo, payout_memo);

    assert_eq!(balance(&issuer, &paid_out_account()).await, 1_500);
    assert_eq!(balance(&issuer, &payouts_pending_account()).await, 0);
    assert_conserved(&issuer).await;
}

#[tokio::test]
async fn a_payout_sent_twice_pays_once_and_answers_the_same() {
    let issuer = issuer(MemoryStore::new());
    let sink = InMemoryPayouts::new();
    let mut rng = rng(2);
    let shop = credited_shop(&issuer, 2_000, &mut rng).await;
    let id = PayoutId::random(&mut rng);

    let first = payout_request(&shop, id, 800, at(1), &mut rng);
    let first = issuer.payout(&first, &sink, at(1)).await.unwrap();
    // The merchant lost the answer and signs the same payout again, later.
    let again = payout_request(&shop, id, 800, at(5), &mut rng);
    let again = issuer.payout(&again, &sink, at(5)).await.unwrap();
    assert_eq!(again.state, first.state, "the first outcome stands");
    assert_ne!(
        again.request_digest, first.request_digest,
        "each names its request"
    );
    assert_eq!(sink.paid().len(), 1, "the bank saw one payment");
    assert_eq!(
        sink.calls(),
        1,
        "a finished payout does not ask the bank again"
    );
    assert_eq!(
        balance(&issuer, &LedgerAccount::Merchant(shop.id())).await,
        1_200
    );
    assert_eq!(balance(&issuer, &paid_out_account()).await, 800);
    assert_conserved(&issuer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_copies_of_one_payout_pay_once() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = Arc::new(issuer(
        RedbStore::open(dir.path().join("scrip.redb")).unwrap(),
    ));
    let sink = Arc::new(InMemoryPayouts::new());
    let mut rng = rng(12);
    let shop = credited_shop(&issuer, 2_000, &mut rng).await;
    let id = PayoutId::random(&mut rng);
    let tasks: Vec<_> = (0..8)
        .map(|n| {
            let request = payout_request(&shop, id, 600, at(1 + n), &mut rng);
            let (issuer, sink) = (Arc::clone(&issuer), Arc::clone(&sink));
            tokio::spawn(async move { issuer.payout(&request, &*sink, at(20 + n)).await })
        })
        .collect();
    let mut states = Vec::new();
    for task in tasks {
        states.push(task.await.unwrap().unwrap().state);
    }
    assert!(states.iter().all(|s| *s == states[0]), "{states:?}");
    assert_eq!(sink.paid().len(), 1);
    assert_eq!(
        balance(&issuer, &LedgerAccount::Merchant(shop.id())).await,
        1_400
    );
    assert_eq!(balance(&issuer, &paid_out_account()).await, 600);
    assert_eq!(balance(&issuer, &payouts_pending_account()).await, 0);
    assert_conserved(&issuer).await;
}

/// A bank that pays the first of two calls only once the second has arrived, and fails the
/// second (unreachable) once told to: two copies of one payout both reach it, one settles
/// the payout, then the other's call fails.
struct PaysFirstOfTwo {
    calls: std::sync::atomic::AtomicUsize,
    both_arrived: tokio::sync::Barrier,
    fail_second: tokio::sync::Notify,
}

#[async_trait::async_trait]
impl PayoutSink for PaysFirstOfTwo {
    async fn pay(&self, payout: &Payout) -> Result<PayoutConfirmation, PayoutError> {
        let n = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.both_arrived.wait().await;
        if n == 0 {
            return Ok(PayoutConfirmation {
                reference: format!("transfer {}", payout.payout_id),
            });
        }
        self.fail_second.notified().await;
        Err(PayoutError::Unavailable("the bank went away".into()))
    }
}

/// The copy whose bank call fails after the other copy settled the payout answers the
/// settlement (paid), not `unavailable`: the money is out, and a terminal told otherwise
/// would ask again or tell the shop it was not paid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_whose_bank_call_fails_after_its_twin_paid_answers_paid() {
    let issuer = Arc::new(issuer(MemoryStore::new()));
    let sink = Arc::new(PaysFirstOfTwo {
        calls: Default::default(),
        both_arrived: tokio::sync::Barrier::new(2),
        fail_second: tokio::sync::Notify::new(),
    });
    let mut rng = rng(14);
    let shop = credited_shop(&issuer, 1_000, &mut rng).await;
    let id = PayoutId::random(&mut rng);
    let (done, mut answers) = tokio::sync::mpsc::unbounded_channel();
    for n in 0..2 {
        let request = payout_request(&shop, id, 600, at(1 + n), &mut rng);
        let (issuer, sink, done) = (Arc::clone(&issuer), Arc::clone(&sink), done.clone());
        tokio::spawn(async move {
            let _ = done.send(issuer.payout(&request, &*sink, at(5)).await);
        });
    }
    // The copy the bank paid answers first: the other waits for the bank's failure.
    let paid = answers.recv().await.unwrap().unwrap();
    assert!(matches!(paid.state, PayoutState::Paid { .. }), "{paid:?}");
    sink.fail_second.notify_one();
    let other = answers.recv().await.unwrap();
    assert_eq!(other.unwrap().state, paid.state);
    assert_eq!(balance(&issuer, &paid_out_account()).await, 600);
    assert_eq!(balance(&issuer, &payouts_pending_account()).await, 0);
    assert_conserved(&issuer).await;
}

#[tokio::test]
async fn a_payout_id_used_again_with_another_amount_or_merchant_is_refused() {
    let issuer = issuer(MemoryStore::new());
    let sink = InMemoryPayouts::new();
    let mut rng = rng(3);
    let shop = credited_shop(&issuer, 2_000, &mut rng).await;
    let other = Shop::register(&issuer, 2, &mut rng).await;
    let id = PayoutId::random(&mut rng);
    issuer
        .payout(
            &payout_request(&shop, id, 500, at(1), &mut rng),
            &sink,
            at(1),
        )
        .await
        .unwrap();
    let before = ledger(&issuer).await;

    let refused = issuer
        .payout(
            &payout_request(&shop, id, 600, at(2), &mut rng),
            &sink,
            at(2),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(refused, IssuerError::PayoutIdReused(i) if i == id),
        "{refused:?}"
    );
    assert_eq!(refused.code(), ReasonCode::PayoutIdReused);
    let refused = issuer
        .payout(
            &payout_request(&other, id, 500, at(2), &mut rng),
            &sink,
            at(2),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(refused, IssuerError::PayoutIdReused(_)),
        "{refused:?}"
    );
    assert_eq!(ledger(&issuer).await, before, "nothing moved");
    assert_eq!(sink.paid().len(), 1);
}

#[tokio::test]
async fn more_than_the_issuer_owes_is_refused_and_nothing_moves() {
    let issuer = issuer(MemoryStore::new());
    let sink = InMemoryPayouts::new();
    let mut rng = rng(4);
    let shop = credited_shop(&issuer, 2_000, &mut rng).await;
    let before = ledger(&issuer).await;
    let id = PayoutId::random(&mut rng);

    let refused = issuer
        .payout(
            &payout_request(&shop, id, 2_001, at(1), &mut rng),
            &sink,
            at(1),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(refused, IssuerError::InsufficientFunds { .. }),
        "{refused:?}"
    );
    assert_eq!(ledger(&issuer).await, before, "nothing moved");
    assert_eq!(sink.calls(), 0, "the bank was not asked");
    // A merchant that was never credited owes nothing either.
    let stranger = Shop::register(&issuer, 2, &mut rng).await;
    let refused = issuer
        .payout(
            &payout_request(&stranger, PayoutId::random(&mut rng), 1, at(1), &mut rng),
            &sink,
            at(1),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(refused, IssuerError::InsufficientFunds { .. }),
        "{refused:?}"
    );

    // The refused id was not used up: the whole balance goes out under it.
    let receipt = issuer
        .payout(
            &payout_request(&shop, id, 2_000, at(2), &mut rng),
            &sink,
            at(2),
        )
        .await
        .unwrap();
    assert!(matches!(receipt.state, PayoutState::Paid { .. }));
    assert_eq!(
        balance(&issuer, &LedgerAccount::Merchant(shop.id())).await,
        0
    );
    assert_conserved(&issuer).await;
}

#[tokio::test]
async fn an_unreachable_bank_leaves_the_payout_pending_and_the_retry_pays_it_once() {
    let issuer = issuer(MemoryStore::new());
    let sink = InMemoryPayouts::new();
    let mut rng = rng(5);
    let shop = credited_shop(&issuer, 2_000, &mut rng).await;
    let id = PayoutId::random(&mut rng);
    sink.fail_next(2);

    for minute in [1, 2] {
        let failed = issuer
            .payout(
                &payout_request(&shop, id, 700, at(minute), &mut rng),
                &sink,
                at(minute),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(failed, IssuerError::Payout(PayoutError::Unavailable(_))),
            "{failed:?}"
        );
        assert_eq!(failed.code(), ReasonCode::PayoutUnavailable);
        // Taken from the merchant once, held as pending; nothing paid out.
        assert_eq!(
            balance(&issuer, &LedgerAccount::Merchant(shop.id())).await,
            1_300
        );
        assert_eq!(balance(&issuer, &payouts_pending_account()).await, 700);
        assert_eq!(balance(&issuer, &paid_out_account()).await, 0);
        assert_eq!(
            issuer.payout_doc(id).await.unwrap().progress,
            PayoutProgress::Pending
        );
        assert_conserved(&issuer).await;
    }

    let receipt = issuer
        .payout(
            &payout_request(&shop, id, 700, at(3), &mut rng),
            &sink,
            at(3),
        )
        .await
        .unwrap();
    assert!(
        matches!(receipt.state, PayoutState::Paid { .. }),
        "{receipt:?}"
    );
    assert_eq!(sink.paid().len(), 1);
    assert_eq!(
        balance(&issuer, &LedgerAccount::Merchant(shop.id())).await,
        1_300
    );
    assert_eq!(balance(&issuer, &payouts_pending_account()).await, 0);
    assert_eq!(balance(&issuer, &paid_out_account()).await, 700);
    assert_conserved(&issuer).await;
}

#[tokio::test]
async fn a_crash_between_taking_and_paying_is_finished_by_the_retry_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scrip.redb");
    let sink = InMemoryPayouts::new();
    let mut rng = rng(6);
    let id = PayoutId::random(&mut rng);
    let shop = {
        let issuer = issuer(RedbStore::open(&path).unwrap());
        let shop = credited_shop(&issuer, 2_000, &mut rng).await;
        let request = payout_request(&shop, id, 900, at(1), &mut rng);
        // The first unit commits; the process dies before it asks the bank.
        let taken = issuer
            .take_payout(issuer.authenticate(&request).await.unwrap(), at(1))
            .await
            .unwrap();
        assert_eq!(taken.progress, PayoutProgress::Pending);
        issuer.store().close().await.unwrap();
        shop
    };
    let issuer = issuer(RedbStore::open(&path).unwrap());
    assert_eq!(balance(&issuer, &payouts_pending_account()).await, 900);
    let receipt = issuer
        .payout(
            &payout_request(&shop, id, 900, at(10), &mut rng),
            &sink,
            at(10),
        )
        .await
        .unwrap();
    assert!(matches!(receipt.state, PayoutState::Paid { .. }));
    assert_eq!(sink.paid().len(), 1);
    assert_eq!(
        balance(&issuer, &LedgerAccount::Merchant(shop.id())).await,
        1_100
    );
    assert_eq!(balance(&issuer, &payouts_pending_account()).await, 0);
    assert_eq!(balance(&issuer, &paid_out_account()).await, 900);
    assert_conserved(&issuer).await;
}

#[tokio::test]
async fn a_declined_payout_gives_the_money_back_and_stays_declined() {
    let issuer = issuer(MemoryStore::new());
    let sink = InMemoryPayouts::declining_above(1_000);
    let mut rng = rng(7);
    let shop = credited_shop(&issuer, 2_000, &mut rng).await;
    let id = PayoutId::random(&mut rng);

    let receipt = issuer
        .payout(
            &payout_request(&shop, id, 1_500, at(1), &mut rng),
            &sink,
            at(1),
        )
        .await
        .unwrap();
    let PayoutState::Declined { reason, .. } = &receipt.state else {
        panic!("not declined: {receipt:?}");
    };
    assert!(reason.contains("limit"), "{reason}");
    assert_eq!(
        balance(&issuer, &LedgerAccount::Merchant(shop.id())).await,
        2_000
    );
    assert_eq!(balance(&issuer, &payouts_pending_account()).await, 0);
    assert_eq!(balance(&issuer, &paid_out_account()).await, 0);
    // Asked again, the same payout stays declined (a new id is a new payout).
    let again = issuer
        .payout(
            &payout_request(&shop, id, 1_500, at(2), &mut rng),
            &sink,
            at(2),
        )
        .await
        .unwrap();
    assert_eq!(again.state, receipt.state);
    assert_eq!(
        balance(&issuer, &LedgerAccount::Merchant(shop.id())).await,
        2_000
    );

    let statement = issuer
        .merchant_statement(&statement_request(&shop, None, 10, at(3), &mut rng), at(3))
        .await
        .unwrap();
    let memos: Vec<(i128, String)> = statement
        .entries
        .iter()
        .map(|e| (e.delta, e.memo.clone()))
        .collect();
    assert_eq!(
        memos,
        [
            (2_000, "withdrawal record".to_owned()),
            (-1_500, format!("payout {id}")),
            (1_500, format!("payout {id} declined")),
        ]
    );
    assert_conserved(&issuer).await;
}

#[tokio::test]
async fn a_revoked_merchant_gets_neither_payout_nor_statement_and_forgeries_are_refused() {
    let issuer = issuer(MemoryStore::new());
    let sink = InMemoryPayouts::new();
    let mut rng = rng(8);
    let shop = credited_shop(&issuer, 2_000, &mut rng).await;
    let impostor = Shop::register(&issuer, 2, &mut rng).await;

    // Signed by another merchant's key in this merchant's name.
    let mut forged = payout_request(&shop, PayoutId::random(&mut rng), 100, at(1), &mut rng);
    forged = PayoutRequest::sign(forged.payload, &impostor.key, &mut rng).unwrap();
    forged.key_id = shop.key.key_id();
    let refused = issuer.payout(&forged, &sink, at(1)).await.unwrap_err();
    assert_eq!(refused.code(), ReasonCode::BadSignature, "{refused:?}");
    let mut forged = statement_request(&shop, None, 10, at(1), &mut rng);
    forged = MerchantStatementRequest::sign(forged.payload, &impostor.key, &mut rng).unwrap();
    forged.key_id = shop.key.key_id();
    let refused = issuer.merchant_statement(&forged, at(1)).await.unwrap_err();
    assert_eq!(refused.code(), ReasonCode::BadSignature, "{refused:?}");

    issuer
        .revoke_merchant(shop.id(), "stolen terminal", at(2))
        .await
        .unwrap();
    let refused = issuer
        .payout(
            &payout_request(&shop, PayoutId::random(&mut rng), 100, at(3), &mut rng),
            &sink,
            at(3),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(refused, IssuerError::MerchantRevoked(_)),
        "{refused:?}"
    );
    let refused = issuer
        .merchant_statement(&statement_request(&shop, None, 10, at(3), &mut rng), at(3))
        .await
        .unwrap_err();
    assert!(
        matches!(refused, IssuerError::MerchantRevoked(_)),
        "{refused:?}"
    );
    assert_eq!(sink.calls(), 0);
    assert_eq!(
        balance(&issuer, &LedgerAccount::Merchant(shop.id())).await,
        2_000
    );
}

#[tokio::test]
async fn an_answer_for_another_request_does_not_verify() {
    let issuer = issuer(MemoryStore::new());
    let sink = InMemoryPayouts::new();
    let mut rng = rng(9);
    let shop = credited_shop(&issuer, 2_000, &mut rng).await;
    let directory = directory(&issuer);
    let id = PayoutId::random(&mut rng);
    let request = payout_request(&shop, id, 100, at(1), &mut rng);
    let receipt = issuer.payout(&request, &sink, at(1)).await.unwrap();
    let receipt = issuer.sign_answer(receipt, at(1), &mut rng).unwrap();
    // The same payout asked again: the old receipt does not answer the new request.
    let retry = payout_request(&shop, id, 100, at(2), &mut rng);
    assert!(receipt.verify_for(&retry, &directory, at(2)).is_err());
    // Altered after signing.
    let mut altered = receipt.clone();
    altered.payload.amount = eur(1);
    assert_eq!(
        altered.verify_for(&request, &directory, at(1)).unwrap_err(),
        Error::BadSignature
    );

    let asked = statement_request(&shop, None, 1, at(3), &mut rng);
    let statement = issuer.merchant_statement(&asked, at(3)).await.unwrap();
    assert_eq!(statement.entries.len(), 1, "no more than asked for");
    let statement = issuer.sign_answer(statement, at(3), &mut rng).unwrap();
    let other = statement_request(&shop, None, 1, at(3), &mut rng);
    assert!(statement.verify_for(&other, &directory, at(3)).is_err());
    assert!(statement.verify_for(&asked, &directory, at(3)).is_ok());
}

// ---- through the HTTP server ------------------------------------------------------------

/// Keys valid from before `NOW` (when the scene is set up in the core) to well after the
/// wall clock (when the server answers).
fn long_validity() -> Validity {
    validity_around(NOW, DAY * 30, DAY * 3_650)
}

/// A server over `store` paying out through `sink`.
async fn serve(
    dir: &std::path::Path,
    store: Arc<MemoryStore>,
    sink: Arc<InMemoryPayouts>,
) -> RunningServer {
    let mut config = ServerConfig::new(
        ([127, 0, 0, 1], 0).into(),
        dir,
        OperatorToken::Given("operator".into()),
    );
    config.issuer.backend = scrip_testkit::backend();
    config.store = server::StoreKind::Memory;
    let store: Arc<dyn RecordStore> = store;
    config.custom_store = Some(store);
    config.keys = KeySource::Provided(Box::new(scrip_testkit::fixture_keyring(long_validity())));
    let sink: Arc<dyn scrip_issuer::PayoutSink> = sink;
    config.payouts = server::ServerPayouts::Sink(sink);
    config.release_interval = Duration::from_secs(3_600);
    server::start(config).await.unwrap()
}

/// One JSON `POST` to the server: the status and the body of the answer.
async fn post(server: &RunningServer, path: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: scrip\r\nConnection: close\r\n\
         Content-Type: application/json\r\nAccept: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"));
    let head = String::from_utf8_lossy(&answer[..split]).into_owned();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let mut body = answer[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    (status, body)
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&body[..line_end]).unwrap().trim(), 16)
                .unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&body[line_end + 2..line_end + 2 + size]);
        body = &body[line_end + 4 + size..];
    }
}

fn error_code(body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap();
    v["code"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_http_a_merchant_reads_its_statement_and_is_paid_out_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryStore::new());
    let sink = Arc::new(InMemoryPayouts::new());
    let mut rng = rng(10);
    // The scene in the core, at NOW: a customer pays the shop 2 000 by record.
    let core = scrip_testkit::issuer(Arc::clone(&store), long_validity());
    let shop = credited_shop(&core, 2_000, &mut rng).await;
    let running = serve(dir.path(), Arc::clone(&store), Arc::clone(&sink)).await;
    let now = server::now();
    let directory = core.keys().directory(now).unwrap();

    let asked = statement_request(&shop, None, 50, now, &mut rng);
    let (status, body) = post(
        &running,
        "/v1/merchant-statements",
        serde_json::to_vec(&asked).unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let statement: MerchantStatement = serde_json::from_slice(&body).unwrap();
    let statement = statement.verify_for(&asked, &directory, now).unwrap();
    assert_eq!(statement.balance, 2_000);
    assert_eq!(statement.entries.len(), 1);

    let id = PayoutId::random(&mut rng);
    sink.fail_next(1);
    let first = payout_request(&shop, id, 1_200, now, &mut rng);
    let (status, body) = post(&running, "/v1/payouts", serde_json::to_vec(&first).unwrap()).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (503, "payout_unavailable")
    );

    // The same bytes again are a replay; the payout signed again goes through.
    let (status, body) = post(&running, "/v1/payouts", serde_json::to_vec(&first).unwrap()).await;
    assert_eq!((status, error_code(&body).as_str()), (409, "replayed"));
    let retry = payout_request(&shop, id, 1_200, server::now(), &mut rng);
    let (status, body) = post(&running, "/v1/payouts", serde_json::to_vec(&retry).unwrap()).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let receipt: PayoutReceipt = serde_json::from_slice(&body).unwrap();
    let receipt = receipt
        .verify_for(&retry, &directory, server::now())
        .unwrap();
    assert!(
        matches!(receipt.state, PayoutState::Paid { .. }),
        "{receipt:?}"
    );

    let other_amount = payout_request(&shop, id, 1_000, server::now(), &mut rng);
    let (status, body) = post(
        &running,
        "/v1/payouts",
        serde_json::to_vec(&other_amount).unwrap(),
    )
    .await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (409, "payout_id_reused")
    );
    let too_much = payout_request(
        &shop,
        PayoutId::random(&mut rng),
        801,
        server::now(),
        &mut rng,
    );
    let (status, body) = post(
        &running,
        "/v1/payouts",
        serde_json::to_vec(&too_much).unwrap(),
    )
    .await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (422, "insufficient_funds")
    );
    let impostor = Shop::register(&core, 2, &mut rng).await;
    let mut forged = payout_request(
        &shop,
        PayoutId::random(&mut rng),
        100,
        server::now(),
        &mut rng,
    );
    forged = PayoutRequest::sign(forged.payload, &impostor.key, &mut rng).unwrap();
    forged.key_id = shop.key.key_id();
    let (status, body) = post(
        &running,
        "/v1/payouts",
        serde_json::to_vec(&forged).unwrap(),
    )
    .await;
    assert_eq!((status, error_code(&body).as_str()), (401, "bad_signature"));

    assert_eq!(sink.paid().len(), 1, "the bank saw one payment");
    assert_eq!(sink.total_paid(), 1_200);
    assert_eq!(
        balance(&core, &LedgerAccount::Merchant(shop.id())).await,
        800
    );
    assert_eq!(balance(&core, &paid_out_account()).await, 1_200);
    assert_conserved(&core).await;
    running.shutdown().await.unwrap();
}
