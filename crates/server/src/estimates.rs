//! Slice-estimates for stored designs: EstimateService, and the per-profile figures routing
//! uses. Results are cached in the store per (design sha256, profile content hash), so a
//! repeated question costs a lookup.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use fabrouter_api::v1 as pb;
use fabrouter_api::v1::estimate_service_server::EstimateService;
use fabrouter_estimator::{self as est, Profile};
use fabrouter_mesh as mesh;
use fabrouter_store::DesignRecord;
use tonic::{Request, Response, Status};

use crate::State;
use crate::access::{DesignUse, Rpc};
use crate::errors::bad_request;

/// Longest `SlicerConfig.ini` a node may send.
pub const MAX_SLICER_INI_BYTES: usize = 64 << 10;
/// Most distinct PrusaSlicer configs the router keeps profiles for (each a few KiB); a node
/// declaring one more is refused until the router restarts.
pub const MAX_DECLARED_PROFILES: usize = 4096;

/// The presets a node-declared profile was resolved from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Presets {
    pub printer: String,
    pub print: String,
    pub filament: String,
}

/// The profiles this router knows: the built-in ones, `*.toml` files from the profiles
/// directory (read once at start), and the PrusaSlicer configs nodes declare for their
/// printers (`PrinterSpec.slicer_config`), each mapped once and kept by the hash of its text.
pub struct Profiles {
    by_name: std::sync::RwLock<HashMap<String, Arc<Profile>>>,
    /// Node-declared profiles by name: the presets they came from.
    declared: std::sync::RwLock<HashMap<String, Presets>>,
    /// Where declared configs are kept (`slicer-config/{name}` in the store's cache), so a
    /// restarted router knows its printers' profiles before their nodes say hello again.
    store: Option<Arc<dyn fabrouter_store::Store>>,
}

/// Store cache key of a declared config's text.
fn config_key(name: &str) -> String {
    format!("slicer-config/{name}")
}

impl Profiles {
    pub fn load(dir: Option<&std::path::Path>) -> anyhow::Result<Profiles> {
        let mut by_name = HashMap::new();
        for name in Profile::builtin_names() {
            if let Some(p) = Profile::builtin(name) {
                by_name.insert(name.to_string(), Arc::new(p));
            }
        }
        if let Some(dir) = dir {
            for entry in std::fs::read_dir(dir)
                .map_err(|e| anyhow::anyhow!("profiles directory {}: {e}", dir.display()))?
            {
                let path = entry?.path();
                if path.extension().is_some_and(|x| x == "toml") {
                    let text = std::fs::read_to_string(&path)?;
                    let p = Profile::from_toml(&text)
                        .map_err(|e| anyhow::anyhow!("profile {}: {e}", path.display()))?;
                    by_name.insert(p.name.clone(), Arc::new(p));
                }
            }
        }
        Ok(Profiles {
            by_name: std::sync::RwLock::new(by_name),
            declared: Default::default(),
            store: None,
        })
    }

    /// Keeps declared configs in `store` and finds them there after a restart.
    pub fn with_store(mut self, store: Arc<dyn fabrouter_store::Store>) -> Profiles {
        self.store = Some(store);
        self
    }

    pub fn get(&self, name: &str) -> Option<Arc<Profile>> {
        let known = self
            .by_name
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned();
        known.or_else(|| self.restore(name))
    }

    /// A profile declared before this router started, from the store.
    fn restore(&self, name: &str) -> Option<Arc<Profile>> {
        if !name.starts_with("prusaslicer-") {
            return None;
        }
        let bytes = self.store.as_ref()?.cache_get(&config_key(name)).ok()??;
        let ini = String::from_utf8(bytes).ok()?;
        let config = fabrouter_profiles::Config::from_flat_ini(&ini, "slicer_config.ini").ok()?;
        let presets = Presets {
            printer: config.preset_name(fabrouter_profiles::Kind::Printer).into(),
            print: config.preset_name(fabrouter_profiles::Kind::Print).into(),
            filament: config
                .preset_name(fabrouter_profiles::Kind::Filament)
                .into(),
        };
        self.insert(name, &config, presets).ok()?;
        self.by_name
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .by_name
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        v.sort();
        v
    }

    /// The presets a node-declared profile came from.
    pub fn presets(&self, name: &str) -> Option<Presets> {
        self.declared
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// The profile name for a printer's PrusaSlicer config: `prusaslicer-` and the first 12
    /// hex digits of the text's SHA-256. A config seen before is not read again, so its
    /// profile, and every estimate cached for it, stays the same. The error says which
    /// setting on which line cannot be used.
    pub fn declare(&self, cfg: &pb::SlicerConfig) -> Result<String, String> {
        use sha2::Digest;
        let hash = hex::encode(sha2::Sha256::digest(cfg.ini.as_bytes()));
        let name = format!("prusaslicer-{}", &hash[..12]);
        if self.get(&name).is_some() {
            return Ok(name);
        }
        let config = fabrouter_profiles::Config::from_flat_ini(&cfg.ini, "slicer_config.ini")
            .map_err(|e| e.to_string())?;
        self.insert(
            &name,
            &config,
            Presets {
                printer: cfg.printer_preset.clone(),
                print: cfg.print_preset.clone(),
                filament: cfg.filament_preset.clone(),
            },
        )?;
        if let Some(store) = &self.store
            && let Err(e) = store.cache_put(&config_key(&name), cfg.ini.as_bytes())
        {
            // Costs only the window after a restart before the node says hello again.
            tracing::warn!(profile = %name, error = %e, "declared config not stored");
        }
        Ok(name)
    }

    /// Maps `config` into profile `name` and keeps it.
    fn insert(
        &self,
        name: &str,
        config: &fabrouter_profiles::Config,
        presets: Presets,
    ) -> Result<(), String> {
        let mapped = fabrouter_profiles::to_profile(config, name).map_err(|e| e.to_string())?;
        let mut by_name = self.by_name.write().unwrap_or_else(|e| e.into_inner());
        let mut declared = self.declared.write().unwrap_or_else(|e| e.into_inner());
        if declared.len() >= MAX_DECLARED_PROFILES && !declared.contains_key(name) {
            return Err(format!(
                "the router already holds {MAX_DECLARED_PROFILES} distinct PrusaSlicer configs; reuse one or ask its operator to restart it"
            ));
        }
        by_name.insert(name.to_string(), Arc::new(mapped.profile));
        declared.insert(name.to_string(), presets);
        Ok(())
    }

    /// Gives each printer of a hello that declares a PrusaSlicer config the profile resolved
    /// from it, in place of the names it lists.
    pub fn declare_hello(&self, hello: &mut pb::NodeHello) -> Result<(), tonic::Status> {
        for p in &mut hello.printers {
            if let Some(cfg) = &p.slicer_config {
                let name = self.declare(cfg).map_err(|e| {
                    bad_request(
                        "hello.printers.slicer_config",
                        format!("printer {}: {e}", p.printer_id),
                    )
                })?;
                p.profiles = vec![name];
            }
        }
        Ok(())
    }
}

/// The estimator's result in the API's words.
pub fn estimate_to_pb(design: &str, profile: &Profile, e: &est::Estimate) -> pb::Estimate {
    let b = &e.breakdown;
    pb::Estimate {
        design: design.to_string(),
        profile: profile.name.clone(),
        profile_hash: profile.content_hash(),
        print_time_s: e.print_time_s,
        filament_mm: e.filament_mm,
        filament_g: e.filament_g,
        filament_cm3: e.filament_cm3,
        layers: e.layers,
        breakdown: [
            ("perimeters", &b.perimeters),
            ("infill", &b.infill),
            ("solid", &b.solid),
            ("support", &b.support),
            ("skirt", &b.skirt),
            ("travel", &b.travel),
        ]
        .into_iter()
        .map(|(f, x)| pb::FeatureEstimate {
            feature: f.into(),
            time_s: x.time_s,
            filament_mm: x.filament_mm,
            path_mm: x.path_mm,
        })
        .collect(),
        warnings: e.warnings.clone(),
        cached: false,
        compute_time_s: 0.0,
    }
}

fn cache_key(sha256: &str, profile: &Profile) -> String {
    format!(
        "estimate/v{}/{sha256}/{}",
        fabrouter_estimator::MODEL_VERSION,
        profile.content_hash()
    )
}

/// Why a design has no estimate on a profile.
#[derive(Debug, thiserror::Error)]
pub enum EstimateError {
    #[error(
        "the design is pre-sliced G-code: its time and filament are the slicer's, in its G-code report"
    )]
    PreSliced,
    #[error("the design cannot be read: {0}")]
    Unreadable(String),
    #[error("no estimate on profile {profile}: {reason}")]
    NotOnProfile { profile: String, reason: String },
    #[error(transparent)]
    Store(#[from] fabrouter_store::StoreError),
    #[error("reading design bytes: {0}")]
    Io(#[from] std::io::Error),
}

impl EstimateError {
    /// True when asking again cannot help (the model, not the machine, is the reason).
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            EstimateError::PreSliced
                | EstimateError::Unreadable(_)
                | EstimateError::NotOnProfile { .. }
        )
    }
}

/// Estimates a design on a profile, from the cache when it can. Blocking: call it from a
/// blocking thread. The error is the estimator's reason (does not fit, no layers, broken).
pub fn estimate_design(
    state: &State,
    design: &DesignRecord,
    profile: &Profile,
) -> Result<(est::Estimate, bool, f64), EstimateError> {
    if crate::designs::is_gcode(design) {
        return Err(EstimateError::PreSliced);
    }
    let key = cache_key(&design.sha256, profile);
    if let Some(bytes) = state.store.cache_get(&key)?
        && let Ok(e) = serde_json::from_slice::<est::Estimate>(&bytes)
    {
        return Ok((e, true, 0.0));
    }
    let bytes = state.store.blobs().read_all(&design.sha256)?;
    let limits = mesh::Limits {
        max_bytes: state.config.limits.max_upload_bytes,
        max_triangles: state.config.limits.max_triangles,
        ..mesh::Limits::default()
    };
    let m =
        mesh::parse_stl(&bytes, &limits).map_err(|e| EstimateError::Unreadable(e.to_string()))?;
    let t = Instant::now();
    let e = est::estimate(&m.triangles, profile).map_err(|e| EstimateError::NotOnProfile {
        profile: profile.name.clone(),
        reason: e.to_string(),
    })?;
    let took = t.elapsed().as_secs_f64();
    if let Ok(json) = serde_json::to_vec(&e) {
        // A cache write failing costs only a recomputation later.
        let _ = state.store.cache_put(&key, &json);
    }
    Ok((e, false, took))
}

/// An estimate for routing. The scheduler decides per printer whether the part fits (and in
/// which orientation), so the profile's own build volume must not veto a model that a larger
/// printer printing with the same profile can take.
pub fn estimate_for_routing(
    state: &State,
    design: &DesignRecord,
    profile: &Profile,
) -> Result<(est::Estimate, bool, f64), EstimateError> {
    let mut p = profile.clone();
    let unbounded = fabrouter_scheduler::model::MAX_PART_EXTENT_MM;
    p.build_x_mm = p.build_x_mm.max(unbounded);
    p.build_y_mm = p.build_y_mm.max(unbounded);
    p.build_z_mm = p.build_z_mm.max(unbounded);
    estimate_design(state, design, &p)
}

#[derive(Clone)]
pub struct Estimates {
    pub state: Arc<State>,
    pub profiles: Arc<Profiles>,
}

#[tonic::async_trait]
impl EstimateService for Estimates {
    async fn estimate_design(
        &self,
        request: Request<pb::EstimateDesignRequest>,
    ) -> Result<Response<pb::Estimate>, Status> {
        let t = Instant::now();
        let this = self.clone();
        let res = tokio::task::spawn_blocking(move || {
            let who = this
                .state
                .authorize(request.metadata(), Rpc::EstimateDesign)?;
            let req = request.get_ref();
            let design = crate::designs::Designs {
                state: this.state.clone(),
                net: None,
            }
            .design(&who, &req.design, DesignUse::Read)?;
            let profile = this.profiles.get(&req.profile).ok_or_else(|| {
                bad_request(
                    "profile",
                    format!(
                        "unknown profile {:?}; known: {}",
                        req.profile,
                        this.profiles.names().join(", ")
                    ),
                )
            })?;
            let (e, cached, took) = estimate_design(&this.state, &design, &profile)
                .map_err(crate::errors::estimate_status)?;
            let mut out = estimate_to_pb(&req.design, &profile, &e);
            out.cached = cached;
            out.compute_time_s = took;
            Ok(out)
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))
        .and_then(|r| r);
        self.state.metrics.observe("EstimateDesign", t, &res);
        res.map(Response::new)
    }

    async fn list_profiles(
        &self,
        request: Request<pb::ListProfilesRequest>,
    ) -> Result<Response<pb::ListProfilesResponse>, Status> {
        let t = Instant::now();
        let res = self
            .state
            .authorize(request.metadata(), Rpc::ListProfiles)
            .map(|_| pb::ListProfilesResponse {
                profiles: self
                    .profiles
                    .names()
                    .iter()
                    .filter_map(|n| self.profiles.get(n))
                    .map(|p| {
                        let presets = self.profiles.presets(&p.name).unwrap_or_default();
                        pb::Profile {
                            name: p.name.clone(),
                            profile_hash: p.content_hash(),
                            nozzle_diameter_mm: p.nozzle_diameter_mm,
                            layer_height_mm: p.layer_height_mm,
                            build_x_mm: p.build_x_mm,
                            build_y_mm: p.build_y_mm,
                            build_z_mm: p.build_z_mm,
                            toml: p.to_toml(),
                            printer_preset: presets.printer,
                            print_preset: presets.print,
                            filament_preset: presets.filament,
                        }
                    })
                    .collect(),
            });
        self.state.metrics.observe("ListProfiles", t, &res);
        res.map(Response::new)
    }
}
