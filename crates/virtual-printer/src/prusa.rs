//! The Prusa-firmware personality (`--firmware prusa`): how an Original Prusa i3 MK3S on its
//! 8-bit Prusa firmware answers the queries PrusaLink (PyPI `prusalink`) sends over serial to
//! identify and monitor it. Everything else is the Marlin core in `firmware`.
//!
//! Behaviour as Prusa firmware documents it (the MK3 firmware's G-code reference and its
//! `Dcodes.cpp`/`eeprom.h` for `D3` and the EEPROM layout):
//! - `PRUSA Fir` prints the firmware version (`3.14.1-8225`), `PRUSA SN` the serial number
//!   (`CZPX<4 digits>X<3 digits>X<letter><5 digits>`), `M862.2 Q` the printer type code (302 for
//!   the MK3S), `M862.1 Q` the nozzle diameter, each on a line of its own before the `ok`;
//! - `D3 Ax<address> C<count>` dumps EEPROM bytes as `<address>  <hex> <hex> ...`, 16 a line;
//! - `M27 P` reports SD printing state, `M73` the print progress of both modes, `M220`/`M221`
//!   the speed and flow multipliers as `100%`, `M420` the mesh bed levelling state;
//! - temperatures carry the PINDA probe (`P:`) and ambient (`A:`) sensors, and `M155 S<s>
//!   C<mask>` autoreports temperatures (1), fans (2) and positions (4).

use std::str::FromStr;

/// Which firmware the virtual printer behaves like.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Personality {
    /// Marlin 2 (the default).
    #[default]
    Marlin,
    /// Prusa firmware 3.x on an Original Prusa i3 MK3S.
    Prusa,
}

impl FromStr for Personality {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "marlin" => Ok(Self::Marlin),
            "prusa" => Ok(Self::Prusa),
            other => Err(format!(
                "unknown firmware {other:?}: expected \"marlin\" or \"prusa\""
            )),
        }
    }
}

/// Firmware version as `PRUSA Fir` prints it.
pub const FIRMWARE_VERSION: &str = "3.14.1-8225";
/// The printer type code of an MK3S (`M862.2 Q`).
pub const PRINTER_TYPE: u16 = 302;
/// Nozzle diameter in mm (`M862.1 Q`).
pub const NOZZLE_DIAMETER: &str = "0.40";
/// A serial number of the form Prusa prints on its MK3S.
pub const SERIAL_NUMBER: &str = "CZPX0001X004XK00001";
/// Ambient sensor reading in °C (`A:`).
const AMBIENT_BOARD: f64 = 25.0;

/// `M115` as the MK3S firmware answers it.
pub fn m115_lines() -> Vec<String> {
    let mut lines = vec![format!(
        "FIRMWARE_NAME:Prusa-Firmware {} based on Marlin FIRMWARE_URL:https://github.com/prusa3d/Prusa-Firmware PROTOCOL_VERSION:1.0 MACHINE_TYPE:Prusa i3 MK3S EXTRUDER_COUNT:1 UUID:00000000-0000-0000-0000-000000000000",
        FIRMWARE_VERSION
            .split('-')
            .next()
            .unwrap_or(FIRMWARE_VERSION)
    )];
    for (cap, on) in [
        ("AUTOREPORT_TEMP", 1),
        ("AUTOREPORT_FANS", 1),
        ("AUTOREPORT_POSITION", 1),
        ("EXTENDED_M20", 1),
        ("PRUSA_MMU2", 1),
    ] {
        lines.push(format!("Cap:{cap}:{on}"));
    }
    lines
}

/// The EEPROM bytes PrusaLink reads: erased (0xFF) except the fields it parses.
pub struct Eeprom {
    bytes: Vec<u8>,
}

impl Default for Eeprom {
    fn default() -> Self {
        let mut bytes = vec![0xFF; 4096];
        let mut put =
            |addr: usize, data: &[u8]| bytes[addr..addr + data.len()].copy_from_slice(data);
        // Job id (u32), FlashAir off, print mode normal, active sheet 0, totals zero.
        put(0x0D05, &0u32.to_le_bytes());
        put(0x0FBB, &[0]);
        put(0x0FFF, &[0]);
        put(0x0DA1, &[0]);
        put(0x0FF1, &0u32.to_le_bytes());
        put(0x0FED, &0u32.to_le_bytes());
        // Eight steel sheets of 11 bytes: name (7 ASCII), Z offset (u16), bed and PINDA
        // temperatures (u8); the factory names.
        let names = [
            "Smooth1", "Smooth2", "Textur1", "Textur2", "Satin  ", "NylonPA", "Custom1", "Custom2",
        ];
        for (i, name) in names.iter().enumerate() {
            let at = 0x0D49 + i * 11;
            let mut sheet = [0u8; 11];
            sheet[..7].copy_from_slice(name.as_bytes());
            sheet[7..9].copy_from_slice(&0u16.to_le_bytes());
            sheet[9] = 60;
            sheet[10] = 35;
            put(at, &sheet);
        }
        Self { bytes }
    }
}

impl Eeprom {
    /// `D3 Ax<hex address> C<count>`: lines of `<address>  <hex bytes>`, 16 a line.
    pub fn dump(&self, command: &str) -> Vec<String> {
        let mut address = None;
        let mut count = 1usize;
        for word in command.split_whitespace().skip(1) {
            if let Some(v) = word.strip_prefix('A') {
                let hex = v.trim_start_matches(['x', 'X']);
                address = usize::from_str_radix(hex, 16).ok();
            } else if let Some(v) = word.strip_prefix('C') {
                count = v.parse().unwrap_or(1);
            }
        }
        let Some(start) = address.filter(|a| *a < self.bytes.len()) else {
            return vec!["?Invalid address".into()];
        };
        let end = (start + count.clamp(1, 1024)).min(self.bytes.len());
        self.bytes[start..end]
            .chunks(16)
            .enumerate()
            .map(|(i, chunk)| {
                let hex: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
                format!("{:04x}  {}", start + i * 16, hex.join(" "))
            })
            .collect()
    }
}

/// Heater readings for a Prusa temperature line.
#[derive(Debug, Clone, Copy)]
pub struct Temperatures {
    /// Hot end (actual, target).
    pub hotend: (f64, f64),
    /// Bed (actual, target).
    pub bed: (f64, f64),
    /// Heater powers (hot end, bed).
    pub power: (u8, u8),
}

/// A temperature line as Prusa firmware prints it, PINDA and ambient included.
pub fn temperature_report(t: &Temperatures) -> String {
    format!(
        "T:{:.1} /{:.1} B:{:.1} /{:.1} T0:{:.1} /{:.1} @:{} B@:{} P:{:.1} A:{:.1}",
        t.hotend.0,
        t.hotend.1,
        t.bed.0,
        t.bed.1,
        t.hotend.0,
        t.hotend.1,
        t.power.0,
        t.power.1,
        t.bed.0.min(35.0),
        AMBIENT_BOARD
    )
}

/// Fan report line (`M155` mask bit 2).
pub fn fan_report() -> String {
    "E0:0 RPM PRN1:0 RPM E0@:0 PRN1@:0".into()
}

/// Position report line (`M114`, `M155` mask bit 4).
pub fn position_report() -> String {
    "X:0.00 Y:0.00 Z:0.15 E:0.00 Count X: 0.00 Y:0.00 Z:0.15 E:0.00".into()
}

/// Lines printed before the `ok` for a query only Prusa firmware answers; `None` when the
/// command is not one of them (the Marlin core handles it).
pub fn answer(command: &str, eeprom: &Eeprom) -> Option<Vec<String>> {
    let mut words = command.split_whitespace();
    let word = words.next().unwrap_or("").to_ascii_uppercase();
    let arg = words.next().unwrap_or("");
    let lines = match word.as_str() {
        "PRUSA" => match arg {
            "Fir" => vec![FIRMWARE_VERSION.into()],
            "SN" => vec![SERIAL_NUMBER.into()],
            // `PRUSA` subcommands that only act (reset, language, ...) print nothing.
            _ => Vec::new(),
        },
        "M862.1" if arg == "Q" => vec![NOZZLE_DIAMETER.into()],
        "M862.2" if arg == "Q" => vec![PRINTER_TYPE.to_string()],
        "M862.3" if arg == "Q" => vec!["\"MK3S\"".into()],
        "M862.4" if arg == "Q" => vec![FIRMWARE_VERSION.into()],
        "M862.1" | "M862.2" | "M862.3" | "M862.4" | "M862.5" => Vec::new(),
        "D3" => eeprom.dump(command),
        "M27" => vec!["Not SD printing".into()],
        // An SD card with no files.
        "M20" => vec!["Begin file list".into(), "End file list".into()],
        // The card is (re)initialised and present.
        "M21" => vec!["echo:SD card ok".into()],
        "M73" => vec![
            "NORMAL MODE: Percent done: -1; print time remaining in mins: -1; Change in mins: -1"
                .into(),
            "SILENT MODE: Percent done: -1; print time remaining in mins: -1; Change in mins: -1"
                .into(),
        ],
        "M220" | "M221" if arg.is_empty() => vec!["100%".into()],
        "M420" => vec!["Mesh bed leveling not active.".into()],
        "M114" => vec![position_report()],
        // No MMU attached: the MMU register reads print nothing.
        "M707" | "M708" => Vec::new(),
        _ => return None,
    };
    Some(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn d3_dumps_the_sheet_names_sixteen_bytes_a_line() {
        let e = Eeprom::default();
        let lines = e.dump("D3 Ax0D49 C88");
        assert_eq!(lines.len(), 6);
        assert!(
            lines[0].starts_with("0d49  53 6d 6f 6f 74 68 31 "),
            "{}",
            lines[0]
        );
        assert_eq!(e.dump("D3 Ax0D05 C4"), vec!["0d05  00 00 00 00"]);
        assert_eq!(e.dump("D3 Ax0FBB C1"), vec!["0fbb  00"]);
    }

    #[test]
    fn identification_queries() {
        let e = Eeprom::default();
        assert_eq!(answer("PRUSA Fir", &e), Some(vec!["3.14.1-8225".into()]));
        assert_eq!(answer("M862.2 Q", &e), Some(vec!["302".into()]));
        assert_eq!(answer("M862.1 Q", &e), Some(vec!["0.40".into()]));
        assert_eq!(answer("PRUSA SN", &e), Some(vec![SERIAL_NUMBER.into()]));
        assert_eq!(answer("M220 S90", &e), None);
        assert_eq!(answer("G1 X1", &e), None);
        assert_eq!("prusa".parse(), Ok(Personality::Prusa));
        assert!("klipper".parse::<Personality>().is_err());
    }
}
