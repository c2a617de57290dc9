//! `check` and `warnings` on scanned synthetic files.

use fabrouter_gcode::{
    BED_MARGIN_MM, Limits, Mismatch, PrinterLimits, Summary, check, scan, warnings,
};

fn run(g: &str) -> Summary {
    scan(g.as_bytes(), Limits::default()).unwrap()
}

fn printer(x: f64, y: f64, z: f64) -> PrinterLimits {
    PrinterLimits {
        build_volume_mm: [x, y, z],
        nozzle_diameters_mm: vec![0.4],
        flavor: "marlin2".into(),
        max_hotend_c: 260.0,
        max_bed_c: 100.0,
    }
}

fn codes(m: &[Mismatch]) -> Vec<&'static str> {
    m.iter().map(|m| m.code).collect()
}

/// A 240 x 180 x 30 mm print with a Prusa-style intro line at Y -3, sliced for Marlin 2.
fn big_print() -> Summary {
    run("; gcode_flavor = marlin2\n; nozzle_diameter = 0.4\n\
         ; estimated printing time (normal mode) = 2h\n\
         M140 S60\nM104 S215\nG28\nG90\nM83\nG1 Z0.2 F720\n\
         G1 X0 Y-3 F6000\nG1 X60 Y-3 E9\n\
         G1 X10 Y10\nG1 X250 Y10 E20\nG1 X250 Y190 E20\nG1 Z30\nG1 X10 Y190 E20\n\
         G1 Z40\nG28 X\n")
}

#[test]
fn fits_a_big_printer() {
    let s = big_print();
    assert_eq!(check(&s, &printer(250.0, 210.0, 210.0)), vec![]);
    assert!(warnings(&s).is_empty(), "{:?}", warnings(&s));
}

#[test]
fn too_big_for_a_small_bed() {
    let s = big_print();
    let m = check(&s, &printer(200.0, 200.0, 200.0));
    assert_eq!(codes(&m), ["bed_size"]);
    assert_eq!(
        m[0].message,
        "the G-code extrudes up to X 250 mm but the printer's bed is 200 x 200 mm; \
         slice it for this printer or pick a larger one"
    );
    // Height of the extrusion (30) counts, not the 40 mm end lift.
    let m = check(&s, &printer(300.0, 300.0, 25.0));
    assert_eq!(codes(&m), ["height"]);
    assert!(
        m[0].message.contains("Z 30 mm") && m[0].message.contains("25 mm"),
        "{}",
        m[0].message
    );
    assert!(check(&s, &printer(300.0, 300.0, 30.0)).is_empty());
}

#[test]
fn bed_margin_applies_to_x_and_y_but_not_z() {
    // Extrusion 4 mm past the edge is within the margin; 6 mm is not.
    let at = |x: f64| run(&format!("G28\nG1 Z0.2\nG1 X10 Y10\nG1 X{x} Y10 E5\n"));
    let p = printer(200.0, 200.0, 200.0);
    assert!(check(&at(200.0 + BED_MARGIN_MM - 1.0), &p).is_empty());
    assert_eq!(
        codes(&check(&at(200.0 + BED_MARGIN_MM + 1.0), &p)),
        ["bed_size"]
    );
    let low = check(&at(-(BED_MARGIN_MM + 1.0)), &p);
    assert_eq!(codes(&low), ["bed_size"]);
    assert!(low[0].message.contains("X -6 mm"), "{}", low[0].message);
    // Extrusion above the build height has no margin.
    let tall = run("G28\nG1 Z200.5\nG1 X10 Y10\nG1 X20 E5\n");
    assert_eq!(codes(&check(&tall, &p)), ["height"]);
}

#[test]
fn travel_outside_the_bed_is_refused_but_travel_height_is_not() {
    // Start G-code parks at X 300 on a 200 mm bed: meant for another printer.
    let s = run("G28\nG1 X300 Y0\nG1 Z0.2\nG1 X10 Y10\nG1 X20 E5\nG1 Z250\n");
    let m = check(&s, &printer(200.0, 200.0, 200.0));
    assert_eq!(codes(&m), ["bed_size"]);
    assert!(
        m[0].message.contains("moves the nozzle to X 300 mm"),
        "{}",
        m[0].message
    );
}

#[test]
fn temperatures_above_the_printers_maxima() {
    let s = run("M104 S285\nM140 S110\nG28\n");
    let m = check(&s, &printer(200.0, 200.0, 200.0));
    assert_eq!(codes(&m), ["hotend_temperature", "bed_temperature"]);
    assert!(m[0].message.contains("285 °C") && m[0].message.contains("260 °C"));
    assert!(m[1].message.contains("110 °C") && m[1].message.contains("100 °C"));
    // Unknown maxima are not checked.
    let mut p = printer(200.0, 200.0, 200.0);
    p.max_hotend_c = 0.0;
    p.max_bed_c = 0.0;
    assert!(check(&s, &p).is_empty());
}

#[test]
fn flavour_families() {
    let s = run(";FLAVOR:Marlin\nG28\n");
    let mut p = printer(200.0, 200.0, 200.0);
    assert!(check(&s, &p).is_empty(), "Marlin vs marlin2: same family");
    p.flavor = "klipper".into();
    let m = check(&s, &p);
    assert_eq!(codes(&m), ["flavor"]);
    assert!(
        m[0].message.contains("Marlin") && m[0].message.contains("Klipper"),
        "{}",
        m[0].message
    );
    p.flavor = String::new();
    assert!(
        check(&s, &p).is_empty(),
        "unknown printer flavour is not a mismatch"
    );

    // Unknown in the G-code: no mismatch, but a warning.
    let s = run("G28\n");
    p.flavor = "klipper".into();
    assert!(check(&s, &p).is_empty());
    assert!(codes(&warnings(&s)).contains(&"flavor_unknown"));
}

#[test]
fn nozzle() {
    let s = run("; nozzle_diameter = 0.6\nG28\n");
    let mut p = printer(200.0, 200.0, 200.0);
    let m = check(&s, &p);
    assert_eq!(codes(&m), ["nozzle"]);
    assert!(m[0].message.contains("0.6 mm nozzle") && m[0].message.contains("0.4 mm"));
    p.nozzle_diameters_mm = vec![0.4, 0.604];
    assert!(check(&s, &p).is_empty(), "within 0.005 mm");
    p.nozzle_diameters_mm.clear();
    assert!(check(&s, &p).is_empty(), "unknown printer nozzle");
}

#[test]
fn warnings_explain_what_could_not_be_checked() {
    let s = run("G28\nG1 X10 F600\n");
    let w = warnings(&s);
    assert_eq!(
        codes(&w),
        [
            "flavor_unknown",
            "nozzle_unknown",
            "no_slicer_estimate",
            "no_extrusion"
        ]
    );
    assert!(w[2].message.contains("1 s"), "{}", w[2].message);
}
