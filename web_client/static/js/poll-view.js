// How a poll reads on every screen (tablet, chair's panel, projector): its secrecy, the
// count of ballots against the base its rule counts on, and the result with percentages,
// one line per candidate for an election.

import { lang, t } from "./i18n.js";
import { h } from "./shell.js";

/** "members" when the rule counts against all delegates, else "cast". */
export function ruleBase(rule) {
  return rule === "majority_of_cast" ? "cast" : "members";
}

export function percent(part, whole) {
  if (!whole) return "—";
  const value = new Intl.NumberFormat(lang() === "vi" ? "vi-VN" : "en-GB", { maximumFractionDigits: 1 }).format((100 * part) / whole);
  // A no-break space: "28,1 %" never leaves its "%" alone on the next line.
  return `${value}\u00a0%`;
}

/** The secret / named label every ballot carries. */
export function secrecyTag(poll, extra = {}) {
  return h("span", { class: `tag secrecy ${poll.secret ? "secrecy-secret" : "secrecy-named"}`, dataset: { secret: poll.secret ? "1" : "0" }, ...extra },
    poll.secret ? t("poll_secret_label") : t("poll_named_label"));
}

export function choiceText(poll, choice) {
  return poll.kind === "yes_no_abstain" ? t(`choice_${choice}`) : choice;
}

/**
 * The running count of an open poll: ballots cast against the rule's base.
 * `figures`: {cast, present, members}. Member rules count against all delegates; the
 * cast rule against those present (who may vote).
 */
export function progressLine(poll, { cast = 0, present = 0, members = 0 }) {
  const base = ruleBase(poll.rule) === "members" ? members : present;
  const key = ruleBase(poll.rule) === "members" ? "poll_progress_members" : "poll_progress_present";
  return t(key, { cast, base, percent: percent(cast, base) });
}

/** The result of a closed poll: verdict, per option count and share of the base. */
export function resultBlock(poll, result, { id } = {}) {
  const numbers = result.numbers || {};
  const baseKey = ruleBase(result.rule || poll.rule);
  const base = baseKey === "members" ? numbers.members : numbers.cast;
  const tally = result.tally || {};
  const election = poll.kind === "choice";
  const elected = new Set(result.elected || []);
  const undecided = new Set(result.undecided || []);
  const rows = Object.entries(tally).map(([choice, n]) => {
    let verdict = null;
    if (election) {
      const state = elected.has(choice) ? "elected" : undecided.has(choice) ? "undecided" : "not_elected";
      verdict = h("span", { class: `tag verdict-tag verdict-${state}`, dataset: { verdict: state } }, t(`poll_${state}`));
    }
    return h("li", { dataset: { choice } },
      h("span", { class: "choice-label" }, choiceText(poll, choice)),
      h("span", { class: "bar", "aria-hidden": "true" }, h("span", { style: `width:${base ? Math.min(100, (100 * n) / base) : 0}%` })),
      h("strong", { class: "count" }, String(n)),
      h("span", { class: "percent" }, percent(n, base)),
      verdict);
  });
  return h("div", { class: "poll-result", id },
    election ? null : h("p", { class: `verdict ${result.passed ? "passed" : "rejected"}` }, result.passed ? t("passed") : t("rejected")),
    h("ul", { class: "result-bars" }, rows),
    h("p", { class: "small result-numbers" },
      t("poll_result_numbers", { cast: numbers.cast ?? 0, present: numbers.present ?? 0, members: numbers.members ?? 0 }),
      " · ", t(`rule_${result.rule || poll.rule}`),
      result.threshold ? ` · ${t("poll_threshold", { threshold: result.threshold })}` : "",
      " · ", t(baseKey === "members" ? "poll_percent_of_members" : "poll_percent_of_cast")));
}
