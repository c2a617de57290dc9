//! A virtual Marlin printer for tests and demos.
//!
//! It speaks Marlin's host protocol over a real pseudo-terminal ([`pty::Pty`]) or any byte
//! stream: line numbers and checksums checked exactly as Marlin's `queue.cpp` does, a command
//! buffer (BUFSIZE) and planner with realistic `ok` timing, a simple thermal model, M115
//! capabilities, temperature reports and autoreport, ADVANCED_OK replies, and a record of every
//! command it executed (queryable in-process, dumpable as JSON lines).
//!
//! Faults come on demand ([`VirtualPrinter::inject`]) or from a seeded plan ([`FaultPlan`]):
//! corrupted bytes on the line, lost `ok`s, resend requests, `busy:` periods, `start` resets,
//! silence, fatal errors.
//!
//! [`PrinterConfig::personality`] picks the firmware it behaves like: Marlin, or Prusa firmware
//! on an MK3S ([`prusa`]), which PrusaLink accepts.
//!
//! Components: [`firmware`] (the simulated firmware loop), [`prusa`] (the Prusa personality),
//! [`pty`] (the pseudo-terminal).

pub mod firmware;
pub mod prusa;
pub mod pty;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use prusa::Personality;
pub use pty::{Pty, PtyError};

/// How the simulated printer behaves.
#[derive(Debug, Clone)]
pub struct PrinterConfig {
    /// Delay between finishing a command and its `ok` reaching the host.
    pub reply_latency: Duration,
    /// Simulated wire speed (10 bits per byte) for received bytes; `None` is instant.
    pub baud: Option<u32>,
    /// Marlin BUFSIZE: commands parsed and waiting.
    pub command_buffer: usize,
    /// Planner blocks (Marlin BLOCK_BUFFER_SIZE).
    pub planner_blocks: usize,
    /// Receive buffer bytes (Marlin RX_BUFFER_SIZE); bytes beyond it are lost.
    pub rx_buffer_bytes: usize,
    /// Time one move block takes to execute.
    pub move_time: Duration,
    /// Simulated time runs this much faster for heating, homing and dwells.
    pub time_scale: f64,
    /// Reply `ok N<n> P<planner free> B<buffer free>`.
    pub advanced_ok: bool,
    /// Report `Cap:AUTOREPORT_TEMP:1` and honour M155.
    pub autoreport_temp: bool,
    /// Report `Cap:EMERGENCY_PARSER:1`; M112 acts on arrival, ahead of the queue.
    pub emergency_parser: bool,
    /// `busy: processing` keepalive interval (M113 changes it).
    pub busy_interval: Duration,
    /// Delay after a reset before `start` is printed.
    pub boot_time: Duration,
    /// Print `start` when the printer comes up (like a board reset by DTR).
    pub start_on_boot: bool,
    /// Say `wait` after this long with nothing received and nothing to do (Marlin built with
    /// NO_TIMEOUTS; OctoPrint's virtual printer does it every second). `None`: never.
    pub idle_wait: Option<Duration>,
    /// Faults injected from a seed.
    pub faults: FaultPlan,
    /// The firmware it behaves like.
    pub personality: Personality,
}

impl Default for PrinterConfig {
    fn default() -> Self {
        Self {
            reply_latency: Duration::from_millis(2),
            baud: Some(250_000),
            command_buffer: 4,
            planner_blocks: 16,
            rx_buffer_bytes: 128,
            move_time: Duration::from_millis(20),
            time_scale: 1.0,
            advanced_ok: false,
            autoreport_temp: true,
            emergency_parser: true,
            busy_interval: Duration::from_secs(2),
            boot_time: Duration::from_millis(50),
            start_on_boot: true,
            idle_wait: None,
            faults: FaultPlan::default(),
            personality: Personality::Marlin,
        }
    }
}

impl PrinterConfig {
    /// Fast mode for tests: instant wire, sub-millisecond replies, moves and heating
    /// a thousand times faster than real.
    pub fn fast() -> Self {
        Self {
            reply_latency: Duration::ZERO,
            baud: None,
            move_time: Duration::ZERO,
            time_scale: 1000.0,
            busy_interval: Duration::from_millis(20),
            boot_time: Duration::from_millis(5),
            ..Self::default()
        }
    }
}

/// Faults drawn from a seeded random source, each with a probability per line or at a line.
#[derive(Debug, Clone, Default)]
pub struct FaultPlan {
    /// Seed of the random source (same seed, same faults for the same input).
    pub seed: u64,
    /// Probability that a received line has one byte corrupted.
    pub corrupt_line: f64,
    /// Probability that an `ok` after a command is lost.
    pub lose_ok: f64,
    /// Probability that a good numbered line is refused with a resend request anyway.
    pub resend: f64,
    /// Probability that a command runs into a `busy:` period.
    pub busy: f64,
    /// Length of a busy period.
    pub busy_duration: Duration,
    /// Reset (print `start`) after executing this line number.
    pub reset_after_line: Option<u64>,
    /// Go silent after executing this line number.
    pub awol_after_line: Option<u64>,
    /// Raise a fatal error (MAXTEMP, kill) after executing this line number.
    pub fatal_after_line: Option<u64>,
    /// Faults at fixed line numbers, each at most once per line number (like the
    /// `simulated_errors` schedule of OctoPrint's virtual printer).
    pub schedule: Vec<(u64, LineFault)>,
    /// Repeats [`FaultPlan::schedule`] every this many lines (`None`: once).
    pub schedule_period: Option<u64>,
}

impl FaultPlan {
    /// The fault scheduled for line `n`, if any.
    pub fn scheduled_at(&self, n: u64) -> Option<LineFault> {
        self.schedule.iter().find_map(|&(at, fault)| {
            let hit = match self.schedule_period {
                Some(p) if p > 0 => n >= at && (n - at).is_multiple_of(p),
                _ => n == at,
            };
            hit.then_some(fault)
        })
    }

    /// A schedule of the kind OctoPrint's virtual printer runs by default: a line refused with
    /// a resend request, an `ok` lost, a line answered with "No Line Number with checksum" and
    /// nothing else, a checksum mismatch; from line 100 on, every `period` lines.
    pub fn octoprint_like(period: u64) -> Self {
        Self {
            schedule: vec![
                (100, LineFault::Resend),
                (105, LineFault::LoseOk),
                (110, LineFault::MissingLineNumber),
                (115, LineFault::ChecksumMismatch),
            ],
            schedule_period: Some(period),
            ..Self::default()
        }
    }
}

/// A fault tied to a line number in [`FaultPlan::schedule`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineFault {
    /// Refuse the good line with a resend request (and its `ok`).
    Resend,
    /// Execute the line but lose its `ok`.
    LoseOk,
    /// Drop the line, answering only `Error:No Line Number with checksum, Last Line: <n>`,
    /// with neither `ok` nor resend request (as OctoPrint's virtual printer does).
    MissingLineNumber,
    /// The line arrives corrupted: `Error:checksum mismatch`, a resend request and `ok`.
    ChecksumMismatch,
}

/// A fault injected on demand.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// The board resets: state lost, `start` printed.
    Reset,
    /// Silence for this long (`None`: forever).
    Awol(Option<Duration>),
    /// MAXTEMP then kill; the printer halts until reset.
    Fatal,
    /// Corrupt one byte of the next received line.
    CorruptNextLine,
    /// Lose the next `ok`.
    LoseNextOk,
    /// Refuse the next good numbered line with a resend request.
    ResendNext,
    /// The next command is busy for this long.
    BusyNext(Duration),
    /// Print `//action:<text>`.
    HostAction(String),
    /// Send a resend request without the `ok` that normally follows.
    ResendWithoutOkNext,
}

/// One command the printer executed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Executed {
    /// Line number it carried, if any.
    pub line: Option<u64>,
    /// The command without line number and checksum.
    pub command: String,
}

/// Counters of what happened on the link.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PrinterStats {
    /// Lines received (all, including rejected).
    pub lines_received: u64,
    /// Line errors answered with a resend request.
    pub resend_requests: u64,
    /// Bytes lost to receive-buffer overflow.
    pub rx_overflow_bytes: u64,
    /// Faults injected, by kind.
    pub corrupted: u64,
    /// `ok`s dropped.
    pub lost_oks: u64,
    /// Scheduled line faults that fired ([`FaultPlan::schedule`]).
    pub scheduled_faults: u64,
    /// Resets.
    pub resets: u64,
}

/// What the printer shares with its handle.
#[derive(Debug, Default)]
pub struct Shared {
    /// Every command executed, in order.
    pub record: Vec<Executed>,
    /// Link counters.
    pub stats: PrinterStats,
    /// Hot end temperature (actual, target).
    pub hotend: (f64, f64),
    /// Bed temperature (actual, target).
    pub bed: (f64, f64),
}

/// Errors of the virtual printer.
#[derive(Debug, thiserror::Error)]
pub enum PrinterError {
    /// Pseudo-terminal setup failed.
    #[error(transparent)]
    Pty(#[from] PtyError),
    /// Writing the record failed.
    #[error("record: {0}")]
    Io(#[from] std::io::Error),
}

/// A running virtual printer.
pub struct VirtualPrinter {
    shared: Arc<Mutex<Shared>>,
    faults: mpsc::UnboundedSender<Fault>,
    task: JoinHandle<()>,
    slave_path: Option<PathBuf>,
}

impl VirtualPrinter {
    /// Starts a printer on a new pseudo-terminal; hosts open [`Self::slave_path`].
    pub fn spawn_pty(config: PrinterConfig) -> Result<Self, PrinterError> {
        let pty = Pty::open()?;
        let path = pty.slave_path().clone();
        let mut printer = Self::spawn_on(pty, config);
        printer.slave_path = Some(path);
        Ok(printer)
    }

    /// Starts a printer on any byte stream (e.g. one end of `tokio::io::duplex`).
    pub fn spawn_on<S>(stream: S, config: PrinterConfig) -> Self
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let shared = Arc::new(Mutex::new(Shared {
            hotend: (firmware::AMBIENT, 0.0),
            bed: (firmware::AMBIENT, 0.0),
            ..Shared::default()
        }));
        let (tx, rx) = mpsc::unbounded_channel();
        let fw = firmware::Firmware::new(config, Arc::clone(&shared));
        let task = tokio::spawn(fw.run(stream, rx));
        Self {
            shared,
            faults: tx,
            task,
            slave_path: None,
        }
    }

    /// The pseudo-terminal path a host opens, when running on one.
    pub fn slave_path(&self) -> Option<&Path> {
        self.slave_path.as_deref()
    }

    /// Injects a fault now.
    pub fn inject(&self, fault: Fault) {
        // The firmware task only ends when the printer is dropped.
        let _ = self.faults.send(fault);
    }

    /// Every command executed so far, in order.
    pub fn record(&self) -> Vec<Executed> {
        self.lock().record.clone()
    }

    /// Link counters so far.
    pub fn stats(&self) -> PrinterStats {
        self.lock().stats.clone()
    }

    /// Hot end and bed temperatures: ((actual, target), (actual, target)).
    pub fn temperatures(&self) -> ((f64, f64), (f64, f64)) {
        let s = self.lock();
        (s.hotend, s.bed)
    }

    /// Writes the record as JSON lines (for cross-process tests).
    pub fn dump_record(&self, path: &Path) -> Result<(), PrinterError> {
        let record = self.record();
        let mut out = String::new();
        for e in &record {
            // Executed holds only strings and numbers; serialising cannot fail.
            out.push_str(&serde_json::to_string(e).unwrap_or_default());
            out.push('\n');
        }
        std::fs::write(path, out)?;
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        // A poisoned lock only means a test thread panicked; the data is still usable.
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for VirtualPrinter {
    fn drop(&mut self) {
        self.task.abort();
    }
}
