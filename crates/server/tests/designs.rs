//! DesignService over real gRPC on loopback with a real sled directory: uploads, limits, aborts,
//! ownership, restarts, repair, and the transport extras (health, reflection, gRPC-web).

use std::path::{Path, PathBuf};

use fabrouter_api::v1 as pb;
use fabrouter_api::v1::admin_service_client::AdminServiceClient;
use fabrouter_api::v1::design_service_client::DesignServiceClient;
use fabrouter_server::config::Limits;
use fabrouter_testkit::router::{Authed, Bearer, Router};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

/// The embedded router with these upload limits.
async fn router(data: &Path, limits: Limits) -> Router {
    Router::start_with(data, |config| config.limits = limits).await
}

/// Files under blobs/ other than the temporary directory.
fn blob_files(r: &Router) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let root = r.dir().join("blobs");
    for shard in std::fs::read_dir(&root).unwrap() {
        let shard = shard.unwrap().path();
        for f in std::fs::read_dir(&shard).unwrap() {
            out.push(f.unwrap().path());
        }
    }
    out
}

fn reference(name: &str) -> Vec<u8> {
    let p = fabrouter_testkit::data("stl").join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn meta(name: &str, size: u64, sha: &str) -> pb::UploadDesignRequest {
    pb::UploadDesignRequest {
        payload: Some(pb::upload_design_request::Payload::Metadata(
            pb::UploadMetadata {
                file_name: name.into(),
                declared_size_bytes: size,
                sha256: sha.into(),
                format: pb::DesignFormat::Stl as i32,
            },
        )),
    }
}

fn chunk(b: &[u8]) -> pb::UploadDesignRequest {
    pb::UploadDesignRequest {
        payload: Some(pb::upload_design_request::Payload::Chunk(b.to_vec())),
    }
}

async fn upload(
    c: &mut DesignServiceClient<Authed>,
    name: &str,
    bytes: &[u8],
) -> Result<pb::Design, tonic::Status> {
    let mut msgs = vec![meta(name, bytes.len() as u64, "")];
    msgs.extend(bytes.chunks(64 * 1024).map(chunk));
    c.upload_design(tokio_stream::iter(msgs))
        .await
        .map(|r| r.into_inner())
}

/// A binary STL header declaring `n` triangles, with `n` triangles of a valid tetra fan.
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

fn ascii_stl(facets: usize) -> Vec<u8> {
    let mut s = String::from("solid t\n");
    for i in 0..facets {
        let z = i as f32;
        s.push_str(&format!(
            "facet normal 0 0 1\nouter loop\nvertex 0 0 {z}\nvertex 1 0 {z}\nvertex 0 1 {z}\nendloop\nendfacet\n"
        ));
    }
    s.push_str("endsolid t\n");
    s.into_bytes()
}

fn bad_request_field(status: &tonic::Status) -> Option<String> {
    use tonic_types::StatusExt;
    status
        .get_error_details()
        .bad_request()
        .and_then(|b| b.field_violations.first().map(|v| v.field.clone()))
}

#[tokio::test]
async fn upload_then_report_get_download() {
    let dir = tempfile::tempdir().unwrap();
    let r = router(dir.path(), Limits::default()).await;
    let alice = r.designer().await;
    let mut c = r.designs(&alice);
    let bytes = reference("prusaslicer__20mmbox-CRLF.stl");
    let d = upload(&mut c, "box.stl", &bytes).await.unwrap();
    assert!(d.name.starts_with("designs/"));
    assert_eq!(d.size_bytes, bytes.len() as u64);
    assert_eq!(d.sha256, fabrouter_store::sha256_hex(&bytes));
    let rep = d.mesh_report.clone().unwrap();
    assert_eq!(rep.triangles, 12);
    assert_eq!(rep.vertices, 8);
    assert!((rep.volume_mm3 - 8000.0).abs() < 0.01, "{}", rep.volume_mm3);
    assert_eq!(rep.open_edges, 0);
    assert_eq!(rep.verdict, pb::Verdict::Printable as i32);
    assert_eq!(rep.stl_format, "ascii");

    let got = c
        .get_mesh_report(pb::GetMeshReportRequest {
            name: d.name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got, rep);
    let mut s = c
        .download_design(pb::DownloadDesignRequest {
            name: d.name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut back = Vec::new();
    while let Some(m) = s.next().await {
        back.extend(m.unwrap().chunk);
    }
    assert_eq!(back, bytes);
    r.stop().await;
}

#[tokio::test]
async fn declared_sha256_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let r = router(dir.path(), Limits::default()).await;
    let mut c = r.designs(&r.designer().await);
    let bytes = reference("prusaslicer__20mmbox-CRLF.stl");
    let wrong = "0".repeat(64);
    let msgs = vec![meta("box.stl", bytes.len() as u64, &wrong), chunk(&bytes)];
    let e = c.upload_design(tokio_stream::iter(msgs)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(bad_request_field(&e).as_deref(), Some("sha256"));
    assert!(blob_files(&r).is_empty());
    let right = fabrouter_store::sha256_hex(&bytes);
    let msgs = vec![meta("box.stl", bytes.len() as u64, &right), chunk(&bytes)];
    c.upload_design(tokio_stream::iter(msgs)).await.unwrap();
    r.stop().await;
}

#[tokio::test]
async fn aborted_and_truncated_uploads_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let r = router(dir.path(), Limits::default()).await;
    let alice = r.designer().await;
    let bytes = reference("3dbenchy__gunwale.stl");

    // Truncated: the stream ends before the declared size.
    let mut c = r.designs(&alice);
    let msgs = vec![
        meta("g.stl", bytes.len() as u64, ""),
        chunk(&bytes[..bytes.len() / 2]),
    ];
    let e = c.upload_design(tokio_stream::iter(msgs)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("truncated"), "{}", e.message());

    // Aborted: the client goes away mid-stream.
    let (tx, rx) = mpsc::channel(4);
    tx.send(meta("g.stl", bytes.len() as u64, ""))
        .await
        .unwrap();
    tx.send(chunk(&bytes[..100_000])).await.unwrap();
    let mut c2 = r.designs(&alice);
    let call = tokio::spawn(async move { c2.upload_design(ReceiverStream::new(rx)).await });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    call.abort();
    drop(tx);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    // Unparseable: right size, wrong content.
    let garbage = vec![b'x'; 300];
    let e = upload(&mut c, "junk.stl", &garbage).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(bad_request_field(&e).as_deref(), Some("file"));

    let list = c
        .list_designs(pb::ListDesignsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(list.designs.is_empty());
    assert!(blob_files(&r).is_empty(), "{:?}", blob_files(&r));
    r.stop().await;
}

#[tokio::test]
async fn limits_are_enforced_while_streaming() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_upload_bytes: 100_000,
        max_triangles: 100,
        ..Limits::default()
    };
    let r = router(dir.path(), limits).await;
    let mut c = r.designs(&r.designer().await);

    // Declared size over the limit: refused before any byte.
    let e = c
        .upload_design(tokio_stream::iter(vec![meta("big.stl", 200_000, "")]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted);

    // Binary header declaring too many triangles: refused after the first 84 bytes, while the
    // client still holds the stream open with the rest unsent.
    let big = binary_stl(150);
    let (tx, rx) = mpsc::channel(4);
    tx.send(meta("many.stl", big.len() as u64, ""))
        .await
        .unwrap();
    tx.send(chunk(&big[..84])).await.unwrap();
    let res = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        c.upload_design(ReceiverStream::new(rx)),
    )
    .await
    .expect("the server must answer before the upload ends");
    let e = res.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted);
    assert!(e.message().contains("150"), "{}", e.message());
    drop(tx);

    // ASCII counted while streaming.
    let e = upload(&mut c, "many.stl", &ascii_stl(101))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted);
    upload(&mut c, "ok.stl", &ascii_stl(100)).await.unwrap();

    // More bytes than declared.
    let b = binary_stl(2);
    let msgs = vec![meta("x.stl", 100, ""), chunk(&b)];
    let e = c.upload_design(tokio_stream::iter(msgs)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);

    // Empty stream and chunk-before-metadata are explained.
    let e = c
        .upload_design(tokio_stream::iter(Vec::<pb::UploadDesignRequest>::new()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = c
        .upload_design(tokio_stream::iter(vec![chunk(&b)]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(bad_request_field(&e).as_deref(), Some("metadata"));
    r.stop().await;
}

/// An ASCII STL of one endless line is refused once the line passes 64 KiB, while the client
/// still streams, with a reason that names the line (it once said "truncated" after buffering
/// all of it).
#[tokio::test]
async fn an_endless_ascii_line_is_refused_while_streaming() {
    let dir = tempfile::tempdir().unwrap();
    let r = router(dir.path(), Limits::default()).await;
    let mut c = r.designs(&r.designer().await);
    let (tx, rx) = mpsc::channel(2);
    tx.send(meta("line.stl", 200_000_000, "")).await.unwrap();
    let call = tokio::spawn(async move { c.upload_design(ReceiverStream::new(rx)).await });
    tx.send(chunk(b"solid endless\n")).await.unwrap();
    let mut sent = 0usize;
    let block = vec![b'7'; 16 * 1024];
    // Refused at 64 KiB; what the client sends before it hears so is HTTP/2's flow-control
    // window (about 1 MiB), not the 200 MB it announced.
    while sent < 32 << 20 && tx.send(chunk(&block)).await.is_ok() {
        sent += block.len();
    }
    let e = tokio::time::timeout(std::time::Duration::from_secs(10), call)
        .await
        .expect("the server must answer while the upload streams")
        .unwrap()
        .unwrap_err();
    assert!(
        sent < 8 << 20,
        "the client could send {sent} bytes of one line"
    );
    assert_eq!(e.code(), Code::ResourceExhausted, "{}", e.message());
    assert!(
        e.message().contains("line 2 is longer than 65,536 bytes"),
        "{}",
        e.message()
    );
    r.stop().await;
}

/// Every reference file uploads; triangle counts match the manifest and open edges match
/// admesh's verdict on which files are broken.
#[tokio::test]
async fn every_reference_file_uploads_with_admesh_figures() {
    let dir = tempfile::tempdir().unwrap();
    let r = router(dir.path(), Limits::default()).await;
    let mut c = r.designs(&r.designer().await);
    let root = fabrouter_testkit::data("");
    let manifest = std::fs::read_to_string(root.join("manifest.tsv")).unwrap();
    let admesh = std::fs::read_to_string(root.join("admesh.tsv")).unwrap();
    let header: Vec<&str> = admesh.lines().next().unwrap().split('\t').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let mut seen = 0;
    for line in manifest.lines().skip(1) {
        let f: Vec<&str> = line.split('\t').collect();
        let (file, triangles) = (f[0], f[4].parse::<u64>().unwrap());
        let d = upload(&mut c, file, &reference(file))
            .await
            .unwrap_or_else(|e| panic!("{file}: {e:?}"));
        let rep = d.mesh_report.unwrap();
        assert_eq!(rep.triangles, triangles, "{file}");
        let check_row = admesh
            .lines()
            .map(|l| l.split('\t').collect::<Vec<_>>())
            .find(|row| row[0] == file && row[1] == "check");
        if let Some(row) = check_row.filter(|row| row[2] == "0") {
            let open: u64 = row[col("orig_disc_total")].parse().unwrap();
            assert_eq!(rep.open_edges > 0, open > 0, "{file}: open edges");
            let vol: f64 = row[col("volume")].parse().unwrap();
            if open == 0 {
                assert!(
                    (rep.volume_mm3 - vol).abs() <= 1e-3 * vol.abs().max(1e-3),
                    "{file}: volume {} vs admesh {vol}",
                    rep.volume_mm3
                );
            }
            if open > 0 {
                assert_eq!(rep.verdict, pb::Verdict::NotPrintable as i32, "{file}");
            }
        }
        seen += 1;
    }
    assert_eq!(seen, 15);
    r.stop().await;
}

#[tokio::test]
async fn another_designer_can_neither_read_list_nor_delete() {
    let dir = tempfile::tempdir().unwrap();
    let r = router(dir.path(), Limits::default()).await;
    let (alice, bob) = (r.designer().await, r.designer().await);
    let mut a = r.designs(&alice);
    let mut b = r.designs(&bob);
    let bytes = reference("trimesh__20mm-xyz-cube.stl");
    let d = upload(&mut a, "cube.stl", &bytes).await.unwrap();
    let name = d.name.clone();
    let nf = |res: Result<(), tonic::Status>| assert_eq!(res.unwrap_err().code(), Code::NotFound);
    nf(b.get_design(pb::GetDesignRequest { name: name.clone() })
        .await
        .map(|_| ()));
    nf(
        b.get_mesh_report(pb::GetMeshReportRequest { name: name.clone() })
            .await
            .map(|_| ()),
    );
    nf(
        b.delete_design(pb::DeleteDesignRequest { name: name.clone() })
            .await
            .map(|_| ()),
    );
    nf(
        b.repair_design(pb::RepairDesignRequest { name: name.clone() })
            .await
            .map(|_| ()),
    );
    nf(
        b.download_design(pb::DownloadDesignRequest { name: name.clone() })
            .await
            .map(|_| ()),
    );
    let bl = b
        .list_designs(pb::ListDesignsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(bl.designs.is_empty());

    // Bob uploads the identical bytes: stored once, and Alice's delete keeps them for Bob.
    let bd = upload(&mut b, "mine.stl", &bytes).await.unwrap();
    assert_eq!(blob_files(&r).len(), 1);
    let del = a
        .delete_design(pb::DeleteDesignRequest { name: name.clone() })
        .await
        .unwrap();
    assert!(!del.into_inner().blob_erased);
    assert_eq!(blob_files(&r).len(), 1);
    nf(a.get_design(pb::GetDesignRequest { name })
        .await
        .map(|_| ()));
    let del = b
        .delete_design(pb::DeleteDesignRequest { name: bd.name })
        .await
        .unwrap();
    assert!(del.into_inner().blob_erased);
    assert!(blob_files(&r).is_empty());

    // No token, a bad token, a designer at the admin service.
    let mut anon = DesignServiceClient::new(r.channel.clone());
    let e = anon
        .list_designs(pb::ListDesignsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let e = r
        .designs("fab_nope")
        .list_designs(pb::ListDesignsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let mut as_designer =
        AdminServiceClient::with_interceptor(r.channel.clone(), Bearer(alice.clone()));
    let e = as_designer
        .create_token(pb::CreateTokenRequest {
            role: pb::Role::Admin as i32,
            label: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    r.stop().await;
}

#[tokio::test]
async fn designs_survive_a_restart_and_pages_walk_the_list() {
    let dir = tempfile::tempdir().unwrap();
    let r = router(dir.path(), Limits::default()).await;
    let alice = r.designer().await;
    let mut c = r.designs(&alice);
    let mut names = Vec::new();
    for i in 1..=5u32 {
        names.push(
            upload(&mut c, &format!("{i}.stl"), &ascii_stl(i as usize))
                .await
                .unwrap()
                .name,
        );
    }
    let admin_token = r.admin.clone();
    r.stop().await;

    let r = router(dir.path(), Limits::default()).await;
    assert_eq!(
        r.admin, admin_token,
        "the first-start token is not replaced"
    );
    let mut c = r.designs(&alice);
    let mut listed = Vec::new();
    let mut token = String::new();
    loop {
        let page = c
            .list_designs(pb::ListDesignsRequest {
                page_size: 2,
                page_token: token.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.designs.len() <= 2);
        listed.extend(page.designs.into_iter().map(|d| d.name));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    names.reverse();
    assert_eq!(listed, names, "newest first, every design once");
    let rep = c
        .get_mesh_report(pb::GetMeshReportRequest {
            name: names[0].clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rep.triangles, 5);
    r.stop().await;
}

#[tokio::test]
async fn repair_creates_a_linked_design_that_checks_cleaner() {
    let dir = tempfile::tempdir().unwrap();
    let r = router(dir.path(), Limits::default()).await;
    let mut c = r.designs(&r.designer().await);
    let d = upload(
        &mut c,
        "holes.stl",
        &reference("admesh__block_fill-holes-bad.stl"),
    )
    .await
    .unwrap();
    assert!(d.mesh_report.as_ref().unwrap().open_edges > 0);
    let rep = c
        .repair_design(pb::RepairDesignRequest {
            name: d.name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let fixed = rep.design.unwrap();
    assert_eq!(fixed.repaired_from, d.name);
    assert_ne!(fixed.name, d.name);
    let fr = fixed.mesh_report.unwrap();
    assert_eq!(fr.open_edges, 0);
    assert_eq!(fr.triangles, 12);
    assert!(rep.summary.unwrap().holes_filled >= 1);
    let list = c
        .list_designs(pb::ListDesignsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.designs.len(), 2);
    r.stop().await;
}

#[tokio::test]
async fn health_reflection_grpc_web_and_auth() {
    let dir = tempfile::tempdir().unwrap();
    let r = router(dir.path(), Limits::default()).await;
    let addr = r.addr();

    let mut health = tonic_health::pb::health_client::HealthClient::new(r.channel.clone());
    let h = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "fabrouter.v1.DesignService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        h.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    use tonic_reflection::pb::v1 as refl;
    let mut rc = refl::server_reflection_client::ServerReflectionClient::new(r.channel.clone());
    let req = refl::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            refl::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let mut resp = rc
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .unwrap()
        .into_inner();
    let msg = resp.next().await.unwrap().unwrap();
    let Some(refl::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        msg.message_response
    else {
        panic!("unexpected reflection answer");
    };
    let services: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for s in [
        "fabrouter.v1.DesignService",
        "fabrouter.v1.JobService",
        "grpc.health.v1.Health",
    ] {
        assert!(
            services.iter().any(|x| x == s),
            "{s} missing from {services:?}"
        );
    }

    // The same through v1alpha, which grpcio-reflection, older grpcurl, Evans and Postman speak.
    use tonic_reflection::pb::v1alpha as refl_alpha;
    let mut rc =
        refl_alpha::server_reflection_client::ServerReflectionClient::new(r.channel.clone());
    let req = refl_alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            refl_alpha::server_reflection_request::MessageRequest::FileContainingSymbol(
                "fabrouter.v1.JobService".into(),
            ),
        ),
    };
    let msg = rc
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .unwrap()
        .into_inner()
        .next()
        .await
        .unwrap()
        .unwrap();
    let Some(refl_alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(f)) =
        msg.message_response
    else {
        panic!("v1alpha reflection did not describe JobService: {msg:?}");
    };
    assert!(!f.file_descriptor_proto.is_empty());

    // gRPC-web over HTTP/1.1 from a browser origin: preflight, then WhoAmI.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let http = |req: String| async move {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        let _ =
            tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).into_owned()
    };
    let pre = http(format!(
        "OPTIONS /fabrouter.v1.AdminService/WhoAmI HTTP/1.1\r\nHost: {addr}\r\nOrigin: https://shop.example\r\nAccess-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: authorization,content-type,x-grpc-web\r\nConnection: close\r\n\r\n"
    ))
    .await;
    assert!(pre.starts_with("HTTP/1.1 200"), "{pre}");
    assert!(
        pre.to_ascii_lowercase()
            .contains("access-control-allow-origin: https://shop.example"),
        "{pre}"
    );
    let call = http(format!(
        "POST /fabrouter.v1.AdminService/WhoAmI HTTP/1.1\r\nHost: {addr}\r\nOrigin: https://shop.example\r\nContent-Type: application/grpc-web+proto\r\nX-Grpc-Web: 1\r\nAuthorization: Bearer {}\r\nContent-Length: 5\r\nConnection: close\r\n\r\n\0\0\0\0\0",
        r.admin
    ))
    .await;
    assert!(call.starts_with("HTTP/1.1 200"), "{call}");
    assert!(call.contains("grpc-status:0"), "{call}");
    assert!(call.contains("principals/"), "{call}");

    let mut jobs = fabrouter_api::v1::job_service_client::JobServiceClient::new(r.channel.clone());
    let e = jobs
        .get_job(pb::GetJobRequest {
            name: "jobs/x".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert!(e.message().contains("authorization"), "{}", e.message());
    r.stop().await;
}

#[tokio::test]
async fn estimates_are_computed_once_and_explain_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let r = router(dir.path(), Limits::default()).await;
    let token = r.designer().await;
    let mut c = r.designs(&token);
    let boxed = upload(
        &mut c,
        "box.stl",
        &reference("prusaslicer__20mmbox-CRLF.stl"),
    )
    .await
    .unwrap();
    let mut est =
        fabrouter_api::v1::estimate_service_client::EstimateServiceClient::with_interceptor(
            r.channel.clone(),
            Bearer(token.clone()),
        );
    let profiles = est
        .list_profiles(pb::ListProfilesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(
        profiles
            .profiles
            .iter()
            .any(|p| p.name == "prusaslicer-b" && !p.toml.is_empty())
    );
    let ask = pb::EstimateDesignRequest {
        design: boxed.name.clone(),
        profile: "prusaslicer-b".into(),
    };
    let first = est.estimate_design(ask.clone()).await.unwrap().into_inner();
    assert!(!first.cached);
    assert_eq!(first.layers, 100);
    // PrusaSlicer 2.5 (profile B) says 1177 s and 1485.36 mm for this box.
    assert!(
        (first.print_time_s / 1177.0 - 1.0).abs() < 0.10,
        "{}",
        first.print_time_s
    );
    assert!(
        (first.filament_mm / 1485.36 - 1.0).abs() < 0.05,
        "{}",
        first.filament_mm
    );
    let again = est.estimate_design(ask).await.unwrap().into_inner();
    assert!(again.cached);
    assert_eq!(again.print_time_s, first.print_time_s);

    // Too big for the profile's bed: a reason, not a number.
    let counter = upload(
        &mut c,
        "counter.stl",
        &reference("trimesh__counter.unitsmm.stl"),
    )
    .await
    .unwrap();
    let e = est
        .estimate_design(pb::EstimateDesignRequest {
            design: counter.name,
            profile: "prusaslicer-b".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("does not fit"), "{}", e.message());
    let e = est
        .estimate_design(pb::EstimateDesignRequest {
            design: boxed.name,
            profile: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    r.stop().await;
}

/// A reference G-code file (gzipped beside the STL files), unpacked.
fn reference_gcode(name: &str) -> Vec<u8> {
    use std::io::Read;
    let p = fabrouter_testkit::data("gcode").join(name);
    let gz = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(gz.as_slice())
        .read_to_end(&mut out)
        .unwrap();
    out
}

async fn upload_gcode(
    c: &mut DesignServiceClient<Authed>,
    name: &str,
    bytes: &[u8],
) -> Result<pb::Design, tonic::Status> {
    let mut first = meta(name, bytes.len() as u64, "");
    if let Some(pb::upload_design_request::Payload::Metadata(m)) = &mut first.payload {
        m.format = pb::DesignFormat::Gcode as i32;
    }
    let mut msgs = vec![first];
    msgs.extend(bytes.chunks(64 * 1024).map(chunk));
    c.upload_design(tokio_stream::iter(msgs))
        .await
        .map(|r| r.into_inner())
}

/// The number after `; {key} = ` in a PrusaSlicer file.
fn stated(gcode: &[u8], key: &str) -> String {
    let text = String::from_utf8_lossy(gcode);
    let prefix = format!("; {key} = ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("the file states no {key}"))
        .trim()
        .to_string()
}

#[tokio::test]
async fn pre_sliced_gcode_uploads_with_its_own_figures_and_bad_gcode_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_upload_bytes: 4 << 20,
        ..Limits::default()
    };
    let r = router(dir.path(), limits).await;
    let alice = r.designer().await;
    let mut c = r.designs(&alice);

    let gcode = reference_gcode("prusaslicer_B__trimesh__20mm-xyz-cube.gcode.gz");
    let d = upload_gcode(&mut c, "cube.gcode", &gcode).await.unwrap();
    assert_eq!(d.format, pb::DesignFormat::Gcode as i32);
    assert!(d.mesh_report.is_none());
    let g = d.gcode_report.expect("a G-code report");
    // What the file says about itself comes back in the report.
    let grams: f64 = stated(&gcode, "filament used [g]").parse().unwrap();
    assert!((g.slicer_filament_g - grams).abs() < 1e-6, "{g:?}");
    assert!(g.slicer_time_s > 60.0);
    assert_eq!(g.firmware_flavor, stated(&gcode, "gcode_flavor"));
    assert_eq!(g.filament_type, stated(&gcode, "filament_type"));
    let layer_changes = String::from_utf8_lossy(&gcode)
        .lines()
        .filter(|l| *l == ";LAYER_CHANGE")
        .count();
    assert_eq!(g.layers as usize, layer_changes);
    // The cube is 20 mm tall and printed near the bed's centre.
    let max = g.print_max_mm.unwrap();
    assert!((max.z - 20.0).abs() < 0.01, "{max:?}");
    assert!(max.x > 100.0 && max.x < 200.0, "{max:?}");

    // A G-code design has no mesh to report or repair, and says so.
    let e = c
        .get_mesh_report(pb::GetMeshReportRequest {
            name: d.name.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    let e = c
        .repair_design(pb::RepairDesignRequest {
            name: d.name.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    let got = c
        .get_design(pb::GetDesignRequest {
            name: d.name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.gcode_report.unwrap().layers, g.layers);
    c.delete_design(pb::DeleteDesignRequest { name: d.name })
        .await
        .unwrap();

    // An STL sent as G-code, a binary .bgcode, and a file with a line longer than the limit
    // are refused with the reason, and leave nothing behind.
    let stl = reference("trimesh__20mm-xyz-cube.stl");
    let e = upload_gcode(&mut c, "cube.gcode", &stl).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    let e = upload_gcode(&mut c, "x.bgcode", b"GCDE\x01\x00\x00\x00rest")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("bgcode"), "{}", e.message());
    let mut long = b"G28\nG1 X10 Y10 Z0.2 E1 ; ".to_vec();
    long.extend(std::iter::repeat_n(
        b'x',
        fabrouter_server::designs::MAX_GCODE_LINE_BYTES + 1,
    ));
    long.push(b'\n');
    let e = upload_gcode(&mut c, "long.gcode", &long).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    let list = c
        .list_designs(pb::ListDesignsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(list.designs.is_empty(), "{:?}", list.designs);
    assert!(blob_files(&r).is_empty(), "{:?}", blob_files(&r));
    r.stop().await;
}
