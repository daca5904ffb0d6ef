// The hall's big screen: what is presented, the current speaker and timer, and the result
// of a poll when it closes. No controls. /app/projector/#meeting/ID (or the meeting in
// session among the user's meetings).

import { t } from "./i18n.js";
import { clockText, fill, h, showError, startPage } from "./shell.js";
import { MeetingSession, findDocument, findItem, myMeetings, pageImage, pageWidthFor, secondsLeft } from "./meeting-state.js";

startPage("app_projector");
// The result stays on screen this long after a poll closes (or until something else is shown).
const RESULT_SECS = 120;
let meeting = null;
let timer = null;
let resultTimer = null;
let shownPage = null;

function renderPage(state) {
  const box = document.getElementById("proj-page");
  const p = state.presentation;
  if (!p || !p.document_id) {
    shownPage = null;
    fill(box, h("p", { class: "proj-title muted" }, t("projector_waiting")));
    return;
  }
  const key = `${p.document_id}/${p.page}`;
  if (key === shownPage) return;
  shownPage = key;
  const found = findDocument(state, p.document_id);
  const img = h("img", { alt: `${found?.doc?.title || ""} — ${t("page_of", { page: p.page, pages: found?.doc?.pages || "?" })}` });
  pageImage(p.document_id, p.page, pageWidthFor(Math.min(window.innerWidth, 1600))).then((url) => {
    if (shownPage !== key) return;
    img.src = url;
    box.dataset.page = String(p.page);
    box.dataset.file = String(p.document_id);
    fill(box, img);
  }).catch(showError);
}

function renderSide(state) {
  document.getElementById("proj-title").textContent = state.title;
  const item = findItem(state, state.current_agenda_item_id);
  document.getElementById("proj-item").textContent = item ? `${t("current_item")}: ${item.title}` : "";
  const current = state.speakers?.current;
  document.getElementById("proj-speaker").textContent = current ? t("speaking_now", { name: current.display_name }) : t("no_speaker");
  const q = state.quorum || {};
  document.getElementById("proj-quorum").textContent = `${t("quorum", { present: q.present ?? 0, required: q.required ?? 0 })} · ${q.reached ? t("quorum_reached") : t("quorum_not_reached")}`;
  clearInterval(timer);
  const tick = () => {
    const left = secondsLeft(current);
    const el = document.getElementById("proj-timer");
    el.textContent = left === null ? "" : clockText(left);
    el.classList.toggle("low", left !== null && left <= 30);
  };
  tick();
  if (current) timer = setInterval(tick, 500);
}

function showResult(poll) {
  const box = document.getElementById("proj-result");
  const result = poll.result || {};
  const tally = result.tally || {};
  const cast = result.numbers?.cast || Object.values(tally).reduce((a, b) => a + b, 0) || 1;
  const label = (c) => (poll.kind === "yes_no_abstain" ? t(`choice_${c}`) : c);
  fill(box, h("div", { class: "proj-result", dataset: { poll: poll.id } },
    h("h2", {}, `${t("vote_closed")}: ${poll.title}`),
    h("ul", { class: "result-bars" }, Object.entries(tally).map(([choice, n]) => h("li", { dataset: { choice } },
      h("span", {}, label(choice)), h("span", { class: "bar" }, h("span", { style: `width:${(100 * n) / cast}%` })), h("strong", { class: "count" }, n)))),
    result.numbers ? h("p", {}, `${t("cast", { cast: result.numbers.cast, eligible: result.numbers.members })} · ${t(`rule_${result.rule || poll.rule}`)}`) : null,
    h("p", { class: `verdict ${result.passed ? "passed" : "rejected"}`, style: "font-size: 3rem" }, result.passed ? t("passed") : t("rejected"))));
  clearTimeout(resultTimer);
  resultTimer = setTimeout(() => fill(box), RESULT_SECS * 1000);
}

function render(state, event) {
  renderPage(state);
  renderSide(state);
  if (event?.type === "poll.closed") {
    const poll = state.polls.find((p) => p.id === event.data.poll_id);
    if (poll) showResult(poll);
  }
  if (event?.type === "poll.opened" || event?.type === "presentation.changed") fill(document.getElementById("proj-result"));
}

async function start() {
  let id = Number((location.hash.match(/^#meeting\/(\d+)/) || [])[1]);
  if (!id) {
    const list = await myMeetings();
    const live = list.find((m) => m.state === "in_session") || list[0];
    if (!live) {
      fill(document.getElementById("proj-page"), h("p", { class: "proj-title" }, t("no_meetings")));
      return;
    }
    id = live.id;
  }
  meeting = new MeetingSession(id, { onChange: render });
  await meeting.start();
}

window.addEventListener("hashchange", () => location.reload());
start().catch(showError);
