//! Prints the check report (and, with `--repair`, the repair report and the repaired mesh's
//! check) of an STL file as JSON: a quick way to see what the library says about a file.
//!
//! `cargo run --release -p fabrouter-mesh --example check_stl -- FILE [--repair]`

use std::process::ExitCode;

use fabrouter_mesh::{Limits, check, parse_stl, repair};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.iter().find(|a| !a.starts_with("--")) else {
        eprintln!("usage: check_stl FILE [--repair]");
        return ExitCode::from(2);
    };
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mesh = match parse_stl(&bytes, &Limits::default()) {
        Ok(m) => m,
        Err(e) => {
            let kind = if e.is_limit() { "limit" } else { "invalid" };
            eprintln!("{path}: {e} ({kind})");
            return ExitCode::FAILURE;
        }
    };
    let report = check(&mesh);
    let mut out = serde_json::json!({ "file": path, "check": report });
    if args.iter().any(|a| a == "--repair") {
        let (fixed, repair_report) = repair(&mesh);
        out["repair"] = serde_json::json!(repair_report);
        out["repaired_check"] = serde_json::json!(check(&fixed));
    }
    match serde_json::to_string_pretty(&out) {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
