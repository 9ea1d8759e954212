//! The data directory: created owner-only, held by one server process at a time, and every
//! file in it that a restart trusts written atomically (temporary file, fsync, rename,
//! directory fsync; see [`crate::keyring_files`]).
//!
//! Two servers on one directory would each keep their own replay cache and, with different
//! `--store` kinds, their own record of what was redeemed: a coin could be credited twice.
//! Two servers starting together on a fresh directory would both generate keys and
//! overwrite each other's. So [`start`](super::start) takes an exclusive lock on the
//! directory before it reads or writes anything in it, and a second server stops there
//! having changed nothing.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::keyring_files::{write_atomically, write_private};
use crate::{IssuerError, Result};

/// The lock file in a locked directory. It holds the pid of the process that holds it.
pub const LOCK_FILE: &str = "scrip-server.lock";

/// An exclusive advisory lock (`flock`) on a directory, held until dropped, or until the
/// process exits however it exits.
#[derive(Debug)]
pub struct DirectoryLock {
    _file: File,
    dir: PathBuf,
}

impl DirectoryLock {
    /// Takes the lock on `dir` (which must exist), or fails at once with
    /// [`IssuerError::DirectoryInUse`] if another process holds it.
    pub fn acquire(dir: &Path) -> Result<Self> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = dir.join(LOCK_FILE);
        let io = |e: std::io::Error| IssuerError::Io(format!("locking {}: {e}", path.display()));
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(IssuerError::DirectoryInUse(dir.to_path_buf()))
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        // For an operator wondering who holds it; the lock, not the content, is what counts.
        file.set_len(0)
            .and_then(|()| writeln!(file, "{}", std::process::id()))
            .map_err(io)?;
        Ok(DirectoryLock {
            _file: file,
            dir: dir.to_path_buf(),
        })
    }

    /// Creates `dir` owner-only (0700) if it is missing, then takes its lock.
    pub fn create_and_acquire(dir: &Path) -> Result<Self> {
        make_private_dir(dir)?;
        Self::acquire(dir)
    }

    /// The locked directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Whether two existing paths name one directory (after resolving links and `..`).
pub(super) fn same_directory(a: &Path, b: &Path) -> Result<bool> {
    let canonical = |p: &Path| {
        std::fs::canonicalize(p)
            .map_err(|e| IssuerError::Io(format!("resolving {}: {e}", p.display())))
    };
    Ok(canonical(a)? == canonical(b)?)
}

/// Creates the data directory owner-only (0700): the store holds identified coins and
/// deposit records, spendable by whoever copies them. An existing directory is left as
/// the operator set it, with a warning when others can read it.
pub(super) fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    make_private_dir(dir)?;
    match std::fs::metadata(dir) {
        Ok(meta) if meta.permissions().mode() & 0o077 != 0 => tracing::warn!(
            data_dir = %dir.display(),
            mode = format!("{:o}", meta.permissions().mode() & 0o777),
            "the data directory is readable by other users; the store holds spendable coins"
        ),
        _ => {}
    }
    Ok(())
}

/// Warns when other users can get at a cluster server's keys directory: the directory's
/// mode, or a key file's (`*.pem`, links followed), has group or other bits. A cluster
/// server only reads that directory (several servers and the operator's copies share
/// it), so it neither restricts it, as an embedded server's [`make_private_dir`] does, nor
/// refuses it: like the data directory, it says so. Quiet on a 0700 directory of 0600
/// files; a directory it cannot list is left to the keyring load to report.
#[cfg(unix)]
pub(super) fn warn_if_keys_readable_by_others(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let loose = |meta: &std::fs::Metadata| meta.permissions().mode() & 0o077 != 0;
    if let Ok(meta) = std::fs::metadata(dir) {
        if loose(&meta) {
            tracing::warn!(
                keys_dir = %dir.display(),
                mode = format!("{:o}", meta.permissions().mode() & 0o777),
                "the keys directory is accessible to other users; it holds the issuer's \
                 private keys (make it 0700)"
            );
        }
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut exposed: Vec<String> = entries
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.path().extension().is_some_and(|e| e == "pem"))
        .filter(|entry| {
            std::fs::metadata(entry.path()).is_ok_and(|meta| meta.is_file() && loose(&meta))
        })
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    if !exposed.is_empty() {
        exposed.sort();
        tracing::warn!(
            keys_dir = %dir.display(),
            files = exposed.join(", "),
            "key files are readable by other users; they are the issuer's private keys (make \
             them 0600)"
        );
    }
}

/// File modes exist on Unix only: elsewhere the operator restricts access.
#[cfg(not(unix))]
pub(super) fn warn_if_keys_readable_by_others(_dir: &Path) {}

/// Creates `dir` (and missing parents) with mode 0700; an existing one is left as it is.
pub(super) fn make_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| IssuerError::Io(format!("creating {}: {e}", dir.display())))
}

/// Reads `<data_dir>/operator-token`, or creates it (0600) with a random token. Called
/// with the data directory locked.
pub(super) fn load_or_create_operator_token(data_dir: &Path) -> Result<String> {
    let path = data_dir.join(OPERATOR_TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => return Ok(s.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(IssuerError::Io(format!("reading {}: {e}", path.display()))),
    }
    let token = super::generate_operator_token();
    write_private(data_dir, OPERATOR_TOKEN_FILE, token.as_bytes())?;
    Ok(token)
}

/// The operator token file in the data directory.
pub const OPERATOR_TOKEN_FILE: &str = "operator-token";

/// The public root key file in the data directory, which wallets and merchants pin.
pub const ROOT_KEY_FILE: &str = "root-key.pem";

/// Publishes the root key as `<data_dir>/root-key.pem` (public, 0644), rewriting it only
/// when it differs, atomically. Called with the data directory locked.
pub(super) fn publish_root_key(data_dir: &Path, pem: &str) -> Result<()> {
    if std::fs::read_to_string(data_dir.join(ROOT_KEY_FILE)).is_ok_and(|old| old == pem) {
        return Ok(());
    }
    write_atomically(data_dir, ROOT_KEY_FILE, pem.as_bytes(), 0o644)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_locked_directory_cannot_be_locked_again_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let first = DirectoryLock::acquire(dir.path()).unwrap();
        assert!(matches!(
            DirectoryLock::acquire(dir.path()),
            Err(IssuerError::DirectoryInUse(d)) if d == dir.path()
        ));
        let pid = std::fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap();
        assert_eq!(pid.trim(), std::process::id().to_string());
        drop(first);
        DirectoryLock::acquire(dir.path()).unwrap();
    }
}
