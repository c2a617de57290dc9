//! Travel: moves between perimeter loops (nearest first), to infill pieces and between sparse
//! chains, each with the retraction the profile asks for. Sequential, as each layer starts where
//! the previous one ended.

use super::Ctx;
use super::flow::spacing;
use super::layers::LayerGeometry;
use super::work::{LayerWork, Totals};
use crate::geom::{self, Pt};
use crate::motion::{move_time, safe_speed};

pub(super) fn travel_move(ctx: &Ctx, d: f64, work: &mut LayerWork) {
    let p = ctx.p;
    if d <= 0.0 {
        return;
    }
    let v = p.travel_speed_mm_s;
    let a = p.travel_acceleration_mm_s2;
    let safe = safe_speed(ctx.cornering, v);
    work.travel_time_s += move_time(d, safe, v, safe, a);
    work.travel_path_mm += d;
    work.travel_moves += 1;
    if d > p.retract_min_travel_mm && p.retract_length_mm > 0.0 {
        work.retractions += 1;
        let ar = p.retract_acceleration_mm_s2;
        work.retract_time_s += move_time(p.retract_length_mm, 0.0, p.retract_speed_mm_s, 0.0, ar)
            + move_time(p.retract_length_mm, 0.0, p.deretract_speed_mm_s, 0.0, ar);
    }
}

/// Travel on one layer: to each perimeter loop in nearest-first order (loops of one island are nested
/// and close, islands are far apart), to each infill piece, and between unanchored sparse lines.
pub(super) fn travel_for_layer(
    ctx: &Ctx,
    g: &LayerGeometry,
    work_in: &LayerWork,
    position: &mut Pt,
    totals: &mut Totals,
) {
    let p = ctx.p;
    let mut work = LayerWork::default();
    let min_hop = spacing(p.perimeter_width_mm, p.layer_height_mm);
    let mut centres: Vec<Pt> = g
        .perimeters
        .iter()
        .map(|per| geom::contour_center(&per.contour))
        .collect();
    // Greedy nearest neighbour; bounded so pathological layers stay linear.
    const MAX_GREEDY: usize = 512;
    let mut here = *position;
    while !centres.is_empty() {
        let k = if centres.len() <= MAX_GREEDY {
            let mut best = 0;
            let mut bd = f64::INFINITY;
            for (j, c) in centres.iter().enumerate() {
                let d = ((c[0] - here[0]).powi(2) + (c[1] - here[1]).powi(2)).sqrt();
                if d < bd {
                    bd = d;
                    best = j;
                }
            }
            best
        } else {
            centres.len() - 1
        };
        let c = centres.swap_remove(k);
        let d = ((c[0] - here[0]).powi(2) + (c[1] - here[1]).powi(2))
            .sqrt()
            .max(min_hop);
        travel_move(ctx, d, &mut work);
        here = c;
    }
    for &a in &work_in.infill_pieces_mm2 {
        travel_move(ctx, (a.sqrt() / 2.0).max(min_hop), &mut work);
    }
    for &d in &work_in.extra_travels_mm {
        travel_move(ctx, d, &mut work);
    }
    let breaks = work_in.sparse_breaks.round() as u32;
    for _ in 0..breaks {
        travel_move(ctx, work_in.sparse_break_mm, &mut work);
    }
    *position = here;
    totals.add_travel(&work);
    // The travel time is also part of this layer's time for the cooling rule.
    totals.layer_travel_s = work.travel_time_s + work.retract_time_s;
}

#[cfg(test)]
mod tests {
    use super::super::testutil::profile;
    use super::*;

    #[test]
    fn only_travels_longer_than_the_minimum_retract() {
        let p = profile();
        let ctx = Ctx {
            p: &p,
            cornering: p.cornering,
        };
        let mut work = LayerWork::default();
        travel_move(&ctx, p.retract_min_travel_mm / 2.0, &mut work);
        assert_eq!((work.travel_moves, work.retractions), (1, 0));
        let short = work.travel_time_s;
        travel_move(&ctx, p.retract_min_travel_mm * 2.0, &mut work);
        assert_eq!((work.travel_moves, work.retractions), (2, 1));
        // Retracting and priming cost at least their length at their speeds.
        let retract = p.retract_length_mm / p.retract_speed_mm_s
            + p.retract_length_mm / p.deretract_speed_mm_s;
        assert!(work.travel_time_s + work.retract_time_s - short > retract);
        assert!((work.travel_path_mm - 2.5 * p.retract_min_travel_mm).abs() < 1e-12);
        travel_move(&ctx, 0.0, &mut work);
        assert_eq!(work.travel_moves, 2);
    }
}
