//! Quoting: from a customer's spec to the scheduler's routing request (`request`), a quote
//! with the nearest rejections explained (`quote`), and the routing of a submission
//! (`assign`). The scheduler crate decides; this module gathers what it needs and turns its
//! answers into placements a customer can read.

use std::collections::HashMap;

use fabrouter_scheduler as sched;

use crate::access::{self, DesignUse, Principal};
use crate::model::{
    JobSpec, Money, Placement, PlacementEstimate, Quote, Rejection, Rotation, Score, parse_name,
};
use crate::ports::{DesignFacts, DesignKind};
use crate::{Error, Network, Result};

/// Most rejected or lower-ranked printers a quote explains (the nearest ones): listing every
/// one of 10,000 printers would cost more than the decision and help no customer.
pub const MAX_QUOTE_REASONS: usize = 200;

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

/// FAILED_PRECONDITION: the request is valid, but no registered printer can take it now.
fn no_printer(rejected: usize) -> Error {
    Error::precondition(format!(
        "no registered printer can take this job ({rejected} rejected); QuoteJob lists each printer's reason"
    ))
}

/// The scheduler's orientation as turns about x, y, z (what a slicer is told).
fn rotation(o: &sched::Orientation) -> Rotation {
    let (x_deg, y_deg) = match o.up {
        sched::UpAxis::Z => (0.0, 0.0),
        // x up: a quarter turn about y takes the part's x axis to z.
        sched::UpAxis::X => (0.0, -90.0),
        // y up: a quarter turn about x takes the part's y axis to z.
        sched::UpAxis::Y => (90.0, 0.0),
    };
    Rotation {
        x_deg,
        y_deg,
        z_deg: f64::from(o.rotation_z_deg),
    }
}

fn estimate(
    design: &str,
    profile: &Option<String>,
    f: &sched::EstimateFigures,
) -> PlacementEstimate {
    PlacementEstimate {
        design: design.to_string(),
        profile: profile.clone().unwrap_or_else(|| "rough".into()),
        print_time_s: f.print_time_s,
        filament_g: f.filament_g,
    }
}

/// A quote option as a placement (with its scores).
pub(crate) fn option_placement(o: &sched::RouteOption, design: &str) -> Placement {
    let c = &o.contributions;
    Placement {
        printer: o.printer_id.clone(),
        makerspace: o.makerspace.clone(),
        distance_km: o.distance_km,
        price: Some(Money::of(o.total_price, &o.currency)),
        eta_s: o.eta_s,
        estimate: Some(estimate(design, &o.profile, &o.estimate)),
        reasons: o.reasons.clone(),
        scores: [
            ("distance", c.distance),
            ("queue_eta", c.queue),
            ("price", c.price),
            ("load", c.load),
        ]
        .into_iter()
        .map(|(score, value)| Score {
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

/// A submission's placement of one copy.
pub(crate) fn placement(p: &sched::Placement, design: &str) -> Placement {
    Placement {
        printer: p.printer_id.clone(),
        makerspace: p.makerspace.clone(),
        distance_km: p.distance_km,
        price: Some(Money::of(p.price, &p.currency)),
        eta_s: p.eta_s,
        estimate: Some(estimate(design, &p.profile, &p.estimate)),
        reasons: p.reasons.clone(),
        orientation: p.orientation.describe(),
        rotation: Some(rotation(&p.orientation)),
        ..Default::default()
    }
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

impl Network {
    /// The design with this bare id, if it still exists.
    pub(crate) fn design_facts(&self, id: &str) -> Result<DesignFacts> {
        self.catalog
            .design(id)?
            .ok_or_else(|| Error::precondition(format!("designs/{id} no longer exists")))
    }

    /// The routing request for a design and a job spec.
    pub(crate) fn request(
        &self,
        design: &DesignFacts,
        spec: &JobSpec,
        customer: sched::GeoPoint,
        key: &str,
    ) -> Result<sched::JobRequest> {
        let (extent, rough, pre_sliced, sliced_for) = match &design.kind {
            DesignKind::Gcode {
                print_max_mm,
                figures,
                filament_type,
            } => {
                // G-code places the part at absolute bed coordinates: the bed must reach as
                // far as the farthest extrusion (less the margin printers have beyond their
                // nominal bed).
                let reach = |v: f64| (v - fabrouter_gcode::BED_MARGIN_MM).max(0.1);
                (
                    [
                        reach(print_max_mm[0]),
                        reach(print_max_mm[1]),
                        print_max_mm[2].max(0.1),
                    ],
                    *figures,
                    true,
                    (!filament_type.is_empty()).then(|| filament_type.clone()),
                )
            }
            DesignKind::Mesh {
                extent_mm,
                volume_mm3,
                ..
            } => (*extent_mm, rough_estimate(*volume_mm3), false, None),
        };
        let req = sched::JobRequest {
            job_key: key.to_string(),
            part_extent_mm: extent,
            pre_sliced,
            technology: spec.technology.unwrap_or(sched::Technology::Fdm),
            material: spec
                .material
                .as_ref()
                .filter(|m| !m.kind.is_empty())
                .map(|m| sched::MaterialRequest {
                    kind: m.kind.clone(),
                    colour: (!m.colour.is_empty()).then(|| m.colour.clone()),
                })
                // Pre-sliced G-code was made for one material; unasked, that is the one.
                .or_else(|| sliced_for.map(|kind| sched::MaterialRequest { kind, colour: None })),
            nozzle_mm: (spec.nozzle_mm > 0.0).then_some(spec.nozzle_mm),
            customer,
            max_distance_km: (spec.max_distance_km > 0.0).then_some(spec.max_distance_km),
            quantity: spec.quantity.max(1),
            fallback_estimate: Some(rough),
        };
        req.validate()
            .map_err(|e| Error::invalid("spec", e.to_string()))?;
        Ok(req)
    }

    /// Validates a spec from a customer and returns the design and routing request.
    pub(crate) fn customer_request(
        &self,
        who: &Principal,
        spec: &JobSpec,
        key: &str,
    ) -> Result<(DesignFacts, sched::JobRequest)> {
        let name = &spec.design;
        let id = parse_name(name, "designs").ok_or_else(|| {
            Error::invalid(
                "spec.design",
                format!("{name:?} is not a design name like designs/{{id}}"),
            )
        })?;
        let design = self.catalog.design(id)?;
        access::design(
            who,
            DesignUse::Read,
            name,
            design.as_ref().map(|d| d.owner.as_str()),
            || false,
        )?;
        let design = design.ok_or_else(|| Error::Corrupt(format!("{name} vanished")))?;
        if let DesignKind::Mesh {
            not_printable: Some(why),
            ..
        } = &design.kind
        {
            return Err(Error::precondition(format!(
                "{name} is not printable ({why}); repair it first (RepairDesign)"
            )));
        }
        let loc = spec.customer_location.ok_or_else(|| {
            Error::invalid(
                "spec.customer_location",
                "a customer location is needed to find the nearest printer (it is stored only as a ~1 km cell)",
            )
        })?;
        let customer = sched::GeoPoint::new(loc.lat_deg, loc.lon_deg)
            .map_err(|e| Error::invalid("spec.customer_location", e.to_string()))?;
        let req = self.request(&design, spec, customer, key)?;
        Ok((design, req))
    }

    /// The best `max_options` printers for a spec (0: 3, at most 20), and why the nearest
    /// others were left out.
    pub fn quote(&self, who: &Principal, spec: &JobSpec, max_options: u32) -> Result<Quote> {
        let (design, request) = self.customer_request(who, spec, &spec.design)?;
        let top = if max_options == 0 {
            3
        } else {
            max_options.min(20)
        } as usize;
        let figures = self.figures(&design, self.fleet_profiles());
        let fleet = self.fleet();
        let estimator = |p: &str| figures.get(p).copied();
        let decision = self
            .scheduler
            .quote(&request, &fleet, &estimator, top)
            .map_err(|e| Error::invalid("spec", e.to_string()))?;
        // The nearest printers' reasons are the ones a customer asks about; only those are
        // picked (a partial selection, not a sort of the fleet) and formatted.
        let near = NearnessKey::new(request.customer);
        let picked = nearest(
            decision.rejections().map(|r| near.of(&r.printer.location)),
            decision.rejected(),
            MAX_QUOTE_REASONS,
        );
        let mut rejections: Vec<Rejection> = pick(decision.rejections(), &picked)
            .into_iter()
            .map(|r| Rejection {
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
                Rejection {
                    printer: r.printer_id().to_string(),
                    code: "ranked_lower".into(),
                    message: r.reason_vs(top),
                }
            }));
        }
        let design_name = design.name();
        let online = fleet
            .printers()
            .iter()
            .filter(|p| p.state.accepts_jobs())
            .count();
        Ok(Quote {
            printers_registered: fleet.len() as u32,
            printers_online: online as u32,
            printers_rejected: decision.rejected() as u32,
            options: decision
                .options
                .iter()
                .map(|o| option_placement(o, &design_name))
                .collect(),
            rejections,
            coarse_geohash: sched::coarse_location(request.customer)
                .map(|c| c.as_str().to_string())
                .unwrap_or_default(),
        })
    }

    /// Routes a request on the fleet as it is now (read lock only).
    pub(crate) fn assign<E: sched::Estimator>(
        &self,
        request: &sched::JobRequest,
        estimator: &E,
        chosen: Option<&str>,
    ) -> Result<sched::Assignment> {
        let assignment = self
            .scheduler
            .assign(request, &self.fleet(), estimator, chosen)
            .map_err(|e| match e {
                sched::SchedulerError::UnknownPrinter(_)
                | sched::SchedulerError::ChosenPrinterRejected { .. } => {
                    Error::precondition(e.to_string())
                }
                // The request is well formed; the fleet cannot take it now.
                sched::SchedulerError::NoCapablePrinter { rejected } => no_printer(rejected),
                other => Error::invalid("spec", other.to_string()),
            })?;
        if assignment.placements.is_empty() {
            return Err(no_printer(assignment.rejected));
        }
        Ok(assignment)
    }

    /// Whether every placement's printer still takes jobs.
    pub(crate) fn placements_open(&self, assignment: &sched::Assignment) -> bool {
        let fleet = self.fleet();
        assignment.placements.iter().all(|p| {
            fleet
                .get(&p.printer_id)
                .is_some_and(|x| x.state.accepts_jobs())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_picks_the_smallest_keys_in_order_with_ties_by_position() {
        let keys = [5.0, 1.0, 3.0, 1.0, 9.0];
        assert_eq!(nearest(keys.into_iter(), 5, 3), vec![1, 3, 2]);
        assert_eq!(nearest(keys.into_iter(), 5, 0), Vec::<usize>::new());
        assert_eq!(nearest(keys.into_iter(), 5, 10), vec![1, 3, 2, 0, 4]);
        assert_eq!(pick("abcde".chars(), &[4, 0]), vec!['e', 'a']);
    }

    #[test]
    fn rotation_turns_the_up_axis_onto_z() {
        let o = |up, z| sched::Orientation {
            up,
            rotation_z_deg: z,
            placed_extent_mm: [1.0; 3],
        };
        assert_eq!(rotation(&o(sched::UpAxis::Z, 0)), Rotation::default());
        assert_eq!(rotation(&o(sched::UpAxis::X, 45)).y_deg, -90.0);
        let y = rotation(&o(sched::UpAxis::Y, 90));
        assert_eq!((y.x_deg, y.z_deg), (90.0, 90.0));
    }

    #[test]
    fn the_rough_figure_grows_with_volume() {
        let small = rough_estimate(1_000.0);
        let big = rough_estimate(100_000.0);
        assert!(big.print_time_s > small.print_time_s && big.filament_g > small.filament_g);
        assert_eq!(rough_estimate(0.0).print_time_s, 300.0);
    }
}
