//! Printers that declare their PrusaSlicer config (`PrinterSpec.slicer_config`), over real
//! gRPC on loopback: the router estimates them with the profile mapped from that config, keeps
//! one profile per distinct config (a node reconnecting with the same config costs no new
//! estimate), and refuses a config it cannot read with the printer, setting and line.

use fabrouter_api::v1 as pb;
use fabrouter_api::v1::estimate_service_client::EstimateServiceClient;
use fabrouter_api::v1::node_service_client::NodeServiceClient;
use fabrouter_profiles::{Config, Library, Triple, to_profile};
use fabrouter_testkit::data;
use fabrouter_testkit::router::*;
use tonic::Code;

/// The test vendor bundle's printer with `print` and its PLA, resolved as a node does.
fn resolved(print: &str) -> pb::SlicerConfig {
    let mut lib = Library::new();
    lib.add_file(&data("profiles/small-vendor.ini")).unwrap();
    let t = Triple {
        printer: "Test Printer One".into(),
        print: print.into(),
        filament: "Test PLA".into(),
    };
    pb::SlicerConfig {
        ini: lib.resolve_triple(&t).unwrap().to_ini(),
        printer_preset: t.printer,
        print_preset: t.print,
        filament_preset: t.filament,
    }
}

fn t1(cfg: pb::SlicerConfig) -> pb::PrinterSpec {
    pb::PrinterSpec {
        slicer_config: Some(cfg),
        ..printer("t1", BERLIN, pb::Technology::Fdm, 180.0)
    }
}

async fn profiles(est: &mut EstimateServiceClient<Authed>) -> Vec<pb::Profile> {
    est.list_profiles(pb::ListProfilesRequest {})
        .await
        .unwrap()
        .into_inner()
        .profiles
}

#[tokio::test]
async fn a_printers_presets_are_its_profile_and_a_reconnect_reestimates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let r = Router::start(dir.path(), 10.0, 30.0).await;
    let designer = r.designer().await;
    let design = r.cube(&designer, 20.0).await;
    let creds = r.node_credentials("berlin").await;
    let mut est =
        EstimateServiceClient::with_interceptor(r.channel.clone(), Bearer(designer.clone()));
    let before = profiles(&mut est).await.len();

    let normal = resolved("0.20mm NORMAL @T1");
    let node = SimNode::connect(&r, &creds, "berlin", vec![t1(normal.clone())], vec![]).await;
    r.wait_printers(&designer, 1).await;
    let listed = profiles(&mut est).await;
    assert_eq!(listed.len(), before + 1);
    let p = listed
        .iter()
        .find(|p| p.print_preset == "0.20mm NORMAL @T1")
        .expect("the printer's profile is listed");
    assert!(p.name.starts_with("prusaslicer-"), "{}", p.name);
    assert_eq!(p.printer_preset, "Test Printer One");
    assert_eq!(p.filament_preset, "Test PLA");
    // The router estimates with exactly what the node's config maps to.
    let config = Config::from_flat_ini(&normal.ini, "node.ini").unwrap();
    let expected = to_profile(&config, &p.name).unwrap().profile;
    assert_eq!(p.toml, expected.to_toml());
    assert_eq!(p.profile_hash, expected.content_hash());
    let printer = r
        .nodes(&designer)
        .get_printer(pb::GetPrinterRequest {
            name: "nodes/berlin/printers/t1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(printer.spec.unwrap().profiles, vec![p.name.clone()]);

    let ask = pb::EstimateDesignRequest {
        design: design.clone(),
        profile: p.name.clone(),
    };
    let first = est.estimate_design(ask.clone()).await.unwrap().into_inner();
    assert!(!first.cached);
    assert_eq!(first.profile_hash, p.profile_hash);

    // The node goes and comes back with the same config: same profile, estimate from cache.
    drop(node);
    let node = SimNode::connect(&r, &creds, "berlin", vec![t1(normal.clone())], vec![]).await;
    assert_eq!(profiles(&mut est).await.len(), before + 1);
    let again = est.estimate_design(ask).await.unwrap().into_inner();
    assert!(again.cached);
    assert_eq!(again.profile_hash, first.profile_hash);
    assert_eq!(again.print_time_s, first.print_time_s);

    // Another print preset is another profile, estimated anew (and slower: 0.1 mm layers).
    drop(node);
    let _node = SimNode::connect(
        &r,
        &creds,
        "berlin",
        vec![t1(resolved("0.10mm FINE @T1"))],
        vec![],
    )
    .await;
    let listed = profiles(&mut est).await;
    assert_eq!(listed.len(), before + 2);
    let fine = listed
        .iter()
        .find(|p| p.print_preset == "0.10mm FINE @T1")
        .unwrap();
    let e = est
        .estimate_design(pb::EstimateDesignRequest {
            design: design.clone(),
            profile: fine.name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!e.cached);
    assert!(
        e.print_time_s > first.print_time_s * 1.3,
        "{} vs {}",
        e.print_time_s,
        first.print_time_s
    );

    // A restarted router knows the declared profile before any node says hello again, and
    // its estimates are still cached.
    drop(_node);
    r.stop().await;
    let r = Router::start(dir.path(), 10.0, 30.0).await;
    let mut est = EstimateServiceClient::with_interceptor(r.channel.clone(), Bearer(designer));
    let after = est
        .estimate_design(pb::EstimateDesignRequest {
            design,
            profile: p.name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(after.cached);
    assert_eq!(after.profile_hash, first.profile_hash);
    let listed = profiles(&mut est).await;
    let back = listed.iter().find(|q| q.name == p.name).unwrap();
    assert_eq!(back.print_preset, "0.20mm NORMAL @T1");
    r.stop().await;
}

#[tokio::test]
async fn a_config_the_router_cannot_read_fails_the_hello_naming_printer_setting_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let r = Router::start(dir.path(), 10.0, 30.0).await;
    let creds = r.node_credentials("berlin").await;
    let hello = |ini: &str| pb::NodeMessage {
        msg: Some(pb::node_message::Msg::Hello(pb::NodeHello {
            agent_version: "test".into(),
            printers: vec![t1(pb::SlicerConfig {
                ini: ini.into(),
                ..Default::default()
            })],
            held_jobs: vec![],
        })),
    };
    let mut client = NodeServiceClient::with_interceptor(r.channel.clone(), Bearer(creds));
    let e = client
        .node_session(tokio_stream::iter(vec![hello(
            "layer_height = 0.2\nperimeter_speed = fast\n",
        )]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(
        e.message(),
        "printer t1: slicer_config.ini:2: `perimeter_speed = fast`: expected a number >= 0"
    );
    let big = "notes = ".to_string() + &"x".repeat(70_000);
    let e = client
        .node_session(tokio_stream::iter(vec![hello(&big)]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("hello.printers.slicer_config.ini"),
        "{}",
        e.message()
    );
    r.stop().await;
}
