// What every page shares: the header (title, connection status, language, sign out), the
// aria-live regions, toasts, a tiny element builder, and wiring of the real-time client.

import { logout, requireLogin, session, toLogin } from "./api.js";
import { applyI18n, lang, setLang, t } from "./i18n.js";
import { Realtime } from "./realtime.js";
import { forgetUserData } from "./ballot.js";

/** Build an element: h("button", {class: "x", onclick: fn}, "text", child). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "class") {
      el.className = value;
    } else if (key === "dataset") {
      Object.assign(el.dataset, value);
    } else if (key === "text") {
      el.textContent = value;
    } else if (key === "style") {
      // Through the CSSOM: the Content-Security-Policy refuses style attributes in markup.
      el.style.cssText = String(value);
    } else if (value === true) {
      el.setAttribute(key, "");
    } else {
      el.setAttribute(key, String(value));
    }
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** What makes a control the same control after a redraw: its kind, id, label and data. */
function controlKey(el) {
  const text = ["BUTTON", "A", "SUMMARY"].includes(el.tagName) ? el.textContent.trim() : "";
  return [el.tagName, el.id, el.getAttribute("aria-label"), el.getAttribute("name"), el.getAttribute("type"),
    JSON.stringify({ ...el.dataset }), text].join("\u0001");
}

/** Replace an element's children. A redraw keeps the keyboard's place: when the focus was
 *  inside, it moves to the one new control that is the same (same kind, id, label, data and
 *  text; for a text field, with its caret), as events redraw lists while someone tabs through. */
export function fill(el, ...children) {
  const active = document.activeElement;
  const held = active && active !== document.body && el.contains(active)
    ? { key: controlKey(active), tag: active.tagName, value: active.value, start: active.selectionStart, end: active.selectionEnd }
    : null;
  el.replaceChildren();
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  if (held && !el.contains(document.activeElement)) {
    const same = [...el.getElementsByTagName(held.tag)].filter((c) => controlKey(c) === held.key);
    if (same.length === 1) {
      same[0].focus({ preventScroll: true });
      if (held.start !== null && held.start !== undefined && same[0].value === held.value) {
        try { same[0].setSelectionRange(held.start, held.end); } catch { /* not a text field */ }
      }
    }
  }
  return el;
}

function liveRegion(id, politeness) {
  let region = document.getElementById(id);
  if (!region) {
    region = h("div", { id, class: "visually-hidden", "aria-live": politeness, role: politeness === "assertive" ? "alert" : "status" });
    document.body.append(region);
  }
  return region;
}

/** Read a short text to screen readers (assertive for what must not be missed). */
export function announce(text, { assertive = false } = {}) {
  const region = liveRegion(assertive ? "live-assertive" : "live-polite", assertive ? "assertive" : "polite");
  region.textContent = "";
  // A fresh text node in a later frame makes screen readers read repeated messages too.
  requestAnimationFrame(() => (region.textContent = text));
}

/** A short visible message, also announced. */
export function toast(text, kind = "info") {
  let box = document.getElementById("toasts");
  if (!box) {
    box = h("div", { id: "toasts", class: "toasts" });
    document.body.append(box);
  }
  const item = h("div", { class: `toast toast-${kind}` }, text);
  box.append(item);
  announce(text, { assertive: kind === "error" || kind === "urgent" });
  setTimeout(() => item.remove(), kind === "error" ? 8000 : 5000);
}

export function showError(error) {
  toast(t("error_generic", { message: error?.message || String(error) }), "error");
}

/**
 * Put the shared header into #app-header and return the signed-in user.
 * `titleKey` is an i18n key; `extra` elements go before the language switch.
 */
export function startPage(titleKey, { extra = [], requireUser = true } = {}) {
  const user = requireUser ? requireLogin() : session.user;
  document.documentElement.lang = lang();
  const header = document.getElementById("app-header");
  if (header) {
    const status = h("span", { id: "conn-status", class: "conn conn-connecting", role: "status", "aria-live": "polite" },
      h("span", { class: "conn-dot", "aria-hidden": "true" }),
      h("span", { class: "conn-text", "data-i18n": "status_connecting" }, t("status_connecting")));
    fill(header,
      h("a", { class: "brand", href: "/app/" }, t("app_name")),
      h("h1", { class: "page-title", "data-i18n": titleKey }, t(titleKey)),
      h("div", { class: "header-tools" },
        status,
        ...extra,
        user ? h("span", { class: "who" }, user.display_name) : null,
        h("button", {
          type: "button", class: "btn btn-ghost", id: "lang-switch",
          "data-i18n": "lang_switch", "data-i18n-label": "lang_switch_label",
          onclick: () => setLang(lang() === "vi" ? "en" : "vi"),
        }, t("lang_switch")),
        user ? h("button", { type: "button", class: "btn btn-ghost", id: "logout", "data-i18n": "logout", onclick: signOut }, t("logout")) : null,
      ));
  }
  applyI18n(document);
  return user;
}

/** Sign out: nothing of the user stays on a shared tablet (ballots, positions, drafts). */
export function signOut() {
  // The stored copies go before the page leaves (they are removed asynchronously).
  forgetUserData().finally(logout);
}

/** Show the connection state in the header. */
export function showConnection(status) {
  const el = document.getElementById("conn-status");
  if (!el) return;
  el.className = `conn conn-${status}`;
  el.dataset.status = status;
  const text = el.querySelector(".conn-text");
  text.dataset.i18n = `status_${status}`;
  text.textContent = t(`status_${status}`);
  let banner = document.getElementById("offline-banner");
  // Once the link is lost the banner stays through the reconnection attempts, until the
  // page is online again (a small "connecting" pill alone is easily missed).
  if (status === "offline" && !banner) {
    banner = h("div", { id: "offline-banner", class: "offline-banner", role: "alert", "data-i18n": "status_offline" }, t("status_offline"));
    (document.getElementById("app-header") || document.body.firstChild)?.after(banner);
  } else if (status === "online" && banner) {
    banner.remove();
    banner = null;
  }
  document.body.classList.toggle("is-offline", !!banner);
}

/** Start the shared real-time client with the header's indicator wired in. */
export function connectRealtime({ onEvent, onReset, onSignal, onResumed } = {}) {
  const user = session.user;
  let wasOffline = false;
  const realtime = new Realtime({
    userId: user.id,
    token: () => session.token,
    onEvent,
    onReset,
    onSignal,
    onStatus: (status) => {
      showConnection(status);
      if (status === "offline" && !wasOffline) {
        wasOffline = true;
        announce(t("status_offline"), { assertive: true });
      }
      if (status === "online" && wasOffline) {
        wasOffline = false;
        announce(t("status_back"));
      }
    },
    onAuthFailed: () => {
      // The user is changing its password (js/account.js): the page reloads with the new token.
      if (sessionStorage.getItem("dh.password-change")) return;
      // The session is over: nothing of this user stays on the device.
      forgetUserData();
      session.clear();
      toLogin();
    },
  });
  if (onResumed) realtime.addEventListener("resumed", onResumed);
  // Every event handed to the page, for the browser tests (bounded).
  window.dhEvents = [];
  realtime.addEventListener("event", (e) => {
    window.dhEvents.push(`${e.detail.topic}#${e.detail.seq}`);
    if (window.dhEvents.length > 2000) window.dhEvents.shift();
  });
  realtime.start();
  // Presence: away while the page is hidden, online when it is back (and on every reconnect).
  const sendPresence = () => realtime.signal(`user:${user.id}`, "presence",
    { state: document.visibilityState === "hidden" ? "away" : "online" });
  document.addEventListener("visibilitychange", sendPresence);
  realtime.addEventListener("status", (e) => {
    if (e.detail === "online" && document.visibilityState === "hidden") sendPresence();
  });
  window.dhRealtime = realtime; // for debugging and the browser tests
  return realtime;
}

/** mm:ss for a number of seconds. */
export function clockText(seconds) {
  const s = Math.max(0, Math.round(seconds));
  return `${String(Math.floor(s / 60)).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}`;
}

/** A simple modal dialog using <dialog>; resolves with the form values or null. */
export function dialog(titleText, body, { okText = t("confirm"), cancelText = t("cancel"), danger = false } = {}) {
  return new Promise((resolve) => {
    const form = h("form", { method: "dialog", class: "dialog-form" },
      h("h2", {}, titleText),
      body,
      h("div", { class: "row end" },
        h("button", { type: "button", class: "btn", value: "cancel", onclick: () => { dlg.close(); } }, cancelText),
        h("button", { type: "submit", class: `btn ${danger ? "btn-danger" : "btn-primary"}`, value: "ok" }, okText)));
    const dlg = h("dialog", { class: "modal" }, form);
    let result = null;
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      result = Object.fromEntries(new FormData(form).entries());
      dlg.close();
    });
    dlg.addEventListener("close", () => {
      dlg.remove();
      resolve(result);
    });
    document.body.append(dlg);
    dlg.showModal();
  });
}
