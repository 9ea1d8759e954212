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

fn parse_id<T: std::str::FromStr>(what: &str, text: &str) -> Result<T> {
    text.parse()
        .map_err(|_| ScripError::bad_argument(format!("{what} {text:?} is not a UUID")))
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
            .lock()
            .wallet_mut()
            .update_revocations(&list, at(now_unix_ms))?)
    }

    /// The version of the revocation list held (0: none yet).
    pub fn revocation_version(&self) -> u64 {
        self.lock().wallet().revocations().version()
    }

    /// The revocation list held, encoded, to store beside the sealed state.
    pub fn revocation_state(&self) -> Result<Vec<u8>> {
        encode(self.lock().wallet().revocations())
    }

    /// Restores a revocation list from [`Wallet::revocation_state`]'s bytes.
    pub fn set_revocation_state(&self, state: Vec<u8>) -> Result<()> {
        let cache: scrip_tokens::RevocationCache = decode(&state)?;
        self.lock().wallet_mut().set_revocations(cache);
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
        let values = values_minor
            .into_iter()
            .map(|v| amount(v, &currency))
            .collect::<Result<Vec<_>>>()?;
        let mut rng = rng();
        let mut wallet = self.lock();
        let request = wallet.wallet_mut().identified_withdrawal_request(
            &values,
            at(now_unix_ms),
            &mut rng,
        )?;
        encode(&wallet.send(request, &mut rng)?)
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
        let mut wallet = self.lock();
        let ids = wallet.apply(&mut rng(), |w, _| {
            w.on_identified_withdrawal(&request, &response, at(now_unix_ms))
        })?;
        Ok(WithdrawalReceived {
            coin_ids: ids.iter().map(ToString::to_string).collect(),
        })
    }

    /// Takes back the coins of a payment (`request_id`, from [`Wallet::check_offer`]) that
    /// the merchant never answered. Only if the answer surely never reached the merchant:
    /// coins it did receive and redeems are spent, and paying with them again is a double
    /// spend. Returns how many came back.
    pub fn take_back_unanswered_coins(&self, request_id: String) -> Result<u32> {
        let request_id = parse_id("request id", &request_id)?;
        let mut wallet = self.lock();
        let n = wallet.apply(&mut rng(), |w, _| w.take_back_unanswered_coins(request_id))?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// A withdrawal of fresh blind coins against a merchant's refund voucher (its bytes),
    /// for `POST /v1/refund-withdrawals` (no account needed).
    pub fn voucher_withdrawal_request(
        &self,
        voucher: Vec<u8>,
        now_unix_ms: u64,
    ) -> Result<Vec<u8>> {
        let mut rng = rng();
        let mut wallet = self.lock();
        let request =
            wallet
                .wallet_mut()
                .voucher_withdrawal_request(&voucher, at(now_unix_ms), &mut rng)?;
        encode(&wallet.send(request, &mut rng)?)
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
        let mut wallet = self.lock();
        let ids = wallet.apply(&mut rng(), |w, _| {
            w.on_voucher_withdrawal(&request, &response, at(now_unix_ms))
        })?;
        Ok(WithdrawalReceived {
            coin_ids: ids.iter().map(ToString::to_string).collect(),
        })
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
        let request = self.lock().wallet().statement_request(
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
        let wallet = self.lock();
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
        let mut rng = rng();
        let mut wallet = self.lock();
        let request =
            wallet
                .wallet_mut()
                .registration_request(Some(account), at(now_unix_ms), &mut rng)?;
        encode(&wallet.send(request, &mut rng)?)
    }

    /// This (registered) device approves the new device whose registration these are.
    pub fn approve_device(&self, registration: Vec<u8>, now_unix_ms: u64) -> Result<Vec<u8>> {
        let registration: scrip_tokens::DeviceRegistration = decode(&registration)?;
        let new_key = registration.payload.device_key.key_id();
        let approval = self
            .lock()
            .wallet()
            .approve_device(new_key, at(now_unix_ms), &mut rng())?;
        encode(&approval)
    }

    /// Takes the account certificate `POST /v1/devices` answered for this new device.
    pub fn on_device_enrolled(&self, certificate: Vec<u8>, now_unix_ms: u64) -> Result<()> {
        let certificate: scrip_tokens::AccountCertificate = decode(&certificate)?;
        let mut wallet = self.lock();
        Ok(wallet.apply(&mut rng(), |w, _| {
            w.on_account_certificate(certificate, at(now_unix_ms))
        })?)
    }

    /// The blind coins held, sealed with `backup_key` (32 bytes; not the storage key):
    /// blind coins cannot be reissued by the issuer, so a copy elsewhere is their only
    /// backup. Restoring a backup after spending from it is a double spend.
    pub fn backup_blind_coins(&self, backup_key: Vec<u8>) -> Result<Vec<u8>> {
        let key = sealing_key(&backup_key)?;
        Ok(self.lock().wallet().backup_blind_coins(&key, &mut rng())?)
    }

    /// Adds the valid coins of a backup that the wallet does not hold; returns how many.
    pub fn restore_blind_coins(
        &self,
        backup: Vec<u8>,
        backup_key: Vec<u8>,
        now_unix_ms: u64,
    ) -> Result<u32> {
        let key = sealing_key(&backup_key)?;
        let mut wallet = self.lock();
        let n = wallet.apply(&mut rng(), |w, _| {
            w.restore_blind_coins(&backup, &key, at(now_unix_ms))
        })?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }
}
