//! The golden vectors' signatures, checked by implementations that share no code with
//! scrip: the `openssl` command (PSS parameters spelled out on the command line) and
//! Python's `cryptography` package (`interop/verify_vectors.py`). `.ci/run` installs both
//! where they are missing; a machine without them fails here rather than skipping, since a
//! silently skipped interop check is no check.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn interop_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn vectors() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(interop_dir().join("vectors")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if path.extension().is_some_and(|e| e == "json") && name != "rfc9474" {
            let value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            out.push((name, value));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(out.len() >= 15, "vectors missing: {}", out.len());
    out
}

fn hex_field(v: &Value, field: &str) -> Vec<u8> {
    hex::decode(
        v[field]
            .as_str()
            .unwrap_or_else(|| panic!("{field} missing")),
    )
    .unwrap()
}

/// `openssl dgst -verify` with every PSS parameter explicit (no defaults relied on).
fn openssl_verifies(
    dir: &Path,
    spki_der: &[u8],
    message: &[u8],
    signature: &[u8],
    digest: &str,
    salt_len: usize,
) -> bool {
    let (key, msg, sig): (PathBuf, PathBuf, PathBuf) = (
        dir.join("key.der"),
        dir.join("msg.bin"),
        dir.join("sig.bin"),
    );
    std::fs::write(&key, spki_der).unwrap();
    std::fs::write(&msg, message).unwrap();
    std::fs::write(&sig, signature).unwrap();
    let output = Command::new("openssl")
        .args([
            "dgst",
            &format!("-{digest}"),
            "-sigopt",
            "rsa_padding_mode:pss",
            "-sigopt",
            &format!("rsa_pss_saltlen:{salt_len}"),
            "-sigopt",
            &format!("rsa_mgf1_md:{digest}"),
            "-keyform",
            "DER",
            "-verify",
        ])
        .arg(&key)
        .arg("-signature")
        .arg(&sig)
        .arg(&msg)
        .output()
        .expect("openssl is installed (.ci/run installs it)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    output.status.success() && stdout.contains("Verified OK")
}

/// Verifies, and checks that the same command refuses a one-bit change of the message, so
/// a command that accepts everything cannot pass.
fn assert_openssl(
    name: &str,
    spki_der: &[u8],
    message: &[u8],
    signature: &[u8],
    digest: &str,
    salt: usize,
) {
    let dir = tempfile::tempdir().unwrap();
    assert!(
        openssl_verifies(dir.path(), spki_der, message, signature, digest, salt),
        "openssl rejects {name}"
    );
    let mut changed = message.to_vec();
    let middle = changed.len() / 2;
    changed[middle] ^= 1;
    assert!(
        !openssl_verifies(dir.path(), spki_der, &changed, signature, digest, salt),
        "openssl accepts a changed {name}"
    );
}

#[test]
fn openssl_verifies_every_vector_signature() {
    let mut checked = 0;
    for (name, v) in vectors() {
        if v.get("signature").is_none() {
            continue;
        }
        if v["type"] == "BlindCoin" {
            let prepared = hex_field(&v, "prepared_message");
            let signature = hex_field(&v, "signature");
            // RFC 9474 RSABSSA-SHA384-PSS-Randomized: a plain RSASSA-PSS signature
            // (SHA-384, MGF1-SHA-384, 48-byte salt) over randomizer || message, under
            // either encoding of the key.
            assert_openssl(
                &name,
                &hex_field(&v, "signer_spki_der"),
                &prepared,
                &signature,
                "sha384",
                48,
            );
            assert_openssl(
                &format!("{name} (RFC 9474 SPKI)"),
                &hex_field(&v, "rfc9474_spki_der"),
                &prepared,
                &signature,
                "sha384",
                48,
            );
        } else {
            assert_openssl(
                &name,
                &hex_field(&v, "signer_spki_der"),
                &hex_field(&v, "signed_bytes"),
                &hex_field(&v, "signature"),
                "sha256",
                32,
            );
        }
        checked += 1;
    }
    assert!(checked >= 15, "only {checked} signatures checked");
}

#[test]
fn openssl_verifies_the_rfc9474_signature() {
    // The RFC's own signature under its own key: shows that the openssl invocation used
    // for blind coins above is exactly RFC 9474 verification.
    let text = std::fs::read_to_string(interop_dir().join("vectors/rfc9474.json")).unwrap();
    let all: Vec<Value> = serde_json::from_str(&text).unwrap();
    let v = all
        .iter()
        .find(|v| v["name"] == "RSABSSA-SHA384-PSS-Randomized")
        .unwrap();
    let n = hex::decode(v["n"].as_str().unwrap().trim_start_matches("0x")).unwrap();
    let spki = rsa_spki_der(&n, &[0x01, 0x00, 0x01]);
    assert_openssl(
        "rfc9474",
        &spki,
        &hex_field(v, "input_msg"),
        &hex_field(v, "sig"),
        "sha384",
        48,
    );
}

/// DER SubjectPublicKeyInfo (rsaEncryption) of (n, e), written out by hand so this check
/// does not go through the code under test.
fn rsa_spki_der(n: &[u8], e: &[u8]) -> Vec<u8> {
    fn len(n: usize) -> Vec<u8> {
        match n {
            0..=0x7f => vec![n as u8],
            0x80..=0xff => vec![0x81, n as u8],
            _ => vec![0x82, (n >> 8) as u8, n as u8],
        }
    }
    fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
        [vec![tag], len(body.len()), body.to_vec()].concat()
    }
    fn integer(bytes: &[u8]) -> Vec<u8> {
        let mut b = bytes.to_vec();
        if b[0] & 0x80 != 0 {
            b.insert(0, 0);
        }
        tlv(0x02, &b)
    }
    let rsa_key = tlv(0x30, &[integer(n), integer(e)].concat());
    // SEQUENCE { OID 1.2.840.113549.1.1.1, NULL }
    let algorithm: [u8; 15] = [
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let bit_string = tlv(0x03, &[&[0u8][..], &rsa_key].concat());
    tlv(0x30, &[algorithm.to_vec(), bit_string].concat())
}

#[test]
fn python_cryptography_verifies_every_vector() {
    let output = Command::new("python3")
        .arg(interop_dir().join("verify_vectors.py"))
        .arg(interop_dir().join("vectors"))
        .output()
        .expect("python3 is installed");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "verify_vectors.py failed (is `cryptography` installed? .ci/run installs it):\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("vectors verified"), "{stdout}");
}
