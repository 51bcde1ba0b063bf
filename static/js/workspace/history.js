/** The radiograph's history: every event, who did it, when, under which model version. */

import { get } from "../core/api.js";
import { el, fmtTime } from "../core/dom.js";
import { findingName, word } from "../core/words.js";

function describe(event) {
  const d = event.data || {};
  const parts = [];
  if (d.reason) parts.push(`Reason: ${event.action === "excluded" ? word("exclusion", d.reason) : d.reason}`);
  if (d.note) parts.push(d.note);
  if (d.comment) parts.push(`“${d.comment}”`);
  if (d.label && event.action.startsWith("region_")) parts.push(`${findingName(d.label, d.subtype)} #${d.region}`);
  if (d.labels) parts.push(Object.entries(d.labels).map(([k, v]) => `${word("label_field", k)}: ${word("tri", v).toLowerCase()}`).join(", "));
  return parts.join(" · ");
}

/** Who did what, as a sentence: "ann1 submitted the lung boxes", "Imported with the dataset". */
function headline(event) {
  if (event.actor) return [el("span", { class: "who" }, event.actor), " ", el("span", { class: "what" }, word("action", event.action))];
  if (event.action === "imported") return [el("span", { class: "what" }, "Imported with the dataset")];
  const who = event.model_version || event.action.startsWith("preannotat") ? "The model" : "Lungmark";
  return [el("span", { class: "who" }, who), " ", el("span", { class: "what" }, word("action", event.action))];
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
        el("div", {}, ...headline(event),
          event.to_state && event.from_state !== event.to_state && event.action !== "imported" ? el("span", { class: "muted" }, ` → ${word("state", event.to_state)}`) : null),
        el("div", { class: "when" }, fmtTime(event.created_at), event.model_version ? el("span", { class: "model" }, ` · model ${event.model_version}`) : null),
        detail ? el("div", { class: "muted" }, detail) : null,
      ),
    );
  }
  container.replaceChildren(list);
  return events;
}
