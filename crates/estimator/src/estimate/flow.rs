//! The bead model every stage shares: how much material a line of a given width and height takes
//! and how far apart such lines are laid, so areas and lengths convert to volume the way
//! PrusaSlicer's flow does.

use std::f64::consts::PI;

/// Cross-section of a bead of width `w` and height `h` (PrusaSlicer's flow model: a rectangle with
/// semicircular ends). Lines of this bead are laid `spacing(w, h)` apart, so a filled area `A` takes
/// exactly `A * h` of material.
pub(super) fn bead_area(w: f64, h: f64) -> f64 {
    (w - h) * h + PI * (h / 2.0) * (h / 2.0)
}

pub(super) fn spacing(w: f64, h: f64) -> f64 {
    w - h * (1.0 - PI / 4.0)
}

/// Bridges are extruded as round threads of the nozzle diameter, spaced by a small gap
/// (PrusaSlicer's `thick_bridges` with `BRIDGE_EXTRA_SPACING` = 0.05 mm).
pub(super) const BRIDGE_EXTRA_SPACING_MM: f64 = 0.05;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_at_spacing_fill_an_area_with_exactly_area_times_height() {
        for (w, h) in [(0.45, 0.2), (0.42, 0.1), (0.68, 0.3)] {
            let per_mm2 = bead_area(w, h) / spacing(w, h);
            assert!((per_mm2 - h).abs() < 1e-12, "{w} x {h}: {per_mm2}");
        }
    }

    #[test]
    fn spacing_is_narrower_than_the_bead() {
        assert!(spacing(0.45, 0.2) < 0.45);
        assert!(spacing(0.45, 0.2) > 0.45 - 0.2);
    }
}
