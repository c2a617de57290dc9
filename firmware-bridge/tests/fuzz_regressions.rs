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
