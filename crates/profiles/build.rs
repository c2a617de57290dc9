//! Tests against PrusaSlicer's installed vendor bundles are ignored, with the reason, where
//! prusa-slicer (which installs them) is missing (see fabrouter-testkit).
//!
//! fabrouter-testkit cannot be this crate's build-dependency: its `router` feature depends on
//! fabrouter-server, which depends on this crate, and cargo refuses the cycle. Its source is
//! compiled in here instead (without that feature), so the detection rule stays one.

#[allow(dead_code, unexpected_cfgs)]
#[path = "../testkit/src/lib.rs"]
mod testkit;

fn main() {
    testkit::build::detect(&[testkit::Tool::PrusaSlicer]);
}
