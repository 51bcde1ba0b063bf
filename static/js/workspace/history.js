/** The radiograph's history: every event, who did it, when, under which model version. */

import { get } from "../core/api.js";
import { el, fmtTime, humanize } from "../core/dom.js";

const ACTIONS = {
  imported: "imported it",
  preannotated: "pre-annotated it",
  saved: "saved a draft",
  submitted: "submitted the lung boxes",
  review_started: "started the review",
  accepted: "accepted it",
  returned: "returned it to the annotator",
  excluded: "excluded it",
  skipped: "skipped it",
  region_accepted: "accepted a region",
  region_rejected: "rejected a region",
  region_edited: "edited a region",
  region_added: "added a region",
};

function describe(event) {
  const d = event.data || {};
  const parts = [];
  if (d.reason) parts.push(`reason: ${humanize(d.reason)}`);
  if (d.note) parts.push(d.note);
  if (d.comment) parts.push(`“${d.comment}”`);
  if (d.label && event.action.startsWith("region_")) parts.push(`${humanize(d.label)} #${d.region}`);
  if (d.labels) parts.push(Object.entries(d.labels).map(([k, v]) => `${humanize(k)}: ${v}`).join(", "));
  if (d.file && event.action === "imported") parts.push(d.file);
  return parts.join(" · ");
}

export async function renderHistory(container, url) {
  let events;
  try {
    events = await get(url);
  } catch (err) {
    container.replaceChildren(el("p", { class: "muted small" }, `History unavailable: ${err.detail}`));
    return [];
  }
  if (!events.length) {
    container.replaceChildren(el("p", { class: "muted small" }, "No events yet."));
    return events;
  }
  const list = el("ol", { class: "history", "data-testid": "history" });
  for (const event of [...events].reverse()) {
    const detail = describe(event);
    list.append(
      el(
        "li",
        { dataset: { action: event.action } },
        el("div", {}, el("span", { class: "who" }, event.actor || "system"), " ", el("span", { class: "what" }, ACTIONS[event.action] || humanize(event.action)),
          event.to_state && event.from_state !== event.to_state ? el("span", { class: "muted" }, ` → ${humanize(event.to_state)}`) : null),
        el("div", { class: "when" }, fmtTime(event.created_at), event.model_version ? el("span", { class: "model" }, ` · model ${event.model_version}`) : null),
        detail ? el("div", { class: "muted" }, detail) : null,
      ),
    );
  }
  container.replaceChildren(list);
  return events;
}
