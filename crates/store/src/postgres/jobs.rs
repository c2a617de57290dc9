//! Jobs in PostgreSQL: `jobs` (the record, with `version` as the compare-and-set guard and a
//! partial index on active jobs), `job_events` (per job, numbered from 1, gap-free), and
//! `submissions` (the idempotency entries).
//!
//! A submission is one transaction whose first statement is the idempotency entry,
//! `INSERT … ON CONFLICT DO NOTHING`: of concurrent submits with one key, the first inserts,
//! the others wait for it to commit and then insert nothing, and read back its job ids (a
//! replay, as after a retry). The jobs and their events follow in the same transaction, so a
//! submission is all there or not at all, and nothing needs cleaning after a crash. An update
//! changes the row only where its stored version and last sequence are the ones the caller
//! read, and appends the events in the same transaction.

use super::{Shared, TxError, pg_error, signed, transaction, unsigned};
use crate::{Created, JobRecord, Result, StoreError};

/// Active jobs read per round trip at a restart.
pub(crate) const ACTIVE_PAGE: usize = 500;

const JOB_COLUMNS: &str = "id, owner, version, last_seq, active, job";

fn job_from_row(r: &tokio_postgres::Row) -> Result<JobRecord> {
    Ok(JobRecord {
        id: r.get(0),
        owner: r.get(1),
        version: unsigned(r.get(2), "jobs")?,
        last_seq: unsigned(r.get(3), "jobs")?,
        active: r.get(4),
        job: r.get(5),
    })
}

/// A submission's rows, as columns (one array per column, inserted with `unnest`: one
/// statement for all the jobs and one for all their events).
pub(crate) struct NewJobs {
    owner: String,
    key: String,
    ids: Vec<String>,
    owners: Vec<String>,
    versions: Vec<i64>,
    last_seqs: Vec<i64>,
    actives: Vec<bool>,
    jobs: Vec<Vec<u8>>,
    event_jobs: Vec<String>,
    event_seqs: Vec<i64>,
    events: Vec<Vec<u8>>,
}

impl NewJobs {
    pub(crate) fn new(
        owner: &str,
        key: &str,
        jobs: &[JobRecord],
        events: &[Vec<Vec<u8>>],
    ) -> Result<Self> {
        let mut n = NewJobs {
            owner: owner.to_string(),
            key: key.to_string(),
            ids: Vec::with_capacity(jobs.len()),
            owners: Vec::with_capacity(jobs.len()),
            versions: Vec::with_capacity(jobs.len()),
            last_seqs: Vec::with_capacity(jobs.len()),
            actives: Vec::with_capacity(jobs.len()),
            jobs: Vec::with_capacity(jobs.len()),
            event_jobs: Vec::new(),
            event_seqs: Vec::new(),
            events: Vec::new(),
        };
        for (i, j) in jobs.iter().enumerate() {
            n.ids.push(j.id.clone());
            n.owners.push(j.owner.clone());
            n.versions.push(signed(j.version, "version")?);
            n.last_seqs.push(signed(j.last_seq, "last_seq")?);
            n.actives.push(j.active);
            n.jobs.push(j.job.clone());
            for (seq, ev) in events.get(i).into_iter().flatten().enumerate() {
                n.event_jobs.push(j.id.clone());
                n.event_seqs.push(seq as i64 + 1);
                n.events.push(ev.clone());
            }
        }
        Ok(n)
    }
}

pub(crate) async fn create_jobs(s: &Shared, n: &NewJobs) -> Result<Created> {
    transaction!(s, |tx| {
        let entry = tx
            .prepare_cached(
                "INSERT INTO submissions (owner, key, job_ids) VALUES ($1, $2, $3) \
                 ON CONFLICT (owner, key) DO NOTHING",
            )
            .await?;
        if tx.execute(&entry, &[&n.owner, &n.key, &n.ids]).await? == 0 {
            let prev: Vec<String> = tx
                .query_one(
                    "SELECT job_ids FROM submissions WHERE owner = $1 AND key = $2",
                    &[&n.owner, &n.key],
                )
                .await?
                .get(0);
            Created::Replayed(prev)
        } else {
            let insert_jobs = tx
                .prepare_cached(
                    "INSERT INTO jobs (id, owner, version, last_seq, active, job) \
                     SELECT * FROM unnest($1::text[], $2::text[], $3::int8[], $4::int8[], \
                     $5::bool[], $6::bytea[])",
                )
                .await?;
            tx.execute(
                &insert_jobs,
                &[
                    &n.ids,
                    &n.owners,
                    &n.versions,
                    &n.last_seqs,
                    &n.actives,
                    &n.jobs,
                ],
            )
            .await?;
            if !n.events.is_empty() {
                let insert_events = tx
                    .prepare_cached(
                        "INSERT INTO job_events (job_id, seq, event) \
                         SELECT * FROM unnest($1::text[], $2::int8[], $3::bytea[])",
                    )
                    .await?;
                tx.execute(&insert_events, &[&n.event_jobs, &n.event_seqs, &n.events])
                    .await?;
            }
            Created::New
        }
    })
}

pub(crate) async fn idempotency_lookup(
    s: &Shared,
    owner: &str,
    key: &str,
) -> Result<Option<Vec<String>>> {
    let client = s.client().await.map_err(TxError::into_store)?;
    let row = client
        .query_opt(
            "SELECT job_ids FROM submissions WHERE owner = $1 AND key = $2",
            &[&owner, &key],
        )
        .await
        .map_err(pg_error)?;
    Ok(row.map(|r| r.get(0)))
}

pub(crate) async fn update_job(s: &Shared, job: &JobRecord, events: &[Vec<u8>]) -> Result<()> {
    let conflict = || StoreError::Conflict(format!("job {}", job.id));
    // The version and last sequence the caller read.
    let (Some(read_version), Some(read_seq)) = (
        job.version.checked_sub(1),
        job.last_seq.checked_sub(events.len() as u64),
    ) else {
        return Err(conflict());
    };
    let version = signed(job.version, "version")?;
    let last_seq = signed(job.last_seq, "last_seq")?;
    let read_version = signed(read_version, "version")?;
    let read_seq = signed(read_seq, "last_seq")?;
    let seqs: Vec<i64> = (1..=events.len() as i64).map(|i| read_seq + i).collect();
    transaction!(s, |tx| {
        let update = tx
            .prepare_cached(
                "UPDATE jobs SET version = $2, last_seq = $3, active = $4, job = $5 \
                 WHERE id = $1 AND version = $6 AND last_seq = $7",
            )
            .await?;
        let n = tx
            .execute(
                &update,
                &[
                    &job.id,
                    &version,
                    &last_seq,
                    &job.active,
                    &job.job,
                    &read_version,
                    &read_seq,
                ],
            )
            .await?;
        if n == 0 {
            let exists = tx
                .query_opt("SELECT 1 FROM jobs WHERE id = $1", &[&job.id])
                .await?
                .is_some();
            return Err(if exists {
                conflict()
            } else {
                StoreError::NotFound(format!("job {}", job.id))
            }
            .into());
        }
        if !events.is_empty() {
            let insert = tx
                .prepare_cached(
                    "INSERT INTO job_events (job_id, seq, event) \
                     SELECT $1, * FROM unnest($2::int8[], $3::bytea[])",
                )
                .await?;
            tx.execute(&insert, &[&job.id, &seqs, &events]).await?;
        }
    })
}

pub(crate) async fn get_job(s: &Shared, id: &str) -> Result<Option<JobRecord>> {
    let client = s.client().await.map_err(TxError::into_store)?;
    let stmt = client
        .prepare_cached(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"))
        .await
        .map_err(pg_error)?;
    let row = client.query_opt(&stmt, &[&id]).await.map_err(pg_error)?;
    row.as_ref().map(job_from_row).transpose()
}

pub(crate) async fn list_jobs(
    s: &Shared,
    owner: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<JobRecord>> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let client = s.client().await.map_err(TxError::into_store)?;
    let rows = client
        .query(
            &format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE owner = $1 \
                 AND ($2::text IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
            ),
            &[&owner, &after, &limit],
        )
        .await
        .map_err(pg_error)?;
    rows.iter().map(job_from_row).collect()
}

/// Up to [`ACTIVE_PAGE`] active jobs after the id `after`, oldest first.
pub(crate) async fn active_page(s: &Shared, after: Option<&str>) -> Result<Vec<JobRecord>> {
    let client = s.client().await.map_err(TxError::into_store)?;
    let rows = client
        .query(
            &format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE active \
                 AND ($1::text IS NULL OR id > $1) ORDER BY id LIMIT {ACTIVE_PAGE}"
            ),
            &[&after],
        )
        .await
        .map_err(pg_error)?;
    rows.iter().map(job_from_row).collect()
}

pub(crate) async fn job_events(s: &Shared, id: &str, from_seq: u64) -> Result<Vec<Vec<u8>>> {
    let from = signed(from_seq, "sequence")?;
    let client = s.client().await.map_err(TxError::into_store)?;
    let stmt = client
        .prepare_cached("SELECT event FROM job_events WHERE job_id = $1 AND seq >= $2 ORDER BY seq")
        .await
        .map_err(pg_error)?;
    let rows = client.query(&stmt, &[&id, &from]).await.map_err(pg_error)?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}
