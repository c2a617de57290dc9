//! A printer's PrusaSlicer presets in the node's TOML: vendor preset names resolved through
//! the installed bundles (ignored with the reason where prusa-slicer is missing, failing under
//! CI=true), an operator's own flat `.ini` or config bundle, and the errors that name the
//! TOML line, the preset and the nearest names.

use std::path::Path;

use fabrouter_node::{ConfigError, NodeConfig};
use fabrouter_testkit::data;

/// One printer; `extra` goes into its table.
fn config(extra: &str) -> String {
    format!(
        r#"router = "http://127.0.0.1:50051"
node_id = "berlin"
secret = "s3cret"
state_dir = "state"

[[printer]]
id = "mk3s"
port = "/dev/ttyUSB0"
baud = 250000
profile = "prusaslicer-b"
technology = "fdm"
build_volume_mm = [250, 210, 210]
nozzle_mm = 0.4
materials = [{{ kind = "PLA", colour = "black" }}]
location = {{ lat = 52.52, lon = 13.405 }}
price = {{ currency = "EUR", per_hour = 2.0, per_gram = 0.05, setup_fee = 3.0 }}
makerspace = "Berlin Lab"
{extra}
"#
    )
}

fn err(text: &str) -> (usize, String) {
    match NodeConfig::from_toml_str(text, Path::new("/")) {
        Err(ConfigError::Invalid { line, reason, .. }) => (line, reason),
        other => panic!("expected an invalid config, got {other:?}"),
    }
}

#[test]
fn an_operators_flat_ini_is_read_and_reported() {
    let ini = data("prusaslicer_B_explicit.ini");
    let c = NodeConfig::from_toml_str(
        &config(&format!("slicer_config = {:?}", ini.display().to_string())),
        Path::new("/"),
    )
    .unwrap();
    let s = c.printers[0].slicer_profile.as_ref().unwrap();
    assert_eq!(s.presets.printer, "");
    assert!(s.ini.contains("\nperimeter_speed = 60\n"), "{}", s.ini);
    let pb = fabrouter_node::presets::slicer_config_pb(Some(s)).unwrap();
    assert_eq!(pb.ini, s.ini);
}

#[test]
fn a_config_bundle_resolves_its_selected_presets() {
    // The user's bundle inherits Test Vendor's presets: both in one file here, as a config
    // bundle exported with its system parents would be.
    let dir = tempfile::tempdir().unwrap();
    let vendor = std::fs::read_to_string(data("profiles/small-vendor.ini")).unwrap();
    let user = std::fs::read_to_string(data("profiles/user-bundle.ini")).unwrap();
    let bundle = dir.path().join("bundle.ini");
    std::fs::write(&bundle, format!("{vendor}\n{user}")).unwrap();
    let c = NodeConfig::from_toml_str(
        &config(&format!(
            "slicer_config = {:?}",
            bundle.display().to_string()
        )),
        Path::new("/"),
    )
    .unwrap();
    let s = c.printers[0].slicer_profile.as_ref().unwrap();
    assert_eq!(s.presets.print, "My NORMAL");
    assert!(s.ini.contains("\nperimeters = 4\n"));
    assert!(s.ini.contains("\nprint_settings_id = \"My NORMAL\"\n"));
}

#[test]
fn presets_and_an_ini_together_are_refused_on_their_line() {
    let ini = data("prusaslicer_B_explicit.ini");
    let (line, reason) = err(&config(&format!(
        "slicer_config = {:?}\npresets = {{ printer = \"a\", print = \"b\", filament = \"c\" }}",
        ini.display().to_string()
    )));
    assert_eq!(
        (line, reason.as_str()),
        (19, "set presets or slicer_config, not both")
    );
}

mod installed {
    use super::*;
    use fabrouter_testkit::{Tool, require};

    #[test]
    #[cfg_attr(
        missing_prusa_slicer,
        ignore = "needs PrusaSlicer's vendor bundles: apt-get install prusa-slicer"
    )]
    fn vendor_presets_resolve_and_a_misspelt_one_lists_the_nearest() {
        require(Tool::PrusaSlicer);
        let c = NodeConfig::from_toml_str(
            &config(
                r#"presets = { printer = "Original Prusa i3 MK3S & MK3S+", print = "0.20mm QUALITY @MK3", filament = "Prusament PLA" }"#,
            ),
            Path::new("/"),
        )
        .unwrap();
        let s = c.printers[0].slicer_profile.as_ref().unwrap();
        assert_eq!(s.presets.print, "0.20mm QUALITY @MK3");
        assert!(s.ini.contains("\nperimeter_speed = 45\n"));
        let (line, reason) = err(&config(
            r#"presets = { printer = "Original Prusa i3 MK3S & MK3S+", print = "0.20mm QUALITY MK3", filament = "Prusament PLA" }"#,
        ));
        assert_eq!(line, 18, "{reason}");
        assert!(
            reason.starts_with(
                "no print preset named \"0.20mm QUALITY MK3\"; nearest: \"0.20mm QUALITY @MK3\""
            ),
            "{reason}"
        );
    }
}
