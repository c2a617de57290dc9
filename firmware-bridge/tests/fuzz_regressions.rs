//! Inputs the fuzz targets in `fuzz/` found (see fuzz/README.md), kept as plain tests.

use std::time::Duration;

use firmware_bridge::{BridgeConfig, BridgeError, GcodeJob, JobError, connect};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::time::timeout;

/// fuzz target `session`: a job line holding NUL bytes was validated and sent; the firmware
/// cuts the line at the NUL (and with it the checksum), so the print would fail part-way in a
/// resend loop instead of being refused before it starts. CR splits a line the same way.
#[tokio::test]
async fn job_lines_with_control_characters_are_refused_before_printing() {
    let dir = tempfile::tempdir().unwrap();
    for (text, line) in [
        (&b"G28\n=10\0\0\0qction:p0\nG1 X2 Y2 E2\n"[..], 2),
        (b"G28\nG1 X1\rN5 G28\n", 2),
        (b"G1 X1 ; a comment may hold \0 and \r\nG1 X\x0b2\n", 2),
    ] {
        let path = dir.path().join("job.gcode");
        std::fs::write(&path, text).unwrap();
        match GcodeJob::open(&path).await {
            Err(JobError::BadCommand { file_line, .. }) => assert_eq!(file_line, line),
            other => panic!("{text:?}: {other:?}"),
        }
    }
    // Line endings and tabs stay fine.
    let path = dir.path().join("ok.gcode");
    std::fs::write(&path, b"G28\r\nG1\tX1 Y1\r\n").unwrap();
    assert_eq!(GcodeJob::open(&path).await.unwrap().summary().commands, 2);
}

/// fuzz target `session`: `PrinterHandle::command` framed text with `*`, CR or NUL inside, which
/// the firmware splits or cuts (a CR even lets the text smuggle in a numbered line of its own).
#[tokio::test]
async fn commands_that_cannot_be_one_line_are_refused() {
    let (host, printer) = tokio::io::duplex(4096);
    tokio::spawn(async move {
        let (read, mut write) = tokio::io::split(printer);
        let mut lines = BufReader::new(read).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let reply = if line == "M115" {
                "FIRMWARE_NAME:Test\nok\n"
            } else {
                "ok\n"
            };
            if write.write_all(reply.as_bytes()).await.is_err() {
                break;
            }
        }
    });
    let config = BridgeConfig {
        detect_timeout: Duration::from_secs(5),
        capability_timeout: Duration::from_millis(500),
        ..BridgeConfig::default()
    };
    let (handle, _events) = timeout(Duration::from_secs(10), connect(host, config))
        .await
        .unwrap()
        .unwrap();
    for bad in ["M117 a*b", "M117 a\rN9 G28", "M117 \0", "M117 caf\u{e9}"] {
        let err = handle.command(bad).await.unwrap_err();
        assert!(matches!(err, BridgeError::BadCommand(_)), "{bad:?}: {err}");
    }
    handle.command("M117 fine ; comment*").await.unwrap();
}

/// How the running job ended, waiting `within` at the most.
async fn outcome(
    events: &mut tokio::sync::mpsc::UnboundedReceiver<firmware_bridge::Event>,
    within: Duration,
) -> firmware_bridge::Outcome {
    timeout(within, async {
        while let Some(e) = events.recv().await {
            if let firmware_bridge::Event::Finished { outcome, .. } = e {
                return outcome;
            }
        }
        panic!("the session ended without finishing the job");
    })
    .await
    .expect("the job ends in time")
}

/// A Marlin that answers correctly, after `stale` left-over `ok`s already waiting on the link;
/// returns whether a numbered line ever came before the first `M110`.
async fn numbering_printer(io: tokio::io::DuplexStream, stale: &str) -> bool {
    let (read, mut write) = tokio::io::split(io);
    write.write_all(stale.as_bytes()).await.unwrap();
    let mut lines = BufReader::new(read).lines();
    let mut last = None::<u64>;
    let mut out_of_order = false;
    while let Ok(Some(line)) = lines.next_line().await {
        let reply = if line == "M115" {
            "FIRMWARE_NAME:Test\nok\n".to_string()
        } else if let Some(k) = line.strip_prefix("M110 N") {
            last = k.parse().ok();
            "ok\n".to_string()
        } else if let Some(rest) = line.strip_prefix('N') {
            let n: u64 = rest.split(' ').next().unwrap().parse().unwrap();
            match last {
                Some(l) if n == l + 1 => {
                    last = Some(n);
                    "ok\n".to_string()
                }
                _ => {
                    out_of_order = true;
                    let l = last.unwrap_or(0);
                    format!(
                        "Error:Line Number is not Last Line Number+1, Last Line: {l}\nResend: {}\nok\n",
                        l + 1
                    )
                }
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
    out_of_order
}

/// fuzz target `session`: an `ok` already on the link when the session started (or right after
/// a reset) was taken as the answer to the `M110 N0` greeting before the greeting was sent, so
/// numbered lines went out without the firmware's numbering reset. The race is decided by
/// `select!`, so the scenario runs often enough to hit it.
#[tokio::test]
async fn an_ok_before_the_greeting_does_not_complete_the_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("job.gcode");
    std::fs::write(&path, "G28\nG1 X1\nG1 X2\n").unwrap();
    for round in 0..20 {
        let (host, printer) = tokio::io::duplex(4096);
        let fw = tokio::spawn(numbering_printer(printer, "ok\nok\n"));
        let config = BridgeConfig {
            detect_timeout: Duration::from_secs(5),
            hello_interval: Duration::from_millis(50),
            capability_timeout: Duration::from_millis(200),
            ..BridgeConfig::default()
        };
        let (handle, mut events) = timeout(Duration::from_secs(10), connect(host, config))
            .await
            .unwrap()
            .unwrap();
        handle
            .start(GcodeJob::open(&path).await.unwrap())
            .await
            .unwrap();
        let finished = outcome(&mut events, Duration::from_secs(10)).await;
        assert_eq!(
            finished,
            firmware_bridge::Outcome::Completed,
            "round {round}"
        );
        handle.disconnect().await.unwrap();
        drop(events);
        assert!(
            !fw.await.unwrap(),
            "round {round}: a numbered line came before M110"
        );
    }
}

/// fuzz target `session`: a fatal error line during the handshake (a halted Marlin repeats
/// `Error:Printer halted. kill() called!`) halted the link before `connect` had an answer, and
/// `connect` then waited forever for a reset. Now the handshake's own timeout ends it.
#[tokio::test]
async fn a_fatal_error_during_the_handshake_does_not_hang_connect() {
    let (host, printer) = tokio::io::duplex(4096);
    tokio::spawn(async move {
        let (read, mut write) = tokio::io::split(printer);
        let mut lines = BufReader::new(read).lines();
        while let Ok(Some(_)) = lines.next_line().await {
            let halted = b"Error:Printer halted. kill() called!\n";
            if write.write_all(halted).await.is_err() {
                break;
            }
        }
    });
    let config = BridgeConfig {
        detect_timeout: Duration::from_millis(300),
        hello_interval: Duration::from_millis(50),
        ..BridgeConfig::default()
    };
    let result = timeout(Duration::from_secs(10), connect(host, config))
        .await
        .expect("connect must end");
    assert!(
        matches!(result, Err(BridgeError::NotDetected(_))),
        "{result:?}"
    );
}

/// fuzz target `session`: a job that failed while a resend was pending (the printer asked for a
/// line, then fell silent until the reply timeouts gave up) moved the line cursor past the lines
/// the firmware still waited for. The next numbered line was then out of order, and the
/// firmware's resend request for the skipped number replayed the failed job's lines from the
/// history into what came next. Now the numbering is reset (M110) first.
#[tokio::test]
async fn a_job_failed_during_a_resend_does_not_leave_numbering_out_of_step() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let silent = Arc::new(AtomicBool::new(false));
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel::<String>();
    let (host, printer) = tokio::io::duplex(4096);
    let fw_silent = silent.clone();
    let fw = tokio::spawn(async move {
        let (read, mut write) = tokio::io::split(printer);
        let mut lines = BufReader::new(read).lines();
        let mut last = 0u64;
        let mut out_of_order = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = seen_tx.send(line.clone());
            if fw_silent.load(Ordering::SeqCst) {
                continue;
            }
            let reply = if line == "M115" {
                "FIRMWARE_NAME:Test\nok\n".to_string()
            } else if let Some(k) = line.strip_prefix("M110 N") {
                last = k.parse().unwrap();
                "ok\n".to_string()
            } else if let Some(rest) = line.strip_prefix('N') {
                let n: u64 = rest.split(' ').next().unwrap().parse().unwrap();
                if n == 2 && last == 1 && out_of_order.is_empty() && !line.contains("M117") {
                    // Line 2 arrives garbled; the request goes out, then the link goes quiet
                    // before its `ok`.
                    fw_silent.store(true, Ordering::SeqCst);
                    "Error:checksum mismatch, Last Line: 1\nResend: 2\n".to_string()
                } else if n == last + 1 {
                    last = n;
                    "ok\n".to_string()
                } else {
                    out_of_order.push(line.clone());
                    format!(
                        "Error:Line Number is not Last Line Number+1, Last Line: {last}\nResend: {}\nok\n",
                        last + 1
                    )
                }
            } else {
                "ok T:20.0 /0.0 B:20.0 /0.0 @:0 B@:0\n".to_string()
            };
            if write.write_all(reply.as_bytes()).await.is_err() {
                break;
            }
        }
        out_of_order
    });
    let config = BridgeConfig {
        reply_timeout: Duration::from_millis(100),
        max_consecutive_timeouts: 1,
        // Longer than the timeouts: the job fails while the resend is still pending.
        resend_ok_grace: Duration::from_secs(2),
        capability_timeout: Duration::from_millis(200),
        ..BridgeConfig::default()
    };
    let (handle, mut events) = timeout(Duration::from_secs(10), connect(host, config))
        .await
        .unwrap()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("job.gcode");
    std::fs::write(&path, "G1 X1\nG1 X2\nG1 X3\n").unwrap();
    handle
        .start(GcodeJob::open(&path).await.unwrap())
        .await
        .unwrap();
    let ended = outcome(&mut events, Duration::from_secs(10)).await;
    assert_eq!(ended, firmware_bridge::Outcome::Failed);
    // The printer is back; the next command must fit its numbering.
    silent.store(false, Ordering::SeqCst);
    handle.command("M117 after").await.unwrap();
    timeout(Duration::from_secs(10), async {
        while let Some(line) = seen.recv().await {
            if line.contains("M117 after") {
                return;
            }
        }
    })
    .await
    .unwrap();
    // Whatever the firmware asks for now, give it time to go wrong.
    tokio::time::sleep(Duration::from_millis(300)).await;
    handle.disconnect().await.unwrap();
    drop(events);
    let out_of_order = fw.await.unwrap();
    assert!(out_of_order.is_empty(), "out of order: {out_of_order:?}");
}

/// fuzz target `session`: the session read std's clock while it slept on tokio's. Under a
/// paused tokio clock (the fuzz target; any test with paused time) its deadlines never came in
/// tokio time, so it woke and slept again until real time caught up: 29 s of CPU for one
/// input. Here a printer goes silent mid-job under a paused clock: the session must give up
/// after its reply timeouts in tokio time, not after minutes of spinning.
#[tokio::test(start_paused = true)]
async fn a_silent_printer_is_given_up_on_in_tokio_time() {
    let (host, printer) = tokio::io::duplex(4096);
    tokio::spawn(async move {
        let (read, mut write) = tokio::io::split(printer);
        let mut lines = BufReader::new(read).lines();
        let mut job_lines = 0;
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("G1 ") {
                job_lines += 1;
                if job_lines > 3 {
                    continue; // silence: no `ok`, no reply to anything from here on
                }
            } else if job_lines > 3 {
                continue;
            }
            let reply = if line == "M115" {
                "FIRMWARE_NAME:Test\nok\n"
            } else {
                "ok\n"
            };
            if write.write_all(reply.as_bytes()).await.is_err() {
                break;
            }
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("job.gcode");
    let moves: String = (0..20).map(|i| format!("G1 X{i} Y{i}\n")).collect();
    std::fs::write(&path, format!("G28\n{moves}")).unwrap();
    let real = std::time::Instant::now();
    let (handle, mut events) = connect(host, BridgeConfig::default()).await.unwrap();
    handle
        .start(GcodeJob::open(&path).await.unwrap())
        .await
        .unwrap();
    // An hour of tokio time at the most.
    let ended = outcome(&mut events, Duration::from_secs(3600)).await;
    assert_eq!(ended, firmware_bridge::Outcome::Failed);
    assert!(
        real.elapsed() < Duration::from_secs(10),
        "{:?} of real time for a timeout in tokio time",
        real.elapsed()
    );
}
