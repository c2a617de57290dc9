//! The router's domain core: the registry of nodes and printers, quoting, submission, the job
//! state machine and lifecycle, the node protocol's rules, leases and re-routing. It speaks
//! domain types ([`model`]) and a domain error ([`Error`]) and knows nothing of gRPC: the
//! server (`crates/server`) authenticates, converts the API's messages to and from these
//! types and maps errors to statuses.
//!
//! One [`Network`] per router. A request's life, e.g. a submission:
//!
//! 1. `submission::Network::submit` validates the key and asks `quoting` for the design and
//!    the routing request (`customer_request`: access rules, printability, location);
//! 2. `figures` gives the design's estimate per profile (memory, else the [`Catalog`]);
//! 3. the scheduler routes it on the fleet's read lock (`quoting::assign`);
//! 4. the jobs are written (`Store::create_jobs`, the idempotency key is the commit point),
//!    then entered in the registry, and assignments go to nodes;
//! 5. the caller awaits the [`Ticket`] (`durability`) before answering.
//!
//! Every later change of a job goes through `jobs::Network::change`, which holds the job's own
//! lock, takes the state machine's verdict ([`lifecycle::transition`]) and writes with no
//! other lock held.
//!
//! Locks, always in this order: a job's lock, the registry mutex (`Inner`), the fleet's
//! read-write lock; the figure cache's mutex is taken alone. None is held across an await,
//! and the store is never called with the registry mutex held ([`holds_registry_lock`]).

pub mod access;
mod durability;
mod error;
mod figures;
mod jobs;
mod leases;
pub mod lifecycle;
pub mod model;
mod moves;
mod nodes;
pub mod ports;
pub mod protocol;
mod quoting;
mod registry;
mod submission;

use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

use fabrouter_scheduler as sched;
use fabrouter_store::Store;
use tokio::sync::{broadcast, watch};

pub use durability::Ticket;
pub use error::{Error, Result};
pub use lifecycle::{Event, IllegalTransition, JobState, transition};
pub use ports::{Catalog, Codec, DesignFacts, DesignFormat, DesignKind, Estimated};
pub use quoting::{MAX_QUOTE_REASONS, rough_estimate};

use durability::{Syncer, lock_ignoring_poison};
use registry::{ActiveJob, Inner, NodeEntry, PrinterEntry};

/// Timing of the node protocol.
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkConfig {
    /// A node silent for longer is offline.
    pub lease_s: f64,
    /// A job that was printing on a node that went offline is re-routed after this grace.
    pub lost_grace_s: f64,
    /// A job is failed after this many re-routes.
    pub max_reroutes: u32,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            lease_s: 15.0,
            lost_grace_s: 60.0,
            max_reroutes: 3,
        }
    }
}

/// The printer network of one router.
pub struct Network {
    store: Arc<dyn Store>,
    codec: Arc<dyn Codec>,
    catalog: Arc<dyn Catalog>,
    inner: Mutex<Inner>,
    /// The scheduler's view of the registry. Written only with `inner` held.
    fleet: RwLock<sched::Fleet>,
    events: broadcast::Sender<model::JobEvent>,
    scheduler: sched::Scheduler,
    pub config: NetworkConfig,
    /// Set when the router shuts down: node and watch streams end so shutdown can complete.
    closing: watch::Sender<bool>,
    figures: Mutex<figures::FigureCache>,
    /// Serialises the changes of each job (see `jobs::Network::change`).
    job_locks: jobs::JobLocks,
    /// Bounds quotes (and submissions that must compute estimates) on blocking threads to one
    /// per core: more would only interleave on the cores, and each would hold a thread.
    /// Ordinary submissions route on the async workers, which are bounded already.
    routing: Arc<tokio::sync::Semaphore>,
    syncer: Syncer,
}

thread_local! {
    /// How many registry guards this thread holds (0 or 1).
    static HOLDS_REGISTRY: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// The registry mutex's guard, counted per thread so that a test can assert the store is
/// never called with it held ([`holds_registry_lock`]).
struct Registry<'a>(MutexGuard<'a, Inner>);

impl std::ops::Deref for Registry<'_> {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl std::ops::DerefMut for Registry<'_> {
    fn deref_mut(&mut self) -> &mut Inner {
        &mut self.0
    }
}

impl Drop for Registry<'_> {
    fn drop(&mut self) {
        HOLDS_REGISTRY.with(|h| h.set(h.get().saturating_sub(1)));
    }
}

/// Whether the calling thread holds a router's registry lock. The core promises never to call
/// the store (or the catalog) with it held; a store wrapper in the tests checks every call.
pub fn holds_registry_lock() -> bool {
    HOLDS_REGISTRY.with(|h| h.get() > 0)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Network {
    /// Restores printers and active jobs from the store. Every known node gets one lease from
    /// now to reconnect before its work is re-routed.
    pub fn load(
        store: Arc<dyn Store>,
        codec: Arc<dyn Codec>,
        catalog: Arc<dyn Catalog>,
        config: NetworkConfig,
    ) -> Result<Arc<Network>> {
        let mut inner = Inner::default();
        let mut fleet = sched::Fleet::default();
        let now = Instant::now();
        for (name, bytes) in store.list_printers()? {
            let printer = codec
                .decode_printer(&bytes)
                .map_err(|e| Error::Corrupt(format!("stored printer {name}: {e}")))?;
            let node = model::node_of(&name).to_string();
            let spec = printer.spec;
            if let Ok(p) =
                registry::sched_printer(&name, &node, &spec, model::PrinterState::Offline)
                && fleet.upsert(p).is_ok()
            {
                inner.extend_profiles(&spec.profiles);
                inner.nodes.entry(node.clone()).or_insert(NodeEntry {
                    conn: None,
                    last_seen: now,
                    offline: false,
                });
                inner.printers.insert(
                    Arc::from(name),
                    PrinterEntry {
                        node,
                        spec,
                        state: model::PrinterState::Offline,
                        last_seen_ms: printer.last_seen_ms,
                    },
                );
            }
        }
        store.visit_active_jobs(&mut |rec| {
            let job =
                codec
                    .decode_job(&rec.job)
                    .map_err(|e| fabrouter_store::StoreError::Corrupt {
                        tree: "jobs",
                        reason: format!("job {}: {e}", rec.id),
                    })?;
            let estimate_s = job.placement.as_ref().map_or(0.0, |p| p.print_time_s());
            inner.place_change(&mut fleet, &job.printer, &job.design, estimate_s, true);
            if job.state == JobState::Queued {
                inner.queued.insert(rec.id.clone());
            }
            let printer = inner.intern(&job.printer);
            let active = ActiveJob::of(&job, &rec, printer);
            inner.jobs.insert(rec.id, active);
            Ok(())
        })?;
        let (events, _) = broadcast::channel(4096);
        let syncer = Syncer::start(store.clone()).map_err(|e| {
            Error::Unavailable(format!("cannot start the store's flush thread: {e}"))
        })?;
        Ok(Arc::new(Network {
            store,
            codec,
            catalog,
            inner: Mutex::new(inner),
            fleet: RwLock::new(fleet),
            events,
            scheduler: sched::Scheduler::default(),
            config,
            closing: watch::channel(false).0,
            figures: Mutex::new(figures::FigureCache::default()),
            job_locks: jobs::JobLocks::new(),
            routing: Arc::new(tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            )),
            syncer,
        }))
    }

    fn lock(&self) -> Registry<'_> {
        // Every mutation is completed or not started when a panic could unwind (store first,
        // memory after), so a poisoned lock still holds consistent state.
        let guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        HOLDS_REGISTRY.with(|h| h.set(h.get() + 1));
        Registry(guard)
    }

    fn fleet(&self) -> RwLockReadGuard<'_, sched::Fleet> {
        // Fleet updates are single calls that validate before changing anything.
        self.fleet.read().unwrap_or_else(|p| p.into_inner())
    }

    fn fleet_mut(&self) -> RwLockWriteGuard<'_, sched::Fleet> {
        self.fleet.write().unwrap_or_else(|p| p.into_inner())
    }

    /// A turn at routing (see `routing`); hold it while quoting or submitting on a blocking
    /// thread.
    pub async fn routing_turn(&self) -> Result<tokio::sync::OwnedSemaphorePermit> {
        self.routing
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::Unavailable("the router is shutting down; retry".into()))
    }

    /// A ticket covering every write made so far (see [`Network::durable`]).
    pub fn ticket(&self) -> Ticket {
        self.syncer.ticket()
    }

    /// Resolves once every write made before `ticket` was taken is on disk.
    pub async fn durable(&self, ticket: Ticket) -> Result<()> {
        self.syncer.wait(ticket).await
    }

    /// Store flushes run so far and tickets handed out: their ratio is the group-commit batch.
    pub fn sync_figures(&self) -> (u64, u64) {
        let flushes = self.syncer.shared.synced.borrow().flushes;
        let tickets = lock_ignoring_poison(&self.syncer.shared.issued).tickets;
        (flushes, tickets)
    }

    /// Whether `node` holds an active job for the design with this bare id (so it may
    /// download it).
    pub fn node_holds_design(&self, node: &str, design: &str) -> bool {
        self.lock()
            .node_designs
            .get(node)
            .is_some_and(|d| d.contains_key(design))
    }

    /// Ends every node stream (nodes reconnect to the next router) and every watch.
    pub fn close(&self) {
        self.closing.send_replace(true);
        let mut inner = self.lock();
        for n in inner.nodes.values_mut() {
            if let Some(c) = n.conn.take() {
                let _ = c.tx.send(Err(protocol::Hangup(
                    "the router is shutting down; reconnect with backoff".into(),
                )));
            }
        }
    }

    /// Resolves once the router is shutting down.
    pub fn closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// Every job event as it is committed.
    pub fn subscribe(&self) -> broadcast::Receiver<model::JobEvent> {
        self.events.subscribe()
    }

    /// The registered printers, by name.
    pub fn printers(&self) -> Vec<model::Printer> {
        let inner = self.lock();
        let mut out: Vec<model::Printer> = inner
            .printers
            .iter()
            .map(|(name, p)| {
                let (work, n) = inner.queues.get(&**name).copied().unwrap_or_default();
                model::Printer {
                    name: name.to_string(),
                    spec: p.spec.clone(),
                    state: p.state,
                    last_seen_ms: p.last_seen_ms,
                    queued_work_s: work,
                    active_jobs: n,
                }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }
}
