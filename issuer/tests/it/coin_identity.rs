//! A coin's spent-identity is something only its holder can produce (SPEC §8). Coin ids are
//! chosen by wallets (blind coins) or published by the issuer (a reissue names the
//! replacement), so an attacker who learns one can mint a coin of their own under it. That
//! coin must never make the victim's coin `double_spent`, whatever its key, amount or
//! variant; and coins claimed by scrip 0.1 under bare ids stay claimed after an upgrade.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use common::*;
use scrip_issuer::api::CoinStatus;
use scrip_stores::{ClaimId, Claimant, CommitOutcome, MemoryStore, RecordStore, Unit};
use scrip_tokens::fixtures::NOW;
use scrip_tokens::hazmat::Rfc9474;
use scrip_tokens::*;

/// A blind coin worth `value` under a coin id the attacker chose (a victim's), withdrawn
/// and paid for from the attacker's own account, as any wallet could.
async fn mint_under_id(
    issuer: &TestIssuer<MemoryStore>,
    attacker: &RawWallet,
    coin_id: CoinId,
    value: u64,
    rng: &mut rand::rngs::StdRng,
) -> Coin {
    let directory = issuer.keys().directory(NOW).unwrap();
    let keyset = directory.current_keyset(EUR, NOW).unwrap().clone();
    let key = keyset.key_for(value).unwrap();
    let message = BlindCoinMessage {
        coin_id,
        amount: eur(value),
        keyset_id: keyset.id(),
        key_id: key.key_id(),
    };
    let message_bytes = codec::encode(&message).unwrap();
    let blinding = key.blind_message(rng, &message_bytes).unwrap();
    let request = BlindWithdrawalRequest::sign(
        BlindWithdrawalRequestPayload {
            account_id: attacker.account_id,
            device_id: attacker.device_id,
            keyset_id: keyset.id(),
            coins: vec![(value, blinding.blinded.clone())],
            idempotency_key: nonce32(rng),
            created_at: NOW,
            nonce: nonce(rng),
        },
        &attacker.key,
        rng,
    )
    .unwrap();
    let response = issuer.withdraw_blind(&request, NOW, rng).await.unwrap();
    let signature = key
        .finalize_message(&response.signatures[0], &blinding, &message_bytes)
        .unwrap();
    Coin::Blind(BlindCoin {
        coin_id,
        amount: eur(value),
        keyset_id: keyset.id(),
        key_id: key.key_id(),
        randomizer: blinding.randomizer,
        signature,
    })
}

fn nonce32(rng: &mut rand::rngs::StdRng) -> [u8; 32] {
    use rand::Rng;
    let mut key = [0u8; 32];
    rng.fill_bytes(&mut key);
    key
}

fn accepted(outcome: &RedemptionOutcome) -> bool {
    matches!(outcome, RedemptionOutcome::Accepted { .. })
}

#[tokio::test]
async fn a_one_cent_coin_minted_under_a_victims_coin_id_does_not_burn_the_victims_coin() {
    let issuer = issuer(MemoryStore::new());
    let mut rng = rng(11);
    let victim = RawWallet::open(&issuer, 1, &mut rng).await;
    let attacker = RawWallet::open(&issuer, 2, &mut rng).await;
    victim.deposit(&issuer, 1_000, &mut rng).await;
    attacker.deposit(&issuer, 1_000, &mut rng).await;
    let mut victims = victim.withdraw_blind(&issuer, &[10], &mut rng).await;
    victims.extend(victim.withdraw_identified(&issuer, &[5], &mut rng).await);

    // The attacker learns both ids and mints a 1-cent blind coin under each, then redeems
    // them first at its own shop.
    let mut forged = Vec::new();
    for coin in &victims {
        forged.push(mint_under_id(&issuer, &attacker, coin.id(), 1, &mut rng).await);
    }
    assert_eq!(forged[0].id(), victims[0].id());
    assert_ne!(
        forged[0].spend_id().unwrap(),
        victims[0].spend_id().unwrap()
    );
    let accomplice = Shop::register(&issuer, 2, &mut rng).await;
    for coin in &forged {
        let item = RedemptionItem::Coins(accomplice.endorse(vec![coin.clone()], &mut rng));
        let outcomes = accomplice.redeem(&issuer, vec![item], NOW, &mut rng).await;
        assert!(accepted(&outcomes[0]), "{outcomes:?}");
    }

    // The victim's coins, blind and identified, are still good.
    let shop = Shop::register(&issuer, 1, &mut rng).await;
    for coin in &victims {
        let item = RedemptionItem::Coins(shop.endorse(vec![coin.clone()], &mut rng));
        let outcomes = shop.redeem(&issuer, vec![item], NOW, &mut rng).await;
        assert!(
            accepted(&outcomes[0]),
            "the victim's {:?} coin was burned: {outcomes:?}",
            coin.variant()
        );
    }
    assert!(issuer.fraud_log(None, 100).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_coin_of_the_same_denomination_under_the_same_id_is_another_coin() {
    let issuer = issuer(MemoryStore::new());
    let mut rng = rng(12);
    let victim = RawWallet::open(&issuer, 1, &mut rng).await;
    let attacker = RawWallet::open(&issuer, 2, &mut rng).await;
    victim.deposit(&issuer, 1_000, &mut rng).await;
    attacker.deposit(&issuer, 1_000, &mut rng).await;
    let genuine = victim
        .withdraw_blind(&issuer, &[10], &mut rng)
        .await
        .remove(0);
    // Same id, same denomination key, same keyset: only the randomizer differs, and the
    // attacker cannot know the victim's.
    let twin = mint_under_id(&issuer, &attacker, genuine.id(), 10, &mut rng).await;
    assert_eq!(twin.key_id(), genuine.key_id());
    assert_ne!(twin.spend_id().unwrap(), genuine.spend_id().unwrap());

    let accomplice = Shop::register(&issuer, 2, &mut rng).await;
    let item = RedemptionItem::Coins(accomplice.endorse(vec![twin], &mut rng));
    let outcomes = accomplice.redeem(&issuer, vec![item], NOW, &mut rng).await;
    assert!(accepted(&outcomes[0]), "{outcomes:?}");

    let shop = Shop::register(&issuer, 1, &mut rng).await;
    let item = RedemptionItem::Coins(shop.endorse(vec![genuine.clone()], &mut rng));
    let outcomes = shop.redeem(&issuer, vec![item], NOW, &mut rng).await;
    assert!(accepted(&outcomes[0]), "{outcomes:?}");
    // Spending the genuine coin again is still a double spend: the guard is intact.
    let item = RedemptionItem::Coins(accomplice.endorse(vec![genuine.clone()], &mut rng));
    let outcomes = accomplice.redeem(&issuer, vec![item], NOW, &mut rng).await;
    assert!(
        matches!(&outcomes[0], RedemptionOutcome::DoubleSpent { coins, .. } if coins == &vec![genuine.id()]),
        "{outcomes:?}"
    );
    assert_eq!(
        issuer
            .coin_state(genuine.spend_id().unwrap())
            .await
            .unwrap()
            .state,
        CoinStatus::Redeemed { redeemed_at: NOW }
    );
}

#[tokio::test]
async fn coins_claimed_under_bare_ids_before_the_upgrade_stay_claimed() {
    let issuer = issuer(MemoryStore::new());
    let mut rng = rng(13);
    let wallet = RawWallet::open(&issuer, 1, &mut rng).await;
    wallet.deposit(&issuer, 1_000, &mut rng).await;
    let coins = wallet.withdraw_blind(&issuer, &[10, 5], &mut rng).await;
    let shop = Shop::register(&issuer, 1, &mut rng).await;
    let rival = Shop::register(&issuer, 2, &mut rng).await;

    // What scrip 0.1 wrote when `shop` redeemed this payment: each coin claimed under its
    // bare id with the payment's digest (the money moved in the same unit; left out here).
    let endorsed = shop.endorse(coins.clone(), &mut rng);
    let digest = codec::digest(&endorsed.payload.payment).unwrap();
    let mut unit = Unit::new(Claimant::Merchant(shop.id()), NOW);
    for coin in &coins {
        unit = unit.claim(ClaimId::LegacyCoinId(coin.id()), digest);
    }
    assert_eq!(
        issuer.store().commit(unit).await.unwrap(),
        CommitOutcome::Committed
    );

    // The same merchant uploading the same payment again: a retry.
    let outcomes = shop
        .redeem(
            &issuer,
            vec![RedemptionItem::Coins(endorsed.clone())],
            NOW,
            &mut rng,
        )
        .await;
    assert!(
        matches!(outcomes[0], RedemptionOutcome::AlreadyAccepted { .. }),
        "{outcomes:?}"
    );
    // Anyone else presenting one of those coins: a double spend, logged.
    let again = rival.endorse(vec![coins[1].clone()], &mut rng);
    let outcomes = rival
        .redeem(&issuer, vec![RedemptionItem::Coins(again)], NOW, &mut rng)
        .await;
    assert!(
        matches!(&outcomes[0], RedemptionOutcome::DoubleSpent { coins: spent, .. } if spent == &vec![coins[1].id()]),
        "{outcomes:?}"
    );
    assert_eq!(issuer.fraud_log(None, 100).await.unwrap().len(), 1);
    // Nothing was claimed under the new spend ids for them.
    let held = issuer
        .store()
        .claims(&[
            ClaimId::Coin(coins[0].spend_id().unwrap()),
            ClaimId::Coin(coins[1].spend_id().unwrap()),
        ])
        .await
        .unwrap();
    assert_eq!(held, vec![None, None]);
}
