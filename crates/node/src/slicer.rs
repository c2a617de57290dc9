//! Turning a design into G-code with PrusaSlicer's CLI (headless), with a timeout, the
//! slicer's own words as the failure reason, and a cache per (design, slicer config): the same
//! model on the same profile is sliced once.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use sha2::{Digest, Sha256};

/// The built-in PrusaSlicer config of profile `prusaslicer-b` (used when a printer names none).
pub const DEFAULT_CONFIG: &str = include_str!("../profiles/prusaslicer-b.ini");
/// Most characters of slicer output kept as a failure reason.
const MAX_REASON_CHARS: usize = 600;
/// Lines of slicer output kept as a failure reason.
const REASON_LINES: usize = 3;

/// Why slicing failed.
#[derive(Debug, thiserror::Error)]
pub enum SliceError {
    /// The slicer binary is missing.
    #[error("{0} is not installed on this node")]
    NotInstalled(String),
    /// The slicer ran and refused the model (or crashed).
    #[error("slicing failed: {0}")]
    Failed(String),
    /// The slicer ran too long.
    #[error("slicing took longer than {0:?}; stopped")]
    TimedOut(Duration),
    /// Local file trouble.
    #[error("slicing: {0}")]
    Io(#[from] std::io::Error),
}

impl SliceError {
    /// Whether the node (not the model) is to blame, so another node should try.
    pub fn is_node_fault(&self) -> bool {
        !matches!(self, SliceError::Failed(_))
    }
}

/// Runs the slicer and caches its output.
#[derive(Debug, Clone)]
pub struct Slicer {
    command: String,
    timeout: Duration,
    cache_dir: PathBuf,
}

/// Finds `command` on PATH (or checks it when it is a path).
pub fn find_on_path(command: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if command.contains('/') {
        let p = PathBuf::from(command);
        return executable(&p).then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(command))
        .find(|p| executable(p))
}

/// sha256 of a file, hex.
pub fn file_sha256(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// The slicer's last meaningful lines (progress and trace lines dropped).
fn reason_from(stderr: &[u8], stdout: &[u8]) -> String {
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(stdout),
        String::from_utf8_lossy(stderr)
    );
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        // "30 => Preparing infill" progress and "[time] [thread] [trace]" log lines.
        .filter(|l| !l.contains(" => ") && !l.starts_with('['))
        .collect();
    let tail = lines[lines.len().saturating_sub(REASON_LINES)..].join("; ");
    if tail.is_empty() {
        "the slicer exited with an error and no message".into()
    } else {
        tail.chars().take(MAX_REASON_CHARS).collect()
    }
}

impl Slicer {
    /// A slicer running `command`, caching in `cache_dir`.
    pub fn new(command: &str, timeout: Duration, cache_dir: &Path) -> Self {
        Self {
            command: command.to_string(),
            timeout,
            cache_dir: cache_dir.to_path_buf(),
        }
    }

    /// Where the G-code of (design, config) is cached.
    pub fn cache_path(&self, design_sha256: &str, config_sha256: &str) -> PathBuf {
        self.cache_dir
            .join(format!("{design_sha256}-{config_sha256}.gcode"))
    }

    /// Slices `model` (whose sha256 is `design_sha256`) with the PrusaSlicer `config` and the
    /// command-line `overrides` (e.g. the printer's own bed), or returns the cached G-code. The
    /// boolean says whether it came from the cache.
    pub async fn slice(
        &self,
        model: &Path,
        design_sha256: &str,
        config: &Path,
        overrides: &[String],
    ) -> Result<(PathBuf, bool), SliceError> {
        let config_sha = {
            let config = config.to_path_buf();
            let file_sha = tokio::task::spawn_blocking(move || file_sha256(&config))
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))??;
            if overrides.is_empty() {
                file_sha
            } else {
                // The overrides change the output, so they are part of the cache key.
                let mut h = Sha256::new();
                h.update(file_sha.as_bytes());
                for o in overrides {
                    h.update([0]);
                    h.update(o.as_bytes());
                }
                hex::encode(h.finalize())
            }
        };
        let out = self.cache_path(design_sha256, &config_sha);
        if tokio::fs::try_exists(&out).await? {
            return Ok((out, true));
        }
        let Some(exe) = find_on_path(&self.command) else {
            return Err(SliceError::NotInstalled(self.command.clone()));
        };
        tokio::fs::create_dir_all(&self.cache_dir).await?;
        let tmp = out.with_extension(format!("{}.part.gcode", std::process::id()));
        let child = tokio::process::Command::new(exe)
            .arg("--export-gcode")
            .arg("--load")
            .arg(config)
            .args(overrides)
            .arg("--output")
            .arg(&tmp)
            .arg(model)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let output = match tokio::time::timeout(self.timeout, child.wait_with_output()).await {
            Ok(r) => r?,
            Err(_) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(SliceError::TimedOut(self.timeout));
            }
        };
        let produced = tokio::fs::metadata(&tmp)
            .await
            .map(|m| m.len())
            .unwrap_or(0);
        if !output.status.success() || produced == 0 {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(SliceError::Failed(reason_from(
                &output.stderr,
                &output.stdout,
            )));
        }
        tokio::fs::rename(&tmp, &out).await?;
        Ok((out, false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reason_keeps_the_slicers_words_and_drops_progress() {
        let stderr = b"[2026-11-23 09:27:37] [0x7f] [trace]   Initializing\n";
        let stdout = b"10 => Processing triangulated mesh\nObjects could not fit on the bed\n";
        assert_eq!(
            reason_from(stderr, stdout),
            "Objects could not fit on the bed"
        );
        assert!(reason_from(b"", b"").contains("no message"));
    }

    #[tokio::test]
    async fn a_missing_slicer_is_a_clear_node_fault() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("c.ini");
        std::fs::write(&config, "layer_height = 0.2\n").unwrap();
        let model = dir.path().join("m.stl");
        std::fs::write(&model, "solid x\nendsolid x\n").unwrap();
        let s = Slicer::new(
            "fab-no-such-slicer",
            Duration::from_secs(5),
            &dir.path().join("cache"),
        );
        let e = s.slice(&model, "abc", &config, &[]).await.unwrap_err();
        assert!(e.is_node_fault());
        assert_eq!(
            e.to_string(),
            "fab-no-such-slicer is not installed on this node"
        );
    }
}
