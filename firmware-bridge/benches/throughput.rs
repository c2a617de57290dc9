//! Throughput of the sender against the virtual printer over a real pseudo-terminal, at a fixed
//! simulated reply latency and baud rate, one line in flight versus the ADVANCED_OK window,
//! printed next to the ceiling that latency and baud rate allow.
//!
//! Then recovery from faults: an instant printer that says `wait` when idle (as OctoPrint's
//! virtual printer does every second) with a fault schedule of the kind OctoPrint's virtual
//! printer runs by default (a resend, a lost `ok`, a missing line number, a checksum mismatch),
//! repeated every `--period` lines; lines/s without faults, with them, and with them but quick
//! probes off (the previous behaviour, as reference), each checked for every line executed
//! exactly once in order.
//!
//! Run: `cargo bench -p firmware-bridge --bench throughput` (add `-- --lines N` to change the
//! job size, `--period N` the fault period).

use std::time::{Duration, Instant};

use firmware_bridge::serial::{DtrPolicy, open_serial};
use firmware_bridge::{BridgeConfig, Event, GcodeJob, Outcome, connect, gcode};
use virtual_printer::{FaultPlan, PrinterConfig, VirtualPrinter};

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
    stream(printer_cfg, BridgeConfig::default(), text, dir).await
}

async fn stream(
    printer_cfg: PrinterConfig,
    bridge_cfg: BridgeConfig,
    text: &str,
    dir: &std::path::Path,
) -> Figure {
    let printer = VirtualPrinter::spawn_pty(printer_cfg).expect("pty");
    let path = printer
        .slave_path()
        .and_then(|p| p.to_str())
        .expect("pty path")
        .to_string();
    let (lines_per_s, lines) = stream_to(&path, bridge_cfg, text, dir).await;

    // Every job line exactly once, in order; numbered M105s are the sender's probes.
    let executed: Vec<String> = printer
        .record()
        .into_iter()
        .filter(|e| e.line.is_some() && e.command != "M105")
        .map(|e| e.command)
        .collect();
    let expected: Vec<String> = text
        .lines()
        .filter_map(gcode::clean_line)
        .map(str::to_string)
        .collect();
    assert_eq!(executed.len() as u64, lines, "every line executed once");
    assert!(executed == expected, "lines executed out of order");
    let framed: usize = text
        .lines()
        .filter_map(gcode::clean_line)
        .enumerate()
        .map(|(i, c)| gcode::frame(i as u64 + 1, c).len() + 1)
        .sum();
    Figure {
        lines_per_s,
        mean_framed_bytes: framed as f64 / lines as f64,
    }
}

/// Streams `text` to the printer at `path`; (lines/s, job lines).
async fn stream_to(
    path: &str,
    bridge_cfg: BridgeConfig,
    text: &str,
    dir: &std::path::Path,
) -> (f64, u64) {
    let port = open_serial(path, BAUD, DtrPolicy::Assert)
        .await
        .expect("open pty");
    let (handle, mut events) = connect(port, bridge_cfg).await.expect("connect");
    let file = dir.join("bench.gcode");
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
    let _ = handle.disconnect().await;
    (lines as f64 / elapsed, lines)
}

fn arg(name: &str, default: usize) -> usize {
    std::env::args()
        .skip_while(|a| a != name)
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let lines = arg("--lines", 3000);
    let period = arg("--period", 1000) as u64;
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

    fault_recovery(&runtime, lines, period, &text, dir.path());
}

/// Lines/s on an instant printer without faults, with the OctoPrint-like schedule, and with
/// it but quick probes off.
fn fault_recovery(
    runtime: &tokio::runtime::Runtime,
    lines: usize,
    period: u64,
    text: &str,
    dir: &std::path::Path,
) {
    let printer = |faults: FaultPlan| PrinterConfig {
        reply_latency: Duration::ZERO,
        baud: None,
        command_buffer: BUFSIZE,
        rx_buffer_bytes: RX_BYTES,
        move_time: Duration::ZERO,
        idle_wait: Some(Duration::from_secs(1)),
        faults,
        ..PrinterConfig::default()
    };
    let faults = FaultPlan::octoprint_like(period);
    let sets = (lines as u64).saturating_sub(100).div_ceil(period);
    println!();
    println!(
        "fault recovery, instant printer saying `wait` after 1 s idle, one line in flight: {lines} lines, \
         resend/lost ok/missing line number/checksum mismatch at lines 100/105/110/115 + k*{period} ({sets} sets)"
    );
    println!("{:>34} {:>10} {:>10}", "scenario", "lines/s", "ratio");
    let clean = runtime.block_on(stream(
        printer(FaultPlan::default()),
        BridgeConfig::default(),
        text,
        dir,
    ));
    println!(
        "{:>34} {:>10.0} {:>10}",
        "no faults", clean.lines_per_s, "1.00"
    );
    let quick = runtime.block_on(stream(
        printer(faults.clone()),
        BridgeConfig::default(),
        text,
        dir,
    ));
    println!(
        "{:>34} {:>10.0} {:>10.2}",
        "faults, quick probes",
        quick.lines_per_s,
        quick.lines_per_s / clean.lines_per_s
    );
    let slow = runtime.block_on(stream(
        printer(faults),
        BridgeConfig {
            quick_probe: false,
            ..BridgeConfig::default()
        },
        text,
        dir,
    ));
    println!(
        "{:>34} {:>10.0} {:>10.2}",
        "faults, quick probes off (before)",
        slow.lines_per_s,
        slow.lines_per_s / clean.lines_per_s
    );
    println!(
        "quick probes vs before: {:.1}x",
        quick.lines_per_s / slow.lines_per_s
    );
}
