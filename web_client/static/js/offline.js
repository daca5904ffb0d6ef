// The delegate tablet without the network: its service worker (delegate/sw.js), the meeting's
// documents downloaded ahead of the session, the last known state of a meeting, and the queue
// of annotations written offline (sent again, with their client id, when the network returns).
// Everything here is the signed-in user's and goes at sign-out (ballot.js forgetUserData).

import { api, session } from "./api.js";
import { agendaItems, pageImagePath, pageWidthFor } from "./meeting-state.js";

const WORKER_URL = "/app/delegate/sw.js";
const WORKER_SCOPE = "/app/delegate/";
// Requests in flight at once while downloading: 95 tablets share the hall's Wi-Fi.
const CONCURRENCY = 2;

/** Register the worker and hand it the shell files that loaded before it took control. */
export async function startOfflineWorker() {
  if (!("serviceWorker" in navigator)) return null;
  try {
    await navigator.serviceWorker.register(WORKER_URL, { scope: WORKER_SCOPE });
    const registration = await navigator.serviceWorker.ready;
    const urls = [location.pathname, ...performance.getEntriesByType("resource").map((e) => e.name)]
      .filter((u) => { const p = new URL(u, location.origin); return p.origin === location.origin && !p.pathname.startsWith("/api/") && !p.pathname.startsWith("/ws"); });
    registration.active?.postMessage({ type: "shell", urls });
    return registration;
  } catch {
    return null;
  }
}

const userKey = (name) => `dh.offline.${session.user?.id}.${name}`;

// --- the meeting's last known state --------------------------------------------------------
export function rememberState(meetingId, state) {
  try {
    // Without its polls: there is no voting offline, and nothing of a ballot stays here.
    const kept = { ...state, polls: [] };
    localStorage.setItem(userKey(`meeting.${meetingId}`), JSON.stringify({ at: new Date().toISOString(), state: kept }));
  } catch {
    /* storage full: the state is only a convenience offline */
  }
}

/** The state as last seen online and when: { at, state } or null. */
export function lastKnownState(meetingId) {
  try {
    return JSON.parse(localStorage.getItem(userKey(`meeting.${meetingId}`)) || "null");
  } catch {
    return null;
  }
}

// --- documents ahead of the session ----------------------------------------------------------
let limits = null;
async function preloadLimits() {
  if (!limits) {
    const display = await api("display");
    limits = { documents: display.preload_max_documents, bytes: display.preload_max_bytes };
  }
  return limits;
}

/** The meeting's documents once each, in agenda order. */
export function meetingDocuments(state) {
  const seen = new Map();
  for (const item of agendaItems(state?.agenda)) {
    for (const doc of item.documents || []) if (doc.pages && !seen.has(doc.id)) seen.set(doc.id, doc);
  }
  return [...seen.values()];
}

let running = null;

/** Whether the worker controls this page (it claims it right after its first install). */
async function controlled() {
  if (!("serviceWorker" in navigator)) return false;
  if (navigator.serviceWorker.controller) return true;
  await navigator.serviceWorker.ready;
  if (navigator.serviceWorker.controller) return true;
  await new Promise((resolve) => {
    navigator.serviceWorker.addEventListener("controllerchange", resolve, { once: true });
    setTimeout(resolve, 10_000);
  });
  return Boolean(navigator.serviceWorker.controller);
}

/**
 * Download every page image of the meeting's documents at this tablet's width (the worker
 * keeps them), two requests at a time, within the set bounds. `onProgress(done, total)`
 * after each document. A new call (the agenda changed) replaces the running one.
 */
export function preloadMeeting(state, onProgress) {
  const token = {};
  running = token;
  return (async () => {
    // Only through the worker do the pages stay on the device: wait until it controls the page.
    if (!(await controlled()) || running !== token) return;
    const bounds = await preloadLimits();
    const docs = meetingDocuments(state).slice(0, Math.max(0, bounds.documents));
    const width = pageWidthFor(Math.max(window.innerWidth, 320));
    let bytes = 0;
    let done = 0;
    onProgress(done, docs.length);
    const jobs = docs.flatMap((doc) => Array.from({ length: doc.pages }, (_, i) => ({ doc, page: i + 1 })));
    const left = new Map(docs.map((doc) => [doc.id, doc.pages]));
    let next = 0;
    const worker = async () => {
      while (next < jobs.length && running === token && bytes <= bounds.bytes) {
        const { doc, page } = jobs[next++];
        const response = await api(pageImagePath(doc.id, page, width), { raw: true });
        bytes += (await response.blob()).size;
        left.set(doc.id, left.get(doc.id) - 1);
        if (left.get(doc.id) === 0 && running === token) onProgress(++done, docs.length);
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  })();
}

// --- annotations written offline -------------------------------------------------------------
export function newClientId() {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return "a" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function readQueue() {
  try {
    return JSON.parse(localStorage.getItem(userKey("annotations")) || "[]");
  } catch {
    return [];
  }
}

function writeQueue(queue) {
  localStorage.setItem(userKey("annotations"), JSON.stringify(queue));
}

/** Keep an annotation to send later: { file_id, body } with body.client_id set. */
export function queueAnnotation(fileId, body) {
  writeQueue([...readQueue(), { file_id: fileId, body }]);
}

/** Annotations of a file still waiting to be sent (shown as the reader's own meanwhile). */
export function queuedAnnotations(fileId) {
  return readQueue().filter((entry) => entry.file_id === fileId).map((entry) => ({ ...entry.body, file_id: fileId, id: `queued-${entry.body.client_id}` }));
}

let flushing = null;
/** Send the queue in order; each one leaves it once the server answered (201 or 200). */
export function flushAnnotations() {
  if (!flushing) {
    flushing = (async () => {
      const sent = [];
      for (const entry of readQueue()) {
        try {
          sent.push(await api(`files/${entry.file_id}/annotations`, { method: "POST", body: entry.body }));
        } catch (err) {
          if (err.status === 0) break; // still offline: try again later
          // Refused for good (the document is gone, a limit): it cannot be stored.
        }
        writeQueue(readQueue().filter((e) => e.body.client_id !== entry.body.client_id));
      }
      return sent;
    })().finally(() => (flushing = null));
  }
  return flushing;
}

/** Remove the offline caches of the worker (sign-out). */
export async function forgetOfflineCaches() {
  if (!("caches" in window)) return;
  for (const name of await caches.keys()) if (name.startsWith("dh-delegate-")) await caches.delete(name);
}
