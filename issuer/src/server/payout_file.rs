//! The demo payout sink of `scrip-server`: "pays" by appending a line to a file in the data
//! directory, so an operator trying the server sees what would have gone to the banks.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use scrip_tokens::{Amount, MerchantId, PayoutId, Timestamp};
use serde::{Deserialize, Serialize};

use crate::{IssuerError, Payout, PayoutConfirmation, PayoutError, PayoutSink, Result};

/// The file [`DemoPayoutFile`] keeps in the data directory.
pub const DEMO_PAYOUTS_FILE: &str = "demo-payouts.jsonl";

/// One payout made, one JSON line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct PaidLine {
    payout_id: PayoutId,
    merchant_id: MerchantId,
    amount: Amount,
    reference: String,
    paid_at: Timestamp,
}

/// A [`PayoutSink`] that pays nothing anywhere: it appends each payout, once per payout id,
/// as a JSON line to [`DEMO_PAYOUTS_FILE`], written and fsynced before it confirms (a
/// payout it confirmed survives a crash; a line torn by a crash is dropped when the file
/// is opened again, and that payout was never confirmed). Asked again for a payout it
/// made, it answers the same reference; for a known id with another merchant or amount,
/// [`PayoutError::Mismatch`].
///
/// One file per data directory: the servers of a cluster each keep their own, so two of
/// them finishing one payout at the same moment may both write it (the issuer's ledger
/// still settles it once). A real deployment embeds the server with a [`PayoutSink`] over
/// its bank.
pub struct DemoPayoutFile {
    path: PathBuf,
    /// Shared with the blocking task that writes and fsyncs (never on the async runtime).
    state: Arc<Mutex<(File, HashMap<PayoutId, PaidLine>)>>,
}

impl DemoPayoutFile {
    /// Opens (or creates, owner-only) the file at `path` and reads the payouts in it.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = path.into();
        let io = |e: std::io::Error| IssuerError::Io(format!("{}: {e}", path.display()));
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        let (paid, good_len) = read_lines(&mut file, &path)?;
        if good_len < file.metadata().map_err(io)?.len() {
            tracing::warn!(path = %path.display(), "dropping a torn last line of the demo payouts file");
            file.set_len(good_len).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        Ok(DemoPayoutFile {
            path,
            state: Arc::new(Mutex::new((file, paid))),
        })
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The payouts in the file and the length of its complete lines.
fn read_lines(file: &mut File, path: &Path) -> Result<(HashMap<PayoutId, PaidLine>, u64)> {
    let io = |e: std::io::Error| IssuerError::Io(format!("{}: {e}", path.display()));
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    let mut reader = BufReader::new(&*file);
    let mut paid = HashMap::new();
    let mut good_len = 0u64;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).map_err(io)?;
        if n == 0 || line.last() != Some(&b'\n') {
            break;
        }
        match serde_json::from_slice::<PaidLine>(&line) {
            Ok(p) => {
                paid.insert(p.payout_id, p);
            }
            // A complete line that does not parse is not a torn tail: someone edited
            // the file. Stop rather than guess.
            Err(e) => {
                return Err(IssuerError::Corrupted(format!(
                    "{} at byte {good_len}: {e}",
                    path.display()
                )))
            }
        }
        good_len += n as u64;
    }
    Ok((paid, good_len))
}

#[async_trait]
impl PayoutSink for DemoPayoutFile {
    async fn pay(&self, payout: &Payout) -> std::result::Result<PayoutConfirmation, PayoutError> {
        let (state, path, payout) = (Arc::clone(&self.state), self.path.clone(), payout.clone());
        // The write and its fsync block: off the async runtime.
        tokio::task::spawn_blocking(move || pay_blocking(&state, &path, &payout))
            .await
            .map_err(|e| PayoutError::Unavailable(format!("the demo payout task failed: {e}")))?
    }
}

fn pay_blocking(
    state: &Mutex<(File, HashMap<PayoutId, PaidLine>)>,
    path: &Path,
    payout: &Payout,
) -> std::result::Result<PayoutConfirmation, PayoutError> {
    let mut guard = state
        .lock()
        .map_err(|_| PayoutError::Unavailable("the demo payouts file lock is poisoned".into()))?;
    let (file, paid) = &mut *guard;
    if let Some(known) = paid.get(&payout.payout_id) {
        return if known.merchant_id == payout.merchant_id && known.amount == payout.amount {
            Ok(PayoutConfirmation {
                reference: known.reference.clone(),
            })
        } else {
            Err(PayoutError::Mismatch)
        };
    }
    let line = PaidLine {
        payout_id: payout.payout_id,
        merchant_id: payout.merchant_id,
        amount: payout.amount,
        reference: format!("demo-{}", payout.payout_id),
        paid_at: super::now(),
    };
    let mut bytes = serde_json::to_vec(&line)
        .map_err(|e| PayoutError::Unavailable(format!("encoding a payout: {e}")))?;
    bytes.push(b'\n');
    let unavailable =
        |e: std::io::Error| PayoutError::Unavailable(format!("{}: {e}", path.display()));
    // One write of the whole line, then fsync: confirmed only once durable. A failed write
    // may leave part of the line: the file is cut back to its length before the write (not
    // by the line's length, which would cut into the last confirmed line after a short
    // write).
    let before = file.metadata().map_err(unavailable)?.len();
    if let Err(e) = file.write_all(&bytes).and_then(|()| file.sync_data()) {
        let _ = file.set_len(before);
        return Err(unavailable(e));
    }
    let reference = line.reference.clone();
    paid.insert(payout.payout_id, line);
    Ok(PayoutConfirmation { reference })
}

#[cfg(test)]
mod tests {
    use super::*;
    use scrip_tokens::Currency;

    fn payout(n: u128, minor: u64) -> Payout {
        Payout {
            payout_id: PayoutId(uuid::Uuid::from_u128(n)),
            merchant_id: MerchantId(uuid::Uuid::from_u128(99)),
            amount: Amount::new(minor, Currency::EUR),
        }
    }

    #[tokio::test]
    async fn a_payout_is_written_once_and_remembered_across_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DEMO_PAYOUTS_FILE);
        let sink = DemoPayoutFile::open(&path).unwrap();
        let first = sink.pay(&payout(1, 500)).await.unwrap();
        assert_eq!(sink.pay(&payout(1, 500)).await.unwrap(), first);
        assert_eq!(sink.pay(&payout(1, 501)).await, Err(PayoutError::Mismatch));
        sink.pay(&payout(2, 300)).await.unwrap();
        drop(sink);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");

        // A crash tore a third line: it is dropped, the confirmed two stay.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"payout_id\":\"0000")
            .unwrap();
        let sink = DemoPayoutFile::open(&path).unwrap();
        assert_eq!(sink.pay(&payout(1, 500)).await.unwrap(), first);
        assert_eq!(sink.pay(&payout(2, 301)).await, Err(PayoutError::Mismatch));
        sink.pay(&payout(3, 100)).await.unwrap();
        drop(sink);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 3, "{text}");
        assert!(text.ends_with('\n'));
    }
}
