// The one real-time client every page uses: /ws per the contract in DESIGN.md.
//
// - authenticates with the session token, then subscribes every followed topic from the
//   last seq this tab holds (kept in sessionStorage, so a reload resumes too);
// - hands each event to the page once: an event with seq <= the last one is ignored, a gap
//   makes it ask the server again from the last seq;
// - confirms what it holds with cumulative, debounced `received` frames;
// - reconnects after a drop with short exponential back-off and jitter (the first try
//   within half a second: a restarted server is back in a moment), and at once when the
//   browser says it is back online;
// - pings a quiet socket and drops it when nothing answers in time: a link that stops
//   passing data gives neither a close nor an `offline` event;
// - on `reset` (history pruned) asks the page to reload its state over REST;
// - carries a feature's ops (`read`, `ack`) and hands back their answers by `ref`
//   (`request`); the page falls back to HTTP when the socket cannot.

// Back-off after a drop: from BACKOFF_MIN_MS doubling up to BACKOFF_MAX_MS, each wait
// drawn between half and all of it so that a hall of tablets does not reconnect in step.
// The cap is short: a server restart takes seconds, and a tablet must not sit out the
// start of a vote behind a long wait (a hall of 100 tablets at one try per 1–2 s is light).
const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 2_000;
// `received` is sent at most this often per topic (it is cumulative).
const RECEIVED_DEBOUNCE_MS = 150;
// A socket quiet for PING_IDLE_MS gets a ping; no frame of any kind within
// PONG_DEADLINE_MS of that ping: the socket is dead. Checked every HEARTBEAT_TICK_MS, so a
// dead link shows as offline at most 1 + 2 + 2 × 0.5 = 4 s after its last frame.
const PING_IDLE_MS = 1_000;
const PONG_DEADLINE_MS = 2_000;
const HEARTBEAT_TICK_MS = 500;
// A socket not ready (opened and authenticated) within this long is given up and retried:
// a half-open link can leave it connecting for minutes.
const CONNECT_DEADLINE_MS = 5_000;

const CLOSE_AUTH = 4401;
// An op sent over the socket and not answered within this is given up: the page falls back
// to HTTP (`read` and `ack` are idempotent, so a late answer changes nothing).
const OP_ANSWER_MS = 10_000;

/** An op that never reached the server, or whose answer was lost: try it over HTTP. */
export class OpNotSent extends Error {}

export class Realtime extends EventTarget {
  /**
   * @param {object} options
   * @param {() => string|null} options.token  gives the current bearer token
   * @param {string|number} options.userId    to keep positions per user
   * @param {(event) => void} [options.onEvent]   every new event, once, in seq order
   * @param {(topic, seq) => Promise|void} [options.onReset]  reload state of that topic
   * @param {(signal) => void} [options.onSignal]  ephemeral frames (typing, presence)
   * @param {(status) => void} [options.onStatus]  "connecting" | "online" | "offline"
   * @param {() => void} [options.onAuthFailed]
   */
  constructor(options) {
    super();
    this.options = options;
    this.storageKey = `dh.rt.${options.userId}`;
    this.last = this._load();
    this.followed = new Set();
    this.ws = null;
    this.status = "offline";
    this.attempt = 0;
    this.timer = null;
    this.pendingReceived = new Map();
    this.receivedTimer = null;
    this.heartbeat = null;
    this.lastFrameAt = 0;
    this.stopped = false;
    this.everOnline = false;
    this.resyncing = new Set();
    // Ops sent and not answered yet, by ref.
    this.pending = new Map();
    this.nextRef = 0;
    // Resolves at the first `ready`: a page that loads its user:/unit: state after this
    // cannot miss an event between its REST read and the stream's starting point.
    this.firstReady = new Promise((resolve) => (this._resolveReady = resolve));
    window.addEventListener("online", () => this._reconnectSoon(0));
    window.addEventListener("offline", () => this._drop("browser offline"));
  }

  _load() {
    try {
      return new Map(Object.entries(JSON.parse(sessionStorage.getItem(this.storageKey) || "{}")));
    } catch {
      return new Map();
    }
  }

  _save() {
    sessionStorage.setItem(this.storageKey, JSON.stringify(Object.fromEntries(this.last)));
  }

  /** The last seq this tab holds for a topic (0 when none). */
  seq(topic) {
    return this.last.get(topic) || 0;
  }

  /**
   * Follow a topic. `fromSeq` is the seq of a state just loaded over REST: events up to it
   * are in that state.
   */
  follow(topic, fromSeq) {
    // The page has just loaded its state for this topic at `fromSeq`: that is where the
    // stream continues. Without a seq, continue from what this tab holds.
    if (typeof fromSeq === "number" && fromSeq >= 0 && fromSeq !== this.seq(topic)) {
      this.last.set(topic, fromSeq);
      this._save();
    }
    const known = this.followed.has(topic);
    this.followed.add(topic);
    if (this.status === "online" && (!known || typeof fromSeq === "number")) {
      this._send({ op: "subscribe", topics: { [topic]: this.seq(topic) } });
    }
  }

  unfollow(topic) {
    this.followed.delete(topic);
    if (this.status === "online") this._send({ op: "unsubscribe", topics: [topic] });
  }

  /** Send an ephemeral signal, e.g. typing: only while online; never queued. */
  signal(topic, type, data = {}) {
    if (this.status === "online") this._send({ op: "signal", topic, type, data });
  }

  /**
   * Send an op (`{op, ...fields, ref}`) and wait for its answer: resolves with the answer's
   * `data`; rejects with the error frame (`{code, message}`) when the server refused it,
   * or with `OpNotSent` when the socket is not online or the answer does not come.
   */
  request(op, fields = {}) {
    return new Promise((resolve, reject) => {
      if (this.status !== "online") return reject(new OpNotSent("offline"));
      const ref = `${op}-${++this.nextRef}`;
      if (!this._send({ ...fields, op, ref })) return reject(new OpNotSent("offline"));
      const timer = setTimeout(() => this._answer(ref, new OpNotSent("no answer")), OP_ANSWER_MS);
      this.pending.set(ref, { resolve, reject, timer });
    });
  }

  _answer(ref, error, data) {
    const waiting = this.pending.get(ref);
    if (!waiting) return false;
    this.pending.delete(ref);
    clearTimeout(waiting.timer);
    if (error) waiting.reject(error);
    else waiting.resolve(data);
    return true;
  }

  _abandonRequests() {
    for (const ref of [...this.pending.keys()]) this._answer(ref, new OpNotSent("socket lost"));
  }

  start() {
    this.stopped = false;
    this._connect();
  }

  /** Wait for the first `ready`, at most `ms` (then go on: the page works offline too). */
  whenReady(ms = 5000) {
    return Promise.race([this.firstReady, new Promise((resolve) => setTimeout(resolve, ms))]);
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close(1000);
  }

  _setStatus(status) {
    if (this.status === status) return;
    this.status = status;
    this.options.onStatus?.(status);
    this.dispatchEvent(new CustomEvent("status", { detail: status }));
  }

  _send(frame) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(frame));
      return true;
    }
    return false;
  }

  _connect() {
    if (this.stopped) return;
    if (this.ws && this.ws.readyState <= WebSocket.OPEN) return;
    const token = this.options.token();
    if (!token) {
      this.options.onAuthFailed?.();
      return;
    }
    this._setStatus("connecting");
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    let ws;
    try {
      ws = new WebSocket(`${scheme}://${location.host}/ws`);
    } catch {
      this._scheduleReconnect();
      return;
    }
    this.ws = ws;
    clearTimeout(this.connectTimer);
    this.connectTimer = setTimeout(() => {
      if (ws === this.ws && this.status !== "online") this._drop("not ready in time");
    }, CONNECT_DEADLINE_MS);
    ws.onopen = () => ws.send(JSON.stringify({ op: "auth", token }));
    ws.onmessage = (message) => {
      if (ws !== this.ws) return;
      this.lastFrameAt = Date.now();
      let frame;
      try {
        frame = JSON.parse(message.data);
      } catch {
        return;
      }
      this._handle(frame);
    };
    ws.onclose = (event) => {
      if (ws !== this.ws) return;
      this.ws = null;
      this._abandonRequests();
      this._stopHeartbeat();
      this._setStatus("offline");
      if (event.code === CLOSE_AUTH) {
        this.options.onAuthFailed?.();
        return;
      }
      this._scheduleReconnect();
    };
    ws.onerror = () => {
      /* onclose follows */
    };
  }

  _drop(reason) {
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.onclose = null;
      try {
        ws.close(4000, reason);
      } catch {
        /* already closing */
      }
    }
    this._abandonRequests();
    this._stopHeartbeat();
    this._setStatus("offline");
    this._scheduleReconnect();
  }

  _scheduleReconnect() {
    if (this.stopped) return;
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** this.attempt);
    this.attempt += 1;
    this._reconnectSoon(base / 2 + Math.random() * (base / 2));
  }

  _reconnectSoon(delay) {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this._connect(), delay);
  }

  _startHeartbeat() {
    this._stopHeartbeat();
    this.pingSentAt = 0;
    this.lastFrameAt = Date.now();
    this.heartbeat = setInterval(() => {
      const now = Date.now();
      const waiting = this.pingSentAt > this.lastFrameAt;
      if (waiting && now - this.pingSentAt >= PONG_DEADLINE_MS) {
        this._drop("no answer to ping");
        return;
      }
      if (!waiting && now - this.lastFrameAt >= PING_IDLE_MS) {
        this.pingSentAt = now;
        this._send({ op: "ping" });
      }
    }, HEARTBEAT_TICK_MS);
  }

  _stopHeartbeat() {
    clearInterval(this.heartbeat);
    this.heartbeat = null;
  }

  _handle(frame) {
    switch (frame.op) {
      case "ready":
        return this._ready(frame);
      case "event":
        return this._event(frame);
      case "reset":
        return this._reset(frame);
      case "signal":
        return this.options.onSignal?.(frame);
      case "ok":
        this._answer(frame.ref, null, frame.data);
        return;
      case "error":
        if (frame.ref != null && this._answer(frame.ref, frame)) return;
        this.dispatchEvent(new CustomEvent("error", { detail: frame }));
        return;
      case "subscribed":
        this.resyncing.delete(frame.topic);
        // Confirm what we hold on this socket (a confirmation lost in a drop is resent).
        if (this.seq(frame.topic) > 0) this._queueReceived(frame.topic, this.seq(frame.topic));
        return;
      default:
        return; // pong
    }
  }

  _ready(frame) {
    this.attempt = 0;
    this.resyncing.clear();
    this.userId = frame.user_id;
    this._startHeartbeat();
    // The server subscribed user: and unit: from their current seq. Resume them from ours
    // when we hold a position; otherwise the current seq is where this tab starts.
    const topics = {};
    for (const [topic, current] of Object.entries(frame.topics || {})) {
      this.followed.add(topic);
      if (this.last.has(topic)) {
        if (this.seq(topic) !== current) topics[topic] = this.seq(topic);
        else if (current > 0) this._queueReceived(topic, current);
      } else {
        this.last.set(topic, current);
      }
    }
    for (const topic of this.followed) {
      if (!(topic in (frame.topics || {}))) topics[topic] = this.seq(topic);
    }
    this._save();
    if (Object.keys(topics).length) this._send({ op: "subscribe", topics });
    const back = this.everOnline;
    this.everOnline = true;
    this._resolveReady();
    this._setStatus("online");
    if (back) this.dispatchEvent(new CustomEvent("resumed"));
  }

  _event(frame) {
    const last = this.seq(frame.topic);
    if (frame.seq <= last) return; // already have it
    if (frame.seq > last + 1) {
      // A gap: ask again from what we hold (once until the server answers `subscribed`);
      // the log fills it in order.
      if (!this.resyncing.has(frame.topic)) {
        this.resyncing.add(frame.topic);
        this._send({ op: "subscribe", topics: { [frame.topic]: last } });
      }
      return;
    }
    this.last.set(frame.topic, frame.seq);
    this._save();
    this._queueReceived(frame.topic, frame.seq);
    try {
      this.options.onEvent?.(frame);
    } finally {
      this.dispatchEvent(new CustomEvent("event", { detail: frame }));
    }
  }

  async _reset(frame) {
    this.last.set(frame.topic, frame.seq);
    this._save();
    this._queueReceived(frame.topic, frame.seq);
    await this.options.onReset?.(frame.topic, frame.seq);
  }

  _queueReceived(topic, seq) {
    this.pendingReceived.set(topic, seq);
    if (this.receivedTimer) return;
    this.receivedTimer = setTimeout(() => {
      this.receivedTimer = null;
      for (const [t, s] of this.pendingReceived) this._send({ op: "received", topic: t, seq: s });
      this.pendingReceived.clear();
    }, RECEIVED_DEBOUNCE_MS);
  }
}
