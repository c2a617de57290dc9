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
        if p.retract_lift_mm > 0.0 {
            // Up before the travel and down after it.
            work.travel_time_s += 2.0 * p.z_move_time(p.retract_lift_mm);
        }
    }
}

/// Where the nozzle is between features, as far as travel needs to know: somewhere on a loop (or in
/// an infill piece) of this radius around this centre. Where exactly depends on the seam, which the
/// estimate does not place.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Spot {
    pub(super) centre: Pt,
    pub(super) radius: f64,
}

/// Expected travel between a point on one loop and the seam of another: the centres' distance
/// and a share of both radii. For two loops around one centre (an island's outline and its hole, or
/// the same loop one layer up) it is about the distance between seams PrusaSlicer's G-code shows.
fn spot_distance(a: &Spot, b: &Spot) -> f64 {
    let dx = a.centre[0] - b.centre[0];
    let dy = a.centre[1] - b.centre[1];
    (dx * dx + dy * dy + 0.25 * (a.radius * a.radius + b.radius * b.radius)).sqrt()
}

/// Perimeter loops printed one after the other without a retraction: the loops that follow one
/// outline (or one hole) inwards, each a short hop from the previous.
struct Chain {
    spot: Spot,
    hole: bool,
    loops: u32,
}

/// Groups a layer's perimeter loops into chains. Loops of one island come in depth order, so a
/// loop's chain is among the most recent ones.
fn chains_of(g: &LayerGeometry, hop: f64) -> Vec<Chain> {
    const LOOKBACK: usize = 64;
    let mut chains: Vec<Chain> = Vec::new();
    for per in &g.perimeters {
        let centre = geom::contour_center(&per.contour);
        let radius = per.length_mm / (2.0 * std::f64::consts::PI);
        let hole = geom::contour_area(&per.contour) < 0.0;
        let from = chains.len().saturating_sub(LOOKBACK);
        let found = chains[from..].iter_mut().rev().find(|c| {
            let d = ((c.spot.centre[0] - centre[0]).powi(2)
                + (c.spot.centre[1] - centre[1]).powi(2))
            .sqrt();
            c.hole == hole && d <= (0.25 * c.spot.radius).max(2.0 * hop)
        });
        match found {
            Some(c) => c.loops += 1,
            None => chains.push(Chain {
                spot: Spot { centre, radius },
                hole,
                loops: 1,
            }),
        }
    }
    chains
}

/// Travel on one layer: from where the last layer ended back to its first chain of perimeter loops,
/// then to each other chain in nearest-first order (a retraction each, as the seams are apart), short hops between the loops of
/// a chain, then to each infill piece, and between unanchored sparse lines.
pub(super) fn travel_for_layer(
    ctx: &Ctx,
    g: &LayerGeometry,
    work_in: &LayerWork,
    position: &mut Spot,
    totals: &mut Totals,
) {
    let p = ctx.p;
    let mut work = LayerWork::default();
    let min_hop = spacing(p.perimeter_width_mm, p.layer_height_mm);
    let mut chains = chains_of(g, min_hop);
    // Greedy nearest neighbour; bounded so pathological layers stay linear.
    const MAX_GREEDY: usize = 512;
    let mut here = *position;
    let mut first = true;
    while !chains.is_empty() {
        // PrusaSlicer starts each layer at the same island whatever the previous layer ended on,
        // so the layer change is a travel back to it; the order within the layer is then
        // nearest first.
        let k = if first {
            first = false;
            0
        } else if chains.len() <= MAX_GREEDY {
            let mut best = 0;
            let mut bd = f64::INFINITY;
            for (j, c) in chains.iter().enumerate() {
                let d = (c.spot.centre[0] - here.centre[0]).powi(2)
                    + (c.spot.centre[1] - here.centre[1]).powi(2);
                if d < bd {
                    bd = d;
                    best = j;
                }
            }
            best
        } else {
            chains.len() - 1
        };
        let c = chains.swap_remove(k);
        travel_move(ctx, spot_distance(&here, &c.spot).max(min_hop), &mut work);
        for _ in 1..c.loops {
            travel_move(ctx, min_hop, &mut work);
        }
        here = c.spot;
    }
    // From the external loop's seam across the inner loops to where the piece's fill starts.
    let depth = f64::from(p.perimeters) * min_hop;
    for &a in &work_in.infill_pieces_mm2 {
        let r = (a / std::f64::consts::PI).sqrt();
        let d = (0.25 * (r * r + (r + depth) * (r + depth))).sqrt() + depth;
        travel_move(ctx, d.max(min_hop), &mut work);
    }
    if let Some(&a) = work_in.infill_pieces_mm2.last() {
        // The layer ends inside its last infill piece.
        here.radius = (a / std::f64::consts::PI).sqrt();
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
    // PrusaSlicer's cooling rule times each line as length over feed rate, without acceleration.
    let retract_nominal = if p.retract_length_mm > 0.0 {
        p.retract_length_mm / p.retract_speed_mm_s + p.retract_length_mm / p.deretract_speed_mm_s
    } else {
        0.0
    };
    totals.layer_travel_s =
        work.travel_path_mm / p.travel_speed_mm_s + f64::from(work.retractions) * retract_nominal;
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

#[cfg(test)]
mod chain_tests {
    use super::super::perimeters::perimeters_and_infill;
    use super::super::testutil::profile;
    use super::*;

    #[test]
    fn a_ring_has_two_chains_of_loops() {
        let p = profile();
        let ctx = Ctx {
            p: &p,
            cornering: p.cornering,
        };
        let ring = geom::region_from_loops(&[
            vec![[0.0, 0.0], [40.0, 0.0], [40.0, 40.0], [0.0, 40.0]],
            vec![[5.0, 5.0], [5.0, 35.0], [35.0, 35.0], [35.0, 5.0]],
        ]);
        let (perimeters, _) = perimeters_and_infill(&ctx, 1, &ring);
        let g = LayerGeometry {
            perimeters,
            ..LayerGeometry::default()
        };
        let chains = chains_of(&g, 0.4);
        assert_eq!(chains.len(), 2);
        assert!(chains.iter().all(|c| c.loops == p.perimeters));
    }

    #[test]
    fn a_lifted_retraction_adds_the_z_moves() {
        let mut p = profile();
        let ctx = Ctx {
            p: &p,
            cornering: p.cornering,
        };
        let mut flat = LayerWork::default();
        travel_move(&ctx, 10.0, &mut flat);
        p.retract_lift_mm = 0.4;
        p.z_acceleration_mm_s2 = 200.0;
        let ctx = Ctx {
            p: &p,
            cornering: p.cornering,
        };
        let mut lifted = LayerWork::default();
        travel_move(&ctx, 10.0, &mut lifted);
        // Up and down, each a triangle profile at the Z acceleration.
        let z = 2.0 * 2.0 * (0.4f64 / 200.0).sqrt();
        assert!((lifted.travel_time_s - flat.travel_time_s - z).abs() < 1e-9);
    }
}
