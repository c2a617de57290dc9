//! The server database store: every record of the [`Store`] trait, and the design bytes too
//! ([`blob`]), in PostgreSQL (15 or newer), so that a fabd needs nothing but the database URL.
//! Jobs have their own module ([`jobs`]); the schema and its migrations are in [`migrate`].
//!
//! **Transactions.** Each trait call is at most one short READ COMMITTED transaction.
//! Correctness comes from rows, not from isolation: a job update is a compare-and-set on the
//! stored version, a submission's idempotency entry is an `INSERT … ON CONFLICT DO NOTHING`
//! (a concurrent submit with the same key waits for the first to commit, then finds its
//! entry), and a blob's reference count changes under its row lock in the transaction that
//! stores or deletes the design. Every transaction runs in [`transaction!`], which retries
//! serialization failures and deadlocks (SQLSTATE 40001, 40P01): PostgreSQL at READ COMMITTED
//! never raises the first, but PG-compatible distributed databases do, so those need
//! settings rather than code.
//!
//! **Sync over async.** The [`Store`] trait is synchronous, and the router calls it from
//! everywhere: tokio worker threads of a multi-threaded runtime (authentication in an RPC
//! handler), `spawn_blocking` threads, the group-commit thread, and the tests' current-thread
//! runtimes. The pool and its connections therefore live on a runtime of their own ([`Bridge`],
//! two threads named `fabd-pg`), and a call hands its future to that runtime and waits for the
//! answer on a channel. The waiting thread never drives the database itself, so no runtime
//! waits on itself: no deadlock, whatever runtime the caller is on. On a worker of a
//! multi-threaded runtime the wait is wrapped in `block_in_place`, so that the worker's other
//! tasks move to another thread meanwhile; on a current-thread runtime that would panic, and
//! there the wait simply blocks (as a sled call does, only longer).
//!
//! **Durability.** A commit returns once PostgreSQL has flushed its WAL
//! (`synchronous_commit = on`, the default), and PostgreSQL already shares one flush among
//! the commits of concurrent sessions; so [`Store::flush`] has nothing left to do. (With
//! `synchronous_commit = off` the database acknowledges before the flush, and a crash of the
//! database may lose the last commits: that is the operator's choice, not fabd's.)
//!
//! **Errors.** A lost or refused connection, a pool with no free connection in time, and a
//! database shutting down are [`StoreError::Unavailable`] (transient); a unique violation is
//! [`StoreError::AlreadyExists`]; other constraint violations and exhausted retries are
//! [`StoreError::Conflict`]; the rest is [`StoreError::Backend`].
//!
//! Connections are plain (no TLS): use a unix socket or a trusted network for now.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::error::SqlState;

use crate::{
    BlobStore, CommittedBlob, Created, DesignRecord, JobRecord, NodeRecord, Result, Store,
    StoreError, TokenRecord,
};

mod blob;
mod jobs;
mod migrate;

pub use blob::PgBlobs;

/// How a [`PgStore`] connects.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// Most connections open at once (each a PostgreSQL backend process).
    pub pool_size: usize,
    /// How long a call waits for a free connection (or a new one) before it reports the
    /// database unavailable.
    pub wait: Duration,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            pool_size: 16,
            wait: Duration::from_secs(10),
        }
    }
}

/// Attempts of a transaction that failed to serialize before it gives up with `Conflict`.
const MAX_ATTEMPTS: u32 = 8;

/// The runtime the pool lives on, owned by the store; see the module doc.
struct Bridge {
    rt: Option<tokio::runtime::Runtime>,
}

impl Drop for Bridge {
    fn drop(&mut self) {
        // A plain drop waits for the runtime's tasks, and panics on a thread that is itself
        // running async code (a store dropped inside a test's task).
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// What the store, its blob writers and readers, and the pins of committed blobs share.
pub(crate) struct Shared {
    pool: Pool,
    handle: tokio::runtime::Handle,
}

impl Shared {
    /// Runs `fut` on the store's runtime and waits for it (see the module doc).
    pub(crate) fn run<T, F>(&self, fut: F) -> Result<T>
    where
        F: Future<Output = Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let _ = tx.send(fut.await);
        });
        let wait = move || rx.recv();
        let got = match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(wait)
            }
            _ => wait(),
        };
        // The sender is dropped unanswered only when the runtime is gone.
        got.unwrap_or_else(|_| {
            Err(StoreError::Unavailable(
                "the PostgreSQL store is closed".into(),
            ))
        })
    }

    /// A pooled connection.
    pub(crate) async fn client(&self) -> std::result::Result<deadpool_postgres::Object, TxError> {
        self.pool.get().await.map_err(|e| {
            TxError::Abort(match e {
                deadpool_postgres::PoolError::Backend(e) => pg_error(e),
                deadpool_postgres::PoolError::Timeout(_) => StoreError::Unavailable(format!(
                    "no database connection free within the pool's wait ({} connections)",
                    self.pool.status().max_size
                )),
                other => StoreError::Unavailable(format!("database connection: {other}")),
            })
        })
    }
}

/// A failure inside a transaction: the database's, or a decision of the store's (a missing
/// record, a lost compare-and-set) that rolls the transaction back.
pub(crate) enum TxError {
    Db(tokio_postgres::Error),
    Abort(StoreError),
}

impl From<tokio_postgres::Error> for TxError {
    fn from(e: tokio_postgres::Error) -> Self {
        TxError::Db(e)
    }
}

impl From<StoreError> for TxError {
    fn from(e: StoreError) -> Self {
        TxError::Abort(e)
    }
}

impl TxError {
    /// Whether the database rolled the transaction back for a reason another attempt avoids.
    pub(crate) fn retryable(&self) -> bool {
        matches!(self, TxError::Db(e) if e.code().is_some_and(|c| {
            *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
        }))
    }

    pub(crate) fn into_store(self) -> StoreError {
        match self {
            TxError::Db(e) => pg_error(e),
            TxError::Abort(e) => e,
        }
    }
}

/// The database's error as the store's (see the module doc).
pub(crate) fn pg_error(e: tokio_postgres::Error) -> StoreError {
    let Some(code) = e.code() else {
        // No SQLSTATE: the connection itself failed (refused, reset, closed).
        return StoreError::Unavailable(format!("database connection: {e}"));
    };
    let class = &code.code()[..2];
    let message = e
        .as_db_error()
        .map_or_else(|| e.to_string(), |d| d.message().to_string());
    match class {
        // Connection exception; insufficient resources (too many connections); operator
        // intervention (shutdown, cannot connect now).
        "08" | "53" | "57" => StoreError::Unavailable(format!("database: {message}")),
        "23" if *code == SqlState::UNIQUE_VIOLATION => StoreError::AlreadyExists(message),
        "23" => StoreError::Conflict(message),
        "40" => StoreError::Conflict(format!("{message} (after {MAX_ATTEMPTS} attempts)")),
        _ => StoreError::backend(e),
    }
}

/// Runs `$body` (an expression using `.await` and `?`) in a READ COMMITTED transaction on a
/// pooled connection bound to `$tx`, and commits; retries it from the start when the database
/// rolled it back on a serialization failure or deadlock. Evaluates to `Result<T>`.
macro_rules! transaction {
    ($shared:expr, |$tx:ident| $body:expr) => {{
        let shared: &$crate::postgres::Shared = $shared;
        let mut attempt = 1u32;
        loop {
            let res: ::std::result::Result<_, $crate::postgres::TxError> = async {
                let mut client = shared.client().await?;
                let $tx = client
                    .build_transaction()
                    .isolation_level(::tokio_postgres::IsolationLevel::ReadCommitted)
                    .start()
                    .await?;
                let value = $body;
                $tx.commit().await?;
                Ok(value)
            }
            .await;
            match res {
                Ok(v) => break Ok(v),
                Err(e) if e.retryable() && attempt < $crate::postgres::MAX_ATTEMPTS => {
                    // Back off a little more each time, so that the winners can finish.
                    ::tokio::time::sleep(::std::time::Duration::from_millis(
                        2u64 << attempt.min(6),
                    ))
                    .await;
                    attempt += 1;
                }
                Err(e) => break Err(e.into_store()),
            }
        }
    }};
}
pub(crate) use transaction;

/// A database `bigint` as the store's unsigned count.
pub(crate) fn unsigned(v: i64, what: &'static str) -> Result<u64> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt {
        tree: what,
        reason: format!("negative value {v}"),
    })
}

/// The store's unsigned count as a database `bigint`.
pub(crate) fn signed(v: u64, what: &str) -> Result<i64> {
    i64::try_from(v).map_err(|_| StoreError::Conflict(format!("{what}: {v} is out of range")))
}

/// The PostgreSQL store.
pub struct PgStore {
    shared: Arc<Shared>,
    blobs: PgBlobs,
    // Last: dropped after everything that may still spawn onto it.
    _bridge: Bridge,
}

impl PgStore {
    /// Connects to `url` (`postgresql://user@host/db`, or with `?host=/socket/dir`), applies
    /// the schema migrations this version carries (under an advisory lock, so several starting
    /// routers apply them once), and removes what crashed uploads left behind.
    pub fn connect(url: &str) -> Result<PgStore> {
        PgStore::connect_with(url, PgOptions::default())
    }

    /// [`PgStore::connect`] with explicit pool options.
    pub fn connect_with(url: &str, options: PgOptions) -> Result<PgStore> {
        let config: tokio_postgres::Config = url.parse().map_err(|e| {
            StoreError::Unavailable(format!("{} is not a PostgreSQL URL: {e}", redact_url(url)))
        })?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("fabd-pg")
            .enable_all()
            .build()?;
        let handle = rt.handle().clone();
        let bridge = Bridge { rt: Some(rt) };
        let manager = Manager::from_config(
            config,
            tokio_postgres::NoTls,
            ManagerConfig {
                // A broken connection shows on its next use and is replaced then; checking
                // each one before use would cost a round trip per call.
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(options.wait))
            .create_timeout(Some(options.wait))
            .build()
            .map_err(StoreError::backend)?;
        let shared = Arc::new(Shared { pool, handle });
        let s = shared.clone();
        shared.run(async move { migrate::apply(&s).await })?;
        let s = shared.clone();
        shared.run(async move { blob::sweep(&s).await })?;
        // Later sweeps: pins and uploads of a router that died expire, and nothing else would
        // remove what they kept.
        let s = Arc::downgrade(&shared);
        shared.handle.spawn(async move {
            loop {
                tokio::time::sleep(blob::SWEEP_EVERY).await;
                let Some(s) = s.upgrade() else { return };
                if let Err(e) = blob::sweep(&s).await {
                    tracing::warn!(error = %e, "sweeping unreferenced design bytes failed");
                }
            }
        });
        Ok(PgStore {
            blobs: PgBlobs::new(shared.clone()),
            shared,
            _bridge: bridge,
        })
    }

    /// The schema version the database is at (the newest applied migration).
    pub fn schema_version(&self) -> Result<i32> {
        let s = self.shared.clone();
        self.shared
            .run(async move { migrate::current_version(&s).await })
    }

    fn run<T, F>(&self, f: impl FnOnce(Arc<Shared>) -> F) -> Result<T>
    where
        F: Future<Output = Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        self.shared.run(f(self.shared.clone()))
    }
}

/// `url` without its password, for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

fn design_from_row(r: &tokio_postgres::Row) -> Result<DesignRecord> {
    Ok(DesignRecord {
        id: r.get(0),
        owner: r.get(1),
        file_name: r.get(2),
        size_bytes: unsigned(r.get(3), "designs")?,
        sha256: r.get(4),
        format: r.get(5),
        created_unix_ms: r.get(6),
        report: r.get(7),
        repaired_from: r.get(8),
    })
}

const DESIGN_COLUMNS: &str =
    "id, owner, file_name, size_bytes, sha256, format, created_unix_ms, report, repaired_from";

fn token_from_row(r: &tokio_postgres::Row) -> TokenRecord {
    TokenRecord {
        id: r.get(0),
        secret_sha256: r.get(1),
        role: r.get(2),
        principal: r.get(3),
        label: r.get(4),
        created_unix_ms: r.get(5),
    }
}

const TOKEN_COLUMNS: &str = "id, secret_sha256, role, principal, label, created_unix_ms";

impl Store for PgStore {
    fn blobs(&self) -> &dyn BlobStore {
        &self.blobs
    }

    fn put_design(&self, record: &DesignRecord, blob: &CommittedBlob) -> Result<()> {
        if record.sha256 != blob.sha256 || record.size_bytes != blob.size_bytes {
            // A caller's mistake, refused before anything is written.
            return Err(StoreError::Corrupt {
                tree: "designs",
                reason: format!(
                    "design {} names {} ({} bytes) but its blob is {} ({} bytes)",
                    record.id, record.sha256, record.size_bytes, blob.sha256, blob.size_bytes
                ),
            });
        }
        let own_pin = blob::pin_of(blob);
        let rec = record.clone();
        let size = signed(rec.size_bytes, "size_bytes")?;
        let stored = self.run(|s| async move {
            transaction!(&s, |tx| {
                // Under the blob's row lock: a concurrent delete of its last design waits,
                // then sees this reference.
                let n = tx
                    .execute(
                        "UPDATE blobs SET refs = refs + 1 WHERE sha256 = $1",
                        &[&rec.sha256],
                    )
                    .await?;
                if n == 0 {
                    return Err(StoreError::NotFound(format!("blob {}", rec.sha256)).into());
                }
                let n = tx
                    .execute(
                        "INSERT INTO designs (id, owner, file_name, size_bytes, sha256, format, \
                         created_unix_ms, report, repaired_from) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO NOTHING",
                        &[
                            &rec.id,
                            &rec.owner,
                            &rec.file_name,
                            &size,
                            &rec.sha256,
                            &rec.format,
                            &rec.created_unix_ms,
                            &rec.report,
                            &rec.repaired_from,
                        ],
                    )
                    .await?;
                if n == 0 {
                    return Err(StoreError::AlreadyExists(format!("design {}", rec.id)).into());
                }
            })
        });
        if let Err(e) = stored {
            // Bytes nothing refers to are garbage; another upload's pin on them keeps them.
            let sha = record.sha256.clone();
            let erased =
                self.run(|s| async move { blob::erase_unreferenced(&s, &sha, own_pin).await });
            if let Err(erase) = erased {
                // The sweep removes them later; the caller needs the first error.
                tracing::warn!(sha = %record.sha256, error = %erase, "unreferenced design bytes kept");
            }
            return Err(e);
        }
        Ok(())
    }

    fn get_design(&self, id: &str) -> Result<Option<DesignRecord>> {
        let id = id.to_string();
        self.run(|s| async move {
            let client = s.client().await.map_err(TxError::into_store)?;
            let row = client
                .query_opt(
                    &format!("SELECT {DESIGN_COLUMNS} FROM designs WHERE id = $1"),
                    &[&id],
                )
                .await
                .map_err(pg_error)?;
            row.as_ref().map(design_from_row).transpose()
        })
    }

    fn list_designs(
        &self,
        owner: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DesignRecord>> {
        let (owner, after) = (owner.to_string(), after.map(str::to_string));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.run(|s| async move {
            let client = s.client().await.map_err(TxError::into_store)?;
            let rows = client
                .query(
                    &format!(
                        "SELECT {DESIGN_COLUMNS} FROM designs WHERE owner = $1 \
                         AND ($2::text IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
                    ),
                    &[&owner, &after, &limit],
                )
                .await
                .map_err(pg_error)?;
            rows.iter().map(design_from_row).collect()
        })
    }

    fn delete_design(&self, id: &str) -> Result<bool> {
        let id = id.to_string();
        self.run(|s| async move {
            transaction!(&s, |tx| {
                let Some(row) = tx
                    .query_opt("DELETE FROM designs WHERE id = $1 RETURNING sha256", &[&id])
                    .await?
                else {
                    return Err(StoreError::NotFound(format!("design {id}")).into());
                };
                let sha: String = row.get(0);
                let refs: i64 = tx
                    .query_one(
                        "UPDATE blobs SET refs = refs - 1 WHERE sha256 = $1 RETURNING refs",
                        &[&sha],
                    )
                    .await?
                    .get(0);
                // Kept if an upload of the same bytes holds a pin: its design will refer to them.
                refs == 0 && blob::erase_in(&tx, &sha, None).await?
            })
        })
    }

    fn put_token(&self, token: &TokenRecord) -> Result<()> {
        let t = token.clone();
        self.run(|s| async move {
            transaction!(&s, |tx| {
                tx.execute(
                    &format!(
                        "INSERT INTO tokens ({TOKEN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6) \
                         ON CONFLICT (id) DO UPDATE SET secret_sha256 = EXCLUDED.secret_sha256, \
                         role = EXCLUDED.role, principal = EXCLUDED.principal, \
                         label = EXCLUDED.label, created_unix_ms = EXCLUDED.created_unix_ms"
                    ),
                    &[
                        &t.id,
                        &t.secret_sha256,
                        &t.role,
                        &t.principal,
                        &t.label,
                        &t.created_unix_ms,
                    ],
                )
                .await?;
            })
        })
    }

    fn token_by_secret_sha256(&self, secret_sha256: &str) -> Result<Option<TokenRecord>> {
        // Read from the database every time (an indexed lookup): a token revoked through any
        // router is refused by every other at once, with no cache to invalidate.
        let secret = secret_sha256.to_string();
        self.run(|s| async move {
            let client = s.client().await.map_err(TxError::into_store)?;
            let stmt = client
                .prepare_cached(&format!(
                    "SELECT {TOKEN_COLUMNS} FROM tokens WHERE secret_sha256 = $1"
                ))
                .await
                .map_err(pg_error)?;
            let row = client
                .query_opt(&stmt, &[&secret])
                .await
                .map_err(pg_error)?;
            Ok(row.as_ref().map(token_from_row))
        })
    }

    fn list_tokens(&self) -> Result<Vec<TokenRecord>> {
        self.run(|s| async move {
            let client = s.client().await.map_err(TxError::into_store)?;
            let rows = client
                .query(
                    &format!("SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY id"),
                    &[],
                )
                .await
                .map_err(pg_error)?;
            Ok(rows.iter().map(token_from_row).collect())
        })
    }

    fn revoke_token(&self, id: &str) -> Result<bool> {
        let id = id.to_string();
        self.run(|s| async move {
            transaction!(&s, |tx| {
                tx.execute("DELETE FROM tokens WHERE id = $1", &[&id])
                    .await?
                    > 0
            })
        })
    }

    fn create_node(&self, node: &NodeRecord) -> Result<()> {
        let n = node.clone();
        self.run(|s| async move {
            transaction!(&s, |tx| {
                let inserted = tx
                    .execute(
                        "INSERT INTO nodes (node_id, secret_sha256, label, created_unix_ms) \
                         VALUES ($1, $2, $3, $4) ON CONFLICT (node_id) DO NOTHING",
                        &[&n.node_id, &n.secret_sha256, &n.label, &n.created_unix_ms],
                    )
                    .await?;
                if inserted == 0 {
                    return Err(StoreError::AlreadyExists(format!("node {}", n.node_id)).into());
                }
            })
        })
    }

    fn get_node(&self, node_id: &str) -> Result<Option<NodeRecord>> {
        let id = node_id.to_string();
        self.run(|s| async move {
            let client = s.client().await.map_err(TxError::into_store)?;
            let row = client
                .query_opt(
                    "SELECT node_id, secret_sha256, label, created_unix_ms FROM nodes \
                     WHERE node_id = $1",
                    &[&id],
                )
                .await
                .map_err(pg_error)?;
            Ok(row.map(|r| NodeRecord {
                node_id: r.get(0),
                secret_sha256: r.get(1),
                label: r.get(2),
                created_unix_ms: r.get(3),
            }))
        })
    }

    fn create_jobs(
        &self,
        owner: &str,
        idempotency_key: &str,
        jobs: &[JobRecord],
        events: &[Vec<Vec<u8>>],
    ) -> Result<Created> {
        let args = jobs::NewJobs::new(owner, idempotency_key, jobs, events)?;
        self.run(|s| async move { jobs::create_jobs(&s, &args).await })
    }

    fn idempotency_lookup(
        &self,
        owner: &str,
        idempotency_key: &str,
    ) -> Result<Option<Vec<String>>> {
        let (owner, key) = (owner.to_string(), idempotency_key.to_string());
        self.run(|s| async move { jobs::idempotency_lookup(&s, &owner, &key).await })
    }

    fn update_job(&self, job: &JobRecord, events: &[Vec<u8>]) -> Result<()> {
        let (job, events) = (job.clone(), events.to_vec());
        self.run(|s| async move { jobs::update_job(&s, &job, &events).await })
    }

    fn get_job(&self, id: &str) -> Result<Option<JobRecord>> {
        let id = id.to_string();
        self.run(|s| async move { jobs::get_job(&s, &id).await })
    }

    fn list_jobs(&self, owner: &str, after: Option<&str>, limit: usize) -> Result<Vec<JobRecord>> {
        let (owner, after) = (owner.to_string(), after.map(str::to_string));
        self.run(|s| async move { jobs::list_jobs(&s, &owner, after.as_deref(), limit).await })
    }

    fn visit_active_jobs(&self, visit: &mut dyn FnMut(JobRecord) -> Result<()>) -> Result<()> {
        // Page by id, so a restart with many active jobs holds one page at a time.
        let mut after: Option<String> = None;
        loop {
            let from = after.clone();
            let page = self.run(|s| async move { jobs::active_page(&s, from.as_deref()).await })?;
            let full = page.len() == jobs::ACTIVE_PAGE;
            for rec in page {
                after = Some(rec.id.clone());
                visit(rec)?;
            }
            if !full {
                return Ok(());
            }
        }
    }

    fn job_events(&self, id: &str, from_seq: u64) -> Result<Vec<Vec<u8>>> {
        let id = id.to_string();
        self.run(|s| async move { jobs::job_events(&s, &id, from_seq).await })
    }

    fn put_printer(&self, name: &str, printer: &[u8]) -> Result<()> {
        let (name, printer) = (name.to_string(), printer.to_vec());
        self.run(|s| async move {
            transaction!(&s, |tx| {
                tx.execute(
                    "INSERT INTO printers (name, printer) VALUES ($1, $2) \
                     ON CONFLICT (name) DO UPDATE SET printer = EXCLUDED.printer",
                    &[&name, &printer],
                )
                .await?;
            })
        })
    }

    fn list_printers(&self) -> Result<Vec<(String, Vec<u8>)>> {
        self.run(|s| async move {
            let client = s.client().await.map_err(TxError::into_store)?;
            let rows = client
                .query("SELECT name, printer FROM printers ORDER BY name", &[])
                .await
                .map_err(pg_error)?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }

    fn cache_get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let key = key.to_string();
        self.run(|s| async move {
            let client = s.client().await.map_err(TxError::into_store)?;
            let row = client
                .query_opt("SELECT value FROM cache WHERE key = $1", &[&key])
                .await
                .map_err(pg_error)?;
            Ok(row.map(|r| r.get(0)))
        })
    }

    fn cache_put(&self, key: &str, value: &[u8]) -> Result<()> {
        let (key, value) = (key.to_string(), value.to_vec());
        self.run(|s| async move {
            transaction!(&s, |tx| {
                tx.execute(
                    "INSERT INTO cache (key, value) VALUES ($1, $2) \
                     ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                    &[&key, &value],
                )
                .await?;
            })
        })
    }

    fn flush(&self) -> Result<()> {
        // Every commit was durable when it returned (see the module doc).
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(
            redact_url("postgresql://fab:hunter2@db.example/fab"),
            "postgresql://fab:***@db.example/fab"
        );
        assert_eq!(
            redact_url("postgresql://fab@/fab?host=/run/postgresql"),
            "postgresql://fab@/fab?host=/run/postgresql"
        );
    }

    #[test]
    fn a_bad_url_is_refused_with_the_reason() {
        let e = PgStore::connect("postgresql://fab:pw@host:notaport/db")
            .err()
            .expect("refused");
        let text = e.to_string();
        assert!(text.contains("not a PostgreSQL URL"), "{text}");
        assert!(!text.contains("pw"), "{text}");
    }
}
