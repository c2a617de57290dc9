//! Estimates on analytic shapes (cube, cylinder, hollow box, overhang) whose layer count, outline
//! length and volume are known exactly, the error cases a designer can hit, and broken meshes that
//! must neither hang nor panic.

use fabrouter_estimator::{Cornering, EstimateError, Profile, estimate, slice_outlines};

type Tri = [[f32; 3]; 3];

/// Axis-aligned box, outward-facing counter-clockwise triangles.
fn cuboid(o: [f32; 3], s: [f32; 3]) -> Vec<Tri> {
    let [x0, y0, z0] = o;
    let [x1, y1, z1] = [o[0] + s[0], o[1] + s[1], o[2] + s[2]];
    let v = |x, y, z| [x, y, z];
    let quads = [
        // bottom (z0), viewed from below
        [v(x0, y0, z0), v(x0, y1, z0), v(x1, y1, z0), v(x1, y0, z0)],
        // top
        [v(x0, y0, z1), v(x1, y0, z1), v(x1, y1, z1), v(x0, y1, z1)],
        // y0 side
        [v(x0, y0, z0), v(x1, y0, z0), v(x1, y0, z1), v(x0, y0, z1)],
        // x1 side
        [v(x1, y0, z0), v(x1, y1, z0), v(x1, y1, z1), v(x1, y0, z1)],
        // y1 side
        [v(x1, y1, z0), v(x0, y1, z0), v(x0, y1, z1), v(x1, y1, z1)],
        // x0 side
        [v(x0, y1, z0), v(x0, y0, z0), v(x0, y0, z1), v(x0, y1, z1)],
    ];
    quads
        .iter()
        .flat_map(|q| [[q[0], q[1], q[2]], [q[0], q[2], q[3]]])
        .collect()
}

fn flipped(tris: Vec<Tri>) -> Vec<Tri> {
    tris.into_iter().map(|t| [t[0], t[2], t[1]]).collect()
}

/// Regular n-gon prism of circumradius r and height h.
fn prism(n: usize, r: f32, h: f32) -> Vec<Tri> {
    let pt = |i: usize, z: f32| {
        let a = 2.0 * std::f32::consts::PI * (i % n) as f32 / n as f32;
        [r * a.cos(), r * a.sin(), z]
    };
    let mut t = Vec::new();
    for i in 0..n {
        t.push([pt(i, 0.0), pt(i + 1, 0.0), pt(i + 1, h)]);
        t.push([pt(i, 0.0), pt(i + 1, h), pt(i, h)]);
        t.push([[0.0, 0.0, h], pt(i, h), pt(i + 1, h)]);
        t.push([[0.0, 0.0, 0.0], pt(i + 1, 0.0), pt(i, 0.0)]);
    }
    t
}

fn b() -> Profile {
    Profile::builtin("prusaslicer-b").unwrap()
}

/// Every layer solid, no skirt, no infill overlap: the deposited material must equal the model volume.
fn all_solid() -> Profile {
    Profile {
        top_solid_layers: 100,
        bottom_solid_layers: 100,
        skirt_loops: 0,
        infill_overlap_pct: 0.0,
        ..b()
    }
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs()
}

#[test]
fn cube_layers_outline_and_volume() {
    let cube = cuboid([10.0, 10.0, 0.0], [20.0, 20.0, 20.0]);
    let layers = slice_outlines(&cube, &b()).unwrap();
    assert_eq!(layers.len(), 100);
    for l in &layers {
        assert_eq!(l.loops.len(), 1);
        assert!((l.outline_mm - 80.0).abs() < 1e-9, "{}", l.outline_mm);
        assert!((l.area_mm2 - 400.0).abs() < 1e-9);
        assert_eq!(l.unclosed, 0);
    }
    let e = estimate(&cube, &all_solid()).unwrap();
    assert_eq!(e.layers, 100);
    assert!(rel(e.filament_cm3, 8.0) < 0.015, "{}", e.filament_cm3);
    let filament_area = std::f64::consts::PI * 0.875f64.powi(2);
    assert!(rel(e.filament_mm, e.filament_cm3 * 1000.0 / filament_area) < 1e-9);
    assert!(rel(e.filament_g, e.filament_cm3 * 1.24) < 1e-9);
    assert_eq!(e.unclosed_loops, 0);
}

#[test]
fn cylinder_outline_is_the_polygon_perimeter_and_volume_its_area_times_height() {
    let (n, r) = (32usize, 10.0f64);
    let cyl = prism(n, r as f32, 10.0);
    let layers = slice_outlines(&cyl, &b()).unwrap();
    assert_eq!(layers.len(), 50);
    let perimeter = 2.0 * n as f64 * r * (std::f64::consts::PI / n as f64).sin();
    let area = 0.5 * n as f64 * r * r * (2.0 * std::f64::consts::PI / n as f64).sin();
    // Regions live on a 1 um integer grid (Clipper), hence 1e-4 rather than float precision.
    for l in &layers {
        assert!(rel(l.outline_mm, perimeter) < 1e-4, "{}", l.outline_mm);
        assert!(rel(l.area_mm2, area) < 1e-4, "{}", l.area_mm2);
    }
    let e = estimate(&cyl, &all_solid()).unwrap();
    assert!(
        rel(e.filament_cm3, area * 10.0 / 1000.0) < 0.015,
        "{} vs {}",
        e.filament_cm3,
        area / 100.0
    );
}

#[test]
fn hollow_box_has_a_hole_on_cavity_layers_and_its_volume_excludes_the_cavity() {
    let mut mesh = cuboid([0.0, 0.0, 0.0], [20.0, 20.0, 20.0]);
    mesh.extend(flipped(cuboid([5.0, 5.0, 5.0], [10.0, 10.0, 10.0])));
    let layers = slice_outlines(&mesh, &b()).unwrap();
    assert_eq!(layers.len(), 100);
    for l in &layers {
        let inside_cavity = l.slice_z_mm > 5.0 && l.slice_z_mm < 15.0;
        let (area, outline, loops) = if inside_cavity {
            (300.0, 120.0, 2)
        } else {
            (400.0, 80.0, 1)
        };
        assert_eq!(l.loops.len(), loops, "at z {}", l.slice_z_mm);
        assert!((l.area_mm2 - area).abs() < 1e-9);
        assert!((l.outline_mm - outline).abs() < 1e-9);
    }
    let e = estimate(&mesh, &all_solid()).unwrap();
    assert!(rel(e.filament_cm3, 7.0) < 0.015, "{}", e.filament_cm3);
}

/// One external perimeter, nothing else: the time is exactly the trapezoid per side with jerk-limited
/// corners (10 mm/s at 90 degrees), computed here from the kinematics.
#[test]
fn perimeter_time_follows_the_trapezoid_model() {
    let p = Profile {
        perimeters: 1,
        top_solid_layers: 0,
        bottom_solid_layers: 0,
        infill_density_pct: 0.0,
        skirt_loops: 0,
        min_layer_time_s: 0.0,
        first_layer_speed_mm_s: 30.0,
        first_layer_width_mm: 0.45,
        ..b()
    };
    let cube = cuboid([0.0, 0.0, 0.0], [20.0, 20.0, 20.0]);
    let e = estimate(&cube, &p).unwrap();
    let (v, a, vj) = (30.0, 1500.0, 10.0);
    let side = 20.0 - 0.45; // centre line half a width inside
    let t_side = side / v + (v - vj) * (v - vj) / (a * v);
    let expect = 100.0 * 4.0 * t_side;
    assert!(
        rel(e.breakdown.perimeters.time_s, expect) < 1e-6,
        "{} vs {expect}",
        e.breakdown.perimeters.time_s
    );
    assert!(rel(e.breakdown.perimeters.path_mm, 100.0 * 4.0 * side) < 1e-6);
    assert_eq!(e.breakdown.infill.path_mm, 0.0);
    assert_eq!(e.breakdown.solid.path_mm, 0.0);
}

#[test]
fn junction_deviation_profile_is_slower_at_sharp_corners_than_generous_jerk() {
    let cube = cuboid([0.0, 0.0, 0.0], [20.0, 20.0, 20.0]);
    let jd = Profile {
        cornering: Cornering::JunctionDeviation {
            junction_deviation_mm: 0.01,
        },
        ..b()
    };
    let jerk = Profile {
        cornering: Cornering::Jerk { jerk_xy_mm_s: 20.0 },
        ..b()
    };
    let t_jd = estimate(&cube, &jd).unwrap().print_time_s;
    let t_jerk = estimate(&cube, &jerk).unwrap().print_time_s;
    assert!(t_jd > t_jerk, "{t_jd} vs {t_jerk}");
}

#[test]
fn minimum_layer_time_slows_small_layers() {
    let small = cuboid([0.0, 0.0, 0.0], [10.0, 10.0, 2.0]);
    let fast = Profile {
        min_layer_time_s: 0.0,
        ..b()
    };
    let slow = Profile {
        min_layer_time_s: 20.0,
        min_print_speed_mm_s: 1.0,
        ..b()
    };
    let e_fast = estimate(&small, &fast).unwrap();
    let e_slow = estimate(&small, &slow).unwrap();
    assert_eq!(e_slow.layers, 10);
    assert!(e_fast.print_time_s < 10.0 * 20.0);
    // Each layer is stretched to the minimum layer time (travel included), counted as PrusaSlicer
    // counts it: length over feed rate, so acceleration makes the real layer a little longer.
    assert!(
        e_slow.print_time_s >= 10.0 * 20.0 - 1e-6,
        "{}",
        e_slow.print_time_s
    );
    assert!(
        e_slow.print_time_s < 10.0 * 20.0 * 1.03,
        "{}",
        e_slow.print_time_s
    );
    assert_eq!(e_slow.slowed_layers, 10);
    assert!(rel(e_slow.filament_mm, e_fast.filament_mm) < 1e-12);
}

#[test]
fn overhang_area_and_support_material() {
    // A 20 x 20 plate on a 4 x 4 pillar: the plate's underside (400 mm2) is a flat overhang.
    let mut mesh = cuboid([8.0, 8.0, 0.0], [4.0, 4.0, 10.0]);
    mesh.extend(cuboid([0.0, 0.0, 10.0], [20.0, 20.0, 2.0]));
    let without = estimate(&mesh, &b()).unwrap();
    assert!((without.overhang_area_mm2 - 400.0).abs() < 1e-6);
    assert_eq!(without.breakdown.support.filament_mm, 0.0);
    let with = estimate(
        &mesh,
        &Profile {
            support_enabled: true,
            ..b()
        },
    )
    .unwrap();
    // Columns 400 mm2 x 10 mm high, lines 2.5 mm apart plus a line spacing: path = V / h / pitch.
    let pitch = 2.5 + (0.4 - 0.2 * (1.0 - std::f64::consts::PI / 4.0));
    let path = 400.0 * 10.0 / 0.2 / pitch;
    assert!(rel(with.breakdown.support.path_mm, path) < 1e-9);
    assert!(with.print_time_s > without.print_time_s + with.breakdown.support.time_s * 0.99);
    assert!(with.filament_mm > without.filament_mm);
}

#[test]
fn model_too_big_for_the_bed_is_rejected_with_both_sizes() {
    let big = cuboid([0.0, 0.0, 0.0], [300.0, 20.0, 20.0]);
    let err = estimate(&big, &b()).unwrap_err();
    assert!(matches!(err, EstimateError::DoesNotFit { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("300.0") && msg.contains("200.0"), "{msg}");
    assert!(estimate(&big, &Profile::builtin("bigbed-400").unwrap()).is_ok());
}

#[test]
fn model_in_metres_has_no_layers_and_says_so() {
    let tiny = cuboid([0.0, 0.0, 0.0], [0.034, 0.034, 0.07]);
    let err = estimate(&tiny, &b()).unwrap_err();
    assert!(matches!(err, EstimateError::NoLayers { .. }), "{err}");
    assert!(err.to_string().contains("metres"), "{err}");
    let flat = cuboid([0.0, 0.0, 0.0], [10.0, 10.0, 0.0]);
    assert!(matches!(
        estimate(&flat, &b()),
        Err(EstimateError::NoLayers { .. })
    ));
}

#[test]
fn wall_thinner_than_the_nozzle_prints_nothing() {
    let wall = cuboid([0.0, 0.0, 0.0], [20.0, 0.1, 10.0]);
    let err = estimate(&wall, &b()).unwrap_err();
    assert!(matches!(err, EstimateError::NothingToPrint { .. }), "{err}");
}

#[test]
fn invalid_input_is_an_error_not_a_number() {
    assert!(matches!(
        estimate(&[], &b()),
        Err(EstimateError::TooBroken { .. })
    ));
    let mut nan = cuboid([0.0, 0.0, 0.0], [10.0, 10.0, 10.0]);
    nan[3][1][2] = f32::NAN;
    assert!(matches!(
        estimate(&nan, &b()),
        Err(EstimateError::TooBroken { .. })
    ));
    let bad = Profile {
        layer_height_mm: -0.2,
        ..b()
    };
    let cube = cuboid([0.0, 0.0, 0.0], [10.0, 10.0, 10.0]);
    let err = estimate(&cube, &bad).unwrap_err();
    assert!(matches!(err, EstimateError::InvalidProfile(_)));
    assert!(err.to_string().contains("layer_height_mm"), "{err}");
}

#[test]
fn open_box_is_closed_layer_by_layer_and_reported() {
    // Drop the two triangles of the x1 side: every layer's outline is a U with a 20 mm gap.
    let mut open = cuboid([0.0, 0.0, 0.0], [20.0, 20.0, 20.0]);
    open.drain(6..8);
    let closed = estimate(&cuboid([0.0, 0.0, 0.0], [20.0, 20.0, 20.0]), &b()).unwrap();
    let e = estimate(&open, &b()).unwrap();
    assert_eq!(e.unclosed_loops, 100);
    assert!(!e.warnings.is_empty());
    // Closing the U with a straight edge restores the square exactly.
    assert!(rel(e.filament_mm, closed.filament_mm) < 1e-6);
}

#[test]
fn hairline_crack_is_closed_silently() {
    let mut cracked = cuboid([0.0, 0.0, 0.0], [20.0, 20.0, 20.0]);
    // Move one side's copy of a vertical edge by 1 um: the slices have a 0.001 mm gap.
    for t in cracked.iter_mut().skip(4).take(2) {
        for v in t.iter_mut() {
            if v[0] == 20.0 && v[1] == 0.0 {
                v[0] = 20.001;
            }
        }
    }
    let e = estimate(&cracked, &b()).unwrap();
    assert_eq!(e.unclosed_loops, 0);
}

#[test]
fn triangle_soup_is_too_broken() {
    // 200 disjoint small triangles from a fixed linear congruential sequence.
    let mut seed: u64 = 12345;
    let mut next = || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((seed >> 33) as f32) / (1u64 << 31) as f32
    };
    let soup: Vec<Tri> = (0..200)
        .map(|_| {
            let c = [next() * 20.0, next() * 20.0, next() * 20.0];
            [
                c,
                [c[0] + next(), c[1] + next(), c[2] + next()],
                [c[0] - next(), c[1] + next(), c[2] - next()],
            ]
        })
        .collect();
    let err = estimate(&soup, &b()).unwrap_err();
    assert!(matches!(err, EstimateError::TooBroken { .. }), "{err}");

    // Large random soup: must terminate without panicking, whatever the verdict.
    let big: Vec<Tri> = (0..20_000)
        .map(|_| {
            [
                [next() * 50.0, next() * 50.0, next() * 20.0],
                [next() * 50.0, next() * 50.0, next() * 20.0],
                [next() * 50.0, next() * 50.0, next() * 20.0],
            ]
        })
        .collect();
    let _ = estimate(&big, &b());
}

#[test]
fn more_infill_means_more_filament_and_time() {
    let cube = cuboid([0.0, 0.0, 0.0], [30.0, 30.0, 10.0]);
    let lo = estimate(&cube, &b()).unwrap();
    let hi = estimate(
        &cube,
        &Profile {
            infill_density_pct: 60.0,
            ..b()
        },
    )
    .unwrap();
    assert!(hi.breakdown.infill.filament_mm > 2.5 * lo.breakdown.infill.filament_mm);
    assert!(hi.print_time_s > lo.print_time_s);
    let sum = lo.breakdown.perimeters.time_s
        + lo.breakdown.infill.time_s
        + lo.breakdown.solid.time_s
        + lo.breakdown.support.time_s
        + lo.breakdown.skirt.time_s
        + lo.breakdown.travel.time_s;
    assert!(rel(sum, lo.print_time_s) < 1e-12);
}

#[test]
fn two_islands_extrude_exactly_twice_one() {
    let one = cuboid([0.0, 0.0, 0.0], [15.0, 15.0, 10.0]);
    let mut two = one.clone();
    two.extend(cuboid([40.0, 0.0, 0.0], [15.0, 15.0, 10.0]));
    let e1 = estimate(&one, &b()).unwrap();
    let e2 = estimate(&two, &b()).unwrap();
    for (f1, f2) in [
        (e1.breakdown.perimeters, e2.breakdown.perimeters),
        (e1.breakdown.infill, e2.breakdown.infill),
        (e1.breakdown.solid, e2.breakdown.solid),
    ] {
        assert!(rel(f2.path_mm, 2.0 * f1.path_mm) < 1e-9, "{f1:?} {f2:?}");
        assert!(rel(f2.filament_mm, 2.0 * f1.filament_mm) < 1e-9);
    }
    // The second island costs travel: at least one move per layer between the islands.
    assert!(e2.breakdown.travel.path_mm > e1.breakdown.travel.path_mm + 50.0 * 25.0);
}

#[test]
fn reference_triangle_soup_is_too_broken() {
    // 100 unconnected triangles (trimesh's test file): fragments, not a model.
    let path = fabrouter_testkit::data("stl/trimesh__soup.stl");
    let bytes = std::fs::read(path).unwrap();
    let mesh = fabrouter_mesh::parse_stl(&bytes, &fabrouter_mesh::Limits::default()).unwrap();
    let err = estimate(&mesh.triangles, &b()).unwrap_err();
    assert!(matches!(err, EstimateError::TooBroken { .. }), "{err}");
}

#[test]
fn feed_rates_are_capped_by_the_machine_limit() {
    let cube = cuboid([0.0, 0.0, 0.0], [20.0, 20.0, 10.0]);
    let capped = Profile {
        max_speed_xy_mm_s: 40.0,
        ..b()
    };
    let all_at_40 = Profile {
        perimeter_speed_mm_s: 40.0,
        infill_speed_mm_s: 40.0,
        bridge_speed_mm_s: 40.0,
        support_speed_mm_s: 40.0,
        travel_speed_mm_s: 40.0,
        ..capped.clone()
    };
    let a = estimate(&cube, &capped).unwrap();
    let b = estimate(&cube, &all_at_40).unwrap();
    assert!(rel(a.print_time_s, b.print_time_s) < 1e-12);
    assert!(a.print_time_s > estimate(&cube, &self::b()).unwrap().print_time_s);
}
