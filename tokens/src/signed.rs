//! `Signed<P>`: a payload, the id of the key that signed it, and the signature over the
//! payload's canonical encoding (which starts with the payload type's domain tag).

use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};

use crate::codec::{self, Message};
use crate::keys::{IssuerRole, Role, Signature, SigningKey, VerifyingKey};
use crate::{ContentDigest, Error, KeyDirectory, KeyId, Result, Timestamp};

pub(crate) mod sealed {
    pub trait Sealed {}
}

/// A payload type that is signed. Its [`Message::TAG`] is the signature's domain tag.
/// Sealed: every signed type is declared in this crate, so tags cannot collide.
pub trait SignedPayload: Message + sealed::Sealed {
    /// The role whose key signs this payload.
    type Signer: Role;
    /// Domain tag of the encoded `Signed<Self>` (payload + key id + signature).
    const SIGNED_TAG: &'static str;
}

/// A signed object: `payload`, the [`KeyId`] of the signer, and an RSA-PSS-SHA256
/// signature over `encode(payload)` = `tag || 0x00 || version || bincode(payload)`.
///
/// The key id is a lookup hint and is not signed; verification fails unless the key it
/// names is the key the signature verifies under, so altering it is detected too.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signed<P> {
    /// What was signed.
    pub payload: P,
    /// The signer's key id.
    pub key_id: KeyId,
    /// The signature over the payload's canonical encoding.
    pub signature: Signature,
}

impl<P: SignedPayload> Message for Signed<P> {
    const TAG: &'static str = P::SIGNED_TAG;
    const VERSION: u16 = P::VERSION;
}

impl<P: SignedPayload> Signed<P> {
    /// Signs `payload` with `key`.
    pub fn sign<G: CryptoRng + ?Sized>(
        payload: P,
        key: &SigningKey<P::Signer>,
        rng: &mut G,
    ) -> Result<Self> {
        let signature = key.sign_raw(rng, &codec::encode(&payload)?)?;
        Ok(Signed {
            payload,
            key_id: key.key_id(),
            signature,
        })
    }

    /// The bytes the signature covers.
    pub fn signed_bytes(&self) -> Result<Vec<u8>> {
        codec::encode(&self.payload)
    }

    /// Checks **only the signature** under `key` and returns the payload. Fails with
    /// [`Error::UnknownKey`] if the object names another key, [`Error::BadSignature`] if
    /// the signature does not verify.
    ///
    /// Each token type also has a `verify` method that adds what its receiver must check
    /// (validity window, account and device binding, merchant binding); use that one.
    pub fn verify_signature(&self, key: &VerifyingKey<P::Signer>) -> Result<&P> {
        self.check_key_id(key)?;
        // The payload is hashed as it is encoded: a redemption batch of a thousand coins
        // is never copied into a buffer just to be hashed.
        key.verify_raw_digest(&codec::digest(&self.payload)?.0, &self.signature)?;
        Ok(&self.payload)
    }

    /// [`Self::verify_signature`], also returning [`codec::digest`] of the whole signed
    /// object: what an answer names the request by (a redemption report's
    /// `batch_digest`, a receipt's `request_digest`). Both digests come from one
    /// encoding pass over the payload, where checking the signature and then naming the
    /// request would encode a thousand-coin batch twice.
    pub fn verify_signature_with_digest(
        &self,
        key: &VerifyingKey<P::Signer>,
    ) -> Result<(&P, ContentDigest)> {
        self.check_key_id(key)?;
        // The object's encoding is its fields in order: the payload, then the key id and
        // the signature.
        let (whole, payload) = codec::digest_with_leading::<Self, P, _>(
            &self.payload,
            &(&self.key_id, &self.signature),
        )?;
        key.verify_raw_digest(&payload.0, &self.signature)?;
        Ok((&self.payload, whole))
    }

    /// [`Self::verify_signature`] for a receiver that already holds the payload's digest
    /// (taken from the bytes it received, see [`crate::ReceivedBatch`]).
    pub(crate) fn verify_signature_over(
        &self,
        key: &VerifyingKey<P::Signer>,
        payload_digest: &ContentDigest,
    ) -> Result<&P> {
        self.check_key_id(key)?;
        key.verify_raw_digest(&payload_digest.0, &self.signature)?;
        Ok(&self.payload)
    }

    /// Fails with [`Error::UnknownKey`] if the object names another key than `key`: checked
    /// before any hashing, by every way of verifying a signed object.
    pub(crate) fn check_key_id(&self, key: &VerifyingKey<P::Signer>) -> Result<()> {
        if self.key_id != key.key_id() {
            return Err(Error::UnknownKey(self.key_id));
        }
        Ok(())
    }

    /// Canonical encoding of the whole signed object (see [`codec::encode`]).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        codec::encode(self)
    }

    /// Decodes a signed object from untrusted bytes. This does not verify the signature.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        codec::decode(bytes)
    }
}

impl<P: SignedPayload> Signed<P>
where
    P::Signer: IssuerRole,
{
    /// Checks the signature under the issuer key the directory lists for the signer role,
    /// which must be valid at `now`, and returns the payload.
    pub fn verify_in(&self, directory: &KeyDirectory, now: Timestamp) -> Result<&P> {
        let key = directory.issuer_key::<P::Signer>(self.key_id, now)?;
        self.verify_signature(&key)
    }
}

/// Declares the codec identity of a payload type and names its signed form.
macro_rules! signed_token {
    ($(#[$doc:meta])* $alias:ident = $payload:ident, signer: $signer:ty, tag: $tag:literal) => {
        impl $crate::codec::Message for $payload {
            const TAG: &'static str = concat!("scrip/", $tag, "/v1");
            const VERSION: u16 = 1;
        }
        impl $crate::signed::sealed::Sealed for $payload {}
        impl $crate::signed::SignedPayload for $payload {
            type Signer = $signer;
            const SIGNED_TAG: &'static str = concat!("scrip/signed/", $tag, "/v1");
        }
        $(#[$doc])*
        pub type $alias = $crate::signed::Signed<$payload>;
    };
}

/// Declares the codec identity of an unsigned message type.
macro_rules! message {
    ($ty:ty, tag: $tag:literal) => {
        impl $crate::codec::Message for $ty {
            const TAG: &'static str = concat!("scrip/", $tag, "/v1");
            const VERSION: u16 = 1;
        }
    };
}

pub(crate) use {message, signed_token};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;
    use crate::*;
    use rand::SeedableRng;

    /// Every message type's tag. A new type must be added here: the test below then proves
    /// its tag is distinct and its signatures do not transfer.
    const ALL_TAGS: [&str; 86] = [
        AccountCertificatePayload::TAG,
        MerchantCertificatePayload::TAG,
        BalanceCertificatePayload::TAG,
        PaymentRequestPayload::TAG,
        WithdrawalRecordPayload::TAG,
        CountersignedRecordPayload::TAG,
        DepositRequestPayload::TAG,
        DepositRecordPayload::TAG,
        DepositConfirmationPayload::TAG,
        IdentifiedCoinPayload::TAG,
        EndorsedCoinPaymentPayload::TAG,
        BlindCoinMessage::TAG,
        AccountCertificate::TAG,
        MerchantCertificate::TAG,
        BalanceCertificate::TAG,
        PaymentRequest::TAG,
        WithdrawalRecord::TAG,
        CountersignedRecord::TAG,
        DepositRequest::TAG,
        DepositRecord::TAG,
        DepositConfirmation::TAG,
        IdentifiedCoin::TAG,
        EndorsedCoinPayment::TAG,
        Coin::TAG,
        CoinPayment::TAG,
        PendingCoin::TAG,
        KeyDirectory::TAG,
        SignedKeyDirectory::TAG,
        DeviceRegistrationPayload::TAG,
        DeviceRegistration::TAG,
        DeviceApprovalPayload::TAG,
        DeviceApproval::TAG,
        MerchantRegistrationPayload::TAG,
        MerchantRegistration::TAG,
        BalanceCertificateRequestPayload::TAG,
        BalanceCertificateRequest::TAG,
        BlindWithdrawalRequestPayload::TAG,
        BlindWithdrawalRequest::TAG,
        BlindWithdrawalResponse::TAG,
        IdentifiedWithdrawalRequestPayload::TAG,
        IdentifiedWithdrawalRequest::TAG,
        IdentifiedWithdrawalResponse::TAG,
        RedemptionBatchPayload::TAG,
        RedemptionBatch::TAG,
        RedemptionReportPayload::TAG,
        RedemptionReport::TAG,
        MerchantOffer::TAG,
        PaymentAnswer::TAG,
        PaymentReceipt::TAG,
        PaymentRejectionPayload::TAG,
        PaymentRejection::TAG,
        MerchantReply::TAG,
        SyncRequestPayload::TAG,
        SyncRequest::TAG,
        SyncReportPayload::TAG,
        SyncReport::TAG,
        StatementRequestPayload::TAG,
        StatementRequest::TAG,
        StatementPayload::TAG,
        Statement::TAG,
        RevocationListPayload::TAG,
        RevocationList::TAG,
        RevocationCache::TAG,
        <crate::directory::KeysetIdInput as Message>::TAG,
        MerchantStatementRequestPayload::TAG,
        MerchantStatementRequest::TAG,
        MerchantStatementPayload::TAG,
        MerchantStatement::TAG,
        PayoutRequestPayload::TAG,
        PayoutRequest::TAG,
        PayoutReceiptPayload::TAG,
        PayoutReceipt::TAG,
        RefundRequestPayload::TAG,
        RefundRequest::TAG,
        RefundVoucherPayload::TAG,
        RefundVoucher::TAG,
        VoucherWithdrawalRequest::TAG,
        RefundReceiptPayload::TAG,
        RefundReceipt::TAG,
        SwapRequest::TAG,
        SwapReceiptPayload::TAG,
        SwapReceipt::TAG,
        MerchantSwapRequestPayload::TAG,
        MerchantSwapRequest::TAG,
        DeviceSwapRequestPayload::TAG,
        DeviceSwapRequest::TAG,
    ];

    fn header(tag: &str) -> Vec<u8> {
        let mut h = tag.as_bytes().to_vec();
        h.push(0);
        h.extend_from_slice(&1u16.to_le_bytes());
        h
    }

    #[test]
    fn tags_are_distinct_and_no_header_prefixes_another() {
        for (i, a) in ALL_TAGS.iter().enumerate() {
            assert!(
                a.is_ascii() && !a.contains('\0') && a.starts_with("scrip/"),
                "{a}"
            );
            for (j, b) in ALL_TAGS.iter().enumerate() {
                if i != j {
                    assert!(!header(b).starts_with(&header(a)), "{a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn identical_payload_bytes_under_another_tag_do_not_verify() {
        // The strongest form of cross-type replay: the attacker finds a payload whose
        // bincode bytes are valid as two types. The domain tag still tells them apart.
        let key = fixtures::device(1);
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let body = b"identical payload bytes".to_vec();
        let mut checked = 0;
        for a in ALL_TAGS {
            let signed_a = [header(a), body.clone()].concat();
            let sig = key.sign_raw(&mut rng, &signed_a).unwrap();
            assert_eq!(key.verifying_key().verify_raw(&signed_a, &sig), Ok(()));
            for b in ALL_TAGS.iter().filter(|b| **b != a) {
                let signed_b = [header(b), body.clone()].concat();
                assert_eq!(
                    key.verifying_key().verify_raw(&signed_b, &sig),
                    Err(Error::BadSignature),
                    "{a} signature verified as {b}"
                );
                checked += 1;
            }
        }
        assert_eq!(checked, ALL_TAGS.len() * (ALL_TAGS.len() - 1));
    }
}
