//! The store's public API as another backend and the server see it: no type of the embedded
//! engine in it (errors included), and the sled store usable through the traits alone.

use std::io::Write;
use std::sync::Arc;

use fabrouter_store::{
    BlobStore, BlobWriter, DesignRecord, SledStore, Store, StoreError, sha256_hex,
};

/// Names every variant with its payload type. Compiles only while `StoreError` has exactly
/// these variants, so an engine's error type coming back into it fails this test.
#[allow(
    clippy::borrowed_box,
    reason = "the exact payload type is what is checked"
)]
fn kind(e: &StoreError) -> &'static str {
    match e {
        StoreError::Unavailable(reason) => {
            let _: &String = reason;
            "unavailable"
        }
        StoreError::Backend(cause) => {
            let _: &Box<dyn std::error::Error + Send + Sync> = cause;
            "backend"
        }
        StoreError::Io(e) => {
            let _: &std::io::Error = e;
            "io"
        }
        StoreError::Corrupt { tree, reason } => {
            let _: (&&'static str, &String) = (tree, reason);
            "corrupt"
        }
        StoreError::NotFound(_) => "not found",
        StoreError::AlreadyExists(_) => "already exists",
        StoreError::Conflict(_) => "conflict",
    }
}

#[test]
fn errors_say_what_went_wrong_without_naming_the_engine() {
    let cause = std::io::Error::other("disk on fire");
    let e = StoreError::backend(cause);
    assert_eq!(kind(&e), "backend");
    assert!(!e.is_transient());
    assert!(std::error::Error::source(&e).is_some());
    assert!(e.to_string().contains("disk on fire"), "{e}");
    assert!(StoreError::Unavailable("connection refused".into()).is_transient());
    assert!(StoreError::Conflict("job j1".into()).is_transient());
    assert!(!StoreError::NotFound("design d".into()).is_transient());
    assert!(
        !StoreError::Corrupt {
            tree: "designs",
            reason: "bad".into()
        }
        .is_transient()
    );
}

/// Public items of the crate's sources (lines starting `pub `, not `pub(crate)` or
/// `pub(super)`) mention no sled type; only the name `SledStore` (and its private module) may
/// appear.
#[test]
fn no_public_item_names_a_sled_type() {
    let sources = [
        ("lib.rs", include_str!("../src/lib.rs")),
        ("blob.rs", include_str!("../src/blob.rs")),
        (
            "sled_store/mod.rs",
            include_str!("../src/sled_store/mod.rs"),
        ),
        (
            "sled_store/jobs.rs",
            include_str!("../src/sled_store/jobs.rs"),
        ),
    ];
    for (file, text) in sources {
        for (n, line) in text.lines().enumerate() {
            let l = line.trim_start();
            if l.starts_with("pub ") {
                assert!(
                    !l.replace("SledStore", "")
                        .replace("sled_store", "")
                        .to_lowercase()
                        .contains("sled"),
                    "{file}:{}: a public item names sled: {l}",
                    n + 1
                );
            }
        }
    }
    for (file, text) in &sources[..2] {
        assert!(!text.contains("sled::"), "{file} uses sled");
    }
}

#[test]
fn the_sled_store_works_through_the_traits_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path()).unwrap());
    let blobs: &dyn BlobStore = store.blobs();
    let bytes: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    let mut w: Box<dyn BlobWriter> = blobs.writer().unwrap();
    for chunk in bytes.chunks(64 * 1024) {
        w.write_all(chunk).unwrap();
    }
    let blob = w.commit().unwrap();
    assert_eq!(blob.sha256, sha256_hex(&bytes));
    let rec = DesignRecord {
        id: "01".into(),
        owner: "alice".into(),
        file_name: "part.stl".into(),
        size_bytes: blob.size_bytes,
        sha256: blob.sha256.clone(),
        format: 1,
        created_unix_ms: 0,
        report: Vec::new(),
        repaired_from: None,
    };
    store.put_design(&rec, &blob).unwrap();
    drop(blob);
    let r = store.blobs().open(&rec.sha256).unwrap();
    assert_eq!(r.len(), bytes.len() as u64);
    assert_eq!(store.blobs().read_all(&rec.sha256).unwrap(), bytes);
    assert!(matches!(
        store.blobs().open(&sha256_hex(b"never stored")),
        Err(StoreError::NotFound(_))
    ));
    assert!(store.delete_design("01").unwrap());
    assert!(!store.blobs().exists(&rec.sha256).unwrap());
}
