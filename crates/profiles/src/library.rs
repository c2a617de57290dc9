//! Vendor bundles and users' config bundles, and the resolution of a preset through its
//! `inherits` chain.
//!
//! Resolution follows PrusaSlicer's documented bundle rules: a preset's values are its
//! parents' (each parent resolved first, `inherits = a; b` applied left to right so `b`
//! overrides `a`), then its own lines; a triple is PrusaSlicer's defaults, then the printer,
//! print and filament presets. Names in `*stars*` are abstract: they may be inherited, never
//! chosen. A parent is looked up in the preset's own file first, then in every other file
//! (a user's bundle inherits from the vendors' system presets).
//! `compatible_printers(_condition)` is not evaluated.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::{Config, Origin};
use crate::{Error, Kind, ini};

/// Deepest `inherits` chain followed (the vendors' deepest is under 10).
pub const MAX_INHERITS_DEPTH: usize = 32;
/// Most nearest names an error lists.
const NEAREST: usize = 5;

/// A preset triple, as a node declares it or a config bundle selects it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Triple {
    pub printer: String,
    pub print: String,
    pub filament: String,
}

#[derive(Debug)]
struct Preset {
    kind: Kind,
    name: String,
    bundle: usize,
    line: usize,
    entries: Vec<ini::Entry>,
    inherits: Vec<String>,
    inherits_line: usize,
}

#[derive(Debug)]
struct Bundle {
    file: Arc<str>,
    vendor: String,
    /// `[presets]` of a user's config bundle.
    selected: Option<Triple>,
}

/// A preset as listed: its kind, name, file and vendor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresetInfo {
    pub kind: Kind,
    pub name: String,
    /// The bundle's `[vendor] name`, or empty for a user's file.
    pub vendor: String,
    pub file: String,
    pub line: usize,
}

/// Presets from any number of bundles.
#[derive(Debug, Default)]
pub struct Library {
    bundles: Vec<Bundle>,
    presets: Vec<Preset>,
    by_name: HashMap<(Kind, String), Vec<usize>>,
    /// Former names (`renamed_from`), which PrusaSlicer still accepts.
    renamed: HashMap<(Kind, String), Vec<usize>>,
}

impl Library {
    pub fn new() -> Library {
        Library::default()
    }

    /// Where PrusaSlicer's installed vendor bundles are: `$FAB_PRUSASLICER_PROFILES`, else
    /// the Debian package's and a source build's directories, if one exists.
    pub fn installed_dir() -> Option<PathBuf> {
        if let Some(d) = std::env::var_os("FAB_PRUSASLICER_PROFILES") {
            return Some(PathBuf::from(d));
        }
        [
            "/usr/share/PrusaSlicer/profiles",
            "/usr/local/share/PrusaSlicer/profiles",
        ]
        .into_iter()
        .map(PathBuf::from)
        .find(|d| d.is_dir())
    }

    /// The installed vendor bundles (see [`Library::installed_dir`]); an error says where it
    /// looked when there are none.
    pub fn installed() -> Result<Library, Error> {
        let dir = Self::installed_dir().ok_or_else(|| Error::Read {
            path: "/usr/share/PrusaSlicer/profiles".into(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "PrusaSlicer's vendor profiles are not installed (apt-get install prusa-slicer, or set FAB_PRUSASLICER_PROFILES to a directory of vendor .ini bundles)",
            ),
        })?;
        let mut lib = Library::new();
        lib.add_dir(&dir)?;
        Ok(lib)
    }

    /// Every `*.ini` file of `dir`, in name order.
    pub fn add_dir(&mut self, dir: &Path) -> Result<usize, Error> {
        let read = |e: std::io::Error| Error::Read {
            path: dir.display().to_string(),
            source: e,
        };
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(read)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "ini") && p.is_file())
            .collect();
        files.sort();
        for f in &files {
            self.add_file(f)?;
        }
        Ok(files.len())
    }

    /// One bundle file.
    pub fn add_file(&mut self, path: &Path) -> Result<(), Error> {
        let read = |e: std::io::Error| Error::Read {
            path: path.display().to_string(),
            source: e,
        };
        let len = std::fs::metadata(path).map_err(read)?.len();
        if len > ini::MAX_FILE_BYTES as u64 {
            return Err(Error::Syntax {
                file: path.display().to_string(),
                line: 1,
                reason: format!("{len} bytes is more than a config may have here"),
            });
        }
        let text = std::fs::read_to_string(path).map_err(read)?;
        let label = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into(),
        );
        self.add_text(&text, &label)
    }

    /// A vendor bundle or a user's config bundle as text; `file` names it in messages. A
    /// second preset of the same kind and name in one file is an error naming both lines.
    pub fn add_text(&mut self, text: &str, file: &str) -> Result<(), Error> {
        let parsed = ini::parse(text, file)?;
        let bundle = self.bundles.len();
        let mut vendor = String::new();
        let mut selected = None;
        let mut new: Vec<Preset> = Vec::new();
        for s in &parsed.sections {
            let (prefix, name) = s.header.split_once(':').unwrap_or((s.header.as_str(), ""));
            match (prefix, Kind::from_word(prefix)) {
                ("vendor", _) => {
                    vendor = value_of(&s.entries, "name").unwrap_or_default();
                }
                ("presets", _) => {
                    selected = Some(Triple {
                        printer: value_of(&s.entries, "printer").unwrap_or_default(),
                        print: value_of(&s.entries, "print").unwrap_or_default(),
                        filament: value_of(&s.entries, "filament").unwrap_or_default(),
                    });
                }
                (_, Some(kind)) => {
                    let name = name.trim();
                    if name.is_empty() {
                        return Err(Error::Syntax {
                            file: file.into(),
                            line: s.line,
                            reason: format!("[{}] names no preset", s.header),
                        });
                    }
                    if let Some(first) = new.iter().find(|p| p.kind == kind && p.name == name) {
                        return Err(Error::Syntax {
                            file: file.into(),
                            line: s.line,
                            reason: format!(
                                "{kind} preset {name:?} is defined twice (first on line {})",
                                first.line
                            ),
                        });
                    }
                    let inherits = s.entries.iter().rfind(|e| e.key == "inherits");
                    new.push(Preset {
                        kind,
                        name: name.to_string(),
                        bundle,
                        line: s.line,
                        entries: s.entries.clone(),
                        inherits: inherits
                            .map(|e| ini::split_names(&e.value))
                            .unwrap_or_default(),
                        inherits_line: inherits.map_or(s.line, |e| e.line),
                    });
                }
                // Printer models, SLA presets, physical printers and obsolete-preset lists
                // do not change an FFF slice.
                _ => {}
            }
        }
        self.bundles.push(Bundle {
            file: parsed.file.clone(),
            vendor,
            selected,
        });
        for p in new {
            let i = self.presets.len();
            if let Some(old) = p.entries.iter().rfind(|e| e.key == "renamed_from") {
                for name in ini::split_names(&old.value) {
                    self.renamed.entry((p.kind, name)).or_default().push(i);
                }
            }
            self.by_name
                .entry((p.kind, p.name.clone()))
                .or_default()
                .push(i);
            self.presets.push(p);
        }
        Ok(())
    }

    /// The `[presets]` selection of the last config bundle that has one.
    pub fn selected(&self) -> Option<&Triple> {
        self.bundles.iter().rev().find_map(|b| b.selected.as_ref())
    }

    /// Concrete (not abstract) presets of `kind`, in file order.
    pub fn presets(&self, kind: Kind) -> impl Iterator<Item = PresetInfo> + '_ {
        self.presets
            .iter()
            .filter(move |p| p.kind == kind && !is_abstract(&p.name))
            .map(|p| PresetInfo {
                kind: p.kind,
                name: p.name.clone(),
                vendor: self.bundles[p.bundle].vendor.clone(),
                file: self.bundles[p.bundle].file.to_string(),
                line: p.line,
            })
    }

    /// The preset of `kind` named `name`: one in bundle `prefer` if there is one, else the
    /// last one read (a user's file read after the vendors' wins).
    fn find(&self, kind: Kind, name: &str, prefer: Option<usize>) -> Option<usize> {
        let key = (kind, name.to_string());
        let ids = self.by_name.get(&key).or_else(|| self.renamed.get(&key))?;
        prefer
            .and_then(|b| ids.iter().copied().find(|&i| self.presets[i].bundle == b))
            .or_else(|| ids.last().copied())
    }

    /// The names of `kind` closest to `name`, best first (abstract ones only if `abstracts`):
    /// names containing what was typed, then names sharing most of its words, then names
    /// spelt alike.
    pub fn nearest(&self, kind: Kind, name: &str, abstracts: bool) -> Vec<String> {
        let wanted = name.to_lowercase();
        let words: Vec<&str> = wanted.split_whitespace().collect();
        let mut scored: Vec<(f64, &str)> = self
            .by_name
            .keys()
            .filter(|(k, n)| *k == kind && (abstracts || !is_abstract(n)))
            .map(|(_, n)| {
                let lower = n.to_lowercase();
                let contains = if !wanted.is_empty() && lower.contains(&wanted) {
                    1.0
                } else {
                    0.0
                };
                let shared = if words.is_empty() {
                    0.0
                } else {
                    let theirs: Vec<&str> = lower.split_whitespace().collect();
                    words.iter().filter(|w| theirs.contains(w)).count() as f64 / words.len() as f64
                };
                (
                    contains + shared + strsim::jaro_winkler(&wanted, &lower),
                    n.as_str(),
                )
            })
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
        scored
            .into_iter()
            .take(NEAREST)
            .map(|(_, n)| n.to_string())
            .collect()
    }

    /// One preset resolved through its `inherits` chain (without PrusaSlicer's defaults).
    /// Unknown and abstract names are errors listing the nearest concrete names.
    pub fn resolve(&self, kind: Kind, name: &str) -> Result<Config, Error> {
        self.resolve_in(kind, name, None)
    }

    fn resolve_in(&self, kind: Kind, name: &str, prefer: Option<usize>) -> Result<Config, Error> {
        if is_abstract(name) {
            return Err(Error::Abstract {
                kind,
                name: name.into(),
                nearest: self.nearest(kind, name.trim_matches('*'), false),
            });
        }
        let Some(i) = self.find(kind, name, prefer) else {
            return Err(Error::UnknownPreset {
                kind,
                name: name.into(),
                nearest: self.nearest(kind, name, false),
            });
        };
        let mut chain = vec![i];
        self.resolve_index(i, &mut chain)
    }

    fn resolve_index(&self, i: usize, chain: &mut Vec<usize>) -> Result<Config, Error> {
        let p = &self.presets[i];
        let file = &self.bundles[p.bundle].file;
        let mut out = Config::default();
        for parent in &p.inherits {
            let Some(j) = self.find(p.kind, parent, Some(p.bundle)) else {
                return Err(Error::MissingParent {
                    kind: p.kind,
                    preset: p.name.clone(),
                    parent: parent.clone(),
                    file: file.to_string(),
                    line: p.inherits_line,
                    nearest: self.nearest(p.kind, parent, true),
                });
            };
            if chain.contains(&j) {
                let mut names: Vec<&str> = chain
                    .iter()
                    .map(|&k| self.presets[k].name.as_str())
                    .collect();
                names.push(&self.presets[j].name);
                return Err(Error::Cycle {
                    kind: p.kind,
                    preset: p.name.clone(),
                    file: file.to_string(),
                    line: p.inherits_line,
                    chain: names.join(" -> "),
                });
            }
            if chain.len() >= MAX_INHERITS_DEPTH {
                return Err(Error::TooDeep {
                    kind: p.kind,
                    preset: p.name.clone(),
                    file: file.to_string(),
                    line: p.inherits_line,
                });
            }
            chain.push(j);
            let resolved = self.resolve_index(j, chain)?;
            chain.pop();
            out.apply(&resolved);
        }
        for e in &p.entries {
            if e.key == "inherits" {
                continue;
            }
            out.set(
                &e.key,
                e.value.clone(),
                Origin {
                    file: file.clone(),
                    line: e.line,
                    preset: Some((p.kind, p.name.clone())),
                },
            );
        }
        Ok(out)
    }

    /// The config PrusaSlicer slices with for this triple: its defaults, then the printer,
    /// print and filament presets (print and filament looked up in the printer's file first),
    /// with the three `*_settings_id` keys naming them.
    pub fn resolve_triple(&self, t: &Triple) -> Result<Config, Error> {
        let printer = self.resolve_in(Kind::Printer, &t.printer, None)?;
        let prefer = self
            .find(Kind::Printer, &t.printer, None)
            .map(|i| self.presets[i].bundle);
        let print = self.resolve_in(Kind::Print, &t.print, prefer)?;
        let filament = self.resolve_in(Kind::Filament, &t.filament, prefer)?;
        let mut c = Config::prusaslicer_defaults();
        c.apply(&printer);
        c.apply(&print);
        c.apply(&filament);
        for (kind, name) in [
            (Kind::Printer, &t.printer),
            (Kind::Print, &t.print),
            (Kind::Filament, &t.filament),
        ] {
            c.set(
                kind.settings_id_key(),
                format!("\"{name}\""),
                Origin {
                    file: Arc::from("the selected presets"),
                    line: 0,
                    preset: Some((kind, name.clone())),
                },
            );
        }
        Ok(c)
    }
}

/// Abstract presets are named `*like this*`.
fn is_abstract(name: &str) -> bool {
    name.len() >= 2 && name.starts_with('*') && name.ends_with('*')
}

fn value_of(entries: &[ini::Entry], key: &str) -> Option<String> {
    entries
        .iter()
        .rfind(|e| e.key == key)
        .map(|e| ini::unquote(&e.value).to_string())
}
