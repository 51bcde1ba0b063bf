/**
 * The radiograph's pixels for the viewer, fetched lazily and windowed on demand.
 *
 * The compressed preview (under 300 KB) is fetched first and shown at once. The full-resolution
 * 8-bit display image is fetched only when the user zooms past the preview's resolution, and the
 * full-bit-depth pixels (uint16, for >8-bit DICOM) only when window/level is first used.
 * Window/level and invert are applied through a lookup table into an offscreen canvas.
 */

import { get } from "../core/api.js";

async function fetchBitmap(url) {
  const response = await fetch(url, { credentials: "same-origin" });
  if (!response.ok) throw new Error(`image ${response.status}`);
  return createImageBitmap(await response.blob());
}

function grayOf(bitmap) {
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(bitmap, 0, 0);
  const rgba = ctx.getImageData(0, 0, bitmap.width, bitmap.height).data;
  const gray = new Uint8Array(bitmap.width * bitmap.height);
  for (let i = 0, j = 0; i < gray.length; i++, j += 4) gray[i] = rgba[j];
  return gray;
}

/** A 32-bit RGBA (little-endian) lookup table for values 0..maxValue. */
function lookupTable(maxValue, center, width, invert) {
  const lut = new Uint32Array(maxValue + 1);
  const low = center - width / 2;
  for (let v = 0; v <= maxValue; v++) {
    let t = (v - low) / width;
    t = t < 0 ? 0 : t > 1 ? 1 : t;
    let g = Math.round(t * 255);
    if (invert) g = 255 - g;
    lut[v] = (0xff000000 | (g << 16) | (g << 8) | g) >>> 0;
  }
  return lut;
}

export class ImageSource extends EventTarget {
  constructor(detail) {
    super();
    this.width = detail.width;
    this.height = detail.height;
    this.bitDepth = detail.bit_depth || 8;
    this.urls = detail.image;
    this.defaultWindow = detail.window && detail.window.width ? detail.window : null;
    this.bitmap = null; // preview, then display
    this.level = "none"; // "preview" | "display"
    this.gray = null; // 8-bit values of ``bitmap``
    this.pixels = null; // Uint16Array, full bit depth
    this.pixelsState = "none"; // "none" | "loading" | "loaded" | "failed"
    this.displayState = "none";
    this.cache = null;
  }

  get hasFullDepth() {
    return this.bitDepth > 8 && Boolean(this.urls.pixels);
  }

  /** The range window/level works in: 0..255, or 0..2^bits-1 on the full bit depth. */
  get maxValue() {
    return this.pixels ? (1 << this.bitDepth) - 1 : 255;
  }

  /** The window shown before the user changes it. */
  initialWindow() {
    if (this.pixels) {
      if (this.defaultWindow) return { center: this.defaultWindow.center, width: this.defaultWindow.width };
      const max = (1 << this.bitDepth) - 1;
      return { center: max / 2, width: max + 1 };
    }
    return { center: 127.5, width: 256 };
  }

  async loadPreview() {
    this.bitmap = await fetchBitmap(this.urls.preview);
    this.level = "preview";
    this.gray = null;
    this.cache = null;
    this.changed();
  }

  /** Whether drawing at ``scale`` (CSS px per image px) needs more than the preview has. */
  needsDisplay(scale) {
    return this.level === "preview" && this.bitmap && this.bitmap.width < this.width && scale * this.width > this.bitmap.width * 1.05;
  }

  async loadDisplay() {
    if (this.displayState !== "none") return;
    this.displayState = "loading";
    try {
      const bitmap = await fetchBitmap(this.urls.display);
      this.bitmap = bitmap;
      this.level = "display";
      this.gray = null;
      this.cache = null;
      this.displayState = "loaded";
      this.changed();
    } catch (err) {
      this.displayState = "failed";
    }
  }

  /** Fetch the full-bit-depth pixels (only for >8-bit images); resolves true once available. */
  async loadPixels() {
    if (!this.hasFullDepth) return false;
    if (this.pixelsState === "loaded") return true;
    if (this.pixelsState === "loading") return this.pixelsPromise;
    this.pixelsState = "loading";
    this.changed();
    this.pixelsPromise = (async () => {
      try {
        const response = await get(this.urls.pixels, { raw: true });
        const width = Number(response.headers.get("X-Width"));
        const height = Number(response.headers.get("X-Height"));
        const buffer = await response.arrayBuffer();
        if (width !== this.width || height !== this.height || buffer.byteLength !== width * height * 2) throw new Error("unexpected pixel data");
        this.pixels = new Uint16Array(buffer);
        this.bitDepth = Number(response.headers.get("X-Bit-Depth")) || this.bitDepth;
        this.pixelsState = "loaded";
        this.cache = null;
        this.changed();
        return true;
      } catch (err) {
        this.pixelsState = "failed";
        this.changed();
        return false;
      }
    })();
    return this.pixelsPromise;
  }

  /**
   * What to draw over the image rectangle [0, width) × [0, height) for these display settings
   * (``center``/``width`` are in the range of ``maxValue``).
   */
  drawable(display) {
    if (!this.bitmap) return null;
    const useFull = this.pixels && display.wlActive;
    const windowed = display.wlActive && display.width;
    if (!useFull && !windowed && !display.invert) return this.bitmap;
    const center = windowed ? display.center : 127.5;
    const width = windowed ? display.width : 256;
    const key = `${useFull ? "full" : this.level}|${center}|${width}|${display.invert}`;
    if (this.cache && this.cache.key === key) return this.cache.canvas;
    let values;
    let w;
    let h;
    let max;
    if (useFull) {
      values = this.pixels;
      w = this.width;
      h = this.height;
      max = (1 << this.bitDepth) - 1;
    } else {
      if (!this.gray) this.gray = grayOf(this.bitmap);
      values = this.gray;
      w = this.bitmap.width;
      h = this.bitmap.height;
      max = 255;
    }
    const lut = lookupTable(max, center, width, display.invert);
    const canvas = this.cache && this.cache.canvas.width === w && this.cache.canvas.height === h ? this.cache.canvas : new OffscreenCanvas(w, h);
    const ctx = canvas.getContext("2d");
    const image = ctx.createImageData(w, h);
    const out = new Uint32Array(image.data.buffer);
    for (let i = 0; i < values.length; i++) out[i] = lut[values[i] > max ? max : values[i]];
    ctx.putImageData(image, 0, 0);
    this.cache = { key, canvas };
    return canvas;
  }

  changed() {
    this.dispatchEvent(new CustomEvent("change"));
  }
}
