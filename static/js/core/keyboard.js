/**
 * Keyboard shortcuts: one table per page binds keys to actions and also renders the list shown
 * on the page, so what is listed is exactly what works.
 */

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

function isTyping(target) {
  return target && (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName));
}

export class Shortcuts {
  constructor() {
    this.bindings = [];
    document.addEventListener("keydown", (event) => this.handle(event));
  }

  /** ``{keys: ["ctrl+z"], label, group, run(event), when?(), inInputs?: bool, hidden?: bool}`` */
  add(binding) {
    this.bindings.push({ group: "General", when: () => true, ...binding });
    return this;
  }

  handle(event) {
    if (document.querySelector("dialog[open]")) return; // a dialog owns the keyboard
    const combo = comboOf(event);
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
