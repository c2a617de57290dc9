//! The sender against a scripted firmware over an in-memory duplex stream (the sender is
//! generic over any byte stream): resend forms and edge cases that the virtual printer does
//! not produce on its own.

use std::time::Duration;

use firmware_bridge::{BridgeConfig, Event, GcodeJob, JobStats, Outcome, connect};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream};
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(20);

/// What the scripted firmware answers instead of the normal reply when it receives numbered
/// line `n` for the `copy`-th time (1-based), its last accepted line being `last`.
type Script = fn(n: u64, last: u64, copy: u32) -> Option<String>;

/// A minimal Marlin: checks line numbers (not checksums), answers `ok`, lets `script` inject
/// replies, and returns the line numbers of the commands it accepted, in order (numbered M105
/// probes left out).
async fn firmware(io: DuplexStream, script: Script) -> Vec<u64> {
    let (read, mut write) = tokio::io::split(io);
    let mut lines = BufReader::new(read).lines();
    let mut last = 0u64;
    let mut accepted = Vec::new();
    let mut copies = std::collections::HashMap::<u64, u32>::new();
    while let Ok(Some(line)) = lines.next_line().await {
        let reply = if line == "M115" {
            "FIRMWARE_NAME:Scripted PROTOCOL_VERSION:1.0\nCap:AUTOREPORT_TEMP:0\nok\n".to_string()
        } else if line.starts_with("M110") {
            last = 0;
            "ok\n".to_string()
        } else if let Some(rest) = line.strip_prefix('N') {
            let n: u64 = rest
                .split(' ')
                .next()
                .and_then(|d| d.parse().ok())
                .unwrap_or(0);
            let copy = copies.entry(n).or_default();
            *copy += 1;
            let injected = script(n, last, *copy);
            match injected {
                // "accept:" executes the line but replaces its `ok` with the text.
                Some(text) if text.starts_with("accept:") && n == last + 1 => {
                    last = n;
                    accepted.push(n);
                    text["accept:".len()..].to_string()
                }
                Some(text) => text,
                // Marlin answers M105 with its temperatures on the `ok`, numbered or not.
                None if n == last + 1 && line.contains(" M105*") => {
                    last = n;
                    "ok T:20.0 /0.0 B:20.0 /0.0 @:0 B@:0\n".to_string()
                }
                None if n == last + 1 => {
                    last = n;
                    accepted.push(n);
                    "ok\n".to_string()
                }
                None => format!(
                    "Error:Line Number is not Last Line Number+1, Last Line: {last}\nResend: {}\nok\n",
                    last + 1
                ),
            }
        } else if line.starts_with("M105") {
            "ok T:20.0 /0.0 B:20.0 /0.0 @:0 B@:0\n".to_string()
        } else {
            "ok\n".to_string()
        };
        if write.write_all(reply.as_bytes()).await.is_err() {
            break;
        }
    }
    accepted
}

fn config() -> BridgeConfig {
    config_with(BridgeConfig::default())
}

fn config_with(base: BridgeConfig) -> BridgeConfig {
    BridgeConfig {
        reply_timeout: Duration::from_millis(200),
        detect_timeout: Duration::from_secs(2),
        capability_timeout: Duration::from_millis(500),
        resend_ok_grace: Duration::from_millis(50),
        ..base
    }
}

async fn print(lines: usize, script: Script) -> (Outcome, String, Vec<u64>, JobStats) {
    let text: String = (0..lines).map(|i| format!("G1 X{i}\n")).collect();
    let (outcome, reason, accepted, stats, _) = print_text(&text, config(), script).await;
    (outcome, reason, accepted, stats)
}

async fn print_text(
    text: &str,
    config: BridgeConfig,
    script: Script,
) -> (Outcome, String, Vec<u64>, JobStats, Vec<Event>) {
    let (host_io, printer_io) = tokio::io::duplex(4096);
    let fw = tokio::spawn(firmware(printer_io, script));
    let (handle, mut events) = timeout(LIMIT, connect(host_io, config))
        .await
        .unwrap()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("job.gcode");
    std::fs::write(&path, text).unwrap();
    handle
        .start(GcodeJob::open(&path).await.unwrap())
        .await
        .unwrap();
    let mut seen = Vec::new();
    let (outcome, reason, stats) = timeout(LIMIT, async {
        loop {
            let Some(event) = events.recv().await else {
                panic!("event stream ended");
            };
            if let Event::Finished {
                outcome,
                reason,
                stats,
            } = &event
            {
                return (*outcome, reason.clone().unwrap_or_default(), stats.clone());
            }
            seen.push(event);
        }
    })
    .await
    .unwrap();
    handle.disconnect().await.unwrap();
    drop(handle);
    drop(events);
    let accepted = timeout(LIMIT, fw).await.unwrap().unwrap();
    (outcome, reason, accepted, stats, seen)
}

#[tokio::test]
async fn printrun_style_rs_n_is_honoured() {
    // Printrun#271: `rs N<n>` must be understood like `Resend: n`.
    let (outcome, reason, accepted, stats) = print(20, |n, last, copy| {
        (n == 5 && copy == 1).then(|| {
            format!(
                "Error:checksum mismatch, Last Line: {last}\nrs N{}\nok\n",
                last + 1
            )
        })
    })
    .await;
    assert_eq!(outcome, Outcome::Completed, "{reason}");
    assert_eq!(accepted, (1..=20).collect::<Vec<_>>());
    assert_eq!((stats.resends, stats.lines_resent), (1, 1));
}

#[tokio::test]
async fn resend_without_ok_goes_on_after_grace() {
    // OctoPrint#2285: a resend request without `ok` must neither stall nor resend the wrong line.
    let (outcome, reason, accepted, stats) = print(20, |n, last, copy| {
        (n == 7 && copy == 1).then(|| {
            format!(
                "Error:checksum mismatch, Last Line: {last}\nResend:{}\n",
                last + 1
            )
        })
    })
    .await;
    assert_eq!(outcome, Outcome::Completed, "{reason}");
    assert_eq!(accepted, (1..=20).collect::<Vec<_>>());
    assert_eq!(
        (stats.resends, stats.lines_resent, stats.timeouts),
        (1, 1, 0)
    );
}

#[tokio::test]
async fn resend_of_a_forgotten_line_fails_loudly() {
    let (outcome, reason, _, _) = print(400, |n, _, copy| {
        (n == 350 && copy == 1).then(|| "Resend: 3\nok\n".to_string())
    })
    .await;
    assert_eq!(outcome, Outcome::Failed);
    assert!(reason.contains("no longer in the history"), "{reason}");
}

#[tokio::test]
async fn same_line_refused_too_often_fails_the_job() {
    // The firmware refuses line 4 every time: give up after the configured number of resends.
    let (outcome, reason, accepted, stats) = print(10, |n, last, _| {
        (n == 4).then(|| format!("Error:checksum mismatch, Last Line: {last}\nResend: 4\nok\n"))
    })
    .await;
    assert_eq!(outcome, Outcome::Failed);
    assert!(reason.contains("resent 10 times"), "{reason}");
    assert_eq!(accepted, [1, 2, 3]);
    assert_eq!(stats.resends, 10);
}

#[tokio::test]
async fn no_line_number_with_checksum_counts_as_ok() {
    // OctoPrint#2226: Marlin 1.1 answers a mangled line with this error and a plain `ok`, no
    // resend request. Waiting for one would stall until the reply timeout.
    let (outcome, reason, accepted, stats) = print(10, |n, last, copy| {
        (n == 3 && copy == 1)
            .then(|| format!("Error:No Line Number with checksum, Last Line: {last}\nok\n"))
    })
    .await;
    // The firmware never accepted 3: the next line gets a line-number error and 3 is resent.
    assert_eq!(outcome, Outcome::Completed, "{reason}");
    assert_eq!(accepted, (1..=10).collect::<Vec<_>>());
    assert_eq!((stats.timeouts, stats.resends), (0, 1));
}

#[tokio::test]
async fn wait_stands_in_for_lost_acknowledgements() {
    // NO_TIMEOUTS firmware: the `ok` of line 5 is lost, the idle firmware says `wait`.
    let cfg = config_with(BridgeConfig {
        wait_grace: Duration::ZERO,
        ..BridgeConfig::default()
    });
    let text: String = (0..10).map(|i| format!("G1 X{i}\n")).collect();
    let (outcome, reason, accepted, stats, _) = print_text(&text, cfg, |n, _, copy| {
        (n == 5 && copy == 1).then(|| "accept:wait\n".to_string())
    })
    .await;
    assert_eq!(outcome, Outcome::Completed, "{reason}");
    assert_eq!(accepted, (1..=10).collect::<Vec<_>>());
    assert_eq!(stats.timeouts, 0);
}

#[tokio::test]
async fn lost_ok_is_recovered_by_a_quick_probe() {
    let (outcome, reason, accepted, stats) = print(10, |n, _, copy| {
        (n == 4 && copy == 1).then(|| "accept:".to_string())
    })
    .await;
    assert_eq!(outcome, Outcome::Completed, "{reason}");
    // The probe took line number 5: the job's lines follow it, each once.
    assert_eq!(accepted, [1, 2, 3, 4, 6, 7, 8, 9, 10, 11]);
    assert_eq!((stats.quick_probes, stats.timeouts), (1, 0));
}

#[tokio::test]
async fn lost_ok_is_recovered_by_the_reply_timeout_without_quick_probes() {
    let cfg = config_with(BridgeConfig {
        quick_probe: false,
        ..BridgeConfig::default()
    });
    let text: String = (0..10).map(|i| format!("G1 X{i}\n")).collect();
    let (outcome, reason, accepted, stats, _) = print_text(&text, cfg, |n, _, copy| {
        (n == 4 && copy == 1).then(|| "accept:".to_string())
    })
    .await;
    assert_eq!(outcome, Outcome::Completed, "{reason}");
    assert_eq!(accepted, (1..=10).collect::<Vec<_>>());
    assert_eq!((stats.quick_probes, stats.timeouts), (0, 1));
}

#[tokio::test]
async fn remaining_time_follows_m73() {
    let text = "M73 P0 R10\nG1 X1\nM73 P50 R5\nG1 X2\n";
    let (outcome, _, _, _, events) = print_text(text, config(), |_, _, _| None).await;
    assert_eq!(outcome, Outcome::Completed);
    let remaining: Vec<f64> = events
        .iter()
        .filter_map(|e| match e {
            Event::Progress(p) => p.remaining_s,
            _ => None,
        })
        .collect();
    // After `M73 P0 R10`: ten minutes; after `M73 P50 R5`: five; once done: none.
    assert!((remaining[0] - 600.0).abs() < 5.0, "{remaining:?}");
    assert!(
        remaining.iter().any(|r| (r - 300.0).abs() < 5.0),
        "{remaining:?}"
    );
    assert_eq!(remaining.last(), Some(&0.0));
}
