//! How `fab` prints API objects: a short human summary by default, JSON (`--json`) with the
//! proto's field names for scripts.

use fabrouter_api::v1 as pb;
use serde_json::{Value, json};

fn vec3(v: &Option<pb::Vec3>) -> Value {
    v.as_ref()
        .map(|v| json!([v.x, v.y, v.z]))
        .unwrap_or(Value::Null)
}

fn enum_name(s: &str, prefix: &str) -> String {
    s.strip_prefix(prefix).unwrap_or(s).to_ascii_lowercase()
}

pub fn verdict_word(v: i32) -> String {
    enum_name(
        pb::Verdict::try_from(v)
            .unwrap_or(pb::Verdict::Unspecified)
            .as_str_name(),
        "VERDICT_",
    )
}

pub fn report_json(r: &pb::MeshReport) -> Value {
    json!({
        "verdict": verdict_word(r.verdict),
        "triangles": r.triangles,
        "vertices": r.vertices,
        "bbox_min_mm": vec3(&r.bbox_min_mm),
        "bbox_max_mm": vec3(&r.bbox_max_mm),
        "extent_mm": vec3(&r.extent_mm),
        "surface_area_mm2": r.surface_area_mm2,
        "volume_mm3": r.volume_mm3,
        "shells": r.shells,
        "closed_shells": r.closed_shells,
        "open_edges": r.open_edges,
        "hole_loops": r.hole_loops,
        "non_manifold_edges": r.non_manifold_edges,
        "degenerate_facets": r.degenerate_facets,
        "unconnected_facets": r.unconnected_facets,
        "zero_normals": r.zero_normals,
        "flipped_normals": r.flipped_normals,
        "non_unit_normals": r.non_unit_normals,
        "unreadable_normals": r.unreadable_normals,
        "inconsistent_orientation_edges": r.inconsistent_orientation_edges,
        "inside_out_shells": r.inside_out_shells,
        "non_finite_facets": r.non_finite_facets,
        "likely_unit": enum_name(
            pb::LengthUnit::try_from(r.likely_unit).unwrap_or(pb::LengthUnit::Unspecified).as_str_name(),
            "LENGTH_UNIT_"),
        "likely_unit_reason": r.likely_unit_reason,
        "stl_format": r.stl_format,
        "solids": r.solids,
        "findings": r.findings.iter().map(|f| json!({
            "code": f.code,
            "severity": enum_name(pb::Severity::try_from(f.severity).unwrap_or(pb::Severity::Unspecified).as_str_name(), "SEVERITY_"),
            "message": f.message,
        })).collect::<Vec<_>>(),
    })
}

pub fn design_json(d: &pb::Design) -> Value {
    json!({
        "name": d.name,
        "file_name": d.file_name,
        "size_bytes": d.size_bytes,
        "sha256": d.sha256,
        "owner": d.owner,
        "create_time_unix_s": d.create_time.as_ref().map(|t| t.seconds),
        "repaired_from": d.repaired_from,
        "mesh_report": d.mesh_report.as_ref().map(report_json),
        "gcode_report": d.gcode_report.as_ref().map(gcode_json),
    })
}

pub fn gcode_json(g: &pb::GcodeReport) -> Value {
    json!({
        "lines": g.lines,
        "commands": g.commands,
        "generator": g.generator,
        "firmware_flavor": g.firmware_flavor,
        "nozzle_mm": g.nozzle_mm,
        "filament_type": g.filament_type,
        "print_min_mm": vec3(&g.print_min_mm),
        "print_max_mm": vec3(&g.print_max_mm),
        "layers": g.layers,
        "layer_height_mm": g.layer_height_mm,
        "max_hotend_c": g.max_hotend_c,
        "max_bed_c": g.max_bed_c,
        "extruded_mm": g.extruded_mm,
        "slicer_time_s": g.slicer_time_s,
        "slicer_filament_g": g.slicer_filament_g,
        "feedrate_time_s": g.feedrate_time_s,
        "findings": g.findings.iter().map(|f| json!({"code": f.code, "message": f.message})).collect::<Vec<_>>(),
    })
}

pub fn gcode_text(g: &pb::GcodeReport) -> String {
    let or = |s: &str| {
        if s.is_empty() {
            "not stated".to_string()
        } else {
            s.to_string()
        }
    };
    let (lo, hi) = (
        g.print_min_mm.unwrap_or_default(),
        g.print_max_mm.unwrap_or_default(),
    );
    let mut s = format!(
        "G-code:     {} commands, {} layers, by {}, flavour {}\n",
        g.commands,
        g.layers,
        or(&g.generator),
        or(&g.firmware_flavor)
    );
    s.push_str(&format!(
        "prints in:  X {:.1}..{:.1}, Y {:.1}..{:.1}, Z up to {:.2} mm\n",
        lo.x, hi.x, lo.y, hi.y, hi.z
    ));
    s.push_str(&format!(
        "needs:      hot end {:.0} °C, bed {:.0} °C, nozzle {}, {}\n",
        g.max_hotend_c,
        g.max_bed_c,
        if g.nozzle_mm > 0.0 {
            format!("{} mm", g.nozzle_mm)
        } else {
            "not stated".into()
        },
        or(&g.filament_type)
    ));
    if g.slicer_time_s > 0.0 {
        s.push_str(&format!(
            "slicer says: {:.0} s, {:.1} g\n",
            g.slicer_time_s, g.slicer_filament_g
        ));
    }
    for f in &g.findings {
        s.push_str(&format!("  [warning] {}\n", f.message));
    }
    s
}

pub fn report_text(r: &pb::MeshReport) -> String {
    let mut s = String::new();
    let e = r.extent_mm.unwrap_or_default();
    s.push_str(&format!(
        "verdict:    {}\n",
        verdict_word(r.verdict).replace('_', " ")
    ));
    s.push_str(&format!(
        "triangles:  {} ({} vertices, {} {}, {} solid(s))\n",
        r.triangles, r.vertices, r.stl_format, "STL", r.solids
    ));
    s.push_str(&format!(
        "size:       {:.2} x {:.2} x {:.2} mm ({})\n",
        e.x, e.y, e.z, r.likely_unit_reason
    ));
    s.push_str(&format!(
        "volume:     {:.3} mm3, surface {:.2} mm2\n",
        r.volume_mm3, r.surface_area_mm2
    ));
    s.push_str(&format!(
        "shells:     {} ({} closed)\n",
        r.shells, r.closed_shells
    ));
    s.push_str(&format!(
        "edges:      {} open in {} hole(s), {} non-manifold, {} inconsistently oriented\n",
        r.open_edges, r.hole_loops, r.non_manifold_edges, r.inconsistent_orientation_edges
    ));
    s.push_str(&format!(
        "facets:     {} degenerate, {} unconnected, {} non-finite\n",
        r.degenerate_facets, r.unconnected_facets, r.non_finite_facets
    ));
    s.push_str(&format!(
        "normals:    {} zero, {} against the winding, {} non-unit, {} unreadable\n",
        r.zero_normals, r.flipped_normals, r.non_unit_normals, r.unreadable_normals
    ));
    for f in &r.findings {
        let sev = enum_name(
            pb::Severity::try_from(f.severity)
                .unwrap_or(pb::Severity::Unspecified)
                .as_str_name(),
            "SEVERITY_",
        );
        s.push_str(&format!("  [{sev}] {}\n", f.message));
    }
    s
}

pub fn design_line(d: &pb::Design) -> String {
    let verdict = d
        .mesh_report
        .as_ref()
        .map(|r| verdict_word(r.verdict))
        .unwrap_or_default();
    format!(
        "{}  {}  {} bytes  {}{}",
        d.name,
        d.file_name,
        d.size_bytes,
        verdict,
        if d.repaired_from.is_empty() {
            String::new()
        } else {
            format!("  (repaired from {})", d.repaired_from)
        }
    )
}
