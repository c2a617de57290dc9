//! Mesh repair in the manner of admesh: drop facets that repeat a vertex (or have non-finite
//! coordinates) and facets with no neighbour, unify orientation per shell, fill small holes,
//! turn inside-out shells right way out, and recompute every normal.

use nalgebra::Vector3;
use serde::{Deserialize, Serialize};

use crate::Mesh;
use crate::check::{facet_cross, inside_out_shells, shell_stats, signed_volume, to_v};
use crate::facets::Soup;
use crate::topology::{BOUNDARY, NO_SHELL, SKIPPED, Topology, edge_ends, repeats_vertex};
use crate::weld::{Welded, weld};

/// Holes with more edges than this are left open: a patch over a large opening would invent
/// surface the designer never drew, so such a mesh needs CAD work.
pub const MAX_FILLED_HOLE_EDGES: usize = 1000;
/// A stored normal component may differ this much from the recomputed one before the normal
/// counts as fixed (admesh's tolerance).
const NORMAL_TOLERANCE: f32 = 1e-3;

/// What `repair` changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairReport {
    pub facets_before: u64,
    pub facets_after: u64,
    /// Facets removed because two corners are the same welded vertex.
    pub degenerate_removed: u64,
    /// Facets removed because a coordinate is NaN or infinite.
    pub non_finite_removed: u64,
    /// Facets removed because they share no edge with any other facet.
    pub unconnected_removed: u64,
    /// Facets added to fill holes.
    pub facets_added: u64,
    /// Kept facets whose vertex order was reversed (orientation unified or shell flipped).
    pub facets_reversed: u64,
    /// Closed shells turned right way out.
    pub shells_flipped: u64,
    /// Stored normals that differed from the recomputed ones (more than 0.001 in a component),
    /// plus the normals of added facets, as admesh counts them.
    pub normals_fixed: u64,
    pub holes_filled: u64,
    /// Holes too large (or too tangled) to fill automatically.
    pub holes_left_open: u64,
}

struct Facet {
    corners: [u32; 3],
    /// Index in the input mesh; `None` for facets added to fill holes.
    origin: Option<usize>,
    reversed: bool,
}

impl Facet {
    fn reverse(&mut self) {
        self.corners.swap(1, 2);
        self.reversed = !self.reversed;
    }
}

fn corner_list(facets: &[Facet]) -> Vec<[u32; 3]> {
    facets.iter().map(|f| f.corners).collect()
}

/// Repairs a mesh, returning the repaired copy and what was done. The copy has recomputed
/// unit normals and the input's format, header and solid count.
pub fn repair(mesh: &Mesh) -> (Mesh, RepairReport) {
    let mut report = RepairReport {
        facets_before: mesh.triangles.len() as u64,
        ..RepairReport::default()
    };
    let Welded { positions, corners } = weld(&mesh.triangles);
    let finite = |c: &[u32; 3]| {
        c.iter()
            .all(|&v| positions[v as usize].iter().all(|x| x.is_finite()))
    };
    let mut facets = Vec::with_capacity(corners.len());
    for (i, c) in corners.iter().enumerate() {
        if !finite(c) {
            report.non_finite_removed += 1;
        } else if repeats_vertex(c) {
            report.degenerate_removed += 1;
        } else {
            facets.push(Facet {
                corners: *c,
                origin: Some(i),
                reversed: false,
            });
        }
    }

    let topo = Topology::build(&corner_list(&facets), positions.len());
    let before = facets.len();
    let mut index = 0;
    facets.retain(|_| {
        let keep = topo.partner[3 * index..3 * index + 3]
            .iter()
            .any(|&p| p != BOUNDARY);
        index += 1;
        keep
    });
    report.unconnected_removed = (before - facets.len()) as u64;

    unify_orientation(&mut facets, positions.len());
    fill_holes(&mut facets, &positions, &mut report);
    report.shells_flipped = flip_inside_out(&mut facets, &positions);

    let triangles: Vec<[[f32; 3]; 3]> = facets
        .iter()
        .map(|f| f.corners.map(|v| positions[v as usize]))
        .collect();
    let normals: Vec<[f32; 3]> = triangles
        .iter()
        .map(|t| {
            let n = facet_cross(t);
            let len = n.norm();
            if len > 0.0 {
                [(n.x / len) as f32, (n.y / len) as f32, (n.z / len) as f32]
            } else {
                [0.0; 3]
            }
        })
        .collect();
    for (f, n) in facets.iter().zip(&normals) {
        let changed = match f.origin.and_then(|o| mesh.normals.get(o)) {
            Some(stored) => stored
                .iter()
                .zip(n)
                // NaN in a stored normal also counts as a fix.
                .any(|(s, n)| (s - n).abs() >= NORMAL_TOLERANCE || s.is_nan()),
            None => true,
        };
        report.normals_fixed += u64::from(changed);
        report.facets_reversed += u64::from(f.origin.is_some() && f.reversed);
    }
    report.facets_after = triangles.len() as u64;
    let repaired = Mesh {
        triangles,
        normals,
        format: mesh.format,
        header: mesh.header.clone(),
        solids: mesh.solids,
    };
    (repaired, report)
}

/// Makes every shell consistently oriented by a breadth-first walk over manifold edges,
/// reversing whichever side of each shell needs fewer reversals.
fn unify_orientation(facets: &mut [Facet], vertex_count: usize) {
    let corners = corner_list(facets);
    let topo = Topology::build(&corners, vertex_count);
    let forward = |fe: usize| {
        let (a, b) = edge_ends(&corners, fe);
        a < b
    };
    let mut flip = vec![false; facets.len()];
    let mut seen = vec![false; facets.len()];
    let mut queue = Vec::new();
    for seed in 0..facets.len() {
        if seen[seed] || topo.shell_of[seed] == NO_SHELL {
            continue;
        }
        seen[seed] = true;
        queue.clear();
        queue.push(seed);
        let mut head = 0;
        while head < queue.len() {
            let f = queue[head];
            head += 1;
            for i in 0..3 {
                let p = topo.partner[3 * f + i];
                if p >= SKIPPED {
                    continue;
                }
                let g = p as usize / 3;
                if !seen[g] {
                    seen[g] = true;
                    // Neighbours must traverse their shared edge in opposite directions.
                    flip[g] = flip[f] ^ (forward(3 * f + i) == forward(p as usize));
                    queue.push(g);
                }
            }
        }
        let flipped = queue.iter().filter(|&&f| flip[f]).count();
        let invert = flipped * 2 > queue.len();
        for &f in &queue {
            if flip[f] != invert {
                facets[f].reverse();
            }
        }
    }
}

fn fill_holes(facets: &mut Vec<Facet>, positions: &[[f32; 3]], report: &mut RepairReport) {
    let corners = corner_list(facets);
    let topo = Topology::build(&corners, positions.len());
    for hole in topo.boundary_loops(&corners) {
        let v = &hole.vertices;
        if !hole.closed || v.len() < 3 || v.len() > MAX_FILLED_HOLE_EDGES {
            report.holes_left_open += 1;
            continue;
        }
        // The patch is wound against the loop, so it faces the same way as the surface
        // around it.
        let polygon: Vec<u32> = v.iter().rev().copied().collect();
        let mut added = 0;
        for c in triangulate(&polygon, positions) {
            // A repeated vertex (a loop touching itself) gives no facet; a zero-area one is
            // kept, since leaving it out would leave the hole open.
            if repeats_vertex(&c) {
                continue;
            }
            facets.push(Facet {
                corners: c,
                origin: None,
                reversed: false,
            });
            added += 1;
        }
        report.facets_added += added;
        report.holes_filled += 1;
    }
}

/// Loops up to this many vertices are ear-clipped (quadratic to cubic cost); larger ones are
/// fanned.
const MAX_EAR_CLIPPED: usize = 200;

/// Triangulates a polygon of welded vertices (in its winding order) into triangles with the
/// same winding: ear clipping in the plane of its Newell normal, which keeps patches of
/// non-convex holes from overlapping; a fan where the polygon has no usable plane or ears.
fn triangulate(polygon: &[u32], positions: &[[f32; 3]]) -> Vec<[u32; 3]> {
    let fan = |poly: &[u32]| -> Vec<[u32; 3]> {
        (1..poly.len().saturating_sub(1))
            .map(|k| [poly[0], poly[k], poly[k + 1]])
            .collect()
    };
    if polygon.len() < 3 {
        return Vec::new();
    }
    if polygon.len() == 3 || polygon.len() > MAX_EAR_CLIPPED {
        return fan(polygon);
    }
    let p = |v: u32| to_v(&positions[v as usize]);
    let mut normal = Vector3::zeros();
    for (k, &a) in polygon.iter().enumerate() {
        let b = polygon[(k + 1) % polygon.len()];
        normal += p(a).cross(&p(b));
    }
    let Some(n) = normal.try_normalize(0.0) else {
        return fan(polygon);
    };
    // An orthonormal basis (u, w) of the plane with u x w = n, so the polygon runs
    // counter-clockwise in (u, w) coordinates.
    let helper = if n.x.abs() < 0.9 {
        Vector3::x()
    } else {
        Vector3::y()
    };
    let u = n.cross(&helper).normalize();
    let w = n.cross(&u);
    let flat: Vec<(f64, f64)> = polygon
        .iter()
        .map(|&v| (p(v).dot(&u), p(v).dot(&w)))
        .collect();
    let cross2 = |a: (f64, f64), b: (f64, f64), c: (f64, f64)| {
        (b.0 - a.0) * (c.1 - a.1) - (b.1 - a.1) * (c.0 - a.0)
    };
    let mut ring: Vec<usize> = (0..polygon.len()).collect();
    let mut out = Vec::with_capacity(polygon.len() - 2);
    while ring.len() > 3 {
        let m = ring.len();
        let ear = (0..m).find(|&i| {
            let (a, b, c) = (ring[(i + m - 1) % m], ring[i], ring[(i + 1) % m]);
            let (pa, pb, pc) = (flat[a], flat[b], flat[c]);
            cross2(pa, pb, pc) > 0.0
                && ring.iter().all(|&o| {
                    o == a
                        || o == b
                        || o == c
                        || cross2(pa, pb, flat[o]) < 0.0
                        || cross2(pb, pc, flat[o]) < 0.0
                        || cross2(pc, pa, flat[o]) < 0.0
                })
        });
        // A polygon without a clean ear (it folds over itself in the projection) is fanned
        // from here on.
        let Some(i) = ear else {
            let rest: Vec<u32> = ring.iter().map(|&k| polygon[k]).collect();
            out.extend(fan(&rest));
            return out;
        };
        let (a, b, c) = (ring[(i + m - 1) % m], ring[i], ring[(i + 1) % m]);
        out.push([polygon[a], polygon[b], polygon[c]]);
        ring.remove(i);
    }
    out.push([polygon[ring[0]], polygon[ring[1]], polygon[ring[2]]]);
    out
}

/// Reverses closed shells with negative volume that are not cavities; returns how many.
fn flip_inside_out(facets: &mut [Facet], positions: &[[f32; 3]]) -> u64 {
    let corners = corner_list(facets);
    let topo = Topology::build(&corners, positions.len());
    let triangles: Vec<[[f32; 3]; 3]> = corners
        .iter()
        .map(|c| c.map(|v| positions[v as usize]))
        .collect();
    let total_volume = triangles
        .iter()
        .map(|t| signed_volume(t, &facet_cross(t)))
        .sum();
    let soup = Soup {
        triangles: &triangles,
        normals: &[],
    };
    let stats = shell_stats(&soup, &corners, &topo, total_volume);
    let flipped = inside_out_shells(&stats);
    let mut flip_shell = vec![false; stats.len()];
    for &s in &flipped {
        flip_shell[s] = true;
    }
    for (f, facet) in facets.iter_mut().enumerate() {
        let s = topo.shell_of[f];
        if s != NO_SHELL && flip_shell[s as usize] {
            facet.reverse();
        }
    }
    flipped.len() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An L-shaped (non-convex) hexagon: a fan from the reflex corner's neighbour would
    /// cover area outside the polygon; ear clipping must cover exactly its area.
    #[test]
    fn ear_clipping_covers_a_non_convex_polygon_exactly() {
        let positions = [
            [0.0, 0.0, 0.0],
            [2.0, 0.0, 0.0],
            [2.0, 1.0, 0.0],
            [1.0, 1.0, 0.0],
            [1.0, 2.0, 0.0],
            [0.0, 2.0, 0.0],
        ];
        // Start at the reflex corner's successor so that a plain fan would go wrong.
        let polygon = [4, 5, 0, 1, 2, 3];
        let tris = triangulate(&polygon, &positions);
        assert_eq!(tris.len(), 4);
        let mut area = 0.0;
        for t in &tris {
            let cross = facet_cross(&t.map(|v| positions[v as usize]));
            // Same winding as the polygon (counter-clockwise seen from +z).
            assert!(cross.z > 0.0, "{t:?}");
            area += cross.norm() / 2.0;
        }
        assert!((area - 3.0).abs() < 1e-9, "area {area}");
    }
}
