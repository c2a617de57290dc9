//! Test support shared by the workspace's crates.
//!
//! **Test data.** Every file a test reads lives in the repository under `tests/data/` (its
//! README gives each file's source and licence); [`data`] finds it from any crate.
//!
//! **Tests that need an external tool** (PrusaSlicer, Python's grpcio, ...). A test that cannot
//! run must be visible as not run, and CI, which installs every tool, must never pass without
//! running it. So the decision is taken at build time, where libtest can show it:
//!
//! - the crate's `build.rs` calls [`build::detect`], which looks for each tool and, when one is
//!   missing, sets the cfg `missing_<tool>` (unless `CI=true`);
//! - the test carries `#[cfg_attr(missing_prusa_slicer, ignore = "needs prusa-slicer ...")]`,
//!   so libtest lists it as ignored with that reason and counts it in its summary;
//! - when the test does run it first calls [`require`], which panics with the install hint if the
//!   tool is absent: under `CI=true` (no cfg set) a missing tool is a failed test, not a skip.
//!
//! **Models.** [`cube_stl`] builds a binary STL cube.
//!
//! **PostgreSQL.** [`pg`] starts a throwaway cluster (initdb into a temporary directory, a
//! unix socket only, stopped and removed when dropped or when the process ends).
//!
//! **The router harness** (feature `router`): fabd started in-process on loopback, clients with a
//! bearer token, spec builders and a simulated node (`router` module). It is a feature so that
//! build scripts, which use this crate too, do not build the server.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[cfg(feature = "router")]
pub mod checked_store;
pub mod pg;
#[cfg(feature = "router")]
pub mod router;

/// An external tool some tests need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    /// `prusa-slicer` on PATH: node agents slice with it.
    PrusaSlicer,
    /// `python3` with the `grpc` and `grpc_tools` modules: the Python client example.
    PythonGrpc,
    /// PrusaLink (PyPI `prusalink`: `$FABROUTER_PRUSALINK` or `prusalink` on PATH) and a
    /// permitted `unshare -n`, which keeps its mDNS announcements off the machine's network.
    PrusaLink,
    /// PostgreSQL's server binaries (`initdb`, `postgres`): the PostgreSQL store's tests start
    /// a throwaway cluster with them ([`pg`]).
    Postgres,
    /// Chromium (`chromium` on PATH), Node.js, and `web/node_modules` with playwright-core: the
    /// web app's browser tests.
    Browser,
    /// OctoPrint in its virtual environment under [`hosts_dir`] (`.ci/run` installs it): the
    /// node's OctoPrint driver is tested against it.
    OctoPrint,
}

/// Where the printer hosts the drivers are tested against live, one Python virtual
/// environment each (`octoprint/`, ...): `FABROUTER_HOSTS_DIR`, else
/// `~/.cache/fabrouter/hosts`. They are tools, like PrusaSlicer, not test data.
pub fn hosts_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("FABROUTER_HOSTS_DIR") {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cache/fabrouter/hosts")
}

/// The variable that names the `prusalink` executable (e.g. in a virtual environment).
pub const PRUSALINK_ENV: &str = "FABROUTER_PRUSALINK";

/// The `prusalink` executable: `$FABROUTER_PRUSALINK`, else `prusalink` on PATH.
pub fn prusalink() -> Option<PathBuf> {
    match std::env::var_os(PRUSALINK_ENV) {
        Some(p) if !p.is_empty() => Some(PathBuf::from(p)).filter(|p| p.is_file()),
        _ => find_on_path("prusalink"),
    }
}

impl Tool {
    pub const ALL: [Tool; 6] = [
        Tool::PrusaSlicer,
        Tool::PythonGrpc,
        Tool::PrusaLink,
        Tool::Postgres,
        Tool::Browser,
        Tool::OctoPrint,
    ];

    /// The cfg set when the tool is missing (declared with `rustc-check-cfg`).
    pub fn missing_cfg(self) -> &'static str {
        match self {
            Tool::PrusaSlicer => "missing_prusa_slicer",
            Tool::PythonGrpc => "missing_python_grpc",
            Tool::PrusaLink => "missing_prusalink",
            Tool::Postgres => "missing_postgres",
            Tool::Browser => "missing_browser",
            Tool::OctoPrint => "missing_octoprint",
        }
    }

    /// How a person gets it.
    pub fn install_hint(self) -> &'static str {
        match self {
            Tool::PrusaSlicer => "prusa-slicer is not installed (apt-get install prusa-slicer)",
            Tool::PythonGrpc => {
                "python3 with grpcio-tools is not installed \
                 (python3 -m pip install -r examples/python/requirements.txt)"
            }
            Tool::PrusaLink => {
                "PrusaLink is not installed or `unshare -n` is not permitted \
                 (apt-get install libcap-dev libturbojpeg0; python3 -m venv /opt/prusalink; \
                 /opt/prusalink/bin/pip install prusalink; \
                 export FABROUTER_PRUSALINK=/opt/prusalink/bin/prusalink; see .ci/run)"
            }
            Tool::Postgres => {
                "PostgreSQL's server binaries (initdb, postgres) are not installed \
                 (apt-get install postgresql; or set FABROUTER_PG_BIN to their directory)"
            }
            Tool::Browser => {
                "chromium, node or web/node_modules is missing \
                 (apt-get install chromium nodejs npm; then npm ci in web/)"
            }
            Tool::OctoPrint => {
                "OctoPrint is not installed in ~/.cache/fabrouter/hosts/octoprint \
                 (or $FABROUTER_HOSTS_DIR/octoprint): see the printer-hosts section of .ci/run"
            }
        }
    }

    /// Whether the tool is usable on this machine now.
    pub fn available(self) -> bool {
        match self {
            Tool::PrusaSlicer => find_on_path("prusa-slicer").is_some(),
            Tool::Postgres => pg::bin_dir().is_some(),
            Tool::PythonGrpc => Command::new("python3")
                .args(["-c", "import grpc, grpc_tools"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success()),
            Tool::PrusaLink => {
                prusalink().is_some()
                    && Command::new("unshare")
                        .args(["-n", "true"])
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status()
                        .is_ok_and(|s| s.success())
            }
            Tool::Browser => {
                find_on_path("chromium").is_some()
                    && find_on_path("node").is_some()
                    && repo_root()
                        .join("web/node_modules/playwright-core/package.json")
                        .is_file()
            }
            Tool::OctoPrint => hosts_dir().join("octoprint/bin/octoprint").is_file(),
        }
    }
}

/// Panics with the install hint when `tool` is missing. Call it first in a test that carries
/// the tool's `ignore` attribute: the test runs only where the build found the tool or under
/// `CI=true`, and in both cases its absence is a failure.
pub fn require(tool: Tool) {
    if !tool.available() {
        let ci = if ci() {
            " (CI=true: CI installs every tool the tests need, so this is a broken CI)"
        } else {
            ""
        };
        panic!("this test cannot run: {}{ci}", tool.install_hint());
    }
}

/// Whether this is a CI run (`CI=true`), where no test may be skipped for a missing tool.
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// The first `name` file on PATH.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The repository's top-level directory.
pub fn repo_root() -> PathBuf {
    // crates/testkit -> crates -> the repository.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/testkit sits two levels below the repository root")
        .to_path_buf()
}

/// A file or directory under the repository's `tests/data/`.
pub fn data(rel: &str) -> PathBuf {
    repo_root().join("tests/data").join(rel)
}

/// A binary STL of an axis-aligned cube with edges of `size_mm`, one corner at the origin: 12
/// facets, closed and outward-facing.
pub fn cube_stl(size_mm: f32) -> Vec<u8> {
    let v = |x: f32, y: f32, z: f32| [x * size_mm, y * size_mm, z * size_mm];
    let quads = [
        [v(0., 0., 0.), v(0., 1., 0.), v(1., 1., 0.), v(1., 0., 0.)],
        [v(0., 0., 1.), v(1., 0., 1.), v(1., 1., 1.), v(0., 1., 1.)],
        [v(0., 0., 0.), v(1., 0., 0.), v(1., 0., 1.), v(0., 0., 1.)],
        [v(0., 1., 0.), v(0., 1., 1.), v(1., 1., 1.), v(1., 1., 0.)],
        [v(0., 0., 0.), v(0., 0., 1.), v(0., 1., 1.), v(0., 1., 0.)],
        [v(1., 0., 0.), v(1., 1., 0.), v(1., 1., 1.), v(1., 0., 1.)],
    ];
    let mut b = vec![0u8; 80];
    b.extend_from_slice(&12u32.to_le_bytes());
    for q in quads {
        for t in [[q[0], q[1], q[2]], [q[0], q[2], q[3]]] {
            b.extend_from_slice(&[0u8; 12]);
            for p in t {
                for c in p {
                    b.extend_from_slice(&c.to_le_bytes());
                }
            }
            b.extend_from_slice(&[0, 0]);
        }
    }
    b
}

/// For a crate's `build.rs`.
pub mod build {
    use super::{Tool, ci, hosts_dir};

    /// Declares the `missing_*` cfgs and sets those of the `tools` that are missing on this
    /// machine (none under `CI=true`). Reruns when PATH or CI change, or a PATH directory gains
    /// or loses a file, so installing a tool makes its tests run.
    pub fn detect(tools: &[Tool]) {
        println!("cargo::rerun-if-env-changed=CI");
        println!("cargo::rerun-if-env-changed=PATH");
        println!("cargo::rerun-if-env-changed={}", super::PRUSALINK_ENV);
        if tools.contains(&Tool::Postgres) {
            // Debian installs the server off PATH.
            println!("cargo::rerun-if-env-changed=FABROUTER_PG_BIN");
            if std::path::Path::new("/usr/lib/postgresql").is_dir() {
                println!("cargo::rerun-if-changed=/usr/lib/postgresql");
            }
        }
        if let Some(path) = std::env::var_os("PATH") {
            for dir in std::env::split_paths(&path).filter(|d| d.is_dir()) {
                println!("cargo::rerun-if-changed={}", dir.display());
            }
        }
        for tool in Tool::ALL {
            println!("cargo::rustc-check-cfg=cfg({})", tool.missing_cfg());
        }
        if tools.contains(&Tool::PythonGrpc) {
            // pip installs into site-packages, not PATH.
            for dir in python_site_dirs() {
                println!("cargo::rerun-if-changed={dir}");
            }
        }
        if tools.contains(&Tool::Browser) {
            // `npm ci` in web/ installs playwright-core there, not on PATH.
            println!(
                "cargo::rerun-if-changed={}",
                super::repo_root().join("web/node_modules").display()
            );
        }
        if tools.contains(&Tool::OctoPrint) {
            println!("cargo::rerun-if-env-changed=FABROUTER_HOSTS_DIR");
            println!("cargo::rerun-if-env-changed=HOME");
            let dir = hosts_dir();
            // Watch the nearest existing directory, so a later install is noticed.
            if let Some(d) = dir.ancestors().find(|d| d.is_dir()) {
                println!("cargo::rerun-if-changed={}", d.display());
            }
            if dir.is_dir() {
                println!(
                    "cargo::rerun-if-changed={}",
                    dir.join("octoprint").display()
                );
            }
        }
        let ci = ci();
        for &tool in tools {
            if !ci && !tool.available() {
                println!("cargo::rustc-cfg={}", tool.missing_cfg());
                println!(
                    "cargo::warning=tests that need it are ignored: {}",
                    tool.install_hint()
                );
            }
        }
    }

    fn python_site_dirs() -> Vec<String> {
        let script =
            "import site; print('\\n'.join(site.getsitepackages() + [site.getusersitepackages()]))";
        std::process::Command::new("python3")
            .args(["-c", script])
            .output()
            .ok()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .filter(|d| std::path::Path::new(d).is_dir())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }
}
