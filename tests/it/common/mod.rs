//! Starts the real server (warp, on a loopback port) over a real store backend, with the
//! fixture keys (assembled by the shared test kit, `scrip-testkit`) saved into its data
//! directory as a first start would.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use rand::SeedableRng;
use scrip::client::{HttpClient, WireFormat};
use scrip::demo::{self, Phone};
use scrip::issuer::server::{self, KeySource, RunningServer, ServerConfig, StoreKind};
use scrip::issuer::Keyring;
use scrip::merchant::{Merchant, MerchantConfig};
use scrip::stores::MemoryStore;
use scrip::tokens::fixtures;
use scrip::tokens::keys::Device;
use scrip::tokens::{Amount, Currency, MerchantCategory, SigningKey};
use scrip::wallet::{StorageKey, Wallet};
pub use scrip_testkit::root;
use scrip_testkit::{validity_around, DAY};

pub const OPERATOR_TOKEN: &str = "e2e-operator-token";

/// The fixture keys (EUR coins of 1, 2, 5, 10), valid from a day before the wall clock to
/// 300 days after it (the server checks them against its own clock).
pub fn fixture_keyring() -> Keyring {
    let validity = validity_around(server::now(), DAY, DAY * 300);
    scrip_testkit::fixture_keyring(validity)
}

/// Starts a server over `kind` in `data_dir`. The first start saves the fixture keyring
/// into `<data_dir>/keys`; later starts load it from there, like the binary does.
///
/// `StoreKind::Postgres` starts a one-server cluster: the first start takes a fresh schema
/// of the throwaway PostgreSQL server (its URL kept in `<data_dir>/database-url`, so a
/// restart finds the same database) and publishes the keys there.
pub async fn start(kind: StoreKind, data_dir: &Path) -> RunningServer {
    start_on(kind, data_dir, 0).await
}

/// [`start`] listening on 127.0.0.1:`port` (0: any free port).
pub async fn start_on(kind: StoreKind, data_dir: &Path, port: u16) -> RunningServer {
    let keys = data_dir.join("keys");
    if !keys.join("keyring.json").exists() {
        scrip::issuer::keyring_files::save(&fixture_keyring(), &keys).unwrap();
    }
    if kind == StoreKind::Postgres {
        let url_file = data_dir.join("database-url");
        let url = match std::fs::read_to_string(&url_file) {
            Ok(url) => url,
            Err(_) => {
                let url = scrip::stores::conformance::PostgresHarness::new()
                    .url()
                    .to_owned();
                let (store, state) = server::cluster::connect_database(&url, 2).await.unwrap();
                server::cluster::publish_keys(&keys, &*state, false)
                    .await
                    .unwrap();
                store.close().await.unwrap();
                std::fs::write(&url_file, &url).unwrap();
                url
            }
        };
        return server::start(cluster_node_config(&url, &keys, data_dir, port))
            .await
            .unwrap();
    }
    let mut config = ServerConfig::new(
        ([127, 0, 0, 1], port).into(),
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

/// A wallet around `key` with the server's key directory, not registered yet.
pub async fn new_phone(client: &HttpClient, key: SigningKey<Device>) -> Phone {
    let mut rng = rand::rngs::StdRng::from_rng(&mut rand::rng());
    let mut phone = Phone::new(
        Wallet::new(key, root()).unwrap(),
        StorageKey::random(&mut rng),
    );
    phone
        .wallet
        .update_directory(client.key_directory().await.unwrap(), demo::now())
        .unwrap();
    phone
}

/// A wallet around `key` with an account opened over `client` (not funded), saved.
pub async fn register_phone(client: &HttpClient, key: SigningKey<Device>) -> Phone {
    let mut rng = rand::rngs::StdRng::from_rng(&mut rand::rng());
    let mut phone = new_phone(client, key).await;
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

/// A grocery in DE-BY with a fresh registration over `client` (operator token), its
/// queue in memory and the directory fetched: a point of sale ready to take payments.
pub async fn shop(
    client: &HttpClient,
    key: SigningKey<scrip::tokens::keys::Merchant>,
) -> Merchant<MemoryStore> {
    let mut rng = rand::rngs::StdRng::from_rng(&mut rand::rng());
    let certificate =
        scrip::setup::register_merchant(client, &key, MerchantCategory::GROCERY, "DE-BY", &mut rng)
            .await
            .unwrap();
    let limit = MerchantConfig::new(Amount::new(1_000_000, Currency::EUR));
    let merchant = Merchant::open(
        MemoryStore::new(),
        key,
        certificate,
        root(),
        limit,
        demo::now(),
    )
    .await
    .unwrap();
    merchant
        .refresh_directory(client.key_directory().await.unwrap(), demo::now())
        .await
        .unwrap();
    merchant
}

/// The server's key directory, verified under the pinned root.
pub async fn key_directory(client: &HttpClient) -> scrip::tokens::KeyDirectory {
    client
        .key_directory()
        .await
        .unwrap()
        .verify(&root())
        .unwrap()
        .clone()
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

/// A test's issuer cluster: a fresh schema of the throwaway PostgreSQL server (started
/// once per test process), and the fixture keyring saved in a keys directory and published
/// as the cluster's keys, as an operator's `scrip-server keys init` would.
pub struct TestCluster {
    url: String,
    keys: tempfile::TempDir,
}

impl TestCluster {
    pub async fn new() -> TestCluster {
        let url = scrip::stores::conformance::PostgresHarness::new()
            .url()
            .to_owned();
        let keys = tempfile::tempdir().unwrap();
        scrip::issuer::keyring_files::save(&fixture_keyring(), keys.path()).unwrap();
        let (store, state) = server::cluster::connect_database(&url, 2).await.unwrap();
        server::cluster::publish_keys(keys.path(), &*state, false)
            .await
            .unwrap();
        store.close().await.unwrap();
        TestCluster { url, keys }
    }

    /// The database's connection string.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The published keys.
    pub fn keys_dir(&self) -> &Path {
        self.keys.path()
    }

    /// Starts a server of the cluster on a loopback port, with a data directory of its own
    /// (returned, to keep it alive as long as the server).
    pub async fn node(&self) -> (RunningServer, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let config = cluster_node_config(&self.url, self.keys.path(), dir.path(), 0);
        (server::start(config).await.unwrap(), dir)
    }

    /// The cluster's record store, opened directly (as the servers open it).
    pub async fn store(&self) -> std::sync::Arc<dyn scrip::stores::RecordStore> {
        server::cluster::connect_database(&self.url, 2)
            .await
            .unwrap()
            .0
    }

    /// The ledger balances, by kind of account, read from the database.
    pub async fn books(&self) -> Books {
        let store = self.store().await;
        let books = Books::read(&*store).await;
        store.close().await.unwrap();
        books
    }
}

/// The configuration of a cluster server on `port` (0: any free port).
pub fn cluster_node_config(url: &str, keys: &Path, data_dir: &Path, port: u16) -> ServerConfig {
    let mut config = ServerConfig::new(
        ([127, 0, 0, 1], port).into(),
        data_dir,
        OPERATOR_TOKEN.to_owned(),
    );
    config.store = StoreKind::Postgres;
    config.database_url = Some(url.to_owned());
    config.keys = KeySource::Directory {
        dir: keys.to_path_buf(),
        generate: scrip::issuer::KeyringConfig::default(),
    };
    config
}

/// Every ledger balance of one currency (EUR), summed by kind of account.
#[derive(Debug, Default)]
pub struct Books {
    pub customers: i128,
    pub reservations: i128,
    pub merchants: i128,
    pub outstanding: i128,
    pub funding: i128,
    pub other: i128,
}

impl Books {
    pub async fn read(store: &dyn scrip::stores::RecordStore) -> Books {
        use scrip::stores::LedgerAccount;
        let mut books = Books::default();
        for (account, currency, balance) in store.balances(None, usize::MAX).await.unwrap() {
            assert_eq!(currency, Currency::EUR);
            let slot = match account {
                LedgerAccount::Customer(_) => &mut books.customers,
                LedgerAccount::Reservation(_) => &mut books.reservations,
                LedgerAccount::Merchant(_) => &mut books.merchants,
                a if a == scrip::issuer::coins_outstanding_account() => &mut books.outstanding,
                a if a == scrip::issuer::funding_account() => &mut books.funding,
                _ => &mut books.other,
            };
            *slot += balance;
        }
        books
    }

    /// Double entry: every posting has its counterpart.
    pub fn sums_to_zero(&self) -> bool {
        self.customers
            + self.reservations
            + self.merchants
            + self.outstanding
            + self.funding
            + self.other
            == 0
    }
}

/// Withdraws blind EUR coins of `amounts` over `client`, saved.
pub async fn withdraw_blind(phone: &mut Phone, client: &HttpClient, amounts: &[u64]) {
    let mut rng = rand::rngs::StdRng::from_rng(&mut rand::rng());
    let request = phone
        .wallet
        .blind_withdrawal_request(&scrip_testkit::eurs(amounts), demo::now(), &mut rng)
        .unwrap();
    let request = phone.send(request).unwrap();
    let response = client.withdraw_blind(&request).await.unwrap();
    phone
        .wallet
        .on_blind_withdrawal(&request, &response, demo::now())
        .unwrap();
    phone.save().unwrap();
}

/// The customer pays `merchant` `amount` with coins, offline.
pub async fn pay_coins(phone: &mut Phone, merchant: &Merchant<MemoryStore>, amount: u64) {
    let mut rng = rand::rngs::StdRng::from_rng(&mut rand::rng());
    let now = demo::now();
    let offer = merchant
        .offer(Amount::new(amount, Currency::EUR), now, &mut rng)
        .await
        .unwrap();
    let answer = phone.wallet.pay_by_coins(&offer, now).unwrap();
    let answer = phone.send(answer).unwrap();
    let reply = merchant.accept(&answer, now, &mut rng).await.unwrap();
    let status = phone.wallet.on_merchant_reply(&reply, now).unwrap();
    assert!(
        matches!(status, scrip::wallet::PaymentStatus::Completed(_)),
        "{status:?}"
    );
}
