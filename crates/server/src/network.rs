//! The printer network: the registry of nodes and printers, the durable job lifecycle, and the
//! dispatcher that turns routing decisions into assignments on node streams.
//!
//! One `Network` per router. Its state sits behind a synchronous mutex that is never held
//! across an await; every job change goes through `Network::commit`, which writes the job
//! and its new events to the store in one transaction before anyone (node or watcher) hears of
//! it. Epochs fence assignments: each (re)assignment bumps the job's epoch, and a node may only
//! report on the epoch it was given.
//!
//! The scheduler's view of the fleet has its own read-write lock, so quotes and the routing of
//! submissions run beside each other and beside job changes; whoever writes it holds the
//! registry mutex first (lock order: registry, then fleet).
//!
//! Memory holds only what routing and fencing need of an active job (`ActiveJob`); the full
//! record is read from the store when a job changes or is shown.
//!
//! Durability is a group commit (`Syncer`): a change is written under the mutex, which is then
//! released, and the caller waits for the next log flush, which one thread runs for every write
//! that arrived since the previous flush.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use fabrouter_api::names;
use fabrouter_api::v1 as pb;
use fabrouter_scheduler as sched;
use fabrouter_store::{Created, DesignRecord, JobRecord, Store};
use prost::Message;
use tokio::sync::{broadcast, mpsc, watch};
use tonic::Status;

use crate::State;
use crate::access;
use crate::designs::timestamp;
use crate::errors::{bad_request, store_status};

/// Progress events are kept in the history when the fraction moved at least this much (or the
/// layer or phase changed), so a long print does not write thousands of near-identical events.
const PROGRESS_STEP: f64 = 0.01;
/// Most rejected or lower-ranked printers a quote explains (the nearest ones): listing every
/// one of 10,000 printers would cost more than the decision and help no customer.
pub const MAX_QUOTE_REASONS: usize = 200;
/// Most idempotency key length.
const MAX_IDEMPOTENCY_KEY: usize = 128;
/// Most designs whose estimate figures are kept in memory; the store's cache backs them.
const MAX_CACHED_FIGURES: usize = 4096;
/// Under load, the flusher waits this long before a flush so that it covers more writes: one
/// log sync per batch costs the store's writer threads far less CPU than one per submit.
const GROUP_COMMIT_LINGER: Duration = Duration::from_micros(1000);

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

pub type NodeTx = mpsc::UnboundedSender<Result<pb::RouterMessage, Status>>;

/// A place in the order of writes: durable once a flush that started after it has finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[must_use = "wait with Network::durable before telling anyone the write happened"]
pub struct Ticket(u64);

/// What the flusher has made durable so far.
#[derive(Debug, Clone, Default)]
struct Synced {
    /// Every ticket up to this one is durable.
    durable: u64,
    /// The newest ticket whose flush failed, and why.
    failed: u64,
    error: Option<Arc<str>>,
    /// Flushes run (a figure for benchmarks: tickets per flush is the batch size).
    flushes: u64,
}

#[derive(Default)]
struct Issued {
    /// Tickets handed out.
    tickets: u64,
    /// The flusher sleeps on `wake` (writers wake it only then).
    idle: bool,
    /// The router is gone: flush what is left and stop.
    closed: bool,
}

struct SyncShared {
    issued: Mutex<Issued>,
    wake: Condvar,
    synced: watch::Sender<Synced>,
}

/// Group commit. Writers take a [`Ticket`] after their write and await it; one thread flushes
/// the store whenever tickets are outstanding, so every write that arrived during a flush
/// shares the next one: one log sync per batch instead of one per request. When the last flush
/// covered several writes (load), the next one lingers briefly to gather more; a lone write
/// on an idle router is flushed at once.
struct Syncer {
    shared: Arc<SyncShared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn lock_ignoring_poison<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded values are counters updated in one step: a panic cannot leave them torn.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Syncer {
    fn start(store: Arc<dyn Store>) -> std::io::Result<Syncer> {
        let shared = Arc::new(SyncShared {
            issued: Mutex::new(Issued::default()),
            wake: Condvar::new(),
            synced: watch::channel(Synced::default()).0,
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("fabd-sync".into())
            .spawn(move || Self::run(&s, store.as_ref()))?;
        Ok(Syncer {
            shared,
            thread: Some(thread),
        })
    }

    fn run(shared: &SyncShared, store: &dyn Store) {
        let mut flushed = 0;
        let mut last_batch = 0;
        loop {
            {
                let mut issued = lock_ignoring_poison(&shared.issued);
                while issued.tickets == flushed {
                    if issued.closed {
                        return;
                    }
                    issued.idle = true;
                    issued = shared.wake.wait(issued).unwrap_or_else(|p| p.into_inner());
                }
                issued.idle = false;
            }
            if last_batch > 1 {
                std::thread::sleep(GROUP_COMMIT_LINGER);
            }
            // Every ticket up to `target` was taken after its write completed, so this flush,
            // starting now, covers them all.
            let target = lock_ignoring_poison(&shared.issued).tickets;
            let res = store.flush();
            last_batch = target - flushed;
            flushed = target;
            shared.synced.send_modify(|s| {
                s.flushes += 1;
                match &res {
                    Ok(()) => s.durable = target,
                    Err(e) => {
                        s.failed = target;
                        s.error = Some(e.to_string().into());
                    }
                }
            });
            if let Err(e) = res {
                tracing::error!(error = %e, "flushing the store failed");
            }
        }
    }

    /// Call after a write whose caller must not be answered before it is durable.
    fn ticket(&self) -> Ticket {
        let mut issued = lock_ignoring_poison(&self.shared.issued);
        issued.tickets += 1;
        let t = Ticket(issued.tickets);
        let idle = issued.idle;
        drop(issued);
        if idle {
            self.shared.wake.notify_one();
        }
        t
    }

    async fn wait(&self, t: Ticket) -> Result<(), Status> {
        let mut rx = self.shared.synced.subscribe();
        let outcome = rx
            .wait_for(|s| s.durable >= t.0 || s.failed >= t.0)
            .await
            .map(|s| (s.durable >= t.0, s.error.clone()));
        match outcome {
            Ok((true, _)) => Ok(()),
            Ok((false, error)) => Err(Status::internal(format!(
                "storage failure: the change could not be made durable ({}); retry (a submit with the same idempotency key)",
                error.as_deref().unwrap_or("unknown error")
            ))),
            Err(_) => Err(Status::unavailable(
                "the router is shutting down; retry with the same idempotency key",
            )),
        }
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        lock_ignoring_poison(&self.shared.issued).closed = true;
        self.shared.wake.notify_one();
        // Joined so the store is closed when the network is gone: a restart in the same
        // process reopens the same directory at once.
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct NodeConn {
    tx: NodeTx,
    session: u64,
}

struct NodeEntry {
    conn: Option<NodeConn>,
    last_seen: Instant,
    offline: bool,
}

struct PrinterEntry {
    node: String,
    spec: pb::PrinterSpec,
    state: pb::PrinterState,
    last_seen_ms: i64,
}

/// What routing, queues and fencing need of a job that has not ended. The full job (spec,
/// placement, reasons) is in the store and read from there when the job changes.
struct ActiveJob {
    /// Printer it is assigned to or printing on (the registry's name, shared); `None` while
    /// queued.
    printer: Option<Arc<str>>,
    state: pb::JobState,
    epoch: u64,
    /// The stored record's version and newest event: the next change writes version + 1.
    version: u64,
    last_seq: u64,
    /// Progress as last stored.
    progress: f64,
    /// Estimated print time of one copy, for the queue of its printer.
    estimate_s: f64,
    /// Printing on a node that went silent: re-routed when the grace ends.
    lost_since: Option<Instant>,
    /// Printers that failed this job; never chosen again for it.
    excluded: Vec<Arc<str>>,
}

impl ActiveJob {
    fn printer(&self) -> &str {
        self.printer.as_deref().unwrap_or("")
    }

    fn on_node(&self, node: &str) -> bool {
        node_of(self.printer()) == node
    }
}

#[derive(Default)]
struct Inner {
    printers: HashMap<Arc<str>, PrinterEntry>,
    nodes: HashMap<String, NodeEntry>,
    jobs: HashMap<String, ActiveJob>,
    /// Ids of the QUEUED jobs, oldest first (ids are time-ordered).
    queued: BTreeSet<String>,
    /// Per printer: estimated seconds and count of active jobs on it.
    queues: HashMap<String, (f64, u32)>,
    /// Per node: the designs of its active jobs, with how many (a node may download those).
    node_designs: HashMap<String, HashMap<String, u32>>,
    /// Every profile some registered printer prints with (estimates are made for these).
    /// Shared so a submission takes it without copying under the lock.
    profiles: Arc<BTreeSet<String>>,
    next_session: u64,
}

impl Inner {
    /// The registry's shared copy of a printer name (a new one for a printer not registered).
    fn intern(&self, printer: &str) -> Option<Arc<str>> {
        if printer.is_empty() {
            return None;
        }
        Some(match self.printers.get_key_value(printer) {
            Some((k, _)) => k.clone(),
            None => Arc::from(printer),
        })
    }

    /// A job of `design`, `estimate_s` long, arrives on (`add`) or leaves `printer`: updates
    /// the printer's queue (here and in the fleet) and the designs its node may download.
    fn place_change(
        &mut self,
        fleet: &mut sched::Fleet,
        printer: &str,
        design: &str,
        estimate_s: f64,
        add: bool,
    ) {
        if printer.is_empty() {
            return;
        }
        if !self.queues.contains_key(printer) {
            self.queues.insert(printer.to_string(), (0.0, 0));
        }
        if let Some(q) = self.queues.get_mut(printer) {
            if add {
                q.0 += estimate_s;
                q.1 += 1;
            } else {
                q.0 = (q.0 - estimate_s).max(0.0);
                q.1 = q.1.saturating_sub(1);
            }
            let _ = fleet.set_queue(printer, q.0, q.1);
        }
        let node = node_of(printer);
        if !self.node_designs.contains_key(node) {
            self.node_designs.insert(node.to_string(), HashMap::new());
        }
        if let Some(designs) = self.node_designs.get_mut(node) {
            if add {
                match designs.get_mut(design) {
                    Some(n) => *n += 1,
                    None => {
                        designs.insert(design.to_string(), 1);
                    }
                }
            } else if let Some(n) = designs.get_mut(design) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    designs.remove(design);
                }
            }
        }
    }
}

fn extend_profiles(profiles: &mut Arc<BTreeSet<String>>, new: &[String]) {
    if new.iter().any(|p| !profiles.contains(p)) {
        Arc::make_mut(profiles).extend(new.iter().cloned());
    }
}

fn estimate_of(job: &pb::Job) -> f64 {
    job.placement
        .as_ref()
        .and_then(|p| p.estimate.as_ref())
        .map(|e| e.print_time_s)
        .unwrap_or(0.0)
}

fn job_state(job: &pb::Job) -> pb::JobState {
    pb::JobState::try_from(job.state).unwrap_or(pb::JobState::Unspecified)
}

/// The items of `items` at `picked` positions, in `picked` order (one pass over `items`).
fn pick<T>(items: impl Iterator<Item = T>, picked: &[usize]) -> Vec<T> {
    let rank: HashMap<usize, usize> = picked.iter().enumerate().map(|(r, &i)| (i, r)).collect();
    let mut out: Vec<(usize, T)> = items
        .enumerate()
        .filter_map(|(i, x)| Some((*rank.get(&i)?, x)))
        .collect();
    out.sort_unstable_by_key(|(r, _)| *r);
    out.into_iter().map(|(_, x)| x).collect()
}

/// Orders points by great-circle distance from one origin without computing the distance:
/// the haversine term grows with it, and needs one cosine and two sines per point.
struct NearnessKey {
    lat_rad: f64,
    lon_rad: f64,
    cos_lat: f64,
}

impl NearnessKey {
    fn new(origin: sched::GeoPoint) -> Self {
        let lat_rad = origin.lat_deg().to_radians();
        Self {
            lat_rad,
            lon_rad: origin.lon_deg().to_radians(),
            cos_lat: lat_rad.cos(),
        }
    }

    fn of(&self, p: &sched::GeoPoint) -> f64 {
        let lat = p.lat_deg().to_radians();
        let s_lat = ((lat - self.lat_rad) * 0.5).sin();
        let s_lon = ((p.lon_deg().to_radians() - self.lon_rad) * 0.5).sin();
        s_lat * s_lat + self.cos_lat * lat.cos() * s_lon * s_lon
    }
}

/// Positions (in `keys` order) of the `n` smallest keys, smallest first; ties by position.
/// `len` is the expected number of keys (capacity only).
fn nearest(keys: impl Iterator<Item = f64>, len: usize, n: usize) -> Vec<usize> {
    let mut all: Vec<(f64, usize)> = Vec::with_capacity(len);
    all.extend(keys.enumerate().map(|(i, k)| (k, i)));
    let cmp = |a: &(f64, usize), b: &(f64, usize)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
    if n == 0 {
        return Vec::new();
    }
    if all.len() > n {
        all.select_nth_unstable_by(n - 1, cmp);
        all.truncate(n);
    }
    all.sort_unstable_by(cmp);
    all.into_iter().map(|(_, i)| i).collect()
}

pub struct Network {
    pub state: Arc<State>,
    inner: Mutex<Inner>,
    /// The scheduler's view of the registry. Written only with `inner` held.
    fleet: RwLock<sched::Fleet>,
    events: broadcast::Sender<pb::JobEvent>,
    scheduler: sched::Scheduler,
    pub config: NetworkConfig,
    /// Set when the router shuts down: node and watch streams end so shutdown can complete.
    closing: tokio::sync::watch::Sender<bool>,
    profiles: Arc<crate::estimates::Profiles>,
    /// Estimate figures per design sha256 and profile name; `None`: no estimate on that
    /// profile. Profiles are fixed for the router's life and designs are content-addressed, so
    /// an entry never goes stale.
    figures: Mutex<HashMap<String, HashMap<String, Option<sched::EstimateFigures>>>>,
    /// Bounds quotes (and submissions that must compute estimates) on blocking threads to one
    /// per core: more would only interleave on the cores, and each would hold a thread.
    /// Ordinary submissions route on the async workers, which are bounded already.
    routing: Arc<tokio::sync::Semaphore>,
    syncer: Syncer,
}

fn now_ms() -> i64 {
    crate::auth::now_unix_ms()
}

pub fn is_terminal(state: i32) -> bool {
    matches!(
        pb::JobState::try_from(state),
        Ok(pb::JobState::Completed | pb::JobState::Failed | pb::JobState::Cancelled)
    )
}

fn technology(t: i32) -> sched::Technology {
    match pb::Technology::try_from(t) {
        Ok(pb::Technology::Resin) => sched::Technology::Resin,
        Ok(pb::Technology::Sls) => sched::Technology::Sls,
        _ => sched::Technology::Fdm,
    }
}

fn printer_state(s: pb::PrinterState) -> sched::PrinterState {
    match s {
        pb::PrinterState::Idle | pb::PrinterState::Unspecified => sched::PrinterState::Idle,
        pb::PrinterState::Printing => sched::PrinterState::Printing,
        pb::PrinterState::Paused => sched::PrinterState::Paused,
        pb::PrinterState::Offline => sched::PrinterState::Offline,
        pb::PrinterState::Maintenance => sched::PrinterState::Maintenance,
    }
}

/// The API's printer declaration as the scheduler's printer.
fn sched_printer(
    name: &str,
    node: &str,
    spec: &pb::PrinterSpec,
    state: pb::PrinterState,
) -> Result<sched::Printer, String> {
    let loc = spec
        .location
        .ok_or_else(|| format!("printer {}: location is required", spec.printer_id))?;
    let location = sched::GeoPoint::new(loc.lat_deg, loc.lon_deg)
        .map_err(|e| format!("printer {}: {e}", spec.printer_id))?;
    let price = spec.price.clone().unwrap_or_default();
    let p = sched::Printer {
        id: name.to_string(),
        node_id: node.to_string(),
        makerspace: spec.makerspace.clone(),
        technology: technology(spec.technology),
        build_volume_mm: [spec.build_x_mm, spec.build_y_mm, spec.build_z_mm],
        nozzle_diameters_mm: spec.nozzle_diameters_mm.clone(),
        materials: spec
            .materials
            .iter()
            .map(|m| sched::Material {
                kind: m.kind.clone(),
                colour: m.colour.clone(),
            })
            .collect(),
        profiles: spec.profiles.clone(),
        location,
        price: sched::PriceModel {
            per_hour: price.per_hour_minor as f64 / 100.0,
            per_gram: price.per_gram_minor as f64 / 100.0,
            setup_fee: price.setup_fee_minor as f64 / 100.0,
            currency: if price.currency.is_empty() {
                "EUR".into()
            } else {
                price.currency
            },
        },
        state: printer_state(state),
        queued_work_s: 0.0,
        active_jobs: 0,
    };
    p.validate().map_err(|e| e.to_string())?;
    Ok(p)
}

/// Time and mass of pre-sliced G-code: the slicer's own figures, else the feed-rate time and
/// the filament pushed (1.75 mm PLA at 1.24 g/cm³) as a lower bound.
fn gcode_figures(g: &pb::GcodeReport) -> sched::EstimateFigures {
    let area_mm2 = std::f64::consts::PI * 0.875 * 0.875;
    sched::EstimateFigures {
        print_time_s: if g.slicer_time_s > 0.0 {
            g.slicer_time_s
        } else {
            g.feedrate_time_s
        },
        filament_g: if g.slicer_filament_g > 0.0 {
            g.slicer_filament_g
        } else {
            g.extruded_mm * area_mm2 * 1.24e-3
        },
    }
}

/// A rough figure from the part's volume, used only for printers none of whose profiles has
/// a slice estimate: 45 % of the solid volume extruded (shells plus sparse infill), PLA
/// density, and 8 mm³/s of deposition plus 5 minutes of heating and homing.
pub fn rough_estimate(volume_mm3: f64) -> sched::EstimateFigures {
    let extruded_mm3 = volume_mm3.abs() * 0.45;
    sched::EstimateFigures {
        print_time_s: 300.0 + extruded_mm3 / 8.0,
        filament_g: extruded_mm3 / 1000.0 * 1.24,
    }
}

fn money(amount: f64, currency: &str) -> pb::Money {
    pb::Money {
        currency: currency.to_string(),
        amount_minor: (amount * 100.0).round() as i64,
    }
}

fn option_to_pb(o: &sched::RouteOption, design: &str) -> pb::QuoteOption {
    let c = &o.contributions;
    pb::QuoteOption {
        printer: o.printer_id.clone(),
        makerspace: o.makerspace.clone(),
        distance_km: o.distance_km,
        price: Some(money(o.total_price, &o.currency)),
        eta_s: o.eta_s,
        estimate: Some(pb::Estimate {
            design: design.to_string(),
            profile: o.profile.clone().unwrap_or_else(|| "rough".into()),
            print_time_s: o.estimate.print_time_s,
            filament_g: o.estimate.filament_g,
            ..Default::default()
        }),
        reasons: o.reasons.clone(),
        scores: [
            ("distance", c.distance),
            ("queue_eta", c.queue),
            ("price", c.price),
            ("load", c.load),
        ]
        .into_iter()
        .map(|(score, value)| pb::ScoreContribution {
            score: score.into(),
            value,
            weight: 0.0,
        })
        .collect(),
        total_score: o.score,
        orientation: o.orientation.describe(),
        rotation: Some(rotation(&o.orientation)),
    }
}

/// The scheduler's orientation as turns about x, y, z (what a slicer is told).
fn rotation(o: &sched::Orientation) -> pb::Rotation {
    let (x_deg, y_deg) = match o.up {
        sched::UpAxis::Z => (0.0, 0.0),
        // x up: a quarter turn about y takes the part's x axis to z.
        sched::UpAxis::X => (0.0, -90.0),
        // y up: a quarter turn about x takes the part's y axis to z.
        sched::UpAxis::Y => (90.0, 0.0),
    };
    pb::Rotation {
        x_deg,
        y_deg,
        z_deg: f64::from(o.rotation_z_deg),
    }
}

fn placement_to_pb(p: &sched::Placement, design: &str) -> pb::QuoteOption {
    pb::QuoteOption {
        printer: p.printer_id.clone(),
        makerspace: p.makerspace.clone(),
        distance_km: p.distance_km,
        price: Some(money(p.price, &p.currency)),
        eta_s: p.eta_s,
        estimate: Some(pb::Estimate {
            design: design.to_string(),
            profile: p.profile.clone().unwrap_or_else(|| "rough".into()),
            print_time_s: p.estimate.print_time_s,
            filament_g: p.estimate.filament_g,
            ..Default::default()
        }),
        reasons: p.reasons.clone(),
        orientation: p.orientation.describe(),
        rotation: Some(rotation(&p.orientation)),
        ..Default::default()
    }
}

/// `nodes/{node}/printers/{printer}` -> node id.
/// FAILED_PRECONDITION: the request is valid, but no registered printer can take it now.
fn no_printer(rejected: usize) -> Status {
    Status::failed_precondition(format!(
        "no registered printer can take this job ({rejected} rejected); QuoteJob lists each printer's reason"
    ))
}

fn node_of(printer: &str) -> &str {
    printer
        .strip_prefix("nodes/")
        .and_then(|r| r.split('/').next())
        .unwrap_or("")
}

impl Network {
    /// Restores printers and active jobs from the store. Every known node gets one lease from
    /// now to reconnect before its work is re-routed.
    pub fn load(
        state: Arc<State>,
        config: NetworkConfig,
        profiles: Arc<crate::estimates::Profiles>,
    ) -> anyhow::Result<Arc<Network>> {
        let mut inner = Inner::default();
        let mut fleet = sched::Fleet::default();
        let now = Instant::now();
        for (name, bytes) in state.store.list_printers()? {
            let printer = pb::Printer::decode(bytes.as_slice())?;
            let spec = printer.spec.unwrap_or_default();
            let node = node_of(&name).to_string();
            if let Ok(p) = sched_printer(&name, &node, &spec, pb::PrinterState::Offline) {
                fleet.upsert(p)?;
                extend_profiles(&mut inner.profiles, &spec.profiles);
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
                        state: pb::PrinterState::Offline,
                        last_seen_ms: printer
                            .last_seen_time
                            .map(|t| t.seconds * 1000)
                            .unwrap_or(0),
                    },
                );
            }
        }
        state.store.visit_active_jobs(&mut |rec| {
            let job = pb::Job::decode(rec.job.as_slice()).map_err(|e| {
                fabrouter_store::StoreError::Corrupt {
                    tree: "jobs",
                    reason: format!("job {}: {e}", rec.id),
                }
            })?;
            let estimate_s = estimate_of(&job);
            inner.place_change(&mut fleet, &job.printer, &job.design, estimate_s, true);
            let state = job_state(&job);
            if state == pb::JobState::Queued {
                inner.queued.insert(rec.id.clone());
            }
            let printer = inner.intern(&job.printer);
            inner.jobs.insert(
                rec.id,
                ActiveJob {
                    printer,
                    state,
                    epoch: job.epoch,
                    version: rec.version,
                    last_seq: rec.last_seq,
                    progress: job.progress_fraction,
                    estimate_s,
                    lost_since: None,
                    excluded: Vec::new(),
                },
            );
            Ok(())
        })?;
        let (events, _) = broadcast::channel(4096);
        let syncer = Syncer::start(state.store.clone())
            .map_err(|e| anyhow::anyhow!("cannot start the store's flush thread: {e}"))?;
        Ok(Arc::new(Network {
            state,
            inner: Mutex::new(inner),
            fleet: RwLock::new(fleet),
            events,
            scheduler: sched::Scheduler::default(),
            config,
            closing: tokio::sync::watch::channel(false).0,
            profiles,
            figures: Mutex::new(HashMap::new()),
            routing: Arc::new(tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            )),
            syncer,
        }))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every mutation is completed or not started when a panic could unwind (store first,
        // memory after), so a poisoned lock still holds consistent state.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn fleet(&self) -> RwLockReadGuard<'_, sched::Fleet> {
        // Fleet updates are single calls that validate before changing anything.
        self.fleet.read().unwrap_or_else(|p| p.into_inner())
    }

    fn fleet_mut(&self) -> RwLockWriteGuard<'_, sched::Fleet> {
        self.fleet.write().unwrap_or_else(|p| p.into_inner())
    }

    /// A turn at routing (see `routing`); hold it while quoting or submitting.
    pub async fn routing_turn(&self) -> Result<tokio::sync::OwnedSemaphorePermit, Status> {
        self.routing
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Status::unavailable("the router is shutting down; retry"))
    }

    /// A ticket covering every write made so far (see [`Network::durable`]).
    pub fn ticket(&self) -> Ticket {
        self.syncer.ticket()
    }

    /// Resolves once every write made before `ticket` was taken is on disk.
    pub async fn durable(&self, ticket: Ticket) -> Result<(), Status> {
        self.syncer.wait(ticket).await
    }

    /// Store flushes run so far and tickets handed out: their ratio is the group-commit batch.
    pub fn sync_figures(&self) -> (u64, u64) {
        let flushes = self.syncer.shared.synced.borrow().flushes;
        let tickets = lock_ignoring_poison(&self.syncer.shared.issued).tickets;
        (flushes, tickets)
    }

    /// Whether `node` holds an active job for `design` (so it may download it).
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
                let _ = c.tx.send(Err(Status::unavailable(
                    "the router is shutting down; reconnect with backoff",
                )));
            }
        }
    }

    /// Resolves once the router is shutting down.
    pub fn closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// Slice-estimates of a design for every profile some printer prints with (cached in
    /// memory and in the store; computed here otherwise). Profiles the router has no
    /// definition for, or on which the model cannot be estimated, are left out: routing then
    /// uses the rough figure.
    fn figures(
        &self,
        design: &DesignRecord,
        profiles: impl IntoIterator<Item = String>,
    ) -> HashMap<String, sched::EstimateFigures> {
        self.figures_if(design, profiles, true).unwrap_or_default()
    }

    /// [`Network::figures`]; with `may_compute` false, `None` when some figure is not in
    /// memory yet (getting it may slice the model: the caller moves to a blocking thread).
    fn figures_if(
        &self,
        design: &DesignRecord,
        profiles: impl IntoIterator<Item = String>,
        may_compute: bool,
    ) -> Option<HashMap<String, sched::EstimateFigures>> {
        let mut out = HashMap::new();
        if crate::designs::is_gcode(design) {
            // Pre-sliced G-code takes as long on any profile: its slicer's figures stand.
            let g = pb::GcodeReport::decode(design.report.as_slice()).unwrap_or_default();
            let figures = gcode_figures(&g);
            return Some(profiles.into_iter().map(|p| (p, figures)).collect());
        }
        for name in profiles {
            if out.contains_key(&name) {
                continue;
            }
            let cached = lock_ignoring_poison(&self.figures)
                .get(&design.sha256)
                .and_then(|by_profile| by_profile.get(&name).copied());
            let figures = match cached {
                Some(f) => f,
                None => {
                    let Some(profile) = self.profiles.get(&name) else {
                        continue;
                    };
                    if !may_compute {
                        return None;
                    }
                    let f = match crate::estimates::estimate_for_routing(
                        &self.state,
                        design,
                        profile,
                    ) {
                        Ok((e, _, _)) => Some(sched::EstimateFigures {
                            print_time_s: e.print_time_s,
                            filament_g: e.filament_g,
                        }),
                        // The model does not slice on this profile: that will not change.
                        Err(s) if s.code() == tonic::Code::FailedPrecondition => None,
                        // Storage trouble: try again next time.
                        Err(_) => continue,
                    };
                    let mut cache = lock_ignoring_poison(&self.figures);
                    if cache.len() >= MAX_CACHED_FIGURES && !cache.contains_key(&design.sha256) {
                        cache.clear();
                    }
                    cache
                        .entry(design.sha256.clone())
                        .or_default()
                        .insert(name.clone(), f);
                    f
                }
            };
            if let Some(f) = figures {
                out.insert(name, f);
            }
        }
        Some(out)
    }

    fn fleet_profiles(&self) -> Vec<String> {
        let profiles = self.lock().profiles.clone();
        profiles.iter().cloned().collect()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<pb::JobEvent> {
        self.events.subscribe()
    }

    /// The stored record and job of an active job.
    fn stored(&self, id: &str) -> Result<(JobRecord, pb::Job), Status> {
        let rec = self
            .state
            .store
            .get_job(id)
            .map_err(store_status)?
            .ok_or_else(|| Status::internal(format!("job {id} is active but not stored")))?;
        let job = pb::Job::decode(rec.job.as_slice())
            .map_err(|e| Status::internal(format!("stored job unreadable: {e}")))?;
        Ok((rec, job))
    }

    /// Writes a job change and its events, then updates memory, queues and watchers. `owner`
    /// is the stored record's owner.
    fn commit(
        &self,
        inner: &mut Inner,
        owner: &str,
        job: pb::Job,
        events: Vec<(pb::JobEventKind, String)>,
    ) -> Result<pb::Job, Status> {
        let id = names::parse(&job.name, "jobs").unwrap_or("").to_string();
        let Some(active) = inner.jobs.get(&id) else {
            return Err(Status::failed_precondition(format!(
                "{} is finished; it cannot change",
                job.name
            )));
        };
        let mut job = job;
        let t = now_ms();
        job.update_time = Some(timestamp(t));
        let first = active.last_seq + 1;
        let evs: Vec<pb::JobEvent> = events
            .into_iter()
            .enumerate()
            .map(|(i, (kind, message))| pb::JobEvent {
                job: job.name.clone(),
                sequence: first + i as u64,
                kind: kind as i32,
                state: job.state,
                time: Some(timestamp(t)),
                printer: job.printer.clone(),
                epoch: job.epoch,
                message,
                progress_fraction: job.progress_fraction,
                ..Default::default()
            })
            .collect();
        let rec = JobRecord {
            id: id.clone(),
            owner: owner.to_string(),
            version: active.version + 1,
            last_seq: active.last_seq + evs.len() as u64,
            active: !is_terminal(job.state),
            job: job.encode_to_vec(),
        };
        let encoded: Vec<Vec<u8>> = evs.iter().map(|e| e.encode_to_vec()).collect();
        self.state
            .store
            .update_job(&rec, &encoded)
            .map_err(store_status)?;
        let old_printer = active.printer.clone();
        let old_estimate = active.estimate_s;
        let estimate_s = estimate_of(&job);
        let moved = !rec.active
            || old_printer.as_deref().unwrap_or("") != job.printer
            || old_estimate != estimate_s;
        if moved {
            let mut fleet = self.fleet_mut();
            let old = old_printer.as_deref().unwrap_or("");
            inner.place_change(&mut fleet, old, &job.design, old_estimate, false);
            if rec.active {
                inner.place_change(&mut fleet, &job.printer, &job.design, estimate_s, true);
            }
        }
        let state = job_state(&job);
        if state == pb::JobState::Queued {
            inner.queued.insert(id.clone());
        } else {
            inner.queued.remove(&id);
        }
        if rec.active {
            let printer = if old_printer.as_deref() == Some(job.printer.as_str()) {
                old_printer
            } else {
                inner.intern(&job.printer)
            };
            if let Some(a) = inner.jobs.get_mut(&id) {
                a.printer = printer;
                a.state = state;
                a.epoch = job.epoch;
                a.version = rec.version;
                a.last_seq = rec.last_seq;
                a.progress = job.progress_fraction;
                a.estimate_s = estimate_s;
            }
        } else {
            inner.jobs.remove(&id);
        }
        for e in evs {
            let _ = self.events.send(e);
        }
        Ok(job)
    }

    fn send(inner: &Inner, node: &str, msg: pb::router_message::Msg) {
        if let Some(conn) = inner.nodes.get(node).and_then(|n| n.conn.as_ref()) {
            let _ = conn.tx.send(Ok(pb::RouterMessage { msg: Some(msg) }));
        }
    }

    fn assignment(job: &pb::Job, design: &DesignRecord) -> pb::router_message::Msg {
        let spec = job.spec.clone().unwrap_or_default();
        let profile = job
            .placement
            .as_ref()
            .and_then(|p| p.estimate.as_ref())
            .map(|e| e.profile.clone())
            .unwrap_or_default();
        pb::router_message::Msg::Assignment(pb::JobAssignment {
            job: job.name.clone(),
            epoch: job.epoch,
            printer_id: job
                .printer
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_string(),
            design: job.design.clone(),
            format: design.format,
            profile,
            design_sha256: design.sha256.clone(),
            material: spec.material,
            rotation: job.placement.as_ref().and_then(|p| p.rotation),
        })
    }

    fn design_of(&self, job: &pb::Job) -> Result<DesignRecord, Status> {
        let id = names::parse(&job.design, "designs").unwrap_or("");
        self.state
            .store
            .get_design(id)
            .map_err(store_status)?
            .ok_or_else(|| Status::failed_precondition(format!("{} no longer exists", job.design)))
    }

    /// The routing request for a design and a job spec.
    fn request(
        &self,
        design: &DesignRecord,
        spec: &pb::JobSpec,
        customer: sched::GeoPoint,
        key: &str,
    ) -> Result<sched::JobRequest, Status> {
        let (extent, rough, pre_sliced) = if crate::designs::is_gcode(design) {
            let g = pb::GcodeReport::decode(design.report.as_slice()).unwrap_or_default();
            let max = g.print_max_mm.unwrap_or_default();
            // G-code places the part at absolute bed coordinates: the bed must reach as far as
            // the farthest extrusion (less the margin printers have beyond their nominal bed).
            let reach = |v: f64| (v - fabrouter_gcode::BED_MARGIN_MM).max(0.1);
            (
                [reach(max.x), reach(max.y), max.z.max(0.1)],
                gcode_figures(&g),
                true,
            )
        } else {
            let report = pb::MeshReport::decode(design.report.as_slice()).unwrap_or_default();
            let e = report.extent_mm.unwrap_or_default();
            ([e.x, e.y, e.z], rough_estimate(report.volume_mm3), false)
        };
        let gcode_material = || {
            pb::GcodeReport::decode(design.report.as_slice())
                .ok()
                .filter(|g| pre_sliced && !g.filament_type.is_empty())
                .map(|g| sched::MaterialRequest {
                    kind: g.filament_type,
                    colour: None,
                })
        };
        let req = sched::JobRequest {
            job_key: key.to_string(),
            part_extent_mm: extent,
            pre_sliced,
            technology: technology(spec.technology),
            material: spec
                .material
                .as_ref()
                .filter(|m| !m.kind.is_empty())
                .map(|m| sched::MaterialRequest {
                    kind: m.kind.clone(),
                    colour: (!m.colour.is_empty()).then(|| m.colour.clone()),
                })
                // Pre-sliced G-code was made for one material; unasked, that is the one.
                .or_else(gcode_material),
            nozzle_mm: (spec.nozzle_mm > 0.0).then_some(spec.nozzle_mm),
            customer,
            max_distance_km: (spec.max_distance_km > 0.0).then_some(spec.max_distance_km),
            quantity: spec.quantity.max(1),
            fallback_estimate: Some(rough),
        };
        req.validate()
            .map_err(|e| bad_request("spec", e.to_string()))?;
        Ok(req)
    }

    /// Validates a spec from a customer and returns the design and routing request.
    fn customer_request(
        &self,
        who: &crate::auth::Principal,
        spec: &pb::JobSpec,
        key: &str,
    ) -> Result<(DesignRecord, sched::JobRequest), Status> {
        let design = crate::designs::Designs {
            state: self.state.clone(),
            net: None,
        }
        .design(who, &spec.design, access::DesignUse::Read)?;
        if !crate::designs::is_gcode(&design)
            && let Ok(report) = pb::MeshReport::decode(design.report.as_slice())
            && report.verdict == pb::Verdict::NotPrintable as i32
        {
            return Err(Status::failed_precondition(format!(
                "{} is not printable ({}); repair it first (RepairDesign)",
                spec.design,
                report
                    .findings
                    .iter()
                    .find(|f| f.severity == pb::Severity::Error as i32)
                    .map(|f| f.message.as_str())
                    .unwrap_or("see its mesh report")
            )));
        }
        let loc = spec.customer_location.ok_or_else(|| {
            bad_request(
                "spec.customer_location",
                "a customer location is needed to find the nearest printer (it is stored only as a ~1 km cell)",
            )
        })?;
        let customer = sched::GeoPoint::new(loc.lat_deg, loc.lon_deg)
            .map_err(|e| bad_request("spec.customer_location", e.to_string()))?;
        let req = self.request(&design, spec, customer, key)?;
        Ok((design, req))
    }

    pub fn quote(
        &self,
        who: &crate::auth::Principal,
        req: &pb::QuoteJobRequest,
    ) -> Result<pb::Quote, Status> {
        let spec = req
            .spec
            .clone()
            .ok_or_else(|| bad_request("spec", "spec is required"))?;
        let (design, request) = self.customer_request(who, &spec, &spec.design)?;
        let top = if req.max_options == 0 {
            3
        } else {
            req.max_options.min(20)
        } as usize;
        let figures = self.figures(&design, self.fleet_profiles());
        let fleet = self.fleet();
        let estimator = |p: &str| figures.get(p).copied();
        let decision = self
            .scheduler
            .quote(&request, &fleet, &estimator, top)
            .map_err(|e| bad_request("spec", e.to_string()))?;
        // The nearest printers' reasons are the ones a customer asks about; only those are
        // picked (a partial selection, not a sort of the fleet) and formatted.
        let near = NearnessKey::new(request.customer);
        let picked = nearest(
            decision.rejections().map(|r| near.of(&r.printer.location)),
            decision.rejected(),
            MAX_QUOTE_REASONS,
        );
        let mut rejections: Vec<pb::Rejection> = pick(decision.rejections(), &picked)
            .into_iter()
            .map(|r| pb::Rejection {
                printer: r.printer_id().to_string(),
                code: r.code().as_str().to_ascii_lowercase(),
                message: r.message(),
            })
            .collect();
        if let Some(top) = decision.options.first() {
            let lower = decision.capable() - decision.options.len();
            let picked = nearest(
                decision
                    .ranked_lower()
                    .map(|r| near.of(&r.printer.location)),
                lower,
                MAX_QUOTE_REASONS,
            );
            rejections.extend(pick(decision.ranked_lower(), &picked).into_iter().map(|r| {
                pb::Rejection {
                    printer: r.printer_id().to_string(),
                    code: "ranked_lower".into(),
                    message: r.reason_vs(top),
                }
            }));
        }
        let design_name = names::design(&design.id);
        let online = fleet
            .printers()
            .iter()
            .filter(|p| p.state.accepts_jobs())
            .count();
        Ok(pb::Quote {
            printers_registered: fleet.len() as u32,
            printers_online: online as u32,
            printers_rejected: decision.rejected() as u32,
            options: decision
                .options
                .iter()
                .map(|o| option_to_pb(o, &design_name))
                .collect(),
            rejections,
            coarse_geohash: sched::coarse_location(request.customer)
                .map(|c| c.as_str().to_string())
                .unwrap_or_default(),
        })
    }

    /// Routes a request on the fleet as it is now (read lock only).
    fn assign<E: sched::Estimator>(
        &self,
        request: &sched::JobRequest,
        estimator: &E,
        chosen: Option<&str>,
    ) -> Result<sched::Assignment, Status> {
        let assignment = self
            .scheduler
            .assign(request, &self.fleet(), estimator, chosen)
            .map_err(|e| match e {
                sched::SchedulerError::UnknownPrinter(_)
                | sched::SchedulerError::ChosenPrinterRejected { .. } => {
                    Status::failed_precondition(e.to_string())
                }
                // The request is well formed; the fleet cannot take it now.
                sched::SchedulerError::NoCapablePrinter { rejected } => no_printer(rejected),
                other => bad_request("spec", other.to_string()),
            })?;
        if assignment.placements.is_empty() {
            return Err(no_printer(assignment.rejected));
        }
        Ok(assignment)
    }

    /// Whether every placement's printer still takes jobs.
    fn placements_open(&self, assignment: &sched::Assignment) -> bool {
        let fleet = self.fleet();
        assignment.placements.iter().all(|p| {
            fleet
                .get(&p.printer_id)
                .is_some_and(|x| x.state.accepts_jobs())
        })
    }

    /// Stores a submission and routes it. The caller must await the returned ticket
    /// ([`Network::durable`]) before answering: the jobs are acknowledged only once on disk.
    /// With `may_block` false, returns `Ok(None)` before changing anything when the design's
    /// estimates are not in memory yet (computing them may take seconds): call again from a
    /// blocking thread.
    pub fn submit(
        &self,
        who: &crate::auth::Principal,
        req: &pb::SubmitJobRequest,
        may_block: bool,
    ) -> Result<Option<(pb::SubmitJobResponse, Ticket)>, Status> {
        let key = req.idempotency_key.trim();
        if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY {
            return Err(bad_request(
                "idempotency_key",
                format!(
                    "an idempotency key of 1-{MAX_IDEMPOTENCY_KEY} characters is required (e.g. a UUID), so a retry cannot print twice"
                ),
            ));
        }
        // A replay is found by `create_jobs` when it would store the jobs (its commit point is
        // the key): looking the key up here too would cost every submit a second store read.
        // Where routing cannot go on (an error, or estimates still to compute), the key is
        // looked up then, so a retry still gets its jobs.
        let Some(mut spec) = req.spec.clone() else {
            return self.replay_or(who, key, bad_request("spec", "spec is required"));
        };
        let (design, request) = match self.customer_request(who, &spec, key) {
            Ok(found) => found,
            Err(e) => return self.replay_or(who, key, e),
        };
        let coarse = sched::coarse_location(request.customer)
            .map(|c| c.as_str().to_string())
            .unwrap_or_default();
        // Privacy: the exact point served the decision; only the ~1 km cell is kept.
        spec.customer_location = None;
        spec.quantity = request.quantity;
        let chosen = (!req.printer.is_empty()).then_some(req.printer.as_str());
        let Some(figures) = self.figures_if(&design, self.fleet_profiles(), may_block) else {
            // Computing them may take seconds; a retry of a stored submit need not wait.
            return self.replay(who, key);
        };
        let estimator = |p: &str| figures.get(p).copied();
        // Routing and encoding happen before the registry lock: concurrent submissions route
        // side by side. Queues they add meanwhile are not seen, which only shifts the balance.
        let design_name = names::design(&design.id);
        let assignment = match self.assign(&request, &estimator, chosen) {
            Ok(a) => a,
            Err(e) => return self.replay_or(who, key, e),
        };
        let mut new = NewJobs::build(who, &assignment, &design_name, &coarse, &spec);
        let mut inner = self.lock();
        // A printer that stopped taking jobs since (its node's lease ran out) would keep the
        // job until the node returns: route again, now that nothing can change.
        if !self.placements_open(&assignment) {
            let assignment = match self.assign(&request, &estimator, chosen) {
                Ok(a) => a,
                Err(e) => {
                    drop(inner);
                    return self.replay_or(who, key, e);
                }
            };
            new = NewJobs::build(who, &assignment, &design_name, &coarse, &spec);
        }
        let created = self
            .state
            .store
            .create_jobs(&who.id, key, &new.recs, &new.encoded)
            .map_err(store_status)?;
        let ticket = self.ticket();
        if let Created::Replayed(_) = created {
            drop(inner);
            let jobs = self.replayed(&who.id, key)?.unwrap_or_default();
            return Ok(Some((
                pb::SubmitJobResponse {
                    jobs,
                    replayed: true,
                },
                ticket,
            )));
        }
        {
            let mut fleet = self.fleet_mut();
            for (job, estimate_s) in &new.jobs {
                inner.place_change(&mut fleet, &job.printer, &design_name, *estimate_s, true);
            }
        }
        let mut out = Vec::with_capacity(new.jobs.len());
        for ((rec, (job, estimate_s)), evs) in new.recs.into_iter().zip(new.jobs).zip(new.events) {
            let printer = inner.intern(&job.printer);
            inner.jobs.insert(
                rec.id,
                ActiveJob {
                    printer,
                    state: pb::JobState::Assigned,
                    epoch: job.epoch,
                    version: rec.version,
                    last_seq: rec.last_seq,
                    progress: 0.0,
                    estimate_s,
                    lost_since: None,
                    excluded: Vec::new(),
                },
            );
            Self::send(
                &inner,
                node_of(&job.printer),
                Self::assignment(&job, &design),
            );
            for e in evs {
                let _ = self.events.send(e);
            }
            out.push(job);
        }
        drop(inner);
        tracing::debug!(jobs = out.len(), design = %design_name, "jobs submitted");
        Ok(Some((
            pb::SubmitJobResponse {
                jobs: out,
                replayed: false,
            },
            ticket,
        )))
    }

    /// The jobs an earlier submit with `key` made, as a replay, if there was one. The ticket
    /// covers jobs whose submit is still waiting for its flush.
    fn replay(
        &self,
        who: &crate::auth::Principal,
        key: &str,
    ) -> Result<Option<(pb::SubmitJobResponse, Ticket)>, Status> {
        Ok(self.replayed(&who.id, key)?.map(|jobs| {
            (
                pb::SubmitJobResponse {
                    jobs,
                    replayed: true,
                },
                self.ticket(),
            )
        }))
    }

    /// [`Network::replay`], or `err` when `key` is new.
    fn replay_or(
        &self,
        who: &crate::auth::Principal,
        key: &str,
        err: Status,
    ) -> Result<Option<(pb::SubmitJobResponse, Ticket)>, Status> {
        match self.replay(who, key)? {
            Some(replay) => Ok(Some(replay)),
            None => Err(err),
        }
    }

    fn replayed(&self, owner: &str, key: &str) -> Result<Option<Vec<pb::Job>>, Status> {
        match self
            .state
            .store
            .idempotency_lookup(owner, key)
            .map_err(store_status)?
        {
            None => Ok(None),
            Some(ids) => {
                let mut jobs = Vec::new();
                for id in ids {
                    if let Some(j) = self.load_job(&id)? {
                        jobs.push(j);
                    }
                }
                Ok(Some(jobs))
            }
        }
    }

    pub fn load_job(&self, id: &str) -> Result<Option<pb::Job>, Status> {
        self.state
            .store
            .get_job(id)
            .map_err(store_status)?
            .map(|r| {
                pb::Job::decode(r.job.as_slice())
                    .map_err(|e| Status::internal(format!("stored job unreadable: {e}")))
            })
            .transpose()
    }

    /// Loads a job for `use_`, if the access rules let the caller do that to it.
    pub fn job_for(
        &self,
        who: &crate::auth::Principal,
        name: &str,
        use_: access::JobUse,
    ) -> Result<(String, pb::Job), Status> {
        let id = names::parse(name, "jobs").ok_or_else(|| {
            bad_request(
                "name",
                format!("{name:?} is not a job name like jobs/{{id}}"),
            )
        })?;
        let rec = self.state.store.get_job(id).map_err(store_status)?;
        access::job(who, use_, name, rec.as_ref().map(|r| r.owner.as_str()))
            .map_err(crate::errors::denied)?;
        // The rules grant nothing on a missing job; this only unwraps.
        let rec = rec.ok_or_else(|| Status::not_found(format!("{name} not found")))?;
        let job = pb::Job::decode(rec.job.as_slice())
            .map_err(|e| Status::internal(format!("stored job unreadable: {e}")))?;
        Ok((id.to_string(), job))
    }

    /// Cancels a job; answers once the cancellation is durable, and only then tells its node
    /// (a crash in between must not bring back a job its node already dropped). The node is
    /// told even if the caller goes away while waiting.
    pub async fn cancel(
        self: &Arc<Self>,
        who: &crate::auth::Principal,
        req: &pb::CancelJobRequest,
    ) -> Result<pb::Job, Status> {
        let (job, ticket, notice) = self.cancel_stored(who, req)?;
        let net = self.clone();
        tokio::spawn(async move {
            net.durable(ticket).await?;
            if let Some((node, msg)) = notice {
                Self::send(&net.lock(), &node, msg);
            }
            Ok::<_, Status>(())
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))??;
        Ok(job)
    }

    #[allow(clippy::type_complexity)]
    fn cancel_stored(
        &self,
        who: &crate::auth::Principal,
        req: &pb::CancelJobRequest,
    ) -> Result<(pb::Job, Ticket, Option<(String, pb::router_message::Msg)>), Status> {
        let (id, _) = self.job_for(who, &req.name, access::JobUse::Cancel)?;
        let mut inner = self.lock();
        if !inner.jobs.contains_key(&id) {
            let job = self.load_job(&id)?.unwrap_or_default();
            let state = job_state(&job).as_str_name();
            return Err(Status::failed_precondition(format!(
                "{} already ended ({state}); nothing to cancel",
                req.name
            )));
        }
        let (rec, mut job) = self.stored(&id)?;
        let (printer, epoch) = (job.printer.clone(), job.epoch);
        job.state = pb::JobState::Cancelled as i32;
        let reason = if req.reason.is_empty() {
            "cancelled by the customer".to_string()
        } else {
            req.reason.clone()
        };
        job.failure_reason = reason.clone();
        let job = self.commit(
            &mut inner,
            &rec.owner,
            job,
            vec![(pb::JobEventKind::Cancelled, reason.clone())],
        )?;
        let ticket = self.ticket();
        let notice = (!printer.is_empty()).then(|| {
            (
                node_of(&printer).to_string(),
                pb::router_message::Msg::Cancel(pb::JobCancel {
                    job: job.name.clone(),
                    epoch,
                    reason,
                }),
            )
        });
        Ok((job, ticket, notice))
    }

    /// Moves a job off its printer: to another capable printer, to the queue if none, or to
    /// FAILED after too many re-routes. Called with the lock held.
    fn reroute(&self, inner: &mut Inner, id: &str, why: &str, exclude_current: bool) {
        let Some(active) = inner.jobs.get_mut(id) else {
            return;
        };
        let old = active.printer.clone();
        if exclude_current
            && let Some(p) = &old
            && !active.excluded.contains(p)
        {
            active.excluded.push(p.clone());
        }
        let excluded = active.excluded.clone();
        let (rec, mut job) = match self.stored(id) {
            Ok(x) => x,
            Err(e) => {
                tracing::error!(job = id, error = %e, "re-route could not read the job");
                return;
            }
        };
        let old_epoch = job.epoch;
        job.epoch += 1;
        job.reroutes += 1;
        job.progress_fraction = 0.0;
        let mut events = vec![(pb::JobEventKind::Rerouted, why.to_string())];
        if job.reroutes > self.config.max_reroutes {
            job.state = pb::JobState::Failed as i32;
            job.printer = String::new();
            job.failure_reason = format!(
                "{why}; gave up after {} re-routes",
                self.config.max_reroutes
            );
            events.push((pb::JobEventKind::Failed, job.failure_reason.clone()));
        } else {
            match self.place(inner, &job, &excluded) {
                Some((printer, option)) => {
                    job.state = pb::JobState::Assigned as i32;
                    events.push((
                        pb::JobEventKind::Assigned,
                        format!(
                            "re-routed to {}: {}",
                            option.makerspace,
                            option.reasons.join("; ")
                        ),
                    ));
                    job.printer = printer;
                    job.placement = Some(option);
                }
                None => {
                    job.state = pb::JobState::Queued as i32;
                    job.printer = String::new();
                    events.push((
                        pb::JobEventKind::Rerouted,
                        "no capable printer is online; waiting for one".into(),
                    ));
                }
            }
        }
        if let Some(a) = inner.jobs.get_mut(id) {
            a.lost_since = None;
        }
        match self.commit(inner, &rec.owner, job, events) {
            Ok(job) => {
                if let Some(old) = old {
                    Self::send(
                        inner,
                        node_of(&old),
                        pb::router_message::Msg::Cancel(pb::JobCancel {
                            job: job.name.clone(),
                            epoch: old_epoch,
                            reason: format!("re-routed: {why}"),
                        }),
                    );
                }
                self.dispatch(inner, &job);
            }
            Err(e) => tracing::error!(job = id, error = %e, "re-route could not be stored"),
        }
    }

    /// Best printer for an existing job, skipping `excluded`.
    fn place(
        &self,
        inner: &Inner,
        job: &pb::Job,
        excluded: &[Arc<str>],
    ) -> Option<(String, pb::QuoteOption)> {
        let design = self.design_of(job).ok()?;
        let spec = job.spec.clone().unwrap_or_default();
        // Only the coarse cell was kept; its centre is within ~1 km of the customer.
        let centre = sched::CoarseLocation::parse(&job.coarse_geohash)
            .and_then(|c| c.centre())
            .ok()?;
        let mut spec1 = spec;
        spec1.quantity = 1;
        let request = self.request(&design, &spec1, centre, &job.name).ok()?;
        let figures = self.figures(&design, inner.profiles.iter().cloned());
        let estimator = |p: &str| figures.get(p).copied();
        let fleet = self.fleet();
        let decision = self
            .scheduler
            .quote(&request, &fleet, &estimator, excluded.len() + 1)
            .ok()?;
        let name = job.design.clone();
        decision
            .options
            .iter()
            .find(|o| !excluded.iter().any(|x| **x == *o.printer_id))
            .map(|o| (o.printer_id.clone(), option_to_pb(o, &name)))
    }

    /// Sends an assigned job to its node if the node is connected.
    fn dispatch(&self, inner: &Inner, job: &pb::Job) {
        if job.state != pb::JobState::Assigned as i32 || job.printer.is_empty() {
            return;
        }
        if let Ok(design) = self.design_of(job) {
            Self::send(inner, node_of(&job.printer), Self::assignment(job, &design));
        }
    }

    /// Tries to place every QUEUED job (after printers changed).
    fn place_queued(&self, inner: &mut Inner) {
        let queued: Vec<String> = inner.queued.iter().cloned().collect();
        for id in queued {
            let Some(a) = inner.jobs.get(&id) else {
                continue;
            };
            let excluded = a.excluded.clone();
            let (rec, job) = match self.stored(&id) {
                Ok(x) => x,
                Err(e) => {
                    tracing::error!(job = %id, error = %e, "a queued job could not be read");
                    continue;
                }
            };
            if let Some((printer, option)) = self.place(inner, &job, &excluded) {
                let mut job = job;
                job.state = pb::JobState::Assigned as i32;
                job.epoch += 1;
                job.printer = printer;
                let msg = format!(
                    "assigned to {}: {}",
                    option.makerspace,
                    option.reasons.join("; ")
                );
                job.placement = Some(option);
                match self.commit(
                    inner,
                    &rec.owner,
                    job,
                    vec![(pb::JobEventKind::Assigned, msg)],
                ) {
                    Ok(job) => self.dispatch(inner, &job),
                    Err(e) => tracing::error!(job = %id, error = %e, "placing a queued job failed"),
                }
            }
        }
    }

    /// A node opened its stream: registers its printers and reconciles what it holds.
    pub fn node_connected(
        &self,
        node: &str,
        hello: &pb::NodeHello,
        tx: NodeTx,
    ) -> Result<u64, Status> {
        let mut declared = Vec::new();
        for spec in &hello.printers {
            if spec.printer_id.is_empty()
                || !spec
                    .printer_id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(bad_request(
                    "hello.printers.printer_id",
                    format!(
                        "printer id {:?} must be letters, digits, - or _",
                        spec.printer_id
                    ),
                ));
            }
            let name = names::printer(node, &spec.printer_id);
            let p = sched_printer(&name, node, spec, pb::PrinterState::Idle)
                .map_err(|e| bad_request("hello.printers", e))?;
            declared.push((name, spec.clone(), p));
        }
        let mut inner = self.lock();
        inner.next_session += 1;
        let session = inner.next_session;
        let t = now_ms();
        {
            let mut fleet = self.fleet_mut();
            for (name, spec, p) in declared {
                let stored = pb::Printer {
                    name: name.clone(),
                    spec: Some(spec.clone()),
                    state: pb::PrinterState::Idle as i32,
                    last_seen_time: Some(timestamp(t)),
                    queued_work_s: 0.0,
                    active_jobs: 0,
                };
                self.state
                    .store
                    .put_printer(&name, &stored.encode_to_vec())
                    .map_err(store_status)?;
                fleet
                    .upsert(p)
                    .map_err(|e| bad_request("hello.printers", e.to_string()))?;
                extend_profiles(&mut inner.profiles, &spec.profiles);
                let (work, n) = inner.queues.get(&name).copied().unwrap_or_default();
                let _ = fleet.set_queue(&name, work, n);
                inner.printers.insert(
                    Arc::from(name),
                    PrinterEntry {
                        node: node.to_string(),
                        spec,
                        state: pb::PrinterState::Idle,
                        last_seen_ms: t,
                    },
                );
            }
        }
        inner.nodes.insert(
            node.to_string(),
            NodeEntry {
                conn: Some(NodeConn {
                    tx: tx.clone(),
                    session,
                }),
                last_seen: Instant::now(),
                offline: false,
            },
        );
        let _ = tx.send(Ok(pb::RouterMessage {
            msg: Some(pb::router_message::Msg::Welcome(pb::Welcome {
                node_id: node.to_string(),
                lease_s: self.config.lease_s,
                heartbeat_interval_s: self.config.lease_s / 3.0,
            })),
        }));
        // Reconcile: what the node holds vs what the router believes.
        let held: HashMap<String, u64> = hello
            .held_jobs
            .iter()
            .map(|h| (h.job.clone(), h.epoch))
            .collect();
        for h in &hello.held_jobs {
            let current = names::parse(&h.job, "jobs")
                .and_then(|id| inner.jobs.get(id))
                .filter(|a| a.on_node(node) && a.epoch == h.epoch);
            if current.is_none() {
                let _ = tx.send(Ok(pb::RouterMessage {
                    msg: Some(pb::router_message::Msg::Fenced(pb::Fenced {
                        job: h.job.clone(),
                        epoch: h.epoch,
                        reason: "this assignment was moved elsewhere or ended while the node was away; stop it".into(),
                    })),
                }));
            }
        }
        let mine: Vec<String> = inner
            .jobs
            .iter()
            .filter(|(_, a)| a.on_node(node))
            .map(|(id, _)| id.clone())
            .collect();
        for id in mine {
            let Some(a) = inner.jobs.get_mut(&id) else {
                continue;
            };
            let holds = held.get(&names::job(&id)) == Some(&a.epoch);
            if holds {
                a.lost_since = None;
                continue;
            }
            if a.state == pb::JobState::Printing {
                // The node no longer knows a print it was running: that print is lost.
                self.reroute(
                    &mut inner,
                    &id,
                    "the node restarted and no longer holds this print",
                    false,
                );
            } else {
                match self.stored(&id) {
                    Ok((_, job)) => self.dispatch(&inner, &job),
                    Err(e) => tracing::error!(job = %id, error = %e, "cannot resend a job"),
                }
            }
        }
        self.place_queued(&mut inner);
        tracing::info!(
            node,
            session,
            printers = hello.printers.len(),
            "node connected"
        );
        Ok(session)
    }

    /// The node's stream ended; the lease decides when it counts as offline.
    pub fn node_disconnected(&self, node: &str, session: u64) {
        let mut inner = self.lock();
        if let Some(n) = inner.nodes.get_mut(node)
            && n.conn.as_ref().is_some_and(|c| c.session == session)
        {
            n.conn = None;
            tracing::info!(node, "node stream closed");
        }
    }

    /// One message from a node.
    pub fn node_message(&self, node: &str, session: u64, msg: pb::node_message::Msg) {
        let mut inner = self.lock();
        let Some(entry) = inner.nodes.get_mut(node) else {
            return;
        };
        if entry.conn.as_ref().map(|c| c.session) != Some(session) {
            return; // an old stream of a node that reconnected
        }
        entry.last_seen = Instant::now();
        use pb::node_message::Msg;
        match msg {
            Msg::Hello(_) => {}
            Msg::Heartbeat(_) => {}
            Msg::PrinterStatus(s) => {
                let name = names::printer(node, &s.printer_id);
                let state = pb::PrinterState::try_from(s.state).unwrap_or(pb::PrinterState::Idle);
                let mut opened = false;
                if let Some(p) = inner.printers.get_mut(name.as_str()) {
                    opened = !printer_state(p.state).accepts_jobs()
                        && printer_state(state).accepts_jobs();
                    p.state = state;
                    p.last_seen_ms = now_ms();
                    let _ = self.fleet_mut().set_state(&name, printer_state(state));
                }
                // A printer back from offline or maintenance can take what waits in the queue.
                if opened && !inner.queued.is_empty() {
                    self.place_queued(&mut inner);
                }
            }
            Msg::Ack(ack) => {
                if !ack.accepted
                    && let Some(id) = self.fenced(&mut inner, node, &ack.job, ack.epoch)
                {
                    let why = format!("the node declined: {}", ack.reason);
                    self.reroute(&mut inner, &id, &why, true);
                }
            }
            Msg::Progress(p) => {
                let Some(id) = self.fenced(&mut inner, node, &p.job, p.epoch) else {
                    return;
                };
                let Some(a) = inner.jobs.get(&id) else { return };
                let starts = a.state == pb::JobState::Assigned;
                let moved = (p.fraction - a.progress).abs() >= PROGRESS_STEP || p.fraction >= 1.0;
                if !(starts || moved) {
                    return; // nothing worth a write
                }
                let (rec, mut job) = match self.stored(&id) {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(job = %id, error = %e, "progress not stored");
                        return;
                    }
                };
                let mut events = Vec::new();
                if starts {
                    job.state = pb::JobState::Printing as i32;
                    events.push((pb::JobEventKind::Started, "printing started".to_string()));
                }
                job.progress_fraction = p.fraction.clamp(0.0, 1.0);
                events.push((
                    pb::JobEventKind::Progress,
                    format!(
                        "{:.0}% {} layer {}/{} {:.0} s left",
                        p.fraction * 100.0,
                        p.phase,
                        p.layer,
                        p.layers_total,
                        p.remaining_s
                    ),
                ));
                if let Err(e) = self.commit(&mut inner, &rec.owner, job, events) {
                    tracing::warn!(job = %id, error = %e, "progress not stored");
                }
            }
            Msg::Result(r) => {
                let Some(id) = self.fenced(&mut inner, node, &r.job, r.epoch) else {
                    return;
                };
                if r.success || !r.printer_fault {
                    let (rec, mut job) = match self.stored(&id) {
                        Ok(x) => x,
                        Err(e) => {
                            tracing::error!(job = %id, error = %e, "result not stored");
                            return;
                        }
                    };
                    let res = if r.success {
                        job.state = pb::JobState::Completed as i32;
                        job.progress_fraction = 1.0;
                        self.commit(
                            &mut inner,
                            &rec.owner,
                            job,
                            vec![(pb::JobEventKind::Completed, "print completed".into())],
                        )
                    } else {
                        job.state = pb::JobState::Failed as i32;
                        job.failure_reason = r.reason.clone();
                        self.commit(
                            &mut inner,
                            &rec.owner,
                            job,
                            vec![(pb::JobEventKind::Failed, r.reason)],
                        )
                    };
                    if let Err(e) = res {
                        tracing::error!(job = %id, error = %e, "result not stored");
                    }
                } else {
                    let why = format!("printer failed: {}", r.reason);
                    self.reroute(&mut inner, &id, &why, true);
                }
                self.place_queued(&mut inner);
            }
        }
    }

    /// The job id if `node` holds the current epoch of it; otherwise tells the node it is
    /// fenced and returns `None`.
    fn fenced(&self, inner: &mut Inner, node: &str, job: &str, epoch: u64) -> Option<String> {
        let id = names::parse(job, "jobs")?.to_string();
        let ok = inner
            .jobs
            .get(&id)
            .is_some_and(|a| a.epoch == epoch && a.on_node(node));
        if ok {
            return Some(id);
        }
        tracing::info!(node, job, epoch, "fenced a stale report");
        Self::send(
            inner,
            node,
            pb::router_message::Msg::Fenced(pb::Fenced {
                job: job.to_string(),
                epoch,
                reason: "this assignment is no longer yours (re-routed, cancelled or finished)"
                    .into(),
            }),
        );
        None
    }

    /// Lease bookkeeping: marks silent nodes offline, re-routes their work.
    pub fn tick(&self) {
        let mut inner = self.lock();
        let lease = Duration::from_secs_f64(self.config.lease_s);
        let grace = Duration::from_secs_f64(self.config.lost_grace_s);
        let now = Instant::now();
        let expired: Vec<String> = inner
            .nodes
            .iter()
            .filter(|(_, n)| !n.offline && now.duration_since(n.last_seen) > lease)
            .map(|(id, _)| id.clone())
            .collect();
        for node in &expired {
            tracing::warn!(%node, "node missed its lease: offline");
            if let Some(n) = inner.nodes.get_mut(node) {
                n.offline = true;
                if let Some(c) = n.conn.take() {
                    let _ = c.tx.send(Err(Status::unavailable(
                        "lease expired: reconnect and send NodeHello",
                    )));
                }
            }
            {
                let mut fleet = self.fleet_mut();
                for (name, p) in inner.printers.iter_mut() {
                    if &p.node == node {
                        p.state = pb::PrinterState::Offline;
                        let _ = fleet.set_state(name, sched::PrinterState::Offline);
                    }
                }
            }
            let jobs: Vec<(String, bool)> = inner
                .jobs
                .iter()
                .filter(|(_, a)| a.on_node(node))
                .map(|(id, a)| (id.clone(), a.state == pb::JobState::Printing))
                .collect();
            for (id, printing) in jobs {
                if printing {
                    if let Some(a) = inner.jobs.get_mut(&id) {
                        a.lost_since.get_or_insert(now);
                    }
                } else {
                    self.reroute(
                        &mut inner,
                        &id,
                        "the node went offline before printing",
                        false,
                    );
                }
            }
        }
        let lost: Vec<String> = inner
            .jobs
            .iter()
            .filter(|(_, a)| a.lost_since.is_some_and(|t| now.duration_since(t) > grace))
            .map(|(id, _)| id.clone())
            .collect();
        for id in lost {
            self.reroute(
                &mut inner,
                &id,
                "the printer went silent while printing and did not come back",
                false,
            );
        }
    }

    /// Runs `tick` until the router stops.
    pub fn spawn_lease_monitor(self: &Arc<Self>) {
        let net = Arc::downgrade(self);
        let period = Duration::from_secs_f64((self.config.lease_s / 4.0).max(0.05));
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(period);
            loop {
                interval.tick().await;
                let Some(net) = net.upgrade() else { return };
                net.tick();
            }
        });
    }

    pub fn printers(&self) -> Vec<pb::Printer> {
        let inner = self.lock();
        let mut out: Vec<pb::Printer> = inner
            .printers
            .iter()
            .map(|(name, p)| {
                let (work, n) = inner.queues.get(&**name).copied().unwrap_or_default();
                pb::Printer {
                    name: name.to_string(),
                    spec: Some(p.spec.clone()),
                    state: p.state as i32,
                    last_seen_time: Some(timestamp(p.last_seen_ms)),
                    queued_work_s: work,
                    active_jobs: n,
                }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    pub fn events_from(&self, id: &str, from: u64) -> Result<Vec<pb::JobEvent>, Status> {
        self.state
            .store
            .job_events(id, from)
            .map_err(store_status)?
            .iter()
            .map(|b| {
                pb::JobEvent::decode(b.as_slice())
                    .map_err(|e| Status::internal(format!("stored event unreadable: {e}")))
            })
            .collect()
    }
}

/// The jobs of one submission, built (and encoded) before the registry lock is taken.
struct NewJobs {
    recs: Vec<JobRecord>,
    /// Per job: its first events, and the same encoded for the store.
    events: Vec<Vec<pb::JobEvent>>,
    encoded: Vec<Vec<Vec<u8>>>,
    /// Per job: the job and the estimated print time of its copy.
    jobs: Vec<(pb::Job, f64)>,
}

impl NewJobs {
    fn build(
        who: &crate::auth::Principal,
        assignment: &sched::Assignment,
        design_name: &str,
        coarse: &str,
        spec: &pb::JobSpec,
    ) -> NewJobs {
        let t = now_ms();
        let n = assignment.placements.len();
        let mut new = NewJobs {
            recs: Vec::with_capacity(n),
            events: Vec::with_capacity(n),
            encoded: Vec::with_capacity(n),
            jobs: Vec::with_capacity(n),
        };
        for p in &assignment.placements {
            let id = uuid::Uuid::now_v7().simple().to_string();
            let job = pb::Job {
                name: names::job(&id),
                design: design_name.to_string(),
                owner: format!("principals/{}", who.id),
                state: pb::JobState::Assigned as i32,
                printer: p.printer_id.clone(),
                epoch: 1,
                coarse_geohash: coarse.to_string(),
                progress_fraction: 0.0,
                create_time: Some(timestamp(t)),
                update_time: Some(timestamp(t)),
                placement: Some(placement_to_pb(p, design_name)),
                failure_reason: String::new(),
                reroutes: 0,
                spec: Some(spec.clone()),
            };
            let ev =
                |seq: u64, kind: pb::JobEventKind, state: pb::JobState, msg: String| pb::JobEvent {
                    job: job.name.clone(),
                    sequence: seq,
                    kind: kind as i32,
                    state: state as i32,
                    time: Some(timestamp(t)),
                    printer: if kind == pb::JobEventKind::Assigned {
                        job.printer.clone()
                    } else {
                        String::new()
                    },
                    epoch: if kind == pb::JobEventKind::Assigned {
                        1
                    } else {
                        0
                    },
                    message: msg,
                    ..Default::default()
                };
            let evs = vec![
                ev(
                    1,
                    pb::JobEventKind::Created,
                    pb::JobState::Queued,
                    "job created".into(),
                ),
                ev(
                    2,
                    pb::JobEventKind::Assigned,
                    pb::JobState::Assigned,
                    format!("assigned to {}: {}", p.makerspace, p.reasons.join("; ")),
                ),
            ];
            new.recs.push(JobRecord {
                id,
                owner: who.id.clone(),
                version: 0,
                last_seq: 2,
                active: true,
                job: job.encode_to_vec(),
            });
            new.encoded
                .push(evs.iter().map(|e| e.encode_to_vec()).collect());
            new.events.push(evs);
            new.jobs.push((job, p.estimate.print_time_s));
        }
        new
    }
}
