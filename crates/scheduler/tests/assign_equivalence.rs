//! `Scheduler::assign` prunes and skips work; `Scheduler::assign_reference` measures and scores
//! every capable printer for every copy. On random fleets they must agree exactly: the same
//! printers in the same order, the same figures and sentences, the same errors, and the same
//! profiles asked of the estimator.

use std::cell::RefCell;
use std::collections::BTreeSet;

use fabrouter_scheduler::{
    EstimateFigures, Fleet, GeoPoint, JobRequest, Material, MaterialRequest, PriceModel, Printer,
    PrinterState, Scheduler, Technology, Weights,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const KINDS: [&str; 3] = ["PLA", "PETG", "ABS"];
const COLOURS: [&str; 3] = ["black", "white", "red"];

fn anywhere(rng: &mut StdRng) -> (f64, f64) {
    // Uniform on the sphere.
    let lat = (2.0 * rng.random::<f64>() - 1.0).asin().to_degrees();
    (lat.clamp(-90.0, 90.0), rng.random_range(-180.0..=180.0))
}

#[derive(Clone, Copy, Debug)]
enum Layout {
    /// Printers and customers anywhere on Earth.
    World,
    /// Everything within a few km of one city centre, with repeated spots (equal distances).
    City,
    /// Printers around the customer's antipode, where chord bounds are loosest.
    Antipodal,
}

fn point_near(rng: &mut StdRng, (lat, lon): (f64, f64), km: f64) -> GeoPoint {
    let dlat = rng.random_range(-1.0..=1.0) * km / 111.0;
    let dlon = rng.random_range(-1.0..=1.0) * km / 111.0;
    let lon = lon + dlon;
    let lon = if lon > 180.0 {
        lon - 360.0
    } else if lon < -180.0 {
        lon + 360.0
    } else {
        lon
    };
    GeoPoint::new((lat + dlat).clamp(-90.0, 90.0), lon).unwrap()
}

fn printers(rng: &mut StdRng, layout: Layout, centre: (f64, f64), n: usize) -> Vec<Printer> {
    // A few spots shared by several printers, so equal distances (and scores) happen.
    let spots: Vec<GeoPoint> = (0..4).map(|_| point_near(rng, centre, 5.0)).collect();
    let antipode = (
        -centre.0,
        if centre.1 > 0.0 {
            centre.1 - 180.0
        } else {
            centre.1 + 180.0
        },
    );
    (0..n)
        .map(|i| {
            let location = match layout {
                Layout::World => {
                    let (lat, lon) = anywhere(rng);
                    GeoPoint::new(lat, lon).unwrap()
                }
                Layout::City if rng.random_bool(0.3) => spots[rng.random_range(0..spots.len())],
                Layout::City => point_near(rng, centre, 15.0),
                Layout::Antipodal => point_near(rng, antipode, 300.0),
            };
            let technology = match rng.random_range(0..10) {
                0..7 => Technology::Fdm,
                7..9 => Technology::Resin,
                _ => Technology::Sls,
            };
            let state = match rng.random_range(0..10) {
                0..5 => PrinterState::Idle,
                5..7 => PrinterState::Printing,
                7 => PrinterState::Paused,
                8 => PrinterState::Offline,
                _ => PrinterState::Maintenance,
            };
            let side = [120.0, 180.0, 250.0][rng.random_range(0..3)];
            let materials = (0..rng.random_range(0..=2))
                .map(|_| Material {
                    kind: KINDS[rng.random_range(0..KINDS.len())].into(),
                    colour: COLOURS[rng.random_range(0..COLOURS.len())].into(),
                })
                .collect();
            // Few distinct prices and queues, so equal ETAs and prices (and ties) are common.
            let active_jobs = rng.random_range(0..4);
            let queued_work_s = if rng.random_bool(0.5) {
                f64::from(active_jobs) * 1800.0
            } else {
                f64::from(active_jobs) * rng.random_range(300.0..7200.0)
            };
            let price = if rng.random_bool(0.6) {
                PriceModel {
                    per_hour: 2.0,
                    per_gram: 0.05,
                    setup_fee: 3.0,
                    currency: "EUR".into(),
                }
            } else {
                PriceModel {
                    per_hour: rng.random_range(0.0..5.0),
                    per_gram: rng.random_range(0.0..0.2),
                    setup_fee: rng.random_range(0.0..6.0),
                    currency: "EUR".into(),
                }
            };
            Printer {
                id: format!("p-{i}"),
                node_id: format!("node-{}", i / 3),
                makerspace: format!("Space {}", i / 3),
                technology,
                build_volume_mm: [side, side * 0.9, side],
                nozzle_diameters_mm: if rng.random_bool(0.3) {
                    vec![0.4, 0.6]
                } else {
                    vec![0.4]
                },
                materials,
                profiles: (0..rng.random_range(0..=2))
                    .map(|_| format!("profile-{}", rng.random_range(0..6)))
                    .collect(),
                location,
                price,
                state,
                queued_work_s,
                active_jobs,
            }
        })
        .collect()
}

fn request(rng: &mut StdRng, key: usize, customer: GeoPoint, max_km: Option<f64>) -> JobRequest {
    JobRequest {
        job_key: format!("design-{key}"),
        part_extent_mm: [
            rng.random_range(10.0..240.0),
            rng.random_range(10.0..120.0),
            rng.random_range(5.0..120.0),
        ],
        technology: if rng.random_bool(0.9) {
            Technology::Fdm
        } else {
            Technology::Resin
        },
        pre_sliced: rng.random_bool(0.1),
        material: rng.random_bool(0.4).then(|| MaterialRequest {
            kind: KINDS[rng.random_range(0..KINDS.len())].to_lowercase(),
            colour: rng
                .random_bool(0.5)
                .then(|| COLOURS[rng.random_range(0..COLOURS.len())].into()),
        }),
        nozzle_mm: rng.random_bool(0.15).then_some(0.6),
        customer,
        max_distance_km: max_km,
        quantity: if rng.random_bool(0.05) {
            rng.random_range(6..=25)
        } else {
            rng.random_range(1..=5)
        },
        fallback_estimate: rng.random_bool(0.3).then_some(EstimateFigures {
            print_time_s: 2400.0,
            filament_g: 15.0,
        }),
    }
}

/// Estimates for profiles 0..4 (5 has none); records which profiles were asked about.
struct Estimates {
    asked: RefCell<BTreeSet<String>>,
}

impl Estimates {
    fn estimate(&self, profile: &str) -> Option<EstimateFigures> {
        self.asked.borrow_mut().insert(profile.to_string());
        let n: u32 = profile.strip_prefix("profile-")?.parse().ok()?;
        (n < 5).then(|| EstimateFigures {
            // Profiles 0 and 1 share their time: equal ETAs across profiles.
            print_time_s: 1800.0 + 600.0 * f64::from(n / 2),
            filament_g: 10.0 + f64::from(n),
        })
    }
}

fn weights(rng: &mut StdRng) -> Weights {
    match rng.random_range(0..4) {
        0 => Weights {
            distance: rng.random_range(0.0..1.0),
            queue: rng.random_range(0.0..1.0),
            price: rng.random_range(0.0..1.0),
            load: rng.random_range(0.01..1.0),
        },
        1 => Weights {
            distance: 0.0,
            ..Weights::default()
        },
        _ => Weights::default(),
    }
}

#[test]
fn assign_matches_the_reference_on_random_fleets() {
    let mut rng = StdRng::seed_from_u64(7);
    let (mut placed, mut errors) = (0, 0);
    for case in 0..1500 {
        let layout = match case % 3 {
            0 => Layout::World,
            1 => Layout::City,
            _ => Layout::Antipodal,
        };
        let centre = anywhere(&mut rng);
        let n = rng.random_range(1..=if case % 10 == 0 { 600 } else { 120 });
        let fleet = Fleet::new(printers(&mut rng, layout, centre, n)).unwrap();
        let customer = match layout {
            Layout::World => {
                let (lat, lon) = anywhere(&mut rng);
                GeoPoint::new(lat, lon).unwrap()
            }
            _ => point_near(&mut rng, centre, 3.0),
        };
        // No limit, a random one, or one exactly at (or a hair below) some printer's distance.
        let max_km = match rng.random_range(0..5) {
            0 => Some(match layout {
                Layout::City => rng.random_range(0.0..12.0),
                _ => rng.random_range(0.0..20_000.0),
            }),
            1 => {
                let p = &fleet.printers()[rng.random_range(0..fleet.len())];
                Some(customer.distance_km(&p.location))
            }
            2 => {
                let p = &fleet.printers()[rng.random_range(0..fleet.len())];
                let km = customer.distance_km(&p.location);
                Some(if km > 0.0 {
                    f64::from_bits(km.to_bits() - 1)
                } else {
                    km
                })
            }
            _ => None,
        };
        let r = request(&mut rng, case, customer, max_km);
        let scheduler = Scheduler::new(weights(&mut rng)).unwrap();
        let (fast, slow) = (
            Estimates {
                asked: RefCell::default(),
            },
            Estimates {
                asked: RefCell::default(),
            },
        );
        let got = scheduler.assign(&r, &fleet, &|p: &str| fast.estimate(p), None);
        let want = scheduler.assign_reference(&r, &fleet, &|p: &str| slow.estimate(p), None);
        assert_eq!(got, want, "case {case} ({layout:?}, {n} printers)");
        assert_eq!(fast.asked, slow.asked, "case {case}: estimator calls");
        if let Ok(a) = &got {
            for (g, w) in a.placements.iter().zip(&want.as_ref().unwrap().placements) {
                // Bit for bit, not only `==`.
                assert_eq!(g.distance_km.to_bits(), w.distance_km.to_bits());
                assert_eq!(g.eta_s.to_bits(), w.eta_s.to_bits());
                assert_eq!(g.price.to_bits(), w.price.to_bits());
            }
            placed += a.placements.len();
        } else {
            errors += 1;
        }
    }
    eprintln!("{placed} placements, {errors} errors");
    // The cases exercised both outcomes.
    assert!(
        placed > 1000 && errors > 10,
        "{placed} placements, {errors} errors"
    );
}

/// Identical printers at one spot: every score ties and only the per-job hash and fleet order
/// decide, for every copy.
#[test]
fn assign_matches_the_reference_when_everything_ties() {
    let mut rng = StdRng::seed_from_u64(11);
    let centre = (47.3769, 8.5417);
    let spot = point_near(&mut rng, centre, 2.0);
    let mut all = printers(&mut rng, Layout::City, centre, 40);
    for p in &mut all {
        p.location = spot;
        p.technology = Technology::Fdm;
        p.state = PrinterState::Idle;
        p.materials = vec![];
        p.profiles = vec!["profile-1".into()];
        p.queued_work_s = 0.0;
        p.active_jobs = 0;
        p.price = PriceModel {
            per_hour: 2.0,
            per_gram: 0.05,
            setup_fee: 3.0,
            currency: "EUR".into(),
        };
        p.build_volume_mm = [250.0; 3];
    }
    let fleet = Fleet::new(all).unwrap();
    let est = Estimates {
        asked: RefCell::default(),
    };
    let estimator = |p: &str| est.estimate(p);
    for key in 0..50 {
        let mut r = request(&mut rng, key, GeoPoint::new(47.37, 8.54).unwrap(), None);
        r.technology = Technology::Fdm;
        r.material = None;
        r.nozzle_mm = None;
        r.part_extent_mm = [50.0, 50.0, 50.0];
        r.quantity = 1 + (key as u32 % 30);
        let s = Scheduler::default();
        let got = s.assign(&r, &fleet, &estimator, None).unwrap();
        let want = s.assign_reference(&r, &fleet, &estimator, None).unwrap();
        assert_eq!(got, want, "key {key}");
    }
}
