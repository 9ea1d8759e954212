//! The settlement window (issue 17, requirement 2): a balance certificate's reservation is
//! held for the published upload grace after its expiry, so a record a merchant accepted
//! before expiry and uploads late is paid from it; after the grace the reservation is the
//! customer's again and a late record is paid only from what the balance holds; a record
//! accepted after expiry is refused whatever the grace.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::time::Duration;

use common::*;
use rand::rngs::StdRng;
use scrip_issuer::api::FraudKind;
use scrip_stores::{LedgerAccount, MemoryStore, RecordStore};
use scrip_tokens::fixtures::NOW;
use scrip_tokens::*;

/// The certificate's amount; the account starts with 10 000.
const CERTIFIED: u64 = 3_000;
const DEPOSITED: u64 = 10_000;

struct Scene {
    issuer: TestIssuer<MemoryStore>,
    wallet: RawWallet,
    shop: Shop,
    cert: BalanceCertificate,
    rng: StdRng,
}

/// A funded account with a certificate of [`CERTIFIED`] issued at `NOW`, a shop, and the
/// default upload grace (7 days).
async fn scene(seed: u64) -> Scene {
    let issuer = issuer(MemoryStore::new());
    let mut rng = rng(seed);
    let mut wallet = RawWallet::open(&issuer, 1, &mut rng).await;
    wallet.deposit(&issuer, DEPOSITED, &mut rng).await;
    let shop = Shop::register(&issuer, 1, &mut rng).await;
    let cert = wallet.certificate(&issuer, CERTIFIED, NOW, &mut rng).await;
    Scene {
        issuer,
        wallet,
        shop,
        cert,
        rng,
    }
}

impl Scene {
    /// A record of `amount` the wallet signs at `NOW` (offline, before expiry) and the
    /// shop countersigns at `NOW`.
    fn pay(&mut self, amount: u64) -> CountersignedRecord {
        let request = self.shop.request(amount, &mut self.rng);
        let record = self.wallet.pay(&self.cert, &request, NOW, &mut self.rng);
        self.shop.countersign(&record, &mut self.rng)
    }

    async fn upload(&mut self, receipt: &CountersignedRecord, now: Timestamp) -> RedemptionOutcome {
        let items = vec![RedemptionItem::Record(receipt.clone())];
        let mut outcomes = self
            .shop
            .redeem(&self.issuer, items, now, &mut self.rng)
            .await;
        assert_eq!(outcomes.len(), 1);
        outcomes.remove(0)
    }

    async fn balance(&self) -> i128 {
        self.issuer
            .balance(self.wallet.account_id, EUR)
            .await
            .unwrap()
    }

    async fn reservation(&self) -> i128 {
        let reservation = LedgerAccount::Reservation(self.cert.payload.serial);
        self.issuer
            .store()
            .balance(&reservation, EUR)
            .await
            .unwrap()
    }

    async fn merchant(&self) -> i128 {
        let merchant = LedgerAccount::Merchant(self.shop.id());
        self.issuer.store().balance(&merchant, EUR).await.unwrap()
    }

    /// The customer moves all of its spendable balance onto a new certificate at `now`.
    async fn certify_everything(&mut self, now: Timestamp) -> BalanceCertificate {
        let left = u64::try_from(self.balance().await).unwrap();
        let cert = self
            .wallet
            .certificate(&self.issuer, left, now, &mut self.rng)
            .await;
        assert_eq!(cert.payload.available, eur(left));
        assert_eq!(self.balance().await, 0);
        cert
    }

    async fn released(&self, now: Timestamp) -> Vec<(CertificateSerial, Amount)> {
        self.issuer
            .release_expired(now, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|r| (r.serial, r.amount))
            .collect()
    }

    fn deadline(&self) -> Timestamp {
        self.issuer.settlement_deadline(&self.cert.payload)
    }

    fn expiry(&self) -> Timestamp {
        self.cert.payload.expires_at
    }
}

fn code(outcome: &RedemptionOutcome) -> &str {
    match outcome {
        RedemptionOutcome::Invalid { reason } => reason.code.as_str(),
        other => panic!("expected Invalid, got {other:?}"),
    }
}

fn accepted(amount: u64) -> RedemptionOutcome {
    RedemptionOutcome::Accepted {
        credited: eur(amount),
    }
}

#[tokio::test]
async fn the_upload_grace_is_published_in_the_config_and_defaults_to_a_week() {
    let s = scene(1).await;
    assert_eq!(s.issuer.config().upload_grace, DAY * 7);
    assert_eq!(s.deadline(), s.expiry().saturating_add(DAY * 7));
}

#[tokio::test]
async fn a_late_honest_record_is_paid_from_the_reservation_held_through_the_grace() {
    let mut s = scene(2).await;
    // Offline, before expiry: two sales under the certificate.
    let uploaded_late = s.pay(1_200);
    let handed_in = s.pay(300);

    // The clock passes expiry; the release job runs and releases nothing: the window is
    // open.
    let after_expiry = s.expiry().saturating_add(HOUR);
    assert_eq!(s.released(after_expiry).await, []);
    assert_eq!(s.reservation().await, i128::from(CERTIFIED));

    // The customer's device comes online, hands in its copy of the second sale and moves
    // everything else it has onto a new certificate. The copy is paid from the held
    // reservation, so all of the balance is still there to certify.
    let request = s.wallet.certificate_request(
        None,
        LockRules::default(),
        vec![handed_in.payload.record.clone()],
        &mut s.rng,
    );
    let second = s
        .issuer
        .issue_balance_certificate(&request, after_expiry, &mut s.rng)
        .await
        .unwrap();
    s.wallet.adopt(&second);
    assert_eq!(second.payload.available, eur(DEPOSITED - CERTIFIED));
    assert_eq!(s.balance().await, 0);
    assert_eq!(s.reservation().await, i128::from(CERTIFIED - 300));

    // The merchant, offline for almost the whole grace, uploads just before it ends.
    let upload_at = s.deadline().saturating_sub(MINUTE);
    assert_eq!(s.released(upload_at).await, []);
    assert_eq!(s.upload(&uploaded_late, upload_at).await, accepted(1_200));
    // Its copy of the handed-in sale was recorded once already.
    assert!(matches!(
        s.upload(&handed_in, upload_at).await,
        RedemptionOutcome::AlreadyAccepted { .. }
    ));
    assert_eq!(s.merchant().await, 1_500);
    assert_eq!(s.balance().await, 0, "the customer's balance is untouched");
    assert_eq!(s.reservation().await, i128::from(CERTIFIED - 1_500));
    let record_id = uploaded_late.payload.record.payload.record_id;
    let doc = s.issuer.record(record_id).await.unwrap().unwrap();
    assert_eq!(doc.paid_from_balance, 0, "paid from the reservation");
    assert!(s
        .issuer
        .frozen(s.wallet.account_id)
        .await
        .unwrap()
        .is_none());
    assert!(s.issuer.fraud_log(None, 10).await.unwrap().is_empty());

    // The window closes: the remainder goes back to the account, once.
    let serial = s.cert.payload.serial;
    assert_eq!(
        s.released(s.deadline()).await,
        [(serial, eur(CERTIFIED - 1_500))]
    );
    assert_eq!(s.released(s.deadline()).await, []);
    assert_eq!(s.balance().await, i128::from(CERTIFIED - 1_500));
    assert_eq!(s.reservation().await, 0);
    let release = s.issuer.release_of(serial).await.unwrap().unwrap();
    assert_eq!((release.released, release.at), (eur(1_500), s.deadline()));
}

#[tokio::test]
async fn after_the_grace_a_late_record_is_paid_only_from_what_the_balance_holds() {
    let mut s = scene(3).await;
    let covered = s.pay(500);
    let uncovered = s.pay(400);

    // Nobody uploads within the window: all of the reservation goes back.
    let serial = s.cert.payload.serial;
    assert_eq!(s.released(s.deadline()).await, [(serial, eur(CERTIFIED))]);
    assert_eq!(s.balance().await, i128::from(DEPOSITED));

    // A record uploaded after the window is paid from the balance while it covers it
    // (made within the certificate's limits: no fraud).
    let late = s.deadline().saturating_add(HOUR);
    assert_eq!(s.upload(&covered, late).await, accepted(500));
    assert_eq!(s.balance().await, i128::from(DEPOSITED - 500));
    let doc = s
        .issuer
        .record(covered.payload.record.payload.record_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(doc.paid_from_balance, 500);

    // The customer moved its balance onto a new certificate: the next late record finds
    // nothing, and is refused rather than driving the account into debt.
    s.certify_everything(late).await;
    let refused = s.upload(&uncovered, late).await;
    assert_eq!(code(&refused), "insufficient_funds");
    let RedemptionOutcome::Invalid { reason } = &refused else {
        unreachable!()
    };
    assert!(reason.message.contains("settlement window"), "{reason:?}");
    assert_eq!(s.balance().await, 0, "no debt");
    assert_eq!(s.merchant().await, 500);
    let uncovered_id = uncovered.payload.record.payload.record_id;
    assert!(s.issuer.record(uncovered_id).await.unwrap().is_none());
    assert!(s
        .issuer
        .frozen(s.wallet.account_id)
        .await
        .unwrap()
        .is_none());
    assert!(s.issuer.fraud_log(None, 10).await.unwrap().is_empty());

    // Nothing was recorded, so a later copy is judged again: once the balance covers it,
    // it is paid.
    s.wallet.deposit(&s.issuer, 1_000, &mut s.rng).await;
    assert_eq!(s.upload(&uncovered, late).await, accepted(400));
    assert_eq!(s.balance().await, 600);
    assert_eq!(s.merchant().await, 900);
    assert!(matches!(
        s.upload(&uncovered, late).await,
        RedemptionOutcome::AlreadyAccepted { .. }
    ));
}

#[tokio::test]
async fn a_refused_late_record_that_proves_equivocation_still_freezes_the_account() {
    let mut s = scene(4).await;
    let first_sequence = s.cert.payload.first_sequence;
    let sign = |s: &mut Scene, amount: u64| {
        let request = s.shop.request(amount, &mut s.rng);
        let record =
            s.wallet
                .sign_record(&s.cert, &request, first_sequence, amount, NOW, &mut s.rng);
        s.shop.countersign(&record, &mut s.rng)
    };
    let first = sign(&mut s, 100);
    let second = sign(&mut s, 200);
    assert_eq!(s.upload(&first, NOW).await, accepted(100));
    let serial = s.cert.payload.serial;
    assert_eq!(
        s.released(s.deadline()).await,
        [(serial, eur(CERTIFIED - 100))]
    );
    let late = s.deadline().saturating_add(HOUR);
    s.certify_everything(late).await;

    // Unpaid (the balance is empty), but the two records with one sequence number are
    // evidence whoever pays.
    assert_eq!(code(&s.upload(&second, late).await), "insufficient_funds");
    assert_eq!(s.balance().await, 0);
    assert_eq!(s.merchant().await, 100);
    assert!(s
        .issuer
        .frozen(s.wallet.account_id)
        .await
        .unwrap()
        .is_some());
    let log = s.issuer.fraud_log(None, 10).await.unwrap();
    let first_id = first.payload.record.payload.record_id;
    let second_id = second.payload.record.payload.record_id;
    assert!(
        log.iter().any(|(_, e)| matches!(
            &e.kind,
            FraudKind::Equivocation { first: Some(a), second: b, .. }
                if *a == first_id && *b == second_id
        )),
        "{log:?}"
    );
}

#[tokio::test]
async fn a_record_accepted_after_expiry_is_refused_within_the_grace_too() {
    let mut s = scene(5).await;
    let within_grace = s.expiry().saturating_add(HOUR);
    assert!(within_grace < s.deadline());

    // The device signs after expiry (the merchant's request and acceptance too).
    let mut shop = Shop::new(
        scrip_tokens::fixtures::merchant(1),
        s.shop.certificate.clone(),
    );
    let request = shop.offer(100, within_grace).request;
    let signed_late = s.wallet.pay(&s.cert, &request, within_grace, &mut s.rng);
    let receipt = CountersignedRecord::sign(
        CountersignedRecordPayload {
            record: signed_late,
            accepted_at: within_grace,
        },
        &shop.key,
        &mut s.rng,
    )
    .unwrap();
    assert_eq!(code(&s.upload(&receipt, within_grace).await), "expired");

    // A device clock set back does not help: the merchant accepted after expiry.
    let request = s.shop.request(100, &mut s.rng);
    let backdated = s.wallet.pay(&s.cert, &request, NOW, &mut s.rng);
    let receipt = CountersignedRecord::sign(
        CountersignedRecordPayload {
            record: backdated,
            accepted_at: within_grace,
        },
        &shop.key,
        &mut s.rng,
    )
    .unwrap();
    assert_eq!(code(&s.upload(&receipt, within_grace).await), "expired");

    // Neither touched the held reservation, the balance or the merchant.
    assert_eq!(s.reservation().await, i128::from(CERTIFIED));
    assert_eq!(s.balance().await, i128::from(DEPOSITED - CERTIFIED));
    assert_eq!(s.merchant().await, 0);
}

#[tokio::test]
async fn a_shorter_configured_grace_releases_sooner() {
    let config = scrip_issuer::IssuerConfig {
        upload_grace: HOUR * 2,
        ..scrip_issuer::IssuerConfig::default()
    };
    let issuer = issuer_with(MemoryStore::new(), config);
    let mut rng = rng(6);
    let mut wallet = RawWallet::open(&issuer, 1, &mut rng).await;
    wallet.deposit(&issuer, DEPOSITED, &mut rng).await;
    let cert = wallet.certificate(&issuer, CERTIFIED, NOW, &mut rng).await;
    let deadline = issuer.settlement_deadline(&cert.payload);
    assert_eq!(deadline, cert.payload.expires_at.saturating_add(HOUR * 2));
    let early = deadline.saturating_sub(Duration::from_millis(1));
    assert!(issuer.release_expired(early, 100).await.unwrap().is_empty());
    let released = issuer.release_expired(deadline, 100).await.unwrap();
    assert_eq!(released.len(), 1);
    assert_eq!(released[0].amount, eur(CERTIFIED));

    // A grace too long for the clock holds the reservation rather than releasing it.
    let config = scrip_issuer::IssuerConfig {
        upload_grace: Duration::MAX,
        ..scrip_issuer::IssuerConfig::default()
    };
    let issuer = issuer_with(MemoryStore::new(), config);
    let wallet = RawWallet::open(&issuer, 1, &mut rng).await;
    wallet.deposit(&issuer, DEPOSITED, &mut rng).await;
    let cert = wallet
        .request_certificate(&issuer, CERTIFIED, NOW, &mut rng)
        .await;
    assert_eq!(
        issuer.settlement_deadline(&cert.payload),
        Timestamp::from_unix_millis(u64::MAX)
    );
    let far = cert.payload.expires_at.saturating_add(DAY * 3_650);
    assert!(issuer.release_expired(far, 100).await.unwrap().is_empty());
}
