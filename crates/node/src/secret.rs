//! A credential for a printer host (an API key, an access code). It exists so that a secret
//! cannot reach a log line, an error message or the router by accident: its `Debug` and
//! `Display` print `[redacted]`, and the only way to the text is [`Secret::expose`], which a
//! driver calls where it builds a request header.

use std::fmt;

/// A secret string; formatting it never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `s` (surrounding whitespace, such as a file's final newline, is dropped).
    pub fn new(s: impl AsRef<str>) -> Self {
        Secret(s.as_ref().trim().to_string())
    }

    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting_never_shows_the_secret() {
        let s = Secret::new("  hunter2\n");
        assert_eq!(s.expose(), "hunter2");
        for shown in [format!("{s}"), format!("{s:?}"), format!("{:#?}", Some(&s))] {
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("redacted"), "{shown}");
        }
    }
}
