//! `fab estimate` (offline, on a file) and `fab designs estimate` / `fab profiles` (on the
//! router): time, filament and layers per printer profile.

use std::path::Path;

use anyhow::Context;
use fabrouter_api::v1 as pb;
use fabrouter_estimator::{self as est, Profile};
use fabrouter_mesh as mesh;
use serde_json::json;

use crate::client::Client;
use crate::jobs::duration;

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
pub fn offline(file: &Path, profile_spec: &str, json_out: bool) -> anyhow::Result<()> {
    let profile = profile(profile_spec)?;
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let m = mesh::parse_stl(&bytes, &mesh::Limits::default())
        .with_context(|| format!("{} is not a readable STL", file.display()))?;
    let t = std::time::Instant::now();
    let e = est::estimate(&m.triangles, &profile)?;
    let took = t.elapsed().as_secs_f64();
    let mut out =
        fabrouter_server::estimates::estimate_to_pb(&file.display().to_string(), &profile, &e);
    out.compute_time_s = took;
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

pub async fn profiles(client: &Client, json_out: bool) -> anyhow::Result<()> {
    let r = client
        .estimates()
        .list_profiles(pb::ListProfilesRequest {})
        .await?
        .into_inner();
    for p in &r.profiles {
        if json_out {
            println!(
                "{}",
                json!({"name": p.name, "nozzle_diameter_mm": p.nozzle_diameter_mm, "layer_height_mm": p.layer_height_mm,
                       "build_mm": [p.build_x_mm, p.build_y_mm, p.build_z_mm], "profile_hash": p.profile_hash})
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
        }
    }
    Ok(())
}
