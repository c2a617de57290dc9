//! Planar region helpers over Clipper2 (the `clipper2-rust` port; Clipper is what slicers use): the
//! offsets and booleans a slicer needs (perimeter insets, solid/sparse splits) plus the measures (area,
//! boundary length, centroid) the estimate is built from.

use clipper2_rust::{
    FillRule, Path64, PathD, Paths64, PathsD, Point64, PointD, difference_d, intersect_d,
    union_subjects_64, union_subjects_d,
};

pub type Pt = [f64; 2];
pub type Contour = Vec<Pt>;
/// One connected region: outer contour (counter-clockwise) then holes (clockwise).
pub type Shape = Vec<Contour>;
pub type Shapes = Vec<Shape>;

/// Clipper works on integers: 3 decimals = 1 um grid, far below a bead width.
const PRECISION_DECIMALS: i32 = 3;
/// Miter joins keep sharp corners like the perimeter offsets of slicers (PrusaSlicer uses a miter
/// limit of 3 times the offset); sharper corners are squared off, as a bead cannot follow them.
const MITER_LIMIT: f64 = 3.0;

fn to_paths(shapes: &Shapes) -> PathsD {
    shapes
        .iter()
        .flatten()
        .map(|c| c.iter().map(|p| PointD { x: p[0], y: p[1] }).collect())
        .collect()
}

fn contours_to_paths(loops: &[Contour]) -> PathsD {
    loops
        .iter()
        .map(|c| c.iter().map(|p| PointD { x: p[0], y: p[1] }).collect())
        .collect()
}

fn path_to_contour(p: &PathD) -> Contour {
    p.iter().map(|q| [q.x, q.y]).collect()
}

/// Groups Clipper's flat output (outers positive, holes negative) into shapes: each hole goes to the
/// smallest outer that contains it.
fn group(paths: PathsD) -> Shapes {
    let mut outers: Vec<(f64, [f64; 4], Shape)> = Vec::new();
    let mut holes: Vec<Contour> = Vec::new();
    for p in &paths {
        let c = path_to_contour(p);
        let a = contour_area(&c);
        if a > 0.0 {
            let bb = bbox(&c);
            outers.push((a, bb, vec![c]));
        } else if a < 0.0 {
            holes.push(c);
        }
    }
    for h in holes {
        let q = h[0];
        let mut best: Option<usize> = None;
        for (i, (a, bb, s)) in outers.iter().enumerate() {
            let inside_bb = q[0] >= bb[0] && q[0] <= bb[2] && q[1] >= bb[1] && q[1] <= bb[3];
            if inside_bb && point_in_contour(q, &s[0]) && best.is_none_or(|b| *a < outers[b].0) {
                best = Some(i);
            }
        }
        if let Some(i) = best {
            outers[i].2.push(h);
        }
    }
    outers.into_iter().map(|(_, _, s)| s).collect()
}

fn bbox(c: &[Pt]) -> [f64; 4] {
    c.iter().fold(
        [
            f64::INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NEG_INFINITY,
        ],
        |b, p| {
            [
                b[0].min(p[0]),
                b[1].min(p[1]),
                b[2].max(p[0]),
                b[3].max(p[1]),
            ]
        },
    )
}

/// Crossing-number test (points on the boundary may go either way; holes never touch their outer).
fn point_in_contour(q: Pt, c: &[Pt]) -> bool {
    let mut inside = false;
    let n = c.len();
    let mut j = n.wrapping_sub(1);
    for i in 0..n {
        let (a, b) = (c[i], c[j]);
        if (a[1] > q[1]) != (b[1] > q[1])
            && q[0] < (b[0] - a[0]) * (q[1] - a[1]) / (b[1] - a[1]) + a[0]
        {
            inside = !inside;
        }
        j = i;
    }
    inside
}

/// Closed loops (any orientation, possibly self-touching) to a clean region; even-odd so that loops
/// from meshes with flipped normals still give the right inside.
pub fn region_from_loops(loops: &[Contour]) -> Shapes {
    if loops.is_empty() {
        return Vec::new();
    }
    group(union_subjects_d(
        &contours_to_paths(loops),
        FillRule::EvenOdd,
        PRECISION_DECIMALS,
    ))
}

/// Offsets a region outwards (`distance` > 0) or inwards (< 0). Parts thinner than twice an inward
/// distance disappear, exactly like a perimeter that no longer fits.
///
/// Clipper's offset (as ported) joins every corner on the inner side of the offset with a spike back
/// to the original vertex; on finely tessellated curves those spikes cross many neighbouring edges
/// and the cleaning union becomes quadratic (10 ms for a 1000-point circle). Here inner corners get
/// their exact miter point whenever the two edges are long enough for it, and the spike only where
/// they are not; the same positive-winding union then removes what the offset swallowed.
pub fn offset(shapes: &Shapes, distance: f64) -> Shapes {
    if shapes.is_empty() || distance == 0.0 {
        return shapes.clone();
    }
    // On Clipper's offset grid (10^decimals per mm, input rounded onto it first), as its own offset.
    let scale = 10f64.powi(PRECISION_DECIMALS);
    let to_mm = |p: &Path64| -> Contour {
        p.iter()
            .map(|q| [q.x as f64 / scale, q.y as f64 / scale])
            .collect()
    };
    let mut raw: Paths64 = Vec::new();
    let mut out_shapes: Shapes = Vec::new();
    let mut pts: Vec<Pt> = Vec::new();
    for shape in shapes {
        // A convex island's inradius is at most 2 A / P: deeper inward offsets leave nothing.
        if distance < 0.0
            && shape.len() == 1
            && is_convex(&shape[0])
            && 2.0 * shape_area(shape) <= -distance * contour_length(&shape[0])
        {
            continue;
        }
        let mut contours: Paths64 = Vec::with_capacity(shape.len());
        let mut spiked = false;
        for c in shape {
            pts.clear();
            pts.extend(
                c.iter()
                    .map(|p| [(p[0] * scale).round(), (p[1] * scale).round()]),
            );
            let mut out = Vec::with_capacity(c.len() + 8);
            spiked |= raw_offset(&pts, distance * scale, &mut out);
            out.dedup();
            while out.len() > 1 && out.first() == out.last() {
                out.pop();
            }
            contours.push(out);
        }
        // Inward offsets never make islands meet, so an island whose raw offset is already a clean
        // region (the common case: no perimeter pinches off) needs no union at all.
        if distance < 0.0 && !spiked && is_clean_shape(&contours) {
            out_shapes.push(contours.iter().map(to_mm).collect());
        } else {
            raw.extend(contours.into_iter().filter(|c| c.len() >= 3));
        }
    }
    if !raw.is_empty() {
        let cleaned = union_subjects_64(&raw, FillRule::Positive);
        out_shapes.extend(group(
            cleaned
                .iter()
                .map(|p| {
                    p.iter()
                        .map(|q| PointD {
                            x: q.x as f64 / scale,
                            y: q.y as f64 / scale,
                        })
                        .collect()
                })
                .collect(),
        ));
    }
    out_shapes
}

/// Whether a closed contour turns the same way at every vertex.
fn is_convex(c: &[Pt]) -> bool {
    let n = c.len();
    let (mut pos, mut neg) = (false, false);
    for i in 0..n {
        let (a, b, d) = (c[i], c[(i + 1) % n], c[(i + 2) % n]);
        let t = (b[0] - a[0]) * (d[1] - b[1]) - (b[1] - a[1]) * (d[0] - b[0]);
        pos |= t > 0.0;
        neg |= t < 0.0;
    }
    !(pos && neg)
}

fn area64(c: &Path64) -> f64 {
    let n = c.len();
    (0..n)
        .map(|i| {
            let (a, b) = (c[i], c[(i + 1) % n]);
            a.x as f64 * b.y as f64 - b.x as f64 * a.y as f64
        })
        .sum::<f64>()
        * 0.5
}

/// True when offset contours (outer first, then holes) already form a valid region: every contour
/// keeps its orientation, no two edges meet, and every hole lies inside the outer and outside the
/// other holes. Coordinates are integers, so the orientation tests are exact in f64.
fn is_clean_shape(contours: &Paths64) -> bool {
    for (i, c) in contours.iter().enumerate() {
        let a = area64(c);
        if c.len() < 3 || (i == 0 && a <= 0.0) || (i > 0 && a >= 0.0) {
            return false;
        }
    }
    // Edges sorted by their left end; only edges whose x ranges overlap are tested.
    struct Edge {
        c: u32,
        i: u32,
        a: [f64; 2],
        b: [f64; 2],
        x0: f64,
        x1: f64,
    }
    let mut edges: Vec<Edge> = Vec::new();
    for (ci, c) in contours.iter().enumerate() {
        let n = c.len();
        for i in 0..n {
            let (p, q) = (c[i], c[(i + 1) % n]);
            let (a, b) = ([p.x as f64, p.y as f64], [q.x as f64, q.y as f64]);
            edges.push(Edge {
                c: ci as u32,
                i: i as u32,
                x0: a[0].min(b[0]),
                x1: a[0].max(b[0]),
                a,
                b,
            });
        }
    }
    edges.sort_unstable_by(|e, f| e.x0.total_cmp(&f.x0));
    let orient = |a: [f64; 2], b: [f64; 2], c: [f64; 2]| {
        ((b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])).signum()
    };
    let on_box = |a: [f64; 2], b: [f64; 2], p: [f64; 2]| {
        p[0] >= a[0].min(b[0])
            && p[0] <= a[0].max(b[0])
            && p[1] >= a[1].min(b[1])
            && p[1] <= a[1].max(b[1])
    };
    for (k, e) in edges.iter().enumerate() {
        for f in &edges[k + 1..] {
            if f.x0 > e.x1 {
                break;
            }
            if e.a[1].max(e.b[1]) < f.a[1].min(f.b[1]) || f.a[1].max(f.b[1]) < e.a[1].min(e.b[1]) {
                continue;
            }
            if e.c == f.c {
                let n = contours[e.c as usize].len() as u32;
                if (e.i + 1) % n == f.i || (f.i + 1) % n == e.i {
                    continue; // neighbours share their common vertex
                }
            }
            let (o1, o2) = (orient(e.a, e.b, f.a), orient(e.a, e.b, f.b));
            let (o3, o4) = (orient(f.a, f.b, e.a), orient(f.a, f.b, e.b));
            if (o1 * o2 < 0.0 && o3 * o4 < 0.0)
                || (o1 == 0.0 && on_box(e.a, e.b, f.a))
                || (o2 == 0.0 && on_box(e.a, e.b, f.b))
                || (o3 == 0.0 && on_box(f.a, f.b, e.a))
                || (o4 == 0.0 && on_box(f.a, f.b, e.b))
            {
                return false;
            }
        }
    }
    // Without crossings, one vertex tells on which side of another contour a whole contour lies.
    let first = |c: &Path64| [c[0].x as f64, c[0].y as f64];
    let as_pts = |c: &Path64| -> Vec<Pt> { c.iter().map(|q| [q.x as f64, q.y as f64]).collect() };
    let outer = as_pts(&contours[0]);
    let holes: Vec<Vec<Pt>> = contours[1..].iter().map(as_pts).collect();
    for (h, hole) in contours[1..].iter().enumerate() {
        let q = first(hole);
        if !point_in_contour(q, &outer) {
            return false;
        }
        for (o, other) in holes.iter().enumerate() {
            if o != h && point_in_contour(q, other) {
                return false;
            }
        }
    }
    true
}

/// Un-cleaned miter offset of one closed contour whose orientation follows the region (outer
/// counter-clockwise, hole clockwise): every edge moved `delta` to its right, joined like Clipper's
/// miter join (square beyond [`MITER_LIMIT`]). Returns whether a spike had to be inserted.
fn raw_offset(c: &[Pt], delta: f64, out: &mut Path64) -> bool {
    // Repeated points have no edge direction.
    let mut pts: Vec<Pt> = Vec::with_capacity(c.len());
    for &p in c {
        if pts.last() != Some(&p) {
            pts.push(p);
        }
    }
    while pts.len() > 1 && pts.first() == pts.last() {
        pts.pop();
    }
    let n = pts.len();
    if n < 3 {
        return false;
    }
    let mut spiked = false;
    let mut dirs: Vec<Pt> = Vec::with_capacity(n);
    let mut lens: Vec<f64> = Vec::with_capacity(n);
    for i in 0..n {
        let (a, b) = (pts[i], pts[(i + 1) % n]);
        let d = [b[0] - a[0], b[1] - a[1]];
        let l = (d[0] * d[0] + d[1] * d[1]).sqrt();
        dirs.push([d[0] / l, d[1] / l]);
        lens.push(l);
    }
    let normal = |u: Pt| [u[1], -u[0]];
    let cross = |a: Pt, b: Pt| a[0] * b[1] - a[1] * b[0];
    let dot = |a: Pt, b: Pt| a[0] * b[0] + a[1] * b[1];
    // A join on the inner side of the turn (the offset edges overlap) shortens both edges by this much
    // when mitred; near-reversals are squared off like convex corners (as Clipper does).
    let inner = |k: usize, j: usize| -> Option<f64> {
        let (s, co) = (cross(dirs[k], dirs[j]), dot(dirs[k], dirs[j]));
        (s * delta < 0.0 && co > -0.999).then(|| delta.abs() * s.abs() / (1.0 + co))
    };
    let used: Vec<f64> = (0..n)
        .map(|j| inner((j + n - 1) % n, j).unwrap_or(0.0))
        .collect();
    let cos_limit = 2.0 / (MITER_LIMIT * MITER_LIMIT) - 1.0;
    let push = |out: &mut Path64, p: Pt| {
        out.push(Point64 {
            x: p[0].round() as i64,
            y: p[1].round() as i64,
        })
    };
    for j in 0..n {
        let k = (j + n - 1) % n;
        let p = pts[j];
        let (uk, uj) = (dirs[k], dirs[j]);
        let (nk, nj) = (normal(uk), normal(uj));
        let co = dot(uk, uj);
        let miter = |q: f64| [p[0] + (nk[0] + nj[0]) * q, p[1] + (nk[1] + nj[1]) * q];
        let on_k = [p[0] + nk[0] * delta, p[1] + nk[1] * delta];
        let on_j = [p[0] + nj[0] * delta, p[1] + nj[1] * delta];
        if let Some(t) = inner(k, j) {
            if t + used[k] <= lens[k] && t + used[(j + 1) % n] <= lens[j] {
                push(out, miter(delta / (1.0 + co)));
            } else {
                // Edges too short for the miter point: a spike the union removes.
                spiked = true;
                push(out, on_k);
                push(out, p);
                push(out, on_j);
            }
        } else if co > cos_limit {
            push(out, miter(delta / (1.0 + co)));
        } else {
            // Square: cut the corner at `|delta|` from the vertex, across the bisector.
            let v = [uk[0] - uj[0], uk[1] - uj[1]];
            let vl = (v[0] * v[0] + v[1] * v[1]).sqrt();
            let v = if vl > 0.0 { [v[0] / vl, v[1] / vl] } else { uk };
            let q = [p[0] + delta.abs() * v[0], p[1] + delta.abs() * v[1]];
            let a = [q[0] + delta * v[1], q[1] - delta * v[0]];
            let b = [q[0] - delta * v[1], q[1] + delta * v[0]];
            // Where the cut meets edge k's offset line (clamped to the cut).
            let e = [p[0] - pts[k][0], p[1] - pts[k][1]];
            let ab = [b[0] - a[0], b[1] - a[1]];
            let det = ab[1] * e[0] - e[1] * ab[0];
            let hit = if det == 0.0 {
                q
            } else {
                let s0 = [pts[k][0] + nk[0] * delta, pts[k][1] + nk[1] * delta];
                let t = (((a[0] - s0[0]) * e[1] - (a[1] - s0[1]) * e[0]) / det).clamp(0.0, 1.0);
                [a[0] + t * ab[0], a[1] + t * ab[1]]
            };
            push(out, hit);
            push(out, [2.0 * q[0] - hit[0], 2.0 * q[1] - hit[1]]);
        }
    }
    spiked
}

pub fn intersection(a: &Shapes, b: &Shapes) -> Shapes {
    if a.is_empty() || b.is_empty() {
        return Vec::new();
    }
    group(intersect_d(
        &to_paths(a),
        &to_paths(b),
        FillRule::NonZero,
        PRECISION_DECIMALS,
    ))
}

pub fn difference(a: &Shapes, b: &Shapes) -> Shapes {
    if a.is_empty() {
        return Vec::new();
    }
    if b.is_empty() {
        return a.clone();
    }
    group(difference_d(
        &to_paths(a),
        &to_paths(b),
        FillRule::NonZero,
        PRECISION_DECIMALS,
    ))
}

/// Signed shoelace area: positive for counter-clockwise contours.
pub fn contour_area(c: &[Pt]) -> f64 {
    let n = c.len();
    if n < 3 {
        return 0.0;
    }
    let mut s = 0.0;
    for i in 0..n {
        let a = c[i];
        let b = c[(i + 1) % n];
        s += a[0] * b[1] - b[0] * a[1];
    }
    0.5 * s
}

/// Closed length of a contour.
pub fn contour_length(c: &[Pt]) -> f64 {
    let n = c.len();
    if n < 2 {
        return 0.0;
    }
    (0..n)
        .map(|i| {
            let a = c[i];
            let b = c[(i + 1) % n];
            ((b[0] - a[0]).powi(2) + (b[1] - a[1]).powi(2)).sqrt()
        })
        .sum()
}

/// Net area of one shape (outer minus holes), independent of orientation conventions.
pub fn shape_area(s: &Shape) -> f64 {
    let mut it = s.iter();
    let Some(outer) = it.next() else {
        return 0.0;
    };
    let holes: f64 = it.map(|h| contour_area(h).abs()).sum();
    (contour_area(outer).abs() - holes).max(0.0)
}

pub fn area(shapes: &Shapes) -> f64 {
    shapes.iter().map(shape_area).sum()
}

/// Total boundary length (outer contours and holes).
pub fn boundary_length(shapes: &Shapes) -> f64 {
    shapes
        .iter()
        .flat_map(|s| s.iter())
        .map(|c| contour_length(c))
        .sum()
}

/// Order-insensitive hash of a shape's quantised (1 um) points, to recognise the same island on
/// another layer.
pub fn shape_signature(s: &Shape) -> u64 {
    contours_signature(s)
}

/// splitmix64 finaliser: a strong 64-bit mix, so sums of mixed values do not cancel.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Hash of a point quantised to 1 um.
pub fn point_hash(p: Pt) -> u64 {
    let qx = (p[0] * 1000.0).round() as i64 as u64;
    let qy = (p[1] * 1000.0).round() as i64 as u64;
    mix(qx.wrapping_add(mix(qy ^ 0x9E37_79B9_7F4A_7C15)))
}

/// Hash of a set of loops that ignores where each loop starts, its direction and the loops' order.
pub fn contours_signature(contours: &[Contour]) -> u64 {
    let mut total = mix(contours.len() as u64);
    for c in contours {
        let h = c
            .iter()
            .fold(mix(c.len() as u64), |h, &p| h.wrapping_add(point_hash(p)));
        total = total.wrapping_add(mix(h));
    }
    total
}

/// Axis-aligned bounds [min x, min y, max x, max y] of a shape (its outer contour).
pub fn shape_bbox(s: &Shape) -> [f64; 4] {
    s.first().map_or([0.0; 4], |c| bbox(c))
}

pub fn bboxes_overlap(a: &[f64; 4], b: &[f64; 4]) -> bool {
    a[0] <= b[2] && b[0] <= a[2] && a[1] <= b[3] && b[1] <= a[3]
}

/// Vertex mean of a contour: cheap and good enough to order travel moves.
pub fn contour_center(c: &[Pt]) -> Pt {
    if c.is_empty() {
        return [0.0, 0.0];
    }
    let n = c.len() as f64;
    let (sx, sy) = c.iter().fold((0.0, 0.0), |(x, y), p| (x + p[0], y + p[1]));
    [sx / n, sy / n]
}

/// Perimeter of the convex hull of all points (Andrew's monotone chain); used for the skirt.
pub fn convex_hull_length(points: &mut [Pt]) -> f64 {
    if points.len() < 2 {
        return 0.0;
    }
    points.sort_by(|a, b| a[0].total_cmp(&b[0]).then(a[1].total_cmp(&b[1])));
    fn cross(o: Pt, a: Pt, b: Pt) -> f64 {
        (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])
    }
    let mut hull: Vec<Pt> = Vec::with_capacity(points.len() + 1);
    for &p in points.iter() {
        while hull.len() >= 2 && cross(hull[hull.len() - 2], hull[hull.len() - 1], p) <= 0.0 {
            hull.pop();
        }
        hull.push(p);
    }
    let lower_len = hull.len() + 1;
    for &p in points.iter().rev().skip(1) {
        while hull.len() >= lower_len && cross(hull[hull.len() - 2], hull[hull.len() - 1], p) <= 0.0
        {
            hull.pop();
        }
        hull.push(p);
    }
    hull.pop();
    contour_length(&hull)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square(x0: f64, y0: f64, s: f64) -> Contour {
        vec![[x0, y0], [x0 + s, y0], [x0 + s, y0 + s], [x0, y0 + s]]
    }

    #[test]
    fn inward_offset_of_square_shrinks_each_side_by_twice_the_distance() {
        let r = region_from_loops(&[square(0.0, 0.0, 20.0)]);
        let inner = offset(&r, -1.0);
        assert!(
            (area(&inner) - 18.0 * 18.0).abs() < 1e-3,
            "{}",
            area(&inner)
        );
        assert!((boundary_length(&inner) - 72.0).abs() < 1e-3);
    }

    #[test]
    fn even_odd_loops_make_a_hole_whatever_the_orientation() {
        // Both loops counter-clockwise: even-odd still treats the inner one as a hole.
        let r = region_from_loops(&[square(0.0, 0.0, 10.0), square(2.0, 2.0, 6.0)]);
        assert!((area(&r) - 64.0).abs() < 1e-6);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].len(), 2);
    }

    #[test]
    fn difference_and_intersection_partition_a_region() {
        let a = region_from_loops(&[square(0.0, 0.0, 10.0)]);
        let b = region_from_loops(&[square(5.0, 0.0, 10.0)]);
        assert!((area(&intersection(&a, &b)) - 50.0).abs() < 1e-6);
        assert!((area(&difference(&a, &b)) - 50.0).abs() < 1e-6);
    }

    /// Regular n-gon, counter-clockwise.
    fn circle(r: f64, n: usize) -> Contour {
        (0..n)
            .map(|i| {
                let a = std::f64::consts::TAU * i as f64 / n as f64;
                [r * a.cos(), r * a.sin()]
            })
            .collect()
    }

    #[test]
    fn inward_offset_of_a_finely_tessellated_circle_is_the_smaller_circle() {
        // Edges (0.06 mm) far shorter than the offset: the case where spikes made it quadratic.
        let r = region_from_loops(&[circle(10.0, 1000)]);
        let inner = offset(&r, -0.45);
        let expect = std::f64::consts::PI * 9.55 * 9.55;
        assert_eq!(inner.len(), 1);
        assert!((area(&inner) - expect).abs() < 0.01, "{}", area(&inner));
    }

    #[test]
    fn inward_offset_keeps_holes_and_drops_what_no_longer_fits() {
        let mut hole = square(5.0, 5.0, 10.0);
        hole.reverse();
        let r = region_from_loops(&[square(0.0, 0.0, 20.0), hole]);
        let inner = offset(&r, -1.0);
        assert!((area(&inner) - (18.0 * 18.0 - 12.0 * 12.0)).abs() < 1e-6);
        assert_eq!(inner[0].len(), 2);
        // The 5 mm wall is gone at 2.6 mm; so is a 1 mm island at 0.6 mm.
        assert!(offset(&r, -2.6).is_empty());
        assert!(offset(&region_from_loops(&[square(0.0, 0.0, 1.0)]), -0.6).is_empty());
    }

    #[test]
    fn inward_offset_splits_a_region_at_a_thin_neck() {
        // Two 10 mm squares joined by a 1 mm wide bridge: at 0.6 mm the bridge vanishes.
        let dumbbell = vec![
            [0.0, 0.0],
            [10.0, 0.0],
            [10.0, 4.5],
            [14.0, 4.5],
            [14.0, 0.0],
            [24.0, 0.0],
            [24.0, 10.0],
            [14.0, 10.0],
            [14.0, 5.5],
            [10.0, 5.5],
            [10.0, 10.0],
            [0.0, 10.0],
        ];
        let inner = offset(&region_from_loops(&[dumbbell]), -0.6);
        assert_eq!(inner.len(), 2);
        assert!(
            (area(&inner) - 2.0 * 8.8 * 8.8).abs() < 1e-6,
            "{}",
            area(&inner)
        );
    }

    #[test]
    fn hull_of_square_with_interior_points() {
        let mut pts = square(0.0, 0.0, 4.0);
        pts.push([2.0, 2.0]);
        pts.push([1.0, 3.0]);
        assert!((convex_hull_length(&mut pts) - 16.0).abs() < 1e-9);
    }
}

#[cfg(test)]
mod signature_tests {
    use super::*;

    fn rect(x0: f64, y0: f64, w: f64, h: f64) -> Contour {
        vec![[x0, y0], [x0 + w, y0], [x0 + w, y0 + h], [x0, y0 + h]]
    }

    #[test]
    fn translated_copies_have_different_signatures() {
        let a = rect(-27.5, -7.5, 15.0, 15.0);
        let b = rect(12.5, -7.5, 15.0, 15.0);
        assert_ne!(
            contours_signature(std::slice::from_ref(&a)),
            contours_signature(&[b])
        );
        // Start point and direction do not matter.
        let mut r = a.clone();
        r.rotate_left(1);
        r.reverse();
        assert_eq!(contours_signature(&[a]), contours_signature(&[r]));
    }
}
