/**
 * Paints the viewer canvas: the (windowed) radiograph, then the overlays — finding regions
 * (tinted masks, outlines, label and confidence), the region being edited, the two lung boxes
 * (named by the patient's side) — then whatever the active tool draws (brush cursor, polygon).
 * Overlays are drawn in image coordinates through the viewport's transform; text and handles
 * are placed with ``viewport.imageToCanvas`` so they keep their screen size.
 */

import { SIDE_COLORS, SIDE_SHORT, findingColor } from "./colors.js";

export const HANDLE_SIZE = 8;

function humanLabel(region) {
  const base = region.label.replace(/_/g, " ");
  return region.subtype ? `${base} (${region.subtype.replace(/_/g, " ")})` : base;
}

export class Renderer {
  constructor({ canvas, viewport, store, source }) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.viewport = viewport;
    this.store = store;
    this.source = source;
    this.toolOverlay = null;
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
    if (layers.regions) this.drawRegions(dpr);
    if (store.draft) this.drawDraft(dpr);
    if (layers.lungs && store.doc) this.drawLungs(dpr);
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
        this.tag(`${humanLabel(region)}${conf}`, a.x, a.y, color);
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
      if (store.display.layers.labels) this.tag(`${SIDE_SHORT[side]} · patient ${side}`, a.x, a.y, color);
      if (side === selectedSide && !store.readOnly) {
        ctx.fillStyle = color;
        for (const [hx, hy] of handlePoints(a, b)) {
          ctx.fillRect(hx - HANDLE_SIZE / 2, hy - HANDLE_SIZE / 2, HANDLE_SIZE, HANDLE_SIZE);
        }
      }
    }
  }

  /** A small label above the point (x, y) in canvas pixels. */
  tag(text, x, y, color) {
    const { ctx } = this;
    ctx.font = "600 11px system-ui, sans-serif";
    const width = ctx.measureText(text).width + 8;
    const top = Math.max(0, y - 17);
    ctx.fillStyle = "rgba(13,17,23,0.8)";
    ctx.fillRect(x, top, width, 16);
    ctx.fillStyle = color;
    ctx.fillText(text, x + 4, top + 12);
  }
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
