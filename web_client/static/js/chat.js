// The chat client: urgent-instruction inbox (with acknowledgement and replies), compose and
// the live acknowledgement board for senders, unit/group/direct channels, search.

import { api, blobUrl, download, listOf, randomId, uploadFile } from "./api.js";
import { formatTime, t } from "./i18n.js";
import { announce, connectRealtime, dialog, fill, h, showConnection, showError, startPage, toast } from "./shell.js";
import { paintBadge, signatureBadge } from "./signatures.js";

const URGENCY_RANK = { express: 0, very_urgent: 1, urgent: 2, normal: 3 };
// Typing: send at most one signal per TYPING_SEND_MS; show a typist for TYPING_SHOW_MS.
const TYPING_SEND_MS = 3000;
const TYPING_SHOW_MS = 5000;
const MESSAGE_PAGE = 100;

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
function userName(id) {
  if (id === undefined || id === null) return "";
  return state.users.get(id)?.display_name || `#${id}`;
}
function unitName(id) {
  return state.units.find((u) => u.id === id)?.name || `#${id}`;
}
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
      h("span", {}, t("express_banner", { title: d.title })),
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
  const overdue = d.due_at && !isAcked(d) && Date.parse(d.due_at) < Date.now();
  return h("li", {
    class: `panel directive urg-${urgency}-card${isAcked(d) ? "" : " unacked"}`,
    dataset: { directive: d.id, urgency },
  },
  h("div", { class: "row" },
    h("span", { class: `tag urg-${urgency}` }, urgencyLabel(urgency)),
    d.confidentiality && d.confidentiality !== "none" ? h("span", { class: "tag urg-very_urgent" }, confLabel(d.confidentiality)) : null,
    isAcked(d) ? h("span", { class: "tag", style: "color: var(--ok)" }, t("acknowledged")) : null,
    overdue ? h("span", { class: "tag urg-express" }, t("overdue")) : null),
  h("h3", {}, h("a", { href: `#directive/${d.id}` }, d.title ?? t("restricted"))),
  h("div", { class: "small muted row" },
    senderName(d) ? h("span", {}, t("from", { name: senderName(d) })) : null,
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
  if (state.directives.has(id) && !isRead(d)) {
    api(`directives/${id}/read`, { method: "POST", body: {} }).then(() => {
      const r = receiptOf(d);
      r.read_at = r.read_at || new Date().toISOString();
    }).catch(() => {});
  }
  // The sender side answers in one unit's thread: the recipient units come from the roll-up.
  let threadUnits = [];
  if (!state.directives.has(id)) {
    try {
      threadUnits = (state.receipts.get(id) || await loadReceipts(id)).units || [];
    } catch {
      threadUnits = [];
    }
  }
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
        isAcked(d) ? h("span", { class: "tag", style: "color: var(--ok)", id: "acked-tag" }, t("acknowledged")) : null),
      h("h2", {}, d.title),
      h("p", { class: "small muted" }, [senderName(d) ? t("from", { name: senderName(d) }) : "", formatTime(d.issued_at),
        d.due_at ? t("due", { time: formatTime(d.due_at) }) : ""].filter(Boolean).join(" · ")),
      h("div", { style: "white-space: pre-wrap" }, d.body || ""),
      attachmentLinks(d.attachments || d.attachment_ids)),
    ackForm,
    !inbox ? h("p", {}, h("a", { class: "btn", href: `#board/${id}` }, t("board"))) : null,
    h("section", { class: "panel", "aria-labelledby": "replies-h" },
      h("h3", { id: "replies-h" }, t("replies")),
      h("ul", { class: "card-list", id: "reply-list" }),
      h("form", { class: "stack", onsubmit: (e) => sendReply(e, id, d) },
        h("label", { for: "reply-body" }, t("report_back")),
        h("textarea", { id: "reply-body", name: "body", rows: 2, required: true }),
        !inbox ? h("div", {}, h("label", { for: "reply-unit" }, t("unit")),
          h("select", { id: "reply-unit", name: "unit_id" }, threadUnits.map((u) => h("option", { value: u.unit_id }, u.name || unitName(u.unit_id))))) : null,
        h("input", { type: "file", id: "reply-file", "aria-label": t("attach"), multiple: true }),
        h("button", { type: "submit", class: "btn btn-primary" }, t("send")))));
  await renderReplies(id);
}

/** Fill the thread of a directive (without touching a reply being written). */
async function renderReplies(id) {
  let replies = [];
  try {
    replies = listOf(await api(`directives/${id}/replies`), "replies");
  } catch (err) {
    showError(err);
  }
  const list = document.getElementById("reply-list");
  if (!list || state.route.view !== "directive" || state.route.id !== id) return;
  fill(list, replies.map((r) =>
    h("li", { class: "message", dataset: { reply: r.id } },
      h("div", { class: "meta" }, h("strong", {}, r.author?.display_name || r.author_name || userName(r.author_id)),
        r.unit_id ? h("span", {}, unitName(r.unit_id)) : null, h("span", {}, formatTime(r.created_at))),
      h("div", { class: "text" }, r.body), attachmentLinks(r.attachments || r.attachment_ids))));
}

async function acknowledge(event, id) {
  event.preventDefault();
  const note = event.target.note.value.trim();
  try {
    await api(`directives/${id}/ack`, { method: "POST", body: note ? { note } : {} });
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

async function sendReply(event, id) {
  event.preventDefault();
  const form = event.target;
  try {
    const attachment_ids = await uploadAll(form.querySelector("input[type=file]"));
    const body = { body: form.body.value.trim() };
    if (attachment_ids.length) body.attachment_ids = attachment_ids;
    if (form.unit_id) body.unit_id = Number(form.unit_id.value);
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
    state.sent.set(answer.id, { id: answer.id, ...body, issued_at: new Date().toISOString() });
    location.hash = `#board/${answer.id}`;
  } catch (err) {
    error.textContent = err.message;
  } finally {
    button.disabled = false;
  }
}

function renderSent(view) {
  const list = [...state.sent.values()].sort((a, b) => Date.parse(b.issued_at || 0) - Date.parse(a.issued_at || 0));
  fill(view, h("h2", {}, t("nav_sent")),
    list.length ? h("ul", { class: "card-list" }, list.map((d) => h("li", { class: `panel directive urg-${d.urgency}-card` },
      h("span", { class: `tag urg-${d.urgency}` }, urgencyLabel(d.urgency)), " ",
      h("a", { href: `#board/${d.id}` }, d.title),
      h("div", { class: "small muted" }, formatTime(d.issued_at),
        d.progress?.recipients ? ` · ${t("acknowledged")}: ${d.progress.acknowledged}/${d.progress.recipients}` : ""))))
      : h("p", { class: "muted" }, t("inbox_empty")));
}

// --- the acknowledgement board ---------------------------------------------------------------
async function loadReceipts(id) {
  const receipts = await api(`directives/${id}/receipts`);
  state.receipts.set(id, receipts);
  return receipts;
}

function renderBoard(view, id) {
  const receipts = state.receipts.get(id);
  const d = state.sent.get(id) || {};
  if (!receipts) {
    fill(view, h("p", {}, t("loading")));
    loadReceipts(id).then(() => state.route.view === "board" && renderView()).catch(showError);
    return;
  }
  const units = receipts.units || [];
  const unitDone = (u) => u.recipients > 0 && u.acknowledged >= u.recipients;
  const done = units.filter(unitDone).length;
  const missing = units.filter((u) => !unitDone(u));
  const s = receipts.summary || {};
  fill(view,
    h("h2", {}, t("board"), ": ", d.title || `#${id}`),
    h("p", { id: "board-summary", class: "verdict", "aria-live": "polite" }, t("board_summary", { ack: done, total: units.length })),
    h("div", { class: "progress", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": units.length, "aria-valuenow": done },
      h("span", { style: `width: ${units.length ? (100 * done) / units.length : 0}%` })),
    h("p", { class: "small muted" },
      `${t("recipients")}: ${s.recipients ?? "?"} · ${t("delivered")}: ${s.delivered ?? "?"} · ${t("read")}: ${s.read ?? "?"} · ${t("acknowledged")}: ${s.acknowledged ?? "?"}`,
      s.overdue ? ` · ${t("overdue")}: ${s.overdue}` : ""),
    h("div", { class: "row" },
      h("button", { type: "button", class: "btn", id: "export-csv", onclick: () => download(`/api/v1/directives/${id}/receipts.csv`, `receipts-${id}.csv`).catch(showError) }, t("export_csv")),
      h("a", { class: "btn", href: `#directive/${id}` }, t("replies"))),
    h("h3", {}, t("not_acknowledged")),
    missing.length ? h("ul", { id: "missing-units" }, missing.map((u) => h("li", {}, u.name || unitName(u.unit_id))))
      : h("p", { id: "missing-units" }, t("all_acknowledged")),
    h("table", { class: "board-table", id: "board-table" },
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, t("unit")), h("th", { scope: "col" }, t("recipients")),
        h("th", { scope: "col" }, t("delivered")), h("th", { scope: "col" }, t("read")), h("th", { scope: "col" }, t("acknowledged")))),
      h("tbody", {}, units.map((u) => h("tr", { dataset: { unit: u.unit_id } },
        h("th", { scope: "row" }, u.name || unitName(u.unit_id)),
        h("td", { class: "num" }, u.recipients), h("td", { class: "num" }, u.delivered),
        h("td", { class: "num" }, u.read), h("td", { class: "num" }, u.acknowledged))))));
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

async function markRead(channel) {
  const msgs = [...messagesOf(channel.id).values()];
  const top = Math.max(0, ...msgs.map((m) => m.seq || 0));
  if (!top || unreadOf(channel) === 0) return;
  channel.unread = 0;
  channel.unread_count = 0;
  renderNav();
  try {
    await api(`channels/${channel.id}/read`, { method: "POST", body: { seq: top } });
  } catch {
    /* the read position is advisory */
  }
}

function messageItem(channelId, m) {
  const mine = m.author_id === me.id;
  const retracted = m.state === "retracted" || m.retracted_at;
  const quoted = m.reply_to ? messagesOf(channelId).get(m.reply_to) : null;
  return h("li", { class: `message${mine ? " mine" : ""}${retracted ? " retracted" : ""}`, dataset: { message: m.id } },
    h("div", { class: "meta" }, h("strong", {}, m.author?.display_name || m.author_name || userName(m.author_id)),
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
      h("ul", { class: "card-list" }, hits.map((hit) => {
        const kind = hit.kind || hit.type;
        let href = "#inbox";
        if (kind === "directive") href = `#directive/${hit.directive_id ?? hit.id}`;
        else if (kind === "reply") href = `#directive/${hit.directive_id}`;
        else if (kind === "message") href = `#channel/${hit.channel_id}`;
        return h("li", { class: "panel" }, h("a", { href }, hit.title || hit.snippet || hit.body || kind),
          hit.snippet && hit.title ? h("div", { class: "small muted" }, hit.snippet) : null);
      })));
  }).catch(showError);
}

// --- routing ---------------------------------------------------------------------------------
function parseRoute() {
  const hash = location.hash.slice(1);
  const [path, query] = hash.split("?");
  const [view, id] = path.split("/");
  return { view: view || "inbox", id: id ? Number(id) : null, q: new URLSearchParams(query || "").get("q") };
}

function renderView() {
  const view = document.getElementById("view");
  const route = state.route;
  switch (route.view) {
    case "directive": return renderDirective(view, route.id);
    case "compose": return renderCompose(view);
    case "sent": return renderSent(view);
    case "board": return renderBoard(view, route.id);
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
window.addEventListener("langchange", () => {
  startPage("chat_title");
  showConnection(dhRealtime.status);
  renderBanner();
  renderNav();
  renderView();
});

// --- real-time events ---------------------------------------------------------------------------
const boardTimers = new Map();

function onEvent(event) {
  const { topic, type, data } = event;
  if (topic.startsWith("channel:")) return onChannelEvent(Number(topic.split(":")[1]), type, data);
  switch (type) {
    case "directive.issued": {
      const d = data.directive || data;
      const existing = state.directives.get(d.id);
      state.directives.set(d.id, { ...(existing || {}), ...d });
      if (!existing) {
        const text = d.urgency === "express" ? t("express_banner", { title: d.title }) : t("new_directive", { title: d.title });
        toast(text, d.urgency === "express" || d.urgency === "very_urgent" ? "urgent" : "info");
      }
      refresh();
      return;
    }
    case "directive.escalated":
      toast(t("escalated", { title: data.title || state.directives.get(data.directive_id)?.title || `#${data.directive_id}`, unit: unitName(data.unit_id) }), "urgent");
      return;
    case "directive.reminder": {
      const d = state.directives.get(data.directive_id ?? data.id);
      toast(t("reminder", { title: d?.title || data.title || "" }), "urgent");
      return;
    }
    case "directive.receipts":
    case "directive.overdue": {
      const id = data.directive_id ?? data.id;
      if (type === "directive.overdue") toast(`${t("overdue")}: ${state.sent.get(id)?.title || id}`, "urgent");
      if (data.units && data.summary) {
        state.receipts.set(id, { ...(state.receipts.get(id) || {}), ...data });
        if (state.route.view === "board" && state.route.id === id) renderView();
        return;
      }
      // Only a nudge: fetch the roll-up (at most a few times a second).
      if (!boardTimers.has(id)) {
        boardTimers.set(id, setTimeout(async () => {
          boardTimers.delete(id);
          try {
            await loadReceipts(id);
            if (state.route.view === "board" && state.route.id === id) renderView();
          } catch (err) {
            showError(err);
          }
        }, 200));
      }
      return;
    }
    case "directive.reply": {
      const id = data.directive_id;
      if (state.route.view === "directive" && state.route.id === id) renderReplies(id);
      else if (data.reply?.author_id !== me.id) toast(`${t("replies")}: ${state.directives.get(id)?.title || state.sent.get(id)?.title || ""}`);
      return;
    }
    case "channel.added":
      loadChannels().then((added) => {
        for (const c of added) dhRealtime.follow(`channel:${c.id}`, c.last_seq);
        refresh();
      }).catch(showError);
      return;
    default:
      return;
  }
}

function onChannelEvent(channelId, type, data) {
  const channel = state.channels.get(channelId);
  const message = data.message || data;
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
  renderBanner();
  renderNav();
  renderView();
}

start().catch(showError);
