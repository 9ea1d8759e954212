//! Keyring persistence: one PKCS#8 PEM file per private key (mode 0600, written
//! atomically) and a JSON manifest (`keyring.json`, format version 2) naming each file's
//! role and validity window.
//!
//! Format 1 had no answer key (the key that signs redemption and sync reports and
//! statements). [`load_or_generate`] migrates it: it generates that key, valid from the
//! start, and saves the keyring in format 2; every other key stays as it was.

use std::fs;
use std::io::Write as _;
use std::path::Path;

use rand_core::CryptoRng;
use scrip_tokens::keys::IssuerRole;
use scrip_tokens::{Currency, DenominationSigningKey, SigningKey, Timestamp, Validity};
use serde::{Deserialize, Serialize};

use crate::keyring::{IssuerKey, KeysetKeys, RoleKeys};
use crate::{IssuerError, Keyring, KeyringConfig, Result};

const MANIFEST: &str = "keyring.json";
const MANIFEST_VERSION: u32 = 2;

/// How far back a key added by a migration is valid (see [`load_or_generate`]).
const MIGRATION_BACKDATE: std::time::Duration = std::time::Duration::from_secs(86_400);

#[derive(Serialize, Deserialize)]
struct Manifest {
    version: u32,
    root: String,
    account_certifier: Vec<KeyFile>,
    merchant_certifier: Vec<KeyFile>,
    balance_certifier: Vec<KeyFile>,
    deposit_issuer: Vec<KeyFile>,
    identified_coin_issuer: Vec<KeyFile>,
    /// Absent in format 1.
    #[serde(default)]
    answer_signer: Vec<KeyFile>,
    keysets: Vec<KeysetFile>,
}

#[derive(Serialize, Deserialize)]
struct KeyFile {
    file: String,
    validity: Validity,
}

#[derive(Serialize, Deserialize)]
struct KeysetFile {
    currency: Currency,
    validity: Validity,
    issue_until: Timestamp,
    denominations: Vec<DenominationFile>,
}

#[derive(Serialize, Deserialize)]
struct DenominationFile {
    minor_units: u64,
    file: String,
}

fn err(context: &str, e: impl std::fmt::Display) -> IssuerError {
    IssuerError::Keyring(format!("{context}: {e}"))
}

/// Writes `contents` to `dir/name` with mode 0600 (written atomically: see `write_atomically`): for every
/// secret or state file a restart trusts (keys, the operator token, a wallet's state).
pub fn write_private(dir: &Path, name: &str, contents: &[u8]) -> Result<()> {
    write_atomically(dir, name, contents, 0o600)
}

/// Writes `contents` to `dir/name` with `mode` so that a crash at any point leaves either
/// the old file or the new one whole: a temporary file of this process (created new,
/// never a stale one), fsync, rename over the target, fsync of the directory (which makes
/// the rename durable).
pub(crate) fn write_atomically(dir: &Path, name: &str, contents: &[u8], mode: u32) -> Result<()> {
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    // A leftover of this pid's earlier crash: nobody else writes this name.
    let _ = fs::remove_file(&tmp);
    let mut file = permissions::create_new(&tmp, mode)
        .map_err(|e| err(&format!("creating {}", tmp.display()), e))?;
    let written = file
        .write_all(contents)
        .and_then(|()| file.sync_all())
        .and_then(|()| fs::rename(&tmp, dir.join(name)));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(err(&format!("writing {}", dir.join(name).display()), e));
    }
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<()> {
    permissions::sync_dir(dir).map_err(|e| err(&format!("syncing {}", dir.display()), e))
}

/// File modes and directory fsync exist on Unix only. Elsewhere (the issuer core also
/// builds for platforms without `std::os::unix`) files get the platform's default access
/// rules, which the operator must restrict, and a rename is as durable as the platform
/// makes it: that is the documented limit of running the keyring outside Unix.
mod permissions {
    use std::fs;
    use std::io;
    use std::path::Path;

    /// Creates `path`, which must not exist, for writing with `mode` (Unix permissions).
    pub(super) fn create_new(path: &Path, mode: u32) -> io::Result<fs::File> {
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(mode);
        }
        #[cfg(not(unix))]
        let _ = mode;
        options.open(path)
    }

    /// Creates `dir` (and its parents) accessible to the owner only, and restricts it if
    /// it already existed with looser permissions.
    pub(super) fn create_private_dir(dir: &Path) -> io::Result<()> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        }
        #[cfg(not(unix))]
        fs::create_dir_all(dir)
    }

    /// Makes a rename inside `dir` durable (fsync of the directory).
    pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
        #[cfg(unix)]
        {
            fs::File::open(dir)?.sync_all()
        }
        #[cfg(not(unix))]
        {
            let _ = dir;
            Ok(())
        }
    }
}

fn read(dir: &Path, name: &str) -> Result<String> {
    if name.contains('/') || name.contains("..") {
        return Err(err("manifest", format!("bad file name {name:?}")));
    }
    fs::read_to_string(dir.join(name)).map_err(|e| err(name, e))
}

fn save_role<R: IssuerRole>(dir: &Path, prefix: &str, keys: &RoleKeys<R>) -> Result<Vec<KeyFile>> {
    keys.all()
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let file = format!("{prefix}-{i}.pem");
            write_private(dir, &file, k.key.to_pem()?.as_bytes())?;
            Ok(KeyFile {
                file,
                validity: k.validity,
            })
        })
        .collect()
}

fn load_role<R: IssuerRole>(dir: &Path, files: &[KeyFile]) -> Result<RoleKeys<R>> {
    let keys = files
        .iter()
        .map(|f| {
            Ok(IssuerKey {
                key: SigningKey::from_pem(&read(dir, &f.file)?)?,
                validity: f.validity,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    RoleKeys::new(keys)
}

/// Saves every key of `keyring` into `dir` (created if needed, mode 0700).
pub fn save(keyring: &Keyring, dir: &Path) -> Result<()> {
    // An existing directory may have been created with looser permissions: restricted too.
    permissions::create_private_dir(dir).map_err(|e| err("creating the key directory", e))?;
    write_private(dir, "root.pem", keyring.root.to_pem()?.as_bytes())?;
    let mut keysets = Vec::new();
    for (n, set) in keyring.keysets.iter().enumerate() {
        let mut denominations = Vec::new();
        for (v, key) in &set.keys {
            let file = format!(
                "keyset-{n}-{}-{}.pem",
                set.keyset.currency().as_str().to_lowercase(),
                v
            );
            write_private(dir, &file, key.to_pem()?.as_bytes())?;
            denominations.push(DenominationFile {
                minor_units: *v,
                file,
            });
        }
        keysets.push(KeysetFile {
            currency: set.keyset.currency(),
            validity: set.keyset.validity(),
            issue_until: set.keyset.issue_until(),
            denominations,
        });
    }
    let manifest = Manifest {
        version: MANIFEST_VERSION,
        root: "root.pem".into(),
        account_certifier: save_role(dir, "account-certifier", &keyring.account_certifier)?,
        merchant_certifier: save_role(dir, "merchant-certifier", &keyring.merchant_certifier)?,
        balance_certifier: save_role(dir, "balance-certifier", &keyring.balance_certifier)?,
        deposit_issuer: save_role(dir, "deposit-issuer", &keyring.deposit_issuer)?,
        identified_coin_issuer: save_role(
            dir,
            "identified-coin-issuer",
            &keyring.identified_coin_issuer,
        )?,
        answer_signer: save_role(dir, "answer-signer", &keyring.answer_signer)?,
        keysets,
    };
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| err("manifest", e))?;
    // The manifest holds no secret, but 0600 keeps the directory uniform. Written last:
    // a crash before it leaves no manifest, and the next start generates afresh.
    write_private(dir, MANIFEST, &json)
}

/// Whether `dir` holds a saved keyring (its manifest).
pub fn exists(dir: &Path) -> bool {
    dir.join(MANIFEST).exists()
}

/// Loads a keyring saved by [`save`] (format 2; [`load_or_generate`] migrates format 1).
pub fn load(dir: &Path) -> Result<Keyring> {
    let manifest = read_manifest(dir)?;
    if manifest.version != MANIFEST_VERSION {
        return Err(err(
            "manifest",
            format!(
                "version {} needs migrating: start the server on it once",
                manifest.version
            ),
        ));
    }
    load_manifest(dir, manifest, None)
}

fn read_manifest(dir: &Path) -> Result<Manifest> {
    let manifest: Manifest =
        serde_json::from_str(&read(dir, MANIFEST)?).map_err(|e| err("manifest", e))?;
    if manifest.version == 0 || manifest.version > MANIFEST_VERSION {
        return Err(err(
            "manifest",
            format!("version {} not supported", manifest.version),
        ));
    }
    Ok(manifest)
}

/// The keyring of `manifest`; `answer_signer` stands in for a format 1 manifest's
/// missing answer key.
fn load_manifest(
    dir: &Path,
    manifest: Manifest,
    answer_signer: Option<RoleKeys<scrip_tokens::keys::AnswerSigner>>,
) -> Result<Keyring> {
    let keysets = manifest
        .keysets
        .iter()
        .map(|set| {
            let keys = set
                .denominations
                .iter()
                .map(|d| {
                    Ok((
                        d.minor_units,
                        DenominationSigningKey::from_pem(&read(dir, &d.file)?)?,
                    ))
                })
                .collect::<Result<Vec<_>>>()?;
            KeysetKeys::new(set.currency, set.validity, set.issue_until, keys)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Keyring {
        root: SigningKey::from_pem(&read(dir, &manifest.root)?)?,
        account_certifier: load_role(dir, &manifest.account_certifier)?,
        merchant_certifier: load_role(dir, &manifest.merchant_certifier)?,
        balance_certifier: load_role(dir, &manifest.balance_certifier)?,
        deposit_issuer: load_role(dir, &manifest.deposit_issuer)?,
        identified_coin_issuer: load_role(dir, &manifest.identified_coin_issuer)?,
        answer_signer: match answer_signer {
            Some(keys) => keys,
            None => load_role(dir, &manifest.answer_signer)?,
        },
        keysets,
    })
}

/// Loads the keyring in `dir`, or generates one with `config` and saves it there if `dir`
/// holds none (first start). Returns whether keys were generated.
pub fn load_or_generate<G: CryptoRng + ?Sized>(
    dir: &Path,
    config: &KeyringConfig,
    now: Timestamp,
    rng: &mut G,
) -> Result<(Keyring, bool)> {
    if dir.join(MANIFEST).exists() {
        let manifest = read_manifest(dir)?;
        if manifest.version == MANIFEST_VERSION {
            return Ok((load_manifest(dir, manifest, None)?, false));
        }
        // Format 1: add the answer key, then save in the current format (the caller
        // holds the directory's lock).
        // Valid from a day back, so that clients whose clock runs behind the server's
        // accept answers right away (nothing was signed with it before now).
        let validity = Validity::new(
            now.saturating_sub(MIGRATION_BACKDATE),
            now.saturating_add(config.key_lifetime),
        )?;
        let answer_signer = RoleKeys::new(vec![IssuerKey {
            key: SigningKey::generate(rng, config.rsa_bits)?,
            validity,
        }])?;
        let keyring = load_manifest(dir, manifest, Some(answer_signer))?;
        save(&keyring, dir)?;
        tracing::info!(dir = %dir.display(), "keyring migrated to format 2: answer key added");
        return Ok((keyring, false));
    }
    let keyring = Keyring::generate(config, now, rng)?;
    save(&keyring, dir)?;
    Ok((keyring, true))
}
