// The chair's control panel: lifecycle, agenda (edit, reorder, documents, current item),
// presentation with thumbnails, attendance and quorum, speakers with the timer, polls with
// the live count and who has not voted, minutes.

import { api, download, uploadFile } from "./api.js";
import { formatTime, t } from "./i18n.js";
import { clockText, connectRealtime, dialog, fill, h, showConnection, showError, startPage, toast } from "./shell.js";
import { MeetingSession, findItem, myMeetings, pageImage, participant, secondsLeft } from "./meeting-state.js";
import { BallotBook, sendBallot } from "./ballot.js";
import { choiceText, progressLine, resultBlock, secrecyTag } from "./poll-view.js";

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

// --- the panel -------------------------------------------------------------------------------------
function renderShell(id) {
  fill(document.getElementById("main"),
    h("div", { class: "row", style: "margin-bottom: .8rem" },
      h("a", { href: "#", class: "btn btn-small" }, "← ", t("meetings")),
      h("h2", { id: "meeting-title", class: "grow", style: "margin: 0" }),
      h("span", { id: "meeting-state", class: "tag" }),
      h("div", { class: "row", id: "lifecycle" }),
      h("a", { class: "btn", href: `/app/projector/#meeting/${id}`, target: "_blank", rel: "noopener" }, t("app_projector")),
      h("button", { type: "button", class: "btn", id: "minutes", onclick: () => download(`/api/v1/meetings/${id}/minutes.pdf`, `bien-ban-${id}.pdf`).catch(showError) }, t("minutes"))),
    h("div", { class: "chair-grid" },
      h("section", { class: "panel", "aria-labelledby": "agenda-h" }, h("h3", { id: "agenda-h" }, t("agenda")), h("div", { id: "agenda" }),
        h("form", { class: "row", id: "add-item", onsubmit: addItem },
          h("label", { for: "new-item", class: "visually-hidden" }, t("item_title")),
          h("input", { id: "new-item", name: "title", type: "text", required: true, placeholder: t("item_title"), style: "flex: 1 1 12rem; width: auto" }),
          h("button", { type: "submit", class: "btn btn-primary" }, t("add_item")))),
      h("section", { class: "panel", "aria-labelledby": "present-h" }, h("h3", { id: "present-h" }, t("present_page")), h("div", { id: "presentation" }), h("div", { id: "presenter", class: "field" })),
      h("section", { class: "panel", "aria-labelledby": "att-h" }, h("h3", { id: "att-h" }, t("attendance")), h("div", { id: "quorum", class: "quorum-gauge" }), h("ul", { class: "attendance-list", id: "attendance" })),
      h("section", { class: "panel", "aria-labelledby": "sp-h" }, h("h3", { id: "sp-h" }, t("speakers")), h("div", { id: "speakers" })),
      h("section", { class: "panel", "aria-labelledby": "poll-h", style: "grid-column: 1 / -1" }, h("h3", { id: "poll-h" }, t("polls")), h("div", { id: "polls" }), pollForm())));
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
    h("button", { type: "button", class: `btn ${cls}`, id: `meeting-${action}`, style: action === "close" ? "margin-left: 1.5rem" : null,
      onclick: () => lifecycleAct(action) }, t(label))));
}

// --- agenda --------------------------------------------------------------------------------------
function renderAgenda(state) {
  const current = state.current_agenda_item_id;
  const list = (items, parentId) => h("ol", { class: "agenda" }, items.map((item, index) =>
    h("li", { class: item.id === current ? "current" : "", dataset: { item: item.id } },
      h("div", { class: "row" },
        h("span", { class: "grow" }, item.title),
        h("button", { type: "button", class: "btn btn-small", "aria-label": `${t("move_up")}: ${item.title}`, disabled: index === 0, onclick: () => reorder(items, parentId, index, -1) }, "↑"),
        h("button", { type: "button", class: "btn btn-small", "aria-label": `${t("move_down")}: ${item.title}`, disabled: index === items.length - 1, onclick: () => reorder(items, parentId, index, 1) }, "↓"),
        h("button", { type: "button", class: "btn btn-small", "aria-label": `${t("edit")}: ${item.title}`, onclick: () => editItem(item) }, "✎"),
        h("button", { type: "button", class: "btn btn-small", "aria-label": `${t("delete")}: ${item.title}`, onclick: () => removeItem(item) }, "✕"),
        item.id === current ? null : h("button", { type: "button", class: "btn btn-small", dataset: { action: "current" }, onclick: () => act(`meetings/${meeting.id}/agenda/current`, { agenda_item_id: item.id }) }, t("set_current")),
        h("label", { class: "btn btn-small" }, h("span", { "aria-hidden": "true" }, "+ PDF"), h("span", { class: "visually-hidden" }, `${t("attach_document")}: ${item.title}`),
          h("input", { type: "file", accept: "application/pdf", class: "visually-hidden", onchange: (e) => attach(item, e.target) }))),
      (item.documents || []).length ? h("div", { class: "row" }, item.documents.map((doc) =>
        h("button", { type: "button", class: "btn btn-small", dataset: { doc: doc.id }, "aria-pressed": selection.documentId === doc.id ? "true" : "false",
          onclick: () => selectDocument(item.id, doc.id, 1) }, "▤ ", doc.title || doc.name, ` (${doc.pages || "?"})`))) : null,
      item.children?.length ? list(item.children, item.id) : null)));
  fill(document.getElementById("agenda"), list(state.agenda || [], null));
}

async function addItem(event) {
  event.preventDefault();
  const form = event.target;
  if (await act(`meetings/${meeting.id}/agenda`, { title: form.title.value.trim() })) form.reset();
}

async function editItem(item) {
  const values = await dialog(t("edit"), h("div", {}, h("label", { for: "edit-title" }, t("item_title")),
    h("input", { id: "edit-title", name: "title", type: "text", value: item.title, required: true })));
  if (values?.title?.trim()) await act(`meetings/${meeting.id}/agenda/${item.id}`, { title: values.title.trim() }, "PATCH");
}

async function removeItem(item) {
  const sure = await dialog(`${t("delete")}: ${item.title}?`, h("p", {}, item.title), { okText: t("delete") });
  if (sure) await act(`meetings/${meeting.id}/agenda/${item.id}`, {}, "DELETE");
}

async function reorder(items, parentId, index, delta) {
  const ids = items.map((i) => i.id);
  const [moved] = ids.splice(index, 1);
  ids.splice(index + delta, 0, moved);
  await act(`meetings/${meeting.id}/agenda/reorder`, { parent_id: parentId, item_ids: ids });
}

async function attach(item, input) {
  const file = input.files?.[0];
  if (!file) return;
  try {
    const uploaded = await uploadFile(file);
    await api(`meetings/${meeting.id}/agenda/${item.id}`, { method: "PATCH", body: { document_ids: [...(item.document_ids || []), uploaded.id] } });
  } catch (err) {
    showError(err);
  }
}

// --- presentation ----------------------------------------------------------------------------------
function selectDocument(itemId, documentId, page) {
  Object.assign(selection, { itemId, documentId, page });
  renderAgenda(meeting.state);
  renderPresentation(meeting.state);
}

/** The chair may let someone else drive the presentation. */
function renderPresenter(state) {
  const box = document.getElementById("presenter");
  if (!box) return;
  const people = (state.participants || []).filter((p) => p.role !== "chair");
  fill(box, h("label", { for: "presenter-select" }, t("presenter")),
    h("select", { id: "presenter-select", onchange: (e) => act(`meetings/${meeting.id}/presenter`, { user_id: e.target.value ? Number(e.target.value) : null }) },
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
  const present = (page) => {
    selection.page = page;
    act(`meetings/${meeting.id}/presentation`, { agenda_item_id: item.id, document_id: doc.id, page });
  };
  const preview = h("img", { alt: t("page_of", { page: selection.page, pages }), style: "width: 100%; max-height: 40vh; object-fit: contain; background: #fff; border: 1px solid var(--line)" });
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
    h("p", { class: "small" }, h("strong", {}, doc.title || doc.name), " — ", t("page_of", { page: selection.page, pages }),
      live ? h("span", { class: "tag", style: "margin-left: .5rem; color: var(--ok)", id: "live-page" }, `▶ ${live}`) : null),
    preview,
    h("div", { class: "row" },
      h("button", { type: "button", class: "btn", "aria-label": t("prev_page"), disabled: selection.page <= 1, onclick: () => present(selection.page - 1) }, "◀ ", t("prev_page")),
      h("button", { type: "button", class: "btn btn-primary", id: "present", onclick: () => present(selection.page) }, t("present_page"), ` ${selection.page}`),
      h("button", { type: "button", class: "btn", "aria-label": t("next_page"), disabled: selection.page >= pages, onclick: () => present(selection.page + 1) }, t("next_page"), " ▶")),
    thumbs);
}

// --- attendance ---------------------------------------------------------------------------------------
function renderAttendance(state) {
  const q = state.quorum || {};
  const gauge = document.getElementById("quorum");
  gauge.classList.toggle("reached", !!q.reached);
  fill(gauge,
    h("strong", { id: "quorum-text" }, t("quorum", { present: q.present ?? 0, required: q.required ?? 0 }), " — ", q.reached ? t("quorum_reached") : t("quorum_not_reached")),
    h("div", { class: "progress", role: "progressbar", "aria-label": t("attendance"), "aria-valuemin": 0, "aria-valuemax": q.members || 0, "aria-valuenow": q.present || 0 },
      h("span", { style: `width: ${q.members ? (100 * q.present) / q.members : 0}%` })));
  fill(document.getElementById("attendance"), (state.participants || []).filter((p) => p.role !== "secretary").map((p) =>
    h("li", { dataset: { user: p.user_id, present: p.present ? "1" : "0" } },
      h("span", { class: `presence-dot ${p.present ? "presence-online" : ""}`, "aria-hidden": "true" }),
      h("span", { class: "grow" }, p.display_name, p.role === "guest" ? ` (${t("guest")})` : "",
        p.checked_in_at ? h("span", { class: "small muted" }, ` ${formatTime(p.checked_in_at, false)}`) : null,
        !p.present && p.absent_reason ? h("span", { class: "small muted" }, ` — ${p.absent_reason}`) : null),
      p.present ? null : h("button", { type: "button", class: "btn btn-small btn-ok", dataset: { action: "present" }, "aria-label": `${t("present")}: ${p.display_name}`,
        onclick: () => act(`meetings/${meeting.id}/attendance`, { present: true, user_id: p.user_id }) }, t("present")),
      h("button", { type: "button", class: "btn btn-small", dataset: { action: "absent" }, "aria-label": `${t("absent")}: ${p.display_name}`, onclick: () => markAbsent(p) }, t("absent")))));
}

async function markAbsent(p) {
  const values = await dialog(`${t("absent")}: ${p.display_name}`, h("div", {},
    h("label", { for: "absent-reason" }, t("absent_reason")), h("input", { id: "absent-reason", name: "reason", type: "text" })));
  if (values) await act(`meetings/${meeting.id}/attendance`, { present: false, user_id: p.user_id, reason: values.reason || "" });
}

// --- speakers ---------------------------------------------------------------------------------------------
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
    h("div", { id: "current-speaker" }, current ? t("speaking_now", { name: current.display_name }) : t("no_speaker")),
    current ? h("div", { class: "row" }, h("span", { class: "timer", id: "speaker-timer", role: "timer" }),
      h("button", { type: "button", class: "btn btn-danger", id: "finish-speaker", onclick: () => act(`meetings/${meeting.id}/speakers/${current.id}/finish`) }, t("finish"))) : null,
    h("ol", { class: "attendance-list", id: "speaker-queue" }, sp.queue.map((s, index) => h("li", { dataset: { speaker: s.id, user: s.user_id } },
      h("span", { class: "grow" }, `${s.display_name} `, h("span", { class: `tag ${s.kind === "point_of_order" ? "urg-express" : ""}` }, t(`kind_${s.kind}`))),
      h("button", { type: "button", class: "btn btn-small", "aria-label": `${t("move_up")}: ${s.display_name}`, disabled: index === 0, onclick: () => move(index, -1) }, "↑"),
      h("button", { type: "button", class: "btn btn-small", "aria-label": `${t("move_down")}: ${s.display_name}`, disabled: index === ids.length - 1, onclick: () => move(index, 1) }, "↓"),
      h("button", { type: "button", class: "btn btn-small btn-ok", dataset: { action: "grant" }, disabled: !!current, onclick: () => act(`meetings/${meeting.id}/speakers/${s.id}/grant`) }, t("grant")),
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
  const polls = [...(state.polls || [])].reverse();
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
  document.getElementById("meeting-title").textContent = state.title;
  const tag = document.getElementById("meeting-state");
  tag.textContent = t(`state_${state.state}`);
  tag.dataset.state = state.state;
  const type = event?.type || "";
  renderLifecycle(state);
  if (!event || type.startsWith("agenda")) renderAgenda(state);
  if (!event || type.startsWith("agenda") || type === "presentation.changed") renderPresentation(state);
  const people = type === "attendance.changed" || type === "participants.changed";
  if (!event || type === "presenter.changed" || type === "participants.changed") renderPresenter(state);
  if (!event || people) renderAttendance(state);
  if (!event || type.startsWith("speaker")) renderSpeakers(state);
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
