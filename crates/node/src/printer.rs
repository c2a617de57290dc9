//! One task per printer: owns its printer's driver (reconnecting with backoff when the link is
//! lost), queues the assignments the router gives it, and runs each one: download, slice,
//! hand to the driver, forward progress, obey pause/cancel/fence, record the result on disk
//! before reporting it. The router connection is not needed for any of this: a running print
//! never depends on the router being there. Where the printer's host prints on its own
//! (OctoPrint, ...), a print also survives the node losing the host for a while
//! (`offline_grace_s`) and the node restarting: the task re-attaches to it by its file name.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fabrouter_api::v1 as pb;
use firmware_bridge::GcodeJob;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::config::PrinterConfig;
use crate::ctx::Ctx;
use crate::download::download_design;
use crate::driver::{
    Attach, Backoff, Driver, DriverError, DriverEvent, Events, HostState, JobEnd, PrintFile,
    ProgressUpdate, Temps, host_file_name,
};
use crate::held::{HeldJob, HeldStatus};
use crate::options::{JobInput, slicer_options};

/// First wait before reaching an offline printer again (doubled up to [`RECONNECT_MAX`]).
const RECONNECT_MIN: Duration = Duration::from_millis(500);
/// Longest wait between attempts to reach an offline printer.
const RECONNECT_MAX: Duration = Duration::from_secs(5);
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
    driver: Option<Driver>,
    /// The driver's events while it is connected.
    events: Option<Events>,
    backoff: Backoff,
    state: pb::PrinterState,
    message: String,
    temps: Temps,
}

impl PrinterTask {
    /// A task for `cfg`, driven by `rx`.
    pub fn new(cfg: PrinterConfig, ctx: Arc<Ctx>, rx: mpsc::UnboundedReceiver<PrinterCmd>) -> Self {
        let (driver, message) = match Driver::new(&cfg.id, &cfg.driver) {
            Ok(d) => (Some(d), "not connected yet".to_string()),
            Err(e) => (None, e.to_string()),
        };
        Self {
            cfg,
            ctx,
            rx,
            queue: VecDeque::new(),
            driver,
            events: None,
            backoff: Backoff::new(RECONNECT_MIN, RECONNECT_MAX),
            state: pb::PrinterState::Offline,
            message,
            temps: Temps::default(),
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
        self.send(pb::node_message::Msg::PrinterStatus(pb::PrinterStatus {
            printer_id: self.cfg.id.clone(),
            state: self.state as i32,
            hotend_c: self.temps.hotend.0,
            hotend_target_c: self.temps.hotend.1,
            bed_c: self.temps.bed.0,
            bed_target_c: self.temps.bed.1,
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

    fn host_keeps_printing(&self) -> bool {
        self.driver
            .as_ref()
            .is_some_and(Driver::host_keeps_printing)
    }

    /// One attempt to reach the printer; on failure the printer is offline with the reason.
    async fn try_connect(&mut self) -> Result<(), DriverError> {
        let Some(driver) = self.driver.as_mut() else {
            return Err(DriverError::Fault(self.message.clone()));
        };
        match driver.connect().await {
            Ok(events) => {
                tracing::info!(printer = %self.cfg.id, driver = self.cfg.driver.name(), at = %self.cfg.driver.address(), "printer connected");
                self.events = Some(events);
                self.backoff.reset();
                Ok(())
            }
            Err(e) => {
                tracing::warn!(printer = %self.cfg.id, error = %e, "printer not reachable");
                self.set_state(pb::PrinterState::Offline, &e.to_string());
                Err(e)
            }
        }
    }

    /// The print this node held across its restart on a host that runs it on its own.
    fn held_on_host(&self) -> Option<(pb::JobAssignment, String)> {
        let held = self.ctx.lock_held();
        held.all().find_map(|h| match &h.status {
            HeldStatus::Printing {
                host_file: Some(file),
            } if h.printer_id == self.cfg.id => Some((
                pb::JobAssignment {
                    job: h.job.clone(),
                    epoch: h.epoch,
                    printer_id: h.printer_id.clone(),
                    design: h.design.clone(),
                    ..Default::default()
                },
                file.clone(),
            )),
            _ => None,
        })
    }

    /// Runs until the agent stops.
    pub async fn run(mut self) {
        if let Some((a, file)) = self.held_on_host() {
            tracing::info!(printer = %self.cfg.id, job = %a.job, %file, "re-attaching to the print the node held across its restart");
            if let Err(Stop::Shutdown) = self.follow(&a, JobView::default(), &file, true).await {
                return;
            }
        }
        let mut next_try = Instant::now();
        loop {
            if self.events.is_none() && Instant::now() >= next_try {
                match self.try_connect().await {
                    Ok(()) => self.set_state(pb::PrinterState::Idle, ""),
                    Err(_) => next_try = Instant::now() + self.backoff.next_delay(),
                }
            }
            if self.events.is_some()
                && let Some(a) = self.queue.pop_front()
            {
                if let Err(Stop::Shutdown) = self.run_job(a).await {
                    return;
                }
                continue;
            }
            tokio::select! {
                cmd = self.rx.recv() => match cmd {
                    None | Some(PrinterCmd::Shutdown) => return,
                    Some(cmd) => self.between_jobs(cmd),
                },
                ev = next_event(&mut self.events) => self.idle_event(ev),
                _ = tokio::time::sleep_until(next_try.max(Instant::now() + Duration::from_millis(50))), if self.events.is_none() => {}
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
        if self.events.is_none() {
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

    fn idle_event(&mut self, ev: Option<DriverEvent>) {
        match ev {
            None => self.lost_link("the connection to the printer closed"),
            Some(DriverEvent::Lost(why)) => self.lost_link(&why),
            Some(DriverEvent::Temperatures(t)) => self.temps = t,
            // A host can be busy or in error without this node's job (someone at the printer).
            Some(DriverEvent::State(s)) => match s {
                HostState::Idle => self.set_state(pb::PrinterState::Idle, ""),
                HostState::Printing => self.set_state(
                    pb::PrinterState::Printing,
                    "printing a job started at the host",
                ),
                HostState::Paused => self.set_state(
                    pb::PrinterState::Paused,
                    "a job started at the host is paused",
                ),
                HostState::Error(e) => self.set_state(pb::PrinterState::Maintenance, &e),
            },
            Some(DriverEvent::Progress(_) | DriverEvent::Finished(_)) => {}
        }
    }

    fn lost_link(&mut self, why: &str) {
        self.events = None;
        self.set_state(pb::PrinterState::Offline, why);
    }

    fn progress(&self, a: &pb::JobAssignment, p: &JobView, phase: &str) {
        self.send(pb::node_message::Msg::Progress(pb::JobProgress {
            job: a.job.clone(),
            epoch: a.epoch,
            fraction: p.fraction(),
            lines_sent: p.lines_sent,
            lines_total: p.lines_total,
            layer: p.layer,
            layers_total: p.layers_total,
            remaining_s: p.remaining_s,
            hotend_c: self.temps.hotend.0,
            bed_c: self.temps.bed.0,
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
        // progress from the driver makes it PRINTING.
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
        let host_name = host_file_name(&a.job, a.epoch);
        let (Some(driver), true) = (self.driver.as_mut(), self.events.is_some()) else {
            self.finish(
                &a,
                Ending::fault("the printer went offline before printing"),
            );
            return Ok(());
        };
        let file = PrintFile {
            path: gcode,
            host_name: host_name.clone(),
            job,
        };
        let started = driver.start(file).await;
        if let Err(e) = started {
            match e {
                // The job's own trouble: it fails with the host's reason, the printer is fine.
                DriverError::Refused(reason) => {
                    self.finish(
                        &a,
                        Ending {
                            success: false,
                            reason,
                            printer_fault: false,
                        },
                    );
                }
                e => {
                    self.finish(&a, Ending::fault(e.to_string()));
                    // Checked afresh before it gets work again.
                    if let Some(d) = self.driver.as_mut() {
                        d.disconnect().await;
                    }
                    self.lost_link(&e.to_string());
                }
            }
            return Ok(());
        }
        let host_file = self.host_keeps_printing().then(|| host_name.clone());
        self.held_set(&a.job, HeldStatus::Printing { host_file });
        self.set_state(pb::PrinterState::Printing, "");
        if paused
            && let Some(d) = self.driver.as_mut()
            && d.pause().await.is_ok()
        {
            self.set_state(pb::PrinterState::Paused, "paused by the router");
        }
        self.follow(&a, view, &host_name, false).await
    }

    /// Follows a started job to its end: its events, the router's commands, and (for a host
    /// that prints on its own) outages of the host, re-attaching after each. With `reattach`
    /// the link is (re)made first and the job looked up on the host.
    async fn follow(
        &mut self,
        a: &pb::JobAssignment,
        mut view: JobView,
        host_name: &str,
        reattach: bool,
    ) -> Result<(), Stop> {
        let mut dropped = false;
        let mut last_sent = Instant::now();
        let mut lost_since = reattach.then(Instant::now);
        let mut next_try = Instant::now();
        if reattach {
            self.events = None;
            self.set_state(
                pb::PrinterState::Offline,
                "re-attaching to the print in progress",
            );
        }
        loop {
            tokio::select! {
                ev = next_event(&mut self.events) => match ev {
                    None | Some(DriverEvent::Lost(_)) => {
                        let why = match ev {
                            Some(DriverEvent::Lost(why)) => why,
                            _ => "the connection to the printer was lost".to_string(),
                        };
                        self.lost_link(&why);
                        if !self.host_keeps_printing() {
                            if dropped {
                                self.held_remove(&a.job);
                                return Err(Stop::Dropped);
                            }
                            self.finish(a, Ending::fault(why));
                            return Ok(());
                        }
                        tracing::warn!(printer = %self.cfg.id, job = %a.job, %why, grace_s = self.cfg.offline_grace.as_secs_f64(), "lost the printer's host mid-print; the host prints on, reconnecting");
                        lost_since.get_or_insert_with(Instant::now);
                        next_try = Instant::now() + self.backoff.next_delay();
                    }
                    Some(DriverEvent::Progress(u)) => {
                        let new_layer = view.merge(&u);
                        if new_layer || last_sent.elapsed() >= PROGRESS_EVERY {
                            last_sent = Instant::now();
                            let phase = if self.state == pb::PrinterState::Paused { "paused" } else { view.phase() };
                            self.progress(a, &view, phase);
                        }
                    }
                    Some(DriverEvent::Temperatures(t)) => {
                        view.heating = t.heating;
                        self.temps = t;
                    }
                    Some(DriverEvent::State(s)) => match s {
                        HostState::Paused => self.set_state(pb::PrinterState::Paused, ""),
                        HostState::Printing => self.set_state(pb::PrinterState::Printing, ""),
                        HostState::Idle | HostState::Error(_) => {}
                    },
                    Some(DriverEvent::Finished(end)) => return self.ended(a, &mut view, end, dropped).await,
                },
                _ = tokio::time::sleep_until(next_try), if self.events.is_none() => {
                    match self.reconnect_and_attach(host_name).await {
                        Ok(Attach::Running) => {
                            lost_since = None;
                            tracing::info!(printer = %self.cfg.id, job = %a.job, "re-attached to the print in progress");
                            self.set_state(pb::PrinterState::Printing, "");
                            if dropped && let Some(d) = self.driver.as_mut() && let Err(e) = d.cancel().await {
                                tracing::warn!(job = %a.job, error = %e, "cancel");
                            }
                        }
                        Ok(Attach::Ended(end)) => return self.ended(a, &mut view, end, dropped).await,
                        Err(e) => {
                            self.events = None;
                            self.set_state(pb::PrinterState::Offline, &e.to_string());
                            next_try = Instant::now() + self.backoff.next_delay();
                            if lost_since.is_some_and(|t| t.elapsed() > self.cfg.offline_grace) {
                                if dropped {
                                    self.held_remove(&a.job);
                                    return Err(Stop::Dropped);
                                }
                                self.finish(a, Ending::fault(format!(
                                    "the printer's host was unreachable for more than {:.0} s mid-print: {e}",
                                    self.cfg.offline_grace.as_secs_f64()
                                )));
                                return Ok(());
                            }
                        }
                    }
                }
                cmd = self.rx.recv() => match cmd {
                    None | Some(PrinterCmd::Shutdown) => return self.shutdown_mid_print(a).await,
                    Some(c) if c.targets(&a.job, a.epoch) => {
                        let Some(d) = self.driver.as_mut() else { continue };
                        let connected = self.events.is_some();
                        match c {
                            PrinterCmd::Pause { .. } if connected => {
                                if let Err(e) = d.pause().await { tracing::warn!(job = %a.job, error = %e, "pause"); }
                            }
                            PrinterCmd::Resume { .. } if connected => {
                                if let Err(e) = d.resume().await { tracing::warn!(job = %a.job, error = %e, "resume"); }
                            }
                            PrinterCmd::Pause { .. } | PrinterCmd::Resume { .. } => {
                                tracing::warn!(job = %a.job, "the printer is unreachable: pause/resume not delivered");
                            }
                            _ => {
                                tracing::info!(job = %a.job, "stopping the print: cancelled or moved by the router");
                                dropped = true;
                                // Unreachable now: the cancel goes out when the host is back.
                                if connected && let Err(e) = d.cancel().await {
                                    tracing::warn!(job = %a.job, error = %e, "cancel");
                                }
                            }
                        }
                    }
                    Some(c) => self.between_jobs(c),
                },
            }
        }
    }

    async fn reconnect_and_attach(&mut self, host_name: &str) -> Result<Attach, DriverError> {
        self.try_connect().await?;
        let Some(d) = self.driver.as_mut() else {
            return Err(DriverError::Fault("no driver".into()));
        };
        d.attach(host_name).await
    }

    /// The job ended on the printer: report it (unless the router dropped it).
    async fn ended(
        &mut self,
        a: &pb::JobAssignment,
        view: &mut JobView,
        end: JobEnd,
        dropped: bool,
    ) -> Result<(), Stop> {
        if dropped {
            self.held_remove(&a.job);
            self.set_state(pb::PrinterState::Idle, "");
            return Err(Stop::Dropped);
        }
        let failed = match end {
            JobEnd::Completed => {
                view.lines_sent = view.lines_total;
                view.fraction = Some(1.0);
                view.remaining_s = 0.0;
                self.progress(a, view, "done");
                self.finish(
                    a,
                    Ending {
                        success: true,
                        reason: String::new(),
                        printer_fault: false,
                    },
                );
                false
            }
            JobEnd::Cancelled(reason) => {
                self.finish(
                    a,
                    Ending::fault(format!("the print was cancelled at the printer: {reason}")),
                );
                false
            }
            JobEnd::Fault(reason) => {
                self.finish(a, Ending::fault(format!("the printer failed: {reason}")));
                true
            }
        };
        if failed {
            // A failed printer is checked afresh before it gets work again.
            if let Some(d) = self.driver.as_mut() {
                d.disconnect().await;
            }
            self.lost_link("the last print failed; reconnecting");
        } else {
            self.set_state(pb::PrinterState::Idle, "");
        }
        Ok(())
    }

    /// The agent stops mid-print. A print the node streams is cancelled (heaters off) and
    /// reported as interrupted; a print its host runs on its own goes on, held on disk, and
    /// the next start re-attaches to it.
    async fn shutdown_mid_print(&mut self, a: &pb::JobAssignment) -> Result<(), Stop> {
        if self.host_keeps_printing() {
            tracing::info!(job = %a.job, "leaving the print to its host; the next start re-attaches");
            return Err(Stop::Shutdown);
        }
        if let Some(d) = self.driver.as_mut() {
            let _ = d.cancel().await;
        }
        // Heaters off before the agent goes; bounded so a dead printer cannot hold the stop.
        let end = tokio::time::timeout(SHUTDOWN_CANCEL, async {
            while let Some(ev) = next_event(&mut self.events).await {
                if matches!(ev, DriverEvent::Finished(_) | DriverEvent::Lost(_)) {
                    break;
                }
            }
        })
        .await;
        if end.is_err() {
            tracing::warn!(job = %a.job, "the printer did not confirm the cancel");
        }
        self.finish(
            a,
            Ending::fault("interrupted: fab-node was stopped mid-print"),
        );
        Err(Stop::Shutdown)
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
async fn next_event(events: &mut Option<Events>) -> Option<DriverEvent> {
    match events {
        Some(e) => e.recv().await,
        None => std::future::pending().await,
    }
}

/// What the node knows about a running job.
#[derive(Debug, Default)]
struct JobView {
    fraction: Option<f64>,
    lines_sent: u64,
    lines_total: u64,
    layer: u32,
    layers_total: u32,
    remaining_s: f64,
    heating: bool,
}

impl JobView {
    /// Takes what a driver reported; true when a new layer began.
    fn merge(&mut self, u: &ProgressUpdate) -> bool {
        if let Some(f) = u.fraction {
            self.fraction = Some(f);
        }
        if let Some(n) = u.lines_sent {
            self.lines_sent = n;
        }
        if let Some(n) = u.lines_total {
            self.lines_total = n;
        }
        if let Some(n) = u.layers_total {
            self.layers_total = n;
        }
        if let Some(s) = u.remaining_s {
            self.remaining_s = s;
        }
        match u.layer {
            Some(l) if l != self.layer => {
                self.layer = l;
                true
            }
            _ => false,
        }
    }

    fn fraction(&self) -> f64 {
        if let Some(f) = self.fraction {
            return f.clamp(0.0, 1.0);
        }
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
