//! Exact vertex welding: corners with bit-identical coordinates (treating -0 as +0) become one
//! vertex. This is what admesh `--exact` and trimesh's merge do, and it is the costly step of a
//! check. Exporters write neighbouring triangles close together in the file, so a small
//! direct-mapped cache of recent vertices answers most corners. The rest ("misses") are
//! deduplicated afterwards by partitioning them on their hash into groups small enough for a
//! cache-resident table: one big table would cost a cache miss per new vertex. Vertices are
//! numbered in order of first use, which keeps later passes cache-friendly.

use std::sync::atomic::{AtomicU32, Ordering};

use rayon::prelude::*;

/// Welded vertex positions and, per triangle, the indices of its three corners.
pub(crate) struct Welded {
    pub positions: Vec<[f32; 3]>,
    pub corners: Vec<[u32; 3]>,
}

/// Bit pattern used as the identity of a coordinate; -0.0 and +0.0 are the same point.
fn key(p: &[f32; 3]) -> [u32; 3] {
    p.map(|c| if c == 0.0 { 0 } else { c.to_bits() })
}

/// A well-mixed 64-bit hash of a point (splitmix64 finaliser): float bit patterns of nearby
/// points differ only in a few bits, which weak hashes turn into long probe chains.
fn point_hash(k: &[u32; 3]) -> u64 {
    let a = u64::from(k[0]) | (u64::from(k[1]) << 32);
    let mut h = a ^ u64::from(k[2]).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    h = (h ^ (h >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    h ^ (h >> 31)
}

/// Slots in the recent-vertex cache: covers a few rows of a finely tessellated surface while
/// staying in L2 (16 bytes per slot).
const RECENT_BITS: u32 = 13;
const RECENT: usize = 1 << RECENT_BITS;
/// Marks an empty slot.
const EMPTY: u32 = u32::MAX;

/// Expected misses per partition (about one per two triangles on a closed mesh): small enough
/// that a partition's table stays in L1/L2.
const TRIANGLES_PER_PARTITION: usize = 4096;
const MAX_PARTITION_BITS: u32 = 10;

/// The misses of one block: their keys in corner order, and the same misses split by
/// partition as (key, index among the block's misses).
struct BlockMisses {
    keys: Vec<[u32; 3]>,
    parts: Vec<Vec<([u32; 3], u32)>>,
}

/// Labels each corner of a block with the index (within the block) of a miss with the same
/// key. A vertex's first corner is always a miss, so the first miss of each key is its first
/// use. Also folds `visit` over the block's facets (with their index and whether two corners
/// weld together) while they are in cache.
fn label_block<S>(
    triangles: &[[[f32; 3]; 3]],
    first_facet: usize,
    part_bits: u32,
    out: &mut [[u32; 3]],
    state: &mut S,
    visit: &impl Fn(&mut S, usize, &[[f32; 3]; 3], bool),
) -> BlockMisses {
    // A closed mesh has about half as many vertices as triangles; most corners hit the cache.
    let expected = triangles.len() / 2 + 1024;
    let per_part = (expected >> part_bits) + (expected >> part_bits) / 4 + 16;
    let mut misses = BlockMisses {
        keys: Vec::with_capacity(expected),
        parts: (0..1 << part_bits)
            .map(|_| Vec::with_capacity(per_part))
            .collect(),
    };
    let mut recent = vec![([0u32; 3], EMPTY); RECENT];
    for (f, (t, out)) in triangles.iter().zip(out).enumerate() {
        let keys = t.each_ref().map(key);
        visit(
            state,
            first_facet + f,
            t,
            keys[0] == keys[1] || keys[1] == keys[2] || keys[0] == keys[2],
        );
        *out = keys.map(|k| {
            let slot = &mut recent[recent_slot(&k)];
            if slot.1 != EMPTY && slot.0 == k {
                return slot.1;
            }
            let label = misses.keys.len() as u32;
            misses.keys.push(k);
            misses.parts[partition(point_hash(&k), part_bits)].push((k, label));
            *slot = (k, label);
            label
        });
    }
    misses
}

/// Slot of a point in the recent-vertex cache: a cheap hash (one multiply) suffices there, as
/// a collision only costs a miss, and it is computed for every corner.
fn recent_slot(k: &[u32; 3]) -> usize {
    let mixed = k[0] ^ k[1].rotate_left(11) ^ k[2].rotate_left(22);
    (mixed.wrapping_mul(0x9E37_79B1) >> (32 - RECENT_BITS)) as usize
}

/// The partition of a hash: its top `bits` bits.
fn partition(h: u64, bits: u32) -> usize {
    h.checked_shr(64 - bits).unwrap_or(0) as usize
}

/// For each miss (numbered across blocks in order, block `b` starting at `offsets[b]`), the
/// index of the first miss with the same key (itself when it is first). Partitions hold
/// disjoint keys, so they are deduplicated independently, each with a table that stays in
/// cache; within a partition misses come in block order, then miss order.
fn first_of_key(blocks: &[BlockMisses], offsets: &[u32], part_bits: u32) -> Vec<u32> {
    let total = blocks.iter().map(|b| b.keys.len()).sum::<usize>();
    let firsts: Vec<AtomicU32> = (0..total as u32)
        .into_par_iter()
        .with_min_len(1 << 14)
        .map(AtomicU32::new)
        .collect();
    (0..1usize << part_bits).into_par_iter().for_each_init(
        Vec::new,
        |table: &mut Vec<([u32; 3], u32)>, p| {
            let members = || {
                blocks
                    .iter()
                    .zip(offsets)
                    .flat_map(move |(b, &o)| b.parts[p].iter().map(move |&(k, l)| (k, o + l)))
            };
            let n: usize = blocks.iter().map(|b| b.parts[p].len()).sum();
            let size = (2 * n).max(2).next_power_of_two();
            table.clear();
            table.resize(size, ([0; 3], EMPTY));
            // (key, first miss); the slot is picked by the hash bits after the partition bits.
            for (k, m) in members() {
                let mut s = (point_hash(&k) << part_bits >> 32) as usize & (size - 1);
                loop {
                    let (other, first) = table[s];
                    if first == EMPTY {
                        table[s] = (k, m);
                        break;
                    }
                    if other == k {
                        // Each miss is written by the one partition that holds it.
                        firsts[m as usize].store(first, Ordering::Relaxed);
                        break;
                    }
                    s = (s + 1) & (size - 1);
                }
            }
        },
    );
    firsts.into_iter().map(AtomicU32::into_inner).collect()
}

/// Below this many triangles one block is fastest.
const PARALLEL_MIN_TRIANGLES: usize = 100_000;
/// Blocks per thread: enough to balance a machine whose other work takes a core away.
const BLOCKS_PER_THREAD: usize = 2;

pub(crate) fn weld(triangles: &[[[f32; 3]; 3]]) -> Welded {
    weld_with(triangles, || (), |_, _, _, _| {}).0
}

/// Welds, and folds `visit` over every facet on the way (see [`label_block`]), returning one
/// state per block in facet order.
pub(crate) fn weld_with<S: Send>(
    triangles: &[[[f32; 3]; 3]],
    init: impl Fn() -> S + Sync,
    visit: impl Fn(&mut S, usize, &[[f32; 3]; 3], bool) + Sync,
) -> (Welded, Vec<S>) {
    let blocks_wanted = if triangles.len() < PARALLEL_MIN_TRIANGLES {
        1
    } else {
        rayon::current_num_threads().max(1) * BLOCKS_PER_THREAD
    };
    let per_block = triangles.len().div_ceil(blocks_wanted).max(1);
    let part_bits = (triangles.len() / TRIANGLES_PER_PARTITION)
        .max(1)
        .next_power_of_two()
        .trailing_zeros()
        .min(MAX_PARTITION_BITS);
    let mut corners = vec![[0u32; 3]; triangles.len()];
    let (blocks, states): (Vec<BlockMisses>, Vec<S>) = triangles
        .par_chunks(per_block)
        .zip(corners.par_chunks_mut(per_block))
        .enumerate()
        .map(|(b, (tris, out))| {
            let mut state = init();
            let misses = label_block(tris, b * per_block, part_bits, out, &mut state, &visit);
            (misses, state)
        })
        .unzip();
    let offsets: Vec<u32> = blocks
        .iter()
        .scan(0u32, |acc, b| {
            let o = *acc;
            *acc += b.keys.len() as u32;
            Some(o)
        })
        .collect();
    // Vertices are numbered by their first miss, i.e. in order of first use; a later miss
    // takes the number already given to its first (rewritten in place, first to last).
    let mut ids = first_of_key(&blocks, &offsets, part_bits);
    let mut positions: Vec<[f32; 3]> = Vec::with_capacity(ids.len());
    for (m, k) in blocks.iter().flat_map(|b| &b.keys).enumerate() {
        let first = ids[m] as usize;
        ids[m] = if first == m {
            positions.push(k.map(f32::from_bits));
            (positions.len() - 1) as u32
        } else {
            ids[first]
        };
    }
    drop(blocks);
    corners
        .par_chunks_mut(per_block)
        .zip(&offsets)
        .for_each(|(out, &offset)| {
            for c in out {
                *c = c.map(|v| ids[(offset + v) as usize]);
            }
        });
    (Welded { positions, corners }, states)
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
}
