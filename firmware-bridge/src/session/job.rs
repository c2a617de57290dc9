//! One print job on the connection: reading the file as lines are needed, feeding the window,
//! layer markers, pause/resume/cancel at a safe point with their G-code, emergency stop, and
//! how a job ends (completed, cancelled or failed, never silently).

use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};

use super::Session;
use super::handshake::Link;
use crate::error::BridgeError;
use crate::events::{Event, JobStats, Outcome, PrinterState};
use crate::gcode::{self, GcodeJob, GcodeReader, Item, Marker};
use crate::reply::ErrorClass;

#[derive(Debug, PartialEq, Clone, Copy)]
pub(super) enum Phase {
    Streaming,
    Pausing,
    Paused,
    Cancelling,
}

pub(super) struct ActiveJob {
    pub(super) job: GcodeJob,
    pub(super) reader: GcodeReader<tokio::fs::File>,
    eof: bool,
    pub(super) phase: Phase,
    /// Park/end G-code of the current phase change has been queued.
    epilogue_queued: bool,
    pub(super) started: Instant,
    pub(super) lines_sent: u64,
    layer: u32,
    layer_total: Option<u32>,
    layer_pending: bool,
    layer_z: Option<f32>,
    pub(super) m73_remaining: Option<(Duration, Instant)>,
    pub(super) last_progress: Instant,
    /// A job line read but not yet sent for lack of room.
    held: Option<String>,
    /// Progress changed since the last report.
    pub(super) progress_due: bool,
    /// Report progress after the next line regardless of the interval (M73 seen).
    pub(super) progress_now: bool,
}

impl<R, W> Session<R, W>
where
    R: AsyncRead,
    W: AsyncWrite,
{
    pub(super) async fn start_job(&mut self, job: GcodeJob) -> Result<(), BridgeError> {
        if self.link != Link::Ready || self.job.is_some() {
            return Err(self.invalid("start a job"));
        }
        let reader = job.reader().await?;
        let layer_total = (job.summary().layers > 0).then_some(job.summary().layers);
        let now = super::clock();
        self.stats = JobStats::default();
        self.job = Some(ActiveJob {
            job,
            reader,
            eof: false,
            phase: Phase::Streaming,
            epilogue_queued: false,
            started: now,
            lines_sent: 0,
            layer: 0,
            layer_total,
            layer_pending: false,
            layer_z: None,
            m73_remaining: None,
            last_progress: now,
            held: None,
            progress_due: false,
            progress_now: false,
        });
        self.set_state(PrinterState::Printing);
        self.emit_progress(true);
        Ok(())
    }

    /// Sends the next job line if the window allows; drives pause/cancel epilogues.
    /// Returns whether something was sent.
    pub(super) async fn pump_job(&mut self) -> Result<bool, BridgeError> {
        let Some(job) = self.job.as_mut() else {
            return Ok(false);
        };
        match job.phase {
            Phase::Streaming => {}
            Phase::Paused => return Ok(false),
            Phase::Pausing | Phase::Cancelling => {
                // The safe point: every line sent is acknowledged.
                if !self.window.settled() {
                    return Ok(false);
                }
                if !job.epilogue_queued {
                    job.epilogue_queued = true;
                    let gcode = if job.phase == Phase::Pausing {
                        self.cfg.pause_gcode.clone()
                    } else {
                        self.cfg.end_gcode.clone()
                    };
                    self.control_queue.extend(gcode);
                    return Ok(true);
                }
                if job.phase == Phase::Pausing {
                    job.phase = Phase::Paused;
                    self.set_state(PrinterState::Paused);
                } else {
                    self.finish_job(Outcome::Cancelled, Some("cancelled on request".into()));
                }
                return Ok(false);
            }
        }
        if job.eof {
            if self.window.settled() {
                self.finish_job(Outcome::Completed, None);
            }
            return Ok(false);
        }
        loop {
            // A line read earlier waits for room; otherwise read the next one.
            let held = self.job.as_mut().and_then(|j| j.held.take());
            if let Some(cmd) = held {
                let Some(framed) = self.window.send_numbered(&cmd, super::clock()) else {
                    if let Some(job) = self.job.as_mut() {
                        job.held = Some(cmd);
                    }
                    return Ok(false);
                };
                self.write_line(&framed).await?;
                self.stats.lines += 1;
                if let Some(job) = self.job.as_mut() {
                    job.lines_sent += 1;
                }
                self.emit_progress(false);
                return Ok(true);
            }
            let Some(job) = self.job.as_mut() else {
                return Ok(false);
            };
            let item = match job.reader.next_item().await {
                Ok(item) => item,
                Err(e) => {
                    self.fail_job(&e.to_string());
                    return Ok(false);
                }
            };
            match item {
                None => {
                    job.eof = true;
                    return Ok(true);
                }
                Some(Item::Marker(Marker::LayerChange)) => {
                    job.layer += 1;
                    job.layer_pending = true;
                    job.layer_z = None;
                }
                Some(Item::Marker(Marker::LayerZ(z))) => job.layer_z = Some(z),
                Some(Item::Marker(Marker::LayerCount(n))) => job.layer_total = Some(n),
                Some(Item::Marker(Marker::Estimate(_))) => {}
                Some(Item::Command(cmd)) => {
                    if let Some((_, Some(remaining))) = gcode::parse_m73(&cmd) {
                        job.m73_remaining = Some((remaining, super::clock()));
                        // The slicer's own progress marker: worth reporting at once.
                        job.progress_now = true;
                    }
                    job.held = Some(cmd);
                    if job.layer_pending {
                        job.layer_pending = false;
                        let event = Event::Layer {
                            number: job.layer,
                            total: job.layer_total,
                            z: job.layer_z,
                        };
                        self.emit(event);
                        self.emit_progress(true);
                    }
                }
            }
        }
    }

    fn finish_job(&mut self, outcome: Outcome, reason: Option<String>) {
        let Some(job) = self.job.take() else {
            return;
        };
        self.emit_final_progress(&job);
        let mut stats = std::mem::take(&mut self.stats);
        stats.elapsed_s = job.started.elapsed().as_secs_f64();
        self.emit(Event::Finished {
            outcome,
            reason,
            stats,
        });
        if self.link == Link::Ready {
            self.set_state(PrinterState::Operational);
        }
    }

    /// Fails the running job (if any) and stops sending its lines at once.
    pub(super) fn fail_job(&mut self, reason: &str) {
        if self.job.is_some() {
            self.emit(Event::Error {
                class: ErrorClass::Fatal,
                message: reason.to_string(),
            });
            // Nothing of the job may follow: drop queued and resend-pending lines.
            self.control_queue.clear();
            self.window.abandon_resends();
            self.finish_job(Outcome::Failed, Some(reason.to_string()));
        }
    }

    pub(super) fn pause(&mut self) -> Result<(), BridgeError> {
        match self.job.as_mut() {
            Some(job) if job.phase == Phase::Streaming => {
                job.phase = Phase::Pausing;
                job.epilogue_queued = false;
                self.set_state(PrinterState::Pausing);
                Ok(())
            }
            Some(job) if matches!(job.phase, Phase::Pausing | Phase::Paused) => Ok(()),
            _ => Err(self.invalid("pause")),
        }
    }

    pub(super) fn resume(&mut self) -> Result<(), BridgeError> {
        match self.job.as_mut() {
            Some(job) if matches!(job.phase, Phase::Paused | Phase::Pausing) => {
                if job.phase == Phase::Paused || job.epilogue_queued {
                    self.control_queue.extend(self.cfg.resume_gcode.clone());
                }
                job.phase = Phase::Streaming;
                self.set_state(PrinterState::Printing);
                Ok(())
            }
            Some(job) if job.phase == Phase::Streaming => Ok(()),
            _ => Err(self.invalid("resume")),
        }
    }

    pub(super) fn cancel(&mut self) -> Result<(), BridgeError> {
        // A heating wait in flight would hold the cancel for minutes: with the emergency
        // parser, M108 breaks it at once.
        let heating_wait = self.window.heating_wait_in_flight();
        if heating_wait && self.firmware.has("EMERGENCY_PARSER") && self.job.is_some() {
            self.urgent.push("M108");
        }
        match self.job.as_mut() {
            Some(job) if job.phase != Phase::Cancelling => {
                job.phase = Phase::Cancelling;
                job.epilogue_queued = false;
                // Job lines not yet sent are dropped; park G-code already queued stays.
                job.eof = true;
                job.held = None;
                self.set_state(PrinterState::Cancelling);
                Ok(())
            }
            Some(_) => Ok(()),
            None => Err(self.invalid("cancel")),
        }
    }

    pub(super) async fn emergency_stop(&mut self) -> Result<(), BridgeError> {
        // M112 bypasses numbering and the window: with EMERGENCY_PARSER it jumps the queue.
        self.write_line("M112").await?;
        self.fail_job("emergency stop (M112) requested");
        self.halt();
        Ok(())
    }
}
