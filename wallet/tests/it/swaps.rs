//! Swaps from the wallet's side (issue 20): change made while online so that the amounts a
//! user expects to pay offline can be paid exactly, refresh of coins whose keyset nears
//! its end, a swap whose answer is lost (the phone restarts and sends it again), and a
//! swap that finds a coin spent elsewhere (a restored backup).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use common::*;
use scrip_issuer::KeyringConfig;
use scrip_tokens::fixtures::NOW;
use scrip_tokens::*;
use scrip_wallet::{SwapResult, Wallet, WalletError};

/// Pays `amount` to `shop` offline with coins and has the shop redeem it.
async fn pay_and_redeem(phone: &mut Phone, shop: &mut Shop, issuer: &TestIssuer, amount: u64) {
    let offer = shop.offer(amount, NOW);
    let answer = phone.pay_coins(&offer, NOW);
    let reply = shop.receipt(&answer, NOW);
    phone.wallet.on_merchant_reply(&reply, NOW).unwrap();
    let MerchantReply::Receipt(PaymentReceipt::Coins(endorsed)) = reply else {
        panic!("accepted")
    };
    let mut rng = rng(99);
    let outcomes = shop
        .redeem(issuer, vec![RedemptionItem::Coins(endorsed)], NOW, &mut rng)
        .await;
    assert_eq!(
        outcomes,
        [RedemptionOutcome::Accepted {
            credited: eur(amount)
        }]
    );
}

#[tokio::test]
async fn change_made_online_pays_the_expected_amounts_offline() {
    let issuer = issuer();
    let mut rng = rng(1);
    let mut phone = Phone::open(&issuer, 1, 1_000, 11).await;
    let mut shop = Shop::register(&issuer, 1, &mut rng).await;
    phone.withdraw_blind(&issuer, &[10, 10, 5]).await;
    // Two tens and a five cannot pay 3, nor 4.
    assert!(matches!(
        phone.wallet.pay_by_coins(&shop.offer(3, NOW), NOW),
        Err(WalletError::ExactChangeImpossible { .. })
    ));

    let request = phone
        .wallet
        .change_request(&eurs(&[3, 4]), NOW, &mut phone.rng)
        .unwrap()
        .expect("a swap is needed");
    // The coins handed in are out of the purse until the answer.
    assert_eq!(phone.wallet.coin_total(EUR), eur(0));
    let result = phone.swap(&issuer, request, NOW).await;
    let SwapResult::Swapped { coins } = result else {
        panic!("{result:?}")
    };
    assert_eq!(phone.wallet.coin_total(EUR), eur(25));
    assert_eq!(coins.len(), phone.wallet.coins().len());
    // 3 = 2 + 1, 4 = 2 + 2, and 18 left in the default mix: the ladder 1, 2, 2, 5 then
    // the rest largest first (5 + 2 + 1).
    assert_eq!(phone.coin_values(), [1, 1, 1, 2, 2, 2, 2, 2, 2, 5, 5]);
    // Now the phone pays both offline, with exact change, and the shop is paid.
    pay_and_redeem(&mut phone, &mut shop, &issuer, 3).await;
    pay_and_redeem(&mut phone, &mut shop, &issuer, 4).await;
    assert_eq!(phone.wallet.coin_total(EUR), eur(18));
    // And after those the ladder still pays any amount up to 10 exactly.
    for amount in 1..=10 {
        assert!(phone
            .wallet
            .pay_by_coins(&shop.offer(amount, NOW), NOW)
            .is_ok());
        phone.crash_and_restart();
    }
}

#[tokio::test]
async fn no_swap_when_the_coins_already_pay_and_a_clear_error_when_nothing_can() {
    let issuer = issuer();
    let mut phone = Phone::open(&issuer, 1, 1_000, 12).await;
    phone.withdraw_blind(&issuer, &[5, 2, 2, 1]).await;
    let none = phone
        .wallet
        .change_request(&eurs(&[5, 4, 1]), NOW, &mut phone.rng)
        .unwrap();
    assert!(none.is_none());
    assert_eq!(phone.wallet.coin_total(EUR), eur(10));
    assert!(matches!(
        phone.wallet.change_request(&eurs(&[7, 7]), NOW, &mut phone.rng),
        Err(WalletError::NotEnoughCoins { needed, held }) if needed == eur(14) && held == eur(10)
    ));
    assert!(matches!(
        phone.wallet.change_request(&eurs(&[0]), NOW, &mut phone.rng),
        Err(WalletError::NoCoinsMake(a)) if a == eur(0)
    ));
    assert!(phone.wallet.pending_swaps().is_empty());
}

#[tokio::test]
async fn a_swap_whose_answer_is_lost_is_sent_again_after_a_restart() {
    let issuer = issuer();
    let mut phone = Phone::open(&issuer, 1, 1_000, 13).await;
    let ids = phone.withdraw_blind(&issuer, &[10, 5]).await;
    let request = phone
        .wallet
        .swap_request(&ids, &eurs(&[5, 5, 5]), NOW, &mut phone.rng)
        .unwrap();
    let request = phone.send(request);
    let mut rng = rng(3);
    // The issuer swapped, the answer never arrived, the phone died.
    let lost = issuer.swap(&request, NOW, &mut rng).await.unwrap();
    phone.crash_and_restart();
    assert_eq!(phone.wallet.coin_total(EUR), eur(0));
    let pending = phone.wallet.pending_swaps();
    assert_eq!(pending, vec![request.clone()]);
    // The same request again: the same signatures, applied once.
    let answer = issuer.swap(&pending[0], NOW, &mut rng).await.unwrap();
    assert_eq!(answer.outcome, lost.outcome);
    let receipt = issuer.sign_answer(answer, NOW, &mut rng).unwrap();
    let result = phone
        .wallet
        .on_swap_receipt(&request, &receipt, NOW)
        .unwrap();
    assert!(matches!(result, SwapResult::Swapped { coins } if coins.len() == 3));
    assert_eq!(phone.coin_values(), [5, 5, 5]);
    assert_eq!(
        phone.wallet.on_swap_receipt(&request, &receipt, NOW),
        Err(WalletError::UnrequestedWithdrawal)
    );
    // A receipt for another request, or not signed by the issuer, changes nothing.
    let ids: Vec<CoinId> = phone.wallet.coins().iter().map(|c| c.id()).collect();
    let other = phone
        .wallet
        .swap_request(&ids[..1], &eurs(&[5]), NOW, &mut phone.rng)
        .unwrap();
    let other = phone.send(other);
    assert!(matches!(
        phone.wallet.on_swap_receipt(&other, &receipt, NOW),
        Err(WalletError::UnverifiedAnswer(_))
    ));
    assert_eq!(phone.wallet.pending_swaps(), vec![other.clone()]);
    // Cancelled after a refusal: the coin is back.
    phone.wallet.cancel_swap(&other).unwrap();
    assert_eq!(phone.coin_values(), [5, 5, 5]);
}

#[tokio::test]
async fn a_restored_backup_learns_which_coins_were_spent_and_keeps_the_others() {
    let issuer = issuer();
    let mut rng = rng(4);
    let mut phone = Phone::open(&issuer, 1, 1_000, 14).await;
    let mut shop = Shop::register(&issuer, 1, &mut rng).await;
    phone.withdraw_blind(&issuer, &[10, 5]).await;
    phone.save();
    let backup = phone.saved.as_ref().unwrap().bytes().to_vec();
    pay_and_redeem(&mut phone, &mut shop, &issuer, 5).await;

    // The user restores the backup: it still lists the five, which a merchant redeemed.
    let mut restored = Wallet::load(&backup, &phone.storage_key).unwrap();
    let ids: Vec<CoinId> = restored.coins().iter().map(|c| c.id()).collect();
    let request = restored
        .swap_request(&ids, &eurs(&[10, 5]), NOW, &mut rng)
        .unwrap();
    let saved = restored.save(&phone.storage_key, &mut rng).unwrap();
    let request = request.release(&saved).unwrap();
    let answer = issuer.swap(&request, NOW, &mut rng).await.unwrap();
    let receipt = issuer.sign_answer(answer, NOW, &mut rng).unwrap();
    let result = restored.on_swap_receipt(&request, &receipt, NOW).unwrap();
    let SwapResult::DoubleSpent {
        spent, returned, ..
    } = result
    else {
        panic!("{result:?}")
    };
    assert_eq!(spent.len(), 1);
    assert_eq!(returned.len(), 1);
    assert_eq!(restored.coin_total(EUR), eur(10));
}

#[tokio::test]
async fn coins_near_their_keysets_end_are_refreshed_into_the_current_keyset() {
    let issuer = issuer();
    let mut rng = rng(5);
    let mut phone = Phone::open(&issuer, 1, 1_000, 15).await;
    phone.withdraw_blind(&issuer, &[10, 5]).await;
    assert!(phone
        .wallet
        .refresh_request(NOW, &mut phone.rng)
        .unwrap()
        .is_none());

    // The issuer opens a keyset of 1 and 20; the fixture keyset's window ends at
    // NOW + 300 days.
    let mut keyring = scrip_testkit::fixture_keyring(validity());
    let config = KeyringConfig {
        denominations: Vec::new(),
        key_lifetime: DAY * 600,
        keyset_issue_period: DAY * 400,
        keyset_redeem_grace: DAY * 30,
        rsa_bits: scrip_tokens::keys::DEFAULT_RSA_BITS,
    };
    let new_id = keyring
        .add_keyset(EUR, &[1, 20], &config, NOW.saturating_add(HOUR), &mut rng)
        .unwrap();
    issuer.replace_keyring(keyring);
    // A week and a half before the end: nothing to do yet.
    let early = NOW.saturating_add(DAY * 289);
    phone
        .wallet
        .update_directory(issuer.key_directory(early, &mut rng).unwrap(), early)
        .unwrap();
    assert!(phone
        .wallet
        .refresh_request(early, &mut phone.rng)
        .unwrap()
        .is_none());
    // Within the refresh margin (a week).
    let late = NOW.saturating_add(DAY * 295);
    phone
        .wallet
        .update_directory(issuer.key_directory(late, &mut rng).unwrap(), late)
        .unwrap();
    let request = phone
        .wallet
        .refresh_request(late, &mut phone.rng)
        .unwrap()
        .expect("coins to refresh");
    let result = phone.swap(&issuer, request, late).await;
    assert!(matches!(result, SwapResult::Swapped { coins } if coins.len() == 15));
    assert_eq!(phone.wallet.coin_total(EUR), eur(15));
    assert!(phone
        .wallet
        .coins()
        .iter()
        .all(|c| c.keyset_id() == Some(new_id)));
    assert!(phone
        .wallet
        .refresh_request(late, &mut phone.rng)
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn identified_coins_are_kept_out_of_change_and_swapped_by_the_device() {
    let issuer = issuer();
    let mut phone = Phone::open(&issuer, 1, 1_000, 16).await;
    phone.withdraw_blind(&issuer, &[10]).await;
    let identified = phone.withdraw_identified(&issuer, &[5]).await;
    // Change for 3 and 5: the ten is split, the identified five is kept (it pays the 5).
    let request = phone
        .wallet
        .change_request(&eurs(&[3, 5]), NOW, &mut phone.rng)
        .unwrap()
        .expect("a swap is needed");
    let result = phone.swap(&issuer, request, NOW).await;
    assert!(matches!(result, SwapResult::Swapped { .. }), "{result:?}");
    assert_eq!(phone.wallet.coin_total(EUR), eur(15));
    assert!(phone.wallet.coins().iter().any(|c| c.id() == identified[0]));

    // Unlinkable coins instead: the identified five, for blind coins, signed by the device.
    let request = phone
        .wallet
        .identified_swap_request(EUR, NOW, &mut phone.rng)
        .unwrap()
        .expect("an identified coin is held");
    let unsigned = phone.send(request);
    assert!(unsigned.hands_in_identified());
    let refused = issuer
        .swap(&unsigned, NOW, &mut phone.rng)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), ReasonCode::Unsupported, "{refused}");
    let signed = phone
        .wallet
        .sign_swap(&unsigned, NOW, &mut phone.rng)
        .unwrap();
    assert_eq!(signed.payload.swap, unsigned);
    let answer = issuer
        .device_swap(&signed, NOW, &mut phone.rng)
        .await
        .unwrap();
    let receipt = issuer.sign_answer(answer, NOW, &mut phone.rng).unwrap();
    let result = phone
        .wallet
        .on_swap_receipt(&unsigned, &receipt, NOW)
        .unwrap();
    assert!(matches!(result, SwapResult::Swapped { .. }), "{result:?}");
    assert_eq!(phone.wallet.coin_total(EUR), eur(15));
    assert!(phone
        .wallet
        .coins()
        .iter()
        .all(|c| matches!(c, Coin::Blind(_))));
    assert!(phone
        .wallet
        .identified_swap_request(EUR, NOW, &mut phone.rng)
        .unwrap()
        .is_none());
}
