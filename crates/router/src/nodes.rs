//! The node protocol's rules on the router's side: a node's stream opens with its hello
//! (printers registered, held jobs reconciled), then carries reports that are taken only from
//! the node's current stream and, for a job, only for the epoch the node was given (fencing).
//! A result is acknowledged ([`Command::ResultAck`]) once what it caused is durable, so a node
//! forgets a finished job only when the router can no longer lose its result.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use crate::jobs::{Change, Note, job_name};
use crate::lifecycle::{Event, transition};
use crate::model::{EventKind, Printer, PrinterState, node_of, parse_name, printer_name};
use crate::protocol::{Command, Hello, JobResult, NodeTx, Phase, Progress, Report};
use crate::registry::{Inner, NodeConn, NodeEntry, PrinterEntry, sched_printer};
use crate::{Error, Network, Result, now_ms};

/// Progress is written to the history when the fraction moved at least this much (or the
/// state changed), so a long print does not write thousands of near-identical events.
const PROGRESS_STEP: f64 = 0.01;

/// The lifecycle event a report's phase stands for, and the state it leads to from `state`
/// (the same state where it does not move it).
fn phase_move(state: crate::JobState, phase: Phase) -> (Option<Event>, crate::JobState) {
    let event = match phase {
        Phase::Preparing => Some(Event::Began),
        Phase::Printing => Some(Event::Printing),
        // A pause at the printer shows in the history; the state follows the customer's
        // pause and resume only (see `lifecycle`).
        Phase::Paused => None,
    };
    match event.map(|e| transition(state, e)) {
        Some(Ok(next)) => (event, next),
        _ => (event, state),
    }
}

/// Whether a progress report changes the job's state or moved its fraction enough to keep.
fn worth_writing(a: &crate::registry::ActiveJob, p: &Progress) -> bool {
    phase_move(a.state, p.phase).1 != a.state
        || (p.fraction - a.progress).abs() >= PROGRESS_STEP
        || p.fraction >= 1.0
}

impl Network {
    /// A node opened its stream: registers its printers and reconciles what it holds.
    /// Returns the stream's session number, which every later report of it carries.
    pub fn node_connected(&self, node: &str, hello: &Hello, tx: NodeTx) -> Result<u64> {
        let mut declared = Vec::new();
        for spec in &hello.printers {
            if spec.printer_id.is_empty()
                || !spec
                    .printer_id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(Error::invalid(
                    "hello.printers.printer_id",
                    format!(
                        "printer id {:?} must be letters, digits, - or _",
                        spec.printer_id
                    ),
                ));
            }
            let name = printer_name(node, &spec.printer_id);
            let p = sched_printer(&name, node, spec, PrinterState::Idle)
                .map_err(|e| Error::invalid("hello.printers", e))?;
            declared.push((name, spec.clone(), p));
        }
        let t = now_ms();
        // Stored before the registry is locked: the store's I/O never holds it.
        for (name, spec, _) in &declared {
            let stored = Printer {
                name: name.clone(),
                spec: spec.clone(),
                state: PrinterState::Idle,
                last_seen_ms: t,
                queued_work_s: 0.0,
                active_jobs: 0,
            };
            self.store
                .put_printer(name, &self.codec.encode_printer(&stored))?;
        }
        let mut inner = self.lock();
        inner.next_session += 1;
        let session = inner.next_session;
        {
            let mut fleet = self.fleet_mut();
            for (name, spec, p) in declared {
                fleet
                    .upsert(p)
                    .map_err(|e| Error::invalid("hello.printers", e.to_string()))?;
                inner.extend_profiles(&spec.profiles);
                let (work, n) = inner.queues.get(&name).copied().unwrap_or_default();
                let _ = fleet.set_queue(&name, work, n);
                inner.printers.insert(
                    Arc::from(name),
                    PrinterEntry {
                        node: node.to_string(),
                        spec,
                        state: PrinterState::Idle,
                        last_seen_ms: t,
                    },
                );
            }
        }
        inner.nodes.insert(
            node.to_string(),
            NodeEntry {
                conn: Some(NodeConn {
                    tx: tx.clone(),
                    session,
                }),
                last_seen: Instant::now(),
                offline: false,
            },
        );
        let _ = tx.send(Ok(Command::Welcome {
            node_id: node.to_string(),
            lease_s: self.config.lease_s,
            heartbeat_interval_s: self.config.lease_s / 3.0,
        }));
        // Reconcile: what the node holds vs what the router believes.
        let held: HashMap<&str, u64> = hello
            .held
            .iter()
            .map(|(job, epoch)| (job.as_str(), *epoch))
            .collect();
        for (job, epoch) in &hello.held {
            let current = parse_name(job, "jobs")
                .and_then(|id| inner.jobs.get(id))
                .filter(|a| a.on_node(node) && a.epoch == *epoch);
            if current.is_none() {
                let _ = tx.send(Ok(Command::Fenced {
                    job_name: job.clone(),
                    epoch: *epoch,
                    reason: "this assignment was moved elsewhere or ended while the node was away; stop it".into(),
                }));
            }
        }
        // What the node does not hold: started work is lost, an assignment is sent again.
        let mut lost = Vec::new();
        let mut resend = Vec::new();
        for (id, a) in inner.jobs.iter_mut().filter(|(_, a)| a.on_node(node)) {
            if held.get(job_name(id).as_str()) == Some(&a.epoch) {
                a.lost_since = None;
            } else if a.state.started() {
                lost.push((id.clone(), a.epoch));
            } else {
                resend.push((id.clone(), a.epoch));
            }
        }
        drop(inner);
        for (id, epoch) in lost {
            self.reroute(
                &id,
                epoch,
                "the node restarted and no longer holds this print",
                false,
            );
        }
        for (id, epoch) in resend {
            if let Err(e) = self.resend(&id, epoch) {
                tracing::error!(job = %id, error = %e, "cannot resend a job");
            }
        }
        self.place_queued();
        tracing::info!(
            node,
            session,
            printers = hello.printers.len(),
            "node connected"
        );
        Ok(session)
    }

    /// The node's stream ended; the lease decides when it counts as offline.
    pub fn node_disconnected(&self, node: &str, session: u64) {
        let mut inner = self.lock();
        if let Some(n) = inner.nodes.get_mut(node)
            && n.conn.as_ref().is_some_and(|c| c.session == session)
        {
            n.conn = None;
            tracing::info!(node, "node stream closed");
        }
    }

    /// One report from a node's stream `session`.
    pub fn node_message(&self, node: &str, session: u64, report: Report) {
        /// What is left to do once the registry is unlocked.
        enum Then {
            Nothing,
            PlaceQueued,
            Reroute(String, u64, String),
            Progress(String, Progress),
            Result(JobResult),
        }
        let then = {
            let mut inner = self.lock();
            let Some(entry) = inner.nodes.get_mut(node) else {
                return;
            };
            if entry.conn.as_ref().map(|c| c.session) != Some(session) {
                return; // an old stream of a node that reconnected
            }
            entry.last_seen = Instant::now();
            match report {
                Report::Heartbeat => Then::Nothing,
                Report::PrinterStatus { printer_id, state } => {
                    let name = printer_name(node, &printer_id);
                    let mut opened = false;
                    if let Some(p) = inner.printers.get_mut(name.as_str()) {
                        opened = !p.state.accepts_jobs() && state.accepts_jobs();
                        p.state = state;
                        p.last_seen_ms = now_ms();
                        let _ = self.fleet_mut().set_state(&name, state);
                    }
                    // A printer back from offline or maintenance can take what waits.
                    if opened && !inner.queued.is_empty() {
                        Then::PlaceQueued
                    } else {
                        Then::Nothing
                    }
                }
                Report::Ack {
                    job,
                    epoch,
                    accepted,
                    reason,
                } => match self.fenced(&mut inner, node, &job, epoch) {
                    Some(id) if !accepted => {
                        Then::Reroute(id, epoch, format!("the node declined: {reason}"))
                    }
                    _ => Then::Nothing,
                },
                Report::Progress(p) => match self.fenced(&mut inner, node, &p.job, p.epoch) {
                    // Most reports change too little to be written: no need to read the job.
                    Some(id) if inner.jobs.get(&id).is_some_and(|a| worth_writing(a, &p)) => {
                        Then::Progress(id, p)
                    }
                    _ => Then::Nothing,
                },
                Report::Result(r) => Then::Result(r),
            }
        };
        match then {
            Then::Nothing => {}
            Then::PlaceQueued => self.place_queued(),
            Then::Reroute(id, epoch, why) => self.reroute(&id, epoch, &why, true),
            Then::Progress(id, p) => self.progress(node, &id, p),
            Then::Result(r) => {
                let (job, epoch) = (r.job.clone(), r.epoch);
                if let Some(id) = self.result(node, r) {
                    // To the stream the result came on: a node that reconnects meanwhile
                    // resends it and is acknowledged then.
                    let tx = self
                        .lock()
                        .nodes
                        .get(node)
                        .and_then(|n| n.conn.as_ref())
                        .map(|c| c.tx.clone());
                    if let Some(tx) = tx {
                        self.syncer.after(self.ticket(), move || {
                            let _ = tx.send(Ok(Command::ResultAck { job: id, epoch }));
                        });
                    }
                    tracing::debug!(%job, epoch, "result taken");
                }
                self.place_queued();
            }
        }
    }

    /// Progress of a job the node held at the time of the report.
    fn progress(&self, node: &str, id: &str, p: Progress) {
        let res = self.change(
            id,
            |_, _| (),
            |inner, job, ()| {
                let Some(a) = inner.jobs.get(id) else {
                    return Ok(None);
                };
                if a.epoch != p.epoch || !a.on_node(node) {
                    return Ok(None); // moved while the report waited for the job's lock
                }
                if !worth_writing(a, &p) {
                    return Ok(None);
                }
                let (event, next) = phase_move(a.state, p.phase);
                let changes = next != a.state;
                let mut notes = Vec::new();
                if changes && next == crate::JobState::Preparing {
                    notes.push(Note::new(
                        EventKind::Preparing,
                        format!("the makerspace is preparing the print ({})", p.phase_word),
                    ));
                }
                if changes && next == crate::JobState::Printing {
                    notes.push(Note::new(EventKind::Started, "printing started"));
                }
                job.progress = p.fraction.clamp(0.0, 1.0);
                job.last_report_ms = now_ms();
                notes.push(Note {
                    kind: EventKind::Progress,
                    message: format!(
                        "{:.0}% {} layer {}/{} {:.0} s left",
                        p.fraction * 100.0,
                        p.phase_word,
                        p.layer,
                        p.layers_total,
                        p.remaining_s
                    ),
                    layer: p.layer,
                    remaining_s: p.remaining_s,
                });
                Ok(Some(Change::new(if changes { event } else { None }, notes)))
            },
        );
        if let Err(e) = res {
            tracing::warn!(job = %id, error = %e, "progress not stored");
        }
    }

    /// Takes a job's result. Returns the job's bare id when the result is to be acknowledged
    /// (taken now, or taken before: a node resending after a reconnect).
    fn result(&self, node: &str, r: JobResult) -> Option<String> {
        let current = self.current(&self.lock(), node, &r.job, r.epoch);
        let Some(id) = current else {
            if let Some(id) = self.already_taken(node, &r) {
                return Some(id);
            }
            self.fence(&self.lock(), node, &r.job, r.epoch);
            return None;
        };
        if r.success || !r.printer_fault {
            let res = self.change(
                &id,
                |_, _| (),
                |inner, job, ()| {
                    if inner
                        .jobs
                        .get(&id)
                        .is_none_or(|a| a.epoch != r.epoch || !a.on_node(node))
                    {
                        return Ok(None);
                    }
                    job.last_report_ms = now_ms();
                    Ok(Some(if r.success {
                        job.progress = 1.0;
                        Change::new(
                            Some(Event::Complete),
                            vec![Note::new(EventKind::Completed, "print completed")],
                        )
                    } else {
                        job.failure_reason = r.reason.clone();
                        Change::new(
                            Some(Event::Fail),
                            vec![Note::new(EventKind::Failed, r.reason.clone())],
                        )
                    }))
                },
            );
            match res {
                Ok(Some(_)) => {}
                // Moved or ended while the result waited for the job's lock.
                Ok(None) => return self.already_taken(node, &r),
                Err(e) => {
                    tracing::error!(job = %id, error = %e, "result not stored");
                    return None;
                }
            }
        } else {
            let why = format!("printer failed: {}", r.reason);
            self.reroute(&id, r.epoch, &why, true);
        }
        Some(id)
    }

    /// The job's id if the result repeats one the router took already for this node and
    /// epoch (the job ended with it, or was moved on because of it).
    fn already_taken(&self, node: &str, r: &JobResult) -> Option<String> {
        let id = parse_name(&r.job, "jobs")?;
        let job = self.load_job(id).ok()??;
        let ended_here =
            job.state.is_terminal() && job.epoch == r.epoch && node_of(&job.printer) == node;
        let moved_on = r.printer_fault
            && job.epoch > r.epoch
            && job.failed_printers.iter().any(|p| node_of(p) == node);
        (ended_here || moved_on).then(|| id.to_string())
    }

    /// The job id if `node` holds the current epoch of it.
    fn current(&self, inner: &Inner, node: &str, job: &str, epoch: u64) -> Option<String> {
        let id = parse_name(job, "jobs")?;
        inner
            .jobs
            .get(id)
            .is_some_and(|a| a.epoch == epoch && a.on_node(node))
            .then(|| id.to_string())
    }

    /// Tells `node` that its report on (job, epoch) was refused.
    fn fence(&self, inner: &Inner, node: &str, job: &str, epoch: u64) {
        tracing::info!(node, job, epoch, "fenced a stale report");
        Self::send(
            inner,
            node,
            Command::Fenced {
                job_name: job.to_string(),
                epoch,
                reason: "this assignment is no longer yours (re-routed, cancelled or finished)"
                    .into(),
            },
        );
    }

    /// The job id if `node` holds the current epoch of it; otherwise tells the node it is
    /// fenced and returns `None`.
    fn fenced(&self, inner: &mut Inner, node: &str, job: &str, epoch: u64) -> Option<String> {
        let id = self.current(inner, node, job, epoch);
        if id.is_none() {
            self.fence(inner, node, job, epoch);
        }
        id
    }
}
