//! Fetching an assigned design from the router (`DesignService.DownloadDesign`, streamed to a
//! file chunk by chunk, its sha256 checked); designs are kept by content hash, so a design
//! printed again is not fetched again.

use std::path::{Path, PathBuf};

use fabrouter_api::v1 as pb;
use fabrouter_api::v1::design_service_client::DesignServiceClient;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

use crate::session::Bearer;

/// Largest design the node accepts (the router's own upload limit is lower).
pub const MAX_DESIGN_BYTES: u64 = 1024 * 1024 * 1024;

/// Why a download failed.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// The router refused or the stream broke.
    #[error("downloading {design}: {status}")]
    Rpc {
        /// The design.
        design: String,
        /// The router's answer.
        status: Box<tonic::Status>,
    },
    /// The bytes are not what the router promised.
    #[error("downloading {design}: {reason}")]
    Corrupt {
        /// The design.
        design: String,
        /// What did not match.
        reason: String,
    },
    /// Local file trouble.
    #[error("storing the design: {0}")]
    Io(#[from] std::io::Error),
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Downloads `design` into `dir` as `{sha256}.{ext}` unless that file is already there;
/// returns its path and sha256.
pub async fn download_design(
    channel: Channel,
    bearer: &str,
    design: &str,
    expected_sha256: &str,
    ext: &str,
    dir: &Path,
) -> Result<(PathBuf, String), DownloadError> {
    let expected = expected_sha256.to_ascii_lowercase();
    if is_sha256(&expected) {
        let cached = dir.join(format!("{expected}.{ext}"));
        if tokio::fs::try_exists(&cached).await? {
            return Ok((cached, expected));
        }
    }
    let rpc = |status: tonic::Status| DownloadError::Rpc {
        design: design.to_string(),
        status: Box::new(status),
    };
    let corrupt = |reason: String| DownloadError::Corrupt {
        design: design.to_string(),
        reason,
    };
    let mut client = DesignServiceClient::with_interceptor(channel, Bearer(bearer.to_string()));
    let mut stream = client
        .download_design(pb::DownloadDesignRequest {
            name: design.to_string(),
        })
        .await
        .map_err(rpc)?
        .into_inner();
    tokio::fs::create_dir_all(dir).await?;
    let tmp = dir.join(format!(".download-{}-{}", std::process::id(), {
        // Unique per concurrent download of this process.
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        N.fetch_add(1, Ordering::Relaxed)
    }));
    let result = async {
        let mut file = tokio::fs::File::create(&tmp).await?;
        let mut hasher = Sha256::new();
        let mut total: Option<u64> = None;
        let mut announced = String::new();
        let mut got = 0u64;
        while let Some(msg) = stream.next().await {
            let msg = msg.map_err(rpc)?;
            if total.is_none() {
                total = Some(msg.total_size_bytes);
                announced = msg.sha256.to_ascii_lowercase();
                if msg.total_size_bytes > MAX_DESIGN_BYTES {
                    return Err(corrupt(format!(
                        "{} bytes is more than the node accepts ({MAX_DESIGN_BYTES})",
                        msg.total_size_bytes
                    )));
                }
            }
            got += msg.chunk.len() as u64;
            if got > total.unwrap_or(0) {
                return Err(corrupt(format!(
                    "more bytes than the announced {}",
                    total.unwrap_or(0)
                )));
            }
            hasher.update(&msg.chunk);
            file.write_all(&msg.chunk).await?;
        }
        file.sync_all().await?;
        let sha = hex::encode(hasher.finalize());
        if Some(got) != total {
            return Err(corrupt(format!(
                "got {got} of {} bytes",
                total.unwrap_or(0)
            )));
        }
        for want in [&announced, &expected] {
            if !want.is_empty() && *want != sha {
                return Err(corrupt(format!("sha256 is {sha}, expected {want}")));
            }
        }
        Ok(sha)
    }
    .await;
    match result {
        Ok(sha) => {
            let path = dir.join(format!("{sha}.{ext}"));
            tokio::fs::rename(&tmp, &path).await?;
            Ok((path, sha))
        }
        Err(e) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            Err(e)
        }
    }
}
