//! End-to-end tests of the sender against the virtual printer over real pseudo-terminals:
//! exactly-once delivery on a noisy link, reset, cancel, pause, fatal errors, emergency stop,
//! host actions, silence, and the real slicer output in `tests/data/gcode/`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use firmware_bridge::serial::{DtrPolicy, open_serial};
use firmware_bridge::{
    BridgeConfig, Event, GcodeJob, HostAction, Outcome, PrinterHandle, PrinterState, connect, gcode,
};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::timeout;
use virtual_printer::{Executed, Fault, FaultPlan, PrinterConfig, VirtualPrinter};

/// Upper bound for any single test phase; a hang fails instead of blocking CI.
const PHASE_LIMIT: Duration = Duration::from_secs(60);

fn test_config() -> BridgeConfig {
    BridgeConfig {
        reply_timeout: Duration::from_millis(60),
        reply_timeout_busy: Duration::from_millis(300),
        long_command_timeout: Duration::from_secs(2),
        resend_ok_grace: Duration::from_millis(50),
        detect_timeout: Duration::from_secs(5),
        hello_interval: Duration::from_millis(200),
        capability_timeout: Duration::from_secs(1),
        ..BridgeConfig::default()
    }
}

struct Rig {
    printer: VirtualPrinter,
    handle: PrinterHandle,
    events: UnboundedReceiver<Event>,
    _dir: tempfile::TempDir,
    dir: PathBuf,
}

async fn rig(printer_cfg: PrinterConfig, bridge_cfg: BridgeConfig) -> Rig {
    let printer = VirtualPrinter::spawn_pty(printer_cfg).unwrap();
    let path = printer.slave_path().unwrap().to_str().unwrap().to_string();
    let port = open_serial(&path, 250_000, DtrPolicy::Assert)
        .await
        .unwrap();
    let (handle, events) = timeout(PHASE_LIMIT, connect(port, bridge_cfg))
        .await
        .unwrap()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    Rig {
        printer,
        handle,
        events,
        dir: dir.path().to_path_buf(),
        _dir: dir,
    }
}

/// A synthetic print: heat, home, then `layers` layers of `moves` extrusion moves each.
fn synthetic_gcode(layers: u32, moves: u32) -> String {
    let mut g = String::from(
        "; synthetic test print\n;TIME:600\nM140 S60\nM104 S200\nG28 ; home\nM190 S60\nM109 S200\nG90\nM82\nG92 E0\n",
    );
    let mut e = 0.0f64;
    for layer in 0..layers {
        g.push_str(&format!(
            ";LAYER:{layer}\nG1 Z{:.2} F600\n",
            0.2 * f64::from(layer + 1)
        ));
        for m in 0..moves {
            e += 0.0321;
            let x = 50.0 + f64::from((m * 7 + layer) % 100);
            let y = 50.0 + f64::from((m * 13 + layer * 3) % 100);
            g.push_str(&format!("G1 X{x:.3} Y{y:.3} E{e:.5} ; move {m}\n"));
        }
    }
    g.push_str("M104 S0\nM140 S0\nM84\n");
    g
}

/// The commands a file holds, in order, as the printer should execute them. Without M105: the
/// sender adds numbered M105 probes of its own (its quick recovery from lost acknowledgements),
/// so status queries are left out of the comparison on both sides.
fn expected_commands(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| gcode::parse_marker(l).is_none())
        .filter_map(gcode::clean_line)
        .filter(|c| *c != "M105")
        .map(str::to_string)
        .collect()
}

/// The numbered commands the printer executed (job and end G-code), in order, without status
/// queries (see [`expected_commands`]).
fn executed_numbered(record: &[Executed]) -> Vec<String> {
    record
        .iter()
        .filter(|e| e.line.is_some() && e.command != "M105")
        .map(|e| e.command.clone())
        .collect()
}

fn write_job(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Waits for the job's end, returning every event seen on the way.
async fn until_finished(events: &mut UnboundedReceiver<Event>) -> (Vec<Event>, Outcome, String) {
    let mut seen = Vec::new();
    let result = timeout(PHASE_LIMIT, async {
        while let Some(ev) = events.recv().await {
            if let Event::Finished {
                outcome, reason, ..
            } = &ev
            {
                let r = (*outcome, reason.clone().unwrap_or_default());
                seen.push(ev);
                return r;
            }
            seen.push(ev);
        }
        panic!("event stream ended before the job finished");
    })
    .await
    .expect("job did not finish in time");
    (seen, result.0, result.1)
}

async fn until_state(events: &mut UnboundedReceiver<Event>, want: PrinterState) {
    timeout(PHASE_LIMIT, async {
        while let Some(ev) = events.recv().await {
            if let Event::State { state } = &ev
                && *state == want
            {
                return;
            }
        }
        panic!("event stream ended before state {want:?}");
    })
    .await
    .expect("state not reached in time");
}

async fn until_lines_sent(events: &mut UnboundedReceiver<Event>, lines: u64) {
    timeout(PHASE_LIMIT, async {
        while let Some(ev) = events.recv().await {
            if let Event::Progress(p) = &ev
                && p.lines_sent >= lines
            {
                return;
            }
        }
        panic!("event stream ended early");
    })
    .await
    .expect("progress not reached in time");
}

async fn noisy_link_exactly_once(advanced_ok: bool, seed: u64, latency: Duration, layers: u32) {
    let printer_cfg = PrinterConfig {
        advanced_ok,
        reply_latency: latency,
        faults: FaultPlan {
            seed,
            corrupt_line: 0.01,
            lose_ok: 0.01,
            ..FaultPlan::default()
        },
        ..PrinterConfig::fast()
    };
    let mut rig = rig(printer_cfg, test_config()).await;
    let text = synthetic_gcode(layers, 150);
    let path = write_job(&rig.dir, "noisy.gcode", &text);
    let job = GcodeJob::open(&path).await.unwrap();
    rig.handle.start(job).await.unwrap();
    let (events, outcome, reason) = until_finished(&mut rig.events).await;
    assert_eq!(outcome, Outcome::Completed, "{reason}");

    let expected = expected_commands(&text);
    let executed = executed_numbered(&rig.printer.record());
    assert_eq!(executed.len(), expected.len(), "each line executed once");
    assert!(executed == expected, "executed in file order");

    // The faults really happened and were recovered from.
    let stats = rig.printer.stats();
    assert!(stats.corrupted > 0 && stats.lost_oks > 0, "{stats:?}");
    let Some(Event::Finished { stats: job, .. }) = events.last() else {
        unreachable!()
    };
    assert!(job.resends > 0, "{job:?}");
    if !advanced_ok {
        // One in flight: a lost `ok` is only noticed by the quick probe. With ADVANCED_OK the
        // next `ok N<n>` acknowledges the lines before it as well.
        assert!(job.quick_probes > 0, "{job:?}");
    }
    assert_eq!(job.lines, expected.len() as u64);
    // Layers were recognised from the slicer markers.
    let layer_events = events
        .iter()
        .filter(|e| matches!(e, Event::Layer { .. }))
        .count();
    assert_eq!(layer_events, layers as usize);
}

#[tokio::test]
async fn noisy_link_one_in_flight_executes_every_line_once_in_order() {
    noisy_link_exactly_once(false, 7, Duration::ZERO, 20).await;
}

#[tokio::test]
async fn noisy_link_advanced_ok_window_executes_every_line_once_in_order() {
    noisy_link_exactly_once(true, 11, Duration::ZERO, 20).await;
}

/// With a reply latency, acknowledgements of queued lines cross resend requests on the wire.
#[tokio::test]
async fn noisy_link_advanced_ok_with_latency_executes_every_line_once_in_order() {
    noisy_link_exactly_once(true, 13, Duration::from_millis(2), 8).await;
}

/// Heavier noise on a simulated 250 000 baud wire with latency: the firmware's flush cuts lines
/// in half and every refused line draws duplicate requests from the lines behind it.
#[tokio::test]
async fn heavy_noise_with_pipelining_still_executes_every_line_once_in_order() {
    let printer_cfg = PrinterConfig {
        advanced_ok: true,
        reply_latency: Duration::from_millis(2),
        baud: Some(250_000),
        faults: FaultPlan {
            seed: 202,
            corrupt_line: 0.05,
            lose_ok: 0.03,
            resend: 0.02,
            busy: 0.01,
            busy_duration: Duration::from_millis(100),
            ..FaultPlan::default()
        },
        ..PrinterConfig::fast()
    };
    let mut rig = rig(printer_cfg, test_config()).await;
    let text = synthetic_gcode(3, 150);
    let path = write_job(&rig.dir, "heavy.gcode", &text);
    rig.handle
        .start(GcodeJob::open(&path).await.unwrap())
        .await
        .unwrap();
    let (events, outcome, reason) = until_finished(&mut rig.events).await;
    assert_eq!(outcome, Outcome::Completed, "{reason}");
    assert!(executed_numbered(&rig.printer.record()) == expected_commands(&text));
    let Some(Event::Finished { stats, .. }) = events.last() else {
        unreachable!()
    };
    assert!(
        stats.resends > 5 && stats.duplicate_resends > 0,
        "{stats:?}"
    );
}

/// OctoPrint's virtual printer's kind of fault schedule (a resend, a lost `ok`, a line answered
/// only by "No Line Number with checksum", a checksum mismatch), every 300 lines, with the
/// default 30 s reply timeout: only the quick probes can recover the silent cases within the
/// phase limit, and no line may be lost or repeated on the way.
async fn scheduled_faults_exactly_once(advanced_ok: bool) {
    let printer_cfg = PrinterConfig {
        advanced_ok,
        faults: FaultPlan::octoprint_like(300),
        ..PrinterConfig::fast()
    };
    let bridge_cfg = BridgeConfig {
        reply_timeout: Duration::from_secs(30),
        ..test_config()
    };
    let mut rig = rig(printer_cfg, bridge_cfg).await;
    let text = synthetic_gcode(10, 150);
    let path = write_job(&rig.dir, "scheduled.gcode", &text);
    rig.handle
        .start(GcodeJob::open(&path).await.unwrap())
        .await
        .unwrap();
    let (events, outcome, reason) = until_finished(&mut rig.events).await;
    assert_eq!(outcome, Outcome::Completed, "{reason}");
    let expected = expected_commands(&text);
    let executed = executed_numbered(&rig.printer.record());
    assert_eq!(executed.len(), expected.len(), "each line executed once");
    assert!(executed == expected, "executed in file order");

    // Every scheduled fault fired: 4 per 300 lines from line 100 (the job and end G-code take
    // ~1,520 numbered lines with the probes, so at least 5 full sets).
    let stats = rig.printer.stats();
    assert!(stats.scheduled_faults >= 20, "{stats:?}");
    assert!(stats.lost_oks >= 5, "{stats:?}");
    let Some(Event::Finished { stats: job, .. }) = events.last() else {
        unreachable!()
    };
    assert_eq!(job.timeouts, 0, "no reply timeout was needed: {job:?}");
    assert!(job.resends >= 10, "{job:?}");
    if !advanced_ok {
        // A lost `ok` and a dropped line each need one probe.
        assert!(job.quick_probes >= 10, "{job:?}");
    }
}

#[tokio::test]
async fn scheduled_faults_one_in_flight_recover_by_probe_exactly_once() {
    scheduled_faults_exactly_once(false).await;
}

#[tokio::test]
async fn scheduled_faults_advanced_ok_recover_exactly_once() {
    scheduled_faults_exactly_once(true).await;
}

#[tokio::test]
async fn reset_mid_print_fails_the_job_and_reconnects() {
    let printer_cfg = PrinterConfig {
        faults: FaultPlan {
            reset_after_line: Some(300),
            ..FaultPlan::default()
        },
        ..PrinterConfig::fast()
    };
    let mut rig = rig(printer_cfg, test_config()).await;
    let path = write_job(&rig.dir, "reset.gcode", &synthetic_gcode(5, 200));
    rig.handle
        .start(GcodeJob::open(&path).await.unwrap())
        .await
        .unwrap();
    let (_, outcome, reason) = until_finished(&mut rig.events).await;
    assert_eq!(outcome, Outcome::Failed);
    assert!(reason.contains("reset"), "{reason}");
    // The bridge greets the rebooted firmware again and is usable.
    until_state(&mut rig.events, PrinterState::Operational).await;
    let executed = rig.printer.record();
    let last_numbered = executed.iter().filter_map(|e| e.line).max().unwrap();
    assert_eq!(last_numbered, 300, "nothing after the reset executed");
    let path = write_job(&rig.dir, "after.gcode", "G28\nG1 X10 Y10\n");
    rig.handle
        .start(GcodeJob::open(&path).await.unwrap())
        .await
        .unwrap();
    let (_, outcome, _) = until_finished(&mut rig.events).await;
    assert_eq!(outcome, Outcome::Completed);
    let tail: Vec<String> = executed_numbered(&rig.printer.record())
        .into_iter()
        .rev()
        .take(2)
        .collect();
    assert_eq!(tail, ["G1 X10 Y10", "G28"]);
}

#[tokio::test]
async fn cancel_mid_stream_stops_and_runs_end_gcode() {
    let mut rig = rig(PrinterConfig::fast(), test_config()).await;
    let text = synthetic_gcode(10, 300);
    let path = write_job(&rig.dir, "cancel.gcode", &text);
    rig.handle
        .start(GcodeJob::open(&path).await.unwrap())
        .await
        .unwrap();
    until_lines_sent(&mut rig.events, 500).await;
    rig.handle.cancel().await.unwrap();
    let (_, outcome, _) = until_finished(&mut rig.events).await;
    assert_eq!(outcome, Outcome::Cancelled);

    let executed = executed_numbered(&rig.printer.record());
    let expected = expected_commands(&text);
    let end = BridgeConfig::default().end_gcode;
    let (job_part, end_part) = executed.split_at(executed.len() - end.len());
    assert_eq!(end_part, end.as_slice(), "end G-code ran last");
    assert!(job_part.len() >= 500 && job_part.len() < expected.len() / 2);
    assert_eq!(job_part, &expected[..job_part.len()], "a prefix of the job");
}

#[tokio::test]
async fn cancel_breaks_a_heating_wait_with_m108() {
    // Real-time heating: M109 S200 would take over a minute.
    let printer_cfg = PrinterConfig {
        time_scale: 1.0,
        ..PrinterConfig::fast()
    };
    let mut rig = rig(printer_cfg, test_config()).await;
    let path = write_job(
        &rig.dir,
        "heat.gcode",
        "M104 S200\nM109 S200\nG1 X10\nG1 X20\n",
    );
    rig.handle
        .start(GcodeJob::open(&path).await.unwrap())
        .await
        .unwrap();
    until_lines_sent(&mut rig.events, 2).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    rig.handle.cancel().await.unwrap();
    let (_, outcome, _) = until_finished(&mut rig.events).await;
    assert_eq!(outcome, Outcome::Cancelled);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let executed = executed_numbered(&rig.printer.record());
    let end = BridgeConfig::default().end_gcode;
    assert_eq!(&executed[..2], ["M104 S200", "M109 S200"]);
    assert_eq!(
        &executed[2..],
        end.as_slice(),
        "no job line after the cancel"
    );
}

#[tokio::test]
async fn pause_stops_at_a_safe_point_and_resume_completes() {
    let bridge_cfg = BridgeConfig {
        pause_gcode: vec!["G91".into(), "G1 Z5".into(), "G90".into()],
        resume_gcode: vec!["G91".into(), "G1 Z-5".into(), "G90".into()],
        ..test_config()
    };
    let mut rig = rig(PrinterConfig::fast(), bridge_cfg).await;
    let text = synthetic_gcode(6, 200);
    let path = write_job(&rig.dir, "pause.gcode", &text);
    rig.handle
        .start(GcodeJob::open(&path).await.unwrap())
        .await
        .unwrap();
    until_lines_sent(&mut rig.events, 300).await;
    rig.handle.pause().await.unwrap();
    until_state(&mut rig.events, PrinterState::Paused).await;
    let at_pause = rig.printer.record().len();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        rig.printer.record().len(),
        at_pause,
        "nothing sent while paused"
    );
    let paused = executed_numbered(&rig.printer.record());
    assert_eq!(&paused[paused.len() - 3..], ["G91", "G1 Z5", "G90"]);

    rig.handle.resume().await.unwrap();
    let (_, outcome, _) = until_finished(&mut rig.events).await;
    assert_eq!(outcome, Outcome::Completed);
    let mut executed = executed_numbered(&rig.printer.record());
    // Take out the park and unpark moves; the rest is the job, once, in order.
    let park_at = paused.len() - 3;
    executed.drain(park_at..park_at + 6);
    let expected = expected_commands(&text);
    if executed != expected {
        let i = executed.iter().zip(&expected).position(|(a, b)| a != b);
        panic!(
            "differs at {i:?}: park_at {park_at}, executed {} expected {}: {:?}",
            executed.len(),
            expected.len(),
            i.map(|i| (
                &executed[i.saturating_sub(3)..i + 4],
                &expected[i.saturating_sub(3)..i + 4]
            ))
        );
    }
}

#[tokio::test]
async fn fatal_error_stops_sending_at_once() {
    let printer_cfg = PrinterConfig {
        faults: FaultPlan {
            fatal_after_line: Some(250),
            ..FaultPlan::default()
        },
        ..PrinterConfig::fast()
    };
    let mut rig = rig(printer_cfg, test_config()).await;
    let path = write_job(&rig.dir, "fatal.gcode", &synthetic_gcode(5, 200));
    rig.handle
        .start(GcodeJob::open(&path).await.unwrap())
        .await
        .unwrap();
    let (events, outcome, reason) = until_finished(&mut rig.events).await;
    assert_eq!(outcome, Outcome::Failed);
    assert!(
        reason.contains("MAXTEMP") || reason.contains("halted"),
        "{reason}"
    );
    assert!(events.iter().any(|e| matches!(
        e,
        Event::Error {
            class: firmware_bridge::ErrorClass::Fatal,
            ..
        }
    )));
    until_state(&mut rig.events, PrinterState::Halted).await;
    // With one line in flight, at most the line sent on the last `ok` crossed the error.
    let Some(Event::Progress(p)) = events
        .iter()
        .rev()
        .find(|e| matches!(e, Event::Progress(_)))
    else {
        panic!("no progress event")
    };
    let sent_after = p.lines_sent.saturating_sub(250);
    assert!(
        sent_after <= 1,
        "sent {sent_after} lines after the fatal error"
    );
    assert!(
        rig.handle.command("G28").await.is_err(),
        "halted: no commands"
    );
}

#[tokio::test]
async fn emergency_stop_halts_printer() {
    let mut rig = rig(PrinterConfig::fast(), test_config()).await;
    let path = write_job(&rig.dir, "estop.gcode", &synthetic_gcode(10, 300));
    rig.handle
        .start(GcodeJob::open(&path).await.unwrap())
        .await
        .unwrap();
    until_lines_sent(&mut rig.events, 200).await;
    rig.handle.emergency_stop().await.unwrap();
    let (_, outcome, reason) = until_finished(&mut rig.events).await;
    assert_eq!(outcome, Outcome::Failed);
    assert!(reason.contains("M112"), "{reason}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let ((_, hot_target), (_, bed_target)) = rig.printer.temperatures();
    assert_eq!(
        (hot_target, bed_target),
        (0.0, 0.0),
        "killed firmware turns heaters off"
    );
    let n = rig.printer.record().len();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(rig.printer.record().len(), n, "nothing runs after M112");
}

#[tokio::test]
async fn host_action_pause_and_resume_from_printer() {
    let mut rig = rig(PrinterConfig::fast(), test_config()).await;
    let text = synthetic_gcode(6, 300);
    let path = write_job(&rig.dir, "action.gcode", &text);
    rig.handle
        .start(GcodeJob::open(&path).await.unwrap())
        .await
        .unwrap();
    until_lines_sent(&mut rig.events, 200).await;
    rig.printer.inject(Fault::HostAction("pause".into()));
    until_state(&mut rig.events, PrinterState::Paused).await;
    rig.printer.inject(Fault::HostAction("resume".into()));
    let (events, outcome, _) = until_finished(&mut rig.events).await;
    assert_eq!(outcome, Outcome::Completed);
    assert!(events.contains(&Event::HostAction(HostAction::Resume)));
    assert!(executed_numbered(&rig.printer.record()) == expected_commands(&text));
}

#[tokio::test]
async fn silent_printer_fails_the_job() {
    let printer_cfg = PrinterConfig {
        faults: FaultPlan {
            awol_after_line: Some(100),
            ..FaultPlan::default()
        },
        ..PrinterConfig::fast()
    };
    let mut rig = rig(printer_cfg, test_config()).await;
    let path = write_job(&rig.dir, "awol.gcode", &synthetic_gcode(3, 100));
    rig.handle
        .start(GcodeJob::open(&path).await.unwrap())
        .await
        .unwrap();
    let (_, outcome, reason) = until_finished(&mut rig.events).await;
    assert_eq!(outcome, Outcome::Failed);
    assert!(reason.contains("silent"), "{reason}");
}

#[tokio::test]
async fn busy_resend_without_ok_and_temperatures() {
    // A reply timeout with margin for a loaded machine, and a busy period well beyond it.
    let bridge_cfg = BridgeConfig {
        reply_timeout: Duration::from_millis(500),
        ..test_config()
    };
    let mut rig = rig(PrinterConfig::fast(), bridge_cfg).await;
    let text = synthetic_gcode(2, 100);
    let path = write_job(&rig.dir, "misc.gcode", &text);
    // A busy period longer than the reply timeout must not time out; a resend request
    // without its `ok` must not stall or repeat a line.
    rig.printer
        .inject(Fault::BusyNext(Duration::from_millis(500)));
    rig.printer.inject(Fault::ResendWithoutOkNext);
    rig.handle
        .start(GcodeJob::open(&path).await.unwrap())
        .await
        .unwrap();
    let (events, outcome, reason) = until_finished(&mut rig.events).await;
    assert_eq!(outcome, Outcome::Completed, "{reason}");
    assert!(executed_numbered(&rig.printer.record()) == expected_commands(&text));
    let Some(Event::Finished { stats, .. }) = events.last() else {
        unreachable!()
    };
    assert_eq!(stats.timeouts, 0, "busy keepalives kept the link alive");
    assert_eq!(stats.resends, 1);
    // Autoreport delivered temperatures with the targets the job set.
    let hot_targets: Vec<f32> = events
        .iter()
        .filter_map(|e| match e {
            Event::Temperatures(t) => t.get("T").and_then(|s| s.target),
            _ => None,
        })
        .collect();
    assert!(hot_targets.contains(&200.0), "{hot_targets:?}");
}

#[tokio::test]
async fn polls_temperatures_when_firmware_cannot_autoreport() {
    // Moves that take 2 ms each keep the job going for several poll intervals.
    let printer_cfg = PrinterConfig {
        autoreport_temp: false,
        move_time: Duration::from_millis(2),
        ..PrinterConfig::fast()
    };
    let bridge_cfg = BridgeConfig {
        temperature_poll: Duration::from_millis(50),
        temperature_poll_heating: Duration::from_millis(20),
        ..test_config()
    };
    let mut rig = rig(printer_cfg, bridge_cfg).await;
    let text = synthetic_gcode(1, 300);
    let path = write_job(&rig.dir, "poll.gcode", &text);
    rig.handle
        .start(GcodeJob::open(&path).await.unwrap())
        .await
        .unwrap();
    let (events, outcome, reason) = until_finished(&mut rig.events).await;
    assert_eq!(outcome, Outcome::Completed, "{reason}");
    let polls = rig
        .printer
        .record()
        .iter()
        .filter(|e| e.line.is_none() && e.command == "M105")
        .count();
    let reports = events
        .iter()
        .filter(|e| matches!(e, Event::Temperatures(_)))
        .count();
    assert!(polls >= 3, "{polls} polls");
    assert!(reports >= polls, "{reports} reports for {polls} polls");
    // Polls are unnumbered: the numbered record is exactly the job.
    assert!(executed_numbered(&rig.printer.record()) == expected_commands(&text));
}

/// Streams the real slicer output end to end (PrusaSlicer and CuraEngine, gzipped).
#[tokio::test]
async fn reference_gcode_streams_end_to_end() {
    let dir = fabrouter_testkit::data("gcode");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".gcode.gz"))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no reference G-code in {}",
        dir.display()
    );
    // A printer with deep buffers (like a Klipper host or a Marlin built with BUFSIZE 32) so
    // 170k lines stream in seconds; the window and byte limits still apply.
    let printer_cfg = PrinterConfig {
        advanced_ok: true,
        command_buffer: 32,
        rx_buffer_bytes: 2048,
        ..PrinterConfig::fast()
    };
    let bridge_cfg = BridgeConfig {
        max_window: 32,
        rx_buffer_bytes: 2000,
        ..test_config()
    };
    let mut rig = rig(printer_cfg, bridge_cfg).await;
    for file in files {
        let started = std::time::Instant::now();
        let mut text = String::new();
        flate2::read::GzDecoder::new(std::fs::File::open(&file).unwrap())
            .read_to_string(&mut text)
            .unwrap();
        let path = write_job(&rig.dir, "ref.gcode", &text);
        let job = GcodeJob::open(&path).await.unwrap();
        let summary = job.summary().clone();
        let before = rig.printer.record().len();
        rig.handle.start(job).await.unwrap();
        let (events, outcome, reason) = until_finished(&mut rig.events).await;
        assert_eq!(outcome, Outcome::Completed, "{}: {reason}", file.display());
        let record = rig.printer.record();
        let executed = executed_numbered(&record[before..]);
        let expected = expected_commands(&text);
        let all_commands = text
            .lines()
            .filter(|l| gcode::parse_marker(l).is_none())
            .filter_map(gcode::clean_line)
            .count();
        assert_eq!(summary.commands, all_commands as u64);
        assert!(executed == expected, "{}: executed = file", file.display());
        let layers = events
            .iter()
            .filter(|e| matches!(e, Event::Layer { .. }))
            .count();
        assert_eq!(layers as u32, summary.layers, "{}", file.display());
        // Remaining time comes from the slicer's estimate, shrinking as bytes go out.
        let remaining: Vec<f64> = events
            .iter()
            .filter_map(|e| match e {
                Event::Progress(p) => p.remaining_s,
                _ => None,
            })
            .collect();
        let estimate = summary.slicer_estimate.unwrap().as_secs_f64();
        assert!(remaining.len() >= 2 && remaining[0] <= estimate);
        assert!(remaining.last().unwrap() < &remaining[0]);
        assert!(summary.slicer_estimate.is_some(), "{}", file.display());
        eprintln!(
            "{}: {} lines in {:.1} s",
            file.display(),
            summary.commands,
            started.elapsed().as_secs_f64()
        );
    }
}
