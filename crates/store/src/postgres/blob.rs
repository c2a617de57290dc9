//! Design bytes in PostgreSQL: content-addressed, in chunks of [`CHUNK_BYTES`], streamed in
//! and out (never a whole design in one statement or in memory), counted by the designs that
//! name them.
//!
//! Tables (migrations/0001_init.sql): `blob_uploads` (one per writer), `blob_chunks` (the
//! bytes, keyed by upload and index), `blobs` (sha256 -> the upload holding its chunks, size,
//! reference count), `blob_pins` (committed blobs not referenced yet).
//!
//! A writer buffers one chunk and writes each full chunk in its own short transaction under
//! its upload id; nothing of it is visible under a sha256 yet. [`BlobWriter::commit`] writes
//! the last chunk and, in one transaction, either names the upload in a new `blobs` row or,
//! when the same bytes are stored already, drops the upload; and it pins the blob. The pin is
//! the [`CommittedBlob`]'s hold: until it is dropped (or expires, when its holder died) the
//! bytes stay even with no design naming them. Bytes are erased in the transaction that drops
//! their last reference if no pin is on them, or by the sweep ([`sweep`]) once the last pin
//! has gone. Erasing and pinning take the `blobs` row's lock, so a pin is either seen by an
//! erase or taken after it (and then the commit stores the bytes anew).

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use sha2::Digest;
use tokio_postgres::Transaction;

use super::{Shared, TxError, pg_error, signed, transaction, unsigned};
use crate::{BlobReader, BlobStore, BlobWriter, CommittedBlob, Result, StoreError};

/// Bytes per chunk row: large enough that a 256 MiB design is 256 rows, small enough that a
/// chunk in flight costs little memory.
pub(crate) const CHUNK_BYTES: usize = 1024 * 1024;

/// How long a pin keeps unreferenced bytes if its holder never drops it (a router that died
/// between committing the bytes and storing the design). The server holds one for the few
/// milliseconds of `put_design`.
const PIN_TTL_S: f64 = 600.0;

/// An upload not written to for this long is abandoned (its writer's router died) and its
/// chunks are removed.
const STALE_UPLOAD_S: f64 = 3600.0;

/// How often a running store sweeps expired pins, abandoned uploads and unreferenced bytes.
pub(crate) const SWEEP_EVERY: Duration = Duration::from_secs(600);

/// Design bytes in the database; see the module doc.
pub struct PgBlobs {
    shared: Arc<Shared>,
}

impl PgBlobs {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

/// The hold of a committed blob: its pin row, deleted when the receipt is dropped.
pub(crate) struct Pin {
    id: i64,
    shared: Arc<Shared>,
}

impl Drop for Pin {
    fn drop(&mut self) {
        // Waited for, so that whoever drops the receipt and then deletes the last design
        // sees the bytes go; if it fails, the pin only keeps the bytes until it expires.
        let (id, shared) = (self.id, self.shared.clone());
        let res = self.shared.run(async move {
            let client = shared.client().await.map_err(TxError::into_store)?;
            client
                .execute("DELETE FROM blob_pins WHERE id = $1", &[&id])
                .await
                .map_err(pg_error)?;
            Ok(())
        });
        if let Err(e) = res {
            tracing::debug!(pin = id, error = %e, "unpinning a blob failed; it expires");
        }
    }
}

/// The pin id of a receipt this store issued.
pub(crate) fn pin_of(blob: &CommittedBlob) -> Option<i64> {
    blob.hold::<Pin>().map(|p| p.id)
}

impl BlobStore for PgBlobs {
    fn writer(&self) -> Result<Box<dyn BlobWriter>> {
        Ok(Box::new(PgWriter {
            shared: self.shared.clone(),
            upload: None,
            buf: Vec::new(),
            chunks: 0,
            hasher: sha2::Sha256::new(),
            size: 0,
        }))
    }

    fn open(&self, sha256: &str) -> Result<BlobReader> {
        let sha = sha256.to_string();
        let s = self.shared.clone();
        let found = self.shared.run(async move {
            let client = s.client().await.map_err(TxError::into_store)?;
            let row = client
                .query_opt(
                    "SELECT size_bytes, chunk_count, upload_id FROM blobs WHERE sha256 = $1",
                    &[&sha],
                )
                .await
                .map_err(pg_error)?;
            Ok(row.map(|r| (r.get::<_, i64>(0), r.get::<_, i32>(1), r.get::<_, i64>(2))))
        })?;
        let Some((size, chunks, upload)) = found else {
            return Err(StoreError::NotFound(format!("blob {sha256}")));
        };
        let len = unsigned(size, "blobs")?;
        Ok(BlobReader::new(
            len,
            Box::new(PgReader {
                shared: self.shared.clone(),
                sha256: sha256.to_string(),
                upload,
                next: 0,
                chunks,
                buf: Vec::new(),
                pos: 0,
            }),
        ))
    }

    fn exists(&self, sha256: &str) -> Result<bool> {
        let sha = sha256.to_string();
        let s = self.shared.clone();
        self.shared.run(async move {
            let client = s.client().await.map_err(TxError::into_store)?;
            let row = client
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM blobs WHERE sha256 = $1)",
                    &[&sha],
                )
                .await
                .map_err(pg_error)?;
            Ok(row.get(0))
        })
    }
}

struct PgWriter {
    shared: Arc<Shared>,
    /// The upload row, made with the first full chunk (a design smaller than a chunk is
    /// written by its commit alone).
    upload: Option<i64>,
    buf: Vec<u8>,
    /// Chunks written so far.
    chunks: i32,
    hasher: sha2::Sha256,
    size: u64,
}

impl PgWriter {
    /// Writes the buffered chunk under the upload (made first if need be).
    fn write_chunk(&mut self) -> Result<()> {
        let bytes = std::mem::take(&mut self.buf);
        let (upload, idx, s) = (self.upload, self.chunks, self.shared.clone());
        let upload = self.shared.run(async move {
            transaction!(&s, |tx| {
                let id = match upload {
                    Some(id) => {
                        tx.execute(
                            "UPDATE blob_uploads SET touched_at = now() WHERE id = $1",
                            &[&id],
                        )
                        .await?;
                        id
                    }
                    None => tx
                        .query_one("INSERT INTO blob_uploads DEFAULT VALUES RETURNING id", &[])
                        .await?
                        .get(0),
                };
                tx.execute(
                    "INSERT INTO blob_chunks (upload_id, idx, bytes) VALUES ($1, $2, $3)",
                    &[&id, &idx, &bytes],
                )
                .await?;
                id
            })
        })?;
        self.upload = Some(upload);
        self.chunks += 1;
        Ok(())
    }
}

impl Write for PgWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let room = CHUNK_BYTES - self.buf.len();
        let n = buf.len().min(room);
        if self.buf.capacity() == 0 {
            self.buf.reserve(CHUNK_BYTES.min(buf.len().max(64 * 1024)));
        }
        self.buf.extend_from_slice(&buf[..n]);
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        if self.buf.len() == CHUNK_BYTES {
            self.write_chunk().map_err(std::io::Error::other)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        // Chunks are written whole; nothing is visible before commit anyway.
        Ok(())
    }
}

impl Drop for PgWriter {
    fn drop(&mut self) {
        // Dropped without commit (commit takes the upload): remove what was written; the
        // sweep removes it if this fails.
        if let Some(id) = self.upload.take() {
            let shared = self.shared.clone();
            let res = self
                .shared
                .run(async move { transaction!(&shared, |tx| { drop_upload(&tx, id).await? }) });
            if let Err(e) = res {
                tracing::debug!(upload = id, error = %e, "removing an abandoned upload failed");
            }
        }
    }
}

/// Removes an upload and its chunks.
async fn drop_upload(tx: &Transaction<'_>, id: i64) -> std::result::Result<(), TxError> {
    tx.execute("DELETE FROM blob_chunks WHERE upload_id = $1", &[&id])
        .await?;
    tx.execute("DELETE FROM blob_uploads WHERE id = $1", &[&id])
        .await?;
    Ok(())
}

impl BlobWriter for PgWriter {
    fn size_bytes(&self) -> u64 {
        self.size
    }

    fn commit(mut self: Box<Self>) -> Result<CommittedBlob> {
        let sha256 = hex::encode(std::mem::take(&mut self.hasher).finalize());
        let size = self.size;
        let size_db = signed(size, "blob size")?;
        let (last, upload, written) = (
            std::mem::take(&mut self.buf),
            self.upload.take(),
            self.chunks,
        );
        let (sha, s) = (sha256.clone(), self.shared.clone());
        let pin = self.shared.run(async move {
            transaction!(&s, |tx| {
                // FOR SHARE conflicts with the erase's FOR UPDATE: the bytes found here stay
                // until this pin is committed, and then the erase sees it.
                let exists = tx
                    .query_opt(
                        "SELECT upload_id FROM blobs WHERE sha256 = $1 FOR SHARE",
                        &[&sha],
                    )
                    .await?
                    .is_some();
                let mut stored = exists;
                if !exists {
                    let id: i64 = match upload {
                        Some(id) => id,
                        None => tx
                            .query_one("INSERT INTO blob_uploads DEFAULT VALUES RETURNING id", &[])
                            .await?
                            .get(0),
                    };
                    let mut chunks = written;
                    if !last.is_empty() || written == 0 {
                        tx.execute(
                            "INSERT INTO blob_chunks (upload_id, idx, bytes) VALUES ($1, $2, $3)",
                            &[&id, &chunks, &last],
                        )
                        .await?;
                        chunks += 1;
                    }
                    let n = tx
                        .execute(
                            "INSERT INTO blobs (sha256, size_bytes, chunk_count, upload_id) \
                             VALUES ($1, $2, $3, $4) ON CONFLICT (sha256) DO NOTHING",
                            &[&sha, &size_db, &chunks, &id],
                        )
                        .await?;
                    if n == 1 {
                        stored = true;
                        // The chunks now belong to the blob.
                        tx.execute("DELETE FROM blob_uploads WHERE id = $1", &[&id])
                            .await?;
                    } else {
                        // The same bytes were committed concurrently (that commit waited
                        // for, and its pin is on them): keep those, drop this copy.
                        drop_upload(&tx, id).await?;
                        stored = tx
                            .query_opt("SELECT 1 FROM blobs WHERE sha256 = $1 FOR SHARE", &[&sha])
                            .await?
                            .is_some();
                    }
                } else if let Some(id) = upload {
                    drop_upload(&tx, id).await?;
                }
                if !stored {
                    return Err(StoreError::Conflict(format!(
                        "blob {sha} was erased while committed"
                    ))
                    .into());
                }
                let id: i64 = tx
                    .query_one(
                        "INSERT INTO blob_pins (sha256, expires_at) \
                         VALUES ($1, now() + make_interval(secs => $2)) RETURNING id",
                        &[&sha, &PIN_TTL_S],
                    )
                    .await?
                    .get(0);
                id
            })
        });
        let pin = match pin {
            Ok(id) => id,
            Err(e) => {
                // Nothing of this writer stays visible; its upload (if the commit rolled back)
                // goes as a dropped writer's does.
                self.upload = upload;
                return Err(e);
            }
        };
        Ok(CommittedBlob::new(
            sha256,
            size,
            Pin {
                id: pin,
                shared: self.shared.clone(),
            },
        ))
    }
}

/// Streams a blob's chunks, one round trip per chunk.
struct PgReader {
    shared: Arc<Shared>,
    sha256: String,
    upload: i64,
    next: i32,
    chunks: i32,
    buf: Vec<u8>,
    pos: usize,
}

impl Read for PgReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.pos == self.buf.len() {
            if self.next == self.chunks {
                return Ok(0);
            }
            let (upload, idx, s) = (self.upload, self.next, self.shared.clone());
            let chunk = self
                .shared
                .run(async move {
                    let client = s.client().await.map_err(TxError::into_store)?;
                    let row = client
                        .query_opt(
                            "SELECT bytes FROM blob_chunks WHERE upload_id = $1 AND idx = $2",
                            &[&upload, &idx],
                        )
                        .await
                        .map_err(pg_error)?;
                    Ok(row.map(|r| r.get::<_, Vec<u8>>(0)))
                })
                .map_err(std::io::Error::other)?;
            let Some(chunk) = chunk else {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("blob {} was erased while it was read", self.sha256),
                ));
            };
            self.buf = chunk;
            self.pos = 0;
            self.next += 1;
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Erases the blob's bytes in `tx` if no design refers to them and no live pin other than
/// `except` is on them; returns whether they are gone.
pub(crate) async fn erase_in(
    tx: &Transaction<'_>,
    sha256: &str,
    except: Option<i64>,
) -> std::result::Result<bool, TxError> {
    let Some(row) = tx
        .query_opt(
            "SELECT refs, upload_id FROM blobs WHERE sha256 = $1 FOR UPDATE",
            &[&sha256],
        )
        .await?
    else {
        return Ok(true);
    };
    let (refs, upload): (i64, i64) = (row.get(0), row.get(1));
    if refs > 0 {
        return Ok(false);
    }
    let pinned: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM blob_pins WHERE sha256 = $1 AND expires_at > now() \
             AND id IS DISTINCT FROM $2)",
            &[&sha256, &except],
        )
        .await?
        .get(0);
    if pinned {
        return Ok(false);
    }
    tx.execute("DELETE FROM blobs WHERE sha256 = $1", &[&sha256])
        .await?;
    tx.execute("DELETE FROM blob_chunks WHERE upload_id = $1", &[&upload])
        .await?;
    Ok(true)
}

/// [`erase_in`] in a transaction of its own.
pub(crate) async fn erase_unreferenced(
    s: &Shared,
    sha256: &str,
    except: Option<i64>,
) -> Result<bool> {
    transaction!(s, |tx| erase_in(&tx, sha256, except).await?)
}

/// Removes expired pins, abandoned uploads and the bytes no design and no pin holds: what
/// routers that died mid-upload left. Run at start and every [`SWEEP_EVERY`].
pub(crate) async fn sweep(s: &Shared) -> Result<()> {
    let orphans: Vec<String> = transaction!(s, |tx| {
        tx.execute("DELETE FROM blob_pins WHERE expires_at <= now()", &[])
            .await?;
        tx.execute(
            "WITH dead AS (DELETE FROM blob_uploads \
             WHERE touched_at < now() - make_interval(secs => $1) RETURNING id) \
             DELETE FROM blob_chunks WHERE upload_id IN (SELECT id FROM dead)",
            &[&STALE_UPLOAD_S],
        )
        .await?;
        tx.query(
            "SELECT sha256 FROM blobs b WHERE refs = 0 AND NOT EXISTS \
             (SELECT 1 FROM blob_pins p WHERE p.sha256 = b.sha256)",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect()
    })?;
    for sha in orphans {
        if erase_unreferenced(s, &sha, None).await? {
            tracing::info!(%sha, "removed design bytes no design refers to");
        }
    }
    Ok(())
}
