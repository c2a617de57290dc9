//! The streaming scanner: splits chunks into lines, enforces limits, and tracks machine state.

use std::f64::consts::{FRAC_PI_2, TAU};

use crate::meta::Meta;
use crate::words::{Command, Params, parse_command, parse_params};
use crate::{GcodeError, Limits, Summary};

/// A rise in extrusion height above this starts a new layer; smaller differences are rounding.
const LAYER_EPS_MM: f64 = 1e-4;
/// Distinct layer steps remembered for the most-common-step fallback. Real files use a handful
/// (first layer, regular, maybe variable heights); a cap keeps memory constant on hostile input.
const MAX_STEP_KINDS: usize = 32;
/// Feed rates below this (mm/min) are treated as absent rather than dividing by almost zero.
const MIN_FEED_MM_MIN: f64 = 1e-3;
const BGCODE_MAGIC: &[u8; 4] = b"GCDE";
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Streaming G-code analyzer. Feed it the file in chunks of any size, then call
/// [`Scanner::finish`]. After any error every later call returns that same error.
pub struct Scanner {
    limits: Limits,
    declared: u64,
    bytes: u64,
    /// First bytes of the stream, to recognise binary G-code by its magic.
    prefix: [u8; 4],
    prefix_len: usize,
    /// The current incomplete line; never longer than the line limit.
    buf: Vec<u8>,
    lines: u64,
    commands: u64,
    failed: Option<GcodeError>,
    params: Params,
    meta: Meta,
    machine: Machine,
}

impl Scanner {
    /// Starts a scan of a file announced as `declared_size` bytes. Refuses at once when that is
    /// over the limit, so an oversized upload can be rejected before its body is read.
    pub fn new(declared_size: u64, limits: Limits) -> Result<Scanner, GcodeError> {
        if declared_size > limits.max_bytes {
            return Err(GcodeError::TooLarge {
                size: declared_size,
                max: limits.max_bytes,
            });
        }
        Ok(Scanner {
            limits,
            declared: declared_size,
            bytes: 0,
            prefix: [0; 4],
            prefix_len: 0,
            buf: Vec::new(),
            lines: 0,
            commands: 0,
            failed: None,
            params: Params::new(),
            meta: Meta::default(),
            machine: Machine::new(),
        })
    }

    /// Feeds the next chunk. Chunk boundaries may fall anywhere, even inside a line or a number.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), GcodeError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let result = self.feed_inner(chunk);
        if let Err(e) = &result {
            self.failed = Some(e.clone());
        }
        result
    }

    /// Ends the scan: checks the size against the declared one, reads a last line without a line
    /// ending, and refuses files that never move the machine.
    pub fn finish(mut self) -> Result<Summary, GcodeError> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        if self.bytes != self.declared {
            return Err(GcodeError::SizeMismatch {
                declared: self.declared,
                actual: self.bytes,
            });
        }
        if self.bytes == 0 {
            return Err(GcodeError::Empty);
        }
        if !self.buf.is_empty() {
            let buf = std::mem::take(&mut self.buf);
            self.line(&buf)?;
        }
        if self.machine.moves == 0 {
            return Err(GcodeError::NoMoves);
        }
        Ok(self.summary())
    }

    fn feed_inner(&mut self, chunk: &[u8]) -> Result<(), GcodeError> {
        let total = self.bytes.saturating_add(chunk.len() as u64);
        if total > self.limits.max_bytes {
            return Err(GcodeError::TooLarge {
                size: total,
                max: self.limits.max_bytes,
            });
        }
        if total > self.declared {
            return Err(GcodeError::SizeMismatch {
                declared: self.declared,
                actual: total,
            });
        }
        self.bytes = total;
        if self.prefix_len < BGCODE_MAGIC.len() {
            let take = chunk.len().min(BGCODE_MAGIC.len() - self.prefix_len);
            self.prefix[self.prefix_len..self.prefix_len + take].copy_from_slice(&chunk[..take]);
            self.prefix_len += take;
            if self.prefix_len == BGCODE_MAGIC.len() && &self.prefix == BGCODE_MAGIC {
                return Err(GcodeError::BinaryGcode);
            }
        }
        let mut rest = chunk;
        while let Some(at) = rest.iter().position(|&b| b == b'\n') {
            let (head, tail) = (&rest[..at], &rest[at + 1..]);
            if self.buf.is_empty() {
                // Common case: the whole line is inside this chunk, so it is never copied.
                self.line(head)?;
            } else {
                self.check_partial(head.len())?;
                self.buf.extend_from_slice(head);
                let buf = std::mem::take(&mut self.buf);
                let result = self.line(&buf);
                self.buf = buf;
                self.buf.clear();
                result?;
            }
            rest = tail;
        }
        if !rest.is_empty() {
            self.check_partial(rest.len())?;
            self.buf.extend_from_slice(rest);
        }
        Ok(())
    }

    /// Refuses to buffer more than one line's worth, before the line is complete.
    fn check_partial(&self, adding: usize) -> Result<(), GcodeError> {
        // Until 4 bytes are in, the file may still turn out to be binary G-code, the error a
        // single chunk gives; at most 3 bytes are held over the limit meanwhile.
        if self.prefix_len < BGCODE_MAGIC.len() {
            return Ok(());
        }
        // One extra byte: a trailing '\r' is part of the line ending, not the line.
        if self.buf.len() + adding > self.limits.max_line_bytes.saturating_add(1) {
            return Err(GcodeError::LineTooLong {
                line: self.lines + 1,
                max: self.limits.max_line_bytes,
            });
        }
        Ok(())
    }

    fn line(&mut self, raw: &[u8]) -> Result<(), GcodeError> {
        self.lines += 1;
        let mut line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if line.len() > self.limits.max_line_bytes {
            return Err(GcodeError::LineTooLong {
                line: self.lines,
                max: self.limits.max_line_bytes,
            });
        }
        if self.lines == 1 {
            // Editors on Windows add a byte-order mark; firmware would choke, but the content is fine.
            line = line.strip_prefix(UTF8_BOM).unwrap_or(line);
        }
        // Branch-free OR over the line so the common (clean) case vectorizes.
        if line.iter().fold(false, |acc, &b| acc | is_binary(b)) {
            let byte = line.iter().copied().find(|&b| is_binary(b)).unwrap_or(0);
            return Err(GcodeError::Binary {
                line: self.lines,
                byte,
            });
        }
        let (cmd, comment) = match line.iter().position(|&b| b == b';') {
            Some(at) => (&line[..at], Some(&line[at + 1..])),
            None => (line, None),
        };
        // Comments may hold anything (a Latin-1 file name, say); commands are sent to firmware.
        if !cmd.is_ascii() && std::str::from_utf8(cmd).is_err() {
            return Err(GcodeError::InvalidUtf8 { line: self.lines });
        }
        match parse_command(cmd) {
            None => {
                // Metadata is only read from comment-only lines, never from a comment that
                // trails a command ("M82 ;absolute extrusion mode").
                if let Some(c) = comment {
                    self.meta.comment(c);
                }
            }
            Some((command, at)) => {
                self.commands += 1;
                self.machine.execute(command, cmd, at, &mut self.params);
            }
        }
        Ok(())
    }

    fn summary(&self) -> Summary {
        let m = &self.machine;
        let (print_min_mm, print_max_mm, print_known) = m.print.output();
        let (move_min_mm, move_max_mm, move_known) = m.travel.output();
        let meta = self.meta.clone();
        Summary {
            bytes: self.bytes,
            lines: self.lines,
            commands: self.commands,
            slicer_time_s: meta.slicer_time_s(),
            generator: meta.generator,
            flavor: meta.flavor,
            nozzle_mm: meta.nozzle_mm,
            filament_type: meta.filament_type,
            bed_shape_mm: meta.bed_shape_mm,
            print_min_mm,
            print_max_mm,
            print_known,
            move_min_mm,
            move_max_mm,
            move_known,
            moves: m.moves,
            extruding_moves: m.extruding_moves,
            layers: m.layers,
            layer_height_mm: meta.layer_height_mm.or_else(|| m.most_common_step()),
            max_hotend_c: m.max_hotend_c,
            max_bed_c: m.max_bed_c,
            extruded_mm: m.extruded_mm,
            slicer_filament_mm: meta.filament_mm,
            slicer_filament_g: meta.filament_g,
            feedrate_time_s: m.time_s,
            relative_extrusion: m.used_m83,
            inch_units: m.used_g20,
        }
    }
}

/// Control bytes never found in text G-code. Tab, vertical tab, form feed and CR are blanks.
fn is_binary(b: u8) -> bool {
    b < 0x20 && !matches!(b, b'\t' | b'\r' | 0x0b | 0x0c)
}

#[derive(Debug, Clone, Copy)]
struct Bounds {
    min: [f64; 3],
    max: [f64; 3],
    known: [bool; 3],
}

impl Bounds {
    fn new() -> Self {
        Bounds {
            min: [0.0; 3],
            max: [0.0; 3],
            known: [false; 3],
        }
    }

    fn add(&mut self, axis: usize, v: f64) {
        if self.known[axis] {
            self.min[axis] = self.min[axis].min(v);
            self.max[axis] = self.max[axis].max(v);
        } else {
            self.min[axis] = v;
            self.max[axis] = v;
            self.known[axis] = true;
        }
    }

    fn add_point(&mut self, p: &[f64; 3], known: &[bool; 3]) {
        for axis in 0..3 {
            if known[axis] {
                self.add(axis, p[axis]);
            }
        }
    }

    fn output(&self) -> ([f64; 3], [f64; 3], [bool; 3]) {
        (self.min, self.max, self.known)
    }
}

/// The firmware state the scan simulates.
struct Machine {
    pos: [f64; 3],
    known: [bool; 3],
    e: f64,
    /// G91: all axes relative (E too, as in Marlin and Klipper).
    relative: bool,
    /// M83: extruder relative regardless of G90.
    e_relative: bool,
    inches: bool,
    /// G17 (XY arcs) is the default; arcs in other planes only contribute their end points.
    plane_xy: bool,
    /// mm/min; 0 until the file sets one.
    feed: f64,
    /// Cumulative E across G92 resets and its highest value: filament only counts as used when it
    /// goes past the furthest point reached so far, so a retract/unretract pair counts once.
    e_net: f64,
    e_high: f64,
    extruded_mm: f64,
    print: Bounds,
    travel: Bounds,
    moves: u64,
    extruding_moves: u64,
    last_extrude_z: Option<f64>,
    layers: u32,
    /// (rise in µm, count) for the most-common-step fallback.
    steps: [(u32, u32); MAX_STEP_KINDS],
    step_kinds: usize,
    max_hotend_c: f64,
    max_bed_c: f64,
    time_s: f64,
    used_m83: bool,
    used_g20: bool,
}

impl Machine {
    fn new() -> Self {
        Machine {
            pos: [0.0; 3],
            known: [false; 3],
            e: 0.0,
            relative: false,
            e_relative: false,
            inches: false,
            plane_xy: true,
            feed: 0.0,
            e_net: 0.0,
            e_high: 0.0,
            extruded_mm: 0.0,
            print: Bounds::new(),
            travel: Bounds::new(),
            moves: 0,
            extruding_moves: 0,
            last_extrude_z: None,
            layers: 0,
            steps: [(0, 0); MAX_STEP_KINDS],
            step_kinds: 0,
            max_hotend_c: 0.0,
            max_bed_c: 0.0,
            time_s: 0.0,
            used_m83: false,
            used_g20: false,
        }
    }

    fn unit(&self) -> f64 {
        if self.inches { 25.4 } else { 1.0 }
    }

    fn execute(&mut self, command: Command, s: &[u8], at: usize, p: &mut Params) {
        // Parameters are only parsed for commands that use them: most lines are G0/G1, and
        // commands such as M117 carry free text that must not be read as words.
        match command {
            Command::G(0 | 1) => {
                parse_params(s, at, p);
                self.motion(p, None);
            }
            Command::G(code @ (2 | 3)) => {
                parse_params(s, at, p);
                self.motion(p, Some(code == 2));
            }
            Command::G(4) => {
                parse_params(s, at, p);
                let dwell = match (p.get(b'S'), p.get(b'P')) {
                    (Some(s), _) => s,
                    (None, Some(ms)) => ms / 1000.0,
                    _ => 0.0,
                };
                if dwell > 0.0 {
                    self.time_s += dwell;
                }
            }
            Command::G(10) => {
                // RepRapFirmware sets tool temperatures with G10 P<tool> S<active> R<standby>;
                // with L it sets coordinate offsets instead.
                parse_params(s, at, p);
                if !p.seen(b'L') {
                    self.max_hotend_c = max_temp(self.max_hotend_c, p);
                }
            }
            Command::G(17) => self.plane_xy = true,
            Command::G(18 | 19) => self.plane_xy = false,
            Command::G(20) => {
                self.inches = true;
                self.used_g20 = true;
            }
            Command::G(21) => self.inches = false,
            Command::G(28) => {
                parse_params(s, at, p);
                self.home(p);
            }
            Command::G(90) => self.relative = false,
            Command::G(91) => self.relative = true,
            Command::G(92) => {
                parse_params(s, at, p);
                self.set_position(p);
            }
            Command::M(82) => self.e_relative = false,
            Command::M(83) => {
                self.e_relative = true;
                self.used_m83 = true;
            }
            Command::M(104 | 109 | 568) => {
                parse_params(s, at, p);
                self.max_hotend_c = max_temp(self.max_hotend_c, p);
            }
            Command::M(140 | 190) => {
                parse_params(s, at, p);
                self.max_bed_c = max_temp(self.max_bed_c, p);
            }
            _ => {}
        }
    }

    /// G0-G3. `clockwise` is Some for arcs.
    fn motion(&mut self, p: &Params, clockwise: Option<bool>) {
        let unit = self.unit();
        if let Some(f) = p.get(b'F') {
            let f = f * unit;
            if f >= MIN_FEED_MM_MIN {
                self.feed = f;
            }
        }
        let start = self.pos;
        let start_known = self.known;
        let mut delta = [0.0; 3];
        let mut has_axis = false;
        let mut xy_moved = false;
        for (axis, letter) in [b'X', b'Y', b'Z'].into_iter().enumerate() {
            let Some(v) = p.get(letter) else { continue };
            has_axis = true;
            let v = v * unit;
            if self.relative {
                delta[axis] = v;
                // A relative move from an unknown position stays unknown.
                if self.known[axis] {
                    self.pos[axis] += v;
                }
            } else {
                if self.known[axis] {
                    delta[axis] = v - self.pos[axis];
                }
                self.pos[axis] = v;
                self.known[axis] = true;
            }
            if axis < 2 && (delta[axis] != 0.0 || !start_known[axis]) {
                xy_moved = true;
            }
        }
        let mut de = 0.0;
        let has_e = if let Some(v) = p.get(b'E') {
            let v = v * unit;
            de = if self.e_relative || self.relative {
                v
            } else {
                v - self.e
            };
            self.e += de;
            true
        } else {
            false
        };
        if !has_axis && !has_e {
            // "G1 F1800": only sets the feed rate.
            return;
        }
        self.moves += 1;

        let arc = match clockwise {
            Some(cw) if self.plane_xy && start_known[0] && start_known[1] => {
                self.arc_geometry(p, [start[0], start[1]], [self.pos[0], self.pos[1]], cw)
            }
            _ => None,
        };

        let xy_len = match &arc {
            Some(a) => a.length,
            // Values are capped at 1e9, so squaring cannot overflow; sqrt is much cheaper than hypot.
            None => (delta[0] * delta[0] + delta[1] * delta[1]).sqrt(),
        };
        let mut length = (xy_len * xy_len + delta[2] * delta[2]).sqrt();
        if length == 0.0 {
            // Retractions and primes take time too.
            length = de.abs();
        }
        if self.feed > 0.0 {
            self.time_s += length / self.feed * 60.0;
        }

        // A full circle ends where it starts but still lays a line.
        let xy_moved = xy_moved || arc.as_ref().is_some_and(|a| a.length > 0.0);
        let extruding = de > 0.0 && xy_moved;
        let end = self.pos;
        let end_known = self.known;
        for bounds in [&mut self.travel, &mut self.print] {
            bounds.add_point(&start, &start_known);
            bounds.add_point(&end, &end_known);
            if let Some(a) = &arc {
                for &[x, y] in &a.extremes[..a.n_extremes] {
                    bounds.add(0, x);
                    bounds.add(1, y);
                }
            }
            if !extruding {
                break;
            }
        }

        self.e_net += de;
        if self.e_net > self.e_high {
            self.extruded_mm += self.e_net - self.e_high;
            self.e_high = self.e_net;
        }

        if extruding {
            self.extruding_moves += 1;
            if self.known[2] {
                self.layer_at(self.pos[2]);
            }
        }
    }

    fn layer_at(&mut self, z: f64) {
        match self.last_extrude_z {
            None => self.layers = 1,
            Some(last) if z > last + LAYER_EPS_MM => {
                self.layers = self.layers.saturating_add(1);
                self.record_step(z - last);
            }
            Some(_) => {}
        }
        self.last_extrude_z = Some(z);
    }

    fn record_step(&mut self, step_mm: f64) {
        let um = (step_mm * 1000.0).round() as u32;
        if let Some(slot) = self.steps[..self.step_kinds]
            .iter_mut()
            .find(|(k, _)| *k == um)
        {
            slot.1 += 1;
        } else if self.step_kinds < MAX_STEP_KINDS {
            self.steps[self.step_kinds] = (um, 1);
            self.step_kinds += 1;
        }
    }

    fn most_common_step(&self) -> Option<f64> {
        // Ties go to the first seen, so the result does not depend on anything but the file.
        let mut best: Option<(u32, u32)> = None;
        for &(um, count) in &self.steps[..self.step_kinds] {
            if best.is_none_or(|(_, c)| count > c) {
                best = Some((um, count));
            }
        }
        best.map(|(um, _)| f64::from(um) / 1000.0)
    }

    /// Arc length and the axis-aligned extreme points it passes through, or None if the arc is
    /// not well defined (then it is treated as a straight move to its end point).
    fn arc_geometry(&self, p: &Params, start: [f64; 2], end: [f64; 2], cw: bool) -> Option<Arc> {
        let unit = self.unit();
        let (i, j) = (p.get(b'I'), p.get(b'J'));
        let (centre, full_circle_allowed) = if i.is_some() || j.is_some() {
            let c = [
                start[0] + i.unwrap_or(0.0) * unit,
                start[1] + j.unwrap_or(0.0) * unit,
            ];
            (c, true)
        } else {
            (r_form_centre(p.get(b'R')? * unit, start, end, cw)?, false)
        };
        let r = (start[0] - centre[0]).hypot(start[1] - centre[1]);
        if r < 1e-9 {
            return None;
        }
        let a0 = (start[1] - centre[1]).atan2(start[0] - centre[0]);
        let a1 = (end[1] - centre[1]).atan2(end[0] - centre[0]);
        let mut sweep = if cw { a0 - a1 } else { a1 - a0 }.rem_euclid(TAU);
        // Firmware treats an I/J arc that ends where it starts as a full circle.
        if sweep < 1e-9 && full_circle_allowed {
            sweep = TAU;
        }
        let mut arc = Arc {
            length: r * sweep,
            extremes: [[0.0; 2]; 4],
            n_extremes: 0,
        };
        let points = [
            [centre[0] + r, centre[1]],
            [centre[0], centre[1] + r],
            [centre[0] - r, centre[1]],
            [centre[0], centre[1] - r],
        ];
        for (k, point) in points.into_iter().enumerate() {
            let theta = k as f64 * FRAC_PI_2;
            let along = if cw { a0 - theta } else { theta - a0 }.rem_euclid(TAU);
            if along <= sweep {
                arc.extremes[arc.n_extremes] = point;
                arc.n_extremes += 1;
            }
        }
        Some(arc)
    }

    fn home(&mut self, p: &Params) {
        // G28 with no axis letters homes all; letters may carry a meaningless value ("G28 X0").
        let all = !p.any_seen(b"XYZ");
        for (axis, letter) in [b'X', b'Y', b'Z'].into_iter().enumerate() {
            if all || p.seen(letter) {
                self.pos[axis] = 0.0;
                self.known[axis] = true;
            }
        }
        self.moves += 1;
        self.travel.add_point(&self.pos, &self.known);
    }

    /// G92 changes the logical position without moving. Without arguments it does nothing, as
    /// in Marlin.
    fn set_position(&mut self, p: &Params) {
        let unit = self.unit();
        for (axis, letter) in [b'X', b'Y', b'Z'].into_iter().enumerate() {
            if let Some(v) = p.get(letter) {
                self.pos[axis] = v * unit;
                self.known[axis] = true;
            }
        }
        if let Some(v) = p.get(b'E') {
            self.e = v * unit;
        }
    }
}

struct Arc {
    length: f64,
    extremes: [[f64; 2]; 4],
    n_extremes: usize,
}

/// Centre of an R-form arc, as Marlin computes it: positive R takes the short way round,
/// negative R the long way.
fn r_form_centre(r: f64, start: [f64; 2], end: [f64; 2], cw: bool) -> Option<[f64; 2]> {
    let (dx, dy) = (end[0] - start[0], end[1] - start[1]);
    let d = dx.hypot(dy);
    if d < 1e-9 || r == 0.0 {
        return None;
    }
    let e = if cw ^ (r < 0.0) { -1.0 } else { 1.0 };
    // A radius shorter than half the chord is an error in firmware; take the nearest valid arc.
    let h = (r * r - d * d / 4.0).max(0.0).sqrt();
    let (mx, my) = ((start[0] + end[0]) / 2.0, (start[1] + end[1]) / 2.0);
    let (sx, sy) = (-dy / d, dx / d);
    Some([mx + e * h * sx, my + e * h * sy])
}

fn max_temp(current: f64, p: &Params) -> f64 {
    let mut t = current;
    for letter in [b'S', b'R'] {
        if let Some(v) = p.get(letter) {
            t = t.max(v);
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r_form_matches_i_j_form() {
        // Quarter circle from (10,0) to (0,10) around the origin, counter-clockwise: R = 10.
        let c = r_form_centre(10.0, [10.0, 0.0], [0.0, 10.0], false).unwrap();
        assert!(c[0].abs() < 1e-9 && c[1].abs() < 1e-9, "{c:?}");
        // Negative R: the long way round, centre mirrored across the chord.
        let c = r_form_centre(-10.0, [10.0, 0.0], [0.0, 10.0], false).unwrap();
        assert!(
            (c[0] - 10.0).abs() < 1e-9 && (c[1] - 10.0).abs() < 1e-9,
            "{c:?}"
        );
        assert!(r_form_centre(5.0, [1.0, 1.0], [1.0, 1.0], true).is_none());
    }

    #[test]
    fn steps_histogram_is_bounded() {
        let mut m = Machine::new();
        for i in 0..1000 {
            m.record_step(f64::from(i) * 0.001 + 0.001);
        }
        assert_eq!(m.step_kinds, MAX_STEP_KINDS);
        m.record_step(0.2);
        m.record_step(0.2);
        m.record_step(0.032);
        // 0.2 no longer fits; 0.032 was already known and now leads.
        assert_eq!(m.most_common_step(), Some(0.032));
    }
}
