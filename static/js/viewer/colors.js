/** Overlay colours: lung boxes by patient side, finding regions by label. */

export const SIDE_COLORS = { right: "#38bdf8", left: "#f59e0b" };
export const SIDE_NAMES = { right: "Patient right", left: "Patient left" };
export const SIDE_SHORT = { right: "R", left: "L" };

const FINDING_COLORS = {
  atelectasis: "#a78bfa",
  consolidation: "#f87171",
  interstitial_shadow: "#34d399",
  pneumothorax: "#60a5fa",
  pleural_effusion: "#22d3ee",
  pleural_thickening: "#fbbf24",
  cardiomegaly: "#f472b6",
  lung_lesion: "#fb923c",
  unknown: "#9ca3af",
};

export function findingColor(label) {
  return FINDING_COLORS[label] || FINDING_COLORS.unknown;
}

/** "#rrggbb" → [r, g, b]. */
export function rgb(hex) {
  const n = parseInt(hex.slice(1), 16);
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
}
