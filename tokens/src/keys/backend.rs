//! Where the RSA work runs: a [`PssSigner`], a [`BlindSigner`] and a [`Verifier`] per key,
//! behind the typed keys of this crate, and the [`Backend`]s that provide them.
//!
//! The typed keys ([`SigningKey`](crate::SigningKey),
//! [`DenominationSigningKey`](crate::DenominationSigningKey), [`PublicKey`] and the verifying
//! keys) hold one of these objects and add what every backend must get right the same way:
//! modulus-sized inputs and outputs, and the fault check of every private-key result
//! against the public key (RFC 9474 §4.3) before it leaves the process. A backend only
//! performs the arithmetic.
//!
//! - [`Backend::RustCrypto`] (the default everywhere, and the only one wallets and
//!   merchants use): the `rsa` and `blind-rsa-signatures` crates, pure Rust.
//! - `Backend::Fast` (feature `fast`, which the server enables): private-key operations
//!   by OpenSSL (the system's libssl, CRT with RSA blinding), verification by aws-lc-rs
//!   with each key parsed once. Both are byte-identical to the pure-Rust backend where
//!   RSA is deterministic (blind signatures), and accept and refuse the same signatures.
//!
//! A key held elsewhere (an HSM, a remote signer) implements [`PssSigner`] or
//! [`BlindSigner`] and becomes a typed key with
//! [`SigningKey::from_signer`](crate::SigningKey::from_signer) or
//! [`DenominationSigningKey::from_signer`](crate::DenominationSigningKey::from_signer): the
//! issuer then signs without ever holding the private key's bytes.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};

use blind_rsa_signatures::{Randomized, Sha384, PSS};
use rand_core::CryptoRng;
use rsa::signature::hazmat::PrehashVerifier as _;
use rsa::signature::{RandomizedSigner, SignatureEncoding};
use rsa::traits::PublicKeyParts;
use rsa::{BoxedUint, RsaPrivateKey, RsaPublicKey};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::pss::{private_to_der, PublicKey};
use crate::{Error, Result};

/// RSASSA-PSS with SHA-256, MGF1-SHA-256 and a 32-byte salt, for one private key:
/// certificates, records, requests and answers.
pub trait PssSigner: Send + Sync {
    /// The matching public key.
    fn public_key(&self) -> &PublicKey;

    /// Signs `message`. `rng` draws the salt and the RSA blinding where the backend takes
    /// randomness from its caller; a backend with its own generator (OpenSSL, an HSM)
    /// ignores it. The typed key checks the result against the public key before using it.
    fn sign_pss_sha256(&self, rng: &mut dyn CryptoRng, message: &[u8]) -> Result<Vec<u8>>;

    /// The private key as PKCS#8 DER, for keys held in this process. Keys held elsewhere
    /// answer [`Error::KeyNotExportable`] (the default).
    fn to_pkcs8_der(&self) -> Result<Zeroizing<Vec<u8>>> {
        Err(Error::KeyNotExportable)
    }
}

/// The RSA private-key primitive RSASP1 (`input^d mod n`, RFC 8017 §5.2.1) of one
/// denomination key: the issuer's side of an RFC 9474 blind signature.
pub trait BlindSigner: Send + Sync {
    /// The matching public key.
    fn public_key(&self) -> &PublicKey;

    /// RSASP1 on `input`, a modulus-sized big-endian integer below the modulus (both
    /// checked by the typed key before calling). Implementations blind the operation (RSA blinding)
    /// so its timing does not depend on `input`; `rng` as in
    /// [`PssSigner::sign_pss_sha256`]. The typed key checks the result (`result^e mod n ==
    /// input`) before it is released.
    fn rsasp1(&self, rng: &mut dyn CryptoRng, input: &[u8]) -> Result<Vec<u8>>;

    /// As [`PssSigner::to_pkcs8_der`].
    fn to_pkcs8_der(&self) -> Result<Zeroizing<Vec<u8>>> {
        Err(Error::KeyNotExportable)
    }
}

/// The public-key operations of one key, parsed once: the two PSS verifications scrip
/// uses and the raw public operation of the fault check. Stateless and shared.
pub trait Verifier: Send + Sync {
    /// RSASSA-PSS-VERIFY with SHA-256, MGF1-SHA-256 and a 32-byte salt, of a message whose
    /// SHA-256 is `digest` (EMSA-PSS-VERIFY starts with `mHash = Hash(M)`, RFC 8017
    /// §9.1.2 step 2: the caller hashes, so a large signed batch is hashed as it is
    /// encoded, never buffered). The signature is exactly modulus-sized (checked by the
    /// caller).
    fn verify_pss_sha256_digest(&self, digest: &[u8; 32], signature: &[u8]) -> Result<()>;

    /// RFC 9474 `Verify` (RSABSSA-SHA384-PSS-Randomized): RSASSA-PSS-VERIFY with SHA-384,
    /// MGF1-SHA-384 and a 48-byte salt over `randomizer || message`.
    fn verify_pss_sha384(
        &self,
        randomizer: &[u8; 32],
        message: &[u8],
        signature: &[u8],
    ) -> Result<()>;

    /// RSAVP1: `signature^e mod n`, modulus-sized. Fails on a signature not below `n`.
    fn rsavp1(&self, signature: &[u8]) -> Result<Vec<u8>>;
}

/// Which implementation runs RSA. The default is [`Backend::RustCrypto`]; a server picks
/// [`Backend::fastest`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Backend {
    /// Pure Rust: the `rsa` and `blind-rsa-signatures` crates.
    #[default]
    RustCrypto,
    /// OpenSSL for private-key operations, aws-lc-rs for verification (feature `fast`).
    #[cfg(feature = "fast")]
    Fast,
}

impl Backend {
    /// Every backend compiled in, the default first.
    pub const ALL: &'static [Backend] = &[
        Backend::RustCrypto,
        #[cfg(feature = "fast")]
        Backend::Fast,
    ];

    /// The fastest backend compiled in: `Fast` with the feature `fast`, else `RustCrypto`.
    pub const fn fastest() -> Backend {
        #[cfg(feature = "fast")]
        {
            Backend::Fast
        }
        #[cfg(not(feature = "fast"))]
        {
            Backend::RustCrypto
        }
    }

    /// The name used on command lines and in logs (`rustcrypto`, `fast`).
    pub const fn name(self) -> &'static str {
        match self {
            Backend::RustCrypto => "rustcrypto",
            #[cfg(feature = "fast")]
            Backend::Fast => "fast",
        }
    }

    /// The verifier of the key `spki_der` on this backend, for a backend other than the
    /// pure-Rust one (whose verifier every [`PublicKey`] holds anyway). `None` for
    /// `RustCrypto`, and for a key this backend refuses to load: such a key keeps the
    /// pure-Rust verifier, so every backend accepts exactly the keys the parser accepted.
    #[cfg_attr(not(feature = "fast"), allow(unused_variables))]
    pub(crate) fn verifier(self, spki_der: &[u8]) -> Option<Arc<dyn Verifier>> {
        match self {
            Backend::RustCrypto => None,
            #[cfg(feature = "fast")]
            Backend::Fast => {
                super::fast::FastVerifier::new(spki_der).map(|v| Arc::new(v) as Arc<dyn Verifier>)
            }
        }
    }

    pub(crate) fn pss_signer(
        self,
        key: RsaPrivateKey,
        public: PublicKey,
    ) -> Result<Arc<dyn PssSigner>> {
        match self {
            Backend::RustCrypto => Ok(Arc::new(RustCryptoPssSigner {
                key: rsa::pss::BlindedSigningKey::new(key),
                public,
            })),
            #[cfg(feature = "fast")]
            Backend::Fast => Ok(Arc::new(super::fast::FastSigner::new(&key, public)?)),
        }
    }

    pub(crate) fn blind_signer(
        self,
        key: RsaPrivateKey,
        public: PublicKey,
    ) -> Result<Arc<dyn BlindSigner>> {
        match self {
            Backend::RustCrypto => Ok(Arc::new(RustCryptoBlindSigner {
                key: BrsaSecretKey::new(key),
                public,
            })),
            #[cfg(feature = "fast")]
            Backend::Fast => Ok(Arc::new(super::fast::FastSigner::new(&key, public)?)),
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Backend {
    type Err = Error;

    /// Parses a backend name; a backend not compiled in is refused.
    fn from_str(s: &str) -> Result<Self> {
        Backend::ALL
            .iter()
            .copied()
            .find(|b| b.name() == s)
            .ok_or_else(|| {
                let known: Vec<&str> = Backend::ALL.iter().map(|b| b.name()).collect();
                Error::UnknownBackend(format!("{s:?} (compiled in: {})", known.join(", ")))
            })
    }
}

pub(crate) type BrsaPublicKey = blind_rsa_signatures::PublicKey<Sha384, PSS, Randomized>;
type BrsaSecretKey = blind_rsa_signatures::SecretKey<Sha384, PSS, Randomized>;

/// Pure-Rust verification: `rsa`'s PSS verifier, and `blind-rsa-signatures` for RFC 9474.
/// Every [`PublicKey`] holds one, and its RSA key is the key's only parsed copy.
pub(crate) struct RustCryptoVerifier {
    pss: rsa::pss::VerifyingKey<Sha256>,
    /// Built on first use: most keys (devices, merchants) never verify or blind a coin.
    brsa: OnceLock<BrsaPublicKey>,
}

impl RustCryptoVerifier {
    pub(crate) fn new(key: RsaPublicKey) -> Self {
        RustCryptoVerifier {
            pss: rsa::pss::VerifyingKey::new(key),
            brsa: OnceLock::new(),
        }
    }

    pub(crate) fn rsa(&self) -> &RsaPublicKey {
        self.pss.as_ref()
    }

    /// The key as `blind-rsa-signatures` takes it (RFC 9474 blinding, finalizing and
    /// verification).
    pub(crate) fn brsa(&self) -> &BrsaPublicKey {
        self.brsa
            .get_or_init(|| BrsaPublicKey::new(self.rsa().clone()))
    }
}

impl Verifier for RustCryptoVerifier {
    fn verify_pss_sha256_digest(&self, digest: &[u8; 32], signature: &[u8]) -> Result<()> {
        // RFC 8017 §8.1.2 step 2c: the encoded message is RSAVP1's output as `emLen`
        // octets. Where the modulus has 8·k + 1 bits, `emLen` is one octet short of the
        // modulus, so that output's leading octet must be zero. The `rsa` crate skips the
        // octet unchecked; aws-lc (the fast backend) refuses it, and so must this one, or a
        // device with such a key could sign records merchants accept and the issuer
        // refuses.
        if self.rsa().n().as_ref().bits() % 8 == 1 && self.rsavp1(signature)?.first() != Some(&0) {
            return Err(Error::BadSignature);
        }
        let sig = rsa::pss::Signature::try_from(signature).map_err(|_| Error::BadSignature)?;
        self.pss
            .verify_prehash(digest, &sig)
            .map_err(|_| Error::BadSignature)
    }

    fn verify_pss_sha384(
        &self,
        randomizer: &[u8; 32],
        message: &[u8],
        signature: &[u8],
    ) -> Result<()> {
        self.brsa()
            .verify(
                &blind_rsa_signatures::Signature(signature.to_vec()),
                Some(blind_rsa_signatures::MessageRandomizer(*randomizer)),
                message,
            )
            .map_err(|_| Error::BadSignature)
    }

    fn rsavp1(&self, signature: &[u8]) -> Result<Vec<u8>> {
        let key = self.rsa();
        let bits = key.n().as_ref().bits_precision();
        let s = BoxedUint::from_be_slice(signature, bits).map_err(|_| Error::BadSignature)?;
        if s >= **key.n() {
            return Err(Error::BadSignature);
        }
        let m = rsa::hazmat::rsa_encrypt(key, &s).map_err(|_| Error::BadSignature)?;
        left_pad(&m.to_be_bytes(), key.size())
    }
}

/// `bytes` as a big-endian integer of exactly `len` bytes.
pub(crate) fn left_pad(bytes: &[u8], len: usize) -> Result<Vec<u8>> {
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    let digits = &bytes[first..];
    if digits.len() > len {
        return Err(Error::BadSignature);
    }
    let mut out = vec![0u8; len - digits.len()];
    out.extend_from_slice(digits);
    Ok(out)
}

/// Pure-Rust RSA-PSS: `rsa`'s blinded signer (RSA blinding: the private-key operation's
/// timing does not depend on the message).
struct RustCryptoPssSigner {
    key: rsa::pss::BlindedSigningKey<Sha256>,
    public: PublicKey,
}

impl PssSigner for RustCryptoPssSigner {
    fn public_key(&self) -> &PublicKey {
        &self.public
    }

    fn sign_pss_sha256(&self, mut rng: &mut dyn CryptoRng, message: &[u8]) -> Result<Vec<u8>> {
        let sig = self
            .key
            .try_sign_with_rng(&mut rng, message)
            .map_err(|e| Error::Signing(e.to_string()))?;
        // The `rsa` crate pads to its integers' precision (whole 64-bit limbs): 264 bytes
        // for a 2049-bit key. A signature is exactly modulus-sized (RFC 8017 §8.1.1).
        left_pad(&sig.to_vec(), self.public.size())
    }

    fn to_pkcs8_der(&self) -> Result<Zeroizing<Vec<u8>>> {
        private_to_der(self.key.as_ref())
    }
}

/// Pure-Rust RSASP1: `blind-rsa-signatures`' blind signer (RSA-blinded, with its own CRT
/// check).
struct RustCryptoBlindSigner {
    key: BrsaSecretKey,
    public: PublicKey,
}

impl BlindSigner for RustCryptoBlindSigner {
    fn public_key(&self) -> &PublicKey {
        &self.public
    }

    fn rsasp1(&self, mut rng: &mut dyn CryptoRng, input: &[u8]) -> Result<Vec<u8>> {
        let sig = self
            .key
            .blind_sign_with_rng(&mut rng, input)
            .map_err(|e| Error::Blind(e.to_string()))?;
        Ok(sig.0)
    }

    fn to_pkcs8_der(&self) -> Result<Zeroizing<Vec<u8>>> {
        private_to_der(self.key.as_ref())
    }
}
