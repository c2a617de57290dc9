//! Jobs in sled: the records, their owner and active indexes, their event histories and the
//! idempotency entries of submissions, kept apart from designs and tokens because they are the
//! most numerous and most often rewritten records and have their own crash rule.
//!
//! Trees: `jobs` (id -> record), `owner_jobs` (owner NUL id -> ()), `active_jobs` (id -> ()),
//! `job_events` (id NUL seq(u64 BE) -> event), `idempotency` (owner NUL key -> job ids).
//! Updates go through one sled transaction; the creation of jobs does not: its writes end with
//! the idempotency entry, the commit point, and a start-up removes the jobs of submissions that
//! never reached it ([`JobTrees::write_uncommitted_jobs`]).
//!
//! Records use a compact binary layout ([`encode_job`]) rather than JSON; job records written as
//! JSON by older versions still read.

use sled::Transactional;
use sled::transaction::ConflictableTransactionError;

use super::{Sled, decode, encode, owner_key, owner_page, tx_err};
use crate::{Created, JobRecord, Result, StoreError};

/// The job trees of a [`super::SledStore`].
pub(super) struct JobTrees {
    pub(super) jobs: sled::Tree,
    pub(super) owner_jobs: sled::Tree,
    pub(super) active_jobs: sled::Tree,
    pub(super) job_events: sled::Tree,
    pub(super) idempotency: sled::Tree,
}

/// First byte of a binary job record (a JSON record starts with `{`).
const JOB_FORMAT_V1: u8 = 1;
/// First byte of a job record as `create_jobs` writes it: the V1 layout with the submission's
/// idempotency entry key after the owner (`[len u32 LE][key]`), so that a start-up can tell
/// whether the submission committed ([`SledStore::remove_uncommitted_jobs`]). An update
/// rewrites the record as V1.
const JOB_FORMAT_NEW: u8 = 2;
/// Tag, version, last sequence, active flag.
const JOB_HEADER_LEN: usize = 1 + 8 + 8 + 1;

/// A job record as `[1][version u64 LE][last_seq u64 LE][active u8][id len u32 LE][id]`
/// `[owner len u32 LE][owner][encoded job...]`: the job bytes are kept as they are, where
/// JSON would write each byte as a decimal number (three times the size, and slow to parse).
fn encode_job(job: &JobRecord) -> Result<Vec<u8>> {
    encode_job_as(job, None)
}

/// [`encode_job`], or with `submission` (the idempotency entry key) the [`JOB_FORMAT_NEW`]
/// layout.
fn encode_job_as(job: &JobRecord, submission: Option<&[u8]>) -> Result<Vec<u8>> {
    let len = |n: usize| {
        u32::try_from(n).map_err(|_| StoreError::Corrupt {
            tree: "jobs",
            reason: format!("job {}: id, owner or key longer than 4 GiB", job.id),
        })
    };
    let (id_len, owner_len) = (len(job.id.len())?, len(job.owner.len())?);
    let key_len = submission.map(|k| len(k.len())).transpose()?;
    let mut out = Vec::with_capacity(
        JOB_HEADER_LEN
            + 12
            + job.id.len()
            + job.owner.len()
            + submission.map_or(0, <[u8]>::len)
            + job.job.len(),
    );
    out.push(if submission.is_some() {
        JOB_FORMAT_NEW
    } else {
        JOB_FORMAT_V1
    });
    out.extend_from_slice(&job.version.to_le_bytes());
    out.extend_from_slice(&job.last_seq.to_le_bytes());
    out.push(u8::from(job.active));
    out.extend_from_slice(&id_len.to_le_bytes());
    out.extend_from_slice(job.id.as_bytes());
    out.extend_from_slice(&owner_len.to_le_bytes());
    out.extend_from_slice(job.owner.as_bytes());
    if let (Some(k), Some(n)) = (submission, key_len) {
        out.extend_from_slice(&n.to_le_bytes());
        out.extend_from_slice(k);
    }
    out.extend_from_slice(&job.job);
    Ok(out)
}

fn is_binary_job(bytes: &[u8]) -> bool {
    matches!(bytes.first(), Some(&JOB_FORMAT_V1 | &JOB_FORMAT_NEW))
}

fn corrupt_job(reason: &str) -> StoreError {
    StoreError::Corrupt {
        tree: "jobs",
        reason: reason.to_string(),
    }
}

/// Reads a job record in any layout.
fn decode_job(bytes: &[u8]) -> Result<JobRecord> {
    if !is_binary_job(bytes) {
        return decode("jobs", bytes);
    }
    let (version, last_seq) = job_header(bytes)?;
    let f = job_fields(bytes)?;
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|e| corrupt_job(&e.to_string()));
    Ok(JobRecord {
        id: text(f.id)?,
        owner: text(f.owner)?,
        version,
        last_seq,
        active: bytes[JOB_HEADER_LEN - 1] != 0,
        job: f.job.to_vec(),
    })
}

/// The variable parts of a binary job record, borrowed.
struct JobFields<'a> {
    id: &'a [u8],
    owner: &'a [u8],
    submission: Option<&'a [u8]>,
    job: &'a [u8],
}

/// Splits a binary job record ([`is_binary_job`]) without copying it.
fn job_fields(bytes: &[u8]) -> Result<JobFields<'_>> {
    let mut rest = bytes
        .get(JOB_HEADER_LEN..)
        .ok_or_else(|| corrupt_job("truncated job record"))?;
    let mut field = || -> Result<&[u8]> {
        let (len, tail) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| corrupt_job("truncated job record"))?;
        let len = u32::from_le_bytes(*len) as usize;
        if tail.len() < len {
            return Err(corrupt_job("truncated job record"));
        }
        let (s, tail) = tail.split_at(len);
        rest = tail;
        Ok(s)
    };
    let id = field()?;
    let owner = field()?;
    let submission = if bytes[0] == JOB_FORMAT_NEW {
        Some(field()?)
    } else {
        None
    };
    Ok(JobFields {
        id,
        owner,
        submission,
        job: rest,
    })
}

/// Version and last sequence of a stored job record, without copying the job.
fn job_header(bytes: &[u8]) -> Result<(u64, u64)> {
    if !is_binary_job(bytes) {
        let rec: JobRecord = decode("jobs", bytes)?;
        return Ok((rec.version, rec.last_seq));
    }
    let field = |at: usize| {
        bytes
            .get(at..at + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
            .ok_or_else(|| corrupt_job("truncated job record"))
    };
    if bytes.len() < JOB_HEADER_LEN {
        return Err(corrupt_job("truncated job record"));
    }
    Ok((field(1)?, field(9)?))
}

fn event_key(id: &str, seq: u64) -> Vec<u8> {
    let mut k = owner_key(id, "");
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

impl JobTrees {
    /// Opens the job trees and removes what submissions that never committed left behind.
    pub(super) fn open(db: &sled::Db) -> Result<Self> {
        let trees = Self {
            jobs: db.open_tree("jobs").db()?,
            owner_jobs: db.open_tree("owner_jobs").db()?,
            active_jobs: db.open_tree("active_jobs").db()?,
            job_events: db.open_tree("job_events").db()?,
            idempotency: db.open_tree("idempotency").db()?,
        };
        trees.remove_uncommitted_jobs()?;
        Ok(trees)
    }

    /// Writes the jobs of a submission, without its idempotency entry, in the order that
    /// [`SledStore::remove_uncommitted_jobs`] relies on: per job the active marker, the record,
    /// the owner index, the events.
    ///
    /// Not a sled transaction, on purpose: sled 0.34 writes out its log buffer twice for every
    /// transaction or batch (to place the batch's manifest), which cost a third of the CPU of
    /// a durable submit. Single writes suffice because sled recovers its log in order, up to
    /// the first write that did not reach the disk: if the idempotency entry (written last,
    /// `create_jobs`' commit point) survives a crash, everything written before it does too.
    fn write_uncommitted_jobs(
        &self,
        jobs: &[JobRecord],
        values: &[Vec<u8>],
        events: &[Vec<Vec<u8>>],
    ) -> Result<()> {
        for (i, (job, value)) in jobs.iter().zip(values).enumerate() {
            if job.active {
                self.active_jobs
                    .insert(job.id.as_bytes(), &[] as &[u8])
                    .db()?;
            }
            self.jobs.insert(job.id.as_bytes(), value.as_slice()).db()?;
            self.owner_jobs
                .insert(owner_key(&job.owner, &job.id), &[] as &[u8])
                .db()?;
            for (n, ev) in events.get(i).into_iter().flatten().enumerate() {
                self.job_events
                    .insert(event_key(&job.id, n as u64 + 1), ev.as_slice())
                    .db()?;
            }
        }
        Ok(())
    }

    /// Removes jobs with their markers, owner index entries (when the owner is known) and
    /// events.
    fn remove_jobs<'a>(
        &self,
        jobs: impl Iterator<Item = (&'a str, Option<&'a str>)>,
    ) -> Result<()> {
        for (id, owner) in jobs {
            for item in self.job_events.scan_prefix(owner_key(id, "")).keys() {
                self.job_events.remove(item.db()?).db()?;
            }
            if let Some(owner) = owner {
                self.owner_jobs.remove(owner_key(owner, id)).db()?;
            }
            self.jobs.remove(id.as_bytes()).db()?;
            self.active_jobs.remove(id.as_bytes()).db()?;
        }
        Ok(())
    }

    /// Removes what a submission that never committed left behind (a crash before its
    /// idempotency entry was written; it was never acknowledged, and its retry makes new
    /// jobs): jobs written by `create_jobs` whose entry does not list them, and active
    /// markers without a record. Such jobs are active and never updated, so only active jobs
    /// are looked at. Returns how many jobs were removed.
    fn remove_uncommitted_jobs(&self) -> Result<usize> {
        let mut orphans: Vec<(String, Option<String>)> = Vec::new();
        for item in self.active_jobs.iter().keys() {
            let key = item.db()?;
            let id = String::from_utf8(key.to_vec()).map_err(|e| StoreError::Corrupt {
                tree: "active_jobs",
                reason: e.to_string(),
            })?;
            let Some(value) = self.jobs.get(&key).db()? else {
                orphans.push((id, None));
                continue;
            };
            // Records in older layouts were written by transactions: committed.
            if !is_binary_job(&value) {
                continue;
            }
            let f = job_fields(&value)?;
            let Some(submission) = f.submission else {
                continue;
            };
            let listed = match self.idempotency.get(submission).db()? {
                Some(ids) => decode::<Vec<String>>("idempotency", &ids)?.contains(&id),
                None => false,
            };
            if !listed {
                let owner = String::from_utf8_lossy(f.owner).into_owned();
                orphans.push((id, Some(owner)));
            }
        }
        for (id, _) in &orphans {
            tracing::warn!(job = %id, "removing a job whose submission never committed");
        }
        self.remove_jobs(orphans.iter().map(|(id, o)| (id.as_str(), o.as_deref())))?;
        Ok(orphans.len())
    }

    pub(super) fn create_jobs(
        &self,
        owner: &str,
        idempotency_key: &str,
        jobs: &[JobRecord],
        events: &[Vec<Vec<u8>>],
    ) -> Result<Created> {
        let idem = owner_key(owner, idempotency_key);
        if let Some(prev) = self.idempotency.get(&idem).db()? {
            return Ok(Created::Replayed(decode("idempotency", &prev)?));
        }
        let values = jobs
            .iter()
            .map(|j| encode_job_as(j, Some(&idem)))
            .collect::<Result<Vec<_>>>()?;
        let ids: Vec<String> = jobs.iter().map(|j| j.id.clone()).collect();
        let ids_value = encode("idempotency", &ids)?;
        let take_back = || self.remove_jobs(jobs.iter().map(|j| (j.id.as_str(), Some(&*j.owner))));
        let written = self
            .write_uncommitted_jobs(jobs, &values, events)
            .and_then(|()| {
                // The commit point. Anything a concurrent submit with the same key wrote meanwhile
                // loses here and is taken back.
                self.idempotency
                    .compare_and_swap(&idem, None as Option<&[u8]>, Some(ids_value))
                    .db()
            });
        match written {
            Ok(Ok(())) => Ok(Created::New),
            Ok(Err(lost)) => {
                take_back()?;
                let prev = lost.current.ok_or_else(|| StoreError::Corrupt {
                    tree: "idempotency",
                    reason: "an entry vanished while it was compared".into(),
                })?;
                Ok(Created::Replayed(decode("idempotency", &prev)?))
            }
            Err(e) => {
                // Best effort; a start-up removes what is left (nothing names these jobs).
                let _ = take_back();
                Err(e)
            }
        }
    }

    pub(super) fn idempotency_lookup(
        &self,
        owner: &str,
        idempotency_key: &str,
    ) -> Result<Option<Vec<String>>> {
        self.idempotency
            .get(owner_key(owner, idempotency_key))
            .db()?
            .map(|v| decode("idempotency", &v))
            .transpose()
    }

    pub(super) fn update_job(&self, job: &JobRecord, events: &[Vec<u8>]) -> Result<()> {
        let value = encode_job(job)?;
        let trees = (&self.jobs, &self.active_jobs, &self.job_events);
        trees
            .transaction(|(t_jobs, t_active, t_events)| {
                let (version, last_seq) = match t_jobs.get(job.id.as_bytes())? {
                    Some(v) => job_header(&v).map_err(ConflictableTransactionError::Abort)?,
                    None => {
                        return Err(ConflictableTransactionError::Abort(StoreError::NotFound(
                            format!("job {}", job.id),
                        )));
                    }
                };
                if version + 1 != job.version || last_seq + events.len() as u64 != job.last_seq {
                    return Err(ConflictableTransactionError::Abort(StoreError::Conflict(
                        format!("job {}", job.id),
                    )));
                }
                t_jobs.insert(job.id.as_bytes(), value.as_slice())?;
                if job.active {
                    t_active.insert(job.id.as_bytes(), &[] as &[u8])?;
                } else {
                    t_active.remove(job.id.as_bytes())?;
                }
                for (n, ev) in events.iter().enumerate() {
                    t_events.insert(event_key(&job.id, last_seq + n as u64 + 1), ev.as_slice())?;
                }
                Ok(())
            })
            .map_err(tx_err)
    }

    pub(super) fn get_job(&self, id: &str) -> Result<Option<JobRecord>> {
        self.jobs
            .get(id.as_bytes())
            .db()?
            .map(|v| decode_job(&v))
            .transpose()
    }

    pub(super) fn list_jobs(
        &self,
        owner: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<JobRecord>> {
        owner_page(&self.owner_jobs, "owner_jobs", owner, after, limit, |id| {
            self.get_job(id)
        })
    }

    pub(super) fn visit_active_jobs(
        &self,
        visit: &mut dyn FnMut(JobRecord) -> Result<()>,
    ) -> Result<()> {
        for item in self.active_jobs.iter() {
            let (id, _) = item.db()?;
            if let Some(v) = self.jobs.get(&id).db()? {
                visit(decode_job(&v)?)?;
            }
        }
        Ok(())
    }

    /// Every idempotency entry as (owner, key, job ids).
    pub(super) fn all_submissions(
        &self,
    ) -> impl Iterator<Item = Result<(String, String, Vec<String>)>> + '_ {
        self.idempotency.iter().map(|item| {
            let (k, v) = item.db()?;
            let corrupt = || StoreError::Corrupt {
                tree: "idempotency",
                reason: "an entry key without owner".into(),
            };
            let at = k.iter().position(|&b| b == 0).ok_or_else(corrupt)?;
            let owner = String::from_utf8(k[..at].to_vec()).map_err(|_| corrupt())?;
            let key = String::from_utf8(k[at + 1..].to_vec()).map_err(|_| corrupt())?;
            Ok((owner, key, decode("idempotency", &v)?))
        })
    }

    /// Every job id.
    pub(super) fn all_job_ids(&self) -> impl Iterator<Item = Result<String>> + '_ {
        self.jobs.iter().keys().map(|k| {
            String::from_utf8(k.db()?.to_vec()).map_err(|e| StoreError::Corrupt {
                tree: "jobs",
                reason: e.to_string(),
            })
        })
    }

    pub(super) fn job_events(&self, id: &str, from_seq: u64) -> Result<Vec<Vec<u8>>> {
        let start = event_key(id, from_seq.max(1));
        let prefix = owner_key(id, "");
        let mut out = Vec::new();
        for item in self.job_events.range(start..) {
            let (k, v) = item.db()?;
            if !k.starts_with(&prefix) {
                break;
            }
            out.push(v.to_vec());
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SledStore;
    use crate::Store;

    fn job(id: &str, version: u64, last_seq: u64, active: bool) -> JobRecord {
        JobRecord {
            id: id.into(),
            owner: "alice".into(),
            version,
            last_seq,
            active,
            job: id.as_bytes().to_vec(),
        }
    }

    #[test]
    fn jobs_are_created_once_per_idempotency_key_and_updated_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let jobs = [job("j1", 0, 1, true), job("j2", 0, 1, true)];
        let evs = vec![vec![b"created-1".to_vec()], vec![b"created-2".to_vec()]];
        assert_eq!(
            store.create_jobs("alice", "k1", &jobs, &evs).unwrap(),
            Created::New
        );
        let again = [job("j3", 0, 1, true)];
        assert_eq!(
            store.create_jobs("alice", "k1", &again, &evs[..1]).unwrap(),
            Created::Replayed(vec!["j1".into(), "j2".into()])
        );
        assert!(store.get_job("j3").unwrap().is_none());
        // The same key from another owner is another request.
        let mut bobs = job("j3", 0, 1, true);
        bobs.owner = "bob".into();
        assert_eq!(
            store.create_jobs("bob", "k1", &[bobs], &evs[..1]).unwrap(),
            Created::New
        );

        store
            .update_job(&job("j1", 1, 3, false), &[b"a".to_vec(), b"b".to_vec()])
            .unwrap();
        // A writer that read version 0 loses: nothing of its change is written.
        assert!(matches!(
            store.update_job(&job("j1", 1, 2, true), &[b"x".to_vec()]),
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(
            store.job_events("j1", 1).unwrap(),
            vec![b"created-1".to_vec(), b"a".to_vec(), b"b".to_vec()]
        );
        assert_eq!(store.job_events("j1", 3).unwrap(), vec![b"b".to_vec()]);
        let active: Vec<_> = store
            .active_jobs()
            .unwrap()
            .into_iter()
            .map(|j| j.id)
            .collect();
        assert_eq!(active, ["j2", "j3"]);
        let listed: Vec<_> = store
            .list_jobs("alice", None, 10)
            .unwrap()
            .into_iter()
            .map(|j| j.id)
            .collect();
        assert_eq!(listed, ["j2", "j1"]);
    }

    #[test]
    fn a_submission_that_never_committed_is_gone_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let evs = vec![vec![b"created".to_vec(), b"assigned".to_vec()]; 2];
        {
            let store = SledStore::open(dir.path()).unwrap();
            let done = [job("j1", 0, 2, true), job("j2", 0, 2, true)];
            assert_eq!(
                store.create_jobs("alice", "k1", &done, &evs).unwrap(),
                Created::New
            );
            // A crash before the commit point: the jobs of "k2" are written, its idempotency
            // entry is not.
            let lost = [job("j3", 0, 2, true), job("j4", 0, 2, true)];
            let idem = owner_key("alice", "k2");
            let values: Vec<_> = lost
                .iter()
                .map(|j| encode_job_as(j, Some(&idem)).unwrap())
                .collect();
            store
                .jobs
                .write_uncommitted_jobs(&lost, &values, &evs)
                .unwrap();
            // And a crash that cut a submission after its first job's active marker.
            store.jobs.active_jobs.insert("j5", &[] as &[u8]).unwrap();
            // A committed job that was updated since is a V1 record: it stays.
            store
                .update_job(&job("j2", 1, 3, true), &[b"started".to_vec()])
                .unwrap();
            assert_eq!(store.active_jobs().unwrap().len(), 4);
            store.flush().unwrap();
        }
        let store = SledStore::open(dir.path()).unwrap();
        let ids = |v: Vec<JobRecord>| v.into_iter().map(|j| j.id).collect::<Vec<_>>();
        assert_eq!(ids(store.active_jobs().unwrap()), ["j1", "j2"]);
        assert_eq!(
            ids(store.list_jobs("alice", None, 10).unwrap()),
            ["j2", "j1"]
        );
        for gone in ["j3", "j4", "j5"] {
            assert!(store.get_job(gone).unwrap().is_none());
            assert!(store.job_events(gone, 1).unwrap().is_empty());
            assert!(!store.jobs.active_jobs.contains_key(gone).unwrap());
        }
        assert_eq!(store.job_events("j2", 1).unwrap().len(), 3);
        // The retry of "k2" is a new submission.
        assert_eq!(
            store
                .create_jobs("alice", "k2", &[job("j6", 0, 2, true)], &evs[..1])
                .unwrap(),
            Created::New
        );
    }

    #[test]
    fn job_records_round_trip_and_json_records_of_older_versions_still_read() {
        let rec = JobRecord {
            id: "0190abcd".into(),
            owner: "alice".into(),
            version: 7,
            last_seq: 12,
            active: true,
            job: vec![0, 1, 2, 255, b'{'],
        };
        let bytes = encode_job(&rec).unwrap();
        assert_eq!(decode_job(&bytes).unwrap(), rec);
        assert_eq!(job_header(&bytes).unwrap(), (7, 12));
        let new = encode_job_as(&rec, Some(b"alice\0k1")).unwrap();
        assert_eq!(decode_job(&new).unwrap(), rec);
        assert_eq!(
            job_fields(&new).unwrap().submission,
            Some(&b"alice\0k1"[..])
        );
        assert_eq!(job_header(&new).unwrap(), (7, 12));
        assert!(matches!(
            decode_job(&new[..JOB_HEADER_LEN + 4 + 8 + 4 + 5 + 2]),
            Err(StoreError::Corrupt { .. })
        ));
        assert!(matches!(
            decode_job(&bytes[..bytes.len() - 6]),
            Err(StoreError::Corrupt { .. })
        ));

        // A record written as JSON before the binary layout existed: read, then updated.
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let old = job("j1", 0, 1, true);
        store
            .jobs
            .jobs
            .insert("j1", encode("jobs", &old).unwrap())
            .unwrap();
        store.jobs.active_jobs.insert("j1", &[] as &[u8]).unwrap();
        assert_eq!(store.get_job("j1").unwrap(), Some(old));
        store
            .update_job(&job("j1", 1, 2, false), &[b"done".to_vec()])
            .unwrap();
        assert_eq!(store.get_job("j1").unwrap(), Some(job("j1", 1, 2, false)));
        assert!(store.active_jobs().unwrap().is_empty());
    }
}
