//! A printer's PrusaSlicer presets: the (printer, print, filament) triple an operator names in
//! the node's TOML (resolved through the installed vendor bundles), or the operator's own
//! `.ini` (a flat export, or a config bundle whose `[presets]` are resolved). The resolved
//! config is what the printer slices with (`--load`) and what the node reports to the router
//! (`PrinterSpec.slicer_config`), so the router's estimate and the G-code share their settings.

use std::path::{Path, PathBuf};

use anyhow::Context;
use fabrouter_api::v1 as pb;
use fabrouter_profiles::{Config, Library, Triple};
use serde::Deserialize;

/// `presets = { printer = "...", print = "...", filament = "..." }` in a printer's TOML.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPresets {
    pub printer: String,
    pub print: String,
    pub filament: String,
}

/// A printer's resolved PrusaSlicer config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlicerProfile {
    /// The presets it came from (empty names for an operator's flat `.ini`).
    pub presets: Triple,
    /// The resolved config as the `.ini` PrusaSlicer loads.
    pub ini: String,
}

/// Resolves a printer's presets, or reads its own `.ini` (`slicer_config`). Vendor bundles
/// are read once per configuration (`lib`). The error is a sentence for the config's line;
/// a config the estimator cannot map is refused here, as the router would refuse it.
pub fn resolve(
    presets: Option<&RawPresets>,
    own_ini: Option<&Path>,
    lib: &mut Option<Library>,
) -> Result<Option<SlicerProfile>, String> {
    let (config, presets) = match (presets, own_ini) {
        (None, None) => return Ok(None),
        (Some(_), Some(_)) => {
            return Err("set presets or slicer_config, not both".into());
        }
        (Some(p), None) => {
            let t = Triple {
                printer: p.printer.clone(),
                print: p.print.clone(),
                filament: p.filament.clone(),
            };
            let c = installed(lib)?
                .resolve_triple(&t)
                .map_err(|e| e.to_string())?;
            (c, t)
        }
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("slicer_config {}: {e}", path.display()))?;
            let label = path.display().to_string();
            if text.lines().any(|l| l.trim_start().starts_with('[')) {
                // A config bundle; its user presets may inherit the vendors' (read if there).
                let mut bundle = Library::installed().unwrap_or_default();
                bundle.add_text(&text, &label).map_err(|e| e.to_string())?;
                let t = bundle.selected().cloned().ok_or_else(|| {
                    format!("slicer_config {label} is a config bundle without [presets]")
                })?;
                let c = bundle.resolve_triple(&t).map_err(|e| e.to_string())?;
                (c, t)
            } else {
                let c = Config::from_flat_ini(&text, &label).map_err(|e| e.to_string())?;
                (c, Triple::default())
            }
        }
    };
    fabrouter_profiles::to_profile(&config, "check").map_err(|e| e.to_string())?;
    Ok(Some(SlicerProfile {
        presets,
        ini: config.to_ini(),
    }))
}

fn installed(lib: &mut Option<Library>) -> Result<&Library, String> {
    if lib.is_none() {
        *lib = Some(Library::installed().map_err(|e| e.to_string())?);
    }
    Ok(lib.as_ref().expect("just set"))
}

/// What the router is told of a printer's slicer config.
pub fn slicer_config_pb(s: Option<&SlicerProfile>) -> Option<pb::SlicerConfig> {
    s.map(|s| pb::SlicerConfig {
        ini: s.ini.clone(),
        printer_preset: s.presets.printer.clone(),
        print_preset: s.presets.print.clone(),
        filament_preset: s.presets.filament.clone(),
    })
}

/// Writes a resolved config to `dir`, named by its content hash so printers sharing a config
/// share the file, and returns its path for `--load`.
pub fn write_resolved(dir: &Path, s: &SlicerProfile) -> anyhow::Result<PathBuf> {
    use sha2::Digest;
    let hash = hex::encode(sha2::Sha256::digest(s.ini.as_bytes()));
    let path = dir.join(format!("resolved-{}.ini", &hash[..16]));
    if std::fs::read_to_string(&path).ok().as_deref() != Some(s.ini.as_str()) {
        std::fs::write(&path, &s.ini).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(path)
}
