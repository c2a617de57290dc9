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

/// Path of a workspace binary. `cargo test --workspace` builds `fab` and `fabd` itself (their
/// crates have integration tests); when this package is tested alone they are built here once.
pub fn bin(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    let p = bin_dir().join(name);
    if !p.exists() {
        BUILT.get_or_init(|| {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let release = bin_dir().file_name().is_some_and(|n| n == "release");
            let mut cmd = Command::new(cargo);
            cmd.args(["build", "--workspace", "--bins"]);
            if release {
                cmd.arg("--release");
            }
            let status = cmd.status().expect("running cargo build");
            assert!(status.success(), "building the binaries failed");
        });
    }
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
        let port = free_port();
        let child = Command::new(bin("fabd"))
            .arg("--data-dir")
            .arg(data_dir)
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

/// A file in the shared reference set beside the repository.
pub fn reference(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/reference")
        .join(rel)
}
