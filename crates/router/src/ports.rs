//! What the core needs from outside and does not own: how its records are encoded for the
//! store ([`Codec`]) and what it needs to know of designs and their estimates ([`Catalog`]).
//! The server implements both (the stored form of a job is the API's `Job` message, so the
//! codec is the edge's conversion); tests may implement them as they like.

use fabrouter_scheduler as sched;

use crate::model::{Job, JobEvent, Printer};

/// Encodes the core's records for the store and reads them back.
pub trait Codec: Send + Sync + 'static {
    fn encode_job(&self, job: &Job) -> Vec<u8>;
    fn decode_job(&self, bytes: &[u8]) -> Result<Job, String>;
    fn encode_event(&self, event: &JobEvent) -> Vec<u8>;
    fn decode_event(&self, bytes: &[u8]) -> Result<JobEvent, String>;
    fn encode_printer(&self, printer: &Printer) -> Vec<u8>;
    fn decode_printer(&self, bytes: &[u8]) -> Result<Printer, String>;
}

/// How a design's bytes are to be read by a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DesignFormat {
    Stl,
    Gcode,
}

/// What routing needs to know of a design.
#[derive(Debug, Clone, PartialEq)]
pub struct DesignFacts {
    pub id: String,
    /// Principal id of the designer.
    pub owner: String,
    pub sha256: String,
    pub kind: DesignKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum DesignKind {
    /// A mesh to slice.
    Mesh {
        /// Bounding box as uploaded.
        extent_mm: [f64; 3],
        volume_mm3: f64,
        /// Why it cannot be printed as it is (the mesh check's first error), if so.
        not_printable: Option<String>,
    },
    /// Pre-sliced G-code.
    Gcode {
        /// The farthest point any extrusion reaches, in bed coordinates.
        print_max_mm: [f64; 3],
        /// Its slicer's time and filament (or what its moves add up to).
        figures: sched::EstimateFigures,
        /// The filament it was sliced for ("PLA"), empty if it does not say.
        filament_type: String,
    },
}

impl DesignFacts {
    pub fn format(&self) -> DesignFormat {
        match self.kind {
            DesignKind::Mesh { .. } => DesignFormat::Stl,
            DesignKind::Gcode { .. } => DesignFormat::Gcode,
        }
    }

    /// "designs/{id}".
    pub fn name(&self) -> String {
        format!("designs/{}", self.id)
    }
}

/// The outcome of estimating a design on a profile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Estimated {
    Figures(sched::EstimateFigures),
    /// The model does not slice on this profile; that will not change.
    NotOnProfile,
    /// The router has no definition of this profile.
    UnknownProfile,
    /// It could not be computed now (storage trouble); try again later.
    NotNow,
}

/// Designs and their slice estimates.
pub trait Catalog: Send + Sync + 'static {
    /// The design with this bare id, if it exists.
    fn design(&self, id: &str) -> crate::Result<Option<DesignFacts>>;
    /// Whether the router can estimate on this profile.
    fn knows_profile(&self, profile: &str) -> bool;
    /// Estimates a mesh design on a profile. Blocking (it may slice the model): the core
    /// calls it only where it may block.
    fn estimate(&self, design: &DesignFacts, profile: &str) -> Estimated;
}
