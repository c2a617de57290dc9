//! fabd serving a store it did not open (`start_with_store`), as a server database would be
//! handed in: designs go over real gRPC on loopback into that store's records and blobs, and
//! nothing of the embedded default is opened beside it.

use std::sync::Arc;

use fabrouter_api::v1 as pb;
use fabrouter_store::{SledStore, Store, sha256_hex};
use fabrouter_testkit::router::Router;
use tokio_stream::StreamExt;

/// A binary STL of `n` facets (a fan of triangles; enough bytes for several download chunks).
fn binary_stl(n: u32) -> Vec<u8> {
    let mut b = vec![0u8; 80];
    b.extend_from_slice(&n.to_le_bytes());
    for i in 0..n {
        let z = i as f32;
        let tri: [[f32; 3]; 4] = [[0.0, 0.0, 1.0], [0.0, 0.0, z], [1.0, 0.0, z], [0.0, 1.0, z]];
        for v in tri {
            for c in v {
                b.extend_from_slice(&c.to_le_bytes());
            }
        }
        b.extend_from_slice(&[0, 0]);
    }
    b
}

#[tokio::test]
async fn a_store_handed_in_receives_uploads_and_serves_downloads() {
    let data = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SledStore::open(elsewhere.path()).unwrap());
    let r = Router::start_with_store(data.path(), store.clone()).await;
    let alice = r.designer().await;
    let mut c = r.designs(&alice);

    let bytes = binary_stl(12_000);
    assert!(bytes.len() > 2 * 256 * 1024);
    let mut msgs = vec![pb::UploadDesignRequest {
        payload: Some(pb::upload_design_request::Payload::Metadata(
            pb::UploadMetadata {
                file_name: "fan.stl".into(),
                declared_size_bytes: bytes.len() as u64,
                sha256: sha256_hex(&bytes),
                format: pb::DesignFormat::Stl as i32,
            },
        )),
    }];
    msgs.extend(bytes.chunks(50_000).map(|c| pb::UploadDesignRequest {
        payload: Some(pb::upload_design_request::Payload::Chunk(c.to_vec())),
    }));
    let d = c
        .upload_design(tokio_stream::iter(msgs))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(d.sha256, sha256_hex(&bytes));
    assert_eq!(d.size_bytes, bytes.len() as u64);

    // The record and the bytes are in the store the test handed in...
    let id = d.name.strip_prefix("designs/").unwrap();
    let rec = store
        .get_design(id)
        .unwrap()
        .expect("record in the injected store");
    assert_eq!(rec.sha256, d.sha256);
    assert_eq!(store.blobs().read_all(&rec.sha256).unwrap(), bytes);
    // ...and no embedded store was opened in the data directory.
    assert!(!data.path().join("db").exists());
    assert!(!data.path().join("blobs").exists());

    let mut s = c
        .download_design(pb::DownloadDesignRequest {
            name: d.name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut back = Vec::new();
    let mut messages = 0;
    while let Some(m) = s.next().await {
        let m = m.unwrap();
        if messages == 0 {
            assert_eq!(m.total_size_bytes, bytes.len() as u64);
            assert_eq!(m.sha256, d.sha256);
        }
        messages += 1;
        back.extend(m.chunk);
    }
    assert_eq!(back, bytes);
    assert!(messages >= 3, "{messages} messages");

    let erased = c
        .delete_design(pb::DeleteDesignRequest {
            name: d.name.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .blob_erased;
    assert!(erased);
    assert!(!store.blobs().exists(&rec.sha256).unwrap());
    assert!(store.get_design(id).unwrap().is_none());
    r.stop().await;
}
