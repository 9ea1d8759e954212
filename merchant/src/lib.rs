#![doc = include_str!("../README.md")]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod error;

use std::sync::RwLock;
use std::time::Duration;

use async_trait::async_trait;
use rand_core::CryptoRng;
use scrip_stores::{
    ClaimId, Claimant, Collection, CommitOutcome, Floor, LedgerAccount, Posting, RecordStore, Unit,
    Write,
};
use scrip_tokens::keys::{DirectoryRoot, Merchant as MerchantRole};
use scrip_tokens::{
    codec, Amount, ContentDigest, CountersignedRecord, CountersignedRecordPayload,
    EndorsedCoinPayment, EndorsedCoinPaymentPayload, KeyDirectory, MerchantCertificate,
    MerchantOffer, MerchantReply, Message, PaymentAnswer, PaymentReceipt, PaymentRejection,
    PaymentRejectionPayload, PaymentRequest, PaymentRequestPayload, RedemptionBatch,
    RedemptionBatchPayload, RedemptionItem, RedemptionOutcome, RedemptionReport, RejectReason,
    RequestId, SignedKeyDirectory, SigningKey, Timestamp, VerifyingKey,
};
use serde::{Deserialize, Serialize};

pub use error::{ClientError, MerchantError, Result};

/// How a merchant reaches the issuer when it is online. The HTTP client implements it for
/// real use; tests implement it over the issuer core in process.
#[async_trait]
pub trait IssuerClient: Send + Sync {
    /// The issuer's signed key directory.
    async fn key_directory(&self) -> Result<SignedKeyDirectory, ClientError>;
    /// Redeems a batch.
    async fn redeem(&self, batch: &RedemptionBatch) -> Result<RedemptionReport, ClientError>;
}

/// Limits of a point of sale.
#[derive(Clone, Debug)]
pub struct MerchantConfig {
    /// The most that accepted, not yet settled payments may add up to (its currency is the
    /// only one the merchant takes). Accepting more is refused with `exposure_limit`.
    pub max_unsettled: Amount,
    /// How long a payment request stays payable.
    pub request_lifetime: Duration,
    /// Most items per upload batch.
    pub batch_size: usize,
}

impl MerchantConfig {
    /// Up to `max_unsettled` unsettled, requests valid for 10 minutes, batches of 200.
    pub fn new(max_unsettled: Amount) -> Self {
        MerchantConfig {
            max_unsettled,
            request_lifetime: Duration::from_secs(600),
            batch_size: 200,
        }
    }
}

const OPEN_REQUESTS: Collection = Collection::new("open-requests");
const QUEUE: Collection = Collection::new("queue");
const REPLIES: Collection = Collection::new("replies");
const SETTLED: Collection = Collection::new("settled");
const LOCAL: Collection = Collection::new("merchant");
const DIRECTORY_KEY: &[u8] = b"key-directory";

fn headroom() -> LedgerAccount {
    LedgerAccount::System("exposure-headroom".into())
}
fn unsettled() -> LedgerAccount {
    LedgerAccount::System("unsettled".into())
}
fn budget() -> LedgerAccount {
    LedgerAccount::System("exposure-budget".into())
}

macro_rules! local_doc {
    ($ty:ty, $tag:literal) => {
        impl Message for $ty {
            const TAG: &'static str = concat!("scrip/merchant/", $tag, "/v1");
            const VERSION: u16 = 1;
        }
    };
}

#[derive(Serialize, Deserialize)]
struct OpenRequest {
    request: PaymentRequest,
    expires_at: Timestamp,
}
local_doc!(OpenRequest, "open-request");

/// An accepted payment waiting to be redeemed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedPayment {
    /// What goes to the issuer.
    pub item: RedemptionItem,
    /// The amount it credits.
    pub amount: Amount,
    /// When the merchant accepted it.
    pub accepted_at: Timestamp,
}
local_doc!(QueuedPayment, "queued-payment");

/// How a queued payment ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settlement {
    /// The payment.
    pub payment: QueuedPayment,
    /// The issuer's answer.
    pub outcome: RedemptionOutcome,
    /// When the answer was applied.
    pub settled_at: Timestamp,
}
local_doc!(Settlement, "settlement");

#[derive(Serialize, Deserialize)]
struct CachedDirectory {
    signed: SignedKeyDirectory,
    fetched_at: Timestamp,
}
local_doc!(CachedDirectory, "cached-directory");

/// Counts of what a sync settled.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncSummary {
    /// Credited now.
    pub accepted: usize,
    /// Credited before (an earlier, unacknowledged upload, or the customer's copy).
    pub already_accepted: usize,
    /// Refused: coins spent elsewhere first.
    pub double_spent: usize,
    /// Refused as invalid.
    pub invalid: usize,
}

fn request_of(answer: &PaymentAnswer) -> &PaymentRequest {
    match answer {
        PaymentAnswer::ByRecord { record, .. } => &record.payload.payment_request,
        PaymentAnswer::ByCoins(payment) => &payment.request,
    }
}

fn queue_key(accepted_at: Timestamp, request_id: RequestId) -> Vec<u8> {
    [
        accepted_at.as_unix_millis().to_be_bytes().as_slice(),
        request_id.as_bytes(),
    ]
    .concat()
}

fn reject(code: &str, message: impl Into<String>) -> RejectReason {
    RejectReason {
        code: code.to_owned(),
        message: message.into(),
    }
}

/// A point of sale: creates payment requests, verifies wallets' answers fully offline,
/// countersigns or endorses them, keeps them in a persistent queue (any scrip store
/// backend) and settles them with the issuer when online.
pub struct Merchant<S> {
    key: SigningKey<MerchantRole>,
    certificate: MerchantCertificate,
    root: VerifyingKey<DirectoryRoot>,
    store: S,
    config: MerchantConfig,
    directory: RwLock<Option<(KeyDirectory, Timestamp)>>,
}

impl<S: RecordStore> Merchant<S> {
    /// Opens the point of sale over `store` (its queue survives restarts), with its key and
    /// certificate, trusting directories signed by `root`. Applies the configured exposure
    /// limit.
    pub async fn open(
        store: S,
        key: SigningKey<MerchantRole>,
        certificate: MerchantCertificate,
        root: VerifyingKey<DirectoryRoot>,
        config: MerchantConfig,
        now: Timestamp,
    ) -> Result<Self> {
        if certificate.payload.merchant_key != *key.verifying_key() {
            return Err(scrip_tokens::Error::UnknownKey(key.key_id()).into());
        }
        let merchant = Merchant {
            key,
            certificate,
            root,
            store,
            config,
            directory: RwLock::new(None),
        };
        if let Some(bytes) = merchant.store.get(LOCAL, DIRECTORY_KEY).await? {
            let cached: CachedDirectory = codec::decode(&bytes)?;
            let directory = cached.signed.verify(&merchant.root)?.clone();
            merchant.set_directory(directory, cached.fetched_at);
        }
        merchant.apply_limit(now).await?;
        Ok(merchant)
    }

    /// Brings headroom + unsettled to the configured limit (the limit may have changed).
    async fn apply_limit(&self, now: Timestamp) -> Result<()> {
        let currency = self.config.max_unsettled.currency;
        let h = self.store.balance(&headroom(), currency).await?;
        let u = self.store.balance(&unsettled(), currency).await?;
        let delta = i128::from(self.config.max_unsettled.minor_units) - (h + u);
        if delta != 0 {
            let unit = Unit::new(self.claimant(), now).post([
                Posting {
                    account: budget(),
                    currency,
                    delta: -delta,
                    memo: "exposure limit".into(),
                },
                Posting {
                    account: headroom(),
                    currency,
                    delta,
                    memo: "exposure limit".into(),
                },
            ]);
            self.store.commit(unit).await?;
        }
        Ok(())
    }

    fn claimant(&self) -> Claimant {
        Claimant::Merchant(self.certificate.payload.merchant_id)
    }

    fn set_directory(&self, directory: KeyDirectory, at: Timestamp) {
        match self.directory.write() {
            Ok(mut d) => *d = Some((directory, at)),
            Err(poisoned) => *poisoned.into_inner() = Some((directory, at)),
        }
    }

    fn cached_directory(&self) -> Option<(KeyDirectory, Timestamp)> {
        match self.directory.read() {
            Ok(d) => d.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The merchant's certificate.
    pub fn certificate(&self) -> &MerchantCertificate {
        &self.certificate
    }

    /// The local store (queue, settlements).
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Takes a key directory fetched from the issuer (checked against the pinned root).
    pub async fn refresh_directory(
        &self,
        signed: SignedKeyDirectory,
        now: Timestamp,
    ) -> Result<()> {
        let directory = signed.verify(&self.root)?.clone();
        let cached = CachedDirectory {
            signed,
            fetched_at: now,
        };
        let unit = Unit::new(self.claimant(), now).write(Write::put(
            LOCAL,
            DIRECTORY_KEY.to_vec(),
            codec::encode(&cached)?,
        ));
        self.store.commit(unit).await?;
        self.set_directory(directory, now);
        Ok(())
    }

    /// How old the cached key directory is (show it on the terminal: payments are checked
    /// against it).
    pub fn directory_age(&self, now: Timestamp) -> Option<Duration> {
        self.cached_directory().map(|(_, at)| {
            Duration::from_millis(now.as_unix_millis().saturating_sub(at.as_unix_millis()))
        })
    }

    /// A payment request for `amount`, signed, with the merchant certificate: show its
    /// bytes to the wallet.
    pub async fn offer<G: CryptoRng + ?Sized>(
        &self,
        amount: Amount,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<MerchantOffer> {
        if amount.currency != self.config.max_unsettled.currency || amount.is_zero() {
            return Err(MerchantError::Unsupported(
                "amount in another currency, or zero",
            ));
        }
        let cert = &self.certificate.payload;
        let request = PaymentRequest::sign(
            PaymentRequestPayload {
                request_id: RequestId::random(rng),
                merchant_id: cert.merchant_id,
                amount,
                created_at: now,
                category: cert.category,
                region: cert.region.clone(),
            },
            &self.key,
            rng,
        )?;
        let open = OpenRequest {
            request: request.clone(),
            expires_at: now.saturating_add(self.config.request_lifetime),
        };
        let unit = Unit::new(self.claimant(), now).write(Write::put(
            OPEN_REQUESTS,
            request.payload.request_id.as_bytes().to_vec(),
            codec::encode(&open)?,
        ));
        self.store.commit(unit).await?;
        Ok(MerchantOffer {
            request,
            merchant_certificate: self.certificate.clone(),
        })
    }

    /// Decides on a wallet's answer, fully offline: verifies it against the cached key
    /// directory and this merchant's open request, refuses coins or sequence numbers it
    /// has seen before and anything beyond the exposure limit, and either countersigns
    /// (records) or endorses (coins) and queues it, or refuses with a signed,
    /// machine-readable reason. A repeated answer gets the same reply.
    pub async fn accept<G: CryptoRng + ?Sized>(
        &self,
        answer: &PaymentAnswer,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<MerchantReply> {
        let answer_digest = codec::digest(answer)?;
        let request_id = request_of(answer).payload.request_id;
        if let Some(bytes) = self
            .store
            .get(REPLIES, &reply_key(request_id, answer_digest))
            .await?
        {
            return Ok(codec::decode(&bytes)?);
        }
        match self.check(answer, now).await? {
            Err(reason) => self.rejection(request_id, answer_digest, reason, now, rng),
            Ok((amount, claims)) => {
                self.commit_acceptance(answer, answer_digest, amount, claims, now, rng)
                    .await
            }
        }
    }

    /// [`Merchant::accept`] on bytes: decodes the answer, encodes the reply. Bytes that do
    /// not decode cannot be answered with a signed rejection (there is no request to name)
    /// and are an error.
    pub async fn accept_bytes<G: CryptoRng + ?Sized>(
        &self,
        answer: &[u8],
        now: Timestamp,
        rng: &mut G,
    ) -> Result<Vec<u8>> {
        let answer: PaymentAnswer = codec::decode(answer)?;
        let reply = self.accept(&answer, now, rng).await?;
        Ok(codec::encode(&reply)?)
    }

    fn rejection<G: CryptoRng + ?Sized>(
        &self,
        request_id: RequestId,
        answer_digest: ContentDigest,
        reason: RejectReason,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<MerchantReply> {
        Ok(MerchantReply::Rejection(PaymentRejection::sign(
            PaymentRejectionPayload {
                request_id,
                answer_digest,
                reason,
                rejected_at: now,
            },
            &self.key,
            rng,
        )?))
    }

    /// The offline checks. `Ok(Err(reason))` is a refusal; `Ok(Ok(..))` the amount and the
    /// ids to claim locally.
    async fn check(
        &self,
        answer: &PaymentAnswer,
        now: Timestamp,
    ) -> Result<std::result::Result<(Amount, Vec<ClaimId>), RejectReason>> {
        let Some((directory, _)) = self.cached_directory() else {
            return Ok(Err(reject(
                "no_key_directory",
                "the terminal has no key directory yet",
            )));
        };
        let request = request_of(answer);
        let me = &self.certificate.payload;
        if let Err(e) = request.verify(me) {
            return Ok(Err(RejectReason::from(&e)));
        }
        let request_id = request.payload.request_id;
        let open: Option<OpenRequest> =
            match self.store.get(OPEN_REQUESTS, request_id.as_bytes()).await? {
                Some(bytes) => Some(codec::decode(&bytes)?),
                None => None,
            };
        let Some(open) = open else {
            // Paid requests leave the open list: tell a second answer so.
            let paid = ClaimId::Custom {
                namespace: "request-paid".into(),
                key: request_id.as_bytes().to_vec(),
            };
            if let Some(Some(_)) = self.store.claims(std::slice::from_ref(&paid)).await?.pop() {
                return Ok(Err(reject(
                    "request_already_paid",
                    "this request was paid with another answer",
                )));
            }
            return Ok(Err(reject(
                "unknown_request",
                "not an open request of this terminal",
            )));
        };
        if open.request != *request {
            return Ok(Err(reject("unknown_request", "the request was altered")));
        }
        if now > open.expires_at {
            return Ok(Err(reject(
                "request_expired",
                "the payment request expired",
            )));
        }
        let amount = request.payload.amount;
        let checked = match answer {
            PaymentAnswer::ByRecord {
                record,
                account_certificate,
                balance_certificate,
            } => (|| {
                let account = account_certificate.verify(&directory, now)?;
                let payload = record.verify(account)?;
                let cert = balance_certificate.verify(&directory, account, now)?;
                cert.authorize(payload)?;
                Ok::<_, scrip_tokens::Error>(vec![
                    ClaimId::Record(payload.record_id),
                    ClaimId::DeviceSequence {
                        device: payload.device_id,
                        sequence: payload.sequence,
                    },
                ])
            })(),
            PaymentAnswer::ByCoins(payment) => payment.verify(me, &directory, now).and_then(|p| {
                p.coins
                    .iter()
                    .map(|c| Ok(ClaimId::Coin(c.spend_id()?)))
                    .collect::<scrip_tokens::Result<Vec<_>>>()
            }),
        };
        let claims = match checked {
            Ok(claims) => claims,
            Err(e) => return Ok(Err(RejectReason::from(&e))),
        };
        if let PaymentAnswer::ByCoins(payment) = answer {
            // Coins this terminal took before spend ids, claimed under their bare ids:
            // read, never written again (so reading before committing cannot race).
            let legacy: Vec<ClaimId> = payment
                .coins
                .iter()
                .map(|c| ClaimId::LegacyCoinId(c.id()))
                .collect();
            let held = self.store.claims(&legacy).await?;
            if let Some((coin, _)) = payment
                .coins
                .iter()
                .zip(held)
                .find(|(_, claim)| claim.is_some())
            {
                return Ok(Err(reject(
                    "coin_already_seen",
                    format!("coin {} was spent at this terminal before", coin.id()),
                )));
            }
        }
        Ok(Ok((amount, claims)))
    }

    async fn commit_acceptance<G: CryptoRng + ?Sized>(
        &self,
        answer: &PaymentAnswer,
        answer_digest: ContentDigest,
        amount: Amount,
        claims: Vec<ClaimId>,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<MerchantReply> {
        let request_id = request_of(answer).payload.request_id;
        let merchant_id = self.certificate.payload.merchant_id;
        let (item, receipt) = match answer {
            PaymentAnswer::ByRecord { record, .. } => {
                let receipt = CountersignedRecord::sign(
                    CountersignedRecordPayload {
                        record: record.clone(),
                        accepted_at: now,
                    },
                    &self.key,
                    rng,
                )?;
                (
                    RedemptionItem::Record(receipt.clone()),
                    PaymentReceipt::Record(receipt),
                )
            }
            PaymentAnswer::ByCoins(payment) => {
                let receipt = EndorsedCoinPayment::sign(
                    EndorsedCoinPaymentPayload {
                        payment: payment.clone(),
                        merchant_id,
                        endorsed_at: now,
                    },
                    &self.key,
                    rng,
                )?;
                (
                    RedemptionItem::Coins(receipt.clone()),
                    PaymentReceipt::Coins(receipt),
                )
            }
        };
        let reply = MerchantReply::Receipt(receipt);
        let queued = QueuedPayment {
            item,
            amount,
            accepted_at: now,
        };
        let mut unit = Unit::new(self.claimant(), now)
            .claim(
                ClaimId::Custom {
                    namespace: "request-paid".into(),
                    key: request_id.as_bytes().to_vec(),
                },
                answer_digest,
            )
            .post(Posting::transfer(
                headroom(),
                unsettled(),
                amount,
                "payment accepted",
            ))
            .floor(Floor::non_negative(headroom(), amount.currency))
            .write(Write::put(
                QUEUE,
                queue_key(now, request_id),
                codec::encode(&queued)?,
            ))
            .write(Write::put(
                REPLIES,
                reply_key(request_id, answer_digest),
                codec::encode(&reply)?,
            ))
            .write(Write::delete(OPEN_REQUESTS, request_id.as_bytes().to_vec()));
        for claim in &claims {
            unit = unit.claim(claim.clone(), answer_digest);
        }
        let outcome = self.store.commit(unit).await?;
        let reason = match outcome {
            CommitOutcome::Committed => return Ok(reply),
            CommitOutcome::Repeated { .. } => {
                return match self
                    .store
                    .get(REPLIES, &reply_key(request_id, answer_digest))
                    .await?
                {
                    Some(bytes) => Ok(codec::decode(&bytes)?),
                    None => Err(MerchantError::Corrupted(
                        "accepted payment without reply".into(),
                    )),
                }
            }
            CommitOutcome::InsufficientFunds { .. } => reject(
                "exposure_limit",
                "the terminal's limit of unsettled payments is reached: sync first",
            ),
            CommitOutcome::Conflict(report) => {
                let held: Vec<&ClaimId> = report
                    .iter()
                    .filter(|(_, existing)| existing.is_some())
                    .map(|(id, _)| id)
                    .collect();
                match held.first() {
                    Some(ClaimId::Custom { .. }) => reject(
                        "request_already_paid",
                        "this request was paid with another answer",
                    ),
                    Some(ClaimId::Coin(spend_id)) => reject(
                        "coin_already_seen",
                        format!("a coin (spend id {spend_id}) was spent at this terminal before"),
                    ),
                    Some(ClaimId::DeviceSequence { .. }) => reject(
                        "sequence_already_seen",
                        "this device already paid here with that sequence number",
                    ),
                    Some(ClaimId::Record(_)) => reject(
                        "record_already_seen",
                        "this record was presented here before",
                    ),
                    _ => reject("conflict", "already seen"),
                }
            }
        };
        self.rejection(request_id, answer_digest, reason, now, rng)
    }

    /// Payments accepted and not yet settled with the issuer, oldest first.
    pub async fn pending(&self, limit: usize) -> Result<Vec<QueuedPayment>> {
        self.store
            .scan(QUEUE, None, limit)
            .await?
            .into_iter()
            .map(|(_, v)| codec::decode(&v).map_err(MerchantError::from))
            .collect()
    }

    /// What accepted payments not yet settled add up to.
    pub async fn unsettled(&self) -> Result<Amount> {
        let currency = self.config.max_unsettled.currency;
        let u = self.store.balance(&unsettled(), currency).await?;
        Ok(Amount::new(u64::try_from(u).unwrap_or(0), currency))
    }

    /// A signed upload of the oldest queued payments (at most the configured batch
    /// size), or `None` if nothing is queued. Uploading the same items again is safe: the
    /// issuer answers `AlreadyAccepted`.
    pub async fn build_batch<G: CryptoRng + ?Sized>(
        &self,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<Option<RedemptionBatch>> {
        let queued = self.pending(self.config.batch_size).await?;
        if queued.is_empty() {
            return Ok(None);
        }
        let mut nonce = [0u8; 16];
        rng.fill_bytes(&mut nonce);
        Ok(Some(RedemptionBatch::sign(
            RedemptionBatchPayload {
                merchant_id: self.certificate.payload.merchant_id,
                items: queued.into_iter().map(|q| q.item).collect(),
                created_at: now,
                nonce,
            },
            &self.key,
            rng,
        )?))
    }

    /// Applies the issuer's answer to a batch: every answered item leaves the queue (and
    /// its amount the unsettled total) and is kept as a settlement. Safe to repeat. The
    /// answer must be signed by the issuer's answer key (as listed in the cached
    /// directory) and name this batch; otherwise nothing is applied
    /// ([`MerchantError::UnverifiedAnswer`]).
    pub async fn apply_report(
        &self,
        batch: &RedemptionBatch,
        report: &RedemptionReport,
        now: Timestamp,
    ) -> Result<SyncSummary> {
        // Anyone on the path can send an answer: only the issuer's signed answer to this
        // very batch changes the queue.
        let (directory, _) = self.cached_directory().ok_or(MerchantError::NoDirectory)?;
        let report = report
            .verify_for(batch, &directory, now)
            .map_err(MerchantError::UnverifiedAnswer)?;
        let mut summary = SyncSummary::default();
        for (item, outcome) in batch.payload.items.iter().zip(&report.outcomes) {
            let (request_id, accepted_at) = match item {
                RedemptionItem::Record(r) => (
                    r.payload.record.payload.payment_request.payload.request_id,
                    r.payload.accepted_at,
                ),
                RedemptionItem::Coins(c) => (
                    c.payload.payment.request.payload.request_id,
                    c.payload.endorsed_at,
                ),
            };
            let key = queue_key(accepted_at, request_id);
            let Some(bytes) = self.store.get(QUEUE, &key).await? else {
                continue; // applied before
            };
            let payment: QueuedPayment = codec::decode(&bytes)?;
            match outcome {
                RedemptionOutcome::Accepted { .. } => summary.accepted += 1,
                RedemptionOutcome::AlreadyAccepted { .. } => summary.already_accepted += 1,
                RedemptionOutcome::DoubleSpent { .. } => summary.double_spent += 1,
                RedemptionOutcome::Invalid { .. } => summary.invalid += 1,
            }
            let amount = payment.amount;
            let settlement = Settlement {
                payment,
                outcome: outcome.clone(),
                settled_at: now,
            };
            let unit = Unit::new(self.claimant(), now)
                .claim(
                    ClaimId::Custom {
                        namespace: "settled".into(),
                        key: key.clone(),
                    },
                    ContentDigest::of(&key),
                )
                .post(Posting::transfer(
                    unsettled(),
                    headroom(),
                    amount,
                    "settled",
                ))
                .write(Write::delete(QUEUE, key.clone()))
                .write(Write::put(SETTLED, key, codec::encode(&settlement)?));
            self.store.commit(unit).await?;
        }
        Ok(summary)
    }

    /// Settlements so far, oldest first.
    pub async fn settlements(&self, limit: usize) -> Result<Vec<Settlement>> {
        self.store
            .scan(SETTLED, None, limit)
            .await?
            .into_iter()
            .map(|(_, v)| codec::decode(&v).map_err(MerchantError::from))
            .collect()
    }

    /// Goes online: refreshes the key directory, then uploads the queue batch by batch and
    /// applies the answers. Any failure leaves the queue as it was (retry later).
    pub async fn sync<G: CryptoRng + ?Sized>(
        &self,
        issuer: &dyn IssuerClient,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<SyncSummary> {
        self.refresh_directory(issuer.key_directory().await?, now)
            .await?;
        let mut total = SyncSummary::default();
        while let Some(batch) = self.build_batch(now, rng).await? {
            let report = issuer.redeem(&batch).await?;
            let summary = self.apply_report(&batch, &report, now).await?;
            if summary == SyncSummary::default() {
                break; // nothing left the queue: avoid looping on a stuck item
            }
            total.accepted += summary.accepted;
            total.already_accepted += summary.already_accepted;
            total.double_spent += summary.double_spent;
            total.invalid += summary.invalid;
        }
        Ok(total)
    }
}

fn reply_key(request_id: RequestId, answer_digest: ContentDigest) -> Vec<u8> {
    [request_id.as_bytes().as_slice(), answer_digest.as_bytes()].concat()
}
