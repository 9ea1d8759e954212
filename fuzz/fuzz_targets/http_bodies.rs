//! Every HTTP request body the issuer server decodes, as JSON and as the canonical binary
//! codec with the server's limit: the first byte picks the type. See
//! `scrip_fuzz::http_bodies`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    scrip_fuzz::http_bodies(data);
});
