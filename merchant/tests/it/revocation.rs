//! Issue 17 requirement 1 at the point of sale: the issuer's revocation list, fetched with
//! the key directory when the terminal syncs, checked offline, with its age bounded.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::time::Duration;

use common::*;
use scrip_merchant::{Merchant, MerchantConfig};
use scrip_stores::MemoryStore;
use scrip_tokens::fixtures::NOW;
use scrip_tokens::*;
use scrip_wallet::{CertificateOptions, PayWith, WalletError};

async fn funded_phone(issuer: &std::sync::Arc<TestIssuer>, n: u8) -> Phone {
    let mut phone = Phone::open(issuer, n, 10_000, u64::from(n)).await;
    phone
        .certificate(
            issuer,
            CertificateOptions {
                requested_amount: Some(eur(3_000)),
                ..CertificateOptions::any(EUR)
            },
            NOW,
        )
        .await;
    phone
}

#[tokio::test]
async fn a_revoked_devices_payment_is_refused_offline_by_a_merchant_with_a_fresh_list() {
    let issuer = issuer();
    let fresh = shop(&issuer, 1, 100_000).await;
    // A second terminal that never syncs after the revocation.
    let stale = shop(&issuer, 2, 100_000).await;
    let mut phone = funded_phone(&issuer, 1).await;
    let (_, device) = phone
        .wallet
        .account()
        .map(|a| (a.account_id, a.device_id))
        .unwrap();
    assert!(is_receipt(
        &pay(&mut phone, &fresh, 100, PayWith::Record, at(1)).await
    ));

    // The phone is stolen; the operator revokes it and the list is published (the server
    // does both at once).
    issuer.revoke_device(device, at(10)).await.unwrap();
    issuer.publish_revocations(at(10)).await.unwrap();

    // The terminal syncs (directory, list, queue) and goes offline again.
    assert_eq!(fresh.revocation_list_age(at(11)), None);
    fresh
        .sync(&client(&issuer, at(11)), at(11), &mut rng(1))
        .await
        .unwrap();
    assert_eq!(fresh.revocation_list_age(at(11)), Some(Duration::ZERO));
    assert_eq!(fresh.revocations().version(), 1);
    assert_eq!(
        fresh.revocations().lookup(&RevokedItem::Device(device)),
        Some(at(10))
    );

    // The thief pays offline: refused, with its own code; nothing is queued.
    let refused = pay(&mut phone, &fresh, 200, PayWith::Record, at(12)).await;
    assert_eq!(rejection_code(&refused), ReasonCode::RevocationListed);
    assert!(fresh.pending(10).await.unwrap().is_empty());

    // The terminal that did not sync accepts it, and the issuer honours it: the payment
    // is within the published grace of the list that first named the device.
    let accepted = pay(&mut phone, &stale, 300, PayWith::Record, at(12)).await;
    assert!(is_receipt(&accepted));
    let summary = stale
        .sync(&client(&issuer, at(20)), at(20), &mut rng(2))
        .await
        .unwrap();
    assert_eq!(summary.accepted, 1);

    // The list survives a restart of the terminal.
    let store = std::sync::Arc::new(MemoryStore::new());
    let before = shop_over(&issuer, 3, 100_000, std::sync::Arc::clone(&store)).await;
    before
        .sync(&client(&issuer, at(21)), at(21), &mut rng(3))
        .await
        .unwrap();
    let certificate = before.certificate().clone();
    drop(before);
    let reopened = Merchant::open(
        store,
        scrip_tokens::fixtures::merchant(3),
        certificate,
        root(),
        MerchantConfig::new(eur(100_000)),
        at(22),
    )
    .await
    .unwrap();
    assert_eq!(
        reopened.revocations().lookup(&RevokedItem::Device(device)),
        Some(at(10))
    );
}

#[tokio::test]
async fn a_merchant_with_a_maximum_list_age_refuses_when_its_list_is_missing_or_older() {
    let issuer = issuer();
    let Shop {
        key, certificate, ..
    } = Shop::grocery(&issuer, 1).await;
    let config = MerchantConfig {
        max_revocation_list_age: Some(Duration::from_secs(30 * 60)),
        ..MerchantConfig::new(eur(100_000))
    };
    let merchant = Merchant::open(MemoryStore::new(), key, certificate, root(), config, NOW)
        .await
        .unwrap();
    merchant
        .refresh_directory(issuer.key_directory(NOW, &mut rng(9)).unwrap(), NOW)
        .await
        .unwrap();
    let mut phone = funded_phone(&issuer, 1).await;

    // No list yet.
    assert_eq!(merchant.revocation_list_age(NOW), None);
    let refused = pay(&mut phone, &merchant, 100, PayWith::Record, at(1)).await;
    assert_eq!(rejection_code(&refused), ReasonCode::RevocationListStale);

    // A fresh list (version 0: nothing revoked yet).
    merchant
        .sync(&client(&issuer, at(2)), at(2), &mut rng(1))
        .await
        .unwrap();
    assert!(is_receipt(
        &pay(&mut phone, &merchant, 100, PayWith::Record, at(3)).await
    ));
    // 30 minutes is the limit, 31 is past it.
    assert!(is_receipt(
        &pay(&mut phone, &merchant, 100, PayWith::Record, at(32)).await
    ));
    let refused = pay(&mut phone, &merchant, 100, PayWith::Record, at(33)).await;
    assert_eq!(rejection_code(&refused), ReasonCode::RevocationListStale);

    // Something is revoked meanwhile; the next sync brings version 1, then a delta.
    let other = Phone::open(&issuer, 2, 0, 2).await;
    let other_device = other.wallet.account().unwrap().device_id;
    issuer.revoke_device(other_device, at(40)).await.unwrap();
    issuer.publish_revocations(at(40)).await.unwrap();
    merchant
        .sync(&client(&issuer, at(41)), at(41), &mut rng(2))
        .await
        .unwrap();
    assert_eq!(merchant.revocations().version(), 1);
    issuer
        .freeze_account(other.wallet.account().unwrap().account_id, "fraud", at(50))
        .await
        .unwrap();
    issuer.publish_revocations(at(50)).await.unwrap();
    merchant
        .sync(&client(&issuer, at(51)), at(51), &mut rng(3))
        .await
        .unwrap();
    assert_eq!(merchant.revocations().version(), 2);
    assert_eq!(merchant.revocations().len(), 2);
    assert!(is_receipt(
        &pay(&mut phone, &merchant, 100, PayWith::Record, at(52)).await
    ));
}

#[tokio::test]
async fn a_wallet_with_the_list_refuses_to_pay_a_revoked_merchant() {
    let issuer = issuer();
    let merchant = shop(&issuer, 1, 100_000).await;
    let mut phone = funded_phone(&issuer, 1).await;
    let merchant_id = merchant.certificate().payload.merchant_id;
    issuer
        .revoke_merchant(merchant_id, "fraud", at(1))
        .await
        .unwrap();
    issuer.publish_revocations(at(1)).await.unwrap();
    let list = {
        use scrip_merchant::IssuerClient;
        client(&issuer, at(2)).revocations(None).await.unwrap()
    };
    phone.wallet.update_revocations(&list, at(2)).unwrap();
    assert_eq!(
        phone.wallet.revocation_list_age(at(3)),
        Some(Duration::from_secs(60))
    );

    let offer = merchant.offer(eur(100), at(3), &mut rng(4)).await.unwrap();
    let offer = codec::encode(&offer).unwrap();
    let before = phone.wallet.offline_spendable(EUR, at(3));
    match phone
        .wallet
        .pay_bytes(&offer, PayWith::Record, at(3), &mut phone.rng)
    {
        Err(WalletError::MerchantRevoked(id)) => assert_eq!(id, merchant_id),
        Err(other) => panic!("expected MerchantRevoked, got {other:?}"),
        Ok(_) => panic!("expected MerchantRevoked, got an answer"),
    }
    assert_eq!(phone.wallet.offline_spendable(EUR, at(3)), before);

    // The list kept beside the saved wallet comes back after a restart.
    let kept = codec::encode(phone.wallet.revocations()).unwrap();
    phone.save();
    phone.crash_and_restart();
    assert_eq!(phone.wallet.revocation_list_age(at(3)), None);
    phone.wallet.set_revocations(codec::decode(&kept).unwrap());
    assert!(phone
        .wallet
        .pay_bytes(&offer, PayWith::Record, at(3), &mut phone.rng)
        .is_err());
}

/// A server of a cluster that has not published the latest version yet.
struct Lagging {
    inner: InProcess,
    stale: RevocationList,
}

#[async_trait::async_trait]
impl scrip_merchant::IssuerClient for Lagging {
    async fn key_directory(&self) -> Result<SignedKeyDirectory, scrip_merchant::ClientError> {
        self.inner.key_directory().await
    }
    async fn redeem(
        &self,
        batch: &RedemptionBatch,
    ) -> Result<RedemptionReport, scrip_merchant::ClientError> {
        self.inner.redeem(batch).await
    }
    async fn revocations(
        &self,
        _since: Option<u64>,
    ) -> Result<RevocationList, scrip_merchant::ClientError> {
        Ok(self.stale.clone())
    }
}

#[tokio::test]
async fn an_older_list_from_a_lagging_server_neither_replaces_the_list_nor_fails_the_sync() {
    let issuer = issuer();
    let merchant = shop(&issuer, 1, 100_000).await;
    let phone = Phone::open(&issuer, 2, 0, 2).await;
    let device = phone.wallet.account().unwrap().device_id;
    issuer.revoke_device(device, at(1)).await.unwrap();
    issuer.publish_revocations(at(1)).await.unwrap();
    merchant
        .sync(&client(&issuer, at(2)), at(2), &mut rng(1))
        .await
        .unwrap();
    assert_eq!(merchant.revocations().version(), 1);

    // Version 0 (nothing listed), signed later by a server that lags.
    let old = scrip_issuer::RevocationSnapshot::default();
    let payload = issuer.revocation_list(&old, None, at(3)).await.unwrap();
    let stale = issuer.sign_answer(payload, at(3), &mut rng(2)).unwrap();
    assert!(matches!(
        merchant.refresh_revocations(&stale, at(3)).await,
        Err(scrip_merchant::MerchantError::Invalid(
            Error::OutdatedRevocationList {
                held: 1,
                received: 0
            }
        ))
    ));
    let lagging = Lagging {
        inner: client(&issuer, at(4)),
        stale,
    };
    merchant.sync(&lagging, at(4), &mut rng(3)).await.unwrap();
    assert_eq!(
        merchant.revocations().lookup(&RevokedItem::Device(device)),
        Some(at(1)),
        "a replayed or lagging list cannot lift a revocation"
    );
}

/// A server that does not serve revocation lists (not upgraded yet, or failing).
struct NoLists {
    inner: InProcess,
}

#[async_trait::async_trait]
impl scrip_merchant::IssuerClient for NoLists {
    async fn key_directory(&self) -> Result<SignedKeyDirectory, scrip_merchant::ClientError> {
        self.inner.key_directory().await
    }
    async fn redeem(
        &self,
        batch: &RedemptionBatch,
    ) -> Result<RedemptionReport, scrip_merchant::ClientError> {
        self.inner.redeem(batch).await
    }
    async fn revocations(
        &self,
        _since: Option<u64>,
    ) -> Result<RevocationList, scrip_merchant::ClientError> {
        Err(scrip_merchant::ClientError::Refused {
            code: scrip_tokens::ReasonCode::NotFound,
            message: "no such route".into(),
        })
    }
}

/// Review finding: a revocation list that cannot be fetched must not keep a merchant from
/// being paid for what it accepted; the queue is uploaded and the list keeps its age.
#[tokio::test]
async fn a_sync_uploads_the_queue_even_when_no_revocation_list_can_be_fetched() {
    let issuer = issuer();
    let merchant = shop(&issuer, 1, 100_000).await;
    let mut phone = funded_phone(&issuer, 2).await;
    let offer = merchant.offer(eur(300), at(2), &mut rng(4)).await.unwrap();
    let answer = phone.pay_record(&offer, at(2));
    let reply = merchant.accept(&answer, at(2), &mut rng(5)).await.unwrap();
    assert!(matches!(reply, MerchantReply::Receipt(_)));
    let summary = merchant
        .sync(
            &NoLists {
                inner: client(&issuer, at(3)),
            },
            at(3),
            &mut rng(6),
        )
        .await
        .unwrap();
    assert_eq!(summary.accepted, 1);
    assert_eq!(merchant.revocation_list_age(at(3)), None);
}
