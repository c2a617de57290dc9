//! The router's domain types: jobs, their events, printers and the customer's request, in the
//! words of the domain. The gRPC edge converts the API's messages to and from these; nothing
//! here knows how they travel or how they are stored.

use fabrouter_scheduler as sched;

pub use crate::lifecycle::JobState;
/// A printer's condition as its node reports it (the scheduler's, which routing reads).
pub use fabrouter_scheduler::PrinterState;

/// A point as a client sent it (not yet validated; see [`sched::GeoPoint::new`]).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LatLon {
    pub lat_deg: f64,
    pub lon_deg: f64,
}

/// A loaded or requested material. An empty colour in a request means any colour.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Material {
    pub kind: String,
    pub colour: String,
}

/// Turns of a part in degrees, applied about x, then y, then z.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Rotation {
    pub x_deg: f64,
    pub y_deg: f64,
    pub z_deg: f64,
}

/// An amount in minor units (cents) of an ISO 4217 currency.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Money {
    pub currency: String,
    pub amount_minor: i64,
}

impl Money {
    pub fn of(amount: f64, currency: &str) -> Money {
        Money {
            currency: currency.to_string(),
            amount_minor: (amount * 100.0).round() as i64,
        }
    }
}

/// What the customer asks for.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct JobSpec {
    /// The design's resource name as the customer gave it ("designs/{id}").
    pub design: String,
    /// `None`: not specified (taken as FDM).
    pub technology: Option<sched::Technology>,
    pub material: Option<Material>,
    /// 0: any nozzle.
    pub nozzle_mm: f64,
    /// Used for the decision, never stored (only the ~1 km cell is).
    pub customer_location: Option<LatLon>,
    /// 0: no limit.
    pub max_distance_km: f64,
    /// 0 means 1.
    pub quantity: u32,
}

/// The figures of the estimate a placement was made on.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PlacementEstimate {
    /// "designs/{id}".
    pub design: String,
    /// The profile estimated on, or "rough" for the volume-based figure.
    pub profile: String,
    pub print_time_s: f64,
    pub filament_g: f64,
}

/// One part of a placement's score.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Score {
    /// "distance", "queue_eta", "price", "load".
    pub score: String,
    pub value: f64,
    pub weight: f64,
}

/// A routing decision for one printer: what a quote offers and what placed a job.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Placement {
    /// "nodes/{node}/printers/{printer}".
    pub printer: String,
    pub makerspace: String,
    pub distance_km: f64,
    pub price: Option<Money>,
    /// Until the part is done: the queue ahead plus the print.
    pub eta_s: f64,
    pub estimate: Option<PlacementEstimate>,
    /// Why this maker, in words a customer understands.
    pub reasons: Vec<String>,
    pub scores: Vec<Score>,
    pub total_score: f64,
    /// The orientation in words ("as uploaded", "lying on its side ...").
    pub orientation: String,
    pub rotation: Option<Rotation>,
}

impl Placement {
    /// Estimated print time of one copy (0 when unknown).
    pub fn print_time_s(&self) -> f64 {
        self.estimate.as_ref().map_or(0.0, |e| e.print_time_s)
    }

    /// The profile the node is to slice with (empty: its default).
    pub fn profile(&self) -> &str {
        self.estimate.as_ref().map_or("", |e| e.profile.as_str())
    }
}

/// A print job, as stored.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Job {
    /// The bare id (time-ordered UUID v7); the API calls it "jobs/{id}".
    pub id: String,
    /// The design's bare id.
    pub design: String,
    /// The principal id of the customer who submitted it.
    pub owner: String,
    pub state: JobState,
    /// The printer it is assigned to ("nodes/{node}/printers/{printer}"); empty while queued
    /// or ended.
    pub printer: String,
    /// Fencing token of the current assignment: bumped by every (re)assignment.
    pub epoch: u64,
    /// The customer's location as kept: a ~1 km geohash cell.
    pub coarse_geohash: String,
    pub progress: f64,
    pub created_ms: i64,
    pub updated_ms: i64,
    /// The routing decision that placed it.
    pub placement: Option<Placement>,
    pub failure_reason: String,
    pub reroutes: u32,
    pub spec: JobSpec,
    /// Printers that failed this job (printer fault, node declined): never chosen again for
    /// it. Stored so a restart does not send it back to them.
    pub failed_printers: Vec<String>,
    /// When the node last reported on this print (ms since the epoch; 0: never).
    pub last_report_ms: i64,
}

/// What happened to a job, in its history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    Created,
    Assigned,
    /// The node began work on it (download, slicing, heating): PREPARING.
    Preparing,
    /// The printer began laying down the part: PRINTING.
    Started,
    Progress,
    Completed,
    Failed,
    Cancelled,
    Rerouted,
    Paused,
    Resumed,
}

/// One entry of a job's history. Sequence numbers are 1-based and gap-free per job.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct JobEvent {
    /// The job's bare id.
    pub job: String,
    pub sequence: u64,
    /// `None` only for an event of a kind this build does not know (read from a newer one).
    pub kind: Option<EventKind>,
    /// The job's state after the event.
    pub state: JobState,
    pub time_ms: i64,
    pub printer: String,
    pub epoch: u64,
    pub message: String,
    pub progress: f64,
    pub layer: u32,
    pub remaining_s: f64,
}

/// Prices in minor units per hour, per gram and per job.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PriceModel {
    pub currency: String,
    pub per_hour_minor: i64,
    pub per_gram_minor: i64,
    pub setup_fee_minor: i64,
}

/// A printer as its node declares it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PrinterSpec {
    /// Unique within the node, e.g. "mk3s-1".
    pub printer_id: String,
    pub technology: Option<sched::Technology>,
    pub build_mm: [f64; 3],
    pub nozzle_diameters_mm: Vec<f64>,
    pub materials: Vec<Material>,
    pub profiles: Vec<String>,
    pub location: Option<LatLon>,
    pub price: Option<PriceModel>,
    pub makerspace: String,
    pub firmware_flavor: String,
}

/// A registered printer with what the router knows of it now.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Printer {
    /// "nodes/{node}/printers/{printer}".
    pub name: String,
    pub spec: PrinterSpec,
    pub state: PrinterState,
    pub last_seen_ms: i64,
    pub queued_work_s: f64,
    pub active_jobs: u32,
}

/// What a quote found: the best options and why the others were left out.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Quote {
    pub options: Vec<Placement>,
    pub rejections: Vec<Rejection>,
    pub coarse_geohash: String,
    pub printers_registered: u32,
    pub printers_online: u32,
    pub printers_rejected: u32,
}

/// Why one printer was not offered.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rejection {
    pub printer: String,
    /// Stable code: "build_volume", "material", ..., or "ranked_lower".
    pub code: String,
    pub message: String,
}

/// The answer to a submission.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Submitted {
    pub jobs: Vec<Job>,
    /// The key was seen before: these are the jobs made then.
    pub replayed: bool,
}

/// The resource name of a printer of a node.
pub fn printer_name(node: &str, printer_id: &str) -> String {
    format!("nodes/{node}/printers/{printer_id}")
}

/// `nodes/{node}/printers/{printer}` -> node id.
pub fn node_of(printer: &str) -> &str {
    printer
        .strip_prefix("nodes/")
        .and_then(|r| r.split('/').next())
        .unwrap_or("")
}

/// `nodes/{node}/printers/{printer}` -> printer id.
pub fn printer_id_of(printer: &str) -> &str {
    printer.rsplit('/').next().unwrap_or_default()
}

/// The id in a resource name `{collection}/{id}`, if it is one.
pub fn parse_name<'a>(name: &'a str, collection: &str) -> Option<&'a str> {
    let id = name.strip_prefix(collection)?.strip_prefix('/')?;
    (!id.is_empty() && !id.contains('/')).then_some(id)
}
