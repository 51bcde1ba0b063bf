/** What every radiograph page does first: read its config, load the radiograph, open the viewer. */

import { get, post } from "../core/api.js";
import { $, el, fillUrl, fmtPct, pageData, releaseFocusAfterClicks } from "../core/dom.js";
import { Shortcuts } from "../core/keyboard.js";
import { Store } from "../viewer/store.js";
import { Viewer } from "../viewer/viewer.js";
import { setupViewerChrome } from "./chrome.js";
import { renderHistory } from "./history.js";

export { fillUrl };

export async function bootWorkspace({ readOnly = () => false } = {}) {
  const config = pageData("workspace-config");
  releaseFocusAfterClicks();
  const store = new Store();
  const shortcuts = new Shortcuts();
  const viewer = new Viewer({ container: $("#viewer"), store });
  const chrome = setupViewerChrome({ viewer, store, shortcuts });
  const historyBox = $("#history");
  const refreshHistory = () => renderHistory(historyBox, config.urls.events);

  let detail;
  try {
    detail = await get(config.urls.detail);
  } catch (err) {
    $("#viewer-loading").textContent = `Cannot open this radiograph: ${err.detail}`;
    throw err;
  }
  store.load(detail, { readOnly: readOnly(detail, config) });
  if (!store.readOnly && (!detail.leased_to || detail.leased_to === config.user)) keepLease(config, store);
  try {
    await viewer.open(detail);
    $("#viewer-loading").remove();
  } catch (err) {
    $("#viewer-loading").textContent = "The image could not be loaded.";
  }
  refreshHistory();
  renderModel(detail.prediction);
  return { config, store, viewer, shortcuts, chrome, detail, refreshHistory };
}

/**
 * Hold this radiograph while its page is open and visible: the queue hands a radiograph whose lease
 * ran out to a colleague, and only saves renewed it. Stops for good once someone else holds it, it
 * left the queue (409) or may not be held by this user (403, 404); other failures retry at the next beat.
 */
function keepLease(config, store) {
  let timer = null;
  const renew = async () => {
    if (document.visibilityState !== "visible" || store.readOnly) return;
    try {
      await post(config.urls.lease);
    } catch (err) {
      if ([403, 404, 409].includes(err.status) && timer !== null) {
        clearInterval(timer);
        timer = null;
      }
    }
  };
  timer = setInterval(renew, config.lease_renew_ms);
  document.addEventListener("visibilitychange", () => timer !== null && renew());
  renew();
}


/** The model's view of the image beside it: probabilities, uncertainty and version. */
export function renderModel(prediction) {
  const section = $("#model-section");
  const box = $("#model");
  if (!section || !box) return;
  section.classList.remove("hidden");
  if (!prediction) {
    box.replaceChildren(el("p", { class: "muted small" }, "No model suggestion for this radiograph (no active model, or not pre-annotated yet)."));
    return;
  }
  const rows = [
    ["Healthy", prediction.healthy],
    ["COVID", prediction.covid],
    ["Other disease", prediction.other_disease],
  ];
  const bar = (value) => {
    const inner = el("span");
    inner.style.width = `${Math.round((value || 0) * 100)}%`;
    return el("div", { class: "bar" }, inner);
  };
  box.replaceChildren(
    ...rows.map(([name, value]) => el("div", { class: "prob", "data-testid": `prob-${name}` }, el("span", {}, name), bar(value), el("span", { class: "val" }, fmtPct(value)))),
    el(
      "dl",
      { class: "kv" },
      el("dt", {}, "Uncertainty"), el("dd", {}, prediction.uncertainty === null || prediction.uncertainty === undefined ? "—" : prediction.uncertainty.toFixed(3)),
      el("dt", {}, "Model"), el("dd", { "data-testid": "model-version" }, prediction.model_version),
    ),
  );
}

/** Lease the next radiograph of a queue and open it (or go back to the queue page when empty). */
export async function openNext(config, queue, body = {}) {
  const next = await post(config.urls[`${queue}_next`], body);
  if (!next) {
    window.location.assign(`${config.urls[`${queue}_queue`]}?empty=1`);
    return null;
  }
  window.location.assign(fillUrl(config.urls[`${queue}_page`], { id: next.id }));
  return next;
}

/** A banner in the side panel (``kind``: info, warn, error); returns the node. */
export function notice(kind, title, text, ...extra) {
  const box = $("#notice");
  const node = el("div", { class: `banner ${kind}`, role: kind === "error" ? "alert" : "status" }, title ? el("strong", {}, title) : null, text, ...extra);
  box.replaceChildren(node);
  box.classList.remove("hidden");
  return node;
}

export function clearNotice() {
  const box = $("#notice");
  box.replaceChildren();
  box.classList.add("hidden");
}
