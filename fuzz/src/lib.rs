//! Helpers shared by the fuzz targets.

use arbitrary::Unstructured;

/// Reads the common input prefix: `[n] [n × u16 chunk sizes] [flags]`. A raw file prefixed
/// with two zero bytes therefore means "one chunk, default flags", which is how the seed
/// corpora are made from the repository's test files.
pub fn split_input(u: &mut Unstructured<'_>) -> (Vec<usize>, u8) {
    let n: usize = u.int_in_range(0..=16).unwrap_or(0);
    let mut chunks = Vec::with_capacity(n);
    for _ in 0..n {
        // Mostly small chunks (boundaries inside keywords), sometimes large ones.
        let raw: u16 = u.arbitrary().unwrap_or(0);
        chunks.push(if raw & 0x8000 == 0 {
            usize::from(raw & 0x1f)
        } else {
            usize::from(raw & 0x7fff)
        });
    }
    let flags: u8 = u.arbitrary().unwrap_or(0);
    (chunks, flags)
}

/// Splits `data` by the chunk sizes, cycling through them; a size of 0 yields an empty chunk
/// (callers must cope with empty feeds) and is then skipped so that the split always ends.
pub fn chunked<'a>(data: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    if sizes.is_empty() {
        return vec![data];
    }
    let mut out = Vec::new();
    let mut rest = data;
    let mut i = 0;
    while !rest.is_empty() {
        let size = sizes[i % sizes.len()];
        i += 1;
        if size == 0 {
            out.push(&rest[..0]);
            // Guarantee progress even when every size is 0.
            let take = 1.min(rest.len());
            out.push(&rest[..take]);
            rest = &rest[take..];
            continue;
        }
        let take = size.min(rest.len());
        out.push(&rest[..take]);
        rest = &rest[take..];
    }
    out
}

/// A temporary directory in memory when the machine has one (`/dev/shm`): the network target
/// copies and opens a sled store per input, and the session target writes its job file; on a
/// disk, the store's fsyncs would dominate each run.
pub fn scratch_dir() -> std::io::Result<tempfile::TempDir> {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(dir) = tempfile::Builder::new().prefix("fabfuzz").tempdir_in(shm)
    {
        return Ok(dir);
    }
    tempfile::tempdir()
}
