/**
 * The viewport: the ONE place where screen and image coordinates are converted.
 *
 * Image coordinates are original-image pixels (origin top-left, x right, y down; pixel i covers
 * [i, i+1)). Canvas coordinates are CSS pixels from the canvas's top-left corner. The mapping is
 * ``canvas = image * scale + offset``; the device pixel ratio only enters ``applyTo``.
 *
 * "Fit" shows the whole image centred with a 16 px margin; zooming from the keyboard keeps the
 * centre of the canvas fixed, zooming with the wheel keeps the point under the pointer fixed.
 */

export const FIT_MARGIN = 16;
export const MIN_SCALE = 0.02;
export const MAX_SCALE = 40;

export class Viewport extends EventTarget {
  constructor(canvas) {
    super();
    this.canvas = canvas;
    this.scale = 1;
    this.offsetX = 0;
    this.offsetY = 0;
    this.imageWidth = 1;
    this.imageHeight = 1;
  }

  setImageSize(width, height) {
    this.imageWidth = width;
    this.imageHeight = height;
  }

  /** Size of the canvas in CSS pixels. */
  get size() {
    const rect = this.canvas.getBoundingClientRect();
    return { width: rect.width, height: rect.height };
  }

  /** Pointer position (clientX/Y) → canvas CSS pixels. */
  clientToCanvas(clientX, clientY) {
    const rect = this.canvas.getBoundingClientRect();
    return { x: clientX - rect.left, y: clientY - rect.top };
  }

  /** Pointer position (clientX/Y) → image pixels (fractional). */
  clientToImage(clientX, clientY) {
    const c = this.clientToCanvas(clientX, clientY);
    return this.canvasToImage(c.x, c.y);
  }

  canvasToImage(x, y) {
    return { x: (x - this.offsetX) / this.scale, y: (y - this.offsetY) / this.scale };
  }

  imageToCanvas(x, y) {
    return { x: x * this.scale + this.offsetX, y: y * this.scale + this.offsetY };
  }

  /** An image-space length in canvas CSS pixels, and back. */
  toCanvasLength(length) { return length * this.scale; }
  toImageLength(length) { return length / this.scale; }

  /** Set the 2-D context's transform so that drawing happens in image coordinates. */
  applyTo(ctx, dpr) {
    ctx.setTransform(dpr * this.scale, 0, 0, dpr * this.scale, dpr * this.offsetX, dpr * this.offsetY);
  }

  fit() {
    const { width, height } = this.size;
    const scale = Math.min((width - 2 * FIT_MARGIN) / this.imageWidth, (height - 2 * FIT_MARGIN) / this.imageHeight);
    this.scale = Math.max(MIN_SCALE, scale);
    this.offsetX = (width - this.imageWidth * this.scale) / 2;
    this.offsetY = (height - this.imageHeight * this.scale) / 2;
    this.changed();
  }

  /** Multiply the scale by ``factor`` keeping the canvas point (x, y) fixed (default: the centre). */
  zoomBy(factor, x, y) {
    const { width, height } = this.size;
    const cx = x ?? width / 2;
    const cy = y ?? height / 2;
    const scale = Math.min(MAX_SCALE, Math.max(MIN_SCALE, this.scale * factor));
    const applied = scale / this.scale;
    this.offsetX = cx - (cx - this.offsetX) * applied;
    this.offsetY = cy - (cy - this.offsetY) * applied;
    this.scale = scale;
    this.changed();
  }

  /** Set an absolute scale (1 = one image pixel per CSS pixel) around the canvas centre. */
  zoomTo(scale) {
    this.zoomBy(scale / this.scale);
  }

  panBy(dx, dy) {
    this.offsetX += dx;
    this.offsetY += dy;
    this.changed();
  }

  changed() {
    this.dispatchEvent(new CustomEvent("change"));
  }
}
