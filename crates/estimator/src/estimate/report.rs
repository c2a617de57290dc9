//! Report: turns the run's totals into the public [`Estimate`] (filament from volume, the
//! per-feature breakdown, the total time), or refuses a model of which nothing would be printed.

use std::f64::consts::PI;

use super::work::{Acc, Totals};
use crate::profile::Profile;
use crate::{Breakdown, Estimate, EstimateError, FeatureEstimate};

/// What the estimate reports besides the totals.
pub(super) struct Facts {
    pub(super) layers: usize,
    pub(super) extent: [f64; 3],
    pub(super) overhang_area_mm2: f64,
    pub(super) unclosed: u32,
    pub(super) warnings: Vec<String>,
}

pub(super) fn report(
    p: &Profile,
    totals: &Totals,
    facts: Facts,
) -> Result<Estimate, EstimateError> {
    let filament_area = PI * (p.filament_diameter_mm / 2.0).powi(2);
    let f = |volume: f64| volume / filament_area;
    let mk = |acc: &Acc| FeatureEstimate {
        time_s: acc.time_s,
        filament_mm: f(acc.volume_mm3),
        path_mm: acc.path_mm,
    };
    let breakdown = Breakdown {
        perimeters: mk(&totals.perimeters),
        infill: mk(&totals.infill),
        solid: mk(&totals.solid),
        support: mk(&totals.support),
        skirt: mk(&totals.skirt),
        travel: FeatureEstimate {
            time_s: totals.travel_time_s,
            filament_mm: 0.0,
            path_mm: totals.travel_path_mm,
        },
    };
    let volume: f64 = [
        &totals.perimeters,
        &totals.infill,
        &totals.solid,
        &totals.support,
        &totals.skirt,
    ]
    .iter()
    .map(|a| a.volume_mm3)
    .sum();
    let model_volume: f64 = [&totals.perimeters, &totals.infill, &totals.solid]
        .iter()
        .map(|a| a.volume_mm3)
        .sum();
    if model_volume <= 0.0 {
        return Err(EstimateError::NothingToPrint {
            reason: format!(
                "every feature of the model is thinner than a {} mm extrusion; check the units or use a finer nozzle",
                p.external_perimeter_width_mm
            ),
        });
    }
    let print_time_s = [
        breakdown.perimeters.time_s,
        breakdown.infill.time_s,
        breakdown.solid.time_s,
        breakdown.support.time_s,
        breakdown.skirt.time_s,
        breakdown.travel.time_s,
    ]
    .iter()
    .sum();
    Ok(Estimate {
        profile_name: p.name.clone(),
        print_time_s,
        filament_mm: f(volume),
        filament_g: volume / 1000.0 * p.filament_density_g_cm3,
        filament_cm3: volume / 1000.0,
        layers: facts.layers as u32,
        extent_mm: facts.extent,
        breakdown,
        travel_moves: totals.travel_moves,
        retractions: totals.retractions,
        cooling_slowdown_s: totals.cooling_slowdown_s,
        slowed_layers: totals.slowed_layers,
        overhang_area_mm2: facts.overhang_area_mm2,
        unclosed_loops: facts.unclosed,
        warnings: facts.warnings,
    })
}
