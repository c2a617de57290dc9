//! Routing decision latency, the benchmark: one `quote` (filters, scores, top 5 with
//! reasons) over 10,000 registered printers, target p99 < 1 ms; 1,000 printers for reference;
//! and `assign` of 1 and of 10 copies over 10,000 printers, next to the reference
//! implementation (`assign_reference`, every printer measured and scored per copy) in the same
//! run, interleaved request by request so both see the same machine load. Prints p50/p99/max;
//! run with `cargo bench -p fabrouter-scheduler --bench routing`.
//!
//! Two clocks: wall time (what a caller sees, including time the OS gave to other processes
//! on a busy machine) and this thread's CPU time (the work itself).

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use fabrouter_scheduler::{
    EstimateFigures, Fleet, GeoPoint, JobRequest, Material, MaterialRequest, PriceModel, Printer,
    PrinterState, Scheduler, Technology,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const DECISIONS: usize = 2_000;
const WARMUP: usize = 100;
const KINDS: [&str; 4] = ["PLA", "PETG", "ABS", "TPU"];
const COLOURS: [&str; 5] = ["black", "white", "red", "blue", "grey"];

fn point(rng: &mut StdRng) -> GeoPoint {
    // Central Europe, roughly 1000 x 1000 km.
    GeoPoint::new(rng.random_range(45.0..55.0), rng.random_range(2.0..16.0)).expect("in range")
}

fn printers(n: usize, rng: &mut StdRng) -> Vec<Printer> {
    (0..n)
        .map(|i| {
            let technology = match rng.random_range(0..20) {
                0..12 => Technology::Fdm,
                12..17 => Technology::Resin,
                _ => Technology::Sls,
            };
            let side = [180.0, 220.0, 250.0, 300.0][rng.random_range(0..4)];
            let materials = (0..rng.random_range(1..=3))
                .map(|_| Material {
                    kind: KINDS[rng.random_range(0..KINDS.len())].into(),
                    colour: COLOURS[rng.random_range(0..COLOURS.len())].into(),
                })
                .collect();
            let state = match rng.random_range(0..20) {
                0..10 => PrinterState::Idle,
                10..16 => PrinterState::Printing,
                16 => PrinterState::Paused,
                17..19 => PrinterState::Offline,
                _ => PrinterState::Maintenance,
            };
            let active_jobs = rng.random_range(0..5);
            Printer {
                id: format!("printer-{i:05}"),
                node_id: format!("node-{:04}", i / 4),
                makerspace: format!("Makerspace {}", i / 4),
                technology,
                build_volume_mm: [side, side, side * 0.9],
                nozzle_diameters_mm: if rng.random_bool(0.3) {
                    vec![0.4, 0.6]
                } else {
                    vec![0.4]
                },
                materials,
                profiles: vec![format!("profile-{}", rng.random_range(0..30))],
                location: point(rng),
                price: PriceModel {
                    per_hour: rng.random_range(1.0..4.0),
                    per_gram: rng.random_range(0.02..0.1),
                    setup_fee: rng.random_range(0.0..5.0),
                    currency: "EUR".into(),
                },
                state,
                queued_work_s: f64::from(active_jobs) * rng.random_range(600.0..7200.0),
                active_jobs,
            }
        })
        .collect()
}

fn request(i: usize, rng: &mut StdRng) -> JobRequest {
    JobRequest {
        job_key: format!("design-{i}"),
        part_extent_mm: [
            rng.random_range(10.0..260.0),
            rng.random_range(10.0..120.0),
            rng.random_range(5.0..120.0),
        ],
        technology: Technology::Fdm,
        pre_sliced: false,
        material: rng.random_bool(0.7).then(|| MaterialRequest {
            kind: KINDS[rng.random_range(0..KINDS.len())].to_lowercase(),
            colour: rng
                .random_bool(0.5)
                .then(|| COLOURS[rng.random_range(0..COLOURS.len())].into()),
        }),
        nozzle_mm: rng.random_bool(0.2).then_some(0.6),
        customer: point(rng),
        max_distance_km: rng.random_bool(0.5).then_some(200.0),
        quantity: 1,
        fallback_estimate: None,
    }
}

/// CPU time consumed by this thread so far.
#[allow(unsafe_code)] // clock_gettime for the thread CPU clock.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant Linux supports.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(label: &str, clock: &str, mut times: Vec<Duration>) {
    times.sort_unstable();
    println!(
        "{label} [{clock}]: n={} p50={:.1} us p99={:.1} us max={:.1} us",
        times.len(),
        percentile(&times, 0.5).as_secs_f64() * 1e6,
        percentile(&times, 0.99).as_secs_f64() * 1e6,
        times.last().map_or(0.0, |d| d.as_secs_f64() * 1e6),
    );
}

/// Estimates as a cache lookup: 25 of the 30 profiles have one.
fn estimates() -> HashMap<String, EstimateFigures> {
    (0..25)
        .map(|p| {
            (
                format!("profile-{p}"),
                EstimateFigures {
                    print_time_s: 1800.0 + 300.0 * f64::from(p),
                    filament_g: 10.0 + f64::from(p),
                },
            )
        })
        .collect()
}

/// The same seeded fleet of `n_printers`, its estimates, and the generator for the requests.
fn setup(n_printers: usize) -> (StdRng, Fleet, HashMap<String, EstimateFigures>) {
    let mut rng = StdRng::seed_from_u64(42);
    let fleet = Fleet::new(printers(n_printers, &mut rng)).expect("valid printers");
    (rng, fleet, estimates())
}

fn run_quote(n_printers: usize) {
    let (mut rng, fleet, estimates) = setup(n_printers);
    let estimator = |profile: &str| estimates.get(profile).copied();
    let scheduler = Scheduler::default();
    let requests: Vec<JobRequest> = (0..WARMUP + DECISIONS)
        .map(|i| request(i, &mut rng))
        .collect();

    let mut wall = Vec::with_capacity(DECISIONS);
    let mut cpu = Vec::with_capacity(DECISIONS);
    let (mut capable, mut rejected) = (0usize, 0usize);
    for (i, r) in requests.iter().enumerate() {
        let (start, start_cpu) = (Instant::now(), thread_cpu());
        let d = scheduler
            .quote(r, &fleet, &estimator, 5)
            .expect("valid request");
        let (elapsed, elapsed_cpu) = (start.elapsed(), thread_cpu() - start_cpu);
        capable += d.capable();
        rejected += d.rejected();
        black_box(&d);
        if i >= WARMUP {
            wall.push(elapsed);
            cpu.push(elapsed_cpu);
        }
    }
    let what = format!(
        "quote top 5, {n_printers} printers (avg {} capable, {} rejected)",
        capable / requests.len(),
        rejected / requests.len()
    );
    report(&what, "wall", wall);
    report(&what, "thread cpu", cpu);
}

/// Which requests an `assign` comparison uses.
#[derive(Clone, Copy)]
enum Mix {
    /// The quote benchmark's requests: material asked 70 %, a 200 km limit half the time.
    Mixed,
    /// Any material, nozzle and distance: about half the fleet is capable, as in production.
    Open,
}

fn report_pair(label: &str, mut fast: Vec<Duration>, mut reference: Vec<Duration>) {
    fast.sort_unstable();
    reference.sort_unstable();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let mean = |t: &[Duration]| t.iter().map(|d| us(*d)).sum::<f64>() / t.len() as f64;
    let (f50, f99, r50, r99) = (
        us(percentile(&fast, 0.5)),
        us(percentile(&fast, 0.99)),
        us(percentile(&reference, 0.5)),
        us(percentile(&reference, 0.99)),
    );
    println!(
        "{label} [thread cpu]: assign p50={f50:.1} us p99={f99:.1} us mean={:.1} us | \
         reference p50={r50:.1} us p99={r99:.1} us mean={:.1} us | \
         reference/assign p50 x{:.2} p99 x{:.2} mean x{:.2}",
        mean(&fast),
        mean(&reference),
        r50 / f50,
        r99 / f99,
        mean(&reference) / mean(&fast),
    );
}

/// `assign` against `assign_reference` on the same requests, alternating which runs first.
/// Checks that both place the copies identically (outside the timed part).
fn run_assign(n_printers: usize, quantity: u32, mix: Mix) {
    let (mut rng, fleet, estimates) = setup(n_printers);
    let estimator = |profile: &str| estimates.get(profile).copied();
    let scheduler = Scheduler::default();
    let requests: Vec<JobRequest> = (0..WARMUP + DECISIONS)
        .map(|i| {
            let mut r = request(i, &mut rng);
            r.quantity = quantity;
            if let Mix::Open = mix {
                r.material = None;
                r.nozzle_mm = None;
                r.max_distance_km = None;
            }
            r
        })
        .collect();
    let mut fast = Vec::with_capacity(DECISIONS);
    let mut reference = Vec::with_capacity(DECISIONS);
    let mut placed = 0usize;
    for (i, r) in requests.iter().enumerate() {
        let time = |reference: bool| {
            let start = thread_cpu();
            let a = if reference {
                scheduler.assign_reference(r, &fleet, &estimator, None)
            } else {
                scheduler.assign(r, &fleet, &estimator, None)
            };
            let elapsed = thread_cpu() - start;
            (black_box(a), elapsed)
        };
        let ((a, ta), (b, tb)) = if i % 2 == 0 {
            let a = time(false);
            (a, time(true))
        } else {
            let b = time(true);
            (time(false), b)
        };
        assert_eq!(a, b, "assign and assign_reference differ for request {i}");
        placed += a.map_or(0, |a| a.placements.len());
        if i >= WARMUP {
            fast.push(ta);
            reference.push(tb);
        }
    }
    let mix = match mix {
        Mix::Mixed => "mixed requests",
        Mix::Open => "open requests",
    };
    report_pair(
        &format!(
            "assign {quantity} cop{}, {n_printers} printers, {mix} ({} placed)",
            if quantity == 1 { "y" } else { "ies" },
            placed
        ),
        fast,
        reference,
    );
}

fn main() {
    let mut load = String::new();
    if let Ok(l) = std::fs::read_to_string("/proc/loadavg") {
        load = l.split_whitespace().take(3).collect::<Vec<_>>().join(" ");
    }
    println!("machine load average at start: {load}");
    // `cargo bench ... -- assign-open-q1:` runs only the runs whose name contains the argument.
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let wanted = |name: &str| only.is_empty() || only.iter().any(|o| name.contains(o.as_str()));
    for n in [10_000, 1_000] {
        if wanted(&format!("quote-{n}")) {
            run_quote(n);
        }
    }
    for (mix, name) in [(Mix::Mixed, "mixed"), (Mix::Open, "open")] {
        for quantity in [1, 10] {
            if wanted(&format!("assign-{name}-q{quantity}:")) {
                run_assign(10_000, quantity, mix);
            }
        }
    }
}
