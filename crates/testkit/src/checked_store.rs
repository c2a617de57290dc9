//! A store for tests that holds the router core to its promise never to call the store with
//! its registry lock held (store I/O under that lock would serialise the whole router on a
//! networked database). It wraps the sled store, counts calls, and records every call made
//! under the lock; [`Router::stop`](crate::router::Router::stop) fails the test if there was
//! one. Debug builds of the harness always use it; benchmarks (release) serve sled as fabd
//! does. [`CheckedStore::wrap`] checks any other store (PostgreSQL) the same way.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use fabrouter_store::{
    BlobStore, CommittedBlob, Created, DesignRecord, JobRecord, NodeRecord, Result, SledStore,
    Store, TokenRecord,
};

/// A store (sled unless wrapped) that counts its calls and records those made under the
/// registry lock (a panic there would be caught by the server's task and go unnoticed).
pub struct CheckedStore {
    inner: Arc<dyn Store>,
    calls: AtomicU64,
    under_lock: Mutex<Vec<&'static str>>,
}

impl CheckedStore {
    /// A sled store in `dir`, checked.
    pub fn open(dir: &Path) -> CheckedStore {
        CheckedStore::wrap(Arc::new(
            SledStore::open(dir).unwrap_or_else(|e| panic!("sled store in {}: {e}", dir.display())),
        ))
    }

    /// `store`, checked.
    pub fn wrap(store: Arc<dyn Store>) -> CheckedStore {
        CheckedStore {
            inner: store,
            calls: AtomicU64::new(0),
            under_lock: Mutex::new(Vec::new()),
        }
    }

    /// Store calls so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// The store calls made with the registry lock held, by name (none, if the core keeps
    /// its promise).
    pub fn under_lock(&self) -> Vec<&'static str> {
        self.under_lock
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn check(&self, what: &'static str) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if fabrouter_router::holds_registry_lock() {
            self.under_lock
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(what);
        }
    }
}

impl Store for CheckedStore {
    fn blobs(&self) -> &dyn BlobStore {
        self.inner.blobs()
    }
    fn put_design(&self, record: &DesignRecord, blob: &CommittedBlob) -> Result<()> {
        self.check("put_design");
        self.inner.put_design(record, blob)
    }
    fn get_design(&self, id: &str) -> Result<Option<DesignRecord>> {
        self.check("get_design");
        self.inner.get_design(id)
    }
    fn list_designs(
        &self,
        owner: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DesignRecord>> {
        self.check("list_designs");
        self.inner.list_designs(owner, after, limit)
    }
    fn delete_design(&self, id: &str) -> Result<bool> {
        self.check("delete_design");
        self.inner.delete_design(id)
    }
    fn put_token(&self, token: &TokenRecord) -> Result<()> {
        self.check("put_token");
        self.inner.put_token(token)
    }
    fn token_by_secret_sha256(&self, secret_sha256: &str) -> Result<Option<TokenRecord>> {
        self.check("token_by_secret_sha256");
        self.inner.token_by_secret_sha256(secret_sha256)
    }
    fn list_tokens(&self) -> Result<Vec<TokenRecord>> {
        self.check("list_tokens");
        self.inner.list_tokens()
    }
    fn revoke_token(&self, id: &str) -> Result<bool> {
        self.check("revoke_token");
        self.inner.revoke_token(id)
    }
    fn create_node(&self, node: &NodeRecord) -> Result<()> {
        self.check("create_node");
        self.inner.create_node(node)
    }
    fn get_node(&self, node_id: &str) -> Result<Option<NodeRecord>> {
        self.check("get_node");
        self.inner.get_node(node_id)
    }
    fn create_jobs(
        &self,
        owner: &str,
        idempotency_key: &str,
        jobs: &[JobRecord],
        events: &[Vec<Vec<u8>>],
    ) -> Result<Created> {
        self.check("create_jobs");
        self.inner.create_jobs(owner, idempotency_key, jobs, events)
    }
    fn idempotency_lookup(
        &self,
        owner: &str,
        idempotency_key: &str,
    ) -> Result<Option<Vec<String>>> {
        self.check("idempotency_lookup");
        self.inner.idempotency_lookup(owner, idempotency_key)
    }
    fn update_job(&self, job: &JobRecord, events: &[Vec<u8>]) -> Result<()> {
        self.check("update_job");
        self.inner.update_job(job, events)
    }
    fn get_job(&self, id: &str) -> Result<Option<JobRecord>> {
        self.check("get_job");
        self.inner.get_job(id)
    }
    fn list_jobs(&self, owner: &str, after: Option<&str>, limit: usize) -> Result<Vec<JobRecord>> {
        self.check("list_jobs");
        self.inner.list_jobs(owner, after, limit)
    }
    fn visit_active_jobs(&self, visit: &mut dyn FnMut(JobRecord) -> Result<()>) -> Result<()> {
        self.check("visit_active_jobs");
        self.inner.visit_active_jobs(visit)
    }
    fn job_events(&self, id: &str, from_seq: u64) -> Result<Vec<Vec<u8>>> {
        self.check("job_events");
        self.inner.job_events(id, from_seq)
    }
    fn put_printer(&self, name: &str, printer: &[u8]) -> Result<()> {
        self.check("put_printer");
        self.inner.put_printer(name, printer)
    }
    fn list_printers(&self) -> Result<Vec<(String, Vec<u8>)>> {
        self.check("list_printers");
        self.inner.list_printers()
    }
    fn cache_get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.check("cache_get");
        self.inner.cache_get(key)
    }
    fn cache_put(&self, key: &str, value: &[u8]) -> Result<()> {
        self.check("cache_put");
        self.inner.cache_put(key, value)
    }
    fn flush(&self) -> Result<()> {
        self.check("flush");
        self.inner.flush()
    }
}
