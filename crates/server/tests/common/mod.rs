//! What the server's integration tests share: a router on loopback with a real sled directory,
//! clients with a bearer token, and simulated nodes that speak the real node protocol.
//! Each test binary uses a part of it.
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use fabrouter_api::v1 as pb;
use fabrouter_api::v1::admin_service_client::AdminServiceClient;
use fabrouter_api::v1::design_service_client::DesignServiceClient;
use fabrouter_api::v1::job_service_client::JobServiceClient;
use fabrouter_api::v1::node_service_client::NodeServiceClient;
use fabrouter_server::config::Config;
use fabrouter_server::network::NetworkConfig;
use fabrouter_server::{Running, start};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::StreamExt;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

pub type Authed = InterceptedService<Channel, Bearer>;

#[derive(Clone)]
pub struct Bearer(pub String);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        req.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", self.0).parse().unwrap(),
        );
        Ok(req)
    }
}

pub const BERLIN: (f64, f64) = (52.52, 13.405);
pub const POTSDAM: (f64, f64) = (52.39, 13.06);
pub const HAMBURG: (f64, f64) = (53.55, 9.99);
pub const MUNICH: (f64, f64) = (48.14, 11.58);
pub const BRANDENBURG: (f64, f64) = (52.41, 12.53);

pub struct Router {
    running: Option<Running>,
    stop: Option<oneshot::Sender<()>>,
    pub channel: Channel,
    /// The first-start admin token.
    pub admin: String,
}

impl Router {
    pub async fn start(dir: &Path, lease_s: f64, grace_s: f64) -> Router {
        let mut config = Config::embedded(dir);
        config.network = NetworkConfig {
            lease_s,
            lost_grace_s: grace_s,
            max_reroutes: 3,
        };
        let (tx, rx) = oneshot::channel::<()>();
        let running = start(config, async {
            let _ = rx.await;
        })
        .await
        .unwrap();
        let channel = Channel::from_shared(format!("http://{}", running.addr))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let admin = std::fs::read_to_string(dir.join("admin.token"))
            .unwrap()
            .trim()
            .to_string();
        Router {
            running: Some(running),
            stop: Some(tx),
            channel,
            admin,
        }
    }

    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.running.take().unwrap().wait().await.unwrap();
    }

    pub fn admin(&self) -> AdminServiceClient<Authed> {
        AdminServiceClient::with_interceptor(self.channel.clone(), Bearer(self.admin.clone()))
    }

    pub fn jobs(&self, token: &str) -> JobServiceClient<Authed> {
        JobServiceClient::with_interceptor(self.channel.clone(), Bearer(token.into()))
    }

    pub fn designs(&self, token: &str) -> DesignServiceClient<Authed> {
        DesignServiceClient::with_interceptor(self.channel.clone(), Bearer(token.into()))
    }

    /// The router's shared state, to look behind the API (e.g. at the store).
    pub fn state(&self) -> &fabrouter_server::State {
        &self.running.as_ref().expect("running").state
    }

    /// A new token (and principal) with `role`; returns its secret.
    pub async fn token(&self, role: pb::Role) -> String {
        self.admin()
            .create_token(pb::CreateTokenRequest {
                role: role as i32,
                label: "d".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .secret
    }

    pub async fn designer(&self) -> String {
        self.token(pb::Role::Designer).await
    }

    pub async fn node_credentials(&self, id: &str) -> String {
        let secret = self
            .admin()
            .create_node(pb::CreateNodeRequest {
                node_id: id.into(),
                label: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .secret;
        format!("node:{id}:{secret}")
    }

    /// Uploads a cube of `size_mm` and returns its design name.
    pub async fn cube(&self, token: &str, size_mm: f32) -> String {
        self.designs(token)
            .upload_design(tokio_stream::iter(upload_messages(cube_stl(size_mm))))
            .await
            .unwrap()
            .into_inner()
            .name
    }
}

/// The messages of an STL upload: metadata, then the file in one chunk.
pub fn upload_messages(stl: Vec<u8>) -> Vec<pb::UploadDesignRequest> {
    vec![
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
    ]
}

pub fn cube_stl(s: f32) -> Vec<u8> {
    let v = |x: f32, y: f32, z: f32| [x * s, y * s, z * s];
    let quads = [
        [v(0., 0., 0.), v(0., 1., 0.), v(1., 1., 0.), v(1., 0., 0.)],
        [v(0., 0., 1.), v(1., 0., 1.), v(1., 1., 1.), v(0., 1., 1.)],
        [v(0., 0., 0.), v(1., 0., 0.), v(1., 0., 1.), v(0., 0., 1.)],
        [v(0., 1., 0.), v(0., 1., 1.), v(1., 1., 1.), v(1., 1., 0.)],
        [v(0., 0., 0.), v(0., 0., 1.), v(0., 1., 1.), v(0., 1., 0.)],
        [v(1., 0., 0.), v(1., 1., 0.), v(1., 1., 1.), v(1., 0., 1.)],
    ];
    let mut b = vec![0u8; 80];
    b.extend_from_slice(&12u32.to_le_bytes());
    for q in quads {
        for t in [[q[0], q[1], q[2]], [q[0], q[2], q[3]]] {
            b.extend_from_slice(&[0u8; 12]);
            for p in t {
                for c in p {
                    b.extend_from_slice(&c.to_le_bytes());
                }
            }
            b.extend_from_slice(&[0, 0]);
        }
    }
    b
}

pub fn printer(id: &str, at: (f64, f64), tech: pb::Technology, build_mm: f64) -> pb::PrinterSpec {
    pb::PrinterSpec {
        printer_id: id.into(),
        technology: tech as i32,
        build_x_mm: build_mm,
        build_y_mm: build_mm,
        build_z_mm: build_mm,
        nozzle_diameters_mm: vec![0.4],
        materials: vec![pb::Material {
            kind: "PLA".into(),
            colour: "black".into(),
        }],
        profiles: vec!["prusaslicer-b".into()],
        location: Some(pb::GeoPoint {
            lat_deg: at.0,
            lon_deg: at.1,
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

/// A node agent speaking the real protocol, with heartbeats that can be stopped.
pub struct SimNode {
    pub id: String,
    out: mpsc::UnboundedSender<pb::NodeMessage>,
    inbox: tonic::Streaming<pb::RouterMessage>,
    beat: Option<tokio::task::JoinHandle<()>>,
}

impl SimNode {
    pub async fn connect(
        r: &Router,
        creds: &str,
        id: &str,
        printers: Vec<pb::PrinterSpec>,
        held: Vec<pb::HeldJob>,
    ) -> SimNode {
        let (out, rx) = mpsc::unbounded_channel();
        out.send(pb::NodeMessage {
            msg: Some(pb::node_message::Msg::Hello(pb::NodeHello {
                agent_version: "test".into(),
                printers,
                held_jobs: held,
            })),
        })
        .unwrap();
        let mut client =
            NodeServiceClient::with_interceptor(r.channel.clone(), Bearer(creds.into()));
        let mut inbox = client
            .node_session(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        let first = inbox.next().await.unwrap().unwrap();
        let Some(pb::router_message::Msg::Welcome(w)) = first.msg else {
            panic!("expected Welcome, got {first:?}");
        };
        assert_eq!(w.node_id, id);
        let beat_tx = out.clone();
        let interval = Duration::from_secs_f64(w.heartbeat_interval_s);
        let beat = tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let hb = pb::NodeMessage {
                    msg: Some(pb::node_message::Msg::Heartbeat(pb::Heartbeat::default())),
                };
                if beat_tx.send(hb).is_err() {
                    return;
                }
            }
        });
        SimNode {
            id: id.into(),
            out,
            inbox,
            beat: Some(beat),
        }
    }

    pub fn silence(&mut self) {
        if let Some(b) = self.beat.take() {
            b.abort();
        }
    }

    pub async fn next(&mut self) -> pb::router_message::Msg {
        tokio::time::timeout(Duration::from_secs(10), self.inbox.next())
            .await
            .unwrap_or_else(|_| panic!("{}: no message from the router", self.id))
            .unwrap()
            .unwrap()
            .msg
            .unwrap()
    }

    pub async fn assignment(&mut self) -> pb::JobAssignment {
        loop {
            if let pb::router_message::Msg::Assignment(a) = self.next().await {
                return a;
            }
        }
    }

    pub fn send(&self, msg: pb::node_message::Msg) {
        let _ = self.out.send(pb::NodeMessage { msg: Some(msg) });
    }

    pub fn progress(&self, job: &str, epoch: u64, fraction: f64) {
        self.send(pb::node_message::Msg::Progress(pb::JobProgress {
            job: job.into(),
            epoch,
            fraction,
            phase: "printing".into(),
            ..Default::default()
        }));
    }

    pub fn result(&self, job: &str, epoch: u64, success: bool, printer_fault: bool, reason: &str) {
        self.send(pb::node_message::Msg::Result(pb::JobResult {
            job: job.into(),
            epoch,
            success,
            reason: reason.into(),
            printer_fault,
        }));
    }
}

impl Drop for SimNode {
    fn drop(&mut self) {
        self.silence();
    }
}

pub fn spec(design: &str, at: (f64, f64)) -> pb::JobSpec {
    pb::JobSpec {
        design: design.into(),
        technology: pb::Technology::Fdm as i32,
        material: Some(pb::Material {
            kind: "pla".into(),
            colour: String::new(),
        }),
        nozzle_mm: 0.0,
        customer_location: Some(pb::GeoPoint {
            lat_deg: at.0,
            lon_deg: at.1,
        }),
        max_distance_km: 0.0,
        quantity: 1,
    }
}

/// Submits one job for a customer in Potsdam.
pub async fn submit_one(jobs: &mut JobServiceClient<Authed>, design: &str, key: &str) -> pb::Job {
    jobs.submit_job(pb::SubmitJobRequest {
        spec: Some(spec(design, POTSDAM)),
        printer: String::new(),
        idempotency_key: key.into(),
    })
    .await
    .unwrap()
    .into_inner()
    .jobs
    .remove(0)
}

pub async fn wait_state(
    jobs: &mut JobServiceClient<Authed>,
    name: &str,
    want: pb::JobState,
) -> pb::Job {
    for _ in 0..200 {
        let j = jobs
            .get_job(pb::GetJobRequest { name: name.into() })
            .await
            .unwrap()
            .into_inner();
        if j.state == want as i32 {
            return j;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{name} never reached {want:?}");
}
