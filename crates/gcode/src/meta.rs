//! Metadata that slicers write into comment-only lines.
//!
//! PrusaSlicer (and its forks) write `; key = value`, CuraEngine writes `;KEY:value`. Only the
//! first occurrence of each key is kept, except Cura's running `;TIME_ELAPSED:` whose last value
//! is its total.

/// Strings taken from comments are capped so a hostile file cannot make the summary large.
const MAX_TEXT: usize = 120;

/// CuraEngine run outside the Cura front end leaves these header values as placeholders; the
/// front end normally overwrites them. Treating them as estimates would report a 1 h 51 min print
/// and 0 m of filament for every such file.
const CURA_PLACEHOLDER_TIME_S: f64 = 6666.0;

#[derive(Debug, Default, Clone)]
pub(crate) struct Meta {
    pub generator: Option<String>,
    pub flavor: Option<String>,
    pub nozzle_mm: Option<f64>,
    pub filament_type: Option<String>,
    pub bed_shape_mm: Option<[f64; 2]>,
    pub layer_height_mm: Option<f64>,
    pub prusa_time_s: Option<f64>,
    pub cura_time_s: Option<f64>,
    pub cura_time_elapsed_s: Option<f64>,
    pub filament_mm: Option<f64>,
    pub filament_g: Option<f64>,
}

impl Meta {
    /// Feeds the text after `;` of a line that holds nothing but a comment.
    pub(crate) fn comment(&mut self, c: &[u8]) {
        let c = c.trim_ascii();
        if c.is_empty() {
            return;
        }
        if self.generator.is_none() {
            self.generator = generator(c);
        }
        if let Some(v) = prusa(c, b"gcode_flavor") {
            set_text(&mut self.flavor, Some(v));
        } else if let Some(v) = prusa(c, b"nozzle_diameter") {
            set_num(&mut self.nozzle_mm, first_number(v));
        } else if let Some(v) = prusa(c, b"filament_type") {
            set_text(&mut self.filament_type, Some(v));
        } else if let Some(v) = prusa(c, b"filament used [mm]") {
            set_num(&mut self.filament_mm, sum_numbers(v));
        } else if let Some(v) = prusa(c, b"filament used [g]") {
            set_num(&mut self.filament_g, sum_numbers(v));
        } else if let Some(v) = prusa(c, b"bed_shape") {
            if self.bed_shape_mm.is_none() {
                self.bed_shape_mm = bed_shape(v);
            }
        } else if let Some(v) = prusa(c, b"layer_height") {
            set_num(&mut self.layer_height_mm, first_number(v));
        } else if let Some(v) = prusa(c, b"estimated printing time (normal mode)") {
            set_num(&mut self.prusa_time_s, duration(v));
        } else if let Some(v) = c.strip_prefix(b"TIME_ELAPSED:") {
            if let Some(t) = first_number(v) {
                self.cura_time_elapsed_s = Some(t);
            }
        } else if let Some(v) = c
            .strip_prefix(b"TIME:")
            .or_else(|| c.strip_prefix(b"PRINT.TIME:"))
        {
            set_num(&mut self.cura_time_s, first_number(v));
        } else if let Some(v) = c.strip_prefix(b"FLAVOR:") {
            set_text(&mut self.flavor, Some(v));
        } else if let Some(v) = c.strip_prefix(b"Filament used:") {
            // "1.23456m", or "1.2m, 0.3m" for several extruders.
            let metres: Vec<u8> = v
                .iter()
                .map(|&b| if b == b'm' { b' ' } else { b })
                .collect();
            set_num(
                &mut self.filament_mm,
                sum_numbers(&metres).map(|m| m * 1000.0),
            );
        } else if let Some(v) = c.strip_prefix(b"Layer height:") {
            set_num(&mut self.layer_height_mm, first_number(v));
        } else if let Some(v) = c.strip_prefix(b"EXTRUDER_TRAIN.0.NOZZLE.DIAMETER:") {
            set_num(&mut self.nozzle_mm, first_number(v));
        }
    }

    /// The slicer's time estimate, preferring a real header value over Cura's placeholder.
    pub(crate) fn slicer_time_s(&self) -> Option<f64> {
        self.prusa_time_s
            .or(self.cura_time_s.filter(|&t| t != CURA_PLACEHOLDER_TIME_S))
            .or(self.cura_time_elapsed_s)
    }
}

fn set_text(slot: &mut Option<String>, v: Option<&[u8]>) {
    if slot.is_some() {
        return;
    }
    let Some(v) = v.map(<[u8]>::trim_ascii).filter(|v| !v.is_empty()) else {
        return;
    };
    *slot = Some(text(v));
}

/// Keeps the first positive, finite value: zero is what slicers write when they do not know.
fn set_num(slot: &mut Option<f64>, v: Option<f64>) {
    if slot.is_none() {
        *slot = v.filter(|v| v.is_finite() && *v > 0.0);
    }
}

fn text(v: &[u8]) -> String {
    let v = &v[..v.len().min(MAX_TEXT)];
    String::from_utf8_lossy(v).into_owned()
}

/// The value of a PrusaSlicer `key = value` comment, if `c` is one for `key`.
fn prusa<'a>(c: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let rest = c.strip_prefix(key)?.trim_ascii_start().strip_prefix(b"=")?;
    Some(rest.trim_ascii())
}

fn parse_f64(v: &[u8]) -> Option<f64> {
    let v = std::str::from_utf8(v.trim_ascii()).ok()?;
    v.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// First of a comma-separated list (one value per extruder).
fn first_number(v: &[u8]) -> Option<f64> {
    parse_f64(v.split(|&b| b == b',').next()?)
}

/// Sum of a comma-separated list: filament used by all extruders.
fn sum_numbers(v: &[u8]) -> Option<f64> {
    let mut total = 0.0;
    for part in v.split(|&b| b == b',') {
        total += parse_f64(part)?;
    }
    Some(total)
}

/// "0x0,250x0,250x210,0x210" -> [250, 210].
fn bed_shape(v: &[u8]) -> Option<[f64; 2]> {
    let mut max = [f64::NEG_INFINITY; 2];
    for point in v.split(|&b| b == b',') {
        let mut xy = point.split(|&b| b == b'x');
        let x = parse_f64(xy.next()?)?;
        let y = parse_f64(xy.next()?)?;
        max[0] = max[0].max(x);
        max[1] = max[1].max(y);
    }
    (max[0] > 0.0 && max[1] > 0.0).then_some(max)
}

/// "1d 2h 3m 4s", any subset, in seconds.
pub(crate) fn duration(v: &[u8]) -> Option<f64> {
    let mut total = 0.0;
    let mut any = false;
    for token in v
        .split(|b| b.is_ascii_whitespace())
        .filter(|t| !t.is_empty())
    {
        let (&unit, number) = token.split_last()?;
        let scale = match unit {
            b'd' => 86_400.0,
            b'h' => 3_600.0,
            b'm' => 60.0,
            b's' => 1.0,
            _ => return None,
        };
        total += parse_f64(number)? * scale;
        any = true;
    }
    any.then_some(total)
}

/// "generated by PrusaSlicer 2.5.0+linux-x64-GTK3 on 2024-..." -> "PrusaSlicer 2.5.0";
/// "Generated with Cura_SteamEngine 4.13.0" -> "Cura_SteamEngine 4.13.0".
fn generator(c: &[u8]) -> Option<String> {
    let lower_starts = |p: &[u8]| c.len() >= p.len() && c[..p.len()].eq_ignore_ascii_case(p);
    let rest = [
        &b"generated by "[..],
        b"generated with ",
        b"g-code generated by ",
    ]
    .into_iter()
    .find(|p| lower_starts(p))
    .map(|p| &c[p.len()..])?;
    // PrusaSlicer appends " on <date> at <time>".
    let end = rest
        .windows(4)
        .position(|w| w == b" on ")
        .unwrap_or(rest.len());
    let rest = rest[..end].trim_ascii();
    // Drop build metadata ("+linux-x64-GTK3") from each word: it identifies the binary, not the slicer.
    let words: Vec<&[u8]> = rest
        .split(|b| b.is_ascii_whitespace())
        .filter(|w| !w.is_empty())
        .map(|w| w.split(|&b| b == b'+').next().unwrap_or(w))
        .filter(|w| !w.is_empty())
        .collect();
    let joined = words.join(&b' ');
    (!joined.is_empty()).then(|| text(&joined))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration(b"1d 2h 3m 4s"), Some(93_784.0));
        assert_eq!(duration(b"21m 33s"), Some(1293.0));
        assert_eq!(duration(b"5h"), Some(18_000.0));
        assert_eq!(duration(b"2m"), Some(120.0));
        assert_eq!(duration(b""), None);
        assert_eq!(duration(b"soon"), None);
    }

    #[test]
    fn generators() {
        assert_eq!(
            generator(
                b"generated by PrusaSlicer 2.5.0+linux-x64-GTK3 on 2024-01-01 at 10:00:00 UTC"
            )
            .as_deref(),
            Some("PrusaSlicer 2.5.0")
        );
        assert_eq!(
            generator(b"Generated with Cura_SteamEngine 5.0.0").as_deref(),
            Some("Cura_SteamEngine 5.0.0")
        );
        assert_eq!(
            generator(b"G-Code generated by Simplify3D(R) Version 4.1.2").as_deref(),
            Some("Simplify3D(R) Version 4.1.2")
        );
        assert_eq!(generator(b"gcode_flavor = marlin"), None);
    }

    #[test]
    fn key_values() {
        let mut m = Meta::default();
        for c in [
            &b" gcode_flavor = marlin2"[..],
            b" nozzle_diameter = 0.6,0.4",
            b" filament_type = PETG",
            b" bed_shape = 0x0,250x0,250x210,0x210",
            b" filament used [mm] = 100.5, 20",
            b" filament used [g] = 3.71",
            b" estimated printing time (normal mode) = 1h 2m 3s",
            b" layer_height = 0.15",
            b" nozzle_diameter = 0.8",
        ] {
            m.comment(c);
        }
        assert_eq!(m.flavor.as_deref(), Some("marlin2"));
        assert_eq!(m.nozzle_mm, Some(0.6));
        assert_eq!(m.filament_type.as_deref(), Some("PETG"));
        assert_eq!(m.bed_shape_mm, Some([250.0, 210.0]));
        assert_eq!(m.filament_mm, Some(120.5));
        assert_eq!(m.filament_g, Some(3.71));
        assert_eq!(m.slicer_time_s(), Some(3723.0));
        assert_eq!(m.layer_height_mm, Some(0.15));
    }

    #[test]
    fn cura_header() {
        let mut m = Meta::default();
        for c in [
            &b"FLAVOR:Marlin"[..],
            b"TIME:1234",
            b"Filament used: 1.5m, 0.25m",
            b"Layer height: 0.12",
            b"EXTRUDER_TRAIN.0.NOZZLE.DIAMETER:0.4",
            b"TIME_ELAPSED:100.5",
        ] {
            m.comment(c);
        }
        assert_eq!(m.flavor.as_deref(), Some("Marlin"));
        assert_eq!(m.slicer_time_s(), Some(1234.0));
        assert_eq!(m.filament_mm, Some(1750.0));
        assert_eq!(m.layer_height_mm, Some(0.12));
        assert_eq!(m.nozzle_mm, Some(0.4));
    }

    #[test]
    fn cura_placeholders_are_not_estimates() {
        let mut m = Meta::default();
        for c in [
            &b"TIME:6666"[..],
            b"Filament used: 0m",
            b"TIME_ELAPSED:10.0",
            b"TIME_ELAPSED:1136.7",
        ] {
            m.comment(c);
        }
        assert_eq!(m.slicer_time_s(), Some(1136.7));
        assert_eq!(m.filament_mm, None);

        let mut m = Meta::default();
        m.comment(b"TIME:6666");
        assert_eq!(m.slicer_time_s(), None);
    }
}
