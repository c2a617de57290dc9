//! Design bytes behind their own trait, [`BlobStore`], so that records and bytes can live in
//! different backends (a server database next to a directory or an object store) and large
//! files are streamed rather than held whole. [`BlobDir`] is the default: content-addressed
//! files `blobs/ab/abcdef...`, written to a temporary file in the same directory tree, synced,
//! then renamed, so a reader never sees a partial blob and a crash leaves at most a temporary
//! file that the next start removes.
//!
//! Blobs are shared by every design with the same bytes and counted by the [`Store`](crate::Store)
//! that owns them: a committed blob is only kept once a design refers to it
//! ([`Store::put_design`](crate::Store::put_design)); one that no design refers to is garbage
//! that the store collects (at start, and when storing its design fails).

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sha2::Digest;

use crate::{Result, StoreError};

/// Where design bytes live. What the server sees of them: it writes new bytes, reads stored
/// ones and asks whether some exist; removing them is the business of the store counting their
/// references.
pub trait BlobStore: Send + Sync {
    /// Starts a new blob. Nothing is visible until [`BlobWriter::commit`].
    fn writer(&self) -> Result<Box<dyn BlobWriter>>;
    /// Streams a blob's bytes; `NotFound` if there is no such blob.
    fn open(&self, sha256: &str) -> Result<BlobReader>;
    fn exists(&self, sha256: &str) -> Result<bool>;

    /// Writes `bytes` as one blob and commits it.
    fn put(&self, bytes: &[u8]) -> Result<CommittedBlob> {
        let mut w = self.writer()?;
        w.write_all(bytes)?;
        w.commit()
    }

    /// Reads a whole blob (for the mesh work that needs all of it).
    fn read_all(&self, sha256: &str) -> Result<Vec<u8>> {
        let mut r = self.open(sha256)?;
        let mut buf = Vec::with_capacity(usize::try_from(r.len()).unwrap_or(0));
        r.read_to_end(&mut buf)?;
        Ok(buf)
    }
}

/// A blob being written: bytes go in through [`Write`] in chunks of any size, their sha256 and
/// size are computed on the way. Dropped without [`commit`](BlobWriter::commit), it leaves
/// nothing visible.
pub trait BlobWriter: Write + Send {
    /// Bytes written so far.
    fn size_bytes(&self) -> u64;
    /// Makes the bytes durable and visible under their sha256, atomically (a reader sees all of
    /// them or no blob). Bytes already stored are kept once.
    fn commit(self: Box<Self>) -> Result<CommittedBlob>;
}

/// A committed blob: its key and size, and (while this value lives) a hold that keeps the
/// bytes from being collected before a design refers to them. Hand it to
/// [`Store::put_design`](crate::Store::put_design), then drop it.
pub struct CommittedBlob {
    pub sha256: String,
    pub size_bytes: u64,
    _hold: Option<Box<dyn std::any::Any + Send + Sync>>,
}

impl CommittedBlob {
    /// A committed blob whose bytes stay until `hold` is dropped (for [`BlobWriter`]s of other
    /// backends; `()` if nothing collects unreferenced blobs concurrently).
    pub fn new(sha256: String, size_bytes: u64, hold: impl std::any::Any + Send + Sync) -> Self {
        Self {
            sha256,
            size_bytes,
            _hold: Some(Box::new(hold)),
        }
    }
}

impl CommittedBlob {
    /// The hold, if it is a `T` (a backend finding its own receipt's hold).
    pub(crate) fn hold<T: 'static>(&self) -> Option<&T> {
        self._hold.as_ref()?.downcast_ref::<T>()
    }
}

impl std::fmt::Debug for CommittedBlob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommittedBlob")
            .field("sha256", &self.sha256)
            .field("size_bytes", &self.size_bytes)
            .finish_non_exhaustive()
    }
}

/// A stored blob opened for streaming, with its length known before the first read.
pub struct BlobReader {
    len: u64,
    inner: Box<dyn Read + Send>,
}

impl BlobReader {
    pub fn new(len: u64, inner: Box<dyn Read + Send>) -> Self {
        Self { len, inner }
    }

    /// The blob's size in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf)
    }
}

/// Holds on blobs committed but not yet referenced, by sha256. Shared by the writers (which
/// take holds) and the removals (which skip held blobs), under one mutex so that a removal
/// never deletes bytes a writer has just found in place.
type Holds = Arc<Mutex<HashMap<String, usize>>>;

/// The directory holding design bytes.
#[derive(Debug, Clone)]
pub struct BlobDir {
    root: PathBuf,
    holds: Holds,
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
        Ok(Self {
            root,
            holds: Holds::default(),
        })
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

    fn holds(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        // Counts changed in single steps: a panic elsewhere cannot leave them torn.
        self.holds.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Removes the blob unless more than `own_holds` holds are on it (the caller's own, if it
    /// has one): for the store counting references, once none is left. Missing is fine.
    /// Returns whether the bytes are gone.
    pub fn remove_unheld(&self, sha256: &str, own_holds: usize) -> std::io::Result<bool> {
        let path = self.path(sha256)?;
        let holds = self.holds();
        if holds.get(sha256).copied().unwrap_or(0) > own_holds {
            return Ok(false);
        }
        let removed = match fs::remove_file(path) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
            Err(e) => return Err(e),
        };
        drop(holds);
        Ok(removed)
    }

    /// Every blob key on disk (for the store's collection of unreferenced blobs).
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

impl BlobStore for BlobDir {
    fn writer(&self) -> Result<Box<dyn BlobWriter>> {
        let tmp = tempfile::NamedTempFile::new_in(self.root.join("tmp"))?;
        Ok(Box::new(DirWriter {
            dir: self.clone(),
            // Uploads arrive in small messages; one write per message would be a syscall each.
            file: BufWriter::with_capacity(256 * 1024, tmp),
            hasher: sha2::Sha256::new(),
            size: 0,
        }))
    }

    fn open(&self, sha256: &str) -> Result<BlobReader> {
        let file = match File::open(self.path(sha256)?) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::NotFound(format!("blob {sha256}")));
            }
            Err(e) => return Err(e.into()),
        };
        let len = file.metadata()?.len();
        Ok(BlobReader::new(len, Box::new(file)))
    }

    fn exists(&self, sha256: &str) -> Result<bool> {
        Ok(self.path(sha256)?.exists())
    }
}

/// A hold on a committed blob; released when the [`CommittedBlob`] is dropped.
struct Hold {
    holds: Holds,
    sha256: String,
}

impl Drop for Hold {
    fn drop(&mut self) {
        let mut holds = self.holds.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = holds.get_mut(&self.sha256) {
            *n -= 1;
            if *n == 0 {
                holds.remove(&self.sha256);
            }
        }
    }
}

struct DirWriter {
    dir: BlobDir,
    file: BufWriter<tempfile::NamedTempFile>,
    hasher: sha2::Sha256,
    size: u64,
}

impl Write for DirWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl BlobWriter for DirWriter {
    fn size_bytes(&self) -> u64 {
        self.size
    }

    fn commit(self: Box<Self>) -> Result<CommittedBlob> {
        let DirWriter {
            dir,
            file,
            hasher,
            size,
        } = *self;
        let tmp = file.into_inner().map_err(|e| e.into_error())?;
        tmp.as_file().sync_all()?;
        let sha256 = hex::encode(hasher.finalize());
        let path = dir.path(&sha256)?;
        // Held before the bytes are looked for, so a removal either ran before (and the bytes
        // are written again below) or sees the hold and keeps them.
        *dir.holds().entry(sha256.clone()).or_insert(0) += 1;
        let hold = Hold {
            holds: dir.holds.clone(),
            sha256: sha256.clone(),
        };
        if !path.exists() {
            let shard = path.parent().unwrap_or(&dir.root);
            fs::create_dir_all(shard)?;
            tmp.persist(&path).map_err(|e| e.error)?;
            sync_dir(shard);
        }
        // Otherwise the same bytes are there already; dropping `tmp` removes the copy.
        Ok(CommittedBlob::new(sha256, size, hold))
    }
}

fn sync_dir(dir: &Path) {
    // Makes the rename durable; not all filesystems allow it, and losing it only risks the blob
    // being re-uploaded, so failure is not an error.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sha256_hex;

    #[test]
    fn written_in_chunks_the_blob_is_visible_only_after_commit_with_its_hash_and_size() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = BlobDir::open_dir(dir.path()).unwrap();
        let bytes: Vec<u8> = (0..100_000u32).map(|i| (i * 31 % 251) as u8).collect();
        let sha = sha256_hex(&bytes);
        let mut w = blobs.writer().unwrap();
        // An odd chunk size, so that chunks and the writer's buffer never line up.
        for c in bytes.chunks(7) {
            w.write_all(c).unwrap();
        }
        assert_eq!(w.size_bytes(), bytes.len() as u64);
        assert!(!blobs.exists(&sha).unwrap());
        assert!(blobs.list().unwrap().is_empty());
        assert!(matches!(blobs.open(&sha), Err(StoreError::NotFound(_))));
        let committed = w.commit().unwrap();
        assert_eq!(committed.sha256, sha);
        assert_eq!(committed.size_bytes, bytes.len() as u64);
        assert!(blobs.exists(&sha).unwrap());
        assert_eq!(blobs.list().unwrap(), vec![sha.clone()]);
        // No temporary copy is left behind.
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);

        let mut r = blobs.open(&sha).unwrap();
        assert_eq!(r.len(), bytes.len() as u64);
        let mut back = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = r.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            back.extend_from_slice(&buf[..n]);
        }
        assert_eq!(back, bytes);
        assert_eq!(blobs.read_all(&sha).unwrap(), bytes);
    }

    #[test]
    fn a_writer_dropped_without_commit_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = BlobDir::open_dir(dir.path()).unwrap();
        let mut w = blobs.writer().unwrap();
        w.write_all(b"half an upload").unwrap();
        w.flush().unwrap();
        drop(w);
        assert!(!blobs.exists(&sha256_hex(b"half an upload")).unwrap());
        assert!(blobs.list().unwrap().is_empty());
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn the_same_bytes_twice_are_one_blob_and_a_held_blob_is_not_removed() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = BlobDir::open_dir(dir.path()).unwrap();
        let a = blobs.put(b"same").unwrap();
        let b = blobs.put(b"same").unwrap();
        assert_eq!(a.sha256, b.sha256);
        assert_eq!(blobs.list().unwrap().len(), 1);
        // Two holds: a removal allowing one keeps the bytes.
        assert!(!blobs.remove_unheld(&a.sha256, 1).unwrap());
        drop(b);
        assert!(!blobs.remove_unheld(&a.sha256, 0).unwrap());
        assert!(blobs.exists(&a.sha256).unwrap());
        let sha = a.sha256.clone();
        drop(a);
        assert!(blobs.remove_unheld(&sha, 0).unwrap());
        assert!(!blobs.exists(&sha).unwrap());
    }
}
