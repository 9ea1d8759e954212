//! Every crypto backend gives the same answers: byte-identical blind signatures, each
//! one's signatures verify under every other, they refuse the same malformed inputs and
//! signatures, and a faulty private-key result is withheld whichever backend made it.
//!
//! Built with the feature `fast` (as in the workspace's test command, where the server
//! enables it) this compares the pure-Rust backend with the OpenSSL/aws-lc one; without it
//! (`cargo test -p scrip-tokens`), the pure-Rust backend with itself.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::sync::Arc;

use common::*;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rand_core::CryptoRng;
use scrip_tokens::fixtures;
use scrip_tokens::hazmat::Rfc9474;
use scrip_tokens::keys::backend::{BlindSigner, PssSigner};
use scrip_tokens::keys::{Device, Merchant};
use scrip_tokens::*;
use zeroize::Zeroizing;

fn denomination_on(minor_units: u64, backend: Backend) -> DenominationSigningKey {
    let key = fixtures::denomination(minor_units)
        .unwrap()
        .on_backend(backend)
        .unwrap();
    assert_eq!(key.backend(), backend);
    key
}

#[test]
fn every_backend_is_listed_once_and_parses_by_name() {
    assert_eq!(Backend::ALL[0], Backend::default());
    assert!(Backend::ALL.contains(&Backend::fastest()));
    for b in Backend::ALL {
        assert_eq!(b.name().parse::<Backend>().unwrap(), *b);
        assert_eq!(Backend::ALL.iter().filter(|o| o == &b).count(), 1);
    }
    assert!(matches!(
        "hsm".parse::<Backend>(),
        Err(Error::UnknownBackend(_))
    ));
    #[cfg(feature = "fast")]
    assert_eq!(Backend::fastest().name(), "fast");
}

#[test]
fn blind_signatures_are_byte_identical_across_backends() {
    let mut rng = rng(1);
    for minor_units in fixtures::DENOMINATIONS {
        let keys: Vec<_> = Backend::ALL
            .iter()
            .map(|b| denomination_on(minor_units, *b))
            .collect();
        let public = keys[0].verifying_key().clone();
        for i in 0..24 {
            let message = format!("coin message {minor_units}/{i}").into_bytes();
            let blinding = public.blind_message(&mut rng, &message).unwrap();
            let signatures: Vec<_> = keys
                .iter()
                .map(|k| k.sign_blinded(&mut rng, &blinding.blinded).unwrap())
                .collect();
            for s in &signatures[1..] {
                assert_eq!(s, &signatures[0], "denomination {minor_units}, message {i}");
            }
            // The coin signature verifies on every backend, and only for its message.
            let coin = public
                .finalize_message(&signatures[0], &blinding, &message)
                .unwrap();
            for k in &keys {
                let key = k.verifying_key();
                key.verify_message(&coin, blinding.randomizer, &message)
                    .unwrap();
                let mut other = message.clone();
                other[0] ^= 1;
                assert_eq!(
                    key.verify_message(&coin, blinding.randomizer, &other),
                    Err(Error::BadSignature)
                );
                let mut randomizer = blinding.randomizer;
                randomizer[31] ^= 1;
                assert_eq!(
                    key.verify_message(&coin, randomizer, &message),
                    Err(Error::BadSignature)
                );
            }
        }
    }
}

#[test]
fn random_blinded_inputs_sign_identically_and_out_of_range_ones_are_refused_by_all() {
    // Not only messages a wallet blinded: any integer below the modulus.
    let mut rng = rng(2);
    let keys: Vec<_> = Backend::ALL
        .iter()
        .map(|b| denomination_on(5, *b))
        .collect();
    for _ in 0..32 {
        let mut input = vec![0u8; 256];
        rng.fill(&mut input[..]);
        input[0] &= 0x7f; // below every 2048-bit modulus (its top bit is set)
        let blinded = BlindedMessage(input);
        let first = keys[0].sign_blinded(&mut rng, &blinded).unwrap();
        for k in &keys[1..] {
            assert_eq!(k.sign_blinded(&mut rng, &blinded).unwrap(), first);
        }
    }
    for bad in [
        vec![0xff; 256], // above the modulus
        vec![0x01; 255], // one byte short
        vec![0x01; 257], // one byte long
        Vec::new(),      // empty
    ] {
        for k in &keys {
            assert!(
                matches!(
                    k.sign_blinded(&mut rng, &BlindedMessage(bad.clone())),
                    Err(Error::Blind(_))
                ),
                "{} signed a {}-byte input it must refuse",
                k.backend(),
                bad.len()
            );
        }
    }
}

#[test]
fn pss_signatures_cross_verify_both_ways() {
    let mut rng = rng(3);
    let signers: Vec<SigningKey<Device>> = Backend::ALL
        .iter()
        .map(|b| fixtures::device(1).on_backend(*b).unwrap())
        .collect();
    for signer in &signers {
        let payload = fixtures::Specimens::new(&mut rng).record.payload.clone();
        let record = WithdrawalRecord::sign(payload, signer, &mut rng).unwrap();
        assert_eq!(record.signature.as_bytes().len(), 256);
        for verifier in Backend::ALL {
            let key = signer.verifying_key().on_backend(*verifier);
            assert_eq!(key.public_key().backend(), *verifier);
            record.verify_signature(&key).unwrap();
            let mut forged = record.clone();
            forged.payload.sequence += 1;
            assert_eq!(
                forged.verify_signature(&key).map(|_| ()),
                Err(Error::BadSignature),
                "signed on {}, verified on {verifier}",
                signer.backend()
            );
        }
    }
}

/// Signatures that are valid RSA-PSS but not scrip's parameters, or not signatures at all,
/// are refused by every backend alike: a merchant (pure Rust) and the issuer (fast) never
/// disagree on whether a device signed.
#[test]
fn every_backend_refuses_the_same_malformed_signatures() {
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::signature::{RandomizedSigner, SignatureEncoding};

    let mut rng = rng(4);
    let signer = fixtures::device(2);
    let message = b"scrip/withdrawal-record/v1 stand-in".to_vec();
    let good = Signed::<WithdrawalRecordPayload>::sign(
        fixtures::Specimens::new(&mut rng).record.payload.clone(),
        &signer,
        &mut rng,
    )
    .unwrap();
    let raw = rsa::RsaPrivateKey::from_pkcs8_der(&signer.to_der().unwrap()).unwrap();
    let mut candidates: Vec<(String, Vec<u8>)> = Vec::new();
    for salt_len in [0usize, 20, 31, 33, 48] {
        let other =
            rsa::pss::BlindedSigningKey::<sha2::Sha256>::new_with_salt_len(raw.clone(), salt_len);
        let sig = other.sign_with_rng(&mut rng, &message).to_vec();
        candidates.push((format!("salt length {salt_len}"), sig));
    }
    let sha384 = rsa::pss::BlindedSigningKey::<sha2::Sha384>::new(raw.clone())
        .sign_with_rng(&mut rng, &message)
        .to_vec();
    candidates.push(("SHA-384".into(), sha384));
    let good_sig = good.signature.as_bytes().to_vec();
    candidates.push(("truncated".into(), good_sig[..255].to_vec()));
    candidates.push(("all ones (above n)".into(), vec![0xff; 256]));
    candidates.push(("zero".into(), vec![0; 256]));
    candidates.push(("one".into(), {
        let mut v = vec![0; 256];
        v[255] = 1;
        v
    }));

    for (what, sig) in &candidates {
        for backend in Backend::ALL {
            let key = signer.verifying_key().on_backend(*backend);
            let as_record = Signed {
                payload: good.payload.clone(),
                key_id: good.key_id,
                signature: Signature(sig.clone()),
            };
            assert_eq!(
                as_record.verify_signature(&key).map(|_| ()),
                Err(Error::BadSignature),
                "{backend} accepted a signature with {what}"
            );
        }
    }
    // And a correct salt length over the same bytes verifies everywhere: the refusals
    // above are about the parameters, not the harness.
    for backend in Backend::ALL {
        good.verify_signature(&signer.verifying_key().on_backend(*backend))
            .unwrap();
    }
}

#[test]
fn rfc9474_vector_signs_and_verifies_on_every_backend() {
    // The RFC's own key and blinded message (interop/vectors/rfc9474.json): every backend
    // must return the RFC's blind signature, which the interop tests check end to end.
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../interop/vectors/rfc9474.json"
    ))
    .unwrap();
    let all: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    let v = all
        .iter()
        .find(|v| v["name"] == "RSABSSA-SHA384-PSS-Randomized")
        .unwrap();
    let hex = |field: &str| {
        let s = v[field].as_str().unwrap();
        hex::decode(s.strip_prefix("0x").unwrap_or(s)).unwrap()
    };
    let big = |field: &str| rsa::BoxedUint::from_be_slice_vartime(&hex(field));
    let secret =
        rsa::RsaPrivateKey::from_components(big("n"), big("e"), big("d"), vec![big("p"), big("q")])
            .unwrap();
    let der = rsa::pkcs8::EncodePrivateKey::to_pkcs8_der(&secret).unwrap();
    let base = DenominationSigningKey::from_der(der.as_bytes()).unwrap();
    for backend in Backend::ALL {
        let key = base.on_backend(*backend).unwrap();
        let blind_sig = key
            .sign_blinded(&mut rng(5), &BlindedMessage(hex("blinded_msg")))
            .unwrap();
        assert_eq!(blind_sig.0, hex("blind_sig"), "{backend}");
        let msg = hex("msg");
        let prefix: [u8; 32] = hex("msg_prefix").try_into().unwrap();
        let sig = Signature(hex("sig"));
        key.verifying_key()
            .verify_message(&sig, prefix, &msg)
            .unwrap();
        let mut wrong = msg.clone();
        wrong[0] ^= 1;
        assert_eq!(
            key.verifying_key().verify_message(&sig, prefix, &wrong),
            Err(Error::BadSignature)
        );
    }
}

/// A signer whose private-key operation returns a corrupted result, as a CRT fault would:
/// with RSA-CRT, one such result reveals a factor of the modulus (Boneh-DeMillo-Lipton).
struct Faulty<S: ?Sized>(Arc<S>);

impl BlindSigner for Faulty<dyn BlindSigner> {
    fn public_key(&self) -> &PublicKey {
        self.0.public_key()
    }
    fn rsasp1(&self, rng: &mut dyn CryptoRng, input: &[u8]) -> Result<Vec<u8>> {
        let mut out = self.0.rsasp1(rng, input)?;
        out[100] ^= 0x10;
        Ok(out)
    }
}

impl PssSigner for Faulty<dyn PssSigner> {
    fn public_key(&self) -> &PublicKey {
        self.0.public_key()
    }
    fn sign_pss_sha256(&self, rng: &mut dyn CryptoRng, message: &[u8]) -> Result<Vec<u8>> {
        let mut out = self.0.sign_pss_sha256(rng, message)?;
        out[100] ^= 0x10;
        Ok(out)
    }
    fn to_pkcs8_der(&self) -> Result<Zeroizing<Vec<u8>>> {
        self.0.to_pkcs8_der()
    }
}

#[test]
fn a_faulty_private_key_result_is_withheld_on_every_backend() {
    let mut rng = rng(6);
    for backend in Backend::ALL {
        let key = denomination_on(10, *backend);
        let faulty = DenominationSigningKey::from_signer(Arc::new(Faulty(key.signer()))).unwrap();
        let blinding = key
            .verifying_key()
            .blind_message(&mut rng, b"a coin")
            .unwrap();
        // The healthy key signs; the same key with a fault signs nothing.
        key.sign_blinded(&mut rng, &blinding.blinded).unwrap();
        assert_eq!(
            faulty.sign_blinded(&mut rng, &blinding.blinded),
            Err(Error::SigningFault),
            "{backend}"
        );

        let signer = fixtures::merchant(1).on_backend(*backend).unwrap();
        let faulty: SigningKey<Merchant> =
            SigningKey::from_signer(Arc::new(Faulty(signer.signer()))).unwrap();
        let payload = fixtures::Specimens::new(&mut rng).request.payload.clone();
        PaymentRequest::sign(payload.clone(), &signer, &mut rng).unwrap();
        assert_eq!(
            PaymentRequest::sign(payload, &faulty, &mut rng),
            Err(Error::SigningFault),
            "{backend}"
        );
    }
}

#[test]
fn keys_keep_their_identity_and_files_on_every_backend() {
    // Stored key files do not change: a key moved to a backend exports the same key.
    for backend in Backend::ALL {
        let pss = fixtures::balance_certifier();
        let moved = pss.on_backend(*backend).unwrap();
        assert_eq!(moved.key_id(), pss.key_id());
        let again =
            SigningKey::<keys::BalanceCertifier>::from_der(&moved.to_der().unwrap()).unwrap();
        assert_eq!(again.verifying_key(), pss.verifying_key());

        let blind = fixtures::denomination(2).unwrap();
        let moved = blind.on_backend(*backend).unwrap();
        assert_eq!(moved.key_id(), blind.key_id());
        assert_eq!(moved.verifying_key(), blind.verifying_key());
        let again = DenominationSigningKey::from_pem(&moved.to_pem().unwrap()).unwrap();
        assert_eq!(again.key_id(), blind.key_id());
    }
}

/// A key held elsewhere: the typed key signs through it and cannot export it.
struct Remote(Arc<dyn PssSigner>);

impl PssSigner for Remote {
    fn public_key(&self) -> &PublicKey {
        self.0.public_key()
    }
    fn sign_pss_sha256(&self, rng: &mut dyn CryptoRng, message: &[u8]) -> Result<Vec<u8>> {
        self.0.sign_pss_sha256(rng, message)
    }
}

#[test]
fn a_key_held_elsewhere_signs_but_is_not_exportable() {
    let mut rng = rng(7);
    let local = fixtures::merchant(2);
    let remote: SigningKey<Merchant> =
        SigningKey::from_signer(Arc::new(Remote(local.signer()))).unwrap();
    assert_eq!(remote.key_id(), local.key_id());
    let payload = fixtures::Specimens::new(&mut rng).request.payload.clone();
    let signed = PaymentRequest::sign(payload, &remote, &mut rng).unwrap();
    signed.verify_signature(local.verifying_key()).unwrap();
    assert!(matches!(remote.to_der(), Err(Error::KeyNotExportable)));
    assert!(matches!(remote.to_pem(), Err(Error::KeyNotExportable)));
    assert!(matches!(
        remote.on_backend(Backend::fastest()),
        Err(Error::KeyNotExportable)
    ));
}

#[test]
fn seeded_signing_stays_deterministic_on_the_default_backend() {
    // The pure-Rust backend draws salt and blinding from the caller's generator, so a
    // seeded run reproduces its signatures (the golden vectors rely on it).
    let a = PaymentRequest::sign(
        fixtures::Specimens::new(&mut rng(8))
            .request
            .payload
            .clone(),
        &fixtures::merchant(1),
        &mut StdRng::seed_from_u64(9),
    )
    .unwrap();
    let b = PaymentRequest::sign(
        fixtures::Specimens::new(&mut rng(8))
            .request
            .payload
            .clone(),
        &fixtures::merchant(1),
        &mut StdRng::seed_from_u64(9),
    )
    .unwrap();
    assert_eq!(a, b);
}

#[test]
fn keys_with_another_public_exponent_verify_alike_on_every_backend() {
    // RSA-PSS keys of devices and merchants may use any public exponent the parser
    // accepts (where a backend could not load one, the key would keep the pure-Rust
    // verifier): the server and a merchant agree on every signature under it.
    use rsa::pkcs8::EncodePrivateKey;
    let mut rng = rng(10);
    let raw = rsa::RsaPrivateKey::new_with_exp(&mut rng, 2048, rsa::BoxedUint::from(3u32)).unwrap();
    let signer = SigningKey::<Device>::from_der(raw.to_pkcs8_der().unwrap().as_bytes()).unwrap();
    let payload = fixtures::Specimens::new(&mut rng).record.payload.clone();
    let record = WithdrawalRecord::sign(payload, &signer, &mut rng).unwrap();
    for backend in Backend::ALL {
        let key = signer.verifying_key().on_backend(*backend);
        record.verify_signature(&key).unwrap();
        let mut forged = record.clone();
        forged.payload.sequence += 1;
        assert_eq!(
            forged.verify_signature(&key).map(|_| ()),
            Err(Error::BadSignature)
        );
        // And the key signs on every backend it loads onto.
        let moved = signer.on_backend(*backend).unwrap();
        let again = WithdrawalRecord::sign(record.payload.clone(), &moved, &mut rng).unwrap();
        again.verify_signature(signer.verifying_key()).unwrap();
    }
}

/// `bytes` as a big-endian integer of exactly `len` bytes.
fn be(bytes: &[u8], len: usize) -> Vec<u8> {
    let digits: Vec<u8> = bytes.iter().copied().skip_while(|b| *b == 0).collect();
    let mut out = vec![0u8; len - digits.len()];
    out.extend(digits);
    out
}

#[test]
fn a_nonzero_leading_octet_is_refused_on_every_backend_for_keys_of_8k_plus_1_bits() {
    // With a 2049-bit modulus the PSS encoding is 256 octets, one short of the modulus:
    // RSAVP1's output must start with a zero octet (RFC 8017 §8.1.2). The `rsa` crate
    // skips that octet unchecked, aws-lc checks it. A device with such a key could sign
    // `2^2048 + EM` for a valid encoding EM: a merchant verifying with the pure-Rust
    // backend would accept the record, the issuer (fast) would refuse it.
    use rsa::pkcs8::EncodePrivateKey;
    use rsa::traits::PublicKeyParts;
    let mut rng = rng(11);
    let raw = loop {
        let k = rsa::RsaPrivateKey::new(&mut rng, 2049).unwrap();
        // n ≥ 2^2048 + 2^2047: room above 2^2048 for many encodings.
        let n = be(&k.n().to_be_bytes(), 257);
        if n[0] == 1 && n[1] & 0x80 != 0 {
            break k;
        }
    };
    let precision = raw.n().as_ref().bits_precision();
    let signer = SigningKey::<Device>::from_der(raw.to_pkcs8_der().unwrap().as_bytes()).unwrap();
    let payload = fixtures::Specimens::new(&mut rng).record.payload.clone();
    let n = be(&raw.n().to_be_bytes(), 257);
    // A genuine signature whose encoding EM leaves 2^2048 + EM below n (about half do).
    let (genuine, em) = loop {
        let genuine = WithdrawalRecord::sign(payload.clone(), &signer, &mut rng).unwrap();
        let s = rsa::BoxedUint::from_be_slice(genuine.signature.as_bytes(), precision).unwrap();
        let mut em = be(
            &rsa::hazmat::rsa_encrypt(&raw.to_public_key(), &s)
                .unwrap()
                .to_be_bytes(),
            257,
        );
        assert_eq!(em[0], 0);
        em[0] = 1;
        if em < n {
            break (genuine, em);
        }
    };
    let m = rsa::BoxedUint::from_be_slice(&em, precision).unwrap();
    let forged_sig = rsa::hazmat::rsa_decrypt(None::<&mut StdRng>, &raw, &m).unwrap();
    let forged = Signed {
        signature: Signature(be(&forged_sig.to_be_bytes(), 257)),
        ..genuine.clone()
    };
    for backend in Backend::ALL {
        let key = signer.verifying_key().on_backend(*backend);
        genuine.verify_signature(&key).unwrap();
        assert_eq!(
            forged.verify_signature(&key).map(|_| ()),
            Err(Error::BadSignature),
            "{backend} accepted 2^2048 + EM"
        );
    }
}
