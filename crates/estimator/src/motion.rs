//! Trapezoidal motion model: time of a move with given entry, cruise and exit speeds at constant
//! acceleration, junction speeds from the profile's cornering model, and a look-ahead planner over a
//! polyline. Mirrors what firmware (and PrusaSlicer's G-code time estimator) does with the same limits.

use crate::geom::Pt;
use crate::profile::Cornering;

/// Speed at which the firmware may start or end a move from standstill / into a stop.
pub fn safe_speed(cornering: Cornering, v: f64) -> f64 {
    match cornering {
        // PrusaSlicer/Marlin classic jerk: the move may start at the jerk speed.
        Cornering::Jerk { jerk_xy_mm_s } => v.min(jerk_xy_mm_s),
        Cornering::JunctionDeviation { .. } => 0.0,
    }
}

/// Largest speed at the corner between directions `u1` then `u2` (unit vectors), both moves at `v`.
pub fn junction_speed(cornering: Cornering, accel: f64, u1: Pt, u2: Pt, v: f64) -> f64 {
    match cornering {
        Cornering::Jerk { jerk_xy_mm_s } => {
            // Marlin 1.x / PrusaSlicer GCodeProcessor: per axis, coasting changes speed by the
            // difference, a reversal by the larger magnitude; every axis over the jerk scales the
            // junction down.
            let mut factor = 1.0;
            for a in 0..2 {
                let exit = u1[a] * v * factor;
                let entry = u2[a] * v * factor;
                let jerk = if exit > entry {
                    if entry > 0.0 || exit < 0.0 {
                        exit - entry
                    } else {
                        exit.max(-entry)
                    }
                } else if entry < 0.0 || exit > 0.0 {
                    entry - exit
                } else {
                    (-exit).max(entry)
                };
                if jerk > jerk_xy_mm_s {
                    factor *= jerk_xy_mm_s / jerk;
                }
            }
            let vj = v * factor;
            let safe = safe_speed(cornering, v);
            // Not coasting: both moves could start from their safe speed anyway.
            if safe > 0.99 * vj { safe } else { vj }
        }
        Cornering::JunctionDeviation {
            junction_deviation_mm,
        } => {
            let cos_theta = -(u1[0] * u2[0] + u1[1] * u2[1]);
            if cos_theta > 0.999_999 {
                return 0.0; // full reversal
            }
            if cos_theta < -0.999_999 {
                return v; // straight on
            }
            let sin_half = (0.5 * (1.0 - cos_theta)).sqrt();
            (accel * junction_deviation_mm * sin_half / (1.0 - sin_half))
                .sqrt()
                .min(v)
        }
    }
}

/// Time to cover `len` starting at `v0`, cruising at most at `v`, ending at `v1`, accelerating at
/// `a`. Entry/exit speeds must be reachable (the planner guarantees it); otherwise they are clamped.
pub fn move_time(len: f64, v0: f64, v: f64, v1: f64, a: f64) -> f64 {
    if len <= 0.0 || v <= 0.0 {
        return 0.0;
    }
    let v0 = v0.clamp(0.0, v);
    let v1 = v1.clamp(0.0, v);
    let d_acc = (v * v - v0 * v0) / (2.0 * a);
    let d_dec = (v * v - v1 * v1) / (2.0 * a);
    if d_acc + d_dec <= len {
        (v - v0) / a + (v - v1) / a + (len - d_acc - d_dec) / v
    } else {
        // Triangle profile: peak speed where the two ramps meet.
        let vp2 = (2.0 * a * len + v0 * v0 + v1 * v1) / 2.0;
        let vp = vp2.max(v0 * v0).max(v1 * v1).sqrt();
        ((vp - v0) + (vp - v1)).max(0.0) / a
    }
}

/// Look-ahead over a polyline printed at speed `v`: backward and forward passes bound each junction
/// speed by what the acceleration allows over the neighbouring segments. Starts and ends at the safe
/// speed (a travel or a stop follows). `closed` adds the segment back to the first point.
pub fn polyline_time(points: &[Pt], closed: bool, v: f64, a: f64, cornering: Cornering) -> f64 {
    let n = points.len();
    if n < 2 {
        return 0.0;
    }
    let seg_count = if closed { n } else { n - 1 };
    let mut lens = Vec::with_capacity(seg_count);
    let mut dirs = Vec::with_capacity(seg_count);
    for i in 0..seg_count {
        let p = points[i];
        let q = points[(i + 1) % n];
        let d = [q[0] - p[0], q[1] - p[1]];
        let l = (d[0] * d[0] + d[1] * d[1]).sqrt();
        if l > 0.0 {
            lens.push(l);
            dirs.push([d[0] / l, d[1] / l]);
        }
    }
    let m = lens.len();
    if m == 0 {
        return 0.0;
    }
    let safe = safe_speed(cornering, v);
    // speeds[i] = speed at the start of segment i; speeds[m] = end.
    let mut speeds = vec![0.0; m + 1];
    speeds[0] = safe;
    speeds[m] = safe;
    for i in 1..m {
        speeds[i] = junction_speed(cornering, a, dirs[i - 1], dirs[i], v);
    }
    for i in (0..m).rev() {
        let reachable = (speeds[i + 1] * speeds[i + 1] + 2.0 * a * lens[i]).sqrt();
        speeds[i] = speeds[i].min(reachable);
    }
    for i in 0..m {
        let reachable = (speeds[i] * speeds[i] + 2.0 * a * lens[i]).sqrt();
        speeds[i + 1] = speeds[i + 1].min(reachable);
    }
    (0..m)
        .map(|i| move_time(lens[i], speeds[i], v, speeds[i + 1], a))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const JERK: Cornering = Cornering::Jerk { jerk_xy_mm_s: 10.0 };

    #[test]
    fn long_move_is_length_over_speed_plus_ramps() {
        // 100 mm at 50 mm/s from/to rest at 1000 mm/s2: ramps 1.25 mm each taking 0.05 s.
        let t = move_time(100.0, 0.0, 50.0, 0.0, 1000.0);
        let expect = 0.05 + 0.05 + (100.0 - 2.5) / 50.0;
        assert!((t - expect).abs() < 1e-12, "{t} vs {expect}");
    }

    #[test]
    fn short_move_never_reaches_cruise() {
        // 1 mm from rest to rest at 1000 mm/s2: peak sqrt(1000) mm/s, t = 2 sqrt(1/1000).
        let t = move_time(1.0, 0.0, 1000.0, 0.0, 1000.0);
        assert!((t - 2.0 * (1.0f64 / 1000.0).sqrt()).abs() < 1e-12);
    }

    #[test]
    fn jerk_corner_speeds() {
        let x = [1.0, 0.0];
        let y = [0.0, 1.0];
        let d = [
            std::f64::consts::FRAC_1_SQRT_2,
            std::f64::consts::FRAC_1_SQRT_2,
        ];
        // Straight on: full speed.
        assert!((junction_speed(JERK, 1500.0, x, x, 60.0) - 60.0).abs() < 1e-9);
        // 90 degrees: each axis jumps by the full speed: limited to the jerk.
        assert!((junction_speed(JERK, 1500.0, x, y, 60.0) - 10.0).abs() < 1e-9);
        // 45 degrees: y jumps by 0.707 v, x by 0.293 v -> 10 / 0.707.
        let v = junction_speed(JERK, 1500.0, x, d, 60.0);
        assert!(
            (v - 10.0 / std::f64::consts::FRAC_1_SQRT_2).abs() < 1e-6,
            "{v}"
        );
    }

    #[test]
    fn square_loop_time_is_four_ramped_sides() {
        let sq = [[0.0, 0.0], [20.0, 0.0], [20.0, 20.0], [0.0, 20.0]];
        let t = polyline_time(&sq, true, 60.0, 1500.0, JERK);
        let side = move_time(20.0, 10.0, 60.0, 10.0, 1500.0);
        assert!((t - 4.0 * side).abs() < 1e-9);
    }
}
