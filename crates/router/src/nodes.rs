//! The node protocol's rules on the router's side: a node's stream opens with its hello
//! (printers registered, held jobs reconciled), then carries reports that are taken only from
//! the node's current stream and, for a job, only for the epoch the node was given (fencing).
//! A result is acknowledged ([`Command::ResultAck`]) once what it caused is durable, so a node
//! forgets a finished job only when the router can no longer lose its result.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use crate::jobs::{Note, job_name};
use crate::lifecycle::{Event, transition};
use crate::model::{EventKind, Printer, PrinterState, node_of, parse_name, printer_name};
use crate::protocol::{Command, Hello, JobResult, NodeTx, Phase, Progress, Report};
use crate::registry::{Inner, NodeConn, NodeEntry, PrinterEntry, sched_printer};
use crate::{Error, Network, Result, now_ms};

/// Progress is written to the history when the fraction moved at least this much (or the
/// state changed), so a long print does not write thousands of near-identical events.
const PROGRESS_STEP: f64 = 0.01;

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
        let mut inner = self.lock();
        inner.next_session += 1;
        let session = inner.next_session;
        let t = now_ms();
        {
            let mut fleet = self.fleet_mut();
            for (name, spec, p) in declared {
                let stored = Printer {
                    name: name.clone(),
                    spec: spec.clone(),
                    state: PrinterState::Idle,
                    last_seen_ms: t,
                    queued_work_s: 0.0,
                    active_jobs: 0,
                };
                self.store
                    .put_printer(&name, &self.codec.encode_printer(&stored))?;
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
        let mine: Vec<String> = inner
            .jobs
            .iter()
            .filter(|(_, a)| a.on_node(node))
            .map(|(id, _)| id.clone())
            .collect();
        for id in mine {
            let Some(a) = inner.jobs.get_mut(&id) else {
                continue;
            };
            if held.get(job_name(&id).as_str()) == Some(&a.epoch) {
                a.lost_since = None;
                continue;
            }
            if a.state.started() {
                // The node no longer knows a print it had started: that work is lost.
                self.reroute(
                    &mut inner,
                    &id,
                    "the node restarted and no longer holds this print",
                    false,
                );
            } else {
                match self.stored(&id) {
                    Ok((_, job)) => self.dispatch(&inner, &job),
                    Err(e) => tracing::error!(job = %id, error = %e, "cannot resend a job"),
                }
            }
        }
        self.place_queued(&mut inner);
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
        let mut inner = self.lock();
        let Some(entry) = inner.nodes.get_mut(node) else {
            return;
        };
        if entry.conn.as_ref().map(|c| c.session) != Some(session) {
            return; // an old stream of a node that reconnected
        }
        entry.last_seen = Instant::now();
        match report {
            Report::Heartbeat => {}
            Report::PrinterStatus { printer_id, state } => {
                let name = printer_name(node, &printer_id);
                let mut opened = false;
                if let Some(p) = inner.printers.get_mut(name.as_str()) {
                    opened = !p.state.to_sched().accepts_jobs() && state.to_sched().accepts_jobs();
                    p.state = state;
                    p.last_seen_ms = now_ms();
                    let _ = self.fleet_mut().set_state(&name, state.to_sched());
                }
                // A printer back from offline or maintenance can take what waits in the queue.
                if opened && !inner.queued.is_empty() {
                    self.place_queued(&mut inner);
                }
            }
            Report::Ack {
                job,
                epoch,
                accepted,
                reason,
            } => {
                if !accepted && let Some(id) = self.fenced(&mut inner, node, &job, epoch) {
                    let why = format!("the node declined: {reason}");
                    self.reroute(&mut inner, &id, &why, true);
                }
            }
            Report::Progress(p) => self.progress(&mut inner, node, p),
            Report::Result(r) => {
                let (job, epoch) = (r.job.clone(), r.epoch);
                let acknowledge = self.result(&mut inner, node, r);
                self.place_queued(&mut inner);
                if let Some(id) = acknowledge {
                    // To the stream the result came on: a node that reconnects meanwhile
                    // resends it and is acknowledged then.
                    let tx = inner
                        .nodes
                        .get(node)
                        .and_then(|n| n.conn.as_ref())
                        .map(|c| c.tx.clone());
                    drop(inner);
                    if let Some(tx) = tx {
                        self.syncer.after(self.ticket(), move || {
                            let _ = tx.send(Ok(Command::ResultAck { job: id, epoch }));
                        });
                    }
                    tracing::debug!(%job, epoch, "result taken");
                }
            }
        }
    }

    fn progress(&self, inner: &mut Inner, node: &str, p: Progress) {
        let Some(id) = self.fenced(inner, node, &p.job, p.epoch) else {
            return;
        };
        let Some(a) = inner.jobs.get(&id) else { return };
        let event = match p.phase {
            Phase::Preparing => Some(Event::Began),
            Phase::Printing => Some(Event::Printing),
            // A pause at the printer shows in the history; the state follows the customer's
            // pause and resume only (see `lifecycle`).
            Phase::Paused => None,
        };
        let next = match event.map(|e| transition(a.state, e)) {
            Some(Ok(s)) => s,
            Some(Err(e)) => {
                tracing::debug!(job = %id, error = %e, "progress does not move the state");
                a.state
            }
            None => a.state,
        };
        let changes = next != a.state;
        let moved = (p.fraction - a.progress).abs() >= PROGRESS_STEP || p.fraction >= 1.0;
        if !(changes || moved) {
            return; // nothing worth a write
        }
        let from = a.state;
        let (rec, mut job) = match self.stored(&id) {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(job = %id, error = %e, "progress not stored");
                return;
            }
        };
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
        let change = if changes { event } else { None };
        if let Err(e) = self.commit(inner, &rec.owner, job, change, notes) {
            tracing::warn!(job = %id, error = %e, from = %from, "progress not stored");
        }
    }

    /// Takes a job's result. Returns the job's bare id when the result is to be acknowledged
    /// (taken now, or taken before: a node resending after a reconnect).
    fn result(&self, inner: &mut Inner, node: &str, r: JobResult) -> Option<String> {
        if self.current(inner, node, &r.job, r.epoch).is_none() {
            if let Some(id) = self.already_taken(node, &r) {
                return Some(id);
            }
            self.fence(inner, node, &r.job, r.epoch);
            return None;
        }
        let id = parse_name(&r.job, "jobs")?.to_string();
        if r.success || !r.printer_fault {
            let (rec, mut job) = match self.stored(&id) {
                Ok(x) => x,
                Err(e) => {
                    tracing::error!(job = %id, error = %e, "result not stored");
                    return None;
                }
            };
            job.last_report_ms = now_ms();
            let res = if r.success {
                job.progress = 1.0;
                self.commit(
                    inner,
                    &rec.owner,
                    job,
                    Some(Event::Complete),
                    vec![Note::new(EventKind::Completed, "print completed")],
                )
            } else {
                job.failure_reason = r.reason.clone();
                self.commit(
                    inner,
                    &rec.owner,
                    job,
                    Some(Event::Fail),
                    vec![Note::new(EventKind::Failed, r.reason)],
                )
            };
            if let Err(e) = res {
                tracing::error!(job = %id, error = %e, "result not stored");
                return None;
            }
        } else {
            let why = format!("printer failed: {}", r.reason);
            self.reroute(inner, &id, &why, true);
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
