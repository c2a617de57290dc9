//! Replays sliced G-code through a firmware-like motion planner and splits its time, extrusion and
//! path by the slicer's `;TYPE:` role comments. It is how the estimator is measured per feature
//! against PrusaSlicer: PrusaSlicer writes only totals into its G-code, so the per-role figures come
//! from simulating the same moves with the same machine limits (classic per-axis jerk, per-axis
//! acceleration and feed-rate caps, look-ahead), the way its own time estimator does.
//!
//! Travel (moves without extrusion) and retractions (extruder-only moves) are booked as their own
//! roles, whatever `;TYPE:` is current. Feed rates the slicer's cooling rule lowered are in the
//! G-code itself, so the replay includes that slow-down.

use std::collections::BTreeMap;

use crate::{FeatureEstimate, Profile};

/// Role names the replay books moves under besides the slicer's own `;TYPE:` names.
pub const TRAVEL: &str = "Travel";
pub const RETRACT: &str = "Retract";

/// Machine limits the replay plans with, per axis in the order X, Y, Z, E.
#[derive(Clone, Debug, PartialEq)]
pub struct MachineLimits {
    pub max_feedrate_mm_s: [f64; 4],
    pub max_acceleration_mm_s2: [f64; 4],
    pub max_jerk_mm_s: [f64; 4],
    pub extruding_acceleration_mm_s2: f64,
    pub retract_acceleration_mm_s2: f64,
    pub travel_acceleration_mm_s2: f64,
}

impl MachineLimits {
    /// The profile's XY limits; Z and E limits are PrusaSlicer's normal-mode defaults
    /// (`machine_max_feedrate_z/e` 12 / 120, `machine_max_acceleration_z/e` 500 / 10000,
    /// `machine_max_jerk_z/e` 0.2 / 2.5), which the profile does not carry. X and Y accelerate at
    /// most at the profile's largest acceleration (`machine_max_acceleration_x/y` then never binds).
    pub fn from_profile(p: &Profile) -> MachineLimits {
        let jerk = match p.cornering {
            crate::Cornering::Jerk { jerk_xy_mm_s } => jerk_xy_mm_s,
            // Junction deviation is not replayed; 10 mm/s is the classic default.
            crate::Cornering::JunctionDeviation { .. } => 10.0,
        };
        let axis_accel = p
            .print_acceleration_mm_s2
            .max(p.travel_acceleration_mm_s2)
            .max(p.retract_acceleration_mm_s2);
        MachineLimits {
            max_feedrate_mm_s: [
                p.max_speed_xy_mm_s,
                p.max_speed_xy_mm_s,
                p.z_speed_mm_s,
                120.0,
            ],
            max_acceleration_mm_s2: [axis_accel, axis_accel, 500.0, 10_000.0],
            max_jerk_mm_s: [jerk, jerk, 0.2, 2.5],
            extruding_acceleration_mm_s2: p.print_acceleration_mm_s2,
            retract_acceleration_mm_s2: p.retract_acceleration_mm_s2,
            travel_acceleration_mm_s2: p.travel_acceleration_mm_s2,
        }
    }
}

/// Per-role time, extrusion (filament length) and XY path of a replayed G-code file.
#[derive(Clone, Debug, Default)]
pub struct RoleReport {
    pub roles: BTreeMap<String, FeatureEstimate>,
    /// Retractions (extruder-only moves backwards).
    pub retractions: u32,
    pub total_time_s: f64,
    /// Filament pushed by extruding moves, priming after a retraction not included (what
    /// PrusaSlicer reports as "filament used").
    pub filament_mm: f64,
    /// The slicer's own total, when the file states one (PrusaSlicer's normal mode).
    pub slicer_time_s: Option<f64>,
    /// The slicer's own filament total (`; filament used [mm] = ...`), when the file states one.
    pub slicer_filament_mm: Option<f64>,
}

/// One planned move, as the firmware's planner holds it.
struct Block {
    role: usize,
    distance: f64,
    cruise: f64,
    accel: f64,
    entry: f64,
    max_entry: f64,
    exit_safe: f64,
    nominal_length: bool,
}

/// Marlin's (and PrusaSlicer's estimator's) classic planner, in one pass at the end: the reverse and
/// forward passes over all blocks, then each block's trapezoid.
fn plan_time(blocks: &mut [Block], times: &mut [f64]) {
    let n = blocks.len();
    if n == 0 {
        return;
    }
    // Reverse pass: each entry must allow decelerating to the next entry.
    let mut next_entry = blocks[n - 1].exit_safe;
    for i in (0..n).rev() {
        let b = &mut blocks[i];
        if b.entry != b.max_entry {
            let allowed = (next_entry * next_entry + 2.0 * b.accel * b.distance).sqrt();
            b.entry = if !b.nominal_length && b.max_entry > allowed {
                allowed
            } else {
                b.max_entry
            };
        }
        next_entry = b.entry;
    }
    // Forward pass: each entry must be reachable from the previous one.
    for i in 1..n {
        let (prev, cur) = blocks.split_at_mut(i);
        let p = &prev[i - 1];
        let b = &mut cur[0];
        if !p.nominal_length && p.entry < b.entry {
            let reachable = (p.entry * p.entry + 2.0 * p.accel * p.distance).sqrt();
            b.entry = b.entry.min(reachable);
        }
    }
    for i in 0..n {
        let exit = if i + 1 < n {
            blocks[i + 1].entry
        } else {
            blocks[i].exit_safe
        };
        let b = &blocks[i];
        times[b.role] += crate::motion::move_time(b.distance, b.entry, b.cruise, exit, b.accel);
    }
}

/// Reads one word's number (`X12.5`) out of a G-code line's words.
fn word(words: &str, letter: u8) -> Option<f64> {
    let bytes = words.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].to_ascii_uppercase() == letter && (i == 0 || bytes[i - 1] == b' ') {
            let rest = &words[i + 1..];
            let end = rest.find(' ').unwrap_or(rest.len());
            return rest[..end].parse().ok();
        }
        i += 1;
    }
    None
}

/// PrusaSlicer's "; estimated printing time (normal mode) = 1h 2m 3s".
fn slicer_time(line: &str) -> Option<f64> {
    let rest = line.strip_prefix("; estimated printing time (normal mode) = ")?;
    let mut total = 0.0;
    for part in rest.split_whitespace() {
        let (num, unit) = part.split_at(part.len().checked_sub(1)?);
        let v: f64 = num.parse().ok()?;
        total += v * match unit {
            "d" => 86_400.0,
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            _ => return None,
        };
    }
    Some(total)
}

/// Replays `gcode` (absolute or relative positioning and extrusion, G92, G4, M204/M201/M203/M205)
/// with `limits` and books each move under its role.
pub fn replay_gcode(gcode: &str, limits: &MachineLimits) -> RoleReport {
    let mut l = limits.clone();
    let mut role_names: Vec<String> = vec![TRAVEL.into(), RETRACT.into()];
    let mut role_index: BTreeMap<String, usize> = BTreeMap::new();
    role_index.insert(TRAVEL.into(), 0);
    role_index.insert(RETRACT.into(), 1);
    let mut current_role = 0usize;
    let mut acc: Vec<FeatureEstimate> = vec![FeatureEstimate::default(); 2];
    let mut retractions = 0u32;
    let mut filament = 0.0;
    let mut slicer = None;
    let mut slicer_filament = None;

    let mut pos = [0.0f64; 4];
    let mut feed = 0.0f64; // mm/s
    let (mut abs_xyz, mut abs_e) = (true, true);
    let mut blocks: Vec<Block> = Vec::new();
    // Previous move's per-axis speeds, cruise and safe speed, for the junction.
    let mut prev_axis = [0.0f64; 4];
    let mut prev_cruise = 0.0f64;
    let mut prev_safe = 0.0f64;
    let mut dwell = 0.0;

    for raw in gcode.lines() {
        let (code, comment) = match raw.find(';') {
            Some(k) => (&raw[..k], &raw[k..]),
            None => (raw, ""),
        };
        if let Some(t) = comment.strip_prefix(";TYPE:") {
            let name = t.trim().to_string();
            current_role = *role_index.entry(name.clone()).or_insert_with(|| {
                role_names.push(name);
                acc.push(FeatureEstimate::default());
                role_names.len() - 1
            });
        } else if slicer.is_none() && comment.starts_with("; estimated printing time (normal") {
            slicer = slicer_time(comment.trim_end());
        } else if let Some(v) = comment.strip_prefix("; filament used [mm] = ") {
            slicer_filament = v.trim().parse().ok();
        }
        let code = code.trim();
        if code.is_empty() {
            continue;
        }
        let (cmd, words) = code.split_once(' ').unwrap_or((code, ""));
        match cmd.to_ascii_uppercase().as_str() {
            "G0" | "G1" => {
                if let Some(f) = word(words, b'F') {
                    feed = f / 60.0;
                }
                let mut target = pos;
                for (a, letter) in [b'X', b'Y', b'Z', b'E'].into_iter().enumerate() {
                    if let Some(v) = word(words, letter) {
                        let relative = if a == 3 { !abs_e } else { !abs_xyz };
                        target[a] = if relative { pos[a] + v } else { v };
                    }
                }
                let d = [
                    target[0] - pos[0],
                    target[1] - pos[1],
                    target[2] - pos[2],
                    target[3] - pos[3],
                ];
                pos = target;
                let xyz = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt();
                let e_only = xyz < 1e-9;
                let distance = if e_only { d[3].abs() } else { xyz };
                if distance < 1e-9 || feed <= 0.0 {
                    continue;
                }
                let xy = (d[0] * d[0] + d[1] * d[1]).sqrt();
                let role = if e_only {
                    if d[3] < 0.0 {
                        retractions += 1;
                    }
                    1
                } else if d[3] > 0.0 && xy > 0.0 {
                    current_role
                } else {
                    0
                };
                let r = &mut acc[role];
                r.path_mm += xy;
                if role > 1 {
                    r.filament_mm += d[3];
                    filament += d[3];
                }
                // Cruise: the feed rate capped by every axis' maximum.
                let mut cruise = feed;
                let inv = 1.0 / distance;
                for (da, max) in d.iter().zip(l.max_feedrate_mm_s) {
                    let axis_speed = da.abs() * inv * cruise;
                    if axis_speed > max {
                        cruise *= max / axis_speed;
                    }
                }
                let axis: [f64; 4] = std::array::from_fn(|a| d[a] * inv * cruise);
                let mut accel = if e_only {
                    l.retract_acceleration_mm_s2
                } else if d[3] == 0.0 {
                    l.travel_acceleration_mm_s2
                } else {
                    l.extruding_acceleration_mm_s2
                };
                for (da, max) in d.iter().zip(l.max_acceleration_mm_s2) {
                    let frac = da.abs() * inv;
                    if accel * frac > max {
                        accel = max / frac;
                    }
                }
                let mut safe = cruise;
                for (va, jerk) in axis.iter().zip(l.max_jerk_mm_s) {
                    if va.abs() > jerk {
                        safe = safe.min(jerk);
                    }
                }
                // Junction speed by per-axis jerk (Marlin 1.x).
                let mut vmax_junction = safe;
                if !blocks.is_empty() && prev_cruise > 1e-4 {
                    let prev_larger = prev_cruise > cruise;
                    let smaller = if prev_larger {
                        cruise / prev_cruise
                    } else {
                        prev_cruise / cruise
                    };
                    vmax_junction = if prev_larger { cruise } else { prev_cruise };
                    let mut v_factor = 1.0;
                    let mut limited = false;
                    for a in 0..4 {
                        let mut v_exit = prev_axis[a];
                        let mut v_entry = axis[a];
                        if prev_larger {
                            v_exit *= smaller;
                        }
                        if limited {
                            v_exit *= v_factor;
                            v_entry *= v_factor;
                        }
                        let jerk = if v_exit > v_entry {
                            if v_entry > 0.0 || v_exit < 0.0 {
                                v_exit - v_entry
                            } else {
                                v_exit.max(-v_entry)
                            }
                        } else if v_entry < 0.0 || v_exit > 0.0 {
                            v_entry - v_exit
                        } else {
                            (-v_exit).max(v_entry)
                        };
                        if jerk > l.max_jerk_mm_s[a] {
                            v_factor *= l.max_jerk_mm_s[a] / jerk;
                            limited = true;
                        }
                    }
                    if limited {
                        vmax_junction *= v_factor;
                    }
                    let threshold = 0.99 * vmax_junction;
                    if prev_safe > threshold && safe > threshold {
                        vmax_junction = safe;
                    }
                }
                let v_allowable = (safe * safe + 2.0 * accel * distance).sqrt();
                blocks.push(Block {
                    role,
                    distance,
                    cruise,
                    accel,
                    entry: vmax_junction.min(v_allowable),
                    max_entry: vmax_junction,
                    exit_safe: safe,
                    nominal_length: cruise <= v_allowable,
                });
                prev_axis = axis;
                prev_cruise = cruise;
                prev_safe = safe;
            }
            "G4" => {
                dwell +=
                    word(words, b'S').unwrap_or(0.0) + word(words, b'P').unwrap_or(0.0) / 1000.0;
            }
            "G90" => (abs_xyz, abs_e) = (true, true),
            "G91" => (abs_xyz, abs_e) = (false, false),
            "M82" => abs_e = true,
            "M83" => abs_e = false,
            "G92" => {
                for (a, letter) in [b'X', b'Y', b'Z', b'E'].into_iter().enumerate() {
                    if let Some(v) = word(words, letter) {
                        pos[a] = v;
                    }
                }
            }
            "M204" => {
                if let Some(s) = word(words, b'S') {
                    l.extruding_acceleration_mm_s2 = s;
                    l.travel_acceleration_mm_s2 = s;
                }
                if let Some(p) = word(words, b'P') {
                    l.extruding_acceleration_mm_s2 = p;
                }
                if let Some(r) = word(words, b'R') {
                    l.retract_acceleration_mm_s2 = r;
                }
                if let Some(t) = word(words, b'T') {
                    l.travel_acceleration_mm_s2 = t;
                }
            }
            "M201" | "M203" | "M205" => {
                let target = match cmd {
                    "M201" => &mut l.max_acceleration_mm_s2,
                    "M203" => &mut l.max_feedrate_mm_s,
                    _ => &mut l.max_jerk_mm_s,
                };
                for (a, letter) in [b'X', b'Y', b'Z', b'E'].into_iter().enumerate() {
                    if let Some(v) = word(words, letter) {
                        target[a] = v;
                    }
                }
            }
            _ => {}
        }
    }
    let mut times = vec![0.0; acc.len()];
    plan_time(&mut blocks, &mut times);
    let mut roles = BTreeMap::new();
    let mut total = dwell;
    for (k, name) in role_names.into_iter().enumerate() {
        acc[k].time_s = times[k];
        total += times[k];
        if acc[k].time_s > 0.0 || acc[k].filament_mm > 0.0 {
            roles.insert(name, acc[k]);
        }
    }
    RoleReport {
        roles,
        retractions,
        total_time_s: total,
        filament_mm: filament,
        slicer_time_s: slicer,
        slicer_filament_mm: slicer_filament,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> MachineLimits {
        MachineLimits::from_profile(&Profile::builtin("prusaslicer-b").expect("built-in"))
    }

    #[test]
    fn a_long_straight_move_is_length_over_speed_plus_ramps_from_the_jerk() {
        // 100 mm at 50 mm/s, starting and stopping at the 10 mm/s jerk, 1500 mm/s2.
        let r = replay_gcode(
            "G90\nM82\n;TYPE:Perimeter\nG1 X0 Y0 F3000\nG92 E0\nG1 X100 E5\n",
            &limits(),
        );
        let per = r.roles["Perimeter"];
        let ramp = (50.0 - 10.0) / 1500.0;
        let ramp_len = (50.0f64 * 50.0 - 10.0 * 10.0) / 3000.0;
        let expect = 2.0 * ramp + (100.0 - 2.0 * ramp_len) / 50.0;
        assert!(
            (per.time_s - expect).abs() < 1e-9,
            "{} vs {expect}",
            per.time_s
        );
        assert!((per.filament_mm - 5.0).abs() < 1e-12);
        assert!((per.path_mm - 100.0).abs() < 1e-12);
        assert_eq!(r.filament_mm, 5.0);
    }

    #[test]
    fn travel_and_retractions_are_their_own_roles() {
        let g = "G90\nM82\nG92 E0\n;TYPE:Solid infill\nG1 X10 Y0 E1 F1200\nG1 E-1 F2400\n\
                 G92 E0\nG1 X50 Y0 F7800\nG1 E1 F2400\nG1 X60 Y0 E1.5 F1200\n\
                 ; filament used [mm] = 1.50\n; estimated printing time (normal mode) = 1m 2s\n";
        let r = replay_gcode(g, &limits());
        assert_eq!(r.retractions, 1);
        assert!((r.roles[TRAVEL].path_mm - 40.0).abs() < 1e-12);
        assert_eq!(r.roles[TRAVEL].filament_mm, 0.0);
        assert!((r.roles["Solid infill"].path_mm - 20.0).abs() < 1e-12);
        assert!((r.roles["Solid infill"].filament_mm - 1.5).abs() < 1e-12);
        assert!(r.roles[RETRACT].time_s > 2.0 / 40.0);
        assert_eq!(r.slicer_time_s, Some(62.0));
        assert_eq!(r.slicer_filament_mm, Some(1.5));
        // Filament of the extruding moves: retracting and priming again cancel out.
        assert!((r.filament_mm - 1.5).abs() < 1e-12);
    }

    #[test]
    fn a_right_angle_slows_to_the_jerk() {
        let straight = replay_gcode("G1 X0 Y0 F3600\n;TYPE:A\nG1 X20 E1\nG1 X40 E2\n", &limits());
        let corner = replay_gcode(
            "G1 X0 Y0 F3600\n;TYPE:A\nG1 X20 E1\nG1 X20 Y20 E2\n",
            &limits(),
        );
        assert!(corner.roles["A"].time_s > straight.roles["A"].time_s + 0.02);
    }
}
