/**
 * Small SVG plots drawn from JSON (no library, no CDN): bars (grouped or stacked) and lines
 * (with an optional diagonal, for ROC curves). Sizes are in viewBox units; the SVG scales to its
 * container. Colours are attributes, not styles (the CSP forbids inline styles).
 */

const NS = "http://www.w3.org/2000/svg";
export const PALETTE = ["#1f6feb", "#14b8a6", "#f59e0b", "#ef4444", "#8b5cf6", "#10b981", "#ec4899", "#64748b", "#0ea5e9"];

function node(tag, attrs = {}, text) {
  const n = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, String(v));
  if (text !== undefined) n.textContent = text;
  return n;
}

function svgRoot(width, height, label) {
  return node("svg", { viewBox: `0 0 ${width} ${height}`, class: "plot", role: "img", "aria-label": label });
}

function niceMax(value) {
  if (value <= 0) return 1;
  const exp = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) if (step * exp >= value) return step * exp;
  return 10 * exp;
}

/** A legend under a plot. */
export function legend(items) {
  const box = document.createElement("div");
  box.className = "legend";
  for (const { name, color } of items) {
    const item = document.createElement("span");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = color;
    item.append(swatch, name);
    box.append(item);
  }
  return box;
}

/**
 * ``categories``: x labels; ``series``: [{name, color, values}]; ``stacked``: stack the series.
 * ``horizontal`` draws one bar per category from left to right (good for long names).
 */
export function barChart({ categories, series, stacked = false, horizontal = false, label = "Bar chart", width = 640, height = 260, valueFormat = (v) => String(v) }) {
  if (horizontal) return horizontalBars({ categories, series, label, width, valueFormat });
  const pad = { left: 40, right: 10, top: 10, bottom: 36 };
  const svg = svgRoot(width, height, label);
  const totals = categories.map((_, i) => (stacked ? series.reduce((n, s) => n + (s.values[i] || 0), 0) : Math.max(0, ...series.map((s) => s.values[i] || 0))));
  const max = niceMax(Math.max(0, ...totals));
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  const y = (v) => pad.top + plotH - (v / max) * plotH;
  const ticks = max <= 4 && Number.isInteger(max) ? max : 4; // whole numbers for small counts
  for (let t = 0; t <= ticks; t++) {
    const v = (max * t) / ticks;
    svg.append(node("line", { x1: pad.left, x2: width - pad.right, y1: y(v), y2: y(v), class: t ? "grid" : "axis" }));
    svg.append(node("text", { x: pad.left - 6, y: y(v) + 4, "text-anchor": "end" }, valueFormat(Math.round(v * 100) / 100)));
  }
  const band = plotW / Math.max(1, categories.length);
  const barW = stacked ? band * 0.6 : (band * 0.7) / Math.max(1, series.length);
  categories.forEach((cat, i) => {
    let acc = 0;
    series.forEach((s, j) => {
      const v = s.values[i] || 0;
      const x = pad.left + i * band + (stacked ? band * 0.2 : band * 0.15 + j * barW);
      const top = stacked ? y(acc + v) : y(v);
      const bottom = stacked ? y(acc) : y(0);
      if (v > 0) {
        const rect = node("rect", { x, y: top, width: Math.max(1, barW - 1), height: Math.max(0, bottom - top), fill: s.color, rx: 1 });
        rect.append(node("title", {}, `${s.name} · ${cat}: ${valueFormat(v)}`));
        svg.append(rect);
      }
      acc += v;
    });
    if (categories.length <= 16 || i % Math.ceil(categories.length / 16) === 0) {
      svg.append(node("text", { x: pad.left + i * band + band / 2, y: height - pad.bottom + 16, "text-anchor": "middle" }, cat));
    }
  });
  return svg;
}

function horizontalBars({ categories, series, label, width, valueFormat }) {
  const rowH = 26;
  const pad = { left: 120, right: 50, top: 6, bottom: 6 };
  const height = pad.top + pad.bottom + rowH * categories.length;
  const svg = svgRoot(width, height, label);
  const totals = categories.map((_, i) => series.reduce((n, s) => n + (s.values[i] || 0), 0));
  const max = Math.max(1, ...totals);
  const plotW = width - pad.left - pad.right;
  categories.forEach((cat, i) => {
    const yTop = pad.top + i * rowH + 4;
    svg.append(node("text", { x: pad.left - 8, y: yTop + 13, "text-anchor": "end" }, cat));
    let acc = 0;
    for (const s of series) {
      const v = s.values[i] || 0;
      if (v > 0) {
        const rect = node("rect", { x: pad.left + (acc / max) * plotW, y: yTop, width: Math.max(1, (v / max) * plotW), height: rowH - 8, fill: s.color });
        rect.append(node("title", {}, `${cat} · ${s.name}: ${valueFormat(v)}`));
        svg.append(rect);
      }
      acc += v;
    }
    svg.append(node("text", { x: pad.left + (acc / max) * plotW + 6, y: yTop + 13 }, valueFormat(totals[i])));
  });
  return svg;
}

/** ``series``: [{name, color, points: [[x, y], ...]}]; ``diagonal`` draws y = x (ROC chance line). */
export function lineChart({ series, xLabel = "", yLabel = "", xDomain, yDomain, diagonal = false, label = "Line chart", width = 420, height = 300 }) {
  const pad = { left: 46, right: 12, top: 10, bottom: 40 };
  const svg = svgRoot(width, height, label);
  const xs = series.flatMap((s) => s.points.map((p) => p[0]));
  const ys = series.flatMap((s) => s.points.map((p) => p[1]));
  const [x0, x1] = xDomain || [Math.min(0, ...xs), Math.max(1, ...xs)];
  const [y0, y1] = yDomain || [Math.min(0, ...ys), niceMax(Math.max(...ys, 0))];
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  const sx = (v) => pad.left + ((v - x0) / (x1 - x0 || 1)) * plotW;
  const sy = (v) => pad.top + plotH - ((v - y0) / (y1 - y0 || 1)) * plotH;
  for (let t = 0; t <= 4; t++) {
    const yv = y0 + ((y1 - y0) * t) / 4;
    const xv = x0 + ((x1 - x0) * t) / 4;
    svg.append(node("line", { x1: pad.left, x2: width - pad.right, y1: sy(yv), y2: sy(yv), class: t ? "grid" : "axis" }));
    svg.append(node("line", { x1: sx(xv), x2: sx(xv), y1: pad.top, y2: pad.top + plotH, class: t ? "grid" : "axis" }));
    svg.append(node("text", { x: pad.left - 6, y: sy(yv) + 4, "text-anchor": "end" }, Number(yv.toFixed(2))));
    svg.append(node("text", { x: sx(xv), y: pad.top + plotH + 14, "text-anchor": "middle" }, Number(xv.toFixed(2))));
  }
  if (diagonal) svg.append(node("line", { x1: sx(x0), y1: sy(y0), x2: sx(x1), y2: sy(y1), class: "diag" }));
  svg.append(node("text", { x: pad.left + plotW / 2, y: height - 6, "text-anchor": "middle" }, xLabel));
  svg.append(node("text", { x: 12, y: pad.top + plotH / 2, "text-anchor": "middle", transform: `rotate(-90 12 ${pad.top + plotH / 2})` }, yLabel));
  for (const s of series) {
    if (!s.points.length) continue;
    const d = s.points.map((p, i) => `${i ? "L" : "M"}${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(" ");
    const path = node("path", { d, class: "curve", stroke: s.color });
    path.append(node("title", {}, s.name));
    svg.append(path);
  }
  return svg;
}
