//! The routing pipeline: run every printer through the filters, score the capable ones, rank
//! them, and explain the outcome. [`Scheduler::quote`] shows the top options without committing;
//! [`Scheduler::assign`] places each copy of a submitted job.
//!
//! Hot-path rules (10,000 printers in well under 1 ms): filters read only the fleet's compact
//! slots and allocate nothing; a rejected printer costs one byte (its code; the figures and
//! sentence are rebuilt when read); a capable one a 72-byte `Candidate`; sentences are
//! written only for the few options returned.

use std::cmp::Ordering;
use std::fmt;
use std::hash::Hasher;

use fnv::FnvHasher;

use crate::error::SchedulerError;
use crate::explain;
use crate::filter::{
    JobContext, Passed, PrinterRef, RejectCode, Rejection, rejection_from_code, run_filters,
};
use crate::fleet::{Cost, Fleet};
use crate::geo::Origin;
use crate::model::{EstimateFigures, Estimator, JobRequest, Printer};
use crate::orientation::{FitCandidates, Orientation};
use crate::score::{Best, Metrics, ScoreBreakdown, Weights, score_all};

mod ranking;

/// Routes jobs with one set of weights (validated once, at construction).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Scheduler {
    weights: Weights,
}

/// A printer that was filtered out, and why.
#[derive(Debug, Clone, Copy)]
pub struct RejectedPrinter<'a> {
    pub printer: &'a Printer,
    pub rejection: Rejection<'a>,
}

impl<'a> RejectedPrinter<'a> {
    pub fn printer_id(&self) -> &'a str {
        &self.printer.id
    }

    pub fn code(&self) -> RejectCode {
        self.rejection.code()
    }

    /// Customer-facing sentence (formatted on demand).
    pub fn message(&self) -> String {
        self.rejection.message()
    }
}

/// One ranked choice offered to the customer.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteOption {
    /// 1 = best.
    pub rank: usize,
    pub printer_id: String,
    pub node_id: String,
    pub makerspace: String,
    pub distance_km: f64,
    /// Price of one copy (one job), in `currency`.
    pub unit_price: f64,
    /// Price of all copies if this printer makes them all.
    pub total_price: f64,
    pub currency: String,
    /// Seconds until the last copy would be finished if this printer makes them all: work
    /// already queued there plus `quantity` times this job.
    pub eta_s: f64,
    /// Jobs queued or printing there before this one.
    pub jobs_ahead: u32,
    /// Time and mass of one copy with the profile used.
    pub estimate: EstimateFigures,
    /// Profile the estimate is for; `None` when the request's rough fallback was used.
    pub profile: Option<String>,
    /// How the part is placed to fit.
    pub orientation: Orientation,
    /// Weighted total, 0..1.
    pub score: f64,
    pub contributions: ScoreBreakdown,
    /// Why this printer, in sentences for the customer.
    pub reasons: Vec<String>,
}

/// A capable printer that did not make the top options, with what it scored.
#[derive(Debug, Clone, Copy)]
pub struct RankedLower<'a> {
    pub printer: &'a Printer,
    pub metrics: Metrics,
    pub score: f64,
    pub contributions: ScoreBreakdown,
}

impl<'a> RankedLower<'a> {
    pub fn printer_id(&self) -> &'a str {
        &self.printer.id
    }

    /// Why it ranked below `top` (the first option), e.g. "scored 0.52 vs 0.81 for p-7;
    /// mostly 12.3 km farther".
    pub fn reason_vs(&self, top: &RouteOption) -> String {
        explain::lower_than(
            self.score,
            &self.contributions,
            &self.metrics,
            &self.printer.price.currency,
            top,
        )
    }
}

/// The outcome of routing one request: ranked options, and the reason for every other
/// printer (read through [`Decision::rejections`] and [`Decision::ranked_lower`], which build
/// them on demand). Borrows the fleet, so the registry cannot change underneath it.
pub struct Decision<'a> {
    /// Best first, at most `top_k`.
    pub options: Vec<RouteOption>,
    fleet: &'a Fleet,
    request: &'a JobRequest,
    origin: Origin,
    /// Per fleet position: why it was filtered out, `None` if it was capable.
    codes: Vec<Option<RejectCode>>,
    rejected: usize,
    /// Capable printers beyond the options, unordered.
    lower: Vec<Candidate>,
    best: Best,
    weights: Weights,
}

impl fmt::Debug for Decision<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decision")
            .field("options", &self.options)
            .field("ranked_lower", &self.lower.len())
            .field("rejected", &self.rejected)
            .finish_non_exhaustive()
    }
}

impl<'a> Decision<'a> {
    /// Printers that passed every filter.
    pub fn capable(&self) -> usize {
        self.options.len() + self.lower.len()
    }

    /// Printers filtered out.
    pub fn rejected(&self) -> usize {
        self.rejected
    }

    /// Every printer filtered out, in fleet order, with its reason.
    pub fn rejections(&self) -> impl Iterator<Item = RejectedPrinter<'a>> + '_ {
        let (fleet, request, origin) = (self.fleet, self.request, self.origin);
        self.codes.iter().enumerate().filter_map(move |(i, code)| {
            let code = (*code)?;
            let p = PrinterRef {
                printer: fleet.printers().get(i)?,
                gate: fleet.gates().get(i)?,
                slot: fleet.slots().get(i)?,
            };
            Some(RejectedPrinter {
                printer: p.printer,
                rejection: rejection_from_code(code, request, &origin, p),
            })
        })
    }

    /// Capable printers beyond the options, in no particular order.
    pub fn ranked_lower(&self) -> impl Iterator<Item = RankedLower<'a>> + '_ {
        let fleet = self.fleet;
        self.lower.iter().filter_map(move |c| {
            Some(RankedLower {
                printer: fleet.printers().get(c.index as usize)?,
                metrics: c.metrics,
                score: c.score,
                contributions: score_all(&self.weights, &c.metrics, &self.best),
            })
        })
    }

    /// How many printers each filter removed, most first (ties in code order): the summary to
    /// show when nothing is capable.
    pub fn rejections_by_code(&self) -> Vec<(RejectCode, usize)> {
        let mut counts: Vec<(RejectCode, usize)> = Vec::new();
        for code in self.codes.iter().flatten() {
            match counts.iter_mut().find(|(c, _)| c == code) {
                Some((_, n)) => *n += 1,
                None => counts.push((*code, 1)),
            }
        }
        counts.sort_by(|a, b| b.1.cmp(&a.1).then((a.0 as u8).cmp(&(b.0 as u8))));
        counts
    }
}

/// Where one copy of a submitted job goes.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    /// 0-based copy number within the request.
    pub copy: u32,
    pub printer_id: String,
    pub node_id: String,
    pub makerspace: String,
    pub distance_km: f64,
    pub price: f64,
    pub currency: String,
    /// Seconds until this copy is finished, counting the copies placed before it.
    pub eta_s: f64,
    pub estimate: EstimateFigures,
    pub profile: Option<String>,
    pub orientation: Orientation,
    pub reasons: Vec<String>,
}

/// The outcome of a submit: one placement per copy.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    pub placements: Vec<Placement>,
    /// Printers that could not take the job (their reasons are in a quote).
    pub rejected: usize,
}

/// `Candidate::profile` when the request's fallback estimate was used.
const FALLBACK_PROFILE: u16 = u16::MAX;

/// A printer that passed the filters, with its figures for this decision. Kept small: one is
/// written per capable printer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Candidate {
    /// Position in the fleet.
    index: u32,
    /// Position in the request's [`FitCandidates`].
    orientation: u16,
    /// Position in `Printer::profiles`, or [`FALLBACK_PROFILE`].
    profile: u16,
    metrics: Metrics,
    figures: EstimateFigures,
    /// Deterministic per (job key, printer id) tie-breaker.
    tie: u64,
    score: f64,
}

impl Candidate {
    fn new(index: usize, cost: &Cost, passed: Passed, copies: u32, seed: u64) -> Self {
        Candidate {
            // Fleet and fit-candidate sizes are far below these bounds (see MAX_* limits).
            index: index as u32,
            orientation: passed.orientation as u16,
            profile: passed
                .estimate
                .profile_index
                .map_or(FALLBACK_PROFILE, |i| i as u16),
            metrics: metrics_for(
                cost,
                &passed.estimate.figures,
                passed.distance_km,
                copies,
                0.0,
                0,
            ),
            figures: passed.estimate.figures,
            tie: tie_hash(seed, cost.id_hash),
            score: 0.0,
        }
    }

    /// Best first: higher score, then the tie hash, then fleet order (hash collisions).
    fn rank_cmp(&self, other: &Self) -> Ordering {
        other
            .score
            .total_cmp(&self.score)
            .then(self.tie.cmp(&other.tie))
            .then(self.index.cmp(&other.index))
    }
}

/// A candidate with everything the explanations need, built only for the few shown.
pub(crate) struct Scored<'a> {
    pub printer: &'a Printer,
    pub metrics: Metrics,
    pub orientation: Orientation,
    /// `None`: the request's rough fallback estimate was used.
    pub profile: Option<&'a str>,
    pub figures: EstimateFigures,
    pub score: f64,
    pub contributions: ScoreBreakdown,
}

impl<'a> Scored<'a> {
    fn new(
        c: &Candidate,
        fleet: &'a Fleet,
        fits: &FitCandidates,
        weights: &Weights,
        best: &Best,
    ) -> Option<Self> {
        let printer = fleet.printers().get(c.index as usize)?;
        let profile = match c.profile {
            FALLBACK_PROFILE => None,
            i => Some(printer.profiles.get(usize::from(i))?.as_str()),
        };
        Some(Scored {
            printer,
            metrics: c.metrics,
            orientation: *fits.get(usize::from(c.orientation))?,
            profile,
            figures: c.figures,
            score: c.score,
            contributions: score_all(weights, &c.metrics, best),
        })
    }
}

/// Per-request tie-break seed.
fn tie_seed(job_key: &str) -> u64 {
    let mut h = FnvHasher::default();
    h.write(job_key.as_bytes());
    h.finish()
}

/// The printer id's hash mixed with the job's through a murmur3 finaliser, so ids that differ
/// only in their last character ("p-1", "p-2") do not sort in fleet order and each job key
/// orders equal printers differently.
fn tie_hash(seed: u64, id_hash: u64) -> u64 {
    let mut x = seed ^ id_hash.rotate_left(29);
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// Figures of one printer for `copies` more copies on top of `extra_*` already placed by this
/// request.
fn metrics_for(
    cost: &Cost,
    figures: &EstimateFigures,
    distance_km: f64,
    copies: u32,
    extra_work_s: f64,
    extra_jobs: u32,
) -> Metrics {
    Metrics {
        distance_km,
        eta_s: cost.queued_work_s + extra_work_s + f64::from(copies) * figures.print_time_s,
        price: f64::from(copies) * unit_price(cost, figures),
        active_jobs: cost.active_jobs.saturating_add(extra_jobs),
    }
}

/// [`crate::PriceModel::price`] from the compact copy of the price model.
fn unit_price(cost: &Cost, figures: &EstimateFigures) -> f64 {
    cost.setup_fee
        + figures.print_time_s / 3600.0 * cost.per_hour
        + figures.filament_g * cost.per_gram
}

impl Scheduler {
    pub fn new(weights: Weights) -> Result<Self, SchedulerError> {
        weights.validate()?;
        Ok(Self { weights })
    }

    pub fn weights(&self) -> &Weights {
        &self.weights
    }

    /// Ranks every capable printer of `fleet` for `request` and returns the best `top_k` as
    /// options; every other printer's reason is available from the decision. Commits nothing.
    /// No capable printer is not an error: `options` is empty and the rejections say why.
    pub fn quote<'a, E: Estimator>(
        &self,
        request: &'a JobRequest,
        fleet: &'a Fleet,
        estimator: &E,
        top_k: usize,
    ) -> Result<Decision<'a>, SchedulerError> {
        let job = JobContext::new(request, fleet, estimator)?;
        let mut codes = Vec::with_capacity(fleet.len());
        let mut candidates = Vec::new();
        let mut rejected = 0;
        let mut best = Best::NONE;
        let seed = tie_seed(&request.job_key);
        for (i, cost) in fleet.costs().iter().enumerate() {
            match run_filters(&job, job.at(i)) {
                Ok(passed) => {
                    let c = Candidate::new(i, cost, passed, request.quantity, seed);
                    best.include(&c.metrics);
                    candidates.push(c);
                    codes.push(None);
                }
                Err(rejection) => {
                    rejected += 1;
                    codes.push(Some(rejection.code()));
                }
            }
        }
        for c in &mut candidates {
            c.score = score_all(&self.weights, &c.metrics, &best).total();
        }

        // Partial selection: only the top_k are sorted.
        let top_k = top_k.min(candidates.len());
        if top_k > 0 && top_k < candidates.len() {
            candidates.select_nth_unstable_by(top_k - 1, Candidate::rank_cmp);
        }
        candidates[..top_k].sort_unstable_by(Candidate::rank_cmp);

        let field = explain::Field {
            capable: candidates.len(),
            best,
            quantity: request.quantity,
        };
        let shown: Vec<Scored<'a>> = candidates[..top_k]
            .iter()
            .filter_map(|c| Scored::new(c, fleet, &job.fits, &self.weights, &best))
            .collect();
        let options = shown
            .iter()
            .enumerate()
            .map(|(rank, s)| {
                let reasons = explain::option_reasons(&field, s, rank + 1, shown.first());
                to_option(s, rank + 1, request.quantity, reasons)
            })
            .collect();
        let lower = candidates.split_off(top_k);
        Ok(Decision {
            options,
            fleet,
            request,
            origin: job.origin,
            codes,
            rejected,
            lower,
            best,
            weights: self.weights,
        })
    }

    /// Places every copy of a submitted job. With `chosen` (a printer id from a quote) all
    /// copies go to that printer, which must still pass every filter. Without, each copy goes
    /// to the best printer at that moment, after the copies already placed have been added to
    /// their printers' queues, so a large order spreads out once the first printer's queue
    /// grows. The fleet itself is not changed: the caller records the jobs (and
    /// [`Fleet::set_queue`]) once they are stored.
    pub fn assign<E: Estimator>(
        &self,
        request: &JobRequest,
        fleet: &Fleet,
        estimator: &E,
        chosen: Option<&str>,
    ) -> Result<Assignment, SchedulerError> {
        let job = JobContext::new(request, fleet, estimator)?;
        if let Some(id) = chosen {
            return assign_chosen(&job, id);
        }
        ranking::assign_best(&job, &self.weights)
    }

    /// [`Scheduler::assign`] as first written: every capable printer measured and scored for
    /// every copy. Kept as the reference the faster `assign` is tested and benchmarked
    /// against; not for production use.
    #[doc(hidden)]
    pub fn assign_reference<E: Estimator>(
        &self,
        request: &JobRequest,
        fleet: &Fleet,
        estimator: &E,
        chosen: Option<&str>,
    ) -> Result<Assignment, SchedulerError> {
        let job = JobContext::new(request, fleet, estimator)?;
        if let Some(id) = chosen {
            return assign_chosen(&job, id);
        }
        let seed = tie_seed(&request.job_key);
        let mut rejected = 0;
        let mut candidates = Vec::new();
        for (i, cost) in fleet.costs().iter().enumerate() {
            match run_filters(&job, job.at(i)) {
                Ok(passed) => candidates.push(Candidate::new(i, cost, passed, 1, seed)),
                Err(_) => rejected += 1,
            }
        }
        if candidates.is_empty() {
            return Err(SchedulerError::NoCapablePrinter { rejected });
        }
        // Work and jobs this request has placed on each candidate so far.
        let mut placed = vec![(0.0_f64, 0_u32); candidates.len()];
        let mut placements = Vec::with_capacity(request.quantity as usize);
        for copy in 0..request.quantity {
            let mut best = Best::NONE;
            for (c, &(extra_s, extra_jobs)) in candidates.iter_mut().zip(&placed) {
                let cost = &fleet.costs()[c.index as usize];
                let distance_km = c.metrics.distance_km;
                c.metrics = metrics_for(cost, &c.figures, distance_km, 1, extra_s, extra_jobs);
                best.include(&c.metrics);
            }
            let mut winner = 0;
            for i in 0..candidates.len() {
                let c = &mut candidates[i];
                c.score = score_all(&self.weights, &c.metrics, &best).total();
                if candidates[i].rank_cmp(&candidates[winner]) == Ordering::Less {
                    winner = i;
                }
            }
            let c = &candidates[winner];
            let Some(p) = winner_placement(c, &job, &self.weights, best, candidates.len(), copy)
            else {
                break;
            };
            placements.push(p);
            placed[winner].0 += c.figures.print_time_s;
            placed[winner].1 += 1;
        }
        Ok(Assignment {
            placements,
            rejected,
        })
    }
}

fn assign_chosen(job: &JobContext<'_, '_>, id: &str) -> Result<Assignment, SchedulerError> {
    let index = job
        .fleet
        .index_of(id)
        .ok_or_else(|| SchedulerError::UnknownPrinter(id.to_string()))?;
    let p = job.at(index);
    let passed = run_filters(job, p).map_err(|r| SchedulerError::ChosenPrinterRejected {
        printer_id: id.to_string(),
        code: r.code(),
        message: r.message(),
    })?;
    let cost = &job.fleet.costs()[index];
    let mut c = Candidate::new(index, cost, passed, 1, 0);
    let weights = Weights::default();
    let mut placements = Vec::with_capacity(job.request().quantity as usize);
    for copy in 0..job.request().quantity {
        let figures = &passed.estimate.figures;
        let extra_s = f64::from(copy) * figures.print_time_s;
        c.metrics = metrics_for(cost, figures, passed.distance_km, 1, extra_s, copy);
        let mut best = Best::NONE;
        best.include(&c.metrics);
        if let Some(s) = Scored::new(&c, job.fleet, &job.fits, &weights, &best) {
            placements.push(to_placement(&s, copy, explain::chosen_reasons(&s)));
        }
    }
    Ok(Assignment {
        placements,
        rejected: 0,
    })
}

fn to_option(s: &Scored<'_>, rank: usize, quantity: u32, reasons: Vec<String>) -> RouteOption {
    let unit_price = s.printer.price.price(&s.figures);
    RouteOption {
        rank,
        printer_id: s.printer.id.clone(),
        node_id: s.printer.node_id.clone(),
        makerspace: s.printer.makerspace.clone(),
        distance_km: s.metrics.distance_km,
        unit_price,
        total_price: unit_price * f64::from(quantity),
        currency: s.printer.price.currency.clone(),
        eta_s: s.metrics.eta_s,
        jobs_ahead: s.metrics.active_jobs,
        estimate: s.figures,
        profile: s.profile.map(str::to_string),
        orientation: s.orientation,
        score: s.score,
        contributions: s.contributions,
        reasons,
    }
}

/// The placement of `copy` on the winning candidate `c`, with the reasons a ranked-first
/// option gets among `capable` printers; `None` if `c` is not in the fleet.
fn winner_placement(
    c: &Candidate,
    job: &JobContext<'_, '_>,
    weights: &Weights,
    best: Best,
    capable: usize,
    copy: u32,
) -> Option<Placement> {
    let s = Scored::new(c, job.fleet, &job.fits, weights, &best)?;
    let field = explain::Field {
        capable,
        best,
        quantity: 1,
    };
    let reasons = explain::option_reasons(&field, &s, 1, Some(&s));
    Some(to_placement(&s, copy, reasons))
}

fn to_placement(s: &Scored<'_>, copy: u32, reasons: Vec<String>) -> Placement {
    Placement {
        copy,
        printer_id: s.printer.id.clone(),
        node_id: s.printer.node_id.clone(),
        makerspace: s.printer.makerspace.clone(),
        distance_km: s.metrics.distance_km,
        price: s.metrics.price,
        currency: s.printer.price.currency.clone(),
        eta_s: s.metrics.eta_s,
        estimate: s.figures,
        profile: s.profile.map(str::to_string),
        orientation: s.orientation,
        reasons,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hot_records_stay_small() {
        // One of these is written per capable / rejected printer in every decision.
        assert!(std::mem::size_of::<Candidate>() <= 72);
        assert_eq!(std::mem::size_of::<Option<RejectCode>>(), 1);
    }

    #[test]
    fn tie_hash_is_not_monotonic_in_similar_ids() {
        let hash = |id: &str| {
            let mut h = FnvHasher::default();
            h.write(id.as_bytes());
            tie_hash(tie_seed("job"), h.finish())
        };
        let ties: Vec<u64> = (0..8).map(|i| hash(&format!("p-{i}"))).collect();
        let ascending = ties.windows(2).filter(|w| w[0] < w[1]).count();
        assert!(ascending > 0 && ascending < 7, "{ties:?}");
    }
}
