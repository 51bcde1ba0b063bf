/** A radiograph's own page, read-only: the viewer with every overlay, the findings and the history. */

import { $, $$, el, fmtPct } from "../core/dom.js";
import { findingName, word } from "../core/words.js";
import { findingColor } from "../viewer/colors.js";
import { loadMask } from "../viewer/masks.js";
import { bootWorkspace, fillUrl } from "../workspace/boot.js";

const { config, store, shortcuts, detail } = await bootWorkspace({ readOnly: () => true });
const showRejected = $("#show-rejected");

function renderBoxes() {
  for (const item of $$(".box-item")) {
    const box = store.doc[item.dataset.side];
    $(".coords", item).textContent = box ? `[${box.join(", ")}]` : "not drawn";
  }
}

function renderRegions() {
  const items = store.regions.filter((r) => r.status !== "rejected" || showRejected.checked);
  const list = $("#regions");
  if (!items.length) {
    list.replaceChildren(el("p", { class: "muted small" }, "No findings."));
    return;
  }
  list.replaceChildren(
    ...items.map((r) => {
      const swatch = el("span", { class: "swatch" });
      swatch.style.background = findingColor(r.label);
      return el("div", { class: "region", "data-status": r.status, onclick: () => store.select({ kind: "region", id: r.id }) },
        el("div", { class: "top" }, swatch, el("span", { class: "name" }, findingName(r.label, r.subtype)),
          r.confidence !== null && r.confidence !== undefined ? el("span", { class: "conf" }, fmtPct(r.confidence)) : null,
          el("span", { class: `chip status-${r.status}` }, word("region_status", r.status))),
        r.description ? el("div", { class: "desc" }, r.description) : null);
    }),
  );
}

store.on("regions", renderRegions);
showRejected.addEventListener("change", () => {
  store.setDisplay({ showRejected: showRejected.checked });
  renderRegions();
});
renderBoxes();
store.setRegions(detail.regions.map((r) => ({ ...r, mask: null })));
await Promise.all(
  store.regions.map(async (r) => {
    try {
      store.updateRegion(r.id, { mask: await loadMask(fillUrl(config.urls.region, { id: r.id }) + "mask.png", findingColor(r.label)) });
    } catch (err) { /* outline only */ }
  }),
);
shortcuts.render($("#shortcuts"));
