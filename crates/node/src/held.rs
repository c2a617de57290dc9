//! The jobs this node holds, on disk, so neither a router restart nor the node's own restart
//! loses track of a print: one small JSON file per job in `state_dir/jobs`, written to a
//! temporary file and renamed. A job still marked as running when the node starts was
//! interrupted by the restart: it becomes a failure to report, never a print to restart —
//! unless a printer host runs it on its own, in which case the printer task re-attaches.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where a held job stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum HeldStatus {
    /// Accepted, waiting for the printer.
    Queued,
    /// Downloading or slicing.
    Preparing,
    /// Printing. `host_file` names the job's file on a printer host that prints on its own
    /// (OctoPrint, ...): such a print survives a restart of the node, which re-attaches to it.
    /// Without one (serial: the node streams the file), a restart ends the print.
    Printing {
        /// The file's name on the host.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        host_file: Option<String>,
    },
    /// Ended; the result goes to the router (again after every reconnect) until the router
    /// confirms it with `ResultAck` (or `Fenced`) for this epoch.
    Finished {
        /// Completed.
        success: bool,
        /// Why not.
        reason: String,
        /// The printer's fault (the router re-routes).
        printer_fault: bool,
    },
}

/// One held job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeldJob {
    /// "jobs/{id}".
    pub job: String,
    /// The assignment's fencing token.
    pub epoch: u64,
    /// The printer it runs on.
    pub printer_id: String,
    /// "designs/{id}".
    pub design: String,
    /// Where it stands.
    #[serde(flatten)]
    pub status: HeldStatus,
}

/// Failures reading or writing the held-job files.
#[derive(Debug, thiserror::Error)]
pub enum HeldError {
    /// File system trouble.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// The held jobs, in memory and on disk.
#[derive(Debug)]
pub struct HeldJobs {
    dir: PathBuf,
    jobs: BTreeMap<String, HeldJob>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> HeldError + '_ {
    move |source| HeldError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl HeldJobs {
    /// Loads `dir` (created if missing). Jobs that were not finished were interrupted by a
    /// restart of the node: they are turned into failures with a reason. Unreadable files are
    /// skipped with a warning (a crash mid-write leaves only a temporary file behind).
    pub fn open(dir: &Path) -> Result<Self, HeldError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let mut held = HeldJobs {
            dir: dir.to_path_buf(),
            jobs: BTreeMap::new(),
        };
        let mut interrupted = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io(dir))? {
            let path = entry.map_err(io(dir))?.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let parsed = std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<HeldJob>(&b).ok());
            let Some(mut job) = parsed else {
                tracing::warn!(file = %path.display(), "unreadable held-job file skipped");
                continue;
            };
            let reattach = matches!(job.status, HeldStatus::Printing { host_file: Some(_) });
            if !reattach && !matches!(job.status, HeldStatus::Finished { .. }) {
                let was = match job.status {
                    HeldStatus::Queued => "queued",
                    HeldStatus::Preparing => "preparing (download or slicing)",
                    _ => "printing",
                };
                job.status = HeldStatus::Finished {
                    success: false,
                    reason: format!(
                        "interrupted: fab-node restarted while the job was {was}; the print was not resumed"
                    ),
                    printer_fault: true,
                };
                interrupted.push(job.clone());
            }
            held.jobs.insert(job.job.clone(), job);
        }
        for job in interrupted {
            held.put(job)?;
        }
        Ok(held)
    }

    fn file(&self, job: &str) -> PathBuf {
        let safe: String = job
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.dir.join(format!("{safe}.json"))
    }

    /// Records (or replaces) a job, durably.
    pub fn put(&mut self, job: HeldJob) -> Result<(), HeldError> {
        let path = self.file(&job.job);
        let tmp = path.with_extension("json.tmp");
        // HeldJob holds strings and numbers only; serialising cannot fail.
        let bytes = serde_json::to_vec_pretty(&job).unwrap_or_default();
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
            f.write_all(&bytes).map_err(io(&tmp))?;
            f.sync_all().map_err(io(&tmp))?;
        }
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        self.jobs.insert(job.job.clone(), job);
        Ok(())
    }

    /// Changes a held job's status (no-op for unknown jobs).
    pub fn set_status(&mut self, job: &str, status: HeldStatus) -> Result<(), HeldError> {
        match self.jobs.get(job) {
            Some(j) => {
                let mut j = j.clone();
                j.status = status;
                self.put(j)
            }
            None => Ok(()),
        }
    }

    /// Forgets a job.
    pub fn remove(&mut self, job: &str) -> Result<(), HeldError> {
        if self.jobs.remove(job).is_some() {
            let path = self.file(job);
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(io(&path)(e));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// A held job.
    pub fn get(&self, job: &str) -> Option<&HeldJob> {
        self.jobs.get(job)
    }

    /// Every held job, by name.
    pub fn all(&self) -> impl Iterator<Item = &HeldJob> {
        self.jobs.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restart_turns_running_jobs_into_reported_failures() {
        let dir = tempfile::tempdir().unwrap();
        let mut held = HeldJobs::open(dir.path()).unwrap();
        let job = |name: &str, status| HeldJob {
            job: name.into(),
            epoch: 2,
            printer_id: "mk3".into(),
            design: "designs/d".into(),
            status,
        };
        held.put(job("jobs/a", HeldStatus::Printing { host_file: None }))
            .unwrap();
        let on_host = HeldStatus::Printing {
            host_file: Some("fab-d-e2.gcode".into()),
        };
        held.put(job("jobs/d", on_host.clone())).unwrap();
        held.put(job(
            "jobs/b",
            HeldStatus::Finished {
                success: true,
                reason: String::new(),
                printer_fault: false,
            },
        ))
        .unwrap();
        held.put(job("jobs/c", HeldStatus::Queued)).unwrap();
        held.remove("jobs/c").unwrap();
        drop(held);

        let held = HeldJobs::open(dir.path()).unwrap();
        assert_eq!(held.all().count(), 3);
        // A print its host runs on its own is kept, to be re-attached.
        assert_eq!(held.get("jobs/d").unwrap().status, on_host);
        let HeldStatus::Finished {
            success,
            reason,
            printer_fault,
        } = &held.get("jobs/a").unwrap().status
        else {
            panic!("not finished");
        };
        assert!(!success && *printer_fault);
        assert!(reason.contains("while the job was printing"), "{reason}");
        assert_eq!(held.get("jobs/a").unwrap().epoch, 2);
        assert!(matches!(
            held.get("jobs/b").unwrap().status,
            HeldStatus::Finished { success: true, .. }
        ));
    }
}
