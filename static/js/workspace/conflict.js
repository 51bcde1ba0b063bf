/** The banner shown while a save is refused as stale: what differs, and the two ways out. */

import { el, fmtTime } from "../core/dom.js";
import { get } from "../core/api.js";
import { docFields, docFromState } from "../viewer/store.js";

const FIELD_NAMES = {
  right: "the patient right lung box",
  left: "the patient left lung box",
  healthy: "Healthy",
  covid: "COVID",
  other_disease: "Other disease",
  view: "View",
};

function show(value) {
  if (value === "null" || value === null) return "none";
  return value.replace(/"/g, "").replace(/,/g, ", ");
}

export function bindConflictBanner({ store, saver, container, eventsUrl }) {
  const names = new WeakMap(); // conflict -> "who (when)", fetched once

  async function render() {
    const conflict = store.conflict;
    if (!conflict) {
      container.replaceChildren();
      container.classList.add("hidden");
      return;
    }
    const prediction = store.radiograph && store.radiograph.prediction;
    const theirs = docFields(docFromState(conflict.theirs, prediction));
    const mine = docFields(store.doc);
    const base = docFields(conflict.myBase || store.base);
    const fields = Object.keys(FIELD_NAMES);
    const changedByMe = fields.filter((k) => mine[k] !== base[k]);
    const changedByThem = fields.filter((k) => theirs[k] !== base[k] && !changedByMe.includes(k));
    const items = [
      ...changedByMe.map((k) => el("li", {}, `You changed ${FIELD_NAMES[k]} to ${show(mine[k])}`, theirs[k] !== base[k] && theirs[k] !== mine[k] ? ` (they set ${show(theirs[k])})` : "")),
      ...changedByThem.map((k) => el("li", {}, `They changed ${FIELD_NAMES[k]} to ${show(theirs[k])}`)),
    ];
    const who = el("span", {}, names.get(conflict) || "Someone else");
    const banner = el(
      "div",
      { class: "banner error", role: "alert", "data-testid": "conflict" },
      el("strong", {}, "Your changes were not saved"),
      who,
      ` saved this radiograph (version ${conflict.theirs.version}) after you opened it. Your edit is still on screen and kept in this browser until you choose.`,
      items.length ? el("ul", {}, items) : null,
      el(
        "div",
        { class: "row" },
        el("button", { class: "btn", type: "button", "data-testid": "use-theirs", onclick: () => saver.useTheirs() }, "Reload their version"),
        el("button", { class: "btn primary", type: "button", "data-testid": "keep-mine", onclick: () => saver.keepMine().catch(() => {}) }, "Keep my changes on top of theirs"),
      ),
    );
    container.replaceChildren(banner);
    container.classList.remove("hidden");
    if (names.has(conflict)) return;
    names.set(conflict, "Someone else");
    try {
      const events = await get(eventsUrl);
      const last = [...events].reverse().find((e) => e.data && e.data.version === conflict.theirs.version) || events[events.length - 1];
      if (last && last.actor) {
        names.set(conflict, `${last.actor} (${fmtTime(last.created_at)})`);
        who.textContent = names.get(conflict);
      }
    } catch (err) {
      /* the name is a courtesy */
    }
  }
  store.on("conflict", render);
  store.on("annotation", () => { if (store.conflict) render(); });
  return render;
}
