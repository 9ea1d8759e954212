//! Copies of one request sent at once (a wallet or terminal retrying over a second link
//! before the first answer came) get the first copy's answer, whatever they interleave:
//! none is refused for the effect of another copy, the balance its debit lowered, the
//! refund total it raised, the freeze it lifted, the coins it reissued.
//!
//! Such a race needs the first copy to commit between two reads of the second, a window
//! of microseconds. [`Interleaved`] makes it happen every time, over a real store: the
//! second copy's read of what the first changes waits for the first copy's commit, and
//! that commit waits until the second copy has reached that read, so has already looked
//! for a stored answer and found none.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rand::Rng;
use scrip_issuer::IssuerError;
use scrip_stores::{
    ClaimId, Collection, CommitOutcome, ExistingClaim, LedgerAccount, LedgerEntry, MemoryStore,
    RecordStore, StoreStats, Unit,
};
use scrip_tokens::fixtures::NOW;
use scrip_tokens::*;
use tokio::sync::watch;

use crate::common::*;
use crate::refunds::{scene_over, signed_refund};

/// The read of the second copy that must see the first copy's commit.
#[derive(Clone, Copy, Debug)]
enum Read {
    Balance,
    Claims,
    /// A document of the collection so named.
    Get(&'static str),
}

/// A store that forces one interleaving of two copies, once armed: the second `read` waits
/// for the first commit, which waits until that read has begun.
struct Interleaved<S> {
    inner: S,
    armed: Mutex<Option<Read>>,
    reads: AtomicUsize,
    committed: AtomicBool,
    second_read: watch::Sender<bool>,
    first_commit: watch::Sender<bool>,
}

const WAIT: Duration = Duration::from_secs(10);

impl<S: RecordStore> Interleaved<S> {
    fn new(inner: S) -> Arc<Self> {
        Arc::new(Interleaved {
            inner,
            armed: Mutex::new(None),
            reads: AtomicUsize::new(0),
            committed: AtomicBool::new(false),
            second_read: watch::Sender::new(false),
            first_commit: watch::Sender::new(false),
        })
    }

    /// From now on, until [`Self::disarm`], interleave on `read`.
    fn arm(&self, read: Read) {
        self.reads.store(0, Ordering::SeqCst);
        self.committed.store(false, Ordering::SeqCst);
        self.second_read.send_replace(false);
        self.first_commit.send_replace(false);
        *self.armed.lock().unwrap() = Some(read);
    }

    fn disarm(&self) {
        *self.armed.lock().unwrap() = None;
    }

    fn armed(&self) -> Option<Read> {
        *self.armed.lock().unwrap()
    }

    async fn reading(&self, this: Read) {
        let matches = match (self.armed(), this) {
            (Some(Read::Balance), Read::Balance) | (Some(Read::Claims), Read::Claims) => true,
            (Some(Read::Get(armed)), Read::Get(name)) => armed == name,
            _ => false,
        };
        if matches && self.reads.fetch_add(1, Ordering::SeqCst) == 1 {
            self.second_read.send_replace(true);
            wait_for(&self.first_commit, "the first copy's commit").await;
        }
    }
}

async fn wait_for(flag: &watch::Sender<bool>, what: &str) {
    let mut rx = flag.subscribe();
    tokio::time::timeout(WAIT, rx.wait_for(|set| *set))
        .await
        .unwrap_or_else(|_| panic!("the interleaving did not happen: no {what}"))
        .unwrap();
}

#[async_trait]
impl<S: RecordStore> RecordStore for Interleaved<S> {
    async fn commit_many(&self, units: Vec<Unit>) -> scrip_stores::Result<Vec<CommitOutcome>> {
        let armed = self.armed().is_some();
        if armed && !self.committed.swap(true, Ordering::SeqCst) {
            wait_for(&self.second_read, "second copy at its read").await;
            let outcomes = self.inner.commit_many(units).await;
            self.first_commit.send_replace(true);
            return outcomes;
        }
        self.inner.commit_many(units).await
    }

    async fn claims(&self, ids: &[ClaimId]) -> scrip_stores::Result<Vec<Option<ExistingClaim>>> {
        self.reading(Read::Claims).await;
        self.inner.claims(ids).await
    }

    async fn balance(
        &self,
        account: &LedgerAccount,
        currency: Currency,
    ) -> scrip_stores::Result<i128> {
        self.reading(Read::Balance).await;
        self.inner.balance(account, currency).await
    }

    async fn balances(
        &self,
        after: Option<(LedgerAccount, Currency)>,
        limit: usize,
    ) -> scrip_stores::Result<Vec<(LedgerAccount, Currency, i128)>> {
        self.inner.balances(after, limit).await
    }

    async fn ledger_entries(
        &self,
        account: &LedgerAccount,
        currency: Currency,
        after_seq: Option<u64>,
        limit: usize,
    ) -> scrip_stores::Result<Vec<LedgerEntry>> {
        self.inner
            .ledger_entries(account, currency, after_seq, limit)
            .await
    }

    async fn get(
        &self,
        collection: Collection,
        key: &[u8],
    ) -> scrip_stores::Result<Option<Vec<u8>>> {
        self.reading(Read::Get(collection.name())).await;
        self.inner.get(collection, key).await
    }

    async fn scan(
        &self,
        collection: Collection,
        after: Option<&[u8]>,
        limit: usize,
    ) -> scrip_stores::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.inner.scan(collection, after, limit).await
    }

    fn stats(&self) -> StoreStats {
        self.inner.stats()
    }

    async fn close(&self) -> scrip_stores::Result<()> {
        self.inner.close().await
    }
}

type Store = Arc<Interleaved<MemoryStore>>;

/// An issuer over an [`Interleaved`] memory store, and the store to arm.
fn interleaved_issuer() -> (Arc<TestIssuer<Store>>, Store) {
    let store = Interleaved::new(MemoryStore::new());
    (Arc::new(issuer(Arc::clone(&store))), store)
}

/// Runs `call` twice at once, interleaved on `read`, and returns both answers.
async fn two_copies<T, F, Fut>(store: &Store, read: Read, call: F) -> [T; 2]
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    store.arm(read);
    let first = tokio::spawn(call(1));
    let second = tokio::spawn(call(2));
    let answers = [first.await.unwrap(), second.await.unwrap()];
    store.disarm();
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_of_one_blind_withdrawal_get_its_coins_though_the_first_spent_the_balance() {
    let (issuer, store) = interleaved_issuer();
    let mut rng = rng(61);
    let wallet = RawWallet::open(&issuer, 1, &mut rng).await;
    wallet.deposit(&issuer, 15, &mut rng).await;
    let keyset = keyset(&directory(&issuer));
    let mut key = [0u8; 32];
    rng.fill_bytes(&mut key);
    let (request, _) = wallet.blind_request(&keyset, &[10, 5], key, &mut rng);
    let answers = two_copies(&store, Read::Balance, |n| {
        let (issuer, request) = (Arc::clone(&issuer), request.clone());
        async move {
            issuer
                .withdraw_blind(&request, NOW, &mut crate::common::rng(n))
                .await
        }
    })
    .await;
    let [first, second] = answers.map(|a| a.unwrap());
    assert_eq!(first, second);
    assert_eq!(issuer.balance(wallet.account_id, EUR).await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_of_one_certificate_request_get_one_certificate_though_the_first_reserved_all() {
    let (issuer, store) = interleaved_issuer();
    let mut rng = rng(62);
    let wallet = RawWallet::open(&issuer, 1, &mut rng).await;
    wallet.deposit(&issuer, 300, &mut rng).await;
    let request = wallet.certificate_request(None, LockRules::default(), Vec::new(), &mut rng);
    let answers = two_copies(&store, Read::Balance, |n| {
        let (issuer, request) = (Arc::clone(&issuer), request.clone());
        async move {
            issuer
                .issue_balance_certificate(&request, NOW, &mut crate::common::rng(n))
                .await
        }
    })
    .await;
    let [first, second] = answers.map(|a| a.unwrap());
    assert_eq!(first, second);
    assert_eq!(first.payload.available, Amount::new(300, EUR));
    // Reserved once: nothing is left for another certificate.
    let another = wallet.certificate_request(None, LockRules::default(), Vec::new(), &mut rng);
    assert!(matches!(
        issuer
            .issue_balance_certificate(&another, NOW, &mut rng)
            .await,
        Err(IssuerError::NothingAvailable)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_of_one_reissue_hand_over_the_same_coins_and_keep_that_answer() {
    let (issuer, store) = interleaved_issuer();
    let mut rng = rng(63);
    let owner = RawWallet::open(&issuer, 1, &mut rng).await;
    owner.deposit(&issuer, 100, &mut rng).await;
    owner.withdraw_identified(&issuer, &[10, 5], &mut rng).await;
    let heir = owner.add_device(&issuer, 2, &mut rng).await;
    issuer.revoke_device(owner.device_id, NOW).await.unwrap();
    let (lost, to) = (owner.device_id, heir.device_id);
    let answers = two_copies(&store, Read::Claims, |n| {
        let issuer = Arc::clone(&issuer);
        async move {
            issuer
                .reissue_identified_coins(lost, to, NOW, &mut crate::common::rng(n))
                .await
        }
    })
    .await;
    let [first, second] = answers.map(|a| a.unwrap());
    assert_eq!(first.len(), 2, "{first:?}");
    assert_eq!(first, second);
    let later = issuer
        .reissue_identified_coins(lost, to, NOW, &mut rng)
        .await
        .unwrap();
    assert_eq!(later, first, "the stored answer was overwritten");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_unfreezes_of_one_freeze_both_answer_the_one_done() {
    let (issuer, store) = interleaved_issuer();
    let mut rng = rng(64);
    let wallet = RawWallet::open(&issuer, 1, &mut rng).await;
    let account = wallet.account_id;
    issuer
        .freeze_account(account, "under review", NOW)
        .await
        .unwrap();
    let answers = two_copies(&store, Read::Get("frozen-accounts"), |_| {
        let issuer = Arc::clone(&issuer);
        async move { issuer.unfreeze_account(account, "resolved", NOW).await }
    })
    .await;
    let [first, second] = answers.map(|a| a.unwrap());
    assert_eq!(first, second);
    assert_eq!(issuer.unfreezes(account).await.unwrap(), [first]);
    // Once done, another unfreeze finds nothing to lift.
    assert!(matches!(
        issuer.unfreeze_account(account, "again", NOW).await,
        Err(IssuerError::AccountNotFrozen(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_of_one_refund_get_its_receipt_though_the_first_used_the_payment_up() {
    let (issuer, store) = interleaved_issuer();
    let mut rng = rng(65);
    let wallet = RawWallet::open(&issuer, 1, &mut rng).await;
    wallet.deposit(&issuer, 1_000, &mut rng).await;
    let shop = Shop::register(&issuer, 1, &mut rng).await;
    let mut wallet = wallet;
    let cert = wallet.certificate(&issuer, 500, NOW, &mut rng).await;
    let request = shop.request(300, &mut rng);
    let record = wallet.pay(&cert, &request, NOW, &mut rng);
    let receipt = shop.countersign(&record, &mut rng);
    shop.redeem(
        &*issuer,
        vec![RedemptionItem::Record(receipt)],
        NOW,
        &mut rng,
    )
    .await;
    let refund = signed_refund(
        &shop,
        RefundId::random(&mut rng),
        request.payload.request_id,
        250,
        &mut rng,
    );
    let answers = two_copies(&store, Read::Get("refund-totals"), |_| {
        let (issuer, refund) = (Arc::clone(&issuer), refund.clone());
        async move { issuer.refund(&refund, NOW).await }
    })
    .await;
    let [first, second] = answers.map(|a| a.unwrap());
    assert_eq!(first, second);
    assert_eq!(first.refunded_total, Amount::new(250, EUR));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_of_one_voucher_withdrawal_get_its_coins_though_the_first_took_the_balance() {
    let store = Interleaved::new(MemoryStore::new());
    let mut s = scene_over(Arc::clone(&store), 66).await;
    // The shop holds 17; the voucher is for 12: a second payment of it would not be covered.
    let request = s.paid_by_coins(&[10, 5, 2]).await;
    let voucher = s.voucher(request, 12);
    let (withdrawal, _, _) = s.voucher_withdrawal(&voucher, &[10, 2]);
    let (customer, merchant, outstanding) = s.money().await;
    let answers = two_copies(&store, Read::Balance, |n| {
        let (issuer, withdrawal) = (Arc::clone(&s.issuer), withdrawal.clone());
        async move {
            issuer
                .withdraw_voucher(&withdrawal, NOW, &mut crate::common::rng(n))
                .await
        }
    })
    .await;
    let [first, second] = answers.map(|a| a.unwrap());
    assert_eq!(first, second);
    assert_eq!(s.money().await, (customer, merchant - 12, outstanding + 12));
}
