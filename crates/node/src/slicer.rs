//! Turning a design into G-code with PrusaSlicer's CLI (headless), with a timeout, the
//! slicer's own error lines as the failure reason, and a verified cache per (design, slicer
//! config, options).
//!
//! Several printers of one node often get jobs of the same design at once, so:
//! - one key is sliced once: the first request runs the slicer, requests arriving meanwhile
//!   wait for it and share its result (`flights`); different keys slice concurrently;
//! - every run writes into its own temporary directory under `cache/tmp` (PrusaSlicer writes
//!   its post-processing files next to `--output`, and `TMPDIR` points there too);
//! - an entry is published complete: the G-code is synced and renamed to `{key}.gcode`, then
//!   `{key}.json` records its sha256 and length; a read checks both, and an entry that does
//!   not match (or has no record) is removed and sliced again.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

/// The built-in PrusaSlicer config of profile `prusaslicer-b` (used when a printer names none).
pub const DEFAULT_CONFIG: &str = include_str!("../profiles/prusaslicer-b.ini");
/// Most characters of slicer output kept as a failure reason.
const MAX_REASON_CHARS: usize = 300;
/// Lines of slicer output kept as a failure reason.
const REASON_LINES: usize = 3;
/// The directory under the cache holding each run's temporary directory.
const TMP_DIR: &str = "tmp";

/// Why slicing failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SliceError {
    /// The slicer binary is missing.
    #[error("{0} is not installed on this node")]
    NotInstalled(String),
    /// The slicer refused the model itself (empty, no layers, outside the bed...): the job's.
    #[error("the design cannot be sliced: {0}")]
    Rejected(String),
    /// The slicer failed for a reason of this node (crash, its config, its files).
    #[error("the slicer failed on this node: {0}")]
    Failed(String),
    /// The slicer ran too long.
    #[error("slicing took longer than {0:?}; stopped")]
    TimedOut(Duration),
    /// Local file trouble (disk full, unwritable cache, ...).
    #[error("slicing on this node: {0}")]
    Io(String),
}

impl SliceError {
    /// Whether the node (not the model) is to blame, so another printer should try.
    pub fn is_node_fault(&self) -> bool {
        !matches!(self, SliceError::Rejected(_))
    }
}

/// An I/O error with what was being done.
fn io(what: &str, path: &Path) -> impl FnOnce(std::io::Error) -> SliceError {
    let what = format!("{what} {}", path.display());
    move |e| SliceError::Io(format!("{what}: {e}"))
}

/// Where a slice result came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A verified cache entry.
    Cache,
    /// This request ran the slicer.
    Slicer,
    /// Another request for the same key was running; this one shared its result.
    Joined,
}

/// G-code ready to print.
#[derive(Debug, Clone)]
pub struct Sliced {
    /// The cache entry.
    pub path: PathBuf,
    /// How it was obtained.
    pub origin: Origin,
}

/// The sidecar of a cache entry: what the slicer produced.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Record {
    sha256: String,
    bytes: u64,
}

type Flight = Arc<OnceCell<Result<(PathBuf, Origin), SliceError>>>;

#[derive(Debug)]
struct Inner {
    command: String,
    timeout: Duration,
    cache_dir: PathBuf,
    /// Slices running (or about to), by key.
    flights: Mutex<HashMap<String, Flight>>,
}

/// Runs the slicer and caches its output. Clones share the cache and the running slices.
#[derive(Debug, Clone)]
pub struct Slicer {
    inner: Arc<Inner>,
}

/// Finds `command` on PATH (or checks it when it is a path).
pub fn find_on_path(command: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if command.contains('/') {
        let p = PathBuf::from(command);
        return executable(&p).then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(command))
        .find(|p| executable(p))
}

/// sha256 (hex) and length of a file.
fn hash_file(path: &Path) -> std::io::Result<(String, u64)> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut len = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        len += n as u64;
    }
    Ok((hex::encode(h.finalize()), len))
}

/// sha256 of a file, hex.
pub fn file_sha256(path: &Path) -> std::io::Result<String> {
    hash_file(path).map(|(sha, _)| sha)
}

/// The message of a PrusaSlicer log line (`[time] [thread] [level] message`) when its level is
/// an error; `None` for trace, info and warning lines.
fn logged_error(line: &str) -> Option<&str> {
    let mut rest = line;
    let mut level = "";
    for _ in 0..3 {
        rest = rest.strip_prefix('[')?;
        let end = rest.find(']')?;
        level = &rest[..end];
        rest = rest[end + 1..].trim_start();
    }
    matches!(level, "error" | "fatal").then_some(rest)
}

/// One line the slicer said.
#[derive(Debug)]
struct Said {
    text: String,
    /// Logged at error level, or worded as an error.
    error: bool,
}

/// What the slicer said, stderr first (PrusaSlicer writes its errors there), without progress
/// ("30 => Preparing infill"), log lines below error level, or its success line.
fn messages(stderr: &str, stdout: &str) -> Vec<Said> {
    let mut out: Vec<Said> = Vec::new();
    for line in stderr.lines().chain(stdout.lines()) {
        let line = line.trim();
        let (msg, logged) = if line.starts_with('[') {
            match logged_error(line) {
                Some(m) => (m, true),
                None => continue,
            }
        } else {
            (line, false)
        };
        let progress = msg
            .split_once(" => ")
            .is_some_and(|(n, _)| n.trim().parse::<u32>().is_ok());
        if msg.is_empty() || progress || msg.starts_with("Slicing result exported") {
            continue;
        }
        if !out.iter().any(|m| m.text == msg) {
            out.push(Said {
                text: msg.to_string(),
                error: logged || says_error(msg),
            });
        }
    }
    out
}

fn says_error(msg: &str) -> bool {
    let m = msg.to_lowercase();
    [
        "error",
        "fail",
        "cannot",
        "can't",
        "could not",
        "unable",
        "invalid",
        "no such",
    ]
    .iter()
    .any(|w| m.contains(w))
}

/// The failure reason: the slicer's error lines (else its other messages), short.
fn reason_from(messages: &[Said]) -> String {
    let any_error = messages.iter().any(|m| m.error);
    let chosen: Vec<&str> = messages
        .iter()
        .filter(|m| m.error || !any_error)
        .map(|m| m.text.as_str())
        .collect();
    let text = chosen
        .into_iter()
        .take(REASON_LINES)
        .collect::<Vec<_>>()
        .join("; ");
    if text.is_empty() {
        return "the slicer exited with an error and no message".into();
    }
    if text.chars().count() <= MAX_REASON_CHARS {
        return text;
    }
    let mut short: String = text.chars().take(MAX_REASON_CHARS - 1).collect();
    short.push('…');
    short
}

/// Whether the slicer's messages blame the model (the job's fault) rather than this node. Only
/// what PrusaSlicer says about the model counts; anything else (its config, its files, a
/// crash) is the node's, so another printer gets to try.
fn blames_the_model(messages: &[Said]) -> bool {
    const MODEL: &[&str] = &[
        "loading of a model file failed",
        "no layers were detected",
        "empty",
        "outside",
        "could not fit",
        "does not fit",
        "doesn't fit",
    ];
    const NODE: &[&str] = &[
        "no such file",
        "open the file",
        "open file",
        "no space",
        "permission denied",
        "read-only",
        "export failed",
        "i/o error",
        "bad_alloc",
    ];
    let text = messages
        .iter()
        .map(|m| m.text.to_lowercase())
        .collect::<Vec<_>>()
        .join("\n");
    MODEL.iter().any(|m| text.contains(m)) && !NODE.iter().any(|m| text.contains(m))
}

/// The error for a slicer run that did not succeed.
fn failure(status: ExitStatus, stderr: &str, stdout: &str) -> SliceError {
    use std::os::unix::process::ExitStatusExt;
    let msgs = messages(stderr, stdout);
    let reason = reason_from(&msgs);
    match status.signal() {
        Some(signal) => SliceError::Failed(format!("killed by signal {signal}: {reason}")),
        None if blames_the_model(&msgs) => SliceError::Rejected(reason),
        None => SliceError::Failed(reason),
    }
}

/// The state of a cache entry.
enum Entry {
    Missing,
    Good,
    Bad(String),
}

fn check_entry(gcode: &Path, record: &Path) -> Entry {
    match std::fs::metadata(gcode) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Entry::Missing,
        Err(e) => return Entry::Bad(e.to_string()),
        Ok(_) => {}
    }
    let rec: Record = match std::fs::read(record)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(r) => r,
        Err(e) => return Entry::Bad(format!("no readable record: {e}")),
    };
    match hash_file(gcode) {
        Err(e) => Entry::Bad(e.to_string()),
        Ok((_, bytes)) if bytes != rec.bytes => Entry::Bad(format!(
            "{bytes} bytes where the slicer wrote {}",
            rec.bytes
        )),
        Ok((sha, _)) if sha != rec.sha256 => Entry::Bad(format!(
            "sha256 {sha} where the slicer wrote {}",
            rec.sha256
        )),
        Ok(_) => Entry::Good,
    }
}

fn remove_if_there(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Moves the slicer's finished output into the cache: synced, renamed, then its record
/// (written and synced in the run's own directory, renamed), then the directory synced.
fn publish(out: &Path, work: &Path, gcode: &Path, record: &Path) -> Result<(), SliceError> {
    let (sha256, bytes) = hash_file(out).map_err(io("reading the sliced", out))?;
    if bytes == 0 {
        return Err(SliceError::Failed("the slicer wrote an empty file".into()));
    }
    std::fs::File::open(out)
        .and_then(|f| f.sync_all())
        .map_err(io("syncing", out))?;
    std::fs::rename(out, gcode).map_err(io("storing", gcode))?;
    let mut tmp = tempfile::NamedTempFile::new_in(work).map_err(io("writing in", work))?;
    serde_json::to_writer(&mut tmp, &Record { sha256, bytes })
        .map_err(std::io::Error::from)
        .and_then(|()| tmp.flush())
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(io("writing the record of", gcode))?;
    tmp.persist(record)
        .map_err(|e| e.error)
        .map_err(io("storing", record))?;
    let dir = gcode.parent().unwrap_or(Path::new("."));
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("syncing", dir))
}

/// Takes part in the flight of `key`; when the last participant leaves (or the flight has its
/// result), the flight is forgotten so later requests look at the cache afresh.
struct FlightGuard<'a> {
    inner: &'a Inner,
    key: &'a str,
    flight: Option<Flight>,
}

impl<'a> FlightGuard<'a> {
    fn join(inner: &'a Inner, key: &'a str) -> Self {
        let mut flights = inner.flights.lock().unwrap_or_else(|e| e.into_inner());
        let flight = flights.entry(key.to_string()).or_default().clone();
        Self {
            inner,
            key,
            flight: Some(flight),
        }
    }

    fn cell(&self) -> &Flight {
        self.flight.as_ref().expect("held until drop")
    }
}

impl Drop for FlightGuard<'_> {
    fn drop(&mut self) {
        let mut flights = self.inner.flights.lock().unwrap_or_else(|e| e.into_inner());
        let Some(flight) = self.flight.take() else {
            return;
        };
        // Counted under the lock, which every new participant takes: the map's reference and
        // ours are the last ones when the count is 2. A flight whose leader was cancelled
        // stays while others wait: one of them takes over the slicing.
        if flights
            .get(self.key)
            .is_some_and(|f| Arc::ptr_eq(f, &flight))
            && (flight.initialized() || Arc::strong_count(&flight) == 2)
        {
            flights.remove(self.key);
        }
        drop(flight);
    }
}

impl Slicer {
    /// A slicer running `command`, caching in `cache_dir`.
    pub fn new(command: &str, timeout: Duration, cache_dir: &Path) -> Self {
        Self {
            inner: Arc::new(Inner {
                command: command.to_string(),
                timeout,
                cache_dir: cache_dir.to_path_buf(),
                flights: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Removes what runs interrupted by a crash left behind: their temporary directories and
    /// the `*.part.gcode` files of older versions. Call before slicing starts.
    pub fn remove_leftovers(&self) {
        let tmp = self.inner.cache_dir.join(TMP_DIR);
        if let Err(e) = std::fs::remove_dir_all(&tmp)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %tmp.display(), error = %e, "cannot remove the slicer's temporary files");
        }
        let Ok(dir) = std::fs::read_dir(&self.inner.cache_dir) else {
            return;
        };
        for e in dir.flatten() {
            if e.file_name().to_string_lossy().ends_with(".part.gcode") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }

    /// Where the G-code of `key` is cached, and its record.
    fn entry_paths(&self, key: &str) -> (PathBuf, PathBuf) {
        let dir = &self.inner.cache_dir;
        (
            dir.join(format!("{key}.gcode")),
            dir.join(format!("{key}.json")),
        )
    }

    /// The cache key of (design, config, options).
    async fn key(
        design_sha256: &str,
        config: &Path,
        overrides: &[String],
    ) -> Result<String, SliceError> {
        let config_sha = {
            let path = config.to_path_buf();
            tokio::task::spawn_blocking(move || file_sha256(&path))
                .await
                .map_err(|e| SliceError::Io(e.to_string()))?
                .map_err(io("reading the slicer config", config))?
        };
        let config_sha = if overrides.is_empty() {
            config_sha
        } else {
            // The overrides change the output, so they are part of the key.
            let mut h = Sha256::new();
            h.update(config_sha.as_bytes());
            for o in overrides {
                h.update([0]);
                h.update(o.as_bytes());
            }
            hex::encode(h.finalize())
        };
        Ok(format!("{design_sha256}-{config_sha}"))
    }

    /// Slices `model` (whose sha256 is `design_sha256`) with the PrusaSlicer `config` and the
    /// command-line `overrides` (e.g. the printer's own bed), or returns the cached G-code.
    /// Concurrent requests for the same key share one slicer run.
    pub async fn slice(
        &self,
        model: &Path,
        design_sha256: &str,
        config: &Path,
        overrides: &[String],
    ) -> Result<Sliced, SliceError> {
        let key = Self::key(design_sha256, config, overrides).await?;
        let guard = FlightGuard::join(&self.inner, &key);
        let mut led = false;
        let result = guard
            .cell()
            .get_or_init(|| {
                led = true;
                self.produce(&key, model, config, overrides)
            })
            .await
            .clone();
        drop(guard);
        result.map(|(path, origin)| Sliced {
            path,
            origin: if led { origin } else { Origin::Joined },
        })
    }

    /// The verified cache entry of `key`, or a fresh slice stored as it.
    async fn produce(
        &self,
        key: &str,
        model: &Path,
        config: &Path,
        overrides: &[String],
    ) -> Result<(PathBuf, Origin), SliceError> {
        let (gcode, record) = self.entry_paths(key);
        let entry = {
            let (g, r) = (gcode.clone(), record.clone());
            tokio::task::spawn_blocking(move || check_entry(&g, &r))
                .await
                .map_err(|e| SliceError::Io(e.to_string()))?
        };
        match entry {
            Entry::Good => return Ok((gcode, Origin::Cache)),
            Entry::Missing => {}
            Entry::Bad(why) => {
                tracing::warn!(gcode = %gcode.display(), %why, "a cached G-code file is not what the slicer wrote; removing it and slicing again");
                remove_if_there(&gcode).map_err(io("removing", &gcode))?;
                remove_if_there(&record).map_err(io("removing", &record))?;
            }
        }
        let Some(exe) = find_on_path(&self.inner.command) else {
            return Err(SliceError::NotInstalled(self.inner.command.clone()));
        };
        let tmp_root = self.inner.cache_dir.join(TMP_DIR);
        std::fs::create_dir_all(&tmp_root).map_err(io("creating", &tmp_root))?;
        // Removed on drop, also when this future is dropped (the job cancelled).
        let work = tempfile::Builder::new()
            .prefix("slice-")
            .tempdir_in(&tmp_root)
            .map_err(io("creating a directory in", &tmp_root))?;
        let out = work.path().join("out.gcode");
        let child = tokio::process::Command::new(exe)
            .arg("--export-gcode")
            .arg("--load")
            .arg(config)
            .args(overrides)
            .arg("--output")
            .arg(&out)
            .arg(model)
            .env("TMPDIR", work.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(io("starting", Path::new(&self.inner.command)))?;
        let output = tokio::time::timeout(self.inner.timeout, child.wait_with_output())
            .await
            .map_err(|_| SliceError::TimedOut(self.inner.timeout))?
            .map_err(io("running", Path::new(&self.inner.command)))?;
        // The customer sees neither this node's paths nor the run's directory.
        let text = |b: &[u8]| {
            String::from_utf8_lossy(b)
                .replace(&work.path().display().to_string(), "")
                .replace(&model.display().to_string(), "the design")
        };
        if !output.status.success() {
            return Err(failure(
                output.status,
                &text(&output.stderr),
                &text(&output.stdout),
            ));
        }
        if !out.exists() {
            let msgs = messages(&text(&output.stderr), &text(&output.stdout));
            return Err(SliceError::Failed(format!(
                "the slicer wrote no G-code: {}",
                reason_from(&msgs)
            )));
        }
        let (g, r) = (gcode.clone(), record.clone());
        tokio::task::spawn_blocking(move || {
            let done = publish(&out, work.path(), &g, &r);
            if done.is_err() {
                // Not left for the next read to find bad: a half-published entry goes now.
                let _ = remove_if_there(&g);
                let _ = remove_if_there(&r);
            }
            done
        })
        .await
        .map_err(|e| SliceError::Io(e.to_string()))??;
        Ok((gcode, Origin::Slicer))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::time::Instant;

    /// The 20 mm calibration cube of the repository's test data.
    pub(crate) fn cube_stl() -> PathBuf {
        fabrouter_testkit::data("stl/trimesh__20mm-xyz-cube.stl")
    }

    /// A stand-in slicer: logs each run to `runs.log`, waits `delay_s`, then runs `body` (a
    /// shell snippet with `$out` set to the --output path).
    fn fake_slicer(dir: &Path, delay_s: f64, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("fake-slicer");
        let log = dir.join("runs.log");
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\necho \"$$ $TMPDIR\" >> '{}'\nout=\nwhile [ $# -gt 0 ]; do [ \"$1\" = --output ] && out=\"$2\"; shift; done\nsleep {delay_s}\n{body}\n",
                log.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn runs(dir: &Path) -> Vec<String> {
        std::fs::read_to_string(dir.join("runs.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    const WRITES_GCODE: &str =
        "printf 'G28\\nG1 X10 Y10\\n' > \"$out\"\necho \"Slicing result exported to $out\"";

    fn setup(delay_s: f64, body: &str) -> (tempfile::TempDir, Slicer, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let exe = fake_slicer(dir.path(), delay_s, body);
        let config = dir.path().join("c.ini");
        std::fs::write(&config, "layer_height = 0.2\n").unwrap();
        let model = dir.path().join("m.stl");
        std::fs::write(&model, "solid x\nendsolid x\n").unwrap();
        let s = Slicer::new(
            exe.to_str().unwrap(),
            Duration::from_secs(30),
            &dir.path().join("cache"),
        );
        (dir, s, config, model)
    }

    fn opts(o: &[&str]) -> Vec<String> {
        o.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_reason_is_the_slicers_error_not_its_progress() {
        // What PrusaSlicer 2.5 printed in the field when another run took its file away.
        let stdout = "[2026-11-23 09:27:37.1] [0x7f] [trace]   Initializing StaticPrintConfigs\n\
                      10 => Processing triangulated mesh\n\
                      90 => Exporting G-code to /x/out.gcode\n\
                      Slicing result exported to /x/out.gcode\n";
        let stderr = "Time estimator post process export failed.\nCannot open file for reading.\n";
        let msgs = messages(stderr, stdout);
        assert_eq!(
            reason_from(&msgs),
            "Time estimator post process export failed.; Cannot open file for reading."
        );
        assert!(!blames_the_model(&msgs));

        // Only the success line and progress: never given as the reason.
        let msgs = messages("", stdout);
        assert_eq!(
            reason_from(&msgs),
            "the slicer exited with an error and no message"
        );

        // An error logged on stdout counts; its log prefix does not.
        let stdout = "[2026-12-02 07:32:14.7] [0x7fe8] [error]   stl_open_count_facets: The input is an empty file: the design\n";
        let msgs = messages("the design: Loading of a model file failed.\n", stdout);
        assert_eq!(
            reason_from(&msgs),
            "the design: Loading of a model file failed.; stl_open_count_facets: The input is an empty file: the design"
        );
        assert!(blames_the_model(&msgs));

        // Error lines first, then bounded.
        let long = format!("warning: x\nsome error {}\n", "é".repeat(1000));
        let r = reason_from(&messages(&long, ""));
        assert!(r.starts_with("some error é"), "{r}");
        assert_eq!(r.chars().count(), MAX_REASON_CHARS);
    }

    #[tokio::test]
    async fn a_missing_slicer_is_a_clear_node_fault() {
        let (_dir, _, config, model) = setup(0.0, "");
        let s = Slicer::new(
            "fab-no-such-slicer",
            Duration::from_secs(5),
            &_dir.path().join("cache"),
        );
        let e = s.slice(&model, "abc", &config, &[]).await.unwrap_err();
        assert!(e.is_node_fault());
        assert_eq!(
            e.to_string(),
            "fab-no-such-slicer is not installed on this node"
        );
    }

    #[tokio::test]
    async fn concurrent_requests_for_one_key_share_one_run() {
        let (dir, s, config, model) = setup(0.5, WRITES_GCODE);
        let o = opts(&["--bed-shape", "0x0,200x0,200x200,0x200"]);
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let (s, model, config, o) = (s.clone(), model.clone(), config.clone(), o.clone());
            set.spawn(async move { s.slice(&model, "abc", &config, &o).await });
        }
        let all = set.join_all().await;
        assert_eq!(runs(dir.path()).len(), 1, "the slicer ran once");
        let paths: Vec<&PathBuf> = all.iter().map(|r| &r.as_ref().unwrap().path).collect();
        assert!(paths.iter().all(|p| *p == paths[0]));
        let origins: Vec<Origin> = all.iter().map(|r| r.as_ref().unwrap().origin).collect();
        assert_eq!(origins.iter().filter(|o| **o == Origin::Slicer).count(), 1);
        assert_eq!(origins.iter().filter(|o| **o == Origin::Joined).count(), 7);
        assert_eq!(
            std::fs::read_to_string(paths[0]).unwrap(),
            "G28\nG1 X10 Y10\n"
        );
        // Later: from the cache, nothing left behind.
        let again = s.slice(&model, "abc", &config, &o).await.unwrap();
        assert_eq!(again.origin, Origin::Cache);
        assert_eq!(runs(dir.path()).len(), 1);
        assert_eq!(
            std::fs::read_dir(dir.path().join("cache/tmp"))
                .unwrap()
                .count(),
            0
        );
        assert!(s.inner.flights.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn different_keys_slice_at_once_each_in_its_own_directory() {
        let (dir, s, config, model) = setup(1.0, WRITES_GCODE);
        let started = Instant::now();
        let turned = opts(&["--rotate", "90"]);
        let (a, b, c) = tokio::join!(
            s.slice(&model, "abc", &config, &turned),
            s.slice(&model, "abc", &config, &[]),
            s.slice(&model, "def", &config, &[]),
        );
        let took = started.elapsed();
        let paths = [a.unwrap().path, b.unwrap().path, c.unwrap().path];
        assert!(paths[0] != paths[1] && paths[1] != paths[2] && paths[0] != paths[2]);
        assert!(
            took < Duration::from_millis(2500),
            "ran one by one: {took:?}"
        );
        let dirs: std::collections::BTreeSet<String> = runs(dir.path())
            .iter()
            .map(|l| l.split_once(' ').unwrap().1.to_string())
            .collect();
        assert_eq!(dirs.len(), 3, "each run has its own TMPDIR: {dirs:?}");
    }

    #[tokio::test]
    async fn a_corrupted_cache_entry_is_detected_and_sliced_again() {
        let (dir, s, config, model) = setup(0.0, WRITES_GCODE);
        let first = s.slice(&model, "abc", &config, &[]).await.unwrap();
        assert_eq!(first.origin, Origin::Slicer);
        let good = std::fs::read(&first.path).unwrap();
        let record = first.path.with_extension("json");
        let rec: Record = serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
        assert_eq!(rec.bytes, good.len() as u64);

        // Same length, one byte changed; then longer; then the record lost.
        let mut flipped = good.clone();
        flipped[0] ^= 0x20;
        let mut longer = good.clone();
        longer.extend_from_slice(&[b'X'; 70_000]);
        for (n, damage) in [flipped, longer].into_iter().enumerate() {
            std::fs::write(&first.path, damage).unwrap();
            let again = s.slice(&model, "abc", &config, &[]).await.unwrap();
            assert_eq!(again.origin, Origin::Slicer);
            assert_eq!(std::fs::read(&again.path).unwrap(), good);
            assert_eq!(runs(dir.path()).len(), n + 2);
        }
        std::fs::remove_file(&record).unwrap();
        let again = s.slice(&model, "abc", &config, &[]).await.unwrap();
        assert_eq!(again.origin, Origin::Slicer);
        assert!(record.exists());
        let cached = s.slice(&model, "abc", &config, &[]).await.unwrap();
        assert_eq!(cached.origin, Origin::Cache);
        assert_eq!(runs(dir.path()).len(), 4);
    }

    #[tokio::test]
    async fn the_slicer_failing_is_the_nodes_unless_it_blames_the_model() {
        let refuses = "echo '10 => Processing triangulated mesh'\necho 'No layers were detected. You might want to repair your STL file(s).' >&2\nexit 1";
        let (_dir, s, config, model) = setup(0.0, refuses);
        let e = s.slice(&model, "abc", &config, &[]).await.unwrap_err();
        assert!(!e.is_node_fault(), "{e}");
        assert_eq!(
            e.to_string(),
            "the design cannot be sliced: No layers were detected. You might want to repair your STL file(s)."
        );

        let crashes = "echo 'Slicing result exported to x'\nkill -SEGV $$";
        let (_dir, s, config, model) = setup(0.0, crashes);
        let e = s.slice(&model, "abc", &config, &[]).await.unwrap_err();
        assert!(e.is_node_fault(), "{e}");
        assert!(
            e.to_string()
                .starts_with("the slicer failed on this node: killed by signal 11"),
            "{e}"
        );
        assert!(!e.to_string().contains("exported"), "{e}");

        let own_files = "echo 'G-code export to '\"$out\"' failed.' >&2\necho 'Cannot open the file for writing.' >&2\nexit 1";
        let (_dir, s, config, model) = setup(0.0, own_files);
        let e = s.slice(&model, "abc", &config, &[]).await.unwrap_err();
        assert!(e.is_node_fault(), "{e}");
        // The run's directory is not shown.
        assert_eq!(
            e.to_string(),
            "the slicer failed on this node: G-code export to /out.gcode failed.; Cannot open the file for writing."
        );

        // An unwritable cache is the node's too.
        let (dir, s, config, model) = setup(0.0, WRITES_GCODE);
        std::fs::write(dir.path().join("cache"), "not a directory").unwrap();
        let e = s.slice(&model, "abc", &config, &[]).await.unwrap_err();
        assert!(matches!(e, SliceError::Io(_)), "{e}");
        assert!(e.is_node_fault());
    }

    #[tokio::test]
    #[cfg_attr(
        missing_prusa_slicer,
        ignore = "prusa-slicer is not installed (apt-get install prusa-slicer)"
    )]
    async fn prusaslicer_refusing_a_model_names_its_error() {
        fabrouter_testkit::require(fabrouter_testkit::Tool::PrusaSlicer);
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prusaslicer-b.ini");
        std::fs::write(&config, DEFAULT_CONFIG).unwrap();
        let s = Slicer::new(
            "prusa-slicer",
            Duration::from_secs(120),
            &dir.path().join("cache"),
        );
        // 20 µm: thinner than a layer.
        let e = s
            .slice(&cube_stl(), "tiny", &config, &opts(&["--scale", "0.001"]))
            .await
            .unwrap_err();
        assert!(!e.is_node_fault(), "{e}");
        assert!(e.to_string().contains("No layers were detected"), "{e}");

        let empty = dir.path().join("empty.stl");
        std::fs::write(&empty, "solid x\nendsolid x\n").unwrap();
        let e = s.slice(&empty, "empty", &config, &[]).await.unwrap_err();
        assert!(!e.is_node_fault(), "{e}");
        assert!(
            e.to_string()
                .contains("the design: Loading of a model file failed"),
            "{e}"
        );
        assert!(!e.to_string().contains(&dir.path().display().to_string()));
    }
}
