/** Small DOM helpers shared by the pages (no framework). */

export const $ = (selector, root = document) => root.querySelector(selector);
export const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));

/** ``el("button", {class: "btn", onclick}, "Text", child)``: attributes, handlers and children. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
    else if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (value === true) node.setAttribute(key, "");
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** The JSON a template passed with ``json_script``. */
export function pageData(id) {
  const node = document.getElementById(id);
  return node ? JSON.parse(node.textContent) : null;
}

/** Fill a reversed URL's placeholders, such as "/annotate/{id}/", from ``values``. */
export function fillUrl(template, values) {
  return template.replace(/\{(\w+)\}/g, (_, key) => encodeURIComponent(values[key]));
}

export function fmtTime(value) {
  if (!value) return "";
  const d = new Date(value);
  return d.toLocaleString(undefined, { year: "numeric", month: "short", day: "2-digit", hour: "2-digit", minute: "2-digit" });
}

export function fmtPct(value, digits = 0) {
  return value === null || value === undefined ? "—" : `${(value * 100).toFixed(digits)}%`;
}

/** ``some_value`` → "Some value": for a value no vocabulary knows (see words.js for those that do). */
export function humanize(value) {
  const text = String(value ?? "").replace(/_/g, " ").trim();
  return text.charAt(0).toUpperCase() + text.slice(1);
}

/** Buttons give focus back after a click, so the keyboard shortcuts keep working. */
export function releaseFocusAfterClicks() {
  document.addEventListener("click", (event) => {
    const button = event.target.closest("button, .tbtn");
    if (button && !button.closest("dialog")) button.blur();
  });
  document.addEventListener("change", (event) => {
    if (event.target.matches("select")) event.target.blur();
  });
}

/** Open a <dialog> and resolve with the submitted form's data, or null when cancelled. */
export function askDialog(dialog) {
  return new Promise((resolve) => {
    const form = dialog.querySelector("form");
    const onClose = () => {
      dialog.removeEventListener("close", onClose);
      if (dialog.returnValue === "ok") resolve(Object.fromEntries(new FormData(form).entries()));
      else resolve(null);
    };
    dialog.addEventListener("close", onClose);
    form.reset();
    dialog.returnValue = "";
    dialog.showModal();
    const first = form.querySelector("select, input, textarea");
    if (first) first.focus();
  });
}

/**
 * Enable a form's submit buttons once its module has bound its handlers: they are rendered
 * ``disabled data-needs-js`` so that a click before the script runs cannot submit the form natively
 * (a page reload that loses the action).
 */
export function armForm(form) {
  for (const button of form.querySelectorAll("[data-needs-js]")) button.disabled = false;
}
