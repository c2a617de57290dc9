//! Hand-written G-code whose right answers follow from the G-code semantics.

use fabrouter_gcode::{GcodeError, Limits, Scanner, Summary, scan, warnings};

fn run(g: &str) -> Summary {
    scan(g.as_bytes(), Limits::default()).unwrap_or_else(|e| panic!("{e}\n{g}"))
}

fn err(g: &[u8], limits: Limits) -> GcodeError {
    scan(g, limits).expect_err("must be refused")
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

fn close3(a: [f64; 3], b: [f64; 3]) -> bool {
    a.iter().zip(&b).all(|(x, y)| close(*x, *y))
}

/// Feeds in pieces of the given sizes, cycling.
fn scan_pieces(bytes: &[u8], sizes: &[usize]) -> Result<Summary, GcodeError> {
    let mut s = Scanner::new(bytes.len() as u64, Limits::default())?;
    let mut rest = bytes;
    for &n in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (head, tail) = rest.split_at(n.clamp(1, rest.len()));
        s.feed(head)?;
        rest = tail;
    }
    s.finish()
}

const START: &str = "G28\nG90\nG1 Z0.2 F600\nG1 X10 Y10 F3000\n";

#[test]
fn absolute_and_relative_extrusion_agree() {
    let abs = run(&format!(
        "{START}M82\nG92 E0\nG1 X20 Y10 E1\nG1 X20 Y20 E2\n"
    ));
    let rel = run(&format!("{START}M83\nG1 X20 Y10 E1\nG1 X20 Y20 E1\n"));
    for s in [&abs, &rel] {
        assert!(close(s.extruded_mm, 2.0));
        assert_eq!(s.extruding_moves, 2);
        assert_eq!(s.print_min_mm, [10.0, 10.0, 0.2]);
        assert_eq!(s.print_max_mm, [20.0, 20.0, 0.2]);
        assert_eq!(s.layers, 1);
    }
    assert!(!abs.relative_extrusion);
    assert!(rel.relative_extrusion);
    // Travel from the homed origin is in the move box, not the print box.
    assert_eq!(abs.move_min_mm, [0.0, 0.0, 0.0]);
}

#[test]
fn g92_e_resets_do_not_count_as_extrusion_or_retraction() {
    let s = run(&format!(
        "{START}G92 E0\nG1 X20 E1\nG1 X30 E2\nG92 E0\nG1 X40 E1\nG1 X50 E2\nG92 E100\nG1 X60 E101\n"
    ));
    assert!(close(s.extruded_mm, 5.0), "{}", s.extruded_mm);
    assert_eq!(s.extruding_moves, 5);
}

#[test]
fn retractions_undone_later_count_once() {
    // Extrude 5, retract 2, travel, prime 2 back (no new filament), extrude 1 more.
    let s = run(&format!(
        "{START}G1 X20 E5\nG1 E3\nG1 X30 Y30\nG1 E5\nG1 X40 E6\nG1 E4\n"
    ));
    assert!(close(s.extruded_mm, 6.0), "{}", s.extruded_mm);
    // A pure-E prime or retraction lays no line, so it is not an extruding move.
    assert_eq!(s.extruding_moves, 2);
    assert_eq!(s.print_max_mm, [40.0, 30.0, 0.2]);
}

#[test]
fn g91_relative_moves_and_unknown_axes() {
    let s = run("G28\nG91\nG1 X10 Y5\nG1 X10\nG1 Z-1\nG90\n");
    assert_eq!(s.move_max_mm, [20.0, 5.0, 0.0]);
    assert_eq!(s.move_min_mm, [0.0, 0.0, -1.0]);

    // Without homing, relative moves leave the position unknown; an absolute word sets it.
    let s = run("G91\nG1 X10 Y10\nG90\nG1 X50\n");
    assert_eq!(s.move_known, [true, false, false]);
    assert_eq!(s.move_min_mm[0], 50.0);
    assert_eq!(s.move_max_mm[0], 50.0);
    // Distance is known even where position is not: 10√2 + nothing for the X50 (start unknown).
    let s = run("G91\nG1 X30 Y40 F600\n");
    assert!(close(s.feedrate_time_s, 5.0), "{}", s.feedrate_time_s);
}

#[test]
fn g91_makes_extrusion_relative_too() {
    let s = run(&format!(
        "{START}M82\nG92 E10\nG91\nG1 X5 E1\nG1 X5 E1\nG90\n"
    ));
    assert!(close(s.extruded_mm, 2.0));
    assert_eq!(s.print_max_mm[0], 20.0);
}

#[test]
fn g20_inches_are_converted() {
    let s = run("G28\nG20\nG1 Z0.01 F10\nG1 X1 Y2 E0.1\nG21\nG1 X10 E3\n");
    assert!(s.inch_units);
    assert!(
        close3(s.print_max_mm, [25.4, 50.8, 0.254]),
        "{:?}",
        s.print_max_mm
    );
    // The first extruding move starts at the homed origin.
    assert!(
        close3(s.print_min_mm, [0.0, 0.0, 0.254]),
        "{:?}",
        s.print_min_mm
    );
    assert!(
        close(s.extruded_mm, 3.0),
        "0.1 in is 2.54 mm, then up to 3 mm"
    );
    // F10 in/min = 254 mm/min; first move: hypot(25.4, 50.8) mm.
    let first = 25.4f64.hypot(50.8) / 254.0 * 60.0;
    assert!(s.feedrate_time_s > first);
    assert!(warnings(&s).iter().any(|w| w.code == "inch_units"));
}

#[test]
fn g28_homes_only_the_named_axes() {
    let s = run("G28 X Y\nG1 X5\n");
    assert_eq!(s.move_known, [true, true, false]);
    let s = run("G28 X0\nG1 Y5\n");
    assert_eq!(s.move_known, [true, true, false]);
    assert_eq!(s.move_max_mm, [0.0, 5.0, 0.0]);
    let s = run("G28 W\n");
    assert_eq!(s.move_known, [true; 3], "no axis letter: all axes");
    // A moved axis, then homing: the box holds both.
    let s = run("G28\nG1 X100 Y100 Z10\nG28 Z\nG1 X50\n");
    assert_eq!(s.move_max_mm, [100.0, 100.0, 10.0]);
    assert_eq!(s.move_min_mm, [0.0, 0.0, 0.0]);
}

#[test]
fn positions_start_unknown() {
    let s = run("G1 X10 Y10 E1\nG1 X20 Y10 E2\n");
    assert_eq!(s.print_known, [true, true, false]);
    assert_eq!(s.layers, 0, "no Z, no layer");
    assert!(warnings(&s).iter().any(|w| w.code == "bounds_unknown"));
    // G92 sets the logical position without homing.
    let s = run("G92 X0 Y0 Z0.3\nG1 X20 Y10 E2\n");
    assert_eq!(s.print_known, [true; 3]);
    assert_eq!(s.print_min_mm, [0.0, 0.0, 0.3]);
}

#[test]
fn arcs_include_their_extreme_points() {
    let base = "G28\nG1 Z0.2\nG1 X10 Y0 F600\n";
    // Counter-clockwise half circle around the origin from (10,0) to (-10,0) passes (0,10).
    let s = run(&format!("{base}G3 X-10 Y0 I-10 J0 E5\n"));
    assert!(
        close3(s.print_max_mm, [10.0, 10.0, 0.2]),
        "{:?}",
        s.print_max_mm
    );
    assert!(
        close3(s.print_min_mm, [-10.0, 0.0, 0.2]),
        "{:?}",
        s.print_min_mm
    );
    // Clockwise the other way round: passes (0,-10).
    let s = run(&format!("{base}G2 X-10 Y0 I-10 J0 E5\n"));
    assert!(close(s.print_min_mm[1], -10.0) && close(s.print_max_mm[1], 0.0));
    // Length: half of a 10 mm radius circle at 10 mm/s, after 1 s travel from the origin.
    let half = std::f64::consts::PI * 10.0 / 10.0;
    assert!(
        close(s.feedrate_time_s, 1.0 + half),
        "{}",
        s.feedrate_time_s
    );

    // Start = end with I/J is a full circle.
    let s = run(&format!("{base}G2 X10 Y0 I-10 J0 E5\n"));
    assert!(
        close3(s.print_min_mm, [-10.0, -10.0, 0.2]) && close3(s.print_max_mm, [10.0, 10.0, 0.2]),
        "{:?} {:?}",
        s.print_min_mm,
        s.print_max_mm
    );

    // R form, positive R: the short quarter arc from (10,0) to (0,10) around the origin.
    let s = run(&format!("{base}G3 X0 Y10 R10 E5\n"));
    assert!(close3(s.print_max_mm, [10.0, 10.0, 0.2]));
    assert!(close(s.print_min_mm[0], 0.0) && close(s.print_min_mm[1], 0.0));
    let quarter = std::f64::consts::FRAC_PI_2 * 10.0 / 10.0;
    assert!(
        close(s.feedrate_time_s, 1.0 + quarter),
        "{}",
        s.feedrate_time_s
    );
    // Negative R: the long way round, centre (10,10), reaching down to Y 0 and left to X 0 but
    // also out to X 20 and Y 20.
    let s = run(&format!("{base}G3 X0 Y10 R-10 E5\n"));
    assert!(
        close3(s.print_max_mm, [20.0, 20.0, 0.2]),
        "{:?}",
        s.print_max_mm
    );

    // An arc without centre is taken as a straight move.
    let s = run(&format!("{base}G2 X20 Y0 E5\n"));
    assert_eq!(s.print_max_mm, [20.0, 0.0, 0.2]);
}

#[test]
fn layers_and_most_common_step() {
    let mut g = String::from("G28\nG90\nM83\n");
    for z in [0.3, 0.6, 0.9, 1.2, 1.4] {
        // Z-hop travel between layers must not count.
        g += &format!(
            "G1 Z{:.2}\nG1 X0 Y0\nG1 X10 E1\nG1 Z{:.2}\nG1 X0\n",
            z,
            z + 0.4
        );
    }
    let s = run(&g);
    assert_eq!(s.layers, 5);
    assert_eq!(s.layer_height_mm, Some(0.3));
    assert!(close(s.print_max_mm[2], 1.4));
    assert!(close(s.move_max_mm[2], 1.8));

    // A declared layer height wins.
    let s = run(&format!("; layer_height = 0.25\n{g}"));
    assert_eq!(s.layer_height_mm, Some(0.25));
}

#[test]
fn temperatures_take_the_maximum_of_s_and_r() {
    let s = run("M104 S200\nM109 R215\nM104 S0\nM140 S60\nM190 S65\nM190 R50\nG28\n");
    assert_eq!(s.max_hotend_c, 215.0);
    assert_eq!(s.max_bed_c, 65.0);
    let s = run("G10 P0 S240 R150\nG10 L2 P1 X10 S999\nG28\n");
    assert_eq!(
        s.max_hotend_c, 240.0,
        "RepRapFirmware tool temperature; L form is an offset"
    );
}

#[test]
fn feedrate_time_and_dwell() {
    // 10 mm at 600 mm/min = 1 s; G4 P500 = 0.5 s; G4 S2 = 2 s; retract 2 mm at 1200 = 0.1 s.
    let s = run("G28\nG1 X10 F600\nG4 P500\nG4 S2\nG1 E-2 F1200\n");
    assert!(close(s.feedrate_time_s, 3.6), "{}", s.feedrate_time_s);
    // Moves before any feed rate cost nothing rather than guessing.
    let s = run("G28\nG1 X10\n");
    assert_eq!(s.feedrate_time_s, 0.0);
}

#[test]
fn counts_and_comments() {
    let g = "; header\n\nN1 G28*18\n   ; indented comment\nG1 X1 ; trailing\n(paren comment)\nM117 Hello; world\r\nG1 X2";
    let s = run(g);
    assert_eq!(s.lines, 8);
    assert_eq!(s.commands, 4, "N1 G28, G1 X1, M117, G1 X2");
    assert_eq!(s.bytes, g.len() as u64);
    assert_eq!(s.move_max_mm[0], 2.0, "last line without a newline is read");
}

#[test]
fn metadata_only_from_comment_only_lines() {
    let s = run("M82 ; gcode_flavor = klipper\n;FLAVOR:RepRap\nG28\n");
    assert_eq!(s.flavor.as_deref(), Some("RepRap"));
    let s = run("G28 ;Generated with Cura_SteamEngine 5.0.0\n");
    assert_eq!(s.generator, None);
}

#[test]
fn crlf_bom_checksums_and_odd_spacing() {
    let s = run("\u{feff}G28\r\nN10 G1 X 10 Y10.5 F1200*33\r\ng1x20y30\r\nG1X25Y30E1\r\n");
    assert_eq!(s.move_max_mm, [25.0, 30.0, 0.0]);
    assert_eq!(s.lines, 4);
}

#[test]
fn non_utf8_is_tolerated_in_comments_only() {
    let mut g = b"; file name: caf\xe9.stl\nG28\n".to_vec();
    assert!(scan(&g, Limits::default()).is_ok());
    g.extend_from_slice(b"M117 caf\xe9\n");
    assert_eq!(
        err(&g, Limits::default()),
        GcodeError::InvalidUtf8 { line: 3 }
    );
    // Valid UTF-8 in a command is fine.
    assert!(scan("G28\nM117 café\n".as_bytes(), Limits::default()).is_ok());
}

#[test]
fn any_chunking_gives_the_same_summary() {
    let g = "; generated by PrusaSlicer 2.6.1+win64 on 2024\n; gcode_flavor = marlin2\r\n\
             ; nozzle_diameter = 0.6\nM140 S60\nM104 S210\nG28\nG90\nM83\nG1 Z0.3 F720\n\
             G1 X10.123 Y-2.5 F9000\nG1 X50.5 Y-2.5 E2.25 F1500\nG2 X60.5 Y7.5 I0 J10 E1\n\
             G91\nG1 Z0.3\nG90\nG1 X10 Y10 E3.3333\nG1 E-0.8 F2100\nG4 P250\n\
             ; estimated printing time (normal mode) = 1m 5s\nM84";
    let bytes = g.as_bytes();
    let whole = scan(bytes, Limits::default()).unwrap();
    assert_eq!(whole.layers, 2);
    assert_eq!(whole.slicer_time_s, Some(65.0));
    for sizes in [&[1][..], &[2], &[3, 1, 4, 1, 5, 9, 2, 6], &[64], &[1000]] {
        assert_eq!(scan_pieces(bytes, sizes).unwrap(), whole, "{sizes:?}");
    }
    // Every single split point.
    for at in 0..bytes.len() {
        assert_eq!(
            scan_pieces(bytes, &[at, bytes.len()]).unwrap(),
            whole,
            "split at {at}"
        );
    }
}

#[test]
fn line_length_limit_names_the_line() {
    let limits = Limits {
        max_bytes: 1 << 20,
        max_line_bytes: 10,
    };
    // Exactly 10 bytes, with either line ending, is fine.
    assert!(scan(b"G28\nG1 X123456\r\nG1 Y123456\n", limits).is_ok());
    let g = b"G28\nG1 X12\nG1 X1234567\nG1 X1\n";
    let e = err(g, limits);
    assert_eq!(e, GcodeError::LineTooLong { line: 3, max: 10 });
    assert!(e.is_limit());
    assert!(e.to_string().contains("line 3"), "{e}");

    // Streaming: refused before the long line ends, without buffering it.
    let mut s = Scanner::new(1 << 20, limits).unwrap();
    s.feed(b"G28\nG1 X1").unwrap();
    let e = s.feed(&[b'0'; 100]).unwrap_err();
    assert_eq!(e, GcodeError::LineTooLong { line: 2, max: 10 });
    // Later calls keep failing the same way.
    assert_eq!(s.feed(b"\n").unwrap_err(), e);
    assert_eq!(s.finish().unwrap_err(), e);
}

#[test]
fn size_limits_and_declared_size() {
    let limits = Limits {
        max_bytes: 50,
        max_line_bytes: 1024,
    };
    let e = Scanner::new(51, limits).err().unwrap();
    assert_eq!(e, GcodeError::TooLarge { size: 51, max: 50 });
    assert!(e.is_limit());
    assert!(scan(&[b'\n'; 51], limits).unwrap_err().is_limit());

    // More than declared: refused while streaming.
    let mut s = Scanner::new(10, limits).unwrap();
    s.feed(b"G28\nG1 X1\n").unwrap();
    let e = s.feed(b"G1 X2\n").unwrap_err();
    assert_eq!(
        e,
        GcodeError::SizeMismatch {
            declared: 10,
            actual: 16
        }
    );
    assert!(!e.is_limit());

    // Fewer than declared: refused at the end.
    let mut s = Scanner::new(20, limits).unwrap();
    s.feed(b"G28\n").unwrap();
    assert_eq!(
        s.finish().unwrap_err(),
        GcodeError::SizeMismatch {
            declared: 20,
            actual: 4
        }
    );
}

#[test]
fn binary_input_is_refused() {
    // Binary G-code: magic "GCDE" then a little-endian version.
    let mut bgcode = b"GCDE".to_vec();
    bgcode.extend_from_slice(&[1, 0, 0, 0, 1, 0]);
    let e = err(&bgcode, Limits::default());
    assert_eq!(e, GcodeError::BinaryGcode);
    assert_eq!(
        e.to_string(),
        "binary G-code (.bgcode) is not supported; export ASCII G-code"
    );
    assert_eq!(
        scan_pieces(&bgcode, &[1]).unwrap_err(),
        GcodeError::BinaryGcode
    );

    let e = err(b"G28\nG1 X1\nG1\0X2\n", Limits::default());
    assert_eq!(e, GcodeError::Binary { line: 3, byte: 0 });
    assert!(!e.is_limit());
    // Binary bytes are refused in comments too: a text file has none anywhere.
    let e = err(b"; \x01\x02\nG28\n", Limits::default());
    assert_eq!(e, GcodeError::Binary { line: 1, byte: 1 });
}

#[test]
fn empty_and_motionless_input() {
    assert_eq!(err(b"", Limits::default()), GcodeError::Empty);
    let e = err(b"; only comments\n\n  \n", Limits::default());
    assert_eq!(e, GcodeError::NoMoves);
    assert_eq!(e.to_string(), "no moves: this is not G-code for a printer");
    assert_eq!(
        err(b"M104 S200\nG1 F1200\nM84\n", Limits::default()),
        GcodeError::NoMoves
    );
    let s = run("G28\nG1 X10 Y10\n");
    assert!(warnings(&s).iter().any(|w| w.code == "no_extrusion"));
}

/// Small deterministic generator so the test needs no dependency.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn all_finite(s: &Summary) -> bool {
    let mut v = vec![
        s.max_hotend_c,
        s.max_bed_c,
        s.extruded_mm,
        s.feedrate_time_s,
    ];
    v.extend(s.print_min_mm);
    v.extend(s.print_max_mm);
    v.extend(s.move_min_mm);
    v.extend(s.move_max_mm);
    v.extend(s.layer_height_mm);
    v.iter().all(|x| x.is_finite())
}

#[test]
fn random_bytes_never_panic_and_chunking_never_matters() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    // Half fully random bytes, half G-code-ish noise that reaches deep into the parser.
    const ALPHABET: &[u8] = b"GMXYZEFIJRSPNT0123456789.-+ ;\n\r()*=:GGGG1111";
    let limits = Limits {
        max_bytes: 1 << 20,
        max_line_bytes: 300,
    };
    // GCODE_FUZZ_ROUNDS raises the count for a longer local run.
    let rounds: u32 = std::env::var("GCODE_FUZZ_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    for round in 0..rounds {
        let len = rng.below(1500);
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                if round % 2 == 0 {
                    rng.next() as u8
                } else {
                    ALPHABET[rng.below(ALPHABET.len())]
                }
            })
            .collect();
        let whole = scan(&bytes, limits);
        let mut s = Scanner::new(bytes.len() as u64, limits).unwrap();
        let mut rest = &bytes[..];
        let mut chunked = Ok(());
        while !rest.is_empty() && chunked.is_ok() {
            let (head, tail) = rest.split_at(rng.below(rest.len()) + 1);
            chunked = s.feed(head);
            rest = tail;
        }
        let chunked = chunked.and_then(|()| s.finish());
        assert_eq!(whole, chunked, "round {round}: {bytes:?}");
        if let Ok(summary) = &whole {
            assert!(all_finite(summary), "round {round}: {summary:?}");
        }
    }
}
