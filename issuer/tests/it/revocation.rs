//! The published revocation list (issue 17 requirement 1): versions and deltas built from
//! the issuer's state, and the revocation grace at redemption, on both sides of it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use scrip_issuer::REVOCATION_SNAPSHOTS_KEPT;
use scrip_stores::MemoryStore;
use scrip_tokens::fixtures::NOW;
use scrip_tokens::*;

fn invalid_code(outcome: &RedemptionOutcome) -> &str {
    match outcome {
        RedemptionOutcome::Invalid { reason } => reason.code.as_str(),
        other => panic!("expected Invalid, got {other:?}"),
    }
}

/// The list for a client holding `since`, signed at `now`.
async fn signed_list<S: scrip_stores::RecordStore>(
    issuer: &TestIssuer<S>,
    since: Option<u64>,
    now: Timestamp,
) -> RevocationList {
    let latest = issuer.revocation_snapshot().await.unwrap();
    let payload = issuer.revocation_list(&latest, since, now).await.unwrap();
    issuer.sign_answer(payload, now, &mut rng(99)).unwrap()
}

#[tokio::test]
async fn a_revoked_device_is_honoured_within_the_grace_of_its_first_listing_and_not_after() {
    let issuer = issuer(MemoryStore::new());
    let grace = issuer.config().revocation_grace;
    assert_eq!(
        grace,
        Duration::from_secs(6 * 3600),
        "the documented default"
    );
    let mut rng = rng(1);
    let shop = Shop::register(&issuer, 1, &mut rng).await;
    let mut phone = RawWallet::open(&issuer, 1, &mut rng).await;
    phone.deposit(&issuer, 1_000, &mut rng).await;
    let cert = phone.certificate(&issuer, 500, NOW, &mut rng).await;

    // Stolen: revoked at minute 60. Until a list names it, no merchant could know.
    issuer.revoke_device(phone.device_id, at(60)).await.unwrap();
    let unlisted = phone.pay(&cert, &shop.request(10, &mut rng), at(61), &mut rng);
    let outcomes = shop
        .redeem(
            &issuer,
            vec![RedemptionItem::Record(
                shop.countersign(&unlisted, &mut rng),
            )],
            at(62),
            &mut rng,
        )
        .await;
    assert_eq!(
        outcomes,
        [RedemptionOutcome::Accepted { credited: eur(10) }]
    );

    // The first list naming it is published at minute 70.
    let listed_at = at(70);
    let snapshot = issuer.publish_revocations(listed_at).await.unwrap();
    assert_eq!(snapshot.version, 1);
    assert_eq!(
        issuer
            .listed_since(&RevokedItem::Device(phone.device_id))
            .await
            .unwrap(),
        Some(listed_at)
    );
    let deadline = listed_at.saturating_add(grace);
    let last_honoured = deadline.saturating_sub(Duration::from_millis(1));
    let within = phone.pay(&cert, &shop.request(20, &mut rng), last_honoured, &mut rng);
    let at_deadline = phone.pay(&cert, &shop.request(30, &mut rng), deadline, &mut rng);
    // A later publication (nothing changed) does not move the device's listing time.
    issuer.publish_revocations(at(600)).await.unwrap();
    let items = [&within, &at_deadline]
        .into_iter()
        .map(|r| RedemptionItem::Record(shop.countersign(r, &mut rng)))
        .collect();
    let outcomes = shop.redeem(&issuer, items, at(900), &mut rng).await;
    assert_eq!(
        outcomes[0],
        RedemptionOutcome::Accepted { credited: eur(20) },
        "paid before listed_since + grace: the merchant's list may not have named it"
    );
    assert_eq!(invalid_code(&outcomes[1]), "device_revoked");
    assert!(issuer
        .record(at_deadline.payload.record_id)
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn the_merchants_acceptance_time_counts_not_the_thiefs_clock() {
    // A thief who sets the device's clock back cannot bring a payment into the grace: the
    // merchant signs when it accepted, and the latest signed time is the payment's time.
    let issuer = issuer(MemoryStore::new());
    let grace = issuer.config().revocation_grace;
    let mut rng = rng(2);
    let shop = Shop::register(&issuer, 1, &mut rng).await;
    let mut phone = RawWallet::open(&issuer, 1, &mut rng).await;
    phone.deposit(&issuer, 1_000, &mut rng).await;
    let cert = phone.certificate(&issuer, 500, NOW, &mut rng).await;
    issuer.revoke_device(phone.device_id, NOW).await.unwrap();
    issuer.publish_revocations(NOW).await.unwrap();
    let late = NOW.saturating_add(grace + Duration::from_secs(60));
    let backdated = phone.sign_record(
        &cert,
        &shop.request(10, &mut rng),
        cert.payload.first_sequence,
        10,
        NOW,
        &mut rng,
    );
    let receipt = CountersignedRecord::sign(
        CountersignedRecordPayload {
            record: backdated,
            accepted_at: late,
        },
        &merchant_key(1),
        &mut rng,
    )
    .unwrap();
    let outcomes = shop
        .redeem(
            &issuer,
            vec![RedemptionItem::Record(receipt)],
            late,
            &mut rng,
        )
        .await;
    assert_eq!(invalid_code(&outcomes[0]), "device_revoked");
}

fn merchant_key(n: u8) -> SigningKey<keys::Merchant> {
    scrip_tokens::fixtures::merchant(n)
}

#[tokio::test]
async fn versions_and_deltas_follow_freezes_unfreezes_and_revocations() {
    let store = Arc::new(MemoryStore::new());
    let issuer = issuer(Arc::clone(&store));
    // A second server on the same store publishes too.
    let other = common::issuer(Arc::clone(&store));
    let mut rng = rng(3);
    let directory = directory(&issuer);
    let shop = Shop::register(&issuer, 1, &mut rng).await;
    let alice = RawWallet::open(&issuer, 1, &mut rng).await;
    let bob = RawWallet::open(&issuer, 2, &mut rng).await;

    // Nothing revoked: version 0, the empty full list.
    assert_eq!(issuer.publish_revocations(at(1)).await.unwrap().version, 0);
    let empty = signed_list(&issuer, None, at(1)).await;
    assert_eq!((empty.payload.version, empty.payload.entries.len()), (0, 0));

    issuer
        .freeze_account(alice.account_id, "chargeback", at(2))
        .await
        .unwrap();
    issuer.revoke_device(bob.device_id, at(2)).await.unwrap();
    let v1 = issuer.publish_revocations(at(3)).await.unwrap();
    assert_eq!(v1.version, 1);
    // The other server finds the version stored and writes none of its own.
    assert_eq!(other.publish_revocations(at(4)).await.unwrap().version, 1);
    assert_eq!(issuer.publish_revocations(at(5)).await.unwrap().version, 1);

    let mut cache = RevocationCache::new();
    cache
        .apply(&signed_list(&issuer, None, at(5)).await, &directory, at(5))
        .unwrap();
    assert_eq!(cache.version(), 1);
    assert_eq!(
        cache.lookup(&RevokedItem::Account(alice.account_id)),
        Some(at(3))
    );
    assert_eq!(
        cache.lookup(&RevokedItem::Device(bob.device_id)),
        Some(at(3))
    );
    assert_eq!(cache.grace(), issuer.config().revocation_grace);

    // Unfrozen, and a merchant revoked: version 2, published by the other server.
    issuer
        .unfreeze_account(alice.account_id, "resolved", at(6))
        .await
        .unwrap();
    issuer
        .revoke_merchant(shop.id(), "fraud", at(6))
        .await
        .unwrap();
    assert_eq!(other.publish_revocations(at(7)).await.unwrap().version, 2);
    let delta = signed_list(&issuer, Some(1), at(8)).await;
    assert_eq!((delta.payload.version, delta.payload.base_version), (2, 1));
    assert_eq!(
        delta.payload.entries,
        [RevocationEntry {
            item: RevokedItem::Merchant(shop.id()),
            listed_since: at(7)
        }]
    );
    assert_eq!(
        delta.payload.lifted,
        [RevokedItem::Account(alice.account_id)]
    );
    cache.apply(&delta, &directory, at(8)).unwrap();
    let full = signed_list(&issuer, None, at(8)).await;
    let mut from_full = RevocationCache::new();
    from_full.apply(&full, &directory, at(8)).unwrap();
    assert_eq!(cache, from_full, "a delta leaves what the full list says");
    assert_eq!(cache.lookup(&RevokedItem::Account(alice.account_id)), None);
    assert_eq!(cache.age(at(9)), Some(Duration::from_secs(60)));

    // Nothing new since 2: an empty delta with a fresh time keeps the list young.
    let fresh = signed_list(&issuer, Some(2), at(30)).await;
    assert_eq!(
        (fresh.payload.base_version, fresh.payload.entries.len()),
        (2, 0)
    );
    cache.apply(&fresh, &directory, at(30)).unwrap();
    assert_eq!(cache.age(at(30)), Some(Duration::ZERO));

    // Frozen again: listed anew, from the new version's time.
    issuer
        .freeze_account(alice.account_id, "again", at(31))
        .await
        .unwrap();
    issuer.publish_revocations(at(32)).await.unwrap();
    let delta = signed_list(&issuer, Some(2), at(32)).await;
    cache.apply(&delta, &directory, at(32)).unwrap();
    assert_eq!(
        cache.lookup(&RevokedItem::Account(alice.account_id)),
        Some(at(32))
    );

    // A version from the future or 0 gets the full list.
    for since in [None, Some(0), Some(99)] {
        assert!(signed_list(&issuer, since, at(33)).await.payload.is_full());
    }

    // Old versions are pruned: a client that far behind gets the full list.
    for minute in 0..REVOCATION_SNAPSHOTS_KEPT as u32 {
        let now = at(40 + 2 * minute);
        issuer
            .unfreeze_account(alice.account_id, "churn", now)
            .await
            .unwrap();
        issuer.publish_revocations(now).await.unwrap();
        issuer
            .freeze_account(alice.account_id, "churn", at(41 + 2 * minute))
            .await
            .unwrap();
        issuer
            .publish_revocations(at(41 + 2 * minute))
            .await
            .unwrap();
    }
    let latest = issuer.revocation_snapshot().await.unwrap();
    assert_eq!(latest.version, 3 + 2 * REVOCATION_SNAPSHOTS_KEPT);
    assert!(signed_list(&issuer, Some(2), at(200))
        .await
        .payload
        .is_full());
    let kept = latest.version - REVOCATION_SNAPSHOTS_KEPT + 1;
    assert!(!signed_list(&issuer, Some(kept), at(200))
        .await
        .payload
        .is_full());
}

#[tokio::test]
async fn revoked_identified_coins_are_listed() {
    let issuer = issuer(MemoryStore::new());
    let mut rng = rng(4);
    let phone = RawWallet::open(&issuer, 1, &mut rng).await;
    let watch = phone.add_device(&issuer, 2, &mut rng).await;
    phone.deposit(&issuer, 100, &mut rng).await;
    let coins = phone.withdraw_identified(&issuer, &[5], &mut rng).await;
    issuer.revoke_device(phone.device_id, at(1)).await.unwrap();
    issuer
        .reissue_identified_coins(phone.device_id, watch.device_id, at(1), &mut rng)
        .await
        .unwrap();
    issuer.publish_revocations(at(2)).await.unwrap();
    let list = signed_list(&issuer, None, at(2)).await;
    let items: Vec<RevokedItem> = list.payload.entries.iter().map(|e| e.item).collect();
    assert!(items.contains(&RevokedItem::Coin(coins[0].id())));
    assert!(items.contains(&RevokedItem::Device(phone.device_id)));
}

// ---- over HTTP ------------------------------------------------------------------------

const TOKEN: &str = "revocation-operator-token";

/// One HTTP/1.1 request to `server` (as the operator when `operator`, a JSON `body` if
/// any): the status and the body of the answer.
async fn http(
    server: &scrip_issuer::server::RunningServer,
    method: &str,
    path: &str,
    operator: bool,
    body: Option<&str>,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = body.unwrap_or_default();
    let mut stream = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .unwrap();
    let auth = if operator {
        format!("Authorization: Bearer {TOKEN}\r\n")
    } else {
        String::new()
    };
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: scrip\r\nConnection: close\r\n{auth}\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"));
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

async fn get_list(server: &scrip_issuer::server::RunningServer, path: &str) -> RevocationList {
    let (status, body) = http(server, "GET", path, false, None).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[tokio::test]
async fn the_server_publishes_after_operator_actions_and_serves_signed_lists_and_deltas() {
    use scrip_issuer::server::{self, KeySource, ServerConfig, StoreKind};
    let dir = tempfile::tempdir().unwrap();
    let wall = server::now();
    let keyring = scrip_testkit::fixture_keyring(validity_around(wall, DAY, DAY));
    let mut config = ServerConfig::new(([127, 0, 0, 1], 0).into(), dir.path(), TOKEN.to_owned());
    config.issuer.backend = scrip_testkit::backend();
    config.store = StoreKind::Memory;
    config.keys = KeySource::Provided(Box::new(keyring));
    config.revocation_publish_interval = Duration::from_millis(100);
    let server = server::start(config).await.unwrap();
    let issuer = &server.state().issuer;
    let mut rng = rng(5);
    let opened = issuer
        .open_account(
            &registration(&scrip_tokens::fixtures::device(1), None, &mut rng),
            wall,
            &mut rng,
        )
        .await
        .unwrap();
    let account = opened.account_id;
    let directory = issuer.keys().directory(server::now()).unwrap();

    // Frozen through the operator route: the list names it at once.
    let (status, body) = http(
        &server,
        "POST",
        &format!("/v1/accounts/{account}/freeze"),
        true,
        Some(r#"{"reason":"chargeback"}"#),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let full = get_list(&server, "/v1/revocations").await;
    let mut cache = RevocationCache::new();
    cache.apply(&full, &directory, server::now()).unwrap();
    assert_eq!(cache.version(), 1);
    assert!(cache.lookup(&RevokedItem::Account(account)).is_some());
    assert_eq!(
        full.payload.grace_secs,
        issuer.config().revocation_grace.as_secs()
    );

    // Unfrozen: the delta since 1 lifts it.
    let (status, body) = http(
        &server,
        "POST",
        &format!("/v1/accounts/{account}/unfreeze"),
        true,
        Some(r#"{"reason":"resolved"}"#),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let delta = get_list(&server, "/v1/revocations?since=1").await;
    assert_eq!((delta.payload.version, delta.payload.base_version), (2, 1));
    assert_eq!(delta.payload.lifted, [RevokedItem::Account(account)]);
    cache.apply(&delta, &directory, server::now()).unwrap();
    assert!(cache.is_empty());
    // Asked again before the next publication: the same signed answer, not a new
    // signature per request.
    let again = get_list(&server, "/v1/revocations?since=1").await;
    if again.payload.issued_at == delta.payload.issued_at {
        assert_eq!(again.signature, delta.signature);
    }

    // Revoked behind the server's back (another server, the core): the periodic
    // publication picks it up, and keeps the list young.
    issuer
        .revoke_device(opened.device_id, server::now())
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let delta = get_list(&server, "/v1/revocations?since=2").await;
        if delta.payload.version == 3 {
            cache.apply(&delta, &directory, server::now()).unwrap();
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not published");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(cache
        .lookup(&RevokedItem::Device(opened.device_id))
        .is_some());
    assert!(cache.age(server::now()).unwrap() < Duration::from_secs(5));

    let (status, body) = http(&server, "GET", "/v1/revocations?since=x", false, None).await;
    assert_eq!(status, 400, "{body}");
    server.shutdown().await.unwrap();
}
