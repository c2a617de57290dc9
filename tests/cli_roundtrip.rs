//! `fab` and `fabd` as separate processes, the way a user runs them: check offline, upload,
//! list, stop fabd with SIGTERM, start it again, and find the design still there.

use fabrouter::{Fabd, fab, reference};

fn json(out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "fab failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("fab --json prints JSON")
}

#[test]
fn check_upload_restart_list() {
    let teapot = reference("stl/trimesh__teapot.stl");
    let teapot = teapot.to_str().unwrap();

    // Offline: no server exists yet.
    let out = fab("http://127.0.0.1:9", "", &["check", teapot, "--json"]);
    assert_eq!(out.status.code(), Some(1), "teapot is open: not printable");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["triangles"], 894);
    assert_eq!(report["open_edges"], 64);
    assert_eq!(report["verdict"], "not_printable");

    let dir = tempfile::tempdir().unwrap();
    let fabd = Fabd::start(dir.path());
    let admin = fabd.admin_token();
    let token = json(&fab(
        &fabd.addr,
        &admin,
        &["admin", "token", "create", "--role", "designer", "--json"],
    ))["secret"]
        .as_str()
        .unwrap()
        .to_string();
    let design = json(&fab(&fabd.addr, &token, &["upload", teapot, "--json"]));
    let name = design["name"].as_str().unwrap().to_string();
    assert_eq!(design["mesh_report"]["hole_loops"], report["hole_loops"]);
    let addr = fabd.addr.clone();
    assert!(fabd.stop(), "fabd exits cleanly on SIGTERM");

    // The same address is free again; restart on the same data.
    let fabd = Fabd::start(dir.path());
    let list = json(&fab(&fabd.addr, &token, &["designs", "list", "--json"]));
    assert_eq!(list["designs"][0]["name"], name.as_str());
    let out = fab(&fabd.addr, &token, &["designs", "get", "designs/nope"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("NotFound"));
    let _ = addr;
    assert!(fabd.stop());
}
