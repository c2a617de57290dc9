//! Errors from reading STL data, worded so that a person knows what to fix, and classified so
//! that the server can map them to RESOURCE_EXHAUSTED (limits) or INVALID_ARGUMENT (bad input).

use thiserror::Error;

/// Formats a count with thousands separators ("5,084") for messages read by people.
pub(crate) fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Why `parse_stl` refused a file.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseError {
    #[error("the file is empty")]
    Empty,
    #[error("file is {} bytes, which exceeds the limit of {} bytes", grouped(*.bytes), grouped(*.limit))]
    TooLarge { bytes: u64, limit: u64 },
    #[error("{} triangles exceeds the limit of {}", grouped(*.triangles), grouped(*.limit))]
    TooManyTriangles { triangles: u64, limit: u64 },
    #[error(
        "file is {} bytes, too short for a binary STL (needs at least 84) and it does not start with `solid`",
        grouped(*.bytes)
    )]
    TooShort { bytes: u64 },
    #[error(
        "file is {} bytes but its header declares {} triangles (needs {}); the file is truncated or not an STL",
        grouped(*.bytes), grouped(*.declared_triangles), grouped(*.needed_bytes)
    )]
    SizeMismatch {
        bytes: u64,
        declared_triangles: u64,
        needed_bytes: u64,
    },
    #[error("the file contains no triangles")]
    NoTriangles,
    #[error("line {line}: expected {expected}, found `{found}`")]
    Syntax {
        line: u64,
        expected: String,
        found: String,
    },
    #[error("line {line}: `{token}` is not a number (vertex coordinate)")]
    BadNumber { line: u64, token: String },
    #[error("line {line}: unexpected end of file, expected {expected}; the file is truncated")]
    UnexpectedEnd { line: u64, expected: String },
    #[error(
        "line {line} is longer than {} bytes, the longest line an ASCII STL may have; an ASCII STL line holds a keyword and up to three numbers",
        grouped(*.limit)
    )]
    LineTooLong { line: u64, limit: u64 },
}

impl ParseError {
    /// True when the input broke an explicit limit (RESOURCE_EXHAUSTED) rather than being
    /// malformed (INVALID_ARGUMENT).
    pub fn is_limit(&self) -> bool {
        matches!(
            self,
            ParseError::TooLarge { .. }
                | ParseError::TooManyTriangles { .. }
                | ParseError::LineTooLong { .. }
        )
    }
}

/// Why `UploadScanner` stopped an upload while it was streaming in.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ScanError {
    #[error("upload is {} bytes, which exceeds the limit of {} bytes", grouped(*.bytes), grouped(*.limit))]
    TooLarge { bytes: u64, limit: u64 },
    #[error("received {} bytes but the upload declared {}", grouped(*.received), grouped(*.declared))]
    MoreThanDeclared { received: u64, declared: u64 },
    #[error("{} triangles exceeds the limit of {}", grouped(*.triangles), grouped(*.limit))]
    TooManyTriangles { triangles: u64, limit: u64 },
    #[error(
        "file is {} bytes but its header declares {} triangles (needs {}); the upload size and the binary STL header disagree",
        grouped(*.declared_size), grouped(*.declared_triangles), grouped(*.needed_bytes)
    )]
    SizeMismatch {
        declared_size: u64,
        declared_triangles: u64,
        needed_bytes: u64,
    },
    #[error(
        "upload is {} bytes, too short for a binary STL (needs at least 84) and it does not start with `solid`",
        grouped(*.bytes)
    )]
    TooShort { bytes: u64 },
    #[error("upload ended after {} of {} declared bytes; it is truncated", grouped(*.received), grouped(*.declared))]
    Truncated { received: u64, declared: u64 },
    #[error(
        "line {line} is longer than {} bytes, the longest line an ASCII STL may have; an ASCII STL line holds a keyword and up to three numbers",
        grouped(*.limit)
    )]
    LineTooLong { line: u64, limit: u64 },
}

impl ScanError {
    /// True when the upload broke an explicit limit (RESOURCE_EXHAUSTED) rather than being
    /// malformed (INVALID_ARGUMENT).
    pub fn is_limit(&self) -> bool {
        matches!(
            self,
            ScanError::TooLarge { .. }
                | ScanError::TooManyTriangles { .. }
                | ScanError::LineTooLong { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_thousands() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(5084), "5,084");
        assert_eq!(grouped(7_500_000), "7,500,000");
    }

    #[test]
    fn messages_say_what_to_fix() {
        let e = ParseError::SizeMismatch {
            bytes: 3000,
            declared_triangles: 100,
            needed_bytes: 5084,
        };
        assert_eq!(
            e.to_string(),
            "file is 3,000 bytes but its header declares 100 triangles (needs 5,084); the file is truncated or not an STL"
        );
        assert!(!e.is_limit());
        let e = ParseError::TooManyTriangles {
            triangles: 7_500_000,
            limit: 5_000_000,
        };
        assert_eq!(
            e.to_string(),
            "7,500,000 triangles exceeds the limit of 5,000,000"
        );
        assert!(e.is_limit());
    }
}
