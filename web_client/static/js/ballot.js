// Casting a ballot from a tablet or the chair's panel, and what this tab remembers of it.
//
// - A ballot is sent with an idempotency key kept until its fate is known: when the answer
//   is lost (network down, server restarting) the same key and choice are sent again, with
//   back-off, until the server says counted or refused; a replay gets the first answer.
// - What is kept lives in sessionStorage under the voter's id (a reload finds the receipt
//   again; closing the tab or signing out removes it) and never holds the choice of a
//   secret ballot: that stays in this page's memory only, for the retries.

import { api, randomId } from "./api.js";

// Retries of a ballot whose answer was lost: from RETRY_MIN_MS doubling to RETRY_MAX_MS,
// each wait drawn between half and all of it (a hall of tablets does not retry in step).
const RETRY_MIN_MS = 500;
const RETRY_MAX_MS = 5_000;
// No answer (0), too busy (429) or a server failure (5xx): the fate of the ballot is not
// known, so the same ballot is sent again.
const retryable = (status) => status === 0 || status === 429 || status >= 500;

export class BallotBook {
  constructor(userId) {
    this.key = `dh.ballots.${userId}`;
    // Earlier versions kept ballots, choices included, in localStorage: remove them.
    for (const key of Object.keys(localStorage)) if (key.startsWith("dh.ballots.")) localStorage.removeItem(key);
    // Choices of secret ballots while they are being sent: memory only.
    this.secretChoices = new Map();
  }

  all() {
    try {
      return JSON.parse(sessionStorage.getItem(this.key) || "{}");
    } catch {
      return {};
    }
  }

  get(pollId) {
    const entry = this.all()[pollId];
    if (!entry) return undefined;
    const choice = this.secretChoices.get(Number(pollId));
    return choice === undefined ? entry : { ...entry, choice };
  }

  /** Merge into the entry of a poll; the choice of a secret poll is kept in memory only. */
  set(poll, entry) {
    const all = this.all();
    const next = { ...(all[poll.id] || {}), ...entry };
    if (poll.secret) {
      if ("choice" in entry) this.secretChoices.set(poll.id, entry.choice);
      delete next.choice;
      next.secret = true;
    }
    all[poll.id] = next;
    sessionStorage.setItem(this.key, JSON.stringify(all));
    return this.get(poll.id);
  }
}

/**
 * Send a ballot until its fate is known. `onChange(entry)` is called on every step; the
 * entry's `status` is "sending", "unknown" (answer lost: retrying), "counted" (with a
 * receipt), "already" (voted before, from another device) or "refused" (with `code`).
 * `wake` is an EventTarget whose "wake" event retries at once (the socket is back).
 */
export async function sendBallot(book, poll, choice, { onChange = () => {}, wake = null } = {}) {
  const key = book.get(poll.id)?.idempotency_key || randomId();
  onChange(book.set(poll, { idempotency_key: key, choice, status: "sending", code: undefined }));
  for (let attempt = 0; ; attempt += 1) {
    try {
      const answer = await api(`polls/${poll.id}/ballots`, { method: "POST", body: { choice, idempotency_key: key } });
      const entry = book.set(poll, { receipt: answer.receipt, choice, status: "counted" });
      onChange(entry);
      return entry;
    } catch (err) {
      const status = typeof err.status === "number" ? err.status : 0;
      if (err.code === "already_voted") {
        const entry = book.set(poll, { status: "already" });
        onChange(entry);
        return entry;
      }
      if (!retryable(status)) {
        // Refused for good (closed, not checked in): a new try is a new ballot.
        const entry = book.set(poll, { status: "refused", code: err.code || `http_${status}`, idempotency_key: undefined });
        onChange(entry);
        return entry;
      }
      onChange(book.set(poll, { status: "unknown" }));
      const base = Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** attempt);
      await new Promise((resolve) => {
        const timer = setTimeout(done, base / 2 + Math.random() * (base / 2));
        function done() {
          clearTimeout(timer);
          wake?.removeEventListener("wake", done);
          resolve();
        }
        wake?.addEventListener("wake", done);
      });
    }
  }
}

/** Remove everything this device keeps for signed-in users (on sign-out). */
export function forgetUserData() {
  for (const store of [localStorage, sessionStorage]) {
    for (const key of Object.keys(store)) {
      // The language is a choice of the device, not of a user.
      if (key.startsWith("dh.") && key !== "dh.lang") store.removeItem(key);
    }
  }
  // The delegate tablet's offline copies (documents, meeting state: js/offline.js); the
  // answer settles once they are gone.
  if (!("caches" in window)) return Promise.resolve();
  return caches.keys()
    .then((names) => Promise.all(names.filter((n) => n.startsWith("dh-delegate-")).map((n) => caches.delete(n))))
    .catch(() => {});
}
