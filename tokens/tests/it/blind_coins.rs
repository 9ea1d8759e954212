//! The blind coin flow end to end, and every way a coin can be wrong.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::time::Duration;

use common::*;
use scrip_tokens::fixtures::{TestIssuer, NOW};
use scrip_tokens::*;

fn issuer() -> TestIssuer {
    TestIssuer::new(
        EUR,
        Validity::new(NOW.saturating_sub(DAY), NOW.saturating_add(DAY)).unwrap(),
    )
}

#[test]
fn wallet_blinds_issuer_signs_wallet_finalizes_merchant_verifies() {
    let issuer = issuer();
    let mut rng = rng(1);
    let keyset = issuer.directory.current_keyset(EUR, NOW).unwrap();
    assert_eq!(keyset.id(), issuer.keyset.id());

    for value in [1, 2, 5, 10] {
        let pending = PendingCoin::new(&mut rng, keyset, eur(value)).unwrap();
        // The issuer sees a modulus-sized blinded value that does not contain the coin id.
        assert_eq!(pending.blinded().0.len(), 256);
        let id_bytes = *pending.coin_id().as_bytes();
        assert!(!pending.blinded().0.windows(16).any(|w| w == id_bytes));

        // The wallet survives a restart between request and answer.
        let stored = codec::encode(&pending).unwrap();
        let pending: PendingCoin = codec::decode(&stored).unwrap();

        let blind_sig = issuer
            .denomination_key(value)
            .unwrap()
            .sign_blinded(&mut rng, pending.blinded())
            .unwrap();
        let coin = pending
            .finalize(keyset.key_for(value).unwrap(), &blind_sig)
            .unwrap();
        assert_eq!(coin.amount, eur(value));
        assert_eq!(coin.coin_id, pending.coin_id());

        let coin = Coin::Blind(coin);
        let received: Coin = codec::decode(&codec::encode(&coin).unwrap()).unwrap();
        received.verify(&issuer.directory, NOW).unwrap();
        assert_eq!(received.variant(), CoinVariant::Blind);
        assert_eq!(received.holder(), None);
    }
}

#[test]
fn blinding_the_same_coin_twice_gives_unrelated_blinded_messages() {
    let issuer = issuer();
    let mut rng = rng(2);
    let a = PendingCoin::new(&mut rng, &issuer.keyset, eur(5)).unwrap();
    let b = PendingCoin::new(&mut rng, &issuer.keyset, eur(5)).unwrap();
    assert_ne!(a.coin_id(), b.coin_id());
    assert_ne!(a.blinded(), b.blinded());
}

#[test]
fn a_blind_signature_from_another_denomination_key_does_not_finalize() {
    let issuer = issuer();
    let mut rng = rng(3);
    let pending = PendingCoin::new(&mut rng, &issuer.keyset, eur(10)).unwrap();
    // A dishonest or confused issuer signs the 10-cent request with the 1-cent key.
    let wrong = issuer
        .denomination_key(1)
        .unwrap()
        .sign_blinded(&mut rng, pending.blinded())
        .unwrap();
    assert_eq!(
        pending.finalize(issuer.keyset.key_for(10).unwrap(), &wrong),
        Err(Error::BadSignature)
    );
    // And the wallet cannot finalize against a key other than the one it blinded for.
    let right = issuer
        .denomination_key(10)
        .unwrap()
        .sign_blinded(&mut rng, pending.blinded())
        .unwrap();
    let one_cent = issuer.keyset.key_for(1).unwrap();
    assert_eq!(
        pending.finalize(one_cent, &right),
        Err(Error::UnknownKey(pending.key_id()))
    );
    // Garbage from the network.
    assert!(pending
        .finalize(
            issuer.keyset.key_for(10).unwrap(),
            &BlindSignature(vec![7; 256])
        )
        .is_err());
    assert!(pending
        .finalize(issuer.keyset.key_for(10).unwrap(), &BlindSignature(vec![]))
        .is_err());
}

#[test]
fn altered_coins_fail_verification() {
    let issuer = issuer();
    let mut rng = rng(4);
    let coin = withdraw_blind(&issuer, &mut rng, 2);
    let dir = &issuer.directory;

    // Claiming a higher face value: the 5-cent key did not sign it.
    let mut inflated = coin.clone();
    inflated.amount = eur(5);
    assert_eq!(
        Coin::Blind(inflated.clone()).verify(dir, NOW),
        Err(Error::UnknownKey(coin.key_id))
    );
    inflated.key_id = issuer.keyset.key_for(5).unwrap().key_id();
    assert_eq!(
        Coin::Blind(inflated).verify(dir, NOW),
        Err(Error::BadSignature)
    );

    // Another coin id (a replayed signature on a fresh UUID).
    let mut renamed = coin.clone();
    renamed.coin_id = CoinId::random(&mut rng);
    assert_eq!(
        Coin::Blind(renamed).verify(dir, NOW),
        Err(Error::BadSignature)
    );

    // Another randomizer.
    let mut rerandomized = coin.clone();
    rerandomized.randomizer[0] ^= 1;
    assert_eq!(
        Coin::Blind(rerandomized).verify(dir, NOW),
        Err(Error::BadSignature)
    );

    // Another currency.
    let mut dollars = coin.clone();
    dollars.amount = Amount::new(2, Currency::USD);
    assert_eq!(
        Coin::Blind(dollars).verify(dir, NOW),
        Err(Error::CurrencyMismatch {
            expected: EUR,
            found: Currency::USD
        })
    );

    // A denomination the keyset does not have.
    let mut odd = coin.clone();
    odd.amount = eur(3);
    assert_eq!(
        Coin::Blind(odd).verify(dir, NOW),
        Err(Error::UnknownDenomination {
            keyset_id: coin.keyset_id,
            minor_units: 3
        })
    );

    // An unknown keyset.
    let mut orphan = coin.clone();
    orphan.keyset_id = KeysetId([9; 32]);
    assert_eq!(
        Coin::Blind(orphan).verify(dir, NOW),
        Err(Error::UnknownKeyset(KeysetId([9; 32])))
    );

    Coin::Blind(coin).verify(dir, NOW).unwrap();
}

#[test]
fn coins_of_an_expired_keyset_are_rejected() {
    let issuer = issuer();
    let mut rng = rng(5);
    let coin = Coin::Blind(withdraw_blind(&issuer, &mut rng, 1));
    let end = issuer.keyset.validity().not_after;
    let later = end.saturating_add(Duration::from_secs(1));
    assert_eq!(
        coin.verify(&issuer.directory, later),
        Err(Error::Expired {
            not_after: end,
            now: later
        })
    );
}

#[test]
fn identified_coins_carry_the_holder_and_are_signed_openly() {
    let w = world();
    let coin = Coin::Identified(w.identified_coin.clone());
    coin.verify(w.directory(), NOW).unwrap();
    assert_eq!(coin.holder(), Some(w.identified_coin.payload.holder));
    assert_eq!(coin.variant(), CoinVariant::Identified);

    // Signed by a key the directory does not list as the identified-coin key.
    let mut rng = rng(6);
    let forged = IdentifiedCoin::sign(
        w.identified_coin.payload.clone(),
        &scrip_tokens::SigningKey::from_pem(scrip_tokens::fixtures::unrelated_key_pem()).unwrap(),
        &mut rng,
    )
    .unwrap();
    assert!(matches!(
        Coin::Identified(forged).verify(w.directory(), NOW),
        Err(Error::UnknownKey(_))
    ));
}

#[test]
fn coin_payment_totals_are_checked() {
    let w = world();
    assert_eq!(w.coin_payment.total(), Ok(eur(15)));
    let mut rng = rng(7);
    let mut mixed = w.coin_payment.clone();
    let mut usd = withdraw_blind(&w.issuer, &mut rng, 1);
    usd.amount = Amount::new(1, Currency::USD);
    mixed.coins.push(Coin::Blind(usd));
    assert_eq!(
        mixed.total(),
        Err(Error::CurrencyMismatch {
            expected: EUR,
            found: Currency::USD
        })
    );
}
