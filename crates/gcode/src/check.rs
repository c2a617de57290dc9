//! Does a scanned file fit a printer?

use crate::Summary;

/// How far outside the nominal bed X/Y may go. Printers park and prime just off the bed (a
/// Prusa's intro line runs at Y -3), so an exact bound would reject their own G-code.
pub const BED_MARGIN_MM: f64 = 5.0;
/// Extrusion height tolerance: no margin, only decimal rounding in the file.
const HEIGHT_TOLERANCE_MM: f64 = 0.01;
/// Nozzle diameters are declared with two or three decimals.
const NOZZLE_TOLERANCE_MM: f64 = 0.005;

/// What the printer can do, as far as the check needs to know.
#[derive(Debug, Clone, PartialEq)]
pub struct PrinterLimits {
    /// X, Y, Z in mm; an entry ≤ 0 means unknown and is not checked.
    pub build_volume_mm: [f64; 3],
    /// Nozzles fitted; empty means unknown.
    pub nozzle_diameters_mm: Vec<f64>,
    /// Firmware flavour, e.g. "marlin2" or "klipper"; empty means unknown.
    pub flavor: String,
    /// ≤ 0 means unknown.
    pub max_hotend_c: f64,
    /// ≤ 0 means unknown.
    pub max_bed_c: f64,
}

/// One reason a file does not fit a printer (or, from [`warnings`], something not checkable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// Stable machine-readable kind: "bed_size", "height", "hotend_temperature",
    /// "bed_temperature", "flavor", "nozzle"; for warnings "flavor_unknown", "nozzle_unknown",
    /// "no_slicer_estimate", "inch_units", "no_extrusion", "bounds_unknown".
    pub code: &'static str,
    /// A sentence for the person who uploaded the file, with the numbers involved.
    pub message: String,
}

/// Firmware families whose G-code is interchangeable enough for routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlavorFamily {
    Marlin,
    RepRapFirmware,
    Klipper,
    Repetier,
    Smoothie,
    Sprinter,
    Other,
}

impl FlavorFamily {
    fn name(self) -> &'static str {
        match self {
            FlavorFamily::Marlin => "Marlin",
            FlavorFamily::RepRapFirmware => "RepRapFirmware",
            FlavorFamily::Klipper => "Klipper",
            FlavorFamily::Repetier => "Repetier",
            FlavorFamily::Smoothie => "Smoothieware",
            FlavorFamily::Sprinter => "Sprinter",
            FlavorFamily::Other => "other",
        }
    }
}

/// Maps a flavour as slicers and printer configs spell it to its family, ignoring case, blanks,
/// `-`/`_` and a parenthesised suffix (Cura's "Marlin(Volumetric)"). None for an empty string;
/// [`FlavorFamily::Other`] for anything unrecognised.
///
/// "reprap" maps to RepRapFirmware. Current PrusaSlicer labels that value "RepRap/Sprinter" and
/// has a separate "reprapfirmware", but older releases used "reprap" for Duet boards too, and
/// Cura's ";FLAVOR:RepRap" means RepRapFirmware.
pub fn flavor_family(s: &str) -> Option<FlavorFamily> {
    let base = s.split('(').next().unwrap_or(s);
    let key: String = base
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-' && *c != '_')
        .flat_map(char::to_lowercase)
        .collect();
    if key.is_empty() {
        return None;
    }
    Some(match key.as_str() {
        "marlin" | "marlin2" | "marlinlegacy" => FlavorFamily::Marlin,
        "reprap" | "reprapfirmware" | "rrf" => FlavorFamily::RepRapFirmware,
        "klipper" => FlavorFamily::Klipper,
        "repetier" => FlavorFamily::Repetier,
        "smoothie" | "smoothieware" => FlavorFamily::Smoothie,
        "sprinter" | "teacup" => FlavorFamily::Sprinter,
        _ => FlavorFamily::Other,
    })
}

/// Everything that stops `summary` from printing on `printer`; empty means it fits.
pub fn check(summary: &Summary, printer: &PrinterLimits) -> Vec<Mismatch> {
    let mut out = Vec::new();
    let [bx, by, bz] = printer.build_volume_mm;
    let bed = format!("{} x {} mm", num(bx), num(by));
    let m = BED_MARGIN_MM;
    let extrudes = summary.extruding_moves > 0;

    for (axis, (name, size)) in [("X", bx), ("Y", by)].into_iter().enumerate() {
        if size <= 0.0 {
            continue;
        }
        let (lo, hi) = (-m, size + m);
        let (mut lo_done, mut hi_done) = (false, false);
        if extrudes && summary.print_known[axis] {
            let (min, max) = (summary.print_min_mm[axis], summary.print_max_mm[axis]);
            if max > hi {
                hi_done = true;
                out.push(Mismatch {
                    code: "bed_size",
                    message: format!(
                        "the G-code extrudes up to {name} {} mm but the printer's bed is {bed}; \
                         slice it for this printer or pick a larger one",
                        num(max)
                    ),
                });
            }
            if min < lo {
                lo_done = true;
                out.push(Mismatch {
                    code: "bed_size",
                    message: format!(
                        "the G-code extrudes down to {name} {} mm, more than {} mm past the edge \
                         of the printer's {bed} bed at {name} 0; re-slice it with the object \
                         placed on this printer's bed",
                        num(min),
                        num(m)
                    ),
                });
            }
        }
        if summary.move_known[axis] {
            let (min, max) = (summary.move_min_mm[axis], summary.move_max_mm[axis]);
            let outside = [(max > hi && !hi_done, max), (min < lo && !lo_done, min)];
            for (bad, at) in outside {
                if bad {
                    out.push(Mismatch {
                        code: "bed_size",
                        message: format!(
                            "the G-code moves the nozzle to {name} {} mm, more than {} mm outside \
                             the printer's {bed} bed; its start or end G-code is probably for \
                             another printer, so slice it for this one",
                            num(at),
                            num(m)
                        ),
                    });
                }
            }
        }
    }

    if bz > 0.0
        && extrudes
        && summary.print_known[2]
        && summary.print_max_mm[2] > bz + HEIGHT_TOLERANCE_MM
    {
        out.push(Mismatch {
            code: "height",
            message: format!(
                "the G-code prints up to Z {} mm but the printer's build height is {} mm; \
                 scale the model down or pick a taller printer",
                num(summary.print_max_mm[2]),
                num(bz)
            ),
        });
    }

    if printer.max_hotend_c > 0.0 && summary.max_hotend_c > printer.max_hotend_c {
        out.push(Mismatch {
            code: "hotend_temperature",
            message: format!(
                "the G-code heats the hot end to {} °C but this printer allows at most {} °C; \
                 re-slice it with a material profile within that, or pick a printer rated for it",
                num(summary.max_hotend_c),
                num(printer.max_hotend_c)
            ),
        });
    }
    if printer.max_bed_c > 0.0 && summary.max_bed_c > printer.max_bed_c {
        out.push(Mismatch {
            code: "bed_temperature",
            message: format!(
                "the G-code heats the bed to {} °C but this printer's bed reaches at most {} °C; \
                 re-slice it with a lower bed temperature, or pick a printer whose bed gets that hot",
                num(summary.max_bed_c),
                num(printer.max_bed_c)
            ),
        });
    }

    if let (Some(declared), Some(theirs)) =
        (summary.flavor.as_deref(), flavor_family(&printer.flavor))
        && let Some(ours) = flavor_family(declared)
    {
        // Two unrecognised flavours are only the same if they are spelled the same.
        let differ = ours != theirs
            || (ours == FlavorFamily::Other
                && !declared.trim().eq_ignore_ascii_case(printer.flavor.trim()));
        if differ {
            out.push(Mismatch {
                code: "flavor",
                message: format!(
                    "the G-code was sliced for {} firmware (flavour \"{declared}\") but the printer \
                     runs {} (\"{}\"); re-slice it with this printer's G-code flavour",
                    ours.name(),
                    theirs.name(),
                    printer.flavor.trim()
                ),
            });
        }
    }

    if let Some(nozzle) = summary.nozzle_mm
        && !printer.nozzle_diameters_mm.is_empty()
        && !printer
            .nozzle_diameters_mm
            .iter()
            .any(|d| (d - nozzle).abs() <= NOZZLE_TOLERANCE_MM)
    {
        let fitted: Vec<String> = printer
            .nozzle_diameters_mm
            .iter()
            .map(|&d| num(d))
            .collect();
        out.push(Mismatch {
            code: "nozzle",
            message: format!(
                "the G-code was sliced for a {} mm nozzle but the printer has {} mm; re-slice it \
                 for this printer's nozzle or pick a printer with a {} mm nozzle",
                num(nozzle),
                fitted.join(" / "),
                num(nozzle)
            ),
        });
    }
    out
}

/// What [`check`] could not verify, or that deserves a person's look before printing. These do
/// not reject a job.
pub fn warnings(summary: &Summary) -> Vec<Mismatch> {
    let mut out = Vec::new();
    if summary.flavor.is_none() {
        out.push(Mismatch {
            code: "flavor_unknown",
            message: "the G-code does not say which firmware flavour it was sliced for, so it \
                      could not be checked against the printer's; make sure they match"
                .into(),
        });
    }
    if summary.nozzle_mm.is_none() {
        out.push(Mismatch {
            code: "nozzle_unknown",
            message: "the G-code does not say which nozzle diameter it was sliced for, so it \
                      could not be checked against the printer's; make sure they match"
                .into(),
        });
    }
    if summary.slicer_time_s.is_none() {
        out.push(Mismatch {
            code: "no_slicer_estimate",
            message: format!(
                "the G-code carries no slicer time estimate; scheduling falls back to {} from \
                 feed rates alone, which ignores acceleration and is likely too short",
                duration(summary.feedrate_time_s)
            ),
        });
    }
    if summary.inch_units {
        out.push(Mismatch {
            code: "inch_units",
            message: "the G-code switches to inch units (G20); check that the dimensions are \
                      what you intended"
                .into(),
        });
    }
    if summary.extruding_moves == 0 {
        out.push(Mismatch {
            code: "no_extrusion",
            message: "the G-code moves the printer but never extrudes while moving, so it prints \
                      nothing; check that this is the file you meant to upload"
                .into(),
        });
    } else if !summary.print_known[0] || !summary.print_known[1] || !summary.print_known[2] {
        out.push(Mismatch {
            code: "bounds_unknown",
            message: "the G-code extrudes before its position is known (it neither homes nor \
                      sets every axis), so its fit on the bed could not be checked; add G28 to \
                      its start G-code"
                .into(),
        });
    }
    out
}

/// At most two decimals, without trailing zeros: "200", "243.1", "0.4".
fn num(v: f64) -> String {
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.into() }
}

fn duration(seconds: f64) -> String {
    let total = seconds.max(0.0).round() as u64;
    let (h, m, s) = (total / 3600, total / 60 % 60, total % 60);
    if h > 0 {
        format!("{h} h {m} min")
    } else if m > 0 {
        format!("{m} min {s} s")
    } else {
        format!("{s} s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families() {
        use FlavorFamily::*;
        for (s, f) in [
            ("marlin", Marlin),
            ("Marlin2", Marlin),
            ("marlinlegacy", Marlin),
            ("Marlin 2", Marlin),
            ("Marlin(Volumetric)", Marlin),
            ("reprap", RepRapFirmware),
            ("RepRapFirmware", RepRapFirmware),
            ("RRF", RepRapFirmware),
            ("klipper", Klipper),
            ("Repetier", Repetier),
            ("smoothie", Smoothie),
            ("sprinter", Sprinter),
            ("teacup", Sprinter),
            ("mach3", Other),
        ] {
            assert_eq!(flavor_family(s), Some(f), "{s}");
        }
        assert_eq!(flavor_family(""), None);
        assert_eq!(flavor_family("  "), None);
    }

    #[test]
    fn numbers_read_naturally() {
        assert_eq!(num(200.0), "200");
        assert_eq!(num(243.1), "243.1");
        assert_eq!(num(0.4), "0.4");
        assert_eq!(num(-0.001), "0");
        assert_eq!(duration(3725.0), "1 h 2 min");
        assert_eq!(duration(61.0), "1 min 1 s");
    }
}
