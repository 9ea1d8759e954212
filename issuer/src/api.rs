//! The HTTP API's bodies that are not tokens: shared by the server (feature `server`) and
//! by HTTP clients, so both sides encode exactly the same types.
//!
//! Every body travels as JSON (`application/json`) or as the canonical binary encoding
//! (`application/vnd.scrip.bincode`: domain tag, version, bincode; see
//! [`scrip_tokens::codec`]). Errors are always JSON [`ErrorBody`].

use serde::{Deserialize, Serialize};

use scrip_stores::{LedgerAccount, RecordStore};
use scrip_tokens::{
    AccountCertificate, AccountId, CoinSpendId, DeviceApproval, DeviceId, DeviceRegistration,
    IdentifiedCoin, Message, StatementEntry, StatementPayload, StatementRequest, Timestamp,
    VirtualId,
};

use crate::authentication::Authenticated;
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
    /// The answer is unsigned: [`Issuer::sign_answer`] signs it for the device.
    pub async fn statement_for(
        &self,
        request: &StatementRequest,
        now: Timestamp,
    ) -> Result<StatementPayload> {
        let request = self.authenticate(request).await?;
        self.statement_authenticated(request, now).await
    }

    /// [`Self::statement_for`] for a request whose signature was checked.
    pub async fn statement_authenticated(
        &self,
        request: Authenticated<'_, StatementRequest>,
        now: Timestamp,
    ) -> Result<StatementPayload> {
        let device = request.signer();
        let request_digest = scrip_tokens::codec::digest(request.request())?;
        let payload = &request.request().payload;
        self.check_unrevoked(device, payload.account_id, now)
            .await?;
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
        Ok(StatementPayload {
            account_id: payload.account_id,
            request_digest,
            currency: payload.currency,
            balance,
            entries: entries
                .into_iter()
                .map(|e| StatementEntry {
                    seq: e.seq,
                    at: e.at,
                    delta: e.delta,
                    balance_after: e.balance_after,
                    memo: e.memo,
                })
                .collect(),
            answered_at: now,
        })
    }

    /// What the issuer knows of a coin, by its spend id: revoked (an identified coin of a
    /// lost device, reissued), redeemed, or never redeemed. The lookup is by spend id, which
    /// only someone who saw the coin can compute, so the answer tells a stranger nothing.
    /// (Coins redeemed by scrip 0.1, under their bare ids, show as not redeemed here; they
    /// are still refused at redemption.)
    pub async fn coin_state(&self, spend_id: CoinSpendId) -> Result<CoinState> {
        let claim = self
            .store()
            .claims(&[scrip_stores::ClaimId::Coin(spend_id)])
            .await?
            .pop()
            .ok_or_else(|| IssuerError::Corrupted("store answered no claim".into()))?;
        Ok(CoinState {
            spend_id,
            state: match claim {
                // Reissue claims the old coins as the issuer (fraud.rs).
                Some(c) if c.claimant == scrip_stores::Claimant::Issuer => CoinStatus::Revoked {
                    revoked_at: c.claimed_at,
                },
                Some(c) => CoinStatus::Redeemed {
                    redeemed_at: c.claimed_at,
                },
                None => CoinStatus::NotRedeemed,
            },
        })
    }
}
