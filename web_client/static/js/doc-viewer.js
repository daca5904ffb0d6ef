// A document page viewer: the rendered page image, pinch/zoom and swipe, and an
// annotation layer (pen, highlighter, text note) drawn in page coordinates: fractions (0..1)
// of the PDF page, origin at its top left, measured against the page image itself (never
// the scroll box around it), so the same marks fit any viewport, zoom or scroll position.
// Used by the delegate app (with annotations) and the chair's presentation preview (without).

import { api, listOf } from "./api.js";
import { t } from "./i18n.js";
import { dialog, h, showError } from "./shell.js";
import { paintBadge, signatureBadge } from "./signatures.js";
import { pageImage, pageWidthFor } from "./meeting-state.js";
import { newClientId, queueAnnotation, queuedAnnotations } from "./offline.js";

const ZOOM_MIN = 1;
const ZOOM_MAX = 4;
// A horizontal swipe longer than this (CSS px) and mostly sideways turns the page.
const SWIPE_MIN_PX = 60;
// Ink width is in PDF points (the server writes it into the PDF); an A4 page is 595 pt wide.
const PEN = { color: "#1f4fd1", width: 2 };
const PAGE_WIDTH_PT = 595;
const HIGHLIGHTER = { color: "#ffeb3b", opacity: 0.4 };
const NOTE_COLOR = "#1976d2";

export class DocViewer extends EventTarget {
  /**
   * @param {HTMLElement} root  where the viewer goes
   * @param {object} options    annotate: bool; meetingId for shared notes
   */
  constructor(root, { annotate = false, meetingId = null } = {}) {
    super();
    this.root = root;
    this.annotate = annotate;
    this.meetingId = meetingId;
    this.fileId = null;
    this.page = 1;
    this.pages = 1;
    this.zoom = 1;
    this.tool = "none";
    this.share = false;
    this.annotations = [];
    this.pointers = new Map();
    this.drawing = null;
    this.img = h("img", { alt: "", draggable: "false" });
    this.canvas = h("canvas", { "aria-hidden": "true" });
    this.notes = h("div", { class: "notes-layer" });
    this.wrap = h("div", { class: "page-wrap" }, this.img, this.canvas, this.notes);
    this.scroll = h("div", { class: "viewer-scroll", tabindex: "0", role: "region", "aria-label": "" }, this.wrap);
    // What the document's digital signatures say (hidden for an unsigned document).
    this.badge = h("p", { class: "signature-badge", role: "status", hidden: true });
    this.root.replaceChildren(this.badge, this.scroll);
    this.root.classList.add("viewer");
    // The canvas follows the image's size once it is known (a new width or page ratio).
    this.img.addEventListener("load", () => this._layout());
    this._bind();
    new ResizeObserver(() => this._layout()).observe(this.scroll);
  }

  /** Show a page of a document. `source` says why: "user" or "chair". */
  async show(fileId, page, pages, source = "user") {
    const changedFile = fileId !== this.fileId;
    this.fileId = fileId;
    this.pages = Math.max(1, pages || 1);
    this.page = Math.min(Math.max(1, page), this.pages);
    this.root.dataset.file = String(fileId);
    this.root.dataset.page = String(this.page);
    // A new document: its marks and signatures load at once, whatever page turns follow
    // (a turn before its first page is drawn must not leave it without its annotations).
    // The page image is asked for first: it is what the reader waits for.
    const width = pageWidthFor(this.scroll.clientWidth || 800);
    const image = pageImage(fileId, this.page, width);
    let marks = null;
    if (changedFile) {
      delete this.root.dataset.shownPage;
      this.annotations = [];
      this.loadSignatures(fileId);
      if (this.annotate) marks = this.loadAnnotations();
    }
    this.scroll.setAttribute("aria-label", t("page_of", { page: this.page, pages: this.pages }));
    const shown = `${fileId}/${this.page}`;
    this._shown = shown;
    try {
      const url = await image;
      if (this._shown !== shown) return;
      this.img.src = url;
      await this.img.decode().catch(() => {});
      if (this._shown !== shown) return;
      this.root.dataset.shownPage = String(this.page);
    } catch (err) {
      showError(err);
    }
    if (marks) await marks;
    this._layout();
    this.dispatchEvent(new CustomEvent("pagechange", { detail: { fileId, page: this.page, source } }));
    // Warm the next page so turning is instant.
    if (this.page < this.pages) pageImage(fileId, this.page + 1, width).catch(() => {});
  }

  turn(delta) {
    if (!this.fileId) return;
    const next = Math.min(Math.max(1, this.page + delta), this.pages);
    if (next !== this.page) {
      this.dispatchEvent(new CustomEvent("userturn", { detail: { page: next } }));
      this.show(this.fileId, next, this.pages, "user");
    }
  }

  setZoom(zoom) {
    this.zoom = Math.min(ZOOM_MAX, Math.max(ZOOM_MIN, zoom));
    this.root.dataset.zoom = this.zoom.toFixed(2);
    this._layout();
  }

  setTool(tool) {
    this.tool = tool;
    this.wrap.classList.toggle("tool-active", tool !== "none");
  }

  _layout() {
    const available = this.scroll.clientWidth || 800;
    this.wrap.style.width = `${Math.round(available * this.zoom - 16)}px`;
    const rect = this._pageRect();
    const ratio = window.devicePixelRatio || 1;
    this.canvas.width = Math.max(1, Math.round(rect.width * ratio));
    this.canvas.height = Math.max(1, Math.round(rect.height * ratio));
    this._draw();
  }

  /** Show the badge of the file's digital signatures, from its metadata. */
  async loadSignatures(fileId) {
    let signatures = [];
    try {
      signatures = (await api(`files/${fileId}/meta`)).signatures || [];
    } catch {
      signatures = [];
    }
    if (fileId !== this.fileId) return;
    paintBadge(this.badge, signatureBadge(signatures));
  }

  // --- annotations ------------------------------------------------------------------------
  async loadAnnotations() {
    const fileId = this.fileId;
    if (!fileId) return;
    let rows;
    try {
      rows = listOf(await api(`files/${fileId}/annotations`), "annotations");
    } catch {
      rows = [];
    }
    // Another document opened meanwhile: these marks are not its own.
    if (this.fileId !== fileId) return;
    this.annotations = rows;
    // Written offline and not yet sent: the reader's own all the same.
    const stored = new Set(this.annotations.map((a) => a.client_id).filter(Boolean));
    this.annotations.push(...queuedAnnotations(fileId).filter((a) => !stored.has(a.client_id)));
    this._draw();
  }

  _pageAnnotations() {
    return this.annotations.filter((a) => a.page === this.page);
  }

  _draw() {
    const ctx = this.canvas.getContext("2d");
    const w = this.canvas.width;
    const hgt = this.canvas.height;
    ctx.clearRect(0, 0, w, hgt);
    const marks = [...this._pageAnnotations()];
    if (this.drawing) marks.push(this.drawing);
    this.notes.replaceChildren();
    for (const mark of marks) {
      const data = mark.data || {};
      if (mark.kind === "ink" && data.strokes?.length) {
        ctx.strokeStyle = data.color || PEN.color;
        ctx.lineWidth = Math.max(1, ((data.width || PEN.width) / PAGE_WIDTH_PT) * w);
        ctx.lineJoin = "round";
        ctx.lineCap = "round";
        for (const stroke of data.strokes) {
          ctx.beginPath();
          stroke.forEach(([x, y], i) => (i ? ctx.lineTo(x * w, y * hgt) : ctx.moveTo(x * w, y * hgt)));
          ctx.stroke();
        }
      } else if (mark.kind === "highlight" && data.rects?.length) {
        ctx.globalAlpha = HIGHLIGHTER.opacity;
        ctx.fillStyle = data.color || HIGHLIGHTER.color;
        for (const [x0, y0, x1, y1] of data.rects) ctx.fillRect(x0 * w, y0 * hgt, (x1 - x0) * w, (y1 - y0) * hgt);
        ctx.globalAlpha = 1;
      } else if (mark.kind === "note" && data.text) {
        const pin = h("div", { class: "note-pin", role: "note" }, data.text);
        pin.style.left = `${(data.x || 0) * 100}%`;
        pin.style.top = `${(data.y || 0) * 100}%`;
        this.notes.append(pin);
      }
    }
  }

  /** A shared annotation arrived (or was removed) live. */
  addShared(annotation) {
    if (annotation.file_id !== this.fileId || this.annotations.some((a) => a.id === annotation.id)) return;
    this.annotations.push(annotation);
    this._draw();
  }

  removeShared(annotationId) {
    this.annotations = this.annotations.filter((a) => a.id !== annotationId);
    this._draw();
  }

  /** Remove my latest annotation on this page. */
  async undo(myUserId) {
    const mine = this._pageAnnotations().filter((a) => a.user_id === undefined || a.user_id === myUserId);
    const last = mine[mine.length - 1];
    if (!last || typeof last.id !== "number") return;
    try {
      await api(`files/${this.fileId}/annotations/${last.id}`, { method: "DELETE" });
      this.removeShared(last.id);
    } catch (err) {
      showError(err);
    }
  }

  async _save(kind, data) {
    // A client id makes the call safe to repeat: sent again after a lost answer or from the
    // offline queue, the server answers the annotation it stored the first time.
    const body = { page: this.page, kind, data, shared: this.share, client_id: newClientId() };
    if (this.share && this.meetingId) body.meeting_id = this.meetingId;
    const local = { ...body, id: `local-${body.client_id}` };
    this.annotations.push(local);
    this._draw();
    try {
      const saved = await api(`files/${this.fileId}/annotations`, { method: "POST", body });
      Object.assign(local, saved || {});
      this.dispatchEvent(new CustomEvent("annotated", { detail: local }));
    } catch (err) {
      if (err.status === 0 && !body.shared) {
        // No network: a private annotation waits on the device and is sent on return.
        queueAnnotation(this.fileId, body);
        local.id = `queued-${body.client_id}`;
        return;
      }
      this.annotations = this.annotations.filter((a) => a !== local);
      this._draw();
      showError(err);
    }
  }

  /** The page image's box on screen: the whole page, also the part scrolled out of view. */
  _pageRect() {
    return this.img.getBoundingClientRect();
  }

  _point(event) {
    const rect = this._pageRect();
    const clamp = (v) => Math.min(1, Math.max(0, v));
    return [clamp((event.clientX - rect.left) / rect.width), clamp((event.clientY - rect.top) / rect.height)];
  }

  // --- pointer input: pinch, swipe, drawing ------------------------------------------------
  _bind() {
    const el = this.wrap;
    el.addEventListener("pointerdown", (event) => {
      this.pointers.set(event.pointerId, { x: event.clientX, y: event.clientY, x0: event.clientX, y0: event.clientY });
      if (this.pointers.size === 2) {
        const [a, b] = [...this.pointers.values()];
        this.pinch = { distance: Math.hypot(a.x - b.x, a.y - b.y), zoom: this.zoom };
        this.drawing = null;
        return;
      }
      if (this.tool === "none" || !this.annotate) return;
      el.setPointerCapture(event.pointerId);
      const p = this._point(event);
      if (this.tool === "pen") this.drawing = { kind: "ink", page: this.page, data: { strokes: [[p]], color: PEN.color, width: PEN.width } };
      if (this.tool === "highlighter") this.drawing = { kind: "highlight", page: this.page, start: p, data: { rects: [[p[0], p[1], p[0], p[1]]], color: HIGHLIGHTER.color } };
      if (this.tool === "note") this._addNote(p);
      event.preventDefault();
    });
    el.addEventListener("pointermove", (event) => {
      const pointer = this.pointers.get(event.pointerId);
      if (pointer) Object.assign(pointer, { x: event.clientX, y: event.clientY });
      if (this.pinch && this.pointers.size === 2) {
        const [a, b] = [...this.pointers.values()];
        this.setZoom(this.pinch.zoom * (Math.hypot(a.x - b.x, a.y - b.y) / (this.pinch.distance || 1)));
        return;
      }
      if (!this.drawing) return;
      const p = this._point(event);
      if (this.drawing.kind === "ink") this.drawing.data.strokes[0].push(p);
      else {
        const [sx, sy] = this.drawing.start;
        this.drawing.data.rects = [[Math.min(sx, p[0]), Math.min(sy, p[1]), Math.max(sx, p[0]), Math.max(sy, p[1])]];
      }
      this._draw();
    });
    const end = (event) => {
      const pointer = this.pointers.get(event.pointerId);
      this.pointers.delete(event.pointerId);
      if (this.pinch) {
        // The rest of a pinch is no swipe: wait until every finger is up.
        if (this.pointers.size === 0) this.pinch = null;
        return;
      }
      if (this.drawing) {
        const mark = this.drawing;
        this.drawing = null;
        const [x0, y0, x1, y1] = mark.kind === "highlight" ? mark.data.rects[0] : [0, 0, 0, 0];
        if (mark.kind === "ink" && mark.data.strokes[0].length > 1) {
          const round = (v) => Math.round(v * 10000) / 10000;
          mark.data.strokes = [mark.data.strokes[0].map(([x, y]) => [round(x), round(y)])];
          this._save("ink", mark.data);
        } else if (mark.kind === "highlight" && x1 - x0 > 0.005 && y1 - y0 > 0.003) {
          this._save("highlight", mark.data);
        } else {
          this._draw();
        }
        return;
      }
      // A swipe when not drawing and not zoomed in: turn the page.
      if (pointer && this.tool === "none" && this.zoom <= 1.05 && event.type === "pointerup") {
        const dx = event.clientX - pointer.x0;
        const dy = event.clientY - pointer.y0;
        if (Math.abs(dx) > SWIPE_MIN_PX && Math.abs(dx) > 2 * Math.abs(dy)) this.turn(dx < 0 ? 1 : -1);
      }
    };
    el.addEventListener("pointerup", end);
    el.addEventListener("pointercancel", end);
    this.scroll.addEventListener("wheel", (event) => {
      if (!event.ctrlKey) return;
      event.preventDefault();
      this.setZoom(this.zoom * (event.deltaY < 0 ? 1.1 : 0.9));
    }, { passive: false });
    this.scroll.addEventListener("keydown", (event) => {
      if (event.key === "ArrowRight" || event.key === "PageDown") this.turn(1);
      else if (event.key === "ArrowLeft" || event.key === "PageUp") this.turn(-1);
      else if (event.key === "+" || event.key === "=") this.setZoom(this.zoom * 1.25);
      else if (event.key === "-") this.setZoom(this.zoom / 1.25);
      else return;
      event.preventDefault();
    });
  }

  async _addNote(p) {
    const values = await dialog(t("tool_note"), h("div", {},
      h("label", { for: "note-text" }, t("note_prompt")),
      h("textarea", { id: "note-text", name: "text", required: true, rows: 3 })));
    if (values && values.text.trim()) this._save("note", { x: p[0], y: p[1], text: values.text.trim(), color: NOTE_COLOR });
  }
}
