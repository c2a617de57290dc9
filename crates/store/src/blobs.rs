//! Content-addressed files: `blobs/ab/abcdef...`. Written to a temporary file in the same
//! directory tree, synced, then renamed, so a reader never sees a partial blob and a crash leaves
//! at most a temporary file that the next start removes.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The directory holding design bytes.
#[derive(Debug, Clone)]
pub struct BlobDir {
    root: PathBuf,
}

impl BlobDir {
    /// Opens (creating) the directory and removes temporary files a crash left behind.
    pub fn open_dir(root: impl Into<PathBuf>) -> std::io::Result<Self> {
        let root = root.into();
        fs::create_dir_all(root.join("tmp"))?;
        for entry in fs::read_dir(root.join("tmp"))? {
            let path = entry?.path();
            tracing::info!(path = %path.display(), "removing blob left by an interrupted write");
            fs::remove_file(path)?;
        }
        Ok(Self { root })
    }

    fn path(&self, sha256: &str) -> std::io::Result<PathBuf> {
        // The key comes from our own hashing, but a malformed one must never escape the root.
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("not a sha256 hex digest: {sha256:?}"),
            ));
        }
        Ok(self.root.join(&sha256[..2]).join(sha256))
    }

    pub fn exists(&self, sha256: &str) -> std::io::Result<bool> {
        Ok(self.path(sha256)?.exists())
    }

    /// Writes the blob if it is not there yet. Returns true if it was written now.
    pub fn write(&self, sha256: &str, bytes: &[u8]) -> std::io::Result<bool> {
        let path = self.path(sha256)?;
        if path.exists() {
            return Ok(false);
        }
        let dir = path.parent().unwrap_or(&self.root);
        fs::create_dir_all(dir)?;
        let mut tmp = tempfile::NamedTempFile::new_in(self.root.join("tmp"))?;
        tmp.write_all(bytes)?;
        tmp.as_file().sync_all()?;
        tmp.persist(&path).map_err(|e| e.error)?;
        sync_dir(dir);
        Ok(true)
    }

    pub fn open(&self, sha256: &str) -> std::io::Result<File> {
        File::open(self.path(sha256)?)
    }

    /// Removes the blob; missing is fine (removal is idempotent).
    pub fn remove(&self, sha256: &str) -> std::io::Result<()> {
        match fs::remove_file(self.path(sha256)?) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Every blob key on disk.
    pub fn list(&self) -> std::io::Result<Vec<String>> {
        let mut out = Vec::new();
        for shard in fs::read_dir(&self.root)? {
            let shard = shard?.path();
            if !shard.is_dir() || shard.file_name().is_some_and(|n| n == "tmp") {
                continue;
            }
            for entry in fs::read_dir(&shard)? {
                if let Some(name) = entry?.file_name().to_str() {
                    out.push(name.to_string());
                }
            }
        }
        Ok(out)
    }
}

fn sync_dir(dir: &Path) {
    // Makes the rename durable; not all filesystems allow it, and losing it only risks the blob
    // being re-uploaded, so failure is not an error.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}
