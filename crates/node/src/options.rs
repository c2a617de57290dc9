//! The PrusaSlicer command-line options a job is sliced with on one printer: its bed, height
//! and firmware flavour, the job material's temperatures, and the turn the router chose so
//! the part fits. One pure function, [`slicer_options`], so every input is tested without
//! running the slicer; the argument list it returns is also part of the slice cache key.

use fabrouter_api::v1 as pb;

use crate::config::PrinterConfig;

/// What of an assignment decides how it is sliced.
#[derive(Debug, Clone, Copy, Default)]
pub struct JobInput<'a> {
    /// The material the job is to be printed in.
    pub material: Option<&'a pb::Material>,
    /// How the router found the part fits this printer: turns about x, then y, then z.
    pub rotation: Option<&'a pb::Rotation>,
}

impl<'a> From<&'a pb::JobAssignment> for JobInput<'a> {
    fn from(a: &'a pb::JobAssignment) -> Self {
        Self {
            material: a.material.as_ref(),
            rotation: a.rotation.as_ref(),
        }
    }
}

/// The options to slice one job on one printer with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlicerOptions {
    /// PrusaSlicer's arguments, in order, after `--load <config>`.
    pub args: Vec<String>,
    /// The job's material kind when neither the operator nor the typical figures give its
    /// temperatures, so the profile's own are used (worth a warning to the operator).
    pub untuned_material: Option<String>,
}

/// Why this printer cannot be told how to slice the job.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OptionsError {
    /// A typical temperature of the material is above what the printer may be asked for.
    #[error(
        "{kind} prints at about {hotend_c} °C (bed {bed_c} °C), above this printer's limits ({max_hotend_c} °C, bed {max_bed_c} °C); set hotend_c and bed_c for it in the node's TOML if it can print it"
    )]
    TooHot {
        kind: String,
        hotend_c: u32,
        bed_c: u32,
        max_hotend_c: f64,
        max_bed_c: f64,
    },
}

/// PrusaSlicer's options for slicing `job` on `printer`, in this order: flavour (when
/// PrusaSlicer knows it), bed shape, print height and centre; the material's temperatures;
/// the router's rotation. No I/O: the caller picks the config file and runs the slicer.
pub fn slicer_options(
    printer: &PrinterConfig,
    job: JobInput<'_>,
) -> Result<SlicerOptions, OptionsError> {
    let mut args = printer_overrides(printer);
    let own_config = printer.slicer_config.is_some();
    let temps = material_temperatures(printer, job.material, own_config)?;
    args.extend(temperature_overrides(temps.hotend_c, temps.bed_c));
    if let Some(r) = job.rotation {
        args.extend(rotation_overrides(r));
    }
    Ok(SlicerOptions {
        args,
        untuned_material: temps.untuned,
    })
}

/// Options that make the G-code fit this printer's bed and firmware whatever the profile's
/// config says (one profile is shared by printers of different sizes and firmware).
fn printer_overrides(cfg: &PrinterConfig) -> Vec<String> {
    let [x, y, z] = cfg.build_volume_mm;
    let mut options = Vec::new();
    if PRUSASLICER_FLAVORS.contains(&cfg.firmware_flavor.as_str()) {
        options.extend(["--gcode-flavor".to_string(), cfg.firmware_flavor.clone()]);
    }
    options.extend([
        "--bed-shape".into(),
        format!("0x0,{x}x0,{x}x{y},0x{y}"),
        "--max-print-height".into(),
        format!("{z}"),
        "--center".into(),
        format!("{},{}", x / 2.0, y / 2.0),
    ]);
    options
}

/// The router found the part fits this printer only turned; it is sliced turned so.
/// PrusaSlicer applies its transforms in command-line order, as the router means them: about
/// x, then y, then z. A zero (or non-finite) turn adds nothing.
fn rotation_overrides(r: &pb::Rotation) -> Vec<String> {
    [
        ("--rotate-x", r.x_deg),
        ("--rotate-y", r.y_deg),
        ("--rotate", r.z_deg),
    ]
    .into_iter()
    .filter(|(_, deg)| deg.is_finite() && *deg != 0.0)
    .flat_map(|(flag, deg)| [flag.to_string(), format!("{deg}")])
    .collect()
}

/// Typical hot-end and bed temperatures, °C, of well-known FDM materials (PrusaSlicer's
/// generic filament profiles): the node's built-in slicer profile has none of its own.
const TYPICAL_TEMPERATURES: &[(&[&str], u32, u32)] = &[
    (&["PLA"], 215, 60),
    (&["PETG", "PET-G", "PET"], 240, 85),
    (&["ABS"], 255, 100),
    (&["ASA"], 260, 105),
    (&["TPU", "FLEX"], 230, 50),
];

/// The temperatures to slice a material with, each `None` to keep the profile's.
#[derive(Debug, Default, PartialEq)]
struct Temperatures {
    hotend_c: Option<u32>,
    bed_c: Option<u32>,
    /// The material's kind when the built-in profile's figures are used for want of others.
    untuned: Option<String>,
}

/// The hot-end and bed temperatures to slice `material` with on this printer: the operator's
/// for that material where given; else, on the built-in profile (`own_config` false), the
/// typical ones for its kind. An error when a typical figure is above what the printer may be
/// asked for.
fn material_temperatures(
    cfg: &PrinterConfig,
    material: Option<&pb::Material>,
    own_config: bool,
) -> Result<Temperatures, OptionsError> {
    let Some(m) = material.filter(|m| !m.kind.trim().is_empty()) else {
        return Ok(Temperatures::default());
    };
    let kind = m.kind.trim();
    let declared = cfg
        .materials
        .iter()
        .filter(|c| c.kind.trim().eq_ignore_ascii_case(kind))
        .find(|c| {
            c.colour.is_empty() || m.colour.is_empty() || c.colour.eq_ignore_ascii_case(&m.colour)
        });
    let (hotend, bed) = (
        declared.and_then(|c| c.hotend_c),
        declared.and_then(|c| c.bed_c),
    );
    if own_config || (hotend.is_some() && bed.is_some()) {
        return Ok(Temperatures {
            hotend_c: hotend,
            bed_c: bed,
            untuned: None,
        });
    }
    let Some(&(_, typical_hotend, typical_bed)) = TYPICAL_TEMPERATURES
        .iter()
        .find(|(names, _, _)| names.iter().any(|n| n.eq_ignore_ascii_case(kind)))
    else {
        return Ok(Temperatures {
            hotend_c: hotend,
            bed_c: bed,
            untuned: Some(kind.to_string()),
        });
    };
    let too_hot = (hotend.is_none() && f64::from(typical_hotend) > cfg.max_hotend_c)
        || (bed.is_none() && f64::from(typical_bed) > cfg.max_bed_c);
    if too_hot {
        return Err(OptionsError::TooHot {
            kind: kind.to_string(),
            hotend_c: typical_hotend,
            bed_c: typical_bed,
            max_hotend_c: cfg.max_hotend_c,
            max_bed_c: cfg.max_bed_c,
        });
    }
    Ok(Temperatures {
        hotend_c: Some(hotend.unwrap_or(typical_hotend)),
        bed_c: Some(bed.unwrap_or(typical_bed)),
        untuned: None,
    })
}

/// PrusaSlicer options for these temperatures, first layer included.
fn temperature_overrides(hotend_c: Option<u32>, bed_c: Option<u32>) -> Vec<String> {
    [
        ("--temperature", hotend_c),
        ("--first-layer-temperature", hotend_c),
        ("--bed-temperature", bed_c),
        ("--first-layer-bed-temperature", bed_c),
    ]
    .into_iter()
    .filter_map(|(flag, c)| c.map(|c| [flag.to_string(), c.to_string()]))
    .flatten()
    .collect()
}

/// The `gcode_flavor` values PrusaSlicer knows; another flavour keeps the profile's own.
const PRUSASLICER_FLAVORS: &[&str] = &[
    "reprap",
    "reprapfirmware",
    "repetier",
    "teacup",
    "makerware",
    "marlin",
    "marlin2",
    "klipper",
    "sailfish",
    "mach3",
    "machinekit",
    "smoothie",
];

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use super::*;
    use crate::config::NodeConfig;

    /// The test config's printer (`config::tests::GOOD`: 200 mm cube, marlin2, limits 270 °C
    /// and bed 120 °C) with these materials, on the built-in profile or its own.
    fn printer(materials: &str, own_config: bool) -> PrinterConfig {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("own.ini"), "").unwrap();
        let mut toml = crate::config::tests::GOOD.replace(
            r#"materials = [{ kind = "PLA", colour = "black" }]"#,
            &format!("materials = {materials}"),
        );
        // A key of the printer's table, which comes last.
        if own_config {
            toml.push_str("slicer_config = \"own.ini\"\n");
        }
        NodeConfig::from_toml_str(&toml, dir.path())
            .unwrap()
            .printers
            .remove(0)
    }

    fn plain() -> PrinterConfig {
        printer(r#"[{ kind = "PLA" }]"#, false)
    }

    fn material(kind: &str, colour: &str) -> pb::Material {
        pb::Material {
            kind: kind.into(),
            colour: colour.into(),
        }
    }

    fn rotation(x_deg: f64, y_deg: f64, z_deg: f64) -> pb::Rotation {
        pb::Rotation {
            x_deg,
            y_deg,
            z_deg,
        }
    }

    fn strings(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    /// The arguments for the plain printer of [`printer`].
    const PRINTER: &[&str] = &[
        "--gcode-flavor",
        "marlin2",
        "--bed-shape",
        "0x0,200x0,200x200,0x200",
        "--max-print-height",
        "200",
        "--center",
        "100,100",
    ];

    /// The arguments after the printer's, for a material.
    fn for_material(p: &PrinterConfig, m: &pb::Material) -> Result<Vec<String>, OptionsError> {
        let job = JobInput {
            material: Some(m),
            rotation: None,
        };
        slicer_options(p, job).map(|o| o.args[PRINTER.len()..].to_vec())
    }

    /// The arguments after the printer's, for a rotation.
    fn for_rotation(x_deg: f64, y_deg: f64, z_deg: f64) -> Vec<String> {
        let r = rotation(x_deg, y_deg, z_deg);
        let job = JobInput {
            material: None,
            rotation: Some(&r),
        };
        let args = slicer_options(&plain(), job).unwrap().args;
        assert_eq!(args[..PRINTER.len()], strings(PRINTER));
        args[PRINTER.len()..].to_vec()
    }

    fn temperatures(hotend: &str, bed: &str) -> Vec<String> {
        strings(&[
            "--temperature",
            hotend,
            "--first-layer-temperature",
            hotend,
            "--bed-temperature",
            bed,
            "--first-layer-bed-temperature",
            bed,
        ])
    }

    #[test]
    fn without_material_or_rotation_only_the_printer_is_set() {
        let o = slicer_options(&plain(), JobInput::default()).unwrap();
        assert_eq!(o.args, strings(PRINTER));
        assert_eq!(o.untuned_material, None);
        // A blank material is no material.
        assert_eq!(for_material(&plain(), &material("  ", "red")), Ok(vec![]));
    }

    #[test]
    fn the_whole_list_is_printer_then_temperatures_then_rotation() {
        // The list is part of the slice cache key: its order is kept.
        let (m, r) = (material("PETG", ""), rotation(0.0, -90.0, 45.0));
        let a = pb::JobAssignment {
            material: Some(m),
            rotation: Some(r),
            ..Default::default()
        };
        let o = slicer_options(&plain(), JobInput::from(&a)).unwrap();
        let mut want = strings(PRINTER);
        want.extend(temperatures("240", "85"));
        want.extend(strings(&["--rotate-y", "-90", "--rotate", "45"]));
        assert_eq!(o.args, want);
    }

    #[test]
    fn bed_height_and_centre_follow_the_printers_build_volume() {
        let mut p = plain();
        p.build_volume_mm = [250.0, 210.5, 220.0];
        let o = slicer_options(&p, JobInput::default()).unwrap();
        assert_eq!(
            o.args,
            strings(&[
                "--gcode-flavor",
                "marlin2",
                "--bed-shape",
                "0x0,250x0,250x210.5,0x210.5",
                "--max-print-height",
                "220",
                "--center",
                "125,105.25",
            ])
        );
    }

    #[test]
    fn each_flavour_prusaslicer_knows_is_passed_on() {
        for flavour in PRUSASLICER_FLAVORS {
            let mut p = plain();
            p.firmware_flavor = flavour.to_string();
            let args = slicer_options(&p, JobInput::default()).unwrap().args;
            assert_eq!(args[..2], strings(&["--gcode-flavor", flavour]));
            assert_eq!(args[2..], strings(&PRINTER[2..]));
        }
    }

    #[test]
    fn a_flavour_prusaslicer_does_not_know_keeps_the_profiles() {
        let mut p = plain();
        p.firmware_flavor = "grbl".into();
        let args = slicer_options(&p, JobInput::default()).unwrap().args;
        assert_eq!(args, strings(&PRINTER[2..]));
    }

    #[test]
    fn each_known_material_gets_its_typical_temperatures_on_the_built_in_profile() {
        let p = plain();
        for (kind, hotend, bed) in [
            ("PLA", "215", "60"),
            ("PETG", "240", "85"),
            ("PET-G", "240", "85"),
            ("PET", "240", "85"),
            ("ABS", "255", "100"),
            ("ASA", "260", "105"),
            ("TPU", "230", "50"),
            ("FLEX", "230", "50"),
            // Case and blanks around the kind do not matter.
            (" petg ", "240", "85"),
        ] {
            assert_eq!(
                for_material(&p, &material(kind, "")),
                Ok(temperatures(hotend, bed)),
                "{kind}"
            );
        }
    }

    #[test]
    fn an_unknown_material_keeps_the_profiles_temperatures_and_is_named() {
        let m = material("PEEK", "");
        let job = JobInput {
            material: Some(&m),
            rotation: None,
        };
        let o = slicer_options(&plain(), job).unwrap();
        assert_eq!(o.args, strings(PRINTER));
        assert_eq!(o.untuned_material.as_deref(), Some("PEEK"));
        // One figure of the operator's is still used.
        let p = printer(r#"[{ kind = "PEEK", hotend_c = 260 }]"#, false);
        let o = slicer_options(&p, job).unwrap();
        assert_eq!(
            o.args[PRINTER.len()..],
            strings(&["--temperature", "260", "--first-layer-temperature", "260"])
        );
        assert_eq!(o.untuned_material.as_deref(), Some("PEEK"));
    }

    #[test]
    fn the_operators_temperatures_win_one_by_one() {
        let declared = r#"[{ kind = "PETG", hotend_c = 235 }, { kind = "ABS", hotend_c = 245, bed_c = 95 }, { kind = "PLA", colour = "red", bed_c = 55 }]"#;
        let p = printer(declared, false);
        let t = |kind: &str, colour: &str| for_material(&p, &material(kind, colour));
        assert_eq!(t("PETG", ""), Ok(temperatures("235", "85")));
        assert_eq!(t("ABS", "white"), Ok(temperatures("245", "95")));
        // Per colour: red PLA has its own bed, blue PLA the typical one.
        assert_eq!(t("PLA", "red"), Ok(temperatures("215", "55")));
        assert_eq!(t("PLA", "blue"), Ok(temperatures("215", "60")));
    }

    #[test]
    fn a_printer_with_its_own_config_keeps_its_temperatures_but_the_operators() {
        let declared = r#"[{ kind = "PETG", hotend_c = 235 }, { kind = "PLA" }]"#;
        let p = printer(declared, true);
        let t = |kind: &str| for_material(&p, &material(kind, ""));
        assert_eq!(
            t("PETG"),
            Ok(strings(&[
                "--temperature",
                "235",
                "--first-layer-temperature",
                "235"
            ]))
        );
        assert_eq!(t("PLA"), Ok(vec![]));
        assert_eq!(t("PEEK"), Ok(vec![]));
    }

    #[test]
    fn a_typical_temperature_above_the_printers_limits_is_refused() {
        let mut p = plain();
        p.max_hotend_c = 250.0;
        let e = for_material(&p, &material("ABS", "")).unwrap_err();
        assert_eq!(
            e,
            OptionsError::TooHot {
                kind: "ABS".into(),
                hotend_c: 255,
                bed_c: 100,
                max_hotend_c: 250.0,
                max_bed_c: 120.0,
            }
        );
        assert_eq!(
            e.to_string(),
            "ABS prints at about 255 °C (bed 100 °C), above this printer's limits (250 °C, bed 120 °C); set hotend_c and bed_c for it in the node's TOML if it can print it"
        );
        // The bed alone is enough.
        let mut p = plain();
        p.max_bed_c = 90.0;
        assert!(matches!(
            for_material(&p, &material("ASA", "")),
            Err(OptionsError::TooHot { bed_c: 105, .. })
        ));
        // The operator's own figure for the part that is too hot makes it printable.
        let mut p = printer(r#"[{ kind = "ABS", hotend_c = 245 }]"#, false);
        p.max_hotend_c = 250.0;
        assert_eq!(
            for_material(&p, &material("ABS", "")),
            Ok(temperatures("245", "100"))
        );
    }

    // The router sends (see `rotation` in crates/server/src/network.rs, from the scheduler's
    // `Orientation`): x up = (0, -90, z), y up = (90, 0, z), as uploaded = (0, 0, z), with
    // z a multiple of 5 in 0..=90.

    #[test]
    fn as_uploaded_no_turn_is_passed() {
        assert_eq!(for_rotation(0.0, 0.0, 0.0), Vec::<String>::new());
        assert_eq!(for_rotation(-0.0, 0.0, -0.0), Vec::<String>::new());
    }

    #[test]
    fn a_turn_about_z_reaches_prusaslicer_as_rotate() {
        assert_eq!(for_rotation(0.0, 0.0, 90.0), strings(&["--rotate", "90"]));
        assert_eq!(for_rotation(0.0, 0.0, 45.0), strings(&["--rotate", "45"]));
    }

    #[test]
    fn laid_on_its_side_reaches_prusaslicer_as_rotate_y() {
        assert_eq!(
            for_rotation(0.0, -90.0, 0.0),
            strings(&["--rotate-y", "-90"])
        );
    }

    #[test]
    fn laid_on_its_front_reaches_prusaslicer_as_rotate_x() {
        assert_eq!(for_rotation(90.0, 0.0, 0.0), strings(&["--rotate-x", "90"]));
    }

    #[test]
    fn turns_reach_prusaslicer_in_the_routers_order_x_y_z() {
        assert_eq!(
            for_rotation(0.0, -90.0, 35.0),
            strings(&["--rotate-y", "-90", "--rotate", "35"])
        );
        assert_eq!(
            for_rotation(12.5, -7.25, 300.0),
            strings(&[
                "--rotate-x",
                "12.5",
                "--rotate-y",
                "-7.25",
                "--rotate",
                "300"
            ])
        );
    }

    #[test]
    fn every_rotation_the_router_sends_reaches_prusaslicer() {
        for (up, x, y) in [("z", 0.0, 0.0), ("x", 0.0, -90.0), ("y", 90.0, 0.0)] {
            for z in (0..=90).step_by(5) {
                let mut want = Vec::new();
                match up {
                    "x" => want.extend(strings(&["--rotate-y", "-90"])),
                    "y" => want.extend(strings(&["--rotate-x", "90"])),
                    _ => {}
                }
                if z != 0 {
                    want.extend(["--rotate".to_string(), z.to_string()]);
                }
                assert_eq!(for_rotation(x, y, f64::from(z)), want, "{up} up, {z}°");
            }
        }
    }

    #[test]
    fn a_non_finite_turn_is_left_out() {
        assert_eq!(
            for_rotation(f64::NAN, f64::INFINITY, 90.0),
            strings(&["--rotate", "90"])
        );
    }

    /// An ASCII STL of a box from the origin to `size`, mm.
    fn box_stl(path: &Path, size: [f64; 3]) {
        let corner =
            |i: usize| std::array::from_fn::<f64, 3, _>(|a| size[a] * ((i >> a) & 1) as f64);
        let mut stl = String::from("solid box\n");
        for axis in 0..3 {
            let (u, v) = ((axis + 1) % 3, (axis + 2) % 3);
            for side in [0, 1] {
                // Corners of this face, counter-clockwise seen from outside.
                let at = |a: usize, b: usize| corner((side << axis) | (a << u) | (b << v));
                let mut quad = [at(0, 0), at(1, 0), at(1, 1), at(0, 1)];
                if side == 0 {
                    quad.reverse();
                }
                let mut normal = [0.0; 3];
                normal[axis] = if side == 1 { 1.0 } else { -1.0 };
                for tri in [[quad[0], quad[1], quad[2]], [quad[0], quad[2], quad[3]]] {
                    let [nx, ny, nz] = normal;
                    stl.push_str(&format!("facet normal {nx} {ny} {nz}\nouter loop\n"));
                    for [x, y, z] in tri {
                        stl.push_str(&format!("vertex {x} {y} {z}\n"));
                    }
                    stl.push_str("endloop\nendfacet\n");
                }
            }
        }
        stl.push_str("endsolid box\n");
        std::fs::write(path, stl).unwrap();
    }

    /// Size along x, y, z of what the G-code extrudes, skirt left out, and its top.
    fn printed_extent(gcode: &str) -> ([f64; 3], f64) {
        let (mut pos, mut e, mut relative, mut skirt) = ([0.0f64; 3], 0.0, false, false);
        let (mut lo, mut hi) = ([f64::MAX; 3], [f64::MIN; 3]);
        for line in gcode.lines() {
            if let Some(t) = line.strip_prefix(";TYPE:") {
                skirt = t.starts_with("Skirt");
                continue;
            }
            let mut words = line.split(';').next().unwrap_or("").split_whitespace();
            let word = |w: &str, c: char| w.strip_prefix(c).and_then(|v| v.parse::<f64>().ok());
            match words.next() {
                Some("M82") => relative = false,
                Some("M83") => relative = true,
                Some("G92") => e = words.find_map(|w| word(w, 'E')).unwrap_or(e),
                Some("G0" | "G1") => {
                    let (mut to, mut extrudes, mut moves) = (pos, false, false);
                    for w in words {
                        for (i, c) in ['X', 'Y', 'Z'].into_iter().enumerate() {
                            if let Some(v) = word(w, c) {
                                to[i] = v;
                                moves |= i < 2;
                            }
                        }
                        if let Some(v) = word(w, 'E') {
                            extrudes = if relative { v > 0.0 } else { v > e };
                            if !relative {
                                e = v;
                            }
                        }
                    }
                    if extrudes && moves && !skirt {
                        for i in 0..3 {
                            lo[i] = lo[i].min(pos[i]).min(to[i]);
                            hi[i] = hi[i].max(pos[i]).max(to[i]);
                        }
                    }
                    pos = to;
                }
                _ => {}
            }
        }
        (std::array::from_fn(|i| hi[i] - lo[i]), hi[2])
    }

    fn real_slicer(dir: &Path) -> (crate::slicer::Slicer, PathBuf) {
        let config = dir.join("prusaslicer-b.ini");
        std::fs::write(&config, crate::slicer::DEFAULT_CONFIG).unwrap();
        let slicer =
            crate::slicer::Slicer::new("prusa-slicer", Duration::from_secs(120), &dir.join("c"));
        (slicer, config)
    }

    #[tokio::test]
    #[cfg_attr(
        missing_prusa_slicer,
        ignore = "prusa-slicer is not installed (apt-get install prusa-slicer)"
    )]
    async fn prusaslicer_writes_the_materials_temperatures() {
        fabrouter_testkit::require(fabrouter_testkit::Tool::PrusaSlicer);
        let dir = tempfile::tempdir().unwrap();
        let (slicer, config) = real_slicer(dir.path());
        let p = printer(r#"[{ kind = "PETG" }]"#, false);
        let m = material("PETG", "");
        let job = JobInput {
            material: Some(&m),
            rotation: None,
        };
        let options = slicer_options(&p, job).unwrap();
        let sliced = slicer
            .slice(
                &crate::slicer::tests::cube_stl(),
                "cube",
                &config,
                &options.args,
            )
            .await
            .unwrap();
        let text = std::fs::read_to_string(sliced.path).unwrap();
        let sets = |code: &str| text.lines().any(|l| l.starts_with(code));
        assert!(
            sets("M104 S240") || sets("M109 S240"),
            "hot end not at 240 °C"
        );
        assert!(sets("M140 S85") || sets("M190 S85"), "bed not at 85 °C");
    }

    #[tokio::test]
    #[cfg_attr(
        missing_prusa_slicer,
        ignore = "prusa-slicer is not installed (apt-get install prusa-slicer)"
    )]
    async fn prusaslicer_slices_the_part_turned_as_the_router_says() {
        fabrouter_testkit::require(fabrouter_testkit::Tool::PrusaSlicer);
        let dir = tempfile::tempdir().unwrap();
        let (slicer, config) = real_slicer(dir.path());
        // Not a cube, so every turn shows: 10 mm along x, 20 along y, 40 tall.
        let model = dir.path().join("box.stl");
        box_stl(&model, [10.0, 20.0, 40.0]);
        let p = plain();
        // Layer height of the built-in profile.
        let layer = 0.2;
        for (what, r, placed) in [
            ("as uploaded", rotation(0.0, 0.0, 0.0), [10.0, 20.0, 40.0]),
            ("x axis up", rotation(0.0, -90.0, 0.0), [40.0, 20.0, 10.0]),
            ("y axis up", rotation(90.0, 0.0, 0.0), [10.0, 40.0, 20.0]),
            (
                "x axis up, turned 90° about z",
                rotation(0.0, -90.0, 90.0),
                [20.0, 40.0, 10.0],
            ),
        ] {
            let job = JobInput {
                material: None,
                rotation: Some(&r),
            };
            let options = slicer_options(&p, job).unwrap();
            let sliced = slicer
                .slice(&model, "box", &config, &options.args)
                .await
                .unwrap();
            let (extent, top) = printed_extent(&std::fs::read_to_string(sliced.path).unwrap());
            // The last layer is at the part's height; the outer perimeter's moves run half a
            // line width inside the outline, so the footprint comes out ~0.4 mm short.
            assert!(
                (top - placed[2]).abs() <= layer / 2.0,
                "{what}: top at {top} mm, the turned part is {} mm tall",
                placed[2]
            );
            for i in 0..2 {
                assert!(
                    (extent[i] - placed[i]).abs() <= 1.0,
                    "{what}: printed {extent:?} mm, the turned part is {placed:?} mm"
                );
            }
            eprintln!("{what}: printed {extent:?} mm (top {top}), turned part {placed:?} mm");
        }
    }
}
