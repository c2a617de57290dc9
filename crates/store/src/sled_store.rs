//! The embedded default store: sled trees for records and indexes, [`BlobDir`] for bytes.
//!
//! Trees: `designs` (id -> record), `owner_designs` (owner NUL id -> ()), `blob_refs`
//! (sha256 -> u64 count), `tokens` (id -> record), `token_secrets` (secret sha256 -> id), `nodes`
//! (node id -> record), `cache` (key -> bytes), `jobs` (id -> record), `owner_jobs`
//! (owner NUL id -> ()), `active_jobs` (id -> ()), `job_events` (id NUL seq(u64 BE) -> event),
//! `idempotency` (owner NUL key -> job ids), `printers` (name -> encoded printer). Multi-tree
//! changes go through one sled transaction, except the creation of jobs: its writes end with
//! the idempotency entry, the commit point, and a start-up removes the jobs of submissions
//! that never reached it ([`SledStore::write_uncommitted_jobs`]). The blob file is written
//! before and removed after its transaction, and a start-up sweep removes blobs that no record
//! counts (a crash between the two steps).
//!
//! Records are JSON except jobs, the most numerous and most often rewritten: those use a compact
//! binary layout ([`encode_job`]); job records written as JSON by older versions still read.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, RwLock};

use serde::Serialize;
use serde::de::DeserializeOwned;
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use crate::{
    BlobDir, Created, DesignRecord, JobRecord, NodeRecord, Result, Store, StoreError, TokenRecord,
};

/// sled's page cache. Its default (1 GiB) would keep the whole history of jobs and events in
/// memory; what is read often (active jobs, tokens, designs) fits in far less, and the rest is
/// read back through the OS page cache when asked for. With 100,000 jobs stored, 32 MiB
/// rather than 8 took durable submissions from about 1,750/s to 1,950/s for 35 MB more
/// resident memory (`cargo bench -p fabrouter-server --bench network`).
const CACHE_BYTES: u64 = 32 * 1024 * 1024;

pub struct SledStore {
    db: sled::Db,
    designs: sled::Tree,
    owner_designs: sled::Tree,
    blob_refs: sled::Tree,
    tokens: sled::Tree,
    token_secrets: sled::Tree,
    nodes: sled::Tree,
    cache: sled::Tree,
    jobs: sled::Tree,
    owner_jobs: sled::Tree,
    active_jobs: sled::Tree,
    job_events: sled::Tree,
    idempotency: sled::Tree,
    printers: sled::Tree,
    blobs: BlobDir,
    /// Serialises blob creation and removal against reference counting, so two uploads of the
    /// same bytes and a concurrent delete cannot leave a record without its blob.
    blob_lock: Mutex<()>,
    /// Tokens by their secret's hash, so that authenticating a request reads no sled tree:
    /// every request authenticates, and once any transaction has run, every sled read waits
    /// while a transaction commits (sled's process-wide concurrency control), which left the
    /// router's threads idle under load. Only tokens that exist are kept (a flood of wrong
    /// secrets cannot grow it), at most [`MAX_CACHED_TOKENS`]. Changes to tokens hold the
    /// write lock across the tree change and the cache change, so no revoked token stays.
    token_cache: RwLock<HashMap<String, TokenRecord>>,
    /// Design records by id, for the same reason: every submit and quote reads its design.
    /// Records never change after they are written; a delete removes the entry under the write
    /// lock, together with the tree change, so a deleted design is never served.
    design_cache: RwLock<HashMap<String, DesignRecord>>,
}

/// Designs kept in [`SledStore::design_cache`] (a record is about 1-2 KB); when full it
/// starts again empty.
const MAX_CACHED_DESIGNS: usize = 1024;

/// Tokens kept in [`SledStore::token_cache`]; when full it starts again empty.
const MAX_CACHED_TOKENS: usize = 10_000;

// The cache is a plain map written in single steps: a panic elsewhere cannot leave it torn.
fn read_lock<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write_lock<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

impl SledStore {
    /// Opens (creating) the store under `dir`: `dir/db` for sled, `dir/blobs` for bytes.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let db = sled::Config::new()
            .path(dir.join("db"))
            .cache_capacity(CACHE_BYTES)
            // Less rewriting of the log for more disk space: 6% less CPU per durable submit.
            .mode(sled::Mode::HighThroughput)
            .open()?;
        let store = Self {
            designs: db.open_tree("designs")?,
            owner_designs: db.open_tree("owner_designs")?,
            blob_refs: db.open_tree("blob_refs")?,
            tokens: db.open_tree("tokens")?,
            token_secrets: db.open_tree("token_secrets")?,
            nodes: db.open_tree("nodes")?,
            cache: db.open_tree("cache")?,
            jobs: db.open_tree("jobs")?,
            owner_jobs: db.open_tree("owner_jobs")?,
            active_jobs: db.open_tree("active_jobs")?,
            job_events: db.open_tree("job_events")?,
            idempotency: db.open_tree("idempotency")?,
            printers: db.open_tree("printers")?,
            blobs: BlobDir::open_dir(dir.join("blobs"))?,
            blob_lock: Mutex::new(()),
            token_cache: RwLock::new(HashMap::new()),
            design_cache: RwLock::new(HashMap::new()),
            db,
        };
        store.sweep_orphan_blobs()?;
        store.remove_uncommitted_jobs()?;
        Ok(store)
    }

    /// The underlying sled database, for crates that keep further trees (jobs, printers).
    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    fn sweep_orphan_blobs(&self) -> Result<()> {
        for sha in self.blobs.list()? {
            if !self.blob_refs.contains_key(sha.as_bytes())? {
                tracing::info!(%sha, "removing blob no design refers to");
                self.blobs.remove(&sha)?;
            }
        }
        Ok(())
    }

    /// Writes the jobs of a submission, without its idempotency entry, in the order that
    /// [`SledStore::remove_uncommitted_jobs`] relies on: per job the active marker, the record,
    /// the owner index, the events.
    ///
    /// Not a sled transaction, on purpose: sled 0.34 writes out its log buffer twice for every
    /// transaction or batch (to place the batch's manifest), which cost a third of the CPU of
    /// a durable submit. Single writes suffice because sled recovers its log in order, up to
    /// the first write that did not reach the disk: if the idempotency entry (written last,
    /// `create_jobs`' commit point) survives a crash, everything written before it does too.
    fn write_uncommitted_jobs(
        &self,
        jobs: &[JobRecord],
        values: &[Vec<u8>],
        events: &[Vec<Vec<u8>>],
    ) -> Result<()> {
        for (i, (job, value)) in jobs.iter().zip(values).enumerate() {
            if job.active {
                self.active_jobs.insert(job.id.as_bytes(), &[] as &[u8])?;
            }
            self.jobs.insert(job.id.as_bytes(), value.as_slice())?;
            self.owner_jobs
                .insert(owner_key(&job.owner, &job.id), &[] as &[u8])?;
            for (n, ev) in events.get(i).into_iter().flatten().enumerate() {
                self.job_events
                    .insert(event_key(&job.id, n as u64 + 1), ev.as_slice())?;
            }
        }
        Ok(())
    }

    /// Removes jobs with their markers, owner index entries (when the owner is known) and
    /// events.
    fn remove_jobs<'a>(
        &self,
        jobs: impl Iterator<Item = (&'a str, Option<&'a str>)>,
    ) -> Result<()> {
        for (id, owner) in jobs {
            for item in self.job_events.scan_prefix(owner_key(id, "")).keys() {
                self.job_events.remove(item?)?;
            }
            if let Some(owner) = owner {
                self.owner_jobs.remove(owner_key(owner, id))?;
            }
            self.jobs.remove(id.as_bytes())?;
            self.active_jobs.remove(id.as_bytes())?;
        }
        Ok(())
    }

    /// Removes what a submission that never committed left behind (a crash before its
    /// idempotency entry was written; it was never acknowledged, and its retry makes new
    /// jobs): jobs written by `create_jobs` whose entry does not list them, and active
    /// markers without a record. Such jobs are active and never updated, so only active jobs
    /// are looked at. Returns how many jobs were removed.
    fn remove_uncommitted_jobs(&self) -> Result<usize> {
        let mut orphans: Vec<(String, Option<String>)> = Vec::new();
        for item in self.active_jobs.iter().keys() {
            let key = item?;
            let id = String::from_utf8(key.to_vec()).map_err(|e| StoreError::Corrupt {
                tree: "active_jobs",
                reason: e.to_string(),
            })?;
            let Some(value) = self.jobs.get(&key)? else {
                orphans.push((id, None));
                continue;
            };
            // Records in older layouts were written by transactions: committed.
            if !is_binary_job(&value) {
                continue;
            }
            let f = job_fields(&value)?;
            let Some(submission) = f.submission else {
                continue;
            };
            let listed = match self.idempotency.get(submission)? {
                Some(ids) => decode::<Vec<String>>("idempotency", &ids)?.contains(&id),
                None => false,
            };
            if !listed {
                let owner = String::from_utf8_lossy(f.owner).into_owned();
                orphans.push((id, Some(owner)));
            }
        }
        for (id, _) in &orphans {
            tracing::warn!(job = %id, "removing a job whose submission never committed");
        }
        self.remove_jobs(orphans.iter().map(|(id, o)| (id.as_str(), o.as_deref())))?;
        Ok(orphans.len())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        // A panic while holding the lock cannot leave the data inconsistent (sled commits
        // atomically), so a poisoned lock is still usable.
        self.blob_lock.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn encode<T: Serialize>(tree: &'static str, value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| StoreError::Corrupt {
        tree,
        reason: e.to_string(),
    })
}

fn decode<T: DeserializeOwned>(tree: &'static str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        tree,
        reason: e.to_string(),
    })
}

/// First byte of a binary job record (a JSON record starts with `{`).
const JOB_FORMAT_V1: u8 = 1;
/// First byte of a job record as `create_jobs` writes it: the V1 layout with the submission's
/// idempotency entry key after the owner (`[len u32 LE][key]`), so that a start-up can tell
/// whether the submission committed ([`SledStore::remove_uncommitted_jobs`]). An update
/// rewrites the record as V1.
const JOB_FORMAT_NEW: u8 = 2;
/// Tag, version, last sequence, active flag.
const JOB_HEADER_LEN: usize = 1 + 8 + 8 + 1;

/// A job record as `[1][version u64 LE][last_seq u64 LE][active u8][id len u32 LE][id]`
/// `[owner len u32 LE][owner][encoded job...]`: the job bytes are kept as they are, where
/// JSON would write each byte as a decimal number (three times the size, and slow to parse).
fn encode_job(job: &JobRecord) -> Result<Vec<u8>> {
    encode_job_as(job, None)
}

/// [`encode_job`], or with `submission` (the idempotency entry key) the [`JOB_FORMAT_NEW`]
/// layout.
fn encode_job_as(job: &JobRecord, submission: Option<&[u8]>) -> Result<Vec<u8>> {
    let len = |n: usize| {
        u32::try_from(n).map_err(|_| StoreError::Corrupt {
            tree: "jobs",
            reason: format!("job {}: id, owner or key longer than 4 GiB", job.id),
        })
    };
    let (id_len, owner_len) = (len(job.id.len())?, len(job.owner.len())?);
    let key_len = submission.map(|k| len(k.len())).transpose()?;
    let mut out = Vec::with_capacity(
        JOB_HEADER_LEN
            + 12
            + job.id.len()
            + job.owner.len()
            + submission.map_or(0, <[u8]>::len)
            + job.job.len(),
    );
    out.push(if submission.is_some() {
        JOB_FORMAT_NEW
    } else {
        JOB_FORMAT_V1
    });
    out.extend_from_slice(&job.version.to_le_bytes());
    out.extend_from_slice(&job.last_seq.to_le_bytes());
    out.push(u8::from(job.active));
    out.extend_from_slice(&id_len.to_le_bytes());
    out.extend_from_slice(job.id.as_bytes());
    out.extend_from_slice(&owner_len.to_le_bytes());
    out.extend_from_slice(job.owner.as_bytes());
    if let (Some(k), Some(n)) = (submission, key_len) {
        out.extend_from_slice(&n.to_le_bytes());
        out.extend_from_slice(k);
    }
    out.extend_from_slice(&job.job);
    Ok(out)
}

fn is_binary_job(bytes: &[u8]) -> bool {
    matches!(bytes.first(), Some(&JOB_FORMAT_V1 | &JOB_FORMAT_NEW))
}

fn corrupt_job(reason: &str) -> StoreError {
    StoreError::Corrupt {
        tree: "jobs",
        reason: reason.to_string(),
    }
}

/// Reads a job record in any layout.
fn decode_job(bytes: &[u8]) -> Result<JobRecord> {
    if !is_binary_job(bytes) {
        return decode("jobs", bytes);
    }
    let (version, last_seq) = job_header(bytes)?;
    let f = job_fields(bytes)?;
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|e| corrupt_job(&e.to_string()));
    Ok(JobRecord {
        id: text(f.id)?,
        owner: text(f.owner)?,
        version,
        last_seq,
        active: bytes[JOB_HEADER_LEN - 1] != 0,
        job: f.job.to_vec(),
    })
}

/// The variable parts of a binary job record, borrowed.
struct JobFields<'a> {
    id: &'a [u8],
    owner: &'a [u8],
    submission: Option<&'a [u8]>,
    job: &'a [u8],
}

/// Splits a binary job record ([`is_binary_job`]) without copying it.
fn job_fields(bytes: &[u8]) -> Result<JobFields<'_>> {
    let mut rest = bytes
        .get(JOB_HEADER_LEN..)
        .ok_or_else(|| corrupt_job("truncated job record"))?;
    let mut field = || -> Result<&[u8]> {
        let (len, tail) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| corrupt_job("truncated job record"))?;
        let len = u32::from_le_bytes(*len) as usize;
        if tail.len() < len {
            return Err(corrupt_job("truncated job record"));
        }
        let (s, tail) = tail.split_at(len);
        rest = tail;
        Ok(s)
    };
    let id = field()?;
    let owner = field()?;
    let submission = if bytes[0] == JOB_FORMAT_NEW {
        Some(field()?)
    } else {
        None
    };
    Ok(JobFields {
        id,
        owner,
        submission,
        job: rest,
    })
}

/// Version and last sequence of a stored job record, without copying the job.
fn job_header(bytes: &[u8]) -> Result<(u64, u64)> {
    if !is_binary_job(bytes) {
        let rec: JobRecord = decode("jobs", bytes)?;
        return Ok((rec.version, rec.last_seq));
    }
    let field = |at: usize| {
        bytes
            .get(at..at + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
            .ok_or_else(|| corrupt_job("truncated job record"))
    };
    if bytes.len() < JOB_HEADER_LEN {
        return Err(corrupt_job("truncated job record"));
    }
    Ok((field(1)?, field(9)?))
}

fn owner_key(owner: &str, id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(owner.len() + 1 + id.len());
    k.extend_from_slice(owner.as_bytes());
    k.push(0);
    k.extend_from_slice(id.as_bytes());
    k
}

fn event_key(id: &str, seq: u64) -> Vec<u8> {
    let mut k = owner_key(id, "");
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn count(v: Option<&[u8]>) -> u64 {
    v.and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0)
}

fn tx_err(e: TransactionError<StoreError>) -> StoreError {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => StoreError::Engine(e),
    }
}

impl SledStore {
    fn design_from_tree(&self, id: &str) -> Result<Option<DesignRecord>> {
        self.designs
            .get(id.as_bytes())?
            .map(|v| decode("designs", &v))
            .transpose()
    }
}

impl Store for SledStore {
    fn put_design(&self, record: &DesignRecord, bytes: &[u8]) -> Result<()> {
        let value = encode("designs", record)?;
        let _guard = self.lock();
        let written_now = self.blobs.write(&record.sha256, bytes)?;
        let res = (&self.designs, &self.owner_designs, &self.blob_refs).transaction(
            |(designs, owners, refs)| {
                if designs.get(record.id.as_bytes())?.is_some() {
                    return Err(ConflictableTransactionError::Abort(
                        StoreError::AlreadyExists(format!("design {}", record.id)),
                    ));
                }
                designs.insert(record.id.as_bytes(), value.as_slice())?;
                owners.insert(owner_key(&record.owner, &record.id), &[] as &[u8])?;
                let n = count(refs.get(record.sha256.as_bytes())?.as_deref());
                refs.insert(record.sha256.as_bytes(), &(n + 1).to_be_bytes())?;
                Ok(())
            },
        );
        if let Err(e) = res {
            if written_now {
                // Nothing refers to the bytes we just wrote: leave nothing behind.
                self.blobs.remove(&record.sha256)?;
            }
            return Err(tx_err(e));
        }
        Ok(())
    }

    fn get_design(&self, id: &str) -> Result<Option<DesignRecord>> {
        if let Some(d) = read_lock(&self.design_cache).get(id) {
            return Ok(Some(d.clone()));
        }
        // Read under the write lock, so a delete cannot slip in between the read and the
        // caching.
        let mut cache = write_lock(&self.design_cache);
        let rec = self.design_from_tree(id)?;
        if let Some(r) = &rec {
            if cache.len() >= MAX_CACHED_DESIGNS {
                cache.clear();
            }
            cache.insert(id.to_string(), r.clone());
        }
        Ok(rec)
    }

    fn list_designs(
        &self,
        owner: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DesignRecord>> {
        let start = owner_key(owner, "");
        let iter = match after {
            Some(after) => self
                .owner_designs
                .range(start.clone()..owner_key(owner, after)),
            None => self.owner_designs.scan_prefix(&start),
        };
        let mut out = Vec::new();
        for item in iter.rev() {
            let (key, _) = item?;
            let id = std::str::from_utf8(&key[start.len()..]).map_err(|e| StoreError::Corrupt {
                tree: "owner_designs",
                reason: e.to_string(),
            })?;
            // Straight from the tree: a listing should not push the hot designs out.
            if let Some(rec) = self.design_from_tree(id)? {
                out.push(rec);
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    fn delete_design(&self, id: &str) -> Result<bool> {
        let _guard = self.lock();
        let mut cache = write_lock(&self.design_cache);
        let Some(rec) = self.design_from_tree(id)? else {
            return Err(StoreError::NotFound(format!("design {id}")));
        };
        let remaining = (&self.designs, &self.owner_designs, &self.blob_refs)
            .transaction(|(designs, owners, refs)| {
                designs.remove(rec.id.as_bytes())?;
                owners.remove(owner_key(&rec.owner, &rec.id))?;
                let n = count(refs.get(rec.sha256.as_bytes())?.as_deref()).saturating_sub(1);
                if n == 0 {
                    refs.remove(rec.sha256.as_bytes())?;
                } else {
                    refs.insert(rec.sha256.as_bytes(), &n.to_be_bytes())?;
                }
                Ok(n)
            })
            .map_err(tx_err)?;
        cache.remove(id);
        drop(cache);
        if remaining == 0 {
            self.blobs.remove(&rec.sha256)?;
        }
        Ok(remaining == 0)
    }

    fn open_blob(&self, sha256: &str) -> Result<std::fs::File> {
        match self.blobs.open(sha256) {
            Ok(f) => Ok(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(StoreError::NotFound(format!("blob {sha256}")))
            }
            Err(e) => Err(e.into()),
        }
    }

    fn blob_exists(&self, sha256: &str) -> Result<bool> {
        Ok(self.blobs.exists(sha256)?)
    }

    fn put_token(&self, token: &TokenRecord) -> Result<()> {
        let value = encode("tokens", token)?;
        let mut cache = write_lock(&self.token_cache);
        (&self.tokens, &self.token_secrets)
            .transaction(|(tokens, secrets)| {
                tokens.insert(token.id.as_bytes(), value.as_slice())?;
                secrets.insert(token.secret_sha256.as_bytes(), token.id.as_bytes())?;
                Ok(())
            })
            .map_err(tx_err)?;
        // A token id written again may come with another secret: drop what was cached for it.
        cache.retain(|_, t| t.id != token.id);
        Ok(())
    }

    fn token_by_secret_sha256(&self, secret_sha256: &str) -> Result<Option<TokenRecord>> {
        if let Some(t) = read_lock(&self.token_cache).get(secret_sha256) {
            return Ok(Some(t.clone()));
        }
        // Looked up under the write lock, so a revocation cannot slip in between the read
        // and the caching.
        let mut cache = write_lock(&self.token_cache);
        let Some(id) = self.token_secrets.get(secret_sha256.as_bytes())? else {
            return Ok(None);
        };
        let token: Option<TokenRecord> = self
            .tokens
            .get(&id)?
            .map(|v| decode("tokens", &v))
            .transpose()?;
        if let Some(t) = &token {
            if cache.len() >= MAX_CACHED_TOKENS {
                cache.clear();
            }
            cache.insert(secret_sha256.to_string(), t.clone());
        }
        Ok(token)
    }

    fn list_tokens(&self) -> Result<Vec<TokenRecord>> {
        self.tokens
            .iter()
            .map(|item| decode("tokens", &item?.1))
            .collect()
    }

    fn revoke_token(&self, id: &str) -> Result<bool> {
        let mut cache = write_lock(&self.token_cache);
        let Some(v) = self.tokens.get(id.as_bytes())? else {
            return Ok(false);
        };
        let rec: TokenRecord = decode("tokens", &v)?;
        (&self.tokens, &self.token_secrets)
            .transaction(|(tokens, secrets)| {
                tokens.remove(rec.id.as_bytes())?;
                secrets.remove(rec.secret_sha256.as_bytes())?;
                Ok(())
            })
            .map_err(tx_err)?;
        cache.retain(|_, t| t.id != rec.id);
        Ok(true)
    }

    fn create_node(&self, node: &NodeRecord) -> Result<()> {
        let value = encode("nodes", node)?;
        self.nodes
            .compare_and_swap(node.node_id.as_bytes(), None as Option<&[u8]>, Some(value))?
            .map_err(|_| StoreError::AlreadyExists(format!("node {}", node.node_id)))
    }

    fn get_node(&self, node_id: &str) -> Result<Option<NodeRecord>> {
        self.nodes
            .get(node_id.as_bytes())?
            .map(|v| decode("nodes", &v))
            .transpose()
    }

    fn create_jobs(
        &self,
        owner: &str,
        idempotency_key: &str,
        jobs: &[JobRecord],
        events: &[Vec<Vec<u8>>],
    ) -> Result<Created> {
        let idem = owner_key(owner, idempotency_key);
        if let Some(prev) = self.idempotency.get(&idem)? {
            return Ok(Created::Replayed(decode("idempotency", &prev)?));
        }
        let values = jobs
            .iter()
            .map(|j| encode_job_as(j, Some(&idem)))
            .collect::<Result<Vec<_>>>()?;
        let ids: Vec<String> = jobs.iter().map(|j| j.id.clone()).collect();
        let ids_value = encode("idempotency", &ids)?;
        let take_back = || self.remove_jobs(jobs.iter().map(|j| (j.id.as_str(), Some(&*j.owner))));
        let written = self
            .write_uncommitted_jobs(jobs, &values, events)
            .and_then(|()| {
                // The commit point. Anything a concurrent submit with the same key wrote meanwhile
                // loses here and is taken back.
                self.idempotency
                    .compare_and_swap(&idem, None as Option<&[u8]>, Some(ids_value))
                    .map_err(StoreError::Engine)
            });
        match written {
            Ok(Ok(())) => Ok(Created::New),
            Ok(Err(lost)) => {
                take_back()?;
                let prev = lost.current.ok_or_else(|| StoreError::Corrupt {
                    tree: "idempotency",
                    reason: "an entry vanished while it was compared".into(),
                })?;
                Ok(Created::Replayed(decode("idempotency", &prev)?))
            }
            Err(e) => {
                // Best effort; a start-up removes what is left (nothing names these jobs).
                let _ = take_back();
                Err(e)
            }
        }
    }

    fn idempotency_lookup(
        &self,
        owner: &str,
        idempotency_key: &str,
    ) -> Result<Option<Vec<String>>> {
        self.idempotency
            .get(owner_key(owner, idempotency_key))?
            .map(|v| decode("idempotency", &v))
            .transpose()
    }

    fn update_job(&self, job: &JobRecord, events: &[Vec<u8>]) -> Result<()> {
        let value = encode_job(job)?;
        let trees = (&self.jobs, &self.active_jobs, &self.job_events);
        trees
            .transaction(|(t_jobs, t_active, t_events)| {
                let (version, last_seq) = match t_jobs.get(job.id.as_bytes())? {
                    Some(v) => job_header(&v).map_err(ConflictableTransactionError::Abort)?,
                    None => {
                        return Err(ConflictableTransactionError::Abort(StoreError::NotFound(
                            format!("job {}", job.id),
                        )));
                    }
                };
                if version + 1 != job.version || last_seq + events.len() as u64 != job.last_seq {
                    return Err(ConflictableTransactionError::Abort(StoreError::Conflict(
                        format!("job {}", job.id),
                    )));
                }
                t_jobs.insert(job.id.as_bytes(), value.as_slice())?;
                if job.active {
                    t_active.insert(job.id.as_bytes(), &[] as &[u8])?;
                } else {
                    t_active.remove(job.id.as_bytes())?;
                }
                for (n, ev) in events.iter().enumerate() {
                    t_events.insert(event_key(&job.id, last_seq + n as u64 + 1), ev.as_slice())?;
                }
                Ok(())
            })
            .map_err(tx_err)
    }

    fn get_job(&self, id: &str) -> Result<Option<JobRecord>> {
        self.jobs
            .get(id.as_bytes())?
            .map(|v| decode_job(&v))
            .transpose()
    }

    fn list_jobs(&self, owner: &str, after: Option<&str>, limit: usize) -> Result<Vec<JobRecord>> {
        let start = owner_key(owner, "");
        let iter = match after {
            Some(after) => self
                .owner_jobs
                .range(start.clone()..owner_key(owner, after)),
            None => self.owner_jobs.scan_prefix(&start),
        };
        let mut out = Vec::new();
        for item in iter.rev() {
            let (key, _) = item?;
            let id = std::str::from_utf8(&key[start.len()..]).map_err(|e| StoreError::Corrupt {
                tree: "owner_jobs",
                reason: e.to_string(),
            })?;
            if let Some(rec) = self.get_job(id)? {
                out.push(rec);
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    fn visit_active_jobs(&self, visit: &mut dyn FnMut(JobRecord) -> Result<()>) -> Result<()> {
        for item in self.active_jobs.iter() {
            let (id, _) = item?;
            if let Some(v) = self.jobs.get(&id)? {
                visit(decode_job(&v)?)?;
            }
        }
        Ok(())
    }

    fn job_events(&self, id: &str, from_seq: u64) -> Result<Vec<Vec<u8>>> {
        let start = event_key(id, from_seq.max(1));
        let prefix = owner_key(id, "");
        let mut out = Vec::new();
        for item in self.job_events.range(start..) {
            let (k, v) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            out.push(v.to_vec());
        }
        Ok(out)
    }

    fn put_printer(&self, name: &str, printer: &[u8]) -> Result<()> {
        self.printers.insert(name.as_bytes(), printer)?;
        Ok(())
    }

    fn list_printers(&self) -> Result<Vec<(String, Vec<u8>)>> {
        self.printers
            .iter()
            .map(|item| {
                let (k, v) = item?;
                Ok((String::from_utf8_lossy(&k).into_owned(), v.to_vec()))
            })
            .collect()
    }

    fn cache_get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.cache.get(key.as_bytes())?.map(|v| v.to_vec()))
    }

    fn cache_put(&self, key: &str, value: &[u8]) -> Result<()> {
        self.cache.insert(key.as_bytes(), value)?;
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sha256_hex;

    fn design(id: &str, owner: &str, bytes: &[u8]) -> DesignRecord {
        DesignRecord {
            id: id.into(),
            owner: owner.into(),
            file_name: format!("{id}.stl"),
            size_bytes: bytes.len() as u64,
            sha256: sha256_hex(bytes),
            format: 1,
            created_unix_ms: 0,
            report: vec![1, 2, 3],
            repaired_from: None,
        }
    }

    #[test]
    fn identical_bytes_are_stored_once_and_erased_with_the_last_design() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let a = design("01-a", "alice", b"same bytes");
        let b = design("02-b", "bob", b"same bytes");
        store.put_design(&a, b"same bytes").unwrap();
        store.put_design(&b, b"same bytes").unwrap();
        assert_eq!(store.blobs.list().unwrap(), vec![a.sha256.clone()]);
        // Read (and so cached) before the deletes: a deleted design must not be served.
        assert_eq!(store.get_design("02-b").unwrap(), Some(b.clone()));
        assert!(!store.delete_design("01-a").unwrap());
        assert!(store.blob_exists(&a.sha256).unwrap());
        assert!(store.delete_design("02-b").unwrap());
        assert!(!store.blob_exists(&a.sha256).unwrap());
        assert!(store.get_design("02-b").unwrap().is_none());
    }

    #[test]
    fn listing_is_per_owner_newest_first_and_pages() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        for i in 0..5 {
            let bytes = format!("design {i}");
            store
                .put_design(
                    &design(&format!("0{i}"), "alice", bytes.as_bytes()),
                    bytes.as_bytes(),
                )
                .unwrap();
        }
        store.put_design(&design("09", "bob", b"x"), b"x").unwrap();
        let page1 = store.list_designs("alice", None, 2).unwrap();
        let ids: Vec<_> = page1.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, ["04", "03"]);
        let page2 = store.list_designs("alice", Some("03"), 10).unwrap();
        let ids: Vec<_> = page2.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, ["02", "01", "00"]);
        assert_eq!(store.list_designs("bob", None, 10).unwrap().len(), 1);
        assert!(store.list_designs("carol", None, 10).unwrap().is_empty());
    }

    #[test]
    fn a_failed_put_leaves_no_blob_and_a_restart_sweeps_orphans() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SledStore::open(dir.path()).unwrap();
            let a = design("01", "alice", b"first");
            store.put_design(&a, b"first").unwrap();
            // Same id again with other bytes: refused, and the new bytes are not kept.
            let dup = design("01", "alice", b"other");
            assert!(matches!(
                store.put_design(&dup, b"other"),
                Err(StoreError::AlreadyExists(_))
            ));
            assert!(!store.blob_exists(&dup.sha256).unwrap());
            // A blob with no record, as a crash between file and commit would leave.
            store
                .blobs
                .write(&sha256_hex(b"orphan"), b"orphan")
                .unwrap();
            store.flush().unwrap();
        }
        let store = SledStore::open(dir.path()).unwrap();
        assert!(!store.blob_exists(&sha256_hex(b"orphan")).unwrap());
        assert!(store.get_design("01").unwrap().is_some());
        assert!(store.blob_exists(&sha256_hex(b"first")).unwrap());
    }

    #[test]
    fn tokens_are_found_by_secret_hash_and_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let t = TokenRecord {
            id: "t1".into(),
            secret_sha256: sha256_hex(b"secret"),
            role: 1,
            principal: "p1".into(),
            label: "laptop".into(),
            created_unix_ms: 0,
        };
        store.put_token(&t).unwrap();
        assert_eq!(
            store.token_by_secret_sha256(&t.secret_sha256).unwrap(),
            Some(t.clone())
        );
        assert!(store.revoke_token("t1").unwrap());
        assert_eq!(
            store.token_by_secret_sha256(&t.secret_sha256).unwrap(),
            None
        );
        assert!(!store.revoke_token("t1").unwrap());
    }

    /// Lookups cache tokens; a lookup that starts after a revocation has returned never finds
    /// the token, however the lookups and the revocation interleave.
    #[test]
    fn a_revoked_token_is_never_found_afterwards() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        for round in 0..20 {
            let t = TokenRecord {
                id: format!("t{round}"),
                secret_sha256: sha256_hex(format!("secret {round}").as_bytes()),
                role: 1,
                principal: "p1".into(),
                label: String::new(),
                created_unix_ms: 0,
            };
            store.put_token(&t).unwrap();
            let revoked = AtomicBool::new(false);
            std::thread::scope(|s| {
                for _ in 0..4 {
                    s.spawn(|| {
                        for _ in 0..2_000 {
                            let after = revoked.load(Ordering::SeqCst);
                            let found = store.token_by_secret_sha256(&t.secret_sha256).unwrap();
                            assert!(
                                !(after && found.is_some()),
                                "round {round}: revoked token found"
                            );
                        }
                    });
                }
                std::thread::sleep(std::time::Duration::from_micros(200));
                assert!(store.revoke_token(&t.id).unwrap());
                revoked.store(true, Ordering::SeqCst);
            });
        }
    }

    fn job(id: &str, version: u64, last_seq: u64, active: bool) -> JobRecord {
        JobRecord {
            id: id.into(),
            owner: "alice".into(),
            version,
            last_seq,
            active,
            job: id.as_bytes().to_vec(),
        }
    }

    #[test]
    fn jobs_are_created_once_per_idempotency_key_and_updated_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let jobs = [job("j1", 0, 1, true), job("j2", 0, 1, true)];
        let evs = vec![vec![b"created-1".to_vec()], vec![b"created-2".to_vec()]];
        assert_eq!(
            store.create_jobs("alice", "k1", &jobs, &evs).unwrap(),
            Created::New
        );
        let again = [job("j3", 0, 1, true)];
        assert_eq!(
            store.create_jobs("alice", "k1", &again, &evs[..1]).unwrap(),
            Created::Replayed(vec!["j1".into(), "j2".into()])
        );
        assert!(store.get_job("j3").unwrap().is_none());
        // The same key from another owner is another request.
        let mut bobs = job("j3", 0, 1, true);
        bobs.owner = "bob".into();
        assert_eq!(
            store.create_jobs("bob", "k1", &[bobs], &evs[..1]).unwrap(),
            Created::New
        );

        store
            .update_job(&job("j1", 1, 3, false), &[b"a".to_vec(), b"b".to_vec()])
            .unwrap();
        // A writer that read version 0 loses: nothing of its change is written.
        assert!(matches!(
            store.update_job(&job("j1", 1, 2, true), &[b"x".to_vec()]),
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(
            store.job_events("j1", 1).unwrap(),
            vec![b"created-1".to_vec(), b"a".to_vec(), b"b".to_vec()]
        );
        assert_eq!(store.job_events("j1", 3).unwrap(), vec![b"b".to_vec()]);
        let active: Vec<_> = store
            .active_jobs()
            .unwrap()
            .into_iter()
            .map(|j| j.id)
            .collect();
        assert_eq!(active, ["j2", "j3"]);
        let listed: Vec<_> = store
            .list_jobs("alice", None, 10)
            .unwrap()
            .into_iter()
            .map(|j| j.id)
            .collect();
        assert_eq!(listed, ["j2", "j1"]);
    }

    #[test]
    fn a_submission_that_never_committed_is_gone_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let evs = vec![vec![b"created".to_vec(), b"assigned".to_vec()]; 2];
        {
            let store = SledStore::open(dir.path()).unwrap();
            let done = [job("j1", 0, 2, true), job("j2", 0, 2, true)];
            assert_eq!(
                store.create_jobs("alice", "k1", &done, &evs).unwrap(),
                Created::New
            );
            // A crash before the commit point: the jobs of "k2" are written, its idempotency
            // entry is not.
            let lost = [job("j3", 0, 2, true), job("j4", 0, 2, true)];
            let idem = owner_key("alice", "k2");
            let values: Vec<_> = lost
                .iter()
                .map(|j| encode_job_as(j, Some(&idem)).unwrap())
                .collect();
            store.write_uncommitted_jobs(&lost, &values, &evs).unwrap();
            // And a crash that cut a submission after its first job's active marker.
            store.active_jobs.insert("j5", &[] as &[u8]).unwrap();
            // A committed job that was updated since is a V1 record: it stays.
            store
                .update_job(&job("j2", 1, 3, true), &[b"started".to_vec()])
                .unwrap();
            assert_eq!(store.active_jobs().unwrap().len(), 4);
            store.flush().unwrap();
        }
        let store = SledStore::open(dir.path()).unwrap();
        let ids = |v: Vec<JobRecord>| v.into_iter().map(|j| j.id).collect::<Vec<_>>();
        assert_eq!(ids(store.active_jobs().unwrap()), ["j1", "j2"]);
        assert_eq!(
            ids(store.list_jobs("alice", None, 10).unwrap()),
            ["j2", "j1"]
        );
        for gone in ["j3", "j4", "j5"] {
            assert!(store.get_job(gone).unwrap().is_none());
            assert!(store.job_events(gone, 1).unwrap().is_empty());
            assert!(!store.active_jobs.contains_key(gone).unwrap());
        }
        assert_eq!(store.job_events("j2", 1).unwrap().len(), 3);
        // The retry of "k2" is a new submission.
        assert_eq!(
            store
                .create_jobs("alice", "k2", &[job("j6", 0, 2, true)], &evs[..1])
                .unwrap(),
            Created::New
        );
    }

    #[test]
    fn concurrent_submissions_with_one_key_store_one_set_of_jobs() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(SledStore::open(dir.path()).unwrap());
        for round in 0..20 {
            let key = format!("k{round}");
            let outcomes: Vec<(Vec<String>, Created)> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..4)
                    .map(|t| {
                        let (store, key) = (&store, &key);
                        s.spawn(move || {
                            let mine: Vec<JobRecord> = (0..3)
                                .map(|n| job(&format!("r{round}-t{t}-{n}"), 0, 1, true))
                                .collect();
                            let evs = vec![vec![b"created".to_vec()]; 3];
                            let ids = mine.iter().map(|j| j.id.clone()).collect();
                            (ids, store.create_jobs("alice", key, &mine, &evs).unwrap())
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let winners: Vec<&Vec<String>> = outcomes
                .iter()
                .filter(|(_, c)| *c == Created::New)
                .map(|(ids, _)| ids)
                .collect();
            assert_eq!(winners.len(), 1, "round {round}: {outcomes:?}");
            for (_, c) in &outcomes {
                if let Created::Replayed(ids) = c {
                    assert_eq!(ids, winners[0]);
                }
            }
        }
        // Only the winners' jobs remain, with their events.
        let listed = store.list_jobs("alice", None, 1000).unwrap();
        assert_eq!(listed.len(), 20 * 3);
        assert_eq!(store.active_jobs().unwrap().len(), 20 * 3);
        assert_eq!(store.job_events.len(), 20 * 3);
    }

    #[test]
    fn job_records_round_trip_and_json_records_of_older_versions_still_read() {
        let rec = JobRecord {
            id: "0190abcd".into(),
            owner: "alice".into(),
            version: 7,
            last_seq: 12,
            active: true,
            job: vec![0, 1, 2, 255, b'{'],
        };
        let bytes = encode_job(&rec).unwrap();
        assert_eq!(decode_job(&bytes).unwrap(), rec);
        assert_eq!(job_header(&bytes).unwrap(), (7, 12));
        let new = encode_job_as(&rec, Some(b"alice\0k1")).unwrap();
        assert_eq!(decode_job(&new).unwrap(), rec);
        assert_eq!(
            job_fields(&new).unwrap().submission,
            Some(&b"alice\0k1"[..])
        );
        assert_eq!(job_header(&new).unwrap(), (7, 12));
        assert!(matches!(
            decode_job(&new[..JOB_HEADER_LEN + 4 + 8 + 4 + 5 + 2]),
            Err(StoreError::Corrupt { .. })
        ));
        assert!(matches!(
            decode_job(&bytes[..bytes.len() - 6]),
            Err(StoreError::Corrupt { .. })
        ));

        // A record written as JSON before the binary layout existed: read, then updated.
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let old = job("j1", 0, 1, true);
        store
            .jobs
            .insert("j1", encode("jobs", &old).unwrap())
            .unwrap();
        store.active_jobs.insert("j1", &[] as &[u8]).unwrap();
        assert_eq!(store.get_job("j1").unwrap(), Some(old));
        store
            .update_job(&job("j1", 1, 2, false), &[b"done".to_vec()])
            .unwrap();
        assert_eq!(store.get_job("j1").unwrap(), Some(job("j1", 1, 2, false)));
        assert!(store.active_jobs().unwrap().is_empty());
    }

    #[test]
    fn node_ids_are_unique() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let n = NodeRecord {
            node_id: "fablab".into(),
            secret_sha256: sha256_hex(b"s"),
            label: String::new(),
            created_unix_ms: 0,
        };
        store.create_node(&n).unwrap();
        assert!(matches!(
            store.create_node(&n),
            Err(StoreError::AlreadyExists(_))
        ));
        assert_eq!(store.get_node("fablab").unwrap(), Some(n));
    }
}
