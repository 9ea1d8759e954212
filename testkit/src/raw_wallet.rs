//! The wallet side at token level: a device key that signs requests and records itself.

use std::collections::HashMap;

use rand::rngs::StdRng;
use rand::Rng;
use scrip_stores::RecordStore;
use scrip_tokens::fixtures::{self, NOW};
use scrip_tokens::keys::Device;
use scrip_tokens::*;

use crate::keyring::{directory, keyset, TestIssuer};
use crate::{eur, nonce, EUR};

/// A signed registration of device `key`: a new account (`account` is `None`) or a device
/// joining or recovering `account`.
pub fn registration(
    key: &SigningKey<Device>,
    account: Option<AccountId>,
    rng: &mut StdRng,
) -> DeviceRegistration {
    DeviceRegistration::sign(
        DeviceRegistrationPayload {
            device_key: key.verifying_key().clone(),
            account_id: account,
            created_at: NOW,
            nonce: nonce(rng),
        },
        key,
        rng,
    )
    .unwrap()
}

/// One device of an account, at token level: its raw device key, ids and certificate, and
/// the bookkeeping a wallet keeps for records (next sequence number, cumulative paid per
/// balance certificate).
///
/// Unlike `scrip_wallet::Wallet` (see [`Phone`](crate::Phone)), it signs whatever it is
/// told, including what a real wallet refuses: records with a chosen sequence number and
/// cumulative ([`RawWallet::sign_record`]), requests for any amounts. The issuer's tests
/// play cheating devices with it; the benchmarks sign exactly the messages they measure.
/// Requests are made at [`NOW`] unless a method takes a `now`.
pub struct RawWallet {
    /// The device key (a fixture key).
    pub key: SigningKey<Device>,
    /// The account this device belongs to.
    pub account_id: AccountId,
    /// This device.
    pub device_id: DeviceId,
    /// The issuer's certificate of this device.
    pub certificate: AccountCertificate,
    /// Next sequence number to use.
    pub sequence: u64,
    /// Cumulative amount paid under each balance certificate.
    pub cumulative: HashMap<CertificateSerial, u64>,
}

impl RawWallet {
    /// Opens an account with fixture device key `n` (nothing deposited).
    pub async fn open<S: RecordStore>(
        issuer: &TestIssuer<S>,
        n: u8,
        rng: &mut StdRng,
    ) -> RawWallet {
        let key = fixtures::device(n);
        let opened = issuer
            .open_account(&registration(&key, None, rng), NOW, rng)
            .await
            .unwrap();
        RawWallet {
            key,
            account_id: opened.account_id,
            device_id: opened.device_id,
            certificate: opened.certificate,
            sequence: 1,
            cumulative: HashMap::new(),
        }
    }

    /// Adds fixture device key `n` to this wallet's account, approved by this device.
    pub async fn add_device<S: RecordStore>(
        &self,
        issuer: &TestIssuer<S>,
        n: u8,
        rng: &mut StdRng,
    ) -> RawWallet {
        let key = fixtures::device(n);
        let approval = DeviceApproval::sign(
            DeviceApprovalPayload {
                account_id: self.account_id,
                approving_device: self.device_id,
                new_device_key: key.key_id(),
                created_at: NOW,
                nonce: nonce(rng),
            },
            &self.key,
            rng,
        )
        .unwrap();
        let certificate = issuer
            .add_device(
                &registration(&key, Some(self.account_id), rng),
                &approval,
                NOW,
                rng,
            )
            .await
            .unwrap();
        RawWallet {
            key,
            account_id: self.account_id,
            device_id: certificate.payload.device_id,
            certificate,
            sequence: 1,
            cumulative: HashMap::new(),
        }
    }

    /// A signed request to deposit `amount` (a fresh deposit id).
    pub fn deposit_request(&self, amount: u64, rng: &mut StdRng) -> DepositRequest {
        DepositRequest::sign(
            DepositRequestPayload {
                deposit_id: DepositId::random(rng),
                account_id: self.account_id,
                device_id: self.device_id,
                amount: eur(amount),
                created_at: NOW,
            },
            &self.key,
            rng,
        )
        .unwrap()
    }

    /// Deposits `amount` (paid by the issuer's in-memory funding source).
    pub async fn deposit<S: RecordStore>(
        &self,
        issuer: &TestIssuer<S>,
        amount: u64,
        rng: &mut StdRng,
    ) -> DepositRecord {
        issuer
            .deposit(&self.deposit_request(amount, rng), NOW, rng)
            .await
            .unwrap()
    }

    /// A signed request for a balance certificate of up to `requested` (`None`: all there
    /// is) under `lock`, handing in `unsent` records.
    pub fn certificate_request(
        &self,
        requested: Option<u64>,
        lock: LockRules,
        unsent: Vec<WithdrawalRecord>,
        rng: &mut StdRng,
    ) -> BalanceCertificateRequest {
        BalanceCertificateRequest::sign(
            BalanceCertificateRequestPayload {
                account_id: self.account_id,
                device_id: self.device_id,
                currency: EUR,
                requested_amount: requested,
                max_payments: None,
                per_payment_cap: None,
                lock,
                unsent_records: unsent,
                deposit_confirmations: Vec::new(),
                created_at: NOW,
                nonce: nonce(rng),
            },
            &self.key,
            rng,
        )
        .unwrap()
    }

    /// A certificate of up to `requested`, no locks (default limits: 100 payments), issued
    /// at `now`. Leaves the sequence counter alone: for callers that number records
    /// themselves and share the wallet (`&self`); [`RawWallet::certificate`] adopts it.
    pub async fn request_certificate<S: RecordStore>(
        &self,
        issuer: &TestIssuer<S>,
        requested: u64,
        now: Timestamp,
        rng: &mut StdRng,
    ) -> BalanceCertificate {
        let request =
            self.certificate_request(Some(requested), LockRules::default(), Vec::new(), rng);
        issuer
            .issue_balance_certificate(&request, now, rng)
            .await
            .unwrap()
    }

    /// A certificate of up to `requested`, no locks, issued at `now`, with the sequence
    /// counter moved into its range (what [`RawWallet::pay`] numbers records by).
    pub async fn certificate<S: RecordStore>(
        &mut self,
        issuer: &TestIssuer<S>,
        requested: u64,
        now: Timestamp,
        rng: &mut StdRng,
    ) -> BalanceCertificate {
        let cert = self.request_certificate(issuer, requested, now, rng).await;
        self.adopt(&cert);
        cert
    }

    /// Moves the sequence counter into a new certificate's range.
    pub fn adopt(&mut self, cert: &BalanceCertificate) {
        self.sequence = self.sequence.max(cert.payload.first_sequence);
    }

    /// Signs a record paying `request` under `cert` (the wallet's bookkeeping: next
    /// sequence number, running cumulative).
    pub fn pay(
        &mut self,
        cert: &BalanceCertificate,
        request: &PaymentRequest,
        now: Timestamp,
        rng: &mut StdRng,
    ) -> WithdrawalRecord {
        let cumulative = self.cumulative.entry(cert.payload.serial).or_insert(0);
        *cumulative += request.payload.amount.minor_units;
        let cumulative = *cumulative;
        let record = self.sign_record(cert, request, self.sequence, cumulative, now, rng);
        self.sequence += 1;
        record
    }

    /// Signs a record with explicit sequence and cumulative, signed at `now` (for cheating
    /// devices, and for callers keeping their own count).
    pub fn sign_record(
        &self,
        cert: &BalanceCertificate,
        request: &PaymentRequest,
        sequence: u64,
        cumulative: u64,
        now: Timestamp,
        rng: &mut StdRng,
    ) -> WithdrawalRecord {
        WithdrawalRecord::sign(
            WithdrawalRecordPayload {
                record_id: RecordId::random(rng),
                account_id: self.account_id,
                device_id: self.device_id,
                certificate_serial: cert.payload.serial,
                sequence,
                cumulative: eur(cumulative),
                signed_at: now,
                payment_request: request.clone(),
            },
            &self.key,
            rng,
        )
        .unwrap()
    }

    /// A signed request for blind coins of `amounts` under `keyset`, and the pending coins
    /// to finalize with the answer.
    pub fn blind_request(
        &self,
        keyset: &Keyset,
        amounts: &[u64],
        idempotency_key: [u8; 32],
        rng: &mut StdRng,
    ) -> (BlindWithdrawalRequest, Vec<PendingCoin>) {
        let pending: Vec<PendingCoin> = amounts
            .iter()
            .map(|v| PendingCoin::new(rng, keyset, eur(*v)).unwrap())
            .collect();
        let request = BlindWithdrawalRequest::sign(
            BlindWithdrawalRequestPayload {
                account_id: self.account_id,
                device_id: self.device_id,
                keyset_id: keyset.id(),
                coins: pending
                    .iter()
                    .map(|p| (p.amount().minor_units, p.blinded().clone()))
                    .collect(),
                idempotency_key,
                created_at: NOW,
                nonce: nonce(rng),
            },
            &self.key,
            rng,
        )
        .unwrap();
        (request, pending)
    }

    /// Withdraws blind coins of `amounts` (one request: at most 200 coins) and finalizes
    /// them, as a wallet does.
    pub async fn withdraw_blind<S: RecordStore>(
        &self,
        issuer: &TestIssuer<S>,
        amounts: &[u64],
        rng: &mut StdRng,
    ) -> Vec<Coin> {
        let keyset = keyset(&directory(issuer));
        let mut key = [0u8; 32];
        rng.fill_bytes(&mut key);
        let (request, pending) = self.blind_request(&keyset, amounts, key, rng);
        let response = issuer.withdraw_blind(&request, NOW, rng).await.unwrap();
        finalize(&keyset, &pending, &response)
    }

    /// A signed request for identified coins of `amounts`.
    pub fn identified_request(
        &self,
        amounts: &[u64],
        idempotency_key: [u8; 32],
        rng: &mut StdRng,
    ) -> IdentifiedWithdrawalRequest {
        IdentifiedWithdrawalRequest::sign(
            IdentifiedWithdrawalRequestPayload {
                account_id: self.account_id,
                device_id: self.device_id,
                currency: EUR,
                amounts: amounts.to_vec(),
                idempotency_key,
                created_at: NOW,
                nonce: nonce(rng),
            },
            &self.key,
            rng,
        )
        .unwrap()
    }

    /// `swap` signed by this device at `now` (a fresh nonce): how identified coins are
    /// swapped.
    pub fn device_swap(
        &self,
        swap: SwapRequest,
        now: Timestamp,
        rng: &mut StdRng,
    ) -> DeviceSwapRequest {
        DeviceSwapRequest::sign(
            DeviceSwapRequestPayload {
                account_id: self.account_id,
                device_id: self.device_id,
                swap,
                created_at: now,
                nonce: nonce(rng),
            },
            &self.key,
            rng,
        )
        .unwrap()
    }

    /// Withdraws identified coins of `amounts`.
    pub async fn withdraw_identified<S: RecordStore>(
        &self,
        issuer: &TestIssuer<S>,
        amounts: &[u64],
        rng: &mut StdRng,
    ) -> Vec<Coin> {
        let mut key = [0u8; 32];
        rng.fill_bytes(&mut key);
        let response = issuer
            .withdraw_identified(&self.identified_request(amounts, key, rng), NOW, rng)
            .await
            .unwrap();
        response.coins.into_iter().map(Coin::Identified).collect()
    }
}

/// The blind coins of `pending`, unblinded with the issuer's `response` under `keyset`.
pub fn finalize(
    keyset: &Keyset,
    pending: &[PendingCoin],
    response: &BlindWithdrawalResponse,
) -> Vec<Coin> {
    pending
        .iter()
        .zip(&response.signatures)
        .map(|(p, s)| {
            Coin::Blind(
                p.finalize(keyset.key_for(p.amount().minor_units).unwrap(), s)
                    .unwrap(),
            )
        })
        .collect()
}

/// A swap of `coins` for new blind coins of `outputs` (minor units) under `keyset`, with
/// a fresh request key, and the pending coins to finalize with the answer.
pub fn swap_request(
    keyset: &Keyset,
    coins: Vec<Coin>,
    outputs: &[u64],
    rng: &mut StdRng,
) -> (SwapRequest, Vec<PendingCoin>) {
    let pending: Vec<PendingCoin> = outputs
        .iter()
        .map(|v| PendingCoin::new(rng, keyset, eur(*v)).unwrap())
        .collect();
    let mut request_key = [0u8; 32];
    rng.fill_bytes(&mut request_key);
    let request = SwapRequest {
        request_key,
        coins,
        keyset_id: keyset.id(),
        outputs: pending
            .iter()
            .map(|p| (p.amount().minor_units, p.blinded().clone()))
            .collect(),
    };
    (request, pending)
}
