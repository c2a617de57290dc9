//! Preparation: refuses meshes that cannot be estimated (non-finite, flat, too big, too many
//! layers, too broken), drops the model onto the bed and slices it at every layer's mid-height,
//! so later stages only ever see closed outlines of a printable model.

use crate::geom;
use crate::profile::Profile;
use crate::slice::{self, LayerLoops};
use crate::{EstimateError, MAX_LAYERS};

/// A few dropped pieces (a stray facet) do not make a mesh too broken, whatever the ratio.
const MIN_DROPPED_FOR_BROKEN: u32 = 10;

/// A mesh checked, dropped onto the bed and sliced.
pub(super) struct Prepared {
    /// Subtracted from every vertex: centres the model on the origin, on the bed.
    pub(super) origin: [f64; 3],
    pub(super) extent: [f64; 3],
    /// Top of each layer above the bed.
    pub(super) tops: Vec<f64>,
    /// Height at which each layer was sliced.
    pub(super) planes: Vec<f64>,
    pub(super) sliced: Vec<LayerLoops>,
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
/// [`estimate`](super::estimate).
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

pub(super) fn prepare(triangles: &[[[f32; 3]; 3]], p: &Profile) -> Result<Prepared, EstimateError> {
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

/// Open outline chains over all layers, and the warnings they (and layers without any closed
/// outline) deserve.
pub(super) fn slicing_warnings(sliced: &[LayerLoops]) -> (u32, Vec<String>) {
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
    (unclosed, warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A closed box from (0, 0, 0) to `size`, as 12 triangles.
    fn block(size: [f32; 3]) -> Vec<[[f32; 3]; 3]> {
        let v = |x: f32, y: f32, z: f32| [x * size[0], y * size[1], z * size[2]];
        let quads = [
            [v(0., 0., 0.), v(0., 1., 0.), v(1., 1., 0.), v(1., 0., 0.)],
            [v(0., 0., 1.), v(1., 0., 1.), v(1., 1., 1.), v(0., 1., 1.)],
            [v(0., 0., 0.), v(1., 0., 0.), v(1., 0., 1.), v(0., 0., 1.)],
            [v(1., 0., 0.), v(1., 1., 0.), v(1., 1., 1.), v(1., 0., 1.)],
            [v(1., 1., 0.), v(0., 1., 0.), v(0., 1., 1.), v(1., 1., 1.)],
            [v(0., 1., 0.), v(0., 0., 0.), v(0., 0., 1.), v(0., 1., 1.)],
        ];
        quads
            .iter()
            .flat_map(|q| [[q[0], q[1], q[2]], [q[0], q[2], q[3]]])
            .collect()
    }

    #[test]
    fn block_is_centred_on_the_bed_and_sliced_through_each_layers_middle() {
        let p = Profile::builtin("prusaslicer-b").expect("built-in");
        let prepared = prepare(&block([10.0, 20.0, 2.0]), &p).expect("prints");
        assert_eq!(prepared.origin, [5.0, 10.0, 0.0]);
        assert_eq!(prepared.tops.len(), 10);
        for (top, plane) in prepared.tops.iter().zip(&prepared.planes) {
            assert!((top - plane - p.layer_height_mm / 2.0).abs() < 1e-9);
        }
        let region = geom::region_from_loops(&prepared.sliced[3].loops);
        assert!((geom::area(&region) - 200.0).abs() < 1e-3);
    }

    #[test]
    fn refusals_say_what_is_wrong() {
        let p = Profile::builtin("prusaslicer-b").expect("built-in");
        assert!(matches!(
            prepare(&block([300.0, 10.0, 10.0]), &p),
            Err(EstimateError::DoesNotFit { .. })
        ));
        // A model in metres: a few hundredths of a millimetre tall.
        match prepare(&block([0.02, 0.02, 0.02]), &p) {
            Err(EstimateError::NoLayers { hint, .. }) => assert!(hint.contains("metres"), "{hint}"),
            other => panic!("{:?}", other.map(|_| ())),
        }
    }
}
