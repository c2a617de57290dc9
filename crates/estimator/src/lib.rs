//! Print time and filament estimate for a triangle mesh on a given printer profile, in milliseconds:
//! slices the mesh at every layer, derives what a slicer would extrude per layer (perimeters, solid and
//! sparse infill, skirt, support, travel) and times it with a trapezoidal motion model. Pure library:
//! no I/O, no async; the server, cache and CLI wrap [`estimate`].
//!
//! ```
//! use fabrouter_estimator::{Profile, estimate};
//!
//! // A 10 mm cube as 12 triangles.
//! let v = |x: f32, y: f32, z: f32| [x * 10.0, y * 10.0, z * 10.0];
//! let quads = [
//!     [v(0., 0., 0.), v(0., 1., 0.), v(1., 1., 0.), v(1., 0., 0.)],
//!     [v(0., 0., 1.), v(1., 0., 1.), v(1., 1., 1.), v(0., 1., 1.)],
//!     [v(0., 0., 0.), v(1., 0., 0.), v(1., 0., 1.), v(0., 0., 1.)],
//!     [v(1., 0., 0.), v(1., 1., 0.), v(1., 1., 1.), v(1., 0., 1.)],
//!     [v(1., 1., 0.), v(0., 1., 0.), v(0., 1., 1.), v(1., 1., 1.)],
//!     [v(0., 1., 0.), v(0., 0., 0.), v(0., 0., 1.), v(0., 1., 1.)],
//! ];
//! let triangles: Vec<[[f32; 3]; 3]> =
//!     quads.iter().flat_map(|q| [[q[0], q[1], q[2]], [q[0], q[2], q[3]]]).collect();
//!
//! let profile = Profile::builtin("prusaslicer-b").expect("built-in");
//! let e = estimate(&triangles, &profile).expect("a cube prints");
//! assert_eq!(e.layers, 50);
//! assert!(e.print_time_s > 0.0 && e.filament_g > 0.0);
//! // Cache key for (mesh hash, profile): the profile's canonical content hash.
//! assert_eq!(profile.content_hash().len(), 64);
//! ```

mod estimate;
mod geom;
mod motion;
mod profile;
pub mod replay;
mod slice;

pub use estimate::{LayerOutline, estimate, slice_outlines};
pub use profile::{
    Cornering, InfillPattern, MAX_PERIMETERS, MAX_SOLID_OR_SKIRT, Profile, ProfileError,
};

use serde::{Deserialize, Serialize};

/// The estimation model's version. Figures cached by a design's and a profile's hashes are
/// keyed by it too, so a router upgraded to a changed model recomputes them instead of serving
/// the old model's figures. Raise it whenever a change moves any estimate.
pub const MODEL_VERSION: u32 = 2;

/// At most this many layers are sliced; more means a wrong layer height or wrong units.
pub const MAX_LAYERS: usize = 20_000;

/// Time, material and path length of one feature kind.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq)]
pub struct FeatureEstimate {
    pub time_s: f64,
    pub filament_mm: f64,
    /// Nozzle path length in the XY plane.
    pub path_mm: f64,
}

/// Per-feature split of the estimate. Travel includes retraction and layer-change time.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq)]
pub struct Breakdown {
    /// External and inner perimeters.
    pub perimeters: FeatureEstimate,
    /// Sparse infill.
    pub infill: FeatureEstimate,
    /// Solid infill: bottom, top, bridges, and regions too small for sparse infill.
    pub solid: FeatureEstimate,
    pub support: FeatureEstimate,
    pub skirt: FeatureEstimate,
    pub travel: FeatureEstimate,
}

/// The estimate split by PrusaSlicer's extrusion roles (its G-code's `;TYPE:` comments), so it can be
/// compared with a sliced file feature by feature.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq)]
pub struct RoleBreakdown {
    pub external_perimeter: FeatureEstimate,
    pub perimeter: FeatureEstimate,
    /// Perimeter stretches over nothing, printed like bridges.
    pub overhang_perimeter: FeatureEstimate,
    /// Sparse infill.
    pub internal_infill: FeatureEstimate,
    pub solid_infill: FeatureEstimate,
    pub top_solid_infill: FeatureEstimate,
    pub bridge_infill: FeatureEstimate,
    /// Gaps between perimeters too narrow for another loop, and thin walls.
    pub gap_fill: FeatureEstimate,
    pub skirt: FeatureEstimate,
    pub support: FeatureEstimate,
    /// Non-extruding moves, including layer changes (retraction time is in `retract`).
    pub travel: FeatureEstimate,
    /// Retracting and priming again.
    pub retract: FeatureEstimate,
    /// The printer's start and end G-code (the profile's `custom_gcode_time_s`).
    #[serde(default)]
    pub custom: FeatureEstimate,
}

impl RoleBreakdown {
    /// Each role with PrusaSlicer's `;TYPE:` name for it (travel and retraction: the names
    /// [`replay`] books them under).
    pub fn named(&self) -> [(&'static str, FeatureEstimate); 13] {
        [
            ("External perimeter", self.external_perimeter),
            ("Perimeter", self.perimeter),
            ("Overhang perimeter", self.overhang_perimeter),
            ("Internal infill", self.internal_infill),
            ("Solid infill", self.solid_infill),
            ("Top solid infill", self.top_solid_infill),
            ("Bridge infill", self.bridge_infill),
            ("Gap fill", self.gap_fill),
            ("Skirt/Brim", self.skirt),
            ("Support material", self.support),
            (replay::TRAVEL, self.travel),
            (replay::RETRACT, self.retract),
            ("Custom", self.custom),
        ]
    }
}

/// The estimate for one mesh on one profile.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Estimate {
    pub profile_name: String,
    pub print_time_s: f64,
    pub filament_mm: f64,
    pub filament_g: f64,
    pub filament_cm3: f64,
    pub layers: u32,
    /// Model extent (x, y, z) after dropping it onto the bed.
    pub extent_mm: [f64; 3],
    pub breakdown: Breakdown,
    /// The same figures split by PrusaSlicer's extrusion roles.
    #[serde(default)]
    pub roles: RoleBreakdown,
    pub travel_moves: u32,
    pub retractions: u32,
    /// Time added by the minimum-layer-time rule, and on how many layers it applied.
    pub cooling_slowdown_s: f64,
    pub slowed_layers: u32,
    /// Down-facing area flatter than the profile's support threshold (reported even without support).
    pub overhang_area_mm2: f64,
    /// Outline chains that did not close (bridged with a straight edge or dropped), over all layers.
    pub unclosed_loops: u32,
    pub warnings: Vec<String>,
}

/// Why no estimate could be given; each message says what to change.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EstimateError {
    #[error("invalid printer profile: {0}")]
    InvalidProfile(#[from] ProfileError),
    #[error(
        "model does not fit the printer: it is {:.1} x {:.1} x {:.1} mm, the build volume is {:.1} x {:.1} x {:.1} mm; scale it down, split it, or choose a bigger printer",
        extent_mm[0], extent_mm[1], extent_mm[2], build_volume_mm[0], build_volume_mm[1], build_volume_mm[2]
    )]
    DoesNotFit {
        extent_mm: [f64; 3],
        build_volume_mm: [f64; 3],
    },
    #[error(
        "model has no layers: it is {height_mm} mm tall and the first layer is {first_layer_height_mm} mm; {hint}"
    )]
    NoLayers {
        height_mm: f64,
        first_layer_height_mm: f64,
        hint: String,
    },
    #[error(
        "model would need {layers} layers, more than the limit of {limit}; check the layer height and the model's units"
    )]
    TooManyLayers { layers: usize, limit: usize },
    #[error("mesh is too broken to slice: {reason}")]
    TooBroken { reason: String },
    #[error("nothing would be printed: {reason}")]
    NothingToPrint { reason: String },
}
