//! `fab estimate --printer-preset … --print-preset … --filament-preset …` and `fab profiles
//! --installed` as a user runs them, offline, on a small vendor bundle from tests/data (given
//! through FAB_PRUSASLICER_PROFILES, so these run with or without PrusaSlicer installed).

use std::process::{Command, Output};

fn fab(args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        fabrouter_testkit::data("profiles/small-vendor.ini"),
        dir.path().join("small-vendor.ini"),
    )
    .unwrap();
    Command::new(env!("CARGO_BIN_EXE_fab"))
        .args(args)
        .env("FAB_PRUSASLICER_PROFILES", dir.path())
        .output()
        .unwrap()
}

fn cube() -> String {
    fabrouter_testkit::data("stl/prusaslicer__20mmbox-nonstandard.stl")
        .display()
        .to_string()
}

#[test]
fn an_offline_estimate_with_presets() {
    let out = fab(&[
        "estimate",
        &cube(),
        "--printer-preset",
        "Test Printer One",
        "--print-preset",
        "0.20mm NORMAL @T1",
        "--filament-preset",
        "Test PLA",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["profile"],
        "Test Printer One / 0.20mm NORMAL @T1 / Test PLA"
    );
    // PrusaSlicer's default first layer (0.35 mm; the bundle sets none), then 0.2 mm layers.
    assert_eq!(v["layers"], 99);
    let fine = fab(&[
        "estimate",
        &cube(),
        "--printer-preset",
        "Test Printer One",
        "--print-preset",
        "0.10mm FINE @T1",
        "--filament-preset",
        "Test PLA",
        "--json",
    ]);
    let f: serde_json::Value = serde_json::from_slice(&fine.stdout).unwrap();
    assert_eq!(f["layers"], 197);
    assert!(f["print_time_s"].as_f64() > v["print_time_s"].as_f64());
}

#[test]
fn an_unknown_preset_lists_the_nearest_and_fails() {
    let out = fab(&[
        "estimate",
        &cube(),
        "--printer-preset",
        "Test Printer 1",
        "--print-preset",
        "0.20mm NORMAL @T1",
        "--filament-preset",
        "Test PLA",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no printer preset named \"Test Printer 1\"; nearest: \"Test Printer One\""),
        "{err}"
    );
    // All three or none.
    let out = fab(&["estimate", &cube(), "--printer-preset", "Test Printer One"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn installed_presets_are_listed_with_a_filter() {
    let out = fab(&[
        "profiles",
        "--installed",
        "--kind",
        "print",
        "--filter",
        "t1",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["name"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        names,
        ["0.20mm NORMAL @T1", "0.10mm FINE @T1", "0.30mm DRAFT @T1"]
    );
}
