//! fabd's configuration, read and validated once at start-up. Precedence, lowest first: built-in
//! defaults, the TOML file (`--config`, `FABD_CONFIG`, or `fabd.toml` in the data directory),
//! environment variables, command-line flags (the last two through clap).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Every limit the router enforces, in one place.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest design upload.
    pub max_upload_bytes: u64,
    /// Most triangles in one STL.
    pub max_triangles: u64,
    /// Upload bytes held in memory at once across all uploads; further uploads get UNAVAILABLE.
    pub max_inflight_upload_bytes: u64,
    /// Largest page a list call returns.
    pub max_page_size: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_upload_bytes: 256 * 1024 * 1024,
            max_triangles: 20_000_000,
            max_inflight_upload_bytes: 1024 * 1024 * 1024,
            max_page_size: 1000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Human,
    Json,
}

/// Where the router keeps its state.
#[derive(Clone, PartialEq)]
pub enum StoreChoice {
    /// The embedded store in the data directory (the default).
    Sled,
    /// A PostgreSQL database (`postgres://…` or `postgresql://…`), with the design bytes in it.
    Postgres(String),
}

impl StoreChoice {
    /// `"sled"` or a PostgreSQL URL; anything else is refused with what is accepted.
    pub fn parse(s: &str) -> Result<Self, ConfigError> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("sled") {
            Ok(StoreChoice::Sled)
        } else if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            Ok(StoreChoice::Postgres(s.to_string()))
        } else {
            Err(ConfigError::Invalid(format!(
                "store {:?} is neither \"sled\" nor a postgres:// URL",
                fabrouter_store::redact_url(s)
            )))
        }
    }
}

// Written by hand so that a password in the URL never reaches a log.
impl std::fmt::Debug for StoreChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreChoice::Sled => f.write_str("Sled"),
            StoreChoice::Postgres(url) => f
                .debug_tuple("Postgres")
                .field(&fabrouter_store::redact_url(url))
                .finish(),
        }
    }
}

/// The resolved configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The embedded store's directory (when `store` is sled) and the first-start admin token.
    pub data_dir: PathBuf,
    pub store: StoreChoice,
    pub listen: SocketAddr,
    /// Prometheus metrics; `None` disables the endpoint.
    pub metrics_listen: Option<SocketAddr>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Origins allowed to call gRPC-web from a browser; empty allows any origin.
    pub cors_origins: Vec<String>,
    pub log_format: LogFormat,
    pub limits: Limits,
    pub network: fabrouter_router::NetworkConfig,
    /// Extra printer profiles (`*.toml`) beside the built-in ones.
    pub profiles_dir: Option<PathBuf>,
}

/// The TOML file's shape; every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    pub store: Option<String>,
    pub listen: Option<SocketAddr>,
    pub metrics_listen: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub cors_origins: Option<Vec<String>>,
    pub log_format: Option<LogFormat>,
    pub limits: Option<Limits>,
    pub network: Option<fabrouter_router::NetworkConfig>,
    pub profiles_dir: Option<PathBuf>,
}

/// Values from flags and environment variables (clap fills both).
#[derive(Debug, Default, Clone, clap::Args)]
pub struct Overrides {
    /// Directory for the embedded store and design bytes.
    #[arg(long, env = "FABD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Where the state lives: "sled" (the embedded store in the data directory, the default)
    /// or a PostgreSQL URL (postgres://user@host/db).
    #[arg(long, env = "FABD_STORE", hide_env_values = true)]
    pub store: Option<String>,
    /// TOML configuration file (default: fabd.toml in the data directory, if present).
    #[arg(long, env = "FABD_CONFIG")]
    pub config: Option<PathBuf>,
    /// gRPC (and gRPC-web) address.
    #[arg(long, env = "FABD_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Prometheus metrics address, or "off".
    #[arg(long, env = "FABD_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// PEM certificate; with --tls-key, serve TLS.
    #[arg(long, env = "FABD_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    #[arg(long, env = "FABD_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Log format.
    #[arg(long, env = "FABD_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Largest upload in bytes.
    #[arg(long, env = "FABD_MAX_UPLOAD_BYTES")]
    pub max_upload_bytes: Option<u64>,
    /// Most triangles per STL.
    #[arg(long, env = "FABD_MAX_TRIANGLES")]
    pub max_triangles: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
}

/// The data directory used when none is configured: the platform's data dir (e.g.
/// `~/.local/share/fabrouter`), or `./fabrouter-data` when there is no home.
pub fn default_data_dir() -> PathBuf {
    directories::ProjectDirs::from("org", "fabrouter", "fabrouter")
        .map(|d| d.data_dir().to_path_buf())
        .unwrap_or_else(|| PathBuf::from("fabrouter-data"))
}

impl Config {
    /// Resolves the configuration from overrides, the file and defaults.
    pub fn resolve(o: &Overrides) -> Result<Self, ConfigError> {
        let (file, _path) = load_file(o)?;
        let data_dir = o
            .data_dir
            .clone()
            .or(file.data_dir)
            .unwrap_or_else(default_data_dir);
        let metrics = o
            .metrics_listen
            .clone()
            .or(file.metrics_listen)
            .unwrap_or_else(|| "127.0.0.1:9464".into());
        let metrics_listen = if metrics.eq_ignore_ascii_case("off") {
            None
        } else {
            Some(metrics.parse().map_err(|_| {
                ConfigError::Invalid(format!(
                    "metrics_listen {metrics:?} is not an address like 127.0.0.1:9464 or \"off\""
                ))
            })?)
        };
        let mut limits = file.limits.unwrap_or_default();
        if let Some(v) = o.max_upload_bytes {
            limits.max_upload_bytes = v;
        }
        if let Some(v) = o.max_triangles {
            limits.max_triangles = v;
        }
        let store = match o.store.as_deref().or(file.store.as_deref()) {
            Some(s) => StoreChoice::parse(s)?,
            None => StoreChoice::Sled,
        };
        let cfg = Config {
            data_dir,
            store,
            listen: o
                .listen
                .or(file.listen)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 50051))),
            metrics_listen,
            tls_cert: o.tls_cert.clone().or(file.tls_cert),
            tls_key: o.tls_key.clone().or(file.tls_key),
            cors_origins: file.cors_origins.unwrap_or_default(),
            log_format: o.log_format.or(file.log_format).unwrap_or(LogFormat::Human),
            limits,
            network: file.network.unwrap_or_default(),
            profiles_dir: file.profiles_dir,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// A configuration for tests and embedded use: everything on loopback with OS-chosen ports.
    pub fn embedded(data_dir: &Path) -> Self {
        Config {
            data_dir: data_dir.to_path_buf(),
            store: StoreChoice::Sled,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            metrics_listen: None,
            tls_cert: None,
            tls_key: None,
            cors_origins: Vec::new(),
            log_format: LogFormat::Human,
            limits: Limits::default(),
            network: fabrouter_router::NetworkConfig::default(),
            profiles_dir: None,
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(ConfigError::Invalid(
                "TLS needs both tls_cert and tls_key (or neither)".into(),
            ));
        }
        let l = &self.limits;
        if l.max_upload_bytes < 84 {
            return Err(ConfigError::Invalid(
                "limits.max_upload_bytes must be at least 84 (the smallest binary STL)".into(),
            ));
        }
        if l.max_triangles == 0 {
            return Err(ConfigError::Invalid(
                "limits.max_triangles must be > 0".into(),
            ));
        }
        if l.max_inflight_upload_bytes < l.max_upload_bytes {
            return Err(ConfigError::Invalid(
                "limits.max_inflight_upload_bytes must be at least limits.max_upload_bytes".into(),
            ));
        }
        let n = &self.network;
        if !(n.lease_s.is_finite()
            && n.lease_s > 0.0
            && n.lost_grace_s.is_finite()
            && n.lost_grace_s >= 0.0)
        {
            return Err(ConfigError::Invalid(
                "network.lease_s must be > 0 and network.lost_grace_s >= 0 (seconds)".into(),
            ));
        }
        if l.max_page_size == 0 {
            return Err(ConfigError::Invalid(
                "limits.max_page_size must be > 0".into(),
            ));
        }
        Ok(())
    }
}

fn load_file(o: &Overrides) -> Result<(FileConfig, Option<PathBuf>), ConfigError> {
    let (path, required) = match &o.config {
        Some(p) => (p.clone(), true),
        None => (
            o.data_dir
                .clone()
                .unwrap_or_else(default_data_dir)
                .join("fabd.toml"),
            false,
        ),
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
            return Ok((FileConfig::default(), None));
        }
        Err(source) => return Err(ConfigError::Read { path, source }),
    };
    let file = toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.clone(),
        message: e.to_string(),
    })?;
    Ok((file, Some(path)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_flags_override_defaults() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("fabd.toml"),
            "listen = \"127.0.0.1:7000\"\nmetrics_listen = \"off\"\n[limits]\nmax_triangles = 10\n",
        )
        .unwrap();
        let o = Overrides {
            data_dir: Some(dir.path().into()),
            max_upload_bytes: Some(1000),
            ..Default::default()
        };
        let c = Config::resolve(&o).unwrap();
        assert_eq!(c.listen.port(), 7000);
        assert_eq!(c.metrics_listen, None);
        assert_eq!(c.limits.max_triangles, 10);
        assert_eq!(c.limits.max_upload_bytes, 1000);
        let o = Overrides {
            listen: Some("127.0.0.1:7001".parse().unwrap()),
            ..o
        };
        assert_eq!(Config::resolve(&o).unwrap().listen.port(), 7001);
    }

    #[test]
    fn bad_file_names_the_file_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.toml");
        std::fs::write(&path, "listn = \"x\"\n").unwrap();
        let o = Overrides {
            config: Some(path),
            ..Default::default()
        };
        let e = Config::resolve(&o).unwrap_err().to_string();
        assert!(e.contains("x.toml") && e.contains("listn"), "{e}");
    }

    #[test]
    fn the_store_is_sled_unless_a_postgres_url_is_given_and_its_password_is_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let o = Overrides {
            data_dir: Some(dir.path().into()),
            ..Default::default()
        };
        assert_eq!(Config::resolve(&o).unwrap().store, StoreChoice::Sled);
        std::fs::write(
            dir.path().join("fabd.toml"),
            "store = \"postgresql://fab:pw@db/fab\"\n",
        )
        .unwrap();
        let c = Config::resolve(&o).unwrap();
        assert_eq!(
            c.store,
            StoreChoice::Postgres("postgresql://fab:pw@db/fab".into())
        );
        assert!(!format!("{c:?}").contains("pw@"), "{c:?}");
        // The flag (or FABD_STORE) wins over the file.
        let o2 = Overrides {
            store: Some("sled".into()),
            ..o.clone()
        };
        assert_eq!(Config::resolve(&o2).unwrap().store, StoreChoice::Sled);
        let o3 = Overrides {
            store: Some("mysql://fab:pw@db/fab".into()),
            ..o
        };
        let e = Config::resolve(&o3).unwrap_err().to_string();
        assert!(e.contains("postgres://") && !e.contains("pw@"), "{e}");
    }

    #[test]
    fn half_tls_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let o = Overrides {
            data_dir: Some(dir.path().into()),
            tls_cert: Some("c.pem".into()),
            ..Default::default()
        };
        assert!(Config::resolve(&o).is_err());
    }
}
