//! The line window and resend rules (protocol rules 1–4, 6 and 10) as a state machine without
//! I/O: it numbers and frames lines, keeps the history, decides what may be in flight, which
//! line goes again after `Resend:`, what an `ok` acknowledges and when a reply is overdue.
//!
//! It exists so these rules can be tested line by line in microseconds: nothing here reads a
//! clock, awaits or touches the port. The session feeds it events with the time they happened
//! and writes whatever text it hands back.
//!
//! A lost acknowledgement is recovered by a quick probe rather than the long reply timeout:
//! once the oldest `ok` is overdue by a few observed round trips (an estimate kept like TCP's
//! retransmission timer), a *numbered* `M105` goes out. Being numbered, it is only accepted if
//! every earlier line was (otherwise the firmware asks for the missing one), and commands run in
//! order, so its `ok` (recognised by the temperatures it carries) proves every line sent before
//! it was executed: their acknowledgements were lost, and none is sent twice or skipped.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::config::BridgeConfig;
use crate::gcode;

/// The command that provokes a reply after a timeout (rule 6) and polls temperatures.
pub(crate) const STATUS_QUERY: &str = "M105";

/// A line sent and not yet acknowledged.
#[derive(Debug)]
struct InFlight {
    line: Option<u64>,
    bytes: usize,
    long: bool,
    /// M109/M190/M191: M108 can break it.
    heating_wait: bool,
    /// M105: its `ok` carries temperatures.
    status_query: bool,
    sent_at: Instant,
}

impl InFlight {
    fn new(line: Option<u64>, command: &str, bytes: usize, sent_at: Instant) -> Self {
        Self {
            line,
            bytes,
            long: gcode::is_long_command(command),
            heating_wait: gcode::is_heating_wait(command),
            status_query: gcode::command_word(command).eq_ignore_ascii_case(STATUS_QUERY),
            sent_at,
        }
    }
}

/// What the window itself must send before any new line may go out.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Backlog {
    /// Nothing may be sent now (a resend settling, its `ok` pending, or no room).
    Wait,
    /// Numbering must be reset after a failed resend: write this unnumbered `M110`.
    Renumber(String),
    /// Write this framed line again.
    Resend(String),
    /// The line to resend is gone from the history (cannot happen once a resend was accepted).
    Vanished(u64),
    /// Nothing pending: new lines may follow as the window allows.
    Empty,
}

/// How a resend request was taken.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Resend {
    /// Lines from the asked one on go out again.
    Rewound,
    /// A request caused by lines sent before the last rewind; ignored.
    Duplicate,
    /// The asked line was never sent: nothing to repeat.
    NothingToRepeat,
    /// The asked line is older than the history. Numbering is abandoned; the job must fail.
    Forgotten {
        /// The line asked for.
        line: u64,
        /// Oldest line still held.
        oldest: Option<u64>,
    },
    /// The same line was asked for too often in a row. Numbering is abandoned; the job must fail.
    TooOften {
        /// The line asked for.
        line: u64,
        /// The limit that was passed.
        limit: u32,
    },
}

/// What the reply timer decided.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Timeout {
    /// An acknowledgement is overdue by the adaptive timeout: write this framed, numbered
    /// status query, whose `ok` settles every line sent before it.
    QuickProbe(String),
    /// The oldest acknowledgement is taken as lost; write this command to provoke a reply.
    Probe(&'static str),
    /// Too many timeouts in a row: nothing is tracked any more; the printer is gone.
    GiveUp {
        /// Consecutive timeouts counted.
        timeouts: u32,
    },
}

/// Line numbering, history, the `ok` window and the reply timer of one link.
#[derive(Debug)]
pub(crate) struct LineWindow {
    cfg: BridgeConfig,
    /// N of the next new numbered line.
    next_line: u64,
    /// N of the next numbered line to transmit; below `next_line` while resending.
    cursor: u64,
    /// Framed numbered lines sent, oldest first.
    history: VecDeque<(u64, String)>,
    in_flight: VecDeque<InFlight>,
    /// A resend request came; its `ok` has not (deadline for acting as if it had).
    resend_ok_due: Option<Instant>,
    /// Line of the last rewind.
    last_rewind: Option<u64>,
    /// After a rewind with lines in flight: nothing is sent before this (extended while
    /// duplicate requests arrive).
    resend_hold: Option<Instant>,
    /// Shortest send-to-`ok` time seen (decaying): the link's round trip.
    rtt_min: Option<Duration>,
    /// Smoothed send-to-`ok` time and its mean deviation (RFC 6298's SRTT and RTTVAR).
    srtt: Option<Duration>,
    rttvar: Duration,
    /// Quick probes sent since the last acknowledgement (each doubles the next wait).
    quick_probes: u32,
    /// When the last quick probe went out.
    last_probe: Option<Instant>,
    resend_streak: (u64, u32),
    advanced_ok: bool,
    buffer_slots: usize,
    busy_protocol: bool,
    last_rx: Instant,
    /// Last acknowledgement or keepalive (`ok`, `busy:`, `wait`, resend request).
    last_alive: Instant,
    consecutive_timeouts: u32,
    /// Line numbering must be reset (after a failed resend) before numbered lines go out.
    renumber: bool,
    /// The firmware answers M105 with `ok T:...` (learned from the first such reply).
    ok_carries_temperatures: bool,
}

impl LineWindow {
    /// A window for a link that has not been greeted yet.
    pub(crate) fn new(cfg: &BridgeConfig, now: Instant) -> Self {
        Self {
            cfg: cfg.clone(),
            next_line: 1,
            cursor: 1,
            history: VecDeque::new(),
            in_flight: VecDeque::new(),
            resend_ok_due: None,
            last_rewind: None,
            resend_hold: None,
            rtt_min: None,
            srtt: None,
            rttvar: Duration::ZERO,
            quick_probes: 0,
            last_probe: None,
            resend_streak: (0, 0),
            advanced_ok: false,
            buffer_slots: 1,
            busy_protocol: false,
            last_rx: now,
            last_alive: now,
            consecutive_timeouts: 0,
            renumber: false,
            ok_carries_temperatures: false,
        }
    }

    // --- Link life cycle -----------------------------------------------------------------

    /// The handshake's `M110 N0` was answered: the firmware's last line is 0.
    pub(crate) fn numbering_reset(&mut self) {
        self.next_line = 1;
        self.cursor = 1;
    }

    /// The link is up: whatever the handshake left in flight is forgotten, replies are timed
    /// from now.
    pub(crate) fn link_up(&mut self, now: Instant) {
        self.in_flight.clear();
        self.last_rx = now;
    }

    /// The board reset: every line and resend state is forgotten. What was learned about the
    /// link's timing and reply style stays.
    pub(crate) fn reset(&mut self) {
        self.next_line = 1;
        self.cursor = 1;
        self.history.clear();
        self.in_flight.clear();
        self.resend_ok_due = None;
        self.last_rewind = None;
        self.resend_hold = None;
        self.resend_streak = (0, 0);
        self.advanced_ok = false;
        self.quick_probes = 0;
        self.last_probe = None;
    }

    /// The firmware halted: nothing in flight will be acknowledged, nothing is resent.
    pub(crate) fn halt(&mut self) {
        self.in_flight.clear();
        self.resend_ok_due = None;
        self.cursor = self.next_line;
    }

    /// The job failed: lines waiting to be resent must never go out.
    pub(crate) fn abandon_resends(&mut self) {
        if self.cursor < self.next_line {
            // The firmware still waits for line `cursor`: skipping it puts the next line out
            // of order, and its resend request would replay the job from the history.
            self.history.clear();
            self.renumber = true;
        }
        self.cursor = self.next_line;
    }

    /// After a failed resend the numbered lines are unusable: the firmware will refuse every
    /// line until the numbering is reset.
    fn abandon_numbering(&mut self) {
        self.in_flight.clear();
        self.history.clear();
        self.cursor = self.next_line;
        self.renumber = true;
    }

    /// Every line sent is acknowledged and none waits for a resend: the safe point of a pause
    /// or cancel, and the end of a job.
    pub(crate) fn settled(&self) -> bool {
        self.in_flight.is_empty() && self.cursor == self.next_line
    }

    /// A heating wait (M109/M190/M191) is in flight.
    pub(crate) fn heating_wait_in_flight(&self) -> bool {
        self.in_flight.iter().any(|f| f.heating_wait)
    }

    // --- Sending -------------------------------------------------------------------------

    fn window(&self) -> usize {
        if self.advanced_ok && self.cfg.pipelining {
            self.buffer_slots.clamp(1, self.cfg.max_window.max(1))
        } else {
            1
        }
    }

    fn has_room(&self, bytes: usize) -> bool {
        if self.in_flight.is_empty() {
            return true;
        }
        let in_bytes: usize = self.in_flight.iter().map(|f| f.bytes).sum();
        self.in_flight.len() < self.window() && in_bytes + bytes <= self.cfg.rx_buffer_bytes
    }

    fn record_numbered(&mut self, n: u64, framed: &str, now: Instant) {
        // The command sits between "N<n> " and "*<checksum>".
        let command = framed.split_once(' ').map_or("", |(_, rest)| {
            rest.rsplit_once('*').map_or(rest, |(c, _)| c)
        });
        let entry = InFlight::new(Some(n), command, framed.len() + 1, now);
        self.in_flight.push_back(entry);
    }

    /// Resends and renumbering, which go before any new line.
    pub(crate) fn poll_backlog(&mut self, now: Instant) -> Backlog {
        if self.resend_ok_due.is_some() || self.resend_hold.is_some() {
            return Backlog::Wait;
        }
        if self.renumber {
            if !self.in_flight.is_empty() {
                return Backlog::Wait;
            }
            self.renumber = false;
            let cmd = format!("M110 N{}", self.next_line - 1);
            self.send_outside_window(&cmd, now);
            return Backlog::Renumber(cmd);
        }
        if self.cursor < self.next_line {
            let Some((n, framed)) = self
                .history
                .iter()
                .find(|(n, _)| *n == self.cursor)
                .cloned()
            else {
                return Backlog::Vanished(self.cursor);
            };
            if !self.has_room(framed.len() + 1) {
                return Backlog::Wait;
            }
            self.record_numbered(n, &framed, now);
            self.cursor += 1;
            return Backlog::Resend(framed);
        }
        Backlog::Empty
    }

    /// Numbers, frames and records a new line if the window has room; `None` means "later"
    /// (back-pressure: the caller keeps the command). Call only when the backlog is empty.
    pub(crate) fn send_numbered(&mut self, command: &str, now: Instant) -> Option<String> {
        // Room is judged on the longest frame the number could take, before framing.
        if !self.has_room(gcode::framed_len(command.len(), self.next_line)) {
            return None;
        }
        let n = self.next_line;
        let framed = gcode::frame(n, command);
        self.next_line += 1;
        self.cursor = self.next_line;
        self.push_history(n, &framed);
        self.record_numbered(n, &framed, now);
        Some(framed)
    }

    fn push_history(&mut self, n: u64, framed: &str) {
        self.history.push_back((n, framed.to_string()));
        while self.history.len() > self.cfg.history_lines.max(50) {
            self.history.pop_front();
        }
    }

    /// Records an unnumbered host command (a status query, never job content) if the window
    /// has room; the caller then writes `command` as it is.
    pub(crate) fn send_unnumbered(&mut self, command: &str, now: Instant) -> bool {
        if !self.has_room(command.len() + 1) {
            return false;
        }
        self.send_outside_window(command, now);
        true
    }

    /// Records an unnumbered command that goes out whatever the window holds (emergency-parser
    /// commands, the queries right after the handshake). Its `ok` is still awaited.
    pub(crate) fn send_outside_window(&mut self, command: &str, now: Instant) {
        let entry = InFlight::new(None, command, command.len() + 1, now);
        self.in_flight.push_back(entry);
    }

    // --- Replies -------------------------------------------------------------------------

    /// Any firmware line arrived; `keepalive` for an `ok`, `busy:`, `wait` or resend request.
    pub(crate) fn on_received(&mut self, keepalive: bool, now: Instant) {
        self.last_rx = now;
        if keepalive {
            self.last_alive = now;
        }
    }

    /// An ADVANCED_OK reply: `free` is its B, buffer slots free besides the command just
    /// acknowledged.
    pub(crate) fn on_buffer_free(&mut self, free: usize) {
        self.advanced_ok = true;
        self.buffer_slots = self.buffer_slots.max(free);
    }

    /// The firmware sends `busy:` keepalives: the shorter reply timeout applies.
    pub(crate) fn on_busy(&mut self) {
        self.busy_protocol = true;
    }

    /// `wait`: the firmware's queue is empty, so acknowledgements of lines sent more than the
    /// grace ago were lost.
    pub(crate) fn on_wait(&mut self, now: Instant) {
        if self.resend_ok_due.is_none() {
            let grace = self.cfg.wait_grace;
            self.in_flight
                .retain(|f| now.duration_since(f.sent_at) < grace);
        }
    }

    /// An `ok` on a ready link. Returns the numbered line it acknowledged, if any.
    pub(crate) fn on_ok(
        &mut self,
        line: Option<u64>,
        with_temperatures: bool,
        now: Instant,
    ) -> Option<u64> {
        self.consecutive_timeouts = 0;
        // An `ok` with temperatures answers a status query, never a resend request.
        let answers_query = with_temperatures && self.in_flight.iter().any(|f| f.status_query);
        if !answers_query && self.resend_ok_due.take().is_some() {
            // This `ok` belongs to the resend request, not to a line.
            return None;
        }
        self.acknowledge(line, with_temperatures, now)
    }

    /// Removes the in-flight entry an `ok` belongs to; returns its line number.
    ///
    /// Status queries (M105) are matched by the temperatures on their `ok`, so a probe sent on
    /// a timeout never takes the place of a slow acknowledgement (credit would creep up with
    /// every spurious timeout otherwise).
    fn acknowledge(
        &mut self,
        line: Option<u64>,
        with_temperatures: bool,
        now: Instant,
    ) -> Option<u64> {
        if with_temperatures {
            self.ok_carries_temperatures = true;
            if let Some(i) = self.in_flight.iter().position(|f| f.status_query) {
                let Some(line) = self.in_flight[i].line else {
                    self.in_flight.remove(i);
                    return None;
                };
                // A numbered probe was executed, so was everything sent before it: their
                // acknowledgements were lost.
                self.in_flight.drain(..=i);
                self.quick_probes = 0;
                self.last_probe = None;
                return Some(line);
            }
        }
        if let Some(n) = line
            && !self.in_flight.iter().any(|f| f.line == Some(n))
            && self
                .in_flight
                .iter()
                .find_map(|f| f.line)
                .is_none_or(|first| n < first)
        {
            // Names a line acknowledged before: nothing of ours is waiting for this `ok`.
            return None;
        }
        if let Some(n) = line
            && let Some(i) = self.in_flight.iter().position(|f| f.line == Some(n))
        {
            self.sample_rtt(self.in_flight[i].sent_at, now);
            // ADVANCED_OK names the line: everything sent before it is done too.
            let mut rest = self.in_flight.split_off(i + 1);
            let done = std::mem::take(&mut self.in_flight);
            // Status queries keep waiting for their own `ok`.
            let mut kept: VecDeque<InFlight> =
                done.into_iter().filter(|f| f.status_query).collect();
            kept.append(&mut rest);
            self.in_flight = kept;
            return Some(n);
        }
        if let Some(i) = self.in_flight.iter().position(|f| !f.status_query) {
            let entry = self.in_flight.remove(i)?;
            self.sample_rtt(entry.sent_at, now);
            return entry.line;
        }
        if !self.ok_carries_temperatures || self.in_flight.front().is_some_and(|f| f.line.is_some())
        {
            // Firmware that reports temperatures apart from the `ok`, or that answered a
            // numbered probe without them: plain order.
            return self.in_flight.pop_front().and_then(|f| f.line);
        }
        None
    }

    fn sample_rtt(&mut self, sent_at: Instant, now: Instant) {
        let sample = now.saturating_duration_since(sent_at);
        self.quick_probes = 0;
        self.last_probe = None;
        // RFC 6298 section 2: gains 1/8 and 1/4.
        match self.srtt {
            None => {
                self.srtt = Some(sample);
                self.rttvar = sample / 2;
            }
            Some(srtt) => {
                let dev = srtt.abs_diff(sample);
                self.rttvar = self.rttvar.mul_f64(0.75) + dev.mul_f64(0.25);
                self.srtt = Some(srtt.mul_f64(0.875) + sample.mul_f64(0.125));
            }
        }
        // A minimum that slowly forgets, so a one-off fast reply does not stick forever.
        self.rtt_min = Some(match self.rtt_min {
            Some(min) => sample.min(min.mul_f64(1.01)),
            None => sample,
        });
    }

    /// A resend request for line `n` on a ready link (rule 3).
    pub(crate) fn on_resend(&mut self, n: u64, now: Instant) -> Resend {
        self.resend_ok_due = Some(now + self.cfg.resend_ok_grace);
        if self.resend_hold.is_some() && self.last_rewind.is_some_and(|r| n >= r) {
            // Settling after a rewind: this request comes from a line sent before it (or from
            // the fragment the firmware's flush left of one). Wait for quiet again.
            self.resend_hold = Some(now + self.settle_time());
            return Resend::Duplicate;
        }
        // Lines positioned before the first line >= n were accepted by the firmware and are
        // still acknowledged later; everything from there on was dropped with its buffer.
        let first_lost = self
            .in_flight
            .iter()
            .position(|f| f.line.is_some_and(|l| l >= n));
        if n >= self.next_line {
            // Nothing numbered to repeat (e.g. after an unnumbered line error).
            if let Some(i) = first_lost {
                self.in_flight.truncate(i);
            }
            return Resend::NothingToRepeat;
        }
        let oldest = self.history.front().map(|(l, _)| *l);
        if oldest.is_none_or(|o| n < o) {
            self.abandon_numbering();
            return Resend::Forgotten { line: n, oldest };
        }
        if self.resend_streak.0 == n {
            self.resend_streak.1 += 1;
        } else {
            self.resend_streak = (n, 1);
        }
        if self.resend_streak.1 > self.cfg.max_resends_of_line {
            self.abandon_numbering();
            return Resend::TooOften {
                line: n,
                limit: self.cfg.max_resends_of_line,
            };
        }
        let lost = match first_lost {
            Some(i) => self.in_flight.split_off(i),
            None => VecDeque::new(),
        };
        // Lines sent after the refused one are still arriving: each may draw its own error and
        // resend request, and the flush each causes would cut lines sent now. Resend only once
        // the link is quiet (OctoPrint#3914 loops on exactly this).
        if lost.len() > 1 {
            self.resend_hold = Some(now + self.settle_time());
        }
        self.cursor = n;
        self.last_rewind = Some(n);
        Resend::Rewound
    }

    /// Quiet time that ends a resend's settling: a few link round trips, bounded by the
    /// resend grace.
    fn settle_time(&self) -> Duration {
        let rtt = self.rtt_min.unwrap_or(self.cfg.resend_ok_grace);
        (rtt * 3 + Duration::from_millis(2)).min(self.cfg.resend_ok_grace)
    }

    // --- Time ----------------------------------------------------------------------------

    /// When the current wait for an acknowledgement times out (long commands exempt).
    fn reply_deadline(&self) -> Option<Instant> {
        if self.in_flight.is_empty() && self.resend_ok_due.is_none() {
            return None;
        }
        if self.in_flight.iter().any(|f| f.long) {
            return Some(self.last_alive + self.cfg.long_command_timeout);
        }
        let timeout = if self.busy_protocol {
            self.cfg.reply_timeout_busy
        } else {
            self.cfg.reply_timeout
        };
        Some(self.last_rx + timeout)
    }

    /// How long an acknowledgement may take before a quick probe: the smoothed round trip plus
    /// four deviations, within the configured bounds, doubled for each probe already sent.
    pub(crate) fn probe_timeout(&self) -> Duration {
        let base = match self.srtt {
            Some(srtt) => srtt + self.rttvar * 4,
            None => self.cfg.quick_probe_max,
        };
        let backoff = 1u32 << self.quick_probes.min(16);
        let max = self.cfg.quick_probe_max.max(self.cfg.quick_probe_min);
        base.clamp(self.cfg.quick_probe_min, max) * backoff
    }

    /// When a quick probe is due, if one may be sent at all: only on firmware whose status
    /// `ok` is recognisable, with no resend or renumbering pending (a probe takes the next
    /// line number), nothing long in flight, and fewer probes than the limit.
    fn probe_deadline(&self) -> Option<Instant> {
        if !self.cfg.quick_probe
            || !self.ok_carries_temperatures
            || self.quick_probes >= self.cfg.max_quick_probes
            || self.resend_ok_due.is_some()
            || self.resend_hold.is_some()
            || self.renumber
            || self.cursor != self.next_line
            || self.in_flight.iter().any(|f| f.long)
        {
            return None;
        }
        let oldest = self.in_flight.front()?;
        let since = [Some(oldest.sent_at), Some(self.last_alive), self.last_probe]
            .into_iter()
            .flatten()
            .max()?;
        Some(since + self.probe_timeout())
    }

    /// The next moment [`LineWindow::on_tick`] has something to do.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        [
            self.resend_ok_due,
            self.resend_hold,
            self.reply_deadline(),
            self.probe_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Lets time pass: a resend's missing `ok` is assumed, settling ends, an overdue reply is
    /// handled.
    pub(crate) fn on_tick(&mut self, now: Instant) -> Option<Timeout> {
        if self.resend_ok_due.is_some_and(|due| now >= due) {
            // Resend without its `ok` (rule 3): go on as if it had come.
            self.resend_ok_due = None;
        }
        if self.resend_hold.is_some_and(|until| now >= until) {
            self.resend_hold = None;
        }
        if self.probe_deadline().is_some_and(|t| now >= t)
            && self.reply_deadline().is_none_or(|t| now < t)
        {
            self.quick_probes += 1;
            self.last_probe = Some(now);
            let n = self.next_line;
            let framed = gcode::frame(n, STATUS_QUERY);
            self.next_line += 1;
            self.cursor = self.next_line;
            self.push_history(n, &framed);
            // Outside the window: with one line in flight, the probe must pass it.
            self.record_numbered(n, &framed, now);
            return Some(Timeout::QuickProbe(framed));
        }
        if self.reply_deadline().is_none_or(|t| now < t) {
            return None;
        }
        self.consecutive_timeouts += 1;
        self.last_rx = now;
        self.last_alive = now;
        if self.consecutive_timeouts > self.cfg.max_consecutive_timeouts {
            let timeouts = self.consecutive_timeouts;
            // Without replies nothing is known about the printer; stop tracking old lines.
            self.in_flight.clear();
            self.consecutive_timeouts = 0;
            return Some(Timeout::GiveUp { timeouts });
        }
        // Rule 6: provoke a reply. The oldest acknowledgement is taken as lost and the probe
        // takes its place in the window; a late `ok` then finds no line waiting for it.
        self.in_flight.pop_front();
        self.send_outside_window(STATUS_QUERY, now);
        Some(Timeout::Probe(STATUS_QUERY))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    /// A window whose handshake was answered at `t0`.
    fn ready(cfg: &BridgeConfig, t0: Instant) -> LineWindow {
        let mut w = LineWindow::new(cfg, t0);
        w.numbering_reset();
        w.link_up(t0);
        w
    }

    /// A ready window on firmware that reported ADVANCED_OK with `slots` free.
    fn pipelined(slots: usize, t0: Instant) -> LineWindow {
        let mut w = ready(&BridgeConfig::default(), t0);
        w.on_buffer_free(slots);
        w
    }

    /// `N<n> G1 X<n>`: the digits cancel out, so its checksum is always 96.
    fn g1(n: u64) -> String {
        format!("G1 X{n}")
    }

    fn framed_g1(n: u64) -> String {
        format!("N{n} G1 X{n}*96")
    }

    fn send_g1(w: &mut LineWindow, n: u64, at: Instant) {
        assert_eq!(w.send_numbered(&g1(n), at), Some(framed_g1(n)));
    }

    #[test]
    fn lines_are_framed_with_consecutive_numbers_and_xor_checksum() {
        let t0 = Instant::now();
        let mut w = ready(&BridgeConfig::default(), t0);
        assert_eq!(
            w.send_numbered("G1 X10 Y20", t0).as_deref(),
            Some("N1 G1 X10 Y20*43")
        );
        assert_eq!(w.on_ok(None, false, t0), Some(1));
        for n in 2..=122 {
            send_g1(&mut w, n, t0);
            assert_eq!(w.on_ok(None, false, t0), Some(n));
        }
        assert_eq!(w.send_numbered("G28", t0).as_deref(), Some("N123 G28*19"));
    }

    #[test]
    fn in_order_acks_free_the_window_line_by_line() {
        let t0 = Instant::now();
        let mut w = pipelined(3, t0);
        for n in 1..=3 {
            send_g1(&mut w, n, t0);
        }
        assert!(!w.settled());
        for n in 1..=3 {
            assert_eq!(w.on_ok(None, false, ms(t0, n)), Some(n));
        }
        assert!(w.settled());
        assert_eq!(w.poll_backlog(t0), Backlog::Empty);
    }

    #[test]
    fn one_line_in_flight_without_advanced_ok() {
        let t0 = Instant::now();
        let mut w = ready(&BridgeConfig::default(), t0);
        send_g1(&mut w, 1, t0);
        // Back-pressure: the caller keeps the line, and no number is used up by it.
        assert_eq!(w.send_numbered(&g1(2), t0), None);
        assert_eq!(w.send_numbered(&g1(2), t0), None);
        assert_eq!(w.on_ok(None, false, t0), Some(1));
        send_g1(&mut w, 2, t0);
    }

    #[test]
    fn a_full_window_holds_back_new_lines_by_count_and_by_bytes() {
        let t0 = Instant::now();
        let mut w = pipelined(3, t0);
        for n in 1..=3 {
            send_g1(&mut w, n, t0);
        }
        assert_eq!(w.send_numbered(&g1(4), t0), None);
        assert!(!w.send_unnumbered(STATUS_QUERY, t0));
        assert_eq!(w.on_ok(Some(1), false, t0), Some(1));
        send_g1(&mut w, 4, t0);

        // 30 bytes of receive buffer: two 12-byte lines fit, a third does not.
        let cfg = BridgeConfig {
            rx_buffer_bytes: 30,
            ..BridgeConfig::default()
        };
        let mut w = ready(&cfg, t0);
        w.on_buffer_free(8);
        send_g1(&mut w, 1, t0);
        send_g1(&mut w, 2, t0);
        assert_eq!(w.send_numbered(&g1(3), t0), None);
        assert_eq!(w.on_ok(None, false, t0), Some(1));
        send_g1(&mut w, 3, t0);
    }

    #[test]
    fn advanced_ok_naming_a_line_acknowledges_the_ones_before() {
        let t0 = Instant::now();
        let mut w = pipelined(4, t0);
        for n in 1..=3 {
            send_g1(&mut w, n, t0);
        }
        assert_eq!(w.on_ok(Some(3), false, t0), Some(3));
        assert!(w.settled());
    }

    #[test]
    fn a_duplicate_ok_for_an_acknowledged_line_frees_nothing() {
        let t0 = Instant::now();
        let mut w = pipelined(4, t0);
        send_g1(&mut w, 1, t0);
        send_g1(&mut w, 2, t0);
        assert_eq!(w.on_ok(Some(1), false, t0), Some(1));
        assert_eq!(w.on_ok(Some(1), false, t0), None);
        assert!(!w.settled(), "line 2 still awaits its own ok");
        assert_eq!(w.on_ok(Some(2), false, t0), Some(2));
        assert!(w.settled());
    }

    #[test]
    fn resend_in_the_middle_of_the_window_rewinds_once_the_link_is_quiet() {
        let t0 = Instant::now();
        let mut w = pipelined(4, t0);
        for n in 1..=4 {
            send_g1(&mut w, n, t0);
        }
        // Round trip 10 ms: settling takes 3 × 10 + 2 = 32 ms.
        assert_eq!(w.on_ok(Some(1), false, ms(t0, 10)), Some(1));
        assert_eq!(w.on_resend(3, ms(t0, 12)), Resend::Rewound);
        assert_eq!(w.poll_backlog(ms(t0, 12)), Backlog::Wait);
        // The `ok` after the request belongs to it, not to line 2.
        assert_eq!(w.on_ok(None, false, ms(t0, 13)), None);
        assert_eq!(w.poll_backlog(ms(t0, 13)), Backlog::Wait);
        // Line 2 came before the refused one: the firmware kept it.
        assert_eq!(w.on_ok(Some(2), false, ms(t0, 20)), Some(2));
        assert_eq!(w.deadline(), Some(ms(t0, 44)));
        assert_eq!(w.on_tick(ms(t0, 43)), None);
        assert_eq!(w.poll_backlog(ms(t0, 43)), Backlog::Wait);
        assert_eq!(w.on_tick(ms(t0, 44)), None);
        assert_eq!(w.poll_backlog(ms(t0, 44)), Backlog::Resend(framed_g1(3)));
        assert_eq!(w.poll_backlog(ms(t0, 44)), Backlog::Resend(framed_g1(4)));
        assert_eq!(w.poll_backlog(ms(t0, 44)), Backlog::Empty);
        send_g1(&mut w, 5, ms(t0, 44));
    }

    #[test]
    fn a_second_request_while_settling_is_a_duplicate() {
        let t0 = Instant::now();
        let mut w = pipelined(4, t0);
        for n in 1..=4 {
            send_g1(&mut w, n, t0);
        }
        assert_eq!(w.on_ok(Some(1), false, ms(t0, 10)), Some(1));
        assert_eq!(w.on_resend(2, ms(t0, 12)), Resend::Rewound);
        // Line 3 arrived out of order too: its request must not rewind again.
        assert_eq!(w.on_resend(3, ms(t0, 20)), Resend::Duplicate);
        assert_eq!(w.on_tick(ms(t0, 600)), None);
        assert_eq!(w.poll_backlog(ms(t0, 600)), Backlog::Resend(framed_g1(2)));
        assert_eq!(w.poll_backlog(ms(t0, 600)), Backlog::Resend(framed_g1(3)));
        assert_eq!(w.poll_backlog(ms(t0, 600)), Backlog::Resend(framed_g1(4)));
        assert_eq!(w.poll_backlog(ms(t0, 600)), Backlog::Empty);
    }

    #[test]
    fn resend_of_an_acknowledged_line_still_held_sends_it_and_the_rest_again() {
        let t0 = Instant::now();
        let mut w = ready(&BridgeConfig::default(), t0);
        send_g1(&mut w, 1, t0);
        assert_eq!(w.on_ok(None, false, t0), Some(1));
        send_g1(&mut w, 2, t0);
        assert_eq!(w.on_ok(None, false, t0), Some(2));
        send_g1(&mut w, 3, t0);
        assert_eq!(w.on_resend(2, ms(t0, 5)), Resend::Rewound);
        assert_eq!(w.on_ok(None, false, ms(t0, 6)), None);
        assert_eq!(w.poll_backlog(ms(t0, 6)), Backlog::Resend(framed_g1(2)));
        // One line in flight: the next resend waits for its `ok`.
        assert_eq!(w.poll_backlog(ms(t0, 6)), Backlog::Wait);
        assert_eq!(w.on_ok(None, false, ms(t0, 7)), Some(2));
        assert_eq!(w.poll_backlog(ms(t0, 7)), Backlog::Resend(framed_g1(3)));
        assert_eq!(w.on_ok(None, false, ms(t0, 8)), Some(3));
        assert!(w.settled());
    }

    #[test]
    fn resend_of_a_line_no_longer_held_abandons_numbering() {
        let t0 = Instant::now();
        let mut w = ready(&BridgeConfig::default(), t0);
        for n in 1..=60 {
            send_g1(&mut w, n, t0);
            assert_eq!(w.on_ok(None, false, t0), Some(n));
        }
        // The history keeps the last 256 lines by default: shrink it to the protocol minimum.
        let cfg = BridgeConfig {
            history_lines: 10,
            ..BridgeConfig::default()
        };
        let mut small = ready(&cfg, t0);
        for n in 1..=60 {
            send_g1(&mut small, n, t0);
            assert_eq!(small.on_ok(None, false, t0), Some(n));
        }
        assert_eq!(w.on_resend(5, t0), Resend::Rewound);
        assert_eq!(
            small.on_resend(5, t0),
            Resend::Forgotten {
                line: 5,
                oldest: Some(11)
            }
        );
        assert!(small.settled());
        assert_eq!(small.poll_backlog(t0), Backlog::Wait);
        assert_eq!(small.on_ok(None, false, t0), None);
        // The firmware still expects line 5: numbering restarts after the last line sent.
        assert_eq!(small.poll_backlog(t0), Backlog::Renumber("M110 N60".into()));
        assert_eq!(small.send_numbered(&g1(61), t0), None);
        assert_eq!(small.on_ok(None, false, t0), None);
        send_g1(&mut small, 61, t0);
    }

    #[test]
    fn resend_of_a_line_never_sent_repeats_nothing() {
        let t0 = Instant::now();
        let mut w = pipelined(4, t0);
        send_g1(&mut w, 1, t0);
        send_g1(&mut w, 2, t0);
        assert_eq!(w.on_resend(7, t0), Resend::NothingToRepeat);
        assert_eq!(w.on_tick(ms(t0, 500)), None);
        assert_eq!(w.poll_backlog(ms(t0, 500)), Backlog::Empty);
        assert_eq!(w.on_ok(None, false, ms(t0, 501)), Some(1));
        assert_eq!(w.on_ok(None, false, ms(t0, 502)), Some(2));
    }

    #[test]
    fn the_same_line_refused_too_often_abandons_numbering() {
        let t0 = Instant::now();
        let cfg = BridgeConfig {
            max_resends_of_line: 2,
            ..BridgeConfig::default()
        };
        let mut w = ready(&cfg, t0);
        send_g1(&mut w, 1, t0);
        for _ in 0..2 {
            assert_eq!(w.on_resend(1, t0), Resend::Rewound);
            assert_eq!(w.on_ok(None, false, t0), None);
            assert_eq!(w.poll_backlog(t0), Backlog::Resend(framed_g1(1)));
        }
        assert_eq!(w.on_resend(1, t0), Resend::TooOften { line: 1, limit: 2 });
        assert!(w.settled());
        assert_eq!(w.on_ok(None, false, t0), None);
        assert_eq!(w.poll_backlog(t0), Backlog::Renumber("M110 N1".into()));
    }

    #[test]
    fn a_resend_without_its_ok_goes_on_after_the_grace() {
        let t0 = Instant::now();
        let mut w = ready(&BridgeConfig::default(), t0);
        send_g1(&mut w, 1, t0);
        assert_eq!(w.on_ok(None, false, t0), Some(1));
        send_g1(&mut w, 2, t0);
        assert_eq!(w.on_resend(2, ms(t0, 100)), Resend::Rewound);
        assert_eq!(w.deadline(), Some(ms(t0, 600)));
        assert_eq!(w.on_tick(ms(t0, 599)), None);
        assert_eq!(w.poll_backlog(ms(t0, 599)), Backlog::Wait);
        assert_eq!(w.on_tick(ms(t0, 600)), None);
        assert_eq!(w.poll_backlog(ms(t0, 600)), Backlog::Resend(framed_g1(2)));
    }

    #[test]
    fn a_lost_ok_is_recovered_by_the_reply_timeout() {
        let t0 = Instant::now();
        let s = |s: u64| t0 + Duration::from_secs(s);
        let cfg = BridgeConfig {
            max_consecutive_timeouts: 2,
            quick_probe: false,
            ..BridgeConfig::default()
        };
        let mut w = ready(&cfg, t0);
        send_g1(&mut w, 1, t0);
        assert_eq!(w.deadline(), Some(s(30)));
        assert_eq!(w.on_tick(ms(t0, 29_999)), None);
        assert_eq!(w.on_tick(s(30)), Some(Timeout::Probe("M105")));
        // The probe took line 1's place: nothing new until it is answered.
        assert_eq!(w.send_numbered(&g1(2), s(30)), None);
        assert_eq!(w.on_ok(None, true, s(31)), None);
        send_g1(&mut w, 2, s(31));

        // Still silent: probes, then giving up, which forgets what was in flight.
        assert_eq!(w.on_tick(s(60)), Some(Timeout::Probe("M105")));
        assert_eq!(w.on_tick(s(89)), None);
        assert_eq!(w.on_tick(s(90)), Some(Timeout::Probe("M105")));
        assert_eq!(w.on_tick(s(120)), Some(Timeout::GiveUp { timeouts: 3 }));
        assert!(w.settled());
        assert_eq!(w.deadline(), None);
    }

    /// The default configuration with a 20 ms probe floor (50 ms by default), which keeps the
    /// times below short.
    fn probing() -> BridgeConfig {
        BridgeConfig {
            quick_probe_min: Duration::from_millis(20),
            ..BridgeConfig::default()
        }
    }

    /// A ready window that has seen `ok T:` and a steady 5 ms round trip on lines 1..=8;
    /// returns it with line 9 next.
    fn with_round_trip(cfg: &BridgeConfig, t0: Instant) -> LineWindow {
        let mut w = ready(cfg, t0);
        assert!(w.send_unnumbered(STATUS_QUERY, t0));
        assert_eq!(w.on_ok(None, true, ms(t0, 1)), None);
        for n in 1..=8 {
            send_g1(&mut w, n, ms(t0, n * 10));
            assert_eq!(w.on_ok(None, false, ms(t0, n * 10 + 5)), Some(n));
        }
        w
    }

    fn probe(n: u64) -> String {
        gcode::frame(n, STATUS_QUERY)
    }

    #[test]
    fn a_lost_ok_is_recovered_by_a_numbered_probe_after_a_few_round_trips() {
        let t0 = Instant::now();
        let mut w = with_round_trip(&probing(), t0);
        // Round trip 5 ms, no deviation left to speak of: the floor of 20 ms applies.
        assert_eq!(w.probe_timeout(), Duration::from_millis(20));
        send_g1(&mut w, 9, ms(t0, 100));
        assert_eq!(w.deadline(), Some(ms(t0, 120)));
        assert_eq!(w.on_tick(ms(t0, 119)), None);
        assert_eq!(w.on_tick(ms(t0, 120)), Some(Timeout::QuickProbe(probe(10))));
        // The probe passes the full one-line window; nothing else does.
        assert_eq!(w.send_numbered(&g1(11), ms(t0, 121)), None);
        // Its `ok T:` proves line 9 ran: both are done, and line 11 follows the probe.
        assert_eq!(w.on_ok(None, true, ms(t0, 125)), Some(10));
        assert!(w.settled());
        send_g1(&mut w, 11, ms(t0, 125));
    }

    #[test]
    fn a_slow_ok_and_the_probe_are_each_matched_once() {
        let t0 = Instant::now();
        let mut w = with_round_trip(&probing(), t0);
        send_g1(&mut w, 9, ms(t0, 100));
        assert_eq!(w.on_tick(ms(t0, 120)), Some(Timeout::QuickProbe(probe(10))));
        // Line 9 was only slow: its plain `ok` is its own, the probe's comes next.
        assert_eq!(w.on_ok(None, false, ms(t0, 130)), Some(9));
        assert!(!w.settled());
        assert_eq!(w.send_numbered(&g1(11), ms(t0, 130)), None);
        assert_eq!(w.on_ok(None, true, ms(t0, 131)), Some(10));
        assert!(w.settled());
        send_g1(&mut w, 11, ms(t0, 131));
    }

    #[test]
    fn a_line_the_firmware_dropped_is_asked_for_by_the_probe_and_resent() {
        let t0 = Instant::now();
        let mut w = with_round_trip(&probing(), t0);
        // Line 9 answered only by "No Line Number with checksum": no ok, no resend request.
        send_g1(&mut w, 9, ms(t0, 100));
        assert_eq!(w.on_tick(ms(t0, 120)), Some(Timeout::QuickProbe(probe(10))));
        // The numbered probe draws the line-number error: line 9 is asked for, not assumed.
        assert_eq!(w.on_resend(9, ms(t0, 122)), Resend::Rewound);
        assert_eq!(w.on_ok(None, false, ms(t0, 122)), None);
        assert_eq!(
            w.deadline(),
            Some(ms(t0, 122 + 17)),
            "settling: 3 round trips + 2 ms"
        );
        assert_eq!(w.on_tick(ms(t0, 139)), None);
        assert_eq!(w.poll_backlog(ms(t0, 139)), Backlog::Resend(framed_g1(9)));
        assert_eq!(w.poll_backlog(ms(t0, 139)), Backlog::Wait);
        assert_eq!(w.on_ok(None, false, ms(t0, 144)), Some(9));
        assert_eq!(w.poll_backlog(ms(t0, 144)), Backlog::Resend(probe(10)));
        assert_eq!(w.on_ok(None, true, ms(t0, 149)), Some(10));
        assert_eq!(w.poll_backlog(ms(t0, 149)), Backlog::Empty);
        assert!(w.settled());
    }

    #[test]
    fn unanswered_probes_back_off_then_leave_it_to_the_reply_timeout() {
        let t0 = Instant::now();
        let mut w = with_round_trip(&probing(), t0);
        send_g1(&mut w, 9, ms(t0, 100));
        // 20, then 40, 80 and 160 ms after each probe; four probes at most.
        let mut at = 100;
        for (i, wait) in [20, 40, 80, 160].into_iter().enumerate() {
            at += wait;
            assert_eq!(w.on_tick(ms(t0, at - 1)), None);
            assert_eq!(
                w.on_tick(ms(t0, at)),
                Some(Timeout::QuickProbe(probe(10 + i as u64)))
            );
        }
        // Only the reply timeout is left (30 s after the last reply; none came since t0 here).
        assert_eq!(w.deadline(), Some(ms(t0, 30_000)));
        // A late answer to the first probe settles line 9 and that probe; the others follow.
        assert_eq!(w.on_ok(None, true, ms(t0, 20_000)), Some(10));
        assert!(!w.settled());
        for n in 11..=13 {
            assert_eq!(w.on_ok(None, true, ms(t0, 20_000)), Some(n));
        }
        assert!(w.settled());
    }

    #[test]
    fn the_probe_timeout_follows_the_observed_round_trip() {
        let t0 = Instant::now();
        let mut w = ready(&BridgeConfig::default(), t0);
        assert!(w.send_unnumbered(STATUS_QUERY, t0));
        assert_eq!(w.on_ok(None, true, t0), None);
        // Unknown round trip: the ceiling.
        assert_eq!(w.probe_timeout(), Duration::from_secs(1));
        assert_eq!(
            BridgeConfig::default().quick_probe_min,
            Duration::from_millis(50)
        );
        // Steady 100 ms acknowledgements (a full planner of long moves): just over 100 ms.
        for n in 1..=20 {
            send_g1(&mut w, n, ms(t0, n * 200));
            assert_eq!(w.on_ok(None, false, ms(t0, n * 200 + 100)), Some(n));
        }
        let rto = w.probe_timeout();
        assert!(
            rto >= Duration::from_millis(100) && rto <= Duration::from_millis(200),
            "{rto:?}"
        );
    }

    #[test]
    fn no_quick_probe_without_recognisable_replies_or_with_a_long_command_in_flight() {
        let t0 = Instant::now();
        // Never saw `ok T:`: a probe's reply could not be told from a line's.
        let mut w = ready(&BridgeConfig::default(), t0);
        send_g1(&mut w, 1, t0);
        assert_eq!(w.deadline(), Some(t0 + Duration::from_secs(30)));

        let mut w = with_round_trip(&probing(), t0);
        assert_eq!(
            w.send_numbered("G28", ms(t0, 100)).as_deref(),
            Some("N9 G28*26")
        );
        assert_eq!(w.on_tick(ms(t0, 5_000)), None);
        assert_eq!(w.deadline(), Some(t0 + Duration::from_secs(15 * 60)));
    }

    #[test]
    fn a_probe_answered_without_temperatures_still_settles() {
        let t0 = Instant::now();
        let mut w = with_round_trip(&probing(), t0);
        send_g1(&mut w, 9, ms(t0, 100));
        assert_eq!(w.on_tick(ms(t0, 120)), Some(Timeout::QuickProbe(probe(10))));
        // Line 9's `ok` was lost; the probe's comes plain: in order, both are done.
        assert_eq!(w.on_ok(None, false, ms(t0, 125)), Some(9));
        assert_eq!(w.on_ok(None, false, ms(t0, 126)), Some(10));
        assert!(w.settled());
    }

    #[test]
    fn a_probe_answer_is_not_taken_for_a_pending_resend_ok() {
        let t0 = Instant::now();
        let mut w = with_round_trip(&probing(), t0);
        send_g1(&mut w, 9, ms(t0, 100));
        assert_eq!(w.on_tick(ms(t0, 120)), Some(Timeout::QuickProbe(probe(10))));
        // Firmware that sends no `ok` after a resend request: the probe's `ok T:` still
        // answers the probe.
        assert_eq!(w.on_resend(11, ms(t0, 121)), Resend::NothingToRepeat);
        assert_eq!(w.on_ok(None, true, ms(t0, 122)), Some(10));
        assert!(w.settled());
    }

    #[test]
    fn long_commands_wait_longer_and_busy_firmware_shorter() {
        let t0 = Instant::now();
        let mut w = ready(&BridgeConfig::default(), t0);
        assert_eq!(
            w.send_numbered("M109 S210", t0).as_deref(),
            Some("N1 M109 S210*106")
        );
        assert!(w.heating_wait_in_flight());
        assert_eq!(w.deadline(), Some(t0 + Duration::from_secs(15 * 60)));

        let mut w = ready(&BridgeConfig::default(), t0);
        w.on_busy();
        send_g1(&mut w, 1, t0);
        assert!(!w.heating_wait_in_flight());
        assert_eq!(w.deadline(), Some(t0 + Duration::from_secs(3)));
        w.on_received(true, ms(t0, 2_000));
        assert_eq!(w.deadline(), Some(ms(t0, 5_000)));
    }

    #[test]
    fn wait_stands_in_for_acknowledgements_older_than_the_grace() {
        let t0 = Instant::now();
        let mut w = pipelined(4, t0);
        send_g1(&mut w, 1, t0);
        send_g1(&mut w, 2, ms(t0, 600));
        w.on_wait(ms(t0, 700));
        assert_eq!(w.on_ok(None, false, ms(t0, 710)), Some(2));
        assert!(w.settled());
    }

    #[test]
    fn a_status_query_is_matched_by_the_temperatures_on_its_ok() {
        let t0 = Instant::now();
        let mut w = pipelined(4, t0);
        send_g1(&mut w, 1, t0);
        assert!(w.send_unnumbered(STATUS_QUERY, t0));
        assert_eq!(w.on_ok(None, true, t0), None);
        assert!(!w.settled());
        assert_eq!(w.on_ok(None, false, t0), Some(1));
        assert!(w.settled());
    }

    #[test]
    fn a_failed_job_drops_pending_resends_and_renumbers() {
        let t0 = Instant::now();
        let mut w = pipelined(4, t0);
        send_g1(&mut w, 1, t0);
        send_g1(&mut w, 2, t0);
        assert_eq!(w.on_resend(1, t0), Resend::Rewound);
        w.abandon_resends();
        assert!(w.settled());
        assert_eq!(w.on_tick(ms(t0, 500)), None);
        assert_eq!(
            w.poll_backlog(ms(t0, 500)),
            Backlog::Renumber("M110 N2".into())
        );
    }

    #[test]
    fn a_reset_starts_numbering_from_one() {
        let t0 = Instant::now();
        let mut w = ready(&BridgeConfig::default(), t0);
        send_g1(&mut w, 1, t0);
        assert_eq!(w.on_ok(None, false, t0), Some(1));
        send_g1(&mut w, 2, t0);
        w.reset();
        assert!(w.settled());
        send_g1(&mut w, 1, t0);
    }
}
