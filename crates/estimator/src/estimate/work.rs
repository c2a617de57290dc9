//! What the stages hand each other: one layer's planned extrusions and travel needs
//! ([`LayerWork`]), and the running per-feature totals the travel, cooling and support stages add
//! to ([`Totals`]).

/// The extruding feature kinds a layer plans, one per PrusaSlicer extrusion role (support and
/// travel are booked separately).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Feature {
    ExternalPerimeter,
    Perimeter,
    OverhangPerimeter,
    Infill,
    Solid,
    TopSolid,
    Bridge,
    GapFill,
    Skirt,
}

impl Feature {
    pub(super) const COUNT: usize = 9;
}

/// One group of extrusion on a layer: its path, material and planned time at nominal speed.
pub(super) struct Extrusion {
    pub(super) feature: Feature,
    pub(super) path_mm: f64,
    pub(super) volume_mm3: f64,
    pub(super) speed_mm_s: f64,
    pub(super) time_s: f64,
}

/// What one layer extrudes plus the infill pieces travel needs to reach.
#[derive(Default)]
pub(super) struct LayerWork {
    pub(super) extrusions: Vec<Extrusion>,
    /// Areas of the separate infill pieces (solid and sparse) to travel to.
    pub(super) infill_pieces_mm2: Vec<f64>,
    /// Breaks inside sparse infill (a new line that is not anchored to the previous one), with length.
    pub(super) sparse_breaks: f64,
    pub(super) sparse_break_mm: f64,
    /// Other travels (to the skirt), with length.
    pub(super) extra_travels_mm: Vec<f64>,
    pub(super) travel_time_s: f64,
    pub(super) travel_moves: u32,
    pub(super) travel_path_mm: f64,
    pub(super) retractions: u32,
    /// Time spent retracting and priming (not in `travel_time_s`).
    pub(super) retract_time_s: f64,
}

#[derive(Default, Clone, Copy)]
pub(super) struct Acc {
    pub(super) time_s: f64,
    pub(super) path_mm: f64,
    pub(super) volume_mm3: f64,
}

#[derive(Default)]
pub(super) struct Totals {
    /// Per extruding role, indexed by `Feature as usize`.
    pub(super) roles: [Acc; Feature::COUNT],
    pub(super) support: Acc,
    pub(super) travel_time_s: f64,
    pub(super) travel_path_mm: f64,
    pub(super) travel_moves: u32,
    pub(super) retractions: u32,
    pub(super) retract_time_s: f64,
    pub(super) cooling_slowdown_s: f64,
    pub(super) slowed_layers: u32,
    /// Travel time of the layer being finished as the cooling rule counts it (length over feed
    /// rate, retractions included).
    pub(super) layer_travel_s: f64,
}

impl Totals {
    pub(super) fn acc(&mut self, f: Feature) -> &mut Acc {
        &mut self.roles[f as usize]
    }

    /// The accumulated figures of one role.
    pub(super) fn role(&self, f: Feature) -> Acc {
        self.roles[f as usize]
    }

    /// Books the travel that `work` collected.
    pub(super) fn add_travel(&mut self, work: &LayerWork) {
        self.travel_time_s += work.travel_time_s;
        self.travel_path_mm += work.travel_path_mm;
        self.travel_moves += work.travel_moves;
        self.retractions += work.retractions;
        self.retract_time_s += work.retract_time_s;
    }
}
