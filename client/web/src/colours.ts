/**
 * The colour of a run, derived from its id alone: the hue is the 32-bit FNV-1a
 * hash of the id's UTF-8 bytes modulo 360, and one of three lightnesses comes
 * from the hash's higher bits. server/assay_server/figures.py computes the
 * same, so tables and charts agree.
 */
const LIGHTNESS = [35, 45, 55];

export function runColour(runId: string): string {
  let digest = 0x811c9dc5;
  for (const byte of new TextEncoder().encode(runId)) {
    digest = Math.imul(digest ^ byte, 0x01000193) >>> 0;
  }
  return `hsl(${digest % 360}, 65%, ${LIGHTNESS[(digest >>> 16) % 3]}%)`;
}
