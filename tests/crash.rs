//! fabd killed (SIGKILL) with jobs in every state and many submits being stored: after a
//! restart every job that was in a state is still in it, every acknowledged job is there, every
//! idempotency key names the jobs a retry gets, and no job exists that no key names (a
//! submission cut short by the crash leaves nothing behind). On sled, and on PostgreSQL.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fabrouter::{Fabd, reference};
use fabrouter_api::v1 as pb;
use fabrouter_testkit::router::{
    Api, Authed, BERLIN, HAMBURG, POTSDAM, SimNode, printer, spec, wait_state_within,
};
use pb::job_service_client::JobServiceClient;

type Jobs = JobServiceClient<Authed>;

fn submit(design: &str, key: &str, quantity: u32) -> pb::SubmitJobRequest {
    pb::SubmitJobRequest {
        spec: Some(pb::JobSpec {
            quantity,
            ..spec(design, POTSDAM)
        }),
        printer: String::new(),
        idempotency_key: key.into(),
    }
}

async fn wait_state(jobs: &mut Jobs, name: &str, want: pb::JobState) -> pb::Job {
    wait_state_within(jobs, name, want, Duration::from_secs(20)).await
}

fn names(jobs: &[pb::Job]) -> Vec<String> {
    jobs.iter().map(|j| j.name.clone()).collect()
}

async fn all_jobs(jobs: &mut Jobs) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut page_token = String::new();
    loop {
        let page = jobs
            .list_jobs(pb::ListJobsRequest {
                page_size: 500,
                page_token,
            })
            .await
            .unwrap()
            .into_inner();
        out.extend(names(&page.jobs));
        if page.next_page_token.is_empty() {
            return out;
        }
        page_token = page.next_page_token;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_router_keeps_every_acknowledged_job_and_no_half_submission() {
    killed_and_restarted(None).await;
}

/// The same on PostgreSQL: fabd killed while its transactions are in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    missing_postgres,
    ignore = "needs PostgreSQL's server binaries (apt-get install postgresql)"
)]
async fn a_killed_router_on_postgres_keeps_every_acknowledged_job_and_no_half_submission() {
    fabrouter_testkit::require(fabrouter_testkit::Tool::Postgres);
    let cluster = fabrouter_testkit::pg::shared()
        .unwrap_or_else(|e| panic!("cannot start a throwaway PostgreSQL: {e}"));
    killed_and_restarted(Some(&cluster.database().unwrap())).await;
}

/// `store`: a PostgreSQL URL, or `None` for sled in the data directory.
async fn killed_and_restarted(store: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let mut fabd = Fabd::start_on(dir.path(), store);
    let api = Api::connect(&fabd.addr, fabd.admin_token()).await;
    let designer = api.designer().await;
    let node_creds = api.node_credentials("berlin").await;
    let stl = std::fs::read(reference("stl/trimesh__20mm-xyz-cube.stl")).unwrap();
    let design = api.upload(&designer, stl).await;
    // A node with two printers, connected for as long as the first fabd lives.
    let printers = vec![
        printer("mk3", BERLIN, pb::Technology::Fdm, 200.0),
        printer("mk4", HAMBURG, pb::Technology::Fdm, 200.0),
    ];
    let mut node = SimNode::connect(&api, &node_creds, "berlin", printers, vec![]).await;

    // One job in each state, each reached before the crash.
    let mut jobs = api.jobs(&designer);
    let mut in_state = Vec::new();
    for (key, want) in [
        ("assigned", pb::JobState::Assigned),
        ("printing", pb::JobState::Printing),
        ("completed", pb::JobState::Completed),
        ("failed", pb::JobState::Failed),
        ("cancelled", pb::JobState::Cancelled),
        ("queued", pb::JobState::Queued),
    ] {
        let job = jobs
            .submit_job(submit(&design, key, 1))
            .await
            .unwrap()
            .into_inner()
            .jobs
            .remove(0);
        let a = node.assignment_of(&job.name).await;
        match want {
            pb::JobState::Printing => node.progress(&a.job, a.epoch, 0.3),
            pb::JobState::Completed => {
                node.progress(&a.job, a.epoch, 0.5);
                node.result(&a.job, a.epoch, true, false, "test");
            }
            pb::JobState::Failed => node.result(&a.job, a.epoch, false, false, "test"),
            pb::JobState::Cancelled => {
                jobs.cancel_job(pb::CancelJobRequest {
                    name: job.name.clone(),
                    reason: "test".into(),
                })
                .await
                .unwrap();
            }
            pb::JobState::Queued => {
                // Both printers fail it: nothing is left to take it.
                node.result(&a.job, a.epoch, false, true, "test");
                let b = node.assignment_of(&job.name).await;
                node.result(&b.job, b.epoch, false, true, "test");
            }
            _ => {}
        }
        in_state.push(wait_state(&mut jobs, &job.name, want).await);
    }
    node.drain();

    // Submitters: each key once, quantities 1-3; what was acknowledged is recorded.
    let acked: Arc<Mutex<BTreeMap<String, Vec<String>>>> = Arc::default();
    let tried: Arc<Mutex<BTreeMap<String, u32>>> = Arc::default();
    let mut tasks = Vec::new();
    for w in 0..16 {
        let mut jobs = api.jobs(&designer);
        let (acked, tried, design) = (acked.clone(), tried.clone(), design.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0.. {
                let key = format!("w{w}-{i}");
                let quantity = 1 + (i % 3) as u32;
                tried.lock().unwrap().insert(key.clone(), quantity);
                match jobs.submit_job(submit(&design, &key, quantity)).await {
                    Ok(r) => {
                        let r = r.into_inner();
                        assert_eq!(r.jobs.len(), quantity as usize);
                        acked.lock().unwrap().insert(key, names(&r.jobs));
                    }
                    Err(_) => return, // the router is gone
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < 300 {
        assert!(Instant::now() < deadline, "submits too slow");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    fabd.child.kill().unwrap(); // SIGKILL, mid-stream
    fabd.child.wait().unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    drop(fabd);

    let fabd = Fabd::start_on(dir.path(), store);
    let mut jobs = Api::connect(&fabd.addr, fabd.admin_token())
        .await
        .jobs(&designer);
    for before in &in_state {
        let after = jobs
            .get_job(pb::GetJobRequest {
                name: before.name.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(&after, before, "{} changed across the crash", before.name);
    }
    let stored = all_jobs(&mut jobs).await;
    let acked = acked.lock().unwrap().clone();
    let tried = tried.lock().unwrap().clone();
    // Every key is retried: an acknowledged one returns its jobs; one the crash cut short either
    // has all its jobs or none, and a retry stores them now (or cannot, if the printers it
    // needs have not come back yet).
    let mut named = BTreeSet::new();
    for job in &in_state {
        named.insert(job.name.clone());
    }
    for (key, quantity) in &tried {
        match jobs.submit_job(submit(&design, key, *quantity)).await {
            Ok(r) => {
                let r = r.into_inner();
                assert_eq!(r.jobs.len(), *quantity as usize, "{key}");
                if let Some(want) = acked.get(key) {
                    assert!(r.replayed, "{key} was acknowledged before the crash");
                    assert_eq!(&names(&r.jobs), want, "{key}");
                }
                if r.replayed {
                    named.extend(names(&r.jobs));
                }
            }
            Err(e) => {
                assert!(!acked.contains_key(key), "{key} was acknowledged: {e:?}");
                assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{key}: {e:?}");
            }
        }
    }
    assert_eq!(
        stored,
        named,
        "jobs after the restart must be exactly those the keys name ({} acknowledged keys, {} tried)",
        acked.len(),
        tried.len()
    );
    assert!(fabd.stop());
}
