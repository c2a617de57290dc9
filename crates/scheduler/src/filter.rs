//! Filter plugins: can this printer take this job at all? Each filter is a small type with one
//! question and one [`RejectCode`]; a "no" carries the figures needed to tell the customer why.
//!
//! Rejections are the common case (most of 10,000 printers fail some filter), so they are
//! compact: a code plus borrowed/copied figures, formatted into a sentence only when someone
//! reads [`Rejection::message`]. Filters that learn something on the way (distance, the
//! orientation that fits, the estimate) return it, so the pipeline does not compute it twice.

use std::cell::RefCell;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::SchedulerError;
use crate::fleet::{Fleet, Gate, Slot};
use crate::geo::{Origin, distance_lower_km, distance_upper_km};
use crate::model::{
    EstimateFigures, Estimator, JobRequest, MaterialRequest, NOZZLE_TOLERANCE_MM, Printer,
    PrinterState, Technology, usable,
};
use crate::orientation::{FitCandidates, Orientation};

/// Stable, machine-readable reason a printer was filtered out (maps 1:1 to the API enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RejectCode {
    /// The printer uses another process (FDM/resin/SLS).
    Technology,
    /// The part does not fit the build volume in any tried orientation.
    BuildVolume,
    /// The requested material (and colour) is not loaded.
    Material,
    /// The requested nozzle diameter is not fitted.
    Nozzle,
    /// The printer is offline or in maintenance.
    PrinterState,
    /// The printer is farther than the customer's maximum distance.
    MaxDistance,
    /// None of the printer's profiles has an estimate (and no fallback was given).
    NoEstimate,
}

impl RejectCode {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectCode::Technology => "TECHNOLOGY",
            RejectCode::BuildVolume => "BUILD_VOLUME",
            RejectCode::Material => "MATERIAL",
            RejectCode::Nozzle => "NOZZLE",
            RejectCode::PrinterState => "PRINTER_STATE",
            RejectCode::MaxDistance => "MAX_DISTANCE",
            RejectCode::NoEstimate => "NO_ESTIMATE",
        }
    }
}

impl fmt::Display for RejectCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why one printer cannot take the job: the figures behind the message, borrowed from the
/// request and the printer so that building it costs nothing (the printer's declaration is
/// only read when the message is formatted).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rejection<'a> {
    Technology {
        wanted: Technology,
        has: Technology,
    },
    BuildVolume {
        part_mm: &'a [f64; 3],
        printer: &'a Printer,
        /// Whether the part could have been turned (not for pre-sliced G-code).
        turnable: bool,
    },
    Material {
        wanted: &'a MaterialRequest,
        printer: &'a Printer,
    },
    Nozzle {
        wanted_mm: f64,
        printer: &'a Printer,
    },
    PrinterState(PrinterState),
    MaxDistance {
        /// The distance, or a lower bound on it when `exact` is false (cheap pre-check).
        km: f64,
        exact: bool,
        max_km: f64,
    },
    NoEstimate {
        printer: &'a Printer,
    },
}

impl Rejection<'_> {
    pub fn code(&self) -> RejectCode {
        match self {
            Rejection::Technology { .. } => RejectCode::Technology,
            Rejection::BuildVolume { .. } => RejectCode::BuildVolume,
            Rejection::Material { .. } => RejectCode::Material,
            Rejection::Nozzle { .. } => RejectCode::Nozzle,
            Rejection::PrinterState(_) => RejectCode::PrinterState,
            Rejection::MaxDistance { .. } => RejectCode::MaxDistance,
            Rejection::NoEstimate { .. } => RejectCode::NoEstimate,
        }
    }

    /// The sentence shown to the customer.
    pub fn message(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Rejection<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Rejection::Technology { wanted, has } => write!(
                f,
                "this is a {} printer; the job needs {}",
                has.as_str(),
                wanted.as_str()
            ),
            Rejection::BuildVolume {
                part_mm,
                printer,
                turnable: true,
            } => write!(
                f,
                "part {} mm does not fit the {} mm build volume in any orientation",
                Dims(part_mm),
                Dims(&printer.build_volume_mm)
            ),
            Rejection::BuildVolume {
                part_mm,
                printer,
                turnable: false,
            } => write!(
                f,
                "the G-code reaches over {} mm, beyond the {} mm build volume (sliced G-code prints where it was sliced)",
                Dims(part_mm),
                Dims(&printer.build_volume_mm)
            ),
            Rejection::Material { wanted, printer } => {
                let loaded = &printer.materials;
                write!(f, "{}", wanted.kind.trim())?;
                if let Some(c) = &wanted.colour {
                    write!(f, " ({})", c.trim())?;
                }
                write!(f, " is not loaded")?;
                if loaded.is_empty() {
                    return write!(f, "; no material is loaded");
                }
                write!(f, "; loaded: ")?;
                for (i, m) in loaded.iter().enumerate() {
                    let sep = if i == 0 { "" } else { ", " };
                    write!(f, "{sep}{} {}", m.kind, m.colour)?;
                }
                Ok(())
            }
            Rejection::Nozzle { wanted_mm, printer } => {
                let available_mm = &printer.nozzle_diameters_mm;
                write!(f, "no {} mm nozzle", Mm(wanted_mm))?;
                if available_mm.is_empty() {
                    return write!(f, "; the printer has no nozzle");
                }
                write!(f, "; fitted: ")?;
                for (i, n) in available_mm.iter().enumerate() {
                    let sep = if i == 0 { "" } else { ", " };
                    write!(f, "{sep}{} mm", Mm(*n))?;
                }
                Ok(())
            }
            Rejection::PrinterState(state) => {
                write!(f, "the printer is {} and takes no jobs", state.as_str())
            }
            Rejection::MaxDistance { km, exact, max_km } => {
                let how = if exact { "" } else { "more than " };
                write!(f, "{how}{km:.1} km away, beyond your {max_km:.1} km limit")
            }
            Rejection::NoEstimate { printer } => {
                let profiles = &printer.profiles;
                if profiles.is_empty() {
                    return write!(f, "the printer declares no print profile to estimate with");
                }
                write!(f, "no print estimate for its profile(s): ")?;
                for (i, p) in profiles.iter().enumerate() {
                    let sep = if i == 0 { "" } else { ", " };
                    write!(f, "{sep}{p}")?;
                }
                Ok(())
            }
        }
    }
}

/// Millimetres without noise: "220", "0.4", "12.5".
struct Mm(f64);

impl fmt::Display for Mm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        if (v - v.round()).abs() < 0.005 {
            write!(f, "{v:.0}")
        } else if (v * 10.0 - (v * 10.0).round()).abs() < 0.005 {
            write!(f, "{v:.1}")
        } else {
            write!(f, "{v:.2}")
        }
    }
}

/// "220x40x30".
struct Dims<'a>(&'a [f64; 3]);

impl fmt::Display for Dims<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [x, y, z] = *self.0;
        write!(f, "{}x{}x{}", Mm(x), Mm(y), Mm(z))
    }
}

/// The requested material resolved against the fleet's interned names.
#[derive(Debug, Clone, Copy)]
enum WantedMaterial {
    Any,
    /// Some printer has declared this kind (and colour, if asked).
    Ids {
        kind: u32,
        colour: Option<u32>,
    },
    /// No printer in the fleet has ever declared it: every printer is rejected.
    Unknown,
}

/// Everything about one request that filters need, computed once per decision: the validated
/// request, the customer's trigonometry, the orientations to try, the material as fleet ids,
/// and a memo of estimates per profile (the estimator is called at most once per distinct
/// profile name).
pub struct JobContext<'a, 'e> {
    pub(crate) request: &'a JobRequest,
    pub(crate) fleet: &'a Fleet,
    pub(crate) origin: Origin,
    pub(crate) fits: FitCandidates,
    material: WantedMaterial,
    estimator: &'e dyn Estimator,
    /// Indexed by profile id; `None` = not asked yet.
    estimates: RefCell<Vec<Option<Option<EstimateFigures>>>>,
}

impl<'a, 'e> JobContext<'a, 'e> {
    /// Validates the request and prepares the per-request data.
    pub fn new(
        request: &'a JobRequest,
        fleet: &'a Fleet,
        estimator: &'e dyn Estimator,
    ) -> Result<Self, SchedulerError> {
        request.validate()?;
        let material = match &request.material {
            None => WantedMaterial::Any,
            Some(m) => match (fleet.name_id(&m.kind), &m.colour) {
                (None, _) => WantedMaterial::Unknown,
                (Some(kind), None) => WantedMaterial::Ids { kind, colour: None },
                (Some(kind), Some(c)) => match fleet.name_id(c) {
                    Some(colour) => WantedMaterial::Ids {
                        kind,
                        colour: Some(colour),
                    },
                    None => WantedMaterial::Unknown,
                },
            },
        };
        Ok(Self {
            request,
            fleet,
            origin: Origin::new(request.customer),
            fits: if request.pre_sliced {
                FitCandidates::as_uploaded(request.part_extent_mm)
            } else {
                FitCandidates::new(request.part_extent_mm)
            },
            material,
            estimator,
            estimates: RefCell::new(vec![None; fleet.profile_count()]),
        })
    }

    pub fn request(&self) -> &'a JobRequest {
        self.request
    }

    /// A registered printer, by id, for running single filters.
    pub fn printer(&self, id: &str) -> Option<PrinterRef<'a>> {
        self.fleet.index_of(id).map(|i| self.at(i))
    }

    pub(crate) fn at(&self, index: usize) -> PrinterRef<'a> {
        PrinterRef {
            printer: &self.fleet.printers()[index],
            gate: &self.fleet.gates()[index],
            slot: &self.fleet.slots()[index],
        }
    }

    #[inline]
    fn estimate(&self, profile_id: u32) -> Option<EstimateFigures> {
        let i = profile_id as usize;
        if let Some(Some(hit)) = self.estimates.borrow().get(i) {
            return *hit;
        }
        let name = self.fleet.profile_name(profile_id)?;
        let figures = usable(self.estimator.estimate(name));
        if let Some(entry) = self.estimates.borrow_mut().get_mut(i) {
            *entry = Some(figures);
        }
        figures
    }
}

/// One printer of the fleet as the filters see it: the compact record they read, and the
/// declaration their messages quote.
#[derive(Debug, Clone, Copy)]
pub struct PrinterRef<'a> {
    pub printer: &'a Printer,
    pub(crate) gate: &'a Gate,
    pub(crate) slot: &'a Slot,
}

/// One filter plugin: a yes/no question about a printer for a job. `Pass` is what the filter
/// learned when the answer is yes (often `()`).
pub trait Filter {
    type Pass;
    /// Short name for logs and docs.
    const NAME: &'static str;
    fn check<'a>(
        &self,
        job: &JobContext<'a, '_>,
        printer: PrinterRef<'a>,
    ) -> Result<Self::Pass, Rejection<'a>>;
}

/// Offline and maintenance printers take no jobs; printing and paused ones queue them.
#[derive(Debug, Clone, Copy, Default)]
pub struct StateFilter;

impl Filter for StateFilter {
    type Pass = ();
    const NAME: &'static str = "printer-state";
    fn check<'a>(&self, _: &JobContext<'a, '_>, p: PrinterRef<'a>) -> Result<(), Rejection<'a>> {
        if p.gate.state.accepts_jobs() {
            Ok(())
        } else {
            Err(Rejection::PrinterState(p.gate.state))
        }
    }
}

/// The printer must use the requested process.
#[derive(Debug, Clone, Copy, Default)]
pub struct TechnologyFilter;

impl Filter for TechnologyFilter {
    type Pass = ();
    const NAME: &'static str = "technology";
    fn check<'a>(&self, job: &JobContext<'a, '_>, p: PrinterRef<'a>) -> Result<(), Rejection<'a>> {
        if p.gate.technology == job.request.technology {
            Ok(())
        } else {
            Err(Rejection::Technology {
                wanted: job.request.technology,
                has: p.gate.technology,
            })
        }
    }
}

/// Great-circle distance from the customer, rejected beyond the request's maximum. Passes the
/// distance on (the distance score needs it).
#[derive(Debug, Clone, Copy, Default)]
pub struct DistanceFilter;

impl DistanceFilter {
    /// The trig-free half of the check: rejects printers whose latitude alone puts them
    /// beyond the limit. The pipeline runs it early, before the costlier filters.
    pub fn quick_check<'a>(
        &self,
        job: &JobContext<'a, '_>,
        p: PrinterRef<'a>,
    ) -> Result<(), Rejection<'a>> {
        match job.request.max_distance_km {
            Some(max_km) => {
                let lower = job.origin.min_distance_km(p.gate.lat_deg);
                if lower > max_km {
                    Err(Rejection::MaxDistance {
                        km: lower,
                        exact: false,
                        max_km,
                    })
                } else {
                    Ok(())
                }
            }
            None => Ok(()),
        }
    }
}

impl Filter for DistanceFilter {
    type Pass = f64;
    const NAME: &'static str = "max-distance";
    fn check<'a>(&self, job: &JobContext<'a, '_>, p: PrinterRef<'a>) -> Result<f64, Rejection<'a>> {
        self.quick_check(job, p)?;
        let km = job
            .origin
            .distance_to(p.gate.lat_deg, p.slot.lon_deg, p.slot.cos_lat);
        match job.request.max_distance_km {
            Some(max_km) if km > max_km => Err(Rejection::MaxDistance {
                km,
                exact: true,
                max_km,
            }),
            _ => Ok(km),
        }
    }
}

/// The requested material (and colour, if given) must be loaded. Matching ignores case and
/// surrounding blanks.
#[derive(Debug, Clone, Copy, Default)]
pub struct MaterialFilter;

impl Filter for MaterialFilter {
    type Pass = ();
    const NAME: &'static str = "material";
    #[inline]
    fn check<'a>(&self, job: &JobContext<'a, '_>, p: PrinterRef<'a>) -> Result<(), Rejection<'a>> {
        let loaded = match job.material {
            WantedMaterial::Any => true,
            WantedMaterial::Unknown => false,
            WantedMaterial::Ids { kind, colour } => job
                .fleet
                .material_ids(p.slot)
                .iter()
                .any(|&[k, c]| k == kind && colour.is_none_or(|want| want == c)),
        };
        match &job.request.material {
            Some(wanted) if !loaded => Err(Rejection::Material {
                wanted,
                printer: p.printer,
            }),
            _ => Ok(()),
        }
    }
}

/// The requested nozzle diameter (if any) must be fitted, within [`NOZZLE_TOLERANCE_MM`].
#[derive(Debug, Clone, Copy, Default)]
pub struct NozzleFilter;

impl Filter for NozzleFilter {
    type Pass = ();
    const NAME: &'static str = "nozzle";
    #[inline]
    fn check<'a>(&self, job: &JobContext<'a, '_>, p: PrinterRef<'a>) -> Result<(), Rejection<'a>> {
        match job.request.nozzle_mm {
            Some(wanted_mm)
                if !job
                    .fleet
                    .nozzles_of(p.slot)
                    .iter()
                    .any(|n| (n - wanted_mm).abs() <= NOZZLE_TOLERANCE_MM) =>
            {
                Err(Rejection::Nozzle {
                    wanted_mm,
                    printer: p.printer,
                })
            }
            _ => Ok(()),
        }
    }
}

/// The part must fit the build volume in some orientation; passes the first one that does.
#[derive(Debug, Clone, Copy, Default)]
pub struct BuildVolumeFilter;

impl BuildVolumeFilter {
    /// The check as the pipeline runs it: the position of the fitting orientation in the
    /// request's candidate list, so candidates stay small.
    pub(crate) fn fit_index<'a>(
        &self,
        job: &JobContext<'a, '_>,
        p: PrinterRef<'a>,
    ) -> Result<usize, Rejection<'a>> {
        job.fits
            .fit_index(&p.slot.build_volume_mm)
            .ok_or(Rejection::BuildVolume {
                part_mm: &job.request.part_extent_mm,
                printer: p.printer,
                turnable: !job.request.pre_sliced,
            })
    }
}

impl Filter for BuildVolumeFilter {
    type Pass = Orientation;
    const NAME: &'static str = "build-volume";
    fn check<'a>(
        &self,
        job: &JobContext<'a, '_>,
        p: PrinterRef<'a>,
    ) -> Result<Orientation, Rejection<'a>> {
        let i = self.fit_index(job, p)?;
        job.fits.get(i).copied().ok_or(Rejection::BuildVolume {
            part_mm: &job.request.part_extent_mm,
            printer: p.printer,
            turnable: !job.request.pre_sliced,
        })
    }
}

/// Where a placement's time and mass come from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProfileEstimate {
    /// Index into `Printer::profiles` of the profile used; `None` when the request's rough
    /// fallback estimate was used because no profile had one.
    pub profile_index: Option<usize>,
    pub figures: EstimateFigures,
}

/// Some profile of the printer must have an estimate for this job: the first one in the
/// printer's order that has one is used. Without one, the request's fallback figure is used
/// if given, else the printer is rejected.
#[derive(Debug, Clone, Copy, Default)]
pub struct EstimateFilter;

impl Filter for EstimateFilter {
    type Pass = ProfileEstimate;
    const NAME: &'static str = "profile-has-estimate";
    #[inline]
    fn check<'a>(
        &self,
        job: &JobContext<'a, '_>,
        p: PrinterRef<'a>,
    ) -> Result<ProfileEstimate, Rejection<'a>> {
        for (i, &id) in job.fleet.profile_ids(p.slot).iter().enumerate() {
            if let Some(figures) = job.estimate(id) {
                return Ok(ProfileEstimate {
                    profile_index: Some(i),
                    figures,
                });
            }
        }
        match job.request.fallback_estimate {
            Some(figures) => Ok(ProfileEstimate {
                profile_index: None,
                figures,
            }),
            None => Err(Rejection::NoEstimate { printer: p.printer }),
        }
    }
}

/// What a printer that passed every filter brings to scoring.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Passed {
    pub distance_km: f64,
    /// Position in the request's [`FitCandidates`].
    pub orientation: usize,
    pub estimate: ProfileEstimate,
}

/// Rebuilds the rejection the pipeline produced for a printer from its code alone (decisions
/// keep one byte per rejected printer, not the figures). Must mirror the filters above; a
/// test checks that it does.
pub(crate) fn rejection_from_code<'a>(
    code: RejectCode,
    request: &'a JobRequest,
    origin: &Origin,
    p: PrinterRef<'a>,
) -> Rejection<'a> {
    match code {
        RejectCode::Technology => Rejection::Technology {
            wanted: request.technology,
            has: p.gate.technology,
        },
        RejectCode::BuildVolume => Rejection::BuildVolume {
            part_mm: &request.part_extent_mm,
            printer: p.printer,
            turnable: !request.pre_sliced,
        },
        RejectCode::Material => match &request.material {
            Some(wanted) => Rejection::Material {
                wanted,
                printer: p.printer,
            },
            // Unreachable for a real decision: without a requested material nothing is
            // rejected for it. Report the printer's state rather than panic.
            None => Rejection::PrinterState(p.gate.state),
        },
        RejectCode::Nozzle => Rejection::Nozzle {
            wanted_mm: request.nozzle_mm.unwrap_or(f64::NAN),
            printer: p.printer,
        },
        RejectCode::PrinterState => Rejection::PrinterState(p.gate.state),
        RejectCode::MaxDistance => {
            let max_km = request.max_distance_km.unwrap_or(f64::INFINITY);
            let lower = origin.min_distance_km(p.gate.lat_deg);
            if lower > max_km {
                Rejection::MaxDistance {
                    km: lower,
                    exact: false,
                    max_km,
                }
            } else {
                Rejection::MaxDistance {
                    km: origin.distance_to(p.gate.lat_deg, p.slot.lon_deg, p.slot.cos_lat),
                    exact: true,
                    max_km,
                }
            }
        }
        RejectCode::NoEstimate => Rejection::NoEstimate { printer: p.printer },
    }
}

/// The filter pipeline in a fixed order chosen for cost: checks on the compact record first
/// (state, technology, latitude band, build volume), then the small arrays (nozzles,
/// materials), then trigonometry, then the estimate. A typical rejected printer costs a couple
/// of comparisons. The order only changes which reason is reported when several apply.
pub(crate) fn run_filters<'a>(
    job: &JobContext<'a, '_>,
    p: PrinterRef<'a>,
) -> Result<Passed, Rejection<'a>> {
    StateFilter.check(job, p)?;
    TechnologyFilter.check(job, p)?;
    DistanceFilter.quick_check(job, p)?;
    let orientation = BuildVolumeFilter.fit_index(job, p)?;
    NozzleFilter.check(job, p)?;
    MaterialFilter.check(job, p)?;
    let distance_km = DistanceFilter.check(job, p)?;
    let estimate = EstimateFilter.check(job, p)?;
    Ok(Passed {
        distance_km,
        orientation,
        estimate,
    })
}

/// The distance of a printer that passed the filters in [`run_filters_bounded`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum BoundedDistance {
    /// Not computed: the squared chord ([`Origin::chord_sq`]), which bounds it.
    ChordSq(f64),
    /// The figure [`DistanceFilter`] computes (the limit fell between the bounds).
    Km(f64),
}

/// What a printer that passed every filter brings to `Scheduler::assign`: like [`Passed`],
/// but the distance is computed only for the few printers whose rank or acceptance depends
/// on it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PassedBounded {
    pub distance: BoundedDistance,
    pub orientation: usize,
    pub estimate: ProfileEstimate,
}

/// The checks of [`run_filters`] that read only the gate (state, technology, latitude band),
/// evaluated without short-circuit so that a loop over printers can run without branches.
#[inline]
pub(crate) fn gate_passes(job: &JobContext<'_, '_>, gate: &Gate) -> bool {
    let near = match job.request.max_distance_km {
        // The negation of `DistanceFilter::quick_check`'s rejection (both figures are finite).
        Some(max_km) => job.origin.min_distance_km(gate.lat_deg) <= max_km,
        None => true,
    };
    gate.state.accepts_jobs() & (gate.technology == job.request.technology) & near
}

/// [`run_filters`] for callers that only need to know whether a printer passes: the same
/// filters in the same order (so the estimator is asked about the same profiles), except
/// that the distance limit is decided on chord bounds ([`distance_lower_km`],
/// [`distance_upper_km`]) and the haversine is computed only when the limit falls between
/// them.
#[inline(always)]
pub(crate) fn run_filters_bounded<'a>(
    job: &JobContext<'a, '_>,
    p: PrinterRef<'a>,
    unit: &[f64; 3],
) -> Option<PassedBounded> {
    StateFilter.check(job, p).ok()?;
    TechnologyFilter.check(job, p).ok()?;
    DistanceFilter.quick_check(job, p).ok()?;
    let orientation = BuildVolumeFilter.fit_index(job, p).ok()?;
    NozzleFilter.check(job, p).ok()?;
    MaterialFilter.check(job, p).ok()?;
    let chord_sq = job.origin.chord_sq(unit);
    let mut distance = BoundedDistance::ChordSq(chord_sq);
    if let Some(max_km) = job.request.max_distance_km {
        if distance_lower_km(chord_sq) > max_km {
            return None;
        }
        if distance_upper_km(chord_sq) > max_km {
            let km = job
                .origin
                .distance_to(p.gate.lat_deg, p.slot.lon_deg, p.slot.cos_lat);
            if km > max_km {
                return None;
            }
            distance = BoundedDistance::Km(km);
        }
    }
    let estimate = EstimateFilter.check(job, p).ok()?;
    Some(PassedBounded {
        distance,
        orientation,
        estimate,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::geo::GeoPoint;
    use crate::model::{Material, PriceModel};

    pub(crate) fn printer(id: &str, lat: f64, lon: f64) -> Printer {
        Printer {
            id: id.into(),
            node_id: "node-1".into(),
            makerspace: format!("Makerspace {id}"),
            technology: Technology::Fdm,
            build_volume_mm: [180.0, 180.0, 180.0],
            nozzle_diameters_mm: vec![0.4],
            materials: vec![Material {
                kind: "PLA".into(),
                colour: "white".into(),
            }],
            profiles: vec!["pla-0.2mm".into()],
            location: GeoPoint::new(lat, lon).unwrap(),
            price: PriceModel {
                per_hour: 2.0,
                per_gram: 0.05,
                setup_fee: 3.0,
                currency: "EUR".into(),
            },
            state: PrinterState::Idle,
            queued_work_s: 0.0,
            active_jobs: 0,
        }
    }

    pub(crate) fn request(lat: f64, lon: f64) -> JobRequest {
        JobRequest {
            job_key: "design-abc".into(),
            part_extent_mm: [50.0, 40.0, 30.0],
            technology: Technology::Fdm,
            pre_sliced: false,
            material: None,
            nozzle_mm: None,
            customer: GeoPoint::new(lat, lon).unwrap(),
            max_distance_km: None,
            quantity: 1,
            fallback_estimate: None,
        }
    }

    pub(crate) fn hour_estimate(profile: &str) -> Option<EstimateFigures> {
        (profile == "pla-0.2mm").then_some(EstimateFigures {
            print_time_s: 3600.0,
            filament_g: 20.0,
        })
    }

    /// Runs one filter on one printer; the rejection as (code, message).
    fn run<F: Filter>(f: F, r: &JobRequest, p: &Printer) -> Result<F::Pass, (RejectCode, String)> {
        run_with(f, r, p, &hour_estimate)
    }

    fn run_with<F: Filter>(
        f: F,
        r: &JobRequest,
        p: &Printer,
        estimator: &dyn Estimator,
    ) -> Result<F::Pass, (RejectCode, String)> {
        let fleet = Fleet::new([p.clone()]).unwrap();
        let job = JobContext::new(r, &fleet, estimator).unwrap();
        let at = job.printer(&p.id).unwrap();
        f.check(&job, at).map_err(|e| (e.code(), e.message()))
    }

    #[test]
    fn state_filter_rejects_offline_and_maintenance_only() {
        let r = request(47.0, 8.0);
        let mut p = printer("p", 47.0, 8.0);
        for (state, ok) in [
            (PrinterState::Idle, true),
            (PrinterState::Printing, true),
            (PrinterState::Paused, true),
            (PrinterState::Offline, false),
            (PrinterState::Maintenance, false),
        ] {
            p.state = state;
            match run(StateFilter, &r, &p) {
                Ok(()) => assert!(ok, "{state:?} accepted"),
                Err((code, message)) => {
                    assert!(!ok, "{state:?} rejected");
                    assert_eq!(code, RejectCode::PrinterState);
                    assert!(message.contains(state.as_str()), "{message}");
                }
            }
        }
    }

    #[test]
    fn technology_filter() {
        let mut r = request(47.0, 8.0);
        r.technology = Technology::Resin;
        let mut p = printer("p", 47.0, 8.0);
        assert_eq!(
            run(TechnologyFilter, &r, &p),
            Err((
                RejectCode::Technology,
                "this is a FDM printer; the job needs resin".to_string()
            ))
        );
        p.technology = Technology::Resin;
        assert!(run(TechnologyFilter, &r, &p).is_ok());
    }

    #[test]
    fn distance_filter_uses_limit_and_passes_distance() {
        let mut r = request(47.0, 8.0);
        let near = printer("near", 47.01, 8.0); // ~1.1 km north
        let far = printer("far", 47.5, 8.0); // ~55.6 km north
        let oblique = printer("oblique", 47.0, 8.2); // ~15.2 km east, same latitude
        let d = run(DistanceFilter, &r, &far).unwrap();
        assert!((d - 55.6).abs() < 0.1, "{d}");
        r.max_distance_km = Some(10.0);
        let d = run(DistanceFilter, &r, &near).unwrap();
        assert!((d - 1.11).abs() < 0.01, "{d}");
        // Rejected by the latitude pre-check, message says "more than".
        let (code, message) = run(DistanceFilter, &r, &far).unwrap_err();
        assert_eq!(code, RejectCode::MaxDistance);
        assert!(message.starts_with("more than 55.6 km"), "{message}");
        // Same latitude: only the exact great-circle distance can reject it.
        let (_, message) = run(DistanceFilter, &r, &oblique).unwrap_err();
        assert!(
            message.starts_with("15.2 km away, beyond your 10.0 km limit"),
            "{message}"
        );
    }

    #[test]
    fn material_filter_matches_kind_and_optional_colour() {
        let mut r = request(47.0, 8.0);
        let p = printer("p", 47.0, 8.0);
        let want = |kind: &str, colour: Option<&str>| {
            Some(MaterialRequest {
                kind: kind.into(),
                colour: colour.map(Into::into),
            })
        };
        r.material = want(" pla", None);
        assert!(run(MaterialFilter, &r, &p).is_ok());
        r.material = want("PLA", Some("WHITE "));
        assert!(run(MaterialFilter, &r, &p).is_ok());
        r.material = want("PLA", Some("Red"));
        assert_eq!(
            run(MaterialFilter, &r, &p),
            Err((
                RejectCode::Material,
                "PLA (Red) is not loaded; loaded: PLA white".to_string()
            ))
        );
        // A colour that exists in the fleet, but on another material.
        let mut two = p.clone();
        two.materials.push(Material {
            kind: "PETG".into(),
            colour: "red".into(),
        });
        assert!(run(MaterialFilter, &r, &two).is_err());
        r.material = want("petg", Some("red"));
        assert!(run(MaterialFilter, &r, &two).is_ok());
    }

    #[test]
    fn nozzle_filter() {
        let mut r = request(47.0, 8.0);
        let p = printer("p", 47.0, 8.0);
        assert!(run(NozzleFilter, &r, &p).is_ok());
        r.nozzle_mm = Some(0.4000001);
        assert!(run(NozzleFilter, &r, &p).is_ok());
        r.nozzle_mm = Some(0.6);
        assert_eq!(
            run(NozzleFilter, &r, &p),
            Err((
                RejectCode::Nozzle,
                "no 0.6 mm nozzle; fitted: 0.4 mm".to_string()
            ))
        );
    }

    #[test]
    fn build_volume_filter_reports_orientation_or_sizes() {
        let mut r = request(47.0, 8.0);
        let p = printer("p", 47.0, 8.0);
        // 220 long: too long for either bed axis, and turned 45 degrees its 220x40 footprint
        // needs (220+40)*0.707 = 183.8 mm; standing on any other face is 220 tall.
        r.part_extent_mm = [220.0, 40.0, 40.0];
        assert_eq!(
            run(BuildVolumeFilter, &r, &p),
            Err((
                RejectCode::BuildVolume,
                "part 220x40x40 mm does not fit the 180x180x180 mm build volume in any orientation"
                    .to_string()
            ))
        );
        // ...while a thinner bar of the same length fits turned 45 degrees.
        r.part_extent_mm = [220.0, 20.0, 30.0];
        let o = run(BuildVolumeFilter, &r, &p).unwrap();
        assert_eq!(o.rotation_z_deg, 45);
        // Pre-sliced G-code is never turned, and the reason says so.
        r.pre_sliced = true;
        assert_eq!(
            run(BuildVolumeFilter, &r, &p),
            Err((
                RejectCode::BuildVolume,
                "the G-code reaches over 220x20x30 mm, beyond the 180x180x180 mm build volume (sliced G-code prints where it was sliced)"
                    .to_string()
            ))
        );
    }

    #[test]
    fn estimate_filter_uses_first_estimated_profile_or_fallback() {
        let mut r = request(47.0, 8.0);
        let mut p = printer("p", 47.0, 8.0);
        p.profiles = vec!["petg-fine".into(), "pla-0.2mm".into()];
        let pe = run(EstimateFilter, &r, &p).unwrap();
        assert_eq!(pe.profile_index, Some(1));
        assert_eq!(pe.figures.print_time_s, 3600.0);
        p.profiles = vec!["petg-fine".into()];
        assert_eq!(
            run(EstimateFilter, &r, &p),
            Err((
                RejectCode::NoEstimate,
                "no print estimate for its profile(s): petg-fine".to_string()
            ))
        );
        r.fallback_estimate = Some(EstimateFigures {
            print_time_s: 100.0,
            filament_g: 1.0,
        });
        let pe = run(EstimateFilter, &r, &p).unwrap();
        assert_eq!(pe.profile_index, None);
        assert_eq!(pe.figures.print_time_s, 100.0);
    }

    #[test]
    fn estimator_is_called_once_per_profile() {
        let calls = std::cell::Cell::new(0);
        let counting = |profile: &str| {
            calls.set(calls.get() + 1);
            hour_estimate(profile)
        };
        let r = request(47.0, 8.0);
        let fleet = Fleet::new((0..5).map(|i| printer(&format!("p{i}"), 47.0, 8.0))).unwrap();
        let job = JobContext::new(&r, &fleet, &counting).unwrap();
        for i in 0..5 {
            EstimateFilter.check(&job, job.at(i)).unwrap();
        }
        assert_eq!(calls.get(), 1);
    }

    #[test]
    fn invalid_estimates_count_as_missing() {
        let r = request(47.0, 8.0);
        let nan = |_: &str| {
            Some(EstimateFigures {
                print_time_s: f64::NAN,
                filament_g: 1.0,
            })
        };
        let p = printer("p", 47.0, 8.0);
        let (code, _) = run_with(EstimateFilter, &r, &p, &nan).unwrap_err();
        assert_eq!(code, RejectCode::NoEstimate);
    }

    #[test]
    fn rejection_rebuilt_from_code_matches_the_filters() {
        let mut r = request(47.0, 8.0);
        r.material = Some(MaterialRequest {
            kind: "PLA".into(),
            colour: Some("white".into()),
        });
        r.nozzle_mm = Some(0.4);
        r.max_distance_km = Some(20.0);
        let mut printers = Vec::new();
        let mut p = printer("state", 47.0, 8.0);
        p.state = PrinterState::Offline;
        printers.push(p);
        let mut p = printer("tech", 47.0, 8.0);
        p.technology = Technology::Sls;
        printers.push(p);
        printers.push(printer("far-north", 48.0, 8.0));
        printers.push(printer("far-east", 47.0, 8.5));
        let mut p = printer("small", 47.0, 8.0);
        p.build_volume_mm = [10.0, 10.0, 10.0];
        printers.push(p);
        let mut p = printer("nozzle", 47.0, 8.0);
        p.nozzle_diameters_mm = vec![0.8];
        printers.push(p);
        let mut p = printer("material", 47.0, 8.0);
        p.materials[0].colour = "black".into();
        printers.push(p);
        let mut p = printer("estimate", 47.0, 8.0);
        p.profiles = vec!["unknown".into()];
        printers.push(p);
        let fleet = Fleet::new(printers).unwrap();
        let job = JobContext::new(&r, &fleet, &hour_estimate).unwrap();
        let mut codes = Vec::new();
        for i in 0..fleet.len() {
            let p = job.at(i);
            let original = run_filters(&job, p).unwrap_err();
            let rebuilt = rejection_from_code(original.code(), &r, &job.origin, p);
            assert_eq!(rebuilt, original, "{}", p.printer.id);
            codes.push(original.code());
        }
        assert_eq!(
            codes,
            [
                RejectCode::PrinterState,
                RejectCode::Technology,
                RejectCode::MaxDistance,
                RejectCode::MaxDistance,
                RejectCode::BuildVolume,
                RejectCode::Nozzle,
                RejectCode::Material,
                RejectCode::NoEstimate,
            ]
        );
    }
}
