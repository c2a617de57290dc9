//! Real slicer output from `tests/data/gcode/` (PrusaSlicer 2.5 and CuraEngine 4.13).
//! Expectations come from what each file states about itself (its own comments) or from the
//! geometry of the model, not from this crate's output.

use std::io::Read;
use std::path::PathBuf;

use fabrouter_gcode::{
    FlavorFamily, Limits, PrinterLimits, Scanner, Summary, check, flavor_family, scan, warnings,
};

fn reference_dir() -> PathBuf {
    fabrouter_testkit::data("gcode")
}

fn load(name: &str) -> Vec<u8> {
    let path = reference_dir().join(name);
    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(file)
        .read_to_end(&mut out)
        .expect("gunzip");
    out
}

fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).expect("reference files are UTF-8")
}

/// Scans in odd-sized chunks, as an upload would arrive.
fn scan_chunked(bytes: &[u8], chunk: usize) -> Summary {
    let mut s = Scanner::new(bytes.len() as u64, Limits::default()).unwrap();
    for c in bytes.chunks(chunk) {
        s.feed(c).unwrap();
    }
    s.finish().unwrap()
}

/// The value of PrusaSlicer's "; key = value" comment.
fn prusa_comment<'a>(gcode: &'a str, key: &str) -> &'a str {
    let prefix = format!("; {key} = ");
    gcode
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no {key} comment"))
}

fn count_lines(gcode: &str, prefix: &str) -> u32 {
    gcode.lines().filter(|l| l.starts_with(prefix)).count() as u32
}

/// Reads "21m 33s" / "1h 20m 58s" independently of the crate's parser.
fn seconds(s: &str) -> f64 {
    s.split_whitespace()
        .map(|t| {
            let (n, unit) = t.split_at(t.len() - 1);
            let n: f64 = n.parse().unwrap();
            n * match unit {
                "d" => 86400.0,
                "h" => 3600.0,
                "m" => 60.0,
                "s" => 1.0,
                _ => panic!("unit {unit}"),
            }
        })
        .sum()
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

const PRUSA: [&str; 3] = [
    "prusaslicer_B__trimesh__20mm-xyz-cube.gcode.gz",
    "prusaslicer_B__prusaslicer__M3x10_screw.gcode.gz",
    "prusaslicer_B__curaengine__ctrlV_3D_test.gcode.gz",
];
const CURA: [&str; 3] = [
    "curaengine_B__trimesh__20mm-xyz-cube.gcode.gz",
    "curaengine_B__prusaslicer__M3x10_screw.gcode.gz",
    "curaengine_B__curaengine__ctrlV_3D_test.gcode.gz",
];

#[test]
fn reference_directory_is_where_the_tests_expect_it() {
    let dir = reference_dir();
    for name in PRUSA.iter().chain(&CURA) {
        assert!(
            dir.join(name).is_file(),
            "missing {}",
            dir.join(name).display()
        );
    }
}

#[test]
fn prusaslicer_files_agree_with_their_own_comments() {
    for name in PRUSA {
        let bytes = load(name);
        let g = text(&bytes);
        let s = scan_chunked(&bytes, 8191);

        assert_eq!(s.bytes, bytes.len() as u64, "{name}");
        assert_eq!(s.lines, g.lines().count() as u64, "{name}");
        assert_eq!(s.generator.as_deref(), Some("PrusaSlicer 2.5.0"), "{name}");
        assert_eq!(
            s.flavor.as_deref(),
            Some(prusa_comment(g, "gcode_flavor")),
            "{name}"
        );
        assert_eq!(
            s.filament_type.as_deref(),
            Some(prusa_comment(g, "filament_type"))
        );
        let nozzle: f64 = prusa_comment(g, "nozzle_diameter").parse().unwrap();
        assert_eq!(s.nozzle_mm, Some(nozzle), "{name}");
        let layer_height: f64 = prusa_comment(g, "layer_height").parse().unwrap();
        assert_eq!(s.layer_height_mm, Some(layer_height), "{name}");
        assert_eq!(
            s.bed_shape_mm,
            Some([200.0, 200.0]),
            "{name}: bed_shape 0x0,200x0,200x200,0x200"
        );

        let time = seconds(prusa_comment(g, "estimated printing time (normal mode)"));
        assert_eq!(s.slicer_time_s, Some(time), "{name}");
        let filament_mm: f64 = prusa_comment(g, "filament used [mm]").parse().unwrap();
        assert_eq!(s.slicer_filament_mm, Some(filament_mm), "{name}");
        let filament_g: f64 = prusa_comment(g, "filament used [g]").parse().unwrap();
        assert_eq!(s.slicer_filament_g, Some(filament_g), "{name}");

        // Our own extrusion total must agree with the slicer's, to its two printed decimals.
        assert!(
            close(s.extruded_mm, filament_mm, 0.02),
            "{name}: extruded {} vs slicer {filament_mm}",
            s.extruded_mm
        );
        // One ;LAYER_CHANGE per printed layer.
        assert_eq!(s.layers, count_lines(g, ";LAYER_CHANGE"), "{name}");
        // The start G-code sets the hot end with M104/M109 S<temperature>.
        let temperature: f64 = prusa_comment(g, "temperature").parse().unwrap();
        assert_eq!(s.max_hotend_c, temperature, "{name}");
        assert!(
            !s.relative_extrusion,
            "{name}: use_relative_e_distances = 0"
        );
        assert!(!s.inch_units);
        assert_eq!(s.print_known, [true; 3]);
        // First layer at first_layer_height, last at layers × layer height.
        let first: f64 = prusa_comment(g, "first_layer_height").parse().unwrap();
        assert!(
            close(s.print_min_mm[2], first, 1e-9),
            "{name}: {:?}",
            s.print_min_mm
        );
        assert!(
            s.feedrate_time_s > 0.0 && s.feedrate_time_s < time * 1.5,
            "{name}"
        );
        assert!(warnings(&s).is_empty(), "{name}: {:?}", warnings(&s));
    }
}

#[test]
fn curaengine_files_agree_with_their_own_comments() {
    for name in CURA {
        let bytes = load(name);
        let g = text(&bytes);
        let s = scan_chunked(&bytes, 4093);

        assert_eq!(
            s.generator.as_deref(),
            Some("Cura_SteamEngine 4.13.0"),
            "{name}"
        );
        assert_eq!(s.flavor.as_deref(), Some("Marlin"));
        assert_eq!(
            flavor_family(s.flavor.as_deref().unwrap()),
            Some(FlavorFamily::Marlin)
        );
        assert_eq!(s.layer_height_mm, Some(0.2), "{name}: ;Layer height: 0.2");
        let layer_count: u32 = g
            .lines()
            .find_map(|l| l.strip_prefix(";LAYER_COUNT:"))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(s.layers, layer_count, "{name}");
        assert_eq!(layer_count, count_lines(g, ";LAYER:"));

        // CuraEngine run on its own leaves ";TIME:6666" and ";Filament used: 0m" as placeholders;
        // its running ";TIME_ELAPSED:" comments end at the real total.
        assert!(g.contains(";TIME:6666\n") && g.contains(";Filament used: 0m\n"));
        let elapsed: f64 = g
            .lines()
            .filter_map(|l| l.strip_prefix(";TIME_ELAPSED:"))
            .next_back()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(s.slicer_time_s, Some(elapsed), "{name}");
        assert_eq!(s.slicer_filament_mm, None, "{name}");
        // M104 S215 / M109 S215 in the start code; the bed heater is only switched off.
        assert_eq!(s.max_hotend_c, 215.0);
        assert_eq!(s.max_bed_c, 0.0);
        assert_eq!(s.nozzle_mm, None);
        let codes: Vec<_> = warnings(&s).iter().map(|w| w.code).collect();
        assert_eq!(codes, ["nozzle_unknown"], "{name}");
    }
}

/// PrusaSlicer centres the 20 mm cube on its 200 x 200 bed; Cura places it on its own default
/// machine. Either way the printed part is 20 mm on each side.
#[test]
fn cube_geometry() {
    for name in [PRUSA[0], CURA[0]] {
        let bytes = load(name);
        let g = text(&bytes);
        let s = scan(&bytes, Limits::default()).unwrap();
        // Top layer at 20 mm, bottom at 0.2 mm.
        assert!(
            close(s.print_max_mm[2], 20.0, 0.01),
            "{name}: {:?}",
            s.print_max_mm
        );
        assert!(close(s.print_min_mm[2], 0.2, 1e-9), "{name}");
        // The whole print includes the first layer's skirt, a few mm around the part.
        for axis in 0..2 {
            let width = s.print_max_mm[axis] - s.print_min_mm[axis];
            assert!((20.0..40.0).contains(&width), "{name}: width {width}");
        }

        // Everything above the first layer is the cube alone: re-scan from the move up to the
        // second layer (Z 0.4) on, after homing, so the skirt is left out.
        let second_layer = g
            .match_indices('\n')
            .map(|(i, _)| i + 1)
            .find(|&i| {
                let line = g[i..].lines().next().unwrap_or("");
                line.starts_with('G') && line.split_whitespace().any(|w| w == "Z.4" || w == "Z0.4")
            })
            .unwrap();
        let upper = format!("G28\nG90\nM82\nG92 E0\n{}", &g[second_layer..]);
        let u = scan(upper.as_bytes(), Limits::default()).unwrap();
        for axis in 0..2 {
            // Extrusion centre lines: the outer wall is half a line width inside the 20 mm face.
            let width = u.print_max_mm[axis] - u.print_min_mm[axis];
            assert!(
                (19.2..=20.0).contains(&width),
                "{name}: upper width {width}"
            );
        }
        assert!(close(u.print_min_mm[2], 0.4, 1e-9), "{name}");
        assert_eq!(u.layers, s.layers - 1, "{name}");
    }
}

#[test]
fn prusaslicer_cube_centred_on_its_bed() {
    let s = scan(&load(PRUSA[0]), Limits::default()).unwrap();
    for axis in 0..2 {
        let centre = (s.print_min_mm[axis] + s.print_max_mm[axis]) / 2.0;
        assert!(close(centre, 100.0, 0.5), "axis {axis}: {centre}");
    }
}

#[test]
fn whole_byte_by_byte_and_odd_chunks_agree_on_real_files() {
    for name in [PRUSA[1], CURA[1]] {
        let bytes = load(name);
        let whole = scan(&bytes, Limits::default()).unwrap();
        assert_eq!(scan_chunked(&bytes, 1), whole, "{name}");
        assert_eq!(scan_chunked(&bytes, 7), whole, "{name}");
        assert_eq!(scan_chunked(&bytes, 65_537), whole, "{name}");
    }
}

#[test]
fn reference_files_fit_the_printer_they_were_sliced_for() {
    // PrusaSlicer's default printer: bed_shape 200 x 200, max_print_height = 200, flavour
    // "reprap", 0.4 mm nozzle.
    let printer = PrinterLimits {
        build_volume_mm: [200.0, 200.0, 200.0],
        nozzle_diameters_mm: vec![0.4],
        flavor: "reprap".into(),
        max_hotend_c: 250.0,
        max_bed_c: 100.0,
    };
    for name in PRUSA {
        let s = scan(&load(name), Limits::default()).unwrap();
        assert_eq!(check(&s, &printer), vec![], "{name}");
    }

    let small = PrinterLimits {
        build_volume_mm: [100.0, 100.0, 15.0],
        flavor: "marlin2".into(),
        ..printer
    };
    let s = scan(&load(PRUSA[0]), Limits::default()).unwrap();
    let codes: Vec<_> = check(&s, &small).iter().map(|m| m.code).collect();
    // The cube sits around X/Y 100 on a 100 mm bed, is 20 mm tall on a 15 mm printer, and was
    // sliced for a RepRap flavour rather than Marlin.
    assert!(codes.contains(&"bed_size"), "{codes:?}");
    assert!(codes.contains(&"height"), "{codes:?}");
    assert!(codes.contains(&"flavor"), "{codes:?}");
}
