//! The merchant's offline verification of a wallet's payment answer: the input is the
//! answer's bytes, handed to `Merchant::accept_bytes` of a merchant (fixture keys,
//! `MemoryStore`) with one open offer. See `scrip_fuzz::merchant_accept`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = scrip_fuzz::merchant_accept(data);
});
