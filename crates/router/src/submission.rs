//! Submission: a customer's spec and idempotency key become durable jobs on their printers.
//! Routing and encoding happen before the registry lock; the store's `create_jobs` (whose
//! commit point is the idempotency key) and the registry update happen under it.

use fabrouter_scheduler as sched;
use fabrouter_store::{Created, JobRecord};

use crate::access::Principal;
use crate::lifecycle::{Event, JobState, transition};
use crate::model::{EventKind, Job, JobEvent, JobSpec, Submitted, node_of};
use crate::quoting::placement;
use crate::registry::ActiveJob;
use crate::{Error, Network, Result, Ticket, now_ms};

/// Most idempotency key length.
const MAX_IDEMPOTENCY_KEY: usize = 128;

type Answer = Result<Option<(Submitted, Ticket)>>;

impl Network {
    /// Stores a submission and routes it. The caller must await the returned ticket
    /// ([`Network::durable`]) before answering: the jobs are acknowledged only once on disk.
    /// `printer`: a chosen quote option's printer, or empty. With `may_block` false, returns
    /// `Ok(None)` before changing anything when the design's estimates are not in memory yet
    /// (computing them may take seconds): call again from a blocking thread.
    pub fn submit(
        &self,
        who: &Principal,
        spec: Option<&JobSpec>,
        printer: &str,
        idempotency_key: &str,
        may_block: bool,
    ) -> Answer {
        let key = idempotency_key.trim();
        if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY {
            return Err(Error::invalid(
                "idempotency_key",
                format!(
                    "an idempotency key of 1-{MAX_IDEMPOTENCY_KEY} characters is required (e.g. a UUID), so a retry cannot print twice"
                ),
            ));
        }
        // A replay is found by `create_jobs` when it would store the jobs (its commit point is
        // the key): looking the key up here too would cost every submit a second store read.
        // Where routing cannot go on (an error, or estimates still to compute), the key is
        // looked up then, so a retry still gets its jobs.
        let Some(spec) = spec else {
            return self.replay_or(who, key, Error::invalid("spec", "spec is required"));
        };
        let (design, request) = match self.customer_request(who, spec, key) {
            Ok(found) => found,
            Err(e) => return self.replay_or(who, key, e),
        };
        let coarse = sched::coarse_location(request.customer)
            .map(|c| c.as_str().to_string())
            .unwrap_or_default();
        // Privacy: the exact point served the decision; only the ~1 km cell is kept.
        let mut spec = spec.clone();
        spec.customer_location = None;
        spec.quantity = request.quantity;
        let chosen = (!printer.is_empty()).then_some(printer);
        let Some(figures) = self.figures_if(&design, self.fleet_profiles(), may_block) else {
            // Computing them may take seconds; a retry of a stored submit need not wait.
            return self.replay(who, key);
        };
        let estimator = |p: &str| figures.get(p).copied();
        // Routing and encoding happen before the registry lock: concurrent submissions route
        // side by side. Queues they add meanwhile are not seen, which only shifts the balance.
        let design_name = design.name();
        let assignment = match self.assign(&request, &estimator, chosen) {
            Ok(a) => a,
            Err(e) => return self.replay_or(who, key, e),
        };
        let mut new = self.new_jobs(who, &assignment, &design.id, &design_name, &coarse, &spec)?;
        // A printer that stopped taking jobs since (its node's lease ran out) would keep the
        // job until the node returns: route again.
        if !self.placements_open(&assignment) {
            let assignment = match self.assign(&request, &estimator, chosen) {
                Ok(a) => a,
                Err(e) => return self.replay_or(who, key, e),
            };
            new = self.new_jobs(who, &assignment, &design.id, &design_name, &coarse, &spec)?;
        }
        // The write happens outside the registry lock: the store orders submissions by their
        // idempotency keys, and nothing else can touch jobs nobody has heard of yet.
        let created = self
            .store
            .create_jobs(&who.id, key, &new.recs, &new.encoded)?;
        let ticket = self.ticket();
        if let Created::Replayed(_) = created {
            let jobs = self.replayed(&who.id, key)?.unwrap_or_default();
            return Ok(Some((
                Submitted {
                    jobs,
                    replayed: true,
                },
                ticket,
            )));
        }
        let commands: Vec<_> = new
            .jobs
            .iter()
            .map(|(job, _)| Self::assignment_of(job, design.clone()))
            .collect();
        let mut inner = self.lock();
        {
            let mut fleet = self.fleet_mut();
            for (job, estimate_s) in &new.jobs {
                inner.place_change(&mut fleet, &job.printer, &job.design, *estimate_s, true);
            }
        }
        let mut out = Vec::with_capacity(new.jobs.len());
        let mut closed = Vec::new();
        let jobs = new
            .recs
            .into_iter()
            .zip(new.jobs)
            .zip(new.events)
            .zip(commands);
        for (((rec, (job, _)), evs), cmd) in jobs {
            let printer = inner.intern(&job.printer);
            let active = ActiveJob::of(&job, &rec, printer);
            inner.jobs.insert(rec.id, active);
            if self
                .fleet()
                .get(&job.printer)
                .is_some_and(|p| p.state.accepts_jobs())
            {
                Self::send(&inner, node_of(&job.printer), cmd);
            } else {
                closed.push(job.id.clone());
            }
            for e in evs {
                let _ = self.events.send(e);
            }
            out.push(job);
        }
        drop(inner);
        // Its printer stopped taking jobs between the routing and now: move it on at once.
        for id in closed {
            self.reroute(
                &id,
                1,
                "the printer stopped taking jobs as the job was placed",
                false,
            );
        }
        tracing::debug!(jobs = out.len(), design = %design_name, "jobs submitted");
        Ok(Some((
            Submitted {
                jobs: out,
                replayed: false,
            },
            ticket,
        )))
    }

    /// The jobs an earlier submit with `key` made, as a replay, if there was one. The ticket
    /// covers jobs whose submit is still waiting for its flush.
    fn replay(&self, who: &Principal, key: &str) -> Answer {
        Ok(self.replayed(&who.id, key)?.map(|jobs| {
            (
                Submitted {
                    jobs,
                    replayed: true,
                },
                self.ticket(),
            )
        }))
    }

    /// [`Network::replay`], or `err` when `key` is new.
    fn replay_or(&self, who: &Principal, key: &str, err: Error) -> Answer {
        match self.replay(who, key)? {
            Some(replay) => Ok(Some(replay)),
            None => Err(err),
        }
    }

    fn replayed(&self, owner: &str, key: &str) -> Result<Option<Vec<Job>>> {
        match self.store.idempotency_lookup(owner, key)? {
            None => Ok(None),
            Some(ids) => {
                let mut jobs = Vec::new();
                for id in ids {
                    if let Some(j) = self.load_job(&id)? {
                        jobs.push(j);
                    }
                }
                Ok(Some(jobs))
            }
        }
    }

    /// The jobs of one submission, built and encoded before the registry lock is taken.
    /// Each is created QUEUED and placed at once (the state machine's first two steps).
    fn new_jobs(
        &self,
        who: &Principal,
        assignment: &sched::Assignment,
        design_id: &str,
        design_name: &str,
        coarse: &str,
        spec: &JobSpec,
    ) -> Result<NewJobs> {
        let t = now_ms();
        let n = assignment.placements.len();
        let mut new = NewJobs {
            recs: Vec::with_capacity(n),
            events: Vec::with_capacity(n),
            encoded: Vec::with_capacity(n),
            jobs: Vec::with_capacity(n),
        };
        let placed = transition(JobState::Queued, Event::Placed)?;
        for p in &assignment.placements {
            let id = uuid::Uuid::now_v7().simple().to_string();
            let job = Job {
                id: id.clone(),
                design: design_id.to_string(),
                owner: who.id.clone(),
                state: placed,
                printer: p.printer_id.clone(),
                epoch: 1,
                coarse_geohash: coarse.to_string(),
                progress: 0.0,
                created_ms: t,
                updated_ms: t,
                placement: Some(placement(p, design_name)),
                failure_reason: String::new(),
                reroutes: 0,
                spec: spec.clone(),
                failed_printers: Vec::new(),
                last_report_ms: 0,
            };
            let ev = |sequence: u64, kind: EventKind, state: JobState, message: String| {
                let assigned = kind == EventKind::Assigned;
                JobEvent {
                    job: id.clone(),
                    sequence,
                    kind: Some(kind),
                    state,
                    time_ms: t,
                    printer: if assigned {
                        job.printer.clone()
                    } else {
                        String::new()
                    },
                    epoch: u64::from(assigned),
                    message,
                    ..Default::default()
                }
            };
            let evs = vec![
                ev(
                    1,
                    EventKind::Created,
                    JobState::Queued,
                    "job created".into(),
                ),
                ev(
                    2,
                    EventKind::Assigned,
                    placed,
                    format!("assigned to {}: {}", p.makerspace, p.reasons.join("; ")),
                ),
            ];
            new.recs.push(JobRecord {
                id,
                owner: who.id.clone(),
                version: 0,
                last_seq: 2,
                active: true,
                job: self.codec.encode_job(&job),
            });
            new.encoded
                .push(evs.iter().map(|e| self.codec.encode_event(e)).collect());
            new.events.push(evs);
            new.jobs.push((job, p.estimate.print_time_s));
        }
        Ok(new)
    }
}

/// The jobs of one submission.
struct NewJobs {
    recs: Vec<JobRecord>,
    /// Per job: its first events, and the same encoded for the store.
    events: Vec<Vec<JobEvent>>,
    encoded: Vec<Vec<Vec<u8>>>,
    /// Per job: the job and the estimated print time of its copy.
    jobs: Vec<(Job, f64)>,
}
