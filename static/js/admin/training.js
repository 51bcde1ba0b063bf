/** Training runs: the list with progress (followed while one is live), learning curves, decision, log. */

import { get, post } from "../core/api.js";
import { $, armForm, el, fmtTime } from "../core/dom.js";
import { PALETTE, legend, lineChart } from "../core/plots.js";

const listBox = $("#run-list");
let selected = null;
let timer = 0;

function bar(value) {
  const b = el("div", { class: "progress" }, el("span"));
  b.firstChild.style.width = `${Math.round((value || 0) * 100)}%`;
  return b;
}

function statusChip(run) {
  const cls = { succeeded: "status-accepted", failed: "status-rejected" }[run.status] || "";
  return el("span", { class: `chip ${cls}` }, run.status);
}

async function refresh() {
  clearTimeout(timer);
  let data;
  try {
    data = await get("/api/training-runs/?limit=30");
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
      el("thead", {}, el("tr", {}, ["#", "Started", "Trigger", "By", "Status", "Progress", "Candidate", "Baseline", "Promoted"].map((h) => el("th", {}, h)))),
      el("tbody", {}, runs.map((r) => el("tr", { class: `clickable${selected === r.id ? " selected" : ""}`, "data-testid": `run-${r.id}`, onclick: () => select(r.id) },
        el("td", {}, `#${r.id}`),
        el("td", { class: "nowrap small" }, fmtTime(r.started_at || r.created_at)),
        el("td", {}, r.trigger),
        el("td", {}, r.created_by || "—"),
        el("td", {}, statusChip(r)),
        el("td", {}, bar(r.progress), el("span", { class: "small muted" }, `${Math.round((r.progress || 0) * 100)}%`)),
        el("td", {}, r.candidate ? r.candidate.name : "—"),
        el("td", {}, r.baseline ? r.baseline.name : "—"),
        el("td", {}, r.promoted ? "yes" : r.status === "succeeded" ? "no" : ""),
      ))),
    ),
  );
  if (selected === null) select(runs[0].id);
  else if (runs.some((r) => r.id === selected && (r.status === "running" || r.status === "queued"))) select(selected);
  if (runs.some((r) => r.status === "running" || r.status === "queued")) timer = setTimeout(refresh, 3000);
}

async function select(id) {
  selected = id;
  let run;
  try {
    run = await get(`/api/training-runs/${id}/`);
  } catch (err) {
    return;
  }
  $("#history-title").textContent = `Learning curves · run #${id}`;
  const history = Array.isArray(run.history) ? run.history : [];
  const keys = [...new Set(history.flatMap((h) => Object.keys(h || {}).filter((k) => k !== "epoch" && typeof h[k] === "number")))];
  const chart = $("#history-chart");
  if (!history.length || !keys.length) chart.replaceChildren(el("p", { class: "empty" }, "No epochs recorded yet."));
  else {
    const series = keys.slice(0, 8).map((k, i) => ({ name: k.replace(/_/g, " "), color: PALETTE[i % PALETTE.length], points: history.map((h, j) => [h.epoch ?? j + 1, h[k]]).filter((p) => typeof p[1] === "number") }));
    chart.replaceChildren(lineChart({ series, xLabel: "Epoch", yLabel: "Value", label: "Learning curves", width: 520 }), legend(series));
  }
  const decision = run.decision && Object.keys(run.decision).length
    ? el("dl", { class: "kv" }, Object.entries(run.decision).flatMap(([k, v]) => [el("dt", {}, k.replace(/_/g, " ")), el("dd", {}, typeof v === "object" ? JSON.stringify(v) : String(v))]))
    : el("p", { class: "muted small" }, "No decision yet.");
  $("#run-detail").replaceChildren(...[decision, run.log ? el("pre", { class: "report mt-s" }, run.log.slice(-6000)) : null].filter(Boolean));
  for (const row of listBox.querySelectorAll("tr[data-testid]")) row.classList.toggle("selected", row.dataset.testid === `run-${id}`);
}

$("#train-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const epochs = Number($("#epochs").value);
  try {
    const run = await post("/api/training-runs/", epochs ? { epochs } : {});
    $("#train-status").textContent = `Training run #${run.id} queued.`;
    selected = run.id;
  } catch (err) {
    $("#train-status").textContent = err.detail;
  }
  refresh();
});
armForm($("#train-form"));

refresh();
