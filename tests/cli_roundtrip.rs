//! `fab` and `fabd` as separate processes, the way a user runs them: check offline, upload,
//! list, stop fabd with SIGTERM, start it again, and find the design still there.

use fabrouter::{
    FabNode, Fabd, VirtualPrinter, fab, fab_json, fab_secret, printer_toml, reference, wait_for,
};

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

/// A quote no printer can take says why, as a person reads it: nothing registered, then a
/// printer registered but offline, then an online printer that rejects the part (with reasons).
#[test]
fn a_quote_without_options_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let fabd = Fabd::start(&dir.path().join("fabd"));
    let (server, admin) = (fabd.addr.clone(), fabd.admin_token());
    let designer = fab_secret(
        &server,
        &admin,
        &["admin", "token", "create", "--role", "designer"],
    );
    let cube = reference("stl/trimesh__20mm-xyz-cube.stl");
    let design = fab_json(&server, &designer, &["upload", cube.to_str().unwrap()])["name"]
        .as_str()
        .unwrap()
        .to_string();
    let quote = |material: &str| {
        let out = fab(
            &server,
            &designer,
            &[
                "jobs",
                "quote",
                &design,
                "--lat",
                "52.39",
                "--lon",
                "13.06",
                "--material",
                material,
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let said = quote("PLA");
    assert!(
        said.starts_with("no printer can take this job: no printer is registered"),
        "{said}"
    );

    // A node whose printer's port does not exist: registered, offline.
    let node_secret = fab_secret(&server, &admin, &["admin", "node", "create", "lab"]);
    let config = dir.path().join("node.toml");
    let missing = dir.path().join("no-such.tty");
    std::fs::write(
        &config,
        format!(
            "router = \"{server}\"\nnode_id = \"lab\"\nsecret = \"{node_secret}\"\nstate_dir = \"{}\"\n{}",
            dir.path().join("node-state").display(),
            printer_toml("mk3", &missing, (52.52, 13.40), "Berlin Lab"),
        ),
    )
    .unwrap();
    let node = FabNode::start(&config, &dir.path().join("node.log"));
    wait_for("the printer to be registered", 60, || {
        quote("PLA").contains("1 printer registered, all offline or in maintenance")
    });

    // Online, but loaded with PLA only: PETG is rejected, and the reason is listed.
    let printer = VirtualPrinter::start(&missing, &dir.path().join("mk3.record"), &[]);
    wait_for("the printer to come online", 60, || {
        !quote("PLA").starts_with("no printer can take")
    });
    let said = quote("PETG");
    assert!(
        said.starts_with(
            "no printer can take this job: 1 printer registered, 0 offline or in maintenance, 1 rejected:"
        ),
        "{said}"
    );
    assert!(said.contains("nodes/lab/printers/mk3 [material]"), "{said}");
    assert!(node.stop());
    assert!(printer.stop());
    assert!(fabd.stop());
}
