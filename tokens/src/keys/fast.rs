//! The fast backend (feature `fast`): OpenSSL for private-key operations, aws-lc-rs for
//! verification. Measured on the development machine against `openssl speed rsa2048`
//! (BENCHMARKS.md): OpenSSL's raw private-key operation is the one `openssl speed` times;
//! aws-lc-rs verifies PSS with a key parsed once faster than OpenSSL's `EVP` verifier,
//! which pays a context per call.
//!
//! Constant time: OpenSSL's RSA private-key operation uses CRT with RSA blinding and
//! constant-time modular exponentiation (`BN_FLG_CONSTTIME`), and checks its own CRT
//! result; the typed keys check every result again under the public key.

use std::sync::OnceLock;

use aws_lc_rs::digest::{Digest, SHA256};
use aws_lc_rs::signature::{ParsedPublicKey, RSA_PSS_2048_8192_SHA256, RSA_PSS_2048_8192_SHA384};
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private, Public};
use openssl::rsa::{Padding, Rsa};
use openssl::sign::{RsaPssSaltlen, Signer};
use rand_core::CryptoRng;
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::RsaPrivateKey;
use zeroize::Zeroizing;

use super::backend::{left_pad, BlindSigner, PssSigner, Verifier};
use super::pss::PublicKey;
use crate::{Error, Result};

/// aws-lc-rs PSS verifiers of one key (SHA-384 parsed on first use: only denomination
/// keys verify coins) and OpenSSL's raw public-key operation for the fault check.
pub(crate) struct FastVerifier {
    spki_der: Box<[u8]>,
    pss_sha256: ParsedPublicKey,
    pss_sha384: OnceLock<Option<ParsedPublicKey>>,
    raw: OnceLock<Option<Rsa<Public>>>,
}

impl FastVerifier {
    /// `None` if aws-lc-rs refuses the key (the caller falls back to pure Rust).
    pub(crate) fn new(spki_der: &[u8]) -> Option<Self> {
        let pss_sha256 = ParsedPublicKey::new(&RSA_PSS_2048_8192_SHA256, spki_der).ok()?;
        Some(FastVerifier {
            spki_der: spki_der.into(),
            pss_sha256,
            pss_sha384: OnceLock::new(),
            raw: OnceLock::new(),
        })
    }
}

impl Verifier for FastVerifier {
    fn verify_pss_sha256_digest(&self, digest: &[u8; 32], signature: &[u8]) -> Result<()> {
        let digest = Digest::import_less_safe(digest, &SHA256).map_err(|_| Error::BadSignature)?;
        self.pss_sha256
            .verify_digest_sig(&digest, signature)
            .map_err(|_| Error::BadSignature)
    }

    fn verify_pss_sha384(
        &self,
        randomizer: &[u8; 32],
        message: &[u8],
        signature: &[u8],
    ) -> Result<()> {
        let key = self
            .pss_sha384
            .get_or_init(|| ParsedPublicKey::new(&RSA_PSS_2048_8192_SHA384, &*self.spki_der).ok())
            .as_ref()
            .ok_or(Error::BadSignature)?;
        let mut prefixed = Vec::with_capacity(randomizer.len() + message.len());
        prefixed.extend_from_slice(randomizer);
        prefixed.extend_from_slice(message);
        key.verify_sig(&prefixed, signature)
            .map_err(|_| Error::BadSignature)
    }

    fn rsavp1(&self, signature: &[u8]) -> Result<Vec<u8>> {
        let key = self
            .raw
            .get_or_init(|| Rsa::public_key_from_der(&self.spki_der).ok())
            .as_ref()
            .ok_or(Error::BadSignature)?;
        let size = key.size() as usize;
        if signature.len() != size {
            return Err(Error::BadSignature);
        }
        let mut out = vec![0u8; size];
        let len = key
            .public_encrypt(signature, &mut out, Padding::NONE)
            .map_err(|_| Error::BadSignature)?;
        left_pad(out.get(..len).ok_or(Error::BadSignature)?, size)
    }
}

/// One private key loaded into OpenSSL.
pub(crate) struct FastSigner {
    rsa: Rsa<Private>,
    pkey: PKey<Private>,
    public: PublicKey,
}

impl FastSigner {
    pub(crate) fn new(key: &RsaPrivateKey, public: PublicKey) -> Result<Self> {
        let der = key
            .to_pkcs1_der()
            .map_err(|e| Error::InvalidKey(e.to_string()))?;
        let rsa = Rsa::private_key_from_der(der.as_bytes())
            .map_err(|e| Error::InvalidKey(format!("OpenSSL: {e}")))?;
        // The key OpenSSL holds is the one the public key names.
        let spki = rsa
            .public_key_to_der()
            .map_err(|e| Error::InvalidKey(format!("OpenSSL: {e}")))?;
        if spki != public.to_spki_der() {
            return Err(Error::InvalidKey(
                "OpenSSL loaded another public key than the key's".into(),
            ));
        }
        let pkey =
            PKey::from_rsa(rsa.clone()).map_err(|e| Error::InvalidKey(format!("OpenSSL: {e}")))?;
        Ok(FastSigner { rsa, pkey, public })
    }
}

fn openssl_err(e: openssl::error::ErrorStack) -> Error {
    Error::Signing(format!("OpenSSL: {e}"))
}

impl PssSigner for FastSigner {
    fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// OpenSSL draws the salt and the blinding from its own generator; `rng` is unused.
    fn sign_pss_sha256(&self, _rng: &mut dyn CryptoRng, message: &[u8]) -> Result<Vec<u8>> {
        let mut signer = Signer::new(MessageDigest::sha256(), &self.pkey).map_err(openssl_err)?;
        signer
            .set_rsa_padding(Padding::PKCS1_PSS)
            .map_err(openssl_err)?;
        signer
            .set_rsa_pss_saltlen(RsaPssSaltlen::DIGEST_LENGTH)
            .map_err(openssl_err)?;
        signer
            .set_rsa_mgf1_md(MessageDigest::sha256())
            .map_err(openssl_err)?;
        signer.update(message).map_err(openssl_err)?;
        signer.sign_to_vec().map_err(openssl_err)
    }

    fn to_pkcs8_der(&self) -> Result<Zeroizing<Vec<u8>>> {
        self.pkey
            .private_key_to_pkcs8()
            .map(Zeroizing::new)
            .map_err(openssl_err)
    }
}

impl BlindSigner for FastSigner {
    fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// RSASP1 with OpenSSL's own blinding generator; `rng` is unused.
    fn rsasp1(&self, _rng: &mut dyn CryptoRng, input: &[u8]) -> Result<Vec<u8>> {
        let size = self.rsa.size() as usize;
        let mut out = Zeroizing::new(vec![0u8; size]);
        let len = self
            .rsa
            .private_encrypt(input, &mut out, Padding::NONE)
            .map_err(|e| Error::Blind(format!("OpenSSL: {e}")))?;
        left_pad(out.get(..len).ok_or(Error::SigningFault)?, size)
    }

    fn to_pkcs8_der(&self) -> Result<Zeroizing<Vec<u8>>> {
        PssSigner::to_pkcs8_der(self)
    }
}
