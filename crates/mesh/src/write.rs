//! Binary STL output (via `stl_io`), used to store repaired meshes in the compact format.

use stl_io::{Normal, Triangle, Vertex};

use crate::Mesh;

/// Encodes a mesh as binary STL with the mesh's stored normals.
pub fn to_binary_stl(mesh: &Mesh) -> Vec<u8> {
    let triangles = mesh.triangles.iter().enumerate().map(|(f, t)| Triangle {
        // A hand-built mesh may lack normals; a missing one is written as zero.
        normal: Normal::new(mesh.normals.get(f).copied().unwrap_or([0.0; 3])),
        vertices: t.map(Vertex::new),
    });
    let mut out = Vec::with_capacity(84 + 50 * mesh.triangles.len());
    // Writing into a Vec cannot fail; the Result only exists for real I/O.
    if stl_io::write_stl(&mut out, triangles).is_err() {
        out.clear();
    }
    out
}
