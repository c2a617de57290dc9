//! Shared harness for the end-to-end tests in `tests/`: builds and locates the workspace's
//! binaries, runs them as separate processes on loopback, and cleans up after them.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The directory holding the binaries of this profile (`target/debug`).
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/debug/deps/<test> -> target/debug
    exe.parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps")
        .to_path_buf()
}

/// Path of a workspace binary, built from the current sources. The first call in a test process
/// runs `cargo build` for the workspace's binaries (a no-op when they are current: the test run
/// itself just built them), so a changed source is always what is tested, also when only this
/// package's tests run.
pub fn bin(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let release = bin_dir().file_name().is_some_and(|n| n == "release");
        let mut cmd = Command::new(cargo);
        cmd.current_dir(env!("CARGO_MANIFEST_DIR")).args([
            "build",
            "--quiet",
            "--workspace",
            "--bins",
        ]);
        if release {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("running cargo build");
        assert!(status.success(), "building the binaries failed");
    });
    let p = bin_dir().join(name);
    assert!(p.exists(), "{} was not built", p.display());
    p
}

/// A free loopback port (bound then released; good enough for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A `fabd` process on a data directory, stopped with SIGTERM on drop.
pub struct Fabd {
    pub child: Child,
    pub addr: String,
    pub data_dir: PathBuf,
}

impl Fabd {
    pub fn start(data_dir: &Path) -> Fabd {
        Fabd::start_on(data_dir, None)
    }

    /// fabd on `store` (`--store`: a PostgreSQL URL), or on sled in `data_dir` when `None`;
    /// `data_dir` holds the admin token either way.
    pub fn start_on(data_dir: &Path, store: Option<&str>) -> Fabd {
        let port = free_port();
        let child = Command::new(bin("fabd"))
            .arg("--data-dir")
            .arg(data_dir)
            .args(store.map(|s| ["--store", s]).into_iter().flatten())
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--metrics-listen",
                "off",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting fabd");
        let addr = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "fabd did not start listening");
            std::thread::sleep(Duration::from_millis(50));
        }
        Fabd {
            child,
            addr,
            data_dir: data_dir.to_path_buf(),
        }
    }

    /// The admin token fabd wrote on first start.
    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("admin.token"))
            .expect("admin.token")
            .trim()
            .to_string()
    }

    /// Sends SIGTERM and waits; returns whether fabd exited successfully.
    pub fn stop(mut self) -> bool {
        self.terminate()
    }

    fn terminate(&mut self) -> bool {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Fabd {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.terminate();
        }
    }
}

/// Runs `fab` with the given server and token; returns its output.
pub fn fab(server: &str, token: &str, args: &[&str]) -> Output {
    Command::new(bin("fab"))
        .args(args)
        .env("FAB_SERVER", server)
        .env("FAB_TOKEN", token)
        // Keep a developer's own config and local admin token out of the test.
        .env("HOME", std::env::temp_dir())
        .env_remove("XDG_CONFIG_HOME")
        .output()
        .expect("running fab")
}

/// A file in the repository's test data (`tests/data/`, sources and licences in its README).
pub fn reference(rel: &str) -> PathBuf {
    fabrouter_testkit::data(rel)
}

/// Sends SIGTERM to a child and waits up to 20 s (then SIGKILL); returns whether it exited 0.
fn terminate(child: &mut Child) -> bool {
    if let Ok(Some(status)) = child.try_wait() {
        return status.success();
    }
    let pid = child.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return status.success();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A `virtual-printer` process on a pseudo-terminal reachable at `link`, writing the record of
/// the commands it executed to `record` every second.
pub struct VirtualPrinter {
    child: Child,
    pub link: PathBuf,
    pub record: PathBuf,
}

impl VirtualPrinter {
    /// `extra` are more flags, e.g. `["--latency-ms", "1"]` to make a print last a while.
    pub fn start(link: &Path, record: &Path, extra: &[&str]) -> VirtualPrinter {
        let _ = std::fs::remove_file(link);
        let child = Command::new(bin("virtual-printer"))
            .arg("--link")
            .arg(link)
            .arg("--record")
            .arg(record)
            .arg("--fast")
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting virtual-printer");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !link.exists() {
            assert!(Instant::now() < deadline, "virtual-printer made no link");
            std::thread::sleep(Duration::from_millis(20));
        }
        VirtualPrinter {
            child,
            link: link.to_path_buf(),
            record: record.to_path_buf(),
        }
    }

    /// The printer dies as if unplugged: SIGKILL, no goodbye on the wire.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops it with SIGTERM, on which it writes the final record.
    pub fn stop(mut self) -> bool {
        terminate(&mut self.child)
    }

    /// The commands the printer executed so far (from its last record dump), without
    /// line numbers and checksums.
    pub fn executed(&self) -> Vec<String> {
        read_record(&self.record)
    }
}

impl Drop for VirtualPrinter {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            terminate(&mut self.child);
        }
    }
}

/// The job commands in a virtual printer's record file (JSON lines with `command` and `line`).
pub fn read_record(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        // Job lines carry a line number; the sender's own handshake commands do not.
        .filter(|v| v.get("line").is_some_and(|l| !l.is_null()))
        .filter_map(|v| v.get("command").and_then(|c| c.as_str()).map(String::from))
        // Numbered M105s are the sender's probes for a late `ok` (see `gcode_commands`).
        .filter(|c| c != "M105")
        .collect()
}

/// A `fab-node run` process, its log in `log`; stopped with SIGTERM on drop.
pub struct FabNode {
    child: Child,
    pub log: PathBuf,
}

impl FabNode {
    pub fn start(config: &Path, log: &Path) -> FabNode {
        let out = std::fs::File::create(log).expect("node log file");
        let child = Command::new(bin("fab-node"))
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .expect("starting fab-node");
        FabNode {
            child,
            log: log.to_path_buf(),
        }
    }

    pub fn stop(mut self) -> bool {
        terminate(&mut self.child)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for FabNode {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            terminate(&mut self.child);
        }
    }
}

/// Runs `fab ... --json`, asserts success, and parses what it printed.
pub fn fab_json(server: &str, token: &str, args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = fab(server, token, &all);
    assert!(
        out.status.success(),
        "fab {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "fab {args:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Polls `cond` every 100 ms until it holds or `secs` pass (then panics naming `what`).
pub fn wait_for(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub use fabrouter_testkit::{Tool, require};

/// A `[[printer]]` table of a node TOML: an FDM printer with a 250 x 210 x 210 mm bed and black
/// PLA, on `port`, at (lat, lon).
pub fn printer_toml(id: &str, port: &Path, at: (f64, f64), makerspace: &str) -> String {
    format!(
        r#"
[[printer]]
id = "{id}"
port = "{port}"
baud = 250000
profile = "prusaslicer-b"
technology = "fdm"
build_volume_mm = [250, 210, 210]
nozzle_mm = 0.4
materials = [{{ kind = "PLA", colour = "black" }}]
location = {{ lat = {lat}, lon = {lon} }}
price = {{ currency = "EUR", per_hour = 2.0, per_gram = 0.05, setup_fee = 3.0 }}
makerspace = "{makerspace}"
"#,
        port = port.display(),
        lat = at.0,
        lon = at.1,
    )
}

/// Runs a `fab admin ... create` command and returns the secret it printed.
pub fn fab_secret(server: &str, admin: &str, args: &[&str]) -> String {
    fab_json(server, admin, args)["secret"]
        .as_str()
        .unwrap_or_else(|| panic!("fab {args:?} printed no secret"))
        .to_string()
}
