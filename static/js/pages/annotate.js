/**
 * The annotator's workspace: the two lung boxes (pre-filled from the model's suggestion), the
 * image-level labels and view; drafts autosave; submit sends the radiograph to review and opens
 * the next one; skip and exclude record their reason.
 */

import { post } from "../core/api.js";
import { $, askDialog, el, humanize } from "../core/dom.js";
import { boxTool } from "../tools/box.js";
import { bindSaveState } from "../workspace/chrome.js";
import { bindConflictBanner } from "../workspace/conflict.js";
import { bootWorkspace, clearNotice, fillUrl, notice, openNext } from "../workspace/boot.js";
import { bindLabelsPanel } from "../workspace/labels-panel.js";
import { AnnotationSaver } from "../workspace/saver.js";

// Whether this user may edit it now (its state, their role, a colleague's lease) is the server's answer.
const ws = await bootWorkspace({ readOnly: (detail) => !detail.editable });
const { config, store, viewer, shortcuts, chrome, detail, refreshHistory } = ws;

// ---- tools ----------------------------------------------------------------------------------
const boxes = boxTool(viewer);
viewer.addTool(boxes);
viewer.setTool("box");
store.select({ kind: "box", side: "right" });

// ---- saving ---------------------------------------------------------------------------------
const saver = new AnnotationSaver({ store, url: config.urls.annotation, storageKey: `lungmark:draft:${config.id}:${config.user}` });
bindSaveState(saver, $("#save-state"));
bindConflictBanner({ store, saver, container: $("#conflict"), eventsUrl: config.urls.events });
saver.addEventListener("status", (e) => {
  if (e.detail.status === "saved") refreshHistorySoon();
});
let historyTimer = 0;
function refreshHistorySoon() {
  clearTimeout(historyTimer);
  historyTimer = setTimeout(refreshHistory, 400);
}

// ---- side panel -------------------------------------------------------------------------------
function boxesSourceText() {
  const lungs = detail.lungs || {};
  if (lungs.right || lungs.left) {
    if (lungs.source === "model") return `Pre-filled from the model's suggestion${detail.prediction ? ` (${detail.prediction.model_version})` : ""}.`;
    return `Last saved by ${humanize(lungs.source || "someone")} (${humanize(lungs.status || "")}).`;
  }
  if (detail.prediction && (detail.prediction.right || detail.prediction.left)) return `Pre-filled from the model's suggestion (${detail.prediction.model_version}).`;
  return "No suggestion: drag on the image to draw the patient's right lung, then the left.";
}

const renderPanel = bindLabelsPanel({
  store, config, detail,
  extra() {
    const doc = store.doc;
    const swapped = doc.right && doc.left && doc.right[0] + doc.right[2] > doc.left[0] + doc.left[2];
    $("#sides-warning").classList.toggle("hidden", !swapped);
    for (const id of ["#submit", "#skip", "#exclude", "#redraw", "#swap", "#clear-box"]) $(id).disabled = store.readOnly;
  },
});
$("#boxes-source").textContent = boxesSourceText();

function selectedSide() {
  return store.selection && store.selection.kind === "box" ? store.selection.side : "right";
}
function redraw() {
  viewer.setTool("box");
  boxes.redraw(selectedSide());
  chrome.hint(`Drag on the image to draw the patient ${selectedSide()} lung box.`);
}
function swap() {
  store.edit((d) => { [d.right, d.left] = [d.left, d.right]; }, { label: "Swap sides" });
}
function clearSelected() {
  const side = selectedSide();
  store.edit((d) => { d[side] = null; }, { label: `Clear ${side} box` });
}
function nudge(dx, dy) {
  const side = selectedSide();
  const box = store.doc[side];
  if (!box) return;
  const mx = Math.min(detail.width - box[2], Math.max(-box[0], dx));
  const my = Math.min(detail.height - box[3], Math.max(-box[1], dy));
  store.edit((d) => { d[side] = [box[0] + mx, box[1] + my, box[2] + mx, box[3] + my]; }, { label: "Nudge box" });
}
$("#redraw").addEventListener("click", redraw);
$("#swap").addEventListener("click", swap);
$("#clear-box").addEventListener("click", clearSelected);

// ---- workflow actions -----------------------------------------------------------------------
let busy = false;
async function guarded(action) {
  if (busy) return;
  busy = true;
  try {
    await action();
  } finally {
    busy = false;
  }
}

function submit() {
  return guarded(async () => {
    if (store.readOnly) return;
    if (store.conflict) {
      chrome.hint("Resolve the conflict first: reload their version or keep yours.");
      return;
    }
    if (!store.doc.right || !store.doc.left) {
      notice("warn", "Both lung boxes are needed", "Draw the patient's right and left lung boxes before submitting.");
      return;
    }
    try {
      await saver.flush({ submit: true });
    } catch (err) {
      if (err.code !== "stale_version") notice("error", "Not submitted", saver.message || err.detail);
      return;
    }
    saver.clearLocal();
    notice("info", "Submitted", "Sent to review. Opening the next radiograph…");
    await openNext(config, "annotate");
  });
}

function reasonText(data) {
  const note = (data.note || "").trim();
  if (data.reason === "other") return note;
  return note ? `${data.reason}: ${note}` : data.reason;
}

function skip() {
  return guarded(async () => {
    const data = await askDialog($("#skip-dialog"));
    if (!data) return;
    const reason = reasonText(data);
    if (!reason) {
      notice("warn", "Not skipped", "Say why you skip this radiograph.");
      return;
    }
    await saver.flush().catch(() => {});
    try {
      await post(config.urls.skip, { reason });
    } catch (err) {
      notice("error", "Not skipped", err.detail);
      return;
    }
    await openNext(config, "annotate");
  });
}

function exclude() {
  return guarded(async () => {
    if (store.readOnly) return;
    const data = await askDialog($("#exclude-dialog"));
    if (!data) return;
    await saver.flush().catch(() => {});
    try {
      await post(config.urls.exclude, { version: store.version, reason: data.reason, note: data.note || "" });
    } catch (err) {
      notice("error", "Not excluded", err.code === "stale_version" ? "Someone else saved this radiograph meanwhile: reload the page to see it." : err.detail);
      return;
    }
    saver.clearLocal();
    await openNext(config, "annotate");
  });
}

function next() {
  if (!store.readOnly && store.state !== "lungs_done") return skip();
  return guarded(() => openNext(config, "annotate"));
}

$("#submit").addEventListener("click", submit);
$("#skip").addEventListener("click", skip);
$("#exclude").addEventListener("click", exclude);

// ---- shortcuts --------------------------------------------------------------------------------
const editing = () => !store.readOnly;
shortcuts
  .add({ keys: ["enter"], label: "Accept the boxes as shown and submit, then next", group: "Annotation", run: submit })
  .add({ keys: ["n"], label: "Next radiograph (asks to skip if not submitted)", group: "Annotation", run: next })
  .add({ keys: ["s"], label: "Skip with a reason", group: "Annotation", run: skip })
  .add({ keys: ["x"], label: "Exclude (not a frontal chest X-ray)", group: "Annotation", run: exclude, when: editing })
  .add({ keys: ["b"], label: "Box tool", group: "Annotation", run: () => viewer.setTool("box") })
  .add({ keys: ["tab"], label: "Select the other lung box", group: "Annotation", run: () => store.select({ kind: "box", side: selectedSide() === "right" ? "left" : "right" }) })
  .add({ keys: ["d"], label: "Redraw the selected box", group: "Annotation", run: redraw, when: editing })
  .add({ keys: ["shift+s"], label: "Swap right and left", group: "Annotation", run: swap, when: editing })
  .add({ keys: ["delete", "backspace"], label: "Clear the selected box", group: "Annotation", run: clearSelected, when: editing })
  .add({ keys: ["left"], label: "Nudge the box 1 px (Shift: 10 px)", group: "Annotation", run: () => nudge(-1, 0), when: editing })
  .add({ keys: ["right"], label: "", hidden: true, group: "Annotation", run: () => nudge(1, 0), when: editing })
  .add({ keys: ["up"], label: "", hidden: true, group: "Annotation", run: () => nudge(0, -1), when: editing })
  .add({ keys: ["down"], label: "", hidden: true, group: "Annotation", run: () => nudge(0, 1), when: editing })
  .add({ keys: ["shift+left"], label: "", hidden: true, group: "Annotation", run: () => nudge(-10, 0), when: editing })
  .add({ keys: ["shift+right"], label: "", hidden: true, group: "Annotation", run: () => nudge(10, 0), when: editing })
  .add({ keys: ["shift+up"], label: "", hidden: true, group: "Annotation", run: () => nudge(0, -10), when: editing })
  .add({ keys: ["shift+down"], label: "", hidden: true, group: "Annotation", run: () => nudge(0, 10), when: editing });
shortcuts.render($("#shortcuts"));

// ---- what the user should know on opening ------------------------------------------------------
if (detail.leased_to && detail.leased_to !== config.user) {
  notice("warn", `${detail.leased_to} holds this radiograph`, "They have it open: only they can change it until they finish or their lease runs out, so it opens read-only here.");
} else if (store.readOnly) {
  notice("info", `This radiograph is ${humanize(detail.state)}`, "It can no longer be changed here. ", el("a", { href: fillUrl(config.urls.radiograph_page, { id: config.id }) }, "Open its page"));
} else if (detail.state === "returned" && detail.return_comment) {
  notice("warn", "Returned by the radiologist", detail.return_comment);
} else {
  clearNotice();
}
const restored = saver.restoreLocal();
if (restored === "restored") chrome.hint("Restored changes that were kept in this browser; saving them now.");
renderPanel();
saver.setStatus(store.conflict ? "conflict" : "saved", store.conflict ? "Not saved: conflict" : `Version ${store.version}`);
