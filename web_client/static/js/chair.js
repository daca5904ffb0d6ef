// The chair's live console: what is being discussed and presented (page controls), the
// speakers' queue with the running timer, quorum, and the live vote, on one screen without
// scrolling (1440×900, 1280×800); attendance of the whole body in a compact table. Agenda
// editing lives in the preparation view (/app/prepare/). Floor requests, above all points
// of order, are announced visibly and audibly. Keys: ←/→ or PageUp/PageDown turn the
// presented page, N gives the floor to the next speaker.

import { api, download } from "./api.js";
import { formatTime, t } from "./i18n.js";
import { announce, clockText, connectRealtime, dialog, fill, h, showConnection, showError, startPage, toast } from "./shell.js";
import { MeetingSession, agendaItems, findItem, myMeetings, pageImage, participant, secondsLeft } from "./meeting-state.js";
import { BallotBook, sendBallot } from "./ballot.js";
import { choiceText, progressLine, resultBlock, secrecyTag } from "./poll-view.js";
import { remoteTag } from "./remote-tag.js";

const me = startPage("chair_title");
const book = new BallotBook(me.id);
// The chair's own ballot being chosen: poll id and the choice awaiting confirmation.
const myVote = { pollId: null, pending: null, selected: [] };
const ballotWake = new EventTarget();
let meeting = null;
let timerHandle = null;
const pollDetails = new Map(); // poll id -> GET /polls/{id}
const pollFetch = new Map();
const selection = { itemId: null, documentId: null, page: 1 };

const realtime = connectRealtime({
  onEvent: (event) => meeting?.apply(event),
  onReset: () => meeting?.reload(),
});
realtime.addEventListener("status", (e) => {
  if (e.detail === "online") ballotWake.dispatchEvent(new Event("wake"));
});

async function act(path, body = {}, method = "POST") {
  try {
    return await api(path, { method, body: method === "DELETE" ? undefined : body });
  } catch (err) {
    showError(err);
    return null;
  }
}

// --- meeting list --------------------------------------------------------------------------------
async function renderList() {
  const list = await myMeetings();
  const mine = list.filter((m) => ["chair", "secretary"].includes(m.role) || m.role === null);
  fill(document.getElementById("main"), h("section", { class: "panel" }, h("h2", {}, t("meetings")),
    mine.length ? h("ul", { class: "card-list", id: "meeting-list" }, mine.map((m) => h("li", {},
      h("a", { class: "btn btn-primary", href: `#meeting/${m.id}` }, m.title), " ",
      h("span", { class: "small muted" }, formatTime(m.starts_at), " · ", t(`state_${m.state}`)))))
      : h("p", { class: "muted" }, t("no_meetings"))));
}

// --- the console -----------------------------------------------------------------------------------
function renderShell(id) {
  const tab = (name, label) => h("button", { type: "button", role: "tab", class: "btn btn-small tab", id: `tab-${name}`,
    "aria-controls": `view-${name}`, "aria-selected": name === "live" ? "true" : "false", onclick: () => showView(name) }, label);
  fill(document.getElementById("main"),
    // Two rows: what the session is (title, state, quorum), then where to go and what to do.
    h("div", { class: "console-bar" },
      h("a", { href: "#", class: "btn btn-small", "aria-label": t("meetings"), title: t("meetings") }, "←"),
      h("h2", { id: "meeting-title", class: "grow" }),
      h("span", { id: "meeting-state", class: "tag" }),
      h("div", { id: "quorum", class: "quorum-gauge quorum-compact" })),
    h("div", { class: "console-bar console-tools" },
      h("div", { role: "tablist", class: "row", "aria-label": t("chair_title") }, tab("live", t("console_live")), tab("attendance", t("attendance"))),
      h("a", { class: "btn btn-small", id: "prepare-link", href: `/app/prepare/#meeting/${id}`, title: t("console_prepare") }, t("console_prepare_short")),
      h("a", { class: "btn btn-small", href: `/app/projector/#meeting/${id}`, target: "_blank", rel: "noopener", title: t("app_projector") }, t("console_projector")),
      h("a", { class: "btn btn-small", id: "desk-link", href: `/app/desk/#meeting/${id}`, target: "_blank", rel: "noopener", title: t("desk_title") }, t("console_desk")),
      h("button", { type: "button", class: "btn btn-small", id: "minutes", title: t("minutes"), onclick: () => download(`/api/v1/meetings/${id}/minutes.pdf`, `bien-ban-${id}.pdf`).catch(showError) }, t("console_minutes")),
      h("button", { type: "button", class: "btn btn-small", id: "recordings", title: t("recordings"), onclick: () => showRecordings(id) }, t("recordings")),
      h("div", { class: "row console-lifecycle", id: "lifecycle" })),
    h("div", { id: "floor-alert", class: "floor-alert hidden", role: "alert" }),
    h("div", { id: "audio-lost-alert", class: "floor-alert floor-alert-order hidden", role: "alert" }),
    h("div", { class: "console", id: "view-live", role: "tabpanel", "aria-labelledby": "tab-live" },
      h("section", { class: "panel console-present", "aria-labelledby": "present-h" },
        h("div", { class: "row" }, h("h3", { id: "present-h", class: "grow" }, t("console_now")), h("div", { id: "presenter" })),
        h("div", { id: "current-item" }),
        h("div", { id: "presentation", class: "presentation" })),
      h("section", { class: "panel console-speakers", "aria-labelledby": "sp-h" }, h("h3", { id: "sp-h" }, t("speakers")), h("div", { id: "speakers" })),
      h("section", { class: "panel console-vote", "aria-labelledby": "poll-h" }, h("h3", { id: "poll-h" }, t("polls")), h("div", { id: "polls" }), pollForm())),
    h("section", { class: "panel hidden", id: "view-attendance", role: "tabpanel", "aria-labelledby": "tab-attendance" },
      h("div", { id: "attendance-tools", class: "row" }),
      h("div", { id: "attendance", class: "attendance-grid-wrap" })));
}

function showView(name) {
  for (const view of ["live", "attendance"]) {
    document.getElementById(`view-${view}`).classList.toggle("hidden", view !== name);
    document.getElementById(`tab-${view}`).setAttribute("aria-selected", view === name ? "true" : "false");
  }
  if (name === "attendance") document.getElementById("attendance-search")?.focus();
}

// The lifecycle acts the chair is offered in each state. Closing (bế mạc) ends a session
// that has run; it is offered apart from the others and only after a confirmation.
const LIFECYCLE = {
  scheduled: [["start", "start", "btn-ok"]],
  in_session: [["adjourn", "adjourn", ""], ["close", "close_meeting", "btn-danger"]],
  adjourned: [["start", "resume", "btn-ok"], ["close", "close_meeting", "btn-danger"]],
  closed: [],
};

async function lifecycleAct(action) {
  if (action === "close") {
    const sure = await dialog(t("confirm_close_meeting_title"),
      h("p", { id: "confirm-consequence" }, t("confirm_close_meeting_body")),
      { okText: t("close_meeting"), danger: true });
    if (!sure) return;
  }
  await act(`meetings/${meeting.id}/${action}`);
}

function renderLifecycle(state) {
  const buttons = LIFECYCLE[state.state] || [];
  fill(document.getElementById("lifecycle"), buttons.map(([action, label, cls]) =>
    h("button", { type: "button", class: `btn btn-small ${cls}`, id: `meeting-${action}`, style: action === "close" ? "margin-left: 1rem" : null,
      onclick: () => lifecycleAct(action) }, t(label))));
}

// --- the current item -----------------------------------------------------------------------------
function renderCurrentItem(state) {
  const current = state.current_agenda_item_id;
  const items = [...agendaItems(state.agenda)];
  const item = findItem(state, current);
  fill(document.getElementById("current-item"),
    h("div", { class: "row" },
      h("label", { for: "current-select", class: "visually-hidden" }, t("current_item")),
      h("select", { id: "current-select", class: "grow", style: "width: auto",
        onchange: (e) => e.target.value && act(`meetings/${meeting.id}/agenda/current`, { agenda_item_id: Number(e.target.value) }) },
        h("option", { value: "", selected: !current }, `— ${t("current_item")} —`),
        items.map((i) => h("option", { value: i.id, selected: i.id === current }, i.title)))),
    item && (item.documents || []).length ? h("div", { class: "row", id: "item-documents" }, item.documents.map((doc) =>
      h("button", { type: "button", class: "btn btn-small", dataset: { doc: doc.id }, "aria-pressed": selection.documentId === doc.id ? "true" : "false",
        onclick: () => selectDocument(item.id, doc.id, 1) }, "▤ ", doc.title || doc.name, ` (${doc.pages || "?"})`))) : null);
}

// --- presentation ----------------------------------------------------------------------------------
function selectDocument(itemId, documentId, page) {
  Object.assign(selection, { itemId, documentId, page });
  renderCurrentItem(meeting.state);
  renderPresentation(meeting.state);
}

/** The chair may let someone else drive the presentation. */
function renderPresenter(state) {
  const box = document.getElementById("presenter");
  if (!box) return;
  const people = (state.participants || []).filter((p) => p.role !== "chair");
  fill(box, h("label", { for: "presenter-select", class: "inline small" }, t("presenter")),
    h("select", { id: "presenter-select", class: "select-compact", onchange: (e) => act(`meetings/${meeting.id}/presenter`, { user_id: e.target.value ? Number(e.target.value) : null }) },
      h("option", { value: "" }, t("presenter_chair")),
      people.map((p) => h("option", { value: p.user_id, selected: p.user_id === state.presenter_id }, p.display_name))));
}

function renderPresentation(state) {
  const box = document.getElementById("presentation");
  const p = state.presentation;
  if (!selection.documentId && p) Object.assign(selection, { itemId: p.agenda_item_id, documentId: p.document_id, page: p.page });
  const item = findItem(state, selection.itemId);
  const doc = item?.documents?.find((d) => d.id === selection.documentId);
  if (!doc) {
    fill(box, h("p", { class: "muted" }, p ? `${t("page_of", { page: p.page, pages: "?" })}` : t("projector_waiting")));
    return;
  }
  const pages = doc.pages || 1;
  const live = p && p.document_id === doc.id ? p.page : null;
  const preview = h("img", { class: "present-preview", alt: t("page_of", { page: selection.page, pages }) });
  pageImage(doc.id, selection.page, 800).then((url) => (preview.src = url)).catch(() => {});
  const thumbs = h("div", { class: "thumbs", role: "listbox", "aria-label": doc.title || doc.name });
  // Thumbnails are fetched as they scroll into view: a 300-page budget is not loaded at once.
  const seen = new IntersectionObserver((entries) => {
    for (const entry of entries) {
      if (!entry.isIntersecting) continue;
      seen.unobserve(entry.target);
      const img = entry.target.querySelector("img");
      pageImage(doc.id, Number(entry.target.dataset.page), 120).then((url) => (img.src = url)).catch(() => {});
    }
  }, { root: thumbs, rootMargin: "0px 400px" });
  for (let n = 1; n <= pages; n++) {
    const img = h("img", { alt: "" });
    const button = h("button", { type: "button", role: "option", "aria-selected": n === selection.page ? "true" : "false", "aria-current": n === live ? "true" : "false",
      "aria-label": t("page_of", { page: n, pages }), dataset: { page: n }, onclick: () => { selection.page = n; renderPresentation(meeting.state); } }, img, h("span", { class: "small" }, n));
    thumbs.append(button);
    seen.observe(button);
  }
  fill(box,
    h("p", { class: "small present-caption" }, h("strong", {}, doc.title || doc.name), " — ", t("page_of", { page: selection.page, pages }),
      live ? h("span", { class: "tag live-tag", id: "live-page" }, `▶ ${t("console_live_page", { page: live })}`) : null),
    preview,
    h("div", { class: "row page-controls" },
      h("button", { type: "button", class: "btn", id: "present-prev", "aria-keyshortcuts": "ArrowLeft PageUp", disabled: selection.page <= 1, onclick: () => presentPage(selection.page - 1) }, "◀ ", t("prev_page")),
      h("button", { type: "button", class: "btn btn-primary grow", id: "present", onclick: () => presentPage(selection.page) }, t("present_page"), ` ${selection.page}`),
      h("button", { type: "button", class: "btn", id: "present-next", "aria-keyshortcuts": "ArrowRight PageDown", disabled: selection.page >= pages, onclick: () => presentPage(selection.page + 1) }, t("next_page"), " ▶")),
    thumbs);
  thumbs.querySelector("[aria-selected=true]")?.scrollIntoView({ block: "nearest", inline: "center" });
}

/** Present a page of the selected document (the page controls and the arrow keys). */
function presentPage(page) {
  const item = findItem(meeting?.state, selection.itemId);
  const doc = item?.documents?.find((d) => d.id === selection.documentId);
  if (!doc) return;
  const target = Math.min(Math.max(1, page), doc.pages || 1);
  selection.page = target;
  renderPresentation(meeting.state);
  act(`meetings/${meeting.id}/presentation`, { agenda_item_id: item.id, document_id: doc.id, page: target });
}

// --- attendance ----------------------------------------------------------------------------------------
const attendanceUi = { query: "" };
const unitNames = new Map();

async function loadUnitNames() {
  if (unitNames.size) return;
  try {
    const answer = await api("units");
    for (const unit of Array.isArray(answer) ? answer : answer.units || []) unitNames.set(unit.id, unit.name);
  } catch {
    /* names only: the seat number still tells namesakes apart */
  }
}

/** The members in seat order (the order of the meeting's list), with their seat number. */
function seated(state) {
  return (state.participants || []).filter((p) => p.role !== "secretary").map((p, index) => ({ ...p, seat: index + 1 }));
}

function statusOf(p) {
  if (p.present) return "present";
  return p.absent_reason || p.marked_by ? "absent" : "unknown";
}

function renderQuorum(state) {
  const q = state.quorum || {};
  const gauge = document.getElementById("quorum");
  gauge.classList.toggle("reached", !!q.reached);
  fill(gauge,
    h("strong", { id: "quorum-text" }, t("quorum", { present: q.present ?? 0, members: q.members ?? 0, required: q.required ?? 0 }), " — ", q.reached ? t("quorum_reached") : t("quorum_not_reached")),
    h("div", { class: "progress", role: "progressbar", "aria-label": t("attendance"), "aria-valuemin": 0, "aria-valuemax": q.members || 0, "aria-valuenow": q.present || 0 },
      h("span", { style: `width: ${q.members ? (100 * q.present) / q.members : 0}%` })));
}

function renderAttendance(state) {
  renderQuorum(state);
  const people = seated(state);
  const names = new Map();
  for (const p of people) names.set(p.display_name, (names.get(p.display_name) || 0) + 1);
  const query = attendanceUi.query.trim().toLowerCase();
  const shown = people.filter((p) => !query || p.display_name.toLowerCase().includes(query) || String(p.seat) === query
    || (unitNames.get(p.unit_id) || "").toLowerCase().includes(query));
  const counts = { present: 0, absent: 0, unknown: 0 };
  for (const p of people) counts[statusOf(p)] += 1;
  const tools = document.getElementById("attendance-tools");
  if (!tools.childElementCount) {
    fill(tools,
      h("label", { for: "attendance-search", class: "visually-hidden" }, t("attendance_search")),
      h("input", { id: "attendance-search", type: "search", placeholder: t("attendance_search"), style: "max-width: 22rem",
        oninput: (e) => { attendanceUi.query = e.target.value; renderAttendance(meeting.state); } }),
      h("span", { id: "attendance-counts", class: "grow small" }),
      h("label", { class: "inline small", id: "remote-counts-label" },
        h("input", { type: "checkbox", id: "remote-counts", onchange: (e) => act(`meetings/${meeting.id}`, { remote_counts_for_quorum: e.target.checked }, "PATCH") }),
        t("attendance_remote_counts")),
      h("button", { type: "button", class: "btn btn-small", id: "mark-rest-absent", onclick: markRestAbsent }, t("attendance_rest_absent")));
  }
  document.getElementById("attendance-counts").textContent = t("attendance_counts", counts);
  // The meeting's rule: whether delegates attending remotely count toward the quorum.
  document.getElementById("remote-counts").checked = state.quorum?.rule?.remote_counts !== false;
  document.getElementById("mark-rest-absent").disabled = counts.unknown === 0;
  const row = (p) => {
    const status = statusOf(p);
    const unit = unitNames.get(p.unit_id);
    return h("tr", { dataset: { user: p.user_id, present: p.present ? "1" : "0", status } },
      h("td", { class: "num" }, p.seat),
      h("th", { scope: "row" }, p.display_name,
        p.role === "chair" ? h("span", { class: "small muted" }, ` (${t("role_chair")})`) : null,
        p.role === "guest" ? h("span", { class: "small muted" }, ` (${t("guest")})`) : null,
        names.get(p.display_name) > 1 ? h("span", { class: "small namesake" }, ` — ${unit || t("attendance_seat", { seat: p.seat })}`) : null),
      h("td", { class: "small" }, unit || ""),
      h("td", {}, h("span", { class: `status status-${status}` }, t(`attendance_status_${status}`)),
        p.checked_in_at && p.present ? h("span", { class: "small muted" }, ` ${formatTime(p.checked_in_at, false)}`) : null,
        !p.present && p.absent_reason ? h("span", { class: "small" }, ` — ${p.absent_reason}`) : null,
        " ", remoteTag(meeting.state, p.user_id)),
      h("td", { class: "actions" }, ...remoteControls(p),
        p.present ? null : h("button", { type: "button", class: "btn btn-small", dataset: { action: "present" }, "aria-label": `${t("attendance_mark_present")}: ${p.seat}. ${p.display_name}`,
          onclick: () => act(`meetings/${meeting.id}/attendance`, { present: true, user_id: p.user_id }) }, t("attendance_mark_present")),
        status === "absent" ? null : h("button", { type: "button", class: "btn btn-small", dataset: { action: "absent" }, "aria-label": `${t("attendance_mark_absent")}: ${p.seat}. ${p.display_name}`, onclick: () => markAbsent(p) }, t("attendance_mark_absent"))));
  };
  fill(document.getElementById("attendance"),
    h("table", { class: "attendance-table", id: "attendance-table" },
      h("caption", { class: "visually-hidden" }, t("attendance")),
      h("thead", {}, h("tr", {},
        h("th", { scope: "col" }, t("attendance_seat_col")), h("th", { scope: "col" }, t("attendance_name_col")),
        h("th", { scope: "col" }, t("attendance_unit_col")), h("th", { scope: "col" }, t("attendance_status_col")),
        h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, t("attendance_actions_col"))))),
      h("tbody", {}, shown.map(row))));
}

/** The chair's controls over a remote participant's live session: mute or ask to unmute,
 *  and remove from the sitting (after a confirmation). */
function remoteControls(p) {
  const media = p.media;
  if (!media) return [];
  const path = `meetings/${meeting.id}/media/${encodeURIComponent(media.session_id)}`;
  const label = (key) => `${t(key)}: ${p.display_name}`;
  const mic = media.muted
    ? h("button", { type: "button", class: "btn btn-small", dataset: { action: "ask-unmute" }, disabled: media.unmute_requested, "aria-label": label("chair_ask_unmute"),
      onclick: () => act(`${path}/unmute-request`) }, media.unmute_requested ? t("chair_unmute_asked") : t("chair_ask_unmute"))
    : h("button", { type: "button", class: "btn btn-small", dataset: { action: "mute" }, "aria-label": label("chair_mute"),
      onclick: () => act(`${path}/mute`, { muted: true }) }, t("chair_mute"));
  const remove = h("button", { type: "button", class: "btn btn-small btn-danger", dataset: { action: "remove" }, "aria-label": label("chair_remove"),
    onclick: async () => {
      const sure = await dialog(t("chair_remove_title", { name: p.display_name }), h("p", {}, t("chair_remove_body")), { okText: t("chair_remove"), danger: true });
      if (sure) await act(path, {}, "DELETE");
    } }, t("chair_remove"));
  return [mic, " ", remove, " "];
}

/** The recordings of the remote sittings, each downloaded with the token (no bare link). */
async function showRecordings(id) {
  let recordings = [];
  try {
    recordings = (await api(`meetings/${id}/recordings`)).recordings || [];
  } catch (err) {
    showError(err);
    return;
  }
  const items = recordings.map((r, index) => {
    const start = formatTime(r.started_at);
    const duration = r.ended_at ? clockText(r.duration_secs || 0) : t("recording_in_progress");
    const text = t("recording_item", { n: index + 1, start, duration });
    return h("li", {}, r.ended_at
      ? h("button", { type: "button", class: "btn btn-small", dataset: { recording: r.id },
        onclick: () => download(r.url, `phien-hop-${id}-ban-ghi-${r.id}.ogg`).catch(showError) }, "⤓ ", text)
      : h("span", { class: "muted" }, text));
  });
  await dialog(t("recordings"), items.length ? h("ul", { class: "card-list", id: "recording-list" }, items) : h("p", { class: "muted" }, t("recordings_none")),
    { okText: t("close"), cancelText: t("close") });
}

/** A remote speaker's audio is lost: the server paused the timer; the chair sees why. */
function renderAudioLost(state) {
  const box = document.getElementById("audio-lost-alert");
  if (!box) return;
  const current = state.speakers?.current;
  if (current?.paused) {
    box.textContent = t("chair_audio_lost", { name: current.display_name });
    box.dataset.user = String(current.user_id);
    box.classList.remove("hidden");
  } else {
    box.classList.add("hidden");
  }
}

async function markAbsent(p) {
  const values = await dialog(`${t("absent")}: ${p.display_name}`, h("div", {},
    h("label", { for: "absent-reason" }, t("absent_reason")), h("input", { id: "absent-reason", name: "reason", type: "text" })));
  if (values) await act(`meetings/${meeting.id}/attendance`, { present: false, user_id: p.user_id, reason: values.reason || "" });
}

// Marking the rest absent sends this many requests at a time.
const BULK_PARALLEL = 4;

async function markRestAbsent() {
  const rest = seated(meeting.state).filter((p) => statusOf(p) === "unknown");
  if (!rest.length) return;
  const values = await dialog(t("attendance_rest_absent"), h("div", {},
    h("p", {}, t("attendance_rest_absent_body", { n: rest.length })),
    h("label", { for: "rest-reason" }, t("absent_reason")),
    h("input", { id: "rest-reason", name: "reason", type: "text", required: true })), { okText: t("attendance_rest_absent") });
  if (!values) return;
  const queue = [...rest];
  const worker = async () => {
    while (queue.length) {
      const p = queue.shift();
      await act(`meetings/${meeting.id}/attendance`, { present: false, user_id: p.user_id, reason: values.reason.trim() });
    }
  };
  await Promise.all(Array.from({ length: BULK_PARALLEL }, worker));
  announce(t("attendance_rest_absent_done", { n: rest.length }));
}

// --- speakers ---------------------------------------------------------------------------------------------
function grantNext() {
  const next = meeting?.state?.speakers?.queue?.[0];
  if (!next || meeting.state.speakers.current) return;
  act(`meetings/${meeting.id}/speakers/${next.id}/grant`);
}

function renderSpeakers(state) {
  const sp = state.speakers || { queue: [] };
  const current = sp.current;
  const ids = sp.queue.map((s) => s.id);
  const move = (index, delta) => {
    const order = [...ids];
    const [moved] = order.splice(index, 1);
    order.splice(index + delta, 0, moved);
    act(`meetings/${meeting.id}/speakers/reorder`, { speaker_ids: order });
  };
  fill(document.getElementById("speakers"),
    h("div", { class: "speaker-now" },
      h("div", { id: "current-speaker", class: "grow" }, current ? t("speaking_now", { name: current.display_name }) : t("no_speaker"),
        current ? remoteTag(state, current.user_id) : null,
        current?.paused ? h("span", { class: "tag tag-order", id: "speaker-paused" }, t("speaker_paused")) : null),
      current ? h("span", { class: "timer", id: "speaker-timer", role: "timer", "aria-live": "off" }) : null),
    h("div", { class: "row" },
      current ? h("button", { type: "button", class: "btn btn-danger", id: "finish-speaker", onclick: () => act(`meetings/${meeting.id}/speakers/${current.id}/finish`) }, t("finish")) : null,
      h("button", { type: "button", class: "btn btn-ok", id: "grant-next", "aria-keyshortcuts": "N", disabled: !!current || !sp.queue.length, onclick: grantNext },
        t("console_next_speaker"), h("kbd", { class: "kbd", "aria-hidden": "true" }, "N"))),
    h("ol", { class: "speaker-queue", id: "speaker-queue", "aria-label": t("console_queue") }, sp.queue.map((s, index) => h("li", { dataset: { speaker: s.id, user: s.user_id, kind: s.kind } },
      h("span", { class: "grow" }, `${s.display_name} `, h("span", { class: `tag ${s.kind === "point_of_order" ? "tag-order" : ""}` }, t(`kind_${s.kind}`)), " ", remoteTag(state, s.user_id)),
      h("button", { type: "button", class: "btn btn-small", "aria-label": `${t("move_up")}: ${s.display_name}`, disabled: index === 0, onclick: () => move(index, -1) }, "↑"),
      h("button", { type: "button", class: "btn btn-small", "aria-label": `${t("move_down")}: ${s.display_name}`, disabled: index === ids.length - 1, onclick: () => move(index, 1) }, "↓"),
      h("button", { type: "button", class: "btn btn-small btn-ok", dataset: { action: "grant" }, "aria-label": `${t("grant")}: ${s.display_name}`, disabled: !!current, onclick: () => act(`meetings/${meeting.id}/speakers/${s.id}/grant`) }, t("grant")),
      h("button", { type: "button", class: "btn btn-small", "aria-label": `${t("delete")}: ${s.display_name}`, onclick: () => act(`meetings/${meeting.id}/speakers/${s.id}`, {}, "DELETE") }, "✕")))));
  clearInterval(timerHandle);
  const tick = () => {
    const el = document.getElementById("speaker-timer");
    if (!el) return;
    const left = secondsLeft(current);
    el.textContent = left === null ? "" : clockText(left);
    el.classList.toggle("low", left !== null && left <= 30);
  };
  tick();
  if (current) timerHandle = setInterval(tick, 500);
}

// --- floor requests: seen and heard ------------------------------------------------------------------
let audio = null;
// A point of order sounds twice as urgent: two higher tones; a request, one soft tone.
const TONES = { point_of_order: [[880, 0], [1175, 0.22]], speech: [[660, 0]], question: [[660, 0]] };

function chime(kind) {
  try {
    audio = audio || new AudioContext();
    if (audio.state === "suspended") audio.resume();
    for (const [freq, at] of TONES[kind] || TONES.speech) {
      const osc = audio.createOscillator();
      const gain = audio.createGain();
      osc.frequency.value = freq;
      const start = audio.currentTime + at;
      gain.gain.setValueAtTime(0.0001, start);
      gain.gain.exponentialRampToValueAtTime(0.3, start + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, start + 0.2);
      osc.connect(gain).connect(audio.destination);
      osc.start(start);
      osc.stop(start + 0.22);
    }
    window.dhChimes = (window.dhChimes || 0) + 1;
  } catch {
    /* no audio device: the visible alert remains */
  }
}

// Browsers start sound only after a gesture: the chair's first click or key unlocks it.
function unlockAudio() {
  try {
    audio = audio || new AudioContext();
    if (audio.state === "suspended") audio.resume();
  } catch {
    /* no audio device */
  }
}
document.addEventListener("pointerdown", unlockAudio, { once: true });
document.addEventListener("keydown", unlockAudio, { once: true });

function floorAlert(data) {
  const who = meeting.state.speakers?.queue?.find((s) => s.id === data.speaker_id)?.display_name
    || participant(meeting.state, data.user_id)?.display_name || "";
  const order = data.kind === "point_of_order";
  const text = order ? t("console_point_of_order", { name: who }) : t("console_floor_request", { name: who, kind: t(`kind_${data.kind}`) });
  const box = document.getElementById("floor-alert");
  box.className = `floor-alert ${order ? "floor-alert-order" : ""}`;
  box.dataset.kind = data.kind;
  box.dataset.speaker = String(data.speaker_id);
  fill(box, h("span", { class: "grow" }, text),
    h("button", { type: "button", class: "btn btn-small", id: "floor-alert-close", onclick: () => box.classList.add("hidden") }, t("close")));
  chime(data.kind);
  clearTimeout(floorAlert.timer);
  // A point of order stays until the chair acts on it; a request fades after a while.
  if (!order) floorAlert.timer = setTimeout(() => box.classList.add("hidden"), 8000);
}

// Keys: arrows / PageUp / PageDown turn the presented page, N gives the floor to the next.
document.addEventListener("keydown", (event) => {
  if (!meeting || event.ctrlKey || event.metaKey || event.altKey) return;
  const target = event.target;
  if (target.closest?.("input, textarea, select, dialog, [role=listbox], [role=tablist]")) return;
  if (document.getElementById("view-live")?.classList.contains("hidden")) return;
  if (event.key === "ArrowRight" || event.key === "PageDown") presentPage(selection.page + 1);
  else if (event.key === "ArrowLeft" || event.key === "PageUp") presentPage(selection.page - 1);
  else if (event.key === "n" || event.key === "N") grantNext();
  else return;
  event.preventDefault();
});

// --- polls -------------------------------------------------------------------------------------------------
function pollForm() {
  const select = (name, values) => h("select", { id: `poll-${name}`, name }, values.map(([v, label]) => h("option", { value: v }, label)));
  return h("details", { class: "panel", id: "new-poll" }, h("summary", {}, t("new_poll")),
    h("form", { onsubmit: createPoll },
      h("div", { class: "field" }, h("label", { for: "poll-title" }, t("poll_title")), h("input", { id: "poll-title", name: "title", type: "text", required: true })),
      h("div", { class: "row" },
        h("div", { class: "field grow" }, h("label", { for: "poll-kind" }, t("poll_kind")), select("kind", [["yes_no_abstain", t("kind_yes_no_abstain")], ["choice", t("kind_choice")]])),
        h("div", { class: "field grow" }, h("label", { for: "poll-rule" }, t("rule")), select("rule", ["majority_of_members", "two_thirds_of_members", "majority_of_cast"].map((r) => [r, t(`rule_${r}`)]))),
        h("div", { class: "field" }, h("label", { for: "poll-max" }, t("max_choices")), h("input", { id: "poll-max", name: "max_choices", type: "number", min: 1, value: 1, style: "width: 6rem" }))),
      h("div", { class: "field" }, h("label", { for: "poll-options" }, t("options")), h("textarea", { id: "poll-options", name: "options", rows: 3 })),
      h("div", { class: "field" }, h("label", { class: "inline" }, h("input", { type: "checkbox", name: "secret", id: "poll-secret" }), t("secret"))),
      h("button", { type: "submit", class: "btn btn-primary", id: "create-poll" }, t("new_poll"))));
}

async function createPoll(event) {
  event.preventDefault();
  const form = event.target;
  const body = { title: form.title.value.trim(), kind: form.kind.value, rule: form.rule.value, secret: form.secret.checked };
  if (meeting.state.current_agenda_item_id) body.agenda_item_id = meeting.state.current_agenda_item_id;
  if (body.kind === "choice") {
    body.options = form.options.value.split("\n").map((o) => o.trim()).filter(Boolean);
    body.max_choices = Number(form.max_choices.value) || 1;
  }
  if (await act(`meetings/${meeting.id}/polls`, body)) form.reset();
}

function refreshPollDetail(poll) {
  // At most one GET per poll in flight; a change meanwhile asks once more after it.
  if (pollFetch.has(poll.id)) {
    pollFetch.set(poll.id, "again");
    return;
  }
  pollFetch.set(poll.id, "busy");
  api(`polls/${poll.id}`).then((detail) => {
    pollDetails.set(poll.id, detail);
    if (meeting) renderPolls(meeting.state);
  }).catch(() => {}).finally(() => {
    const again = pollFetch.get(poll.id) === "again";
    pollFetch.delete(poll.id);
    if (again) refreshPollDetail(poll);
  });
}

/** Figures an open poll's count is read against. */
function pollFigures(state, poll) {
  const detail = pollDetails.get(poll.id) || {};
  return { cast: poll.cast ?? detail.cast ?? 0, present: state.quorum?.present ?? 0, members: state.quorum?.members ?? 0 };
}

async function closePoll(poll) {
  const sure = await dialog(t("confirm_close_poll_title", { title: poll.title }),
    h("p", { id: "confirm-consequence" }, t("confirm_close_poll_body", { progress: progressLine(poll, pollFigures(meeting.state, poll)) })),
    { okText: t("close_poll"), danger: true });
  if (sure) await act(`polls/${poll.id}/close`);
}

/** The chair is a member of the body: their own ballot, from the panel. */
function chairBallot(state, poll) {
  const mine = participant(state, me.id);
  if (!mine || mine.role !== "chair") return null;
  if (myVote.pollId !== poll.id) Object.assign(myVote, { pollId: poll.id, pending: null, selected: [] });
  const entry = book.get(poll.id);
  const box = (...children) => h("div", { class: "chair-ballot", id: "chair-ballot", role: "group", "aria-labelledby": "chair-ballot-h" },
    h("strong", { id: "chair-ballot-h" }, t("chair_your_vote")), " ", ...children);
  if (entry?.receipt) return box(h("span", { id: "chair-receipt" }, "✓ ", t("vote_done"), " ", h("span", { class: "receipt" }, entry.receipt)));
  if (entry?.status === "already") return box(h("span", {}, "✓ ", t("already_voted")));
  if (entry?.status === "sending") return box(h("span", { role: "status" }, t("ballot_sending")));
  if (entry?.status === "unknown") return box(h("span", { role: "alert" }, t("ballot_unknown")));
  if (!mine.present) return box(h("span", {}, t("check_in_first")), " ",
    h("button", { type: "button", class: "btn btn-small btn-ok", id: "chair-check-in", onclick: () => act(`meetings/${meeting.id}/attendance`, { present: true }) }, t("check_in")));
  const refused = entry?.status === "refused" ? h("span", { role: "alert" }, t("ballot_refused", { code: entry.code }), " ") : null;
  const options = poll.kind === "yes_no_abstain" ? ["yes", "no", "abstain"] : poll.options || [];
  if (myVote.pending !== null) {
    const label = Array.isArray(myVote.pending) ? myVote.pending.map((c) => choiceText(poll, c)).join(", ") : choiceText(poll, myVote.pending);
    return box(h("span", { id: "chair-confirm-text" }, t("confirm_vote", { choice: label })), " ",
      h("button", { type: "button", class: "btn btn-small", onclick: () => { myVote.pending = null; renderPolls(meeting.state); } }, t("change_choice")), " ",
      h("button", { type: "button", class: "btn btn-small btn-ok", id: "chair-vote-confirm", onclick: () => chairCast(poll) }, t("confirm")));
  }
  const multi = poll.kind === "choice" && (poll.max_choices || 1) > 1;
  return box(refused, options.map((value) => h("button", {
    type: "button", class: "btn btn-small", dataset: { choice: value }, "aria-pressed": multi ? String(myVote.selected.includes(value)) : null,
    onclick: () => {
      if (!multi) myVote.pending = poll.kind === "choice" ? [value] : value;
      else if (myVote.selected.includes(value)) myVote.selected.splice(myVote.selected.indexOf(value), 1);
      else if (myVote.selected.length < poll.max_choices) myVote.selected.push(value);
      renderPolls(meeting.state);
    } }, choiceText(poll, value))),
  multi ? h("button", { type: "button", class: "btn btn-small btn-primary", disabled: !myVote.selected.length, onclick: () => { myVote.pending = [...myVote.selected]; renderPolls(meeting.state); } }, t("confirm")) : null);
}

async function chairCast(poll) {
  const choice = myVote.pending;
  myVote.pending = null;
  await sendBallot(book, poll, choice, { wake: ballotWake, onChange: () => meeting && renderPolls(meeting.state) });
  if (meeting) renderPolls(meeting.state);
}

function renderPolls(state) {
  const box = document.getElementById("polls");
  // The open vote first, then the prepared ones (one click opens them), then results.
  const rank = { open: 0, draft: 1, closed: 2 };
  const polls = [...(state.polls || [])].sort((a, b) => (rank[a.state] - rank[b.state]) || (b.id - a.id));
  fill(box, polls.length ? h("ul", { class: "card-list", id: "poll-list" }, polls.map((p) => {
    const detail = pollDetails.get(p.id) || {};
    const figures = pollFigures(state, p);
    const result = p.result || detail.result;
    // Who has not voted, against the same base as the count beside it.
    const waiting = (detail.not_voted || []).filter((v) => p.rule !== "majority_of_cast" || v.present);
    return h("li", { class: "panel", dataset: { poll: p.id, state: p.state } },
      h("div", { class: "row" }, h("strong", { class: "grow" }, p.title), h("span", { class: "tag poll-state" }, t(`poll_state_${p.state}`)),
        secrecyTag(p), h("span", { class: "small muted" }, t(`rule_${p.rule}`))),
      p.state === "draft" ? h("button", { type: "button", class: "btn btn-ok", dataset: { action: "open" }, onclick: () => act(`polls/${p.id}/open`) }, t("open_poll")) : null,
      p.state === "open" ? h("div", {},
        h("p", { class: "verdict", id: `poll-cast-${p.id}`, "aria-live": "polite" }, progressLine(p, figures)),
        chairBallot(state, p),
        h("button", { type: "button", class: "btn btn-danger", dataset: { action: "close" }, onclick: () => closePoll(p) }, t("close_poll")),
        waiting.length ? h("details", {}, h("summary", {}, `${t("not_voted")} (${waiting.length})`),
          h("ul", { class: "small" }, waiting.map((v) => h("li", {}, v.display_name, v.present ? "" : ` (${t("absent")})`)))) : null) : null,
      p.state === "closed" && result ? resultBlock(p, result) : null);
  })) : h("p", { class: "muted" }, "—"));
  for (const p of state.polls || []) if (p.state === "open" && !pollDetails.has(p.id)) refreshPollDetail(p);
}

// --- wiring --------------------------------------------------------------------------------------------------
function render(state, event) {
  const title = document.getElementById("meeting-title");
  title.textContent = state.title;
  title.title = state.title;
  const tag = document.getElementById("meeting-state");
  tag.textContent = t(`state_${state.state}`);
  tag.dataset.state = state.state;
  const type = event?.type || "";
  renderLifecycle(state);
  if (!event || type.startsWith("agenda") || type === "presentation.changed") {
    renderCurrentItem(state);
    renderPresentation(state);
  }
  const people = type === "attendance.changed" || type === "participants.changed" || type.startsWith("media.");
  if (!event || type === "presenter.changed" || type === "participants.changed") renderPresenter(state);
  if (!event || people || type === "meeting.updated") renderAttendance(state);
  if (!event || people || type.startsWith("speaker")) renderSpeakers(state);
  if (!event || type.startsWith("speaker")) renderAudioLost(state);
  if (type === "speaker.requested") floorAlert(event.data);
  else if (type.startsWith("speaker")) {
    // The request was granted or withdrawn: its alert has done its work.
    const box = document.getElementById("floor-alert");
    const waiting = (state.speakers?.queue || []).some((s) => String(s.id) === box.dataset.speaker);
    if (!waiting) box.classList.add("hidden");
  }
  if (type === "speaker.time_up") toast(t("time_up"), "urgent");
  if (type === "poll.progress") {
    const poll = state.polls.find((p) => p.id === event.data.poll_id);
    if (poll) refreshPollDetail(poll);
  }
  if (!event || type.startsWith("poll") || people) renderPolls(state);
}

async function openMeeting(id) {
  renderShell(id);
  Object.assign(selection, { itemId: null, documentId: null, page: 1 });
  pollDetails.clear();
  meeting = new MeetingSession(id, { realtime, onChange: render });
  loadUnitNames().then(() => meeting?.state && renderAttendance(meeting.state));
  try {
    await meeting.start();
  } catch (err) {
    showError(err);
  }
}

function route() {
  const match = location.hash.match(/^#meeting\/(\d+)/);
  if (meeting) realtime.unfollow(meeting.topic);
  meeting = null;
  clearInterval(timerHandle);
  if (match) openMeeting(Number(match[1]));
  else renderList().catch(showError);
}

window.addEventListener("hashchange", route);
window.addEventListener("langchange", () => {
  startPage("chair_title");
  showConnection(realtime.status);
  route();
});
route();
