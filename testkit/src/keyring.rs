//! The issuer's keys and an issuer core over them.

use std::time::Duration;

use scrip_issuer::{
    InMemoryFunding, Issuer, IssuerConfig, IssuerKey, Keyring, KeysetKeys, RoleKeys,
};
use scrip_stores::{MemoryStore, RecordStore};
use scrip_tokens::fixtures::{self, NOW};
use scrip_tokens::keys::{DirectoryRoot, IssuerRole};
use scrip_tokens::{Backend, KeyDirectory, Keyset, SigningKey, Timestamp, Validity, VerifyingKey};

use crate::EUR;

/// `before` before `center` to `after` after it. Each harness keeps its own window (see
/// [`fixture_keyring`]), so it passes the validity in rather than the kit choosing one.
pub fn validity_around(center: Timestamp, before: Duration, after: Duration) -> Validity {
    Validity::new(center.saturating_sub(before), center.saturating_add(after)).unwrap()
}

fn role<R: IssuerRole>(key: SigningKey<R>, validity: Validity) -> RoleKeys<R> {
    RoleKeys::new(vec![IssuerKey { key, validity }]).unwrap()
}

/// Every issuer key from `scrip_tokens::fixtures`, each valid for `validity`, and one EUR
/// keyset of 1, 2, 5 and 10 redeemable until the end of it. The one place a test or
/// benchmark assembles a keyring from the fixture keys; the fixed keys keep tests fast (no
/// RSA key generation) and golden vectors stable.
///
/// The window differs by harness and must stay as it is there, or tests about expiry change
/// meaning: the issuer's tests and the benchmarks use `NOW` ± 180 days, the wallet's and
/// merchant's `NOW` − 30 to + 300 days, and the server tests a window around the wall clock.
pub fn fixture_keyring(validity: Validity) -> Keyring {
    let denominations = fixtures::DENOMINATIONS
        .iter()
        .map(|v| (*v, fixtures::denomination(*v).unwrap()))
        .collect();
    Keyring {
        root: fixtures::directory_root(),
        account_certifier: role(fixtures::account_certifier(), validity),
        merchant_certifier: role(fixtures::merchant_certifier(), validity),
        balance_certifier: role(fixtures::balance_certifier(), validity),
        deposit_issuer: role(fixtures::deposit_issuer(), validity),
        identified_coin_issuer: role(fixtures::identified_coin_issuer(), validity),
        answer_signer: role(fixtures::answer_signer(), validity),
        keysets: vec![KeysetKeys::new(EUR, validity, validity.not_after, denominations).unwrap()],
    }
}

/// An issuer core whose deposits are paid by [`InMemoryFunding`] (no bank), over a memory
/// store unless said otherwise.
pub type TestIssuer<S = MemoryStore> = Issuer<S, InMemoryFunding>;

/// The crypto backend the tests run issuers and servers on: the one named by
/// `SCRIP_CRYPTO_BACKEND` (the variable `scrip-server` reads for `--crypto-backend`), else
/// the fastest compiled in, as the server runs. The workspace's test command runs the
/// issuer's tests on the fast backend; CI runs the same test binaries again with
/// `SCRIP_CRYPTO_BACKEND=rustcrypto`, on the pure-Rust one (`.ci/run`).
pub fn backend() -> Backend {
    match std::env::var("SCRIP_CRYPTO_BACKEND") {
        Ok(name) => name
            .parse()
            .unwrap_or_else(|e| panic!("SCRIP_CRYPTO_BACKEND: {e}")),
        Err(_) => Backend::fastest(),
    }
}

/// An issuer core over `store` with the fixture keys valid for `validity` and default
/// limits, on the tests' crypto backend ([`backend`]).
pub fn issuer<S: RecordStore>(store: S, validity: Validity) -> TestIssuer<S> {
    issuer_with(
        store,
        validity,
        IssuerConfig {
            backend: backend(),
            ..IssuerConfig::default()
        },
    )
}

/// An issuer core over `store` with the fixture keys valid for `validity` and `config`'s
/// limits.
pub fn issuer_with<S: RecordStore>(
    store: S,
    validity: Validity,
    config: IssuerConfig,
) -> TestIssuer<S> {
    Issuer::new(
        store,
        InMemoryFunding::new(),
        fixture_keyring(validity),
        config,
    )
}

/// The directory root's public key: what wallets and merchants verify the issuer's key
/// directory against.
pub fn root() -> VerifyingKey<DirectoryRoot> {
    fixtures::directory_root().verifying_key().clone()
}

/// The issuer's (unsigned) key directory at [`NOW`]: what coins and certificates are
/// verified against.
pub fn directory<S: RecordStore>(issuer: &TestIssuer<S>) -> KeyDirectory {
    issuer.keys().directory(NOW).unwrap()
}

/// The EUR keyset of `directory` current at [`NOW`]: what blind coins are withdrawn under.
pub fn keyset(directory: &KeyDirectory) -> Keyset {
    directory.current_keyset(EUR, NOW).unwrap().clone()
}
