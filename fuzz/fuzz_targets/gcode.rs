//! Pre-sliced G-code upload path: `Scanner::feed` in fuzz-chosen chunks, `finish`, then
//! `check` and `warnings` against a fuzz-chosen printer.
//!
//! Invariants: no panic; the chunked result is exactly the one-chunk result (`scan`); after an
//! error every later call returns that same error (the scanner's documented contract).
//!
//! Input layout: `[n] [n × u16 chunk sizes] [flags] [file ...]` (see `split_input`).

#![no_main]

use arbitrary::Unstructured;
use fabrouter_fuzz::{chunked, split_input};
use fabrouter_gcode::{GcodeError, Limits, PrinterLimits, Scanner, Summary, check, scan, warnings};
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
            max_bytes: 16 + u64::from(flags >> 1) * 32,
            max_line_bytes: usize::from(flags >> 4) * 4,
        }
    };

    let chunked_result = scan_chunked(file, limits, &chunks);
    let whole = scan(file, limits);
    // Debug text, not ==: a summary may hold NaN.
    assert_eq!(
        format!("{chunked_result:?}"),
        format!("{whole:?}"),
        "chunking changed the result"
    );

    if let Ok(summary) = &whole {
        for printer in printers(flags) {
            for m in check(summary, &printer) {
                assert!(!m.message.is_empty());
            }
        }
        for m in warnings(summary) {
            assert!(!m.message.is_empty());
        }
    }
});

fn scan_chunked(file: &[u8], limits: Limits, chunks: &[usize]) -> Result<Summary, GcodeError> {
    let mut scanner = Scanner::new(file.len() as u64, limits)?;
    let mut first_error = None;
    for chunk in chunked(file, chunks) {
        match (scanner.feed(chunk), &first_error) {
            (Err(e), None) => first_error = Some(e),
            (r, Some(e)) => assert_eq!(r.as_ref().err(), Some(e), "error not sticky"),
            (Ok(()), None) => {}
        }
    }
    let finished = scanner.finish();
    if let Some(e) = first_error {
        assert_eq!(finished.as_ref().err(), Some(&e), "finish forgot the error");
    }
    finished
}

/// Printers to check against: typical ones and ones with unknown or absurd limits.
fn printers(flags: u8) -> Vec<PrinterLimits> {
    let mut v = vec![
        PrinterLimits {
            build_volume_mm: [250.0, 210.0, 210.0],
            nozzle_diameters_mm: vec![0.4],
            flavor: "marlin2".into(),
            max_hotend_c: 300.0,
            max_bed_c: 120.0,
        },
        PrinterLimits {
            build_volume_mm: [0.0, -1.0, 0.0],
            nozzle_diameters_mm: vec![],
            flavor: String::new(),
            max_hotend_c: 0.0,
            max_bed_c: -5.0,
        },
    ];
    if flags & 0x80 != 0 {
        v.push(PrinterLimits {
            build_volume_mm: [f64::NAN, f64::INFINITY, 1e-300],
            nozzle_diameters_mm: vec![f64::NAN, 0.0, -0.4, f64::INFINITY],
            flavor: "klipper".into(),
            max_hotend_c: f64::NAN,
            max_bed_c: f64::INFINITY,
        });
    }
    v
}
