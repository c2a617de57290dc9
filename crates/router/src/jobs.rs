//! The job lifecycle: every change of a stored job goes through [`Network::change`], which
//! holds the job's own lock, asks the state machine ([`transition`]), writes the job and its
//! new events in one store transaction with no other lock held, and only then updates memory,
//! queues, watchers and nodes. Customer actions (cancel, pause, resume) are built on it here;
//! re-routing and placing in `moves`.

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

/// What a change does besides the job's fields.
pub(crate) struct Change {
    /// The lifecycle event, if the state may move.
    pub event: Option<Event>,
    pub notes: Vec<Note>,
    /// Commands for nodes, sent once memory has the change.
    pub tell: Vec<(String, Command)>,
    /// Send the job's assignment to its printer's node (it was placed).
    pub dispatch: bool,
}

impl Change {
    pub fn new(event: Option<Event>, notes: Vec<Note>) -> Change {
        Change {
            event,
            notes,
            tell: Vec::new(),
            dispatch: false,
        }
    }
}

/// One mutex per stripe of job ids: a job's changes are made one at a time, each in full,
/// without holding the registry lock across the store's I/O.
pub(crate) struct JobLocks(Vec<std::sync::Mutex<()>>);

impl JobLocks {
    pub fn new() -> JobLocks {
        JobLocks((0..256).map(|_| std::sync::Mutex::new(())).collect())
    }

    pub fn lock(&self, id: &str) -> std::sync::MutexGuard<'_, ()> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        id.hash(&mut h);
        let stripe = &self.0[(h.finish() % self.0.len() as u64) as usize];
        // A panic mid-change leaves the store and memory as before or after it: nothing to heal.
        stripe.lock().unwrap_or_else(|p| p.into_inner())
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

    /// Changes one job. Under the job's own lock (so changes of one job happen one after the
    /// other, in full): reads it from the store; `prepare` may do I/O with it (a placement's
    /// estimates, the design); `decide` then looks at the registry (locked, no I/O) and changes
    /// the job, or returns `None` for nothing to do. The state machine turns the change's
    /// event into the new state (a refusal writes nothing), the job and its new events are
    /// written with only the job's lock held, and memory, queues, watchers and nodes are
    /// updated last. Never call it with the registry locked.
    pub(crate) fn change<P>(
        &self,
        id: &str,
        prepare: impl FnOnce(&Self, &Job) -> P,
        decide: impl FnOnce(&mut Inner, &mut Job, P) -> Result<Option<Change>>,
    ) -> Result<Option<Job>> {
        let _job_lock = self.job_locks.lock(id);
        if !self.lock().jobs.contains_key(id) {
            return Err(Error::precondition(format!(
                "{} is finished; it cannot change",
                job_name(id)
            )));
        }
        let (stored, mut job) = self.stored(id)?;
        let prepared = prepare(self, &job);
        let (rec, evs, change, from_printer, from_estimate) = {
            let mut inner = self.lock();
            let Some(active) = inner.jobs.get(id) else {
                return Err(Error::precondition(format!(
                    "{} is finished; it cannot change",
                    job_name(id)
                )));
            };
            if active.version != stored.version {
                // Only a change made without the job's lock could do this.
                return Err(Error::Corrupt(format!(
                    "{} changed behind its lock (version {} in memory, {} stored)",
                    job_name(id),
                    active.version,
                    stored.version
                )));
            }
            let (from, version, last_seq) = (active.state, active.version, active.last_seq);
            let (from_printer, from_estimate) = (active.printer.clone(), active.estimate_s);
            let Some(change) = decide(&mut inner, &mut job, prepared)? else {
                return Ok(None);
            };
            job.state = match change.event {
                Some(e) => transition(from, e)?,
                None => from,
            };
            let t = now_ms();
            job.updated_ms = t;
            let evs: Vec<JobEvent> = change
                .notes
                .iter()
                .enumerate()
                .map(|(i, n)| JobEvent {
                    job: id.to_string(),
                    sequence: last_seq + 1 + i as u64,
                    kind: Some(n.kind),
                    state: job.state,
                    time_ms: t,
                    printer: job.printer.clone(),
                    epoch: job.epoch,
                    message: n.message.clone(),
                    progress: job.progress,
                    layer: n.layer,
                    remaining_s: n.remaining_s,
                })
                .collect();
            let rec = JobRecord {
                id: id.to_string(),
                owner: stored.owner.clone(),
                version: version + 1,
                last_seq: last_seq + evs.len() as u64,
                active: !job.state.is_terminal(),
                job: self.codec.encode_job(&job),
            };
            (rec, evs, change, from_printer, from_estimate)
        };
        let encoded: Vec<Vec<u8>> = evs.iter().map(|e| self.codec.encode_event(e)).collect();
        self.store.update_job(&rec, &encoded)?;
        let assignment = (change.dispatch && job.state == JobState::Assigned)
            .then(|| self.assignment(&job))
            .and_then(|a| {
                a.inspect_err(|e| tracing::warn!(job = id, error = %e, "no assignment to send"))
                    .ok()
            });
        let mut inner = self.lock();
        let estimate_s = job.placement.as_ref().map_or(0.0, Placement::print_time_s);
        let moved = !rec.active
            || from_printer.as_deref().unwrap_or("") != job.printer
            || from_estimate != estimate_s;
        if moved {
            let mut fleet = self.fleet_mut();
            let old = from_printer.as_deref().unwrap_or("");
            inner.place_change(&mut fleet, old, &job.design, from_estimate, false);
            if rec.active {
                inner.place_change(&mut fleet, &job.printer, &job.design, estimate_s, true);
            }
        }
        if job.state == JobState::Queued {
            inner.queued.insert(id.to_string());
        } else {
            inner.queued.remove(id);
        }
        if rec.active {
            let printer = if from_printer.as_deref() == Some(job.printer.as_str()) {
                from_printer
            } else {
                inner.intern(&job.printer)
            };
            if let Some(a) = inner.jobs.get_mut(id) {
                a.printer = printer;
                a.state = job.state;
                a.epoch = job.epoch;
                a.version = rec.version;
                a.last_seq = rec.last_seq;
                a.progress = job.progress;
                a.estimate_s = estimate_s;
            }
        } else {
            inner.jobs.remove(id);
        }
        for e in evs {
            let _ = self.events.send(e);
        }
        for (node, cmd) in change.tell {
            Self::send(&inner, &node, cmd);
        }
        if let Some(cmd) = assignment {
            Self::send(&inner, node_of(&job.printer), cmd);
        }
        Ok(Some(job))
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
        let ended = |state: JobState| {
            Error::precondition(format!(
                "{name} already ended ({state}); it cannot be {}",
                match use_ {
                    JobUse::Cancel => "cancelled",
                    _ => "changed",
                }
            ))
        };
        if !self.lock().jobs.contains_key(&job.id) {
            return Err(ended(job.state));
        }
        let mut notice = None;
        let changed = self.change(
            &job.id,
            |_, _| (),
            |inner, job, ()| {
                let state = inner.jobs.get(&job.id).map_or(job.state, |a| a.state);
                // The refusal names the state the job is in now.
                transition(state, event)?;
                if !job.printer.is_empty() {
                    notice = Some((
                        node_of(&job.printer).to_string(),
                        tell(job, job.epoch, &note.message),
                    ));
                }
                Ok(Some(Change::new(Some(event), vec![note])))
            },
        );
        let job = match changed {
            Ok(Some(job)) => job,
            Ok(None) => return Err(Error::Corrupt("a customer's change decided nothing".into())),
            Err(Error::FailedPrecondition(_)) => {
                let now = self.load_job(&job.id)?.map_or(job.state, |j| j.state);
                return Err(ended(now));
            }
            Err(e) => return Err(e),
        };
        let ticket: Ticket = self.ticket();
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
}
