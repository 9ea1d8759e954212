//! A merchant takes the coin payments it accepted as coins (issue 20): a swap instead of
//! account credit, the new coins kept in a wallet, and paid to another merchant offline.
//! Endorsement and double-spend rules are those of redemption: the customer's payment
//! shows settled, another merchant redeeming the same coins finds them spent, a take whose
//! coins were spent elsewhere goes back to the queue whole and the next sync gives each
//! payment its outcome, a take whose answer was lost is sent again and applied once, and
//! a take the issuer refuses is cancelled with its payments queued again.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use async_trait::async_trait;
use common::*;
use scrip_issuer::api::CoinPaymentStatus;
use scrip_merchant::{ClientError, IssuerClient, MerchantError, QueuedPayment};
use scrip_stores::{LedgerAccount, RecordStore};
use scrip_tokens::fixtures::NOW;
use scrip_tokens::*;
use scrip_wallet::{PayWith, SwapResult};

/// The endorsed coin payment inside a receipt reply.
fn endorsed(reply: &MerchantReply) -> EndorsedCoinPayment {
    match reply {
        MerchantReply::Receipt(PaymentReceipt::Coins(e)) => e.clone(),
        other => panic!("expected a coin receipt, got {other:?}"),
    }
}

async fn credited(issuer: &TestIssuer, merchant: MerchantId) -> i128 {
    issuer
        .store()
        .balance(&LedgerAccount::Merchant(merchant), EUR)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_merchant_takes_coin_payments_as_coins_and_pays_another_merchant_with_them() {
    let issuer = issuer();
    let client = client(&issuer, NOW);
    let mut customer = Phone::open(&issuer, 1, 1_000, 1).await;
    customer.withdraw_blind(&issuer, &[10, 5, 2]).await;
    customer.certificate(&issuer, up_to(500), NOW).await;
    let a = shop(&issuer, 1, 10_000).await;
    let b = shop(&issuer, 2, 10_000).await;
    let first = pay(&mut customer, &a, 15, PayWith::Coins, NOW).await;
    let second = pay(&mut customer, &a, 2, PayWith::Coins, NOW).await;
    assert!(is_receipt(
        &pay(&mut customer, &a, 20, PayWith::Record, NOW).await
    ));

    // The merchant's wallet: not an account, just a purse.
    let mut purse = Phone::new(&issuer, 3, 3);
    let total = a.coins_to_take().await.unwrap().unwrap();
    assert_eq!(total, eur(17));
    let outputs = purse
        .wallet
        .swap_outputs(total, NOW, &mut purse.rng)
        .unwrap();
    let outputs = purse.send(outputs);
    let outcome = a
        .take_coins(&client, &outputs, NOW, &mut rng(1))
        .await
        .unwrap();
    let result = purse
        .wallet
        .on_merchant_swap(&outputs, &outcome, NOW)
        .unwrap();
    assert!(matches!(result, SwapResult::Swapped { .. }), "{result:?}");
    assert_eq!(purse.wallet.coin_total(EUR), eur(17));
    // The coin payments left the queue as taken; the record still waits for a sync.
    let taken = a.taken(10).await.unwrap();
    assert_eq!(taken.len(), 2);
    assert_eq!(a.pending(10).await.unwrap().len(), 1);
    assert_eq!(a.unsettled().await.unwrap(), eur(20));
    // The customer sees both payments settled; the merchant was not credited for them.
    for reply in [&first, &second] {
        let state = issuer.coin_payment_state(&endorsed(reply)).await.unwrap();
        assert!(
            matches!(state.state, CoinPaymentStatus::Settled { .. }),
            "{state:?}"
        );
    }
    let a_id = a.certificate().payload.merchant_id;
    assert_eq!(credited(&issuer, a_id).await, 0);

    // Offline, the merchant pays another merchant with the coins it took.
    let reply = pay(&mut purse, &b, 12, PayWith::Coins, NOW).await;
    assert!(is_receipt(&reply), "{reply:?}");
    assert_eq!(purse.wallet.coin_total(EUR), eur(5));
    // Online again: both settle, each paid once.
    let synced = b.sync(&client, NOW, &mut rng(2)).await.unwrap();
    assert_eq!(synced.accepted, 1);
    let synced = a.sync(&client, NOW, &mut rng(3)).await.unwrap();
    assert_eq!(synced.accepted, 1);
    assert_eq!(
        credited(&issuer, b.certificate().payload.merchant_id).await,
        12
    );
    assert_eq!(credited(&issuer, a_id).await, 20);
    // Nothing is left to take.
    assert_eq!(a.coins_to_take().await.unwrap(), None);
    assert!(matches!(
        a.take_coins(&client, &outputs, NOW, &mut rng(4)).await,
        Err(MerchantError::NothingToTake)
    ));
}

/// Answers every take, then loses the answer: what a dropped connection does.
struct LosesAnswers(InProcess);

#[async_trait]
impl IssuerClient for LosesAnswers {
    async fn key_directory(&self) -> Result<SignedKeyDirectory, ClientError> {
        self.0.key_directory().await
    }
    async fn redeem(&self, batch: &RedemptionBatch) -> Result<RedemptionReport, ClientError> {
        self.0.redeem(batch).await
    }
    async fn revocations(&self, since: Option<u64>) -> Result<RevocationList, ClientError> {
        self.0.revocations(since).await
    }
    async fn merchant_swap(
        &self,
        request: &MerchantSwapRequest,
    ) -> Result<SwapReceipt, ClientError> {
        self.0.merchant_swap(request).await?;
        Err(ClientError::Transport("connection reset".into()))
    }
}

#[tokio::test]
async fn a_take_whose_answer_is_lost_is_sent_again_and_applied_once() {
    let issuer = issuer();
    let mut customer = Phone::open(&issuer, 1, 1_000, 4).await;
    customer.withdraw_blind(&issuer, &[10, 5]).await;
    let a = shop(&issuer, 1, 10_000).await;
    pay(&mut customer, &a, 15, PayWith::Coins, NOW).await;
    let mut purse = Phone::new(&issuer, 3, 5);
    let outputs = purse
        .wallet
        .swap_outputs(eur(15), NOW, &mut purse.rng)
        .unwrap();
    let outputs = purse.send(outputs);
    let lossy = LosesAnswers(client(&issuer, NOW));
    assert!(matches!(
        a.take_coins(&lossy, &outputs, NOW, &mut rng(5)).await,
        Err(MerchantError::Client(ClientError::Transport(_)))
    ));
    // The take is pending, its payment out of the queue: a sync does not upload it.
    assert_eq!(a.pending_takes().await.unwrap().len(), 1);
    assert!(a.pending(10).await.unwrap().is_empty());
    assert_eq!(
        a.sync(&client(&issuer, NOW), NOW, &mut rng(6))
            .await
            .unwrap()
            .accepted,
        0
    );
    // Both sides restart; online again, the take is sent again: the same signatures.
    purse.crash_and_restart();
    assert_eq!(purse.wallet.pending_swap_outputs(), vec![outputs.clone()]);
    let outcomes = a.resume_takes(&client(&issuer, NOW), NOW).await.unwrap();
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0].0, outputs.request_key);
    purse
        .wallet
        .on_merchant_swap(&outputs, outcomes[0].1.as_ref().unwrap(), NOW)
        .unwrap();
    assert_eq!(purse.wallet.coin_total(EUR), eur(15));
    assert!(a.pending_takes().await.unwrap().is_empty());
    assert_eq!(a.taken(10).await.unwrap().len(), 1);
    assert_eq!(a.unsettled().await.unwrap(), eur(0));
}

#[tokio::test]
async fn a_take_holding_coins_spent_elsewhere_goes_back_to_the_queue_for_the_sync() {
    let issuer = issuer();
    let client = client(&issuer, NOW);
    let mut customer = Phone::open(&issuer, 1, 1_000, 7).await;
    customer.withdraw_blind(&issuer, &[10, 5, 2]).await;
    let a = shop(&issuer, 1, 10_000).await;
    customer.save();
    let backup = customer.saved.as_ref().unwrap().bytes().to_vec();
    let first = pay(&mut customer, &a, 15, PayWith::Coins, NOW).await;
    pay(&mut customer, &a, 2, PayWith::Coins, NOW).await;
    // The customer restores a backup and spends the ten again at another merchant, which
    // redeems it first.
    let mut clone = Phone::new(&issuer, 1, 8);
    clone.wallet = scrip_wallet::Wallet::load(&backup, &customer.storage_key).unwrap();
    let cheat = Shop::register(&issuer, 3, &mut rng(9)).await;
    let ten: Vec<Coin> = clone
        .wallet
        .coins()
        .iter()
        .filter(|c| c.amount() == eur(10))
        .cloned()
        .collect();
    let item = RedemptionItem::Coins(cheat.endorse(ten.clone(), &mut rng(10)));
    cheat.redeem(&issuer, vec![item], NOW, &mut rng(11)).await;

    let mut purse = Phone::new(&issuer, 3, 12);
    let outputs = purse
        .wallet
        .swap_outputs(eur(17), NOW, &mut purse.rng)
        .unwrap();
    let outputs = purse.send(outputs);
    let outcome = a
        .take_coins(&client, &outputs, NOW, &mut rng(13))
        .await
        .unwrap();
    assert!(
        matches!(&outcome, SwapOutcome::DoubleSpent { coins, .. } if coins == &vec![ten[0].id()]),
        "{outcome:?}"
    );
    let result = purse
        .wallet
        .on_merchant_swap(&outputs, &outcome, NOW)
        .unwrap();
    assert!(matches!(result, SwapResult::DoubleSpent { .. }));
    assert_eq!(purse.wallet.coin_total(EUR), eur(0));
    // Nothing was claimed: both payments are back in the queue; the sync settles the 15
    // double spent and the 2 accepted, as if they had never been taken.
    assert_eq!(a.pending(10).await.unwrap().len(), 2);
    assert_eq!(
        a.take_status(outputs.request_key).await.unwrap(),
        Some(scrip_merchant::TakeStatus::Answered(outcome.clone()))
    );
    let synced = a.sync(&client, NOW, &mut rng(14)).await.unwrap();
    assert_eq!((synced.accepted, synced.double_spent), (1, 1));
    let settled = a.settlements(10).await.unwrap();
    let spent = settled
        .iter()
        .find(|s| s.payment.amount == eur(15))
        .unwrap();
    assert!(matches!(
        spent.outcome,
        RedemptionOutcome::DoubleSpent { .. }
    ));
    assert_eq!(
        issuer
            .coin_payment_state(&endorsed(&first))
            .await
            .unwrap()
            .state,
        CoinPaymentStatus::DoubleSpent {
            first_redeemed_at: NOW,
            coins: vec![ten[0].id()],
        }
    );
    assert_eq!(a.coins_to_take().await.unwrap(), None);
    assert_eq!(a.unsettled().await.unwrap(), eur(0));
}

/// A take the issuer refuses (here: a payment the merchant's sync settled after the take
/// was signed, `already_redeemed`) is cancelled at once: the payments not settled go back
/// to the queue, nothing is lost, and the wallet drops its outputs.
#[tokio::test]
async fn a_refused_take_is_cancelled_and_its_unsettled_payments_queued_again() {
    let issuer = issuer();
    let client = client(&issuer, NOW);
    let mut customer = Phone::open(&issuer, 1, 1_000, 20).await;
    customer.withdraw_blind(&issuer, &[10, 5]).await;
    let a = shop(&issuer, 1, 10_000).await;
    let first = pay(&mut customer, &a, 10, PayWith::Coins, NOW).await;
    pay(&mut customer, &a, 5, PayWith::Coins, NOW).await;
    let mut purse = Phone::new(&issuer, 3, 21);
    let outputs = purse
        .wallet
        .swap_outputs(eur(15), NOW, &mut purse.rng)
        .unwrap();
    let outputs = purse.send(outputs);
    let request = a
        .take_coins_request(&outputs, NOW, &mut rng(22))
        .await
        .unwrap();
    // Meanwhile the first payment was redeemed for credit (an upload of it from before
    // the take, whose answer the terminal never applied).
    let queued = QueuedPayment {
        item: RedemptionItem::Coins(endorsed(&first)),
        amount: eur(10),
        accepted_at: NOW,
    };
    let batch = a
        .terminal()
        .batch(vec![queued], NOW, &mut rng(23))
        .unwrap()
        .unwrap();
    let report = issuer.redeem(&batch, NOW).await.unwrap();
    assert!(matches!(
        report.outcomes[0],
        RedemptionOutcome::Accepted { .. }
    ));
    let e = a.resume_takes(&client, NOW).await.unwrap();
    assert_eq!(e.len(), 1);
    assert!(
        matches!(
            &e[0].1,
            Err(MerchantError::Client(ClientError::Refused { code, .. }))
                if *code == ReasonCode::AlreadyRedeemed
        ),
        "{:?}",
        e[0].1
    );
    assert_eq!(
        a.take_status(request.payload.request_key).await.unwrap(),
        Some(scrip_merchant::TakeStatus::Cancelled)
    );
    assert!(a.pending_takes().await.unwrap().is_empty());
    // Both payments are queued again; the sync answers each.
    assert_eq!(a.pending(10).await.unwrap().len(), 2);
    let synced = a.sync(&client, NOW, &mut rng(24)).await.unwrap();
    assert_eq!((synced.accepted, synced.already_accepted), (1, 1));
    purse.wallet.cancel_swap(&outputs).unwrap();
    assert!(purse.wallet.pending_swap_outputs().is_empty());
}
