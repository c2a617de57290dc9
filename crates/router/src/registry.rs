//! The registry: what the router holds in memory of nodes, printers and active jobs, behind
//! the one registry mutex. Memory holds only what routing, queues and fencing need of an
//! active job ([`ActiveJob`]); the full job is in the store and read when it changes.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use fabrouter_scheduler as sched;

use crate::lifecycle::JobState;
use crate::model::{PrinterSpec, PrinterState, node_of};
use crate::protocol::NodeTx;

pub(crate) struct NodeConn {
    pub tx: NodeTx,
    /// Which stream of the node this is: reports from an older one are ignored.
    pub session: u64,
}

pub(crate) struct NodeEntry {
    pub conn: Option<NodeConn>,
    pub last_seen: Instant,
    pub offline: bool,
}

pub(crate) struct PrinterEntry {
    pub node: String,
    pub spec: PrinterSpec,
    pub state: PrinterState,
    pub last_seen_ms: i64,
}

/// What routing, queues and fencing need of a job that has not ended.
pub(crate) struct ActiveJob {
    /// Printer it is on (the registry's name, shared); `None` while queued.
    pub printer: Option<Arc<str>>,
    pub state: JobState,
    pub epoch: u64,
    /// The stored record's version and newest event: the next change writes version + 1.
    pub version: u64,
    pub last_seq: u64,
    /// Progress as last stored.
    pub progress: f64,
    /// Estimated print time of one copy, for the queue of its printer.
    pub estimate_s: f64,
    /// On a node that went silent after it started: re-routed when the grace ends.
    pub lost_since: Option<Instant>,
}

impl ActiveJob {
    /// What memory keeps of a stored job: `printer` is the registry's interned name.
    pub fn of(
        job: &crate::model::Job,
        rec: &fabrouter_store::JobRecord,
        printer: Option<Arc<str>>,
    ) -> ActiveJob {
        ActiveJob {
            printer,
            state: job.state,
            epoch: job.epoch,
            version: rec.version,
            last_seq: rec.last_seq,
            progress: job.progress,
            estimate_s: job
                .placement
                .as_ref()
                .map_or(0.0, crate::model::Placement::print_time_s),
            lost_since: None,
        }
    }

    pub fn printer(&self) -> &str {
        self.printer.as_deref().unwrap_or("")
    }

    pub fn on_node(&self, node: &str) -> bool {
        node_of(self.printer()) == node
    }
}

#[derive(Default)]
pub(crate) struct Inner {
    pub printers: HashMap<Arc<str>, PrinterEntry>,
    pub nodes: HashMap<String, NodeEntry>,
    pub jobs: HashMap<String, ActiveJob>,
    /// Ids of the QUEUED jobs, oldest first (ids are time-ordered).
    pub queued: BTreeSet<String>,
    /// Per printer: estimated seconds and count of active jobs on it.
    pub queues: HashMap<String, (f64, u32)>,
    /// Per node: the designs (bare ids) of its active jobs, with how many (a node may
    /// download those).
    pub node_designs: HashMap<String, HashMap<String, u32>>,
    /// Every profile some registered printer prints with (estimates are made for these).
    /// Shared so a submission takes it without copying under the lock.
    pub profiles: Arc<BTreeSet<String>>,
    pub next_session: u64,
}

impl Inner {
    /// The registry's shared copy of a printer name (a new one for a printer not registered).
    pub fn intern(&self, printer: &str) -> Option<Arc<str>> {
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
    pub fn place_change(
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

    /// Adds profiles printers print with.
    pub fn extend_profiles(&mut self, new: &[String]) {
        if new.iter().any(|p| !self.profiles.contains(p)) {
            Arc::make_mut(&mut self.profiles).extend(new.iter().cloned());
        }
    }
}

/// A node's printer declaration as the scheduler's printer.
pub(crate) fn sched_printer(
    name: &str,
    node: &str,
    spec: &PrinterSpec,
    state: PrinterState,
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
        technology: spec.technology.unwrap_or(sched::Technology::Fdm),
        build_volume_mm: spec.build_mm,
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
        state,
        queued_work_s: 0.0,
        active_jobs: 0,
    };
    p.validate().map_err(|e| e.to_string())?;
    Ok(p)
}
