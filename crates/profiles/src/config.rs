//! A resolved PrusaSlicer config: one value per setting, each with the file, line and preset it
//! came from, so a value that cannot be used is reported where it was written. It is what a
//! node writes for `prusa-slicer --load` and what the router maps onto an estimator profile.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::{Error, Kind, ini};

/// PrusaSlicer 2.5's defaults for every setting (`prusa-slicer --save FILE` with nothing
/// loaded): presets apply on top of these, as in PrusaSlicer.
pub const PRUSASLICER_DEFAULTS: &str = include_str!("../data/prusaslicer-2.5-defaults.ini");
const DEFAULTS_LABEL: &str = "PrusaSlicer 2.5 defaults";

/// Keys that steer how a bundle is read, not how a part is sliced; they are not written out.
pub(crate) const META_KEYS: &[&str] = &["inherits", "renamed_from", "alias"];

/// Where a value was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: Arc<str>,
    /// 1-based line.
    pub line: usize,
    /// The preset whose section holds the line, if any.
    pub preset: Option<(Kind, String)>,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)?;
        if let Some((kind, name)) = &self.preset {
            write!(f, " ({kind} preset {name:?})")?;
        }
        Ok(())
    }
}

/// One setting's value as written, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub value: String,
    pub origin: Origin,
}

/// A flat config: setting name to value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    values: BTreeMap<String, Setting>,
}

impl Config {
    /// PrusaSlicer 2.5's defaults.
    pub fn prusaslicer_defaults() -> Config {
        Self::from_flat_ini(PRUSASLICER_DEFAULTS, DEFAULTS_LABEL)
            .expect("the bundled defaults file parses")
    }

    /// A flat config as PrusaSlicer exports one (`File > Export > Export Config`): `key =
    /// value` lines without sections. Sections are refused: a config bundle is read with
    /// [`crate::Library::add_text`].
    pub fn from_flat_ini(text: &str, file: &str) -> Result<Config, Error> {
        let parsed = ini::parse(text, file)?;
        if let Some(s) = parsed.sections.iter().find(|s| !s.header.is_empty()) {
            return Err(Error::Syntax {
                file: file.to_string(),
                line: s.line,
                reason: format!(
                    "[{}]: a flat config has no sections; this looks like a config bundle",
                    s.header
                ),
            });
        }
        let mut c = Config::default();
        for e in &parsed.sections[0].entries {
            c.set(
                &e.key,
                e.value.clone(),
                Origin {
                    file: parsed.file.clone(),
                    line: e.line,
                    preset: None,
                },
            );
        }
        Ok(c)
    }

    /// The value of `key`, with where it came from.
    pub fn get(&self, key: &str) -> Option<&Setting> {
        self.values.get(key)
    }

    /// The raw value of `key`.
    pub fn value(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(|s| s.value.as_str())
    }

    pub fn set(&mut self, key: &str, value: String, origin: Origin) {
        self.values
            .insert(key.to_string(), Setting { value, origin });
    }

    /// Every value of `other` replaces this one's.
    pub fn apply(&mut self, other: &Config) {
        for (k, v) in &other.values {
            self.values.insert(k.clone(), v.clone());
        }
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Settings in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Setting)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The config as a flat `.ini` for `prusa-slicer --load`: one `key = value` line per
    /// setting in name order, values exactly as read, bundle-only keys (`inherits`, ...)
    /// left out. Reading it back gives the same values.
    pub fn to_ini(&self) -> String {
        let mut out = String::from("# resolved by fabrouter from PrusaSlicer presets\n");
        for (k, s) in &self.values {
            if META_KEYS.contains(&k.as_str()) {
                continue;
            }
            out.push_str(k);
            out.push_str(" = ");
            out.push_str(&s.value);
            out.push('\n');
        }
        out
    }

    /// Hex SHA-256 of the settings and values (not their origins): two configs that slice
    /// alike hash alike wherever they were read from.
    pub fn content_hash(&self) -> String {
        let mut h = Sha256::new();
        for (k, s) in &self.values {
            if META_KEYS.contains(&k.as_str()) {
                continue;
            }
            h.update(k.as_bytes());
            h.update([0]);
            h.update(s.value.as_bytes());
            h.update([0]);
        }
        hex::encode(h.finalize())
    }

    /// The preset names the config was resolved from (the `*_settings_id` keys), empty where
    /// unknown.
    pub fn preset_name(&self, kind: Kind) -> &str {
        self.value(kind.settings_id_key())
            .map(ini::unquote)
            .unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_complete_enough_to_slice() {
        let d = Config::prusaslicer_defaults();
        assert!(d.len() > 200, "{}", d.len());
        assert_eq!(d.value("perimeter_speed"), Some("60"));
        let s = d.get("layer_height").unwrap();
        assert_eq!(s.origin.file.as_ref(), DEFAULTS_LABEL);
    }

    #[test]
    fn ini_round_trips_and_hash_ignores_origin() {
        let a = Config::from_flat_ini("b = 2\na = x\\ny\ninherits = q\n", "one.ini").unwrap();
        let text = a.to_ini();
        assert_eq!(
            text,
            "# resolved by fabrouter from PrusaSlicer presets\na = x\\ny\nb = 2\n"
        );
        let b = Config::from_flat_ini(&text, "two.ini").unwrap();
        assert_eq!(a.content_hash(), b.content_hash());
        let c = Config::from_flat_ini("a = x\\ny\nb = 3\n", "three.ini").unwrap();
        assert_ne!(a.content_hash(), c.content_hash());
    }

    #[test]
    fn a_bundle_is_not_a_flat_config() {
        let e = Config::from_flat_ini("a = 1\n[print:x]\nb = 2\n", "u.ini").unwrap_err();
        assert!(e.to_string().starts_with("u.ini:2: [print:x]"), "{e}");
    }
}
