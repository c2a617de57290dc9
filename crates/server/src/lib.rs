//! fabd, the router daemon, as a library: [`start`] opens the store (sled, or PostgreSQL when
//! `store` is a URL), creates the first admin
//! token if there is none, and serves every gRPC service (plus health, reflection, gRPC-web with
//! CORS, optional TLS) and the Prometheus endpoint until its shutdown future resolves, then
//! flushes the store. `fabd` (src/main.rs), the tests and the `fab demo` embed the same function;
//! [`start_with_store`] serves a store the caller opened (another backend, or a test's).
//!
//! This crate is the gRPC edge of the router. The decisions (registry, quoting, submission,
//! the job state machine, the node protocol's rules, leases) live in the domain core,
//! `fabrouter_router`, which knows nothing of gRPC; here are authentication, conversion between
//! the API's messages and the core's types ([`convert`]) and the mapping of errors to statuses
//! ([`errors`], one place).
//!
//! Components: [`config`] (read once at start), [`auth`] (tokens to principals), [`access`]
//! (the core's rules of who may call what and touch which resource), [`designs`] (uploads and
//! mesh checks), [`uploads`] (resumable upload sessions), [`admin`] (tokens, node identities), [`jobs`] and [`nodes`] (the edges of the
//! core's `Network`), [`catalog`] (designs and estimates as the core sees them), [`metrics`],
//! [`estimates`] (slice-estimates per design and profile, cached), [`web`] (the web app, embedded,
//! served on the same port).

pub mod admin;
pub mod auth;
pub mod bounds;
pub mod catalog;
pub mod config;
pub mod convert;
pub mod designs;
pub mod errors;
pub mod estimates;
pub mod jobs;
pub mod metrics;
pub mod nodes;
pub mod uploads;
pub mod web;

pub use fabrouter_router::{NetworkConfig, access};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use fabrouter_api::v1 as pb;
use fabrouter_store::{SledStore, Store};
use tokio::sync::Semaphore;
use tonic::Status;
use tonic::transport::{Identity, Server, ServerTlsConfig};

pub use config::Config;
pub use errors::store_status;

use crate::auth::Principal;

/// What every service shares.
pub struct State {
    pub config: Config,
    pub store: Arc<dyn Store>,
    pub metrics: metrics::Metrics,
    /// Upload bytes (in KiB permits) that may be held in memory at once.
    pub upload_budget: Arc<Semaphore>,
    /// Resumable upload sessions (BeginUpload .. CommitUpload).
    pub uploads: Arc<uploads::Uploads>,
}

impl State {
    /// Who is calling, and whether their role may call `rpc` at all: every RPC starts here.
    /// What the call may then touch is asked of `access` per resource.
    pub fn authorize(
        &self,
        md: &tonic::metadata::MetadataMap,
        rpc: access::Rpc,
    ) -> Result<Principal, Status> {
        let who = auth::authenticate(self.store.as_ref(), md)?;
        access::call(&who, rpc).map_err(errors::denied)?;
        Ok(who)
    }
}

/// Clamps a requested page size: 0 means 50.
pub(crate) fn page_size(requested: u32, max: u32) -> usize {
    (if requested == 0 {
        50
    } else {
        requested.min(max)
    }) as usize
}

/// Page tokens are the last id of the previous page.
pub(crate) fn page_after(token: &str) -> Result<Option<&str>, Status> {
    if token.is_empty() {
        return Ok(None);
    }
    if token.len() > 64
        || !token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(errors::bad_request(
            "page_token",
            "page_token must be a next_page_token from a previous call",
        ));
    }
    Ok(Some(token))
}

/// A running router.
pub struct Running {
    pub addr: SocketAddr,
    pub metrics_addr: Option<SocketAddr>,
    /// Where the first-start admin token was written, if it was created by this start.
    pub new_admin_token: Option<PathBuf>,
    pub state: Arc<State>,
    pub network: Arc<fabrouter_router::Network>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Waits until the server has stopped and the store is flushed.
    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await?
    }
}

/// The file holding the admin token created on first start.
pub fn admin_token_path(config: &Config) -> PathBuf {
    config.data_dir.join("admin.token")
}

fn ensure_admin_token(store: &dyn Store, config: &Config) -> anyhow::Result<Option<PathBuf>> {
    if !store.list_tokens()?.is_empty() {
        return Ok(None);
    }
    let (_, secret) = auth::create_token(store, pb::Role::Admin, "first-start admin")?;
    let path = admin_token_path(config);
    write_private(&path, &format!("{secret}\n"))?;
    Ok(Some(path))
}

/// Writes a secret readable by the owner only.
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

fn cors(config: &Config) -> tower_http::cors::CorsLayer {
    use tower_http::cors::{AllowOrigin, Any, CorsLayer};
    let origin = if config.cors_origins.is_empty() {
        AllowOrigin::mirror_request()
    } else {
        AllowOrigin::list(
            config
                .cors_origins
                .iter()
                .filter_map(|o| o.parse().ok())
                .collect::<Vec<_>>(),
        )
    };
    CorsLayer::new()
        .allow_origin(origin)
        .allow_headers(Any)
        .allow_methods(Any)
        .expose_headers([
            "grpc-status".parse().expect("static header"),
            "grpc-message".parse().expect("static header"),
            "grpc-status-details-bin".parse().expect("static header"),
        ])
        .max_age(Duration::from_secs(24 * 60 * 60))
}

/// Opens the store the configuration names: the embedded one in `config.data_dir`, or the
/// PostgreSQL database (connecting and applying its migrations).
pub fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    Ok(match &config.store {
        config::StoreChoice::Sled => Arc::new(SledStore::open(&config.data_dir).map_err(|e| {
            anyhow::anyhow!(
                "cannot open the store in {}: {e} (is another fabd using it?)",
                config.data_dir.display()
            )
        })?),
        config::StoreChoice::Postgres(url) => {
            Arc::new(fabrouter_store::PgStore::connect(url).map_err(|e| {
                anyhow::anyhow!(
                    "cannot open the PostgreSQL store at {}: {e}",
                    fabrouter_store::redact_url(url)
                )
            })?)
        }
    })
}

/// Opens the configured store ([`open_store`]) and starts serving; returns once the ports are
/// bound.
pub async fn start(
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<Running> {
    let store = open_store(&config)?;
    start_with_store(config, store, shutdown).await
}

/// Serves `store` (records, and design bytes through [`Store::blobs`]); returns once the ports
/// are bound. `config.data_dir` still holds the first-start admin token. The store is flushed
/// when serving ends.
pub async fn start_with_store(
    config: Config,
    store: Arc<dyn Store>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<Running> {
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        anyhow::anyhow!(
            "cannot create the data directory {}: {e}",
            config.data_dir.display()
        )
    })?;
    let new_admin_token = ensure_admin_token(store.as_ref(), &config)?;
    let permits = usize::try_from(config.limits.max_inflight_upload_bytes / 1024)
        .unwrap_or(usize::MAX)
        .min(Semaphore::MAX_PERMITS);
    let state = Arc::new(State {
        metrics: metrics::Metrics::new(),
        upload_budget: Arc::new(Semaphore::new(permits)),
        uploads: Arc::default(),
        store,
        config,
    });

    // One shutdown signal fans out to the gRPC server and the metrics endpoint.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|v| *v).await;
    };

    let metrics_addr = match state.config.metrics_listen {
        Some(addr) => Some(
            metrics::serve(state.metrics.clone(), addr, stopped(stop_rx.clone()))
                .await
                .map_err(|e| anyhow::anyhow!("cannot bind the metrics port {addr}: {e}"))?,
        ),
        None => None,
    };

    let listener = tokio::net::TcpListener::bind(state.config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot bind {}: {e}", state.config.listen))?;
    let addr = listener.local_addr()?;

    let (health, health_service) = tonic_health::server::health_reporter();
    let admin = admin::Admin {
        state: state.clone(),
    };
    let profiles = Arc::new(
        estimates::Profiles::load(state.config.profiles_dir.as_deref())?
            .with_store(state.store.clone()),
    );
    let net = fabrouter_router::Network::load(
        state.store.clone(),
        Arc::new(convert::ProstCodec),
        Arc::new(catalog::StoreCatalog {
            state: state.clone(),
            profiles: profiles.clone(),
        }),
        state.config.network,
    )
    .map_err(|e| anyhow::anyhow!("cannot restore the network from the store: {e}"))?;
    net.spawn_lease_monitor();
    let designs = designs::Designs {
        state: state.clone(),
        net: Some(net.clone()),
    };
    let jobs = jobs::Jobs {
        state: state.clone(),
        net: net.clone(),
    };
    let nodes = nodes::Nodes {
        state: state.clone(),
        net: net.clone(),
        profiles: profiles.clone(),
    };
    use pb::admin_service_server::AdminServiceServer;
    use pb::design_service_server::DesignServiceServer;
    use pb::estimate_service_server::EstimateServiceServer;
    use pb::job_service_server::JobServiceServer;
    use pb::node_service_server::NodeServiceServer;
    health
        .set_serving::<DesignServiceServer<designs::Designs>>()
        .await;
    health
        .set_serving::<AdminServiceServer<admin::Admin>>()
        .await;
    // v1 and v1alpha: grpcio-reflection, older grpcurl, Evans and Postman speak only v1alpha.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(fabrouter_api::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1alpha = reflection().build_v1alpha()?;
    let reflection = reflection().build_v1()?;

    let mut builder = Server::builder().accept_http1(true);
    if let (Some(cert), Some(key)) = (&state.config.tls_cert, &state.config.tls_key) {
        let identity = Identity::from_pem(
            std::fs::read(cert).map_err(|e| anyhow::anyhow!("tls_cert {}: {e}", cert.display()))?,
            std::fs::read(key).map_err(|e| anyhow::anyhow!("tls_key {}: {e}", key.display()))?,
        );
        builder = builder.tls_config(ServerTlsConfig::new().identity(identity))?;
    }
    let mut services = tonic::service::RoutesBuilder::default();
    services
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_v1alpha)
        .add_service(
            DesignServiceServer::new(designs).max_decoding_message_size(bounds::MAX_MESSAGE_BYTES),
        )
        .add_service(
            AdminServiceServer::new(admin).max_decoding_message_size(bounds::MAX_MESSAGE_BYTES),
        )
        .add_service(
            JobServiceServer::new(jobs).max_decoding_message_size(bounds::MAX_MESSAGE_BYTES),
        )
        .add_service(
            NodeServiceServer::new(nodes).max_decoding_message_size(bounds::MAX_MESSAGE_BYTES),
        )
        .add_service(
            EstimateServiceServer::new(estimates::Estimates {
                state: state.clone(),
                profiles,
            })
            .max_decoding_message_size(bounds::MAX_MESSAGE_BYTES),
        );
    // The web app shares the port: gRPC paths go to the services, `/` and `/assets/` to it.
    // gRPC-web wraps the services only: it answers any other HTTP/1 request 400.
    let grpc = services
        .routes()
        .into_axum_router()
        .layer(tonic_web::GrpcWebLayer::new());
    let router = builder
        .layer(cors(&state.config))
        .add_routes(tonic::service::Routes::from(web::routes(grpc)));

    let store = state.store.clone();
    // Replies larger than a segment (a quote's explanations) otherwise wait for the client's
    // delayed ACK (Nagle): ~40 ms each. The builder's tcp_nodelay does not reach this listener.
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let closing_net = net.clone();
    let task = tokio::spawn(async move {
        let shutdown = async move {
            stopped(stop_rx).await;
            // Long-lived streams would hold a graceful shutdown open forever.
            closing_net.close();
        };
        let served = router
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await;
        // Flush even when serving failed: what was acknowledged must be on disk.
        let flushed = tokio::task::spawn_blocking(move || store.flush()).await?;
        served?;
        flushed?;
        Ok(())
    });
    Ok(Running {
        addr,
        metrics_addr,
        new_admin_token,
        state,
        network: net,
        task,
    })
}
