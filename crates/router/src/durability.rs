//! Group commit: a job change is written to the store under the registry lock, which is then
//! released, and the caller waits for the next log flush, which one thread runs for every
//! write that arrived since the previous flush. Nobody (customer, node, watcher) hears of a
//! change before the flush that covers it has finished.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use fabrouter_store::Store;
use tokio::sync::watch;

/// Under load, the flusher waits this long before a flush so that it covers more writes: one
/// log sync per batch costs the store's writer threads far less CPU than one per submit.
const GROUP_COMMIT_LINGER: Duration = Duration::from_micros(1000);

/// A place in the order of writes: durable once a flush that started after it has finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[must_use = "wait with Network::durable before telling anyone the write happened"]
pub struct Ticket(u64);

/// What the flusher has made durable so far.
#[derive(Debug, Clone, Default)]
pub(crate) struct Synced {
    /// Every ticket up to this one is durable.
    durable: u64,
    /// The newest ticket whose flush failed, and why.
    failed: u64,
    error: Option<Arc<str>>,
    /// Flushes run (a figure for benchmarks: tickets per flush is the batch size).
    pub(crate) flushes: u64,
}

#[derive(Default)]
pub(crate) struct Issued {
    /// Tickets handed out.
    pub(crate) tickets: u64,
    /// The flusher sleeps on `wake` (writers wake it only then).
    idle: bool,
    /// The router is gone: flush what is left and stop.
    closed: bool,
}

/// Something to do once a ticket is durable (e.g. acknowledge a node's result).
type Deferred = (u64, Box<dyn FnOnce() + Send>);

pub(crate) struct SyncShared {
    pub(crate) issued: Mutex<Issued>,
    wake: Condvar,
    pub(crate) synced: watch::Sender<Synced>,
    /// Run by the flusher after the flush that covers their ticket; dropped if it fails.
    deferred: Mutex<Vec<Deferred>>,
}

/// Group commit. Writers take a [`Ticket`] after their write and await it; one thread flushes
/// the store whenever tickets are outstanding, so every write that arrived during a flush
/// shares the next one: one log sync per batch instead of one per request. When the last flush
/// covered several writes (load), the next one lingers briefly to gather more; a lone write
/// on an idle router is flushed at once.
pub(crate) struct Syncer {
    pub(crate) shared: Arc<SyncShared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

pub(crate) fn lock_ignoring_poison<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded values are counters updated in one step: a panic cannot leave them torn.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Syncer {
    pub(crate) fn start(store: Arc<dyn Store>) -> std::io::Result<Syncer> {
        let shared = Arc::new(SyncShared {
            issued: Mutex::new(Issued::default()),
            wake: Condvar::new(),
            synced: watch::channel(Synced::default()).0,
            deferred: Mutex::new(Vec::new()),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("fabd-sync".into())
            .spawn(move || Self::run(&s, store.as_ref()))?;
        Ok(Syncer {
            shared,
            thread: Some(thread),
        })
    }

    fn run(shared: &SyncShared, store: &dyn Store) {
        let mut flushed = 0;
        let mut last_batch = 0;
        loop {
            {
                let mut issued = lock_ignoring_poison(&shared.issued);
                while issued.tickets == flushed {
                    if issued.closed {
                        return;
                    }
                    issued.idle = true;
                    issued = shared.wake.wait(issued).unwrap_or_else(|p| p.into_inner());
                }
                issued.idle = false;
            }
            if last_batch > 1 {
                std::thread::sleep(GROUP_COMMIT_LINGER);
            }
            // Every ticket up to `target` was taken after its write completed, so this flush,
            // starting now, covers them all.
            let target = lock_ignoring_poison(&shared.issued).tickets;
            let res = store.flush();
            last_batch = target - flushed;
            flushed = target;
            shared.synced.send_modify(|s| {
                s.flushes += 1;
                match &res {
                    Ok(()) => s.durable = target,
                    Err(e) => {
                        s.failed = target;
                        s.error = Some(e.to_string().into());
                    }
                }
            });
            // Taken after `durable` moved: whoever registers later sees it and runs at once.
            let due: Vec<Deferred> = {
                let mut d = lock_ignoring_poison(&shared.deferred);
                let (due, later) = std::mem::take(&mut *d)
                    .into_iter()
                    .partition(|(t, _)| *t <= target);
                *d = later;
                due
            };
            match res {
                Ok(()) => due.into_iter().for_each(|(_, f)| f()),
                Err(e) => tracing::error!(error = %e, "flushing the store failed"),
            }
        }
    }

    /// Call after a write whose caller must not be answered before it is durable.
    pub(crate) fn ticket(&self) -> Ticket {
        let mut issued = lock_ignoring_poison(&self.shared.issued);
        issued.tickets += 1;
        let t = Ticket(issued.tickets);
        let idle = issued.idle;
        drop(issued);
        if idle {
            self.shared.wake.notify_one();
        }
        t
    }

    /// Runs `f` once every write before `t` is durable: at once if it is, else on the flush
    /// thread after the flush that covers it (never, if that flush fails). `f` must be quick.
    pub(crate) fn after(&self, t: Ticket, f: impl FnOnce() + Send + 'static) {
        let mut d = lock_ignoring_poison(&self.shared.deferred);
        if self.shared.synced.borrow().durable >= t.0 {
            drop(d);
            f();
        } else {
            d.push((t.0, Box::new(f)));
        }
    }

    pub(crate) async fn wait(&self, t: Ticket) -> crate::Result<()> {
        let mut rx = self.shared.synced.subscribe();
        let outcome = rx
            .wait_for(|s| s.durable >= t.0 || s.failed >= t.0)
            .await
            .map(|s| (s.durable >= t.0, s.error.clone()));
        match outcome {
            Ok((true, _)) => Ok(()),
            Ok((false, error)) => Err(crate::Error::NotDurable(
                error.as_deref().unwrap_or("unknown error").to_string(),
            )),
            Err(_) => Err(crate::Error::Unavailable(
                "the router is shutting down; retry with the same idempotency key".into(),
            )),
        }
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        lock_ignoring_poison(&self.shared.issued).closed = true;
        self.shared.wake.notify_one();
        // Joined so the store is closed when the network is gone: a restart in the same
        // process reopens the same directory at once.
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn deferred_work_runs_once_its_ticket_is_flushed_or_at_once_if_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(fabrouter_store::SledStore::open(dir.path()).unwrap());
        let syncer = Syncer::start(store).unwrap();
        let (tx, rx) = mpsc::channel();
        let t = syncer.ticket();
        let tx1 = tx.clone();
        syncer.after(t, move || tx1.send(1).unwrap());
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(1));
        assert!(syncer.shared.synced.borrow().durable >= 1);
        // Already durable: runs on the caller's thread before `after` returns.
        syncer.after(t, move || tx.send(2).unwrap());
        assert_eq!(rx.try_recv(), Ok(2));
    }
}
