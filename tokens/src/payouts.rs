//! A merchant's own money at the issuer: its statement (what it was credited for
//! redemptions, what it refunded, what was paid out to its bank) and its payouts.
//!
//! Both requests are signed by the merchant's key and carry a creation time and a nonce
//! like every other request; both answers are signed by the issuer's answer key and name
//! the request they answer by digest, so a merchant acts only on an answer it can check
//! (`verify_for`) and an old answer cannot stand in for a new request.

use serde::{Deserialize, Serialize};

use crate::answers::StatementEntry;
use crate::keys::{AnswerSigner, Merchant};
use crate::messages::Nonce;
use crate::signed::signed_token;
use crate::{
    codec, Amount, ContentDigest, Currency, Error, KeyDirectory, MerchantId, PayoutId, Result,
    Timestamp,
};

/// Longest bank reference a payout receipt carries (bytes of UTF-8): the issuer refuses a
/// payout sink's longer reference rather than truncating what the bank said.
pub const MAX_PAYOUT_REFERENCE_LEN: usize = 128;

/// Longest reason a declined payout carries (bytes of UTF-8); the issuer shortens longer
/// ones at a character boundary.
pub const MAX_PAYOUT_REASON_LEN: usize = 256;

/// A merchant asks for its ledger (what the issuer owes it) in one currency.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MerchantStatementRequestPayload {
    /// The merchant.
    pub merchant_id: MerchantId,
    /// The currency.
    pub currency: Currency,
    /// Entries after this ledger sequence number (paging), or from the start.
    pub after_seq: Option<u64>,
    /// Most entries wanted (the issuer caps it at `MAX_STATEMENT_ENTRIES`, and answers at
    /// least one).
    pub limit: u32,
    /// When the merchant created the request.
    pub created_at: Timestamp,
    /// Random per request.
    #[serde(with = "crate::bytes::array")]
    pub nonce: Nonce,
}

signed_token!(
    /// A [`MerchantStatementRequestPayload`] signed by the merchant's key.
    MerchantStatementRequest = MerchantStatementRequestPayload,
    signer: Merchant,
    tag: "merchant-statement-request"
);

/// A merchant's statement in one currency: every movement of what the issuer owes it.
/// Memos say what each entry was: `coins redeemed` and `withdrawal record...` (credits
/// for redemptions), `refund...` (refunds to customers), `payout <id>` (a payout taken
/// from the balance) and `payout <id> declined` (a declined payout given back).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MerchantStatementPayload {
    /// The merchant.
    pub merchant_id: MerchantId,
    /// `codec::digest` of the signed request it answers.
    pub request_digest: ContentDigest,
    /// The currency.
    pub currency: Currency,
    /// What the issuer owes the merchant now, in minor units.
    pub balance: i128,
    /// Entries after the requested sequence number, oldest first.
    pub entries: Vec<StatementEntry>,
    /// When the issuer answered.
    pub answered_at: Timestamp,
}

signed_token!(
    /// A [`MerchantStatementPayload`] signed by the issuer's answer key.
    MerchantStatement = MerchantStatementPayload,
    signer: AnswerSigner,
    tag: "merchant-statement"
);

/// A merchant asks the issuer to pay `amount` of what it owes the merchant to the
/// merchant's bank account (the one the operator keeps on file for it: a request cannot
/// name another). The merchant picks `payout_id` and keeps it until it holds the receipt:
/// sending the same payout again (signed again, with a new nonce) pays once and answers
/// the same; the same id with another amount is refused (`payout_id_reused`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutRequestPayload {
    /// The merchant.
    pub merchant_id: MerchantId,
    /// The payout, chosen by the merchant.
    pub payout_id: PayoutId,
    /// How much to pay out.
    pub amount: Amount,
    /// When the merchant created the request.
    pub created_at: Timestamp,
    /// Random per request.
    #[serde(with = "crate::bytes::array")]
    pub nonce: Nonce,
}

signed_token!(
    /// A [`PayoutRequestPayload`] signed by the merchant's key.
    PayoutRequest = PayoutRequestPayload,
    signer: Merchant,
    tag: "payout-request"
);

/// Where a payout ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PayoutState {
    /// The bank took the payment: the amount left the merchant's balance for good.
    Paid {
        /// The bank's (payout sink's) reference of the transfer, at most
        /// [`MAX_PAYOUT_REFERENCE_LEN`] bytes.
        reference: String,
        /// When the issuer recorded it paid.
        paid_at: Timestamp,
    },
    /// The bank refused the payment for good: the amount is back on the merchant's
    /// balance. The payout id stays used; pay out again under a new one.
    Declined {
        /// Why, at most [`MAX_PAYOUT_REASON_LEN`] bytes.
        reason: String,
        /// When the issuer recorded the refusal.
        declined_at: Timestamp,
    },
}

/// The issuer's answer to a payout request. A payout whose bank could not be reached has
/// no receipt yet: the server answers `503 payout_unavailable`, the amount stays taken
/// from the balance (pending), and sending the same payout again finishes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutReceiptPayload {
    /// The merchant.
    pub merchant_id: MerchantId,
    /// The payout.
    pub payout_id: PayoutId,
    /// `codec::digest` of the signed request it answers.
    pub request_digest: ContentDigest,
    /// The amount.
    pub amount: Amount,
    /// Where it ended.
    pub state: PayoutState,
    /// When the issuer answered.
    pub answered_at: Timestamp,
}

signed_token!(
    /// A [`PayoutReceiptPayload`] signed by the issuer's answer key.
    PayoutReceipt = PayoutReceiptPayload,
    signer: AnswerSigner,
    tag: "payout-receipt"
);

/// The answer names another request than the one it is checked against.
fn answers_another() -> Error {
    Error::InvalidField {
        field: "request_digest",
        reason: "the answer is for another request",
    }
}

impl MerchantStatement {
    /// Checks the issuer's signature under the answer key `directory` lists at `now`, and
    /// that the statement answers `request` (its digest, merchant and currency, no more
    /// entries than asked for).
    pub fn verify_for(
        &self,
        request: &MerchantStatementRequest,
        directory: &KeyDirectory,
        now: Timestamp,
    ) -> Result<&MerchantStatementPayload> {
        let payload = self.verify_in(directory, now)?;
        if payload.merchant_id != request.payload.merchant_id {
            return Err(Error::WrongMerchant);
        }
        let most = usize::try_from(request.payload.limit.max(1)).unwrap_or(usize::MAX);
        if payload.request_digest != codec::digest(request)?
            || payload.currency != request.payload.currency
            || payload.entries.len() > most
        {
            return Err(answers_another());
        }
        Ok(payload)
    }
}

impl PayoutReceipt {
    /// Checks the issuer's signature under the answer key `directory` lists at `now`, and
    /// that the receipt answers `request` (its digest, merchant, payout id and amount).
    pub fn verify_for(
        &self,
        request: &PayoutRequest,
        directory: &KeyDirectory,
        now: Timestamp,
    ) -> Result<&PayoutReceiptPayload> {
        let payload = self.verify_in(directory, now)?;
        if payload.merchant_id != request.payload.merchant_id {
            return Err(Error::WrongMerchant);
        }
        if payload.request_digest != codec::digest(request)?
            || payload.payout_id != request.payload.payout_id
            || payload.amount != request.payload.amount
        {
            return Err(answers_another());
        }
        let too_long = match &payload.state {
            PayoutState::Paid { reference, .. } => reference.len() > MAX_PAYOUT_REFERENCE_LEN,
            PayoutState::Declined { reason, .. } => reason.len() > MAX_PAYOUT_REASON_LEN,
        };
        if too_long {
            return Err(Error::InvalidField {
                field: "state",
                reason: "a reference or reason longer than allowed",
            });
        }
        Ok(payload)
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;
    use crate::fixtures;

    fn payout_request(rng: &mut rand::rngs::StdRng) -> PayoutRequest {
        PayoutRequest::sign(
            PayoutRequestPayload {
                merchant_id: MerchantId(uuid::Uuid::from_u128(5)),
                payout_id: PayoutId(uuid::Uuid::from_u128(6)),
                amount: Amount::new(700, Currency::EUR),
                created_at: fixtures::NOW,
                nonce: [3; 16],
            },
            &fixtures::merchant(1),
            rng,
        )
        .unwrap()
    }

    #[test]
    fn payout_requests_and_receipts_round_trip_through_the_codec() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let request = payout_request(&mut rng);
        let bytes = request.to_bytes().unwrap();
        assert_eq!(PayoutRequest::from_bytes(&bytes).unwrap(), request);
        let receipt = PayoutReceiptPayload {
            merchant_id: request.payload.merchant_id,
            payout_id: request.payload.payout_id,
            request_digest: codec::digest(&request).unwrap(),
            amount: request.payload.amount,
            state: PayoutState::Declined {
                reason: "account closed".into(),
                declined_at: fixtures::NOW,
            },
            answered_at: fixtures::NOW,
        };
        let encoded = codec::encode(&receipt).unwrap();
        assert_eq!(
            codec::decode::<PayoutReceiptPayload>(&encoded).unwrap(),
            receipt
        );
        assert!(codec::decode::<PayoutReceiptPayload>(&encoded[..encoded.len() - 1]).is_err());
        let json = serde_json::to_string(&request).unwrap();
        assert_eq!(
            serde_json::from_str::<PayoutRequest>(&json).unwrap(),
            request
        );
    }

    proptest::proptest! {
        #[test]
        fn merchant_statements_round_trip(
            balance in proptest::prelude::any::<i128>(),
            entries in proptest::collection::vec(
                (proptest::prelude::any::<u64>(), proptest::prelude::any::<i128>(), ".{0,40}"),
                0..8,
            ),
            after in proptest::option::of(proptest::prelude::any::<u64>()),
        ) {
            let statement = MerchantStatementPayload {
                merchant_id: MerchantId(uuid::Uuid::from_u128(5)),
                request_digest: ContentDigest::of(b"request"),
                currency: Currency::EUR,
                balance,
                entries: entries
                    .into_iter()
                    .map(|(seq, delta, memo)| StatementEntry {
                        seq,
                        at: fixtures::NOW,
                        delta,
                        balance_after: delta,
                        memo,
                    })
                    .collect(),
                answered_at: Timestamp::from_unix_millis(after.unwrap_or(0)),
            };
            let bytes = codec::encode(&statement).unwrap();
            proptest::prop_assert_eq!(&codec::decode::<MerchantStatementPayload>(&bytes).unwrap(), &statement);
            let json = serde_json::to_string(&statement).unwrap();
            proptest::prop_assert_eq!(serde_json::from_str::<MerchantStatementPayload>(&json).unwrap(), statement);
        }
    }
}
