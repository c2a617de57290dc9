//! Finding the firmware and keeping track of whether it is there: the greeting (`M110 N0`,
//! rule 2), the M115 capability report (rule 8), the switch to temperature autoreport, and
//! what a reset (`start`, rule 7) or a halt does to the link.

use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite};

use super::Session;
use crate::config::BridgeConfig;
use crate::error::BridgeError;
use crate::events::{Event, FirmwareInfo, PrinterState};
use crate::reply::ErrorClass;
use crate::window::STATUS_QUERY;

/// Handshake progress.
#[derive(Debug, PartialEq)]
pub(super) enum Link {
    Detecting {
        next_hello: Instant,
        give_up: Instant,
        /// `M110 N0` went out since the (re)start: only an `ok` after it answers the
        /// handshake; an earlier one is left over from before and numbering would not be reset.
        greeted: bool,
    },
    Capabilities {
        give_up: Instant,
        named: bool,
    },
    Ready,
    Halted,
    Closed,
}

impl Link {
    /// Looking for the firmware from `now` on: greet at once.
    pub(super) fn detecting(now: Instant, cfg: &BridgeConfig) -> Self {
        Link::Detecting {
            next_hello: now,
            give_up: now + cfg.detect_timeout,
            greeted: false,
        }
    }
}

impl<R, W> Session<R, W>
where
    R: AsyncRead,
    W: AsyncWrite,
{
    /// Greeting retries and the handshake's give-up times.
    pub(super) async fn on_handshake_timer(&mut self) -> Result<(), BridgeError> {
        let now = super::clock();
        match self.link {
            Link::Detecting {
                next_hello,
                give_up,
                ..
            } => {
                if now >= give_up {
                    let err = BridgeError::NotDetected(self.cfg.detect_timeout);
                    if let Some(ready) = self.ready.take() {
                        let _ = ready.send(Err(err));
                    }
                    self.link = Link::Closed;
                } else if now >= next_hello {
                    self.write_line("M110 N0").await?;
                    self.link = Link::Detecting {
                        next_hello: now + self.cfg.hello_interval,
                        give_up,
                        greeted: true,
                    };
                }
            }
            Link::Capabilities { give_up, .. } => {
                if now >= give_up {
                    self.link_ready().await?;
                }
            }
            Link::Ready | Link::Halted | Link::Closed => {}
        }
        Ok(())
    }

    /// An `ok` while the link is not ready: it may answer the greeting or end M115.
    pub(super) async fn on_handshake_ok(&mut self) -> Result<(), BridgeError> {
        match self.link {
            // Not an answer to a greeting: nothing is known about the firmware's numbering yet.
            Link::Detecting { greeted: false, .. } => {}
            Link::Detecting { .. } => {
                // The handshake was answered; M110 N0 set the firmware's last line to 0.
                self.window.numbering_reset();
                self.link = Link::Capabilities {
                    give_up: super::clock() + self.cfg.capability_timeout,
                    named: false,
                };
                self.write_line("M115").await?;
            }
            Link::Capabilities { named, .. } => {
                // Only the `ok` after FIRMWARE_NAME ends M115; earlier ones answer repeated hellos.
                if named {
                    self.link_ready().await?;
                }
            }
            Link::Ready | Link::Halted | Link::Closed => {}
        }
        Ok(())
    }

    /// `FIRMWARE_NAME:` from M115.
    pub(super) fn on_firmware_name(&mut self, name: String) {
        self.firmware.name = Some(name);
        if let Link::Capabilities { give_up, .. } = self.link {
            self.link = Link::Capabilities {
                give_up,
                named: true,
            };
        }
    }

    async fn link_ready(&mut self) -> Result<(), BridgeError> {
        self.link = Link::Ready;
        let now = super::clock();
        self.window.link_up(now);
        // One query at once: first temperatures, and its reply shows whether the firmware
        // puts them on the `ok` (needed to match a timeout probe's reply exactly).
        self.window.send_outside_window(STATUS_QUERY, now);
        self.write_line(STATUS_QUERY).await?;
        if self.cfg.autoreport_interval_s > 0 && self.firmware.has("AUTOREPORT_TEMP") {
            self.autoreport = true;
            let cmd = format!("M155 S{}", self.cfg.autoreport_interval_s);
            self.window.send_outside_window(&cmd, super::clock());
            self.write_line(&cmd).await?;
        } else {
            self.autoreport = false;
            self.schedule_poll();
        }
        self.set_state(PrinterState::Operational);
        if let Some(ready) = self.ready.take() {
            let _ = ready.send(Ok(self.firmware.clone()));
        }
        self.emit(Event::Firmware(self.firmware.clone()));
        Ok(())
    }

    /// Forgets all line state and starts the handshake again (after a reset).
    fn restart_handshake(&mut self) {
        self.window.reset();
        self.control_queue.clear();
        self.firmware = FirmwareInfo::default();
        self.link = Link::detecting(super::clock(), &self.cfg);
        self.set_state(PrinterState::Connecting);
    }

    /// `start`: the board booted or reset.
    pub(super) fn on_start(&mut self) {
        match self.link {
            Link::Detecting { give_up, .. } => {
                // Booted: greet at once (an earlier greeting was lost with the reset).
                self.link = Link::Detecting {
                    next_hello: super::clock(),
                    give_up,
                    greeted: false,
                };
            }
            Link::Capabilities { .. } => {
                // The board reset during the handshake (DTR on open): greet again.
                self.restart_handshake();
            }
            _ => {
                // Handshake state first, so failing the job does not report "operational".
                self.restart_handshake();
                let class = if self.job.is_some() {
                    ErrorClass::Fatal
                } else {
                    ErrorClass::Recoverable
                };
                self.emit(Event::Error {
                    class,
                    message: "printer reset (start received); its state is lost".into(),
                });
                self.fail_job("printer reset mid-print (start received); its state is lost");
            }
        }
    }

    /// The firmware is halted: nothing more is sent until it resets.
    pub(super) fn halt(&mut self) {
        self.control_queue.clear();
        self.window.halt();
        self.link = Link::Halted;
        self.set_state(PrinterState::Halted);
    }
}
