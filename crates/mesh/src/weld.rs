//! Exact vertex welding: corners with bit-identical coordinates (treating -0 as +0) become one
//! vertex. This is what admesh `--exact` and trimesh's merge do, and it is the costly step of a
//! check. Exporters write neighbouring triangles close together in the file, so a small
//! direct-mapped cache of recent vertices answers most lookups before the full hash table, and
//! vertices are numbered in order of first use, which keeps later passes cache-friendly.

use hashbrown::HashTable;
use hashbrown::hash_table::Entry;
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
/// staying in L1/L2 (16 bytes per slot).
const RECENT_BITS: u32 = 12;
const RECENT: usize = 1 << RECENT_BITS;

/// One contiguous block of triangles welded on its own.
struct Block {
    table: HashTable<u32>,
    keys: Vec<[u32; 3]>,
}

impl Block {
    fn find(&self, h: u64, k: &[u32; 3]) -> Option<u32> {
        self.table
            .find(h, |&id| self.keys[id as usize] == *k)
            .copied()
    }
}

/// Welds one block, writing block-local vertex ids (in first-use order) into `out`.
fn weld_block(triangles: &[[[f32; 3]; 3]], out: &mut [[u32; 3]]) -> Block {
    // A closed mesh has about half as many vertices as triangles; a block of one also has the
    // vertices of its seams, and growing the table midway would rehash every vertex.
    let expected = triangles.len() / 2 + triangles.len() / 16 + 1024;
    let mut table: HashTable<u32> = HashTable::with_capacity(expected);
    let mut keys: Vec<[u32; 3]> = Vec::with_capacity(expected);
    // (key, vertex id); id u32::MAX marks an empty slot.
    let mut recent = vec![([0u32; 3], u32::MAX); RECENT];
    for (t, out) in triangles.iter().zip(out) {
        let ids = t.each_ref().map(|p| {
            let k = key(p);
            let h = point_hash(&k);
            let slot = &mut recent[(h >> (64 - RECENT_BITS)) as usize];
            if slot.1 != u32::MAX && slot.0 == k {
                return slot.1;
            }
            let id = match table.entry(
                h,
                |&id| keys[id as usize] == k,
                |&id| point_hash(&keys[id as usize]),
            ) {
                Entry::Occupied(e) => *e.get(),
                Entry::Vacant(e) => {
                    let id = keys.len() as u32;
                    e.insert(id);
                    keys.push(k);
                    id
                }
            };
            *slot = (k, id);
            id
        });
        *out = ids;
    }
    Block { table, keys }
}

/// Below this many triangles one block is fastest.
const PARALLEL_MIN_TRIANGLES: usize = 100_000;
/// Each later block looks its vertices up in all earlier ones, so blocks stay few.
const MAX_BLOCKS: usize = 4;

pub(crate) fn weld(triangles: &[[[f32; 3]; 3]]) -> Welded {
    let blocks_wanted = if triangles.len() < PARALLEL_MIN_TRIANGLES {
        1
    } else {
        rayon::current_num_threads().clamp(1, MAX_BLOCKS)
    };
    let per_block = triangles.len().div_ceil(blocks_wanted).max(1);
    // Contiguous blocks keep the file's locality; each is welded in parallel, writing
    // block-local ids straight into its part of the result.
    let mut corners = vec![[0u32; 3]; triangles.len()];
    let blocks: Vec<Block> = triangles
        .par_chunks(per_block)
        .zip(corners.par_chunks_mut(per_block))
        .map(|(tris, out)| weld_block(tris, out))
        .collect();
    // A block's vertices that already occur in an earlier block take that vertex's global id;
    // the others are numbered after all earlier vertices, in first-use order. The first
    // block's local ids are already global (`None`: identity).
    let mut positions: Vec<[f32; 3]> = Vec::new();
    let mut global_ids: Vec<Option<Vec<u32>>> = Vec::with_capacity(blocks.len());
    for (b, block) in blocks.iter().enumerate() {
        if b == 0 {
            positions.extend(block.keys.iter().map(|k| k.map(f32::from_bits)));
            global_ids.push(None);
            continue;
        }
        let earlier: Vec<Option<u32>> = block
            .keys
            .par_iter()
            .with_min_len(4096)
            .map(|k| {
                let h = point_hash(k);
                blocks[..b].iter().zip(&global_ids).find_map(|(prev, ids)| {
                    let id = prev.find(h, k)?;
                    Some(ids.as_ref().map_or(id, |ids| ids[id as usize]))
                })
            })
            .collect();
        positions.reserve(block.keys.len());
        let ids = earlier
            .iter()
            .zip(&block.keys)
            .map(|(found, k)| {
                found.unwrap_or_else(|| {
                    positions.push(k.map(f32::from_bits));
                    (positions.len() - 1) as u32
                })
            })
            .collect();
        global_ids.push(Some(ids));
    }
    corners
        .par_chunks_mut(per_block)
        .zip(&global_ids)
        .for_each(|(out, ids)| {
            if let Some(ids) = ids {
                for c in out {
                    *c = c.map(|v| ids[v as usize]);
                }
            }
        });
    Welded { positions, corners }
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
