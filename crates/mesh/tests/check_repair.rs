//! Check and repair on small meshes built in the test, one defect at a time, so each figure
//! is known exactly.

use fabrouter_mesh::{
    LengthUnit, Mesh, MeshReport, Severity, StlFormat, Verdict, check, parse_stl, repair,
    to_binary_stl,
};

type Tri = [[f32; 3]; 3];

/// An axis-aligned cube wound outwards (counter-clockwise seen from outside).
fn cube(min: [f32; 3], size: f32) -> Vec<Tri> {
    let p = |x: usize, y: usize, z: usize| {
        [
            min[0] + size * x as f32,
            min[1] + size * y as f32,
            min[2] + size * z as f32,
        ]
    };
    let quads = [
        [p(0, 0, 0), p(0, 1, 0), p(1, 1, 0), p(1, 0, 0)], // bottom, -z
        [p(0, 0, 1), p(1, 0, 1), p(1, 1, 1), p(0, 1, 1)], // top, +z
        [p(0, 0, 0), p(1, 0, 0), p(1, 0, 1), p(0, 0, 1)], // front, -y
        [p(0, 1, 0), p(0, 1, 1), p(1, 1, 1), p(1, 1, 0)], // back, +y
        [p(0, 0, 0), p(0, 0, 1), p(0, 1, 1), p(0, 1, 0)], // left, -x
        [p(1, 0, 0), p(1, 1, 0), p(1, 1, 1), p(1, 0, 1)], // right, +x
    ];
    quads
        .iter()
        .flat_map(|q| [[q[0], q[1], q[2]], [q[0], q[2], q[3]]])
        .collect()
}

fn normal_of(t: &Tri) -> [f32; 3] {
    let u = [t[1][0] - t[0][0], t[1][1] - t[0][1], t[1][2] - t[0][2]];
    let v = [t[2][0] - t[0][0], t[2][1] - t[0][1], t[2][2] - t[0][2]];
    let n = [
        u[1] * v[2] - u[2] * v[1],
        u[2] * v[0] - u[0] * v[2],
        u[0] * v[1] - u[1] * v[0],
    ];
    let len = (n[0] * n[0] + n[1] * n[1] + n[2] * n[2]).sqrt();
    if len > 0.0 {
        n.map(|c| c / len)
    } else {
        [0.0; 3]
    }
}

/// A mesh with correct stored normals.
fn mesh(triangles: Vec<Tri>) -> Mesh {
    let normals = triangles.iter().map(normal_of).collect();
    Mesh {
        triangles,
        normals,
        format: StlFormat::Binary,
        header: String::new(),
        solids: 1,
    }
}

fn flip(t: Tri) -> Tri {
    [t[0], t[2], t[1]]
}

fn codes(r: &MeshReport) -> Vec<&str> {
    r.findings.iter().map(|f| f.code.as_str()).collect()
}

#[test]
fn clean_cube_is_printable_with_exact_figures() {
    let r = check(&mesh(cube([0.0; 3], 20.0)));
    assert_eq!(r.triangles, 12);
    assert_eq!(r.vertices, 8);
    assert_eq!(r.signed_volume_mm3, 8000.0);
    assert_eq!(r.surface_area_mm2, 2400.0);
    assert_eq!((r.shells, r.closed_shells), (1, 1));
    assert_eq!(
        r.boundary_edges + r.non_manifold_edges + r.inconsistent_edges,
        0
    );
    assert_eq!(r.bounding_box.unwrap().extent, [20.0; 3]);
    assert_eq!(r.unit.unit, LengthUnit::Millimetre);
    assert_eq!(r.verdict, Verdict::Printable);
    assert!(r.findings.is_empty(), "{:?}", r.findings);
}

#[test]
fn inside_out_cube_is_found_and_flipped() {
    let m = mesh(cube([0.0; 3], 10.0).into_iter().map(flip).collect());
    let r = check(&m);
    assert_eq!(r.inside_out_shells, 1);
    assert_eq!(r.signed_volume_mm3, -1000.0);
    assert_eq!(r.inconsistent_edges, 0);
    assert_eq!(r.verdict, Verdict::NotPrintable);
    assert!(codes(&r).contains(&"inside_out_shells"));
    let (fixed, rep) = repair(&m);
    assert_eq!(rep.facets_reversed, 12);
    assert_eq!(rep.shells_flipped, 1);
    // Stored normals were right for the flipped winding, so all of them change.
    assert_eq!(rep.normals_fixed, 12);
    let r = check(&fixed);
    assert_eq!(r.signed_volume_mm3, 1000.0);
    assert_eq!(r.verdict, Verdict::Printable);
}

#[test]
fn cavity_is_not_inside_out() {
    let mut t = cube([0.0; 3], 10.0);
    t.extend(cube([3.0; 3], 3.0).into_iter().map(flip));
    let m = mesh(t);
    let r = check(&m);
    assert_eq!(r.shells, 2);
    assert_eq!(r.closed_shells, 2);
    assert_eq!(r.inside_out_shells, 0);
    assert_eq!(r.signed_volume_mm3, 1000.0 - 27.0);
    assert_eq!(r.verdict, Verdict::Printable);
    let (_, rep) = repair(&m);
    assert_eq!(rep.facets_reversed, 0);
    assert_eq!(rep.shells_flipped, 0);
}

#[test]
fn one_flipped_facet_is_inconsistent_and_repaired() {
    let mut t = cube([0.0; 3], 10.0);
    t[5] = flip(t[5]);
    let m = mesh(t);
    let r = check(&m);
    assert_eq!(r.inconsistent_edges, 3);
    // The stored normal was computed from the flipped winding, so it agrees with it.
    assert_eq!(r.opposing_normals, 0);
    assert_eq!(r.verdict, Verdict::NotPrintable);
    let (fixed, rep) = repair(&m);
    assert_eq!(rep.facets_reversed, 1);
    assert_eq!(rep.normals_fixed, 1);
    let r = check(&fixed);
    assert_eq!(r.inconsistent_edges, 0);
    assert_eq!(r.signed_volume_mm3, 1000.0);
}

#[test]
fn holes_are_counted_and_filled() {
    // One missing triangle: 3 open edges, 1 hole.
    let mut t = cube([0.0; 3], 10.0);
    t.remove(0);
    let r = check(&mesh(t.clone()));
    assert_eq!((r.boundary_edges, r.holes), (3, 1));
    assert_eq!(r.open_edge_facets.one, 3);
    assert_eq!(r.closed_shells, 0);
    let open = r.findings.iter().find(|f| f.code == "open_edges").unwrap();
    assert_eq!(open.severity, Severity::Error);
    assert_eq!(
        open.message,
        "3 open edges in 1 hole: the surface is not closed; run repair or fix in your CAD"
    );
    // A whole missing face: a square hole of 4 edges needs 2 triangles.
    t.remove(0);
    let m = mesh(t);
    let r = check(&m);
    assert_eq!((r.boundary_edges, r.holes), (4, 1));
    let (fixed, rep) = repair(&m);
    assert_eq!((rep.holes_filled, rep.facets_added), (1, 2));
    let r = check(&fixed);
    assert_eq!(r.boundary_edges, 0);
    assert_eq!(r.signed_volume_mm3, 1000.0);
    assert_eq!(r.verdict, Verdict::Printable);
}

#[test]
fn cubes_sharing_an_edge_are_non_manifold() {
    let mut t = cube([0.0; 3], 10.0);
    t.extend(cube([10.0, 10.0, 0.0], 10.0));
    let r = check(&mesh(t));
    assert_eq!(r.non_manifold_edges, 1);
    assert_eq!(r.boundary_edges, 0);
    assert_eq!(r.shells, 1);
    assert_eq!(r.verdict, Verdict::NotPrintable);
    assert!(codes(&r).contains(&"non_manifold_edges"));
}

#[test]
fn stray_degenerate_and_non_finite_facets() {
    let mut t = cube([0.0; 3], 10.0);
    t.push([[50.0, 0.0, 0.0], [51.0, 0.0, 0.0], [50.0, 1.0, 0.0]]); // stray
    t.push([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [10.0, 0.0, 0.0]]); // repeated vertex
    let m = mesh(t);
    let r = check(&m);
    assert_eq!(r.unconnected_facets, 1);
    assert_eq!(r.degenerate_facets, 1);
    assert_eq!(r.shells, 2);
    let (fixed, rep) = repair(&m);
    assert_eq!(rep.unconnected_removed, 1);
    assert_eq!(rep.degenerate_removed, 1);
    assert_eq!(fixed.triangles.len(), 12);
    assert_eq!(check(&fixed).verdict, Verdict::Printable);

    // A NaN coordinate is read and reported, not an error, and kept out of the figures.
    let mut t = cube([0.0; 3], 10.0);
    t[3][1] = [f32::NAN, 10.0, 0.0];
    let m = mesh(t);
    let r = check(&m);
    assert_eq!(r.non_finite_facets, 1);
    assert!(r.surface_area_mm2.is_finite() && r.signed_volume_mm3.is_finite());
    assert_eq!(r.bounding_box.unwrap().extent, [10.0; 3]);
    assert_eq!(r.verdict, Verdict::NotPrintable);
    assert!(codes(&r).contains(&"non_finite_coordinates"));
    let (fixed, rep) = repair(&m);
    assert_eq!(rep.non_finite_removed, 1);
    assert_eq!(rep.facets_added, 1);
    assert_eq!(check(&fixed).signed_volume_mm3, 1000.0);
}

#[test]
fn stored_normals_are_classified() {
    let mut m = mesh(cube([0.0; 3], 10.0));
    m.normals[0] = [0.0; 3];
    m.normals[1] = m.normals[1].map(|c| -c);
    m.normals[2] = m.normals[2].map(|c| c * 2.0);
    m.normals[3] = [f32::NAN, 0.0, 1.0];
    let r = check(&m);
    assert_eq!(
        (
            r.zero_normals,
            r.opposing_normals,
            r.non_unit_normals,
            r.unreadable_normals
        ),
        (1, 1, 1, 1)
    );
    // Only the opposing normal is worth a warning: slicers recompute normals.
    assert_eq!(r.verdict, Verdict::PrintableWithWarnings);
    let (fixed, rep) = repair(&m);
    assert_eq!(rep.normals_fixed, 4);
    let r = check(&fixed);
    assert_eq!(r.zero_normals + r.opposing_normals + r.non_unit_normals, 0);
}

#[test]
fn likely_unit_follows_the_extent() {
    let unit = |size: f32| check(&mesh(cube([0.0; 3], size))).unit;
    assert_eq!(unit(0.05).unit, LengthUnit::Metre);
    assert_eq!(unit(1.5).unit, LengthUnit::Inch);
    assert_eq!(unit(100.0 / 25.4).unit, LengthUnit::Inch);
    assert_eq!(unit(20.0).unit, LengthUnit::Millimetre);
    assert_eq!(unit(4.0).unit, LengthUnit::Millimetre);
    let metre = unit(0.05);
    assert!(metre.reason.contains("50 mm"), "{}", metre.reason);
}

#[test]
fn report_serialises_to_json_and_back() {
    let r = check(&mesh(cube([0.0; 3], 20.0)));
    let text = serde_json::to_string(&r).unwrap();
    assert!(text.contains("\"verdict\":\"printable\""), "{text}");
    let back: MeshReport = serde_json::from_str(&text).unwrap();
    assert_eq!(back, r);
}

#[test]
fn binary_output_reads_back_identically() {
    let m = mesh(cube([-1.5, 2.0, 0.25], 3.0));
    let bytes = to_binary_stl(&m);
    let back = parse_stl(&bytes, &Default::default()).unwrap();
    assert_eq!(back.triangles, m.triangles);
    assert_eq!(back.normals, m.normals);
}

/// A mesh large enough for the parallel check, with every kind of defect spread through it,
/// gives the same report checked from its binary STL bytes as from the parsed mesh.
#[test]
fn check_stl_from_bytes_equals_check_of_the_mesh_when_parallel() {
    let mut triangles = Vec::new();
    for i in 0..12_000 {
        let mut c = cube([(i % 100) as f32 * 2.0, (i / 100) as f32 * 2.0, 0.0], 1.0);
        match i % 7 {
            1 => c[3] = flip(c[3]),                     // inconsistent edges
            2 => drop(c.pop()),                         // a hole
            3 => c = c.into_iter().map(flip).collect(), // inside out
            4 => c.push(c[0]),                          // non-manifold
            _ => {}
        }
        triangles.extend(c);
    }
    triangles[5000][1] = triangles[5000][0]; // degenerate
    triangles[9000][2][1] = f32::NAN; // non-finite
    // Interleave, so shells and edges cross the blocks the check splits the work into.
    let n = triangles.len();
    for i in 0..n {
        triangles.swap(i, (i * 7919 + 13) % n);
    }
    let mut m = mesh(triangles);
    m.normals[17] = [0.0; 3];
    m.normals[18] = m.normals[18].map(|c| -c);
    let bytes = to_binary_stl(&m);
    let parsed = parse_stl(&bytes, &fabrouter_mesh::Limits::default()).unwrap();
    let from_bytes = fabrouter_mesh::check_stl(&bytes, &fabrouter_mesh::Limits::default()).unwrap();
    let report = check(&parsed);
    assert!(report.triangles > 100_000);
    assert!(report.boundary_edges > 0 && report.non_manifold_edges > 0);
    assert!(report.inconsistent_edges > 0 && report.non_finite_facets == 1);
    assert_eq!(from_bytes.report, report);
    assert_eq!(from_bytes.format, StlFormat::Binary);
}
