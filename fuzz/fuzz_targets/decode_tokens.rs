//! Every `scrip-tokens` message type through the canonical codec: the first byte picks
//! the type, the rest is decoded; a decoded value must re-encode to the same bytes and
//! survive a JSON round trip. See `scrip_fuzz::decode_tokens`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    scrip_fuzz::decode_tokens(data);
});
