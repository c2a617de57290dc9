//! The client examples run as a marketplace developer would run them, against a real `fabd` and a
//! `fab-node` with one `virtual-printer`: `examples/upload_and_watch.rs` (Rust) and
//! `examples/python/client.py` (Python, grpcio). Each uploads the reference cube, takes the best
//! quote, submits, and watches the job until it completes. `examples/python/node.py`, a node
//! written from the proto alone, prints a job for a real `fabd` to completion.
//!
//! Needs `prusa-slicer` on PATH (the node slices); the Python test also needs grpcio-tools
//! (`python3 -m pip install -r examples/python/requirements.txt`). Where the build found them
//! missing the tests are listed as ignored with the reason; under `CI=true` they run and fail.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use fabrouter::{
    FabNode, Fabd, Tool, VirtualPrinter, fab, fab_json, fab_secret, printer_toml, reference,
    require, wait_for,
};

/// The customer (Potsdam) and the makerspace (Berlin).
const CUSTOMER: (&str, &str) = ("52.39", "13.06");
const MAKERSPACE: &str = "Berlin Lab";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `target/<profile>`, from this test binary's path (`target/<profile>/deps/clients-…`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps")
        .to_path_buf()
}

/// The Rust example: `cargo test` builds examples with the tests; when this test runs alone it
/// is built here once, with the same cargo and profile.
fn rust_example() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let exe = profile_dir().join("examples/upload_and_watch");
            if exe.exists() {
                return exe;
            }
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut cmd = Command::new(cargo);
            cmd.current_dir(repo()).args([
                "build",
                "-p",
                "fabrouter",
                "--example",
                "upload_and_watch",
            ]);
            if profile_dir().file_name().is_some_and(|n| n == "release") {
                cmd.arg("--release");
            }
            let status = cmd.status().expect("running cargo build --example");
            assert!(
                status.success(),
                "building the upload_and_watch example failed"
            );
            assert!(exe.exists(), "{} was not built", exe.display());
            exe
        })
        .clone()
}

/// Runs a client to its end (killed after `secs`), its stdout and stderr captured in files so a
/// chatty client can never block on a full pipe.
fn run_client(mut cmd: Command, dir: &Path, name: &str, secs: u64) -> Output {
    let out_path = dir.join(format!("{name}.stdout"));
    let err_path = dir.join(format!("{name}.stderr"));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        // No developer's own server or token leaks into the test.
        .env_remove("FAB_SERVER")
        .env_remove("FAB_TOKEN")
        .spawn()
        .unwrap_or_else(|e| panic!("starting the {name} client: {e}"));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the client") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the {name} client ran longer than {secs} s; its output:\n{}\n{}",
                std::fs::read_to_string(&out_path).unwrap_or_default(),
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    Output {
        status,
        stdout: std::fs::read(&out_path).unwrap_or_default(),
        stderr: std::fs::read(&err_path).unwrap_or_default(),
    }
}

/// A router with one makerspace node and its one (virtual) printer, and a designer's token.
struct World {
    designer: String,
    // Fields drop in this order: the node, then its printer, then the router, then their files.
    node: FabNode,
    printer: VirtualPrinter,
    fabd: Fabd,
    dir: tempfile::TempDir,
}

impl World {
    fn start() -> World {
        let dir = tempfile::tempdir().expect("temp dir");
        let fabd = Fabd::start(&dir.path().join("fabd"));
        let (server, admin) = (fabd.addr.clone(), fabd.admin_token());
        let secret = |args: &[&str]| fab_secret(&server, &admin, args);
        let designer = secret(&["admin", "token", "create", "--role", "designer"]);
        let node_secret = secret(&["admin", "node", "create", "berlin"]);
        let printer = VirtualPrinter::start(
            &dir.path().join("mk3.tty"),
            &dir.path().join("mk3.record"),
            &[],
        );
        let config = dir.path().join("node.toml");
        std::fs::write(
            &config,
            format!(
                "router = \"{server}\"\nnode_id = \"berlin\"\nsecret = \"{node_secret}\"\nstate_dir = \"{}\"\n{}",
                dir.path().join("node-state").display(),
                printer_toml("mk3", &printer.link, (52.52, 13.405), MAKERSPACE),
            ),
        )
        .expect("writing the node config");
        let node = FabNode::start(&config, &dir.path().join("node.log"));
        wait_for("the printer to be idle at the router", 60, || {
            let out = fab(&server, &designer, &["printers", "--json"]);
            String::from_utf8_lossy(&out.stdout).contains("\"idle\"")
        });
        World {
            designer,
            node,
            printer,
            fabd,
            dir,
        }
    }

    fn server(&self) -> &str {
        &self.fabd.addr
    }

    /// The client's flags after the program: server, token, customer location, the cube.
    fn client_args(&self, token: &str) -> Vec<String> {
        let cube = reference("stl/trimesh__20mm-xyz-cube.stl");
        vec![
            "--server".into(),
            self.server().into(),
            "--token".into(),
            token.into(),
            "--lat".into(),
            CUSTOMER.0.into(),
            "--lon".into(),
            CUSTOMER.1.into(),
            "--material".into(),
            "PLA".into(),
            cube.display().to_string(),
        ]
    }

    /// Checks what a client printed for a completed print, and that the router agrees.
    fn assert_printed(&self, who: &str, out: &Output) {
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let context = format!(
            "{who} client, exit {:?}\n--- stdout\n{stdout}--- stderr\n{stderr}--- node log\n{}",
            out.status.code(),
            self.node.log_text()
        );
        assert!(out.status.success(), "{context}");
        let lines: Vec<&str> = stdout.lines().collect();
        let has = |prefix: &str| lines.iter().any(|l| l.starts_with(prefix));
        assert!(
            has("uploaded trimesh__20mm-xyz-cube.stl as designs/"),
            "{context}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("mesh verdict: printable (")
                    && l.ends_with(" triangles, 20.0 x 20.0 x 20.0 mm)")),
            "{context}"
        );
        let best = lines
            .iter()
            .find(|l| l.starts_with("best option: "))
            .unwrap_or_else(|| panic!("no quote line: {context}"));
        assert!(
            best.contains("nodes/berlin/printers/mk3 at Berlin Lab")
                && best.contains(" km, ")
                && best.contains(" EUR, ready in "),
            "the quote names printer, makerspace, distance, price and ETA: {context}"
        );
        assert!(has("  why: "), "the quote's reasons: {context}");
        let job = lines
            .iter()
            .find_map(|l| l.strip_prefix("submitted "))
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or_else(|| panic!("no submitted line: {context}"));
        assert!(job.starts_with("jobs/"), "{context}");
        for kind in ["created", "assigned", "started", "completed"] {
            assert!(
                lines
                    .iter()
                    .any(|l| l.starts_with("event #") && l.contains(&format!(" {kind} ("))),
                "a {kind} event: {context}"
            );
        }
        assert_eq!(
            lines.last().copied(),
            Some(format!("job {job} completed").as_str()),
            "{context}"
        );
        let at_router = fab_json(self.server(), &self.designer, &["jobs", "get", job]);
        assert_eq!(at_router["state"], "completed", "{at_router}");
        assert!(
            at_router["printer"]
                .as_str()
                .is_some_and(|p| p.ends_with("/printers/mk3")),
            "{at_router}"
        );
        // The printer's record is written every second.
        wait_for("the printer's record to show the job", 10, || {
            self.printer.executed().len() > 1000
        });
    }
}

#[test]
#[cfg_attr(
    missing_prusa_slicer,
    ignore = "prusa-slicer is not installed (apt-get install prusa-slicer)"
)]
fn rust_example_uploads_quotes_submits_and_watches_to_completion() {
    require(Tool::PrusaSlicer);
    let exe = rust_example();
    let world = World::start();
    let started = Instant::now();
    let mut cmd = Command::new(exe);
    cmd.args(world.client_args(&world.designer));
    let out = run_client(cmd, world.dir.path(), "rust", 300);
    eprintln!("rust client: {:.1} s", started.elapsed().as_secs_f64());
    world.assert_printed("rust", &out);
}

#[test]
#[cfg_attr(
    any(missing_prusa_slicer, missing_python_grpc),
    ignore = "needs prusa-slicer and python3 with grpcio-tools (README, Set-up)"
)]
fn python_client_uploads_quotes_submits_and_watches_to_completion() {
    require(Tool::PrusaSlicer);
    require(Tool::PythonGrpc);
    let world = World::start();
    let started = Instant::now();
    let mut cmd = Command::new("python3");
    cmd.arg(repo().join("examples/python/client.py"))
        .args(world.client_args(&world.designer));
    let out = run_client(cmd, world.dir.path(), "python", 300);
    eprintln!("python client: {:.1} s", started.elapsed().as_secs_f64());
    world.assert_printed("python", &out);
}

/// A wrong token and a missing file end in one clear line on stderr and a non-zero exit, never
/// a panic. Needs only `fabd`.
#[test]
fn rust_client_reports_errors_plainly() {
    clients_report_errors_plainly(false);
}

/// The same for the Python client: never a traceback.
#[test]
#[cfg_attr(
    missing_python_grpc,
    ignore = "python3 with grpcio-tools is not installed (pip install -r examples/python/requirements.txt)"
)]
fn python_client_reports_errors_plainly() {
    require(Tool::PythonGrpc);
    clients_report_errors_plainly(true);
}

fn clients_report_errors_plainly(python: bool) {
    let dir = tempfile::tempdir().expect("temp dir");
    let fabd = Fabd::start(&dir.path().join("fabd"));
    let cube = reference("stl/trimesh__20mm-xyz-cube.stl");
    let cube = cube.to_str().expect("a UTF-8 path");
    let missing = dir.path().join("missing.stl");
    let missing = missing.to_str().expect("a UTF-8 path");
    let cases = [
        (
            "wrong-token",
            cube,
            "UploadDesign failed: ",
            "unauthenticated",
        ),
        ("any-token", missing, "cannot read ", "missing.stl"),
    ];
    for (token, file, says, and_says) in cases {
        let flags = [
            "--server", &fabd.addr, "--token", token, "--lat", "52.39", "--lon", "13.06", file,
        ];
        let (who, mut cmd) = if python {
            let mut py = Command::new("python3");
            py.arg(repo().join("examples/python/client.py"));
            ("python", py)
        } else {
            ("rust", Command::new(rust_example()))
        };
        {
            cmd.args(flags);
            let out = run_client(cmd, dir.path(), who, 60);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{who} {token}: {stderr}");
            assert!(
                stderr.starts_with(&format!("error: {says}"))
                    && stderr.to_lowercase().contains(and_says)
                    && stderr.lines().count() == 1,
                "{who} {token}: one plain error line, got:\n{stderr}"
            );
        }
    }
    assert!(fabd.stop());
}

/// The contract alone is enough for a node: `examples/python/node.py`, written from
/// `network.proto` in another language, registers a printer, takes a job, downloads and checks
/// the design, reports progress and its result, and exits once the router acknowledged it.
#[test]
#[cfg_attr(
    missing_python_grpc,
    ignore = "python3 with grpcio-tools is not installed (pip install -r examples/python/requirements.txt)"
)]
fn a_node_written_in_python_from_the_proto_alone_prints_a_job() {
    require(Tool::PythonGrpc);
    let dir = tempfile::tempdir().expect("temp dir");
    let fabd = Fabd::start(&dir.path().join("fabd"));
    let (server, admin) = (fabd.addr.clone(), fabd.admin_token());
    let secret = |args: &[&str]| fab_secret(&server, &admin, args);
    let designer = secret(&["admin", "token", "create", "--role", "designer"]);
    let node_secret = secret(&["admin", "node", "create", "py"]);
    let mut node = Command::new("python3");
    node.arg(repo().join("examples/python/node.py")).args([
        "--server",
        &server,
        "--node-id",
        "py",
        "--lat",
        "52.52",
        "--lon",
        "13.405",
        "--print-seconds",
        "1",
        "--jobs",
        "1",
    ]);
    node.env("FAB_NODE_SECRET", &node_secret);
    let out_path = dir.path().join("node.out");
    let err_path = dir.path().join("node.err");
    let mut child = node
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("python3 runs");
    let log = || {
        format!(
            "--- node stdout\n{}--- node stderr\n{}",
            std::fs::read_to_string(&out_path).unwrap_or_default(),
            std::fs::read_to_string(&err_path).unwrap_or_default()
        )
    };
    wait_for("the python node's printer to be idle", 60, || {
        let out = fab(&server, &designer, &["printers", "--json"]);
        String::from_utf8_lossy(&out.stdout).contains("\"idle\"")
    });
    let cube = reference("stl/trimesh__20mm-xyz-cube.stl");
    let design = fab_json(&server, &designer, &["upload", cube.to_str().unwrap()])["name"]
        .as_str()
        .unwrap()
        .to_string();
    let submitted = fab_json(
        &server,
        &designer,
        &[
            "jobs", "submit", &design, "--lat", CUSTOMER.0, "--lon", CUSTOMER.1,
        ],
    );
    let job = submitted["jobs"][0]["name"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the node did not finish: {}",
            log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{}", log());
    let stdout = std::fs::read_to_string(&out_path).unwrap();
    assert!(
        stdout.contains(&format!("{job} epoch 1: result acknowledged")),
        "{}",
        log()
    );
    let at_router = fab_json(&server, &designer, &["jobs", "get", &job]);
    assert_eq!(at_router["state"], "completed", "{at_router}");
    assert_eq!(
        at_router["printer"], "nodes/py/printers/py-1",
        "{at_router}"
    );
}
