//! Blind-signature keys of one coin denomination: RFC 9474 RSABSSA-SHA384-PSS-Randomized
//! (`blind-rsa-signatures`). Wallets and the issuer use [`PendingCoin`](crate::PendingCoin)
//! and [`DenominationSigningKey::sign_blinded`]; the message-level RFC 9474 operations
//! live in [`crate::hazmat`], for test vectors and interoperability checks.

use std::fmt;
use std::sync::Arc;

use blind_rsa_signatures::BlindingResult;
use rand_core::CryptoRng;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

use super::backend::{Backend, BlindSigner};
use super::pss::{
    checked_private, der_to_pem, generate_private, parse_private_der, parse_private_pem, PublicKey,
    Signature,
};
use crate::{Error, KeyId, Result};

/// A blinded coin message, as the wallet sends it to the issuer (modulus-sized).
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BlindedMessage(#[serde(with = "crate::bytes::vec")] pub Vec<u8>);

impl fmt::Debug for BlindedMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlindedMessage({} bytes)", self.0.len())
    }
}

/// The issuer's signature over a [`BlindedMessage`]; the wallet finalizes it into the
/// coin's signature.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BlindSignature(#[serde(with = "crate::bytes::vec")] pub Vec<u8>);

impl fmt::Debug for BlindSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlindSignature({} bytes)", self.0.len())
    }
}

fn blind_err(e: blind_rsa_signatures::Error) -> Error {
    Error::Blind(e.to_string())
}

/// The public key of one denomination: verifies coins, and lets wallets blind coin
/// messages for it.
#[derive(Clone)]
pub struct DenominationVerifyingKey {
    key: PublicKey,
}

/// Modulus sizes accepted for blind keys. RFC 9474 interoperability and the blinding code
/// assume whole-byte moduli of the usual sizes.
const BLIND_KEY_BITS: [usize; 3] = [2048, 3072, 4096];

impl DenominationVerifyingKey {
    fn from_public(key: PublicKey) -> Result<Self> {
        let bits = key.modulus_bits();
        if !BLIND_KEY_BITS.contains(&bits) {
            return Err(Error::UnsupportedKeySize { bits });
        }
        if key.public_exponent_is_65537() {
            Ok(DenominationVerifyingKey { key })
        } else {
            Err(Error::InvalidKey(
                "blind keys must use the public exponent 65537".into(),
            ))
        }
    }

    /// Parses a SubjectPublicKeyInfo DER (`rsaEncryption`).
    pub fn from_spki_der(der: &[u8]) -> Result<Self> {
        Self::from_public(PublicKey::from_spki_der(der)?)
    }

    /// Parses a `-----BEGIN PUBLIC KEY-----` PEM document.
    pub fn from_pem(pem: &str) -> Result<Self> {
        Self::from_public(PublicKey::from_pem(pem)?)
    }

    /// The role-less key (SPKI DER, PEM, key id).
    pub fn public_key(&self) -> &PublicKey {
        &self.key
    }

    /// SHA-256 of the SPKI DER.
    pub fn key_id(&self) -> KeyId {
        self.key.key_id()
    }

    /// The same key, verifying coins on `backend` (see [`PublicKey::on_backend`]).
    pub fn on_backend(&self, backend: Backend) -> Self {
        DenominationVerifyingKey {
            key: self.key.on_backend(backend),
        }
    }

    /// The RFC 9474 `id-RSASSA-PSS` SubjectPublicKeyInfo (SHA-384, MGF1-SHA-384, 48-byte
    /// salt) that other RFC 9474 implementations import.
    pub fn to_rfc9474_spki(&self) -> Result<Vec<u8>> {
        self.key.brsa().to_spki().map_err(blind_err)
    }

    pub(crate) fn blind<G: CryptoRng + ?Sized>(
        &self,
        rng: &mut G,
        message: &[u8],
    ) -> Result<BlindingResult> {
        self.key.brsa().blind(rng, message).map_err(blind_err)
    }

    pub(crate) fn finalize(
        &self,
        blind_signature: &BlindSignature,
        blinding: &BlindingResult,
        message: &[u8],
    ) -> Result<Signature> {
        let sig = self
            .key
            .brsa()
            .finalize(
                &blind_rsa_signatures::BlindSignature(blind_signature.0.clone()),
                blinding,
                message,
            )
            .map_err(|_| Error::BadSignature)?;
        Ok(Signature(sig.0))
    }

    pub(crate) fn verify(
        &self,
        signature: &Signature,
        randomizer: [u8; 32],
        message: &[u8],
    ) -> Result<()> {
        if signature.0.len() != self.key.size() {
            return Err(Error::BadSignature);
        }
        self.key
            .verifier()
            .verify_pss_sha384(&randomizer, message, &signature.0)
    }
}

impl PartialEq for DenominationVerifyingKey {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl Eq for DenominationVerifyingKey {}

impl fmt::Debug for DenominationVerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DenominationVerifyingKey({})", self.key_id())
    }
}

impl Serialize for DenominationVerifyingKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.key.serialize(s)
    }
}

impl<'de> Deserialize<'de> for DenominationVerifyingKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::from_public(PublicKey::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// The issuer's private key of one denomination, wherever it lives: loaded from a file
/// onto a [`Backend`], or any [`BlindSigner`] ([`DenominationSigningKey::from_signer`]).
/// Signs blinded messages without seeing the coin id, so it cannot link a withdrawal to a
/// later redemption. `Debug` shows the key id only. A clone shares the same private key.
#[derive(Clone)]
pub struct DenominationSigningKey {
    signer: Arc<dyn BlindSigner>,
    public: DenominationVerifyingKey,
    /// Where `signer` runs (for a key held elsewhere: where its results are checked).
    backend: Backend,
}

impl DenominationSigningKey {
    fn from_rsa(key: rsa::RsaPrivateKey, backend: Backend) -> Result<Self> {
        let key = checked_private(key)?;
        let public =
            DenominationVerifyingKey::from_public(PublicKey::from_rsa(key.to_public_key())?)?
                .on_backend(backend);
        Ok(DenominationSigningKey {
            signer: backend.blind_signer(key, public.key.clone())?,
            public,
            backend,
        })
    }

    /// A key held by `signer` (an HSM, a remote signer, a backend of this crate). Its
    /// public key must be a blind key this crate accepts (2048, 3072 or 4096 bits,
    /// exponent 65537).
    pub fn from_signer(signer: Arc<dyn BlindSigner>) -> Result<Self> {
        let public = DenominationVerifyingKey::from_public(signer.public_key().clone())?;
        Ok(DenominationSigningKey {
            backend: public.public_key().backend(),
            signer,
            public,
        })
    }

    /// A fresh key of `bits` bits (2048 to 4096), on the pure-Rust backend.
    pub fn generate<G: CryptoRng + ?Sized>(rng: &mut G, bits: usize) -> Result<Self> {
        Self::from_rsa(generate_private(rng, bits)?, Backend::RustCrypto)
    }

    /// Parses a PKCS#8 or PKCS#1 PEM document, onto the pure-Rust backend.
    pub fn from_pem(pem: &str) -> Result<Self> {
        Self::from_rsa(parse_private_pem(pem)?, Backend::RustCrypto)
    }

    /// Parses a PKCS#8 or PKCS#1 DER encoding, onto the pure-Rust backend.
    pub fn from_der(der: &[u8]) -> Result<Self> {
        Self::from_rsa(parse_private_der(der)?, Backend::RustCrypto)
    }

    /// The same key on `backend` (see [`SigningKey::on_backend`](crate::SigningKey::on_backend)).
    pub fn on_backend(&self, backend: Backend) -> Result<Self> {
        Self::from_rsa(parse_private_der(&self.to_der()?)?, backend)
    }

    /// The backend that signs (for a key made with
    /// [`DenominationSigningKey::from_signer`]: the one that checks its results).
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The object that performs this key's private-key operation, to wrap or delegate to.
    /// What it returns is **not** checked: sign through
    /// [`DenominationSigningKey::sign_blinded`], which checks every result.
    pub fn signer(&self) -> Arc<dyn BlindSigner> {
        Arc::clone(&self.signer)
    }

    /// The key as a PKCS#8 PEM document (wiped from memory when dropped).
    pub fn to_pem(&self) -> Result<Zeroizing<String>> {
        der_to_pem(&self.to_der()?)
    }

    /// The key as PKCS#8 DER (wiped from memory when dropped).
    pub fn to_der(&self) -> Result<Zeroizing<Vec<u8>>> {
        self.signer.to_pkcs8_der()
    }

    /// The matching public key.
    pub fn verifying_key(&self) -> &DenominationVerifyingKey {
        &self.public
    }

    /// The key id of the matching public key.
    pub fn key_id(&self) -> KeyId {
        self.public.key_id()
    }

    /// Signs a wallet's blinded message (issuer side of the blind flow): RFC 9474
    /// `BlindSign`, with its step 3 check that the result raised to `e` gives the message
    /// back, so a faulty private-key computation (which would reveal a factor of the
    /// modulus) is never released. `rng` drives the RSA blinding that protects the
    /// private-key operation against timing attacks, where the backend takes randomness
    /// from its caller.
    ///
    /// The issuer must have debited the account for this denomination before calling.
    pub fn sign_blinded<G: CryptoRng + ?Sized>(
        &self,
        mut rng: &mut G,
        blinded: &BlindedMessage,
    ) -> Result<BlindSignature> {
        // RFC 9474 BlindSign step 1: a modulus-sized integer below the modulus, checked
        // here for every backend (a signer held elsewhere might reduce it instead).
        if blinded.0.len() != self.public.key.size() {
            return Err(Error::Blind("blinded message is not modulus-sized".into()));
        }
        if blinded.0.as_slice() >= self.public.key.modulus_be().as_slice() {
            return Err(Error::Blind(
                "blinded message is not below the modulus".into(),
            ));
        }
        let signature = self.signer.rsasp1(&mut rng, &blinded.0)?;
        let back = self
            .public
            .key
            .verifier()
            .rsavp1(&signature)
            .map_err(|_| Error::SigningFault)?;
        if signature.len() != blinded.0.len() || back != blinded.0 {
            return Err(Error::SigningFault);
        }
        Ok(BlindSignature(signature))
    }
}

impl fmt::Debug for DenominationSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DenominationSigningKey({})", self.key_id())
    }
}
