//! State directories and the files payment messages travel in (`-`: stdin or stdout),
//! standing in for NFC, BLE or QR codes.

use std::io::{Read, Write};
use std::path::Path;

use rand::rngs::StdRng;
use rand::SeedableRng;
use scrip::issuer::server::DirectoryLock;
use scrip::Error;

pub fn rng() -> StdRng {
    StdRng::from_rng(&mut rand::rng())
}

pub fn read_input(path: &str) -> Result<Vec<u8>, Error> {
    let mut bytes = Vec::new();
    if path == "-" {
        std::io::stdin()
            .read_to_end(&mut bytes)
            .map_err(Error::io("reading stdin"))?;
    } else {
        bytes = std::fs::read(path).map_err(Error::io(format!("reading {path}")))?;
    }
    Ok(bytes)
}

pub fn write_output(path: &str, bytes: &[u8]) -> Result<(), Error> {
    if path == "-" {
        let mut stdout = std::io::stdout();
        stdout
            .write_all(bytes)
            .and_then(|_| stdout.flush())
            .map_err(Error::io("writing stdout"))
    } else {
        std::fs::write(path, bytes).map_err(Error::io(format!("writing {path}")))
    }
}

/// Creates the state directory (0700) if needed and locks it for this command: two
/// commands on one wallet at once would both load the same state, both spend the same
/// coins and sequence numbers, and the last to save would erase the other's payments.
pub fn lock_state_dir(dir: &Path) -> Result<DirectoryLock, Error> {
    Ok(DirectoryLock::create_and_acquire(dir)?)
}

/// Writes a file readable only by its owner, atomically (a fresh temporary file, fsync,
/// rename, directory fsync): the state of a wallet or terminal is never half-written.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::Usage(format!("{} is not a file name", path.display())))?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    Ok(scrip::issuer::keyring_files::write_private(
        dir.unwrap_or(Path::new(".")),
        name,
        bytes,
    )?)
}

pub fn read_text(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .map_err(Error::io(format!("reading {}", path.display())))
}
