//! A resolved PrusaSlicer config as the estimator's [`Profile`]: the machine, layers, widths,
//! speeds, cooling, filament, retraction, skirt and support the estimate depends on, read the
//! way PrusaSlicer 2.5 reads them (percentages relative to the setting PrusaSlicer documents,
//! `0` meaning "automatic" where it does). A value that cannot be read is an error naming the
//! file, line and preset it came from. What the estimator does not model is listed in
//! [`Mapped::notes`] rather than silently dropped.

use fabrouter_estimator::{Cornering, InfillPattern, Profile};

use crate::config::{Config, Origin};
use crate::{Error, Kind, ini};

/// The profile, and what the mapping could not carry over.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapped {
    pub profile: Profile,
    /// `filament_cost` (currency per kg as the preset states it; 0 when not given).
    pub filament_cost_per_kg: f64,
    /// Settings that change PrusaSlicer's result but not this profile (approximations).
    pub notes: Vec<String>,
}

/// PrusaSlicer 2.5 slows closed loops up to this radius to `small_perimeter_speed`.
const SMALL_PERIMETER_RADIUS_MM: f64 = 6.5;
/// The overhang angle PrusaSlicer's automatic support threshold (`0`) behaves close to.
const AUTO_SUPPORT_THRESHOLD_DEG: f64 = 55.0;
/// Filament density assumed when a preset gives none (PrusaSlicer then reports no weight).
const FALLBACK_DENSITY_G_CM3: f64 = 1.24;

struct Reader<'a> {
    c: &'a Config,
    defaults: Config,
}

impl Reader<'_> {
    /// The value of `key`; an empty one (some bundles leave a number blank) is PrusaSlicer's
    /// default, as the slicer reads it.
    fn raw(&self, key: &str) -> (&str, Origin) {
        let given = self
            .c
            .get(key)
            .filter(|s| !ini::unquote(&s.value).trim().is_empty());
        match given.or_else(|| self.defaults.get(key)) {
            Some(s) => (ini::unquote(&s.value), s.origin.clone()),
            None => (
                "",
                Origin {
                    file: "(nowhere)".into(),
                    line: 0,
                    preset: None,
                },
            ),
        }
    }

    fn bad(&self, key: &str, reason: &str) -> Error {
        let (v, origin) = self.raw(key);
        Error::Value {
            key: key.into(),
            value: v.into(),
            origin: Box::new(origin),
            reason: reason.into(),
        }
    }

    /// The first element of a per-extruder list, as text, up to the first blank: like
    /// PrusaSlicer's number reading, text after the number (some bundles put `# notes`
    /// there) is ignored.
    fn first(&self, key: &str) -> String {
        let (v, _) = self.raw(key);
        let first = v.split(',').next().unwrap_or("").trim();
        first.split_whitespace().next().unwrap_or("").to_string()
    }

    /// A number (the first extruder's for a list); never NaN or infinite, never negative.
    fn num(&self, key: &str) -> Result<f64, Error> {
        let t = self.first(key);
        match t.parse::<f64>() {
            Ok(x) if x.is_finite() && x >= 0.0 => Ok(x),
            _ => Err(self.bad(key, "expected a number >= 0")),
        }
    }

    fn count(&self, key: &str) -> Result<u32, Error> {
        let t = self.first(key);
        t.parse::<u32>()
            .map_err(|_| self.bad(key, "expected a whole number >= 0"))
    }

    fn flag(&self, key: &str) -> Result<bool, Error> {
        match self.first(key).as_str() {
            "1" => Ok(true),
            "0" => Ok(false),
            _ => Err(self.bad(key, "expected 0 or 1")),
        }
    }

    /// A value in mm (or mm/s), or a percentage of `base`.
    fn abs_or_pct(&self, key: &str, base: f64) -> Result<f64, Error> {
        let t = self.first(key);
        let (text, pct) = match t.strip_suffix('%') {
            Some(p) => (p.trim(), true),
            None => (t.as_str(), false),
        };
        match text.parse::<f64>() {
            Ok(x) if x.is_finite() && x >= 0.0 => Ok(if pct { x / 100.0 * base } else { x }),
            _ => Err(self.bad(key, "expected a number >= 0 or a percentage")),
        }
    }

    /// `x,y` points of `bed_shape`: the extent they span.
    fn bed(&self) -> Result<(f64, f64), Error> {
        let (v, _) = self.raw("bed_shape");
        let mut min = [f64::INFINITY; 2];
        let mut max = [f64::NEG_INFINITY; 2];
        for point in v.split(',') {
            let Some((x, y)) = point.trim().split_once('x') else {
                return Err(self.bad("bed_shape", "expected points like 0x0,250x0,250x210,0x210"));
            };
            for (i, t) in [x, y].into_iter().enumerate() {
                let n: f64 = t
                    .trim()
                    .parse()
                    .ok()
                    .filter(|n: &f64| n.is_finite())
                    .ok_or_else(|| self.bad("bed_shape", "a coordinate is not a number"))?;
                min[i] = min[i].min(n);
                max[i] = max[i].max(n);
            }
        }
        let (w, d) = (max[0] - min[0], max[1] - min[1]);
        if !(w > 0.0 && d > 0.0) {
            return Err(self.bad("bed_shape", "the points span no area"));
        }
        Ok((w, d))
    }
}

/// PrusaSlicer's automatic width (`0`) for perimeters and infill; top infill and support use
/// the nozzle diameter.
fn auto_width(nozzle: f64) -> f64 {
    1.125 * nozzle
}

/// The estimator's closest pattern: what matters to it is how many line directions a layer
/// has, so patterns it does not draw map to one with as many.
fn pattern(name: &str) -> Option<(InfillPattern, bool)> {
    use InfillPattern::*;
    Some(match name {
        "rectilinear" => (Rectilinear, true),
        "grid" => (Grid, true),
        "triangles" => (Triangles, true),
        "stars" => (Stars, true),
        "cubic" => (Cubic, true),
        "gyroid" => (Gyroid, true),
        "honeycomb" => (Honeycomb, true),
        "adaptivecubic" | "supportcubic" => (Cubic, false),
        "3dhoneycomb" => (Honeycomb, false),
        "alignedrectilinear" | "line" | "concentric" | "hilbertcurve" | "archimedeanchords"
        | "octagramspiral" | "lightning" => (Rectilinear, false),
        _ => return None,
    })
}

/// The cross-section PrusaSlicer gives a bead of width `w` and height `h`: a rectangle with
/// semicircular ends.
fn bead_area_mm2(w: f64, h: f64) -> f64 {
    (w - h) * h + std::f64::consts::PI * h * h / 4.0
}

/// The estimator's profile for a resolved config. `name` becomes the profile's name.
pub fn to_profile(c: &Config, name: &str) -> Result<Mapped, Error> {
    let r = Reader {
        c,
        defaults: Config::prusaslicer_defaults(),
    };
    let mut notes = Vec::new();

    let nozzle = r.num("nozzle_diameter")?;
    let layer = r.num("layer_height")?;
    let first_layer = r.abs_or_pct("first_layer_height", layer)?;
    let (bed_x, bed_y) = r.bed()?;

    // Widths: a role's own, else `extrusion_width`, else automatic; percentages are of the
    // layer height (PrusaSlicer 2.5).
    let default_w = r.abs_or_pct("extrusion_width", layer)?;
    let width = |key: &str, auto: f64| -> Result<f64, Error> {
        let w = r.abs_or_pct(key, layer)?;
        Ok(if w > 0.0 {
            w
        } else if default_w > 0.0 {
            default_w
        } else {
            auto
        })
    };
    let ext_w = width("external_perimeter_extrusion_width", auto_width(nozzle))?;
    let per_w = width("perimeter_extrusion_width", auto_width(nozzle))?;
    let inf_w = width("infill_extrusion_width", auto_width(nozzle))?;
    let solid_w = width("solid_infill_extrusion_width", auto_width(nozzle))?;
    let top_w = width("top_infill_extrusion_width", nozzle)?;
    let sup_w = width("support_material_extrusion_width", nozzle)?;
    let first_w = match r.abs_or_pct("first_layer_extrusion_width", first_layer)? {
        w if w > 0.0 => w,
        _ => per_w,
    };

    // Speeds, with PrusaSlicer's relative ones resolved.
    let perimeter = r.num("perimeter_speed")?;
    let infill = r.num("infill_speed")?;
    let solid = r.abs_or_pct("solid_infill_speed", infill)?;
    let first_speed_pct = r.first("first_layer_speed").ends_with('%');
    if first_speed_pct {
        notes.push(
            "first_layer_speed is a percentage: taken of perimeter_speed for every first-layer move"
                .into(),
        );
    }
    let mut speeds = Speeds {
        perimeter,
        external: r.abs_or_pct("external_perimeter_speed", perimeter)?,
        small: r.abs_or_pct("small_perimeter_speed", perimeter)?,
        infill,
        solid,
        top: r.abs_or_pct("top_solid_infill_speed", solid)?,
        bridge: r.num("bridge_speed")?,
        support: r.num("support_material_speed")?,
        first_layer: r.abs_or_pct("first_layer_speed", perimeter)?,
    };
    // PrusaSlicer caps every extrusion by the volumetric limits; the estimator's profile has
    // one speed per role, so the cap is applied here with each role's bead.
    let max_print = r.num("max_print_speed")?;
    let volumetric = [
        r.num("max_volumetric_speed")?,
        r.num("filament_max_volumetric_speed")?,
    ]
    .into_iter()
    .filter(|v| *v > 0.0)
    .fold(f64::INFINITY, f64::min);
    // A speed of 0 is PrusaSlicer's "automatic": `max_print_speed`, within the volumetric
    // limit.
    let cap = |speed: f64, w: f64, h: f64| -> f64 {
        let s = if speed > 0.0 { speed } else { max_print };
        if volumetric.is_finite() {
            s.min(volumetric / bead_area_mm2(w, h))
        } else {
            s
        }
    };
    let before = speeds;
    speeds.perimeter = cap(speeds.perimeter, per_w, layer);
    speeds.external = cap(speeds.external, ext_w, layer);
    speeds.small = cap(speeds.small, ext_w, layer);
    speeds.infill = cap(speeds.infill, inf_w, layer);
    speeds.solid = cap(speeds.solid, solid_w, layer);
    speeds.top = cap(speeds.top, top_w, layer);
    speeds.support = cap(speeds.support, sup_w, layer);
    speeds.first_layer = cap(speeds.first_layer, first_w, first_layer);
    if speeds != before {
        notes.push(format!(
            "speeds capped per role by the volumetric limit ({volumetric} mm³/s), or automatic ones set to max_print_speed ({max_print} mm/s)"
        ));
    }

    // Machine limits (normal mode, the first of each pair).
    let flavor = r.first("gcode_flavor");
    let max_extruding = r.num("machine_max_acceleration_extruding")?;
    let default_accel = r.num("default_acceleration")?;
    let mut print_accel = if default_accel > 0.0 {
        default_accel
    } else {
        max_extruding
    };
    if max_extruding > 0.0 {
        print_accel = print_accel.min(max_extruding);
    }
    let mut travel_accel = print_accel;
    let max_travel = r.num("machine_max_acceleration_travel")?;
    if flavor == "marlin2" && max_travel > 0.0 {
        // Marlin 2 has its own travel limit (M204 T).
        travel_accel = (if default_accel > 0.0 {
            default_accel
        } else {
            max_travel
        })
        .min(max_travel);
    }
    for key in [
        "perimeter_acceleration",
        "infill_acceleration",
        "bridge_acceleration",
        "first_layer_acceleration",
    ] {
        if r.num(key)? > 0.0 {
            notes.push(format!(
                "{key} = {} is not modelled: every extrusion uses {print_accel} mm/s²",
                r.first(key)
            ));
        }
    }
    let jerk = r
        .num("machine_max_jerk_x")?
        .min(r.num("machine_max_jerk_y")?);

    let fill = r.first("fill_pattern");
    let (infill_pattern, exact) =
        pattern(&fill).ok_or_else(|| r.bad("fill_pattern", "not a PrusaSlicer 2.5 pattern"))?;
    if !exact {
        notes.push(format!(
            "fill_pattern {fill} is estimated as {infill_pattern:?} (same line directions per layer)"
        ));
    }
    let density_pct = r.abs_or_pct("fill_density", 100.0)?;
    let density_pct = if r.first("fill_density").ends_with('%') {
        density_pct
    } else {
        // A bare fraction (0.2) as older exports write it.
        density_pct * 100.0
    };
    let anchor = r
        .abs_or_pct("infill_anchor", inf_w)?
        .min(r.abs_or_pct("infill_anchor_max", inf_w)?);
    let overlap_mm = r.abs_or_pct("infill_overlap", per_w)?;

    let mut density = r.num("filament_density")?;
    if density == 0.0 {
        notes.push(format!(
            "filament_density is not set: weight assumes {FALLBACK_DENSITY_G_CM3} g/cm³"
        ));
        density = FALLBACK_DENSITY_G_CM3;
    }
    let multiplier = r.num("extrusion_multiplier")?;
    if (multiplier - 1.0).abs() > 1e-9 {
        notes.push(format!(
            "extrusion_multiplier {multiplier} is not modelled: filament is estimated at 1.0"
        ));
    }
    let retract_speed = r.num("retract_speed")?;
    let deretract = match r.num("deretract_speed")? {
        0.0 => retract_speed,
        s => s,
    };
    let threshold = match r.num("support_material_threshold")? {
        0.0 => AUTO_SUPPORT_THRESHOLD_DEG,
        t => t,
    };
    let min_layer_time = if r.flag("cooling")? {
        r.num("slowdown_below_layer_time")?
    } else {
        0.0
    };

    // Start from the built-in reference profile and set every field this mapping knows, so
    // fields the estimator gains later keep the reference's value until it learns them.
    let base = Profile::builtin("prusaslicer-b").expect("the reference profile is built in");
    let mut profile = base;
    profile.name = name.to_string();
    profile.build_x_mm = bed_x;
    profile.build_y_mm = bed_y;
    profile.build_z_mm = r.num("max_print_height")?;
    profile.nozzle_diameter_mm = nozzle;
    profile.max_speed_xy_mm_s = r
        .num("machine_max_feedrate_x")?
        .min(r.num("machine_max_feedrate_y")?);
    profile.z_speed_mm_s = r.num("machine_max_feedrate_z")?;
    profile.print_acceleration_mm_s2 = print_accel;
    profile.travel_acceleration_mm_s2 = travel_accel;
    profile.retract_acceleration_mm_s2 = r.num("machine_max_acceleration_retracting")?;
    profile.cornering = Cornering::Jerk { jerk_xy_mm_s: jerk };
    profile.layer_height_mm = layer;
    profile.first_layer_height_mm = first_layer;
    profile.perimeters = r.count("perimeters")?;
    profile.top_solid_layers = r.count("top_solid_layers")?;
    profile.bottom_solid_layers = r.count("bottom_solid_layers")?;
    profile.infill_density_pct = density_pct;
    profile.infill_pattern = infill_pattern;
    profile.solid_infill_below_area_mm2 = r.num("solid_infill_below_area")?;
    profile.infill_anchor_mm = anchor;
    profile.infill_overlap_pct = if per_w > 0.0 {
        (overlap_mm / per_w * 100.0).min(100.0)
    } else {
        0.0
    };
    profile.external_perimeter_width_mm = ext_w;
    profile.perimeter_width_mm = per_w;
    profile.infill_width_mm = inf_w;
    profile.solid_infill_width_mm = solid_w;
    profile.top_infill_width_mm = top_w;
    profile.first_layer_width_mm = first_w;
    profile.support_width_mm = sup_w;
    profile.perimeter_speed_mm_s = speeds.perimeter;
    profile.external_perimeter_speed_mm_s = speeds.external;
    profile.small_perimeter_speed_mm_s = speeds.small;
    profile.small_perimeter_max_length_mm = 2.0 * std::f64::consts::PI * SMALL_PERIMETER_RADIUS_MM;
    profile.infill_speed_mm_s = speeds.infill;
    profile.solid_infill_speed_mm_s = speeds.solid;
    profile.top_solid_infill_speed_mm_s = speeds.top;
    profile.bridge_speed_mm_s = speeds.bridge;
    profile.support_speed_mm_s = speeds.support;
    profile.travel_speed_mm_s = r.num("travel_speed")?;
    profile.first_layer_speed_mm_s = speeds.first_layer;
    profile.min_layer_time_s = min_layer_time;
    profile.min_print_speed_mm_s = r.num("min_print_speed")?;
    profile.filament_diameter_mm = r.num("filament_diameter")?;
    profile.filament_density_g_cm3 = density;
    profile.retract_length_mm = r.num("retract_length")?;
    profile.retract_speed_mm_s = retract_speed;
    profile.deretract_speed_mm_s = deretract;
    profile.retract_min_travel_mm = r.num("retract_before_travel")?;
    profile.skirt_loops = r.count("skirts")?;
    profile.skirt_distance_mm = r.num("skirt_distance")?;
    profile.support_enabled = r.flag("support_material")?;
    profile.support_threshold_deg = threshold;
    profile.support_spacing_mm = r.num("support_material_spacing")?;
    profile.validate().map_err(|e| {
        Error::Profile(format!(
            "the presets {} give a profile the estimator refuses: {e}",
            preset_names(c)
        ))
    })?;
    Ok(Mapped {
        profile,
        filament_cost_per_kg: r.num("filament_cost")?,
        notes,
    })
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Speeds {
    perimeter: f64,
    external: f64,
    small: f64,
    infill: f64,
    solid: f64,
    top: f64,
    bridge: f64,
    support: f64,
    first_layer: f64,
}

/// "printer / print / filament" as named in the config, for messages.
pub fn preset_names(c: &Config) -> String {
    let names: Vec<&str> = Kind::ALL
        .into_iter()
        .map(|k| c.preset_name(k))
        .filter(|n| !n.is_empty())
        .collect();
    if names.is_empty() {
        "(unnamed config)".into()
    } else {
        names.join(" / ")
    }
}
