//! Throughput of the sender against the virtual printer over a real pseudo-terminal, at a fixed
//! simulated reply latency and baud rate, one line in flight versus the ADVANCED_OK window,
//! printed next to the ceiling that latency and baud rate allow.
//!
//! Run: `cargo bench -p firmware-bridge --bench throughput` (add `-- --lines N` to change the
//! job size).

use std::time::{Duration, Instant};

use firmware_bridge::serial::{DtrPolicy, open_serial};
use firmware_bridge::{BridgeConfig, Event, GcodeJob, Outcome, connect, gcode};
use virtual_printer::{PrinterConfig, VirtualPrinter};

const BAUD: u32 = 250_000;
/// Marlin defaults: BUFSIZE 4 (ADVANCED_OK reports B = 3 when idle), 128-byte RX buffer.
const BUFSIZE: usize = 4;
const RX_BYTES: usize = 128;

fn job_text(lines: usize) -> String {
    let mut g = String::new();
    let mut e = 0.0f64;
    for i in 0..lines {
        e += 0.04321;
        let x = 100.0 + (i % 97) as f64 * 0.731;
        let y = 100.0 + (i % 89) as f64 * 0.517;
        g.push_str(&format!("G1 X{x:.3} Y{y:.3} E{e:.5}\n"));
    }
    g
}

struct Figure {
    lines_per_s: f64,
    mean_framed_bytes: f64,
}

async fn run(latency: Duration, advanced_ok: bool, text: &str, dir: &std::path::Path) -> Figure {
    let printer_cfg = PrinterConfig {
        reply_latency: latency,
        baud: Some(BAUD),
        command_buffer: BUFSIZE,
        rx_buffer_bytes: RX_BYTES,
        move_time: Duration::ZERO,
        advanced_ok,
        ..PrinterConfig::default()
    };
    let printer = VirtualPrinter::spawn_pty(printer_cfg).expect("pty");
    let path = printer
        .slave_path()
        .and_then(|p| p.to_str())
        .expect("pty path")
        .to_string();
    let port = open_serial(&path, BAUD, DtrPolicy::Assert)
        .await
        .expect("open pty");
    let (handle, mut events) = connect(port, BridgeConfig::default())
        .await
        .expect("connect");
    let file = dir.join(format!("bench-{advanced_ok}-{}.gcode", latency.as_micros()));
    std::fs::write(&file, text).expect("write job");
    let job = GcodeJob::open(&file).await.expect("job");
    let lines = job.summary().commands;
    let started = Instant::now();
    handle.start(job).await.expect("start");
    while let Some(ev) = events.recv().await {
        if let Event::Finished {
            outcome, reason, ..
        } = ev
        {
            assert_eq!(outcome, Outcome::Completed, "{reason:?}");
            break;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let executed = printer.record().iter().filter(|e| e.line.is_some()).count();
    assert_eq!(executed as u64, lines, "every line executed");
    let framed: usize = text
        .lines()
        .filter_map(gcode::clean_line)
        .enumerate()
        .map(|(i, c)| gcode::frame(i as u64 + 1, c).len() + 1)
        .sum();
    Figure {
        lines_per_s: lines as f64 / elapsed,
        mean_framed_bytes: framed as f64 / lines as f64,
    }
}

fn main() {
    let lines = std::env::args()
        .skip_while(|a| a != "--lines")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(3000usize);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let text = job_text(lines);
    println!(
        "throughput to the virtual printer over a pty: {lines} G1 lines, {BAUD} baud simulated, BUFSIZE {BUFSIZE}, RX {RX_BYTES} B"
    );
    println!(
        "{:>10} {:>16} {:>12} {:>12} {:>8}",
        "latency", "mode", "lines/s", "ceiling", "of max"
    );
    for latency_ms in [2.0, 5.0] {
        let latency = Duration::from_secs_f64(latency_ms / 1000.0);
        for advanced_ok in [false, true] {
            let fig = runtime.block_on(run(latency, advanced_ok, &text, dir.path()));
            let wire = fig.mean_framed_bytes * 10.0 / f64::from(BAUD);
            let round_trip = latency.as_secs_f64() + wire;
            let ceiling = if advanced_ok {
                // B = BUFSIZE - 1 lines in flight when idle, and no more than the RX bytes.
                let window = (BUFSIZE - 1).min((127.0 / fig.mean_framed_bytes) as usize) as f64;
                (window / round_trip).min(1.0 / wire)
            } else {
                1.0 / round_trip
            };
            println!(
                "{:>8.1}ms {:>16} {:>12.0} {:>12.0} {:>7.0}%",
                latency_ms,
                if advanced_ok {
                    "ADVANCED_OK"
                } else {
                    "one in flight"
                },
                fig.lines_per_s,
                ceiling,
                100.0 * fig.lines_per_s / ceiling
            );
        }
    }
}
