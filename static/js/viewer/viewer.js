/**
 * The viewer shared by every page: a canvas showing the radiograph with zoom, pan,
 * window/level, invert, reset and per-layer overlays. Pointer input is converted once (by the
 * viewport) and handed to the active tool; the middle button or a held Space pans with any tool,
 * the wheel zooms at the pointer.
 */

import { isTyping } from "../core/keyboard.js";
import { ImageSource } from "./imagery.js";
import { Renderer } from "./renderer.js";
import { Viewport } from "./viewport.js";
import { panTool } from "../tools/pan.js";
import { windowLevelTool } from "../tools/window-level.js";

export class Viewer extends EventTarget {
  constructor({ container, store }) {
    super();
    this.container = container;
    this.store = store;
    this.canvas = document.createElement("canvas");
    this.canvas.setAttribute("aria-label", "Radiograph");
    this.canvas.dataset.testid = "viewer-canvas";
    // Focusable, so a click on the image takes the keyboard away from a text box being typed in.
    this.canvas.tabIndex = -1;
    container.prepend(this.canvas);
    this.viewport = new Viewport(this.canvas);
    this.source = null;
    this.renderer = new Renderer({ canvas: this.canvas, viewport: this.viewport, store, source: null });
    this.tools = {};
    this.activeTool = null;
    this.dragTool = null;
    this.spaceHeld = false;
    this.pointer = null;
    this.frame = 0;
    this.fitted = false;

    this.addTool(panTool(this));
    this.addTool(windowLevelTool(this));

    this.viewport.addEventListener("change", () => {
      this.requestRender();
      this.emitStatus();
      if (this.source && this.source.needsDisplay(this.viewport.scale)) this.source.loadDisplay();
    });
    store.on("change", () => this.requestRender());
    new ResizeObserver(() => this.resize()).observe(container);
    this.bindPointer();
  }

  async open(detail) {
    this.viewport.setImageSize(detail.width, detail.height);
    this.source = new ImageSource(detail);
    this.renderer.source = this.source;
    this.source.addEventListener("change", () => {
      this.requestRender();
      this.emitStatus();
    });
    await this.source.loadPreview();
    this.resize();
    this.fit();
  }

  addTool(tool) {
    this.tools[tool.name] = tool;
  }

  setTool(name) {
    const tool = this.tools[name];
    if (!tool || tool === this.activeTool) return;
    if (this.activeTool && this.activeTool.deactivate) this.activeTool.deactivate();
    this.activeTool = tool;
    if (tool.activate) tool.activate();
    this.renderer.toolOverlay = tool.drawOverlay ? (ctx, dpr) => tool.drawOverlay(ctx, dpr) : null;
    this.updateCursor();
    this.requestRender();
    this.dispatchEvent(new CustomEvent("tool", { detail: { name } }));
  }

  // ---- view commands ----------------------------------------------------------------------
  fit() {
    this.viewport.fit();
    this.fitted = true;
  }

  zoomBy(factor) {
    this.viewport.zoomBy(factor);
  }

  actualSize() {
    this.viewport.zoomTo(1);
  }

  toggleInvert() {
    this.store.setDisplay({ invert: !this.store.display.invert });
  }

  /** Fit, default window, no inversion. */
  reset() {
    this.store.setDisplay({ invert: false, wlActive: false, center: null, width: null });
    this.fit();
  }

  // ---- rendering --------------------------------------------------------------------------
  resize() {
    const rect = this.container.getBoundingClientRect();
    const dpr = window.devicePixelRatio || 1;
    const width = Math.max(1, Math.round(rect.width * dpr));
    const height = Math.max(1, Math.round(rect.height * dpr));
    if (this.canvas.width !== width || this.canvas.height !== height) {
      this.canvas.width = width;
      this.canvas.height = height;
      if (this.fitted) this.viewport.fit();
    }
    this.requestRender();
  }

  requestRender() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.renderer.render();
    });
  }

  emitStatus() {
    this.dispatchEvent(new CustomEvent("status"));
  }

  // ---- pointer ----------------------------------------------------------------------------
  point(event) {
    const c = this.viewport.clientToCanvas(event.clientX, event.clientY);
    const p = this.viewport.canvasToImage(c.x, c.y);
    return { x: p.x, y: p.y, cx: c.x, cy: c.y, shift: event.shiftKey, alt: event.altKey, ctrl: event.ctrlKey || event.metaKey, event };
  }

  bindPointer() {
    const canvas = this.canvas;
    canvas.addEventListener("contextmenu", (e) => e.preventDefault());
    canvas.addEventListener("pointerdown", (event) => {
      if (!this.source) return;
      // A click that leaves a text box only ends the typing: it must not also paint a stray dot.
      const wasTyping = isTyping(document.activeElement);
      canvas.focus({ preventScroll: true });
      const pan = event.button === 1 || (event.button === 0 && this.spaceHeld);
      const tool = pan ? this.tools.pan : event.button === 0 && !wasTyping ? this.activeTool : null;
      if (!tool) return;
      event.preventDefault();
      canvas.setPointerCapture(event.pointerId);
      this.dragTool = tool;
      this.fitted = false;
      tool.down && tool.down(this.point(event));
      this.updateCursor();
    });
    canvas.addEventListener("pointermove", (event) => {
      if (!this.source) return;
      const p = this.point(event);
      this.pointer = p;
      if (this.dragTool) this.dragTool.move && this.dragTool.move(p);
      else if (this.activeTool && this.activeTool.hover) this.activeTool.hover(p);
      this.updateCursor();
      this.emitStatus();
      if (this.activeTool && this.activeTool.drawOverlay) this.requestRender();
    });
    const finish = (event) => {
      if (!this.dragTool) return;
      const tool = this.dragTool;
      this.dragTool = null;
      if (canvas.hasPointerCapture(event.pointerId)) canvas.releasePointerCapture(event.pointerId);
      tool.up && tool.up(this.point(event));
      this.updateCursor();
    };
    canvas.addEventListener("pointerup", finish);
    canvas.addEventListener("pointercancel", finish);
    canvas.addEventListener("pointerleave", () => {
      if (!this.dragTool) {
        this.pointer = null;
        this.emitStatus();
        this.requestRender();
      }
    });
    canvas.addEventListener("dblclick", (event) => {
      if (this.activeTool && this.activeTool.dblclick) this.activeTool.dblclick(this.point(event));
    });
    canvas.addEventListener(
      "wheel",
      (event) => {
        event.preventDefault();
        const c = this.viewport.clientToCanvas(event.clientX, event.clientY);
        this.fitted = false;
        this.viewport.zoomBy(Math.exp(-event.deltaY * 0.0015), c.x, c.y);
      },
      { passive: false },
    );
    window.addEventListener("keydown", (event) => {
      if (event.code === "Space" && !event.repeat && !["INPUT", "TEXTAREA", "SELECT", "BUTTON"].includes(event.target.tagName)) {
        this.spaceHeld = true;
        this.updateCursor();
        event.preventDefault();
      }
    });
    window.addEventListener("keyup", (event) => {
      if (event.code === "Space") {
        this.spaceHeld = false;
        this.updateCursor();
      }
    });
  }

  updateCursor() {
    let cursor = "default";
    if (this.spaceHeld || (this.dragTool && this.dragTool.name === "pan")) cursor = this.dragTool ? "grabbing" : "grab";
    else if (this.activeTool) cursor = typeof this.activeTool.cursor === "function" ? this.activeTool.cursor(this.pointer) : this.activeTool.cursor || "default";
    this.canvas.style.cursor = cursor;
  }
}
