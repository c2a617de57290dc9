//! Connecting to a router: the server address and token come from the flag, the environment
//! (`FAB_SERVER`, `FAB_TOKEN`), the config file (`~/.config/fabrouter/fab.toml`), and finally the
//! admin token a local fabd wrote on first start, so the first try on one machine just works.

use std::path::PathBuf;

use anyhow::Context;
use fabrouter_api::v1::admin_service_client::AdminServiceClient;
use fabrouter_api::v1::design_service_client::DesignServiceClient;
use fabrouter_api::v1::estimate_service_client::EstimateServiceClient;
use fabrouter_api::v1::job_service_client::JobServiceClient;
use fabrouter_api::v1::node_service_client::NodeServiceClient;
use serde::Deserialize;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

pub const DEFAULT_SERVER: &str = "http://127.0.0.1:50051";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    server: Option<String>,
    token: Option<String>,
    ca_cert: Option<PathBuf>,
}

/// Connection settings after resolution.
#[derive(Debug, Clone)]
pub struct Target {
    pub server: String,
    pub token: Option<String>,
    pub ca_cert: Option<PathBuf>,
}

pub fn config_path() -> Option<PathBuf> {
    directories::ProjectDirs::from("org", "fabrouter", "fabrouter")
        .map(|d| d.config_dir().join("fab.toml"))
}

impl Target {
    pub fn resolve(
        server: Option<String>,
        token: Option<String>,
        ca_cert: Option<PathBuf>,
    ) -> anyhow::Result<Self> {
        let file = match config_path() {
            Some(p) if p.exists() => {
                let text = std::fs::read_to_string(&p)
                    .with_context(|| format!("reading {}", p.display()))?;
                toml::from_str::<FileConfig>(&text)
                    .with_context(|| format!("config file {}", p.display()))?
            }
            _ => FileConfig::default(),
        };
        let token = token.or(file.token).or_else(local_admin_token);
        Ok(Target {
            server: server
                .or(file.server)
                .unwrap_or_else(|| DEFAULT_SERVER.into()),
            token,
            ca_cert: ca_cert.or(file.ca_cert),
        })
    }
}

/// The token a fabd on this machine wrote on first start, if readable.
fn local_admin_token() -> Option<String> {
    let dir = std::env::var_os("FABD_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(fabrouter_server::config::default_data_dir);
    std::fs::read_to_string(dir.join("admin.token"))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

#[derive(Clone)]
pub struct Auth(Option<MetadataValue<Ascii>>);

impl tonic::service::Interceptor for Auth {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

pub type Authed = InterceptedService<Channel, Auth>;

/// A connected client with the caller's credentials on every request.
pub struct Client {
    pub channel: Channel,
    pub auth: Auth,
}

impl Client {
    pub async fn connect(target: &Target) -> anyhow::Result<Self> {
        let mut ep = Endpoint::from_shared(target.server.clone())
            .with_context(|| format!("server address {:?}", target.server))?;
        if target.server.starts_with("https://") {
            let mut tls = ClientTlsConfig::new().with_webpki_roots();
            if let Some(ca) = &target.ca_cert {
                let pem = std::fs::read(ca).with_context(|| format!("CA file {}", ca.display()))?;
                tls = tls.ca_certificate(Certificate::from_pem(pem));
            }
            ep = ep.tls_config(tls)?;
        }
        let channel = ep.connect().await.with_context(|| {
            format!(
                "cannot reach the router at {} (is fabd running? set --server or FAB_SERVER)",
                target.server
            )
        })?;
        let auth = match &target.token {
            Some(t) => Some(
                format!("Bearer {t}")
                    .parse()
                    .context("the token contains characters not allowed in a header")?,
            ),
            None => None,
        };
        Ok(Client {
            channel,
            auth: Auth(auth),
        })
    }

    pub fn designs(&self) -> DesignServiceClient<Authed> {
        DesignServiceClient::with_interceptor(self.channel.clone(), self.auth.clone())
    }

    pub fn jobs(&self) -> JobServiceClient<Authed> {
        JobServiceClient::with_interceptor(self.channel.clone(), self.auth.clone())
    }

    pub fn nodes(&self) -> NodeServiceClient<Authed> {
        NodeServiceClient::with_interceptor(self.channel.clone(), self.auth.clone())
    }

    pub fn estimates(&self) -> EstimateServiceClient<Authed> {
        EstimateServiceClient::with_interceptor(self.channel.clone(), self.auth.clone())
    }

    pub fn admin(&self) -> AdminServiceClient<Authed> {
        AdminServiceClient::with_interceptor(self.channel.clone(), self.auth.clone())
    }
}

/// A gRPC error in words: the status message and, when present, the structured details.
pub fn explain(status: &tonic::Status) -> String {
    use tonic_types::StatusExt;
    let mut out = format!("{:?}: {}", status.code(), status.message());
    let details = status.get_error_details();
    if let Some(br) = details.bad_request() {
        for v in &br.field_violations {
            if !v.description.is_empty() && v.description != status.message() {
                out.push_str(&format!("\n  field {}: {}", v.field, v.description));
            }
        }
    }
    if let Some(q) = details.quota_failure() {
        for v in &q.violations {
            out.push_str(&format!("\n  limit on {}", v.subject));
        }
    }
    out
}
