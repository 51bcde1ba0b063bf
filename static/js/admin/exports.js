/**
 * Exports: create one (POST to the exports API), follow the list while snapshots are being written,
 * download a finished one. The download is a plain form POST so the browser streams the zip to
 * disk, however large it is.
 */

import { get, post } from "../core/api.js";
import { $, $$, armForm, el, fmtTime, pageData } from "../core/dom.js";

const urls = pageData("admin-urls");

const form = $("#export-form");
const status = $("#export-status");
const listBox = $("#export-list");
const downloadForm = $("#download-form");
let timer = 0;

function download(url) {
  downloadForm.setAttribute("action", url);
  downloadForm.submit();
}

function progressBar(value) {
  const bar = el("div", { class: "progress" }, el("span"));
  bar.firstChild.style.width = `${Math.round((value || 0) * 100)}%`;
  return bar;
}

function counts(c) {
  if (!c || !Object.keys(c).length) return "";
  return Object.entries(c).filter(([, v]) => typeof v === "number").map(([k, v]) => `${k.replace(/_/g, " ")} ${v}`).join(" · ");
}

async function refresh() {
  clearTimeout(timer);
  let data;
  try {
    data = await get(`${urls.exports}?limit=50`);
  } catch (err) {
    listBox.replaceChildren(el("div", { class: "banner error" }, `Exports are unavailable: ${err.detail}`));
    return;
  }
  const items = data.results || data;
  if (!items.length) {
    listBox.replaceChildren(el("p", { class: "empty" }, "No exports yet."));
    return;
  }
  listBox.replaceChildren(
    el("table", { class: "data" },
      el("thead", {}, el("tr", {}, ["#", "Created", "By", "Datasets", "Options", "Status", "Contents", ""].map((h) => el("th", {}, h)))),
      el("tbody", {}, items.map((x) => el("tr", { "data-testid": `export-${x.id}`, "data-status": x.status },
        el("td", {}, `#${x.id}`),
        el("td", { class: "nowrap" }, fmtTime(x.created_at)),
        el("td", {}, x.created_by || "—"),
        el("td", {}, x.datasets.join(", ")),
        el("td", { class: "small muted" }, Object.entries(x.options || {}).map(([k, v]) => `${k.replace(/_/g, " ")}: ${v}`).join(", ")),
        el("td", {}, el("span", { class: `chip ${x.status === "done" ? "status-accepted" : x.status === "failed" ? "status-rejected" : ""}` }, x.status),
          x.status === "running" || x.status === "pending" ? progressBar(x.progress) : null,
          x.error ? el("div", { class: "small muted" }, x.error) : null),
        el("td", { class: "small" }, counts(x.counts)),
        el("td", {}, x.download ? el("button", { class: "btn small", type: "button", onclick: () => download(x.download) }, "Download zip") : null),
      ))),
    ),
  );
  if (items.some((x) => x.status === "pending" || x.status === "running")) timer = setTimeout(refresh, 1500);
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const datasets = $$("input[name=datasets]:checked", form).map((i) => i.value);
  if (!datasets.length) {
    status.textContent = "Choose at least one dataset.";
    return;
  }
  const body = { datasets, lung_masks: form.elements.lung_masks.value, reviewed_only: $("#reviewed-only").checked, seed: Number(form.elements.seed.value || 0) };
  try {
    const created = await post(urls.exports, body);
    status.textContent = `Export #${created.id} requested.`;
  } catch (err) {
    status.textContent = err.detail;
  }
  refresh();
});
armForm(form);

refresh();
