#![doc = include_str!("../README.md")]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod change;
mod error;
mod recovery;
mod state;
mod storage;

use std::time::Duration;

use rand_core::CryptoRng;
use scrip_tokens::keys::{Device, DirectoryRoot};
use scrip_tokens::{
    codec, AccountCertificate, AccountCertificatePayload, AccountId, Amount, BalanceCertificate,
    BalanceCertificateRequest, BalanceCertificateRequestPayload, BlindWithdrawalRequest,
    BlindWithdrawalRequestPayload, BlindWithdrawalResponse, Coin, CoinId, CoinPayment, Currency,
    DepositConfirmation, DepositConfirmationPayload, DepositId, DepositRecord, DepositRequest,
    DepositRequestPayload, DeviceApproval, DeviceApprovalPayload, DeviceRegistration,
    DeviceRegistrationPayload, IdentifiedWithdrawalRequest, IdentifiedWithdrawalRequestPayload,
    IdentifiedWithdrawalResponse, KeyDirectory, KeyId, LockRules, MerchantOffer, MerchantReply,
    Nonce, PaymentAnswer, PaymentReceipt, PaymentRequestPayload, PendingCoin, RejectReason,
    RequestId, SigningKey, Statement, StatementPayload, StatementRequest, StatementRequestPayload,
    SyncReport, SyncRequest, SyncRequestPayload, Timestamp, VerifyingKey, WithdrawalRecord,
    WithdrawalRecordPayload,
};

pub use error::{Result, WalletError};
pub use recovery::RecoverySheet;
pub use storage::{StorageKey, STORAGE_FORMAT_VERSION};

use change::{exact_change, Change};
use state::{
    certificate_mut, CertificateState, CoinsInFlight, DepositState, PendingBlindWithdrawal,
    RecordInFlight, WalletState,
};

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
    /// At most this much (minor units); `None`: as much as the rules allow.
    pub requested_amount: Option<u64>,
    /// At most this many payments.
    pub max_payments: Option<u32>,
    /// At most this per payment (minor units).
    pub per_payment_cap: Option<u64>,
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
        };
        Ok(Wallet {
            state,
            key: device_key,
            directory: None,
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
        let state: WalletState = codec::decode(&plaintext)?;
        let device_key = SigningKey::from_der(&state.device_key)?;
        let directory = match &state.directory {
            Some((signed, _)) => Some(signed.verify(&state.root)?.clone()),
            None => None,
        };
        Ok(Wallet {
            state,
            key: device_key,
            directory,
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

    // ---- identity -------------------------------------------------------------------

    /// The device key's id.
    pub fn device_key_id(&self) -> KeyId {
        self.key.key_id()
    }

    /// The device's public key.
    pub fn device_key(&self) -> &VerifyingKey<Device> {
        self.key.verifying_key()
    }

    /// The account certificate, once registered.
    pub fn account(&self) -> Option<&AccountCertificatePayload> {
        self.state.account.as_ref().map(|c| &c.payload)
    }

    fn registered(&self) -> Result<&AccountCertificate> {
        self.state
            .account
            .as_ref()
            .ok_or(WalletError::NotRegistered)
    }

    /// A registration presenting this device's key: to open an account (`None`) or to join
    /// `account` (then an existing device approves it with [`Wallet::approve_device`]).
    pub fn registration_request<G: CryptoRng + ?Sized>(
        &mut self,
        account: Option<AccountId>,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<Unreleased<DeviceRegistration>> {
        let registration = DeviceRegistration::sign(
            DeviceRegistrationPayload {
                device_key: self.key.verifying_key().clone(),
                account_id: account,
                created_at: now,
                nonce: nonce(rng),
            },
            &self.key,
            rng,
        )?;
        Ok(self.unreleased(registration))
    }

    /// This (registered) device approves another device's key joining the account.
    pub fn approve_device<G: CryptoRng + ?Sized>(
        &self,
        new_device_key: KeyId,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<DeviceApproval> {
        let account = &self.registered()?.payload;
        Ok(DeviceApproval::sign(
            DeviceApprovalPayload {
                account_id: account.account_id,
                approving_device: account.device_id,
                new_device_key,
                created_at: now,
                nonce: nonce(rng),
            },
            &self.key,
            rng,
        )?)
    }

    /// Takes the account certificate the issuer returned for this device's registration.
    pub fn on_account_certificate(
        &mut self,
        certificate: AccountCertificate,
        now: Timestamp,
    ) -> Result<()> {
        let payload = certificate.verify(self.directory()?, now)?;
        if payload.device_key != *self.key.verifying_key() {
            return Err(scrip_tokens::Error::UnknownKey(payload.device_key.key_id()).into());
        }
        self.state.account = Some(certificate);
        self.touch();
        Ok(())
    }

    // ---- key directory --------------------------------------------------------------

    /// Takes a key directory fetched from the issuer (checked against the pinned root key).
    pub fn update_directory(
        &mut self,
        signed: scrip_tokens::SignedKeyDirectory,
        now: Timestamp,
    ) -> Result<()> {
        let directory = signed.verify(&self.state.root)?.clone();
        self.directory = Some(directory);
        self.state.directory = Some((signed, now));
        self.touch();
        Ok(())
    }

    /// How old the cached key directory is.
    pub fn directory_age(&self, now: Timestamp) -> Option<Duration> {
        self.state.directory.as_ref().map(|(_, at)| {
            Duration::from_millis(now.as_unix_millis().saturating_sub(at.as_unix_millis()))
        })
    }

    fn directory(&self) -> Result<&KeyDirectory> {
        self.directory.as_ref().ok_or(WalletError::NoDirectory)
    }

    // ---- deposits -------------------------------------------------------------------

    /// A deposit request (kept until the issuer's record arrives; to retry, sign it again
    /// with [`Wallet::resign_deposit_request`]: the issuer credits a deposit id once).
    pub fn deposit_request<G: CryptoRng + ?Sized>(
        &mut self,
        amount: Amount,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<Unreleased<DepositRequest>> {
        if amount.is_zero() {
            return Err(WalletError::Unsupported("a deposit of zero"));
        }
        let account = self.registered()?.payload.clone();
        let request = DepositRequest::sign(
            DepositRequestPayload {
                deposit_id: DepositId::random(rng),
                account_id: account.account_id,
                device_id: account.device_id,
                amount,
                created_at: now,
            },
            &self.key,
            rng,
        )?;
        self.state.pending_deposits.push(request.clone());
        Ok(self.unreleased(request))
    }

    /// Signs a pending deposit request again at `now` for a retry after a timeout: the
    /// issuer refuses replayed bytes, and credits a deposit id once whatever the time it
    /// was signed at.
    pub fn resign_deposit_request<G: CryptoRng + ?Sized>(
        &mut self,
        deposit_id: DepositId,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<Unreleased<DepositRequest>> {
        let index = self
            .state
            .pending_deposits
            .iter()
            .position(|r| r.payload.deposit_id == deposit_id)
            .ok_or(WalletError::Unexpected("no pending deposit with this id"))?;
        let mut payload = self.state.pending_deposits[index].payload.clone();
        payload.created_at = now;
        let request = DepositRequest::sign(payload, &self.key, rng)?;
        self.state.pending_deposits[index] = request.clone();
        self.touch();
        Ok(self.unreleased(request))
    }

    /// Deposit requests still waiting for the issuer's record (sign them again with
    /// [`Wallet::resign_deposit_request`] to retry).
    pub fn pending_deposits(&self) -> &[DepositRequest] {
        &self.state.pending_deposits
    }

    /// Takes the issuer's deposit record for a pending request, checks both signatures, and
    /// returns the confirmation (also handed in with the next sync or certificate request).
    pub fn on_deposit_record<G: CryptoRng + ?Sized>(
        &mut self,
        record: DepositRecord,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<DepositConfirmation> {
        let account = self.registered()?.payload.clone();
        let payload = record.verify(self.directory()?, &account, now)?;
        let index = self
            .state
            .pending_deposits
            .iter()
            .position(|r| {
                r.payload.deposit_id == payload.request.payload.deposit_id
                    && r.payload.amount == payload.request.payload.amount
            })
            .ok_or(WalletError::Unexpected(
                "a deposit record for no pending request",
            ))?;
        let confirmation = DepositConfirmation::sign(
            DepositConfirmationPayload {
                deposit_id: payload.deposit_id(),
                account_id: account.account_id,
                device_id: account.device_id,
                deposit_record_digest: codec::digest(&record)?,
                confirmed_at: now,
            },
            &self.key,
            rng,
        )?;
        self.state.pending_deposits.remove(index);
        self.state.deposits.push(DepositState {
            record,
            confirmation: confirmation.clone(),
            acknowledged: false,
        });
        self.touch();
        Ok(confirmation)
    }

    fn unacknowledged_confirmations(&self) -> Vec<DepositConfirmation> {
        self.state
            .deposits
            .iter()
            .filter(|d| !d.acknowledged)
            .map(|d| d.confirmation.clone())
            .collect()
    }

    // ---- balance certificates and sync ------------------------------------------------

    /// A certificate request, handing in the outbox (receipted records the issuer may not
    /// have seen) and unacknowledged deposit confirmations. Kept until answered: to retry,
    /// sign it again with [`Wallet::resign_certificate_request`] (same nonce, so the
    /// issuer answers with the same certificate).
    pub fn certificate_request<G: CryptoRng + ?Sized>(
        &mut self,
        options: CertificateOptions,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<Unreleased<BalanceCertificateRequest>> {
        let account = self.registered()?.payload.clone();
        let request = BalanceCertificateRequest::sign(
            BalanceCertificateRequestPayload {
                account_id: account.account_id,
                device_id: account.device_id,
                currency: options.currency,
                requested_amount: options.requested_amount,
                max_payments: options.max_payments,
                per_payment_cap: options.per_payment_cap,
                lock: options.lock,
                unsent_records: self.state.outbox.clone(),
                deposit_confirmations: self.unacknowledged_confirmations(),
                created_at: now,
                nonce: nonce(rng),
            },
            &self.key,
            rng,
        )?;
        self.state.pending_certificate_request = Some(request.clone());
        Ok(self.unreleased(request))
    }

    /// The pending certificate request signed again at `now` for a retry: same nonce
    /// and content (the issuer's idempotency key), new time (the transport refuses
    /// replayed bytes).
    pub fn resign_certificate_request<G: CryptoRng + ?Sized>(
        &mut self,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<Unreleased<BalanceCertificateRequest>> {
        let pending = self
            .state
            .pending_certificate_request
            .as_ref()
            .ok_or(WalletError::Unexpected("no pending certificate request"))?;
        let mut payload = pending.payload.clone();
        payload.created_at = now;
        let request = BalanceCertificateRequest::sign(payload, &self.key, rng)?;
        self.state.pending_certificate_request = Some(request.clone());
        self.touch();
        Ok(self.unreleased(request))
    }

    /// The certificate request waiting for an answer (to retry after a timeout).
    pub fn pending_certificate_request(&self) -> Option<&BalanceCertificateRequest> {
        self.state.pending_certificate_request.as_ref()
    }

    /// Takes a balance certificate the issuer signed for this device. The hand-ins of the
    /// request it answers have reached the issuer and leave the outbox.
    pub fn on_balance_certificate(
        &mut self,
        certificate: BalanceCertificate,
        now: Timestamp,
    ) -> Result<()> {
        let account = self.registered()?.payload.clone();
        let payload = certificate
            .verify(self.directory()?, &account, now)?
            .clone();
        if let Some(request) = self.state.pending_certificate_request.take() {
            self.forget_handed_in(
                &request.payload.unsent_records,
                &request.payload.deposit_confirmations,
            );
        }
        if !self
            .state
            .certificates
            .iter()
            .any(|c| c.certificate.payload.serial == payload.serial)
        {
            self.state.certificates.push(CertificateState {
                certificate,
                spent: 0,
            });
        }
        // Records under the new certificate start at its first sequence number; the
        // counter never goes back.
        self.state.next_sequence = self.state.next_sequence.max(payload.first_sequence);
        self.touch();
        Ok(())
    }

    fn forget_handed_in(
        &mut self,
        records: &[WithdrawalRecord],
        confirmations: &[DepositConfirmation],
    ) {
        self.state.outbox.retain(|r| !records.contains(r));
        for d in &mut self.state.deposits {
            if confirmations.contains(&d.confirmation) {
                d.acknowledged = true;
            }
        }
    }

    /// A sync request handing in the outbox and unacknowledged deposit confirmations,
    /// without asking for a certificate.
    pub fn sync_request<G: CryptoRng + ?Sized>(
        &mut self,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<SyncRequest> {
        let account = self.registered()?.payload.clone();
        Ok(SyncRequest::sign(
            SyncRequestPayload {
                account_id: account.account_id,
                device_id: account.device_id,
                unsent_records: self.state.outbox.clone(),
                deposit_confirmations: self.unacknowledged_confirmations(),
                created_at: now,
                nonce: nonce(rng),
            },
            &self.key,
            rng,
        )?)
    }

    /// A signed request for the account's statement in `currency` (entries after
    /// `after_seq`, at most `limit`). Reading changes nothing, so it needs no save first.
    pub fn statement_request<G: CryptoRng + ?Sized>(
        &self,
        currency: Currency,
        after_seq: Option<u64>,
        limit: u32,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<StatementRequest> {
        let account = self.registered()?.payload.clone();
        Ok(StatementRequest::sign(
            StatementRequestPayload {
                account_id: account.account_id,
                device_id: account.device_id,
                currency,
                after_seq,
                limit,
                created_at: now,
                nonce: nonce(rng),
            },
            &self.key,
            rng,
        )?)
    }

    /// Takes the issuer's answer to a sync: the handed-in records leave the outbox (the
    /// issuer recorded them, or refused them for good); confirmations count as
    /// acknowledged if all were recorded.
    ///
    /// The report must be the issuer's, signed by its answer key (as listed in the cached
    /// directory) for this request; otherwise the wallet keeps everything as it was
    /// ([`WalletError::UnverifiedAnswer`]) and hands it in again at the next sync.
    pub fn on_sync_report(
        &mut self,
        request: &SyncRequest,
        report: &SyncReport,
        now: Timestamp,
    ) -> Result<()> {
        let report = report
            .verify_for(request, self.directory()?, now)
            .map_err(WalletError::UnverifiedAnswer)?;
        let confirmations = if report.confirmations_recorded as usize
            == request.payload.deposit_confirmations.len()
        {
            request.payload.deposit_confirmations.clone()
        } else {
            Vec::new()
        };
        self.forget_handed_in(&request.payload.unsent_records, &confirmations);
        self.touch();
        Ok(())
    }

    /// Checks a statement the issuer sent for `request`: signed by its answer key (as
    /// listed in the cached directory), for this request's account and currency. Show
    /// balances only from a statement that passed.
    pub fn verify_statement<'s>(
        &self,
        request: &StatementRequest,
        statement: &'s Statement,
        now: Timestamp,
    ) -> Result<&'s StatementPayload> {
        statement
            .verify_for(request, self.directory()?, now)
            .map_err(WalletError::UnverifiedAnswer)
    }

    /// The balance certificates held and what was spent under each.
    pub fn certificates(&self) -> impl Iterator<Item = (&BalanceCertificate, Amount)> {
        self.state.certificates.iter().map(|c| {
            let currency = c.certificate.payload.available.currency;
            (&c.certificate, Amount::new(c.spent, currency))
        })
    }

    /// What the unexpired certificates still allow offline in `currency`.
    pub fn offline_spendable(&self, currency: Currency, now: Timestamp) -> Amount {
        let total = self
            .state
            .certificates
            .iter()
            .filter(|c| {
                let p = &c.certificate.payload;
                // Only certificates whose sequence range the counter is still in can pay.
                p.available.currency == currency
                    && p.validity().contains(now)
                    && p.covers_sequence(self.state.next_sequence)
            })
            .map(|c| {
                c.certificate
                    .payload
                    .available
                    .minor_units
                    .saturating_sub(c.spent)
            })
            .fold(0u64, u64::saturating_add);
        Amount::new(total, currency)
    }

    /// The next sequence number a record will carry.
    pub fn next_sequence(&self) -> u64 {
        self.state.next_sequence
    }

    // ---- coins ----------------------------------------------------------------------

    /// A blind withdrawal of coins of `amounts` (minor units, denominations of the current
    /// keyset). The blinding secrets are kept (save before releasing!) until the answer.
    pub fn blind_withdrawal_request<G: CryptoRng + ?Sized>(
        &mut self,
        amounts: &[u64],
        currency: Currency,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<Unreleased<BlindWithdrawalRequest>> {
        if amounts.is_empty() {
            return Err(WalletError::Unsupported("a withdrawal of no coins"));
        }
        let account = self.registered()?.payload.clone();
        let keyset = self
            .directory()?
            .current_keyset(currency, now)
            .ok_or(WalletError::Unsupported("no keyset open for this currency"))?
            .clone();
        let coins = amounts
            .iter()
            .map(|v| PendingCoin::new(rng, &keyset, Amount::new(*v, currency)))
            .collect::<Result<Vec<_>, _>>()?;
        let mut idempotency_key = [0u8; 32];
        rng.fill_bytes(&mut idempotency_key);
        let request = BlindWithdrawalRequest::sign(
            BlindWithdrawalRequestPayload {
                account_id: account.account_id,
                device_id: account.device_id,
                keyset_id: keyset.id(),
                coins: coins
                    .iter()
                    .map(|c| (c.amount().minor_units, c.blinded().clone()))
                    .collect(),
                idempotency_key,
                created_at: now,
                nonce: nonce(rng),
            },
            &self.key,
            rng,
        )?;
        self.state.blind_withdrawals.push(PendingBlindWithdrawal {
            request: request.clone(),
            coins,
        });
        Ok(self.unreleased(request))
    }

    /// Unblinds the issuer's answer into coins, verifies each against the key directory,
    /// and keeps them. Returns the new coins' ids.
    pub fn on_blind_withdrawal(
        &mut self,
        request: &BlindWithdrawalRequest,
        response: &BlindWithdrawalResponse,
        now: Timestamp,
    ) -> Result<Vec<CoinId>> {
        let index = self
            .state
            .blind_withdrawals
            .iter()
            .position(|p| p.request == *request)
            .ok_or(WalletError::Unexpected(
                "an answer to no pending withdrawal",
            ))?;
        let pending = &self.state.blind_withdrawals[index];
        if response.signatures.len() != pending.coins.len()
            || response.keyset_id != request.payload.keyset_id
        {
            return Err(WalletError::Unexpected(
                "an answer that does not match the request",
            ));
        }
        let directory = self.directory()?;
        let keyset = directory.keyset(response.keyset_id)?;
        let mut coins = Vec::with_capacity(pending.coins.len());
        for (p, signature) in pending.coins.iter().zip(&response.signatures) {
            let key = keyset.key_for(p.amount().minor_units)?;
            let coin = Coin::Blind(
                p.finalize(key, signature)
                    .map_err(|_| WalletError::BadCoin(p.coin_id()))?,
            );
            coin.verify(directory, now)
                .map_err(|_| WalletError::BadCoin(coin.id()))?;
            coins.push(coin);
        }
        let ids = coins.iter().map(Coin::id).collect();
        self.state.coins.extend(coins);
        self.state.blind_withdrawals.remove(index);
        self.touch();
        Ok(ids)
    }

    /// An identified withdrawal of coins of `amounts` (the issuer picks ids and writes the
    /// account's virtual id into them).
    pub fn identified_withdrawal_request<G: CryptoRng + ?Sized>(
        &mut self,
        amounts: &[u64],
        currency: Currency,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<Unreleased<IdentifiedWithdrawalRequest>> {
        if amounts.is_empty() {
            return Err(WalletError::Unsupported("a withdrawal of no coins"));
        }
        let account = self.registered()?.payload.clone();
        let mut idempotency_key = [0u8; 32];
        rng.fill_bytes(&mut idempotency_key);
        let request = IdentifiedWithdrawalRequest::sign(
            IdentifiedWithdrawalRequestPayload {
                account_id: account.account_id,
                device_id: account.device_id,
                currency,
                amounts: amounts.to_vec(),
                idempotency_key,
                created_at: now,
                nonce: nonce(rng),
            },
            &self.key,
            rng,
        )?;
        self.state.identified_withdrawals.push(request.clone());
        Ok(self.unreleased(request))
    }

    /// Verifies and keeps the identified coins the issuer returned.
    pub fn on_identified_withdrawal(
        &mut self,
        request: &IdentifiedWithdrawalRequest,
        response: &IdentifiedWithdrawalResponse,
        now: Timestamp,
    ) -> Result<Vec<CoinId>> {
        let index = self
            .state
            .identified_withdrawals
            .iter()
            .position(|p| p == request)
            .ok_or(WalletError::Unexpected(
                "an answer to no pending withdrawal",
            ))?;
        let amounts: Vec<u64> = response
            .coins
            .iter()
            .map(|c| c.payload.amount.minor_units)
            .collect();
        if amounts != request.payload.amounts {
            return Err(WalletError::Unexpected(
                "coins that do not match the request",
            ));
        }
        let directory = self.directory()?;
        let mut coins = Vec::new();
        for coin in &response.coins {
            let coin = Coin::Identified(coin.clone());
            coin.verify(directory, now)
                .map_err(|_| WalletError::BadCoin(coin.id()))?;
            if coin.amount().currency != request.payload.currency {
                return Err(WalletError::BadCoin(coin.id()));
            }
            coins.push(coin);
        }
        let ids = coins.iter().map(Coin::id).collect();
        self.state.coins.extend(coins);
        self.state.identified_withdrawals.remove(index);
        self.touch();
        Ok(ids)
    }

    /// Takes identified coins the issuer reissued to this device (after another device of
    /// the account was lost): keeps those that verify and are not held yet.
    pub fn accept_reissued_coins(
        &mut self,
        coins: &[scrip_tokens::IdentifiedCoin],
        now: Timestamp,
    ) -> Result<Vec<CoinId>> {
        let directory = self.directory()?;
        let mut added = Vec::new();
        for coin in coins {
            let coin = Coin::Identified(coin.clone());
            coin.verify(directory, now)
                .map_err(|_| WalletError::BadCoin(coin.id()))?;
            if !self.holds(coin.id()) {
                added.push(coin);
            }
        }
        let ids = added.iter().map(Coin::id).collect();
        self.state.coins.extend(added);
        self.touch();
        Ok(ids)
    }

    /// True if the coin is held or in flight to a merchant.
    pub(crate) fn holds(&self, id: CoinId) -> bool {
        self.state.coins.iter().any(|c| c.id() == id)
            || self
                .state
                .coins_in_flight
                .iter()
                .any(|f| f.coins.iter().any(|c| c.id() == id))
    }

    /// The coins held (not counting coins handed to a merchant awaiting its reply).
    pub fn coins(&self) -> &[Coin] {
        &self.state.coins
    }

    /// Total value of the coins held in `currency`.
    pub fn coin_total(&self, currency: Currency) -> Amount {
        let total = self
            .state
            .coins
            .iter()
            .map(Coin::amount)
            .filter(|a| a.currency == currency)
            .fold(0u64, |acc, a| acc.saturating_add(a.minor_units));
        Amount::new(total, currency)
    }

    // ---- paying ---------------------------------------------------------------------

    /// Checks a merchant's offer offline: its certificate (against the key directory) and
    /// its signed request, and that this wallet has not paid the request before.
    pub fn check_offer<'a>(
        &self,
        offer: &'a MerchantOffer,
        now: Timestamp,
    ) -> Result<&'a PaymentRequestPayload> {
        let merchant = offer.merchant_certificate.verify(self.directory()?, now)?;
        let request = offer.request.verify(merchant)?;
        if self.state.paid_requests.contains(&request.request_id) {
            return Err(WalletError::AlreadyPaid(request.request_id));
        }
        if request.amount.is_zero() {
            return Err(WalletError::Unsupported("a request for nothing"));
        }
        Ok(request)
    }

    fn remember_paid(&mut self, request_id: RequestId) {
        self.state.paid_requests.push(request_id);
        let excess = self
            .state
            .paid_requests
            .len()
            .saturating_sub(PAID_REQUESTS_KEPT);
        self.state.paid_requests.drain(..excess);
    }

    /// Pays `offer` with a withdrawal record under the newest balance certificate whose
    /// rules allow it (expiry, per-payment cap, remaining amount, payment count, category,
    /// region). Uses the next sequence number: save before releasing the answer.
    pub fn pay_by_record<G: CryptoRng + ?Sized>(
        &mut self,
        offer: &MerchantOffer,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<Unreleased<PaymentAnswer>> {
        let request = self.check_offer(offer, now)?.clone();
        let account_certificate = self.registered()?.clone();
        let account = &account_certificate.payload;
        let mut reasons = Vec::new();
        let mut chosen = None;
        let mut by_newest: Vec<&CertificateState> = self.state.certificates.iter().collect();
        by_newest.sort_by_key(|c| std::cmp::Reverse(c.certificate.payload.issued_at));
        for candidate in by_newest {
            let cert = &candidate.certificate.payload;
            let payload = WithdrawalRecordPayload {
                record_id: scrip_tokens::RecordId::random(rng),
                account_id: account.account_id,
                device_id: account.device_id,
                certificate_serial: cert.serial,
                sequence: self.state.next_sequence,
                cumulative: Amount::new(
                    candidate.spent.saturating_add(request.amount.minor_units),
                    cert.available.currency,
                ),
                signed_at: now,
                payment_request: offer.request.clone(),
            };
            let check = candidate
                .certificate
                .verify(self.directory()?, account, now)
                .map(|_| ())
                .and_then(|()| cert.authorize(&payload));
            match check {
                Ok(()) => {
                    chosen = Some((candidate.certificate.clone(), payload));
                    break;
                }
                Err(e) => reasons.push(e.code().to_owned()),
            }
        }
        let Some((balance_certificate, payload)) = chosen else {
            return Err(WalletError::NoUsableCertificate { reasons });
        };
        let record = WithdrawalRecord::sign(payload, &self.key, rng)?;
        let answer = PaymentAnswer::ByRecord {
            record: record.clone(),
            account_certificate,
            balance_certificate: balance_certificate.clone(),
        };
        // Bookkeeping before the answer can leave: the sequence number is used for good,
        // and the amount counts against the certificate whatever the merchant says.
        self.state.next_sequence += 1;
        if let Some(state) = certificate_mut(
            &mut self.state.certificates,
            balance_certificate.payload.serial,
        ) {
            state.spent = state.spent.saturating_add(request.amount.minor_units);
        }
        self.state.awaiting_receipt.push(RecordInFlight {
            request_id: request.request_id,
            answer_digest: codec::digest(&answer)?,
            merchant: offer.merchant_certificate.clone(),
            record,
        });
        self.remember_paid(request.request_id);
        Ok(self.unreleased(answer))
    }

    /// Pays `offer` with coins adding up to exactly the requested amount (fewest coins).
    /// The coins leave the wallet until the merchant replies: save before releasing.
    pub fn pay_by_coins(
        &mut self,
        offer: &MerchantOffer,
        now: Timestamp,
    ) -> Result<Unreleased<PaymentAnswer>> {
        let request = self.check_offer(offer, now)?.clone();
        let directory = self.directory()?;
        let currency = request.amount.currency;
        let usable: Vec<usize> = (0..self.state.coins.len())
            .filter(|i| {
                let coin = &self.state.coins[*i];
                coin.amount().currency == currency && coin.verify(directory, now).is_ok()
            })
            .collect();
        let values: Vec<u64> = usable
            .iter()
            .map(|i| self.state.coins[*i].amount().minor_units)
            .collect();
        let picked = match exact_change(&values, request.amount.minor_units) {
            Change::Exact(picked) => picked,
            Change::Impossible { below, above } => {
                return Err(WalletError::ExactChangeImpossible {
                    requested: request.amount,
                    closest_below: Amount::new(below, currency),
                    closest_above: above.map(|a| Amount::new(a, currency)),
                })
            }
        };
        let mut chosen: Vec<usize> = picked.into_iter().map(|p| usable[p]).collect();
        chosen.sort_unstable_by(|a, b| b.cmp(a));
        let coins: Vec<Coin> = chosen.iter().map(|i| self.state.coins.remove(*i)).collect();
        let answer = PaymentAnswer::ByCoins(CoinPayment {
            request: offer.request.clone(),
            coins: coins.clone(),
        });
        self.state.coins_in_flight.push(CoinsInFlight {
            request_id: request.request_id,
            answer_digest: codec::digest(&answer)?,
            merchant: offer.merchant_certificate.clone(),
            coins,
        });
        self.remember_paid(request.request_id);
        Ok(self.unreleased(answer))
    }

    /// Pays an offer received as bytes; returns the answer's bytes (after saving).
    pub fn pay_bytes<G: CryptoRng + ?Sized>(
        &mut self,
        offer: &[u8],
        with: PayWith,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<Unreleased<Vec<u8>>> {
        let offer: MerchantOffer = codec::decode(offer)?;
        let answer = match with {
            PayWith::Record => self.pay_by_record(&offer, now, rng)?,
            PayWith::Coins => self.pay_by_coins(&offer, now)?,
        };
        Ok(Unreleased {
            message: codec::encode(&answer.message)?,
            generation: answer.generation,
            instance: answer.instance,
        })
    }

    /// Takes the merchant's reply to a payment: keeps the receipt (a record's receipt also
    /// goes to the outbox for the issuer), or on a signed rejection takes coins back.
    pub fn on_merchant_reply(
        &mut self,
        reply: &MerchantReply,
        now: Timestamp,
    ) -> Result<PaymentStatus> {
        let _ = now;
        let status = match reply {
            MerchantReply::Receipt(PaymentReceipt::Record(receipt)) => {
                let index = self
                    .state
                    .awaiting_receipt
                    .iter()
                    .position(|a| a.record == receipt.payload.record)
                    .ok_or(WalletError::Unexpected("a receipt for no payment"))?;
                receipt.verify(&self.state.awaiting_receipt[index].merchant.payload)?;
                let done = self.state.awaiting_receipt.remove(index);
                self.state.outbox.push(done.record);
                self.state
                    .receipts
                    .push(PaymentReceipt::Record(receipt.clone()));
                PaymentStatus::Completed(Box::new(PaymentReceipt::Record(receipt.clone())))
            }
            MerchantReply::Receipt(PaymentReceipt::Coins(endorsed)) => {
                let index = self
                    .state
                    .coins_in_flight
                    .iter()
                    .position(|f| {
                        f.request_id == endorsed.payload.payment.request.payload.request_id
                            && f.coins == endorsed.payload.payment.coins
                    })
                    .ok_or(WalletError::Unexpected("a receipt for no payment"))?;
                endorsed.verify(&self.state.coins_in_flight[index].merchant.payload)?;
                self.state.coins_in_flight.remove(index);
                self.state
                    .receipts
                    .push(PaymentReceipt::Coins(endorsed.clone()));
                PaymentStatus::Completed(Box::new(PaymentReceipt::Coins(endorsed.clone())))
            }
            MerchantReply::Rejection(rejection) => {
                let p = &rejection.payload;
                if let Some(i) = self.state.coins_in_flight.iter().position(|f| {
                    f.request_id == p.request_id && f.answer_digest == p.answer_digest
                }) {
                    rejection.verify_signature(
                        &self.state.coins_in_flight[i].merchant.payload.merchant_key,
                    )?;
                    let back = self.state.coins_in_flight.remove(i);
                    self.state.coins.extend(back.coins);
                } else if let Some(i) = self.state.awaiting_receipt.iter().position(|a| {
                    a.request_id == p.request_id && a.answer_digest == p.answer_digest
                }) {
                    rejection.verify_signature(
                        &self.state.awaiting_receipt[i].merchant.payload.merchant_key,
                    )?;
                    // The sequence number and the amount stay counted (see pay_by_record).
                    self.state.awaiting_receipt.remove(i);
                } else {
                    return Err(WalletError::Unexpected("a rejection of no payment"));
                }
                self.state.paid_requests.retain(|r| *r != p.request_id);
                PaymentStatus::Rejected(p.reason.clone())
            }
        };
        self.touch();
        Ok(status)
    }

    /// Takes coins handed to a merchant back after getting no reply (the user's decision:
    /// if the merchant did keep them, spending them again will be refused as a double
    /// spend at redemption).
    pub fn take_back_unanswered_coins(&mut self, request_id: RequestId) -> Result<usize> {
        let index = self
            .state
            .coins_in_flight
            .iter()
            .position(|f| f.request_id == request_id)
            .ok_or(WalletError::Unexpected(
                "no coins in flight for that request",
            ))?;
        let back = self.state.coins_in_flight.remove(index);
        let n = back.coins.len();
        self.state.coins.extend(back.coins);
        self.touch();
        Ok(n)
    }

    /// Receipts of completed payments.
    pub fn receipts(&self) -> &[PaymentReceipt] {
        &self.state.receipts
    }

    /// Receipted records not yet handed in to the issuer.
    pub fn outbox(&self) -> &[WithdrawalRecord] {
        &self.state.outbox
    }
}
