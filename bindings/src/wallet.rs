//! The wallet, for phone and card vendors: [`Wallet`] wraps `scrip_wallet::SavingWallet`,
//! so every message whose loss in a crash would cost money (a payment, a withdrawal
//! request, a registration) is returned only after the app's [`WalletStore`] has stored the
//! sealed state it depends on. Every message in and out is bytes in scrip's wire format:
//! the app carries them over HTTP, NFC, BLE or QR codes.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use scrip_api::{AccountOpenedBody, BalanceCertificateAnswer};
use scrip_tokens::keys::DirectoryRoot;
use scrip_tokens::{
    BlindWithdrawalRequest, BlindWithdrawalResponse, DepositRecord, MerchantOffer, MerchantReply,
    RedemptionOutcome, SignedKeyDirectory, SyncReport, SyncRequest, VerifyingKey,
};
use scrip_wallet::{
    CertificateOptions, PayWith, PaymentStatus, SaveError, SavingWallet, StorageKey, Unreleased,
};

use crate::{amount, amounts, at, decode, encode, parse_id, rng, Result, ScripError};

/// Where the app keeps the sealed wallet state (a file, the keystore, a database row).
/// `save` must make the bytes durable before it returns: the SDK releases a payment or a
/// withdrawal request only after it returned. `save` runs while the wallet is busy: it
/// must not call into the same wallet (on the same thread that call fails with code
/// `reentrant_call`; from another thread it would wait for `save`, forever).
#[uniffi::export(with_foreign)]
pub trait WalletStore: Send + Sync {
    /// Replaces the stored state with `sealed`. Throw (`ScripError.Storage`) if it could
    /// not be stored: the SDK then releases nothing and the wallet goes back to the state
    /// last stored, so the same call can be retried.
    fn save(&self, sealed: Vec<u8>) -> Result<()>;
}

/// Adapts the app's store to the wallet crate's storage trait, remembering the bytes the
/// app last stored: the state a failed save (or a panic) rolls the wallet back to.
struct AppStorage {
    app: Arc<dyn WalletStore>,
    last_stored: Vec<u8>,
}

impl scrip_wallet::WalletStorage for AppStorage {
    type Error = ScripError;

    fn store(&mut self, sealed: &[u8]) -> Result<()> {
        self.app.save(sealed.to_vec()).map_err(|e| match e {
            ScripError::Storage { .. } => e,
            // Whatever the app threw, it is a failed save (and is reported as one).
            other => ScripError::Storage {
                message: other.to_string(),
            },
        })?;
        self.last_stored = sealed.to_vec();
        Ok(())
    }
}

/// Puts the wallet back to the state the app last stored, keeping the revocation list
/// (which is not part of the sealed state). After a failed save the in-memory wallet is
/// ahead of storage (a sequence number used, coins handed over, an answer taken); going
/// back makes memory and storage agree again, and the failed call can be repeated.
fn roll_back(saving: &mut SavingWallet<AppStorage>) -> Result<()> {
    let revocations = saving.wallet().revocations().clone();
    let mut wallet =
        scrip_wallet::Wallet::load(&saving.storage().last_stored, saving.storage_key())?;
    wallet.set_revocations(revocations);
    *saving.wallet_mut() = wallet;
    Ok(())
}

/// A small per-thread number, to tell the thread that holds a wallet's lock.
fn thread_tag() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local!(static TAG: u64 = NEXT.fetch_add(1, Ordering::Relaxed));
    // A thread tearing down its locals gets a tag of its own for this call.
    TAG.try_with(|tag| *tag)
        .unwrap_or_else(|_| NEXT.fetch_add(1, Ordering::Relaxed))
}

/// One call's exclusive use of a wallet. Its `build`, `send` and `apply` roll the wallet
/// back to the state last stored when they fail.
struct Session<'a> {
    guard: MutexGuard<'a, SavingWallet<AppStorage>>,
    owner: &'a AtomicU64,
    broken: &'a AtomicBool,
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        // Runs before the guard (a field) is dropped: still under the lock.
        self.owner.store(0, Ordering::SeqCst);
    }
}

impl std::ops::Deref for Session<'_> {
    type Target = SavingWallet<AppStorage>;
    fn deref(&self) -> &Self::Target {
        &self.guard
    }
}

impl std::ops::DerefMut for Session<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.guard
    }
}

impl Session<'_> {
    /// After a failed call that may have changed the wallet in memory: back to the state
    /// last stored. If even that fails, the wallet refuses every later call (the app
    /// restores it from its storage) rather than go on from a state storage does not
    /// hold.
    fn roll_back_or_break(&mut self) {
        if roll_back(&mut self.guard).is_err() {
            self.broken.store(true, Ordering::SeqCst);
        }
    }

    fn failed<T>(&mut self, e: SaveError<ScripError>) -> Result<T> {
        self.roll_back_or_break();
        Err(e.into())
    }

    /// Builds a message with `f`; if it fails, whatever it changed is undone.
    fn build<T>(
        &mut self,
        f: impl FnOnce(&mut scrip_wallet::Wallet, &mut rand::rngs::ThreadRng) -> scrip_wallet::Result<T>,
    ) -> Result<T> {
        match f(self.guard.wallet_mut(), &mut rng()) {
            Ok(message) => Ok(message),
            Err(e) => {
                self.roll_back_or_break();
                Err(e.into())
            }
        }
    }

    /// Builds a message with `f`, stores the state it depends on, then releases it,
    /// encoded.
    fn release<T: scrip_tokens::Message>(
        &mut self,
        f: impl FnOnce(
            &mut scrip_wallet::Wallet,
            &mut rand::rngs::ThreadRng,
        ) -> scrip_wallet::Result<Unreleased<T>>,
    ) -> Result<Vec<u8>> {
        let message = self.build(f)?;
        encode(&self.send(message)?)
    }

    /// Stores the state `message` depends on, then releases it.
    fn send<T>(&mut self, message: Unreleased<T>) -> Result<T> {
        match self.guard.send(message, &mut rng()) {
            Ok(message) => Ok(message),
            Err(e) => self.failed(e),
        }
    }

    /// Applies an answer, then stores the result.
    fn apply<R>(
        &mut self,
        f: impl FnOnce(&mut scrip_wallet::Wallet, &mut rand::rngs::ThreadRng) -> scrip_wallet::Result<R>,
    ) -> Result<R> {
        match self.guard.apply(&mut rng(), f) {
            Ok(result) => Ok(result),
            Err(e) => self.failed(e),
        }
    }
}

fn sealing_key(bytes: &[u8]) -> Result<StorageKey> {
    let raw: [u8; 32] = bytes
        .try_into()
        .map_err(|_| ScripError::bad_argument("a storage key is 32 bytes"))?;
    Ok(StorageKey::new(raw))
}

fn root_key(pem: &str) -> Result<VerifyingKey<DirectoryRoot>> {
    VerifyingKey::from_pem(pem)
        .map_err(|e| ScripError::bad_argument(format!("the issuer's root key: {e}")))
}

/// How to pay an offer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum PayMethod {
    /// A signed withdrawal record under a balance certificate.
    Record,
    /// Blind or identified coins adding up to the exact amount.
    Coins,
}

/// What a merchant's offer asks, once checked (certificate, signature, revocation list).
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct OfferSummary {
    /// The merchant (UUID).
    pub merchant_id: String,
    /// The payment request (UUID).
    pub request_id: String,
    /// The amount, in minor units.
    pub amount_minor: u64,
    /// Its currency (ISO 4217).
    pub currency: String,
}

/// How a payment ended, from the wallet's side.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct PaymentResult {
    /// The merchant accepted and countersigned a receipt (kept by the wallet).
    pub completed: bool,
    /// The merchant's signed refusal, if it refused: the stable reason code.
    pub rejection_code: Option<String>,
    /// The refusal's detail for people.
    pub rejection_message: Option<String>,
}

/// The coins a withdrawal brought.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct WithdrawalReceived {
    /// The new coins' ids (UUIDs), each unblinded and verified.
    pub coin_ids: Vec<String>,
}

impl WithdrawalReceived {
    fn of(ids: &[scrip_tokens::CoinId]) -> Self {
        WithdrawalReceived {
            coin_ids: ids.iter().map(ToString::to_string).collect(),
        }
    }
}

/// What a swap did.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct SwapDone {
    /// The coins were swapped (else: some had been spent before, nothing was swapped).
    pub swapped: bool,
    /// The new coins' ids (swapped).
    pub new_coin_ids: Vec<String>,
    /// The coins found spent and dropped (double spent).
    pub spent_coin_ids: Vec<String>,
    /// The other coins, held again (double spent).
    pub returned_coin_ids: Vec<String>,
}

impl SwapDone {
    fn of(result: &scrip_wallet::SwapResult) -> Self {
        let ids = |ids: &[scrip_tokens::CoinId]| ids.iter().map(ToString::to_string).collect();
        match result {
            scrip_wallet::SwapResult::Swapped { coins } => SwapDone {
                swapped: true,
                new_coin_ids: ids(coins),
                spent_coin_ids: Vec::new(),
                returned_coin_ids: Vec::new(),
            },
            scrip_wallet::SwapResult::DoubleSpent {
                spent, returned, ..
            } => SwapDone {
                swapped: false,
                new_coin_ids: Vec::new(),
                spent_coin_ids: ids(spent),
                returned_coin_ids: ids(returned),
            },
        }
    }
}

/// What the issuer did with one record the wallet handed in.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct HandIn {
    /// The record (UUID).
    pub record_id: String,
    /// The merchant it paid.
    pub merchant_id: String,
    /// Its amount, in minor units.
    pub amount_minor: u64,
    /// `accepted`, `already_accepted`, `double_spent` or `invalid`.
    pub outcome: String,
    /// For `invalid`: the stable reason code.
    pub reason_code: Option<String>,
}

/// What the wallet holds in one currency.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct Balance {
    /// Coins held (not counting coins in a payment the merchant has not answered).
    pub coins_minor: u64,
    /// What the balance certificates held still allow offline, now.
    pub offline_spendable_minor: u64,
}

/// The outcome's name, as in the API's JSON.
fn outcome_name(outcome: &RedemptionOutcome) -> (&'static str, Option<String>) {
    match outcome {
        RedemptionOutcome::Accepted { .. } => ("accepted", None),
        RedemptionOutcome::AlreadyAccepted { .. } => ("already_accepted", None),
        RedemptionOutcome::DoubleSpent { .. } => ("double_spent", None),
        RedemptionOutcome::Invalid { reason, .. } => {
            ("invalid", Some(reason.code.as_str().to_owned()))
        }
    }
}

fn hand_ins(outcomes: Vec<scrip_wallet::HandInOutcome>) -> Vec<HandIn> {
    outcomes
        .into_iter()
        .map(|o| {
            let (outcome, reason_code) = outcome_name(&o.outcome);
            HandIn {
                record_id: o.record_id.to_string(),
                merchant_id: o.merchant_id.to_string(),
                amount_minor: o.amount.minor_units,
                outcome: outcome.to_owned(),
                reason_code,
            }
        })
        .collect()
}

/// A customer's wallet: one device of an account. Thread-safe (calls are serialized).
/// The app supplies the time of every call (`now_unix_ms`); the SDK reads no clock and no
/// disk.
#[derive(uniffi::Object)]
pub struct Wallet {
    inner: Mutex<SavingWallet<AppStorage>>,
    /// The thread inside a call (0: none): a call from the app's `save` callback into the
    /// same wallet (on the same thread) is refused instead of deadlocking.
    owner: AtomicU64,
    /// Set when the wallet could not be put back to the state last stored: every call is
    /// refused (`state_lost`); restore the wallet from storage.
    broken: AtomicBool,
}

impl Wallet {
    fn new(saving: SavingWallet<AppStorage>) -> Arc<Self> {
        Arc::new(Wallet {
            inner: Mutex::new(saving),
            owner: AtomicU64::new(0),
            broken: AtomicBool::new(false),
        })
    }

    fn lock(&self) -> Result<Session<'_>> {
        let tag = thread_tag();
        if self.owner.load(Ordering::SeqCst) == tag {
            return Err(ScripError::Wallet {
                code: "reentrant_call".into(),
                message: "a call into the wallet from inside its own WalletStore.save".into(),
            });
        }
        let guard = match self.inner.lock() {
            Ok(guard) => guard,
            Err(poisoned) => {
                // A panic inside a call may have left the in-memory state half-changed:
                // start again from what the app last stored.
                let mut guard = poisoned.into_inner();
                if roll_back(&mut guard).is_err() {
                    self.broken.store(true, Ordering::SeqCst);
                }
                self.inner.clear_poison();
                guard
            }
        };
        if self.broken.load(Ordering::SeqCst) {
            return Err(ScripError::Wallet {
                code: "state_lost".into(),
                message: "the wallet could not return to its stored state after a failure: \
                          restore it from storage"
                    .into(),
            });
        }
        self.owner.store(tag, Ordering::SeqCst);
        Ok(Session {
            guard,
            owner: &self.owner,
            broken: &self.broken,
        })
    }
}

#[uniffi::export]
impl Wallet {
    /// A new wallet with a fresh device key, trusting key directories signed by the
    /// issuer's root key (`root_key_pem`, pinned by the app). Its sealed state is stored
    /// through `store` before this returns.
    #[uniffi::constructor]
    pub fn create(
        root_key_pem: String,
        storage_key: Vec<u8>,
        store: Arc<dyn WalletStore>,
    ) -> Result<Arc<Self>> {
        let mut rng = rng();
        let wallet = scrip_wallet::Wallet::generate(root_key(&root_key_pem)?, &mut rng)?;
        let storage = AppStorage {
            app: store,
            last_stored: Vec::new(),
        };
        let saving = SavingWallet::new(wallet, sealing_key(&storage_key)?, storage, &mut rng)?;
        Ok(Wallet::new(saving))
    }

    /// Opens a wallet from the sealed bytes `store` holds: exactly the bytes `save` last
    /// received. An older copy would bring back coins already spent and sequence numbers
    /// already used (double spends the issuer refuses, at the merchants' expense). A wrong
    /// key or altered bytes: `WrongKeyOrCorrupted`; a state of a newer format:
    /// `UnsupportedStateVersion` (one of an older format is migrated).
    #[uniffi::constructor]
    pub fn restore(
        sealed: Vec<u8>,
        storage_key: Vec<u8>,
        store: Arc<dyn WalletStore>,
    ) -> Result<Arc<Self>> {
        let key = sealing_key(&storage_key)?;
        let wallet = scrip_wallet::Wallet::load(&sealed, &key).map_err(|e| match e {
            // The state inside the envelope is of a newer version than this SDK's.
            scrip_wallet::WalletError::Invalid(scrip_tokens::Error::UnsupportedVersion {
                found,
                ..
            }) => ScripError::UnsupportedStateVersion {
                found: u32::from(found),
                supported: u32::from(scrip_wallet::STATE_VERSION),
            },
            other => other.into(),
        })?;
        let storage = AppStorage {
            app: store,
            last_stored: sealed,
        };
        Ok(Wallet::new(SavingWallet::loaded(wallet, key, storage)))
    }

    /// Takes the issuer's signed key directory (`GET /v1/keys`), verified against the
    /// root key.
    pub fn update_directory(&self, directory: Vec<u8>, now_unix_ms: u64) -> Result<()> {
        let directory: SignedKeyDirectory = decode(&directory)?;
        let mut wallet = self.lock()?;
        wallet.apply(|w, _| w.update_directory(directory, at(now_unix_ms)))
    }

    /// The device's self-signed registration, for `POST /v1/accounts`.
    pub fn registration_request(&self, now_unix_ms: u64) -> Result<Vec<u8>> {
        let mut wallet = self.lock()?;
        wallet.release(|w, rng| w.registration_request(None, at(now_unix_ms), rng))
    }

    /// Takes the answer of `POST /v1/accounts`; returns the account id (from the
    /// verified certificate).
    pub fn on_account_opened(&self, answer: Vec<u8>, now_unix_ms: u64) -> Result<String> {
        let opened: AccountOpenedBody = decode(&answer)?;
        let mut wallet = self.lock()?;
        wallet.apply(|w, _| w.on_account_certificate(opened.certificate, at(now_unix_ms)))?;
        wallet
            .wallet()
            .account()
            .map(|a| a.account_id.to_string())
            .ok_or_else(|| ScripError::Wallet {
                code: "not_registered".into(),
                message: "the account certificate was not kept".into(),
            })
    }

    /// A signed deposit request, for `POST /v1/deposits`.
    pub fn deposit_request(
        &self,
        amount_minor: u64,
        currency: String,
        now_unix_ms: u64,
    ) -> Result<Vec<u8>> {
        let amount = amount(amount_minor, &currency)?;
        let mut wallet = self.lock()?;
        wallet.release(|w, rng| w.deposit_request(amount, at(now_unix_ms), rng))
    }

    /// The deposit request `request` (bytes an earlier [`Wallet::deposit_request`]
    /// returned) signed again now, for a retry after a timeout: the issuer refuses replayed
    /// bytes and credits a deposit id once, whenever it was signed.
    pub fn resign_deposit_request(&self, request: Vec<u8>, now_unix_ms: u64) -> Result<Vec<u8>> {
        let earlier: scrip_tokens::DepositRequest = decode(&request)?;
        let deposit_id = earlier.payload.deposit_id;
        let mut wallet = self.lock()?;
        wallet.release(|w, rng| w.resign_deposit_request(deposit_id, at(now_unix_ms), rng))
    }

    /// Takes the issuer's deposit record; returns the signed confirmation, for
    /// `POST /v1/deposit-confirmations` (it also goes with the next sync).
    pub fn on_deposit_record(&self, record: Vec<u8>, now_unix_ms: u64) -> Result<Vec<u8>> {
        let record: DepositRecord = decode(&record)?;
        let mut wallet = self.lock()?;
        let confirmation =
            wallet.apply(|w, rng| w.on_deposit_record(record, at(now_unix_ms), rng))?;
        encode(&confirmation)
    }

    /// A balance certificate request for up to `up_to_minor` (`None`: as much as the
    /// issuer allows), handing in the records merchants receipted, for
    /// `POST /v2/balance-certificates`.
    pub fn certificate_request(
        &self,
        currency: String,
        up_to_minor: Option<u64>,
        now_unix_ms: u64,
    ) -> Result<Vec<u8>> {
        let options = match up_to_minor {
            Some(minor) => CertificateOptions::up_to(amount(minor, &currency)?),
            None => CertificateOptions::any(crate::currency(&currency)?),
        };
        let mut wallet = self.lock()?;
        wallet.release(|w, rng| w.certificate_request(options, at(now_unix_ms), rng))
    }

    /// The pending certificate request signed again now, for a retry after a timeout
    /// (same content and nonce, which the issuer answers once; new time).
    pub fn resign_certificate_request(&self, now_unix_ms: u64) -> Result<Vec<u8>> {
        let mut wallet = self.lock()?;
        wallet.release(|w, rng| w.resign_certificate_request(at(now_unix_ms), rng))
    }

    /// Takes the answer of `POST /v2/balance-certificates`; returns what became of each
    /// handed-in record (show a refused one: it is money a merchant was not paid).
    pub fn on_certificate_answer(&self, answer: Vec<u8>, now_unix_ms: u64) -> Result<Vec<HandIn>> {
        let answer: BalanceCertificateAnswer = decode(&answer)?;
        let mut wallet = self.lock()?;
        let outcomes = wallet.apply(|w, _| {
            w.on_balance_certificate_answer(answer.certificate, &answer.hand_ins, at(now_unix_ms))
        })?;
        Ok(hand_ins(outcomes))
    }

    /// A sync request handing in receipted records and deposit confirmations without
    /// asking for a certificate, for `POST /v1/sync`.
    pub fn sync_request(&self, now_unix_ms: u64) -> Result<Vec<u8>> {
        let request = self
            .lock()?
            .wallet_mut()
            .sync_request(at(now_unix_ms), &mut rng())?;
        encode(&request)
    }

    /// Takes the answer of `POST /v1/sync` to `request`.
    pub fn on_sync_report(
        &self,
        request: Vec<u8>,
        report: Vec<u8>,
        now_unix_ms: u64,
    ) -> Result<Vec<HandIn>> {
        let request: SyncRequest = decode(&request)?;
        let report: SyncReport = decode(&report)?;
        let mut wallet = self.lock()?;
        let outcomes = wallet.apply(|w, _| w.on_sync_report(&request, &report, at(now_unix_ms)))?;
        Ok(hand_ins(outcomes))
    }

    /// A blind withdrawal of coins of these values (minor units, one currency), for
    /// `POST /v1/withdrawals/blind`. The blinding secrets are stored before this returns.
    pub fn blind_withdrawal_request(
        &self,
        values_minor: Vec<u64>,
        currency: String,
        now_unix_ms: u64,
    ) -> Result<Vec<u8>> {
        let values = amounts(&values_minor, &currency)?;
        let mut wallet = self.lock()?;
        wallet.release(|w, rng| w.blind_withdrawal_request(&values, at(now_unix_ms), rng))
    }

    /// Unblinds and verifies the issuer's answer to `request`, and keeps the coins.
    pub fn on_blind_withdrawal(
        &self,
        request: Vec<u8>,
        response: Vec<u8>,
        now_unix_ms: u64,
    ) -> Result<WithdrawalReceived> {
        let request: BlindWithdrawalRequest = decode(&request)?;
        let response: BlindWithdrawalResponse = decode(&response)?;
        let mut wallet = self.lock()?;
        let ids =
            wallet.apply(|w, _| w.on_blind_withdrawal(&request, &response, at(now_unix_ms)))?;
        Ok(WithdrawalReceived::of(&ids))
    }

    /// Checks a merchant's offer offline (its certificate against the key directory, the
    /// revocation list, its signature, not paid before); returns what it asks.
    pub fn check_offer(&self, offer: Vec<u8>, now_unix_ms: u64) -> Result<OfferSummary> {
        let offer: MerchantOffer = decode(&offer)?;
        let wallet = self.lock()?;
        let request = wallet.wallet().check_offer(&offer, at(now_unix_ms))?;
        Ok(OfferSummary {
            merchant_id: request.merchant_id.to_string(),
            request_id: request.request_id.to_string(),
            amount_minor: request.amount.minor_units,
            currency: request.amount.currency.to_string(),
        })
    }

    /// Pays an offer offline; returns the answer for the merchant. The state it depends
    /// on (a used sequence number, coins handed over) is stored first.
    pub fn pay(&self, offer: Vec<u8>, method: PayMethod, now_unix_ms: u64) -> Result<Vec<u8>> {
        let with = match method {
            PayMethod::Record => PayWith::Record,
            PayMethod::Coins => PayWith::Coins,
        };
        let mut wallet = self.lock()?;
        let answer = wallet.build(|w, rng| w.pay_bytes(&offer, with, at(now_unix_ms), rng))?;
        wallet.send(answer)
    }

    /// Takes the merchant's reply: keeps the countersigned receipt, or on a signed
    /// refusal takes the coins back.
    pub fn on_merchant_reply(&self, reply: Vec<u8>, now_unix_ms: u64) -> Result<PaymentResult> {
        let reply: MerchantReply = decode(&reply)?;
        let mut wallet = self.lock()?;
        let status = wallet.apply(|w, _| w.on_merchant_reply(&reply, at(now_unix_ms)))?;
        Ok(match status {
            PaymentStatus::Completed(_) => PaymentResult {
                completed: true,
                rejection_code: None,
                rejection_message: None,
            },
            PaymentStatus::Rejected(reason) => PaymentResult {
                completed: false,
                rejection_code: Some(reason.code.as_str().to_owned()),
                rejection_message: Some(reason.message),
            },
        })
    }

    /// What the wallet holds in `currency`.
    pub fn balance(&self, currency: String, now_unix_ms: u64) -> Result<Balance> {
        let currency = crate::currency(&currency)?;
        let wallet = self.lock()?;
        let w = wallet.wallet();
        Ok(Balance {
            coins_minor: w.coin_total(currency).minor_units,
            offline_spendable_minor: w.offline_spendable(currency, at(now_unix_ms)).minor_units,
        })
    }

    /// The account this device belongs to (UUID), once registered.
    pub fn account_id(&self) -> Result<Option<String>> {
        Ok(self
            .lock()?
            .wallet()
            .account()
            .map(|a| a.account_id.to_string()))
    }
}

/// One line of a statement.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct StatementLine {
    /// The entry's sequence number (ask for lines after it to page on).
    pub seq: u64,
    /// When it was booked (milliseconds since the Unix epoch).
    pub at_unix_ms: u64,
    /// The change, in minor units.
    pub delta_minor: i64,
    /// The balance after it, in minor units.
    pub balance_after_minor: i64,
    /// What it was.
    pub memo: String,
}

/// A statement, checked: signed by the issuer's answer key, for this very request.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct Statement {
    /// Its currency.
    pub currency: String,
    /// The balance now, in minor units.
    pub balance_minor: i64,
    /// The entries asked for, oldest first.
    pub lines: Vec<StatementLine>,
}

/// A balance in minor units as the foreign languages' 64-bit integer. The ledger keeps
/// 128 bits; a balance beyond 2^63 minor units is refused rather than wrapped.
fn minor_i64(value: i128) -> Result<i64> {
    i64::try_from(value).map_err(|_| ScripError::Invalid {
        code: scrip_tokens::ReasonCode::AmountOverflow.as_str().to_owned(),
        message: format!("{value} minor units do not fit 64 bits"),
    })
}

pub(crate) fn statement_of(
    currency: scrip_tokens::Currency,
    balance: i128,
    entries: &[scrip_tokens::StatementEntry],
) -> Result<Statement> {
    Ok(Statement {
        currency: currency.to_string(),
        balance_minor: minor_i64(balance)?,
        lines: entries
            .iter()
            .map(|e| {
                Ok(StatementLine {
                    seq: e.seq,
                    at_unix_ms: e.at.as_unix_millis(),
                    delta_minor: minor_i64(e.delta)?,
                    balance_after_minor: minor_i64(e.balance_after)?,
                    memo: e.memo.clone(),
                })
            })
            .collect::<Result<Vec<_>>>()?,
    })
}

/// The other steps: revocations, identified coins, coins back from an unanswered payment,
/// refund vouchers, statements, more devices, coin backups.
#[uniffi::export]
impl Wallet {
    /// Takes the issuer's signed revocation list (`GET /v1/revocations`, the delta since
    /// [`Wallet::revocation_version`] or the full list): `check_offer` then refuses a
    /// revoked merchant. The list is not part of the sealed state: keep
    /// [`Wallet::revocation_state`]'s bytes beside it and give them back with
    /// [`Wallet::set_revocation_state`] after a restore.
    pub fn update_revocations(&self, list: Vec<u8>, now_unix_ms: u64) -> Result<()> {
        let list: scrip_tokens::RevocationList = decode(&list)?;
        Ok(self
            .lock()?
            .wallet_mut()
            .update_revocations(&list, at(now_unix_ms))?)
    }

    /// The version of the revocation list held (0: none yet).
    pub fn revocation_version(&self) -> Result<u64> {
        Ok(self.lock()?.wallet().revocations().version())
    }

    /// The revocation list held, encoded, to store beside the sealed state.
    pub fn revocation_state(&self) -> Result<Vec<u8>> {
        encode(self.lock()?.wallet().revocations())
    }

    /// Restores a revocation list from [`Wallet::revocation_state`]'s bytes.
    pub fn set_revocation_state(&self, state: Vec<u8>) -> Result<()> {
        let cache: scrip_tokens::RevocationCache = decode(&state)?;
        self.lock()?.wallet_mut().set_revocations(cache);
        Ok(())
    }

    /// An identified withdrawal (coins carrying the account's virtual id: the issuer can
    /// revoke and reissue them if the phone is lost), for `POST /v1/withdrawals/identified`.
    pub fn identified_withdrawal_request(
        &self,
        values_minor: Vec<u64>,
        currency: String,
        now_unix_ms: u64,
    ) -> Result<Vec<u8>> {
        let values = amounts(&values_minor, &currency)?;
        let mut wallet = self.lock()?;
        wallet.release(|w, rng| w.identified_withdrawal_request(&values, at(now_unix_ms), rng))
    }

    /// Verifies and keeps the coins of the issuer's answer to an identified withdrawal.
    pub fn on_identified_withdrawal(
        &self,
        request: Vec<u8>,
        response: Vec<u8>,
        now_unix_ms: u64,
    ) -> Result<WithdrawalReceived> {
        let request: scrip_tokens::IdentifiedWithdrawalRequest = decode(&request)?;
        let response: scrip_tokens::IdentifiedWithdrawalResponse = decode(&response)?;
        let mut wallet = self.lock()?;
        let ids = wallet
            .apply(|w, _| w.on_identified_withdrawal(&request, &response, at(now_unix_ms)))?;
        Ok(WithdrawalReceived::of(&ids))
    }

    /// Takes back the coins of a payment (`request_id`, from [`Wallet::check_offer`]) that
    /// the merchant never answered. Only if the answer surely never reached the merchant:
    /// coins it did receive and redeems are spent, and paying with them again is a double
    /// spend. Returns how many came back.
    pub fn take_back_unanswered_coins(&self, request_id: String) -> Result<u32> {
        let request_id = parse_id("request id", &request_id)?;
        let mut wallet = self.lock()?;
        let n = wallet.apply(|w, _| w.take_back_unanswered_coins(request_id))?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// A withdrawal of fresh blind coins against a merchant's refund voucher (its bytes),
    /// for `POST /v1/refund-withdrawals` (no account needed).
    pub fn voucher_withdrawal_request(
        &self,
        voucher: Vec<u8>,
        now_unix_ms: u64,
    ) -> Result<Vec<u8>> {
        let mut wallet = self.lock()?;
        wallet.release(|w, rng| w.voucher_withdrawal_request(&voucher, at(now_unix_ms), rng))
    }

    /// Unblinds, verifies and keeps the coins of the answer to a voucher withdrawal.
    pub fn on_voucher_withdrawal(
        &self,
        request: Vec<u8>,
        response: Vec<u8>,
        now_unix_ms: u64,
    ) -> Result<WithdrawalReceived> {
        let request: scrip_tokens::VoucherWithdrawalRequest = decode(&request)?;
        let response: BlindWithdrawalResponse = decode(&response)?;
        let mut wallet = self.lock()?;
        let ids =
            wallet.apply(|w, _| w.on_voucher_withdrawal(&request, &response, at(now_unix_ms)))?;
        Ok(WithdrawalReceived::of(&ids))
    }

    /// A swap for change, before going offline (`POST /v1/swaps`): the wallet's blind
    /// coins of `currency` split so that each of `amounts_minor` can be paid in turn with
    /// exact change, the rest in the default mix (1, 2, 2, 5 per decade, then largest
    /// first). `None` when the coins held already pay them all. Errors say which amount
    /// cannot be made (`no_coins_make`, `not_enough_coins`). Send the request; give the
    /// signed receipt to [`Wallet::on_swap_receipt`].
    pub fn change_request(
        &self,
        amounts_minor: Vec<u64>,
        currency: String,
        now_unix_ms: u64,
    ) -> Result<Option<Vec<u8>>> {
        let amounts = amounts(&amounts_minor, &currency)?;
        let mut wallet = self.lock()?;
        match wallet.build(|w, rng| w.change_request(&amounts, at(now_unix_ms), rng))? {
            Some(message) => Ok(Some(encode(&wallet.send(message)?)?)),
            None => Ok(None),
        }
    }

    /// A swap of coins whose keyset stopped issuing or ends within a week into the current
    /// keyset (`POST /v1/swaps`), or `None` when none needs it. Call it whenever online
    /// with a fresh key directory, again after each answer until it says `None`.
    pub fn refresh_request(&self, now_unix_ms: u64) -> Result<Option<Vec<u8>>> {
        let mut wallet = self.lock()?;
        match wallet.build(|w, rng| w.refresh_request(at(now_unix_ms), rng))? {
            Some(message) => Ok(Some(encode(&wallet.send(message)?)?)),
            None => Ok(None),
        }
    }

    /// A swap of the identified coins of `currency` for blind coins of the same total
    /// (the default mix), or `None` when none is held. The issuer swaps identified coins
    /// only for a device of their holder: sign the request with [`Wallet::sign_swap`]
    /// and send that (`POST /v1/device-swaps`).
    pub fn identified_swap_request(
        &self,
        currency: String,
        now_unix_ms: u64,
    ) -> Result<Option<Vec<u8>>> {
        let currency = crate::currency(&currency)?;
        let mut wallet = self.lock()?;
        match wallet.build(|w, rng| w.identified_swap_request(currency, at(now_unix_ms), rng))? {
            Some(message) => Ok(Some(encode(&wallet.send(message)?)?)),
            None => Ok(None),
        }
    }

    /// A pending swap (`request`, as a swap function or [`Wallet::pending_swaps`] gave
    /// it), signed by this device, for `POST /v1/device-swaps`: required when it hands in
    /// identified coins, allowed for any. Give the receipt to [`Wallet::on_swap_receipt`]
    /// with `request` (not the signed bytes). After a lost answer, sign it again.
    pub fn sign_swap(&self, request: Vec<u8>, now_unix_ms: u64) -> Result<Vec<u8>> {
        let request: scrip_tokens::SwapRequest = decode(&request)?;
        let signed = self
            .lock()?
            .wallet()
            .sign_swap(&request, at(now_unix_ms), &mut rng())?;
        encode(&signed)
    }

    /// Whether a swap request hands in identified coins: then send it signed
    /// ([`Wallet::sign_swap`]) to `POST /v1/device-swaps`.
    pub fn swap_hands_in_identified(&self, request: Vec<u8>) -> Result<bool> {
        let request: scrip_tokens::SwapRequest = decode(&request)?;
        Ok(request.hands_in_identified())
    }

    /// A swap of the held coins `coin_ids` for new coins worth `values_minor` (one
    /// currency; they add up to the coins, less the issuer's swap fee if it charges one).
    /// If it hands in identified coins, send it signed ([`Wallet::sign_swap`]).
    pub fn swap_request(
        &self,
        coin_ids: Vec<String>,
        values_minor: Vec<u64>,
        currency: String,
        now_unix_ms: u64,
    ) -> Result<Vec<u8>> {
        let ids = coin_ids
            .iter()
            .map(|id| parse_id("coin id", id).map(scrip_tokens::CoinId))
            .collect::<Result<Vec<_>>>()?;
        let values = amounts(&values_minor, &currency)?;
        let mut wallet = self.lock()?;
        wallet.release(|w, rng| w.swap_request(&ids, &values, at(now_unix_ms), rng))
    }

    /// Applies the issuer's signed answer to a swap: swapped (new coins kept, the old ones
    /// gone) or double spent (the coins named dropped, the others back).
    pub fn on_swap_receipt(
        &self,
        request: Vec<u8>,
        receipt: Vec<u8>,
        now_unix_ms: u64,
    ) -> Result<SwapDone> {
        let request: scrip_tokens::SwapRequest = decode(&request)?;
        let receipt: scrip_tokens::SwapReceipt = decode(&receipt)?;
        let mut wallet = self.lock()?;
        let result = wallet.apply(|w, _| w.on_swap_receipt(&request, &receipt, at(now_unix_ms)))?;
        Ok(SwapDone::of(&result))
    }

    /// The swaps sent and not answered yet: after a lost answer or a restart, send each
    /// again, unchanged; one that hands in identified coins
    /// ([`Wallet::swap_hands_in_identified`]) signed again ([`Wallet::sign_swap`]) and
    /// sent to `POST /v1/device-swaps`, as every time.
    pub fn pending_swaps(&self) -> Result<Vec<Vec<u8>>> {
        let wallet = self.lock()?;
        wallet.wallet().pending_swaps().iter().map(encode).collect()
    }

    /// Gives up a swap the issuer refused (an error answer to its first send: never after
    /// a lost answer); its coins come back. Returns how many.
    pub fn cancel_swap(&self, request: Vec<u8>) -> Result<u32> {
        let request: scrip_tokens::SwapRequest = decode(&request)?;
        let mut wallet = self.lock()?;
        let ids = wallet.apply(|w, _| w.cancel_swap(&request))?;
        Ok(u32::try_from(ids.len()).unwrap_or(u32::MAX))
    }

    /// A signed request for the account's statement in `currency` (entries after
    /// `after_seq`, at most `limit`), for `POST /v1/accounts/{id}/statement`.
    pub fn statement_request(
        &self,
        currency: String,
        after_seq: Option<u64>,
        limit: u32,
        now_unix_ms: u64,
    ) -> Result<Vec<u8>> {
        let currency = crate::currency(&currency)?;
        let request = self.lock()?.wallet().statement_request(
            currency,
            after_seq,
            limit,
            at(now_unix_ms),
            &mut rng(),
        )?;
        encode(&request)
    }

    /// Checks the issuer's answer to a statement request and returns its lines.
    pub fn verify_statement(
        &self,
        request: Vec<u8>,
        statement: Vec<u8>,
        now_unix_ms: u64,
    ) -> Result<Statement> {
        let request: scrip_tokens::StatementRequest = decode(&request)?;
        let answer: scrip_tokens::Statement = decode(&statement)?;
        let wallet = self.lock()?;
        let payload = wallet
            .wallet()
            .verify_statement(&request, &answer, at(now_unix_ms))?;
        statement_of(payload.currency, payload.balance, &payload.entries)
    }

    /// A new device's registration to join the account `account_id` (this wallet is the
    /// new device): an existing device approves it ([`Wallet::approve_device`]), then
    /// `POST /v1/devices` with both; [`Wallet::on_device_enrolled`] takes the answer.
    pub fn join_request(&self, account_id: String, now_unix_ms: u64) -> Result<Vec<u8>> {
        let account = parse_id("account id", &account_id)?;
        let mut wallet = self.lock()?;
        wallet.release(|w, rng| w.registration_request(Some(account), at(now_unix_ms), rng))
    }

    /// This (registered) device approves the new device whose registration these are.
    pub fn approve_device(&self, registration: Vec<u8>, now_unix_ms: u64) -> Result<Vec<u8>> {
        let registration: scrip_tokens::DeviceRegistration = decode(&registration)?;
        let new_key = registration.payload.device_key.key_id();
        let approval =
            self.lock()?
                .wallet()
                .approve_device(new_key, at(now_unix_ms), &mut rng())?;
        encode(&approval)
    }

    /// Takes the account certificate `POST /v1/devices` answered for this new device.
    pub fn on_device_enrolled(&self, certificate: Vec<u8>, now_unix_ms: u64) -> Result<()> {
        let certificate: scrip_tokens::AccountCertificate = decode(&certificate)?;
        let mut wallet = self.lock()?;
        wallet.apply(|w, _| w.on_account_certificate(certificate, at(now_unix_ms)))
    }

    /// The blind coins held, sealed with `backup_key` (32 bytes; not the storage key):
    /// blind coins cannot be reissued by the issuer, so a copy elsewhere is their only
    /// backup. Restoring a backup after spending from it is a double spend.
    pub fn backup_blind_coins(&self, backup_key: Vec<u8>) -> Result<Vec<u8>> {
        let key = sealing_key(&backup_key)?;
        Ok(self.lock()?.wallet().backup_blind_coins(&key, &mut rng())?)
    }

    /// Adds the valid coins of a backup that the wallet does not hold; returns how many.
    pub fn restore_blind_coins(
        &self,
        backup: Vec<u8>,
        backup_key: Vec<u8>,
        now_unix_ms: u64,
    ) -> Result<u32> {
        let key = sealing_key(&backup_key)?;
        let mut wallet = self.lock()?;
        let n = wallet.apply(|w, _| w.restore_blind_coins(&backup, &key, at(now_unix_ms)))?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }
}
