//! The demo funding source that records its deposits in the record store
//! (`RecordedDemoFunding`): several issuer processes over one store (a cluster) collect a
//! deposit once and refuse its id with other details, whichever process is asked.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::sync::Arc;

use common::*;
use scrip_issuer::{
    funding_account, FundingError, FundingSource, Issuer, IssuerConfig, RecordedDemoFunding,
};
use scrip_stores::{ClaimId, Claimant, MemoryStore, RecordStore};
use scrip_tokens::fixtures::NOW;
use scrip_tokens::*;

type Shared = Arc<MemoryStore>;

/// An issuer process over the shared `store`, collecting with its own demo funding source
/// over the same store (what each `scrip-server` of a cluster has).
fn process(store: &Shared) -> Issuer<Shared, RecordedDemoFunding<Shared>> {
    Issuer::new(
        Arc::clone(store),
        RecordedDemoFunding::new(Arc::clone(store)),
        fixture_keyring(),
        IssuerConfig::default(),
    )
}

/// The store's demo-funding claim of `deposit`, if any.
async fn funding_claim(store: &Shared, deposit: DepositId) -> Option<scrip_stores::ExistingClaim> {
    let id = ClaimId::Custom {
        namespace: "demo-funding".into(),
        key: deposit.as_bytes().to_vec(),
    };
    store.claims(&[id]).await.unwrap().pop().unwrap()
}

#[tokio::test]
async fn a_deposit_sent_to_two_processes_is_collected_and_credited_once() {
    let store: Shared = Arc::new(MemoryStore::new());
    let mut rng = rng(1);
    // The account is opened through the kit's issuer over the same store.
    let wallet = RawWallet::open(&issuer(Arc::clone(&store)), 1, &mut rng).await;
    let (a, b) = (process(&store), process(&store));
    let request = wallet.deposit_request(1_000, &mut rng);
    let deposit = request.payload.deposit_id;

    // Process A collects and then dies before crediting; the device's retry reaches B.
    a.funding()
        .collect(deposit, wallet.account_id, eur(1_000))
        .await
        .unwrap();
    let first = funding_claim(&store, deposit).await.unwrap();
    assert_eq!(first.claimant, Claimant::Issuer);
    let record = b.deposit(&request, NOW, &mut rng).await.unwrap();
    // And once more through A (a lost answer): the same record.
    assert_eq!(a.deposit(&request, NOW, &mut rng).await.unwrap(), record);

    // Collected once: the one claim is still A's first one (B's collection repeated it).
    assert_eq!(funding_claim(&store, deposit).await, Some(first));
    assert_eq!(a.balance(wallet.account_id, EUR).await.unwrap(), 1_000);
    assert_eq!(
        store.balance(&funding_account(), EUR).await.unwrap(),
        -1_000
    );
}

#[tokio::test]
async fn a_deposit_id_reused_with_other_details_is_refused_by_every_process() {
    let store: Shared = Arc::new(MemoryStore::new());
    let (a, b) = (process(&store), process(&store));
    let mut rng = rng(2);
    let deposit = DepositId(random_uuid(&mut rng));
    let account = AccountId(random_uuid(&mut rng));
    a.funding()
        .collect(deposit, account, eur(500))
        .await
        .unwrap();
    // The same details again, through the other process: the same answer.
    b.funding()
        .collect(deposit, account, eur(500))
        .await
        .unwrap();
    // Another amount, another account, another currency: refused by either process,
    // though B never collected this deposit itself.
    for (account, amount) in [
        (account, eur(501)),
        (AccountId(random_uuid(&mut rng)), eur(500)),
        (account, Amount::new(500, Currency::USD)),
    ] {
        assert_eq!(
            b.funding().collect(deposit, account, amount).await,
            Err(FundingError::Mismatch)
        );
        assert_eq!(
            a.funding().collect(deposit, account, amount).await,
            Err(FundingError::Mismatch)
        );
    }
    // A new process over the same store (a restart) remembers too.
    assert_eq!(
        process(&store)
            .funding()
            .collect(deposit, account, eur(499))
            .await,
        Err(FundingError::Mismatch)
    );
}

#[tokio::test]
async fn a_store_that_cannot_record_the_deposit_makes_the_source_unavailable() {
    let store: Shared = Arc::new(MemoryStore::new());
    let funding = RecordedDemoFunding::new(Arc::clone(&store));
    store.close().await.unwrap();
    let mut rng = rng(3);
    let outcome = funding
        .collect(
            DepositId(random_uuid(&mut rng)),
            AccountId(random_uuid(&mut rng)),
            eur(10),
        )
        .await;
    assert!(
        matches!(outcome, Err(FundingError::Unavailable(_))),
        "{outcome:?}"
    );
}
