/**
 * Brush and eraser: paint into (or clear from) the mask of the region being edited. The size is
 * in image pixels; each stroke is one undo step.
 */

export function brushTool(viewer, { erase = false, getSize }) {
  const store = viewer.store;
  let last = null;
  let rect = null;
  let moved = false;

  const union = (a, b) => {
    if (!a) return b;
    if (!b) return a;
    const x = Math.min(a.x, b.x);
    const y = Math.min(a.y, b.y);
    return { x, y, w: Math.max(a.x + a.w, b.x + b.w) - x, h: Math.max(a.y + a.h, b.y + b.h) - y };
  };

  return {
    name: erase ? "eraser" : "brush",
    cursor: () => (store.draft ? "none" : "not-allowed"),
    down(p) {
      if (!store.draft || store.readOnly) {
        viewer.dispatchEvent(new CustomEvent("hint", { detail: "Select a region and press E to edit it, or add a new region first." }));
        return;
      }
      last = { x: p.x, y: p.y };
      moved = false;
      rect = store.draft.stroke(last, last, getSize(), erase);
      store.maskChanged();
    },
    move(p) {
      if (!last || !store.draft) return;
      const next = { x: p.x, y: p.y };
      if (next.x === last.x && next.y === last.y) return;
      moved = true;
      rect = union(rect, store.draft.stroke(last, next, getSize(), erase));
      last = next;
      store.maskChanged();
    },
    up() {
      if (!last || !store.draft) return;
      const command = store.draft.commit(store.draft.clip(rect), () => store.maskChanged());
      // A click without a drag paints one dot: several of them alone are not a region (see review.js).
      if (command) store.record({ ...command, dot: !moved && !erase });
      last = null;
      rect = null;
    },
    drawOverlay(ctx, dpr) {
      const p = viewer.pointer;
      if (!p || !store.draft) return;
      const radius = viewer.viewport.toCanvasLength(getSize() / 2);
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      ctx.beginPath();
      ctx.arc(p.cx, p.cy, Math.max(1, radius), 0, Math.PI * 2);
      ctx.lineWidth = 1.5;
      ctx.strokeStyle = erase ? "#ff7b72" : "#ffffff";
      ctx.setLineDash(erase ? [4, 3] : []);
      ctx.stroke();
      ctx.setLineDash([]);
    },
  };
}
