//! PrusaSlicer's INI dialect, read line by line with each value's line kept, so every later
//! error (a missing parent, a bad number) can point at the line a person has to fix.
//!
//! The dialect: `# ` or `;` comment lines, `[kind:name]` section headers, and `key = value`
//! lines whose value is kept exactly as written (PrusaSlicer's own escaping, e.g. `\n` in
//! G-code templates, is passed through untouched so the file we write for `--load` says the
//! same thing). Lines before the first header are a flat config, as PrusaSlicer exports one.

use std::sync::Arc;

use crate::Error;

/// Largest INI file read (PrusaSlicer's largest vendor bundle is under 0.4 MiB).
pub const MAX_FILE_BYTES: usize = 8 << 20;
/// Longest line (G-code templates are single long lines with `\n` escapes).
pub const MAX_LINE_BYTES: usize = 256 << 10;

/// One `key = value` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    /// The text after `=`, trimmed, as written.
    pub value: String,
    /// 1-based line number.
    pub line: usize,
}

/// A `[header]` and its entries; the unnamed section before any header has an empty header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// The text between the brackets, e.g. `print:0.20mm QUALITY @MK3`.
    pub header: String,
    /// 1-based line of the header (0 for the unnamed leading section).
    pub line: usize,
    pub entries: Vec<Entry>,
}

/// A parsed file: its label (for messages) and sections in file order.
#[derive(Debug, Clone)]
pub struct IniFile {
    pub file: Arc<str>,
    pub sections: Vec<Section>,
}

/// Parses `text`; `file` names it in errors. A line that is neither blank, a comment, a
/// header nor `key = value` is an error naming its line.
pub fn parse(text: &str, file: &str) -> Result<IniFile, Error> {
    let file: Arc<str> = Arc::from(file);
    if text.len() > MAX_FILE_BYTES {
        return Err(Error::Syntax {
            file: file.to_string(),
            line: 1,
            reason: format!(
                "the file is {} bytes, more than the {MAX_FILE_BYTES} a PrusaSlicer config may have here",
                text.len()
            ),
        });
    }
    let syntax = |line: usize, reason: String| Error::Syntax {
        file: file.to_string(),
        line,
        reason,
    };
    let mut sections = vec![Section {
        header: String::new(),
        line: 0,
        entries: Vec::new(),
    }];
    // PrusaSlicer writes a UTF-8 BOM on some platforms.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        if raw.len() > MAX_LINE_BYTES {
            return Err(syntax(
                n,
                format!("line longer than {MAX_LINE_BYTES} bytes"),
            ));
        }
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            let Some(header) = rest.strip_suffix(']') else {
                return Err(syntax(
                    n,
                    format!("section header {line:?} has no closing ]"),
                ));
            };
            if header.trim().is_empty() {
                return Err(syntax(n, "empty section header []".into()));
            }
            sections.push(Section {
                header: header.trim().to_string(),
                line: n,
                entries: Vec::new(),
            });
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(syntax(
                n,
                format!("expected `key = value`, a [section] or a # comment, found {line:?}"),
            ));
        };
        let key = key.trim();
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(syntax(n, format!("{key:?} is not a setting name")));
        }
        let entries = &mut sections.last_mut().expect("never empty").entries;
        entries.push(Entry {
            key: key.to_string(),
            value: value.trim().to_string(),
            line: n,
        });
    }
    Ok(IniFile { file, sections })
}

/// Splits an `inherits` value (`a; b`, each, or the whole list, optionally in double quotes)
/// into names.
pub fn split_names(value: &str) -> Vec<String> {
    value
        .split(';')
        .map(|s| s.trim().trim_matches('"').trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// The text inside one pair of double quotes, or the text itself.
pub fn unquote(s: &str) -> &str {
    s.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_entries_and_lines() {
        let f = parse(
            "# c\nlayer_height = 0.2\n\n[print:a]\nperimeters=3\n; c\n[filament:b]\nx = \"q\\nr\"\n",
            "t.ini",
        )
        .unwrap();
        assert_eq!(f.sections.len(), 3);
        assert_eq!(f.sections[0].entries[0].key, "layer_height");
        assert_eq!(f.sections[0].entries[0].line, 2);
        assert_eq!(f.sections[1].header, "print:a");
        assert_eq!(f.sections[1].line, 4);
        assert_eq!(f.sections[1].entries[0].value, "3");
        assert_eq!(f.sections[2].entries[0].value, "\"q\\nr\"");
        assert_eq!(f.sections[2].entries[0].line, 8);
    }

    #[test]
    fn a_bad_line_names_its_line() {
        let e = parse("[print:a]\nperimeters 3\n", "t.ini").unwrap_err();
        assert_eq!(
            e.to_string(),
            "t.ini:2: expected `key = value`, a [section] or a # comment, found \"perimeters 3\""
        );
        let e = parse("a = 1\n[print:a\n", "t.ini").unwrap_err();
        assert!(e.to_string().starts_with("t.ini:2: section header"), "{e}");
    }

    #[test]
    fn inherits_lists() {
        assert_eq!(split_names("*0.20mm*; *MK3*"), vec!["*0.20mm*", "*MK3*"]);
        assert_eq!(split_names("\"Generic PLA\""), vec!["Generic PLA"]);
        assert!(split_names("").is_empty());
        assert_eq!(split_names("\"a b; c\""), vec!["a b", "c"]);
    }
}
