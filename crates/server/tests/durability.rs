//! Group commit under concurrency: many clients submit at once (some retrying the same
//! idempotency key at the same moment), every acknowledged job survives a restart of fabd, and
//! each key names exactly one set of jobs.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use fabrouter_api::v1 as pb;
use fabrouter_testkit::router::{Router, SimNode, printer, spec as spec_at};

/// Long leases: the node below never has to heartbeat during the test.
const LEASE_S: f64 = 600.0;

/// Customers spread over a square degree or so, so the four printers share the jobs.
fn spec(design: &str, i: usize) -> pb::JobSpec {
    spec_at(
        design,
        (52.0 + (i % 10) as f64 * 0.1, 13.0 + (i % 7) as f64 * 0.1),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_submits_are_idempotent_and_all_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let r = Router::start(dir.path(), LEASE_S, LEASE_S).await;
    let designer = r.designer().await;
    let node = r.node_credentials("berlin").await;
    let design = r.cube(&designer, 20.0).await;
    let printers = (0..4)
        .map(|i| {
            let at = (52.5 + i as f64 * 0.05, 13.4);
            printer(&format!("p{i}"), at, pb::Technology::Fdm, 200.0)
        })
        .collect();
    let mut node = SimNode::connect(&r, &node, "berlin", printers, vec![]).await;
    node.drain();

    // 16 clients, 12 submits each; every key is sent by two clients at the same moment.
    let mut tasks = Vec::new();
    for w in 0..16usize {
        let mut c = r.jobs(&designer);
        let design = design.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for i in 0..12usize {
                let key = format!("k{}-{i}", w / 2);
                let res = c
                    .submit_job(pb::SubmitJobRequest {
                        spec: Some(spec(&design, w * 100 + i)),
                        printer: String::new(),
                        idempotency_key: key.clone(),
                    })
                    .await
                    .unwrap()
                    .into_inner();
                assert_eq!(res.jobs.len(), 1, "{key}");
                got.push((key, res.jobs[0].name.clone()));
            }
            got
        }));
    }
    let mut by_key: HashMap<String, HashSet<String>> = HashMap::new();
    for t in tasks {
        for (key, name) in t.await.unwrap() {
            by_key.entry(key).or_default().insert(name);
        }
    }
    assert_eq!(by_key.len(), 8 * 12);
    for (key, names) in &by_key {
        assert_eq!(
            names.len(),
            1,
            "key {key} created more than one job: {names:?}"
        );
    }
    let acknowledged: HashSet<String> = by_key.values().flatten().cloned().collect();
    drop(node);
    r.stop().await;

    let r = Router::start(dir.path(), LEASE_S, LEASE_S).await;
    let mut jobs = r.jobs(&designer);
    for name in &acknowledged {
        let j = tokio::time::timeout(
            Duration::from_secs(10),
            jobs.get_job(pb::GetJobRequest { name: name.clone() }),
        )
        .await
        .unwrap()
        .unwrap()
        .into_inner();
        assert_eq!(j.state, pb::JobState::Assigned as i32, "{name}");
    }
    // Every acknowledged job is back in the router's queues, not only on disk.
    let printers = r
        .nodes(&designer)
        .list_printers(pb::ListPrintersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .printers;
    let active: u32 = printers.iter().map(|p| p.active_jobs).sum();
    assert_eq!(active as usize, acknowledged.len());
    // A retry after the restart still answers with the same job.
    let (key, names) = by_key.iter().next().unwrap();
    let again = jobs
        .submit_job(pb::SubmitJobRequest {
            spec: Some(spec(&design, 0)),
            printer: String::new(),
            idempotency_key: key.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(again.replayed);
    assert_eq!(
        again
            .jobs
            .iter()
            .map(|j| j.name.clone())
            .collect::<HashSet<_>>(),
        *names
    );
    r.stop().await;
}
