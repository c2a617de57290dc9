//! Does a part fit a build volume in some orientation? The part is known only by its
//! axis-aligned extent, so we try standing it on each of its three face pairs (which, with the
//! quarter turn below, covers all 6 axis permutations) and turning it about z in
//! [`ROTATION_STEP_DEG`] steps; the turned footprint is the bounding box of the turned
//! rectangle, which is conservative (the real part is inside it).
//!
//! The candidate extents depend only on the part, so they are computed once per request and
//! each printer costs a handful of comparisons.

use serde::{Deserialize, Serialize};

/// Step of the rotation about z, degrees. 0..=90 covers every footprint (a turn by more is the
/// same bounding box as a smaller turn with x and y swapped, also tried).
pub const ROTATION_STEP_DEG: u32 = 5;

/// Which axis of the part as uploaded points up once placed on the bed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum UpAxis {
    /// As uploaded.
    Z,
    /// Laid on its side: the part's x axis points up.
    X,
    /// Laid on its front/back: the part's y axis points up.
    Y,
}

/// How the part is placed on the bed to fit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Orientation {
    pub up: UpAxis,
    /// Turn about the vertical axis after laying it down, degrees in 0..=90.
    pub rotation_z_deg: u32,
    /// Bounding box of the placed part, x/y/z mm.
    pub placed_extent_mm: [f64; 3],
}

impl Orientation {
    /// True when the part prints as uploaded.
    pub fn is_as_uploaded(&self) -> bool {
        self.up == UpAxis::Z && self.rotation_z_deg == 0
    }

    /// Customer-facing description, e.g. "laid on its side (x axis up), turned 45° about z".
    pub fn describe(&self) -> String {
        let face = match self.up {
            UpAxis::Z => "as uploaded",
            UpAxis::X => "laid on its side (x axis up)",
            UpAxis::Y => "laid on its front (y axis up)",
        };
        if self.rotation_z_deg == 0 {
            face.to_string()
        } else {
            format!("{face}, turned {}° about z", self.rotation_z_deg)
        }
    }
}

/// The orientations worth trying for one part, most preferred first, with every candidate
/// dropped that an earlier one fits inside (it could never be the first to fit).
#[derive(Debug, Clone)]
pub struct FitCandidates {
    candidates: Vec<Orientation>,
}

impl FitCandidates {
    pub fn new(part_extent_mm: [f64; 3]) -> Self {
        let [x, y, z] = part_extent_mm;
        // (up axis, footprint along bed x, footprint along bed y, height). Preference: as
        // uploaded, then the least surprising face changes.
        let faces = [
            (UpAxis::Z, x, y, z),
            (UpAxis::X, z, y, x),
            (UpAxis::Y, x, z, y),
        ];
        let mut candidates: Vec<Orientation> = Vec::new();
        for (up, w, d, h) in faces {
            // 0 then 90 (a plain quarter turn) before the oblique angles.
            let angles = [0, 90]
                .into_iter()
                .chain((ROTATION_STEP_DEG..90).step_by(ROTATION_STEP_DEG as usize));
            for deg in angles {
                let (s, c) = f64::from(deg).to_radians().sin_cos();
                // Clamp tiny negative/rounding noise at 0 and 90 degrees.
                let (s, c) = (s.clamp(0.0, 1.0), c.clamp(0.0, 1.0));
                let placed = [w * c + d * s, w * s + d * c, h];
                let dominated = candidates.iter().any(|o| {
                    o.placed_extent_mm
                        .iter()
                        .zip(&placed)
                        .all(|(a, b)| *a <= *b + 1e-9)
                });
                if !dominated {
                    candidates.push(Orientation {
                        up,
                        rotation_z_deg: deg,
                        placed_extent_mm: placed,
                    });
                }
            }
        }
        Self { candidates }
    }

    /// Only the orientation as uploaded (for parts whose placement is fixed, like G-code).
    pub fn as_uploaded(part_extent_mm: [f64; 3]) -> Self {
        Self {
            candidates: vec![Orientation {
                up: UpAxis::Z,
                rotation_z_deg: 0,
                placed_extent_mm: part_extent_mm,
            }],
        }
    }

    /// The first (most preferred) orientation in which the part fits `build_volume_mm`.
    pub fn fit(&self, build_volume_mm: &[f64; 3]) -> Option<&Orientation> {
        self.fit_index(build_volume_mm).and_then(|i| self.get(i))
    }

    /// Position of [`FitCandidates::fit`]'s answer, for compact storage.
    pub fn fit_index(&self, build_volume_mm: &[f64; 3]) -> Option<usize> {
        let [vx, vy, vz] = *build_volume_mm;
        self.candidates.iter().position(|o| {
            let [px, py, pz] = o.placed_extent_mm;
            px <= vx && py <= vy && pz <= vz
        })
    }

    pub fn get(&self, index: usize) -> Option<&Orientation> {
        self.candidates.get(index)
    }

    /// Number of distinct orientations tried per printer.
    pub fn len(&self) -> usize {
        self.candidates.len()
    }

    pub fn is_empty(&self) -> bool {
        self.candidates.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_as_uploaded_when_it_can() {
        let c = FitCandidates::new([100.0, 50.0, 20.0]);
        let o = c.fit(&[180.0, 180.0, 180.0]).unwrap();
        assert!(o.is_as_uploaded());
        assert_eq!(o.placed_extent_mm, [100.0, 50.0, 20.0]);
    }

    #[test]
    fn quarter_turn_for_a_narrow_bed() {
        // 300 long in x does not fit 200 wide x; turned 90 degrees it does (bed 200 x 320).
        let c = FitCandidates::new([300.0, 100.0, 50.0]);
        let o = c.fit(&[200.0, 320.0, 200.0]).unwrap();
        assert_eq!((o.up, o.rotation_z_deg), (UpAxis::Z, 90));
    }

    #[test]
    fn tall_part_fits_lying_on_its_side() {
        // 250 mm tall does not fit under a 200 mm z; lying down it does.
        let c = FitCandidates::new([40.0, 30.0, 250.0]);
        let o = c.fit(&[300.0, 300.0, 200.0]).unwrap();
        assert_eq!(o.up, UpAxis::X);
        assert!(o.placed_extent_mm[2] <= 200.0);
        assert!((o.placed_extent_mm[0] - 250.0).abs() < 1e-9);
    }

    #[test]
    fn long_bar_fits_diagonally_at_45_degrees() {
        // 240 x 8: too long for a 180 x 180 bed on either axis; the diagonal is 254.
        let c = FitCandidates::new([240.0, 8.0, 8.0]);
        let o = c.fit(&[180.0, 180.0, 180.0]).unwrap();
        assert_eq!(o.rotation_z_deg, 45, "{o:?}");
        assert!(o.placed_extent_mm[0] <= 180.0 && o.placed_extent_mm[1] <= 180.0);
        // Slightly longer than the diagonal allows: no orientation fits.
        let c = FitCandidates::new([260.0, 8.0, 8.0]);
        assert!(c.fit(&[180.0, 180.0, 180.0]).is_none());
    }

    #[test]
    fn cube_needs_one_candidate_only() {
        // Every other orientation of a cube is dominated by "as uploaded".
        assert_eq!(FitCandidates::new([50.0, 50.0, 50.0]).len(), 1);
        assert!(FitCandidates::new([240.0, 8.0, 8.0]).len() > 3);
    }
}
