//! Inputs the fuzz target `gcode` (fuzz/, see fuzz/README.md) found, kept as plain tests.

use fabrouter_gcode::{GcodeError, Limits, Scanner, scan};

fn chunked(data: &[u8], sizes: &[usize], limits: Limits) -> Result<(), GcodeError> {
    let mut s = Scanner::new(data.len() as u64, limits)?;
    let mut rest = data;
    for &n in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (head, tail) = rest.split_at(n.min(rest.len()));
        s.feed(head)?;
        rest = tail;
    }
    s.finish().map(drop)
}

/// With a line limit under 4 bytes, a chunk boundary inside the binary G-code magic gave
/// `LineTooLong` where the whole file gives `BinaryGcode`: the partial-line check ran before
/// the magic could be recognised.
#[test]
fn bgcode_magic_split_across_chunks_is_still_binary_gcode() {
    let file = b"GCDE\r\x05\r\r\r\r\r\r\r";
    let limits = Limits {
        max_bytes: 208,
        max_line_bytes: 0,
    };
    assert_eq!(scan(file, limits).unwrap_err(), GcodeError::BinaryGcode);
    for sizes in [&[1usize][..], &[2], &[3], &[1, 2, 13]] {
        assert_eq!(
            chunked(file, sizes, limits).unwrap_err(),
            GcodeError::BinaryGcode,
            "chunks {sizes:?}"
        );
    }
    // Not the magic: the line limit still applies, whatever the chunks.
    let text = b"GCDX1\n";
    for sizes in [&[1usize][..], &[2], &[6]] {
        assert_eq!(
            chunked(text, sizes, limits).unwrap_err(),
            GcodeError::LineTooLong { line: 1, max: 0 },
            "chunks {sizes:?}"
        );
    }
}
