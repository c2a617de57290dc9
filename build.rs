//! Tests in tests/ that need external tools are ignored, with the reason, where a tool is missing
//! (see fabrouter-testkit).

fn main() {
    fabrouter_testkit::build::detect(&[
        fabrouter_testkit::Tool::PrusaSlicer,
        fabrouter_testkit::Tool::PythonGrpc,
        fabrouter_testkit::Tool::Postgres,
        fabrouter_testkit::Tool::Browser,
    ]);
}
