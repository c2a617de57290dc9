//! [`Scheduler::assign`](super::Scheduler::assign) without a chosen printer: each copy goes to
//! the printer ranked first at that moment, exactly as
//! [`Scheduler::assign_reference`](super::Scheduler::assign_reference) decides by measuring and
//! scoring every capable printer for every copy, but with the trigonometry and most of the
//! scoring left out. Why the outcome is the same:
//!
//! - The filters are the same, in the same order; only the distance limit is decided on chord
//!   bounds ([`run_filters_bounded`]), with the haversine computed when the limit falls between
//!   them. Figures that reach a placement are always the haversine's.
//! - A score is non-increasing in the distance, also as rounded (same code, monotonic
//!   operations): scored with a lower bound on its distance, a printer gets an upper bound on
//!   its score. Printers whose bound cannot reach the leaders' exact scores are never measured.
//! - The best figures the relative scores compare with are the reference's: the nearest
//!   printer is found from the bounds and then measured; the soonest ETA and lowest price are
//!   folded over the same figures.
//! - Between copies only the last winner's figures change, and the nearest distance and lowest
//!   price never do (a copy adds queue, not price). While the soonest ETA holds, no other
//!   printer's score changes, so the winners of the remaining `R` copies are among the `R`
//!   printers ranked first now: one that has not won yet keeps its score, so it can only win
//!   once every printer ranked above it has won. Only that shortlist is ranked per copy. When
//!   the winner was the only soonest printer, every queue score changes and the shortlist is
//!   rebuilt.

use std::cmp::Ordering;

use super::{
    Assignment, Candidate, FALLBACK_PROFILE, metrics_for, tie_hash, tie_seed, winner_placement,
};
use crate::error::SchedulerError;
use crate::filter::{BoundedDistance, JobContext, PassedBounded, gate_passes, run_filters_bounded};
use crate::fleet::Cost;
use crate::geo::{distance_lower_km, distance_upper_km};
use crate::score::{Best, Metrics, Scorer, Weights};

/// Shortlists up to this long are picked with a sorted buffer; longer ones by selection.
const SMALL_SHORTLIST: usize = 64;

/// A capable printer while copies are placed: only what ranking reads, as one is written per
/// capable printer. What a placement needs besides is recomputed for the winners.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// The squared chord to the customer until [`bound_distances`]; then a lower bound on the
    /// distance, or the distance itself once `measured`.
    distance_km: f64,
    /// With this request's copies placed here so far, as in [`metrics_for`].
    eta_s: f64,
    price: f64,
    /// Position in the fleet.
    index: u32,
    active_jobs: u32,
    /// Whether `distance_km` is the haversine figure.
    measured: bool,
}

impl Entry {
    fn new(index: usize, cost: &Cost, passed: &PassedBounded) -> Self {
        let (distance_km, measured) = match passed.distance {
            BoundedDistance::Km(km) => (km, true),
            // Bounded later, in a loop of its own that pipelines well.
            BoundedDistance::ChordSq(c) => (c, false),
        };
        let m = metrics_for(cost, &passed.estimate.figures, distance_km, 1, 0.0, 0);
        Entry {
            distance_km,
            eta_s: m.eta_s,
            price: m.price,
            // Fleet sizes are far below this bound.
            index: index as u32,
            active_jobs: m.active_jobs,
            measured,
        }
    }

    fn metrics(&self) -> Metrics {
        Metrics {
            distance_km: self.distance_km,
            eta_s: self.eta_s,
            price: self.price,
            active_jobs: self.active_jobs,
        }
    }

    /// Replaces the lower bound with the figure `DistanceFilter` computes.
    fn measure(&mut self, job: &JobContext<'_, '_>) {
        if !self.measured {
            let p = job.at(self.index as usize);
            self.distance_km =
                job.origin
                    .distance_to(p.gate.lat_deg, p.slot.lon_deg, p.slot.cos_lat);
            self.measured = true;
        }
    }
}

/// A printer that won at least one copy: what its placements need, and this request's work
/// on it so far.
struct Winner {
    entry: usize,
    passed: PassedBounded,
    placed_s: f64,
    placed_jobs: u32,
}

pub(super) fn assign_best(
    job: &JobContext<'_, '_>,
    weights: &Weights,
) -> Result<Assignment, SchedulerError> {
    let fleet = job.fleet;
    let (costs, units) = (fleet.costs(), fleet.units());
    // The checks on the gate alone first, without branches (their outcome is as good as
    // random per printer): the positions that pass are written unconditionally and kept by
    // advancing the count.
    let mut open = vec![0_u32; fleet.len()];
    let mut n_open = 0;
    for (i, gate) in fleet.gates().iter().enumerate() {
        if let Some(slot) = open.get_mut(n_open) {
            *slot = i as u32;
        }
        n_open += usize::from(gate_passes(job, gate));
    }
    // Most printers past the gate are capable: one allocation instead of regrowing.
    let mut entries = Vec::with_capacity(n_open);
    for &i in &open[..n_open] {
        let i = i as usize;
        if let Some(passed) = run_filters_bounded(job, job.at(i), &units[i]) {
            entries.push(Entry::new(i, &costs[i], &passed));
        }
    }
    let rejected = fleet.len() - entries.len();
    if entries.is_empty() {
        return Err(SchedulerError::NoCapablePrinter { rejected });
    }
    // Folded like `Best::include` over the same figures, so equal to the reference's.
    let mut best = Best {
        distance_km: bound_distances(job, &mut entries),
        ..Best::NONE
    };
    for e in &entries {
        best.eta_s = best.eta_s.min(e.eta_s);
        best.price = best.price.min(e.price);
    }

    let scorer = Scorer::new(weights);
    let seed = tie_seed(&job.request.job_key);
    let quantity = job.request.quantity;
    let mut placements = Vec::with_capacity(quantity as usize);
    let mut keys = vec![0.0; entries.len()];
    let mut shortlist = Vec::new();
    let mut winners: Vec<Winner> = Vec::new();
    let mut stale = true;
    for copy in 0..quantity {
        if stale {
            let copies = (quantity - copy) as usize;
            shortlist = short_list(job, &scorer, &best, &mut entries, &mut keys, copies);
            stale = false;
        }
        let Some(w) = first(&entries, &keys, &shortlist, costs, seed) else {
            break;
        };
        let at = match winners.iter().position(|x| x.entry == w) {
            Some(at) => at,
            None => {
                // The filters again, for what they found on the way (the estimator's answers
                // are memoised, so it is not asked again).
                let i = entries[w].index as usize;
                let Some(passed) = run_filters_bounded(job, job.at(i), &units[i]) else {
                    break;
                };
                winners.push(Winner {
                    entry: w,
                    passed,
                    placed_s: 0.0,
                    placed_jobs: 0,
                });
                winners.len() - 1
            }
        };
        let winner = &mut winners[at];
        let e = &entries[w];
        let c = Candidate {
            index: e.index,
            orientation: winner.passed.orientation as u16,
            profile: winner
                .passed
                .estimate
                .profile_index
                .map_or(FALLBACK_PROFILE, |i| i as u16),
            metrics: e.metrics(),
            figures: winner.passed.estimate.figures,
            tie: 0,
            score: keys[w],
        };
        let Some(p) = winner_placement(&c, job, weights, best, entries.len(), copy) else {
            break;
        };
        placements.push(p);

        // The copy joins the winner's queue, as in the reference before the next copy.
        let figures = &winner.passed.estimate.figures;
        winner.placed_s += figures.print_time_s;
        winner.placed_jobs += 1;
        let e = &mut entries[w];
        let cost = &costs[e.index as usize];
        let m = metrics_for(
            cost,
            figures,
            e.distance_km,
            1,
            winner.placed_s,
            winner.placed_jobs,
        );
        let before_s = e.eta_s;
        (e.eta_s, e.price, e.active_jobs) = (m.eta_s, m.price, m.active_jobs);
        if before_s == best.eta_s && e.eta_s != before_s {
            let soonest = entries.iter().fold(f64::INFINITY, |m, e| m.min(e.eta_s));
            if soonest != best.eta_s {
                best.eta_s = soonest;
                stale = true;
            }
        }
        if !stale {
            keys[w] = scorer.total(&entries[w].metrics(), &best);
        }
    }
    Ok(Assignment {
        placements,
        rejected,
    })
}

/// Puts the lower bound in place of each distance not measured yet, and returns the nearest
/// distance, measured. Only entries whose lower bound is within the upper bound of the one
/// with the shortest chord can be the nearest (both bounds grow with the chord).
fn bound_distances(job: &JobContext<'_, '_>, entries: &mut [Entry]) -> f64 {
    let mut reach = f64::INFINITY;
    let mut shortest_chord_sq = f64::INFINITY;
    for e in entries.iter_mut() {
        if e.measured {
            reach = reach.min(e.distance_km);
        } else {
            shortest_chord_sq = shortest_chord_sq.min(e.distance_km);
            e.distance_km = distance_lower_km(e.distance_km);
        }
    }
    reach = reach.min(distance_upper_km(shortest_chord_sq));
    let mut nearest = f64::INFINITY;
    for e in entries.iter_mut() {
        if e.distance_km <= reach {
            e.measure(job);
            nearest = nearest.min(e.distance_km);
        }
    }
    nearest
}

/// Positions of the entries that can win one of the next `copies` copies while `best` holds,
/// measured and keyed by their exact scores. Any `copies` measured entries score at least
/// their lowest score, so the `copies` best do too, and so do their upper bounds: entries whose
/// bound is below it cannot be among them.
fn short_list(
    job: &JobContext<'_, '_>,
    scorer: &Scorer,
    best: &Best,
    entries: &mut [Entry],
    keys: &mut [f64],
    copies: usize,
) -> Vec<usize> {
    for (e, key) in entries.iter().zip(keys.iter_mut()) {
        *key = scorer.total(&e.metrics(), best);
    }
    let cut = highest_key(keys, copies);
    let mut threshold = f64::INFINITY;
    for (e, key) in entries.iter_mut().zip(keys.iter_mut()) {
        if *key >= cut {
            e.measure(job);
            *key = scorer.total(&e.metrics(), best);
            threshold = threshold.min(*key);
        }
    }
    let mut shortlist = Vec::new();
    for (i, (e, key)) in entries.iter_mut().zip(keys.iter_mut()).enumerate() {
        if *key >= threshold {
            if !e.measured {
                e.measure(job);
                *key = scorer.total(&e.metrics(), best);
            }
            if *key >= threshold {
                shortlist.push(i);
            }
        }
    }
    shortlist
}

/// The `k`-th highest key (the lowest if there are fewer): at least `k` keys are at or above
/// it.
fn highest_key(keys: &[f64], k: usize) -> f64 {
    let k = k.clamp(1, keys.len());
    if k <= SMALL_SHORTLIST {
        // Descending; most keys fail the first comparison.
        let mut top = [f64::NEG_INFINITY; SMALL_SHORTLIST];
        let top = &mut top[..k];
        for &key in keys {
            if key > top[k - 1] {
                let at = top.partition_point(|t| *t >= key);
                top.copy_within(at..k - 1, at + 1);
                top[at] = key;
            }
        }
        top[k - 1]
    } else {
        let mut keys = keys.to_vec();
        let (_, kth, _) = keys.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
        *kth
    }
}

/// The shortlisted entry ranked first, ordered like `Candidate::rank_cmp`: score, then the tie
/// hash (computed only for equal scores), then fleet order.
fn first(
    entries: &[Entry],
    keys: &[f64],
    shortlist: &[usize],
    costs: &[Cost],
    seed: u64,
) -> Option<usize> {
    let tie = |i: usize| tie_hash(seed, costs[entries[i].index as usize].id_hash);
    let mut winner: Option<usize> = None;
    for &i in shortlist {
        let better = match winner {
            None => true,
            Some(w) => {
                keys[w]
                    .total_cmp(&keys[i])
                    .then_with(|| tie(i).cmp(&tie(w)))
                    .then(entries[i].index.cmp(&entries[w].index))
                    == Ordering::Less
            }
        };
        if better {
            winner = Some(i);
        }
    }
    winner
}
