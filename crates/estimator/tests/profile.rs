//! Profiles: the `prusaslicer-b` built-in must mirror the reference PrusaSlicer config it claims to,
//! TOML must round-trip and reject bad fields by name, and the content hash must be a stable key.

use std::collections::HashMap;
use std::path::Path;

use fabrouter_estimator::{Cornering, Profile, ProfileError};

fn ini() -> HashMap<String, String> {
    let path = fabrouter_testkit::data("prusaslicer_B_explicit.ini");
    let text = std::fs::read_to_string(&path).unwrap();
    text.lines()
        .filter_map(|l| l.split_once(" = "))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// Plain numbers, the first of a per-mode list ("1500,1250"), or a percentage of `base`.
fn num(ini: &HashMap<String, String>, key: &str, base: f64) -> f64 {
    let v = ini.get(key).unwrap_or_else(|| panic!("{key} missing"));
    let first = v.split(',').next().unwrap();
    match first.strip_suffix('%') {
        Some(p) => p.parse::<f64>().unwrap() / 100.0 * base,
        None => first.parse().unwrap(),
    }
}

#[test]
fn prusaslicer_b_mirrors_the_reference_ini() {
    let ini = ini();
    let p = Profile::builtin("prusaslicer-b").unwrap();
    let n = |k: &str| num(&ini, k, 0.0);
    let checks: Vec<(&str, f64, f64)> = vec![
        (
            "nozzle_diameter",
            p.nozzle_diameter_mm,
            n("nozzle_diameter"),
        ),
        ("layer_height", p.layer_height_mm, n("layer_height")),
        (
            "first_layer_height",
            p.first_layer_height_mm,
            n("first_layer_height"),
        ),
        ("perimeters", f64::from(p.perimeters), n("perimeters")),
        (
            "top_solid_layers",
            f64::from(p.top_solid_layers),
            n("top_solid_layers"),
        ),
        (
            "bottom_solid_layers",
            f64::from(p.bottom_solid_layers),
            n("bottom_solid_layers"),
        ),
        (
            "fill_density",
            p.infill_density_pct,
            100.0 * num(&ini, "fill_density", 1.0),
        ),
        (
            "perimeter_speed",
            p.perimeter_speed_mm_s,
            n("perimeter_speed"),
        ),
        (
            "external_perimeter_speed",
            p.external_perimeter_speed_mm_s,
            num(&ini, "external_perimeter_speed", n("perimeter_speed")),
        ),
        (
            "small_perimeter_speed",
            p.small_perimeter_speed_mm_s,
            n("small_perimeter_speed"),
        ),
        ("infill_speed", p.infill_speed_mm_s, n("infill_speed")),
        (
            "solid_infill_speed",
            p.solid_infill_speed_mm_s,
            n("solid_infill_speed"),
        ),
        (
            "top_solid_infill_speed",
            p.top_solid_infill_speed_mm_s,
            n("top_solid_infill_speed"),
        ),
        ("bridge_speed", p.bridge_speed_mm_s, n("bridge_speed")),
        (
            "support_material_speed",
            p.support_speed_mm_s,
            n("support_material_speed"),
        ),
        ("travel_speed", p.travel_speed_mm_s, n("travel_speed")),
        (
            "first_layer_speed",
            p.first_layer_speed_mm_s,
            n("first_layer_speed"),
        ),
        (
            "machine_max_acceleration_extruding",
            p.print_acceleration_mm_s2,
            n("machine_max_acceleration_extruding"),
        ),
        (
            "machine_max_acceleration_travel",
            p.travel_acceleration_mm_s2,
            n("machine_max_acceleration_travel"),
        ),
        (
            "machine_max_acceleration_retracting",
            p.retract_acceleration_mm_s2,
            n("machine_max_acceleration_retracting"),
        ),
        (
            "machine_max_feedrate_x",
            p.max_speed_xy_mm_s,
            n("machine_max_feedrate_x"),
        ),
        (
            "machine_max_feedrate_z",
            p.z_speed_mm_s,
            n("machine_max_feedrate_z"),
        ),
        (
            "slowdown_below_layer_time",
            p.min_layer_time_s,
            n("slowdown_below_layer_time"),
        ),
        (
            "min_print_speed",
            p.min_print_speed_mm_s,
            n("min_print_speed"),
        ),
        (
            "filament_diameter",
            p.filament_diameter_mm,
            n("filament_diameter"),
        ),
        (
            "filament_density",
            p.filament_density_g_cm3,
            n("filament_density"),
        ),
        ("retract_length", p.retract_length_mm, n("retract_length")),
        ("retract_speed", p.retract_speed_mm_s, n("retract_speed")),
        (
            "retract_before_travel",
            p.retract_min_travel_mm,
            n("retract_before_travel"),
        ),
        ("skirts", f64::from(p.skirt_loops), n("skirts")),
        ("skirt_distance", p.skirt_distance_mm, n("skirt_distance")),
        (
            "solid_infill_below_area",
            p.solid_infill_below_area_mm2,
            n("solid_infill_below_area"),
        ),
        (
            "infill_overlap",
            p.infill_overlap_pct,
            100.0 * num(&ini, "infill_overlap", 1.0),
        ),
        (
            "support_material_spacing",
            p.support_spacing_mm,
            n("support_material_spacing"),
        ),
        ("max_print_height", p.build_z_mm, n("max_print_height")),
        (
            "first_layer_extrusion_width",
            p.first_layer_width_mm,
            num(&ini, "first_layer_extrusion_width", n("first_layer_height")),
        ),
    ];
    for (key, ours, theirs) in checks {
        assert!(
            (ours - theirs).abs() < 1e-9,
            "{key}: ours {ours}, ini {theirs}"
        );
    }
    assert_eq!(
        p.cornering,
        Cornering::Jerk {
            jerk_xy_mm_s: n("machine_max_jerk_x")
        }
    );
    assert_eq!(ini["bed_shape"], "0x0,200x0,200x200,0x200");
    assert_eq!((p.build_x_mm, p.build_y_mm), (200.0, 200.0));
    assert_eq!(ini["fill_pattern"], "stars");
    assert_eq!(p.support_enabled, ini["support_material"] == "1");
    // deretract_speed = 0 means "same as retract".
    assert_eq!(n("deretract_speed"), 0.0);
    assert_eq!(p.deretract_speed_mm_s, p.retract_speed_mm_s);
}

#[test]
fn every_builtin_is_valid_and_named_as_listed() {
    assert!(Profile::builtin_names().contains(&"prusaslicer-b"));
    for name in Profile::builtin_names() {
        let p = Profile::builtin(name).unwrap();
        assert_eq!(&p.name, name);
        p.validate().unwrap();
    }
    assert!(Profile::builtin("no-such-printer").is_none());
}

#[test]
fn toml_round_trips() {
    for name in Profile::builtin_names() {
        let p = Profile::builtin(name).unwrap();
        let text = p.to_toml();
        assert_eq!(Profile::from_toml(&text).unwrap(), p);
    }
}

#[test]
fn toml_errors_name_the_field() {
    let good = Profile::builtin("prusaslicer-b").unwrap().to_toml();
    let bad = good.replace("layer_height_mm = 0.2", "layer_height_mm = -0.2");
    assert_ne!(bad, good);
    match Profile::from_toml(&bad) {
        Err(ProfileError::InvalidField { field, .. }) => assert_eq!(field, "layer_height_mm"),
        other => panic!("{other:?}"),
    }
    let thick = good.replace("first_layer_height_mm = 0.2", "first_layer_height_mm = 0.5");
    match Profile::from_toml(&thick) {
        Err(ProfileError::InvalidField { field, reason }) => {
            assert_eq!(field, "first_layer_height_mm");
            assert!(reason.contains("nozzle"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    let dense = good.replace("infill_density_pct = 20.0", "infill_density_pct = 120.0");
    assert!(matches!(
        Profile::from_toml(&dense),
        Err(ProfileError::InvalidField {
            field: "infill_density_pct",
            ..
        })
    ));
    let unknown = format!("warp_speed_mm_s = 9.0\n{good}");
    match Profile::from_toml(&unknown) {
        Err(ProfileError::Toml(msg)) => assert!(msg.contains("warp_speed_mm_s"), "{msg}"),
        other => panic!("{other:?}"),
    }
    let in_table = format!("{good}\nwarp_speed_mm_s = 9.0\n");
    assert!(Profile::from_toml(&in_table).is_err());
    let missing = good.replace("travel_speed_mm_s = 130.0\n", "");
    match Profile::from_toml(&missing) {
        Err(ProfileError::Toml(msg)) => assert!(msg.contains("travel_speed_mm_s"), "{msg}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn content_hash_is_a_stable_key() {
    let p = Profile::builtin("prusaslicer-b").unwrap();
    let h = p.content_hash();
    assert_eq!(h.len(), 64);
    assert!(h.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(h, p.clone().content_hash());
    assert_eq!(h, Profile::from_toml(&p.to_toml()).unwrap().content_hash());
    let faster = Profile {
        travel_speed_mm_s: 131.0,
        ..p.clone()
    };
    assert_ne!(h, faster.content_hash());
    let names: Vec<String> = Profile::builtin_names()
        .iter()
        .map(|n| Profile::builtin(n).unwrap().content_hash())
        .collect();
    for (i, a) in names.iter().enumerate() {
        for b in &names[i + 1..] {
            assert_ne!(a, b);
        }
    }
}

#[test]
fn shipped_example_profile_is_the_builtin() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles/prusaslicer-b.toml");
    let text = std::fs::read_to_string(path).unwrap();
    assert_eq!(
        Profile::from_toml(&text).unwrap(),
        Profile::builtin("prusaslicer-b").unwrap()
    );
}
