//! The estimate pipeline, one module per stage. [`estimate`] runs them in this order: `prepare`
//! (checks, slicing), `layers` with `perimeters` (regions, perimeter loops, infill area), `skins`
//! (top and bottom surfaces), `plan` (each layer's extrusions, in parallel), `travel` and
//! `cooling` (layer by layer, in order), `support`, and `report` (totals into an [`Estimate`]).
//! `flow` (the bead model) and `work` (what stages hand on) are shared by all of them.

mod cooling;
mod flow;
mod layers;
mod perimeters;
mod plan;
mod prepare;
mod report;
mod skins;
mod support;
mod travel;
mod work;

use rayon::prelude::*;

use crate::profile::{Cornering, Profile};
use crate::{Estimate, EstimateError};
use prepare::Prepared;
use work::{LayerWork, Totals};

pub use prepare::{LayerOutline, slice_outlines};

/// What every stage reads: the profile (speeds already limited) and its cornering model.
struct Ctx<'a> {
    p: &'a Profile,
    cornering: Cornering,
}

fn layer_height(p: &Profile, i: usize) -> f64 {
    if i == 0 {
        p.first_layer_height_mm
    } else {
        p.layer_height_mm
    }
}

/// Estimates print time and filament of the mesh (triangles in mm) on the profile.
///
/// Runs the stages in order: prepare (refuse, drop onto the bed, slice), per-layer geometry and
/// perimeters, skins, extrusion planning per layer, then travel and cooling layer by layer, support,
/// and the report.
pub fn estimate(triangles: &[[[f32; 3]; 3]], profile: &Profile) -> Result<Estimate, EstimateError> {
    profile.validate()?;
    let limited = profile.with_speeds_limited();
    let p = &limited;
    let Prepared {
        origin,
        extent,
        sliced,
        ..
    } = prepare::prepare(triangles, p)?;
    let (unclosed, mut warnings) = prepare::slicing_warnings(&sliced);

    let ctx = Ctx {
        p,
        cornering: p.cornering,
    };
    let geometry = layers::layer_geometry(&ctx, &sliced);
    let surfaces = skins::skin_surfaces(&ctx, &geometry);

    // The skirt goes around the first layer that prints anything (a broken mesh may start with
    // empty layers).
    let first_printed = geometry
        .iter()
        .position(|g| !g.region.is_empty())
        .unwrap_or(0);
    // Layers are independent until travel and cooling, which are cheap and sequential.
    let works: Vec<LayerWork> = (0..geometry.len())
        .into_par_iter()
        .map(|i| {
            let mut work = LayerWork::default();
            plan::extrusions_for_layer(
                &ctx,
                &geometry,
                &surfaces,
                i,
                layer_height(p, i),
                &mut work,
            );
            if i >= first_printed {
                plan::skirt(&ctx, &geometry[first_printed], i - first_printed, &mut work);
            }
            work
        })
        .collect();
    let mut totals = Totals::default();
    let mut position = travel::Spot::default();
    for (i, (g, work)) in geometry.iter().zip(works).enumerate() {
        let h = layer_height(p, i);
        travel::travel_for_layer(&ctx, g, &work, &mut position, &mut totals);
        cooling::finish_layer(&ctx, work, h, &mut totals);
        // Layer change: a z move at the z speed.
        totals.travel_time_s += p.z_move_time(h);
    }

    // Support, when enabled: columns under overhangs flatter than the threshold.
    let overhang = support::overhang_columns(triangles, origin, p);
    if p.support_enabled && overhang.area_mm2 > 0.0 {
        support::support(&ctx, &overhang, &mut totals);
    } else if overhang.area_mm2 > 0.0 && !p.support_enabled {
        warnings.push(format!(
            "{:.0} mm2 of overhang flatter than {} deg would need support, which this profile disables",
            overhang.area_mm2, p.support_threshold_deg
        ));
    }

    report::report(
        p,
        &totals,
        report::Facts {
            layers: geometry.len(),
            extent,
            overhang_area_mm2: overhang.area_mm2,
            unclosed,
            warnings,
        },
    )
}

/// Fixtures the stage tests share.
#[cfg(test)]
mod testutil {
    use crate::geom::{self, Shapes};
    use crate::profile::Profile;

    pub(super) fn profile() -> Profile {
        Profile::builtin("prusaslicer-b").expect("built-in")
    }

    /// An axis-aligned square region with its lower-left corner at (`x0`, `y0`).
    pub(super) fn square(x0: f64, y0: f64, side: f64) -> Shapes {
        geom::region_from_loops(&[vec![
            [x0, y0],
            [x0 + side, y0],
            [x0 + side, y0 + side],
            [x0, y0 + side],
        ]])
    }
}
