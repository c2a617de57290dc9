//! Per-layer geometry: each layer's region, perimeters and infill area. Work is shared wherever
//! the result is the same (repeated outlines, islands seen before, near-identical layers), which is
//! what keeps tall prismatic and gently varying models fast.

use rayon::prelude::*;
use rustc_hash::FxHashMap;

use super::Ctx;
use super::perimeters::{Perimeter, perimeters_and_infill};
use crate::geom::{self, Shapes};
use crate::slice::LayerLoops;

/// Geometry of one layer that neighbours need, computed once per distinct outline.
#[derive(Clone, Default)]
pub(super) struct LayerGeometry {
    pub(super) region: Shapes,
    /// Per island of `region`: signature and bounds.
    pub(super) shape_sigs: Vec<u64>,
    pub(super) shape_bboxes: Vec<[f64; 4]>,
    pub(super) outline_length: f64,
    pub(super) perimeters: Vec<Perimeter>,
    /// Area left for infill inside the innermost perimeter (including the infill overlap).
    pub(super) infill: Shapes,
    pub(super) signature: u64,
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
pub(super) fn layer_geometry(ctx: &Ctx, sliced: &[LayerLoops]) -> Vec<LayerGeometry> {
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
        .map(|&(i, j)| perimeters_and_infill(ctx, i, &vec![outlines[i].region[j].clone()]))
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
