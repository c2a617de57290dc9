//! Tests that slice with PrusaSlicer are ignored, with the reason, where it is missing (see
//! fabrouter-testkit).

fn main() {
    fabrouter_testkit::build::detect(&[fabrouter_testkit::Tool::PrusaSlicer]);
}
