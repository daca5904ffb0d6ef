// Remote attendance over WebRTC: take the microphone (and the camera if asked), offer with
// ICE fully gathered to POST /api/v1/meetings/{id}/media, play the floor the server sends,
// mute, leave with DELETE (also when the page goes away). No STUN: a hall's LAN needs none.

import { ApiError, api, session } from "./api.js";

// How often the received audio's level and packet count are read (ms).
const STATS_EVERY_MS = 500;
// Longest wait for ICE gathering before the offer goes with what was gathered (ms).
const GATHER_TIMEOUT_MS = 10_000;

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
 * every state change: idle → connecting → listening → idle, or error (with `errorCode`).
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
    this.level = 0; // received audio level, 0..1
    this.packets = 0; // received audio packets
    this.pc = null;
    this.local = null;
    this._stats = null;
    this._onPageHide = () => this.leave({ unloading: true });
  }

  get active() {
    return this.state === "connecting" || this.state === "listening";
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
    const pc = new RTCPeerConnection({ iceServers: [] });
    this.pc = pc;
    for (const track of this.local.getTracks()) pc.addTrack(track, this.local);
    if (kind === "viewer") pc.addTransceiver("audio", { direction: "recvonly" });
    // A camera-less tablet still receives the speaker's video (shown by media-video.js).
    if (!video) pc.addTransceiver("video", { direction: "recvonly" });
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
      if (pc.connectionState === "connected" && this.state === "connecting") this._set("listening");
      if (pc.connectionState === "failed") this.drop("connection_failed");
    });
    try {
      await pc.setLocalDescription(await pc.createOffer());
      await iceGathered(pc);
      if (pc !== this.pc) return; // left while gathering
      const answer = await api(`meetings/${this.meetingId}/media`, {
        method: "POST", body: { sdp: pc.localDescription.sdp, type: "offer", kind },
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
      const sessionId = this.sessionId;
      this._cleanup();
      if (sessionId) this._delete(sessionId, false);
      this._set("error", err instanceof ApiError ? err.code : "connection_failed");
      return;
    }
    this._stats = setInterval(() => this._readStats(), STATS_EVERY_MS);
    if (pc.connectionState === "connected") this._set("listening");
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
    window.removeEventListener("pagehide", this._onPageHide);
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
