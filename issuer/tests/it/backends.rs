//! The issuer on each crypto backend: its keys, and every device and merchant key it looks
//! up, run on the configured backend; and servers on different backends over one store
//! (a cluster mid-upgrade) behave as one: coins withdrawn from one redeem at the other,
//! records signed for one settle at the other, blind signatures are byte-identical.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::sync::Arc;

use common::*;
use scrip_issuer::IssuerConfig;
use scrip_stores::{MemoryStore, RecordStore};
use scrip_tokens::fixtures::NOW;
use scrip_tokens::*;

fn on(store: &Arc<dyn RecordStore>, backend: Backend) -> TestIssuer<Arc<dyn RecordStore>> {
    issuer_with(
        Arc::clone(store),
        IssuerConfig {
            backend,
            ..IssuerConfig::default()
        },
    )
}

#[tokio::test]
async fn the_issuer_signs_and_verifies_on_its_configured_backend() {
    for backend in Backend::ALL {
        let store: Arc<dyn RecordStore> = Arc::new(MemoryStore::new());
        let issuer = on(&store, *backend);
        let keys = issuer.keys();
        assert_eq!(keys.root.backend(), *backend);
        assert_eq!(
            keys.balance_certifier.current(NOW).unwrap().key.backend(),
            *backend
        );
        assert_eq!(
            keys.answer_signer.current(NOW).unwrap().key.backend(),
            *backend
        );
        for (_, key) in &keys.keysets[0].keys {
            assert_eq!(key.backend(), *backend);
        }
        // What the directory lists verifies there too (coins, certificates, answers).
        let directory = issuer.keys().directory(NOW).unwrap();
        for entry in directory.issuer_keys() {
            assert_eq!(entry.key.backend(), *backend);
        }
        for entry in directory.keysets()[0].denominations() {
            assert_eq!(entry.key.public_key().backend(), *backend);
        }
        // The same keys whatever the backend.
        assert_eq!(keys.fingerprint(), fixture_keyring().fingerprint());

        let mut rng = rng(1);
        let wallet = RawWallet::open(&issuer, 1, &mut rng).await;
        let shop = Shop::register(&issuer, 1, &mut rng).await;
        let device = issuer.device(wallet.device_id).await.unwrap();
        assert_eq!(
            device.certificate.payload.device_key.public_key().backend(),
            *backend
        );
        let merchant = issuer.merchant(shop.id()).await.unwrap();
        assert_eq!(
            merchant
                .certificate
                .payload
                .merchant_key
                .public_key()
                .backend(),
            *backend
        );
    }
}

#[tokio::test]
async fn issuers_on_different_backends_over_one_store_behave_as_one() {
    let store: Arc<dyn RecordStore> = Arc::new(MemoryStore::new());
    let issuers: Vec<_> = Backend::ALL.iter().map(|b| on(&store, *b)).collect();
    let last = issuers.len() - 1;
    let mut rng = rng(2);
    let mut wallet = RawWallet::open(&issuers[0], 1, &mut rng).await;
    let shop = Shop::register(&issuers[last], 1, &mut rng).await;
    wallet.deposit(&issuers[0], 1_000, &mut rng).await;

    // A balance certificate from one issuer; records paid under it settle at another.
    let cert = wallet.certificate(&issuers[last], 300, NOW, &mut rng).await;
    cert.verify_in(&issuers[0].keys().directory(NOW).unwrap(), NOW)
        .unwrap();
    for (i, amount) in [100u64, 50].into_iter().enumerate() {
        let record = wallet.pay(&cert, &shop.request(amount, &mut rng), NOW, &mut rng);
        let receipt = shop.countersign(&record, &mut rng);
        let outcomes = shop
            .redeem(
                &issuers[i % issuers.len()],
                vec![RedemptionItem::Record(receipt)],
                NOW,
                &mut rng,
            )
            .await;
        assert_eq!(
            outcomes,
            vec![RedemptionOutcome::Accepted {
                credited: eur(amount)
            }]
        );
    }

    // Coins withdrawn from each issuer; each one's blind signatures are the others' too.
    let directory = issuers[0].keys().directory(NOW).unwrap();
    let keyset = directory.current_keyset(EUR, NOW).unwrap().clone();
    let mut coins = Vec::new();
    for (i, issuer) in issuers.iter().enumerate() {
        let (request, pending) = wallet.blind_request(&keyset, &[10, 5], [i as u8; 32], &mut rng);
        let response = issuer
            .withdraw_blind(&request, NOW, &mut rng)
            .await
            .unwrap();
        for other in &issuers {
            let keys = other.keys();
            let set = keys.keyset(keyset.id()).unwrap();
            for ((minor_units, blinded), signed) in
                request.payload.coins.iter().zip(&response.signatures)
            {
                let key = &set.keys.iter().find(|(v, _)| v == minor_units).unwrap().1;
                assert_eq!(&key.sign_blinded(&mut rng, blinded).unwrap(), signed);
            }
        }
        coins.extend(finalize(&keyset, &pending, &response));
    }
    // ... and redeem at the other end of the cluster, once.
    for (i, coin) in coins.iter().enumerate() {
        let at = &issuers[(i + 1) % issuers.len()];
        let payment = shop.endorse(vec![coin.clone()], &mut rng);
        let outcomes = shop
            .redeem(at, vec![RedemptionItem::Coins(payment)], NOW, &mut rng)
            .await;
        assert!(
            matches!(outcomes[..], [RedemptionOutcome::Accepted { .. }]),
            "{outcomes:?}"
        );
    }
    for issuer in &issuers {
        let payment = shop.endorse(vec![coins[0].clone()], &mut rng);
        let outcomes = shop
            .redeem(issuer, vec![RedemptionItem::Coins(payment)], NOW, &mut rng)
            .await;
        assert!(
            matches!(outcomes[..], [RedemptionOutcome::DoubleSpent { .. }]),
            "{outcomes:?}"
        );
    }
    let withdrawn = 15 * issuers.len() as i128;
    assert_eq!(
        issuers[last].balance(wallet.account_id, EUR).await.unwrap(),
        1_000 - 300 - withdrawn
    );
}
