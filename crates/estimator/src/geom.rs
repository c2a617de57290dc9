//! Planar region helpers over Clipper2 (the `clipper2-rust` port; Clipper is what slicers use): the
//! offsets and booleans a slicer needs (perimeter insets, solid/sparse splits) plus the measures (area,
//! boundary length, centroid) the estimate is built from.

use clipper2_rust::{
    EndType, FillRule, JoinType, PathD, PathsD, PointD, difference_d, inflate_paths_d, intersect_d,
    union_subjects_d,
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
pub fn offset(shapes: &Shapes, distance: f64) -> Shapes {
    if shapes.is_empty() || distance == 0.0 {
        return shapes.clone();
    }
    group(inflate_paths_d(
        &to_paths(shapes),
        distance,
        JoinType::Miter,
        EndType::Polygon,
        MITER_LIMIT,
        PRECISION_DECIMALS,
        0.0,
    ))
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
