// Builds the app into dist/, which fabd embeds (crates/server/src/web.rs). Hashed file names let
// fabd cache assets for a year; no source maps, so the embedded copy stays small.
import { defineConfig } from "vite";

export default defineConfig({
  base: "/",
  build: {
    outDir: "dist",
    emptyOutDir: true,
    sourcemap: false,
    target: "es2022",
    reportCompressedSize: false,
    // three.js is most of the 3D view's chunk, which loads only when a design is shown.
    chunkSizeWarningLimit: 600,
    modulePreload: { polyfill: false },
  },
});
