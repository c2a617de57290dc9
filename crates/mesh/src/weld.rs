//! Exact vertex welding: corners with bit-identical coordinates (treating -0 as +0) become one
//! vertex. This is what admesh `--exact` and trimesh's merge do, and it is the costly step of a
//! check. Exporters write neighbouring triangles close together in the file, so a small
//! direct-mapped cache of recent vertices answers most corners. The rest ("misses") are
//! deduplicated afterwards by partitioning them on their hash into groups small enough for a
//! cache-resident table: one big table would cost a cache miss per new vertex. Vertices are
//! numbered in order of first use, which keeps later passes cache-friendly.

use std::sync::atomic::{AtomicU32, Ordering};

use rayon::prelude::*;

use crate::facets::{Facets, Soup};
use crate::mem::{self, Buf};

/// Welded vertex positions and, per triangle, the indices of its three corners.
pub(crate) struct Welded {
    pub positions: Vec<[f32; 3]>,
    pub corners: Vec<[u32; 3]>,
}

/// What the check needs from a weld: no positions, but the box of the finite vertices.
pub(crate) struct WeldSummary {
    pub vertex_count: usize,
    pub corners: Buf<[u32; 3]>,
    /// Box of the vertices whose coordinates are all finite (min > max when there are none).
    pub min: [f32; 3],
    pub max: [f32; 3],
}

/// The identity of a point: the bit patterns of its coordinates, -0.0 read as +0.0. Kept as
/// one 64-bit and one 32-bit word, always written and read at those widths: a key stored as
/// three 32-bit words and reloaded as 64 bits stalls the load (no store forwarding).
#[derive(Clone, Copy, Default)]
struct Key {
    xy: u64,
    z: u32,
}

fn key(p: &[f32; 3]) -> Key {
    // Integer-only: the bits without the sign are zero exactly for the two zeros.
    let bits = |c: f32| {
        let b = c.to_bits();
        if b << 1 == 0 { 0 } else { b }
    };
    let (x, y, z) = (bits(p[0]), bits(p[1]), bits(p[2]));
    Key {
        xy: u64::from(x) | (u64::from(y) << 32),
        z,
    }
}

impl Key {
    fn point(self) -> [f32; 3] {
        [self.xy as u32, (self.xy >> 32) as u32, self.z].map(f32::from_bits)
    }
}

/// Key equality in two word comparisons.
fn same(a: &Key, b: &Key) -> bool {
    ((a.xy ^ b.xy) | u64::from(a.z ^ b.z)) == 0
}

/// A well-mixed 64-bit hash of a point (splitmix64 finaliser): float bit patterns of nearby
/// points differ only in a few bits, which weak hashes turn into long probe chains.
fn point_hash(k: &Key) -> u64 {
    let mut h = k.xy ^ u64::from(k.z).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    h = (h ^ (h >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    h ^ (h >> 31)
}

/// Slots in the recent-vertex cache: covers a few rows of a finely tessellated surface while
/// staying in L2 (16 bytes per slot). Small meshes get a smaller cache, which is cheaper to
/// set up and still larger than their vertex count.
const RECENT_BITS: u32 = 13;
const MIN_RECENT_BITS: u32 = 6;
/// Marks an empty slot.
const EMPTY: u32 = u32::MAX;

/// Expected misses per partition (about one per two triangles on a closed mesh): small enough
/// that a partition's table stays in L1/L2.
const TRIANGLES_PER_PARTITION: usize = 4096;
const MAX_PARTITION_BITS: u32 = 10;

/// Below this many triangles one block on the calling thread is fastest: starting work on the
/// thread pool costs more than a small mesh's whole check.
pub(crate) const PARALLEL_MIN_TRIANGLES: usize = 100_000;
/// Blocks per thread: enough to balance a machine whose other work takes a core away.
const BLOCKS_PER_THREAD: usize = 2;

/// A key with a label (a vertex's number, or `EMPTY`), in 16 bytes where a `(Key, u32)` pair
/// takes 24: the recent-vertex cache, the misses and the dedup tables are made of these.
#[derive(Clone, Copy)]
struct Slot {
    xy: u64,
    z: u32,
    label: u32,
}

impl Slot {
    const EMPTY: Slot = Slot {
        xy: 0,
        z: 0,
        label: EMPTY,
    };

    fn new(k: &Key, label: u32) -> Slot {
        Slot {
            xy: k.xy,
            z: k.z,
            label,
        }
    }

    fn key(&self) -> Key {
        Key {
            xy: self.xy,
            z: self.z,
        }
    }
}

/// The misses of one block: how many, their keys in order when positions are wanted, the
/// same misses split by partition as (key, index among the block's misses), and the box of
/// the finite ones (every distinct vertex is first seen as a miss).
struct BlockMisses {
    count: u32,
    keys: Vec<Key>,
    parts: Vec<Vec<Slot>>,
    min: [f32; 3],
    max: [f32; 3],
}

/// How a weld splits its work, from the triangle count alone.
#[derive(Clone, Copy)]
struct Plan {
    per_block: usize,
    part_bits: u32,
    recent_bits: u32,
    parallel: bool,
}

impl Plan {
    fn new(triangles: usize) -> Plan {
        let parallel = triangles >= PARALLEL_MIN_TRIANGLES;
        let blocks = if parallel {
            rayon::current_num_threads().max(1) * BLOCKS_PER_THREAD
        } else {
            1
        };
        Plan {
            per_block: triangles.div_ceil(blocks).max(1),
            part_bits: (triangles / TRIANGLES_PER_PARTITION)
                .max(1)
                .next_power_of_two()
                .trailing_zeros()
                .min(MAX_PARTITION_BITS),
            recent_bits: (2 * triangles)
                .next_power_of_two()
                .trailing_zeros()
                .clamp(MIN_RECENT_BITS, RECENT_BITS),
            parallel,
        }
    }
}

/// Labels each corner of facets `range` (written to `out`, one entry per facet) with the
/// index (within the block) of a miss with the same key. A vertex's first corner is always a
/// miss, so the first miss of each key is its first use. Also folds `visit` over the block's
/// facets (with their index, stored normal and whether two corners weld together) while they
/// are in cache.
fn label_block<F: Facets, S>(
    facets: &F,
    range: std::ops::Range<usize>,
    plan: Plan,
    want_keys: bool,
    out: &mut [[u32; 3]],
    state: &mut S,
    visit: &impl Fn(&mut S, usize, &[[f32; 3]; 3], &[f32; 3], bool),
) -> BlockMisses {
    // A closed mesh has about half as many vertices as triangles; most corners hit the cache.
    let expected = range.len() / 2 + 1024;
    let part_bits = plan.part_bits;
    let per_part = (expected >> part_bits) + (expected >> part_bits) / 4 + 16;
    let mut misses = BlockMisses {
        count: 0,
        keys: if want_keys {
            Vec::with_capacity(expected)
        } else {
            Vec::new()
        },
        parts: (0..1 << part_bits)
            .map(|_| Vec::with_capacity(per_part))
            .collect(),
        min: [f32::INFINITY; 3],
        max: [f32::NEG_INFINITY; 3],
    };
    let shift = 32 - plan.recent_bits;
    let mut recent = vec![Slot::EMPTY; 1 << plan.recent_bits];
    // Corners are looked up one by one rather than in a loop over an array of keys: that
    // array would live on the stack and be reread with wider loads than it was written with,
    // which stalls every lookup.
    let mut lookup = |k: Key| {
        let slot = &mut recent[recent_slot(&k, shift)];
        if same(&slot.key(), &k) && slot.label != EMPTY {
            return slot.label;
        }
        let label = misses.add(&k, part_bits, want_keys);
        *slot = Slot::new(&k, label);
        label
    };
    let mut out = out.iter_mut();
    facets.each(range, |f, t, n| {
        let (k0, k1, k2) = (key(&t[0]), key(&t[1]), key(&t[2]));
        let repeats = same(&k0, &k1) || same(&k1, &k2) || same(&k0, &k2);
        visit(state, f, t, n, repeats);
        if let Some(o) = out.next() {
            *o = [lookup(k0), lookup(k1), lookup(k2)];
        }
    });
    misses
}

impl BlockMisses {
    /// Records a miss and returns its label.
    fn add(&mut self, k: &Key, part_bits: u32, want_keys: bool) -> u32 {
        let label = self.count;
        self.count += 1;
        if want_keys {
            self.keys.push(*k);
        }
        self.parts[partition(point_hash(k), part_bits)].push(Slot::new(k, label));
        let p = k.point();
        if p.iter().all(|c| c.is_finite()) {
            for ((lo, hi), c) in self.min.iter_mut().zip(&mut self.max).zip(p) {
                *lo = lo.min(c);
                *hi = hi.max(c);
            }
        }
        label
    }
}

/// Slot of a point in the recent-vertex cache: a cheap hash (one multiply) suffices there, as
/// a collision only costs a miss, and it is computed for every corner.
fn recent_slot(k: &Key, shift: u32) -> usize {
    let mixed = k.xy as u32 ^ ((k.xy >> 32) as u32).rotate_left(11) ^ k.z.rotate_left(22);
    (mixed.wrapping_mul(0x9E37_79B1) >> shift) as usize
}

/// The partition of a hash: its top `bits` bits.
fn partition(h: u64, bits: u32) -> usize {
    h.checked_shr(64 - bits).unwrap_or(0) as usize
}

/// Points each duplicate miss of partition `p` at the first miss with its key, in `firsts`
/// (misses numbered across blocks in order, block `b` starting at `offsets[b]`). Within a
/// partition misses come in block order, then miss order, so the first one seen is the first.
fn dedup_partition(
    p: usize,
    blocks: &[BlockMisses],
    offsets: &[u32],
    part_bits: u32,
    table: &mut Vec<Slot>,
    firsts: &[AtomicU32],
) {
    let n: usize = blocks.iter().map(|b| b.parts[p].len()).sum();
    let size = (2 * n).max(2).next_power_of_two();
    table.clear();
    table.resize(size, Slot::EMPTY);
    for (b, &o) in blocks.iter().zip(offsets) {
        for miss in &b.parts[p] {
            let (k, l) = (miss.key(), miss.label);
            // The slot is picked by the hash bits after the partition bits.
            let mut s = (point_hash(&k) << part_bits >> 32) as usize & (size - 1);
            loop {
                let slot = table[s];
                let first = slot.label;
                if first == EMPTY {
                    table[s] = Slot::new(&k, o + l);
                    break;
                }
                if same(&slot.key(), &k) {
                    // Each miss is written by the one partition that holds it.
                    firsts[(o + l) as usize].store(first, Ordering::Relaxed);
                    break;
                }
                s = (s + 1) & (size - 1);
            }
        }
    }
}

/// For each miss, the index of the first miss with the same key (itself when it is first).
/// Partitions hold disjoint keys, so they are deduplicated independently.
fn first_of_key(blocks: &[BlockMisses], offsets: &[u32], plan: Plan) -> Vec<u32> {
    let total = blocks.iter().map(|b| b.count as usize).sum::<usize>();
    let parts = 1usize << plan.part_bits;
    let firsts: Vec<AtomicU32> = if plan.parallel {
        let mut v = mem::with_capacity(total);
        (0..total as u32)
            .into_par_iter()
            .map(AtomicU32::new)
            .collect_into_vec(&mut v);
        (0..parts)
            .into_par_iter()
            .for_each_init(Vec::new, |table, p| {
                dedup_partition(p, blocks, offsets, plan.part_bits, table, &v);
            });
        v
    } else {
        let v: Vec<AtomicU32> = (0..total as u32).map(AtomicU32::new).collect();
        let mut table = Vec::new();
        for p in 0..parts {
            dedup_partition(p, blocks, offsets, plan.part_bits, &mut table, &v);
        }
        v
    };
    firsts.into_iter().map(AtomicU32::into_inner).collect()
}

pub(crate) fn weld(triangles: &[[[f32; 3]; 3]]) -> Welded {
    let soup = Soup {
        triangles,
        normals: &[],
    };
    let (w, _) = weld_inner(&soup, true, || (), |_, _, _, _, _| {});
    Welded {
        positions: w.positions,
        corners: w.corners.into_vec(),
    }
}

/// Welds without keeping positions, and folds `visit` over every facet on the way (see
/// [`label_block`]), returning one state per block in facet order.
pub(crate) fn weld_with<F: Facets, S: Send>(
    facets: &F,
    init: impl Fn() -> S + Sync,
    visit: impl Fn(&mut S, usize, &[[f32; 3]; 3], &[f32; 3], bool) + Sync,
) -> (WeldSummary, Vec<S>) {
    let (w, states) = weld_inner(facets, false, init, visit);
    let summary = WeldSummary {
        vertex_count: w.vertex_count,
        corners: w.corners,
        min: w.min,
        max: w.max,
    };
    (summary, states)
}

struct Weld {
    vertex_count: usize,
    positions: Vec<[f32; 3]>,
    corners: Buf<[u32; 3]>,
    min: [f32; 3],
    max: [f32; 3],
}

fn weld_inner<F: Facets, S: Send>(
    facets: &F,
    want_positions: bool,
    init: impl Fn() -> S + Sync,
    visit: impl Fn(&mut S, usize, &[[f32; 3]; 3], &[f32; 3], bool) + Sync,
) -> (Weld, Vec<S>) {
    let plan = Plan::new(facets.count());
    let per_block = plan.per_block;
    let mut corners: Buf<[u32; 3]> = Buf::zeroed(facets.count());
    // Block `b` is the facets behind its chunk of `corners`.
    let label = |(b, out): (usize, &mut [[u32; 3]])| {
        let mut state = init();
        let start = b * per_block;
        let misses = label_block(
            facets,
            start..start + out.len(),
            plan,
            want_positions,
            out,
            &mut state,
            &visit,
        );
        (misses, state)
    };
    let (blocks, states): (Vec<BlockMisses>, Vec<S>) = if plan.parallel {
        corners
            .par_chunks_mut(per_block)
            .enumerate()
            .map(label)
            .unzip()
    } else {
        corners.chunks_mut(per_block).enumerate().map(label).unzip()
    };
    let offsets: Vec<u32> = blocks
        .iter()
        .scan(0u32, |acc, b| {
            let o = *acc;
            *acc += b.count;
            Some(o)
        })
        .collect();
    // Vertices are numbered by their first miss, i.e. in order of first use; a later miss
    // takes the number already given to its first (rewritten in place, first to last).
    let mut ids = first_of_key(&blocks, &offsets, plan);
    let mut positions: Vec<[f32; 3]> = Vec::new();
    let mut vertex_count = 0u32;
    for m in 0..ids.len() {
        let first = ids[m] as usize;
        ids[m] = if first == m {
            vertex_count += 1;
            vertex_count - 1
        } else {
            ids[first]
        };
    }
    if want_positions {
        positions.reserve_exact(vertex_count as usize);
        let keys = blocks.iter().flat_map(|b| &b.keys);
        for (m, k) in keys.enumerate() {
            if ids[m] as usize == positions.len() {
                positions.push(k.point());
            }
        }
    }
    let mut min = [f32::INFINITY; 3];
    let mut max = [f32::NEG_INFINITY; 3];
    for b in &blocks {
        for i in 0..3 {
            min[i] = min[i].min(b.min[i]);
            max[i] = max[i].max(b.max[i]);
        }
    }
    drop(blocks);
    let relabel = |(out, &offset): (&mut [[u32; 3]], &u32)| {
        for c in out {
            *c = c.map(|v| ids[(offset + v) as usize]);
        }
    };
    if plan.parallel {
        corners
            .par_chunks_mut(per_block)
            .zip(&offsets)
            .for_each(relabel);
    } else {
        corners
            .chunks_mut(per_block)
            .zip(&offsets)
            .for_each(relabel);
    }
    let weld = Weld {
        vertex_count: vertex_count as usize,
        positions,
        corners,
        min,
        max,
    };
    (weld, states)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn welds_exact_matches_and_signed_zero() {
        let t = [
            [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
            [[-0.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 1e-7]],
        ];
        let w = weld(&t);
        assert_eq!(w.positions.len(), 4);
        assert_eq!(w.corners[0], [0, 1, 2]);
        assert_eq!(w.corners[1], [0, 2, 3]);
    }

    #[test]
    fn blocks_agree_at_their_seams() {
        // A strip long enough to be split into blocks, whose seams share vertices.
        let n = PARALLEL_MIN_TRIANGLES;
        let p = |a: usize, b: usize| [a as f32, b as f32, 1.5];
        let tris: Vec<_> = (0..n / 2)
            .flat_map(|i| {
                [
                    [p(i, 0), p(i + 1, 0), p(i, 1)],
                    [p(i + 1, 0), p(i + 1, 1), p(i, 1)],
                ]
            })
            .collect();
        let w = weld(&tris);
        assert_eq!(w.positions.len(), 2 * (n / 2 + 1));
        for (t, c) in tris.iter().zip(&w.corners) {
            for k in 0..3 {
                assert_eq!(w.positions[c[k] as usize], t[k]);
            }
        }
        let soup = Soup {
            triangles: &tris,
            normals: &[],
        };
        let (summary, _) = weld_with(&soup, || (), |_, _, _, _, _| {});
        assert_eq!(summary.vertex_count, w.positions.len());
        assert_eq!(summary.corners[..], w.corners[..]);
        assert_eq!(
            (summary.min, summary.max),
            ([0.0, 0.0, 1.5], [50000.0, 1.0, 1.5])
        );
    }

    #[test]
    fn welds_a_grid_in_any_order() {
        // Large enough that the recent-vertex cache cannot hold every vertex, and shuffled so
        // that most lookups miss it and go to the table.
        let n = 200usize;
        let p = |a: usize, b: usize| [a as f32 * 0.1, b as f32 * 0.1, 0.0];
        let mut tris = Vec::new();
        for i in 0..n {
            for j in 0..n {
                tris.push([p(i, j), p(i + 1, j), p(i, j + 1)]);
                tris.push([p(i + 1, j), p(i + 1, j + 1), p(i, j + 1)]);
            }
        }
        let len = tris.len();
        for i in 0..len {
            tris.swap(i, (i * 7919 + 13) % len);
        }
        let w = weld(&tris);
        assert_eq!(w.positions.len(), (n + 1) * (n + 1));
        for (t, c) in tris.iter().zip(&w.corners) {
            for k in 0..3 {
                assert_eq!(w.positions[c[k] as usize], t[k]);
            }
        }
        // Each interior grid point is shared by six triangles.
        let mut uses = vec![0u32; w.positions.len()];
        for c in w.corners.iter().flatten() {
            uses[*c as usize] += 1;
        }
        assert_eq!(uses.iter().filter(|&&u| u == 6).count(), (n - 1) * (n - 1));
    }

    #[test]
    fn box_skips_non_finite_vertices() {
        let t = [
            [
                [f32::NAN, 0.0, 0.0],
                [1.0, -2.0, 0.0],
                [0.0, 1.0, f32::INFINITY],
            ],
            [[-0.0, 3.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 1.0]],
        ];
        let soup = Soup {
            triangles: &t,
            normals: &[],
        };
        let (w, _) = weld_with(&soup, || (), |_, _, _, _, _| {});
        assert_eq!(w.vertex_count, 6);
        assert_eq!(w.min, [0.0, -2.0, 0.0]);
        assert_eq!(w.max, [1.0, 3.0, 1.0]);
        assert!(w.min[0].is_sign_positive());
    }
}
