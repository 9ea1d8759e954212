//! The `scrip-server` binary's operator commands, run as an operator would run them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use scrip_issuer::keyring_files;
use scrip_tokens::Currency;

fn scrip_server(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_scrip-server"))
        .args(args)
        .env_remove("SCRIP_CURRENCY")
        .env_remove("SCRIP_DATABASE_URL")
        .output()
        .unwrap()
}

#[test]
fn keys_init_makes_one_keyset_per_configured_currency() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let keys_arg = keys.to_str().unwrap();
    let output = scrip_server(&[
        "keys",
        "init",
        "--keys-dir",
        keys_arg,
        "--currency",
        "EUR,USD",
        "--denominations",
        "1,2,5",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let keyring = keyring_files::load(&keys).unwrap();
    assert_eq!(keyring.currencies(), vec![Currency::EUR, Currency::USD]);
    for currency in [Currency::EUR, Currency::USD] {
        let now = scrip_issuer::server::now();
        let keyset = keyring.current_keyset(currency, now).unwrap();
        assert_eq!(
            keyset.keys.iter().map(|(v, _)| *v).collect::<Vec<_>>(),
            vec![1, 2, 5]
        );
    }

    // A currency named twice, or not a currency, is refused before anything is written.
    let other = dir.path().join("other");
    for bad in ["EUR,EUR", "EUR,euro"] {
        let output = scrip_server(&[
            "keys",
            "init",
            "--keys-dir",
            other.to_str().unwrap(),
            "--currency",
            bad,
        ]);
        assert!(!output.status.success(), "--currency {bad} was accepted");
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("--currency"),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(!keyring_files::exists(&other));
    }
}
