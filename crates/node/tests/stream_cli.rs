//! `fab-node stream` as a separate process against the virtual printer on a pseudo-terminal:
//! exit code, JSON events and the printer's record.

use std::process::Command;

use virtual_printer::{PrinterConfig, VirtualPrinter};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_a_file_and_reports_json_events() {
    let printer = VirtualPrinter::spawn_pty(PrinterConfig::fast()).unwrap();
    let port = printer.slave_path().unwrap().to_str().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("job.gcode");
    std::fs::write(
        &file,
        ";LAYER:0\nG28\nG1 X10 Y10 ; move\n;LAYER:1\nG1 Z0.4\n",
    )
    .unwrap();

    let exe = env!("CARGO_BIN_EXE_fab-node");
    let output = tokio::task::spawn_blocking(move || {
        Command::new(exe)
            .args(["stream", "--port", &port, "--json"])
            .arg(&file)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let events: Vec<serde_json::Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let finished = events
        .iter()
        .find(|e| e["event"] == "finished")
        .expect("finished event");
    assert_eq!(finished["outcome"], "completed");
    assert_eq!(finished["stats"]["lines"], 3);
    assert_eq!(events.iter().filter(|e| e["event"] == "layer").count(), 2);
    let executed: Vec<String> = printer
        .record()
        .into_iter()
        .filter(|e| e.line.is_some())
        .map(|e| e.command)
        .collect();
    assert_eq!(executed, ["G28", "G1 X10 Y10", "G1 Z0.4"]);
}
