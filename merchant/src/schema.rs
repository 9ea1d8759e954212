//! What the point of sale keeps in its store: collections, claim namespaces, ledger
//! accounts, key layouts and the versioned documents (`scrip/merchant/<name>/v1`).

use scrip_stores::{ClaimNamespace, Collection, LedgerAccount};
use scrip_tokens::{
    Amount, ContentDigest, Message, PaymentRequest, RedemptionItem, RedemptionOutcome, RequestId,
    SignedKeyDirectory, Timestamp,
};
use serde::{Deserialize, Serialize};

/// Requests offered and not yet paid, by request id.
pub(crate) const OPEN_REQUESTS: Collection = Collection::new("open-requests");
/// Accepted payments waiting for the issuer, by [`queue_key`].
pub(crate) const QUEUE: Collection = Collection::new("queue");
/// The reply given to each answer, by [`reply_key`]: a repeated answer gets it again.
pub(crate) const REPLIES: Collection = Collection::new("replies");
/// Settled payments, by [`queue_key`].
pub(crate) const SETTLED: Collection = Collection::new("settled");
/// Coin payments taken out of the queue into a pending swap ([`TakingCoins`]), by the
/// swap's request key.
pub(crate) const TAKING: Collection = Collection::new("taking-coins");
/// Coin payments taken as coins ([`CoinsTaken`]), by [`queue_key`].
pub(crate) const TAKEN: Collection = Collection::new("taken-coins");
/// How each take ended ([`TakeEnd`]), by its request key.
pub(crate) const TAKE_ENDS: Collection = Collection::new("take-ends");
/// Single values of the terminal (the cached key directory).
pub(crate) const LOCAL: Collection = Collection::new("merchant");
/// The cached directory's key in [`LOCAL`].
pub(crate) const DIRECTORY_KEY: &[u8] = b"key-directory";
/// The verified revocation list's key in [`LOCAL`] (a `RevocationCache`, its own codec
/// type `scrip/revocation-cache/v1`).
pub(crate) const REVOCATIONS_KEY: &[u8] = b"revocation-list";

/// A request paid by one answer (by request id): a second answer to it is refused.
pub(crate) const REQUEST_PAID: ClaimNamespace = ClaimNamespace::new("request-paid");
/// A queued payment settled (by [`queue_key`]): applying a report twice settles once.
pub(crate) const SETTLED_ONCE: ClaimNamespace = ClaimNamespace::new("settled");

/// What may still be accepted before syncing (the exposure limit minus `unsettled`).
pub(crate) fn headroom() -> LedgerAccount {
    LedgerAccount::System("exposure-headroom".into())
}
/// What accepted, unsettled payments add up to.
pub(crate) fn unsettled() -> LedgerAccount {
    LedgerAccount::System("unsettled".into())
}
/// The other side of limit changes.
pub(crate) fn budget() -> LedgerAccount {
    LedgerAccount::System("exposure-budget".into())
}

/// Queue order: acceptance time, then request id.
pub(crate) fn queue_key(accepted_at: Timestamp, request_id: RequestId) -> Vec<u8> {
    [
        accepted_at.as_unix_millis().to_be_bytes().as_slice(),
        request_id.as_bytes(),
    ]
    .concat()
}

/// One reply per (request, answer).
pub(crate) fn reply_key(request_id: RequestId, answer_digest: ContentDigest) -> Vec<u8> {
    [request_id.as_bytes().as_slice(), answer_digest.as_bytes()].concat()
}

macro_rules! local_doc {
    ($ty:ty, $tag:literal) => {
        impl Message for $ty {
            const TAG: &'static str = concat!("scrip/merchant/", $tag, "/v1");
            const VERSION: u16 = 1;
        }
    };
}

/// A request this terminal offered and has not been paid yet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenRequest {
    /// The signed request.
    pub request: PaymentRequest,
    /// When it stops being payable.
    pub expires_at: Timestamp,
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

/// A swap of queued coin payments sent to the issuer and not answered yet: the signed
/// request (sent again, unchanged, after a lost answer) and the payments it took out of
/// the queue (they come back if the issuer refuses it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TakingCoins {
    /// The signed request.
    pub request: scrip_tokens::MerchantSwapRequest,
    /// The payments it takes.
    pub payments: Vec<QueuedPayment>,
}
local_doc!(TakingCoins, "taking-coins");

/// A coin payment the merchant took as new coins (a swap) instead of account credit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoinsTaken {
    /// The payment.
    pub payment: QueuedPayment,
    /// The swap's request key.
    pub request_key: [u8; 32],
    /// When the issuer's receipt was applied.
    pub taken_at: Timestamp,
}
local_doc!(CoinsTaken, "coins-taken");

/// How a take ended: the issuer's verified outcome (for the wallet, again after a crash),
/// or `None` when it was refused and cancelled.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TakeEnd {
    pub(crate) outcome: Option<scrip_tokens::SwapOutcome>,
    pub(crate) ended_at: Timestamp,
}
local_doc!(TakeEnd, "take-end");

/// The verified key directory, kept across restarts.
#[derive(Serialize, Deserialize)]
pub(crate) struct CachedDirectory {
    pub(crate) signed: SignedKeyDirectory,
    pub(crate) fetched_at: Timestamp,
}
local_doc!(CachedDirectory, "cached-directory");
