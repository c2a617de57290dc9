//! `fab-node run`'s TOML configuration: the router, the node's credentials and its printers.
//! Read and validated once at start; every error names the line and the reason, so a bad
//! file is rejected before any printer or router is touched.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::secret::Secret;

/// Longest slicing run before the job fails, unless configured.
const DEFAULT_SLICER_TIMEOUT_S: f64 = 600.0;
/// Upper bound of the reconnect backoff, unless configured.
const DEFAULT_RECONNECT_MAX_S: f64 = 10.0;
/// Time for a printer to answer the serial handshake, unless configured.
const DEFAULT_DETECT_TIMEOUT_S: f64 = 10.0;
/// How often a network host's state is read, unless configured.
const DEFAULT_POLL_S: f64 = 1.0;
/// How long a print survives its host being unreachable, unless configured.
const DEFAULT_OFFLINE_GRACE_S: f64 = 120.0;
/// Longest accepted timeout or backoff in the file (a day); larger values are typos.
const MAX_SECONDS: f64 = 86_400.0;

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file (or the secret file) could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A value is missing, malformed or out of range.
    #[error("{file}:{line}: {reason}")]
    Invalid {
        /// The configuration file (or `<config>` for a string).
        file: String,
        /// 1-based line of the offending value.
        line: usize,
        /// What is wrong.
        reason: String,
    },
}

/// Printing technology of a printer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Technology {
    /// Filament (FDM/FFF).
    Fdm,
    /// Resin (SLA/MSLA).
    Resin,
    /// Powder (SLS).
    Sls,
}

/// A loaded material.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaterialConfig {
    /// e.g. "PLA".
    pub kind: String,
    /// e.g. "black"; empty for any.
    #[serde(default)]
    pub colour: String,
    /// Hot-end and bed temperatures to slice this material with, °C. Without them a printer
    /// on the node's built-in slicer profile uses typical figures for well-known kinds (see
    /// `options::slicer_options`); a printer with its own `slicer_config` keeps that
    /// file's.
    #[serde(default)]
    pub hotend_c: Option<u32>,
    #[serde(default)]
    pub bed_c: Option<u32>,
}

/// Where the makerspace is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Location {
    /// Latitude in degrees.
    pub lat: f64,
    /// Longitude in degrees.
    pub lon: f64,
}

/// The printer's prices in major currency units (the proto carries minor units).
#[derive(Debug, Clone, PartialEq)]
pub struct Price {
    /// ISO 4217 code, e.g. "EUR".
    pub currency: String,
    /// Per printing hour.
    pub per_hour: f64,
    /// Per gram of material.
    pub per_gram: f64,
    /// Per job.
    pub setup_fee: f64,
}

/// How the node reaches a printer: the driver and its address and credentials.
#[derive(Debug, Clone, PartialEq)]
pub enum DriverConfig {
    /// G-code streamed over a serial port through the firmware bridge (`driver = "serial"`,
    /// the default).
    Serial {
        /// Serial port (or a virtual printer's pty).
        port: String,
        /// Baud rate.
        baud: u32,
        /// Time for the printer to answer the serial handshake.
        detect_timeout: Duration,
    },
    /// An OctoPrint server in front of the printer (`driver = "octoprint"`).
    OctoPrint {
        /// Base URL, e.g. `http://octopi.local` or `http://127.0.0.1:5000`.
        url: String,
        /// The API key (an application or user key).
        api_key: Secret,
        /// How often the host's state is read.
        poll: Duration,
    },
}

impl DriverConfig {
    /// The driver's name as written in the TOML file.
    pub fn name(&self) -> &'static str {
        match self {
            DriverConfig::Serial { .. } => "serial",
            DriverConfig::OctoPrint { .. } => "octoprint",
        }
    }

    /// Where the printer is, for logs (never a credential).
    pub fn address(&self) -> &str {
        match self {
            DriverConfig::Serial { port, .. } => port,
            DriverConfig::OctoPrint { url, .. } => url,
        }
    }
}

/// One printer of the node.
#[derive(Debug, Clone, PartialEq)]
pub struct PrinterConfig {
    /// Unique within the node, e.g. "mk3s-1".
    pub id: String,
    /// How the node reaches it.
    pub driver: DriverConfig,
    /// How long a print may go on without the node reaching its host before the node gives
    /// the job up as the printer's fault (the router then re-routes it). Only drivers whose
    /// host keeps printing on its own (not `serial`) wait; a serial print ends with its link.
    pub offline_grace: Duration,
    /// Profile name the router routes by, e.g. "prusaslicer-b".
    pub profile: String,
    /// PrusaSlicer config for this printer; `None` uses the built-in `prusaslicer-b` config.
    /// For a printer with `presets`, the agent points it at the resolved config it writes.
    pub slicer_config: Option<PathBuf>,
    /// The resolved PrusaSlicer config of the printer's `presets` or own `slicer_config`,
    /// reported to the router so it estimates with the same settings.
    pub slicer_profile: Option<crate::presets::SlicerProfile>,
    /// Technology.
    pub technology: Technology,
    /// Build volume x, y, z in mm.
    pub build_volume_mm: [f64; 3],
    /// Nozzle diameter in mm.
    pub nozzle_mm: f64,
    /// Loaded materials.
    pub materials: Vec<MaterialConfig>,
    /// Where it stands.
    pub location: Location,
    /// What it costs.
    pub price: Price,
    /// Display name of the makerspace.
    pub makerspace: String,
    /// G-code flavour, e.g. "marlin2".
    pub firmware_flavor: String,
    /// Highest hot-end temperature the printer may be asked for, °C (pre-sliced G-code above
    /// it is refused).
    pub max_hotend_c: f64,
    /// Highest bed temperature, °C.
    pub max_bed_c: f64,
}

/// The whole node configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeConfig {
    /// Router address, e.g. "http://127.0.0.1:50051".
    pub router: String,
    /// Node identity (created with `fab admin node create ID`).
    pub node_id: String,
    /// The node's secret.
    pub secret: String,
    /// Where the node keeps held jobs, downloaded designs and sliced G-code.
    pub state_dir: PathBuf,
    /// Slicer command (looked up on PATH unless it contains a `/`).
    pub slicer: String,
    /// Longest slicing run.
    pub slicer_timeout: Duration,
    /// Upper bound of the reconnect backoff.
    pub reconnect_max: Duration,
    /// The printers.
    pub printers: Vec<PrinterConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    router: Spanned<String>,
    node_id: Spanned<String>,
    secret: Option<Spanned<String>>,
    secret_file: Option<Spanned<PathBuf>>,
    state_dir: PathBuf,
    slicer: Option<String>,
    slicer_timeout_s: Option<Spanned<f64>>,
    reconnect_max_s: Option<Spanned<f64>>,
    #[serde(default)]
    printer: Vec<Spanned<RawPrinter>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrinter {
    id: Spanned<String>,
    driver: Option<Spanned<String>>,
    port: Option<Spanned<String>>,
    baud: Option<Spanned<u32>>,
    url: Option<Spanned<String>>,
    api_key: Option<Spanned<String>>,
    api_key_file: Option<Spanned<PathBuf>>,
    api_key_env: Option<Spanned<String>>,
    poll_interval_s: Option<Spanned<f64>>,
    offline_grace_s: Option<Spanned<f64>>,
    profile: Spanned<String>,
    slicer_config: Option<Spanned<PathBuf>>,
    presets: Option<Spanned<crate::presets::RawPresets>>,
    technology: Technology,
    build_volume_mm: Spanned<[f64; 3]>,
    nozzle_mm: Spanned<f64>,
    materials: Spanned<Vec<MaterialConfig>>,
    location: Spanned<RawLocation>,
    price: Spanned<RawPrice>,
    makerspace: String,
    firmware_flavor: Option<String>,
    max_hotend_c: Option<Spanned<f64>>,
    max_bed_c: Option<Spanned<f64>>,
    detect_timeout_s: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLocation {
    lat: f64,
    lon: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrice {
    currency: String,
    per_hour: f64,
    per_gram: f64,
    setup_fee: f64,
}

/// Turns byte spans into line-numbered errors.
struct Source<'a> {
    file: String,
    text: &'a str,
}

impl Source<'_> {
    fn line(&self, span: Range<usize>) -> usize {
        let end = span.start.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    fn err(&self, span: Range<usize>, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.clone(),
            line: self.line(span),
            reason: reason.into(),
        }
    }

    fn check<T>(
        &self,
        v: &Spanned<T>,
        ok: impl FnOnce(&T) -> bool,
        reason: &str,
    ) -> Result<(), ConfigError> {
        if ok(v.get_ref()) {
            Ok(())
        } else {
            Err(self.err(v.span(), reason))
        }
    }

    fn celsius(
        &self,
        v: Option<&Spanned<f64>>,
        default: f64,
        key: &str,
    ) -> Result<f64, ConfigError> {
        match v {
            None => Ok(default),
            Some(s) => {
                self.check(
                    s,
                    |x| x.is_finite() && *x > 0.0 && *x <= 600.0,
                    &format!("{key} must be a temperature in °C in (0, 600]"),
                )?;
                Ok(*s.get_ref())
            }
        }
    }

    fn seconds(
        &self,
        v: Option<&Spanned<f64>>,
        default: f64,
        key: &str,
    ) -> Result<Duration, ConfigError> {
        match v {
            None => Ok(Duration::from_secs_f64(default)),
            Some(s) => {
                self.check(
                    s,
                    |x| x.is_finite() && *x > 0.0 && *x <= MAX_SECONDS,
                    &format!("{key} must be a number of seconds in (0, {MAX_SECONDS}]"),
                )?;
                Ok(Duration::from_secs_f64(*s.get_ref()))
            }
        }
    }
}

impl Source<'_> {
    /// A credential given inline (`KEY`), in a file (`KEY_file`) or in an environment
    /// variable (`KEY_env`): exactly one of them. Errors name the key and the file or
    /// variable, never the value.
    fn secret(
        &self,
        base: &Path,
        at: Range<usize>,
        key: &str,
        inline: Option<&Spanned<String>>,
        file: Option<&Spanned<PathBuf>>,
        env: Option<&Spanned<String>>,
    ) -> Result<Secret, ConfigError> {
        let secret = match (inline, file, env) {
            (Some(s), None, None) => (Secret::new(s.get_ref()), s.span()),
            (None, Some(f), None) => {
                let p = resolve(base, f.get_ref());
                let text = std::fs::read_to_string(&p)
                    .map_err(|e| self.err(f.span(), format!("cannot read {}: {e}", p.display())))?;
                (Secret::new(text), f.span())
            }
            (None, None, Some(v)) => {
                let text = std::env::var(v.get_ref()).map_err(|_| {
                    self.err(
                        v.span(),
                        format!("environment variable {} is not set", v.get_ref()),
                    )
                })?;
                (Secret::new(text), v.span())
            }
            (None, None, None) => {
                return Err(self.err(
                    at,
                    format!("give the host's credential: {key}, {key}_file or {key}_env"),
                ));
            }
            _ => {
                return Err(self.err(
                    at,
                    format!("give only one of {key}, {key}_file and {key}_env"),
                ));
            }
        };
        if secret.0.is_empty() {
            return Err(self.err(secret.1, format!("{key} is empty")));
        }
        Ok(secret.0)
    }
}

/// Temperature ceilings when the config names none: what common Marlin printers allow
/// (hot end 285 °C less Marlin's 15 °C safety margin is 270; beds reach about 120 °C).
const DEFAULT_MAX_HOTEND_C: f64 = 270.0;
const DEFAULT_MAX_BED_C: f64 = 120.0;

/// Resource-name safe: what the router accepts in node and printer ids.
fn is_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

impl NodeConfig {
    /// Reads and validates a TOML file; relative paths in it are relative to its directory.
    pub fn from_toml_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, &path.display().to_string(), base)
    }

    /// Validates TOML text; relative paths are relative to `base`.
    pub fn from_toml_str(text: &str, base: &Path) -> Result<Self, ConfigError> {
        Self::parse(text, "<config>", base)
    }

    fn parse(text: &str, file: &str, base: &Path) -> Result<Self, ConfigError> {
        let src = Source {
            file: file.to_string(),
            text,
        };
        let raw: RawNode = toml::from_str(text).map_err(|e| ConfigError::Invalid {
            file: file.to_string(),
            line: e.span().map_or(1, |s| src.line(s)),
            reason: e.message().trim().to_string(),
        })?;
        src.check(
            &raw.router,
            |r| {
                (r.starts_with("http://") || r.starts_with("https://"))
                    && r.parse::<tonic::transport::Uri>().is_ok()
            },
            "router must be an http:// or https:// address, e.g. \"http://127.0.0.1:50051\"",
        )?;
        src.check(
            &raw.node_id,
            |s| is_id(s),
            "node_id must be 1-64 letters, digits, - or _",
        )?;
        let secret = match (&raw.secret, &raw.secret_file) {
            (Some(s), None) => {
                src.check(s, |s| !s.trim().is_empty(), "secret is empty")?;
                s.get_ref().trim().to_string()
            }
            (None, Some(f)) => {
                let p = resolve(base, f.get_ref());
                let s = std::fs::read_to_string(&p)
                    .map_err(|e| src.err(f.span(), format!("cannot read {}: {e}", p.display())))?;
                let s = s.trim().to_string();
                if s.is_empty() {
                    return Err(src.err(f.span(), format!("{} is empty", p.display())));
                }
                s
            }
            (Some(s), Some(_)) => {
                return Err(src.err(s.span(), "give either secret or secret_file, not both"));
            }
            (None, None) => {
                return Err(src.err(
                    raw.node_id.span(),
                    "the node needs its secret: add secret = \"...\" or secret_file = \"...\"",
                ));
            }
        };
        if raw.printer.is_empty() {
            return Err(src.err(
                0..0,
                "no printers: add at least one [[printer]] table".to_string(),
            ));
        }
        let mut printers: Vec<PrinterConfig> = Vec::new();
        // PrusaSlicer's vendor bundles, read once if a printer names presets.
        let mut vendors = None;
        for p in &raw.printer {
            let printer = Self::printer(&src, p.get_ref(), base, &mut vendors)?;
            if printers.iter().any(|q| q.id == printer.id) {
                return Err(src.err(
                    p.get_ref().id.span(),
                    format!("printer id {:?} is used twice", printer.id),
                ));
            }
            printers.push(printer);
        }
        Ok(NodeConfig {
            router: raw.router.into_inner(),
            node_id: raw.node_id.into_inner(),
            secret,
            state_dir: resolve(base, &raw.state_dir),
            slicer: raw.slicer.unwrap_or_else(|| "prusa-slicer".into()),
            slicer_timeout: src.seconds(
                raw.slicer_timeout_s.as_ref(),
                DEFAULT_SLICER_TIMEOUT_S,
                "slicer_timeout_s",
            )?,
            reconnect_max: src.seconds(
                raw.reconnect_max_s.as_ref(),
                DEFAULT_RECONNECT_MAX_S,
                "reconnect_max_s",
            )?,
            printers,
        })
    }

    fn printer(
        src: &Source,
        p: &RawPrinter,
        base: &Path,
        vendors: &mut Option<fabrouter_profiles::Library>,
    ) -> Result<PrinterConfig, ConfigError> {
        src.check(
            &p.id,
            |s| is_id(s),
            "printer id must be 1-64 letters, digits, - or _",
        )?;
        let driver = Self::driver(src, p, base)?;
        src.check(&p.profile, |s| !s.is_empty(), "profile is empty")?;
        src.check(
            &p.build_volume_mm,
            |v| {
                v.iter()
                    .all(|x| x.is_finite() && *x > 0.0 && *x <= 10_000.0)
            },
            "build_volume_mm must be three sizes in (0, 10000] mm",
        )?;
        src.check(
            &p.nozzle_mm,
            |x| x.is_finite() && *x > 0.0 && *x <= 5.0,
            "nozzle_mm must be in (0, 5] mm",
        )?;
        src.check(
            &p.materials,
            |m| !m.is_empty() && m.iter().all(|m| !m.kind.trim().is_empty()),
            "materials must list at least one {kind, colour} with a kind",
        )?;
        src.check(
            &p.location,
            |l| (-90.0..=90.0).contains(&l.lat) && (-180.0..=180.0).contains(&l.lon),
            "location needs lat in [-90, 90] and lon in [-180, 180]",
        )?;
        src.check(
            &p.price,
            |pr| {
                pr.currency.len() == 3
                    && pr.currency.bytes().all(|b| b.is_ascii_uppercase())
                    && [pr.per_hour, pr.per_gram, pr.setup_fee]
                        .iter()
                        .all(|x| x.is_finite() && *x >= 0.0 && *x <= 1e9)
            },
            "price needs a 3-letter upper-case currency and amounts >= 0",
        )?;
        let slicer_config = match &p.slicer_config {
            None => None,
            Some(c) => {
                let path = resolve(base, c.get_ref());
                if !path.is_file() {
                    return Err(src.err(
                        c.span(),
                        format!("slicer_config {} is not a file", path.display()),
                    ));
                }
                Some(path)
            }
        };
        let slicer_profile = crate::presets::resolve(
            p.presets.as_ref().map(Spanned::get_ref),
            slicer_config.as_deref(),
            vendors,
        )
        .map_err(|reason| {
            let span = p
                .presets
                .as_ref()
                .map(Spanned::span)
                .or_else(|| p.slicer_config.as_ref().map(Spanned::span))
                .unwrap_or_default();
            src.err(span, reason)
        })?;
        let max_hotend_c = src.celsius(
            p.max_hotend_c.as_ref(),
            DEFAULT_MAX_HOTEND_C,
            "max_hotend_c",
        )?;
        let max_bed_c = src.celsius(p.max_bed_c.as_ref(), DEFAULT_MAX_BED_C, "max_bed_c")?;
        src.check(
            &p.materials,
            |m| {
                m.iter().all(|m| {
                    m.hotend_c
                        .is_none_or(|t| t > 0 && f64::from(t) <= max_hotend_c)
                        && m.bed_c.is_none_or(|t| f64::from(t) <= max_bed_c)
                })
            },
            &format!(
                "a material's hotend_c must be in (0, {max_hotend_c}] and bed_c in [0, {max_bed_c}] °C (this printer's max_hotend_c and max_bed_c)"
            ),
        )?;
        let location = p.location.get_ref();
        let price = p.price.get_ref();
        Ok(PrinterConfig {
            id: p.id.get_ref().clone(),
            driver,
            offline_grace: src.seconds(
                p.offline_grace_s.as_ref(),
                DEFAULT_OFFLINE_GRACE_S,
                "offline_grace_s",
            )?,
            profile: p.profile.get_ref().clone(),
            slicer_config,
            slicer_profile,
            technology: p.technology,
            build_volume_mm: *p.build_volume_mm.get_ref(),
            nozzle_mm: *p.nozzle_mm.get_ref(),
            materials: p.materials.get_ref().clone(),
            location: Location {
                lat: location.lat,
                lon: location.lon,
            },
            price: Price {
                currency: price.currency.clone(),
                per_hour: price.per_hour,
                per_gram: price.per_gram,
                setup_fee: price.setup_fee,
            },
            makerspace: p.makerspace.clone(),
            firmware_flavor: p
                .firmware_flavor
                .clone()
                .unwrap_or_else(|| "marlin2".into()),
            max_hotend_c,
            max_bed_c,
        })
    }

    /// The `driver` key and the keys that driver takes; a key of another driver is an error,
    /// so a half-edited file is never read as something else.
    fn driver(src: &Source, p: &RawPrinter, base: &Path) -> Result<DriverConfig, ConfigError> {
        let name = p.driver.as_ref().map_or("serial", |d| d.get_ref().as_str());
        let at = p.driver.as_ref().map_or(p.id.span(), |d| d.span());
        // Keys each driver takes, to refuse the others by name.
        let given: [(&str, Option<Range<usize>>); 8] = [
            ("port", p.port.as_ref().map(|v| v.span())),
            ("baud", p.baud.as_ref().map(|v| v.span())),
            (
                "detect_timeout_s",
                p.detect_timeout_s.as_ref().map(|v| v.span()),
            ),
            ("url", p.url.as_ref().map(|v| v.span())),
            ("api_key", p.api_key.as_ref().map(|v| v.span())),
            ("api_key_file", p.api_key_file.as_ref().map(|v| v.span())),
            ("api_key_env", p.api_key_env.as_ref().map(|v| v.span())),
            (
                "poll_interval_s",
                p.poll_interval_s.as_ref().map(|v| v.span()),
            ),
        ];
        let takes: &[&str] = match name {
            "serial" => &["port", "baud", "detect_timeout_s"],
            "octoprint" => &[
                "url",
                "api_key",
                "api_key_file",
                "api_key_env",
                "poll_interval_s",
            ],
            other => {
                return Err(src.err(
                    at,
                    format!("unknown driver {other:?}: use \"serial\" or \"octoprint\""),
                ));
            }
        };
        if let Some((key, Some(span))) = given
            .iter()
            .find(|(k, s)| s.is_some() && !takes.contains(k))
        {
            return Err(src.err(
                span.clone(),
                format!("{key} is not a setting of driver {name:?}"),
            ));
        }
        match name {
            "serial" => {
                let (Some(port), Some(baud)) = (&p.port, &p.baud) else {
                    return Err(src.err(
                        at,
                        "a serial printer needs port = \"/dev/ttyUSB0\" and baud = 115200",
                    ));
                };
                src.check(port, |s| !s.is_empty(), "port is empty")?;
                src.check(baud, |b| *b > 0, "baud must be > 0")?;
                Ok(DriverConfig::Serial {
                    port: port.get_ref().clone(),
                    baud: *baud.get_ref(),
                    detect_timeout: src.seconds(
                        p.detect_timeout_s.as_ref(),
                        DEFAULT_DETECT_TIMEOUT_S,
                        "detect_timeout_s",
                    )?,
                })
            }
            _ => {
                let Some(url) = &p.url else {
                    return Err(
                        src.err(at, "an octoprint printer needs url = \"http://host:port\"")
                    );
                };
                src.check(
                    url,
                    |u| {
                        (u.starts_with("http://") || u.starts_with("https://"))
                            && u.parse::<tonic::transport::Uri>().is_ok()
                    },
                    "url must be an http:// or https:// address, e.g. \"http://127.0.0.1:5000\"",
                )?;
                Ok(DriverConfig::OctoPrint {
                    url: url.get_ref().trim_end_matches('/').to_string(),
                    api_key: src.secret(
                        base,
                        at,
                        "api_key",
                        p.api_key.as_ref(),
                        p.api_key_file.as_ref(),
                        p.api_key_env.as_ref(),
                    )?,
                    poll: src.seconds(
                        p.poll_interval_s.as_ref(),
                        DEFAULT_POLL_S,
                        "poll_interval_s",
                    )?,
                })
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A valid node config with one printer (its table last), for tests here and beside.
    pub(crate) const GOOD: &str = r#"
router = "http://127.0.0.1:50051"
node_id = "berlin"
secret = "s3cret"
state_dir = "state"

[[printer]]
id = "mk3"
port = "/dev/ttyUSB0"
baud = 250000
profile = "prusaslicer-b"
technology = "fdm"
build_volume_mm = [200, 200, 200]
nozzle_mm = 0.4
materials = [{ kind = "PLA", colour = "black" }]
location = { lat = 52.52, lon = 13.405 }
price = { currency = "EUR", per_hour = 2.0, per_gram = 0.05, setup_fee = 3.0 }
makerspace = "Berlin Lab"
"#;

    fn err(text: &str) -> (usize, String) {
        match NodeConfig::from_toml_str(text, Path::new("/etc/fab")) {
            Err(ConfigError::Invalid { line, reason, .. }) => (line, reason),
            other => panic!("expected an invalid config, got {other:?}"),
        }
    }

    #[test]
    fn the_example_config_reads() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/node.toml");
        let text = std::fs::read_to_string(&example).unwrap();
        let c = NodeConfig::from_toml_str(&text, Path::new("/etc/fab")).unwrap();
        assert_eq!(c.printers[0].materials.len(), 2);
    }

    #[test]
    fn material_temperatures_are_read_and_kept_within_the_printers_limits() {
        let with = GOOD.replace(
            r#"materials = [{ kind = "PLA", colour = "black" }]"#,
            r#"materials = [{ kind = "PLA", colour = "black" }, { kind = "PETG", hotend_c = 245, bed_c = 80 }]
max_hotend_c = 280"#,
        );
        let c = NodeConfig::from_toml_str(&with, Path::new("/etc/fab")).unwrap();
        let petg = &c.printers[0].materials[1];
        assert_eq!((petg.hotend_c, petg.bed_c), (Some(245), Some(80)));
        assert_eq!(c.printers[0].materials[0].hotend_c, None);
        let (line, reason) = err(&with.replace("hotend_c = 245", "hotend_c = 300"));
        assert_eq!(line, 15, "{reason}");
        assert!(reason.contains("(0, 280]"), "{reason}");
    }

    /// GOOD with its printer on OctoPrint: `keys` replace the serial port and baud.
    fn octoprint(keys: &str) -> String {
        GOOD.replace(
            "port = \"/dev/ttyUSB0\"\nbaud = 250000\n",
            &format!("driver = \"octoprint\"\nurl = \"http://127.0.0.1:5000/\"\n{keys}"),
        )
    }

    #[test]
    fn an_octoprint_printer_takes_its_key_inline_from_a_file_or_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("key"), "from-file\n").unwrap();
        let key = |text: &str| match NodeConfig::from_toml_str(text, dir.path()) {
            Ok(c) => match &c.printers[0].driver {
                DriverConfig::OctoPrint { url, api_key, poll } => {
                    assert_eq!(url, "http://127.0.0.1:5000");
                    assert_eq!(*poll, Duration::from_secs(1));
                    api_key.expose().to_string()
                }
                other => panic!("{other:?}"),
            },
            Err(e) => panic!("{e}"),
        };
        assert_eq!(key(&octoprint("api_key = \"inline\"\n")), "inline");
        assert_eq!(key(&octoprint("api_key_file = \"key\"\n")), "from-file");
        // Cargo sets CARGO_PKG_NAME for the test process (setting a variable is unsafe in
        // edition 2024, and the workspace denies unsafe code).
        let var = "CARGO_PKG_NAME";
        assert_eq!(
            key(&octoprint(&format!("api_key_env = \"{var}\"\n"))),
            "fabrouter-node"
        );

        // The printer's Debug (as a log line would show it) never holds the key.
        let c = NodeConfig::from_toml_str(&octoprint("api_key = \"s3cr3t-key\"\n"), dir.path())
            .unwrap();
        let shown = format!("{:?}", c.printers[0]);
        assert!(
            !shown.contains("s3cr3t-key") && shown.contains("redacted"),
            "{shown}"
        );
    }

    #[test]
    fn driver_settings_are_checked_with_line_numbers() {
        let (line, reason) =
            err(&GOOD.replace("baud = 250000\n", "baud = 250000\ndriver = \"telnet\"\n"));
        assert_eq!(line, 11, "{reason}");
        assert!(reason.contains("unknown driver"), "{reason}");

        let (line, reason) = err(&octoprint("api_key = \"k\"\nbaud = 1\n"));
        assert_eq!(line, 12, "{reason}");
        assert!(
            reason.contains("baud is not a setting of driver \"octoprint\""),
            "{reason}"
        );

        let (_, reason) = err(&octoprint(""));
        assert!(
            reason.contains("api_key, api_key_file or api_key_env"),
            "{reason}"
        );

        let (_, reason) = err(&octoprint("api_key = \"k\"\napi_key_env = \"X\"\n"));
        assert!(reason.contains("only one of"), "{reason}");

        let (line, reason) = err(&octoprint("api_key_env = \"FABROUTER_SURELY_UNSET_VAR\"\n"));
        assert_eq!(line, 11, "{reason}");
        assert!(
            reason.contains("FABROUTER_SURELY_UNSET_VAR is not set"),
            "{reason}"
        );

        let (_, reason) = err(&GOOD.replace("port = \"/dev/ttyUSB0\"\n", ""));
        assert!(reason.contains("needs port"), "{reason}");

        let (_, reason) =
            err(&octoprint("api_key = \"k\"\n").replace("http://127.0.0.1:5000/", "octopi.local"));
        assert!(reason.contains("url must be"), "{reason}");
    }

    #[test]
    fn a_good_file_resolves_paths_and_defaults() {
        let c = NodeConfig::from_toml_str(GOOD, Path::new("/etc/fab")).unwrap();
        assert_eq!(c.state_dir, Path::new("/etc/fab/state"));
        assert_eq!(c.slicer, "prusa-slicer");
        assert_eq!(c.printers[0].build_volume_mm, [200.0, 200.0, 200.0]);
        assert_eq!(c.printers[0].price.per_gram, 0.05);
        assert_eq!(c.printers[0].firmware_flavor, "marlin2");
    }

    #[test]
    fn errors_name_the_line_and_the_reason() {
        let (line, reason) = err(&GOOD.replace("lat = 52.52", "lat = 152.52"));
        assert_eq!(line, 16, "{reason}");
        assert!(reason.contains("lat in [-90, 90]"), "{reason}");

        let (line, reason) = err(&GOOD.replace("baud = 250000", "baud = \"fast\""));
        assert_eq!(line, 10, "{reason}");

        let (line, reason) = err(&GOOD.replace("technology = \"fdm\"", "technology = \"wood\""));
        assert_eq!(line, 12, "{reason}");
        assert!(reason.contains("wood"), "{reason}");

        let (line, reason) = err(&GOOD.replace("nozzle_mm = 0.4", "nozzle_mm = 0.4\ncolour = 1"));
        assert_eq!(line, 15, "{reason}");
        assert!(reason.contains("colour"), "{reason}");

        let (line, reason) = err(&GOOD.replace("secret = \"s3cret\"\n", ""));
        assert_eq!(line, 3, "{reason}");
        assert!(reason.contains("secret"), "{reason}");

        let twice = format!("{GOOD}{}", &GOOD[GOOD.find("[[printer]]").unwrap()..]);
        let (line, reason) = err(&twice);
        assert_eq!(line, 20, "{reason}");
        assert!(reason.contains("used twice"), "{reason}");

        let (line, _) = err(&GOOD.replace("http://127", "ftp://127"));
        assert_eq!(line, 2);
    }
}
