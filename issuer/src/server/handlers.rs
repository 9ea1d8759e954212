//! One handler per route: a decoded, fresh request in, one issuer-core call, an answer out.

use scrip_tokens::ReasonCode;
use std::sync::Arc;
use std::time::Duration;

use scrip_stores::RecordStore;

use scrip_tokens::{
    AccountCertificate, AccountId, BalanceCertificate, BalanceCertificateRequest,
    BlindWithdrawalRequest, BlindWithdrawalResponse, CoinSpendId, DepositConfirmation,
    DepositRecord, DepositRequest, DeviceId, DeviceRegistration, DeviceSwapRequest,
    EndorsedCoinPayment, IdentifiedWithdrawalRequest, IdentifiedWithdrawalResponse,
    MerchantCertificate, MerchantId, MerchantRegistration, MerchantSwapRequest, ReceivedBatch,
    RedemptionReport, RefundReceipt, RefundRequest, StatementRequest, SwapOutcome, SwapReceipt,
    SwapReceiptPayload, SwapRequest, SyncReport, SyncRequest, Timestamp, VoucherWithdrawalRequest,
};
use serde::Deserialize;
use warp::http::StatusCode;
use warp::reply::Response;

use super::errors::ApiError;
use super::models::{reply, reply_bytes, Body, Format};
use super::{request_rng, AppState};
use crate::api::{
    AccountOpenedBody, AccountUnfrozen, BalanceCertificateAnswer, DeviceEnrollment, DeviceRevoked,
    Done, FraudLogItem, FraudLogPage, FrozenAccount, FrozenAccountsPage, MerchantRevoked,
    OperatorReason, ReissueRequest, ReissuedCoins,
};

/// `?since=<version>`: the delta since the version the client holds.
#[derive(Deserialize)]
pub struct RevocationsQuery {
    since: Option<u64>,
}

/// `GET /v1/revocations[?since=V]`: the signed revocation list, full or the delta since
/// `V` (see `server/revocations.rs` for what is signed when).
pub async fn revocations(
    query: RevocationsQuery,
    accept: Format,
    state: Arc<AppState>,
) -> Response {
    match state.revocations.list(&state, query.since).await {
        Ok(list) => match list.encoded(accept) {
            Ok(bytes) => reply_bytes(bytes, accept),
            Err(e) => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                ReasonCode::Encoding,
                format!("could not encode the answer: {e}"),
            )
            .into_response(),
        },
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// How long a signed key directory is served before it is signed again.
const DIRECTORY_TTL: Duration = Duration::from_secs(60);

pub async fn key_directory(accept: Format, state: Arc<AppState>) -> Response {
    let keys = state.issuer.keys();
    if let Some(directory) = state.cached_directory(state.now(), &keys, DIRECTORY_TTL) {
        return reply(&*directory, accept);
    }
    match state
        .sign_directory(DIRECTORY_TTL, &mut request_rng())
        .await
    {
        Ok(directory) => reply(&*directory, accept),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// `GET /readyz`: 200 while the store makes writes durable; 503 `store_unwritable` after
/// a failed write (a full disk) until a probe write succeeds again. In cluster mode also
/// 503 `keyring_error` while the server has served an older keyring than the published
/// one for longer than [`super::cluster::KEYRING_LAG_POLLS`] keyring polls (its keys
/// directory has not received the rotation): it does not know the new keys, so the load
/// balancer is to send requests elsewhere (those it still gets are served). `/healthz`
/// only says the process answers.
pub async fn readiness(state: Arc<AppState>) -> Response {
    match state.issuer.store().check_writable().await {
        Ok(()) => match state.cluster.as_ref().and_then(|node| node.keyring_lag()) {
            None => reply(&Done { ok: true }, Format::Json),
            Some((serving, published, lag)) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ReasonCode::KeyringError,
                format!(
                    "this server serves keyring epoch {serving}, but the cluster published \
                     epoch {published} (behind for {} s): its keys directory does not hold \
                     the published keyring yet",
                    lag.as_secs()
                ),
            )
            .into_response(),
        },
        Err(e @ scrip_stores::StoreError::Database { .. }) => {
            tracing::warn!(error = %e, "readiness: the database cannot write");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ReasonCode::StoreUnwritable,
                "the store cannot write: the database failed (see the server's log)",
            )
            .into_response()
        }
        Err(e) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ReasonCode::StoreUnwritable,
            format!("the store cannot write: {e}"),
        )
        .into_response(),
    }
}

pub async fn open_account(
    state: Arc<AppState>,
    request: DeviceRegistration,
    now: Timestamp,
) -> Result<AccountOpenedBody, ApiError> {
    let request = state.admit(&request, now).await?;
    let mut rng = request_rng();
    let opened = state
        .issuer
        .open_account_authenticated(request, now, &mut rng)
        .await?;
    tracing::info!(account = %opened.account_id, device = %opened.device_id, "account opened");
    Ok(opened.into())
}

pub async fn enroll_device(
    state: Arc<AppState>,
    request: DeviceEnrollment,
    now: Timestamp,
) -> Result<AccountCertificate, ApiError> {
    let request = state.admit(&request, now).await?;
    let mut rng = request_rng();
    Ok(state
        .issuer
        .add_device_authenticated(request, now, &mut rng)
        .await?)
}

pub async fn recover_account(
    state: Arc<AppState>,
    request: DeviceRegistration,
    now: Timestamp,
) -> Result<AccountCertificate, ApiError> {
    let request = state.admit(&request, now).await?;
    let mut rng = request_rng();
    Ok(state
        .issuer
        .recover_account_authenticated(request, now, &mut rng)
        .await?)
}

pub async fn register_merchant(
    state: Arc<AppState>,
    request: MerchantRegistration,
    now: Timestamp,
) -> Result<MerchantCertificate, ApiError> {
    let request = state.admit(&request, now).await?;
    let mut rng = request_rng();
    let certificate = state
        .issuer
        .register_merchant_authenticated(request, now, &mut rng)
        .await?;
    tracing::info!(merchant = %certificate.payload.merchant_id, "merchant registered");
    Ok(certificate)
}

pub async fn deposit(
    state: Arc<AppState>,
    request: DepositRequest,
    now: Timestamp,
) -> Result<DepositRecord, ApiError> {
    let request = state.admit(&request, now).await?;
    let mut rng = request_rng();
    Ok(state
        .issuer
        .deposit_authenticated(request, now, &mut rng)
        .await?)
}

pub async fn confirm_deposit(
    state: Arc<AppState>,
    request: DepositConfirmation,
    now: Timestamp,
) -> Result<Done, ApiError> {
    let request = state.admit(&request, now).await?;
    state
        .issuer
        .confirm_deposit_authenticated(request, now)
        .await?;
    Ok(Done { ok: true })
}

pub async fn balance_certificate(
    state: Arc<AppState>,
    request: BalanceCertificateRequest,
    now: Timestamp,
) -> Result<BalanceCertificate, ApiError> {
    let request = state.admit(&request, now).await?;
    let mut rng = request_rng();
    Ok(state
        .issuer
        .issue_balance_certificate_authenticated(request, now, &mut rng)
        .await?
        .0)
}

/// `POST /v2/balance-certificates`: the certificate and the signed answer to each hand-in.
pub async fn balance_certificate_answered(
    state: Arc<AppState>,
    request: BalanceCertificateRequest,
    now: Timestamp,
) -> Result<BalanceCertificateAnswer, ApiError> {
    let request = state.admit(&request, now).await?;
    let mut rng = request_rng();
    let (certificate, report) = state
        .issuer
        .issue_balance_certificate_authenticated(request, now, &mut rng)
        .await?;
    let hand_ins = state.issuer.sign_answer(report, now, &mut rng)?;
    Ok(BalanceCertificateAnswer {
        certificate,
        hand_ins,
    })
}

pub async fn sync(
    state: Arc<AppState>,
    request: SyncRequest,
    now: Timestamp,
) -> Result<SyncReport, ApiError> {
    let request = state.admit(&request, now).await?;
    let report = state.issuer.sync_authenticated(request, now).await?;
    Ok(state.issuer.sign_answer(report, now, &mut request_rng())?)
}

pub async fn withdraw_blind(
    state: Arc<AppState>,
    request: BlindWithdrawalRequest,
    now: Timestamp,
) -> Result<BlindWithdrawalResponse, ApiError> {
    let request = state.admit(&request, now).await?;
    let mut rng = request_rng();
    Ok(state
        .issuer
        .withdraw_blind_authenticated(request, now, &mut rng)
        .await?)
}

pub async fn withdraw_identified(
    state: Arc<AppState>,
    request: IdentifiedWithdrawalRequest,
    now: Timestamp,
) -> Result<IdentifiedWithdrawalResponse, ApiError> {
    let request = state.admit(&request, now).await?;
    let mut rng = request_rng();
    Ok(state
        .issuer
        .withdraw_identified_authenticated(request, now, &mut rng)
        .await?)
}

/// `POST /v1/refunds`: a merchant refunds a payment by record to the account.
pub async fn refund(
    state: Arc<AppState>,
    request: RefundRequest,
    now: Timestamp,
) -> Result<RefundReceipt, ApiError> {
    let authenticated = state.admit(&request, now).await?;
    let receipt = state
        .issuer
        .refund_authenticated(authenticated, now)
        .await?;
    tracing::info!(
        merchant = %receipt.merchant_id,
        refund = %receipt.refund_id,
        amount = %receipt.amount,
        "refund to an account"
    );
    Ok(state.issuer.sign_answer(receipt, now, &mut request_rng())?)
}

/// `POST /v1/refund-withdrawals`: blind coins against a merchant's refund voucher. No
/// freshness window and no nonce: a voucher may be days old when its holder comes online,
/// and the same request again is answered the same (the refund id is claimed once). The
/// voucher's signature is checked before anything is signed or stored.
pub async fn withdraw_voucher(
    state: Arc<AppState>,
    request: VoucherWithdrawalRequest,
    now: Timestamp,
) -> Result<BlindWithdrawalResponse, ApiError> {
    let authenticated = state.issuer.authenticate(&request).await?;
    let mut rng = request_rng();
    let answer = state
        .issuer
        .withdraw_voucher_authenticated(authenticated, now, &mut rng)
        .await?;
    tracing::info!(
        merchant = %request.voucher.payload.merchant_id,
        refund = %request.voucher.payload.refund_id,
        coins = answer.signatures.len(),
        "refund voucher withdrawn"
    );
    Ok(answer)
}

/// `POST /v1/swaps`: coins in, new blind coins out. Like a voucher withdrawal it has no
/// freshness window and no nonce (a retry after a lost answer is the same request, and
/// gets the same answer; a holder may come online days after taking coins), and no signer
/// but the coins' issuer: every coin's signature is checked before anything is read,
/// signed or stored. The answer, swapped or double spent, is signed.
pub async fn swap(
    state: Arc<AppState>,
    request: SwapRequest,
    now: Timestamp,
) -> Result<SwapReceipt, ApiError> {
    let mut rng = request_rng();
    let receipt = state.issuer.swap(&request, now, &mut rng).await?;
    answer_swap(&state, receipt, &request, None, now, &mut rng)
}

/// `POST /v1/device-swaps`: a swap signed by a device of the holder, the only way
/// identified coins are swapped. Fresh-checked with a nonce like every device request; a
/// retry after a lost answer signs the same swap again (same request key), and gets the
/// same answer.
pub async fn device_swap(
    state: Arc<AppState>,
    request: DeviceSwapRequest,
    now: Timestamp,
) -> Result<SwapReceipt, ApiError> {
    let authenticated = state.admit(&request, now).await?;
    let mut rng = request_rng();
    let receipt = state
        .issuer
        .device_swap_authenticated(authenticated, now, &mut rng)
        .await?;
    let sender = (request.payload.account_id, request.payload.device_id);
    answer_swap(
        &state,
        receipt,
        &request.payload.swap,
        Some(sender),
        now,
        &mut rng,
    )
}

/// Counts and logs a holder's swap (with the account and device of a device swap: the
/// trail of who made identified coins untraceable), and signs its answer.
fn answer_swap(
    state: &AppState,
    receipt: SwapReceiptPayload,
    request: &SwapRequest,
    device: Option<(AccountId, DeviceId)>,
    now: Timestamp,
    rng: &mut rand::rngs::StdRng,
) -> Result<SwapReceipt, ApiError> {
    let (swapped, outcome) = match &receipt.outcome {
        SwapOutcome::Swapped { .. } => (true, "swapped"),
        SwapOutcome::DoubleSpent { .. } => (false, "double_spent"),
    };
    state
        .metrics
        .swap(swapped, request.coins.len(), request.outputs.len());
    tracing::info!(
        coins = request.coins.len(),
        outputs = request.outputs.len(),
        identified = request.coins.iter().filter(|c| c.holder().is_some()).count(),
        account = ?device.map(|(account, _)| account.to_string()),
        device = ?device.map(|(_, device)| device.to_string()),
        outcome,
        "swap"
    );
    Ok(state.issuer.sign_answer(receipt, now, rng)?)
}

/// `POST /v1/merchant-swaps`: a merchant takes coin payments it accepted as new blind
/// coins. Signed by the merchant and checked before anything is read, signed or stored;
/// not fresh-checked and no nonce, like `POST /v1/swaps`: the same request again is
/// answered the same (idempotent by its request key), so a retry after a lost answer
/// sends the same bytes.
pub async fn merchant_swap(
    state: Arc<AppState>,
    request: MerchantSwapRequest,
    now: Timestamp,
) -> Result<SwapReceipt, ApiError> {
    let authenticated = state.issuer.authenticate(&request).await?;
    let mut rng = request_rng();
    let receipt = state
        .issuer
        .merchant_swap_authenticated(authenticated, now, &mut rng)
        .await?;
    let coins: usize = request
        .payload
        .payments
        .iter()
        .map(|p| p.payload.payment.coins.len())
        .sum();
    let swapped = matches!(receipt.outcome, SwapOutcome::Swapped { .. });
    state
        .metrics
        .swap(swapped, coins, request.payload.outputs.len());
    tracing::info!(
        merchant = %request.payload.merchant_id,
        payments = request.payload.payments.len(),
        coins,
        swapped,
        "merchant swap"
    );
    Ok(state.issuer.sign_answer(receipt, now, &mut rng)?)
}

pub async fn redeem(
    state: Arc<AppState>,
    request: ReceivedBatch<'static>,
    now: Timestamp,
) -> Result<RedemptionReport, ApiError> {
    let authenticated = state.admit(&request, now).await?;
    let report = state
        .issuer
        .redeem_authenticated(authenticated, now)
        .await?;
    let report = state.issuer.sign_answer(report, now, &mut request_rng())?;
    state.metrics.redemptions(&report.payload.outcomes);
    tracing::info!(
        merchant = %request.batch().payload.merchant_id,
        items = report.payload.outcomes.len(),
        "redemption batch"
    );
    Ok(report)
}

/// `POST /v1/merchant-statements`: a merchant's signed statement request.
pub async fn merchant_statement(
    state: Arc<AppState>,
    request: scrip_tokens::MerchantStatementRequest,
    now: Timestamp,
) -> Result<scrip_tokens::MerchantStatement, ApiError> {
    let authenticated = state.admit(&request, now).await?;
    let statement = state
        .issuer
        .merchant_statement_authenticated(authenticated, now)
        .await?;
    Ok(state
        .issuer
        .sign_answer(statement, now, &mut request_rng())?)
}

/// `POST /v1/payouts`: a merchant's signed payout request, paid through the server's
/// payout sink.
pub async fn payout(
    state: Arc<AppState>,
    request: scrip_tokens::PayoutRequest,
    now: Timestamp,
) -> Result<scrip_tokens::PayoutReceipt, ApiError> {
    let authenticated = state.admit(&request, now).await?;
    let receipt = state
        .issuer
        .payout_authenticated(authenticated, state.payouts.as_ref(), now)
        .await?;
    tracing::info!(
        merchant = %receipt.merchant_id,
        payout = %receipt.payout_id,
        amount = %receipt.amount,
        state = ?receipt.state,
        "payout"
    );
    Ok(state.issuer.sign_answer(receipt, now, &mut request_rng())?)
}

pub async fn statement(
    account_id: AccountId,
    body: Body,
    _operator: Option<String>,
    state: Arc<AppState>,
) -> Response {
    let request: StatementRequest = match body.decode() {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    if request.payload.account_id != account_id {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            ReasonCode::PathMismatch,
            "the request names another account than the path",
        )
        .into_response();
    }
    let now = state.now();
    let request = match state.admit(&request, now).await {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let statement = state
        .issuer
        .statement_authenticated(request, now)
        .await
        .and_then(|s| state.issuer.sign_answer(s, now, &mut request_rng()));
    match statement {
        Ok(statement) => reply(&statement, body.accept),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// `POST /v1/coin-payments/state`: body = the receipt (`EndorsedCoinPayment`); a read.
pub async fn coin_payment_state(
    body: Body,
    _operator: Option<String>,
    state: Arc<AppState>,
) -> Response {
    let receipt: EndorsedCoinPayment = match body.decode() {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    match state.issuer.coin_payment_state(&receipt).await {
        Ok(s) => reply(&s, body.accept),
        Err(e) => ApiError::from(e).into_response(),
    }
}

pub async fn coin_state(spend_id: CoinSpendId, accept: Format, state: Arc<AppState>) -> Response {
    match state.issuer.coin_state(spend_id).await {
        Ok(s) => reply(&s, accept),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// `?after=<hex key>&limit=<n>`.
#[derive(Deserialize)]
pub struct FraudLogQuery {
    after: Option<String>,
    limit: Option<usize>,
}

pub async fn fraud_log(
    query: FraudLogQuery,
    accept: Format,
    operator: Option<String>,
    state: Arc<AppState>,
) -> Response {
    if !state.is_operator(operator.as_deref()) {
        return ApiError::unauthorized_operator().into_response();
    }
    let after = match query.after.as_deref().map(hex::decode).transpose() {
        Ok(a) => a,
        Err(_) => {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                ReasonCode::InvalidQuery,
                "after must be a hex key",
            )
            .into_response()
        }
    };
    let limit = query.limit.unwrap_or(100).clamp(1, crate::MAX_PAGE);
    match state.issuer.fraud_log(after.as_deref(), limit).await {
        Ok(entries) => reply(
            &FraudLogPage {
                entries: entries
                    .into_iter()
                    .map(|(key, entry)| FraudLogItem {
                        key: hex::encode(key),
                        entry,
                    })
                    .collect(),
            },
            accept,
        ),
        Err(e) => ApiError::from(e).into_response(),
    }
}

pub async fn revoke_device(
    device_id: DeviceId,
    accept: Format,
    operator: Option<String>,
    state: Arc<AppState>,
) -> Response {
    if !state.is_operator(operator.as_deref()) {
        return ApiError::unauthorized_operator().into_response();
    }
    match state.issuer.revoke_device(device_id, state.now()).await {
        Ok(revoked_at) => {
            tracing::warn!(device = %device_id, "device revoked");
            super::revocations::publish_now(&state).await;
            reply(
                &DeviceRevoked {
                    device_id,
                    revoked_at,
                },
                accept,
            )
        }
        Err(e) => ApiError::operator_lookup(e).into_response(),
    }
}

pub async fn reissue(
    device_id: DeviceId,
    body: Body,
    operator: Option<String>,
    state: Arc<AppState>,
) -> Response {
    if !state.is_operator(operator.as_deref()) {
        return ApiError::unauthorized_operator().into_response();
    }
    let request: ReissueRequest = match body.decode() {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let mut rng = request_rng();
    match state
        .issuer
        .reissue_identified_coins(device_id, request.to, state.now(), &mut rng)
        .await
    {
        Ok(coins) => {
            super::revocations::publish_now(&state).await;
            reply(&ReissuedCoins { coins }, body.accept)
        }
        Err(e) => ApiError::operator_lookup(e).into_response(),
    }
}

/// `?after=<account id>&limit=<n>`.
#[derive(Deserialize)]
pub struct FrozenAccountsQuery {
    after: Option<String>,
    limit: Option<usize>,
}

pub async fn frozen_accounts(
    query: FrozenAccountsQuery,
    accept: Format,
    operator: Option<String>,
    state: Arc<AppState>,
) -> Response {
    if !state.is_operator(operator.as_deref()) {
        return ApiError::unauthorized_operator().into_response();
    }
    let after = match query
        .after
        .as_deref()
        .map(str::parse::<AccountId>)
        .transpose()
    {
        Ok(a) => a,
        Err(_) => {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                ReasonCode::InvalidQuery,
                "after must be an account id",
            )
            .into_response()
        }
    };
    let limit = query.limit.unwrap_or(100).clamp(1, crate::MAX_PAGE);
    match state.issuer.frozen_accounts(after, limit).await {
        Ok(accounts) => reply(
            &FrozenAccountsPage {
                accounts: accounts
                    .into_iter()
                    .map(|(account_id, mark)| FrozenAccount {
                        account_id,
                        frozen_at: mark.at,
                        reason: mark.reason,
                    })
                    .collect(),
            },
            accept,
        ),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// The operator token, then the `{reason}` body: `Err` is the refusal to send.
fn operator_reason(
    body: &Body,
    operator: Option<&str>,
    state: &AppState,
) -> Result<OperatorReason, ApiError> {
    if !state.is_operator(operator) {
        return Err(ApiError::unauthorized_operator());
    }
    body.decode()
}

pub async fn freeze_account(
    account_id: AccountId,
    body: Body,
    operator: Option<String>,
    state: Arc<AppState>,
) -> Response {
    let request = match operator_reason(&body, operator.as_deref(), &state) {
        Ok(r) => r,
        Err(refusal) => return refusal.into_response(),
    };
    match state
        .issuer
        .freeze_account(account_id, &request.reason, state.now())
        .await
    {
        Ok(mark) => {
            super::revocations::publish_now(&state).await;
            reply(
                &FrozenAccount {
                    account_id,
                    frozen_at: mark.at,
                    reason: mark.reason,
                },
                body.accept,
            )
        }
        Err(e) => ApiError::operator_lookup(e).into_response(),
    }
}

pub async fn unfreeze_account(
    account_id: AccountId,
    body: Body,
    operator: Option<String>,
    state: Arc<AppState>,
) -> Response {
    let request = match operator_reason(&body, operator.as_deref(), &state) {
        Ok(r) => r,
        Err(refusal) => return refusal.into_response(),
    };
    match state
        .issuer
        .unfreeze_account(account_id, &request.reason, state.now())
        .await
    {
        Ok(doc) => {
            super::revocations::publish_now(&state).await;
            reply(
                &AccountUnfrozen {
                    account_id,
                    frozen_at: doc.frozen.at,
                    frozen_reason: doc.frozen.reason,
                    unfrozen_at: doc.at,
                    reason: doc.reason,
                },
                body.accept,
            )
        }
        Err(e) => ApiError::operator_lookup(e).into_response(),
    }
}

pub async fn revoke_merchant(
    merchant_id: MerchantId,
    body: Body,
    operator: Option<String>,
    state: Arc<AppState>,
) -> Response {
    let request = match operator_reason(&body, operator.as_deref(), &state) {
        Ok(r) => r,
        Err(refusal) => return refusal.into_response(),
    };
    match state
        .issuer
        .revoke_merchant(merchant_id, &request.reason, state.now())
        .await
    {
        Ok(mark) => {
            super::revocations::publish_now(&state).await;
            reply(
                &MerchantRevoked {
                    merchant_id,
                    revoked_at: mark.at,
                    reason: mark.reason,
                },
                body.accept,
            )
        }
        Err(e) => ApiError::operator_lookup(e).into_response(),
    }
}
