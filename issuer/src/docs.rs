//! What the issuer keeps in the store's document collections, and how keys are built.
//! Every value is a versioned codec message (`scrip/issuer/<name>/v1`).

use scrip_stores::{Collection, LedgerAccount};
use scrip_tokens::{
    AccountCertificate, AccountId, Amount, BalanceCertificate, CertificateSerial, CoinId,
    ContentDigest, DeviceId, IdentifiedCoin, MerchantCertificate, MerchantId, Message, RecordId,
    Timestamp, VirtualId, WithdrawalRecord,
};
use serde::{Deserialize, Serialize};

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

/// `a || b` for composite keys of fixed-width parts.
pub(crate) fn key2(a: &[u8], b: &[u8]) -> Vec<u8> {
    [a, b].concat()
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

/// A balance certificate the issuer signed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateDoc {
    /// The certificate.
    pub certificate: BalanceCertificate,
}
doc!(CertificateDoc, "certificate");

/// The end of a certificate's reservation.
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

/// One entry of the fraud log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FraudEntry {
    /// When the issuer noticed.
    pub at: Timestamp,
    /// What.
    pub kind: FraudKind,
}
doc!(FraudEntry, "fraud-entry");

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

/// Digest of a device-signed record: the identity both copies (merchant's, customer's)
/// share.
pub(crate) fn record_digest(record: &WithdrawalRecord) -> crate::Result<ContentDigest> {
    Ok(scrip_tokens::codec::digest(record)?)
}
