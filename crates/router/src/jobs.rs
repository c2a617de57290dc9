//! The job lifecycle: every change of a stored job goes through [`Network::commit`], which
//! asks the state machine ([`transition`]) first, writes the job and its new events in one
//! store transaction, and only then updates memory, queues and watchers. Customer actions
//! (cancel, pause, resume), re-routing and the placing of queued jobs are built on it.

use std::sync::Arc;

use fabrouter_store::JobRecord;

use crate::access::{self, JobUse, Principal};
use crate::lifecycle::{Event, JobState, transition};
use crate::model::{EventKind, Job, JobEvent, Placement, node_of, parse_name, printer_id_of};
use crate::protocol::{Assignment, Command};
use crate::registry::Inner;
use crate::{Error, Network, Result, Ticket, now_ms};

/// One new entry of a job's history.
pub(crate) struct Note {
    pub kind: EventKind,
    pub message: String,
    pub layer: u32,
    pub remaining_s: f64,
}

impl Note {
    pub fn new(kind: EventKind, message: impl Into<String>) -> Note {
        Note {
            kind,
            message: message.into(),
            layer: 0,
            remaining_s: 0.0,
        }
    }
}

/// "jobs/{id}".
pub fn job_name(id: &str) -> String {
    format!("jobs/{id}")
}

impl Network {
    pub(crate) fn decode_job(&self, rec: &JobRecord) -> Result<Job> {
        self.codec
            .decode_job(&rec.job)
            .map_err(|e| Error::Corrupt(format!("stored job {} unreadable: {e}", rec.id)))
    }

    /// The stored record and job of an active job.
    pub(crate) fn stored(&self, id: &str) -> Result<(JobRecord, Job)> {
        let rec = self
            .store
            .get_job(id)?
            .ok_or_else(|| Error::Corrupt(format!("job {id} is active but not stored")))?;
        let job = self.decode_job(&rec)?;
        Ok((rec, job))
    }

    /// A stored job by bare id.
    pub fn load_job(&self, id: &str) -> Result<Option<Job>> {
        self.store
            .get_job(id)?
            .map(|r| self.decode_job(&r))
            .transpose()
    }

    /// A job by name, if the access rules let the caller do `use_` to it.
    pub fn job_for(&self, who: &Principal, name: &str, use_: JobUse) -> Result<Job> {
        let id = parse_name(name, "jobs").ok_or_else(|| {
            Error::invalid(
                "name",
                format!("{name:?} is not a job name like jobs/{{id}}"),
            )
        })?;
        let rec = self.store.get_job(id)?;
        access::job(who, use_, name, rec.as_ref().map(|r| r.owner.as_str()))?;
        // The rules grant nothing on a missing job; this only unwraps.
        let rec = rec.ok_or_else(|| Error::Corrupt(format!("{name} vanished")))?;
        self.decode_job(&rec)
    }

    /// The caller's jobs (an admin's too: their own), newest first, after the id `after`.
    pub fn list_jobs(&self, owner: &str, after: Option<&str>, limit: usize) -> Result<Vec<Job>> {
        self.store
            .list_jobs(owner, after, limit)?
            .iter()
            .map(|r| self.decode_job(r))
            .collect()
    }

    /// A job's stored history from sequence `from` on.
    pub fn events_from(&self, id: &str, from: u64) -> Result<Vec<JobEvent>> {
        self.store
            .job_events(id, from)?
            .iter()
            .map(|b| {
                self.codec
                    .decode_event(b)
                    .map_err(|e| Error::Corrupt(format!("stored event of {id} unreadable: {e}")))
            })
            .collect()
    }

    /// Writes a job change and its new events, then updates memory, queues and watchers.
    /// `change` is the lifecycle event (none: the state stays); the state machine decides the
    /// new state, and a change it refuses writes nothing. `owner` is the stored record's.
    pub(crate) fn commit(
        &self,
        inner: &mut Inner,
        owner: &str,
        mut job: Job,
        change: Option<Event>,
        notes: Vec<Note>,
    ) -> Result<Job> {
        let id = job.id.clone();
        let Some(active) = inner.jobs.get(&id) else {
            return Err(Error::precondition(format!(
                "{} is finished; it cannot change",
                job_name(&id)
            )));
        };
        job.state = match change {
            Some(e) => transition(active.state, e)?,
            None => active.state,
        };
        let t = now_ms();
        job.updated_ms = t;
        let first = active.last_seq + 1;
        let evs: Vec<JobEvent> = notes
            .into_iter()
            .enumerate()
            .map(|(i, n)| JobEvent {
                job: id.clone(),
                sequence: first + i as u64,
                kind: Some(n.kind),
                state: job.state,
                time_ms: t,
                printer: job.printer.clone(),
                epoch: job.epoch,
                message: n.message,
                progress: job.progress,
                layer: n.layer,
                remaining_s: n.remaining_s,
            })
            .collect();
        let rec = JobRecord {
            id: id.clone(),
            owner: owner.to_string(),
            version: active.version + 1,
            last_seq: active.last_seq + evs.len() as u64,
            active: !job.state.is_terminal(),
            job: self.codec.encode_job(&job),
        };
        let encoded: Vec<Vec<u8>> = evs.iter().map(|e| self.codec.encode_event(e)).collect();
        self.store.update_job(&rec, &encoded)?;
        let old_printer = active.printer.clone();
        let old_estimate = active.estimate_s;
        let estimate_s = job.placement.as_ref().map_or(0.0, Placement::print_time_s);
        let moved = !rec.active
            || old_printer.as_deref().unwrap_or("") != job.printer
            || old_estimate != estimate_s;
        if moved {
            let mut fleet = self.fleet_mut();
            let old = old_printer.as_deref().unwrap_or("");
            inner.place_change(&mut fleet, old, &job.design, old_estimate, false);
            if rec.active {
                inner.place_change(&mut fleet, &job.printer, &job.design, estimate_s, true);
            }
        }
        if job.state == JobState::Queued {
            inner.queued.insert(id.clone());
        } else {
            inner.queued.remove(&id);
        }
        if rec.active {
            let printer = if old_printer.as_deref() == Some(job.printer.as_str()) {
                old_printer
            } else {
                inner.intern(&job.printer)
            };
            if let Some(a) = inner.jobs.get_mut(&id) {
                a.printer = printer;
                a.state = job.state;
                a.epoch = job.epoch;
                a.version = rec.version;
                a.last_seq = rec.last_seq;
                a.progress = job.progress;
                a.estimate_s = estimate_s;
            }
        } else {
            inner.jobs.remove(&id);
        }
        for e in evs {
            let _ = self.events.send(e);
        }
        Ok(job)
    }

    /// Sends a command to a node if it is connected.
    pub(crate) fn send(inner: &Inner, node: &str, cmd: Command) {
        if let Some(conn) = inner.nodes.get(node).and_then(|n| n.conn.as_ref()) {
            let _ = conn.tx.send(Ok(cmd));
        }
    }

    /// The assignment a node receives for a job.
    pub(crate) fn assignment(&self, job: &Job) -> Result<Command> {
        let design = self.design_facts(&job.design)?;
        Ok(Self::assignment_of(job, design))
    }

    /// [`Network::assignment`] with the design at hand.
    pub(crate) fn assignment_of(job: &Job, design: crate::DesignFacts) -> Command {
        let placement = job.placement.as_ref();
        Command::Assign(Assignment {
            job: job.id.clone(),
            epoch: job.epoch,
            printer_id: printer_id_of(&job.printer).to_string(),
            design: job.design.clone(),
            format: design.format(),
            profile: placement
                .map(|p| p.profile().to_string())
                .unwrap_or_default(),
            design_sha256: design.sha256,
            material: job.spec.material.clone(),
            rotation: placement.and_then(|p| p.rotation),
        })
    }

    /// Sends an assigned job to its node if the node is connected.
    pub(crate) fn dispatch(&self, inner: &Inner, job: &Job) {
        if job.state != JobState::Assigned || job.printer.is_empty() {
            return;
        }
        match self.assignment(job) {
            Ok(cmd) => Self::send(inner, node_of(&job.printer), cmd),
            Err(e) => tracing::warn!(job = %job.id, error = %e, "cannot send the assignment"),
        }
    }

    /// A customer's change of a job: commits `event` with `note`, answers once it is durable,
    /// and only then tells the job's node (a crash in between must not leave a node acting on
    /// a change the router forgot). The node is told even if the caller goes away meanwhile.
    async fn customer_change(
        self: &Arc<Self>,
        who: &Principal,
        name: &str,
        use_: JobUse,
        event: Event,
        note: Note,
        tell: fn(&Job, u64, &str) -> Command,
    ) -> Result<Job> {
        let job = self.job_for(who, name, use_)?;
        let (job, ticket, notice) = {
            let mut inner = self.lock();
            let Some(active) = inner.jobs.get(&job.id) else {
                return Err(Error::precondition(format!(
                    "{name} already ended ({}); it cannot be {}",
                    job.state,
                    match use_ {
                        JobUse::Cancel => "cancelled",
                        _ => "changed",
                    }
                )));
            };
            // The refusal names the state the job is in now.
            transition(active.state, event)?;
            let (rec, job) = self.stored(&job.id)?;
            let (printer, epoch) = (job.printer.clone(), job.epoch);
            let message = note.message.clone();
            let job = self.commit(&mut inner, &rec.owner, job, Some(event), vec![note])?;
            let ticket: Ticket = self.ticket();
            let notice = (!printer.is_empty())
                .then(|| (node_of(&printer).to_string(), tell(&job, epoch, &message)));
            (job, ticket, notice)
        };
        let net = self.clone();
        tokio::spawn(async move {
            net.durable(ticket).await?;
            if let Some((node, cmd)) = notice {
                Self::send(&net.lock(), &node, cmd);
            }
            Ok::<_, Error>(())
        })
        .await
        .map_err(|e| Error::Unavailable(format!("the change was interrupted: {e}")))??;
        Ok(job)
    }

    /// Cancels a job; its node is told to stop once the cancellation is durable.
    pub async fn cancel(
        self: &Arc<Self>,
        who: &Principal,
        name: &str,
        reason: &str,
    ) -> Result<Job> {
        let reason = if reason.trim().is_empty() {
            "cancelled by the customer".to_string()
        } else {
            reason.to_string()
        };
        self.customer_change(
            who,
            name,
            JobUse::Cancel,
            Event::Cancel,
            Note::new(EventKind::Cancelled, reason),
            |job, epoch, reason| Command::Cancel {
                job: job.id.clone(),
                epoch,
                reason: reason.to_string(),
            },
        )
        .await
    }

    /// Pauses a printing job; its node is told once the pause is durable.
    pub async fn pause(self: &Arc<Self>, who: &Principal, name: &str) -> Result<Job> {
        self.customer_change(
            who,
            name,
            JobUse::Control,
            Event::Pause,
            Note::new(EventKind::Paused, "paused by the customer"),
            |job, epoch, _| Command::Pause {
                job: job.id.clone(),
                epoch,
            },
        )
        .await
    }

    /// Resumes a paused job; its node is told once that is durable.
    pub async fn resume(self: &Arc<Self>, who: &Principal, name: &str) -> Result<Job> {
        self.customer_change(
            who,
            name,
            JobUse::Control,
            Event::Resume,
            Note::new(EventKind::Resumed, "resumed by the customer"),
            |job, epoch, _| Command::Resume {
                job: job.id.clone(),
                epoch,
            },
        )
        .await
    }

    /// Moves a job off its printer: to another capable printer, to the queue if none, or to
    /// FAILED after too many re-routes. `exclude_current`: the printer failed it and is never
    /// chosen again for it. Called with the lock held.
    pub(crate) fn reroute(&self, inner: &mut Inner, id: &str, why: &str, exclude_current: bool) {
        let Some(active) = inner.jobs.get_mut(id) else {
            return;
        };
        let old = active.printer.clone();
        if exclude_current
            && let Some(p) = &old
            && !active.excluded.contains(p)
        {
            active.excluded.push(p.clone());
        }
        let excluded = active.excluded.clone();
        let (rec, mut job) = match self.stored(id) {
            Ok(x) => x,
            Err(e) => {
                tracing::error!(job = id, error = %e, "re-route could not read the job");
                return;
            }
        };
        job.failed_printers = excluded.iter().map(|p| p.to_string()).collect();
        let old_epoch = job.epoch;
        job.epoch += 1;
        job.reroutes += 1;
        job.progress = 0.0;
        let mut notes = vec![Note::new(EventKind::Rerouted, why)];
        let change = if job.reroutes > self.config.max_reroutes {
            job.printer = String::new();
            job.failure_reason = format!(
                "{why}; gave up after {} re-routes",
                self.config.max_reroutes
            );
            notes.push(Note::new(EventKind::Failed, job.failure_reason.clone()));
            Event::Fail
        } else {
            match self.place(inner, &job, &excluded) {
                Some(placement) => {
                    notes.push(Note::new(
                        EventKind::Assigned,
                        format!(
                            "re-routed to {}: {}",
                            placement.makerspace,
                            placement.reasons.join("; ")
                        ),
                    ));
                    job.printer = placement.printer.clone();
                    job.placement = Some(placement);
                    Event::Moved { placed: true }
                }
                None => {
                    job.printer = String::new();
                    notes.push(Note::new(
                        EventKind::Rerouted,
                        "no capable printer is online; waiting for one",
                    ));
                    Event::Moved { placed: false }
                }
            }
        };
        if let Some(a) = inner.jobs.get_mut(id) {
            a.lost_since = None;
        }
        match self.commit(inner, &rec.owner, job, Some(change), notes) {
            Ok(job) => {
                if let Some(old) = old {
                    Self::send(
                        inner,
                        node_of(&old),
                        Command::Cancel {
                            job: job.id.clone(),
                            epoch: old_epoch,
                            reason: format!("re-routed: {why}"),
                        },
                    );
                }
                self.dispatch(inner, &job);
            }
            Err(e) => tracing::error!(job = id, error = %e, "re-route could not be stored"),
        }
    }

    /// Best printer for an existing job, skipping `excluded`.
    pub(crate) fn place(
        &self,
        inner: &Inner,
        job: &Job,
        excluded: &[Arc<str>],
    ) -> Option<Placement> {
        let design = self.design_facts(&job.design).ok()?;
        // Only the coarse cell was kept; its centre is within ~1 km of the customer.
        let centre = fabrouter_scheduler::CoarseLocation::parse(&job.coarse_geohash)
            .and_then(|c| c.centre())
            .ok()?;
        let mut spec1 = job.spec.clone();
        spec1.quantity = 1;
        let request = self.request(&design, &spec1, centre, &job.id).ok()?;
        let figures = self.figures(&design, inner.profiles.iter().cloned());
        let estimator = |p: &str| figures.get(p).copied();
        let fleet = self.fleet();
        let decision = self
            .scheduler
            .quote(&request, &fleet, &estimator, excluded.len() + 1)
            .ok()?;
        let name = design.name();
        decision
            .options
            .iter()
            .find(|o| !excluded.iter().any(|x| **x == *o.printer_id))
            .map(|o| crate::quoting::option_placement(o, &name))
    }

    /// Tries to place every QUEUED job (after printers changed).
    pub(crate) fn place_queued(&self, inner: &mut Inner) {
        let queued: Vec<String> = inner.queued.iter().cloned().collect();
        for id in queued {
            let Some(a) = inner.jobs.get(&id) else {
                continue;
            };
            let excluded = a.excluded.clone();
            let (rec, job) = match self.stored(&id) {
                Ok(x) => x,
                Err(e) => {
                    tracing::error!(job = %id, error = %e, "a queued job could not be read");
                    continue;
                }
            };
            if let Some(placement) = self.place(inner, &job, &excluded) {
                let mut job = job;
                job.epoch += 1;
                job.printer = placement.printer.clone();
                let msg = format!(
                    "assigned to {}: {}",
                    placement.makerspace,
                    placement.reasons.join("; ")
                );
                job.placement = Some(placement);
                match self.commit(
                    inner,
                    &rec.owner,
                    job,
                    Some(Event::Placed),
                    vec![Note::new(EventKind::Assigned, msg)],
                ) {
                    Ok(job) => self.dispatch(inner, &job),
                    Err(e) => tracing::error!(job = %id, error = %e, "placing a queued job failed"),
                }
            }
        }
    }
}
