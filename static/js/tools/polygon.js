/**
 * Polygon tool: click to add points; click the first point, double-click or press Enter to close
 * and fill it into the edited mask (hold Alt while closing to cut it out instead). Backspace
 * removes the last point, Esc drops the polygon.
 */

const CLOSE_PX = 8;

export function polygonTool(viewer) {
  const store = viewer.store;
  const vp = viewer.viewport;
  let points = [];

  const clamp = (p) => ({ x: Math.min(vp.imageWidth, Math.max(0, p.x)), y: Math.min(vp.imageHeight, Math.max(0, p.y)) });

  const tool = {
    name: "polygon",
    cursor: () => (store.draft ? "crosshair" : "not-allowed"),
    get points() { return points; },
    down(p) {
      if (!store.draft || store.readOnly) {
        viewer.dispatchEvent(new CustomEvent("hint", { detail: "Select a region and press E to edit it, or add a new region first." }));
        return;
      }
      if (points.length >= 3) {
        const first = vp.imageToCanvas(points[0].x, points[0].y);
        if (Math.hypot(first.x - p.cx, first.y - p.cy) <= CLOSE_PX) {
          tool.close(p.alt);
          return;
        }
      }
      points.push(clamp(p));
      viewer.requestRender();
    },
    dblclick(p) {
      if (points.length >= 3) tool.close(p.alt);
    },
    close(erase = false) {
      // A double-click also adds its own two clicks as points: drop exact repeats.
      const unique = points.filter((q, i) => i === 0 || q.x !== points[i - 1].x || q.y !== points[i - 1].y);
      points = [];
      if (unique.length < 3 || !store.draft) return false;
      const rect = store.draft.polygon(unique, erase);
      const command = store.draft.commit(rect, () => store.maskChanged());
      if (command) store.record(command);
      store.maskChanged();
      return true;
    },
    removeLast() {
      points.pop();
      viewer.requestRender();
    },
    cancel() {
      const had = points.length > 0;
      points = [];
      viewer.requestRender();
      return had;
    },
    deactivate() { points = []; },
    drawOverlay(ctx, dpr) {
      if (!points.length) return;
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      const screen = points.map((q) => vp.imageToCanvas(q.x, q.y));
      ctx.beginPath();
      screen.forEach((q, i) => (i ? ctx.lineTo(q.x, q.y) : ctx.moveTo(q.x, q.y)));
      if (viewer.pointer) ctx.lineTo(viewer.pointer.cx, viewer.pointer.cy);
      ctx.strokeStyle = "#ffffff";
      ctx.lineWidth = 1.5;
      ctx.stroke();
      ctx.fillStyle = "#ffffff";
      for (const q of screen) ctx.fillRect(q.x - 3, q.y - 3, 6, 6);
    },
  };
  return tool;
}
