//! Encryption at rest. The vendor supplies a 32-byte key (from the platform keystore, a
//! secure element, a passphrase KDF); the wallet seals its state with XChaCha20-Poly1305.
//!
//! Layout of a sealed blob:
//!
//! ```text
//! magic "SCRIPWLT" (8) | format version (u16 LE) | kind (u8) | nonce (24) | ciphertext+tag
//! ```
//!
//! The first 11 bytes are authenticated as associated data, so neither the version nor the
//! kind can be swapped; a wrong key or any altered byte fails to open with
//! [`WalletError::WrongKeyOrCorrupted`], never with garbage.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand_core::CryptoRng;
use zeroize::Zeroizing;

use crate::{Result, WalletError};

const MAGIC: &[u8; 8] = b"SCRIPWLT";
/// Version of the sealed format (the plaintext carries its own codec version too).
pub const STORAGE_FORMAT_VERSION: u16 = 1;
const HEADER_LEN: usize = 8 + 2 + 1;
const NONCE_LEN: usize = 24;

/// What a sealed blob holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Kind {
    WalletState = 1,
    BlindCoinBackup = 2,
}

/// The vendor's 32-byte key for the wallet's storage. Wiped from memory when dropped;
/// `Debug` does not print it.
pub struct StorageKey(Zeroizing<[u8; 32]>);

impl StorageKey {
    /// Wraps 32 key bytes.
    pub fn new(bytes: [u8; 32]) -> Self {
        StorageKey(Zeroizing::new(bytes))
    }

    /// A fresh random key.
    pub fn random<G: CryptoRng + ?Sized>(rng: &mut G) -> Self {
        let mut bytes = [0u8; 32];
        rng.fill_bytes(&mut bytes);
        Self::new(bytes)
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&*self.0).into())
    }
}

impl std::fmt::Debug for StorageKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StorageKey(..)")
    }
}

fn header(kind: Kind) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(MAGIC);
    h[8..10].copy_from_slice(&STORAGE_FORMAT_VERSION.to_le_bytes());
    h[10] = kind as u8;
    h
}

pub(crate) fn seal<G: CryptoRng + ?Sized>(
    key: &StorageKey,
    kind: Kind,
    plaintext: &[u8],
    rng: &mut G,
) -> Result<Vec<u8>> {
    let header = header(kind);
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill_bytes(&mut nonce);
    let ciphertext = key
        .cipher()
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad: &header,
            },
        )
        .map_err(|_| WalletError::Sealing)?;
    Ok([header.as_slice(), &nonce, &ciphertext].concat())
}

pub(crate) fn open(key: &StorageKey, kind: Kind, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    let (Some(header), Some(nonce), Some(ciphertext)) = (
        sealed.get(..HEADER_LEN),
        sealed.get(HEADER_LEN..HEADER_LEN + NONCE_LEN),
        sealed.get(HEADER_LEN + NONCE_LEN..),
    ) else {
        return Err(WalletError::WrongKeyOrCorrupted);
    };
    if &header[..8] != MAGIC {
        return Err(WalletError::WrongKeyOrCorrupted);
    }
    let version = u16::from_le_bytes([header[8], header[9]]);
    if version != STORAGE_FORMAT_VERSION {
        return Err(WalletError::UnsupportedFormat {
            found: version,
            supported: STORAGE_FORMAT_VERSION,
        });
    }
    if header[10] != kind as u8 {
        return Err(WalletError::WrongKeyOrCorrupted);
    }
    key.cipher()
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad: header,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| WalletError::WrongKeyOrCorrupted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn sealed_blobs_open_only_with_their_key_and_kind() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let key = StorageKey::random(&mut rng);
        let sealed = seal(&key, Kind::WalletState, b"state", &mut rng).unwrap();
        assert_eq!(
            &open(&key, Kind::WalletState, &sealed).unwrap()[..],
            b"state"
        );
        let other = StorageKey::random(&mut rng);
        assert_eq!(
            open(&other, Kind::WalletState, &sealed),
            Err(WalletError::WrongKeyOrCorrupted)
        );
        assert_eq!(
            open(&key, Kind::BlindCoinBackup, &sealed),
            Err(WalletError::WrongKeyOrCorrupted)
        );
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert!(open(&key, Kind::WalletState, &bad).is_err(), "byte {i}");
        }
        for cut in 0..sealed.len() {
            assert!(open(&key, Kind::WalletState, &sealed[..cut]).is_err());
        }
        assert!(!format!("{key:?}").contains(&format!("{:?}", &key.0[..4])));
    }
}
