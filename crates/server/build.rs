//! Marks the tests that run fabd on PostgreSQL ignored, with the reason, where PostgreSQL's
//! server binaries are missing (never under CI=true, where CI installs them); and rebuilds fabd
//! when the web app's built files change (`web.rs` embeds `web/dist/` through `include_dir!`,
//! which cargo does not track on stable Rust).
//!
//! The detection is fabrouter-testkit's, compiled in here from its source: testkit's router
//! harness depends on this crate, and cargo allows that cycle for dev-dependencies but not for
//! build-dependencies. Without its `router` feature testkit needs nothing but std.

#[allow(dead_code, unused_imports, unexpected_cfgs)]
#[path = "../testkit/src/lib.rs"]
mod testkit;

fn main() {
    println!("cargo::rerun-if-changed=../testkit/src");
    println!("cargo::rerun-if-changed=../../web/dist");
    testkit::build::detect(&[testkit::Tool::Postgres]);
}
