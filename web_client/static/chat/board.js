// The sender's acknowledgement board: read in five seconds for 126 units. Counts and a
// progress bar per state, then one tile per recipient unit coloured by its state, with the
// delivered / read / acknowledged times and the acknowledgement note; filters by state and
// parent unit, sorting by time. Live updates change tiles in place: nothing moves under the
// reader's eyes until they ask to sort again.

import { formatTime, t } from "../js/i18n.js";
import { fill, h } from "../js/shell.js";

const STATES = ["pending", "delivered", "read", "acknowledged"];
const SORTS = ["order", "delivered", "read", "acknowledged"];
const TIME_KEYS = { delivered: "delivered_at", read: "read_at", acknowledged: "acknowledged_at" };

/** A progress bar; its width is set through the CSSOM, which a strict style policy allows. */
export function progressBar(value, total, label) {
  const fillEl = h("span");
  fillEl.style.width = `${total ? (100 * (value || 0)) / total : 0}%`;
  return h("div", { class: "progress", role: "progressbar", "aria-label": label, "aria-valuemin": 0, "aria-valuemax": total, "aria-valuenow": value || 0 }, fillEl);
}

/** Each recipient unit with its state, worked out from the per-user receipts. */
export function unitRows(receipts, units, directive, now = Date.now()) {
  const byUnit = new Map();
  for (const unit of receipts.units || []) {
    byUnit.set(unit.unit_id, { unit_id: unit.unit_id, name: unit.name, users: [] });
  }
  for (const user of receipts.users || []) {
    if (!byUnit.has(user.unit_id)) byUnit.set(user.unit_id, { unit_id: user.unit_id, name: "", users: [] });
    byUnit.get(user.unit_id).users.push(user);
  }
  const parents = new Map(units.map((u) => [u.id, u.parent_id ?? null]));
  const names = new Map(units.map((u) => [u.id, u.name]));
  const due = directive?.due_at ? Date.parse(directive.due_at) : null;
  const rows = [];
  for (const row of byUnit.values()) {
    const count = (key) => row.users.filter((u) => u[key]).length;
    const total = row.users.length;
    const counts = { delivered: count("delivered_at"), read: count("read_at"), acknowledged: count("acknowledged_at") };
    let stateName = "pending";
    if (total && counts.acknowledged === total) stateName = "acknowledged";
    else if (total && counts.read === total) stateName = "read";
    else if (total && counts.delivered === total) stateName = "delivered";
    // A unit's time of a state is when its last user got there.
    const latest = (key) => {
      const times = row.users.map((u) => u[key]).filter(Boolean);
      return times.length === total && total ? times.reduce((a, b) => (Date.parse(a) > Date.parse(b) ? a : b)) : null;
    };
    rows.push({
      unit_id: row.unit_id,
      name: row.name || names.get(row.unit_id) || `#${row.unit_id}`,
      parent_id: parents.get(row.unit_id) ?? null,
      total,
      counts,
      state: stateName,
      overdue: due !== null && now > due && stateName !== "acknowledged",
      delivered_at: latest("delivered_at"),
      read_at: latest("read_at"),
      acknowledged_at: latest("acknowledged_at"),
      notes: row.users.map((u) => u.note).filter(Boolean),
    });
  }
  return rows;
}

function sameDay(iso) {
  const d = new Date(iso);
  const n = new Date();
  return d.getFullYear() === n.getFullYear() && d.getMonth() === n.getMonth() && d.getDate() === n.getDate();
}

const shortTime = (iso) => formatTime(iso, !sameDay(iso));

function tileContent(row, href) {
  const times = ["delivered", "read", "acknowledged"]
    .filter((key) => row[TIME_KEYS[key]])
    .map((key) => t(`time_${key}`, { time: shortTime(row[TIME_KEYS[key]]) }));
  const partial = row.total > 1 && row.state !== "acknowledged"
    ? ` (${t("acknowledged")} ${row.counts.acknowledged}/${row.total})` : "";
  return [
    h("div", { class: "unit-head" },
      // The unit's name leads to its thread: where the sender answers that unit.
      h("a", { class: "unit-name", href, title: t("open_thread") }, row.name),
      row.overdue ? h("span", { class: "unit-flag" }, t("state_overdue")) : null),
    h("div", { class: "unit-state" }, t(`state_${row.state}`), partial),
    times.length ? h("div", { class: "unit-times" }, times.join(" · ")) : null,
    row.notes.length ? h("div", { class: "unit-note", title: row.notes.join("\n") }, `“${row.notes.join(" · ")}”`) : null,
  ];
}

function tileClass(row) {
  return `board-unit st-${row.state}${row.overdue ? " is-overdue" : ""}`;
}

/**
 * Build the board. `options`: {id, directive, receipts, units, threadHref(unitId),
 * onExport()}. Returns {root, update(receipts, directive)}.
 */
export function createBoard(options) {
  const { id, units, threadHref, onExport } = options;
  let directive = options.directive || {};
  let receipts = options.receipts;
  let rows = new Map();
  let order = [];
  const view = { state: "all", parent: "all", sort: "order" };
  const tiles = new Map(); // unit id -> element

  const summaryLine = h("p", { id: "board-summary", class: "verdict", "aria-live": "polite" });
  const stats = h("div", { class: "board-stats", id: "board-stats" });
  const shown = h("p", { class: "small muted", id: "board-shown" });
  const resort = h("button", { type: "button", class: "btn btn-small", id: "board-resort", hidden: true, onclick: () => arrange() }, t("board_resort"));
  const grid = h("ul", { class: "board-grid", id: "board-grid", "aria-label": t("board_units") });

  const select = (idName, label, values, labeler, key) => h("label", { class: "board-filter" },
    h("span", { class: "small muted" }, label),
    h("select", { id: idName, onchange: (e) => { view[key] = e.target.value; arrange(); } },
      values.map((v) => h("option", { value: v, selected: view[key] === v }, labeler(v)))));

  const parentIds = () => [...new Set([...rows.values()].map((r) => r.parent_id).filter((p) => p !== null))];
  const unitName = (uid) => units.find((u) => u.id === uid)?.name || `#${uid}`;

  const controls = h("div", { class: "row board-controls" });
  const renderControls = () => fill(controls,
    select("board-state-filter", t("board_state"), ["all", "unacked", ...STATES, "overdue"],
      (v) => (v === "all" ? t("all_states") : v === "unacked" ? t("filter_unacked") : t(`state_${v}`)), "state"),
    select("board-parent-filter", t("parent_unit"), ["all", ...parentIds().map(String)],
      (v) => (v === "all" ? t("all_parents") : unitName(Number(v))), "parent"),
    select("board-sort", t("sort_by"), SORTS, (v) => t(`sort_${v}`), "sort"),
    resort);

  const matches = (row) => {
    if (view.parent !== "all" && String(row.parent_id) !== view.parent) return false;
    if (view.state === "all") return true;
    if (view.state === "unacked") return row.state !== "acknowledged";
    if (view.state === "overdue") return row.overdue;
    return row.state === view.state;
  };

  const compare = (a, b) => {
    if (view.sort !== "order") {
      const key = TIME_KEYS[view.sort];
      const ta = a[key] ? Date.parse(a[key]) : Infinity;
      const tb = b[key] ? Date.parse(b[key]) : Infinity;
      if (ta !== tb) return ta - tb;
    }
    // The units' own order (as the organisation lists them), then by name.
    return a.unit_id - b.unit_id || a.name.localeCompare(b.name, "vi", { numeric: true });
  };

  function renderStats() {
    const s = receipts.summary || {};
    const total = s.recipients || 0;
    const all = [...rows.values()];
    const unitsDone = all.filter((r) => r.state === "acknowledged").length;
    summaryLine.textContent = t("board_summary", { ack: unitsDone, total: all.length });
    const stat = (key, value, bad = false) => h("div", { class: `board-stat stat-${key}${bad ? " bad" : ""}` },
      h("div", { class: "stat-head" }, h("span", {}, t(`state_${key}`)), h("strong", {}, t("progress_of", { n: value ?? 0, total }))),
      progressBar(value, total, t(`state_${key}`)));
    fill(stats,
      stat("delivered", s.delivered), stat("read", s.read), stat("acknowledged", s.acknowledged),
      stat("overdue", s.overdue, (s.overdue || 0) > 0));
  }

  function renderTile(row) {
    let tile = tiles.get(row.unit_id);
    const content = tileContent(row, threadHref(row.unit_id));
    if (!tile) {
      tile = h("li", { dataset: { unit: row.unit_id } });
      tiles.set(row.unit_id, tile);
    }
    tile.className = tileClass(row);
    tile.dataset.state = row.state;
    tile.dataset.overdue = row.overdue ? "true" : "false";
    fill(tile, content);
    return tile;
  }

  /** Filter and sort anew (on the reader's request). */
  function arrange() {
    order = [...rows.values()].filter(matches).sort(compare).map((r) => r.unit_id);
    fill(grid, order.map((uid) => renderTile(rows.get(uid))));
    shown.textContent = t("board_shown", { n: order.length, total: rows.size });
    resort.hidden = true;
  }

  function compute() {
    rows = new Map(unitRows(receipts, units, directive).map((r) => [r.unit_id, r]));
  }

  compute();
  renderControls();
  renderStats();
  arrange();

  const due = directive.due_at ? h("span", {}, t("due", { time: formatTime(directive.due_at) })) : null;
  const root = h("div", { class: "board", dataset: { directive: id } },
    h("div", { class: "row" },
      h("h2", { class: "grow" }, t("board"), ": ", directive.title || `#${id}`),
      directive.urgency ? h("span", { class: `tag urg-${directive.urgency}` }, t(`urgency_${directive.urgency}`)) : null),
    h("p", { class: "small muted row" }, directive.issued_at ? h("span", {}, formatTime(directive.issued_at)) : null, due),
    summaryLine,
    stats,
    h("div", { class: "row" },
      h("button", { type: "button", class: "btn", id: "export-csv", onclick: onExport }, t("export_csv")),
      h("a", { class: "btn", href: `#directive/${id}` }, t("replies"))),
    controls,
    shown,
    grid);

  /** New receipts: counts and tiles change in place; the order stays. */
  function update(next, nextDirective) {
    receipts = next;
    if (nextDirective) directive = { ...directive, ...nextDirective };
    const before = rows;
    compute();
    renderStats();
    let moved = false;
    for (const row of rows.values()) {
      const old = before.get(row.unit_id);
      if (!tiles.has(row.unit_id) || !order.includes(row.unit_id)) {
        if (matches(row)) moved = true;
        continue;
      }
      if (!old || old.state !== row.state || old.overdue !== row.overdue || old.notes.join() !== row.notes.join()
          || old.delivered_at !== row.delivered_at || old.read_at !== row.read_at) {
        renderTile(row);
        if (!matches(row) || view.sort !== "order") moved = true;
      }
    }
    // The order is the reader's: offer to sort again rather than move tiles by themselves.
    if (moved) resort.hidden = false;
  }

  /** New counts from an event: the bars move before the details arrive. */
  function updateSummary(summary) {
    receipts = { ...receipts, summary: { ...(receipts.summary || {}), ...summary } };
    renderStats();
  }

  return { root, update, updateSummary };
}
