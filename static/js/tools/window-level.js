/**
 * Window/level tool: drag left/right to change the window width, up/down to move its centre.
 * On a >8-bit image the first drag fetches the full-bit-depth pixels and windows those.
 */

export function windowLevelTool(viewer) {
  let start = null;
  const store = viewer.store;

  function range() {
    return viewer.source ? viewer.source.maxValue + 1 : 256;
  }

  async function ensureActive() {
    const source = viewer.source;
    if (source.hasFullDepth && source.pixelsState !== "loaded") {
      const ok = await source.loadPixels();
      if (!ok) return false;
      const w = source.initialWindow();
      store.setDisplay({ center: w.center, width: w.width, wlActive: true });
      return true;
    }
    if (!store.display.wlActive) {
      const w = source.initialWindow();
      store.setDisplay({ center: w.center, width: w.width, wlActive: true });
    }
    return true;
  }

  return {
    name: "window",
    cursor: "ns-resize",
    down(p) {
      start = { p, pending: true };
      ensureActive().then((ok) => {
        if (!start || !ok) return;
        start = { p: start.p, center: store.display.center, width: store.display.width };
      });
    },
    move(p) {
      if (!start || start.pending) return;
      const { width: cw, height: ch } = viewer.viewport.size;
      const r = range();
      const width = Math.max(1, start.width + ((p.cx - start.p.cx) / cw) * r);
      const center = start.center - ((p.cy - start.p.cy) / ch) * r;
      store.setDisplay({ center: Math.round(center * 10) / 10, width: Math.round(width * 10) / 10, wlActive: true });
    },
    up() { start = null; },
  };
}
