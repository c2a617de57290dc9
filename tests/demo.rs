//! The README's first command, `fab demo`, as a user runs it: an embedded router, two
//! makerspaces with virtual printers, and the example models printed. With `--pre-sliced` it
//! takes the path a machine without PrusaSlicer takes: the shipped G-code is uploaded as
//! pre-sliced designs, checked, routed by its own bounds, and streamed.

use std::process::Command;

use fabrouter::bin;

#[test]
fn the_demo_prints_every_example_model_from_pre_sliced_gcode() {
    let out = Command::new(bin("fab"))
        .args(["demo", "--pre-sliced"])
        .env("HOME", std::env::temp_dir())
        .output()
        .expect("running fab demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "fab demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("3 of 3 prints completed"), "{stdout}");
    // Each model went where the story says: nearest for the cube, the one with PETG for the
    // ring, the only large bed for the plate; and the quote said why.
    let row = |model: &str| {
        stdout
            .lines()
            .rfind(|l| l.starts_with(model))
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        row("cube-20mm").contains("potsdam-makerspace/mk3s"),
        "{stdout}"
    );
    assert!(row("ring-40mm").contains("berlin-fablab/mini"), "{stdout}");
    assert!(row("plate-340mm").contains("berlin-fablab/xl"), "{stdout}");
    assert!(stdout.contains("PETG is not loaded"), "{stdout}");
    assert!(
        stdout.contains(
            "beyond the 250x210x210 mm build volume (sliced G-code prints where it was sliced)"
        ),
        "{stdout}"
    );
}
