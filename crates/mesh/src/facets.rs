//! Where the check and the weld read facets from: a parsed [`crate::Mesh`], or the records of
//! a binary STL file in place. Checking straight from the file's bytes skips building the
//! mesh (48 bytes per facet written, then read again), which was about a fifth of the time of
//! a million-triangle parse and check.

use std::ops::Range;

/// Bytes per binary STL record: normal, three corners (12 little-endian `f32`), 2 attribute bytes.
pub(crate) const RECORD_BYTES: usize = 50;

/// A sequence of facets, each with three corners and a stored normal.
pub(crate) trait Facets: Sync {
    fn count(&self) -> usize;

    /// Calls `visit` on each facet of `range`, in order, with its index, corners and stored
    /// normal. `range` must lie within `0..count()`.
    fn each(&self, range: Range<usize>, visit: impl FnMut(usize, &[[f32; 3]; 3], &[f32; 3]));
}

/// Triangles and normals held in memory. Normals may be missing (a hand-built mesh): a
/// missing one reads as zero.
pub(crate) struct Soup<'a> {
    pub triangles: &'a [[[f32; 3]; 3]],
    pub normals: &'a [[f32; 3]],
}

impl Facets for Soup<'_> {
    fn count(&self) -> usize {
        self.triangles.len()
    }

    fn each(&self, range: Range<usize>, mut visit: impl FnMut(usize, &[[f32; 3]; 3], &[f32; 3])) {
        let start = range.start;
        let triangles = &self.triangles[range.clone()];
        match self.normals.get(range) {
            Some(normals) => {
                for (i, (t, n)) in triangles.iter().zip(normals).enumerate() {
                    visit(start + i, t, n);
                }
            }
            None => {
                for (i, t) in triangles.iter().enumerate() {
                    visit(
                        start + i,
                        t,
                        self.normals.get(start + i).unwrap_or(&[0.0; 3]),
                    );
                }
            }
        }
    }
}

/// The facet records of a binary STL file (everything after its 84-byte prefix), decoded as
/// they are read.
pub(crate) struct BinaryRecords<'a> {
    records: &'a [[u8; RECORD_BYTES]],
}

impl<'a> BinaryRecords<'a> {
    /// `body` holds whole records; a trailing partial record is ignored.
    pub(crate) fn new(body: &'a [u8]) -> Self {
        BinaryRecords {
            records: body.as_chunks().0,
        }
    }
}

/// Decodes one record into (normal, corners).
#[inline(always)]
fn decode_record(r: &[u8; RECORD_BYTES]) -> ([f32; 3], [[f32; 3]; 3]) {
    let f = |k: usize| f32::from_le_bytes([r[4 * k], r[4 * k + 1], r[4 * k + 2], r[4 * k + 3]]);
    (
        [f(0), f(1), f(2)],
        [[f(3), f(4), f(5)], [f(6), f(7), f(8)], [f(9), f(10), f(11)]],
    )
}

impl Facets for BinaryRecords<'_> {
    fn count(&self) -> usize {
        self.records.len()
    }

    fn each(&self, range: Range<usize>, mut visit: impl FnMut(usize, &[[f32; 3]; 3], &[f32; 3])) {
        let start = range.start;
        for (i, r) in self.records[range].iter().enumerate() {
            let (n, t) = decode_record(r);
            visit(start + i, &t, &n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_records_decode_in_order_and_ranges() {
        let mut body = Vec::new();
        for f in 0..3u8 {
            for k in 0..12 {
                body.extend_from_slice(&(f32::from(f) * 100.0 + k as f32).to_le_bytes());
            }
            body.extend_from_slice(&[0, 0]);
        }
        body.push(7); // a partial record is ignored
        let records = BinaryRecords::new(&body);
        assert_eq!(records.count(), 3);
        let mut seen = Vec::new();
        records.each(1..3, |f, t, n| seen.push((f, t[2][1], n[0])));
        assert_eq!(seen, vec![(1, 110.0, 100.0), (2, 210.0, 200.0)]);
    }

    #[test]
    fn missing_normals_read_as_zero() {
        let triangles = [[[1.0; 3]; 3], [[2.0; 3]; 3]];
        let normals = [[0.0, 0.0, 1.0]];
        let soup = Soup {
            triangles: &triangles,
            normals: &normals,
        };
        let mut seen = Vec::new();
        soup.each(0..2, |f, _, n| seen.push((f, n[2])));
        assert_eq!(seen, vec![(0, 1.0), (1, 0.0)]);
    }
}
