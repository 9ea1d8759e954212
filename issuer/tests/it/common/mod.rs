//! The issuer's integration tests use the shared test kit (`scrip-testkit`): an issuer core
//! over the fixture keys, and token-level wallet (`RawWallet`) and merchant (`Shop`) sides
//! that build the signed requests a real wallet or point of sale would send. What is fixed
//! here is this harness's key window: half a year either side of `NOW`.

#![allow(dead_code)]

use scrip_issuer::{IssuerConfig, Keyring};
use scrip_stores::RecordStore;
// `issuer`, `issuer_with` and `fixture_keyring` below shadow the kit's, which take the
// validity as an argument.
pub use scrip_testkit::*;
use scrip_tokens::Validity;

/// Keys valid for a year around `NOW`; one EUR keyset of 1, 2, 5 and 10.
pub fn key_validity() -> Validity {
    validity_around(NOW, DAY * 180, DAY * 180)
}

/// The fixture keyring, valid for [`key_validity`].
pub fn fixture_keyring() -> Keyring {
    scrip_testkit::fixture_keyring(key_validity())
}

/// An issuer core over `store` with the fixture keys and default limits.
pub fn issuer<S: RecordStore>(store: S) -> TestIssuer<S> {
    scrip_testkit::issuer(store, key_validity())
}

/// An issuer core over `store` with the fixture keys and `config`'s limits.
pub fn issuer_with<S: RecordStore>(store: S, config: IssuerConfig) -> TestIssuer<S> {
    scrip_testkit::issuer_with(store, key_validity(), config)
}
