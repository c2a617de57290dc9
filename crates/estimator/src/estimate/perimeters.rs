//! Perimeters of one island: offsets its outline inward into the profile's perimeter loops and
//! the area left for infill. Loops that only shrink are predicted from the external one instead of
//! offset, since offsets are most of the estimate's cost.

use super::Ctx;
use super::flow::spacing;
use crate::geom::{self, Contour, Pt, Shapes};

/// One perimeter loop. Inner loops whose shape follows the external one exactly (no topology change
/// in between) reuse its corners with their own, exactly predicted, length.
#[derive(Clone)]
pub(super) struct Perimeter {
    pub(super) contour: Contour,
    pub(super) length_mm: f64,
    pub(super) external: bool,
}

/// Relative tolerance for "the infill boundary is where the external loops predict".
const STABLE_LENGTH_TOLERANCE: f64 = 0.01;

/// How fast a closed loop's length shrinks per mm of inward miter offset: the sum over corners of
/// 2 tan(turn / 2), turns signed so that convex corners shrink and reflex corners grow (2 pi for a
/// smooth outer loop, -2 pi for a smooth hole).
fn miter_shrink_rate(c: &[Pt]) -> f64 {
    let n = c.len();
    if n < 3 {
        return 0.0;
    }
    let orientation = geom::contour_area(c).signum();
    let mut rate = 0.0;
    for i in 0..n {
        let a = c[(i + n - 1) % n];
        let b = c[i];
        let d = c[(i + 1) % n];
        let u = [b[0] - a[0], b[1] - a[1]];
        let v = [d[0] - b[0], d[1] - b[1]];
        let turn = (u[0] * v[1] - u[1] * v[0]).atan2(u[0] * v[0] + u[1] * v[1]);
        rate += 2.0 * (orientation * turn / 2.0).tan();
    }
    rate
}

/// Perimeter loops and infill area of one layer's region.
pub(super) fn perimeters_and_infill(
    ctx: &Ctx,
    i: usize,
    region: &Shapes,
) -> (Vec<Perimeter>, Shapes) {
    let (perimeters, infill) = loops_and_infill(ctx, i, region);
    (perimeters, without_narrow_strips(ctx, i, infill))
}

/// PrusaSlicer keeps only the infill area that survives an opening by most of a solid infill
/// line (`PerimeterGenerator`: shrink and grow back by 0.8 x the solid spacing, before the
/// overlap is added): strips between walls too narrow for a line get none. Only pieces narrow
/// enough to lose something are offset.
fn without_narrow_strips(ctx: &Ctx, i: usize, infill: Shapes) -> Shapes {
    let p = ctx.p;
    let (h, w) = if i == 0 {
        (p.first_layer_height_mm, p.first_layer_width_mm)
    } else {
        (p.layer_height_mm, p.solid_infill_width_mm)
    };
    let overlap = p.infill_overlap_pct / 100.0 * p.perimeter_width_mm;
    let r = 0.4 * spacing(w, h) + overlap;
    let mut out: Shapes = Vec::with_capacity(infill.len());
    for s in infill {
        let boundary: f64 = s.iter().map(|c| geom::contour_length(c)).sum();
        let mean_width = if boundary > 0.0 {
            2.0 * geom::shape_area(&s) / boundary
        } else {
            0.0
        };
        if mean_width >= 4.0 * r {
            out.push(s);
        } else {
            let opened = geom::offset(&geom::offset(&vec![s], -r), r);
            out.extend(opened);
        }
    }
    out
}

/// Perimeter loops and infill area (before dropping narrow strips) of one layer's region.
fn loops_and_infill(ctx: &Ctx, i: usize, region: &Shapes) -> (Vec<Perimeter>, Shapes) {
    let p = ctx.p;
    let (h, we, wp) = if i == 0 {
        (
            p.first_layer_height_mm,
            p.first_layer_width_mm,
            p.first_layer_width_mm,
        )
    } else {
        (
            p.layer_height_mm,
            p.external_perimeter_width_mm,
            p.perimeter_width_mm,
        )
    };
    let se = spacing(we, h);
    let sp = spacing(wp, h);
    let overlap = p.infill_overlap_pct / 100.0 * wp;
    if p.perimeters == 0 {
        return (Vec::new(), region.clone());
    }
    // Centre-line depth of each perimeter, and where the infill starts.
    let depths: Vec<f64> = (0..p.perimeters as usize)
        .map(|k| match k {
            0 => we / 2.0,
            _ => we / 2.0 + (se + sp) / 2.0 + (k - 1) as f64 * sp,
        })
        .collect();
    let last_depth = depths[depths.len() - 1];
    let infill_depth = last_depth + if depths.len() == 1 { se } else { sp } / 2.0 - overlap;

    // Each offset starts from the previous loops: small steps leave Clipper few self-intersections
    // to resolve, which is most of an offset's cost on detailed outlines.
    let external_shapes = geom::offset(region, -depths[0]);
    let external: Vec<Contour> = external_shapes.iter().flatten().cloned().collect();
    let mut perimeters: Vec<Perimeter> = external
        .iter()
        .map(|c| Perimeter {
            length_mm: geom::contour_length(c),
            contour: c.clone(),
            external: true,
        })
        .collect();
    if external.is_empty() {
        return (perimeters, Vec::new());
    }
    if depths.len() == 1 {
        return (
            perimeters,
            geom::offset(&external_shapes, -(infill_depth - depths[0])),
        );
    }
    // Inward offsets shrink each loop linearly in depth (by 2 tan(turn/2) per corner) until the
    // topology changes. When a deeper offset has as many loops as the external one and the length
    // they predict, nothing changed in between and the perimeters up to that depth follow exactly
    // from the external loops, without offsetting each of them.
    let shrink: Vec<f64> = external.iter().map(|c| miter_shrink_rate(c)).collect();
    let predicted_at = |depth: f64| -> f64 {
        external
            .iter()
            .zip(&shrink)
            .map(|(c, r)| geom::contour_length(c) - r * (depth - depths[0]))
            .sum()
    };
    let matches_prediction = |loops: &Shapes, depth: f64| -> bool {
        let count: usize = loops.iter().map(|s| s.len()).sum();
        let length = geom::boundary_length(loops);
        count > 0
            && count == external.len()
            && (predicted_at(depth) - length).abs() <= STABLE_LENGTH_TOLERANCE * length + 0.1
    };
    let predicted_perimeters = |perimeters: &mut Vec<Perimeter>, from: &[f64]| {
        for &d in from {
            for (c, r) in external.iter().zip(&shrink) {
                perimeters.push(Perimeter {
                    contour: c.clone(),
                    length_mm: (geom::contour_length(c) - r * (d - depths[0])).max(0.0),
                    external: false,
                });
            }
        }
    };
    // Thick islands: try the infill boundary first; if it is where predicted, all inner perimeters
    // follow (one offset instead of one per perimeter). Thin ones go innermost-first, as their
    // infill is usually empty.
    let ext_length = geom::boundary_length(&external_shapes);
    let mean_width = if ext_length > 0.0 {
        2.0 * geom::area(&external_shapes) / ext_length
    } else {
        0.0
    };
    let mut infill_first: Option<Shapes> = None;
    if mean_width > 4.0 * (infill_depth - depths[0]) {
        let infill = geom::offset(&external_shapes, -(infill_depth - depths[0]));
        if matches_prediction(&infill, infill_depth) {
            predicted_perimeters(&mut perimeters, &depths[1..]);
            return (perimeters, infill);
        }
        infill_first = Some(infill);
    }
    // Otherwise the innermost perimeter decides: if it does not fit, neither does infill.
    let innermost_shapes = geom::offset(&external_shapes, -(last_depth - depths[0]));
    let stable = matches_prediction(&innermost_shapes, last_depth);
    let mut all_fit = !innermost_shapes.is_empty();
    if stable {
        predicted_perimeters(&mut perimeters, &depths[1..depths.len() - 1]);
    } else {
        for &d in &depths[1..depths.len() - 1] {
            let loops = geom::offset(&external_shapes, -(d - depths[0]));
            if loops.is_empty() {
                all_fit = false;
                break;
            }
            for c in loops.into_iter().flatten() {
                perimeters.push(Perimeter {
                    length_mm: geom::contour_length(&c),
                    contour: c,
                    external: false,
                });
            }
        }
    }
    if all_fit {
        for c in innermost_shapes.iter().flatten() {
            perimeters.push(Perimeter {
                length_mm: geom::contour_length(c),
                contour: c.clone(),
                external: false,
            });
        }
    }
    // A perimeter that did not fit leaves no room for infill inside it.
    let infill = match (all_fit, infill_first) {
        (false, _) => Vec::new(),
        (true, Some(infill)) => infill,
        (true, None) => geom::offset(&innermost_shapes, -(infill_depth - last_depth)),
    };
    (perimeters, infill)
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{profile, square};
    use super::*;

    #[test]
    fn shrink_rate_is_two_tan_half_turn_per_corner() {
        let sq = square(0.0, 0.0, 10.0)[0][0].clone();
        assert!((miter_shrink_rate(&sq) - 8.0).abs() < 1e-9);
        // Orientation does not matter for an outer loop on its own.
        let rev: Contour = sq.iter().rev().copied().collect();
        assert!((miter_shrink_rate(&rev) - 8.0).abs() < 1e-9);
        // A reflex corner grows: an L has five convex and one reflex right angle.
        let l = vec![
            [0.0, 0.0],
            [4.0, 0.0],
            [4.0, 2.0],
            [2.0, 2.0],
            [2.0, 4.0],
            [0.0, 4.0],
        ];
        assert!((miter_shrink_rate(&l) - (5.0 * 2.0 - 2.0)).abs() < 1e-9);
    }

    #[test]
    fn square_gets_nested_perimeters_and_the_rest_as_infill() {
        let p = profile();
        let ctx = Ctx {
            p: &p,
            cornering: p.cornering,
        };
        let side = 20.0;
        let (perimeters, infill) = perimeters_and_infill(&ctx, 1, &square(0.0, 0.0, side));
        assert_eq!(perimeters.len(), p.perimeters as usize);
        assert!(perimeters[0].external);
        assert!(perimeters[1..].iter().all(|per| !per.external));
        // Centre lines at half a width in, then one spacing apart: each side shorter by twice that.
        let h = p.layer_height_mm;
        let (we, wp) = (p.external_perimeter_width_mm, p.perimeter_width_mm);
        let (se, sp) = (spacing(we, h), spacing(wp, h));
        let mut depth = we / 2.0;
        for (k, per) in perimeters.iter().enumerate() {
            let expected = 4.0 * (side - 2.0 * depth);
            assert!(
                (per.length_mm - expected).abs() < 1e-2,
                "loop {k}: {} vs {expected}",
                per.length_mm
            );
            depth += if k == 0 { (se + sp) / 2.0 } else { sp };
        }
        // Infill starts half a spacing inside the innermost loop, less the overlap.
        let last = depth - sp;
        let infill_depth = last + sp / 2.0 - p.infill_overlap_pct / 100.0 * wp;
        // Offsets are rounded to the micrometre, so compare the side, not the area.
        let infill_side = geom::area(&infill).sqrt();
        let expected = side - 2.0 * infill_depth;
        assert!(
            (infill_side - expected).abs() < 2e-3,
            "{infill_side} vs {expected}"
        );
    }

    #[test]
    fn strip_too_narrow_for_inner_perimeters_gets_no_infill() {
        let p = profile();
        let ctx = Ctx {
            p: &p,
            cornering: p.cornering,
        };
        let strip =
            geom::region_from_loops(&[vec![[0.0, 0.0], [20.0, 0.0], [20.0, 1.0], [0.0, 1.0]]]);
        let (perimeters, infill) = perimeters_and_infill(&ctx, 1, &strip);
        assert_eq!(perimeters.len(), 1);
        assert!(perimeters[0].external);
        assert!(infill.is_empty());
    }

    #[test]
    fn infill_strips_narrower_than_a_line_are_dropped() {
        let p = profile();
        let ctx = Ctx {
            p: &p,
            cornering: p.cornering,
        };
        let thin =
            geom::region_from_loops(&[vec![[0.0, 0.0], [20.0, 0.0], [20.0, 0.4], [0.0, 0.4]]]);
        assert!(without_narrow_strips(&ctx, 1, thin).is_empty());
        let wide = square(0.0, 0.0, 10.0);
        let kept = without_narrow_strips(&ctx, 1, wide.clone());
        assert!((geom::area(&kept) - geom::area(&wide)).abs() < 1e-9);
    }
}
