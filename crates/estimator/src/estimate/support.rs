//! Support: columns under down-facing surfaces flatter than the profile's threshold, filled with
//! rectilinear lines. Estimated from the triangles rather than per layer; the overhang area is
//! reported even when support is disabled.

use super::Ctx;
use super::flow::{bead_area, spacing};
use super::plan::hatch_time;
use super::travel::travel_move;
use super::work::{LayerWork, Totals};
use crate::profile::{AccelRole, Profile};
use crate::slice;

/// Down-facing surface that needs support and the volume of the columns under it (down to the bed).
pub(super) struct Overhang {
    pub(super) area_mm2: f64,
    pub(super) column_volume_mm3: f64,
}

pub(super) fn overhang_columns(
    triangles: &[[[f32; 3]; 3]],
    origin: [f64; 3],
    p: &Profile,
) -> Overhang {
    let cos_limit = p.support_threshold_deg.to_radians().cos();
    let mut area = 0.0;
    let mut volume = 0.0;
    for t in triangles {
        let t = slice::shifted(t, origin);
        let u = [t[1][0] - t[0][0], t[1][1] - t[0][1], t[1][2] - t[0][2]];
        let w = [t[2][0] - t[0][0], t[2][1] - t[0][1], t[2][2] - t[0][2]];
        let n = [
            u[1] * w[2] - u[2] * w[1],
            u[2] * w[0] - u[0] * w[2],
            u[0] * w[1] - u[1] * w[0],
        ];
        let len = (n[0] * n[0] + n[1] * n[1] + n[2] * n[2]).sqrt();
        if len <= 0.0 || n[2] >= 0.0 {
            continue;
        }
        // Slope from horizontal is acos(|nz|); flatter than the threshold means |nz| > cos(threshold).
        if -n[2] / len <= cos_limit {
            continue;
        }
        let zc = (t[0][2] + t[1][2] + t[2][2]) / 3.0;
        if zc < p.first_layer_height_mm {
            continue; // on the bed
        }
        let projected = 0.5 * -n[2];
        area += projected;
        volume += projected * zc;
    }
    Overhang {
        area_mm2: area,
        column_volume_mm3: volume,
    }
}

/// Support as rectilinear lines at the profile's spacing filling the columns under overhangs, with one
/// travel (and retraction) per support layer.
pub(super) fn support(ctx: &Ctx, o: &Overhang, totals: &mut Totals) {
    let p = ctx.p;
    let h = p.layer_height_mm;
    let w = p.support_width_mm;
    let pitch = p.support_spacing_mm + spacing(w, h);
    let path = o.column_volume_mm3 / h / pitch;
    let mean_height = o.column_volume_mm3 / o.area_mm2;
    let support_layers = (mean_height / h).ceil().max(1.0);
    let chord = (o.area_mm2.sqrt()).max(pitch);
    let acc = &mut totals.support;
    acc.path_mm += path;
    acc.volume_mm3 += path * bead_area(w, h);
    acc.time_s += hatch_time(
        ctx,
        path,
        chord,
        pitch,
        p.support_speed_mm_s,
        p.acceleration_for(AccelRole::Other, false),
    );
    let mut work = LayerWork::default();
    for _ in 0..(support_layers as u64).min(crate::MAX_LAYERS as u64) {
        travel_move(ctx, o.area_mm2.sqrt().max(pitch), &mut work);
    }
    totals.add_travel(&work);
}

#[cfg(test)]
mod tests {
    use super::super::testutil::profile;
    use super::*;

    #[test]
    fn flat_down_facing_triangle_needs_a_column_to_the_bed() {
        let p = profile();
        // Clockwise seen from above: its normal points down.
        let down = [[0.0, 0.0, 10.0], [0.0, 10.0, 10.0], [10.0, 0.0, 10.0]];
        let up = [[0.0, 0.0, 10.0], [10.0, 0.0, 10.0], [0.0, 10.0, 10.0]];
        let wall = [[0.0, 0.0, 0.0], [10.0, 0.0, 0.0], [0.0, 0.0, 10.0]];
        let on_bed = [[0.0, 0.0, 0.0], [0.0, 10.0, 0.0], [10.0, 0.0, 0.0]];
        let o = overhang_columns(&[down, up, wall, on_bed], [0.0; 3], &p);
        assert!((o.area_mm2 - 50.0).abs() < 1e-9);
        assert!((o.column_volume_mm3 - 500.0).abs() < 1e-9);
    }
}
