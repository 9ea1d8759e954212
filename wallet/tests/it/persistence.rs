//! State at rest: what survives a restart, encryption (a wrong key or an altered byte
//! never opens), and save-before-release: the sequence counter never goes backwards, and
//! what a crash loses was never released.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use common::*;
use rand::RngExt;
use scrip_tokens::fixtures::NOW;
use scrip_tokens::*;
use scrip_wallet::{PayWith, StorageKey, Wallet, WalletError, STORAGE_FORMAT_VERSION};

/// Everything observable about a wallet, for before/after comparisons.
#[derive(Debug, PartialEq)]
struct Snapshot {
    account: Option<AccountCertificatePayload>,
    device_key: KeyId,
    coins: Vec<Coin>,
    certificates: Vec<(BalanceCertificate, Amount)>,
    next_sequence: u64,
    receipts: Vec<PaymentReceipt>,
    outbox: Vec<WithdrawalRecord>,
    pending_deposits: Vec<DepositRequest>,
    pending_certificate_request: Option<BalanceCertificateRequest>,
    spendable: Amount,
    coin_total: Amount,
    directory_age: Option<std::time::Duration>,
    sheet: scrip_wallet::RecoverySheet,
}

fn snapshot(wallet: &Wallet) -> Snapshot {
    Snapshot {
        account: wallet.account().cloned(),
        device_key: wallet.device_key_id(),
        coins: wallet.coins().to_vec(),
        certificates: wallet.certificates().map(|(c, s)| (c.clone(), s)).collect(),
        next_sequence: wallet.next_sequence(),
        receipts: wallet.receipts().to_vec(),
        outbox: wallet.outbox().to_vec(),
        pending_deposits: wallet.pending_deposits().to_vec(),
        pending_certificate_request: wallet.pending_certificate_request().cloned(),
        spendable: wallet.offline_spendable(EUR, at(30)),
        coin_total: wallet.coin_total(EUR),
        directory_age: wallet.directory_age(at(30)),
        sheet: wallet.recovery_sheet(at(30)).unwrap(),
    }
}

#[tokio::test]
async fn the_whole_state_survives_a_restart() {
    let issuer = issuer();
    let mut phone = Phone::open(&issuer, 1, 1_000, 1).await;
    let mut shop = Shop::grocery(&issuer, 1).await;
    phone.certificate(&issuer, up_to(300), NOW).await;
    phone.withdraw_blind(&issuer, &[10, 5, 2, 1]).await;
    phone.withdraw_identified(&issuer, &[10, 5]).await;
    // A receipted record (outbox, receipt), a receipted coin payment, a record and coins
    // awaiting their replies, a deposit and a certificate request awaiting the issuer.
    let answer = phone.pay_record(&shop.offer(40, at(1)), at(1));
    let reply = shop.receipt(&answer, at(1));
    phone.wallet.on_merchant_reply(&reply, at(1)).unwrap();
    let answer = phone.pay_coins(&shop.offer(3, at(2)), at(2));
    let reply = shop.receipt(&answer, at(2));
    phone.wallet.on_merchant_reply(&reply, at(2)).unwrap();
    let record_in_flight = phone.pay_record(&shop.offer(25, at(3)), at(3));
    let coins_in_flight = phone.pay_coins(&shop.offer(15, at(4)), at(4));
    let deposit = phone
        .wallet
        .deposit_request(eur(50), at(5), &mut phone.rng)
        .unwrap();
    let deposit = phone.send(deposit);
    let cert_request = phone
        .wallet
        .certificate_request(up_to(100), at(6), &mut phone.rng)
        .unwrap();
    let cert_request = phone.send(cert_request);

    let before = snapshot(&phone.wallet);
    assert_eq!(before.receipts.len(), 2);
    assert_eq!(before.outbox.len(), 1);
    assert_eq!(before.coins.len(), 2);
    assert_eq!(before.sheet.identified_coins.len(), 2);
    assert_eq!(before.sheet.blind_coins.len(), 2);
    assert_eq!(before.pending_deposits, vec![deposit.clone()]);

    let bytes = phone
        .wallet
        .save(&phone.storage_key, &mut phone.rng)
        .unwrap();
    let bytes = bytes.bytes().to_vec();
    drop(std::mem::replace(
        &mut phone.wallet,
        Wallet::load(&bytes, &phone.storage_key).unwrap(),
    ));
    assert_eq!(snapshot(&phone.wallet), before);

    // The reloaded wallet carries on where the old one stopped.
    let reply = shop.receipt(&record_in_flight, at(7));
    phone.wallet.on_merchant_reply(&reply, at(7)).unwrap();
    assert_eq!(phone.wallet.outbox().len(), 2);
    let reply = shop.reject(&coins_in_flight, "exposure_limit", at(7));
    phone.wallet.on_merchant_reply(&reply, at(7)).unwrap();
    assert_eq!(phone.wallet.coin_total(EUR), eur(30));
    let record = issuer
        .deposit(&deposit, at(8), &mut phone.rng)
        .await
        .unwrap();
    phone
        .wallet
        .on_deposit_record(record, at(8), &mut phone.rng)
        .unwrap();
    let cert = issuer
        .issue_balance_certificate(&cert_request, at(8), &mut phone.rng)
        .await
        .unwrap();
    phone.wallet.on_balance_certificate(cert, at(8)).unwrap();
    // The records handed in with that request left the outbox; the later one stays.
    assert_eq!(phone.wallet.outbox().len(), 1);
    let answer = phone.pay_record(&shop.offer(5, at(9)), at(9));
    assert!(record_of(&answer).payload.sequence > before.next_sequence);
}

#[tokio::test]
async fn the_state_is_sealed_a_wrong_key_or_any_altered_byte_never_opens() {
    let issuer = issuer();
    let mut phone = Phone::open(&issuer, 1, 1_000, 1).await;
    phone.certificate(&issuer, up_to(300), NOW).await;
    let coin_ids = phone.withdraw_blind(&issuer, &[10, 5]).await;
    let (account, device) = phone.ids();
    let sealed = phone
        .wallet
        .save(&phone.storage_key, &mut phone.rng)
        .unwrap()
        .bytes()
        .to_vec();

    // Nothing of the state shows through: not the ids, not the device's private key.
    let contains = |needle: &[u8]| sealed.windows(needle.len()).any(|w| w == needle);
    assert!(!contains(account.as_bytes()));
    assert!(!contains(device.as_bytes()));
    for id in &coin_ids {
        assert!(!contains(id.as_bytes()));
    }
    let der = fixtures::device(1).to_der().unwrap();
    assert!(!contains(&der[der.len() - 64..]));
    assert_eq!(&sealed[..8], b"SCRIPWLT");
    // A fresh nonce each time: two saves of the same state differ.
    let again = phone
        .wallet
        .save(&phone.storage_key, &mut phone.rng)
        .unwrap();
    assert_ne!(again.bytes(), sealed.as_slice());

    assert!(Wallet::load(&sealed, &phone.storage_key).is_ok());
    let wrong = StorageKey::random(&mut phone.rng);
    assert_eq!(
        error_of(Wallet::load(&sealed, &wrong)),
        WalletError::WrongKeyOrCorrupted
    );
    let mut near = [0u8; 32];
    phone.rng.fill(&mut near);
    assert_eq!(
        error_of(Wallet::load(&sealed, &StorageKey::new(near))),
        WalletError::WrongKeyOrCorrupted
    );

    // Every single altered byte is refused, never decoded into something else. The two
    // format-version bytes say so instead (a newer format, not corruption).
    for i in 0..sealed.len() {
        for flip in [0x01u8, 0x80] {
            let mut bad = sealed.clone();
            bad[i] ^= flip;
            let expected = if (8..10).contains(&i) {
                WalletError::UnsupportedFormat {
                    found: u16::from_le_bytes([bad[8], bad[9]]),
                    supported: STORAGE_FORMAT_VERSION,
                }
            } else {
                WalletError::WrongKeyOrCorrupted
            };
            assert_eq!(
                error_of(Wallet::load(&bad, &phone.storage_key)),
                expected,
                "byte {i} ^ {flip:#x}"
            );
        }
    }
    // Cut or extended.
    for cut in (0..sealed.len()).step_by(97).chain([sealed.len() - 1]) {
        assert_eq!(
            error_of(Wallet::load(&sealed[..cut], &phone.storage_key)),
            WalletError::WrongKeyOrCorrupted,
            "cut at {cut}"
        );
    }
    let mut longer = sealed.clone();
    longer.push(0);
    assert_eq!(
        error_of(Wallet::load(&longer, &phone.storage_key)),
        WalletError::WrongKeyOrCorrupted
    );
    // A blind-coin backup sealed with the same key is not a wallet.
    let backup = phone
        .wallet
        .backup_blind_coins(&phone.storage_key, &mut phone.rng)
        .unwrap();
    assert_eq!(
        error_of(Wallet::load(&backup, &phone.storage_key)),
        WalletError::WrongKeyOrCorrupted
    );
    let message = WalletError::WrongKeyOrCorrupted.to_string();
    assert!(message.contains("wrong storage key"), "{message}");
}

#[tokio::test]
async fn a_message_is_released_only_against_a_save_that_includes_it() {
    let issuer = issuer();
    let mut phone = Phone::open(&issuer, 1, 1_000, 1).await;
    let mut shop = Shop::grocery(&issuer, 1).await;
    phone.certificate(&issuer, up_to(300), NOW).await;
    phone.withdraw_blind(&issuer, &[10, 10]).await;
    let key = StorageKey::random(&mut phone.rng);

    // Every message that must not be lost in a crash: payment answers (both kinds),
    // withdrawal requests (both kinds), deposits, certificate requests, registrations.
    let stale = phone.wallet.save(&key, &mut phone.rng).unwrap();
    let record = phone
        .wallet
        .pay_by_record(&shop.offer(10, at(1)), at(1), &mut phone.rng)
        .unwrap();
    let needed = record.generation();
    assert!(needed > stale.generation());
    assert_eq!(
        record.release(&stale).err(),
        Some(WalletError::NotPersisted {
            needed,
            saved: stale.generation(),
        })
    );

    fn refused(phone: &mut Phone, generation: u64, result: Result<(), WalletError>) {
        let stale = phone.saved.as_ref().unwrap();
        assert!(generation > stale.generation());
        assert_eq!(
            result,
            Err(WalletError::NotPersisted {
                needed: generation,
                saved: stale.generation(),
            })
        );
    }
    phone.save();
    let stale = phone.saved.as_ref().unwrap();
    let coins = phone
        .wallet
        .pay_by_coins(&shop.offer(10, at(2)), at(2))
        .unwrap();
    let (g, r) = (coins.generation(), coins.release(stale).map(|_| ()));
    refused(&mut phone, g, r);

    phone.save();
    let stale = phone.saved.as_ref().unwrap();
    let blind = phone
        .wallet
        .blind_withdrawal_request(&[1].map(|v| Amount::new(v, EUR)), NOW, &mut phone.rng)
        .unwrap();
    let (g, r) = (blind.generation(), blind.release(stale).map(|_| ()));
    refused(&mut phone, g, r);

    phone.save();
    let stale = phone.saved.as_ref().unwrap();
    let identified = phone
        .wallet
        .identified_withdrawal_request(&[1].map(|v| Amount::new(v, EUR)), NOW, &mut phone.rng)
        .unwrap();
    let (g, r) = (
        identified.generation(),
        identified.release(stale).map(|_| ()),
    );
    refused(&mut phone, g, r);

    phone.save();
    let stale = phone.saved.as_ref().unwrap();
    let deposit = phone
        .wallet
        .deposit_request(eur(5), NOW, &mut phone.rng)
        .unwrap();
    let (g, r) = (deposit.generation(), deposit.release(stale).map(|_| ()));
    refused(&mut phone, g, r);

    phone.save();
    let stale = phone.saved.as_ref().unwrap();
    let request = phone
        .wallet
        .certificate_request(up_to(10), NOW, &mut phone.rng)
        .unwrap();
    let (g, r) = (request.generation(), request.release(stale).map(|_| ()));
    refused(&mut phone, g, r);

    let mut fresh = Phone::new(&issuer, 2, 2);
    fresh.save();
    let stale = fresh.saved.as_ref().unwrap();
    let registration = fresh
        .wallet
        .registration_request(None, NOW, &mut fresh.rng)
        .unwrap();
    let (g, r) = (
        registration.generation(),
        registration.release(stale).map(|_| ()),
    );
    refused(&mut fresh, g, r);

    // A save taken after the change (or any later one) releases it.
    let answer = phone
        .wallet
        .pay_by_record(&shop.offer(10, at(3)), at(3), &mut phone.rng)
        .unwrap();
    let _ = phone
        .wallet
        .deposit_request(eur(5), NOW, &mut phone.rng)
        .unwrap();
    let later = phone.wallet.save(&key, &mut phone.rng).unwrap();
    assert!(later.generation() > answer.generation());
    assert!(answer.release(&later).is_ok());
}

#[tokio::test]
async fn after_a_crash_past_the_save_the_next_record_uses_a_higher_sequence() {
    let issuer = issuer();
    let mut phone = Phone::open(&issuer, 1, 1_000, 1).await;
    let mut shop = Shop::grocery(&issuer, 1).await;
    let cert = phone.certificate(&issuer, up_to(300), NOW).await;
    let first = cert.payload.first_sequence;

    // The answer is saved, released, and reaches the merchant; then the phone dies
    // before the merchant's reply.
    let offer = shop.offer(40, at(1));
    let answer = phone.pay_record(&offer, at(1));
    assert_eq!(record_of(&answer).payload.sequence, first);
    phone.crash_and_restart();

    assert_eq!(phone.wallet.next_sequence(), first + 1);
    assert_eq!(phone.wallet.offline_spendable(EUR, at(2)), eur(260));
    assert_eq!(
        phone.wallet.check_offer(&offer, at(2)).err(),
        Some(WalletError::AlreadyPaid(offer.request.payload.request_id))
    );
    let second = phone.pay_record(&shop.offer(10, at(2)), at(2));
    assert_eq!(record_of(&second).payload.sequence, first + 1);
    assert_eq!(record_of(&second).payload.cumulative, eur(50));

    // The merchant's reply to the first answer still lands after the restart.
    for answer in [&answer, &second] {
        let reply = shop.receipt(answer, at(3));
        phone.wallet.on_merchant_reply(&reply, at(3)).unwrap();
    }
    // The issuer records both, and sees no equivocation.
    let sync = phone.wallet.sync_request(at(4), &mut phone.rng).unwrap();
    let report = issuer.sync(&sync, at(4)).await.unwrap();
    assert!(report
        .records
        .iter()
        .all(|o| matches!(o, RedemptionOutcome::Accepted { .. })));
    assert!(issuer.fraud_log(None, 100).await.unwrap().is_empty());
    assert!(issuer.frozen(phone.ids().0).await.unwrap().is_none());
}

#[tokio::test]
async fn a_crash_before_the_save_loses_only_what_was_never_released() {
    let issuer = issuer();
    let mut phone = Phone::open(&issuer, 1, 1_000, 1).await;
    let mut shop = Shop::grocery(&issuer, 1).await;
    let cert = phone.certificate(&issuer, up_to(300), NOW).await;
    phone.withdraw_blind(&issuer, &[10, 5]).await;
    let first = cert.payload.first_sequence;
    // Everything the merchant ever received, as bytes over NFC.
    let mut merchant_inbox: Vec<Vec<u8>> = Vec::new();

    // One payment goes through normally.
    let offer = codec::encode(&shop.offer(20, at(1))).unwrap();
    let answer = phone
        .wallet
        .pay_bytes(&offer, PayWith::Record, at(1), &mut phone.rng)
        .unwrap();
    merchant_inbox.push(phone.send(answer));

    // The next one is signed, but the phone dies before its state reaches storage: the
    // only save is older than the payment, so the answer cannot be released.
    let offer = shop.offer(30, at(2));
    let offer_bytes = codec::encode(&offer).unwrap();
    let answer = phone
        .wallet
        .pay_bytes(&offer_bytes, PayWith::Record, at(2), &mut phone.rng)
        .unwrap();
    assert_eq!(phone.wallet.next_sequence(), first + 2);
    let stale = phone.saved.as_ref().unwrap();
    match answer.release(stale) {
        Ok(bytes) => merchant_inbox.push(bytes),
        Err(e) => assert!(matches!(e, WalletError::NotPersisted { .. })),
    }
    // Coins likewise.
    let coin_offer = shop.offer(15, at(2));
    let coins = phone.wallet.pay_by_coins(&coin_offer, at(2)).unwrap();
    assert_eq!(phone.wallet.coin_total(EUR), eur(0));
    match coins.release(phone.saved.as_ref().unwrap()) {
        Ok(answer) => merchant_inbox.push(codec::encode(&answer).unwrap()),
        Err(e) => assert!(matches!(e, WalletError::NotPersisted { .. })),
    }
    assert_eq!(
        merchant_inbox.len(),
        1,
        "an unsaved answer reached the merchant"
    );

    phone.crash_and_restart();
    // The reloaded wallet is as of the last save: the unreleased record's number and
    // the unreleased coins are back, and nobody outside ever saw them.
    assert_eq!(phone.wallet.next_sequence(), first + 1);
    assert_eq!(phone.wallet.coin_total(EUR), eur(15));
    assert_eq!(phone.wallet.offline_spendable(EUR, at(3)), eur(280));
    phone.wallet.check_offer(&offer, at(3)).unwrap();

    // Paying again (the same offer) signs a fresh record with that number.
    let answer = phone
        .wallet
        .pay_bytes(&offer_bytes, PayWith::Record, at(3), &mut phone.rng)
        .unwrap();
    merchant_inbox.push(phone.send(answer));
    let coins = phone.pay_coins(&coin_offer, at(3));
    merchant_inbox.push(codec::encode(&coins).unwrap());

    // What the merchant holds: distinct sequence numbers, each record once.
    let answers: Vec<PaymentAnswer> = merchant_inbox
        .iter()
        .map(|b| codec::decode(b).unwrap())
        .collect();
    let sequences: Vec<u64> = answers[..2]
        .iter()
        .map(|a| record_of(a).payload.sequence)
        .collect();
    assert_eq!(sequences, vec![first, first + 1]);
    assert_eq!(record_of(&answers[1]).payload.cumulative, eur(50));

    // Receipts, then the issuer: both records accepted, no equivocation, no fraud.
    for answer in &answers {
        let reply = shop.receipt(answer, at(4));
        phone.wallet.on_merchant_reply(&reply, at(4)).unwrap();
    }
    let sync = phone.wallet.sync_request(at(5), &mut phone.rng).unwrap();
    let report = issuer.sync(&sync, at(5)).await.unwrap();
    assert_eq!(report.records.len(), 2);
    assert!(report
        .records
        .iter()
        .all(|o| matches!(o, RedemptionOutcome::Accepted { .. })));
    assert!(issuer.fraud_log(None, 100).await.unwrap().is_empty());
}

#[tokio::test]
async fn the_counter_never_goes_backwards_over_random_crashes() {
    let issuer = issuer();
    let mut phone = Phone::open(&issuer, 1, 1_000, 1).await;
    let mut shop = Shop::grocery(&issuer, 1).await;
    phone.certificate(&issuer, up_to(500), NOW).await;
    let mut chaos = rng(77);
    let mut seen: Vec<u64> = Vec::new();
    for step in 0..60u32 {
        let now = at(step + 1);
        let offer = shop.offer(1, now);
        let answer = phone
            .wallet
            .pay_by_record(&offer, now, &mut phone.rng)
            .unwrap();
        match chaos.random_range(0..3u8) {
            // Saved and released: the merchant sees it.
            0 => seen.push(record_of(&phone.send(answer)).payload.sequence),
            // Saved, released, then the phone dies before anything else.
            1 => {
                seen.push(record_of(&phone.send(answer)).payload.sequence);
                phone.crash_and_restart();
            }
            // The phone dies before saving: the answer never leaves.
            _ => {
                assert!(answer.release(phone.saved.as_ref().unwrap()).is_err());
                phone.crash_and_restart();
            }
        }
        assert!(phone.wallet.next_sequence() > *seen.last().unwrap_or(&0));
    }
    assert!(seen.len() > 20);
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
}

#[tokio::test]
async fn a_wallet_reloaded_mid_withdrawal_finalizes_the_coins() {
    let issuer = issuer();
    let mut phone = Phone::open(&issuer, 1, 100, 1).await;
    let directory = directory(&issuer);

    // The requests are saved and sent; the phone dies before the answers come back.
    let blind = phone
        .wallet
        .blind_withdrawal_request(
            &[10, 5, 2].map(|v| Amount::new(v, EUR)),
            NOW,
            &mut phone.rng,
        )
        .unwrap();
    let blind = phone.send(blind);
    let identified = phone
        .wallet
        .identified_withdrawal_request(&[10, 1].map(|v| Amount::new(v, EUR)), NOW, &mut phone.rng)
        .unwrap();
    let identified = phone.send(identified);
    let blind_answer = issuer
        .withdraw_blind(&blind, NOW, &mut phone.rng)
        .await
        .unwrap();
    let identified_answer = issuer
        .withdraw_identified(&identified, NOW, &mut phone.rng)
        .await
        .unwrap();
    phone.crash_and_restart();

    // The blinding secrets survived: the answer unblinds into valid coins.
    let ids = phone
        .wallet
        .on_blind_withdrawal(&blind, &blind_answer, at(1))
        .unwrap();
    assert_eq!(ids.len(), 3);
    // A retry after the restart gets the same answer from the issuer (debited once).
    let retried = issuer
        .withdraw_identified(&identified, at(1), &mut phone.rng)
        .await
        .unwrap();
    assert_eq!(retried, identified_answer);
    phone
        .wallet
        .on_identified_withdrawal(&identified, &retried, at(1))
        .unwrap();
    assert_eq!(phone.wallet.coin_total(EUR), eur(28));
    for coin in phone.wallet.coins() {
        coin.verify(&directory, at(1)).unwrap();
    }
    assert_eq!(issuer.balance(phone.ids().0, EUR).await.unwrap(), 100 - 28);
    // Taken once.
    assert!(phone
        .wallet
        .on_blind_withdrawal(&blind, &blind_answer, at(1))
        .is_err());

    // Reloaded from a save older than the request, the wallet has no secrets, but then
    // the request was never released either.
    let mut phone = Phone::open(&issuer, 2, 100, 2).await;
    phone.save();
    let request = phone
        .wallet
        .blind_withdrawal_request(&[10].map(|v| Amount::new(v, EUR)), NOW, &mut phone.rng)
        .unwrap();
    assert!(request.release(phone.saved.as_ref().unwrap()).is_err());
    phone.crash_and_restart();
    assert!(phone.wallet.coins().is_empty());
}

/// An answer signed by a wallet state that was then discarded (the vendor reloaded the
/// last save without the process dying, or mixed up two wallets' saves) must not be
/// released by a save of another state that merely has the same generation number.
///
#[tokio::test]
async fn an_answer_from_a_discarded_state_is_not_released_by_another_save() {
    let issuer = issuer();
    let mut phone = Phone::open(&issuer, 1, 1_000, 1).await;
    let mut shop = Shop::grocery(&issuer, 1).await;
    phone.certificate(&issuer, up_to(300), NOW).await;
    phone.save();

    let discarded = phone
        .wallet
        .pay_by_record(&shop.offer(10, at(1)), at(1), &mut phone.rng)
        .unwrap();
    // Reload the last save (no crash: the unreleased answer is still in memory).
    phone.crash_and_restart();
    let kept = phone
        .wallet
        .pay_by_record(&shop.offer(20, at(2)), at(2), &mut phone.rng)
        .unwrap();
    assert_eq!(kept.generation(), discarded.generation());
    phone.save();
    let saved = phone.saved.as_ref().unwrap();
    let kept = kept.release(saved).unwrap();
    // Fails today: released, with the same sequence number as `kept`.
    let released = discarded.release(saved).ok();
    assert_eq!(
        released.map(|a| record_of(&a).payload.sequence),
        None,
        "released a record reusing sequence {}",
        record_of(&kept).payload.sequence
    );
}

/// A wallet saved by the previous format (state version 1, before refund vouchers; the
/// fixture was saved by scrip at commit ec1f70d with `StorageKey::new([0x5c; 32])`) loads
/// with everything it held, and saves again in the current format.
#[test]
fn a_wallet_saved_in_format_version_1_loads_and_is_migrated() {
    let bytes = include_bytes!("../fixtures/wallet-v1.bin");
    let key = StorageKey::new([0x5c; 32]);
    let wallet = Wallet::load(bytes, &key).unwrap();
    // What the old wallet reported before it was saved (fixtures/wallet-v1.txt).
    assert_eq!(
        wallet
            .account()
            .map(|a| a.account_id.to_string())
            .as_deref(),
        Some("51ebb154-dcf2-4a43-9d3c-66c0d0b5bb7f")
    );
    assert_eq!(wallet.next_sequence(), 3);
    assert_eq!(wallet.coin_total(EUR), eur(30));
    assert_eq!(wallet.coins().len(), 4);
    assert_eq!(wallet.certificates().count(), 1);
    assert_eq!(wallet.receipts().len(), 2);
    assert_eq!(wallet.outbox().len(), 1);
    assert_eq!(wallet.offline_spendable(EUR, at(30)), eur(235));
    let mut rng = rng(9);
    let saved = wallet.save(&key, &mut rng).unwrap();
    let again = Wallet::load(saved.bytes(), &key).unwrap();
    assert_eq!(snapshot(&again), snapshot(&wallet));
}

/// A wallet saved in format version 2 (before swaps; the fixture was saved by scrip at
/// commit 32ffc48 with `StorageKey::new([0x5c; 32])`: `wallet-v1.bin` migrated, plus one
/// pending voucher withdrawal, see fixtures/wallet-v2.txt) loads with everything it held,
/// its pending withdrawal included, and saves again in the current format.
#[test]
fn a_wallet_saved_in_format_version_2_loads_and_is_migrated() {
    let bytes = include_bytes!("../fixtures/wallet-v2.bin");
    let key = StorageKey::new([0x5c; 32]);
    let wallet = Wallet::load(bytes, &key).unwrap();
    assert_eq!(
        wallet
            .account()
            .map(|a| a.account_id.to_string())
            .as_deref(),
        Some("51ebb154-dcf2-4a43-9d3c-66c0d0b5bb7f")
    );
    assert_eq!(wallet.next_sequence(), 3);
    assert_eq!(wallet.coin_total(EUR), eur(30));
    assert_eq!(wallet.coins().len(), 4);
    let vouchers = wallet.pending_voucher_withdrawals();
    assert_eq!(vouchers.len(), 1);
    assert_eq!(vouchers[0].voucher.payload.amount, eur(15));
    assert!(vouchers[0].coins.iter().map(|(v, _)| *v).eq([10, 5]));
    assert!(wallet.pending_swaps().is_empty());
    let mut rng = rng(9);
    let saved = wallet.save(&key, &mut rng).unwrap();
    let again = Wallet::load(saved.bytes(), &key).unwrap();
    assert_eq!(snapshot(&again), snapshot(&wallet));
    assert_eq!(again.pending_voucher_withdrawals(), vouchers);
}
