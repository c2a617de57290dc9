//! The simulated firmware: one task that receives bytes at wire speed into a bounded receive
//! buffer, checks line numbers and checksums the way Marlin's `queue.cpp` does, keeps a command
//! buffer and a planner, executes commands with realistic timing, heats with a simple thermal
//! model, answers `ok` after a fixed latency and injects faults.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};

use crate::prusa::{self, Eeprom, Personality};
use crate::{Executed, Fault, LineFault, PrinterConfig, Shared};

/// Room temperature in °C.
pub const AMBIENT: f64 = 22.0;
/// Heating rates in °C per simulated second.
const HOTEND_RATE: f64 = 2.5;
const BED_RATE: f64 = 0.7;
/// Cooling time constant in simulated seconds.
const COOL_TAU: f64 = 90.0;
/// Simulated time of a homing or probing command.
const HOMING_TIME: Duration = Duration::from_secs(4);
/// Interval of temperature lines while M109/M190 wait (shorter if keepalives are).
const HEATING_REPORT: Duration = Duration::from_secs(1);
/// Resolution of tokio's timer.
const TIMER_SLACK: Duration = Duration::from_millis(1);
/// Bytes read from the link per call.
const READ_CHUNK: usize = 4096;

#[derive(Debug, Clone)]
struct Command {
    line: Option<u64>,
    text: String,
    /// A scheduled fault: its `ok` is lost.
    lose_ok: bool,
}

#[derive(Debug)]
struct Exec {
    done_at: Instant,
    next_keepalive: Instant,
    heating_wait: bool,
}

#[derive(Debug, Clone, Copy)]
struct Heater {
    actual: f64,
    target: f64,
    rate: f64,
}

impl Heater {
    fn advance(&mut self, sim_secs: f64) {
        if self.target > self.actual {
            self.actual = (self.actual + self.rate * sim_secs).min(self.target);
        } else {
            let floor = self.target.max(AMBIENT);
            if self.actual > floor {
                self.actual = floor + (self.actual - floor) * (-sim_secs / COOL_TAU).exp();
            }
        }
    }

    /// Simulated seconds until the target is reached while heating.
    fn time_to_target(&self) -> f64 {
        if self.target > self.actual {
            (self.target - self.actual) / self.rate
        } else {
            0.0
        }
    }

    fn power(&self) -> u8 {
        if self.target > self.actual { 127 } else { 0 }
    }
}

/// The firmware state machine; [`Firmware::run`] drives it on a byte stream.
pub struct Firmware {
    cfg: PrinterConfig,
    shared: Arc<Mutex<Shared>>,
    rng: StdRng,
    /// Bytes on the wire with their arrival time (only when a baud rate is simulated).
    incoming: VecDeque<(Instant, u8)>,
    wire_clock: Instant,
    rx: VecDeque<u8>,
    ep_line: Vec<u8>,
    last_n: u64,
    queue: VecDeque<Command>,
    exec: Option<Exec>,
    planner: VecDeque<Instant>,
    outbox: VecDeque<(Instant, String)>,
    killed: bool,
    awol: Option<Option<Instant>>,
    booting_until: Option<Instant>,
    autoreport: Option<Duration>,
    next_autoreport: Instant,
    busy_interval: Duration,
    hotend: Heater,
    bed: Heater,
    last_thermal: Instant,
    corrupt_next: bool,
    lose_next_ok: bool,
    resend_next: bool,
    resend_without_ok_next: bool,
    busy_next: Option<Duration>,
    /// Line numbers whose scheduled fault fired (each fires once, not again on the resend).
    fired: HashSet<u64>,
    /// Last line received or `wait` said (for [`PrinterConfig::idle_wait`]).
    last_activity: Instant,
    /// What `M155` reports: 1 temperatures, 2 fans, 4 positions (Prusa's `C` mask).
    autoreport_mask: u8,
    /// EEPROM contents `D3` reads (Prusa personality).
    eeprom: Eeprom,
}

impl Firmware {
    /// A printer in its power-on state.
    pub fn new(cfg: PrinterConfig, shared: Arc<Mutex<Shared>>) -> Self {
        let now = Instant::now();
        let heater = |rate| Heater {
            actual: AMBIENT,
            target: 0.0,
            rate,
        };
        Self {
            rng: StdRng::seed_from_u64(cfg.faults.seed),
            booting_until: cfg.start_on_boot.then(|| now + cfg.boot_time),
            busy_interval: cfg.busy_interval,
            cfg,
            shared,
            incoming: VecDeque::new(),
            wire_clock: now,
            rx: VecDeque::new(),
            ep_line: Vec::new(),
            last_n: 0,
            queue: VecDeque::new(),
            exec: None,
            planner: VecDeque::new(),
            outbox: VecDeque::new(),
            killed: false,
            awol: None,
            autoreport: None,
            next_autoreport: now,
            hotend: heater(HOTEND_RATE),
            bed: heater(BED_RATE),
            last_thermal: now,
            corrupt_next: false,
            lose_next_ok: false,
            resend_next: false,
            resend_without_ok_next: false,
            busy_next: None,
            fired: HashSet::new(),
            last_activity: now,
            autoreport_mask: 1,
            eeprom: Eeprom::default(),
        }
    }

    fn shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn scaled(&self, d: Duration) -> Duration {
        d.div_f64(self.cfg.time_scale.max(1e-6))
    }

    /// Queues a line for the host; every line takes the same latency, so order is kept.
    fn say(&mut self, text: impl Into<String>) {
        let due = Instant::now() + self.cfg.reply_latency;
        self.outbox.push_back((due, text.into()));
    }

    /// Runs until the stream closes.
    pub async fn run<S>(mut self, mut stream: S, mut faults: mpsc::UnboundedReceiver<Fault>)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut buf = vec![0u8; READ_CHUNK];
        let mut faults_open = true;
        loop {
            let now = Instant::now();
            self.step(now);
            if let Err(e) = self.flush_outbox(&mut stream, now).await {
                tracing::debug!("virtual printer: link closed: {e}");
                return;
            }
            let wake = self.next_wake(now);
            tokio::select! {
                read = stream.read(&mut buf) => match read {
                    Ok(0) | Err(_) => return,
                    Ok(n) => self.receive(&buf[..n]),
                },
                fault = faults.recv(), if faults_open => match fault {
                    Some(f) => self.inject(f),
                    None => faults_open = false,
                },
                () = sleep_until(wake) => {}
            }
        }
    }

    async fn flush_outbox<S: AsyncWrite + Unpin>(
        &mut self,
        stream: &mut S,
        now: Instant,
    ) -> std::io::Result<()> {
        let mut out = String::new();
        while self.outbox.front().is_some_and(|(due, _)| *due <= now) {
            if let Some((_, line)) = self.outbox.pop_front() {
                out.push_str(&line);
                out.push('\n');
            }
        }
        if !out.is_empty() {
            AsyncWriteExt::write_all(stream, out.as_bytes()).await?;
            AsyncWriteExt::flush(stream).await?;
        }
        Ok(())
    }

    fn next_wake(&self, now: Instant) -> Instant {
        let mut wake = now + Duration::from_secs(3600);
        let mut consider = |t: Instant| wake = wake.min(t);
        if let Some((due, _)) = self.outbox.front() {
            consider(*due);
        }
        if let Some((at, _)) = self.incoming.front() {
            consider(at.checked_sub(TIMER_SLACK).unwrap_or(*at));
        }
        if let Some(t) = self.booting_until {
            consider(t);
        }
        if let Some(Some(t)) = self.awol {
            consider(t);
        }
        if let Some(e) = &self.exec {
            consider(e.done_at);
            consider(e.next_keepalive);
        }
        if self.autoreport.is_some() {
            consider(self.next_autoreport);
        }
        if let Some(idle) = self.cfg.idle_wait {
            consider(self.last_activity + idle);
        }
        wake.max(now)
    }

    fn receive(&mut self, bytes: &[u8]) {
        if self.awol.is_some() || self.booting_until.is_some() || self.killed {
            return;
        }
        let now = Instant::now();
        match self.cfg.baud {
            Some(baud) if baud > 0 => {
                let byte_time = Duration::from_secs_f64(10.0 / f64::from(baud));
                self.wire_clock = self.wire_clock.max(now);
                for &b in bytes {
                    self.wire_clock += byte_time;
                    self.incoming.push_back((self.wire_clock, b));
                }
            }
            _ => {
                for &b in bytes {
                    self.arrive(b);
                }
            }
        }
    }

    /// A byte reaches the receive buffer (the UART interrupt): overflow loses it; the
    /// emergency parser sees it first.
    fn arrive(&mut self, b: u8) {
        if self.cfg.emergency_parser {
            if b == b'\n' {
                let line = String::from_utf8_lossy(&self.ep_line).to_string();
                self.ep_line.clear();
                match command_part(&line).trim() {
                    "M112" => {
                        self.kill("Killed. M112");
                        return;
                    }
                    // M108: break out of a heating wait (Marlin's `wait_for_heatup = false`).
                    "M108" => {
                        if let Some(e) = self.exec.as_mut().filter(|e| e.heating_wait) {
                            e.done_at = Instant::now();
                        }
                    }
                    _ => {}
                }
            } else if self.ep_line.len() < 256 {
                self.ep_line.push(b);
            }
        }
        if self.rx.len() >= self.cfg.rx_buffer_bytes {
            self.shared().stats.rx_overflow_bytes += 1;
            return;
        }
        self.rx.push_back(b);
    }

    fn step(&mut self, now: Instant) {
        self.advance_thermal(now);
        if let Some(Some(until)) = self.awol
            && now >= until
        {
            self.awol = None;
        }
        if self.awol.is_some() {
            self.outbox.clear();
            return;
        }
        if let Some(t) = self.booting_until
            && now >= t
        {
            self.booting_until = None;
            self.say("start");
            match self.cfg.personality {
                Personality::Marlin => self.say("echo:Marlin 2.1.2.4 (virtual-printer)"),
                Personality::Prusa => {
                    self.say(format!(" {} (virtual-printer)", prusa::FIRMWARE_VERSION));
                    self.say("echo:SD card ok");
                }
            }
        }
        if self.booting_until.is_some() || self.killed {
            return;
        }
        // Bytes due within the timer resolution are taken now: sleeping for a fraction of a
        // millisecond per line would turn into a whole one and throttle far below the baud rate.
        let horizon = now + TIMER_SLACK;
        while self.incoming.front().is_some_and(|(at, _)| *at <= horizon) {
            if let Some((_, b)) = self.incoming.pop_front() {
                self.arrive(b);
            }
            if self.killed {
                return;
            }
        }
        loop {
            self.read_commands();
            if !self.execute(now) {
                break;
            }
            if self.killed || self.awol.is_some() || self.booting_until.is_some() {
                return;
            }
        }
        if let Some(idle) = self.cfg.idle_wait
            && self.queue.is_empty()
            && self.exec.is_none()
            && now >= self.last_activity + idle
        {
            self.last_activity = now;
            self.say("wait");
        }
        if let Some(interval) = self.autoreport
            && now >= self.next_autoreport
        {
            self.next_autoreport = now + interval;
            match self.cfg.personality {
                Personality::Marlin => {
                    let report = format!(" {}", self.temperature_report());
                    self.say(report);
                }
                Personality::Prusa => {
                    if self.autoreport_mask & 1 != 0 {
                        let report = self.temperature_report();
                        self.say(report);
                    }
                    if self.autoreport_mask & 2 != 0 {
                        self.say(prusa::fan_report());
                    }
                    if self.autoreport_mask & 4 != 0 {
                        self.say(prusa::position_report());
                    }
                }
            }
        }
    }

    fn advance_thermal(&mut self, now: Instant) {
        let sim = now.duration_since(self.last_thermal).as_secs_f64() * self.cfg.time_scale;
        self.last_thermal = now;
        self.hotend.advance(sim);
        self.bed.advance(sim);
        let mut s = self.shared();
        s.hotend = (self.hotend.actual, self.hotend.target);
        s.bed = (self.bed.actual, self.bed.target);
    }

    fn temperature_report(&self) -> String {
        if self.cfg.personality == Personality::Prusa {
            return prusa::temperature_report(&prusa::Temperatures {
                hotend: (self.hotend.actual, self.hotend.target),
                bed: (self.bed.actual, self.bed.target),
                power: (self.hotend.power(), self.bed.power()),
            });
        }
        format!(
            "T:{:.2} /{:.2} B:{:.2} /{:.2} @:{} B@:{}",
            self.hotend.actual,
            self.hotend.target,
            self.bed.actual,
            self.bed.target,
            self.hotend.power(),
            self.bed.power()
        )
    }

    /// Takes complete lines from the receive buffer while the command buffer has room
    /// (Marlin's `get_serial_commands`).
    fn read_commands(&mut self) {
        while self.queue.len() < self.cfg.command_buffer {
            let Some(end) = self.rx.iter().position(|&b| b == b'\n' || b == b'\r') else {
                return;
            };
            let mut raw: Vec<u8> = self.rx.drain(..=end).collect();
            raw.pop();
            if raw.iter().all(|b| b.is_ascii_whitespace()) {
                continue;
            }
            self.shared().stats.lines_received += 1;
            self.last_activity = Instant::now();
            if self.corrupt_next || self.chance(self.cfg.faults.corrupt_line) {
                self.corrupt_next = false;
                let i = self.rng.random_range(0..raw.len());
                let bit = self.rng.random_range(0..7);
                raw[i] ^= 1 << bit;
                self.shared().stats.corrupted += 1;
            }
            let scheduled = self.scheduled_fault(&raw);
            if scheduled == Some(LineFault::ChecksumMismatch) {
                // Corrupt a byte of the command, past `N<n> `, so the checksum catches it.
                let from = raw.iter().position(|&b| b == b' ').map_or(0, |i| i + 1);
                if let Some(b) = raw.get_mut(from) {
                    *b ^= 0x01;
                }
            }
            let line = String::from_utf8_lossy(&raw).trim().to_string();
            self.accept_line(&line, scheduled);
            if self.killed {
                return;
            }
        }
    }

    /// The scheduled fault for this line if it is the expected next numbered line and its
    /// fault has not fired yet; marks it fired.
    fn scheduled_fault(&mut self, raw: &[u8]) -> Option<LineFault> {
        if self.cfg.faults.schedule.is_empty() || raw.first() != Some(&b'N') {
            return None;
        }
        let digits: String = raw[1..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .map(|&b| char::from(b))
            .collect();
        let n: u64 = digits.parse().ok()?;
        if n != self.last_n + 1 || self.fired.contains(&n) {
            return None;
        }
        let fault = self.cfg.faults.scheduled_at(n)?;
        self.fired.insert(n);
        self.shared().stats.scheduled_faults += 1;
        Some(fault)
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.rng.random_bool(p.clamp(0.0, 1.0))
    }

    /// Line-number and checksum checks of Marlin's `queue.cpp`.
    fn accept_line(&mut self, line: &str, scheduled: Option<LineFault>) {
        if let Some(rest) = line.strip_prefix('N') {
            let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
            let n: Option<u64> = digits.parse().ok();
            let is_m110 = line.contains("M110");
            if !is_m110 && n != Some(self.last_n + 1) {
                self.line_error("Line Number is not Last Line Number+1, Last Line: ");
                return;
            }
            let Some((body, cs)) = line.rsplit_once('*') else {
                self.line_error("No Checksum with line number, Last Line: ");
                return;
            };
            let sum = body.bytes().fold(0u8, |a, b| a ^ b);
            if cs.trim().parse::<u16>().ok() != Some(u16::from(sum)) {
                self.line_error("checksum mismatch, Last Line: ");
                return;
            }
            if scheduled == Some(LineFault::MissingLineNumber) {
                // OctoPrint's virtual printer: the error alone, no `ok`, no resend request; the
                // line is dropped and the next one draws a line-number error.
                let text = format!(
                    "Error:No Line Number with checksum, Last Line: {}",
                    self.last_n
                );
                self.say(text);
                return;
            }
            if self.resend_next
                || scheduled == Some(LineFault::Resend)
                || self.chance(self.cfg.faults.resend)
            {
                self.resend_next = false;
                self.line_error("checksum mismatch, Last Line: ");
                return;
            }
            let n = n.unwrap_or(self.last_n + 1);
            self.last_n = n;
            let text = body[1 + digits.len()..].trim().to_string();
            if is_m110 {
                // `N<n> M110` without its own N sets the numbering to the line's N.
                if let Some(v) = m110_value(&text) {
                    self.last_n = v;
                }
            }
            self.queue.push_back(Command {
                line: Some(n),
                text,
                lose_ok: scheduled == Some(LineFault::LoseOk),
            });
        } else if line.contains('*') {
            self.line_error("No Line Number with checksum, Last Line: ");
        } else {
            if command_word(line).eq_ignore_ascii_case("M110")
                && let Some(v) = m110_value(line)
            {
                self.last_n = v;
            }
            self.queue.push_back(Command {
                line: None,
                text: line.to_string(),
                lose_ok: false,
            });
        }
    }

    /// Marlin's `gcode_line_error` + `flush_and_request_resend`.
    fn line_error(&mut self, message: &str) {
        let text = format!("Error:{message}{}", self.last_n);
        self.say(text);
        self.rx.clear();
        self.shared().stats.resend_requests += 1;
        self.say(format!("Resend: {}", self.last_n + 1));
        if self.resend_without_ok_next {
            self.resend_without_ok_next = false;
        } else {
            let ok = self.ok_line(None);
            self.say(ok);
        }
    }

    fn ok_line(&self, line: Option<u64>) -> String {
        if !self.cfg.advanced_ok {
            return "ok".into();
        }
        let n = line.map(|n| format!(" N{n}")).unwrap_or_default();
        let planner_free = self.cfg.planner_blocks.saturating_sub(self.planner.len());
        let buffer_free = self.cfg.command_buffer.saturating_sub(self.queue.len());
        format!("ok{n} P{planner_free} B{buffer_free}")
    }

    /// Starts or finishes the command at the head of the buffer. Returns whether anything
    /// changed (so more may be read).
    fn execute(&mut self, now: Instant) -> bool {
        while self.planner.front().is_some_and(|t| *t <= now) {
            self.planner.pop_front();
        }
        match &mut self.exec {
            None => {
                let Some(cmd) = self.queue.front().cloned() else {
                    return false;
                };
                self.start(&cmd, now);
                true
            }
            Some(e) if now >= e.done_at => {
                self.exec = None;
                self.finish(now);
                true
            }
            Some(e) => {
                if now >= e.next_keepalive {
                    let heating = e.heating_wait;
                    e.next_keepalive = now
                        + if heating {
                            HEATING_REPORT.min(self.busy_interval)
                        } else {
                            self.busy_interval
                        };
                    let text = if heating {
                        format!("{} W:?", self.temperature_report())
                    } else {
                        "echo:busy: processing".to_string()
                    };
                    self.say(text);
                }
                false
            }
        }
    }

    fn planner_end(&self, now: Instant) -> Instant {
        self.planner.back().copied().unwrap_or(now).max(now)
    }

    fn start(&mut self, cmd: &Command, now: Instant) {
        let word = command_word(&cmd.text).to_ascii_uppercase();
        let mut done = now;
        let mut heating_wait = false;
        match word.as_str() {
            "G0" | "G1" | "G2" | "G3" | "G5" => {
                // The `ok` comes when the move enters the planner: at once, or when the
                // oldest block finishes if the planner is full.
                if self.planner.len() >= self.cfg.planner_blocks {
                    let i = self.planner.len() - self.cfg.planner_blocks;
                    done = self.planner[i];
                }
                let begin = self.planner_end(done);
                self.planner.push_back(begin + self.cfg.move_time);
            }
            "G28" | "G29" | "G30" | "G32" | "G34" => {
                done = self.planner_end(now) + self.scaled(HOMING_TIME);
            }
            "G4" => {
                let ms = param(&cmd.text, 'P').unwrap_or(0.0)
                    + param(&cmd.text, 'S').unwrap_or(0.0) * 1000.0;
                let dwell = Duration::from_secs_f64(ms.max(0.0) / 1000.0);
                done = self.planner_end(now) + self.scaled(dwell);
            }
            "M400" => done = self.planner_end(now),
            "M104" | "M109" => {
                if let Some(t) = param(&cmd.text, 'S').or_else(|| param(&cmd.text, 'R')) {
                    self.hotend.target = t;
                }
                if word == "M109" {
                    heating_wait = true;
                    done = now + self.scaled(Duration::from_secs_f64(self.hotend.time_to_target()));
                }
            }
            "M140" | "M190" => {
                if let Some(t) = param(&cmd.text, 'S').or_else(|| param(&cmd.text, 'R')) {
                    self.bed.target = t;
                }
                if word == "M190" {
                    heating_wait = true;
                    done = now + self.scaled(Duration::from_secs_f64(self.bed.time_to_target()));
                }
            }
            _ => {}
        }
        if let Some(extra) = self.busy_next.take() {
            done = done.max(now) + extra;
        } else if self.chance(self.cfg.faults.busy) {
            done = done.max(now) + self.cfg.faults.busy_duration;
        }
        let first_keepalive = if heating_wait {
            HEATING_REPORT.min(self.busy_interval)
        } else {
            self.busy_interval
        };
        self.exec = Some(Exec {
            done_at: done,
            next_keepalive: now + first_keepalive,
            heating_wait,
        });
    }

    fn finish(&mut self, now: Instant) {
        let Some(cmd) = self.queue.front().cloned() else {
            return;
        };
        let word = command_word(&cmd.text).to_ascii_uppercase();
        let mut ok_extra: Option<String> = None;
        let prusa_answer = match self.cfg.personality {
            Personality::Prusa => prusa::answer(&cmd.text, &self.eeprom),
            Personality::Marlin => None,
        };
        if let Some(lines) = prusa_answer {
            for line in lines {
                self.say(line);
            }
        } else {
            self.finish_marlin(&cmd, &word, now, &mut ok_extra);
        }
        if self.killed {
            // M112: executed, and nothing after it.
            self.record(&cmd);
            return;
        }
        self.record(&cmd);
        let lose = cmd.lose_ok || self.lose_next_ok || self.chance(self.cfg.faults.lose_ok);
        if lose {
            self.lose_next_ok = false;
            self.shared().stats.lost_oks += 1;
        } else {
            let ok = ok_extra.unwrap_or_else(|| self.ok_line(cmd.line));
            self.say(ok);
        }
        self.queue.pop_front();
        let faults = &mut self.cfg.faults;
        let at = |slot: &mut Option<u64>| {
            if cmd.line.is_some() && *slot == cmd.line {
                *slot = None;
                true
            } else {
                false
            }
        };
        if at(&mut faults.reset_after_line) {
            self.reset();
        } else if at(&mut faults.awol_after_line) {
            self.awol = Some(None);
        } else if at(&mut faults.fatal_after_line) {
            self.fatal();
        }
    }

    /// The Marlin core's handling of a finished command: its output before the `ok`, or an
    /// `ok` that carries it (`ok_extra`).
    fn finish_marlin(
        &mut self,
        cmd: &Command,
        word: &str,
        now: Instant,
        ok_extra: &mut Option<String>,
    ) {
        match word {
            "M105" => *ok_extra = Some(format!("ok {}", self.temperature_report())),
            "M115" => self.report_capabilities(),
            "M155" => {
                let s = param(&cmd.text, 'S').unwrap_or(0.0);
                self.autoreport =
                    (self.cfg.autoreport_temp && s > 0.0).then(|| Duration::from_secs_f64(s));
                self.autoreport_mask = param(&cmd.text, 'C').map_or(1, |c| c as u8);
                self.next_autoreport = now;
            }
            "M113" => {
                if let Some(s) = param(&cmd.text, 'S').filter(|s| *s > 0.0) {
                    self.busy_interval = Duration::from_secs_f64(s);
                }
            }
            "M112" => {
                self.kill("Killed. M112");
            }
            w if !is_known_word(w) => {
                let text = format!("echo:Unknown command: \"{}\"", cmd.text);
                self.say(text);
            }
            _ => {}
        }
    }

    fn record(&mut self, cmd: &Command) {
        self.shared().record.push(Executed {
            line: cmd.line,
            command: cmd.text.clone(),
        });
    }

    fn report_capabilities(&mut self) {
        if self.cfg.personality == Personality::Prusa {
            for line in prusa::m115_lines() {
                self.say(line);
            }
            return;
        }
        self.say(
            "FIRMWARE_NAME:Marlin 2.1.2.4 (virtual-printer) SOURCE_CODE_URL:github.com/MarlinFirmware/Marlin PROTOCOL_VERSION:1.0 MACHINE_TYPE:Virtual EXTRUDER_COUNT:1",
        );
        let caps = [
            ("SERIAL_XON_XOFF", false),
            ("BINARY_FILE_TRANSFER", false),
            ("EEPROM", true),
            ("AUTOREPORT_TEMP", self.cfg.autoreport_temp),
            ("EMERGENCY_PARSER", self.cfg.emergency_parser),
            ("HOST_ACTION_COMMANDS", true),
            ("PROMPT_SUPPORT", true),
        ];
        for (name, on) in caps {
            self.say(format!("Cap:{name}:{}", u8::from(on)));
        }
    }

    fn kill(&mut self, why: &str) {
        self.say(format!("Error:{why}"));
        self.say("Error:Printer halted. kill() called!");
        self.killed = true;
        self.queue.clear();
        self.exec = None;
        self.planner.clear();
        self.rx.clear();
        self.incoming.clear();
        self.hotend.target = 0.0;
        self.bed.target = 0.0;
    }

    fn fatal(&mut self) {
        self.say("Error:MAXTEMP triggered, system stopped! Heater_ID: 0");
        self.kill("Printer halted");
    }

    fn reset(&mut self) {
        self.shared().stats.resets += 1;
        let now = Instant::now();
        self.incoming.clear();
        self.rx.clear();
        self.ep_line.clear();
        self.queue.clear();
        self.exec = None;
        self.planner.clear();
        // Output not yet on the wire dies with the board.
        self.outbox.clear();
        self.last_n = 0;
        // Numbering restarts: the schedule applies afresh.
        self.fired.clear();
        self.killed = false;
        self.awol = None;
        self.autoreport = None;
        self.busy_interval = self.cfg.busy_interval;
        self.hotend.target = 0.0;
        self.bed.target = 0.0;
        self.booting_until = Some(now + self.cfg.boot_time);
    }

    fn inject(&mut self, fault: Fault) {
        match fault {
            Fault::Reset => self.reset(),
            Fault::Awol(d) => self.awol = Some(d.map(|d| Instant::now() + d)),
            Fault::Fatal => self.fatal(),
            Fault::CorruptNextLine => self.corrupt_next = true,
            Fault::LoseNextOk => self.lose_next_ok = true,
            Fault::ResendNext => self.resend_next = true,
            Fault::ResendWithoutOkNext => {
                self.resend_next = true;
                self.resend_without_ok_next = true;
            }
            Fault::BusyNext(d) => self.busy_next = Some(d),
            Fault::HostAction(text) => self.say(format!("//action:{text}")),
        }
    }
}

/// The command of a line without `N<n>` and `*<cs>`.
fn command_part(line: &str) -> &str {
    let body = line.split('*').next().unwrap_or("");
    match body.strip_prefix('N') {
        Some(rest) => rest.trim_start_matches(|c: char| c.is_ascii_digit()),
        None => body,
    }
}

fn command_word(text: &str) -> &str {
    text.split_whitespace().next().unwrap_or("")
}

fn is_known_word(word: &str) -> bool {
    let mut chars = word.chars();
    matches!(chars.next(), Some('G' | 'M' | 'T'))
        && !word[1..].is_empty()
        && word[1..].chars().all(|c| c.is_ascii_digit() || c == '.')
}

fn param(text: &str, key: char) -> Option<f64> {
    text.split_whitespace()
        .skip(1)
        .find_map(|w| w.strip_prefix(key).and_then(|v| v.parse().ok()))
}

fn m110_value(text: &str) -> Option<u64> {
    param(text, 'N').filter(|v| *v >= 0.0).map(|v| v as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_part_strips_number_and_checksum() {
        assert_eq!(command_part("N12 M112*33").trim(), "M112");
        assert_eq!(command_part("M112"), "M112");
    }

    #[test]
    fn known_words() {
        assert!(is_known_word("G1"));
        assert!(is_known_word("M109"));
        assert!(is_known_word("T0"));
        assert!(!is_known_word("FOO"));
        assert!(!is_known_word("G"));
    }

    #[test]
    fn heater_reaches_target_at_rate() {
        let mut h = Heater {
            actual: 20.0,
            target: 220.0,
            rate: 2.0,
        };
        assert_eq!(h.time_to_target(), 100.0);
        h.advance(50.0);
        assert_eq!(h.actual, 120.0);
        h.advance(100.0);
        assert_eq!(h.actual, 220.0);
    }
}
