/** Model registry: versions with their test metrics, promote, roll back, register; ROC curves. */

import { api, get, post } from "../core/api.js";
import { $, armForm, el, fillUrl, fmtTime, pageData } from "../core/dom.js";

const urls = pageData("admin-urls");
import { PALETTE, legend, lineChart } from "../core/plots.js";

const METRICS = [
  ["covid_auc", "COVID AUC"],
  ["covid_accuracy", "COVID acc."],
  ["covid_sensitivity_at_99_specificity", "Sens @99% spec."],
  ["covid_eer", "EER"],
  ["lung_dice", "Lung Dice"],
  ["disease_dice", "Disease Dice"],
  ["healthy_accuracy", "Healthy acc."],
  ["other_disease_accuracy", "Other acc."],
];
const listBox = $("#model-list");
const status = $("#model-status");

const fmt = (v) => (v === null || v === undefined || typeof v !== "number" ? "—" : v.toFixed(3));

async function act(url, what) {
  status.textContent = `${what}…`;
  try {
    const result = await post(url, { preannotate: true });
    status.textContent = `${what}: ${result.name} is now active.`;
  } catch (err) {
    status.textContent = `${what} failed: ${err.detail}`;
  }
  refresh();
}

async function refresh() {
  let models;
  try {
    models = await get(urls.models);
  } catch (err) {
    listBox.replaceChildren(el("div", { class: "banner error" }, `The model registry is unavailable: ${err.detail}`));
    return;
  }
  models = models.results || models;
  showRollback(models.find((m) => m.is_active));
  if (!models.length) {
    listBox.replaceChildren(el("p", { class: "empty" }, "No model registered yet: register a checkpoint below, or let a training run produce one."));
    return;
  }
  listBox.replaceChildren(
    el("table", { class: "data" },
      el("thead", {}, el("tr", {}, el("th", {}, "Version"), el("th", {}, "Registered"), ...METRICS.map(([, n]) => el("th", { class: "num" }, n)), el("th", {}, ""))),
      el("tbody", {}, models.map((m) => el("tr", { "data-testid": `model-${m.id}` },
        el("td", {}, el("strong", {}, m.name), " ", m.is_active ? el("span", { class: "chip status-accepted" }, "active") : null,
          m.previous ? el("div", { class: "small muted" }, `previous: ${m.previous.name}`) : null),
        el("td", { class: "small nowrap" }, fmtTime(m.created_at)),
        ...METRICS.map(([k]) => el("td", { class: "num" }, fmt((m.metrics || {})[k]))),
        el("td", {}, m.is_active ? null : el("button", { class: "btn small", type: "button", onclick: () => act(fillUrl(urls.model_activate, { id: m.id }), "Promote") }, "Promote")),
      ))),
    ),
  );
}

/** Roll back is offered only when the active model replaced another one (what it would go back to). */
function showRollback(active) {
  const button = $("#rollback");
  const previous = active && active.previous;
  button.disabled = !previous;
  button.title = previous ? `Make ${previous.name} active again` : active ? `${active.name} did not replace another model: nothing to roll back to` : "No model is active: nothing to roll back to";
}

function drawRoc() {
  const curves = (pageData("roc-data") || []).filter((c) => c.roc && c.roc.fpr && c.roc.fpr.length);
  const box = $("#roc");
  if (!curves.length) {
    box.replaceChildren(el("p", { class: "empty" }, "No ROC curve recorded yet (a checkpoint's metrics carry it after evaluation)."));
    return;
  }
  const series = curves.map((c, i) => ({
    name: `${c.name}${c.active ? " (active)" : ""}${typeof c.auc === "number" ? ` · AUC ${c.auc.toFixed(3)}` : ""}`,
    color: PALETTE[i % PALETTE.length],
    points: c.roc.fpr.map((x, j) => [x, c.roc.tpr[j]]),
  }));
  box.replaceChildren(lineChart({ series, xLabel: "False positive rate", yLabel: "True positive rate", xDomain: [0, 1], yDomain: [0, 1], diagonal: true, label: "COVID ROC curves" }), legend(series));
}

$("#rollback").addEventListener("click", () => act(urls.model_rollback, "Roll back"));
$("#upload-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const body = new FormData(form);
  if (!body.get("activate")) body.set("activate", "false");
  $("#upload-status").textContent = "Uploading…";
  try {
    const created = await api("POST", urls.models, body);
    $("#upload-status").textContent = `Registered ${created.name}.`;
    form.reset();
  } catch (err) {
    $("#upload-status").textContent = err.detail;
  }
  refresh();
});
armForm($("#upload-form"));

refresh();
drawRoc();
