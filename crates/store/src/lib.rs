//! Durable state of the router. Everything the router must not lose goes through the [`Store`]
//! trait, so a server database can replace the embedded default later without touching the
//! services. [`SledStore`] is that default: records in sled trees, design bytes as
//! content-addressed files beside it (so deleting the last design that uses some bytes really
//! removes them from disk, which sled's log-structured segments would not guarantee).
//!
//! Records are opaque to the store where the API already defines them (a mesh report is kept as
//! the encoded protobuf the server hands in); the store owns only identity, ownership, indexes
//! and reference counts.
//!
//! Design bytes go through [`BlobStore`] ([`Store::blobs`]), streamed, and are committed before
//! the design that refers to them. The rule that keeps records and bytes consistent: a design
//! record exists only while its bytes do (a committed blob is referenced in the same transaction
//! that stores the record; the bytes go only once the last reference has), while bytes without a
//! record are garbage that the store collects. A crash between committing the bytes and storing
//! the record therefore leaves at most an unreferenced blob, removed at the next start.
//!
//! No type of the embedded engine appears in this API except [`SledStore`] itself, so a server
//! database can implement [`Store`] without pretending to be sled. [`PgStore`] is that server
//! database: PostgreSQL, with the design bytes in it too, so a router on it needs only the
//! database URL.

mod blob;
mod copy;
mod postgres;
mod sled_store;

pub use blob::{BlobDir, BlobReader, BlobStore, BlobWriter, CommittedBlob};
pub use copy::{CopyReport, copy_store};
pub use postgres::{PgBlobs, PgOptions, PgStore, redact_url};
pub use sled_store::SledStore;

use serde::{Deserialize, Serialize};

/// Errors of the storage layer. None of them is the caller's fault except `NotFound`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend cannot be reached or is overloaded now (a database connection lost, a pool
    /// exhausted); the same call may succeed later.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The backend failed in a way retrying will not fix; the cause is its own error.
    #[error("storage backend: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("blob storage: {0}")]
    Io(#[from] std::io::Error),
    #[error("corrupt record in {tree}: {reason}")]
    Corrupt { tree: &'static str, reason: String },
    #[error("{0} not found")]
    NotFound(String),
    #[error("already exists: {0}")]
    AlreadyExists(String),
    #[error("{0} was changed concurrently; retry")]
    Conflict(String),
}

impl StoreError {
    /// A backend failure, whatever the backend's error type.
    pub fn backend(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Backend(e.into())
    }

    /// Whether the same call may succeed if made again (the backend was unavailable, or a
    /// concurrent change won), so a caller can tell its client to retry rather than report a
    /// fault.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::Conflict(_))
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// A stored design: one owner's record of some content-addressed bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DesignRecord {
    /// Time-ordered id (UUID v7), so listing by key is listing by age.
    pub id: String,
    /// Principal id of the uploader; only they may read, list or delete it.
    pub owner: String,
    pub file_name: String,
    pub size_bytes: u64,
    /// Lowercase hex sha256 of the bytes: the blob key.
    pub sha256: String,
    /// `fabrouter.v1.DesignFormat` as its number.
    pub format: i32,
    pub created_unix_ms: i64,
    /// Encoded `fabrouter.v1.MeshReport` (empty for G-code designs).
    pub report: Vec<u8>,
    /// Id of the design this one was repaired from.
    pub repaired_from: Option<String>,
}

/// An API token. Only the sha256 of the secret is stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub id: String,
    pub secret_sha256: String,
    /// `fabrouter.v1.Role` as its number.
    pub role: i32,
    pub principal: String,
    pub label: String,
    pub created_unix_ms: i64,
}

/// A node identity; the secret is stored as a sha256 only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub node_id: String,
    pub secret_sha256: String,
    pub label: String,
    pub created_unix_ms: i64,
}

/// A job: the encoded `fabrouter.v1.Job` plus what the store needs to keep changes atomic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    pub id: String,
    pub owner: String,
    /// Bumped by every update; an update naming an older version is refused (lost-update guard).
    pub version: u64,
    /// Sequence number of the newest event in the job's history.
    pub last_seq: u64,
    /// Not yet completed, failed or cancelled; indexed so a restart finds them at once.
    pub active: bool,
    /// Encoded `fabrouter.v1.Job`.
    pub job: Vec<u8>,
}

/// The outcome of creating jobs under an idempotency key.
#[derive(Debug, Clone, PartialEq)]
pub enum Created {
    /// The jobs were stored now.
    New,
    /// The key was used before: these are the ids created then; nothing was written.
    Replayed(Vec<String>),
}

/// The storage contract of the router.
///
/// Methods are synchronous: the embedded engine answers in microseconds, and the server moves
/// large blob work off the async executor itself.
pub trait Store: Send + Sync + 'static {
    /// Where design bytes are written and read. Removing them is the store's business: it
    /// follows the references of [`Store::put_design`] and [`Store::delete_design`].
    fn blobs(&self) -> &dyn BlobStore;
    /// Stores the record and, in the same transaction, a reference to its bytes, which must have
    /// been committed to [`Store::blobs`] first (`blob` is the receipt; keep it until this
    /// returns, so the bytes cannot be collected meanwhile). The record must name the blob's
    /// sha256 and size. On an error the record is not stored, and the bytes are removed if no
    /// other design refers to them.
    fn put_design(&self, record: &DesignRecord, blob: &CommittedBlob) -> Result<()>;
    fn get_design(&self, id: &str) -> Result<Option<DesignRecord>>;
    /// The owner's designs, newest first, starting after the id `after` (exclusive).
    fn list_designs(
        &self,
        owner: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DesignRecord>>;
    /// Removes the record and its reference to the bytes; returns whether the bytes were erased
    /// too (no other design uses them, and no upload of the same bytes is under way).
    fn delete_design(&self, id: &str) -> Result<bool>;

    fn put_token(&self, token: &TokenRecord) -> Result<()>;
    fn token_by_secret_sha256(&self, secret_sha256: &str) -> Result<Option<TokenRecord>>;
    fn list_tokens(&self) -> Result<Vec<TokenRecord>>;
    fn revoke_token(&self, id: &str) -> Result<bool>;

    /// Fails with `AlreadyExists` if the node id is taken.
    fn create_node(&self, node: &NodeRecord) -> Result<()>;
    fn get_node(&self, node_id: &str) -> Result<Option<NodeRecord>>;

    /// Stores jobs with their first events, unless `(owner, idempotency_key)` was seen before.
    /// `events[i]` are the encoded events of `jobs[i]`, numbered 1.. in order. All or nothing:
    /// after an error or a crash (once the store is open again), a submission's jobs are all
    /// there or none is; concurrent calls with one key store one set of jobs.
    fn create_jobs(
        &self,
        owner: &str,
        idempotency_key: &str,
        jobs: &[JobRecord],
        events: &[Vec<Vec<u8>>],
    ) -> Result<Created>;
    /// The job ids created under `(owner, idempotency_key)`, if any.
    fn idempotency_lookup(&self, owner: &str, idempotency_key: &str)
    -> Result<Option<Vec<String>>>;
    /// Replaces the job and appends `events` (numbered from `last_seq + 1`) in one transaction,
    /// if its stored version is still `job.version - 1`; otherwise `Conflict`.
    fn update_job(&self, job: &JobRecord, events: &[Vec<u8>]) -> Result<()>;
    fn get_job(&self, id: &str) -> Result<Option<JobRecord>>;
    /// The owner's jobs, newest first, after the id `after` (exclusive).
    fn list_jobs(&self, owner: &str, after: Option<&str>, limit: usize) -> Result<Vec<JobRecord>>;
    /// Calls `visit` with every job not yet finished, oldest first, one record at a time (a
    /// restart with many active jobs never holds all their records at once).
    fn visit_active_jobs(&self, visit: &mut dyn FnMut(JobRecord) -> Result<()>) -> Result<()>;
    /// Jobs not yet finished, oldest first.
    fn active_jobs(&self) -> Result<Vec<JobRecord>> {
        let mut out = Vec::new();
        self.visit_active_jobs(&mut |rec| {
            out.push(rec);
            Ok(())
        })?;
        Ok(out)
    }
    /// Encoded events of a job with sequence >= `from_seq`, in order.
    fn job_events(&self, id: &str, from_seq: u64) -> Result<Vec<Vec<u8>>>;

    /// Printers as their nodes last declared them (encoded `fabrouter.v1.Printer`), by name.
    fn put_printer(&self, name: &str, printer: &[u8]) -> Result<()>;
    fn list_printers(&self) -> Result<Vec<(String, Vec<u8>)>>;

    /// Cached computed values (e.g. estimates) by key; dropping them loses nothing.
    fn cache_get(&self, key: &str) -> Result<Option<Vec<u8>>>;
    fn cache_put(&self, key: &str, value: &[u8]) -> Result<()>;

    /// Makes every write so far durable.
    fn flush(&self) -> Result<()>;
}

/// Lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
