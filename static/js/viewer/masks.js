/**
 * Region masks in the browser. A saved region's mask is a canvas the size of its bbox, painted
 * in the finding's colour where the mask is set (alpha 255) and transparent elsewhere. The region
 * being edited is a full-image-size canvas (so strokes can grow it anywhere), with a backup copy
 * that lets each stroke be undone by restoring just the rectangle it touched.
 */

import { rgb } from "./colors.js";
import { bytesToBase64, encodeGrayPng } from "../core/png.js";

function canvas2d(width, height) {
  const canvas = document.createElement("canvas");
  canvas.width = Math.max(1, width);
  canvas.height = Math.max(1, height);
  return canvas;
}

/** Fetch a 0/255 mask PNG and paint it in ``color`` into a canvas of the PNG's size. */
export async function loadMask(url, color) {
  const response = await fetch(url, { credentials: "same-origin", cache: "no-cache" });
  if (!response.ok) throw new Error(`mask ${response.status}`);
  const bitmap = await createImageBitmap(await response.blob());
  const canvas = canvas2d(bitmap.width, bitmap.height);
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(bitmap, 0, 0);
  const image = ctx.getImageData(0, 0, canvas.width, canvas.height);
  const [r, g, b] = rgb(color);
  const d = image.data;
  for (let i = 0; i < d.length; i += 4) {
    const on = d[i] >= 128;
    d[i] = r; d[i + 1] = g; d[i + 2] = b; d[i + 3] = on ? 255 : 0;
  }
  ctx.putImageData(image, 0, 0);
  return canvas;
}

/** Repaint a mask canvas in another colour (after a label change). */
export function recolor(canvas, color) {
  const ctx = canvas.getContext("2d");
  ctx.save();
  ctx.globalCompositeOperation = "source-in";
  ctx.fillStyle = color;
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.restore();
}

function unionRect(a, b) {
  if (!a) return b;
  if (!b) return a;
  const x0 = Math.min(a.x, b.x);
  const y0 = Math.min(a.y, b.y);
  return { x: x0, y: y0, w: Math.max(a.x + a.w, b.x + b.w) - x0, h: Math.max(a.y + a.h, b.y + b.h) - y0 };
}

export class MaskDraft {
  /** ``region`` (with ``mask`` and ``bbox``) to edit, or null to start an empty one. */
  constructor({ width, height, color, region = null, label = "", subtype = "", description = "" }) {
    this.width = width;
    this.height = height;
    this.color = color;
    this.id = region ? region.id : null;
    this.version = region ? region.version : null;
    this.label = region ? region.label : label;
    this.subtype = region ? region.subtype || "" : subtype;
    this.description = region ? region.description || "" : description;
    this.canvas = canvas2d(width, height);
    this.backup = canvas2d(width, height);
    this.ctx = this.canvas.getContext("2d", { willReadFrequently: true });
    this.backupCtx = this.backup.getContext("2d", { willReadFrequently: true });
    this.dirty = null;
    this.changed = false;
    if (region && region.mask) {
      const [x0, y0] = region.bbox;
      this.ctx.drawImage(region.mask, x0, y0);
      this.backupCtx.drawImage(region.mask, x0, y0);
      this.dirty = { x: region.bbox[0], y: region.bbox[1], w: region.bbox[2] - region.bbox[0], h: region.bbox[3] - region.bbox[1] };
    }
  }

  setColor(color) {
    this.color = color;
    recolor(this.canvas, color);
    recolor(this.backup, color);
  }

  clip(rect) {
    const x0 = Math.max(0, Math.floor(rect.x));
    const y0 = Math.max(0, Math.floor(rect.y));
    const x1 = Math.min(this.width, Math.ceil(rect.x + rect.w));
    const y1 = Math.min(this.height, Math.ceil(rect.y + rect.h));
    return x1 > x0 && y1 > y0 ? { x: x0, y: y0, w: x1 - x0, h: y1 - y0 } : null;
  }

  /** A round-capped segment of ``size`` image pixels; ``erase`` clears instead of painting. */
  stroke(a, b, size, erase) {
    const ctx = this.ctx;
    ctx.save();
    ctx.globalCompositeOperation = erase ? "destination-out" : "source-over";
    ctx.strokeStyle = this.color;
    ctx.fillStyle = this.color;
    ctx.lineWidth = size;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.beginPath();
    if (a.x === b.x && a.y === b.y) {
      ctx.arc(a.x, a.y, size / 2, 0, Math.PI * 2);
      ctx.fill();
    } else {
      ctx.moveTo(a.x, a.y);
      ctx.lineTo(b.x, b.y);
      ctx.stroke();
    }
    ctx.restore();
    const r = size / 2 + 2;
    return this.clip({ x: Math.min(a.x, b.x) - r, y: Math.min(a.y, b.y) - r, w: Math.abs(a.x - b.x) + 2 * r, h: Math.abs(a.y - b.y) + 2 * r });
  }

  /** Fill (or cut, with ``erase``) a closed polygon of image points. */
  polygon(points, erase) {
    const ctx = this.ctx;
    ctx.save();
    ctx.globalCompositeOperation = erase ? "destination-out" : "source-over";
    ctx.fillStyle = this.color;
    ctx.beginPath();
    points.forEach((p, i) => (i ? ctx.lineTo(p.x, p.y) : ctx.moveTo(p.x, p.y)));
    ctx.closePath();
    ctx.fill();
    ctx.restore();
    const xs = points.map((p) => p.x);
    const ys = points.map((p) => p.y);
    return this.clip({ x: Math.min(...xs) - 2, y: Math.min(...ys) - 2, w: Math.max(...xs) - Math.min(...xs) + 4, h: Math.max(...ys) - Math.min(...ys) + 4 });
  }

  /** After a stroke touched ``rect``: an undo command restoring it, and the backup brought up to date. */
  commit(rect, onChange) {
    if (!rect) return null;
    const before = this.backupCtx.getImageData(rect.x, rect.y, rect.w, rect.h);
    const after = this.ctx.getImageData(rect.x, rect.y, rect.w, rect.h);
    this.backupCtx.putImageData(after, rect.x, rect.y);
    this.dirty = unionRect(this.dirty, rect);
    this.changed = true;
    const put = (data) => {
      this.ctx.putImageData(data, rect.x, rect.y);
      this.backupCtx.putImageData(data, rect.x, rect.y);
      this.changed = true;
      onChange();
    };
    return { label: "Mask stroke", scope: "draft", undo: () => put(before), redo: () => put(after) };
  }

  /** A canvas of the box ``[x0, y0, x1, y1]`` of this draft (to show a region as just saved). */
  crop(box) {
    const [x0, y0, x1, y1] = box;
    const out = canvas2d(x1 - x0, y1 - y0);
    out.getContext("2d").drawImage(this.canvas, -x0, -y0);
    return out;
  }

  /** The mask as the API wants it: its tight box and a base64 0/255 grayscale PNG of that box. */
  async extract() {
    const area = this.dirty && this.clip(this.dirty);
    if (!area) return null;
    const data = this.ctx.getImageData(area.x, area.y, area.w, area.h).data;
    let x0 = area.w, y0 = area.h, x1 = -1, y1 = -1;
    for (let y = 0; y < area.h; y++) {
      for (let x = 0; x < area.w; x++) {
        if (data[(y * area.w + x) * 4 + 3] >= 128) {
          if (x < x0) x0 = x;
          if (x > x1) x1 = x;
          if (y < y0) y0 = y;
          if (y > y1) y1 = y;
        }
      }
    }
    if (x1 < 0) return null;
    const w = x1 - x0 + 1;
    const h = y1 - y0 + 1;
    const gray = new Uint8Array(w * h);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        gray[y * w + x] = data[((y + y0) * area.w + (x + x0)) * 4 + 3] >= 128 ? 255 : 0;
      }
    }
    const png = await encodeGrayPng(w, h, gray);
    return { bbox: [area.x + x0, area.y + y0, area.x + x1 + 1, area.y + y1 + 1], mask: bytesToBase64(png), area: gray.reduce((n, v) => n + (v ? 1 : 0), 0) };
  }
}
