//! Edge topology of a welded mesh: which facet shares each edge, which edges are open or
//! non-manifold or traversed the same way by both facets, connected shells, and boundary loops.
//! Shared by the check and the repair.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use rayon::prelude::*;

/// Marker in `Topology::partner` for an edge used by a single facet.
pub(crate) const BOUNDARY: u32 = u32::MAX;
/// Marker for an edge used by more than two facets.
pub(crate) const NON_MANIFOLD: u32 = u32::MAX - 1;
/// Marker for every edge of a facet left out of the topology (it repeats a vertex).
pub(crate) const SKIPPED: u32 = u32::MAX - 2;
/// Shell id of a facet left out of the topology.
pub(crate) const NO_SHELL: u32 = u32::MAX;

/// Edge `i` of facet `f` runs from corner `i` to corner `(i + 1) % 3`; it is addressed as the
/// "facet edge" `3 * f + i`.
pub(crate) fn edge_ends(corners: &[[u32; 3]], fe: usize) -> (u32, u32) {
    let c = &corners[fe / 3];
    (c[fe % 3], c[(fe % 3 + 1) % 3])
}

/// True when a facet repeats a welded vertex, so it has no area and no proper edges.
pub(crate) fn repeats_vertex(c: &[u32; 3]) -> bool {
    c[0] == c[1] || c[1] == c[2] || c[0] == c[2]
}

/// One hole: its vertices in the direction of the surrounding facets' edges.
pub(crate) struct BoundaryLoop {
    pub vertices: Vec<u32>,
    /// False when the walk could not return to its start (a chain through flipped facets).
    pub closed: bool,
}

pub(crate) struct Topology {
    /// Per facet edge: the partner facet edge across it, or a marker.
    pub partner: Vec<u32>,
    pub boundary_edges: u64,
    pub non_manifold_edges: u64,
    /// Edges shared by two facets that traverse it in the same direction.
    pub inconsistent_edges: u64,
    /// Per facet: its shell (connected through shared edges), or `NO_SHELL`.
    pub shell_of: Vec<u32>,
    pub shells: u32,
}

/// A lock-free union-find over facets. Every link points from a larger index to a smaller
/// one, so chains strictly decrease, a set's root is its first facet, and concurrent links and
/// path halving can never form a cycle.
struct UnionFind {
    parent: Vec<AtomicU32>,
}

impl UnionFind {
    fn new(n: usize) -> Self {
        Self {
            parent: (0..n as u32).map(AtomicU32::new).collect(),
        }
    }

    fn find(&self, mut x: u32) -> u32 {
        loop {
            let p = self.parent[x as usize].load(Ordering::Acquire);
            if p == x {
                return x;
            }
            let grand = self.parent[p as usize].load(Ordering::Acquire);
            if grand != p {
                // Path halving; losing this race only leaves a longer (still valid) path.
                let _ = self.parent[x as usize].compare_exchange(
                    p,
                    grand,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                );
            }
            x = grand;
        }
    }

    fn union(&self, a: u32, b: u32) {
        let (mut a, mut b) = (a, b);
        loop {
            a = self.find(a);
            b = self.find(b);
            if a == b {
                return;
            }
            let (hi, lo) = if a > b { (a, b) } else { (b, a) };
            if self.parent[hi as usize]
                .compare_exchange(hi, lo, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                return;
            }
        }
    }
}

/// Vertex ranges matched in parallel; enough to balance two to a few dozen threads.
const MATCH_RANGES: usize = 64;

/// What one range of vertices found while matching edges.
#[derive(Default)]
struct RangeResult {
    boundary: u64,
    non_manifold: u64,
    inconsistent: u64,
}

impl Topology {
    pub(crate) fn build(corners: &[[u32; 3]], vertex_count: usize) -> Topology {
        let facet_count = corners.len();
        let lower = |c: &[u32; 3], i: usize| c[i].min(c[(i + 1) % 3]) as usize;
        // Edges are bucketed by their lower vertex (a parallel counting sort), so matching is
        // a scan of a handful of entries per vertex instead of a hash lookup per edge.
        // Two halves of the facets are counted and scattered in parallel, each into its own
        // slots of every bucket, so no slot is written twice.
        let half = facet_count.div_ceil(2).max(1);
        let count = |part: &[[u32; 3]]| {
            let mut counts = vec![0u32; vertex_count];
            for c in part.iter().filter(|c| !repeats_vertex(c)) {
                for i in 0..3 {
                    counts[lower(c, i)] += 1;
                }
            }
            counts
        };
        let (first, second) = corners.split_at(half.min(facet_count));
        let (counts_a, counts_b) = rayon::join(|| count(first), || count(second));
        let mut start = Vec::with_capacity(vertex_count + 1);
        let mut cursor_a = counts_a;
        let mut cursor_b = counts_b;
        let mut total = 0usize;
        for v in 0..vertex_count {
            start.push(total);
            let (na, nb) = (cursor_a[v], cursor_b[v]);
            cursor_a[v] = total as u32;
            cursor_b[v] = (total + na as usize) as u32;
            total += (na + nb) as usize;
        }
        start.push(total);
        // Entry: upper vertex in the high half, facet edge in the low half, so sorting a
        // bucket groups the copies of each edge.
        let entries: Vec<AtomicU64> = (0..total).map(|_| AtomicU64::new(0)).collect();
        let scatter = |part: &[[u32; 3]], base: usize, cursor: &mut Vec<u32>| {
            for (f, c) in part.iter().enumerate() {
                if repeats_vertex(c) {
                    continue;
                }
                for i in 0..3 {
                    let slot = &mut cursor[lower(c, i)];
                    let upper = u64::from(c[i].max(c[(i + 1) % 3]));
                    let fe = (3 * (base + f) + i) as u64;
                    entries[*slot as usize].store((upper << 32) | fe, Ordering::Relaxed);
                    *slot += 1;
                }
            }
        };
        rayon::join(
            || scatter(first, 0, &mut cursor_a),
            || scatter(second, first.len(), &mut cursor_b),
        );
        drop((cursor_a, cursor_b));
        let mut entries: Vec<u64> = entries.into_iter().map(AtomicU64::into_inner).collect();

        let partner: Vec<AtomicU32> = (0..facet_count * 3)
            .map(|_| AtomicU32::new(SKIPPED))
            .collect();
        let forward = |fe: u32| {
            let (a, b) = edge_ends(corners, fe as usize);
            a < b
        };
        let per_range = vertex_count.div_ceil(MATCH_RANGES).max(1);
        let mut ranges = Vec::with_capacity(MATCH_RANGES);
        let mut rest = entries.as_mut_slice();
        for v0 in (0..vertex_count).step_by(per_range) {
            let v1 = (v0 + per_range).min(vertex_count);
            let (mine, tail) = rest.split_at_mut(start[v1] - start[v0]);
            ranges.push((v0, v1, mine));
            rest = tail;
        }
        let uf = UnionFind::new(facet_count);
        let results: Vec<RangeResult> = ranges
            .into_par_iter()
            .map(|(v0, v1, slice)| {
                let mut r = RangeResult::default();
                let base = start[v0];
                for v in v0..v1 {
                    let bucket = &mut slice[start[v] - base..start[v + 1] - base];
                    bucket.sort_unstable();
                    for group in bucket.chunk_by(|a, b| a >> 32 == b >> 32) {
                        let fe = |k: usize| (group[k] & 0xFFFF_FFFF) as u32;
                        match group.len() {
                            1 => {
                                partner[fe(0) as usize].store(BOUNDARY, Ordering::Relaxed);
                                r.boundary += 1;
                            }
                            2 => {
                                let (a, b) = (fe(0), fe(1));
                                partner[a as usize].store(b, Ordering::Relaxed);
                                partner[b as usize].store(a, Ordering::Relaxed);
                                if forward(a) == forward(b) {
                                    r.inconsistent += 1;
                                }
                                uf.union(a / 3, b / 3);
                            }
                            n => {
                                r.non_manifold += 1;
                                for k in 0..n {
                                    partner[fe(k) as usize].store(NON_MANIFOLD, Ordering::Relaxed);
                                    uf.union(fe(0) / 3, fe(k) / 3);
                                }
                            }
                        }
                    }
                }
                r
            })
            .collect();
        let partner: Vec<u32> = partner.into_iter().map(AtomicU32::into_inner).collect();

        let (mut boundary, mut non_manifold, mut inconsistent) = (0u64, 0u64, 0u64);
        for r in &results {
            boundary += r.boundary;
            non_manifold += r.non_manifold;
            inconsistent += r.inconsistent;
        }

        // A set's root is its first facet, so numbering roots in facet order numbers shells in
        // order of their first facet.
        let roots: Vec<u32> = (0..facet_count as u32)
            .into_par_iter()
            .with_min_len(4096)
            .map(|f| uf.find(f))
            .collect();
        let mut shell_of = vec![NO_SHELL; facet_count];
        let mut shells = 0u32;
        for (f, c) in corners.iter().enumerate() {
            if roots[f] == f as u32 && !repeats_vertex(c) {
                shell_of[f] = shells;
                shells += 1;
            }
        }
        // Every facet takes its root's label (read from the roots' entries, written in place
        // over the root ids).
        let mut labels = roots;
        labels
            .par_iter_mut()
            .zip(corners)
            .with_min_len(4096)
            .for_each(|(label, c)| {
                *label = if repeats_vertex(c) {
                    NO_SHELL
                } else {
                    shell_of[*label as usize]
                };
            });
        let shell_of = labels;
        Topology {
            partner,
            boundary_edges: boundary,
            non_manifold_edges: non_manifold,
            inconsistent_edges: inconsistent,
            shell_of,
            shells,
        }
    }

    /// Open boundaries as vertex loops, each following the direction of its facets' edges.
    /// Where a vertex has several open edges leaving it, the walk takes the first unused one,
    /// so a figure-eight counts as one loop; a chain that cannot close (inconsistent
    /// orientation) is still returned as one hole.
    pub(crate) fn boundary_loops(&self, corners: &[[u32; 3]]) -> Vec<BoundaryLoop> {
        let mut open: Vec<(u32, u32)> = self
            .partner
            .iter()
            .enumerate()
            .filter(|(_, p)| **p == BOUNDARY)
            .map(|(fe, _)| {
                let (a, _) = edge_ends(corners, fe);
                (a, fe as u32)
            })
            .collect();
        open.sort_unstable();
        let mut used = vec![false; open.len()];
        let mut loops = Vec::new();
        for first in 0..open.len() {
            if used[first] {
                continue;
            }
            let mut path = Vec::new();
            let mut cur = first;
            let closed = loop {
                used[cur] = true;
                let (a, fe) = open[cur];
                path.push(a);
                let (_, b) = edge_ends(corners, fe as usize);
                let from = open.partition_point(|&(v, _)| v < b);
                match (from..open.len())
                    .take_while(|&k| open[k].0 == b)
                    .find(|&k| !used[k])
                {
                    Some(next) => cur = next,
                    None => break b == path[0],
                }
            };
            loops.push(BoundaryLoop {
                vertices: path,
                closed,
            });
        }
        loops
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two triangles of a square, wound consistently.
    #[test]
    fn square_has_four_boundary_edges_in_one_loop() {
        let corners = [[0, 1, 2], [0, 2, 3]];
        let t = Topology::build(&corners, 4);
        assert_eq!(t.boundary_edges, 4);
        assert_eq!(t.inconsistent_edges, 0);
        assert_eq!(t.shells, 1);
        let loops = t.boundary_loops(&corners);
        assert_eq!(loops.len(), 1);
        assert_eq!(loops[0].vertices.len(), 4);
        assert!(loops[0].closed);
    }

    #[test]
    fn flipped_neighbour_and_fin_are_found() {
        let corners = [[0, 1, 2], [0, 3, 2]];
        let t = Topology::build(&corners, 4);
        assert_eq!(t.inconsistent_edges, 1);
        let fin = [[0, 1, 2], [1, 0, 3], [0, 1, 4], [5, 6, 7]];
        let t = Topology::build(&fin, 8);
        assert_eq!(t.non_manifold_edges, 1);
        assert_eq!(t.shells, 2);
    }
}
