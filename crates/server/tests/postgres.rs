//! fabd on PostgreSQL, end to end over real gRPC on loopback with a simulated node: a print
//! completes and a restart of fabd (a new store, a new pool) keeps every job, its history and
//! its idempotency key; and `fabd migrate` (the real binary) copies a router from its sled
//! directory into PostgreSQL, after which fabd serves the same tokens, designs, printers and
//! jobs from the database. Against a throwaway cluster; ignored with the reason where
//! PostgreSQL's server binaries are missing, failing under CI=true.

use std::sync::Arc;

use fabrouter_api::v1 as pb;
use fabrouter_store::{PgStore, Store};
use fabrouter_testkit::router::*;
use tokio_stream::StreamExt;

fn database() -> String {
    fabrouter_testkit::require(fabrouter_testkit::Tool::Postgres);
    let cluster = fabrouter_testkit::pg::shared()
        .unwrap_or_else(|e| panic!("cannot start a throwaway PostgreSQL: {e}"));
    cluster.database().unwrap()
}

fn pg(url: &str) -> Arc<dyn Store> {
    Arc::new(PgStore::connect(url).unwrap())
}

async fn get(
    jobs: &mut fabrouter_api::v1::job_service_client::JobServiceClient<Authed>,
    name: &str,
) -> pb::Job {
    jobs.get_job(pb::GetJobRequest { name: name.into() })
        .await
        .unwrap()
        .into_inner()
}

async fn download(r: &Router, token: &str, name: &str) -> Vec<u8> {
    let mut s = r
        .designs(token)
        .download_design(pb::DownloadDesignRequest { name: name.into() })
        .await
        .unwrap()
        .into_inner();
    let mut bytes = Vec::new();
    while let Some(m) = s.next().await {
        bytes.extend_from_slice(&m.unwrap().chunk);
    }
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    missing_postgres,
    ignore = "needs PostgreSQL's server binaries (apt-get install postgresql)"
)]
async fn a_print_completes_and_a_restart_keeps_every_job_on_postgres() {
    let url = database();
    let dir = tempfile::tempdir().unwrap();
    let r = Router::start_with_store(dir.path(), pg(&url)).await;
    let designer = r.designer().await;
    let creds = r.node_credentials("n1").await;
    let mut node = SimNode::connect(
        &r,
        &creds,
        "n1",
        vec![printer("a", BERLIN, pb::Technology::Fdm, 200.0)],
        vec![],
    )
    .await;
    let design = r.cube(&designer, 20.0).await;
    let mut jobs = r.jobs(&designer);
    let done = submit_one(&mut jobs, &design, "k1").await;
    let a = node.assignment_of(&done.name).await;
    node.progress(&done.name, a.epoch, 0.5);
    node.result(&done.name, a.epoch, true, false, "");
    wait_state(&mut jobs, &done.name, pb::JobState::Completed).await;
    let waiting = submit_one(&mut jobs, &design, "k2").await;
    node.assignment_of(&waiting.name).await;
    let history = r.events(&designer, &done.name).await;
    assert!(history.len() >= 4, "{history:?}");
    drop(node);
    r.stop().await;
    // Nothing of the embedded store was opened.
    assert!(!dir.path().join("db").exists());

    let r = Router::start_with_store(dir.path(), pg(&url)).await;
    let mut jobs = r.jobs(&designer);
    assert_eq!(
        get(&mut jobs, &done.name).await.state,
        pb::JobState::Completed as i32
    );
    assert_eq!(r.events(&designer, &done.name).await, history);
    assert_eq!(
        get(&mut jobs, &waiting.name).await.state,
        pb::JobState::Assigned as i32
    );
    // The waiting job is back on its printer, and its node gets it again on reconnecting.
    let printers = r
        .nodes(&designer)
        .list_printers(pb::ListPrintersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .printers;
    assert_eq!(printers.iter().map(|p| p.active_jobs).sum::<u32>(), 1);
    let again = jobs
        .submit_job(pb::SubmitJobRequest {
            spec: Some(spec(&design, POTSDAM)),
            printer: String::new(),
            idempotency_key: "k1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(again.replayed);
    assert_eq!(again.jobs[0].name, done.name);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    missing_postgres,
    ignore = "needs PostgreSQL's server binaries (apt-get install postgresql)"
)]
async fn fabd_migrate_copies_a_sled_router_into_postgres() {
    let url = database();
    let dir = tempfile::tempdir().unwrap();
    // A router on sled with a design, a node, a finished job and a waiting one.
    let r = Router::start(dir.path(), 600.0, 600.0).await;
    let designer = r.designer().await;
    let creds = r.node_credentials("n1").await;
    let mut node = SimNode::connect(
        &r,
        &creds,
        "n1",
        vec![printer("a", BERLIN, pb::Technology::Fdm, 200.0)],
        vec![],
    )
    .await;
    let stl = cube_stl(20.0);
    let design = r.upload(&designer, stl.clone()).await;
    let mut jobs = r.jobs(&designer);
    let done = submit_one(&mut jobs, &design, "k1").await;
    let a = node.assignment_of(&done.name).await;
    node.result(&done.name, a.epoch, true, false, "");
    wait_state(&mut jobs, &done.name, pb::JobState::Completed).await;
    let waiting = submit_one(&mut jobs, &design, "k2").await;
    node.assignment_of(&waiting.name).await;
    let history = r.events(&designer, &done.name).await;
    drop(node);
    r.stop().await;

    let fabd = env!("CARGO_BIN_EXE_fabd");
    let run = || {
        std::process::Command::new(fabd)
            .arg("migrate")
            .arg("--from")
            .arg(dir.path())
            .arg("--to")
            .arg(&url)
            .env("FABD_METRICS_LISTEN", "off")
            .output()
            .unwrap()
    };
    let out = run();
    let said = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("1 designs") && said.contains("2 submissions with 2 jobs"),
        "{said}"
    );
    // Again, as after an interruption: nothing is copied twice.
    let out = run();
    let said = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("0 designs") && said.contains("2 submissions already there"),
        "{said}"
    );

    // fabd on the database, with the same data directory (its admin token file).
    let r = Router::start_with_store(dir.path(), pg(&url)).await;
    r.admin()
        .list_tokens(pb::ListTokensRequest::default())
        .await
        .unwrap();
    let mut jobs = r.jobs(&designer);
    assert_eq!(
        get(&mut jobs, &done.name).await.state,
        pb::JobState::Completed as i32
    );
    assert_eq!(r.events(&designer, &done.name).await, history);
    assert_eq!(
        get(&mut jobs, &waiting.name).await.state,
        pb::JobState::Assigned as i32
    );
    assert_eq!(download(&r, &designer, &design).await, stl);
    // The node identity came along: it connects with its old secret.
    let _node = SimNode::connect(
        &r,
        &creds,
        "n1",
        vec![printer("a", BERLIN, pb::Technology::Fdm, 200.0)],
        vec![],
    )
    .await;
    r.stop().await;

    // A directory that holds no store is refused with the reason.
    let empty = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(fabd)
        .args(["migrate", "--from"])
        .arg(empty.path())
        .args(["--to", &url])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("holds no fabd store"));
}
