//! The mesh check: the figures a designer and the router need to decide whether a mesh can be
//! printed (size, volume, shells, holes, bad edges, orientation, normals, likely unit), a
//! verdict, and findings worded so a designer can act on them.

use nalgebra::Vector3;
use serde::{Deserialize, Serialize};

use crate::Mesh;
use crate::facets::{Facets, Soup};
use crate::topology::{BOUNDARY, NO_SHELL, NON_MANIFOLD, SKIPPED, Topology, edge_ends};
use crate::weld::{WeldSummary, weld_with};

/// How far a stored normal's length may stray from 1 before it counts as non-unit.
const UNIT_NORMAL_TOLERANCE: f64 = 1e-3;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BoundingBox {
    pub min: [f64; 3],
    pub max: [f64; 3],
    pub extent: [f64; 3],
}

/// Facets with one, two or three open edges (admesh's "disconnected edges" statistics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenEdgeFacets {
    pub one: u64,
    pub two: u64,
    pub three: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LengthUnit {
    Millimetre,
    Inch,
    Metre,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnitGuess {
    pub unit: LengthUnit,
    /// One sentence explaining the guess from the extent.
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Printable,
    PrintableWithWarnings,
    NotPrintable,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Error,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// Stable machine-readable code, e.g. `open_edges`.
    pub code: String,
    pub severity: Severity,
    /// What is wrong and what to do about it, for a designer.
    pub message: String,
}

/// Everything the check found; serialisable so the CLI can print it as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeshReport {
    pub triangles: u64,
    /// Distinct vertices after exact welding.
    pub vertices: u64,
    /// Over finite vertices; `None` when there are none.
    pub bounding_box: Option<BoundingBox>,
    pub surface_area_mm2: f64,
    /// Signed volume (divergence theorem about the origin): negative when inside out; only
    /// meaningful for closed shells.
    pub signed_volume_mm3: f64,
    /// Connected components through shared edges.
    pub shells: u32,
    /// Shells without open or non-manifold edges.
    pub closed_shells: u32,
    /// Edges used by one facet only.
    pub boundary_edges: u64,
    /// Loops formed by the boundary edges.
    pub holes: u64,
    pub open_edge_facets: OpenEdgeFacets,
    /// Edges used by more than two facets.
    pub non_manifold_edges: u64,
    /// Facets with zero area or a repeated vertex.
    pub degenerate_facets: u64,
    /// Facets that share no edge with any other facet.
    pub unconnected_facets: u64,
    pub zero_normals: u64,
    /// Stored normals pointing against the winding (right-hand rule) of their facet.
    pub opposing_normals: u64,
    /// Stored normals that are neither zero nor unit length (harmless, counted apart).
    pub non_unit_normals: u64,
    /// Stored normals with non-numeric or infinite components.
    pub unreadable_normals: u64,
    /// Edges that both neighbouring facets traverse in the same direction.
    pub inconsistent_edges: u64,
    /// Closed shells with negative volume that are not cavities inside another shell.
    pub inside_out_shells: u32,
    /// Facets with a NaN or infinite coordinate (left out of area, volume and box).
    pub non_finite_facets: u64,
    pub unit: UnitGuess,
    pub verdict: Verdict,
    pub findings: Vec<Finding>,
}

pub(crate) fn to_v(p: &[f32; 3]) -> Vector3<f64> {
    Vector3::new(f64::from(p[0]), f64::from(p[1]), f64::from(p[2]))
}

/// Area-weighted normal (twice the area, right-hand rule) of a facet.
pub(crate) fn facet_cross(t: &[[f32; 3]; 3]) -> Vector3<f64> {
    let (a, b, c) = (to_v(&t[0]), to_v(&t[1]), to_v(&t[2]));
    (b - a).cross(&(c - a))
}

fn finite(t: &[[f32; 3]; 3]) -> bool {
    // One test on the largest magnitude, which is branch-free and vectorises.
    let most = t
        .as_flattened()
        .iter()
        .fold(0, |m, c| m.max(c.to_bits() & 0x7FFF_FFFF));
    most < f32::INFINITY.to_bits()
}

/// Per shell figures used to find inside-out shells.
pub(crate) struct ShellStats {
    pub volume: f64,
    pub open_or_non_manifold: bool,
    /// Some shared edge is traversed the same way by both facets, so the sign of the volume
    /// says nothing about inside and outside.
    pub inconsistent: bool,
    pub min: [f64; 3],
    pub max: [f64; 3],
}

pub(crate) fn shell_stats<F: Facets>(
    facets: &F,
    corners: &[[u32; 3]],
    topo: &Topology,
    total_volume: f64,
) -> Vec<ShellStats> {
    let mut stats: Vec<ShellStats> = (0..topo.shells)
        .map(|_| ShellStats {
            volume: 0.0,
            open_or_non_manifold: false,
            inconsistent: false,
            min: [f64::INFINITY; 3],
            max: [f64::NEG_INFINITY; 3],
        })
        .collect();
    // Per-edge flags are only needed when some edge is open, non-manifold or inconsistent.
    let edge_problems = topo.boundary_edges + topo.non_manifold_edges + topo.inconsistent_edges > 0;
    // With one shell its volume is the total; only several shells need per-facet volumes.
    let several = stats.len() > 1;
    if let [only] = stats.as_mut_slice() {
        only.volume = total_volume;
    }
    let all = 0..facets.count();
    if several || edge_problems {
        facets.each(all.clone(), |f, t, _| {
            let s = topo.shell_of[f];
            if s == NO_SHELL {
                return;
            }
            let st = &mut stats[s as usize];
            if several && finite(t) {
                st.volume += signed_volume(t, &facet_cross(t));
            }
            if !edge_problems {
                return;
            }
            for i in 0..3 {
                let p = topo.partner[3 * f + i];
                if p == BOUNDARY || p == NON_MANIFOLD {
                    st.open_or_non_manifold = true;
                } else if p < SKIPPED {
                    let (a, b) = edge_ends(corners, 3 * f + i);
                    let (c, d) = edge_ends(corners, p as usize);
                    st.inconsistent |= a == c && b == d;
                }
            }
        });
    }
    // Boxes only matter for telling an inside-out shell from a cavity inside another shell.
    let candidates = stats
        .iter()
        .any(|st| !st.open_or_non_manifold && !st.inconsistent && st.volume < 0.0);
    if candidates && stats.len() > 1 {
        facets.each(all, |f, t, _| {
            let s = topo.shell_of[f];
            if s == NO_SHELL || !finite(t) {
                return;
            }
            let st = &mut stats[s as usize];
            for p in t {
                for (k, &c) in p.iter().enumerate() {
                    st.min[k] = st.min[k].min(f64::from(c));
                    st.max[k] = st.max[k].max(f64::from(c));
                }
            }
        });
    }
    stats
}

/// A facet's share of the volume by the divergence theorem, `V = ∮ x n_x dA`. For closed,
/// consistently oriented shells every such formula gives the same volume; for open or
/// inconsistent ones the figure depends on the formula, and this is the one trimesh uses, so
/// reports stay comparable with it.
pub(crate) fn signed_volume(t: &[[f32; 3]; 3], cross: &Vector3<f64>) -> f64 {
    cross.x * (f64::from(t[0][0]) + f64::from(t[1][0]) + f64::from(t[2][0])) / 6.0
}

/// Closed shells with negative volume whose box is not inside another shell's box: a negative
/// shell inside another one is a cavity, which is correct and must not be flipped.
pub(crate) fn inside_out_shells(stats: &[ShellStats]) -> Vec<usize> {
    let inside = |a: &ShellStats, b: &ShellStats| {
        (0..3).all(|k| a.min[k] >= b.min[k] && a.max[k] <= b.max[k])
    };
    (0..stats.len())
        .filter(|&s| {
            let st = &stats[s];
            !st.open_or_non_manifold
                && !st.inconsistent
                && st.volume < 0.0
                && !stats.iter().enumerate().any(|(o, other)| {
                    o != s && other.volume.abs() > st.volume.abs() && inside(st, other)
                })
        })
        .collect()
}

/// Per-facet figures summed over a block of facets.
#[derive(Clone, Copy)]
struct Sums {
    area: f64,
    volume: f64,
    degenerate: u64,
    zero: u64,
    opposing: u64,
    non_unit: u64,
    unreadable: u64,
    non_finite: u64,
}

impl Default for Sums {
    fn default() -> Self {
        Sums {
            area: 0.0,
            volume: 0.0,
            degenerate: 0,
            zero: 0,
            opposing: 0,
            non_unit: 0,
            unreadable: 0,
            non_finite: 0,
        }
    }
}

impl Sums {
    /// `repeats`: two corners weld together.
    ///
    /// This runs once per facet on every check, so it is written out on plain `f64`s, with
    /// the operations of [`facet_cross`], [`signed_volume`] and nalgebra's `norm` and `dot` in
    /// the same order, so the figures are bit for bit the same. Always inlined into the weld's
    /// loop, so the corners stay in registers: read back from a copy on the stack, they
    /// stalled every call (narrow stores reloaded wider cannot be forwarded).
    #[inline(always)]
    fn add(&mut self, t: &[[f32; 3]; 3], repeats: bool, n: &[f32; 3]) {
        // Written out: `map` on arrays costs several times more here.
        let v = |p: &[f32; 3]| [f64::from(p[0]), f64::from(p[1]), f64::from(p[2])];
        let (a, b, c) = (v(&t[0]), v(&t[1]), v(&t[2]));
        let d = [b[0] - a[0], b[1] - a[1], b[2] - a[2]];
        let e = [c[0] - a[0], c[1] - a[1], c[2] - a[2]];
        let cross = [
            d[1] * e[2] - d[2] * e[1],
            d[2] * e[0] - d[0] * e[2],
            d[0] * e[1] - d[1] * e[0],
        ];
        let squared = cross[0] * cross[0] + cross[1] * cross[1] + cross[2] * cross[2];
        // A non-finite coordinate makes a component of `d` or `e` non-finite, every such
        // component is a factor of some term of the cross product, and nothing here turns an
        // infinity or NaN back into a number; finite coordinates cannot overflow `f64` here.
        // So this one test says whether all nine coordinates are finite.
        if !squared.is_finite() {
            self.non_finite += 1;
            return;
        }
        let twice_area = squared.sqrt();
        self.area += twice_area / 2.0;
        self.volume += cross[0] * (a[0] + b[0] + c[0]) / 6.0;
        if twice_area == 0.0 || repeats {
            self.degenerate += 1;
        }
        let m = v(n);
        let stored_squared = m[0] * m[0] + m[1] * m[1] + m[2] * m[2];
        if !n.iter().all(|v| v.is_finite()) {
            self.unreadable += 1;
        } else if stored_squared == 0.0 {
            self.zero += 1;
        } else {
            let dot = m[0] * cross[0] + m[1] * cross[1] + m[2] * cross[2];
            if twice_area > 0.0 && dot < 0.0 {
                self.opposing += 1;
            }
            // Most stored normals are unit: inside this band the square root is certainly
            // within the tolerance (0.9981 and 1.002 have roots 0.99905 and 1.000999), so it is
            // only taken outside it.
            let surely_unit = (0.9981..=1.002).contains(&stored_squared);
            if !surely_unit && (stored_squared.sqrt() - 1.0).abs() > UNIT_NORMAL_TOLERANCE {
                self.non_unit += 1;
            }
        }
    }

    fn merged(self, o: &Sums) -> Sums {
        Sums {
            area: self.area + o.area,
            volume: self.volume + o.volume,
            degenerate: self.degenerate + o.degenerate,
            zero: self.zero + o.zero,
            opposing: self.opposing + o.opposing,
            non_unit: self.non_unit + o.non_unit,
            unreadable: self.unreadable + o.unreadable,
            non_finite: self.non_finite + o.non_finite,
        }
    }
}

/// Checks a mesh as read, without changing it. Meshes come from [`crate::parse_stl`], which
/// bounds them by [`crate::MAX_SUPPORTED_TRIANGLES`] (indices are 32-bit).
pub fn check(mesh: &Mesh) -> MeshReport {
    check_facets(&Soup {
        triangles: &mesh.triangles,
        normals: &mesh.normals,
    })
}

/// The check of any facet source (at most [`crate::MAX_SUPPORTED_TRIANGLES`] facets).
pub(crate) fn check_facets<F: Facets>(facets: &F) -> MeshReport {
    // Per-facet geometry is summed during the weld's pass over the triangles, which reads
    // them anyway; block sums are added in facet order.
    let (weld, block_sums) = weld_with(facets, Sums::default, |s: &mut Sums, _, t, n, repeats| {
        s.add(t, repeats, n)
    });
    let WeldSummary {
        vertex_count,
        corners,
        min,
        max,
    } = weld;
    let sums = block_sums
        .iter()
        .fold(Sums::default(), |acc, s| acc.merged(s));
    let topo = Topology::build(&corners, vertex_count);
    let holes = if topo.boundary_edges > 0 {
        topo.boundary_loops(&corners).len() as u64
    } else {
        0
    };
    // Facets with 1, 2 or 3 open edges (3: unconnected); only an open mesh has any.
    let mut open = [0u64; 3];
    if topo.boundary_edges > 0 {
        for edges in topo.partner.chunks_exact(3) {
            let n = edges.iter().filter(|&&p| p == BOUNDARY).count();
            if n > 0 {
                open[n - 1] += 1;
            }
        }
    }
    let bounding_box = bounding_box(min, max);
    let stats = shell_stats(facets, &corners, &topo, sums.volume);
    let closed_shells = stats.iter().filter(|s| !s.open_or_non_manifold).count() as u32;
    let inside_out = inside_out_shells(&stats).len() as u32;
    let unit = guess_unit(bounding_box.as_ref());

    let mut report = MeshReport {
        triangles: facets.count() as u64,
        vertices: vertex_count as u64,
        bounding_box,
        surface_area_mm2: sums.area,
        signed_volume_mm3: sums.volume,
        shells: topo.shells,
        closed_shells,
        boundary_edges: topo.boundary_edges,
        holes,
        open_edge_facets: OpenEdgeFacets {
            one: open[0],
            two: open[1],
            three: open[2],
        },
        non_manifold_edges: topo.non_manifold_edges,
        degenerate_facets: sums.degenerate,
        unconnected_facets: open[2],
        zero_normals: sums.zero,
        opposing_normals: sums.opposing,
        non_unit_normals: sums.non_unit,
        unreadable_normals: sums.unreadable,
        inconsistent_edges: topo.inconsistent_edges,
        inside_out_shells: inside_out,
        non_finite_facets: sums.non_finite,
        unit,
        verdict: Verdict::Printable,
        findings: Vec::new(),
    };
    report.findings = findings(&report);
    report.verdict = match report.findings.iter().map(|f| f.severity).max() {
        Some(Severity::Error) => Verdict::NotPrintable,
        Some(Severity::Warning) => Verdict::PrintableWithWarnings,
        _ => Verdict::Printable,
    };
    report
}

fn bounding_box(min: [f32; 3], max: [f32; 3]) -> Option<BoundingBox> {
    // Empty (no finite corner) while min > max.
    let (min, max) = (min.map(f64::from), max.map(f64::from));
    (min[0] <= max[0]).then(|| BoundingBox {
        min,
        max,
        extent: [max[0] - min[0], max[1] - min[1], max[2] - min[2]],
    })
}

/// Smallest largest-extent, in mm, of something worth printing; below it the file was most
/// likely written in larger units.
const SMALLEST_PLAUSIBLE_MM: f64 = 2.0;
/// Largest extent, in file units, that still reads as inches (25.4 mm per unit) rather than
/// metres when the part is implausibly small in mm.
const LARGEST_INCH_EXTENT: f64 = 40.0;
const MM_PER_INCH: f64 = 25.4;
/// A part that would still be under this many mm if read as inches is taken to be in metres.
const SMALLEST_INCH_PART_MM: f64 = 10.0;

fn guess_unit(bbox: Option<&BoundingBox>) -> UnitGuess {
    let Some(b) = bbox else {
        return UnitGuess {
            unit: LengthUnit::Millimetre,
            reason: "no finite vertices, so the unit cannot be judged; STL is assumed to be in mm"
                .to_string(),
        };
    };
    let e = b.extent;
    let largest = e[0].max(e[1]).max(e[2]);
    let dims = format!("{:.4} x {:.4} x {:.4}", e[0], e[1], e[2]);
    // Whole millimetres written in inches (e.g. 3.937 = 100 mm) betray an inch export.
    let whole_mm_in_inches = e.iter().all(|&v| {
        let mm = v * MM_PER_INCH;
        mm >= 1.0 && (mm - mm.round()).abs() < 0.01
    }) && e.iter().any(|&v| (v - v.round()).abs() > 0.01);
    if largest * MM_PER_INCH < SMALLEST_INCH_PART_MM {
        UnitGuess {
            unit: LengthUnit::Metre,
            reason: format!(
                "the extent {dims} would be under {:.2} mm if read as mm, too small to print; read as metres it is {:.0} mm, so the file was probably written in metres",
                largest,
                largest * 1000.0
            ),
        }
    } else if largest < SMALLEST_PLAUSIBLE_MM {
        UnitGuess {
            unit: LengthUnit::Inch,
            reason: format!(
                "the extent {dims} is only {:.2} mm if read as mm; read as inches it is {:.1} mm, so the file was probably written in inches",
                largest,
                largest * MM_PER_INCH
            ),
        }
    } else if whole_mm_in_inches && largest <= LARGEST_INCH_EXTENT {
        UnitGuess {
            unit: LengthUnit::Inch,
            reason: format!(
                "the extent {dims} is a whole number of mm only when read as inches ({:.1} mm), so the file was probably written in inches",
                largest * MM_PER_INCH
            ),
        }
    } else {
        UnitGuess {
            unit: LengthUnit::Millimetre,
            reason: format!(
                "the extent {dims} is a plausible size for a printed part in mm, the STL convention"
            ),
        }
    }
}

fn finding(code: &str, severity: Severity, message: String) -> Finding {
    Finding {
        code: code.to_string(),
        severity,
        message,
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn findings(r: &MeshReport) -> Vec<Finding> {
    use Severity::*;
    let mut out = Vec::new();
    if r.triangles == 0 {
        out.push(finding(
            "no_triangles",
            Error,
            "the mesh has no triangles: export the model again".to_string(),
        ));
    }
    if r.non_finite_facets > 0 {
        out.push(finding(
            "non_finite_coordinates",
            Error,
            format!(
                "{} NaN or infinite coordinates: the exporter wrote invalid numbers; export again from your CAD",
                plural(r.non_finite_facets, "facet has", "facets have")
            ),
        ));
    }
    if r.boundary_edges > 0 {
        out.push(finding(
            "open_edges",
            Error,
            format!(
                "{} in {}: the surface is not closed; run repair or fix in your CAD",
                plural(r.boundary_edges, "open edge", "open edges"),
                plural(r.holes, "hole", "holes")
            ),
        ));
    }
    if r.non_manifold_edges > 0 {
        out.push(finding(
            "non_manifold_edges",
            Error,
            format!(
                "{} shared by more than two facets: bodies touch along an edge or faces are doubled; merge or separate the bodies in your CAD",
                plural(r.non_manifold_edges, "edge is", "edges are")
            ),
        ));
    }
    if r.inconsistent_edges > 0 {
        out.push(finding(
            "inconsistent_orientation",
            Error,
            format!(
                "{} between facets facing opposite ways: some facets are flipped, so inside and outside are ambiguous; run repair",
                plural(r.inconsistent_edges, "edge lies", "edges lie")
            ),
        ));
    }
    if r.inside_out_shells > 0 {
        out.push(finding(
            "inside_out_shells",
            Error,
            format!(
                "{} inside out (negative volume): slicers may print nothing there; run repair or flip normals in your CAD",
                plural(u64::from(r.inside_out_shells), "closed shell is", "closed shells are")
            ),
        ));
    }
    if r.degenerate_facets > 0 {
        out.push(finding(
            "degenerate_facets",
            Warning,
            format!(
                "{} zero area: harmless for most slicers, and repair removes those that repeat a vertex",
                plural(r.degenerate_facets, "facet has", "facets have")
            ),
        ));
    }
    if r.unconnected_facets > 0 {
        out.push(finding(
            "unconnected_facets",
            Warning,
            format!(
                "{} no neighbour: stray triangles that are not part of any solid; repair removes them",
                plural(r.unconnected_facets, "facet has", "facets have")
            ),
        ));
    }
    if r.unit.unit != LengthUnit::Millimetre {
        let name = match r.unit.unit {
            LengthUnit::Inch => "inches",
            _ => "metres",
        };
        out.push(finding(
            "unit_suspect",
            Warning,
            format!(
                "the model is probably in {name}: {}; scale it on export or before printing",
                r.unit.reason
            ),
        ));
    }
    if r.opposing_normals > 0 {
        out.push(finding(
            "opposing_normals",
            Warning,
            format!(
                "{} against the facet's vertex order: tools that trust normals may disagree about inside and outside; repair recomputes them",
                plural(r.opposing_normals, "stored normal points", "stored normals point")
            ),
        ));
    }
    if r.zero_normals > 0 {
        out.push(finding(
            "zero_normals",
            Info,
            format!(
                "{} zero; slicers recompute normals from the vertex order, so this is harmless",
                plural(r.zero_normals, "stored normal is", "stored normals are")
            ),
        ));
    }
    if r.unreadable_normals > 0 {
        out.push(finding(
            "unreadable_normals",
            Info,
            format!(
                "{} not a finite number; they are ignored and recomputed from the vertex order",
                plural(
                    r.unreadable_normals,
                    "stored normal is",
                    "stored normals are"
                )
            ),
        ));
    }
    if r.non_unit_normals > 0 {
        out.push(finding(
            "non_unit_normals",
            Info,
            format!(
                "{} not unit length; harmless, slicers recompute them",
                plural(r.non_unit_normals, "stored normal is", "stored normals are")
            ),
        ));
    }
    if r.shells > 1 {
        out.push(finding(
            "several_shells",
            Info,
            format!(
                "the mesh has {} separate shells; check that they are meant to print together",
                r.shells
            ),
        ));
    }
    out
}
