/**
 * The viewer's surroundings shared by every page: toolbar buttons, status bar, hints, and the
 * viewer's keyboard shortcuts (zoom, fit, invert, window/level, pan, overlays, undo/redo).
 */

import { $, $$ } from "../core/dom.js";

export function setupViewerChrome({ viewer, store, shortcuts, root = document }) {
  const toast = $("#viewer-toast", root);
  let toastTimer = 0;
  function hideHint() {
    clearTimeout(toastTimer);
    if (toast) toast.classList.add("hidden");
  }
  /** A short message over the image: it leaves after ``ms``, or at the user's next click or key. */
  function hint(message, ms = 3500) {
    if (!toast) return;
    toast.textContent = message;
    toast.classList.remove("hidden");
    clearTimeout(toastTimer);
    toastTimer = setTimeout(hideHint, ms);
  }
  viewer.addEventListener("hint", (e) => hint(e.detail));
  // Captured before any handler runs, so a hint that the same click or key shows stays up.
  window.addEventListener("pointerdown", hideHint, { capture: true });
  window.addEventListener("keydown", (event) => {
    if (!["Shift", "Control", "Alt", "Meta"].includes(event.key)) hideHint();
  }, { capture: true });

  const actions = {
    "zoom-in": () => viewer.zoomBy(1.25),
    "zoom-out": () => viewer.zoomBy(0.8),
    fit: () => viewer.fit(),
    actual: () => viewer.actualSize(),
    invert: () => viewer.toggleInvert(),
    reset: () => viewer.reset(),
    undo: () => store.undo(),
    redo: () => store.redo(),
    help: () => shortcuts.toggleHelp(),
  };
  for (const button of $$("[data-action]", root)) {
    const run = actions[button.dataset.action];
    if (run) button.addEventListener("click", run);
  }
  for (const button of $$("[data-tool]", root)) {
    button.addEventListener("click", () => viewer.setTool(button.dataset.tool));
  }
  for (const button of $$("[data-layer]", root)) {
    button.addEventListener("click", () => store.toggleLayer(button.dataset.layer));
  }

  function syncButtons() {
    for (const b of $$("[data-tool]", root)) b.setAttribute("aria-pressed", String(viewer.activeTool && viewer.activeTool.name === b.dataset.tool));
    for (const b of $$("[data-layer]", root)) b.setAttribute("aria-pressed", String(Boolean(store.display.layers[b.dataset.layer])));
    const inv = $("[data-action=invert]", root);
    if (inv) inv.setAttribute("aria-pressed", String(store.display.invert));
    const undo = $("[data-action=undo]", root);
    const redo = $("[data-action=redo]", root);
    if (undo) undo.disabled = store.readOnly || store.undoStack.length === 0;
    if (redo) redo.disabled = store.readOnly || store.redoStack.length === 0;
  }
  viewer.addEventListener("tool", syncButtons);
  store.on("display", syncButtons);
  store.on("history", syncButtons);
  store.on("readonly", syncButtons);
  syncButtons();

  // ---- status bar ---------------------------------------------------------------------------
  const zoom = $("#st-zoom", root);
  const pos = $("#st-pos", root);
  const wl = $("#st-wl", root);
  const size = $("#st-size", root);
  function status() {
    const source = viewer.source;
    if (zoom) zoom.textContent = `Zoom ${Math.round(viewer.viewport.scale * 1000) / 10}%`;
    if (pos) {
      const p = viewer.pointer;
      pos.textContent = p ? `x ${Math.floor(p.x)}  y ${Math.floor(p.y)}` : "";
    }
    if (wl && source) {
      const d = store.display;
      let text = d.wlActive && d.width ? `W ${Math.round(d.width)}  L ${Math.round(d.center)}` : "W/L default";
      if (source.pixelsState === "loading") text = "Loading full bit depth…";
      else if (source.pixelsState === "loaded") text += ` · ${source.bitDepth}-bit`;
      else if (source.pixelsState === "failed") text += " · full bit depth unavailable";
      wl.textContent = text;
    }
    if (size && source) {
      const shown = source.pixels && store.display.wlActive ? "full bit depth" : source.level;
      size.textContent = `${source.width}×${source.height} · ${shown}`;
    }
  }
  viewer.addEventListener("status", status);
  store.on("display", status);

  // ---- shortcuts ----------------------------------------------------------------------------
  const viewGroup = "Viewer";
  shortcuts
    .add({ keys: ["plus", "="], label: "Zoom in", group: viewGroup, run: actions["zoom-in"] })
    .add({ keys: ["-"], label: "Zoom out", group: viewGroup, run: actions["zoom-out"] })
    .add({ keys: ["0"], label: "Fit the image", group: viewGroup, run: actions.fit })
    .add({ keys: ["1"], label: "Actual size (100%)", group: viewGroup, run: actions.actual })
    .add({ keys: ["h"], label: "Pan tool (or hold Space / middle button)", group: viewGroup, run: () => viewer.setTool("pan") })
    .add({ keys: ["w"], label: "Window/level tool (drag)", group: viewGroup, run: () => viewer.setTool("window") })
    .add({ keys: ["i"], label: "Invert", group: viewGroup, run: actions.invert })
    .add({ keys: ["r"], label: "Reset view", group: viewGroup, run: actions.reset })
    .add({
      keys: ["o"], label: "Toggle all overlays", group: viewGroup,
      run: () => {
        const on = !Object.values(store.display.layers).some(Boolean);
        store.setDisplay({ layers: { lungs: on, regions: on, labels: on } });
      },
    })
    .add({ keys: ["l"], label: "Toggle lung boxes", group: viewGroup, run: () => store.toggleLayer("lungs") });
  // Only a page that shows findings has a findings layer to toggle (the annotation workspace has none).
  if ($("[data-layer=regions]", root)) {
    shortcuts.add({ keys: ["f"], label: "Toggle findings", group: viewGroup, run: () => store.toggleLayer("regions") });
  }
  if ($("[data-action=undo]", root)) {
    shortcuts
      .add({ keys: ["ctrl+z"], label: "Undo", group: "Editing", run: actions.undo })
      .add({ keys: ["ctrl+shift+z", "ctrl+y"], label: "Redo", group: "Editing", run: actions.redo });
  }

  return { hint, hideHint, status };
}

/** The "Saved · version 3" indicator in the status bar. */
export function bindSaveState(saver, node) {
  saver.addEventListener("status", (e) => {
    node.textContent = e.detail.message;
    node.className = `save-state ${e.detail.status}`;
    node.dataset.status = e.detail.status;
  });
}
