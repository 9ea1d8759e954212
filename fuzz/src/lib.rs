//! What the fuzz targets (`fuzz_targets/*.rs`) and the seed generator
//! (`examples/gen_seeds.rs`) share: the list of token and HTTP body types, the checks run
//! on one input, and a deterministic merchant with one open offer.
//!
//! A failed assertion here is a finding: libFuzzer reports it as a crash.

use std::sync::OnceLock;

use rand::rngs::StdRng;
use rand::SeedableRng;
use scrip_issuer::api::{DeviceEnrollment, ReissueRequest};
use scrip_merchant::{Merchant, MerchantConfig};
use scrip_stores::MemoryStore;
use scrip_tokens::fixtures::{Specimens, NOW};
use scrip_tokens::keys::Merchant as MerchantRole;
use scrip_tokens::*;

// ---------------------------------------------------------------------------------------
// decode_tokens

/// Decodes `bytes` as `T` with the canonical codec; when that succeeds, the value must
/// re-encode to exactly `bytes` (one value, one encoding) and survive a JSON round trip
/// (the HTTP API's other format) unchanged.
pub fn check_token<T: Message>(bytes: &[u8]) {
    let _ = codec::peek_tag(bytes);
    let Ok(value) = codec::decode::<T>(bytes) else {
        return;
    };
    let again = codec::encode(&value)
        .unwrap_or_else(|e| panic!("{}: a decoded value does not encode: {e}", T::TAG));
    assert!(
        again == bytes,
        "{}: re-encoding a decoded value changed its bytes",
        T::TAG
    );
    let json = serde_json::to_vec(&value)
        .unwrap_or_else(|e| panic!("{}: a decoded value has no JSON form: {e}", T::TAG));
    let back: T = serde_json::from_slice(&json)
        .unwrap_or_else(|e| panic!("{}: its own JSON does not decode: {e}", T::TAG));
    let back = codec::encode(&back)
        .unwrap_or_else(|e| panic!("{}: a JSON-decoded value does not encode: {e}", T::TAG));
    assert!(
        back == bytes,
        "{}: the JSON round trip changed the value",
        T::TAG
    );
}

macro_rules! token_types {
    ($($ty:ty),* $(,)?) => {
        /// Every public message type of `scrip-tokens` (the `ALL_TAGS` list of
        /// `tokens/src/signed.rs`, less the crate-private `KeysetIdInput`) with its check.
        /// The first input byte picks an entry (modulo the length): keep the order stable,
        /// the seed corpus depends on it.
        pub const TOKEN_TYPES: &[(&str, fn(&[u8]))] = &[$((<$ty as Message>::TAG, check_token::<$ty>)),*];
    };
}

token_types!(
    AccountCertificatePayload,
    MerchantCertificatePayload,
    BalanceCertificatePayload,
    PaymentRequestPayload,
    WithdrawalRecordPayload,
    CountersignedRecordPayload,
    DepositRequestPayload,
    DepositRecordPayload,
    DepositConfirmationPayload,
    IdentifiedCoinPayload,
    EndorsedCoinPaymentPayload,
    BlindCoinMessage,
    AccountCertificate,
    MerchantCertificate,
    BalanceCertificate,
    PaymentRequest,
    WithdrawalRecord,
    CountersignedRecord,
    DepositRequest,
    DepositRecord,
    DepositConfirmation,
    IdentifiedCoin,
    EndorsedCoinPayment,
    Coin,
    CoinPayment,
    PendingCoin,
    KeyDirectory,
    SignedKeyDirectory,
    DeviceRegistrationPayload,
    DeviceRegistration,
    DeviceApprovalPayload,
    DeviceApproval,
    MerchantRegistrationPayload,
    MerchantRegistration,
    BalanceCertificateRequestPayload,
    BalanceCertificateRequest,
    BlindWithdrawalRequestPayload,
    BlindWithdrawalRequest,
    BlindWithdrawalResponse,
    IdentifiedWithdrawalRequestPayload,
    IdentifiedWithdrawalRequest,
    IdentifiedWithdrawalResponse,
    RedemptionBatchPayload,
    RedemptionBatch,
    RedemptionReportPayload,
    RedemptionReport,
    MerchantOffer,
    PaymentAnswer,
    PaymentReceipt,
    PaymentRejectionPayload,
    PaymentRejection,
    MerchantReply,
    SyncRequestPayload,
    SyncRequest,
    SyncReportPayload,
    SyncReport,
    StatementRequestPayload,
    StatementRequest,
    StatementPayload,
    Statement,
    MerchantStatementRequestPayload,
    MerchantStatementRequest,
    MerchantStatementPayload,
    MerchantStatement,
    PayoutRequestPayload,
    PayoutRequest,
    PayoutReceiptPayload,
    PayoutReceipt,
    RevocationListPayload,
    RevocationList,
    RevocationCache,
    RefundRequestPayload,
    RefundRequest,
    RefundVoucherPayload,
    RefundVoucher,
    VoucherWithdrawalRequest,
    RefundReceiptPayload,
    RefundReceipt,
    SwapRequest,
    SwapReceiptPayload,
    SwapReceipt,
    MerchantSwapRequestPayload,
    MerchantSwapRequest,
    DeviceSwapRequestPayload,
    DeviceSwapRequest,
);

/// The `decode_tokens` target: first byte picks the type, the rest is the encoding.
pub fn decode_tokens(data: &[u8]) {
    let Some((selector, rest)) = data.split_first() else {
        return;
    };
    let _ = codec::peek_tag(data);
    let (_, check) = TOKEN_TYPES[usize::from(*selector) % TOKEN_TYPES.len()];
    check(rest);
}

// ---------------------------------------------------------------------------------------
// http_bodies

/// The server's default body limit (`ServerConfig::max_body_bytes`), which it passes to
/// `codec::decode_with_limit` for binary bodies.
pub const SERVER_MAX_BODY: usize = 8 << 20;

/// Decodes `bytes` as request body `T` the way the server's `Body::decode` does, in both
/// formats. A JSON body the server takes must have a canonical encoding that decodes
/// again (the issuer verifies signatures over that encoding); a binary body must have a
/// JSON form (the issuer's answers and logs).
pub fn check_body<T: Message>(bytes: &[u8]) {
    if let Ok(value) = serde_json::from_slice::<T>(bytes) {
        let encoded = codec::encode(&value)
            .unwrap_or_else(|e| panic!("{}: a JSON body does not encode: {e}", T::TAG));
        if let Err(e) = codec::decode_with_limit::<T>(&encoded, encoded.len()) {
            panic!(
                "{}: the encoding of a JSON body does not decode: {e}",
                T::TAG
            );
        }
    }
    if let Ok(value) = codec::decode_with_limit::<T>(bytes, SERVER_MAX_BODY) {
        let json = serde_json::to_vec(&value)
            .unwrap_or_else(|e| panic!("{}: a binary body has no JSON form: {e}", T::TAG));
        if let Err(e) = serde_json::from_slice::<T>(&json) {
            panic!(
                "{}: the JSON form of a binary body does not decode: {e}",
                T::TAG
            );
        }
    }
}

macro_rules! body_types {
    ($($ty:ty),* $(,)?) => {
        /// Every request body a route of `issuer/src/server/filters.rs` decodes. The first
        /// input byte picks one (modulo the length): keep the order stable.
        pub const BODY_TYPES: &[(&str, fn(&[u8]))] = &[$((<$ty as Message>::TAG, check_body::<$ty>)),*];
    };
}

body_types!(
    DeviceRegistration,          // POST /v1/accounts, /v1/recoveries
    DeviceEnrollment,            // POST /v1/devices
    MerchantRegistration,        // POST /v1/merchants
    DepositRequest,              // POST /v1/deposits
    DepositConfirmation,         // POST /v1/deposit-confirmations
    BalanceCertificateRequest,   // POST /v1/balance-certificates
    SyncRequest,                 // POST /v1/sync
    BlindWithdrawalRequest,      // POST /v1/withdrawals/blind
    IdentifiedWithdrawalRequest, // POST /v1/withdrawals/identified
    RedemptionBatch,             // POST /v1/redemptions
    StatementRequest,            // POST /v1/accounts/{id}/statement
    ReissueRequest,              // POST /v1/devices/{id}/reissue
    MerchantStatementRequest,    // POST /v1/merchant-statements
    PayoutRequest,               // POST /v1/payouts
    RefundRequest,               // POST /v1/refunds
    VoucherWithdrawalRequest,    // POST /v1/refund-withdrawals
    SwapRequest,                 // POST /v1/swaps
    MerchantSwapRequest,         // POST /v1/merchant-swaps
    DeviceSwapRequest,           // POST /v1/device-swaps
);

/// The server decodes a binary redemption batch piece by piece
/// (`ReceivedBatch::decode_with_limit`, digests from the bytes): it must accept exactly
/// what the codec accepts, decode the same batch, and take the digests encoding it gives.
pub fn check_received_batch(bytes: &[u8]) {
    let piecewise = ReceivedBatch::decode_with_limit(bytes, SERVER_MAX_BODY);
    let whole = codec::decode_with_limit::<RedemptionBatch>(bytes, SERVER_MAX_BODY);
    match (piecewise, whole) {
        (Ok(received), Ok(batch)) => {
            assert!(received.batch() == &batch, "the piecewise decoder read another batch");
            let digest = codec::digest(&batch).unwrap_or_else(|e| panic!("digest: {e}"));
            assert!(received.digest() == digest, "the batch digest from the bytes differs");
            let encoded = ReceivedBatch::new(&batch).unwrap_or_else(|e| panic!("digests: {e}"));
            assert!(
                received.coin_payments().eq(encoded.coin_payments()),
                "a payment's digests from the bytes differ"
            );
        }
        (Err(_), Err(_)) => {}
        (piecewise, whole) => panic!(
            "piecewise decoding {:?} but the codec {:?}",
            piecewise.map(|_| ()),
            whole.map(|_| ())
        ),
    }
}

/// The `http_bodies` target: first byte picks the body type, the rest is the body.
pub fn http_bodies(data: &[u8]) {
    let Some((selector, rest)) = data.split_first() else {
        return;
    };
    let (tag, check) = BODY_TYPES[usize::from(*selector) % BODY_TYPES.len()];
    check(rest);
    if tag == RedemptionBatch::TAG {
        check_received_batch(rest);
    }
}

// ---------------------------------------------------------------------------------------
// merchant_accept

const WORLD_SEED: u64 = 0x5c41;
const OFFER_SEED: u64 = 0x0ffe;
/// What the merchant's one open offer asks for (minor units of EUR).
pub const OFFER_AMOUNT: u64 = 15;

/// Everything expensive, built once: fixture tokens (deterministic for the seed), the
/// signed key directory, the merchant key and the runtime.
pub struct World {
    /// One of every token from the fixture keys.
    pub specimens: Specimens,
    /// The directory the merchant trusts.
    pub signed_directory: SignedKeyDirectory,
    merchant_key_der: Vec<u8>,
    runtime: tokio::runtime::Runtime,
}

/// The shared world.
pub fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let mut rng = StdRng::seed_from_u64(WORLD_SEED);
        let specimens = Specimens::new(&mut rng);
        let signed_directory = specimens.issuer.signed_directory(&mut rng);
        let merchant_key_der = specimens
            .merchant
            .to_der()
            .expect("fixture key encodes")
            .to_vec();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime starts");
        World {
            specimens,
            signed_directory,
            merchant_key_der,
            runtime,
        }
    })
}

impl World {
    /// Runs `f` on the world's runtime.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }

    /// A merchant over a fresh `MemoryStore` with the directory and one open offer of
    /// [`OFFER_AMOUNT`] at `NOW`. Deterministic: every call makes the same offer (same
    /// request id and signature), so a stored answer keeps paying it. Also returns the
    /// RNG, positioned after the offer.
    pub async fn merchant(&self) -> (Merchant<MemoryStore>, MerchantOffer, StdRng) {
        let key = SigningKey::<MerchantRole>::from_der(&self.merchant_key_der)
            .expect("fixture key decodes");
        let merchant = Merchant::open(
            MemoryStore::new(),
            key,
            self.specimens.merchant_cert.clone(),
            self.specimens.issuer.directory_root.verifying_key().clone(),
            MerchantConfig::new(Amount::new(1_000_000, Currency::EUR)),
            NOW,
        )
        .await
        .expect("merchant opens");
        merchant
            .refresh_directory(self.signed_directory.clone(), NOW)
            .await
            .expect("fixture directory verifies");
        let mut rng = StdRng::seed_from_u64(OFFER_SEED);
        let offer = merchant
            .offer(Amount::new(OFFER_AMOUNT, Currency::EUR), NOW, &mut rng)
            .await
            .expect("offer");
        (merchant, offer, rng)
    }
}

/// The `merchant_accept` target: `data` is a wallet's answer to the merchant's open
/// offer, handed to `Merchant::accept_bytes`. Returns the reply, or `None` when the bytes
/// are no `PaymentAnswer` (checked first, cheaply, so only decodable answers pay for a
/// fresh merchant; `accept_bytes` refuses those the same way).
///
/// Every input gets a fresh merchant (state would otherwise leak between inputs: the
/// first valid answer pays the offer, after which no answer reaches the checks again).
pub fn merchant_accept(data: &[u8]) -> Option<MerchantReply> {
    codec::decode::<PaymentAnswer>(data).ok()?;
    let world = world();
    world.block_on(async {
        let (merchant, _offer, mut rng) = world.merchant().await;
        let reply = match merchant.accept_bytes(data, NOW, &mut rng).await {
            Ok(reply) => reply,
            // A decodable answer names a request, so it always gets a signed reply.
            Err(e) => panic!("a decodable answer got no reply: {e}"),
        };
        let reply: MerchantReply = codec::decode(&reply).expect("the reply decodes");
        if let MerchantReply::Receipt(_) = reply {
            // "A repeated answer gets the same reply."
            let again = merchant
                .accept_bytes(data, NOW, &mut rng)
                .await
                .expect("a repeated answer gets a reply");
            assert!(
                codec::decode::<MerchantReply>(&again).ok().as_ref() == Some(&reply),
                "a repeated answer got another reply"
            );
        }
        Some(reply)
    })
}
