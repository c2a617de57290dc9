//! STL reading, mesh checking and repair for fabrouter: a pure library that the router server and
//! the `fab` CLI call to decide whether an uploaded design can be printed, and to fix it when not.
//!
//! Format detection follows the length rule (binary iff `len == 84 + 50 * count_at_offset_80`),
//! never the first word, because many binary exporters write headers that begin with `solid`.
//!
//! ```
//! use fabrouter_mesh::{Limits, UploadScanner, Verdict, check, parse_stl, repair};
//!
//! let stl = "solid demo\n\
//!   facet normal 0 0 -1\n outer loop\n vertex 0 0 0\n vertex 0 10 0\n vertex 10 0 0\n endloop\n endfacet\n\
//!   facet normal 0 -1 0\n outer loop\n vertex 0 0 0\n vertex 10 0 0\n vertex 0 0 10\n endloop\n endfacet\n\
//!   facet normal -1 0 0\n outer loop\n vertex 0 0 0\n vertex 0 0 10\n vertex 0 10 0\n endloop\n endfacet\n\
//!   endsolid demo\n";
//!
//! // While the upload streams in: stop early when a limit is provably exceeded.
//! let mut scanner = UploadScanner::new(stl.len() as u64, Limits::default())?;
//! for chunk in stl.as_bytes().chunks(16) {
//!     scanner.feed(chunk)?;
//! }
//! assert_eq!(scanner.finish()?.triangles, 3);
//!
//! // Once complete: read, check, repair.
//! let mesh = parse_stl(stl.as_bytes(), &Limits::default())?;
//! let report = check(&mesh);
//! assert_eq!((report.boundary_edges, report.holes), (3, 1));
//! assert_eq!(report.verdict, Verdict::NotPrintable);
//!
//! let (fixed, what) = repair(&mesh);
//! assert_eq!(what.facets_added, 1);
//! assert_eq!(check(&fixed).verdict, Verdict::Printable);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod check;
mod error;
mod facets;
mod mem;
mod parse;
mod repair;
mod scan;
mod topology;
mod weld;
mod write;

pub use check::{
    BoundingBox, Finding, LengthUnit, MeshReport, OpenEdgeFacets, Severity, UnitGuess, Verdict,
    check,
};
pub use error::{ParseError, ScanError};
pub use mem::read_file;
pub use parse::{MAX_SUPPORTED_TRIANGLES, StlCheck, check_stl, parse_stl};
pub use repair::{MAX_FILLED_HOLE_EDGES, RepairReport, repair};
pub use scan::{ScanSummary, UploadScanner};
pub use write::to_binary_stl;

use serde::{Deserialize, Serialize};

/// Explicit resource limits for reading a mesh; each is checked before and while parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Largest accepted file, in bytes.
    pub max_bytes: u64,
    /// Largest accepted number of triangles.
    pub max_triangles: u64,
    /// Longest line of an ASCII STL, in bytes (line ends not counted). A line holds a keyword
    /// and up to three numbers, or a solid's name; without this bound a file of one endless
    /// line would be buffered whole before anything could be said about it.
    pub max_line_bytes: u64,
}

/// [`Limits::max_line_bytes`] by default: the same bound the G-code reader has.
pub const DEFAULT_MAX_LINE_BYTES: u64 = 64 * 1024;

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bytes: 256 * 1024 * 1024,
            max_triangles: 20_000_000,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
        }
    }
}

/// The two encodings of STL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StlFormat {
    Binary,
    Ascii,
}

/// A triangle soup exactly as read from an STL file.
#[derive(Debug, Clone, PartialEq)]
pub struct Mesh {
    /// Vertex positions as read, in file order.
    pub triangles: Vec<[[f32; 3]; 3]>,
    /// Stored normals, one per triangle (advisory: non-numeric values are read as NaN).
    pub normals: Vec<[f32; 3]>,
    pub format: StlFormat,
    /// Binary header (lossy UTF-8, trimmed) or the name of the first ASCII solid.
    pub header: String,
    /// Number of `solid` blocks (1 for binary).
    pub solids: u32,
}
