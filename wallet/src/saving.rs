//! [`SavingWallet`]: the save-before-release discipline written once. Every exchange with
//! the issuer or a merchant is the same loop: build the message, seal the state, write the
//! sealed bytes to storage, release the message, send it, apply the answer, seal and write
//! again. A vendor supplies where the bytes go ([`WalletStorage`]); the wallet stays
//! sans-IO (the sending is the vendor's, between [`SavingWallet::send`] and
//! [`SavingWallet::apply`]).
//!
//! ```
//! # use scrip_tokens::fixtures;
//! use scrip_wallet::{SavingWallet, StorageKey, Wallet};
//!
//! let mut rng = rand::rng();
//! let root = fixtures::directory_root().verifying_key().clone();
//! let wallet = Wallet::new(fixtures::device(1), root).unwrap();
//! // Storage is anything that keeps the sealed bytes: here, memory.
//! let mut phone = SavingWallet::new(wallet, StorageKey::random(&mut rng), Vec::new(), &mut rng)
//!     .unwrap();
//! let registration = phone
//!     .wallet_mut()
//!     .registration_request(None, fixtures::NOW, &mut rng)
//!     .unwrap();
//! // Sealed and written before it is handed over: a crash now loses nothing it promised.
//! let registration = phone.send(registration, &mut rng).unwrap();
//! assert_eq!(registration.payload.device_key, *phone.wallet().device_key());
//! assert!(!phone.storage().is_empty());
//! // ... send it to the issuer, then `phone.apply(&mut rng, |w, _| w.on_account_certificate(..))`.
//! let reopened = Wallet::load(phone.storage(), phone.storage_key()).unwrap();
//! assert_eq!(reopened.device_key_id(), phone.wallet().device_key_id());
//! ```

use rand_core::CryptoRng;

use crate::{SavedWallet, StorageKey, Unreleased, Wallet, WalletError};

/// Where the sealed wallet lives (a file, a keystore entry, a database row). `store`
/// must replace the previous bytes durably (atomically, synced) before it returns: a
/// message is released only after it did.
pub trait WalletStorage {
    /// Why storing failed.
    type Error;
    /// Replaces the stored wallet with `sealed`.
    fn store(&mut self, sealed: &[u8]) -> Result<(), Self::Error>;
}

/// In memory (tests, demos): the bytes of the last save.
impl WalletStorage for Vec<u8> {
    type Error = std::convert::Infallible;
    fn store(&mut self, sealed: &[u8]) -> Result<(), Self::Error> {
        self.clear();
        self.extend_from_slice(sealed);
        Ok(())
    }
}

/// Why a [`SavingWallet`] step failed.
#[derive(Debug, thiserror::Error)]
pub enum SaveError<E> {
    /// The wallet refused (the message or answer is invalid, ...).
    #[error(transparent)]
    Wallet(#[from] WalletError),
    /// Storage failed: nothing was released, the state in storage is the previous one.
    #[error("storing the wallet failed")]
    Storage(#[source] E),
}

/// A [`Wallet`] with its storage key and storage, saving before every release.
pub struct SavingWallet<S> {
    wallet: Wallet,
    key: StorageKey,
    storage: S,
}

impl<S: WalletStorage> SavingWallet<S> {
    /// Wraps `wallet`, sealing it with `key` into `storage` now (so storage always holds a
    /// wallet from here on).
    pub fn new<G: CryptoRng + ?Sized>(
        wallet: Wallet,
        key: StorageKey,
        storage: S,
        rng: &mut G,
    ) -> Result<Self, SaveError<S::Error>> {
        let mut saving = SavingWallet {
            wallet,
            key,
            storage,
        };
        saving.save(rng)?;
        Ok(saving)
    }

    /// Wraps a wallet just loaded from `storage` (nothing changed yet, nothing written).
    pub fn loaded(wallet: Wallet, key: StorageKey, storage: S) -> Self {
        SavingWallet {
            wallet,
            key,
            storage,
        }
    }

    /// The wallet, to read.
    pub fn wallet(&self) -> &Wallet {
        &self.wallet
    }

    /// The wallet, to build messages ([`Unreleased`] ones go through [`Self::send`]).
    /// A change made here without [`Self::apply`] or [`Self::save`] is not in storage.
    pub fn wallet_mut(&mut self) -> &mut Wallet {
        &mut self.wallet
    }

    /// The storage.
    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// The key the state is sealed with.
    pub fn storage_key(&self) -> &StorageKey {
        &self.key
    }

    /// Seals the wallet and stores it.
    pub fn save<G: CryptoRng + ?Sized>(&mut self, rng: &mut G) -> Result<(), SaveError<S::Error>> {
        self.seal_and_store(rng).map(|_| ())
    }

    fn seal_and_store<G: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut G,
    ) -> Result<SavedWallet, SaveError<S::Error>> {
        let saved = self.wallet.save(&self.key, rng)?;
        self.storage
            .store(saved.bytes())
            .map_err(SaveError::Storage)?;
        Ok(saved)
    }

    /// Seals and stores the state `message` depends on, then releases it: send it after
    /// this returns.
    pub fn send<T, G: CryptoRng + ?Sized>(
        &mut self,
        message: Unreleased<T>,
        rng: &mut G,
    ) -> Result<T, SaveError<S::Error>> {
        let saved = self.seal_and_store(rng)?;
        Ok(message.release(&saved)?)
    }

    /// Applies an answer with `f` (for example `|w, rng| w.on_deposit_record(record, now,
    /// rng)`), then seals and stores the result. If `f` refuses, nothing is stored.
    pub fn apply<R, G: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut G,
        f: impl FnOnce(&mut Wallet, &mut G) -> crate::Result<R>,
    ) -> Result<R, SaveError<S::Error>> {
        let result = f(&mut self.wallet, rng)?;
        self.save(rng)?;
        Ok(result)
    }

    /// The wallet, its key and its storage.
    pub fn into_parts(self) -> (Wallet, StorageKey, S) {
        (self.wallet, self.key, self.storage)
    }
}
