//! The README's first command, `fab demo`, as a user runs it: an embedded router, two
//! makerspaces with virtual printers, and the example models printed. With `--pre-sliced` it
//! takes the path a machine without PrusaSlicer takes: the shipped G-code is uploaded as
//! pre-sliced designs, checked, routed by its own bounds, and streamed. With `--keep-running`
//! the router stays up after the prints and serves the web app until Ctrl-C (SIGINT).

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

use fabrouter::{bin, free_port};

#[test]
fn the_demo_prints_every_example_model_from_pre_sliced_gcode() {
    let port = free_port();
    // A file, not a pipe: nobody reads stderr while the demo runs, and a full pipe would block it.
    let log = tempfile::tempfile().unwrap();
    let mut child = Command::new(bin("fab"))
        .args(["demo", "--pre-sliced", "--keep-running", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .env("HOME", std::env::temp_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log.try_clone().unwrap()))
        .spawn()
        .expect("running fab demo");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stdout = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        stdout.push_str(&line);
        stdout.push('\n');
        if line.contains("Ctrl-C stops everything") {
            break;
        }
    }
    assert!(
        stdout.contains(&format!("web app    http://127.0.0.1:{port}/")),
        "{stdout}"
    );
    assert!(stdout.contains("designer token  fab_"), "{stdout}");
    // The prints are done and the page is served on the printed address.
    let mut http = std::net::TcpStream::connect(("127.0.0.1", port)).expect("the router is up");
    http.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut page = String::new();
    http.read_to_string(&mut page).unwrap();
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("<div id=\"app\">"), "{page}");
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    for line in lines {
        stdout.push_str(&line.unwrap());
        stdout.push('\n');
    }
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    let mut log = log;
    std::io::Seek::rewind(&mut log).unwrap();
    log.read_to_string(&mut stderr).unwrap();
    assert!(status.success(), "fab demo failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("3 of 3 prints completed"), "{stdout}");
    // Each model went where the story says: nearest for the cube, the one with PETG for the
    // ring, the only large bed for the plate; and the quote said why.
    let row = |model: &str| {
        stdout
            .lines()
            .rfind(|l| l.starts_with(model))
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        row("cube-20mm").contains("potsdam-makerspace/mk3s"),
        "{stdout}"
    );
    assert!(row("ring-40mm").contains("berlin-fablab/mini"), "{stdout}");
    assert!(row("plate-340mm").contains("berlin-fablab/xl"), "{stdout}");
    assert!(stdout.contains("PETG is not loaded"), "{stdout}");
    assert!(
        stdout.contains(
            "beyond the 250x210x210 mm build volume (sliced G-code prints where it was sliced)"
        ),
        "{stdout}"
    );
}
