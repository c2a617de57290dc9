//! `fab check` as a user runs it: the binary on real reference files, its JSON and exit codes.

use std::process::Command;

fn fab_check(file: &str) -> (Option<i32>, serde_json::Value) {
    let path = fabrouter_testkit::data("stl").join(file);
    let out = Command::new(env!("CARGO_BIN_EXE_fab"))
        .args(["check", "--json"])
        .arg(&path)
        .output()
        .unwrap();
    let v = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{file}: {e}: {}", String::from_utf8_lossy(&out.stdout)));
    (out.status.code(), v)
}

#[test]
fn printable_broken_and_admesh_refused_files() {
    let (code, v) = fab_check("prusaslicer__20mmbox-nonstandard.stl");
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["triangles"], 12);
    assert!((v["volume_mm3"].as_f64().unwrap() - 8000.0).abs() < 0.01);
    assert_eq!(v["verdict"], "printable");

    let (code, v) = fab_check("admesh__block_fill-holes-bad.stl");
    assert_eq!(code, Some(1));
    assert_eq!(v["open_edges"], 3);
    assert_eq!(v["verdict"], "not_printable");

    let (_, v) = fab_check("trimesh__multibody.stl");
    assert_eq!(v["triangles"], 32);
    assert_eq!(v["solids"], 2);
    assert_eq!(v["stl_format"], "ascii");
}

#[test]
fn unreadable_file_exits_2_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.stl");
    std::fs::write(&p, b"solid x\nfacet normal 0 0 1\nouter loop\nvertex 0 0\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fab"))
        .args(["check", "--json"])
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["error"].as_str().unwrap().contains("line"), "{v}");
}

#[test]
fn estimate_offline_gives_figures_or_a_reason() {
    let dir = fabrouter_testkit::data("stl");
    let out = Command::new(env!("CARGO_BIN_EXE_fab"))
        .args(["estimate", "--json", "--profile", "prusaslicer-b"])
        .arg(dir.join("prusaslicer__20mmbox-CRLF.stl"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["layers"], 100);
    assert!(v["filament_g"].as_f64().unwrap() > 3.0);

    let out = Command::new(env!("CARGO_BIN_EXE_fab"))
        .args(["estimate", "--profile", "prusaslicer-b"])
        .arg(dir.join("trimesh__counter.unitsmm.stl"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not fit"));
}
