//! Swaps (issue 20) on every store backend: memory, file, redb and PostgreSQL (a throwaway
//! server the test starts itself). A swap claims the coins handed in and signs the new
//! ones in one unit: a retry after a lost answer gets the same signatures (after a
//! restart too), one spent coin leaves everything unclaimed, and of 50 concurrent swaps
//! and redemptions of one coin exactly one wins. Also: what is refused before anything is
//! read or signed, refresh from a keyset that stopped issuing, the fee hook, and the fraud
//! log for identified coins handed in twice.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::sync::Arc;

use common::*;
use scrip_issuer::api::FraudKind;
use scrip_issuer::{
    coins_outstanding_account, swap_fees_account, IssuerConfig, IssuerError, KeyringConfig,
};
use scrip_stores::conformance::Harness;
use scrip_stores::{ClaimId, Claimant, ExistingClaim, LedgerAccount, RecordStore};
use scrip_tokens::fixtures::NOW;
use scrip_tokens::*;

/// Expands each test once per backend.
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(scrip_stores::conformance::MemoryHarness).await; })*
        }
        mod file {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(scrip_stores::conformance::FileHarness::new()).await; })*
        }
        mod redb {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(scrip_stores::conformance::RedbHarness::new()).await; })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(scrip_stores::conformance::PostgresHarness::new()).await; })*
        }
    };
}

on_every_backend!(
    a_swap_whose_answer_is_lost_gets_the_same_signatures_again,
    one_spent_coin_leaves_the_whole_swap_unclaimed,
    of_50_concurrent_swaps_and_redemptions_of_one_coin_exactly_one_wins,
    a_merchant_takes_coin_payments_as_coins_under_the_rules_of_redemption,
    identified_coins_are_swapped_only_by_their_holders_device,
    a_lost_devices_coins_wait_for_reissue_and_no_other_device_swaps_them,
);

/// Who holds `coin`'s spend-id claim, if anyone.
async fn claim_of(store: &impl RecordStore, coin: &Coin) -> Option<ExistingClaim> {
    store
        .claims(&[ClaimId::Coin(coin.spend_id().unwrap())])
        .await
        .unwrap()
        .pop()
        .flatten()
}

async fn coins_outstanding(store: &impl RecordStore) -> i128 {
    store
        .balance(&coins_outstanding_account(), EUR)
        .await
        .unwrap()
}

fn swapped(outcome: &SwapOutcome) -> &[BlindSignature] {
    match outcome {
        SwapOutcome::Swapped { signatures, .. } => signatures,
        other => panic!("expected swapped, got {other:?}"),
    }
}

/// The answer is lost: the holder sends the very same request again, and again after the
/// issuer restarted (durable stores). Same signatures each time; the coins are claimed by
/// the swap's holder once; coins outstanding did not move; the new coins verify and spend.
async fn a_swap_whose_answer_is_lost_gets_the_same_signatures_again<H: Harness>(h: H) {
    let mut rng = rng(1);
    let issuer = issuer(h.open());
    let wallet = RawWallet::open(&issuer, 1, &mut rng).await;
    wallet.deposit(&issuer, 100, &mut rng).await;
    let coins = wallet.withdraw_blind(&issuer, &[10, 5, 2], &mut rng).await;
    let coins_in = coins.clone();
    let keyset = keyset(&directory(&issuer));
    let (request, pending) = swap_request(&keyset, coins_in.clone(), &[5, 5, 5, 2], &mut rng);
    let before = coins_outstanding(issuer.store()).await;

    let first = issuer.swap(&request, NOW, &mut rng).await.unwrap();
    assert_eq!(first.request_digest, codec::digest(&request).unwrap());
    let signatures = swapped(&first.outcome).to_vec();
    let later = NOW.saturating_add(MINUTE);
    let again = issuer.swap(&request, later, &mut rng).await.unwrap();
    assert_eq!(swapped(&again.outcome), signatures);
    assert_eq!(coins_outstanding(issuer.store()).await, before);

    let issuer = if H::DURABLE {
        issuer.store().close().await.unwrap();
        drop(issuer);
        common::issuer(h.open())
    } else {
        issuer
    };
    let after_restart = issuer.swap(&request, later, &mut rng).await.unwrap();
    assert_eq!(swapped(&after_restart.outcome), signatures);
    for coin in &coins_in {
        let held = claim_of(issuer.store(), coin).await.unwrap();
        assert_eq!(held.claimant, Claimant::Holder);
        assert_eq!(held.claimed_at, NOW);
    }
    assert_eq!(coins_outstanding(issuer.store()).await, before);

    // The new coins are real money: a merchant redeems them; the old ones are spent.
    let response = BlindWithdrawalResponse {
        keyset_id: keyset.id(),
        signatures,
    };
    let new = finalize(&keyset, &pending, &response);
    for coin in &new {
        coin.verify(&directory(&issuer), NOW).unwrap();
    }
    let shop = Shop::register(&issuer, 1, &mut rng).await;
    let outcomes = shop
        .redeem(
            &issuer,
            vec![
                RedemptionItem::Coins(shop.endorse(new, &mut rng)),
                RedemptionItem::Coins(shop.endorse(coins, &mut rng)),
            ],
            NOW,
            &mut rng,
        )
        .await;
    assert_eq!(
        outcomes[0],
        RedemptionOutcome::Accepted { credited: eur(17) }
    );
    assert!(matches!(
        &outcomes[1],
        RedemptionOutcome::DoubleSpent { coins, first_redeemed_at }
            if coins.len() == 3 && *first_redeemed_at == NOW
    ));

    // The request key with anything else is refused; the key's swap stays as it was.
    let (other, _) = swap_request(&keyset, coins_in, &[10, 5, 1, 1], &mut rng);
    let reused = SwapRequest {
        request_key: request.request_key,
        ..other
    };
    assert!(matches!(
        issuer.swap(&reused, later, &mut rng).await,
        Err(IssuerError::IdempotencyKeyReused)
    ));
}

/// All or nothing: a swap holding one coin spent before claims nothing and signs nothing;
/// the answer names that coin and when it was spent. The other coins swap afterwards.
async fn one_spent_coin_leaves_the_whole_swap_unclaimed<H: Harness>(h: H) {
    let mut rng = rng(2);
    let issuer = issuer(h.open());
    let wallet = RawWallet::open(&issuer, 1, &mut rng).await;
    wallet.deposit(&issuer, 100, &mut rng).await;
    let coins = wallet.withdraw_blind(&issuer, &[10, 5, 2], &mut rng).await;
    let shop = Shop::register(&issuer, 1, &mut rng).await;
    let spent_at = NOW.saturating_add(MINUTE);
    let item = RedemptionItem::Coins(shop.endorse(vec![coins[1].clone()], &mut rng));
    shop.redeem(&issuer, vec![item], spent_at, &mut rng).await;
    let keyset = keyset(&directory(&issuer));
    let (request, _) = swap_request(&keyset, coins.clone(), &[10, 5, 2], &mut rng);
    let answer = issuer
        .swap(&request, spent_at.saturating_add(MINUTE), &mut rng)
        .await
        .unwrap();
    assert_eq!(
        answer.outcome,
        SwapOutcome::DoubleSpent {
            first_redeemed_at: spent_at,
            coins: vec![coins[1].id()],
        }
    );
    let claims = issuer
        .store()
        .claims(&[
            ClaimId::Coin(coins[0].spend_id().unwrap()),
            ClaimId::Coin(coins[2].spend_id().unwrap()),
        ])
        .await
        .unwrap();
    assert_eq!(claims, vec![None, None]);
    // Blind coins name nobody: nothing for the fraud log.
    assert!(issuer.fraud_log(None, 10).await.unwrap().is_empty());

    let rest = vec![coins[0].clone(), coins[2].clone()];
    let (request, _) = swap_request(&keyset, rest, &[5, 5, 2], &mut rng);
    let answer = issuer.swap(&request, spent_at, &mut rng).await.unwrap();
    assert_eq!(swapped(&answer.outcome).len(), 3);
}

/// One coin, 50 concurrent attempts: 25 swaps (each its own request) and 25 redemptions
/// (each its own payment, by four merchants). Exactly one is done; every other redemption
/// is `double_spent`, every other swap `double_spent` or `contended` (a swap of the coin
/// was in flight: nothing signed in parallel); the money moved once.
async fn of_50_concurrent_swaps_and_redemptions_of_one_coin_exactly_one_wins<H: Harness>(h: H) {
    let mut rng = rng(3);
    let issuer = Arc::new(issuer(h.open()));
    let wallet = RawWallet::open(&issuer, 1, &mut rng).await;
    wallet.deposit(&issuer, 100, &mut rng).await;
    let coin = wallet
        .withdraw_blind(&issuer, &[10], &mut rng)
        .await
        .remove(0);
    let keyset = keyset(&directory(&issuer));
    let mut shops = Vec::new();
    for n in 1..=4 {
        shops.push(Shop::register(&issuer, n, &mut rng).await);
    }
    let outstanding = coins_outstanding(issuer.store()).await;
    let mut tasks = Vec::new();
    for i in 0..50u64 {
        let issuer = Arc::clone(&issuer);
        if i % 2 == 0 {
            let (request, _) = swap_request(&keyset, vec![coin.clone()], &[5, 5], &mut rng);
            tasks.push(tokio::spawn(async move {
                let mut rng = common::rng(100 + i);
                match issuer.swap(&request, NOW, &mut rng).await {
                    Ok(answer) => matches!(answer.outcome, SwapOutcome::Swapped { .. }),
                    // Another swap of the coin was in flight in this process.
                    Err(IssuerError::Contended { .. }) => false,
                    Err(e) => panic!("{e}"),
                }
            }));
        } else {
            let shop = &shops[(i as usize / 2) % shops.len()];
            let batch = shop.batch(
                vec![RedemptionItem::Coins(
                    shop.endorse(vec![coin.clone()], &mut rng),
                )],
                &mut rng,
            );
            tasks.push(tokio::spawn(async move {
                let report = issuer.redeem(&batch, NOW).await.unwrap();
                match &report.outcomes[0] {
                    RedemptionOutcome::Accepted { .. } => true,
                    RedemptionOutcome::DoubleSpent { .. } => false,
                    other => panic!("unexpected {other:?}"),
                }
            }));
        }
    }
    let mut winners = Vec::new();
    for (i, task) in tasks.into_iter().enumerate() {
        if task.await.unwrap() {
            winners.push(i);
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    let merchants: i128 = {
        let mut total = 0;
        for shop in &shops {
            total += issuer
                .store()
                .balance(&LedgerAccount::Merchant(shop.id()), EUR)
                .await
                .unwrap();
        }
        total
    };
    let held = claim_of(issuer.store(), &coin).await.unwrap();
    if winners[0] % 2 == 0 {
        // A swap won: no merchant was paid, the value is still outstanding as new coins.
        assert_eq!(held.claimant, Claimant::Holder);
        assert_eq!(merchants, 0);
        assert_eq!(coins_outstanding(issuer.store()).await, outstanding);
    } else {
        assert!(matches!(held.claimant, Claimant::Merchant(_)));
        assert_eq!(merchants, 10);
        assert_eq!(coins_outstanding(issuer.store()).await, outstanding - 10);
    }
}

/// Everything refused before a read or a signature leaves the coins unclaimed: outputs
/// worth more or less than the coins, a forged coin, a coin listed twice, no coins, no
/// outputs, too many outputs, an unknown denomination, a keyset that does not issue.
#[tokio::test]
async fn malformed_swaps_are_refused_and_claim_nothing() {
    let mut rng = rng(4);
    let issuer = issuer(scrip_stores::MemoryStore::new());
    let wallet = RawWallet::open(&issuer, 1, &mut rng).await;
    wallet.deposit(&issuer, 1_000, &mut rng).await;
    let coins = wallet.withdraw_blind(&issuer, &[10, 5], &mut rng).await;
    let keyset = keyset(&directory(&issuer));
    let refuse = |request: SwapRequest, code: ReasonCode| {
        let issuer = &issuer;
        async move {
            let mut rng = common::rng(40);
            match issuer.swap(&request, NOW, &mut rng).await {
                Err(e) => assert_eq!(e.code(), code, "{e}"),
                Ok(answer) => panic!("expected {code:?}, got {answer:?}"),
            }
        }
    };
    refuse(
        swap_request(&keyset, coins.clone(), &[10, 10], &mut rng).0,
        ReasonCode::AmountMismatch,
    )
    .await;
    refuse(
        swap_request(&keyset, coins.clone(), &[10], &mut rng).0,
        ReasonCode::AmountMismatch,
    )
    .await;
    let mut forged = coins.clone();
    if let Coin::Blind(c) = &mut forged[1] {
        c.randomizer[0] ^= 1;
    }
    refuse(
        swap_request(&keyset, forged, &[10, 5], &mut rng).0,
        ReasonCode::BadSignature,
    )
    .await;
    refuse(
        swap_request(
            &keyset,
            vec![coins[0].clone(), coins[0].clone()],
            &[10, 10],
            &mut rng,
        )
        .0,
        ReasonCode::DuplicateCoin,
    )
    .await;
    refuse(
        swap_request(&keyset, Vec::new(), &[5], &mut rng).0,
        ReasonCode::InvalidField,
    )
    .await;
    refuse(
        swap_request(&keyset, coins.clone(), &[], &mut rng).0,
        ReasonCode::InvalidField,
    )
    .await;
    refuse(
        swap_request(&keyset, coins.clone(), &[1; 201], &mut rng).0,
        ReasonCode::InvalidField,
    )
    .await;
    let mut odd = swap_request(&keyset, coins.clone(), &[10, 5], &mut rng).0;
    odd.outputs[1].0 = 3;
    odd.outputs[0].0 = 12;
    refuse(odd, ReasonCode::UnknownDenomination).await;
    let mut elsewhere = swap_request(&keyset, coins.clone(), &[10, 5], &mut rng).0;
    elsewhere.keyset_id = KeysetId([9; 32]);
    refuse(elsewhere, ReasonCode::UnknownKeyset).await;
    for coin in &coins {
        assert_eq!(claim_of(issuer.store(), coin).await, None);
    }
}

/// Refresh: coins of a keyset that no longer issues swap into the current keyset, with
/// its other denominations, until the old keyset's acceptance window ends; after it they
/// are refused `keyset_expired`, and no swap ever signs with a keyset that stopped issuing.
#[tokio::test]
async fn coins_of_a_keyset_that_stopped_issuing_refresh_into_the_current_one() {
    let mut rng = rng(5);
    let issuer = issuer(scrip_stores::MemoryStore::new());
    let wallet = RawWallet::open(&issuer, 1, &mut rng).await;
    wallet.deposit(&issuer, 1_000, &mut rng).await;
    let old_coins = wallet.withdraw_blind(&issuer, &[10, 5, 5], &mut rng).await;
    let old = keyset(&directory(&issuer));

    // A new keyset of 1 and 20 opens in an hour; the old one keeps accepting coins until
    // its window ends (NOW + 180 days).
    let from = NOW.saturating_add(HOUR);
    let mut keyring = fixture_keyring();
    let config = KeyringConfig {
        denominations: Vec::new(),
        key_lifetime: DAY * 365,
        keyset_issue_period: DAY * 200,
        keyset_redeem_grace: DAY * 30,
        rsa_bits: scrip_tokens::keys::DEFAULT_RSA_BITS,
    };
    let new_id = keyring
        .add_keyset(EUR, &[1, 20], &config, from, &mut rng)
        .unwrap();
    issuer.replace_keyring(keyring);
    let near_end = NOW.saturating_add(DAY * 175);
    let directory = issuer.keys().directory(near_end).unwrap();
    let current = directory.current_keyset(EUR, near_end).unwrap().clone();
    assert_eq!(current.id(), new_id);

    let (request, pending) = swap_request(&current, old_coins[..2].to_vec(), &[1; 15], &mut rng);
    let answer = issuer.swap(&request, near_end, &mut rng).await.unwrap();
    let response = BlindWithdrawalResponse {
        keyset_id: current.id(),
        signatures: swapped(&answer.outcome).to_vec(),
    };
    for coin in finalize(&current, &pending, &response) {
        assert_eq!(coin.keyset_id(), Some(new_id));
        coin.verify(&directory, near_end).unwrap();
    }

    // After the old window: the refresh's answer, if lost, is still there for its retry;
    // a coin of the old keyset not refreshed is worth nothing.
    let after = old.validity().not_after.saturating_add(MINUTE);
    let again = issuer.swap(&request, after, &mut rng).await.unwrap();
    assert_eq!(again.outcome, answer.outcome);
    let (late, _) = swap_request(&current, old_coins[2..].to_vec(), &[1; 5], &mut rng);
    let e = issuer.swap(&late, after, &mut rng).await.unwrap_err();
    assert_eq!(e.code(), ReasonCode::KeysetExpired, "{e}");
    // And no swap signs with a keyset past its issue_until.
    let fresh = wallet.withdraw_blind(&issuer, &[5], &mut rng).await;
    let past_issuing = old.issue_until().saturating_add(MINUTE);
    let (into_old, _) = swap_request(&old, fresh, &[5], &mut rng);
    let e = issuer
        .swap(&into_old, past_issuing, &mut rng)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e.code(),
            ReasonCode::KeysetNotIssuing | ReasonCode::KeysetExpired
        ),
        "{e}"
    );
}

/// The fee hook: with a fee of 1 per coin handed in, outputs worth the coins less the fee
/// swap, the fee lands in `swap-fees`, and outputs worth the whole coins are refused.
#[tokio::test]
async fn a_per_coin_fee_is_kept_in_swap_fees() {
    let mut rng = rng(6);
    let issuer = issuer_with(
        scrip_stores::MemoryStore::new(),
        IssuerConfig {
            swap_fee_per_coin: 1,
            ..IssuerConfig::default()
        },
    );
    let wallet = RawWallet::open(&issuer, 1, &mut rng).await;
    wallet.deposit(&issuer, 1_000, &mut rng).await;
    let coins = wallet.withdraw_blind(&issuer, &[10, 5], &mut rng).await;
    let keyset = keyset(&directory(&issuer));
    let (whole, _) = swap_request(&keyset, coins.clone(), &[10, 5], &mut rng);
    let e = issuer.swap(&whole, NOW, &mut rng).await.unwrap_err();
    assert_eq!(e.code(), ReasonCode::AmountMismatch);
    let (less_fee, _) = swap_request(&keyset, coins, &[10, 2, 1], &mut rng);
    let answer = issuer.swap(&less_fee, NOW, &mut rng).await.unwrap();
    assert_eq!(swapped(&answer.outcome).len(), 3);
    let store = issuer.store();
    assert_eq!(store.balance(&swap_fees_account(), EUR).await.unwrap(), 2);
    assert_eq!(coins_outstanding(store).await, 13);
    let all = store.balances(None, usize::MAX).await.unwrap();
    assert_eq!(all.iter().map(|(_, _, b)| b).sum::<i128>(), 0);
}

/// Identified coins are swapped only by a device of the holder they name: a bearer swap of
/// them is refused, and so is another account's device, both claiming nothing. The
/// holder's device swaps them (blind coins beside them) for blind coins; a retry signed
/// again, or the same swap sent bare, gets the same signatures; once the device is revoked
/// (lost) it swaps nothing new, and the swapped coin is not reissued: it is spent, as if
/// redeemed. A frozen account's devices swap nothing new.
async fn identified_coins_are_swapped_only_by_their_holders_device<H: Harness>(h: H) {
    let mut rng = rng(7);
    let issuer = issuer(h.open());
    let wallet = RawWallet::open(&issuer, 1, &mut rng).await;
    wallet.deposit(&issuer, 1_000, &mut rng).await;
    let mut coins = wallet.withdraw_blind(&issuer, &[5], &mut rng).await;
    coins.extend(wallet.withdraw_identified(&issuer, &[10], &mut rng).await);
    let keyset = keyset(&directory(&issuer));
    let (request, pending) = swap_request(&keyset, coins.clone(), &[10, 5], &mut rng);
    let before = coins_outstanding(issuer.store()).await;

    let bearer = issuer.swap(&request, NOW, &mut rng).await.unwrap_err();
    assert_eq!(bearer.code(), ReasonCode::Unsupported, "{bearer}");
    let stranger = RawWallet::open(&issuer, 2, &mut rng).await;
    let theirs = stranger.device_swap(request.clone(), NOW, &mut rng);
    let wrong = issuer
        .device_swap(&theirs, NOW, &mut rng)
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), ReasonCode::WrongAccount, "{wrong}");
    for coin in &coins {
        assert_eq!(claim_of(issuer.store(), coin).await, None);
    }

    let signed = wallet.device_swap(request.clone(), NOW, &mut rng);
    let answer = issuer.device_swap(&signed, NOW, &mut rng).await.unwrap();
    assert_eq!(answer.request_digest, codec::digest(&request).unwrap());
    let signatures = swapped(&answer.outcome).to_vec();
    for coin in &coins {
        let held = claim_of(issuer.store(), coin).await.unwrap();
        assert_eq!(held.claimant, Claimant::Holder);
    }
    assert_eq!(coins_outstanding(issuer.store()).await, before);
    let response = BlindWithdrawalResponse {
        keyset_id: keyset.id(),
        signatures: signatures.clone(),
    };
    for coin in finalize(&keyset, &pending, &response) {
        coin.verify(&directory(&issuer), NOW).unwrap();
    }
    // A retry signed again, or the same swap sent bare: done before, answered the same.
    let later = NOW.saturating_add(MINUTE);
    let resigned = wallet.device_swap(request.clone(), later, &mut rng);
    let again = issuer
        .device_swap(&resigned, later, &mut rng)
        .await
        .unwrap();
    assert_eq!(swapped(&again.outcome), signatures);
    let bare = issuer.swap(&request, later, &mut rng).await.unwrap();
    assert_eq!(swapped(&bare.outcome), signatures);

    // Lost: the device is revoked. It swaps nothing new; the swapped coin is spent and not
    // reissued.
    let heir = wallet.add_device(&issuer, 3, &mut rng).await;
    let kept = heir.withdraw_identified(&issuer, &[2], &mut rng).await;
    issuer.revoke_device(wallet.device_id, later).await.unwrap();
    let (new, _) = swap_request(&keyset, kept.clone(), &[2], &mut rng);
    let signed = wallet.device_swap(new, later, &mut rng);
    let revoked = issuer
        .device_swap(&signed, later, &mut rng)
        .await
        .unwrap_err();
    assert_eq!(revoked.code(), ReasonCode::DeviceRevoked, "{revoked}");
    assert_eq!(claim_of(issuer.store(), &kept[0]).await, None);
    let reissued = issuer
        .reissue_identified_coins(wallet.device_id, heir.device_id, later, &mut rng)
        .await
        .unwrap();
    assert!(reissued.is_empty(), "{reissued:?}");

    // A frozen account's devices swap nothing new either.
    issuer
        .freeze_account(wallet.account_id, "equivocation under review", later)
        .await
        .unwrap();
    let (held, _) = swap_request(&keyset, kept.clone(), &[2], &mut rng);
    let signed = heir.device_swap(held, later, &mut rng);
    let frozen = issuer
        .device_swap(&signed, later, &mut rng)
        .await
        .unwrap_err();
    assert_eq!(frozen.code(), ReasonCode::AccountFrozen, "{frozen}");
    assert_eq!(claim_of(issuer.store(), &kept[0]).await, None);
}

/// A thief holding a lost, unlocked device enrolls a second device of the account with it,
/// then swaps the lost device's identified coins with the second one once the owner has
/// had the lost device revoked: refused (`device_revoked`), nothing claimed, and the
/// operator's reissue still hands the coins to the owner's new device; the old coin is
/// then `double_spent`, as is at once a coin spent before the revocation. While the first device was active, the account's other device
/// could swap its coins.
async fn a_lost_devices_coins_wait_for_reissue_and_no_other_device_swaps_them<H: Harness>(h: H) {
    let mut rng = rng(8);
    let issuer = issuer(h.open());
    let owner = RawWallet::open(&issuer, 1, &mut rng).await;
    owner.deposit(&issuer, 1_000, &mut rng).await;
    let coins = owner.withdraw_identified(&issuer, &[10, 5], &mut rng).await;
    let keyset = keyset(&directory(&issuer));
    let enrolled = owner.add_device(&issuer, 2, &mut rng).await;
    let heir = owner.add_device(&issuer, 3, &mut rng).await;

    let (while_active, _) = swap_request(&keyset, vec![coins[1].clone()], &[5], &mut rng);
    let signed = enrolled.device_swap(while_active, NOW, &mut rng);
    issuer.device_swap(&signed, NOW, &mut rng).await.unwrap();

    issuer.revoke_device(owner.device_id, NOW).await.unwrap();
    let (taken, _) = swap_request(&keyset, vec![coins[0].clone()], &[10], &mut rng);
    let signed = enrolled.device_swap(taken, NOW, &mut rng);
    let refused = issuer
        .device_swap(&signed, NOW, &mut rng)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), ReasonCode::DeviceRevoked, "{refused}");
    assert_eq!(claim_of(issuer.store(), &coins[0]).await, None);

    // A coin the lost device's account spent before the revocation is gone, not waiting
    // for reissue: alone it is `double_spent` (the wallet drops it); beside an unspent
    // coin of the lost device the swap is still refused, and nothing is claimed.
    let (spent, _) = swap_request(&keyset, vec![coins[1].clone()], &[5], &mut rng);
    let signed = enrolled.device_swap(spent, NOW, &mut rng);
    let answer = issuer.device_swap(&signed, NOW, &mut rng).await.unwrap();
    assert!(
        matches!(answer.outcome, SwapOutcome::DoubleSpent { .. }),
        "{:?}",
        answer.outcome
    );
    let (both, _) = swap_request(&keyset, coins.clone(), &[10, 5], &mut rng);
    let signed = enrolled.device_swap(both, NOW, &mut rng);
    let refused = issuer
        .device_swap(&signed, NOW, &mut rng)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), ReasonCode::DeviceRevoked, "{refused}");
    assert_eq!(claim_of(issuer.store(), &coins[0]).await, None);

    let reissued = issuer
        .reissue_identified_coins(owner.device_id, heir.device_id, NOW, &mut rng)
        .await
        .unwrap();
    assert_eq!(reissued.len(), 1, "{reissued:?}");

    // Once reissued, the old coin is spent: a swap of it is `double_spent` (the wallet
    // drops it), not refused for its holding device (it would keep it).
    let (stale, _) = swap_request(&keyset, vec![coins[0].clone()], &[10], &mut rng);
    let signed = enrolled.device_swap(stale, NOW, &mut rng);
    let answer = issuer.device_swap(&signed, NOW, &mut rng).await.unwrap();
    assert!(
        matches!(answer.outcome, SwapOutcome::DoubleSpent { .. }),
        "{:?}",
        answer.outcome
    );
}

/// `shop`'s signed swap of `payments` for new coins of `outputs` under `keyset`, with a
/// fresh request key (or `key`), and the pending coins.
fn merchant_swap(
    shop: &Shop,
    payments: Vec<EndorsedCoinPayment>,
    keyset: &Keyset,
    outputs: &[u64],
    key: Option<[u8; 32]>,
    rng: &mut rand::rngs::StdRng,
) -> (MerchantSwapRequest, Vec<PendingCoin>) {
    let (template, pending) = swap_request(keyset, Vec::new(), outputs, rng);
    let request = MerchantSwapRequest::sign(
        MerchantSwapRequestPayload {
            merchant_id: shop.id(),
            request_key: key.unwrap_or(template.request_key),
            payments,
            keyset_id: keyset.id(),
            outputs: template.outputs,
        },
        &shop.key,
        rng,
    )
    .unwrap();
    (request, pending)
}

/// A merchant's swap of the coin payments it accepted: checked and claimed as a
/// redemption would (the customer sees them settled; the same payment uploaded afterwards
/// is `already_accepted` and credits nothing; another merchant finds the coins spent),
/// idempotent by its request key across re-signing, all or nothing, and refused for a
/// payment endorsed by someone else or a revoked merchant.
async fn a_merchant_takes_coin_payments_as_coins_under_the_rules_of_redemption<H: Harness>(h: H) {
    let mut rng = rng(8);
    let issuer = issuer(h.open());
    let wallet = RawWallet::open(&issuer, 1, &mut rng).await;
    wallet.deposit(&issuer, 100, &mut rng).await;
    let coins = wallet
        .withdraw_blind(&issuer, &[10, 5, 2, 1], &mut rng)
        .await;
    let shop = Shop::register(&issuer, 1, &mut rng).await;
    let other = Shop::register(&issuer, 2, &mut rng).await;
    let keyset = keyset(&directory(&issuer));
    let first = shop.endorse(coins[..2].to_vec(), &mut rng);
    let second = shop.endorse(coins[2..3].to_vec(), &mut rng);
    let outstanding = coins_outstanding(issuer.store()).await;

    let (request, pending) = merchant_swap(
        &shop,
        vec![first.clone(), second.clone()],
        &keyset,
        &[10, 5, 1, 1],
        None,
        &mut rng,
    );
    let answer = issuer.merchant_swap(&request, NOW, &mut rng).await.unwrap();
    assert_eq!(answer.request_digest, codec::digest(&request).unwrap());
    let signatures = swapped(&answer.outcome).to_vec();
    // Signed again (a retry after a lost answer): the same signatures, nothing more.
    let resigned = MerchantSwapRequest::sign(request.payload.clone(), &shop.key, &mut rng).unwrap();
    assert_ne!(resigned, request);
    let again = issuer
        .merchant_swap(&resigned, NOW, &mut rng)
        .await
        .unwrap();
    assert_eq!(swapped(&again.outcome), signatures);
    let new = finalize(
        &keyset,
        &pending,
        &BlindWithdrawalResponse {
            keyset_id: keyset.id(),
            signatures,
        },
    );
    assert_eq!(new.len(), 4);
    for coin in &new {
        coin.verify(&directory(&issuer), NOW).unwrap();
    }
    assert_eq!(coins_outstanding(issuer.store()).await, outstanding);
    let merchant = LedgerAccount::Merchant(shop.id());
    assert_eq!(issuer.store().balance(&merchant, EUR).await.unwrap(), 0);

    // The customer's payment is settled; uploading it now credits nothing.
    let state = issuer.coin_payment_state(&first).await.unwrap();
    assert!(matches!(
        state.state,
        scrip_issuer::api::CoinPaymentStatus::Settled { .. }
    ));
    let outcomes = shop
        .redeem(
            &issuer,
            vec![RedemptionItem::Coins(first.clone())],
            NOW,
            &mut rng,
        )
        .await;
    assert!(matches!(
        outcomes[0],
        RedemptionOutcome::AlreadyAccepted { .. }
    ));
    assert_eq!(issuer.store().balance(&merchant, EUR).await.unwrap(), 0);
    // Another merchant with the same coins: spent.
    let outcomes = other
        .redeem(
            &issuer,
            vec![RedemptionItem::Coins(
                other.endorse(coins[..1].to_vec(), &mut rng),
            )],
            NOW,
            &mut rng,
        )
        .await;
    assert!(matches!(outcomes[0], RedemptionOutcome::DoubleSpent { .. }));

    // A payment this merchant settled already (redeemed for credit, or taken as coins), in
    // a swap: refused `already_redeemed`, nothing claimed, nothing logged.
    let (taken_again, _) =
        merchant_swap(&shop, vec![second.clone()], &keyset, &[2], None, &mut rng);
    let e = issuer
        .merchant_swap(&taken_again, NOW, &mut rng)
        .await
        .unwrap_err();
    assert_eq!(e.code(), ReasonCode::AlreadyRedeemed, "{e}");
    let redeemed_coins = wallet.withdraw_blind(&issuer, &[5], &mut rng).await;
    let redeemed = shop.endorse(redeemed_coins.clone(), &mut rng);
    let outcomes = shop
        .redeem(
            &issuer,
            vec![RedemptionItem::Coins(redeemed.clone())],
            NOW,
            &mut rng,
        )
        .await;
    assert!(matches!(outcomes[0], RedemptionOutcome::Accepted { .. }));
    let (again_for_coins, _) = merchant_swap(&shop, vec![redeemed], &keyset, &[5], None, &mut rng);
    let e = issuer
        .merchant_swap(&again_for_coins, NOW, &mut rng)
        .await
        .unwrap_err();
    assert_eq!(e.code(), ReasonCode::AlreadyRedeemed, "{e}");
    let logged = issuer.fraud_log(None, 10).await.unwrap().len();

    // All or nothing: a payment whose coin was spent (here in this merchant's earlier
    // take, under another payment) next to a fresh one claims neither.
    let fresh = shop.endorse(coins[3..].to_vec(), &mut rng);
    let reused = shop.endorse(coins[2..3].to_vec(), &mut rng);
    let (mixed, _) = merchant_swap(
        &shop,
        vec![reused, fresh.clone()],
        &keyset,
        &[2, 1],
        None,
        &mut rng,
    );
    let answer = issuer.merchant_swap(&mixed, NOW, &mut rng).await.unwrap();
    assert!(
        matches!(&answer.outcome, SwapOutcome::DoubleSpent { coins: named, .. } if named == &vec![coins[2].id()]),
        "{:?}",
        answer.outcome
    );
    assert_eq!(claim_of(issuer.store(), &coins[3]).await, None);
    // Logged as a redemption logs it, naming the merchant.
    let log = issuer.fraud_log(None, 10).await.unwrap();
    assert_eq!(log.len(), logged + 1);
    // (Entries of one millisecond are ordered by their digest: look for it.)
    assert!(log.iter().any(|(_, entry)| matches!(
        &entry.kind,
        FraudKind::DoubleSpend { merchant, coins: named, .. }
            if *merchant == shop.id() && named == &vec![coins[2].id()]
    )));

    // Another merchant's payment, in this merchant's swap: its endorsement does not verify
    // under this merchant's key, as in a redemption batch; refused whole.
    let theirs = other.endorse(coins[3..].to_vec(), &mut rng);
    let (wrong, _) = merchant_swap(&shop, vec![theirs], &keyset, &[1], None, &mut rng);
    let e = issuer
        .merchant_swap(&wrong, NOW, &mut rng)
        .await
        .unwrap_err();
    assert_eq!(e.code(), ReasonCode::UnknownKey, "{e}");
    // A revoked merchant takes nothing more.
    issuer
        .revoke_merchant(shop.id(), "test", NOW)
        .await
        .unwrap();
    let (revoked, _) = merchant_swap(&shop, vec![fresh], &keyset, &[1], None, &mut rng);
    let e = issuer
        .merchant_swap(&revoked, NOW, &mut rng)
        .await
        .unwrap_err();
    assert_eq!(e.code(), ReasonCode::MerchantRevoked, "{e}");
}
