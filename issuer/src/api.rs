//! The HTTP API's bodies that are not tokens: shared by the server (feature `server`) and
//! by HTTP clients, so both sides encode exactly the same types.
//!
//! Every body travels as JSON (`application/json`) or as the canonical binary encoding
//! (`application/vnd.scrip.bincode`: domain tag, version, bincode; see
//! [`scrip_tokens::codec`]). Errors are always JSON [`ErrorBody`].

use serde::{Deserialize, Serialize};

use scrip_stores::{LedgerAccount, LedgerEntry, RecordStore};
use scrip_tokens::{
    AccountCertificate, AccountId, CoinId, Currency, DeviceApproval, DeviceId, DeviceRegistration,
    IdentifiedCoin, Message, StatementRequest, Timestamp, VirtualId,
};

use crate::docs::FraudEntry;
use crate::{AccountOpened, FundingSource, Issuer, IssuerError, Result};

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
    pub code: String,
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

impl From<AccountOpened> for AccountOpenedBody {
    fn from(o: AccountOpened) -> Self {
        AccountOpenedBody {
            account_id: o.account_id,
            device_id: o.device_id,
            virtual_id: o.virtual_id,
            certificate: o.certificate,
        }
    }
}

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

/// What the issuer knows of a coin id.
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
    /// An identified coin revoked after its device was reported lost.
    Revoked {
        /// When it was revoked.
        revoked_at: Timestamp,
        /// The coin issued in its place.
        replacement: CoinId,
    },
}

/// Answer to a coin lookup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoinState {
    /// The coin.
    pub coin_id: CoinId,
    /// Its state.
    pub state: CoinStatus,
}
api_message!(CoinState, "coin-state");

/// One ledger entry of a statement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatementEntry {
    /// Ledger sequence number (page with `after_seq`).
    pub seq: u64,
    /// When it was booked.
    pub at: Timestamp,
    /// Change in minor units (negative: money left the account).
    pub delta: i128,
    /// Balance after the entry.
    pub balance_after: i128,
    /// What it was (`deposit`, `withdrawal record`, `coins`, ...).
    pub memo: String,
}

impl From<LedgerEntry> for StatementEntry {
    fn from(e: LedgerEntry) -> Self {
        StatementEntry {
            seq: e.seq,
            at: e.at,
            delta: e.delta,
            balance_after: e.balance_after,
            memo: e.memo,
        }
    }
}

/// An account's statement in one currency.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Statement {
    /// The account.
    pub account_id: AccountId,
    /// The currency.
    pub currency: Currency,
    /// Current balance in minor units (negative if the account owes money).
    pub balance: i128,
    /// Entries after the requested sequence number, oldest first.
    pub entries: Vec<StatementEntry>,
}
api_message!(Statement, "statement");

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

impl<S: RecordStore, F: FundingSource> Issuer<S, F> {
    /// A device's statement request: verified against the device's key, the device must
    /// belong to the account and not be revoked (frozen accounts may read).
    pub async fn statement_for(
        &self,
        request: &StatementRequest,
        now: Timestamp,
    ) -> Result<Statement> {
        let payload = &request.payload;
        let device = self
            .unrevoked_device(payload.device_id, payload.account_id, now)
            .await?;
        request.verify_signature(&device.certificate.payload.device_key)?;
        let limit = payload.limit.clamp(1, MAX_STATEMENT_ENTRIES) as usize;
        let entries = self
            .statement(
                payload.account_id,
                payload.currency,
                payload.after_seq,
                limit,
            )
            .await?;
        let balance = self
            .store()
            .balance(
                &LedgerAccount::Customer(payload.account_id),
                payload.currency,
            )
            .await?;
        Ok(Statement {
            account_id: payload.account_id,
            currency: payload.currency,
            balance,
            entries: entries.into_iter().map(StatementEntry::from).collect(),
        })
    }

    /// What the issuer knows of a coin id: revoked (identified coins of lost devices),
    /// redeemed, or never redeemed.
    pub async fn coin_state(&self, coin_id: CoinId) -> Result<CoinState> {
        if let Some(revoked) = self.revoked_coin(coin_id).await? {
            return Ok(CoinState {
                coin_id,
                state: CoinStatus::Revoked {
                    revoked_at: revoked.at,
                    replacement: revoked.replacement,
                },
            });
        }
        let claim = self
            .store()
            .claims(&[scrip_stores::ClaimId::Coin(coin_id)])
            .await?
            .pop()
            .ok_or_else(|| IssuerError::Corrupted("store answered no claim".into()))?;
        Ok(CoinState {
            coin_id,
            state: match claim {
                Some(c) => CoinStatus::Redeemed {
                    redeemed_at: c.claimed_at,
                },
                None => CoinStatus::NotRedeemed,
            },
        })
    }
}
