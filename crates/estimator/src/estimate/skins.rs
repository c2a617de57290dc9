//! Skins: each layer's top surface (nothing above it) and bottom surface (nothing below it). They
//! decide where infill has to be solid, and only changed islands are diffed so prismatic layers cost
//! nothing.

use rayon::prelude::*;

use super::Ctx;
use super::flow::spacing;
use super::layers::LayerGeometry;
use crate::geom::{self, Shapes};

/// Top surface (not covered by the layer above) and bottom surface (not supported by the layer
/// below) of each layer. The first layer is all bottom, the last all top.
#[derive(Default)]
pub(super) struct Skins {
    pub(super) top: Shapes,
    pub(super) bottom: Shapes,
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

pub(super) fn skin_surfaces(ctx: &Ctx, layers: &[LayerGeometry]) -> Vec<Skins> {
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

#[cfg(test)]
mod tests {
    use super::super::testutil::{profile, square};
    use super::*;

    fn layer(region: Shapes) -> LayerGeometry {
        LayerGeometry {
            shape_sigs: region.iter().map(geom::shape_signature).collect(),
            shape_bboxes: region.iter().map(geom::shape_bbox).collect(),
            signature: geom::shape_signature(&region[0]),
            region,
            ..LayerGeometry::default()
        }
    }

    #[test]
    fn a_step_exposes_the_ring_around_the_smaller_layer_on_top() {
        let p = profile();
        let ctx = Ctx {
            p: &p,
            cornering: p.cornering,
        };
        let big = || layer(square(0.0, 0.0, 20.0));
        let layers = [big(), big(), layer(square(5.0, 5.0, 10.0))];
        let skins = skin_surfaces(&ctx, &layers);
        // First layer is all bottom, last all top.
        assert!((geom::area(&skins[0].bottom) - 400.0).abs() < 1e-6);
        assert!((geom::area(&skins[2].top) - 100.0).abs() < 1e-6);
        // Equal neighbours expose nothing; the step exposes the ring on the middle layer.
        assert!(skins[0].top.is_empty() && skins[1].bottom.is_empty());
        assert!((geom::area(&skins[1].top) - 300.0).abs() < 1e-6);
        assert!(skins[2].bottom.is_empty());
    }
}
