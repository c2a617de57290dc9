//! What the connection tells its listener besides state changes: temperatures (autoreported,
//! or polled with M105 at a pace that quickens while heating, rule 9) and job progress
//! (rate-limited, with a remaining-time estimate from M73 or the slicer).

use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite};

use super::Session;
use super::job::ActiveJob;
use crate::events::{Event, Progress};
use crate::reply::Temperatures;

impl<R, W> Session<R, W>
where
    R: AsyncRead,
    W: AsyncWrite,
{
    pub(super) fn on_temperatures(&mut self, t: Temperatures) {
        self.heating = t.heating(3.0);
        self.emit(Event::Temperatures(t));
    }

    /// A temperature poll is due (the firmware cannot autoreport).
    pub(super) fn poll_due(&self) -> bool {
        !self.autoreport && super::clock() >= self.next_poll
    }

    pub(super) fn schedule_poll(&mut self) {
        let every = if self.heating {
            self.cfg.temperature_poll_heating
        } else {
            self.cfg.temperature_poll
        };
        self.next_poll = super::clock() + every;
    }

    /// When a held-back progress report falls due.
    pub(super) fn progress_deadline(&self) -> Option<Instant> {
        let job = self.job.as_ref().filter(|j| j.progress_due)?;
        Some(job.last_progress + self.cfg.progress_interval)
    }

    /// Sends a held-back progress report once the interval is over.
    pub(super) fn report_progress_if_due(&mut self, now: Instant) {
        if self.progress_deadline().is_some_and(|t| now >= t) {
            self.emit_progress(true);
        }
    }

    /// Reports progress, at most once per interval unless `force`d.
    pub(super) fn emit_progress(&mut self, force: bool) {
        let Some(job) = self.job.as_mut() else {
            return;
        };
        let now = super::clock();
        let force = force || std::mem::take(&mut job.progress_now);
        if !force && now.duration_since(job.last_progress) < self.cfg.progress_interval {
            // Reported by the timer once the interval is over, so the last state is never lost.
            job.progress_due = true;
            return;
        }
        job.last_progress = now;
        job.progress_due = false;
        let summary = job.job.summary();
        let bytes = job.reader.bytes_read();
        let remaining = match job.m73_remaining {
            Some((r, at)) => Some(r.saturating_sub(now.duration_since(at)).as_secs_f64()),
            None => summary.slicer_estimate.map(|est| {
                let done = if summary.bytes > 0 {
                    bytes as f64 / summary.bytes as f64
                } else {
                    0.0
                };
                est.as_secs_f64() * (1.0 - done.clamp(0.0, 1.0))
            }),
        };
        let progress = Progress {
            lines_sent: job.lines_sent,
            lines_total: Some(summary.commands),
            bytes,
            bytes_total: Some(summary.bytes),
            elapsed_s: now.duration_since(job.started).as_secs_f64(),
            remaining_s: remaining,
            resends: self.stats.resends,
        };
        self.emit(Event::Progress(progress));
    }

    /// The last progress of a job that ended: nothing remains.
    pub(super) fn emit_final_progress(&self, job: &ActiveJob) {
        let summary = job.job.summary();
        self.emit(Event::Progress(Progress {
            lines_sent: job.lines_sent,
            lines_total: Some(summary.commands),
            bytes: job.reader.bytes_read(),
            bytes_total: Some(summary.bytes),
            elapsed_s: job.started.elapsed().as_secs_f64(),
            remaining_s: Some(0.0),
            resends: self.stats.resends,
        }));
    }
}
