// Remote attendance over WebRTC: take the microphone (and the camera if asked), offer with
// ICE fully gathered to POST /api/v1/meetings/{id}/media, play the floor the server sends,
// mute, leave with DELETE (also when the page goes away). No STUN: a hall's LAN needs none.
//
// A dropped connection shows as "reconnecting" within a few seconds: ICE `disconnected` or
// `failed`, or no audio packet for NO_AUDIO_MS (the floor always sends packets, silence
// included). It then comes back by itself: first the same connection is given
// RECOVER_MS to recover (ICE consent checks resume when the network does; the server's
// aiortc cannot restart ICE), then a new session is offered with the same microphone,
// again and again with back-off until the network answers. The server supersedes the stale
// session and keeps the floor of a speaker for its grace period.

import { ApiError, api, session } from "./api.js";

// How often the received audio's level and packet count are read (ms). A drop is seen at
// most this long after its last packet plus NO_AUDIO_MS: within 2 s, well inside the 3 s in
// which the tablet must show it.
const STATS_EVERY_MS = 250;
// Longest wait for ICE gathering before the offer goes with what was gathered (ms).
const GATHER_TIMEOUT_MS = 10_000;
// No audio packet for this long while listening: the connection is shown as lost (ms).
const NO_AUDIO_MS = 1_500;
// How long a lost connection is given to recover by itself before a new session (ms).
const RECOVER_MS = 4_000;
// Back-off between attempts at a new session: doubled from the first up to the last (ms).
const REJOIN_FIRST_MS = 1_000;
const REJOIN_MAX_MS = 5_000;
// Refusals a retry cannot fix: rejoining stops and the error is shown.
const FINAL_CODES = new Set(["not_a_participant", "meeting_closed", "meeting_not_found", "unauthorized", "invalid_token", "missing_token", "removed"]);

/** Wait until the connection has gathered all its candidates (or the timeout). */
function iceGathered(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (pc.iceGatheringState !== "complete") return;
      pc.removeEventListener("icegatheringstatechange", done);
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      pc.removeEventListener("icegatheringstatechange", done);
      resolve();
    }, GATHER_TIMEOUT_MS);
    pc.addEventListener("icegatheringstatechange", done);
  });
}

/**
 * One remote attendance of a meeting. Events (CustomEvent "change", detail = this) fire on
 * every state change: idle → connecting → listening → idle, listening → reconnecting →
 * listening, or error (with `errorCode`).
 */
export class RemoteAttendance extends EventTarget {
  constructor(meetingId, audio) {
    super();
    this.meetingId = meetingId;
    this.audio = audio; // an <audio autoplay> element the floor plays in
    this.state = "idle";
    this.errorCode = null;
    this.sessionId = null;
    this.muted = false;
    this.video = false;
    this.kind = "participant";
    this.level = 0; // received audio level, 0..1
    this.packets = 0; // received audio packets
    this.pc = null;
    this.local = null;
    this._stats = null;
    this._lastPackets = 0;
    this._lastPacketAt = 0;
    this._rejoin = null; // timer of the next rejoin step
    this._rejoinDelay = REJOIN_FIRST_MS;
    this.rejoins = 0; // new sessions made after a drop
    this._onPageHide = () => this.leave({ unloading: true });
    this._onOnline = () => {
      if (this.state === "reconnecting") this._scheduleRejoin(0);
    };
  }

  get active() {
    return this.state === "connecting" || this.state === "listening" || this.state === "reconnecting";
  }

  _set(state, errorCode = null) {
    this.state = state;
    this.errorCode = errorCode;
    this.dispatchEvent(new CustomEvent("change", { detail: this }));
  }

  /**
   * Join: getUserMedia, offer (ICE gathered), answer; `video` adds the camera (true or
   * constraints), `audio` the microphone's constraints. `kind`: "participant", "hall"
   * (the sound desk) or "viewer" (the projector: takes no microphone, only receives).
   */
  async join({ video = false, audio = true, kind = "participant" } = {}) {
    if (this.active) return;
    this.video = !!video;
    this.kind = kind;
    this.muted = false;
    this._set("connecting");
    try {
      this.local = kind === "viewer" ? new MediaStream() : await navigator.mediaDevices.getUserMedia({ audio, video });
    } catch (err) {
      this._cleanup();
      const code = err?.name === "NotAllowedError" || err?.name === "SecurityError" ? "mic_denied" : "mic_missing";
      this._set("error", code);
      return;
    }
    window.addEventListener("online", this._onOnline);
    await this._connect({ rejoining: false });
  }

  /** Offer a new session with the microphone already taken; a rejoin keeps trying. */
  async _connect({ rejoining }) {
    // One transport for audio and video (the server bundles them): one port to reach.
    const pc = new RTCPeerConnection({ iceServers: [], bundlePolicy: "max-bundle" });
    this.pc = pc;
    for (const track of this.local.getTracks()) pc.addTrack(track, this.local);
    if (this.kind === "viewer") pc.addTransceiver("audio", { direction: "recvonly" });
    // A camera-less tablet still receives the speaker's video (shown by media-video.js).
    if (!this.video) pc.addTransceiver("video", { direction: "recvonly" });
    pc.addEventListener("track", (ev) => {
      if (ev.track.kind !== "audio") {
        this.dispatchEvent(new CustomEvent("video", { detail: ev.track }));
        return;
      }
      this.audio.srcObject = ev.streams[0] || new MediaStream([ev.track]);
      this.audio.play().catch(() => {});
    });
    pc.addEventListener("connectionstatechange", () => {
      if (pc !== this.pc) return;
      if (pc.connectionState === "connected" && (this.state === "connecting" || this.state === "reconnecting")) this._listening();
      // `disconnected` is shown at once, not only `failed`: nothing arrives either way.
      if (pc.connectionState === "disconnected" || pc.connectionState === "failed") this._lost();
    });
    try {
      await pc.setLocalDescription(await pc.createOffer());
      await iceGathered(pc);
      if (pc !== this.pc) return; // left while gathering
      const answer = await api(`meetings/${this.meetingId}/media`, {
        method: "POST", body: { sdp: pc.localDescription.sdp, type: "offer", kind: this.kind },
      });
      if (pc !== this.pc) {
        this._delete(answer.session_id, false);
        return;
      }
      this.sessionId = answer.session_id;
      window.addEventListener("pagehide", this._onPageHide);
      await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
    } catch (err) {
      if (pc !== this.pc) return;
      const code = err instanceof ApiError ? err.code : "connection_failed";
      if (rejoining && !FINAL_CODES.has(code)) {
        // The network (or the node) is not back yet: try again a little later.
        this.pc = null;
        this.sessionId = null;
        pc.close();
        this._scheduleRejoin(this._rejoinDelay);
        this._rejoinDelay = Math.min(REJOIN_MAX_MS, this._rejoinDelay * 2);
        return;
      }
      const sessionId = this.sessionId;
      this._cleanup();
      if (sessionId) this._delete(sessionId, false);
      this._set("error", code);
      return;
    }
    this._lastPackets = 0;
    this._lastPacketAt = Date.now();
    clearInterval(this._stats);
    this._stats = setInterval(() => this._readStats(), STATS_EVERY_MS);
    if (rejoining) this.rejoins += 1;
    if (pc.connectionState === "connected") this._listening();
  }

  _listening() {
    clearTimeout(this._rejoin);
    this._rejoin = null;
    this._rejoinDelay = REJOIN_FIRST_MS;
    this._lastPacketAt = Date.now();
    if (this.state !== "listening") this._set("listening");
  }

  /** Nothing arrives: say so, give the connection a moment to recover, then rejoin. */
  _lost() {
    if (this.state !== "listening" && this.state !== "connecting") return;
    this._set("reconnecting");
    this._scheduleRejoin(RECOVER_MS);
  }

  /** The server ended our session (dropped as silent or failed, or its node restarted):
   *  make a new one at once. */
  reconnect() {
    if (!this.local) return;
    if (this.state !== "reconnecting") this._set("reconnecting");
    this._scheduleRejoin(0);
  }

  _scheduleRejoin(delay) {
    clearTimeout(this._rejoin);
    this._rejoin = setTimeout(() => {
      this._rejoin = null;
      if (this.state !== "reconnecting" || !this.local) return;
      const old = this.pc;
      this.pc = null;
      this.sessionId = null;
      old?.close();
      this._connect({ rejoining: true });
    }, delay);
  }

  async _readStats() {
    const pc = this.pc;
    if (!pc) return;
    let packets = 0;
    let level = 0;
    (await pc.getStats()).forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "audio") {
        packets += s.packetsReceived || 0;
        level = Math.max(level, s.audioLevel || 0);
      }
    });
    if (pc !== this.pc) return;
    this.packets = packets;
    this.level = level;
    const now = Date.now();
    if (packets > this._lastPackets) {
      this._lastPackets = packets;
      this._lastPacketAt = now;
      // The same connection came back by itself (the network returned in time).
      if (this.state === "reconnecting" && pc.connectionState === "connected") this._listening();
    } else if (this.state === "listening" && now - this._lastPacketAt >= NO_AUDIO_MS) {
      this._lost();
    }
    this.dispatchEvent(new CustomEvent("level", { detail: this }));
  }

  /** Mute or unmute my microphone (the track stays: unmuting is instant). */
  setMuted(muted) {
    this.muted = muted;
    for (const track of this.local?.getAudioTracks() || []) track.enabled = !muted;
    this.dispatchEvent(new CustomEvent("change", { detail: this }));
  }

  /** Leave: DELETE the session and close everything. */
  async leave({ unloading = false } = {}) {
    const sessionId = this.sessionId;
    this.sessionId = null;
    // The server hears "left" before the connection closes (else it sees a closed peer).
    const deleted = sessionId ? this._delete(sessionId, unloading) : null;
    if (deleted && !unloading) await deleted;
    this._cleanup();
    if (this.state !== "error") this._set("idle");
  }

  /** The server or the network ended the session: close here and say why. */
  drop(reason) {
    const sessionId = this.sessionId;
    this._cleanup();
    // A failed connection may still hold a session on the server (a 404 if it is gone).
    if (sessionId && reason === "connection_failed") this._delete(sessionId, false);
    this._set("error", reason);
  }

  async _delete(sessionId, unloading) {
    const path = `/api/v1/meetings/${this.meetingId}/media/${encodeURIComponent(sessionId)}`;
    try {
      if (unloading) {
        // keepalive: the request outlives the page.
        await fetch(path, { method: "DELETE", keepalive: true, headers: { Authorization: `Bearer ${session.token}` } });
      } else {
        await api(path, { method: "DELETE" });
      }
    } catch {
      /* already gone on the server (dropped, meeting closed): nothing to undo */
    }
  }

  _cleanup() {
    clearInterval(this._stats);
    this._stats = null;
    clearTimeout(this._rejoin);
    this._rejoin = null;
    this._rejoinDelay = REJOIN_FIRST_MS;
    window.removeEventListener("pagehide", this._onPageHide);
    window.removeEventListener("online", this._onOnline);
    const pc = this.pc;
    this.pc = null;
    this.sessionId = null;
    pc?.close();
    for (const track of this.local?.getTracks() || []) track.stop();
    this.local = null;
    this.audio.srcObject = null;
    this.level = 0;
    this.packets = 0;
  }
}
