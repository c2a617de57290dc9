//! Group commit under concurrency: many clients submit at once (some retrying the same
//! idempotency key at the same moment), every acknowledged job survives a restart of fabd, and
//! each key names exactly one set of jobs.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::{Bearer, Router, cube_stl};
use fabrouter_api::v1 as pb;
use fabrouter_api::v1::design_service_client::DesignServiceClient;
use fabrouter_api::v1::node_service_client::NodeServiceClient;
use tokio_stream::StreamExt;

/// Long leases: the node below never has to heartbeat during the test.
const LEASE_S: f64 = 600.0;

fn printer(id: &str, lat: f64, lon: f64) -> pb::PrinterSpec {
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
        location: Some(pb::GeoPoint {
            lat_deg: lat,
            lon_deg: lon,
        }),
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

fn spec(design: &str, i: usize) -> pb::JobSpec {
    pb::JobSpec {
        design: design.into(),
        technology: pb::Technology::Fdm as i32,
        material: Some(pb::Material {
            kind: "PLA".into(),
            colour: String::new(),
        }),
        nozzle_mm: 0.0,
        customer_location: Some(pb::GeoPoint {
            lat_deg: 52.0 + (i % 10) as f64 * 0.1,
            lon_deg: 13.0 + (i % 7) as f64 * 0.1,
        }),
        max_distance_km: 0.0,
        quantity: 1,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_submits_are_idempotent_and_all_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let r = Router::start(dir.path(), LEASE_S, LEASE_S).await;
    let mut admin = r.admin();
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
    let stl = cube_stl(20.0);
    let design = DesignServiceClient::with_interceptor(r.channel.clone(), Bearer(designer.clone()))
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
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tx.send(pb::NodeMessage {
        msg: Some(pb::node_message::Msg::Hello(pb::NodeHello {
            agent_version: "test".into(),
            printers: (0..4)
                .map(|i| printer(&format!("p{i}"), 52.5 + i as f64 * 0.05, 13.4))
                .collect(),
            held_jobs: vec![],
        })),
    })
    .unwrap();
    let mut inbox = NodeServiceClient::with_interceptor(
        r.channel.clone(),
        Bearer(format!("node:berlin:{node_secret}")),
    )
    .node_session(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
    .await
    .unwrap()
    .into_inner();
    let drain = tokio::spawn(async move { while let Some(Ok(_)) = inbox.next().await {} });

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
    drop(tx);
    drain.abort();
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
    let printers = NodeServiceClient::with_interceptor(r.channel.clone(), Bearer(designer.clone()))
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
