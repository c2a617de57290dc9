//! Sentences for the customer: why this printer, why that one ranked lower. Written only for
//! the few options returned, never per printer in the hot path.

use std::fmt::Write as _;

use crate::model::PrinterState;
use crate::route::{RouteOption, Scored};
use crate::score::{Best, Metrics, ScoreBreakdown};

/// What the other candidates of the same decision look like.
pub(crate) struct Field {
    pub capable: usize,
    pub best: Best,
    pub quantity: u32,
}

/// Figures compared between two ranked printers.
struct Side<'s> {
    printer_id: &'s str,
    score: f64,
    contributions: &'s ScoreBreakdown,
    metrics: Metrics,
}

impl<'s> Side<'s> {
    fn of(c: &'s Scored<'_>) -> Self {
        Side {
            printer_id: &c.printer.id,
            score: c.score,
            contributions: &c.contributions,
            metrics: c.metrics,
        }
    }

    fn of_option(o: &'s RouteOption) -> Self {
        Side {
            printer_id: &o.printer_id,
            score: o.score,
            contributions: &o.contributions,
            metrics: Metrics {
                distance_km: o.distance_km,
                eta_s: o.eta_s,
                price: o.total_price,
                active_jobs: o.jobs_ahead,
            },
        }
    }
}

/// "45 min", "2 h 5 min", "3 d 4 h".
pub fn duration(seconds: f64) -> String {
    let minutes = (seconds.max(0.0) / 60.0).round() as u64;
    match minutes {
        0 => "under 1 min".to_string(),
        m if m < 60 => format!("{m} min"),
        m if m < 48 * 60 => match m % 60 {
            0 => format!("{} h", m / 60),
            r => format!("{} h {r} min", m / 60),
        },
        m => format!("{} d {} h", m / (24 * 60), (m / 60) % 24),
    }
}

fn jobs_ahead(n: u32) -> String {
    match n {
        0 => "no jobs ahead".to_string(),
        1 => "1 job ahead".to_string(),
        n => format!("{n} jobs ahead"),
    }
}

fn ordinal(n: usize) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// Floating figures equal up to rounding noise.
fn same(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// The single biggest reason `lower` scored below `top`, e.g. "mostly 12.3 km farther".
fn main_gap(lower: &Side<'_>, top: &Side<'_>, currency: &str) -> String {
    let (l, t) = (lower.contributions, top.contributions);
    let gaps = [
        (t.distance - l.distance, 0),
        (t.queue - l.queue, 1),
        (t.price - l.price, 2),
        (t.load - l.load, 3),
    ];
    let Some(&(gap, which)) = gaps.iter().max_by(|a, b| a.0.total_cmp(&b.0)) else {
        return String::new();
    };
    if gap <= 1e-12 {
        return "equal score; order set by a per-job tie-break".to_string();
    }
    let (lm, tm) = (&lower.metrics, &top.metrics);
    match which {
        0 => format!("mostly {:.1} km farther", lm.distance_km - tm.distance_km),
        1 => format!("mostly finishes {} later", duration(lm.eta_s - tm.eta_s)),
        2 => format!("mostly {currency} {:.2} dearer", lm.price - tm.price),
        _ => format!(
            "mostly more work in progress ({} vs {})",
            jobs_ahead(lm.active_jobs),
            jobs_ahead(tm.active_jobs)
        ),
    }
}

/// The reasons listed under one option (or a placement, with rank 1).
pub(crate) fn option_reasons(
    field: &Field,
    c: &Scored<'_>,
    rank: usize,
    top: Option<&Scored<'_>>,
) -> Vec<String> {
    let mut reasons = Vec::with_capacity(6);
    let currency = &c.printer.price.currency;
    let m = &c.metrics;
    let alone = field.capable == 1;
    match top {
        Some(t) if rank > 1 => {
            let (me, them) = (Side::of(c), Side::of(t));
            reasons.push(format!(
                "ranked {}: score {:.2} vs {:.2} for {}; {}",
                ordinal(rank),
                c.score,
                t.score,
                t.printer.id,
                main_gap(&me, &them, currency)
            ));
        }
        _ if alone => reasons.push("the only capable printer".to_string()),
        _ => reasons.push(format!(
            "best overall of {} capable printers (score {:.2})",
            field.capable, c.score
        )),
    }

    if alone || !same(m.distance_km, field.best.distance_km) {
        let mut s = format!("{:.1} km away", m.distance_km);
        if !alone {
            let _ = write!(
                s,
                " (nearest capable printer: {:.1} km)",
                field.best.distance_km
            );
        }
        reasons.push(s);
    } else {
        reasons.push(format!("nearest capable printer: {:.1} km", m.distance_km));
    }

    let all = if field.quantity > 1 {
        format!(" for all {} copies", field.quantity)
    } else {
        String::new()
    };
    let mut s = format!(
        "{} (ETA {}{all})",
        jobs_ahead(m.active_jobs),
        duration(m.eta_s)
    );
    if !alone && same(m.eta_s, field.best.eta_s) {
        s.push_str(", the soonest");
    }
    reasons.push(s);
    if c.printer.state == PrinterState::Paused {
        reasons.push("the printer is paused; the job waits in its queue".to_string());
    }

    let price = format!("{currency} {:.2}", m.price);
    let copies = if field.quantity > 1 {
        format!(" for {} copies", field.quantity)
    } else {
        String::new()
    };
    if alone {
        reasons.push(format!("{price}{copies}"));
    } else if same(m.price, field.best.price) {
        reasons.push(format!(
            "cheapest of {} candidates: {price}{copies}",
            field.capable
        ));
    } else {
        reasons.push(format!(
            "{price}{copies} (cheapest: {currency} {:.2})",
            field.best.price
        ));
    }

    common_reasons(c, &mut reasons);
    reasons
}

/// Reasons for a placement on the printer the customer chose.
pub(crate) fn chosen_reasons(c: &Scored<'_>) -> Vec<String> {
    let m = &c.metrics;
    let mut reasons = vec![
        "chosen by you".to_string(),
        format!("{:.1} km away", m.distance_km),
        format!("{} (ETA {})", jobs_ahead(m.active_jobs), duration(m.eta_s)),
    ];
    common_reasons(c, &mut reasons);
    reasons
}

fn common_reasons(c: &Scored<'_>, reasons: &mut Vec<String>) {
    if !c.orientation.is_as_uploaded() {
        reasons.push(format!("fits {}", c.orientation.describe()));
    }
    if c.profile.is_none() {
        reasons.push(
            "price and ETA from a rough estimate: none of its profiles has one yet".to_string(),
        );
    }
}

/// Why a capable printer outside the options ranked below the first option.
pub(crate) fn lower_than(
    score: f64,
    contributions: &ScoreBreakdown,
    metrics: &Metrics,
    currency: &str,
    top: &RouteOption,
) -> String {
    let me = Side {
        printer_id: "",
        score,
        contributions,
        metrics: *metrics,
    };
    let them = Side::of_option(top);
    format!(
        "scored {:.2} vs {:.2} for {}; {}",
        me.score,
        them.score,
        them.printer_id,
        main_gap(&me, &them, currency)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(20.0), "under 1 min");
        assert_eq!(duration(45.0 * 60.0), "45 min");
        assert_eq!(duration(3600.0), "1 h");
        assert_eq!(duration(2.0 * 3600.0 + 5.0 * 60.0), "2 h 5 min");
        assert_eq!(duration(76.0 * 3600.0), "3 d 4 h");
    }

    #[test]
    fn ordinals() {
        let got: Vec<String> = [1, 2, 3, 4, 11, 12, 13, 21, 22, 101].map(ordinal).to_vec();
        assert_eq!(
            got,
            [
                "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st"
            ]
        );
    }
}
