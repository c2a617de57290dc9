//! Copying a router's whole state from its sled directory into another store (`fabd migrate
//! --from <dir> --to postgres://…`): designs with their bytes (streamed), tokens, node
//! identities, jobs with their full histories under their submissions' idempotency keys,
//! printers and cached values.
//!
//! Every write goes through the target's [`Store`] trait, with the trait's own guards, so the
//! copy is safe to run again after an interruption: a design or node already there is
//! skipped (`AlreadyExists`), a submission already there is a replay, tokens, printers and
//! cached values are overwritten with the same values. Nothing in the source is changed.

use std::io::Write;

use crate::{Created, JobRecord, Result, SledStore, Store, StoreError};

/// What a copy wrote (and skipped as already there).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CopyReport {
    pub designs: usize,
    pub designs_present: usize,
    pub blob_bytes: u64,
    pub tokens: usize,
    pub nodes: usize,
    pub nodes_present: usize,
    pub submissions: usize,
    pub submissions_present: usize,
    pub jobs: usize,
    pub events: usize,
    pub printers: usize,
    pub cache_entries: usize,
}

impl std::fmt::Display for CopyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} designs ({} bytes; {} already there), {} tokens, {} nodes ({} already there), \
             {} submissions with {} jobs and {} events ({} submissions already there), \
             {} printers, {} cached values",
            self.designs,
            self.blob_bytes,
            self.designs_present,
            self.tokens,
            self.nodes,
            self.nodes_present,
            self.submissions,
            self.jobs,
            self.events,
            self.submissions_present,
            self.printers,
            self.cache_entries
        )
    }
}

/// Copies everything in `from` into `to` (see the module doc).
pub fn copy_store(from: &SledStore, to: &dyn Store) -> Result<CopyReport> {
    let mut r = CopyReport::default();
    for rec in from.all_designs() {
        let rec = rec?;
        if to.get_design(&rec.id)?.is_some() {
            r.designs_present += 1;
            continue;
        }
        let mut reader = from.blobs().open(&rec.sha256)?;
        let mut writer = to.blobs().writer()?;
        std::io::copy(&mut reader, &mut writer)?;
        writer.flush()?;
        let blob = writer.commit()?;
        if blob.sha256 != rec.sha256 {
            return Err(StoreError::Corrupt {
                tree: "blobs",
                reason: format!(
                    "the bytes of design {} hash to {}, not {}",
                    rec.id, blob.sha256, rec.sha256
                ),
            });
        }
        match to.put_design(&rec, &blob) {
            Ok(()) => {
                r.designs += 1;
                r.blob_bytes += rec.size_bytes;
            }
            Err(StoreError::AlreadyExists(_)) => r.designs_present += 1,
            Err(e) => return Err(e),
        }
    }
    for t in from.list_tokens()? {
        to.put_token(&t)?;
        r.tokens += 1;
    }
    for n in from.all_nodes() {
        match to.create_node(&n?) {
            Ok(()) => r.nodes += 1,
            Err(StoreError::AlreadyExists(_)) => r.nodes_present += 1,
            Err(e) => return Err(e),
        }
    }
    let mut listed = std::collections::HashSet::new();
    for entry in from.all_submissions() {
        let (owner, key, ids) = entry?;
        listed.extend(ids.iter().cloned());
        copy_jobs(from, to, &owner, &key, &ids, &mut r)?;
    }
    // Jobs no submission lists (none are expected: every submission has its entry, and
    // the store removes the jobs of one that never committed) keep a key of their own.
    for id in from.all_job_ids() {
        let id = id?;
        if listed.contains(&id) {
            continue;
        }
        if let Some(job) = from.get_job(&id)? {
            let key = format!("migrated-{id}");
            copy_jobs(
                from,
                to,
                &job.owner,
                &key,
                std::slice::from_ref(&id),
                &mut r,
            )?;
        }
    }
    for (name, printer) in from.list_printers()? {
        to.put_printer(&name, &printer)?;
        r.printers += 1;
    }
    for entry in from.all_cache() {
        let (k, v) = entry?;
        to.cache_put(&k, &v)?;
        r.cache_entries += 1;
    }
    Ok(r)
}

/// One submission's jobs with their whole histories, under its key.
fn copy_jobs(
    from: &SledStore,
    to: &dyn Store,
    owner: &str,
    key: &str,
    ids: &[String],
    r: &mut CopyReport,
) -> Result<()> {
    let mut jobs: Vec<JobRecord> = Vec::with_capacity(ids.len());
    let mut events = Vec::with_capacity(ids.len());
    for id in ids {
        let job = from.get_job(id)?.ok_or_else(|| StoreError::Corrupt {
            tree: "idempotency",
            reason: format!("submission {key:?} of {owner} lists job {id}, which is missing"),
        })?;
        let evs = from.job_events(id, 1)?;
        if evs.len() as u64 != job.last_seq {
            return Err(StoreError::Corrupt {
                tree: "job_events",
                reason: format!(
                    "job {id} has {} events stored but its last sequence is {}",
                    evs.len(),
                    job.last_seq
                ),
            });
        }
        jobs.push(job);
        events.push(evs);
    }
    match to.create_jobs(owner, key, &jobs, &events)? {
        Created::New => {
            r.submissions += 1;
            r.jobs += jobs.len();
            r.events += events.iter().map(Vec::len).sum::<usize>();
        }
        Created::Replayed(_) => r.submissions_present += 1,
    }
    Ok(())
}
