//! The issuer keyring: generation (one key per role, one blind key per denomination),
//! validity windows, rotation, the public key directory, and persistence to files with
//! private permissions.
//!
//! RSA key generation is slow, so one keyring is generated for the whole file
//! ([`base`]) and every test works on an in-memory copy of it ([`copy`]).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use common::*;
use scrip_issuer::coins_outstanding_account;
use scrip_issuer::{
    keyring_files, one_two_five, IssuerConfig, IssuerError, IssuerKey, Keyring, KeyringConfig,
    KeysetKeys, RoleKeys,
};
use scrip_stores::{LedgerAccount, MemoryStore, RecordStore};
use scrip_tokens::fixtures::{self, NOW};
use scrip_tokens::keys::{
    AccountCertifier, BalanceCertifier, IssuerKeyRole, IssuerRole, DEFAULT_RSA_BITS,
};
use scrip_tokens::*;

const USD: Currency = Currency::USD;

/// Short lifetimes, so the tests can step past every window.
fn config() -> KeyringConfig {
    KeyringConfig {
        denominations: vec![(EUR, one_two_five(1, 5)), (USD, one_two_five(10, 20))],
        key_lifetime: DAY * 30,
        keyset_issue_period: DAY * 10,
        keyset_redeem_grace: DAY * 5,
        rsa_bits: DEFAULT_RSA_BITS,
    }
}

/// The keyring generated once for this file (11 RSA keys).
fn base() -> &'static Keyring {
    static BASE: OnceLock<Keyring> = OnceLock::new();
    BASE.get_or_init(|| Keyring::generate(&config(), NOW, &mut rng(1)).unwrap())
}

fn copy_role<R: IssuerRole>(keys: &RoleKeys<R>) -> RoleKeys<R> {
    RoleKeys::new(
        keys.all()
            .iter()
            .map(|k| IssuerKey {
                key: SigningKey::from_pem(&k.key.to_pem().unwrap()).unwrap(),
                validity: k.validity,
            })
            .collect(),
    )
    .unwrap()
}

/// An independent copy of `keyring` (through PEM, without touching the file code).
fn copy(keyring: &Keyring) -> Keyring {
    Keyring {
        root: SigningKey::from_pem(&keyring.root.to_pem().unwrap()).unwrap(),
        account_certifier: copy_role(&keyring.account_certifier),
        merchant_certifier: copy_role(&keyring.merchant_certifier),
        balance_certifier: copy_role(&keyring.balance_certifier),
        deposit_issuer: copy_role(&keyring.deposit_issuer),
        identified_coin_issuer: copy_role(&keyring.identified_coin_issuer),
        answer_signer: copy_role(&keyring.answer_signer),
        keysets: keyring
            .keysets
            .iter()
            .map(|set| {
                KeysetKeys::new(
                    set.keyset.currency(),
                    set.keyset.validity(),
                    set.keyset.issue_until(),
                    set.keys
                        .iter()
                        .map(|(v, k)| {
                            (
                                *v,
                                DenominationSigningKey::from_pem(&k.to_pem().unwrap()).unwrap(),
                            )
                        })
                        .collect(),
                )
                .unwrap()
            })
            .collect(),
    }
}

/// A keyset's id, currency, validity, issue_until and (denomination, key id)s.
type KeysetPrint = (KeysetId, Currency, Validity, Timestamp, Vec<(u64, KeyId)>);

/// Everything public about a keyring: key ids with their windows, keysets with theirs.
#[derive(Debug, PartialEq, Eq)]
struct Fingerprint {
    root: KeyId,
    roles: Vec<Vec<(KeyId, Validity)>>,
    keysets: Vec<KeysetPrint>,
}

fn role_ids<R: IssuerRole>(keys: &RoleKeys<R>) -> Vec<(KeyId, Validity)> {
    keys.all()
        .iter()
        .map(|k| (k.key.key_id(), k.validity))
        .collect()
}

fn fingerprint(k: &Keyring) -> Fingerprint {
    Fingerprint {
        root: k.root.key_id(),
        roles: vec![
            role_ids(&k.account_certifier),
            role_ids(&k.merchant_certifier),
            role_ids(&k.balance_certifier),
            role_ids(&k.deposit_issuer),
            role_ids(&k.identified_coin_issuer),
            role_ids(&k.answer_signer),
        ],
        keysets: k
            .keysets
            .iter()
            .map(|s| {
                (
                    s.keyset.id(),
                    s.keyset.currency(),
                    s.keyset.validity(),
                    s.keyset.issue_until(),
                    s.keys.iter().map(|(v, key)| (*v, key.key_id())).collect(),
                )
            })
            .collect(),
    }
}

const ALL_ROLES: [IssuerKeyRole; 6] = [
    IssuerKeyRole::AccountCertificate,
    IssuerKeyRole::MerchantCertificate,
    IssuerKeyRole::BalanceCertificate,
    IssuerKeyRole::Deposit,
    IssuerKeyRole::IdentifiedCoin,
    IssuerKeyRole::Answer,
];

fn roles_listed(directory: &KeyDirectory) -> Vec<IssuerKeyRole> {
    let mut roles: Vec<_> = directory.issuer_keys().iter().map(|e| e.role).collect();
    roles.sort_unstable();
    roles
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Checks that `dir` is 0700 and every file in it 0600; returns the file names.
fn assert_private(dir: &Path) -> BTreeSet<String> {
    assert_eq!(mode(dir), 0o700, "key directory mode");
    let mut names = BTreeSet::new();
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        assert!(
            entry.file_type().unwrap().is_file(),
            "{name} is not a plain file"
        );
        assert_eq!(mode(&entry.path()), 0o600, "mode of {name}");
        assert!(!name.ends_with(".tmp"), "temporary file {name} left behind");
        names.insert(name);
    }
    names
}

// --- generation ----------------------------------------------------------------------

#[test]
fn generate_makes_one_key_per_role_and_one_blind_key_per_denomination() {
    let k = base();
    let config = config();
    let window = Validity::starting_at(NOW, config.key_lifetime);
    let f = fingerprint(k);
    for (role, keys) in ALL_ROLES.iter().zip(&f.roles) {
        assert_eq!(keys.len(), 1, "{role:?}");
        assert_eq!(keys[0].1, window, "{role:?}");
    }
    assert_eq!(k.root.verifying_key().public_key().modulus_bits(), 2048);
    assert_eq!(
        k.balance_certifier.all()[0]
            .key
            .verifying_key()
            .public_key()
            .modulus_bits(),
        2048
    );

    // One keyset per configured currency, one key per denomination.
    assert_eq!(k.currencies(), vec![EUR, USD]);
    assert_eq!(k.keysets.len(), 2);
    let issue_until = NOW.saturating_add(config.keyset_issue_period);
    let keyset_window =
        Validity::new(NOW, issue_until.saturating_add(config.keyset_redeem_grace)).unwrap();
    for (set, (currency, denominations)) in k.keysets.iter().zip(&config.denominations) {
        assert_eq!(set.keyset.currency(), *currency);
        assert_eq!(set.keyset.validity(), keyset_window);
        assert_eq!(set.keyset.issue_until(), issue_until);
        let values: Vec<u64> = set
            .keyset
            .denominations()
            .iter()
            .map(|d| d.minor_units)
            .collect();
        assert_eq!(&values, denominations);
        let private: Vec<u64> = set.keys.iter().map(|(v, _)| *v).collect();
        assert_eq!(&private, denominations);
        for (v, key) in &set.keys {
            assert_eq!(set.keyset.key_for(*v).unwrap(), key.verifying_key());
        }
        assert_eq!(k.keyset(set.keyset.id()).unwrap().keyset, set.keyset);
        assert_eq!(
            k.current_keyset(*currency, NOW).unwrap().keyset.id(),
            set.keyset.id()
        );
    }
    assert_eq!(one_two_five(1, 5), vec![1, 2, 5]);
    assert!(k
        .current_keyset(Currency::new("GBP").unwrap(), NOW)
        .is_none());

    // Every key is distinct: no key serves two purposes.
    let mut ids: Vec<KeyId> = f.roles.iter().flatten().map(|(id, _)| *id).collect();
    ids.push(f.root);
    ids.extend(f.keysets.iter().flat_map(|s| s.4.iter().map(|(_, id)| *id)));
    let n = ids.len();
    assert_eq!(n, 1 + 6 + 5);
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), n, "a key is used twice");
}

#[test]
fn the_signed_directory_verifies_with_the_root_key_and_lists_every_role() {
    let k = base();
    let signed = k.signed_directory(NOW, &mut rng(2)).unwrap();
    let directory = signed.verify(k.root.verifying_key()).unwrap();
    assert_eq!(directory, &k.directory(NOW).unwrap());
    assert_eq!(directory.issued_at(), NOW);
    assert_eq!(roles_listed(directory), ALL_ROLES.to_vec());
    // The root key signs the directory and is not listed in it (it is pinned).
    assert!(directory
        .issuer_keys()
        .iter()
        .all(|e| e.key.key_id() != k.root.key_id()));
    let keysets: Vec<KeysetId> = directory.keysets().iter().map(Keyset::id).collect();
    let expected: Vec<KeysetId> = k.keysets.iter().map(|s| s.keyset.id()).collect();
    assert_eq!(keysets, expected);
    assert_eq!(
        directory.current_keyset(EUR, NOW).map(Keyset::id),
        Some(k.keysets[0].keyset.id())
    );

    // Each role's key is found under its own role only.
    let balance = k.balance_certifier.current(NOW).unwrap().key_id();
    directory
        .issuer_key::<BalanceCertifier>(balance, NOW)
        .unwrap();
    assert!(matches!(
        directory.issuer_key::<AccountCertifier>(balance, NOW),
        Err(Error::WrongKeyRole { .. })
    ));

    // Another root (the fixture one) does not accept it; a directory re-signed by
    // someone else is refused too.
    assert!(signed
        .verify(fixtures::directory_root().verifying_key())
        .is_err());
    let forged =
        SignedKeyDirectory::sign(directory.clone(), &fixtures::directory_root(), &mut rng(3))
            .unwrap();
    assert!(forged.verify(k.root.verifying_key()).is_err());
    // It survives its wire encoding.
    let decoded = SignedKeyDirectory::from_bytes(&signed.to_bytes().unwrap()).unwrap();
    assert_eq!(decoded.verify(k.root.verifying_key()).unwrap(), directory);
}

#[test]
fn the_directory_follows_validity_windows() {
    let k = base();
    let config = config();
    let issue_until = NOW.saturating_add(config.keyset_issue_period);
    let keyset_end = issue_until.saturating_add(config.keyset_redeem_grace);
    let key_end = NOW.saturating_add(config.key_lifetime);
    let ms = Duration::from_millis(1);

    // After issue_until: no keyset to withdraw from, but coins stay redeemable (listed).
    let later = issue_until.saturating_add(ms);
    assert!(k.current_keyset(EUR, later).is_none());
    let directory = k.directory(later).unwrap();
    assert_eq!(directory.keysets().len(), 2);
    assert!(directory.current_keyset(EUR, later).is_none());
    // Through the last instant of the keyset's validity, then gone.
    assert_eq!(k.directory(keyset_end).unwrap().keysets().len(), 2);
    let directory = k.directory(keyset_end.saturating_add(ms)).unwrap();
    assert!(directory.keysets().is_empty());
    assert_eq!(roles_listed(&directory), ALL_ROLES.to_vec());

    // Role keys: listed through not_after, omitted after; no key signs any more.
    assert_eq!(
        roles_listed(&k.directory(key_end).unwrap()),
        ALL_ROLES.to_vec()
    );
    k.balance_certifier.current(key_end).unwrap();
    let after = key_end.saturating_add(ms);
    let directory = k.directory(after).unwrap();
    assert!(
        directory.issuer_keys().is_empty(),
        "{:?}",
        directory.issuer_keys()
    );
    assert!(matches!(
        k.balance_certifier.current(after),
        Err(IssuerError::Keyring(_))
    ));
    // Before the keys' window they are listed (caches get them in time) but sign nothing.
    let before = NOW.saturating_sub(ms);
    assert_eq!(
        roles_listed(&k.directory(before).unwrap()),
        ALL_ROLES.to_vec()
    );
    assert!(k.account_certifier.current(before).is_err());
    assert!(k.current_keyset(EUR, before).is_none());
}

// --- rotation --------------------------------------------------------------------------

#[tokio::test]
async fn after_a_rotation_new_tokens_use_the_new_key_and_old_ones_verify_until_the_old_key_expires()
{
    let issuer = issuer(MemoryStore::new());
    let mut rng = rng(10);
    let mut wallet = RawWallet::open(&issuer, 1, &mut rng).await;
    let shop = Shop::register(&issuer, 1, &mut rng).await;
    wallet.deposit(&issuer, 1_000, &mut rng).await;
    let old_balance_key = fixtures::balance_certifier().key_id();
    let old_coin_key = fixtures::identified_coin_issuer().key_id();
    let old_cert = wallet.certificate(&issuer, 100, NOW, &mut rng).await;
    assert_eq!(old_cert.key_id, old_balance_key);
    let old_coins = wallet.withdraw_identified(&issuer, &[5, 2], &mut rng).await;
    assert_eq!(old_coins[0].key_id(), old_coin_key);

    // Rotate the balance and identified-coin keys: the new ones take over in an hour.
    let takeover = NOW.saturating_add(HOUR);
    let mut keyring = fixture_keyring();
    for role in [
        IssuerKeyRole::BalanceCertificate,
        IssuerKeyRole::IdentifiedCoin,
    ] {
        keyring
            .rotate(role, takeover, DAY * 365, DEFAULT_RSA_BITS, &mut rng)
            .unwrap();
    }
    let new_balance_key = keyring.balance_certifier.all()[1].key.key_id();
    let new_coin_key = keyring.identified_coin_issuer.all()[1].key.key_id();
    assert_ne!(new_balance_key, old_balance_key);
    assert_eq!(
        keyring.balance_certifier.all()[1].validity,
        Validity::starting_at(takeover, DAY * 365)
    );
    // Other roles are untouched.
    assert_eq!(keyring.account_certifier.all().len(), 1);
    issuer.replace_keyring(keyring);
    let root = fixtures::directory_root();

    // Published before the takeover (caches get it in time), not yet signing.
    let early = NOW.saturating_add(Duration::from_secs(60));
    let directory = issuer.key_directory(early, &mut rng).unwrap();
    let directory = directory.verify(root.verifying_key()).unwrap().clone();
    let listed: Vec<KeyId> = directory
        .issuer_keys()
        .iter()
        .filter(|e| e.role == IssuerKeyRole::BalanceCertificate)
        .map(|e| e.key.key_id())
        .collect();
    assert_eq!(listed, vec![old_balance_key, new_balance_key]);
    let early_cert = wallet.certificate(&issuer, 100, early, &mut rng).await;
    assert_eq!(early_cert.key_id, old_balance_key);
    assert!(matches!(
        directory.issuer_key::<BalanceCertifier>(new_balance_key, early),
        Err(Error::KeyNotYetValid { .. })
    ));

    // After the takeover: new certificates and coins are signed by the new keys.
    let t1 = takeover.saturating_add(HOUR);
    let new_cert = wallet.certificate(&issuer, 100, t1, &mut rng).await;
    assert_eq!(new_cert.key_id, new_balance_key);
    let request = wallet.identified_request(&[5], [9; 32], &mut rng);
    let new_coins: Vec<Coin> = issuer
        .withdraw_identified(&request, t1, &mut rng)
        .await
        .unwrap()
        .coins
        .into_iter()
        .map(Coin::Identified)
        .collect();
    assert_eq!(new_coins[0].key_id(), new_coin_key);

    // Old and new tokens verify against the directory the issuer publishes now.
    let signed = issuer.key_directory(t1, &mut rng).unwrap();
    let directory = signed.verify(root.verifying_key()).unwrap().clone();
    let account = &wallet.certificate.payload;
    old_cert.verify(&directory, account, t1).unwrap();
    new_cert.verify(&directory, account, t1).unwrap();
    for coin in old_coins.iter().chain(&new_coins) {
        coin.verify(&directory, t1).unwrap();
    }
    // ...and at the issuer: the old coins redeem after the rotation.
    let all: Vec<Coin> = old_coins.iter().chain(&new_coins).cloned().collect();
    let outcomes = shop
        .redeem(
            &issuer,
            vec![RedemptionItem::Coins(shop.endorse(all, &mut rng))],
            t1,
            &mut rng,
        )
        .await;
    assert_eq!(
        outcomes,
        vec![RedemptionOutcome::Accepted { credited: eur(12) }]
    );
    assert_eq!(
        issuer
            .store()
            .balance(&LedgerAccount::Merchant(shop.id()), EUR)
            .await
            .unwrap(),
        12
    );

    // The old key expires at its not_after: a cached directory says KeyExpired, the
    // issuer's directory no longer lists it, and the new key goes on.
    let old_end = key_validity().not_after;
    old_cert.verify_in(&directory, old_end).unwrap();
    let after = old_end.saturating_add(Duration::from_millis(1));
    assert_eq!(
        old_cert.verify_in(&directory, after),
        Err(Error::KeyExpired {
            key_id: old_balance_key,
            not_after: old_end
        })
    );
    assert!(matches!(
        old_coins[0].verify(&directory, after),
        Err(Error::KeyExpired { key_id, .. }) if key_id == old_coin_key
    ));
    new_cert.verify_in(&directory, after).unwrap();
    new_coins[0].verify(&directory, after).unwrap();
    let fresh = issuer.key_directory(after, &mut rng).unwrap();
    let fresh = fresh.verify(root.verifying_key()).unwrap();
    assert!(fresh
        .issuer_keys()
        .iter()
        .all(|e| e.key.key_id() != old_balance_key));
    assert_eq!(
        old_cert.verify_in(fresh, after),
        Err(Error::UnknownKey(old_balance_key))
    );
    new_cert.verify_in(fresh, after).unwrap();
    // The keyring signs with the new key only.
    let keys = issuer.keys();
    assert_eq!(
        keys.balance_certifier.current(after).unwrap().key_id(),
        new_balance_key
    );
    assert_eq!(
        keys.identified_coin_issuer.current(after).unwrap().key_id(),
        new_coin_key
    );
}

#[tokio::test]
async fn a_new_keyset_takes_over_issuance_while_coins_of_the_old_one_still_verify() {
    let issuer = issuer(MemoryStore::new());
    let mut rng = rng(11);
    let wallet = RawWallet::open(&issuer, 1, &mut rng).await;
    let shop = Shop::register(&issuer, 1, &mut rng).await;
    wallet.deposit(&issuer, 1_000, &mut rng).await;
    let old_coins = wallet.withdraw_blind(&issuer, &[10, 5], &mut rng).await;
    let old_keyset = issuer.keys().current_keyset(EUR, NOW).unwrap().keyset.id();

    // A new EUR keyset with other denominations, open from an hour from now.
    let from = NOW.saturating_add(HOUR);
    let keyset_config = KeyringConfig {
        denominations: Vec::new(),
        key_lifetime: DAY * 365,
        keyset_issue_period: DAY * 200,
        keyset_redeem_grace: DAY * 30,
        rsa_bits: DEFAULT_RSA_BITS,
    };
    let mut keyring = fixture_keyring();
    let new_keyset = keyring
        .add_keyset(EUR, &[1, 20], &keyset_config, from, &mut rng)
        .unwrap();
    assert_ne!(new_keyset, old_keyset);
    assert_eq!(keyring.keysets.len(), 2);
    // Until it opens, the old one stays current.
    assert_eq!(
        keyring.current_keyset(EUR, NOW).unwrap().keyset.id(),
        old_keyset
    );
    assert_eq!(
        keyring.current_keyset(EUR, from).unwrap().keyset.id(),
        new_keyset
    );
    let set = keyring.keyset(new_keyset).unwrap();
    assert_eq!(set.keyset.issue_until(), from.saturating_add(DAY * 200));
    assert_eq!(
        set.keyset.validity(),
        Validity::new(from, from.saturating_add(DAY * 230)).unwrap()
    );
    issuer.replace_keyring(keyring);

    let t1 = from.saturating_add(HOUR);
    let signed = issuer.key_directory(t1, &mut rng).unwrap();
    let directory = signed
        .verify(fixtures::directory_root().verifying_key())
        .unwrap()
        .clone();
    assert_eq!(directory.keysets().len(), 2);
    let keyset = directory.current_keyset(EUR, t1).unwrap().clone();
    assert_eq!(keyset.id(), new_keyset);

    // Withdraw from the new keyset.
    let (request, pending) = wallet.blind_request(&keyset, &[20, 1], [3; 32], &mut rng);
    let response = issuer.withdraw_blind(&request, t1, &mut rng).await.unwrap();
    assert_eq!(response.keyset_id, new_keyset);
    let new_coins = finalize(&keyset, &pending, &response);
    // Identified coins follow the current keyset's denominations: 10 is not one of them.
    let request = wallet.identified_request(&[10], [4; 32], &mut rng);
    assert!(issuer
        .withdraw_identified(&request, t1, &mut rng)
        .await
        .is_err());
    let request = wallet.identified_request(&[20], [5; 32], &mut rng);
    issuer
        .withdraw_identified(&request, t1, &mut rng)
        .await
        .unwrap();

    // Coins of both keysets verify and redeem.
    for coin in old_coins.iter().chain(&new_coins) {
        coin.verify(&directory, t1).unwrap();
    }
    assert_eq!(old_coins[0].keyset_id(), Some(old_keyset));
    assert_eq!(new_coins[0].keyset_id(), Some(new_keyset));
    let outcomes = shop
        .redeem(
            &issuer,
            vec![
                RedemptionItem::Coins(shop.endorse(old_coins, &mut rng)),
                RedemptionItem::Coins(shop.endorse(new_coins, &mut rng)),
            ],
            t1,
            &mut rng,
        )
        .await;
    assert_eq!(
        outcomes,
        vec![
            RedemptionOutcome::Accepted { credited: eur(15) },
            RedemptionOutcome::Accepted { credited: eur(21) },
        ]
    );
    // Left outstanding: the identified 20.
    assert_eq!(
        issuer
            .store()
            .balance(&coins_outstanding_account(), EUR)
            .await
            .unwrap(),
        20
    );

    // Once the old keyset's validity has ended, the directory drops it.
    let after = key_validity()
        .not_after
        .saturating_add(Duration::from_millis(1));
    let directory = issuer.keys().directory(after).unwrap();
    let ids: Vec<KeysetId> = directory.keysets().iter().map(Keyset::id).collect();
    assert_eq!(ids, vec![new_keyset]);
}

// --- persistence ---------------------------------------------------------------------

#[tokio::test]
async fn save_and_load_round_trip_with_private_file_permissions() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("keys");
    let keyring = copy(base());
    keyring_files::save(&keyring, &dir).unwrap();

    let names = assert_private(&dir);
    // root + 6 roles + 5 denominations + manifest.
    assert_eq!(names.len(), 13, "{names:?}");
    assert!(names.contains("keyring.json"));
    let manifest = fs::read_to_string(dir.join("keyring.json")).unwrap();
    assert!(
        !manifest.contains("PRIVATE KEY"),
        "the manifest holds no key material"
    );
    for name in names.iter().filter(|n| n.ends_with(".pem")) {
        let pem = fs::read_to_string(dir.join(name)).unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{name}");
    }

    let loaded = keyring_files::load(&dir).unwrap();
    assert_eq!(fingerprint(&loaded), fingerprint(&keyring));
    assert_eq!(
        loaded.directory(NOW).unwrap(),
        keyring.directory(NOW).unwrap()
    );
    // The loaded private keys are the same keys: what they sign verifies against the
    // original's public keys.
    let signed = loaded.signed_directory(NOW, &mut rng(20)).unwrap();
    signed.verify(keyring.root.verifying_key()).unwrap();
    let issuer = scrip_issuer::Issuer::new(
        MemoryStore::new(),
        scrip_issuer::InMemoryFunding::new(),
        loaded,
        IssuerConfig::default(),
    );
    let mut rng = rng(21);
    let wallet = RawWallet::open(&issuer, 1, &mut rng).await;
    let directory = keyring.directory(NOW).unwrap();
    wallet.certificate.verify(&directory, NOW).unwrap();
    wallet.deposit(&issuer, 100, &mut rng).await;
    let coins = wallet.withdraw_blind(&issuer, &[5, 2, 1], &mut rng).await;
    for coin in &coins {
        coin.verify(&directory, NOW).unwrap();
    }

    // Saving again over the same directory keeps it private and loadable.
    keyring_files::save(&keyring, &dir).unwrap();
    assert_eq!(assert_private(&dir), names);
    assert_eq!(
        fingerprint(&keyring_files::load(&dir).unwrap()),
        fingerprint(&keyring)
    );
}

#[test]
fn a_rotated_keyring_persists_old_and_new_keys_with_their_windows() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("keys");
    let mut keyring = copy(base());
    keyring_files::save(&keyring, &dir).unwrap();
    let before = fingerprint(&keyring);

    let takeover = NOW.saturating_add(DAY);
    let mut rng = rng(30);
    keyring
        .rotate(
            IssuerKeyRole::AccountCertificate,
            takeover,
            DAY * 60,
            DEFAULT_RSA_BITS,
            &mut rng,
        )
        .unwrap();
    keyring_files::save(&keyring, &dir).unwrap();
    let names = assert_private(&dir);
    assert_eq!(names.len(), 14, "{names:?}");

    let loaded = keyring_files::load(&dir).unwrap();
    let after = fingerprint(&loaded);
    assert_eq!(after, fingerprint(&keyring));
    assert_ne!(after, before);
    let account = loaded.account_certifier.all();
    assert_eq!(account.len(), 2);
    assert_eq!(account[0].key.key_id(), before.roles[0][0].0);
    assert_eq!(
        account[1].validity,
        Validity::starting_at(takeover, DAY * 60)
    );
    // The old key signs until the takeover, the new one after; both are listed.
    let old = account[0].key.key_id();
    let new = account[1].key.key_id();
    assert_eq!(loaded.account_certifier.current(NOW).unwrap().key_id(), old);
    assert_eq!(
        loaded.account_certifier.current(takeover).unwrap().key_id(),
        new
    );
    let directory = loaded.directory(takeover).unwrap();
    directory
        .issuer_key::<AccountCertifier>(old, takeover)
        .unwrap();
    directory
        .issuer_key::<AccountCertifier>(new, takeover)
        .unwrap();
    // Past the old key's window (30 days) only the new one is listed.
    let later = NOW.saturating_add(DAY * 31);
    let directory = loaded.directory(later).unwrap();
    let accounts: Vec<KeyId> = directory
        .issuer_keys()
        .iter()
        .filter(|e| e.role == IssuerKeyRole::AccountCertificate)
        .map(|e| e.key.key_id())
        .collect();
    assert_eq!(accounts, vec![new]);
    // Every other key of the base keyring ended at 30 days as well.
    assert!(directory
        .issuer_keys()
        .iter()
        .all(|e| e.role == IssuerKeyRole::AccountCertificate));
    assert!(directory.keysets().is_empty());
}

#[test]
fn load_or_generate_generates_once_then_loads() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("nested").join("keys");
    let small = KeyringConfig {
        denominations: vec![(EUR, vec![100])],
        ..config()
    };
    let mut rng = rng(40);
    let (first, generated) = keyring_files::load_or_generate(&dir, &small, NOW, &mut rng).unwrap();
    assert!(generated);
    assert_private(&dir);
    assert_eq!(first.keysets.len(), 1);
    assert_eq!(first.keysets[0].keyset.denominations()[0].minor_units, 100);

    // Second start (even with another configuration and time): the saved keys.
    let (second, generated) =
        keyring_files::load_or_generate(&dir, &config(), NOW.saturating_add(DAY), &mut rng)
            .unwrap();
    assert!(!generated);
    assert_eq!(fingerprint(&second), fingerprint(&first));
    assert_eq!(
        fingerprint(&keyring_files::load(&dir).unwrap()),
        fingerprint(&first)
    );
}

#[test]
fn a_format_1_keyring_gains_an_answer_key_and_keeps_every_other_key() {
    // What scrip 0.1 saved: no answer key, manifest version 1.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("keys");
    keyring_files::save(base(), &dir).unwrap();
    edit_manifest(&dir, |m| {
        m["version"] = 1.into();
        m.as_object_mut().unwrap().remove("answer_signer");
    });
    fs::remove_file(dir.join("answer-signer-0.pem")).unwrap();
    match keyring_files::load(&dir) {
        Err(IssuerError::Keyring(e)) => assert!(e.contains("migrat"), "{e}"),
        other => panic!(
            "a format 1 keyring loaded without migration: {:?}",
            other.is_ok()
        ),
    }

    let later = NOW.saturating_add(DAY);
    let (migrated, generated) =
        keyring_files::load_or_generate(&dir, &config(), later, &mut rng(41)).unwrap();
    assert!(!generated, "migration is not a new keyring");
    let (old, new) = (fingerprint(base()), fingerprint(&migrated));
    assert_eq!(new.root, old.root);
    assert_eq!(new.keysets, old.keysets);
    assert_eq!(
        new.roles[..5],
        old.roles[..5],
        "a key other than the answer key changed"
    );
    assert_eq!(new.roles[5].len(), 1);
    assert_eq!(
        new.roles[5][0].1,
        Validity::new(
            later.saturating_sub(DAY),
            later.saturating_add(config().key_lifetime)
        )
        .unwrap()
    );
    // Saved in format 2: the next start loads it as it is.
    assert_private(&dir);
    assert_eq!(fingerprint(&keyring_files::load(&dir).unwrap()), new);
}

/// Saves a copy of the base keyring into a fresh directory, applies `damage`, loads.
fn load_damaged(damage: impl FnOnce(&Path)) -> (tempfile::TempDir, scrip_issuer::Result<Keyring>) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("keys");
    keyring_files::save(base(), &dir).unwrap();
    damage(&dir);
    let result = keyring_files::load(&dir);
    (tmp, result)
}

fn edit_manifest(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("keyring.json");
    let mut manifest: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut manifest);
    fs::write(&path, serde_json::to_vec(&manifest).unwrap()).unwrap();
}

#[test]
fn a_damaged_or_unknown_manifest_is_an_error_not_a_panic() {
    // The undamaged copy loads (so each failure below is the damage's doing).
    let (_tmp, ok) = load_damaged(|_| {});
    assert_eq!(fingerprint(&ok.unwrap()), fingerprint(base()));

    type Damage = Box<dyn FnOnce(&Path)>;
    let cases: Vec<(&str, Damage)> = vec![
        (
            "not json",
            Box::new(|d| fs::write(d.join("keyring.json"), b"\x00\xffnot json").unwrap()),
        ),
        (
            "empty manifest",
            Box::new(|d| fs::write(d.join("keyring.json"), b"").unwrap()),
        ),
        (
            "truncated manifest",
            Box::new(|d| {
                let path = d.join("keyring.json");
                let text = fs::read(&path).unwrap();
                fs::write(&path, &text[..text.len() / 2]).unwrap();
            }),
        ),
        (
            "missing manifest",
            Box::new(|d| fs::remove_file(d.join("keyring.json")).unwrap()),
        ),
        (
            "version 3",
            Box::new(|d| edit_manifest(d, |m| m["version"] = 3.into())),
        ),
        (
            "version 0",
            Box::new(|d| edit_manifest(d, |m| m["version"] = 0.into())),
        ),
        (
            "version as text",
            Box::new(|d| edit_manifest(d, |m| m["version"] = "1".into())),
        ),
        (
            "no version",
            Box::new(|d| {
                edit_manifest(d, |m| {
                    m.as_object_mut().unwrap().remove("version");
                })
            }),
        ),
        (
            "no balance keys listed",
            Box::new(|d| edit_manifest(d, |m| m["balance_certifier"] = serde_json::json!([]))),
        ),
        (
            "path outside the directory",
            Box::new(|d| edit_manifest(d, |m| m["root"] = "../keys/root.pem".into())),
        ),
        (
            "absolute path",
            Box::new(|d| edit_manifest(d, |m| m["root"] = "/etc/passwd".into())),
        ),
        (
            "empty window",
            Box::new(|d| {
                edit_manifest(d, |m| {
                    let v = &mut m["deposit_issuer"][0]["validity"];
                    let start = v["not_before"].clone();
                    v["not_before"] = v["not_after"].clone();
                    v["not_after"] = start;
                })
            }),
        ),
        (
            "one key for two denominations",
            Box::new(|d| {
                edit_manifest(d, |m| {
                    let file = m["keysets"][0]["denominations"][0]["file"].clone();
                    m["keysets"][0]["denominations"][1]["file"] = file;
                })
            }),
        ),
        (
            "keyset without denominations",
            Box::new(|d| {
                edit_manifest(d, |m| {
                    m["keysets"][0]["denominations"] = serde_json::json!([])
                })
            }),
        ),
        (
            "bad currency",
            Box::new(|d| edit_manifest(d, |m| m["keysets"][0]["currency"] = "euro".into())),
        ),
        (
            "missing key file",
            Box::new(|d| fs::remove_file(d.join("balance-certifier-0.pem")).unwrap()),
        ),
        (
            "garbage key file",
            Box::new(|d| {
                fs::write(d.join("root.pem"), b"-----BEGIN PRIVATE KEY-----\nAAAA\n").unwrap()
            }),
        ),
        (
            "empty key file",
            Box::new(|d| fs::write(d.join("keyset-1-usd-20.pem"), b"").unwrap()),
        ),
        (
            "a public key instead of a private one",
            Box::new(|d| {
                let public = base().root.verifying_key().public_key().to_pem().unwrap();
                fs::write(d.join("merchant-certifier-0.pem"), public).unwrap();
            }),
        ),
    ];
    for (what, damage) in cases {
        let (_tmp, result) = load_damaged(damage);
        match result {
            Ok(_) => panic!("{what}: loaded"),
            Err(e @ (IssuerError::Keyring(_) | IssuerError::Invalid(_))) => {
                if what == "version 3" {
                    assert!(e.to_string().contains("version 3"), "{what}: {e}");
                }
            }
            Err(e) => panic!("{what}: unexpected error {e:?}"),
        }
    }
}

#[test]
fn load_or_generate_never_replaces_a_damaged_keyring() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("keys");
    keyring_files::save(base(), &dir).unwrap();
    edit_manifest(&dir, |m| m["version"] = 99.into());
    let manifest = fs::read(dir.join("keyring.json")).unwrap();
    let root = fs::read(dir.join("root.pem")).unwrap();
    let result = keyring_files::load_or_generate(&dir, &config(), NOW, &mut rng(50));
    assert!(matches!(result, Err(IssuerError::Keyring(_))));
    // Nothing was overwritten: the operator can repair it.
    assert_eq!(fs::read(dir.join("keyring.json")).unwrap(), manifest);
    assert_eq!(fs::read(dir.join("root.pem")).unwrap(), root);

    // An empty or missing directory is not a keyring.
    let empty = tmp.path().join("empty");
    fs::create_dir(&empty).unwrap();
    assert!(keyring_files::load(&empty).is_err());
    assert!(keyring_files::load(&tmp.path().join("absent")).is_err());
}

/// A token never claims validity beyond its signing key: its signature is accepted only
/// while the key is valid, so the issuer caps the token's end at the key's end.
#[tokio::test]
async fn a_certificate_never_outlives_the_key_that_signs_it() {
    let issuer = issuer(MemoryStore::new());
    let mut rng = rng(60);
    let key_end = key_validity().not_after;
    let mut wallet = RawWallet::open(&issuer, 1, &mut rng).await;
    wallet.deposit(&issuer, 1_000, &mut rng).await;
    // A balance certificate issued an hour before the only balance key expires ends with
    // the key, not a day later: it verifies for its whole stated validity.
    let late = key_end.saturating_sub(HOUR);
    let cert = wallet.certificate(&issuer, 100, late, &mut rng).await;
    let directory = issuer.keys().directory(late).unwrap();
    let account = &wallet.certificate.payload;
    assert_eq!(cert.payload.expires_at, key_end);
    cert.verify(&directory, account, late).unwrap();
    cert.verify(&directory, account, cert.payload.expires_at)
        .unwrap();
    // The same holds for account certificates (1 year) signed by a key with 180 days left.
    assert_eq!(wallet.certificate.payload.validity.not_after, key_end);
}

/// A private key file rewritten as PKCS#1 with its two primes swapped: other bytes (other
/// CRT parameters), the same key pair.
fn reencode_private_pem(pem: &str) -> String {
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::traits::{PrivateKeyParts, PublicKeyParts};
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(pem).unwrap();
    let [p, q] = key.primes() else {
        panic!("a two-prime key");
    };
    let swapped = rsa::RsaPrivateKey::from_p_q(q.clone(), p.clone(), key.e().clone()).unwrap();
    assert_eq!(swapped.to_public_key(), key.to_public_key());
    let out = swapped
        .to_pkcs1_pem(rsa::pkcs1::LineEnding::LF)
        .unwrap()
        .to_string();
    assert_ne!(out, pem);
    out
}

/// The cluster's servers compare keyrings by fingerprint: it must be the same for the same
/// keys however they were stored, and differ as soon as anything public differs.
#[test]
fn the_keyring_fingerprint_survives_save_and_load_and_changes_with_a_rotation() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("keys");
    let keyring = copy(base());
    let before = keyring.fingerprint();
    assert_eq!(
        before,
        base().fingerprint(),
        "a copy has the same fingerprint"
    );
    keyring_files::save(&keyring, &dir).unwrap();
    assert_eq!(keyring_files::load(&dir).unwrap().fingerprint(), before);
    // Saved again over itself (what a rotation does to the unchanged keys): unchanged.
    keyring_files::save(&keyring_files::load(&dir).unwrap(), &dir).unwrap();
    assert_eq!(keyring_files::load(&dir).unwrap().fingerprint(), before);

    // A rotation adds a public key: another fingerprint, stable across save and load.
    let mut rotated = keyring_files::load(&dir).unwrap();
    rotated
        .rotate(
            IssuerKeyRole::Answer,
            NOW.saturating_add(DAY),
            DAY * 60,
            DEFAULT_RSA_BITS,
            &mut rng(70),
        )
        .unwrap();
    let after = rotated.fingerprint();
    assert_ne!(after, before);
    keyring_files::save(&rotated, &dir).unwrap();
    assert_eq!(keyring_files::load(&dir).unwrap().fingerprint(), after);

    // The same keys with another validity window are another keyring.
    let mut shifted = copy(base());
    let first = &shifted.deposit_issuer.all()[0];
    let moved = IssuerKey {
        key: SigningKey::from_pem(&first.key.to_pem().unwrap()).unwrap(),
        validity: Validity::new(
            first.validity.not_before,
            first.validity.not_after.saturating_add(DAY),
        )
        .unwrap(),
    };
    shifted.deposit_issuer = RoleKeys::new(vec![moved]).unwrap();
    assert_ne!(shifted.fingerprint(), before);

    // The same key under another role is another keyring: roles are part of it.
    let mut swapped = copy(base());
    let account = swapped.account_certifier.all()[0].key.to_pem().unwrap();
    let merchant = swapped.merchant_certifier.all()[0].key.to_pem().unwrap();
    let validity = swapped.account_certifier.all()[0].validity;
    swapped.account_certifier = RoleKeys::new(vec![IssuerKey {
        key: SigningKey::from_pem(&merchant).unwrap(),
        validity,
    }])
    .unwrap();
    swapped.merchant_certifier = RoleKeys::new(vec![IssuerKey {
        key: SigningKey::from_pem(&account).unwrap(),
        validity: swapped.merchant_certifier.all()[0].validity,
    }])
    .unwrap();
    assert_ne!(swapped.fingerprint(), before);
}

/// Only public material goes into the fingerprint: every private key file rewritten in
/// another encoding, with its primes in the other order, loads as the same fingerprint.
/// Denominations given in another order are sorted, as the keyset itself is.
#[test]
fn the_keyring_fingerprint_is_independent_of_private_key_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("keys");
    let keyring = copy(base());
    keyring_files::save(&keyring, &dir).unwrap();
    let mut rewritten = 0;
    for entry in fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "pem") {
            let pem = fs::read_to_string(&path).unwrap();
            fs::write(&path, reencode_private_pem(&pem)).unwrap();
            rewritten += 1;
        }
    }
    assert_eq!(rewritten, 12, "every private key file");
    let loaded = keyring_files::load(&dir).unwrap();
    assert_eq!(loaded.fingerprint(), keyring.fingerprint());

    let set = &keyring.keysets[0];
    let reversed = KeysetKeys::new(
        set.keyset.currency(),
        set.keyset.validity(),
        set.keyset.issue_until(),
        set.keys
            .iter()
            .rev()
            .map(|(v, k)| {
                (
                    *v,
                    DenominationSigningKey::from_pem(&k.to_pem().unwrap()).unwrap(),
                )
            })
            .collect(),
    )
    .unwrap();
    let mut reordered = copy(base());
    reordered.keysets[0] = reversed;
    assert_eq!(reordered.fingerprint(), keyring.fingerprint());
}
