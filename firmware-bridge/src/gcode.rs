//! G-code as the sender sees it: cleaning a line, framing it with a line number and checksum
//! (protocol rule 1), and reading a job file as a stream — never whole — with the facts a print
//! needs up front (line count, bytes, layers, slicer estimate, over-long lines).

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use crate::error::JobError;

/// Marlin's MAX_CMD_SIZE: its line buffer, terminating NUL included.
pub const MARLIN_MAX_CMD_SIZE: usize = 96;

/// Longest raw file line accepted; a longer one is not G-code (binary data, a broken file).
pub const MAX_RAW_LINE_BYTES: usize = 64 * 1024;

/// Strips a `;` comment and surrounding blanks. Returns `None` for lines with no command left.
pub fn clean_line(raw: &str) -> Option<&str> {
    let code = match raw.find(';') {
        Some(i) => &raw[..i],
        None => raw,
    };
    let code = code.trim();
    (!code.is_empty()).then_some(code)
}

/// Why `command` cannot go to the firmware as one framed line, if it cannot. Firmware ends a
/// line at CR or LF, reads it as a C string (a NUL cuts it, and with it the checksum) and takes
/// the first `*` as the start of the checksum; anything but ASCII is not G-code.
pub fn unsendable(command: &str) -> Option<&'static str> {
    if !command.is_ascii() || command.contains('*') {
        Some("non-ASCII byte or '*' in a command")
    } else if command.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
        Some("control character (CR, NUL, ...) in a command")
    } else {
        None
    }
}

/// XOR of every byte, written in decimal after `*` by the host.
pub fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0, |acc, b| acc ^ b)
}

/// `N<n> <command>*<cs>` without the newline.
pub fn frame(line_number: u64, command: &str) -> String {
    let body = format!("N{line_number} {command}");
    let cs = checksum(body.as_bytes());
    format!("{body}*{cs}")
}

/// Length of the framed line for `command` at line numbers up to `max_line_number`.
pub fn framed_len(command_len: usize, max_line_number: u64) -> usize {
    // "N" + digits + " " + command + "*" + up to 3 checksum digits
    1 + max_line_number.to_string().len() + 1 + command_len + 1 + 3
}

/// The command word (`G1`, `M109`), upper-cased, for classifying a command.
pub fn command_word(command: &str) -> &str {
    command.split_whitespace().next().unwrap_or("")
}

/// Commands whose reply legitimately takes longer than the reply timeout (rule 6).
pub fn is_long_command(command: &str) -> bool {
    let word = command_word(command);
    const LONG: [&str; 10] = [
        "G4", "G28", "G29", "G30", "G32", "M109", "M190", "M400", "M226", "M600",
    ];
    LONG.iter().any(|l| word.eq_ignore_ascii_case(l))
        // Long-running but rarer ones: wait for chamber, probe repeatability, level corners.
        || ["M191", "M48", "G34", "M303"].iter().any(|l| word.eq_ignore_ascii_case(l))
}

/// Heating waits that M108 can break (with EMERGENCY_PARSER).
pub fn is_heating_wait(command: &str) -> bool {
    let word = command_word(command);
    ["M109", "M190", "M191"]
        .iter()
        .any(|l| word.eq_ignore_ascii_case(l))
}

/// What a comment line tells the sender about the print.
#[derive(Debug, Clone, PartialEq)]
pub enum Marker {
    /// A new layer starts (PrusaSlicer `;LAYER_CHANGE`, Cura `;LAYER:n`, Simplify3D `; layer n`).
    LayerChange,
    /// Z height of the layer just started (PrusaSlicer `;Z:0.2`).
    LayerZ(f32),
    /// Cura's `;LAYER_COUNT:n`.
    LayerCount(u32),
    /// Slicer's estimate of the whole print (Cura `;TIME:s`, PrusaSlicer `estimated printing time`).
    Estimate(Duration),
}

/// Recognises the slicer comments the sender uses; `None` for all others.
pub fn parse_marker(raw: &str) -> Option<Marker> {
    let t = raw.trim();
    let c = t.strip_prefix(';')?.trim_start();
    if c == "LAYER_CHANGE" || c.starts_with("LAYER:") || c.starts_with("layer ") {
        // Cura counts from 0 and may use negative layers for rafts; any such line is a change.
        return Some(Marker::LayerChange);
    }
    if let Some(z) = c.strip_prefix("Z:") {
        return z.trim().parse().ok().map(Marker::LayerZ);
    }
    if let Some(n) = c.strip_prefix("LAYER_COUNT:") {
        return n.trim().parse().ok().map(Marker::LayerCount);
    }
    if let Some(s) = c.strip_prefix("TIME:") {
        return s
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(|s| Marker::Estimate(Duration::from_secs_f64(s)));
    }
    if c.starts_with("estimated printing time") && !c.contains("silent") {
        let value = c.split('=').nth(1)?;
        return parse_dhms(value).map(Marker::Estimate);
    }
    None
}

/// Parses PrusaSlicer's `1d 2h 3m 4s` form.
fn parse_dhms(text: &str) -> Option<Duration> {
    let mut secs = 0u64;
    let mut any = false;
    for part in text.split_whitespace() {
        let (num, unit) = part.split_at(part.len().checked_sub(1)?);
        let n: u64 = num.parse().ok()?;
        secs += n * match unit {
            "d" => 86_400,
            "h" => 3_600,
            "m" => 60,
            "s" => 1,
            _ => return None,
        };
        any = true;
    }
    any.then(|| Duration::from_secs(secs))
}

/// M73 progress from the file: `M73 P<percent> R<minutes remaining>`.
pub fn parse_m73(command: &str) -> Option<(Option<f32>, Option<Duration>)> {
    if !command_word(command).eq_ignore_ascii_case("M73") {
        return None;
    }
    let mut percent = None;
    let mut remaining = None;
    for word in command.split_whitespace().skip(1) {
        let (k, v) = word.split_at(1);
        match k {
            "P" | "p" => percent = v.parse().ok(),
            "R" | "r" => {
                remaining = v
                    .parse::<f64>()
                    .ok()
                    .filter(|m| m.is_finite() && *m >= 0.0)
                    .map(|m| Duration::from_secs_f64(m * 60.0))
            }
            _ => {}
        }
    }
    Some((percent, remaining))
}

/// Facts about a job found by reading the file once before printing.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct JobSummary {
    /// Commands to send (comment-only and blank lines excluded).
    pub commands: u64,
    /// Raw file size in bytes.
    pub bytes: u64,
    /// Layer-change markers found.
    pub layers: u32,
    /// The slicer's estimate of the whole print, when the file carries one.
    pub slicer_estimate: Option<Duration>,
    /// The file carries M73 progress commands.
    pub has_m73: bool,
}

/// A G-code file to print. Opening it reads it once as a stream to validate every line.
#[derive(Debug, Clone)]
pub struct GcodeJob {
    path: PathBuf,
    summary: JobSummary,
}

impl GcodeJob {
    /// Validates the file against Marlin's default line limit.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, JobError> {
        Self::open_with_limit(path, MARLIN_MAX_CMD_SIZE).await
    }

    /// Validates the file: every command, framed with its line number and checksum, must fit in
    /// `max_cmd_size` bytes including the firmware's terminating NUL, so the print never stops
    /// half-way on a line the firmware cannot take.
    pub async fn open_with_limit(
        path: impl AsRef<Path>,
        max_cmd_size: usize,
    ) -> Result<Self, JobError> {
        let path = path.as_ref().to_path_buf();
        let mut reader = GcodeReader::open(&path).await?;
        let mut summary = JobSummary::default();
        let mut longest: Option<(u64, usize)> = None;
        while let Some(item) = reader.next_item().await? {
            match item {
                Item::Command(cmd) => {
                    summary.commands += 1;
                    if parse_m73(&cmd).is_some() {
                        summary.has_m73 = true;
                    }
                    if longest.is_none_or(|(_, len)| cmd.len() > len) {
                        longest = Some((reader.file_line(), cmd.len()));
                    }
                }
                Item::Marker(Marker::LayerChange) => summary.layers += 1,
                Item::Marker(Marker::Estimate(d)) => summary.slicer_estimate = Some(d),
                Item::Marker(_) => {}
            }
        }
        summary.bytes = reader.bytes_read();
        // Longest command, framed with the largest line number the job can reach (plus margin
        // for control commands sent in between), must fit.
        if let Some((file_line, len)) = longest {
            let framed = framed_len(len, summary.commands + 10_000);
            if framed >= max_cmd_size {
                return Err(JobError::LineTooLong {
                    file_line,
                    framed_len: framed,
                    limit: max_cmd_size - 1,
                });
            }
        }
        Ok(Self { path, summary })
    }

    /// What the validating read found.
    pub fn summary(&self) -> &JobSummary {
        &self.summary
    }

    /// The file printed.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A fresh streaming reader over the file.
    pub(crate) async fn reader(&self) -> Result<GcodeReader<tokio::fs::File>, JobError> {
        GcodeReader::open(&self.path).await
    }
}

/// One useful item of a G-code stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// A cleaned command to send.
    Command(String),
    /// A slicer comment the sender understands.
    Marker(Marker),
}

/// Reads a G-code stream line by line with bounded memory.
pub struct GcodeReader<R> {
    inner: BufReader<R>,
    buf: Vec<u8>,
    bytes: u64,
    file_line: u64,
}

impl GcodeReader<tokio::fs::File> {
    /// Opens a file for streaming.
    pub async fn open(path: &Path) -> Result<Self, JobError> {
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|source| JobError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Self::new(file))
    }
}

impl<R: AsyncRead + Unpin> GcodeReader<R> {
    /// Wraps any byte stream.
    pub fn new(inner: R) -> Self {
        Self {
            inner: BufReader::with_capacity(64 * 1024, inner),
            buf: Vec::with_capacity(256),
            bytes: 0,
            file_line: 0,
        }
    }

    /// Raw bytes consumed so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes
    }

    /// 1-based number of the last file line read.
    pub fn file_line(&self) -> u64 {
        self.file_line
    }

    /// The next command or marker; `None` at the end of the stream.
    pub async fn next_item(&mut self) -> Result<Option<Item>, JobError> {
        loop {
            self.buf.clear();
            let n = (&mut self.inner)
                .take(MAX_RAW_LINE_BYTES as u64 + 1)
                .read_until(b'\n', &mut self.buf)
                .await
                .map_err(JobError::Read)?;
            if n == 0 {
                return Ok(None);
            }
            self.bytes += n as u64;
            self.file_line += 1;
            if n > MAX_RAW_LINE_BYTES && self.buf.last() != Some(&b'\n') {
                return Err(JobError::RawLineTooLong {
                    file_line: self.file_line,
                    limit: MAX_RAW_LINE_BYTES,
                });
            }
            // Comments may hold any encoding; commands must be ASCII for the firmware.
            let text = String::from_utf8_lossy(&self.buf);
            if let Some(marker) = parse_marker(&text) {
                return Ok(Some(Item::Marker(marker)));
            }
            if let Some(cmd) = clean_line(&text) {
                if let Some(reason) = unsendable(cmd) {
                    return Err(JobError::BadCommand {
                        file_line: self.file_line,
                        reason: reason.into(),
                    });
                }
                return Ok(Some(Item::Command(cmd.to_string())));
            }
        }
    }
}

use tokio::io::AsyncReadExt as _;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_matches_marlin_example() {
        // Worked example from the RepRap wiki: "N123 M105*36"? compute by hand instead.
        let body = b"N1 G28";
        let expected = b'N' ^ b'1' ^ b' ' ^ b'G' ^ b'2' ^ b'8';
        assert_eq!(checksum(body), expected);
        assert_eq!(frame(1, "G28"), format!("N1 G28*{expected}"));
    }

    #[test]
    fn cleans_comments_and_blanks() {
        assert_eq!(clean_line("G1 X1 ; move\r\n"), Some("G1 X1"));
        assert_eq!(clean_line("   ; only comment"), None);
        assert_eq!(clean_line("\r\n"), None);
        assert_eq!(clean_line("M104 S200"), Some("M104 S200"));
    }

    #[test]
    fn markers_from_common_slicers() {
        assert_eq!(parse_marker(";LAYER_CHANGE"), Some(Marker::LayerChange));
        assert_eq!(parse_marker(";LAYER:12"), Some(Marker::LayerChange));
        assert_eq!(parse_marker(";Z:0.6"), Some(Marker::LayerZ(0.6)));
        assert_eq!(
            parse_marker(";LAYER_COUNT:100"),
            Some(Marker::LayerCount(100))
        );
        assert_eq!(
            parse_marker(";TIME:6666"),
            Some(Marker::Estimate(Duration::from_secs(6666)))
        );
        assert_eq!(
            parse_marker("; estimated printing time (normal mode) = 1h 20m 58s"),
            Some(Marker::Estimate(Duration::from_secs(3600 + 20 * 60 + 58)))
        );
        assert_eq!(
            parse_marker("; estimated printing time (silent mode) = 1h"),
            None
        );
        assert_eq!(parse_marker("G1 X1"), None);
    }

    #[test]
    fn m73_percent_and_remaining() {
        assert_eq!(
            parse_m73("M73 P40 R12"),
            Some((Some(40.0), Some(Duration::from_secs(720))))
        );
        assert_eq!(parse_m73("M104 S0"), None);
    }

    #[test]
    fn long_commands_exempt_from_timeout() {
        assert!(is_long_command("M109 S200"));
        assert!(is_long_command("g28"));
        assert!(!is_long_command("G1 X1"));
        assert!(!is_long_command("M1090"));
    }

    #[tokio::test]
    async fn rejects_overlong_line_before_printing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("long.gcode");
        let long = format!("G1 X1\nM117 {}\nG1 X2\n", "A".repeat(100));
        std::fs::write(&path, long).unwrap();
        match GcodeJob::open(&path).await {
            Err(JobError::LineTooLong { file_line, .. }) => assert_eq!(file_line, 2),
            other => panic!("expected LineTooLong, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn summary_counts_commands_layers_estimate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.gcode");
        std::fs::write(
            &path,
            ";TIME:120\nG28\n;LAYER:0\nG1 X1 ; c\n\n;LAYER:1\nG1 X2\n",
        )
        .unwrap();
        let job = GcodeJob::open(&path).await.unwrap();
        let s = job.summary();
        assert_eq!(s.commands, 3);
        assert_eq!(s.layers, 2);
        assert_eq!(s.slicer_estimate, Some(Duration::from_secs(120)));
        assert_eq!(s.bytes, std::fs::metadata(&path).unwrap().len());
    }
}
