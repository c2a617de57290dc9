//! Upload sessions (BeginUpload, AppendUpload, GetUpload, CommitUpload) over real gRPC on
//! loopback: the same design and report as UploadDesign for the same bytes, resuming after a
//! dropped call, a replayed chunk, the same errors as UploadDesign on a bad file and on every
//! limit (and nothing stored), and the bounds on sessions.

use std::path::Path;
use std::time::Duration;

use fabrouter_api::v1 as pb;
use fabrouter_api::v1::design_service_client::DesignServiceClient;
use fabrouter_server::config::Limits;
use fabrouter_testkit::router::{Authed, Bearer, Router, connect};
use tonic::{Code, Status};

async fn router(data: &Path, limits: Limits) -> Router {
    Router::start_with(data, |config| config.limits = limits).await
}

fn reference(name: &str) -> Vec<u8> {
    std::fs::read(fabrouter_testkit::data("stl").join(name)).unwrap()
}

fn metadata(name: &str, size: u64, sha: &str) -> pb::UploadMetadata {
    pb::UploadMetadata {
        file_name: name.into(),
        declared_size_bytes: size,
        sha256: sha.into(),
        format: pb::DesignFormat::Stl as i32,
    }
}

/// UploadDesign, streamed in 64 KiB chunks.
async fn stream_upload(
    c: &mut DesignServiceClient<Authed>,
    meta: pb::UploadMetadata,
    bytes: &[u8],
) -> Result<pb::Design, Status> {
    let mut msgs = vec![pb::UploadDesignRequest {
        payload: Some(pb::upload_design_request::Payload::Metadata(meta)),
    }];
    msgs.extend(bytes.chunks(64 * 1024).map(|b| pb::UploadDesignRequest {
        payload: Some(pb::upload_design_request::Payload::Chunk(b.to_vec())),
    }));
    c.upload_design(tokio_stream::iter(msgs))
        .await
        .map(|r| r.into_inner())
}

async fn begin(
    c: &mut DesignServiceClient<Authed>,
    meta: pb::UploadMetadata,
) -> Result<pb::UploadSession, Status> {
    c.begin_upload(pb::BeginUploadRequest {
        metadata: Some(meta),
    })
    .await
    .map(|r| r.into_inner())
}

async fn append(
    c: &mut DesignServiceClient<Authed>,
    name: &str,
    offset: usize,
    chunk: &[u8],
) -> Result<pb::UploadSession, Status> {
    c.append_upload(pb::AppendUploadRequest {
        name: name.into(),
        offset: offset as u64,
        chunk: chunk.to_vec(),
    })
    .await
    .map(|r| r.into_inner())
}

async fn commit(c: &mut DesignServiceClient<Authed>, name: &str) -> Result<pb::Design, Status> {
    c.commit_upload(pb::CommitUploadRequest { name: name.into() })
        .await
        .map(|r| r.into_inner())
}

/// The whole session path: begin, append in `chunk` bytes, commit.
async fn session_upload(
    c: &mut DesignServiceClient<Authed>,
    meta: pb::UploadMetadata,
    bytes: &[u8],
    chunk: usize,
) -> Result<pb::Design, Status> {
    let s = begin(c, meta).await?;
    for (i, b) in bytes.chunks(chunk).enumerate() {
        append(c, &s.name, i * chunk, b).await?;
    }
    commit(c, &s.name).await
}

fn same_error(stream: &Status, session: &Status, what: &str) {
    assert_eq!(
        stream.code(),
        session.code(),
        "{what}: {stream:?} vs {session:?}"
    );
    assert_eq!(stream.message(), session.message(), "{what}");
    assert!(!session.message().is_empty(), "{what}: a reason");
}

fn blob_count(r: &Router) -> usize {
    let Ok(shards) = std::fs::read_dir(r.dir().join("blobs")) else {
        return 0;
    };
    shards
        .map(|s| s.unwrap().path())
        .filter(|p| p.is_dir() && !p.ends_with("tmp"))
        .map(|p| std::fs::read_dir(p).unwrap().count())
        .sum()
}

#[tokio::test]
async fn a_session_stores_what_upload_design_stores_and_resumes_after_a_dropped_call() {
    let dir = tempfile::tempdir().unwrap();
    let r = router(dir.path(), Limits::default()).await;
    let token = r.designer().await;
    let mut c = r.designs(&token);
    let bytes = reference("curaengine__ctrlV_3D_test.stl");
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
    let chunk = 64 * 1024;

    let s = begin(&mut c, metadata("part.stl", bytes.len() as u64, &sha))
        .await
        .unwrap();
    assert!(s.name.starts_with("uploads/"), "{}", s.name);
    assert_eq!(s.received_bytes, 0);
    assert!(s.expire_time.is_some());
    let mut at = 0;
    for b in bytes[..2 * chunk].chunks(chunk) {
        let got = append(&mut c, &s.name, at, b).await.unwrap();
        at += b.len();
        assert_eq!(got.received_bytes, at as u64);
    }

    // An answer lost on the way: the same chunk again is taken as the replay it is.
    let replay = append(&mut c, &s.name, chunk, &bytes[chunk..2 * chunk])
        .await
        .unwrap();
    assert_eq!(replay.received_bytes, at as u64);
    // A gap or different bytes at a held offset: refused, naming where to go on.
    let e = append(&mut c, &s.name, at + 10, &bytes[at + 10..at + 20])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(
        e.message().contains(&format!("offset {at}")),
        "{}",
        e.message()
    );
    let e = append(&mut c, &s.name, 0, &[0u8; 100]).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);

    // A call dropped mid-way on a connection of its own, as a browser tab losing the network.
    // Whether its chunk arrived or not, GetUpload says where the server is.
    {
        let ch = connect(&format!("http://{}", r.addr())).await;
        let mut lost = DesignServiceClient::with_interceptor(ch, Bearer(token.clone()));
        let next = bytes[at..at + chunk].to_vec();
        let name = s.name.clone();
        let call = tokio::spawn(async move {
            lost.append_upload(pb::AppendUploadRequest {
                name,
                offset: at as u64,
                chunk: next,
            })
            .await
        });
        tokio::time::sleep(Duration::from_millis(1)).await;
        call.abort();
        let _ = call.await;
    }
    let mut fresh = DesignServiceClient::with_interceptor(
        connect(&format!("http://{}", r.addr())).await,
        Bearer(token.clone()),
    );
    // The dropped call may still be finishing on the server; the session's lock orders them.
    let held = fresh
        .get_upload(pb::GetUploadRequest {
            name: s.name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let resume = held.received_bytes as usize;
    assert!(
        resume == at || resume == at + chunk,
        "held {resume} after a dropped call at {at}"
    );
    for (i, b) in bytes[resume..].chunks(chunk).enumerate() {
        append(&mut fresh, &s.name, resume + i * chunk, b)
            .await
            .unwrap();
    }
    let design = commit(&mut fresh, &s.name).await.unwrap();

    // Exactly what UploadDesign makes of the same bytes.
    let streamed = stream_upload(&mut c, metadata("part.stl", bytes.len() as u64, ""), &bytes)
        .await
        .unwrap();
    assert_eq!(design.sha256, sha);
    assert_eq!(design.sha256, streamed.sha256);
    assert_eq!(design.size_bytes, bytes.len() as u64);
    assert_eq!(design.mesh_report, streamed.mesh_report);
    assert!(design.mesh_report.as_ref().unwrap().triangles > 1000);

    // A retried commit (its answer lost) gets the same design; the session says it is done.
    let again = commit(&mut c, &s.name).await.unwrap();
    assert_eq!(again.name, design.name);
    let done = c
        .get_upload(pb::GetUploadRequest {
            name: s.name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(done.design, design.name);
    let e = append(&mut c, &s.name, bytes.len(), b"x")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);

    // Another designer cannot see, feed or commit it: NOT_FOUND, as for a missing one.
    let other = r.designer().await;
    let mut o = r.designs(&other);
    let s2 = begin(&mut c, metadata("b.stl", bytes.len() as u64, ""))
        .await
        .unwrap();
    let e = o
        .get_upload(pb::GetUploadRequest {
            name: s2.name.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = append(&mut o, &s2.name, 0, &bytes[..100])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = commit(&mut o, &s2.name).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = o
        .get_upload(pb::GetUploadRequest {
            name: "designs/x".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    r.stop().await;
}

/// A binary STL header declaring `n` triangles, with `n` triangles.
fn binary_stl(n: u32) -> Vec<u8> {
    let mut b = vec![0u8; 80];
    b.extend_from_slice(&n.to_le_bytes());
    for i in 0..n {
        let z = i as f32;
        for v in [[0.0, 0.0, 1.0], [0.0, 0.0, z], [1.0, 0.0, z], [0.0, 1.0, z]] {
            for c in v {
                b.extend_from_slice(&f32::to_le_bytes(c));
            }
        }
        b.extend_from_slice(&[0, 0]);
    }
    b
}

#[tokio::test]
async fn a_session_refuses_what_upload_design_refuses_with_the_same_error_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_upload_bytes: 100_000,
        max_triangles: 100,
        ..Limits::default()
    };
    let r = router(dir.path(), limits).await;
    let mut c = r.designs(&r.designer().await);

    // Declared size over the limit: refused at the start.
    let a = stream_upload(&mut c, metadata("big.stl", 200_000, ""), &[])
        .await
        .unwrap_err();
    let b = begin(&mut c, metadata("big.stl", 200_000, ""))
        .await
        .unwrap_err();
    assert_eq!(b.code(), Code::ResourceExhausted);
    same_error(&a, &b, "declared size over the limit");

    // Too many triangles, seen in the first 84 bytes: the append that brings them fails and
    // the session is gone.
    let many = binary_stl(150);
    let a = stream_upload(&mut c, metadata("many.stl", many.len() as u64, ""), &many)
        .await
        .unwrap_err();
    let s = begin(&mut c, metadata("many.stl", many.len() as u64, ""))
        .await
        .unwrap();
    let b = append(&mut c, &s.name, 0, &many[..84]).await.unwrap_err();
    assert_eq!(b.code(), Code::ResourceExhausted);
    same_error(&a, &b, "triangle limit");
    let e = c
        .get_upload(pb::GetUploadRequest {
            name: s.name.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    // More bytes than declared.
    let two = binary_stl(2);
    let a = stream_upload(&mut c, metadata("x.stl", 100, ""), &two)
        .await
        .unwrap_err();
    let b = session_upload(&mut c, metadata("x.stl", 100, ""), &two, 1000)
        .await
        .unwrap_err();
    assert_eq!(b.code(), Code::InvalidArgument);
    same_error(&a, &b, "more than declared");

    // Fewer bytes than declared: found at the commit.
    let a = stream_upload(&mut c, metadata("x.stl", 300, ""), &two)
        .await
        .unwrap_err();
    let b = session_upload(&mut c, metadata("x.stl", 300, ""), &two, 1000)
        .await
        .unwrap_err();
    same_error(&a, &b, "fewer than declared");

    // Not an STL at all.
    let junk = b"solid x\nfacet normal 0 0 1\nouter loop\nvertex 0 0 zero\nendloop\nendfacet\nendsolid x\n";
    let a = stream_upload(&mut c, metadata("junk.stl", junk.len() as u64, ""), junk)
        .await
        .unwrap_err();
    let b = session_upload(&mut c, metadata("junk.stl", junk.len() as u64, ""), junk, 7)
        .await
        .unwrap_err();
    assert_eq!(b.code(), Code::InvalidArgument);
    same_error(&a, &b, "unreadable STL");

    // A declared sha256 the bytes do not have.
    let good = reference("admesh__block.stl");
    let wrong = "0".repeat(64);
    let a = stream_upload(&mut c, metadata("b.stl", good.len() as u64, &wrong), &good)
        .await
        .unwrap_err();
    let b = session_upload(
        &mut c,
        metadata("b.stl", good.len() as u64, &wrong),
        &good,
        1000,
    )
    .await
    .unwrap_err();
    same_error(&a, &b, "sha256 mismatch");

    // Bad metadata.
    let a = stream_upload(&mut c, metadata("", 10, ""), &[])
        .await
        .unwrap_err();
    let b = begin(&mut c, metadata("", 10, "")).await.unwrap_err();
    same_error(&a, &b, "no file name");
    let e = c
        .begin_upload(pb::BeginUploadRequest { metadata: None })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);

    // None of it left a design or stored bytes.
    let listed = c
        .list_designs(pb::ListDesignsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.designs.is_empty(), "{:?}", listed.designs);
    assert_eq!(blob_count(&r), 0);

    // A broken but readable mesh is stored with its findings, as by UploadDesign.
    let bad = reference("admesh__block_fill-holes-bad.stl");
    let d = session_upload(
        &mut c,
        metadata("holes.stl", bad.len() as u64, ""),
        &bad,
        512,
    )
    .await
    .unwrap();
    let report = d.mesh_report.unwrap();
    assert!(report.open_edges > 0, "{report:?}");
    r.stop().await;
}

#[tokio::test]
async fn sessions_are_bounded_per_principal_by_chunk_and_by_the_upload_budget() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_upload_bytes: 100_000,
        max_inflight_upload_bytes: 250_000,
        ..Limits::default()
    };
    let r = router(dir.path(), limits).await;
    let mut c = r.designs(&r.designer().await);
    let max = fabrouter_server::uploads::MAX_OPEN_PER_PRINCIPAL;
    let mut open = Vec::new();
    for i in 0..max {
        open.push(
            begin(&mut c, metadata(&format!("{i}.stl"), 100, ""))
                .await
                .unwrap(),
        );
    }
    let e = begin(&mut c, metadata("one-more.stl", 100, ""))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted);
    assert!(
        e.message().contains(&format!("at most {max}")),
        "{}",
        e.message()
    );
    // A session that fails a check ends and frees its place.
    let e = append(&mut c, &open[0].name, 0, &[7u8; 101])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    begin(&mut c, metadata("again.stl", 100, "")).await.unwrap();

    // One chunk at most 1 MiB.
    let e = append(&mut c, &open[1].name, 0, &vec![0u8; 1024 * 1024 + 1])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);

    // Open sessions hold their declared size of the in-flight budget: when it is spent, a new
    // upload of either kind is told to come back later.
    let mut others = Vec::new();
    for _ in 0..2 {
        let mut o = r.designs(&r.designer().await);
        begin(&mut o, metadata("big.stl", 100_000, ""))
            .await
            .unwrap();
        others.push(o);
    }
    let mut late = r.designs(&r.designer().await);
    let e = begin(&mut late, metadata("late.stl", 100_000, ""))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
    let a = stream_upload(&mut late, metadata("late.stl", 100_000, ""), &[])
        .await
        .unwrap_err();
    same_error(&a, &e, "budget spent");
    r.stop().await;
}
