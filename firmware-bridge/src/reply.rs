//! Parsing one line the firmware sent into what it means for the sender: acknowledgements
//! (plain and ADVANCED_OK), resend requests in every known spelling, busy keepalives, resets,
//! M115 capabilities, temperature reports, classified errors and host action commands.

use serde::Serialize;

/// One sensor in a temperature report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sensor {
    /// `T` (active tool), `T0`, `B` (bed), `C` (chamber), ...
    pub name: String,
    /// Measured temperature in °C.
    pub actual: f32,
    /// Set point in °C, when reported.
    pub target: Option<f32>,
}

/// A temperature report (rule 9): the first value per sensor wins.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Temperatures {
    /// Sensors in the order reported.
    pub sensors: Vec<Sensor>,
}

impl Temperatures {
    /// A sensor by name (`T`, `T0`, `B`).
    pub fn get(&self, name: &str) -> Option<&Sensor> {
        self.sensors.iter().find(|s| s.name == name)
    }

    /// Some heater is set and not yet within `band` °C of its target.
    pub fn heating(&self, band: f32) -> bool {
        self.sensors.iter().any(|s| {
            s.target
                .is_some_and(|t| t > 0.0 && (s.actual - t).abs() > band)
        })
    }
}

/// How bad a firmware error is (rule 10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// A line error: a resend request follows and the print goes on.
    Recoverable,
    /// Worth a warning only (unknown command, unrecognised error text).
    Ignorable,
    /// The firmware halted or will: the job fails and sending stops.
    Fatal,
}

/// Host action commands sent by the printer (rule 11).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "action", content = "text")]
pub enum HostAction {
    /// Printer asks the host to pause (e.g. filament runout).
    Pause,
    /// Printer asks the host to resume.
    Resume,
    /// Printer asks the host to cancel the job.
    Cancel,
    /// Printer paused by itself (informational).
    Paused,
    /// Printer resumed by itself (informational).
    Resumed,
    /// Printer asks the host to start the job.
    Start,
    /// Printer asks the host to disconnect.
    Disconnect,
    /// `prompt_begin` / `prompt_choice` / `prompt_button` / `prompt_show` / `prompt_end`: a
    /// question to the user, answered with `M876 S<choice>`.
    Prompt(String),
    /// Anything else after `//action:`.
    Other(String),
}

/// What a firmware line means.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// `ok`, optionally ADVANCED_OK (`ok N<n> P<planner free> B<buffer free>`) and temperatures.
    Ok {
        /// Line number of the command acknowledged (ADVANCED_OK).
        line: Option<u64>,
        /// Free planner blocks (ADVANCED_OK).
        planner_free: Option<u32>,
        /// Free command buffer slots (ADVANCED_OK).
        buffer_free: Option<u32>,
        /// Temperatures carried by an `ok` to M105.
        temperatures: Option<Temperatures>,
    },
    /// `wait`: idle firmware built with NO_TIMEOUTS.
    Wait,
    /// `busy:` keepalive (rule 5).
    Busy(String),
    /// Resend request for a line number.
    Resend(u64),
    /// `start`: the board (re)booted.
    Start,
    /// `Error:`/`!!`/`fatal:` lines, classified.
    Error {
        /// Severity.
        class: ErrorClass,
        /// The text after the prefix.
        message: String,
        /// A line error whose resend request follows.
        line_error: bool,
        /// Stands for an acknowledgement (rule 10: "No Line Number with checksum").
        acts_as_ok: bool,
    },
    /// An unsolicited temperature report (autoreport or heating wait).
    Temperatures(Temperatures),
    /// M115 `FIRMWARE_NAME:` line.
    Firmware(String),
    /// M115 `Cap:NAME:0|1` line.
    Capability(String, bool),
    /// `//action:` line.
    HostAction(HostAction),
    /// Anything else (echo lines, blank lines, noise).
    Other(String),
}

/// Parses one line (without the line terminator).
pub fn parse_reply(line: &str) -> Reply {
    let line = line.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    let lower = line.to_ascii_lowercase();

    if lower == "ok" || lower.starts_with("ok ") {
        return parse_ok(&line[2..]);
    }
    if lower == "wait" {
        return Reply::Wait;
    }
    if lower == "start" {
        return Reply::Start;
    }
    if let Some(n) = parse_resend(&lower) {
        return Reply::Resend(n);
    }
    if let Some(rest) = lower.strip_prefix("//action:") {
        return Reply::HostAction(parse_action(rest.trim(), line));
    }
    if lower.contains("busy:") {
        return Reply::Busy(line.to_string());
    }
    if let Some(rest) = strip_prefix_ci(line, "error:")
        .or_else(|| strip_prefix_ci(line, "!!"))
        .or_else(|| strip_prefix_ci(line, "fatal:").map(|_| line))
    {
        return classify_error(rest.trim(), line.starts_with("!!"));
    }
    if let Some(rest) = strip_prefix_ci(line, "echo:")
        && rest.to_ascii_lowercase().contains("unknown command")
    {
        return Reply::Error {
            class: ErrorClass::Ignorable,
            message: rest.trim().to_string(),
            line_error: false,
            acts_as_ok: false,
        };
    }
    if let Some(rest) = line.strip_prefix("FIRMWARE_NAME:") {
        return Reply::Firmware(firmware_name(rest));
    }
    if let Some(rest) = line.strip_prefix("Cap:")
        && let Some((name, value)) = rest.rsplit_once(':')
    {
        return Reply::Capability(name.trim().to_string(), value.trim() == "1");
    }
    if let Some(t) = parse_temperatures(line) {
        return Reply::Temperatures(t);
    }
    Reply::Other(line.to_string())
}

fn strip_prefix_ci<'a>(line: &'a str, prefix: &str) -> Option<&'a str> {
    let head = line.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &line[prefix.len()..])
}

fn parse_ok(rest: &str) -> Reply {
    let mut line = None;
    let mut planner_free = None;
    let mut buffer_free = None;
    for word in rest.split_whitespace() {
        if let Some(v) = word.strip_prefix('N') {
            line = line.or(v.parse().ok());
        } else if let Some(v) = word.strip_prefix('P') {
            planner_free = planner_free.or(v.parse().ok());
        } else if let Some(v) = word.strip_prefix('B')
            && !v.starts_with(':')
            && !v.starts_with('@')
        {
            buffer_free = buffer_free.or(v.parse().ok());
        }
    }
    Reply::Ok {
        line,
        planner_free,
        buffer_free,
        temperatures: parse_temperatures(rest),
    }
}

/// `Resend: n`, `Resend:n`, `rs N n`, `rs n`, `Resend:N:n` (lower-cased input).
fn parse_resend(lower: &str) -> Option<u64> {
    let rest = lower
        .strip_prefix("resend")
        .or_else(|| lower.strip_prefix("rs "))?;
    let digits: String = rest
        .trim_start_matches(|c: char| c == ':' || c == 'n' || c.is_whitespace())
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

fn parse_action(rest_lower: &str, original: &str) -> HostAction {
    let word = rest_lower.split_whitespace().next().unwrap_or("");
    match word {
        "pause" => HostAction::Pause,
        "resume" => HostAction::Resume,
        "cancel" => HostAction::Cancel,
        "paused" => HostAction::Paused,
        "resumed" => HostAction::Resumed,
        "start" => HostAction::Start,
        "disconnect" => HostAction::Disconnect,
        w if w.starts_with("prompt_") => {
            HostAction::Prompt(original["//action:".len()..].trim().to_string())
        }
        _ => HostAction::Other(original["//action:".len()..].trim().to_string()),
    }
}

fn classify_error(message: &str, bang: bool) -> Reply {
    let lower = message.to_ascii_lowercase();
    let error = |class, line_error, acts_as_ok| Reply::Error {
        class,
        message: message.to_string(),
        line_error,
        acts_as_ok,
    };
    if lower.contains("no line number with checksum") || lower.contains("missing linenumber") {
        return error(ErrorClass::Ignorable, false, true);
    }
    const LINE_ERRORS: [&str; 6] = [
        "line number is not last line number",
        "checksum mismatch",
        "no checksum with line number",
        "wrong checksum",
        "format error",
        "expected line",
    ];
    if LINE_ERRORS.iter().any(|p| lower.contains(p)) {
        return error(ErrorClass::Recoverable, true, false);
    }
    const FATAL: [&str; 9] = [
        "kill() called",
        "printer halted",
        "maxtemp",
        "mintemp",
        "thermal runaway",
        "heating failed",
        "emergency stop",
        "system stopped",
        "fatal",
    ];
    if bang || FATAL.iter().any(|p| lower.contains(p)) {
        return error(ErrorClass::Fatal, false, false);
    }
    error(ErrorClass::Ignorable, false, false)
}

fn firmware_name(rest: &str) -> String {
    // The name runs until the next KEY: field of the M115 line.
    const KEYS: [&str; 5] = [
        " SOURCE_CODE_URL:",
        " PROTOCOL_VERSION:",
        " MACHINE_TYPE:",
        " EXTRUDER_COUNT:",
        " UUID:",
    ];
    let end = KEYS
        .iter()
        .filter_map(|k| rest.find(k))
        .min()
        .unwrap_or(rest.len());
    rest[..end].trim().to_string()
}

/// Parses `T:201.3 /210.0 B:59.8 /60.0 T0:201.3 /210.0 @:127 B@:0` and Repetier's
/// `TargetExtr0:` / `TargetBed:`. `None` when the line holds no temperature.
pub fn parse_temperatures(text: &str) -> Option<Temperatures> {
    let mut temps = Temperatures::default();
    let mut words = text.split_whitespace().peekable();
    while let Some(word) = words.next() {
        let Some((name, value)) = word.split_once(':') else {
            continue;
        };
        let value = if value.is_empty() {
            // "T: 20.0" spacing seen on some firmware.
            match words.next_if(|w| w.parse::<f32>().is_ok()) {
                Some(v) => v,
                None => continue,
            }
        } else {
            value
        };
        if let Some(tool) = name.strip_prefix("TargetExtr") {
            let tool_name = format!("T{tool}");
            let name = if temps.get(&tool_name).is_some() {
                tool_name.as_str()
            } else {
                "T"
            };
            set_target(&mut temps, name, value);
            continue;
        }
        if name == "TargetBed" {
            set_target(&mut temps, "B", value);
            continue;
        }
        if !is_sensor_name(name) {
            continue;
        }
        // "T:21.30/ 0.00": the slash on the actual value (OctoPrint's virtual printer).
        let (value, slash_then_target) = match value.strip_suffix('/') {
            Some(v) => (v, true),
            None => (value, false),
        };
        let Ok(actual) = value.parse::<f32>() else {
            continue;
        };
        let target = if slash_then_target {
            words.next_if(|w| w.parse::<f32>().is_ok())
        } else {
            words.next_if(|w| w.starts_with('/')).map(|w| &w[1..])
        }
        .and_then(|w| w.parse::<f32>().ok());
        if temps.get(name).is_none() {
            temps.sensors.push(Sensor {
                name: name.to_string(),
                actual,
                target,
            });
        }
    }
    (!temps.sensors.is_empty() && temps.sensors.iter().any(|s| s.name.starts_with('T')))
        .then_some(temps)
}

fn set_target(temps: &mut Temperatures, name: &str, value: &str) {
    if let (Some(s), Ok(v)) = (
        temps.sensors.iter_mut().find(|s| s.name == name),
        value.parse::<f32>(),
    ) {
        s.target.get_or_insert(v);
    }
}

fn is_sensor_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some('T' | 'B' | 'C' | 'P' | 'A' | 'R') => chars.all(|c| c.is_ascii_digit()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_resend_form() {
        for (text, n) in [
            ("Resend: 12", 12),
            ("Resend:12", 12),
            ("rs N12", 12),
            ("rs 12", 12),
            ("Resend:N:12", 12),
            ("resend: 7", 7),
        ] {
            assert_eq!(parse_reply(text), Reply::Resend(n), "{text}");
        }
    }

    #[test]
    fn advanced_ok() {
        assert_eq!(
            parse_reply("ok N123 P15 B3"),
            Reply::Ok {
                line: Some(123),
                planner_free: Some(15),
                buffer_free: Some(3),
                temperatures: None
            }
        );
        assert_eq!(
            parse_reply("ok"),
            Reply::Ok {
                line: None,
                planner_free: None,
                buffer_free: None,
                temperatures: None
            }
        );
    }

    #[test]
    fn octoprint_virtual_printer_style_temperatures() {
        let t = parse_temperatures("ok T:21.30/ 0.00 B:21.30/ 60.00 @:64").unwrap();
        assert_eq!(
            t.get("T").map(|s| (s.actual, s.target)),
            Some((21.3, Some(0.0)))
        );
        assert_eq!(
            t.get("B").map(|s| (s.actual, s.target)),
            Some((21.3, Some(60.0)))
        );
    }

    #[test]
    fn temperatures_first_value_wins() {
        let t = parse_temperatures("ok T:201.3 /210.0 B:59.8 /60.0 T0:201.3 /210.0 @:127 B@:0")
            .unwrap();
        assert_eq!(t.get("T").unwrap().actual, 201.3);
        assert_eq!(t.get("T").unwrap().target, Some(210.0));
        assert_eq!(t.get("B").unwrap().target, Some(60.0));
        assert_eq!(t.sensors.len(), 3);
        let t = parse_temperatures("T:20.0 /0.0 T:99.0 /0.0").unwrap();
        assert_eq!(t.get("T").unwrap().actual, 20.0);
    }

    #[test]
    fn repetier_targets() {
        let t = parse_temperatures("T:20.00 B:21 TargetExtr0:200 TargetBed:60").unwrap();
        assert_eq!(t.get("T").unwrap().target, Some(200.0));
        assert_eq!(t.get("B").unwrap().actual, 21.0);
        assert_eq!(t.get("B").unwrap().target, Some(60.0));
    }

    #[test]
    fn classifies_errors() {
        let class = |s: &str| match parse_reply(s) {
            Reply::Error {
                class,
                line_error,
                acts_as_ok,
                ..
            } => (class, line_error, acts_as_ok),
            other => panic!("{s}: {other:?}"),
        };
        assert_eq!(
            class("Error:checksum mismatch, Last Line: 5"),
            (ErrorClass::Recoverable, true, false)
        );
        assert_eq!(
            class("Error:Line Number is not Last Line Number+1, Last Line: 5"),
            (ErrorClass::Recoverable, true, false)
        );
        assert_eq!(
            class("Error:No Line Number with checksum, Last Line: 5"),
            (ErrorClass::Ignorable, false, true)
        );
        assert_eq!(
            class("Error:Printer halted. kill() called!"),
            (ErrorClass::Fatal, false, false)
        );
        assert_eq!(
            class("Error:MAXTEMP triggered, system stopped! Heater_ID: 0"),
            (ErrorClass::Fatal, false, false)
        );
        assert_eq!(
            class("echo:Unknown command: \"G999\""),
            (ErrorClass::Ignorable, false, false)
        );
        assert_eq!(
            class("Error:something new"),
            (ErrorClass::Ignorable, false, false)
        );
        assert_eq!(class("!! halted"), (ErrorClass::Fatal, false, false));
    }

    #[test]
    fn capabilities_and_name() {
        assert_eq!(
            parse_reply(
                "FIRMWARE_NAME:Marlin 2.1.2.1 (Sep 12 2024) SOURCE_CODE_URL:x PROTOCOL_VERSION:1.0"
            ),
            Reply::Firmware("Marlin 2.1.2.1 (Sep 12 2024)".into())
        );
        assert_eq!(
            parse_reply("Cap:AUTOREPORT_TEMP:1"),
            Reply::Capability("AUTOREPORT_TEMP".into(), true)
        );
        assert_eq!(
            parse_reply("Cap:EMERGENCY_PARSER:0"),
            Reply::Capability("EMERGENCY_PARSER".into(), false)
        );
    }

    #[test]
    fn busy_start_wait_actions() {
        assert!(matches!(
            parse_reply("echo:busy: processing"),
            Reply::Busy(_)
        ));
        assert!(matches!(
            parse_reply("busy: paused for user"),
            Reply::Busy(_)
        ));
        assert_eq!(parse_reply("start"), Reply::Start);
        assert_eq!(parse_reply("wait"), Reply::Wait);
        assert_eq!(
            parse_reply("//action:pause"),
            Reply::HostAction(HostAction::Pause)
        );
        assert_eq!(
            parse_reply("//action:prompt_begin Filament runout"),
            Reply::HostAction(HostAction::Prompt("prompt_begin Filament runout".into()))
        );
    }
}
