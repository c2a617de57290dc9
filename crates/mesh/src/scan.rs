//! A guard that watches an upload as it streams in and stops it as soon as a limit is provably
//! broken, so the server never buffers a file it would refuse anyway.

use serde::{Deserialize, Serialize};

use crate::error::ScanError;
use crate::parse::{binary_count, long_line, starts_with_solid};
use crate::{Limits, StlFormat};

const BINARY_PREFIX: u64 = 84;
const BINARY_FACET: u64 = 50;
/// `endfacet` as a big-endian word, compared against a rolling window of lower-cased bytes.
const ENDFACET: u64 = u64::from_be_bytes(*b"endfacet");

/// What the scan learned about a complete upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanSummary {
    pub bytes: u64,
    /// The format the upload will be read as (by the length rule).
    pub format: StlFormat,
    /// Declared count (binary) or number of `endfacet` keywords seen (ASCII).
    pub triangles: u64,
}

#[derive(Debug)]
pub struct UploadScanner {
    declared_size: u64,
    limits: Limits,
    received: u64,
    /// The first 84 bytes, kept until the format can be decided.
    prefix: Vec<u8>,
    format: Option<StlFormat>,
    declared_triangles: u64,
    window: u64,
    endfacets: u64,
    /// ASCII only: the line being read (1-based) and its length so far.
    line: u64,
    line_bytes: u64,
    /// Set while the first word is still to come: the first 84 bytes held only blanks (where a
    /// binary header would be) and maybe the start of `solid`. Holds that word so far, at most
    /// 6 bytes, so the format is decided as the parser decides it, on the whole first word.
    word: Option<Vec<u8>>,
}

impl UploadScanner {
    /// Starts a scan of an upload announced as `declared_size` bytes.
    pub fn new(declared_size: u64, limits: Limits) -> Result<Self, ScanError> {
        if declared_size > limits.max_bytes {
            return Err(ScanError::TooLarge {
                bytes: declared_size,
                limit: limits.max_bytes,
            });
        }
        Ok(Self {
            declared_size,
            limits,
            received: 0,
            prefix: Vec::with_capacity(BINARY_PREFIX as usize),
            format: None,
            declared_triangles: 0,
            window: 0,
            endfacets: 0,
            line: 1,
            line_bytes: 0,
            word: None,
        })
    }

    /// Takes the next chunk; errors as soon as a limit is provably exceeded.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), ScanError> {
        self.received += chunk.len() as u64;
        if self.received > self.limits.max_bytes {
            return Err(ScanError::TooLarge {
                bytes: self.received,
                limit: self.limits.max_bytes,
            });
        }
        if self.received > self.declared_size {
            return Err(ScanError::MoreThanDeclared {
                received: self.received,
                declared: self.declared_size,
            });
        }
        if self.format.is_none() {
            let want = BINARY_PREFIX as usize - self.prefix.len();
            self.prefix
                .extend_from_slice(&chunk[..chunk.len().min(want)]);
            if self.prefix.len() == BINARY_PREFIX as usize {
                self.decide()?;
                // The prefix may itself contain `endfacet` text in an ASCII file.
                let prefix = std::mem::take(&mut self.prefix);
                if self.format == Some(StlFormat::Ascii) {
                    let rest = &chunk[want.min(chunk.len())..];
                    self.read_ascii(&prefix)?;
                    self.read_ascii(rest)?;
                    self.watch_word(rest)?;
                }
                return Ok(());
            }
            return Ok(());
        }
        if self.format == Some(StlFormat::Ascii) {
            self.read_ascii(chunk)?;
            self.watch_word(chunk)?;
        }
        Ok(())
    }

    /// While the first word is still to come, follows it; refuses the upload as soon as it
    /// cannot be `solid` (the parser would not read it as ASCII either).
    fn watch_word(&mut self, bytes: &[u8]) -> Result<(), ScanError> {
        let Some(word) = &mut self.word else {
            return Ok(());
        };
        for &b in bytes {
            if word.len() == 6 {
                break;
            }
            if word.is_empty() && b.is_ascii_whitespace() {
                continue;
            }
            word.push(b);
        }
        match solid_word(word) {
            Some(true) => self.word = None,
            Some(false) => return Err(self.not_solid()),
            None => {}
        }
        Ok(())
    }

    fn not_solid(&self) -> ScanError {
        ScanError::SizeMismatch {
            declared_size: self.declared_size,
            declared_triangles: self.declared_triangles,
            needed_bytes: BINARY_PREFIX + BINARY_FACET * self.declared_triangles,
        }
    }

    fn decide(&mut self) -> Result<(), ScanError> {
        let count = binary_count(&self.prefix).unwrap_or(0);
        let needed = BINARY_PREFIX + BINARY_FACET * count;
        if needed == self.declared_size {
            if count > self.limits.max_triangles {
                return Err(ScanError::TooManyTriangles {
                    triangles: count,
                    limit: self.limits.max_triangles,
                });
            }
            self.format = Some(StlFormat::Binary);
            self.declared_triangles = count;
        } else if starts_with_solid(&self.prefix) {
            self.format = Some(StlFormat::Ascii);
        } else if let Some(word) = partial_solid(&self.prefix) {
            self.format = Some(StlFormat::Ascii);
            self.declared_triangles = count;
            self.word = Some(word);
        } else {
            return Err(ScanError::SizeMismatch {
                declared_size: self.declared_size,
                declared_triangles: count,
                needed_bytes: needed,
            });
        }
        Ok(())
    }

    /// Counts `endfacet` keywords and measures lines (ended by LF, CRLF or a lone CR).
    fn read_ascii(&mut self, bytes: &[u8]) -> Result<(), ScanError> {
        for &b in bytes {
            self.window = (self.window << 8) | u64::from(b.to_ascii_lowercase());
            if self.window == ENDFACET {
                self.endfacets += 1;
            }
            match b {
                b'\n' => {
                    self.line += 1;
                    self.line_bytes = 0;
                }
                b'\r' => self.line_bytes = 0,
                _ => {
                    self.line_bytes += 1;
                    if self.line_bytes > self.limits.max_line_bytes {
                        return Err(ScanError::LineTooLong {
                            line: self.line,
                            limit: self.limits.max_line_bytes,
                        });
                    }
                }
            }
        }
        if self.endfacets > self.limits.max_triangles {
            return Err(ScanError::TooManyTriangles {
                triangles: self.endfacets,
                limit: self.limits.max_triangles,
            });
        }
        Ok(())
    }

    /// Ends the scan; the upload must have delivered exactly the declared size.
    pub fn finish(self) -> Result<ScanSummary, ScanError> {
        if self.received != self.declared_size {
            return Err(ScanError::Truncated {
                received: self.received,
                declared: self.declared_size,
            });
        }
        if let Some(word) = &self.word {
            // The file ended inside or before its first word: only a bare `solid` is ASCII.
            if solid_word(word) != Some(true) && !word.eq_ignore_ascii_case(b"solid") {
                return Err(self.not_solid());
            }
        }
        let format = match self.format {
            Some(f) => f,
            // Shorter than a binary header: only an ASCII file can be that small, and its lines
            // were never measured while it streamed.
            None if starts_with_solid(&self.prefix) => {
                if let Some(line) = long_line(&self.prefix, self.limits.max_line_bytes) {
                    return Err(ScanError::LineTooLong {
                        line,
                        limit: self.limits.max_line_bytes,
                    });
                }
                StlFormat::Ascii
            }
            None => {
                return Err(ScanError::TooShort {
                    bytes: self.received,
                });
            }
        };
        let triangles = match format {
            StlFormat::Binary => self.declared_triangles,
            StlFormat::Ascii => self.endfacets + count_in(&self.prefix),
        };
        Ok(ScanSummary {
            bytes: self.received,
            format,
            triangles,
        })
    }
}

/// The first word of a prefix that holds only blanks (after an optional UTF-8 BOM) and then
/// nothing or the start of `solid`: the file may still be ASCII, decided by what follows.
fn partial_solid(prefix: &[u8]) -> Option<Vec<u8>> {
    let prefix = prefix.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(prefix);
    let start = prefix
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(prefix.len());
    let word = &prefix[start..];
    (word.len() <= 5 && b"solid"[..word.len()].eq_ignore_ascii_case(word)).then(|| word.to_vec())
}

/// Whether a first word read so far is `solid` followed by a blank: `None` while it could
/// still become one.
fn solid_word(word: &[u8]) -> Option<bool> {
    let n = word.len().min(5);
    if !b"solid"[..n].eq_ignore_ascii_case(&word[..n]) {
        return Some(false);
    }
    (word.len() == 6).then(|| word[5].is_ascii_whitespace())
}

/// `endfacet` occurrences in a short undecided prefix (files under 84 bytes).
fn count_in(bytes: &[u8]) -> u64 {
    bytes
        .windows(8)
        .filter(|w| w.eq_ignore_ascii_case(b"endfacet"))
        .count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binary(count: u32, facets: usize) -> Vec<u8> {
        let mut b = vec![b' '; 80];
        b.extend_from_slice(&count.to_le_bytes());
        b.resize(84 + 50 * facets, 0);
        b
    }

    fn feed_all(s: &mut UploadScanner, data: &[u8], chunk: usize) -> Result<(), ScanError> {
        data.chunks(chunk).try_for_each(|c| s.feed(c))
    }

    #[test]
    fn binary_triangle_limit_is_known_after_84_bytes() {
        let data = binary(10, 10);
        let limits = Limits {
            max_bytes: 1 << 20,
            max_triangles: 5,
            ..Limits::default()
        };
        let mut s = UploadScanner::new(data.len() as u64, limits).unwrap();
        s.feed(&data[..50]).unwrap();
        let err = s.feed(&data[50..90]).unwrap_err();
        assert_eq!(
            err,
            ScanError::TooManyTriangles {
                triangles: 10,
                limit: 5
            }
        );
        assert!(err.is_limit());
    }

    #[test]
    fn binary_size_mismatch_says_which() {
        let data = binary(100, 58);
        let mut s = UploadScanner::new(3000, Limits::default()).unwrap();
        let err = s.feed(&data[..100]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "file is 3,000 bytes but its header declares 100 triangles (needs 5,084); the upload size and the binary STL header disagree"
        );
        assert!(!err.is_limit());
    }

    #[test]
    fn ascii_endfacets_are_counted_across_chunks() {
        let facet = "facet normal 0 0 1\nouter loop\nvertex 0 0 0\nvertex 1 0 0\nvertex 0 1 0\nendloop\nENDFacet\n";
        let text = format!("solid x\n{}endsolid x\n", facet.repeat(7));
        for chunk in [1, 3, 7, 64, 1000] {
            let mut s = UploadScanner::new(text.len() as u64, Limits::default()).unwrap();
            feed_all(&mut s, text.as_bytes(), chunk).unwrap();
            let sum = s.finish().unwrap();
            assert_eq!(sum.triangles, 7, "chunk {chunk}");
            assert_eq!(sum.format, StlFormat::Ascii);
        }
        let limits = Limits {
            max_bytes: 1 << 20,
            max_triangles: 6,
            ..Limits::default()
        };
        let mut s = UploadScanner::new(text.len() as u64, limits).unwrap();
        let err = feed_all(&mut s, text.as_bytes(), 5).unwrap_err();
        assert_eq!(
            err,
            ScanError::TooManyTriangles {
                triangles: 7,
                limit: 6
            }
        );
    }

    #[test]
    fn an_endless_ascii_line_is_refused_as_it_streams() {
        // 200 MB announced, one line without an end: refused at the limit, long before the
        // declared size arrives, and the reason names the line, not truncation.
        let limits = Limits::default();
        let mut s = UploadScanner::new(200_000_000, limits).unwrap();
        s.feed(b"solid huge\nfacet normal 0 0 1\n").unwrap();
        let chunk = vec![b'9'; 4096];
        let mut fed = 0u64;
        let err = loop {
            match s.feed(&chunk) {
                Ok(()) => fed += chunk.len() as u64,
                Err(e) => break e,
            }
            assert!(fed < 1 << 20, "not refused after {fed} bytes");
        };
        assert_eq!(
            err,
            ScanError::LineTooLong {
                line: 3,
                limit: crate::DEFAULT_MAX_LINE_BYTES
            }
        );
        assert!(err.is_limit());
        assert!(
            err.to_string()
                .starts_with("line 3 is longer than 65,536 bytes"),
            "{err}"
        );
        // The first line counts too, and so does a line ended by CR alone.
        let limits = Limits {
            max_line_bytes: 10,
            ..Limits::default()
        };
        let mut s = UploadScanner::new(1000, limits).unwrap();
        let err = feed_all(&mut s, format!("solid {}", "n".repeat(100)).as_bytes(), 7);
        assert_eq!(err, Err(ScanError::LineTooLong { line: 1, limit: 10 }));
        let text = "solid a\rfacet\r\nouter loop\n";
        let mut s = UploadScanner::new(text.len() as u64, limits).unwrap();
        feed_all(&mut s, text.as_bytes(), 3).unwrap();
        // Binary files have no lines.
        let data = binary(2, 2);
        let mut s = UploadScanner::new(data.len() as u64, limits).unwrap();
        feed_all(&mut s, &data, 50).unwrap();
        s.finish().unwrap();
    }

    /// The parser finds `solid` after any number of blanks; so must the scanner, although
    /// blanks fill the 84 bytes where it would otherwise decide (found by the stl fuzz target).
    #[test]
    fn ascii_after_more_than_84_blanks_is_read_as_the_parser_reads_it() {
        let facet = "facet normal 0 0 1\nouter loop\nvertex 0 0 0\nvertex 1 0 0\nvertex 0 1 0\nendloop\nendfacet\n";
        for (lead, chunk) in [
            (" ".repeat(100), 7),
            ("\n".repeat(300), 1000),
            (" ".repeat(79), 3),
        ] {
            let text = format!("{lead}solid x\n{facet}endsolid x\n");
            let mut s = UploadScanner::new(text.len() as u64, Limits::default()).unwrap();
            feed_all(&mut s, text.as_bytes(), chunk).unwrap();
            let sum = s.finish().unwrap();
            assert_eq!(
                (sum.format, sum.triangles),
                (StlFormat::Ascii, 1),
                "{lead:?}"
            );
            let mesh = crate::parse_stl(text.as_bytes(), &Limits::default()).unwrap();
            assert_eq!(mesh.triangles.len(), 1);
        }
        for text in [
            format!("{}solidity\n", " ".repeat(90)),
            format!("{}facet\n", " ".repeat(90)),
            format!("{}sol", " ".repeat(90)),
            " ".repeat(200),
        ] {
            let mut s = UploadScanner::new(text.len() as u64, Limits::default()).unwrap();
            let err = feed_all(&mut s, text.as_bytes(), 5).and_then(|()| s.finish().map(|_| ()));
            assert!(
                matches!(err, Err(ScanError::SizeMismatch { .. })),
                "{text:?}: {err:?}"
            );
            assert!(crate::parse_stl(text.as_bytes(), &Limits::default()).is_err());
        }
        // A file shorter than a binary header has its lines measured too.
        let limits = Limits {
            max_line_bytes: 8,
            ..Limits::default()
        };
        let text = "solid x\nfacet normal 0 0 1 outer\n";
        let mut s = UploadScanner::new(text.len() as u64, limits).unwrap();
        feed_all(&mut s, text.as_bytes(), 3).unwrap();
        assert_eq!(
            s.finish(),
            Err(ScanError::LineTooLong { line: 2, limit: 8 })
        );
        assert!(matches!(
            crate::parse_stl(text.as_bytes(), &limits),
            Err(crate::ParseError::LineTooLong { line: 2, .. })
        ));
        // A bare `solid` at the end is as the parser has it: ASCII (with no triangles).
        let text = format!("{}solid", " ".repeat(90));
        let mut s = UploadScanner::new(text.len() as u64, Limits::default()).unwrap();
        feed_all(&mut s, text.as_bytes(), 4).unwrap();
        assert_eq!(s.finish().unwrap().format, StlFormat::Ascii);
    }

    #[test]
    fn size_limits_and_truncation() {
        let limits = Limits {
            max_bytes: 100,
            max_triangles: 10,
            ..Limits::default()
        };
        assert!(matches!(
            UploadScanner::new(101, limits),
            Err(ScanError::TooLarge { .. })
        ));
        let mut s = UploadScanner::new(90, limits).unwrap();
        assert!(matches!(
            s.feed(&[b's'; 91]),
            Err(ScanError::MoreThanDeclared {
                received: 91,
                declared: 90
            })
        ));
        let data = binary(1, 1);
        let mut s = UploadScanner::new(data.len() as u64, Limits::default()).unwrap();
        s.feed(&data[..100]).unwrap();
        assert_eq!(
            s.finish(),
            Err(ScanError::Truncated {
                received: 100,
                declared: 134
            })
        );
        let mut s = UploadScanner::new(data.len() as u64, Limits::default()).unwrap();
        feed_all(&mut s, &data, 13).unwrap();
        let sum = s.finish().unwrap();
        assert_eq!((sum.format, sum.triangles), (StlFormat::Binary, 1));
    }
}
