// The delegate tablet's service worker (scope /app/delegate/). It keeps what a delegate needs
// to read without the network: the app shell (pages, scripts, styles, fonts), page images of
// the meeting's documents (downloaded ahead of the session by js/offline.js) and the last
// answers of the meeting's state. Page images come from the device first; everything else
// from the network first, the stored copy only when the network is gone. The page empties
// these caches at sign-out. Ballots and other writes always go to the network.

const SHELL = "dh-delegate-shell";
const PAGES = "dh-delegate-pages";
const STATE = "dh-delegate-state";

self.addEventListener("install", () => self.skipWaiting());

self.addEventListener("activate", (event) => {
  event.waitUntil(self.clients.claim());
});

const PAGE_IMAGE = /^\/api\/v1\/files\/(\d+)\/pages\/(\d+)\.(webp|png)$/;
// Answers kept for reading offline: the meeting's state, its list, documents' metadata,
// the reader's annotations and the display settings.
const KEPT_STATE = /^\/api\/v1\/(meetings(\/\d+)?|files\/\d+\/(meta|annotations)|display|me)$/;

/** A page image stored at another width, for a tablet turned since it downloaded. */
async function anyWidth(cache, url) {
  const match = url.pathname.match(PAGE_IMAGE);
  for (const request of await cache.keys()) {
    const other = new URL(request.url).pathname.match(PAGE_IMAGE);
    if (other && other[1] === match[1] && other[2] === match[2]) return cache.match(request);
  }
  return undefined;
}

async function pageImage(request, url) {
  const cache = await caches.open(PAGES);
  const hit = await cache.match(request, { ignoreVary: true });
  if (hit) return hit;
  try {
    const response = await fetch(request);
    if (response.ok) await cache.put(request, response.clone());
    return response;
  } catch (err) {
    const other = await anyWidth(cache, url);
    if (other) return other;
    throw err;
  }
}

/** Network first; the stored copy (marked with when it was stored) when offline. */
async function networkFirst(name, request) {
  const cache = await caches.open(name);
  try {
    const response = await fetch(request);
    if (response.ok) {
      const headers = new Headers(response.headers);
      headers.set("X-Stored-At", new Date().toISOString());
      const copy = new Response(await response.clone().blob(), { status: response.status, headers });
      await cache.put(request, copy);
    }
    return response;
  } catch (err) {
    const hit = await cache.match(request, { ignoreVary: true, ignoreSearch: name === SHELL && request.mode === "navigate" });
    if (hit) return hit;
    throw err;
  }
}

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") return;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) return;
  if (PAGE_IMAGE.test(url.pathname)) {
    event.respondWith(pageImage(request, url));
  } else if (KEPT_STATE.test(url.pathname)) {
    event.respondWith(networkFirst(STATE, request));
  } else if (url.pathname.startsWith("/app/") || url.pathname.startsWith("/fonts/")) {
    event.respondWith(networkFirst(SHELL, request));
  }
});

// The page names the files of its shell that loaded before this worker took control.
self.addEventListener("message", (event) => {
  const message = event.data || {};
  if (message.type === "shell" && Array.isArray(message.urls)) {
    const own = message.urls.filter((u) => new URL(u, self.location.origin).origin === self.location.origin);
    event.waitUntil(caches.open(SHELL).then((cache) => Promise.all(own.map((u) => cache.add(u).catch(() => {})))));
  }
});
