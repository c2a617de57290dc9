// Writes a gzipped twin (`*.gz`) of every built file that shrinks, which fabd serves to browsers
// that accept gzip, and prints the first load's gzipped size (index.html plus what it loads at
// start: the entry script and styles, and the 3D view's chunk, which an open design loads).
// Node's gzip has no time stamp in its header, so the output is the same on every build.
import { readdirSync, readFileSync, statSync, writeFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { gzipSync, constants } from "node:zlib";

const dist = new URL("../dist/", import.meta.url).pathname;
let total = 0;
const sizes = [];
function walk(dir) {
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) {
      walk(p);
      continue;
    }
    if (p.endsWith(".gz")) {
      rmSync(p);
      continue;
    }
    const raw = readFileSync(p);
    const gz = gzipSync(raw, { level: constants.Z_BEST_COMPRESSION });
    const rel = p.slice(dist.length);
    if (gz.length < raw.length) writeFileSync(`${p}.gz`, gz);
    const sent = Math.min(gz.length, raw.length);
    sizes.push([rel, raw.length, sent]);
    total += sent;
  }
}
walk(dist);
for (const [rel, raw, sent] of sizes) console.log(`${rel.padEnd(40)} ${String(raw).padStart(8)} B  ${String(sent).padStart(7)} B gzipped`);
console.log(`everything, gzipped: ${(total / 1024).toFixed(1)} KiB`);
