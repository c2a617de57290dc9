//! The events a connection reports to whoever drives it (the node agent forwards them to the
//! router): state changes, progress, layers, temperatures, errors, host actions, job outcome.

use serde::Serialize;

use crate::reply::{ErrorClass, HostAction, Temperatures};

/// Where the connection stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PrinterState {
    /// Waiting for the firmware to answer the handshake.
    Connecting,
    /// Connected and idle.
    Operational,
    /// Streaming a job.
    Printing,
    /// Pause asked: waiting for a safe point (in-flight lines done), then the park G-code.
    Pausing,
    /// Paused: nothing of the job is sent.
    Paused,
    /// Cancel asked: in-flight lines finish, then the end G-code runs.
    Cancelling,
    /// The firmware halted (fatal error or emergency stop); a reset (`start`) reconnects.
    Halted,
    /// The link is gone.
    Disconnected,
}

/// How a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every line was acknowledged.
    Completed,
    /// Stopped on request; the end G-code ran.
    Cancelled,
    /// Stopped by a fault (see the reason).
    Failed,
}

/// What the firmware said about itself (M115).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FirmwareInfo {
    /// `FIRMWARE_NAME:` value, when reported.
    pub name: Option<String>,
    /// `Cap:` lines, in order.
    pub capabilities: Vec<(String, bool)>,
}

impl FirmwareInfo {
    /// Whether capability `name` is reported as enabled.
    pub fn has(&self, name: &str) -> bool {
        self.capabilities.iter().any(|(n, on)| *on && n == name)
    }
}

/// Progress of a running job.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Progress {
    /// Job commands sent (first transmissions; resends not counted).
    pub lines_sent: u64,
    /// Job commands in the file.
    pub lines_total: Option<u64>,
    /// File bytes consumed.
    pub bytes: u64,
    /// File size.
    pub bytes_total: Option<u64>,
    /// Seconds since the job started.
    pub elapsed_s: f64,
    /// Seconds left: from M73 R when the file has it, else the slicer estimate scaled by bytes.
    pub remaining_s: Option<f64>,
    /// Resend requests honoured so far.
    pub resends: u64,
}

/// Counters of a finished job.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct JobStats {
    /// Job commands sent (first transmissions).
    pub lines: u64,
    /// Lines retransmitted on resend requests.
    pub lines_resent: u64,
    /// Resend requests honoured.
    pub resends: u64,
    /// Duplicate resend requests ignored (lines that were in flight).
    pub duplicate_resends: u64,
    /// Reply timeouts.
    pub timeouts: u64,
    /// Numbered status queries sent because an acknowledgement was overdue (lost `ok`s).
    pub quick_probes: u64,
    /// Wall time in seconds.
    pub elapsed_s: f64,
}

/// One event of a connection.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The state changed.
    State {
        /// The new state.
        state: PrinterState,
    },
    /// Handshake done.
    Firmware(FirmwareInfo),
    /// Job progress (at most every `progress_interval`, and at layer changes).
    Progress(Progress),
    /// A new layer started (its first command was sent).
    Layer {
        /// 1-based layer number.
        number: u32,
        /// Layers in the file, when known.
        total: Option<u32>,
        /// Layer height from the slicer comment, when given.
        z: Option<f32>,
    },
    /// A temperature report.
    Temperatures(Temperatures),
    /// A firmware or host error.
    Error {
        /// Severity.
        class: ErrorClass,
        /// Text.
        message: String,
    },
    /// A `//action:` line from the printer.
    HostAction(HostAction),
    /// The job ended.
    Finished {
        /// How.
        outcome: Outcome,
        /// Why, for cancelled and failed jobs.
        reason: Option<String>,
        /// Counters.
        stats: JobStats,
    },
}
