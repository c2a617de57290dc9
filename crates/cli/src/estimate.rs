//! `fab estimate` (offline, on a file, with a built-in or TOML profile or PrusaSlicer
//! presets) and `fab designs estimate` / `fab profiles` (on the router, or `--installed`
//! presets offline): time, filament and layers per printer profile.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use fabrouter_api::v1 as pb;
use fabrouter_estimator::{self as est, Profile};
use fabrouter_mesh as mesh;
use serde_json::json;

use crate::client::Client;
use crate::jobs::duration;

/// PrusaSlicer presets to estimate with instead of `--profile`.
#[derive(clap::Args, Default)]
pub struct PresetArgs {
    /// A printer preset of PrusaSlicer's installed vendor bundles, e.g. "Original Prusa i3 MK3S & MK3S+".
    #[arg(long, requires_all = ["print_preset", "filament_preset"])]
    pub printer_preset: Option<String>,
    /// A print preset, e.g. "0.20mm QUALITY @MK3".
    #[arg(long, requires_all = ["printer_preset", "filament_preset"])]
    pub print_preset: Option<String>,
    /// A filament preset, e.g. "Prusament PLA".
    #[arg(long, requires_all = ["printer_preset", "print_preset"])]
    pub filament_preset: Option<String>,
    /// A PrusaSlicer config exported by its user (flat .ini), or a config bundle whose
    /// selected presets (or the --*-preset ones) are used; its presets may inherit the
    /// installed vendor ones.
    #[arg(long)]
    pub slicer_config: Option<std::path::PathBuf>,
}

impl PresetArgs {
    fn given(&self) -> bool {
        self.printer_preset.is_some() || self.slicer_config.is_some()
    }
}

/// `fab profiles` options.
#[derive(clap::Args)]
pub struct ProfilesArgs {
    /// List PrusaSlicer's presets installed on this machine instead of asking the router.
    #[arg(long)]
    pub installed: bool,
    /// Only names containing this text (case-insensitive).
    #[arg(long)]
    pub filter: Option<String>,
    /// Only this kind of preset (with --installed).
    #[arg(long, value_parser = ["printer", "print", "filament"])]
    pub kind: Option<String>,
}

/// The resolved config and its profile for the given presets: installed vendor bundles, plus
/// the user's file if one is given.
fn preset_profile(args: &PresetArgs) -> anyhow::Result<(Profile, Vec<String>)> {
    use fabrouter_profiles::{Config, Library, Triple};
    let named = args.printer_preset.as_ref().map(|printer| Triple {
        printer: printer.clone(),
        print: args.print_preset.clone().unwrap_or_default(),
        filament: args.filament_preset.clone().unwrap_or_default(),
    });
    let config = match (&args.slicer_config, named) {
        (Some(path), named) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let label = path.display().to_string();
            if text.lines().any(|l| l.trim_start().starts_with('[')) {
                // A config bundle: its presets may inherit the vendors'.
                let mut lib = Library::installed().unwrap_or_default();
                lib.add_text(&text, &label)?;
                let t = named
                    .or_else(|| lib.selected().cloned())
                    .with_context(|| format!("{label} selects no presets ([presets]); name them with --printer-preset, --print-preset and --filament-preset"))?;
                lib.resolve_triple(&t)?
            } else {
                Config::from_flat_ini(&text, &label)?
            }
        }
        (None, Some(t)) => Library::installed()?.resolve_triple(&t)?,
        (None, None) => anyhow::bail!("no presets given"),
    };
    let name = fabrouter_profiles::mapping::preset_names(&config);
    let m = fabrouter_profiles::to_profile(&config, &name)?;
    Ok((m.profile, m.notes))
}

/// `fab profiles --installed`: the concrete presets of the installed vendor bundles.
pub fn installed(args: &ProfilesArgs, json_out: bool) -> anyhow::Result<()> {
    use fabrouter_profiles::{Kind, Library};
    let lib = Library::installed()?;
    let filter = args.filter.as_deref().unwrap_or("").to_lowercase();
    let mut n = 0;
    // A long list is often piped into `head`: a closed pipe ends the listing quietly.
    let mut out = std::io::stdout().lock();
    for kind in Kind::ALL {
        if args.kind.as_deref().is_some_and(|k| k != kind.word()) {
            continue;
        }
        for p in lib.presets(kind) {
            if !p.name.to_lowercase().contains(&filter) {
                continue;
            }
            n += 1;
            let line = if json_out {
                json!({"kind": kind.word(), "name": p.name, "vendor": p.vendor, "file": p.file, "line": p.line})
                    .to_string()
            } else {
                format!("{:<8} {}  ({})", kind.word(), p.name, p.vendor)
            };
            if writeln!(out, "{line}").is_err() {
                return Ok(());
            }
        }
    }
    if n == 0 && !json_out {
        println!("no installed preset matches");
    }
    Ok(())
}

/// A built-in profile name, or a path to a profile TOML file.
pub fn profile(spec: &str) -> anyhow::Result<Profile> {
    if let Some(p) = Profile::builtin(spec) {
        return Ok(p);
    }
    let path = Path::new(spec);
    if path.exists() {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        return Profile::from_toml(&text).with_context(|| format!("profile {}", path.display()));
    }
    anyhow::bail!(
        "unknown profile {spec:?}: use a built-in one ({}) or a path to a profile TOML",
        Profile::builtin_names().join(", ")
    )
}

fn print(e: &pb::Estimate, json_out: bool) -> anyhow::Result<()> {
    if json_out {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "profile": e.profile,
                "profile_hash": e.profile_hash,
                "print_time_s": e.print_time_s,
                "filament_mm": e.filament_mm,
                "filament_g": e.filament_g,
                "filament_cm3": e.filament_cm3,
                "layers": e.layers,
                "cached": e.cached,
                "compute_time_s": e.compute_time_s,
                "breakdown": e.breakdown.iter().map(|f| json!({
                    "feature": f.feature, "time_s": f.time_s, "filament_mm": f.filament_mm, "path_mm": f.path_mm,
                })).collect::<Vec<_>>(),
                "warnings": e.warnings,
            }))?
        );
    } else {
        println!(
            "{}: {} ({:.0} s), {:.2} m of filament ({:.1} g), {} layers",
            e.profile,
            duration(e.print_time_s),
            e.print_time_s,
            e.filament_mm / 1000.0,
            e.filament_g,
            e.layers
        );
        for f in &e.breakdown {
            if f.time_s > 0.0 {
                println!(
                    "  {:<11} {:>9}  {:>8.0} mm",
                    f.feature,
                    duration(f.time_s),
                    f.filament_mm
                );
            }
        }
        for w in &e.warnings {
            println!("  warning: {w}");
        }
    }
    Ok(())
}

/// Offline estimate of a local STL file.
pub fn offline(
    file: &Path,
    profile_spec: &str,
    presets: &PresetArgs,
    json_out: bool,
) -> anyhow::Result<()> {
    let (profile, notes) = if presets.given() {
        preset_profile(presets)?
    } else {
        (profile(profile_spec)?, Vec::new())
    };
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let m = mesh::parse_stl(&bytes, &mesh::Limits::default())
        .with_context(|| format!("{} is not a readable STL", file.display()))?;
    let t = std::time::Instant::now();
    let e = est::estimate(&m.triangles, &profile)?;
    let took = t.elapsed().as_secs_f64();
    let mut out =
        fabrouter_server::estimates::estimate_to_pb(&file.display().to_string(), &profile, &e);
    out.compute_time_s = took;
    out.warnings
        .extend(notes.into_iter().map(|n| format!("profile: {n}")));
    print(&out, json_out)
}

pub async fn remote(
    client: &Client,
    design: String,
    profile: String,
    json_out: bool,
) -> anyhow::Result<()> {
    let e = client
        .estimates()
        .estimate_design(pb::EstimateDesignRequest { design, profile })
        .await?
        .into_inner();
    print(&e, json_out)
}

pub async fn profiles(client: &Client, args: &ProfilesArgs, json_out: bool) -> anyhow::Result<()> {
    let r = client
        .estimates()
        .list_profiles(pb::ListProfilesRequest {})
        .await?
        .into_inner();
    let filter = args.filter.as_deref().unwrap_or("").to_lowercase();
    for p in &r.profiles {
        let presets = [&p.printer_preset, &p.print_preset, &p.filament_preset];
        if !std::iter::once(&p.name)
            .chain(presets)
            .any(|n| n.to_lowercase().contains(&filter))
        {
            continue;
        }
        if json_out {
            println!(
                "{}",
                json!({"name": p.name, "nozzle_diameter_mm": p.nozzle_diameter_mm, "layer_height_mm": p.layer_height_mm,
                       "build_mm": [p.build_x_mm, p.build_y_mm, p.build_z_mm], "profile_hash": p.profile_hash,
                       "printer_preset": p.printer_preset, "print_preset": p.print_preset, "filament_preset": p.filament_preset})
            );
        } else {
            println!(
                "{}  nozzle {} mm, layers {} mm, bed {}x{}x{} mm",
                p.name,
                p.nozzle_diameter_mm,
                p.layer_height_mm,
                p.build_x_mm,
                p.build_y_mm,
                p.build_z_mm
            );
            if !p.printer_preset.is_empty() {
                println!(
                    "  presets: {} / {} / {}",
                    p.printer_preset, p.print_preset, p.filament_preset
                );
            }
        }
    }
    Ok(())
}
