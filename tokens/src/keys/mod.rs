//! Keys, typed by role: RSA-PSS signing and verifying keys for certificates, requests,
//! records and identified coins; RFC 9474 blind-signature keys for coin denominations.

pub mod backend;
mod denomination;
#[cfg(feature = "fast")]
mod fast;
mod pss;
mod role;

pub use backend::Backend;

pub use denomination::{
    BlindSignature, BlindedMessage, DenominationSigningKey, DenominationVerifyingKey,
};
pub use pss::{PublicKey, Signature, SigningKey, VerifyingKey, DEFAULT_RSA_BITS, RSA_BITS};
pub use role::{
    AccountCertifier, AnswerSigner, BalanceCertifier, DepositIssuer, Device, DirectoryRoot,
    IdentifiedCoinIssuer, IssuerKeyRole, IssuerRole, Merchant, MerchantCertifier, Role,
};
