// Requests a page can make before its modules have arrived. The delegate page names this
// module first, as an async module script without imports: it runs as soon as it is here,
// one round trip after the page, while the page's other modules are still on their way
// over a slow link and then being evaluated. Opening a meeting (#meeting/N), it asks at
// once for the meeting's state and, when the state names the presented page, for that
// page's image at the width the viewer will ask for. api.js takes these answers instead of
// asking again (each once, for the very same address); nothing is asked without a session.

const TOKEN_KEY = "dh.token";
const started = new Map();

// Settles once the early requests of this page are all asked (or given up): a page image
// asked for meanwhile waits for it, so the viewer and this module never both ask for it.
let asking = Promise.resolve();
const PAGE_IMAGE = /^\/api\/v1\/files\/\d+\/pages\//;

/** Resolves when an early request of `path` would have been made by now. */
export function earlySettled(path) {
  return PAGE_IMAGE.test(path) ? asking : Promise.resolve();
}

/** The answer to an early GET of `path` made with `token`, once; else undefined. */
export function takeEarly(path, token) {
  const early = started.get(path);
  started.delete(path);
  return early && early.token === token ? early.answer : undefined;
}

function ask(path, token) {
  const answer = fetch(path, { headers: { Authorization: `Bearer ${token}` } });
  answer.catch(() => started.delete(path));
  started.set(path, { token, answer });
  return answer;
}

// --- what the delegate's viewer will ask for (kept in step with meeting-state.js) -------------
// Widths of page images, in steps shared with the server's WebP steps.
const WIDTH_STEPS = [640, 800, 1024, 1280, 1600, 1920, 2400];
// The delegate layout around the viewer (css/app.css): main is at most 1400 px wide with
// 1rem of padding; from 901 px on, the 300 px agenda column and a 1rem gap stand beside
// the document's panel, whose padding (.9rem) and border (1px) surround the viewer.
const MAIN_MAX_PX = 1400;
const MAIN_PADDING_PX = 2 * 16;
const LAYOUT_WIDE_MIN_PX = 901;
const AGENDA_COLUMN_PX = 300 + 16;
const PANEL_EDGES_PX = 2 * 14.4 + 2;

export function pageWidthFor(cssWidth) {
  const pixels = cssWidth * Math.min(3, window.devicePixelRatio || 1);
  return WIDTH_STEPS.find((step) => pixels <= step) || WIDTH_STEPS[WIDTH_STEPS.length - 1];
}

/** Whether this browser decodes WebP (every current one; a canvas tells without a request). */
export const canWebp = (() => {
  try {
    const canvas = document.createElement("canvas");
    canvas.width = canvas.height = 1;
    return canvas.toDataURL("image/webp").startsWith("data:image/webp");
  } catch {
    return false;
  }
})();

/** The address of a page image at a width: WebP where the browser decodes it, else PNG
 *  (and PNG for thumbnails narrower than the smallest WebP step, which would be larger). */
export function pageImagePath(fileId, page, width) {
  const format = canWebp && width >= WIDTH_STEPS[0] ? "webp" : "png";
  return `/api/v1/files/${fileId}/pages/${page}.${format}?width=${width}`;
}

/** The viewer's width on this screen before the page is laid out: the window less the
 *  layout's fixed parts (a guess; a wrong one costs one image the viewer does not use). */
function expectedViewerWidth() {
  const inner = Math.min(window.innerWidth, MAIN_MAX_PX) - MAIN_PADDING_PX;
  const column = window.innerWidth >= LAYOUT_WIDE_MIN_PX ? inner - AGENDA_COLUMN_PX : inner;
  return Math.max(320, column - PANEL_EDGES_PX);
}

async function openMeeting(meetingId, token) {
  const response = await ask(`/api/v1/meetings/${meetingId}`, token);
  if (!response.ok) return;
  const state = await response.clone().json();
  const shown = state.presentation;
  const doc = shown?.document_id && findDocument(state.agenda || [], shown.document_id);
  if (!doc || !(shown.page >= 1 && shown.page <= (doc.pages || 1))) return;
  ask(pageImagePath(shown.document_id, shown.page, pageWidthFor(expectedViewerWidth())), token);
}

function findDocument(items, fileId) {
  for (const item of items) {
    const doc = (item.documents || []).find((d) => d.id === fileId) || findDocument(item.children || [], fileId);
    if (doc) return doc;
  }
  return null;
}

const token = localStorage.getItem(TOKEN_KEY);
const meeting = location.pathname.startsWith("/app/delegate/") && location.hash.match(/^#meeting\/(\d+)$/);
if (token && meeting) asking = openMeeting(meeting[1], token).catch(() => {});
