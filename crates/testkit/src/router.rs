//! The router harness: fabd started in-process on loopback with a real sled directory, or on a
//! store the test opened ([`Router`]), clients that send a bearer token ([`Bearer`]), builders for printer and job
//! specs, job polling, and a simulated node that speaks the real `NodeSession` protocol
//! ([`SimNode`]). Tests of the server, the node agent and the cross-crate tests use it, so a
//! change of the API or of `fabrouter_server::start` is followed in one place.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fabrouter_api::v1 as pb;
use fabrouter_api::v1::admin_service_client::AdminServiceClient;
use fabrouter_api::v1::design_service_client::DesignServiceClient;
use fabrouter_api::v1::job_service_client::JobServiceClient;
use fabrouter_api::v1::node_service_client::NodeServiceClient;
use fabrouter_server::NetworkConfig;
use fabrouter_server::config::Config;
use fabrouter_server::{Running, start, start_with_store};
use fabrouter_store::Store;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::StreamExt;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

pub use crate::cube_stl;

/// A channel whose calls carry a bearer token.
pub type Authed = InterceptedService<Channel, Bearer>;

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone)]
pub struct Bearer(pub String);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        // A token that is not a valid header value is the caller's error, not a panic in a
        // benchmark's task.
        let v = format!("Bearer {}", self.0)
            .parse()
            .map_err(|_| tonic::Status::internal("the token is not a header value"))?;
        req.metadata_mut().insert("authorization", v);
        Ok(req)
    }
}

/// Places the tests route between (latitude, longitude in degrees).
pub const BERLIN: (f64, f64) = (52.52, 13.405);
pub const POTSDAM: (f64, f64) = (52.39, 13.06);
pub const HAMBURG: (f64, f64) = (53.55, 9.99);
pub const MUNICH: (f64, f64) = (48.14, 11.58);
pub const BRANDENBURG: (f64, f64) = (52.41, 12.53);

/// A connected channel to `uri` (`http://host:port`).
pub async fn connect(uri: &str) -> Channel {
    Channel::from_shared(uri.to_string())
        .unwrap()
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connecting to {uri}: {e}"))
}

/// A router's API as its admin sees it: clients for any token, and the calls most tests begin
/// with. [`Router`] derefs to one; [`Api::connect`] makes one for a fabd process.
pub struct Api {
    pub channel: Channel,
    /// The first-start admin token.
    pub admin: String,
}

/// fabd running in this process, and its [`Api`].
pub struct Router {
    /// The checked store a debug build serves (see `checked_store`).
    checked: Option<Arc<crate::checked_store::CheckedStore>>,
    running: Option<Running>,
    stop: Option<oneshot::Sender<()>>,
    dir: PathBuf,
    api: Api,
}

impl std::ops::Deref for Router {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Router {
    /// The embedded configuration on `dir` with these lease and lost-job grace times.
    pub async fn start(dir: &Path, lease_s: f64, grace_s: f64) -> Router {
        Router::start_with(dir, |config| {
            config.network = NetworkConfig {
                lease_s,
                lost_grace_s: grace_s,
                max_reroutes: 3,
            };
        })
        .await
    }

    /// The embedded configuration on `dir` (loopback, any port), changed by `configure`.
    pub async fn start_with(dir: &Path, configure: impl FnOnce(&mut Config)) -> Router {
        let mut config = Config::embedded(dir);
        configure(&mut config);
        Router::serve(dir, config, None).await
    }

    /// The embedded configuration on `dir`, serving `store` (opened by the test) rather than the
    /// sled store `start` would open there; `dir` still receives the admin token.
    pub async fn start_with_store(dir: &Path, store: Arc<dyn Store>) -> Router {
        Router::serve(dir, Config::embedded(dir), Some(store)).await
    }

    /// `config` (its `data_dir` should be `dir`), serving `store`.
    pub async fn start_with_config_and_store(
        dir: &Path,
        config: Config,
        store: Arc<dyn Store>,
    ) -> Router {
        Router::serve(dir, config, Some(store)).await
    }

    async fn serve(dir: &Path, config: Config, store: Option<Arc<dyn Store>>) -> Router {
        let (tx, rx) = oneshot::channel::<()>();
        let shutdown = async {
            let _ = rx.await;
        };
        // Debug builds (tests) serve a store that checks the core never calls it under its
        // registry lock; release builds (benchmarks) serve sled as fabd does.
        let checked = (store.is_none() && cfg!(debug_assertions)).then(|| {
            std::fs::create_dir_all(&config.data_dir).unwrap();
            Arc::new(crate::checked_store::CheckedStore::open(&config.data_dir))
        });
        let store = store.or_else(|| checked.clone().map(|c| c as Arc<dyn Store>));
        let running = match store {
            Some(store) => start_with_store(config, store, shutdown).await,
            None => start(config, shutdown).await,
        }
        .unwrap();
        let channel = connect(&format!("http://{}", running.addr)).await;
        let admin = std::fs::read_to_string(dir.join("admin.token"))
            .unwrap()
            .trim()
            .to_string();
        Router {
            checked,
            running: Some(running),
            stop: Some(tx),
            dir: dir.to_path_buf(),
            api: Api { channel, admin },
        }
    }

    /// Shuts down and waits until the store is flushed.
    /// Fails if the router called its store with the registry lock held.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.running.take().unwrap().wait().await.unwrap();
        if let Some(c) = &self.checked {
            assert_eq!(
                c.under_lock(),
                Vec::<&str>::new(),
                "store calls made with the router's registry lock held"
            );
        }
    }

    /// The server as `start` returned it (address, state, network).
    pub fn running(&self) -> &Running {
        self.running.as_ref().expect("running")
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.running().addr
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The router's shared state, to look behind the API (e.g. at the store).
    pub fn state(&self) -> &fabrouter_server::State {
        &self.running().state
    }
}

impl Api {
    /// Connects to `uri` (`http://host:port`) as its admin (`admin`, the admin token).
    pub async fn connect(uri: &str, admin: String) -> Api {
        Api {
            channel: connect(uri).await,
            admin,
        }
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

    pub fn nodes(&self, token: &str) -> NodeServiceClient<Authed> {
        NodeServiceClient::with_interceptor(self.channel.clone(), Bearer(token.into()))
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

    /// A new node identity `id`; returns its secret.
    pub async fn node_secret(&self, id: &str) -> String {
        self.admin()
            .create_node(pb::CreateNodeRequest {
                node_id: id.into(),
                label: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .secret
    }

    /// A new node identity `id`; returns the bearer token it connects with.
    pub async fn node_credentials(&self, id: &str) -> String {
        format!("node:{id}:{}", self.node_secret(id).await)
    }

    /// Uploads `stl` and returns its design name.
    pub async fn upload(&self, token: &str, stl: Vec<u8>) -> String {
        self.designs(token)
            .upload_design(tokio_stream::iter(upload_messages(stl)))
            .await
            .unwrap()
            .into_inner()
            .name
    }

    /// Uploads a cube of `size_mm` and returns its design name.
    pub async fn cube(&self, token: &str, size_mm: f32) -> String {
        self.upload(token, cube_stl(size_mm)).await
    }

    /// Waits until at least `n` printers are registered and idle.
    pub async fn wait_printers(&self, token: &str, n: usize) {
        let mut c = self.nodes(token);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let printers = c
                .list_printers(pb::ListPrintersRequest::default())
                .await
                .unwrap()
                .into_inner()
                .printers;
            let idle = printers
                .iter()
                .filter(|p| p.state == pb::PrinterState::Idle as i32)
                .count();
            if idle >= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "printers never came up: {printers:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every event message of a job so far (the watch is read until it is quiet for 300 ms).
    pub async fn events(&self, token: &str, name: &str) -> Vec<String> {
        let mut w = self
            .jobs(token)
            .watch_job(pb::WatchJobRequest {
                name: name.into(),
                from_sequence: 0,
            })
            .await
            .unwrap()
            .into_inner();
        let mut v = Vec::new();
        while let Ok(Ok(Some(e))) =
            tokio::time::timeout(Duration::from_millis(300), w.message()).await
        {
            v.push(e.message);
        }
        v
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

/// A cubic printer of `build_mm` with a 0.4 mm nozzle and black PLA on the built-in profile.
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
        slicer_config: None,
    }
}

/// One FDM part of `design` in PLA (any colour, nozzle and distance) for a customer at `at`.
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

/// Waits up to 20 s for job `name` to be in state `want`.
pub async fn wait_state(
    jobs: &mut JobServiceClient<Authed>,
    name: &str,
    want: pb::JobState,
) -> pb::Job {
    wait_state_within(jobs, name, want, Duration::from_secs(20)).await
}

/// Waits up to `timeout` for job `name` to be in state `want`; fails at once when the job ends
/// in another state, as it can never leave it.
pub async fn wait_state_within(
    jobs: &mut JobServiceClient<Authed>,
    name: &str,
    want: pb::JobState,
    timeout: Duration,
) -> pb::Job {
    let deadline = Instant::now() + timeout;
    loop {
        let j = jobs
            .get_job(pb::GetJobRequest { name: name.into() })
            .await
            .unwrap()
            .into_inner();
        if j.state == want as i32 {
            return j;
        }
        let terminal = [
            pb::JobState::Completed,
            pb::JobState::Failed,
            pb::JobState::Cancelled,
        ];
        assert!(
            !terminal.iter().any(|t| *t as i32 == j.state),
            "{name} ended {:?} instead of {want:?}: {}",
            pb::JobState::try_from(j.state),
            j.failure_reason
        );
        assert!(
            Instant::now() < deadline,
            "{name} never reached {want:?}: {j:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A node agent speaking the real protocol, with heartbeats that can be stopped.
pub struct SimNode {
    pub id: String,
    out: mpsc::UnboundedSender<pb::NodeMessage>,
    /// `None` once [`SimNode::drain`] has handed it to a task.
    inbox: Option<tonic::Streaming<pb::RouterMessage>>,
    beat: Option<tokio::task::JoinHandle<()>>,
    drain: Option<tokio::task::JoinHandle<()>>,
}

impl SimNode {
    /// Connects as node `id` to `r` with `creds` (see [`Api::node_credentials`]), says hello
    /// with `printers` and `held` jobs and waits for the welcome.
    pub async fn connect(
        r: &Api,
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
            NodeServiceClient::with_interceptor(r.channel.clone(), Bearer(creds.into()))
                // A welcome or assignment never comes near this; a benchmark's big fleet may.
                .max_decoding_message_size(64 << 20);
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
            inbox: Some(inbox),
            beat: Some(beat),
            drain: None,
        }
    }

    /// Stops the heartbeats; the stream stays open.
    pub fn silence(&mut self) {
        if let Some(b) = self.beat.take() {
            b.abort();
        }
    }

    /// Reads and drops every router message from now on, so the router's queue to this node
    /// never fills while nobody looks.
    pub fn drain(&mut self) {
        let mut inbox = self.inbox.take().expect("already drained");
        self.drain = Some(tokio::spawn(async move {
            while let Some(Ok(_)) = inbox.next().await {}
        }));
    }

    fn inbox(&mut self) -> &mut tonic::Streaming<pb::RouterMessage> {
        self.inbox.as_mut().expect("the inbox is drained")
    }

    /// The next router message (10 s at the most).
    pub async fn next(&mut self) -> pb::router_message::Msg {
        tokio::time::timeout(Duration::from_secs(10), self.inbox().next())
            .await
            .unwrap_or_else(|_| panic!("{}: no message from the router", self.id))
            .unwrap()
            .unwrap()
            .msg
            .unwrap()
    }

    /// The next assignment, skipping other messages.
    pub async fn assignment(&mut self) -> pb::JobAssignment {
        loop {
            if let pb::router_message::Msg::Assignment(a) = self.next().await {
                return a;
            }
        }
    }

    /// The next assignment of `job` (20 s at the most), skipping other messages.
    pub async fn assignment_of(&mut self, job: &str) -> pb::JobAssignment {
        let inbox = self.inbox();
        let wait = async {
            while let Some(m) = inbox.next().await {
                if let Some(pb::router_message::Msg::Assignment(a)) = m.ok().and_then(|m| m.msg)
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
        if let Some(d) = self.drain.take() {
            d.abort();
        }
    }
}
