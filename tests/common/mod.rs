//! Starts the real server (warp, on a loopback port) over a real store backend, with the
//! fixture keys saved into its data directory as a first start would.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::Duration;

use rand::SeedableRng;
use scrip::client::{HttpClient, WireFormat};
use scrip::demo::{self, Phone};
use scrip::issuer::server::{self, KeySource, RunningServer, ServerConfig, StoreKind};
use scrip::issuer::{IssuerKey, Keyring, KeysetKeys, RoleKeys};
use scrip::tokens::fixtures;
use scrip::tokens::keys::{Device, DirectoryRoot, IssuerRole};
use scrip::tokens::{Currency, SigningKey, Validity, VerifyingKey};
use scrip::wallet::{StorageKey, Wallet};

pub const OPERATOR_TOKEN: &str = "e2e-operator-token";

fn validity() -> Validity {
    let now = server::now();
    Validity::new(
        now.saturating_sub(Duration::from_secs(86_400)),
        now.saturating_add(Duration::from_secs(300 * 86_400)),
    )
    .unwrap()
}

fn role<R: IssuerRole>(key: SigningKey<R>) -> RoleKeys<R> {
    RoleKeys::new(vec![IssuerKey {
        key,
        validity: validity(),
    }])
    .unwrap()
}

/// The fixture keys (EUR coins of 1, 2, 5, 10), valid around the wall clock.
pub fn fixture_keyring() -> Keyring {
    let denominations = fixtures::DENOMINATIONS
        .iter()
        .map(|v| (*v, fixtures::denomination(*v).unwrap()))
        .collect();
    Keyring {
        root: fixtures::directory_root(),
        account_certifier: role(fixtures::account_certifier()),
        merchant_certifier: role(fixtures::merchant_certifier()),
        balance_certifier: role(fixtures::balance_certifier()),
        deposit_issuer: role(fixtures::deposit_issuer()),
        identified_coin_issuer: role(fixtures::identified_coin_issuer()),
        answer_signer: role(fixtures::answer_signer()),
        keysets: vec![KeysetKeys::new(
            Currency::EUR,
            validity(),
            validity().not_after,
            denominations,
        )
        .unwrap()],
    }
}

pub fn root() -> VerifyingKey<DirectoryRoot> {
    fixtures::directory_root().verifying_key().clone()
}

/// Starts a server over `kind` in `data_dir`. The first start saves the fixture keyring
/// into `<data_dir>/keys`; later starts load it from there, like the binary does.
pub async fn start(kind: StoreKind, data_dir: &Path) -> RunningServer {
    let keys = data_dir.join("keys");
    if !keys.join("keyring.json").exists() {
        scrip::issuer::keyring_files::save(&fixture_keyring(), &keys).unwrap();
    }
    let mut config = ServerConfig::new(
        ([127, 0, 0, 1], 0).into(),
        data_dir,
        OPERATOR_TOKEN.to_owned(),
    );
    config.store = kind;
    config.keys = KeySource::Directory {
        dir: keys,
        generate: scrip::issuer::KeyringConfig::default(),
    };
    server::start(config).await.unwrap()
}

/// A wallet around `key` with an account opened over `client` (not funded), saved.
pub async fn register_phone(client: &HttpClient, key: SigningKey<Device>) -> Phone {
    let mut rng = rand::rngs::StdRng::from_rng(&mut rand::rng());
    let mut phone = Phone::new(
        Wallet::new(key, root()).unwrap(),
        StorageKey::random(&mut rng),
    );
    phone
        .wallet
        .update_directory(client.key_directory().await.unwrap(), demo::now())
        .unwrap();
    let registration = phone
        .wallet
        .registration_request(None, demo::now(), &mut rng)
        .unwrap();
    let registration = phone.send(registration).unwrap();
    let opened = client.open_account(&registration).await.unwrap();
    phone
        .wallet
        .on_account_certificate(opened.certificate, demo::now())
        .unwrap();
    phone.save().unwrap();
    phone
}

pub fn client(server: &RunningServer) -> HttpClient {
    HttpClient::new(&server.url())
        .unwrap()
        .with_operator_token(OPERATOR_TOKEN)
}

pub fn bincode_client(server: &RunningServer) -> HttpClient {
    client(server).with_format(WireFormat::Bincode)
}

/// Fixture merchant key `n` (1..=4).
pub fn merchant_key(n: u8) -> SigningKey<scrip::tokens::keys::Merchant> {
    fixtures::merchant(n)
}

/// `count` fresh merchant keys, generated on both cores.
pub async fn merchant_keys(count: usize) -> Vec<SigningKey<scrip::tokens::keys::Merchant>> {
    let halves = [count / 2, count - count / 2];
    let mut tasks = Vec::new();
    for n in halves {
        tasks.push(tokio::task::spawn_blocking(move || {
            let mut rng = rand::rngs::StdRng::from_rng(&mut rand::rng());
            (0..n)
                .map(|_| {
                    SigningKey::generate(&mut rng, scrip::tokens::keys::DEFAULT_RSA_BITS).unwrap()
                })
                .collect::<Vec<_>>()
        }));
    }
    let mut keys = Vec::new();
    for t in tasks {
        keys.extend(t.await.unwrap());
    }
    keys
}
