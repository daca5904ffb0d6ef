// Meeting preparation for secretaries and chairs: create a meeting, choose its participants
// by unit, role or name, build the agenda (nested items, planned durations, PDF documents
// with upload progress, reorder by buttons or drag), prepare polls the chair opens with one
// click, publish the agenda to the participants, and copy a meeting as a template.
// /app/prepare/#meeting/<id> opens one meeting.

import { api, listOf, session } from "./api.js";
import "./admin-i18n.js";
import { formatTime, t } from "./i18n.js";
import { dialog, fill, h, showError, startPage, toast } from "./shell.js";

const ORGANISERS = ["admin", "standing", "chair", "secretary"];
const PROLES = ["chair", "secretary", "delegate", "guest"];
const QUORUMS = ["two_thirds_of_members", "majority_of_members"];
const KINDS = ["yes_no_abstain", "choice"];
const RULES = ["majority_of_members", "two_thirds_of_members", "majority_of_cast"];

const state = { meetings: [], units: [], meeting: null, draft: new Map(), found: [] };
const view = () => document.getElementById("view");

function field(labelText, control, hint) {
  return h("div", { class: "field" }, h("label", { for: control.id }, labelText), control,
    hint ? h("p", { class: "muted small" }, hint) : null);
}

function options(values, prefix, chosen) {
  return values.map((v) => h("option", { value: v, selected: v === chosen }, t(`${prefix}${v}`)));
}

function localInput(iso) {
  // <input type=datetime-local> wants local "YYYY-MM-DDTHH:MM".
  const date = iso ? new Date(iso) : new Date(Date.now() + 86_400_000);
  const two = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${two(date.getMonth() + 1)}-${two(date.getDate())}T${two(date.getHours())}:${two(date.getMinutes())}`;
}

function unitOptions() {
  const children = new Map();
  for (const unit of state.units) {
    const list = children.get(unit.parent_id ?? null) || [];
    list.push(unit);
    children.set(unit.parent_id ?? null, list);
  }
  const out = [];
  const walk = (parent, depth) => {
    for (const unit of children.get(parent) || []) {
      out.push(h("option", { value: unit.id }, `${"\u00a0\u00a0".repeat(depth)}${unit.name}`));
      walk(unit.id, depth + 1);
    }
  };
  walk(null, 0);
  return out;
}

// --- the list of meetings ---------------------------------------------------------------

async function loadMeetings() {
  state.meetings = listOf(await api("meetings"), "meetings");
  const current = state.meeting?.id;
  fill(document.getElementById("meetings"),
    h("h2", {}, t("prepare_my_meetings")),
    h("button", { type: "button", class: "btn btn-primary", id: "new-meeting", onclick: () => { location.hash = "new"; } }, t("prepare_new")),
    state.meetings.length
      ? h("ul", { class: "meeting-list", id: "meeting-list" }, state.meetings.map((m) => h("li", {},
        h("a", { href: `#meeting/${m.id}`, "aria-current": m.id === current ? "true" : "false" },
          m.title, h("br"), h("span", { class: "muted small" }, formatTime(m.starts_at), " · ", t(`state_${m.state}`))))))
      : h("p", { class: "muted" }, t("prepare_none")));
}

// --- choosing participants ----------------------------------------------------------------

/** The search part shared by a new meeting and an existing one; `add(users, role)` adds. */
function chooser(add) {
  const q = h("input", { type: "search", id: "p-q", placeholder: t("participants_search"), "aria-label": t("participants_search") });
  const role = h("select", { id: "p-role", "aria-label": t("col_roles") },
    h("option", { value: "" }, t("admin_all_roles")),
    ["delegate", "chair", "secretary", "standing", "staff"].map((r) => h("option", { value: r }, t(`role_${r}`))));
  const unit = h("select", { id: "p-unit", "aria-label": t("col_unit") }, h("option", { value: "" }, t("admin_all_units")), unitOptions());
  const as = h("select", { id: "p-as", "aria-label": t("participants_add_as") }, options(PROLES, "prole_", "delegate"));
  const count = h("span", { class: "muted", id: "p-count", role: "status" });
  const results = h("ul", { class: "people", id: "p-results" });
  const addAll = h("button", { type: "button", class: "btn", id: "p-add-all", disabled: true,
    onclick: () => add(state.found, as.value) }, t("participants_add_all", { count: 0 }));
  const find = async (event) => {
    event?.preventDefault();
    const params = new URLSearchParams();
    if (q.value.trim()) params.set("q", q.value.trim());
    if (role.value) params.set("role", role.value);
    if (unit.value) params.set("unit_id", unit.value);
    const answer = await api(`meeting-candidates?${params}`);
    state.found = answer.users;
    count.textContent = t("participants_found", { count: answer.total });
    addAll.textContent = t("participants_add_all", { count: answer.users.length });
    addAll.disabled = !answer.users.length;
    fill(results, answer.users.map((user) => h("li", { dataset: { userId: user.id } },
      h("span", { class: "grow" }, user.display_name, user.title ? h("span", { class: "muted small" }, ` — ${user.title}`) : null),
      h("button", { type: "button", class: "btn btn-small", onclick: () => add([user], as.value) }, t("participants_add")))));
  };
  return h("form", { class: "stack", id: "chooser", onsubmit: (e) => find(e).catch(showError) },
    h("h3", {}, t("participants_find")),
    h("div", { class: "filters" }, q, role, unit,
      h("button", { type: "submit", class: "btn", id: "p-find" }, t("audit_filter"))),
    h("div", { class: "filters" }, h("label", { for: "p-as" }, t("participants_add_as")), as, addAll, count),
    results);
}

function peopleList(entries, { onRole, onRemove }) {
  return h("ul", { class: "people", id: "p-selected" }, entries.map((p) => h("li", { dataset: { userId: p.user_id } },
    h("span", { class: "grow" }, p.display_name),
    h("select", { "aria-label": t("col_roles"), onchange: (e) => onRole(p, e.target.value) }, options(PROLES, "prole_", p.role)),
    h("button", { type: "button", class: "btn btn-small", onclick: () => onRemove(p) }, t("participants_remove")))));
}

// --- a new meeting -------------------------------------------------------------------------

function settingsControls(meeting) {
  return h("div", { class: "form-grid" },
    field(t("meeting_title"), h("input", { type: "text", id: "m-title", name: "title", required: true, value: meeting?.title || "" })),
    field(t("meeting_starts"), h("input", { type: "datetime-local", id: "m-starts", name: "starts_at", required: true, value: localInput(meeting?.starts_at) })),
    field(t("meeting_place"), h("input", { type: "text", id: "m-place", name: "place", value: meeting?.place ?? "Hội trường" })),
    field(t("meeting_speech_limit"), h("input", { type: "number", id: "m-limit", name: "limit", min: "1", max: "60", value: String(Math.round((meeting?.speech_limit_secs ?? 300) / 60)) })),
    field(t("meeting_quorum"), h("select", { id: "m-quorum", name: "quorum" }, options(QUORUMS, "quorum_", "two_thirds_of_members"))));
}

function settingsBody(form) {
  const data = new FormData(form);
  return {
    title: String(data.get("title")).trim(),
    starts_at: new Date(String(data.get("starts_at"))).toISOString(),
    place: String(data.get("place") || "").trim(),
    speech_limit_secs: Math.max(1, Number(data.get("limit") || 5)) * 60,
    quorum: String(data.get("quorum")),
  };
}

function renderNew() {
  state.meeting = null;
  state.draft = new Map([[session.user.id, { user_id: session.user.id, display_name: session.user.display_name,
    role: (session.user.roles || []).includes("chair") ? "chair" : "secretary" }]]);
  const selected = h("div", { id: "draft-people" });
  const heading = h("h3", { id: "draft-count" });
  const redraw = () => {
    heading.textContent = t("participants_heading", { count: state.draft.size });
    fill(selected, peopleList([...state.draft.values()], {
      onRole: (p, role) => { p.role = role; },
      onRemove: (p) => { state.draft.delete(p.user_id); redraw(); },
    }));
  };
  const add = (users, role) => {
    // Adding someone already chosen gives them the role chosen now (the chair, say, who
    // came in with "all delegates").
    for (const user of users) state.draft.set(user.id, { user_id: user.id, display_name: user.display_name, role });
    toast(t("participants_added", { count: users.length }));
    redraw();
  };
  const error = h("p", { class: "error-text", role: "alert" });
  const form = h("form", { id: "meeting-form", onsubmit: async (e) => {
    e.preventDefault();
    const ids = (role) => [...state.draft.values()].filter((p) => p.role === role).map((p) => p.user_id);
    if (!ids("chair").length) {
      error.textContent = t("prepare_need_chair");
      return;
    }
    try {
      const made = await api("meetings", { method: "POST", body: {
        ...settingsBody(form), chair_ids: ids("chair"), secretary_ids: ids("secretary"),
        delegate_ids: ids("delegate"), guest_ids: ids("guest") } });
      toast(t("meeting_created"));
      location.hash = `meeting/${made.id}`;
    } catch (err) {
      error.textContent = err.message;
    }
  } }, h("h2", {}, t("prepare_new")), settingsControls(null));
  fill(view(), form,
    h("div", { class: "prep-section two-cols" }, chooser(add), h("div", {}, heading, selected)),
    h("div", { class: "prep-section" }, error,
      h("button", { type: "submit", class: "btn btn-primary", id: "meeting-create", form: "meeting-form" }, t("meeting_create"))));
  redraw();
}

// --- an existing meeting --------------------------------------------------------------------

async function loadMeeting(id) {
  state.meeting = await api(`meetings/${id}`);
  return state.meeting;
}

async function refresh() {
  await loadMeeting(state.meeting.id);
  renderMeeting();
}

function flatItems(tree, depth = 0, out = []) {
  for (const node of tree) {
    out.push([node, depth]);
    flatItems(node.children, depth + 1, out);
  }
  return out;
}

function renderMeeting() {
  const m = state.meeting;
  const error = h("p", { class: "error-text", role: "alert" });
  const settings = h("form", { id: "meeting-form", onsubmit: async (e) => {
    e.preventDefault();
    try {
      await api(`meetings/${m.id}`, { method: "PATCH", body: settingsBody(settings) });
      toast(t("meeting_saved"));
      await loadMeetings();
      await refresh();
    } catch (err) {
      error.textContent = err.message;
    }
  } }, h("h2", {}, t("meeting_settings")), settingsControls(m), error,
  h("button", { type: "submit", class: "btn btn-primary", id: "meeting-save" }, t("admin_save")));
  const toolbar = h("div", { class: "toolbar" },
    h("button", { type: "button", class: "btn btn-ok", id: "publish", onclick: () => publish().catch(showError) }, t("prepare_publish")),
    h("button", { type: "button", class: "btn", id: "preload-all", onclick: () => preloadForAll().catch(showError) }, t("prepare_preload")),
    h("button", { type: "button", class: "btn", id: "copy", onclick: () => copyMeeting().catch(showError) }, t("prepare_copy")),
    h("a", { class: "btn", id: "to-console", href: `/app/chair/#meeting/${m.id}` }, t("prepare_console")));
  fill(view(), toolbar, h("div", { class: "prep-section" }, settings),
    participantsSection(m), agendaSection(m), pollsSection(m));
}

function participantsSection(m) {
  const add = async (users, role) => {
    const roles = new Map(m.participants.map((p) => [p.user_id, p.role]));
    const fresh = users.filter((u) => roles.get(u.id) !== role);
    for (const user of fresh) {
      await api(`meetings/${m.id}/participants/${user.id}`, { method: "PUT", body: { role } });
    }
    toast(t("participants_added", { count: fresh.length }));
    await refresh();
  };
  const list = peopleList(m.participants, {
    onRole: (p, role) => api(`meetings/${m.id}/participants/${p.user_id}`, { method: "PUT", body: { role } }).then(refresh).catch(showError),
    onRemove: (p) => api(`meetings/${m.id}/participants/${p.user_id}`, { method: "DELETE" }).then(refresh).catch(showError),
  });
  return h("section", { class: "prep-section two-cols", id: "participants" },
    h("div", {}, h("h2", {}, t("participants_heading", { count: m.participants.length })), list),
    chooser((users, role) => add(users, role).catch(showError)));
}

// Upload several PDFs at once, each with its own progress bar; resolves with their ids.
function uploadWithProgress(files, box) {
  return Promise.all([...files].map((file) => new Promise((resolve, reject) => {
    const bar = h("span");
    bar.style.width = "0%";
    const row = h("div", { class: "upload-row" }, h("span", {}, file.name), h("div", { class: "progress", role: "progressbar", "aria-label": file.name }, bar));
    box.append(row);
    const form = new FormData();
    form.append("file", file, file.name);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/api/v1/files");
    xhr.setRequestHeader("Authorization", `Bearer ${session.token}`);
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) bar.style.width = `${Math.round((100 * e.loaded) / e.total)}%`; };
    xhr.onload = () => {
      let body = {};
      try { body = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
      if (xhr.status === 201) {
        bar.style.width = "100%";
        resolve(body.id);
      } else {
        reject(new Error(body?.error?.message || `${file.name}: ${xhr.status}`));
      }
    };
    xhr.onerror = () => reject(new Error(file.name));
    xhr.send(form);
  })));
}

function agendaSection(m) {
  const mid = m.id;
  const reorder = (parentId, ids) => api(`meetings/${mid}/agenda/reorder`, { method: "POST", body: { parent_id: parentId, item_ids: ids } }).then(refresh).catch(showError);
  let dragged = null;
  const itemNode = (node, siblings, parentId) => {
    const index = siblings.indexOf(node);
    const ids = siblings.map((s) => s.id);
    const move = (delta) => {
      const order = [...ids];
      const [moved] = order.splice(index, 1);
      order.splice(index + delta, 0, moved);
      reorder(parentId, order);
    };
    const uploads = h("div", {});
    const files = h("input", { type: "file", multiple: true, accept: "application/pdf,.pdf", class: "docs-input",
      id: `docs-${node.id}`, "aria-label": t("agenda_docs"),
      onchange: async () => {
        try {
          const added = await uploadWithProgress(files.files, uploads);
          await api(`meetings/${mid}/agenda/${node.id}`, { method: "PATCH", body: { document_ids: [...node.document_ids, ...added] } });
          toast(t("agenda_uploaded", { count: added.length }));
          await refresh();
        } catch (err) {
          showError(err);
        }
      } });
    const li = h("li", { dataset: { itemId: node.id }, draggable: "true",
      ondragstart: (e) => { dragged = { id: node.id, parentId }; li.classList.add("dragging"); e.dataTransfer.setData("text/plain", String(node.id)); e.stopPropagation(); },
      ondragend: () => li.classList.remove("dragging"),
      ondragover: (e) => { if (dragged && dragged.parentId === parentId && dragged.id !== node.id) { e.preventDefault(); li.classList.add("drop-target"); } e.stopPropagation(); },
      ondragleave: () => li.classList.remove("drop-target"),
      ondrop: (e) => {
        e.preventDefault();
        e.stopPropagation();
        li.classList.remove("drop-target");
        if (!dragged || dragged.parentId !== parentId || dragged.id === node.id) return;
        const order = ids.filter((id) => id !== dragged.id);
        order.splice(order.indexOf(node.id), 0, dragged.id);
        dragged = null;
        reorder(parentId, order);
      } },
    h("div", { class: "item-head" },
      h("span", { class: "drag-handle", title: t("agenda_drag"), "aria-hidden": "true" }, "⠿"),
      h("span", { class: "item-title" }, node.title),
      h("span", { class: "muted small" }, t("agenda_minutes_short", { minutes: node.planned_minutes })),
      h("button", { type: "button", class: "btn btn-small up", disabled: index === 0, onclick: () => move(-1) }, t("agenda_up")),
      h("button", { type: "button", class: "btn btn-small down", disabled: index === siblings.length - 1, onclick: () => move(1) }, t("agenda_down")),
      h("button", { type: "button", class: "btn btn-small child", onclick: () => addItem(node.id) }, t("agenda_add_child")),
      h("button", { type: "button", class: "btn btn-small remove", onclick: () => api(`meetings/${mid}/agenda/${node.id}`, { method: "DELETE" }).then(refresh).catch(showError) }, t("agenda_remove"))),
    h("ul", { class: "docs" }, node.documents.map((d) => h("li", {}, d.title || d.name, h("span", { class: "muted small" }, ` (${d.pages})`)))),
    h("div", { class: "upload-row" }, h("label", { for: `docs-${node.id}` }, t("agenda_docs")), files),
    uploads,
    node.children.length ? h("ol", {}, node.children.map((child) => itemNode(child, node.children, node.id))) : null);
    return li;
  };
  const title = h("input", { type: "text", id: "agenda-title", required: true });
  const minutes = h("input", { type: "number", id: "agenda-minutes", min: "0", max: "1440", value: "30" });
  const addItem = async (parentId) => {
    let name = title.value.trim();
    let planned = Number(minutes.value || 0);
    if (parentId !== null) {
      const got = await dialog(t("agenda_add_child"), h("div", {},
        field(t("agenda_item_title"), h("input", { type: "text", id: "child-title", name: "title", required: true })),
        field(t("agenda_minutes"), h("input", { type: "number", id: "child-minutes", name: "minutes", min: "0", value: "15" }))));
      if (!got) return;
      name = String(got.title).trim();
      planned = Number(got.minutes || 0);
    }
    if (!name) return;
    try {
      await api(`meetings/${mid}/agenda`, { method: "POST", body: { title: name, planned_minutes: planned, parent_id: parentId, document_ids: [] } });
      if (parentId === null) title.value = "";
      await refresh();
      document.getElementById("agenda-title")?.focus();
    } catch (err) {
      showError(err);
    }
  };
  return h("section", { class: "prep-section", id: "agenda-section" },
    h("h2", {}, t("agenda_heading")),
    h("ol", { class: "agenda-edit", id: "agenda-edit" }, m.agenda.map((node) => itemNode(node, m.agenda, null))),
    h("form", { class: "filters", id: "agenda-form", onsubmit: (e) => { e.preventDefault(); addItem(null); } },
      field(t("agenda_item_title"), title), field(t("agenda_minutes"), minutes),
      h("button", { type: "submit", class: "btn btn-primary", id: "agenda-add" }, t("agenda_add"))));
}

function pollsSection(m) {
  const kind = h("select", { id: "poll-kind", name: "kind", onchange: () => {
    for (const el of form.querySelectorAll(".choice-only")) el.classList.toggle("hidden", kind.value !== "choice");
  } }, options(KINDS, "poll_kind_", "yes_no_abstain"));
  const error = h("p", { class: "error-text", role: "alert" });
  const form = h("form", { id: "poll-form", onsubmit: async (e) => {
    e.preventDefault();
    const data = new FormData(form);
    const body = {
      title: String(data.get("title")).trim(), kind: kind.value, rule: String(data.get("rule")),
      secret: data.get("secret") === "on",
    };
    if (data.get("item")) body.agenda_item_id = Number(data.get("item"));
    if (kind.value === "choice") {
      body.options = String(data.get("options")).split("\n").map((s) => s.trim()).filter(Boolean);
      body.max_choices = Number(data.get("max_choices") || 1);
    }
    try {
      await api(`meetings/${m.id}/polls`, { method: "POST", body });
      toast(t("poll_prepared"));
      await refresh();
    } catch (err) {
      error.textContent = err.message;
    }
  } },
  h("div", { class: "form-grid" },
    field(t("poll_title"), h("input", { type: "text", id: "poll-title", name: "title", required: true })),
    field(t("poll_kind"), kind),
    field(t("poll_rule"), h("select", { id: "poll-rule", name: "rule" }, options(RULES, "poll_rule_", "majority_of_members"))),
    field(t("poll_item"), h("select", { id: "poll-item", name: "item" }, h("option", { value: "" }, "—"),
      flatItems(m.agenda).map(([node, depth]) => h("option", { value: node.id }, `${"\u00a0\u00a0".repeat(depth)}${node.title}`))))),
  h("div", { class: "form-grid choice-only hidden" },
    field(t("poll_options"), h("textarea", { id: "poll-options", name: "options" })),
    field(t("poll_max_choices"), h("input", { type: "number", id: "poll-max", name: "max_choices", min: "1", value: "1" }))),
  h("label", { class: "inline" }, h("input", { type: "checkbox", id: "poll-secret", name: "secret" }), t("poll_secret")),
  error,
  h("button", { type: "submit", class: "btn btn-primary", id: "poll-create" }, t("poll_prepare")));
  return h("section", { class: "prep-section", id: "polls-section" },
    h("h2", {}, t("polls_heading")),
    h("ul", { class: "poll-list", id: "polls" }, (m.polls || []).map((p) => h("li", { dataset: { pollId: p.id } },
      h("strong", {}, p.title), " — ", t(`poll_kind_${p.kind}`), p.secret ? ` · ${t("poll_secret")}` : "",
      " · ", h("span", { class: "muted" }, t(`poll_state_${p.state}`))))),
    form);
}

async function publish() {
  const answer = await api(`meetings/${state.meeting.id}/publish`, { method: "POST" });
  toast(t("prepare_published", { count: answer.participants }));
}

/** Every participant's tablet that is online downloads the meeting's documents now. */
async function preloadForAll() {
  const answer = await api(`meetings/${state.meeting.id}/preload`, { method: "POST" });
  toast(t("prepare_preloaded", { count: answer.participants }));
}

async function copyMeeting() {
  const got = await dialog(t("prepare_copy"), h("div", {},
    field(t("prepare_copy_title"), h("input", { type: "text", id: "copy-title", name: "title", required: true, value: state.meeting.title })),
    field(t("meeting_starts"), h("input", { type: "datetime-local", id: "copy-starts", name: "starts_at", required: true, value: localInput(null) }))));
  if (!got) return;
  const made = await api(`meetings/${state.meeting.id}/copy`, { method: "POST",
    body: { title: String(got.title).trim(), starts_at: new Date(String(got.starts_at)).toISOString() } });
  toast(t("prepare_copied"));
  location.hash = `meeting/${made.id}`;
}

// --- routing -------------------------------------------------------------------------------

async function route() {
  const match = /^#meeting\/(\d+)$/.exec(location.hash);
  try {
    if (match) {
      await loadMeeting(Number(match[1]));
      renderMeeting();
    } else if (location.hash === "#new" || !state.meetings.length) {
      renderNew();
    } else {
      location.hash = `meeting/${state.meetings[0].id}`;
      return;
    }
    await loadMeetings();
  } catch (err) {
    showError(err);
  }
}

async function main() {
  const user = startPage("prepare_title");
  document.getElementById("conn-status")?.remove();
  if (!ORGANISERS.some((r) => (user.roles || []).includes(r))) {
    fill(view(), h("p", { class: "error-text", role: "alert" }, t("prepare_not_allowed")));
    return;
  }
  state.units = (await api("units")).units;
  await loadMeetings();
  window.addEventListener("hashchange", route);
  await route();
}

window.addEventListener("langchange", () => { loadMeetings().catch(showError); route(); });
main().catch(showError);
