//! Report: turns the run's totals into the public [`Estimate`] (filament from volume, the
//! per-feature breakdown, the total time), or refuses a model of which nothing would be printed.

use std::f64::consts::PI;

use super::work::{Acc, Feature, Totals};
use crate::profile::Profile;
use crate::{Breakdown, Estimate, EstimateError, FeatureEstimate, RoleBreakdown};

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
    let role = |f: Feature| mk(&totals.role(f));
    let roles = RoleBreakdown {
        external_perimeter: role(Feature::ExternalPerimeter),
        perimeter: role(Feature::Perimeter),
        overhang_perimeter: role(Feature::OverhangPerimeter),
        internal_infill: role(Feature::Infill),
        solid_infill: role(Feature::Solid),
        top_solid_infill: role(Feature::TopSolid),
        bridge_infill: role(Feature::Bridge),
        gap_fill: role(Feature::GapFill),
        skirt: role(Feature::Skirt),
        support: mk(&totals.support),
        travel: FeatureEstimate {
            time_s: totals.travel_time_s,
            filament_mm: 0.0,
            path_mm: totals.travel_path_mm,
        },
        retract: FeatureEstimate {
            time_s: totals.retract_time_s,
            filament_mm: 0.0,
            path_mm: 0.0,
        },
        custom: FeatureEstimate {
            time_s: p.custom_gcode_time_s,
            filament_mm: 0.0,
            path_mm: 0.0,
        },
    };
    let sum = |parts: &[FeatureEstimate]| FeatureEstimate {
        time_s: parts.iter().map(|x| x.time_s).sum(),
        filament_mm: parts.iter().map(|x| x.filament_mm).sum(),
        path_mm: parts.iter().map(|x| x.path_mm).sum(),
    };
    let breakdown = Breakdown {
        perimeters: sum(&[
            roles.external_perimeter,
            roles.perimeter,
            roles.overhang_perimeter,
            roles.gap_fill,
        ]),
        infill: roles.internal_infill,
        solid: sum(&[
            roles.solid_infill,
            roles.top_solid_infill,
            roles.bridge_infill,
        ]),
        support: roles.support,
        skirt: roles.skirt,
        // Start and end G-code is neither part nor skirt: booked with the moves around them.
        travel: sum(&[roles.travel, roles.retract, roles.custom]),
    };
    let volume: f64 =
        totals.roles.iter().map(|a| a.volume_mm3).sum::<f64>() + totals.support.volume_mm3;
    let model_volume: f64 = totals.roles.iter().map(|a| a.volume_mm3).sum::<f64>()
        - totals.role(Feature::Skirt).volume_mm3;
    if model_volume <= 0.0 {
        return Err(EstimateError::NothingToPrint {
            reason: format!(
                "every feature of the model is thinner than a {} mm extrusion; check the units or use a finer nozzle",
                p.external_perimeter_width_mm
            ),
        });
    }
    let print_time_s = roles.named().iter().map(|(_, r)| r.time_s).sum();
    Ok(Estimate {
        profile_name: p.name.clone(),
        print_time_s,
        filament_mm: f(volume),
        filament_g: volume / 1000.0 * p.filament_density_g_cm3,
        filament_cm3: volume / 1000.0,
        layers: facts.layers as u32,
        extent_mm: facts.extent,
        breakdown,
        roles,
        travel_moves: totals.travel_moves,
        retractions: totals.retractions,
        cooling_slowdown_s: totals.cooling_slowdown_s,
        slowed_layers: totals.slowed_layers,
        overhang_area_mm2: facts.overhang_area_mm2,
        unclosed_loops: facts.unclosed,
        warnings: facts.warnings,
    })
}
