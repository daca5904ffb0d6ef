// Alerts that wake a clerk: a system notification for every new instruction (through the
// chat's service worker, so it shows while the tab is in the background), and a sound made
// on the spot with WebAudio for Thượng khẩn and Hỏa tốc — Hỏa tốc rings again and again
// until the instruction is opened.

import { fill, h } from "../js/shell.js";
import { t } from "../js/i18n.js";

const WORKER_URL = "/app/chat/sw.js";
const WORKER_SCOPE = "/app/chat/";
// Hỏa tốc rings again after this long until it is opened: a clerk who stepped away from the
// desk hears the next call on coming back into the room.
const EXPRESS_REPEAT_MS = 15_000;
// "Later" on the permission question holds for this browser session only.
const LATER_KEY = "dh.chat.alerts-later";
const LOUD = new Set(["very_urgent", "express"]);

let registration = null;
let audio = null;
let setupBox = null; // where the questions are shown (re-drawn when sound gets unlocked)
const ringing = new Map(); // directive id -> interval timer
// What the page played and showed, for the browser tests (bounded).
const record = { sounds: [], notifications: [] };
window.dhAlerts = record;

function remember(list, entry) {
  list.push(entry);
  if (list.length > 200) list.shift();
}

const supported = () => "Notification" in window && "serviceWorker" in navigator;

/** Register the service worker, unlock sound on the first gesture, and route clicks on a
 *  notification back to the page (`onOpen(directiveId)`). */
export async function startAlerts({ onOpen }) {
  const unlock = () => {
    soundContext();
    document.removeEventListener("pointerdown", unlock, true);
    document.removeEventListener("keydown", unlock, true);
    // Only the sound question goes away, and after the click that answered it has landed
    // (re-drawing the notification question under a pressed button would swallow its click).
    if (setupBox?.querySelector("#sound-setup-panel")) setTimeout(() => renderPermission(setupBox), 400);
  };
  document.addEventListener("pointerdown", unlock, true);
  document.addEventListener("keydown", unlock, true);
  if (!("serviceWorker" in navigator)) return;
  navigator.serviceWorker.addEventListener("message", (event) => {
    const message = event.data || {};
    if (message.type === "open-directive" && message.directive_id) onOpen(Number(message.directive_id));
  });
  try {
    registration = await navigator.serviceWorker.register(WORKER_URL, { scope: WORKER_SCOPE });
  } catch (err) {
    console.warn("notifications unavailable: the service worker did not register", err);
  }
}

// --- the permission question: after sign-in, explained, answered by a button ---------------
/** The panel asking for notifications, or null when there is nothing to ask. */
export function permissionPanel(onDone) {
  if (!supported()) return null;
  const permission = Notification.permission;
  if (permission === "granted" || sessionStorage.getItem(LATER_KEY)) return null;
  const later = () => {
    sessionStorage.setItem(LATER_KEY, "1");
    onDone();
  };
  if (permission === "denied") {
    return h("div", { class: "alert-setup panel", id: "alert-setup-panel", role: "region", "aria-label": t("alerts_title") },
      h("p", {}, h("strong", {}, t("alerts_blocked"))),
      h("div", { class: "row" }, h("button", { type: "button", class: "btn btn-small", onclick: later }, t("close"))));
  }
  const enable = async () => {
    soundContext(); // this click is the gesture that lets the page play sound later
    try {
      await Notification.requestPermission();
    } finally {
      if (Notification.permission === "granted") chime();
      onDone();
    }
  };
  return h("div", { class: "alert-setup panel", id: "alert-setup-panel", role: "region", "aria-label": t("alerts_title") },
    h("p", {}, h("strong", {}, t("alerts_title")), " ", t("alerts_explain")),
    h("div", { class: "row" },
      h("button", { type: "button", class: "btn btn-primary", id: "enable-alerts", onclick: enable }, t("alerts_enable")),
      h("button", { type: "button", class: "btn", onclick: later }, t("alerts_later"))));
}

// A browser plays sound only after the page has had a click or a key press: until then (a
// tab reopened in the morning) say so, with a button that is that click.
const soundBlocked = () => !!navigator.userActivation && !navigator.userActivation.hasBeenActive
  && !(audio && audio.state === "running");

function soundPanel(onDone) {
  if (!soundBlocked() || sessionStorage.getItem(LATER_KEY)) return null;
  const enable = () => {
    soundContext();
    chime();
    onDone();
  };
  return h("div", { class: "alert-setup panel", id: "sound-setup-panel", role: "region", "aria-label": t("sound_title") },
    h("p", {}, h("strong", {}, t("sound_title")), " ", t("sound_explain")),
    h("div", { class: "row" }, h("button", { type: "button", class: "btn btn-primary", id: "enable-sound", onclick: enable }, t("sound_enable"))));
}

/** Show (or hide) the questions in `box`: notifications first, then sound. */
export function renderPermission(box) {
  if (!box) return;
  setupBox = box;
  const again = () => renderPermission(box);
  fill(box, permissionPanel(again) || soundPanel(again));
}

// --- system notifications ------------------------------------------------------------------
async function show(title, options) {
  if (!supported() || Notification.permission !== "granted") return false;
  const reg = registration || (await navigator.serviceWorker.getRegistration(WORKER_SCOPE));
  if (!reg) return false;
  const worker = reg.active;
  if (worker) worker.postMessage({ type: "notify", title, options });
  else await reg.showNotification(title, options);
  remember(record.notifications, { title, tag: options.tag });
  return true;
}

function directiveUrl(id) {
  return new URL(`/app/chat/#directive/${id}`, location.origin).href;
}

/** A new instruction: a notification with urgency, sender and title; sound when urgent. */
export function alertDirective(d, senderText) {
  const urgency = d.urgency || "normal";
  const label = t(`urgency_${urgency}`);
  const text = d.title ?? t("restricted");
  // Titles often begin with their urgency already ("Hỏa tốc: …"): say it once.
  const title = text.toLocaleLowerCase().startsWith(label.toLocaleLowerCase()) ? text : `${label}: ${text}`;
  const lines = [senderText ? t("from", { name: senderText }) : "", d.due_at ? t("due", { time: new Date(d.due_at).toLocaleString("vi-VN") }) : ""];
  show(title, {
    body: lines.filter(Boolean).join("\n"),
    tag: `directive-${d.id}`,
    renotify: true,
    requireInteraction: LOUD.has(urgency),
    vibrate: urgency === "express" ? [400, 200, 400, 200, 400] : undefined,
    lang: document.documentElement.lang || "vi",
    data: { url: directiveUrl(d.id), directive_id: d.id },
  }).catch((err) => console.warn("notification not shown", err));
  if (urgency === "express") ringUntilOpened(d.id);
  else if (urgency === "very_urgent") play("very_urgent");
}

/** A reminder or an overdue notice about an instruction already received. */
export function alertNotice(d, text) {
  show(text, {
    body: d.title ?? "",
    tag: `directive-${d.id}`,
    renotify: true,
    requireInteraction: LOUD.has(d.urgency),
    lang: document.documentElement.lang || "vi",
    data: { url: directiveUrl(d.id), directive_id: d.id },
  }).catch((err) => console.warn("notification not shown", err));
  if (LOUD.has(d.urgency)) play(d.urgency);
}

/** Ring now and every EXPRESS_REPEAT_MS until `stopRinging(id)`. */
export function ringUntilOpened(id) {
  play("express");
  if (ringing.has(id)) return;
  ringing.set(id, setInterval(() => play("express"), EXPRESS_REPEAT_MS));
}

export function stopRinging(id) {
  clearInterval(ringing.get(id));
  ringing.delete(id);
  if (registration) {
    registration.getNotifications({ tag: `directive-${id}` }).then((list) => list.forEach((n) => n.close())).catch(() => {});
  }
}

record.ringing = (id) => ringing.has(id);

// --- sound: synthesised, nothing downloaded ---------------------------------------------------
function soundContext() {
  const Context = window.AudioContext || window.webkitAudioContext;
  if (!Context) return null;
  if (!audio) audio = new Context();
  if (audio.state === "suspended") audio.resume().catch(() => {});
  return audio;
}

function tone(ctx, { at, freq, length, type = "sine", volume = 0.25 }) {
  const osc = ctx.createOscillator();
  const gain = ctx.createGain();
  osc.type = type;
  osc.frequency.setValueAtTime(freq, at);
  // A short attack and release: no clicks.
  gain.gain.setValueAtTime(0, at);
  gain.gain.linearRampToValueAtTime(volume, at + 0.02);
  gain.gain.setValueAtTime(volume, at + length - 0.03);
  gain.gain.linearRampToValueAtTime(0, at + length);
  osc.connect(gain).connect(ctx.destination);
  osc.start(at);
  osc.stop(at + length + 0.01);
}

/** Thượng khẩn: two double beeps. Hỏa tốc: a two-tone siren, harsher and longer. */
function play(urgency) {
  const ctx = soundContext();
  remember(record.sounds, { urgency, at: Date.now(), state: ctx ? ctx.state : "unsupported" });
  if (!ctx) return;
  const start = ctx.currentTime + 0.05;
  if (urgency === "express") {
    for (let i = 0; i < 8; i += 1) {
      tone(ctx, { at: start + i * 0.28, freq: i % 2 ? 700 : 1050, length: 0.26, type: "square", volume: 0.18 });
    }
  } else {
    for (const [i, offset] of [0, 0.22, 0.8, 1.02].entries()) {
      tone(ctx, { at: start + offset, freq: i % 2 ? 660 : 880, length: 0.16 });
    }
  }
}

/** A soft confirmation that sound works (after the clerk turned alerts on). */
function chime() {
  const ctx = soundContext();
  if (!ctx) return;
  const start = ctx.currentTime + 0.05;
  tone(ctx, { at: start, freq: 660, length: 0.15, volume: 0.15 });
  tone(ctx, { at: start + 0.17, freq: 990, length: 0.2, volume: 0.15 });
}
