/** The image-level part of the side panel: H/C/O labels with their provenance, view, lung boxes. */

import { $, $$, el } from "../core/dom.js";
import { word } from "../core/words.js";

export function bindLabelsPanel({ store, config, detail, extra = () => {} }) {
  const viewSelect = $("#view");
  for (const [value, label] of config.vocab.views) viewSelect.append(el("option", { value }, label));

  function render() {
    const doc = store.doc;
    for (const item of $$(".box-item")) {
      const side = item.dataset.side;
      const box = doc[side];
      $(".coords", item).textContent = box ? `[${box.join(", ")}]` : "not drawn";
      item.classList.toggle("selected", Boolean(store.selection && store.selection.kind === "box" && store.selection.side === side));
    }
    for (const select of $$("select[data-label]")) {
      select.value = doc.labels[select.dataset.label];
      select.disabled = store.readOnly;
    }
    for (const node of $$("[data-source]")) {
      const name = node.dataset.source;
      const changed = store.base && store.base.labels[name] !== doc.labels[name];
      const source = (detail.label_sources || {})[name];
      node.textContent = changed ? "Changed by you" : source && source !== "none" ? `Source: ${word("provenance", source)}` : "";
    }
    // A view people may not choose (lateral, CT: excluded radiographs, shown read-only) still shows its name.
    if (doc.view && ![...viewSelect.options].some((o) => o.value === doc.view)) viewSelect.append(el("option", { value: doc.view }, word("view", doc.view)));
    viewSelect.value = doc.view;
    viewSelect.disabled = store.readOnly;
    extra();
  }

  for (const item of $$(".box-item")) item.addEventListener("click", () => store.select({ kind: "box", side: item.dataset.side }));
  for (const select of $$("select[data-label]")) {
    select.addEventListener("change", () => store.edit((d) => { d.labels[select.dataset.label] = select.value; }, { label: "Change label" }));
  }
  viewSelect.addEventListener("change", () => store.edit((d) => { d.view = viewSelect.value; }, { label: "Change view" }));
  store.on("annotation", render);
  store.on("selection", render);
  store.on("readonly", render);
  return render;
}
