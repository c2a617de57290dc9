//! The OctoPrint driver against a real OctoPrint 1.11 with its bundled virtual printer, started
//! here on 127.0.0.1 with a free port and every online feature off; then the node agent with
//! an OctoPrint printer behind an in-process router over real gRPC: a routed job completes
//! with progress on the customer's watch, a node restart mid-print re-attaches to the print
//! (printed once), a customer's cancel stops the print on OctoPrint,
//! and OctoPrint killed mid-print makes the printer offline and, past the grace, moves the job
//! to another printer (a virtual Marlin printer on the serial driver, in the same node).
//!
//! OctoPrint lives in a virtual environment under `fabrouter_testkit::hosts_dir()` (`.ci/run`
//! installs it); where the build found it missing these tests are listed as ignored with the
//! reason, and under `CI=true` they run and fail without it.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use fabrouter_api::v1 as pb;
use fabrouter_node::config::{
    DriverConfig, Location, MaterialConfig, NodeConfig, Price, PrinterConfig, Technology,
};
use fabrouter_node::driver::{Attach, Driver, DriverError, DriverEvent, JobEnd, PrintFile};
use fabrouter_node::run_agent;
use fabrouter_node::secret::Secret;
use fabrouter_server::NetworkConfig;
use fabrouter_testkit::Tool;
use fabrouter_testkit::router::{BERLIN, HAMBURG, Router, spec, wait_state_within};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

const KEY: &str = "fabrouter-test-key-0123456789";

fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

/// A real OctoPrint server in its own base directory.
struct OctoPrint {
    child: Option<Child>,
    basedir: PathBuf,
    port: u16,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl OctoPrint {
    /// Writes the configuration: first-run done, online checks, plugin repository,
    /// announcements, tracking, update checks and mDNS discovery off, the virtual printer on
    /// and connected at start, and one admin user whose API key is [`KEY`].
    fn configure(basedir: &Path) {
        std::fs::create_dir_all(basedir).unwrap();
        std::fs::write(
            basedir.join("config.yaml"),
            "server:\n  firstRun: false\n  onlineCheck: {enabled: false}\n  \
             pluginBlacklist: {enabled: false}\n\
             plugins:\n  _disabled: [announcements, tracking, softwareupdate, pluginmanager, \
             discovery, errortracking, achievements, backup, health_check, firmware_check, \
             file_check, pi_support, gcodeviewer, corewizard, logging]\n  \
             tracking: {enabled: false}\n  virtual_printer: {enabled: true}\n\
             serial:\n  port: VIRTUAL\n  baudrate: 0\n  autoconnect: true\n",
        )
        .unwrap();
        // The password is never used (the tests authenticate by key); this is not a valid
        // hash, so no password logs in.
        std::fs::write(
            basedir.join("users.yaml"),
            format!(
                "fab:\n  active: true\n  password: \"-\"\n  groups: [admins, users]\n  \
                 permissions: []\n  apikey: {KEY}\n  settings: {{}}\n"
            ),
        )
        .unwrap();
    }

    /// Starts OctoPrint on `basedir` (configured once) and waits until its printer is
    /// connected.
    async fn start(basedir: &Path, port: u16) -> OctoPrint {
        fabrouter_testkit::require(Tool::OctoPrint);
        if !basedir.join("config.yaml").exists() {
            Self::configure(basedir);
        }
        let exe = fabrouter_testkit::hosts_dir().join("octoprint/bin/octoprint");
        let log = std::fs::File::create(basedir.join("serve.log")).unwrap();
        let child = Command::new(exe)
            .args(["serve", "--iknowwhatimdoing", "--host", "127.0.0.1"])
            .arg("--port")
            .arg(port.to_string())
            .arg("--basedir")
            .arg(basedir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let op = OctoPrint {
            child: Some(child),
            basedir: basedir.to_path_buf(),
            port,
        };
        let started = Instant::now();
        let http = reqwest::Client::new();
        loop {
            let state = async {
                let v: serde_json::Value = http
                    .get(format!("{}/api/connection", op.url()))
                    .header("X-Api-Key", KEY)
                    .send()
                    .await
                    .ok()?
                    .json()
                    .await
                    .ok()?;
                v["current"]["state"].as_str().map(str::to_string)
            }
            .await;
            if state.as_deref() == Some("Operational") {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "OctoPrint did not come up: {}",
                std::fs::read_to_string(basedir.join("serve.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        eprintln!(
            "OctoPrint up with its virtual printer in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        op
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill().await;
        }
    }

    async fn get(&self, path: &str) -> serde_json::Value {
        reqwest::Client::new()
            .get(format!("{}{path}", self.url()))
            .header("X-Api-Key", KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// OctoPrint's job state text ("Printing", "Operational", ...).
    async fn state(&self) -> String {
        self.get("/api/job").await["state"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }
}

/// PrusaSlicer-style G-code with `layers` layers of a 10 mm square in 1 mm moves: the virtual
/// printer runs it in about `layers` × 0.5 s. It heats nothing, so no time goes to waiting.
fn gcode(layers: u32) -> String {
    let mut g = String::from(
        "; generated by PrusaSlicer 2.7.0+linux-x64 on 2026-01-01 (fabrouter test: a square tower)\n\
         ; gcode_flavor = marlin2\n; nozzle_diameter = 0.4\n; filament_type = PLA\n\
         ; layer_height = 0.2\n\
         G28\nG90\nM82\nG92 E0\n",
    );
    let mut e = 0.0;
    for l in 1..=layers {
        g.push_str(";LAYER_CHANGE\n");
        g.push_str(&format!(
            ";Z:{:.1}\nG1 Z{:.1} F3000\n",
            l as f64 * 0.2,
            l as f64 * 0.2
        ));
        for side in 0..4 {
            for step in 1..=10 {
                let (x, y) = match side {
                    0 => (50 + step, 50),
                    1 => (60, 50 + step),
                    2 => (60 - step, 60),
                    _ => (50, 60 - step),
                };
                e += 0.05;
                g.push_str(&format!("G1 X{x} Y{y} E{e:.3} F6000\n"));
            }
        }
    }
    g.push_str(&format!(
        "; filament used [mm] = {e:.1}\n; filament used [g] = 0.1\n\
         ; estimated printing time (normal mode) = {}s\n",
        layers / 2 + 1
    ));
    g
}

fn driver(url: &str, key: &str) -> Driver {
    Driver::new(
        "op",
        &DriverConfig::OctoPrint {
            url: url.into(),
            api_key: Secret::new(key),
            poll: Duration::from_millis(200),
        },
    )
    .unwrap()
}

async fn print_file(dir: &Path, name: &str, layers: u32) -> PrintFile {
    let path = dir.join(name);
    std::fs::write(&path, gcode(layers)).unwrap();
    PrintFile {
        job: firmware_bridge::GcodeJob::open(&path).await.unwrap(),
        path,
        host_name: name.into(),
    }
}

/// The next event that `pick` accepts, within `secs`.
async fn until<T>(
    events: &mut fabrouter_node::driver::Events,
    secs: u64,
    what: &str,
    mut pick: impl FnMut(&DriverEvent) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let ev = tokio::time::timeout_at(deadline, events.recv())
            .await
            .unwrap_or_else(|_| panic!("no {what} within {secs} s"))
            .unwrap_or_else(|| panic!("the events ended before {what}"));
        if let Some(t) = pick(&ev) {
            return t;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    missing_octoprint,
    ignore = "OctoPrint is not installed in ~/.cache/fabrouter/hosts/octoprint (see .ci/run)"
)]
async fn octoprint_prints_pauses_resumes_completes_and_survives_a_node_restart() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut op = OctoPrint::start(&dir.path().join("octoprint"), port).await;

    // A wrong key is the printer's fault, and says so without showing the key.
    let err = match driver(&op.url(), "wrong-key").connect().await {
        Err(e) => e,
        Ok(_) => panic!("a wrong key connected"),
    };
    assert!(
        matches!(&err, DriverError::Fault(m) if m.contains("api_key")),
        "{err:?}"
    );
    assert!(!err.to_string().contains("wrong-key"), "{err}");

    let mut d = driver(&op.url(), KEY);
    let mut events = d.connect().await.unwrap();
    let file = print_file(dir.path(), "fab-one-e1.gcode", 40).await;
    d.start(file).await.unwrap();
    let f = until(&mut events, 20, "progress", |e| match e {
        DriverEvent::Progress(p) => p.fraction.filter(|f| *f > 0.0),
        _ => None,
    })
    .await;
    assert!(f < 1.0, "{f}");
    d.pause().await.unwrap();
    until(&mut events, 20, "the pause", |e| {
        (*e == DriverEvent::State(fabrouter_node::driver::HostState::Paused)).then_some(())
    })
    .await;
    // Paused twice stays paused: the action is explicit, never a toggle.
    d.pause().await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(op.state().await, "Paused");
    d.resume().await.unwrap();
    until(&mut events, 20, "the resume", |e| {
        (*e == DriverEvent::State(fabrouter_node::driver::HostState::Printing)).then_some(())
    })
    .await;

    // The node "restarts": a new driver re-attaches to the print by its file name.
    drop(events);
    drop(d);
    let mut d = driver(&op.url(), KEY);
    let mut events = d.connect().await.unwrap();
    assert_eq!(d.attach("fab-one-e1.gcode").await.unwrap(), Attach::Running);
    let end = until(&mut events, 60, "the end", |e| match e {
        DriverEvent::Finished(end) => Some(end.clone()),
        _ => None,
    })
    .await;
    assert_eq!(end, JobEnd::Completed);
    // Attaching after the end finds it completed.
    assert_eq!(
        d.attach("fab-one-e1.gcode").await.unwrap(),
        Attach::Ended(JobEnd::Completed)
    );

    // OctoPrint killed mid-print: the link is lost; after its restart the print is gone,
    // which is the printer's fault (the job can go elsewhere).
    let file = print_file(dir.path(), "fab-two-e1.gcode", 200).await;
    d.start(file).await.unwrap();
    until(&mut events, 20, "progress", |e| match e {
        DriverEvent::Progress(p) => p.fraction.filter(|f| *f > 0.0),
        _ => None,
    })
    .await;
    op.kill().await;
    until(&mut events, 10, "the host lost", |e| match e {
        DriverEvent::Lost(why) => Some(why.clone()),
        _ => None,
    })
    .await;
    assert!(matches!(
        d.connect().await,
        Err(DriverError::Unreachable(_))
    ));
    let op = OctoPrint::start(&op.basedir.clone(), port).await;
    let _events = d.connect().await.unwrap();
    match d.attach("fab-two-e1.gcode").await.unwrap() {
        Attach::Ended(JobEnd::Fault(why)) => assert!(why.contains("restarted"), "{why}"),
        other => panic!("{other:?}"),
    }
    drop(op);
}

/// Router, designer with a pre-sliced design, and node `berlin`.
struct Site {
    _dir: tempfile::TempDir,
    r: Router,
    designer: String,
    secret: String,
    state: PathBuf,
}

impl Site {
    async fn start(dir: tempfile::TempDir) -> Site {
        let r = Router::start_with(&dir.path().join("router"), |config| {
            config.listen = "127.0.0.1:0".parse().unwrap();
            config.network = NetworkConfig {
                lease_s: 2.0,
                lost_grace_s: 30.0,
                max_reroutes: 3,
            };
        })
        .await;
        let designer = r.designer().await;
        let secret = r.node_secret("berlin").await;
        let state = dir.path().join("node");
        Site {
            _dir: dir,
            r,
            designer,
            secret,
            state,
        }
    }

    async fn upload_gcode(&self, layers: u32) -> String {
        let bytes = gcode(layers).into_bytes();
        let msgs = vec![
            pb::UploadDesignRequest {
                payload: Some(pb::upload_design_request::Payload::Metadata(
                    pb::UploadMetadata {
                        file_name: "tower.gcode".into(),
                        declared_size_bytes: bytes.len() as u64,
                        sha256: String::new(),
                        format: pb::DesignFormat::Gcode as i32,
                    },
                )),
            },
            pb::UploadDesignRequest {
                payload: Some(pb::upload_design_request::Payload::Chunk(bytes)),
            },
        ];
        self.r
            .designs(&self.designer)
            .upload_design(tokio_stream::iter(msgs))
            .await
            .unwrap()
            .into_inner()
            .name
    }

    async fn submit(&self, design: &str, key: &str) -> pb::Job {
        self.r
            .jobs(&self.designer)
            .submit_job(pb::SubmitJobRequest {
                spec: Some(spec(design, BERLIN)),
                printer: String::new(),
                idempotency_key: key.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .jobs
            .remove(0)
    }

    async fn wait_state(&self, job: &pb::Job, want: pb::JobState, secs: u64) -> pb::Job {
        let mut jobs = self.r.jobs(&self.designer);
        wait_state_within(&mut jobs, &job.name, want, Duration::from_secs(secs)).await
    }

    fn node(&self, printers: Vec<PrinterConfig>) -> NodeConfig {
        NodeConfig {
            router: format!("http://{}", self.r.addr()),
            node_id: "berlin".into(),
            secret: self.secret.clone(),
            state_dir: self.state.clone(),
            slicer: "prusa-slicer".into(),
            slicer_timeout: Duration::from_secs(120),
            reconnect_max: Duration::from_millis(400),
            printers,
        }
    }
}

fn printer(id: &str, driver: DriverConfig, at: (f64, f64), grace_s: u64) -> PrinterConfig {
    PrinterConfig {
        id: id.into(),
        driver,
        offline_grace: Duration::from_secs(grace_s),
        profile: "prusaslicer-b".into(),
        slicer_config: None,
        slicer_profile: None,
        technology: Technology::Fdm,
        build_volume_mm: [200.0, 200.0, 200.0],
        nozzle_mm: 0.4,
        materials: vec![MaterialConfig {
            kind: "PLA".into(),
            colour: "black".into(),
            hotend_c: None,
            bed_c: None,
        }],
        location: Location {
            lat: at.0,
            lon: at.1,
        },
        price: Price {
            currency: "EUR".into(),
            per_hour: 2.0,
            per_gram: 0.05,
            setup_fee: 3.0,
        },
        makerspace: format!("space-{id}"),
        firmware_flavor: "marlin2".into(),
        max_hotend_c: 270.0,
        max_bed_c: 120.0,
    }
}

fn octoprint_printer(op: &OctoPrint, grace_s: u64) -> PrinterConfig {
    printer(
        "octo",
        DriverConfig::OctoPrint {
            url: op.url(),
            api_key: Secret::new(KEY),
            poll: Duration::from_millis(250),
        },
        BERLIN,
        grace_s,
    )
}

struct Agent {
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    stop: oneshot::Sender<()>,
}

impl Agent {
    fn spawn(config: NodeConfig) -> Agent {
        let (stop, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(run_agent(config, async {
            let _ = rx.await;
        }));
        Agent { task, stop }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }
}

async fn wait_for(what: &str, secs: u64, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond().await {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen in {secs} s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(
    missing_octoprint,
    ignore = "OctoPrint is not installed in ~/.cache/fabrouter/hosts/octoprint (see .ci/run)"
)]
async fn a_routed_job_prints_on_octoprint_with_progress_and_a_customer_cancel_stops_it() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let op = OctoPrint::start(&dir.path().join("octoprint"), free_port()).await;
    let s = Site::start(dir).await;
    let agent = Agent::spawn(s.node(vec![octoprint_printer(&op, 60)]));
    s.r.wait_printers(&s.designer, 1).await;

    let design = s.upload_gcode(12).await;
    let job = s.submit(&design, "a").await;
    assert_eq!(job.printer, "nodes/berlin/printers/octo");
    let started = Instant::now();
    s.wait_state(&job, pb::JobState::Completed, 60).await;
    eprintln!(
        "routed job printed on OctoPrint in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let events = s.r.events(&s.designer, &job.name).await;
    let partial = events.iter().any(|m| {
        m.split('%')
            .next()
            .and_then(|p| p.trim().parse::<f64>().ok())
            .is_some_and(|p| p > 0.0 && p < 100.0)
    });
    assert!(
        partial,
        "the watch shows progress between 0 and 100 %: {events:?}"
    );
    let files = op.get("/api/files/local").await;
    let name = format!("fab-{}-e1.gcode", job.name.trim_start_matches("jobs/"));
    assert!(
        files.to_string().contains(&name),
        "{name} not on OctoPrint: {files}"
    );

    // The node stops mid-print and starts again: OctoPrint prints on, and the new agent
    // re-attaches to the print instead of starting it again.
    let design = s.upload_gcode(60).await;
    let job = s.submit(&design, "r").await;
    s.wait_state(&job, pb::JobState::Printing, 30).await;
    wait_for("OctoPrint printing", 20, async || {
        op.state().await == "Printing"
    })
    .await;
    agent.stop().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        op.state().await,
        "Printing",
        "the print goes on without the node"
    );
    let agent = Agent::spawn(s.node(vec![octoprint_printer(&op, 60)]));
    s.wait_state(&job, pb::JobState::Completed, 60).await;
    let history = op.get("/api/files/local").await;
    let name = format!("fab-{}-e1.gcode", job.name.trim_start_matches("jobs/"));
    let prints = history["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name.as_str())
        .map(|f| f["prints"]["success"].as_u64().unwrap_or(0));
    assert_eq!(
        prints,
        Some(1),
        "printed once, not started again: {history}"
    );

    // A long print, cancelled by the customer: OctoPrint stops printing.
    let design = s.upload_gcode(400).await;
    let job = s.submit(&design, "b").await;
    s.wait_state(&job, pb::JobState::Printing, 30).await;
    wait_for("OctoPrint printing", 20, async || {
        op.state().await == "Printing"
    })
    .await;
    s.r.jobs(&s.designer)
        .cancel_job(pb::CancelJobRequest {
            name: job.name.clone(),
            reason: "changed my mind".into(),
        })
        .await
        .unwrap();
    s.wait_state(&job, pb::JobState::Cancelled, 10).await;
    wait_for("OctoPrint to stop the print", 20, async || {
        op.state().await == "Operational"
    })
    .await;
    let progress = op.get("/api/job").await["progress"]["completion"]
        .as_f64()
        .unwrap_or(0.0);
    assert!(progress < 50.0, "the print was stopped early: {progress} %");
    agent.stop().await;
    drop(op);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(
    missing_octoprint,
    ignore = "OctoPrint is not installed in ~/.cache/fabrouter/hosts/octoprint (see .ci/run)"
)]
async fn octoprint_killed_mid_print_is_offline_then_the_job_moves_on_past_the_grace() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let mut op = OctoPrint::start(&dir.path().join("octoprint"), free_port()).await;
    let vp =
        virtual_printer::VirtualPrinter::spawn_pty(virtual_printer::PrinterConfig::fast()).unwrap();
    let s = Site::start(dir).await;
    let serial = printer(
        "mk3",
        DriverConfig::Serial {
            port: vp.slave_path().unwrap().to_str().unwrap().into(),
            baud: 250_000,
            detect_timeout: Duration::from_secs(3),
        },
        HAMBURG,
        60,
    );
    let agent = Agent::spawn(s.node(vec![octoprint_printer(&op, 3), serial]));
    s.r.wait_printers(&s.designer, 2).await;

    let design = s.upload_gcode(150).await;
    let job = s.submit(&design, "a").await;
    assert_eq!(job.printer, "nodes/berlin/printers/octo", "nearest first");
    s.wait_state(&job, pb::JobState::Printing, 30).await;
    let killed = Instant::now();
    op.kill().await;

    // The printer goes offline at the router while the job stays...
    let mut nodes = s.r.nodes(&s.designer);
    wait_for("the OctoPrint printer offline", 10, async || {
        let printers = nodes
            .list_printers(pb::ListPrintersRequest::default())
            .await
            .unwrap()
            .into_inner()
            .printers;
        printers
            .iter()
            .any(|p| p.name.ends_with("/octo") && p.state == pb::PrinterState::Offline as i32)
    })
    .await;
    let j =
        s.r.jobs(&s.designer)
            .get_job(pb::GetJobRequest {
                name: job.name.clone(),
            })
            .await
            .unwrap()
            .into_inner();
    assert_eq!(
        j.printer, "nodes/berlin/printers/octo",
        "held through the grace"
    );
    // ...and past the grace it moves to the other printer, where it completes.
    let done = s.wait_state(&job, pb::JobState::Completed, 90).await;
    assert_eq!(done.printer, "nodes/berlin/printers/mk3");
    assert!(
        killed.elapsed() >= Duration::from_secs(3),
        "not before the grace"
    );
    assert!(
        done.failed_printers.iter().any(|p| p.ends_with("/octo")),
        "{done:?}"
    );
    agent.stop().await;
}
