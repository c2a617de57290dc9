//! Measures scan throughput on the reference G-code, repeated to about 100 MB and fed in 64 KiB
//! chunks as an upload would be.
//!
//! `cargo run --release --example throughput [dir]` (default: the repository's
//! `tests/data/gcode`).
//!
//! Reports CPU time as well as wall time: on a shared machine the process may get only part of a
//! core, and wall time then measures the neighbours rather than the scanner.

use std::io::Read;
use std::path::PathBuf;
use std::time::Instant;

use fabrouter_gcode::{Limits, Scanner};

fn main() {
    let dir = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/gcode")
        });
    let mut sample = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "gz"))
        .collect();
    entries.sort();
    for path in &entries {
        let file = std::fs::File::open(path).expect("open");
        flate2::read::GzDecoder::new(file)
            .read_to_end(&mut sample)
            .expect("gunzip");
    }
    assert!(!sample.is_empty(), "no .gz files in {}", dir.display());
    let repeats = (100_000_000 / sample.len()).max(1);
    let data = sample.repeat(repeats);

    for round in 0..3 {
        let cpu_start = thread_cpu_ns();
        let start = Instant::now();
        let mut scanner = Scanner::new(data.len() as u64, Limits::default()).expect("size");
        for chunk in data.chunks(64 * 1024) {
            scanner.feed(chunk).expect("valid G-code");
        }
        let summary = scanner.finish().expect("valid G-code");
        let secs = start.elapsed().as_secs_f64();
        let mb = data.len() as f64 / 1e6;
        let cpu = thread_cpu_ns()
            .zip(cpu_start)
            .map(|(end, start)| {
                format!(
                    ", CPU {:.3} s = {:.0} MB/s",
                    (end - start) as f64 / 1e9,
                    mb / ((end - start) as f64 / 1e9)
                )
            })
            .unwrap_or_default();
        println!(
            "round {round}: {mb:.1} MB, {} lines: wall {secs:.3} s = {:.0} MB/s{cpu}",
            summary.lines,
            mb / secs,
        );
    }
}

/// Time this thread spent on a CPU, from Linux's scheduler statistics.
fn thread_cpu_ns() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    stat.split_whitespace().next()?.parse().ok()
}
