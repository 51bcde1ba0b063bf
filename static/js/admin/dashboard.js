/**
 * Dashboard plots: radiographs per dataset by state (stacked bars), work per person per day; and the
 * model training card, followed live while its run is queued or running.
 */

import { get } from "../core/api.js";
import { $, $$, fillUrl, pageData } from "../core/dom.js";

const urls = pageData("admin-urls");
import { PALETTE, barChart, legend } from "../core/plots.js";
import { word } from "../core/words.js";

const STATE_COLORS = {
  imported: "#94a3b8", preannotated: "#60a5fa", lungs_done: "#fbbf24", in_review: "#fb923c",
  accepted: "#22c55e", returned: "#ef4444", excluded: "#6b7280",
};

const data = pageData("dashboard-data");

for (const bar of $$("table .progress[data-fraction]")) {
  bar.querySelector("span").style.width = `${Math.round(Number(bar.dataset.fraction) * 100)}%`;
  bar.title = `${Math.round(Number(bar.dataset.fraction) * 100)}% accepted or excluded`;
}

if (data.progress.length) {
  const series = data.states.map((state) => ({
    name: word("state", state),
    color: STATE_COLORS[state] || "#999",
    values: data.progress.map((d) => d.states.find((s) => s.state === state).count),
  }));
  const box = $("#progress-chart");
  box.append(barChart({ categories: data.progress.map((d) => d.dataset), series, horizontal: true, label: "Radiographs per dataset and state", width: 900 }));
  box.append(legend(series.filter((s) => s.values.some(Boolean))));
}

const people = data.throughput.people;
if (people.length) {
  const series = people.slice(0, PALETTE.length).map((p, i) => ({ name: p.username, color: PALETTE[i], values: p.per_day }));
  const box = $("#throughput-chart");
  box.append(barChart({ categories: data.throughput.days.map((d) => d.slice(5)), series, stacked: true, label: "Work done per day and person", width: 1100, height: 240 }));
  box.append(legend(series));
}

/** "12 min" / "40 s" left. */
function duration(seconds) {
  if (seconds === null || !Number.isFinite(seconds)) return "";
  return seconds < 90 ? `${Math.max(1, Math.round(seconds))} s` : `${Math.round(seconds / 60)} min`;
}

const card = $("#training-card");
const field = (name) => card.querySelector(`[data-field="${name}"]`);

function showRun(run) {
  if (!field("status")) return;
  field("status").textContent = run.status;
  field("epochs").textContent = String((run.history || []).length);
  field("progress").firstElementChild.style.width = `${Math.round((run.progress || 0) * 100)}%`;
  let left = null;
  const started = run.started_at ? new Date(run.started_at).getTime() : null;
  if (run.status === "running" && started && run.progress > 0.1) left = ((Date.now() - started) / 1000) * (1 - run.progress) / run.progress;
  else if (run.status !== "succeeded" && run.status !== "failed" && run.config && run.config.estimate_seconds) left = run.config.estimate_seconds * (1 - (run.progress || 0));
  field("left").textContent = left === null ? `${Math.round((run.progress || 0) * 100)}%` : `${Math.round((run.progress || 0) * 100)}%, about ${duration(left)} left`;
  const lines = (run.log || "").trim().split("\n");
  field("line").textContent = lines[lines.length - 1] || "";
}

let followedLive = false;

async function follow() {
  const id = card.dataset.run;
  if (!id) return;
  let run;
  try {
    run = await get(fillUrl(urls.training_run, { id }));
  } catch (err) {
    return;
  }
  showRun(run);
  if (run.status === "queued" || run.status === "running") {
    followedLive = true;
    setTimeout(follow, 3000);
  } else if (followedLive && run.promoted) window.location.reload(); // the new active model and its figures
}

if (card) {
  const bar = field("progress");
  if (bar) bar.firstElementChild.style.width = `${Math.round(Number(bar.dataset.fraction) * 100)}%`;
  follow();
}
