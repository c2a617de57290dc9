//! The serial driver: the firmware bridge on a serial port (or a virtual printer's
//! pseudo-terminal). The node itself streams the G-code, so a print ends with the link; the
//! bridge's events are translated into the seam's.

use std::time::Duration;

use firmware_bridge::serial::{DtrPolicy, open_serial};
use firmware_bridge::{BridgeConfig, ErrorClass, Event, Outcome, PrinterHandle, connect};
use tokio::sync::mpsc;

use super::{
    DriverError, DriverEvent, Events, HostState, JobEnd, PrintFile, ProgressUpdate, Temps,
};

/// A printer on a serial port.
pub struct SerialDriver {
    port: String,
    baud: u32,
    detect_timeout: Duration,
    handle: Option<PrinterHandle>,
}

fn sensor(t: &firmware_bridge::Temperatures, names: &[&str]) -> (f64, f64) {
    names
        .iter()
        .find_map(|n| t.get(n))
        .map(|s| (f64::from(s.actual), f64::from(s.target.unwrap_or(0.0))))
        .unwrap_or_default()
}

impl SerialDriver {
    /// A driver for `port` at `baud`.
    pub fn new(port: &str, baud: u32, detect_timeout: Duration) -> Self {
        SerialDriver {
            port: port.to_string(),
            baud,
            detect_timeout,
            handle: None,
        }
    }

    fn handle(&self) -> Result<&PrinterHandle, DriverError> {
        self.handle
            .as_ref()
            .ok_or_else(|| DriverError::Unreachable("the serial link is not open".into()))
    }

    /// Opens the port and runs the handshake.
    pub async fn connect(&mut self) -> Result<Events, DriverError> {
        let port = open_serial(&self.port, self.baud, DtrPolicy::Assert)
            .await
            .map_err(|e| DriverError::Unreachable(e.to_string()))?;
        let config = BridgeConfig {
            detect_timeout: self.detect_timeout,
            ..BridgeConfig::default()
        };
        let (handle, mut bridge) = connect(port, config)
            .await
            .map_err(|e| DriverError::Unreachable(e.to_string()))?;
        self.handle = Some(handle);
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            // The last fatal error the firmware sent: the reason of a failure without one.
            let mut last_error = String::new();
            while let Some(ev) = bridge.recv().await {
                let out = match ev {
                    Event::Progress(p) => DriverEvent::Progress(ProgressUpdate {
                        lines_sent: Some(p.lines_sent),
                        lines_total: p.lines_total,
                        remaining_s: Some(p.remaining_s.unwrap_or(0.0)),
                        ..ProgressUpdate::default()
                    }),
                    Event::Layer { number, total, .. } => DriverEvent::Progress(ProgressUpdate {
                        layer: Some(number),
                        layers_total: total,
                        ..ProgressUpdate::default()
                    }),
                    Event::Temperatures(t) => DriverEvent::Temperatures(Temps {
                        hotend: sensor(&t, &["T", "T0"]),
                        bed: sensor(&t, &["B"]),
                        heating: t.heating(5.0),
                    }),
                    Event::Error { class, message } => {
                        if class == ErrorClass::Fatal {
                            last_error = message;
                        }
                        continue;
                    }
                    Event::State { state } => {
                        use firmware_bridge::PrinterState as S;
                        match state {
                            S::Paused => DriverEvent::State(HostState::Paused),
                            S::Printing => DriverEvent::State(HostState::Printing),
                            S::Halted | S::Disconnected => {
                                let why = if last_error.is_empty() {
                                    format!("printer {state:?}")
                                } else {
                                    last_error.clone()
                                };
                                let _ = tx.send(DriverEvent::Lost(why));
                                return;
                            }
                            _ => continue,
                        }
                    }
                    Event::Finished {
                        outcome,
                        reason,
                        stats,
                    } => {
                        tracing::info!(
                            ?outcome,
                            lines = stats.lines,
                            resends = stats.resends,
                            elapsed_s = stats.elapsed_s,
                            "print ended"
                        );
                        let reason = reason.unwrap_or_default();
                        DriverEvent::Finished(match outcome {
                            Outcome::Completed => JobEnd::Completed,
                            Outcome::Cancelled => JobEnd::Cancelled(reason),
                            Outcome::Failed => JobEnd::Fault(if reason.is_empty() {
                                last_error.clone()
                            } else {
                                reason
                            }),
                        })
                    }
                    Event::Firmware(_) | Event::HostAction(_) => continue,
                };
                if tx.send(out).is_err() {
                    return;
                }
            }
            let why = if last_error.is_empty() {
                "the serial connection to the printer was lost".to_string()
            } else {
                last_error
            };
            let _ = tx.send(DriverEvent::Lost(why));
        });
        Ok(rx)
    }

    /// Streams the file through the bridge.
    pub async fn start(&mut self, file: PrintFile) -> Result<(), DriverError> {
        self.handle()?
            .start(file.job)
            .await
            .map_err(|e| DriverError::Fault(format!("the printer refused the job: {e}")))
    }

    /// Pauses at a safe point.
    pub async fn pause(&mut self) -> Result<(), DriverError> {
        self.handle()?
            .pause()
            .await
            .map_err(|e| DriverError::Fault(e.to_string()))
    }

    /// Resumes.
    pub async fn resume(&mut self) -> Result<(), DriverError> {
        self.handle()?
            .resume()
            .await
            .map_err(|e| DriverError::Fault(e.to_string()))
    }

    /// Cancels (heaters off, the bridge's end sequence).
    pub async fn cancel(&mut self) -> Result<(), DriverError> {
        self.handle()?
            .cancel()
            .await
            .map_err(|e| DriverError::Fault(e.to_string()))
    }

    /// Closes the link.
    pub async fn disconnect(&mut self) {
        if let Some(h) = self.handle.take() {
            let _ = h.disconnect().await;
        }
    }
}
