//! The printer network: the registry of nodes and printers, the durable job lifecycle, and the
//! dispatcher that turns routing decisions into assignments on node streams.
//!
//! One `Network` per router. Its state sits behind a synchronous mutex that is never held
//! across an await; every job change goes through [`Network::commit`], which writes the job
//! and its new events to the store in one transaction before anyone (node or watcher) hears of
//! it. Epochs fence assignments: each (re)assignment bumps the job's epoch, and a node may only
//! report on the epoch it was given.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use fabrouter_api::names;
use fabrouter_api::v1 as pb;
use fabrouter_scheduler as sched;
use fabrouter_store::{Created, DesignRecord, JobRecord};
use prost::Message;
use tokio::sync::{broadcast, mpsc};
use tonic::Status;

use crate::State;
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

struct ActiveJob {
    rec: JobRecord,
    job: pb::Job,
    /// Estimated print time of one copy, for the queue of its printer.
    estimate_s: f64,
    /// Printing on a node that went silent: re-routed when the grace ends.
    lost_since: Option<Instant>,
    /// Printers that failed this job; never chosen again for it.
    excluded: HashSet<String>,
}

#[derive(Default)]
struct Inner {
    fleet: sched::Fleet,
    printers: HashMap<String, PrinterEntry>,
    nodes: HashMap<String, NodeEntry>,
    jobs: HashMap<String, ActiveJob>,
    /// Per printer: estimated seconds and count of active jobs on it.
    queues: HashMap<String, (f64, u32)>,
    /// Every profile some registered printer prints with (estimates are made for these).
    profiles: std::collections::BTreeSet<String>,
    next_session: u64,
}

impl Inner {
    fn queue_change(&mut self, printer: &str, estimate_s: f64, add: bool) {
        if printer.is_empty() {
            return;
        }
        let q = self.queues.entry(printer.to_string()).or_default();
        if add {
            q.0 += estimate_s;
            q.1 += 1;
        } else {
            q.0 = (q.0 - estimate_s).max(0.0);
            q.1 = q.1.saturating_sub(1);
        }
        let (work, n) = *q;
        let _ = self.fleet.set_queue(printer, work, n);
    }
}

fn estimate_of(job: &pb::Job) -> f64 {
    job.placement
        .as_ref()
        .and_then(|p| p.estimate.as_ref())
        .map(|e| e.print_time_s)
        .unwrap_or(0.0)
}

pub struct Network {
    pub state: Arc<State>,
    inner: Mutex<Inner>,
    events: broadcast::Sender<pb::JobEvent>,
    scheduler: sched::Scheduler,
    pub config: NetworkConfig,
    /// Set when the router shuts down: node and watch streams end so shutdown can complete.
    closing: tokio::sync::watch::Sender<bool>,
    profiles: Arc<crate::estimates::Profiles>,
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
        let now = Instant::now();
        for (name, bytes) in state.store.list_printers()? {
            let printer = pb::Printer::decode(bytes.as_slice())?;
            let spec = printer.spec.unwrap_or_default();
            let node = node_of(&name).to_string();
            if let Ok(p) = sched_printer(&name, &node, &spec, pb::PrinterState::Offline) {
                inner.fleet.upsert(p)?;
                inner.profiles.extend(spec.profiles.iter().cloned());
                inner.nodes.entry(node.clone()).or_insert(NodeEntry {
                    conn: None,
                    last_seen: now,
                    offline: false,
                });
                inner.printers.insert(
                    name,
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
        for rec in state.store.active_jobs()? {
            let job = pb::Job::decode(rec.job.as_slice())?;
            let estimate_s = estimate_of(&job);
            inner.queue_change(&job.printer, estimate_s, true);
            inner.jobs.insert(
                rec.id.clone(),
                ActiveJob {
                    rec,
                    job,
                    estimate_s,
                    lost_since: None,
                    excluded: HashSet::new(),
                },
            );
        }
        let (events, _) = broadcast::channel(4096);
        Ok(Arc::new(Network {
            state,
            inner: Mutex::new(inner),
            events,
            scheduler: sched::Scheduler::default(),
            config,
            closing: tokio::sync::watch::channel(false).0,
            profiles,
        }))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every mutation is completed or not started when a panic could unwind (store first,
        // memory after), so a poisoned lock still holds consistent state.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `node` holds an active job for `design` (so it may download it).
    pub fn node_holds_design(&self, node: &str, design: &str) -> bool {
        self.lock()
            .jobs
            .values()
            .any(|a| a.job.design == design && node_of(&a.job.printer) == node)
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

    /// Slice-estimates of a design for every profile some printer prints with (cached in the
    /// store; computed here otherwise). Profiles the router has no definition for, or on which
    /// the model cannot be estimated, are left out: routing then uses the rough figure.
    fn figures(
        &self,
        design: &DesignRecord,
        profiles: impl IntoIterator<Item = String>,
    ) -> HashMap<String, sched::EstimateFigures> {
        let mut out = HashMap::new();
        if crate::designs::is_gcode(design) {
            // Pre-sliced G-code takes as long on any profile: its slicer's figures stand.
            let g = pb::GcodeReport::decode(design.report.as_slice()).unwrap_or_default();
            let figures = gcode_figures(&g);
            return profiles.into_iter().map(|p| (p, figures)).collect();
        }
        for name in profiles {
            if out.contains_key(&name) {
                continue;
            }
            let Some(profile) = self.profiles.get(&name) else {
                continue;
            };
            if let Ok((e, _, _)) =
                crate::estimates::estimate_for_routing(&self.state, design, profile)
            {
                out.insert(
                    name,
                    sched::EstimateFigures {
                        print_time_s: e.print_time_s,
                        filament_g: e.filament_g,
                    },
                );
            }
        }
        out
    }

    fn fleet_profiles(&self) -> std::collections::BTreeSet<String> {
        self.lock().profiles.clone()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<pb::JobEvent> {
        self.events.subscribe()
    }

    /// Writes a job change and its events, then updates memory, queues and watchers.
    fn commit(
        &self,
        inner: &mut Inner,
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
        let first = active.rec.last_seq + 1;
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
            owner: active.rec.owner.clone(),
            version: active.rec.version + 1,
            last_seq: active.rec.last_seq + evs.len() as u64,
            active: !is_terminal(job.state),
            job: job.encode_to_vec(),
        };
        let encoded: Vec<Vec<u8>> = evs.iter().map(|e| e.encode_to_vec()).collect();
        self.state
            .store
            .update_job(&rec, &encoded)
            .map_err(store_status)?;
        let (old_printer, old_estimate) = (active.job.printer.clone(), active.estimate_s);
        inner.queue_change(&old_printer, old_estimate, false);
        if rec.active {
            let estimate_s = estimate_of(&job);
            inner.queue_change(&job.printer, estimate_s, true);
            if let Some(a) = inner.jobs.get_mut(&id) {
                a.rec = rec;
                a.job = job.clone();
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
    ) -> Result<(sched::JobRequest, f64), Status> {
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
        Ok((req, rough.print_time_s))
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
        .readable(who, &spec.design)?;
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
        let (req, _) = self.request(&design, spec, customer, key)?;
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
        let inner = self.lock();
        let estimator = |p: &str| figures.get(p).copied();
        let decision = self
            .scheduler
            .quote(&request, &inner.fleet, &estimator, top)
            .map_err(|e| bad_request("spec", e.to_string()))?;
        // The nearest printers' reasons are the ones a customer asks about; messages are
        // formatted only for those.
        let customer = request.customer;
        let mut rejected: Vec<_> = decision
            .rejections()
            .map(|r| (r.printer.location.distance_km(&customer), r))
            .collect();
        rejected.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
        let mut rejections: Vec<pb::Rejection> = rejected
            .iter()
            .take(MAX_QUOTE_REASONS)
            .map(|(_, r)| pb::Rejection {
                printer: r.printer_id().to_string(),
                code: r.code().as_str().to_ascii_lowercase(),
                message: r.message(),
            })
            .collect();
        if let Some(top) = decision.options.first() {
            let mut lower: Vec<_> = decision
                .ranked_lower()
                .map(|r| (r.printer.location.distance_km(&customer), r))
                .collect();
            lower.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
            rejections.extend(
                lower
                    .iter()
                    .take(MAX_QUOTE_REASONS)
                    .map(|(_, r)| pb::Rejection {
                        printer: r.printer_id().to_string(),
                        code: "ranked_lower".into(),
                        message: r.reason_vs(top),
                    }),
            );
        }
        let design_name = names::design(&design.id);
        Ok(pb::Quote {
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

    pub fn submit(
        &self,
        who: &crate::auth::Principal,
        req: &pb::SubmitJobRequest,
    ) -> Result<pb::SubmitJobResponse, Status> {
        let key = req.idempotency_key.trim();
        if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY {
            return Err(bad_request(
                "idempotency_key",
                format!(
                    "an idempotency key of 1-{MAX_IDEMPOTENCY_KEY} characters is required (e.g. a UUID), so a retry cannot print twice"
                ),
            ));
        }
        // A replay answers from the store without routing again.
        if let Some(jobs) = self.replayed(&who.id, key)? {
            return Ok(pb::SubmitJobResponse {
                jobs,
                replayed: true,
            });
        }
        let mut spec = req
            .spec
            .clone()
            .ok_or_else(|| bad_request("spec", "spec is required"))?;
        let (design, request) = self.customer_request(who, &spec, key)?;
        let coarse = sched::coarse_location(request.customer)
            .map(|c| c.as_str().to_string())
            .unwrap_or_default();
        // Privacy: the exact point served the decision; only the ~1 km cell is kept.
        spec.customer_location = None;
        spec.quantity = request.quantity;
        let chosen = (!req.printer.is_empty()).then_some(req.printer.as_str());
        let figures = self.figures(&design, self.fleet_profiles());
        let mut inner = self.lock();
        let estimator = |p: &str| figures.get(p).copied();
        let assignment = self
            .scheduler
            .assign(&request, &inner.fleet, &estimator, chosen)
            .map_err(|e| match e {
                sched::SchedulerError::UnknownPrinter(_)
                | sched::SchedulerError::ChosenPrinterRejected { .. } => {
                    Status::failed_precondition(e.to_string())
                }
                other => bad_request("spec", other.to_string()),
            })?;
        if assignment.placements.is_empty() {
            return Err(Status::failed_precondition(format!(
                "no registered printer can take this job ({} rejected); QuoteJob lists each printer's reason",
                assignment.rejected
            )));
        }
        let design_name = names::design(&design.id);
        let t = now_ms();
        let mut recs = Vec::new();
        let mut events = Vec::new();
        let mut jobs = Vec::new();
        for p in &assignment.placements {
            let id = uuid::Uuid::now_v7().simple().to_string();
            let job = pb::Job {
                name: names::job(&id),
                design: design_name.clone(),
                owner: format!("principals/{}", who.id),
                state: pb::JobState::Assigned as i32,
                printer: p.printer_id.clone(),
                epoch: 1,
                coarse_geohash: coarse.clone(),
                progress_fraction: 0.0,
                create_time: Some(timestamp(t)),
                update_time: Some(timestamp(t)),
                placement: Some(placement_to_pb(p, &design_name)),
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
            recs.push(JobRecord {
                id: id.clone(),
                owner: who.id.clone(),
                version: 0,
                last_seq: 2,
                active: true,
                job: job.encode_to_vec(),
            });
            events.push(evs);
            jobs.push((job, p.estimate.print_time_s));
        }
        let encoded: Vec<Vec<Vec<u8>>> = events
            .iter()
            .map(|evs| evs.iter().map(|e| e.encode_to_vec()).collect())
            .collect();
        match self
            .state
            .store
            .create_jobs(&who.id, key, &recs, &encoded)
            .map_err(store_status)?
        {
            Created::Replayed(_) => {
                drop(inner);
                let jobs = self.replayed(&who.id, key)?.unwrap_or_default();
                return Ok(pb::SubmitJobResponse {
                    jobs,
                    replayed: true,
                });
            }
            Created::New => {}
        }
        let mut out = Vec::new();
        for ((rec, (job, estimate_s)), evs) in recs.into_iter().zip(jobs).zip(events) {
            let printer = job.printer.clone();
            inner.jobs.insert(
                rec.id.clone(),
                ActiveJob {
                    rec,
                    job: job.clone(),
                    estimate_s,
                    lost_since: None,
                    excluded: HashSet::new(),
                },
            );
            inner.queue_change(&printer, estimate_s, true);
            Self::send(&inner, node_of(&printer), Self::assignment(&job, &design));
            for e in evs {
                let _ = self.events.send(e);
            }
            out.push(job);
        }
        drop(inner);
        // The customer is told the jobs exist only once they are on disk. Concurrent
        // submissions share one log sync.
        self.state.store.flush().map_err(store_status)?;
        tracing::debug!(jobs = out.len(), design = %design_name, "jobs submitted");
        Ok(pb::SubmitJobResponse {
            jobs: out,
            replayed: false,
        })
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

    /// Loads a job the caller may see (owner or admin); others get NOT_FOUND.
    pub fn visible_job(
        &self,
        who: &crate::auth::Principal,
        name: &str,
    ) -> Result<(String, pb::Job), Status> {
        let id = names::parse(name, "jobs").ok_or_else(|| {
            bad_request(
                "name",
                format!("{name:?} is not a job name like jobs/{{id}}"),
            )
        })?;
        match self.load_job(id)? {
            Some(j) if who.is_admin() || j.owner == format!("principals/{}", who.id) => {
                Ok((id.to_string(), j))
            }
            _ => Err(Status::not_found(format!("{name} not found"))),
        }
    }

    pub fn cancel(
        &self,
        who: &crate::auth::Principal,
        req: &pb::CancelJobRequest,
    ) -> Result<pb::Job, Status> {
        let (id, _) = self.visible_job(who, &req.name)?;
        let mut inner = self.lock();
        let Some(active) = inner.jobs.get(&id) else {
            let job = self.load_job(&id)?.unwrap_or_default();
            let state = pb::JobState::try_from(job.state)
                .unwrap_or(pb::JobState::Unspecified)
                .as_str_name();
            return Err(Status::failed_precondition(format!(
                "{} already ended ({state}); nothing to cancel",
                req.name
            )));
        };
        let mut job = active.job.clone();
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
            job,
            vec![(pb::JobEventKind::Cancelled, reason.clone())],
        )?;
        self.state.store.flush().map_err(store_status)?;
        if !printer.is_empty() {
            Self::send(
                &inner,
                node_of(&printer),
                pb::router_message::Msg::Cancel(pb::JobCancel {
                    job: job.name.clone(),
                    epoch,
                    reason,
                }),
            );
        }
        Ok(job)
    }

    /// Moves a job off its printer: to another capable printer, to the queue if none, or to
    /// FAILED after too many re-routes. Called with the lock held.
    fn reroute(&self, inner: &mut Inner, id: &str, why: &str, exclude_current: bool) {
        let Some(active) = inner.jobs.get_mut(id) else {
            return;
        };
        let old = active.job.printer.clone();
        if exclude_current && !old.is_empty() {
            active.excluded.insert(old.clone());
        }
        let excluded = active.excluded.clone();
        let mut job = active.job.clone();
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
        match self.commit(inner, job, events) {
            Ok(job) => {
                if !old.is_empty() {
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
        excluded: &HashSet<String>,
    ) -> Option<(String, pb::QuoteOption)> {
        let design = self.design_of(job).ok()?;
        let spec = job.spec.clone().unwrap_or_default();
        // Only the coarse cell was kept; its centre is within ~1 km of the customer.
        let centre = sched::CoarseLocation::parse(&job.coarse_geohash)
            .and_then(|c| c.centre())
            .ok()?;
        let mut spec1 = spec;
        spec1.quantity = 1;
        let (request, _) = self.request(&design, &spec1, centre, &job.name).ok()?;
        let profiles = inner
            .printers
            .values()
            .flat_map(|p| p.spec.profiles.iter().cloned())
            .collect::<std::collections::BTreeSet<_>>();
        let figures = self.figures(&design, profiles);
        let estimator = |p: &str| figures.get(p).copied();
        let decision = self
            .scheduler
            .quote(&request, &inner.fleet, &estimator, excluded.len() + 1)
            .ok()?;
        let name = job.design.clone();
        decision
            .options
            .iter()
            .find(|o| !excluded.contains(&o.printer_id))
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
        let queued: Vec<String> = inner
            .jobs
            .iter()
            .filter(|(_, a)| a.job.state == pb::JobState::Queued as i32)
            .map(|(id, _)| id.clone())
            .collect();
        for id in queued {
            let Some(a) = inner.jobs.get(&id) else {
                continue;
            };
            let (job, excluded) = (a.job.clone(), a.excluded.clone());
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
                match self.commit(inner, job, vec![(pb::JobEventKind::Assigned, msg)]) {
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
            inner
                .fleet
                .upsert(p)
                .map_err(|e| bad_request("hello.printers", e.to_string()))?;
            inner.profiles.extend(spec.profiles.iter().cloned());
            inner.printers.insert(
                name.clone(),
                PrinterEntry {
                    node: node.to_string(),
                    spec,
                    state: pb::PrinterState::Idle,
                    last_seen_ms: t,
                },
            );
            let (work, n) = inner.queues.get(&name).copied().unwrap_or_default();
            let _ = inner.fleet.set_queue(&name, work, n);
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
                .filter(|a| node_of(&a.job.printer) == node && a.job.epoch == h.epoch);
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
            .filter(|(_, a)| node_of(&a.job.printer) == node)
            .map(|(id, _)| id.clone())
            .collect();
        for id in mine {
            let Some(a) = inner.jobs.get_mut(&id) else {
                continue;
            };
            let holds = held.get(&a.job.name) == Some(&a.job.epoch);
            if holds {
                a.lost_since = None;
                continue;
            }
            if a.job.state == pb::JobState::Printing as i32 {
                // The node no longer knows a print it was running: that print is lost.
                self.reroute(
                    &mut inner,
                    &id,
                    "the node restarted and no longer holds this print",
                    false,
                );
            } else {
                let job = a.job.clone();
                self.dispatch(&inner, &job);
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
                if let Some(p) = inner.printers.get_mut(&name) {
                    p.state = state;
                    p.last_seen_ms = now_ms();
                    let _ = inner.fleet.set_state(&name, printer_state(state));
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
                let mut job = a.job.clone();
                let mut events = Vec::new();
                if job.state == pb::JobState::Assigned as i32 {
                    job.state = pb::JobState::Printing as i32;
                    events.push((pb::JobEventKind::Started, "printing started".to_string()));
                }
                let moved = (p.fraction - job.progress_fraction).abs() >= PROGRESS_STEP
                    || p.fraction >= 1.0;
                job.progress_fraction = p.fraction.clamp(0.0, 1.0);
                if moved || !events.is_empty() {
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
                    if let Err(e) = self.commit(&mut inner, job, events) {
                        tracing::warn!(job = %id, error = %e, "progress not stored");
                    }
                }
            }
            Msg::Result(r) => {
                let Some(id) = self.fenced(&mut inner, node, &r.job, r.epoch) else {
                    return;
                };
                let Some(a) = inner.jobs.get(&id) else { return };
                let mut job = a.job.clone();
                if r.success {
                    job.state = pb::JobState::Completed as i32;
                    job.progress_fraction = 1.0;
                    let _ = self.commit(
                        &mut inner,
                        job,
                        vec![(pb::JobEventKind::Completed, "print completed".into())],
                    );
                } else if r.printer_fault {
                    let why = format!("printer failed: {}", r.reason);
                    self.reroute(&mut inner, &id, &why, true);
                } else {
                    job.state = pb::JobState::Failed as i32;
                    job.failure_reason = r.reason.clone();
                    let _ =
                        self.commit(&mut inner, job, vec![(pb::JobEventKind::Failed, r.reason)]);
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
            .is_some_and(|a| a.job.epoch == epoch && node_of(&a.job.printer) == node);
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
            let printers: Vec<String> = inner
                .printers
                .iter()
                .filter(|(_, p)| &p.node == node)
                .map(|(n, _)| n.clone())
                .collect();
            for p in printers {
                if let Some(e) = inner.printers.get_mut(&p) {
                    e.state = pb::PrinterState::Offline;
                }
                let _ = inner.fleet.set_state(&p, sched::PrinterState::Offline);
            }
            let jobs: Vec<(String, bool)> = inner
                .jobs
                .iter()
                .filter(|(_, a)| node_of(&a.job.printer) == node)
                .map(|(id, a)| (id.clone(), a.job.state == pb::JobState::Printing as i32))
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
                let q = inner.fleet.get(name);
                pb::Printer {
                    name: name.clone(),
                    spec: Some(p.spec.clone()),
                    state: p.state as i32,
                    last_seen_time: Some(timestamp(p.last_seen_ms)),
                    queued_work_s: q.map(|q| q.queued_work_s).unwrap_or(0.0),
                    active_jobs: q.map(|q| q.active_jobs).unwrap_or(0),
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
