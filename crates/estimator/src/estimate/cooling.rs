//! Cooling: PrusaSlicer's minimum-layer-time rule, which slows short layers down so they can cool,
//! then books the layer's extrusions into the totals.

use super::Ctx;
use super::work::{Extrusion, Feature, LayerWork, Totals};

/// Bridges (and overhangs, printed like them) keep their speed: PrusaSlicer does not mark them
/// for the cooling slow-down.
fn adjustable(e: &Extrusion) -> bool {
    !matches!(e.feature, Feature::Bridge | Feature::OverhangPerimeter)
}

/// Applies the minimum layer time and books the layer into the totals. As PrusaSlicer's cooling
/// buffer does, the layer's time is counted as each line's length over its feed rate (no
/// acceleration), and when that is below the minimum, the feed rates of the adjustable extrusions
/// (all but bridges) are scaled down, never below the minimum print speed, until it is reached.
/// The real time of a slowed extrusion keeps its acceleration overhead, shrunk with the speed.
pub(super) fn finish_layer(ctx: &Ctx, mut work: LayerWork, h: f64, totals: &mut Totals) {
    let p = ctx.p;
    let fixed_nominal = totals.layer_travel_s
        + h / p.z_speed_mm_s
        + work
            .extrusions
            .iter()
            .filter(|e| !adjustable(e))
            .map(|e| e.path_mm / e.speed_mm_s)
            .sum::<f64>();
    let adjustable_nominal: f64 = work
        .extrusions
        .iter()
        .filter(|e| adjustable(e))
        .map(|e| e.path_mm / e.speed_mm_s)
        .sum();
    if p.min_layer_time_s > 0.0
        && fixed_nominal + adjustable_nominal < p.min_layer_time_s
        && adjustable_nominal > 0.0
    {
        let speed_at = |f: f64, e: &Extrusion| -> f64 {
            let v = e.speed_mm_s;
            (v * f).max(p.min_print_speed_mm_s.min(v))
        };
        let total_at = |f: f64| {
            fixed_nominal
                + work
                    .extrusions
                    .iter()
                    .filter(|e| adjustable(e))
                    .map(|e| e.path_mm / speed_at(f, e))
                    .sum::<f64>()
        };
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
        for e in work.extrusions.iter_mut().filter(|e| adjustable(e)) {
            let v = e.speed_mm_s;
            let v_new = speed_at(f, e);
            if v_new >= v {
                continue;
            }
            let overhead = (e.time_s - e.path_mm / v).max(0.0);
            let t = e.path_mm / v_new + overhead * v_new / v;
            added += t - e.time_s;
            e.time_s = t;
            e.speed_mm_s = v_new;
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

    #[test]
    fn bridges_keep_their_speed_when_a_layer_is_slowed() {
        let p = profile();
        let ctx = Ctx {
            p: &p,
            cornering: p.cornering,
        };
        let mut work = layer_of(20.0, 40.0);
        work.extrusions.push(Extrusion {
            feature: Feature::Bridge,
            path_mm: 20.0,
            volume_mm3: 2.5,
            speed_mm_s: 60.0,
            time_s: 20.0 / 60.0,
        });
        let mut totals = Totals::default();
        finish_layer(&ctx, work, p.layer_height_mm, &mut totals);
        assert_eq!(totals.slowed_layers, 1);
        assert_eq!(totals.role(Feature::Bridge).time_s, 20.0 / 60.0);
        assert!(totals.role(Feature::Perimeter).time_s > 20.0 / 40.0);
    }
}
