//! [`ReasonCode`]: why something was refused, as one type shared by every layer (token
//! checks, the issuer, its HTTP server, the point of sale). On the wire a code is the same
//! snake_case string it always was (`"bad_signature"`), in JSON and in the binary codec;
//! in code it is a variant, so a typo is a compile error rather than a new code.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Declares the codes once: variant, wire string, meaning.
macro_rules! reason_codes {
    ($( $(#[$doc:meta])* $variant:ident = $wire:literal, )*) => {
        /// A stable, machine-readable reason for a refusal: what programs act on without
        /// parsing messages. New codes may be added in any release (`#[non_exhaustive]`);
        /// a code this version does not know decodes as [`ReasonCode::Unknown`] rather
        /// than failing, so an older wallet still shows a newer issuer's refusal.
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ReasonCode {
            $( $(#[$doc])* $variant, )*
            /// A code this version does not know (sent by a newer peer).
            Unknown(UnknownCode),
        }

        impl ReasonCode {
            /// Every known code, in declaration order.
            pub const ALL: &'static [ReasonCode] = &[$( ReasonCode::$variant, )*];

            /// The wire string (`"bad_signature"`).
            pub fn as_str(&self) -> &str {
                match self {
                    $( ReasonCode::$variant => $wire, )*
                    ReasonCode::Unknown(code) => &code.0,
                }
            }

            /// The code a wire string names; [`ReasonCode::Unknown`] for any other string.
            pub fn parse(wire: &str) -> ReasonCode {
                match wire {
                    $( $wire => ReasonCode::$variant, )*
                    other => ReasonCode::Unknown(UnknownCode(other.to_owned())),
                }
            }
        }
    };
}

reason_codes! {
    // Token checks: encoding, keys, signatures, the rules of certificates and payments.
    /// Two amounts of different currencies met.
    CurrencyMismatch = "currency_mismatch",
    /// An amount does not fit its type.
    AmountOverflow = "amount_overflow",
    /// A subtraction would go below zero.
    AmountUnderflow = "amount_underflow",
    /// Not an ISO 4217 currency code.
    InvalidCurrency = "invalid_currency",
    /// A field is out of its allowed range.
    InvalidField = "invalid_field",
    /// An encoding is larger than allowed.
    TooLarge = "too_large",
    /// A message of another type (wrong domain tag).
    WrongType = "wrong_type",
    /// A message version this implementation does not read.
    UnsupportedVersion = "unsupported_version",
    /// Bytes after the end of a message.
    TrailingBytes = "trailing_bytes",
    /// An encoding that is not the canonical one.
    NonCanonical = "non_canonical",
    /// Bytes that do not decode.
    Malformed = "malformed",
    /// A value that does not encode.
    Encoding = "encoding",
    /// A key that does not parse or is unusable.
    InvalidKey = "invalid_key",
    /// An RSA key of a size not accepted.
    UnsupportedKeySize = "unsupported_key_size",
    /// A key id nobody knows.
    UnknownKey = "unknown_key",
    /// A key used for a role it does not have.
    WrongKeyRole = "wrong_key_role",
    /// A key past its validity.
    KeyExpired = "key_expired",
    /// A key before its validity.
    KeyNotYetValid = "key_not_yet_valid",
    /// A keyset nobody knows.
    UnknownKeyset = "unknown_keyset",
    /// A coin value the keyset has no key for.
    UnknownDenomination = "unknown_denomination",
    /// A signature that does not verify.
    BadSignature = "bad_signature",
    /// A token or request past its lifetime.
    Expired = "expired",
    /// A token before its validity.
    NotYetValid = "not_yet_valid",
    /// Signed for another account.
    WrongAccount = "wrong_account",
    /// Signed by or for another device.
    WrongDevice = "wrong_device",
    /// For another merchant.
    WrongMerchant = "wrong_merchant",
    /// Under another certificate.
    WrongCertificate = "wrong_certificate",
    /// A sequence number outside the certificate's range.
    SequenceOutOfRange = "sequence_out_of_range",
    /// A payment above the certificate's per-payment cap.
    PaymentCapExceeded = "payment_cap_exceeded",
    /// Payments above what the certificate makes available.
    AvailableExceeded = "available_exceeded",
    /// A merchant category the certificate excludes.
    CategoryNotAllowed = "category_not_allowed",
    /// A region the certificate excludes.
    RegionNotAllowed = "region_not_allowed",
    /// One coin twice in a payment.
    DuplicateCoin = "duplicate_coin",
    /// Coins that do not add up to the requested amount.
    AmountMismatch = "amount_mismatch",
    /// One key listed twice in a directory.
    DuplicateKey = "duplicate_key",
    /// A blind-signature operation failed.
    BlindSignatureFailed = "blind_signature_failed",
    /// Signing failed.
    SigningFailed = "signing_failed",
    /// A revocation list older than the one held.
    OutdatedRevocationList = "outdated_revocation_list",
    /// A revocation delta against another version than the one held.
    RevocationDeltaBase = "revocation_delta_base",

    // The issuer's decisions.
    /// No such account.
    UnknownAccount = "unknown_account",
    /// No such device (or not on this account).
    UnknownDevice = "unknown_device",
    /// No such merchant.
    UnknownMerchant = "unknown_merchant",
    /// No such balance certificate.
    UnknownCertificate = "unknown_certificate",
    /// The device was reported lost.
    DeviceRevoked = "device_revoked",
    /// The account is frozen (fraud).
    AccountFrozen = "account_frozen",
    /// The operator asked to unfreeze an account that is not frozen.
    AccountNotFrozen = "account_not_frozen",
    /// The merchant was revoked by the operator.
    MerchantRevoked = "merchant_revoked",
    /// The key is registered already.
    AlreadyRegistered = "already_registered",
    /// The balance does not cover the request.
    InsufficientFunds = "insufficient_funds",
    /// Nothing is left to certify.
    NothingAvailable = "nothing_available",
    /// Concurrent requests kept changing what this one needs; retry shortly.
    Contended = "contended",
    /// An idempotency key reused for a different request.
    IdempotencyKeyReused = "idempotency_key_reused",
    /// A feature this issuer does not offer.
    Unsupported = "unsupported",
    /// The keyset no longer issues coins.
    KeysetNotIssuing = "keyset_not_issuing",
    /// The keyset's coins are no longer accepted.
    KeysetExpired = "keyset_expired",
    /// The funding source failed.
    FundingFailed = "funding_failed",
    /// The request asks for something the ledger forbids.
    InvalidRequest = "invalid_request",
    /// A refund names a payment this merchant was not paid (no settled payment answers
    /// that request id).
    UnknownPayment = "unknown_payment",
    /// A refund of the wrong kind for its payment: to the account for a coin payment, or a
    /// voucher for a payment by record.
    WrongPaymentKind = "wrong_payment_kind",
    /// The request id was paid more than once in ways one refund cannot tell apart (by
    /// several accounts).
    AmbiguousPayment = "ambiguous_payment",
    /// With the earlier refunds of the payment, the refund would give back more than was
    /// paid.
    RefundExceedsPayment = "refund_exceeds_payment",
    /// The refund id was used before for another refund.
    RefundIdReused = "refund_id_reused",
    /// The voucher was withdrawn already, for other coins.
    VoucherAlreadyUsed = "voucher_already_used",
    /// A merchant's swap holds a payment this merchant settled already (redeemed for
    /// credit, or taken as coins by another swap): nothing was claimed; upload the payment
    /// for its outcome.
    AlreadyRedeemed = "already_redeemed",
    /// The issuer's store failed; the request may be retried.
    StoreError = "store_error",
    /// The issuer's keys could not be read or written.
    KeyringError = "keyring_error",
    /// A file or socket operation of the server failed.
    IoError = "io_error",
    /// Another process holds the data directory.
    DirectoryInUse = "directory_in_use",
    /// The issuer's stored state does not decode.
    CorruptedState = "corrupted_state",
    /// A payout id used before with another merchant or amount.
    PayoutIdReused = "payout_id_reused",
    /// The merchant's bank (the payout sink) could not be reached; the payout is pending
    /// and sending it again finishes it.
    PayoutUnavailable = "payout_unavailable",
    /// The payout sink answered something the issuer cannot act on (it knows the payout
    /// id with other details, or gave an unusable reference); the payout stays pending.
    PayoutFailed = "payout_failed",

    // The HTTP server's admission and transport.
    /// The request's time is outside the accepted window.
    StaleRequest = "stale_request",
    /// The same signed request was seen before.
    Replayed = "replayed",
    /// The server is at a capacity limit; retry shortly.
    Busy = "busy",
    /// The store cannot take writes (disk full); retry later.
    StoreUnwritable = "store_unwritable",
    /// The body does not decode.
    MalformedBody = "malformed_body",
    /// The body is larger than the route accepts.
    BodyTooLarge = "body_too_large",
    /// The body could not be read.
    BodyUnreadable = "body_unreadable",
    /// The body did not arrive in time.
    RequestTimeout = "request_timeout",
    /// A body without a length.
    LengthRequired = "length_required",
    /// A media type the server does not speak.
    UnsupportedMediaType = "unsupported_media_type",
    /// An operator route without a valid operator token.
    OperatorTokenRequired = "operator_token_required",
    /// No such route or object.
    NotFound = "not_found",
    /// The route exists for other methods.
    MethodNotAllowed = "method_not_allowed",
    /// A query string that does not parse.
    InvalidQuery = "invalid_query",
    /// A header that does not parse.
    InvalidHeader = "invalid_header",
    /// The path names another object than the body.
    PathMismatch = "path_mismatch",
    /// Any other malformed request.
    BadRequest = "bad_request",
    /// A request line or head that does not parse.
    MalformedRequest = "malformed_request",
    /// A request URI longer than accepted.
    UriTooLong = "uri_too_long",
    /// Request headers larger than accepted.
    HeadersTooLarge = "headers_too_large",
    /// An HTTP error whose body was not the API's (a proxy's, say): said by the client.
    HttpError = "http_error",

    // The point of sale's refusals (in signed rejections).
    /// The terminal has no verified key directory yet.
    NoKeyDirectory = "no_key_directory",
    /// The terminal never made this request, or it was altered.
    UnknownRequest = "unknown_request",
    /// The request is past its lifetime.
    RequestExpired = "request_expired",
    /// The request was paid already.
    RequestAlreadyPaid = "request_already_paid",
    /// A coin of this payment was seen before.
    CoinAlreadySeen = "coin_already_seen",
    /// This record's sequence number was seen before.
    SequenceAlreadySeen = "sequence_already_seen",
    /// This record was seen before.
    RecordAlreadySeen = "record_already_seen",
    /// Something of this payment was seen before.
    Conflict = "conflict",
    /// Accepting it would put more unsettled than the terminal's limit.
    ExposureLimit = "exposure_limit",
    /// The issuer's revocation list names the paying device, its account, a coin of the
    /// payment or the merchant.
    RevocationListed = "revocation_listed",
    /// The terminal's revocation list is missing or older than it accepts.
    RevocationListStale = "revocation_list_stale",
}

/// A code string this version does not know; only [`ReasonCode::parse`] makes one, so a
/// known code is always its own variant.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UnknownCode(String);

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for ReasonCode {
    fn from(wire: &str) -> Self {
        ReasonCode::parse(wire)
    }
}

impl PartialEq<str> for ReasonCode {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for ReasonCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl Serialize for ReasonCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ReasonCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = String::deserialize(deserializer)?;
        Ok(ReasonCode::parse(&wire))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_through_its_wire_string() {
        for code in ReasonCode::ALL {
            assert_eq!(&ReasonCode::parse(code.as_str()), code);
        }
        let mut wires: Vec<&str> = ReasonCode::ALL.iter().map(ReasonCode::as_str).collect();
        wires.sort_unstable();
        wires.dedup();
        assert_eq!(
            wires.len(),
            ReasonCode::ALL.len(),
            "a wire string is used twice"
        );
    }

    #[test]
    fn codes_travel_as_the_same_strings_as_before() {
        // A `String` field and a `ReasonCode` field encode to the same bytes.
        let code = ReasonCode::BadSignature;
        let config = bincode::config::standard();
        assert_eq!(
            bincode::serde::encode_to_vec(&code, config).unwrap(),
            bincode::serde::encode_to_vec("bad_signature", config).unwrap()
        );
        assert_eq!(serde_json::to_string(&code).unwrap(), "\"bad_signature\"");
    }

    #[test]
    fn an_unknown_code_decodes_and_re_encodes_unchanged() {
        let code: ReasonCode = serde_json::from_str("\"from_the_future\"").unwrap();
        assert!(matches!(code, ReasonCode::Unknown(_)));
        assert_eq!(code, "from_the_future");
        assert_eq!(serde_json::to_string(&code).unwrap(), "\"from_the_future\"");
    }
}
