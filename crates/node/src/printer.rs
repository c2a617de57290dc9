//! One task per printer: owns its serial link (reconnecting when it is lost), queues the
//! assignments the router gives it, and runs each one: download, slice, stream through the
//! firmware bridge, forward progress, obey pause/cancel/fence, record the result on disk
//! before reporting it. The router connection is not needed for any of this: a running
//! print never depends on the router being there.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fabrouter_api::v1 as pb;
use firmware_bridge::serial::{DtrPolicy, open_serial};
use firmware_bridge::{
    BridgeConfig, ErrorClass, Event, GcodeJob, Outcome, PrinterHandle, Temperatures, connect,
};
use tokio::sync::mpsc;

use crate::config::PrinterConfig;
use crate::ctx::Ctx;
use crate::download::download_design;
use crate::held::{HeldJob, HeldStatus};
use crate::options::{JobInput, slicer_options};

/// Wait between attempts to reach an offline printer.
const RECONNECT_PRINTER: Duration = Duration::from_secs(2);
/// Least time between two progress reports (layer changes always go out).
const PROGRESS_EVERY: Duration = Duration::from_millis(500);
/// How long a cancelled print may take to run its end G-code at shutdown.
const SHUTDOWN_CANCEL: Duration = Duration::from_secs(5);

/// What the agent tells a printer task.
#[derive(Debug, Clone)]
pub enum PrinterCmd {
    /// A new assignment for this printer.
    Assign(pb::JobAssignment),
    /// The router cancelled a job.
    Cancel { job: String, epoch: u64 },
    /// Pause a job.
    Pause { job: String, epoch: u64 },
    /// Resume a job.
    Resume { job: String, epoch: u64 },
    /// The job was moved away: stop it at once.
    Fenced { job: String, epoch: u64 },
    /// The agent is stopping.
    Shutdown,
}

impl PrinterCmd {
    fn targets(&self, job: &str, epoch: u64) -> bool {
        match self {
            PrinterCmd::Cancel { job: j, epoch: e }
            | PrinterCmd::Fenced { job: j, epoch: e }
            | PrinterCmd::Pause { job: j, epoch: e }
            | PrinterCmd::Resume { job: j, epoch: e } => j == job && *e == epoch,
            _ => false,
        }
    }
}

struct Link {
    handle: PrinterHandle,
    events: mpsc::UnboundedReceiver<Event>,
}

/// How a job ended, for the router.
struct Ending {
    success: bool,
    reason: String,
    printer_fault: bool,
}

impl Ending {
    fn fault(reason: impl Into<String>) -> Self {
        Ending {
            success: false,
            reason: reason.into(),
            printer_fault: true,
        }
    }
}

/// What interrupted a job's own flow.
enum Stop {
    /// Cancelled or fenced by the router: no result is owed.
    Dropped,
    /// The agent is shutting down.
    Shutdown,
}

/// The task of one printer.
pub struct PrinterTask {
    cfg: PrinterConfig,
    ctx: Arc<Ctx>,
    rx: mpsc::UnboundedReceiver<PrinterCmd>,
    queue: VecDeque<pb::JobAssignment>,
    link: Option<Link>,
    state: pb::PrinterState,
    message: String,
    temps: Temperatures,
}

fn sensor(t: &Temperatures, names: &[&str]) -> (f64, f64) {
    names
        .iter()
        .find_map(|n| t.get(n))
        .map(|s| (f64::from(s.actual), f64::from(s.target.unwrap_or(0.0))))
        .unwrap_or_default()
}

impl PrinterTask {
    /// A task for `cfg`, driven by `rx`.
    pub fn new(cfg: PrinterConfig, ctx: Arc<Ctx>, rx: mpsc::UnboundedReceiver<PrinterCmd>) -> Self {
        Self {
            cfg,
            ctx,
            rx,
            queue: VecDeque::new(),
            link: None,
            state: pb::PrinterState::Offline,
            message: "not connected yet".into(),
            temps: Temperatures::default(),
        }
    }

    fn send(&self, msg: pb::node_message::Msg) {
        let _ = self.ctx.to_core.send(msg);
    }

    fn set_state(&mut self, state: pb::PrinterState, message: &str) {
        if self.state == state && self.message == message {
            return;
        }
        self.state = state;
        self.message = message.to_string();
        self.report_status();
    }

    fn report_status(&self) {
        let (hotend_c, hotend_target_c) = sensor(&self.temps, &["T", "T0"]);
        let (bed_c, bed_target_c) = sensor(&self.temps, &["B"]);
        self.send(pb::node_message::Msg::PrinterStatus(pb::PrinterStatus {
            printer_id: self.cfg.id.clone(),
            state: self.state as i32,
            hotend_c,
            hotend_target_c,
            bed_c,
            bed_target_c,
            message: self.message.clone(),
        }));
    }

    fn held_set(&self, job: &str, status: HeldStatus) {
        let mut held = self.ctx.lock_held();
        if let Err(e) = held.set_status(job, status) {
            tracing::error!(job, error = %e, "cannot record the job's state on disk");
        }
    }

    fn held_remove(&self, job: &str) {
        if let Err(e) = self.ctx.lock_held().remove(job) {
            tracing::error!(job, error = %e, "cannot remove the job's record");
        }
    }

    async fn connect(&self) -> Result<Link, String> {
        let port = open_serial(&self.cfg.port, self.cfg.baud, DtrPolicy::Assert)
            .await
            .map_err(|e| e.to_string())?;
        let config = BridgeConfig {
            detect_timeout: self.cfg.detect_timeout,
            ..BridgeConfig::default()
        };
        let (handle, events) = connect(port, config).await.map_err(|e| e.to_string())?;
        Ok(Link { handle, events })
    }

    /// Runs until the agent stops.
    pub async fn run(mut self) {
        let mut next_try = Instant::now();
        loop {
            if self.link.is_none() && Instant::now() >= next_try {
                match self.connect().await {
                    Ok(link) => {
                        tracing::info!(printer = %self.cfg.id, port = %self.cfg.port, "printer connected");
                        self.link = Some(link);
                        self.set_state(pb::PrinterState::Idle, "");
                    }
                    Err(e) => {
                        tracing::warn!(printer = %self.cfg.id, error = %e, "printer not reachable");
                        next_try = Instant::now() + RECONNECT_PRINTER;
                        self.set_state(pb::PrinterState::Offline, &e);
                    }
                }
            }
            if self.link.is_some()
                && let Some(a) = self.queue.pop_front()
            {
                if let Err(Stop::Shutdown) = self.run_job(a).await {
                    return;
                }
                continue;
            }
            let wait = next_try.saturating_duration_since(Instant::now());
            tokio::select! {
                cmd = self.rx.recv() => match cmd {
                    None | Some(PrinterCmd::Shutdown) => return,
                    Some(cmd) => self.between_jobs(cmd),
                },
                ev = next_event(&mut self.link) => self.idle_event(ev),
                _ = tokio::time::sleep(wait.max(Duration::from_millis(50))), if self.link.is_none() => {}
            }
        }
    }

    /// Commands while no job of this printer is running.
    fn between_jobs(&mut self, cmd: PrinterCmd) {
        match cmd {
            PrinterCmd::Assign(a) => self.accept(a),
            PrinterCmd::Cancel { job, epoch } | PrinterCmd::Fenced { job, epoch } => {
                let before = self.queue.len();
                self.queue.retain(|a| !(a.job == job && a.epoch == epoch));
                if self.queue.len() != before {
                    self.held_remove(&job);
                }
            }
            PrinterCmd::Pause { .. } | PrinterCmd::Resume { .. } | PrinterCmd::Shutdown => {}
        }
    }

    fn accept(&mut self, a: pb::JobAssignment) {
        let decline = |this: &Self, reason: String| {
            tracing::warn!(printer = %this.cfg.id, job = %a.job, %reason, "assignment declined");
            this.send(pb::node_message::Msg::Ack(pb::AssignmentAck {
                job: a.job.clone(),
                epoch: a.epoch,
                accepted: false,
                reason,
            }));
        };
        if self.link.is_none() {
            let reason = format!("printer {} is offline: {}", self.cfg.id, self.message);
            decline(self, reason);
            return;
        }
        let record = HeldJob {
            job: a.job.clone(),
            epoch: a.epoch,
            printer_id: self.cfg.id.clone(),
            design: a.design.clone(),
            status: HeldStatus::Queued,
        };
        if let Err(e) = self.ctx.lock_held().put(record) {
            decline(self, format!("the node cannot record the job: {e}"));
            return;
        }
        self.send(pb::node_message::Msg::Ack(pb::AssignmentAck {
            job: a.job.clone(),
            epoch: a.epoch,
            accepted: true,
            reason: String::new(),
        }));
        self.queue.push_back(a);
    }

    fn idle_event(&mut self, ev: Option<Event>) {
        match ev {
            None => self.lost_link("the serial connection closed"),
            Some(Event::Temperatures(t)) => self.temps = t,
            Some(Event::State { state }) => {
                use firmware_bridge::PrinterState as S;
                if matches!(state, S::Halted | S::Disconnected) {
                    self.lost_link(&format!("printer {state:?}"));
                }
            }
            Some(_) => {}
        }
    }

    fn lost_link(&mut self, why: &str) {
        self.link = None;
        self.set_state(pb::PrinterState::Offline, why);
    }

    fn progress(&self, a: &pb::JobAssignment, p: &JobView, phase: &str) {
        let (hotend_c, _) = sensor(&self.temps, &["T", "T0"]);
        let (bed_c, _) = sensor(&self.temps, &["B"]);
        self.send(pb::node_message::Msg::Progress(pb::JobProgress {
            job: a.job.clone(),
            epoch: a.epoch,
            fraction: p.fraction(),
            lines_sent: p.lines_sent,
            lines_total: p.lines_total,
            layer: p.layer,
            layers_total: p.layers_total,
            remaining_s: p.remaining_s,
            hotend_c,
            bed_c,
            phase: phase.into(),
        }));
    }

    fn finish(&self, a: &pb::JobAssignment, end: Ending) {
        tracing::info!(job = %a.job, success = end.success, reason = %end.reason, "job finished");
        self.held_set(
            &a.job,
            HeldStatus::Finished {
                success: end.success,
                reason: end.reason.clone(),
                printer_fault: end.printer_fault,
            },
        );
        self.send(pb::node_message::Msg::Result(pb::JobResult {
            job: a.job.clone(),
            epoch: a.epoch,
            success: end.success,
            reason: end.reason,
            printer_fault: end.printer_fault,
        }));
    }

    /// Download and slice: the G-code to stream and whether this node sliced it, or why not.
    async fn prepare(
        ctx: Arc<Ctx>,
        cfg: PrinterConfig,
        a: pb::JobAssignment,
    ) -> Result<(PathBuf, bool), Ending> {
        let gcode = a.format == pb::DesignFormat::Gcode as i32;
        let (file, sha) = download_design(
            ctx.channel.clone(),
            &ctx.bearer,
            &a.design,
            &a.design_sha256,
            if gcode { "gcode" } else { "stl" },
            &ctx.designs_dir,
        )
        .await
        .map_err(|e| Ending::fault(format!("the node could not fetch the design: {e}")))?;
        if gcode {
            return check_gcode(&file, &cfg).await.map(|()| (file, false));
        }
        let config = cfg
            .slicer_config
            .clone()
            .unwrap_or_else(|| ctx.default_slicer_config.clone());
        let options = match slicer_options(&cfg, JobInput::from(&a)) {
            Ok(o) => o,
            // Another printer may be able to (a printer fault moves the job on).
            Err(e) => return Err(Ending::fault(e.to_string())),
        };
        if let Some(kind) = &options.untuned_material {
            tracing::warn!(printer = %cfg.id, material = %kind, "no typical temperatures known for this material: set hotend_c and bed_c for it in the node's TOML");
        }
        match ctx.slicer.slice(&file, &sha, &config, &options.args).await {
            Ok(s) => {
                tracing::info!(job = %a.job, origin = ?s.origin, gcode = %s.path.display(), "sliced");
                Ok((s.path, true))
            }
            // The node's trouble moves the job on as a printer fault does; only a model the
            // slicer refuses fails the job.
            Err(e) => Err(Ending {
                success: false,
                printer_fault: e.is_node_fault(),
                reason: e.to_string(),
            }),
        }
    }

    /// Runs one assignment to its end. `Err` when it was dropped or the agent stops.
    async fn run_job(&mut self, a: pb::JobAssignment) -> Result<(), Stop> {
        tracing::info!(printer = %self.cfg.id, job = %a.job, epoch = a.epoch, "job starting");
        self.held_set(&a.job, HeldStatus::Preparing);
        let mut view = JobView::default();
        // The first progress ("slicing") makes the job PREPARING on the router; "printing"
        // progress from the bridge makes it PRINTING.
        self.progress(&a, &view, "slicing");
        let mut paused = false;
        let prep = Self::prepare(Arc::clone(&self.ctx), self.cfg.clone(), a.clone());
        tokio::pin!(prep);
        let gcode = loop {
            tokio::select! {
                r = &mut prep => break r,
                cmd = self.rx.recv() => match cmd {
                    None | Some(PrinterCmd::Shutdown) => {
                        self.finish(&a, Ending::fault("fab-node was stopped while preparing the job"));
                        return Err(Stop::Shutdown);
                    }
                    Some(c) if c.targets(&a.job, a.epoch) => match c {
                        PrinterCmd::Pause { .. } => paused = true,
                        PrinterCmd::Resume { .. } => paused = false,
                        _ => {
                            self.held_remove(&a.job);
                            return Err(Stop::Dropped);
                        }
                    },
                    Some(c) => self.between_jobs(c),
                },
            }
        };
        let (gcode, sliced_here) = match gcode {
            Ok(g) => g,
            Err(end) => {
                self.finish(&a, end);
                return Ok(());
            }
        };
        let job = match GcodeJob::open(&gcode).await {
            Ok(j) => j,
            // This node's own slicer output (verified against what the slicer wrote) is the
            // node's problem, not the customer's; uploaded G-code is the customer's.
            Err(e) if sliced_here => {
                self.finish(
                    &a,
                    Ending::fault(format!(
                        "the G-code sliced on this node cannot be printed: {e}"
                    )),
                );
                return Ok(());
            }
            Err(e) => {
                self.finish(
                    &a,
                    Ending {
                        success: false,
                        reason: format!("the G-code cannot be printed: {e}"),
                        printer_fault: false,
                    },
                );
                return Ok(());
            }
        };
        view.lines_total = job.summary().commands;
        view.layers_total = job.summary().layers;
        let Some(link) = self.link.as_ref() else {
            self.finish(
                &a,
                Ending::fault("the printer went offline before printing"),
            );
            return Ok(());
        };
        let handle = link.handle.clone();
        if let Err(e) = handle.start(job).await {
            self.finish(
                &a,
                Ending::fault(format!("the printer refused the job: {e}")),
            );
            self.lost_link(&e.to_string());
            return Ok(());
        }
        self.held_set(&a.job, HeldStatus::Printing);
        self.set_state(pb::PrinterState::Printing, "");
        if paused && handle.pause().await.is_ok() {
            self.set_state(pb::PrinterState::Paused, "paused by the router");
        }
        let mut dropped = false;
        let mut last_error = String::new();
        let mut last_sent = Instant::now();
        loop {
            tokio::select! {
                ev = next_event(&mut self.link) => {
                    let Some(ev) = ev else {
                        let why = if last_error.is_empty() { "the serial connection to the printer was lost".to_string() } else { last_error.clone() };
                        self.lost_link(&why);
                        if !dropped {
                            self.finish(&a, Ending::fault(why));
                        }
                        break;
                    };
                    match ev {
                        Event::Progress(p) => {
                            view.lines_sent = p.lines_sent;
                            if let Some(t) = p.lines_total { view.lines_total = t; }
                            view.remaining_s = p.remaining_s.unwrap_or(0.0);
                            if last_sent.elapsed() >= PROGRESS_EVERY {
                                last_sent = Instant::now();
                                self.progress(&a, &view, if self.state == pb::PrinterState::Paused { "paused" } else { view.phase() });
                            }
                        }
                        Event::Layer { number, total, .. } => {
                            view.layer = number;
                            if let Some(t) = total { view.layers_total = t; }
                            last_sent = Instant::now();
                            self.progress(&a, &view, view.phase());
                        }
                        Event::Temperatures(t) => {
                            view.heating = t.heating(5.0);
                            self.temps = t;
                        }
                        Event::Error { class, message } => {
                            if class == ErrorClass::Fatal {
                                last_error = message;
                            }
                        }
                        Event::State { state } => {
                            use firmware_bridge::PrinterState as S;
                            match state {
                                S::Paused => self.set_state(pb::PrinterState::Paused, ""),
                                S::Printing => self.set_state(pb::PrinterState::Printing, ""),
                                _ => {}
                            }
                        }
                        Event::Finished { outcome, reason, stats } => {
                            let reason = reason.unwrap_or_default();
                            tracing::info!(job = %a.job, ?outcome, lines = stats.lines, resends = stats.resends, elapsed_s = stats.elapsed_s, "print ended");
                            if dropped {
                                self.held_remove(&a.job);
                            } else {
                                match outcome {
                                    Outcome::Completed => {
                                        view.lines_sent = view.lines_total;
                                        view.remaining_s = 0.0;
                                        self.progress(&a, &view, "done");
                                        self.finish(&a, Ending { success: true, reason: String::new(), printer_fault: false });
                                    }
                                    Outcome::Cancelled => self.finish(&a, Ending::fault(format!("the print was cancelled at the printer: {reason}"))),
                                    Outcome::Failed => {
                                        let why = if reason.is_empty() { last_error.clone() } else { reason };
                                        self.finish(&a, Ending::fault(format!("the printer failed: {why}")));
                                    }
                                }
                            }
                            if outcome == Outcome::Failed {
                                // A failed printer is checked afresh before it gets work again.
                                if let Some(l) = self.link.take() {
                                    let _ = l.handle.disconnect().await;
                                }
                                self.set_state(pb::PrinterState::Offline, "the last print failed; reconnecting");
                            } else {
                                self.set_state(pb::PrinterState::Idle, "");
                            }
                            break;
                        }
                        Event::Firmware(_) | Event::HostAction(_) => {}
                    }
                }
                cmd = self.rx.recv() => match cmd {
                    None | Some(PrinterCmd::Shutdown) => {
                        let _ = handle.cancel().await;
                        // Heaters off before the agent goes; bounded so a dead printer cannot hold the stop.
                        let end = tokio::time::timeout(SHUTDOWN_CANCEL, async {
                            while let Some(ev) = next_event(&mut self.link).await {
                                if matches!(ev, Event::Finished { .. }) { break; }
                            }
                        }).await;
                        if end.is_err() {
                            tracing::warn!(job = %a.job, "the printer did not confirm the cancel");
                        }
                        self.finish(&a, Ending::fault("interrupted: fab-node was stopped mid-print"));
                        return Err(Stop::Shutdown);
                    }
                    Some(c) if c.targets(&a.job, a.epoch) => match c {
                        PrinterCmd::Pause { .. } => {
                            if let Err(e) = handle.pause().await { tracing::warn!(job = %a.job, error = %e, "pause"); }
                        }
                        PrinterCmd::Resume { .. } => {
                            if let Err(e) = handle.resume().await { tracing::warn!(job = %a.job, error = %e, "resume"); }
                        }
                        _ => {
                            tracing::info!(job = %a.job, "stopping the print: cancelled or moved by the router");
                            dropped = true;
                            if let Err(e) = handle.cancel().await {
                                tracing::warn!(job = %a.job, error = %e, "cancel");
                            }
                        }
                    },
                    Some(c) => self.between_jobs(c),
                },
            }
        }
        if dropped {
            self.held_remove(&a.job);
            return Err(Stop::Dropped);
        }
        Ok(())
    }
}

/// Checks pre-sliced G-code against this printer (bed, height, temperatures, flavour, nozzle)
/// before a line of it is sent. A mismatch fails the job with the reason and blames this
/// printer, so the router can offer it to one that suits it.
async fn check_gcode(file: &Path, cfg: &PrinterConfig) -> Result<(), Ending> {
    let path = file.to_path_buf();
    let summary = tokio::task::spawn_blocking(move || -> Result<_, String> {
        let bytes = std::fs::read(&path).map_err(|e| e.to_string())?;
        let limits = fabrouter_gcode::Limits::default();
        fabrouter_gcode::scan(&bytes, limits).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| Ending::fault(format!("checking the G-code: {e}")))?
    .map_err(|e| Ending {
        success: false,
        printer_fault: false,
        reason: format!("the G-code is not usable: {e}"),
    })?;
    let limits = fabrouter_gcode::PrinterLimits {
        build_volume_mm: cfg.build_volume_mm,
        nozzle_diameters_mm: vec![cfg.nozzle_mm],
        flavor: cfg.firmware_flavor.clone(),
        max_hotend_c: cfg.max_hotend_c,
        max_bed_c: cfg.max_bed_c,
    };
    let problems = fabrouter_gcode::check(&summary, &limits);
    if problems.is_empty() {
        return Ok(());
    }
    let why: Vec<String> = problems.into_iter().map(|m| m.message).collect();
    Err(Ending::fault(format!(
        "the pre-sliced G-code does not suit printer {}: {}",
        cfg.id,
        why.join("; ")
    )))
}

/// Waits for the link's next event; pends forever without a link.
async fn next_event(link: &mut Option<Link>) -> Option<Event> {
    match link {
        Some(l) => l.events.recv().await,
        None => std::future::pending().await,
    }
}

/// What the node knows about a running job.
#[derive(Debug, Default)]
struct JobView {
    lines_sent: u64,
    lines_total: u64,
    layer: u32,
    layers_total: u32,
    remaining_s: f64,
    heating: bool,
}

impl JobView {
    fn fraction(&self) -> f64 {
        if self.lines_total == 0 {
            0.0
        } else {
            (self.lines_sent as f64 / self.lines_total as f64).clamp(0.0, 1.0)
        }
    }

    fn phase(&self) -> &'static str {
        if self.heating { "heating" } else { "printing" }
    }
}
