//! Tests that slice with PrusaSlicer, or drive a real OctoPrint, are ignored with the reason
//! where it is missing (see fabrouter-testkit).

fn main() {
    fabrouter_testkit::build::detect(&[
        fabrouter_testkit::Tool::PrusaSlicer,
        fabrouter_testkit::Tool::OctoPrint,
    ]);
}
