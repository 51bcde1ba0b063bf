/**
 * The page state in one place: the radiograph, the annotation on screen (lung boxes, labels,
 * view), the finding regions and their masks, the selection, the region being edited, the display
 * settings and the undo/redo stacks. Everything else listens to its events and never keeps its own
 * copy of this state.
 *
 * Events: ``annotation`` {source: "user" | "server" | "restore"}, ``regions``, ``selection``,
 * ``draft``, ``mask``, ``display``, ``history``, ``version``, ``conflict``, ``readonly``; and
 * ``change`` after each of them (for the renderer).
 */

export const LABELS = ["healthy", "covid", "other_disease"];

export function cloneDoc(doc) {
  return {
    right: doc.right ? [...doc.right] : null,
    left: doc.left ? [...doc.left] : null,
    labels: { ...doc.labels },
    view: doc.view,
  };
}

/** The annotation fields one by one, as [name, value-as-string] (for diffs and merges). */
export function docFields(doc) {
  return {
    right: JSON.stringify(doc.right),
    left: JSON.stringify(doc.left),
    healthy: doc.labels.healthy,
    covid: doc.labels.covid,
    other_disease: doc.labels.other_disease,
    view: doc.view,
  };
}

/** Names of the fields in which ``a`` and ``b`` differ. */
export function docDiff(a, b) {
  const fa = docFields(a);
  const fb = docFields(b);
  return Object.keys(fa).filter((k) => fa[k] !== fb[k]);
}

/** ``onto`` with the ``fields`` of ``from`` copied over it. */
export function docMerge(onto, from, fields) {
  const out = cloneDoc(onto);
  for (const name of fields) {
    if (LABELS.includes(name)) out.labels[name] = from.labels[name];
    else out[name] = from[name] ? (Array.isArray(from[name]) ? [...from[name]] : from[name]) : null;
  }
  return out;
}

/** The annotation doc of a server state (``annotation_state``), boxes falling back to the model's. */
export function docFromState(state, prediction = null) {
  const lungs = state.lungs || {};
  return {
    right: lungs.right || (prediction && prediction.right) || null,
    left: lungs.left || (prediction && prediction.left) || null,
    labels: { healthy: "unknown", covid: "unknown", other_disease: "unknown", ...(state.labels || {}) },
    view: state.view || "UNKNOWN",
  };
}

export class Store extends EventTarget {
  constructor() {
    super();
    this.radiograph = null; // the detail payload as loaded
    this.version = null; // the radiograph version the annotation on screen is based on
    this.state = null; // workflow state
    this.base = null; // the annotation doc as the server has it (at ``version``)
    this.doc = null; // the annotation doc on screen
    this.regions = []; // finding regions, each with ``mask`` (a canvas of its bbox) once loaded
    this.selection = null; // {kind: "box", side} | {kind: "region", id}
    this.draft = null; // the region being edited or added: {id, label, subtype, description, canvas, backup, dirty}
    this.conflict = null; // {theirs: state, mine: doc, myBase: doc}
    this.readOnly = false;
    this.display = { center: null, width: null, invert: false, wlActive: false, layers: { lungs: true, regions: true, labels: true } };
    this.undoStack = [];
    this.redoStack = [];
  }

  on(type, handler) {
    this.addEventListener(type, (event) => handler(event.detail || {}));
  }

  emit(type, detail = {}) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
    this.dispatchEvent(new CustomEvent("change", { detail: { type, ...detail } }));
  }

  // ---- radiograph and annotation --------------------------------------------------------
  load(detail, { readOnly = false } = {}) {
    this.radiograph = detail;
    this.version = detail.version;
    this.state = detail.state;
    this.doc = docFromState(detail, detail.prediction);
    this.base = cloneDoc(this.doc);
    this.readOnly = readOnly;
    this.emit("version");
    this.emit("annotation", { source: "server" });
  }

  get dirtyFields() {
    return this.base && this.doc ? docDiff(this.base, this.doc) : [];
  }

  setDoc(doc, source = "user") {
    this.doc = cloneDoc(doc);
    this.emit("annotation", { source });
  }

  /** Change the annotation with ``mutate(doc)``; recorded for undo unless ``record`` is false. */
  edit(mutate, { record = true, label = "Edit" } = {}) {
    if (this.readOnly) return false;
    const before = cloneDoc(this.doc);
    const after = cloneDoc(this.doc);
    mutate(after);
    if (docDiff(before, after).length === 0) return false;
    this.doc = after;
    if (record) this.record(this.docCommand(before, after, label));
    this.emit("annotation", { source: "user" });
    return true;
  }

  docCommand(before, after, label = "Edit") {
    return {
      label,
      undo: () => this.setDoc(before, "user"),
      redo: () => this.setDoc(after, "user"),
    };
  }

  /** The server saved ``sent`` (at ``state.version``): it becomes the base. */
  saved(state, sent) {
    this.version = state.version;
    this.state = state.state;
    const server = docFromState(state);
    this.base = server;
    // Keep what the user did meanwhile; otherwise show the server's normalised values.
    if (docDiff(this.doc, sent).length === 0) this.doc = cloneDoc(server);
    this.emit("version");
    this.emit("annotation", { source: "server" });
  }

  setWorkflow(state) {
    this.version = state.version;
    this.state = state.state;
    this.emit("version");
  }

  setConflict(conflict) {
    this.conflict = conflict;
    this.emit("conflict");
  }

  setReadOnly(readOnly) {
    this.readOnly = readOnly;
    this.emit("readonly");
  }

  // ---- regions ----------------------------------------------------------------------------
  setRegions(regions) {
    this.regions = regions;
    this.emit("regions");
  }

  region(id) {
    return this.regions.find((r) => r.id === id) || null;
  }

  updateRegion(id, patch) {
    this.regions = this.regions.map((r) => (r.id === id ? { ...r, ...patch } : r));
    this.emit("regions");
  }

  addRegion(region) {
    this.regions = [...this.regions, region];
    this.emit("regions");
  }

  select(selection) {
    this.selection = selection;
    this.emit("selection");
  }

  setDraft(draft) {
    this.draft = draft;
    if (!draft) {
      // Mask strokes belong to the draft: they leave the undo history with it.
      this.undoStack = this.undoStack.filter((c) => c.scope !== "draft");
      this.redoStack = this.redoStack.filter((c) => c.scope !== "draft");
      this.emit("history");
    }
    this.emit("draft");
  }

  maskChanged() {
    this.emit("mask");
  }

  // ---- display ----------------------------------------------------------------------------
  setDisplay(patch) {
    this.display = { ...this.display, ...patch, layers: { ...this.display.layers, ...(patch.layers || {}) } };
    this.emit("display");
  }

  toggleLayer(name) {
    this.setDisplay({ layers: { [name]: !this.display.layers[name] } });
  }

  // ---- undo / redo ------------------------------------------------------------------------
  record(command) {
    this.undoStack.push(command);
    if (this.undoStack.length > 200) this.undoStack.shift();
    this.redoStack = [];
    this.emit("history");
  }

  undo() {
    if (this.readOnly) return;
    const command = this.undoStack.pop();
    if (!command) return;
    command.undo();
    this.redoStack.push(command);
    this.emit("history");
  }

  redo() {
    if (this.readOnly) return;
    const command = this.redoStack.pop();
    if (!command) return;
    command.redo();
    this.undoStack.push(command);
    this.emit("history");
  }
}
