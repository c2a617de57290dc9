//! Edge topology of a welded mesh: which facet shares each edge, which edges are open or
//! non-manifold or traversed the same way by both facets, connected shells, and boundary loops.
//! Shared by the check and the repair.

use std::sync::atomic::{AtomicU32, Ordering};

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

/// Root of `x` in a union-find forest over `parent`, whose indices start at `base`. Links
/// point from larger to smaller indices, so a set's root is its first facet.
fn find(parent: &mut [u32], base: u32, mut x: u32) -> u32 {
    loop {
        let p = parent[(x - base) as usize];
        if p == x {
            return x;
        }
        // Path halving keeps later finds short.
        let grand = parent[(p - base) as usize];
        parent[(x - base) as usize] = grand;
        x = grand;
    }
}

fn union(parent: &mut [u32], base: u32, a: u32, b: u32) {
    let (a, b) = (find(parent, base, a), find(parent, base, b));
    if a != b {
        parent[(a.max(b) - base) as usize] = a.min(b);
    }
}

/// Facet chunks joined into shells in parallel before the edges between chunks are joined.
const SHELL_CHUNKS: usize = 8;

/// Vertex ranges matched in parallel; enough to balance two to a few dozen threads.
const MATCH_RANGES: usize = 64;
/// Buckets up to this size are sorted by insertion (they are typically about six entries).
const SMALL_BUCKET: usize = 24;

/// What one range of vertices found while matching edges.
#[derive(Default)]
struct RangeResult {
    boundary: u64,
    non_manifold: u64,
    inconsistent: u64,
    /// Facet pairs joined by a non-manifold edge (their shells merge).
    joined: Vec<(u32, u32)>,
}

/// Edges of one part of the facets, bucketed by lower vertex: bucket `v` holds the facet edges
/// from `v` to a higher vertex (their other ends are read back from the corners, which keeps
/// this array half the size).
struct Buckets {
    start: Vec<u32>,
    entries: Vec<u32>,
}

impl Buckets {
    /// A counting sort of the edges of `part` (whose first facet is `base`) by lower vertex.
    fn build(part: &[[u32; 3]], base: usize, vertex_count: usize) -> Buckets {
        let lower = |c: &[u32; 3], i: usize| c[i].min(c[(i + 1) % 3]) as usize;
        let mut start = vec![0u32; vertex_count + 1];
        for c in part.iter().filter(|c| !repeats_vertex(c)) {
            for i in 0..3 {
                start[lower(c, i)] += 1;
            }
        }
        // Inclusive prefix sums: `start[v]` ends bucket `v`. Filling each bucket backwards from
        // its end leaves `start[v]` at its beginning, with no separate cursor array.
        let mut total = 0u32;
        for s in &mut start {
            total += *s;
            *s = total;
        }
        let mut entries = vec![0u32; total as usize];
        for (f, c) in part.iter().enumerate().rev() {
            if repeats_vertex(c) {
                continue;
            }
            for i in (0..3).rev() {
                let slot = &mut start[lower(c, i)];
                *slot -= 1;
                entries[*slot as usize] = (3 * (base + f) + i) as u32;
            }
        }
        start[vertex_count] = total;
        Buckets { start, entries }
    }

    fn bucket(&self, v: usize) -> &[u32] {
        &self.entries[self.start[v] as usize..self.start[v + 1] as usize]
    }
}

fn insertion_sort(v: &mut [u64]) {
    for i in 1..v.len() {
        let x = v[i];
        let mut j = i;
        while j > 0 && v[j - 1] > x {
            v[j] = v[j - 1];
            j -= 1;
        }
        v[j] = x;
    }
}

impl Topology {
    pub(crate) fn build(corners: &[[u32; 3]], vertex_count: usize) -> Topology {
        let facet_count = corners.len();
        // Two halves of the facets are bucketed in parallel, each into its own arrays, so
        // matching a vertex reads its two buckets.
        let half = facet_count.div_ceil(2);
        let (first, second) = corners.split_at(half);
        let (a, b) = rayon::join(
            || Buckets::build(first, 0, vertex_count),
            || Buckets::build(second, half, vertex_count),
        );

        let partner: Vec<AtomicU32> = (0..facet_count * 3)
            .into_par_iter()
            .with_min_len(1 << 14)
            .map(|_| AtomicU32::new(SKIPPED))
            .collect();
        let forward = |fe: u32| {
            let (a, b) = edge_ends(corners, fe as usize);
            a < b
        };
        let per_range = vertex_count.div_ceil(MATCH_RANGES).max(1);
        let results: Vec<RangeResult> = (0..vertex_count)
            .step_by(per_range)
            .collect::<Vec<_>>()
            .into_par_iter()
            .map(|v0| {
                let mut r = RangeResult::default();
                let mut bucket: Vec<u64> = Vec::new();
                // Each facet edge is in the bucket of its lower vertex, so ranges store to
                // disjoint partner entries (relaxed stores are plain stores).
                let set = |fe: u32, p: u32| partner[fe as usize].store(p, Ordering::Relaxed);
                for v in v0..(v0 + per_range).min(vertex_count) {
                    // `upper << 32 | facet edge`, so sorting groups the copies of each edge.
                    bucket.clear();
                    bucket.extend(a.bucket(v).iter().chain(b.bucket(v)).map(|&fe| {
                        let (p, q) = edge_ends(corners, fe as usize);
                        (u64::from(p.max(q)) << 32) | u64::from(fe)
                    }));
                    if bucket.len() <= SMALL_BUCKET {
                        insertion_sort(&mut bucket);
                    } else {
                        bucket.sort_unstable();
                    }
                    for group in bucket.chunk_by(|x, y| x >> 32 == y >> 32) {
                        let fe = |k: usize| group[k] as u32;
                        match group.len() {
                            1 => {
                                set(fe(0), BOUNDARY);
                                r.boundary += 1;
                            }
                            2 => {
                                set(fe(0), fe(1));
                                set(fe(1), fe(0));
                                if forward(fe(0)) == forward(fe(1)) {
                                    r.inconsistent += 1;
                                }
                            }
                            n => {
                                r.non_manifold += 1;
                                for k in 0..n {
                                    set(fe(k), NON_MANIFOLD);
                                    r.joined.push((fe(0) / 3, fe(k) / 3));
                                }
                            }
                        }
                    }
                }
                r
            })
            .collect();
        drop((a, b));
        let partner: Vec<u32> = partner.into_iter().map(AtomicU32::into_inner).collect();

        let (mut boundary, mut non_manifold, mut inconsistent) = (0u64, 0u64, 0u64);
        for r in &results {
            boundary += r.boundary;
            non_manifold += r.non_manifold;
            inconsistent += r.inconsistent;
        }

        // Shells: each chunk of facets joins the shared edges inside it (in parallel, on its
        // own part of the forest); the edges between chunks, few on an exporter's ordering,
        // are joined afterwards.
        let mut shell_of: Vec<u32> = (0..facet_count as u32)
            .into_par_iter()
            .with_min_len(1 << 14)
            .collect();
        let chunk = facet_count.div_ceil(SHELL_CHUNKS).max(1);
        let crossing: Vec<Vec<(u32, u32)>> = shell_of
            .par_chunks_mut(chunk)
            .enumerate()
            .map(|(c, parent)| {
                let base = (c * chunk) as u32;
                let mut crossing = Vec::new();
                for f in base..base + parent.len() as u32 {
                    for i in 0..3 {
                        let p = partner[(3 * f + i) as usize];
                        // Each shared edge once, from its later facet (markers are larger).
                        if p < 3 * f {
                            if p / 3 >= base {
                                union(parent, base, p / 3, f);
                            } else {
                                crossing.push((p / 3, f));
                            }
                        }
                    }
                }
                crossing
            })
            .collect();
        for &(f, g) in crossing
            .iter()
            .flatten()
            .chain(results.iter().flat_map(|r| &r.joined))
        {
            union(&mut shell_of, 0, f, g);
        }
        // Links only point to smaller facets, so by the time a facet is reached its parent's
        // entry already holds that set's shell, which is numbered at its root, the set's first
        // facet: shells are numbered in order of their first facet, in place.
        let mut shells = 0u32;
        for (f, c) in corners.iter().enumerate() {
            let parent = shell_of[f] as usize;
            shell_of[f] = if repeats_vertex(c) {
                NO_SHELL
            } else if parent == f {
                shells += 1;
                shells - 1
            } else {
                shell_of[parent]
            };
        }
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
