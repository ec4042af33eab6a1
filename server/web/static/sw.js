/* Parley's Web Push service worker: shows a notification for each push and opens its link. */
"use strict";

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

function safeUrl(raw) {
  try {
    const u = new URL(String(raw), self.location.origin);
    return u.protocol === "http:" || u.protocol === "https:" ? u.href : null;
  } catch (_e) {
    return null;
  }
}

self.addEventListener("push", (event) => {
  let data = {};
  try {
    data = event.data ? event.data.json() : {};
  } catch (_e) {
    data = { title: "New message", body: event.data ? event.data.text() : "" };
  }
  const title = String(data.title || "New message").slice(0, 200);
  event.waitUntil(self.registration.showNotification(title, {
    body: String(data.body || "").slice(0, 1000),
    tag: data.collapse_key || data.id || undefined,
    data: { url: safeUrl(data.url) || self.location.origin + "/", id: data.id || null },
  }));
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const url = (event.notification.data && event.notification.data.url) || self.location.origin + "/";
  event.waitUntil((async () => {
    const all = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
    for (const c of all) {
      if (c.url === url && "focus" in c) return c.focus();
    }
    return self.clients.openWindow(url);
  })());
});
