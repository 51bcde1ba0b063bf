/**
 * Lung-box tool: move a box by dragging inside it, resize it with its eight handles, draw a new
 * one by dragging on empty image (or anywhere after "redraw"). Boxes live in image pixels with
 * integer, half-open edges; a drag is recorded as one undo step.
 */

import { handlePoints, HANDLE_SIZE } from "../viewer/renderer.js";
import { cloneDoc } from "../viewer/store.js";

const CURSORS = { nw: "nwse-resize", se: "nwse-resize", ne: "nesw-resize", sw: "nesw-resize", n: "ns-resize", s: "ns-resize", e: "ew-resize", w: "ew-resize", move: "move" };

export function boxTool(viewer) {
  const store = viewer.store;
  const vp = viewer.viewport;
  let drag = null;
  let redrawSide = null; // set by "redraw": the next drag draws this side

  const clampX = (x) => Math.min(vp.imageWidth, Math.max(0, Math.round(x)));
  const clampY = (y) => Math.min(vp.imageHeight, Math.max(0, Math.round(y)));

  function selectedSide() {
    return store.selection && store.selection.kind === "box" ? store.selection.side : null;
  }

  function hit(p) {
    if (!store.doc) return null;
    const selected = selectedSide();
    const order = selected ? [selected, selected === "right" ? "left" : "right"] : ["right", "left"];
    for (const side of order) {
      const box = store.doc[side];
      if (!box || side !== selected) continue;
      const a = vp.imageToCanvas(box[0], box[1]);
      const b = vp.imageToCanvas(box[2], box[3]);
      for (const [hx, hy, name] of handlePoints(a, b)) {
        if (Math.abs(p.cx - hx) <= HANDLE_SIZE && Math.abs(p.cy - hy) <= HANDLE_SIZE) return { side, handle: name };
      }
    }
    for (const side of order) {
      const box = store.doc[side];
      if (box && p.x >= box[0] && p.x < box[2] && p.y >= box[1] && p.y < box[3]) return { side, handle: "move" };
    }
    return null;
  }

  function sideToDraw() {
    if (redrawSide) return redrawSide;
    if (!store.doc.right) return "right";
    if (!store.doc.left) return "left";
    return selectedSide() || "right";
  }

  function boxFor(p) {
    const { orig, handle, start } = drag;
    const dx = p.x - start.x;
    const dy = p.y - start.y;
    if (handle === "draw") {
      const x = clampX(p.x);
      const y = clampY(p.y);
      return [Math.min(start.ax, x), Math.min(start.ay, y), Math.max(start.ax, x), Math.max(start.ay, y)];
    }
    if (handle === "move") {
      const mx = Math.min(vp.imageWidth - orig[2], Math.max(-orig[0], Math.round(dx)));
      const my = Math.min(vp.imageHeight - orig[3], Math.max(-orig[1], Math.round(dy)));
      return [orig[0] + mx, orig[1] + my, orig[2] + mx, orig[3] + my];
    }
    let [x0, y0, x1, y1] = orig;
    if (handle.includes("w")) x0 = clampX(orig[0] + dx);
    if (handle.includes("e")) x1 = clampX(orig[2] + dx);
    if (handle.includes("n")) y0 = clampY(orig[1] + dy);
    if (handle.includes("s")) y1 = clampY(orig[3] + dy);
    return [Math.min(x0, x1), Math.min(y0, y1), Math.max(x0, x1), Math.max(y0, y1)];
  }

  return {
    name: "box",
    cursor(p) {
      if (store.readOnly) return "default";
      if (!p) return "crosshair";
      if (redrawSide) return "crosshair";
      const h = hit(p);
      return h ? CURSORS[h.handle] : "crosshair";
    },
    /** Make the next drag draw a new box for ``side`` (whatever it starts on). */
    redraw(side) {
      redrawSide = side;
      store.select({ kind: "box", side });
      viewer.updateCursor();
    },
    get redrawing() { return redrawSide; },
    down(p) {
      if (store.readOnly || !store.doc) return;
      const h = redrawSide ? null : hit(p);
      const before = cloneDoc(store.doc);
      if (h) {
        store.select({ kind: "box", side: h.side });
        drag = { side: h.side, handle: h.handle, orig: [...store.doc[h.side]], start: { x: p.x, y: p.y }, before };
      } else {
        const side = sideToDraw();
        store.select({ kind: "box", side });
        drag = { side, handle: "draw", orig: null, start: { x: p.x, y: p.y, ax: clampX(p.x), ay: clampY(p.y) }, before };
      }
    },
    move(p) {
      if (!drag) return;
      const box = boxFor(p);
      if (box[2] - box[0] < 1 || box[3] - box[1] < 1) return;
      store.edit((doc) => { doc[drag.side] = box; }, { record: false });
    },
    up(p) {
      if (!drag) return;
      this.move(p);
      const { before, side, handle } = drag;
      drag = null;
      redrawSide = null;
      const after = cloneDoc(store.doc);
      if (JSON.stringify(before[side]) !== JSON.stringify(after[side])) {
        store.record(store.docCommand(before, after, handle === "draw" ? `Draw ${side} box` : `Adjust ${side} box`));
      }
      viewer.updateCursor();
    },
  };
}
