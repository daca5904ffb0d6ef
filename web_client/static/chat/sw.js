// The chat's service worker (scope /app/chat/): it owns the system notifications of new
// instructions, so they show while the page is in the background or minimised, and a click
// on one brings the chat page forward with that instruction open. It caches nothing: the
// chat is live or it says it is offline.

self.addEventListener("install", () => {
  // A new version takes over at once: there is no cache to keep consistent.
  self.skipWaiting();
});

self.addEventListener("activate", (event) => {
  event.waitUntil(self.clients.claim());
});

// The page hands over what to show; the worker shows it, so that it belongs to the
// registration (the only kind a phone shows) and its click comes back here.
self.addEventListener("message", (event) => {
  const message = event.data || {};
  if (message.type !== "notify" || typeof message.title !== "string") return;
  const options = message.options || {};
  event.waitUntil(self.registration.showNotification(message.title, options));
});

async function openInChat(url, directiveId) {
  const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
  const chat = windows.find((client) => new URL(client.url).pathname.startsWith("/app/chat/"));
  if (chat) {
    // Open it first: bringing the window forward is the browser's to allow.
    chat.postMessage({ type: "open-directive", directive_id: directiveId });
    await chat.focus();
    return;
  }
  await self.clients.openWindow(url);
}

self.addEventListener("notificationclick", (event) => {
  const data = event.notification.data || {};
  event.notification.close();
  const url = new URL(data.url || "/app/chat/", self.location.origin);
  // Only ever this app's own pages.
  const target = url.origin === self.location.origin ? url.href : new URL("/app/chat/", self.location.origin).href;
  const opening = openInChat(target, data.directive_id ?? null).catch((err) => console.warn("notification click", err));
  if (event.isTrusted) event.waitUntil(opening);
});
