//! The wallet, for phone and card vendors: [`Wallet`] wraps `scrip_wallet::SavingWallet`,
//! so every message whose loss in a crash would cost money (a payment, a withdrawal
//! request, a registration) is returned only after the app's [`WalletStore`] has stored the
//! sealed state it depends on. Every message in and out is bytes in scrip's wire format:
//! the app carries them over HTTP, NFC, BLE or QR codes.

use std::sync::{Arc, Mutex, MutexGuard};

use scrip_api::{AccountOpenedBody, BalanceCertificateAnswer};
use scrip_tokens::keys::DirectoryRoot;
use scrip_tokens::{
    codec, BlindWithdrawalRequest, BlindWithdrawalResponse, DepositRecord, MerchantOffer,
    MerchantReply, Message, RedemptionOutcome, SignedKeyDirectory, SyncReport, SyncRequest,
    VerifyingKey,
};
use scrip_wallet::{CertificateOptions, PayWith, PaymentStatus, SavingWallet, StorageKey};

use crate::{amount, at, rng, Result, ScripError};

/// Where the app keeps the sealed wallet state (a file, the keystore, a database row).
/// `save` must make the bytes durable before it returns: the SDK releases a payment or a
/// withdrawal request only after it returned.
#[uniffi::export(with_foreign)]
pub trait WalletStore: Send + Sync {
    /// Replaces the stored state with `sealed`. Throw (`ScripError.Storage`) if it could
    /// not be stored: the SDK then releases nothing.
    fn save(&self, sealed: Vec<u8>) -> Result<()>;
}

/// Adapts the app's store to the wallet crate's storage trait.
struct AppStorage(Arc<dyn WalletStore>);

impl scrip_wallet::WalletStorage for AppStorage {
    type Error = ScripError;

    fn store(&mut self, sealed: &[u8]) -> Result<()> {
        self.0.save(sealed.to_vec())
    }
}

fn decode<T: Message>(bytes: &[u8]) -> Result<T> {
    Ok(codec::decode(bytes)?)
}

fn encode<T: Message>(value: &T) -> Result<Vec<u8>> {
    Ok(codec::encode(value)?)
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
pub(crate) fn outcome_name(outcome: &RedemptionOutcome) -> (&'static str, Option<String>) {
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
}

impl Wallet {
    fn lock(&self) -> MutexGuard<'_, SavingWallet<AppStorage>> {
        // A panic while holding the lock cannot leave a half-made change in storage: the
        // state is only stored whole. Keep serving.
        match self.inner.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
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
        let saving = SavingWallet::new(
            wallet,
            sealing_key(&storage_key)?,
            AppStorage(store),
            &mut rng,
        )?;
        Ok(Arc::new(Wallet {
            inner: Mutex::new(saving),
        }))
    }

    /// Opens a wallet from the sealed bytes `store` holds (as `save` last received them).
    /// A wrong key or altered bytes: `WrongKeyOrCorrupted`; a state of another format
    /// version: `UnsupportedStateVersion`.
    #[uniffi::constructor]
    pub fn restore(
        sealed: Vec<u8>,
        storage_key: Vec<u8>,
        store: Arc<dyn WalletStore>,
    ) -> Result<Arc<Self>> {
        let key = sealing_key(&storage_key)?;
        let wallet = scrip_wallet::Wallet::load(&sealed, &key)?;
        Ok(Arc::new(Wallet {
            inner: Mutex::new(SavingWallet::loaded(wallet, key, AppStorage(store))),
        }))
    }

    /// Takes the issuer's signed key directory (`GET /v1/keys`), verified against the
    /// root key.
    pub fn update_directory(&self, directory: Vec<u8>, now_unix_ms: u64) -> Result<()> {
        let directory: SignedKeyDirectory = decode(&directory)?;
        let mut wallet = self.lock();
        Ok(wallet.apply(&mut rng(), |w, _| {
            w.update_directory(directory, at(now_unix_ms))
        })?)
    }

    /// The device's self-signed registration, for `POST /v1/accounts`.
    pub fn registration_request(&self, now_unix_ms: u64) -> Result<Vec<u8>> {
        let mut rng = rng();
        let mut wallet = self.lock();
        let request = wallet
            .wallet_mut()
            .registration_request(None, at(now_unix_ms), &mut rng)?;
        encode(&wallet.send(request, &mut rng)?)
    }

    /// Takes the answer of `POST /v1/accounts`; returns the account id.
    pub fn on_account_opened(&self, answer: Vec<u8>, now_unix_ms: u64) -> Result<String> {
        let opened: AccountOpenedBody = decode(&answer)?;
        let account = opened.account_id.to_string();
        let mut wallet = self.lock();
        wallet.apply(&mut rng(), |w, _| {
            w.on_account_certificate(opened.certificate, at(now_unix_ms))
        })?;
        Ok(account)
    }

    /// A signed deposit request, for `POST /v1/deposits`.
    pub fn deposit_request(
        &self,
        amount_minor: u64,
        currency: String,
        now_unix_ms: u64,
    ) -> Result<Vec<u8>> {
        let amount = amount(amount_minor, &currency)?;
        let mut rng = rng();
        let mut wallet = self.lock();
        let request = wallet
            .wallet_mut()
            .deposit_request(amount, at(now_unix_ms), &mut rng)?;
        encode(&wallet.send(request, &mut rng)?)
    }

    /// Takes the issuer's deposit record; returns the signed confirmation, for
    /// `POST /v1/deposit-confirmations` (it also goes with the next sync).
    pub fn on_deposit_record(&self, record: Vec<u8>, now_unix_ms: u64) -> Result<Vec<u8>> {
        let record: DepositRecord = decode(&record)?;
        let mut wallet = self.lock();
        let confirmation = wallet.apply(&mut rng(), |w, rng| {
            w.on_deposit_record(record, at(now_unix_ms), rng)
        })?;
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
        let mut rng = rng();
        let mut wallet = self.lock();
        let request =
            wallet
                .wallet_mut()
                .certificate_request(options, at(now_unix_ms), &mut rng)?;
        encode(&wallet.send(request, &mut rng)?)
    }

    /// Takes the answer of `POST /v2/balance-certificates`; returns what became of each
    /// handed-in record (show a refused one: it is money a merchant was not paid).
    pub fn on_certificate_answer(&self, answer: Vec<u8>, now_unix_ms: u64) -> Result<Vec<HandIn>> {
        let answer: BalanceCertificateAnswer = decode(&answer)?;
        let mut wallet = self.lock();
        let outcomes = wallet.apply(&mut rng(), |w, _| {
            w.on_balance_certificate_answer(answer.certificate, &answer.hand_ins, at(now_unix_ms))
        })?;
        Ok(hand_ins(outcomes))
    }

    /// A sync request handing in receipted records and deposit confirmations without
    /// asking for a certificate, for `POST /v1/sync`.
    pub fn sync_request(&self, now_unix_ms: u64) -> Result<Vec<u8>> {
        let request = self
            .lock()
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
        let mut wallet = self.lock();
        let outcomes = wallet.apply(&mut rng(), |w, _| {
            w.on_sync_report(&request, &report, at(now_unix_ms))
        })?;
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
        let values = values_minor
            .into_iter()
            .map(|v| amount(v, &currency))
            .collect::<Result<Vec<_>>>()?;
        let mut rng = rng();
        let mut wallet = self.lock();
        let request =
            wallet
                .wallet_mut()
                .blind_withdrawal_request(&values, at(now_unix_ms), &mut rng)?;
        encode(&wallet.send(request, &mut rng)?)
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
        let mut wallet = self.lock();
        let ids = wallet.apply(&mut rng(), |w, _| {
            w.on_blind_withdrawal(&request, &response, at(now_unix_ms))
        })?;
        Ok(WithdrawalReceived {
            coin_ids: ids.iter().map(ToString::to_string).collect(),
        })
    }

    /// Checks a merchant's offer offline (its certificate against the key directory, the
    /// revocation list, its signature, not paid before); returns what it asks.
    pub fn check_offer(&self, offer: Vec<u8>, now_unix_ms: u64) -> Result<OfferSummary> {
        let offer: MerchantOffer = decode(&offer)?;
        let wallet = self.lock();
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
        let mut rng = rng();
        let mut wallet = self.lock();
        let answer = wallet
            .wallet_mut()
            .pay_bytes(&offer, with, at(now_unix_ms), &mut rng)?;
        Ok(wallet.send(answer, &mut rng)?)
    }

    /// Takes the merchant's reply: keeps the countersigned receipt, or on a signed
    /// refusal takes the coins back.
    pub fn on_merchant_reply(&self, reply: Vec<u8>, now_unix_ms: u64) -> Result<PaymentResult> {
        let reply: MerchantReply = decode(&reply)?;
        let mut wallet = self.lock();
        let status = wallet.apply(&mut rng(), |w, _| {
            w.on_merchant_reply(&reply, at(now_unix_ms))
        })?;
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
        let wallet = self.lock();
        let w = wallet.wallet();
        Ok(Balance {
            coins_minor: w.coin_total(currency).minor_units,
            offline_spendable_minor: w.offline_spendable(currency, at(now_unix_ms)).minor_units,
        })
    }

    /// The account this device belongs to (UUID), once registered.
    pub fn account_id(&self) -> Option<String> {
        self.lock()
            .wallet()
            .account()
            .map(|a| a.account_id.to_string())
    }
}
