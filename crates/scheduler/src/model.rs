//! The scheduler's view of the world: what a node declares about each printer, what a customer
//! asks for, and where print-time/mass estimates come from. Plain data; the router converts its
//! protobuf messages into these.

use serde::{Deserialize, Serialize};

use crate::error::SchedulerError;
use crate::geo::GeoPoint;

/// Largest part edge accepted, mm. Far above any build volume; only guards against garbage.
pub const MAX_PART_EXTENT_MM: f64 = 10_000.0;
/// Most copies one request may ask for (each becomes its own job).
pub const MAX_QUANTITY: u32 = 1_000;
/// Most materials, nozzles and profiles one printer may declare (keeps the fleet's compact
/// records small; real printers have a handful).
pub const MAX_MATERIALS_PER_PRINTER: usize = 256;
pub const MAX_NOZZLES_PER_PRINTER: usize = 64;
pub const MAX_PROFILES_PER_PRINTER: usize = 256;
/// Two nozzle diameters closer than this are the same nozzle (0.4 vs 0.40000001).
pub const NOZZLE_TOLERANCE_MM: f64 = 0.005;

/// Printing process; a job needs a printer of exactly this technology.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Technology {
    /// Fused deposition modelling (filament extrusion).
    Fdm,
    /// Vat photopolymerisation (SLA/MSLA).
    Resin,
    /// Selective laser sintering (powder bed).
    Sls,
}

impl Technology {
    pub fn as_str(self) -> &'static str {
        match self {
            Technology::Fdm => "FDM",
            Technology::Resin => "resin",
            Technology::Sls => "SLS",
        }
    }
}

/// What a printer is doing. Idle, printing and paused printers accept jobs (the latter two
/// queue them); offline and maintenance printers do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum PrinterState {
    #[default]
    Idle,
    Printing,
    Paused,
    Offline,
    Maintenance,
}

impl PrinterState {
    pub fn as_str(self) -> &'static str {
        match self {
            PrinterState::Idle => "idle",
            PrinterState::Printing => "printing",
            PrinterState::Paused => "paused",
            PrinterState::Offline => "offline",
            PrinterState::Maintenance => "in maintenance",
        }
    }

    /// Whether a new job may be queued on a printer in this state.
    pub fn accepts_jobs(self) -> bool {
        matches!(
            self,
            PrinterState::Idle | PrinterState::Printing | PrinterState::Paused
        )
    }
}

/// A loaded material, e.g. PLA / red. Matching ignores case and surrounding blanks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Material {
    pub kind: String,
    pub colour: String,
}

/// A material as a customer asks for it: the colour may be left open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaterialRequest {
    pub kind: String,
    #[serde(default)]
    pub colour: Option<String>,
}

impl MaterialRequest {
    /// Whether a loaded material satisfies this request.
    pub fn matches(&self, loaded: &Material) -> bool {
        same_name(&self.kind, &loaded.kind)
            && self
                .colour
                .as_deref()
                .is_none_or(|c| same_name(c, &loaded.colour))
    }
}

/// Case- and blank-insensitive name comparison without allocating (it runs per printer).
pub(crate) fn same_name(a: &str, b: &str) -> bool {
    // Fast path for the common, already clean case: equal length and equal up to ASCII case
    // (which implies equal under Unicode case folding too).
    if a.len() == b.len() && a.eq_ignore_ascii_case(b) {
        return true;
    }
    let (a, b) = (a.trim_ascii(), b.trim_ascii());
    if a.is_ascii() && b.is_ascii() {
        return a.eq_ignore_ascii_case(b);
    }
    let (a, b) = (a.trim(), b.trim());
    a.chars()
        .flat_map(char::to_lowercase)
        .eq(b.chars().flat_map(char::to_lowercase))
}

/// How a makerspace charges for one job: `setup_fee + hours * per_hour + grams * per_gram`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriceModel {
    pub per_hour: f64,
    pub per_gram: f64,
    pub setup_fee: f64,
    /// ISO 4217 code, e.g. "EUR". The price score compares amounts as numbers: a deployment
    /// is assumed to quote in one currency.
    pub currency: String,
}

impl PriceModel {
    /// Price of one job with the given estimate.
    pub fn price(&self, estimate: &EstimateFigures) -> f64 {
        self.setup_fee
            + estimate.print_time_s / 3600.0 * self.per_hour
            + estimate.filament_g * self.per_gram
    }
}

/// One printer as its node declared it, plus the router's view of its queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Printer {
    pub id: String,
    pub node_id: String,
    /// Display name of the makerspace hosting the printer.
    pub makerspace: String,
    pub technology: Technology,
    /// Usable build volume, x/y/z in mm (z is up).
    pub build_volume_mm: [f64; 3],
    /// Nozzles available on the printer (empty for resin/SLS).
    pub nozzle_diameters_mm: Vec<f64>,
    pub materials: Vec<Material>,
    /// Slicer profiles this printer prints with, in the node's order of preference.
    pub profiles: Vec<String>,
    pub location: GeoPoint,
    pub price: PriceModel,
    pub state: PrinterState,
    /// Sum of the estimated print times of jobs already queued or printing here, s.
    pub queued_work_s: f64,
    /// Jobs queued or printing here.
    pub active_jobs: u32,
}

impl Printer {
    /// Checks a declaration once, at registration, so the per-quote hot path can trust the
    /// numbers. The scheduler never panics on a bad printer, but its figures would be garbage.
    pub fn validate(&self) -> Result<(), SchedulerError> {
        let bad = |problem: &'static str| SchedulerError::Printer {
            printer_id: self.id.clone(),
            problem,
        };
        if self.id.trim().is_empty() {
            return Err(bad("id is empty"));
        }
        if !self
            .build_volume_mm
            .iter()
            .all(|v| v.is_finite() && *v > 0.0)
        {
            return Err(bad("build volume must be three finite sizes above 0 mm"));
        }
        if !self
            .nozzle_diameters_mm
            .iter()
            .all(|v| v.is_finite() && *v > 0.0)
        {
            return Err(bad("nozzle diameters must be finite and above 0 mm"));
        }
        if self.materials.len() > MAX_MATERIALS_PER_PRINTER
            || self.nozzle_diameters_mm.len() > MAX_NOZZLES_PER_PRINTER
            || self.profiles.len() > MAX_PROFILES_PER_PRINTER
        {
            return Err(bad("too many materials, nozzles or profiles declared"));
        }
        let p = &self.price;
        if ![p.per_hour, p.per_gram, p.setup_fee]
            .iter()
            .all(|v| v.is_finite() && *v >= 0.0)
        {
            return Err(bad("prices must be finite and not negative"));
        }
        if !(self.queued_work_s.is_finite() && self.queued_work_s >= 0.0) {
            return Err(bad("queued work must be finite and not negative"));
        }
        Ok(())
    }
}

/// Estimated cost of printing the job once with one profile.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EstimateFigures {
    pub print_time_s: f64,
    pub filament_g: f64,
}

impl EstimateFigures {
    fn is_valid(&self) -> bool {
        self.print_time_s.is_finite()
            && self.print_time_s >= 0.0
            && self.filament_g.is_finite()
            && self.filament_g >= 0.0
    }
}

/// Source of per-profile estimates for the job being routed (the estimator crate, a cache of
/// slicer results...). Called at most once per distinct profile name per decision, so it may
/// be slow. Any `Fn(&str) -> Option<EstimateFigures>` is an estimator.
pub trait Estimator {
    /// Figures for printing this job with `profile`, or `None` if there is no estimate for it.
    fn estimate(&self, profile: &str) -> Option<EstimateFigures>;
}

impl<F> Estimator for F
where
    F: Fn(&str) -> Option<EstimateFigures>,
{
    fn estimate(&self, profile: &str) -> Option<EstimateFigures> {
        self(profile)
    }
}

/// What a customer asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRequest {
    /// Stable key of the job or design (e.g. the design hash): it seeds deterministic
    /// tie-breaks, so equal printers are not always resolved toward the first registered one
    /// while the same request always gets the same answer.
    pub job_key: String,
    /// Axis-aligned extent of the part as uploaded, x/y/z in mm.
    pub part_extent_mm: [f64; 3],
    /// Pre-sliced G-code: the part sits where the G-code puts it, so it is never turned to fit
    /// (`part_extent_mm` is then how far the bed must reach).
    #[serde(default)]
    pub pre_sliced: bool,
    pub technology: Technology,
    #[serde(default)]
    pub material: Option<MaterialRequest>,
    #[serde(default)]
    pub nozzle_mm: Option<f64>,
    /// Used for this decision only; store [`crate::coarse_location`] of it, never the point.
    pub customer: GeoPoint,
    #[serde(default)]
    pub max_distance_km: Option<f64>,
    /// Copies wanted; each copy becomes its own job.
    pub quantity: u32,
    /// Rough figures (e.g. from the part volume) used for printers none of whose profiles has
    /// an estimate. `None`: such printers are rejected with [`crate::RejectCode::NoEstimate`].
    #[serde(default)]
    pub fallback_estimate: Option<EstimateFigures>,
}

impl JobRequest {
    pub fn validate(&self) -> Result<(), SchedulerError> {
        if !self
            .part_extent_mm
            .iter()
            .all(|v| v.is_finite() && *v > 0.0 && *v <= MAX_PART_EXTENT_MM)
        {
            return Err(SchedulerError::PartExtent(self.part_extent_mm));
        }
        if !(1..=MAX_QUANTITY).contains(&self.quantity) {
            return Err(SchedulerError::Quantity {
                quantity: self.quantity,
                max: MAX_QUANTITY,
            });
        }
        if let Some(n) = self.nozzle_mm
            && !(n.is_finite() && n > 0.0)
        {
            return Err(SchedulerError::Nozzle(n));
        }
        if let Some(d) = self.max_distance_km
            && !(d.is_finite() && d >= 0.0)
        {
            return Err(SchedulerError::MaxDistance(d));
        }
        if let Some(f) = &self.fallback_estimate
            && !f.is_valid()
        {
            return Err(SchedulerError::FallbackEstimate);
        }
        Ok(())
    }
}

/// Whether an estimate from a caller can be used (NaN/negative figures are treated as missing).
pub(crate) fn usable(estimate: Option<EstimateFigures>) -> Option<EstimateFigures> {
    estimate.filter(EstimateFigures::is_valid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn material_matching_ignores_case_and_open_colour() {
        let loaded = Material {
            kind: "PLA".into(),
            colour: "Signal Red".into(),
        };
        let want = |kind: &str, colour: Option<&str>| MaterialRequest {
            kind: kind.into(),
            colour: colour.map(Into::into),
        };
        assert!(want("pla", None).matches(&loaded));
        assert!(want(" Pla ", Some("signal red")).matches(&loaded));
        assert!(!want("PETG", None).matches(&loaded));
        assert!(!want("PLA", Some("red")).matches(&loaded));
        assert!(same_name("WEISS", "weiss") && same_name("Weiß", "WEIß"));
    }

    #[test]
    fn price_model_adds_setup_time_and_mass() {
        let price = PriceModel {
            per_hour: 2.0,
            per_gram: 0.05,
            setup_fee: 3.0,
            currency: "EUR".into(),
        };
        let e = EstimateFigures {
            print_time_s: 5400.0,
            filament_g: 40.0,
        };
        assert!((price.price(&e) - (3.0 + 1.5 * 2.0 + 40.0 * 0.05)).abs() < 1e-12);
    }
}
