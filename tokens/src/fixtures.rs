//! Pre-generated 2048-bit RSA keys for tests (this crate's and every other crate's), so
//! no test pays for key generation. Generated once with
//! `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048`; never use them for
//! anything real: the private keys are public.

// The PEM documents are compiled into the binary; failing to parse one is a bug in the
// fixture files, not an input error, so panicking is the right answer.
#![allow(clippy::expect_used)]

use crate::keys::{
    AccountCertifier, BalanceCertifier, DenominationSigningKey, DepositIssuer, Device,
    DirectoryRoot, IdentifiedCoinIssuer, IssuerKeyRole, Merchant, MerchantCertifier, Role,
    SigningKey,
};
use crate::{
    Currency, DenominationKeyEntry, IssuerKeyEntry, KeyDirectory, Keyset, SignedKeyDirectory,
    Timestamp, Validity,
};

macro_rules! pem {
    ($name:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/",
            $name,
            ".pem"
        ))
    };
}

fn key<R: Role>(pem: &str) -> SigningKey<R> {
    SigningKey::from_pem(pem).expect("fixture key parses")
}

/// The issuer's root key (signs the key directory).
pub fn directory_root() -> SigningKey<DirectoryRoot> {
    key(pem!("directory-root"))
}

/// The issuer's account-certificate key.
pub fn account_certifier() -> SigningKey<AccountCertifier> {
    key(pem!("account-certifier"))
}

/// The issuer's merchant-certificate key.
pub fn merchant_certifier() -> SigningKey<MerchantCertifier> {
    key(pem!("merchant-certifier"))
}

/// The issuer's balance-certificate key.
pub fn balance_certifier() -> SigningKey<BalanceCertifier> {
    key(pem!("balance-certifier"))
}

/// The issuer's deposit key.
pub fn deposit_issuer() -> SigningKey<DepositIssuer> {
    key(pem!("deposit-issuer"))
}

/// The issuer's identified-coin key.
pub fn identified_coin_issuer() -> SigningKey<IdentifiedCoinIssuer> {
    key(pem!("identified-coin-issuer"))
}

/// How many device fixture keys there are ([`device`] takes `1..=DEVICES`).
pub const DEVICES: u8 = 8;
/// How many merchant fixture keys there are ([`merchant`] takes `1..=MERCHANTS`).
pub const MERCHANTS: u8 = 4;

/// Device key number `n` (1 to [`DEVICES`]; others wrap around).
pub fn device(n: u8) -> SigningKey<Device> {
    match (n.max(1) - 1) % DEVICES + 1 {
        1 => key(pem!("device-1")),
        2 => key(pem!("device-2")),
        3 => key(pem!("device-3")),
        4 => key(pem!("device-4")),
        5 => key(pem!("device-5")),
        6 => key(pem!("device-6")),
        7 => key(pem!("device-7")),
        _ => key(pem!("device-8")),
    }
}

/// Merchant key number `n` (1 to [`MERCHANTS`]; others wrap around).
pub fn merchant(n: u8) -> SigningKey<Merchant> {
    match (n.max(1) - 1) % MERCHANTS + 1 {
        1 => key(pem!("merchant-1")),
        2 => key(pem!("merchant-2")),
        3 => key(pem!("merchant-3")),
        _ => key(pem!("merchant-4")),
    }
}

/// A key that belongs to no one, for "wrong key" tests, as PKCS#8 PEM.
pub fn unrelated_key_pem() -> &'static str {
    pem!("other")
}

/// The denominations that have fixture keys, in minor units.
pub const DENOMINATIONS: [u64; 4] = [1, 2, 5, 10];

/// The blind-signature key of denomination `minor_units` (one of [`DENOMINATIONS`]).
pub fn denomination(minor_units: u64) -> Option<DenominationSigningKey> {
    let pem = match minor_units {
        1 => pem!("denomination-1"),
        2 => pem!("denomination-2"),
        5 => pem!("denomination-5"),
        10 => pem!("denomination-10"),
        _ => return None,
    };
    Some(DenominationSigningKey::from_pem(pem).expect("fixture key parses"))
}

/// Every issuer key, a keyset over [`DENOMINATIONS`] and the matching directory.
pub struct TestIssuer {
    /// Root key (signs the directory).
    pub directory_root: SigningKey<DirectoryRoot>,
    /// Account-certificate key.
    pub account_certifier: SigningKey<AccountCertifier>,
    /// Merchant-certificate key.
    pub merchant_certifier: SigningKey<MerchantCertifier>,
    /// Balance-certificate key.
    pub balance_certifier: SigningKey<BalanceCertifier>,
    /// Deposit key.
    pub deposit_issuer: SigningKey<DepositIssuer>,
    /// Identified-coin key.
    pub identified_coin_issuer: SigningKey<IdentifiedCoinIssuer>,
    /// Denomination keys, by increasing value.
    pub denominations: Vec<(u64, DenominationSigningKey)>,
    /// The keyset of `denominations`.
    pub keyset: Keyset,
    /// The public directory: all keys valid during `validity`.
    pub directory: KeyDirectory,
}

/// The blind keys of [`DENOMINATIONS`] as a keyset open for issuance during all of
/// `validity`.
pub fn keyset(
    currency: Currency,
    validity: Validity,
    denominations: &[(u64, DenominationSigningKey)],
) -> Keyset {
    Keyset::new(
        currency,
        validity,
        validity.not_after,
        denominations
            .iter()
            .map(|(v, k)| DenominationKeyEntry {
                minor_units: *v,
                key: k.verifying_key().clone(),
            })
            .collect(),
    )
    .expect("fixture keyset is valid")
}

impl TestIssuer {
    /// All keys, valid during `validity`, coins in `currency`.
    pub fn new(currency: Currency, validity: Validity) -> Self {
        let denominations: Vec<(u64, DenominationSigningKey)> = DENOMINATIONS
            .iter()
            .filter_map(|&v| denomination(v).map(|k| (v, k)))
            .collect();
        let keyset = keyset(currency, validity, &denominations);
        let account_certifier = account_certifier();
        let merchant_certifier = merchant_certifier();
        let balance_certifier = balance_certifier();
        let deposit_issuer = deposit_issuer();
        let identified_coin_issuer = identified_coin_issuer();
        let entry = |role, key: &crate::PublicKey| IssuerKeyEntry {
            role,
            key: key.clone(),
            validity,
        };
        let issuer_keys = vec![
            entry(
                IssuerKeyRole::AccountCertificate,
                account_certifier.verifying_key().public_key(),
            ),
            entry(
                IssuerKeyRole::MerchantCertificate,
                merchant_certifier.verifying_key().public_key(),
            ),
            entry(
                IssuerKeyRole::BalanceCertificate,
                balance_certifier.verifying_key().public_key(),
            ),
            entry(
                IssuerKeyRole::Deposit,
                deposit_issuer.verifying_key().public_key(),
            ),
            entry(
                IssuerKeyRole::IdentifiedCoin,
                identified_coin_issuer.verifying_key().public_key(),
            ),
        ];
        let directory = KeyDirectory::new(validity.not_before, issuer_keys, vec![keyset.clone()])
            .expect("fixture directory is valid");
        TestIssuer {
            directory_root: directory_root(),
            account_certifier,
            merchant_certifier,
            balance_certifier,
            deposit_issuer,
            identified_coin_issuer,
            denominations,
            keyset,
            directory,
        }
    }

    /// The directory signed by the root key.
    pub fn signed_directory<G: rand_core::CryptoRng + ?Sized>(
        &self,
        rng: &mut G,
    ) -> SignedKeyDirectory {
        SignedKeyDirectory::sign(self.directory.clone(), &self.directory_root, rng)
            .expect("fixture directory signs")
    }

    /// The denomination signing key worth `minor_units`.
    pub fn denomination_key(&self, minor_units: u64) -> Option<&DenominationSigningKey> {
        self.denominations
            .iter()
            .find(|(v, _)| *v == minor_units)
            .map(|(_, k)| k)
    }
}

/// A fixed "now" for tests: 2026-01-01T00:00:00Z.
pub const NOW: Timestamp = Timestamp::from_unix_millis(1_767_225_600_000);
