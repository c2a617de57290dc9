//! STL upload path: `UploadScanner` fed in fuzz-chosen chunks, then `parse_stl` and `check_stl`
//! on the whole file, and the three must agree.
//!
//! Input layout (so that a raw STL file with a `\0\0` prefix is a valid seed):
//! `[n] [n × u16 chunk sizes] [flags] [file ...]`, read with `arbitrary::Unstructured`.

#![no_main]

use arbitrary::Unstructured;
use fabrouter_fuzz::{chunked, split_input};
use fabrouter_mesh::{
    Limits, ParseError, ScanError, StlFormat, UploadScanner, check, check_stl, parse_stl,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let (chunks, flags) = split_input(&mut u);
    let file = u.take_rest();
    let limits = if flags & 1 == 0 {
        Limits::default()
    } else {
        // Small limits, so the limit paths are reachable with small inputs.
        Limits {
            max_bytes: 64 + u64::from(flags >> 4) * 64,
            max_triangles: u64::from((flags >> 1) & 7),
            max_line_bytes: 8 + u64::from(flags >> 2) * 4,
        }
    };
    // Mostly the honest size; sometimes one byte more or less than arrives.
    let declared = match (flags >> 4) & 3 {
        1 if flags & 1 == 0 => file.len() as u64 + 1,
        2 if flags & 1 == 0 => (file.len() as u64).saturating_sub(1),
        _ => file.len() as u64,
    };

    let scanned = scan(file, declared, limits, &chunks);
    let parsed = parse_stl(file, &limits);
    let checked = check_stl(file, &limits);

    // check_stl is documented as check(&parse_stl(..)) with the same errors.
    match (&parsed, &checked) {
        (Ok(mesh), Ok(c)) => {
            // Debug text, not ==: reports of NaN coordinates hold NaN.
            assert_eq!(format!("{:?}", check(mesh)), format!("{:?}", c.report));
            assert_eq!(mesh.format, c.format);
            assert_eq!(mesh.header, c.header);
            assert_eq!(mesh.solids, c.solids);
        }
        (Err(a), Err(b)) => assert_eq!(a, b),
        (a, b) => panic!(
            "parse_stl and check_stl disagree: {:?} vs {:?}",
            a.as_ref().map(|_| ()),
            b.as_ref().map(|_| ())
        ),
    }

    if declared != file.len() as u64 {
        assert!(scanned.is_err(), "a size lie must not pass the scanner");
        return;
    }
    match (&scanned, &parsed) {
        (Ok(summary), Ok(mesh)) => {
            assert_eq!(summary.format, mesh.format, "scanner and parser formats");
            let n = mesh.triangles.len() as u64;
            match summary.format {
                StlFormat::Binary => assert_eq!(summary.triangles, n),
                // Every parsed facet ends with its own `endfacet`; the scanner may count more
                // (the word inside a name), never fewer.
                StlFormat::Ascii => assert!(summary.triangles >= n, "{} < {n}", summary.triangles),
            }
        }
        (Ok(_), Err(e @ ParseError::LineTooLong { .. })) => {
            panic!("the scanner passed a line the parser refuses: {e}")
        }
        (Ok(summary), Err(e)) => {
            // A file the scanner passed may still be malformed, but a binary one by the length
            // rule, within the limits, has nothing left that could be wrong but an empty body.
            if summary.format == StlFormat::Binary {
                assert!(
                    matches!(
                        e,
                        ParseError::NoTriangles | ParseError::TooManyTriangles { .. }
                    ),
                    "binary upload passed the scanner but parse failed: {e}"
                );
            }
        }
        (Err(e @ ScanError::LineTooLong { .. }), Ok(_)) => {
            panic!("the scanner refused a line the parser reads: {e}")
        }
        (Err(e), Ok(mesh)) => {
            // The scanner may stop a readable file only for a limit (it counts `endfacet`
            // words, which may also appear inside names).
            assert!(
                e.is_limit(),
                "scanner refused a file the parser reads ({} triangles): {e}",
                mesh.triangles.len()
            );
        }
        (Err(_), Err(_)) => {}
    }
});

fn scan(
    file: &[u8],
    declared: u64,
    limits: Limits,
    chunks: &[usize],
) -> Result<fabrouter_mesh::ScanSummary, ScanError> {
    let mut scanner = UploadScanner::new(declared, limits)?;
    for chunk in chunked(file, chunks) {
        scanner.feed(chunk)?;
    }
    scanner.finish()
}
