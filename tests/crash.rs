//! fabd killed (SIGKILL) with jobs in every state and many submits being stored: after a
//! restart every job that was in a state is still in it, every acknowledged job is there, every
//! idempotency key names the jobs a retry gets, and no job exists that no key names (a
//! submission cut short by the crash leaves nothing behind).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fabrouter::{Fabd, reference};
use fabrouter_api::v1 as pb;
use pb::admin_service_client::AdminServiceClient;
use pb::design_service_client::DesignServiceClient;
use pb::job_service_client::JobServiceClient;
use pb::node_service_client::NodeServiceClient;
use tokio_stream::StreamExt as _;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

#[derive(Clone)]
struct Bearer(String);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let v = format!("Bearer {}", self.0).parse().unwrap();
        req.metadata_mut().insert("authorization", v);
        Ok(req)
    }
}

type Jobs = JobServiceClient<InterceptedService<Channel, Bearer>>;

async fn channel(fabd: &Fabd) -> Channel {
    Channel::from_shared(fabd.addr.clone())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

fn printer(id: &str, lat_deg: f64, lon_deg: f64) -> pb::PrinterSpec {
    pb::PrinterSpec {
        printer_id: id.into(),
        technology: pb::Technology::Fdm as i32,
        build_x_mm: 200.0,
        build_y_mm: 200.0,
        build_z_mm: 200.0,
        nozzle_diameters_mm: vec![0.4],
        materials: vec![pb::Material {
            kind: "PLA".into(),
            colour: "black".into(),
        }],
        profiles: vec!["prusaslicer-b".into()],
        location: Some(pb::GeoPoint { lat_deg, lon_deg }),
        price: Some(pb::PriceModel {
            currency: "EUR".into(),
            per_hour_minor: 200,
            per_gram_minor: 5,
            setup_fee_minor: 300,
        }),
        makerspace: format!("space-{id}"),
        firmware_flavor: "marlin2".into(),
    }
}

fn submit(design: &str, key: &str, quantity: u32) -> pb::SubmitJobRequest {
    pb::SubmitJobRequest {
        spec: Some(pb::JobSpec {
            design: design.into(),
            technology: pb::Technology::Fdm as i32,
            material: Some(pb::Material {
                kind: "PLA".into(),
                colour: String::new(),
            }),
            nozzle_mm: 0.0,
            customer_location: Some(pb::GeoPoint {
                lat_deg: 52.39,
                lon_deg: 13.06,
            }),
            max_distance_km: 0.0,
            quantity,
        }),
        printer: String::new(),
        idempotency_key: key.into(),
    }
}

/// Waits for the assignment of `job`, skipping other messages.
async fn next_assignment(
    messages: &mut (impl tokio_stream::Stream<Item = pb::router_message::Msg> + Unpin),
    job: &str,
) -> pb::JobAssignment {
    let wait = async {
        while let Some(m) = messages.next().await {
            if let pb::router_message::Msg::Assignment(a) = m
                && a.job == job
            {
                return a;
            }
        }
        panic!("the node stream ended before {job} was assigned");
    };
    tokio::time::timeout(Duration::from_secs(20), wait)
        .await
        .unwrap_or_else(|_| panic!("{job} was never assigned"))
}

async fn wait_state(jobs: &mut Jobs, name: &str, want: pb::JobState) -> pb::Job {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let job = jobs
            .get_job(pb::GetJobRequest { name: name.into() })
            .await
            .unwrap()
            .into_inner();
        if job.state == want as i32 {
            return job;
        }
        assert!(
            Instant::now() < deadline,
            "{name} never reached {want:?}: {job:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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
    let dir = tempfile::tempdir().unwrap();
    let mut fabd = Fabd::start(dir.path());
    let ch = channel(&fabd).await;
    let mut admin = AdminServiceClient::with_interceptor(ch.clone(), Bearer(fabd.admin_token()));
    let designer = admin
        .create_token(pb::CreateTokenRequest {
            role: pb::Role::Designer as i32,
            label: "d".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .secret;
    let node_secret = admin
        .create_node(pb::CreateNodeRequest {
            node_id: "berlin".into(),
            label: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .secret;
    let stl = std::fs::read(reference("stl/trimesh__20mm-xyz-cube.stl")).unwrap();
    let design = DesignServiceClient::with_interceptor(ch.clone(), Bearer(designer.clone()))
        .upload_design(tokio_stream::iter(vec![
            pb::UploadDesignRequest {
                payload: Some(pb::upload_design_request::Payload::Metadata(
                    pb::UploadMetadata {
                        file_name: "cube.stl".into(),
                        declared_size_bytes: stl.len() as u64,
                        sha256: String::new(),
                        format: pb::DesignFormat::Stl as i32,
                    },
                )),
            },
            pb::UploadDesignRequest {
                payload: Some(pb::upload_design_request::Payload::Chunk(stl)),
            },
        ]))
        .await
        .unwrap()
        .into_inner()
        .name;
    // A node with two printers, connected for as long as the first fabd lives.
    let (node_tx, node_rx) = tokio::sync::mpsc::unbounded_channel();
    node_tx
        .send(pb::NodeMessage {
            msg: Some(pb::node_message::Msg::Hello(pb::NodeHello {
                agent_version: "test".into(),
                printers: vec![printer("mk3", 52.52, 13.405), printer("mk4", 53.55, 9.99)],
                held_jobs: vec![],
            })),
        })
        .unwrap();
    let inbox = NodeServiceClient::with_interceptor(
        ch.clone(),
        Bearer(format!("node:berlin:{node_secret}")),
    )
    .node_session(tokio_stream::wrappers::UnboundedReceiverStream::new(
        node_rx,
    ))
    .await
    .unwrap()
    .into_inner();
    let heartbeat = node_tx.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let beat = pb::NodeMessage {
                msg: Some(pb::node_message::Msg::Heartbeat(pb::Heartbeat::default())),
            };
            if heartbeat.send(beat).is_err() {
                return;
            }
        }
    });
    let node = |msg| {
        let _ = node_tx.send(pb::NodeMessage { msg: Some(msg) });
    };
    let progress = |job: &str, epoch, fraction| {
        pb::node_message::Msg::Progress(pb::JobProgress {
            job: job.into(),
            epoch,
            fraction,
            phase: "printing".into(),
            ..Default::default()
        })
    };
    let result = |job: &str, epoch, success, printer_fault| {
        pb::node_message::Msg::Result(pb::JobResult {
            job: job.into(),
            epoch,
            success,
            reason: "test".into(),
            printer_fault,
        })
    };
    // The router's messages to the node.
    let mut assignments = Box::pin(inbox.filter_map(|m| m.ok().and_then(|m| m.msg)));

    // One job in each state, each reached before the crash.
    let mut jobs = JobServiceClient::with_interceptor(ch.clone(), Bearer(designer.clone()));
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
        let a = next_assignment(&mut assignments, &job.name).await;
        match want {
            pb::JobState::Printing => node(progress(&a.job, a.epoch, 0.3)),
            pb::JobState::Completed => {
                node(progress(&a.job, a.epoch, 0.5));
                node(result(&a.job, a.epoch, true, false));
            }
            pb::JobState::Failed => node(result(&a.job, a.epoch, false, false)),
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
                node(result(&a.job, a.epoch, false, true));
                let b = next_assignment(&mut assignments, &job.name).await;
                node(result(&b.job, b.epoch, false, true));
            }
            _ => {}
        }
        in_state.push(wait_state(&mut jobs, &job.name, want).await);
    }
    tokio::spawn(async move { while assignments.next().await.is_some() {} });

    // Submitters: each key once, quantities 1-3; what was acknowledged is recorded.
    let acked: Arc<Mutex<BTreeMap<String, Vec<String>>>> = Arc::default();
    let tried: Arc<Mutex<BTreeMap<String, u32>>> = Arc::default();
    let mut tasks = Vec::new();
    for w in 0..16 {
        let mut jobs = JobServiceClient::with_interceptor(ch.clone(), Bearer(designer.clone()));
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

    let fabd = Fabd::start(dir.path());
    let ch = channel(&fabd).await;
    let mut jobs = JobServiceClient::with_interceptor(ch, Bearer(designer.clone()));
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
