//! Edge topology of a welded mesh: which facet shares each edge, which edges are open or
//! non-manifold or traversed the same way by both facets, connected shells, and boundary loops.
//! Shared by the check and the repair.

use rayon::prelude::*;

use crate::mem::Buf;
use crate::weld::PARALLEL_MIN_TRIANGLES;

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
    pub partner: Buf<u32>,
    pub boundary_edges: u64,
    pub non_manifold_edges: u64,
    /// Edges shared by two facets that traverse it in the same direction.
    pub inconsistent_edges: u64,
    /// Per facet: its shell (connected through shared edges), or `NO_SHELL`.
    pub shell_of: Buf<u32>,
    pub shells: u32,
}

/// Facet edges per facet.
const EDGES: usize = 3;

/// Edge counts of a part of the mesh; signed because merging parts takes back what each part
/// counted for an edge it only partly saw.
#[derive(Default, Clone, Copy)]
struct EdgeCounts {
    boundary: i64,
    non_manifold: i64,
    inconsistent: i64,
}

impl EdgeCounts {
    fn add(self, o: EdgeCounts) -> EdgeCounts {
        EdgeCounts {
            boundary: self.boundary + o.boundary,
            non_manifold: self.non_manifold + o.non_manifold,
            inconsistent: self.inconsistent + o.inconsistent,
        }
    }
}

/// The facet edges of one run of facets, matched among themselves: bucket `v` holds
/// `upper << 32 | first facet edge` for each distinct edge from `v` to a higher vertex.
/// An edge's group (the facet edges along it) is known through its first facet edge: its
/// partner entry is `BOUNDARY` (alone), another facet edge (a pair) or `NON_MANIFOLD`.
struct Part {
    begin: Buf<u32>,
    used: Buf<u32>,
    entries: Buf<u64>,
    counts: EdgeCounts,
}

impl Part {
    fn bucket(&self, v: usize) -> &[u64] {
        let start = self.begin[v] as usize;
        &self.entries[start..start + self.used[v] as usize]
    }
}

/// The per-facet-edge partners and the shell forest of a run of facets starting at `base`
/// (or of all facets, with `base` 0), indexed by global facet and facet edge numbers.
///
/// The forest's links point from larger to smaller facets, so a set's root is its first
/// facet; 0 marks a root and `g + 1` a link to `g`, so that fresh zeroed memory is a forest
/// of single facets (as zeroed `partner` memory needs no filling either: matching writes
/// every entry).
struct Links<'a> {
    /// Corners flattened: `starts[fe]` is the vertex facet edge `fe` starts from.
    starts: &'a [u32],
    partner: &'a mut [u32],
    parent: &'a mut [u32],
    base: u32,
}

impl Links<'_> {
    fn get(&self, fe: u32) -> u32 {
        self.partner[(fe - 3 * self.base) as usize]
    }

    fn set(&mut self, fe: u32, p: u32) {
        self.partner[(fe - 3 * self.base) as usize] = p;
    }

    /// Whether facet edge `fe`, along an edge whose lower vertex is `lower`, starts there.
    fn forward(&self, fe: u32, lower: u32) -> bool {
        self.starts[fe as usize] == lower
    }

    fn root(&mut self, mut x: u32) -> u32 {
        let base = self.base;
        loop {
            let p = self.parent[(x - base) as usize];
            if p == 0 {
                return x;
            }
            let grand = self.parent[(p - 1 - base) as usize];
            if grand == 0 {
                return p - 1;
            }
            // Path halving keeps later finds short.
            self.parent[(x - base) as usize] = grand;
            x = grand - 1;
        }
    }

    fn union(&mut self, a: u32, b: u32) {
        let (a, b) = (self.root(a), self.root(b));
        if a != b {
            self.parent[(a.max(b) - self.base) as usize] = a.min(b) + 1;
        }
    }

    /// Takes back what `counts` holds for the group whose first facet edge is `first`.
    fn uncount(&self, first: u32, lower: u32, counts: &mut EdgeCounts) {
        match self.get(first) {
            BOUNDARY => counts.boundary -= 1,
            NON_MANIFOLD => counts.non_manifold -= 1,
            second => {
                if self.forward(first, lower) == self.forward(second, lower) {
                    counts.inconsistent -= 1;
                }
            }
        }
    }

    /// Adds facet edge `fe` to the group whose first facet edge is `first`.
    #[inline]
    fn join(&mut self, first: u32, fe: u32, lower: u32, counts: &mut EdgeCounts) {
        self.union(first / 3, fe / 3);
        match self.get(first) {
            BOUNDARY => {
                self.set(first, fe);
                self.set(fe, first);
                counts.boundary -= 1;
                if self.forward(first, lower) == self.forward(fe, lower) {
                    counts.inconsistent += 1;
                }
            }
            NON_MANIFOLD => self.set(fe, NON_MANIFOLD),
            second => {
                // A third facet: the edge is non-manifold, no longer a pair.
                self.uncount(first, lower, counts);
                counts.non_manifold += 1;
                for g in [first, second, fe] {
                    self.set(g, NON_MANIFOLD);
                }
            }
        }
    }

    /// Merges group `b` into group `a`, two parts' groups of the same edge; `a` stays its
    /// first facet edge.
    fn merge(&mut self, a: u32, b: u32, lower: u32, counts: &mut EdgeCounts) {
        self.union(a / 3, b / 3);
        let (pa, pb) = (self.get(a), self.get(b));
        if pb == BOUNDARY {
            // Exactly what adding a facet edge to `a` does; `b` was counted as open.
            counts.boundary -= 1;
            self.join(a, b, lower, counts);
            return;
        }
        self.uncount(a, lower, counts);
        self.uncount(b, lower, counts);
        counts.non_manifold += 1;
        for (first, p) in [(a, pa), (b, pb)] {
            self.set(first, NON_MANIFOLD);
            if p < SKIPPED {
                self.set(p, NON_MANIFOLD);
            }
        }
    }

    /// Matches the edges of `facets` (`base` is the index of the first) among themselves, in
    /// facet order: each edge is looked up among the distinct edges already seen at its lower
    /// vertex (a handful), joining that group or starting a new one. A first counting pass
    /// sizes the buckets, so they never overflow, and nothing needs sorting.
    fn match_part(&mut self, facets: &[[u32; 3]], vertex_count: usize) -> Part {
        let base = self.base as usize;
        let mut begin: Buf<u32> = Buf::zeroed(vertex_count + 1);
        for c in facets.iter().filter(|c| !repeats_vertex(c)) {
            for i in 0..EDGES {
                begin[c[i].min(c[(i + 1) % 3]) as usize + 1] += 1;
            }
        }
        for v in 0..vertex_count {
            begin[v + 1] += begin[v];
        }
        let mut used: Buf<u32> = Buf::zeroed(vertex_count);
        let mut entries = Buf::<u64>::zeroed(begin[vertex_count] as usize);
        let mut counts = EdgeCounts::default();
        for (f, c) in facets.iter().enumerate() {
            if repeats_vertex(c) {
                for i in 0..EDGES {
                    self.set((EDGES * (base + f) + i) as u32, SKIPPED);
                }
                continue;
            }
            for i in 0..EDGES {
                let (a, b) = (c[i], c[(i + 1) % 3]);
                let (lower, upper) = (a.min(b), a.max(b));
                let fe = (EDGES * (base + f) + i) as u32;
                let v = lower as usize;
                let start = begin[v] as usize;
                let n = used[v] as usize;
                let seen = &entries[start..start + n];
                match seen.iter().find(|&&e| (e >> 32) as u32 == upper) {
                    Some(&first) => self.join(first as u32, fe, lower, &mut counts),
                    None => {
                        entries[start + n] = (u64::from(upper) << 32) | u64::from(fe);
                        used[v] += 1;
                        counts.boundary += 1;
                        self.set(fe, BOUNDARY);
                    }
                }
            }
        }
        Part {
            begin,
            used,
            entries,
            counts,
        }
    }

    /// Merges the groups that parts found for the same edges, at the vertices in `vertices`.
    /// Only vertices used by several parts can have any (few, on an exporter's ordering).
    fn merge_parts(&mut self, parts: &[Part], vertex_count: usize) -> EdgeCounts {
        let mut counts = EdgeCounts::default();
        let mut here: Vec<u64> = Vec::new();
        for v in 0..vertex_count {
            if parts.iter().filter(|p| p.used[v] > 0).count() < 2 {
                continue;
            }
            here.clear();
            for p in parts {
                here.extend_from_slice(p.bucket(v));
            }
            // Stable: groups of one edge stay in part order; the first part's group absorbs
            // the others.
            here.sort_by_key(|&e| e >> 32);
            for run in here.chunk_by(|x, y| x >> 32 == y >> 32) {
                for &other in &run[1..] {
                    self.merge(run[0] as u32, other as u32, v as u32, &mut counts);
                }
            }
        }
        counts
    }
}

impl Topology {
    pub(crate) fn build(corners: &[[u32; 3]], vertex_count: usize) -> Topology {
        let facet_count = corners.len();
        let parallel = facet_count >= PARALLEL_MIN_TRIANGLES;
        let mut partner: Buf<u32> = Buf::zeroed(facet_count * EDGES);
        let mut shell_of: Buf<u32> = Buf::zeroed(facet_count);
        let starts = corners.as_flattened();
        let counts = if parallel {
            // Each thread matches its own run of facets, in its own parts of the arrays; the
            // few edges whose facets fall in different runs are merged afterwards.
            let threads = rayon::current_num_threads().max(1);
            let per_part = facet_count.div_ceil(threads);
            let parts: Vec<Part> = corners
                .par_chunks(per_part)
                .zip(partner.par_chunks_mut(EDGES * per_part))
                .zip(shell_of.par_chunks_mut(per_part))
                .enumerate()
                .map(|(p, ((facets, partner), parent))| {
                    let mut links = Links {
                        starts,
                        partner,
                        parent,
                        base: (p * per_part) as u32,
                    };
                    links.match_part(facets, vertex_count)
                })
                .collect();
            let mut links = Links {
                starts,
                partner: &mut partner,
                parent: &mut shell_of,
                base: 0,
            };
            let merged = links.merge_parts(&parts, vertex_count);
            parts.iter().fold(merged, |acc, p| acc.add(p.counts))
        } else {
            let mut links = Links {
                starts,
                partner: &mut partner,
                parent: &mut shell_of,
                base: 0,
            };
            links.match_part(corners, vertex_count).counts
        };

        // Every group is counted once in the end, so the sums are not negative.
        let boundary = counts.boundary as u64;
        let non_manifold = counts.non_manifold as u64;
        let inconsistent = counts.inconsistent as u64;
        // Links only point to smaller facets, so by the time a facet is reached its parent's
        // entry already holds that set's shell, which is numbered at its root, the set's first
        // facet: shells are numbered in order of their first facet, in place.
        let mut shells = 0u32;
        for (f, c) in corners.iter().enumerate() {
            let link = shell_of[f] as usize;
            shell_of[f] = if repeats_vertex(c) {
                NO_SHELL
            } else if link == 0 {
                shells += 1;
                shells - 1
            } else {
                shell_of[link - 1]
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

    /// Topology by brute force: every edge's facet edges from a map, shells by repeated
    /// relabelling.
    fn reference(corners: &[[u32; 3]]) -> Topology {
        use std::collections::BTreeMap;
        let mut edges: BTreeMap<(u32, u32), Vec<u32>> = BTreeMap::new();
        for (f, c) in corners.iter().enumerate() {
            if repeats_vertex(c) {
                continue;
            }
            for i in 0..3 {
                let (a, b) = (c[i], c[(i + 1) % 3]);
                edges
                    .entry((a.min(b), a.max(b)))
                    .or_default()
                    .push((3 * f + i) as u32);
            }
        }
        let mut partner = vec![SKIPPED; 3 * corners.len()];
        let (mut boundary, mut non_manifold, mut inconsistent) = (0, 0, 0);
        let mut shell: Vec<usize> = (0..corners.len()).collect();
        let mut joins = Vec::new();
        for group in edges.values() {
            match group[..] {
                [a] => {
                    partner[a as usize] = BOUNDARY;
                    boundary += 1;
                }
                [a, b] => {
                    partner[a as usize] = b;
                    partner[b as usize] = a;
                    let forward = |fe| {
                        let (p, q) = edge_ends(corners, fe as usize);
                        p < q
                    };
                    inconsistent += u64::from(forward(a) == forward(b));
                }
                _ => {
                    non_manifold += 1;
                    for &g in group {
                        partner[g as usize] = NON_MANIFOLD;
                    }
                }
            }
            joins.extend(
                group
                    .windows(2)
                    .map(|w| (w[0] as usize / 3, w[1] as usize / 3)),
            );
        }
        // A plain union-find, smaller root wins.
        fn root(shell: &mut [usize], x: usize) -> usize {
            let mut r = x;
            while shell[r] != r {
                r = shell[r];
            }
            shell[x] = r;
            r
        }
        for &(a, b) in &joins {
            let (a, b) = (root(&mut shell, a), root(&mut shell, b));
            shell[a.max(b)] = a.min(b);
        }
        for f in 0..shell.len() {
            shell[f] = root(&mut shell, f);
        }
        let mut number = BTreeMap::new();
        let mut shell_of = vec![NO_SHELL; corners.len()];
        for (f, c) in corners.iter().enumerate() {
            if !repeats_vertex(c) {
                let next = number.len() as u32;
                shell_of[f] = *number.entry(shell[f]).or_insert(next);
            }
        }
        Topology {
            partner: partner.into(),
            boundary_edges: boundary,
            non_manifold_edges: non_manifold,
            inconsistent_edges: inconsistent,
            shells: number.len() as u32,
            shell_of: shell_of.into(),
        }
    }

    fn assert_same(corners: &[[u32; 3]]) {
        let vertex_count = corners
            .iter()
            .flatten()
            .max()
            .map_or(0, |&v| v as usize + 1);
        let (t, r) = (Topology::build(corners, vertex_count), reference(corners));
        assert_eq!(t.partner[..], r.partner[..]);
        assert_eq!(
            (t.boundary_edges, t.non_manifold_edges, t.inconsistent_edges),
            (r.boundary_edges, r.non_manifold_edges, r.inconsistent_edges)
        );
        assert_eq!((t.shells, &t.shell_of[..]), (r.shells, &r.shell_of[..]));
    }

    /// A strip of `n` triangles over a `2 x (n / 2 + 1)` grid of vertices.
    fn strip(n: usize) -> Vec<[u32; 3]> {
        (0..n as u32 / 2)
            .flat_map(|i| {
                [
                    [2 * i, 2 * i + 2, 2 * i + 1],
                    [2 * i + 2, 2 * i + 3, 2 * i + 1],
                ]
            })
            .collect()
    }

    #[test]
    fn matches_brute_force_in_one_part() {
        let mut corners = strip(40);
        corners.push(corners[3]); // non-manifold: a facet twice
        corners.push([5, 4, 99]); // shares edge 4-5 (now three facets)
        corners.push([7, 6, 6]); // repeats a vertex
        corners[10].swap(0, 1); // flipped
        corners.push([200, 201, 202]); // a second shell
        assert_same(&corners);
    }

    #[test]
    fn parts_are_merged_where_edges_cross_them() {
        // Large enough for several parts; copies of early facets at the end make edges whose
        // facets are in different parts: pairs, fins, flips and a triple across the seam.
        let mut corners = strip(2 * PARALLEL_MIN_TRIANGLES);
        let n = corners.len();
        let mid = n / 2;
        corners.push(corners[0]);
        corners.push(corners[mid + 1]);
        corners.push(corners[mid + 1]);
        let mut flipped = corners[5];
        flipped.swap(0, 1);
        corners.push(flipped);
        corners.push([0, 1, 1]);
        // Close the strip's first and last ends onto each other across the parts.
        let last = (n / 2 + 1) as u32 * 2 - 2;
        corners.push([last, 0, last + 1]);
        corners.push([0, 1, last + 1]);
        // A facet in the first part sharing an edge only with one in the second part.
        corners[1000] = [last - 40, last - 41, 3_000_000];
        assert_same(&corners);
        // The same, reversed, so the later copies come first.
        corners.reverse();
        assert_same(&corners);
    }
}
