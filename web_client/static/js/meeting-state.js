// One meeting's state, kept current: loaded from GET /api/v1/meetings/{id} (with its seq on
// meeting:{id}), then changed by every event after that seq. Shared by the delegate app,
// the chair panel and the projector. The convergence test runs this very reducer in a
// browser: a state plus the events after its seq must equal the state fetched at the end.

import { api, blobUrl, listOf } from "./api.js";
import { canWebp, pageImagePath, pageWidthFor } from "./early.js";
import { connectRealtime } from "./shell.js";

/** Walk the agenda tree (depth first, in order). */
export function* agendaItems(agenda) {
  for (const item of agenda || []) {
    yield item;
    yield* agendaItems(item.children);
  }
}

export function findItem(state, id) {
  for (const item of agendaItems(state?.agenda)) if (item.id === id) return item;
  return null;
}

export function findDocument(state, documentId) {
  for (const item of agendaItems(state?.agenda)) {
    for (const doc of item.documents || []) if (doc.id === documentId) return { item, doc };
  }
  return null;
}

export function participant(state, userId) {
  return (state?.participants || []).find((p) => p.user_id === userId) || null;
}

/** Seconds left of the running speech (server's ends_at against this clock); a paused
 *  speech's timer stands still at what was left when it paused. */
export function secondsLeft(speaker) {
  if (speaker?.paused) return speaker.remaining_secs;
  if (!speaker || !speaker.ends_at) return null;
  return (Date.parse(speaker.ends_at) - Date.now()) / 1000;
}

/** A state as loaded over REST, in the shape the reducer keeps it. */
export function initialState(state) {
  state.polls = state.polls || [];
  return state;
}

export class MeetingSession extends EventTarget {
  /**
   * @param {number} meetingId
   * @param {object} hooks  onChange(state, event|null), onEvent(event)
   */
  constructor(meetingId, { onChange, onEvent, realtime } = {}) {
    super();
    this.id = meetingId;
    this.topic = `meeting:${meetingId}`;
    this.state = null;
    this.onChange = onChange || (() => {});
    this.onEventHook = onEvent || (() => {});
    this.realtime = realtime || null;
  }

  async load() {
    const state = initialState(await api(`meetings/${this.id}`));
    this.state = state;
    this.onChange(state, null);
    return state;
  }

  /** Load the state, then follow the meeting's topic from the state's seq. */
  async start() {
    if (!this.realtime) {
      this.realtime = connectRealtime({
        onEvent: (event) => this.apply(event),
        onReset: () => this.reload(),
      });
    }
    const state = await this.load();
    this.realtime.follow(this.topic, state.seq);
    return state;
  }

  async reload() {
    const state = await this.load();
    this.realtime?.follow(this.topic, state.seq);
  }

  /** Apply one event of meeting:{id} to the state. */
  apply(event) {
    if (event.topic !== this.topic || !this.state) {
      this.onEventHook(event);
      return;
    }
    const s = this.state;
    const d = event.data || {};
    switch (event.type) {
      case "meeting.state_changed":
        s.state = d.state;
        s.started_at = d.started_at;
        s.closed_at = d.closed_at;
        break;
      case "meeting.updated":
        for (const key of ["title", "starts_at", "place", "speech_limit_secs"]) if (key in d) s[key] = d[key];
        if (d.quorum && typeof d.quorum === "object" && "present" in d.quorum) s.quorum = d.quorum;
        break;
      case "agenda.changed":
        s.agenda = d.agenda;
        break;
      case "agenda.current_changed":
        s.current_agenda_item_id = d.agenda_item_id;
        break;
      case "presentation.changed":
        s.presentation = d.presentation;
        break;
      case "presenter.changed":
        s.presenter_id = d.presenter_id;
        break;
      case "media.quality":
      case "media.muted":
      case "media.unmute_requested":
      case "attendance.changed": {
        if (d.participant) {
          const index = s.participants.findIndex((p) => p.user_id === d.participant.user_id);
          if (index >= 0) s.participants[index] = d.participant;
          else s.participants.push(d.participant);
        }
        if (d.quorum) s.quorum = d.quorum;
        break;
      }
      case "participants.changed":
        // Someone joined, left or changed role: the list, the quorum and maybe my own role.
        s.participants = d.participants;
        s.quorum = d.quorum;
        if (s.you && d.user_id === s.you.user_id) s.you.role = participant(s, d.user_id)?.role ?? null;
        break;
      case "poll.created":
        this._upsertPoll({ cast: 0, ...d.poll });
        break;
      case "poll.opened":
        this._upsertPoll(d.poll);
        break;
      case "poll.progress":
        this._upsertPoll({ id: d.poll_id, cast: d.cast });
        break;
      case "poll.closed":
        // Progress is coalesced: the count at close is the result's.
        this._upsertPoll({ id: d.poll_id, state: d.state || "closed", closed_at: d.closed_at, result: d.result,
          ...(d.result?.numbers ? { cast: d.result.numbers.cast } : {}) });
        break;
      default:
        if (event.type.startsWith("speaker") && d.speakers) s.speakers = d.speakers;
        break;
    }
    s.seq = event.seq;
    this.onEventHook(event);
    this.onChange(s, event);
  }

  _upsertPoll(poll) {
    const polls = this.state.polls;
    const index = polls.findIndex((p) => p.id === poll.id);
    if (index >= 0) polls[index] = { ...polls[index], ...poll };
    else polls.push(poll);
  }
}

/** My meetings (GET /api/v1/meetings). */
export async function myMeetings() {
  return listOf(await api("meetings"), "meetings");
}

// --- rendered page images, fetched with the token and cached as object URLs -------------
// Which format and width (in steps shared with the server's WebP steps, so a pre-downloaded
// page and a viewed one share one address): early.js, which asks for the presented page
// before this module has arrived.
export { canWebp, pageImagePath, pageWidthFor };
const pageCache = new Map();
// Keep at most this many page images in memory (a 300-page budget is a lot of pixels).
const PAGE_CACHE_MAX = 60;

export function pageImage(fileId, page, width) {
  const key = `${fileId}/${page}/${width}`;
  if (!pageCache.has(key)) {
    const promise = blobUrl(pageImagePath(fileId, page, width));
    promise.catch(() => pageCache.delete(key));
    pageCache.set(key, promise);
    if (pageCache.size > PAGE_CACHE_MAX) {
      const [oldest, old] = pageCache.entries().next().value;
      pageCache.delete(oldest);
      old.then((url) => URL.revokeObjectURL(url)).catch(() => {});
    }
  }
  return pageCache.get(key);
}

