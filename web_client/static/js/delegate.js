// The delegate tablet app: my meetings → a meeting: agenda, documents page by page (follow
// the chair), annotations, check-in, the floor, polls at the front, urgent instructions,
// remote attendance (hear the floor over WebRTC, be heard when given the floor).

import { api, download, listOf } from "./api.js";
import { BallotBook, sendBallot } from "./ballot.js";
import { progressLine, resultBlock, secrecyTag } from "./poll-view.js";
import { formatTime, t } from "./i18n.js";
import { announce, clockText, connectRealtime, fill, h, showConnection, showError, startPage, toast } from "./shell.js";
import { DocViewer } from "./doc-viewer.js";
import { MeetingSession, agendaItems, findDocument, myMeetings, participant, secondsLeft } from "./meeting-state.js";
import { RemoteAttendance } from "./remote.js";
import { FloorVideo, videoArea } from "./media-video.js";
import { flushAnnotations, lastKnownState, preloadMeeting, rememberState, startOfflineWorker } from "./offline.js";

const me = startPage("app_delegate");
const book = new BallotBook(me.id);

let meeting = null; // MeetingSession
let viewer = null;
// Resolves once the open meeting's viewer has drawn its first page (or after a while): the
// download of every document waits for it, so the page the chair presents is not sharing
// the tablet's share of the hall's Wi-Fi with the pages nobody looks at yet.
let firstPageShown = Promise.resolve();
const FIRST_PAGE_WAIT_MS = 5000;
let follow = true;
let openDoc = null; // {fileId, pages}
let timerHandle = null;
const directives = new Map();
// Results the delegate closed, and polls whose receipt card was closed while still open:
// two different things (closing a receipt never hides the result that follows).
const dismissedResults = new Set();
const dismissedReceipts = new Set();
// Polls this page saw open: their result comes to the front when they close.
const seenOpen = new Set();
// Remote attendance of the open meeting (kept across re-renders of the same meeting).
let remote = null;
// The floor plays here; outside #main so that re-rendering the page never stops it.
const floorAudio = h("audio", { id: "floor-audio", autoplay: true });
document.body.append(floorAudio);
const REMOTE_ERRORS = ["not_a_participant", "meeting_closed", "media_full", "mic_denied", "mic_missing", "connection_failed", "removed", "replaced"];
// Why the server ended a session that the tablet should make again by itself.
const REJOIN_REASONS = new Set(["silent", "failed", "closed", "shutdown"]);

const realtime = connectRealtime({
  onEvent: (event) => (meeting ? meeting.apply(event) : onOtherEvent(event)),
  onReset: (topic) => (meeting && topic === meeting.topic ? meeting.reload() : loadDirectives()),
});

// --- the meeting list ------------------------------------------------------------------------
async function renderList() {
  const main = document.getElementById("main");
  fill(main, h("p", {}, t("loading")));
  const list = await myMeetings();
  fill(main,
    h("section", { class: "panel" }, h("h2", {}, t("meetings")),
      list.length ? h("ul", { class: "card-list", id: "meeting-list" }, list.map((m) =>
        h("li", { class: "panel" },
          h("a", { href: `#meeting/${m.id}`, class: "btn btn-primary" }, m.title),
          h("div", { class: "small muted" }, formatTime(m.starts_at), m.place ? ` · ${m.place}` : "", " · ", t(`state_${m.state}`)))))
        : h("p", { class: "muted" }, t("no_meetings")),
      h("p", { id: "preload-status", class: "small muted", role: "status", "aria-live": "polite" })),
    directivePanel());
  renderPreloadStatus();
}

// --- urgent instructions -------------------------------------------------------------------------
async function loadDirectives() {
  try {
    for (const d of listOf(await api("directives?box=inbox"), "directives")) directives.set(d.id, d);
  } catch {
    /* the messaging API may not be available: the panel stays empty */
  }
  const panel = document.getElementById("directive-panel");
  if (panel) panel.replaceWith(directivePanel());
}

function directivePanel() {
  const open = [...directives.values()].filter((d) => !(d.receipt || d).acknowledged_at);
  return h("section", { class: "panel", id: "directive-panel", "aria-labelledby": "dir-h" },
    h("h2", { id: "dir-h" }, t("instructions_inbox"), " ", open.length ? h("span", { class: "badge" }, open.length) : null),
    open.length ? h("ul", { class: "card-list" }, open.map((d) =>
      h("li", { class: `directive panel urg-${d.urgency}-card` },
        h("span", { class: `tag urg-${d.urgency}` }, t(`urgency_${d.urgency || "normal"}`)), " ",
        h("a", { href: `/app/chat/#directive/${d.id}` }, d.title))))
      : h("p", { class: "muted" }, t("inbox_empty")));
}

function onOtherEvent(event) {
  if (event.type === "meeting.preload_requested") {
    preloadAhead(event.data.meeting_id, event.data.reason);
    return;
  }
  if (event.type === "directive.issued") {
    const d = event.data.directive || event.data;
    directives.set(d.id, { ...(directives.get(d.id) || {}), ...d });
    toast(d.urgency === "express" ? t("express_banner", { title: d.title }) : t("new_directive", { title: d.title }),
      d.urgency === "express" ? "urgent" : "info");
    const panel = document.getElementById("directive-panel");
    if (panel) panel.replaceWith(directivePanel());
  }
}

// --- one meeting ------------------------------------------------------------------------------------
function renderMeetingShell(id) {
  const main = document.getElementById("main");
  fill(main,
    h("div", { class: "row", id: "meeting-bar" },
      h("a", { href: "#", class: "btn btn-small" }, "← ", t("meetings")),
      h("h2", { id: "meeting-title", class: "grow", style: "margin:0" }),
      h("span", { id: "meeting-state", class: "tag" }),
      h("div", { id: "quorum", class: "quorum-gauge", style: "min-width: 10rem" }),
      h("button", { type: "button", class: "btn btn-ok", id: "check-in", onclick: checkIn }, t("check_in"))),
    h("p", { id: "offline-state", class: "offline-state hidden", role: "status" }),
    h("div", { class: "meeting-layout", style: "margin-top: .8rem" },
      h("aside", { class: "stack" },
        // First in the column: joining remotely is within the first screen of a tablet.
        remotePanel(),
        h("section", { class: "panel", "aria-labelledby": "agenda-h" }, h("h3", { id: "agenda-h" }, t("agenda")), h("div", { id: "agenda" }),
          h("p", { id: "preload-status", class: "small muted", role: "status", "aria-live": "polite" })),
        directivePanel()),
      h("section", { class: "panel", "aria-labelledby": "doc-h" },
        h("div", { class: "viewer-bar" },
          h("label", { class: "switch" }, h("input", { type: "checkbox", id: "follow", role: "switch", checked: true, onchange: (e) => setFollow(e.target.checked) }), t("follow_chair")),
          h("h3", { id: "doc-h", class: "grow", style: "margin:0" }),
          h("button", { type: "button", class: "btn btn-small", id: "prev-page", "aria-label": t("prev_page"), onclick: () => viewer.turn(-1) }, "◀"),
          h("span", { id: "page-label", "aria-live": "polite" }),
          h("button", { type: "button", class: "btn btn-small", id: "next-page", "aria-label": t("next_page"), onclick: () => viewer.turn(1) }, "▶"),
          h("button", { type: "button", class: "btn btn-small", "aria-label": t("zoom_out"), onclick: () => viewer.setZoom(viewer.zoom / 1.25) }, "−"),
          h("button", { type: "button", class: "btn btn-small", "aria-label": t("zoom_in"), onclick: () => viewer.setZoom(viewer.zoom * 1.25) }, "+")),
        h("div", { class: "viewer-bar", role: "toolbar", "aria-label": t("tools") },
          ["none", "pen", "highlighter", "note"].map((tool) => h("button", {
            type: "button", class: "btn btn-small tool", "aria-pressed": tool === "none" ? "true" : "false", dataset: { tool },
            onclick: (e) => {
              viewer.setTool(tool);
              for (const b of document.querySelectorAll(".tool")) b.setAttribute("aria-pressed", b === e.currentTarget ? "true" : "false");
            },
          }, t(`tool_${tool}`))),
          h("label", { class: "inline" }, h("input", { type: "checkbox", id: "share-notes", onchange: (e) => (viewer.share = e.target.checked) }), t("share_notes")),
          h("button", { type: "button", class: "btn btn-small", id: "undo-note", onclick: () => viewer.undo(me.id) }, t("undo")),
          h("button", { type: "button", class: "btn btn-small", id: "download-annotated", onclick: downloadAnnotated }, t("download_annotated")),
          h("button", { type: "button", class: "btn btn-small btn-primary hidden", id: "present-this", onclick: presentThis }, t("present_page"))),
        h("div", { id: "follow-hint", class: "follow-hint hidden", role: "status" }),
        h("div", { id: "viewer" }))),
    // The floor is always within reach: a bar fixed at the bottom of the screen.
    h("section", { class: "action-bar", id: "floor", "aria-labelledby": "floor-h" },
      h("h3", { id: "floor-h", class: "visually-hidden" }, t("speakers")), h("div", { id: "floor-body", class: "floor-body" })),
    h("div", { id: "poll-layer" }));
  viewer = new DocViewer(document.getElementById("viewer"), { annotate: true, meetingId: id });
  firstPageShown = new Promise((resolve) => {
    viewer.addEventListener("pagechange", resolve, { once: true });
    setTimeout(resolve, FIRST_PAGE_WAIT_MS);
  });
  viewer.addEventListener("userturn", () => setFollow(false));
  viewer.addEventListener("pagechange", (e) => {
    document.getElementById("page-label").textContent = t("page_of", { page: e.detail.page, pages: viewer.pages });
    renderFollowHint();
  });
}

function setFollow(on) {
  follow = on;
  const box = document.getElementById("follow");
  if (box) box.checked = on;
  // Turned on again: snap back to what the chair presents.
  if (on && meeting?.state) showPresentation();
  renderFollowHint();
}

/** Browsing on one's own while the chair presents something else: say so, one tap back. */
function renderFollowHint() {
  const box = document.getElementById("follow-hint");
  const p = meeting?.state?.presentation;
  if (!box) return;
  const away = !follow && p?.document_id && (openDoc?.fileId !== p.document_id || viewer.page !== p.page);
  box.classList.toggle("hidden", !away);
  if (!away) {
    box.replaceChildren();
    return;
  }
  const found = findDocument(meeting.state, p.document_id);
  const sameDoc = openDoc?.fileId === p.document_id;
  fill(box, h("span", { class: "grow" }, sameDoc ? t("follow_hint_page", { page: p.page })
    : t("follow_hint_doc", { page: p.page, title: found?.doc?.title || found?.doc?.name || "" })),
  h("button", { type: "button", class: "btn btn-small btn-primary", id: "follow-back", onclick: () => setFollow(true) }, t("follow_back")));
}

function openDocument(fileId, page = 1, source = "user") {
  const found = findDocument(meeting.state, fileId);
  if (!found) return;
  openDoc = { fileId, pages: found.doc.pages || 1 };
  document.getElementById("doc-h").textContent = found.doc.title || found.doc.name || `#${fileId}`;
  viewer.show(fileId, page, found.doc.pages || 1, source);
}

function showPresentation() {
  const p = meeting.state.presentation;
  if (!p || !p.document_id) return;
  if (openDoc?.fileId === p.document_id && viewer.page === p.page) return;
  openDocument(p.document_id, p.page, "chair");
}

function renderAgenda(state) {
  const current = state.current_agenda_item_id;
  const list = (items) => h("ol", { class: "agenda" }, items.map((item) =>
    h("li", { class: item.id === current ? "current" : "", "aria-current": item.id === current ? "true" : "false", dataset: { item: item.id } },
      h("div", {}, item.title, item.id === current ? h("span", { class: "visually-hidden" }, ` (${t("current_item")})`) : null),
      (item.documents || []).length ? h("div", { class: "row" }, item.documents.map((doc) =>
        h("button", { type: "button", class: "btn btn-small", dataset: { doc: doc.id }, onclick: () => { setFollow(false); openDocument(doc.id, 1); } },
          "▤ ", doc.title || doc.name))) : null,
      item.children?.length ? list(item.children) : null)));
  fill(document.getElementById("agenda"), list(state.agenda || []));
}

function renderQuorum(state) {
  const q = state.quorum || {};
  const box = document.getElementById("quorum");
  box.classList.toggle("reached", !!q.reached);
  fill(box,
    h("span", { class: "small", id: "quorum-text" }, t("quorum", { present: q.present ?? 0, members: q.members ?? 0, required: q.required ?? 0 }), " · ",
      q.reached ? t("quorum_reached") : t("quorum_not_reached")),
    h("div", { class: "progress", role: "progressbar", "aria-label": t("attendance"), "aria-valuemin": 0, "aria-valuemax": q.members || 0, "aria-valuenow": q.present || 0 },
      h("span", { style: `width: ${q.members ? (100 * q.present) / q.members : 0}%` })));
}

function renderCheckIn(state) {
  const button = document.getElementById("check-in");
  const mine = participant(state, me.id);
  const present = !!mine?.present;
  button.textContent = present ? `✓ ${t("checked_in")}` : t("check_in");
  button.disabled = present || state.state !== "in_session" || !mine || mine.role === "secretary";
  button.setAttribute("aria-pressed", present ? "true" : "false");
}

async function checkIn() {
  try {
    await api(`meetings/${meeting.id}/attendance`, { method: "POST", body: { present: true } });
  } catch (err) {
    showError(err);
  }
}

function renderFloor(state) {
  const sp = state.speakers || { queue: [] };
  const mineIndex = sp.queue.findIndex((s) => s.user_id === me.id);
  const mine = mineIndex >= 0 ? sp.queue[mineIndex] : null;
  const current = sp.current;
  const role = participant(state, me.id)?.role;
  const canRequest = state.state === "in_session" && !mine && current?.user_id !== me.id && !!role && role !== "secretary";
  fill(document.getElementById("floor-body"),
    h("div", { id: "current-speaker" }, current ? t("speaking_now", { name: current.display_name }) : t("no_speaker")),
    current ? h("div", { class: "timer", id: "speaker-timer", role: "timer", "aria-live": "off" }) : null,
    mine ? h("p", { id: "queue-place", class: "verdict" }, t("queue_place", { n: mineIndex + 1 }), " · ", t(`kind_${mine.kind}`)) : null,
    mine ? h("button", { type: "button", class: "btn", id: "withdraw", onclick: () => withdraw(mine.id) }, t("withdraw")) : null,
    canRequest ? h("div", { class: "row", role: "group", "aria-label": t("request_floor") },
      ["speech", "question", "point_of_order"].map((kind) => h("button", { type: "button", class: "btn btn-primary", dataset: { kind }, onclick: () => requestFloor(kind) }, t(`kind_${kind}`)))) : null);
  tickTimer();
}

function tickTimer() {
  clearInterval(timerHandle);
  const current = meeting?.state?.speakers?.current;
  const update = () => {
    const el = document.getElementById("speaker-timer");
    if (!el) return;
    const left = secondsLeft(current);
    el.textContent = left === null ? "" : t("time_left", { time: clockText(left) });
    el.classList.toggle("low", left !== null && left <= 30);
  };
  update();
  if (current) timerHandle = setInterval(update, 500);
}

async function requestFloor(kind) {
  try {
    await api(`meetings/${meeting.id}/speakers`, { method: "POST", body: { kind } });
  } catch (err) {
    showError(err);
  }
}

async function withdraw(speakerId) {
  try {
    await api(`meetings/${meeting.id}/speakers/${speakerId}`, { method: "DELETE" });
  } catch (err) {
    showError(err);
  }
}

/** A delegate the chair named presenter turns the page for everyone. */
async function presentThis() {
  if (!openDoc) return;
  const found = findDocument(meeting.state, openDoc.fileId);
  try {
    await api(`meetings/${meeting.id}/presentation`, { method: "POST", body: { agenda_item_id: found.item.id, document_id: openDoc.fileId, page: viewer.page } });
  } catch (err) {
    showError(err);
  }
}

async function downloadAnnotated() {
  if (!openDoc) return;
  try {
    const found = findDocument(meeting.state, openDoc.fileId);
    const stem = (found?.doc?.name || `tai-lieu-${openDoc.fileId}`).replace(/\.pdf$/i, "");
    await download(`/api/v1/files/${openDoc.fileId}/annotated.pdf`, `${stem}-ghi-chu.pdf`);
  } catch (err) {
    showError(err);
  }
}

// --- remote attendance ------------------------------------------------------------------------
function remotePanel() {
  return h("section", { class: "panel stack", id: "remote", "aria-labelledby": "remote-h" },
    h("div", { class: "row" },
      h("h3", { id: "remote-h", class: "grow", style: "margin:0" }, t("remote_title")),
      h("span", { id: "remote-status", class: "tag", role: "status", "aria-live": "polite" })),
    h("p", { id: "remote-live", class: "remote-live hidden", role: "status" }, "● ", t("remote_live")),
    h("div", { id: "remote-chair", class: "remote-chair hidden", role: "alert" }),
    h("div", { id: "remote-floor", class: "small" }),
    h("div", { id: "remote-level", class: "progress", role: "meter", "aria-label": t("remote_level"), "aria-valuemin": 0, "aria-valuemax": 100, "aria-valuenow": 0 },
      h("span", { style: "width: 0%" })),
    h("label", { class: "inline", id: "remote-video-label" }, h("input", { type: "checkbox", id: "remote-video" }), t("remote_video")),
    h("div", { class: "row" },
      h("button", { type: "button", class: "btn btn-primary", id: "remote-join", onclick: joinRemote }, t("remote_join")),
      h("button", { type: "button", class: "btn", id: "remote-mute", "aria-pressed": "false", onclick: toggleMute }, t("remote_mute")),
      h("button", { type: "button", class: "btn btn-danger", id: "remote-leave", onclick: leaveRemote }, t("remote_leave"))),
    h("p", { id: "remote-error", class: "hidden", role: "alert", style: "margin:0; font-weight:700; color: var(--danger)" }),
    videoArea());
}

function remoteFor(id) {
  if (remote?.meetingId === id) return remote;
  remote = new RemoteAttendance(id, floorAudio);
  new FloorVideo(remote, { onAir: () => meeting?.state?.speakers?.current?.user_id === me.id });
  remote.addEventListener("change", () => renderRemote());
  remote.addEventListener("level", () => renderRemoteLevel());
  return remote;
}

async function joinRemote() {
  if (!meeting) return;
  const session = remoteFor(meeting.id);
  await session.join({ video: document.getElementById("remote-video")?.checked });
  if (session.state === "error") toast(remoteErrorText(session.errorCode), "error");
}

/** My live session as the meeting state knows it (muted by the chair, asked to unmute). */
function myMedia() {
  const media = participant(meeting?.state, me.id)?.media;
  return media && remote?.sessionId && media.session_id === remote.sessionId ? media : null;
}

/** Mute or unmute my microphone; a microphone the chair muted is unmuted on the server
 *  first (allowed once the chair asked). */
async function toggleMute() {
  if (!remote) return;
  const media = myMedia();
  if (remote.muted && media?.muted) {
    try {
      await api(`meetings/${meeting.id}/media/${encodeURIComponent(media.session_id)}/mute`, { method: "POST", body: { muted: false } });
    } catch (err) {
      showError(err);
      return;
    }
  }
  remote.setMuted(!remote.muted);
}

/** The chair muted me, or asks me to unmute: follow it and say so. */
function followChair(event) {
  const d = event.data || {};
  if (d.user_id !== me.id || !remote?.sessionId || d.session_id !== remote.sessionId) return;
  if (event.type === "media.muted" && d.muted && d.by !== me.id) {
    remote.setMuted(true);
    announce(t("remote_muted_by_chair"), { assertive: true });
  }
  if (event.type === "media.unmute_requested") {
    announce(t("remote_unmute_asked"), { assertive: true });
    toast(t("remote_unmute_asked"));
  }
}

async function leaveRemote() {
  await remote?.leave();
  document.getElementById("remote-join")?.focus();
}

function remoteErrorText(code) {
  return REMOTE_ERRORS.includes(code) ? t(`remote_error_${code}`) : t("remote_error_other", { code });
}

function renderRemoteLevel() {
  const meter = document.getElementById("remote-level");
  if (!meter || !remote) return;
  const percent = Math.round(Math.min(1, remote.level * 4) * 100);
  meter.setAttribute("aria-valuenow", String(percent));
  meter.dataset.packets = String(remote.packets);
  meter.dataset.level = String(remote.level);
  meter.firstChild.style.width = `${percent}%`;
}

/** Floor holder text: the delegate given the floor, else the chair. */
function floorText(state) {
  const current = state?.speakers?.current;
  if (current) return t("speaking_now", { name: current.display_name });
  const chair = (state?.participants || []).find((p) => p.role === "chair");
  return chair ? t("remote_floor_chair", { name: chair.display_name }) : t("no_speaker");
}

function renderRemote() {
  const panel = document.getElementById("remote");
  if (!panel) return;
  const session = remote?.meetingId === meeting?.id ? remote : null;
  const state = session?.state || "idle";
  const active = !!session?.active;
  const hadFocus = panel.contains(document.activeElement) ? document.activeElement.id : null;
  panel.dataset.state = state;
  const status = document.getElementById("remote-status");
  status.dataset.state = state;
  status.textContent = state === "error" ? t(session?.errorCode === "replaced" ? "remote_elsewhere" : "remote_error")
    : session?.muted && state === "listening" ? `${t("remote_listening")} · ${t("remote_muted")}` : t(`remote_${state}`);
  const floor = document.getElementById("remote-floor");
  floor.textContent = state === "listening" ? floorText(meeting?.state) : "";
  document.getElementById("remote-level").classList.toggle("hidden", state !== "listening");
  document.getElementById("remote-video-label").classList.toggle("hidden", active);
  const join = document.getElementById("remote-join");
  join.classList.toggle("hidden", active);
  join.disabled = meeting?.state?.state === "closed";
  const mute = document.getElementById("remote-mute");
  mute.classList.toggle("hidden", !active);
  mute.disabled = state !== "listening";
  mute.setAttribute("aria-pressed", session?.muted ? "true" : "false");
  mute.textContent = session?.muted ? t("remote_unmute") : t("remote_mute");
  // The chair's word on my microphone, and the sign that I am heard live.
  const media = session && active ? myMedia() : null;
  const chairBox = document.getElementById("remote-chair");
  const chairText = media?.unmute_requested ? t("remote_unmute_asked") : media?.muted && media.muted_by !== me.id ? t("remote_muted_by_chair") : "";
  chairBox.textContent = chairText;
  chairBox.classList.toggle("hidden", !chairText);
  const current = meeting?.state?.speakers?.current;
  const live = state === "listening" && current?.user_id === me.id && !current.paused && !session?.muted;
  document.getElementById("remote-live").classList.toggle("hidden", !live);
  document.getElementById("remote-leave").classList.toggle("hidden", !active);
  const error = document.getElementById("remote-error");
  error.classList.toggle("hidden", state !== "error");
  error.textContent = state === "error" ? remoteErrorText(session.errorCode) : "";
  // The button that had the focus may be hidden now: keep the focus in the panel.
  if (hadFocus && document.getElementById(hadFocus)?.classList.contains("hidden")) {
    (active ? (mute.disabled ? document.getElementById("remote-leave") : mute) : join).focus();
  }
  renderRemoteLevel();
}

// --- polls at the front ----------------------------------------------------------------------------
function choicesOf(poll) {
  if (poll.kind === "yes_no_abstain") {
    return [["yes", t("choice_yes"), "vote-yes"], ["no", t("choice_no"), "vote-no"], ["abstain", t("choice_abstain"), "vote-abstain"]];
  }
  return (poll.options || []).map((o) => [o, o, "btn-primary"]);
}

function choiceLabel(poll, choice) {
  const all = Object.fromEntries(choicesOf(poll).map(([v, label]) => [v, label]));
  return Array.isArray(choice) ? choice.map((c) => all[c] || c).join(", ") : all[choice] || choice;
}

const pollUi = { pollId: null, pending: null, selected: [] };

/** While a poll is at the front, the page behind it takes no focus or clicks. */
function setBehindInert(inert) {
  for (const el of document.querySelectorAll("#meeting-bar, .meeting-layout, #app-header")) el.inert = inert;
}

/** What the tablet says of a ballot whose answer is pending, lost or refused. */
function ballotStatus(entry) {
  if (!entry) return null;
  if (entry.status === "sending") return h("p", { class: "ballot-status", id: "ballot-status", role: "status", dataset: { status: "sending" } }, t("ballot_sending"));
  if (entry.status === "unknown") return h("p", { class: "ballot-status ballot-unknown", id: "ballot-status", role: "alert", dataset: { status: "unknown" } }, t("ballot_unknown"));
  if (entry.status === "refused") {
    const key = ["poll_closed", "not_checked_in"].includes(entry.code) ? `ballot_refused_${entry.code}` : "ballot_refused";
    return h("p", { class: "ballot-status ballot-refused", id: "ballot-status", role: "alert", dataset: { status: "refused", code: entry.code } }, t(key, { code: entry.code }));
  }
  return null;
}

function renderPolls(state) {
  const layer = document.getElementById("poll-layer");
  const mine = participant(state, me.id);
  const voter = mine && ["delegate", "chair"].includes(mine.role);
  const open = state.polls.find((p) => p.state === "open" && voter);
  if (open) seenOpen.add(open.id);
  // A closed poll's result comes to the front for a voter who saw it open or voted in it,
  // until they close the result itself (closing the receipt card earlier does not count).
  const closed = [...state.polls].reverse().find((p) => p.state === "closed" && p.result && !dismissedResults.has(p.id)
    && (book.get(p.id) || seenOpen.has(p.id)));
  const poll = open || closed;
  if (!poll) {
    fill(layer);
    setBehindInert(false);
    return;
  }
  if (pollUi.pollId !== poll.id) Object.assign(pollUi, { pollId: poll.id, pending: null, selected: [] });
  if (poll.state === "open" && !navigator.onLine) {
    // Voting is never offline: a ballot needs the server's receipt there and then.
    fill(layer, h("div", { class: "poll-overlay" },
      h("div", { class: "poll-card", role: "dialog", "aria-modal": "true", "aria-labelledby": "poll-title", dataset: { poll: poll.id, state: "offline" } },
        h("h2", { id: "poll-title" }, t("poll_open", { title: poll.title })),
        h("p", { class: "verdict", id: "vote-offline" }, t("vote_offline")))));
    setBehindInert(true);
    return;
  }
  const mineBallot = book.get(poll.id);
  const figures = { cast: poll.cast ?? 0, present: state.quorum?.present ?? 0, members: state.quorum?.members ?? 0 };
  const sending = ["sending", "unknown"].includes(mineBallot?.status);
  let body;
  // Which step the card is at: a redraw at the same step keeps the keyboard's place.
  let step;
  if (poll.state === "closed") {
    step = "result";
    body = h("div", {}, resultBlock(poll, poll.result, { id: "poll-result" }),
      mineBallot?.receipt ? h("p", { class: "small" }, t("vote_done"), " ", h("span", { class: "receipt" }, mineBallot.receipt)) : null,
      ["unknown", "refused"].includes(mineBallot?.status) ? ballotStatus(mineBallot) : null);
  } else if (mineBallot?.status === "already" && !mineBallot.receipt) {
    step = "already";
    body = h("p", { class: "verdict passed", id: "already-voted" }, "✓ ", t("already_voted"));
  } else if (mineBallot?.receipt) {
    step = "receipt";
    body = h("div", {},
      h("p", { class: "verdict passed" }, "✓ ", t("vote_done")),
      h("p", { class: "receipt", id: "receipt", tabindex: "-1" }, mineBallot.receipt),
      mineBallot.choice !== undefined ? h("p", {}, choiceLabel(poll, mineBallot.choice)) : null,
      h("p", { class: "muted", id: "poll-progress" }, progressLine(poll, figures)));
  } else if (sending) {
    step = "sending";
    body = h("div", {}, ballotStatus(mineBallot),
      mineBallot.choice !== undefined ? h("p", {}, choiceLabel(poll, mineBallot.choice)) : null);
  } else if (poll.state === "open" && !mine.present) {
    step = "check_in";
    body = h("div", { id: "need-check-in" },
      h("p", { class: "verdict" }, t("check_in_first")),
      state.state === "in_session" ? h("button", { type: "button", class: "btn btn-ok", onclick: checkIn }, t("check_in")) : null);
  } else if (pollUi.pending !== null) {
    step = "confirm";
    body = h("div", {},
      h("p", { class: "verdict", id: "confirm-text", tabindex: "-1" }, t("confirm_vote", { choice: choiceLabel(poll, pollUi.pending) })),
      h("div", { class: "vote-buttons" },
        h("button", { type: "button", class: "btn", id: "vote-back", onclick: () => { pollUi.pending = null; renderPolls(meeting.state); } }, t("change_choice")),
        h("button", { type: "button", class: "btn btn-ok", id: "vote-confirm", onclick: () => castBallot(poll) }, t("confirm"))));
  } else if (poll.kind === "choice" && (poll.max_choices || 1) > 1) {
    step = "select";
    body = h("div", {}, ballotStatus(mineBallot),
      h("div", { class: "vote-buttons", role: "group" }, choicesOf(poll).map(([value, label]) =>
        h("button", { type: "button", class: "btn", "aria-pressed": pollUi.selected.includes(value) ? "true" : "false",
          onclick: () => {
            const s = pollUi.selected;
            if (s.includes(value)) s.splice(s.indexOf(value), 1);
            else if (s.length < poll.max_choices) s.push(value);
            renderPolls(meeting.state);
          } }, label))),
      h("button", { type: "button", class: "btn btn-primary", disabled: !pollUi.selected.length, onclick: () => { pollUi.pending = [...pollUi.selected]; renderPolls(meeting.state); } }, t("confirm")));
  } else {
    step = "choose";
    body = h("div", {}, ballotStatus(mineBallot),
      h("div", { class: "vote-buttons", role: "group", "aria-label": poll.title }, choicesOf(poll).map(([value, label, cls]) =>
        h("button", { type: "button", class: `btn ${cls}`, dataset: { choice: value },
          onclick: () => { pollUi.pending = poll.kind === "choice" ? [value] : value; renderPolls(meeting.state); } }, label))));
  }
  const done = mineBallot?.receipt || mineBallot?.status === "already";
  const closeButton = poll.state === "closed" || done
    ? h("button", { type: "button", class: "btn", id: "poll-dismiss", onclick: () => {
      if (poll.state === "open") dismissedReceipts.add(poll.id);
      else dismissedResults.add(poll.id);
      fill(layer);
      setBehindInert(false);
    } }, t("close"))
    : null;
  if (poll.state === "open" && dismissedReceipts.has(poll.id) && done) {
    fill(layer);
    setBehindInert(false);
    return;
  }
  const heading = h("h2", { id: "poll-title" }, poll.state === "open" ? t("poll_open", { title: poll.title }) : `${t("vote_closed")}: ${poll.title}`);
  const card = h("div", { class: "poll-card", role: "dialog", "aria-modal": "true", "aria-labelledby": "poll-title", "aria-describedby": "poll-secrecy", dataset: { poll: poll.id, state: poll.state } },
    heading,
    h("p", { class: "poll-meta" }, secrecyTag(poll, { id: "poll-secrecy" }), " ", h("span", { class: "small" }, t(`rule_${poll.rule}`))),
    body, closeButton ? h("div", { class: "row end" }, closeButton) : null);
  card.dataset.step = step;
  const had = layer.querySelector(`.poll-card[data-poll="${poll.id}"][data-state="${poll.state}"]`);
  // Others' ballots redraw the card while a delegate moves through it with the keyboard:
  // at the same step, the focus stays on the same control.
  const focusables = (el) => [...el.querySelectorAll("button, [tabindex]")];
  const place = had?.dataset.step === step ? focusables(had).indexOf(document.activeElement) : -1;
  fill(layer, h("div", { class: "poll-overlay" }, card));
  setBehindInert(true);
  if (!had) {
    announce(`${heading.textContent}. ${t(poll.secret ? "poll_secret_label" : "poll_named_label")}`, { assertive: true });
    card.querySelector("button")?.focus();
  } else if (place >= 0 && focusables(card)[place]) {
    focusables(card)[place].focus({ preventScroll: true });
  } else {
    // The question of the confirmation step is read first (a second Enter confirms nothing).
    (card.querySelector("#confirm-text") || card.querySelector("#receipt, #poll-dismiss") || card.querySelector("button"))
      ?.focus({ preventScroll: true });
  }
}

// Wakes a ballot's retries at once when the socket is back.
const ballotWake = new EventTarget();
realtime.addEventListener("status", (e) => {
  if (e.detail === "online") ballotWake.dispatchEvent(new Event("wake"));
});

async function castBallot(poll) {
  const choice = pollUi.pending;
  pollUi.pending = null;
  const entry = await sendBallot(book, poll, choice, {
    wake: ballotWake,
    onChange: (step) => {
      if (step.status === "unknown") announce(t("ballot_unknown"), { assertive: true });
      if (meeting) renderPolls(meeting.state);
    },
  });
  if (entry.status === "counted") announce(`${t("vote_done")} ${entry.receipt}`, { assertive: true });
  if (meeting) renderPolls(meeting.state);
}

// --- wiring --------------------------------------------------------------------------------------------
function renderMeeting(state, event) {
  document.getElementById("meeting-title").textContent = state.title;
  // Opening the meeting, the presented page is asked for before the rest is drawn.
  if (!event && follow) showPresentation();
  if (navigator.onLine) {
    rememberState(state.id ?? meeting.id, state);
    document.getElementById("offline-state").classList.add("hidden");
  } else {
    markOffline();
  }
  if (!event || event.type === "agenda.changed") preload(state.id ?? meeting.id, state);
  const stateTag = document.getElementById("meeting-state");
  stateTag.textContent = t(`state_${state.state}`);
  stateTag.dataset.state = state.state;
  const type = event?.type || "";
  if (!event || type.startsWith("agenda") || type === "presentation.changed") renderAgenda(state);
  renderQuorum(state);
  renderCheckIn(state);
  document.getElementById("present-this").classList.toggle("hidden", state.presenter_id !== me.id);
  const people = type === "attendance.changed" || type === "participants.changed";
  if (!event || type.startsWith("speaker") || type === "meeting.state_changed" || people) renderFloor(state);
  if (!event || type.startsWith("poll") || people) renderPolls(state);
  if (type === "presentation.changed" && follow) showPresentation();
  if (type === "presentation.changed") renderFollowHint();
  if (!event && !openDoc && !state.presentation) {
    const first = [...agendaItems(state.agenda)].flatMap((i) => i.documents || [])[0];
    if (first) openDocument(first.id, 1);
  }
  if (type === "annotation.shared" && event.data.annotation?.user_id !== me.id) viewer.addShared(event.data.annotation);
  if (type === "annotation.removed") viewer.removeShared(event.data.annotation_id);
  if (type === "speaker.granted" && event.data.user_id === me.id) toast(t("speaking_now", { name: me.display_name }));
  if (type === "poll.closed") announce(t("vote_closed"));
  if (type === "media.left" && remote?.sessionId && event.data.session_id === remote.sessionId) {
    const reason = event.data.reason;
    // Dropped by the server (silence, ICE, a restarted node): make a new session by itself.
    if (REJOIN_REASONS.has(reason)) remote.reconnect();
    // The same delegate joined on another device: this one stops (rejoining would take
    // the session back, and the other device would take it again, in turn, forever).
    else if (reason !== "left") remote.drop(["meeting_closed", "removed", "replaced"].includes(reason) ? reason : "connection_failed");
  }
  if (type === "media.muted" || type === "media.unmute_requested") followChair(event);
  renderRemote();
  if (type === "speaker.warning") announce(t("thirty_seconds"), { assertive: event.data.user_id === me.id });
  if (type === "speaker.time_up") toast(t("time_up"), event.data.user_id === me.id ? "urgent" : "info");
}

async function openMeeting(id) {
  renderMeetingShell(id);
  follow = true;
  openDoc = null;
  meeting = new MeetingSession(id, { realtime, onChange: renderMeeting, onEvent: (e) => e.topic !== `meeting:${id}` && onOtherEvent(e) });
  try {
    await meeting.start();
  } catch (err) {
    if (err.status !== 0 || !showLastKnown(id)) showError(err);
  }
}

/** Offline: the meeting as last seen, marked with the time it was seen. */
function showLastKnown(id) {
  const known = lastKnownState(id);
  if (!known || !meeting || meeting.id !== id) return false;
  meeting.state = known.state;
  renderMeeting(known.state, { type: "offline" });
  renderAgenda(known.state);
  renderFloor(known.state);
  renderPolls(known.state);
  if (follow) showPresentation();
  if (!openDoc) {
    const first = [...agendaItems(known.state.agenda)].flatMap((i) => i.documents || [])[0];
    if (first) openDocument(first.id, 1);
  }
  markOffline();
  return true;
}

function markOffline() {
  const tag = document.getElementById("offline-state");
  if (!tag || !meeting) return;
  const known = lastKnownState(meeting.id);
  tag.textContent = t("offline_state", { time: known ? formatTime(known.at, false) : "—" });
  tag.classList.remove("hidden");
}

// The download in progress, whichever page shows: { id, title, done, total }.
let preloading = null;
function preload(id, state) {
  if (!id || !navigator.onLine) return;
  const mine = { id, title: state.title, done: 0, total: 0 };
  preloading = mine;
  firstPageShown.then(() => preloading === mine && preloadMeeting(state, (done, total) => {
    if (preloading !== mine) return;
    Object.assign(mine, { done, total });
    renderPreloadStatus();
  })).catch(() => {});
}

/** The progress line: in the meeting it downloads for, or on the list of meetings. */
function renderPreloadStatus() {
  const line = document.getElementById("preload-status");
  const p = preloading;
  if (!line || !p || (meeting && meeting.id !== p.id)) return;
  const progress = p.total ? t("preload_progress", { done: p.done, total: p.total }) : "";
  line.textContent = meeting || !progress ? progress : `${p.title}: ${progress}`;
  Object.assign(line.dataset, { meeting: String(p.id), done: String(p.done), total: String(p.total) });
}

/**
 * The secretary published the agenda (or changed it since, or asked again): download the
 * meeting's documents now, whatever this tablet shows. The open meeting already follows
 * its own agenda changes.
 */
async function preloadAhead(id, reason) {
  if (meeting?.id === id) {
    if (reason !== "agenda_changed" && meeting.state) preload(id, meeting.state);
    return;
  }
  try {
    const state = await api(`meetings/${id}`);
    if (meeting?.id !== id) preload(id, state);
  } catch {
    /* not readable now (offline, removed): the meeting downloads when it is opened */
  }
}

window.addEventListener("offline", () => {
  markOffline();
  if (meeting?.state) renderPolls(meeting.state);
});
window.addEventListener("online", async () => {
  // The ballot screen can vote again at once; then what was written offline is sent (each
  // once: it carries its client id), then the live session comes again from the server.
  if (meeting?.state) renderPolls(meeting.state);
  await flushAnnotations().catch(() => []);
  document.getElementById("offline-state")?.classList.add("hidden");
  if (meeting) {
    await meeting.reload().catch(() => {});
    if (openDoc) viewer.loadAnnotations();
  }
});

function route() {
  const match = location.hash.match(/^#meeting\/(\d+)/);
  // Leaving the meeting's screen ends its remote attendance.
  if (remote?.active && (!match || Number(match[1]) !== remote.meetingId)) remote.leave();
  if (meeting) realtime.unfollow(meeting.topic);
  meeting = null;
  firstPageShown = Promise.resolve();
  clearInterval(timerHandle);
  if (match) {
    openMeeting(Number(match[1]));
    renderRemote();
  }
  else renderList().catch(showError);
}

window.addEventListener("hashchange", route);
window.addEventListener("langchange", () => {
  startPage("app_delegate");
  showConnection(realtime.status);
  route();
});
realtime.whenReady().then(loadDirectives);
route();
startOfflineWorker();
if (navigator.onLine) flushAnnotations().catch(() => {});
