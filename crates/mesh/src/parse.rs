//! Reads binary and ASCII STL into a [`Mesh`], deciding the format by the length rule and
//! tolerating what real exporters write (upper-case keywords, CRLF, several solids, junk after
//! `endloop`/`endfacet`, non-numeric stored normals), while rejecting anything that would make
//! vertex positions uncertain.

use crate::check::{MeshReport, check, check_facets};
use crate::error::ParseError;
use crate::facets::{BinaryRecords, Facets};
use crate::mem;
use crate::{Limits, Mesh, StlFormat};

const HEADER_BYTES: usize = 80;
const BINARY_PREFIX: usize = 84;
const BINARY_FACET: usize = crate::facets::RECORD_BYTES;
/// How many leading bytes are inspected to tell a text file from a mislabelled binary one.
const SNIFF_BYTES: usize = 1024;

/// The most triangles any mesh may have, whatever `Limits` say: vertex and facet-edge indices
/// are 32-bit (3 per triangle, with a few values reserved as markers).
pub const MAX_SUPPORTED_TRIANGLES: u64 = (u32::MAX as u64 - 16) / 3;

/// Parses an STL file held in memory, enforcing `limits` (and [`MAX_SUPPORTED_TRIANGLES`]).
///
/// Binary iff `len == 84 + 50 * count_at_offset_80`; otherwise ASCII if the first word is
/// `solid`; otherwise the size mismatch is the error.
pub fn parse_stl(bytes: &[u8], limits: &Limits) -> Result<Mesh, ParseError> {
    match binary_layout(bytes, limits)? {
        Some(binary) => Ok(parse_binary(binary)),
        None => parse_text(bytes, limits),
    }
}

/// Parses and checks an STL file held in memory in one go: the same report as
/// `check(&parse_stl(bytes, limits)?)`, and the same errors, but a binary file is checked
/// straight from its bytes without building the [`Mesh`] first.
pub fn check_stl(bytes: &[u8], limits: &Limits) -> Result<StlCheck, ParseError> {
    match binary_layout(bytes, limits)? {
        Some(binary) => Ok(StlCheck {
            report: check_facets(&BinaryRecords::new(binary.body)),
            format: StlFormat::Binary,
            header: binary.header,
            solids: 1,
        }),
        None => {
            let mesh = parse_text(bytes, limits)?;
            Ok(StlCheck {
                report: check(&mesh),
                format: mesh.format,
                header: mesh.header,
                solids: mesh.solids,
            })
        }
    }
}

/// The outcome of [`check_stl`]: the report and what only the file says.
#[derive(Debug, Clone, PartialEq)]
pub struct StlCheck {
    pub report: MeshReport,
    pub format: StlFormat,
    /// Binary header (lossy UTF-8, trimmed) or the name of the first ASCII solid.
    pub header: String,
    /// Number of `solid` blocks (1 for binary).
    pub solids: u32,
}

/// A binary file that passed the limits: its header text and facet records.
struct Binary<'a> {
    header: String,
    body: &'a [u8],
}

/// `limits` with the triangle limit capped by what 32-bit indices allow.
fn capped(limits: &Limits) -> Limits {
    Limits {
        max_triangles: limits.max_triangles.min(MAX_SUPPORTED_TRIANGLES),
        ..*limits
    }
}

/// Applies the size limits, then the length rule: `Some` for a binary file within limits,
/// `None` when the file is not binary by length (it may be ASCII).
fn binary_layout<'a>(bytes: &'a [u8], limits: &Limits) -> Result<Option<Binary<'a>>, ParseError> {
    let limits = capped(limits);
    let len = bytes.len() as u64;
    if len == 0 {
        return Err(ParseError::Empty);
    }
    if len > limits.max_bytes {
        return Err(ParseError::TooLarge {
            bytes: len,
            limit: limits.max_bytes,
        });
    }
    let Some(count) = binary_count(bytes) else {
        return Ok(None);
    };
    if BINARY_PREFIX as u64 + BINARY_FACET as u64 * count != len {
        return Ok(None);
    }
    if count > limits.max_triangles {
        return Err(ParseError::TooManyTriangles {
            triangles: count,
            limit: limits.max_triangles,
        });
    }
    if count == 0 {
        return Err(ParseError::NoTriangles);
    }
    let header = String::from_utf8_lossy(&bytes[..HEADER_BYTES])
        .trim_matches(|c: char| c == '\0' || c.is_whitespace())
        .to_string();
    Ok(Some(Binary {
        header,
        body: &bytes[BINARY_PREFIX..],
    }))
}

/// A file that is not binary by the length rule: ASCII if it says `solid`, else the length
/// is the error.
fn parse_text(bytes: &[u8], limits: &Limits) -> Result<Mesh, ParseError> {
    let limits = &capped(limits);
    let declared = binary_count(bytes);
    if starts_with_solid(bytes) {
        return match parse_ascii(bytes, limits) {
            // A binary file whose header starts with `solid` but whose length is wrong is
            // better explained by the length than by a syntax error on binary garbage.
            Err(e) if !e.is_limit() && looks_binary(bytes) => Err(size_error(bytes, declared)),
            other => other,
        };
    }
    Err(size_error(bytes, declared))
}

fn size_error(bytes: &[u8], declared: Option<u64>) -> ParseError {
    match declared {
        Some(count) => ParseError::SizeMismatch {
            bytes: bytes.len() as u64,
            declared_triangles: count,
            needed_bytes: BINARY_PREFIX as u64 + BINARY_FACET as u64 * count,
        },
        None => ParseError::TooShort {
            bytes: bytes.len() as u64,
        },
    }
}

/// The triangle count a binary header declares at offset 80, if the file is long enough.
pub(crate) fn binary_count(bytes: &[u8]) -> Option<u64> {
    let raw: [u8; 4] = bytes.get(HEADER_BYTES..BINARY_PREFIX)?.try_into().ok()?;
    Some(u64::from(u32::from_le_bytes(raw)))
}

/// True when the first word (after an optional UTF-8 BOM and whitespace) is `solid`, any case.
pub(crate) fn starts_with_solid(bytes: &[u8]) -> bool {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let word = &bytes[start..];
    word.len() >= 5
        && word[..5].eq_ignore_ascii_case(b"solid")
        && word.get(5).is_none_or(|b| b.is_ascii_whitespace())
}

fn looks_binary(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .take(SNIFF_BYTES)
        .any(|&b| b == 0 || (b < 0x20 && !b.is_ascii_whitespace()))
}

fn parse_binary(binary: Binary) -> Mesh {
    let records = BinaryRecords::new(binary.body);
    let count = records.count();
    // One thread: the time goes into first touches of the output (page faults and the
    // kernel zeroing pages) and memory bandwidth; splitting it across threads was measured to
    // double the CPU time for no gain in elapsed time.
    let mut normals: Vec<[f32; 3]> = mem::with_capacity(count);
    let mut triangles: Vec<[[f32; 3]; 3]> = mem::with_capacity(count);
    records.each(0..count, |_, t, n| {
        normals.push(*n);
        triangles.push(*t);
    });
    Mesh {
        triangles,
        normals,
        format: StlFormat::Binary,
        header: binary.header,
        solids: 1,
    }
}

/// A byte cursor that hands out whitespace-separated tokens and tracks line numbers.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    line: u64,
}

impl<'a> Cursor<'a> {
    fn skip_space(&mut self) {
        while let Some(&b) = self.bytes.get(self.pos) {
            if b == b'\n' {
                self.line += 1;
            } else if !b.is_ascii_whitespace() {
                break;
            }
            self.pos += 1;
        }
    }

    /// Next token and the line it starts on, or `None` at end of input.
    fn token(&mut self) -> Option<(&'a [u8], u64)> {
        self.skip_space();
        let start = self.pos;
        while let Some(&b) = self.bytes.get(self.pos) {
            if b.is_ascii_whitespace() {
                break;
            }
            self.pos += 1;
        }
        (self.pos > start).then(|| (&self.bytes[start..self.pos], self.line))
    }

    /// The rest of the current line (for names and trailing junk), without the line break.
    fn rest_of_line(&mut self) -> &'a [u8] {
        let start = self.pos;
        while let Some(&b) = self.bytes.get(self.pos) {
            if b == b'\n' {
                break;
            }
            self.pos += 1;
        }
        &self.bytes[start..self.pos]
    }

    fn expect(&mut self, keyword: &str) -> Result<(), ParseError> {
        match self.token() {
            Some((tok, _)) if tok.eq_ignore_ascii_case(keyword.as_bytes()) => Ok(()),
            Some((tok, line)) => Err(ParseError::Syntax {
                line,
                expected: format!("`{keyword}`"),
                found: shown(tok),
            }),
            None => Err(ParseError::UnexpectedEnd {
                line: self.line,
                expected: format!("`{keyword}`"),
            }),
        }
    }

    /// The next token read as a number (`None` when it is not one), with the token and line.
    fn number(&mut self, what: &str) -> Result<(Option<f32>, &'a [u8], u64), ParseError> {
        match self.token() {
            Some((tok, line)) => {
                let value = std::str::from_utf8(tok)
                    .ok()
                    .and_then(|s| s.parse::<f32>().ok());
                Ok((value, tok, line))
            }
            None => Err(ParseError::UnexpectedEnd {
                line: self.line,
                expected: what.to_string(),
            }),
        }
    }

    fn coordinate(&mut self) -> Result<f32, ParseError> {
        // Rust's parser accepts `nan`/`inf`, which are read and reported by the check; anything
        // else that fails to parse makes the vertex position unknowable.
        match self.number("a vertex coordinate")? {
            (Some(value), _, _) => Ok(value),
            (None, tok, line) => Err(ParseError::BadNumber {
                line,
                token: shown(tok),
            }),
        }
    }
}

/// A token as shown in an error message: lossy, and cut short so a binary blob stays readable.
fn shown(tok: &[u8]) -> String {
    const MAX_SHOWN: usize = 40;
    let text = String::from_utf8_lossy(&tok[..tok.len().min(MAX_SHOWN)]).into_owned();
    if tok.len() > MAX_SHOWN {
        format!("{text}...")
    } else {
        text
    }
}

/// The first line longer than `max` bytes (1-based), counted as [`crate::UploadScanner`]
/// counts them, so a file the upload accepted is never refused here and the reverse.
pub(crate) fn long_line(bytes: &[u8], max: u64) -> Option<u64> {
    let (mut line, mut len) = (1u64, 0u64);
    for &b in bytes {
        match b {
            b'\n' => {
                line += 1;
                len = 0;
            }
            b'\r' => len = 0,
            _ => {
                len += 1;
                if len > max {
                    return Some(line);
                }
            }
        }
    }
    None
}

fn parse_ascii(bytes: &[u8], limits: &Limits) -> Result<Mesh, ParseError> {
    if let Some(line) = long_line(bytes, limits.max_line_bytes) {
        return Err(ParseError::LineTooLong {
            line,
            limit: limits.max_line_bytes,
        });
    }
    let body = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut cur = Cursor {
        bytes: body,
        pos: 0,
        line: 1,
    };
    // A rough upper bound avoids repeated reallocation; a facet takes at least ~100 bytes.
    let estimate = (body.len() / 100).min(limits.max_triangles as usize);
    let mut triangles = Vec::with_capacity(estimate);
    let mut normals = Vec::with_capacity(estimate);
    let mut header = None;
    let mut solids = 0u32;
    loop {
        // Trailing NUL padding after the last solid is written by some exporters.
        cur.skip_space();
        if body[cur.pos..]
            .iter()
            .all(|&b| b == 0 || b.is_ascii_whitespace())
        {
            break;
        }
        cur.expect("solid")?;
        solids += 1;
        let name = String::from_utf8_lossy(cur.rest_of_line())
            .trim()
            .to_string();
        header.get_or_insert(name);
        loop {
            let Some((tok, line)) = cur.token() else {
                return Err(ParseError::UnexpectedEnd {
                    line: cur.line,
                    expected: "`facet` or `endsolid`".to_string(),
                });
            };
            if tok.eq_ignore_ascii_case(b"endsolid") {
                cur.rest_of_line();
                break;
            }
            if !tok.eq_ignore_ascii_case(b"facet") {
                return Err(ParseError::Syntax {
                    line,
                    expected: "`facet` or `endsolid`".to_string(),
                    found: shown(tok),
                });
            }
            if triangles.len() as u64 >= limits.max_triangles {
                return Err(ParseError::TooManyTriangles {
                    triangles: triangles.len() as u64 + 1,
                    limit: limits.max_triangles,
                });
            }
            cur.expect("normal")?;
            // Stored normals are advisory (slicers recompute them): unreadable ones become NaN.
            let mut normal = [0f32; 3];
            for n in &mut normal {
                *n = cur.number("a normal component")?.0.unwrap_or(f32::NAN);
            }
            cur.expect("outer")?;
            cur.expect("loop")?;
            let mut tri = [[0f32; 3]; 3];
            for vertex in &mut tri {
                cur.expect("vertex")?;
                for c in vertex.iter_mut() {
                    *c = cur.coordinate()?;
                }
            }
            cur.expect("endloop")?;
            cur.rest_of_line();
            cur.expect("endfacet")?;
            cur.rest_of_line();
            triangles.push(tri);
            normals.push(normal);
        }
    }
    if triangles.is_empty() {
        return Err(ParseError::NoTriangles);
    }
    Ok(Mesh {
        triangles,
        normals,
        format: StlFormat::Ascii,
        header: header.unwrap_or_default(),
        solids,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CUBE_FACET: &str = "facet normal 0 0 1\n outer loop\n vertex 0 0 0\n vertex 1 0 0\n vertex 0 1 0\n endloop\n endfacet\n";

    fn ascii(body: &str) -> Result<Mesh, ParseError> {
        parse_stl(body.as_bytes(), &Limits::default())
    }

    #[test]
    fn reads_minimal_ascii() {
        let m = ascii(&format!("solid t\n{CUBE_FACET}endsolid t\n")).unwrap();
        assert_eq!(
            m.triangles,
            vec![[[0., 0., 0.], [1., 0., 0.], [0., 1., 0.]]]
        );
        assert_eq!(m.normals, vec![[0., 0., 1.]]);
        assert_eq!(m.header, "t");
        assert_eq!(m.format, StlFormat::Ascii);
    }

    #[test]
    fn reports_misspelt_keyword_with_line() {
        let text = format!(
            "solid t\n{}endsolid\n",
            CUBE_FACET.replace("vertex 1", "vertx 1")
        );
        let err = ascii(&text).unwrap_err();
        assert_eq!(err.to_string(), "line 5: expected `vertex`, found `vertx`");
        assert!(!err.is_limit());
    }

    #[test]
    fn bad_coordinate_is_an_error_but_bad_normal_is_not() {
        let text = format!(
            "solid t\n{}endsolid\n",
            CUBE_FACET.replace("vertex 1 0 0", "vertex 1 0 x1")
        );
        assert!(matches!(
            ascii(&text),
            Err(ParseError::BadNumber { line: 5, .. })
        ));
        let text = format!(
            "solid t\n{}endsolid\n",
            CUBE_FACET.replace("normal 0 0 1", "normal +inf -inf weird")
        );
        let m = ascii(&text).unwrap();
        assert!(m.normals[0][2].is_nan());
        assert_eq!(m.normals[0][0], f32::INFINITY);
    }

    #[test]
    fn nan_coordinates_are_read() {
        let text = format!(
            "solid t\n{}endsolid\n",
            CUBE_FACET.replace("vertex 1 0 0", "vertex nan inf 0")
        );
        let m = ascii(&text).unwrap();
        assert!(m.triangles[0][1][0].is_nan());
        assert!(m.triangles[0][1][1].is_infinite());
    }

    #[test]
    fn truncated_ascii_is_reported() {
        let text = format!("solid t\n{CUBE_FACET}");
        assert!(matches!(
            ascii(&text),
            Err(ParseError::UnexpectedEnd { .. })
        ));
        let text = "solid t\nfacet normal 0 0 1\n outer loop\n vertex 0 0";
        assert!(matches!(ascii(text), Err(ParseError::UnexpectedEnd { .. })));
    }

    #[test]
    fn empty_and_facetless_files_are_errors() {
        assert_eq!(ascii(""), Err(ParseError::Empty));
        assert_eq!(ascii("solid x\nendsolid x\n"), Err(ParseError::NoTriangles));
        assert_eq!(ascii("hello"), Err(ParseError::TooShort { bytes: 5 }));
        let mut bin = vec![0u8; 84];
        assert_eq!(
            parse_stl(&bin, &Limits::default()),
            Err(ParseError::NoTriangles)
        );
        bin[80] = 100;
        bin.resize(3000, 0);
        let err = parse_stl(&bin, &Limits::default()).unwrap_err();
        assert_eq!(
            err,
            ParseError::SizeMismatch {
                bytes: 3000,
                declared_triangles: 100,
                needed_bytes: 5084
            }
        );
    }

    #[test]
    fn binary_with_solid_header_is_binary() {
        let mut bin = b"solid name\n".to_vec();
        bin.resize(80, b' ');
        bin.extend_from_slice(&1u32.to_le_bytes());
        for v in [0f32, 0., 1., 0., 0., 0., 1., 0., 0., 0., 1., 0.] {
            bin.extend_from_slice(&v.to_le_bytes());
        }
        bin.extend_from_slice(&[0, 0]);
        let m = parse_stl(&bin, &Limits::default()).unwrap();
        assert_eq!(m.format, StlFormat::Binary);
        assert_eq!(m.header, "solid name");
        assert_eq!(m.triangles[0][1], [1., 0., 0.]);
        // The same file cut short is explained by its length, not by a syntax error.
        let err = parse_stl(&bin[..120], &Limits::default()).unwrap_err();
        assert!(
            matches!(
                err,
                ParseError::SizeMismatch {
                    needed_bytes: 134,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn limits_are_enforced() {
        let text = format!("solid t\n{CUBE_FACET}{CUBE_FACET}endsolid\n");
        let limits = Limits {
            max_bytes: 1 << 20,
            max_triangles: 1,
            ..Limits::default()
        };
        let err = ascii_with(&text, &limits);
        assert_eq!(
            err,
            Some(ParseError::TooManyTriangles {
                triangles: 2,
                limit: 1
            })
        );
        let limits = Limits {
            max_bytes: 10,
            max_triangles: 10,
            ..Limits::default()
        };
        assert!(ascii_with(&text, &limits).is_some_and(|e| e.is_limit()));
    }

    #[test]
    fn ascii_lines_are_bounded_as_the_upload_scanner_bounds_them() {
        let limits = Limits {
            max_line_bytes: 40,
            ..Limits::default()
        };
        let text = format!("solid t\n{CUBE_FACET}endsolid t\n");
        assert_eq!(ascii_with(&text, &limits), None);
        let long = format!("solid {}\n{CUBE_FACET}endsolid\n", "n".repeat(41));
        assert_eq!(
            ascii_with(&long, &limits),
            Some(ParseError::LineTooLong { line: 1, limit: 40 })
        );
        let long = format!("solid t\r\n{CUBE_FACET}vertex {}\n", "1".repeat(60));
        let err = ascii_with(&long, &limits).unwrap();
        assert!(
            err.is_limit() && matches!(err, ParseError::LineTooLong { line: 9, .. }),
            "{err}"
        );
    }

    fn ascii_with(text: &str, limits: &Limits) -> Option<ParseError> {
        parse_stl(text.as_bytes(), limits).err()
    }

    #[test]
    fn several_solids_and_odd_case() {
        let text = format!(
            "SOLID a\r\n{}ENDSOLID a\r\nsolid b\n{CUBE_FACET}endsolid b junk\n\0\0",
            CUBE_FACET.to_uppercase().replace('\n', "\r\n")
        );
        let m = ascii(&text).unwrap();
        assert_eq!(m.triangles.len(), 2);
        assert_eq!(m.solids, 2);
        assert_eq!(m.header, "a");
    }
}
