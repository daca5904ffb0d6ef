// The chat client: urgent-instruction inbox (with acknowledgement and replies), compose and
// the live acknowledgement board for senders, unit/group/direct channels, search.

import { api, ApiError, blobUrl, download, listOf, randomId, uploadFile } from "./api.js";
import { formatTime, t } from "./i18n.js";
import { announce, connectRealtime, dialog, fill, h, showConnection, showError, startPage, toast } from "./shell.js";
import { createBoard, progressBar } from "../chat/board.js";
import { alertDirective, alertNotice, renderPermission, ringUntilOpened, startAlerts, stopRinging } from "../chat/alerts.js";
import { paintBadge, signatureBadge } from "./signatures.js";
import { OpNotSent } from "./realtime.js";

const URGENCY_RANK = { express: 0, very_urgent: 1, urgent: 2, normal: 3 };
// Typing: send at most one signal per TYPING_SEND_MS; show a typist for TYPING_SHOW_MS.
const TYPING_SEND_MS = 3000;
const TYPING_SHOW_MS = 5000;
const MESSAGE_PAGE = 100;
// The dots of people in other units are asked for this often (their changes reach no topic
// this page follows); people of one's own unit change live.
const CONTACTS_PRESENCE_MS = 30_000;
// The board's details (every recipient's times) are fetched at most this often while
// acknowledgements pour in; the counts in the events are shown as they come.
const BOARD_REFRESH_MS = 500;

const me = startPage("chat_title");
const isSender = (me.roles || []).includes("standing");

const state = {
  directives: new Map(), // inbox, by id
  sent: new Map(),
  channels: new Map(),
  messages: new Map(), // channel id -> Map(message id -> message)
  users: new Map([[me.id, me]]), // user id -> {display_name, unit_id}
  units: [],
  presence: new Map(), // user id -> online|away|offline
  typing: new Map(), // channel id -> Map(user id -> until)
  unitPresence: new Map(), // unit id -> Set(user id)
  receipts: new Map(), // directive id -> receipts document
  replyTo: null,
  route: { view: "inbox" },
  lastTypingSent: 0,
};

// --- field access that tolerates the shapes the API may answer -----------------------
const receiptOf = (d) => d.receipt || d.my_receipt || d;
const isAcked = (d) => !!receiptOf(d).acknowledged_at;
const isRead = (d) => !!receiptOf(d).read_at;
const senderName = (d) => d.sender?.display_name || d.sender_name || state.users.get(d.sender_id)?.display_name || "";
/** The sender as a recipient reads it: "Name — Title, Unit". */
function senderText(d) {
  const s = d.sender || {};
  const name = senderName(d);
  if (!name) return "";
  const title = s.title ? roleLabel(s.title) : "";
  // "Thường trực HĐND" of the unit "Thường trực HĐND thành phố" is said once.
  const sameAsUnit = title && s.unit_name && fold(s.unit_name).includes(fold(title));
  const extra = [sameAsUnit ? "" : title, s.unit_name].filter(Boolean);
  return extra.length ? `${name} — ${extra.join(", ")}` : name;
}
/** A person's card (messaging/senders.py) as one line. */
const cardText = (card) => (card ? senderText({ sender: card }) : null);
/** "HỎA TỐC: title", unless the title already begins with its urgency. */
function expressText(d) {
  const title = d.title ?? t("restricted");
  return fold(title).startsWith(fold(t("urgency_express"))) ? title : t("express_banner", { title });
}
/** A role key as a title; a free-text title as it is. */
function roleLabel(title) {
  const key = `role_${title}`;
  const label = t(key);
  return label === key ? title : label;
}
function userName(id) {
  if (id === undefined || id === null) return "";
  return state.users.get(id)?.display_name || `#${id}`;
}
function unitName(id) {
  return state.units.find((u) => u.id === id)?.name || `#${id}`;
}
const isOverdue = (d) => !isAcked(d) && d.ack_required !== false && (d.overdue || (!!d.due_at && Date.parse(d.due_at) < Date.now()));
const urgencyLabel = (u) => t(`urgency_${u || "normal"}`);
const confLabel = (c) => t(`conf_${c || "none"}`);

function sortDirectives(list) {
  return list.sort((a, b) => {
    const acked = Number(isAcked(a)) - Number(isAcked(b));
    if (acked) return acked;
    const rank = (URGENCY_RANK[a.urgency] ?? 9) - (URGENCY_RANK[b.urgency] ?? 9);
    if (rank) return rank;
    const due = (a.due_at ? Date.parse(a.due_at) : Infinity) - (b.due_at ? Date.parse(b.due_at) : Infinity);
    if (due) return due;
    return Date.parse(b.issued_at || 0) - Date.parse(a.issued_at || 0);
  });
}

// --- loading -------------------------------------------------------------------------
async function loadInbox() {
  const list = listOf(await api("directives?box=inbox"), "directives");
  state.directives = new Map(list.map((d) => [d.id, d]));
}

async function loadSent() {
  if (!isSender) return;
  const list = listOf(await api("directives?box=sent"), "directives");
  state.sent = new Map(list.map((d) => [d.id, d]));
}

async function loadChannels() {
  const list = listOf(await api("channels"), "channels");
  const before = state.channels;
  state.channels = new Map(list.map((c) => [c.id, { ...(before.get(c.id) || {}), ...c }]));
  await Promise.all(list.filter((c) => c.kind !== "unit" && !state.channels.get(c.id).member_ids).map(async (c) => {
    try {
      const ids = (await api(`channels/${c.id}`)).member_ids || [];
      state.channels.get(c.id).member_ids = ids;
      // A direct channel is named "A · B" in the order of the members' ids.
      const names = c.kind === "direct" ? (c.name || "").split(" · ") : [];
      if (names.length === ids.length) {
        ids.forEach((id, i) => state.users.has(id) || state.users.set(id, { id, display_name: names[i] }));
      }
    } catch {
      /* shown without presence */
    }
  }));
  return list.filter((c) => !before.has(c.id));
}

async function loadPresence(unitId) {
  try {
    const answer = await api(`units/${unitId}/presence`);
    for (const u of answer.users || []) state.presence.set(u.user_id, u.state);
    state.unitPresence.set(unitId, new Set((answer.users || []).map((u) => u.user_id)));
  } catch {
    /* presence is a nicety */
  }
}

/** Presence of the other person of each direct conversation (any unit): the dots. */
async function loadContactsPresence() {
  const ids = [...new Set([...state.channels.values()].filter((c) => c.kind === "direct").map(otherMember).filter(Boolean))];
  if (!ids.length || document.visibilityState !== "visible") return;
  try {
    const answer = await api(`presence?user_ids=${ids.join(",")}`);
    for (const u of answer.users || []) state.presence.set(u.user_id, u.state);
    renderNav();
  } catch {
    /* presence is a nicety */
  }
}

function unitOnline(unitId) {
  const members = state.unitPresence.get(unitId);
  if (!members) return null;
  const online = [...members].filter((id) => state.presence.get(id) === "online").length;
  return { online, total: members.size };
}

async function loadUnits() {
  state.units = listOf(await api("units"), "units");
}

async function loadUnitMembers(unitId) {
  try {
    const members = listOf(await api(`units/${unitId}/members`), "members");
    for (const m of members) state.users.set(m.id, m);
    return members;
  } catch {
    return [];
  }
}

// --- the express banner: impossible to miss --------------------------------------------
const BASE_TITLE = document.title;

function renderBanner() {
  const box = document.getElementById("express-banner");
  const open = [...state.directives.values()].filter((d) => d.urgency === "express" && !isAcked(d));
  // Seen from another tab too: the window title carries the count.
  document.title = open.length ? `(${open.length}) ${t("urgency_express").toUpperCase()} — ${BASE_TITLE}` : BASE_TITLE;
  if (!open.length) {
    fill(box);
    return;
  }
  fill(box, open.slice(0, 3).map((d) =>
    h("div", { class: "express-banner", role: "alert", dataset: { directive: d.id } },
      h("span", {}, expressText(d)),
      d.due_at ? h("span", {}, t("due", { time: formatTime(d.due_at) })) : null,
      h("a", { class: "btn btn-small", href: `#directive/${d.id}` }, t("open")))));
}

// --- navigation --------------------------------------------------------------------------
function unreadOf(channel) {
  return channel.unread ?? channel.unread_count ?? 0;
}

function navButton(label, hash, badge, extra = null) {
  const current = location.hash === hash || (hash === "#inbox" && !location.hash);
  return h("li", {},
    h("a", { class: "nav-item", href: hash, "aria-current": current ? "true" : "false" },
      h("span", { class: "row" }, extra, label),
      badge ? h("span", { class: "badge", "aria-label": t("unread", { n: badge }) }, badge) : null));
}

function otherMember(channel) {
  return (channel.member_ids || []).find((id) => id !== me.id);
}

function channelLabel(channel) {
  if (channel.kind === "direct") {
    // A direct channel is named after both people: show the other one.
    const names = (channel.name || "").split(" · ").filter((n) => n && n !== me.display_name);
    return names.join(" · ") || userName(otherMember(channel));
  }
  return channel.name;
}

function renderNav() {
  const pendingCount = [...state.directives.values()].filter((d) => !isAcked(d)).length;
  const channels = [...state.channels.values()].filter((c) => c.kind !== "direct");
  const directs = [...state.channels.values()].filter((c) => c.kind === "direct");
  const presenceDot = (channel) => {
    const other = otherMember(channel);
    const status = state.presence.get(other) || "offline";
    return h("span", { class: `presence-dot presence-${status}`, title: t(`presence_${status}`), "aria-label": t(`presence_${status}`) });
  };
  fill(document.getElementById("nav"),
    h("ul", {},
      navButton(t("nav_inbox"), "#inbox", pendingCount),
      isSender ? navButton(t("nav_compose"), "#compose", 0) : null,
      isSender ? navButton(t("nav_sent"), "#sent", 0) : null,
      navButton(t("nav_search"), "#search", 0)),
    h("div", { class: "nav-heading" }, h("span", {}, t("nav_channels")),
      h("button", { class: "btn btn-small", type: "button", onclick: newGroup }, "+ ", t("new_group"))),
    h("ul", { id: "channel-list" }, channels.map((c) => navButton(channelLabel(c), `#channel/${c.id}`, unreadOf(c)))),
    h("div", { class: "nav-heading" }, h("span", {}, t("nav_direct")),
      h("button", { class: "btn btn-small", type: "button", onclick: newDirect }, "+ ", t("new_direct"))),
    h("ul", { id: "direct-list" }, directs.map((c) => navButton(channelLabel(c), `#channel/${c.id}`, unreadOf(c), presenceDot(c)))));
}

// --- inbox and one directive ---------------------------------------------------------------
function directiveCard(d) {
  const urgency = d.urgency || "normal";
  const overdue = isOverdue(d);
  return h("li", {
    class: `panel directive urg-${urgency}-card${isAcked(d) ? "" : " unacked"}`,
    dataset: { directive: d.id, urgency },
  },
  h("div", { class: "row" },
    h("span", { class: `tag urg-${urgency}` }, urgencyLabel(urgency)),
    d.confidentiality && d.confidentiality !== "none" ? h("span", { class: "tag urg-very_urgent" }, confLabel(d.confidentiality)) : null,
    isAcked(d) ? h("span", { class: "tag", style: "color: var(--ok)" }, t("acknowledged")) : null,
    overdue ? h("span", { class: "tag urg-express overdue-tag" }, t("overdue")) : null),
  h("h3", {}, h("a", { href: `#directive/${d.id}` }, d.title ?? t("restricted"))),
  h("div", { class: "small muted row" },
    senderName(d) ? h("span", { class: "sender" }, t("from", { name: senderText(d) })) : null,
    h("span", {}, formatTime(d.issued_at)),
    d.due_at ? h("span", {}, t("due", { time: formatTime(d.due_at) })) : null));
}

function renderInbox(view) {
  const list = sortDirectives([...state.directives.values()]);
  fill(view,
    h("h2", {}, t("nav_inbox")),
    list.length ? h("ul", { class: "card-list", id: "inbox-list" }, list.map(directiveCard))
      : h("p", { class: "muted" }, t("inbox_empty")));
}

const fileNames = new Map(); // file id -> Promise of its metadata

function fileMeta(id) {
  if (!fileNames.has(id)) {
    fileNames.set(id, api(`files/${id}/meta`).catch(() => ({})));
  }
  return fileNames.get(id);
}

function fileName(id) {
  return fileMeta(id).then((meta) => meta.title || meta.name || `#${id}`);
}

function attachmentLinks(ids) {
  if (!ids || !ids.length) return null;
  return h("div", { class: "row small" }, h("span", {}, t("attachments"), ":"),
    ids.flatMap((a) => {
      const id = typeof a === "object" ? a.id : a;
      const known = typeof a === "object" ? a.title || a.name : null;
      const button = h("button", { type: "button", class: "btn btn-small", dataset: { file: id }, onclick: () => openFile(id) }, known || `#${id}`);
      if (!known) fileName(id).then((name) => (button.textContent = name));
      // A signed attachment says whether its signatures hold.
      const badge = h("span", { class: "signature-badge", dataset: { file: id }, hidden: true });
      fileMeta(id).then((meta) => paintBadge(badge, signatureBadge(meta.signatures)));
      return [button, badge];
    }));
}

async function openFile(id) {
  try {
    const url = await blobUrl(`/api/v1/files/${id}`);
    window.open(url, "_blank", "noopener");
  } catch (err) {
    showError(err);
  }
}

async function renderDirective(view, id) {
  let d = state.directives.get(id) || state.sent.get(id);
  try {
    const full = await api(`directives/${id}`);
    d = { ...(d || {}), ...full };
    if (state.directives.has(id)) state.directives.set(id, d);
  } catch (err) {
    if (!d) {
      showError(err);
      return;
    }
  }
  // Opened: Hỏa tốc stops ringing.
  if (state.directives.has(id)) stopRinging(id);
  if (state.directives.has(id) && !isRead(d)) {
    sendReceipt("read", id).then(() => {
      const r = receiptOf(d);
      r.read_at = r.read_at || new Date().toISOString();
    }).catch(() => {});
  }
  // The sender side answers a unit in that unit's own thread: its units come from the roll-up.
  let threadUnits = [];
  if (!state.directives.has(id)) {
    try {
      threadUnits = (state.receipts.get(id) || await loadReceipts(id)).units || [];
    } catch {
      threadUnits = [];
    }
  }
  if (state.route.view !== "directive" || state.route.id !== id) return;
  const urgency = d.urgency || "normal";
  const inbox = state.directives.has(id);
  const ackForm = inbox && !isAcked(d) && d.ack_required !== false ? h("form", { class: "panel stack", id: "ack-form", onsubmit: (e) => acknowledge(e, id) },
    h("label", { for: "ack-note" }, t("ack_note")),
    h("textarea", { id: "ack-note", name: "note", rows: 2 }),
    h("button", { type: "submit", class: "btn btn-ok", id: "ack-button" }, t("acknowledge"))) : null;
  fill(view,
    h("article", { class: `directive panel urg-${urgency}-card`, dataset: { directive: id } },
      h("div", { class: "row" },
        h("span", { class: `tag urg-${urgency}` }, urgencyLabel(urgency)),
        h("span", { class: "tag" }, confLabel(d.confidentiality)),
        isAcked(d) ? h("span", { class: "tag", style: "color: var(--ok)", id: "acked-tag" }, t("acknowledged")) : null,
        isOverdue(d) ? h("span", { class: "tag urg-express overdue-tag" }, t("overdue")) : null),
      h("h2", {}, d.title),
      h("p", { class: "small muted sender" }, [senderName(d) ? t("from", { name: senderText(d) }) : "", formatTime(d.issued_at),
        d.due_at ? t("due", { time: formatTime(d.due_at) }) : ""].filter(Boolean).join(" · ")),
      h("div", { style: "white-space: pre-wrap" }, d.body || ""),
      attachmentLinks(d.attachments || d.attachment_ids)),
    ackForm,
    !inbox ? h("p", {}, h("a", { class: "btn", href: `#board/${id}` }, t("board"))) : null,
    inbox
      ? h("section", { class: "panel", "aria-labelledby": "replies-h" },
        h("h3", { id: "replies-h" }, t("replies")),
        h("ul", { class: "card-list", id: "reply-list" }),
        replyForm(id, null))
      : h("section", { class: "panel", "aria-labelledby": "replies-h" },
        h("h3", { id: "replies-h" }, t("threads")),
        unitPicker(id, threadUnits),
        h("div", { id: "thread-list" })));
  await renderReplies(id);
}

/** The sender side picks a recipient unit by typing its name: no list to scroll, no default. */
function unitPicker(id, units) {
  const results = h("ul", { class: "unit-picker-results", id: "thread-unit-results" });
  const show = (query) => {
    const wanted = fold(query.trim());
    if (!wanted) return fill(results);
    const found = units.filter((u) => fold(u.name || unitName(u.unit_id)).includes(wanted)).slice(0, 12);
    fill(results, found.length
      ? found.map((u) => h("li", {}, h("a", { class: "btn btn-small", href: `#thread/${id}/${u.unit_id}` }, t("answer_unit", { unit: u.name || unitName(u.unit_id) }))))
      : h("li", { class: "muted" }, t("unit_not_recipient")));
  };
  return h("div", { class: "unit-picker" },
    h("input", { type: "search", id: "thread-unit-search", "aria-label": t("pick_unit"), placeholder: t("pick_unit"), autocomplete: "off",
      oninput: (e) => show(e.target.value) }),
    results);
}

/** Where a reply is written: a recipient writes in its unit's thread; the sender side in the
 *  thread of the unit it answers (`unitId`), named above the box. */
function replyForm(id, unitId) {
  return h("form", { class: "stack", id: "reply-form", dataset: unitId ? { unit: unitId } : {}, onsubmit: (e) => sendReply(e, id, unitId) },
    h("label", { for: "reply-body" }, unitId ? t("answer_to", { unit: unitName(unitId) }) : t("report_back")),
    h("textarea", { id: "reply-body", name: "body", rows: 2, required: true }),
    h("input", { type: "file", id: "reply-file", "aria-label": t("attach"), multiple: true }),
    h("button", { type: "submit", class: "btn btn-primary", id: "reply-send" }, t("send")));
}

/** One unit's thread, for the sender side: its replies and the answer box for that unit. */
async function renderThread(view, id, unitId) {
  let d = state.sent.get(id);
  try {
    d = d || await api(`directives/${id}`);
    if (!state.units.length) await loadUnits();
  } catch (err) {
    showError(err);
    return;
  }
  if (state.route.view !== "thread" || state.route.id !== id) return;
  fill(view,
    h("p", { class: "row" }, h("a", { class: "btn btn-small", href: `#directive/${id}` }, "← ", d.title || `#${id}`),
      h("a", { class: "btn btn-small", href: `#board/${id}` }, t("board"))),
    h("section", { class: "panel", "aria-labelledby": "thread-h", dataset: { unit: unitId } },
      h("h2", { id: "thread-h" }, unitName(unitId)),
      h("ul", { class: "card-list", id: "reply-list" }),
      replyForm(id, unitId)));
  await renderReplies(id);
}

function replyItem(r) {
  return h("li", { class: "message", dataset: { reply: r.id, unit: r.unit_id } },
    h("div", { class: "meta" }, h("strong", { title: cardText(r.sender) }, r.sender?.display_name || r.author_name || userName(r.author_id)),
      r.unit_id ? h("span", {}, unitName(r.unit_id)) : null, h("span", {}, formatTime(r.created_at))),
    h("div", { class: "text" }, r.body), attachmentLinks(r.attachments || r.attachment_ids));
}

/** Fill the thread(s) of a directive on screen (without touching a reply being written). */
async function renderReplies(id) {
  const route = state.route;
  if (route.id !== id || !["directive", "thread"].includes(route.view)) return;
  const unitId = route.view === "thread" ? route.unit : null;
  let replies = [];
  try {
    replies = listOf(await api(`directives/${id}/replies${unitId ? `?unit_id=${unitId}` : ""}`), "replies");
  } catch (err) {
    showError(err);
  }
  if (state.route !== route) return;
  const list = document.getElementById("reply-list");
  if (list) {
    fill(list, replies.length ? replies.map(replyItem) : h("li", { class: "muted" }, t("no_replies")));
    return;
  }
  const threads = document.getElementById("thread-list");
  if (!threads) return;
  const byUnit = new Map();
  for (const r of replies) {
    if (!byUnit.has(r.unit_id)) byUnit.set(r.unit_id, []);
    byUnit.get(r.unit_id).push(r);
  }
  fill(threads, byUnit.size ? [...byUnit.entries()].map(([uid, rs]) =>
    h("div", { class: "thread", dataset: { unit: uid } },
      h("h4", {}, unitName(uid)),
      h("ul", { class: "card-list" }, rs.map(replyItem)),
      h("a", { class: "btn btn-small btn-primary answer-unit", href: `#thread/${id}/${uid}` }, t("answer_unit", { unit: unitName(uid) }))))
    : h("p", { class: "muted" }, t("no_replies")));
}

// Reads and acknowledgements go over the socket while it is online (one frame, answered on
// it: 3,200 clerks acknowledging at once cost no HTTP request each) and over HTTP when it is
// not, or when its answer is lost (both are idempotent: sending again changes nothing).
async function sendReceipt(kind, id, body = {}) {
  try {
    return await dhRealtime.request(kind, { directive_id: id, ...body });
  } catch (err) {
    if (!(err instanceof OpNotSent)) throw new ApiError(0, err.code, err.message);
  }
  return api(`directives/${id}/${kind}`, { method: "POST", body });
}

async function acknowledge(event, id) {
  event.preventDefault();
  const note = event.target.note.value.trim();
  try {
    await sendReceipt("ack", id, note ? { note } : {});
    const d = state.directives.get(id);
    const r = receiptOf(d);
    r.acknowledged_at = r.acknowledged_at || new Date().toISOString();
    toast(t("acknowledged"));
    renderBanner();
    renderNav();
    renderView();
  } catch (err) {
    showError(err);
  }
}

async function uploadAll(input) {
  const ids = [];
  for (const file of input?.files || []) ids.push((await uploadFile(file)).id);
  return ids;
}

async function sendReply(event, id, unitId) {
  event.preventDefault();
  const form = event.target;
  try {
    const attachment_ids = await uploadAll(form.querySelector("input[type=file]"));
    const body = { body: form.body.value.trim() };
    if (attachment_ids.length) body.attachment_ids = attachment_ids;
    if (unitId) body.unit_id = unitId;
    await api(`directives/${id}/replies`, { method: "POST", body });
    form.reset();
    renderReplies(id);
  } catch (err) {
    showError(err);
  }
}

// --- compose (standing) -------------------------------------------------------------------
function unitTree() {
  const children = new Map();
  for (const unit of state.units) {
    const key = unit.parent_id ?? null;
    if (!children.has(key)) children.set(key, []);
    children.get(key).push(unit);
  }
  const branch = (parent) => {
    const kids = children.get(parent) || [];
    if (!kids.length) return null;
    return h("ul", {}, kids.map((u) => h("li", {},
      h("label", { class: "inline" }, h("input", { type: "checkbox", name: "unit", value: u.id, "data-unit-name": u.name }), u.name),
      branch(u.id))));
  };
  return h("div", { class: "unit-tree", role: "group", "aria-label": t("targets") }, branch(null));
}

/** Without diacritics and case: "Phường" matches "phuong". */
function fold(text) {
  return text.normalize("NFD").replace(/[\u0300-\u036f]/g, "").replace(/đ/g, "d").replace(/Đ/g, "D").toLowerCase();
}

function filterUnits(query) {
  const wanted = fold(query.trim());
  for (const label of document.querySelectorAll(".unit-tree label")) {
    const name = label.querySelector("input").dataset.unitName || "";
    label.parentElement.classList.toggle("filtered-out", !!wanted && !fold(name).includes(wanted));
  }
}

/** Tick (or untick) every commune and ward: the usual target of an instruction. */
function pickLocal(on) {
  const local = new Set(state.units.filter((u) => ["commune", "ward"].includes(u.kind)).map((u) => String(u.id)));
  for (const box of document.querySelectorAll(".unit-tree input[name=unit]")) {
    if (!on) box.checked = false;
    else if (local.has(box.value)) box.checked = true;
  }
}

function renderCompose(view) {
  const select = (name, values, labeler) => h("select", { id: name, name }, values.map((v) => h("option", { value: v }, labeler(v))));
  fill(view,
    h("h2", {}, t("nav_compose")),
    h("form", { id: "compose-form", onsubmit: issue },
      h("div", { class: "field" }, h("label", { for: "d-title" }, t("title")), h("input", { id: "d-title", name: "title", type: "text", required: true, maxlength: 300 })),
      h("div", { class: "field" }, h("label", { for: "d-body" }, t("body")), h("textarea", { id: "d-body", name: "body", rows: 5, required: true })),
      h("div", { class: "row" },
        h("div", { class: "field grow" }, h("label", { for: "urgency" }, t("urgency")), select("urgency", ["normal", "urgent", "very_urgent", "express"], urgencyLabel)),
        h("div", { class: "field grow" }, h("label", { for: "confidentiality" }, t("confidentiality")), select("confidentiality", ["none", "confidential", "secret", "top_secret"], confLabel)),
        h("div", { class: "field grow" }, h("label", { for: "due_at" }, t("due_at")), h("input", { id: "due_at", name: "due_at", type: "datetime-local" }))),
      h("fieldset", { class: "field" }, h("legend", {}, t("targets")),
        h("div", { class: "row", style: "margin-bottom: .4rem" },
          h("input", { type: "search", id: "unit-filter", class: "grow", style: "flex: 1 1 12rem; width: auto", "aria-label": t("filter_units"), placeholder: t("filter_units"),
            oninput: (e) => filterUnits(e.target.value) }),
          h("button", { type: "button", class: "btn btn-small", id: "pick-local", onclick: () => pickLocal(true) }, t("pick_all_local")),
          h("button", { type: "button", class: "btn btn-small", onclick: () => pickLocal(false) }, t("pick_none"))),
        unitTree(),
        h("label", { class: "inline" }, h("input", { type: "checkbox", name: "include_descendants", id: "include-descendants" }), t("include_descendants"))),
      h("div", { class: "field" }, h("label", { class: "inline" }, h("input", { type: "checkbox", name: "ack_required", checked: true }), t("ack_required"))),
      h("div", { class: "field" }, h("label", { for: "d-files" }, t("attachments")), h("input", { id: "d-files", type: "file", multiple: true })),
      h("p", { id: "compose-error", class: "error-text", role: "alert" }),
      h("button", { type: "submit", class: "btn btn-primary", id: "issue-button" }, t("issue"))));
}

async function issue(event) {
  event.preventDefault();
  const form = event.target;
  const unitIds = [...form.querySelectorAll("input[name=unit]:checked")].map((i) => Number(i.value));
  const error = document.getElementById("compose-error");
  if (!unitIds.length) {
    error.textContent = t("pick_targets");
    return;
  }
  error.textContent = "";
  const button = document.getElementById("issue-button");
  button.disabled = true;
  try {
    const attachment_ids = await uploadAll(document.getElementById("d-files"));
    const body = {
      title: form.title.value.trim(),
      body: form.body.value.trim(),
      urgency: form.urgency.value,
      confidentiality: form.confidentiality.value,
      targets: { unit_ids: unitIds, include_descendants: form.include_descendants.checked },
      ack_required: form.ack_required.checked,
    };
    if (form.due_at.value) body.due_at = new Date(form.due_at.value).toISOString();
    if (attachment_ids.length) body.attachment_ids = attachment_ids;
    const answer = await api("directives", { method: "POST", body });
    toast(t("issued", { n: answer.recipient_count }));
    const leftOut = answer.left_out?.length ?? answer.left_out_count ?? 0;
    if (leftOut) toast(t("left_out", { n: leftOut }), "error");
    state.sent.set(answer.id, { id: answer.id, ...body, recipient_count: answer.recipient_count, issued_at: new Date().toISOString() });
    location.hash = `#board/${answer.id}`;
  } catch (err) {
    error.textContent = err.message;
  } finally {
    button.disabled = false;
  }
}

function progressLine(d) {
  const p = d.progress || {};
  const total = p.recipients || d.recipient_count || 0;
  const acked = p.acknowledged || 0;
  return h("div", { class: "sent-progress", dataset: { directive: d.id } },
    progressBar(acked, total, t("acknowledged")),
    h("div", { class: "small muted" },
      [`${t("delivered")} ${p.delivered ?? 0}/${total}`, `${t("read")} ${p.read ?? 0}/${total}`,
        `${t("acknowledged")} ${acked}/${total}`, p.overdue ? `${t("overdue")} ${p.overdue}` : ""].filter(Boolean).join(" · ")));
}

function renderSent(view) {
  const list = [...state.sent.values()].sort((a, b) => Date.parse(b.issued_at || 0) - Date.parse(a.issued_at || 0));
  fill(view, h("h2", {}, t("nav_sent")),
    list.length ? h("ul", { class: "card-list", id: "sent-list" }, list.map((d) => h("li", { class: `panel directive urg-${d.urgency}-card`, dataset: { directive: d.id } },
      h("div", { class: "row" }, h("span", { class: `tag urg-${d.urgency}` }, urgencyLabel(d.urgency)),
        h("a", { href: `#board/${d.id}`, class: "grow" }, d.title),
        h("span", { class: "small muted" }, formatTime(d.issued_at))),
      progressLine(d))))
      : h("p", { class: "muted" }, t("inbox_empty")));
}

// --- the acknowledgement board ---------------------------------------------------------------
let currentBoard = null; // {id, update} of the board on screen

async function loadReceipts(id) {
  const receipts = await api(`directives/${id}/receipts`);
  state.receipts.set(id, receipts);
  return receipts;
}

async function renderBoard(view, id) {
  currentBoard = null;
  fill(view, h("p", {}, t("loading")));
  let receipts;
  let d = state.sent.get(id);
  try {
    [receipts, d] = await Promise.all([loadReceipts(id), d ? d : api(`directives/${id}`)]);
  } catch (err) {
    showError(err);
    return;
  }
  if (state.route.view !== "board" || state.route.id !== id) return;
  const board = createBoard({
    id, directive: d, receipts, units: state.units,
    threadHref: (unitId) => `#thread/${id}/${unitId}`,
    onExport: () => download(`/api/v1/directives/${id}/receipts.csv`, `receipts-${id}.csv`).catch(showError),
  });
  currentBoard = { id, update: board.update, updateSummary: board.updateSummary };
  fill(view, board.root);
}

/** Receipts changed: the board on screen moves in place; the sent list shows the counts. */
async function refreshReceipts(id, summary) {
  const sent = state.sent.get(id);
  if (sent && summary) sent.progress = { ...(sent.progress || {}), ...summary };
  if (state.route.view === "sent") renderView();
  if (!currentBoard || currentBoard.id !== id || state.route.view !== "board") return;
  const receipts = await loadReceipts(id);
  if (currentBoard && currentBoard.id === id) currentBoard.update(receipts);
}

// --- channels --------------------------------------------------------------------------------
function messagesOf(channelId) {
  if (!state.messages.has(channelId)) state.messages.set(channelId, new Map());
  return state.messages.get(channelId);
}

function upsertMessage(channelId, message) {
  // Messages name their author: remember it for quotes, typing and announcements.
  if (message.author_name && message.author_id && !state.users.has(message.author_id)) {
    state.users.set(message.author_id, { id: message.author_id, display_name: message.author_name });
  }
  const map = messagesOf(channelId);
  map.set(message.id, { ...(map.get(message.id) || {}), ...message });
}

async function loadMessages(channelId) {
  const answer = await api(`channels/${channelId}/messages?after_seq=0&limit=${MESSAGE_PAGE}`);
  for (const m of listOf(answer, "messages")) upsertMessage(channelId, m);
}

/** What is on screen has been read: the badge goes, and the server's read position moves up
 *  to the newest message shown (also when no badge was counted while looking). */
async function markRead(channel) {
  if (document.visibilityState !== "visible") return;
  const msgs = [...messagesOf(channel.id).values()];
  const top = Math.max(0, ...msgs.map((m) => m.seq || 0));
  if (unreadOf(channel) !== 0) {
    channel.unread = 0;
    channel.unread_count = 0;
    renderNav();
  }
  if (!top || top <= (channel.read_seq || 0)) return;
  channel.read_seq = top;
  try {
    const answer = await api(`channels/${channel.id}/read`, { method: "POST", body: { seq: top } });
    if (answer && answer.read_seq > channel.read_seq) channel.read_seq = answer.read_seq;
  } catch {
    channel.read_seq = 0; // try again with the next message
  }
}

function messageItem(channelId, m) {
  const mine = m.author_id === me.id;
  const retracted = m.state === "retracted" || m.retracted_at;
  const quoted = m.reply_to ? messagesOf(channelId).get(m.reply_to) : null;
  return h("li", { class: `message${mine ? " mine" : ""}${retracted ? " retracted" : ""}`, dataset: { message: m.id } },
    h("div", { class: "meta" }, h("strong", { title: cardText(m.sender) }, m.sender?.display_name || m.author_name || userName(m.author_id)),
      m.sender?.unit_name && m.sender.unit_id !== me.unit_id ? h("span", {}, m.sender.unit_name) : null,
      h("span", {}, formatTime(m.created_at)), m.edited_at && !retracted ? h("span", {}, t("edited")) : null),
    quoted ? h("div", { class: "quote" }, `${userName(quoted.author_id)}: ${(quoted.body || "").slice(0, 120)}`) : null,
    h("div", { class: "text" }, retracted ? t("retracted") : m.body),
    retracted ? null : attachmentLinks(m.attachments || m.attachment_ids),
    retracted ? null : h("div", { class: "message-actions" },
      h("button", { type: "button", class: "btn btn-small", onclick: () => { state.replyTo = m; renderReplyBar(); document.getElementById("message-input")?.focus(); } }, t("reply")),
      mine ? h("button", { type: "button", class: "btn btn-small", onclick: () => editMessage(channelId, m) }, t("edit")) : null,
      mine ? h("button", { type: "button", class: "btn btn-small", onclick: () => retractMessage(channelId, m) }, t("retract")) : null));
}

async function editMessage(channelId, m) {
  const values = await dialog(t("edit_prompt"), h("textarea", { name: "body", "aria-label": t("message_label") }, m.body));
  if (!values || !values.body.trim()) return;
  try {
    const updated = await api(`channels/${channelId}/messages/${m.id}`, { method: "PATCH", body: { body: values.body.trim() } });
    upsertMessage(channelId, updated || { id: m.id, body: values.body.trim() });
    renderMessages(channelId);
  } catch (err) {
    showError(err);
  }
}

async function retractMessage(channelId, m) {
  try {
    await api(`channels/${channelId}/messages/${m.id}`, { method: "DELETE" });
    upsertMessage(channelId, { id: m.id, state: "retracted", retracted_at: new Date().toISOString() });
    renderMessages(channelId);
  } catch (err) {
    showError(err);
  }
}

function typingText(channelId) {
  const now = Date.now();
  const typists = [...(state.typing.get(channelId) || new Map()).entries()]
    .filter(([id, until]) => until > now && id !== me.id).map(([id]) => userName(id));
  return typists.length ? t("typing", { names: typists.join(", ") }) : "";
}

async function renderChannel(view, id) {
  const channel = state.channels.get(id);
  if (!channel) {
    fill(view, h("p", { class: "muted" }, t("no_channel")));
    return;
  }
  if (!channel.loaded) {
    fill(view, h("p", {}, t("loading")));
    try {
      await loadMessages(id);
      channel.loaded = true;
      if (channel.kind === "unit" && channel.unit_id) await Promise.all([loadUnitMembers(channel.unit_id), loadPresence(channel.unit_id)]);
    } catch (err) {
      showError(err);
      return;
    }
    if (state.route.view !== "channel" || state.route.id !== id) return;
  }
  const counts = channel.unit_id ? unitOnline(channel.unit_id) : null;
  const textarea = h("textarea", { id: "message-input", name: "body", rows: 2, "aria-label": t("message_label"), placeholder: t("message_placeholder"),
    oninput: () => {
      if (Date.now() - state.lastTypingSent > TYPING_SEND_MS) {
        state.lastTypingSent = Date.now();
        dhRealtime.signal(`channel:${id}`, "typing", { typing: true });
      }
    },
    onkeydown: (e) => {
      if (e.key === "Enter" && !e.shiftKey) {
        e.preventDefault();
        e.target.form.requestSubmit();
      }
    } });
  fill(view,
    h("div", { class: "row" }, h("h2", { class: "grow" }, channelLabel(channel)),
      counts ? h("span", { class: "small muted", id: "online-count" }, t("online_count", counts)) : null),
    h("ul", { class: "messages", id: "message-list", dataset: { channel: id }, "aria-label": channelLabel(channel) }),
    h("div", { class: "typing", id: "typing", "aria-live": "polite" }, typingText(id)),
    h("div", { id: "reply-bar" }),
    h("form", { class: "composer", id: "composer", onsubmit: (e) => postMessage(e, id) },
      h("label", { class: "btn btn-small", title: t("attach") }, h("span", { "aria-hidden": "true" }, "+"), h("span", { class: "visually-hidden" }, t("attach")),
        h("input", { type: "file", id: "message-file", class: "visually-hidden", multiple: true })),
      textarea,
      h("button", { type: "submit", class: "btn btn-primary send" }, t("send"))));
  renderMessages(id, true);
  renderReplyBar();
}

/** Fill the message list only: the composer (and what is being typed) stays as it is. */
function renderMessages(id, toBottom = false) {
  const list = document.getElementById("message-list");
  if (!list || list.dataset.channel !== String(id)) return;
  const nearBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 80;
  const msgs = [...messagesOf(id).values()].sort((a, b) => (a.seq || a.id) - (b.seq || b.id));
  fill(list, msgs.map((m) => messageItem(id, m)));
  if (toBottom || nearBottom) list.scrollTop = list.scrollHeight;
  const channel = state.channels.get(id);
  if (channel) markRead(channel);
}

function renderReplyBar() {
  const bar = document.getElementById("reply-bar");
  if (!bar) return;
  fill(bar, state.replyTo ? h("div", { class: "quote row" }, t("replying_to", { name: userName(state.replyTo.author_id) }),
    h("button", { type: "button", class: "btn btn-small", onclick: () => { state.replyTo = null; renderReplyBar(); } }, t("cancel"))) : null);
}

async function postMessage(event, channelId) {
  event.preventDefault();
  const form = event.target;
  const text = form.body.value.trim();
  const files = document.getElementById("message-file");
  if (!text && !files.files.length) return;
  // Kept until the server answers: a resend after a lost answer is the same message.
  form.dataset.clientMsgId ||= randomId();
  const body = { body: text, client_msg_id: form.dataset.clientMsgId };
  if (state.replyTo) body.reply_to = state.replyTo.id;
  try {
    const attachment_ids = await uploadAll(files);
    if (attachment_ids.length) body.attachment_ids = attachment_ids;
    const posted = await api(`channels/${channelId}/messages`, { method: "POST", body });
    if (posted && posted.id) upsertMessage(channelId, posted);
    delete form.dataset.clientMsgId;
    state.replyTo = null;
    form.reset();
    renderMessages(channelId, true);
    renderReplyBar();
    document.getElementById("message-input")?.focus();
  } catch (err) {
    showError(err);
  }
}

/** Pick people from any unit: a unit list, then its members (the choice is kept across units). */
function peoplePicker(chosen, { single = false } = {}) {
  const list = h("div", { class: "stack", id: "people" });
  const showUnit = async (unitId) => {
    const members = (await loadUnitMembers(unitId)).filter((m) => m.id !== me.id);
    fill(list, members.length ? members.map((m) => h("label", { class: "inline" },
      h("input", { type: single ? "radio" : "checkbox", name: "person", value: m.id, checked: chosen.has(m.id),
        onchange: (e) => {
          if (single) chosen.clear();
          if (e.target.checked) chosen.add(m.id);
          else chosen.delete(m.id);
        } }), m.display_name)) : h("p", { class: "muted" }, t("none")));
  };
  const select = h("select", { id: "people-unit", "aria-label": t("unit"), onchange: (e) => showUnit(Number(e.target.value)) },
    state.units.map((u) => h("option", { value: u.id, selected: u.id === me.unit_id }, u.name)));
  showUnit(me.unit_id);
  return h("div", {}, h("label", { for: "people-unit" }, t("unit")), select, h("fieldset", {}, h("legend", {}, t("members")), list));
}

async function newGroup() {
  const chosen = new Set();
  const values = await dialog(t("new_group"), h("div", {},
    h("label", { for: "g-name" }, t("group_name")), h("input", { id: "g-name", name: "name", type: "text", required: true }),
    peoplePicker(chosen)));
  if (!values) return;
  try {
    const channel = await api("channels", { method: "POST", body: { name: values.name, kind: "group", member_ids: [...chosen] } });
    await openNewChannel(channel);
  } catch (err) {
    showError(err);
  }
}

async function newDirect() {
  const chosen = new Set();
  const values = await dialog(t("new_direct"), peoplePicker(chosen, { single: true }));
  if (!values || !chosen.size) return;
  try {
    const channel = await api("channels", { method: "POST", body: { kind: "direct", member_ids: [...chosen] } });
    await openNewChannel(channel);
  } catch (err) {
    showError(err);
  }
}

async function openNewChannel(channel) {
  const added = await loadChannels();
  for (const c of added) dhRealtime.follow(`channel:${c.id}`, c.last_seq);
  location.hash = `#channel/${channel.id}`;
}

// --- search ------------------------------------------------------------------------------------
function renderSearch(view, query) {
  const results = h("div", { id: "search-results", "aria-live": "polite" });
  fill(view, h("h2", {}, t("nav_search")),
    h("form", { class: "row", role: "search", onsubmit: (e) => { e.preventDefault(); location.hash = `#search?q=${encodeURIComponent(e.target.q.value)}`; } },
      h("input", { type: "search", name: "q", id: "search-q", value: query || "", "aria-label": t("nav_search"), placeholder: t("search_placeholder"), class: "grow", style: "flex: 1" }),
      h("button", { type: "submit", class: "btn btn-primary" }, t("search_button"))),
    results);
  if (!query) return;
  api(`search?q=${encodeURIComponent(query)}`).then((answer) => {
    const hits = listOf(answer, "results");
    fill(results, h("p", { class: "muted" }, t("search_results", { n: hits.length })),
      h("ul", { class: "card-list", id: "search-list" }, hits.map((hit) => searchHit(hit, query))));
  }).catch(showError);
}

function hitHref(hit, kind) {
  if (kind === "directive") return `#directive/${hit.directive_id ?? hit.id}`;
  if (kind === "reply") return `#directive/${hit.directive_id}`;
  if (kind === "message") return `#channel/${hit.channel_id}`;
  if (hit.directive_id) return `#directive/${hit.directive_id}`;
  if (hit.channel_id) return `#channel/${hit.channel_id}`;
  return null;
}

/** One result: its kind, author and date, then the text with the match marked. */
function searchHit(hit, query) {
  const kind = hit.kind || hit.type || "";
  const href = hitHref(hit, kind);
  const heading = hit.title || (kind === "attachment" ? hit.name : null) || (kind === "reply" && hit.unit_id ? unitName(hit.unit_id) : null);
  const kindLabel = kind ? t(`kind_${kind}`) : "";
  return h("li", { class: "panel search-hit", dataset: { kind } },
    h("div", { class: "meta" },
      kindLabel && kindLabel !== `kind_${kind}` ? h("span", { class: "tag" }, kindLabel) : null,
      hit.author_name ? h("strong", { class: "hit-author" }, hit.author_name) : null,
      hit.at ? h("span", { class: "hit-at" }, formatTime(hit.at)) : null),
    heading ? h("div", {}, href ? h("a", { href }, marked(heading, null, query)) : h("strong", {}, marked(heading, null, query))) : null,
    hit.snippet ? h("div", { class: "snippet" }, href && !heading ? h("a", { href }, marked(hit.snippet, hit.highlights, query)) : marked(hit.snippet, hit.highlights, query)) : null,
    kind === "attachment" && hit.file_id ? h("button", { type: "button", class: "btn btn-small", dataset: { file: hit.file_id }, onclick: () => openFile(hit.file_id) }, hit.name || t("attachments")) : null,
    !heading && !hit.snippet && href ? h("a", { href }, kindLabel || t("open")) : null);
}

/** The snippet with each match in a <mark>: the server's ranges (character offsets) when it
 *  sends them, else the query's words found without diacritics or case. */
function marked(snippet, highlights, query) {
  const chars = Array.from(snippet);
  let ranges = Array.isArray(highlights) ? highlights.filter((r) => Array.isArray(r) && r.length === 2) : null;
  if (!ranges) ranges = findWords(chars, query);
  ranges = ranges.map(([a, b]) => [Math.max(0, a), Math.min(chars.length, b)]).filter(([a, b]) => b > a).sort((x, y) => x[0] - y[0]);
  const parts = [];
  let at = 0;
  for (const [a, b] of ranges) {
    if (a < at) continue;
    if (a > at) parts.push(chars.slice(at, a).join(""));
    parts.push(h("mark", {}, chars.slice(a, b).join("")));
    at = b;
  }
  if (at < chars.length) parts.push(chars.slice(at).join(""));
  return parts;
}

function findWords(chars, query) {
  // One folded character per character, so positions in the folded text are positions in
  // the snippet.
  const folded = chars.map((c) => fold(c).charAt(0) || c).join("");
  const ranges = [];
  for (const word of fold(query || "").split(/\s+/).filter(Boolean)) {
    let from = 0;
    for (;;) {
      const found = folded.indexOf(word, from);
      if (found < 0) break;
      ranges.push([found, found + word.length]);
      from = found + word.length;
    }
  }
  return ranges;
}

// --- routing ---------------------------------------------------------------------------------
function parseRoute() {
  const hash = location.hash.slice(1);
  const [path, query] = hash.split("?");
  const [view, id, unit] = path.split("/");
  return { view: view || "inbox", id: id ? Number(id) : null, unit: unit ? Number(unit) : null, q: new URLSearchParams(query || "").get("q") };
}

function renderView() {
  const view = document.getElementById("view");
  const route = state.route;
  switch (route.view) {
    case "directive": return renderDirective(view, route.id);
    case "compose": return renderCompose(view);
    case "sent": return renderSent(view);
    case "board": return renderBoard(view, route.id);
    case "thread": return renderThread(view, route.id, route.unit);
    case "channel": return renderChannel(view, route.id);
    case "search": return renderSearch(view, route.q);
    default: return renderInbox(view);
  }
}

/** After a change of the lists: the banner, the navigation, and the views that list them
 *  (never a view with a form being filled in). */
function refresh() {
  renderBanner();
  renderNav();
  if (["inbox", "sent"].includes(state.route.view)) renderView();
}

window.addEventListener("hashchange", () => {
  state.route = parseRoute();
  state.replyTo = null;
  renderNav();
  renderView();
  document.getElementById("view").focus({ preventScroll: true });
});
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState !== "visible") return;
  const channel = state.route.view === "channel" ? state.channels.get(state.route.id) : null;
  if (channel?.loaded) markRead(channel);
  loadContactsPresence();
});
window.addEventListener("langchange", () => {
  startPage("chat_title");
  showConnection(dhRealtime.status);
  renderPermission(document.getElementById("alert-setup"));
  renderBanner();
  renderNav();
  renderView();
});

// --- real-time events ---------------------------------------------------------------------------
const boardTimers = new Map();
const latestSummary = new Map(); // directive id -> the newest counts from an event

function onEvent(event) {
  const { topic, type, data } = event;
  if (topic.startsWith("channel:")) return onChannelEvent(Number(topic.split(":")[1]), type, data, event.seq);
  switch (type) {
    case "directive.issued": {
      const d = data.directive || data;
      const existing = state.directives.get(d.id);
      state.directives.set(d.id, { ...(existing || {}), ...d });
      if (!existing) {
        const text = d.urgency === "express" ? expressText(d) : t("new_directive", { title: d.title });
        toast(text, d.urgency === "express" || d.urgency === "very_urgent" ? "urgent" : "info");
        const viewing = state.route.view === "directive" && state.route.id === d.id && document.visibilityState === "visible";
        if (!viewing) alertDirective(d, senderText(d));
      }
      refresh();
      return;
    }
    case "directive.escalated":
      toast(t("escalated", { title: data.title || state.directives.get(data.directive_id)?.title || `#${data.directive_id}`, unit: unitName(data.unit_id) }), "urgent");
      return;
    case "directive.reminder": {
      const id = data.directive_id ?? data.id;
      const d = state.directives.get(id);
      const text = t("reminder", { title: d?.title || data.title || "" });
      toast(text, "urgent");
      alertNotice({ id, urgency: d?.urgency || data.urgency, title: d?.title ?? data.title }, text);
      return;
    }
    case "directive.receipts":
    case "directive.overdue": {
      const id = data.directive_id ?? data.id;
      if (type === "directive.overdue") {
        if (state.directives.has(id)) return onOverdue(id, data);
        toast(`${t("overdue")}: ${state.sent.get(id)?.title || id}`, "urgent");
      }
      // A nudge with the new counts: fetch the board's details at most a few times a second.
      if (!boardTimers.has(id)) {
        boardTimers.set(id, setTimeout(() => {
          boardTimers.delete(id);
          refreshReceipts(id, latestSummary.get(id)).catch(showError);
        }, BOARD_REFRESH_MS));
      }
      if (data.summary) {
        latestSummary.set(id, data.summary);
        if (currentBoard?.id === id && state.route.view === "board") currentBoard.updateSummary(data.summary);
      }
      return;
    }
    case "directive.reply": {
      const id = data.directive_id;
      if (["directive", "thread"].includes(state.route.view) && state.route.id === id) renderReplies(id);
      else if (data.reply?.author_id !== me.id) toast(`${t("replies")}: ${state.directives.get(id)?.title || state.sent.get(id)?.title || ""}`);
      return;
    }
    case "channel.added":
      loadChannels().then((added) => {
        for (const c of added) dhRealtime.follow(`channel:${c.id}`, c.last_seq);
        if (added.some((c) => c.kind === "direct")) loadContactsPresence();
        refresh();
      }).catch(showError);
      return;
    default:
      return;
  }
}

/** The recipient's instruction went past its due time unacknowledged: it says so at once. */
function onOverdue(id, data) {
  const d = state.directives.get(id);
  if (isAcked(d)) return;
  d.overdue = true;
  const text = t("overdue_notice", { title: d.title ?? data.title ?? "" });
  toast(text, "urgent");
  alertNotice(d, text);
  refresh();
  const head = document.querySelector(`article.directive[data-directive="${id}"] .row`);
  if (head && !head.querySelector(".overdue-tag")) head.append(h("span", { class: "tag urg-express overdue-tag" }, t("overdue")));
}

function onChannelEvent(channelId, type, data, seq) {
  const channel = state.channels.get(channelId);
  // A new message's seq is the seq of its event (the payload carries none).
  const message = type === "message.posted" ? { seq, ...(data.message || data) } : data.message || data;
  if (type === "message.posted") {
    upsertMessage(channelId, message);
    state.typing.get(channelId)?.delete(message.author_id);
    const viewing = state.route.view === "channel" && state.route.id === channelId && document.visibilityState === "visible";
    if (channel && message.author_id !== me.id && !viewing) {
      channel.unread = unreadOf(channel) + 1;
      channel.unread_count = channel.unread;
    }
    if (message.author_id !== me.id) announce(`${userName(message.author_id)}: ${message.body || ""}`);
  } else if (type === "message.edited" || type === "message.retracted") {
    upsertMessage(channelId, type === "message.retracted" ? { ...message, state: "retracted" } : message);
  }
  renderNav();
  if (state.route.view === "channel" && state.route.id === channelId) renderMessages(channelId);
}

function onSignal(frame) {
  const data = frame.data || {};
  if (frame.type === "typing" && frame.topic.startsWith("channel:")) {
    const channelId = Number(frame.topic.split(":")[1]);
    const userId = data.user_id;
    if (userId === me.id) return;
    if (data.display_name && !state.users.has(userId)) state.users.set(userId, { id: userId, display_name: data.display_name });
    if (!state.typing.has(channelId)) state.typing.set(channelId, new Map());
    if (data.typing === false) state.typing.get(channelId).delete(userId);
    else state.typing.get(channelId).set(userId, Date.now() + TYPING_SHOW_MS);
    updateTyping();
    setTimeout(updateTyping, TYPING_SHOW_MS + 50);
  } else if (frame.type === "presence.changed") {
    state.presence.set(data.user_id, data.state);
    if (data.unit_id !== undefined && state.unitPresence.has(data.unit_id)) state.unitPresence.get(data.unit_id).add(data.user_id);
    renderNav();
    const el = document.getElementById("online-count");
    const channel = state.route.view === "channel" ? state.channels.get(state.route.id) : null;
    if (el && channel?.unit_id) el.textContent = t("online_count", unitOnline(channel.unit_id));
  }
}

function updateTyping() {
  const el = document.getElementById("typing");
  if (el && state.route.view === "channel") el.textContent = typingText(state.route.id);
}

async function reloadAll() {
  await Promise.all([loadInbox(), loadSent(), loadChannels()]);
  for (const channel of state.channels.values()) {
    if (channel.loaded) {
      state.messages.delete(channel.id);
      await loadMessages(channel.id);
    }
  }
  state.receipts.clear();
  refresh();
}

// --- start ---------------------------------------------------------------------------------------
const dhRealtime = connectRealtime({
  onEvent,
  onSignal,
  onReset: () => reloadAll().catch(showError),
});

async function start() {
  state.route = parseRoute();
  fill(document.getElementById("view"), h("p", {}, t("loading")));
  await dhRealtime.whenReady();
  const results = await Promise.allSettled([loadUnits(), loadInbox(), loadSent(), loadChannels()]);
  for (const r of results) if (r.status === "rejected") console.warn(r.reason);
  for (const channel of state.channels.values()) {
    // Follow every channel so unread counts move live; history loads when opened.
    dhRealtime.follow(`channel:${channel.id}`, channel.last_seq);
  }
  // Presence of people in other units reaches no topic of ours: ask now and then.
  loadContactsPresence();
  setInterval(loadContactsPresence, CONTACTS_PRESENCE_MS);
  renderBanner();
  renderNav();
  renderView();
  // Signed in and loaded: the moment to ask for notifications (the question is a button).
  renderPermission(document.getElementById("alert-setup"));
  // Hỏa tốc not yet opened rings from the start too (sound once the page has had a gesture).
  for (const d of state.directives.values()) {
    const open = state.route.view === "directive" && state.route.id === d.id;
    if (d.urgency === "express" && !isRead(d) && !isAcked(d) && !open) ringUntilOpened(d.id);
  }
}

startAlerts({ onOpen: (id) => (location.hash = `#directive/${id}`) }).catch((err) => console.warn(err));
start().catch(showError);
