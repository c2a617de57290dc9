/**
 * Reads the STL the designer dropped, to draw it and to show where the server's mesh report's
 * findings are: the report counts open and non-manifold edges and degenerate or flipped facets,
 * and this pass over the same bytes finds which ones, with the same rules (vertices welded
 * exactly, an edge used by one facet is open, by more than two non-manifold).
 */

export interface StlMesh {
  /** Three vertices (nine floats) per facet. */
  positions: Float32Array;
  /** The stored normal of each facet (three floats per facet). */
  normals: Float32Array;
  facets: number;
}

export interface MeshFindings {
  /** Segments (six floats each) of edges used by one facet only. */
  openEdges: Float32Array;
  /** Segments of edges used by more than two facets. */
  nonManifoldEdges: Float32Array;
  /** Facet indices with zero area (two equal vertices or collinear). */
  degenerate: number[];
  /** Facet indices whose stored normal points against their winding. */
  flipped: number[];
}

/** Binary when the length is exactly 84 + 50 n for the count at offset 80 (never the first word). */
export function parseStl(buf: ArrayBuffer): StlMesh {
  const view = new DataView(buf);
  if (buf.byteLength >= 84) {
    const n = view.getUint32(80, true);
    if (84 + 50 * n === buf.byteLength) {
      const positions = new Float32Array(n * 9);
      const normals = new Float32Array(n * 3);
      for (let i = 0; i < n; i++) {
        const o = 84 + 50 * i;
        for (let k = 0; k < 3; k++) normals[i * 3 + k] = view.getFloat32(o + 4 * k, true);
        for (let k = 0; k < 9; k++) positions[i * 9 + k] = view.getFloat32(o + 12 + 4 * k, true);
      }
      return { positions, normals, facets: n };
    }
  }
  const text = new TextDecoder().decode(buf);
  const pos: number[] = [];
  const nor: number[] = [];
  const re = /facet\s+normal\s+(\S+)\s+(\S+)\s+(\S+)|vertex\s+(\S+)\s+(\S+)\s+(\S+)/gi;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    if (m[1] !== undefined) nor.push(Number(m[1]), Number(m[2]), Number(m[3]));
    else pos.push(Number(m[4]), Number(m[5]), Number(m[6]));
  }
  const facets = Math.floor(pos.length / 9);
  return {
    positions: Float32Array.from(pos.slice(0, facets * 9)),
    normals: Float32Array.from(nor.slice(0, facets * 3)),
    facets,
  };
}

export function findings(mesh: StlMesh): MeshFindings {
  const p = mesh.positions;
  // Exact weld: a vertex is its three float bit patterns.
  const bits = new Uint32Array(p.buffer, p.byteOffset, p.length);
  const ids = new Map<string, number>();
  const vid = new Uint32Array(mesh.facets * 3);
  for (let v = 0; v < mesh.facets * 3; v++) {
    const key = `${bits[v * 3]},${bits[v * 3 + 1]},${bits[v * 3 + 2]}`;
    let id = ids.get(key);
    if (id === undefined) {
      id = ids.size;
      ids.set(key, id);
    }
    vid[v] = id;
  }
  const uses = new Map<number, { n: number; a: number; b: number }>();
  const degenerate: number[] = [];
  const flipped: number[] = [];
  const nv = ids.size;
  for (let f = 0; f < mesh.facets; f++) {
    const [a, b, c] = [vid[f * 3], vid[f * 3 + 1], vid[f * 3 + 2]];
    const o = f * 9;
    const ux = p[o + 3] - p[o], uy = p[o + 4] - p[o + 1], uz = p[o + 5] - p[o + 2];
    const wx = p[o + 6] - p[o], wy = p[o + 7] - p[o + 1], wz = p[o + 8] - p[o + 2];
    const cx = uy * wz - uz * wy, cy = uz * wx - ux * wz, cz = ux * wy - uy * wx;
    if (a === b || b === c || a === c || cx * cx + cy * cy + cz * cz === 0) {
      degenerate.push(f);
      continue;
    }
    const n = mesh.normals;
    const dot = n[f * 3] * cx + n[f * 3 + 1] * cy + n[f * 3 + 2] * cz;
    if (dot < 0) flipped.push(f);
    for (const [x, y, vx, vy] of [
      [a, b, f * 3, f * 3 + 1],
      [b, c, f * 3 + 1, f * 3 + 2],
      [c, a, f * 3 + 2, f * 3],
    ]) {
      const key = Math.min(x, y) * nv + Math.max(x, y);
      const e = uses.get(key);
      if (e) e.n++;
      else uses.set(key, { n: 1, a: vx, b: vy });
    }
  }
  const open: number[] = [];
  const nonManifold: number[] = [];
  for (const e of uses.values()) {
    if (e.n === 2) continue;
    const out = e.n === 1 ? open : nonManifold;
    out.push(p[e.a * 3], p[e.a * 3 + 1], p[e.a * 3 + 2], p[e.b * 3], p[e.b * 3 + 1], p[e.b * 3 + 2]);
  }
  return {
    openEdges: Float32Array.from(open),
    nonManifoldEdges: Float32Array.from(nonManifold),
    degenerate,
    flipped,
  };
}
