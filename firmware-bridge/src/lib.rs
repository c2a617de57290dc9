//! Firmware bridge: streams G-code to Marlin/RepRap printers over a serial link.
//!
//! The host side of the protocol in `shared/docs/serial-protocol.md`: numbered, checksummed
//! lines; the M110 handshake; resends from a history; the `ok` window (ADVANCED_OK
//! pipelining); `busy:`/`wait`; timeouts with long-command exemptions; reset detection; M115
//! capabilities; temperature autoreport or polling; classified firmware errors; host actions.
//!
//! Components:
//! - [`gcode`]: cleaning and framing lines, streaming a job file ([`GcodeJob`] validates it
//!   before printing).
//! - [`reply`]: what one firmware line means ([`reply::parse_reply`]).
//! - [`session`]: the connection task and the [`PrinterHandle`] that drives it; [`Event`]s come
//!   out of a channel. Inside it: the handle, the handshake, the job, temperature and progress
//!   reports, around a thin I/O loop.
//! - `window` (private): line numbering, the history, resends, the `ok` window and the reply
//!   timer as a state machine without I/O, fed events with their time.
//! - [`serial`]: opening a real serial port.
//!
//! Code flow of one line: [`PrinterHandle::start`] hands a validated [`GcodeJob`] to the
//! connection task; its `pump` asks the window for resends first, then `pump_job` reads the
//! next command from the file (`GcodeReader::next_item` strips comments and notes layer
//! markers) and offers it to `LineWindow::send_numbered`, which frames it as `N<n> cmd*cs` and
//! keeps it in the history if the `ok` window has room; the task writes it. `on_line` parses
//! each firmware line (`reply::parse_reply`): an `ok` frees the window (`LineWindow::on_ok`), a
//! resend request rewinds to the asked line (`LineWindow::on_resend`), `start` or a fatal error
//! fails the job. When the file is done and every line is acknowledged, `Event::Finished` goes
//! out.
//!
//! Architecture invariant: this crate knows nothing of gRPC, protobuf or the router. It is a
//! library a node agent drives.

pub mod config;
pub mod error;
pub mod events;
pub mod gcode;
pub mod reply;
pub mod serial;
pub mod session;
mod window;

pub use config::BridgeConfig;
pub use error::{BridgeError, JobError};
pub use events::{Event, FirmwareInfo, JobStats, Outcome, PrinterState, Progress};
pub use gcode::{GcodeJob, JobSummary};
pub use reply::{ErrorClass, HostAction, Sensor, Temperatures};
pub use session::{PrinterHandle, connect};
