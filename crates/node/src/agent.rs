//! `fab-node run`: the agent's core. It keeps one session to the router alive (hello with the
//! held jobs, heartbeats, reconnect with backoff), hands router messages to the printer
//! tasks, and forwards their reports. Results are on disk before they are sent and are sent
//! again until the router confirms them (it fences a job it no longer holds), so neither side
//! restarting loses one.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use fabrouter_api::v1 as pb;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_stream::StreamExt;

use crate::config::{NodeConfig, PrinterConfig, Technology};
use crate::ctx::Ctx;
use crate::held::{HeldJobs, HeldStatus};
use crate::printer::{PrinterCmd, PrinterTask};
use crate::session::{self, Session};
use crate::slicer::{DEFAULT_CONFIG, Slicer};

/// First reconnect delay; doubled after each failure up to `reconnect_max`.
const RECONNECT_MIN: Duration = Duration::from_millis(200);
/// Heartbeat interval used when the router's Welcome gives none.
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(5);
/// Shortest heartbeat interval accepted from the router.
const MIN_HEARTBEAT: Duration = Duration::from_millis(50);
/// How long printer tasks get to stop their prints at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(8);

/// The printer as the router sees it.
pub fn printer_spec(p: &PrinterConfig) -> pb::PrinterSpec {
    let minor = |x: f64| (x * 100.0).round() as i64;
    pb::PrinterSpec {
        printer_id: p.id.clone(),
        technology: match p.technology {
            Technology::Fdm => pb::Technology::Fdm,
            Technology::Resin => pb::Technology::Resin,
            Technology::Sls => pb::Technology::Sls,
        } as i32,
        build_x_mm: p.build_volume_mm[0],
        build_y_mm: p.build_volume_mm[1],
        build_z_mm: p.build_volume_mm[2],
        nozzle_diameters_mm: vec![p.nozzle_mm],
        materials: p
            .materials
            .iter()
            .map(|m| pb::Material {
                kind: m.kind.clone(),
                colour: m.colour.clone(),
            })
            .collect(),
        profiles: vec![p.profile.clone()],
        location: Some(pb::GeoPoint {
            lat_deg: p.location.lat,
            lon_deg: p.location.lon,
        }),
        price: Some(pb::PriceModel {
            currency: p.price.currency.clone(),
            per_hour_minor: minor(p.price.per_hour),
            per_gram_minor: minor(p.price.per_gram),
            setup_fee_minor: minor(p.price.setup_fee),
        }),
        makerspace: p.makerspace.clone(),
        firmware_flavor: p.firmware_flavor.clone(),
        slicer_config: crate::presets::slicer_config_pb(p.slicer_profile.as_ref()),
    }
}

/// Waits for the next router message; pends forever without a session.
async fn next_router_msg(
    session: &mut Option<Session>,
) -> Option<Result<pb::RouterMessage, tonic::Status>> {
    match session {
        Some(s) => s.inbox.next().await,
        None => std::future::pending().await,
    }
}

struct Core {
    config: NodeConfig,
    ctx: Arc<Ctx>,
    printers: BTreeMap<String, mpsc::UnboundedSender<PrinterCmd>>,
    /// Last status per printer, repeated after each Welcome.
    statuses: BTreeMap<String, pb::PrinterStatus>,
    session: Option<Session>,
}

impl Core {
    fn hello(&self) -> pb::NodeHello {
        let held = self.ctx.lock_held();
        pb::NodeHello {
            agent_version: env!("CARGO_PKG_VERSION").into(),
            printers: self.config.printers.iter().map(printer_spec).collect(),
            held_jobs: held
                .all()
                .map(|h| pb::HeldJob {
                    job: h.job.clone(),
                    epoch: h.epoch,
                    printer_id: h.printer_id.clone(),
                })
                .collect(),
        }
    }

    /// Sends every finished result the router has not confirmed yet.
    fn send_results(&self) {
        let Some(s) = &self.session else { return };
        let held = self.ctx.lock_held();
        for h in held.all() {
            if let HeldStatus::Finished {
                success,
                reason,
                printer_fault,
            } = &h.status
            {
                s.send(pb::node_message::Msg::Result(pb::JobResult {
                    job: h.job.clone(),
                    epoch: h.epoch,
                    success: *success,
                    reason: reason.clone(),
                    printer_fault: *printer_fault,
                }));
            }
        }
    }

    fn to_printer(&self, printer: &str, cmd: PrinterCmd) -> bool {
        self.printers
            .get(printer)
            .is_some_and(|tx| tx.send(cmd).is_ok())
    }

    /// Routes a job command to the printer holding the job (all printers when unknown: a
    /// queued job is only on its printer's queue).
    fn to_job(&self, job: &str, cmd: PrinterCmd) {
        let printer = self.ctx.lock_held().get(job).map(|h| h.printer_id.clone());
        match printer {
            Some(p) => {
                self.to_printer(&p, cmd);
            }
            None => {
                for tx in self.printers.values() {
                    let _ = tx.send(cmd.clone());
                }
            }
        }
    }

    fn on_router(&mut self, msg: pb::router_message::Msg) {
        use pb::router_message::Msg;
        match msg {
            Msg::Welcome(_) => {}
            Msg::Assignment(a) => {
                tracing::info!(job = %a.job, epoch = a.epoch, printer = %a.printer_id, "assignment");
                let printer = a.printer_id.clone();
                let (job, epoch) = (a.job.clone(), a.epoch);
                if !self.to_printer(&printer, PrinterCmd::Assign(a))
                    && let Some(s) = &self.session
                {
                    s.send(pb::node_message::Msg::Ack(pb::AssignmentAck {
                        job,
                        epoch,
                        accepted: false,
                        reason: format!("this node has no printer {printer:?}"),
                    }));
                }
            }
            Msg::Cancel(c) => {
                tracing::info!(job = %c.job, reason = %c.reason, "cancel from the router");
                self.to_job(
                    &c.job,
                    PrinterCmd::Cancel {
                        job: c.job.clone(),
                        epoch: c.epoch,
                    },
                );
            }
            Msg::Pause(p) => self.to_job(
                &p.job,
                PrinterCmd::Pause {
                    job: p.job.clone(),
                    epoch: p.epoch,
                },
            ),
            Msg::Resume(r) => self.to_job(
                &r.job,
                PrinterCmd::Resume {
                    job: r.job.clone(),
                    epoch: r.epoch,
                },
            ),
            Msg::ResultAck(a) => {
                // The router has the result durably: forget the job (only that epoch's).
                let ours = {
                    let held = self.ctx.lock_held();
                    held.get(&a.job).is_some_and(|h| {
                        h.epoch == a.epoch && matches!(h.status, HeldStatus::Finished { .. })
                    })
                };
                if ours && let Err(e) = self.ctx.lock_held().remove(&a.job) {
                    tracing::error!(job = %a.job, error = %e, "cannot remove the job's record");
                }
            }
            Msg::Fenced(f) => {
                let finished = {
                    let held = self.ctx.lock_held();
                    held.get(&f.job)
                        .filter(|h| h.epoch == f.epoch)
                        .map(|h| matches!(h.status, HeldStatus::Finished { .. }))
                };
                match finished {
                    // The router has the result (or no longer wants it): forget the job.
                    Some(true) => {
                        if let Err(e) = self.ctx.lock_held().remove(&f.job) {
                            tracing::error!(job = %f.job, error = %e, "cannot remove the job's record");
                        }
                    }
                    Some(false) => {
                        tracing::warn!(job = %f.job, epoch = f.epoch, reason = %f.reason, "fenced: stopping the job");
                        self.to_job(
                            &f.job,
                            PrinterCmd::Fenced {
                                job: f.job.clone(),
                                epoch: f.epoch,
                            },
                        );
                    }
                    None => {}
                }
            }
        }
    }

    fn on_report(&mut self, msg: pb::node_message::Msg) {
        if let pb::node_message::Msg::PrinterStatus(s) = &msg {
            self.statuses.insert(s.printer_id.clone(), s.clone());
        }
        // Progress and status while the router is away are stale by the time it is back;
        // results are on disk and go out after the next Welcome.
        if let Some(s) = &self.session {
            s.send(msg);
        }
    }

    fn welcomed(&mut self, session: Session) {
        tracing::info!(node = %session.welcome.node_id, lease_s = session.welcome.lease_s, "connected to the router");
        for s in self.statuses.values() {
            session.send(pb::node_message::Msg::PrinterStatus(s.clone()));
        }
        self.session = Some(session);
        self.send_results();
    }
}

/// Runs the node agent until `shutdown` completes: connects to the router, keeps the lease,
/// and prints what it is assigned. Returns an error only for start-up problems (state
/// directory, router address); a missing router or printer is waited for.
pub async fn run_agent(
    mut config: NodeConfig,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let state = &config.state_dir;
    std::fs::create_dir_all(state)
        .with_context(|| format!("creating the state directory {}", state.display()))?;
    let held = HeldJobs::open(&state.join("jobs")).context("reading the held jobs")?;
    let profiles = state.join("profiles");
    std::fs::create_dir_all(&profiles)?;
    let default_slicer_config = profiles.join("prusaslicer-b.ini");
    if std::fs::read_to_string(&default_slicer_config)
        .ok()
        .as_deref()
        != Some(DEFAULT_CONFIG)
    {
        std::fs::write(&default_slicer_config, DEFAULT_CONFIG)
            .with_context(|| format!("writing {}", default_slicer_config.display()))?;
    }
    // Printers with presets slice with the config resolved from them.
    for p in &mut config.printers {
        if let Some(s) = &p.slicer_profile {
            p.slicer_config = Some(crate::presets::write_resolved(&profiles, s)?);
        }
    }
    let channel = session::router_channel(&config.router)
        .with_context(|| format!("router address {:?}", config.router))?;
    let (to_core, mut reports) = mpsc::unbounded_channel();
    let slicer = Slicer::new(
        &config.slicer,
        config.slicer_timeout,
        &state.join("gcode-cache"),
    );
    slicer.remove_leftovers();
    let ctx = Arc::new(Ctx {
        channel: channel.clone(),
        bearer: format!("node:{}:{}", config.node_id, config.secret),
        held: Mutex::new(held),
        slicer,
        designs_dir: state.join("designs"),
        default_slicer_config,
        to_core,
    });
    // Dropping the set (the agent's future dropped) aborts the printer tasks too.
    let mut tasks = JoinSet::new();
    let mut printers = BTreeMap::new();
    for p in &config.printers {
        let (tx, rx) = mpsc::unbounded_channel();
        printers.insert(p.id.clone(), tx);
        tasks.spawn(PrinterTask::new(p.clone(), Arc::clone(&ctx), rx).run());
    }
    let reconnect_max = config.reconnect_max.max(RECONNECT_MIN);
    let mut core = Core {
        config,
        ctx: Arc::clone(&ctx),
        printers,
        statuses: BTreeMap::new(),
        session: None,
    };
    tokio::pin!(shutdown);
    let mut backoff = RECONNECT_MIN;
    let mut next_try = Instant::now();
    let mut heartbeat = tokio::time::interval(DEFAULT_HEARTBEAT);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tokio::time::sleep_until(next_try), if core.session.is_none() => {
                let hello = core.hello();
                let attempt = session::open(channel.clone(), &ctx.bearer, hello);
                tokio::pin!(attempt);
                // Reports keep flowing while connecting; the router is not needed to print.
                let result = loop {
                    tokio::select! {
                        r = &mut attempt => break Some(r),
                        Some(m) = reports.recv() => core.on_report(m),
                        _ = &mut shutdown => break None,
                    }
                };
                let Some(result) = result else { break };
                match result {
                    Ok(s) => {
                        backoff = RECONNECT_MIN;
                        let every = Duration::try_from_secs_f64(s.welcome.heartbeat_interval_s)
                            .ok()
                            .filter(|d| !d.is_zero())
                            .unwrap_or(DEFAULT_HEARTBEAT)
                            .max(MIN_HEARTBEAT);
                        heartbeat = tokio::time::interval_at(Instant::now() + every, every);
                        core.welcomed(s);
                    }
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), retry_in = ?backoff, "cannot reach the router");
                        next_try = Instant::now() + backoff;
                        backoff = (backoff * 2).min(reconnect_max);
                    }
                }
            }
            msg = next_router_msg(&mut core.session) => match msg {
                Some(Ok(m)) => {
                    if let Some(m) = m.msg {
                        core.on_router(m);
                    }
                }
                other => {
                    let why = match other {
                        Some(Err(status)) => status.message().to_string(),
                        _ => "stream closed".into(),
                    };
                    tracing::warn!(%why, "lost the router; prints continue, reconnecting");
                    core.session = None;
                    next_try = Instant::now() + backoff;
                    backoff = (backoff * 2).min(reconnect_max);
                }
            },
            _ = heartbeat.tick(), if core.session.is_some() => {
                if let Some(s) = &core.session {
                    let now = std::time::SystemTime::now();
                    s.send(pb::node_message::Msg::Heartbeat(pb::Heartbeat {
                        sent_time: Some(prost_types::Timestamp::from(now)),
                    }));
                }
                core.send_results();
            }
            Some(m) = reports.recv() => core.on_report(m),
        }
    }
    tracing::info!("stopping: cancelling running prints");
    for tx in core.printers.values() {
        let _ = tx.send(PrinterCmd::Shutdown);
    }
    let stopped = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if stopped.is_err() {
        tracing::warn!("printer tasks did not stop in time");
    }
    // Best effort: tell the router now; otherwise the next start reports it.
    while let Ok(m) = reports.try_recv() {
        core.on_report(m);
    }
    core.send_results();
    Ok(())
}
