//! Estimates one STL file on a built-in profile (or a profile TOML file) and prints the estimate as
//! JSON: a quick way to try the estimator by hand.
//!
//! `cargo run --release -p fabrouter-estimator --example estimate -- MODEL.stl [PROFILE-NAME|PROFILE.toml]`

use std::error::Error;
use std::time::Instant;

use fabrouter_estimator::{Profile, estimate};

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let Some(model) = args.next() else {
        eprintln!("usage: estimate MODEL.stl [PROFILE-NAME|PROFILE.toml]");
        eprintln!("built-in profiles: {}", Profile::builtin_names().join(", "));
        std::process::exit(2);
    };
    let which = args.next().unwrap_or_else(|| "prusaslicer-b".to_string());
    let profile = match Profile::builtin(&which) {
        Some(p) => p,
        None => Profile::from_toml(&std::fs::read_to_string(&which)?)?,
    };
    let bytes = std::fs::read(&model)?;
    let mesh = fabrouter_mesh::parse_stl(&bytes, &fabrouter_mesh::Limits::default())?;
    let started = Instant::now();
    let result = estimate(&mesh.triangles, &profile);
    let elapsed = started.elapsed();
    println!("{}", serde_json::to_string_pretty(&result?)?);
    eprintln!("estimated in {:.1} ms", elapsed.as_secs_f64() * 1000.0);
    Ok(())
}
