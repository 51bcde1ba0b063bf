/**
 * Polygon tool: click to add points; click the first point, double-click or press Enter to close
 * and fill it into the edited mask (hold Alt while closing to cut it out instead). Backspace
 * removes the last point, Esc drops the polygon.
 */

const CLOSE_PX = 8;

/** The points without repeats (a double-click adds its own clicks; a click may land on a corner twice). */
function distinct(points) {
  const seen = new Set();
  return points.filter((q) => {
    const key = `${Math.round(q.x * 2)},${Math.round(q.y * 2)}`; // half-pixel grid
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

/** Twice the signed area of a polygon, in image pixels². */
function shoelace(points) {
  return points.reduce((sum, q, i) => {
    const r = points[(i + 1) % points.length];
    return sum + q.x * r.y - r.x * q.y;
  }, 0);
}

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
      if (points.length) tool.close(p.alt);
    },
    /** Fill the polygon into the draft; a degenerate one (under 3 corners, no area) is refused with a warning. */
    close(erase = false) {
      const corners = distinct(points);
      if (!store.draft) return false;
      if (corners.length < 3 || Math.abs(shoelace(corners)) < 1) {
        const what = corners.length < 3 ? `only ${corners.length} distinct point${corners.length === 1 ? "" : "s"}` : "no area (its points are on one line)";
        viewer.dispatchEvent(new CustomEvent("hint", { detail: `Not a region: this polygon has ${what}. Click at least 3 corners around the finding.` }));
        points = [];
        viewer.requestRender();
        return false;
      }
      points = [];
      const rect = store.draft.polygon(corners, erase);
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
