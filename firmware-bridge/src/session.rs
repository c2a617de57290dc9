//! The connection task: owns the byte stream, runs the handshake, streams the job file and
//! reports events. One task per printer; the [`PrinterHandle`] talks to it over a channel so
//! nothing else ever touches the port. Line numbering, the history, resends, the `ok` window
//! and the reply timer are decided by `crate::window`, which does no I/O; this task feeds it and
//! writes what it returns.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tokio::io::{
    AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, ReadHalf, WriteHalf,
};
use tokio::sync::{mpsc, oneshot};
use tokio::time::sleep_until;

use crate::config::BridgeConfig;
use crate::error::BridgeError;
use crate::events::{Event, FirmwareInfo, JobStats, Outcome, PrinterState, Progress};
use crate::gcode::{self, GcodeJob, GcodeReader, Item, Marker};
use crate::reply::{ErrorClass, HostAction, Reply, Temperatures, parse_reply};
use crate::window::{Backlog, LineWindow, Resend, STATUS_QUERY, Timeout};

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
        let now = Instant::now();
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
            self.window.send_outside_window(cmd, Instant::now());
            self.write_line(cmd).await?;
        }
        loop {
            if self.link != Link::Ready {
                return Ok(());
            }
            match self.window.poll_backlog(Instant::now()) {
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
                let Some(framed) = self.window.send_numbered(cmd, Instant::now()) else {
                    return Ok(());
                };
                self.control_queue.pop_front();
                self.write_line(&framed).await?;
                continue;
            }
            if self.poll_due() {
                if !self.window.send_unnumbered(STATUS_QUERY, Instant::now()) {
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
        let far = Instant::now() + Duration::from_secs(3600);
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
                if !self.autoreport && self.next_poll > Instant::now() {
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
        let now = Instant::now();
        self.report_progress_if_due(now);
        match self.window.on_tick(now) {
            None => {}
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
        let now = Instant::now();
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
                    self.window.on_ok(line, with_temperatures, Instant::now());
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
        match self.window.on_resend(n, Instant::now()) {
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

/// Requests queued from handles before senders wait.
const CONTROL_QUEUE: usize = 32;

type Ack = oneshot::Sender<Result<(), BridgeError>>;

/// A request from a handle to the connection task.
enum Control {
    Start(Box<GcodeJob>, Ack),
    Pause(Ack),
    Resume(Ack),
    Cancel(Ack),
    EmergencyStop(Ack),
    Command(String, Ack),
    Prompt(String, Ack),
    Disconnect(Ack),
}

/// Drives one connected printer. Cheap to clone; every clone talks to the same connection.
#[derive(Clone, Debug)]
pub struct PrinterHandle {
    tx: mpsc::Sender<Control>,
    firmware: FirmwareInfo,
}

impl PrinterHandle {
    /// What the firmware reported at connect.
    pub fn firmware(&self) -> &FirmwareInfo {
        &self.firmware
    }

    async fn ask(&self, make: impl FnOnce(Ack) -> Control) -> Result<(), BridgeError> {
        let (ack, rx) = oneshot::channel();
        self.tx
            .send(make(ack))
            .await
            .map_err(|_| BridgeError::Closed)?;
        rx.await.map_err(|_| BridgeError::Closed)?
    }

    /// Starts streaming a validated job. Fails unless the printer is operational and idle.
    pub async fn start(&self, job: GcodeJob) -> Result<(), BridgeError> {
        self.ask(|a| Control::Start(Box::new(job), a)).await
    }

    /// Pauses at the next safe point: lines already sent finish, then the pause G-code runs.
    pub async fn pause(&self) -> Result<(), BridgeError> {
        self.ask(Control::Pause).await
    }

    /// Resumes a paused job (resume G-code first).
    pub async fn resume(&self) -> Result<(), BridgeError> {
        self.ask(Control::Resume).await
    }

    /// Stops streaming; lines already sent finish, then the end G-code runs.
    pub async fn cancel(&self) -> Result<(), BridgeError> {
        self.ask(Control::Cancel).await
    }

    /// Sends M112 at once, ahead of anything queued; the job fails and the printer halts.
    pub async fn emergency_stop(&self) -> Result<(), BridgeError> {
        self.ask(Control::EmergencyStop).await
    }

    /// Sends one command (numbered, with resends) when no job is streaming, or while paused;
    /// e.g. `M876 S1` to answer a prompt.
    pub async fn command(&self, command: &str) -> Result<(), BridgeError> {
        let cmd = gcode::clean_line(command).unwrap_or_default().to_string();
        if let Some(reason) = gcode::unsendable(&cmd) {
            return Err(BridgeError::BadCommand(reason));
        }
        self.ask(|a| Control::Command(cmd, a)).await
    }

    /// Answers a printer prompt (`//action:prompt_*`) with button `choice` (`M876 S<choice>`).
    pub async fn answer_prompt(&self, choice: u32) -> Result<(), BridgeError> {
        let cmd = format!("M876 S{choice}");
        self.ask(|a| Control::Prompt(cmd, a)).await
    }

    /// Closes the connection (fails a running job).
    pub async fn disconnect(&self) -> Result<(), BridgeError> {
        self.ask(Control::Disconnect).await
    }
}

/// Connects over any byte stream: runs the handshake (M110, M115, autoreport) and returns the
/// handle and the event stream once the firmware answered.
pub async fn connect<S>(
    stream: S,
    config: BridgeConfig,
) -> Result<(PrinterHandle, mpsc::UnboundedReceiver<Event>), BridgeError>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (read, write) = tokio::io::split(stream);
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let (control_tx, control_rx) = mpsc::channel(CONTROL_QUEUE);
    let (ready_tx, ready_rx) = oneshot::channel();
    let session = Session::new(read, write, config, events_tx, ready_tx);
    tokio::spawn(session.run(control_rx));
    let firmware = ready_rx.await.map_err(|_| BridgeError::Closed)??;
    Ok((
        PrinterHandle {
            tx: control_tx,
            firmware,
        },
        events_rx,
    ))
}

impl<R, W> Session<R, W>
where
    R: AsyncRead,
    W: AsyncWrite,
{
    async fn on_control(&mut self, msg: Control) -> Result<(), BridgeError> {
        match msg {
            Control::Start(job, ack) => {
                let result = self.start_job(*job).await;
                let _ = ack.send(result);
            }
            Control::Pause(ack) => {
                let _ = ack.send(self.pause());
            }
            Control::Resume(ack) => {
                let _ = ack.send(self.resume());
            }
            Control::Cancel(ack) => {
                let _ = ack.send(self.cancel());
            }
            Control::EmergencyStop(ack) => {
                let result = self.emergency_stop().await;
                let _ = ack.send(result);
            }
            Control::Command(cmd, ack) => {
                let ok = self.link == Link::Ready
                    && self.job.as_ref().is_none_or(|j| j.phase == Phase::Paused);
                let result = if cmd.is_empty() {
                    Ok(())
                } else if ok {
                    self.control_queue.push_back(cmd);
                    Ok(())
                } else {
                    Err(self.invalid("send a command"))
                };
                let _ = ack.send(result);
            }
            Control::Prompt(cmd, ack) => {
                // A prompt usually comes while printing (e.g. filament runout): the answer goes
                // ahead of job lines.
                let result = if self.link == Link::Ready {
                    self.control_queue.push_front(cmd);
                    Ok(())
                } else {
                    Err(self.invalid("answer a prompt"))
                };
                let _ = ack.send(result);
            }
            Control::Disconnect(ack) => {
                self.fail_job("disconnected on request");
                self.link = Link::Closed;
                let _ = ack.send(Ok(()));
            }
        }
        Ok(())
    }

    /// The error for a request the current state does not allow.
    fn invalid(&self, action: &'static str) -> BridgeError {
        BridgeError::InvalidState {
            action,
            state: format!("{:?}", self.state).to_lowercase(),
        }
    }

    /// `//action:...` from the printer (e.g. filament runout): honoured like a handle request.
    fn on_host_action(&mut self, action: HostAction) {
        self.emit(Event::HostAction(action.clone()));
        let result = match action {
            HostAction::Pause => self.pause(),
            HostAction::Resume => self.resume(),
            HostAction::Cancel => self.cancel(),
            HostAction::Disconnect => {
                self.fail_job("printer asked to disconnect");
                self.link = Link::Closed;
                Ok(())
            }
            _ => Ok(()),
        };
        if let Err(e) = result {
            tracing::info!("printer action ignored: {e}");
        }
    }
}

/// Handshake progress.
#[derive(Debug, PartialEq)]
enum Link {
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
    fn detecting(now: Instant, cfg: &BridgeConfig) -> Self {
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
    async fn on_handshake_timer(&mut self) -> Result<(), BridgeError> {
        let now = Instant::now();
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
    async fn on_handshake_ok(&mut self) -> Result<(), BridgeError> {
        match self.link {
            // Not an answer to a greeting: nothing is known about the firmware's numbering yet.
            Link::Detecting { greeted: false, .. } => {}
            Link::Detecting { .. } => {
                // The handshake was answered; M110 N0 set the firmware's last line to 0.
                self.window.numbering_reset();
                self.link = Link::Capabilities {
                    give_up: Instant::now() + self.cfg.capability_timeout,
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
    fn on_firmware_name(&mut self, name: String) {
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
        let now = Instant::now();
        self.window.link_up(now);
        // One query at once: first temperatures, and its reply shows whether the firmware
        // puts them on the `ok` (needed to match a timeout probe's reply exactly).
        self.window.send_outside_window(STATUS_QUERY, now);
        self.write_line(STATUS_QUERY).await?;
        if self.cfg.autoreport_interval_s > 0 && self.firmware.has("AUTOREPORT_TEMP") {
            self.autoreport = true;
            let cmd = format!("M155 S{}", self.cfg.autoreport_interval_s);
            self.window.send_outside_window(&cmd, Instant::now());
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
        self.link = Link::detecting(Instant::now(), &self.cfg);
        self.set_state(PrinterState::Connecting);
    }

    /// `start`: the board booted or reset.
    fn on_start(&mut self) {
        match self.link {
            Link::Detecting { give_up, .. } => {
                // Booted: greet at once (an earlier greeting was lost with the reset).
                self.link = Link::Detecting {
                    next_hello: Instant::now(),
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
    fn halt(&mut self) {
        self.control_queue.clear();
        self.window.halt();
        self.link = Link::Halted;
        self.set_state(PrinterState::Halted);
    }
}

#[derive(Debug, PartialEq, Clone, Copy)]
enum Phase {
    Streaming,
    Pausing,
    Paused,
    Cancelling,
}

struct ActiveJob {
    job: GcodeJob,
    reader: GcodeReader<tokio::fs::File>,
    eof: bool,
    phase: Phase,
    /// Park/end G-code of the current phase change has been queued.
    epilogue_queued: bool,
    started: Instant,
    lines_sent: u64,
    layer: u32,
    layer_total: Option<u32>,
    layer_pending: bool,
    layer_z: Option<f32>,
    m73_remaining: Option<(Duration, Instant)>,
    last_progress: Instant,
    /// A job line read but not yet sent for lack of room.
    held: Option<String>,
    /// Progress changed since the last report.
    progress_due: bool,
    /// Report progress after the next line regardless of the interval (M73 seen).
    progress_now: bool,
}

impl<R, W> Session<R, W>
where
    R: AsyncRead,
    W: AsyncWrite,
{
    async fn start_job(&mut self, job: GcodeJob) -> Result<(), BridgeError> {
        if self.link != Link::Ready || self.job.is_some() {
            return Err(self.invalid("start a job"));
        }
        let reader = job.reader().await?;
        let layer_total = (job.summary().layers > 0).then_some(job.summary().layers);
        let now = Instant::now();
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
    async fn pump_job(&mut self) -> Result<bool, BridgeError> {
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
                let Some(framed) = self.window.send_numbered(&cmd, Instant::now()) else {
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
                        job.m73_remaining = Some((remaining, Instant::now()));
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
    fn fail_job(&mut self, reason: &str) {
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

    fn pause(&mut self) -> Result<(), BridgeError> {
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

    fn resume(&mut self) -> Result<(), BridgeError> {
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

    fn cancel(&mut self) -> Result<(), BridgeError> {
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

    async fn emergency_stop(&mut self) -> Result<(), BridgeError> {
        // M112 bypasses numbering and the window: with EMERGENCY_PARSER it jumps the queue.
        self.write_line("M112").await?;
        self.fail_job("emergency stop (M112) requested");
        self.halt();
        Ok(())
    }
}

impl<R, W> Session<R, W>
where
    R: AsyncRead,
    W: AsyncWrite,
{
    fn on_temperatures(&mut self, t: Temperatures) {
        self.heating = t.heating(3.0);
        self.emit(Event::Temperatures(t));
    }

    /// A temperature poll is due (the firmware cannot autoreport).
    fn poll_due(&self) -> bool {
        !self.autoreport && Instant::now() >= self.next_poll
    }

    fn schedule_poll(&mut self) {
        let every = if self.heating {
            self.cfg.temperature_poll_heating
        } else {
            self.cfg.temperature_poll
        };
        self.next_poll = Instant::now() + every;
    }

    /// When a held-back progress report falls due.
    fn progress_deadline(&self) -> Option<Instant> {
        let job = self.job.as_ref().filter(|j| j.progress_due)?;
        Some(job.last_progress + self.cfg.progress_interval)
    }

    /// Sends a held-back progress report once the interval is over.
    fn report_progress_if_due(&mut self, now: Instant) {
        if self.progress_deadline().is_some_and(|t| now >= t) {
            self.emit_progress(true);
        }
    }

    /// Reports progress, at most once per interval unless `force`d.
    fn emit_progress(&mut self, force: bool) {
        let Some(job) = self.job.as_mut() else {
            return;
        };
        let now = Instant::now();
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
    fn emit_final_progress(&self, job: &ActiveJob) {
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
