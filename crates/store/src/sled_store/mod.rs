//! The embedded default store: sled trees for records and indexes, [`BlobDir`] for bytes.
//! Jobs have their own module ([`jobs`]); designs, tokens, nodes, printers and the cache are
//! here.
//!
//! Trees: `designs` (id -> record), `owner_designs` (owner NUL id -> ()), `blob_refs`
//! (sha256 -> u64 count), `tokens` (id -> record), `token_secrets` (secret sha256 -> id), `nodes`
//! (node id -> record), `cache` (key -> bytes), `printers` (name -> encoded printer), and the job
//! trees. Multi-tree changes go through one sled transaction. A design's bytes are committed to
//! the blob directory before the transaction that stores the record and counts the reference,
//! and removed after the one that drops the last reference; a start-up sweep removes blobs that
//! no record counts (a crash between the two steps), so a record never lacks its bytes.
//!
//! Records are JSON except jobs (see [`jobs`]). sled's errors become [`StoreError::Backend`]
//! here ([`Sled::db`]) and nowhere in the public API.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, RwLock};

use serde::Serialize;
use serde::de::DeserializeOwned;
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use crate::{
    BlobDir, BlobStore, CommittedBlob, Created, DesignRecord, JobRecord, NodeRecord, Result, Store,
    StoreError, TokenRecord,
};

mod jobs;

use jobs::JobTrees;

/// sled's results as the store's. A private trait rather than `From<sled::Error>`, which would
/// put sled into the public API of [`StoreError`].
trait Sled<T> {
    fn db(self) -> Result<T>;
}

impl<T> Sled<T> for sled::Result<T> {
    fn db(self) -> Result<T> {
        self.map_err(StoreError::backend)
    }
}

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
    printers: sled::Tree,
    jobs: JobTrees,
    blobs: BlobDir,
    /// Serialises reference counting with the removal of blobs, so that a record is never
    /// stored for bytes being removed. (A blob committed but not yet referenced is kept by the
    /// hold of its [`CommittedBlob`].)
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
            .open()
            .db()?;
        let store = Self {
            designs: db.open_tree("designs").db()?,
            owner_designs: db.open_tree("owner_designs").db()?,
            blob_refs: db.open_tree("blob_refs").db()?,
            tokens: db.open_tree("tokens").db()?,
            token_secrets: db.open_tree("token_secrets").db()?,
            nodes: db.open_tree("nodes").db()?,
            cache: db.open_tree("cache").db()?,
            printers: db.open_tree("printers").db()?,
            jobs: JobTrees::open(&db)?,
            blobs: BlobDir::open_dir(dir.join("blobs"))?,
            blob_lock: Mutex::new(()),
            token_cache: RwLock::new(HashMap::new()),
            design_cache: RwLock::new(HashMap::new()),
            db,
        };
        store.sweep_orphan_blobs()?;
        Ok(store)
    }

    /// Removes the blobs no design refers to: what a crash between committing the bytes and
    /// storing the record left. Runs before anything else can take a hold.
    fn sweep_orphan_blobs(&self) -> Result<()> {
        for sha in self.blobs.list()? {
            if !self.blob_refs.contains_key(sha.as_bytes()).db()? {
                tracing::info!(%sha, "removing blob no design refers to");
                self.blobs.remove_unheld(&sha, 0)?;
            }
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        // A panic while holding the lock cannot leave the data inconsistent (sled commits
        // atomically), so a poisoned lock is still usable.
        self.blob_lock.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub(super) fn encode<T: Serialize>(tree: &'static str, value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| StoreError::Corrupt {
        tree,
        reason: e.to_string(),
    })
}

pub(super) fn decode<T: DeserializeOwned>(tree: &'static str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        tree,
        reason: e.to_string(),
    })
}

pub(super) fn owner_key(owner: &str, id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(owner.len() + 1 + id.len());
    k.extend_from_slice(owner.as_bytes());
    k.push(0);
    k.extend_from_slice(id.as_bytes());
    k
}

/// One page of an owner index (`owner_key` entries), newest first, after the id `after`
/// (exclusive): the records `load` finds for the ids, at most `limit` of them.
pub(super) fn owner_page<T>(
    index: &sled::Tree,
    index_name: &'static str,
    owner: &str,
    after: Option<&str>,
    limit: usize,
    mut load: impl FnMut(&str) -> Result<Option<T>>,
) -> Result<Vec<T>> {
    let start = owner_key(owner, "");
    let iter = match after {
        Some(after) => index.range(start.clone()..owner_key(owner, after)),
        None => index.scan_prefix(&start),
    };
    let mut out = Vec::new();
    for item in iter.rev() {
        if out.len() >= limit {
            break;
        }
        let (key, _) = item.db()?;
        let id = std::str::from_utf8(&key[start.len()..]).map_err(|e| StoreError::Corrupt {
            tree: index_name,
            reason: e.to_string(),
        })?;
        if let Some(rec) = load(id)? {
            out.push(rec);
        }
    }
    Ok(out)
}

fn count(v: Option<&[u8]>) -> u64 {
    v.and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0)
}

pub(super) fn tx_err(e: TransactionError<StoreError>) -> StoreError {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => StoreError::backend(e),
    }
}

/// Everything a [`SledStore`] holds that the [`Store`] trait cannot enumerate, for copying a
/// router to another store ([`crate::copy_store`]).
impl SledStore {
    /// Every design record, in id order.
    pub(crate) fn all_designs(&self) -> impl Iterator<Item = Result<DesignRecord>> + '_ {
        self.designs
            .iter()
            .map(|item| decode("designs", &item.db()?.1))
    }

    /// Every node identity.
    pub(crate) fn all_nodes(&self) -> impl Iterator<Item = Result<NodeRecord>> + '_ {
        self.nodes.iter().map(|item| decode("nodes", &item.db()?.1))
    }

    /// Every cached value, by key.
    pub(crate) fn all_cache(&self) -> impl Iterator<Item = Result<(String, Vec<u8>)>> + '_ {
        self.cache.iter().map(|item| {
            let (k, v) = item.db()?;
            Ok((String::from_utf8_lossy(&k).into_owned(), v.to_vec()))
        })
    }

    /// Every submission: (owner, idempotency key, job ids).
    pub(crate) fn all_submissions(
        &self,
    ) -> impl Iterator<Item = Result<(String, String, Vec<String>)>> + '_ {
        self.jobs.all_submissions()
    }

    /// The ids of every job.
    pub(crate) fn all_job_ids(&self) -> impl Iterator<Item = Result<String>> + '_ {
        self.jobs.all_job_ids()
    }
}

impl SledStore {
    fn design_from_tree(&self, id: &str) -> Result<Option<DesignRecord>> {
        self.designs
            .get(id.as_bytes())
            .db()?
            .map(|v| decode("designs", &v))
            .transpose()
    }
}

impl Store for SledStore {
    fn blobs(&self) -> &dyn BlobStore {
        &self.blobs
    }

    fn put_design(&self, record: &DesignRecord, blob: &CommittedBlob) -> Result<()> {
        if record.sha256 != blob.sha256 || record.size_bytes != blob.size_bytes {
            // A caller's mistake, refused before anything is written: the record would name
            // bytes it does not have.
            return Err(StoreError::Corrupt {
                tree: "designs",
                reason: format!(
                    "design {} names {} ({} bytes) but its blob is {} ({} bytes)",
                    record.id, record.sha256, record.size_bytes, blob.sha256, blob.size_bytes
                ),
            });
        }
        let value = encode("designs", record)?;
        let _guard = self.lock();
        // The hold of `blob` keeps the bytes; this finds bytes removed behind the store's back.
        if !self.blobs.exists(&record.sha256)? {
            return Err(StoreError::NotFound(format!("blob {}", record.sha256)));
        }
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
            // Bytes nothing refers to are garbage; another upload's hold on them keeps them.
            if !self.blob_refs.contains_key(record.sha256.as_bytes()).db()? {
                self.blobs.remove_unheld(&record.sha256, 1)?;
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
        // Straight from the tree: a listing should not push the hot designs out.
        owner_page(
            &self.owner_designs,
            "owner_designs",
            owner,
            after,
            limit,
            |id| self.design_from_tree(id),
        )
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
        // Kept if an upload of the same bytes holds them: its design will refer to them.
        Ok(remaining == 0 && self.blobs.remove_unheld(&rec.sha256, 0)?)
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
        let Some(id) = self.token_secrets.get(secret_sha256.as_bytes()).db()? else {
            return Ok(None);
        };
        let token: Option<TokenRecord> = self
            .tokens
            .get(&id)
            .db()?
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
            .map(|item| decode("tokens", &item.db()?.1))
            .collect()
    }

    fn revoke_token(&self, id: &str) -> Result<bool> {
        let mut cache = write_lock(&self.token_cache);
        let Some(v) = self.tokens.get(id.as_bytes()).db()? else {
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
            .compare_and_swap(node.node_id.as_bytes(), None as Option<&[u8]>, Some(value))
            .db()?
            .map_err(|_| StoreError::AlreadyExists(format!("node {}", node.node_id)))
    }

    fn get_node(&self, node_id: &str) -> Result<Option<NodeRecord>> {
        self.nodes
            .get(node_id.as_bytes())
            .db()?
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
        self.jobs.create_jobs(owner, idempotency_key, jobs, events)
    }

    fn idempotency_lookup(
        &self,
        owner: &str,
        idempotency_key: &str,
    ) -> Result<Option<Vec<String>>> {
        self.jobs.idempotency_lookup(owner, idempotency_key)
    }

    fn update_job(&self, job: &JobRecord, events: &[Vec<u8>]) -> Result<()> {
        self.jobs.update_job(job, events)
    }

    fn get_job(&self, id: &str) -> Result<Option<JobRecord>> {
        self.jobs.get_job(id)
    }

    fn list_jobs(&self, owner: &str, after: Option<&str>, limit: usize) -> Result<Vec<JobRecord>> {
        self.jobs.list_jobs(owner, after, limit)
    }

    fn visit_active_jobs(&self, visit: &mut dyn FnMut(JobRecord) -> Result<()>) -> Result<()> {
        self.jobs.visit_active_jobs(visit)
    }

    fn job_events(&self, id: &str, from_seq: u64) -> Result<Vec<Vec<u8>>> {
        self.jobs.job_events(id, from_seq)
    }

    fn put_printer(&self, name: &str, printer: &[u8]) -> Result<()> {
        self.printers.insert(name.as_bytes(), printer).db()?;
        Ok(())
    }

    fn list_printers(&self) -> Result<Vec<(String, Vec<u8>)>> {
        self.printers
            .iter()
            .map(|item| {
                let (k, v) = item.db()?;
                Ok((String::from_utf8_lossy(&k).into_owned(), v.to_vec()))
            })
            .collect()
    }

    fn cache_get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.cache.get(key.as_bytes()).db()?.map(|v| v.to_vec()))
    }

    fn cache_put(&self, key: &str, value: &[u8]) -> Result<()> {
        self.cache.insert(key.as_bytes(), value).db()?;
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        self.db.flush().db()?;
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

    /// Commits the bytes, then stores the design referring to them, as the server does.
    fn put(store: &SledStore, rec: &DesignRecord, bytes: &[u8]) -> Result<()> {
        let blob = store.blobs().put(bytes)?;
        store.put_design(rec, &blob)
    }

    fn refs(store: &SledStore, bytes: &[u8]) -> u64 {
        let v = store.blob_refs.get(sha256_hex(bytes)).unwrap();
        count(v.as_deref())
    }

    #[test]
    fn a_design_is_refused_without_its_committed_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let blob = store.blobs().put(b"these").unwrap();
        let other = design("01", "alice", b"other bytes");
        assert!(matches!(
            store.put_design(&other, &blob),
            Err(StoreError::Corrupt { .. })
        ));
        // Bytes removed behind the store's back (the receipt still claims them).
        let rec = design("02", "alice", b"these");
        store.blobs.remove_unheld(&rec.sha256, 1).unwrap();
        assert!(matches!(
            store.put_design(&rec, &blob),
            Err(StoreError::NotFound(_))
        ));
        assert!(store.get_design("01").unwrap().is_none());
        assert!(store.get_design("02").unwrap().is_none());
        assert_eq!(refs(&store, b"these"), 0);
    }

    #[test]
    fn a_failed_put_leaves_no_blob_and_a_restart_sweeps_orphans() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SledStore::open(dir.path()).unwrap();
            let a = design("01", "alice", b"first");
            put(&store, &a, b"first").unwrap();
            // Same id again with other bytes: refused, and the new bytes are not kept.
            let dup = design("01", "alice", b"other");
            assert!(matches!(
                put(&store, &dup, b"other"),
                Err(StoreError::AlreadyExists(_))
            ));
            assert!(!store.blobs().exists(&dup.sha256).unwrap());
            // The same id with the same bytes: refused, and the first design keeps its bytes.
            assert!(matches!(
                put(&store, &a, b"first"),
                Err(StoreError::AlreadyExists(_))
            ));
            assert_eq!(refs(&store, b"first"), 1);
            // Bytes committed and then a crash before their design was stored.
            let orphan = store.blobs().put(b"orphan").unwrap();
            drop(orphan);
            store.flush().unwrap();
        }
        let store = SledStore::open(dir.path()).unwrap();
        assert!(!store.blobs().exists(&sha256_hex(b"orphan")).unwrap());
        assert!(store.get_design("01").unwrap().is_some());
        assert!(store.blobs().exists(&sha256_hex(b"first")).unwrap());
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
}
