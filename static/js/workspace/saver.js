/**
 * Work is never lost: every change to the annotation is written at once to this browser's
 * storage, then saved to the server by a debounced PUT naming the version it is based on (the
 * version of each response is kept for the next save). A save refused as stale (409) leaves the
 * edit on screen and in storage and puts the page in conflict until the user chooses: load their
 * version, or apply the fields they changed on top of it.
 */

import { put } from "../core/api.js";
import { cloneDoc, docDiff, docFromState, docMerge } from "../viewer/store.js";

const DELAY_MS = 800;

export class AnnotationSaver extends EventTarget {
  constructor({ store, url, storageKey }) {
    super();
    this.store = store;
    this.url = url;
    this.storageKey = storageKey;
    this.timer = 0;
    this.inflight = null;
    this.status = "saved";
    this.message = "";
    store.on("annotation", ({ source }) => {
      if (source === "user") this.changed();
    });
    window.addEventListener("beforeunload", (event) => {
      if ((this.status === "pending" || this.status === "saving") && !store.conflict) {
        this.flushOnExit();
      }
    });
  }

  setStatus(status, message = "") {
    this.status = status;
    this.message = message;
    this.dispatchEvent(new CustomEvent("status", { detail: { status, message } }));
  }

  // ---- this browser's copy ----------------------------------------------------------------
  keepLocal() {
    const { store } = this;
    try {
      localStorage.setItem(this.storageKey, JSON.stringify({ version: store.version, base: store.base, doc: store.doc, at: new Date().toISOString() }));
    } catch (err) {
      /* storage full or disabled: the server save still runs */
    }
  }

  clearLocal() {
    try { localStorage.removeItem(this.storageKey); } catch (err) { /* ignore */ }
  }

  readLocal() {
    try { return JSON.parse(localStorage.getItem(this.storageKey) || "null"); } catch (err) { return null; }
  }

  /**
   * After the page loaded the server state: bring back edits this browser kept and did not save.
   * Returns "restored", "conflict" or null.
   */
  restoreLocal() {
    const { store } = this;
    const saved = this.readLocal();
    if (!saved || !saved.doc || !saved.base) return null;
    const mine = docDiff(saved.base, saved.doc);
    if (!mine.length || store.readOnly) {
      this.clearLocal();
      return null;
    }
    if (saved.version === store.version) {
      store.setDoc(docMerge(store.doc, saved.doc, mine), "restore");
      this.changed();
      return "restored";
    }
    store.setDoc(saved.doc, "restore");
    store.setConflict({ theirs: store.radiograph, myBase: saved.base, version: store.version });
    this.setStatus("conflict", "Not saved: the radiograph changed since your edit.");
    return "conflict";
  }

  // ---- saving -----------------------------------------------------------------------------
  changed() {
    if (this.store.readOnly) return;
    this.keepLocal();
    if (this.store.conflict) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.flush().catch(() => {}), DELAY_MS);
    this.setStatus("pending", "Unsaved changes");
  }

  get busy() {
    return Boolean(this.inflight);
  }

  /** Save now (``submit`` sends it to review). Resolves with the server state. */
  async flush({ submit = false } = {}) {
    const { store } = this;
    clearTimeout(this.timer);
    while (this.inflight) await this.inflight.catch(() => {});
    if (store.conflict) throw Object.assign(new Error("conflict"), { code: "stale_version" });
    if (!submit && store.dirtyFields.length === 0) {
      this.clearLocal();
      this.setStatus("saved", `Saved · version ${store.version}`);
      return null;
    }
    const sent = cloneDoc(store.doc);
    const body = { version: store.version, right: sent.right, left: sent.left, labels: sent.labels, view: sent.view, submit };
    this.setStatus("saving", submit ? "Submitting…" : "Saving…");
    this.inflight = put(this.url, body);
    try {
      const state = await this.inflight;
      store.saved(state, sent);
      if (store.dirtyFields.length) {
        this.keepLocal();
        this.timer = setTimeout(() => this.flush().catch(() => {}), DELAY_MS);
        this.setStatus("pending", "Unsaved changes");
      } else {
        this.clearLocal();
        this.setStatus("saved", `Saved · version ${state.version}`);
      }
      return state;
    } catch (err) {
      if (err.status === 409 && err.code === "stale_version") {
        store.setConflict({ theirs: err.body.current, myBase: cloneDoc(store.base), version: err.body.current && err.body.current.version });
        this.setStatus("conflict", "Not saved: someone else saved this radiograph.");
      } else if (err.code === "not_authenticated") {
        this.setStatus("error", "You are signed out: sign in again in another tab, then edit anything to save. Your changes are kept in this browser.");
      } else if (err.status === 0) {
        this.setStatus("error", "Offline: your changes are kept in this browser; retrying…");
        this.timer = setTimeout(() => this.flush().catch(() => {}), 5000);
      } else {
        this.setStatus("error", `Not saved: ${err.detail}${err.fieldErrors ? ` (${err.fieldErrors})` : ""}`);
      }
      throw err;
    } finally {
      this.inflight = null;
    }
  }

  flushOnExit() {
    const { store } = this;
    if (!store.dirtyFields.length) return;
    const doc = store.doc;
    put(this.url, { version: store.version, right: doc.right, left: doc.left, labels: doc.labels, view: doc.view }, { keepalive: true }).catch(() => {});
  }

  // ---- resolving a conflict ---------------------------------------------------------------
  /** Discard the local edit and show the server's version. */
  useTheirs() {
    const { store } = this;
    const theirs = store.conflict.theirs;
    const doc = docFromState(theirs, store.radiograph && store.radiograph.prediction);
    store.conflict = null;
    store.version = theirs.version;
    store.state = theirs.state;
    store.base = cloneDoc(doc);
    store.setDoc(doc, "server");
    store.emit("version");
    store.setConflict(null);
    this.clearLocal();
    this.setStatus("saved", `Loaded version ${theirs.version}`);
  }

  /** Apply the fields this user changed on top of the server's version, and save. */
  async keepMine() {
    const { store } = this;
    const { theirs, myBase } = store.conflict;
    const mineChanged = docDiff(myBase, store.doc);
    const prediction = store.radiograph && store.radiograph.prediction;
    const merged = docMerge(docFromState(theirs, prediction), store.doc, mineChanged);
    store.version = theirs.version;
    store.state = theirs.state;
    store.base = docFromState(theirs, prediction);
    store.setDoc(merged, "server");
    store.setConflict(null);
    store.emit("version");
    this.keepLocal();
    return this.flush();
  }
}
