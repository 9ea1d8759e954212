//! Key roles. Every signing and verifying key is typed by the role it plays, so an
//! account-certificate key cannot be handed to code that signs balance certificates, and
//! a device key cannot verify a merchant's payment request: the compiler refuses.

use serde::{Deserialize, Serialize};

mod sealed {
    pub trait Sealed {}
}

/// The role a key plays. Sealed: the set of roles is part of the protocol.
pub trait Role: sealed::Sealed + Send + Sync + 'static {
    /// Human-readable name, used in errors.
    const NAME: &'static str;
}

/// A role held by the issuer; keys of these roles are listed in the
/// [`KeyDirectory`](crate::KeyDirectory).
pub trait IssuerRole: Role {
    /// The directory's name for this role.
    const KIND: IssuerKeyRole;
}

/// The issuer's RSA-PSS key roles as listed in the key directory. (Blind denomination keys
/// are listed separately, grouped in keysets.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[non_exhaustive]
pub enum IssuerKeyRole {
    /// Signs [`AccountCertificate`](crate::AccountCertificate)s.
    AccountCertificate,
    /// Signs [`MerchantCertificate`](crate::MerchantCertificate)s.
    MerchantCertificate,
    /// Signs [`BalanceCertificate`](crate::BalanceCertificate)s.
    BalanceCertificate,
    /// Signs [`DepositRecord`](crate::DepositRecord)s.
    Deposit,
    /// Signs [`IdentifiedCoin`](crate::IdentifiedCoin)s.
    IdentifiedCoin,
    /// Signs the answers clients act on: [`RedemptionReport`](crate::RedemptionReport)s,
    /// [`SyncReport`](crate::SyncReport)s and [`Statement`](crate::Statement)s.
    Answer,
}

impl IssuerKeyRole {
    /// Human-readable name (the same as the matching [`Role::NAME`]).
    pub const fn name(self) -> &'static str {
        match self {
            IssuerKeyRole::AccountCertificate => AccountCertifier::NAME,
            IssuerKeyRole::MerchantCertificate => MerchantCertifier::NAME,
            IssuerKeyRole::BalanceCertificate => BalanceCertifier::NAME,
            IssuerKeyRole::Deposit => DepositIssuer::NAME,
            IssuerKeyRole::IdentifiedCoin => IdentifiedCoinIssuer::NAME,
            IssuerKeyRole::Answer => AnswerSigner::NAME,
        }
    }
}

macro_rules! role {
    ($(#[$doc:meta])* $name:ident, $text:literal $(, issuer: $kind:ident)?) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum $name {}
        impl sealed::Sealed for $name {}
        impl Role for $name {
            const NAME: &'static str = $text;
        }
        $(impl IssuerRole for $name {
            const KIND: IssuerKeyRole = IssuerKeyRole::$kind;
        })?
    };
}

role!(
    /// The issuer's account-certificate key.
    AccountCertifier, "account-certifier", issuer: AccountCertificate
);
role!(
    /// The issuer's merchant-certificate key.
    MerchantCertifier, "merchant-certifier", issuer: MerchantCertificate
);
role!(
    /// The issuer's balance-certificate key.
    BalanceCertifier, "balance-certifier", issuer: BalanceCertificate
);
role!(
    /// The issuer's deposit-record key.
    DepositIssuer, "deposit-issuer", issuer: Deposit
);
role!(
    /// The issuer's key for identified (traceable) coins.
    IdentifiedCoinIssuer, "identified-coin-issuer", issuer: IdentifiedCoin
);
role!(
    /// The issuer's key for the answers clients act on (redemption and sync reports,
    /// statements): a merchant marks payments settled, and a wallet forgets what it handed
    /// in, only on an answer this key signed.
    AnswerSigner, "answer-signer", issuer: Answer
);
role!(
    /// The issuer's root key: signs the [`KeyDirectory`](crate::KeyDirectory). Wallets and
    /// merchants pin its public key out of band; it is not listed in the directory.
    DirectoryRoot, "directory-root"
);
role!(
    /// A customer device: signs withdrawal records, deposit requests and confirmations.
    Device, "device"
);
role!(
    /// A merchant: signs payment requests, countersigns records, endorses coin payments.
    Merchant, "merchant"
);
