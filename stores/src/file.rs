//! `FileStore`: an append-only log of checksummed frames plus a periodic snapshot, with the
//! whole state in memory.
//!
//! Files in the store's directory:
//! - `scrip.log`: a 24-byte header (magic `SCRIPLOG`, format version, generation, CRC-32)
//!   then frames. A frame is `len: u32 LE | crc32(body): u32 LE | crc32(first 8 bytes):
//!   u32 LE | body`; a body is kind `1` then a count and that many changes `table: u8 |
//!   key_len: u32 | key | value_len: u32 (u32::MAX deletes) | value`. One frame per
//!   group-committed batch, fsynced before any unit of the batch is acknowledged. The
//!   header checksum protects the length, so a damaged length is recognised as damage
//!   rather than read as a (torn) frame boundary.
//! - `scrip.snapshot`: the same header with magic `SCRIPSNP`, then frames holding the whole
//!   state, then an end frame (kind `2`, entry count). Written to a temporary file, fsynced
//!   and renamed, so it is either complete or absent.
//! - `LOCK`: held with an exclusive file lock while the store is open.
//!
//! Recovery: load the snapshot (generation G), replay the log if its generation is G
//! (a log of an older generation is a leftover of an interrupted compaction and is
//! discarded: the snapshot contains it). A crash can only tear the frame being written,
//! whose batch was never acknowledged: replay stops at the first frame that is incomplete
//! or fails a checksum, and the file is truncated there. But if valid frames start
//! somewhere after the damaged one and run back to back to the end of the file, the damage
//! is not a torn tail but corruption of acknowledged data, and opening fails (nothing is
//! truncated) so an operator can look.
//!
//! Compaction: when the log is larger than both `compact_after_bytes` and the last
//! snapshot, the writer thread writes a snapshot of generation G+1 and starts an empty log
//! of generation G+1. Start-up work is thus bounded by about twice the state size.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use crate::engine::{apply_unit, check_format, Table, FORMAT_VERSION};
use crate::memory::MemoryBackend;
use crate::model::{CommitOutcome, Unit};
use crate::store::{Backend, BatchCommitter, Store};
use crate::tables::{MemTables, Overlay};
use crate::{Result, StoreError};

const LOG_MAGIC: &[u8; 8] = b"SCRIPLOG";
const SNAPSHOT_MAGIC: &[u8; 8] = b"SCRIPSNP";
const HEADER_LEN: u64 = 24;
const FRAME_HEADER_LEN: usize = 12;
const KIND_CHANGES: u8 = 1;
const KIND_SNAPSHOT_END: u8 = 2;
const DELETED: u32 = u32::MAX;
const SNAPSHOT_FRAME_ENTRIES: usize = 4096;

/// Tuning of a [`FileStore`].
#[derive(Clone, Debug)]
pub struct FileStoreOptions {
    /// Compact once the log exceeds this many bytes (and the last snapshot's size).
    /// Default 64 MiB.
    pub compact_after_bytes: u64,
}

impl Default for FileStoreOptions {
    fn default() -> Self {
        FileStoreOptions {
            compact_after_bytes: 64 << 20,
        }
    }
}

/// What opening the store found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Generation of the snapshot loaded (0: none).
    pub generation: u64,
    /// Entries loaded from the snapshot.
    pub snapshot_entries: u64,
    /// Log frames replayed.
    pub log_frames: u64,
    /// Bytes cut from the end of the log (a torn, never-acknowledged write).
    pub truncated_bytes: u64,
    /// A log left over from an interrupted compaction was discarded.
    pub discarded_stale_log: bool,
}

type Change = (Table, Vec<u8>, Option<Vec<u8>>);

fn io(context: &'static str) -> impl FnOnce(std::io::Error) -> StoreError {
    move |e| StoreError::io(context, e)
}

fn header(magic: &[u8; 8], generation: u64) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..8].copy_from_slice(magic);
    h[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[12..20].copy_from_slice(&generation.to_le_bytes());
    let crc = crc32fast::hash(&h[..20]);
    h[20..].copy_from_slice(&crc.to_le_bytes());
    h
}

fn parse_header(bytes: &[u8], magic: &[u8; 8], what: &str) -> Result<u64> {
    let bad = |why: &str| StoreError::Corrupted(format!("{what} header: {why}"));
    let h: &[u8; HEADER_LEN as usize] = bytes.try_into().map_err(|_| bad("short"))?;
    if &h[..8] != magic {
        return Err(bad("wrong magic"));
    }
    let crc = u32::from_le_bytes([h[20], h[21], h[22], h[23]]);
    if crc != crc32fast::hash(&h[..20]) {
        return Err(bad("checksum mismatch"));
    }
    let version = u16::from_le_bytes([h[8], h[9]]);
    if version != FORMAT_VERSION {
        return Err(StoreError::UnsupportedFormat {
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    let mut generation = [0u8; 8];
    generation.copy_from_slice(&h[12..20]);
    Ok(u64::from_le_bytes(generation))
}

fn push_u32(out: &mut Vec<u8>, n: usize) -> Result<()> {
    let n = u32::try_from(n).map_err(|_| StoreError::InvalidUnit("frame field over 4 GiB"))?;
    out.extend_from_slice(&n.to_le_bytes());
    Ok(())
}

fn frame(body: Vec<u8>) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(FRAME_HEADER_LEN + body.len());
    push_u32(&mut out, body.len())?;
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    let header_crc = crc32fast::hash(&out[..8]);
    out.extend_from_slice(&header_crc.to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

fn changes_frame<'a>(
    changes: impl ExactSizeIterator<Item = (Table, &'a [u8], Option<&'a [u8]>)>,
) -> Result<Vec<u8>> {
    let mut body = vec![KIND_CHANGES];
    push_u32(&mut body, changes.len())?;
    for (table, key, value) in changes {
        body.push(table as u8);
        push_u32(&mut body, key.len())?;
        body.extend_from_slice(key);
        match value {
            Some(v) => {
                if v.len() >= DELETED as usize {
                    return Err(StoreError::InvalidUnit("value over 4 GiB"));
                }
                push_u32(&mut body, v.len())?;
                body.extend_from_slice(v);
            }
            None => body.extend_from_slice(&DELETED.to_le_bytes()),
        }
    }
    frame(body)
}

/// A frame body, parsed without trusting anything in it.
enum Body {
    Changes(Vec<Change>),
    SnapshotEnd(u64),
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = tail;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)?.try_into().ok().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8)?.try_into().ok().map(u64::from_le_bytes)
    }
}

fn parse_body(body: &[u8]) -> Option<Body> {
    let mut c = Cursor(body);
    match c.u8()? {
        KIND_CHANGES => {
            let count = c.u32()? as usize;
            // The store never writes an empty frame; one found is not ours.
            if count == 0 {
                return None;
            }
            // Each change takes at least 9 bytes: never pre-allocate more than the body holds.
            let mut changes = Vec::with_capacity(count.min(body.len() / 9));
            for _ in 0..count {
                let table = Table::from_u8(c.u8()?)?;
                let key_len = c.u32()? as usize;
                let key = c.take(key_len)?.to_vec();
                let value = match c.u32()? {
                    DELETED => None,
                    len => Some(c.take(len as usize)?.to_vec()),
                };
                changes.push((table, key, value));
            }
            c.0.is_empty().then_some(Body::Changes(changes))
        }
        KIND_SNAPSHOT_END => {
            let count = c.u64()?;
            c.0.is_empty().then_some(Body::SnapshotEnd(count))
        }
        _ => None,
    }
}

/// Why reading a frame stopped.
enum FrameEnd {
    /// End of file exactly at a frame boundary.
    Clean,
    /// An incomplete frame, or one whose checksum or body does not check out.
    Damaged,
}

/// Reads the frame at the start of `bytes`: its body and total length.
fn read_frame(bytes: &[u8]) -> std::result::Result<(Body, usize), FrameEnd> {
    if bytes.is_empty() {
        return Err(FrameEnd::Clean);
    }
    let mut c = Cursor(bytes);
    let (Some(len), Some(crc), Some(header_crc)) = (c.u32(), c.u32(), c.u32()) else {
        return Err(FrameEnd::Damaged);
    };
    if bytes.get(..8).map(crc32fast::hash) != Some(header_crc) {
        return Err(FrameEnd::Damaged);
    }
    let body = c.take(len as usize).ok_or(FrameEnd::Damaged)?;
    if crc32fast::hash(body) != crc {
        return Err(FrameEnd::Damaged);
    }
    let parsed = parse_body(body).ok_or(FrameEnd::Damaged)?;
    Ok((parsed, FRAME_HEADER_LEN + len as usize))
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("syncing the store directory"))
}

/// Writes a temporary file beside `dir/name` and fsyncs it; returns its path.
fn write_temporary(
    dir: &Path,
    name: &str,
    write: impl FnOnce(&mut BufWriter<&File>) -> Result<()>,
) -> Result<PathBuf> {
    let tmp = temporary_path(dir, name);
    let file = File::create(&tmp).map_err(io("creating a temporary file"))?;
    let written = {
        let mut out = BufWriter::new(&file);
        write(&mut out).and_then(|()| out.flush().map_err(io("writing a temporary file")))
    }
    .and_then(|()| file.sync_all().map_err(io("syncing a temporary file")));
    if let Err(e) = written {
        // On a full disk the half-written file would hold the space the log needs next.
        drop(file);
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(tmp)
}

/// Where [`write_temporary`] writes `dir/name` before renaming it into place.
fn temporary_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.tmp"))
}

/// Writes `dir/name` atomically: temporary file, fsync, rename, fsync of the directory.
fn write_atomically(
    dir: &Path,
    name: &str,
    write: impl FnOnce(&mut BufWriter<&File>) -> Result<()>,
) -> Result<()> {
    let tmp = write_temporary(dir, name, write)?;
    fs::rename(&tmp, dir.join(name)).map_err(io("renaming a temporary file"))?;
    sync_dir(dir)
}

fn new_log(dir: &Path, generation: u64) -> Result<File> {
    write_atomically(dir, FileStore::LOG_FILE, |out| {
        out.write_all(&header(LOG_MAGIC, generation))
            .map_err(io("writing the log header"))
    })?;
    OpenOptions::new()
        .read(true)
        .append(true)
        .open(dir.join(FileStore::LOG_FILE))
        .map_err(io("opening the log"))
}

fn load_snapshot(path: &Path, tables: &mut MemTables) -> Result<(u64, u64, u64)> {
    let bytes = fs::read(path).map_err(io("reading the snapshot"))?;
    let generation = parse_header(
        bytes.get(..HEADER_LEN as usize).unwrap_or(&bytes),
        SNAPSHOT_MAGIC,
        "snapshot",
    )?;
    let mut rest = bytes.get(HEADER_LEN as usize..).unwrap_or_default();
    let mut loaded = 0u64;
    loop {
        match read_frame(rest) {
            Ok((Body::Changes(changes), len)) => {
                for (table, key, value) in changes {
                    tables.apply(table, key, value);
                    loaded += 1;
                }
                rest = rest.get(len..).unwrap_or_default();
            }
            Ok((Body::SnapshotEnd(count), len)) if count == loaded && len == rest.len() => {
                return Ok((generation, loaded, bytes.len() as u64));
            }
            _ => {
                return Err(StoreError::Corrupted(
                    "snapshot is damaged or incomplete".into(),
                ))
            }
        }
    }
}

/// The writer-thread half of a [`FileStore`].
struct FileCommitter {
    dir: PathBuf,
    tables: Arc<RwLock<MemTables>>,
    log: File,
    log_len: u64,
    snapshot_len: u64,
    generation: u64,
    options: FileStoreOptions,
    poisoned: bool,
    /// After a failed compaction (a full disk, typically), none is tried before this: each
    /// try writes up to a whole snapshot, which a write path must not pay on every batch.
    compact_not_before: Option<std::time::Instant>,
}

/// How long a failed compaction waits before the next try.
const COMPACTION_RETRY: std::time::Duration = std::time::Duration::from_secs(30);

impl FileCommitter {
    /// Appends and fsyncs one frame; on failure cuts the file back so that no partial
    /// frame precedes the next one.
    fn append(&mut self, frame: &[u8]) -> Result<()> {
        let result = self
            .log
            .write_all(frame)
            .and_then(|()| self.log.sync_data());
        if let Err(e) = result {
            // A failed restore is already reported by poisoning the store.
            let _ = self.cut_back();
            return Err(StoreError::io("appending to the log", e));
        }
        self.log_len += frame.len() as u64;
        Ok(())
    }

    /// Cuts the log back to its acknowledged length after a write that must not stay (a
    /// failed append, a probe). If even that fails, the file is in an unknown state and
    /// the store is poisoned.
    fn cut_back(&mut self) -> std::io::Result<()> {
        let restored = self
            .log
            .set_len(self.log_len)
            .and_then(|()| self.log.sync_data());
        if restored.is_err() {
            self.poisoned = true;
        }
        restored
    }

    fn compact(&mut self) -> Result<()> {
        let next = self.generation + 1;
        let tmp = {
            let tables = self.tables.read().map_err(|_| StoreError::Poisoned)?;
            let total = tables.len() as u64;
            let mut entries = tables.iter().peekable();
            write_temporary(&self.dir, FileStore::SNAPSHOT_FILE, |out| {
                out.write_all(&header(SNAPSHOT_MAGIC, next))
                    .map_err(io("writing the snapshot"))?;
                while entries.peek().is_some() {
                    let chunk: Vec<_> = entries.by_ref().take(SNAPSHOT_FRAME_ENTRIES).collect();
                    let frame = changes_frame(
                        chunk
                            .iter()
                            .map(|(t, k, v)| (*t, k.as_slice(), Some(v.as_slice()))),
                    )?;
                    out.write_all(&frame).map_err(io("writing the snapshot"))?;
                }
                let mut end = vec![KIND_SNAPSHOT_END];
                end.extend_from_slice(&total.to_le_bytes());
                out.write_all(&frame(end)?)
                    .map_err(io("writing the snapshot"))
            })?
        };
        // Until the rename, a failure leaves the store exactly as it was.
        fs::rename(&tmp, self.dir.join(FileStore::SNAPSHOT_FILE))
            .map_err(io("installing the snapshot"))?;
        // The snapshot of generation `next` is in place: the old log is stale from now on
        // and must never receive another acknowledged batch. If switching to the new log
        // fails, the store refuses further commits (reopening recovers from the snapshot).
        let switched = sync_dir(&self.dir).and_then(|()| new_log(&self.dir, next));
        match switched {
            Ok(log) => {
                self.log = log;
                self.log_len = HEADER_LEN;
                self.snapshot_len = fs::metadata(self.dir.join(FileStore::SNAPSHOT_FILE))
                    .map(|m| m.len())
                    .unwrap_or(self.snapshot_len);
                self.generation = next;
                Ok(())
            }
            Err(e) => {
                self.poisoned = true;
                Err(e)
            }
        }
    }
}

impl BatchCommitter for FileCommitter {
    fn commit_batch(&mut self, units: &[Unit]) -> Result<Vec<CommitOutcome>> {
        if self.poisoned {
            return Err(StoreError::Poisoned);
        }
        let (outcomes, changes) = {
            let base = self.tables.read().map_err(|_| StoreError::Poisoned)?;
            let mut overlay = Overlay::new(&base);
            let outcomes = units
                .iter()
                .map(|unit| apply_unit(&mut overlay, unit))
                .collect::<Result<Vec<_>>>()?;
            (outcomes, overlay.into_changes())
        };
        if changes.is_empty() {
            return Ok(outcomes);
        }
        let frame = changes_frame(
            changes
                .iter()
                .map(|(t, k, v)| (*t, k.as_slice(), v.as_deref())),
        )?;
        self.append(&frame)?;
        {
            let mut tables = self.tables.write().map_err(|_| StoreError::Poisoned)?;
            for (table, key, value) in changes {
                tables.apply(table, key, value);
            }
        }
        let may_compact = self
            .compact_not_before
            .is_none_or(|at| std::time::Instant::now() >= at);
        if may_compact && self.log_len > self.options.compact_after_bytes.max(self.snapshot_len) {
            // The batch is durable either way; a failed compaction is retried after
            // `COMPACTION_RETRY` (or poisons the store if it left the files inconsistent).
            match self.compact() {
                Ok(()) => self.compact_not_before = None,
                Err(e) => {
                    tracing::error!(error = %e, "file store compaction failed");
                    self.compact_not_before = Some(std::time::Instant::now() + COMPACTION_RETRY);
                }
            }
        }
        Ok(outcomes)
    }

    fn probe(&mut self) -> Result<()> {
        if self.poisoned {
            return Err(StoreError::Poisoned);
        }
        // A page of zeros appended, made durable, and cut off again: it needs the space a
        // frame would, and leaves nothing behind. Zeros never read as a frame (the header
        // checksum fails), so a crash before the cut leaves a damaged tail that recovery
        // truncates like any torn write.
        let probed = self
            .log
            .write_all(&[0u8; 4096])
            .and_then(|()| self.log.sync_data());
        let restored = self.cut_back();
        probed.map_err(io("probing the disk"))?;
        restored.map_err(io("probing the disk"))
    }

    fn close(&mut self) -> Result<()> {
        self.log.sync_data().map_err(io("syncing the log"))
    }
}

/// A durable store in a directory: append-only checksummed log, snapshots, group commit.
/// Holds the whole state in memory; suited to stores that fit in RAM (use [`RedbStore`]
/// beyond that).
///
/// [`RecordStore::close`] releases the directory's lock even while other handles on the
/// store are still alive, so a restarted server in the same process can open it again at
/// once; after closing, every call fails with [`StoreError::Closed`].
///
/// [`RedbStore`]: crate::RedbStore
/// [`RecordStore::close`]: crate::RecordStore::close
pub type FileStore = Store<FileBackend>;

/// The read side of a [`FileStore`]: its in-memory image of the log, and its lock.
pub struct FileBackend {
    image: MemoryBackend,
    recovery: RecoveryReport,
    /// Held (exclusively locked) until close; `None` after.
    lock: Mutex<Option<File>>,
}

impl Backend for FileBackend {
    type Tables = MemTables;

    fn read<T>(&self, read: impl FnOnce(&MemTables) -> Result<T>) -> Result<T> {
        self.image.read(read)
    }

    fn release(&self) {
        // Dropping the file releases the lock: the directory can be opened again now,
        // even while handles on this store are still alive.
        if let Ok(mut lock) = self.lock.lock() {
            lock.take();
        }
    }
}

impl FileStore {
    /// Name of the log file in the store directory.
    pub const LOG_FILE: &'static str = "scrip.log";
    /// Name of the snapshot file in the store directory.
    pub const SNAPSHOT_FILE: &'static str = "scrip.snapshot";
    /// Name of the lock file in the store directory.
    pub const LOCK_FILE: &'static str = "LOCK";

    /// Opens (or creates) the store in `dir` with default options. Blocking: run it before
    /// serving, or in `spawn_blocking`.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(dir, FileStoreOptions::default())
    }

    /// Opens (or creates) the store in `dir`, recovering from a crash if needed.
    pub fn open_with(dir: impl AsRef<Path>, options: FileStoreOptions) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(io("creating the store directory"))?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(Self::LOCK_FILE))
            .map_err(io("opening the lock file"))?;
        lock.try_lock()
            .map_err(|e| StoreError::Locked(format!("{}: {e}", dir.display())))?;

        // A snapshot that a crash or a failed compaction left half-written is never read
        // (only a renamed one is); remove it so that it does not hold space the log needs.
        match fs::remove_file(temporary_path(&dir, Self::SNAPSHOT_FILE)) {
            Ok(()) => tracing::info!("file store: removed a stale temporary snapshot"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io("removing a stale temporary snapshot", e)),
        }
        let mut tables = MemTables::default();
        let mut report = RecoveryReport::default();
        let snapshot_path = dir.join(Self::SNAPSHOT_FILE);
        let mut snapshot_len = 0;
        if snapshot_path.exists() {
            let (generation, entries, len) = load_snapshot(&snapshot_path, &mut tables)?;
            report.generation = generation;
            report.snapshot_entries = entries;
            snapshot_len = len;
        }
        let generation = report.generation;
        let (mut log, log_len) = Self::recover_log(&dir, generation, &mut tables, &mut report)?;

        // A fresh store records its format version durably before anything else.
        let changes = {
            let mut overlay = Overlay::new(&tables);
            check_format(&mut overlay)?;
            overlay.into_changes()
        };
        let mut log_len = log_len;
        if !changes.is_empty() {
            let frame = changes_frame(
                changes
                    .iter()
                    .map(|(t, k, v)| (*t, k.as_slice(), v.as_deref())),
            )?;
            log.write_all(&frame)
                .and_then(|()| log.sync_data())
                .map_err(io("writing the format version"))?;
            log_len += frame.len() as u64;
            for (table, key, value) in changes {
                tables.apply(table, key, value);
            }
        }

        let image = MemoryBackend::new(tables);
        let committer = FileCommitter {
            dir,
            tables: image.tables(),
            log,
            log_len,
            snapshot_len,
            generation,
            options,
            poisoned: false,
            compact_not_before: None,
        };
        let backend = FileBackend {
            image,
            recovery: report,
            lock: Mutex::new(Some(lock)),
        };
        Store::group_committed("file", backend, committer)
    }

    fn recover_log(
        dir: &Path,
        generation: u64,
        tables: &mut MemTables,
        report: &mut RecoveryReport,
    ) -> Result<(File, u64)> {
        let path = dir.join(Self::LOG_FILE);
        // The log is only ever replaced by a rename of a whole one (`new_log`), so no crash
        // leaves it missing or shorter than its header; beside a snapshot (generation 1 or
        // later), either means it was damaged or deleted, and the batches acknowledged
        // since the snapshot are gone: refuse to open rather than serve without them.
        if !path.exists() {
            if generation > 0 {
                return Err(StoreError::Corrupted(format!(
                    "the log is missing beside snapshot generation {generation}"
                )));
            }
            return Ok((new_log(dir, generation)?, HEADER_LEN));
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&path)
            .map_err(io("opening the log"))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(io("reading the log"))?;
        if bytes.len() < HEADER_LEN as usize {
            return Err(StoreError::Corrupted(format!(
                "the log is {} bytes long, shorter than its header",
                bytes.len()
            )));
        }
        let log_generation = parse_header(&bytes[..HEADER_LEN as usize], LOG_MAGIC, "log")?;
        if log_generation < generation {
            report.discarded_stale_log = true;
            return Ok((new_log(dir, generation)?, HEADER_LEN));
        }
        if log_generation > generation {
            return Err(StoreError::Corrupted(format!(
                "log generation {log_generation} is ahead of snapshot generation {generation}"
            )));
        }
        let mut offset = HEADER_LEN as usize;
        loop {
            let rest = bytes.get(offset..).unwrap_or_default();
            match read_frame(rest) {
                Ok((Body::Changes(changes), len)) => {
                    for (table, key, value) in changes {
                        tables.apply(table, key, value);
                    }
                    report.log_frames += 1;
                    offset += len;
                }
                Ok((Body::SnapshotEnd(_), _)) => {
                    return Err(StoreError::Corrupted(
                        "snapshot frame inside the log".into(),
                    ))
                }
                Err(FrameEnd::Clean) => break,
                Err(FrameEnd::Damaged) => {
                    if Self::valid_frame_follows(rest) {
                        return Err(StoreError::Corrupted(format!(
                            "damaged log frame at byte {offset} is followed by valid frames"
                        )));
                    }
                    report.truncated_bytes = (bytes.len() - offset) as u64;
                    tracing::warn!(
                        offset,
                        bytes = report.truncated_bytes,
                        "file store: cutting a torn, unacknowledged tail off the log"
                    );
                    file.set_len(offset as u64)
                        .and_then(|()| file.sync_data())
                        .map_err(io("truncating the log"))?;
                    break;
                }
            }
        }
        file.seek(SeekFrom::End(0)).map_err(io("seeking the log"))?;
        Ok((file, offset as u64))
    }

    /// True if, somewhere after the first byte of `rest` (whose first frame is damaged),
    /// valid log frames start and run back to back exactly to the end of the file: then
    /// the damage is inside acknowledged data, not a torn tail. Requiring the whole rest to
    /// chain keeps frame-shaped bytes inside a torn write (a client's key, say) from
    /// blocking recovery; the header checksum makes a false start a 1-in-2^32 event per
    /// position before anything else is looked at.
    fn valid_frame_follows(rest: &[u8]) -> bool {
        let chains_to_end = |mut tail: &[u8]| loop {
            if tail.is_empty() {
                return true;
            }
            match read_frame(tail) {
                Ok((Body::Changes(_), len)) => match tail.get(len..) {
                    Some(after) => tail = after,
                    None => return false,
                },
                _ => return false,
            }
        };
        (1..rest.len().saturating_sub(FRAME_HEADER_LEN - 1)).any(|at| {
            rest.get(at..).is_some_and(|tail| {
                matches!(read_frame(tail), Ok((Body::Changes(_), _))) && chains_to_end(tail)
            })
        })
    }

    /// What opening the store found and repaired.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.backend().recovery
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_roundtrip_and_reject_damage() {
        let changes: Vec<Change> = vec![
            (Table::Claims, b"k1".to_vec(), Some(b"v1".to_vec())),
            (Table::Documents, b"k2".to_vec(), None),
        ];
        let f = changes_frame(
            changes
                .iter()
                .map(|(t, k, v)| (*t, k.as_slice(), v.as_deref())),
        )
        .unwrap();
        match read_frame(&f) {
            Ok((Body::Changes(parsed), len)) => {
                assert_eq!(parsed, changes);
                assert_eq!(len, f.len());
            }
            _ => panic!("frame did not parse"),
        }
        for cut in 1..f.len() {
            assert!(
                matches!(read_frame(&f[..cut]), Err(FrameEnd::Damaged)),
                "cut {cut}"
            );
        }
        for i in 0..f.len() {
            let mut bad = f.clone();
            bad[i] ^= 0x10;
            assert!(read_frame(&bad).is_err(), "flip at {i}");
        }
        assert!(matches!(read_frame(&[]), Err(FrameEnd::Clean)));
    }

    /// A compaction that fails midway (a full disk) removes what it wrote: the partial
    /// snapshot would otherwise hold the space the log needs for the next batch.
    #[test]
    fn a_failed_temporary_write_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let failed = write_temporary(dir.path(), "scrip.snapshot", |out| {
            out.write_all(&[7u8; 1 << 16]).map_err(io("writing"))?;
            Err(StoreError::io(
                "writing the snapshot",
                std::io::ErrorKind::StorageFull.into(),
            ))
        });
        assert!(failed.is_err());
        assert!(!temporary_path(dir.path(), "scrip.snapshot").exists());
        let written = write_temporary(dir.path(), "scrip.snapshot", |out| {
            out.write_all(b"whole").map_err(io("writing"))
        })
        .unwrap();
        assert_eq!(fs::read(written).unwrap(), b"whole");
    }

    #[test]
    fn headers_check_magic_version_and_checksum() {
        let h = header(LOG_MAGIC, 7);
        assert_eq!(parse_header(&h, LOG_MAGIC, "log").unwrap(), 7);
        assert!(parse_header(&h, SNAPSHOT_MAGIC, "log").is_err());
        let mut bad = h;
        bad[13] ^= 1;
        assert!(parse_header(&bad, LOG_MAGIC, "log").is_err());
    }
}
