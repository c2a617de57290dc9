//! Upload sessions: a resumable upload in unary calls (Begin, Append at an offset, Get, Commit),
//! for clients that cannot stream to the server, such as a browser over gRPC-web. The bytes go
//! through `designs::Ingest`, the pipeline UploadDesign runs, so the limits and errors are the
//! same. A session lives in memory only: a restarted fabd forgets it and the client starts over.
//!
//! Bounds: at most [`MAX_OPEN_PER_PRINCIPAL`] open sessions per principal and
//! [`MAX_SESSIONS`] in all; a session idle for [`IDLE_EXPIRY`] is dropped (with its bytes and its
//! share of the in-flight budget, which bounds the bytes all sessions hold together).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fabrouter_api::names;
use fabrouter_api::v1 as pb;
use tonic::Status;

use crate::State;
use crate::access::Principal;
use crate::designs::{Designs, Ingest};
use crate::errors::{bad_request, limit_exceeded, precondition};

/// Open (uncommitted) sessions one principal may have at once.
pub const MAX_OPEN_PER_PRINCIPAL: usize = 4;
/// Sessions of all principals, open or recently committed.
pub const MAX_SESSIONS: usize = 1024;
/// A session without an append for this long is dropped.
pub const IDLE_EXPIRY: Duration = Duration::from_secs(15 * 60);
/// A committed session is remembered this long, so a retried commit gets its design.
const COMMITTED_KEPT: Duration = Duration::from_secs(5 * 60);
/// Largest chunk per AppendUpload (well under the 4 MiB message limit).
pub const MAX_CHUNK_BYTES: usize = 1024 * 1024;

enum Phase {
    Open(Box<Ingest>),
    /// Being checked and stored by a CommitUpload call.
    Committing,
    Committed(String),
}

struct Session {
    declared: u64,
    /// Bytes held (also while committing, for GetUpload).
    received: u64,
    expires: Instant,
    /// Wall-clock twin of `expires`, for the API.
    expires_unix_ms: i64,
    phase: Phase,
}

/// A session and its owner, which never changes (so it is read without the session's lock).
struct Entry {
    owner: String,
    session: Arc<tokio::sync::Mutex<Session>>,
}

/// Every upload session of this fabd.
#[derive(Default)]
pub struct Uploads {
    sessions: Mutex<HashMap<String, Arc<Entry>>>,
}

fn expiry(now: Instant, keep: Duration) -> (Instant, i64) {
    (
        now + keep,
        crate::auth::now_unix_ms() + keep.as_millis() as i64,
    )
}

impl Session {
    fn pb(&self, name: &str) -> pb::UploadSession {
        pb::UploadSession {
            name: name.to_string(),
            received_bytes: self.received,
            declared_size_bytes: self.declared,
            expire_time: Some(crate::designs::timestamp(self.expires_unix_ms)),
            design: match &self.phase {
                Phase::Committed(d) => d.clone(),
                _ => String::new(),
            },
        }
    }
}

impl Uploads {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Entry>>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Drops expired sessions (their bytes and budget go with them). A session busy in a call
    /// is left for the next sweep.
    fn sweep(&self, now: Instant) {
        self.map().retain(|_, e| match e.session.try_lock() {
            Ok(s) => s.expires > now,
            Err(_) => true,
        });
    }

    /// The session `name`, if it is the caller's. Another principal's answers like a missing one.
    fn get(&self, who: &Principal, name: &str) -> Result<Arc<tokio::sync::Mutex<Session>>, Status> {
        let id = names::parse(name, "uploads").ok_or_else(|| {
            bad_request(
                "name",
                format!("{name:?} is not an upload name like uploads/{{id}}"),
            )
        })?;
        let gone = || {
            Status::not_found(format!(
                "{name} not found: it expired, failed a check, or was never yours; start the upload again"
            ))
        };
        let e = self.map().get(id).cloned().ok_or_else(gone)?;
        if e.owner != who.id {
            return Err(gone());
        }
        Ok(e.session.clone())
    }

    fn remove(&self, name: &str) {
        if let Some(id) = names::parse(name, "uploads") {
            self.map().remove(id);
        }
    }

    pub(crate) fn begin(
        &self,
        state: &State,
        who: &Principal,
        meta: Option<pb::UploadMetadata>,
    ) -> Result<pb::UploadSession, Status> {
        let meta = meta.ok_or_else(|| {
            bad_request(
                "metadata",
                "BeginUpload needs metadata (file name, declared size)",
            )
        })?;
        let now = Instant::now();
        self.sweep(now);
        {
            let map = self.map();
            let open = map
                .values()
                .filter(|e| {
                    // A session busy in a call counts as open.
                    e.owner == who.id
                        && e.session
                            .try_lock()
                            .map(|s| !matches!(s.phase, Phase::Committed(_)))
                            .unwrap_or(true)
                })
                .count();
            if open >= MAX_OPEN_PER_PRINCIPAL {
                return Err(limit_exceeded(
                    "upload_sessions",
                    format!(
                        "you have {open} uploads open (at most {MAX_OPEN_PER_PRINCIPAL}); finish one or wait {} minutes for it to expire",
                        IDLE_EXPIRY.as_secs() / 60
                    ),
                ));
            }
            if map.len() >= MAX_SESSIONS {
                return Err(Status::unavailable(
                    "the server has too many uploads open; retry in a minute",
                ));
            }
        }
        let ingest = Ingest::begin(state, meta)?;
        let id = uuid::Uuid::now_v7().simple().to_string();
        let name = format!("uploads/{id}");
        let (expires, expires_unix_ms) = expiry(now, IDLE_EXPIRY);
        let session = Session {
            declared: ingest.meta().declared_size_bytes,
            received: 0,
            expires,
            expires_unix_ms,
            phase: Phase::Open(Box::new(ingest)),
        };
        let out = session.pb(&name);
        self.map().insert(
            id,
            Arc::new(Entry {
                owner: who.id.clone(),
                session: Arc::new(tokio::sync::Mutex::new(session)),
            }),
        );
        tracing::info!(upload = %name, declared = out.declared_size_bytes, "upload session begun");
        Ok(out)
    }

    pub(crate) async fn append(
        &self,
        state: &State,
        who: &Principal,
        req: pb::AppendUploadRequest,
    ) -> Result<pb::UploadSession, Status> {
        if req.chunk.len() > MAX_CHUNK_BYTES {
            return Err(bad_request(
                "chunk",
                format!(
                    "a chunk may be at most {MAX_CHUNK_BYTES} bytes (it was {}); send smaller ones",
                    req.chunk.len()
                ),
            ));
        }
        let s = self.get(who, &req.name)?;
        let mut s = s.lock().await;
        let received = s.received;
        let Phase::Open(ingest) = &mut s.phase else {
            return Err(precondition(format!(
                "{} is committed or being committed; no more bytes can be added",
                req.name
            )));
        };
        let end = req.offset.checked_add(req.chunk.len() as u64);
        if req.offset != received {
            // A retried call whose answer was lost: the bytes are already here.
            let replay = end.is_some_and(|end| end <= received)
                && ingest.received()[req.offset as usize..][..req.chunk.len()] == req.chunk[..];
            if replay {
                return Ok(s.pb(&req.name));
            }
            return Err(precondition(format!(
                "{} holds {received} bytes; append from offset {received}, not {}",
                req.name, req.offset
            )));
        }
        if let Err(e) = ingest.feed(state, &req.chunk) {
            drop(s);
            self.remove(&req.name);
            tracing::info!(upload = %req.name, code = ?e.code(), reason = e.message(), "upload refused");
            return Err(e);
        }
        s.received += req.chunk.len() as u64;
        (s.expires, s.expires_unix_ms) = expiry(Instant::now(), IDLE_EXPIRY);
        Ok(s.pb(&req.name))
    }

    pub(crate) async fn status(
        &self,
        who: &Principal,
        name: &str,
    ) -> Result<pb::UploadSession, Status> {
        let s = self.get(who, name)?;
        let s = s.lock().await;
        Ok(s.pb(name))
    }

    /// Commits on a task of its own, so a caller that goes away mid-check cannot leave the
    /// session half committed: its retry waits for the same outcome.
    pub(crate) async fn commit(
        self: &Arc<Self>,
        designs: &Designs,
        who: &Principal,
        name: &str,
    ) -> Result<pb::Design, Status> {
        let session = self.get(who, name)?;
        let (this, designs, who, name) =
            (self.clone(), designs.clone(), who.clone(), name.to_string());
        tokio::spawn(async move {
            let mut s = session.lock_owned().await;
            let ingest = match std::mem::replace(&mut s.phase, Phase::Committing) {
                Phase::Open(ingest) => ingest,
                Phase::Committed(design) => {
                    s.phase = Phase::Committed(design.clone());
                    let rec = designs.design(&who, &design, crate::access::DesignUse::Read)?;
                    return Ok(crate::designs::design_to_pb(&rec));
                }
                Phase::Committing => {
                    return Err(precondition(format!("{name} is being committed; retry")));
                }
            };
            // The lock stays held while checking: a concurrent append or commit waits for it.
            match designs.store_upload(&who, *ingest).await {
                Ok(design) => {
                    s.phase = Phase::Committed(design.name.clone());
                    (s.expires, s.expires_unix_ms) = expiry(Instant::now(), COMMITTED_KEPT);
                    Ok(design)
                }
                Err(e) => {
                    drop(s);
                    this.remove(&name);
                    tracing::info!(upload = %name, code = ?e.code(), reason = e.message(), "upload refused");
                    Err(e)
                }
            }
        })
        .await
        .map_err(|e| Status::internal(format!("committing the upload failed: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(map: &Uploads, id: &str, expires: Instant) -> Arc<Entry> {
        let e = Arc::new(Entry {
            owner: "p".into(),
            session: Arc::new(tokio::sync::Mutex::new(Session {
                declared: 1,
                received: 0,
                expires,
                expires_unix_ms: 0,
                phase: Phase::Committed(String::new()),
            })),
        });
        map.map().insert(id.into(), e.clone());
        e
    }

    #[test]
    fn a_sweep_drops_expired_sessions_but_not_one_in_use() {
        let u = Uploads::default();
        let now = Instant::now();
        entry(&u, "old", now + Duration::from_secs(1));
        entry(&u, "fresh", now + IDLE_EXPIRY);
        let busy = entry(&u, "busy", now + Duration::from_secs(1));
        let guard = busy.session.try_lock().unwrap();
        u.sweep(now + Duration::from_secs(2));
        let mut left: Vec<String> = u.map().keys().cloned().collect();
        left.sort();
        assert_eq!(left, ["busy", "fresh"]);
        drop(guard);
        u.sweep(now + Duration::from_secs(2));
        assert_eq!(u.map().len(), 1);
        u.sweep(now + IDLE_EXPIRY + Duration::from_secs(1));
        assert!(u.map().is_empty());
    }
}
