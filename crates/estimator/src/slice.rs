//! Planar slicing: triangle/plane intersection at every layer and chaining of the segments into closed
//! loops. Triangles are swept in z order with an active list, so the work is close to linear in
//! triangles plus layers (each triangle is only visited on the layers it spans).

use crate::geom::{Contour, Pt};
use rayon::prelude::*;
use rustc_hash::FxHashMap;

/// Open chains whose ends are closer than this are joined (float noise, tiny cracks in the mesh).
pub const GAP_CLOSE_MM: f64 = 0.05;
/// An open chain that cannot be joined to others is closed with a straight edge if its own gap is at
/// most this fraction of its length (a missing facet or two); otherwise it is dropped.
pub const SELF_CLOSE_MAX_GAP_FRACTION: f64 = 0.5;
/// Above this many open chains on one layer, gap closing (quadratic) is skipped: the layer is garbage.
pub const MAX_OPEN_CHAINS_PER_LAYER: usize = 256;
/// Loops are simplified to this deviation (PrusaSlicer's G-code resolution is 0.0125 mm).
pub const SIMPLIFY_TOLERANCE_MM: f64 = 0.0125;

/// The outlines of one layer.
#[derive(Debug, Default, Clone)]
pub struct LayerLoops {
    pub loops: Vec<Contour>,
    /// Chains that did not close within [`GAP_CLOSE_MM`] (bridged with a straight edge or dropped).
    pub unclosed: u32,
    /// Of those, how many were dropped.
    pub dropped: u32,
    /// Hash of the quantised outline, to recognise layers identical to their neighbours.
    pub signature: u64,
}

#[derive(Clone, Copy)]
struct Tri {
    /// Index into the caller's triangles (vertices are read from there: 12 bytes per triangle here
    /// instead of a 72-byte f64 copy, which matters for multi-million-triangle uploads).
    idx: u32,
    /// Conservative bounds (rounded outwards to f32); the exact test uses the f64 vertices.
    zmin: f32,
    zmax: f32,
}

/// f32 bounds that are guaranteed to contain the f64 interval [lo, hi].
fn outward(lo: f64, hi: f64) -> (f32, f32) {
    let (mut l, mut h) = (lo as f32, hi as f32);
    if f64::from(l) > lo {
        l = l.next_down();
    }
    if f64::from(h) < hi {
        h = h.next_up();
    }
    (l, h)
}

/// Point where the plane `z` crosses edge (a, b). The edge is put in a canonical order first so that
/// the two triangles sharing the edge compute bit-identical points, which makes chaining exact.
fn edge_point(a: [f64; 3], b: [f64; 3], z: f64) -> Pt {
    let (a, b) = if (a[0], a[1], a[2]) <= (b[0], b[1], b[2]) {
        (a, b)
    } else {
        (b, a)
    };
    let t = (z - a[2]) / (b[2] - a[2]);
    [a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1])]
}

fn key(p: Pt) -> (u64, u64) {
    // +0.0 so that -0.0 and 0.0 meet.
    ((p[0] + 0.0).to_bits(), (p[1] + 0.0).to_bits())
}

/// A triangle's vertices moved by `-origin`, in f64.
pub fn shifted(t: &[[f32; 3]; 3], origin: [f64; 3]) -> [[f64; 3]; 3] {
    t.map(|v| {
        [
            f64::from(v[0]) - origin[0],
            f64::from(v[1]) - origin[1],
            f64::from(v[2]) - origin[2],
        ]
    })
}

/// Slices the triangles, moved by `-origin`, at each of `planes` (ascending). At most `u32::MAX`
/// triangles are considered (far above any upload limit).
pub fn slice(triangles: &[[[f32; 3]; 3]], origin: [f64; 3], planes: &[f64]) -> Vec<LayerLoops> {
    let mut tris: Vec<Tri> = triangles
        .iter()
        .take(u32::MAX as usize)
        .enumerate()
        .filter_map(|(i, t)| {
            let z = [t[0][2], t[1][2], t[2][2]];
            // Horizontal facets never cross a plane's interior.
            if z[0] == z[1] && z[1] == z[2] {
                return None;
            }
            let lo = f64::from(z[0].min(z[1]).min(z[2])) - origin[2];
            let hi = f64::from(z[0].max(z[1]).max(z[2])) - origin[2];
            let (zmin, zmax) = outward(lo, hi);
            Some(Tri {
                idx: i as u32,
                zmin,
                zmax,
            })
        })
        .collect();
    tris.sort_unstable_by(|a, b| a.zmin.total_cmp(&b.zmin));

    // Runs of consecutive layers are swept independently (in parallel); each run starts its active
    // list from the triangles already begun and not yet ended at its first plane.
    let runs = (4 * rayon::current_num_threads()).clamp(1, planes.len().max(1));
    let run_len = planes.len().div_ceil(runs).max(1);
    planes
        .par_chunks(run_len)
        .flat_map_iter(|run| sweep(triangles, origin, &tris, run))
        .collect()
}

/// Slices the planes of one run (ascending) with an active list over `tris` (sorted by `zmin`).
fn sweep(
    triangles: &[[[f32; 3]; 3]],
    origin: [f64; 3],
    tris: &[Tri],
    planes: &[f64],
) -> Vec<LayerLoops> {
    let Some(&z0) = planes.first() else {
        return Vec::new();
    };
    let mut next = tris.partition_point(|t| f64::from(t.zmin) <= z0);
    let mut active: Vec<Tri> = tris[..next]
        .iter()
        .filter(|t| f64::from(t.zmax) >= z0)
        .copied()
        .collect();
    let mut out = Vec::with_capacity(planes.len());
    let mut segments: Vec<[Pt; 2]> = Vec::new();
    for &z in planes {
        while next < tris.len() && f64::from(tris[next].zmin) <= z {
            active.push(tris[next]);
            next += 1;
        }
        active.retain(|t| f64::from(t.zmax) >= z);
        segments.clear();
        for a in &active {
            let v = shifted(&triangles[a.idx as usize], origin);
            // A vertex exactly on the plane counts as above: every crossing triangle then has
            // exactly two crossing edges and neighbours agree on shared edges.
            let above = [v[0][2] >= z, v[1][2] >= z, v[2][2] >= z];
            let n_above = above.iter().filter(|&&a| a).count();
            if n_above == 0 || n_above == 3 {
                continue;
            }
            let mut pts = [[0.0; 2]; 2];
            let mut k = 0;
            for i in 0..3 {
                let j = (i + 1) % 3;
                if above[i] != above[j] && k < 2 {
                    pts[k] = edge_point(v[i], v[j], z);
                    k += 1;
                }
            }
            if k == 2 && pts[0] != pts[1] {
                segments.push(pts);
            }
        }
        out.push(chain(&segments));
    }
    out
}

/// Chains segments sharing exact endpoints into loops, then closes small gaps.
fn chain(segments: &[[Pt; 2]]) -> LayerLoops {
    // Each endpoint key lists up to two segment ends (manifold); extra ends (non-manifold) are kept in
    // an overflow list and simply not followed.
    let mut ends: FxHashMap<(u64, u64), [u32; 2]> = FxHashMap::default();
    ends.reserve(segments.len());
    const NONE: u32 = u32::MAX;
    for (i, s) in segments.iter().enumerate() {
        for (e, p) in s.iter().enumerate() {
            let id = (i as u32) * 2 + e as u32;
            let slot = ends.entry(key(*p)).or_insert([NONE, NONE]);
            if slot[0] == NONE {
                slot[0] = id;
            } else if slot[1] == NONE {
                slot[1] = id;
            }
        }
    }
    let mut used = vec![false; segments.len()];
    let mut closed: Vec<Contour> = Vec::new();
    let mut open: Vec<Contour> = Vec::new();
    let partner = |p: Pt, from_seg: usize, used: &[bool]| -> Option<(usize, usize)> {
        let slot = ends.get(&key(p))?;
        slot.iter()
            .filter(|&&id| id != NONE)
            .map(|&id| ((id / 2) as usize, (id % 2) as usize))
            .find(|&(s, _)| s != from_seg && !used[s])
    };
    for start in 0..segments.len() {
        if used[start] {
            continue;
        }
        used[start] = true;
        let mut pts: Vec<Pt> = vec![segments[start][0], segments[start][1]];
        let mut cur = start;
        let mut is_closed = false;
        // Forward.
        while let Some((s, e)) = partner(*pts.last().unwrap_or(&[0.0; 2]), cur, &used) {
            used[s] = true;
            let other = segments[s][1 - e];
            cur = s;
            if key(other) == key(pts[0]) {
                is_closed = true;
                break;
            }
            pts.push(other);
        }
        if !is_closed {
            // Backward from the start.
            let mut back: Vec<Pt> = Vec::new();
            let mut cur = start;
            let mut head = pts[0];
            while let Some((s, e)) = partner(head, cur, &used) {
                used[s] = true;
                head = segments[s][1 - e];
                back.push(head);
                cur = s;
            }
            if !back.is_empty() {
                back.reverse();
                back.extend_from_slice(&pts);
                pts = back;
            }
            open.push(pts);
        } else {
            closed.push(pts);
        }
    }

    let mut unclosed = 0u32;
    let mut dropped = 0u32;
    if !open.is_empty() {
        if open.len() > MAX_OPEN_CHAINS_PER_LAYER {
            unclosed += open.len() as u32;
            dropped += open.len() as u32;
        } else {
            let (joined, still_open) = close_gaps(open);
            closed.extend(joined);
            for c in still_open {
                unclosed += 1;
                let gap = dist(c[0], c[c.len() - 1]);
                let len: f64 = c.windows(2).map(|w| dist(w[0], w[1])).sum();
                if c.len() >= 3 && gap <= SELF_CLOSE_MAX_GAP_FRACTION * len {
                    closed.push(c);
                } else {
                    dropped += 1;
                }
            }
        }
    }
    let loops: Vec<Contour> = closed
        .into_iter()
        .map(decimate)
        .filter(|c| c.len() >= 3)
        .collect();
    let signature = signature(&loops);
    LayerLoops {
        loops,
        unclosed,
        dropped,
        signature,
    }
}

fn dist(a: Pt, b: Pt) -> f64 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt()
}

/// Greedy end-to-end joining of open chains within [`GAP_CLOSE_MM`]. Returns (closed, still open).
fn close_gaps(mut open: Vec<Contour>) -> (Vec<Contour>, Vec<Contour>) {
    let mut closed = Vec::new();
    let mut still_open = Vec::new();
    while let Some(mut cur) = open.pop() {
        loop {
            let end = cur[cur.len() - 1];
            if dist(end, cur[0]) <= GAP_CLOSE_MM {
                closed.push(std::mem::take(&mut cur));
                break;
            }
            // Nearest start or end of another chain.
            let mut best: Option<(usize, bool, f64)> = None;
            for (i, c) in open.iter().enumerate() {
                let ds = dist(end, c[0]);
                let de = dist(end, c[c.len() - 1]);
                let (d, rev) = if ds <= de { (ds, false) } else { (de, true) };
                if d <= GAP_CLOSE_MM && best.is_none_or(|b| d < b.2) {
                    best = Some((i, rev, d));
                }
            }
            match best {
                Some((i, rev, _)) => {
                    let mut other = open.swap_remove(i);
                    if rev {
                        other.reverse();
                    }
                    cur.extend(other);
                }
                None => {
                    still_open.push(std::mem::take(&mut cur));
                    break;
                }
            }
        }
    }
    (closed, still_open)
}

/// Simplifies a closed loop with Douglas-Peucker at [`SIMPLIFY_TOLERANCE_MM`] (what PrusaSlicer does
/// to every path at its G-code resolution): fine tessellation adds no print time, only work.
fn decimate(c: Contour) -> Contour {
    let n = c.len();
    if n <= 4 {
        return c;
    }
    // Split the loop at the point farthest from the first one; simplify both halves as open chains.
    let d2 = |a: Pt, b: Pt| (a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2);
    let far = (1..n)
        .max_by(|&a, &b| d2(c[0], c[a]).total_cmp(&d2(c[0], c[b])))
        .unwrap_or(n / 2);
    let mut keep = vec![false; n];
    keep[0] = true;
    keep[far] = true;
    let mut stack: Vec<(usize, usize)> = vec![(0, far), (far, n)];
    while let Some((a, b)) = stack.pop() {
        // b == n stands for the wrap-around back to point 0.
        let pa = c[a];
        let pb = c[b % n];
        let mut worst = 0.0;
        let mut at = 0;
        for (k, &q) in c.iter().enumerate().take(b).skip(a + 1) {
            let d = point_segment_distance2(q, pa, pb);
            if d > worst {
                worst = d;
                at = k;
            }
        }
        if worst > SIMPLIFY_TOLERANCE_MM * SIMPLIFY_TOLERANCE_MM {
            keep[at] = true;
            stack.push((a, at));
            stack.push((at, b));
        }
    }
    c.into_iter()
        .zip(keep)
        .filter_map(|(p, k)| k.then_some(p))
        .collect()
}

/// Squared distance from `q` to segment (a, b).
fn point_segment_distance2(q: Pt, a: Pt, b: Pt) -> f64 {
    let d = [b[0] - a[0], b[1] - a[1]];
    let l2 = d[0] * d[0] + d[1] * d[1];
    let t = if l2 <= 0.0 {
        0.0
    } else {
        (((q[0] - a[0]) * d[0] + (q[1] - a[1]) * d[1]) / l2).clamp(0.0, 1.0)
    };
    let (x, y) = (a[0] + t * d[0] - q[0], a[1] + t * d[1] - q[1]);
    x * x + y * y
}

/// Order-insensitive hash of quantised points (1 um), so equal outlines on two layers compare equal.
fn signature(loops: &[Contour]) -> u64 {
    crate::geom::contours_signature(loops)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_joins_shuffled_segments_into_one_loop() {
        let sq = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]];
        // Segments out of order and with mixed direction.
        let segs = vec![
            [sq[2], sq[3]],
            [sq[1], sq[0]],
            [sq[3], sq[0]],
            [sq[1], sq[2]],
        ];
        let l = chain(&segs);
        assert_eq!(l.loops.len(), 1);
        assert_eq!(l.loops[0].len(), 4);
        assert_eq!(l.unclosed, 0);
    }

    #[test]
    fn tiny_gap_is_closed_and_big_one_reported() {
        let segs = vec![
            [[0.0, 0.0], [1.0, 0.0]],
            [[1.0, 0.0], [1.0, 1.0]],
            [[1.0, 1.0], [0.0, 1.0]],
            [[0.0, 1.0], [0.0, 0.01]], // 0.01 mm crack
        ];
        let l = chain(&segs);
        assert_eq!((l.loops.len(), l.unclosed), (1, 0));

        let segs = vec![[[0.0, 0.0], [5.0, 0.0]], [[20.0, 0.0], [25.0, 0.0]]];
        let l = chain(&segs);
        assert_eq!(l.loops.len(), 0);
        assert_eq!((l.unclosed, l.dropped), (2, 2));
    }
}
