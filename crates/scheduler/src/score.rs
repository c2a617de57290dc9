//! Score plugins: how good is a capable printer for this job? Each score maps one figure to
//! 0..1 (1 = best) and the total is their weighted mean, so per-score contributions add up to
//! the total and can be shown.
//!
//! Distance, ETA and price are scored relative to the best candidate of the same decision,
//! as `(best + s) / (value + s)`: the best gets 1, twice as far (or late, or dear) gets about
//! half, and the smoothing `s` keeps 0.2 km vs 0.4 km from looking like a 2x difference.

use serde::{Deserialize, Serialize};

use crate::error::SchedulerError;

/// Smoothing for the distance score, km: about a city district, so 1 km vs 3 km (both
/// "local") differ far less than 5 km vs 50 km.
pub const DISTANCE_SMOOTHING_KM: f64 = 5.0;
/// Smoothing for the queue-ETA score, s.
pub const ETA_SMOOTHING_S: f64 = 600.0;
/// Smoothing for the price score, currency units.
pub const PRICE_SMOOTHING: f64 = 1.0;

/// Relative importance of each score. Any non-negative finite values with at least one above
/// zero; they are normalised by their sum. Deserialisable from the router's config, missing
/// fields take the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Weights {
    pub distance: f64,
    pub queue: f64,
    pub price: f64,
    pub load: f64,
}

impl Default for Weights {
    /// Local first (the point of fabrouter), then how soon, then price; load spreading mostly
    /// separates near-equals.
    fn default() -> Self {
        Self {
            distance: 0.4,
            queue: 0.3,
            price: 0.2,
            load: 0.1,
        }
    }
}

impl Weights {
    pub fn validate(&self) -> Result<(), SchedulerError> {
        for (name, value) in self.named() {
            if !(value.is_finite() && value >= 0.0) {
                return Err(SchedulerError::Weight { name, value });
            }
        }
        if self.sum() <= 0.0 {
            return Err(SchedulerError::AllWeightsZero);
        }
        Ok(())
    }

    fn named(&self) -> [(&'static str, f64); 4] {
        [
            ("distance", self.distance),
            ("queue", self.queue),
            ("price", self.price),
            ("load", self.load),
        ]
    }

    fn sum(&self) -> f64 {
        self.distance + self.queue + self.price + self.load
    }
}

/// The figures a capable printer is scored on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Metrics {
    pub distance_km: f64,
    /// Time until this job would be finished there: queued work plus this job, s.
    pub eta_s: f64,
    pub price: f64,
    pub active_jobs: u32,
}

/// The best figure of each kind among the candidates of one decision.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Best {
    pub distance_km: f64,
    pub eta_s: f64,
    pub price: f64,
}

impl Best {
    /// Identity for [`Best::include`].
    pub const NONE: Best = Best {
        distance_km: f64::INFINITY,
        eta_s: f64::INFINITY,
        price: f64::INFINITY,
    };

    pub fn include(&mut self, m: &Metrics) {
        self.distance_km = self.distance_km.min(m.distance_km);
        self.eta_s = self.eta_s.min(m.eta_s);
        self.price = self.price.min(m.price);
    }
}

/// One score plugin: a figure mapped to 0..1, 1 being best.
pub trait Score {
    const NAME: &'static str;
    fn score(&self, m: &Metrics, best: &Best) -> f64;
}

fn relative(best: f64, value: f64, smoothing: f64) -> f64 {
    let s = (best + smoothing) / (value + smoothing);
    // NaN (a garbage printer declaration) scores 0 rather than poisoning the ranking.
    if s.is_finite() {
        s.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// Nearer is better (great-circle distance to the customer).
#[derive(Debug, Clone, Copy, Default)]
pub struct DistanceScore;

impl Score for DistanceScore {
    const NAME: &'static str = "distance";
    fn score(&self, m: &Metrics, best: &Best) -> f64 {
        relative(best.distance_km, m.distance_km, DISTANCE_SMOOTHING_KM)
    }
}

/// Sooner finished is better: queued work plus this job.
#[derive(Debug, Clone, Copy, Default)]
pub struct QueueScore;

impl Score for QueueScore {
    const NAME: &'static str = "queue";
    fn score(&self, m: &Metrics, best: &Best) -> f64 {
        relative(best.eta_s, m.eta_s, ETA_SMOOTHING_S)
    }
}

/// Cheaper is better.
#[derive(Debug, Clone, Copy, Default)]
pub struct PriceScore;

impl Score for PriceScore {
    const NAME: &'static str = "price";
    fn score(&self, m: &Metrics, best: &Best) -> f64 {
        relative(best.price, m.price, PRICE_SMOOTHING)
    }
}

/// Fewer active jobs is better, absolutely: `1 / (1 + active_jobs)`. Spreads work even when
/// queued time is equal (e.g. many short jobs vs one long one).
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadScore;

impl Score for LoadScore {
    const NAME: &'static str = "load";
    fn score(&self, m: &Metrics, _: &Best) -> f64 {
        1.0 / (1.0 + f64::from(m.active_jobs))
    }
}

/// Each score's weighted share of the total; they add up to [`ScoreBreakdown::total`].
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct ScoreBreakdown {
    pub distance: f64,
    pub queue: f64,
    pub price: f64,
    pub load: f64,
}

impl ScoreBreakdown {
    pub fn total(&self) -> f64 {
        self.distance + self.queue + self.price + self.load
    }
}

/// Weighted mean of the four scores, 0..1. `weights` must be valid.
pub(crate) fn score_all(weights: &Weights, m: &Metrics, best: &Best) -> ScoreBreakdown {
    Scorer::new(weights).breakdown(m, best)
}

/// [`score_all`] with the normalised weights computed once, for loops over many candidates.
/// The one implementation of the sum: the pruning in `Scheduler::assign` relies on its
/// figures being bit-identical to `score_all`'s and non-increasing in the distance.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scorer {
    /// Each weight times `1 / sum of weights` (the same product, so the same rounding, as
    /// `weight * norm * score` evaluated left to right).
    distance: f64,
    queue: f64,
    price: f64,
    load: f64,
}

impl Scorer {
    pub(crate) fn new(weights: &Weights) -> Self {
        let norm = 1.0 / weights.sum();
        Scorer {
            distance: weights.distance * norm,
            queue: weights.queue * norm,
            price: weights.price * norm,
            load: weights.load * norm,
        }
    }

    #[inline]
    pub(crate) fn breakdown(&self, m: &Metrics, best: &Best) -> ScoreBreakdown {
        ScoreBreakdown {
            distance: self.distance * DistanceScore.score(m, best),
            queue: self.queue * QueueScore.score(m, best),
            price: self.price * PriceScore.score(m, best),
            load: self.load * LoadScore.score(m, best),
        }
    }

    /// `breakdown(m, best).total()`.
    #[inline]
    pub(crate) fn total(&self, m: &Metrics, best: &Best) -> f64 {
        self.breakdown(m, best).total()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(distance_km: f64, eta_s: f64, price: f64, active_jobs: u32) -> Metrics {
        Metrics {
            distance_km,
            eta_s,
            price,
            active_jobs,
        }
    }

    fn best(ms: &[Metrics]) -> Best {
        let mut b = Best::NONE;
        ms.iter().for_each(|x| b.include(x));
        b
    }

    #[test]
    fn best_candidate_scores_one_and_worse_scores_less() {
        let a = m(2.0, 3600.0, 10.0, 0);
        let b = m(5.0, 7200.0, 20.0, 3);
        let bst = best(&[a, b]);
        assert_eq!(DistanceScore.score(&a, &bst), 1.0);
        assert!((DistanceScore.score(&b, &bst) - 7.0 / 10.0).abs() < 1e-12);
        assert_eq!(QueueScore.score(&a, &bst), 1.0);
        assert!((QueueScore.score(&b, &bst) - 4200.0 / 7800.0).abs() < 1e-12);
        assert!((PriceScore.score(&b, &bst) - 11.0 / 21.0).abs() < 1e-12);
        assert_eq!(LoadScore.score(&b, &bst), 0.25);
    }

    #[test]
    fn breakdown_sums_to_weighted_mean() {
        let a = m(2.0, 3600.0, 10.0, 1);
        let b = m(1.0, 3600.0, 12.0, 0);
        let bst = best(&[a, b]);
        let w = Weights {
            distance: 2.0,
            queue: 1.0,
            price: 1.0,
            load: 0.0,
        };
        let s = score_all(&w, &a, &bst);
        let want = (2.0 * (6.0 / 7.0) + 1.0 + 1.0) / 4.0;
        assert!((s.total() - want).abs() < 1e-12, "{s:?}");
        assert_eq!(s.load, 0.0);
    }

    #[test]
    fn garbage_figures_score_zero_not_nan() {
        let a = m(f64::NAN, 1.0, 1.0, 0);
        let bst = best(&[m(1.0, 1.0, 1.0, 0)]);
        assert_eq!(DistanceScore.score(&a, &bst), 0.0);
    }

    #[test]
    fn weights_deserialise_with_defaults_and_validate() {
        let w: Weights = toml::from_str("distance = 1.0\nprice = 3.0").unwrap();
        assert_eq!(w.distance, 1.0);
        assert_eq!(w.price, 3.0);
        assert_eq!(w.queue, Weights::default().queue);
        assert!(w.validate().is_ok());
        assert!(toml::from_str::<Weights>("speed = 1.0").is_err());
        let neg = Weights {
            load: -1.0,
            ..Weights::default()
        };
        assert!(matches!(
            neg.validate(),
            Err(SchedulerError::Weight { name: "load", .. })
        ));
        let zero = Weights {
            distance: 0.0,
            queue: 0.0,
            price: 0.0,
            load: 0.0,
        };
        assert_eq!(zero.validate(), Err(SchedulerError::AllWeightsZero));
    }
}
