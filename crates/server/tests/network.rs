//! The printer network over real gRPC on loopback with a real sled directory and simulated
//! nodes that speak the real node protocol: routing, the job lifecycle, leases, fencing,
//! idempotency and restarts.

use std::time::Duration;

use fabrouter_api::v1 as pb;
use fabrouter_testkit::router::*;
use tokio_stream::StreamExt;
use tonic::Code;

/// Node `berlin` with one printer, `mk3` in Berlin, holding `held`.
async fn berlin_mk3(r: &Router, creds: &str, held: Vec<pb::HeldJob>) -> SimNode {
    let printers = vec![printer("mk3", BERLIN, pb::Technology::Fdm, 200.0)];
    SimNode::connect(r, creds, "berlin", printers, held).await
}

#[tokio::test]
async fn quote_picks_the_nearest_capable_printer_and_explains_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let r = Router::start(dir.path(), 10.0, 30.0).await;
    let designer = r.designer().await;
    let design = r.cube(&designer, 20.0).await;
    let (a, b, c) = (
        r.node_credentials("berlin").await,
        r.node_credentials("munich").await,
        r.node_credentials("hamburg").await,
    );
    let _na = berlin_mk3(&r, &a, vec![]).await;
    let _nb = SimNode::connect(
        &r,
        &b,
        "munich",
        vec![
            printer("big", MUNICH, pb::Technology::Fdm, 300.0),
            printer("tiny", MUNICH, pb::Technology::Fdm, 10.0),
        ],
        vec![],
    )
    .await;
    let _nc = SimNode::connect(
        &r,
        &c,
        "hamburg",
        vec![printer("sla", HAMBURG, pb::Technology::Resin, 150.0)],
        vec![],
    )
    .await;

    let mut jobs = r.jobs(&designer);
    let q = jobs
        .quote_job(pb::QuoteJobRequest {
            spec: Some(spec(&design, POTSDAM)),
            max_options: 3,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(q.options[0].printer, "nodes/berlin/printers/mk3");
    assert!(
        q.options[0].distance_km < 30.0,
        "{}",
        q.options[0].distance_km
    );
    assert!(!q.options[0].reasons.is_empty());
    assert!(q.options[0].price.as_ref().unwrap().amount_minor > 300);
    assert_eq!(q.options[1].printer, "nodes/munich/printers/big");
    let code = |p: &str| {
        q.rejections
            .iter()
            .find(|x| x.printer == p)
            .map(|x| x.code.clone())
            .unwrap_or_default()
    };
    assert_eq!(code("nodes/munich/printers/tiny"), "build_volume");
    assert_eq!(code("nodes/hamburg/printers/sla"), "technology");
    assert_eq!(q.coarse_geohash.len(), 6);

    // Material, nozzle and distance each reject with their own code.
    let mut s = spec(&design, POTSDAM);
    s.material = Some(pb::Material {
        kind: "PETG".into(),
        colour: String::new(),
    });
    s.nozzle_mm = 0.6;
    s.max_distance_km = 50.0;
    let q = jobs
        .quote_job(pb::QuoteJobRequest {
            spec: Some(s),
            max_options: 3,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(q.options.is_empty());
    let codes: Vec<&str> = q.rejections.iter().map(|x| x.code.as_str()).collect();
    assert!(
        codes.contains(&"max_distance") || codes.contains(&"nozzle") || codes.contains(&"material"),
        "{codes:?}"
    );
    for rej in &q.rejections {
        assert!(!rej.message.is_empty());
    }
    r.stop().await;
}

#[tokio::test]
async fn a_job_runs_its_lifecycle_and_the_watch_replays_every_event() {
    let dir = tempfile::tempdir().unwrap();
    let r = Router::start(dir.path(), 10.0, 30.0).await;
    let designer = r.designer().await;
    let design = r.cube(&designer, 20.0).await;
    let creds = r.node_credentials("berlin").await;
    let mut node = berlin_mk3(&r, &creds, vec![]).await;
    let mut jobs = r.jobs(&designer);
    let submit = pb::SubmitJobRequest {
        spec: Some(spec(&design, POTSDAM)),
        printer: String::new(),
        idempotency_key: "order-1".into(),
    };
    let first = jobs.submit_job(submit.clone()).await.unwrap().into_inner();
    assert!(!first.replayed);
    let job = first.jobs[0].clone();
    assert_eq!(job.state, pb::JobState::Assigned as i32);
    assert!(
        job.spec.as_ref().unwrap().customer_location.is_none(),
        "exact location not kept"
    );
    // A retried submit returns the same job, and the node hears of it once.
    let again = jobs.submit_job(submit.clone()).await.unwrap().into_inner();
    assert!(again.replayed);
    assert_eq!(again.jobs[0].name, job.name);
    // Also when the retry could not be routed now (no printer within 1 km of Potsdam).
    let mut unroutable = submit;
    unroutable.spec.as_mut().unwrap().max_distance_km = 1.0;
    let third = jobs
        .submit_job(unroutable.clone())
        .await
        .unwrap()
        .into_inner();
    assert!(third.replayed);
    assert_eq!(third.jobs[0].name, job.name);
    unroutable.idempotency_key = "order-2".into();
    let err = jobs.submit_job(unroutable).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("no registered printer"), "{err:?}");

    let a = node.assignment().await;
    assert_eq!(
        (a.job.as_str(), a.epoch, a.printer_id.as_str()),
        (job.name.as_str(), 1, "mk3")
    );
    node.progress(&a.job, 1, 0.5);
    wait_state(&mut jobs, &job.name, pb::JobState::Printing).await;
    node.result(&a.job, 1, true, false, "");
    wait_state(&mut jobs, &job.name, pb::JobState::Completed).await;
    // The result is acknowledged once durable; a node that did not see the acknowledgement
    // sends it again and is acknowledged again, without the job changing.
    async fn next_ack(node: &mut SimNode) -> (String, u64) {
        loop {
            if let pb::router_message::Msg::ResultAck(r) = node.next().await {
                return (r.job, r.epoch);
            }
        }
    }
    let version = || {
        r.state()
            .store
            .get_job(&job.name[5..])
            .unwrap()
            .unwrap()
            .version
    };
    assert_eq!(next_ack(&mut node).await, (job.name.clone(), 1));
    let version_before = version();
    node.result(&a.job, 1, true, false, "");
    assert_eq!(next_ack(&mut node).await, (job.name.clone(), 1));
    let version_after = version();
    assert_eq!(
        version_before, version_after,
        "a resent result is not taken twice"
    );

    let mut watch = jobs
        .watch_job(pb::WatchJobRequest {
            name: job.name.clone(),
            from_sequence: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let mut kinds = Vec::new();
    let mut seq = 0;
    while let Some(e) = watch.next().await {
        let e = e.unwrap();
        assert_eq!(e.sequence, seq + 1, "gap-free sequence");
        seq = e.sequence;
        kinds.push(pb::JobEventKind::try_from(e.kind).unwrap());
    }
    use pb::JobEventKind as K;
    assert_eq!(
        kinds,
        [
            K::Created,
            K::Assigned,
            K::Started,
            K::Progress,
            K::Completed
        ]
    );

    // From a point in the history.
    let mut watch = jobs
        .watch_job(pb::WatchJobRequest {
            name: job.name.clone(),
            from_sequence: 4,
        })
        .await
        .unwrap()
        .into_inner();
    let rest: Vec<u64> = {
        let mut v = Vec::new();
        while let Some(e) = watch.next().await {
            v.push(e.unwrap().sequence);
        }
        v
    };
    assert_eq!(rest, [4, 5]);

    let e = jobs
        .cancel_job(pb::CancelJobRequest {
            name: job.name.clone(),
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);

    // Someone else's job does not exist for them.
    let other = r.designer().await;
    let e = r
        .jobs(&other)
        .get_job(pb::GetJobRequest {
            name: job.name.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    r.stop().await;
}

#[tokio::test]
async fn lease_expiry_reroutes_and_a_returning_node_is_fenced() {
    let dir = tempfile::tempdir().unwrap();
    let r = Router::start(dir.path(), 0.6, 0.6).await;
    let designer = r.designer().await;
    let design = r.cube(&designer, 20.0).await;
    let (ca, cb) = (
        r.node_credentials("berlin").await,
        r.node_credentials("hamburg").await,
    );
    let mut near = berlin_mk3(&r, &ca, vec![]).await;
    let mut far = SimNode::connect(
        &r,
        &cb,
        "hamburg",
        vec![printer("mk4", HAMBURG, pb::Technology::Fdm, 200.0)],
        vec![],
    )
    .await;
    let mut jobs = r.jobs(&designer);
    let job = submit_one(&mut jobs, &design, "k").await;
    let a = near.assignment().await;
    assert_eq!(a.epoch, 1);
    // Assigned but not started, and the node goes silent: re-routed at once on lease expiry.
    near.silence();
    let b = far.assignment().await;
    assert_eq!(
        (b.job.as_str(), b.epoch, b.printer_id.as_str()),
        (job.name.as_str(), 2, "mk4")
    );
    let j = jobs
        .get_job(pb::GetJobRequest {
            name: job.name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(j.printer, "nodes/hamburg/printers/mk4");
    assert_eq!(j.reroutes, 1);

    // The old node comes back claiming epoch 1: fenced, and its reports change nothing.
    drop(near);
    let mut back = berlin_mk3(
        &r,
        &ca,
        vec![pb::HeldJob {
            job: job.name.clone(),
            epoch: 1,
            printer_id: "mk3".into(),
        }],
    )
    .await;
    let pb::router_message::Msg::Fenced(f) = back.next().await else {
        panic!("expected Fenced");
    };
    assert_eq!((f.job.as_str(), f.epoch), (job.name.as_str(), 1));
    back.result(&job.name, 1, true, false, "");
    let pb::router_message::Msg::Fenced(_) = back.next().await else {
        panic!("a stale result must be fenced");
    };
    let j = jobs
        .get_job(pb::GetJobRequest {
            name: job.name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(j.state, pb::JobState::Assigned as i32);
    assert_eq!(j.epoch, 2);

    // The new holder prints; its printer fails; the job goes back to the near node, which
    // is alive again, with a new epoch.
    far.progress(&job.name, 2, 0.3);
    wait_state(&mut jobs, &job.name, pb::JobState::Printing).await;
    far.result(&job.name, 2, false, true, "thermal runaway");
    let c = back.assignment().await;
    assert_eq!((c.job.as_str(), c.epoch), (job.name.as_str(), 3));
    let events: Vec<String> = {
        let j = wait_state(&mut jobs, &job.name, pb::JobState::Assigned).await;
        assert_eq!(j.reroutes, 2);
        let mut w = jobs
            .watch_job(pb::WatchJobRequest {
                name: job.name.clone(),
                from_sequence: 0,
            })
            .await
            .unwrap()
            .into_inner();
        let mut v = Vec::new();
        // Live stream: read what is there now.
        while let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(300), w.next()).await {
            v.push(e.unwrap().message);
        }
        v
    };
    assert!(
        events.iter().any(|m| m.contains("thermal runaway")),
        "{events:?}"
    );
    r.stop().await;
}

#[tokio::test]
async fn a_print_lost_with_its_node_is_rerouted_after_the_grace() {
    let dir = tempfile::tempdir().unwrap();
    let r = Router::start(dir.path(), 0.5, 1.0).await;
    let designer = r.designer().await;
    let design = r.cube(&designer, 20.0).await;
    let (ca, cb) = (
        r.node_credentials("berlin").await,
        r.node_credentials("hamburg").await,
    );
    let mut near = berlin_mk3(&r, &ca, vec![]).await;
    let mut far = SimNode::connect(
        &r,
        &cb,
        "hamburg",
        vec![printer("mk4", HAMBURG, pb::Technology::Fdm, 200.0)],
        vec![],
    )
    .await;
    let mut jobs = r.jobs(&designer);
    let job = submit_one(&mut jobs, &design, "k").await;
    near.assignment().await;
    near.progress(&job.name, 1, 0.2);
    wait_state(&mut jobs, &job.name, pb::JobState::Printing).await;
    let silent_at = std::time::Instant::now();
    near.silence();
    let b = far.assignment().await;
    assert_eq!(b.epoch, 2);
    // Lease (0.5 s) plus grace (1 s) must have passed first.
    assert!(
        silent_at.elapsed() >= Duration::from_millis(1400),
        "{:?}",
        silent_at.elapsed()
    );
    r.stop().await;
}

#[tokio::test]
async fn a_queued_job_goes_to_a_printer_that_comes_back_online() {
    let dir = tempfile::tempdir().unwrap();
    let r = Router::start(dir.path(), 10.0, 30.0).await;
    let designer = r.designer().await;
    let design = r.cube(&designer, 20.0).await;
    let creds = r.node_credentials("berlin").await;
    let mut node = SimNode::connect(
        &r,
        &creds,
        "berlin",
        vec![
            printer("mk3", BERLIN, pb::Technology::Fdm, 200.0),
            printer("far", HAMBURG, pb::Technology::Fdm, 200.0),
        ],
        vec![],
    )
    .await;
    let status = |id: &str, state: pb::PrinterState| {
        pb::node_message::Msg::PrinterStatus(pb::PrinterStatus {
            printer_id: id.into(),
            state: state as i32,
            ..Default::default()
        })
    };
    let mut jobs = r.jobs(&designer);
    let job = submit_one(&mut jobs, &design, "k").await;
    assert_eq!(node.assignment().await.printer_id, "mk3");
    // The other printer is unreachable when the first one fails: nothing can take the job.
    node.send(status("far", pb::PrinterState::Offline));
    node.result(&job.name, 1, false, true, "thermal runaway");
    wait_state(&mut jobs, &job.name, pb::JobState::Queued).await;
    // Its serial link comes back: the job goes there without anyone asking.
    node.send(status("far", pb::PrinterState::Idle));
    let a = node.assignment().await;
    assert_eq!(
        (a.job.as_str(), a.printer_id.as_str()),
        (job.name.as_str(), "far")
    );
    let j = wait_state(&mut jobs, &job.name, pb::JobState::Assigned).await;
    assert_eq!(
        (j.printer.as_str(), j.epoch),
        ("nodes/berlin/printers/far", a.epoch)
    );
    r.stop().await;
}

#[tokio::test]
async fn cancel_reaches_the_node_and_quantity_spreads() {
    let dir = tempfile::tempdir().unwrap();
    let r = Router::start(dir.path(), 10.0, 30.0).await;
    let designer = r.designer().await;
    // A 100 mm cube takes many hours: with two makerspaces at similar distances, a queue of
    // copies on one outweighs the few km to the other.
    let design = r.cube(&designer, 100.0).await;
    let (ca, cb) = (
        r.node_credentials("berlin").await,
        r.node_credentials("hamburg").await,
    );
    let mut near = berlin_mk3(&r, &ca, vec![]).await;
    let _far = SimNode::connect(
        &r,
        &cb,
        "hamburg",
        vec![printer("mk4", BRANDENBURG, pb::Technology::Fdm, 200.0)],
        vec![],
    )
    .await;
    let mut jobs = r.jobs(&designer);
    let mut s = spec(&design, POTSDAM);
    s.quantity = 6;
    let created = jobs
        .submit_job(pb::SubmitJobRequest {
            spec: Some(s),
            printer: String::new(),
            idempotency_key: "batch".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .jobs;
    assert_eq!(created.len(), 6);
    let printers: std::collections::HashSet<_> =
        created.iter().map(|j| j.printer.clone()).collect();
    assert_eq!(
        printers.len(),
        2,
        "six copies spread over both printers: {printers:?}"
    );

    let on_near = created
        .iter()
        .find(|j| j.printer.contains("berlin"))
        .unwrap();
    let a = loop {
        let a = near.assignment().await;
        if a.job == on_near.name {
            break a;
        }
    };
    near.progress(&a.job, a.epoch, 0.1);
    wait_state(&mut jobs, &a.job, pb::JobState::Printing).await;
    let c = jobs
        .cancel_job(pb::CancelJobRequest {
            name: a.job.clone(),
            reason: "changed my mind".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(c.state, pb::JobState::Cancelled as i32);
    loop {
        if let pb::router_message::Msg::Cancel(x) = near.next().await {
            assert_eq!((x.job.as_str(), x.epoch), (a.job.as_str(), a.epoch));
            break;
        }
    }
    let list = jobs
        .list_jobs(pb::ListJobsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.jobs.len(), 6);
    r.stop().await;
}

#[tokio::test]
async fn a_restart_loses_no_job_in_any_state() {
    let dir = tempfile::tempdir().unwrap();
    let r = Router::start(dir.path(), 0.8, 30.0).await;
    let designer = r.designer().await;
    let design = r.cube(&designer, 20.0).await;
    let ca = r.node_credentials("berlin").await;
    let cb = r.node_credentials("hamburg").await;
    let mut node = berlin_mk3(&r, &ca, vec![]).await;
    let mut jobs = r.jobs(&designer);
    let mut names = Vec::new();
    for k in 0..4 {
        let j = jobs
            .submit_job(pb::SubmitJobRequest {
                spec: Some(spec(&design, POTSDAM)),
                printer: String::new(),
                idempotency_key: format!("k{k}"),
            })
            .await
            .unwrap()
            .into_inner()
            .jobs
            .remove(0);
        node.assignment().await;
        names.push(j.name);
    }
    // 0: completed, 1: cancelled, 2: printing, 3: assigned.
    node.progress(&names[0], 1, 0.5);
    node.result(&names[0], 1, true, false, "");
    wait_state(&mut jobs, &names[0], pb::JobState::Completed).await;
    jobs.cancel_job(pb::CancelJobRequest {
        name: names[1].clone(),
        reason: String::new(),
    })
    .await
    .unwrap();
    node.progress(&names[2], 1, 0.4);
    wait_state(&mut jobs, &names[2], pb::JobState::Printing).await;
    let before: Vec<pb::Job> = {
        let mut v = Vec::new();
        for n in &names {
            v.push(
                jobs.get_job(pb::GetJobRequest { name: n.clone() })
                    .await
                    .unwrap()
                    .into_inner(),
            );
        }
        v
    };
    drop(node);
    r.stop().await;

    let r = Router::start(dir.path(), 0.8, 30.0).await;
    let mut jobs = r.jobs(&designer);
    for b in &before {
        let a = jobs
            .get_job(pb::GetJobRequest {
                name: b.name.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (a.state, a.epoch, &a.printer),
            (b.state, b.epoch, &b.printer),
            "{}",
            b.name
        );
    }
    let printers = r
        .nodes(&designer)
        .list_printers(pb::ListPrintersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .printers;
    assert_eq!(printers.len(), 1);
    assert_eq!(
        printers[0].active_jobs, 2,
        "printing + assigned restored to the queue"
    );

    // The node reconnects holding only the print it was running: that one continues; the
    // assigned one it forgot is sent to it again.
    let mut node = berlin_mk3(
        &r,
        &ca,
        vec![pb::HeldJob {
            job: names[2].clone(),
            epoch: 1,
            printer_id: "mk3".into(),
        }],
    )
    .await;
    let again = node.assignment().await;
    assert_eq!((again.job.as_str(), again.epoch), (names[3].as_str(), 1));
    node.result(&names[2], 1, true, false, "");
    wait_state(&mut jobs, &names[2], pb::JobState::Completed).await;

    // A node that never returns after a restart loses its work to another one after a lease.
    let _ = cb;
    r.stop().await;
}

/// `e` refuses the request as invalid with a message starting with `prefix` (the field).
fn assert_invalid(e: &tonic::Status, prefix: &str) {
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().starts_with(prefix), "{}", e.message());
}

/// Client-controlled sizes are bounded before anything is kept: a hello declaring more printers
/// than a node may have, an over-long failure reason from a node (cut, the job still fails with
/// it), a label or material name of a megabyte, and a message over the decoding limit.
#[tokio::test]
async fn oversized_fields_from_clients_and_nodes_are_refused_or_cut() {
    use fabrouter_server::bounds;
    let dir = tempfile::tempdir().unwrap();
    let r = Router::start(dir.path(), 10.0, 30.0).await;
    let creds = r.node_credentials("berlin").await;

    // A hello of 1,001 printers: refused, naming the field.
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let many: Vec<_> = (0..=bounds::MAX_PRINTERS_PER_NODE)
        .map(|i| printer(&format!("p{i}"), BERLIN, pb::Technology::Fdm, 200.0))
        .collect();
    tx.send(pb::NodeMessage {
        msg: Some(pb::node_message::Msg::Hello(pb::NodeHello {
            agent_version: "test".into(),
            printers: many,
            held_jobs: vec![],
        })),
    })
    .unwrap();
    let mut client = r.nodes(&creds);
    let e = client
        .node_session(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
        .await
        .unwrap_err();
    assert_invalid(&e, "hello.printers has 1001 entries");
    assert!(r.state().store.list_printers().unwrap().is_empty());

    // A node's failure reason of 1 MiB is kept cut to the bound.
    let mut node = berlin_mk3(&r, &creds, vec![]).await;
    let designer = r.designer().await;
    let design = r.cube(&designer, 20.0).await;
    let mut jobs = r.jobs(&designer);
    let job = submit_one(&mut jobs, &design, "k1").await;
    let a = node.assignment().await;
    node.result(&a.job, a.epoch, false, false, &"x".repeat(1 << 20));
    let failed = wait_state(&mut jobs, &job.name, pb::JobState::Failed).await;
    assert!(
        failed.failure_reason.len() <= bounds::MAX_TEXT_BYTES
            && failed.failure_reason.ends_with('…'),
        "{} bytes",
        failed.failure_reason.len()
    );

    // Requests: a label and a material of a megabyte, a message over the decoding limit.
    let e = r
        .admin()
        .create_token(pb::CreateTokenRequest {
            role: pb::Role::Designer as i32,
            label: "l".repeat(1 << 20),
        })
        .await
        .unwrap_err();
    assert_invalid(&e, "label is 1048576 bytes");
    let mut s = spec(&design, BERLIN);
    s.material = Some(pb::Material {
        kind: "P".repeat(1 << 20),
        colour: String::new(),
    });
    let e = jobs
        .quote_job(pb::QuoteJobRequest {
            spec: Some(s),
            max_options: 0,
        })
        .await
        .unwrap_err();
    assert_invalid(&e, "spec.material.kind is");
    let e = jobs
        .cancel_job(pb::CancelJobRequest {
            name: job.name.clone(),
            reason: "r".repeat(bounds::MAX_MESSAGE_BYTES + 1),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::OutOfRange, "{}", e.message());
    r.stop().await;
}

#[tokio::test]
async fn printers_that_failed_a_job_are_remembered_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let r = Router::start(dir.path(), 10.0, 30.0).await;
    let designer = r.designer().await;
    let design = r.cube(&designer, 20.0).await;
    let creds = r.node_credentials("berlin").await;
    let two = || {
        vec![
            printer("near", BERLIN, pb::Technology::Fdm, 200.0),
            printer("far", HAMBURG, pb::Technology::Fdm, 200.0),
        ]
    };
    let mut node = SimNode::connect(&r, &creds, "berlin", two(), vec![]).await;
    let mut jobs = r.jobs(&designer);
    let job = submit_one(&mut jobs, &design, "k").await;
    let a = node.assignment_of(&job.name).await;
    assert_eq!(a.printer_id, "near");
    node.result(&a.job, a.epoch, false, true, "thermal runaway");
    let b = node.assignment_of(&job.name).await;
    assert_eq!(b.printer_id, "far");
    node.send(pb::node_message::Msg::Ack(pb::AssignmentAck {
        job: b.job.clone(),
        epoch: b.epoch,
        accepted: false,
        reason: "no PLA loaded".into(),
    }));
    let queued = wait_state(&mut jobs, &job.name, pb::JobState::Queued).await;
    assert_eq!(
        queued.failed_printers,
        ["nodes/berlin/printers/near", "nodes/berlin/printers/far"]
    );
    drop(node);
    r.stop().await;

    // After the restart both printers are back, and neither gets the job again.
    let r = Router::start(dir.path(), 10.0, 30.0).await;
    let _node = SimNode::connect(&r, &creds, "berlin", two(), vec![]).await;
    let mut jobs = r.jobs(&designer);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let still = jobs
        .get_job(pb::GetJobRequest {
            name: job.name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(still.state, pb::JobState::Queued as i32, "{still:?}");
    assert_eq!(still.failed_printers.len(), 2);
    r.stop().await;
}
