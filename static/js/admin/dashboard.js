/** Dashboard plots: radiographs per dataset by state (stacked bars), work per person per day. */

import { $, $$, pageData } from "../core/dom.js";
import { PALETTE, barChart, legend } from "../core/plots.js";
import { word } from "../core/words.js";

const STATE_COLORS = {
  imported: "#94a3b8", preannotated: "#60a5fa", lungs_done: "#fbbf24", in_review: "#fb923c",
  accepted: "#22c55e", returned: "#ef4444", excluded: "#6b7280",
};

const data = pageData("dashboard-data");

for (const bar of $$(".progress[data-fraction]")) {
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
