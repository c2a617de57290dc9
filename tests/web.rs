//! The web app in a real browser: Debian's Chromium, headless, driven by playwright-core
//! (`web/tests/browser.mjs`) against a real `fabd` process serving the embedded app, a
//! `fab-node` and a `virtual-printer` on a pseudo-terminal. The script walks the designer's flow
//! (upload, report, 3D view, estimates, quote with reasons, order, pause, resume, completed), a
//! broken STL's findings, another designer who sees none of it, the operator's fleet and the
//! admin's token; it saves a screenshot per step under the target directory and prints the paths.
//!
//! Needs chromium, node and `web/node_modules` (`npm ci` in web/), and prusa-slicer for the node
//! to slice; without them the test is ignored with the reason (under `CI=true` it fails).

use std::process::Command;

use fabrouter::{
    FabNode, Fabd, Tool, VirtualPrinter, fab_secret, printer_toml, reference, require, wait_for,
};

const MAKERSPACE: &str = "Berlin Lab";
const BERLIN: (f64, f64) = (52.52, 13.405);
const CUSTOMER: (f64, f64) = (52.39, 13.06);

#[test]
#[cfg_attr(
    any(missing_browser, missing_prusa_slicer),
    ignore = "needs chromium, node and web/node_modules (apt-get install chromium nodejs npm; npm ci in web/) and prusa-slicer"
)]
fn designer_operator_and_admin_in_a_real_browser() {
    require(Tool::Browser);
    require(Tool::PrusaSlicer);
    let dir = tempfile::tempdir().unwrap();
    let fabd = Fabd::start(&dir.path().join("fabd"));
    let (server, admin) = (fabd.addr.clone(), fabd.admin_token());
    let token = |role: &str| {
        fab_secret(
            &server,
            &admin,
            &["admin", "token", "create", "--role", role],
        )
    };
    let (designer, designer2, operator) = (token("designer"), token("designer"), token("operator"));
    let node_secret = fab_secret(&server, &admin, &["admin", "node", "create", "berlin-lab"]);

    // Replies wait 2 ms, so the print lasts long enough to be paused from the page.
    let printer = VirtualPrinter::start(
        &dir.path().join("mk3.tty"),
        &dir.path().join("mk3.record"),
        &["--latency-ms", "2"],
    );
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        format!(
            "router = \"{server}\"\nnode_id = \"berlin-lab\"\nsecret = \"{node_secret}\"\nstate_dir = \"{}\"\n{}",
            dir.path().join("node-state").display(),
            printer_toml("mk3", &printer.link, BERLIN, MAKERSPACE),
        ),
    )
    .unwrap();
    let node = FabNode::start(&config, &dir.path().join("node.log"));
    wait_for("the printer idle at the router", 60, || {
        let out = fabrouter::fab(&server, &designer, &["printers", "--json"]);
        String::from_utf8_lossy(&out.stdout).contains("\"idle\"")
    });

    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("web-screenshots");
    let _ = std::fs::remove_dir_all(&shots);
    std::fs::create_dir_all(&shots).unwrap();
    let setup = serde_json::json!({
        "url": format!("{server}/"),
        "chromium": fabrouter_testkit::find_on_path("chromium").unwrap(),
        "designer": designer,
        "designer2": designer2,
        "operator": operator,
        "admin": admin,
        "stl": reference("stl/trimesh__20mm-xyz-cube.stl"),
        "broken_stl": reference("stl/admesh__block_fill-holes-bad.stl"),
        "customer": [CUSTOMER.0, CUSTOMER.1],
        "makerspace": MAKERSPACE,
        "screenshots": shots,
        "timeoutMs": 60000,
    });
    let setup_path = dir.path().join("browser.json");
    std::fs::write(&setup_path, setup.to_string()).unwrap();
    let web = fabrouter_testkit::repo_root().join("web");
    let started = std::time::Instant::now();
    let out = Command::new("node")
        .arg(web.join("tests/browser.mjs"))
        .arg(&setup_path)
        .current_dir(&web)
        .output()
        .expect("running node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    println!(
        "browser flow: {:.1} s (screenshots in {})",
        started.elapsed().as_secs_f64(),
        shots.display()
    );
    assert!(
        out.status.success() && stdout.contains("BROWSER OK"),
        "the browser flow failed (screenshots in {}); node log:\n{}",
        shots.display(),
        node.log_text()
    );

    // What the page showed is what the router holds: the designer's job completed, with its
    // pause and resume; the other designer has none.
    let jobs = job_lines(&server, &designer);
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0]["state"], "completed", "{jobs:?}");
    let theirs = job_lines(&server, &designer2);
    assert!(theirs.is_empty(), "{theirs:?}");
    let shots_taken = std::fs::read_dir(&shots).unwrap().count();
    assert!(shots_taken >= 9, "{shots_taken} screenshots");
    drop(node);
    drop(printer);
    assert!(fabd.stop(), "fabd stopped cleanly");
}

/// `fab jobs list --json`: one job per line.
fn job_lines(server: &str, token: &str) -> Vec<serde_json::Value> {
    let out = fabrouter::fab(server, token, &["jobs", "list", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}
