/** Pan tool: drag the image (also what the middle button and a held Space do with any tool). */

export function panTool(viewer) {
  let last = null;
  return {
    name: "pan",
    cursor: "grab",
    down(p) { last = p; },
    move(p) {
      if (!last) return;
      viewer.viewport.panBy(p.cx - last.cx, p.cy - last.cy);
      last = p;
    },
    up() { last = null; },
  };
}
