//! The connection task: owns the byte stream and is the only code that touches it. One task
//! per printer; the [`PrinterHandle`] talks to it over a channel.
//!
//! This file is the I/O loop: it reads firmware lines, waits for requests and timers, and writes
//! whatever the protocol layers decide. The decisions live elsewhere: line numbering, the `ok`
//! window and resends in `crate::window` (no I/O), the handshake in `handshake`, the job in
//! `job`, temperatures and progress in `reports`, the public handle in `handle`.

mod handle;
mod handshake;
mod job;
mod reports;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tokio::io::{
    AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, ReadHalf, WriteHalf,
};
use tokio::sync::{mpsc, oneshot};
use tokio::time::sleep_until;

pub use handle::{PrinterHandle, connect};

use crate::config::BridgeConfig;
use crate::error::BridgeError;
use crate::events::{Event, FirmwareInfo, JobStats, PrinterState};
use crate::reply::{ErrorClass, Reply, parse_reply};
use crate::window::{Backlog, LineWindow, Resend, STATUS_QUERY, Timeout};
use handle::Control;
use handshake::Link;
use job::ActiveJob;

/// The time on tokio's clock, as the `Instant` the line window works with. Never
/// `std::time::Instant::now()`: under tokio's paused clock (tests, the fuzz target) the two
/// differ, and deadlines computed on one would never come on the other.
pub(crate) fn clock() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Longest firmware line kept; longer ones are cut (noise on the line, not protocol).
const MAX_REPLY_BYTES: usize = 4096;

struct Session<R, W> {
    reader: BufReader<ReadHalf<R>>,
    writer: WriteHalf<W>,
    rx_buf: Vec<u8>,
    cfg: BridgeConfig,
    events: mpsc::UnboundedSender<Event>,
    ready: Option<oneshot::Sender<Result<FirmwareInfo, BridgeError>>>,
    link: Link,
    state: PrinterState,
    firmware: FirmwareInfo,
    /// Numbering, history, resends, the `ok` window and the reply timer.
    window: LineWindow,
    /// Numbered commands waiting to go out ahead of job lines (park, end, user commands).
    control_queue: VecDeque<String>,
    job: Option<ActiveJob>,
    stats: JobStats,
    autoreport: bool,
    next_poll: Instant,
    heating: bool,
    /// Emergency-parser commands (M108) sent ahead of everything, outside the window.
    urgent: Vec<&'static str>,
}

impl<R, W> Session<R, W>
where
    R: AsyncRead,
    W: AsyncWrite,
{
    fn new(
        read: ReadHalf<R>,
        write: WriteHalf<W>,
        cfg: BridgeConfig,
        events: mpsc::UnboundedSender<Event>,
        ready: oneshot::Sender<Result<FirmwareInfo, BridgeError>>,
    ) -> Self {
        let now = clock();
        Self {
            reader: BufReader::new(read),
            writer: write,
            rx_buf: Vec::with_capacity(256),
            link: Link::detecting(now, &cfg),
            window: LineWindow::new(&cfg, now),
            cfg,
            events,
            ready: Some(ready),
            state: PrinterState::Connecting,
            firmware: FirmwareInfo::default(),
            control_queue: Default::default(),
            job: None,
            stats: JobStats::default(),
            autoreport: false,
            next_poll: now,
            heating: false,
            urgent: Vec::new(),
        }
    }
}

impl<S> Session<S, S>
where
    S: AsyncRead + AsyncWrite,
{
    async fn run(mut self, mut control: mpsc::Receiver<Control>) {
        self.emit(Event::State {
            state: PrinterState::Connecting,
        });
        let result = self.run_loop(&mut control).await;
        if let Err(e) = result {
            tracing::warn!("printer connection ended: {e}");
            self.fail_job(&format!("connection lost: {e}"));
            if let Some(ready) = self.ready.take() {
                let _ = ready.send(Err(e));
            }
        }
        self.set_state(PrinterState::Disconnected);
    }

    async fn run_loop(&mut self, control: &mut mpsc::Receiver<Control>) -> Result<(), BridgeError> {
        loop {
            if self.link == Link::Closed {
                return Ok(());
            }
            self.pump().await?;
            let deadline = tokio::time::Instant::from_std(self.next_deadline());
            tokio::select! {
                read = read_reply(&mut self.reader, &mut self.rx_buf) => {
                    let n = read?;
                    if n == 0 && self.rx_buf.is_empty() {
                        return Err(BridgeError::Io(std::io::ErrorKind::UnexpectedEof.into()));
                    }
                    if self.rx_buf.last() == Some(&b'\n') || self.rx_buf.len() >= MAX_REPLY_BYTES || n == 0 {
                        let line = String::from_utf8_lossy(&self.rx_buf).into_owned();
                        self.rx_buf.clear();
                        self.on_line(&line).await?;
                    }
                }
                msg = control.recv() => match msg {
                    Some(msg) => self.on_control(msg).await?,
                    None => return Ok(()),
                },
                () = sleep_until(deadline) => self.on_timer().await?,
            }
        }
    }
}

/// Reads up to the next newline, at most [`MAX_REPLY_BYTES`] per call; partial data stays in
/// `buf`, so dropping this future in `select!` loses nothing.
async fn read_reply<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
) -> std::io::Result<usize> {
    use tokio::io::AsyncReadExt as _;
    reader
        .take(MAX_REPLY_BYTES as u64)
        .read_until(b'\n', buf)
        .await
}

impl<R, W> Session<R, W>
where
    R: AsyncRead,
    W: AsyncWrite,
{
    fn emit(&self, event: Event) {
        // A dropped receiver only means nobody listens; the printer must still be driven.
        let _ = self.events.send(event);
    }

    fn set_state(&mut self, state: PrinterState) {
        if self.state != state {
            self.state = state.clone();
            self.emit(Event::State { state });
        }
    }

    async fn write_line(&mut self, text: &str) -> Result<(), BridgeError> {
        tracing::trace!(">> {text}");
        let mut bytes = Vec::with_capacity(text.len() + 1);
        bytes.extend_from_slice(text.as_bytes());
        bytes.push(b'\n');
        AsyncWriteExt::write_all(&mut self.writer, &bytes).await?;
        AsyncWriteExt::flush(&mut self.writer).await?;
        Ok(())
    }

    /// Sends everything the window allows: urgent commands, then resends, control commands, a
    /// due temperature poll, then job lines.
    async fn pump(&mut self) -> Result<(), BridgeError> {
        for cmd in std::mem::take(&mut self.urgent) {
            // Outside the window: the emergency parser acts on arrival; the normal parser
            // acknowledges it later like any command.
            self.window.send_outside_window(cmd, clock());
            self.write_line(cmd).await?;
        }
        loop {
            if self.link != Link::Ready {
                return Ok(());
            }
            match self.window.poll_backlog(clock()) {
                Backlog::Wait => return Ok(()),
                Backlog::Renumber(cmd) => {
                    self.write_line(&cmd).await?;
                    continue;
                }
                Backlog::Resend(framed) => {
                    self.write_line(&framed).await?;
                    self.stats.lines_resent += 1;
                    continue;
                }
                Backlog::Vanished(n) => {
                    // Checked when the resend was accepted; reaching here is a logic slip.
                    self.fail_job(&format!("line {n} vanished from the history"));
                    return Ok(());
                }
                Backlog::Empty => {}
            }
            if let Some(cmd) = self.control_queue.front() {
                let Some(framed) = self.window.send_numbered(cmd, clock()) else {
                    return Ok(());
                };
                self.control_queue.pop_front();
                self.write_line(&framed).await?;
                continue;
            }
            if self.poll_due() {
                if !self.window.send_unnumbered(STATUS_QUERY, clock()) {
                    return Ok(());
                }
                self.write_line(STATUS_QUERY).await?;
                self.schedule_poll();
                continue;
            }
            if !self.pump_job().await? {
                return Ok(());
            }
        }
    }

    fn next_deadline(&self) -> Instant {
        let far = clock() + Duration::from_secs(3600);
        let mut deadline = far;
        match &self.link {
            Link::Detecting {
                next_hello,
                give_up,
                ..
            } => {
                deadline = deadline.min(*next_hello).min(*give_up);
            }
            Link::Capabilities { give_up, .. } => deadline = deadline.min(*give_up),
            Link::Ready => {
                if let Some(t) = self.window.deadline() {
                    deadline = deadline.min(t);
                }
                if let Some(t) = self.progress_deadline() {
                    deadline = deadline.min(t);
                }
                // An overdue poll is blocked by the window; the next reply re-checks it.
                if !self.autoreport && self.next_poll > clock() {
                    deadline = deadline.min(self.next_poll);
                }
            }
            Link::Halted | Link::Closed => {}
        }
        deadline
    }

    async fn on_timer(&mut self) -> Result<(), BridgeError> {
        if self.link != Link::Ready {
            return self.on_handshake_timer().await;
        }
        let now = clock();
        self.report_progress_if_due(now);
        if self.reader.buffer().contains(&b'\n') {
            // A reply already arrived (this task ran late): read it before deciding that one
            // is overdue, or a late wake-up would draw a needless probe.
            return Ok(());
        }
        match self.window.on_tick(now) {
            None => {}
            Some(Timeout::QuickProbe(framed)) => {
                // Routine on a link that loses an `ok` now and then: counted, not an error.
                self.stats.quick_probes += 1;
                tracing::debug!("acknowledgement overdue; probing with {framed}");
                self.write_line(&framed).await?;
            }
            Some(Timeout::Probe(cmd)) => {
                self.stats.timeouts += 1;
                self.emit(Event::Error {
                    class: ErrorClass::Recoverable,
                    message: "reply timeout; provoking a reply with M105".into(),
                });
                self.write_line(cmd).await?;
            }
            Some(Timeout::GiveUp { timeouts }) => {
                self.stats.timeouts += 1;
                let reason = format!("printer silent: {timeouts} reply timeouts in a row");
                self.emit(Event::Error {
                    class: ErrorClass::Fatal,
                    message: reason.clone(),
                });
                self.fail_job(&reason);
            }
        }
        Ok(())
    }

    async fn on_line(&mut self, raw: &str) -> Result<(), BridgeError> {
        let text = raw.trim_end();
        tracing::trace!("<< {text}");
        let now = clock();
        let reply = parse_reply(text);
        let keepalive = matches!(
            reply,
            Reply::Ok { .. } | Reply::Busy(_) | Reply::Wait | Reply::Resend(_)
        );
        self.window.on_received(keepalive, now);
        match reply {
            Reply::Ok {
                line,
                planner_free,
                buffer_free,
                temperatures,
            } => {
                let with_temperatures = temperatures.is_some();
                if let Some(t) = temperatures {
                    self.on_temperatures(t);
                }
                if let (Some(_), Some(b)) = (planner_free, buffer_free) {
                    // B counts slots free besides the command just acknowledged.
                    self.window.on_buffer_free(b as usize);
                }
                if self.link == Link::Ready {
                    self.window.on_ok(line, with_temperatures, clock());
                } else {
                    self.on_handshake_ok().await?;
                }
            }
            Reply::Wait => {
                if self.link == Link::Ready {
                    // The firmware's queue is empty: older lines' acknowledgements were lost.
                    self.window.on_wait(now);
                }
            }
            Reply::Busy(_) => self.window.on_busy(),
            Reply::Resend(n) => self.on_resend(n),
            Reply::Start => self.on_start(),
            Reply::Error { class, message, .. } => {
                self.emit(Event::Error {
                    class,
                    message: message.clone(),
                });
                if class == ErrorClass::Fatal {
                    self.fail_job(&format!("firmware error: {message}"));
                    // During the handshake its own timeouts decide: halted, `connect` would wait
                    // for a reset that may never come.
                    if !matches!(
                        self.link,
                        Link::Detecting { .. } | Link::Capabilities { .. }
                    ) {
                        self.halt();
                    }
                }
                // "No Line Number with checksum" (rule 10, `acts_as_ok`) awaits no resend: the
                // `ok` that follows it acknowledges the mangled line like any other.
            }
            Reply::Temperatures(t) => self.on_temperatures(t),
            Reply::Firmware(name) => self.on_firmware_name(name),
            Reply::Capability(name, on) => self.firmware.capabilities.push((name, on)),
            Reply::HostAction(action) => self.on_host_action(action),
            Reply::Other(text) => {
                if !text.is_empty() {
                    tracing::debug!("printer: {text}");
                }
            }
        }
        Ok(())
    }

    /// A resend request: the window decides; a request it cannot serve fails the job.
    fn on_resend(&mut self, n: u64) {
        if self.link != Link::Ready {
            return;
        }
        match self.window.on_resend(n, clock()) {
            Resend::Rewound => self.stats.resends += 1,
            Resend::Duplicate => self.stats.duplicate_resends += 1,
            Resend::NothingToRepeat => {}
            Resend::Forgotten { line, oldest } => {
                let reason = format!(
                    "printer asked to resend line {line}, which is no longer in the history (oldest {})",
                    oldest.map_or("none".to_string(), |o| o.to_string())
                );
                self.fail_job(&reason);
            }
            Resend::TooOften { line, limit } => {
                let reason =
                    format!("line {line} resent {limit} times in a row; the link is too noisy");
                self.fail_job(&reason);
            }
        }
    }
}
