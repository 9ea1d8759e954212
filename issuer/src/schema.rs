//! What the issuer keeps in the store's document collections, and how keys are built.
//! Every value is a versioned codec message (`scrip/issuer/<name>/v1`).

use scrip_stores::{ClaimNamespace, Collection, LedgerAccount};
use scrip_tokens::{
    AccountCertificate, AccountId, Amount, BalanceCertificate, BlindWithdrawalResponse,
    CertificateSerial, CoinId, ContentDigest, DeviceId, IdentifiedCoin, MerchantCertificate,
    MerchantId, Message, RecordId, RefundId, RequestId, RevocationEntry, Timestamp, VirtualId,
    WithdrawalRecord,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use scrip_api::{CoinHolder, FraudEntry, FraudKind};

macro_rules! doc {
    ($ty:ty, $tag:literal) => {
        impl Message for $ty {
            const TAG: &'static str = concat!("scrip/issuer/", $tag, "/v1");
            const VERSION: u16 = 1;
        }
    };
}

pub(crate) const ACCOUNTS: Collection = Collection::new("accounts");
pub(crate) const DEVICES: Collection = Collection::new("devices");
pub(crate) const DEVICE_KEYS: Collection = Collection::new("device-keys");
pub(crate) const ACCOUNT_DEVICES: Collection = Collection::new("account-devices");
pub(crate) const VIRTUAL_IDS: Collection = Collection::new("virtual-ids");
pub(crate) const MERCHANTS: Collection = Collection::new("merchants");
pub(crate) const MERCHANT_KEYS: Collection = Collection::new("merchant-keys");
pub(crate) const FROZEN: Collection = Collection::new("frozen-accounts");
pub(crate) const REVOKED_DEVICES: Collection = Collection::new("revoked-devices");
pub(crate) const NEXT_SEQUENCE: Collection = Collection::new("next-sequence");
pub(crate) const CERTIFICATES: Collection = Collection::new("certificates");
pub(crate) const CERTIFICATE_EXPIRY: Collection = Collection::new("certificate-expiry");
pub(crate) const CERTIFICATE_RECORDS: Collection = Collection::new("certificate-records");
pub(crate) const RELEASED: Collection = Collection::new("released-reservations");
pub(crate) const RECORDS: Collection = Collection::new("records");
pub(crate) const SEQUENCE_RECORDS: Collection = Collection::new("sequence-records");
pub(crate) const DEPOSITS: Collection = Collection::new("deposits");
pub(crate) const DEPOSIT_CONFIRMATIONS: Collection = Collection::new("deposit-confirmations");
pub(crate) const RESPONSES: Collection = Collection::new("responses");
pub(crate) const IDENTIFIED_COINS: Collection = Collection::new("identified-coins");
pub(crate) const DEVICE_COINS: Collection = Collection::new("device-coins");
pub(crate) const REVOKED_COINS: Collection = Collection::new("revoked-coins");
pub(crate) const FRAUD_LOG: Collection = Collection::new("fraud-log");
/// How many times an account was unfrozen (raw `u64`, by account id; absent: never):
/// the generation its next freeze claims under (see [`freeze_claim_key`]).
pub(crate) const FREEZE_GENERATIONS: Collection = Collection::new("freeze-generations");
/// The history of unfreezes, by [`unfreeze_key`]: who was unfrozen, when and why, and
/// the freeze it lifted.
pub(crate) const UNFREEZES: Collection = Collection::new("account-unfreezes");
/// Revoked merchants, by merchant id: the first revocation's time and reason.
pub(crate) const REVOKED_MERCHANTS: Collection = Collection::new("revoked-merchants");
/// The versions of the published revocation list, by [`revocation_version_key`]: the
/// last [`crate::REVOCATION_SNAPSHOTS_KEPT`] are kept, older ones are deleted.
pub(crate) const REVOCATION_SNAPSHOTS: Collection = Collection::new("revocation-snapshots");
/// The latest revocation list version (raw `u64`), under [`REVOCATION_LATEST_KEY`].
pub(crate) const REVOCATION_LATEST: Collection = Collection::new("revocation-latest");
/// The one key of [`REVOCATION_LATEST`].
pub(crate) const REVOCATION_LATEST_KEY: &[u8] = b"latest";
/// Merchant payouts, by payout id: amount, merchant and where the payout stands
/// ([`PayoutDoc`]).
pub(crate) const PAYOUTS: Collection = Collection::new("payouts");

/// Settled payments, by [`payment_key`]: what each paid request brought the merchant, and
/// from whom, written by the unit that credits the merchant. Refunds read it.
pub(crate) const PAYMENTS: Collection = Collection::new("payments");
/// What was refunded of each payment, by [`payment_prefix`]: a [`RefundTotalDoc`].
pub(crate) const REFUND_TOTALS: Collection = Collection::new("refund-totals");
/// Refunds paid, by [`refund_key`]: a [`RefundDoc`].
pub(crate) const REFUNDS: Collection = Collection::new("refunds");

// Claim namespaces. The strings are in stored claims: never change one.

/// A device's sequence numbers handed to one certificate (key: [`sequence_key`] of the
/// range's first number): two certificates of a device never share a range.
pub(crate) const SEQUENCE_RANGE: ClaimNamespace = ClaimNamespace::new("sequence-range");
/// A certificate's reservation released after its settlement window (key: serial):
/// released once.
pub(crate) const RELEASE: ClaimNamespace = ClaimNamespace::new("release");
/// A revoked device (key: device id): the first revocation time stands.
pub(crate) const REVOKE_DEVICE: ClaimNamespace = ClaimNamespace::new("revoke-device");
/// The reissue of a revoked device's identified coins (key: device id): taken by the unit
/// that stores the reissue's answer, so a concurrent reissue that read other coins cannot
/// store another answer over it.
pub(crate) const REISSUE: ClaimNamespace = ClaimNamespace::new("reissue");
/// A record whose id another record took first (key: record id ‖ digest): kept as
/// evidence next to the first.
pub(crate) const REUSED_RECORD_ID: ClaimNamespace = ClaimNamespace::new("reused-record-id");
/// A second, different record for a (device, sequence) (key: [`sequence_key`] ‖ digest).
pub(crate) const EQUIVOCATING_RECORD: ClaimNamespace = ClaimNamespace::new("equivocating-record");
/// A fraud log entry (key: the digest of what it says): logged once.
pub(crate) const FRAUD_ENTRY: ClaimNamespace = ClaimNamespace::new("fraud-entry");
/// A frozen account (key: [`freeze_claim_key`], the account id and the number of times it
/// was unfrozen): within one generation the first reason stands.
pub(crate) const FREEZE: ClaimNamespace = ClaimNamespace::new("freeze");
/// An unfreeze (key: [`freeze_claim_key`] of the generation it ends): of two concurrent
/// unfreezes of one freeze, one is done.
pub(crate) const UNFREEZE: ClaimNamespace = ClaimNamespace::new("unfreeze");
/// A revoked merchant (key: merchant id): the first revocation stands.
pub(crate) const REVOKE_MERCHANT: ClaimNamespace = ClaimNamespace::new("revoke-merchant");
/// A revocation list version (key: [`revocation_version_key`]): of servers publishing
/// at once, one writes each version; the others read it back.
pub(crate) const REVOCATION_VERSION: ClaimNamespace = ClaimNamespace::new("revocation-version");
/// A registered device key (key: key id): one device per key.
pub(crate) const DEVICE_KEY: ClaimNamespace = ClaimNamespace::new("device-key");
/// A registered merchant key (key: key id): one merchant per key.
pub(crate) const MERCHANT_KEY: ClaimNamespace = ClaimNamespace::new("merchant-key");
/// A device's confirmation of a deposit (key: deposit id): the first one stands.
pub(crate) const DEPOSIT_CONFIRMATION: ClaimNamespace = ClaimNamespace::new("deposit-confirmation");
/// A deposit the demo funding source collected (key: deposit id; digest over the deposit,
/// account and amount): collected once, whichever server of a cluster is asked.
pub(crate) const DEMO_FUNDING: ClaimNamespace = ClaimNamespace::new("demo-funding");
/// A merchant's payout (key: payout id; digest over the payout id, merchant and amount):
/// taken from the merchant's balance once; the same id with other details conflicts.
pub(crate) const PAYOUT: ClaimNamespace = ClaimNamespace::new("payout");
/// The end of a payout, paid or declined (key: payout id; digest over the outcome): the
/// money leaves the pending account once, whichever retry finishes it.
pub(crate) const PAYOUT_OUTCOME: ClaimNamespace = ClaimNamespace::new("payout-outcome");

/// A swap (key: the holder's request key; digest: the whole request): answered once.
pub(crate) const SWAP_REQUEST: ClaimNamespace = ClaimNamespace::new("swap-request");

/// A refund (key: [`refund_key`], digest: what it refunds): paid once per refund id.
pub(crate) const REFUND: ClaimNamespace = ClaimNamespace::new("refund");
/// The `n`-th refund of a payment (key: [`refund_slot_key`]): two refunds of one payment
/// never both commit as its `n`-th, so each reads the total the other left.
pub(crate) const REFUND_SLOT: ClaimNamespace = ClaimNamespace::new("refund-slot");

/// A kind of answer kept in [`RESPONSES`] for a request answered once, under
/// `prefix ‖ id`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ResponseKind(&'static [u8]);

impl ResponseKind {
    /// Where the answer identified by `id` is kept.
    pub(crate) fn key(self, id: &[u8]) -> Vec<u8> {
        key2(self.0, id)
    }
}

/// A balance certificate, by the key bytes of its request's idempotency claim.
pub(crate) const CERTIFICATE_RESPONSE: ResponseKind = ResponseKind(b"certificate/");
/// A blind withdrawal, by the key bytes of its idempotency claim.
pub(crate) const BLIND_RESPONSE: ResponseKind = ResponseKind(b"blind/");
/// An identified withdrawal, by the key bytes of its idempotency claim.
pub(crate) const IDENTIFIED_RESPONSE: ResponseKind = ResponseKind(b"identified/");
/// A swap's blind signatures, by the key bytes of its request claim.
pub(crate) const SWAP_RESPONSE: ResponseKind = ResponseKind(b"swap/");
/// A merchant's swap's blind signatures, by the key bytes of its idempotency claim.
pub(crate) const MERCHANT_SWAP_RESPONSE: ResponseKind = ResponseKind(b"merchant-swap/");
/// The coins reissued for a revoked device, by its id.
pub(crate) const REISSUE_RESPONSE: ResponseKind = ResponseKind(b"reissue/");

/// The issuer's system ledger account that deposits come from (its balance is minus the
/// total deposited).
pub fn funding_account() -> LedgerAccount {
    LedgerAccount::System("funding".into())
}

/// The issuer's system ledger account holding the value of coins issued and not yet
/// redeemed.
pub fn coins_outstanding_account() -> LedgerAccount {
    LedgerAccount::System("coins-outstanding".into())
}

/// A revocation list version's key: big-endian, so versions scan in order.
pub(crate) fn revocation_version_key(version: u64) -> Vec<u8> {
    version.to_be_bytes().to_vec()
}

/// The issuer's system ledger account of swap fees kept
/// ([`crate::IssuerConfig::swap_fee_per_coin`]; nothing while the fee is zero).
pub fn swap_fees_account() -> LedgerAccount {
    LedgerAccount::System("swap-fees".into())
}

/// The issuer's system ledger account holding payouts taken from merchants' balances and
/// not yet confirmed by the payout sink (the bank).
pub fn payouts_pending_account() -> LedgerAccount {
    LedgerAccount::System("payouts-pending".into())
}

/// The issuer's system ledger account of money paid out to merchants' banks: it left the
/// system (its balance is the total paid out).
pub fn paid_out_account() -> LedgerAccount {
    LedgerAccount::System("paid-out".into())
}

/// `a || b` for composite keys of fixed-width parts.
pub(crate) fn key2(a: &[u8], b: &[u8]) -> Vec<u8> {
    [a, b].concat()
}

/// The key of an account's [`FREEZE`] (and [`UNFREEZE`]) claim in `generation` (how many
/// times it was unfrozen before): the bare account id for generation 0, the key stores
/// written before unfreezing existed hold, so their frozen accounts keep their claims;
/// `account ‖ generation` (big-endian) after.
pub(crate) fn freeze_claim_key(account: AccountId, generation: u64) -> Vec<u8> {
    match generation {
        0 => account.as_bytes().to_vec(),
        g => key2(account.as_bytes(), &g.to_be_bytes()),
    }
}

/// `account ‖ generation` (big-endian): an account's unfreezes in the order they were
/// done, the key of [`UNFREEZES`].
pub(crate) fn unfreeze_key(account: AccountId, generation: u64) -> Vec<u8> {
    key2(account.as_bytes(), &generation.to_be_bytes())
}

/// `device ‖ sequence` (big-endian): a payment's place in its device's history, the key
/// of [`SEQUENCE_RECORDS`] and of sequence claims.
pub(crate) fn sequence_key(device: DeviceId, sequence: u64) -> Vec<u8> {
    key2(device.as_bytes(), &sequence.to_be_bytes())
}

/// `expires_at ‖ serial`, the time first and big-endian so that a scan of
/// [`CERTIFICATE_EXPIRY`] meets certificates in the order they expire.
pub(crate) fn expiry_key(expires_at: Timestamp, serial: CertificateSerial) -> Vec<u8> {
    key2(
        &expires_at.as_unix_millis().to_be_bytes(),
        serial.as_bytes(),
    )
}

/// The expiry time and serial of an [`expiry_key`].
pub(crate) fn parse_expiry_key(key: &[u8]) -> Option<(Timestamp, CertificateSerial)> {
    let (at, serial) = key.split_at_checked(8)?;
    Some((
        Timestamp::from_unix_millis(u64::from_be_bytes(at.try_into().ok()?)),
        CertificateSerial::from_raw(serial)?,
    ))
}

/// `device ‖ coin`: the identified coins a device holds, found by a scan of the device's
/// prefix of [`DEVICE_COINS`].
pub(crate) fn device_coin_key(device: DeviceId, coin: CoinId) -> Vec<u8> {
    key2(device.as_bytes(), coin.as_bytes())
}

/// The device and coin of a [`device_coin_key`].
pub(crate) fn parse_device_coin_key(key: &[u8]) -> Option<(DeviceId, CoinId)> {
    let (device, coin) = key.split_at_checked(16)?;
    Some((DeviceId::from_raw(device)?, CoinId::from_raw(coin)?))
}

/// `merchant ‖ request`: every payment of one request, the prefix of [`payment_key`] and
/// the key of [`REFUND_TOTALS`].
pub(crate) fn payment_prefix(merchant: MerchantId, request: RequestId) -> Vec<u8> {
    key2(merchant.as_bytes(), request.as_bytes())
}

/// `merchant ‖ request ‖ digest` (of the record or the coin payment): one payment of a
/// request. A request paid twice (a second record, say) keeps both.
pub(crate) fn payment_key(
    merchant: MerchantId,
    request: RequestId,
    digest: ContentDigest,
) -> Vec<u8> {
    key2(&payment_prefix(merchant, request), digest.as_bytes())
}

/// `merchant ‖ refund`: the key of [`REFUNDS`] and of [`REFUND`] claims.
pub(crate) fn refund_key(merchant: MerchantId, refund: RefundId) -> Vec<u8> {
    key2(merchant.as_bytes(), refund.as_bytes())
}

/// `merchant ‖ request ‖ n` (big-endian): the claim of a payment's `n`-th refund.
pub(crate) fn refund_slot_key(merchant: MerchantId, request: RequestId, n: u64) -> Vec<u8> {
    key2(&payment_prefix(merchant, request), &n.to_be_bytes())
}

/// A value stored as its raw fixed-width bytes rather than as a codec message: the ids
/// that index collections map keys to, and counters.
pub(crate) trait RawValue: Sized {
    /// The stored bytes.
    fn to_raw(&self) -> Vec<u8>;
    /// The value of stored bytes; `None` if they are not one.
    fn from_raw(raw: &[u8]) -> Option<Self>;
}

macro_rules! raw_uuid {
    ($($ty:ty),* $(,)?) => {$(
        impl RawValue for $ty {
            fn to_raw(&self) -> Vec<u8> {
                self.as_bytes().to_vec()
            }

            fn from_raw(raw: &[u8]) -> Option<Self> {
                Some(Self::from(Uuid::from_bytes(raw.try_into().ok()?)))
            }
        }
    )*};
}
raw_uuid!(
    AccountId,
    DeviceId,
    MerchantId,
    RecordId,
    CoinId,
    CertificateSerial
);

/// Counters and amounts (minor units): little-endian.
impl RawValue for u64 {
    fn to_raw(&self) -> Vec<u8> {
        self.to_le_bytes().to_vec()
    }

    fn from_raw(raw: &[u8]) -> Option<Self> {
        Some(u64::from_le_bytes(raw.try_into().ok()?))
    }
}

/// One version of the issuer's revocation list, as stored: every listed item with the
/// time the first version listing it was created.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationSnapshot {
    /// Its version (0: the empty list before anything was published).
    pub version: u64,
    /// When this version was created.
    pub created_at: Timestamp,
    /// The listed items, in item order.
    pub entries: Vec<RevocationEntry>,
}
doc!(RevocationSnapshot, "revocation-snapshot");

impl Default for RevocationSnapshot {
    /// Version 0: nothing listed, never published.
    fn default() -> Self {
        RevocationSnapshot {
            version: 0,
            created_at: Timestamp::from_unix_millis(0),
            entries: Vec::new(),
        }
    }
}

/// An open account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountDoc {
    /// The account.
    pub account_id: AccountId,
    /// The holder's virtual id, written into identified coins.
    pub virtual_id: VirtualId,
    /// When it was opened.
    pub opened_at: Timestamp,
}
doc!(AccountDoc, "account");

/// A registered device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceDoc {
    /// Its account certificate (account, device, key, validity).
    pub certificate: AccountCertificate,
    /// When it was registered.
    pub registered_at: Timestamp,
}
doc!(DeviceDoc, "device");

/// A registered merchant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MerchantDoc {
    /// Its merchant certificate.
    pub certificate: MerchantCertificate,
    /// When it was registered.
    pub registered_at: Timestamp,
}
doc!(MerchantDoc, "merchant");

/// When and why something was frozen or revoked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    /// When.
    pub at: Timestamp,
    /// Why.
    pub reason: String,
}
doc!(Mark, "mark");

/// An unfreeze: the freeze it lifted and the operator's reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnfreezeDoc {
    /// The account.
    pub account_id: AccountId,
    /// The freeze lifted.
    pub frozen: Mark,
    /// When it was lifted.
    pub at: Timestamp,
    /// Why.
    pub reason: String,
    /// How many unfreezes came before this one.
    pub generation: u64,
}
doc!(UnfreezeDoc, "unfreeze");

/// A balance certificate the issuer signed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateDoc {
    /// The certificate.
    pub certificate: BalanceCertificate,
}
doc!(CertificateDoc, "certificate");

/// The end of a certificate's reservation (after its settlement window): from then on its
/// late records are paid from the account's balance, and only as far as it covers them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseDoc {
    /// What went back to the account.
    pub released: Amount,
    /// When.
    pub at: Timestamp,
}
doc!(ReleaseDoc, "release");

/// How a withdrawal record reached the issuer first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecordSource {
    /// The merchant's upload.
    Merchant,
    /// The customer device's sync.
    Customer,
}

/// A recorded withdrawal record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordDoc {
    /// The device-signed record.
    pub record: WithdrawalRecord,
    /// When the issuer recorded it.
    pub recorded_at: Timestamp,
    /// Which copy arrived first.
    pub source: RecordSource,
    /// Part of the payment taken from the account's spendable balance because the
    /// certificate's reservation did not cover it (minor units).
    pub paid_from_balance: u64,
    /// True if it was a second record with an already used (device, sequence).
    pub equivocation: bool,
}
doc!(RecordDoc, "record");

/// An identified coin the issuer signed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentifiedCoinDoc {
    /// The coin.
    pub coin: IdentifiedCoin,
    /// Whose it is.
    pub account_id: AccountId,
    /// The device holding it (the one it was issued or reissued to).
    pub device_id: Option<DeviceId>,
}
doc!(IdentifiedCoinDoc, "identified-coin");

/// A revoked identified coin and its replacement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokedCoinDoc {
    /// When.
    pub at: Timestamp,
    /// The coin issued in its place.
    pub replacement: CoinId,
}
doc!(RevokedCoinDoc, "revoked-coin");

/// Where a payout stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PayoutProgress {
    /// Taken from the merchant's balance into `payouts-pending`; the sink has not
    /// confirmed it yet (not called, unreachable, or the issuer stopped in between).
    Pending,
    /// Ended: paid or declined (as the merchant's receipt says).
    Done(scrip_tokens::PayoutState),
}

/// A merchant's payout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutDoc {
    /// The payout.
    pub payout_id: scrip_tokens::PayoutId,
    /// Whose.
    pub merchant_id: MerchantId,
    /// How much.
    pub amount: Amount,
    /// When it was taken from the merchant's balance.
    pub requested_at: Timestamp,
    /// Where it stands.
    pub progress: PayoutProgress,
}
doc!(PayoutDoc, "payout");

/// Who paid a settled payment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PaidBy {
    /// A withdrawal record of this account.
    Record {
        /// The account debited.
        account_id: AccountId,
        /// The record.
        record_id: RecordId,
    },
    /// Coins (their holder is unknown).
    Coins,
}

/// A settled payment of a merchant's request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentDoc {
    /// Who paid.
    pub paid_by: PaidBy,
    /// What the merchant was credited.
    pub amount: Amount,
    /// When.
    pub paid_at: Timestamp,
}
doc!(PaymentDoc, "payment");

/// What was refunded of a payment so far.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundTotalDoc {
    /// How many refunds: the next one claims slot `refunds + 1`.
    pub refunds: u64,
    /// Their total.
    pub refunded: Amount,
}
doc!(RefundTotalDoc, "refund-total");

/// Where a refund went.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefundPaid {
    /// To the account that paid by record.
    Account(AccountId),
    /// As blind coins withdrawn against a voucher: the digest of the coins asked for, and
    /// the answer (a retry of the same withdrawal gets it again).
    Voucher {
        /// Digest of the keyset and blinded coins of the withdrawal.
        coins: ContentDigest,
        /// The blind signatures given.
        answer: BlindWithdrawalResponse,
    },
}

/// A refund paid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundDoc {
    /// The payment refunded.
    pub request_id: RequestId,
    /// Digest of what the refund asked (the refund claim's digest).
    pub identity: ContentDigest,
    /// How much.
    pub amount: Amount,
    /// Everything refunded of the payment once it was paid.
    pub refunded_total: Amount,
    /// When.
    pub refunded_at: Timestamp,
    /// Where it went.
    pub paid: RefundPaid,
}
doc!(RefundDoc, "refund");

/// Digest of a device-signed record: the identity both copies (merchant's, customer's)
/// share.
pub(crate) fn record_digest(record: &WithdrawalRecord) -> crate::Result<ContentDigest> {
    Ok(scrip_tokens::codec::digest(record)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id<T: From<Uuid>>(n: u128) -> T {
        T::from(Uuid::from_u128(n))
    }

    #[test]
    fn claim_namespaces_keep_the_names_stored_claims_were_made_under() {
        let names = [
            SEQUENCE_RANGE,
            RELEASE,
            REVOKE_DEVICE,
            REUSED_RECORD_ID,
            EQUIVOCATING_RECORD,
            FRAUD_ENTRY,
            FREEZE,
            DEVICE_KEY,
            MERCHANT_KEY,
            DEPOSIT_CONFIRMATION,
            UNFREEZE,
            REVOKE_MERCHANT,
            REVOCATION_VERSION,
            PAYOUT,
            PAYOUT_OUTCOME,
            REFUND,
            REFUND_SLOT,
            REISSUE,
        ]
        .map(|ns| ns.name());
        assert_eq!(
            names,
            [
                "sequence-range",
                "release",
                "revoke-device",
                "reused-record-id",
                "equivocating-record",
                "fraud-entry",
                "freeze",
                "device-key",
                "merchant-key",
                "deposit-confirmation",
                "unfreeze",
                "revoke-merchant",
                "revocation-version",
                "payout",
                "payout-outcome",
                "refund",
                "refund-slot",
                "reissue",
            ]
        );
    }

    #[test]
    fn stored_keys_keep_their_byte_layout() {
        let device: DeviceId = id(0x0102);
        let mut sequence = device.as_bytes().to_vec();
        sequence.extend_from_slice(&[0, 0, 0, 0, 0, 0, 1, 0]);
        assert_eq!(sequence_key(device, 256), sequence);
        let reused = CERTIFICATE_RESPONSE.key(b"id");
        assert_eq!(reused, b"certificate/id");
        assert_eq!(BLIND_RESPONSE.key(b"k"), b"blind/k");
        assert_eq!(IDENTIFIED_RESPONSE.key(b"k"), b"identified/k");
        assert_eq!(REISSUE_RESPONSE.key(b"k"), b"reissue/k");
        assert_eq!(5u64.to_raw(), [5, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(device.to_raw(), device.as_bytes());
    }

    #[test]
    fn refund_keys_group_a_payment_under_its_merchant_and_request() {
        let (merchant, request): (MerchantId, RequestId) = (id(1), id(2));
        let prefix = payment_prefix(merchant, request);
        assert_eq!(
            prefix,
            [&merchant.as_bytes()[..], &request.as_bytes()[..]].concat()
        );
        let digest = ContentDigest::of(b"payment");
        let payment = payment_key(merchant, request, digest);
        assert!(payment.starts_with(&prefix) && payment.ends_with(digest.as_bytes()));
        let mut third = prefix.clone();
        third.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 3]);
        assert_eq!(refund_slot_key(merchant, request, 3), third);
        let refund: RefundId = id(3);
        assert_eq!(
            refund_key(merchant, refund),
            [&merchant.as_bytes()[..], &refund.as_bytes()[..]].concat()
        );
    }

    #[test]
    fn generation_zero_freezes_claim_under_the_bare_account_id() {
        let account: AccountId = id(0x0a0b);
        assert_eq!(freeze_claim_key(account, 0), account.as_bytes());
        let mut second = account.as_bytes().to_vec();
        second.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(freeze_claim_key(account, 1), second);
        assert_eq!(unfreeze_key(account, 1), second);
    }

    #[test]
    fn certificates_are_scanned_in_the_order_they_expire() {
        let late = expiry_key(Timestamp::from_unix_millis(256), id(1));
        let early = expiry_key(Timestamp::from_unix_millis(255), id(u128::MAX));
        assert!(
            early < late,
            "an earlier expiry must sort first whatever the serial"
        );
        assert_eq!(
            parse_expiry_key(&late),
            Some((Timestamp::from_unix_millis(256), id(1)))
        );
        assert_eq!(parse_expiry_key(&late[..23]), None);
    }

    #[test]
    fn a_device_coin_key_names_its_device_and_coin() {
        let key = device_coin_key(id(7), id(9));
        assert_eq!(parse_device_coin_key(&key), Some((id(7), id(9))));
        assert_eq!(parse_device_coin_key(&key[..31]), None);
    }

    #[test]
    fn raw_values_refuse_bytes_of_another_width() {
        let record: RecordId = id(42);
        assert_eq!(RecordId::from_raw(&record.to_raw()), Some(record));
        assert_eq!(RecordId::from_raw(&[0; 15]), None);
        assert_eq!(u64::from_raw(&7u64.to_raw()), Some(7));
        assert_eq!(u64::from_raw(&[0; 9]), None);
    }
}
