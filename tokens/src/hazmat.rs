//! Hazardous materials: the message-level RFC 9474 operations (RSABSSA-SHA384-PSS-
//! Randomized) on arbitrary bytes. Wallets and issuers never need them: coins go through
//! [`PendingCoin`](crate::PendingCoin) and
//! [`DenominationSigningKey::sign_blinded`](crate::DenominationSigningKey::sign_blinded),
//! which fix the message to a coin's and check everything. These exist so the RFC's own
//! test vectors and other implementations' messages can be run through the same code;
//! misused (a message reused, a blinding kept), they void the unlinkability of coins.
//!
//! ```
//! use scrip_tokens::hazmat::Rfc9474;
//! # use scrip_tokens::fixtures;
//! let signer = fixtures::denomination(1).unwrap();
//! let key = signer.verifying_key();
//! let mut rng = rand::rng();
//! let blinding = key.blind_message(&mut rng, b"any bytes").unwrap();
//! let blind_signature = signer.sign_blinded(&mut rng, &blinding.blinded).unwrap();
//! let signature = key
//!     .finalize_message(&blind_signature, &blinding, b"any bytes")
//!     .unwrap();
//! key.verify_message(&signature, blinding.randomizer, b"any bytes").unwrap();
//! ```

use std::fmt;

use blind_rsa_signatures::{BlindingResult, MessageRandomizer};
use rand_core::CryptoRng;
use zeroize::Zeroizing;

use crate::keys::{BlindSignature, BlindedMessage, DenominationVerifyingKey, Signature};
use crate::{Error, Result};

/// The result of RFC 9474 `Blind` on one message: what to send the signer, the secret
/// needed to unblind its answer (wiped from memory on drop) and the message randomizer.
pub struct MessageBlinding {
    /// The blinded message for the signer.
    pub blinded: BlindedMessage,
    secret: Zeroizing<Vec<u8>>,
    /// The 32-byte randomizer prefixed to the message (`msg_prefix` in RFC 9474).
    pub randomizer: [u8; 32],
}

impl MessageBlinding {
    /// The unblinding secret (RFC 9474 `inv`, big-endian, modulus-sized).
    pub fn secret(&self) -> &[u8] {
        &self.secret
    }
}

impl fmt::Debug for MessageBlinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageBlinding")
            .field("blinded", &self.blinded)
            .finish_non_exhaustive()
    }
}

/// RFC 9474's `Blind`, `Finalize` and `Verify` on arbitrary messages, for a
/// denomination's verifying key. Import the trait to call them.
pub trait Rfc9474 {
    /// RFC 9474 `Blind` on an arbitrary message (RSABSSA-SHA384-PSS-Randomized): draws
    /// the 32-byte message randomizer, the 48-byte PSS salt and the blinding factor from
    /// `rng`, in that order.
    fn blind_message<G: CryptoRng + ?Sized>(
        &self,
        rng: &mut G,
        message: &[u8],
    ) -> Result<MessageBlinding>;

    /// RFC 9474 `Finalize`: unblinds the issuer's blind signature over a message blinded
    /// with [`Rfc9474::blind_message`] and checks the result.
    fn finalize_message(
        &self,
        blind_signature: &BlindSignature,
        blinding: &MessageBlinding,
        message: &[u8],
    ) -> Result<Signature>;

    /// RFC 9474 `Verify` of `signature` over `randomizer || message`.
    fn verify_message(
        &self,
        signature: &Signature,
        randomizer: [u8; 32],
        message: &[u8],
    ) -> Result<()>;
}

impl Rfc9474 for DenominationVerifyingKey {
    /// RFC 9474 `Blind` on an arbitrary message (RSABSSA-SHA384-PSS-Randomized): draws
    /// the 32-byte message randomizer, the 48-byte PSS salt and the blinding factor from
    /// `rng`, in that order. Coins use [`PendingCoin`](crate::PendingCoin), which calls
    /// this with the coin message; it is public so the RFC's own test vectors (and other
    /// implementations' messages) can be run through the same code.
    fn blind_message<G: CryptoRng + ?Sized>(
        &self,
        rng: &mut G,
        message: &[u8],
    ) -> Result<MessageBlinding> {
        let mut blinding = self.blind(rng, message)?;
        let randomizer = blinding
            .msg_randomizer
            .map(|r| r.0)
            .ok_or_else(|| Error::Blind("randomized variant returned no randomizer".into()))?;
        Ok(MessageBlinding {
            blinded: BlindedMessage(std::mem::take(&mut blinding.blind_message.0)),
            secret: Zeroizing::new(std::mem::take(&mut blinding.secret.0)),
            randomizer,
        })
    }

    /// RFC 9474 `Finalize`: unblinds the issuer's blind signature over a message blinded
    /// with [`Rfc9474::blind_message`] and checks the result.
    fn finalize_message(
        &self,
        blind_signature: &BlindSignature,
        blinding: &MessageBlinding,
        message: &[u8],
    ) -> Result<Signature> {
        let result = BlindingResult {
            blind_message: blind_rsa_signatures::BlindMessage(blinding.blinded.0.clone()),
            secret: blind_rsa_signatures::Secret(blinding.secret.to_vec()),
            msg_randomizer: Some(MessageRandomizer(blinding.randomizer)),
        };
        self.finalize(blind_signature, &result, message)
    }

    /// RFC 9474 `Verify` of `signature` over `randomizer || message`.
    fn verify_message(
        &self,
        signature: &Signature,
        randomizer: [u8; 32],
        message: &[u8],
    ) -> Result<()> {
        self.verify(signature, randomizer, message)
    }
}
