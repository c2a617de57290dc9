//! Per-feature comparison with PrusaSlicer: for each model, slices it with the installed
//! `prusa-slicer` and the given config, replays the G-code per `;TYPE:` role
//! (`fabrouter_estimator::replay`), estimates it with the given profile, and prints time and
//! extrusion per role side by side. This is where the estimator's gaps show, feature by feature.
//!
//! ```text
//! cargo run --release -p fabrouter-estimator --example roles -- \
//!     [--config PRUSASLICER.ini] [--profile NAME|PROFILE.toml] [--summary] [MODEL.stl ...]
//! ```
//! Defaults: the repository's reference models (`tests/data/stl`, those PrusaSlicer sliced in
//! `prusaslicer.tsv`), `tests/data/prusaslicer_B_explicit.ini` and the built-in `prusaslicer-b`
//! (`bigbed-400` and a 400 mm bed for models only the big-bed variant sliced). G-code is kept in
//! the system's temporary directory under the config's and model's hash, so reruns only estimate.
//! `--summary` prints one line per model instead of the per-role table. `--custom-from-config`
//! sets the profile's `custom_gcode_time_s` by replaying the config's `start_gcode` and
//! `end_gcode` with PrusaSlicer's macros crudely resolved (see [`custom_gcode`]), as a preset
//! mapping would with them expanded.

use std::collections::BTreeMap;
use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::Command;

use fabrouter_estimator::replay::{MachineLimits, replay_gcode};
use fabrouter_estimator::{FeatureEstimate, Profile, estimate};
use sha2::{Digest, Sha256};

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data")
}

/// Reference models PrusaSlicer sliced, with whether they needed the big bed (variant C).
fn reference_models() -> Vec<(PathBuf, bool)> {
    let text = std::fs::read_to_string(data_dir().join("prusaslicer.tsv")).unwrap_or_default();
    let mut ok: BTreeMap<String, bool> = BTreeMap::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() > 3 && f[3] == "ok" && !f[1].starts_with('A') {
            let big = f[1].starts_with('C');
            let e = ok.entry(f[0].to_string()).or_insert(big);
            *e = *e && big;
        }
    }
    // Same mesh, other line endings or junk: one of each is enough.
    ok.remove("prusaslicer__20mmbox-nonstandard.stl");
    ok.into_iter()
        .map(|(f, big)| (data_dir().join("stl").join(f), big))
        .collect()
}

fn slice(config: &Path, stl: &Path, big_bed: bool) -> Result<String, Box<dyn Error>> {
    let mut h = Sha256::new();
    h.update(std::fs::read(config)?);
    h.update(std::fs::read(stl)?);
    h.update([u8::from(big_bed)]);
    let key = hex::encode(&h.finalize()[..8]);
    let dir = std::env::temp_dir().join("fab-estimator-roles");
    std::fs::create_dir_all(&dir)?;
    let out = dir.join(format!("{key}.gcode"));
    if !out.exists() {
        let tmp = dir.join(format!("{key}.partial.gcode"));
        let mut cmd = Command::new("prusa-slicer");
        cmd.args(["--loglevel", "1", "--load"]).arg(config);
        if big_bed {
            cmd.args([
                "--bed-shape",
                "0x0,400x0,400x400,0x400",
                "--max-print-height",
                "400",
            ]);
        }
        cmd.arg("--export-gcode").arg("--output").arg(&tmp).arg(stl);
        let o = cmd.output().map_err(|e| format!("prusa-slicer: {e}"))?;
        if !o.status.success() {
            return Err(format!(
                "prusa-slicer failed: {}",
                String::from_utf8_lossy(&o.stderr)
            )
            .into());
        }
        std::fs::rename(&tmp, &out)?;
    }
    Ok(std::fs::read_to_string(out)?)
}

/// The config's `start_gcode` and `end_gcode`, unescaped (`\\n` is a line break in a PrusaSlicer
/// `.ini`). PrusaSlicer's macros are not evaluated: a line with a placeholder or a one-line
/// condition is dropped, and of a multi-line `{if}...{else}...{endif}` only the `{else}` branch
/// is kept (vendor bundles put the special cases first). A rough stand-in for the preset
/// mapping, for comparisons only.
fn custom_gcode(config: &Path) -> Result<String, Box<dyn Error>> {
    let text = std::fs::read_to_string(config)?;
    let mut out = String::new();
    for line in text.lines() {
        for key in ["start_gcode = ", "end_gcode = "] {
            let Some(v) = line.strip_prefix(key) else {
                continue;
            };
            let v = v.replace("\\n", "\n").replace("\\\"", "\"");
            let mut keep = true;
            for l in v.lines() {
                let t = l.trim();
                if t.starts_with("{if") && !t.contains("{endif}") {
                    keep = false;
                } else if t.starts_with("{else}")
                    || t.starts_with("{elsif")
                    || t.starts_with("{endif}")
                {
                    keep = true;
                } else if keep && !t.contains('{') && !t.contains('[') {
                    out.push_str(l);
                    out.push('\n');
                }
            }
        }
    }
    Ok(out)
}

fn pct(ours: f64, theirs: f64) -> String {
    if theirs.abs() < 1e-9 {
        if ours.abs() < 1e-9 {
            "".into()
        } else {
            "new".into()
        }
    } else {
        format!("{:+.0}", 100.0 * (ours - theirs) / theirs)
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let mut config = data_dir().join("prusaslicer_B_explicit.ini");
    let mut profile_arg: Option<String> = None;
    let mut summary = false;
    let mut custom_from_config = false;
    let mut models: Vec<(PathBuf, bool)> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--config" => config = args.next().ok_or("--config needs a file")?.into(),
            "--profile" => profile_arg = Some(args.next().ok_or("--profile needs a value")?),
            "--summary" => summary = true,
            "--custom-from-config" => custom_from_config = true,
            _ => models.push((a.into(), false)),
        }
    }
    if models.is_empty() {
        models = reference_models();
    }
    let load = |name: &str| -> Result<Profile, Box<dyn Error>> {
        Ok(match Profile::builtin(name) {
            Some(p) => p,
            None => Profile::from_toml(&std::fs::read_to_string(name)?)?,
        })
    };
    let (mut time_errs, mut fil_errs) = (Vec::new(), Vec::new());
    if summary {
        println!(
            "{:<42} {:>8} {:>8} {:>7} {:>8} {:>9} {:>9} {:>7}",
            "model", "time_s", "ps_s", "err%", "replay%", "fil_mm", "ps_fil", "err%"
        );
    }
    for (stl, big) in &models {
        let name = stl.file_name().and_then(|n| n.to_str()).unwrap_or("?");
        let profile = match &profile_arg {
            Some(p) => load(p)?,
            None => load(if *big { "bigbed-400" } else { "prusaslicer-b" })?,
        };
        let mut profile = profile;
        if custom_from_config {
            let text = format!(";TYPE:Custom\n{}", custom_gcode(&config)?);
            profile.custom_gcode_time_s =
                replay_gcode(&text, &MachineLimits::from_profile(&profile)).total_time_s;
        }
        let gcode = match slice(&config, stl, *big) {
            Ok(g) => g,
            Err(e) => {
                println!("{name}: {e}");
                continue;
            }
        };
        let ps = replay_gcode(&gcode, &MachineLimits::from_profile(&profile));
        let bytes = std::fs::read(stl)?;
        let mesh = fabrouter_mesh::parse_stl(&bytes, &fabrouter_mesh::Limits::default())?;
        let est = match estimate(&mesh.triangles, &profile) {
            Ok(e) => e,
            Err(e) => {
                println!("{name}: estimate failed: {e}");
                continue;
            }
        };
        let ps_time = ps.slicer_time_s.unwrap_or(ps.total_time_s);
        let te = 100.0 * (est.print_time_s - ps_time) / ps_time;
        let ps_fil = ps.slicer_filament_mm.unwrap_or(ps.filament_mm);
        let fe = 100.0 * (est.filament_mm - ps_fil) / ps_fil;
        time_errs.push(te);
        fil_errs.push(fe);
        let replay_err = 100.0 * (ps.total_time_s - ps_time) / ps_time;
        if summary {
            println!(
                "{name:<42} {:>8.0} {:>8.0} {:>+7.1} {:>+8.1} {:>9.1} {:>9.1} {:>+7.1}",
                est.print_time_s, ps_time, te, replay_err, est.filament_mm, ps_fil, fe
            );
            continue;
        }
        println!(
            "\n{name} on {}: time {:.0} s vs PrusaSlicer {:.0} s ({te:+.1} %; replay of its G-code {:.0} s, {replay_err:+.1} %), filament {:.1} vs {:.1} mm ({fe:+.1} %), retractions {} vs {}",
            profile.name,
            est.print_time_s,
            ps_time,
            ps.total_time_s,
            est.filament_mm,
            ps_fil,
            est.retractions,
            ps.retractions
        );
        println!(
            "  {:<20} {:>8} {:>8} {:>6} {:>9} {:>9} {:>6} {:>9} {:>9} {:>6}",
            "role", "time_s", "ps_s", "d%", "fil_mm", "ps_fil", "d%", "path_mm", "ps_path", "d%"
        );
        let mut seen: Vec<String> = Vec::new();
        for (role, ours) in est.roles.named() {
            let theirs = ps.roles.get(role).copied().unwrap_or_default();
            seen.push(role.to_string());
            if ours == FeatureEstimate::default() && theirs == FeatureEstimate::default() {
                continue;
            }
            println!(
                "  {role:<20} {:>8.1} {:>8.1} {:>6} {:>9.1} {:>9.1} {:>6} {:>9.0} {:>9.0} {:>6}",
                ours.time_s,
                theirs.time_s,
                pct(ours.time_s, theirs.time_s),
                ours.filament_mm,
                theirs.filament_mm,
                pct(ours.filament_mm, theirs.filament_mm),
                ours.path_mm,
                theirs.path_mm,
                pct(ours.path_mm, theirs.path_mm)
            );
        }
        for (role, theirs) in &ps.roles {
            if !seen.contains(role) {
                println!(
                    "  {role:<20} {:>8} {:>8.1} {:>6} {:>9} {:>9.1} {:>6} {:>9} {:>9.0}",
                    "-", theirs.time_s, "", "-", theirs.filament_mm, "", "-", theirs.path_mm
                );
            }
        }
        println!(
            "  slowdown {:.0} s on {} layers; layers {}",
            est.cooling_slowdown_s, est.slowed_layers, est.layers
        );
    }
    let median = |v: &mut Vec<f64>| -> f64 {
        let mut a: Vec<f64> = v.iter().map(|x| x.abs()).collect();
        a.sort_by(f64::total_cmp);
        if a.is_empty() {
            f64::NAN
        } else if a.len() % 2 == 1 {
            a[a.len() / 2]
        } else {
            0.5 * (a[a.len() / 2 - 1] + a[a.len() / 2])
        }
    };
    let worst = |v: &[f64]| v.iter().map(|x| x.abs()).fold(0.0, f64::max);
    println!(
        "\n{} models: time |err| median {:.1} % worst {:.1} %; filament |err| median {:.1} % worst {:.1} %",
        time_errs.len(),
        median(&mut time_errs),
        worst(&time_errs),
        median(&mut fil_errs),
        worst(&fil_errs)
    );
    Ok(())
}
