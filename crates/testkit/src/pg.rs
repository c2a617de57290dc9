//! A throwaway PostgreSQL cluster for tests and benches: `initdb` into a temporary directory,
//! then the server listening on a unix socket in that directory only (no TCP port, so tests
//! never collide on one), about a second in all. Databases are made per test
//! ([`PgCluster::database`]) so tests sharing a cluster do not see each other's rows.
//!
//! Nothing may be left running, even when the test process panics, aborts or is killed. So
//! the server is not daemonised (no `pg_ctl start`), and a watchdog, a small shell, waits on
//! its standard input, a pipe whose only writer is this process. When the pipe closes (the
//! [`PgCluster`] is dropped, or the process ends however it ends, and the kernel closes its
//! descriptors) the watchdog stops the server with a fast shutdown and removes the
//! directory. A cluster kept in a `static` for a whole test binary is therefore cleaned up
//! too, although statics are never dropped.
//!
//! `initdb` refuses to run as root; as root, the cluster runs as the `postgres` user (which
//! Debian's `postgresql` package creates), in a directory handed to it.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The directory with `initdb`, `postgres` and `createdb`: `$FABROUTER_PG_BIN`, or PATH,
/// or the newest `/usr/lib/postgresql/<version>/bin` (Debian puts them there, off PATH).
pub fn bin_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("FABROUTER_PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    if let Some(initdb) = super::find_on_path("initdb") {
        // Some machines link only a few of the binaries onto PATH; the others are beside the
        // real one.
        let real = std::fs::canonicalize(&initdb).unwrap_or(initdb);
        return real.parent().map(Path::to_path_buf);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// Whether this process runs as root (the owner of `/proc/self` is the effective user).
fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// A running throwaway cluster. Dropping it stops the server and removes its directory.
pub struct PgCluster {
    dir: PathBuf,
    bin: PathBuf,
    /// The pipe the watchdog shell waits on; closing it stops everything.
    pipe: Option<ChildStdin>,
    watchdog: Child,
    server: Child,
    as_postgres: bool,
}

static NEXT: AtomicU64 = AtomicU64::new(0);

impl PgCluster {
    /// A new cluster with `fsync` off: what tests want (a crash of the machine is not what
    /// they test, a crash of the router is, and PostgreSQL's own commit still happens).
    pub fn start() -> Result<PgCluster, String> {
        PgCluster::start_with(false)
    }

    /// A new cluster; `fsync` on for benchmarks of durable commits.
    pub fn start_with(fsync: bool) -> Result<PgCluster, String> {
        let bin = bin_dir().ok_or_else(|| super::Tool::Postgres.install_hint().to_string())?;
        let as_postgres = is_root();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("fabrouter-pg-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        if as_postgres {
            let ok = Command::new("chown")
                .arg("postgres:")
                .arg(&dir)
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(format!(
                    "cannot hand {} to the postgres user (is there one?)",
                    dir.display()
                ));
            }
        }
        let data = dir.join("data");
        let t = Instant::now();
        let out = command(as_postgres, &bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"])
            .args(["--locale", "C"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| format!("running initdb: {e}"))?;
        if !out.status.success() {
            let _ = remove_as(as_postgres, &dir);
            return Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let initdb_s = t.elapsed().as_secs_f64();
        // The server is this process's child (through runuser), started by `exec` so that
        // its signals are the defaults (a shell's background job would ignore SIGINT until
        // the server set its handler: a stop sent that early would be lost).
        let mut server = command(as_postgres, Path::new("/bin/sh"))
            .args(["-c", "echo $$; exec \"$@\" 1>&2", "fabrouter-pg"])
            .arg(bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(&dir)
            .args(["-c", "listen_addresses=", "-c"])
            .arg(format!("fsync={}", if fsync { "on" } else { "off" }))
            .args(["-c", "max_connections=200", "-c", "shared_buffers=32MB"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(dir.join("log")).map_err(|e| format!("server log: {e}"))?)
            .spawn()
            .map_err(|e| format!("starting postgres: {e}"))?;
        let mut pid = String::new();
        if let Some(out) = server.stdout.take() {
            let _ = BufReader::new(out).read_line(&mut pid);
        }
        let pid = pid.trim().to_string();
        // The watchdog: stops the server (fast shutdown) and removes the directory once its
        // standard input closes, which happens however this process ends.
        let script = r#"
            read -r _
            kill -INT "$1" 2>/dev/null
            while kill -0 "$1" 2>/dev/null; do sleep 0.05; done
            rm -rf "$2"
        "#;
        let mut watchdog = command(as_postgres, Path::new("/bin/sh"))
            .args(["-c", script, "fabrouter-pg-watchdog", &pid])
            .arg(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                let _ = server.kill();
                format!("starting the watchdog: {e}")
            })?;
        let cluster = PgCluster {
            dir,
            bin,
            pipe: watchdog.stdin.take(),
            watchdog,
            server,
            as_postgres,
        };
        cluster.wait_ready(Duration::from_secs(30))?;
        eprintln!(
            "throwaway PostgreSQL in {} (initdb {initdb_s:.2} s, ready {:.2} s)",
            cluster.dir.display(),
            t.elapsed().as_secs_f64()
        );
        Ok(cluster)
    }

    fn wait_ready(&self, limit: Duration) -> Result<(), String> {
        let t = Instant::now();
        loop {
            let out = Command::new(self.bin.join("pg_isready"))
                .arg("-h")
                .arg(&self.dir)
                .args(["-U", "postgres"])
                .output()
                .map_err(|e| format!("running pg_isready: {e}"))?;
            if out.status.success() {
                return Ok(());
            }
            if t.elapsed() > limit {
                let log = std::fs::read_to_string(self.dir.join("log")).unwrap_or_default();
                return Err(format!(
                    "postgres did not start within {limit:?} (pg_isready: {}{}): {log}",
                    String::from_utf8_lossy(&out.stdout).trim(),
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The directory holding the unix socket (and the data).
    pub fn socket_dir(&self) -> &Path {
        &self.dir
    }

    /// The URL of the database `name` (`postgresql://postgres@/name?host=<socket dir>`).
    pub fn url(&self, name: &str) -> String {
        format!("postgresql://postgres@/{name}?host={}", self.dir.display())
    }

    /// Creates a new, empty database with a unique name and returns its URL.
    pub fn database(&self) -> Result<String, String> {
        let name = format!("t{}", NEXT.fetch_add(1, Ordering::Relaxed));
        let out = Command::new(self.bin.join("createdb"))
            .arg("-h")
            .arg(&self.dir)
            .args(["-U", "postgres", &name])
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| format!("running createdb: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "createdb {name}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(self.url(&name))
    }

    /// Runs SQL with `psql` against the database `name` and returns its unaligned output
    /// (for tests that look behind the store, or cut its connections).
    pub fn psql(&self, name: &str, sql: &str) -> Result<String, String> {
        let out = Command::new(self.bin.join("psql"))
            .arg("-h")
            .arg(&self.dir)
            .args([
                "-U",
                "postgres",
                "-d",
                name,
                "-XAtq",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ])
            .output()
            .map_err(|e| format!("running psql: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        // Closing the pipe is the stop signal; the shell stops the server and removes the
        // directory before it exits.
        drop(self.pipe.take());
        let _ = self.watchdog.wait();
        let _ = self.server.wait();
        if self.dir.exists() {
            let _ = remove_as(self.as_postgres, &self.dir);
        }
    }
}

/// `program`, run as the postgres user when this process is root.
fn command(as_postgres: bool, program: &Path) -> Command {
    if as_postgres {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn remove_as(_as_postgres: bool, dir: &Path) -> std::io::Result<()> {
    // Root may remove anything; otherwise the files are this user's own.
    std::fs::remove_dir_all(dir)
}

/// A cluster shared by every test of one test binary, started on first use (initdb once per
/// binary, not once per test); `Err` says why none could start. See the module doc for why a
/// `static` cluster still stops when the binary ends.
pub fn shared() -> Result<&'static PgCluster, String> {
    static CLUSTER: std::sync::OnceLock<Result<PgCluster, String>> = std::sync::OnceLock::new();
    CLUSTER
        .get_or_init(PgCluster::start)
        .as_ref()
        .map_err(Clone::clone)
}
