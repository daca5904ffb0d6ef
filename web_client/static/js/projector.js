// The hall's big screen: what is presented, the current speaker and timer; while a vote is
// open its question, rule and the running count of ballots cast (never a choice); when it
// closes the result, for the time the server's settings say, then the speaker again. No
// controls. /app/projector/#meeting/ID (or the meeting in session among the user's).

import { api } from "./api.js";
import { formatTime, t } from "./i18n.js";
import { clockText, fill, h, showError, startPage } from "./shell.js";
import { MeetingSession, findDocument, findItem, myMeetings, pageImage, pageWidthFor, secondsLeft } from "./meeting-state.js";
import { progressLine, resultBlock, secrecyTag } from "./poll-view.js";
import { RemoteAttendance } from "./remote.js";
import { FloorVideo, videoArea } from "./media-video.js";
import { remoteTag } from "./remote-tag.js";

startPage("app_projector");
// The result stays on screen this long after a poll closes (the server's setting; this is
// only the value used until it has been read).
let resultSecs = 60;
let meeting = null;
let timer = null;
let resultTimer = null;
let shownPage = null;
// The poll whose result is on screen, until its time is up.
let resultPoll = null;

function renderPage(state) {
  const box = document.getElementById("proj-page");
  const p = state.presentation;
  if (!p || !p.document_id) {
    shownPage = null;
    delete box.dataset.page;
    fill(box, h("div", { class: "proj-waiting" },
      h("p", { class: "proj-big" }, state.title),
      h("p", { class: "proj-title" }, state.state === "scheduled" ? t("projector_not_started", { time: formatTime(state.starts_at) }) : t("projector_waiting")),
      state.place ? h("p", { class: "proj-title" }, state.place) : null));
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
  // A remote speaker is marked as such, with their connection (and a paused timer).
  fill(document.getElementById("proj-speaker"), current ? t("speaking_now", { name: current.display_name }) : t("no_speaker"),
    current ? " " : null, current ? remoteTag(state, current.user_id) : null,
    current?.paused ? h("span", { class: "tag tag-order", id: "proj-paused" }, " ", t("speaker_paused")) : null);
  document.body.dataset.speaking = current ? "1" : "0";
  const q = state.quorum || {};
  document.getElementById("proj-quorum").textContent = `${t("quorum", { present: q.present ?? 0, members: q.members ?? 0, required: q.required ?? 0 })} · ${q.reached ? t("quorum_reached") : t("quorum_not_reached")}`;
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

/** Over everything: the open vote (question, rule, count), or a result in its time. */
function renderOverlay(state) {
  const box = document.getElementById("proj-result");
  const open = state.polls.find((p) => p.state === "open");
  if (open) {
    const figures = { cast: open.cast ?? 0, present: state.quorum?.present ?? 0, members: state.quorum?.members ?? 0 };
    document.body.dataset.view = "vote";
    fill(box, h("div", { class: "proj-overlay proj-vote", dataset: { poll: open.id } },
      h("p", { class: "proj-kicker" }, t("projector_voting")),
      h("h2", {}, open.title),
      h("p", { class: "proj-meta" }, secrecyTag(open), " ", t(`rule_${open.rule}`)),
      h("p", { class: "proj-count", id: "proj-count" }, progressLine(open, figures))));
    return;
  }
  const poll = resultPoll && state.polls.find((p) => p.id === resultPoll && p.state === "closed" && p.result);
  if (poll) {
    document.body.dataset.view = "result";
    fill(box, h("div", { class: "proj-overlay proj-result", dataset: { poll: poll.id } },
      h("h2", {}, `${t("vote_closed")}: ${poll.title}`),
      h("p", { class: "proj-meta" }, secrecyTag(poll)),
      resultBlock(poll, poll.result)));
    return;
  }
  document.body.dataset.view = state.speakers?.current ? "speaker" : state.presentation?.document_id ? "presenting" : state.state === "scheduled" ? "waiting" : "presenting";
  fill(box);
}

// The speaker's video (a remote delegate's camera, or the hall camera) while the sitting
// runs: the projector joins the media as a viewer, receiving only; its sound stays muted
// (the hall hears the floor through its own loudspeakers).
let viewer = null;

function followVideo(state) {
  const box = document.getElementById("proj-video");
  if (!viewer) {
    const sound = h("audio", { id: "proj-audio", autoplay: true });
    sound.muted = true;
    document.body.append(sound);
    viewer = new RemoteAttendance(state.id, sound);
    fill(box, videoArea({ preview: false }));
    new FloorVideo(viewer);
    viewer.addEventListener("change", () => { box.dataset.state = viewer.state; });
  }
  if (state.state === "in_session" && viewer.state === "idle") viewer.join({ kind: "viewer" });
  if (state.state !== "in_session" && viewer.active) viewer.leave();
}

function render(state, event) {
  renderPage(state);
  renderSide(state);
  followVideo(state);
  if (event?.type === "poll.closed") {
    resultPoll = event.data.poll_id;
    clearTimeout(resultTimer);
    resultTimer = setTimeout(() => {
      resultPoll = null;
      if (meeting?.state) renderOverlay(meeting.state);
    }, resultSecs * 1000);
  }
  if (event?.type === "poll.opened") resultPoll = null;
  renderOverlay(state);
}

async function start() {
  try {
    resultSecs = (await api("display")).projector_result_secs ?? resultSecs;
  } catch {
    /* an older server: keep the default */
  }
  document.body.dataset.resultSecs = String(resultSecs);
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
