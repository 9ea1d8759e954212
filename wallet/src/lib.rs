#![doc = include_str!("../README.md")]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod certificates;
mod change;
mod coins;
mod deposits;
mod error;
mod identity;
mod paying;
mod recovery;
mod refunds;
mod saving;
mod state;
mod storage;
mod swaps;

use rand_core::CryptoRng;
use scrip_tokens::keys::{Device, DirectoryRoot};
use scrip_tokens::{
    codec, Amount, Currency, KeyDirectory, LockRules, MerchantId, Nonce, PaymentReceipt, RecordId,
    RedemptionOutcome, RejectReason, RevocationCache, SigningKey, VerifyingKey,
};

pub use error::{Result, WalletError};
pub use recovery::RecoverySheet;
pub use refunds::MAX_VOUCHER_COINS;
pub use saving::{SaveError, SavingWallet, WalletStorage};
pub use state::STATE_VERSION;
pub use storage::{StorageKey, STORAGE_FORMAT_VERSION};
pub use swaps::{SwapResult, DEFAULT_MIX, REFRESH_MARGIN};

use state::WalletState;

/// How many paid request ids the wallet remembers (to refuse paying one twice).
const PAID_REQUESTS_KEPT: usize = 1_000;

/// A message that may leave the wallet only once the state it depends on is saved: a
/// payment answer (its sequence number is used, its coins are gone), a withdrawal request
/// (its blinding secrets must survive a crash), a registration (its key must).
/// [`Unreleased::release`] hands it over given a [`SavedWallet`] at least as recent.
#[must_use = "save the wallet, then release the message"]
pub struct Unreleased<T> {
    message: T,
    generation: u64,
    instance: u64,
}

impl<T> Unreleased<T> {
    /// The message, provided `saved` includes the change that produced it.
    pub fn release(self, saved: &SavedWallet) -> Result<T> {
        // Generations count per loaded wallet: a save of another wallet object (or of a
        // reloaded copy whose history diverged) says nothing about this message.
        if saved.instance != self.instance || saved.generation < self.generation {
            return Err(WalletError::NotPersisted {
                needed: self.generation,
                saved: saved.generation,
            });
        }
        Ok(self.message)
    }

    /// The state generation that must be saved first.
    pub fn generation(&self) -> u64 {
        self.generation
    }
}

/// The wallet's state sealed with the vendor's key: write these bytes to storage.
pub struct SavedWallet {
    bytes: Vec<u8>,
    generation: u64,
    instance: u64,
}

impl SavedWallet {
    /// The sealed bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The state generation these bytes hold.
    pub fn generation(&self) -> u64 {
        self.generation
    }
}

/// What the device asks of a balance certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateOptions {
    /// Currency.
    pub currency: Currency,
    /// At most this much; `None`: as much as the rules allow.
    pub requested_amount: Option<Amount>,
    /// At most this many payments.
    pub max_payments: Option<u32>,
    /// At most this per payment.
    pub per_payment_cap: Option<Amount>,
    /// Locks and restrictions.
    pub lock: LockRules,
}

impl CertificateOptions {
    /// As much as the issuer allows in `currency`, no locks.
    pub fn any(currency: Currency) -> Self {
        CertificateOptions {
            currency,
            requested_amount: None,
            max_payments: None,
            per_payment_cap: None,
            lock: LockRules::default(),
        }
    }

    /// At most `amount` (in its currency), no other rule.
    pub fn up_to(amount: Amount) -> Self {
        CertificateOptions {
            requested_amount: Some(amount),
            ..CertificateOptions::any(amount.currency)
        }
    }
}

/// `amount`'s minor units, provided it is in `currency`.
fn in_currency(amount: Amount, currency: Currency) -> Result<u64> {
    if amount.currency != currency {
        return Err(scrip_tokens::Error::CurrencyMismatch {
            expected: currency,
            found: amount.currency,
        }
        .into());
    }
    Ok(amount.minor_units)
}

/// The currency and minor units of coin values, which must share one currency.
fn coin_values(values: &[Amount]) -> Result<(Currency, Vec<u64>)> {
    let first = values.first().ok_or(WalletError::EmptyWithdrawal)?;
    let minor_units = values
        .iter()
        .map(|v| in_currency(*v, first.currency))
        .collect::<Result<Vec<_>>>()?;
    Ok((first.currency, minor_units))
}

/// How a payment ended, from the wallet's side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PaymentStatus {
    /// The merchant accepted; its receipt is kept.
    Completed(Box<PaymentReceipt>),
    /// The merchant refused (coins handed over are back in the wallet; a record's sequence
    /// number stays used).
    Rejected(RejectReason),
}

/// What the issuer did with one record the wallet handed in (with a sync or a certificate
/// request): show a refused one to the user, it is money the merchant was not paid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandInOutcome {
    /// The record.
    pub record_id: RecordId,
    /// The merchant it paid.
    pub merchant_id: MerchantId,
    /// Its amount.
    pub amount: Amount,
    /// The issuer's outcome (`Accepted`/`AlreadyAccepted`: the merchant is paid;
    /// `Invalid`: refused, with the reason).
    pub outcome: RedemptionOutcome,
}

/// How to pay an offer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayWith {
    /// A withdrawal record under a balance certificate.
    Record,
    /// Coins adding up to the exact amount.
    Coins,
}

/// A wallet: one device of an account. Sans-IO: every method takes or returns typed
/// messages (each has a byte encoding through [`scrip_tokens::codec`]), so a vendor can
/// carry them over NFC, BLE, QR codes or files; the wallet never touches the network or
/// storage, and takes the time and randomness from the caller.
pub struct Wallet {
    state: WalletState,
    key: SigningKey<Device>,
    directory: Option<KeyDirectory>,
    /// The issuer's revocation list, verified. Not sealed with the state, whose format
    /// stays as it was: see [`Wallet::set_revocations`].
    revocations: RevocationCache,
    /// Identifies this in-memory wallet among all created or loaded in the process.
    instance: u64,
}

fn next_instance() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

fn nonce<G: CryptoRng + ?Sized>(rng: &mut G) -> Nonce {
    let mut n = [0u8; 16];
    rng.fill_bytes(&mut n);
    n
}

impl Wallet {
    /// A new wallet around `device_key`, trusting directories signed by `root` (the issuer's
    /// root key, pinned by the vendor).
    pub fn new(device_key: SigningKey<Device>, root: VerifyingKey<DirectoryRoot>) -> Result<Self> {
        let state = WalletState {
            device_key: device_key.to_der()?.to_vec(),
            root,
            account: None,
            directory: None,
            next_sequence: 1,
            certificates: Vec::new(),
            coins: Vec::new(),
            coins_in_flight: Vec::new(),
            blind_withdrawals: Vec::new(),
            identified_withdrawals: Vec::new(),
            pending_deposits: Vec::new(),
            deposits: Vec::new(),
            awaiting_receipt: Vec::new(),
            receipts: Vec::new(),
            outbox: Vec::new(),
            pending_certificate_request: None,
            paid_requests: Vec::new(),
            generation: 1,
            voucher_withdrawals: Vec::new(),
            swaps: Vec::new(),
        };
        Ok(Wallet {
            state,
            key: device_key,
            directory: None,
            revocations: RevocationCache::new(),
            instance: next_instance(),
        })
    }

    /// A new wallet with a freshly generated 2048-bit device key (slow in debug builds).
    pub fn generate<G: CryptoRng + ?Sized>(
        root: VerifyingKey<DirectoryRoot>,
        rng: &mut G,
    ) -> Result<Self> {
        Self::new(
            SigningKey::generate(rng, scrip_tokens::keys::DEFAULT_RSA_BITS)?,
            root,
        )
    }

    /// Seals the whole state with `key` (XChaCha20-Poly1305). Store the bytes, then
    /// release any message that waited for them.
    pub fn save<G: CryptoRng + ?Sized>(
        &self,
        key: &StorageKey,
        rng: &mut G,
    ) -> Result<SavedWallet> {
        let plaintext = zeroize::Zeroizing::new(codec::encode(&self.state)?);
        Ok(SavedWallet {
            bytes: storage::seal(key, storage::Kind::WalletState, &plaintext, rng)?,
            generation: self.state.generation,
            instance: self.instance,
        })
    }

    /// Opens a wallet saved with [`Wallet::save`]. A wrong key or altered bytes give
    /// [`WalletError::WrongKeyOrCorrupted`].
    pub fn load(bytes: &[u8], key: &StorageKey) -> Result<Self> {
        let plaintext = storage::open(key, storage::Kind::WalletState, bytes)?;
        let state = WalletState::decode(&plaintext)?;
        let device_key = SigningKey::from_der(&state.device_key)?;
        let directory = match &state.directory {
            Some((signed, _)) => Some(signed.verify(&state.root)?.clone()),
            None => None,
        };
        Ok(Wallet {
            state,
            key: device_key,
            directory,
            revocations: RevocationCache::new(),
            instance: next_instance(),
        })
    }

    fn touch(&mut self) -> u64 {
        self.state.generation += 1;
        self.state.generation
    }

    fn unreleased<T>(&mut self, message: T) -> Unreleased<T> {
        let generation = self.touch();
        Unreleased {
            message,
            generation,
            instance: self.instance,
        }
    }
}
