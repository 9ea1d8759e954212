#![doc = include_str!("../README.md")]
// Test code: a fixture that cannot be built is a broken test, and panicking with the cause is
// the clearest report. The workspace denies these lints for library code only.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod keyring;
mod phone;
mod raw_wallet;
mod shop;

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use scrip_tokens::{Amount, Currency, Nonce, Timestamp};

pub use keyring::{
    backend, directory, fixture_keyring, issuer, issuer_with, keyset, root, validity_around,
    TestIssuer,
};
pub use phone::{up_to, Phone};
pub use raw_wallet::{finalize, registration, swap_request, RawWallet};
/// The fixed "now" of every fixture (2026-01-01T00:00:00Z), re-exported for convenience.
pub use scrip_tokens::fixtures::NOW;
pub use shop::{rejection, Shop};

/// The currency of every fixture keyset.
pub const EUR: Currency = Currency::EUR;
/// A day.
pub const DAY: Duration = Duration::from_secs(86_400);
/// An hour.
pub const HOUR: Duration = Duration::from_secs(3_600);
/// A minute.
pub const MINUTE: Duration = Duration::from_secs(60);

/// `minor_units` euro cents.
pub fn eur(minor_units: u64) -> Amount {
    Amount::new(minor_units, EUR)
}

/// Coin values in EUR minor units, as the wallet takes them.
pub fn eurs(minor_units: &[u64]) -> Vec<Amount> {
    minor_units.iter().map(|v| eur(*v)).collect()
}

/// A deterministic random number generator: the same `seed` replays the same test.
pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// A fresh request nonce drawn from `rng`.
pub fn nonce(rng: &mut StdRng) -> Nonce {
    let mut n = Nonce::default();
    rng.fill_bytes(&mut n);
    n
}

/// [`NOW`] plus `minutes`: tests read as a timeline ("at minute 3").
pub fn at(minutes: u32) -> Timestamp {
    NOW.saturating_add(MINUTE * minutes)
}
