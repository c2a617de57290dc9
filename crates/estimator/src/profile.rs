//! Printer profiles: everything a slicer's time and filament estimate depends on, loadable from TOML,
//! validated field by field, with built-in profiles and a stable content hash used as a cache key.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Why a profile was rejected; always names the field so the author can fix the file.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ProfileError {
    #[error("profile TOML could not be read: {0}")]
    Toml(String),
    #[error("profile field `{field}` is invalid: {reason}")]
    InvalidField { field: &'static str, reason: String },
}

/// Sparse infill pattern. Every pattern deposits the same material for a given density (slicers scale
/// line spacing by the number of sweep directions); the pattern changes how the path is broken up.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum InfillPattern {
    Rectilinear,
    Grid,
    Triangles,
    Stars,
    Cubic,
    Gyroid,
    Honeycomb,
}

impl InfillPattern {
    /// Number of line directions per layer: lines of one direction are spaced this many times wider.
    pub fn directions(self) -> u32 {
        match self {
            InfillPattern::Rectilinear | InfillPattern::Gyroid | InfillPattern::Honeycomb => 1,
            InfillPattern::Grid => 2,
            InfillPattern::Triangles | InfillPattern::Stars | InfillPattern::Cubic => 3,
        }
    }
}

/// Which of PrusaSlicer's per-feature accelerations an extrusion takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AccelRole {
    Perimeter,
    Bridge,
    Infill,
    /// Skirt, support, gap fill: the default (print) acceleration.
    Other,
}

/// How the firmware limits speed at a corner between two moves.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
#[serde(tag = "model", rename_all = "snake_case", deny_unknown_fields)]
pub enum Cornering {
    /// Classic (Marlin 1.x / PrusaSlicer estimator) per-axis jerk: the instantaneous speed change an
    /// axis may make.
    Jerk { jerk_xy_mm_s: f64 },
    /// Junction deviation (Marlin 2, Klipper "square corner velocity" style): a virtual arc of this
    /// deviation through the corner, taken at the acceleration limit.
    JunctionDeviation { junction_deviation_mm: f64 },
}

/// A printer + filament + print-settings profile. Every quantity carries its unit in its name.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub name: String,

    // Machine.
    pub build_x_mm: f64,
    pub build_y_mm: f64,
    pub build_z_mm: f64,
    pub nozzle_diameter_mm: f64,
    pub max_speed_xy_mm_s: f64,
    pub z_speed_mm_s: f64,
    /// Acceleration of extruding moves.
    pub print_acceleration_mm_s2: f64,
    pub travel_acceleration_mm_s2: f64,
    /// Acceleration of extruder-only (retract / deretract) moves.
    pub retract_acceleration_mm_s2: f64,
    /// Acceleration of perimeters (PrusaSlicer `perimeter_acceleration`); 0 uses
    /// `print_acceleration_mm_s2`. Like it, already within the machine's extruding limit.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub perimeter_acceleration_mm_s2: f64,
    /// Acceleration of sparse, solid and top infill (`infill_acceleration`); 0: the print
    /// acceleration.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub infill_acceleration_mm_s2: f64,
    /// Acceleration of bridges (`bridge_acceleration`); 0: the print acceleration.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub bridge_acceleration_mm_s2: f64,
    /// Acceleration of everything extruded on the first layer (`first_layer_acceleration`); 0:
    /// the feature's own.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub first_layer_acceleration_mm_s2: f64,
    pub cornering: Cornering,

    // Layers and walls.
    pub layer_height_mm: f64,
    pub first_layer_height_mm: f64,
    pub perimeters: u32,
    pub top_solid_layers: u32,
    pub bottom_solid_layers: u32,
    pub infill_density_pct: f64,
    pub infill_pattern: InfillPattern,
    /// Sparse infill regions smaller than this are filled solid (PrusaSlicer `solid_infill_below_area`).
    pub solid_infill_below_area_mm2: f64,
    /// Length of the anchor that joins a sparse infill line to the perimeter.
    pub infill_anchor_mm: f64,
    /// How far infill reaches into the innermost perimeter, in % of the perimeter width.
    pub infill_overlap_pct: f64,

    // Extrusion widths.
    pub external_perimeter_width_mm: f64,
    pub perimeter_width_mm: f64,
    pub infill_width_mm: f64,
    pub solid_infill_width_mm: f64,
    pub top_infill_width_mm: f64,
    pub first_layer_width_mm: f64,
    pub support_width_mm: f64,

    // Speeds.
    pub perimeter_speed_mm_s: f64,
    pub external_perimeter_speed_mm_s: f64,
    /// Speed for closed perimeter loops no longer than `small_perimeter_max_length_mm`.
    pub small_perimeter_speed_mm_s: f64,
    pub small_perimeter_max_length_mm: f64,
    pub infill_speed_mm_s: f64,
    pub solid_infill_speed_mm_s: f64,
    pub top_solid_infill_speed_mm_s: f64,
    pub bridge_speed_mm_s: f64,
    pub support_speed_mm_s: f64,
    pub travel_speed_mm_s: f64,
    pub first_layer_speed_mm_s: f64,

    // Cooling.
    /// Layers faster than this are slowed down (0 disables the rule).
    pub min_layer_time_s: f64,
    /// Slow-down never goes below this speed.
    pub min_print_speed_mm_s: f64,

    // Filament.
    pub filament_diameter_mm: f64,
    pub filament_density_g_cm3: f64,

    // Retraction.
    pub retract_length_mm: f64,
    pub retract_speed_mm_s: f64,
    pub deretract_speed_mm_s: f64,
    /// Travels shorter than this do not retract.
    pub retract_min_travel_mm: f64,
    /// The nozzle lifts this much at each retraction and lowers again before printing
    /// (PrusaSlicer `retract_lift`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retract_lift_mm: f64,
    /// Acceleration of Z moves (`machine_max_acceleration_z`); 0: Z moves take their length over
    /// `z_speed_mm_s`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub z_acceleration_mm_s2: f64,

    // Skirt.
    pub skirt_loops: u32,
    pub skirt_distance_mm: f64,
    /// Layers the skirt is printed on (PrusaSlicer `skirt_height`); 0 or 1: the first only.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub skirt_height_layers: u32,
    /// Time of the printer's own start and end G-code (PrusaSlicer `start_gcode` / `end_gcode`:
    /// purge lines, lifting and parking), e.g. [`crate::replay::replay_gcode`] of the expanded
    /// text. PrusaSlicer counts it in its total but not its filament in "filament used".
    #[serde(default, skip_serializing_if = "is_zero")]
    pub custom_gcode_time_s: f64,
    /// More skirt loops are added until the first layer's skirt takes at least this much
    /// filament (PrusaSlicer `min_skirt_length`, mm of filament).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub min_skirt_length_mm: f64,

    // Support.
    pub support_enabled: bool,
    /// Down-facing surfaces flatter than this (degrees from horizontal) get support.
    pub support_threshold_deg: f64,
    /// Distance between support lines.
    pub support_spacing_mm: f64,
}

/// Optional fields left at 0 stay out of the serialized profile, so adding them changed no
/// existing profile's content hash.
fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

fn is_one(v: &u32) -> bool {
    *v == 1
}

fn one() -> u32 {
    1
}

/// Names accepted by [`Profile::builtin`].
const BUILTIN_NAMES: &[&str] = &["prusaslicer-b", "prusaslicer-b-0.6", "bigbed-400"];

/// PrusaSlicer's automatic extrusion width (`Flow::auto_extrusion_width`): 1.125 x nozzle for
/// perimeters and infill, 1.0 x nozzle for top infill and support.
fn auto_width(nozzle_mm: f64) -> f64 {
    1.125 * nozzle_mm
}

impl Profile {
    /// Built-in profiles by name (see [`Profile::builtin_names`]).
    ///
    /// `prusaslicer-b` mirrors `prusaslicer_B_explicit.ini` (PrusaSlicer 2.5 defaults with 0.2 mm
    /// layers, 20 % stars infill, 0.4 mm nozzle, 1.75 mm PLA at 1.24 g/cm3): speeds, widths
    /// (PrusaSlicer's automatic widths for `extrusion_width = 0`), normal-mode machine limits
    /// (`machine_max_acceleration_extruding = 1500`, jerk 10), cooling (`slowdown_below_layer_time
    /// = 5`, `min_print_speed = 10`), retraction 2 mm at 40 mm/s above 2 mm travel, one skirt loop.
    pub fn builtin(name: &str) -> Option<Profile> {
        let b = Self::prusaslicer_b();
        match name {
            "prusaslicer-b" => Some(b),
            "prusaslicer-b-0.6" => {
                let nozzle = 0.6;
                let w = auto_width(nozzle);
                Some(Profile {
                    name: name.to_string(),
                    nozzle_diameter_mm: nozzle,
                    layer_height_mm: 0.3,
                    first_layer_height_mm: 0.3,
                    perimeters: 2,
                    external_perimeter_width_mm: w,
                    perimeter_width_mm: w,
                    infill_width_mm: w,
                    solid_infill_width_mm: w,
                    top_infill_width_mm: nozzle,
                    first_layer_width_mm: 2.0 * 0.3,
                    support_width_mm: nozzle,
                    infill_anchor_mm: 6.0 * w,
                    ..b
                })
            }
            // The reference's C_bigbed variant: B on a 400 x 400 x 400 mm machine.
            "bigbed-400" => Some(Profile {
                name: name.to_string(),
                build_x_mm: 400.0,
                build_y_mm: 400.0,
                build_z_mm: 400.0,
                ..b
            }),
            _ => None,
        }
    }

    pub fn builtin_names() -> &'static [&'static str] {
        BUILTIN_NAMES
    }

    fn prusaslicer_b() -> Profile {
        let nozzle = 0.4;
        let w = auto_width(nozzle);
        let first_layer_height = 0.2;
        Profile {
            name: "prusaslicer-b".to_string(),
            // bed_shape = 0x0,200x0,200x200,0x200; max_print_height = 200
            build_x_mm: 200.0,
            build_y_mm: 200.0,
            build_z_mm: 200.0,
            nozzle_diameter_mm: nozzle,
            // machine_max_feedrate_x/y = 500 (normal mode), machine_max_feedrate_z = 12
            max_speed_xy_mm_s: 500.0,
            z_speed_mm_s: 12.0,
            // default_acceleration = 0, so the machine limits apply: extruding/travel 1500,
            // retracting 1500 (E axis itself allows 10000).
            print_acceleration_mm_s2: 1500.0,
            travel_acceleration_mm_s2: 1500.0,
            retract_acceleration_mm_s2: 1500.0,
            // perimeter/infill/bridge/first_layer_acceleration = 0: all at the print acceleration.
            perimeter_acceleration_mm_s2: 0.0,
            infill_acceleration_mm_s2: 0.0,
            bridge_acceleration_mm_s2: 0.0,
            first_layer_acceleration_mm_s2: 0.0,
            cornering: Cornering::Jerk { jerk_xy_mm_s: 10.0 },
            layer_height_mm: 0.2,
            first_layer_height_mm: first_layer_height,
            perimeters: 3,
            top_solid_layers: 3,
            bottom_solid_layers: 3,
            infill_density_pct: 20.0,
            infill_pattern: InfillPattern::Stars,
            solid_infill_below_area_mm2: 70.0,
            // infill_anchor = 600 % of the infill width, capped by infill_anchor_max = 50
            infill_anchor_mm: (6.0 * w).min(50.0),
            infill_overlap_pct: 25.0,
            external_perimeter_width_mm: w,
            perimeter_width_mm: w,
            infill_width_mm: w,
            solid_infill_width_mm: w,
            top_infill_width_mm: nozzle,
            // first_layer_extrusion_width = 200 % of the first layer height
            first_layer_width_mm: 2.0 * first_layer_height,
            support_width_mm: nozzle,
            perimeter_speed_mm_s: 60.0,
            // external_perimeter_speed = 50 % of perimeter_speed
            external_perimeter_speed_mm_s: 30.0,
            small_perimeter_speed_mm_s: 15.0,
            // PrusaSlicer 2.5 treats loops up to 2 pi x 6.5 mm long as small perimeters.
            small_perimeter_max_length_mm: 2.0 * std::f64::consts::PI * 6.5,
            infill_speed_mm_s: 80.0,
            solid_infill_speed_mm_s: 20.0,
            top_solid_infill_speed_mm_s: 15.0,
            bridge_speed_mm_s: 60.0,
            support_speed_mm_s: 60.0,
            travel_speed_mm_s: 130.0,
            first_layer_speed_mm_s: 30.0,
            min_layer_time_s: 5.0,
            min_print_speed_mm_s: 10.0,
            filament_diameter_mm: 1.75,
            filament_density_g_cm3: 1.24,
            retract_length_mm: 2.0,
            retract_speed_mm_s: 40.0,
            // deretract_speed = 0 means "same as retract_speed"
            deretract_speed_mm_s: 40.0,
            retract_min_travel_mm: 2.0,
            // retract_lift = 0; Z moves are timed at the Z speed (no Z acceleration).
            retract_lift_mm: 0.0,
            z_acceleration_mm_s2: 0.0,
            skirt_loops: 1,
            skirt_distance_mm: 6.0,
            // skirt_height = 1, min_skirt_length = 0; the reference's start and end G-code is not
            // counted (it only homes and heats).
            skirt_height_layers: 1,
            min_skirt_length_mm: 0.0,
            custom_gcode_time_s: 0.0,
            support_enabled: false,
            // support_material_threshold = 0 (auto) behaves close to 55 degrees overhang
            support_threshold_deg: 55.0,
            support_spacing_mm: 2.5,
        }
    }

    /// Parses and validates a profile. Every field is required so a profile file is self-describing.
    pub fn from_toml(s: &str) -> Result<Profile, ProfileError> {
        let profile: Profile = toml::from_str(s).map_err(|e| ProfileError::Toml(e.to_string()))?;
        profile.validate()?;
        Ok(profile)
    }

    /// Serialises to TOML (round-trips through [`Profile::from_toml`]).
    pub fn to_toml(&self) -> String {
        // A struct of plain numbers, strings and a tagged enum always serialises.
        toml::to_string(self).unwrap_or_default()
    }

    /// Stable hex SHA-256 of the canonical content (JSON with fields in declaration order), for
    /// cache keys: equal profiles hash equal, any changed value changes the hash.
    pub fn content_hash(&self) -> String {
        let canonical = serde_json::to_vec(self).unwrap_or_default();
        hex::encode(Sha256::digest(&canonical))
    }

    /// Acceleration of one extrusion role as PrusaSlicer picks it: the first layer's if set, then
    /// the perimeters', the bridges' (overhang perimeters are perimeters first), the infill's,
    /// else the print acceleration.
    pub(crate) fn acceleration_for(&self, role: AccelRole, first_layer: bool) -> f64 {
        let set = |v: f64| (v > 0.0).then_some(v);
        let own = match role {
            AccelRole::Perimeter => set(self.perimeter_acceleration_mm_s2),
            AccelRole::Bridge => {
                set(self.bridge_acceleration_mm_s2).or(set(self.infill_acceleration_mm_s2))
            }
            AccelRole::Infill => set(self.infill_acceleration_mm_s2),
            AccelRole::Other => None,
        };
        let first = if first_layer {
            set(self.first_layer_acceleration_mm_s2)
        } else {
            None
        };
        first.or(own).unwrap_or(self.print_acceleration_mm_s2)
    }

    /// Time of a Z move of `dz` from and to a stop.
    pub(crate) fn z_move_time(&self, dz: f64) -> f64 {
        if self.z_acceleration_mm_s2 > 0.0 {
            crate::motion::move_time(dz, 0.0, self.z_speed_mm_s, 0.0, self.z_acceleration_mm_s2)
        } else {
            dz / self.z_speed_mm_s
        }
    }

    /// The same profile with every XY feed rate capped at the machine's `max_speed_xy_mm_s`, as the
    /// firmware would cap them.
    pub(crate) fn with_speeds_limited(&self) -> Profile {
        let m = self.max_speed_xy_mm_s;
        Profile {
            perimeter_speed_mm_s: self.perimeter_speed_mm_s.min(m),
            external_perimeter_speed_mm_s: self.external_perimeter_speed_mm_s.min(m),
            small_perimeter_speed_mm_s: self.small_perimeter_speed_mm_s.min(m),
            infill_speed_mm_s: self.infill_speed_mm_s.min(m),
            solid_infill_speed_mm_s: self.solid_infill_speed_mm_s.min(m),
            top_solid_infill_speed_mm_s: self.top_solid_infill_speed_mm_s.min(m),
            bridge_speed_mm_s: self.bridge_speed_mm_s.min(m),
            support_speed_mm_s: self.support_speed_mm_s.min(m),
            travel_speed_mm_s: self.travel_speed_mm_s.min(m),
            first_layer_speed_mm_s: self.first_layer_speed_mm_s.min(m),
            min_print_speed_mm_s: self.min_print_speed_mm_s.min(m),
            ..self.clone()
        }
    }

    /// Checks every field's range; the error names the first offending field.
    pub fn validate(&self) -> Result<(), ProfileError> {
        fn bad(field: &'static str, reason: impl Into<String>) -> ProfileError {
            ProfileError::InvalidField {
                field,
                reason: reason.into(),
            }
        }
        if self.name.trim().is_empty() {
            return Err(bad("name", "must not be empty"));
        }
        let positive: [(&'static str, f64); 35] = [
            ("build_x_mm", self.build_x_mm),
            ("build_y_mm", self.build_y_mm),
            ("build_z_mm", self.build_z_mm),
            ("nozzle_diameter_mm", self.nozzle_diameter_mm),
            ("max_speed_xy_mm_s", self.max_speed_xy_mm_s),
            ("z_speed_mm_s", self.z_speed_mm_s),
            ("print_acceleration_mm_s2", self.print_acceleration_mm_s2),
            ("travel_acceleration_mm_s2", self.travel_acceleration_mm_s2),
            (
                "retract_acceleration_mm_s2",
                self.retract_acceleration_mm_s2,
            ),
            ("layer_height_mm", self.layer_height_mm),
            ("first_layer_height_mm", self.first_layer_height_mm),
            (
                "external_perimeter_width_mm",
                self.external_perimeter_width_mm,
            ),
            ("perimeter_width_mm", self.perimeter_width_mm),
            ("infill_width_mm", self.infill_width_mm),
            ("solid_infill_width_mm", self.solid_infill_width_mm),
            ("top_infill_width_mm", self.top_infill_width_mm),
            ("first_layer_width_mm", self.first_layer_width_mm),
            ("support_width_mm", self.support_width_mm),
            ("perimeter_speed_mm_s", self.perimeter_speed_mm_s),
            (
                "external_perimeter_speed_mm_s",
                self.external_perimeter_speed_mm_s,
            ),
            (
                "small_perimeter_speed_mm_s",
                self.small_perimeter_speed_mm_s,
            ),
            ("infill_speed_mm_s", self.infill_speed_mm_s),
            ("solid_infill_speed_mm_s", self.solid_infill_speed_mm_s),
            (
                "top_solid_infill_speed_mm_s",
                self.top_solid_infill_speed_mm_s,
            ),
            ("bridge_speed_mm_s", self.bridge_speed_mm_s),
            ("support_speed_mm_s", self.support_speed_mm_s),
            ("travel_speed_mm_s", self.travel_speed_mm_s),
            ("first_layer_speed_mm_s", self.first_layer_speed_mm_s),
            ("min_print_speed_mm_s", self.min_print_speed_mm_s),
            ("filament_diameter_mm", self.filament_diameter_mm),
            ("filament_density_g_cm3", self.filament_density_g_cm3),
            ("retract_speed_mm_s", self.retract_speed_mm_s),
            ("deretract_speed_mm_s", self.deretract_speed_mm_s),
            ("support_spacing_mm", self.support_spacing_mm),
            (
                "infill_anchor_mm",
                self.infill_anchor_mm.max(f64::MIN_POSITIVE),
            ),
        ];
        for (field, v) in positive {
            if !v.is_finite() || v <= 0.0 {
                return Err(bad(field, format!("must be a finite number > 0, got {v}")));
            }
        }
        let non_negative: [(&'static str, f64); 15] = [
            ("custom_gcode_time_s", self.custom_gcode_time_s),
            ("retract_lift_mm", self.retract_lift_mm),
            ("z_acceleration_mm_s2", self.z_acceleration_mm_s2),
            (
                "perimeter_acceleration_mm_s2",
                self.perimeter_acceleration_mm_s2,
            ),
            ("infill_acceleration_mm_s2", self.infill_acceleration_mm_s2),
            ("bridge_acceleration_mm_s2", self.bridge_acceleration_mm_s2),
            (
                "first_layer_acceleration_mm_s2",
                self.first_layer_acceleration_mm_s2,
            ),
            (
                "solid_infill_below_area_mm2",
                self.solid_infill_below_area_mm2,
            ),
            ("infill_anchor_mm", self.infill_anchor_mm),
            (
                "small_perimeter_max_length_mm",
                self.small_perimeter_max_length_mm,
            ),
            ("min_layer_time_s", self.min_layer_time_s),
            ("retract_length_mm", self.retract_length_mm),
            ("retract_min_travel_mm", self.retract_min_travel_mm),
            ("skirt_distance_mm", self.skirt_distance_mm),
            ("min_skirt_length_mm", self.min_skirt_length_mm),
        ];
        for (field, v) in non_negative {
            if !v.is_finite() || v < 0.0 {
                return Err(bad(field, format!("must be a finite number >= 0, got {v}")));
            }
        }
        if !(0.0..=100.0).contains(&self.infill_density_pct) {
            return Err(bad(
                "infill_density_pct",
                format!("must be within 0..=100, got {}", self.infill_density_pct),
            ));
        }
        if !(0.0..=100.0).contains(&self.infill_overlap_pct) {
            return Err(bad(
                "infill_overlap_pct",
                format!("must be within 0..=100, got {}", self.infill_overlap_pct),
            ));
        }
        if !(0.0..=90.0).contains(&self.support_threshold_deg) {
            return Err(bad(
                "support_threshold_deg",
                format!("must be within 0..=90, got {}", self.support_threshold_deg),
            ));
        }
        // A layer thicker than the nozzle cannot be extruded; the usual upper bound is ~80 %.
        for (field, h) in [
            ("layer_height_mm", self.layer_height_mm),
            ("first_layer_height_mm", self.first_layer_height_mm),
        ] {
            if h > self.nozzle_diameter_mm {
                return Err(bad(
                    field,
                    format!(
                        "{h} mm is thicker than the {} mm nozzle",
                        self.nozzle_diameter_mm
                    ),
                ));
            }
        }
        // Widths below the layer height give a non-physical (negative) flat part of the bead.
        for (field, w) in [
            (
                "external_perimeter_width_mm",
                self.external_perimeter_width_mm,
            ),
            ("perimeter_width_mm", self.perimeter_width_mm),
            ("infill_width_mm", self.infill_width_mm),
            ("solid_infill_width_mm", self.solid_infill_width_mm),
            ("top_infill_width_mm", self.top_infill_width_mm),
            ("support_width_mm", self.support_width_mm),
        ] {
            if w < self.layer_height_mm {
                return Err(bad(
                    field,
                    format!(
                        "{w} mm is narrower than the {} mm layer height",
                        self.layer_height_mm
                    ),
                ));
            }
        }
        if self.first_layer_width_mm < self.first_layer_height_mm {
            return Err(bad(
                "first_layer_width_mm",
                "is narrower than the first layer height",
            ));
        }
        if self.perimeters > MAX_PERIMETERS {
            return Err(bad(
                "perimeters",
                format!("at most {MAX_PERIMETERS}, got {}", self.perimeters),
            ));
        }
        for (field, n) in [
            ("top_solid_layers", self.top_solid_layers),
            ("bottom_solid_layers", self.bottom_solid_layers),
            ("skirt_loops", self.skirt_loops),
            ("skirt_height_layers", self.skirt_height_layers),
        ] {
            if n > MAX_SOLID_OR_SKIRT {
                return Err(bad(field, format!("at most {MAX_SOLID_OR_SKIRT}, got {n}")));
            }
        }
        match self.cornering {
            Cornering::Jerk { jerk_xy_mm_s }
                if !(jerk_xy_mm_s.is_finite() && jerk_xy_mm_s > 0.0) =>
            {
                return Err(bad("cornering.jerk_xy_mm_s", "must be a finite number > 0"));
            }
            Cornering::JunctionDeviation {
                junction_deviation_mm,
            } if !(junction_deviation_mm.is_finite() && junction_deviation_mm > 0.0) => {
                return Err(bad(
                    "cornering.junction_deviation_mm",
                    "must be a finite number > 0",
                ));
            }
            _ => {}
        }
        Ok(())
    }
}

/// More perimeters than this is not a print setting but a typo; it also bounds offset work per layer.
pub const MAX_PERIMETERS: u32 = 50;
/// Bounds the number of neighbouring layers intersected per layer.
pub const MAX_SOLID_OR_SKIRT: u32 = 100;
