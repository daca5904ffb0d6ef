// The administration page: accounts (search, paging, edit, disable, reset password, lift a
// sign-in lock, sign out everywhere), the unit tree, bulk import with a dry run, and the
// audit log viewer. Every list is searched and paged on the server.

import { api, ApiError, download, session } from "./api.js";
import "./admin-i18n.js";
import { formatTime, t } from "./i18n.js";
import { fill, h, showError, startPage, toast } from "./shell.js";

const ROLES = ["admin", "standing", "chair", "secretary", "delegate", "staff", "auditor"];
const KINDS = ["standing_committee", "committee", "delegation", "department", "commune", "ward"];
const CLEARANCES = ["none", "confidential", "secret", "top_secret"];
const PER_PAGE = 50;

const state = {
  tab: "users",
  units: [],
  users: { q: "", role: "", unit_id: "", active: "", page: 1, answer: null, selected: null },
  audit: { since: "", until: "", actor_id: "", action: "", subject: "", page: 1 },
  importFile: null,
  importClean: false,
};

const view = () => document.getElementById("view");
const unitName = (id) => state.units.find((u) => u.id === id)?.name ?? `#${id}`;

function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== "" && value !== null && value !== undefined) search.set(key, value);
  }
  return search.toString();
}

function select(name, options, value, { label, blank } = {}) {
  return h("select", { name, id: `f-${name}`, "aria-label": label },
    blank !== undefined ? h("option", { value: "" }, blank) : null,
    options.map(([v, text]) => h("option", { value: v, selected: String(v) === String(value) }, text)));
}

function field(labelText, control) {
  const id = control.id || `f-${control.name}`;
  control.id = id;
  return h("div", { class: "field" }, h("label", { for: id }, labelText), control);
}

function unitOptions() {
  // Indented by depth, in tree order, so a unit is found under its parent.
  const children = new Map();
  for (const unit of state.units) {
    const list = children.get(unit.parent_id ?? null) || [];
    list.push(unit);
    children.set(unit.parent_id ?? null, list);
  }
  const out = [];
  const walk = (parent, depth) => {
    for (const unit of children.get(parent) || []) {
      out.push([unit.id, `${"\u00a0\u00a0".repeat(depth)}${unit.name}`, unit, depth]);
      walk(unit.id, depth + 1);
    }
  };
  walk(null, 0);
  return out;
}

async function loadUnits() {
  state.units = (await api("units")).units;
}

// --- tabs ------------------------------------------------------------------------------

function tabsFor(user) {
  const roles = user.roles || [];
  if (roles.includes("admin")) return ["users", "units", "import", "audit"];
  if (roles.includes("auditor")) return ["audit"];
  return [];
}

function renderTabs(user) {
  const tabs = tabsFor(user);
  fill(document.getElementById("tabs"), tabs.map((tab) => h("button", {
    type: "button", class: "btn", id: `tab-${tab}`, "aria-current": state.tab === tab ? "page" : null,
    onclick: () => { state.tab = tab; location.hash = tab; render(); },
  }, t(`admin_tab_${tab}`))));
}

async function render() {
  const user = session.user;
  renderTabs(user);
  try {
    if (state.tab === "users") await renderUsers();
    else if (state.tab === "units") renderUnits();
    else if (state.tab === "import") renderImport();
    else if (state.tab === "audit") await renderAudit();
  } catch (error) {
    showError(error);
  }
}

// --- accounts --------------------------------------------------------------------------

async function searchUsers() {
  const u = state.users;
  u.answer = await api(`admin/users?${query({ q: u.q, role: u.role, unit_id: u.unit_id,
    active: u.active, page: u.page, per_page: PER_PAGE })}`);
}

async function renderUsers() {
  await searchUsers();
  const u = state.users;
  const answer = u.answer;
  const pages = Math.max(1, Math.ceil(answer.total / PER_PAGE));
  const search = h("input", { type: "search", name: "q", value: u.q, placeholder: t("admin_search"),
    "aria-label": t("admin_search") });
  const roleSel = select("role", ROLES.map((r) => [r, t(`role_${r}`)]), u.role,
    { label: t("col_roles"), blank: t("admin_all_roles") });
  const unitSel = select("unit_id", unitOptions().map(([id, text]) => [id, text]), u.unit_id,
    { label: t("col_unit"), blank: t("admin_all_units") });
  const activeSel = select("active", [["true", t("admin_active")], ["false", t("admin_disabled")]], u.active,
    { label: t("col_state"), blank: t("admin_all_states") });
  const filters = h("form", { class: "filters", role: "search", onsubmit: (e) => {
    e.preventDefault();
    Object.assign(u, { q: search.value.trim(), role: roleSel.value, unit_id: unitSel.value,
      active: activeSel.value, page: 1 });
    renderUsers().catch(showError);
  } }, search, roleSel, unitSel, activeSel,
  h("button", { type: "submit", class: "btn btn-primary" }, t("audit_filter")),
  h("button", { type: "button", class: "btn", id: "new-user", onclick: () => showNewUser() }, t("admin_new_user")));
  const rows = answer.users.map((user) => h("tr", {
    dataset: { username: user.username }, "aria-selected": u.selected === user.id ? "true" : "false",
    tabindex: "0", onclick: () => showUser(user), onkeydown: (e) => { if (e.key === "Enter") showUser(user); },
  },
  h("td", {}, user.username),
  h("td", { class: "wrap" }, user.display_name),
  h("td", { class: "wrap" }, user.title || ""),
  h("td", { class: "wrap" }, unitName(user.unit_id)),
  h("td", {}, user.roles.map((r) => t(`role_${r}`)).join(", ")),
  h("td", {}, stateOf(user))));
  const table = h("table", { class: "data-table", id: "users-table" },
    h("thead", {}, h("tr", {}, ["col_username", "col_name", "col_title", "col_unit", "col_roles", "col_state"]
      .map((key) => h("th", { scope: "col" }, t(key))))),
    h("tbody", {}, rows));
  const pager = h("div", { class: "pager" },
    h("button", { type: "button", class: "btn btn-small", disabled: u.page <= 1,
      onclick: () => { u.page -= 1; renderUsers().catch(showError); } }, t("admin_prev")),
    h("span", { id: "users-total" }, t("admin_total", { total: answer.total, page: u.page, pages })),
    h("button", { type: "button", class: "btn btn-small", disabled: u.page >= pages,
      onclick: () => { u.page += 1; renderUsers().catch(showError); } }, t("admin_next")));
  fill(view(), h("div", { class: "admin-grid" },
    h("div", {}, filters, table, pager),
    h("aside", { id: "user-panel", class: "panel", "aria-live": "polite" })));
  const current = answer.users.find((x) => x.id === u.selected);
  if (current) showUser(current);
}

function stateOf(user) {
  const parts = [];
  parts.push(user.active ? h("span", {}, t("admin_active")) : h("span", { class: "state-off" }, t("admin_disabled")));
  if (user.throttled_until) parts.push(h("span", { class: "state-held" }, " · ", t("admin_throttled")));
  if (user.must_change_password) parts.push(h("span", { class: "muted" }, " · ", t("admin_must_change")));
  return parts;
}

function userForm(user) {
  const roles = h("div", { class: "checks", role: "group", "aria-label": t("col_roles") },
    ROLES.map((r) => h("label", {}, h("input", { type: "checkbox", name: "roles", value: r,
      checked: (user?.roles || []).includes(r) }), t(`role_${r}`))));
  return {
    roles,
    controls: [
      user ? null : field(t("col_username"), h("input", { type: "text", name: "username", required: true, autocomplete: "off" })),
      field(t("col_name"), h("input", { type: "text", name: "display_name", required: true, value: user?.display_name || "" })),
      field(t("col_title"), h("input", { type: "text", name: "title", value: user?.title || "" })),
      field(t("col_unit"), select("unit_id", unitOptions().map(([id, text]) => [id, text]), user?.unit_id ?? "")),
      field(t("col_clearance"), select("clearance", CLEARANCES.map((c) => [c, t(`clearance_${c}`)]), user?.clearance || "none")),
      h("fieldset", { class: "field" }, h("legend", {}, t("col_roles")), roles),
      user ? null : field(t("admin_new_password"), h("input", { type: "password", name: "password", autocomplete: "new-password", "aria-describedby": "pw-hint" })),
      user ? null : h("p", { id: "pw-hint", class: "muted small" }, t("admin_password_hint")),
    ],
  };
}

function formValues(form) {
  const data = new FormData(form);
  return {
    display_name: String(data.get("display_name") || "").trim(),
    title: String(data.get("title") || "").trim(),
    unit_id: Number(data.get("unit_id")),
    clearance: String(data.get("clearance")),
    roles: data.getAll("roles").map(String),
  };
}

function showNewUser() {
  const panel = document.getElementById("user-panel");
  const { controls } = userForm(null);
  const error = h("p", { class: "error-text", role: "alert" });
  const form = h("form", { class: "edit-form", id: "new-user-form", onsubmit: async (e) => {
    e.preventDefault();
    const data = new FormData(form);
    const body = { ...formValues(form), username: String(data.get("username") || "").trim() };
    const password = String(data.get("password") || "");
    if (password) body.password = password;
    try {
      const made = await api("users", { method: "POST", body });
      toast(t("admin_created", { name: made.display_name }));
      state.users.selected = made.id;
      state.users.q = made.username;
      await renderUsers();
    } catch (err) {
      error.textContent = err.message;
    }
  } }, h("h2", {}, t("admin_new_user")), controls, error,
  h("button", { type: "submit", class: "btn btn-primary" }, t("admin_create")));
  fill(panel, form);
  form.querySelector("input")?.focus();
}

function showUser(user) {
  state.users.selected = user.id;
  for (const row of document.querySelectorAll("#users-table tbody tr")) {
    row.setAttribute("aria-selected", row.dataset.username === user.username ? "true" : "false");
  }
  const panel = document.getElementById("user-panel");
  const { controls } = userForm(user);
  const error = h("p", { class: "error-text", role: "alert" });
  const act = (fn, message) => async () => {
    error.textContent = "";
    try {
      await fn();
      toast(message);
      await renderUsers();
    } catch (err) {
      error.textContent = err.message;
    }
  };
  const resetInput = h("input", { type: "password", name: "reset", id: "reset-password", autocomplete: "new-password", "aria-describedby": "reset-hint" });
  const form = h("form", { class: "edit-form", id: "edit-user-form", onsubmit: (e) => {
    e.preventDefault();
    act(() => api(`users/${user.id}`, { method: "PATCH", body: formValues(form) }), t("admin_saved"))();
  } },
  h("h2", {}, t("admin_edit_user", { name: user.username })),
  controls,
  h("button", { type: "submit", class: "btn btn-primary", id: "save-user" }, t("admin_save")));
  fill(panel, form, error,
    h("div", { class: "actions" },
      user.active
        ? h("button", { type: "button", class: "btn btn-danger", id: "disable-user",
          onclick: act(() => api(`users/${user.id}`, { method: "PATCH", body: { active: false } }), t("admin_saved")) }, t("admin_disable"))
        : h("button", { type: "button", class: "btn", id: "enable-user",
          onclick: act(() => api(`users/${user.id}`, { method: "PATCH", body: { active: true } }), t("admin_saved")) }, t("admin_enable")),
      user.throttled_until
        ? h("button", { type: "button", class: "btn", id: "lift-lock",
          onclick: act(() => api(`users/${user.id}/sign-in-throttle`, { method: "DELETE" }), t("admin_lifted")) }, t("admin_lift"))
        : null,
      h("button", { type: "button", class: "btn", id: "sign-out-everywhere",
        onclick: act(() => api(`users/${user.id}/sign-out-everywhere`, { method: "POST" }), t("admin_signed_out")) }, t("admin_sign_out"))),
    h("form", { class: "actions", id: "reset-form", onsubmit: (e) => {
      e.preventDefault();
      act(() => api(`users/${user.id}/password-reset`, { method: "POST", body: { password: resetInput.value } }), t("admin_reset_done"))();
    } },
    h("label", { for: "reset-password" }, t("admin_new_password")), resetInput,
    h("button", { type: "submit", class: "btn", id: "reset-submit" }, t("admin_reset_password")),
    h("span", { id: "reset-hint", class: "muted small" }, t("admin_password_hint"))));
}

// --- units -----------------------------------------------------------------------------

function renderUnits() {
  const options = unitOptions();
  const indent = (li, depth) => {
    // Through the CSSOM: the Content-Security-Policy refuses style attributes.
    li.style.paddingLeft = `${depth * 1.2}rem`;
    return li;
  };
  const list = h("ul", { class: "tree-list", id: "unit-tree" }, options.map(([id, , unit, depth]) => indent(h("li", {
    dataset: { unitId: id },
  },
  h("span", { class: "unit-name" }, unit.name, " ", h("span", { class: "muted small" }, t(`kind_${unit.kind}`))),
  h("button", { type: "button", class: "btn btn-small", onclick: () => editUnit(unit) }, t("edit")),
  h("button", { type: "button", class: "btn btn-small", onclick: () => {
    Object.assign(state.users, { unit_id: String(unit.id), q: "", role: "", active: "", page: 1 });
    state.tab = "users";
    render();
  } }, t("admin_members"))), depth)));
  const name = h("input", { type: "text", name: "name", required: true });
  const kind = select("kind", KINDS.map((k) => [k, t(`kind_${k}`)]), "ward");
  const parent = select("parent_id", options.map(([id, text]) => [id, text]), options[0]?.[0] ?? "");
  const error = h("p", { class: "error-text", role: "alert" });
  const form = h("form", { class: "edit-form", id: "new-unit-form", onsubmit: async (e) => {
    e.preventDefault();
    try {
      const made = await api("units", { method: "POST", body: { name: name.value.trim(), kind: kind.value, parent_id: Number(parent.value) } });
      toast(t("admin_created", { name: made.name }));
      await loadUnits();
      renderUnits();
    } catch (err) {
      error.textContent = err.message;
    }
  } }, h("h2", {}, t("admin_new_unit")),
  field(t("admin_unit_name"), name), field(t("admin_unit_kind"), kind), field(t("admin_unit_parent"), parent),
  error, h("button", { type: "submit", class: "btn btn-primary", id: "create-unit" }, t("admin_create")));
  fill(view(), h("div", { class: "admin-grid" },
    h("div", {}, h("h2", {}, t("admin_units_heading"), " ", h("span", { class: "muted small" }, String(state.units.length))), list),
    h("aside", { class: "panel", id: "unit-panel" }, form)));
}

function editUnit(unit) {
  const panel = document.getElementById("unit-panel");
  const name = h("input", { type: "text", name: "name", value: unit.name, required: true });
  const parent = select("parent_id", unitOptions().filter(([id]) => id !== unit.id).map(([id, text]) => [id, text]), unit.parent_id ?? "");
  const error = h("p", { class: "error-text", role: "alert" });
  const form = h("form", { class: "edit-form", id: "edit-unit-form", onsubmit: async (e) => {
    e.preventDefault();
    const body = { name: name.value.trim() };
    if (unit.parent_id !== null && Number(parent.value) !== unit.parent_id) body.parent_id = Number(parent.value);
    try {
      await api(`units/${unit.id}`, { method: "PATCH", body });
      toast(t("admin_unit_saved"));
      await loadUnits();
      renderUnits();
    } catch (err) {
      error.textContent = err.message;
    }
  } }, h("h2", {}, t("admin_rename"), " / ", t("admin_move")),
  field(t("admin_unit_name"), name),
  unit.parent_id === null ? null : field(t("admin_unit_parent"), parent),
  error, h("button", { type: "submit", class: "btn btn-primary", id: "save-unit" }, t("admin_save")));
  fill(panel, form);
  name.focus();
}

// --- bulk import -----------------------------------------------------------------------

async function sendImport(dryRun) {
  const response = await fetch(`/api/v1/admin/import?dry_run=${dryRun}`, {
    method: "POST", body: state.importFile,
    headers: { Authorization: `Bearer ${session.token}`, "Content-Type": "application/octet-stream" },
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new ApiError(response.status, body?.error?.code || `http_${response.status}`, body?.error?.message,
      body?.error?.details ?? null);
  }
  return body;
}

function renderImport() {
  const result = h("div", { id: "import-result", "aria-live": "polite" });
  const runButton = h("button", { type: "button", class: "btn btn-primary", id: "import-run", disabled: true,
    onclick: async () => {
      runButton.disabled = true;
      try {
        const done = await sendImport(false);
        fill(result, h("p", { class: "chain chain-ok" }, t("import_done", { users: done.users, units: done.units })));
        await loadUnits();
      } catch (err) {
        showProblems(result, err.details || [], err.message);
      }
    } }, t("import_run"));
  const input = h("input", { type: "file", id: "import-file", accept: ".csv,.xlsx,text/csv",
    onchange: () => { state.importFile = input.files[0] || null; runButton.disabled = true; fill(result); } });
  const check = h("button", { type: "button", class: "btn", id: "import-check", onclick: async () => {
    if (!state.importFile) return;
    try {
      const answer = await sendImport(true);
      if (answer.problems.length) {
        showProblems(result, answer.problems, t("import_problems", { count: answer.problems.length }));
        runButton.disabled = true;
      } else {
        fill(result, h("p", { class: "chain chain-ok" }, t("import_ok", { users: answer.users, units: answer.units })));
        runButton.disabled = false;
      }
    } catch (err) {
      showProblems(result, err.details || [], err.message);
    }
  } }, t("import_check"));
  fill(view(), h("h2", {}, t("import_heading")), h("p", { class: "muted" }, t("import_help")),
    h("div", { class: "filters" }, field(t("import_file"), input), check, runButton), result);
}

function showProblems(box, problems, message) {
  fill(box, h("p", { class: "chain chain-bad" }, message),
    problems.length ? h("div", { class: "problems" }, h("table", { class: "data-table", id: "import-problems" },
      h("thead", {}, h("tr", {}, ["col_row", "col_field", "col_problem"].map((k) => h("th", { scope: "col" }, t(k))))),
      h("tbody", {}, problems.map((p) => h("tr", {}, h("td", {}, String(p.row)), h("td", {}, p.field), h("td", { class: "wrap" }, problemText(p))))))) : null);
}

/** A row's problem in the reader's language (the server's English when the code is new). */
function problemText(problem) {
  const key = problem.code && (problem.code.startsWith("password_") ? problem.code : `import_${problem.code}`);
  const text = key ? t(key, problem.params || {}) : "";
  return text && text !== key ? text : problem.message;
}

// --- audit -----------------------------------------------------------------------------

function isoOrEmpty(local) {
  if (!local) return "";
  const date = new Date(local);
  return Number.isNaN(date.getTime()) ? "" : date.toISOString().replace("Z", "+00:00");
}

async function renderAudit() {
  const a = state.audit;
  const filters = { since: isoOrEmpty(a.since), until: isoOrEmpty(a.until), actor_id: a.actor_id, action: a.action, subject: a.subject };
  const [chain, answer] = await Promise.all([
    api("audit/chain"),
    api(`audit?${query({ ...filters, page: a.page, per_page: PER_PAGE })}`),
  ]);
  const pages = Math.max(1, Math.ceil(answer.total / PER_PAGE));
  const since = h("input", { type: "datetime-local", name: "since", value: a.since });
  const until = h("input", { type: "datetime-local", name: "until", value: a.until });
  const actor = h("input", { type: "number", name: "actor_id", min: "1", value: a.actor_id });
  const action = select("action", answer.actions.map((x) => [x, x]), a.action, { blank: "—" });
  const subject = h("input", { type: "text", name: "subject", value: a.subject, placeholder: "user:12" });
  const form = h("form", { class: "filters", onsubmit: (e) => {
    e.preventDefault();
    Object.assign(a, { since: since.value, until: until.value, actor_id: actor.value, action: action.value, subject: subject.value.trim(), page: 1 });
    renderAudit().catch(showError);
  } },
  field(t("audit_since"), since), field(t("audit_until"), until), field(t("audit_actor"), actor),
  field(t("audit_action"), action), field(t("audit_subject"), subject),
  h("button", { type: "submit", class: "btn btn-primary" }, t("audit_filter")),
  h("button", { type: "button", class: "btn", onclick: () => download(`/api/v1/audit/export?${query({ ...filters, format: "csv" })}`, "audit.csv").catch(showError) }, t("audit_export_csv")),
  h("button", { type: "button", class: "btn", onclick: () => download(`/api/v1/audit/export?${query({ ...filters, format: "json" })}`, "audit.jsonl").catch(showError) }, t("audit_export_json")));
  const table = h("table", { class: "data-table", id: "audit-table" },
    h("thead", {}, h("tr", {}, ["col_seq", "col_at", "col_actor", "col_action", "col_subject", "col_details"].map((k) => h("th", { scope: "col" }, t(k))))),
    h("tbody", {}, answer.records.map((r) => h("tr", {},
      h("td", {}, String(r.seq)), h("td", {}, formatTime(r.at)), h("td", {}, r.actor ?? (r.actor_id ? `#${r.actor_id}` : "—")),
      h("td", {}, r.action), h("td", {}, r.subject), h("td", { class: "wrap small" }, JSON.stringify(r.details))))));
  fill(view(),
    h("p", { id: "chain-status", class: `chain ${chain.ok ? "chain-ok" : "chain-bad"}`, role: "status" },
      chain.ok ? t("audit_chain_ok", { records: chain.records }) : t("audit_chain_bad", { seq: chain.first_bad_seq, problem: chain.problem })),
    form, table,
    h("div", { class: "pager" },
      h("button", { type: "button", class: "btn btn-small", disabled: a.page <= 1, onclick: () => { a.page -= 1; renderAudit().catch(showError); } }, t("admin_prev")),
      h("span", {}, t("audit_total", { total: answer.total, page: a.page, pages })),
      h("button", { type: "button", class: "btn btn-small", disabled: a.page >= pages, onclick: () => { a.page += 1; renderAudit().catch(showError); } }, t("admin_next"))));
}

// --- start -----------------------------------------------------------------------------

async function main() {
  const user = startPage("admin_title");
  document.getElementById("conn-status")?.remove();
  const tabs = tabsFor(user);
  if (!tabs.length) {
    fill(view(), h("p", { class: "error-text", role: "alert" }, t("admin_not_allowed")));
    return;
  }
  const wanted = location.hash.slice(1);
  state.tab = tabs.includes(wanted) ? wanted : tabs[0];
  await loadUnits();
  await render();
}

window.addEventListener("langchange", () => render());
main().catch(showError);
