//! The wallet's integration tests use the shared test kit (`scrip-testkit`): an issuer core in
//! process, phones (wallets that save before they release) and a bare merchant side built
//! from tokens (`Shop`; the merchant crate is not a dependency of the wallet). What is fixed
//! here is this harness's key window (30 days before `NOW` to 300 after) and a few
//! wallet-specific readers.

#![allow(dead_code, clippy::panic)]

use scrip_stores::MemoryStore;
// `issuer` below shadows the kit's, which takes the store and validity as arguments.
pub use scrip_testkit::*;
use scrip_tokens::*;
use scrip_wallet::WalletError;

/// The fixture keys' window in these tests.
pub fn validity() -> Validity {
    validity_around(NOW, DAY * 30, DAY * 300)
}

/// An issuer over a memory store, signing with the fixture keys (EUR coins of 1, 2, 5, 10).
pub fn issuer() -> TestIssuer {
    scrip_testkit::issuer(MemoryStore::new(), validity())
}

/// The record inside a payment by record.
pub fn record_of(answer: &PaymentAnswer) -> &WithdrawalRecord {
    match answer {
        PaymentAnswer::ByRecord { record, .. } => record,
        PaymentAnswer::ByCoins(_) => panic!("expected a payment by record"),
    }
}

/// The coins inside a payment by coins.
pub fn coins_of(answer: &PaymentAnswer) -> &[Coin] {
    match answer {
        PaymentAnswer::ByCoins(payment) => &payment.coins,
        PaymentAnswer::ByRecord { .. } => panic!("expected a payment by coins"),
    }
}

/// The error of a result whose success type has no `Debug` (a `Wallet`).
pub fn error_of<T>(result: Result<T, WalletError>) -> WalletError {
    match result {
        Ok(_) => panic!("expected an error"),
        Err(e) => e,
    }
}
