//! PrusaSlicer's printer, print and filament presets, read so that the router's estimate and the
//! node's G-code come from the same settings.
//!
//! - [`ini`] reads PrusaSlicer's INI dialect, keeping each value's line.
//! - [`Library`] holds vendor bundles (`[vendor]`, `[printer_model:…]`, `[printer:…]`,
//!   `[print:…]`, `[filament:…]`, abstract `*name*` presets) and users' config bundles, and
//!   resolves a preset through its `inherits` chain, or a (printer, print, filament) triple onto
//!   PrusaSlicer's defaults, into a flat [`Config`].
//! - [`Config`] is a resolved config: every value with where it came from; it writes the `.ini`
//!   a node hands to `prusa-slicer --load`, reads a user's exported `.ini`, and has a content
//!   hash.
//! - [`mapping`] turns a resolved config into the estimator's [`fabrouter_estimator::Profile`].
//!
//! Written from PrusaSlicer's documented behaviour of its files; `compatible_printers` and
//! `compatible_printers_condition` are **not evaluated**: any print or filament preset may be
//! combined with any printer preset (PrusaSlicer's GUI would hide incompatible ones).
//!
//! The crate reads files but does no other I/O, no async and no gRPC.

pub mod config;
pub mod ini;
pub mod library;
pub mod mapping;

pub use config::{Config, Origin, Setting};
pub use library::{Library, PresetInfo, Triple};
pub use mapping::{Mapped, to_profile};

/// The three kinds of FFF preset PrusaSlicer combines into one config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Printer,
    Print,
    Filament,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Printer, Kind::Print, Kind::Filament];

    /// The section prefix in a bundle, e.g. `print` in `[print:0.20mm QUALITY @MK3]`.
    pub fn word(self) -> &'static str {
        match self {
            Kind::Printer => "printer",
            Kind::Print => "print",
            Kind::Filament => "filament",
        }
    }

    /// The kind a section prefix names (SLA and other sections are not FFF presets).
    pub fn from_word(w: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.word() == w)
    }

    /// The key PrusaSlicer records the selected preset's name under in a config.
    pub fn settings_id_key(self) -> &'static str {
        match self {
            Kind::Printer => "printer_settings_id",
            Kind::Print => "print_settings_id",
            Kind::Filament => "filament_settings_id",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.word())
    }
}

/// Why a preset or config cannot be used; each names the file and line, or the preset, a
/// person has to fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{file}:{line}: {reason}")]
    Syntax {
        file: String,
        line: usize,
        reason: String,
    },
    #[error("no {kind} preset named {name:?}{}", nearest_note(nearest))]
    UnknownPreset {
        kind: Kind,
        name: String,
        /// The closest known names, best first.
        nearest: Vec<String>,
    },
    #[error(
        "{file}:{line}: {kind} preset {preset:?} inherits {parent:?}, which is not defined{}",
        nearest_note(nearest)
    )]
    MissingParent {
        kind: Kind,
        preset: String,
        parent: String,
        file: String,
        line: usize,
        nearest: Vec<String>,
    },
    #[error("{file}:{line}: {kind} preset {preset:?} inherits itself through {chain}")]
    Cycle {
        kind: Kind,
        preset: String,
        file: String,
        line: usize,
        chain: String,
    },
    #[error(
        "{file}:{line}: {kind} preset {preset:?} inherits more than {max} levels deep",
        max = library::MAX_INHERITS_DEPTH
    )]
    TooDeep {
        kind: Kind,
        preset: String,
        file: String,
        line: usize,
    },
    #[error(
        "{kind} preset {name:?} is abstract (its name is in *stars*): it exists only to be inherited; choose a concrete one{}",
        nearest_note(nearest)
    )]
    Abstract {
        kind: Kind,
        name: String,
        nearest: Vec<String>,
    },
    #[error("{origin}: `{key} = {value}`: {reason}")]
    Value {
        key: String,
        value: String,
        origin: Box<Origin>,
        reason: String,
    },
    #[error("{0}")]
    Profile(String),
}

fn nearest_note(nearest: &[String]) -> String {
    if nearest.is_empty() {
        String::new()
    } else {
        format!(
            "; nearest: {}",
            nearest
                .iter()
                .map(|n| format!("{n:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}
