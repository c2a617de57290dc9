//! The router state every network input starts from, made once per process through fabd's
//! public API so that it is exactly what a running router stores.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use fabrouter_api::v1 as pb;
use fabrouter_api::v1::admin_service_client::AdminServiceClient;
use fabrouter_api::v1::design_service_client::DesignServiceClient;
use fabrouter_api::v1::job_service_client::JobServiceClient;
use fabrouter_server::NetworkConfig;
use fabrouter_server::config::Config;
use fabrouter_server::convert;
use fabrouter_server::estimates::Profiles;
use fabrouter_testkit::router::{Authed, Bearer};
use tokio::sync::{mpsc, oneshot};
use tonic::transport::Channel;

pub struct Fixture {
    /// A stopped router's data directory: copy it, never open it.
    pub dir: tempfile::TempDir,
    /// Job ids, in submission order.
    pub jobs: Vec<String>,
    /// Node id and the printers it declares.
    pub nodes: Vec<(String, Vec<pb::PrinterSpec>)>,
    /// Per node, indices into `jobs` of the jobs assigned to it.
    pub held: Vec<Vec<u8>>,
    pub profiles: Arc<Profiles>,
}

pub fn get() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(build)
}

fn printer(id: &str, at: (f64, f64)) -> pb::PrinterSpec {
    fabrouter_testkit::router::printer(id, at, pb::Technology::Fdm, 200.0)
}

fn build() -> Fixture {
    let dir = fabrouter_fuzz::scratch_dir().expect("temp dir");
    let nodes = vec![
        (
            "berlin".to_string(),
            vec![
                printer("b1", (52.52, 13.405)),
                printer("b2", (52.52, 13.41)),
            ],
        ),
        ("potsdam".to_string(), vec![printer("p1", (52.39, 13.06))]),
        ("hamburg".to_string(), vec![printer("h1", (53.55, 9.99))]),
    ];
    // Customers: two near Berlin, one near Potsdam, one near Hamburg, one between.
    let customers = [
        (52.52, 13.40),
        (52.50, 13.42),
        (52.40, 13.07),
        (53.55, 10.0),
        (52.45, 12.5),
    ];
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (jobs, held) = rt.block_on(async {
        let mut config = Config::embedded(dir.path());
        config.network = NetworkConfig {
            lease_s: 1e6,
            lost_grace_s: 1e6,
            max_reroutes: 3,
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let running = fabrouter_server::start(config, async {
            let _ = stopped.await;
        })
        .await
        .expect("fabd starts");
        let channel = Channel::from_shared(format!("http://{}", running.addr))
            .expect("uri")
            .connect()
            .await
            .expect("connect");
        let admin = std::fs::read_to_string(dir.path().join("admin.token"))
            .expect("admin token")
            .trim()
            .to_string();
        let designer = AdminServiceClient::with_interceptor(channel.clone(), Bearer(admin))
            .create_token(pb::CreateTokenRequest {
                role: pb::Role::Designer as i32,
                label: "fuzz".into(),
            })
            .await
            .expect("designer token")
            .into_inner()
            .secret;
        let stl = fabrouter_testkit::cube_stl(20.0);
        let mut designs: DesignServiceClient<Authed> =
            DesignServiceClient::with_interceptor(channel.clone(), Bearer(designer.clone()));
        let upload = vec![
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
        ];
        let design = designs
            .upload_design(tokio_stream::iter(upload))
            .await
            .expect("upload")
            .into_inner()
            .name;

        let net = running.network.clone();
        let mut links = Vec::new();
        for (id, printers) in &nodes {
            let (tx, rx) = mpsc::unbounded_channel();
            let hello = pb::NodeHello {
                agent_version: "fuzz".into(),
                printers: printers.clone(),
                held_jobs: Vec::new(),
            };
            let session = net
                .node_connected(id, &convert::hello_from(hello), tx)
                .expect("hello");
            links.push((session, rx));
        }
        let mut jobs_client: JobServiceClient<Authed> =
            JobServiceClient::with_interceptor(channel.clone(), Bearer(designer));
        let mut jobs = Vec::new();
        for (i, at) in customers.iter().enumerate() {
            let created = jobs_client
                .submit_job(pb::SubmitJobRequest {
                    spec: Some(pb::JobSpec {
                        design: design.clone(),
                        technology: pb::Technology::Fdm as i32,
                        material: Some(pb::Material {
                            kind: "PLA".into(),
                            colour: "black".into(),
                        }),
                        nozzle_mm: 0.4,
                        customer_location: Some(pb::GeoPoint {
                            lat_deg: at.0,
                            lon_deg: at.1,
                        }),
                        max_distance_km: 1000.0,
                        quantity: 1,
                    }),
                    printer: String::new(),
                    idempotency_key: format!("fuzz-{i}"),
                })
                .await
                .expect("submit")
                .into_inner();
            for j in created.jobs {
                jobs.push(j.name.trim_start_matches("jobs/").to_string());
            }
        }
        // Who got what, from the assignments the router sent.
        let mut held = vec![Vec::new(); nodes.len()];
        let mut first = None;
        for (n, (session, rx)) in links.iter_mut().enumerate() {
            while let Ok(Ok(m)) = rx.try_recv() {
                if let Some(pb::router_message::Msg::Assignment(a)) = convert::command(m).msg
                    && let Some(k) = jobs.iter().position(|j| a.job == format!("jobs/{j}"))
                {
                    held[n].push(k as u8);
                    first.get_or_insert((n, *session, a.job, a.epoch));
                }
            }
        }
        // One job is printing.
        let (n, session, job, epoch) = first.expect("some job was assigned");
        let progress = convert::report_from(pb::node_message::Msg::Progress(pb::JobProgress {
            job,
            epoch,
            fraction: 0.1,
            phase: "printing".into(),
            ..Default::default()
        }))
        .expect("a report");
        net.node_message(&nodes[n].0, session, progress);
        drop(net);
        drop(channel);
        let _ = stop.send(());
        tokio::time::timeout(Duration::from_secs(30), running.wait())
            .await
            .expect("fabd stops")
            .expect("clean stop");
        (jobs, held)
    });
    drop(rt);
    Fixture {
        dir,
        jobs,
        nodes,
        held,
        profiles: Arc::new(Profiles::load(None).expect("profiles")),
    }
}
