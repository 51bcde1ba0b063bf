/**
 * Paints the viewer canvas: the (windowed) radiograph, then the overlays — finding regions
 * (tinted masks, outlines, label and confidence), the region being edited, the two lung boxes
 * (named by the patient's side) — then whatever the active tool draws (brush cursor, polygon).
 * Overlays are drawn in image coordinates through the viewport's transform; text and handles
 * are placed with ``viewport.imageToCanvas`` so they keep their screen size.
 */

import { SIDE_COLORS, SIDE_SHORT, findingColor } from "./colors.js";
import { findingName } from "../core/words.js";

export const HANDLE_SIZE = 8;

export class Renderer {
  constructor({ canvas, viewport, store, source }) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.viewport = viewport;
    this.store = store;
    this.source = source;
    this.toolOverlay = null;
    this.pendingTags = [];
  }

  render() {
    const { ctx, canvas, viewport, store } = this;
    const dpr = window.devicePixelRatio || 1;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = "#0d1117";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    const image = this.source && this.source.drawable(store.display);
    if (!image) return;
    viewport.applyTo(ctx, dpr);
    ctx.imageSmoothingEnabled = viewport.scale * (this.source.width / (image.width || this.source.width)) < 2;
    ctx.drawImage(image, 0, 0, this.source.width, this.source.height);

    const layers = store.display.layers;
    this.pendingTags = [];
    if (layers.regions) this.drawRegions(dpr);
    if (store.draft) this.drawDraft(dpr);
    if (layers.lungs && store.doc) this.drawLungs(dpr);
    this.drawTags(dpr);
    if (this.toolOverlay) {
      ctx.save();
      this.toolOverlay(ctx, dpr);
      ctx.restore();
    }
  }

  drawRegions(dpr) {
    const { ctx, viewport, store } = this;
    const selectedId = store.selection && store.selection.kind === "region" ? store.selection.id : null;
    for (const region of store.regions) {
      if (store.draft && store.draft.id === region.id) continue;
      if (region.status === "rejected" && region.id !== selectedId && !store.display.showRejected) continue;
      const color = findingColor(region.label);
      const [x0, y0, x1, y1] = region.bbox;
      viewport.applyTo(ctx, dpr);
      if (region.mask) {
        ctx.globalAlpha = region.id === selectedId ? 0.55 : 0.35;
        ctx.drawImage(region.mask, x0, y0, x1 - x0, y1 - y0);
        ctx.globalAlpha = 1;
      }
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      const a = viewport.imageToCanvas(x0, y0);
      const b = viewport.imageToCanvas(x1, y1);
      ctx.lineWidth = region.id === selectedId ? 2 : 1.25;
      ctx.strokeStyle = color;
      ctx.setLineDash(region.status === "suggested" ? [6, 4] : region.status === "rejected" ? [2, 3] : []);
      ctx.strokeRect(a.x, a.y, b.x - a.x, b.y - a.y);
      ctx.setLineDash([]);
      if (store.display.layers.labels) {
        const conf = region.confidence === null || region.confidence === undefined ? "" : ` ${Math.round(region.confidence * 100)}%`;
        this.tag(`${findingName(region.label, region.subtype)}${conf}`, { x0: a.x, y0: a.y, x1: b.x, y1: b.y }, color, region.id === selectedId ? 1 : 2);
      }
    }
  }

  drawDraft(dpr) {
    const { ctx, viewport, store } = this;
    viewport.applyTo(ctx, dpr);
    ctx.globalAlpha = 0.55;
    ctx.drawImage(store.draft.canvas, 0, 0);
    ctx.globalAlpha = 1;
  }

  drawLungs(dpr) {
    const { ctx, viewport, store } = this;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    const selectedSide = store.selection && store.selection.kind === "box" ? store.selection.side : null;
    for (const side of ["right", "left"]) {
      const box = store.doc[side];
      if (!box) continue;
      const a = viewport.imageToCanvas(box[0], box[1]);
      const b = viewport.imageToCanvas(box[2], box[3]);
      const color = SIDE_COLORS[side];
      ctx.lineWidth = side === selectedSide ? 2.5 : 1.75;
      ctx.strokeStyle = color;
      ctx.fillStyle = side === selectedSide ? "rgba(255,255,255,0.04)" : "transparent";
      ctx.fillRect(a.x, a.y, b.x - a.x, b.y - a.y);
      ctx.strokeRect(a.x, a.y, b.x - a.x, b.y - a.y);
      if (store.display.layers.labels) this.tag(`${SIDE_SHORT[side]} · patient ${side}`, { x0: a.x, y0: a.y, x1: b.x, y1: b.y }, color, 0);
      if (side === selectedSide && !store.readOnly) {
        ctx.fillStyle = color;
        for (const [hx, hy] of handlePoints(a, b)) {
          ctx.fillRect(hx - HANDLE_SIZE / 2, hy - HANDLE_SIZE / 2, HANDLE_SIZE, HANDLE_SIZE);
        }
      }
    }
  }

  /** Queue a small label for the box ``{x0, y0, x1, y1}`` (canvas pixels); lower ``rank`` is placed first. */
  tag(text, box, color, rank) {
    this.pendingTags.push({ text, box, color, rank });
  }

  /**
   * Place the queued labels so that none covers another (lung boxes first, then the selected
   * region, then the rest), draw them, and publish where they went on the canvas element
   * (``data-labels``, CSS pixels) for whoever needs to know what the overlay shows.
   */
  drawTags(dpr) {
    const { ctx, canvas } = this;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.font = TAG_FONT;
    const bounds = { w: canvas.width / dpr, h: canvas.height / dpr };
    const placed = [];
    const items = [...this.pendingTags].sort((a, b) => a.rank - b.rank);
    for (const item of items) {
      const rect = placeTag(item.box, ctx.measureText(item.text).width + 8, TAG_HEIGHT, bounds, placed);
      placed.push({ ...rect, text: item.text });
      ctx.fillStyle = "rgba(13,17,23,0.8)";
      ctx.fillRect(rect.x, rect.y, rect.w, rect.h);
      ctx.fillStyle = item.color;
      ctx.fillText(item.text, rect.x + 4, rect.y + 12);
    }
    const published = JSON.stringify(placed.map((r) => ({ text: r.text, x: Math.round(r.x * 10) / 10, y: Math.round(r.y * 10) / 10, w: Math.round(r.w * 10) / 10, h: r.h })));
    if (canvas.dataset.labels !== published) canvas.dataset.labels = published;
  }
}

const TAG_FONT = "600 11px system-ui, sans-serif";
const TAG_HEIGHT = 16;
const TAG_GAP = 1;

function overlaps(a, b) {
  return a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
}

/**
 * Where a ``w``×``h`` label of ``box`` goes: the first free spot among its corners (above the
 * top-left corner, inside it, the right-hand corners, below the box), then further down along
 * the box's left edge, then anywhere down the canvas at that x.
 */
function placeTag(box, w, h, bounds, placed) {
  const step = h + TAG_GAP;
  const candidates = [
    [box.x0, box.y0 - step], [box.x0, box.y0 + TAG_GAP], [box.x1 - w, box.y0 - step], [box.x1 - w, box.y0 + TAG_GAP],
    [box.x0, box.y1 + TAG_GAP], [box.x0, box.y1 - step],
  ];
  for (let y = box.y0 + TAG_GAP + step; y < box.y1 - h; y += step) candidates.push([box.x0, y]);
  for (let y = 0; y + h <= bounds.h; y += step) candidates.push([box.x0, y]);
  const clamp = ([x, y]) => ({
    x: Math.max(0, Math.min(x, bounds.w - w)),
    y: Math.max(0, Math.min(y, bounds.h - h)),
    w,
    h,
  });
  for (const candidate of candidates) {
    const rect = clamp(candidate);
    if (!placed.some((other) => overlaps(rect, other))) return rect;
  }
  return clamp(candidates[0]); // a canvas too crowded to separate them: keep it at its box
}

/** The eight resize handles of a box given by its canvas corners, with their names. */
export function handlePoints(a, b) {
  const mx = (a.x + b.x) / 2;
  const my = (a.y + b.y) / 2;
  return [
    [a.x, a.y, "nw"], [mx, a.y, "n"], [b.x, a.y, "ne"], [b.x, my, "e"],
    [b.x, b.y, "se"], [mx, b.y, "s"], [a.x, b.y, "sw"], [a.x, my, "w"],
  ];
}
