//! Moving jobs between printers: re-routing a job off its printer (a fault, a declined
//! assignment, a silent node), placing queued jobs when printers come back, and resending an
//! assignment a reconnected node does not hold. Each move is one [`Network::change`]: the
//! placement (estimates, the design) is worked out under the job's lock before the registry
//! is looked at, and never under the registry lock.

use crate::jobs::{Change, Note};
use crate::lifecycle::{Event, JobState};
use crate::model::{EventKind, Job, Placement, node_of};
use crate::protocol::Command;
use crate::{Network, Result};

impl Network {
    /// Moves a job off its printer: to another capable printer, to the queue if none, or to
    /// FAILED after too many re-routes. Only if it is still at `epoch` (an older reason is
    /// stale). `exclude_current`: the printer failed it and is never chosen again for it.
    pub(crate) fn reroute(&self, id: &str, epoch: u64, why: &str, exclude_current: bool) {
        let max = self.config.max_reroutes;
        let res = self.change(
            id,
            |net, job| {
                let mut excluded = job.failed_printers.clone();
                if exclude_current && !job.printer.is_empty() && !excluded.contains(&job.printer) {
                    excluded.push(job.printer.clone());
                }
                let placement = (job.epoch == epoch && job.reroutes < max)
                    .then(|| net.place(job, &excluded))
                    .flatten();
                (excluded, placement)
            },
            |inner, job, (excluded, placement)| {
                let Some(active) = inner.jobs.get_mut(id) else {
                    return Ok(None);
                };
                if active.epoch != epoch || !active.state.on_printer() {
                    return Ok(None); // moved or ended since the reason arose
                }
                active.lost_since = None;
                let old = job.printer.clone();
                job.failed_printers = excluded;
                job.epoch += 1;
                job.reroutes += 1;
                job.progress = 0.0;
                let mut notes = vec![Note::new(EventKind::Rerouted, why)];
                let mut dispatch = false;
                let event = if job.reroutes > max {
                    job.printer = String::new();
                    job.failure_reason = format!("{why}; gave up after {max} re-routes");
                    notes.push(Note::new(EventKind::Failed, job.failure_reason.clone()));
                    Event::Fail
                } else if let Some(p) = placement {
                    notes.push(Note::new(
                        EventKind::Assigned,
                        format!("re-routed to {}: {}", p.makerspace, p.reasons.join("; ")),
                    ));
                    job.printer = p.printer.clone();
                    job.placement = Some(p);
                    dispatch = true;
                    Event::Moved { placed: true }
                } else {
                    job.printer = String::new();
                    notes.push(Note::new(
                        EventKind::Rerouted,
                        "no capable printer is online; waiting for one",
                    ));
                    Event::Moved { placed: false }
                };
                let mut change = Change::new(Some(event), notes);
                change.dispatch = dispatch;
                if !old.is_empty() {
                    change.tell.push((
                        node_of(&old).to_string(),
                        Command::Cancel {
                            job: id.to_string(),
                            epoch,
                            reason: format!("re-routed: {why}"),
                        },
                    ));
                }
                Ok(Some(change))
            },
        );
        if let Err(e) = res {
            tracing::error!(job = id, error = %e, "re-route could not be stored");
        }
    }

    /// Best printer for an existing job, skipping `excluded` printers. May estimate the
    /// design (slow): never call it with the registry locked.
    pub(crate) fn place(&self, job: &Job, excluded: &[String]) -> Option<Placement> {
        let design = self.design_facts(&job.design).ok()?;
        // Only the coarse cell was kept; its centre is within ~1 km of the customer.
        let centre = fabrouter_scheduler::CoarseLocation::parse(&job.coarse_geohash)
            .and_then(|c| c.centre())
            .ok()?;
        let mut spec1 = job.spec.clone();
        spec1.quantity = 1;
        let request = self.request(&design, &spec1, centre, &job.id).ok()?;
        let figures = self.figures(&design, self.fleet_profiles());
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
            .find(|o| !excluded.contains(&o.printer_id))
            .map(|o| crate::quoting::option_placement(o, &name))
    }

    /// Tries to place every QUEUED job (after printers changed). Never call it with the
    /// registry locked.
    pub(crate) fn place_queued(&self) {
        let queued: Vec<String> = self.lock().queued.iter().cloned().collect();
        for id in queued {
            let res = self.change(
                &id,
                |net, job| {
                    (job.state == JobState::Queued)
                        .then(|| net.place(job, &job.failed_printers))
                        .flatten()
                },
                |inner, job, placement| {
                    let queued = inner
                        .jobs
                        .get(&id)
                        .is_some_and(|a| a.state == JobState::Queued);
                    let Some(p) = placement.filter(|_| queued) else {
                        return Ok(None);
                    };
                    job.epoch += 1;
                    job.printer = p.printer.clone();
                    let msg = format!("assigned to {}: {}", p.makerspace, p.reasons.join("; "));
                    job.placement = Some(p);
                    let mut change = Change::new(
                        Some(Event::Placed),
                        vec![Note::new(EventKind::Assigned, msg)],
                    );
                    change.dispatch = true;
                    Ok(Some(change))
                },
            );
            if let Err(e) = res {
                tracing::error!(job = %id, error = %e, "placing a queued job failed");
            }
        }
    }

    /// Sends a job's assignment again if it is still ASSIGNED at `epoch` (its node
    /// reconnected without it).
    pub(crate) fn resend(&self, id: &str, epoch: u64) -> Result<()> {
        let _job_lock = self.job_locks.lock(id);
        let Some(job) = self.load_job(id)? else {
            return Ok(());
        };
        let cmd = self.assignment(&job)?;
        let inner = self.lock();
        let current = inner
            .jobs
            .get(id)
            .is_some_and(|a| a.epoch == epoch && a.state == JobState::Assigned);
        if current && job.epoch == epoch {
            Self::send(&inner, node_of(&job.printer), cmd);
        }
        Ok(())
    }
}
