//! The printer-driver seam: one interface the printer task drives whatever stands in front of
//! the printer (a serial port through the firmware bridge, an OctoPrint server, ...). A driver
//! connects to its host and then yields [`DriverEvent`]s (state, progress, temperatures, the
//! job's end, the host lost); the task starts, pauses, resumes and cancels through it. Every
//! failure is classified ([`DriverError`]) so the task can tell the router the right thing:
//! the host unreachable (the printer is offline, the job stays), the printer at fault (the job
//! is re-routed) or the job refused (the job fails with the host's reason).
//!
//! Drivers are chosen per printer in the node's TOML (`driver = "serial" | "octoprint"`); the
//! router never hears which one a printer has.

pub mod octoprint;
pub mod serial;

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::config::DriverConfig;

/// Where the host says the printer is.
#[derive(Debug, Clone, PartialEq)]
pub enum HostState {
    /// Connected and not printing.
    Idle,
    /// Printing.
    Printing,
    /// Paused.
    Paused,
    /// Needs a person (the host's error text).
    Error(String),
}

/// A temperature reading, °C: (actual, target) of the hot end and of the bed.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Temps {
    /// Hot end (actual, target).
    pub hotend: (f64, f64),
    /// Bed (actual, target).
    pub bed: (f64, f64),
    /// Whether a heater is still far from its target (the job is heating, not printing).
    pub heating: bool,
}

/// What a driver learned about the running job. Fields it does not know are `None`; the task
/// keeps the last known value of each.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProgressUpdate {
    /// Fraction done as the host reports it, 0..=1 (else lines sent over lines in the file).
    pub fraction: Option<f64>,
    /// G-code lines sent.
    pub lines_sent: Option<u64>,
    /// G-code lines in the file.
    pub lines_total: Option<u64>,
    /// Current layer (a new value is reported at once).
    pub layer: Option<u32>,
    /// Layers in the file.
    pub layers_total: Option<u32>,
    /// Time left, seconds.
    pub remaining_s: Option<f64>,
}

/// How a job ended on the host.
#[derive(Debug, Clone, PartialEq)]
pub enum JobEnd {
    /// Printed to the end.
    Completed,
    /// Stopped at the host by someone other than this node.
    Cancelled(String),
    /// The printer failed (the job can go elsewhere).
    Fault(String),
}

/// What a connected driver reports.
#[derive(Debug, Clone, PartialEq)]
pub enum DriverEvent {
    /// The host's state changed.
    State(HostState),
    /// Temperatures.
    Temperatures(Temps),
    /// Progress of the running job.
    Progress(ProgressUpdate),
    /// The running job ended.
    Finished(JobEnd),
    /// The host can no longer be reached; the link is gone (the events end after this).
    Lost(String),
}

/// Why an operation failed, classified for the router.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DriverError {
    /// The host cannot be reached now (network, host down, still starting): the printer is
    /// offline and the job stays.
    #[error("the printer's host cannot be reached: {0}")]
    Unreachable(String),
    /// The printer or its host is in a state that cannot print (wrong key, printer error,
    /// busy): the job can go to another printer.
    #[error("the printer cannot print: {0}")]
    Fault(String),
    /// The host refused this job (its file): the job fails with the host's reason.
    #[error("the printer's host refused the job: {0}")]
    Refused(String),
}

/// A job's file, ready for a driver.
#[derive(Debug)]
pub struct PrintFile {
    /// The G-code on this node's disk.
    pub path: PathBuf,
    /// The name to give it on the host (unique per job and epoch, safe on any host).
    pub host_name: String,
    /// The parsed file, for drivers that stream it (serial).
    pub job: firmware_bridge::GcodeJob,
}

/// What re-attaching to a job found on the host.
#[derive(Debug, Clone, PartialEq)]
pub enum Attach {
    /// The job is printing (or paused) there: follow it.
    Running,
    /// It ended while the node was away.
    Ended(JobEnd),
}

/// A printer's driver, chosen by its config. An enum rather than a trait object: the set is
/// closed (the TOML names it) and each arm is a plain struct with async methods.
pub enum Driver {
    /// Serial through the firmware bridge.
    Serial(serial::SerialDriver),
    /// OctoPrint's REST API.
    OctoPrint(octoprint::OctoPrintDriver),
}

/// The events of a connected driver; ends (or says [`DriverEvent::Lost`]) when the link does.
pub type Events = mpsc::UnboundedReceiver<DriverEvent>;

impl Driver {
    /// The driver a printer's config asks for.
    pub fn new(printer_id: &str, cfg: &DriverConfig) -> Result<Driver, DriverError> {
        Ok(match cfg {
            DriverConfig::Serial {
                port,
                baud,
                detect_timeout,
            } => Driver::Serial(serial::SerialDriver::new(port, *baud, *detect_timeout)),
            DriverConfig::OctoPrint { url, api_key, poll } => Driver::OctoPrint(
                octoprint::OctoPrintDriver::new(printer_id, url, api_key, *poll)?,
            ),
        })
    }

    /// Whether a print goes on at the host when the node loses its link (so the task keeps
    /// the job through an outage and re-attaches), or ends with the link (serial: the node
    /// itself streams the file).
    pub fn host_keeps_printing(&self) -> bool {
        !matches!(self, Driver::Serial(_))
    }

    /// Connects to the host; events flow until the link is lost.
    pub async fn connect(&mut self) -> Result<Events, DriverError> {
        match self {
            Driver::Serial(d) => d.connect().await,
            Driver::OctoPrint(d) => d.connect().await,
        }
    }

    /// Hands the job to the printer and starts it.
    pub async fn start(&mut self, file: PrintFile) -> Result<(), DriverError> {
        match self {
            Driver::Serial(d) => d.start(file).await,
            Driver::OctoPrint(d) => d.start(file).await,
        }
    }

    /// Finds the job `host_name` after a reconnect or a restart of the node.
    pub async fn attach(&mut self, host_name: &str) -> Result<Attach, DriverError> {
        match self {
            Driver::Serial(_) => Ok(Attach::Ended(JobEnd::Fault(
                "the serial link was lost, and with it the print".into(),
            ))),
            Driver::OctoPrint(d) => d.attach(host_name).await,
        }
    }

    /// Pauses the running job.
    pub async fn pause(&mut self) -> Result<(), DriverError> {
        match self {
            Driver::Serial(d) => d.pause().await,
            Driver::OctoPrint(d) => d.pause().await,
        }
    }

    /// Resumes the paused job.
    pub async fn resume(&mut self) -> Result<(), DriverError> {
        match self {
            Driver::Serial(d) => d.resume().await,
            Driver::OctoPrint(d) => d.resume().await,
        }
    }

    /// Cancels the running job (the printer's own end sequence runs).
    pub async fn cancel(&mut self) -> Result<(), DriverError> {
        match self {
            Driver::Serial(d) => d.cancel().await,
            Driver::OctoPrint(d) => d.cancel().await,
        }
    }

    /// Drops the link (a failed printer is checked afresh before it gets work again).
    pub async fn disconnect(&mut self) {
        match self {
            Driver::Serial(d) => d.disconnect().await,
            Driver::OctoPrint(d) => d.disconnect().await,
        }
    }
}

/// The host-side name of a job's file: the job's id and epoch, in characters every host
/// accepts, so a re-attach finds exactly this assignment's print.
pub fn host_file_name(job: &str, epoch: u64) -> String {
    let id: String = job
        .rsplit('/')
        .next()
        .unwrap_or(job)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    format!("fab-{id}-e{epoch}.gcode")
}

/// Reconnect delays: doubling from `min` up to `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Starts at `min`.
    pub fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            min,
            max: max.max(min),
            next: min,
        }
    }

    /// The delay before the next attempt (then doubles).
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }

    /// After a success.
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_unique_per_assignment_and_safe() {
        assert_eq!(host_file_name("jobs/01J0-abc", 3), "fab-01J0-abc-e3.gcode");
        assert_ne!(host_file_name("jobs/a", 1), host_file_name("jobs/a", 2));
        assert_eq!(host_file_name("jobs/a b/../c", 1), "fab-c-e1.gcode");
        assert_eq!(host_file_name("../x y", 1), "fab-x_y-e1.gcode");
    }

    #[test]
    fn backoff_doubles_up_to_its_ceiling_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(200), Duration::from_secs(1));
        let got: Vec<u128> = (0..5).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(got, [200, 400, 800, 1000, 1000]);
        b.reset();
        assert_eq!(b.next_delay().as_millis(), 200);
    }
}
