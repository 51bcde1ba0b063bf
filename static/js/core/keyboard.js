/**
 * Keyboard shortcuts: one table per page binds keys to actions and also renders the lists shown
 * on the page (the side panel and the help overlay opened with ``?``), so what is listed is
 * exactly what works.
 */

import { el } from "./dom.js";

const NAMED = { " ": "space", "+": "plus", Escape: "esc", ArrowLeft: "left", ArrowRight: "right", ArrowUp: "up", ArrowDown: "down" };
const DISPLAY = { plus: "+", ctrl: "Ctrl", shift: "Shift", alt: "Alt", enter: "Enter", esc: "Esc", space: "Space", tab: "Tab", left: "←", right: "→", up: "↑", down: "↓", delete: "Del", backspace: "⌫" };

const SHIFTABLE = new Set(["enter", "tab", "left", "right", "up", "down", "space", "delete", "backspace", "esc"]);

function comboOf(event) {
  const raw = NAMED[event.key] || event.key;
  const key = raw.length === 1 ? raw.toLowerCase() : raw.toLowerCase();
  // Shift is part of the combo only for letters, digits and named keys ("+" or "?" already imply it).
  const shiftMatters = /^[a-z0-9]$/.test(key) || SHIFTABLE.has(key);
  return [
    event.ctrlKey || event.metaKey ? "ctrl" : "",
    event.altKey ? "alt" : "",
    event.shiftKey && shiftMatters ? "shift" : "",
    key,
  ].filter(Boolean).join("+");
}

// Inputs that take typed characters; a checkbox or a slider does not, so shortcuts work after clicking one.
const NOT_TYPED = new Set(["button", "checkbox", "color", "file", "image", "radio", "range", "reset", "submit"]);

/** Whether a key pressed in ``target`` is text being typed (and must not run a shortcut). */
export function isTyping(target) {
  if (!target || !target.tagName) return false;
  if (target.isContentEditable || ["TEXTAREA", "SELECT"].includes(target.tagName)) return true;
  return target.tagName === "INPUT" && !NOT_TYPED.has((target.type || "text").toLowerCase());
}

export class Shortcuts {
  constructor() {
    this.bindings = [];
    this.overlay = null;
    document.addEventListener("keydown", (event) => this.handle(event));
    this.add({ keys: ["?"], label: "Show or hide this help", group: "General", run: () => this.toggleHelp() });
  }

  /** ``{keys: ["ctrl+z"], label, group, run(event), when?(), inInputs?: bool, hidden?: bool}`` */
  add(binding) {
    this.bindings.push({ group: "General", when: () => true, ...binding });
    return this;
  }

  handle(event) {
    if (document.querySelector("dialog[open]")) return; // a dialog owns the keyboard
    const combo = comboOf(event);
    if (this.helpOpen) {
      // The help is modal: it closes on Esc or ?, and no other key acts behind it.
      if (combo === "esc" || combo === "?") this.toggleHelp(false);
      event.preventDefault();
      return;
    }
    const typing = isTyping(event.target);
    for (const binding of this.bindings) {
      if (!binding.keys.includes(combo)) continue;
      if (typing && !binding.inInputs) continue;
      if (!binding.when()) continue;
      event.preventDefault();
      binding.run(event);
      return;
    }
  }

  get helpOpen() {
    return Boolean(this.overlay && !this.overlay.hidden);
  }

  /** Open (or close) the help overlay: every listed shortcut of this page, from the bindings. */
  toggleHelp(open = !this.helpOpen) {
    if (!this.overlay) {
      this.overlay = buildOverlay(() => this.toggleHelp(false));
      document.body.append(this.overlay);
    }
    if (open) this.render(this.overlay.querySelector("dl"));
    this.overlay.hidden = !open;
    if (open) this.overlay.querySelector(".help-panel").focus();
  }

  /** Fill a <dl> with the shortcuts, grouped. */
  render(dl) {
    dl.replaceChildren();
    const groups = new Map();
    for (const b of this.bindings.filter((b) => !b.hidden)) {
      if (!groups.has(b.group)) groups.set(b.group, []);
      groups.get(b.group).push(b);
    }
    for (const [group, list] of groups) {
      const head = document.createElement("dt");
      head.className = "group";
      head.textContent = group;
      dl.append(head);
      for (const b of list) {
        const dt = document.createElement("dt");
        b.keys.filter((k) => !k.startsWith("meta")).slice(0, 2).forEach((combo, i) => {
          if (i) dt.append(" ");
          combo.split("+").forEach((part, j) => {
            if (j) dt.append("+");
            const kbd = document.createElement("kbd");
            kbd.textContent = DISPLAY[part] || (part.length === 1 ? part.toUpperCase() : part);
            dt.append(kbd);
          });
        });
        const dd = document.createElement("dd");
        dd.textContent = b.label;
        dl.append(dt, dd);
      }
    }
  }
}

/** The help overlay's frame: a dimmed backdrop and a panel; a click anywhere closes it. */
function buildOverlay(close) {
  const overlay = el(
    "div",
    { class: "help-overlay", role: "dialog", "aria-modal": "true", "aria-labelledby": "help-title", "data-testid": "help", onclick: close },
    el(
      "div",
      { class: "help-panel", tabindex: "-1" },
      el("h2", { id: "help-title" }, "Keyboard shortcuts"),
      el("p", { class: "muted small" }, "Press ? or Esc, or click anywhere, to close."),
      el("dl", { class: "keys help-keys" }),
    ),
  );
  overlay.hidden = true;
  return overlay;
}
