//! Who signed a request, proven before anything is remembered of it or done for it.
//!
//! Every signed request names its signer (a device, a merchant, or for a registration
//! the key it carries). [`Issuer::authenticate`] looks that signer up and checks the
//! signature under its key, and nothing else; the result, an [`Authenticated`] request,
//! is what the `*_authenticated` methods of the issuer act on. The server checks the
//! signature first and only then remembers the request's nonce, so a request nobody
//! signed leaves no trace (SPEC §8: "nothing is remembered for an unauthenticated
//! request"). Binding checks (the device belongs to the account, is not revoked, its
//! certificate is valid) come after, in the method that acts.

use async_trait::async_trait;
use scrip_stores::RecordStore;
use scrip_tokens::{
    codec, BalanceCertificateRequest, BlindWithdrawalRequest, ContentDigest, DepositConfirmation,
    DepositRequest, DeviceRegistration, DeviceSwapRequest, IdentifiedWithdrawalRequest,
    MerchantRegistration, Message, ReceivedBatch, RefundRequest, StatementRequest, SyncRequest,
    VoucherWithdrawalRequest,
};

use crate::api::DeviceEnrollment;
use crate::schema::{DeviceDoc, MerchantDoc};
use crate::{FundingSource, Issuer, Result};

mod sealed {
    pub trait Sealed {}
}

/// A request type whose signature names its signer. Sealed: the request types of the
/// API implement it.
#[async_trait]
pub trait SignedRequest: sealed::Sealed + Send + Sync + Sized {
    /// What the store holds of the signer: a device, a merchant, or nothing (`()`) for
    /// a self-signed registration.
    type Signer: Send + Sync;

    /// Looks up the signer the request names and checks the signature under its key;
    /// also returns `codec::digest` of the request where checking the signature took it
    /// in the same pass.
    #[doc(hidden)]
    async fn signer<S: RecordStore, F: FundingSource>(
        &self,
        issuer: &Issuer<S, F>,
    ) -> Result<(Self::Signer, Option<ContentDigest>)>;
}

/// A request whose signature verified under the key of the signer it names. Only
/// [`Issuer::authenticate`] makes one.
pub struct Authenticated<'r, R: SignedRequest> {
    request: &'r R,
    signer: R::Signer,
    digest: Option<ContentDigest>,
}

impl<'r, R: SignedRequest> Authenticated<'r, R> {
    /// The request.
    pub fn request(&self) -> &'r R {
        self.request
    }

    /// Its signer as the store knows it.
    pub fn signer(&self) -> &R::Signer {
        &self.signer
    }
}

impl<R: SignedRequest + Message> Authenticated<'_, R> {
    /// `codec::digest` of the request, what an answer names it by: taken while its
    /// signature was checked where the request is one signed object (a batch of a
    /// thousand coins is then encoded once, not twice), computed here otherwise.
    pub fn request_digest(&self) -> Result<ContentDigest> {
        match self.digest {
            Some(digest) => Ok(digest),
            None => Ok(codec::digest(self.request)?),
        }
    }
}

impl<S: RecordStore, F: FundingSource> Issuer<S, F> {
    /// Checks `request`'s signature under the key of the signer it names (a store read
    /// and one signature verification, no write). Unknown signers and bad signatures
    /// fail here; whether the signer may do what it asks is decided by the method that
    /// acts on the result.
    pub async fn authenticate<'r, R: SignedRequest>(
        &self,
        request: &'r R,
    ) -> Result<Authenticated<'r, R>> {
        let (signer, digest) = request.signer(self).await?;
        Ok(Authenticated {
            request,
            signer,
            digest,
        })
    }
}

macro_rules! signed_by_device {
    ($($ty:ty),* $(,)?) => {$(
        impl sealed::Sealed for $ty {}

        #[async_trait]
        impl SignedRequest for $ty {
            type Signer = DeviceDoc;

            async fn signer<S: RecordStore, F: FundingSource>(
                &self,
                issuer: &Issuer<S, F>,
            ) -> Result<(DeviceDoc, Option<ContentDigest>)> {
                let device = issuer.device(self.payload.device_id).await?;
                let (_, digest) =
                    self.verify_signature_with_digest(&device.certificate.payload.device_key)?;
                Ok((device, Some(digest)))
            }
        }
    )*};
}

signed_by_device!(
    DepositRequest,
    DepositConfirmation,
    BalanceCertificateRequest,
    SyncRequest,
    BlindWithdrawalRequest,
    IdentifiedWithdrawalRequest,
    StatementRequest,
    DeviceSwapRequest,
);

/// Requests a merchant signs with its key: redemption batches and its requests about its
/// own money (statement, payout).
macro_rules! signed_by_merchant {
    ($($ty:ty),* $(,)?) => {$(
        impl sealed::Sealed for $ty {}

        #[async_trait]
        impl SignedRequest for $ty {
            type Signer = MerchantDoc;

            async fn signer<S: RecordStore, F: FundingSource>(
                &self,
                issuer: &Issuer<S, F>,
            ) -> Result<(MerchantDoc, Option<ContentDigest>)> {
                let merchant = issuer.merchant(self.payload.merchant_id).await?;
                let (_, digest) = self
                    .verify_signature_with_digest(&merchant.certificate.payload.merchant_key)?;
                Ok((merchant, Some(digest)))
            }
        }
    )*};
}

signed_by_merchant!(
    scrip_tokens::MerchantSwapRequest,
    scrip_tokens::MerchantStatementRequest,
    scrip_tokens::PayoutRequest
);

impl sealed::Sealed for ReceivedBatch<'_> {}

/// A redemption batch is authenticated as received: its digests were taken from the
/// bytes the merchant sent (or by encoding it, for a batch that came otherwise).
#[async_trait]
impl SignedRequest for ReceivedBatch<'_> {
    type Signer = MerchantDoc;

    async fn signer<S: RecordStore, F: FundingSource>(
        &self,
        issuer: &Issuer<S, F>,
    ) -> Result<(MerchantDoc, Option<ContentDigest>)> {
        let merchant = issuer.merchant(self.batch().payload.merchant_id).await?;
        let (_, digest) =
            self.verify_signature_with_digest(&merchant.certificate.payload.merchant_key)?;
        Ok((merchant, Some(digest)))
    }
}

impl sealed::Sealed for RefundRequest {}

#[async_trait]
impl SignedRequest for RefundRequest {
    type Signer = MerchantDoc;

    async fn signer<S: RecordStore, F: FundingSource>(
        &self,
        issuer: &Issuer<S, F>,
    ) -> Result<(MerchantDoc, Option<ContentDigest>)> {
        let merchant = issuer.merchant(self.payload.merchant_id).await?;
        self.verify(&merchant.certificate.payload)?;
        Ok((merchant, None))
    }
}

impl sealed::Sealed for VoucherWithdrawalRequest {}

/// Unsigned itself: the merchant's signature on the voucher it carries is what is
/// checked, before anything is signed or stored for it.
#[async_trait]
impl SignedRequest for VoucherWithdrawalRequest {
    type Signer = MerchantDoc;

    async fn signer<S: RecordStore, F: FundingSource>(
        &self,
        issuer: &Issuer<S, F>,
    ) -> Result<(MerchantDoc, Option<ContentDigest>)> {
        let merchant = issuer.merchant(self.voucher.payload.merchant_id).await?;
        self.voucher.verify(&merchant.certificate.payload)?;
        Ok((merchant, None))
    }
}

/// Self-signed: the key that signs is the key being registered. Anyone can make one, so
/// admitting its nonce costs the sender a signature, not the server a lookup.
macro_rules! self_signed {
    ($($ty:ty),* $(,)?) => {$(
        impl sealed::Sealed for $ty {}

        #[async_trait]
        impl SignedRequest for $ty {
            type Signer = ();

            async fn signer<S: RecordStore, F: FundingSource>(
                &self,
                _issuer: &Issuer<S, F>,
            ) -> Result<((), Option<ContentDigest>)> {
                self.verify()?;
                Ok(((), None))
            }
        }
    )*};
}

self_signed!(DeviceRegistration, MerchantRegistration);

impl sealed::Sealed for DeviceEnrollment {}

/// Signed twice: by the new key (its registration) and by the approving device, which
/// is the signer that matters.
#[async_trait]
impl SignedRequest for DeviceEnrollment {
    type Signer = DeviceDoc;

    async fn signer<S: RecordStore, F: FundingSource>(
        &self,
        issuer: &Issuer<S, F>,
    ) -> Result<(DeviceDoc, Option<ContentDigest>)> {
        self.registration.verify()?;
        let approver = issuer
            .device(self.approval.payload.approving_device)
            .await?;
        self.approval
            .verify_signature(&approver.certificate.payload.device_key)?;
        Ok((approver, None))
    }
}
