//! `PostgresStore` as several processes share it: striped accounts (no hot row, yet one
//! gap-free ledger per account) and [`ClusterState`]. Each "process" is a store of its
//! own, with its own pool and writer, connected to one schema of the throwaway server.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use scrip_stores::conformance::{at, customer, funding, outstanding, PostgresHarness};
use scrip_stores::{
    Claimant, ClusterState, CommitOutcome, Floor, KeyringEpoch, LedgerAccount, LedgerEntry,
    PostgresOptions, PostgresStore, Posting, PublishOutcome, RecordStore, Unit,
};
use scrip_tokens::{Amount, Currency, Timestamp};

const EUR: Currency = Currency::EUR;
/// The advisory lock `scrip_sequence_striped` takes (migration 1).
const SEQUENCER_LOCK: i64 = 7_236_481_001;

async fn connect(url: &str, striped: &[(LedgerAccount, u16)]) -> PostgresStore {
    PostgresStore::connect_with(
        url,
        PostgresOptions {
            striped_accounts: striped.to_vec(),
            ..PostgresOptions::default()
        },
    )
    .await
    .unwrap()
}

/// A plain connection to the harness's schema, for looking at the tables.
async fn raw(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

fn eur(n: u64) -> Amount {
    Amount::new(n, EUR)
}

/// `n` EUR cents from `from` to `to`, with a non-negative floor on `from` if `floored`.
fn transfer(from: LedgerAccount, to: LedgerAccount, n: u64, memo: &str, floored: bool) -> Unit {
    let floor = from.clone();
    let unit = Unit::new(Claimant::Issuer, at(0)).post(Posting::transfer(from, to, eur(n), memo));
    if floored {
        unit.floor(Floor::non_negative(floor, EUR))
    } else {
        unit
    }
}

async fn ledger(store: &impl RecordStore, account: &LedgerAccount) -> Vec<LedgerEntry> {
    let mut all = Vec::new();
    loop {
        let page = store
            .ledger_entries(account, EUR, all.last().map(|e: &LedgerEntry| e.seq), 100)
            .await
            .unwrap();
        if page.is_empty() {
            return all;
        }
        all.extend(page);
    }
}

/// Seqs 1, 2, 3 ... without a gap, each balance_after the previous one plus the delta, the
/// last one the account's balance.
async fn assert_consistent_ledger(store: &impl RecordStore, account: &LedgerAccount) -> usize {
    let entries = ledger(store, account).await;
    let mut balance = 0i128;
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e.seq, i as u64 + 1, "gap or disorder at entry {i}: {e:?}");
        balance += e.delta;
        assert_eq!(e.balance_after, balance, "entry {i}: {e:?}");
    }
    assert_eq!(store.balance(account, EUR).await.unwrap(), balance);
    entries.len()
}

async fn total(store: &impl RecordStore) -> i128 {
    store
        .balances(None, usize::MAX)
        .await
        .unwrap()
        .into_iter()
        .filter(|(_, c, _)| *c == EUR)
        .map(|(_, _, b)| b)
        .sum()
}

mod striping {
    use super::*;

    fn system_stripes() -> Vec<(LedgerAccount, u16)> {
        vec![(outstanding(), 8), (funding(), 8)]
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_processes_posting_to_striped_accounts_conserve_money_and_sequence_without_gaps() {
        let url = PostgresHarness::new().url().to_owned();
        let a = Arc::new(connect(&url, &system_stripes()).await);
        let b = Arc::new(connect(&url, &system_stripes()).await);
        let hot = outstanding();
        a.commit(transfer(funding(), hot.clone(), 100, "seed", false))
            .await
            .unwrap();
        // Both processes at once: credits into the hot account, and floored debits out of
        // it that must never take it below zero.
        let mut tasks = Vec::new();
        for (p, store) in [&a, &b].into_iter().enumerate() {
            for t in 0..6u128 {
                let store = Arc::clone(store);
                let hot = hot.clone();
                tasks.push(tokio::spawn(async move {
                    let mut committed = 0;
                    for i in 0..30 {
                        let unit = if i % 3 == 0 {
                            transfer(funding(), hot.clone(), 1, "in", false)
                        } else {
                            let to = customer(p as u128 * 100 + t);
                            transfer(hot.clone(), to, 2, "out", true)
                        };
                        match store.commit(unit).await.unwrap() {
                            CommitOutcome::Committed => committed += 1,
                            CommitOutcome::InsufficientFunds { balance_after, .. } => {
                                assert!(balance_after < 0)
                            }
                            other => panic!("unexpected {other:?}"),
                        }
                    }
                    committed
                }));
            }
        }
        let mut committed = 1;
        for t in tasks {
            committed += t.await.unwrap();
        }
        assert_eq!(total(&*a).await, 0);
        assert_eq!(total(&*b).await, 0);
        // Read through the other process than the one that seeded: the same ledger.
        assert_eq!(assert_consistent_ledger(&*b, &hot).await, committed);
        assert_eq!(ledger(&*a, &hot).await, ledger(&*b, &hot).await);
        for e in ledger(&*a, &hot).await {
            if e.memo == "out" {
                assert!(e.balance_after >= 0, "a floored debit below zero: {e:?}");
            }
        }
        assert_consistent_ledger(&*a, &funding()).await;
        // The writers spread over the stripes (a per-transaction stripe, not always 0).
        let used: i64 = raw(&url)
            .await
            .query_one(
                "SELECT count(*) FROM balances WHERE account = $1 AND postings > 0",
                &[&hot.key_bytes()],
            )
            .await
            .unwrap()
            .get(0);
        assert!(used > 1, "only {used} stripe rows of 8 were posted to");
    }

    /// The sequencer numbers entries in the order their units locked the account: a
    /// credit committed before a floored debit comes before it in the ledger, whichever
    /// process and connection each came from, even when the sequencer sees both at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn causally_ordered_commits_keep_their_order_in_a_striped_ledger() {
        let url = PostgresHarness::new().url().to_owned();
        let a = connect(&url, &system_stripes()).await;
        let b = connect(&url, &system_stripes()).await;
        let hot = outstanding();
        // Keep every sequencer waiting until all units are queued.
        let mut holder = raw(&url).await;
        let hold = holder.transaction().await.unwrap();
        hold.execute("SELECT pg_advisory_xact_lock($1)", &[&SEQUENCER_LOCK])
            .await
            .unwrap();
        for i in 0..20 {
            let credit = transfer(funding(), hot.clone(), 1, &format!("in {i}"), false);
            assert_eq!(a.commit(credit).await.unwrap(), CommitOutcome::Committed);
            let debit = transfer(hot.clone(), customer(1), 1, &format!("out {i}"), true);
            assert_eq!(b.commit(debit).await.unwrap(), CommitOutcome::Committed);
        }
        hold.commit().await.unwrap();
        let entries = ledger(&b, &hot).await;
        let memos: Vec<&str> = entries.iter().map(|e| e.memo.as_str()).collect();
        let expected: Vec<String> = (0..20)
            .flat_map(|i| [format!("in {i}"), format!("out {i}")])
            .collect();
        assert_eq!(memos, expected);
        assert!(entries.iter().all(|e| e.balance_after >= 0));
        assert_consistent_ledger(&a, &hot).await;
    }

    /// Read-your-writes across processes: a ledger read right after another process's
    /// commit shows it, without waiting for the background sequencer.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_ledger_read_shows_every_posting_committed_before_it() {
        let url = PostgresHarness::new().url().to_owned();
        let a = connect(&url, &system_stripes()).await;
        let b = connect(&url, &system_stripes()).await;
        for i in 0..20u64 {
            a.commit(transfer(funding(), outstanding(), 1, "in", false))
                .await
                .unwrap();
            let entries = b
                .ledger_entries(&outstanding(), EUR, Some(i), 10)
                .await
                .unwrap();
            assert_eq!(entries.len(), 1, "after commit {i}: {entries:?}");
            assert_eq!(
                (entries[0].seq, entries[0].balance_after),
                (i + 1, i as i128 + 1)
            );
        }
    }

    /// An account gets striped, then more stripes, then a smaller count is asked for:
    /// its ledger continues where it was, its balance stays the sum, floors still see all
    /// of it, and the stripe count never drops.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn striping_an_account_later_and_raising_its_stripes_keeps_balance_and_ledger() {
        let url = PostgresHarness::new().url().to_owned();
        let acct = customer(7);
        let stripes = || async {
            raw(&url)
                .await
                .query_opt(
                    "SELECT stripes FROM striped_accounts WHERE account = $1",
                    &[&acct.key_bytes()],
                )
                .await
                .unwrap()
                .map(|r| r.get::<_, i16>(0))
        };
        let mut expected = 0i128;
        for (round, count) in [None, Some(2u16), Some(8), Some(4), Some(8)]
            .into_iter()
            .enumerate()
        {
            let striped: Vec<_> = count.map(|n| (acct.clone(), n)).into_iter().collect();
            let store = connect(&url, &striped).await;
            for i in 0..5u64 {
                let n = 10 + round as u64 * 5 + i;
                store
                    .commit(transfer(funding(), acct.clone(), n, "in", false))
                    .await
                    .unwrap();
                expected += i128::from(n);
            }
            // A floored debit of one more than there is: refused, with the whole balance.
            let over = u64::try_from(expected + 1).unwrap();
            match store
                .commit(transfer(acct.clone(), funding(), over, "out", true))
                .await
                .unwrap()
            {
                CommitOutcome::InsufficientFunds { balance_after, .. } => {
                    assert_eq!(balance_after, -1, "round {round}")
                }
                other => panic!("round {round}: {other:?}"),
            }
            assert_eq!(store.balance(&acct, EUR).await.unwrap(), expected);
            assert_eq!(
                assert_consistent_ledger(&store, &acct).await,
                5 * (round + 1)
            );
            let listed: Vec<_> = store
                .balances(None, usize::MAX)
                .await
                .unwrap()
                .into_iter()
                .filter(|(a, _, _)| *a == acct)
                .collect();
            assert_eq!(listed, vec![(acct.clone(), EUR, expected)]);
            assert_eq!(total(&store).await, 0);
            let want = [None, Some(2), Some(8), Some(8), Some(8)][round];
            assert_eq!(stripes().await, want, "round {round}");
            store.close().await.unwrap();
        }
        // Spend it all down to the floor exactly: every stripe's share counted.
        let store = connect(&url, &[]).await;
        let all = u64::try_from(expected).unwrap();
        assert_eq!(
            store
                .commit(transfer(acct.clone(), funding(), all, "out", true))
                .await
                .unwrap(),
            CommitOutcome::Committed
        );
        assert_eq!(store.balance(&acct, EUR).await.unwrap(), 0);
        assert_consistent_ledger(&store, &acct).await;
    }

    /// Another process stripes an account while this one keeps posting to it: no unit
    /// straddles the change (one stripe count to lock, another to post), and no
    /// unstriped entry is numbered twice.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn striping_an_account_while_another_process_posts_to_it() {
        let url = PostgresHarness::new().url().to_owned();
        let acct = customer(9);
        let busy = Arc::new(connect(&url, &[]).await);
        busy.commit(transfer(funding(), acct.clone(), 1_000_000, "seed", false))
            .await
            .unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let tasks: Vec<_> = (0..4)
            .map(|t| {
                let (busy, stop, acct) = (Arc::clone(&busy), Arc::clone(&stop), acct.clone());
                tokio::spawn(async move {
                    let mut n = 0;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) || n < 20 {
                        let unit = if t % 2 == 0 {
                            transfer(funding(), acct.clone(), 3, "in", false)
                        } else {
                            transfer(acct.clone(), funding(), 2, "out", true)
                        };
                        assert_eq!(busy.commit(unit).await.unwrap(), CommitOutcome::Committed);
                        n += 1;
                    }
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let striping = connect(&url, &[(acct.clone(), 4)]).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let raising = connect(&url, &[(acct.clone(), 16)]).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in tasks {
            t.await.unwrap();
        }
        let entries = assert_consistent_ledger(&striping, &acct).await;
        assert!(entries > 80, "{entries} entries");
        assert_eq!(ledger(&raising, &acct).await, ledger(&busy, &acct).await);
        assert_eq!(total(&*busy).await, 0);
    }
}

mod cluster {
    use super::*;

    fn ms(n: u64) -> Timestamp {
        Timestamp::from_unix_millis(n)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_nonce_remembered_by_one_process_is_a_replay_for_another() {
        let url = PostgresHarness::new().url().to_owned();
        let a = connect(&url, &[]).await;
        let b = connect(&url, &[]).await;
        assert!(a.remember_nonce([1; 16], ms(1_000)).await.unwrap());
        assert!(!b.remember_nonce([1; 16], ms(5_000)).await.unwrap());
        assert!(!a.remember_nonce([1; 16], ms(1_000)).await.unwrap());
        assert!(b.remember_nonce([2; 16], ms(2_000)).await.unwrap());
        // Forgetting is strictly before: the nonce due at 2 000 stays.
        assert_eq!(a.forget_nonces(ms(1_000), u64::MAX).await.unwrap(), 0);
        assert_eq!(a.forget_nonces(ms(2_000), u64::MAX).await.unwrap(), 1);
        assert!(b.remember_nonce([1; 16], ms(9_000)).await.unwrap());
        assert!(!a.remember_nonce([2; 16], ms(9_000)).await.unwrap());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn forgetting_a_large_backlog_forgets_all_of_it_and_nothing_newer() {
        let url = PostgresHarness::new().url().to_owned();
        let store = connect(&url, &[]).await;
        // 25 000 due (more than two chunks of 10 000), 100 not yet.
        raw(&url)
            .await
            .execute(
                "INSERT INTO nonces (key, forget_at) \
                 SELECT uuid_send(gen_random_uuid()), CASE WHEN i <= 25000 THEN i ELSE 99999 END \
                 FROM generate_series(1, 25100) AS i",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(
            store.forget_nonces(ms(50_000), u64::MAX).await.unwrap(),
            25_000
        );
        assert_eq!(store.forget_nonces(ms(50_000), u64::MAX).await.unwrap(), 0);
        assert_eq!(
            store.forget_nonces(ms(100_000), u64::MAX).await.unwrap(),
            100
        );
    }

    /// The earliest `forget_at` left in the nonce table, and how many rows it holds.
    async fn oldest_left(client: &tokio_postgres::Client) -> (Option<i64>, i64) {
        let row = client
            .query_one("SELECT min(forget_at), count(*) FROM nonces", &[])
            .await
            .unwrap();
        (row.get(0), row.get(1))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn forgetting_stops_at_max_rows_oldest_first() {
        let url = PostgresHarness::new().url().to_owned();
        let store = connect(&url, &[]).await;
        let client = raw(&url).await;
        // 25 000 due at 1..=25 000 ms.
        client
            .execute(
                "INSERT INTO nonces (key, forget_at) \
                 SELECT uuid_send(gen_random_uuid()), i FROM generate_series(1, 25000) AS i",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(store.forget_nonces(ms(50_000), 0).await.unwrap(), 0);
        // More than one chunk of 10 000, and not a multiple of it: exactly that many, the
        // oldest ones.
        assert_eq!(
            store.forget_nonces(ms(50_000), 12_345).await.unwrap(),
            12_345
        );
        assert_eq!(oldest_left(&client).await, (Some(12_346), 12_655));
        assert_eq!(store.forget_nonces(ms(50_000), 7).await.unwrap(), 7);
        assert_eq!(oldest_left(&client).await, (Some(12_353), 12_648));
        // Fewer than asked: nothing due is left.
        assert_eq!(
            store.forget_nonces(ms(50_000), 20_000).await.unwrap(),
            12_648
        );
        assert_eq!(oldest_left(&client).await, (None, 0));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_holder_at_a_time_until_its_lease_expires() {
        let url = PostgresHarness::new().url().to_owned();
        let a = connect(&url, &[]).await;
        let b = connect(&url, &[]).await;
        let (one, two) = (uuid::Uuid::from_u128(1), uuid::Uuid::from_u128(2));
        let short = Duration::from_millis(300);
        assert!(a.try_lead("release", one, short).await.unwrap());
        assert!(!b.try_lead("release", two, short).await.unwrap());
        assert!(a.try_lead("release", one, short).await.unwrap());
        // Another job is another lease.
        assert!(b.try_lead("prune", two, short).await.unwrap());
        // Not renewed: it passes to the other holder once expired, and stays there.
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(b.try_lead("release", two, short).await.unwrap());
        assert!(!a.try_lead("release", one, short).await.unwrap());
        assert!(b.try_lead("release", two, short).await.unwrap());
        // A renewal runs from the renewal: 700 ms after it, a 1 s lease taken 1.4 s ago
        // still holds (wide margins: the machine may be busy).
        let long = Duration::from_secs(1);
        assert!(a.try_lead("rotate", one, long).await.unwrap());
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert!(a.try_lead("rotate", one, long).await.unwrap());
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert!(!b.try_lead("rotate", two, long).await.unwrap());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_released_lease_is_free_at_once_but_only_its_holder_releases_it() {
        let url = PostgresHarness::new().url().to_owned();
        let a = connect(&url, &[]).await;
        let b = connect(&url, &[]).await;
        let (one, two) = (uuid::Uuid::from_u128(1), uuid::Uuid::from_u128(2));
        let long = Duration::from_secs(600);
        assert!(a.try_lead("release", one, long).await.unwrap());
        assert!(a.try_lead("prune", one, long).await.unwrap());
        // Another holder's release of a lease it does not hold changes nothing.
        b.release_lead("release", two).await.unwrap();
        assert!(!b.try_lead("release", two, long).await.unwrap());
        assert!(a.try_lead("release", one, long).await.unwrap());
        // The holder's release frees it long before the lease would have run out, and
        // only that job's lease.
        a.release_lead("release", one).await.unwrap();
        assert!(b.try_lead("release", two, long).await.unwrap());
        assert!(!b.try_lead("prune", two, long).await.unwrap());
        // The former holder cannot free its successor's lease.
        a.release_lead("release", one).await.unwrap();
        assert!(!a.try_lead("release", one, long).await.unwrap());
        assert!(b.try_lead("release", two, long).await.unwrap());
        // Releasing a lease nobody holds, or a job never leased, is harmless.
        b.release_lead("release", two).await.unwrap();
        b.release_lead("release", two).await.unwrap();
        b.release_lead("never-leased", two).await.unwrap();
        assert!(a.try_lead("release", one, long).await.unwrap());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_candidates_get_one_lease() {
        let url = PostgresHarness::new().url().to_owned();
        let stores = [connect(&url, &[]).await, connect(&url, &[]).await];
        let stores = Arc::new(stores);
        let tasks: Vec<_> = (0..16u128)
            .map(|n| {
                let stores = Arc::clone(&stores);
                tokio::spawn(async move {
                    stores[(n % 2) as usize]
                        .try_lead("job", uuid::Uuid::from_u128(n), Duration::from_secs(60))
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut leaders = 0;
        for t in tasks {
            leaders += usize::from(t.await.unwrap());
        }
        assert_eq!(leaders, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn keyring_publication_is_compare_and_set() {
        let url = PostgresHarness::new().url().to_owned();
        let a = connect(&url, &[]).await;
        let b = connect(&url, &[]).await;
        let epoch = |epoch, f: u8| KeyringEpoch {
            epoch,
            fingerprint: [f; 32],
        };
        assert_eq!(a.keyring_epoch().await.unwrap(), None);
        assert_eq!(
            a.publish_keyring([1; 32], Some(1)).await.unwrap(),
            PublishOutcome::Stale { current: None }
        );
        assert_eq!(
            a.publish_keyring([1; 32], None).await.unwrap(),
            PublishOutcome::Current(epoch(1, 1))
        );
        assert_eq!(b.keyring_epoch().await.unwrap(), Some(epoch(1, 1)));
        assert_eq!(
            b.publish_keyring([2; 32], None).await.unwrap(),
            PublishOutcome::Stale {
                current: Some(epoch(1, 1))
            }
        );
        // The current keyring again, whatever it is compared with: no new epoch.
        for expected in [None, Some(1), Some(7)] {
            assert_eq!(
                b.publish_keyring([1; 32], expected).await.unwrap(),
                PublishOutcome::Current(epoch(1, 1))
            );
        }
        assert_eq!(
            b.publish_keyring([2; 32], Some(1)).await.unwrap(),
            PublishOutcome::Current(epoch(2, 2))
        );
        assert_eq!(a.keyring_epoch().await.unwrap(), Some(epoch(2, 2)));
        assert_eq!(
            a.publish_keyring([3; 32], Some(1)).await.unwrap(),
            PublishOutcome::Stale {
                current: Some(epoch(2, 2))
            }
        );
        // Back to an earlier keyring is a new epoch too.
        assert_eq!(
            a.publish_keyring([1; 32], Some(2)).await.unwrap(),
            PublishOutcome::Current(epoch(3, 1))
        );
        let history: Vec<i64> = raw(&url)
            .await
            .query("SELECT epoch FROM keyring_epochs ORDER BY epoch", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(history, vec![1, 2, 3]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn of_concurrent_publishers_over_one_epoch_one_wins() {
        let url = PostgresHarness::new().url().to_owned();
        let stores = Arc::new([connect(&url, &[]).await, connect(&url, &[]).await]);
        stores[0].publish_keyring([0; 32], None).await.unwrap();
        let tasks: Vec<_> = (1..=12u8)
            .map(|f| {
                let stores = Arc::clone(&stores);
                tokio::spawn(async move {
                    stores[usize::from(f % 2)]
                        .publish_keyring([f; 32], Some(1))
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut winners = Vec::new();
        for t in tasks {
            match t.await.unwrap() {
                PublishOutcome::Current(e) => winners.push(e),
                PublishOutcome::Stale { current } => assert_eq!(current.unwrap().epoch, 2),
            }
        }
        assert_eq!(winners.len(), 1, "{winners:?}");
        assert_eq!(winners[0].epoch, 2);
        assert_eq!(
            stores[1].keyring_epoch().await.unwrap(),
            Some(winners[0].clone())
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_cluster_clock_is_the_database_clock() {
        let url = PostgresHarness::new().url().to_owned();
        let store = connect(&url, &[]).await;
        let local = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as i128
        };
        let before = local();
        let theirs = i128::from(store.cluster_now().await.unwrap().as_unix_millis());
        let after = local();
        // The same machine's clock: within the round trip, give or take a millisecond of
        // rounding.
        assert!(
            before - 1 <= theirs && theirs <= after + 1,
            "{before} {theirs} {after}"
        );
        let later = store.cluster_now().await.unwrap();
        assert!(later.as_unix_millis() >= u64::try_from(theirs).unwrap());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_closed_store_refuses_cluster_calls() {
        let url = PostgresHarness::new().url().to_owned();
        let store = connect(&url, &[]).await;
        store.close().await.unwrap();
        assert!(matches!(
            store.remember_nonce([1; 16], ms(1)).await,
            Err(scrip_stores::StoreError::Closed)
        ));
        assert!(matches!(
            store.cluster_now().await,
            Err(scrip_stores::StoreError::Closed)
        ));
    }
}

/// TLS to the database: verified against the operator's CA, refused otherwise.
mod tls {
    use scrip_stores::conformance::{coin, ThrowawayPostgres};
    use scrip_stores::{
        Claimant, CommitOutcome, PostgresOptions, PostgresStore, PostgresTls, RecordStore,
        StoreError, Unit,
    };
    use scrip_tokens::{ContentDigest, MerchantId, Timestamp};

    fn options(tls: PostgresTls) -> PostgresOptions {
        PostgresOptions {
            tls,
            ..PostgresOptions::default()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_store_talks_to_a_tls_only_server_only_over_verified_tls() {
        let (server, files) = ThrowawayPostgres::with_tls();
        let url = server.fresh_schema_url();

        // The server takes TCP connections only over TLS: a plain store cannot connect.
        assert!(matches!(
            PostgresStore::connect_with(&url, options(PostgresTls::Off)).await,
            Err(StoreError::Database { .. })
        ));
        // A store that trusts another CA refuses the server's certificate.
        let refused = PostgresStore::connect_with(
            &url,
            options(PostgresTls::VerifyWithCaFile(files.other_ca_file.clone())),
        )
        .await;
        assert!(
            matches!(refused, Err(StoreError::Database { .. })),
            "a certificate from an unknown CA was accepted"
        );
        // A CA file that is not there is the operator's error, said as such.
        assert!(matches!(
            PostgresStore::connect_with(
                &url,
                options(PostgresTls::VerifyWithCaFile(
                    files.ca_file.with_file_name("missing.pem")
                )),
            )
            .await,
            Err(StoreError::DatabaseTls(_))
        ));

        // With the right CA it is a store like any other.
        let store = PostgresStore::connect_with(
            &url,
            options(PostgresTls::VerifyWithCaFile(files.ca_file.clone())),
        )
        .await
        .unwrap();
        let merchant = Claimant::Merchant(MerchantId(uuid::Uuid::from_u128(1)));
        let unit = Unit::new(merchant.clone(), Timestamp::from_unix_millis(1_000))
            .claim(coin(1), ContentDigest::of(b"payment"));
        assert_eq!(store.commit(unit).await.unwrap(), CommitOutcome::Committed);
        let held = store.claims(&[coin(1)]).await.unwrap();
        assert_eq!(held[0].as_ref().map(|c| c.claimant.clone()), Some(merchant));
        store.close().await.unwrap();
    }
}
