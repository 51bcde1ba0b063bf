/**
 * The radiologist's workspace: the model's suggested regions over the image with their finding
 * and confidence; accept, reject, or edit each (brush, eraser, polygon); add regions the model
 * missed; confirm or correct the image-level labels and lung boxes; then accept the radiograph or
 * return it to the annotator with a comment.
 */

import { patch, post } from "../core/api.js";
import { $, askDialog, el, fmtPct, humanize } from "../core/dom.js";
import { boxTool } from "../tools/box.js";
import { brushTool } from "../tools/brush.js";
import { polygonTool } from "../tools/polygon.js";
import { findingColor } from "../viewer/colors.js";
import { MaskDraft, loadMask } from "../viewer/masks.js";
import { bindSaveState } from "../workspace/chrome.js";
import { bindConflictBanner } from "../workspace/conflict.js";
import { bindLabelsPanel } from "../workspace/labels-panel.js";
import { bootWorkspace, clearNotice, fillUrl, notice, openNext } from "../workspace/boot.js";
import { AnnotationSaver } from "../workspace/saver.js";

// Open for review while the server says this user may accept it now (its state, their role, a colleague's lease).
const ws = await bootWorkspace({ readOnly: (detail) => !detail.actions.includes("accept") });
const { config, store, viewer, shortcuts, chrome, detail, refreshHistory } = ws;

// ---- tools ----------------------------------------------------------------------------------
const sizeInput = $("#brush-size");
const sizeLabel = $("#brush-size-value");
const brushSize = () => Number(sizeInput.value);
function setBrushSize(value) {
  sizeInput.value = String(Math.max(Number(sizeInput.min), Math.min(Number(sizeInput.max), Math.round(value))));
  sizeLabel.textContent = `${sizeInput.value} px`;
  viewer.requestRender();
}
sizeInput.addEventListener("input", () => setBrushSize(brushSize()));

viewer.addTool(selectTool());
viewer.addTool(boxTool(viewer));
viewer.addTool(brushTool(viewer, { getSize: brushSize }));
viewer.addTool(brushTool(viewer, { erase: true, getSize: brushSize }));
const polygon = polygonTool(viewer);
viewer.addTool(polygon);
viewer.setTool("select");

/** Click a region to select it; drag to pan. */
function selectTool() {
  let start = null;
  let last = null;
  return {
    name: "select",
    cursor: () => (start ? "grabbing" : "pointer"),
    down(p) { start = p; last = p; },
    move(p) {
      if (!start) return;
      viewer.viewport.panBy(p.cx - last.cx, p.cy - last.cy);
      last = p;
    },
    up(p) {
      if (start && Math.hypot(p.cx - start.cx, p.cy - start.cy) < 4) {
        const hits = store.regions
          .filter((r) => (r.status !== "rejected" || showRejected.checked) && p.x >= r.bbox[0] && p.x < r.bbox[2] && p.y >= r.bbox[1] && p.y < r.bbox[3])
          .sort((a, b) => a.area - b.area);
        if (hits.length) selectRegion(hits[0].id);
      }
      start = null;
    },
  };
}

// ---- saving image-level edits (labels, lung boxes) -----------------------------------------------
const saver = new AnnotationSaver({ store, url: config.urls.annotation, storageKey: `lungmark:draft:${config.id}:${config.user}` });
bindSaveState(saver, $("#save-state"));
bindConflictBanner({ store, saver, container: $("#conflict"), eventsUrl: config.urls.events });
saver.addEventListener("status", (e) => { if (e.detail.status === "saved") refreshHistory(); });
bindLabelsPanel({ store, config, detail });

// ---- regions ----------------------------------------------------------------------------------
const list = $("#regions");
const showRejected = $("#show-rejected");
const editor = $("#editor");
const labelSelect = $("#region-label");
const subtypeSelect = $("#region-subtype");
const descriptionInput = $("#region-description");
let lastLabel = "";

async function withMask(region) {
  try {
    const mask = await loadMask(fillUrl(config.urls.region, { id: region.id }) + "mask.png", findingColor(region.label));
    store.updateRegion(region.id, { mask });
  } catch (err) {
    chrome.hint(`The mask of region #${region.id} could not be loaded.`);
  }
}

store.setRegions(detail.regions.map((r) => ({ ...r, mask: null })));
await Promise.all(store.regions.map(withMask));
const firstOpen = store.regions.find((r) => r.status === "suggested");
if (firstOpen) store.select({ kind: "region", id: firstOpen.id });

function regionName(region) {
  return `${humanize(region.label)}${region.subtype ? ` (${humanize(region.subtype)})` : ""}`;
}

function visibleRegions() {
  return store.regions.filter((r) => r.status !== "rejected" || showRejected.checked || isSelected(r.id));
}

function isSelected(id) {
  return store.selection && store.selection.kind === "region" && store.selection.id === id;
}

function renderRegions() {
  const items = visibleRegions();
  const undecided = store.regions.filter((r) => r.status === "suggested").length;
  const undecidedChip = $("#undecided");
  undecidedChip.textContent = undecided ? `${undecided} to decide` : "all decided";
  undecidedChip.className = `chip ${undecided ? "status-suggested" : "status-accepted"}`;
  if (!items.length) {
    list.replaceChildren(el("p", { class: "muted small" }, store.regions.length ? "Only rejected regions (tick “show rejected”)." : "No findings suggested. Add a region if you see one."));
  } else {
    list.replaceChildren(
      ...items.map((region) => {
        const editing = store.draft && store.draft.id === region.id;
        const swatch = el("span", { class: "swatch" });
        swatch.style.background = findingColor(region.label);
        return el(
          "div",
          {
            class: `region${isSelected(region.id) ? " selected" : ""}`,
            "data-testid": `region-${region.id}`,
            "data-status": region.status,
            onclick: () => selectRegion(region.id),
          },
          el(
            "div",
            { class: "top" },
            swatch,
            el("span", { class: "name" }, regionName(region)),
            region.confidence !== null && region.confidence !== undefined ? el("span", { class: "conf" }, fmtPct(region.confidence)) : null,
            el("span", { class: `chip status-${region.status}` }, editing ? "editing" : region.status),
          ),
          region.description ? el("div", { class: "desc" }, region.description) : null,
          el("div", { class: "desc" }, `${region.source === "model" ? "suggested by the model" : `by ${region.source}`} · ${region.area} px`),
          store.readOnly || editing
            ? null
            : el(
                "div",
                { class: "btns" },
                region.status === "accepted" ? null : el("button", { class: "btn small", type: "button", onclick: (e) => { e.stopPropagation(); decide(region.id, "accept"); } }, "Accept"),
                region.status === "rejected" ? null : el("button", { class: "btn small danger", type: "button", onclick: (e) => { e.stopPropagation(); decide(region.id, "reject"); } }, "Reject"),
                el("button", { class: "btn small", type: "button", onclick: (e) => { e.stopPropagation(); startEdit(region.id); } }, "Edit"),
              ),
        );
      }),
    );
  }
  $("#add-region").disabled = store.readOnly || Boolean(store.draft);
  $("#accept").disabled = store.readOnly;
  $("#return").disabled = store.readOnly;
}
store.on("regions", renderRegions);
store.on("selection", renderRegions);
store.on("draft", renderRegions);
showRejected.addEventListener("change", () => {
  store.setDisplay({ showRejected: showRejected.checked });
  renderRegions();
});

function selectRegion(id) {
  store.select({ kind: "region", id });
  const node = list.querySelector(`[data-testid=region-${id}]`);
  if (node) node.scrollIntoView({ block: "nearest" });
}

function selectedRegion() {
  return store.selection && store.selection.kind === "region" ? store.region(store.selection.id) : null;
}

function moveSelection(step) {
  const items = visibleRegions();
  if (!items.length) return;
  const index = items.findIndex((r) => isSelected(r.id));
  const next = items[(index + step + items.length) % items.length];
  selectRegion(next.id);
}

function regionConflict(err) {
  if (err.code === "stale_version") {
    notice("error", "This region changed", "Someone else changed it after you opened the page; your decision was not saved. ",
      el("button", { class: "btn small", type: "button", onclick: () => window.location.reload() }, "Reload the page"));
  } else {
    notice("error", "Not saved", err.detail);
  }
}

async function decide(id, decision) {
  const region = store.region(id);
  if (!region || store.readOnly || store.draft) return;
  const before = region.status;
  try {
    const updated = await post(fillUrl(config.urls.region_decision, { id, decision }), { version: region.version });
    store.updateRegion(id, { ...updated, mask: region.mask });
    // Ctrl+Z sets the region back to what it was (a new revision: history keeps both decisions).
    if (updated.status !== before) {
      store.record({ label: `${humanize(decision)} region #${id}`, undo: () => setStatus(id, before), redo: () => setStatus(id, updated.status) });
    }
    clearNotice();
    refreshHistory();
    const next = store.regions.find((r) => r.status === "suggested");
    if (next) selectRegion(next.id);
  } catch (err) {
    regionConflict(err);
  }
}

/** Set a region's status as an edit (undo / redo of a decision), based on the version shown. */
async function setStatus(id, status) {
  const region = store.region(id);
  if (!region || store.readOnly) return;
  if (store.draft) {
    notice("warn", "A region is being edited", "Save or cancel it first, then undo again.");
    return;
  }
  try {
    const updated = await patch(fillUrl(config.urls.region, { id }), { version: region.version, status });
    store.updateRegion(id, { ...updated, mask: region.mask });
    clearNotice();
    refreshHistory();
  } catch (err) {
    regionConflict(err);
  }
}

// ---- editing and adding -------------------------------------------------------------------------
function openEditor(draft) {
  editor.classList.remove("hidden");
  $("#editor-title").textContent = draft.id ? `Edit region #${draft.id}` : "New region";
  labelSelect.value = draft.label;
  subtypeSelect.value = draft.subtype;
  subtypeSelect.disabled = draft.label !== "interstitial_shadow";
  descriptionInput.value = draft.description;
}

function closeEditor() {
  editor.classList.add("hidden");
  store.setDraft(null);
  polygon.cancel();
  viewer.setTool("select");
}

async function startEdit(id) {
  const region = store.region(id);
  if (!region || store.readOnly || store.draft) return;
  if (!region.mask) await withMask(region);
  const current = store.region(id);
  const draft = new MaskDraft({ width: detail.width, height: detail.height, color: findingColor(current.label), region: current });
  store.select({ kind: "region", id });
  store.setDraft(draft);
  openEditor(draft);
  viewer.setTool("brush");
}

function startAdd() {
  if (store.readOnly || store.draft) return;
  const draft = new MaskDraft({ width: detail.width, height: detail.height, color: findingColor(lastLabel || "unknown"), label: lastLabel });
  store.select(null);
  store.setDraft(draft);
  openEditor(draft);
  viewer.setTool("brush");
  chrome.hint("Choose the finding, then paint it (B) or outline it (P).");
  labelSelect.focus();
}

labelSelect.addEventListener("change", () => {
  const draft = store.draft;
  if (!draft) return;
  draft.label = labelSelect.value;
  if (draft.label !== "interstitial_shadow") {
    draft.subtype = "";
    subtypeSelect.value = "";
  }
  subtypeSelect.disabled = draft.label !== "interstitial_shadow";
  draft.setColor(findingColor(draft.label || "unknown"));
  store.maskChanged();
});
subtypeSelect.addEventListener("change", () => { if (store.draft) store.draft.subtype = subtypeSelect.value; });
descriptionInput.addEventListener("input", () => { if (store.draft) store.draft.description = descriptionInput.value; });

let saving = false;
async function saveDraft() {
  const draft = store.draft;
  if (!draft || saving) return;
  if (!draft.label) {
    notice("warn", "Choose a finding", "A region needs its finding label (from the list of findings).");
    labelSelect.focus();
    return;
  }
  saving = true;
  try {
    const body = { label: draft.label, subtype: draft.label === "interstitial_shadow" ? draft.subtype : "", description: draft.description };
    if (!draft.id || draft.changed) {
      const mask = await draft.extract();
      if (!mask) {
        notice("warn", "The mask is empty", draft.id ? "Paint the region, or reject it instead." : "Paint or outline the region first.");
        return;
      }
      body.bbox = mask.bbox;
      body.mask = mask.mask;
    }
    let saved;
    if (draft.id) {
      saved = await patch(fillUrl(config.urls.region, { id: draft.id }), { ...body, version: draft.version, status: "accepted" });
    } else {
      saved = await post(config.urls.regions, body);
    }
    // Show the saved region at once from what was drawn; the stored mask replaces it when loaded.
    const shown = draft.crop(saved.bbox);
    if (draft.id) store.updateRegion(draft.id, { ...saved, mask: shown });
    else store.addRegion({ ...saved, mask: shown });
    lastLabel = draft.label;
    withMask(store.region(saved.id));
    closeEditor();
    clearNotice();
    selectRegion(saved.id);
    refreshHistory();
  } catch (err) {
    if (err.status) regionConflict(err);
    else throw err;
  } finally {
    saving = false;
  }
}

let cancelArmed = false;
function cancelDraft() {
  if (!store.draft) return;
  if (polygon.cancel()) return;
  if (store.draft.changed && !cancelArmed) {
    cancelArmed = true;
    chrome.hint("Press Esc again (or Cancel) to discard your changes to this region.");
    setTimeout(() => { cancelArmed = false; }, 3000);
    return;
  }
  cancelArmed = false;
  closeEditor();
}

$("#region-save").addEventListener("click", saveDraft);
$("#region-cancel").addEventListener("click", () => { cancelArmed = true; cancelDraft(); });
$("#add-region").addEventListener("click", startAdd);

// ---- radiograph decision -------------------------------------------------------------------------
const reviewOrder = () => sessionStorage.getItem("lungmark:review-order") || "uncertainty";

let deciding = false;
async function acceptRadiograph() {
  if (store.readOnly || deciding) return;
  if (store.draft) {
    notice("warn", "A region is being edited", "Save or cancel it first.");
    return;
  }
  const undecided = store.regions.filter((r) => r.status === "suggested").length;
  if (undecided) {
    notice("warn", "Regions still undecided", `${undecided} suggested region(s) need a decision: accept, edit or reject each.`);
    return;
  }
  if (!store.doc.right || !store.doc.left) {
    notice("warn", "Lung boxes missing", "Both lung boxes are needed: draw them with the lung-box tool (M), or return the radiograph.");
    return;
  }
  deciding = true;
  try {
    await saver.flush();
    const doc = store.doc;
    await post(config.urls.accept, { version: store.version, labels: doc.labels, right: doc.right, left: doc.left });
    saver.clearLocal();
    notice("info", "Accepted", "Opening the next radiograph…");
    await openNext(config, "review", { order: reviewOrder() });
  } catch (err) {
    if (err.code !== "stale_version" || !store.conflict) notice("error", "Not accepted", err.detail || String(err));
  } finally {
    deciding = false;
  }
}

async function returnRadiograph() {
  if (store.readOnly || deciding) return;
  const data = await askDialog($("#return-dialog"));
  if (!data || !data.comment.trim()) return;
  deciding = true;
  try {
    await saver.flush().catch(() => {});
    await post(config.urls.return, { version: store.version, comment: data.comment });
    saver.clearLocal();
    await openNext(config, "review", { order: reviewOrder() });
  } catch (err) {
    notice("error", "Not returned", err.detail);
  } finally {
    deciding = false;
  }
}

async function skip() {
  if (deciding) return;
  const data = await askDialog($("#skip-dialog"));
  if (!data || !data.note.trim()) return;
  deciding = true;
  try {
    await saver.flush().catch(() => {});
    // Skipping gives the lease back; without it the queue would hand this radiograph out again.
    await post(config.urls.skip, { reason: data.note.trim() });
    await openNext(config, "review", { order: reviewOrder() });
  } catch (err) {
    notice("error", "Not skipped", err.detail);
  } finally {
    deciding = false;
  }
}

$("#accept").addEventListener("click", acceptRadiograph);
$("#skip").addEventListener("click", skip);
$("#return").addEventListener("click", returnRadiograph);

// ---- shortcuts ----------------------------------------------------------------------------------
const open = () => !store.readOnly;
const editing = () => Boolean(store.draft);
const notEditing = () => !store.readOnly && !store.draft;
shortcuts
  .add({ keys: ["j", "down"], label: "Next region", group: "Review", run: () => moveSelection(1), when: () => !store.draft })
  .add({ keys: ["k", "up"], label: "Previous region", group: "Review", run: () => moveSelection(-1), when: () => !store.draft })
  .add({ keys: ["a"], label: "Accept the selected region", group: "Review", run: () => selectedRegion() && decide(selectedRegion().id, "accept"), when: notEditing })
  .add({ keys: ["x"], label: "Reject the selected region", group: "Review", run: () => selectedRegion() && decide(selectedRegion().id, "reject"), when: notEditing })
  .add({ keys: ["e"], label: "Edit the selected region (while editing: eraser)", group: "Review", run: () => (store.draft ? viewer.setTool("eraser") : selectedRegion() && startEdit(selectedRegion().id)), when: open })
  .add({ keys: ["shift+a"], label: "Add a region", group: "Review", run: startAdd, when: notEditing })
  .add({ keys: ["b"], label: "Brush", group: "Review", run: () => viewer.setTool("brush"), when: open })
  .add({ keys: ["p"], label: "Polygon", group: "Review", run: () => viewer.setTool("polygon"), when: open })
  .add({ keys: ["["], label: "Smaller brush", group: "Review", run: () => setBrushSize(brushSize() / 1.25) })
  .add({ keys: ["]"], label: "Larger brush", group: "Review", run: () => setBrushSize(brushSize() * 1.25) })
  .add({ keys: ["enter"], label: "Close the polygon / save the region", group: "Review", run: () => (polygon.points.length >= 3 ? polygon.close() : saveDraft()), when: editing })
  .add({ keys: ["ctrl+s"], label: "Save the region", group: "Review", run: saveDraft, when: editing, inInputs: true })
  .add({ keys: ["backspace"], label: "Remove the last polygon point", group: "Review", run: () => polygon.removeLast(), when: editing })
  .add({ keys: ["esc"], label: "Cancel the polygon / the edit", group: "Review", run: cancelDraft, when: editing, inInputs: true })
  .add({ keys: ["v"], label: "Select / pan tool", group: "Review", run: () => viewer.setTool("select") })
  .add({ keys: ["m"], label: "Lung-box tool", group: "Review", run: () => viewer.setTool("box"), when: open })
  .add({ keys: ["ctrl+enter"], label: "Accept the radiograph, then next", group: "Review", run: acceptRadiograph, when: open, inInputs: true })
  .add({ keys: ["n"], label: "Skip to the next radiograph (with a reason)", group: "Review", run: skip, when: () => !store.draft });
shortcuts.render($("#shortcuts"));

// ---- on opening -------------------------------------------------------------------------------------
if (detail.leased_to && detail.leased_to !== config.user) {
  notice("warn", `${detail.leased_to} holds this radiograph`, "They have it open: only they can change it until they finish or their lease runs out, so it opens read-only here.");
} else if (store.readOnly) {
  notice("info", `This radiograph is ${humanize(detail.state)}`, "It is not waiting for review, so it opens read-only. ",
    el("a", { href: fillUrl(config.urls.radiograph_page, { id: config.id }) }, "Open its page"));
}
const restored = saver.restoreLocal();
if (restored === "restored") chrome.hint("Restored changes that were kept in this browser; saving them now.");
saver.setStatus(store.conflict ? "conflict" : "saved", store.conflict ? "Not saved: conflict" : `Version ${store.version}`);
renderRegions();
