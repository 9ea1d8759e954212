//! The routes. Each signed route: `POST`, body decoded by [`Body`], freshness checked by
//! the [`ReplayGuard`](super::ReplayGuard), then its handler; answers are encoded in the
//! negotiated format and refusals are JSON `{code, message}`.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut};
use futures_util::StreamExt;
use scrip_stores::RecordStore;
use scrip_tokens::{AccountId, CoinSpendId, DeviceId, MerchantId, Message, Timestamp};
use serde::de::DeserializeOwned;
use serde::Serialize;
use warp::filters::BoxedFilter;
use warp::reply::Response;
use warp::{Filter, Rejection};

use super::errors::{self, ApiError};
use super::handlers;
use super::models::{reply, Body, Format};
use super::{AppState, SMALL_BODY_BYTES};
use tokio::sync::OwnedSemaphorePermit;

/// Whether a route needs the operator token.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Devices and merchants: the signed body is the authentication.
    Signed,
    /// The operator token, and the body is fresh and signed where it is a token.
    Operator,
}

/// Every route, with the rejection handler and request metrics.
pub fn routes(
    state: Arc<AppState>,
) -> impl Filter<Extract = (impl warp::Reply,), Error = Infallible> + Clone + Send + Sync + 'static
{
    let s = &state;
    let metrics = Arc::clone(&state.metrics);
    let log = warp::log::custom(move |info: warp::log::Info<'_>| {
        metrics.request(info.method().as_str(), info.path(), info.status().as_u16());
        tracing::info!(
            method = %info.method(),
            path = info.path(),
            status = info.status().as_u16(),
            micros = u64::try_from(info.elapsed().as_micros()).unwrap_or(u64::MAX),
            "request"
        );
    });

    let health = warp::path!("healthz")
        .and(get_or_head())
        .map(|| reply(&crate::api::Done { ok: true }, Format::Json))
        .boxed();
    let ready = warp::path!("readyz")
        .and(get_or_head())
        .and(with(s))
        .then(handlers::readiness)
        .boxed();
    let metrics_route = warp::path!("metrics")
        .and(get_or_head())
        .and(with(s))
        .map(|state: Arc<AppState>| {
            let text = state.metrics.render(&state.issuer.store().stats());
            let mut response = Response::new(text.into());
            response.headers_mut().insert(
                warp::http::header::CONTENT_TYPE,
                warp::http::HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            response
        })
        .boxed();
    let keys = warp::path!("v1" / "keys")
        .and(get_or_head())
        .and(accept())
        .and(with(s))
        .then(handlers::key_directory)
        .boxed();
    let revocations = warp::path!("v1" / "revocations")
        .and(get_or_head())
        .and(warp::query::<handlers::RevocationsQuery>())
        .and(accept())
        .and(with(s))
        .then(handlers::revocations)
        .boxed();
    let root_key = warp::path!("v1" / "root-key")
        .and(get_or_head())
        .and(accept())
        .and(with(s))
        .map(|accept: Format, state: Arc<AppState>| {
            let key = state.issuer.keys().root.verifying_key().clone();
            reply(&crate::api::RootKey { key }, accept)
        })
        .boxed();
    let coin = warp::path!("v1" / "coins" / CoinSpendId)
        .and(get_or_head())
        .and(accept())
        .and(with(s))
        .then(handlers::coin_state)
        .boxed();
    let coin_payment = warp::path!("v1" / "coin-payments" / "state")
        .and(warp::post())
        .and(body(s))
        .and(with(s))
        .then(handlers::coin_payment_state)
        .boxed();
    let fraud_log = warp::path!("v1" / "fraud-log")
        .and(get_or_head())
        .and(warp::query::<handlers::FraudLogQuery>())
        .and(accept())
        .and(operator_token())
        .and(with(s))
        .then(handlers::fraud_log)
        .boxed();
    let revoke = warp::path!("v1" / "devices" / DeviceId / "revoke")
        .and(warp::post())
        .and(accept())
        .and(operator_token())
        .and(with(s))
        .then(handlers::revoke_device)
        .boxed();
    let reissue = warp::path!("v1" / "devices" / DeviceId / "reissue")
        .and(warp::post())
        .and(body(s))
        .and(with(s))
        .then(handlers::reissue)
        .boxed();
    let frozen_accounts = warp::path!("v1" / "frozen-accounts")
        .and(get_or_head())
        .and(warp::query::<handlers::FrozenAccountsQuery>())
        .and(accept())
        .and(operator_token())
        .and(with(s))
        .then(handlers::frozen_accounts)
        .boxed();
    let freeze = warp::path!("v1" / "accounts" / AccountId / "freeze")
        .and(warp::post())
        .and(body(s))
        .and(with(s))
        .then(handlers::freeze_account)
        .boxed();
    let unfreeze = warp::path!("v1" / "accounts" / AccountId / "unfreeze")
        .and(warp::post())
        .and(body(s))
        .and(with(s))
        .then(handlers::unfreeze_account)
        .boxed();
    let revoke_merchant = warp::path!("v1" / "merchants" / MerchantId / "revoke")
        .and(warp::post())
        .and(body(s))
        .and(with(s))
        .then(handlers::revoke_merchant)
        .boxed();
    let statement = warp::path!("v1" / "accounts" / AccountId / "statement")
        .and(warp::post())
        .and(body(s))
        .and(with(s))
        .then(handlers::statement)
        .boxed();

    let signed_routes = signed(
        s,
        warp::path!("v1" / "accounts").boxed(),
        Access::Signed,
        handlers::open_account,
    )
    .or(signed(
        s,
        warp::path!("v1" / "devices").boxed(),
        Access::Signed,
        handlers::enroll_device,
    ))
    .unify()
    .or(signed(
        s,
        warp::path!("v1" / "recoveries").boxed(),
        Access::Operator,
        handlers::recover_account,
    ))
    .unify()
    .or(signed(
        s,
        warp::path!("v1" / "merchants").boxed(),
        Access::Operator,
        handlers::register_merchant,
    ))
    .unify()
    .or(signed(
        s,
        warp::path!("v1" / "deposits").boxed(),
        Access::Signed,
        handlers::deposit,
    ))
    .unify()
    .or(signed(
        s,
        warp::path!("v1" / "deposit-confirmations").boxed(),
        Access::Signed,
        handlers::confirm_deposit,
    ))
    .unify()
    .or(signed(
        s,
        warp::path!("v1" / "balance-certificates").boxed(),
        Access::Signed,
        handlers::balance_certificate,
    ))
    .unify()
    .or(signed(
        s,
        warp::path!("v2" / "balance-certificates").boxed(),
        Access::Signed,
        handlers::balance_certificate_answered,
    ))
    .unify()
    .or(signed(
        s,
        warp::path!("v1" / "sync").boxed(),
        Access::Signed,
        handlers::sync,
    ))
    .unify()
    .or(signed(
        s,
        warp::path!("v1" / "withdrawals" / "blind").boxed(),
        Access::Signed,
        handlers::withdraw_blind,
    ))
    .unify()
    .or(signed(
        s,
        warp::path!("v1" / "withdrawals" / "identified").boxed(),
        Access::Signed,
        handlers::withdraw_identified,
    ))
    .unify()
    .or(signed_decoding(
        s,
        warp::path!("v1" / "redemptions").boxed(),
        Access::Signed,
        Body::received_batch,
        handlers::redeem,
    ))
    .unify()
    .or(signed(
        s,
        warp::path!("v1" / "merchant-statements").boxed(),
        Access::Signed,
        handlers::merchant_statement,
    ))
    .unify()
    .or(signed(
        s,
        warp::path!("v1" / "refunds").boxed(),
        Access::Signed,
        handlers::refund,
    ))
    .unify()
    .or(signed(
        s,
        warp::path!("v1" / "payouts").boxed(),
        Access::Signed,
        handlers::payout,
    ))
    .unify()
    .or(signed(
        s,
        warp::path!("v1" / "refund-withdrawals").boxed(),
        Access::Signed,
        handlers::withdraw_voucher,
    ))
    .unify()
    .or(signed(
        s,
        warp::path!("v1" / "swaps").boxed(),
        Access::Signed,
        handlers::swap,
    ))
    .unify()
    .or(signed(
        s,
        warp::path!("v1" / "merchant-swaps").boxed(),
        Access::Signed,
        handlers::merchant_swap,
    ))
    .unify()
    .or(signed(
        s,
        warp::path!("v1" / "device-swaps").boxed(),
        Access::Signed,
        handlers::device_swap,
    ))
    .unify()
    .boxed();

    health
        .or(ready)
        .unify()
        .or(metrics_route)
        .unify()
        .or(keys)
        .unify()
        .or(revocations)
        .unify()
        .or(root_key)
        .unify()
        .or(coin)
        .unify()
        .or(coin_payment)
        .unify()
        .or(fraud_log)
        .unify()
        .or(revoke)
        .unify()
        .or(reissue)
        .unify()
        .or(statement)
        .unify()
        .or(frozen_accounts)
        .unify()
        .or(freeze)
        .unify()
        .or(unfreeze)
        .unify()
        .or(revoke_merchant)
        .unify()
        .or(signed_routes)
        .unify()
        .recover(errors::recover)
        .unify()
        .with(log)
}

/// `GET`, or `HEAD` for the same route (hyper sends the head of the answer and no body).
fn get_or_head() -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::get().or(warp::head()).unify()
}

fn with(
    state: &Arc<AppState>,
) -> impl Filter<Extract = (Arc<AppState>,), Error = Infallible> + Clone {
    let state = Arc::clone(state);
    warp::any().map(move || Arc::clone(&state))
}

fn accept() -> impl Filter<Extract = (Format,), Error = Infallible> + Clone {
    warp::header::optional::<String>("accept")
        .or(warp::any().map(|| None))
        .unify()
        .map(|h: Option<String>| Format::of_accept(h.as_deref()))
}

/// The operator token, from `Authorization: Bearer` or `X-Scrip-Operator`.
fn operator_token() -> impl Filter<Extract = (Option<String>,), Error = Infallible> + Clone {
    let authorization = warp::header::optional::<String>("authorization")
        .or(warp::any().map(|| None))
        .unify();
    let custom = warp::header::optional::<String>(crate::api::OPERATOR_HEADER)
        .or(warp::any().map(|| None))
        .unify();
    authorization
        .and(custom)
        .map(|auth: Option<String>, custom: Option<String>| {
            auth.and_then(|a| {
                // The scheme is case-insensitive (RFC 7235).
                let (scheme, token) = a.split_once(' ')?;
                scheme
                    .eq_ignore_ascii_case("bearer")
                    .then(|| token.trim().to_owned())
            })
            .or(custom.map(|c| c.trim().to_owned()))
        })
}

/// Where a body's bytes are accounted while it is read: nowhere for a small one (every
/// connection may hold one), the server's body budget for a larger one.
#[derive(Clone)]
struct BodyAccount {
    budget: Option<Arc<tokio::sync::Semaphore>>,
    metrics: Arc<super::Metrics>,
}

/// A request body read so far and its share of the body budget.
struct ReadBody {
    bytes: bytes::Bytes,
    reservation: Option<OwnedSemaphorePermit>,
}

/// The whole body, read within `deadline` and at most `limit` bytes (the Content-Length
/// limit is checked first; this bounds what is buffered whatever the client sends). A body
/// over [`SMALL_BODY_BYTES`] reserves each chunk from the server's body budget as it
/// arrives, or is refused with `503 busy`: what senders who have not authenticated yet can
/// make the server buffer is bounded, and holding the budget takes sending the bytes.
fn body_bytes(
    state: &Arc<AppState>,
) -> impl Filter<Extract = (ReadBody,), Error = Rejection> + Clone {
    let (limit, deadline) = (state.max_body_bytes, state.read_timeout);
    let (budget, metrics) = (Arc::clone(&state.body_budget), Arc::clone(&state.metrics));
    // `content_length_limit` ran first: the header is there and within the limit.
    warp::header::<u64>("content-length")
        .and(warp::body::stream())
        .and_then(move |length: u64, stream| {
            let account = BodyAccount {
                budget: (length > SMALL_BODY_BYTES as u64).then(|| Arc::clone(&budget)),
                metrics: Arc::clone(&metrics),
            };
            read_body(stream, limit, deadline, account)
        })
}

async fn read_body<S, B>(
    stream: S,
    limit: usize,
    deadline: Duration,
    account: BodyAccount,
) -> Result<ReadBody, Rejection>
where
    S: futures_util::Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let read = async move {
        let mut stream = std::pin::pin!(stream);
        // Chunks as they arrived, joined once the body is complete: a body still arriving
        // holds what it sent and no more (a growing buffer would hold up to twice that).
        let mut chunks: Vec<bytes::Bytes> = Vec::new();
        let mut received: usize = 0;
        let mut reservation: Option<OwnedSemaphorePermit> = None;
        while let Some(chunk) = stream.next().await {
            let mut chunk = chunk.map_err(|_| warp::reject::custom(errors::BodyUnreadable))?;
            if received.saturating_add(chunk.remaining()) > limit {
                return Err(warp::reject::custom(errors::BodyTooLarge));
            }
            if let Some(budget) = &account.budget {
                let permits = u32::try_from(chunk.remaining()).unwrap_or(u32::MAX);
                match Arc::clone(budget).try_acquire_many_owned(permits) {
                    Ok(more) => match reservation.as_mut() {
                        Some(held) => held.merge(more),
                        None => reservation = Some(more),
                    },
                    Err(_) => {
                        account.metrics.body_refused();
                        return Err(warp::reject::custom(errors::BodyBudgetExhausted));
                    }
                }
            }
            received += chunk.remaining();
            chunks.push(chunk.copy_to_bytes(chunk.remaining()));
        }
        let bytes = match chunks.len() {
            1 => chunks.swap_remove(0),
            _ => {
                let mut body = bytes::BytesMut::with_capacity(received);
                for chunk in chunks {
                    body.put(chunk);
                }
                body.freeze()
            }
        };
        Ok(ReadBody { bytes, reservation })
    };
    match tokio::time::timeout(deadline, read).await {
        Ok(result) => result,
        Err(_) => Err(warp::reject::custom(errors::BodyTimeout)),
    }
}

fn body(state: &Arc<AppState>) -> BoxedFilter<(Body, Option<String>)> {
    let limit = state.max_body_bytes;
    let content_type = warp::header::optional::<String>("content-type")
        .or(warp::any().map(|| None))
        .unify();
    content_type
        .and(accept())
        .and(operator_token())
        .and(warp::body::content_length_limit(limit as u64))
        .and(body_bytes(state))
        .map(
            move |ct: Option<String>, accept: Format, op: Option<String>, read: ReadBody| {
                (
                    Body {
                        content: Format::of_content_type(ct.as_deref()),
                        accept,
                        bytes: read.bytes,
                        limit,
                        _reservation: read.reservation,
                    },
                    op,
                )
            },
        )
        .untuple_one()
        .boxed()
}

/// A signed `POST` route: check the operator token where needed, decode, handle. Each
/// handler starts with [`AppState::admit`] (time, signature, then nonce).
fn signed<Req, Resp, H, Fut>(
    state: &Arc<AppState>,
    path: BoxedFilter<()>,
    access: Access,
    handler: H,
) -> BoxedFilter<(Response,)>
where
    Req: Message + DeserializeOwned + Send + 'static,
    Resp: Message + Serialize + Send + 'static,
    H: Fn(Arc<AppState>, Req, Timestamp) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Resp, ApiError>> + Send + 'static,
{
    signed_decoding(state, path, access, Body::decode::<Req>, handler)
}

/// [`signed`] with the body decoded by `decode`: a redemption batch is decoded as a
/// [`scrip_tokens::ReceivedBatch`], whose digests come from the bytes received.
fn signed_decoding<Req, Resp, H, Fut>(
    state: &Arc<AppState>,
    path: BoxedFilter<()>,
    access: Access,
    decode: fn(&Body) -> Result<Req, ApiError>,
    handler: H,
) -> BoxedFilter<(Response,)>
where
    Req: Send + 'static,
    Resp: Message + Serialize + Send + 'static,
    H: Fn(Arc<AppState>, Req, Timestamp) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Resp, ApiError>> + Send + 'static,
{
    path.and(warp::post())
        .and(body(state))
        .and(with(state))
        .then(
            move |body: Body, operator: Option<String>, state: Arc<AppState>| {
                let handler = handler.clone();
                async move {
                    if access == Access::Operator && !state.is_operator(operator.as_deref()) {
                        return ApiError::unauthorized_operator().into_response();
                    }
                    let request = match decode(&body) {
                        Ok(r) => r,
                        Err(e) => return e.into_response(),
                    };
                    let now = state.now();
                    match handler(Arc::clone(&state), request, now).await {
                        Ok(answer) => reply(&answer, body.accept),
                        Err(e) => e.into_response(),
                    }
                }
            },
        )
        .boxed()
}
