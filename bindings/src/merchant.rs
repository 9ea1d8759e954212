//! The point of sale, for POS integrators: [`Merchant`] wraps `scrip_merchant::Merchant`
//! over a queue the app chooses: in memory, or a durable file store in a directory the app
//! names (the SDK touches no disk otherwise). Offers, answers and replies are bytes in
//! scrip's wire format, carried however the terminal talks to phones.

use std::sync::Arc;

use scrip_merchant::MerchantConfig;
use scrip_stores::{FileStore, MemoryStore, RecordStore};
use scrip_tokens::keys::Merchant as MerchantRole;
use scrip_tokens::{
    MerchantCategory, MerchantCertificate, MerchantRegistration, MerchantRegistrationPayload,
    MerchantReply, PaymentAnswer, RedemptionBatch, RedemptionReport, Region, RevocationList,
    SignedKeyDirectory, SigningKey, VerifyingKey,
};

use crate::{amount, at, decode, encode, parse_id, rng, Result, ScripError};

/// The runtime the merchant's store answers on (the durable store commits on its own
/// writer thread; this only drives the waiting). One per process, started on first use.
pub(crate) fn block_on<F: std::future::Future>(future: F) -> Result<F::Output> {
    use std::sync::OnceLock;
    static RUNTIME: OnceLock<std::io::Result<tokio::runtime::Runtime>> = OnceLock::new();
    let runtime = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("scrip-sdk")
            .enable_all()
            .build()
    });
    match runtime {
        Ok(runtime) => Ok(runtime.block_on(future)),
        Err(e) => Err(ScripError::Transport {
            message: format!("starting the SDK's runtime: {e}"),
        }),
    }
}

/// A new merchant key and its self-signed registration. An object, not a record, so
/// that printing or logging it never shows the private key.
#[derive(uniffi::Object)]
pub struct MerchantSetup {
    private_key: zeroize::Zeroizing<Vec<u8>>,
    registration: Vec<u8>,
}

#[uniffi::export]
impl MerchantSetup {
    /// A fresh merchant key (RSA-2048) and its registration for merchant category
    /// `category` (ISO 18245 MCC, e.g. 5411) in `region` (e.g. `DE-BY`).
    #[uniffi::constructor]
    pub fn generate(category: u16, region: String, now_unix_ms: u64) -> Result<Arc<Self>> {
        let mut rng = rng();
        let key =
            SigningKey::<MerchantRole>::generate(&mut rng, scrip_tokens::keys::DEFAULT_RSA_BITS)?;
        let mut nonce = [0u8; 16];
        rand::Rng::fill_bytes(&mut rng, &mut nonce);
        let registration = MerchantRegistration::sign(
            MerchantRegistrationPayload {
                merchant_key: key.verifying_key().clone(),
                category: MerchantCategory::new(category)?,
                region: Region::new(&region)?,
                created_at: at(now_unix_ms),
                nonce,
            },
            &key,
            &mut rng,
        )?;
        Ok(Arc::new(MerchantSetup {
            private_key: key.to_der()?,
            registration: encode(&registration)?,
        }))
    }

    /// The merchant's private key (PKCS#8 DER): keep it in the terminal's secure storage;
    /// [`Merchant::open`] takes it.
    pub fn private_key(&self) -> Vec<u8> {
        self.private_key.to_vec()
    }

    /// The registration, for the issuer's operator (`POST /v1/merchants`), whose answer is
    /// the merchant certificate.
    pub fn registration(&self) -> Vec<u8> {
        self.registration.clone()
    }
}

/// What the terminal decided on a wallet's answer.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct Acceptance {
    /// The signed reply for the wallet (a countersigned receipt or a refusal).
    pub reply: Vec<u8>,
    /// Whether the payment was accepted (and queued for settlement).
    pub accepted: bool,
    /// For a refusal: the stable reason code.
    pub rejection_code: Option<String>,
}

/// Counts of what a settlement did.
#[derive(Clone, Debug, Default, PartialEq, Eq, uniffi::Record)]
pub struct SyncSummary {
    /// Credited now.
    pub accepted: u64,
    /// Credited before (an earlier upload whose answer was lost, or the customer's copy).
    pub already_accepted: u64,
    /// Refused: coins spent elsewhere first.
    pub double_spent: u64,
    /// Refused as invalid.
    pub invalid: u64,
}

impl From<scrip_merchant::SyncSummary> for SyncSummary {
    fn from(s: scrip_merchant::SyncSummary) -> Self {
        let n = |v: usize| u64::try_from(v).unwrap_or(u64::MAX);
        SyncSummary {
            accepted: n(s.accepted),
            already_accepted: n(s.already_accepted),
            double_spent: n(s.double_spent),
            invalid: n(s.invalid),
        }
    }
}

type Inner = scrip_merchant::Merchant<Arc<dyn RecordStore>>;

/// A point of sale: takes payments offline, settles them when online. Thread-safe.
#[derive(uniffi::Object)]
pub struct Merchant {
    inner: Inner,
}

impl Merchant {
    #[cfg(feature = "http")]
    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }
}

#[uniffi::export]
impl Merchant {
    /// Opens the point of sale with its key (from [`MerchantSetup::generate`]), its certificate
    /// (the operator's answer to the registration), the issuer's root key, and the most
    /// that accepted but unsettled payments may add up to (its currency is the only one
    /// the terminal takes). `queue_dir`: a directory for the durable queue of accepted
    /// payments (created if missing; reopen it after a restart: the money is in there);
    /// `None` keeps the queue in memory (tests, demos).
    #[uniffi::constructor]
    pub fn open(
        private_key: Vec<u8>,
        certificate: Vec<u8>,
        root_key_pem: String,
        max_unsettled_minor: u64,
        currency: String,
        queue_dir: Option<String>,
        now_unix_ms: u64,
    ) -> Result<Arc<Self>> {
        let key = SigningKey::<MerchantRole>::from_der(&private_key)
            .map_err(|e| ScripError::bad_argument(format!("the merchant's key: {e}")))?;
        let certificate: MerchantCertificate = decode(&certificate)?;
        let root = VerifyingKey::from_pem(&root_key_pem)
            .map_err(|e| ScripError::bad_argument(format!("the issuer's root key: {e}")))?;
        let config = MerchantConfig::new(amount(max_unsettled_minor, &currency)?);
        let store: Arc<dyn RecordStore> = match queue_dir {
            Some(dir) => Arc::new(FileStore::open(dir)?),
            None => Arc::new(MemoryStore::new()),
        };
        let inner = block_on(scrip_merchant::Merchant::open(
            store,
            key,
            certificate,
            root,
            config,
            at(now_unix_ms),
        ))??;
        Ok(Arc::new(Merchant { inner }))
    }

    /// The merchant's id (UUID), from its certificate.
    pub fn merchant_id(&self) -> String {
        self.inner.certificate().payload.merchant_id.to_string()
    }

    /// Takes the issuer's signed key directory (`GET /v1/keys`), verified against the
    /// root key and kept with the queue.
    pub fn refresh_directory(&self, directory: Vec<u8>, now_unix_ms: u64) -> Result<()> {
        let directory: SignedKeyDirectory = decode(&directory)?;
        Ok(block_on(
            self.inner.refresh_directory(directory, at(now_unix_ms)),
        )??)
    }

    /// Takes the issuer's signed revocation list (`GET /v1/revocations`).
    pub fn refresh_revocations(&self, list: Vec<u8>, now_unix_ms: u64) -> Result<()> {
        let list: RevocationList = decode(&list)?;
        Ok(block_on(
            self.inner.refresh_revocations(&list, at(now_unix_ms)),
        )??)
    }

    /// A signed payment request for `amount_minor` in the terminal's currency: show it to
    /// the customer's phone (QR, NFC, BLE).
    pub fn offer(&self, amount_minor: u64, now_unix_ms: u64) -> Result<Vec<u8>> {
        let currency = self.inner.terminal().config().max_unsettled.currency;
        let amount = scrip_tokens::Amount::new(amount_minor, currency);
        let offer = block_on(self.inner.offer(amount, at(now_unix_ms), &mut rng()))??;
        encode(&offer)
    }

    /// Decides on a wallet's answer, fully offline: a countersigned receipt once the
    /// payment is durably queued, or a signed refusal. The same answer again gets the
    /// same reply.
    pub fn accept(&self, answer: Vec<u8>, now_unix_ms: u64) -> Result<Acceptance> {
        let answer: PaymentAnswer = decode(&answer)?;
        let reply = block_on(self.inner.accept(&answer, at(now_unix_ms), &mut rng()))??;
        let (accepted, rejection_code) = match &reply {
            MerchantReply::Receipt(_) => (true, None),
            MerchantReply::Rejection(rejection) => (
                false,
                Some(rejection.payload.reason.code.as_str().to_owned()),
            ),
        };
        Ok(Acceptance {
            reply: encode(&reply)?,
            accepted,
            rejection_code,
        })
    }

    /// What accepted payments not yet settled add up to, in minor units.
    pub fn unsettled_minor(&self) -> Result<u64> {
        Ok(block_on(self.inner.unsettled())??.minor_units)
    }

    /// A signed upload of the oldest queued payments, for `POST /v1/redemptions`, or
    /// `None` if nothing is queued. Uploading the same batch again is safe.
    pub fn build_batch(&self, now_unix_ms: u64) -> Result<Option<Vec<u8>>> {
        match block_on(self.inner.build_batch(at(now_unix_ms), &mut rng()))?? {
            Some(batch) => Ok(Some(encode(&batch)?)),
            None => Ok(None),
        }
    }

    /// Applies the issuer's report on `batch`: answered payments leave the queue. Safe to
    /// repeat; a report not signed by the issuer for this batch changes nothing.
    pub fn apply_report(
        &self,
        batch: Vec<u8>,
        report: Vec<u8>,
        now_unix_ms: u64,
    ) -> Result<SyncSummary> {
        let batch: RedemptionBatch = decode(&batch)?;
        let report: RedemptionReport = decode(&report)?;
        let summary = block_on(self.inner.apply_report(&batch, &report, at(now_unix_ms)))??;
        Ok(summary.into())
    }
}

/// A signed refund request and the id it pays under.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct RefundRequest {
    /// The refund's id (UUID): keep it until a receipt came; a retry under the same id
    /// pays once.
    pub refund_id: String,
    /// The request, for `POST /v1/refunds`.
    pub request: Vec<u8>,
}

/// The issuer's receipt for a refund, checked.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct RefundResult {
    /// The refund's id.
    pub refund_id: String,
    /// The account credited (UUID).
    pub account_id: String,
    /// This refund, in minor units.
    pub amount_minor: u64,
    /// Everything refunded of that payment so far, in minor units.
    pub refunded_total_minor: u64,
}

/// Refunds.
#[uniffi::export]
impl Merchant {
    /// A refund of `amount_minor` of the payment by record that answered this terminal's
    /// request `request_id`, to the account that paid. `refund_id`: `None` for a new
    /// refund; the id of an earlier request to retry it (it pays once).
    pub fn refund_request(
        &self,
        request_id: String,
        amount_minor: u64,
        refund_id: Option<String>,
        now_unix_ms: u64,
    ) -> Result<RefundRequest> {
        let request_id = parse_id("request id", &request_id)?;
        let terminal = self.inner.terminal();
        let amount =
            scrip_tokens::Amount::new(amount_minor, terminal.config().max_unsettled.currency);
        let mut rng = rng();
        let refund_id = match refund_id {
            Some(id) => parse_id("refund id", &id)?,
            None => scrip_tokens::RefundId::random(&mut rng),
        };
        let request = terminal.refund_request_again(
            refund_id,
            request_id,
            amount,
            at(now_unix_ms),
            &mut rng,
        )?;
        Ok(RefundRequest {
            refund_id: refund_id.to_string(),
            request: encode(&request)?,
        })
    }

    /// Checks the issuer's receipt for a refund request against the key directory held:
    /// count the refund as paid only once this returns.
    pub fn verify_refund_receipt(
        &self,
        request: Vec<u8>,
        receipt: Vec<u8>,
        now_unix_ms: u64,
    ) -> Result<RefundResult> {
        let request: scrip_tokens::RefundRequest = decode(&request)?;
        let receipt: scrip_tokens::RefundReceipt = decode(&receipt)?;
        let directory = self
            .inner
            .key_directory()
            .ok_or(scrip_merchant::MerchantError::NoDirectory)?;
        let payload = self.inner.terminal().verify_refund_receipt(
            &request,
            &receipt,
            &directory,
            at(now_unix_ms),
        )?;
        Ok(RefundResult {
            refund_id: payload.refund_id.to_string(),
            account_id: payload.account_id.to_string(),
            amount_minor: payload.amount.minor_units,
            refunded_total_minor: payload.refunded_total.minor_units,
        })
    }

    /// A voucher refunding `amount_minor` of the coin payment that answered this
    /// terminal's request `request_id`: give its bytes to the customer (whoever holds them
    /// can withdraw fresh coins worth it, once). Every call makes a new voucher under a new
    /// refund id, each withdrawable up to what is left of the payment: to show the same
    /// voucher again (a QR code shown twice), keep its bytes and show them, do not call
    /// this again.
    pub fn refund_voucher(
        &self,
        request_id: String,
        amount_minor: u64,
        now_unix_ms: u64,
    ) -> Result<Vec<u8>> {
        let request_id = parse_id("request id", &request_id)?;
        let terminal = self.inner.terminal();
        let amount =
            scrip_tokens::Amount::new(amount_minor, terminal.config().max_unsettled.currency);
        let voucher = terminal.refund_voucher(request_id, amount, at(now_unix_ms), &mut rng())?;
        Ok(voucher.to_bytes()?)
    }
}
