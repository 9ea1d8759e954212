//! Swaps: coins back into circulation. A holder hands in valid coins and blinded messages
//! for new blind coins of the same total (less the issuer's fee, zero by default); in one
//! atomic unit the issuer claims the old coins and signs the new ones.
//!
//! A swap is a bearer operation, like spending: it names no account and no device, and
//! is signed by nobody but the coins' issuer. What authorises it is holding the coins
//! whole (their spend ids, [`crate::Coin::spend_id`], are claimed), so a swap tells the
//! issuer nothing about who swapped, and the blinded outputs nothing about the new coins.
//! The same flow serves change (split coins while online), refresh (coins of a keyset that
//! stopped issuing, into the current one) and a merchant taking the coins it was paid into
//! its own purse.
//!
//! Idempotent by [`SwapRequest::request_key`], chosen at random by the holder: the same
//! request again (a retry after a lost answer) gets the same blind signatures back and
//! nothing is signed twice; the key with anything else is refused.
//!
//! Identified coins name their holder, so that a lost device's coins can be revoked and
//! reissued: a bearer swap of them would let whoever holds the device turn them into
//! untraceable blind coins. A swap that hands in identified coins is therefore sent as a
//! [`DeviceSwapRequest`]: the same [`SwapRequest`], signed by a device of the account the
//! coins name. It is as private as a blind withdrawal (the issuer knows who swapped, not
//! where the new coins go) and the answer is the same [`SwapReceipt`].
//!
//! A merchant taking the coin payments it accepted into its own purse sends a
//! [`MerchantSwapRequest`] instead: signed by the merchant, carrying the endorsed payments
//! as it would upload them for redemption. The issuer checks them exactly as for a
//! redemption and claims their coins exactly as a redemption would (the merchant as
//! claimant, each payment's digest), so the customer sees the payment settled and the
//! double-spend rules are unchanged; instead of crediting the merchant's account, it signs
//! the outputs.

use serde::{Deserialize, Serialize};

use crate::certificates::MerchantCertificatePayload;
use crate::codec;
use crate::keys::{AnswerSigner, BlindSignature, BlindedMessage, Device, Merchant};
use crate::signed::{message, signed_token};
use crate::{
    AccountId, Amount, Coin, CoinId, ContentDigest, DeviceId, EndorsedCoinPayment, Error,
    KeyDirectory, KeysetId, MerchantId, Nonce, Result, Timestamp,
};

/// Most coins handed in, and most coins asked for, in one swap.
pub const MAX_COINS_PER_SWAP: usize = 200;

/// A holder's request to swap `coins` for new blind coins of `keyset_id`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwapRequest {
    /// Chosen at random by the holder and kept with the request: a retry sends the very
    /// same request, and gets the first answer back.
    #[serde(with = "crate::bytes::array")]
    pub request_key: [u8; 32],
    /// The coins handed in (blind or identified, of any keyset still accepting them).
    pub coins: Vec<Coin>,
    /// The keyset to sign the new coins with (one issuing now, of the coins' currency).
    pub keyset_id: KeysetId,
    /// (denomination in minor units, blinded coin message) per new coin, as in a blind
    /// withdrawal.
    pub outputs: Vec<(u64, BlindedMessage)>,
}
message!(SwapRequest, tag: "swap-request");

impl SwapRequest {
    /// Total face value of the coins handed in. Fails on mixed currencies, on a coin listed
    /// twice, and on no coins or more than [`MAX_COINS_PER_SWAP`].
    pub fn input_total(&self) -> Result<Amount> {
        let first = self.coins.first().ok_or(Error::InvalidField {
            field: "coins",
            reason: "a swap of no coins",
        })?;
        if self.coins.len() > MAX_COINS_PER_SWAP {
            return Err(Error::InvalidField {
                field: "coins",
                reason: "more coins than one swap may hand in",
            });
        }
        let mut ids: Vec<CoinId> = self.coins.iter().map(Coin::id).collect();
        ids.sort_unstable();
        if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
            return Err(Error::DuplicateCoin(w[0]));
        }
        Amount::checked_sum(first.amount().currency, self.coins.iter().map(Coin::amount))
    }

    /// Total face value of the coins asked for, in minor units. Fails on no outputs or
    /// more than [`MAX_COINS_PER_SWAP`].
    pub fn output_total(&self) -> Result<u64> {
        if self.outputs.is_empty() || self.outputs.len() > MAX_COINS_PER_SWAP {
            return Err(Error::InvalidField {
                field: "outputs",
                reason: "a swap asks for 1 to 200 coins",
            });
        }
        self.outputs
            .iter()
            .try_fold(0u64, |acc, (v, _)| acc.checked_add(*v))
            .ok_or(Error::AmountOverflow)
    }

    /// Whether it hands in identified coins: then only a device of the account they name
    /// may send it, as a [`DeviceSwapRequest`].
    pub fn hands_in_identified(&self) -> bool {
        self.coins.iter().any(|c| matches!(c, Coin::Identified(_)))
    }
}

/// A holder's swap signed by one of its devices: how identified coins are swapped (every
/// identified coin must name the account's holder). Blind coins may be handed in beside
/// them. The issuer's answer is a [`SwapReceipt`] for [`Self::payload`]'s `swap`
/// ([`SwapReceipt::verify_for`]); a retry after a lost answer signs the same `swap` again
/// with a new time and nonce.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceSwapRequestPayload {
    /// The account whose holder the identified coins name.
    pub account_id: AccountId,
    /// The requesting device (of that account).
    pub device_id: DeviceId,
    /// The swap.
    pub swap: SwapRequest,
    /// When the device signed it.
    pub created_at: Timestamp,
    /// Random per request.
    #[serde(with = "crate::bytes::array")]
    pub nonce: Nonce,
}

signed_token!(
    /// A [`DeviceSwapRequestPayload`] signed by the device's key.
    DeviceSwapRequest = DeviceSwapRequestPayload,
    signer: Device,
    tag: "device-swap-request"
);

/// A merchant's swap of coin payments it accepted (and endorsed) for new blind coins.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MerchantSwapRequestPayload {
    /// The merchant.
    pub merchant_id: MerchantId,
    /// Chosen at random by the merchant and kept with the request: a retry sends the
    /// very same signed request.
    #[serde(with = "crate::bytes::array")]
    pub request_key: [u8; 32],
    /// The payments taken, as endorsed (what a redemption batch would carry).
    pub payments: Vec<EndorsedCoinPayment>,
    /// The keyset to sign the new coins with.
    pub keyset_id: KeysetId,
    /// (denomination in minor units, blinded coin message) per new coin.
    pub outputs: Vec<(u64, BlindedMessage)>,
}

signed_token!(
    /// A [`MerchantSwapRequestPayload`] signed by the merchant's key.
    MerchantSwapRequest = MerchantSwapRequestPayload,
    signer: Merchant,
    tag: "merchant-swap-request"
);

impl MerchantSwapRequest {
    /// Checks that `merchant` (whose certificate the caller verified) signed it, that it
    /// names that merchant, and its sizes: 1 to [`MAX_COINS_PER_SWAP`] coins over all its
    /// payments and outputs, no coin twice. The payments themselves are checked as for a
    /// redemption.
    pub fn verify(
        &self,
        merchant: &MerchantCertificatePayload,
    ) -> Result<&MerchantSwapRequestPayload> {
        if self.payload.merchant_id != merchant.merchant_id {
            return Err(Error::WrongMerchant);
        }
        self.check_shape()?;
        self.verify_signature(&merchant.merchant_key)
    }

    /// The sizes [`Self::verify`] checks, without the signature: every payment holds a
    /// coin, 1 to [`MAX_COINS_PER_SWAP`] coins over all its payments and outputs, no coin
    /// twice.
    pub fn check_shape(&self) -> Result<()> {
        let payload = &self.payload;
        if payload
            .payments
            .iter()
            .any(|p| p.payload.payment.coins.is_empty())
        {
            return Err(Error::InvalidField {
                field: "payments",
                reason: "a payment of no coins",
            });
        }
        let coins: Vec<CoinId> = payload
            .payments
            .iter()
            .flat_map(|p| p.payload.payment.coins.iter().map(Coin::id))
            .collect();
        if coins.is_empty() || coins.len() > MAX_COINS_PER_SWAP {
            return Err(Error::InvalidField {
                field: "payments",
                reason: "a swap hands in 1 to 200 coins",
            });
        }
        let mut sorted = coins;
        sorted.sort_unstable();
        if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
            return Err(Error::DuplicateCoin(w[0]));
        }
        if payload.outputs.is_empty() || payload.outputs.len() > MAX_COINS_PER_SWAP {
            return Err(Error::InvalidField {
                field: "outputs",
                reason: "a swap asks for 1 to 200 coins",
            });
        }
        Ok(())
    }
}

/// What a swap did.
// A message built once per answer: the size of the larger variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SwapOutcome {
    /// The coins handed in are spent; here are the new coins' blind signatures, in the
    /// order of the request's outputs.
    Swapped {
        /// The keyset signed with.
        keyset_id: KeysetId,
        /// One per output.
        signatures: Vec<BlindSignature>,
    },
    /// Some coins were spent before: nothing was claimed and nothing signed (the other
    /// coins are still good).
    DoubleSpent {
        /// When the first of them was spent.
        first_redeemed_at: Timestamp,
        /// The coins already spent.
        coins: Vec<CoinId>,
    },
}

/// The issuer's answer to a [`SwapRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwapReceiptPayload {
    /// `codec::digest` of the request it answers.
    pub request_digest: ContentDigest,
    /// What happened.
    pub outcome: SwapOutcome,
    /// When the issuer answered.
    pub answered_at: Timestamp,
}

signed_token!(
    /// A [`SwapReceiptPayload`] signed by the issuer's answer key: a holder drops coins
    /// as spent only on a signed answer.
    SwapReceipt = SwapReceiptPayload,
    signer: AnswerSigner,
    tag: "swap-receipt"
);

impl SwapReceipt {
    /// Checks the issuer's signature under the answer key `directory` lists at `now`, and
    /// that the receipt answers `request`: its digest, one signature per output, coins it
    /// names as spent among those handed in. Act on the outcome only after this.
    pub fn verify_for(
        &self,
        request: &SwapRequest,
        directory: &KeyDirectory,
        now: Timestamp,
    ) -> Result<&SwapReceiptPayload> {
        let handed_in: Vec<CoinId> = request.coins.iter().map(Coin::id).collect();
        self.verify_answer(
            codec::digest(request)?,
            request.keyset_id,
            request.outputs.len(),
            &handed_in,
            directory,
            now,
        )
    }

    /// [`Self::verify_for`] for a merchant's swap.
    pub fn verify_for_merchant(
        &self,
        request: &MerchantSwapRequest,
        directory: &KeyDirectory,
        now: Timestamp,
    ) -> Result<&SwapReceiptPayload> {
        let handed_in: Vec<CoinId> = request
            .payload
            .payments
            .iter()
            .flat_map(|p| p.payload.payment.coins.iter().map(Coin::id))
            .collect();
        self.verify_answer(
            codec::digest(request)?,
            request.payload.keyset_id,
            request.payload.outputs.len(),
            &handed_in,
            directory,
            now,
        )
    }

    fn verify_answer(
        &self,
        digest: ContentDigest,
        keyset: KeysetId,
        outputs: usize,
        handed_in: &[CoinId],
        directory: &KeyDirectory,
        now: Timestamp,
    ) -> Result<&SwapReceiptPayload> {
        let payload = self.verify_in(directory, now)?;
        if payload.request_digest != digest {
            return Err(Error::InvalidField {
                field: "request_digest",
                reason: "the answer is for another request",
            });
        }
        let consistent = match &payload.outcome {
            SwapOutcome::Swapped {
                keyset_id,
                signatures,
            } => *keyset_id == keyset && signatures.len() == outputs,
            SwapOutcome::DoubleSpent { coins, .. } => {
                !coins.is_empty() && coins.iter().all(|id| handed_in.contains(id))
            }
        };
        if !consistent {
            return Err(Error::InvalidField {
                field: "outcome",
                reason: "the answer does not fit the request",
            });
        }
        Ok(payload)
    }
}
