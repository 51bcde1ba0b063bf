/**
 * Training runs: the preset to start with and roughly how long it takes, the list with progress
 * (followed while one is live), per-epoch learning curves drawn live, the gate's decision and the log.
 */

import { get, post } from "../core/api.js";
import { $, armForm, el, fillUrl, fmtTime, pageData } from "../core/dom.js";

const urls = pageData("admin-urls");
import { PALETTE, legend, lineChart } from "../core/plots.js";

const listBox = $("#run-list");
let selected = null;
let timer = 0;
let presets = null;

/** "about 12 min" / "about 40 s" / "about 2 h 5 min". */
export function duration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "—";
  if (seconds < 90) return `${Math.max(1, Math.round(seconds))} s`;
  const minutes = Math.round(seconds / 60);
  if (minutes < 120) return `${minutes} min`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

function bar(value) {
  const b = el("div", { class: "progress" }, el("span"));
  b.firstChild.style.width = `${Math.round((value || 0) * 100)}%`;
  return b;
}

function statusChip(run) {
  const cls = { succeeded: "status-accepted", failed: "status-rejected" }[run.status] || "";
  return el("span", { class: `chip ${cls}` }, run.status);
}

const live = (run) => run.status === "running" || run.status === "queued";

/** Time left of a running run: from its progress so far, else the preset's estimate. */
function remaining(run) {
  const started = run.started_at ? new Date(run.started_at).getTime() : null;
  if (started && run.progress > 0.1) return ((Date.now() - started) / 1000) * (1 - run.progress) / run.progress;
  return run.config && run.config.estimate_seconds ? run.config.estimate_seconds * (1 - (run.progress || 0)) : null;
}

async function loadPresets() {
  try {
    presets = await get(urls.training_presets);
  } catch (err) {
    $("#train-plan").textContent = `Presets are unavailable: ${err.detail}`;
    return;
  }
  $("#preset").replaceChildren(...presets.presets.map((p) => el("option", { value: p.name, selected: p.name === presets.default }, `${p.title} (${p.name})`)));
  showPlan();
}

function showPlan() {
  if (!presets) return;
  const preset = presets.presets.find((p) => p.name === $("#preset").value) || presets.presets[0];
  if (!preset) return;
  // The estimate is for the preset's own epochs; another number of epochs scales it.
  const epochs = Number($("#epochs").value) || preset.epochs;
  const seconds = preset.estimate_seconds * (epochs / Math.max(1, preset.epochs));
  $("#epochs").placeholder = String(preset.epochs);
  $("#train-plan").textContent = `${preset.title} on ${preset.device}, ${epochs} epochs: about ${duration(seconds)} for ${presets.images} annotated radiographs. ${preset.description}`;
}

async function refresh() {
  clearTimeout(timer);
  let data;
  try {
    data = await get(`${urls.training_runs}?limit=30`);
  } catch (err) {
    listBox.replaceChildren(el("div", { class: "banner error" }, `Training runs are unavailable: ${err.detail}`));
    return;
  }
  const runs = data.results || data;
  if (!runs.length) {
    listBox.replaceChildren(el("p", { class: "empty" }, "No training run yet."));
    return;
  }
  listBox.replaceChildren(
    el("table", { class: "data" },
      el("thead", {}, el("tr", {}, ["#", "Started", "Trigger", "Preset", "By", "Status", "Progress", "Candidate", "Baseline", "Promoted"].map((h) => el("th", {}, h)))),
      el("tbody", {}, runs.map((r) => el("tr", { class: `clickable${selected === r.id ? " selected" : ""}`, "data-testid": `run-${r.id}`, onclick: () => select(r.id) },
        el("td", {}, `#${r.id}`),
        el("td", { class: "nowrap small" }, fmtTime(r.started_at || r.created_at)),
        el("td", {}, r.trigger),
        el("td", {}, (r.config && r.config.preset) || "—"),
        el("td", {}, r.created_by || "—"),
        el("td", {}, statusChip(r)),
        el("td", {}, bar(r.progress), el("span", { class: "small muted" }, `${Math.round((r.progress || 0) * 100)}%${live(r) ? ` · ${duration(remaining(r))} left` : ""}`)),
        el("td", {}, r.candidate ? r.candidate.name : "—"),
        el("td", {}, r.baseline ? r.baseline.name : "—"),
        el("td", {}, r.promoted ? "yes" : r.status === "succeeded" ? "no" : ""),
      ))),
    ),
  );
  if (selected === null) select(runs[0].id);
  else if (runs.some((r) => r.id === selected && live(r))) select(selected);
  if (runs.some(live)) timer = setTimeout(refresh, 3000);
}

// Per-epoch values worth a curve: losses on one chart, validation measures on the other.
const NOT_PLOTTED = new Set(["epoch", "seconds", "lr", "step"]);

function curves(history, keys, label, yLabel) {
  const series = keys.slice(0, PALETTE.length).map((k, i) => ({ name: k.replace(/_/g, " "), color: PALETTE[i], points: history.map((h, j) => [h.epoch ?? j + 1, h[k]]).filter((p) => typeof p[1] === "number" && Number.isFinite(p[1])) }));
  return [lineChart({ series, xLabel: "Epoch", yLabel, label, width: 520, height: 240 }), legend(series)];
}

async function select(id) {
  selected = id;
  let run;
  try {
    run = await get(fillUrl(urls.training_run, { id }));
  } catch (err) {
    return;
  }
  $("#history-title").textContent = `Learning curves · run #${id}`;
  const config = run.config || {};
  const epochs = (run.history || []).length;
  $("#run-summary").textContent = [
    config.preset ? `preset ${config.preset}` : null,
    config.overrides && Object.keys(config.overrides).length ? `overrides ${JSON.stringify(config.overrides)}` : null,
    config.images ? `${config.images} annotated radiographs` : null,
    `${epochs} epoch${epochs === 1 ? "" : "s"} recorded`,
    live(run) ? `about ${duration(remaining(run))} left` : null,
  ].filter(Boolean).join(" · ");
  const history = Array.isArray(run.history) ? run.history : [];
  const keys = [...new Set(history.flatMap((h) => Object.keys(h || {}).filter((k) => !NOT_PLOTTED.has(k) && typeof h[k] === "number")))];
  const losses = keys.filter((k) => k.endsWith("loss"));
  const measures = keys.filter((k) => !k.endsWith("loss") && k.startsWith("val_"));
  const chart = $("#history-chart");
  if (!history.length || !keys.length) chart.replaceChildren(el("p", { class: "empty" }, live(run) ? "The first epoch is under way: its point appears when it ends." : "No epochs recorded."));
  else {
    chart.replaceChildren(
      ...(losses.length ? curves(history, losses, "Losses per epoch", "Loss") : []),
      ...(measures.length ? curves(history, measures, "Validation measures per epoch", "Value") : []),
    );
  }
  const decision = run.decision && Object.keys(run.decision).length
    ? el("dl", { class: "kv" }, Object.entries(run.decision).flatMap(([k, v]) => [el("dt", {}, k.replace(/_/g, " ")), el("dd", {}, typeof v === "object" ? JSON.stringify(v) : String(v))]))
    : el("p", { class: "muted small" }, "No decision yet.");
  $("#run-detail").replaceChildren(...[decision, run.log ? el("pre", { class: "report mt-s", "data-testid": "run-log" }, run.log.slice(-6000)) : null].filter(Boolean));
  for (const row of listBox.querySelectorAll("tr[data-testid]")) row.classList.toggle("selected", row.dataset.testid === `run-${id}`);
}

$("#preset").addEventListener("change", showPlan);
$("#epochs").addEventListener("input", showPlan);
$("#train-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const epochs = Number($("#epochs").value);
  const body = { preset: $("#preset").value || "" };
  if (epochs) body.epochs = epochs;
  try {
    const run = await post(urls.training_runs, body);
    $("#train-status").textContent = `Training run #${run.id} queued (preset ${run.config.preset}, about ${duration(run.config.estimate_seconds)}).`;
    selected = run.id;
  } catch (err) {
    $("#train-status").textContent = err.detail;
  }
  refresh();
});
armForm($("#train-form"));

loadPresets();
refresh();
