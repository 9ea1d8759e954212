//! The one error type of this crate.

use std::sync::Arc;

use scrip_tokens::Currency;

/// Why a store call failed. A failed `commit` has an unknown outcome (the unit may or may
/// not be durable): retry it, and the store answers `Repeated` if it had landed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The unit breaks a rule of its shape (sizes, names, an id claimed twice); a caller bug.
    #[error("invalid unit: {0}")]
    InvalidUnit(&'static str),
    /// The unit's postings do not sum to zero in this currency.
    #[error("postings do not balance in {currency}")]
    UnbalancedPostings {
        /// The currency that does not balance.
        currency: Currency,
    },
    /// An I/O operation failed.
    #[error("I/O error while {context}: {source}")]
    Io {
        /// What the store was doing.
        context: &'static str,
        /// The error.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// Stored data does not decode (or a file fails its checksum where a torn tail is not
    /// a possible explanation).
    #[error("corrupted store: {0}")]
    Corrupted(String),
    /// The store was written by a release with another format version.
    #[error("store format version {found} is not supported (this release reads {supported})")]
    UnsupportedFormat {
        /// Version found.
        found: u16,
        /// Version this release reads.
        supported: u16,
    },
    /// Another process (or another store in this process) has the store open.
    #[error("store is locked by another user: {0}")]
    Locked(String),
    /// The store has been closed.
    #[error("store is closed")]
    Closed,
    /// An earlier write failed in a way that left the store unsure of its own state; reopen
    /// it to recover from disk.
    #[error("store is poisoned by an earlier I/O failure; reopen it")]
    Poisoned,
    /// An error of the backend's own (redb).
    #[error("backend error: {0}")]
    Backend(Arc<dyn std::error::Error + Send + Sync>),
    /// The TLS set-up for the database connection is unusable (feature `postgres`): the
    /// CA file cannot be read or holds no certificate.
    #[error("database TLS: {0}")]
    DatabaseTls(String),
    /// The database server failed or refused (feature `postgres`); `sqlstate` is its
    /// SQLSTATE code where it sent one (`40P01` deadlock, `40001` serialization, ...).
    #[error("database: {message}")]
    Database {
        /// The SQLSTATE code, if the server sent one.
        sqlstate: Option<String>,
        /// What failed.
        message: String,
    },
}

impl StoreError {
    pub(crate) fn io(context: &'static str, source: std::io::Error) -> Self {
        StoreError::Io {
            context,
            source: Arc::new(source),
        }
    }

    pub(crate) fn backend(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        StoreError::Backend(Arc::new(e))
    }
}

/// Result alias of this crate.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
