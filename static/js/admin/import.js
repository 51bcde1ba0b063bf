/** Upload radiographs (files or a zip) to the imports API and show the import's report. */

import { api } from "../core/api.js";
import { $, armForm, el, humanize, pageData } from "../core/dom.js";

const urls = pageData("admin-urls");

const form = $("#import-form");
const status = $("#import-status");
const report = $("#import-report");

function renderReport(data) {
  const rows = [
    ["Dataset", data.dataset],
    ["Imported", data.imported],
    ["Duplicates (already there)", data.duplicates],
    ["Excluded (not frontal, burned-in text)", data.excluded.length],
    ["Errors", data.errors.length],
  ];
  const parts = [
    el("dl", { class: "kv" }, rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", { "data-testid": `report-${k.split(" ")[0].toLowerCase()}` }, String(v))])),
    data.excluded.length ? el("div", { class: "mt-s" }, el("h3", {}, "Excluded"), el("ul", { class: "small" }, data.excluded.map((e) => el("li", {}, `${e.file}: ${humanize(e.reason)}`)))) : null,
    data.errors.length ? el("div", { class: "mt-s" }, el("h3", {}, "Errors"), el("ul", { class: "small" }, data.errors.map((e) => el("li", {}, el("strong", {}, e.file), `: ${e.error}`)))) : null,
    data.radiograph_ids.length ? el("p", { class: "small mt-s" }, el("a", { href: `${urls.radiograph_list}?dataset=${encodeURIComponent(data.dataset)}` }, "See the imported radiographs →")) : null,
  ];
  report.replaceChildren(...parts.filter(Boolean)); // replaceChildren would write "null" for a null
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const files = $("#import-files").files;
  const body = new FormData();
  body.append("dataset", form.elements.dataset.value.trim());
  if (form.elements.allow_burned_in.checked) body.append("allow_burned_in", "true");
  for (const file of files) body.append(file.name.toLowerCase().endsWith(".zip") && files.length === 1 ? "archive" : "files", file);
  $("#import-submit").disabled = true;
  status.textContent = `Uploading and importing ${files.length} file(s)…`;
  try {
    renderReport(await api("POST", urls.imports, body));
    status.textContent = "Done.";
  } catch (err) {
    status.textContent = "";
    report.replaceChildren(el("div", { class: "banner error", role: "alert" }, el("strong", {}, "The import failed"), err.detail));
  } finally {
    $("#import-submit").disabled = false;
  }
});
armForm(form);
