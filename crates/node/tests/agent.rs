//! The node agent against an in-process router over real gRPC on loopback and virtual Marlin
//! printers on real pseudo-terminals: a job is sliced by PrusaSlicer, streamed and completed;
//! a printer fault is reported as the printer's (the router re-routes); a router restart does
//! not stop a print; a node restart reports the interrupted print as failed; printers given
//! jobs of one design at once share one slice; a slicer crash is the node's (the job moves on)
//! while a model PrusaSlicer refuses fails the job with its error.
//!
//! Tests that slice need `prusa-slicer` on PATH; where the build found it missing they are
//! listed as ignored with the reason, and under `CI=true` they run and fail (CI installs it).

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fabrouter_api::v1 as pb;
use fabrouter_node::config::{
    DriverConfig, Location, MaterialConfig, Price, PrinterConfig, Technology,
};
use fabrouter_node::{NodeConfig, run_agent};
use fabrouter_server::NetworkConfig;
use fabrouter_testkit::Tool;
use fabrouter_testkit::router::{BERLIN, HAMBURG, Router, submit_one, wait_state_within};
use tokio::sync::oneshot;
use virtual_printer::{Fault, PrinterConfig as VpConfig, VirtualPrinter};

fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

/// The router on `listen` (a restart takes the address the nodes know), with a lost job's
/// grace long enough that only a fault moves a job.
async fn router(dir: &Path, listen: SocketAddr, lease_s: f64) -> Router {
    Router::start_with(dir, |config| {
        config.listen = listen;
        config.network = NetworkConfig {
            lease_s,
            lost_grace_s: 30.0,
            max_reroutes: 3,
        };
    })
    .await
}

/// What every test starts from: a router, a designer who uploaded the reference cube, and node
/// `berlin`'s identity and state directory, for an agent the test configures.
struct Site {
    dir: tempfile::TempDir,
    r: Router,
    lease_s: f64,
    designer: String,
    design: String,
    secret: String,
    state: PathBuf,
}

impl Site {
    /// Needs PrusaSlicer (a failure without it, see the header).
    async fn start(lease_s: f64) -> Site {
        fabrouter_testkit::require(Tool::PrusaSlicer);
        logs();
        let dir = tempfile::tempdir().unwrap();
        let listen = "127.0.0.1:0".parse().unwrap();
        let r = router(&dir.path().join("router"), listen, lease_s).await;
        let designer = r.designer().await;
        let design = r.upload(&designer, reference_cube()).await;
        let secret = r.node_secret("berlin").await;
        let state = dir.path().join("node");
        Site {
            dir,
            r,
            lease_s,
            designer,
            design,
            secret,
            state,
        }
    }

    /// Node `berlin`'s configuration with these printers.
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

    /// Runs the agent and waits until its printers are idle at the router.
    async fn run(&self, config: NodeConfig) -> Agent {
        let printers = config.printers.len();
        let agent = Agent::spawn(config);
        self.r.wait_printers(&self.designer, printers).await;
        agent
    }

    /// One job of the cube for a customer in Potsdam.
    async fn submit(&self, key: &str) -> pb::Job {
        submit_one(&mut self.r.jobs(&self.designer), &self.design, key).await
    }

    async fn wait_state(&self, job: &pb::Job, want: pb::JobState, secs: u64) -> pb::Job {
        let mut jobs = self.r.jobs(&self.designer);
        wait_state_within(&mut jobs, &job.name, want, Duration::from_secs(secs)).await
    }

    async fn events(&self, job: &pb::Job) -> Vec<String> {
        self.r.events(&self.designer, &job.name).await
    }

    /// Stops the router, runs `while_down`, and starts it again on the same address and data.
    async fn restart_router(mut self, while_down: impl Future<Output = ()>) -> Site {
        let addr = self.r.addr();
        self.r.stop().await;
        while_down.await;
        self.r = router(&self.dir.path().join("router"), addr, self.lease_s).await;
        self
    }

    async fn stop(self, agent: Agent) {
        agent.stop().await;
        self.r.stop().await;
    }
}

/// The 20 mm calibration cube of the repository's test data (a real-world STL PrusaSlicer
/// loads).
fn reference_cube() -> Vec<u8> {
    std::fs::read(fabrouter_testkit::data("stl/trimesh__20mm-xyz-cube.stl")).unwrap()
}

fn printer(id: &str, vp: &VirtualPrinter, at: (f64, f64)) -> PrinterConfig {
    PrinterConfig {
        id: id.into(),
        driver: DriverConfig::Serial {
            port: vp.slave_path().unwrap().to_str().unwrap().into(),
            baud: 250_000,
            detect_timeout: Duration::from_secs(3),
        },
        offline_grace: Duration::from_secs(60),
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

/// A running agent, stopped gracefully or killed (its task aborted, like a crash).
struct Agent {
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    stop: Option<oneshot::Sender<()>>,
}

impl Agent {
    fn spawn(config: NodeConfig) -> Agent {
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(run_agent(config, async {
            let _ = rx.await;
        }));
        Agent {
            task,
            stop: Some(tx),
        }
    }

    async fn crash(self) {
        self.task.abort();
        let _ = self.task.await;
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap().unwrap();
    }
}

/// Commands the printer executed as job lines (numbered), in order.
fn executed(vp: &VirtualPrinter) -> Vec<String> {
    vp.record()
        .into_iter()
        .filter(|e| e.line.is_some())
        .map(|e| e.command)
        // Numbered M105s are the sender's probes for a late `ok`, not the file's lines.
        .filter(|c| c != "M105")
        .collect()
}

/// The commands of a G-code file as the bridge sends them.
fn gcode_commands(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(firmware_bridge::gcode::clean_line)
        .filter(|c| *c != "M105")
        .map(str::to_string)
        .collect()
}

/// The G-code files of the node's slice cache (not their records or temporary directory).
fn cached_gcode(state: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(state.join("gcode-cache"))
        .map(|d| {
            d.map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e == "gcode"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

async fn wait_for(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A printer slow enough to interrupt: every reply waits a millisecond.
fn slow_printer() -> VpConfig {
    VpConfig {
        reply_latency: Duration::from_millis(1),
        ..VpConfig::fast()
    }
}
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(
    missing_prusa_slicer,
    ignore = "prusa-slicer is not installed (apt-get install prusa-slicer)"
)]
async fn an_assigned_job_is_sliced_streamed_and_completed() {
    let s = Site::start(2.0).await;
    let vp = VirtualPrinter::spawn_pty(VpConfig::fast()).unwrap();
    let agent = s.run(s.node(vec![printer("mk3", &vp, BERLIN)])).await;

    let job = s.submit("a").await;
    assert_eq!(job.printer, "nodes/berlin/printers/mk3");
    let started = Instant::now();
    s.wait_state(&job, pb::JobState::Completed, 60).await;
    eprintln!(
        "job 1 sliced and printed in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // The printer executed exactly the sliced file's commands, in order.
    let cache = cached_gcode(&s.state);
    assert_eq!(cache.len(), 1, "{cache:?}");
    let want = gcode_commands(&cache[0]);
    assert!(
        want.len() > 1000,
        "a 20 mm cube is thousands of moves: {}",
        want.len()
    );
    assert!(
        want.iter().any(|c| c.starts_with("M109")),
        "the profile heats the hot end"
    );
    assert_eq!(executed(&vp), want);
    let events = s.events(&job).await;
    assert!(events.iter().any(|m| m.contains("slicing")), "{events:?}");
    assert!(
        events
            .iter()
            .any(|m| m.contains("layer") && !m.contains("layer 0/")),
        "{events:?}"
    );

    // The same design again: sliced once (cache), printed again.
    let again = s.submit("b").await;
    s.wait_state(&again, pb::JobState::Completed, 60).await;
    assert_eq!(cached_gcode(&s.state), cache);
    assert_eq!(executed(&vp).len(), 2 * want.len());

    // Results confirmed by the router leave nothing held on disk.
    wait_for("held jobs to be confirmed", 10, || {
        std::fs::read_dir(s.state.join("jobs")).unwrap().count() == 0
    })
    .await;
    s.stop(agent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(
    missing_prusa_slicer,
    ignore = "prusa-slicer is not installed (apt-get install prusa-slicer)"
)]
async fn a_customer_pause_holds_the_printer_and_resume_finishes_the_print() {
    let s = Site::start(2.0).await;
    let vp = VirtualPrinter::spawn_pty(slow_printer()).unwrap();
    let agent = s.run(s.node(vec![printer("mk3", &vp, BERLIN)])).await;
    let job = s.submit("a").await;
    s.wait_state(&job, pb::JobState::Printing, 60).await;
    wait_for("the printer to print", 60, || executed(&vp).len() > 300).await;

    let mut jobs = s.r.jobs(&s.designer);
    let paused = jobs
        .pause_job(pb::PauseJobRequest {
            name: job.name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(paused.state, pb::JobState::Paused as i32);
    // The printer stops taking the job's lines (its pause moves run, then nothing).
    let mut before = executed(&vp).len();
    wait_for("the printer to stop", 10, || {
        let now = executed(&vp).len();
        let still = now == before;
        before = now;
        still && now > 0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let held = executed(&vp).len();
    assert_eq!(held, before, "lines ran while paused");
    // A second pause is refused with the state it is in.
    let again = jobs
        .pause_job(pb::PauseJobRequest {
            name: job.name.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), tonic::Code::FailedPrecondition);
    assert!(again.message().contains("paused"), "{again:?}");

    jobs.resume_job(pb::ResumeJobRequest {
        name: job.name.clone(),
    })
    .await
    .unwrap();
    s.wait_state(&job, pb::JobState::Completed, 60).await;
    assert!(executed(&vp).len() > held);
    // Every line of the sliced file ran, in order, around the pause.
    let want = gcode_commands(&cached_gcode(&s.state)[0]);
    let ran = executed(&vp);
    let mut it = ran.iter();
    assert!(
        want.iter().all(|w| it.any(|r| r == w)),
        "the file's lines are not all in the printer's log, in order"
    );
    // The customer saw the preparation apart from the print.
    let events = s.events(&job).await;
    let preparing = events
        .iter()
        .position(|m| m.contains("preparing the print"));
    let started = events.iter().position(|m| m == "printing started");
    assert!(
        matches!((preparing, started), (Some(p), Some(st)) if p < st),
        "{events:?}"
    );
    assert!(
        events.iter().any(|m| m == "paused by the customer"),
        "{events:?}"
    );
    assert!(
        events.iter().any(|m| m == "resumed by the customer"),
        "{events:?}"
    );
    s.stop(agent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(
    missing_prusa_slicer,
    ignore = "prusa-slicer is not installed (apt-get install prusa-slicer)"
)]
async fn a_printer_fault_mid_print_is_the_printers_and_the_job_moves_on() {
    let s = Site::start(2.0).await;
    let near = VirtualPrinter::spawn_pty(slow_printer()).unwrap();
    let far = VirtualPrinter::spawn_pty(VpConfig::fast()).unwrap();
    let agent = s
        .run(s.node(vec![
            printer("near", &near, BERLIN),
            printer("far", &far, HAMBURG),
        ]))
        .await;
    let job = s.submit("a").await;
    assert_eq!(job.printer, "nodes/berlin/printers/near");
    wait_for("the near printer to print", 60, || {
        executed(&near).len() > 300
    })
    .await;
    near.inject(Fault::Fatal);

    let done = s.wait_state(&job, pb::JobState::Completed, 60).await;
    assert_eq!(done.printer, "nodes/berlin/printers/far");
    assert_eq!(done.reroutes, 1);
    let events = s.events(&job).await;
    assert!(
        events
            .iter()
            .any(|m| m.starts_with("printer failed: the printer failed")),
        "{events:?}"
    );
    let want = gcode_commands(&cached_gcode(&s.state)[0]);
    assert_eq!(
        executed(&far),
        want,
        "the far printer printed the whole job"
    );
    assert!(executed(&near).len() < want.len());
    s.stop(agent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(
    missing_prusa_slicer,
    ignore = "prusa-slicer is not installed (apt-get install prusa-slicer)"
)]
async fn a_router_restart_mid_print_does_not_stop_the_print() {
    let s = Site::start(1.0).await;
    let vp = VirtualPrinter::spawn_pty(slow_printer()).unwrap();
    let agent = s.run(s.node(vec![printer("mk3", &vp, BERLIN)])).await;
    let job = s.submit("a").await;
    wait_for("the print to start", 60, || executed(&vp).len() > 200).await;

    let s = s
        .restart_router(async {
            // The router is gone; the printer keeps printing.
            let at_stop = executed(&vp).len();
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let later = executed(&vp).len();
            assert!(
                later > at_stop + 200,
                "printing went on without the router: {at_stop} -> {later}"
            );
        })
        .await;

    let done = s.wait_state(&job, pb::JobState::Completed, 60).await;
    assert_eq!(done.reroutes, 0);
    assert_eq!(done.epoch, 1);
    let want = gcode_commands(&cached_gcode(&s.state)[0]);
    assert_eq!(executed(&vp), want, "one uninterrupted print");
    s.stop(agent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(
    missing_prusa_slicer,
    ignore = "prusa-slicer is not installed (apt-get install prusa-slicer)"
)]
async fn a_node_restart_reports_the_interrupted_print_as_failed() {
    let s = Site::start(2.0).await;
    let near = VirtualPrinter::spawn_pty(slow_printer()).unwrap();
    let far = VirtualPrinter::spawn_pty(VpConfig::fast()).unwrap();
    let config = s.node(vec![
        printer("near", &near, BERLIN),
        printer("far", &far, HAMBURG),
    ]);
    let agent = s.run(config.clone()).await;
    let job = s.submit("a").await;
    assert_eq!(job.printer, "nodes/berlin/printers/near");
    wait_for("the print to start", 60, || executed(&near).len() > 200).await;
    agent.crash().await;
    let near_lines = executed(&near).len();

    let agent = Agent::spawn(config);
    let done = s.wait_state(&job, pb::JobState::Completed, 60).await;
    assert_eq!(done.printer, "nodes/berlin/printers/far");
    let events = s.events(&job).await;
    assert!(
        events
            .iter()
            .any(|m| m.contains("interrupted: fab-node restarted while the job was printing")),
        "{events:?}"
    );
    // Not restarted on the near printer.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(executed(&near).len() <= near_lines + 10);
    s.stop(agent).await;
}

/// A `slicer` command for the node: logs each run to `slicer-runs.log` in `dir`, runs `before`
/// (shell), then hands over to prusa-slicer with the node's arguments and `extra`.
fn wrapped_slicer(dir: &Path, before: &str, extra: &str) -> (String, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let script = dir.join("wrapped-slicer");
    let log = dir.join("slicer-runs.log");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho run >> '{}'\n{before}\nexec prusa-slicer \"$@\" {extra}\n",
            log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    (script.to_str().unwrap().to_string(), log)
}

fn slicer_runs(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(
    missing_prusa_slicer,
    ignore = "prusa-slicer is not installed (apt-get install prusa-slicer)"
)]
async fn printers_of_one_node_given_one_design_at_once_share_one_slice() {
    const PRINTERS: usize = 3;
    const JOBS: usize = 12;
    // Three printers streaming at once on a loaded test machine: a lease missed here would move
    // jobs and is not what this test is about.
    let s = Site::start(10.0).await;
    let vps: Vec<VirtualPrinter> = (0..PRINTERS)
        .map(|_| VirtualPrinter::spawn_pty(VpConfig::fast()).unwrap())
        .collect();
    // The slice takes a second longer, so every printer asks for it while it runs.
    let (slicer, log) = wrapped_slicer(s.dir.path(), "sleep 1", "");
    let mut config = s.node(
        vps.iter()
            .enumerate()
            .map(|(i, vp)| printer(&format!("p{i}"), vp, BERLIN))
            .collect(),
    );
    config.slicer = slicer;
    let agent = s.run(config).await;

    let started = Instant::now();
    let mut submits = tokio::task::JoinSet::new();
    for n in 0..JOBS {
        let (mut jobs, design) = (s.r.jobs(&s.designer), s.design.clone());
        submits.spawn(async move { submit_one(&mut jobs, &design, &format!("k{n}")).await });
    }
    let jobs = submits.join_all().await;
    let mut per_printer = std::collections::BTreeMap::<String, usize>::new();
    for job in &jobs {
        let done = s.wait_state(job, pb::JobState::Completed, 240).await;
        assert_eq!(done.reroutes, 0, "{} was moved", done.name);
        *per_printer.entry(done.printer).or_default() += 1;
    }
    eprintln!(
        "{JOBS} jobs on {PRINTERS} printers sliced and printed in {:.1} s: {per_printer:?}",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        per_printer.len(),
        PRINTERS,
        "every printer got jobs: {per_printer:?}"
    );
    assert_eq!(slicer_runs(&log), 1, "PrusaSlicer ran once for the design");

    // One cache entry; every printer executed exactly its commands, once per job.
    let cache = cached_gcode(&s.state);
    assert_eq!(cache.len(), 1, "{cache:?}");
    let want = gcode_commands(&cache[0]);
    assert!(want.len() > 1000, "{}", want.len());
    for (i, vp) in vps.iter().enumerate() {
        let n = per_printer[&format!("nodes/berlin/printers/p{i}")];
        let got = executed(vp);
        assert_eq!(got.len(), n * want.len(), "printer p{i}, {n} jobs");
        for (k, print) in got.chunks(want.len()).enumerate() {
            assert!(
                print == want,
                "printer p{i}, print {k}: not the sliced file"
            );
        }
    }
    let leftovers = std::fs::read_dir(s.state.join("gcode-cache/tmp"))
        .unwrap()
        .count();
    assert_eq!(leftovers, 0, "temporary directories left behind");
    s.stop(agent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(
    missing_prusa_slicer,
    ignore = "prusa-slicer is not installed (apt-get install prusa-slicer)"
)]
async fn a_slicer_crash_is_the_nodes_and_the_job_moves_on() {
    let s = Site::start(2.0).await;
    let near = VirtualPrinter::spawn_pty(VpConfig::fast()).unwrap();
    let far = VirtualPrinter::spawn_pty(VpConfig::fast()).unwrap();
    // The first run dies of a segfault, as a broken slicer install would.
    let marker = s.dir.path().join("crashed-once");
    let (slicer, log) = wrapped_slicer(
        s.dir.path(),
        &format!(
            "if [ ! -e '{0}' ]; then touch '{0}'; echo 'Slicing result exported to x'; kill -SEGV $$; fi",
            marker.display()
        ),
        "",
    );
    let mut config = s.node(vec![
        printer("near", &near, BERLIN),
        printer("far", &far, HAMBURG),
    ]);
    config.slicer = slicer;
    let agent = s.run(config).await;
    let job = s.submit("a").await;
    assert_eq!(job.printer, "nodes/berlin/printers/near");
    let done = s.wait_state(&job, pb::JobState::Completed, 60).await;
    assert_eq!(done.printer, "nodes/berlin/printers/far");
    assert_eq!(done.reroutes, 1);
    let events = s.events(&job).await;
    assert!(
        events.iter().any(|m| m
            .starts_with("printer failed: the slicer failed on this node: killed by signal 11")
            && !m.contains("exported")),
        "{events:?}"
    );
    assert_eq!(slicer_runs(&log), 2);
    assert_eq!(executed(&near).len(), 0);
    s.stop(agent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(
    missing_prusa_slicer,
    ignore = "prusa-slicer is not installed (apt-get install prusa-slicer)"
)]
async fn a_model_prusaslicer_refuses_fails_the_job_with_its_error() {
    let s = Site::start(2.0).await;
    let vp = VirtualPrinter::spawn_pty(VpConfig::fast()).unwrap();
    // Scaled to 20 µm the cube is thinner than a layer: PrusaSlicer finds no layers.
    let (slicer, _) = wrapped_slicer(s.dir.path(), "", "--scale 0.001");
    let mut config = s.node(vec![printer("mk3", &vp, BERLIN)]);
    config.slicer = slicer;
    let agent = s.run(config).await;
    let job = s.submit("a").await;
    let failed = s.wait_state(&job, pb::JobState::Failed, 60).await;
    assert_eq!(failed.reroutes, 0);
    assert!(
        failed
            .failure_reason
            .starts_with("the design cannot be sliced: No layers were detected."),
        "{}",
        failed.failure_reason
    );
    assert!(failed.failure_reason.len() < 400);
    s.stop(agent).await;
}

/// A printer declared with PrusaSlicer's vendor presets (Original Prusa i3 MK3S, 0.20mm
/// QUALITY, Prusament PLA) slices with exactly them (the G-code's own settings block says so)
/// and the router estimates that printer with the profile mapped from the same config.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(
    missing_prusa_slicer,
    ignore = "prusa-slicer is not installed (apt-get install prusa-slicer)"
)]
async fn a_printer_with_vendor_presets_slices_and_is_estimated_with_them() {
    use fabrouter_node::presets::{RawPresets, resolve};
    let s = Site::start(2.0).await;
    let vp = VirtualPrinter::spawn_pty(VpConfig::fast()).unwrap();
    let presets = RawPresets {
        printer: "Original Prusa i3 MK3S & MK3S+".into(),
        print: "0.20mm QUALITY @MK3".into(),
        filament: "Prusament PLA".into(),
    };
    let mut mk3s = printer("mk3s", &vp, BERLIN);
    mk3s.build_volume_mm = [250.0, 210.0, 210.0];
    mk3s.slicer_profile = resolve(Some(&presets), None, &mut None).unwrap();
    let agent = s.run(s.node(vec![mk3s])).await;

    let job = s.submit("a").await;
    assert_eq!(job.printer, "nodes/berlin/printers/mk3s");
    // Printing means sliced; the print itself is the other tests' concern (and long).
    s.wait_state(&job, pb::JobState::Printing, 60).await;
    let cache = cached_gcode(&s.state);
    assert_eq!(cache.len(), 1, "{cache:?}");
    let gcode = std::fs::read_to_string(&cache[0]).unwrap();
    // PrusaSlicer ends its G-code with the settings it sliced with.
    let setting = |key: &str| {
        let prefix = format!("; {key} = ");
        gcode
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .unwrap_or_else(|| panic!("no {key} in the G-code"))
            .to_string()
    };
    assert_eq!(
        setting("printer_settings_id"),
        "\"Original Prusa i3 MK3S & MK3S+\""
    );
    assert_eq!(setting("print_settings_id"), "\"0.20mm QUALITY @MK3\"");
    assert_eq!(setting("filament_settings_id"), "\"Prusament PLA\"");
    // Values the vendor bundle sets through the preset's inherits chain.
    assert_eq!(setting("perimeter_speed"), "45");
    assert_eq!(setting("fill_pattern"), "gyroid");
    assert_eq!(setting("fill_density"), "15%");
    assert_eq!(setting("travel_speed"), "180");
    assert_eq!(setting("retract_length"), "0.8");

    // The router's profile for this printer is the one the same config maps to.
    let mut est =
        fabrouter_api::v1::estimate_service_client::EstimateServiceClient::with_interceptor(
            s.r.channel.clone(),
            fabrouter_testkit::router::Bearer(s.designer.clone()),
        );
    let listed = est
        .list_profiles(pb::ListProfilesRequest {})
        .await
        .unwrap()
        .into_inner()
        .profiles;
    let p = listed
        .iter()
        .find(|p| p.print_preset == "0.20mm QUALITY @MK3")
        .expect("the printer's profile is listed");
    let toml: fabrouter_estimator::Profile =
        fabrouter_estimator::Profile::from_toml(&p.toml).unwrap();
    assert_eq!(toml.perimeter_speed_mm_s, 45.0);
    assert_eq!(toml.travel_speed_mm_s, 180.0);
    assert_eq!(toml.retract_length_mm, 0.8);
    assert_eq!(
        toml.infill_pattern,
        fabrouter_estimator::InfillPattern::Gyroid
    );
    assert_eq!((toml.build_x_mm, toml.build_y_mm), (250.0, 210.0));
    let e = est
        .estimate_design(pb::EstimateDesignRequest {
            design: s.design.clone(),
            profile: p.name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    // PrusaSlicer's own figures for this G-code beside the router's: the same settings, so
    // close. The bounds check the settings, not the estimator's accuracy (its own concern,
    // measured by the estimator's reference bench: here -6.4 % in time and -5.4 % in filament
    // with the gyroid infill of this preset); the built-in profile is 20 % off in filament on
    // a plain 20 mm cube, so a printer estimated without its presets still fails.
    let ps = fabrouter_gcode::scan(gcode.as_bytes(), fabrouter_gcode::Limits::default()).unwrap();
    let (ps_time, ps_mm) = (ps.slicer_time_s.unwrap(), ps.slicer_filament_mm.unwrap());
    eprintln!(
        "router {:.0} s / {:.0} mm, PrusaSlicer {ps_time:.0} s / {ps_mm:.0} mm",
        e.print_time_s, e.filament_mm
    );
    assert!(
        (e.filament_mm / ps_mm - 1.0).abs() < 0.10,
        "{} vs {ps_mm}",
        e.filament_mm
    );
    assert!(
        (e.print_time_s / ps_time - 1.0).abs() < 0.2,
        "{} vs {ps_time}",
        e.print_time_s
    );
    s.stop(agent).await;
}
