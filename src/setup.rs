//! What the demo, the load run and the command line share: the wall clock, deciding which
//! issuer root key to trust, and registering a merchant key with the operator token.

use std::io::Write;

use rand::rngs::StdRng;
use rand::Rng;
use scrip_tokens::keys::{DirectoryRoot, Merchant as MerchantRole};
use scrip_tokens::{
    MerchantCategory, MerchantCertificate, MerchantRegistration, MerchantRegistrationPayload,
    Region, SigningKey, Timestamp, VerifyingKey,
};

use crate::client::HttpClient;
use crate::Error;

/// The wall clock (the protocol crates read none: every call takes `now`).
pub fn now() -> Timestamp {
    scrip_issuer::server::now()
}

/// The root key to trust: pinned from a file when one is given, else fetched (trust on
/// first use, said out loud).
pub async fn root_key(
    client: &HttpClient,
    pinned: Option<&std::path::Path>,
    out: &mut dyn Write,
) -> Result<VerifyingKey<DirectoryRoot>, Error> {
    if let Some(path) = pinned {
        let pem = std::fs::read_to_string(path)
            .map_err(Error::io(format!("reading {}", path.display())))?;
        return Ok(VerifyingKey::from_pem(&pem)?);
    }
    let key = client.root_key().await?.key;
    let _ = writeln!(
        out,
        "  (no --root-key given: trusting the server's root key {} on first use)",
        key.key_id()
    );
    Ok(key)
}

/// Registers a new merchant key with the operator token.
pub async fn register_merchant(
    client: &HttpClient,
    key: &SigningKey<MerchantRole>,
    category: MerchantCategory,
    region: &str,
    rng: &mut StdRng,
) -> Result<MerchantCertificate, Error> {
    let mut nonce = [0u8; 16];
    rng.fill_bytes(&mut nonce);
    let registration = MerchantRegistration::sign(
        MerchantRegistrationPayload {
            merchant_key: key.verifying_key().clone(),
            category,
            region: Region::new(region)?,
            created_at: now(),
            nonce,
        },
        key,
        rng,
    )?;
    Ok(client.register_merchant(&registration).await?)
}
