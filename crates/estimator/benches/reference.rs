//! Reference benchmark: for every STL in `tests/data/stl/` that PrusaSlicer 2.5 sliced, prints our
//! time and filament next to PrusaSlicer's figures (`prusaslicer.tsv`, variant B, or the big-bed variant
//! C where B did not fit), the error in %, and our runtime; when `prusa-slicer` is installed it also
//! slices the same file now and prints the speed ratio. Ends with the median absolute errors.
//!
//! Run: `cargo bench -p fabrouter-estimator --bench reference` (set `FAB_REFERENCE_DIR` to point
//! elsewhere than the repository's `tests/data`; `FAB_BENCH_SKIP_PRUSASLICER=1`
//! skips running PrusaSlicer; `FAB_BENCH_VERBOSE=1` adds the per-feature breakdown).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use fabrouter_estimator::{Profile, estimate};

/// Our runtime is the median of this many runs (parse + estimate).
const RUNS: usize = 5;

struct Reference {
    variant: String,
    time_s: f64,
    filament_mm: f64,
    ps_wall_s: f64,
}

fn reference_dir() -> PathBuf {
    if let Ok(d) = std::env::var("FAB_REFERENCE_DIR") {
        return PathBuf::from(d);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data")
}

/// Successful PrusaSlicer rows per file: B when it sliced, otherwise C (bigger bed).
fn read_tsv(path: &Path) -> BTreeMap<String, Reference> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split('\t').collect();
    let col = |name: &str| header.iter().position(|h| *h == name);
    let (Some(cf), Some(cv), Some(cs), Some(ct), Some(cm), Some(cw)) = (
        col("file"),
        col("variant"),
        col("status"),
        col("est_time_s"),
        col("fil_mm"),
        col("wall_s_median"),
    ) else {
        return BTreeMap::new();
    };
    let mut out: BTreeMap<String, Reference> = BTreeMap::new();
    for line in lines {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() <= cw.max(cm) || f[cs] != "ok" {
            continue;
        }
        let (Ok(t), Ok(m), Ok(w)) = (f[ct].parse(), f[cm].parse(), f[cw].parse()) else {
            continue;
        };
        let variant = f[cv].to_string();
        if variant.starts_with('A') {
            continue;
        }
        // Prefer B over C.
        if out.get(f[cf]).is_some_and(|r| r.variant.starts_with('B')) {
            continue;
        }
        out.insert(
            f[cf].to_string(),
            Reference {
                variant,
                time_s: t,
                filament_mm: m,
                ps_wall_s: w,
            },
        );
    }
    out
}

fn profile_for(variant: &str) -> Profile {
    let name = if variant.starts_with('C') {
        "bigbed-400"
    } else {
        "prusaslicer-b"
    };
    Profile::builtin(name).expect("built-in profile")
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// Slices with the installed PrusaSlicer using the reference's full B config; wall time.
fn run_prusaslicer(dir: &Path, stl: &Path, variant: &str) -> Option<Duration> {
    let out = std::env::temp_dir().join("fab_estimator_bench.gcode");
    let mut cmd = Command::new("prusa-slicer");
    cmd.arg("--loglevel")
        .arg("1")
        .arg("--load")
        .arg(dir.join("prusaslicer_B_explicit.ini"));
    if variant.starts_with('C') {
        cmd.args([
            "--bed-shape",
            "0x0,400x0,400x400,0x400",
            "--max-print-height",
            "400",
        ]);
    }
    cmd.arg("--export-gcode").arg("--output").arg(&out).arg(stl);
    let t = Instant::now();
    let status = cmd.output().ok()?.status;
    let elapsed = t.elapsed();
    let _ = std::fs::remove_file(&out);
    status.success().then_some(elapsed)
}

fn main() {
    let dir = reference_dir();
    let refs = read_tsv(&dir.join("prusaslicer.tsv"));
    if refs.is_empty() {
        println!("no reference figures found under {}", dir.display());
        return;
    }
    let skip_ps = std::env::var_os("FAB_BENCH_SKIP_PRUSASLICER").is_some();
    let have_ps = !skip_ps
        && Command::new("prusa-slicer")
            .arg("--help")
            .output()
            .is_ok_and(|o| o.status.success());
    if skip_ps {
        println!("FAB_BENCH_SKIP_PRUSASLICER set: comparing against the recorded figures only");
    } else if !have_ps {
        println!(
            "prusa-slicer is NOT installed: comparing against the recorded figures only (apt-get install prusa-slicer to also measure its runtime here)"
        );
    }
    println!(
        "{:<42} {:>4} {:>9} {:>9} {:>7} {:>9} {:>9} {:>7} {:>8} {:>9} {:>7}",
        "file",
        "var",
        "time_s",
        "ps_time_s",
        "err%",
        "fil_mm",
        "ps_fil_mm",
        "err%",
        "ours_ms",
        "ps_ms",
        "ratio"
    );
    let (mut time_errs, mut fil_errs, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for (file, r) in &refs {
        let path = dir.join("stl").join(file);
        let Ok(bytes) = std::fs::read(&path) else {
            println!("{file:<42} missing");
            continue;
        };
        let profile = profile_for(&r.variant);
        let mut runs = Vec::with_capacity(RUNS);
        let mut result = None;
        for _ in 0..RUNS {
            let t = Instant::now();
            let est = fabrouter_mesh::parse_stl(&bytes, &fabrouter_mesh::Limits::default())
                .map_err(|e| e.to_string())
                .and_then(|m| estimate(&m.triangles, &profile).map_err(|e| e.to_string()));
            runs.push(t.elapsed().as_secs_f64() * 1000.0);
            result = Some(est);
        }
        let ours_ms = median(&mut runs);
        let est = match result {
            Some(Ok(e)) => e,
            Some(Err(e)) => {
                println!("{file:<42} {:>4} error: {e}", &r.variant[..1]);
                continue;
            }
            None => continue,
        };
        let te = 100.0 * (est.print_time_s - r.time_s) / r.time_s;
        let fe = 100.0 * (est.filament_mm - r.filament_mm) / r.filament_mm;
        time_errs.push(te.abs());
        fil_errs.push(fe.abs());
        let (ps_ms, ratio) = if have_ps {
            match run_prusaslicer(&dir, &path, &r.variant) {
                Some(d) => {
                    let ms = d.as_secs_f64() * 1000.0;
                    ratios.push(ms / ours_ms);
                    (format!("{ms:.0}"), format!("{:.0}x", ms / ours_ms))
                }
                None => ("fail".into(), "-".into()),
            }
        } else {
            (
                format!("({:.0})", r.ps_wall_s * 1000.0),
                format!("({:.0}x)", r.ps_wall_s * 1000.0 / ours_ms),
            )
        };
        if !have_ps {
            ratios.push(r.ps_wall_s * 1000.0 / ours_ms);
        }
        println!(
            "{file:<42} {:>4} {:>9.0} {:>9.0} {:>+7.1} {:>9.1} {:>9.1} {:>+7.1} {:>8.2} {:>9} {:>7}",
            &r.variant[..1],
            est.print_time_s,
            r.time_s,
            te,
            est.filament_mm,
            r.filament_mm,
            fe,
            ours_ms,
            ps_ms,
            ratio
        );
        if std::env::var_os("FAB_BENCH_VERBOSE").is_some() {
            println!("    {:?}", est.breakdown);
            println!(
                "    layers {} travels {} retractions {} slowdown {:.0}s on {} layers, warnings {:?}",
                est.layers,
                est.travel_moves,
                est.retractions,
                est.cooling_slowdown_s,
                est.slowed_layers,
                est.warnings
            );
        }
    }
    let worst = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    let (worst_time, worst_fil) = (worst(&time_errs), worst(&fil_errs));
    println!(
        "median |error|: time {:.1}% (target <= 3%, worst {worst_time:.1}% <= 8%), filament {:.1}% (target <= 2%, worst {worst_fil:.1}% <= 4%) over {} files; median speed ratio {:.0}x{} (target >= 100x)",
        median(&mut time_errs),
        median(&mut fil_errs),
        time_errs.len(),
        median(&mut ratios),
        if have_ps {
            ""
        } else {
            " vs recorded PrusaSlicer wall times"
        }
    );
}
