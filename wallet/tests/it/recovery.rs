//! Lost devices: the recovery sheet the issuer revokes and reissues from, and the backup
//! of blind coins restored onto a new device of the account.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use common::*;
use scrip_issuer::IssuerError;
use scrip_tokens::fixtures::NOW;
use scrip_tokens::*;
use scrip_wallet::{RecoverySheet, StorageKey, Wallet, WalletError};

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort_unstable();
    v
}

async fn redeem(issuer: &TestIssuer, shop: &mut Shop, reply: MerchantReply) -> RedemptionOutcome {
    let MerchantReply::Receipt(PaymentReceipt::Coins(endorsed)) = reply else {
        panic!("expected an endorsed coin payment")
    };
    let batch = RedemptionBatch::sign(
        RedemptionBatchPayload {
            merchant_id: shop.certificate.payload.merchant_id,
            items: vec![RedemptionItem::Coins(endorsed)],
            created_at: at(20),
            nonce: [3; 16],
        },
        &shop.key,
        &mut shop.rng,
    )
    .unwrap();
    issuer
        .redeem(&batch, at(20))
        .await
        .unwrap()
        .outcomes
        .remove(0)
}

#[tokio::test]
async fn the_recovery_sheet_lets_the_issuer_revoke_and_reissue_identified_coins() {
    let issuer = issuer();
    let mut lost = Phone::open(&issuer, 1, 200, 1).await;
    let (account, device) = lost.ids();
    let virtual_id = issuer.account(account).await.unwrap().virtual_id;
    let identified = lost.withdraw_identified(&issuer, &[10, 10, 5, 2]).await;
    let blind = lost.withdraw_blind(&issuer, &[5, 1]).await;
    let mut shop = Shop::grocery(&issuer, 1).await;
    let mut kiosk = Shop::grocery(&issuer, 2).await;

    // Coins handed to merchants that never answered are still on the sheet.
    let in_flight = lost.pay_coins(&shop.offer(12, at(1)), at(1));
    assert!(coins_of(&in_flight)
        .iter()
        .all(|c| c.variant() == CoinVariant::Identified));
    let blind_in_flight = lost.pay_coins(&kiosk.offer(1, at(1)), at(1));
    assert_eq!(coins_of(&blind_in_flight)[0].variant(), CoinVariant::Blind);
    assert_eq!(lost.wallet.coins().len(), 3);

    let sheet = lost.wallet.recovery_sheet(at(2)).unwrap();
    assert_eq!(sheet.account_id, account);
    assert_eq!(sheet.device_id, device);
    assert_eq!(sheet.created_at, at(2));
    assert_eq!(
        sorted(sheet.identified_coins.iter().map(|(id, _)| *id).collect()),
        sorted(identified.clone())
    );
    assert_eq!(
        sorted(sheet.blind_coins.iter().map(|(id, _)| *id).collect()),
        sorted(blind)
    );
    for (id, amount) in sheet.identified_coins.iter().chain(&sheet.blind_coins) {
        let coin = lost
            .wallet
            .coins()
            .iter()
            .chain(coins_of(&in_flight))
            .chain(coins_of(&blind_in_flight))
            .find(|c| c.id() == *id)
            .unwrap();
        assert_eq!(coin.amount(), *amount);
    }
    // The sheet travels as bytes (printed, mailed, kept elsewhere).
    let bytes = codec::encode(&sheet).unwrap();
    let sheet: RecoverySheet = codec::decode(&bytes).unwrap();

    // A second device of the account, approved by the first while it still worked.
    let mut new = Phone::join(&issuer, &mut lost, 2, 2).await;
    let (new_account, new_device) = new.ids();
    assert_eq!(new_account, account);
    assert_ne!(new_device, device);

    // The phone is lost. The issuer acts on the sheet: revoke, then reissue.
    assert!(matches!(
        issuer
            .reissue_identified_coins(sheet.device_id, new_device, at(10), &mut new.rng)
            .await,
        Err(IssuerError::Unsupported(_))
    ));
    issuer.revoke_device(sheet.device_id, at(10)).await.unwrap();
    let reissued = issuer
        .reissue_identified_coins(sheet.device_id, new_device, at(10), &mut new.rng)
        .await
        .unwrap();
    let directory = directory(&issuer);
    assert_eq!(reissued.len(), sheet.identified_coins.len());
    let sheet_total: u64 = sheet
        .identified_coins
        .iter()
        .map(|(_, a)| a.minor_units)
        .sum();
    let reissued_total: u64 = reissued.iter().map(|c| c.payload.amount.minor_units).sum();
    assert_eq!(reissued_total, sheet_total);
    assert_eq!(reissued_total, 27);
    assert_eq!(
        sorted(
            reissued
                .iter()
                .map(|c| c.payload.amount.minor_units)
                .collect()
        ),
        sorted(
            sheet
                .identified_coins
                .iter()
                .map(|(_, a)| a.minor_units)
                .collect()
        )
    );
    for coin in &reissued {
        assert!(!identified.contains(&coin.payload.coin_id));
        assert_eq!(coin.payload.holder, virtual_id);
        Coin::Identified(coin.clone())
            .verify(&directory, at(10))
            .unwrap();
    }
    for (old, _) in &sheet.identified_coins {
        let revoked = issuer.revoked_coin(*old).await.unwrap().unwrap();
        assert!(reissued
            .iter()
            .any(|c| c.payload.coin_id == revoked.replacement));
    }
    // Asking again returns the same coins (nothing issued twice).
    let again = issuer
        .reissue_identified_coins(sheet.device_id, new_device, at(11), &mut new.rng)
        .await
        .unwrap();
    assert_eq!(again, reissued);
    // The new device takes them in (once, however often it is handed them).
    let before = new.wallet.coin_total(EUR);
    let taken = new.wallet.accept_reissued_coins(&reissued, at(11)).unwrap();
    assert_eq!(taken.len(), reissued.len());
    assert!(new
        .wallet
        .accept_reissued_coins(&reissued, at(11))
        .unwrap()
        .is_empty());
    assert_eq!(
        new.wallet.coin_total(EUR).minor_units,
        before.minor_units + 27
    );

    // The lost device gets nothing more from the issuer.
    let request = lost
        .wallet
        .identified_withdrawal_request(&[1].map(|v| Amount::new(v, EUR)), at(12), &mut lost.rng)
        .unwrap();
    let request = lost.send(request);
    assert!(matches!(
        issuer.withdraw_identified(&request, at(12), &mut lost.rng).await,
        Err(IssuerError::DeviceRevoked(d)) if d == device
    ));
    // A merchant holding the unanswered identified coins is not paid: they were revoked.
    let reply = shop.receipt(&in_flight, at(13));
    assert!(matches!(
        redeem(&issuer, &mut shop, reply).await,
        RedemptionOutcome::DoubleSpent { .. }
    ));
    // Blind coins are beyond the issuer's reach: the one in flight still redeems.
    let reply = kiosk.receipt(&blind_in_flight, at(13));
    assert_eq!(
        redeem(&issuer, &mut kiosk, reply).await,
        RedemptionOutcome::Accepted { credited: eur(1) }
    );
}

#[tokio::test]
async fn a_stale_sheet_is_enough_coins_spent_since_are_skipped() {
    let issuer = issuer();
    let mut lost = Phone::open(&issuer, 1, 200, 1).await;
    lost.withdraw_identified(&issuer, &[10, 5, 2]).await;
    let sheet = lost.wallet.recovery_sheet(at(1)).unwrap();
    let mut shop = Shop::grocery(&issuer, 1).await;
    // After the sheet was made, a coin was spent and redeemed.
    let answer = lost.pay_coins(&shop.offer(5, at(2)), at(2));
    let reply = shop.receipt(&answer, at(2));
    lost.wallet.on_merchant_reply(&reply, at(2)).unwrap();
    assert!(matches!(
        redeem(&issuer, &mut shop, reply).await,
        RedemptionOutcome::Accepted { .. }
    ));

    let new = Phone::join(&issuer, &mut lost, 2, 2).await;
    issuer.revoke_device(sheet.device_id, at(3)).await.unwrap();
    let reissued = issuer
        .reissue_identified_coins(sheet.device_id, new.ids().1, at(3), &mut shop.rng)
        .await
        .unwrap();
    let total: u64 = reissued.iter().map(|c| c.payload.amount.minor_units).sum();
    assert_eq!(total, 12);
    assert_eq!(lost.wallet.coin_total(EUR), eur(12));
}

#[test]
fn an_unregistered_wallet_has_no_sheet() {
    let wallet = Wallet::new(fixtures::device(1), root()).unwrap();
    assert_eq!(
        wallet.recovery_sheet(NOW).err(),
        Some(WalletError::NotRegistered)
    );
}

#[tokio::test]
async fn a_blind_coin_backup_restores_onto_a_new_device_only_coins_not_held() {
    let issuer = issuer();
    let mut old = Phone::open(&issuer, 1, 200, 1).await;
    old.withdraw_blind(&issuer, &[10, 5, 2]).await;
    old.withdraw_identified(&issuer, &[10]).await;
    let backup_key = StorageKey::random(&mut old.rng);
    let backup = old
        .wallet
        .backup_blind_coins(&backup_key, &mut old.rng)
        .unwrap();
    let blind: Vec<Coin> = old
        .wallet
        .coins()
        .iter()
        .filter(|c| c.variant() == CoinVariant::Blind)
        .cloned()
        .collect();
    assert_eq!(blind.len(), 3);
    // Nothing readable in the backup.
    for coin in &blind {
        let id = coin.id();
        assert!(!backup.windows(16).any(|w| w == id.as_bytes()));
    }

    let mut new = Phone::join(&issuer, &mut old, 2, 2).await;
    // The wrong key, or another sealed blob, restores nothing.
    assert_eq!(
        new.wallet
            .restore_blind_coins(&backup, &new.storage_key, at(1))
            .err(),
        Some(WalletError::WrongKeyOrCorrupted)
    );
    let state = old
        .wallet
        .save(&backup_key, &mut old.rng)
        .unwrap()
        .bytes()
        .to_vec();
    assert_eq!(
        new.wallet
            .restore_blind_coins(&state, &backup_key, at(1))
            .err(),
        Some(WalletError::WrongKeyOrCorrupted)
    );
    let mut altered = backup.clone();
    let last = altered.len() - 1;
    altered[last] ^= 1;
    assert_eq!(
        new.wallet
            .restore_blind_coins(&altered, &backup_key, at(1))
            .err(),
        Some(WalletError::WrongKeyOrCorrupted)
    );
    assert!(new.wallet.coins().is_empty());

    // The right key: the blind coins, not the identified one.
    assert_eq!(
        new.wallet
            .restore_blind_coins(&backup, &backup_key, at(1))
            .unwrap(),
        3
    );
    assert_eq!(
        sorted(new.wallet.coins().to_vec().iter().map(Coin::id).collect()),
        sorted(blind.iter().map(Coin::id).collect())
    );
    // Again: all held already.
    assert_eq!(
        new.wallet
            .restore_blind_coins(&backup, &backup_key, at(1))
            .unwrap(),
        0
    );
    // A later backup adds only the coins withdrawn since.
    old.withdraw_blind(&issuer, &[1, 1]).await;
    let later = old
        .wallet
        .backup_blind_coins(&backup_key, &mut old.rng)
        .unwrap();
    assert_eq!(
        new.wallet
            .restore_blind_coins(&later, &backup_key, at(2))
            .unwrap(),
        2
    );
    assert_eq!(new.coin_values(), vec![1, 1, 2, 5, 10]);
    // The restored state survives a restart of the new device.
    new.save();
    new.crash_and_restart();
    assert_eq!(new.wallet.coin_total(EUR), eur(19));

    // The restored coins are real: the new device spends one, the merchant redeems it.
    let mut shop = Shop::grocery(&issuer, 1).await;
    let answer = new.pay_coins(&shop.offer(10, at(3)), at(3));
    let reply = shop.receipt(&answer, at(3));
    new.wallet.on_merchant_reply(&reply, at(3)).unwrap();
    assert_eq!(
        redeem(&issuer, &mut shop, reply).await,
        RedemptionOutcome::Accepted { credited: eur(10) }
    );
    // The old device's copy of the same coin is then a double spend at redemption.
    let spent = coins_of(&answer)[0].clone();
    assert!(old.wallet.coins().contains(&spent));
    let mut other = Shop::grocery(&issuer, 2).await;
    let offer = other.offer(10, at(4));
    let answer = PaymentAnswer::ByCoins(CoinPayment {
        request: offer.request,
        coins: vec![spent],
    });
    let reply = other.receipt(&answer, at(4));
    assert!(matches!(
        redeem(&issuer, &mut other, reply).await,
        RedemptionOutcome::DoubleSpent { .. }
    ));

    // A wallet without a key directory cannot check what it restores.
    let mut bare = Wallet::new(fixtures::device(3), root()).unwrap();
    assert_eq!(
        bare.restore_blind_coins(&backup, &backup_key, at(1)).err(),
        Some(WalletError::NoDirectory)
    );
}

/// A coin handed to a merchant (awaiting its reply) is still the wallet's: restoring a
/// backup that contains it must not add a second copy.
///
#[tokio::test]
async fn restoring_a_backup_does_not_duplicate_coins_in_flight() {
    let issuer = issuer();
    let mut phone = Phone::open(&issuer, 1, 200, 1).await;
    phone.withdraw_blind(&issuer, &[10, 5]).await;
    let key = StorageKey::random(&mut phone.rng);
    let backup = phone
        .wallet
        .backup_blind_coins(&key, &mut phone.rng)
        .unwrap();
    let mut shop = Shop::grocery(&issuer, 1).await;
    let offer = shop.offer(10, at(1));
    phone.pay_coins(&offer, at(1));
    assert_eq!(phone.coin_values(), vec![5]);

    let added = phone
        .wallet
        .restore_blind_coins(&backup, &key, at(2))
        .unwrap();
    phone
        .wallet
        .take_back_unanswered_coins(offer.request.payload.request_id)
        .unwrap();
    // Fails today: 1 coin added, and the 10 is then held twice (total 25).
    assert_eq!(phone.wallet.coin_total(EUR), eur(15));
    assert_eq!(added, 0);
}
