//! Tokenizer for the command part of a line (comments already removed).

/// Values beyond this are treated as absent: no printer moves a kilometre, and keeping every
/// value finite means sums and bounds can never turn into infinities or NaN.
const MAX_ABS_VALUE: f64 = 1e9;

/// Exact powers of ten (all representable in f64), so dividing by them rounds correctly.
const POW10: [f64; 19] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18,
];

/// Parses a G-code number (`-12`, `.5`, `+3.`) at the start of `s`. There is deliberately no
/// exponent: `E` is the extruder axis, so `X1E5` means X=1, E=5. Returns the value (None if no
/// digits or out of range) and the bytes consumed.
pub(crate) fn parse_number(s: &[u8]) -> (Option<f64>, usize) {
    let mut i = 0;
    let neg = match s.first() {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    // This runs for nearly every byte of a file, so the common case (at most 18 digits) is a
    // plain integer accumulation and one correctly rounded division.
    let mut mantissa: u64 = 0;
    let int_start = i;
    while let Some(&b) = s.get(i).filter(|b| b.is_ascii_digit()) {
        mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(b - b'0'));
        i += 1;
    }
    let int_digits = i - int_start;
    let mut frac_digits = 0;
    if s.get(i) == Some(&b'.') {
        i += 1;
        let frac_start = i;
        while let Some(&b) = s.get(i).filter(|b| b.is_ascii_digit()) {
            mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(b - b'0'));
            i += 1;
        }
        frac_digits = i - frac_start;
    }
    if int_digits + frac_digits == 0 {
        return (None, i);
    }
    let v = if int_digits + frac_digits <= 18 {
        mantissa as f64 / POW10[frac_digits]
    } else {
        // Long numbers are rare; the slice holds only digits and a dot, which std parses.
        match std::str::from_utf8(&s[int_start..i])
            .ok()
            .and_then(|t| t.parse::<f64>().ok())
        {
            Some(v) => v,
            None => return (None, i),
        }
    };
    if !v.is_finite() || v.abs() > MAX_ABS_VALUE {
        return (None, i);
    }
    (Some(if neg { -v } else { v }), i)
}

/// An unsigned integer command code ("1", "01", "109") at the start of `s`; None if it has a
/// fraction (sub-codes such as G92.1 are different commands) or is absurdly long.
fn parse_code(s: &[u8]) -> (Option<u32>, usize) {
    let mut i = 0;
    let mut code: u32 = 0;
    while let Some(&b) = s.get(i).filter(|b| b.is_ascii_digit()) {
        code = code.saturating_mul(10).saturating_add(u32::from(b - b'0'));
        i += 1;
    }
    if i == 0 {
        return (None, 0);
    }
    if s.get(i) == Some(&b'.') {
        let (_, len) = parse_number(&s[i..]);
        return (None, i + len);
    }
    (Some(code), i)
}

/// The command a line starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Command {
    G(u32),
    M(u32),
    /// Anything else: tool changes, Klipper macros, sub-coded commands (G92.1), garbage.
    Other,
}

/// Parameter words of one command, indexed by letter.
pub(crate) struct Params {
    vals: [f64; 26],
    /// Letters present, with or without a value (`G28 X` homes X).
    seen: u32,
    /// Letters present with a usable value.
    valued: u32,
}

impl Params {
    pub(crate) fn new() -> Self {
        Params {
            vals: [0.0; 26],
            seen: 0,
            valued: 0,
        }
    }

    pub(crate) fn seen(&self, letter: u8) -> bool {
        self.seen & bit(letter) != 0
    }

    pub(crate) fn get(&self, letter: u8) -> Option<f64> {
        let b = bit(letter);
        (self.valued & b != 0).then(|| self.vals[(letter - b'A') as usize])
    }

    pub(crate) fn any_seen(&self, letters: &[u8]) -> bool {
        letters.iter().any(|&l| self.seen(l))
    }
}

fn bit(letter: u8) -> u32 {
    1 << (letter - b'A')
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | 0x0b | 0x0c)
}

/// Skips blanks and `( ... )` comments from `i`; returns the next index.
fn skip_blank(s: &[u8], mut i: usize) -> usize {
    while let Some(&b) = s.get(i) {
        if is_space(b) {
            i += 1;
        } else if b == b'(' {
            i = match s[i..].iter().position(|&c| c == b')') {
                Some(p) => i + p + 1,
                None => s.len(),
            };
        } else {
            break;
        }
    }
    i
}

/// Reads the command word of a line's command part, skipping an `N` line number. Returns None if
/// the line holds no command at all, else the command and where its parameters start.
pub(crate) fn parse_command(s: &[u8]) -> Option<(Command, usize)> {
    let mut i = skip_blank(s, 0);
    loop {
        let &b = s.get(i)?;
        if b == b'*' {
            // A bare checksum with no command.
            return None;
        }
        let letter = b.to_ascii_uppercase();
        if !letter.is_ascii_uppercase() {
            return Some((Command::Other, i));
        }
        let mut j = i + 1;
        while s.get(j).is_some_and(|&c| c == b' ' || c == b'\t') {
            j += 1;
        }
        if letter == b'N' {
            let (num, len) = parse_number(&s[j..]);
            if num.is_some() {
                i = skip_blank(s, j + len);
                continue;
            }
            return Some((Command::Other, i));
        }
        let (code, len) = parse_code(&s[j..]);
        // A letter directly followed by another letter is a word like PRINT_START, not G-code.
        if len == 0 {
            return Some((Command::Other, i));
        }
        j += len;
        let cmd = match (letter, code) {
            (b'G', Some(c)) => Command::G(c),
            (b'M', Some(c)) => Command::M(c),
            _ => Command::Other,
        };
        return Some((cmd, j));
    }
}

/// Reads parameter words (`X10 Y-2.5 E.3 F1800`) into `p`. Stops at a `*` checksum; skips bytes
/// that are not words so garbage cannot stall or confuse the scan.
pub(crate) fn parse_params(s: &[u8], mut i: usize, p: &mut Params) {
    p.seen = 0;
    p.valued = 0;
    loop {
        i = skip_blank(s, i);
        let Some(&b) = s.get(i) else { return };
        if b == b'*' {
            return;
        }
        let letter = b.to_ascii_uppercase();
        i += 1;
        if !letter.is_ascii_uppercase() {
            continue;
        }
        while s.get(i).is_some_and(|&c| c == b' ' || c == b'\t') {
            i += 1;
        }
        let (num, len) = parse_number(&s[i..]);
        i += len;
        let b = bit(letter);
        p.seen |= b;
        if let Some(v) = num {
            p.valued |= b;
            p.vals[(letter - b'A') as usize] = v;
        } else {
            p.valued &= !b;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(parse_number(b"12"), (Some(12.0), 2));
        assert_eq!(parse_number(b"-1.5X"), (Some(-1.5), 4));
        assert_eq!(parse_number(b".25"), (Some(0.25), 3));
        assert_eq!(parse_number(b"+3."), (Some(3.0), 3));
        assert_eq!(parse_number(b"109.086"), (Some(109.086), 7));
        assert_eq!(
            parse_number(b"0.000000000000000000000000001").0,
            Some(1e-27)
        );
        // Past 18 digits the slow path must still round correctly.
        assert_eq!(
            parse_number(b"-12345678.901234567891").0,
            "-12345678.901234567891".parse().ok()
        );
        assert_eq!(parse_number(b"-"), (None, 1));
        assert_eq!(parse_number(b"abc"), (None, 0));
        // Out-of-range values are dropped so state stays finite.
        assert_eq!(parse_number(b"99999999999999999999999999").0, None);
        // E is an axis, not an exponent.
        assert_eq!(parse_number(b"1E5"), (Some(1.0), 1));
    }

    #[test]
    fn commands_and_params() {
        let s = b"N12 G1X10 y-2 E.5 F1800*71";
        let (cmd, at) = parse_command(s).unwrap();
        assert_eq!(cmd, Command::G(1));
        let mut p = Params::new();
        parse_params(s, at, &mut p);
        assert_eq!(p.get(b'X'), Some(10.0));
        assert_eq!(p.get(b'Y'), Some(-2.0));
        assert_eq!(p.get(b'E'), Some(0.5));
        assert_eq!(p.get(b'F'), Some(1800.0));
        assert!(!p.seen(b'Z'));

        let s = b"G28 X (home x only) Y";
        let (cmd, at) = parse_command(s).unwrap();
        assert_eq!(cmd, Command::G(28));
        parse_params(s, at, &mut p);
        assert!(p.seen(b'X') && p.seen(b'Y') && !p.seen(b'Z'));
        assert_eq!(p.get(b'X'), None);

        assert_eq!(parse_command(b"G92.1").unwrap().0, Command::Other);
        assert_eq!(parse_command(b"G01").unwrap().0, Command::G(1));
        assert_eq!(
            parse_command(b"PRINT_START BED=60").unwrap().0,
            Command::Other
        );
        assert_eq!(parse_command(b"T1").unwrap().0, Command::Other);
        assert_eq!(parse_command(b"  (only a comment) "), None);
        assert_eq!(parse_command(b""), None);
    }
}
