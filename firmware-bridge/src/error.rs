//! Error types of the bridge: problems with a job file (found before printing) and problems
//! with the printer link or a command given to the bridge.

use std::path::PathBuf;

/// A G-code file that cannot be printed as it is.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The file could not be opened.
    #[error("cannot open {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Reading failed part-way.
    #[error("cannot read G-code: {0}")]
    Read(std::io::Error),
    /// A command, framed with line number and checksum, exceeds the firmware's line buffer.
    #[error(
        "line {file_line}: command is {framed_len} bytes with line number and checksum; the firmware accepts at most {limit}"
    )]
    LineTooLong {
        /// 1-based line in the file.
        file_line: u64,
        /// Framed length in bytes.
        framed_len: usize,
        /// Longest framed line the firmware accepts.
        limit: usize,
    },
    /// A raw line so long the file cannot be G-code.
    #[error("line {file_line}: longer than {limit} bytes, not G-code")]
    RawLineTooLong {
        /// 1-based line in the file.
        file_line: u64,
        /// The limit in bytes.
        limit: usize,
    },
    /// A command the firmware could not parse safely.
    #[error("line {file_line}: {reason}")]
    BadCommand {
        /// 1-based line in the file.
        file_line: u64,
        /// What is wrong.
        reason: String,
    },
}

/// Failures of the bridge itself.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    /// Opening or configuring the serial port failed.
    #[error("serial port {port}: {source}")]
    Serial {
        /// Port path.
        port: String,
        /// The cause.
        source: tokio_serial::Error,
    },
    /// Reading or writing the link failed.
    #[error("serial I/O: {0}")]
    Io(#[from] std::io::Error),
    /// No firmware answered the handshake in time.
    #[error("no printer answered within {0:?}")]
    NotDetected(std::time::Duration),
    /// The job file is not printable.
    #[error(transparent)]
    Job(#[from] JobError),
    /// The command does not fit the printer's current state.
    #[error("cannot {action} while {state}")]
    InvalidState {
        /// What was asked.
        action: &'static str,
        /// The state at the time.
        state: String,
    },
    /// A command that cannot be sent as one line (see [`crate::gcode::unsendable`]).
    #[error("cannot send this command: {0}")]
    BadCommand(&'static str),
    /// The connection task has ended.
    #[error("printer connection closed")]
    Closed,
}
