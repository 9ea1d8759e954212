//! Issue 17, requirement 3, on the point of sale: the merchant asks for its statement and
//! for payouts, and believes only answers the issuer signed for its own request.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::sync::Arc;

use async_trait::async_trait;
use common::*;
use scrip_issuer::InMemoryPayouts;
use scrip_merchant::{ClientError, IssuerClient, MerchantError};
use scrip_tokens::fixtures::NOW;
use scrip_tokens::*;
use scrip_wallet::{CertificateOptions, PayWith};

/// The issuer core with a bank behind it; `stale` answers every statement and payout with
/// the answer to the first request it saw (an attacker replaying an old answer).
struct WithBank {
    inner: InProcess,
    bank: InMemoryPayouts,
    stale: bool,
    first: std::sync::Mutex<(Option<MerchantStatement>, Option<PayoutReceipt>)>,
}

fn refused(e: scrip_issuer::IssuerError) -> ClientError {
    ClientError::Refused {
        code: e.code(),
        message: e.to_string(),
    }
}

#[async_trait]
impl IssuerClient for WithBank {
    async fn key_directory(&self) -> Result<SignedKeyDirectory, ClientError> {
        self.inner.key_directory().await
    }

    async fn redeem(&self, batch: &RedemptionBatch) -> Result<RedemptionReport, ClientError> {
        self.inner.redeem(batch).await
    }

    async fn revocations(&self, since: Option<u64>) -> Result<RevocationList, ClientError> {
        self.inner.revocations(since).await
    }

    async fn merchant_statement(
        &self,
        request: &MerchantStatementRequest,
    ) -> Result<MerchantStatement, ClientError> {
        let issuer = &self.inner.issuer;
        let now = self.inner.now;
        let statement = issuer
            .merchant_statement(request, now)
            .await
            .map_err(refused)?;
        let signed = issuer
            .sign_answer(statement, now, &mut rng(5))
            .map_err(refused)?;
        let mut first = self.first.lock().unwrap();
        let first = first.0.get_or_insert(signed.clone());
        Ok(if self.stale { first.clone() } else { signed })
    }

    async fn payout(&self, request: &PayoutRequest) -> Result<PayoutReceipt, ClientError> {
        let issuer = &self.inner.issuer;
        let now = self.inner.now;
        let receipt = issuer
            .payout(request, &self.bank, now)
            .await
            .map_err(refused)?;
        let signed = issuer
            .sign_answer(receipt, now, &mut rng(6))
            .map_err(refused)?;
        let mut first = self.first.lock().unwrap();
        let first = first.1.get_or_insert(signed.clone());
        Ok(if self.stale { first.clone() } else { signed })
    }
}

fn with_bank(issuer: &Arc<TestIssuer>, stale: bool) -> WithBank {
    WithBank {
        inner: client(issuer, at(60)),
        bank: InMemoryPayouts::new(),
        stale,
        first: std::sync::Mutex::default(),
    }
}

/// A point of sale paid 1 250 by a phone, settled with the issuer.
async fn paid_shop(
    issuer: &Arc<TestIssuer>,
) -> scrip_merchant::Merchant<scrip_stores::MemoryStore> {
    let merchant = shop(issuer, 1, 100_000).await;
    let mut phone = Phone::open(issuer, 1, 10_000, 1).await;
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
    assert!(is_receipt(
        &pay(&mut phone, &merchant, 1_250, PayWith::Record, at(5)).await
    ));
    let summary = merchant
        .sync(&client(issuer, at(60)), at(60), &mut rng(2))
        .await
        .unwrap();
    assert_eq!(summary.accepted, 1);
    merchant
}

#[tokio::test]
async fn a_merchant_reads_its_statement_and_is_paid_out_once_per_payout_id() {
    let issuer = issuer();
    let merchant = paid_shop(&issuer).await;
    let bank = with_bank(&issuer, false);
    let mut rng = rng(3);

    let statement = merchant
        .statement(&bank, EUR, None, 10, at(60), &mut rng)
        .await
        .unwrap();
    assert_eq!(statement.balance, 1_250);
    assert_eq!(statement.entries.len(), 1);
    assert_eq!(statement.entries[0].delta, 1_250);

    let id = PayoutId::random(&mut rng);
    let receipt = merchant
        .payout(&bank, id, eur(1_000), at(60), &mut rng)
        .await
        .unwrap();
    assert!(
        matches!(receipt.state, PayoutState::Paid { .. }),
        "{receipt:?}"
    );
    // The answer was lost; the terminal asks again under the same id.
    let again = merchant
        .payout(&bank, id, eur(1_000), at(60), &mut rng)
        .await
        .unwrap();
    assert_eq!(again.state, receipt.state);
    assert_eq!(bank.bank.paid().len(), 1);

    let statement = merchant
        .statement(
            &bank,
            EUR,
            Some(statement.entries[0].seq),
            10,
            at(60),
            &mut rng,
        )
        .await
        .unwrap();
    assert_eq!(statement.balance, 250);
    assert_eq!(statement.entries.len(), 1);
    assert_eq!(statement.entries[0].memo, format!("payout {id}"));

    // More than the issuer owes: refused by the issuer, with its code.
    match merchant
        .payout(
            &bank,
            PayoutId::random(&mut rng),
            eur(251),
            at(60),
            &mut rng,
        )
        .await
    {
        Err(MerchantError::Client(ClientError::Refused { code, .. })) => {
            assert_eq!(code, ReasonCode::InsufficientFunds)
        }
        other => panic!("{other:?}"),
    }
    // Nothing to pay out is not a request at all.
    assert!(matches!(
        merchant
            .payout(&bank, PayoutId::random(&mut rng), eur(0), at(60), &mut rng)
            .await,
        Err(MerchantError::ZeroAmount)
    ));
}

#[tokio::test]
async fn an_old_answer_replayed_for_a_new_request_is_not_believed() {
    let issuer = issuer();
    let merchant = paid_shop(&issuer).await;
    let bank = with_bank(&issuer, true);
    let mut rng = rng(4);

    merchant
        .statement(&bank, EUR, None, 10, at(60), &mut rng)
        .await
        .unwrap();
    // The issuer's genuine statement, but for the first request: refused.
    let replayed = merchant
        .statement(&bank, EUR, None, 10, at(60), &mut rng)
        .await;
    assert!(
        matches!(replayed, Err(MerchantError::UnverifiedAnswer(_))),
        "{replayed:?}"
    );

    let paid = merchant
        .payout(
            &bank,
            PayoutId::random(&mut rng),
            eur(100),
            at(60),
            &mut rng,
        )
        .await
        .unwrap();
    assert!(matches!(paid.state, PayoutState::Paid { .. }));
    // A second payout answered with the first one's receipt: "paid" is not believed.
    let replayed = merchant
        .payout(
            &bank,
            PayoutId::random(&mut rng),
            eur(100),
            at(60),
            &mut rng,
        )
        .await;
    assert!(
        matches!(replayed, Err(MerchantError::UnverifiedAnswer(_))),
        "{replayed:?}"
    );
}
