//! End-to-end routing behaviour through the public API: who gets the job, why the others did
//! not, and that the answer is stable.

use fabrouter_scheduler::{
    EstimateFigures, Fleet, GeoPoint, JobRequest, Material, MaterialRequest, PriceModel, Printer,
    PrinterState, RejectCode, Scheduler, SchedulerError, Technology, UpAxis, Weights,
};

/// Customer in central Zurich.
const CUSTOMER: (f64, f64) = (47.3769, 8.5417);

fn printer(id: &str, lat: f64, lon: f64) -> Printer {
    Printer {
        id: id.into(),
        node_id: format!("node-{id}"),
        makerspace: format!("Space {id}"),
        technology: Technology::Fdm,
        build_volume_mm: [220.0, 220.0, 250.0],
        nozzle_diameters_mm: vec![0.4],
        materials: vec![Material {
            kind: "PLA".into(),
            colour: "black".into(),
        }],
        profiles: vec!["pla-standard".into()],
        location: GeoPoint::new(lat, lon).unwrap(),
        price: PriceModel {
            per_hour: 2.0,
            per_gram: 0.05,
            setup_fee: 2.0,
            currency: "CHF".into(),
        },
        state: PrinterState::Idle,
        queued_work_s: 0.0,
        active_jobs: 0,
    }
}

/// `km` north of the customer (1 degree of latitude is ~111.2 km).
fn north(id: &str, km: f64) -> Printer {
    printer(id, CUSTOMER.0 + km / 111.195, CUSTOMER.1)
}

fn request() -> JobRequest {
    JobRequest {
        job_key: "design-1".into(),
        part_extent_mm: [60.0, 40.0, 30.0],
        technology: Technology::Fdm,
        pre_sliced: false,
        material: None,
        nozzle_mm: None,
        customer: GeoPoint::new(CUSTOMER.0, CUSTOMER.1).unwrap(),
        max_distance_km: None,
        quantity: 1,
        fallback_estimate: None,
    }
}

fn estimates(profile: &str) -> Option<EstimateFigures> {
    match profile {
        "pla-standard" => Some(EstimateFigures {
            print_time_s: 2.0 * 3600.0,
            filament_g: 30.0,
        }),
        "pla-draft" => Some(EstimateFigures {
            print_time_s: 3600.0,
            filament_g: 28.0,
        }),
        _ => None,
    }
}

fn fleet(printers: Vec<Printer>) -> Fleet {
    Fleet::new(printers).unwrap()
}

#[test]
fn nearest_capable_printer_wins() {
    let mut resin = north("resin-next-door", 0.3);
    resin.technology = Technology::Resin;
    let f = fleet(vec![
        north("far", 25.0),
        resin,
        north("near", 3.2),
        north("mid", 9.0),
    ]);
    let r = request();
    let d = Scheduler::default().quote(&r, &f, &estimates, 3).unwrap();
    let ids: Vec<&str> = d.options.iter().map(|o| o.printer_id.as_str()).collect();
    assert_eq!(ids, ["near", "mid", "far"]);
    let best = &d.options[0];
    assert_eq!(best.rank, 1);
    assert!(
        (best.distance_km - 3.2).abs() < 0.01,
        "{}",
        best.distance_km
    );
    assert!(
        best.reasons
            .iter()
            .any(|r| r == "nearest capable printer: 3.2 km"),
        "{:?}",
        best.reasons
    );
    // The second option says why it is second.
    assert!(
        d.options[1].reasons[0].starts_with("ranked 2nd"),
        "{:?}",
        d.options[1].reasons
    );
    assert!(d.options[1].reasons[0].contains("km farther"));
    // The resin printer is nearer but was filtered out, with its reason.
    let rejections: Vec<_> = d.rejections().collect();
    assert_eq!(rejections.len(), 1);
    assert_eq!(d.rejected(), 1);
    assert_eq!(rejections[0].printer_id(), "resin-next-door");
    assert_eq!(rejections[0].code(), RejectCode::Technology);
    // Price follows the printer's model: 2 + 2 h * 2 + 30 g * 0.05.
    assert!((best.unit_price - 7.5).abs() < 1e-9);
    assert_eq!(best.profile.as_deref(), Some("pla-standard"));
}

#[test]
fn every_filter_reports_its_own_code() {
    let mut r = request();
    r.material = Some(MaterialRequest {
        kind: "pla".into(),
        colour: Some("BLACK".into()),
    });
    r.nozzle_mm = Some(0.4);
    r.max_distance_km = Some(50.0);
    r.part_extent_mm = [200.0, 100.0, 60.0];

    let ok = north("ok", 1.0);
    let mut tech = north("tech", 1.0);
    tech.technology = Technology::Sls;
    let mut small = north("small", 1.0);
    small.build_volume_mm = [120.0, 120.0, 120.0];
    let mut colour = north("colour", 1.0);
    colour.materials[0].colour = "white".into();
    let mut nozzle = north("nozzle", 1.0);
    nozzle.nozzle_diameters_mm = vec![0.6, 0.8];
    let mut offline = north("offline", 1.0);
    offline.state = PrinterState::Offline;
    let mut maintenance = north("maintenance", 1.0);
    maintenance.state = PrinterState::Maintenance;
    let far = north("far", 80.0);
    let east = printer("east", CUSTOMER.0, CUSTOMER.1 + 1.0); // ~75 km, same latitude
    let mut unknown_profile = north("no-estimate", 1.0);
    unknown_profile.profiles = vec!["petg-special".into()];

    let f = fleet(vec![
        ok,
        tech,
        small,
        colour,
        nozzle,
        offline,
        maintenance,
        far,
        east,
        unknown_profile,
    ]);
    let d = Scheduler::default().quote(&r, &f, &estimates, 5).unwrap();
    assert_eq!(d.options.len(), 1);
    assert_eq!(d.options[0].printer_id, "ok");
    let got: Vec<(&str, RejectCode)> = d.rejections().map(|r| (r.printer_id(), r.code())).collect();
    assert_eq!(
        got,
        [
            ("tech", RejectCode::Technology),
            ("small", RejectCode::BuildVolume),
            ("colour", RejectCode::Material),
            ("nozzle", RejectCode::Nozzle),
            ("offline", RejectCode::PrinterState),
            ("maintenance", RejectCode::PrinterState),
            ("far", RejectCode::MaxDistance),
            ("east", RejectCode::MaxDistance),
            ("no-estimate", RejectCode::NoEstimate),
        ]
    );
    let msg = |id: &str| {
        d.rejections()
            .find(|r| r.printer_id() == id)
            .unwrap()
            .message()
    };
    assert_eq!(
        msg("small"),
        "part 200x100x60 mm does not fit the 120x120x120 mm build volume in any orientation"
    );
    assert_eq!(
        msg("colour"),
        "pla (BLACK) is not loaded; loaded: PLA white"
    );
    assert_eq!(msg("nozzle"), "no 0.4 mm nozzle; fitted: 0.6 mm, 0.8 mm");
    assert_eq!(
        msg("maintenance"),
        "the printer is in maintenance and takes no jobs"
    );
    assert_eq!(
        msg("far"),
        "more than 80.0 km away, beyond your 50.0 km limit"
    );
    assert!(msg("east").starts_with("75."), "{}", msg("east"));
    assert_eq!(
        d.rejections_by_code()[0],
        (RejectCode::PrinterState, 2),
        "most common reason first"
    );
}

#[test]
fn part_fitting_only_on_its_side_or_turned_is_accepted_with_that_orientation() {
    let mut low = north("low", 1.0);
    low.build_volume_mm = [300.0, 300.0, 120.0];
    let f = fleet(vec![low]);
    let mut r = request();
    r.part_extent_mm = [50.0, 40.0, 260.0]; // a tall vase-like part
    let d = Scheduler::default().quote(&r, &f, &estimates, 1).unwrap();
    let o = &d.options[0].orientation;
    assert_eq!(o.up, UpAxis::X, "{o:?}");
    assert!(o.placed_extent_mm[2] <= 120.0);
    assert!(
        d.options[0]
            .reasons
            .iter()
            .any(|r| r.contains("laid on its side")),
        "{:?}",
        d.options[0].reasons
    );

    let mut square = north("square", 1.0);
    square.build_volume_mm = [180.0, 180.0, 180.0];
    let f = fleet(vec![square]);
    r.part_extent_mm = [240.0, 8.0, 8.0]; // a rod longer than either bed side
    let d = Scheduler::default().quote(&r, &f, &estimates, 1).unwrap();
    let o = &d.options[0].orientation;
    assert_eq!((o.up, o.rotation_z_deg), (UpAxis::Z, 45), "{o:?}");
    assert!(
        d.options[0]
            .reasons
            .iter()
            .any(|r| r.contains("turned 45° about z")),
        "{:?}",
        d.options[0].reasons
    );
}

#[test]
fn weights_change_the_ranking() {
    // Near but dear vs far but cheap.
    let near = north("near-dear", 2.0);
    let mut cheap = north("far-cheap", 40.0);
    cheap.price.per_hour = 0.5;
    cheap.price.setup_fee = 0.0;
    let f = fleet(vec![near, cheap]);
    let r = request();
    let by_distance = Scheduler::default().quote(&r, &f, &estimates, 2).unwrap();
    assert_eq!(by_distance.options[0].printer_id, "near-dear");
    let price_first = Scheduler::new(Weights {
        distance: 0.1,
        queue: 0.1,
        price: 0.8,
        load: 0.0,
    })
    .unwrap();
    let by_price = price_first.quote(&r, &f, &estimates, 2).unwrap();
    assert_eq!(by_price.options[0].printer_id, "far-cheap");
    assert!(
        by_price.options[0]
            .reasons
            .iter()
            .any(|s| s.starts_with("cheapest of 2 candidates")),
        "{:?}",
        by_price.options[0].reasons
    );
    // Contributions add up to the score.
    for o in &by_price.options {
        assert!((o.contributions.total() - o.score).abs() < 1e-12);
    }
}

#[test]
fn queued_work_counts_against_a_printer() {
    let mut busy = north("busy", 1.0);
    busy.state = PrinterState::Printing;
    busy.queued_work_s = 10.0 * 3600.0;
    busy.active_jobs = 3;
    let idle = north("idle", 1.5);
    let f = fleet(vec![busy, idle]);
    let r = request();
    let d = Scheduler::default().quote(&r, &f, &estimates, 2).unwrap();
    assert_eq!(d.options[0].printer_id, "idle");
    let busy = &d.options[1];
    assert_eq!(busy.eta_s, 12.0 * 3600.0);
    assert_eq!(busy.jobs_ahead, 3);
    assert!(
        busy.reasons
            .iter()
            .any(|s| s.starts_with("3 jobs ahead (ETA 12 h)")),
        "{:?}",
        busy.reasons
    );
}

#[test]
fn quantity_spreads_once_the_first_printer_queue_grows() {
    let f = fleet(vec![north("a", 1.0), north("b", 2.0), north("c", 30.0)]);
    let mut r = request();
    r.quantity = 4;
    let a = Scheduler::default()
        .assign(&r, &f, &estimates, None)
        .unwrap();
    let ids: Vec<&str> = a.placements.iter().map(|p| p.printer_id.as_str()).collect();
    assert_eq!(a.placements.len(), 4);
    assert_eq!(ids[0], "a", "the first copy goes to the nearest");
    assert!(ids.contains(&"b"), "copies spread: {ids:?}");
    // Each printer's copies queue behind each other.
    for id in ["a", "b"] {
        let etas: Vec<f64> = a
            .placements
            .iter()
            .filter(|p| p.printer_id == id)
            .map(|p| p.eta_s)
            .collect();
        for (n, eta) in etas.iter().enumerate() {
            assert_eq!(*eta, (n as f64 + 1.0) * 7200.0, "{id}: {etas:?}");
        }
    }
    assert_eq!(
        a.placements.iter().map(|p| p.copy).collect::<Vec<_>>(),
        [0, 1, 2, 3]
    );

    // With a chosen printer every copy goes there, queued one after the other.
    let chosen = Scheduler::default()
        .assign(&r, &f, &estimates, Some("c"))
        .unwrap();
    assert!(chosen.placements.iter().all(|p| p.printer_id == "c"));
    assert_eq!(chosen.placements[3].eta_s, 4.0 * 7200.0);
    assert_eq!(chosen.placements[0].reasons[0], "chosen by you");
}

#[test]
fn quote_for_several_copies_prices_and_times_all_of_them() {
    let f = fleet(vec![north("a", 1.0)]);
    let mut r = request();
    r.quantity = 3;
    let d = Scheduler::default().quote(&r, &f, &estimates, 1).unwrap();
    let o = &d.options[0];
    assert!((o.total_price - 3.0 * o.unit_price).abs() < 1e-9);
    assert_eq!(o.eta_s, 3.0 * 7200.0);
}

#[test]
fn chosen_printer_must_exist_and_be_capable() {
    let mut off = north("off", 1.0);
    off.state = PrinterState::Offline;
    let f = fleet(vec![north("a", 1.0), off]);
    let s = Scheduler::default();
    assert_eq!(
        s.assign(&request(), &f, &estimates, Some("nope")),
        Err(SchedulerError::UnknownPrinter("nope".into()))
    );
    match s.assign(&request(), &f, &estimates, Some("off")) {
        Err(SchedulerError::ChosenPrinterRejected { code, message, .. }) => {
            assert_eq!(code, RejectCode::PrinterState);
            assert_eq!(message, "the printer is offline and takes no jobs");
        }
        other => panic!("{other:?}"),
    }
    let mut r = request();
    r.technology = Technology::Sls;
    assert_eq!(
        s.assign(&r, &f, &estimates, None),
        Err(SchedulerError::NoCapablePrinter { rejected: 2 })
    );
}

#[test]
fn fallback_estimate_is_used_and_said() {
    let mut odd = north("odd", 1.0);
    odd.profiles = vec!["petg-special".into()];
    let f = fleet(vec![odd]);
    let mut r = request();
    let d = Scheduler::default().quote(&r, &f, &estimates, 1).unwrap();
    assert!(d.options.is_empty());
    assert_eq!(
        d.rejections().next().unwrap().code(),
        RejectCode::NoEstimate
    );
    r.fallback_estimate = Some(EstimateFigures {
        print_time_s: 600.0,
        filament_g: 5.0,
    });
    let d = Scheduler::default().quote(&r, &f, &estimates, 1).unwrap();
    assert_eq!(d.options[0].profile, None);
    assert_eq!(d.options[0].eta_s, 600.0);
    assert!(
        d.options[0]
            .reasons
            .iter()
            .any(|s| s.contains("rough estimate"))
    );
}

#[test]
fn same_input_same_output_and_ties_do_not_favour_registration_order() {
    // Ten identical printers at the same place: only the tie-break separates them.
    let twins: Vec<Printer> = (0..10).map(|i| north(&format!("twin-{i}"), 5.0)).collect();
    let f = fleet(twins);
    let s = Scheduler::default();
    let mut winners = std::collections::BTreeSet::new();
    for key in 0..40 {
        let mut r = request();
        r.job_key = format!("design-{key}");
        let first = s.quote(&r, &f, &estimates, 10).unwrap();
        let again = s.quote(&r, &f, &estimates, 10).unwrap();
        assert_eq!(first.options, again.options, "deterministic for {key}");
        assert!(
            first.options[1].reasons[0].contains("tie-break"),
            "{:?}",
            first.options[1].reasons
        );
        winners.insert(first.options[0].printer_id.clone());
    }
    assert!(
        winners.len() >= 5,
        "40 job keys should spread over most twins, got {winners:?}"
    );
}

#[test]
fn capable_printers_beyond_top_k_say_why_they_ranked_lower() {
    let f = fleet(
        (1..=6)
            .map(|i| north(&format!("p{i}"), f64::from(i) * 4.0))
            .collect(),
    );
    let r = request();
    let d = Scheduler::default().quote(&r, &f, &estimates, 2).unwrap();
    assert_eq!(d.options.len(), 2);
    assert_eq!(d.ranked_lower().count(), 4);
    assert_eq!(d.capable(), 6);
    let worst = d.ranked_lower().find(|l| l.printer_id() == "p6").unwrap();
    let why = worst.reason_vs(&d.options[0]);
    assert!(
        why.contains("for p1") && why.contains("20.0 km farther"),
        "{why}"
    );
}

#[test]
fn invalid_requests_are_errors_not_panics() {
    let f = fleet(vec![north("a", 1.0)]);
    let s = Scheduler::default();
    let mut r = request();
    r.quantity = 0;
    assert!(matches!(
        s.quote(&r, &f, &estimates, 1),
        Err(SchedulerError::Quantity { .. })
    ));
    let mut r = request();
    r.part_extent_mm = [10.0, f64::NAN, 10.0];
    assert!(matches!(
        s.quote(&r, &f, &estimates, 1),
        Err(SchedulerError::PartExtent(_))
    ));
    let mut r = request();
    r.max_distance_km = Some(-1.0);
    assert!(s.assign(&r, &f, &estimates, None).is_err());
}
