//! Benchmark of check_stl (parse and check in one pass) on a generated 1M+ triangle closed
//! torus, against `admesh --exact` on the same file when admesh is on PATH. Prints figures,
//! every run in order (the first pays for fresh memory); not a test.

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use fabrouter_mesh::{
    Limits, Mesh, StlFormat, check, check_stl, parse_stl, read_file, to_binary_stl,
};

/// Torus resolution: 2 * MAJOR * MINOR triangles (1,036,800).
const MAJOR: usize = 1440;
const MINOR: usize = 360;
const RUNS: usize = 11;
const ADMESH_RUNS: usize = 3;

fn torus() -> Mesh {
    torus_of(MAJOR, MINOR)
}

/// A closed torus of `2 * major * minor` triangles.
fn torus_of(major: usize, minor: usize) -> Mesh {
    let (big_r, small_r) = (40.0f64, 12.0f64);
    let point = |i: usize, j: usize| {
        let u = (i % major) as f64 / major as f64 * std::f64::consts::TAU;
        let v = (j % minor) as f64 / minor as f64 * std::f64::consts::TAU;
        let r = big_r + small_r * v.cos();
        [
            (r * u.cos()) as f32,
            (r * u.sin()) as f32,
            (small_r * v.sin()) as f32,
        ]
    };
    let mut triangles = Vec::with_capacity(2 * major * minor);
    for i in 0..major {
        for j in 0..minor {
            let (a, b, c, d) = (
                point(i, j),
                point(i + 1, j),
                point(i + 1, j + 1),
                point(i, j + 1),
            );
            triangles.push([a, b, c]);
            triangles.push([a, c, d]);
        }
    }
    let normals = vec![[0.0; 3]; triangles.len()];
    Mesh {
        triangles,
        normals,
        format: StlFormat::Binary,
        header: "fabrouter torus benchmark".to_string(),
        solids: 1,
    }
}

fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// "median X ms (min Y ms)": the median is the figure asked for; the minimum is the least
/// disturbed by other work on a shared machine.
fn figure(v: &[Duration]) -> String {
    let min = v.iter().min().copied().unwrap_or_default();
    format!("median {:.1} ms (min {:.1} ms)", ms(median(v)), ms(min))
}

/// The load average over the last minute: with two cores, anything above about 1 means other
/// work took CPU time from the threads of the check (admesh only needs one core).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".to_string())
}

/// CPU time of this process so far (all threads), from /proc, in clock ticks of 10 ms.
fn cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 2..)?.split(' ').collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// check_stl of small meshes, where fixed costs (allocations, threads) dominate.
fn small_meshes() {
    println!("small meshes, check_stl from bytes (median of 7):");
    for (major, minor) in [(3, 2), (12, 8), (50, 20), (100, 100), (300, 150)] {
        let bytes = to_binary_stl(&torus_of(major, minor));
        let reps = (4_000_000 / bytes.len()).clamp(5, 20_000);
        let times: Vec<Duration> = (0..7)
            .map(|_| {
                let start = Instant::now();
                for _ in 0..reps {
                    std::hint::black_box(check_stl(&bytes, &Limits::default()).expect("check"));
                }
                start.elapsed() / reps as u32
            })
            .collect();
        println!(
            "  {:>7} triangles: {:.1} us",
            2 * major * minor,
            median(&times).as_secs_f64() * 1e6
        );
    }
}

fn main() {
    small_meshes();
    let mesh = torus();
    let bytes = to_binary_stl(&mesh);
    let mut file = tempfile::Builder::new()
        .suffix(".stl")
        .tempfile()
        .expect("temp file");
    file.write_all(&bytes).expect("write temp STL");
    file.flush().expect("flush temp STL");
    println!(
        "torus: {} triangles, {} bytes, {}",
        mesh.triangles.len(),
        bytes.len(),
        file.path().display()
    );

    let limits = Limits::default();
    let mut read_times = Vec::new();
    let mut fused_times = Vec::new();
    let mut parse_times = Vec::new();
    let mut check_times = Vec::new();
    let mut total_times = Vec::new();
    let mut last = None;
    let (load_before, cpu_before) = (load_average(), cpu_ticks());
    for _ in 0..RUNS {
        // Reading the file is part of the job, as it is for admesh.
        let start = Instant::now();
        let data = read_file(file.path(), limits.max_bytes).expect("read temp STL");
        let read_at = Instant::now();
        // What fabd and `fab check` run: parse and check in one pass over the bytes.
        let checked = check_stl(&data, &limits).expect("check_stl");
        let done = Instant::now();
        read_times.push(read_at - start);
        fused_times.push(done - read_at);
        total_times.push(done - start);
        last = Some(checked.report);
    }
    let cpu_per_run = cpu_before
        .zip(cpu_ticks())
        .map(|(a, b)| format!("{:.0} ms", (b - a) as f64 * 10.0 / RUNS as f64))
        .unwrap_or_else(|| "unknown".to_string());
    let load_after = load_average();
    // For reference, the two steps apart: parse_stl builds the mesh, check reads it.
    for _ in 0..RUNS {
        let data = std::fs::read(file.path()).expect("read temp STL");
        let start = Instant::now();
        let parsed = parse_stl(&data, &limits).expect("parse");
        let parsed_at = Instant::now();
        let report = check(&parsed);
        check_times.push(parsed_at.elapsed());
        parse_times.push(parsed_at - start);
        assert_eq!(Some(&report), last.as_ref(), "check_stl and check disagree");
    }
    if let Some(r) = &last {
        println!(
            "report: vertices {} shells {} boundary edges {} volume {:.1} mm3 verdict {:?}",
            r.vertices, r.shells, r.boundary_edges, r.signed_volume_mm3, r.verdict
        );
    }
    println!(
        "load average (1 min) before/after our runs: {load_before}/{load_after}; CPU time per run, all threads, read+check_stl: {cpu_per_run}",
    );
    println!(
        "fabrouter-mesh ({RUNS} runs, {} threads):\n  read file        {}\n  check_stl        {}  (parse and check in one pass)\n  read+check_stl   {}\n  each check_stl run in order, ms: {}\n  for reference, in two steps: parse_stl {}, then check {}",
        rayon::current_num_threads(),
        figure(&read_times),
        figure(&fused_times),
        figure(&total_times),
        fused_times
            .iter()
            .map(|d| format!("{:.1}", ms(*d)))
            .collect::<Vec<_>>()
            .join(" "),
        figure(&parse_times),
        figure(&check_times),
    );

    let mut admesh_times = Vec::new();
    for _ in 0..ADMESH_RUNS {
        let start = Instant::now();
        match Command::new("admesh")
            .arg("--exact")
            .arg(file.path())
            .output()
        {
            Ok(out) if out.status.success() => admesh_times.push(start.elapsed()),
            Ok(out) => {
                println!("admesh failed: {}", String::from_utf8_lossy(&out.stderr));
                break;
            }
            Err(_) => {
                println!("admesh not on PATH: no comparison (apt-get install -y admesh)");
                break;
            }
        }
    }
    if admesh_times.len() == ADMESH_RUNS {
        let theirs = median(&admesh_times);
        let theirs_min = admesh_times.iter().min().copied().unwrap_or_default();
        let ratio = |ours: &[Duration]| {
            let best = ours.iter().min().copied().unwrap_or_default();
            format!(
                "{:.1}x by medians, {:.1}x by minimums",
                theirs.as_secs_f64() / median(ours).as_secs_f64(),
                theirs_min.as_secs_f64() / best.as_secs_f64()
            )
        };
        println!(
            "admesh --exact (reads the file, checks): {} ({ADMESH_RUNS} runs)",
            figure(&admesh_times)
        );
        println!("load average (1 min) after admesh: {}", load_average());
        println!("speed-up, check_stl vs admesh: {}", ratio(&fused_times));
        println!(
            "speed-up, read+check_stl vs admesh: {}",
            ratio(&total_times)
        );
    }
}
