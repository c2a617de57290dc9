//! The virtual printer checked on its own, with hand-written host lines: line numbers,
//! checksums, resend requests, ADVANCED_OK, M115, temperatures, faults and the record.

use std::time::Duration;

use tokio::io::{
    AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream, Lines, ReadHalf, WriteHalf,
};
use tokio::time::timeout;
use virtual_printer::{Fault, PrinterConfig, VirtualPrinter};

struct Host {
    lines: Lines<BufReader<ReadHalf<DuplexStream>>>,
    write: WriteHalf<DuplexStream>,
}

impl Host {
    async fn send(&mut self, text: &str) {
        self.write
            .write_all(format!("{text}\n").as_bytes())
            .await
            .unwrap();
    }

    async fn numbered(&mut self, n: u64, cmd: &str) {
        let body = format!("N{n} {cmd}");
        let cs = body.bytes().fold(0u8, |a, b| a ^ b);
        self.send(&format!("{body}*{cs}")).await;
    }

    /// Next line that is not a temperature autoreport.
    async fn expect(&mut self) -> String {
        loop {
            let line = timeout(Duration::from_secs(5), self.lines.next_line())
                .await
                .expect("reply in time")
                .unwrap()
                .expect("open stream");
            if !line.starts_with(" T:") {
                return line;
            }
        }
    }
}

async fn start(config: PrinterConfig) -> (VirtualPrinter, Host) {
    let (host_io, printer_io) = tokio::io::duplex(4096);
    let printer = VirtualPrinter::spawn_on(printer_io, config);
    let (read, write) = tokio::io::split(host_io);
    let mut host = Host {
        lines: BufReader::new(read).lines(),
        write,
    };
    assert_eq!(host.expect().await, "start");
    assert!(host.expect().await.starts_with("echo:"));
    (printer, host)
}

#[tokio::test]
async fn checks_line_numbers_and_checksums_like_marlin() {
    let (printer, mut host) = start(PrinterConfig::fast()).await;
    host.send("M110 N0").await;
    assert_eq!(host.expect().await, "ok");
    host.numbered(1, "G28").await;
    assert_eq!(host.expect().await, "ok");
    // Wrong checksum.
    host.send("N2 G1 X5*1").await;
    assert_eq!(host.expect().await, "Error:checksum mismatch, Last Line: 1");
    assert_eq!(host.expect().await, "Resend: 2");
    assert_eq!(host.expect().await, "ok");
    // Skipped number.
    host.numbered(3, "G1 X6").await;
    assert_eq!(
        host.expect().await,
        "Error:Line Number is not Last Line Number+1, Last Line: 1"
    );
    assert_eq!(host.expect().await, "Resend: 2");
    assert_eq!(host.expect().await, "ok");
    // No checksum, and checksum without number.
    host.send("N2 G1 X5").await;
    assert_eq!(
        host.expect().await,
        "Error:No Checksum with line number, Last Line: 1"
    );
    assert_eq!(host.expect().await, "Resend: 2");
    assert_eq!(host.expect().await, "ok");
    host.send("G1 X5*33").await;
    assert_eq!(
        host.expect().await,
        "Error:No Line Number with checksum, Last Line: 1"
    );
    assert_eq!(host.expect().await, "Resend: 2");
    assert_eq!(host.expect().await, "ok");
    host.numbered(2, "G1 X5").await;
    assert_eq!(host.expect().await, "ok");
    host.send("FOO").await;
    assert_eq!(host.expect().await, "echo:Unknown command: \"FOO\"");
    assert_eq!(host.expect().await, "ok");
    let record: Vec<(Option<u64>, String)> = printer
        .record()
        .into_iter()
        .map(|e| (e.line, e.command))
        .collect();
    assert_eq!(
        record,
        [
            (None, "M110 N0".to_string()),
            (Some(1), "G28".to_string()),
            (Some(2), "G1 X5".to_string()),
            (None, "FOO".to_string()),
        ]
    );
}

#[tokio::test]
async fn advanced_ok_capabilities_and_temperatures() {
    // Slow moves keep the block in the planner when the `ok` is written.
    let config = PrinterConfig {
        advanced_ok: true,
        move_time: Duration::from_secs(1),
        ..PrinterConfig::fast()
    };
    let (_printer, mut host) = start(config).await;
    host.send("M110 N0").await;
    assert_eq!(host.expect().await, "ok P16 B3");
    host.numbered(1, "G1 X1").await;
    assert_eq!(host.expect().await, "ok N1 P15 B3");
    host.send("M115").await;
    assert!(host.expect().await.starts_with("FIRMWARE_NAME:Marlin"));
    let mut caps = Vec::new();
    loop {
        let line = host.expect().await;
        if line.starts_with("ok") {
            break;
        }
        caps.push(line);
    }
    assert!(caps.contains(&"Cap:AUTOREPORT_TEMP:1".to_string()));
    assert!(caps.contains(&"Cap:EMERGENCY_PARSER:1".to_string()));
    host.send("M104 S210").await;
    host.expect().await;
    host.send("M105").await;
    let reply = host.expect().await;
    assert!(
        reply.starts_with("ok T:") && reply.contains("/210.00"),
        "{reply}"
    );
}

#[tokio::test]
async fn heating_wait_takes_simulated_time() {
    // 100 °C at 2.5 °C/s is 40 simulated seconds: 40 ms at time scale 1000.
    let (printer, mut host) = start(PrinterConfig::fast()).await;
    let started = std::time::Instant::now();
    host.send("M109 S122").await;
    let mut reports = 0;
    loop {
        let line = host.expect().await;
        if line == "ok" {
            break;
        }
        assert!(line.starts_with("T:") && line.ends_with("W:?"), "{line}");
        reports += 1;
    }
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(40), "{elapsed:?}");
    assert!(reports >= 1, "temperature lines while waiting");
    let ((actual, target), _) = printer.temperatures();
    assert_eq!(target, 122.0);
    assert!((actual - 122.0).abs() < 0.5, "{actual}");
}

#[tokio::test]
async fn faults_reset_and_kill() {
    let (printer, mut host) = start(PrinterConfig::fast()).await;
    host.send("M110 N0").await;
    assert_eq!(host.expect().await, "ok");
    printer.inject(Fault::Reset);
    assert_eq!(host.expect().await, "start");
    assert!(host.expect().await.starts_with("echo:Marlin"));
    printer.inject(Fault::Fatal);
    assert_eq!(
        host.expect().await,
        "Error:MAXTEMP triggered, system stopped! Heater_ID: 0"
    );
    assert_eq!(host.expect().await, "Error:Printer halted");
    assert_eq!(host.expect().await, "Error:Printer halted. kill() called!");
    assert_eq!(printer.stats().resets, 1);
}
