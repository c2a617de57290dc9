//! Tests against PrusaSlicer's installed vendor bundles are ignored, with the reason, where
//! prusa-slicer (which installs them) is missing (see fabrouter-testkit).

fn main() {
    fabrouter_testkit::build::detect(&[fabrouter_testkit::Tool::PrusaSlicer]);
}
