#![doc = include_str!("../README.md")]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

use serde::{Deserialize, Serialize};

use scrip_tokens::{
    AccountCertificate, AccountId, Amount, BalanceCertificate, CertificateSerial, CoinId,
    CoinSpendId, DeviceApproval, DeviceId, DeviceRegistration, IdentifiedCoin, MerchantId, Message,
    ReasonCode, RecordId, RequestId, SyncReport, Timestamp, VirtualId,
};

#[cfg(feature = "client")]
pub mod client;
mod error;

pub use error::ClientError;

/// Media type of JSON bodies.
pub const JSON: &str = "application/json";
/// Media type of binary bodies (the canonical codec of `scrip-tokens`).
pub const BINCODE: &str = "application/vnd.scrip.bincode";
/// Header carrying the operator token (`Authorization: Bearer <token>` works too).
pub const OPERATOR_HEADER: &str = "x-scrip-operator";

/// Most ledger entries one statement returns.
pub const MAX_STATEMENT_ENTRIES: u32 = 1_000;

macro_rules! api_message {
    ($ty:ty, $tag:literal) => {
        impl Message for $ty {
            const TAG: &'static str = concat!("scrip/api/", $tag, "/v1");
            const VERSION: u16 = 1;
        }
    };
}

/// Every refusal: a stable snake_case `code` for programs and a `message` for people.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Stable machine-readable code (`bad_signature`, `stale_request`, `replayed`, ...).
    pub code: ReasonCode,
    /// Human-readable detail.
    pub message: String,
}
api_message!(ErrorBody, "error");

/// Answer to opening an account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountOpenedBody {
    /// The new account.
    pub account_id: AccountId,
    /// The registered device.
    pub device_id: DeviceId,
    /// The account's virtual id (written into identified coins).
    pub virtual_id: VirtualId,
    /// The device's account certificate.
    pub certificate: AccountCertificate,
}
api_message!(AccountOpenedBody, "account-opened");

/// A new device joins an account: its self-signed registration and the approval signed by
/// a device already on the account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceEnrollment {
    /// Signed by the new device's key.
    pub registration: DeviceRegistration,
    /// Signed by an existing device of the account.
    pub approval: DeviceApproval,
}
api_message!(DeviceEnrollment, "device-enrollment");

/// What the issuer knows of a coin, by its spend id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
// Externally tagged: the binary codec cannot decode internally tagged enums.
#[serde(rename_all = "snake_case")]
pub enum CoinStatus {
    /// Never redeemed (the issuer cannot tell a blind coin it never saw from no coin).
    NotRedeemed,
    /// Redeemed.
    Redeemed {
        /// When it was redeemed.
        redeemed_at: Timestamp,
    },
    /// An identified coin revoked after its device was reported lost. Its replacement
    /// goes to the holder's new device, and is not named here: this answer is public.
    Revoked {
        /// When it was revoked.
        revoked_at: Timestamp,
    },
}

/// Answer to a coin lookup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoinState {
    /// The coin's spend id ([`scrip_tokens::Coin::spend_id`]).
    pub spend_id: CoinSpendId,
    /// Its state.
    pub state: CoinStatus,
}
api_message!(CoinState, "coin-state");

/// The answer to a balance certificate request on `POST /v2/balance-certificates`: the
/// certificate, and the issuer's signed answer to every record and deposit confirmation
/// the request handed in (the outcomes `POST /v1/sync` would give, for the same records).
/// A device learns from it which of its records were refused and why, instead of only the
/// issuer's log knowing. (`POST /v1/balance-certificates` still answers the bare
/// certificate, for clients of the first release.)
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalanceCertificateAnswer {
    /// The certificate.
    pub certificate: BalanceCertificate,
    /// One outcome per handed-in record, in order, and the confirmations recorded; its
    /// `request_digest` is the certificate request's digest
    /// ([`SyncReport::verify_for_certificate_request`]).
    pub hand_ins: SyncReport,
}
api_message!(BalanceCertificateAnswer, "balance-certificate-answer");

/// What became of a coin payment, as its receipt's coins show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CoinPaymentStatus {
    /// None of its coins is redeemed yet: the merchant has not uploaded the payment.
    Unsettled,
    /// The merchant redeemed this payment, every coin of it.
    Settled {
        /// When.
        settled_at: Timestamp,
    },
    /// Some coins were redeemed in another payment first (or, at the same merchant, in a
    /// different payment): this payment cannot settle. The coins listed are those taken.
    DoubleSpent {
        /// When the first of them was redeemed.
        first_redeemed_at: Timestamp,
        /// The coins redeemed elsewhere.
        coins: Vec<CoinId>,
    },
    /// Some coins are identified coins the issuer revoked (their device was reported lost
    /// and they were reissued to the account): this payment cannot settle.
    Revoked {
        /// The revoked coins.
        coins: Vec<CoinId>,
    },
}

/// Answer to `POST /v1/coin-payments/state`: the state of the coin payment a receipt
/// names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoinPaymentState {
    /// The paid request.
    pub request_id: RequestId,
    /// The merchant the receipt names.
    pub merchant_id: MerchantId,
    /// The payment's state.
    pub state: CoinPaymentStatus,
}
api_message!(CoinPaymentState, "coin-payment-state");

/// One entry of the fraud log, with its key for paging.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FraudLogItem {
    /// Position in the log (hex; pass as `after` for the next page).
    pub key: String,
    /// The entry.
    pub entry: FraudEntry,
}

/// A page of the fraud log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FraudLogPage {
    /// Entries, oldest first.
    pub entries: Vec<FraudLogItem>,
}
api_message!(FraudLogPage, "fraud-log-page");

/// Answer to a device revocation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRevoked {
    /// The device.
    pub device_id: DeviceId,
    /// When it was revoked (the first revocation's time on a repeat).
    pub revoked_at: Timestamp,
}
api_message!(DeviceRevoked, "device-revoked");

/// Operator request body carrying only a reason (freezing or unfreezing an account,
/// revoking a merchant): kept with the action and logged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorReason {
    /// Why (for the record; at most [`MAX_REASON_CHARS`] characters, not empty).
    pub reason: String,
}
api_message!(OperatorReason, "operator-reason");

/// Longest reason an operator action keeps.
pub const MAX_REASON_CHARS: usize = 500;

/// A frozen account: when and why it was frozen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrozenAccount {
    /// The account.
    pub account_id: AccountId,
    /// When it was frozen (the first freeze's time on a repeat).
    pub frozen_at: Timestamp,
    /// Why.
    pub reason: String,
}
api_message!(FrozenAccount, "frozen-account");

/// A page of frozen accounts, in account id order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrozenAccountsPage {
    /// The accounts (pass the last one's id as `after` for the next page).
    pub accounts: Vec<FrozenAccount>,
}
api_message!(FrozenAccountsPage, "frozen-accounts-page");

/// Answer to an unfreeze: the freeze lifted and the operator's reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountUnfrozen {
    /// The account.
    pub account_id: AccountId,
    /// When the lifted freeze was made.
    pub frozen_at: Timestamp,
    /// Why it was made.
    pub frozen_reason: String,
    /// When it was lifted.
    pub unfrozen_at: Timestamp,
    /// Why it was lifted.
    pub reason: String,
}
api_message!(AccountUnfrozen, "account-unfrozen");

/// Answer to a merchant revocation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MerchantRevoked {
    /// The merchant.
    pub merchant_id: MerchantId,
    /// When it was revoked (the first revocation's time on a repeat).
    pub revoked_at: Timestamp,
    /// Why (the first revocation's reason on a repeat).
    pub reason: String,
}
api_message!(MerchantRevoked, "merchant-revoked");

/// Operator request: reissue a revoked device's unspent identified coins to another
/// device of the same account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReissueRequest {
    /// The device that receives the new coins.
    pub to: DeviceId,
}
api_message!(ReissueRequest, "reissue-request");

/// The reissued coins.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReissuedCoins {
    /// New coins, held by the receiving device.
    pub coins: Vec<IdentifiedCoin>,
}
api_message!(ReissuedCoins, "reissued-coins");

/// The issuer's directory root key. Wallets and merchants should pin it from
/// configuration (the server writes it to `<data-dir>/root-key.pem`); fetching it over the
/// network is trust on first use.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootKey {
    /// The public key (SPKI DER, hex in JSON).
    pub key: scrip_tokens::VerifyingKey<scrip_tokens::keys::DirectoryRoot>,
}
api_message!(RootKey, "root-key");

/// Nothing to say but "done" (deposit confirmations).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Done {
    /// Always true.
    pub ok: bool,
}
api_message!(Done, "done");

/// One entry of the fraud log. Also what the issuer stores, under the tag it has always
/// had (`scrip/issuer/fraud-entry/v1`): the log's bytes and the API's are the same.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FraudEntry {
    /// When the issuer noticed.
    pub at: Timestamp,
    /// What.
    pub kind: FraudKind,
}

impl Message for FraudEntry {
    const TAG: &'static str = "scrip/issuer/fraud-entry/v1";
    const VERSION: u16 = 1;
}

/// The holder behind an identified coin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoinHolder {
    /// The coin.
    pub coin_id: CoinId,
    /// The virtual id written in it.
    pub virtual_id: VirtualId,
    /// The account behind the virtual id.
    pub account_id: Option<AccountId>,
    /// The coin had been revoked (its device reported lost): the holder named is the
    /// victim, and whoever presented it is likely the thief.
    pub revoked: bool,
}

/// What kind of fraud (or attempt).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FraudKind {
    /// A merchant presented coins that were already redeemed (or revoked).
    DoubleSpend {
        /// The merchant presenting them now.
        merchant: MerchantId,
        /// The coins already spent.
        coins: Vec<CoinId>,
        /// When the first of them was redeemed.
        first_redeemed_at: Timestamp,
        /// Holders of the identified coins among them (blind coins name nobody).
        holders: Vec<CoinHolder>,
    },
    /// A device signed two different records with the same sequence number.
    Equivocation {
        /// The account (now frozen).
        account_id: AccountId,
        /// The device.
        device_id: DeviceId,
        /// The sequence number.
        sequence: u64,
        /// The record recorded first.
        first: Option<RecordId>,
        /// The second, different record.
        second: RecordId,
    },
    /// A device used one record id for two different records.
    RecordIdReuse {
        /// The account (now frozen).
        account_id: AccountId,
        /// The device.
        device_id: DeviceId,
        /// The reused id.
        record_id: RecordId,
    },
    /// Records under a certificate added up to more than it made available.
    Overspend {
        /// The account (now frozen).
        account_id: AccountId,
        /// The device.
        device_id: DeviceId,
        /// The certificate.
        certificate: CertificateSerial,
        /// By how much the records exceed the certificate.
        excess: Amount,
    },
}
