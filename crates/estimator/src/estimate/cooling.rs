//! Cooling: PrusaSlicer's minimum-layer-time rule, which slows short layers down so they can cool,
//! then books the layer's extrusions into the totals.

use super::Ctx;
use super::work::{Extrusion, LayerWork, Totals};

/// Applies the minimum layer time (PrusaSlicer's cooling slow-down: extrusion feed rates are scaled
/// down, never below the minimum print speed, until the layer takes the minimum time) and books the
/// layer into the totals.
pub(super) fn finish_layer(ctx: &Ctx, mut work: LayerWork, h: f64, totals: &mut Totals) {
    let p = ctx.p;
    let travel = totals.layer_travel_s + h / p.z_speed_mm_s;
    let extrude: f64 = work.extrusions.iter().map(|e| e.time_s).sum();
    let layer_time = travel + extrude;
    if p.min_layer_time_s > 0.0 && layer_time < p.min_layer_time_s && extrude > 0.0 {
        let slowed = |f: f64, e: &Extrusion| -> f64 {
            let v = e.speed_mm_s;
            let v_new = (v * f).max(p.min_print_speed_mm_s.min(v));
            e.time_s.max(e.path_mm / v_new)
        };
        let total_at = |f: f64| travel + work.extrusions.iter().map(|e| slowed(f, e)).sum::<f64>();
        // Bisection on the speed factor: total_at is monotone decreasing in f.
        let (mut lo, mut hi) = (0.0f64, 1.0f64);
        if total_at(1e-9) <= p.min_layer_time_s {
            // Even at the minimum print speed the layer is faster: slow down as far as allowed.
            hi = 1e-9;
        } else {
            for _ in 0..40 {
                let mid = 0.5 * (lo + hi);
                if total_at(mid) > p.min_layer_time_s {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
        }
        let f = hi;
        let mut added = 0.0;
        for e in &mut work.extrusions {
            let t = slowed(f, e);
            added += t - e.time_s;
            e.time_s = t;
        }
        if added > 0.0 {
            totals.cooling_slowdown_s += added;
            totals.slowed_layers += 1;
        }
    }
    for e in &work.extrusions {
        let acc = totals.acc(e.feature);
        acc.time_s += e.time_s;
        acc.path_mm += e.path_mm;
        acc.volume_mm3 += e.volume_mm3;
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::profile;
    use super::super::work::Feature;
    use super::*;

    fn layer_of(path_mm: f64, speed_mm_s: f64) -> LayerWork {
        LayerWork {
            extrusions: vec![Extrusion {
                feature: Feature::Perimeter,
                path_mm,
                volume_mm3: path_mm * 0.1,
                speed_mm_s,
                time_s: path_mm / speed_mm_s,
            }],
            ..LayerWork::default()
        }
    }

    #[test]
    fn short_layers_slow_down_but_not_below_the_minimum_speed() {
        let p = profile();
        let ctx = Ctx {
            p: &p,
            cornering: p.cornering,
        };
        let h = p.layer_height_mm;
        let travel = h / p.z_speed_mm_s;

        // Reaching the minimum layer time needs a speed above the minimum print speed.
        let path = 0.5 * p.min_layer_time_s * (p.min_print_speed_mm_s + 50.0);
        let mut totals = Totals::default();
        finish_layer(&ctx, layer_of(path, 200.0), h, &mut totals);
        assert_eq!(totals.slowed_layers, 1);
        assert!(
            (totals.role(Feature::Perimeter).time_s + travel - p.min_layer_time_s).abs() < 1e-6
        );
        assert!((totals.role(Feature::Perimeter).path_mm - path).abs() < 1e-12);

        // A tiny layer is capped at the minimum print speed.
        let mut totals = Totals::default();
        finish_layer(&ctx, layer_of(1.0, 50.0), h, &mut totals);
        assert!(
            (totals.role(Feature::Perimeter).time_s - 1.0 / p.min_print_speed_mm_s).abs() < 1e-9
        );

        // A long layer is left alone.
        let mut totals = Totals::default();
        finish_layer(&ctx, layer_of(10_000.0, 50.0), h, &mut totals);
        assert_eq!(totals.slowed_layers, 0);
        assert_eq!(totals.role(Feature::Perimeter).time_s, 200.0);
        assert_eq!(totals.cooling_slowdown_s, 0.0);
    }
}
