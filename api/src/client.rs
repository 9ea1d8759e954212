//! A typed async HTTP client of the issuer server (feature `client`), for wallets and
//! points of sale: every request the `wallet` and `merchant` libraries produce has a
//! method here, and answers come back typed.
//!
//! ```no_run
//! # async fn example() -> Result<(), scrip_api::ClientError> {
//! let issuer = scrip_api::client::HttpClient::new("http://127.0.0.1:8080")?;
//! let directory = issuer.key_directory().await?;
//! # Ok(()) }
//! ```
//!
//! Requests are signed tokens that carry their creation time and a nonce; the server
//! refuses replays, so a caller that retries after a network error builds and signs the
//! request again (the issuer's idempotency keys make that safe).

use std::time::Duration;

use crate::{
    AccountOpenedBody, AccountUnfrozen, BalanceCertificateAnswer, CoinPaymentState, CoinState,
    DeviceEnrollment, DeviceRevoked, Done, ErrorBody, FraudLogPage, FrozenAccount,
    FrozenAccountsPage, MerchantRevoked, OperatorReason, ReissueRequest, ReissuedCoins, RootKey,
    BINCODE, JSON,
};
use async_trait::async_trait;
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use scrip_tokens::{
    codec, AccountCertificate, AccountId, BalanceCertificate, BalanceCertificateRequest,
    BlindWithdrawalRequest, BlindWithdrawalResponse, CoinSpendId, DepositConfirmation,
    DepositRecord, DepositRequest, DeviceId, DeviceRegistration, DeviceSwapRequest,
    EndorsedCoinPayment, IdentifiedWithdrawalRequest, IdentifiedWithdrawalResponse,
    MerchantCertificate, MerchantId, MerchantRegistration, MerchantStatement,
    MerchantStatementRequest, MerchantSwapRequest, Message, PayoutReceipt, PayoutRequest,
    ReasonCode, RedemptionBatch, RedemptionReport, RefundReceipt, RefundRequest, RevocationList,
    SignedKeyDirectory, Statement, StatementRequest, SwapReceipt, SwapRequest, SyncReport,
    SyncRequest, VoucherWithdrawalRequest,
};

use crate::ClientError as Error;

/// Body format on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum WireFormat {
    /// JSON (readable, the default).
    #[default]
    Json,
    /// The canonical binary codec (smaller, faster).
    Bincode,
}

/// The issuer's HTTP API.
#[derive(Clone, Debug)]
pub struct HttpClient {
    base: String,
    http: reqwest::Client,
    format: WireFormat,
    operator_token: Option<String>,
}

impl HttpClient {
    /// A client of the server at `base_url` (for example `http://127.0.0.1:8080`).
    pub fn new(base_url: &str) -> Result<Self, Error> {
        let base = base_url.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(Error::BadUrl(base_url.to_owned()));
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            // `scrip-server` closes connections silent for its read timeout (30 s by
            // default); dropping ours first avoids sending on one it is closing.
            .pool_idle_timeout(Duration::from_secs(20))
            .build()
            .map_err(|e| Error::Transport(e.to_string()))?;
        Ok(HttpClient {
            base,
            http,
            format: WireFormat::Json,
            operator_token: None,
        })
    }

    /// Sends and accepts bodies in `format`.
    pub fn with_format(mut self, format: WireFormat) -> Self {
        self.format = format;
        self
    }

    /// Authenticates operator routes with `token`.
    pub fn with_operator_token(mut self, token: impl Into<String>) -> Self {
        self.operator_token = Some(token.into());
        self
    }

    /// The server's base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn media(&self) -> &'static str {
        match self.format {
            WireFormat::Json => JSON,
            WireFormat::Bincode => BINCODE,
        }
    }

    fn encode<T: Message>(&self, value: &T) -> Result<Vec<u8>, Error> {
        match self.format {
            WireFormat::Json => serde_json::to_vec(value).map_err(|e| Error::Decode(e.to_string())),
            WireFormat::Bincode => Ok(codec::encode(value)?),
        }
    }

    fn operator_header(&self) -> Result<HeaderValue, Error> {
        let token = self
            .operator_token
            .as_deref()
            .ok_or(Error::NoOperatorToken)?;
        HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| Error::BadOperatorToken)
    }

    async fn answer<T: Message>(&self, response: reqwest::Response) -> Result<T, Error> {
        let status = response.status();
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| Error::Transport(e.to_string()))?;
        if !status.is_success() {
            let body: ErrorBody = serde_json::from_slice(&bytes).unwrap_or_else(|_| ErrorBody {
                code: ReasonCode::HttpError,
                message: String::from_utf8_lossy(&bytes).chars().take(500).collect(),
            });
            return Err(Error::Refused {
                status: status.as_u16(),
                code: body.code,
                message: body.message,
            });
        }
        if content_type.starts_with(BINCODE) {
            Ok(codec::decode_with_limit(&bytes, 64 << 20)?)
        } else {
            serde_json::from_slice(&bytes).map_err(|e| Error::Decode(e.to_string()))
        }
    }

    async fn post<Req: Message, Resp: Message>(
        &self,
        path: &str,
        body: &Req,
        operator: bool,
    ) -> Result<Resp, Error> {
        let mut request = self
            .http
            .post(format!("{}{path}", self.base))
            .header(CONTENT_TYPE, self.media())
            .header(ACCEPT, self.media())
            .body(self.encode(body)?);
        if operator {
            request = request.header(AUTHORIZATION, self.operator_header()?);
        }
        let response = request
            .send()
            .await
            .map_err(|e| Error::Transport(e.to_string()))?;
        self.answer(response).await
    }

    async fn get<Resp: Message>(&self, path: &str, operator: bool) -> Result<Resp, Error> {
        let mut request = self
            .http
            .get(format!("{}{path}", self.base))
            .header(ACCEPT, self.media());
        if operator {
            request = request.header(AUTHORIZATION, self.operator_header()?);
        }
        let response = request
            .send()
            .await
            .map_err(|e| Error::Transport(e.to_string()))?;
        self.answer(response).await
    }

    /// `GET /healthz`: whether the server answers.
    pub async fn health(&self) -> Result<(), Error> {
        let _: Done = self.get("/healthz", false).await?;
        Ok(())
    }

    /// `GET /metrics`: the Prometheus text.
    pub async fn metrics(&self) -> Result<String, Error> {
        self.http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .map_err(|e| Error::Transport(e.to_string()))?
            .text()
            .await
            .map_err(|e| Error::Transport(e.to_string()))
    }

    /// `GET /v1/keys`: the signed key directory (verify it against the pinned root).
    pub async fn key_directory(&self) -> Result<SignedKeyDirectory, Error> {
        self.get("/v1/keys", false).await
    }

    /// `GET /v1/revocations[?since=V]`: the issuer's signed revocation list, as the delta
    /// since version `since` (the version a client holds) or the full list. Apply it to a
    /// [`scrip_tokens::RevocationCache`], which verifies it against the key directory.
    pub async fn revocations(&self, since: Option<u64>) -> Result<RevocationList, Error> {
        match since {
            Some(version) => {
                self.get(&format!("/v1/revocations?since={version}"), false)
                    .await
            }
            None => self.get("/v1/revocations", false).await,
        }
    }

    /// `GET /v1/root-key`: the directory root key. Pin it from configuration where you
    /// can (`<data-dir>/root-key.pem` on the server); fetching it is trust on first use.
    pub async fn root_key(&self) -> Result<RootKey, Error> {
        self.get("/v1/root-key", false).await
    }

    /// `POST /v1/accounts`: opens an account for a self-signed device registration.
    pub async fn open_account(
        &self,
        registration: &DeviceRegistration,
    ) -> Result<AccountOpenedBody, Error> {
        self.post("/v1/accounts", registration, false).await
    }

    /// `POST /v1/devices`: adds a device approved by one already on the account.
    pub async fn enroll_device(
        &self,
        enrollment: &DeviceEnrollment,
    ) -> Result<AccountCertificate, Error> {
        self.post("/v1/devices", enrollment, false).await
    }

    /// `POST /v1/recoveries` (operator): a new device for an account whose devices are
    /// all lost, after the operator checked the customer's identity.
    pub async fn recover_account(
        &self,
        registration: &DeviceRegistration,
    ) -> Result<AccountCertificate, Error> {
        self.post("/v1/recoveries", registration, true).await
    }

    /// `POST /v1/merchants` (operator): registers a merchant's self-signed key.
    pub async fn register_merchant(
        &self,
        registration: &MerchantRegistration,
    ) -> Result<MerchantCertificate, Error> {
        self.post("/v1/merchants", registration, true).await
    }

    /// `POST /v1/deposits`.
    pub async fn deposit(&self, request: &DepositRequest) -> Result<DepositRecord, Error> {
        self.post("/v1/deposits", request, false).await
    }

    /// `POST /v1/deposit-confirmations`.
    pub async fn confirm_deposit(&self, confirmation: &DepositConfirmation) -> Result<(), Error> {
        let _: Done = self
            .post("/v1/deposit-confirmations", confirmation, false)
            .await?;
        Ok(())
    }

    /// `POST /v1/balance-certificates`: hands in unsent records and gets a certificate.
    pub async fn balance_certificate(
        &self,
        request: &BalanceCertificateRequest,
    ) -> Result<BalanceCertificate, Error> {
        self.post("/v1/balance-certificates", request, false).await
    }

    /// `POST /v2/balance-certificates`: hands in unsent records and gets a certificate,
    /// with the issuer's signed answer to each hand-in.
    pub async fn balance_certificate_answered(
        &self,
        request: &BalanceCertificateRequest,
    ) -> Result<BalanceCertificateAnswer, Error> {
        self.post("/v2/balance-certificates", request, false).await
    }

    /// `POST /v1/sync`: hands in records and confirmations without a certificate.
    pub async fn sync(&self, request: &SyncRequest) -> Result<SyncReport, Error> {
        self.post("/v1/sync", request, false).await
    }

    /// `POST /v1/withdrawals/blind`.
    pub async fn withdraw_blind(
        &self,
        request: &BlindWithdrawalRequest,
    ) -> Result<BlindWithdrawalResponse, Error> {
        self.post("/v1/withdrawals/blind", request, false).await
    }

    /// `POST /v1/withdrawals/identified`.
    pub async fn withdraw_identified(
        &self,
        request: &IdentifiedWithdrawalRequest,
    ) -> Result<IdentifiedWithdrawalResponse, Error> {
        self.post("/v1/withdrawals/identified", request, false)
            .await
    }

    /// `POST /v1/redemptions`: a merchant's batch.
    pub async fn redeem(&self, batch: &RedemptionBatch) -> Result<RedemptionReport, Error> {
        self.post("/v1/redemptions", batch, false).await
    }

    /// `POST /v1/merchant-statements`: a merchant's statement (verify it with
    /// `MerchantStatement::verify_for` before showing it).
    pub async fn merchant_statement(
        &self,
        request: &MerchantStatementRequest,
    ) -> Result<MerchantStatement, Error> {
        self.post("/v1/merchant-statements", request, false).await
    }

    /// `POST /v1/payouts`: pays out to the merchant's bank (verify the receipt with
    /// `PayoutReceipt::verify_for`). On `503 payout_unavailable` or a lost answer, send
    /// the same payout id and amount again, signed again.
    pub async fn payout(&self, request: &PayoutRequest) -> Result<PayoutReceipt, Error> {
        self.post("/v1/payouts", request, false).await
    }

    /// `POST /v1/refunds`: a merchant refunds a payment by record to the paying account.
    /// Check the receipt with [`scrip_tokens::RefundReceipt::verify_for`].
    pub async fn refund(&self, request: &RefundRequest) -> Result<RefundReceipt, Error> {
        self.post("/v1/refunds", request, false).await
    }

    /// `POST /v1/refund-withdrawals`: blind coins against a merchant's refund voucher.
    pub async fn withdraw_voucher(
        &self,
        request: &VoucherWithdrawalRequest,
    ) -> Result<BlindWithdrawalResponse, Error> {
        self.post("/v1/refund-withdrawals", request, false).await
    }

    /// `POST /v1/swaps`: coins in, blind signatures on new coins out, in one atomic step.
    /// Check the receipt with [`scrip_tokens::SwapReceipt::verify_for`]; after a lost
    /// answer send the very same request again.
    pub async fn swap(&self, request: &SwapRequest) -> Result<SwapReceipt, Error> {
        self.post("/v1/swaps", request, false).await
    }

    /// `POST /v1/device-swaps`: a swap signed by a device of the holder, the only way
    /// identified coins are swapped (`scrip_wallet::Wallet::sign_swap`). Check the
    /// receipt with [`scrip_tokens::SwapReceipt::verify_for`] against the inner swap;
    /// after a lost answer sign the same swap again and send that.
    pub async fn device_swap(&self, request: &DeviceSwapRequest) -> Result<SwapReceipt, Error> {
        self.post("/v1/device-swaps", request, false).await
    }

    /// `POST /v1/merchant-swaps`: a merchant takes the coin payments it accepted as new
    /// blind coins instead of account credit. Check the receipt with
    /// [`scrip_tokens::SwapReceipt::verify_for_merchant`]; after a lost answer send the
    /// same request again.
    pub async fn merchant_swap(&self, request: &MerchantSwapRequest) -> Result<SwapReceipt, Error> {
        self.post("/v1/merchant-swaps", request, false).await
    }

    /// `POST /v1/accounts/{id}/statement`.
    pub async fn statement(&self, request: &StatementRequest) -> Result<Statement, Error> {
        let path = format!("/v1/accounts/{}/statement", request.payload.account_id);
        self.post(&path, request, false).await
    }

    /// `GET /v1/coins/{spend_id}` ([`scrip_tokens::Coin::spend_id`], 64 hex digits).
    pub async fn coin_state(&self, spend_id: CoinSpendId) -> Result<CoinState, Error> {
        self.get(&format!("/v1/coins/{}", spend_id.to_hex()), false)
            .await
    }

    /// `POST /v1/coin-payments/state`: what became of the coin payment `receipt` names.
    pub async fn coin_payment_state(
        &self,
        receipt: &EndorsedCoinPayment,
    ) -> Result<CoinPaymentState, Error> {
        self.post("/v1/coin-payments/state", receipt, false).await
    }

    /// `GET /v1/fraud-log` (operator).
    pub async fn fraud_log(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<FraudLogPage, Error> {
        let mut path = format!("/v1/fraud-log?limit={limit}");
        if let Some(after) = after {
            path.push_str("&after=");
            path.push_str(after);
        }
        self.get(&path, true).await
    }

    /// `POST /v1/devices/{id}/revoke` (operator).
    pub async fn revoke_device(&self, device_id: DeviceId) -> Result<DeviceRevoked, Error> {
        let path = format!("/v1/devices/{device_id}/revoke");
        let mut request = self
            .http
            .post(format!("{}{path}", self.base))
            .header(ACCEPT, self.media())
            .header(AUTHORIZATION, self.operator_header()?);
        request = request.header(reqwest::header::CONTENT_LENGTH, 0);
        let response = request
            .send()
            .await
            .map_err(|e| Error::Transport(e.to_string()))?;
        self.answer(response).await
    }

    /// `GET /v1/frozen-accounts` (operator): frozen accounts in id order, after `after`.
    pub async fn frozen_accounts(
        &self,
        after: Option<AccountId>,
        limit: usize,
    ) -> Result<FrozenAccountsPage, Error> {
        let mut path = format!("/v1/frozen-accounts?limit={limit}");
        if let Some(after) = after {
            path.push_str(&format!("&after={after}"));
        }
        self.get(&path, true).await
    }

    /// `POST /v1/accounts/{id}/freeze` (operator).
    pub async fn freeze_account(
        &self,
        account_id: AccountId,
        reason: &str,
    ) -> Result<FrozenAccount, Error> {
        let path = format!("/v1/accounts/{account_id}/freeze");
        self.post(&path, &operator_reason(reason), true).await
    }

    /// `POST /v1/accounts/{id}/unfreeze` (operator).
    pub async fn unfreeze_account(
        &self,
        account_id: AccountId,
        reason: &str,
    ) -> Result<AccountUnfrozen, Error> {
        let path = format!("/v1/accounts/{account_id}/unfreeze");
        self.post(&path, &operator_reason(reason), true).await
    }

    /// `POST /v1/merchants/{id}/revoke` (operator).
    pub async fn revoke_merchant(
        &self,
        merchant_id: MerchantId,
        reason: &str,
    ) -> Result<MerchantRevoked, Error> {
        let path = format!("/v1/merchants/{merchant_id}/revoke");
        self.post(&path, &operator_reason(reason), true).await
    }

    /// `POST /v1/devices/{id}/reissue` (operator).
    pub async fn reissue_coins(
        &self,
        device_id: DeviceId,
        to: DeviceId,
    ) -> Result<ReissuedCoins, Error> {
        let path = format!("/v1/devices/{device_id}/reissue");
        self.post(&path, &ReissueRequest { to }, true).await
    }
}

fn operator_reason(reason: &str) -> OperatorReason {
    OperatorReason {
        reason: reason.to_owned(),
    }
}

fn merchant_error(e: Error) -> scrip_merchant::ClientError {
    match e {
        Error::Refused { code, message, .. } => {
            scrip_merchant::ClientError::Refused { code, message }
        }
        other => scrip_merchant::ClientError::Transport(other.to_string()),
    }
}

#[async_trait]
impl scrip_merchant::IssuerClient for HttpClient {
    async fn key_directory(&self) -> Result<SignedKeyDirectory, scrip_merchant::ClientError> {
        HttpClient::key_directory(self)
            .await
            .map_err(merchant_error)
    }

    async fn redeem(
        &self,
        batch: &RedemptionBatch,
    ) -> Result<RedemptionReport, scrip_merchant::ClientError> {
        HttpClient::redeem(self, batch)
            .await
            .map_err(merchant_error)
    }

    async fn revocations(
        &self,
        since: Option<u64>,
    ) -> Result<RevocationList, scrip_merchant::ClientError> {
        HttpClient::revocations(self, since)
            .await
            .map_err(merchant_error)
    }

    async fn merchant_statement(
        &self,
        request: &MerchantStatementRequest,
    ) -> Result<MerchantStatement, scrip_merchant::ClientError> {
        HttpClient::merchant_statement(self, request)
            .await
            .map_err(merchant_error)
    }

    async fn payout(
        &self,
        request: &PayoutRequest,
    ) -> Result<PayoutReceipt, scrip_merchant::ClientError> {
        HttpClient::payout(self, request)
            .await
            .map_err(merchant_error)
    }

    async fn merchant_swap(
        &self,
        request: &MerchantSwapRequest,
    ) -> Result<SwapReceipt, scrip_merchant::ClientError> {
        HttpClient::merchant_swap(self, request)
            .await
            .map_err(merchant_error)
    }
}
