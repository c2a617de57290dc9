//! `virtual-printer`: runs a simulated Marlin printer on a pseudo-terminal so a separate
//! process (a node agent, `fab-node stream`) can connect to it like to a USB printer.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use virtual_printer::{FaultPlan, Personality, PrinterConfig, VirtualPrinter};

/// Simulated Marlin printer on a pseudo-terminal.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Symlink created to the pseudo-terminal (e.g. /tmp/vp0).
    #[arg(long)]
    link: Option<PathBuf>,
    /// Fast mode: instant wire, moves and heating a thousand times faster.
    #[arg(long)]
    fast: bool,
    /// Reply latency in milliseconds.
    #[arg(long)]
    latency_ms: Option<f64>,
    /// Simulated baud rate (0 = instant).
    #[arg(long)]
    baud: Option<u32>,
    /// Firmware to behave like: `marlin`, or `prusa` (an MK3S on Prusa firmware, which
    /// PrusaLink accepts).
    #[arg(long, default_value = "marlin")]
    firmware: Personality,
    /// Answer with ADVANCED_OK (`ok N P B`).
    #[arg(long)]
    advanced_ok: bool,
    /// Seed of the fault plan.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Probability of a corrupted byte per received line.
    #[arg(long, default_value_t = 0.0)]
    corrupt: f64,
    /// Probability of a lost `ok` per command.
    #[arg(long, default_value_t = 0.0)]
    lose_ok: f64,
    /// Faults of the kind OctoPrint's virtual printer schedules (resend, lost `ok`, missing
    /// line number, checksum mismatch at lines 100, 105, 110, 115), repeated every N lines.
    #[arg(long, value_name = "N")]
    octoprint_faults: Option<u64>,
    /// Write the record of executed commands (JSON lines) here on exit and every second.
    #[arg(long)]
    record: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let mut config = if args.fast {
        PrinterConfig::fast()
    } else {
        PrinterConfig::default()
    };
    if let Some(ms) = args.latency_ms {
        config.reply_latency = Duration::from_secs_f64(ms.max(0.0) / 1000.0);
    }
    if let Some(baud) = args.baud {
        config.baud = (baud > 0).then_some(baud);
    }
    config.advanced_ok = args.advanced_ok;
    config.personality = args.firmware;
    let base = match args.octoprint_faults {
        Some(period) => FaultPlan::octoprint_like(period),
        None => FaultPlan::default(),
    };
    config.faults = FaultPlan {
        seed: args.seed,
        corrupt_line: args.corrupt,
        lose_ok: args.lose_ok,
        ..base
    };
    let printer = VirtualPrinter::spawn_pty(config)?;
    let path = printer
        .slave_path()
        .map(|p| p.to_path_buf())
        .ok_or("no pseudo-terminal path")?;
    if let Some(link) = &args.link {
        let _ = std::fs::remove_file(link);
        std::os::unix::fs::symlink(&path, link)?;
    }
    println!("{}", path.display());
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    // SIGTERM (what service managers and test harnesses send) ends it as cleanly as Ctrl-C.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            _ = tick.tick() => {
                if let Some(record) = &args.record {
                    printer.dump_record(record)?;
                }
            }
        }
    }
    if let Some(record) = &args.record {
        printer.dump_record(record)?;
    }
    if let Some(link) = &args.link {
        let _ = std::fs::remove_file(link);
    }
    Ok(())
}
