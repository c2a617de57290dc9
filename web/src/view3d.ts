/**
 * The 3D view of a design: the model standing on the chosen printer's bed (centred, its lowest
 * point on the plate), with the findings drawn over it: open edges red, non-manifold edges
 * magenta, flipped facets orange, degenerate facets yellow. Imports only the parts of three.js
 * it uses, so the bundle stays small.
 */
import {
  AmbientLight,
  BoxGeometry,
  BufferAttribute,
  BufferGeometry,
  Color,
  DirectionalLight,
  DoubleSide,
  EdgesGeometry,
  GridHelper,
  Group,
  LineBasicMaterial,
  LineSegments,
  Mesh,
  MeshBasicMaterial,
  MeshStandardMaterial,
  PerspectiveCamera,
  Scene,
  WebGLRenderer,
} from "three";
import { OrbitControls } from "three/examples/jsm/controls/OrbitControls.js";
import type { MeshFindings, StlMesh } from "./stl";

export interface Bed {
  x: number;
  y: number;
  z: number;
  label: string;
}

export class ModelView {
  private renderer: WebGLRenderer;
  private scene = new Scene();
  private camera = new PerspectiveCamera(40, 1, 0.1, 20000);
  private controls: OrbitControls;
  private model = new Group();
  private bed = new Group();
  private observer: ResizeObserver;

  constructor(private canvas: HTMLCanvasElement) {
    // preserveDrawingBuffer: screenshots and pixel checks see the drawn frame.
    this.renderer = new WebGLRenderer({ canvas, antialias: true, preserveDrawingBuffer: true });
    this.renderer.setPixelRatio(Math.min(devicePixelRatio, 2));
    this.scene.background = new Color(0xf4f6f8);
    this.scene.add(new AmbientLight(0xffffff, 1.2));
    const sun = new DirectionalLight(0xffffff, 2.0);
    sun.position.set(1, -1.5, 2);
    this.scene.add(sun);
    this.scene.add(this.model, this.bed);
    this.camera.up.set(0, 0, 1);
    this.controls = new OrbitControls(this.camera, canvas);
    this.controls.addEventListener("change", () => this.render());
    this.observer = new ResizeObserver(() => this.resize());
    this.observer.observe(canvas);
    this.resize();
  }

  private resize(): void {
    const w = this.canvas.clientWidth || 300;
    const h = this.canvas.clientHeight || 300;
    this.renderer.setSize(w, h, false);
    this.camera.aspect = w / h;
    this.camera.updateProjectionMatrix();
    this.render();
  }

  render(): void {
    this.renderer.render(this.scene, this.camera);
  }

  private framing: { part: [number, number, number, number]; bed: Bed } | null = null;

  /** Looks at the part up close (`part`) or at the whole bed with the part on it. */
  frame(what: "part" | "bed"): void {
    if (!this.framing) return;
    const [cx, cy, cz, size] = this.framing.part;
    const b = this.framing.bed;
    if (what === "part") {
      // Close enough that a small part's findings can be seen; the bed shows around it.
      const d = Math.max(size * 2.2, 30);
      this.controls.target.set(cx, cy, cz);
      this.camera.position.set(cx + d * 0.6, cy - d * 1.0, cz + d * 0.75);
    } else {
      const reach = Math.max(b.x, b.y, b.z);
      this.controls.target.set(b.x / 2, b.y / 2, 0);
      this.camera.position.set(b.x / 2 + reach * 0.6, b.y / 2 - reach * 1.1, reach * 0.8);
    }
    this.controls.update();
    this.render();
  }

  /** Shows `mesh` on `bed` (or on a bed just larger than the part when no printer is chosen). */
  show(mesh: StlMesh, f: MeshFindings | null, bed: Bed | null): void {
    this.model.clear();
    this.bed.clear();
    const geo = new BufferGeometry();
    geo.setAttribute("position", new BufferAttribute(mesh.positions, 3));
    geo.computeVertexNormals();
    geo.computeBoundingBox();
    const box = geo.boundingBox!;
    const size = [box.max.x - box.min.x, box.max.y - box.min.y, box.max.z - box.min.z];
    // Centre on the bed, lowest point on the plate.
    const b = bed ?? { x: size[0] * 1.5 + 10, y: size[1] * 1.5 + 10, z: size[2] * 1.5, label: "" };
    const shift = [
      b.x / 2 - (box.min.x + box.max.x) / 2,
      b.y / 2 - (box.min.y + box.max.y) / 2,
      -box.min.z,
    ];
    const colours = new Float32Array(mesh.facets * 9).fill(0.62);
    for (let i = 0; i < mesh.facets * 3; i++) colours.set([0.36, 0.56, 0.85], i * 3);
    const paint = (facets: number[], c: [number, number, number]) => {
      for (const fi of facets) for (let k = 0; k < 3; k++) colours.set(c, (fi * 3 + k) * 3);
    };
    if (f) {
      paint(f.flipped, [1.0, 0.55, 0.1]);
      paint(f.degenerate, [0.95, 0.85, 0.1]);
    }
    geo.setAttribute("color", new BufferAttribute(colours, 3));
    const solid = new Mesh(
      geo,
      new MeshStandardMaterial({ vertexColors: true, side: DoubleSide, roughness: 0.7 }),
    );
    this.model.add(solid);
    if (f) {
      for (const [segs, colour] of [
        [f.openEdges, 0xd00000],
        [f.nonManifoldEdges, 0xc000c0],
      ] as const) {
        if (!segs.length) continue;
        const lg = new BufferGeometry();
        lg.setAttribute("position", new BufferAttribute(segs, 3));
        this.model.add(new LineSegments(lg, new LineBasicMaterial({ color: colour })));
      }
    }
    this.model.position.set(shift[0], shift[1], shift[2]);
    // The bed: a plate with a 10 mm grid, and the build volume as a wire box.
    const plate = new Mesh(
      new BoxGeometry(b.x, b.y, 0.8),
      new MeshBasicMaterial({ color: 0x2b2f36 }),
    );
    plate.position.set(b.x / 2, b.y / 2, -0.41);
    this.bed.add(plate);
    const grid = new GridHelper(Math.max(b.x, b.y), Math.round(Math.max(b.x, b.y) / 10), 0x7a8290, 0x4a505a);
    grid.rotation.x = Math.PI / 2;
    grid.position.set(b.x / 2, b.y / 2, 0.01);
    grid.scale.set(b.x / Math.max(b.x, b.y), 1, b.y / Math.max(b.x, b.y));
    this.bed.add(grid);
    const volume = new LineSegments(
      new EdgesGeometry(new BoxGeometry(b.x, b.y, b.z)),
      new LineBasicMaterial({ color: 0x9aa3af }),
    );
    volume.position.set(b.x / 2, b.y / 2, b.z / 2);
    this.bed.add(volume);
    this.framing = {
      part: [b.x / 2, b.y / 2, size[2] / 2, Math.hypot(size[0], size[1], size[2])],
      bed: b,
    };
    this.frame("part");
  }

  dispose(): void {
    this.observer.disconnect();
    this.controls.dispose();
    this.renderer.dispose();
  }
}
