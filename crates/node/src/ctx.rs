//! What the agent's core shares with its printer tasks. It lives apart from both so that
//! `agent` (which builds it and spawns the tasks) depends on `printer`, never the reverse.

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use fabrouter_api::v1 as pb;
use tokio::sync::mpsc;
use tonic::transport::Channel;

use crate::held::HeldJobs;
use crate::slicer::Slicer;

/// What the printer tasks share.
pub struct Ctx {
    /// Channel to the router (downloads).
    pub channel: Channel,
    /// `node:{id}:{secret}`.
    pub bearer: String,
    /// Only through [`Ctx::lock_held`], so a poisoned lock is handled in one place.
    pub(crate) held: Mutex<HeldJobs>,
    /// The slicer with its cache.
    pub slicer: Slicer,
    /// Downloaded designs by content hash.
    pub designs_dir: PathBuf,
    /// The built-in PrusaSlicer config, written to the state directory.
    pub default_slicer_config: PathBuf,
    /// Reports to the core.
    pub to_core: mpsc::UnboundedSender<pb::node_message::Msg>,
}

impl Ctx {
    /// The held jobs (the lock is never held across an await).
    pub fn lock_held(&self) -> MutexGuard<'_, HeldJobs> {
        // A panicked holder leaves the map consistent: every change is one insert or remove.
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }
}
