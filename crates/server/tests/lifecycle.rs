//! Property test of the job state machine as the running router applies it: random sequences
//! of what customers and a node do (progress in every phase, results of every kind, declines,
//! reports for stale epochs, pause, resume, cancel), in random order, over real gRPC on
//! loopback against a router on sled, and again on PostgreSQL. Afterwards every job's stored
//! history must walk only the edges of `fabrouter_router::lifecycle`, end where the job is, and
//! each printer's count of active jobs must match the jobs that are on it (no job in two
//! places).
//!
//! The router runs on a store that fails the test if the core ever calls it with its registry
//! lock held (the lock every request takes: store I/O under it would serialise the router on a
//! networked database).
//!
//! Seeds are fixed so a failure repeats; `FABROUTER_LIFECYCLE_SEED=n` runs another series.

use std::collections::HashMap;
use std::sync::Arc;

use fabrouter_api::v1 as pb;
use fabrouter_router::Codec;
use fabrouter_router::lifecycle::{JobState, reachable_in_one_step};
use fabrouter_server::convert::ProstCodec;
use fabrouter_testkit::checked_store::CheckedStore;
use fabrouter_testkit::router::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const CASES: u64 = 40;
const STEPS: usize = 24;

fn progress(node: &SimNode, job: &str, epoch: u64, phase: &str, fraction: f64) {
    node.send(pb::node_message::Msg::Progress(pb::JobProgress {
        job: job.into(),
        epoch,
        fraction,
        phase: phase.into(),
        ..Default::default()
    }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_customer_and_node_actions_store_only_legal_transitions() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(CheckedStore::open(dir.path()));
    random_actions(dir.path(), store).await;
}

/// The same on PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    missing_postgres,
    ignore = "needs PostgreSQL's server binaries (apt-get install postgresql)"
)]
async fn random_customer_and_node_actions_store_only_legal_transitions_on_postgres() {
    fabrouter_testkit::require(fabrouter_testkit::Tool::Postgres);
    let cluster = fabrouter_testkit::pg::shared()
        .unwrap_or_else(|e| panic!("cannot start a throwaway PostgreSQL: {e}"));
    let pg = fabrouter_store::PgStore::connect(&cluster.database().unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(CheckedStore::wrap(Arc::new(pg)));
    random_actions(dir.path(), store).await;
}

async fn random_actions(dir: &std::path::Path, store: Arc<CheckedStore>) {
    let r = Router::start_with_store(dir, store.clone()).await;
    let owner = r.designer().await;
    let creds = r.node_credentials("n1").await;
    let mut node = SimNode::connect(
        &r,
        &creds,
        "n1",
        vec![
            printer("a", BERLIN, pb::Technology::Fdm, 200.0),
            printer("b", BERLIN, pb::Technology::Fdm, 200.0),
            printer("c", POTSDAM, pb::Technology::Fdm, 200.0),
        ],
        vec![],
    )
    .await;
    node.drain();
    let design = r.cube(&owner, 20.0).await;
    let mut jobs = r.jobs(&owner);
    let first_seed: u64 = std::env::var("FABROUTER_LIFECYCLE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let mut names = Vec::new();
    for case in 0..CASES {
        let seed = first_seed + case;
        let mut rng = StdRng::seed_from_u64(seed);
        let job = submit_one(&mut jobs, &design, &format!("case-{seed}")).await;
        let name = job.name.clone();
        for _ in 0..STEPS {
            let now = jobs
                .get_job(pb::GetJobRequest { name: name.clone() })
                .await
                .unwrap()
                .into_inner();
            // Now and then a report for the epoch before: it must be fenced, never applied.
            let epoch = if rng.random_bool(0.15) {
                now.epoch.saturating_sub(1)
            } else {
                now.epoch
            };
            let fraction = rng.random_range(0.0..1.0);
            match rng.random_range(0..12) {
                0 => progress(&node, &name, epoch, "slicing", 0.0),
                1 => progress(&node, &name, epoch, "heating", 0.0),
                2 | 3 => progress(&node, &name, epoch, "printing", fraction),
                4 => progress(&node, &name, epoch, "paused", fraction),
                5 => node.result(&name, epoch, true, false, ""),
                6 => node.result(&name, epoch, false, false, "the model came loose"),
                7 => node.result(&name, epoch, false, true, "thermal runaway"),
                8 => node.send(pb::node_message::Msg::Ack(pb::AssignmentAck {
                    job: name.clone(),
                    epoch,
                    accepted: false,
                    reason: "no filament".into(),
                })),
                // Customer actions are refused in states that do not allow them; the refusal
                // is part of the property (nothing stored).
                9 => {
                    let _ = jobs
                        .pause_job(pb::PauseJobRequest { name: name.clone() })
                        .await;
                }
                10 => {
                    let _ = jobs
                        .resume_job(pb::ResumeJobRequest { name: name.clone() })
                        .await;
                }
                _ => {
                    if rng.random_bool(0.3) {
                        let _ = jobs
                            .cancel_job(pb::CancelJobRequest {
                                name: name.clone(),
                                reason: String::new(),
                            })
                            .await;
                    }
                }
            }
            if rng.random_bool(0.3) {
                // Let some reports land before the next look.
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
        }
        names.push(name);
    }
    // A barrier: the node's reports are taken in order, so once a last one has an effect,
    // every earlier one was taken.
    let sentinel = submit_one(&mut jobs, &design, "sentinel").await;
    progress(&node, &sentinel.name, sentinel.epoch, "printing", 0.5);
    wait_state(&mut jobs, &sentinel.name, pb::JobState::Printing).await;

    assert!(
        store.calls() > 1000,
        "the store was used: {}",
        store.calls()
    );
    assert_eq!(
        store.under_lock(),
        Vec::<&str>::new(),
        "store calls made with the registry lock held"
    );
    let store = r.state().store.clone();
    let mut seen: HashMap<JobState, usize> = HashMap::new();
    let mut on_printer: HashMap<String, u32> = HashMap::new();
    for name in names.iter().chain([&sentinel.name]) {
        let id = name.strip_prefix("jobs/").unwrap();
        let job = ProstCodec
            .decode_job(&store.get_job(id).unwrap().unwrap().job)
            .unwrap();
        let history: Vec<_> = store
            .job_events(id, 1)
            .unwrap()
            .iter()
            .map(|b| ProstCodec.decode_event(b).unwrap())
            .collect();
        assert_eq!(history[0].state, JobState::Queued, "{name} starts queued");
        for (i, pair) in history.windows(2).enumerate() {
            assert_eq!(pair[1].sequence, pair[0].sequence + 1, "{name}: a gap");
            // Events of one change share its state (a re-route's "moved" and "queued"); a
            // change of state must be an edge.
            assert!(
                pair[0].state == pair[1].state
                    || reachable_in_one_step(pair[0].state, pair[1].state),
                "{name}: event {} went {} -> {} ({:?}: {})",
                i + 2,
                pair[0].state,
                pair[1].state,
                pair[1].kind,
                pair[1].message
            );
        }
        // Nothing happens to a job after it ended, but the ending change's own events (a
        // re-route that gives up writes "moved" and then "failed").
        if let Some(end) = history.iter().position(|e| e.state.is_terminal()) {
            assert!(
                history.len() - end <= 2,
                "{name}: events after it ended: {history:?}"
            );
        }
        let last = history.last().unwrap();
        assert_eq!(
            last.state, job.state,
            "{name}: the history ends where the job is"
        );
        for e in &history {
            *seen.entry(e.state).or_default() += 1;
        }
        if !job.state.is_terminal() && !job.printer.is_empty() {
            *on_printer.entry(job.printer.clone()).or_default() += 1;
        }
    }
    // Not a vacuous walk: the sequences reached every state.
    for s in JobState::ALL {
        assert!(seen.contains_key(&s), "no job was ever {s}: {seen:?}");
    }
    let printers = r
        .nodes(&owner)
        .list_printers(pb::ListPrintersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .printers;
    for p in printers {
        assert_eq!(
            p.active_jobs,
            on_printer.get(&p.name).copied().unwrap_or(0),
            "{}: the router's count vs the jobs on it",
            p.name
        );
    }
}
