/**
 * A browser upload through the API's upload sessions (BeginUpload, AppendUpload, CommitUpload):
 * gRPC-web cannot stream from the page, so the file goes up in chunks at offsets. When a call
 * fails on the way (a dropped connection), the upload asks the server how many bytes it holds
 * (GetUpload) and goes on from there, so nothing already sent is sent twice or lost.
 */
import { designs, transient } from "./api";
import { type Design, DesignFormat } from "./gen/fabrouter/v1/designs_pb";

const CHUNK = 512 * 1024;
const RETRIES = 8;

export interface Progress {
  sent: number;
  total: number;
  /** Set while waiting to retry after a dropped call. */
  retrying?: string;
}

async function sha256Hex(data: ArrayBuffer): Promise<string> {
  // crypto.subtle needs a secure context (https or localhost); elsewhere the server hashes alone.
  if (!globalThis.crypto?.subtle) return "";
  const d = await crypto.subtle.digest("SHA-256", data);
  return Array.from(new Uint8Array(d), (b) => b.toString(16).padStart(2, "0")).join("");
}

export function formatOf(fileName: string): DesignFormat {
  return /\.(gcode|gco|g)$/i.test(fileName) ? DesignFormat.GCODE : DesignFormat.STL;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function upload(file: File, onProgress: (p: Progress) => void): Promise<Design> {
  const data = await file.arrayBuffer();
  const bytes = new Uint8Array(data);
  const sha256 = await sha256Hex(data);
  const session = await designs.beginUpload({
    metadata: {
      fileName: file.name,
      declaredSizeBytes: BigInt(bytes.length),
      sha256,
      format: formatOf(file.name),
    },
  });
  let offset = 0;
  let failures = 0;
  onProgress({ sent: 0, total: bytes.length });
  while (true) {
    try {
      if (offset < bytes.length) {
        const chunk = bytes.subarray(offset, Math.min(offset + CHUNK, bytes.length));
        const s = await designs.appendUpload({
          name: session.name,
          offset: BigInt(offset),
          chunk,
        });
        offset = Number(s.receivedBytes);
      } else {
        const design = await designs.commitUpload({ name: session.name });
        onProgress({ sent: bytes.length, total: bytes.length });
        return design;
      }
      failures = 0;
      onProgress({ sent: offset, total: bytes.length });
    } catch (e) {
      if (!transient(e) || ++failures > RETRIES) throw e;
      onProgress({
        sent: offset,
        total: bytes.length,
        retrying: `Connection lost; retrying (${failures} of ${RETRIES})…`,
      });
      await sleep(Math.min(500 * 2 ** failures, 8000));
      // Where the server is now: it may have taken the chunk whose answer was lost.
      try {
        const s = await designs.getUpload({ name: session.name });
        offset = Number(s.receivedBytes);
        if (s.design) return await designs.getDesign({ name: s.design });
      } catch (e2) {
        if (!transient(e2)) throw e2;
      }
    }
  }
}
