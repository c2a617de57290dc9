//! The estimate pipeline: checks (units, fit, brokenness), slicing, per-layer regions (perimeters,
//! solid and sparse infill from neighbouring layers), path lengths and volumes per feature, timing
//! with the motion model, the minimum-layer-time rule, travel/retraction and support.

use std::f64::consts::PI;

use rayon::prelude::*;
use rustc_hash::FxHashMap;

use crate::geom::{self, Contour, Pt, Shapes};
use crate::motion::{junction_speed, move_time, polyline_time, safe_speed};
use crate::profile::{Cornering, Profile};
use crate::slice::{self, LayerLoops};
use crate::{Breakdown, Estimate, EstimateError, FeatureEstimate, MAX_LAYERS};

/// Cross-section of a bead of width `w` and height `h` (PrusaSlicer's flow model: a rectangle with
/// semicircular ends). Lines of this bead are laid `spacing(w, h)` apart, so a filled area `A` takes
/// exactly `A * h` of material.
fn bead_area(w: f64, h: f64) -> f64 {
    (w - h) * h + PI * (h / 2.0) * (h / 2.0)
}

fn spacing(w: f64, h: f64) -> f64 {
    w - h * (1.0 - PI / 4.0)
}

/// Bridges are extruded as round threads of the nozzle diameter, spaced by a small gap
/// (PrusaSlicer's `thick_bridges` with `BRIDGE_EXTRA_SPACING` = 0.05 mm).
const BRIDGE_EXTRA_SPACING_MM: f64 = 0.05;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Feature {
    Perimeters,
    Infill,
    Solid,
    Skirt,
}

/// One group of extrusion on a layer: its path, material and planned time at nominal speed.
struct Extrusion {
    feature: Feature,
    path_mm: f64,
    volume_mm3: f64,
    speed_mm_s: f64,
    time_s: f64,
}

/// One perimeter loop. Inner loops whose shape follows the external one exactly (no topology change
/// in between) reuse its corners with their own, exactly predicted, length.
#[derive(Clone)]
struct Perimeter {
    contour: Contour,
    length_mm: f64,
    external: bool,
}

/// Geometry of one layer that neighbours need, computed once per distinct outline.
#[derive(Clone, Default)]
struct LayerGeometry {
    region: Shapes,
    /// Per island of `region`: signature and bounds.
    shape_sigs: Vec<u64>,
    shape_bboxes: Vec<[f64; 4]>,
    outline_length: f64,
    perimeters: Vec<Perimeter>,
    /// Area left for infill inside the innermost perimeter (including the infill overlap).
    infill: Shapes,
    signature: u64,
}

struct Ctx<'a> {
    p: &'a Profile,
    cornering: Cornering,
}

/// A few dropped pieces (a stray facet) do not make a mesh too broken, whatever the ratio.
const MIN_DROPPED_FOR_BROKEN: u32 = 10;

/// A mesh checked, dropped onto the bed and sliced.
struct Prepared {
    /// Subtracted from every vertex: centres the model on the origin, on the bed.
    origin: [f64; 3],
    extent: [f64; 3],
    /// Top of each layer above the bed.
    tops: Vec<f64>,
    /// Height at which each layer was sliced.
    planes: Vec<f64>,
    sliced: Vec<LayerLoops>,
}

/// One layer's outline as sliced: what a designer (or a test) can check against the model.
#[derive(Debug, Clone)]
pub struct LayerOutline {
    /// Top of the layer above the bed.
    pub top_mm: f64,
    /// Height at which the mesh was cut for this layer.
    pub slice_z_mm: f64,
    /// Closed loops, model coordinates centred on the bounding box centre.
    pub loops: Vec<Vec<[f64; 2]>>,
    /// Area enclosed (even-odd: nested loops are holes).
    pub area_mm2: f64,
    /// Length of all outline loops.
    pub outline_mm: f64,
    /// Chains on this layer that did not close by themselves.
    pub unclosed: u32,
}

/// Slices the mesh at the profile's layers and returns each layer's outline, with the same checks as
/// [`estimate`].
pub fn slice_outlines(
    triangles: &[[[f32; 3]; 3]],
    profile: &Profile,
) -> Result<Vec<LayerOutline>, EstimateError> {
    profile.validate()?;
    let prepared = prepare(triangles, profile)?;
    Ok(prepared
        .sliced
        .into_iter()
        .zip(prepared.tops.iter().zip(&prepared.planes))
        .map(|(l, (&top, &plane))| {
            let region = geom::region_from_loops(&l.loops);
            LayerOutline {
                top_mm: top,
                slice_z_mm: plane,
                area_mm2: geom::area(&region),
                outline_mm: geom::boundary_length(&region),
                loops: l.loops,
                unclosed: l.unclosed,
            }
        })
        .collect())
}

fn prepare(triangles: &[[[f32; 3]; 3]], p: &Profile) -> Result<Prepared, EstimateError> {
    if triangles.is_empty() {
        return Err(EstimateError::TooBroken {
            reason: "the mesh has no triangles".into(),
        });
    }
    // Bounds and finiteness.
    let mut lo = [f64::INFINITY; 3];
    let mut hi = [f64::NEG_INFINITY; 3];
    for t in triangles {
        for v in t {
            for a in 0..3 {
                let c = f64::from(v[a]);
                if !c.is_finite() {
                    return Err(EstimateError::TooBroken {
                        reason:
                            "the mesh has a vertex with a non-finite coordinate (NaN or infinity)"
                                .into(),
                    });
                }
                lo[a] = lo[a].min(c);
                hi[a] = hi[a].max(c);
            }
        }
    }
    let extent = [hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2]];
    let height = extent[2];
    if height < p.first_layer_height_mm / 2.0 {
        return Err(EstimateError::NoLayers {
            height_mm: height,
            first_layer_height_mm: p.first_layer_height_mm,
            hint: units_hint(extent),
        });
    }
    let fits_xy = (extent[0] <= p.build_x_mm && extent[1] <= p.build_y_mm)
        || (extent[1] <= p.build_x_mm && extent[0] <= p.build_y_mm);
    if !fits_xy || height > p.build_z_mm {
        return Err(EstimateError::DoesNotFit {
            extent_mm: extent,
            build_volume_mm: [p.build_x_mm, p.build_y_mm, p.build_z_mm],
        });
    }

    // Layers: tops at first, first + h, ...; each sliced through its middle (as slicers do).
    let mut tops = Vec::new();
    let mut planes = Vec::new();
    let mut top = p.first_layer_height_mm;
    let mut thickness = p.first_layer_height_mm;
    loop {
        let plane = top - thickness / 2.0;
        if plane >= height {
            break;
        }
        if tops.len() >= MAX_LAYERS {
            return Err(EstimateError::TooManyLayers {
                layers: (height / p.layer_height_mm).ceil() as usize,
                limit: MAX_LAYERS,
            });
        }
        tops.push(top);
        planes.push(plane);
        thickness = p.layer_height_mm;
        top += p.layer_height_mm;
    }

    // Shift onto the bed, centred on the origin (positions only matter relative to each other).
    let origin = [(lo[0] + hi[0]) / 2.0, (lo[1] + hi[1]) / 2.0, lo[2]];
    let mut sliced = slice::slice(triangles, origin, &planes);
    let Some(last) = sliced.iter().rposition(|l| !l.loops.is_empty()) else {
        let open: u32 = sliced.iter().map(|l| l.unclosed).sum();
        return Err(EstimateError::TooBroken {
            reason: format!(
                "no layer has a closed outline ({open} open outline pieces over {} layers): the mesh is an open surface or a triangle soup, not a solid; repair it (close holes, stitch edges)",
                sliced.len()
            ),
        });
    };
    // When more outline pieces had to be thrown away than closed loops remain, what is left is not
    // the model: refuse rather than estimate fragments.
    let dropped: u32 = sliced.iter().map(|l| l.dropped).sum();
    let kept: usize = sliced.iter().map(|l| l.loops.len()).sum();
    if dropped >= MIN_DROPPED_FOR_BROKEN && dropped as usize > kept {
        return Err(EstimateError::TooBroken {
            reason: format!(
                "{dropped} outline pieces could not be closed and only {kept} closed loops remain over {} layers: the mesh is mostly disconnected facets; repair it (stitch edges, fill holes)",
                sliced.len()
            ),
        });
    }
    // Layers above the last outline (stray facets high up) are not printed.
    sliced.truncate(last + 1);
    tops.truncate(last + 1);
    planes.truncate(last + 1);
    Ok(Prepared {
        origin,
        extent,
        tops,
        planes,
        sliced,
    })
}

/// Estimates print time and filament of the mesh (triangles in mm) on the profile.
pub fn estimate(triangles: &[[[f32; 3]; 3]], profile: &Profile) -> Result<Estimate, EstimateError> {
    profile.validate()?;
    let limited = profile.with_speeds_limited();
    let p = &limited;
    let Prepared {
        origin,
        extent,
        sliced,
        ..
    } = prepare(triangles, p)?;
    let unclosed: u32 = sliced.iter().map(|l| l.unclosed).sum();
    let dropped: u32 = sliced.iter().map(|l| l.dropped).sum();
    let layers_with_loops = sliced.iter().filter(|l| !l.loops.is_empty()).count();
    let mut warnings = Vec::new();
    if unclosed > 0 {
        warnings.push(format!(
            "{unclosed} layer outlines were open (holes in the mesh): {} were closed with a straight edge, {dropped} were dropped",
            unclosed - dropped
        ));
    }
    if layers_with_loops < sliced.len() {
        warnings.push(format!(
            "{} of {} layers have no closed outline",
            sliced.len() - layers_with_loops,
            sliced.len()
        ));
    }

    let ctx = Ctx {
        p,
        cornering: p.cornering,
    };
    let geometry = layer_geometry(&ctx, &sliced);
    let surfaces = skin_surfaces(&ctx, &geometry);

    // Layers are independent until travel and cooling, which are cheap and sequential.
    let works: Vec<LayerWork> = (0..geometry.len())
        .into_par_iter()
        .map(|i| {
            let mut work = LayerWork::default();
            extrusions_for_layer(&ctx, &geometry, &surfaces, i, layer_height(p, i), &mut work);
            if i == 0 {
                skirt(&ctx, &geometry[0], &mut work);
            }
            work
        })
        .collect();
    let mut totals = Totals::default();
    let mut position: Pt = [0.0, 0.0];
    for (i, (g, work)) in geometry.iter().zip(works).enumerate() {
        let h = layer_height(p, i);
        travel_for_layer(&ctx, g, &work, &mut position, &mut totals);
        finish_layer(&ctx, work, h, &mut totals);
        // Layer change: a z move at the z speed.
        totals.travel_time_s += h / p.z_speed_mm_s;
    }

    // Support, when enabled: columns under overhangs flatter than the threshold.
    let overhang = overhang_columns(triangles, origin, p);
    if p.support_enabled && overhang.area_mm2 > 0.0 {
        support(&ctx, &overhang, &mut totals);
    } else if overhang.area_mm2 > 0.0 && !p.support_enabled {
        warnings.push(format!(
            "{:.0} mm2 of overhang flatter than {} deg would need support, which this profile disables",
            overhang.area_mm2, p.support_threshold_deg
        ));
    }

    let filament_area = PI * (p.filament_diameter_mm / 2.0).powi(2);
    let f = |volume: f64| volume / filament_area;
    let mk = |acc: &Acc| FeatureEstimate {
        time_s: acc.time_s,
        filament_mm: f(acc.volume_mm3),
        path_mm: acc.path_mm,
    };
    let breakdown = Breakdown {
        perimeters: mk(&totals.perimeters),
        infill: mk(&totals.infill),
        solid: mk(&totals.solid),
        support: mk(&totals.support),
        skirt: mk(&totals.skirt),
        travel: FeatureEstimate {
            time_s: totals.travel_time_s,
            filament_mm: 0.0,
            path_mm: totals.travel_path_mm,
        },
    };
    let volume: f64 = [
        &totals.perimeters,
        &totals.infill,
        &totals.solid,
        &totals.support,
        &totals.skirt,
    ]
    .iter()
    .map(|a| a.volume_mm3)
    .sum();
    let model_volume: f64 = [&totals.perimeters, &totals.infill, &totals.solid]
        .iter()
        .map(|a| a.volume_mm3)
        .sum();
    if model_volume <= 0.0 {
        return Err(EstimateError::NothingToPrint {
            reason: format!(
                "every feature of the model is thinner than a {} mm extrusion; check the units or use a finer nozzle",
                p.external_perimeter_width_mm
            ),
        });
    }
    let print_time_s = [
        breakdown.perimeters.time_s,
        breakdown.infill.time_s,
        breakdown.solid.time_s,
        breakdown.support.time_s,
        breakdown.skirt.time_s,
        breakdown.travel.time_s,
    ]
    .iter()
    .sum();
    Ok(Estimate {
        profile_name: p.name.clone(),
        print_time_s,
        filament_mm: f(volume),
        filament_g: volume / 1000.0 * p.filament_density_g_cm3,
        filament_cm3: volume / 1000.0,
        layers: geometry.len() as u32,
        extent_mm: extent,
        breakdown,
        travel_moves: totals.travel_moves,
        retractions: totals.retractions,
        cooling_slowdown_s: totals.cooling_slowdown_s,
        slowed_layers: totals.slowed_layers,
        overhang_area_mm2: overhang.area_mm2,
        unclosed_loops: unclosed,
        warnings,
    })
}

/// Tells a designer which unit mistake a too-small model most likely is.
fn units_hint(extent: [f64; 3]) -> String {
    let largest = extent.iter().cloned().fold(0.0, f64::max);
    if largest <= 0.0 {
        "the mesh is flat (zero height); it needs a thickness to be printed".into()
    } else if largest < 1.0 {
        format!(
            "its largest side is {largest:.4} mm: the file is probably in metres (scale by 1000) or inches (scale by 25.4)"
        )
    } else {
        "the model is flatter than half a layer; give it a thickness or lay it on a different face"
            .into()
    }
}

#[derive(Default, Clone, Copy)]
struct Acc {
    time_s: f64,
    path_mm: f64,
    volume_mm3: f64,
}

#[derive(Default)]
struct Totals {
    perimeters: Acc,
    infill: Acc,
    solid: Acc,
    support: Acc,
    skirt: Acc,
    travel_time_s: f64,
    travel_path_mm: f64,
    travel_moves: u32,
    retractions: u32,
    cooling_slowdown_s: f64,
    slowed_layers: u32,
    /// Travel time of the layer being finished (part of its layer time for the cooling rule).
    layer_travel_s: f64,
}

impl Totals {
    fn acc(&mut self, f: Feature) -> &mut Acc {
        match f {
            Feature::Perimeters => &mut self.perimeters,
            Feature::Infill => &mut self.infill,
            Feature::Solid => &mut self.solid,
            Feature::Skirt => &mut self.skirt,
        }
    }
}

/// What one layer extrudes plus the infill pieces travel needs to reach.
#[derive(Default)]
struct LayerWork {
    extrusions: Vec<Extrusion>,
    /// Areas of the separate infill pieces (solid and sparse) to travel to.
    infill_pieces_mm2: Vec<f64>,
    /// Breaks inside sparse infill (a new line that is not anchored to the previous one), with length.
    sparse_breaks: f64,
    sparse_break_mm: f64,
    /// Other travels (to the skirt), with length.
    extra_travels_mm: Vec<f64>,
    travel_time_s: f64,
    travel_moves: u32,
    travel_path_mm: f64,
    retractions: u32,
}

/// Relative tolerance for "the infill boundary is where the external loops predict".
const STABLE_LENGTH_TOLERANCE: f64 = 0.01;

/// How fast a closed loop's length shrinks per mm of inward miter offset: the sum over corners of
/// 2 tan(turn / 2), turns signed so that convex corners shrink and reflex corners grow (2 pi for a
/// smooth outer loop, -2 pi for a smooth hole).
fn miter_shrink_rate(c: &[Pt]) -> f64 {
    let n = c.len();
    if n < 3 {
        return 0.0;
    }
    let orientation = geom::contour_area(c).signum();
    let mut rate = 0.0;
    for i in 0..n {
        let a = c[(i + n - 1) % n];
        let b = c[i];
        let d = c[(i + 1) % n];
        let u = [b[0] - a[0], b[1] - a[1]];
        let v = [d[0] - b[0], d[1] - b[1]];
        let turn = (u[0] * v[1] - u[1] * v[0]).atan2(u[0] * v[0] + u[1] * v[1]);
        rate += 2.0 * (orientation * turn / 2.0).tan();
    }
    rate
}

/// Outline measures used to recognise a layer that is (almost) the same as an earlier one.
#[derive(Clone)]
struct Outline {
    region: Shapes,
    /// Per island: signature (with point count) and bounds.
    shape_keys: Vec<(u64, usize)>,
    shape_bboxes: Vec<[f64; 4]>,
    loops: usize,
    area: f64,
    length: f64,
    bbox: [f64; 4],
}

/// Layers whose outline matches a recent key layer this closely reuse its perimeters and infill
/// area (lengths scaled to their own outline). The error this allows is below the tolerance, far
/// under the model's own; it saves the offsets on gently varying parts (cylinders, hulls).
const SIMILAR_RELATIVE_TOLERANCE: f64 = 0.002;
const SIMILAR_BBOX_TOLERANCE_MM: f64 = 0.05;
/// A key layer is reused for at most this many following layers, so small changes cannot add up.
const SIMILAR_MAX_SPAN: usize = 8;

fn similar(a: &Outline, b: &Outline) -> bool {
    let close = |x: f64, y: f64| (x - y).abs() <= SIMILAR_RELATIVE_TOLERANCE * x.abs().max(y.abs());
    a.loops == b.loops
        && close(a.area, b.area)
        && close(a.length, b.length)
        && a.bbox
            .iter()
            .zip(&b.bbox)
            .all(|(x, y)| (x - y).abs() <= SIMILAR_BBOX_TOLERANCE_MM)
}

fn outline_of(l: &LayerLoops) -> Outline {
    let region = geom::region_from_loops(&l.loops);
    let pts = region.iter().flat_map(|s| s.iter().flatten());
    let bbox = pts.fold(
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
    );
    Outline {
        shape_keys: region
            .iter()
            .map(|s| (geom::shape_signature(s), s.iter().map(|c| c.len()).sum()))
            .collect(),
        shape_bboxes: region.iter().map(geom::shape_bbox).collect(),
        loops: region.iter().map(|s| s.len()).sum(),
        area: geom::area(&region),
        length: geom::boundary_length(&region),
        bbox,
        region,
    }
}

/// Regions, perimeters and infill area per layer. Work is shared wherever the result is the same:
/// equal outlines (prismatic parts), islands already seen on an earlier layer, and layers within
/// the similarity tolerance of a recent key layer.
fn layer_geometry(ctx: &Ctx, sliced: &[LayerLoops]) -> Vec<LayerGeometry> {
    // An outline equal to the previous layer's (prismatic parts) needs no union of its own.
    let repeats = |i: usize| i >= 1 && sliced[i].signature == sliced[i - 1].signature;
    let own: Vec<Option<Outline>> = (0..sliced.len())
        .into_par_iter()
        .map(|i| (!repeats(i)).then(|| outline_of(&sliced[i])))
        .collect();
    let mut outlines: Vec<Outline> = Vec::with_capacity(sliced.len());
    for o in own {
        let o = match (o, outlines.last()) {
            (Some(o), _) => o,
            (None, Some(prev)) => prev.clone(),
            (None, None) => outline_of(&LayerLoops::default()),
        };
        outlines.push(o);
    }
    // Layers 0 and 1 differ in widths and heights from the rest, so they are always keys.
    let mut key = vec![0usize; sliced.len()];
    for i in 0..sliced.len() {
        let k = if i > 0 { key[i - 1] } else { 0 };
        key[i] = if i >= 2
            && k >= 2
            && (sliced[i].signature == sliced[k].signature
                || i - k <= SIMILAR_MAX_SPAN && similar(&outlines[i], &outlines[k]))
        {
            k
        } else {
            i
        };
    }
    // Islands are offset independently (inward offsets never merge them), so an island seen on an
    // earlier key layer (same points, same first-layer-or-not widths) reuses its result.
    type ShapeKey = (u64, usize, bool);
    let mut task_of: FxHashMap<ShapeKey, usize> = FxHashMap::default();
    let mut tasks: Vec<(usize, usize)> = Vec::new();
    let mut layer_tasks: Vec<Vec<usize>> = vec![Vec::new(); sliced.len()];
    for i in 0..sliced.len() {
        if key[i] != i {
            continue;
        }
        for (j, &(sig, npts)) in outlines[i].shape_keys.iter().enumerate() {
            let t = *task_of.entry((sig, npts, i == 0)).or_insert_with(|| {
                tasks.push((i, j));
                tasks.len() - 1
            });
            layer_tasks[i].push(t);
        }
    }
    let results: Vec<(Vec<Perimeter>, Shapes)> = tasks
        .par_iter()
        .map(|&(i, j)| geometry_of(ctx, i, &vec![outlines[i].region[j].clone()]))
        .collect();
    let computed: Vec<Option<(Vec<Perimeter>, Shapes)>> = layer_tasks
        .iter()
        .enumerate()
        .map(|(i, ts)| {
            (key[i] == i).then(|| {
                let mut perimeters = Vec::new();
                let mut infill = Vec::new();
                for &t in ts {
                    perimeters.extend(results[t].0.iter().cloned());
                    infill.extend(results[t].1.iter().cloned());
                }
                (perimeters, infill)
            })
        })
        .collect();
    let mut out: Vec<LayerGeometry> = Vec::with_capacity(sliced.len());
    for (i, (outline, own)) in outlines.into_iter().zip(computed).enumerate() {
        let (perimeters, infill) = match own {
            Some(g) => g,
            None => {
                let k = &out[key[i]];
                let scale = if k.outline_length > 0.0 {
                    outline.length / k.outline_length
                } else {
                    1.0
                };
                let perimeters = k
                    .perimeters
                    .iter()
                    .map(|p| Perimeter {
                        length_mm: p.length_mm * scale,
                        ..p.clone()
                    })
                    .collect();
                (perimeters, k.infill.clone())
            }
        };
        out.push(LayerGeometry {
            region: outline.region,
            shape_sigs: outline.shape_keys.iter().map(|k| k.0).collect(),
            shape_bboxes: outline.shape_bboxes,
            outline_length: outline.length,
            perimeters,
            infill,
            signature: sliced[i].signature,
        });
    }
    out
}

/// Perimeter loops and infill area of one layer's region.
fn geometry_of(ctx: &Ctx, i: usize, region: &Shapes) -> (Vec<Perimeter>, Shapes) {
    let p = ctx.p;
    let (h, we, wp) = if i == 0 {
        (
            p.first_layer_height_mm,
            p.first_layer_width_mm,
            p.first_layer_width_mm,
        )
    } else {
        (
            p.layer_height_mm,
            p.external_perimeter_width_mm,
            p.perimeter_width_mm,
        )
    };
    let se = spacing(we, h);
    let sp = spacing(wp, h);
    let overlap = p.infill_overlap_pct / 100.0 * wp;
    if p.perimeters == 0 {
        return (Vec::new(), region.clone());
    }
    // Centre-line depth of each perimeter, and where the infill starts.
    let depths: Vec<f64> = (0..p.perimeters as usize)
        .map(|k| match k {
            0 => we / 2.0,
            _ => we / 2.0 + (se + sp) / 2.0 + (k - 1) as f64 * sp,
        })
        .collect();
    let last_depth = depths[depths.len() - 1];
    let infill_depth = last_depth + if depths.len() == 1 { se } else { sp } / 2.0 - overlap;

    // Each offset starts from the previous loops: small steps leave Clipper few self-intersections
    // to resolve, which is most of an offset's cost on detailed outlines.
    let external_shapes = geom::offset(region, -depths[0]);
    let external: Vec<Contour> = external_shapes.iter().flatten().cloned().collect();
    let mut perimeters: Vec<Perimeter> = external
        .iter()
        .map(|c| Perimeter {
            length_mm: geom::contour_length(c),
            contour: c.clone(),
            external: true,
        })
        .collect();
    if external.is_empty() {
        return (perimeters, Vec::new());
    }
    if depths.len() == 1 {
        return (
            perimeters,
            geom::offset(&external_shapes, -(infill_depth - depths[0])),
        );
    }
    // Inward offsets shrink each loop linearly in depth (by 2 tan(turn/2) per corner) until the
    // topology changes. When a deeper offset has as many loops as the external one and the length
    // they predict, nothing changed in between and the perimeters up to that depth follow exactly
    // from the external loops, without offsetting each of them.
    let shrink: Vec<f64> = external.iter().map(|c| miter_shrink_rate(c)).collect();
    let predicted_at = |depth: f64| -> f64 {
        external
            .iter()
            .zip(&shrink)
            .map(|(c, r)| geom::contour_length(c) - r * (depth - depths[0]))
            .sum()
    };
    let matches_prediction = |loops: &Shapes, depth: f64| -> bool {
        let count: usize = loops.iter().map(|s| s.len()).sum();
        let length = geom::boundary_length(loops);
        count > 0
            && count == external.len()
            && (predicted_at(depth) - length).abs() <= STABLE_LENGTH_TOLERANCE * length + 0.1
    };
    let predicted_perimeters = |perimeters: &mut Vec<Perimeter>, from: &[f64]| {
        for &d in from {
            for (c, r) in external.iter().zip(&shrink) {
                perimeters.push(Perimeter {
                    contour: c.clone(),
                    length_mm: (geom::contour_length(c) - r * (d - depths[0])).max(0.0),
                    external: false,
                });
            }
        }
    };
    // Thick islands: try the infill boundary first; if it is where predicted, all inner perimeters
    // follow (one offset instead of one per perimeter). Thin ones go innermost-first, as their
    // infill is usually empty.
    let ext_length = geom::boundary_length(&external_shapes);
    let mean_width = if ext_length > 0.0 {
        2.0 * geom::area(&external_shapes) / ext_length
    } else {
        0.0
    };
    let mut infill_first: Option<Shapes> = None;
    if mean_width > 4.0 * (infill_depth - depths[0]) {
        let infill = geom::offset(&external_shapes, -(infill_depth - depths[0]));
        if matches_prediction(&infill, infill_depth) {
            predicted_perimeters(&mut perimeters, &depths[1..]);
            return (perimeters, infill);
        }
        infill_first = Some(infill);
    }
    // Otherwise the innermost perimeter decides: if it does not fit, neither does infill.
    let innermost_shapes = geom::offset(&external_shapes, -(last_depth - depths[0]));
    let stable = matches_prediction(&innermost_shapes, last_depth);
    let mut all_fit = !innermost_shapes.is_empty();
    if stable {
        predicted_perimeters(&mut perimeters, &depths[1..depths.len() - 1]);
    } else {
        for &d in &depths[1..depths.len() - 1] {
            let loops = geom::offset(&external_shapes, -(d - depths[0]));
            if loops.is_empty() {
                all_fit = false;
                break;
            }
            for c in loops.into_iter().flatten() {
                perimeters.push(Perimeter {
                    length_mm: geom::contour_length(&c),
                    contour: c,
                    external: false,
                });
            }
        }
    }
    if all_fit {
        for c in innermost_shapes.iter().flatten() {
            perimeters.push(Perimeter {
                length_mm: geom::contour_length(c),
                contour: c.clone(),
                external: false,
            });
        }
    }
    // A perimeter that did not fit leaves no room for infill inside it.
    let infill = match (all_fit, infill_first) {
        (false, _) => Vec::new(),
        (true, Some(infill)) => infill,
        (true, None) => geom::offset(&innermost_shapes, -(infill_depth - last_depth)),
    };
    (perimeters, infill)
}

fn layer_height(p: &Profile, i: usize) -> f64 {
    if i == 0 {
        p.first_layer_height_mm
    } else {
        p.layer_height_mm
    }
}

/// Top surface (not covered by the layer above) and bottom surface (not supported by the layer
/// below) of each layer. The first layer is all bottom, the last all top.
#[derive(Default)]
struct Skins {
    top: Shapes,
    bottom: Shapes,
}

/// `a.region - b.region`, diffing only the islands of `a` that `b` does not have unchanged, against
/// only the islands of `b` near them.
fn exposed_part(a: &LayerGeometry, b: &LayerGeometry) -> Shapes {
    let changed: Shapes = a
        .region
        .iter()
        .zip(&a.shape_sigs)
        .filter(|(_, sig)| !b.shape_sigs.contains(sig))
        .map(|(s, _)| s.clone())
        .collect();
    if changed.is_empty() {
        return Vec::new();
    }
    let changed_boxes: Vec<[f64; 4]> = changed.iter().map(geom::shape_bbox).collect();
    let near: Shapes = b
        .region
        .iter()
        .zip(&b.shape_bboxes)
        .filter(|(_, bb)| changed_boxes.iter().any(|c| geom::bboxes_overlap(c, bb)))
        .map(|(s, _)| s.clone())
        .collect();
    geom::difference(&changed, &near)
}

fn skin_surfaces(ctx: &Ctx, layers: &[LayerGeometry]) -> Vec<Skins> {
    let last = layers.len().saturating_sub(1);
    // Slivers from walls that lean a little (or float noise) are narrower than half a line: no
    // slicer fills them, and keeping them would force booleans on every layer.
    let min_width = 0.5 * spacing(ctx.p.solid_infill_width_mm, ctx.p.layer_height_mm);
    let keep_wide = |shapes: Shapes| -> Shapes {
        shapes
            .into_iter()
            .filter(|s| {
                let boundary: f64 = s.iter().map(|c| geom::contour_length(c)).sum();
                boundary > 0.0 && 2.0 * geom::shape_area(s) / boundary >= min_width
            })
            .collect()
    };
    (0..layers.len())
        .into_par_iter()
        .map(|i| {
            let g = &layers[i];
            let top = if i == last {
                g.region.clone()
            } else if layers[i + 1].signature == g.signature {
                Vec::new()
            } else {
                keep_wide(exposed_part(g, &layers[i + 1]))
            };
            let bottom = if i == 0 {
                g.region.clone()
            } else if layers[i - 1].signature == g.signature {
                Vec::new()
            } else {
                keep_wide(exposed_part(g, &layers[i - 1]))
            };
            Skins { top, bottom }
        })
        .collect()
}

/// Time of `total_mm` of straight hatch lines of mean length `chord_mm`, joined by connectors of
/// `connector_mm` at right angles (zig-zag or anchors), at speed `v`.
fn hatch_time(ctx: &Ctx, total_mm: f64, chord_mm: f64, connector_mm: f64, v: f64) -> f64 {
    if total_mm <= 0.0 {
        return 0.0;
    }
    let a = ctx.p.print_acceleration_mm_s2;
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

fn extrusions_for_layer(
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
    let a = p.print_acceleration_mm_s2;
    let last = layers.len() - 1;

    // Perimeters: real loops, real corners.
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
            feature: Feature::Perimeters,
            path_mm: len,
            volume_mm3: len * bead_area(w, h),
            speed_mm_s: v,
            time_s,
        });
    }

    if g.infill.is_empty() {
        return;
    }
    // Solid where any of the next top_solid_layers layers (this one included) has a top surface, or
    // any of the previous bottom_solid_layers has a bottom surface: exactly "not covered by all of
    // the layers within reach", computed from the (usually empty) surfaces instead of intersecting
    // every neighbour.
    let up = p.top_solid_layers as usize;
    let down = p.bottom_solid_layers as usize;
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
    // Solid = infill near exposed pieces minus what stays sparse. Only the sparse part is computed
    // as shapes (its pieces decide sparse vs small-solid); the solid part is known by area, and its
    // top and bridge parts directly from the skins (which are inside the exposed pieces).
    let mut near: Shapes = Vec::new();
    let mut sparse: Shapes;
    let mut solid_area = 0.0;
    let mut solid_boundary = 0.0;
    if exposed.is_empty() {
        sparse = g.infill.clone();
    } else {
        // Overlapping exposed pieces need no union: under the non-zero rule a clip made of all of
        // them is their union. Infill islands away from every exposed piece are sparse as they are.
        let clip: Shapes = exposed.iter().flat_map(|e| e.iter().cloned()).collect();
        let clip_boxes: Vec<[f64; 4]> = clip.iter().map(geom::shape_bbox).collect();
        let far: Shapes;
        (near, far) = g.infill.iter().cloned().partition(|s| {
            let bb = geom::shape_bbox(s);
            clip_boxes.iter().any(|c| geom::bboxes_overlap(c, &bb))
        });
        let near_sparse = geom::difference(&near, &clip);
        let near_area = geom::area(&near);
        solid_area = (near_area - geom::area(&near_sparse)).max(0.0);
        if near_area > 0.0 {
            // Shares the near islands' boundary in proportion: the hatch chord of the solid part
            // is then that of the islands it lies in.
            let fraction = solid_area / near_area;
            solid_boundary = geom::boundary_length(&near) * fraction;
            for s in &near {
                work.infill_pieces_mm2.push(geom::shape_area(s) * fraction);
            }
        }
        sparse = far;
        sparse.extend(near_sparse);
    }
    let has_solid = solid_area > 0.0;
    // Top skin (nothing above) and bridges (nothing below) within the solid part.
    let top = if up == 0 || !has_solid || surfaces[i].top.is_empty() {
        Vec::new()
    } else {
        geom::intersection(&near, &surfaces[i].top)
    };
    let bridge = if first || down == 0 || !has_solid || surfaces[i].bottom.is_empty() {
        Vec::new()
    } else {
        geom::intersection(&near, &surfaces[i].bottom)
    };

    // Sparse pieces below the solid-infill threshold become solid.
    let mut sparse_area = 0.0;
    let mut sparse_boundary = 0.0;
    let mut small_solid_area = 0.0;
    let mut small_solid_boundary = 0.0;
    let mut sparse_pieces = 0u32;
    for s in &sparse {
        let ar = geom::shape_area(s);
        let bl: f64 = s.iter().map(|c| geom::contour_length(c)).sum();
        if ar < p.solid_infill_below_area_mm2 {
            small_solid_area += ar;
            small_solid_boundary += bl;
        } else {
            sparse_area += ar;
            sparse_boundary += bl;
            sparse_pieces += 1;
        }
        work.infill_pieces_mm2.push(ar);
    }
    let top_area = geom::area(&top).min(solid_area);
    let bridge_area = geom::area(&bridge).min((solid_area - top_area).max(0.0));
    let internal_solid_area = (solid_area - top_area - bridge_area).max(0.0) + small_solid_area;
    let solid_boundary = solid_boundary + small_solid_boundary;

    let first_speed = p.first_layer_speed_mm_s;
    // Solid-type fills: (area, width, speed, is bridge).
    let fills = [
        (
            internal_solid_area,
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
            top_area,
            p.top_infill_width_mm,
            p.top_solid_infill_speed_mm_s,
            false,
        ),
        (bridge_area, p.nozzle_diameter_mm, p.bridge_speed_mm_s, true),
    ];
    let total_solid = internal_solid_area + top_area + bridge_area;
    for (area, w, v, is_bridge) in fills {
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
        // Boundary shared out by area: each fill's chord follows the region's shape.
        let boundary = solid_boundary * area / total_solid.max(f64::MIN_POSITIVE);
        let chord = mean_chord(area, boundary, s);
        work.extrusions.push(Extrusion {
            feature: Feature::Solid,
            path_mm: path,
            volume_mm3: path * bead,
            speed_mm_s: v,
            time_s: hatch_time(ctx, path, chord, s, v),
        });
    }

    if sparse_area > 0.0 && p.infill_density_pct > 0.0 {
        let w = p.infill_width_mm;
        let s = spacing(w, h);
        let density = p.infill_density_pct / 100.0;
        let lines = sparse_area * density / s;
        let dirs = f64::from(p.infill_pattern.directions());
        // Lines of one direction are this far apart.
        let line_gap = s * dirs / density;
        let chord = mean_chord(sparse_area, sparse_boundary, s);
        let n_lines = lines / chord;
        let anchor = p.infill_anchor_mm.min(line_gap);
        let path = lines + n_lines * anchor;
        work.extrusions.push(Extrusion {
            feature: Feature::Infill,
            path_mm: path,
            volume_mm3: path * bead_area(w, h),
            speed_mm_s: p.infill_speed_mm_s,
            time_s: hatch_time(ctx, path, chord, anchor, p.infill_speed_mm_s),
        });
        // Lines of one direction are chained along the boundary (PrusaSlicer links neighbouring
        // line ends when the link is shorter than infill_anchor_max), so each piece is printed as
        // one chain per direction: a travel between directions.
        work.sparse_breaks += (dirs - 1.0) * f64::from(sparse_pieces);
        work.sparse_break_mm = line_gap.min(chord);
    }
}

fn travel_move(ctx: &Ctx, d: f64, work: &mut LayerWork) {
    let p = ctx.p;
    if d <= 0.0 {
        return;
    }
    let v = p.travel_speed_mm_s;
    let a = p.travel_acceleration_mm_s2;
    let safe = safe_speed(ctx.cornering, v);
    work.travel_time_s += move_time(d, safe, v, safe, a);
    work.travel_path_mm += d;
    work.travel_moves += 1;
    if d > p.retract_min_travel_mm && p.retract_length_mm > 0.0 {
        work.retractions += 1;
        let ar = p.retract_acceleration_mm_s2;
        work.travel_time_s += move_time(p.retract_length_mm, 0.0, p.retract_speed_mm_s, 0.0, ar)
            + move_time(p.retract_length_mm, 0.0, p.deretract_speed_mm_s, 0.0, ar);
    }
}

/// Travel on one layer: to each perimeter loop in nearest-first order (loops of one island are nested
/// and close, islands are far apart), to each infill piece, and between unanchored sparse lines.
fn travel_for_layer(
    ctx: &Ctx,
    g: &LayerGeometry,
    work_in: &LayerWork,
    position: &mut Pt,
    totals: &mut Totals,
) {
    let p = ctx.p;
    let mut work = LayerWork::default();
    let min_hop = spacing(p.perimeter_width_mm, p.layer_height_mm);
    let mut centres: Vec<Pt> = g
        .perimeters
        .iter()
        .map(|per| geom::contour_center(&per.contour))
        .collect();
    // Greedy nearest neighbour; bounded so pathological layers stay linear.
    const MAX_GREEDY: usize = 512;
    let mut here = *position;
    while !centres.is_empty() {
        let k = if centres.len() <= MAX_GREEDY {
            let mut best = 0;
            let mut bd = f64::INFINITY;
            for (j, c) in centres.iter().enumerate() {
                let d = ((c[0] - here[0]).powi(2) + (c[1] - here[1]).powi(2)).sqrt();
                if d < bd {
                    bd = d;
                    best = j;
                }
            }
            best
        } else {
            centres.len() - 1
        };
        let c = centres.swap_remove(k);
        let d = ((c[0] - here[0]).powi(2) + (c[1] - here[1]).powi(2))
            .sqrt()
            .max(min_hop);
        travel_move(ctx, d, &mut work);
        here = c;
    }
    for &a in &work_in.infill_pieces_mm2 {
        travel_move(ctx, (a.sqrt() / 2.0).max(min_hop), &mut work);
    }
    for &d in &work_in.extra_travels_mm {
        travel_move(ctx, d, &mut work);
    }
    let breaks = work_in.sparse_breaks.round() as u32;
    for _ in 0..breaks {
        travel_move(ctx, work_in.sparse_break_mm, &mut work);
    }
    *position = here;
    totals.travel_time_s += work.travel_time_s;
    totals.travel_path_mm += work.travel_path_mm;
    totals.travel_moves += work.travel_moves;
    totals.retractions += work.retractions;
    // The travel time is also part of this layer's time for the cooling rule.
    totals.layer_travel_s = work.travel_time_s;
}

/// Applies the minimum layer time (PrusaSlicer's cooling slow-down: extrusion feed rates are scaled
/// down, never below the minimum print speed, until the layer takes the minimum time) and books the
/// layer into the totals.
fn finish_layer(ctx: &Ctx, mut work: LayerWork, h: f64, totals: &mut Totals) {
    let p = ctx.p;
    let travel = totals.layer_travel_s + h / p.z_speed_mm_s;
    let extrude: f64 = work.extrusions.iter().map(|e| e.time_s).sum();
    let layer_time = travel + extrude;
    if p.min_layer_time_s > 0.0 && layer_time < p.min_layer_time_s && extrude > 0.0 {
        let slowed = |f: f64, e: &Extrusion| -> f64 {
            let v = e.speed_mm_s;
            let v_new = (v * f).max(p.min_print_speed_mm_s.min(v));
            e.time_s.max(e.path_mm / v_new)
        };
        let total_at = |f: f64| travel + work.extrusions.iter().map(|e| slowed(f, e)).sum::<f64>();
        // Bisection on the speed factor: total_at is monotone decreasing in f.
        let (mut lo, mut hi) = (0.0f64, 1.0f64);
        if total_at(1e-9) <= p.min_layer_time_s {
            // Even at the minimum print speed the layer is faster: slow down as far as allowed.
            hi = 1e-9;
        } else {
            for _ in 0..40 {
                let mid = 0.5 * (lo + hi);
                if total_at(mid) > p.min_layer_time_s {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
        }
        let f = hi;
        let mut added = 0.0;
        for e in &mut work.extrusions {
            let t = slowed(f, e);
            added += t - e.time_s;
            e.time_s = t;
        }
        if added > 0.0 {
            totals.cooling_slowdown_s += added;
            totals.slowed_layers += 1;
        }
    }
    for e in &work.extrusions {
        let acc = totals.acc(e.feature);
        acc.time_s += e.time_s;
        acc.path_mm += e.path_mm;
        acc.volume_mm3 += e.volume_mm3;
    }
}

/// Skirt loops around the first layer: the convex hull grown by the skirt distance (a Minkowski sum
/// adds 2 pi r to the hull's length).
fn skirt(ctx: &Ctx, g: &LayerGeometry, work: &mut LayerWork) {
    let p = ctx.p;
    if p.skirt_loops == 0 {
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
    let h = p.first_layer_height_mm;
    let w = p.first_layer_width_mm;
    let s = spacing(w, h);
    let v = p.first_layer_speed_mm_s;
    let safe = safe_speed(ctx.cornering, v);
    for k in 0..p.skirt_loops {
        let len = hull + 2.0 * PI * (p.skirt_distance_mm + w / 2.0 + f64::from(k) * s);
        work.extrusions.push(Extrusion {
            feature: Feature::Skirt,
            path_mm: len,
            volume_mm3: len * bead_area(w, h),
            speed_mm_s: v,
            time_s: move_time(len, safe, v, safe, p.print_acceleration_mm_s2),
        });
    }
    work.extra_travels_mm.push(p.skirt_distance_mm);
}

/// Down-facing surface that needs support and the volume of the columns under it (down to the bed).
struct Overhang {
    area_mm2: f64,
    column_volume_mm3: f64,
}

fn overhang_columns(triangles: &[[[f32; 3]; 3]], origin: [f64; 3], p: &Profile) -> Overhang {
    let cos_limit = p.support_threshold_deg.to_radians().cos();
    let mut area = 0.0;
    let mut volume = 0.0;
    for t in triangles {
        let t = slice::shifted(t, origin);
        let u = [t[1][0] - t[0][0], t[1][1] - t[0][1], t[1][2] - t[0][2]];
        let w = [t[2][0] - t[0][0], t[2][1] - t[0][1], t[2][2] - t[0][2]];
        let n = [
            u[1] * w[2] - u[2] * w[1],
            u[2] * w[0] - u[0] * w[2],
            u[0] * w[1] - u[1] * w[0],
        ];
        let len = (n[0] * n[0] + n[1] * n[1] + n[2] * n[2]).sqrt();
        if len <= 0.0 || n[2] >= 0.0 {
            continue;
        }
        // Slope from horizontal is acos(|nz|); flatter than the threshold means |nz| > cos(threshold).
        if -n[2] / len <= cos_limit {
            continue;
        }
        let zc = (t[0][2] + t[1][2] + t[2][2]) / 3.0;
        if zc < p.first_layer_height_mm {
            continue; // on the bed
        }
        let projected = 0.5 * -n[2];
        area += projected;
        volume += projected * zc;
    }
    Overhang {
        area_mm2: area,
        column_volume_mm3: volume,
    }
}

/// Support as rectilinear lines at the profile's spacing filling the columns under overhangs, with one
/// travel (and retraction) per support layer.
fn support(ctx: &Ctx, o: &Overhang, totals: &mut Totals) {
    let p = ctx.p;
    let h = p.layer_height_mm;
    let w = p.support_width_mm;
    let pitch = p.support_spacing_mm + spacing(w, h);
    let path = o.column_volume_mm3 / h / pitch;
    let mean_height = o.column_volume_mm3 / o.area_mm2;
    let support_layers = (mean_height / h).ceil().max(1.0);
    let chord = (o.area_mm2.sqrt()).max(pitch);
    let acc = &mut totals.support;
    acc.path_mm += path;
    acc.volume_mm3 += path * bead_area(w, h);
    acc.time_s += hatch_time(ctx, path, chord, pitch, p.support_speed_mm_s);
    let mut work = LayerWork::default();
    for _ in 0..(support_layers as u64).min(crate::MAX_LAYERS as u64) {
        travel_move(ctx, o.area_mm2.sqrt().max(pitch), &mut work);
    }
    totals.travel_time_s += work.travel_time_s;
    totals.travel_path_mm += work.travel_path_mm;
    totals.travel_moves += work.travel_moves;
    totals.retractions += work.retractions;
}
