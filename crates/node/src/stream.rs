//! `fab-node stream`: sends one G-code file to a printer on a serial port, showing progress,
//! layer and temperatures (or JSON events), cancelling cleanly on Ctrl-C (a second Ctrl-C
//! sends an emergency stop).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use firmware_bridge::serial::{DtrPolicy, open_serial};
use firmware_bridge::{BridgeConfig, Event, GcodeJob, Outcome, Temperatures, connect};
use indicatif::{ProgressBar, ProgressStyle};

/// Arguments of `fab-node stream`.
#[derive(Debug, Args)]
pub struct StreamArgs {
    /// Serial port of the printer (e.g. /dev/ttyUSB0, or a virtual printer's pty).
    #[arg(long)]
    pub port: String,
    /// Baud rate.
    #[arg(long, default_value_t = 250_000)]
    pub baud: u32,
    /// Print events as JSON lines on stdout instead of a progress bar.
    #[arg(long)]
    pub json: bool,
    /// Keep one line in flight even if the firmware reports ADVANCED_OK.
    #[arg(long)]
    pub no_pipelining: bool,
    /// Reset the board with a DTR pulse before connecting.
    #[arg(long)]
    pub reset: bool,
    /// Seconds to wait for the printer to answer.
    #[arg(long, default_value_t = 10)]
    pub detect_timeout_s: u64,
    /// The G-code file.
    pub file: PathBuf,
}

/// Runs the command; the exit code says how the job ended (0 completed, 1 failed,
/// 130 cancelled).
pub async fn run(args: StreamArgs) -> anyhow::Result<ExitCode> {
    // Validate the whole file before touching the printer.
    let job = GcodeJob::open(&args.file)
        .await
        .with_context(|| format!("checking {}", args.file.display()))?;
    let dtr = if args.reset {
        DtrPolicy::ResetPulse
    } else {
        DtrPolicy::Assert
    };
    let port = open_serial(&args.port, args.baud, dtr).await?;
    let config = BridgeConfig {
        pipelining: !args.no_pipelining,
        detect_timeout: Duration::from_secs(args.detect_timeout_s),
        ..BridgeConfig::default()
    };
    let (printer, mut events) = connect(port, config).await?;
    let summary = job.summary().clone();
    let mut view = View::new(args.json, summary.commands);
    view.note(&format!(
        "connected to {} on {}; {} lines, {} layers",
        printer
            .firmware()
            .name
            .as_deref()
            .unwrap_or("unknown firmware"),
        args.port,
        summary.commands,
        summary.layers
    ));
    printer.start(job).await?;

    let mut interrupts = 0u32;
    loop {
        tokio::select! {
            event = events.recv() => {
                let Some(event) = event else {
                    view.finish("connection closed");
                    return Ok(ExitCode::from(1));
                };
                view.show(&event);
                if let Event::Finished { outcome, reason, stats } = &event {
                    view.finish(&format!(
                        "{outcome:?}{} — {} lines, {} resends, {} timeouts, {:.1} s",
                        reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default(),
                        stats.lines, stats.resends, stats.timeouts, stats.elapsed_s
                    ));
                    return Ok(match outcome {
                        Outcome::Completed => ExitCode::SUCCESS,
                        Outcome::Cancelled => ExitCode::from(130),
                        Outcome::Failed => ExitCode::from(1),
                    });
                }
            }
            _ = tokio::signal::ctrl_c() => {
                interrupts += 1;
                if interrupts == 1 {
                    view.note("cancelling (Ctrl-C again for an emergency stop)");
                    if let Err(e) = printer.cancel().await {
                        view.note(&format!("cancel: {e}"));
                    }
                } else {
                    view.note("emergency stop");
                    printer.emergency_stop().await?;
                }
            }
        }
    }
}

/// Progress bar or JSON lines.
struct View {
    bar: Option<ProgressBar>,
    layer: String,
    temperatures: String,
    remaining: String,
}

impl View {
    fn new(json: bool, total: u64) -> Self {
        if json {
            return Self {
                bar: None,
                layer: String::new(),
                temperatures: String::new(),
                remaining: String::new(),
            };
        }
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} lines {percent}% {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Self {
            bar: Some(bar),
            layer: String::new(),
            temperatures: String::new(),
            remaining: String::new(),
        }
    }

    fn note(&self, text: &str) {
        match &self.bar {
            // A hidden bar (stderr not a terminal) would swallow the line.
            Some(bar) if bar.is_hidden() => eprintln!("{text}"),
            Some(bar) => bar.println(text),
            None => println!("{}", serde_json::json!({ "event": "note", "text": text })),
        }
    }

    fn show(&mut self, event: &Event) {
        let Some(bar) = &self.bar else {
            // Events are plain data; serialising cannot fail.
            println!("{}", serde_json::to_string(event).unwrap_or_default());
            return;
        };
        match event {
            Event::Progress(p) => {
                bar.set_position(p.lines_sent);
                self.remaining = p
                    .remaining_s
                    .map(|s| format!("{}m{:02}s left", (s / 60.0) as u64, (s % 60.0) as u64))
                    .unwrap_or_default();
            }
            Event::Layer { number, total, z } => {
                self.layer = format!(
                    "layer {number}/{}{}",
                    total.map_or("?".into(), |t| t.to_string()),
                    z.map(|z| format!(" z={z}")).unwrap_or_default()
                );
            }
            Event::Temperatures(t) => self.temperatures = temperature_line(t),
            Event::Error { class, message } => self.note(&format!("{class:?}: {message}")),
            Event::HostAction(a) => self.note(&format!("printer action: {a:?}")),
            Event::State { state } => self.note(&format!("state: {state:?}")),
            Event::Firmware(_) | Event::Finished { .. } => {}
        }
        bar.set_message(format!(
            "{}  {}  {}",
            self.remaining, self.layer, self.temperatures
        ));
    }

    fn finish(&self, text: &str) {
        match &self.bar {
            Some(bar) => {
                bar.finish();
                self.note(text);
            }
            None => self.note(text),
        }
    }
}

fn temperature_line(t: &Temperatures) -> String {
    t.sensors
        .iter()
        .map(|s| match s.target {
            Some(target) => format!("{} {:.1}/{:.0}°C", s.name, s.actual, target),
            None => format!("{} {:.1}°C", s.name, s.actual),
        })
        .collect::<Vec<_>>()
        .join("  ")
}
