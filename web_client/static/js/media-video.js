// The floor's video on a page: the speaker's camera (or the hall camera the sound desk
// sends), relayed by the server; a remote delegate's own camera preview and whether that
// camera is live. Hooked to a RemoteAttendance (remote.js) through its "video" and
// "change" events only: the connection itself stays remote.js's business.

import { t } from "./i18n.js";
import { h } from "./shell.js";

// How often frame counters are read (ms).
const CHECK_EVERY_MS = 500;
// The floor's video counts as gone when no frame has arrived for this long (ms): the
// server sends nothing while nobody on the floor has a camera.
const STALE_AFTER_MS = 2_000;

/** Frames a <video> has decoded so far (0 where the browser does not say). */
function decodedFrames(video) {
  return video.getVideoPlaybackQuality?.().totalVideoFrames ?? video.webkitDecodedFrameCount ?? 0;
}

/** The elements of a page's video area: the floor's picture and the own preview. */
export function videoArea({ preview = true } = {}) {
  const screen = h("video", { id: "floor-video", autoplay: true, playsinline: true, muted: true });
  screen.muted = true; // autoplay without a gesture; the floor's sound plays in its <audio>
  return h("div", { class: "floor-video-area", id: "floor-video-area" },
    h("figure", { class: "floor-video hidden", id: "floor-video-box", "aria-label": t("video_floor") },
      screen,
      h("figcaption", { class: "small" }, t("video_floor"))),
    preview ? h("figure", { class: "own-video hidden", id: "own-video-box" },
      h("video", { id: "own-video", autoplay: true, playsinline: true, muted: true }),
      h("figcaption", { id: "own-video-state", class: "tag", role: "status", "aria-live": "polite" })) : null);
}

/**
 * Shows what `remote` receives and sends in the page's `videoArea()` (found by id, so a
 * page may render it again): the floor's video in `#floor-video` while its frames keep
 * coming (`#floor-video-area[data-video=live]`), the own camera in `#own-video` with its
 * state (`data-camera`: off | sending | on_air | stalled). `onAir()` says whether this user
 * holds the floor now.
 */
export class FloorVideo {
  constructor(remote, { onAir = () => false } = {}) {
    this.remote = remote;
    this.onAir = onAir;
    this._track = null;
    this._frames = 0;
    this._lastFrameAt = 0;
    this._sent = 0;
    this._check = null;
    remote.addEventListener("video", (ev) => this._show(ev.detail));
    remote.addEventListener("change", () => this._follow());
  }

  _el(id) {
    return document.getElementById(id);
  }

  _show(track) {
    this._track = track;
    this._frames = 0;
    this._lastFrameAt = 0;
    this._attach();
  }

  _attach() {
    const screen = this._el("floor-video");
    if (!screen || !this._track || screen.srcObject?.getVideoTracks()[0] === this._track) return;
    screen.srcObject = new MediaStream([this._track]);
    screen.play().catch(() => {});
  }

  _follow() {
    const active = this.remote.active;
    if (active && !this._check) this._check = setInterval(() => this._tick(), CHECK_EVERY_MS);
    if (!active) {
      clearInterval(this._check);
      this._check = null;
      this._track = null;
      for (const id of ["floor-video", "own-video"]) {
        const video = this._el(id);
        if (video) video.srcObject = null;
      }
      this._el("floor-video-box")?.classList.add("hidden");
      this._el("own-video-box")?.classList.add("hidden");
      return;
    }
    const camera = this.remote.local?.getVideoTracks()[0];
    const own = this._el("own-video");
    if (own && camera && own.srcObject?.getVideoTracks()[0] !== camera) {
      own.srcObject = new MediaStream([camera]);
      own.play().catch(() => {});
    }
    this._el("own-video-box")?.classList.toggle("hidden", !camera);
  }

  async _tick() {
    this._attach();
    this._follow();
    const screen = this._el("floor-video");
    if (screen) {
      const frames = decodedFrames(screen);
      const now = performance.now();
      if (frames > this._frames) this._lastFrameAt = now;
      this._frames = frames;
      const live = this._lastFrameAt > 0 && now - this._lastFrameAt < STALE_AFTER_MS;
      screen.dataset.frames = String(frames);
      this._el("floor-video-box")?.classList.toggle("hidden", !live);
      const area = this._el("floor-video-area");
      if (area) area.dataset.video = live ? "live" : "none";
    }
    await this._readCamera();
  }

  async _readCamera() {
    const pc = this.remote.pc;
    const camera = this.remote.local?.getVideoTracks()[0];
    const badge = this._el("own-video-state");
    if (!badge) return;
    let state = "off";
    if (camera && pc) {
      let sent = 0;
      (await pc.getStats()).forEach((s) => {
        if (s.type === "outbound-rtp" && s.kind === "video") sent += s.framesSent || 0;
      });
      const moving = sent > this._sent;
      this._sent = sent;
      state = camera.readyState !== "live" || !camera.enabled || !moving ? "stalled" : this.onAir() ? "on_air" : "sending";
    }
    badge.dataset.camera = state;
    badge.textContent = t(`video_camera_${state}`);
  }
}
