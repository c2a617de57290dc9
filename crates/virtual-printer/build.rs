//! The PrusaLink test is ignored, with the reason, where PrusaLink or `unshare -n` is missing
//! (see fabrouter-testkit).

fn main() {
    fabrouter_testkit::build::detect(&[fabrouter_testkit::Tool::PrusaLink]);
}
