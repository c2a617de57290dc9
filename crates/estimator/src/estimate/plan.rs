//! Extrusion planning: what one layer extrudes (perimeters, solid and sparse infill, the skirt)
//! as path length, material and time at nominal speed. Layers are independent here, so this stage
//! runs in parallel; travel and cooling come after.

use std::f64::consts::PI;

use super::Ctx;
use super::flow::{BRIDGE_EXTRA_SPACING_MM, bead_area, spacing};
use super::layers::LayerGeometry;
use super::skins::Skins;
use super::work::{Extrusion, Feature, LayerWork};
use crate::geom::{self, Pt, Shapes};
use crate::motion::{junction_speed, move_time, polyline_time, safe_speed};
use crate::profile::{AccelRole, InfillPattern};

/// Time of `total_mm` of straight hatch lines of mean length `chord_mm`, joined by connectors of
/// `connector_mm` at right angles (zig-zag or anchors), at speed `v` and acceleration `a`.
pub(super) fn hatch_time(
    ctx: &Ctx,
    total_mm: f64,
    chord_mm: f64,
    connector_mm: f64,
    v: f64,
    a: f64,
) -> f64 {
    if total_mm <= 0.0 {
        return 0.0;
    }
    let unit = chord_mm + connector_mm;
    let n = (total_mm / unit).ceil().max(1.0);
    let line = (total_mm / n - connector_mm).max(0.0);
    let conn = total_mm / n - line;
    // Lines at 45 degrees, connectors across them.
    let d = std::f64::consts::FRAC_1_SQRT_2;
    let j = junction_speed(ctx.cornering, a, [d, d], [d, -d], v);
    n * (move_time(line, j, v, j, a) + move_time(conn, j, v, j, a))
}

/// Mean chord of a region (Cauchy: pi A / P), the typical length of a hatch line across it.
fn mean_chord(area: f64, boundary: f64, min: f64) -> f64 {
    if boundary <= 0.0 {
        return min;
    }
    (PI * area / boundary).max(min)
}

/// Plans layer `i` (of height `h`) into `work`: its perimeters, then its solid fills, then its
/// sparse infill.
pub(super) fn extrusions_for_layer(
    ctx: &Ctx,
    layers: &[LayerGeometry],
    surfaces: &[Skins],
    i: usize,
    h: f64,
    work: &mut LayerWork,
) {
    let p = ctx.p;
    let g = &layers[i];
    let first = i == 0;

    perimeter_extrusions(ctx, g, first, h, work);
    if g.infill.is_empty() {
        return;
    }
    let up = p.top_solid_layers as usize;
    let down = p.bottom_solid_layers as usize;
    let exposed = exposed_within_reach(surfaces, layers.len() - 1, i, up, down);
    let split = split_infill(g, &exposed, work);
    let has_solid = split.solid_area > 0.0;
    // Top skin (nothing above) and bridges (nothing below) within the solid part.
    let top = if up == 0 || !has_solid || surfaces[i].top.is_empty() {
        Vec::new()
    } else {
        geom::intersection(&split.near, &surfaces[i].top)
    };
    let bridge = if first || down == 0 || !has_solid || surfaces[i].bottom.is_empty() {
        Vec::new()
    } else {
        geom::intersection(&split.near, &surfaces[i].bottom)
    };
    let sparse = sparse_pieces(ctx, &split.sparse, work);
    let top_area = geom::area(&top).min(split.solid_area);
    let bridge_area = geom::area(&bridge).min((split.solid_area - top_area).max(0.0));
    let over_sparse = if has_solid {
        solid_over_sparse(ctx, layers, surfaces, i, &split.near)
    } else {
        0.0
    };
    let over_sparse = over_sparse.min((split.solid_area - top_area - bridge_area).max(0.0));
    let solid = SolidAreas {
        internal: (split.solid_area - top_area - bridge_area - over_sparse).max(0.0)
            + sparse.small_solid_area,
        top: top_area,
        bridge: bridge_area + over_sparse,
        boundary: split.solid_boundary + sparse.small_solid_boundary,
    };
    solid_extrusions(ctx, first, h, &solid, work);
    sparse_extrusion(ctx, h, &sparse, work);
}

/// Area of layer `i`'s solid infill that lies over sparse infill of the layer below. PrusaSlicer
/// prints it as a bridge over the sparse lines (`bridge_over_infill`): round threads at the bridge
/// speed. It is the lowest layer a top skin (of layer `i + top_solid_layers - 1`) makes solid, minus
/// what layer `i - 1` fills solid itself, within `i - 1`'s infill area.
fn solid_over_sparse(
    ctx: &Ctx,
    layers: &[LayerGeometry],
    surfaces: &[Skins],
    i: usize,
    near: &Shapes,
) -> f64 {
    let p = ctx.p;
    let up = p.top_solid_layers as usize;
    let last = layers.len() - 1;
    // With one top layer the skin itself is the top; dense infill is not bridged.
    if i == 0 || up < 2 || i + up - 1 > last || !(0.0..100.0).contains(&p.infill_density_pct) {
        return 0.0;
    }
    if p.infill_density_pct <= 0.0 {
        return 0.0;
    }
    let skin = &surfaces[i + up - 1].top;
    if skin.is_empty() {
        return 0.0;
    }
    let over = geom::intersection(near, skin);
    if over.is_empty() {
        return 0.0;
    }
    let below = exposed_within_reach(surfaces, last, i - 1, up, p.bottom_solid_layers as usize);
    let clip: Shapes = below.iter().flat_map(|e| e.iter().cloned()).collect();
    let open = if clip.is_empty() {
        over
    } else {
        geom::difference(&over, &clip)
    };
    if open.is_empty() {
        return 0.0;
    }
    // Pieces below the solid-infill threshold are printed solid, so nothing sparse lies there.
    let sparse_below: Shapes = layers[i - 1]
        .infill
        .iter()
        .filter(|s| geom::shape_area(s) >= p.solid_infill_below_area_mm2)
        .cloned()
        .collect();
    if sparse_below.is_empty() {
        return 0.0;
    }
    geom::area(&geom::intersection(&open, &sparse_below))
}

/// Perimeters: real loops, real corners.
fn perimeter_extrusions(ctx: &Ctx, g: &LayerGeometry, first: bool, h: f64, work: &mut LayerWork) {
    let p = ctx.p;
    let a = p.acceleration_for(AccelRole::Perimeter, first);
    for per in &g.perimeters {
        let len = per.length_mm;
        let w = if first {
            p.first_layer_width_mm
        } else if per.external {
            p.external_perimeter_width_mm
        } else {
            p.perimeter_width_mm
        };
        let v = if first {
            p.first_layer_speed_mm_s
        } else if len <= p.small_perimeter_max_length_mm {
            p.small_perimeter_speed_mm_s
        } else if per.external {
            p.external_perimeter_speed_mm_s
        } else {
            p.perimeter_speed_mm_s
        };
        // Same corners as the contour; the length difference is cruise distance.
        let contour_len = geom::contour_length(&per.contour);
        let base = polyline_time(&per.contour, true, v, a, ctx.cornering);
        let time_s = if contour_len > 0.0 {
            (base + (len - contour_len) / v).max(base * len / contour_len)
        } else {
            0.0
        };
        work.extrusions.push(Extrusion {
            feature: if per.external {
                Feature::ExternalPerimeter
            } else {
                Feature::Perimeter
            },
            path_mm: len,
            volume_mm3: len * bead_area(w, h),
            speed_mm_s: v,
            time_s,
        });
    }
}

/// The skins that make layer `i` solid: tops of the next `up` layers (this one included) and
/// bottoms of the previous `down`. Infill is solid exactly where it is "not covered by all of the
/// layers within reach", and this reads that from the (usually empty) skins instead of
/// intersecting every neighbour.
fn exposed_within_reach(
    surfaces: &[Skins],
    last: usize,
    i: usize,
    up: usize,
    down: usize,
) -> Vec<&Shapes> {
    let mut exposed: Vec<&Shapes> = Vec::new();
    for skin in &surfaces[i..(i + up).min(last + 1)] {
        if !skin.top.is_empty() {
            exposed.push(&skin.top);
        }
    }
    let first_down = if down == 0 {
        i + 1
    } else {
        (i + 1).saturating_sub(down)
    };
    for skin in &surfaces[first_down..=i] {
        if !skin.bottom.is_empty() {
            exposed.push(&skin.bottom);
        }
    }
    exposed
}

/// A layer's infill split into what stays sparse (as shapes) and what is solid (by area only).
struct InfillSplit {
    /// Infill islands near an exposed piece; the solid part, and so the skins, lie inside them.
    near: Shapes,
    sparse: Shapes,
    solid_area: f64,
    /// The near islands' boundary, shared out to the solid part by area.
    solid_boundary: f64,
}

/// Solid = infill near exposed pieces minus what stays sparse. Only the sparse part is computed as
/// shapes (its pieces decide sparse vs small-solid); the solid part is known by area, and its top
/// and bridge parts directly from the skins (which are inside the exposed pieces). Books the solid
/// pieces for travel.
fn split_infill(g: &LayerGeometry, exposed: &[&Shapes], work: &mut LayerWork) -> InfillSplit {
    if exposed.is_empty() {
        return InfillSplit {
            near: Vec::new(),
            sparse: g.infill.clone(),
            solid_area: 0.0,
            solid_boundary: 0.0,
        };
    }
    // Overlapping exposed pieces need no union: under the non-zero rule a clip made of all of them
    // is their union. Infill islands away from every exposed piece are sparse as they are.
    let clip: Shapes = exposed.iter().flat_map(|e| e.iter().cloned()).collect();
    let clip_boxes: Vec<[f64; 4]> = clip.iter().map(geom::shape_bbox).collect();
    let (near, far): (Shapes, Shapes) = g.infill.iter().cloned().partition(|s| {
        let bb = geom::shape_bbox(s);
        clip_boxes.iter().any(|c| geom::bboxes_overlap(c, &bb))
    });
    let near_sparse = geom::difference(&near, &clip);
    let near_area = geom::area(&near);
    let solid_area = (near_area - geom::area(&near_sparse)).max(0.0);
    let mut solid_boundary = 0.0;
    if near_area > 0.0 {
        // Shares the near islands' boundary in proportion: the hatch chord of the solid part is
        // then that of the islands it lies in.
        let fraction = solid_area / near_area;
        solid_boundary = geom::boundary_length(&near) * fraction;
        for s in &near {
            work.infill_pieces_mm2.push(geom::shape_area(s) * fraction);
        }
    }
    let mut sparse = far;
    sparse.extend(near_sparse);
    InfillSplit {
        near,
        sparse,
        solid_area,
        solid_boundary,
    }
}

/// Sparse infill pieces by size: pieces below the solid-infill threshold are printed solid.
struct SparsePieces {
    area: f64,
    boundary: f64,
    count: u32,
    small_solid_area: f64,
    small_solid_boundary: f64,
}

/// Sorts the sparse pieces into sparse and small-solid, and books every piece for travel.
fn sparse_pieces(ctx: &Ctx, sparse: &Shapes, work: &mut LayerWork) -> SparsePieces {
    let mut out = SparsePieces {
        area: 0.0,
        boundary: 0.0,
        count: 0,
        small_solid_area: 0.0,
        small_solid_boundary: 0.0,
    };
    for s in sparse {
        let ar = geom::shape_area(s);
        let bl: f64 = s.iter().map(|c| geom::contour_length(c)).sum();
        if ar < ctx.p.solid_infill_below_area_mm2 {
            out.small_solid_area += ar;
            out.small_solid_boundary += bl;
        } else {
            out.area += ar;
            out.boundary += bl;
            out.count += 1;
        }
        work.infill_pieces_mm2.push(ar);
    }
    out
}

/// Solid-type areas of a layer and the boundary they share.
struct SolidAreas {
    /// Internal solid: near exposed skins but neither top nor bridge, plus small sparse pieces.
    internal: f64,
    top: f64,
    bridge: f64,
    boundary: f64,
}

/// Internal solid, top skin and bridges, each at its own width and speed; bridges as round threads.
fn solid_extrusions(ctx: &Ctx, first: bool, h: f64, solid: &SolidAreas, work: &mut LayerWork) {
    let p = ctx.p;
    let first_speed = p.first_layer_speed_mm_s;
    // Solid-type fills: (role, area, width, speed, is bridge).
    let fills = [
        (
            Feature::Solid,
            solid.internal,
            if first {
                p.first_layer_width_mm
            } else {
                p.solid_infill_width_mm
            },
            if first {
                first_speed
            } else {
                p.solid_infill_speed_mm_s
            },
            false,
        ),
        (
            Feature::TopSolid,
            solid.top,
            p.top_infill_width_mm,
            p.top_solid_infill_speed_mm_s,
            false,
        ),
        (
            Feature::Bridge,
            solid.bridge,
            p.nozzle_diameter_mm,
            p.bridge_speed_mm_s,
            true,
        ),
    ];
    let total_solid = solid.internal + solid.top + solid.bridge;
    for (feature, area, w, v, is_bridge) in fills {
        if area <= 0.0 {
            continue;
        }
        let (s, bead) = if is_bridge {
            (
                p.nozzle_diameter_mm + BRIDGE_EXTRA_SPACING_MM,
                PI * (p.nozzle_diameter_mm / 2.0).powi(2),
            )
        } else {
            (spacing(w, h), bead_area(w, h))
        };
        let path = area / s;
        let role = if is_bridge {
            AccelRole::Bridge
        } else {
            AccelRole::Infill
        };
        let a = p.acceleration_for(role, first);
        // Boundary shared out by area: each fill's chord follows the region's shape.
        let boundary = solid.boundary * area / total_solid.max(f64::MIN_POSITIVE);
        let chord = mean_chord(area, boundary, s);
        work.extrusions.push(Extrusion {
            feature,
            path_mm: path,
            volume_mm3: path * bead,
            speed_mm_s: v,
            time_s: hatch_time(ctx, path, chord, s, v, a),
        });
    }
}

/// Sparse infill at the profile's density and pattern, with anchors, and the breaks between its
/// directions that travel has to cover.
fn sparse_extrusion(ctx: &Ctx, h: f64, sparse: &SparsePieces, work: &mut LayerWork) {
    let p = ctx.p;
    if sparse.area > 0.0 && p.infill_density_pct > 0.0 {
        let w = p.infill_width_mm;
        let s = spacing(w, h);
        let density = p.infill_density_pct / 100.0;
        let lines = sparse.area * density / s;
        let dirs = f64::from(p.infill_pattern.directions());
        // Lines of one direction are this far apart.
        let line_gap = s * dirs / density;
        let chord = mean_chord(sparse.area, sparse.boundary, s);
        let n_lines = lines / chord;
        // Neighbouring line ends are joined along the perimeter or anchored to it; a join is
        // shared by two lines, so a line carries about half of one.
        let anchor = 0.5 * p.infill_anchor_mm.min(line_gap);
        let path = lines + n_lines * anchor;
        let v = p.infill_speed_mm_s;
        let a = p.acceleration_for(AccelRole::Infill, false);
        work.extrusions.push(Extrusion {
            feature: Feature::Infill,
            path_mm: path,
            volume_mm3: path * bead_area(w, h),
            speed_mm_s: p.infill_speed_mm_s,
            // Gyroid lines run on as one wave (linked at the boundary) instead of stopping at
            // every chord's end.
            time_s: if p.infill_pattern == InfillPattern::Gyroid {
                path * gyroid_time_per_mm(ctx, s, density, v, a)
            } else {
                hatch_time(ctx, path, chord, anchor, v, a)
            },
        });
        // Lines of one direction are chained along the boundary (PrusaSlicer links neighbouring line
        // ends when the link is shorter than infill_anchor_max), so each piece is printed as one chain
        // per direction: a travel between directions.
        work.sparse_breaks += (dirs - 1.0) * f64::from(sparse.count);
        work.sparse_break_mm = line_gap.min(chord);
    }
}

/// PrusaSlicer scales its gyroid so that lines `spacing / (density x this)` apart per radian of
/// the unit surface give the requested density.
const GYROID_DENSITY_ADJUST: f64 = 2.44;

/// Time per mm of gyroid infill: its lines are waves of straight segments, as PrusaSlicer
/// subdivides the unit gyroid's slice until a segment deviates less than its tolerance from the
/// curve, and the firmware slows at every bend. Timed over a few periods at speed `v`, sampled
/// over the layer phases.
fn gyroid_time_per_mm(ctx: &Ctx, s: f64, density: f64, v: f64, a: f64) -> f64 {
    let adjusted = (GYROID_DENSITY_ADJUST * density).max(1e-3);
    let mm_per_unit = s / adjusted;
    let tolerance = (s / 2.0).min(0.2) / adjusted;
    // The slice of sin x cos y + sin y cos z + sin z cos x = 0 at height z, as y(x).
    let y_at = |x: f64, z: f64| -> f64 {
        let (a1, b1, c1) = (x.sin(), z.cos(), z.sin() * x.cos());
        let r = (a1 * a1 + b1 * b1).sqrt().max(1e-9);
        b1.atan2(a1) + (-c1 / r).clamp(-1.0, 1.0).acos()
    };
    let (mut time, mut length) = (0.0, 0.0);
    const PHASES: usize = 6;
    for k in 0..PHASES {
        let z = (k as f64 + 0.5) * PI / 2.0 / PHASES as f64;
        // Adaptive subdivision over two periods, bounded in depth.
        let mut xs = vec![0.0, PI, 2.0 * PI, 3.0 * PI, 4.0 * PI];
        for _ in 0..8 {
            let mut next = vec![xs[0]];
            let mut split = false;
            for w in xs.windows(2) {
                let (x0, x1) = (w[0], w[1]);
                let xm = 0.5 * (x0 + x1);
                let ym = y_at(xm, z);
                let chord_mid = 0.5 * (y_at(x0, z) + y_at(x1, z));
                if (ym - chord_mid).abs() > tolerance {
                    next.push(xm);
                    split = true;
                }
                next.push(x1);
            }
            xs = next;
            if !split {
                break;
            }
        }
        let pts: Vec<Pt> = xs
            .iter()
            .map(|&x| [x * mm_per_unit, y_at(x, z) * mm_per_unit])
            .collect();
        let len: f64 = pts
            .windows(2)
            .map(|w| ((w[1][0] - w[0][0]).powi(2) + (w[1][1] - w[0][1]).powi(2)).sqrt())
            .sum();
        time += polyline_time(&pts, false, v, a, ctx.cornering);
        length += len;
    }
    if length > 0.0 {
        (time / length).max(1.0 / v)
    } else {
        1.0 / v
    }
}

/// Skirt loops around the first layer: the convex hull grown by the skirt distance (a Minkowski sum
/// adds 2 pi r to the hull's length).
pub(super) fn skirt(ctx: &Ctx, g: &LayerGeometry, layer: usize, work: &mut LayerWork) {
    let p = ctx.p;
    if p.skirt_loops == 0 || layer >= p.skirt_height_layers.max(1) as usize {
        return;
    }
    let mut pts: Vec<Pt> = g
        .region
        .iter()
        .flat_map(|s| s.iter().flatten().copied())
        .collect();
    let hull = geom::convex_hull_length(&mut pts);
    if hull <= 0.0 {
        return;
    }
    // The skirt keeps the first layer's flow on every layer it is printed on; above the first
    // layer PrusaSlicer prints it at the support material speed.
    let h = p.first_layer_height_mm;
    let w = p.first_layer_width_mm;
    let s = spacing(w, h);
    let first = layer == 0;
    let v = if first {
        p.first_layer_speed_mm_s
    } else {
        p.support_speed_mm_s
    };
    let a = p.acceleration_for(AccelRole::Other, first);
    let safe = safe_speed(ctx.cornering, v);
    let filament_area = PI * (p.filament_diameter_mm / 2.0).powi(2);
    let mut filament = 0.0;
    let mut k = 0u32;
    // Loops as configured, then more until the skirt takes `min_skirt_length` of filament.
    while k < p.skirt_loops || (filament < p.min_skirt_length_mm && k < MAX_SKIRT_LOOPS) {
        let len = hull + 2.0 * PI * (p.skirt_distance_mm + w / 2.0 + f64::from(k) * s);
        let volume = len * bead_area(w, h);
        filament += volume / filament_area;
        work.extrusions.push(Extrusion {
            feature: Feature::Skirt,
            path_mm: len,
            volume_mm3: volume,
            speed_mm_s: v,
            time_s: move_time(len, safe, v, safe, a),
        });
        k += 1;
    }
    work.extra_travels_mm.push(p.skirt_distance_mm);
}

/// Bounds the loops `min_skirt_length` can add around a tiny part.
const MAX_SKIRT_LOOPS: u32 = 1000;

#[cfg(test)]
mod tests {
    use super::super::skins::skin_surfaces;
    use super::super::testutil::{profile, square};
    use super::*;

    /// `n` equal layers whose whole region (a 20 mm square) is left for infill.
    fn column(n: usize) -> Vec<LayerGeometry> {
        let region = square(0.0, 0.0, 20.0);
        let g = LayerGeometry {
            shape_sigs: region.iter().map(geom::shape_signature).collect(),
            shape_bboxes: region.iter().map(geom::shape_bbox).collect(),
            signature: geom::shape_signature(&region[0]),
            infill: region.clone(),
            region,
            ..LayerGeometry::default()
        };
        vec![g; n]
    }

    fn volume_of(work: &LayerWork, feature: Feature) -> f64 {
        work.extrusions
            .iter()
            .filter(|e| e.feature == feature)
            .map(|e| e.volume_mm3)
            .sum()
    }

    #[test]
    fn layers_near_the_top_are_solid_and_the_middle_sparse() {
        let p = profile();
        let ctx = Ctx {
            p: &p,
            cornering: p.cornering,
        };
        let h = p.layer_height_mm;
        let layers = column(9);
        let surfaces = skin_surfaces(&ctx, &layers);

        // Within reach of the top: solid, exactly area times height of material.
        let mut top = LayerWork::default();
        extrusions_for_layer(&ctx, &layers, &surfaces, 7, h, &mut top);
        let solid = volume_of(&top, Feature::Solid) + volume_of(&top, Feature::TopSolid);
        assert!((solid - 400.0 * h).abs() < 1e-9);
        assert_eq!(volume_of(&top, Feature::Infill), 0.0);

        // Out of reach of both: sparse at the profile's density, plus anchors.
        let mut middle = LayerWork::default();
        extrusions_for_layer(&ctx, &layers, &surfaces, 4, h, &mut middle);
        assert_eq!(volume_of(&middle, Feature::Solid), 0.0);
        let sparse = volume_of(&middle, Feature::Infill);
        let nominal = 400.0 * h * p.infill_density_pct / 100.0;
        assert!(
            sparse > nominal && sparse < 1.2 * nominal,
            "{sparse} vs {nominal}"
        );
        assert_eq!(middle.infill_pieces_mm2, vec![400.0]);
    }

    #[test]
    fn mean_chord_of_a_square_is_pi_area_over_perimeter() {
        assert!((mean_chord(100.0, 40.0, 0.1) - PI * 2.5).abs() < 1e-12);
        assert_eq!(mean_chord(100.0, 0.0, 0.1), 0.1);
    }

    #[test]
    fn the_lowest_solid_layer_over_sparse_infill_is_a_bridge() {
        let p = profile();
        let ctx = Ctx {
            p: &p,
            cornering: p.cornering,
        };
        let h = p.layer_height_mm;
        let layers = column(12);
        let surfaces = skin_surfaces(&ctx, &layers);
        let up = p.top_solid_layers as usize;
        // The top skin of layer 11 makes layers 12 - up .. 11 solid; the lowest of them lies on
        // sparse infill and is bridged, the ones above are ordinary solid infill.
        let lowest = 12 - up;
        let mut work = LayerWork::default();
        extrusions_for_layer(&ctx, &layers, &surfaces, lowest, h, &mut work);
        assert!(volume_of(&work, Feature::Bridge) > 0.0);
        assert_eq!(volume_of(&work, Feature::Solid), 0.0);
        let mut above = LayerWork::default();
        extrusions_for_layer(&ctx, &layers, &surfaces, lowest + 1, h, &mut above);
        assert_eq!(volume_of(&above, Feature::Bridge), 0.0);
        assert!(volume_of(&above, Feature::Solid) > 0.0);
    }

    #[test]
    fn min_skirt_length_adds_loops_and_skirt_height_repeats_them() {
        let mut p = profile();
        p.min_skirt_length_mm = 20.0;
        p.skirt_height_layers = 2;
        let ctx = Ctx {
            p: &p,
            cornering: p.cornering,
        };
        let g = &column(1)[0];
        let skirt_of = |layer: usize| {
            let mut w = LayerWork::default();
            skirt(&ctx, g, layer, &mut w);
            w.extrusions
        };
        let first = skirt_of(0);
        let area = PI * (p.filament_diameter_mm / 2.0).powi(2);
        let filament: f64 = first.iter().map(|e| e.volume_mm3).sum::<f64>() / area;
        assert!(first.len() > 1 && filament >= 20.0, "{} loops", first.len());
        // One loop fewer would not have been enough.
        let last = first.last().expect("loops").volume_mm3 / area;
        assert!(filament - last < 20.0);
        // The second layer repeats the loops at the support speed; the third has none.
        let second = skirt_of(1);
        assert_eq!(second.len(), first.len());
        assert!(second.iter().all(|e| e.speed_mm_s == p.support_speed_mm_s));
        assert!(skirt_of(2).is_empty());
    }

    #[test]
    fn gyroid_waves_print_slower_than_straight_lines() {
        let p = profile();
        let ctx = Ctx {
            p: &p,
            cornering: p.cornering,
        };
        let s = spacing(p.infill_width_mm, p.layer_height_mm);
        let v = p.infill_speed_mm_s;
        let per_mm = gyroid_time_per_mm(&ctx, s, 0.15, v, p.print_acceleration_mm_s2);
        assert!(per_mm > 1.0 / v && per_mm.is_finite(), "{per_mm}");
    }
}
