/**
 * Human words for stored values (``lungs_done`` → "Waiting for review"), from the ``human-words``
 * table that base.html renders from the server's vocabularies (annotator/vocabulary.py).
 */

import { humanize, pageData } from "./dom.js";

let table = null;

/** The words for ``value`` in the vocabulary ``kind`` (state, view, tri, provenance, source, finding, …). */
export function word(kind, value) {
  if (value === null || value === undefined || value === "") return "";
  if (!table) table = pageData("human-words") || {};
  const words = table[kind] || {};
  return words[value] ?? humanize(value);
}

/** A finding with its subtype: "Interstitial shadow (ground-glass)". */
export function findingName(label, subtype = "") {
  return `${word("finding", label)}${subtype ? ` (${word("subtype", subtype).toLowerCase()})` : ""}`;
}
