//! Preset resolution on small bundles in tests/data/profiles (always run) and on PrusaSlicer's
//! installed vendor bundles (ignored with the reason where prusa-slicer is missing, failing
//! under CI=true): inheritance and its override order, user bundles over vendor ones, broken
//! bundles named by preset and line, nearest names, and the mapping onto the estimator.

use fabrouter_estimator::{InfillPattern, Profile};
use fabrouter_profiles::{Config, Error, Kind, Library, Triple, to_profile};
use fabrouter_testkit::data;

fn small() -> Library {
    let mut lib = Library::new();
    lib.add_file(&data("profiles/small-vendor.ini")).unwrap();
    lib
}

fn triple(printer: &str, print: &str, filament: &str) -> Triple {
    Triple {
        printer: printer.into(),
        print: print.into(),
        filament: filament.into(),
    }
}

#[test]
fn parents_apply_left_to_right_and_own_values_last() {
    let lib = small();
    // *common*; *fast*; *fine*: *fine* overrides *fast*'s perimeter speed, *fast* overrides
    // *common*'s infill speed.
    let fine = lib.resolve(Kind::Print, "0.10mm FINE @T1").unwrap();
    assert_eq!(fine.value("perimeter_speed"), Some("30"));
    assert_eq!(fine.value("infill_speed"), Some("90"));
    assert_eq!(fine.value("layer_height"), Some("0.1"));
    assert_eq!(fine.value("perimeters"), Some("2"));
    let o = &fine.get("perimeter_speed").unwrap().origin;
    assert_eq!(
        o.to_string(),
        "small-vendor.ini:29 (print preset \"*fine*\")"
    );
    // A concrete parent, then an abstract one, then own lines.
    let draft = lib.resolve(Kind::Print, "0.30mm DRAFT @T1").unwrap();
    assert_eq!(draft.value("top_solid_layers"), Some("5"));
    assert_eq!(draft.value("perimeter_speed"), Some("70"));
    assert_eq!(draft.value("layer_height"), Some("0.3"));
    assert_eq!(draft.value("fill_pattern"), Some("gyroid"));
    assert_eq!(draft.value("inherits"), None);
    // Printer chain of three.
    let p6 = lib
        .resolve(Kind::Printer, "Test Printer One 0.6 nozzle")
        .unwrap();
    assert_eq!(p6.value("nozzle_diameter"), Some("0.6"));
    assert_eq!(p6.value("retract_speed"), Some("70"));
    assert_eq!(p6.value("retract_length"), Some("2.5"));
}

#[test]
fn a_triple_sits_on_prusaslicers_defaults_and_maps_onto_a_profile() {
    let lib = small();
    let c = lib
        .resolve_triple(&triple("Test Printer One", "0.20mm NORMAL @T1", "Test PLA"))
        .unwrap();
    // From the defaults, untouched by the presets.
    assert_eq!(c.value("solid_infill_below_area"), Some("70"));
    assert_eq!(c.value("print_settings_id"), Some("\"0.20mm NORMAL @T1\""));
    let m = to_profile(&c, "t1").unwrap();
    let p = &m.profile;
    assert_eq!(
        (p.build_x_mm, p.build_y_mm, p.build_z_mm),
        (180.0, 180.0, 180.0)
    );
    assert_eq!(p.perimeters, 2);
    assert_eq!(p.top_solid_layers, 5);
    assert_eq!(p.perimeter_speed_mm_s, 40.0);
    assert_eq!(p.external_perimeter_speed_mm_s, 20.0);
    assert_eq!(p.infill_pattern, InfillPattern::Grid);
    assert_eq!(p.infill_density_pct, 20.0);
    assert_eq!(p.travel_speed_mm_s, 120.0);
    assert_eq!(p.max_speed_xy_mm_s, 180.0);
    assert_eq!(p.print_acceleration_mm_s2, 1000.0);
    assert_eq!(p.retract_length_mm, 3.2);
    assert_eq!(m.filament_cost_per_kg, 30.0);
    // 11 mm³/s through a 0.45 x 0.2 bead caps infill at 60 -> 11 / 0.0814 = 135: no cap;
    // solid infill at the default 20 mm/s neither.
    assert_eq!(p.infill_speed_mm_s, 60.0);
    let area = (0.45 - 0.2) * 0.2 + std::f64::consts::PI * 0.04 / 4.0;
    assert!(11.0 / area > 60.0);
}

#[test]
fn a_user_bundle_inherits_system_presets_and_selects_its_triple() {
    let mut lib = small();
    lib.add_file(&data("profiles/user-bundle.ini")).unwrap();
    let t = lib.selected().unwrap().clone();
    assert_eq!(t, triple("Test Printer One", "My NORMAL", "My PLA"));
    let c = lib.resolve_triple(&t).unwrap();
    assert_eq!(c.value("perimeters"), Some("4"));
    assert_eq!(c.value("top_solid_layers"), Some("5"));
    assert_eq!(c.value("infill_speed"), Some("75"));
    assert_eq!(c.value("temperature"), Some("205"));
    assert_eq!(c.value("filament_cost"), Some("30"));
    assert_eq!(
        c.get("perimeters").unwrap().origin.to_string(),
        "user-bundle.ini:6 (print preset \"My NORMAL\")"
    );
}

#[test]
fn an_unknown_name_lists_the_nearest() {
    let lib = small();
    let e = lib.resolve(Kind::Print, "0.20mm NORMAL").unwrap_err();
    let Error::UnknownPreset { nearest, .. } = &e else {
        panic!("{e}")
    };
    assert_eq!(nearest[0], "0.20mm NORMAL @T1", "{e}");
    assert!(
        e.to_string()
            .starts_with("no print preset named \"0.20mm NORMAL\"; nearest: \"0.20mm NORMAL @T1\""),
        "{e}"
    );
    let e = lib.resolve(Kind::Filament, "Test PLA ").unwrap_err();
    assert!(e.to_string().contains("\"Test PLA\""), "{e}");
    // Abstract presets are never offered.
    let e = lib.resolve(Kind::Print, "*common*").unwrap_err();
    let Error::Abstract { nearest, .. } = &e else {
        panic!("{e}")
    };
    assert!(
        !nearest.is_empty() && nearest.iter().all(|n| !n.starts_with('*')),
        "{e}"
    );
}

#[test]
fn a_broken_bundle_names_the_preset_and_line() {
    let mut lib = Library::new();
    lib.add_file(&data("profiles/broken-parent.ini")).unwrap();
    let e = lib.resolve(Kind::Print, "0.20mm BROKEN").unwrap_err();
    assert!(
        e.to_string().starts_with(
            "broken-parent.ini:12: print preset \"0.20mm BROKEN\" inherits \"*comon*\", which is \
             not defined; nearest: \"*common*\""
        ),
        "{e}"
    );
    let e = lib.resolve(Kind::Print, "0.20mm LOOP").unwrap_err();
    assert!(
        e.to_string()
            .contains("inherits itself through 0.20mm LOOP -> *loop a* -> *loop b* -> *loop a*"),
        "{e}"
    );
    let e = lib
        .add_text("[print:a]\nx = 1\n[print:a]\ny = 2\n", "dup.ini")
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "dup.ini:3: print preset \"a\" is defined twice (first on line 1)"
    );
}

#[test]
fn a_bad_value_names_its_preset_and_line() {
    let mut lib = small();
    lib.add_text(
        "[print:Bad]\ninherits = *common*\nperimeter_speed = fast\n",
        "bad.ini",
    )
    .unwrap();
    let c = lib
        .resolve_triple(&triple("Test Printer One", "Bad", "Test PLA"))
        .unwrap();
    let e = to_profile(&c, "bad").unwrap_err();
    assert_eq!(
        e.to_string(),
        "bad.ini:3 (print preset \"Bad\"): `perimeter_speed = fast`: expected a number >= 0"
    );
}

/// The reference config B, exported by PrusaSlicer, is what the built-in `prusaslicer-b`
/// profile was written from: the mapping must give the same profile.
#[test]
fn the_reference_config_maps_onto_the_builtin_profile() {
    let text = std::fs::read_to_string(data("prusaslicer_B_explicit.ini")).unwrap();
    let c = Config::from_flat_ini(&text, "prusaslicer_B_explicit.ini").unwrap();
    let m = to_profile(&c, "prusaslicer-b").unwrap();
    assert_eq!(m.profile, Profile::builtin("prusaslicer-b").unwrap());
}

#[test]
fn the_written_ini_reads_back_the_same() {
    let c = small()
        .resolve_triple(&triple("Test Printer One", "0.30mm DRAFT @T1", "Test PLA"))
        .unwrap();
    let text = c.to_ini();
    assert!(
        text.contains("\nstart_gcode = G28 ; home\\nG1 Z5 F3000\n"),
        "{text}"
    );
    assert!(!text.contains("\ninherits"));
    let back = Config::from_flat_ini(&text, "back.ini").unwrap();
    assert_eq!(back.content_hash(), c.content_hash());
    assert_eq!(
        to_profile(&back, "x").unwrap().profile,
        to_profile(&c, "x").unwrap().profile
    );
}

mod installed {
    use super::*;
    use fabrouter_testkit::{Tool, require};

    const MK3S: &str = "Original Prusa i3 MK3S & MK3S+";

    fn lib() -> Library {
        require(Tool::PrusaSlicer);
        let dir = Library::installed_dir()
            .expect("prusa-slicer is installed but its vendor profiles are not where it puts them");
        let mut lib = Library::new();
        assert!(lib.add_dir(&dir).unwrap() >= 10);
        lib
    }

    #[test]
    #[cfg_attr(
        missing_prusa_slicer,
        ignore = "needs PrusaSlicer's vendor bundles: apt-get install prusa-slicer"
    )]
    fn every_installed_preset_resolves() {
        let lib = lib();
        let mut counts = Vec::new();
        for kind in Kind::ALL {
            let names: Vec<String> = lib.presets(kind).map(|p| p.name).collect();
            for n in &names {
                lib.resolve(kind, n)
                    .unwrap_or_else(|e| panic!("{kind} {n}: {e}"));
            }
            counts.push(names.len());
        }
        // Every FFF printer with the print and filament presets it names as its defaults gives
        // an estimator profile.
        let (mut mapped, stale) = (0, std::cell::Cell::new(0));
        for p in lib.presets(Kind::Printer) {
            let c = lib.resolve(Kind::Printer, &p.name).unwrap();
            if c.value("printer_technology") == Some("SLA") {
                continue;
            }
            let pick = |key: &str| {
                // Multi-extruder printers name one filament per extruder.
                c.value(key)
                    .and_then(|v| fabrouter_profiles::ini::split_names(v).into_iter().next())
                    .unwrap_or_default()
            };
            // Its default print and filament presets, else (some printers name none, or one
            // the bundle no longer has) the first of its own file.
            let choose = |kind: Kind, key: &str| {
                let named = pick(key);
                if lib.resolve(kind, &named).is_ok() {
                    return named;
                }
                stale.set(stale.get() + 1);
                lib.presets(kind)
                    .find(|q| q.file == p.file)
                    .map(|q| q.name)
                    .unwrap_or_default()
            };
            let t = triple(
                &p.name,
                &choose(Kind::Print, "default_print_profile"),
                &choose(Kind::Filament, "default_filament_profile"),
            );
            let full = lib
                .resolve_triple(&t)
                .unwrap_or_else(|e| panic!("{t:?}: {e}"));
            to_profile(&full, &p.name).unwrap_or_else(|e| panic!("{t:?}: {e}"));
            mapped += 1;
        }
        assert!(
            mapped >= 370,
            "{mapped} mapped, {} stale defaults",
            stale.get()
        );
        // The Debian package's 2.5.0 bundles: 505 printer sections, 385 of them concrete.
        assert!(counts[0] >= 380, "{counts:?}");
        assert!(counts[1] >= 300 && counts[2] >= 300, "{counts:?}");
    }

    #[test]
    #[cfg_attr(
        missing_prusa_slicer,
        ignore = "needs PrusaSlicer's vendor bundles: apt-get install prusa-slicer"
    )]
    fn mk3s_quality_resolves_through_its_chain() {
        let lib = lib();
        let t = triple(MK3S, "0.20mm QUALITY @MK3", "Prusament PLA");
        let c = lib.resolve_triple(&t).unwrap();
        // Own lines of 0.20mm QUALITY @MK3 override its parents *0.20mm* and *MK3*.
        assert_eq!(c.value("perimeter_speed"), Some("45"));
        assert_eq!(c.value("fill_pattern"), Some("gyroid"));
        assert_eq!(c.value("fill_density"), Some("15%"));
        let o = &c.get("perimeter_speed").unwrap().origin;
        assert_eq!(o.file.as_ref(), "PrusaResearch.ini");
        assert_eq!(
            o.preset,
            Some((Kind::Print, "0.20mm QUALITY @MK3".to_string()))
        );
        // *MK3* sets travel_speed; nothing below overrides it.
        assert_eq!(c.value("travel_speed"), Some("180"));
        assert_eq!(c.value("printer_model"), Some("MK3S"));
        assert_eq!(c.value("bed_shape"), Some("0x0,250x0,250x210,0x210"));
        let p = to_profile(&c, "mk3s").unwrap().profile;
        assert_eq!(
            (p.build_x_mm, p.build_y_mm, p.build_z_mm),
            (250.0, 210.0, 210.0)
        );
        assert_eq!(p.layer_height_mm, 0.2);
        assert_eq!(p.infill_pattern, InfillPattern::Gyroid);
        assert_eq!(p.perimeter_speed_mm_s, 45.0);
        assert_eq!(p.filament_density_g_cm3, 1.24);
    }

    #[test]
    #[cfg_attr(
        missing_prusa_slicer,
        ignore = "needs PrusaSlicer's vendor bundles: apt-get install prusa-slicer"
    )]
    fn three_printers_map_to_different_profiles() {
        let lib = lib();
        let triples = [
            triple(MK3S, "0.20mm QUALITY @MK3", "Prusament PLA"),
            triple(
                "Original Prusa MINI & MINI+",
                "0.20mm QUALITY @MINI",
                "Prusament PLA",
            ),
            // Its former name, which PrusaSlicer still accepts (`renamed_from`).
            triple(
                "Creality Ender-3",
                "0.20 mm NORMAL (0.4 mm nozzle) @CREALITY",
                "Generic PLA @CREALITY",
            ),
        ];
        let profiles: Vec<Profile> = triples
            .iter()
            .map(|t| {
                let c = lib
                    .resolve_triple(t)
                    .unwrap_or_else(|e| panic!("{t:?}: {e}"));
                to_profile(&c, &t.printer).unwrap().profile
            })
            .collect();
        assert_eq!(profiles[1].build_x_mm, 180.0);
        // bed_shape = 3x3,228x3,228x228,3x228
        assert_eq!(profiles[2].build_x_mm, 225.0);
        assert_ne!(profiles[0].content_hash(), profiles[1].content_hash());
        assert_ne!(profiles[1].content_hash(), profiles[2].content_hash());
    }

    /// `inherits = *ENDER3*; *0.6nozzle*`: the nozzle variant, named last, overrides what the
    /// printer family inherits from `*common*` (`retract_lift_above = 0`), as the vendor means.
    #[test]
    #[cfg_attr(
        missing_prusa_slicer,
        ignore = "needs PrusaSlicer's vendor bundles: apt-get install prusa-slicer"
    )]
    fn a_later_parent_overrides_an_earlier_one_in_a_vendor_bundle() {
        let lib = lib();
        let c = lib
            .resolve(Kind::Printer, "Creality Ender-3 (0.6 mm nozzle)")
            .unwrap();
        assert_eq!(c.value("retract_lift_above"), Some("0.3"));
        assert_eq!(c.value("nozzle_diameter"), Some("0.6"));
        assert_eq!(
            c.get("retract_lift_above").unwrap().origin.preset,
            Some((Kind::Printer, "*0.6nozzle*".to_string()))
        );
        // Retraction comes from *bowden*, the second parent of *ENDER3*.
        assert_eq!(c.value("retract_length"), Some("5"));
    }

    #[test]
    #[cfg_attr(
        missing_prusa_slicer,
        ignore = "needs PrusaSlicer's vendor bundles: apt-get install prusa-slicer"
    )]
    fn a_misspelt_vendor_preset_lists_the_real_ones() {
        let lib = lib();
        let e = lib
            .resolve(Kind::Print, "0.20mm QUALITY MK3")
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"0.20mm QUALITY @MK3\""), "{e}");
        let e = lib
            .resolve(Kind::Printer, "Original Prusa MK3S")
            .unwrap_err()
            .to_string();
        assert!(e.contains(MK3S), "{e}");
    }

    #[test]
    #[cfg_attr(
        missing_prusa_slicer,
        ignore = "needs PrusaSlicer's vendor bundles: apt-get install prusa-slicer"
    )]
    fn a_broken_copy_of_a_vendor_bundle_names_the_preset_and_line() {
        require(Tool::PrusaSlicer);
        let dir = Library::installed_dir().unwrap();
        let text = std::fs::read_to_string(dir.join("PrusaResearch.ini")).unwrap();
        // Drop the *MK3* print preset's section header: its lines join the preset above it,
        // and every preset inheriting *MK3* loses its parent.
        let broken = text.replacen("[print:*MK3*]", "", 1);
        assert_ne!(broken, text);
        let mut lib = Library::new();
        lib.add_text(&broken, "PrusaResearch-broken.ini").unwrap();
        let e = lib.resolve(Kind::Print, "0.20mm QUALITY @MK3").unwrap_err();
        let Error::MissingParent {
            preset,
            parent,
            line,
            ..
        } = &e
        else {
            panic!("{e}")
        };
        assert_eq!(preset, "0.20mm QUALITY @MK3");
        assert_eq!(parent, "*MK3*");
        let line_text = broken.lines().nth(line - 1).unwrap().trim();
        assert_eq!(line_text, "inherits = *0.20mm*; *MK3*", "{e}");
        assert!(e.to_string().contains("\"*MK306*\""), "{e}");
    }
}
