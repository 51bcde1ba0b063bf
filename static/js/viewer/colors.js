/** Overlay colours: lung boxes by patient side, finding regions by label. */

import { pageData } from "../core/dom.js";

export const SIDE_COLORS = { right: "#38bdf8", left: "#f59e0b" };
export const SIDE_NAMES = { right: "Patient right", left: "Patient left" };
export const SIDE_SHORT = { right: "R", left: "L" };

// Finding colours come with the page, from the findings table (annotator.constants.FINDINGS).
const FINDING_TABLE = (pageData("workspace-config") || {}).vocab?.finding_table || [];
const FINDING_COLORS = Object.fromEntries(FINDING_TABLE.map((finding) => [finding.label, finding.colour]));
const FALLBACK_COLOR = "#9ca3af";

export function findingColor(label) {
  return FINDING_COLORS[label] || FINDING_COLORS.unknown || FALLBACK_COLOR;
}

/** "#rrggbb" → [r, g, b]. */
export function rgb(hex) {
  const n = parseInt(hex.slice(1), 16);
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
}
